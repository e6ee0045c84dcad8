//! Wire text the server writes: `+OK`, `PING`, `PONG`, every `-ERR` with its close/keep rule,
//! and what tern writes to routes: RMSG headers and interest (`RS+`/`RS-`). MSG lines are
//! built in `core/deliver.rs`.
//!
//! The error texts are nats-server 2.9's, byte for byte (see PROTOCOL-NOTES.md); each one is
//! defined once here together with whether the connection is closed after sending it.

pub const OK: &[u8] = b"+OK\r\n";
pub const PING: &[u8] = b"PING\r\n";
pub const PONG: &[u8] = b"PONG\r\n";

/// One `-ERR` the server can send, and whether the connection is closed after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WireErr {
    pub text: &'static str,
    pub closes: bool,
}

const fn closing(text: &'static str) -> WireErr {
    WireErr { text, closes: true }
}
const fn keeping(text: &'static str) -> WireErr {
    WireErr {
        text,
        closes: false,
    }
}

pub const ERR_UNKNOWN_OP: WireErr = closing("Unknown Protocol Operation");
pub const ERR_AUTH_VIOLATION: WireErr = closing("Authorization Violation");
pub const ERR_AUTH_TIMEOUT: WireErr = closing("Authentication Timeout");
pub const ERR_MAX_PAYLOAD: WireErr = closing("Maximum Payload Violation");
pub const ERR_MAX_CONTROL_LINE: WireErr = closing("maximum control line exceeded");
pub const ERR_MAX_CONNECTIONS: WireErr = closing("maximum connections exceeded");
pub const ERR_STALE: WireErr = closing("Stale Connection");
pub const ERR_BAD_PROTOCOL: WireErr = closing("invalid client protocol");
pub const ERR_NO_RESPONDERS_HEADERS: WireErr = closing("no responders requires headers support");
pub const ERR_INVALID_SUBJECT: WireErr = keeping("Invalid Subject");
pub const ERR_INVALID_PUB_SUBJECT: WireErr = keeping("Invalid Publish Subject");
pub const ERR_MAX_SUBS: WireErr = keeping("maximum subscriptions exceeded");

/// Quotes bytes the way Go's `%q` does, for the subjects quoted in error texts.
pub fn go_quote(b: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut q = String::with_capacity(b.len() + 2);
    q.push('"');
    for chunk in b.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => q.push_str("\\\""),
                '\\' => q.push_str("\\\\"),
                '\n' => q.push_str("\\n"),
                '\r' => q.push_str("\\r"),
                '\t' => q.push_str("\\t"),
                c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                    let _ = write!(q, "\\x{:02x}", c as u32);
                }
                c => q.push(c),
            }
        }
        for byte in chunk.invalid() {
            let _ = write!(q, "\\x{byte:02x}");
        }
    }
    q.push('"');
    q
}

/// Appends `-ERR '<text>'\r\n`.
pub fn write_err(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(b"-ERR '");
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(b"'\r\n");
}

/// Appends the header line of a message sent to a route:
/// `RMSG <account> <subject> [reply] <size>\r\n`, with queue targets
/// `RMSG <account> <subject> + <reply> <q1> <q2> <size>` or `... | <q1> <size>`, and `HMSG`
/// with `<hdr_len>` before the size when the message has headers. `queues` is a list of queue
/// names each followed by a space.
pub fn write_rmsg_head(
    out: &mut Vec<u8>,
    account: &[u8],
    subject: &[u8],
    reply: &[u8],
    queues: &[u8],
    hdr_size: Option<&[u8]>,
    size: &[u8],
) {
    out.extend_from_slice(if hdr_size.is_some() {
        b"HMSG "
    } else {
        b"RMSG "
    });
    out.extend_from_slice(account);
    out.push(b' ');
    out.extend_from_slice(subject);
    out.push(b' ');
    if !queues.is_empty() {
        if reply.is_empty() {
            out.extend_from_slice(b"| ");
        } else {
            out.extend_from_slice(b"+ ");
            out.extend_from_slice(reply);
            out.push(b' ');
        }
        out.extend_from_slice(queues);
    } else if !reply.is_empty() {
        out.extend_from_slice(reply);
        out.push(b' ');
    }
    if let Some(h) = hdr_size {
        out.extend_from_slice(h);
        out.push(b' ');
    }
    out.extend_from_slice(size);
    out.extend_from_slice(b"\r\n");
}

/// Writes `n` in decimal at the end of `buf` and returns the digits (no allocation).
pub fn digits(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

/// Appends a decimal number.
pub fn write_uint(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(digits(n, &mut [0u8; 20]));
}

/// The status message a requester gets when nobody is subscribed to its request subject.
pub fn write_no_responders(out: &mut Vec<u8>, reply: &[u8], sid: &[u8]) {
    const STATUS: &[u8] = b"NATS/1.0 503\r\n\r\n";
    out.extend_from_slice(b"HMSG ");
    out.extend_from_slice(reply);
    out.push(b' ');
    out.extend_from_slice(sid);
    out.extend_from_slice(b" 16 16\r\n");
    out.extend_from_slice(STATUS);
    out.extend_from_slice(b"\r\n");
}

/// `RS+ acc subject[ queue weight]` or, at zero, `RS- acc subject[ queue]`.
pub fn write_interest(
    out: &mut Vec<u8>,
    account: &[u8],
    subject: &[u8],
    queue: Option<&[u8]>,
    n: u32,
) {
    out.extend_from_slice(if n > 0 { b"RS+ " } else { b"RS- " });
    out.extend_from_slice(account);
    out.push(b' ');
    out.extend_from_slice(subject);
    if let Some(q) = queue {
        out.push(b' ');
        out.extend_from_slice(q);
        if n > 0 {
            out.push(b' ');
            write_uint(out, n as u64);
        }
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rmsg_heads() {
        let mut out = Vec::new();
        write_rmsg_head(&mut out, b"$G", b"foo", b"", b"", None, b"2");
        write_rmsg_head(&mut out, b"$G", b"foo", b"r", b"", None, b"2");
        write_rmsg_head(&mut out, b"$G", b"foo", b"r", b"q1 q2 ", None, b"2");
        write_rmsg_head(&mut out, b"$G", b"foo", b"", b"q1 ", Some(b"5"), b"7");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "RMSG $G foo 2\r\nRMSG $G foo r 2\r\nRMSG $G foo + r q1 q2 2\r\nHMSG $G foo | q1 5 7\r\n"
        );
    }

    #[test]
    fn errors_and_numbers() {
        let mut out = Vec::new();
        write_err(&mut out, ERR_UNKNOWN_OP.text);
        assert_eq!(out, b"-ERR 'Unknown Protocol Operation'\r\n");
        out.clear();
        write_uint(&mut out, 0);
        out.push(b' ');
        write_uint(&mut out, 18446744073709551615);
        assert_eq!(out, b"0 18446744073709551615");
    }

    #[test]
    fn quotes_like_go() {
        assert_eq!(go_quote(b"foo.bar"), "\"foo.bar\"");
        assert_eq!(go_quote(b"a\"b\\c\n\x01\xff"), r#""a\"b\\c\n\x01\xff""#);
    }

    #[test]
    fn no_responders_is_16_bytes_of_header() {
        let mut out = Vec::new();
        write_no_responders(&mut out, b"_INBOX.a", b"9");
        assert_eq!(out, b"HMSG _INBOX.a 9 16 16\r\nNATS/1.0 503\r\n\r\n\r\n");
    }
}
