//! The monitoring port's HTTP/1.1: a small server of our own, run by the same poll loop.
//!
//! `parse` is I/O-free: bytes in, a complete request (method, path, query, keep-alive) or
//! "need more" or an error status out. Requests are bounded (`MAX_REQUEST`), only GET and
//! HEAD are served, bodies are refused, pipelined requests are answered in order.
//! `HttpConn` holds one monitoring connection's buffers; a connection must send a complete
//! request within `REQUEST_TIMEOUT` and is dropped after `IDLE_TIMEOUT` without one, so slow
//! or stuck clients cost a few bytes and never block the loop. A body is framed by its
//! `Content-Length` when it is complete before the head is written, otherwise chunked
//! (HTTP/1.1) or ended by closing the connection (HTTP/1.0), as Go's net/http does.

use crate::conn::io::{read_into, write_out, ReadOutcome};
use mio::net::TcpStream;
use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::time::{Duration, Instant};

/// Largest request head accepted (request line and headers).
pub const MAX_REQUEST: usize = 8 * 1024;
/// Monitoring connections open at once; past it, a new one takes the slot of the oldest
/// idle one (`monitor::source`).
pub const MAX_CONNS: usize = 256;
/// A request must be complete this long after it started arriving.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A kept-alive connection with no new request is closed after this long.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub keep_alive: bool,
    /// HTTP/1.1 (chunked bodies allowed), not 1.0.
    pub http11: bool,
}

impl Request {
    /// The first value of a query parameter.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A request and the number of bytes it used.
    Request(Request, usize),
    Incomplete,
    /// Answer with this status and close.
    Bad(u16),
}

/// Decodes `%XX` and `+` in a query component.
fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses the request at the start of `buf`.
pub fn parse(buf: &[u8]) -> Parsed {
    let Some(end) = memchr::memmem::find(buf, b"\r\n\r\n") else {
        return if buf.len() > MAX_REQUEST {
            Parsed::Bad(431)
        } else {
            Parsed::Incomplete
        };
    };
    if end > MAX_REQUEST {
        return Parsed::Bad(431);
    }
    let Ok(head) = std::str::from_utf8(&buf[..end]) else {
        return Parsed::Bad(400);
    };
    let mut lines = head.split("\r\n");
    let mut parts = lines.next().unwrap_or_default().split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Parsed::Bad(400);
    };
    let http11 = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        // A well-formed version we do not speak is 505; anything else is malformed (400).
        v if v
            .strip_prefix("HTTP/")
            .and_then(|n| n.split_once('.'))
            .is_some_and(|(a, b)| {
                !a.is_empty()
                    && !b.is_empty()
                    && a.bytes().chain(b.bytes()).all(|c| c.is_ascii_digit())
            }) =>
        {
            return Parsed::Bad(505)
        }
        _ => return Parsed::Bad(400),
    };
    if method.is_empty() || !target.starts_with('/') {
        return Parsed::Bad(400);
    }
    let mut keep_alive = http11;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Parsed::Bad(400);
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("connection") {
            if value.eq_ignore_ascii_case("close") {
                keep_alive = false;
            } else if value.eq_ignore_ascii_case("keep-alive") {
                keep_alive = true;
            }
        } else if (name.eq_ignore_ascii_case("content-length") && value != "0")
            || name.eq_ignore_ascii_case("transfer-encoding")
        {
            // No endpoint takes a body; refusing them keeps framing trivial.
            return Parsed::Bad(413);
        }
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let query = query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (url_decode(k), url_decode(v))
        })
        .collect();
    Parsed::Request(
        Request {
            method: method.to_string(),
            path: url_decode(path),
            query,
            keep_alive,
            http11,
        },
        end + 4,
    )
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    }
}

/// A response to write.
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Response {
    pub fn new(status: u16, content_type: &'static str, body: String) -> Response {
        Response {
            status,
            content_type,
            body,
        }
    }

    pub fn text(status: u16, body: &str) -> Response {
        Response::new(status, "text/plain; charset=utf-8", format!("{body}\n"))
    }
}

