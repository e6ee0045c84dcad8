// Headers: HPUB/HMSG framing and sizes, the `headers:true` CONNECT requirement, stripping of
// headers for subscribers that did not ask for them, malformed HPUB arguments, size limits.

use crate::harness::*;

const H: &str = "CONNECT {\"verbose\":false,\"headers\":true}\r\n";
const NOH: &str = "CONNECT {\"verbose\":false}\r\n";

/// `HPUB subj [reply] hdr_len total_len\r\nheaders payload\r\n` with computed sizes.
fn hpub(subj: &str, reply: Option<&str>, hdr: &str, payload: &str) -> String {
    let r = reply.map(|r| format!("{} ", r)).unwrap_or_default();
    format!(
        "HPUB {} {}{} {}\r\n{}{}\r\n",
        subj,
        r,
        hdr.len(),
        hdr.len() + payload.len(),
        hdr,
        payload
    )
}

const HDR: &str = "NATS/1.0\r\nA: b\r\nC:d\r\n\r\n";

#[test]
fn hpub_to_header_subscriber_is_hmsg() {
    let p = Pair::start(&[]);
    p.check(
        &one(format!(
            "{}SUB foo 1\r\nHPUB foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\nPING\r\n",
            H
        )),
        &[info("HMSG foo 1 12 14\r\nNATS/1.0\r\n\r\nhi\r\nPONG\r\n")],
    );
    p.check(
        &one(format!(
            "{}SUB foo 1\r\n{}PING\r\n",
            H,
            hpub("foo", Some("re.ply"), HDR, "payload")
        )),
        &[info(&format!(
            "HMSG foo 1 re.ply 23 30\r\n{}payload\r\nPONG\r\n",
            HDR
        ))],
    );
    // Empty payload; sizes are copied verbatim (leading zeros kept).
    p.check(
        &one(format!("{}SUB foo 1\r\nHPUB foo r 12 12\r\nNATS/1.0\r\n\r\n\r\nHPUB foo 012 014\r\nNATS/1.0\r\n\r\nhi\r\nPING\r\n", H)),
        &[info("HMSG foo 1 r 12 12\r\nNATS/1.0\r\n\r\n\r\nHMSG foo 1 012 014\r\nNATS/1.0\r\n\r\nhi\r\nPONG\r\n")],
    );
    // Header bytes are not validated by the server.
    p.check(
        &one(format!(
            "{}SUB foo 1\r\nHPUB foo 5 7\r\nabcdehi\r\nPING\r\n",
            H
        )),
        &[info("HMSG foo 1 5 7\r\nabcdehi\r\nPONG\r\n")],
    );
    // A zero-length header section is delivered as a plain MSG.
    p.check(
        &one(format!("{}SUB foo 1\r\nHPUB foo 0 2\r\nhi\r\nPING\r\n", H)),
        &[info("MSG foo 1 2\r\nhi\r\nPONG\r\n")],
    );
    // Lower case op, tabs and extra blanks between arguments, trailing blank.
    p.check(
        &one(format!(
            "{}SUB foo 1\r\nhpub\tfoo\t12  14 \r\nNATS/1.0\r\n\r\nhi\r\nPING\r\n",
            H
        )),
        &[info("HMSG foo 1 12 14\r\nNATS/1.0\r\n\r\nhi\r\nPONG\r\n")],
    );
}

#[test]
fn headers_stripped_for_subscribers_without_headers() {
    let p = Pair::start(&[]);
    let script = Script::new()
        .send(0, format!("{}SUB foo 1\r\n", NOH))
        .sync(0)
        .send(1, format!("{}SUB foo 1\r\n", H))
        .sync(1)
        .send(
            2,
            format!(
                "{}{}{}PUB foo 3\r\nraw\r\n",
                H,
                hpub("foo", None, HDR, "hi"),
                hpub("foo", Some("r"), HDR, "")
            ),
        )
        .sync(2)
        .sync(0)
        .sync(1);
    p.check(
        &script,
        &[
            // Only the payload, with its own size.
            info("PONG\r\nMSG foo 1 2\r\nhi\r\nMSG foo 1 r 0\r\n\r\nMSG foo 1 3\r\nraw\r\nPONG\r\n"),
            // A header subscriber gets HMSG for HPUB and MSG for PUB.
            info(&format!(
                "PONG\r\nHMSG foo 1 23 25\r\n{}hi\r\nHMSG foo 1 r 23 23\r\n{}\r\nMSG foo 1 3\r\nraw\r\nPONG\r\n",
                HDR, HDR
            )),
            info("PONG\r\n"),
        ],
    );
}

