// Bad input and error replies: unknown operations, server-only operations sent by a client,
// malformed PUB/SUB/UNSUB arguments (negative/non-numeric/oversized sizes, missing or extra
// arguments), payloads longer/shorter than declared, binary garbage, invalid SUB subjects
// (-ERR, connection kept), and pedantic-only publish subject checks.

use crate::harness::*;

const UPO: &str = "-ERR 'Unknown Protocol Operation'\r\n";
const Q: &str = "CONNECT {\"verbose\":false}\r\n";

#[test]
fn unknown_operations_are_fatal() {
    let p = Pair::start(&[]);
    for bad in [
        &b"XYZ\r\n"[..],
        b"PI NG\r\n",
        b" PING\r\n",
        b"\r\nPING\r\n",
        b"\tSUB foo 1\r\n",
        b"CXYZ\r\n",
        b"SUBX foo 1\r\n",
        b"PUBX foo 0\r\n",
        b"UNSUBX 1\r\n",
        b"\x00\x01\xff\r\n",
        b"\xff\xfe\xfd",
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    ] {
        p.check(&closes(bad), &[info_closed(UPO)]);
    }
    // Ops needing a separator are unknown without one.
    for bad in ["PUB\r\n", "SUB\r\n", "UNSUB\r\n", "HPUB\r\n"] {
        p.check(&closes(format!("{}{}", Q, bad)), &[info_closed(UPO)]);
    }
}

#[test]
fn server_only_operations_from_a_client() {
    let p = Pair::start(&[]);
    // MSG, HMSG and the route/leaf ops are unknown for clients.
    for bad in [
        "MSG foo 1 2\r\nhi\r\n",
        "msg foo 1 2\r\nhi\r\n",
        "HMSG foo 1 2 2\r\nhi\r\n",
        "RS+ $G foo\r\n",
        "RS- $G foo\r\n",
        "RMSG $G foo 2\r\nhi\r\n",
        "LS+ foo\r\n",
        "LMSG foo 2\r\nhi\r\n",
        "A+ foo\r\n",
        "-ERR\r\n",
        "+O\r\n",
    ] {
        p.check(&closes(format!("{}{}", Q, bad)), &[info_closed(UPO)]);
    }
    // A valid-looking INFO and +OK are accepted and ignored (the connection stays).
    p.check(
        &one(format!(
            "{}INFO {{}}\r\nINFO {{\"server_id\":\"x\"}}\r\nPING\r\n",
            Q
        )),
        &[info("PONG\r\n")],
    );
    p.check(
        &one(format!("{}+OK\r\n+ok\r\n+OKjunk\r\nPING\r\n", Q)),
        &[info("PONG\r\n")],
    );
    // INFO with bad or no JSON, and any -ERR from a client, close silently.
    p.check(
        &closes(format!("{}INFO\r\nPING\r\n", Q)),
        &[info_closed("")],
    );
    p.check(
        &closes(format!("{}INFO {{bad\r\nPING\r\n", Q)),
        &[info_closed("")],
    );
    p.check(
        &closes(format!("{}-ERR 'oops'\r\nPING\r\n", Q)),
        &[info_closed("")],
    );
}

#[test]
fn malformed_pub_arguments_close_silently() {
    let p = Pair::start(&[]);
    for bad in [
        "PUB \r\n",
        "PUB foo\r\n",
        "PUB foo -1\r\n",
        "PUB foo x\r\n",
        "PUB foo 1x\r\n",
        "PUB foo +1\r\n",
        "PUB foo 1.0\r\n",
        "PUB a b c 1\r\n",
        // More than 9 digits is not a size.
        "PUB foo 1000000000\r\n",
        "PUB foo 0000000001\r\n",
    ] {
        p.check(
            &closes(format!("{}SUB foo 1\r\n{}x\r\nPING\r\n", Q, bad)),
            &[info_closed("")],
        );
    }
    // In verbose mode earlier commands are acknowledged, the bad one is not.
    p.check(
        &closes("SUB foo 1\r\nPUB foo\r\n"),
        &[info_closed("+OK\r\n")],
    );
}

#[test]
fn malformed_sub_and_unsub_arguments_close_silently() {
    let p = Pair::start(&[]);
    for bad in [
        "SUB \r\n",
        "SUB foo\r\n",
        "SUB  1\r\n",
        "SUB a b c d\r\n",
        "UNSUB \r\n",
        "UNSUB 1 2 3\r\n",
    ] {
        p.check(&closes(format!("{}{}PING\r\n", Q, bad)), &[info_closed("")]);
    }
}

#[test]
fn payload_size_mismatch() {
    let p = Pair::start(&[]);
    // Longer than declared, shorter than declared, missing CR or LF, extra blank line.
    for (bad, ok) in [
        ("PUB foo 2\r\nhiX\r\n", ""),
        ("PUB foo 2\r\nh\r\nPING\r\n", ""),
        ("PUB foo 2\r\nhi\n", ""),
        ("PUB foo 2\r\nhi\rX", ""),
        ("PUB foo 2\r\nhi\r\r\n", ""),
        ("PUB foo 0\r\nx\r\n", ""),
        ("PUB foo 2\r\nhi\r\n\r\n", "MSG foo 1 2\r\nhi\r\n"),
    ] {
        p.check(
            &closes(format!("{}SUB foo 1\r\n{}", Q, bad)),
            &[info_closed(&format!("{}{}", ok, UPO))],
        );
    }
    // Messages completed before the error in the same write are still delivered.
    p.check(
        &closes(format!(
            "{}SUB foo 1\r\nPUB foo 1\r\na\r\nPUB foo 1\r\nbc\r\nPUB foo 1\r\nd\r\n",
            Q
        )),
        &[info_closed(&format!("MSG foo 1 1\r\na\r\n{}", UPO))],
    );
    p.check(
        &closes("SUB foo 1\r\nPUB foo 1\r\na\r\nXYZ\r\n"),
        &[info_closed(&format!(
            "+OK\r\n+OK\r\nMSG foo 1 1\r\na\r\n{}",
            UPO
        ))],
    );
}

