//! The NATS protocol parser: bytes in, one borrowed frame (or "need more", or an error) out.
//!
//! It does no I/O and keeps no state between calls: `parse` looks at the start of a buffer,
//! recognises the operation case-insensitively, finds the line end with `memchr`, checks the
//! arguments and limits, and for PUB/HPUB/RMSG jumps over the declared payload size and
//! requires `\r\n` after it. A frame that is not all there yet yields `Incomplete(n)`, the
//! total length needed before it is worth calling again, so a split payload is never
//! rescanned (`n` stops at the payload's first terminator byte, where an error can be found:
//! split input must fail exactly as whole input does). The caller keeps the unconsumed tail;
//! that is the only copy a split frame costs.
//!
//! Limits are enforced here, where bytes arrive, for clients and routes alike: the
//! control-line limit applies to an incomplete line too (a peer cannot grow memory by never
//! sending `\r\n`), and max_payload is checked as soon as a PUB/HPUB/RMSG/HMSG line is
//! complete, before its payload is read.
//! Byte-level behaviour follows nats-server 2.9's parser.go (see PROTOCOL-NOTES.md).

use memchr::memchr;

/// Who is on the other end: clients and routes speak different verbs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    Client,
    Route,
}

/// Per-connection parameters of the parser.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub peer: Peer,
    pub max_control_line: usize,
    pub max_payload: usize,
    /// The client said `headers: true` in CONNECT; HPUB is refused otherwise.
    pub headers: bool,
}

/// A message frame: PUB, HPUB (client) or RMSG, HMSG (route).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Msg<'a> {
    /// Route messages name their account; empty for clients.
    pub account: &'a [u8],
    pub subject: &'a [u8],
    pub reply: &'a [u8],
    /// Route messages with `+`/`|` carry the queue groups they are meant for, space separated.
    pub queues: &'a [u8],
    /// The header length as written (HPUB/HMSG), `None` for plain messages.
    pub hdr_size: Option<&'a [u8]>,
    pub hdr_len: usize,
    /// The total size as written, echoed back in MSG headers.
    pub size: &'a [u8],
    /// The total size, parsed.
    pub len: usize,
    /// Headers plus body, without the trailing `\r\n`.
    pub payload: &'a [u8],
}

