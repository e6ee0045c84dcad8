// JetStream in the monitoring endpoints (`-js -m PORT`): /jsz with its options (accounts,
// streams, consumers, config, acc, offset, limit), the `jetstream` block of /varz, and the
// JetStream series of /metrics. A stream and a pull consumer are made over the wire, with a
// redelivery, then the documents are compared with nats-server's: the recursive key sets and
// the values, with times, server ids and the store's free space normalised. /metrics (tern's
// own) is checked against /jsz.

use crate::harness::*;
use crate::monitor::{key_set, Mon, J};
use std::path::PathBuf;

/// A store directory, removed on drop.
struct StoreDir(PathBuf);

impl StoreDir {
    fn new() -> StoreDir {
        StoreDir(temp_path("jsmon", "d"))
    }
    fn arg(&self) -> String {
        self.0.to_string_lossy().into_owned()
    }
}

impl Drop for StoreDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A server with JetStream on in its own store directory (the dir goes with it).
struct JsMon {
    m: Mon,
    _dir: StoreDir,
}

fn start_js(reference: bool, conf: Option<&str>) -> Option<JsMon> {
    let dir = StoreDir::new();
    let sd = dir.arg();
    let args = ["-js", "-sd", sd.as_str()];
    let m = if reference {
        Mon::reference(conf, &args)?
    } else {
        Mon::tern(conf, &args)
    };
    Some(JsMon { m, _dir: dir })
}

/// One message from the server: (subject, reply, payload).
type Msg = (String, String, String);

/// Takes the first whole MSG from `c.rx` (waiting for it), dropping anything before it.
fn next_msg(c: &mut Client, what: &str) -> Msg {
    let whole = |rx: &[u8]| -> Option<(usize, Msg)> {
        let start = find(rx, b"MSG ")?;
        let end = start + find(&rx[start..], b"\r\n")?;
        let line = String::from_utf8_lossy(&rx[start..end]).into_owned();
        let args: Vec<&str> = line.split_whitespace().collect();
        let size: usize = args.last()?.parse().ok()?;
        let body = rx.get(end + 2..end + 2 + size + 2)?;
        let reply = if args.len() == 5 { args[3] } else { "" };
        let payload = String::from_utf8_lossy(&body[..size]).into_owned();
        Some((end + 4 + size, (args[1].into(), reply.into(), payload)))
    };
    let ok = c.read_until(DEADLINE, |rx| whole(rx).is_some());
    assert!(ok, "{what}: no reply: {}", esc(&c.rx));
    let (used, msg) = whole(&c.rx).unwrap();
    c.rx.drain(..used);
    msg
}

/// A request on `subject`; the reply's payload.
fn request(c: &mut Client, subject: &str, body: &str) -> String {
    c.send(format!(
        "PUB {subject} _INBOX.r {}\r\n{body}\r\n",
        body.len()
    ));
    let (_, _, payload) = next_msg(c, subject);
    assert!(!payload.contains("\"error\""), "{subject}: {payload}");
    payload
}

