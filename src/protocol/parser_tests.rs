//! Tests of the protocol parser: every verb, limits, split input, and the fast PUB path
//! against the general parser.

use super::parser::*;

const CLIENT: Limits = Limits {
    peer: Peer::Client,
    max_control_line: 4096,
    max_payload: 1 << 20,
    headers: true,
};
const ROUTE: Limits = Limits {
    peer: Peer::Route,
    ..CLIENT
};

/// Parses a whole buffer frame by frame, the way a connection does.
fn all<'a>(mut buf: &'a [u8], lim: &Limits) -> (Vec<Op<'a>>, Option<Parsed<'a>>) {
    let mut ops = Vec::new();
    loop {
        match parse(buf, lim) {
            Parsed::Frame(op, n) => {
                ops.push(op);
                buf = &buf[n..];
                if buf.is_empty() {
                    return (ops, None);
                }
            }
            other => return (ops, Some(other)),
        }
    }
}

fn msg<'a>(subject: &'a [u8], reply: &'a [u8], size: &'a [u8], payload: &'a [u8]) -> Op<'a> {
    Op::Pub(Msg {
        account: b"",
        subject,
        reply,
        queues: b"",
        hdr_size: None,
        hdr_len: 0,
        size,
        len: payload.len(),
        payload,
    })
}

#[test]
fn every_client_frame() {
    let input =
        b"CONNECT {\"verbose\":false}\r\nPUB foo 3\r\nabc\r\npub foo.bar _INBOX.1 0\r\n\r\n\
            HPUB h 7 9\r\nHDR\r\n\r\nxx\r\nSUB foo 1\r\nsub foo q 2\r\nUNSUB 1\r\nunsub 2 5\r\n\
            PING\r\nPONG\r\n+OK\r\n-ERR 'x'\r\nINFO {}\r\n";
    let (ops, rest) = all(input, &CLIENT);
    assert_eq!(rest, None, "stopped after {:?}", ops.last());
    assert_eq!(
        ops,
        vec![
            Op::Connect(b"{\"verbose\":false}"),
            msg(b"foo", b"", b"3", b"abc"),
            msg(b"foo.bar", b"_INBOX.1", b"0", b""),
            Op::Pub(Msg {
                account: b"",
                subject: b"h",
                reply: b"",
                queues: b"",
                hdr_size: Some(b"7"),
                hdr_len: 7,
                size: b"9",
                len: 9,
                payload: b"HDR\r\n\r\nxx"
            }),
            Op::Sub {
                subject: b"foo",
                queue: None,
                sid: b"1"
            },
            Op::Sub {
                subject: b"foo",
                queue: Some(b"q"),
                sid: b"2"
            },
            Op::Unsub { sid: b"1", max: -1 },
            Op::Unsub { sid: b"2", max: 5 },
            Op::Ping,
            Op::Pong,
            Op::Ok,
            Op::Err(b"'x'"),
            Op::Info(b"{}"),
        ]
    );
}

/// Every split point of every frame: the prefix is Incomplete (never a frame, never an
/// error) and asks for more than it has; the whole gives the frame.
#[test]
fn every_split_point() {
    let frames: &[&[u8]] = &[
        b"CONNECT {\"verbose\":false}\r\n",
        b"PUB foo 3\r\nabc\r\n",
        b"PUB foo reply 0\r\n\r\n",
        b"HPUB foo r 12 14\r\nNATS/1.0\r\n\r\nhi\r\n",
        b"SUB foo.* q 1\r\n",
        b"UNSUB 1 10\r\n",
        b"PING\r\n",
        b"PONG\r\n",
        b"+OK\r\n",
        b"-ERR 'x'\r\n",
        b"INFO {\"a\":1}\r\n",
        b"pub\tfoo\t\t2\r\nhi\r\n",
    ];
    for f in frames {
        for cut in 0..f.len() {
            match parse(&f[..cut], &CLIENT) {
                Parsed::Incomplete(n) => {
                    assert!(n > cut && n <= f.len(), "{:?} cut {}", f, cut)
                }
                other => panic!(
                    "{:?} cut at {}: {:?}",
                    String::from_utf8_lossy(f),
                    cut,
                    other
                ),
            }
        }
        match parse(f, &CLIENT) {
            Parsed::Frame(_, n) => assert_eq!(n, f.len()),
            other => panic!("{:?}: {:?}", String::from_utf8_lossy(f), other),
        }
    }
}

