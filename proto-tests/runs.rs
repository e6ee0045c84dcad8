// Runs: consecutive PUBs that differ only in their payloads, arriving in one read, are delivered
// together (each subscriber's share appended in one go). These scripts send such runs, broken by
// other subjects, sizes, headers and control lines, to every kind of subscriber, and compare with
// nats-server byte for byte: per subscription order, the interleaving on a connection whose
// subscriptions overlap, auto-unsubscribe limits, echo, header stripping and queue groups.

use crate::harness::*;

const QUIET_C: &str = "CONNECT {\"verbose\":false,\"pedantic\":false}\r\n";

fn pubs(subject: &str, bodies: &[&str]) -> String {
    bodies
        .iter()
        .map(|b| format!("PUB {subject} {}\r\n{b}\r\n", b.len()))
        .collect()
}

fn msgs(subject: &str, sid: &str, bodies: &[&str]) -> String {
    bodies
        .iter()
        .map(|b| format!("MSG {subject} {sid} {}\r\n{b}\r\n", b.len()))
        .collect()
}

fn run_script() -> Script {
    let mut burst = pubs("foo", &["a1", "b2", "c3"]);
    burst += &pubs("bar", &["d4"]);
    burst += &pubs("foo", &["e5", "f6", "long7"]);
    burst += "PING\r\n";
    burst += &pubs("foo", &["g8", "h9"]);
    Script::new()
        // 0: one subscription, the whole run in one go.
        .send(0, format!("{QUIET_C}SUB foo 1\r\n"))
        .sync(0)
        // 1: overlapping subscriptions and a queue group: message by message.
        .send(
            1,
            format!("{QUIET_C}SUB foo 1\r\nSUB > 2\r\nSUB foo q 3\r\n"),
        )
        .sync(1)
        // 2: auto-unsubscribe after two messages.
        .send(2, format!("{QUIET_C}SUB foo 9\r\nUNSUB 9 2\r\n"))
        .sync(2)
        // 3: the publisher, subscribed itself with echo off.
        .send(
            3,
            "CONNECT {\"verbose\":false,\"pedantic\":false,\"echo\":false}\r\nSUB foo 5\r\n",
        )
        .sync(3)
        .send(3, burst)
        .sync(3)
        .sync(0)
        .sync(1)
        .sync(2)
}

fn run_expected() -> Vec<String> {
    let all = ["a1", "b2", "c3", "e5", "f6", "long7", "g8", "h9"];
    let mut overlapping = String::from("PONG\r\n");
    for (subject, b) in [
        ("foo", "a1"),
        ("foo", "b2"),
        ("foo", "c3"),
        ("bar", "d4"),
        ("foo", "e5"),
        ("foo", "f6"),
        ("foo", "long7"),
        ("foo", "g8"),
        ("foo", "h9"),
    ] {
        // nats-server's order on one connection: `>`, then the literal, then queue groups.
        overlapping += &msgs(subject, "2", &[b]);
        if subject == "foo" {
            overlapping += &msgs(subject, "1", &[b]);
            overlapping += &msgs(subject, "3", &[b]);
        }
    }
    overlapping += "PONG\r\n";
    vec![
        info(&format!("PONG\r\n{}PONG\r\n", msgs("foo", "1", &all))),
        info(&overlapping),
        info(&format!("PONG\r\n{}PONG\r\n", msgs("foo", "9", &all[..2]))),
        info("PONG\r\nPONG\r\nPONG\r\n"),
    ]
}

#[test]
fn runs_keep_every_subscriber_order_and_limit() {
    let p = Pair::start(&[]);
    p.check(&run_script(), &run_expected());
}

#[test]
fn runs_split_across_reads() {
    let p = Pair::start(&[]);
    let script = run_script();
    p.check(
        &script.chunked(Chunking::Random { seed: 7, max: 23 }),
        &run_expected(),
    );
    p.check(
        &script.chunked(Chunking::Random { seed: 11, max: 300 }),
        &run_expected(),
    );
}

#[test]
fn header_runs_reach_plain_subscribers_as_bodies() {
    let p = Pair::start(&[]);
    let hpub = |body: &str| {
        format!(
            "HPUB foo 12 {}\r\nNATS/1.0\r\n\r\n{body}\r\n",
            12 + body.len()
        )
    };
    let burst: String = ["x1", "y2", "z3"].iter().map(|b| hpub(b)).collect();
    let script = Script::new()
        .send(0, format!("{QUIET_C}SUB foo 1\r\n"))
        .sync(0)
        .send(
            1,
            "CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true}\r\nSUB foo 7\r\n",
        )
        .sync(1)
        .send(2, "CONNECT {\"verbose\":false,\"headers\":true}\r\n")
        .sync(2)
        .send(2, burst)
        .sync(2)
        .sync(0)
        .sync(1);
    let hmsgs: String = ["x1", "y2", "z3"]
        .iter()
        .map(|b| format!("HMSG foo 7 12 14\r\nNATS/1.0\r\n\r\n{b}\r\n"))
        .collect();
    p.check(
        &script,
        &[
            info(&format!(
                "PONG\r\n{}PONG\r\n",
                msgs("foo", "1", &["x1", "y2", "z3"])
            )),
            info(&format!("PONG\r\n{hmsgs}PONG\r\n")),
            info("PONG\r\nPONG\r\n"),
        ],
    );
}
