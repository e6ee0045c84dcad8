// Slow-consumer isolation (small max_pending and write_deadline from a config file): a
// subscriber that never reads is cut off (closed, no -ERR), while another subscriber on the same
// subject receives every message intact and the publisher stays connected.

use crate::harness::*;
use std::io::Read;
use std::thread;
use std::time::{Duration, Instant};

const CONF: &str = "max_pending: 262144\nmax_payload: 65536\nwrite_deadline: \"2s\"\n";
const SIZE: usize = 60000;
const COUNT: usize = 200;

fn payload(i: usize) -> Vec<u8> {
    let mut p = vec![b'a' + (i % 26) as u8; SIZE];
    let tag = format!("#{}#", i);
    p[..tag.len()].copy_from_slice(tag.as_bytes());
    p
}

/// Incrementally checks a stream of `MSG foo 1 SIZE\r\n<payload i>\r\n` frames. The server's
/// own `PING\r\n` (sent ~2 s after connecting) may appear between frames and is skipped.
struct FrameChecker {
    buf: Vec<u8>,
    next: usize,
}

impl FrameChecker {
    fn feed(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
        let header = format!("MSG foo 1 {}\r\n", SIZE).into_bytes();
        let frame = header.len() + SIZE + 2;
        let mut off = 0;
        loop {
            if self.buf[off..].starts_with(b"PING\r\n") {
                off += 6;
                continue;
            }
            if self.buf.len() - off < frame {
                break;
            }
            let f = &self.buf[off..off + frame];
            assert_eq!(
                &f[..header.len()],
                &header[..],
                "bad frame header at message {}",
                self.next
            );
            assert!(
                f[header.len()..header.len() + SIZE] == payload(self.next)[..],
                "payload {} corrupted",
                self.next
            );
            assert_eq!(&f[frame - 2..], b"\r\n");
            self.next += 1;
            off += frame;
        }
        self.buf.drain(..off);
    }
    /// The remainder must be a prefix of the next frame (a cut-off stream).
    fn check_partial_tail(&self) {
        let mut want = format!("MSG foo 1 {}\r\n", SIZE).into_bytes();
        want.extend_from_slice(&payload(self.next));
        want.extend_from_slice(b"\r\n");
        assert!(
            want.starts_with(&self.buf),
            "garbage after message {}: {:?}",
            self.next,
            esc(&self.buf[..self.buf.len().min(80)])
        );
    }
}

/// Send PING and wait for the PONG, answering and dropping any server PINGs on the way.
fn await_pong(c: &mut Client, timeout: Duration) {
    c.send("PING\r\n");
    let ok = c.read_until(timeout, |rx| {
        let mut r = rx;
        while r.starts_with(b"PING\r\n") {
            r = &r[6..];
        }
        r == b"PONG\r\n"
    });
    assert!(ok, "no PONG: {:?} closed={}", esc(&c.rx), c.closed);
    let pings = count(&c.rx, b"PING\r\n");
    for _ in 0..pings {
        c.send("PONG\r\n");
    }
    c.rx.clear();
}

#[test]
fn slow_consumer_is_isolated() {
    let s = Server::start_conf(CONF, &[]);
    let mut slow = s.client();
    slow.send("CONNECT {\"verbose\":false}\r\nSUB foo 1\r\n");
    slow.ping_pong();
    let mut fast = s.client();
    fast.send("CONNECT {\"verbose\":false}\r\nSUB foo 1\r\n");
    fast.ping_pong();

    // The fast subscriber reads continuously in its own thread.
    let reader = thread::spawn(move || {
        let mut chk = FrameChecker {
            buf: Vec::new(),
            next: 0,
        };
        let mut buf = vec![0u8; 1 << 20];
        let end = Instant::now() + Duration::from_secs(60);
        fast.stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        while chk.next < COUNT && Instant::now() < end {
            match fast.stream.read(&mut buf) {
                Ok(0) => panic!(
                    "fast subscriber was disconnected after {} messages",
                    chk.next
                ),
                Ok(n) => chk.feed(&buf[..n]),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(e) => panic!(
                    "fast subscriber read error after {} messages: {}",
                    chk.next, e
                ),
            }
        }
        assert!(
            b"PING\r\n".starts_with(&chk.buf),
            "trailing bytes after {} messages",
            chk.next
        );
        fast.rx = chk.buf;
        (chk.next, fast)
    });

    let mut publ = s.client();
    publ.send("CONNECT {\"verbose\":false}\r\n");
    for i in 0..COUNT {
        let mut frame = format!("PUB foo {}\r\n", SIZE).into_bytes();
        frame.extend_from_slice(&payload(i));
        frame.extend_from_slice(b"\r\n");
        use std::io::Write;
        publ.stream
            .write_all(&frame)
            .expect("publisher write failed");
    }
    // The publisher is not disconnected.
    await_pong(&mut publ, Duration::from_secs(30));

    // Every message reached the fast subscriber, in order and intact.
    let (got, mut fast) = reader.join().expect("fast reader failed");
    assert_eq!(got, COUNT);
    await_pong(&mut fast, DEADLINE);

    // The slow one was cut off: only complete frames then a possibly truncated one, no -ERR.
    let mut chk = FrameChecker {
        buf: Vec::new(),
        next: 0,
    };
    let end = Instant::now() + Duration::from_secs(20);
    let mut buf = vec![0u8; 1 << 20];
    slow.stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut closed = false;
    while Instant::now() < end {
        match slow.stream.read(&mut buf) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(n) => chk.feed(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    assert!(
        closed,
        "slow consumer was not disconnected ({} messages read)",
        chk.next
    );
    assert!(
        chk.next < COUNT,
        "slow consumer got everything; the test did not overflow it"
    );
    chk.check_partial_tail();

    // The server and the others carry on.
    publ.send(format!("PUB foo {}\r\n", SIZE));
    publ.send(payload(COUNT));
    publ.send("\r\n");
    await_pong(&mut publ, DEADLINE);
    let mut want = format!("MSG foo 1 {}\r\n", SIZE).into_bytes();
    want.extend_from_slice(&payload(COUNT));
    want.extend_from_slice(b"\r\n");
    // (Remove server PINGs; the payloads never contain that text.)
    let strip = |rx: &[u8]| {
        let mut out = Vec::new();
        let mut i = 0;
        while i < rx.len() {
            if rx[i..].starts_with(b"PING\r\n") {
                i += 6;
            } else {
                out.push(rx[i]);
                i += 1;
            }
        }
        out
    };
    fast.read_until(DEADLINE, |rx| strip(rx).len() >= want.len());
    let rx = strip(&std::mem::take(&mut fast.rx));
    assert!(
        rx == want,
        "late message not delivered intact: {} bytes, starts {:?}",
        rx.len(),
        esc(&rx[..rx.len().min(60)])
    );
    let mut late = s.client();
    late.ping_pong();
}
