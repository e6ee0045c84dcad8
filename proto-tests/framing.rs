// TCP framing: every script must give the same replies whether each send is written whole, one
// byte per write (TCP_NODELAY, short sleeps), or in random chunks; reads may end anywhere
// (inside an op, the arguments, the payload, between CR and LF). (`Pair::check` also replays
// every whole script split in two writes at every byte; the tests here add the rest.)

use crate::harness::*;
use crate::sockdiag::server_unread;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Instant;

const UPO: &str = "-ERR 'Unknown Protocol Operation'\r\n";

/// Run `script` whole, bytewise and in random chunks; all must match `expected` (and the
/// reference, per chunking). `small`: the script is short enough to be sent one byte at a time
/// well within the ~2 s before the server's first PING.
fn all_chunkings<E: AsRef<str>>(p: &Pair, script: &Script, expected: &[E], small: bool) {
    p.check(script, expected);
    if small {
        p.check(&script.chunked(Chunking::Bytewise), expected);
        for seed in 1..=3u64 {
            p.check(&script.chunked(Chunking::Random { seed, max: 7 }), expected);
        }
    }
    p.check(
        &script.chunked(Chunking::Random { seed: 99, max: 200 }),
        expected,
    );
}

#[test]
fn split_pub_sub_headers_and_pings() {
    let p = Pair::start(&[]);
    let s = one(
        "CONNECT {\"verbose\":false,\"headers\":true}\r\nsub foo 1\r\nSUB\tbar  q 2\r\nPUB foo 5\r\nhel\r\n\r\n\
         HPUB bar r 12 14\r\nNATS/1.0\r\n\r\nhi\r\nPING\nUNSUB 1\r\nPUB foo 0\r\n\r\nPING xyz\r\nPUB bar 0\r\n\r\nPING\r\n",
    );
    all_chunkings(
        &p,
        &s,
        &[info("MSG foo 1 5\r\nhel\r\n\r\nHMSG bar 2 r 12 14\r\nNATS/1.0\r\n\r\nhi\r\nPONG\r\nPONG\r\nMSG bar 2 0\r\n\r\nPONG\r\n")],
        true,
    );
}

#[test]
fn split_verbose_and_errors_that_keep_the_connection() {
    let p = Pair::start(&[]);
    // Not pedantic: nats-server repeats `-ERR 'Invalid Publish Subject'` when a PUB's payload
    // arrives in a later read than its control line (it re-parses the arguments), so that reply
    // depends on TCP segmentation and is only checked unsplit (errors.rs).
    let s = one("CONNECT {\"name\":\"split\",\"pedantic\":false}\r\nSUB foo.. 1\r\nSUB foo 2\r\nPUB foo.* 1\r\nx\r\nPUB foo 3\r\nabc\r\nUNSUB 9\r\nPING\r\n");
    all_chunkings(
        &p,
        &s,
        &[info("+OK\r\n-ERR 'Invalid Subject'\r\n+OK\r\n+OK\r\n+OK\r\nMSG foo 2 3\r\nabc\r\n+OK\r\nPONG\r\n")],
        true,
    );
}

#[test]
fn split_request_reply_between_connections() {
    let p = Pair::start(&[]);
    let s = Script::new()
        .send(0, "CONNECT {\"verbose\":false}\r\nSUB svc 1\r\n")
        .sync(0)
        .send(1, "CONNECT {\"verbose\":false,\"headers\":true,\"no_responders\":true}\r\nSUB in.1 5\r\nPUB svc in.1 3\r\nreq\r\nPUB none in.1 0\r\n\r\n")
        .sync(1)
        .sync(0)
        .send(0, "PUB in.1 3\r\nrep\r\n")
        .sync(0)
        .sync(1);
    all_chunkings(
        &p,
        &s,
        &[
            info("PONG\r\nMSG svc 1 in.1 3\r\nreq\r\nPONG\r\nPONG\r\n"),
            info("HMSG in.1 5 16 16\r\nNATS/1.0 503\r\n\r\n\r\nPONG\r\nMSG in.1 5 3\r\nrep\r\nPONG\r\n"),
        ],
        true,
    );
}

