//! The JetStream API, publishes and acks as the integration drives them (inbound.rs,
//! source.rs), from any input: no panic, every JSON reply parses, and every store checks out.
//!
//! Each run starts an account with a few streams and consumers (memory streams; with bit 0
//! of the first byte, the `ZF` and `ZW` streams use file storage in a temp directory), then
//! runs the input's lines, each one op (its first byte) followed by its argument:
//! - `R<suffix> <payload>` a request to `$JS.API.<suffix>` with a reply (`N`: without);
//! - `P<subject> <header>|<data>` a publish with a reply (`p`: without) to the stream whose
//!   subjects match; in the header `;` is `\r\n` and `^` is `\n`;
//! - `A<suffix> <payload>` an ack on `$JS.ACK.<suffix>`; `a<n> <payload>` an ack on the
//!   reply subject of the n-th delivery seen so far;
//! - `C<suffix>` a flow control answer on `$JS.FC.<suffix>`;
//! - `T<ms>` the clock moves on (expiry, ack waits, pull request expiry);
//! - `I<stream> <consumer> <0|1>` interest in a deliver subject; `D<n>` the n-th delivery
//!   reached no subscriber;
//! - `O` a restart: everything flushed, the account reopened from its directory.
//!
//! Every op ends with the end of a loop pass (expiry, flush, poll, consumers' flush and a
//! completed sync). Subjects starting `nobody` have no interest; `slow` ones have no room.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};
use tern::jetstream::account::{JsLimits, Env, JsAccount, ServerJs};
use tern::jetstream::api::{self, Change, Reply, Request};
use tern::jetstream::consumer::{Body, Budget, Out};
use tern::jetstream::publish::{Inbound, PubOutcome};
use tern::protocol::json;

fn interest(s: &str) -> bool {
    !s.starts_with("nobody")
}

fn room(s: &str) -> bool {
    !s.starts_with("slow")
}

struct World {
    dir: PathBuf,
    acc: JsAccount,
    now: SystemTime,
    /// Reply subjects of the deliveries seen, with their (stream, consumer, seq).
    deliveries: Vec<(String, u64)>,
}

fn json_ok(what: &str, bytes: &[u8]) {
    if let Err(e) = json::parse(bytes) {
        panic!(
            "{what} is not JSON ({e:?}): {:?}",
            String::from_utf8_lossy(bytes)
        );
    }
}