/// How the end of a body is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    Length(usize),
    /// `Transfer-Encoding: chunked` (HTTP/1.1).
    Chunked,
    /// The connection closes after the body (HTTP/1.0).
    UntilClose,
}

/// Appends a response head.
pub fn write_head(
    out: &mut Vec<u8>,
    status: u16,
    content_type: &str,
    framing: Framing,
    keep_alive: bool,
) {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\n",
        status,
        reason(status),
        content_type
    );
    match framing {
        Framing::Length(n) => {
            let _ = write!(head, "Content-Length: {n}\r\n");
        }
        Framing::Chunked => head.push_str("Transfer-Encoding: chunked\r\n"),
        Framing::UntilClose => {}
    }
    if status == 405 {
        head.push_str("Allow: GET, HEAD\r\n");
    }
    head.push_str(if keep_alive && framing != Framing::UntilClose {
        "Connection: keep-alive\r\n\r\n"
    } else {
        "Connection: close\r\n\r\n"
    });
    out.extend_from_slice(head.as_bytes());
}

/// Appends one chunk of a chunked body (an empty `data` would end it: nothing is written).
pub fn write_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if !data.is_empty() {
        let _ = write!(out, "{:x}\r\n", data.len());
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    }
}

/// Ends a chunked body.
pub fn end_chunks(out: &mut Vec<u8>) {
    out.extend_from_slice(b"0\r\n\r\n");
}

/// Appends the response bytes (headers, and the body unless `head_only`).
pub fn write_response(out: &mut Vec<u8>, r: &Response, keep_alive: bool, head_only: bool) {
    let framing = Framing::Length(r.body.len());
    write_head(out, r.status, r.content_type, framing, keep_alive);
    if !head_only {
        out.extend_from_slice(r.body.as_bytes());
    }
}

/// How far `fill` read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fill {
    /// Until WouldBlock: nothing more until the next readiness event.
    Drained,
    /// Stopped at the buffer limit: more may be waiting in the socket.
    Limited,
    /// The peer closed, or the socket failed.
    Closed,
}

/// Responses buffered for one connection before its requests are left unread (a client
/// that pipelines without reading cannot grow our memory).
pub const OUT_LIMIT: usize = 1024 * 1024;

/// One monitoring connection.
pub struct HttpConn {
    pub sock: TcpStream,
    inbuf: Vec<u8>,
    pub out: Vec<u8>,
    out_pos: usize,
    /// Closed when this passes without a complete request.
    pub deadline: Instant,
    /// Close once `out` is written.
    pub closing: bool,
    pub want_write: bool,
}

impl HttpConn {
    pub fn new(sock: TcpStream, now: Instant) -> HttpConn {
        HttpConn {
            sock,
            inbuf: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            deadline: now + REQUEST_TIMEOUT,
            closing: false,
            want_write: false,
        }
    }

    /// Reads what is available, stopping past the request limit (the socket may then hold
    /// more: read again once buffered requests are answered).
    pub fn fill(&mut self) -> Fill {
        let mut buf = [0u8; 4096];
        loop {
            if self.inbuf.len() > MAX_REQUEST + 4 {
                return Fill::Limited;
            }
            match read_into(&mut self.sock, &mut buf) {
                ReadOutcome::Data(n) => self.inbuf.extend_from_slice(&buf[..n]),
                ReadOutcome::WouldBlock => return Fill::Drained,
                ReadOutcome::Closed(_) => return Fill::Closed,
            }
        }
    }

    /// The next complete request, if any (errors become a final response).
    pub fn next_request(&mut self, now: Instant) -> Option<Result<Request, u16>> {
        if self.closing {
            return None;
        }
        match parse(&self.inbuf) {
            Parsed::Incomplete => None,
            Parsed::Bad(status) => {
                self.closing = true;
                Some(Err(status))
            }
            Parsed::Request(req, used) => {
                self.inbuf.drain(..used);
                self.deadline = now
                    + if self.inbuf.is_empty() {
                        IDLE_TIMEOUT
                    } else {
                        REQUEST_TIMEOUT
                    };
                if !req.keep_alive {
                    self.closing = true;
                }
                Some(Ok(req))
            }
        }
    }