#[derive(Debug, PartialEq, Eq)]
pub enum Op<'a> {
    Connect(&'a [u8]),
    Info(&'a [u8]),
    Pub(Msg<'a>),
    Sub {
        subject: &'a [u8],
        queue: Option<&'a [u8]>,
        sid: &'a [u8],
    },
    /// `max` is nats-server's parse of the optional count: `-1` when absent or invalid.
    Unsub {
        sid: &'a [u8],
        max: i64,
    },
    Ping,
    Pong,
    Ok,
    Err(&'a [u8]),
    /// Route interest: `RS+ <account> <subject> [<queue> <weight>]`.
    RouteSub {
        account: &'a [u8],
        subject: &'a [u8],
        queue: Option<&'a [u8]>,
        weight: i64,
    },
    /// `RS- <account> <subject> [<queue>]`.
    RouteUnsub {
        account: &'a [u8],
        subject: &'a [u8],
        queue: Option<&'a [u8]>,
    },
}

/// Why a buffer cannot be parsed. Each maps to one wire reaction in the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// `-ERR 'Unknown Protocol Operation'`, close.
    UnknownOp,
    /// `-ERR 'maximum control line exceeded'`, close.
    MaxControlLine,
    /// `-ERR 'Maximum Payload Violation'`, close.
    MaxPayload,
    /// Malformed arguments: nats-server logs and closes without an `-ERR`.
    BadArgs(&'static str),
}

#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// A complete frame and how many bytes it used.
    Frame(Op<'a>, usize),
    /// Not enough bytes yet; call again once the buffer holds at least this many.
    Incomplete(usize),
    Fail(Failure),
}

/// The verbs, in the shape that decides how their line is read.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Verb {
    Pub,
    Hpub,
    Sub,
    Unsub,
    Ping,
    Pong,
    Ok,
    Err,
    Connect,
    Info,
    Hmsg,
    Rmsg,
    RsSub,
    RsUnsub,
}

/// Compares `buf` with `word` case-insensitively: `Some(true)` if the whole word is there,
/// `Some(false)` if the buffer ends inside a matching prefix, `None` on a mismatch.
fn match_word(buf: &[u8], word: &[u8]) -> Option<bool> {
    let n = buf.len().min(word.len());
    if buf[..n].eq_ignore_ascii_case(&word[..n]) {
        Some(n == word.len())
    } else {
        None
    }
}

/// What the start of a buffer spells.
enum Spelled {
    /// A verb, and the length of its spelling.
    Verb(Verb, usize),
    /// A prefix of a verb: more bytes are needed.
    Partial,
    Unknown,
}

/// Recognises the verb at the start of (non-empty) `buf`.
fn verb(buf: &[u8], peer: Peer) -> Spelled {
    let upper = |i: usize| buf.get(i).map(|c| c.to_ascii_uppercase());
    let (word, v): (&[u8], Verb) = match (upper(0), upper(1)) {
        (Some(b'P'), Some(b'U')) => (b"PUB", Verb::Pub),
        (Some(b'P'), Some(b'I')) => (b"PING", Verb::Ping),
        (Some(b'P'), Some(b'O')) => (b"PONG", Verb::Pong),
        (Some(b'H'), Some(b'P')) => (b"HPUB", Verb::Hpub),
        (Some(b'H'), Some(b'M')) => (b"HMSG", Verb::Hmsg),
        (Some(b'P' | b'H'), None) => return Spelled::Partial,
        (Some(b'S'), _) => (b"SUB", Verb::Sub),
        (Some(b'U'), _) => (b"UNSUB", Verb::Unsub),
        (Some(b'C'), _) => (b"CONNECT", Verb::Connect),
        (Some(b'I'), _) => (b"INFO", Verb::Info),
        (Some(b'+'), _) => (b"+OK", Verb::Ok),
        (Some(b'-'), _) => (b"-ERR", Verb::Err),
        (Some(b'R'), second) if peer == Peer::Route => match (second, buf.get(2)) {
            (Some(b'M'), _) => (b"RMSG", Verb::Rmsg),
            (Some(b'S'), Some(b'+')) => (b"RS+", Verb::RsSub),
            (Some(b'S'), Some(b'-')) => (b"RS-", Verb::RsUnsub),
            (None, _) | (Some(b'S'), None) => return Spelled::Partial,
            _ => return Spelled::Unknown,
        },
        _ => return Spelled::Unknown,
    };
    match match_word(buf, word) {
        Some(true) => Spelled::Verb(v, word.len()),
        Some(false) => Spelled::Partial,
        None => Spelled::Unknown,
    }
}

/// Whether the verb carries arguments (PING, PONG and +OK ignore the rest of their line).
fn has_args(v: Verb) -> bool {
    !matches!(v, Verb::Ping | Verb::Pong | Verb::Ok)
}

/// nats-server's parseSize: 1 to 9 ASCII digits, anything else is -1.
pub fn parse_size(d: &[u8]) -> i64 {
    if d.is_empty() || d.len() > 9 {
        return -1;
    }
    let mut n: i64 = 0;
    for &c in d {
        if !c.is_ascii_digit() {
            return -1;
        }
        n = n * 10 + (c - b'0') as i64;
    }
    n
}

/// Splits arguments on spaces and tabs into `out`; returns how many there were (which may
/// exceed `out.len()`, meaning "too many").
fn split_args<'a>(arg: &'a [u8], out: &mut [&'a [u8]]) -> usize {
    let mut n = 0;
    for part in arg.split(|&b| b == b' ' || b == b'\t') {
        if part.is_empty() {
            continue;
        }
        if n < out.len() {
            out[n] = part;
        }
        n += 1;
    }
    n
}

/// The common case, `PUB <subject> [reply] <size>\r\n` spelled exactly so (upper case,
/// single spaces, CRLF), complete up to its line end and within limits. Anything else is
/// `None` and goes to the general parser, which also gives every error its exact reaction.
#[inline(always)]
pub(super) fn fast_pub<'a>(buf: &'a [u8], lim: &Limits) -> Option<Parsed<'a>> {
    let nl = 4 + memchr(b'\n', &buf[4..])?;
    let line = buf[4..nl].strip_suffix(b"\r")?;
    if line.len() > lim.max_control_line || memchr(b'\t', line).is_some() {
        return None;
    }
    let s1 = memchr(b' ', line)?;
    let (subject, rest) = (&line[..s1], &line[s1 + 1..]);
    let (reply, size) = match memchr(b' ', rest) {
        Some(s2) => (&rest[..s2], &rest[s2 + 1..]),
        None => (&rest[..0], rest),
    };
    let total = parse_size(size);
    if subject.is_empty()
        || (reply.is_empty() && rest.len() != size.len())
        || total < 0
        || total as u64 > lim.max_payload as u64
    {
        return None;
    }
    let msg = Msg {
        account: b"",
        subject,
        reply,
        queues: b"",
        hdr_size: None,
        hdr_len: 0,
        size,
        len: total as usize,
        payload: &size[..0],
    };
    Some(with_payload(buf, nl + 1, msg))
}

