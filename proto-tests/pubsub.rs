// Publish/subscribe semantics: MSG framing, sids, payload edge cases, wildcards `*` and `>`
// (including publishing to subjects containing them), queue groups, UNSUB with and without max,
// unknown and duplicate sids, request/reply, and no-responders (503) notifications.

use crate::harness::*;
use std::collections::HashMap;

const QUIET_C: &str = "CONNECT {\"verbose\":false,\"pedantic\":false}\r\n";

#[test]
fn basic_delivery_and_framing() {
    let p = Pair::start(&[]);
    p.check(
        &one(format!(
            "{}SUB foo 1\r\nPUB foo 5\r\nhello\r\nPUB foo 0\r\n\r\nPING\r\n",
            QUIET_C
        )),
        &[info("MSG foo 1 5\r\nhello\r\nMSG foo 1 0\r\n\r\nPONG\r\n")],
    );
    // The sid is an opaque token; payloads may contain CR, LF and protocol-looking text.
    p.check(
        &one(format!(
            "{}SUB foo abc-XYZ\r\nPUB foo 12\r\nMSG x\r\n\r\n+OK\r\nPING\r\n",
            QUIET_C
        )),
        &[info("MSG foo abc-XYZ 12\r\nMSG x\r\n\r\n+OK\r\nPONG\r\n")],
    );
    // Binary payload bytes are delivered untouched. Leading zeros in the size are accepted, and
    // the size token is copied verbatim into MSG (nats-server reuses the publisher's bytes).
    let mut data = format!("{}SUB bin 1\r\nPUB bin 004\r\n", QUIET_C).into_bytes();
    data.extend_from_slice(&[0, 255, b'\r', 0x80]);
    data.extend_from_slice(b"\r\nPING\r\n");
    p.check(
        &one(&data),
        &[format!(
            "{}MSG bin 1 004\r\n\0\\xff\r\\x80\r\nPONG\r\n",
            INFO
        )],
    );
}

#[test]
fn delivery_between_connections() {
    let p = Pair::start(&[]);
    let script = Script::new()
        .send(0, format!("{}SUB foo 1\r\nSUB bar 2\r\n", QUIET_C))
        .sync(0)
        .send(
            1,
            format!(
                "{}PUB foo 2\r\nhi\r\nPUB bar reply.to 3\r\nyou\r\nPUB baz 1\r\nx\r\n",
                QUIET_C
            ),
        )
        .sync(1)
        .sync(0);
    p.check(
        &script,
        &[
            info("PONG\r\nMSG foo 1 2\r\nhi\r\nMSG bar 2 reply.to 3\r\nyou\r\nPONG\r\n"),
            info("PONG\r\n"),
        ],
    );
}

#[test]
fn large_payload_at_max_is_delivered_intact() {
    let s = Server::start(&[]);
    let mut sub = s.client();
    sub.send("CONNECT {\"verbose\":false}\r\nSUB big 1\r\n");
    sub.ping_pong();
    let mut publ = s.client();
    let payload: Vec<u8> = (0..1_048_576u32).map(|i| (i % 251) as u8).collect();
    let mut frame = b"CONNECT {\"verbose\":false}\r\nPUB big 1048576\r\n".to_vec();
    frame.extend_from_slice(&payload);
    frame.extend_from_slice(b"\r\nPING\r\n");
    publ.send(&frame);
    publ.expect("PONG\r\n");
    sub.expect("MSG big 1 1048576\r\n");
    sub.read_until(DEADLINE, |rx| rx.len() >= payload.len() + 2);
    assert!(
        sub.rx.len() >= payload.len() + 2,
        "short payload: {}",
        sub.rx.len()
    );
    assert!(sub.rx[..payload.len()] == payload[..], "payload corrupted");
    sub.rx.drain(..payload.len());
    sub.expect("\r\n");
    sub.expect_nothing(200);
}