    /// Output not written yet.
    pub fn unsent(&self) -> usize {
        self.out.len() - self.out_pos
    }

    /// Writes pending output; `Ok(true)` when all of it went.
    pub fn flush(&mut self) -> io::Result<bool> {
        // A long response keeps being appended to: once 64 KiB went, drop what was written,
        // so the buffer holds only the unsent part.
        let w = write_out(
            &mut self.sock,
            &mut self.out,
            &mut self.out_pos,
            64 * 1024 - 1,
        )?;
        Ok(w.done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(s: &str) -> Parsed {
        parse(s.as_bytes())
    }

    #[test]
    fn parses_get_with_query() {
        let text =
            "GET /connz?limit=2&sort=bytes_to&subs=1&x=a%20b+c HTTP/1.1\r\nHost: x\r\n\r\nGET";
        let Parsed::Request(r, n) = req(text) else {
            panic!()
        };
        assert_eq!(n, text.len() - 3, "the next request's bytes are left");
        assert_eq!(
            (r.method.as_str(), r.path.as_str(), r.keep_alive),
            ("GET", "/connz", true)
        );
        assert_eq!(r.param("limit"), Some("2"));
        assert_eq!(r.param("x"), Some("a b c"));
        assert_eq!(r.param("nope"), None);
    }

    #[test]
    fn keep_alive_rules() {
        let ka = |s: &str| match req(s) {
            Parsed::Request(r, _) => r.keep_alive,
            other => panic!("{other:?}"),
        };
        assert!(!ka("GET / HTTP/1.0\r\n\r\n"));
        assert!(ka("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
        assert!(!ka("GET / HTTP/1.1\r\nconnection: Close\r\n\r\n"));
    }

    #[test]
    fn bad_requests() {
        assert_eq!(req("GET / HTTP/1.1\r\n"), Parsed::Incomplete);
        assert_eq!(req("GET /\r\n\r\n"), Parsed::Bad(400));
        assert_eq!(req("GET / HTTP/2.0\r\n\r\n"), Parsed::Bad(505));
        assert_eq!(req("GET / HTTP/1\r\n\r\n"), Parsed::Bad(400));
        assert_eq!(req("GET / FOO/1.1\r\n\r\n"), Parsed::Bad(400));
        assert_eq!(req("GET / HTTP/x.y\r\n\r\n"), Parsed::Bad(400));
        assert_eq!(req("GET x HTTP/1.1\r\n\r\n"), Parsed::Bad(400));
        assert_eq!(req("GET / HTTP/1.1\r\nnocolon\r\n\r\n"), Parsed::Bad(400));
        assert_eq!(
            req("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n"),
            Parsed::Bad(413)
        );
        let huge = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_REQUEST));
        assert_eq!(req(&huge), Parsed::Bad(431));
        let endless = "a".repeat(MAX_REQUEST + 1);
        assert_eq!(req(&endless), Parsed::Bad(431));
        assert_eq!(parse(b"GET /\xff HTTP/1.1\r\n\r\n"), Parsed::Bad(400));
    }

    #[test]
    fn url_decoding_is_total() {
        assert_eq!(url_decode("%41%zz%4"), "A%zz%4");
        assert_eq!(url_decode("%"), "%");
        for i in 0..=255u8 {
            let _ = url_decode(&format!("%{:02x}{}", i, "%"));
        }
    }

    #[test]
    fn responses() {
        let mut out = Vec::new();
        write_response(&mut out, &Response::text(404, "nope"), true, false);
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert!(s.contains("Content-Length: 5\r\n") && s.ends_with("\r\n\r\nnope\n"));
        let mut out = Vec::new();
        write_response(&mut out, &Response::text(405, "x"), false, true);
        let s = String::from_utf8(out).unwrap();
        assert!(s.contains("Allow: GET, HEAD") && s.ends_with("Connection: close\r\n\r\n"));
    }
}