/// What a connection makes of `reads`: the frames, then how it ends. It parses only once
/// its buffer holds what the last `Incomplete` asked for, as `core/input.rs` does with `need`.
fn as_connection(reads: &[&[u8]], lim: &Limits) -> (Vec<String>, String) {
    let (mut buf, mut need, mut frames) = (Vec::new(), 0, Vec::new());
    for read in reads {
        buf.extend_from_slice(read);
        while !buf.is_empty() && buf.len() >= need {
            match parse(&buf, lim) {
                Parsed::Frame(op, n) => {
                    frames.push(format!("{op:?}"));
                    buf.drain(..n);
                    need = 0;
                }
                Parsed::Incomplete(n) => need = n,
                Parsed::Fail(f) => return (frames, format!("{f:?}")),
            }
        }
    }
    (frames, format!("waiting for {need} bytes"))
}

/// Input split in two reads, at every byte, gives what it gives in one read: the same
/// frames and the same error, found without waiting for bytes that may never come.
#[test]
fn split_input_ends_like_whole_input() {
    let inputs: &[(&[u8], &Limits)] = &[
        // The payload is "abc\r\nPING\r" and "\n" is where its "\r" belongs.
        (
            b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\nPUB foo 10\r\nabc\r\nPING\r\n",
            &CLIENT,
        ),
        (b"PUB foo 3\r\nabcX", &CLIENT),
        (b"PUB foo 3\r\nabc\rX", &CLIENT),
        (b"PUB foo 3\r\nabc\r\nPUB foo 0\r\n\n", &CLIENT),
        (b"HPUB foo 7 9\r\nHDR\r\n\r\nxx\n\r", &CLIENT),
        (
            b"PUB foo 2\r\nhi\r\nSUB foo 1\r\nPING\r\nPIXNG\r\n",
            &CLIENT,
        ),
        (b"RMSG $G foo 2\r\nhi\r\nRMSG $G foo | q 1\r\nx\n\n", &ROUTE),
        (
            b"HMSG $G foo 2 3\r\nabc\r\nRS+ $G foo\r\nRS- $G foo\r\n",
            &ROUTE,
        ),
    ];
    for (input, lim) in inputs {
        let whole = as_connection(&[input], lim);
        for cut in 1..input.len() {
            let split = as_connection(&[&input[..cut], &input[cut..]], lim);
            assert_eq!(
                split,
                whole,
                "{:?} split at {cut}",
                String::from_utf8_lossy(input)
            );
        }
    }
}

#[test]
fn unknown_ops_fail_at_the_first_wrong_byte() {
    for bad in [
        &b"X"[..],
        b"PUX",
        b"PUBX",
        b"PUB\r\n",
        b"MSG foo 1 0\r\n",
        b"RS+ a b\r\n",
        b"A+",
        b"L",
        b"UNSUB\r\n",
        b"CONNEX",
        b"\r\n",
        b"\x00",
    ] {
        assert_eq!(
            parse(bad, &CLIENT),
            Parsed::Fail(Failure::UnknownOp),
            "{:?}",
            bad
        );
    }
}

#[test]
fn ping_ignores_everything_before_the_newline() {
    assert_eq!(
        parse(b"PINGX foo\r\n", &CLIENT),
        Parsed::Frame(Op::Ping, 11)
    );
    assert_eq!(parse(b"ping\n", &CLIENT), Parsed::Frame(Op::Ping, 5));
    assert_eq!(parse(b"PING", &CLIENT), Parsed::Incomplete(5));
    let small = Limits {
        max_control_line: 4,
        ..CLIENT
    };
    assert_eq!(
        parse(b"PING 123456789\r\n", &small),
        Parsed::Frame(Op::Ping, 16)
    );
    assert_eq!(
        parse(b"PING 123456789", &small),
        Parsed::Fail(Failure::MaxControlLine)
    );
}