#[test]
fn wildcards_match() {
    let p = Pair::start(&[]);
    // One subscription per connection so the order of deliveries is unambiguous.
    let subs = [
        "foo.*", "foo.>", ">", "*.bar", "foo.bar", "*", "*.*.baz", "foo",
    ];
    let mut script = Script::new();
    for (i, s) in subs.iter().enumerate() {
        script = script
            .send(i, format!("{}SUB {} 1\r\n", QUIET_C, s))
            .sync(i);
    }
    let publ = subs.len();
    script = script
        .send(
            publ,
            format!(
                "{}PUB foo.bar 1\r\na\r\nPUB foo.bar.baz 1\r\nb\r\nPUB foo 1\r\nc\r\nPUB bar.bar 1\r\nd\r\n\
                 PUB foo.* 1\r\ne\r\nPUB foo.> 1\r\nf\r\nPUB * 1\r\ng\r\nPUB x.y.baz.q 1\r\nh\r\n",
                QUIET_C
            ),
        )
        .sync(publ);
    for i in 0..subs.len() {
        script = script.sync(i);
    }
    let m = |subj: &str, body: &str| format!("MSG {} 1 1\r\n{}\r\n", subj, body);
    let exp = |msgs: &[(&str, &str)]| {
        format!(
            "{}PONG\r\n{}PONG\r\n",
            INFO,
            msgs.iter().map(|(s, b)| m(s, b)).collect::<String>()
        )
    };
    let expected = vec![
        // foo.*: one token after foo; `*` and `>` published literally are tokens too.
        exp(&[("foo.bar", "a"), ("foo.*", "e"), ("foo.>", "f")]),
        // foo.>: one or more tokens after foo (not foo itself).
        exp(&[
            ("foo.bar", "a"),
            ("foo.bar.baz", "b"),
            ("foo.*", "e"),
            ("foo.>", "f"),
        ]),
        // >: everything.
        exp(&[
            ("foo.bar", "a"),
            ("foo.bar.baz", "b"),
            ("foo", "c"),
            ("bar.bar", "d"),
            ("foo.*", "e"),
            ("foo.>", "f"),
            ("*", "g"),
            ("x.y.baz.q", "h"),
        ]),
        exp(&[("foo.bar", "a"), ("bar.bar", "d")]),
        // A literal subscription does not match a wildcard published subject.
        exp(&[("foo.bar", "a")]),
        exp(&[("foo", "c"), ("*", "g")]),
        exp(&[("foo.bar.baz", "b")]),
        exp(&[("foo", "c")]),
        info("PONG\r\n"),
    ];
    p.check(&script, &expected);
}

#[test]
fn wildcard_characters_inside_tokens_are_literal() {
    let p = Pair::start(&[]);
    let script = Script::new()
        .send(0, format!("{}SUB foo* 1\r\n", QUIET_C))
        .sync(0)
        .send(1, format!("{}SUB a>b.* 1\r\n", QUIET_C))
        .sync(1)
        .send(
            2,
            format!(
                "{}PUB foo* 1\r\n1\r\nPUB foox 1\r\n2\r\nPUB a>b.c 1\r\n3\r\nPUB ab.c 1\r\n4\r\n",
                QUIET_C
            ),
        )
        .sync(2)
        .sync(0)
        .sync(1);
    p.check(
        &script,
        &[
            info("PONG\r\nMSG foo* 1 1\r\n1\r\nPONG\r\n"),
            info("PONG\r\nMSG a>b.c 1 1\r\n3\r\nPONG\r\n"),
            info("PONG\r\n"),
        ],
    );
}

#[test]
fn subjects_with_empty_tokens_match_nothing() {
    // Without pedantic there is no error, but such subjects reach no subscriber, not even `>`.
    let p = Pair::start(&[]);
    p.check(
        &one(format!(
            "{}SUB > 1\r\nPUB foo..bar 1\r\na\r\nPUB .foo 1\r\nb\r\nPUB foo. 1\r\nc\r\nPUB . 1\r\nd\r\nPUB ok 1\r\ne\r\nPING\r\n",
            QUIET_C
        )),
        &[info("MSG ok 1 1\r\ne\r\nPONG\r\n")],
    );
}

#[test]
fn unsubscribe_stops_delivery_and_sid_can_be_reused() {
    let p = Pair::start(&[]);
    p.check(
        &one(format!(
            "{}SUB foo 1\r\nPUB foo 1\r\na\r\nUNSUB 1\r\nPUB foo 1\r\nb\r\nSUB bar 1\r\nPUB foo 1\r\nc\r\nPUB bar 1\r\nd\r\nPING\r\n",
            QUIET_C
        )),
        &[info("MSG foo 1 1\r\na\r\nMSG bar 1 1\r\nd\r\nPONG\r\n")],
    );
}

