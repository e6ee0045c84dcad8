//! Behaviour the fixtures cannot show: what the integration is told to do around a reply
//! (flush, sync, subscription changes), the domain in PubAcks, republish, server limits,
//! publishes without a reply, and reopening streams from disk.

use super::account::{Env, JsAccount, JsLimits, ServerJs};
use super::api::{self, Change, Reply, Request, Response};
use super::publish::{Inbound, PubOutcome, Republish};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tern-js-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn env(domain: Option<&'static str>) -> Env<'static> {
    Env {
        now: SystemTime::now(),
        server: ServerJs {
            max_memory: 1 << 40,
            max_store: 1 << 40,
            ..ServerJs::default()
        },
        domain,
        interest: &crate::jetstream::account::any_interest,
    }
}

fn call(acc: &mut JsAccount, env: &Env, subject: &str, payload: &str) -> Response {
    let req = Request {
        subject,
        reply: b"_INBOX.x",
        payload: payload.as_bytes(),
    };
    api::handle(acc, env, &req)
}

fn json(r: &Response) -> &str {
    match &r.reply {
        Reply::Json(s) => s,
        other => panic!("not JSON: {other:?}"),
    }
}

fn publish(acc: &mut JsAccount, env: &Env, subject: &str, hdr: &[u8], reply: bool) -> PubOutcome {
    let msg = Inbound {
        subject,
        hdr,
        data: b"data",
        has_reply: reply,
    };
    let name = acc
        .stream_for_subject(subject)
        .expect("a stream")
        .to_string();
    let out = acc.publish(env, &name, &msg).expect("stream exists");
    for s in acc.streams.values_mut() {
        s.store.flush().expect("flush");
    }
    out
}

fn ack(out: &PubOutcome) -> Option<String> {
    let bytes = match out {
        PubOutcome::Stored(s) => s.ack.clone(),
        PubOutcome::Done(r) => r.clone(),
    };
    bytes.map(|b| String::from_utf8(b).expect("utf-8"))
}

#[test]
fn what_the_integration_must_do_around_replies() {
    let dir = temp_dir("around");
    let mut acc = JsAccount::new(&dir, "A", JsLimits::default());
    let env = env(None);
    let r = call(
        &mut acc,
        &env,
        "$JS.API.STREAM.CREATE.S",
        r#"{"name":"S","subjects":["s.>"]}"#,
    );
    assert_eq!(r.change, Some(Change::Created("S".into())));
    assert!(
        r.sync.is_some(),
        "meta.inf written: fsync it before replying (sync always)"
    );
    assert!(dir.join("jetstream/A/streams/S/meta.inf").exists());
    publish(&mut acc, &env, "s.a", b"", true);
    for (subject, body) in [
        ("$JS.API.STREAM.MSG.DELETE.S", r#"{"seq":1}"#),
        ("$JS.API.STREAM.PURGE.S", ""),
        (
            "$JS.API.STREAM.UPDATE.S",
            r#"{"name":"S","subjects":["s.>","t"]}"#,
        ),
    ] {
        let r = call(&mut acc, &env, subject, body);
        assert_eq!(r.flush.as_deref(), Some("S"), "{subject}: {}", json(&r));
    }
    let r = call(&mut acc, &env, "$JS.API.STREAM.INFO.S", "");
    assert!(r.flush.is_none() && r.sync.is_none() && r.change.is_none());
    let r = call(&mut acc, &env, "$JS.API.STREAM.DELETE.S", "");
    assert_eq!(r.change, Some(Change::Deleted("S".into())));
    assert!(!dir.join("jetstream/A/streams/S").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn domain_in_acks_and_info() {
    let dir = temp_dir("domain");
    let mut acc = JsAccount::new(&dir, "A", JsLimits::default());
    let env = env(Some("hub"));
    let r = call(
        &mut acc,
        &env,
        "$JS.API.STREAM.CREATE.D",
        r#"{"name":"D","storage":"memory"}"#,
    );
    assert!(
        !json(&r).contains("domain"),
        "create replies carry no domain: {}",
        json(&r)
    );
    let out = publish(&mut acc, &env, "D", b"", true);
    assert_eq!(
        ack(&out).unwrap(),
        r#"{"stream":"D", "domain":"hub", "seq":1}"#
    );
    let hdr = b"NATS/1.0\r\nNats-Expected-Stream: X\r\n\r\n";
    let out = publish(&mut acc, &env, "D", hdr, true);
    assert_eq!(
        ack(&out).unwrap(),
        r#"{"error":{"code":400,"err_code":10060,"description":"expected stream does not match"},"stream":"D","seq":0,"domain":"hub"}"#
    );
    let r = call(&mut acc, &env, "$JS.API.STREAM.INFO.D", "");
    assert!(json(&r).ends_with(r#""domain":"hub"}"#), "{}", json(&r));
    let r = call(&mut acc, &env, "$JS.API.INFO", "");
    assert!(json(&r).contains(r#""domain":"hub","api""#), "{}", json(&r));
}

#[test]
fn republish_after_store() {
    let dir = temp_dir("republish");
    let mut acc = JsAccount::new(&dir, "A", JsLimits::default());
    let env = env(None);
    let body = r#"{"name":"R","subjects":["r.*"],"storage":"memory","republish":{"src":"r.*","dest":"out.$1"}}"#;
    call(&mut acc, &env, "$JS.API.STREAM.CREATE.R", body);
    publish(&mut acc, &env, "r.a", b"", false);
    let PubOutcome::Stored(s) = publish(&mut acc, &env, "r.a", b"NATS/1.0\r\nK: v\r\n\r\n", false)
    else {
        panic!("not stored");
    };
    assert_eq!(s.ack, None, "no reply subject, no ack");
    assert_eq!(
        s.republish,
        Some(Republish {
            subject: "out.a".into(),
            hdr: b"NATS/1.0\r\nK: v\r\nNats-Stream: R\r\nNats-Subject: r.a\r\nNats-Sequence: 2\r\nNats-Last-Sequence: 1\r\n\r\n".to_vec(),
            data: b"data".to_vec(),
        })
    );
}

#[test]
fn server_limits_and_missing_replies() {
    let dir = temp_dir("server");
    let mut acc = JsAccount::new(&dir, "A", JsLimits::default());
    let mut env = env(None);
    call(
        &mut acc,
        &env,
        "$JS.API.STREAM.CREATE.N",
        r#"{"name":"N","storage":"memory","no_ack":true}"#,
    );
    call(
        &mut acc,
        &env,
        "$JS.API.STREAM.CREATE.F",
        r#"{"name":"F","storage":"memory"}"#,
    );
    assert_eq!(
        ack(&publish(&mut acc, &env, "N", b"", true)),
        None,
        "no_ack"
    );
    assert_eq!(
        ack(&publish(&mut acc, &env, "F", b"", false)),
        None,
        "no reply subject"
    );
    env.server.used_memory = env.server.max_memory + 1;
    let out = publish(&mut acc, &env, "F", b"", true);
    assert_eq!(
        ack(&out).unwrap(),
        r#"{"error":{"code":503,"err_code":10023,"description":"insufficient resources"},"stream":"F","seq":0}"#
    );
    // A sealed stream answers even with no_ack (nats-server checks sealed first).
    let body = r#"{"name":"N","storage":"memory","no_ack":true,"sealed":true}"#;
    call(&mut acc, &env, "$JS.API.STREAM.UPDATE.N", body);
    assert!(ack(&publish(&mut acc, &env, "N", b"", true))
        .unwrap()
        .contains("10109"));
}

#[test]
fn request_info_header_is_not_stored() {
    let dir = temp_dir("reqinfo");
    let mut acc = JsAccount::new(&dir, "A", JsLimits::default());
    let env = env(None);
    call(
        &mut acc,
        &env,
        "$JS.API.STREAM.CREATE.Q",
        r#"{"name":"Q","storage":"memory"}"#,
    );
    let hdr = b"NATS/1.0\r\nNats-Request-Info: {\"acc\":\"B\"}\r\nK: v\r\n\r\n";
    publish(&mut acc, &env, "Q", hdr, true);
    let m = acc.streams["Q"].store.load(1).expect("stored");
    assert_eq!(m.hdr(), b"NATS/1.0\r\nK: v\r\n\r\n");
}

#[test]
fn failed_flush_replies() {
    let r = api::failed_reply("$JS.API.STREAM.PURGE.S", "store write failed: no space");
    assert_eq!(
        r,
        Reply::Json(r#"{"type":"io.nats.jetstream.api.v1.stream_purge_response","error":{"code":500,"err_code":10051,"description":"store write failed: no space"},"purged":0}"#.into())
    );
    assert_eq!(api::failed_reply("$JS.API.STREAM.INFO.S", "x"), Reply::None);
}

#[test]
fn reopen_skips_a_stream_with_bad_meta() {
    let dir = temp_dir("reopen");
    let mut acc = JsAccount::new(&dir, "A", JsLimits::default());
    let mut env = env(None);
    call(
        &mut acc,
        &env,
        "$JS.API.STREAM.CREATE.GOOD",
        r#"{"name":"GOOD","max_age":3600000000000}"#,
    );
    call(
        &mut acc,
        &env,
        "$JS.API.STREAM.CREATE.BAD",
        r#"{"name":"BAD"}"#,
    );
    publish(
        &mut acc,
        &env,
        "GOOD",
        b"NATS/1.0\r\nNats-Msg-Id: x\r\n\r\n",
        true,
    );
    drop(acc);
    std::fs::write(dir.join("jetstream/A/streams/BAD/meta.inf"), b"{not json").unwrap();
    let mut acc = JsAccount::open(&dir, "A", JsLimits::default(), None);
    assert_eq!(acc.streams.keys().collect::<Vec<_>>(), vec!["GOOD"]);
    assert!(
        dir.join("jetstream/A/streams/BAD").exists(),
        "left on disk for the operator"
    );
    let hdr = b"NATS/1.0\r\nNats-Msg-Id: x\r\n\r\n";
    let out = publish(&mut acc, &env, "GOOD", hdr, true);
    assert_eq!(
        ack(&out).unwrap(),
        r#"{"stream":"GOOD", "seq":1,"duplicate": true}"#
    );
    env.now += Duration::from_secs(7200);
    assert!(acc.expire_all(env.now).is_none(), "the message aged out");
    assert_eq!(acc.streams["GOOD"].store.state().msgs, 0);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Not an assertion: the stream layer's cost per publish on top of the store, printed.
/// `cargo test --release --lib publish_cost -- --ignored --nocapture`
#[test]
#[ignore]
fn publish_cost() {
    for (storage, with_id) in [("file", false), ("file", true), ("memory", false)] {
        let dir = temp_dir(&format!("cost-{storage}-{with_id}"));
        let mut acc = JsAccount::new(&dir, "A", JsLimits::default());
        let env = env(None);
        let body = format!(r#"{{"name":"C","subjects":["c.*"],"storage":"{storage}"}}"#);
        call(&mut acc, &env, "$JS.API.STREAM.CREATE.C", &body);
        let data = [b'x'; 128];
        let n = 200_000u64;
        let (mut in_publish, mut in_flush) = (Duration::ZERO, Duration::ZERO);
        for i in 0..n {
            let hdr = if with_id {
                format!("NATS/1.0\r\nNats-Msg-Id: {i}\r\n\r\n").into_bytes()
            } else {
                Vec::new()
            };
            let msg = Inbound {
                subject: "c.x",
                hdr: &hdr,
                data: &data,
                has_reply: true,
            };
            let t = std::time::Instant::now();
            let out = acc.publish(&env, "C", &msg);
            in_publish += t.elapsed();
            assert!(matches!(out, Some(PubOutcome::Stored(_))));
            if i % 64 == 63 {
                let t = std::time::Instant::now();
                acc.streams.get_mut("C").unwrap().store.flush().unwrap();
                in_flush += t.elapsed();
            }
        }
        // The same appends straight into the store, for the stream layer's share.
        let store = &mut acc.streams.get_mut("C").unwrap().store;
        let t = std::time::Instant::now();
        for i in 0..n {
            store.append(b"c.x", b"", &data, i as i64 + 1).unwrap();
            if i % 64 == 63 {
                store.flush().unwrap();
            }
        }
        let raw = t.elapsed();
        println!(
            "{storage} msg-id={with_id}: publish {} ns/msg, flush {} ns/msg; store append+flush alone {} ns/msg",
            in_publish.as_nanos() / u128::from(n),
            in_flush.as_nanos() / u128::from(n),
            raw.as_nanos() / u128::from(n)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn huge_max_bytes_update_does_not_overflow() {
    let dir = temp_dir("huge");
    let mut acc = JsAccount::new(&dir, "A", JsLimits::default());
    let env = env(None);
    call(
        &mut acc,
        &env,
        "$JS.API.STREAM.CREATE.H",
        r#"{"name":"H","storage":"memory"}"#,
    );
    let body = r#"{"name":"H","storage":"memory","max_bytes":9223372036854775807}"#;
    let r = call(&mut acc, &env, "$JS.API.STREAM.UPDATE.H", body);
    assert!(json(&r).contains("10028"), "{}", json(&r));
}

#[test]
fn huge_subject_lists_are_checked_quickly() {
    let dir = temp_dir("hugesubj");
    let mut acc = JsAccount::new(&dir, "A", JsLimits::default());
    let env = env(None);
    // 50k literal subjects: linear (a hash set), not 2.5 billion comparisons.
    let subjects: Vec<String> = (0..50_000).map(|i| format!("\"lit.{i}\"")).collect();
    let body = format!(
        r#"{{"name":"L","storage":"memory","subjects":[{}]}}"#,
        subjects.join(",")
    );
    let r = call(&mut acc, &env, "$JS.API.STREAM.CREATE.L", &body);
    assert!(json(&r).contains("did_create"), "{}", &json(&r)[..200]);
    // Another stream's literal subjects are looked up, not compared one by one.
    let subjects: Vec<String> = (0..50_000).map(|i| format!("\"other.{i}\"")).collect();
    let body = format!(
        r#"{{"name":"O","storage":"memory","subjects":[{}]}}"#,
        subjects.join(",")
    );
    let r = call(&mut acc, &env, "$JS.API.STREAM.CREATE.O", &body);
    assert!(json(&r).contains("did_create"), "{}", &json(&r)[..200]);
    // Many wildcards: refused past the comparison budget instead of stalling the loop.
    let subjects: Vec<String> = (0..5_000).map(|i| format!("\"w{i}.*\"")).collect();
    let body = format!(
        r#"{{"name":"W","storage":"memory","subjects":[{}]}}"#,
        subjects.join(",")
    );
    let r = call(&mut acc, &env, "$JS.API.STREAM.CREATE.W", &body);
    assert!(
        json(&r).contains("too many wildcard subjects"),
        "{}",
        json(&r)
    );
}

#[test]
fn over_account_limit_on_a_file_stream_survives_reopen() {
    let dir = temp_dir("acclimit");
    let limits = JsLimits {
        max_store: 100,
        ..JsLimits::default()
    };
    let mut acc = JsAccount::new(&dir, "A", limits);
    let env = env(None);
    call(&mut acc, &env, "$JS.API.STREAM.CREATE.F", r#"{"name":"F"}"#);
    // 22 + 1 + 4 + 8 = 35 bytes each: the third takes the account over 100.
    for want in [r#"{"stream":"F", "seq":1}"#, r#"{"stream":"F", "seq":2}"#] {
        assert_eq!(ack(&publish(&mut acc, &env, "F", b"", true)).unwrap(), want);
    }
    let out = ack(&publish(&mut acc, &env, "F", b"", true)).unwrap();
    assert!(out.contains("10002"), "{out}");
    drop(acc);
    let mut acc = JsAccount::open(&dir, "A", limits, None);
    let st = acc.streams["F"].store.state();
    assert_eq!(
        (st.msgs, st.last_seq),
        (2, 3),
        "removed again, sequence consumed"
    );
    let r = call(
        &mut acc,
        &env,
        "$JS.API.STREAM.MSG.DELETE.F",
        r#"{"seq":1}"#,
    );
    assert!(json(&r).contains("success"));
    let out = ack(&publish(&mut acc, &env, "F", b"", true)).unwrap();
    assert_eq!(out, r#"{"stream":"F", "seq":4}"#);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn templates_snapshots_and_restores_are_refused_clearly() {
    let dir = temp_dir("refused");
    let mut acc = JsAccount::new(&dir, "A", JsLimits::default());
    let env = env(None);
    call(
        &mut acc,
        &env,
        "$JS.API.STREAM.CREATE.S",
        r#"{"name":"S","storage":"memory"}"#,
    );
    let cases = [
        (
            "$JS.API.STREAM.TEMPLATE.CREATE.T",
            r#"{"name":"T"}"#,
            r#""err_code":10066,"description":"stream templates are not supported by tern""#,
        ),
        (
            "$JS.API.STREAM.SNAPSHOT.S",
            r#"{"deliver_subject":"x"}"#,
            r#""err_code":10064,"description":"snapshot failed: stream snapshots are not supported by tern""#,
        ),
        (
            "$JS.API.STREAM.RESTORE.R",
            r#"{"config":{"name":"R"}}"#,
            r#""err_code":10062,"description":"restore failed: stream restores are not supported by tern"},"deliver_subject":"""#,
        ),
    ];
    for (subject, body, want) in cases {
        let r = call(&mut acc, &env, subject, body);
        assert!(json(&r).contains(want), "{subject}: {}", json(&r));
    }
    assert_eq!((acc.api_total, acc.api_errors), (4, 3));
}