#[test]
fn split_fatal_errors() {
    let p = Pair::start_conf("max_payload: 64\n", &[]);
    all_chunkings(
        &p,
        &closes("SUB foo 1\r\nPUB foo 2\r\nhiX\r\n"),
        &[info_closed(&format!("+OK\r\n{}", UPO))],
        true,
    );
    all_chunkings(
        &p,
        &closes("PUB foo 65\r\n"),
        &[info_closed("-ERR 'Maximum Payload Violation'\r\n")],
        true,
    );
    all_chunkings(
        &p,
        &closes("CONNECT {\"protocol\":2}\r\n"),
        &[info_closed("-ERR 'invalid client protocol'\r\n")],
        true,
    );
    all_chunkings(
        &p,
        &closes("CONNECT {\"verbose\":false}\r\nPUB foo x\r\n"),
        &[info_closed("")],
        true,
    );
    all_chunkings(
        &p,
        &closes("CONNECT {\"verbose\":false}\r\nPING\r\nPONG\r\nPIXNG\r\n"),
        &[info_closed(&format!("PONG\r\n{}", UPO))],
        true,
    );
}

#[test]
fn split_large_payload() {
    // Payloads bigger than any internal scratch buffer, split at random places.
    let p = Pair::start(&[]);
    let body: String = (0..10_000)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    let s = one(format!(
        "CONNECT {{\"verbose\":false}}\r\nSUB big 1\r\nPUB big {}\r\n{}\r\nPUB big 2\r\nok\r\nPING\r\n",
        body.len(),
        body
    ));
    all_chunkings(
        &p,
        &s,
        &[info(&format!(
            "MSG big 1 10000\r\n{}\r\nMSG big 1 2\r\nok\r\nPONG\r\n",
            body
        ))],
        false,
    );
    for (seed, max) in [(5u64, 1500usize), (6, 4000), (7, 9000)] {
        p.check(
            &s.chunked(Chunking::Random { seed, max }),
            &[info(&format!(
                "MSG big 1 10000\r\n{}\r\nMSG big 1 2\r\nok\r\nPONG\r\n",
                body
            ))],
        );
    }
}

#[test]
fn split_control_line_limit() {
    let p = Pair::start_conf("max_control_line: 32\n", &[]);
    let mcl = "-ERR 'maximum control line exceeded'\r\n";
    all_chunkings(
        &p,
        &closes(format!("SUB {} 1\r\n", "s".repeat(40))),
        &[info_closed(mcl)],
        true,
    );
    all_chunkings(
        &p,
        &closes(format!("SUB {}", "s".repeat(40))),
        &[info_closed(mcl)],
        true,
    );
    all_chunkings(
        &p,
        &one(format!("SUB {} 1\r\nPING\r\n", "s".repeat(30))),
        &[info("+OK\r\nPONG\r\n")],
        true,
    );
}

/// A wrong byte where a payload's CRLF belongs is an error at once, however the bytes are
/// split: here the 10-byte payload is `abc\r\nPING\r`, and the LF where its CR belongs comes
/// in a second write after the PUB line was read. (tern used to wait for one more byte.)
#[test]
fn payload_terminator_checked_in_a_later_read() {
    let p = Pair::start(&[]);
    let first = "CONNECT {\"verbose\":false,\"pedantic\":false}\r\nPUB foo 10\r\n";
    let second = "abc\r\nPING\r\n";
    for s in std::iter::once(&p.tern).chain(&p.reference) {
        let mut c = s.client();
        // No answer to the server's PING (about 2 s on): it would be the byte waited for.
        c.keep_pings = true;
        c.send(first);
        assert!(c.wait_server_read(), "{} did not read", s.bin.display());
        c.send(second);
        c.expect(UPO);
        c.expect_closed();
    }
    // The same bytes in one write (and, by `check`, split at every byte).
    p.check(&closes(format!("{first}{second}")), &[info_closed(UPO)]);
}

/// Split writes in the harness rely on sock_diag saying how much the other end has not read.
#[test]
fn sock_diag_tells_what_the_server_has_not_read() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (mut server, _) = l.accept().unwrap();
    c.write_all(b"0123456789").unwrap();
    let end = Instant::now() + DEADLINE;
    while server_unread(&c) != Some(10) {
        assert!(Instant::now() < end, "unread: {:?}", server_unread(&c));
    }
    let mut buf = [0u8; 4];
    server.read_exact(&mut buf).unwrap();
    assert_eq!(server_unread(&c), Some(6));
    let mut rest = [0u8; 6];
    server.read_exact(&mut rest).unwrap();
    assert_eq!(server_unread(&c), Some(0));
}