#[test]
fn unsubscribe_with_max() {
    let p = Pair::start(&[]);
    let pubs = |n: usize| {
        (0..n)
            .map(|i| format!("PUB foo 1\r\n{}\r\n", i))
            .collect::<String>()
    };
    let msgs = |r: std::ops::Range<usize>| {
        r.map(|i| format!("MSG foo 1 1\r\n{}\r\n", i))
            .collect::<String>()
    };
    // Auto-unsubscribe after max deliveries.
    p.check(
        &one(format!(
            "{}SUB foo 1\r\nUNSUB 1 3\r\n{}PING\r\n",
            QUIET_C,
            pubs(5)
        )),
        &[info(&format!("{}PONG\r\n", msgs(0..3)))],
    );
    // max below what was already delivered: removed at once.
    p.check(
        &one(format!(
            "{}SUB foo 1\r\n{}UNSUB 1 1\r\n{}PING\r\n",
            QUIET_C,
            pubs(2),
            pubs(2)
        )),
        &[info(&format!("{}PONG\r\n", msgs(0..2)))],
    );
    // max equal to delivered: removed at once.
    p.check(
        &one(format!(
            "{}SUB foo 1\r\n{}UNSUB 1 2\r\n{}PING\r\n",
            QUIET_C,
            pubs(2),
            pubs(2)
        )),
        &[info(&format!("{}PONG\r\n", msgs(0..2)))],
    );
    // max counts deliveries made before the UNSUB: 2 delivered, max 3 -> one more.
    p.check(
        &one(format!(
            "{}SUB foo 1\r\n{}UNSUB 1 3\r\n{}PING\r\n",
            QUIET_C,
            pubs(2),
            pubs(3)
        )),
        &[info(&format!("{}{}PONG\r\n", msgs(0..2), msgs(0..1)))],
    );
    // max 0 and a non-numeric max unsubscribe immediately.
    p.check(
        &one(format!(
            "{}SUB foo 1\r\nUNSUB 1 0\r\n{}PING\r\n",
            QUIET_C,
            pubs(1)
        )),
        &[info("PONG\r\n")],
    );
    p.check(
        &one(format!(
            "{}SUB foo 1\r\nUNSUB 1 x\r\n{}PING\r\n",
            QUIET_C,
            pubs(1)
        )),
        &[info("PONG\r\n")],
    );
    // A later UNSUB with a different max replaces the earlier one.
    p.check(
        &one(format!(
            "{}SUB foo 1\r\nUNSUB 1 1\r\nUNSUB 1 2\r\n{}PING\r\n",
            QUIET_C,
            pubs(3)
        )),
        &[info(&format!("{}PONG\r\n", msgs(0..2)))],
    );
    // Verbose: every UNSUB is acknowledged.
    p.check(
        &one("SUB foo 1\r\nUNSUB 1 1\r\nPUB foo 1\r\na\r\nPUB foo 1\r\nb\r\nPING\r\n"),
        &[info(
            "+OK\r\n+OK\r\n+OK\r\nMSG foo 1 1\r\na\r\n+OK\r\nPONG\r\n",
        )],
    );
}

#[test]
fn unsubscribe_with_max_counts_across_publishers() {
    let p = Pair::start(&[]);
    let script = Script::new()
        .send(0, format!("{}SUB foo 7\r\nUNSUB 7 2\r\n", QUIET_C))
        .sync(0)
        .send(1, format!("{}PUB foo 1\r\na\r\n", QUIET_C))
        .sync(1)
        .send(
            2,
            format!("{}PUB foo 1\r\nb\r\nPUB foo 1\r\nc\r\n", QUIET_C),
        )
        .sync(2)
        .sync(0);
    p.check(
        &script,
        &[
            info("PONG\r\nMSG foo 7 1\r\na\r\nMSG foo 7 1\r\nb\r\nPONG\r\n"),
            info("PONG\r\n"),
            info("PONG\r\n"),
        ],
    );
}