/// Stream S (`s.>`, 2 messages) and durable pull consumer D (explicit acks, ack_wait 300 ms)
/// that delivered message 1 twice (the second time after ack_wait) and has message 2
/// pending; 1 message unacked, 1 redelivered. Returns the client (keep it open) and the
/// ack subject of the redelivery.
fn js_traffic(m: &Mon) -> (Client, String) {
    let mut c = m.nats(r#"{"verbose":false,"headers":true}"#);
    c.send("SUB _INBOX.r 1\r\n");
    request(
        &mut c,
        "$JS.API.STREAM.CREATE.S",
        r#"{"name":"S","subjects":["s.>"]}"#,
    );
    request(&mut c, "s.a", "hello");
    let d = r#"{"stream_name":"S","config":{"durable_name":"D","ack_policy":"explicit","ack_wait":300000000,"description":"the \"D\""}}"#;
    request(&mut c, "$JS.API.CONSUMER.DURABLE.CREATE.S.D", d);
    let next = "$JS.API.CONSUMER.MSG.NEXT.S.D";
    let (subject, ack, _) = next_msg_after(&mut c, next, r#"{"batch":1}"#);
    assert_eq!(
        (subject.as_str(), ack.starts_with("$JS.ACK.S.D.1.1.1.")),
        ("s.a", true),
        "{ack}"
    );
    // Nothing else to deliver: the request waits until ack_wait hands message 1 back.
    let (_, ack, _) = next_msg_after(&mut c, next, r#"{"batch":1,"expires":5000000000}"#);
    assert!(ack.starts_with("$JS.ACK.S.D.2.1.2."), "{}: {ack}", m.name);
    request(&mut c, "s.b", "world!");
    (c, ack)
}

/// A pull request; the message it brings.
fn next_msg_after(c: &mut Client, subject: &str, body: &str) -> Msg {
    c.send(format!(
        "PUB {subject} _INBOX.r {}\r\n{body}\r\n",
        body.len()
    ));
    next_msg(c, subject)
}

/// Keys whose values vary between servers and runs: times, ids, the store (its path and
/// three quarters of its free space).
const VARYING: &[&str] = &[
    "now",
    "created",
    "first_ts",
    "last_ts",
    "last_active",
    "server_id",
    "leader",
    "store_dir",
    "max_storage",
];

/// `j` with the values of `VARYING` keys replaced by `"*"`, and the lists whose order is
/// nats-server's map order (accounts, streams, consumers) sorted by name.
fn normalised(j: &J) -> J {
    match j {
        J::Obj(v) => J::Obj(
            v.iter()
                .map(|(k, x)| {
                    let mut x = if VARYING.contains(&k.as_str()) {
                        J::Str("*".into())
                    } else {
                        normalised(x)
                    };
                    if let J::Arr(items) = &mut x {
                        if k.ends_with("_detail") || k == "account_details" {
                            items.sort_by_key(|i| i.get("name").map(J::render));
                        }
                    }
                    (k.clone(), x)
                })
                .collect(),
        ),
        J::Arr(v) => J::Arr(v.iter().map(normalised).collect()),
        other => other.clone(),
    }
}

/// The differences between tern's and nats-server's `targets`: key sets, then values.
fn differences(t: &Mon, r: &Mon, targets: &[&str], pick: impl Fn(J) -> J) -> String {
    let mut report = String::new();
    for target in targets {
        let (tj, rj) = (pick(t.json(target)), pick(r.json(target)));
        let (tk, rk) = (key_set(&tj), key_set(&rj));
        if tk != rk {
            let only_t: Vec<_> = tk.difference(&rk).collect();
            let only_r: Vec<_> = rk.difference(&tk).collect();
            report += &format!(
                "GET {target}: keys only in tern {only_t:?}, only in nats-server {only_r:?}\n"
            );
        } else if normalised(&tj) != normalised(&rj) {
            report += &format!(
                "GET {target}: values differ\n  tern:        {}\n  nats-server: {}\n",
                normalised(&tj).render(),
                normalised(&rj).render()
            );
        }
    }
    report
}

const JSZ: &[&str] = &[
    "/jsz",
    "/jsz?accounts=true",
    "/jsz?streams=true",
    "/jsz?streams=1&config=1",
    "/jsz?consumers=true",
    "/jsz?consumers=true&config=true",
    "/jsz?acc=$G",
    "/jsz?acc=$G&consumers=1",
    "/jsz?acc=nobody",
    "/jsz?accounts=1&offset=1",
    "/jsz?accounts=1&limit=1",
    "/jsz?config=true",
    "/jsz?leader-only=true",
];

#[test]
fn jsz_and_varz_match_reference() {
    let t = start_js(false, None).unwrap();
    let Some(r) = start_js(true, None) else {
        return;
    };
    let _ct = js_traffic(&t.m);
    let _cr = js_traffic(&r.m);
    let mut report = differences(&t.m, &r.m, JSZ, |j| j);
    let jetstream = |j: J| j.at("jetstream").clone();
    report += &differences(&t.m, &r.m, &["/varz"], jetstream);
    let global = |j: J| j.at("account_detail.jetstream_enabled").clone();
    report += &differences(&t.m, &r.m, &["/accountz?acc=$G"], global);
    assert!(report.is_empty(), "tern and nats-server differ:\n{report}");
    // The default max_storage is three quarters of the store's free space; both stores are
    // on the same file system, whose free space moves a little between the two readings.
    let max = |m: &Mon| m.json("/jsz").at("config.max_storage").u64() as f64;
    let ratio = max(&t.m) / max(&r.m);
    assert!(
        (0.95..1.05).contains(&ratio),
        "max_storage: tern/nats-server = {ratio}"
    );
    // The traffic figures count what connections send and receive, not the messages between
    // JetStream and the core (out_bytes is left out: reply bodies carry times of varying
    // length).
    let traffic = |m: &Mon| -> Vec<u64> {
        let v = m.json("/varz");
        ["in_msgs", "out_msgs", "in_bytes"]
            .map(|k| v.at(k).u64())
            .to_vec()
    };
    assert_eq!(
        traffic(&t.m),
        traffic(&r.m),
        "/varz in_msgs, out_msgs, in_bytes"
    );
}

#[test]
fn jsz_and_varz_without_jetstream_match_reference() {
    let t = Mon::tern(None, &[]);
    let Some(r) = Mon::reference(None, &[]) else {
        return;
    };
    let targets: Vec<&str> = JSZ
        .iter()
        .copied()
        .filter(|t| !t.contains("leader"))
        .collect();
    let mut report = differences(&t, &r, &targets, |j| j);
    report += &differences(&t, &r, &["/varz"], |j| j.at("jetstream").clone());
    assert!(report.is_empty(), "tern and nats-server differ:\n{report}");
    let bad = [
        "/jsz?leader-only=true",
        "/jsz?consumers=x",
        "/jsz?offset=abc",
        "/jsz?limit=99999999999999999999",
    ];
    let metrics = t.get("/metrics").text();
    assert!(
        !metrics.contains("jetstream_"),
        "no JetStream series without it: {metrics}"
    );
    for target in bad {
        let (a, b) = (t.get(target), r.get(target));
        assert_eq!((a.status, a.text()), (b.status, b.text()), "{target}");
        assert_eq!(a.status, 400, "{target}");
    }
}

/// The figures of /jsz, one at a time (tern alone, so a failure names the figure).
#[test]
fn jsz_shows_the_stream_and_consumer_figures() {
    let t = start_js(false, None).unwrap();
    let _c = js_traffic(&t.m);
    let j = t.m.json("/jsz?consumers=true");
    let figures =
        |j: &J, keys: &[&str]| -> Vec<u64> { keys.iter().map(|k| j.at(k).u64()).collect() };
    assert_eq!(
        figures(&j, &["streams", "consumers", "messages", "accounts"]),
        [1, 1, 2, 1]
    );
    let acc = &j.at("account_details").arr()[0];
    assert_eq!(acc.at("name").s(), "$G");
    let s = &acc.at("stream_detail").arr()[0];
    assert!(!s.has("config"), "config only with config=true");
    assert_eq!(
        figures(s, &["state.messages", "state.first_seq", "state.last_seq"]),
        [2, 1, 2]
    );
    assert_eq!(s.at("state.bytes").u64(), j.at("bytes").u64());
    let c = &s.at("consumer_detail").arr()[0];
    assert!(!c.has("config"));
    let keys = [
        "num_pending",
        "num_ack_pending",
        "num_redelivered",
        "num_waiting",
    ];
    assert_eq!(figures(c, &keys), [1, 1, 1, 0], "{}", c.render());
    let keys = [
        "delivered.consumer_seq",
        "delivered.stream_seq",
        "ack_floor.stream_seq",
    ];
    assert_eq!(figures(c, &keys), [2, 1, 0]);
    // Implications: consumers ⇒ streams ⇒ accounts; without options, no details.
    assert!(!t.m.json("/jsz").has("account_details"));
    let streams = t.m.json("/jsz?streams=1");
    let s = &streams.at("account_details").arr()[0]
        .at("stream_detail")
        .arr()[0];
    assert!(!s.has("consumer_detail"));
    let with_config = t.m.json("/jsz?consumers=1&config=1");
    let s = &with_config.at("account_details").arr()[0]
        .at("stream_detail")
        .arr()[0];
    assert_eq!(s.at("config.name").s(), "S");
    assert_eq!(
        s.at("consumer_detail").arr()[0]
            .at("config.description")
            .s(),
        "the \"D\""
    );
    let v = t.m.json("/varz");
    assert_eq!(v.at("jetstream.stats.accounts").u64(), 1);
    assert_eq!(v.at("jetstream.stats.storage").u64(), j.at("bytes").u64());
}

/// `name{labels} value` lines of a Prometheus text body: (name, labels, value).
fn samples(text: &str) -> Vec<(String, String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap_or_else(|| panic!("{l}"));
            let (name, labels) = series.split_once('{').unwrap_or((series, "}"));
            let value = value.parse().unwrap_or_else(|_| panic!("bad value in {l}"));
            (
                name.to_string(),
                labels.trim_end_matches('}').to_string(),
                value,
            )
        })
        .collect()
}

#[test]
fn metrics_show_streams_and_consumers() {
    let t = start_js(false, None).unwrap();
    let traffic = js_traffic(&t.m);
    let resp = t.m.get("/metrics");
    assert_eq!(resp.status, 200);
    let text = resp.text();
    let all = samples(&text);
    let value = |name: &str, label: &str| -> f64 {
        let hits: Vec<f64> = (all.iter())
            .filter(|(n, l, _)| n == name && l.contains(label))
            .map(|&(_, _, v)| v)
            .collect();
        assert_eq!(hits.len(), 1, "{name} {label}: {hits:?} in\n{text}");
        hits[0]
    };
    let jsz = t.m.json("/jsz?streams=1");
    let stream = r#"stream_name="S""#;
    assert_eq!(value("jetstream_stream_total_messages", stream), 2.0);
    let bytes = jsz.at("bytes").u64() as f64;
    assert_eq!(value("jetstream_stream_total_bytes", stream), bytes);
    assert_eq!(value("jetstream_stream_last_seq", stream), 2.0);
    assert_eq!(value("jetstream_stream_consumer_count", stream), 1.0);
    assert_eq!(value("jetstream_server_total_messages", ""), 2.0);
    assert_eq!(value("jetstream_server_total_message_bytes", ""), bytes);
    let consumer = r#"consumer_name="D""#;
    assert_eq!(value("jetstream_consumer_num_pending", consumer), 1.0);
    assert_eq!(value("jetstream_consumer_num_ack_pending", consumer), 1.0);
    assert_eq!(value("jetstream_consumer_num_redelivered", consumer), 1.0);
    assert_eq!(
        value("jetstream_consumer_delivered_consumer_seq", consumer),
        2.0
    );
    assert!(
        text.contains(r#"consumer_desc="the \"D\"""#),
        "escaped label: {text}"
    );
    // Every series has one HELP and one TYPE line.
    for name in [
        "jetstream_stream_total_messages",
        "jetstream_consumer_num_pending",
    ] {
        assert_eq!(text.matches(&format!("# TYPE {name} gauge\n")).count(), 1);
    }
    // Acking the message moves the figures.
    let (mut c, ack) = traffic;
    c.send(format!("PUB {ack} 0\r\n\r\n"));
    let acked = t.m.json_until("/jsz?consumers=1", |j| {
        consumer_of(j).at("num_ack_pending").u64() == 0
    });
    assert_eq!(consumer_of(&acked).at("num_ack_pending").u64(), 0);
    let text = t.m.get("/metrics").text();
    let all = samples(&text);
    let value = |name: &str| -> f64 {
        let hit = all
            .iter()
            .find(|(n, l, _)| n == name && l.contains(consumer));
        hit.unwrap_or_else(|| panic!("no {name} in {text}")).2
    };
    assert_eq!(value("jetstream_consumer_num_ack_pending"), 0.0);
    assert_eq!(value("jetstream_consumer_num_redelivered"), 0.0);
    assert_eq!(value("jetstream_consumer_ack_floor_stream_seq"), 1.0);
    assert_eq!(value("jetstream_consumer_num_pending"), 1.0);
}

/// The first consumer of the first stream of the first account of a /jsz document.
fn consumer_of(j: &J) -> &J {
    let s = &j.at("account_details").arr()[0].at("stream_detail").arr()[0];
    &s.at("consumer_detail").arr()[0]
}

/// Both server maxima (nats-server then says `compress_ok`), a domain, account limits.
const ACCOUNTS_CONF: &str = "jetstream { max_memory_store: 1G, max_file_store: 10G, domain: hub }
accounts {
  A { jetstream { max_mem: 100M, max_file: 1G }, users [{user: a, password: a}] }
  B { jetstream: enabled, users [{user: b, password: b}] }
  C { users [{user: c, password: c}] }
}
";

/// A stream in each JetStream account (A: SA, B: SB); C has no JetStream.
fn accounts_traffic(m: &Mon) -> Vec<Client> {
    ["a", "b"]
        .iter()
        .map(|u| {
            let mut c = m.nats(&format!(r#"{{"verbose":false,"user":"{u}","pass":"{u}"}}"#));
            c.send("SUB _INBOX.r 1\r\n");
            let name = format!("S{}", u.to_uppercase());
            let body = format!(r#"{{"name":"{name}"}}"#);
            request(&mut c, &format!("$JS.API.STREAM.CREATE.{name}"), &body);
            request(&mut c, &name, "x");
            c
        })
        .collect()
}

/// Accounts pages: `acc=`, offset and limit, account limits, the server's configured maxima
/// and domain (nats-server sorts the accounts by name when an
/// offset is given; without one its order is its map's, so those pages are not compared).
#[test]
fn jsz_accounts_match_reference() {
    let t = start_js(false, Some(ACCOUNTS_CONF)).unwrap();
    let Some(r) = start_js(true, Some(ACCOUNTS_CONF)) else {
        return;
    };
    let _ct = accounts_traffic(&t.m);
    let _cr = accounts_traffic(&r.m);
    let targets = [
        "/jsz",
        "/jsz?accounts=1&offset=1",
        "/jsz?streams=1&offset=1&limit=1",
        "/jsz?accounts=1&offset=5",
        "/jsz?acc=B&consumers=1&config=1",
        "/jsz?acc=C",
        "/jsz?acc=C&accounts=1&offset=1",
    ];
    let mut report = differences(&t.m, &r.m, &targets, |j| j);
    report += &differences(&t.m, &r.m, &["/varz"], |j| j.at("jetstream").clone());
    let enabled = |j: J| j.at("account_detail.jetstream_enabled").clone();
    for acc in ["/accountz?acc=A", "/accountz?acc=C"] {
        report += &differences(&t.m, &r.m, &[acc], enabled);
    }
    assert!(report.is_empty(), "tern and nats-server differ:\n{report}");
    let page = t.m.json("/jsz?accounts=1&offset=1");
    let names: Vec<&str> = (page.at("account_details").arr().iter())
        .map(|a| a.at("name").s())
        .collect();
    assert_eq!(names, ["B"]);
    let all = t.m.json("/jsz?accounts=1");
    assert_eq!(all.at("account_details").arr().len(), 2);
}

/// `n` streams `S0..` (each with a message) with consumers `A` (pull) and `B` (push, to a
/// subject nobody listens on).
fn many_streams(m: &Mon, n: usize) -> Client {
    let mut c = m.nats(r#"{"verbose":false,"headers":true}"#);
    c.send("SUB _INBOX.r 1\r\n");
    for i in 0..n {
        let body = format!(r#"{{"name":"S{i}","subjects":["s{i}.>"]}}"#);
        request(&mut c, &format!("$JS.API.STREAM.CREATE.S{i}"), &body);
        request(&mut c, &format!("s{i}.x"), &"x".repeat(i));
        for (name, push) in [("A", ""), ("B", r#","deliver_subject":"nobody""#)] {
            let cfg = format!(
                r#"{{"stream_name":"S{i}","config":{{"durable_name":"{name}","ack_policy":"explicit"{push}}}}}"#
            );
            request(
                &mut c,
                &format!("$JS.API.CONSUMER.DURABLE.CREATE.S{i}.{name}"),
                &cfg,
            );
        }
    }
    c
}

/// Many streams and consumers: the pages (rendered a slice per loop pass, sent chunked) hold
/// every one, as nats-server's do; /metrics has a sample per stream and per consumer.
#[test]
fn many_streams_match_reference() {
    const N: usize = 25;
    let t = start_js(false, None).unwrap();
    let _ct = many_streams(&t.m, N);
    let r = start_js(true, None);
    let _cr = r.as_ref().map(|r| many_streams(&r.m, N));
    let targets = ["/jsz?consumers=1&config=1", "/jsz?streams=1", "/jsz"];
    if let Some(r) = &r {
        let report = differences(&t.m, &r.m, &targets, |j| j);
        assert!(report.is_empty(), "tern and nats-server differ:\n{report}");
    }
    let big = t.m.get("/jsz?consumers=1&config=1");
    assert_eq!(
        big.header("transfer-encoding"),
        Some("chunked"),
        "rendered in slices"
    );
    let j = t.m.json("/jsz?consumers=1");
    let streams = j.at("account_details").arr()[0].at("stream_detail").arr();
    assert_eq!(streams.len(), N);
    let consumers: usize = streams
        .iter()
        .map(|s| s.at("consumer_detail").arr().len())
        .sum();
    assert_eq!(consumers, 2 * N);
    let text = t.m.get("/metrics").text();
    let all = samples(&text);
    let count = |name: &str| all.iter().filter(|(n, _, _)| n == name).count();
    assert_eq!(count("jetstream_stream_total_bytes"), N);
    assert_eq!(count("jetstream_consumer_num_pending"), 2 * N);
    assert_eq!(count("jetstream_consumer_num_redelivered"), 2 * N);
    assert_eq!(count("jetstream_server_total_consumers"), 1);
}