/// Parses the frame at the start of `buf`.
#[inline(always)]
pub fn parse<'a>(buf: &'a [u8], lim: &Limits) -> Parsed<'a> {
    if buf.is_empty() {
        return Parsed::Incomplete(1);
    }
    if lim.peer == Peer::Client && buf.starts_with(b"PUB ") {
        if let Some(p) = fast_pub(buf, lim) {
            return p;
        }
    }
    parse_general(buf, lim)
}

/// Every frame, every error: the parser proper (`parse` only adds the PUB fast path).
pub(super) fn parse_general<'a>(buf: &'a [u8], lim: &Limits) -> Parsed<'a> {
    let (verb, wlen) = match verb(buf, lim.peer) {
        Spelled::Verb(v, n) => (v, n),
        Spelled::Partial => return Parsed::Incomplete(buf.len() + 1),
        Spelled::Unknown => return Parsed::Fail(Failure::UnknownOp),
    };
    // Verbs with arguments need at least one blank after the word; CONNECT and INFO may run
    // straight into theirs; PING, PONG and +OK ignore everything up to the newline.
    let needs_blank = !matches!(
        verb,
        Verb::Ping | Verb::Pong | Verb::Ok | Verb::Connect | Verb::Info
    );
    let mut start = wlen;
    if needs_blank || matches!(verb, Verb::Connect | Verb::Info) {
        match buf.get(start) {
            None => return Parsed::Incomplete(buf.len() + 1),
            Some(b' ' | b'\t') => {}
            Some(_) if needs_blank => return Parsed::Fail(Failure::UnknownOp),
            Some(_) => {}
        }
        while let Some(b' ' | b'\t') = buf.get(start) {
            start += 1;
        }
    }
    let Some(nl) = memchr(b'\n', &buf[start..]).map(|i| start + i) else {
        let mut pending = buf.len() - start;
        if buf.last() == Some(&b'\r') {
            pending -= 1;
        }
        if pending > lim.max_control_line {
            return Parsed::Fail(Failure::MaxControlLine);
        }
        return Parsed::Incomplete(buf.len() + 1);
    };
    let line_len = nl + 1;
    let mut arg = &buf[start.min(nl)..nl];
    if let [rest @ .., b'\r'] = arg {
        arg = rest;
    }
    // PING, PONG and +OK ignore what follows them, so only their incomplete lines are held
    // to the limit (to bound memory; nats-server drops those bytes as they come).
    if has_args(verb) && arg.len() > lim.max_control_line {
        return Parsed::Fail(Failure::MaxControlLine);
    }
    frame(verb, buf, arg, line_len, lim)
}