#[test]
fn unsubscribe_unknown_sid() {
    let p = Pair::start(&[]);
    // Not an error: +OK in verbose mode, nothing otherwise.
    p.check(
        &one("UNSUB 99\r\nUNSUB nope 3\r\nPING\r\n"),
        &[info("+OK\r\n+OK\r\nPONG\r\n")],
    );
    p.check(
        &one(format!("{}UNSUB 99\r\nPING\r\n", QUIET_C)),
        &[info("PONG\r\n")],
    );
    // Unsubscribing twice is fine too.
    p.check(
        &one("SUB foo 1\r\nUNSUB 1\r\nUNSUB 1\r\nPING\r\n"),
        &[info("+OK\r\n+OK\r\n+OK\r\nPONG\r\n")],
    );
}

#[test]
fn duplicate_sid_keeps_first_subscription() {
    let p = Pair::start(&[]);
    // The second SUB with the same sid is acknowledged but ignored.
    p.check(
        &one("SUB foo 1\r\nSUB bar 1\r\nPUB foo 1\r\na\r\nPUB bar 1\r\nb\r\nPING\r\n"),
        &[info(
            "+OK\r\n+OK\r\n+OK\r\nMSG foo 1 1\r\na\r\n+OK\r\nPONG\r\n",
        )],
    );
    // Even when the duplicate would be a queue subscription.
    p.check(
        &one(format!(
            "{}SUB foo 1\r\nSUB foo q 1\r\nPUB foo 1\r\na\r\nUNSUB 1\r\nPUB foo 1\r\nb\r\nPING\r\n",
            QUIET_C
        )),
        &[info("MSG foo 1 1\r\na\r\nPONG\r\n")],
    );
}

#[test]
fn request_reply() {
    let p = Pair::start(&[]);
    let script = Script::new()
        .send(0, format!("{}SUB svc 1\r\n", QUIET_C))
        .sync(0)
        .send(
            1,
            format!(
                "{}SUB _INBOX.abc 9\r\nPUB svc _INBOX.abc 4\r\nping\r\n",
                QUIET_C
            ),
        )
        .sync(1)
        .sync(0)
        .send(0, "PUB _INBOX.abc 4\r\npong\r\n")
        .sync(0)
        .sync(1);
    p.check(
        &script,
        &[
            info("PONG\r\nMSG svc 1 _INBOX.abc 4\r\nping\r\nPONG\r\nPONG\r\n"),
            info("PONG\r\nMSG _INBOX.abc 9 4\r\npong\r\nPONG\r\n"),
        ],
    );
}