#[test]
fn bad_arguments() {
    for bad in [
        &b"PUB foo\r\n"[..],
        b"PUB foo x\r\n",
        b"PUB foo -1\r\n",
        b"PUB foo 1234567890\r\n",
        b"PUB a b c 1\r\n",
        b"SUB foo\r\n",
        b"SUB a b c d\r\n",
        b"UNSUB 1 2 3\r\n",
        b"HPUB foo 3 2\r\n",
        b"HPUB foo x 2\r\n",
        b"HPUB foo 2\r\n",
    ] {
        assert!(
            matches!(parse(bad, &CLIENT), Parsed::Fail(Failure::BadArgs(_))),
            "{:?}",
            bad
        );
    }
    let no_headers = Limits {
        headers: false,
        ..CLIENT
    };
    assert!(matches!(
        parse(b"HPUB foo 1 2\r\n", &no_headers),
        Parsed::Fail(Failure::BadArgs(_))
    ));
}

#[test]
fn payload_terminator() {
    assert_eq!(
        parse(b"PUB foo 3\r\nabcX", &CLIENT),
        Parsed::Fail(Failure::UnknownOp)
    );
    assert_eq!(
        parse(b"PUB foo 3\r\nabc\rX", &CLIENT),
        Parsed::Fail(Failure::UnknownOp)
    );
    assert_eq!(
        parse(b"PUB foo 3\r\nabc\r", &CLIENT),
        Parsed::Incomplete(16)
    );
    assert_eq!(parse(b"PUB foo 3\r\nab", &CLIENT), Parsed::Incomplete(15));
}

#[test]
fn limits() {
    let small = Limits {
        max_control_line: 10,
        max_payload: 5,
        ..CLIENT
    };
    assert_eq!(
        parse(b"PUB foo 6\r\n", &small),
        Parsed::Fail(Failure::MaxPayload)
    );
    assert!(matches!(
        parse(b"PUB foo 5\r\n", &small),
        Parsed::Incomplete(17)
    ));
    // The argument part "01234567 9" is exactly the limit; one more byte is too many.
    assert!(matches!(
        parse(b"SUB 012345678 9\r\n", &small),
        Parsed::Fail(Failure::MaxControlLine)
    ));
    assert!(matches!(
        parse(b"SUB 01234567 9\r\n", &small),
        Parsed::Frame(..)
    ));
    // An incomplete line is checked too.
    assert_eq!(
        parse(b"SUB aaaaaaaaaaa", &small),
        Parsed::Fail(Failure::MaxControlLine)
    );
    assert_eq!(parse(b"SUB aaaaaaaaaa", &small), Parsed::Incomplete(15));
    // Routes are held to the same limits (nats-server 2.9 exempts them).
    let route = Limits {
        peer: Peer::Route,
        ..small
    };
    assert_eq!(
        parse(b"RS+ $G aaaaaaaaaaaaaaaaaaaaaaaa\r\n", &route),
        Parsed::Fail(Failure::MaxControlLine)
    );
    assert_eq!(
        parse(b"RS+ $G aaaaaaaaaaaaaaaaaaaaaaaa", &route),
        Parsed::Fail(Failure::MaxControlLine)
    );
    assert_eq!(
        parse(b"RMSG $G a 6\r\n", &route),
        Parsed::Fail(Failure::MaxPayload)
    );
    assert_eq!(
        parse(b"HMSG $G a 1 6\r\n", &route),
        Parsed::Fail(Failure::MaxPayload)
    );
    // The payload and the first byte of its terminator (checked as soon as it arrives).
    assert_eq!(parse(b"RMSG $G a 5\r\n", &route), Parsed::Incomplete(19));
    let huge = Limits {
        peer: Peer::Route,
        ..CLIENT
    };
    assert_eq!(
        parse(b"RMSG $G a 999999999\r\n", &huge),
        Parsed::Fail(Failure::MaxPayload)
    );
}

#[test]
fn sizes_are_nats_parse_size() {
    assert_eq!(parse_size(b"0"), 0);
    assert_eq!(parse_size(b"003"), 3);
    assert_eq!(parse_size(b"999999999"), 999_999_999);
    assert_eq!(parse_size(b"1000000000"), -1);
    assert_eq!(parse_size(b""), -1);
    assert_eq!(parse_size(b"+1"), -1);
}

#[test]
fn client_hmsg_is_an_empty_publish() {
    let (ops, rest) = all(b"HMSG foo 1 0 0\r\n\r\n", &CLIENT);
    assert_eq!(rest, None);
    assert_eq!(ops, vec![msg(b"", b"", b"0", b"")]);
}

