//! /jsz and the JetStream series of /metrics rendered from a real JetStream source (plugged
//! into a loop-less broker, fed `$JS.API` requests by a client): sliced bodies have the bytes
//! of one-go bodies, a slice is bounded, and streams deleted between two slices leave the
//! body well formed.

use super::http::{parse, Parsed};
use super::stream::Stream;
use super::{respond, Monitor, Reply};
use crate::config::Config;
use crate::core::testing::World;
use crate::jetstream::source::JetStream;
use crate::server::source::{Cx, Others, Source};
use mio::{Token, Waker};
use std::sync::Arc;

struct Js {
    w: World,
    src: Box<dyn Source>,
    waker: Arc<Waker>,
    client: usize,
    dir: std::path::PathBuf,
}

impl Drop for Js {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Js {
    fn new(tag: &str) -> Js {
        let dir = std::env::temp_dir().join(format!("tern-jsz-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut cfg = Config::default();
        cfg.js.enabled = true;
        cfg.js.store_dir = dir.to_string_lossy().into_owned();
        cfg.js.max_memory = Some(1 << 30);
        cfg.js.max_store = Some(1 << 30);
        let mut w = World::new(cfg);
        let waker = Arc::new(Waker::new(w.poll.registry(), Token(usize::MAX - 3)).unwrap());
        let mut stop = false;
        let mut cx = Cx {
            broker: &mut w.b,
            waker: &waker,
            id: 1,
            stop: &mut stop,
            others: Others {
                before: &mut [],
                after: &mut [],
            },
        };
        let src = JetStream::plug(&mut cx).unwrap().unwrap();
        let client = w.client();
        w.send(client, b"CONNECT {\"verbose\":false}\r\n");
        Js {
            w,
            src,
            waker,
            client,
            dir,
        }
    }

    /// Sends an API request (or any publish) and runs JetStream's end of pass.
    fn api(&mut self, subject: &str, body: &str) {
        let frame = format!("PUB {subject} _INBOX.r {}\r\n{body}\r\n", body.len());
        self.w.send(self.client, frame.as_bytes());
        let mut stop = false;
        let mut cx = Cx {
            broker: &mut self.w.b,
            waker: &self.waker,
            id: 1,
            stop: &mut stop,
            others: Others {
                before: &mut [],
                after: &mut [],
            },
        };
        self.src.end_of_pass(&mut cx);
    }

    fn js(&mut self) -> &mut JetStream {
        self.src.state().unwrap().downcast_mut().unwrap()
    }

    /// One `produce` of `s` with this broker and JetStream source.
    fn produce(&mut self, s: &mut Stream, out: &mut Vec<u8>, budget: usize) -> bool {
        let js = self.src.state().and_then(|s| s.downcast_mut::<JetStream>());
        s.produce(&self.w.b, js, out, budget)
    }

    /// `n` streams `S0..` with a message and two consumers each.
    fn populate(&mut self, n: usize) {
        for i in 0..n {
            let cfg = format!(r#"{{"name":"S{i}","subjects":["s{i}.>"]}}"#);
            self.api(&format!("$JS.API.STREAM.CREATE.S{i}"), &cfg);
            self.api(&format!("s{i}.x"), "hello");
            for c in ["A", "B"] {
                let cc = format!(
                    r#"{{"stream_name":"S{i}","config":{{"durable_name":"{c}","ack_policy":"explicit","description":"d\"{c}"}}}}"#
                );
                self.api(&format!("$JS.API.CONSUMER.DURABLE.CREATE.S{i}.{c}"), &cc);
            }
        }
    }

    fn stream(&mut self, target: &str) -> Stream {
        let text = format!("GET {target} HTTP/1.1\r\n\r\n");
        let Parsed::Request(req, _) = parse(text.as_bytes()) else {
            panic!("{target}")
        };
        let js: Option<&mut JetStream> = self.src.state().and_then(|s| s.downcast_mut());
        match respond(&mut Monitor::new(), &self.w.b, js, &req) {
            Reply::Stream(s) => s,
            Reply::Done(r) => panic!("{target}: not a stream: {}", r.body),
        }
    }

    /// The whole body, `budget` bytes per slice.
    fn body(&mut self, target: &str, budget: usize) -> String {
        let mut s = self.stream(target);
        let mut out = Vec::new();
        while !self.produce(&mut s, &mut out, budget) {}
        String::from_utf8(out).unwrap()
    }
}

/// What varies from one rendering to the next: /jsz's `now`, the process figures of
/// /metrics (memory, CPU, uptime).
fn without_now(s: &str) -> String {
    s.lines()
        .filter(|l| !l.trim_start().starts_with("\"now\"") && !l.starts_with("gnatsd_varz_"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn slices_have_the_bytes_of_one_go() {
    let mut js = Js::new("slices");
    js.populate(4);
    assert_eq!(js.js().accounts().count(), 1);
    for target in [
        "/jsz?consumers=1&config=1",
        "/jsz?consumers=true",
        "/jsz?streams=1",
        "/jsz?accounts=1",
        "/jsz?acc=$G&config=1&consumers=1&callback=cb",
        "/metrics",
    ] {
        let whole = js.body(target, usize::MAX);
        let sliced = js.body(target, 1);
        assert_eq!(without_now(&sliced), without_now(&whole), "{target}");
        if target.starts_with("/jsz") && !target.contains("callback") {
            let parsed = crate::protocol::json::parse(whole.as_bytes());
            assert!(parsed.is_ok(), "{target}: {whole}");
        }
    }
    let all = js.body("/jsz?consumers=1&config=1", 1);
    assert_eq!(all.matches("\"stream_name\": \"S").count(), 8, "{all}");
    assert!(all.contains("\"description\": \"d\\\"B\""), "{all}");
    let metrics = js.body("/metrics", 1);
    assert_eq!(
        metrics
            .matches("# TYPE jetstream_consumer_num_pending gauge")
            .count(),
        1
    );
    assert_eq!(
        metrics.matches("jetstream_consumer_num_pending{").count(),
        8,
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"consumer_desc="d\"A""#),
        "label values are escaped: {metrics}"
    );
}

/// A slice renders about the budget (one part at least), never the whole of a big page.
#[test]
fn a_slice_is_bounded() {
    let mut js = Js::new("bounded");
    js.populate(30);
    for target in ["/jsz?consumers=1&config=1", "/metrics"] {
        let mut s = js.stream(target);
        let mut out = Vec::new();
        assert!(!js.produce(&mut s, &mut out, 1000), "{target}");
        let first = out.len();
        while !js.produce(&mut s, &mut out, 1000) {}
        assert!(
            out.len() > 20 * first.max(1000),
            "{target}: {} vs {first}",
            out.len()
        );
        let mut s = js.stream(target);
        let mut head = Vec::new();
        js.produce(&mut s, &mut head, 1);
        let mut part = Vec::new();
        js.produce(&mut s, &mut part, 1);
        assert!(
            part.len() < 3000,
            "{target}: a part of {} bytes",
            part.len()
        );
    }
}

/// Streams and consumers deleted while a body is being rendered are skipped; the body stays
/// valid JSON.
#[test]
fn deletions_between_slices() {
    let mut js = Js::new("deleted");
    js.populate(3);
    let mut s = js.stream("/jsz?consumers=1");
    let mut out = Vec::new();
    // The head, the account, S0 and its first consumer.
    for _ in 0..4 {
        assert!(!js.produce(&mut s, &mut out, 1));
    }
    js.api("$JS.API.CONSUMER.DELETE.S0.B", "");
    js.api("$JS.API.STREAM.DELETE.S1", "");
    while !js.produce(&mut s, &mut out, 1) {}
    let body = String::from_utf8(out).unwrap();
    assert!(
        crate::protocol::json::parse(body.as_bytes()).is_ok(),
        "{body}"
    );
    assert!(body.contains("\"name\": \"S0\"") && body.contains("\"name\": \"S2\""));
    assert!(!body.contains("\"name\": \"S1\""), "{body}");
    assert_eq!(body.matches("\"stream_name\": \"S0\"").count(), 1, "{body}");
    // Without the JetStream source (it cannot go away, but the cursor must not care) the
    // lists close.
    let mut s = js.stream("/jsz?consumers=1");
    let mut out = Vec::new();
    js.produce(&mut s, &mut out, 1);
    js.produce(&mut s, &mut out, 1);
    while !s.produce(&js.w.b, None, &mut out, 1) {}
    let body = String::from_utf8(out).unwrap();
    assert!(
        crate::protocol::json::parse(body.as_bytes()).is_ok(),
        "{body}"
    );
}

/// The keys of object `v`, in order.
fn keys(v: &crate::protocol::json::Value) -> Vec<&str> {
    match v {
        crate::protocol::json::Value::Obj(f) => f.iter().map(|(k, _)| k.as_str()).collect(),
        other => panic!("not an object: {other:?}"),
    }
}

fn first<'a>(v: &'a crate::protocol::json::Value, list: &str) -> &'a crate::protocol::json::Value {
    match v.get(list) {
        Some(crate::protocol::json::Value::Arr(a)) if !a.is_empty() => &a[0],
        other => panic!("{list}: {other:?}"),
    }
}

/// The fields of /jsz and /varz `jetstream`, in nats-server 2.9.10's order (as its live
/// documents show them, with both maxima configured).
#[test]
fn fields_in_nats_servers_order() {
    let mut js = Js::new("order");
    js.populate(1);
    let body = js.body("/jsz?consumers=1&config=1", 1);
    let doc = crate::protocol::json::parse(body.as_bytes()).unwrap();
    let stats = [
        "memory",
        "storage",
        "reserved_memory",
        "reserved_storage",
        "accounts",
        "ha_assets",
        "api",
    ];
    let mut top = vec!["server_id", "now", "config"];
    top.extend(stats);
    top.extend([
        "streams",
        "consumers",
        "messages",
        "bytes",
        "account_details",
    ]);
    assert_eq!(keys(&doc), top);
    let config = ["max_memory", "max_storage", "store_dir", "compress_ok"];
    assert_eq!(keys(doc.get("config").unwrap()), config);
    let account = first(&doc, "account_details");
    let mut want = vec!["name", "id"];
    want.extend(stats);
    want.push("stream_detail");
    assert_eq!(keys(account), want);
    let stream = first(account, "stream_detail");
    let want = [
        "name",
        "created",
        "cluster",
        "config",
        "state",
        "consumer_detail",
    ];
    assert_eq!(keys(stream), want);
    let state = [
        "messages",
        "bytes",
        "first_seq",
        "first_ts",
        "last_seq",
        "last_ts",
        "num_subjects",
        "consumer_count",
    ];
    assert_eq!(keys(stream.get("state").unwrap()), state);
    let consumer = [
        "stream_name",
        "name",
        "created",
        "config",
        "delivered",
        "ack_floor",
        "num_ack_pending",
        "num_redelivered",
        "num_waiting",
        "num_pending",
    ];
    assert_eq!(keys(first(stream, "consumer_detail")), consumer);
    let varz = super::jsz::varz_jetstream(Some(js.js()));
    let varz = crate::protocol::json::parse(varz.as_bytes()).unwrap();
    assert_eq!(keys(&varz), ["config", "stats"]);
    assert_eq!(keys(varz.get("config").unwrap()), config);
    assert_eq!(keys(varz.get("stats").unwrap()), stats);
}
