//! NATS text protocol helpers: an incremental parser for the server->client
//! stream (MSG/HMSG/PING/PONG/+OK/-ERR/INFO), frame builders and a blocking
//! handshake used while setting connections up.
//!
//! The parser never copies payloads: after a `MSG ... <n>\r\n` header it just
//! skips `n + 2` bytes, so a chunk of thousands of messages costs one memchr
//! per header line.

use memchr::{memchr, memrchr};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Longest control line we accept before calling the stream garbage.
const MAX_LINE: usize = 1 << 20;

pub const CONNECT: &[u8] =
    b"CONNECT {\"verbose\":false,\"pedantic\":false,\"name\":\"tern-bench\",\"lang\":\"rust\",\"version\":\"0.1.0\",\"protocol\":1}\r\n";

#[derive(Default, Debug)]
pub struct Parser {
    partial: Vec<u8>,
    skip: usize,
    /// MSG + HMSG frames seen.
    pub msgs: u64,
    /// Payload bytes (HMSG: headers + payload) of those frames.
    pub bytes: u64,
    /// PINGs received from the server (the caller owes that many PONGs).
    pub pings: u64,
    /// PONGs received.
    pub pongs: u64,
}

impl Parser {
    pub fn new() -> Parser {
        Parser::default()
    }

    /// Feed bytes read from the socket. `on_msg(header_line_without_crlf, payload_len)`
    /// is called for each MSG/HMSG header (before its payload is consumed).
    /// Returns Err with the server's text on `-ERR` or a protocol error.
    #[inline]
    pub fn feed<F: FnMut(&[u8], usize)>(&mut self, mut data: &[u8], on_msg: &mut F) -> Result<(), String> {
        loop {
            if self.skip > 0 {
                if data.len() <= self.skip {
                    self.skip -= data.len();
                    return Ok(());
                }
                data = &data[self.skip..];
                self.skip = 0;
            }
            if data.is_empty() {
                return Ok(());
            }
            match memchr(b'\n', data) {
                None => {
                    self.partial.extend_from_slice(data);
                    if self.partial.len() > MAX_LINE {
                        return Err("protocol error: control line too long".into());
                    }
                    return Ok(());
                }
                Some(pos) => {
                    if self.partial.is_empty() {
                        self.line(&data[..pos], on_msg)?;
                    } else {
                        self.partial.extend_from_slice(&data[..pos]);
                        let p = std::mem::take(&mut self.partial);
                        let r = self.line(&p, on_msg);
                        self.partial = p;
                        self.partial.clear();
                        r?;
                    }
                    data = &data[pos + 1..];
                }
            }
        }
    }

    /// Convenience: feed without a per-message callback.
    #[inline]
    pub fn feed_count(&mut self, data: &[u8]) -> Result<(), String> {
        self.feed(data, &mut |_, _| {})
    }

    #[inline(always)]
    fn line<F: FnMut(&[u8], usize)>(&mut self, line: &[u8], on_msg: &mut F) -> Result<(), String> {
        let l = match line.last() {
            Some(b'\r') => &line[..line.len() - 1],
            _ => line,
        };
        if l.starts_with(b"MSG ") || l.starts_with(b"HMSG ") {
            let n = last_number(l).ok_or_else(|| format!("protocol error: bad MSG line {:?}", show(l)))?;
            self.msgs += 1;
            self.bytes += n as u64;
            self.skip = n + 2;
            on_msg(l, n);
        } else if l == b"PING" {
            self.pings += 1;
        } else if l == b"PONG" {
            self.pongs += 1;
        } else if l.starts_with(b"+OK") || l.starts_with(b"INFO") || l.is_empty() {
        } else if l.starts_with(b"-ERR") {
            return Err(format!("server error: {}", show(l)));
        } else {
            return Err(format!("protocol error: unexpected line {:?}", show(l)));
        }
        Ok(())
    }
}

pub fn show(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(&b[..b.len().min(200)]).into_owned();
    s
}

/// The decimal number after the last space of a line ("MSG foo 1 128" -> 128).
#[inline]
pub fn last_number(l: &[u8]) -> Option<usize> {
    let sp = memrchr(b' ', l)?;
    parse_usize(&l[sp + 1..])
}

#[inline]
pub fn parse_usize(d: &[u8]) -> Option<usize> {
    if d.is_empty() || d.len() > 19 {
        return None;
    }
    let mut n: usize = 0;
    for &c in d {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n * 10 + (c - b'0') as usize;
    }
    Some(n)
}

/// Split a MSG header line (no CRLF) into (subject, sid, reply).
pub fn msg_fields(l: &[u8]) -> Option<(&[u8], &[u8], Option<&[u8]>)> {
    let mut it = l.split(|&c| c == b' ').filter(|t| !t.is_empty());
    let op = it.next()?;
    if op != b"MSG" {
        return None;
    }
    let subj = it.next()?;
    let sid = it.next()?;
    let a = it.next()?;
    match it.next() {
        Some(_) => Some((subj, sid, Some(a))),
        None => Some((subj, sid, None)),
    }
}