/// The frame a complete line makes: verb `verb` with argument `arg`, the line `line_len`
/// bytes long at the start of `buf` (a message's payload follows it there).
#[inline]
fn frame<'a>(
    verb: Verb,
    buf: &'a [u8],
    arg: &'a [u8],
    line_len: usize,
    lim: &Limits,
) -> Parsed<'a> {
    let frame = |op| Parsed::Frame(op, line_len);
    match verb {
        Verb::Ping => frame(Op::Ping),
        Verb::Pong => frame(Op::Pong),
        Verb::Ok => frame(Op::Ok),
        Verb::Err => frame(Op::Err(arg)),
        Verb::Connect => frame(Op::Connect(arg)),
        Verb::Info => frame(Op::Info(arg)),
        Verb::Sub => {
            let mut a = [&b""[..]; 3];
            match split_args(arg, &mut a) {
                2 => frame(Op::Sub {
                    subject: a[0],
                    queue: None,
                    sid: a[1],
                }),
                3 => frame(Op::Sub {
                    subject: a[0],
                    queue: Some(a[1]),
                    sid: a[2],
                }),
                _ => Parsed::Fail(Failure::BadArgs("processSub Parse Error")),
            }
        }
        Verb::Unsub => {
            let mut a = [&b""[..]; 2];
            match split_args(arg, &mut a) {
                1 => frame(Op::Unsub { sid: a[0], max: -1 }),
                2 => frame(Op::Unsub {
                    sid: a[0],
                    max: parse_size(a[1]),
                }),
                _ => Parsed::Fail(Failure::BadArgs("processUnsub Parse Error")),
            }
        }
        Verb::RsSub | Verb::RsUnsub => route_interest(verb, arg, line_len),
        Verb::Pub | Verb::Hpub | Verb::Hmsg | Verb::Rmsg => {
            let msg = match verb {
                Verb::Pub => client_pub(arg, lim, false),
                Verb::Hpub => client_pub(arg, lim, true),
                Verb::Hmsg if lim.peer == Peer::Client => Ok(client_hmsg()),
                _ => route_msg(arg, lim, verb == Verb::Hmsg),
            };
            match msg {
                Ok(msg) => with_payload(buf, line_len, msg),
                Err(f) => Parsed::Fail(f),
            }
        }
    }
}

/// PUB `<subject> [reply] <size>` / HPUB `<subject> [reply] <hdr_len> <total_len>`.
fn client_pub<'a>(arg: &'a [u8], lim: &Limits, hpub: bool) -> Result<Msg<'a>, Failure> {
    if hpub && !lim.headers {
        return Err(Failure::BadArgs("message headers not supported"));
    }
    let mut a = [&b""[..]; 4];
    let n = split_args(arg, &mut a);
    let (subject, reply, hdr, size) = match (hpub, n) {
        (false, 2) => (a[0], &b""[..], None, a[1]),
        (false, 3) => (a[0], a[1], None, a[2]),
        (true, 3) => (a[0], &b""[..], Some(a[1]), a[2]),
        (true, 4) => (a[0], a[1], Some(a[2]), a[3]),
        _ => return Err(Failure::BadArgs("processPub Parse Error")),
    };
    let total = parse_size(size);
    let hdr_len = match hdr {
        Some(h) => {
            let h = parse_size(h);
            if h < 0 {
                return Err(Failure::BadArgs(
                    "processHeaderPub Bad or Missing Header Size",
                ));
            }
            h
        }
        None => 0,
    };
    if total < 0 {
        return Err(Failure::BadArgs("processPub Bad or Missing Size"));
    }
    if hdr_len > total {
        return Err(Failure::BadArgs(
            "processHeaderPub Header Size larger then TotalSize",
        ));
    }
    if total as u64 > lim.max_payload as u64 {
        return Err(Failure::MaxPayload);
    }
    Ok(Msg {
        account: b"",
        subject,
        reply,
        queues: b"",
        // nats-server treats a zero header length as no headers at all.
        hdr_size: hdr.filter(|_| hdr_len > 0),
        hdr_len: hdr_len as usize,
        size,
        len: total as usize,
        payload: &size[..0],
    })
}

/// A client sending HMSG gets what nats-server 2.9 does: the line is taken as an empty
/// publish to no subject (answered with +OK in verbose mode, delivered to nobody).
fn client_hmsg() -> Msg<'static> {
    Msg {
        account: b"",
        subject: b"",
        reply: b"",
        queues: b"",
        hdr_size: None,
        hdr_len: 0,
        size: b"0",
        len: 0,
        payload: b"",
    }
}