#[test]
fn hpub_requires_headers_in_connect() {
    let p = Pair::start(&[]);
    // Closed without an -ERR: before CONNECT, with headers absent, with headers:false.
    p.check(
        &closes("HPUB foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\nPING\r\n"),
        &[info_closed("")],
    );
    p.check(
        &closes("hpub foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\n"),
        &[info_closed("")],
    );
    p.check(
        &closes("CONNECT {}\r\nHPUB foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\n"),
        &[info_closed("+OK\r\n")],
    );
    p.check(
        &closes("CONNECT {\"headers\":false}\r\nHPUB foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\n"),
        &[info_closed("+OK\r\n")],
    );
    // The headers check happens before the size check.
    p.check(
        &closes(format!("{}HPUB foo 12 2000000\r\n", NOH)),
        &[info_closed("")],
    );
    // Verbose with headers: HPUB is acknowledged like PUB.
    p.check(
        &one("CONNECT {\"headers\":true}\r\nSUB foo 1\r\nHPUB foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\nPING\r\n"),
        &[info("+OK\r\n+OK\r\n+OK\r\nHMSG foo 1 12 14\r\nNATS/1.0\r\n\r\nhi\r\nPONG\r\n")],
    );
}

#[test]
fn malformed_hpub() {
    let p = Pair::start(&[]);
    // Bad arguments close the connection without -ERR.
    for bad in [
        "HPUB \r\n",
        "HPUB foo\r\n",
        "HPUB foo 2\r\nhi\r\n",
        "HPUB foo x 2\r\nhi\r\n",
        "HPUB foo -1 14\r\n",
        "HPUB foo 12 -14\r\n",
        "HPUB foo 14 12\r\n",
        "HPUB foo a b c 12 14\r\n",
        "HPUB foo 1000000000 1000000000\r\n",
    ] {
        p.check(
            &closes(format!("{}SUB foo 1\r\n{}PING\r\n", H, bad)),
            &[info_closed("")],
        );
    }
    // Missing separator after the op, payload longer or shorter than declared.
    p.check(
        &closes(format!("{}HPUB\r\n", H)),
        &[info_closed("-ERR 'Unknown Protocol Operation'\r\n")],
    );
    p.check(
        &closes(format!(
            "{}SUB foo 1\r\nHPUB foo 12 15\r\nNATS/1.0\r\n\r\nhi\r\nPING\r\n",
            H
        )),
        &[info_closed("-ERR 'Unknown Protocol Operation'\r\n")],
    );
    p.check(
        &closes(format!(
            "{}SUB foo 1\r\nHPUB foo 12 13\r\nNATS/1.0\r\n\r\nhi\r\nPING\r\n",
            H
        )),
        &[info_closed("-ERR 'Unknown Protocol Operation'\r\n")],
    );
}

#[test]
fn hpub_limits_and_pedantic() {
    let p = Pair::start_conf("max_payload: 100\n", &[]);
    // The total size counts against max_payload; checked before the payload is read.
    p.check(
        &closes(format!("{}HPUB foo 12 101\r\n", H)),
        &[info_closed("-ERR 'Maximum Payload Violation'\r\n")],
    );
    p.check(
        &one(format!(
            "{}SUB foo 1\r\nHPUB foo 12 100\r\nNATS/1.0\r\n\r\n{}\r\nPING\r\n",
            H,
            "x".repeat(88)
        )),
        &[info(&format!(
            "HMSG foo 1 12 100\r\nNATS/1.0\r\n\r\n{}\r\nPONG\r\n",
            "x".repeat(88)
        ))],
    );
    // Pedantic (the default) flags a wildcard publish subject but still publishes.
    p.check(
        &one("CONNECT {\"headers\":true}\r\nSUB foo.* 1\r\nHPUB foo.* 12 14\r\nNATS/1.0\r\n\r\nhi\r\nPING\r\n"),
        &[info("+OK\r\n+OK\r\n-ERR 'Invalid Publish Subject'\r\n+OK\r\nHMSG foo.* 1 12 14\r\nNATS/1.0\r\n\r\nhi\r\nPONG\r\n")],
    );
}