#[test]
fn invalid_sub_subjects_keep_the_connection() {
    let p = Pair::start(&[]);
    for bad in [
        "foo..bar",
        "foo.>.bar",
        ".foo",
        "foo.",
        ".",
        "..",
        ">.foo",
        "foo.>.>",
    ] {
        p.check(
            &one(format!("{}SUB {} 1\r\nPING\r\n", Q, bad)),
            &[info("-ERR 'Invalid Subject'\r\nPONG\r\n")],
        );
        // Verbose: the -ERR replaces the +OK.
        p.check(
            &one(format!("SUB {} q 1\r\nPING\r\n", bad)),
            &[info("-ERR 'Invalid Subject'\r\nPONG\r\n")],
        );
    }
    // The rejected sid is not registered: it can be used again.
    p.check(
        &one(format!(
            "{}SUB foo.. 1\r\nUNSUB 1\r\nSUB foo 1\r\nPUB foo 1\r\nx\r\nPING\r\n",
            Q
        )),
        &[info(
            "-ERR 'Invalid Subject'\r\nMSG foo 1 1\r\nx\r\nPONG\r\n",
        )],
    );
    // Valid: full wildcards, wildcard-looking characters inside tokens, odd queue names, bytes.
    p.check(
        &one(b"SUB > 1\r\nSUB * 2\r\nSUB *.> 3\r\nSUB foo* 4\r\nSUB foo> 5\r\nSUB foo q* 6\r\nSUB foo q.> 7\r\nSUB a\xffb 8\r\nPING\r\n"),
        &[info("+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\nPONG\r\n")],
    );
}

#[test]
fn pedantic_publish_subject_checks() {
    let p = Pair::start(&[]);
    // Pedantic is on by default: -ERR 'Invalid Publish Subject', connection kept, and the
    // message is still published (here to a `>` subscriber); in verbose mode +OK follows.
    p.check(
        &one("SUB > 1\r\nPUB foo.* 1\r\na\r\nPING\r\n"),
        &[info(
            "+OK\r\n-ERR 'Invalid Publish Subject'\r\n+OK\r\nMSG foo.* 1 1\r\na\r\nPONG\r\n",
        )],
    );
    for bad in [
        "foo.*",
        "foo.>",
        "*",
        ">",
        "foo..bar",
        ".foo",
        "foo.",
        "foo.bar.>",
    ] {
        p.check(
            &one(format!("CONNECT {{}}\r\nPUB {} 0\r\n\r\nPING\r\n", bad)),
            &[info(
                "+OK\r\n-ERR 'Invalid Publish Subject'\r\n+OK\r\nPONG\r\n",
            )],
        );
        p.check(
            &one(format!(
                "CONNECT {{\"pedantic\":true,\"verbose\":false}}\r\nPUB {} 0\r\n\r\nPING\r\n",
                bad
            )),
            &[info("-ERR 'Invalid Publish Subject'\r\nPONG\r\n")],
        );
        // Not pedantic: no error.
        p.check(
            &one(format!(
                "CONNECT {{\"pedantic\":false}}\r\nPUB {} 0\r\n\r\nPING\r\n",
                bad
            )),
            &[info("+OK\r\n+OK\r\nPONG\r\n")],
        );
    }
    // Literal subjects with wildcard characters inside tokens and wildcard reply subjects are fine.
    p.check(
        &one("PUB foo* 0\r\n\r\nPUB a>b 0\r\n\r\nPUB foo bar.* 0\r\n\r\nPING\r\n"),
        &[info("+OK\r\n+OK\r\n+OK\r\nPONG\r\n")],
    );
    // Pedantic with verbose off, invalid subject with empty token: -ERR, nothing delivered.
    p.check(
        &one("CONNECT {\"pedantic\":true,\"verbose\":false}\r\nSUB > 1\r\nPUB foo.* 0\r\n\r\nPUB a..b 0\r\n\r\nPING\r\n"),
        &[info("-ERR 'Invalid Publish Subject'\r\nMSG foo.* 1 0\r\n\r\n-ERR 'Invalid Publish Subject'\r\nPONG\r\n")],
    );
}

#[test]
fn huge_garbage_is_rejected() {
    let p = Pair::start(&[]);
    let mut junk = b"XYZ\r\n".to_vec();
    junk.extend(std::iter::repeat_n(b'j', 100_000));
    p.check(&closes(&junk), &[info_closed(UPO)]);
    let mut bin: Vec<u8> = Vec::new();
    let mut r = Rng::new(7);
    for _ in 0..20_000 {
        bin.push(r.next() as u8 | 0x80);
    }
    p.check(&closes(&bin), &[info_closed(UPO)]);
}