/// RMSG `<account> <subject> [reply] <size>`, or with queue targets
/// `<account> <subject> + <reply> <q...> <size>` / `<account> <subject> | <q...> <size>`;
/// HMSG has `<hdr_len>` before the size.
fn route_msg<'a>(arg: &'a [u8], lim: &Limits, headers: bool) -> Result<Msg<'a>, Failure> {
    const MAX: usize = 64;
    let mut a = [&b""[..]; MAX];
    let n = split_args(arg, &mut a);
    let fixed = if headers { 4 } else { 3 };
    if n < fixed || n > MAX {
        return Err(Failure::BadArgs("processRoutedMsgArgs Parse Error"));
    }
    let size = a[n - 1];
    let hdr = if headers { Some(a[n - 2]) } else { None };
    let middle = &a[2..n - if headers { 2 } else { 1 }];
    let (reply, queues): (&[u8], &[u8]) = match middle {
        [] => (b"", b""),
        [r] => (r, b""),
        [marker, rest @ ..] if *marker == b"+" && !rest.is_empty() => {
            (rest[0], span(arg, &rest[1..]))
        }
        [marker, rest @ ..] if *marker == b"|" => (b"", span(arg, rest)),
        _ => return Err(Failure::BadArgs("processRoutedMsgArgs Parse Error")),
    };
    let total = parse_size(size);
    let hdr_len = match hdr {
        Some(h) => parse_size(h),
        None => 0,
    };
    if total < 0 || hdr_len < 0 || hdr_len > total {
        return Err(Failure::BadArgs("processRoutedMsgArgs Bad or Missing Size"));
    }
    // nats-server 2.9 sets no payload limit on routes; a peer could then declare 999999999
    // bytes and have that much buffered. Routes get the clients' limit instead.
    if total as u64 > lim.max_payload as u64 {
        return Err(Failure::MaxPayload);
    }
    Ok(Msg {
        account: a[0],
        subject: a[1],
        reply,
        queues,
        hdr_size: hdr.filter(|_| hdr_len > 0),
        hdr_len: hdr_len as usize,
        size,
        len: total as usize,
        payload: &size[..0],
    })
}

/// The sub-slice of `arg` that spans the given consecutive arguments.
fn span<'a>(arg: &'a [u8], parts: &[&'a [u8]]) -> &'a [u8] {
    match (parts.first(), parts.last()) {
        (Some(first), Some(last)) => {
            let base = arg.as_ptr() as usize;
            let from = first.as_ptr() as usize - base;
            let to = last.as_ptr() as usize - base + last.len();
            &arg[from..to]
        }
        _ => b"",
    }
}

fn route_interest(verb: Verb, arg: &[u8], line_len: usize) -> Parsed<'_> {
    let mut a = [&b""[..]; 4];
    let n = split_args(arg, &mut a);
    let op = match (verb, n) {
        (Verb::RsSub, 2) => Op::RouteSub {
            account: a[0],
            subject: a[1],
            queue: None,
            weight: 0,
        },
        (Verb::RsSub, 3) => Op::RouteSub {
            account: a[0],
            subject: a[1],
            queue: Some(a[2]),
            weight: 1,
        },
        (Verb::RsSub, 4) => Op::RouteSub {
            account: a[0],
            subject: a[1],
            queue: Some(a[2]),
            weight: parse_size(a[3]).max(1),
        },
        (Verb::RsUnsub, 2) => Op::RouteUnsub {
            account: a[0],
            subject: a[1],
            queue: None,
        },
        (Verb::RsUnsub, 3) => Op::RouteUnsub {
            account: a[0],
            subject: a[1],
            queue: Some(a[2]),
        },
        _ => return Parsed::Fail(Failure::BadArgs("processRemoteSub Parse Error")),
    };
    Parsed::Frame(op, line_len)
}

/// Completes a message frame: the payload of the declared size, then `\r\n`.
#[inline(always)]
fn with_payload<'a>(buf: &'a [u8], line_len: usize, mut msg: Msg<'a>) -> Parsed<'a> {
    let end = line_len + msg.len;
    // nats-server checks the terminator byte by byte, so a wrong byte after the payload is
    // an error at once, without waiting for the rest. So the connection must come back as
    // soon as the first terminator byte is there: a wrong one may be the last byte it gets.
    match buf.get(end) {
        None => return Parsed::Incomplete(end + 1),
        Some(b'\r') => {}
        Some(_) => return Parsed::Fail(Failure::UnknownOp),
    }
    match buf.get(end + 1) {
        None => return Parsed::Incomplete(end + 2),
        Some(b'\n') => {}
        Some(_) => return Parsed::Fail(Failure::UnknownOp),
    }
    msg.payload = &buf[line_len..end];
    Parsed::Frame(Op::Pub(msg), end + 2)
}
