//! Replays the fixtures in `proto-tests/jetstream/*.txt` (nats-server 2.9.10's replies,
//! captured by `proto-tests/jetstream/capture.py`) through `api::handle` and
//! `JsAccount::publish`, and compares reply for reply: JSON field by field in nats-server's
//! order (timestamps masked), PubAcks and DIRECT.GET headers byte for byte.
//!
//! The replay stands in for the loop: it flushes every store after each request, advances
//! a fake clock (SLEEP), runs max_age expiry as the timers would, and reopens the streams
//! from disk on RESTART. A PUB that matches no stream must expect the 503 no-responders
//! status, which the integration produces.

use super::{handle, not_enabled, Reply, Request};
use crate::jetstream::account::{Env, JsAccount, JsLimits, ServerJs};
use crate::jetstream::publish::{Inbound, PubOutcome};
use crate::protocol::json::{self, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

#[derive(Clone, Debug, Default)]
pub(super) struct Record {
    pub(super) op: String,
    pub(super) arg: String,
    hdrs: Vec<String>,
    pub(super) body: Vec<u8>,
    want: Want,
    /// Known differences: tern answers the JSON value at this path.
    tern: Vec<(String, String)>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub(super) enum Want {
    #[default]
    Unset,
    None,
    Text(String),
    Hdr(String, String),
    /// RECV: the messages received, as GOT lines.
    Got(Vec<String>),
}

fn expand(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("@repeat(") {
        out.push_str(&rest[..i]);
        let tail = &rest[i + 8..];
        let close = tail.find(')').expect("@repeat(c,n)");
        let (c, n) = tail[..close].split_once(',').expect("@repeat(c,n)");
        out.push_str(&c.repeat(n.parse().expect("count")));
        rest = &tail[close + 1..];
    }
    out.push_str(rest);
    out
}

fn parse_fixture(text: &str) -> (Vec<String>, Vec<Record>) {
    let (mut header, mut records) = (Vec::new(), Vec::<Record>::new());
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        match word {
            "SERVER" | "ACCOUNT" => header.push(line.to_string()),
            "REQ" | "PUB" | "CONNECT" | "SLEEP" | "RESTART" | "SUB" | "UNSUB" | "NEXT" | "ACK"
            | "FC" | "RECV" => records.push(Record {
                op: word.to_string(),
                arg: expand(rest),
                ..Record::default()
            }),
            _ => {
                let r = records.last_mut().expect("a line before any record");
                match word {
                    "HDR" => r.hdrs.push(expand(rest)),
                    "BODY" => r.body = expand(rest).into_bytes(),
                    "BODYJ" => {
                        let v = json::parse(rest.as_bytes()).expect("BODYJ");
                        r.body = v.as_str().expect("BODYJ string").as_bytes().to_vec();
                    }
                    "WANT" => {
                        r.want = match std::mem::take(&mut r.want) {
                            Want::Hdr(h, _) => Want::Hdr(h, rest.to_string()),
                            _ => Want::Text(rest.to_string()),
                        }
                    }
                    "WANT-HDR" => r.want = Want::Hdr(rest.to_string(), String::new()),
                    "WANT-NONE" => r.want = Want::None,
                    "GOT" => match &mut r.want {
                        Want::Got(v) => v.push(rest.to_string()),
                        w => *w = Want::Got(vec![rest.to_string()]),
                    },
                    "TERN" => {
                        let (path, value) = rest.split_once(' ').expect("TERN <path> <json>");
                        r.tern.push((path.to_string(), value.to_string()));
                    }
                    _ => panic!("unknown fixture line {line:?}"),
                }
            }
        }
    }
    (header, records)
}

thread_local! {
    /// The replay's subscriptions, (subject, group), in order: the capture connection
    /// subscribes to `_INBOX.>` first, then to whatever SUB lines add.
    static SUBS: std::cell::RefCell<Vec<(String, String)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

pub(super) fn subs() -> Vec<(String, String)> {
    SUBS.with(|v| v.borrow().clone())
}

pub(super) fn set_subs(v: Vec<(String, String)>) {
    SUBS.with(|s| *s.borrow_mut() = v);
}

pub(super) fn fixture_interest(s: &str) -> bool {
    SUBS.with(|v| {
        v.borrow()
            .iter()
            .any(|(p, _)| crate::jetstream::subject::matches(p, s))
    })
}

/// The accounts of a fixture: user name → account (None: JetStream disabled there).
pub(super) struct World {
    dir: PathBuf,
    pub(super) accounts: BTreeMap<String, Option<JsAccount>>,
    pub(super) mail: super::tests_delivery::Mail,
    server: ServerJs,
    pub(super) now: SystemTime,
}

fn limits_from(words: &[&str]) -> JsLimits {
    let mut l = JsLimits::default();
    for kv in words {
        let (k, v) = kv.split_once('=').expect("key=value");
        let n = || v.parse::<i64>().expect("number");
        match k {
            "max_mem" => l.max_memory = n(),
            "max_file" => l.max_store = n(),
            "max_streams" => l.max_streams = n(),
            "max_consumers" => l.max_consumers = n(),
            "max_ack_pending" => l.max_ack_pending = n(),
            "memory_max_stream_bytes" => l.memory_max_stream_bytes = n(),
            "store_max_stream_bytes" => l.store_max_stream_bytes = n(),
            "max_bytes_required" => l.max_bytes_required = v == "true",
            _ => panic!("unknown limit {k}"),
        }
    }
    l
}

impl World {
    fn new(dir: &Path, header: &[String]) -> World {
        set_subs(vec![("_INBOX.>".to_string(), String::new())]);
        let mut w = World {
            dir: dir.to_path_buf(),
            accounts: BTreeMap::new(),
            mail: Default::default(),
            server: ServerJs {
                max_memory: i64::MAX / 2,
                max_store: i64::MAX / 2,
                ..ServerJs::default()
            },
            now: SystemTime::now(),
        };
        for line in header {
            let words: Vec<&str> = line.split_whitespace().collect();
            if words[0] == "SERVER" {
                for kv in &words[1..] {
                    let (k, v) = kv.split_once('=').expect("key=value");
                    let v: i64 = v.parse().expect("number");
                    match k {
                        "max_file_store" => w.server.max_store = v,
                        "max_memory_store" => w.server.max_memory = v,
                        _ => panic!("unknown server setting {k}"),
                    }
                }
                continue;
            }
            let (name, user) = (words[1], words[2].split(':').next().unwrap_or_default());
            let acc = match words.get(3) {
                Some(&"disabled") | None => None,
                Some(&"enabled") => Some(JsAccount::new(dir, name, JsLimits::default())),
                Some(_) => Some(JsAccount::new(dir, name, limits_from(&words[3..]))),
            };
            w.accounts.insert(user.to_string(), acc);
        }
        if w.accounts.is_empty() {
            w.accounts.insert(
                String::new(),
                Some(JsAccount::new(dir, "$G", JsLimits::default())),
            );
        }
        w
    }

    pub(super) fn env(&mut self) -> Env<'static> {
        let (m, f) = (self.server.max_memory, self.server.max_store);
        let s = ServerJs::sum(self.accounts.values().flatten(), m, f, 0);
        self.now += Duration::from_micros(10);
        Env {
            now: self.now,
            server: s,
            domain: None,
            interest: &fixture_interest,
        }
    }

    /// End of a loop pass: every store flushed, expiry timers run.
    fn pass_end(&mut self) {
        super::tests_delivery::pump(self);
        let now = self.now;
        for acc in self.accounts.values_mut().flatten() {
            for s in acc.streams.values_mut() {
                s.store.flush().expect("flush");
                s.expire(now);
                s.store.flush().expect("flush");
            }
        }
    }

    fn restart(&mut self) {
        self.pass_end();
        // The connections go with the server, and their subscriptions.
        set_subs(vec![("_INBOX.>".to_string(), String::new())]);
        let names: Vec<String> = self.accounts.keys().cloned().collect();
        for user in names {
            let Some(Some(old)) = self.accounts.remove(&user) else {
                self.accounts.insert(user, None);
                continue;
            };
            let (name, limits) = (old.name.clone(), old.limits);
            drop(old);
            let acc = JsAccount::open(&self.dir, &name, limits, None);
            self.accounts.insert(user, Some(acc));
        }
    }
}

fn header_block(hdrs: &[String]) -> Vec<u8> {
    if hdrs.is_empty() {
        return Vec::new();
    }
    let mut h = b"NATS/1.0\r\n".to_vec();
    for l in hdrs {
        h.extend_from_slice(l.as_bytes());
        h.extend_from_slice(b"\r\n");
    }
    h.extend_from_slice(b"\r\n");
    h
}

const TS_KEYS: [&str; 6] = [
    "created",
    "first_ts",
    "last_ts",
    "time",
    "last_active",
    "timestamp",
];

/// A legacy ephemeral consumer's generated name (its config has no name) is masked.
fn ephemeral(f: &[(String, Value)]) -> bool {
    let cfg = f.iter().find(|(k, _)| k == "config").map(|(_, v)| v);
    let has_stream = f.iter().any(|(k, _)| k == "stream_name");
    match cfg {
        Some(c @ Value::Obj(_)) if has_stream => {
            c.get("name").is_none() && c.get("durable_name").is_none()
        }
        _ => false,
    }
}

pub(super) fn mask(v: &Value) -> Value {
    match v {
        Value::Obj(f) => Value::Obj(
            f.iter()
                .map(|(k, x)| {
                    if k == "name" && ephemeral(f) {
                        return (k.clone(), Value::Str("<eph>".into()));
                    }
                    let ts = TS_KEYS.contains(&k.as_str());
                    match x {
                        Value::Str(s) if ts && s != "0001-01-01T00:00:00Z" => {
                            (k.clone(), Value::Str("<ts>".into()))
                        }
                        _ => (k.clone(), mask(x)),
                    }
                })
                .collect(),
        ),
        Value::Arr(a) => Value::Arr(a.iter().map(mask).collect()),
        x => x.clone(),
    }
}

pub(super) fn mask_hdr(h: &[u8]) -> String {
    let mut s = String::from_utf8_lossy(h).into_owned();
    if let Some(i) = s.find("Nats-Consumer-Stalled: $JS.FC.") {
        let end = s[i..].find("\r\n").map_or(s.len(), |e| i + e);
        if let Some(dot) = s[i..end].rfind('.') {
            s = format!("{}<fc>{}", &s[..i + dot + 1], &s[end..]);
        }
    }
    let s = match s.find("Nats-Time-Stamp: ") {
        Some(i) => {
            let end = s[i..].find("\r\n").map_or(s.len(), |e| i + e);
            format!("{}Nats-Time-Stamp: <ts>{}", &s[..i], &s[end..])
        }
        None => s,
    };
    s.replace("\r\n", "\\r\\n")
}

/// What the server under test answered, in the fixture's terms.
fn got_reply(op: &str, reply: Option<Reply>) -> Want {
    match reply {
        None | Some(Reply::None) => Want::None,
        Some(Reply::Json(s)) if op == "REQ" => {
            let v = json::parse(s.as_bytes()).unwrap_or_else(|e| panic!("bad JSON {s}: {e:?}"));
            Want::Text(to_json(&mask(&v)))
        }
        Some(Reply::Json(s)) => Want::Text(s),
        Some(Reply::Msg { hdr, data }) => {
            Want::Hdr(mask_hdr(&hdr), String::from_utf8_lossy(&data).into_owned())
        }
    }
}

/// The expected reply with timestamps masked and tern's known differences applied.
/// A GOT line in one canonical form (parsed and written back).
pub(super) fn canon(line: &str) -> String {
    match json::parse(line.as_bytes()) {
        Ok(v) => to_json(&v),
        Err(_) => line.to_string(),
    }
}

fn normalise_want(r: &Record) -> Want {
    match &r.want {
        Want::Got(lines) => Want::Got(lines.iter().map(|l| canon(l)).collect()),
        Want::Unset if r.op == "RECV" => Want::Got(Vec::new()),
        Want::Text(t) if r.op == "REQ" => match json::parse(t.as_bytes()) {
            Ok(mut v) => {
                for (path, value) in &r.tern {
                    let value = json::parse(value.as_bytes()).expect("TERN value");
                    set_path(&mut v, path, value);
                }
                Want::Text(to_json(&mask(&v)))
            }
            Err(_) => Want::Text(t.clone()),
        },
        w => w.clone(),
    }
}

fn set_path(v: &mut Value, path: &str, value: Value) {
    let mut cur = v;
    for key in path.trim_start_matches('.').split('.') {
        cur = match cur {
            Value::Obj(fields) => {
                let slot = fields.iter_mut().find(|(k, _)| k == key);
                &mut slot.expect("TERN path").1
            }
            Value::Arr(items) => &mut items[key.parse::<usize>().expect("TERN index")],
            _ => panic!("TERN path {path} leaves the object"),
        };
    }
    *cur = value;
}

fn run_request(w: &mut World, user: &str, r: &Record) -> Want {
    let env = w.env();
    let acc = w.accounts.get_mut(user).expect("account");
    let reply = b"_INBOX.r";
    if r.op == "REQ" {
        let req = Request {
            subject: &r.arg,
            reply,
            payload: &r.body,
        };
        let resp = match acc {
            Some(acc) => handle(acc, &env, &req),
            None => not_enabled(&req),
        };
        super::tests_delivery::route(w, user, resp.outs, None);
        return got_reply("REQ", Some(resp.reply));
    }
    let hdr = header_block(&r.hdrs);
    let msg = Inbound {
        subject: &r.arg,
        hdr: &hdr,
        data: &r.body,
        has_reply: true,
    };
    let Some(acc) = acc else {
        return Want::Hdr("NATS/1.0 503\\r\\n\\r\\n".into(), String::new());
    };
    let Some(name) = acc.stream_for_subject(&r.arg).map(str::to_string) else {
        return Want::Hdr("NATS/1.0 503\\r\\n\\r\\n".into(), String::new());
    };
    let out = match acc.publish(&env, &name, &msg) {
        Some(PubOutcome::Stored(s)) => s.ack,
        Some(PubOutcome::Done(reply)) => reply,
        None => None,
    };
    got_reply(
        "PUB",
        out.map(|b| Reply::Json(String::from_utf8_lossy(&b).into_owned())),
    )
}

/// Compact JSON of a parsed value (keys in their order).
pub(super) fn to_json(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Num(n) => n.clone(),
        Value::Str(s) => {
            let mut out = String::new();
            json::write_str(&mut out, s);
            out
        }
        Value::Arr(a) => format!("[{}]", a.iter().map(to_json).collect::<Vec<_>>().join(",")),
        Value::Obj(f) => {
            let items: Vec<String> = f
                .iter()
                .map(|(k, x)| format!("{}:{}", to_json(&Value::Str(k.clone())), to_json(x)))
                .collect();
            format!("{{{}}}", items.join(","))
        }
    }
}

