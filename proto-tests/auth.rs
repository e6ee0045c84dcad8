// Authentication: `--user/--pass` and `--auth` token from the command line, `authorization {}`
// from a config file; wrong/missing credentials and any first operation other than CONNECT give
// `Authorization Violation` and a close; no CONNECT within the auth timeout gives
// `Authentication Timeout`.

use crate::harness::*;

const AV: &str = "-ERR 'Authorization Violation'\r\n";

fn ok(rest: &str) -> String {
    format!("{}{}", INFO_AUTH, rest)
}
fn closed(rest: &str) -> String {
    format!("{}{}{}", INFO_AUTH, rest, CLOSED)
}

#[test]
fn user_and_password() {
    let p = Pair::start(&["--user", "alice", "--pass", "s3cret"]);
    p.check(
        &one("CONNECT {\"user\":\"alice\",\"pass\":\"s3cret\"}\r\nPING\r\n"),
        &[ok("+OK\r\nPONG\r\n")],
    );
    p.check(
        &one("connect {\"user\":\"alice\",\"pass\":\"s3cret\",\"verbose\":false}\r\nSUB foo 1\r\nPUB foo 1\r\nx\r\nPING\r\n"),
        &[ok("MSG foo 1 1\r\nx\r\nPONG\r\n")],
    );
    for bad in [
        "CONNECT {\"user\":\"alice\",\"pass\":\"wrong\"}\r\nPING\r\n",
        "CONNECT {\"user\":\"bob\",\"pass\":\"s3cret\"}\r\nPING\r\n",
        "CONNECT {\"user\":\"alice\"}\r\nPING\r\n",
        "CONNECT {\"pass\":\"s3cret\"}\r\nPING\r\n",
        "CONNECT {\"auth_token\":\"s3cret\"}\r\nPING\r\n",
        "CONNECT {}\r\nPING\r\n",
        "CONNECT {\"user\":\"ALICE\",\"pass\":\"s3cret\"}\r\nPING\r\n",
    ] {
        p.check(&closes(bad), &[closed(AV)]);
    }
    // Credentials are checked before the protocol version.
    p.check(
        &closes("CONNECT {\"user\":\"alice\",\"pass\":\"x\",\"protocol\":5}\r\n"),
        &[closed(AV)],
    );
    p.check(
        &closes("CONNECT {\"user\":\"alice\",\"pass\":\"s3cret\",\"protocol\":5}\r\n"),
        &[closed("-ERR 'invalid client protocol'\r\n")],
    );
}

#[test]
fn token() {
    let p = Pair::start(&["--auth", "t0k3n"]);
    p.check(
        &one("CONNECT {\"auth_token\":\"t0k3n\",\"verbose\":false}\r\nPING\r\n"),
        &[ok("PONG\r\n")],
    );
    for bad in [
        "CONNECT {\"auth_token\":\"nope\"}\r\n",
        "CONNECT {\"user\":\"t0k3n\"}\r\n",
        "CONNECT {\"pass\":\"t0k3n\"}\r\n",
        "CONNECT {}\r\n",
    ] {
        p.check(&closes(bad), &[closed(AV)]);
    }
}

#[test]
fn first_operation_must_be_connect() {
    let p = Pair::start(&["--user", "u", "--pass", "p"]);
    for first in [
        &b"PING\r\n"[..],
        b"SUB foo 1\r\n",
        b"PUB foo 0\r\n\r\n",
        b"UNSUB 1\r\n",
        b"PONG\r\n",
        b"+OK\r\n",
        b"INFO {}\r\n",
        b"XYZ\r\n",
        b"\x00\xff",
        b"\r\n",
    ] {
        p.check(&closes(first), &[closed(AV)]);
    }
    // Anything starting with C/c is parsed as a CONNECT attempt first.
    p.check(
        &closes("CXYZ\r\n"),
        &[closed("-ERR 'Unknown Protocol Operation'\r\n")],
    );
    p.check(&closes("CONNECT {bad\r\n"), &[closed("")]);
}

#[test]
fn auth_timeout_from_config() {
    let p = Pair::start_conf(
        "authorization {\n  user: u\n  password: p\n  timeout: 1\n}\n",
        &[],
    );
    p.check(
        &Script::new().open(0).wait_close(0),
        &[closed("-ERR 'Authentication Timeout'\r\n")],
    );
    // A CONNECT that never completes does not stop the timer.
    p.check(
        &Script::new().send(0, "CONNECT {\"user\":").wait_close(0),
        &[closed("-ERR 'Authentication Timeout'\r\n")],
    );
    // In time: fine, and still fine after the timeout would have expired.
    p.check(
        &Script::new()
            .send(
                0,
                "CONNECT {\"user\":\"u\",\"pass\":\"p\",\"verbose\":false}\r\n",
            )
            .sleep(1300)
            .sync(0),
        &[ok("PONG\r\n")],
    );
    p.check(
        &closes("CONNECT {\"user\":\"u\",\"pass\":\"x\"}\r\n"),
        &[closed(AV)],
    );
}

#[test]
fn auth_timeout_default_is_two_seconds() {
    let p = Pair::start(&["--auth", "tok"]);
    // Still connected after 1 s ...
    p.check(
        &Script::new()
            .open(0)
            .sleep(1000)
            .send(0, "CONNECT {\"auth_token\":\"tok\",\"verbose\":false}\r\n")
            .sync(0),
        &[ok("PONG\r\n")],
    );
    // ... and timed out (within our generous deadline) when nothing is sent.
    p.check(
        &Script::new().open(0).wait_close(0),
        &[closed("-ERR 'Authentication Timeout'\r\n")],
    );
}