impl World {
    fn env(&self) -> Env<'static> {
        let server = ServerJs::sum([&self.acc], 1 << 40, 1 << 40, 0);
        Env {
            now: self.now,
            server,
            domain: None,
            interest: &interest,
        }
    }

    fn now_ns(&self) -> i64 {
        tern::jetstream::account::to_ns(self.now)
    }

    fn request(&mut self, subject: &str, reply: &[u8], payload: &[u8]) {
        let env = self.env();
        let req = Request {
            subject,
            reply,
            payload,
        };
        let resp = api::handle(&mut self.acc, &env, &req);
        match &resp.reply {
            Reply::Json(s) => json_ok(subject, s.as_bytes()),
            // DIRECT.GET: the stored header block as it was published, which may be anything.
            Reply::Msg { .. } | Reply::None => {}
        }
        if let Some(Change::ConsumerCreated(..) | Change::ConsumerUpdated(..)) = resp.change {
            self.sync_interest();
        }
        self.outs(resp.outs);
    }

    fn publish(&mut self, subject: &str, hdr: &[u8], data: &[u8], has_reply: bool) {
        let Some(name) = self.acc.stream_for_subject(subject).map(str::to_string) else {
            return;
        };
        let env = self.env();
        let msg = Inbound {
            subject,
            hdr,
            data,
            has_reply,
        };
        match self.acc.publish(&env, &name, &msg) {
            Some(PubOutcome::Done(Some(b))) => json_ok("an error PubAck", &b),
            Some(PubOutcome::Stored(s)) => {
                if let Some(b) = s.ack {
                    json_ok("a PubAck", &b);
                }
            }
            _ => {}
        }
    }

    fn ack(&mut self, subject: &str, payload: &[u8]) {
        let now = self.now_ns();
        let outs = self
            .acc
            .ack(subject.as_bytes(), "_INBOX.ackack", payload, now, &interest);
        self.outs(outs);
    }

    /// Publishes consumer output as the integration does: deliveries to subjects nobody
    /// listens to come back as `not_delivered`.
    fn outs(&mut self, outs: Vec<Out>) {
        for o in outs {
            if let Body::Plain { data, .. } = &o.body {
                if !data.is_empty() {
                    json_ok(&o.to, data);
                }
            }
            if o.reply.starts_with("$JS.ACK.") && self.deliveries.len() < 4096 {
                self.deliveries.push((o.reply.clone(), o.seq));
            }
            if o.seq > 0 && !interest(&o.to) {
                self.not_delivered(&o.reply, o.seq);
            }
        }
    }

    fn not_delivered(&mut self, reply: &str, seq: u64) {
        let Some(a) = tern::jetstream::consumer::ack::parse_subject(reply.as_bytes()) else {
            return;
        };
        let (s, c) = (a.stream.to_string(), a.consumer.to_string());
        let now = self.now_ns();
        self.acc.not_delivered(&s, &c, seq, now);
    }

    /// Push consumers learn whether their deliver subjects have interest.
    fn sync_interest(&mut self) {
        let now = self.now_ns();
        for (s, c, subject, _) in self.acc.deliver_subjects() {
            self.acc.set_interest(&s, &c, interest(&subject), now);
        }
    }

    /// The end of a loop pass: expiry, flush, consumers, their flush, a completed sync.
    fn pass(&mut self) {
        self.acc.expire_all(self.now);
        self.flush_streams();
        let mut outs = Vec::new();
        let now = self.now_ns();
        self.acc
            .poll(now, &Budget::default(), &interest, &room, &mut outs);
        self.outs(outs);
        self.flush_streams();
        let _ = self.acc.flush_consumers();
        for s in self.acc.streams.values_mut() {
            if let Some((id, _)) = s.store.sync_target() {
                s.store.synced(id);
            }
        }
    }

    fn flush_streams(&mut self) {
        for (name, s) in &mut self.acc.streams {
            if let Err(e) = s.store.flush() {
                panic!("flushing {name}: {e}");
            }
        }
    }

    fn restart(&mut self) {
        self.pass();
        let limits = self.acc.limits;
        let dir = self.dir.clone();
        // The old account (and its open files) goes first, as when the process exits.
        self.acc = JsAccount::new(&dir, "$G", limits);
        self.acc = JsAccount::open(&dir, "$G", limits, None);
        self.deliveries.clear();
        self.sync_interest();
    }

    fn check(&self) {
        for (name, s) in &self.acc.streams {
            if let Err(e) = s.store.check() {
                panic!("stream {name}: {e}");
            }
        }
    }
}

