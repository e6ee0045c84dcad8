//! One blocking NATS connection for the JetStream scenarios: whole frames (subject, reply,
//! headers, data) parsed in place from a read buffer, and a write buffer flushed on demand.
//!
//! The pub/sub engine (load.rs) only counts MSG frames and skips their payloads; JetStream
//! needs the payloads (PubAcks, API replies, status headers), so frames are kept whole here.
//! A frame borrows from the read buffer; the callback gets the write buffer beside it so it
//! can answer (acks, flow control) without a copy.

use crate::proto;
use memchr::memchr;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

const READ_BUF: usize = 512 * 1024;

/// A MSG or HMSG from the server.
pub struct Frame<'a> {
    pub subject: &'a [u8],
    pub reply: &'a [u8],
    /// The header block (`NATS/1.0...`), empty for MSG.
    pub hdr: &'a [u8],
    pub data: &'a [u8],
}

impl Frame<'_> {
    /// The status code of a header-only status message (`NATS/1.0 100 Idle Heartbeat`).
    pub fn status(&self) -> Option<&[u8]> {
        let line = self.hdr.split(|&c| c == b'\r').next()?;
        let rest = line.strip_prefix(b"NATS/1.0 ")?;
        Some(rest.split(|&c| c == b' ').next().unwrap_or(rest))
    }
}

pub struct Conn {
    pub s: TcpStream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    pub out: Vec<u8>,
    /// No byte for this long while waiting: the run fails.
    pub timeout: Duration,
    sids: u64,
}

impl Conn {
    /// Connects (CONNECT with headers, for HMSG) and completes a PING/PONG.
    pub fn open(addr: &SocketAddr, timeout: Duration) -> Result<Conn, String> {
        let s = proto::dial(addr)?;
        let mut c = Conn {
            s,
            buf: vec![0u8; READ_BUF],
            start: 0,
            end: 0,
            out: Vec::with_capacity(256 * 1024),
            timeout,
            sids: 0,
        };
        c.out.extend_from_slice(
            b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,\"no_responders\":true,\"name\":\"tern-bench\",\"lang\":\"rust\",\"version\":\"0.1.0\",\"protocol\":1}\r\nPING\r\n",
        );
        c.flush()?;
        c.s.set_read_timeout(Some(timeout)).ok();
        let mut pong = false;
        while !pong {
            c.fill()?;
            c.frames(&mut |_, _| Err("unexpected message before PONG".into()), &mut pong)?;
        }
        Ok(c)
    }

    /// Queues a SUB with a sid of its own; returns the sid.
    pub fn sub(&mut self, subject: &str) -> u64 {
        self.sids += 1;
        self.out.extend_from_slice(format!("SUB {subject} {}\r\n", self.sids).as_bytes());
        self.sids
    }

    pub fn flush(&mut self) -> Result<(), String> {
        if !self.out.is_empty() {
            self.s.write_all(&self.out).map_err(|e| format!("write: {e}"))?;
            self.out.clear();
        }
        Ok(())
    }