/// Where two replies first differ (a JSON path with both values), for the failure message.
fn first_difference(want: &Want, got: &Want) -> String {
    if let (Want::Got(w), Want::Got(g)) = (want, got) {
        let i = w.iter().zip(g).take_while(|(a, b)| a == b).count();
        return format!(
            "message #{i} of {}/{}\n  want {}\n  got  {}",
            w.len(),
            g.len(),
            w.get(i).map_or("(none)", String::as_str),
            g.get(i).map_or("(none)", String::as_str)
        );
    }
    if let (Want::Text(w), Want::Text(g)) = (want, got) {
        let (Ok(wv), Ok(gv)) = (json::parse(w.as_bytes()), json::parse(g.as_bytes())) else {
            return format!("\n  want {w}\n  got  {g}");
        };
        return value_difference("", &wv, &gv);
    }
    format!("\n  want {want:?}\n  got  {got:?}")
}

fn value_difference(path: &str, w: &Value, g: &Value) -> String {
    match (w, g) {
        (Value::Obj(a), Value::Obj(b)) => {
            for (i, (k, v)) in a.iter().enumerate() {
                match b.get(i) {
                    Some((k2, v2)) if k2 == k => {
                        if v != v2 {
                            return value_difference(&format!("{path}.{k}"), v, v2);
                        }
                    }
                    other => {
                        let found = other.map(|(k2, _)| k2.as_str()).unwrap_or("(end)");
                        return format!("{path}: key #{i} want {k:?} got {found:?}");
                    }
                }
            }
            let extra: Vec<&String> = b.iter().skip(a.len()).map(|(k, _)| k).collect();
            format!("{path}: extra keys {extra:?}")
        }
        _ => format!("{path}: want {} got {}", to_json(w), to_json(g)),
    }
}