/// Append `PUB subj [reply] len\r\n<payload>\r\n`.
#[inline]
pub fn push_pub(buf: &mut Vec<u8>, subj: &[u8], reply: Option<&[u8]>, payload: &[u8]) {
    buf.extend_from_slice(b"PUB ");
    buf.extend_from_slice(subj);
    buf.push(b' ');
    if let Some(r) = reply {
        buf.extend_from_slice(r);
        buf.push(b' ');
    }
    push_num(buf, payload.len() as u64);
    buf.extend_from_slice(b"\r\n");
    buf.extend_from_slice(payload);
    buf.extend_from_slice(b"\r\n");
}

#[inline]
pub fn push_num(buf: &mut Vec<u8>, mut n: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&tmp[i..]);
}

/// A payload of `size` printable bytes.
pub fn payload(size: usize) -> Vec<u8> {
    (0..size).map(|i| b'a' + (i % 26) as u8).collect()
}

/// "nats://user:pw@host:port,..." -> first host:port, resolved.
pub fn parse_url(url: &str) -> Result<SocketAddr, String> {
    let first = url.split(',').next().unwrap_or("").trim();
    let rest = first.split_once("://").map(|(_, r)| r).unwrap_or(first);
    let rest = rest.rsplit_once('@').map(|(_, h)| h).unwrap_or(rest);
    let rest = rest.trim_end_matches('/');
    let hp = if rest.contains(':') { rest.to_string() } else { format!("{rest}:4222") };
    hp.to_socket_addrs()
        .map_err(|e| format!("bad server url {url:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("bad server url {url:?}: no address"))
}

/// Blocking connect with TCP_NODELAY.
pub fn dial(addr: &SocketAddr) -> Result<TcpStream, String> {
    let s = TcpStream::connect_timeout(addr, Duration::from_secs(10)).map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_nodelay(true).ok();
    Ok(s)
}

/// Send CONNECT, `extra` (e.g. SUB lines, possibly megabytes) and PING, then
/// read until the PONG: when it arrives the server has processed everything
/// sent before it. Returns the parser (INFO, +OK consumed).
pub fn handshake(s: &mut TcpStream, extra: &[u8], timeout: Duration) -> Result<Parser, String> {
    let mut out = Vec::with_capacity(CONNECT.len() + extra.len().min(1 << 20) + 8);
    out.extend_from_slice(CONNECT);
    if extra.len() <= (1 << 20) {
        out.extend_from_slice(extra);
        out.extend_from_slice(b"PING\r\n");
        s.write_all(&out).map_err(|e| format!("write: {e}"))?;
    } else {
        s.write_all(&out).map_err(|e| format!("write: {e}"))?;
        for chunk in extra.chunks(1 << 20) {
            s.write_all(chunk).map_err(|e| format!("write: {e}"))?;
        }
        s.write_all(b"PING\r\n").map_err(|e| format!("write: {e}"))?;
    }
    wait_pong(s, Parser::new(), timeout)
}

/// Read until the parser has seen one more PONG than it had.
pub fn wait_pong(s: &mut TcpStream, mut p: Parser, timeout: Duration) -> Result<Parser, String> {
    let want = p.pongs + 1;
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; 64 * 1024];
    while p.pongs < want {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("no PONG within {:?}", timeout));
        }
        s.set_read_timeout(Some(left)).ok();
        match s.read(&mut buf) {
            Ok(0) => return Err("connection closed by server".into()),
            Ok(n) => {
                let pings = p.pings;
                p.feed_count(&buf[..n])?;
                for _ in pings..p.pings {
                    s.write_all(b"PONG\r\n").map_err(|e| format!("write: {e}"))?;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return Err(format!("no PONG within {:?}", timeout))
            }
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    s.set_read_timeout(None).ok();
    Ok(p)
}

/// utime+stime of a process, in nanoseconds (from /proc/PID/stat, clock-tick resolution).
pub fn proc_cpu_ns(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // after ") " field index 0 is `state` (field 3); utime is field 14, stime 15.
    let ut: u64 = f.get(11)?.parse().ok()?;
    let st: u64 = f.get(12)?.parse().ok()?;
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Some((ut + st) * 1_000_000_000 / hz.max(1))
}

/// Raise RLIMIT_NOFILE's soft limit to the hard limit.
pub fn raise_nofile() -> u64 {
    unsafe {
        let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 {
            if r.rlim_cur < r.rlim_max {
                r.rlim_cur = r.rlim_max;
                libc::setrlimit(libc::RLIMIT_NOFILE, &r);
            }
            return r.rlim_cur as u64;
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(p: &mut Parser, chunks: &[&[u8]]) -> Vec<(String, usize)> {
        let mut seen = Vec::new();
        for c in chunks {
            p.feed(c, &mut |l, n| seen.push((String::from_utf8_lossy(l).into_owned(), n))).unwrap();
        }
        seen
    }

    #[test]
    fn parses_msgs_in_one_chunk() {
        let mut p = Parser::new();
        let data = b"INFO {\"x\":1}\r\nMSG foo 1 5\r\nhello\r\nMSG foo 1 0\r\n\r\nPING\r\nPONG\r\n+OK\r\n";
        let seen = feed_all(&mut p, &[data]);
        assert_eq!(p.msgs, 2);
        assert_eq!(p.bytes, 5);
        assert_eq!(p.pings, 1);
        assert_eq!(p.pongs, 1);
        assert_eq!(seen, vec![("MSG foo 1 5".to_string(), 5), ("MSG foo 1 0".to_string(), 0)]);
    }

    #[test]
    fn parses_split_at_every_byte() {
        let data: &[u8] = b"MSG a.b 7 _INBOX.x.3 4\r\nab\r\n\r\nHMSG h 2 12 16\r\nNATS/1.0\r\n\r\nbody\r\nPONG\r\nMSG z 1 3\r\nMSG\r\n";
        for split in 1..data.len() {
            let mut p = Parser::new();
            let (a, b) = data.split_at(split);
            let seen = feed_all(&mut p, &[a, b]);
            assert_eq!(p.msgs, 3, "split {split}");
            assert_eq!(p.bytes, 4 + 16 + 3);
            assert_eq!(p.pongs, 1);
            assert_eq!(seen[0].0, "MSG a.b 7 _INBOX.x.3 4");
        }
        // byte at a time
        let mut p = Parser::new();
        let chunks: Vec<&[u8]> = data.chunks(1).collect();
        feed_all(&mut p, &chunks);
        assert_eq!(p.msgs, 3);
    }

    #[test]
    fn payload_with_crlf_inside_is_skipped() {
        let mut p = Parser::new();
        feed_all(&mut p, &[b"MSG foo 1 6\r\nPING\r\n\r\nPONG\r\n"]);
        assert_eq!((p.msgs, p.pings, p.pongs), (1, 0, 1));
    }

    #[test]
    fn err_and_garbage() {
        let mut p = Parser::new();
        let e = p.feed_count(b"-ERR 'Slow Consumer'\r\n").unwrap_err();
        assert!(e.contains("Slow Consumer"), "{e}");
        let mut p = Parser::new();
        assert!(p.feed_count(b"WAT\r\n").is_err());
        let mut p = Parser::new();
        assert!(p.feed_count(b"MSG foo 1 x\r\n").is_err());
    }

    #[test]
    fn fields_and_numbers() {
        assert_eq!(last_number(b"MSG foo 1 128"), Some(128));
        assert_eq!(last_number(b"MSG foo 1"), Some(1));
        assert_eq!(last_number(b"MSG"), None);
        let (s, sid, r) = msg_fields(b"MSG a 9 inbox.1 10").unwrap();
        assert_eq!((s, sid, r), (&b"a"[..], &b"9"[..], Some(&b"inbox.1"[..])));
        let (s, _, r) = msg_fields(b"MSG a 9 10").unwrap();
        assert_eq!((s, r), (&b"a"[..], None));
    }

    #[test]
    fn pub_frames() {
        let mut b = Vec::new();
        push_pub(&mut b, b"foo", None, b"hi");
        push_pub(&mut b, b"foo", Some(b"r.1"), b"");
        assert_eq!(&b[..], b"PUB foo 2\r\nhi\r\nPUB foo r.1 0\r\n\r\n");
        let mut b = Vec::new();
        push_num(&mut b, 0);
        b.push(b' ');
        push_num(&mut b, 18446744073709551615);
        assert_eq!(&b[..], b"0 18446744073709551615");
    }

    #[test]
    fn urls() {
        assert_eq!(parse_url("nats://127.0.0.1:4222").unwrap().port(), 4222);
        assert_eq!(parse_url("127.0.0.1:5000").unwrap().port(), 5000);
        assert_eq!(parse_url("nats://u:p@127.0.0.1:7,nats://x:1").unwrap().port(), 7);
        assert_eq!(parse_url("127.0.0.1").unwrap().port(), 4222);
    }
}

#[cfg(test)]
mod speed {
    /// `cargo test --release -- --ignored --nocapture parse_speed`
    #[test]
    #[ignore]
    fn parse_speed() {
        let mut frame = b"MSG foo 1 16\r\n".to_vec();
        frame.extend_from_slice(&super::payload(16));
        frame.extend_from_slice(b"\r\n");
        let data: Vec<u8> = frame.iter().cycle().take(frame.len() * 4_000_000).cloned().collect();
        let mut p = super::Parser::new();
        let t = std::time::Instant::now();
        for chunk in data.chunks(256 * 1024) {
            p.feed_count(chunk).unwrap();
        }
        let dt = t.elapsed().as_secs_f64();
        assert_eq!(p.msgs, 4_000_000);
        println!("parsed {} msgs in {:.3}s = {:.1} M msgs/s", p.msgs, dt, p.msgs as f64 / dt / 1e6);
    }
}
