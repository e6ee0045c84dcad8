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

/// Reads a subscriber's stream of `frame`-byte messages until `want` of them arrived or
/// `end` passed; returns how many arrived. Bytes are counted, not parsed, so that the test's
/// own readers stay cheap on a loaded machine (a server PING, 6 bytes, is not a message).
fn count_msgs(mut c: Client, frame: usize, want: usize, end: Instant) -> usize {
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0;
    c.stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    while bytes < want * frame && Instant::now() < end {
        match c.stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => bytes += n,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => break,
        }
    }
    bytes / frame
}

/// Bytes of `MSG foo 1 <size>\r\n<payload>\r\n`.
fn frame_len(size: usize) -> usize {
    format!("MSG foo 1 {}\r\n", size).len() + size + 2
}

/// One subscriber that never reads must not set the pace of the others (issue 9, hole 10).
#[test]
fn stalled_subscriber_does_not_pace_the_others() {
    laggard_does_not_pace_the_others(false);
}

/// Nor one that reads a little (16 KiB every 50 ms) so that its socket keeps taking bytes.
#[test]
fn trickling_subscriber_does_not_pace_the_others() {
    laggard_does_not_pace_the_others(true);
}

/// The publisher sends 16 MiB, far more than the laggard's socket buffers hold, then a PING.
/// Its PONG (all its input was processed) and every message at the three reading subscribers
/// must arrive within twice the harness's generous deadline. When every stall on the laggard
/// paused the publisher up to 250 ms per 64 KiB read, that would take close to a minute, and
/// the laggard was cut off only by the write deadline (60 s here); max_pending (64 MiB by
/// default) is more than is sent, so no subscriber can be cut off however the machine
/// schedules the test's threads.
fn laggard_does_not_pace_the_others(trickle: bool) {
    const K: usize = 4096;
    const SIZE: usize = 4096;
    let s = Server::start_conf("write_deadline: \"60s\"\n", &[]);
    let mut lag = s.client();
    lag.send("CONNECT {\"verbose\":false}\r\nSUB foo 1\r\n");
    lag.ping_pong();
    let end = Instant::now() + DEADLINE * 2;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop = done.clone();
    // The laggard's connection stays open to the end (held here, or by its reader thread).
    let mut held = Some(lag);
    let trickler = trickle.then(|| {
        let mut lag = held.take().unwrap();
        thread::spawn(move || {
            let mut buf = vec![0u8; 16 * 1024];
            lag.stream
                .set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < end {
                match lag.stream.read(&mut buf) {
                    Ok(0) => break,
                    Ok(_) => thread::sleep(Duration::from_millis(50)),
                    Err(e)
                        if e.kind() == std::io::ErrorKind::WouldBlock
                            || e.kind() == std::io::ErrorKind::TimedOut => {}
                    Err(_) => break,
                }
            }
        })
    });
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let mut c = s.client();
            c.send("CONNECT {\"verbose\":false}\r\nSUB foo 1\r\n");
            c.ping_pong();
            thread::spawn(move || count_msgs(c, frame_len(SIZE), K, end))
        })
        .collect();
    let mut publ = s.client();
    publ.send("CONNECT {\"verbose\":false}\r\n");
    publ.ping_pong();
    // The writes block while the server does not read the publisher: a thread does them.
    let mut w = publ.stream.try_clone().unwrap();
    let writer = thread::spawn(move || {
        use std::io::Write;
        let mut frame = format!("PUB foo {}\r\n", SIZE).into_bytes();
        frame.extend_from_slice(&[b'x'; SIZE]);
        frame.extend_from_slice(b"\r\n");
        let batch = frame.repeat(64);
        for _ in 0..K / 64 {
            if w.write_all(&batch).is_err() {
                return;
            }
        }
        let _ = w.write_all(b"PING\r\n");
    });
    let ponged = publ.read_until(end.saturating_duration_since(Instant::now()), |rx| {
        find(rx, b"PONG\r\n").is_some()
    });
    let got: Vec<usize> = readers.into_iter().map(|r| r.join().unwrap()).collect();
    assert!(
        ponged,
        "the publisher's PING was not answered: the laggard paces it (readers got {:?} of {})",
        got, K
    );
    assert_eq!(got, vec![K; 3], "messages at the reading subscribers");
    drop(publ);
    let _ = writer.join();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(t) = trickler {
        let _ = t.join();
    }
    drop(held);
}

/// What the stall is for: when the only subscriber reads, only slower than the publisher
/// publishes, the publisher is paced to it instead of burying it past max_pending (2 MiB
/// here, a quarter of what is sent) and having it cut off as a slow consumer. (The reader
/// pauses after each read, yet stays well above the 1 MiB/s below which a consumer stops
/// pacing its producers (STALL_DRAIN), even when a loaded machine stretches its pauses.)
#[test]
fn slow_reader_alone_is_paced_not_cut() {
    const K: usize = 2048;
    const SIZE: usize = 4096;
    let s = Server::start_conf("max_pending: 2MB\n", &[]);
    let mut sub = s.client();
    sub.send("CONNECT {\"verbose\":false}\r\nSUB foo 1\r\n");
    sub.ping_pong();
    // At most 256 KiB per read, a pause after each.
    let reader = thread::spawn(move || {
        let mut buf = vec![0u8; 256 * 1024];
        let (mut bytes, mut closed) = (0, false);
        let end = Instant::now() + DEADLINE * 4;
        sub.stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        while bytes < K * frame_len(SIZE) && Instant::now() < end {
            match sub.stream.read(&mut buf) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(n) => {
                    bytes += n;
                    thread::sleep(Duration::from_millis(5));
                }
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => {
                    closed = true;
                    break;
                }
            }
        }
        (bytes / frame_len(SIZE), closed)
    });
    let mut publ = s.client();
    publ.send("CONNECT {\"verbose\":false}\r\n");
    let mut frame = format!("PUB foo {}\r\n", SIZE).into_bytes();
    frame.extend_from_slice(&[b'x'; SIZE]);
    frame.extend_from_slice(b"\r\n");
    publ.send(frame.repeat(K));
    await_pong(&mut publ, DEADLINE * 4);
    let (got, closed) = reader.join().unwrap();
    assert!(
        !closed,
        "the slow reader was cut off after {} messages",
        got
    );
    assert_eq!(got, K);
}