/// Replays one fixture file; returns the differences found.
fn replay(file: &str) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("proto-tests/jetstream");
    let text = std::fs::read_to_string(root.join(file)).expect("fixture");
    let (header, records) = parse_fixture(&text);
    super::tests_delivery::set_script(&text);
    let dir = std::env::temp_dir().join(format!("tern-jsfix-{}-{file}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut w = World::new(&dir, &header);
    let mut user = w.accounts.keys().next().cloned().unwrap_or_default();
    let mut diffs = Vec::new();
    for (i, r) in records.iter().enumerate() {
        match r.op.as_str() {
            "CONNECT" => {
                user = if r.arg == "-" {
                    String::new()
                } else {
                    r.arg.clone()
                }
            }
            "SLEEP" => {
                super::tests_delivery::sleep(&mut w, r.arg.parse().expect("ms"));
                w.pass_end();
            }
            "RESTART" => w.restart(),
            "SUB" | "UNSUB" | "NEXT" | "ACK" | "FC" | "RECV" => {
                let got = super::tests_delivery::op(&mut w, &user, r);
                w.pass_end();
                if let Some(got) = got {
                    let want = normalise_want(r);
                    if got != want {
                        let at = first_difference(&want, &got);
                        diffs.push(format!("{file} #{i} {} {}: {at}", r.op, r.arg));
                    }
                }
            }
            _ => {
                let got = run_request(&mut w, &user, r);
                w.pass_end();
                let want = normalise_want(r);
                if got != want {
                    let at = first_difference(&want, &got);
                    diffs.push(format!("{file} #{i} {} {}: {at}", r.op, r.arg));
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    diffs
}

pub(super) fn check(file: &str) {
    let diffs = replay(file);
    assert!(
        diffs.is_empty(),
        "{} difference(s):\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}

#[test]
fn fixture_stream_create() {
    check("stream_create.txt");
}

#[test]
fn fixture_stream_update() {
    check("stream_update.txt");
}

#[test]
fn fixture_stream_info() {
    check("stream_info.txt");
}

#[test]
fn fixture_publish() {
    check("publish.txt");
}

#[test]
fn fixture_msgs() {
    check("msgs.txt");
}

#[test]
fn fixture_direct_get() {
    check("direct_get.txt");
}

#[test]
fn fixture_limits() {
    check("limits.txt");
}

#[test]
fn fixture_restart() {
    check("restart.txt");
}

#[test]
fn fixture_window() {
    check("window.txt");
}

#[test]
fn fixture_account_info() {
    check("account_info.txt");
}

#[test]
fn fixture_parser_expands() {
    assert_eq!(expand("a@repeat(x,3)b@repeat(y,1)"), "axxxby");
    let (h, r) = parse_fixture("SERVER a=1\n\nREQ s\nHDR K: v\nBODY b\nWANT-HDR h\nWANT d\n");
    assert_eq!(h, vec!["SERVER a=1".to_string()]);
    assert_eq!(r[0].want, Want::Hdr("h".into(), "d".into()));
    assert_eq!(r[0].hdrs, vec!["K: v".to_string()]);
}

/// Requests and publishes from every fixture, mutated byte by byte (seeded), never panic:
/// the API and the publish path read network input.
#[test]
fn mutated_requests_never_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("proto-tests/jetstream");
    let mut records = Vec::new();
    for f in std::fs::read_dir(&root).expect("fixtures") {
        let path = f.expect("entry").path();
        if path.extension().is_some_and(|e| e == "txt") {
            let text = std::fs::read_to_string(&path).expect("fixture");
            let (_, recs) = parse_fixture(&text);
            records.extend(recs.into_iter().filter(|r| r.op == "REQ" || r.op == "PUB"));
        }
    }
    let dir = std::env::temp_dir().join(format!("tern-jsfuzz-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut w = World::new(&dir, &[]);
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    const ALPHABET: &[u8] = b"{}[]\":,0123456789-.eEtfnul \\\r\n\xff*>$";
    for i in 0..6000 {
        let mut r = records[(next() % records.len() as u64) as usize].clone();
        for _ in 0..1 + next() % 3 {
            mutate(&mut r.body, &mut next, ALPHABET);
        }
        if !r.hdrs.is_empty() && next() % 3 == 0 {
            let mut h = r.hdrs[0].clone().into_bytes();
            mutate(&mut h, &mut next, ALPHABET);
            r.hdrs[0] = String::from_utf8_lossy(&h).into_owned();
        }
        run_request(&mut w, "", &r);
        if i % 32 == 0 {
            w.pass_end();
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn mutate(b: &mut Vec<u8>, next: &mut impl FnMut() -> u64, alphabet: &[u8]) {
    let pick = |n: u64, len: usize| (n % (len as u64 + 1)) as usize;
    let c = alphabet[(next() % alphabet.len() as u64) as usize];
    match next() % 5 {
        0 if !b.is_empty() => {
            let i = pick(next(), b.len() - 1);
            b[i] = c;
        }
        1 => {
            let i = pick(next(), b.len());
            b.insert(i, c);
        }
        2 if !b.is_empty() => {
            let i = pick(next(), b.len() - 1);
            b.remove(i);
        }
        3 => {
            let i = pick(next(), b.len());
            b.truncate(i);
        }
        _ => {
            let i = pick(next(), b.len());
            let dup = b[i..].to_vec();
            b.extend_from_slice(&dup);
        }
    }
}

#[test]
fn fixture_clients() {
    check("clients.txt");
}

#[test]
fn fixture_unsupported() {
    check("unsupported.txt");
}