    /// Reads once (blocking up to `timeout`).
    pub fn fill(&mut self) -> Result<(), String> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.buf.len() - self.end < 64 * 1024 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if self.end == self.buf.len() {
                let n = self.buf.len() * 2;
                self.buf.resize(n, 0);
            }
        }
        loop {
            match self.s.read(&mut self.buf[self.end..]) {
                Ok(0) => return Err("connection closed by server".into()),
                Ok(n) => {
                    self.end += n;
                    return Ok(());
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Err(format!("no data from the server for {:?}", self.timeout))
                }
                Err(e) => return Err(format!("read: {e}")),
            }
        }
    }

    /// Hands every complete frame in the buffer to `f` (with the write buffer); PINGs are
    /// answered, a PONG sets `pong`, `-ERR` fails.
    pub fn frames(
        &mut self,
        f: &mut dyn FnMut(&Frame, &mut Vec<u8>) -> Result<(), String>,
        pong: &mut bool,
    ) -> Result<(), String> {
        loop {
            let avail = &self.buf[self.start..self.end];
            let Some(nl) = memchr(b'\n', avail) else {
                return Ok(());
            };
            let line = &avail[..nl];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let body = self.start + nl + 1;
            if line.starts_with(b"MSG ") || line.starts_with(b"HMSG ") {
                let (subject, reply, hlen, tlen) = header_fields(line)?;
                if body + tlen + 2 > self.end {
                    return Ok(()); // the rest of the frame is still coming
                }
                let (sub, rep) = (subject.clone(), reply.clone());
                let line_at = self.start;
                let b = &self.buf;
                let fr = Frame {
                    subject: &b[line_at + sub.start..line_at + sub.end],
                    reply: &b[line_at + rep.start..line_at + rep.end],
                    hdr: &b[body..body + hlen],
                    data: &b[body + hlen..body + tlen],
                };
                f(&fr, &mut self.out)?;
                self.start = body + tlen + 2;
                continue;
            }
            if line == b"PING" {
                self.out.extend_from_slice(b"PONG\r\n");
            } else if line == b"PONG" {
                *pong = true;
            } else if line.starts_with(b"-ERR") {
                return Err(format!("server error: {}", proto::show(line)));
            }
            self.start = body;
        }
    }

    /// Reads and handles frames until `done()` or the deadline passes.
    pub fn run_until(
        &mut self,
        f: &mut dyn FnMut(&Frame, &mut Vec<u8>) -> Result<(), String>,
        done: &mut dyn FnMut() -> bool,
    ) -> Result<(), String> {
        let mut pong = false;
        while !done() {
            self.flush()?;
            self.fill()?;
            self.frames(f, &mut pong)?;
        }
        self.flush()
    }

    /// PING, then everything up to the PONG (the server has handled what was sent before).
    pub fn ping(&mut self) -> Result<(), String> {
        self.out.extend_from_slice(b"PING\r\n");
        self.flush()?;
        let mut pong = false;
        while !pong {
            self.fill()?;
            self.frames(&mut |_, _| Ok(()), &mut pong)?;
        }
        self.flush()
    }

    /// A request with a JSON body; returns the reply's data (the first message on `inbox`).
    pub fn request(&mut self, subject: &str, inbox: &str, body: &[u8]) -> Result<Vec<u8>, String> {
        let sid = self.sub(inbox);
        self.out.extend_from_slice(format!("UNSUB {sid} 1\r\n").as_bytes());
        proto::push_pub(&mut self.out, subject.as_bytes(), Some(inbox.as_bytes()), body);
        let mut got: Option<Vec<u8>> = None;
        let deadline = Instant::now() + self.timeout;
        let mut pong = false;
        self.flush()?;
        while got.is_none() {
            if Instant::now() > deadline {
                return Err(format!("no reply to {subject}"));
            }
            self.fill()?;
            self.frames(
                &mut |fr, _| {
                    if fr.subject == inbox.as_bytes() && got.is_none() {
                        let mut v = fr.hdr.to_vec();
                        v.extend_from_slice(fr.data);
                        got = Some(v);
                    }
                    Ok(())
                },
                &mut pong,
            )?;
        }
        self.flush()?;
        got.ok_or_else(|| "no reply".into())
    }
}

/// `MSG <subject> <sid> [reply] <n>` / `HMSG <subject> <sid> [reply] <h> <n>`: the subject's
/// and reply's ranges in the line, the header length and the total length.
#[allow(clippy::type_complexity)]
fn header_fields(
    line: &[u8],
) -> Result<(std::ops::Range<usize>, std::ops::Range<usize>, usize, usize), String> {
    let mut toks: [(usize, usize); 6] = [(0, 0); 6];
    let mut n = 0;
    let mut i = 0;
    while i < line.len() && n < 6 {
        while i < line.len() && line[i] == b' ' {
            i += 1;
        }
        let s = i;
        while i < line.len() && line[i] != b' ' {
            i += 1;
        }
        if s < i {
            toks[n] = (s, i);
            n += 1;
        }
    }
    let bad = || format!("protocol error: bad line {:?}", proto::show(line));
    let num = |t: (usize, usize)| proto::parse_usize(&line[t.0..t.1]).ok_or_else(bad);
    let hmsg = line[0] == b'H';
    let (reply, hlen, tlen) = match (hmsg, n) {
        (false, 4) => ((0, 0), 0, num(toks[3])?),
        (false, 5) => (toks[3], 0, num(toks[4])?),
        (true, 5) => ((0, 0), num(toks[3])?, num(toks[4])?),
        (true, 6) => (toks[3], num(toks[4])?, num(toks[5])?),
        _ => return Err(bad()),
    };
    if hlen > tlen {
        return Err(bad());
    }
    Ok((toks[1].0..toks[1].1, reply.0..reply.1, hlen, tlen))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields() {
        let (s, r, h, t) = header_fields(b"MSG a.b 1 _INBOX.x 12").unwrap();
        assert_eq!((s, r, h, t), (4..7, 10..18, 0, 12));
        let (s, r, h, t) = header_fields(b"HMSG a 1 12 20").unwrap();
        assert_eq!((s, r, h, t), (5..6, 0..0, 12, 20));
        let (_, r, h, t) = header_fields(b"HMSG a 1 rep 12 20").unwrap();
        assert_eq!((r, h, t), (9..12, 12, 20));
        assert!(header_fields(b"HMSG a 1 20 12").is_err());
        assert!(header_fields(b"MSG a").is_err());
    }

    #[test]
    fn status() {
        let f = Frame {
            subject: b"x",
            reply: b"",
            hdr: b"NATS/1.0 100 Idle Heartbeat\r\n\r\n",
            data: b"",
        };
        assert_eq!(f.status(), Some(&b"100"[..]));
        let f = Frame {
            hdr: b"NATS/1.0\r\nA: b\r\n\r\n",
            ..f
        };
        assert_eq!(f.status(), None);
    }
}