#[test]
fn no_responders_503() {
    let p = Pair::start(&[]);
    let nr = "CONNECT {\"verbose\":false,\"headers\":true,\"no_responders\":true}\r\n";
    let exact = "HMSG inbox 1 16 16\r\nNATS/1.0 503\r\n\r\n\r\n";
    p.check(
        &one(format!(
            "{}SUB inbox 1\r\nPUB nobody inbox 2\r\nhi\r\nPING\r\n",
            nr
        )),
        &[info(&format!("{}PONG\r\n", exact))],
    );
    // Also for HPUB, and after the only subscriber went away.
    p.check(
        &one(format!(
            "{}SUB inbox 1\r\nHPUB nobody inbox 12 14\r\nNATS/1.0\r\n\r\nhi\r\nPING\r\n",
            nr
        )),
        &[info(&format!("{}PONG\r\n", exact))],
    );
    p.check(
        &one(format!(
            "{}SUB inbox 1\r\nSUB svc 2\r\nUNSUB 2\r\nPUB svc inbox 0\r\n\r\nPING\r\n",
            nr
        )),
        &[info(&format!("{}PONG\r\n", exact))],
    );
    // The reply subject is reported as published, with the sid of the matching subscription.
    p.check(
        &one(format!(
            "{}SUB _INBOX.* 42\r\nPUB nobody _INBOX.x 0\r\n\r\nPING\r\n",
            nr
        )),
        &[info(
            "HMSG _INBOX.x 42 16 16\r\nNATS/1.0 503\r\n\r\n\r\nPONG\r\n",
        )],
    );
    // With echo off, the requester's own subscription is no responder.
    p.check(
        &one("CONNECT {\"verbose\":false,\"headers\":true,\"no_responders\":true,\"echo\":false}\r\nSUB inbox 1\r\nSUB svc 2\r\nPUB svc inbox 0\r\n\r\nPING\r\n"),
        &[info(&format!("{}PONG\r\n", exact))],
    );
    // No 503 without a reply subject, without no_responders, or when someone received it.
    p.check(
        &one(format!(
            "{}SUB inbox 1\r\nPUB nobody 2\r\nhi\r\nPING\r\n",
            nr
        )),
        &[info("PONG\r\n")],
    );
    p.check(
        &one("CONNECT {\"verbose\":false,\"headers\":true}\r\nSUB inbox 1\r\nPUB nobody inbox 2\r\nhi\r\nPING\r\n"),
        &[info("PONG\r\n")],
    );
    p.check(
        &one(format!(
            "{}SUB inbox 1\r\nSUB svc 2\r\nPUB svc inbox 2\r\nhi\r\nPING\r\n",
            nr
        )),
        &[info("MSG svc 2 inbox 2\r\nhi\r\nPONG\r\n")],
    );
    // Without a subscription of its own on the reply subject, the requester gets nothing.
    p.check(
        &one(format!("{}PUB nobody inbox 2\r\nhi\r\nPING\r\n", nr)),
        &[info("PONG\r\n")],
    );
    let script = Script::new()
        .send(0, format!("{}SUB inbox 1\r\n", QUIET_C))
        .sync(0)
        .send(1, format!("{}PUB nobody inbox 2\r\nhi\r\n", nr))
        .sync(1)
        .sync(0);
    p.check(&script, &[info("PONG\r\nPONG\r\n"), info("PONG\r\n")]);
}

/// Parse `MSG subj sid size\r\npayload\r\n` frames; returns (sid, payload) pairs and the rest.
fn parse_msgs(mut b: &[u8]) -> (Vec<(String, String)>, Vec<u8>) {
    let mut out = Vec::new();
    while let Some(eol) = find(b, b"\r\n") {
        let line = String::from_utf8_lossy(&b[..eol]).into_owned();
        let parts: Vec<&str> = line.split(' ').collect();
        if parts[0] != "MSG" {
            break;
        }
        let size: usize = parts.last().unwrap().parse().unwrap();
        if b.len() < eol + 2 + size + 2 {
            break;
        }
        let payload = String::from_utf8_lossy(&b[eol + 2..eol + 2 + size]).into_owned();
        out.push((parts[2].to_string(), payload));
        b = &b[eol + 2 + size + 2..];
    }
    (out, b.to_vec())
}

fn collect_until_pong(c: &mut Client) -> Vec<(String, String)> {
    c.send("PING\r\n");
    assert!(
        c.read_until(DEADLINE, |rx| rx.ends_with(b"PONG\r\n")),
        "no PONG: {}",
        esc(&c.rx)
    );
    let data = std::mem::take(&mut c.rx);
    let (msgs, rest) = parse_msgs(&data);
    assert_eq!(rest, b"PONG\r\n", "unexpected trailing data");
    msgs
}

