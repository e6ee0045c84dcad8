//! A connection's buffers, and the one read and the one write loop of every socket tern
//! serves (NATS connections here, monitoring connections in `monitor/http.rs`).
//!
//! `read_into` reads once, mapping errors to a close reason. `write_out` writes a buffer
//! until it is all gone or the socket refuses more, and keeps only the unsent tail once
//! enough of it went, so a buffer that keeps being appended to does not grow forever.

use super::{CloseReason, Conn};
use crate::config::{OUT_KEEP, READ_CHUNK};
use std::io::{self, Read, Write};
use std::time::Instant;

pub enum ReadOutcome {
    /// Some bytes arrived.
    Data(usize),
    /// Nothing more until the next readiness event.
    WouldBlock,
    /// The peer closed or the socket failed.
    Closed(CloseReason),
}

/// Reads once into `buf`, mapping errors to a close reason.
pub fn read_into(sock: &mut impl Read, buf: &mut [u8]) -> ReadOutcome {
    loop {
        match sock.read(buf) {
            Ok(0) => return ReadOutcome::Closed(CloseReason::ClientClosed),
            Ok(n) => return ReadOutcome::Data(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return ReadOutcome::WouldBlock,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return ReadOutcome::Closed(CloseReason::ReadError),
        }
    }
}

/// What `write_out` did.
pub struct Written {
    /// Everything went (the buffer is now empty).
    pub done: bool,
    /// Bytes the socket took.
    pub bytes: usize,
}

/// Writes `out[*pos..]` until it is all written or the socket would block. When it blocks
/// with more than `compact_past` bytes written, the unsent tail moves to the front.
pub fn write_out(
    sock: &mut impl Write,
    out: &mut Vec<u8>,
    pos: &mut usize,
    compact_past: usize,
) -> io::Result<Written> {
    let start = *pos;
    while *pos < out.len() {
        match sock.write(&out[*pos..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => *pos += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let bytes = *pos - start;
                if *pos > compact_past {
                    out.drain(..*pos);
                    *pos = 0;
                }
                return Ok(Written { done: false, bytes });
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let bytes = *pos - start;
    out.clear();
    *pos = 0;
    Ok(Written { done: true, bytes })
}

impl Conn {
    /// Writes as much of `out` as the socket takes. `Ok(true)` when everything went.
    pub fn flush(&mut self, now: Instant) -> io::Result<bool> {
        // Keep the unsent tail at the front once most of the buffer is sent.
        let half = self.out.len() / 2;
        let w = write_out(&mut self.sock, &mut self.out, &mut self.out_pos, half)?;
        if w.bytes > 0 {
            self.written += w.bytes as u64;
            self.last_write = now;
        }
        if w.done {
            if self.out.capacity() > OUT_KEEP {
                self.out = Vec::new();
            }
            self.last_write = now;
        }
        Ok(w.done)
    }

    /// Discards the write buffer (slow consumers, shutdown of dead sockets).
    pub fn drop_output(&mut self) {
        self.out = Vec::new();
        self.out_pos = 0;
    }

    /// Makes room in `inbuf` for the next read: at least what the pending frame still needs.
    pub fn inbuf_room(&mut self) -> &mut [u8] {
        let want = self.need.max(self.in_len + READ_CHUNK);
        if self.inbuf.len() < want {
            self.inbuf.resize(want, 0);
        }
        &mut self.inbuf[self.in_len..]
    }

    /// Keeps the unparsed tail `rest` of a read from the shared buffer.
    pub fn carry(&mut self, rest: &[u8]) {
        let want = self.need.max(rest.len() + READ_CHUNK);
        if self.inbuf.len() < want {
            self.inbuf.resize(want, 0);
        }
        self.inbuf[..rest.len()].copy_from_slice(rest);
        self.in_len = rest.len();
    }

    /// Appends bytes that arrived behind a split frame.
    pub fn append_in(&mut self, data: &[u8]) {
        let end = self.in_len + data.len();
        if self.inbuf.len() < end {
            self.inbuf.resize(end, 0);
        }
        self.inbuf[self.in_len..end].copy_from_slice(data);
        self.in_len = end;
    }

    /// Drops the first `used` bytes of `inbuf`; frees it when nothing is left.
    pub fn consume_inbuf(&mut self, used: usize) {
        if used >= self.in_len {
            self.in_len = 0;
            self.need = 0;
            self.inbuf = Vec::new();
        } else if used > 0 {
            self.inbuf.copy_within(used..self.in_len, 0);
            self.in_len -= used;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A socket that takes `room` bytes, then would block.
    struct Sock {
        room: usize,
        got: Vec<u8>,
    }

    impl Write for Sock {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = b.len().min(self.room).min(3);
            self.room -= n;
            self.got.extend_from_slice(&b[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn writes_until_refused_and_keeps_the_tail() {
        let mut s = Sock {
            room: 7,
            got: Vec::new(),
        };
        let (mut out, mut pos) = (b"0123456789".to_vec(), 0);
        let w = write_out(&mut s, &mut out, &mut pos, 5).unwrap();
        assert!(!w.done && w.bytes == 7);
        assert_eq!(
            (&out[..], pos),
            (&b"789"[..], 0),
            "past 5 written: compacted"
        );
        s.room = 100;
        let w = write_out(&mut s, &mut out, &mut pos, 5).unwrap();
        assert!(w.done && w.bytes == 3 && out.is_empty());
        assert_eq!(s.got, b"0123456789");
        let (mut out, mut pos) = (b"abcdef".to_vec(), 0);
        s.room = 3;
        write_out(&mut s, &mut out, &mut pos, 5).unwrap();
        assert_eq!((out.len(), pos), (6, 3), "below the mark: left in place");
    }
}