/// The account every run starts from.
fn setup(dir: PathBuf, file: bool) -> World {
    let _ = std::fs::remove_dir_all(&dir);
    let mut w = World {
        acc: JsAccount::new(&dir, "$G", JsLimits::default()),
        dir,
        now: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        deliveries: Vec::new(),
    };
    let storage = if file { "file" } else { "memory" };
    let reqs = [
        (
            "STREAM.CREATE.ZM",
            r#"{"name":"ZM","subjects":["zm.>"],"storage":"memory","max_msgs_per_subject":5,"allow_direct":true,"allow_rollup_hdrs":true,"duplicate_window":1000000000}"#
                .to_string(),
        ),
        (
            "STREAM.CREATE.ZF",
            format!(
                r#"{{"name":"ZF","subjects":["zf.*","zf.*.x"],"storage":"{storage}","max_msgs":50,"max_age":5000000000}}"#
            ),
        ),
        (
            "STREAM.CREATE.ZW",
            format!(
                r#"{{"name":"ZW","subjects":["zw.>"],"storage":"{storage}","retention":"workqueue"}}"#
            ),
        ),
        (
            "CONSUMER.DURABLE.CREATE.ZM.PULL",
            r#"{"stream_name":"ZM","config":{"durable_name":"PULL","ack_policy":"explicit","ack_wait":1000000000,"max_deliver":3}}"#
                .to_string(),
        ),
        (
            "CONSUMER.CREATE.ZF.PUSH",
            r#"{"stream_name":"ZF","config":{"name":"PUSH","deliver_subject":"dlv.f","ack_policy":"all","flow_control":true,"idle_heartbeat":1000000000}}"#
                .to_string(),
        ),
        (
            "CONSUMER.CREATE.ZW.WQ",
            r#"{"stream_name":"ZW","config":{"name":"WQ","ack_policy":"explicit","backoff":[1000000000,2000000000],"max_deliver":4}}"#
                .to_string(),
        ),
    ];
    for (subject, body) in reqs {
        let subject = format!("$JS.API.{subject}");
        w.request(&subject, b"_INBOX.setup", body.as_bytes());
    }
    w.sync_interest();
    w.pass();
    w
}

/// `;` is CRLF and `^` LF in a header block written on one line.
fn header_block(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 8);
    for &b in text {
        match b {
            b';' => out.extend_from_slice(b"\r\n"),
            b'^' => out.push(b'\n'),
            _ => out.push(b),
        }
    }
    out
}

fn number(b: &[u8]) -> u64 {
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn op(w: &mut World, line: &[u8]) {
    let Some((&kind, rest)) = line.split_first() else {
        return;
    };
    let (head, arg) = match rest.iter().position(|&b| b == b' ') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    // Subjects on the wire have no whitespace; they may have anything else.
    let head = String::from_utf8_lossy(head).replace(['\t', '\r'], "_");
    match kind {
        b'R' | b'N' => {
            let reply: &[u8] = if kind == b'R' { b"_INBOX.r" } else { b"" };
            w.request(&format!("$JS.API.{head}"), reply, arg);
        }
        b'P' | b'p' => {
            let (hdr, data) = match arg.iter().position(|&b| b == b'|') {
                Some(i) => (header_block(&arg[..i]), &arg[i + 1..]),
                None => (Vec::new(), arg),
            };
            w.publish(&head, &hdr, data, kind == b'P');
        }
        b'A' => w.ack(&format!("$JS.ACK.{head}"), arg),
        b'a' if !w.deliveries.is_empty() => {
            let i = number(head.as_bytes()) as usize % w.deliveries.len();
            let subject = w.deliveries[i].0.clone();
            w.ack(&subject, arg);
        }
        b'C' => w.acc.flow_control(&format!("$JS.FC.{head}")),
        b'T' => {
            let ms = number(head.as_bytes()).min(1 << 40);
            w.now += Duration::from_millis(ms);
        }
        b'I' => {
            let mut t = arg.split(|&b| b == b' ');
            let c = String::from_utf8_lossy(t.next().unwrap_or_default()).into_owned();
            let on = t.next() != Some(b"0");
            let now = w.now_ns();
            w.acc.set_interest(&head, &c, on, now);
        }
        b'D' if !w.deliveries.is_empty() => {
            let (reply, seq) =
                w.deliveries[number(head.as_bytes()) as usize % w.deliveries.len()].clone();
            w.not_delivered(&reply, seq);
        }
        b'O' => w.restart(),
        _ => return,
    }
    w.pass();
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, input)) = data.split_first() else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("tern-fuzz-jsapi-{}", std::process::id()));
    let mut w = setup(dir.clone(), flags & 1 == 1);
    for line in input.split(|&b| b == b'\n').take(256) {
        op(&mut w, line);
    }
    w.check();
    drop(w);
    let _ = std::fs::remove_dir_all(&dir);
});