#[test]
fn route_frames() {
    let input = b"RS+ $G foo\r\nRS+ $G foo q 3\r\nRS- $G foo\r\nRS- $G foo q\r\n\
            RMSG $G foo 2\r\nhi\r\nRMSG $G foo reply 0\r\n\r\nRMSG $G foo + r q1 q2 1\r\nx\r\n\
            RMSG $G foo | q1 1\r\ny\r\nHMSG $G foo 2 3\r\nabc\r\n";
    let (ops, rest) = all(input, &ROUTE);
    assert_eq!(rest, None);
    assert_eq!(ops.len(), 9);
    assert_eq!(
        ops[1],
        Op::RouteSub {
            account: b"$G",
            subject: b"foo",
            queue: Some(b"q"),
            weight: 3
        }
    );
    match &ops[6] {
        Op::Pub(m) => {
            assert_eq!(
                (m.reply, m.queues, m.payload),
                (&b"r"[..], &b"q1 q2"[..], &b"x"[..])
            );
        }
        other => panic!("{other:?}"),
    }
    match &ops[7] {
        Op::Pub(m) => assert_eq!((m.reply, m.queues), (&b""[..], &b"q1"[..])),
        other => panic!("{other:?}"),
    }
    match &ops[8] {
        Op::Pub(m) => assert_eq!((m.hdr_len, m.payload), (2, &b"abc"[..])),
        other => panic!("{other:?}"),
    }
}

/// The PUB fast path gives exactly what the general parser gives, on PUB-shaped input
/// with every kind of odd spacing, size, terminator and limit.
#[test]
fn fast_pub_agrees_with_the_general_parser() {
    let subjects: [&[u8]; 4] = [b"foo", b"a.b.c", b"", b"foo.*"];
    let seps: [&[u8]; 4] = [b" ", b" ", b"  ", b"\t"];
    let replies: [&[u8]; 4] = [b"", b"", b"_INBOX.1", b"r"];
    let sizes: [&[u8]; 6] = [b"5", b"0", b"005", b"1234567890", b"-1", b"99"];
    let ends: [&[u8]; 4] = [b"\r\n", b"\r\n", b"\n", b""];
    let payloads: [&[u8]; 4] = [b"hello\r\n", b"\r\n", b"hel", b"helloXY"];
    let small = Limits {
        max_control_line: 12,
        max_payload: 4,
        ..CLIENT
    };
    let mut seed = 0x1234_5678_9abc_def1u64;
    let mut taken = 0;
    for _ in 0..100_000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let pick = |k: u32, n: usize| ((seed >> (k * 6)) % n as u64) as usize;
        let mut buf = b"PUB ".to_vec();
        buf.extend_from_slice(subjects[pick(0, 4)]);
        buf.extend_from_slice(seps[pick(1, 4)]);
        let reply = replies[pick(2, 4)];
        if !reply.is_empty() {
            buf.extend_from_slice(reply);
            buf.extend_from_slice(seps[pick(3, 4)]);
        }
        buf.extend_from_slice(sizes[pick(4, 6)]);
        buf.extend_from_slice(ends[pick(5, 4)]);
        buf.extend_from_slice(payloads[pick(6, 4)]);
        for lim in [&CLIENT, &small] {
            assert_eq!(
                parse(&buf, lim),
                parse_general(&buf, lim),
                "{:?}",
                String::from_utf8_lossy(&buf)
            );
            taken += usize::from(fast_pub(&buf, lim).is_some());
        }
    }
    assert!(taken > 10_000, "the fast path was taken only {taken} times");
}

/// Arbitrary bytes never panic and never ask for less than they have.
#[test]
fn random_bytes_never_panic() {
    let mut seed = 0x2545F4914F6CDD1Du64;
    let alphabet = b"PUBSHMGINFOCTRK+-* .>\r\n\t0123456789\x00\xff$";
    for _ in 0..200_000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let len = (seed % 24) as usize;
        let buf: Vec<u8> = (0..len)
            .map(|i| alphabet[((seed >> (i % 8 * 8)) as usize + i * 7) % alphabet.len()])
            .collect();
        for lim in [&CLIENT, &ROUTE] {
            match parse(&buf, lim) {
                Parsed::Frame(_, n) => assert!(n <= buf.len()),
                Parsed::Incomplete(n) => assert!(n > buf.len()),
                Parsed::Fail(_) => {}
            }
        }
    }
}