#[test]
fn queue_groups_deliver_each_message_to_exactly_one_member() {
    let s = Server::start(&[]);
    let mut conns: Vec<Client> = Vec::new();
    // 0,1: group g1 on foo; 2: group g2 on foo; 3: plain foo; 4: group g1 on bar (other subject).
    for sub in [
        "SUB foo g1 1",
        "SUB foo g1 1",
        "SUB foo g2 1",
        "SUB foo 1",
        "SUB bar g1 1",
    ] {
        let mut c = s.client();
        c.send(format!("{}{}\r\n", QUIET_C, sub));
        c.ping_pong();
        conns.push(c);
    }
    let mut publ = s.client();
    let n = 200;
    let mut data = QUIET_C.to_string();
    for i in 0..n {
        data.push_str(&format!("PUB foo {}\r\n{}\r\n", i.to_string().len(), i));
    }
    publ.send(data);
    publ.ping_pong();
    let got: Vec<Vec<(String, String)>> = conns.iter_mut().map(collect_until_pong).collect();
    let all: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    let payloads = |v: &Vec<(String, String)>| v.iter().map(|(_, p)| p.clone()).collect::<Vec<_>>();
    // Plain subscriber and the single-member group get every message, in order.
    assert_eq!(payloads(&got[3]), all);
    assert_eq!(payloads(&got[2]), all);
    assert!(got[4].is_empty());
    // Group g1: each message exactly once across both members, per-member order preserved.
    let mut seen: HashMap<String, usize> = HashMap::new();
    for m in [&got[0], &got[1]] {
        let mut last: i64 = -1;
        for (_, p) in m.iter() {
            *seen.entry(p.clone()).or_default() += 1;
            let v: i64 = p.parse().unwrap();
            assert!(v > last, "out of order within a member");
            last = v;
        }
    }
    assert_eq!(seen.len(), n);
    assert!(
        seen.values().all(|&c| c == 1),
        "a message went to more than one member"
    );
    // Both members get a share (random pick in nats-server; 2^-199 chance of failure).
    assert!(
        !got[0].is_empty() && !got[1].is_empty(),
        "queue group members: {} / {}",
        got[0].len(),
        got[1].len()
    );
}

#[test]
fn queue_group_members_on_one_connection() {
    let s = Server::start(&[]);
    let mut c = s.client();
    let n = 100;
    let mut data = format!("{}SUB foo q 1\r\nSUB foo q 2\r\nSUB foo 3\r\n", QUIET_C);
    for i in 0..n {
        data.push_str(&format!("PUB foo {}\r\n{}\r\n", i.to_string().len(), i));
    }
    c.send(data);
    let msgs = collect_until_pong(&mut c);
    let plain: Vec<&String> = msgs
        .iter()
        .filter(|(sid, _)| sid == "3")
        .map(|(_, p)| p)
        .collect();
    let queued: Vec<&(String, String)> = msgs.iter().filter(|(sid, _)| sid != "3").collect();
    assert_eq!(plain.len(), n);
    assert_eq!(queued.len(), n, "each message to exactly one queue member");
    let mut ps: Vec<i64> = queued.iter().map(|(_, p)| p.parse().unwrap()).collect();
    ps.sort();
    assert_eq!(ps, (0..n as i64).collect::<Vec<_>>());
    assert!(queued.iter().any(|(s, _)| s == "1") && queued.iter().any(|(s, _)| s == "2"));
}

#[test]
fn queue_group_member_unsubscribe_and_wildcard_groups() {
    let p = Pair::start(&[]);
    // After the other member leaves, the remaining one gets everything; a wildcard queue
    // subscription forms its own group per subscription subject+queue name.
    let script = Script::new()
        .send(0, format!("{}SUB foo.* q 1\r\n", QUIET_C))
        .sync(0)
        .send(1, format!("{}SUB foo.bar q 1\r\nUNSUB 1\r\n", QUIET_C))
        .sync(1)
        .send(
            2,
            format!("{}PUB foo.bar 1\r\na\r\nPUB foo.baz 1\r\nb\r\n", QUIET_C),
        )
        .sync(2)
        .sync(0)
        .sync(1);
    p.check(
        &script,
        &[
            info("PONG\r\nMSG foo.bar 1 1\r\na\r\nMSG foo.baz 1 1\r\nb\r\nPONG\r\n"),
            info("PONG\r\nPONG\r\n"),
            info("PONG\r\n"),
        ],
    );
}

#[test]
fn queue_group_auto_unsubscribe() {
    let s = Server::start(&[]);
    let mut a = s.client();
    a.send(format!("{}SUB foo q 1\r\nUNSUB 1 3\r\n", QUIET_C));
    a.ping_pong();
    let mut publ = s.client();
    let mut data = QUIET_C.to_string();
    for i in 0..10 {
        data.push_str(&format!("PUB foo 1\r\n{}\r\n", i));
    }
    publ.send(data);
    publ.ping_pong();
    let got = collect_until_pong(&mut a);
    let ps: Vec<String> = got.into_iter().map(|(_, p)| p).collect();
    assert_eq!(ps, ["0", "1", "2"]);
    a.expect_nothing(200);
}
