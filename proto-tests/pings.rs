// PING/PONG: client PINGs (garbage before the LF, case, bare LF), unsolicited PONGs, the
// server's own first PING, and stale-connection detection (ping_interval + ping_max from a
// config file): a silent client gets `-ERR 'Stale Connection'` and is closed, a client that
// answers stays. The harness answers and hides server PINGs; the tests here that look at them
// opt in (`keep_pings`).

use crate::harness::*;
use std::time::{Duration, Instant};

#[test]
fn ping_pong_variants() {
    let p = Pair::start(&[]);
    p.check(&one("PING\r\n"), &[info("PONG\r\n")]);
    p.check(
        &one("PING\r\nPING\r\nping\r\n"),
        &[info("PONG\r\nPONG\r\nPONG\r\n")],
    );
    // Case-insensitive op, bare LF, anything between PING and the LF is ignored.
    for v in [
        "ping\r\n",
        "PiNg\r\n",
        "PING\n",
        "PING xyz\r\n",
        "PINGX\r\n",
        "PING\tfoo\r\n",
        "PING\rX\n",
        "PING  \r\n",
    ] {
        p.check(
            &Script::new().send(0, v).wait_for(0, "PONG\r\n"),
            &[info("PONG\r\n")],
        );
    }
    // Before CONNECT in verbose mode: PING is answered with PONG only, no +OK.
    p.check(&one("CONNECT {}\r\nPING\r\n"), &[info("+OK\r\nPONG\r\n")]);
}

#[test]
fn unsolicited_pong_is_ignored() {
    let p = Pair::start(&[]);
    p.check(
        &one("PONG\r\nPONG xyz\r\nPONGX\r\npong\r\nPONG\nPING\r\n"),
        &[info("PONG\r\n")],
    );
    p.check(
        &closes("PO NG\r\n"),
        &[info_closed("-ERR 'Unknown Protocol Operation'\r\n")],
    );
}

#[test]
fn server_sends_first_ping_and_keeps_answering_client() {
    // nats-server sends its first PING ~2-2.4 s after connect (default ping_interval 2m).
    let s = Server::start(&[]);
    let mut c = s.client();
    c.keep_pings = true;
    c.send("CONNECT {\"verbose\":false}\r\n");
    assert!(
        c.read_until(Duration::from_secs(6), |rx| rx == b"PING\r\n"),
        "no server PING: {:?}",
        esc(&c.rx)
    );
    c.rx.clear();
    c.send("PONG\r\n");
    c.ping_pong();
    c.expect_nothing(300);
}

#[test]
fn first_ping_waits_for_connect() {
    // nats-server arms the short first PING (2 s + jitter) at CONNECT; before CONNECT only the
    // full ping_interval (2 min by default) runs. A client whose CONNECT+PING goes out 3 s
    // after INFO must read PONG first: nats.go and the Java client fail on a PING there.
    let p = Pair::start(&[]);
    p.check(
        &Script::new()
            .keep_pings()
            .open(0)
            .sleep(3000)
            .send(0, "CONNECT {\"verbose\":false}\r\nPING\r\n"),
        &[info("PONG\r\n")],
    );
}

#[test]
fn unconnected_client_is_pinged_at_ping_interval() {
    // Without CONNECT the first PING comes after ping_interval (here 4 s), not after 2 s: a
    // PING at 3 s gets PONG alone, and the server's PING follows about a second later.
    let p = Pair::start_conf("ping_interval: \"4s\"\n", &[]);
    p.check(
        &Script::new()
            .keep_pings()
            .open(0)
            .sleep(3000)
            .send(0, "PING\r\n")
            .wait_for(0, "PING\r\n"),
        &[info("PONG\r\nPING\r\n")],
    );
}

const STALE_CONF: &str = "ping_interval: \"1s\"\nping_max: 1\n";

#[test]
fn stale_connection_is_closed() {
    let p = Pair::start_conf(STALE_CONF, &[]);
    // With ping_max 1: one PING, then on the next interval the connection is stale.
    p.check(
        &Script::new()
            .keep_pings()
            .send(0, "CONNECT {\"verbose\":false}\r\n")
            .wait_close(0),
        &[info_closed("PING\r\n-ERR 'Stale Connection'\r\n")],
    );
    // Same without ever sending CONNECT.
    p.check(
        &Script::new().keep_pings().open(0).wait_close(0),
        &[info_closed("PING\r\n-ERR 'Stale Connection'\r\n")],
    );
}

#[test]
fn stale_connection_default_ping_max_is_two() {
    let p = Pair::start_conf("ping_interval: 1\n", &[]);
    p.check(
        &Script::new()
            .keep_pings()
            .send(0, "CONNECT {\"verbose\":false}\r\n")
            .wait_for(0, "PING\r\n")
            .wait_close(0),
        &[info_closed("PING\r\nPING\r\n-ERR 'Stale Connection'\r\n")],
    );
}

#[test]
fn answering_client_is_not_stale() {
    let s = Server::start_conf(STALE_CONF, &[]);
    let mut c = s.client();
    c.keep_pings = true;
    c.send("CONNECT {\"verbose\":false}\r\n");
    let end = Instant::now() + Duration::from_millis(4500);
    let mut pings = 0;
    while Instant::now() < end {
        c.read_until(Duration::from_millis(100), |rx| !rx.is_empty());
        assert!(
            !c.closed,
            "answering client was closed after {} PINGs: {:?}",
            pings,
            esc(&c.rx)
        );
        while c.rx.starts_with(b"PING\r\n") {
            c.rx.drain(..6);
            pings += 1;
            c.send("PONG\r\n");
        }
        assert!(
            c.rx.is_empty() || b"PING\r\n".starts_with(&c.rx),
            "unexpected: {:?}",
            esc(&c.rx)
        );
    }
    assert!(
        pings >= 2,
        "expected the server to keep pinging, got {} PINGs",
        pings
    );
    c.ping_pong();
}

/// The harness keeps the server's PINGs out of what a test sees (unless it opts in): a raw
/// client answers them, so it never goes stale; a script's transcript does not show them.
#[test]
fn harness_answers_and_hides_server_pings() {
    let p = Pair::start(&[]);
    // The first PING comes 2 to 2.4 s after CONNECT (or accept).
    p.check(
        &Script::new()
            .send(0, "CONNECT {\"verbose\":false}\r\nSUB foo 1\r\n")
            .sleep(3000)
            .send(0, "PUB foo 4\r\nPING\r\n")
            .sync(0),
        &[info("MSG foo 1 4\r\nPING\r\nPONG\r\n")],
    );
    // Stale after ping_max 1 unanswered PINGs at 1 s intervals: about 2 s without answers.
    let s = Server::start_conf(STALE_CONF, &[]);
    let mut c = s.client();
    c.send("CONNECT {\"verbose\":false}\r\n");
    c.expect_nothing(3500);
    c.ping_pong();
}
