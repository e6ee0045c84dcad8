//! Engine behaviour the fixtures cannot show well (timing, pacing, stalls, cleanup), and
//! the counters checked against a recomputation after random steps.

use super::{Budget, Out};
use crate::jetstream::account::{Env, JsAccount, JsLimits, ServerJs};
use crate::jetstream::api::{self, Request};
use crate::jetstream::publish::Inbound;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub(crate) const SEC: i64 = 1_000_000_000;

/// An account with one stream `S` on `s.>`, a fake clock and a set of subscriptions.
pub(crate) struct H {
    pub acc: JsAccount,
    pub now: i64,
    pub subs: Vec<String>,
    pub dir: PathBuf,
    /// Leave the directory when dropped (reopened by a later H).
    keep: bool,
}

thread_local! {
    static SUBS: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn interest(s: &str) -> bool {
    SUBS.with(|v| {
        v.borrow()
            .iter()
            .any(|p| crate::jetstream::subject::matches(p, s))
    })
}

impl H {
    pub fn new(tag: &str, stream_cfg: &str) -> H {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("tern-cons-{}-{tag}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut h = H {
            acc: JsAccount::new(&dir, "A", JsLimits::default()),
            now: 1_700_000_000 * SEC,
            subs: vec!["_INBOX.>".into()],
            dir,
            keep: false,
        };
        h.req("$JS.API.STREAM.CREATE.S", stream_cfg);
        h
    }

    /// The account in `dir` as a restart finds it (stream `S` created if missing).
    pub fn reopen(dir: &std::path::Path, stream_cfg: &str) -> H {
        let now = crate::jetstream::account::to_ns(SystemTime::now());
        let mut h = H {
            acc: JsAccount::open(dir, "A", JsLimits::default(), None),
            now,
            subs: vec!["_INBOX.>".into()],
            dir: dir.to_path_buf(),
            keep: true,
        };
        if !h.acc.streams.contains_key("S") {
            h.req("$JS.API.STREAM.CREATE.S", stream_cfg);
        }
        h
    }

    fn sync_subs(&self) {
        SUBS.with(|v| *v.borrow_mut() = self.subs.clone());
    }

    pub fn sub(&mut self, s: &str) {
        self.subs.push(s.into());
        self.sync_subs();
    }

    pub fn env(&self) -> Env<'static> {
        Env {
            now: UNIX_EPOCH + Duration::from_nanos(self.now as u64),
            server: ServerJs {
                max_memory: 1 << 40,
                max_store: 1 << 40,
                ..ServerJs::default()
            },
            domain: None,
            interest: &interest,
        }
    }

    /// An API request; returns the JSON reply and the status messages.
    pub fn req(&mut self, subject: &str, body: &str) -> (String, Vec<Out>) {
        self.req_reply(subject, "_INBOX.r", body)
    }

    pub fn req_reply(&mut self, subject: &str, reply: &str, body: &str) -> (String, Vec<Out>) {
        self.sync_subs();
        let env = self.env();
        let r = api::handle(
            &mut self.acc,
            &env,
            &Request {
                subject,
                reply: reply.as_bytes(),
                payload: body.as_bytes(),
            },
        );
        let json = match r.reply {
            api::Reply::Json(s) => s,
            _ => String::new(),
        };
        (json, r.outs)
    }

    pub fn publish(&mut self, subject: &str, data: &[u8]) {
        let env = self.env();
        let msg = Inbound {
            subject,
            hdr: b"",
            data,
            has_reply: false,
        };
        self.acc.publish(&env, "S", &msg).expect("stream");
    }

    /// One end-of-pass poll (push interest refreshed first).
    pub fn poll(&mut self) -> Vec<Out> {
        self.sync_subs();
        for (s, c, subject, _) in self.acc.deliver_subjects() {
            self.acc.set_interest(&s, &c, interest(&subject), self.now);
        }
        let mut outs = Vec::new();
        self.acc.poll(
            self.now,
            &Budget::default(),
            &interest,
            &|_| true,
            &mut outs,
        );
        for s in self.acc.streams.values_mut() {
            s.store.flush().expect("flush");
        }
        self.acc.flush_consumers();
        outs
    }

    /// Polls until quiet.
    pub fn drain(&mut self) -> Vec<Out> {
        let mut all = Vec::new();
        for _ in 0..1000 {
            let o = self.poll();
            if o.is_empty() {
                break;
            }
            all.extend(o);
        }
        all
    }

    pub fn advance(&mut self, ns: i64) -> Vec<Out> {
        let target = self.now + ns;
        let mut all = Vec::new();
        loop {
            let next = self
                .acc
                .streams
                .values()
                .flat_map(|s| s.consumers.values())
                .filter_map(|c| c.next_deadline())
                .filter(|&d| d > self.now && d <= target)
                .min();
            match next {
                Some(d) => {
                    self.now = d;
                    all.extend(self.drain());
                }
                None => break,
            }
        }
        self.now = target;
        all.extend(self.drain());
        all
    }

    pub fn ack(&mut self, reply: &str, payload: &str) -> Vec<Out> {
        self.acc.ack(
            reply.as_bytes(),
            "",
            payload.as_bytes(),
            self.now,
            &interest,
        )
    }

    pub fn info(&mut self, c: &str) -> crate::protocol::json::Value {
        let (j, _) = self.req(&format!("$JS.API.CONSUMER.INFO.S.{c}"), "");
        crate::protocol::json::parse(j.as_bytes()).expect("json")
    }
}

impl Drop for H {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

pub(crate) fn num(v: &crate::protocol::json::Value, path: &str) -> i64 {
    let mut cur = v;
    for k in path.split('.') {
        cur = cur.get(k).unwrap_or_else(|| panic!("no {path} in {v:?}"));
    }
    cur.as_i64().expect("number")
}

fn data(o: &Out) -> String {
    String::from_utf8_lossy(o.data()).into_owned()
}

fn status(o: &Out) -> String {
    String::from_utf8_lossy(o.hdr())
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

const MEM: &str = r#"{"name":"S","subjects":["s.>"],"storage":"memory"}"#;

#[test]
fn max_ack_pending_stalls_until_acks() {
    let mut h = H::new("map", MEM);
    h.sub("d");
    for i in 0..5 {
        h.publish("s.a", format!("{i}").as_bytes());
    }
    h.req(
        "$JS.API.CONSUMER.CREATE.S.C",
        r#"{"stream_name":"S","config":{"durable_name":"C","ack_policy":"explicit","max_ack_pending":2,"deliver_subject":"d"}}"#,
    );
    let first = h.drain();
    assert_eq!(first.iter().map(data).collect::<Vec<_>>(), ["0", "1"]);
    assert!(h.drain().is_empty());
    h.ack(&first[0].reply, "");
    let next = h.drain();
    assert_eq!(next.iter().map(data).collect::<Vec<_>>(), ["2"]);
    let i = h.info("C");
    assert_eq!(num(&i, "num_ack_pending"), 2);
    assert_eq!(num(&i, "num_pending"), 2);
}

#[test]
fn backoff_redelivers_on_its_schedule() {
    let mut h = H::new("backoff", MEM);
    h.sub("d");
    h.publish("s.a", b"x");
    h.req(
        "$JS.API.CONSUMER.CREATE.S.C",
        r#"{"stream_name":"S","config":{"durable_name":"C","ack_policy":"explicit","backoff":[1000000000,5000000000],"max_deliver":4,"deliver_subject":"d"}}"#,
    );
    assert_eq!(h.drain().len(), 1);
    // First redelivery after backoff[0] (1 s), the next ones 5 s apart.
    assert!(h.advance(900_000_000).is_empty());
    let r = h.advance(200_000_000);
    assert_eq!(r.len(), 1);
    assert!(
        r[0].reply.starts_with("$JS.ACK.S.C.2.1.2."),
        "{}",
        r[0].reply
    );
    assert!(h.advance(4 * SEC).is_empty());
    assert_eq!(h.advance(1100 * 1_000_000).len(), 1);
    assert_eq!(h.advance(5100 * 1_000_000).len(), 1);
    // The fourth delivery was the last: then the advisory, and nothing pending.
    let last = h.advance(6 * SEC);
    assert_eq!(last.len(), 1);
    assert!(last[0]
        .to
        .starts_with("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.S.C"));
    assert_eq!(num(&h.info("C"), "num_ack_pending"), 0);
}

/// A redelivery that max_deliver stops still counts (nats-server's `incDeliveryCount` comes
/// first), and after a restart the count is what it was: found by the consumer_state fuzz
/// target, where the log replayed one delivery fewer than the live state had counted.
#[test]
fn exhausted_redelivery_counts_survive_a_restart() {
    let stream = r#"{"name":"S","subjects":["s.>"]}"#;
    let mut h = H::new("exhaust", stream);
    h.sub("d");
    h.publish("s.a", b"x");
    h.publish("s.b", b"y");
    h.req(
        "$JS.API.CONSUMER.CREATE.S.C",
        r#"{"stream_name":"S","config":{"durable_name":"C","ack_policy":"explicit","ack_wait":1000000000,"max_deliver":1,"deliver_subject":"d"}}"#,
    );
    h.req(
        "$JS.API.CONSUMER.CREATE.S.D",
        r#"{"stream_name":"S","config":{"durable_name":"D","ack_policy":"explicit","ack_wait":1000000000,"max_deliver":2,"deliver_subject":"d"}}"#,
    );
    assert_eq!(h.drain().len(), 4);
    h.advance(10 * SEC);
    let rdc = |h: &H, c: &str| h.acc.streams["S"].consumers[c].state.rdc.clone();
    let before = [rdc(&h, "C"), rdc(&h, "D")];
    assert_eq!(num(&h.info("C"), "num_redelivered"), 2);
    assert_eq!(num(&h.info("D"), "num_redelivered"), 2);
    h.keep = true;
    let dir = h.dir.clone();
    drop(h);
    let mut h = H::reopen(&dir, stream);
    assert_eq!([rdc(&h, "C"), rdc(&h, "D")], before);
    assert_eq!(num(&h.info("C"), "num_redelivered"), 2);
    drop(h);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn replay_original_keeps_the_gaps() {
    let mut h = H::new("replay", MEM);
    h.sub("d");
    for gap in [0, SEC, 3 * SEC] {
        h.now += gap;
        h.publish("s.a", b"m");
    }
    h.now += 10 * SEC;
    h.req(
        "$JS.API.CONSUMER.CREATE.S.C",
        r#"{"stream_name":"S","config":{"durable_name":"C","replay_policy":"original","deliver_subject":"d"}}"#,
    );
    assert_eq!(h.drain().len(), 1);
    assert!(h.advance(900_000_000).is_empty());
    assert_eq!(h.advance(100_000_000).len(), 1);
    assert!(h.advance(2900 * 1_000_000).is_empty());
    assert_eq!(h.advance(100_000_000).len(), 1);
    // Caught up: new messages go at once.
    h.publish("s.a", b"new");
    assert_eq!(h.drain().len(), 1);
}

#[test]
fn rate_limit_paces_push_delivery() {
    let mut h = H::new(
        "rate",
        r#"{"name":"S","subjects":["s.>"],"storage":"memory","max_msg_size":1000}"#,
    );
    h.sub("d");
    for _ in 0..10 {
        h.publish("s.a", &[b'x'; 900]);
    }
    // 8000 bps = 1000 bytes/s, burst 1000 bytes: about one message a second.
    h.req(
        "$JS.API.CONSUMER.CREATE.S.C",
        r#"{"stream_name":"S","config":{"durable_name":"C","rate_limit_bps":8000,"deliver_subject":"d"}}"#,
    );
    assert_eq!(h.drain().len(), 1);
    let after = h.advance(5 * SEC).len();
    assert!((4..=6).contains(&after), "{after} in 5 s");
}

#[test]
fn ephemerals_go_after_inactivity() {
    let mut h = H::new("eph", MEM);
    h.req(
        "$JS.API.CONSUMER.CREATE.S.P",
        r#"{"stream_name":"S","config":{"name":"P","ack_policy":"explicit","inactive_threshold":2000000000}}"#,
    );
    h.req(
        "$JS.API.CONSUMER.CREATE.S.Q",
        r#"{"stream_name":"S","config":{"name":"Q","deliver_subject":"q"}}"#,
    );
    h.req(
        "$JS.API.CONSUMER.CREATE.S.D",
        r#"{"stream_name":"S","config":{"durable_name":"D","deliver_subject":"nobody"}}"#,
    );
    h.poll();
    h.advance(1500 * 1_000_000);
    // A pull request keeps the pull ephemeral alive; the push one has no interest.
    h.req_reply("$JS.API.CONSUMER.MSG.NEXT.S.P", "_INBOX.p", "");
    h.advance(1500 * 1_000_000);
    let names = |h: &mut H| h.req("$JS.API.CONSUMER.NAMES.S", "").0;
    assert_eq!(
        crate::protocol::json::parse(names(&mut h).as_bytes())
            .unwrap()
            .get("consumers")
            .unwrap(),
        &crate::protocol::json::parse(br#"["D","P","Q"]"#).unwrap()
    );
    h.advance(4 * SEC);
    assert!(names(&mut h).contains(r#"["D","P"]"#), "{}", names(&mut h));
    // The waiting request lost interest: P goes too.
    h.subs.retain(|s| s != "_INBOX.>");
    h.advance(4 * SEC);
    assert!(names(&mut h).contains(r#"["D"]"#), "{}", names(&mut h));
}

#[test]
fn pull_without_interest_is_dropped_and_not_delivered_is_redelivered() {
    let mut h = H::new("nointerest", MEM);
    h.publish("s.a", b"1");
    h.publish("s.a", b"2");
    h.req(
        "$JS.API.CONSUMER.CREATE.S.C",
        r#"{"stream_name":"S","config":{"durable_name":"C","ack_policy":"explicit"}}"#,
    );
    // Nobody listens on the inbox: the request is dropped, nothing is delivered.
    h.req_reply("$JS.API.CONSUMER.MSG.NEXT.S.C", "nobody.here", "1");
    assert!(h.drain().is_empty());
    assert_eq!(num(&h.info("C"), "num_waiting"), 0);
    h.req_reply("$JS.API.CONSUMER.MSG.NEXT.S.C", "_INBOX.a", "1");
    let got = h.drain();
    assert_eq!(got.len(), 1);
    // The broker found no subscriber after all: it is queued again at once.
    h.acc.not_delivered("S", "C", got[0].seq, h.now);
    h.req_reply("$JS.API.CONSUMER.MSG.NEXT.S.C", "_INBOX.a", "1");
    let again = h.drain();
    assert_eq!(again[0].seq, got[0].seq);
    assert!(again[0].reply.starts_with("$JS.ACK.S.C.2.1.2."));
}

#[test]
fn pull_expired_when_a_message_comes_gets_its_408() {
    // The crash trials' stall: a request expires while nothing is deliverable, and the
    // next pass finds a message before `process_waiting` ran. The requester must hear of
    // it (as from nats-server 2.10); the message waits for the next request.
    let mut h = H::new("expired", MEM);
    h.req(
        "$JS.API.CONSUMER.CREATE.S.C",
        r#"{"stream_name":"S","config":{"durable_name":"C","ack_policy":"explicit"}}"#,
    );
    h.req_reply(
        "$JS.API.CONSUMER.MSG.NEXT.S.C",
        "_INBOX.p",
        r#"{"batch":5,"expires":1000000000}"#,
    );
    assert!(h.drain().is_empty());
    h.now += 2 * SEC;
    h.publish("s.a", b"1");
    let got = h.poll();
    assert_eq!(
        got.len(),
        1,
        "{:?}",
        got.iter().map(status).collect::<Vec<_>>()
    );
    assert_eq!(&*got[0].to, "_INBOX.p");
    assert_eq!(status(&got[0]), "NATS/1.0 408 Request Timeout");
    assert_eq!(num(&h.info("C"), "num_waiting"), 0);
    assert_eq!(num(&h.info("C"), "num_pending"), 1);
    h.req_reply("$JS.API.CONSUMER.MSG.NEXT.S.C", "_INBOX.q", "1");
    let again = h.drain();
    assert_eq!((again.len(), again[0].seq), (1, 1));
}

#[test]
fn pull_interest_is_asked_again_when_subscriptions_change() {
    let mut h = H::new("interestgen", MEM);
    h.req(
        "$JS.API.CONSUMER.CREATE.S.C",
        r#"{"stream_name":"S","config":{"durable_name":"C","ack_policy":"none"}}"#,
    );
    h.acc.interest_gen = 7;
    h.req_reply("$JS.API.CONSUMER.MSG.NEXT.S.C", "_INBOX.p", "5");
    h.publish("s.a", b"1");
    assert_eq!(h.drain().len(), 1);
    // The inbox goes away, and the generation says so: the request goes too.
    h.subs.clear();
    h.acc.interest_gen = 8;
    h.publish("s.a", b"2");
    assert!(h.drain().is_empty());
    assert_eq!(num(&h.info("C"), "num_waiting"), 0);
}

#[test]
fn nak_with_delay_and_progress() {
    let mut h = H::new("nak", MEM);
    h.sub("d");
    h.publish("s.a", b"1");
    h.req(
        "$JS.API.CONSUMER.CREATE.S.C",
        r#"{"stream_name":"S","config":{"durable_name":"C","ack_policy":"explicit","ack_wait":10000000000,"deliver_subject":"d"}}"#,
    );
    let d = h.drain();
    let outs = h.ack(&d[0].reply, "-NAK 2s");
    assert!(outs[0]
        .to
        .starts_with("$JS.EVENT.ADVISORY.CONSUMER.MSG_NAKED.S.C"));
    assert!(h.advance(1900 * 1_000_000).is_empty());
    let r = h.advance(200_000_000);
    assert_eq!(r.len(), 1);
    // +WPI restarts the ack wait.
    h.advance(8 * SEC);
    h.ack(&r[0].reply, "+WPI");
    assert!(h.advance(9 * SEC).is_empty());
    assert_eq!(h.advance(2 * SEC).len(), 1);
}

#[test]
fn push_idle_heartbeat_only_with_interest() {
    let mut h = H::new("hb", MEM);
    h.req(
        "$JS.API.CONSUMER.CREATE.S.C",
        r#"{"stream_name":"S","config":{"durable_name":"C","idle_heartbeat":1000000000,"deliver_subject":"d"}}"#,
    );
    assert!(h.advance(3 * SEC).is_empty());
    h.sub("d");
    let hb = h.advance(2100 * 1_000_000);
    assert_eq!(hb.len(), 2);
    assert_eq!(status(&hb[0]), "NATS/1.0 100 Idle Heartbeat");
}

/// The counters in INFO against a recomputation from the stream, after random steps.
#[test]
fn counters_stay_exact() {
    let mut h = H::new("exact", MEM);
    h.sub("d");
    h.req(
        "$JS.API.CONSUMER.CREATE.S.C",
        r#"{"stream_name":"S","config":{"durable_name":"C","ack_policy":"explicit","ack_wait":5000000000,"filter_subject":"s.a","max_ack_pending":7,"deliver_subject":"d"}}"#,
    );
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let mut rnd = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let mut open: Vec<String> = Vec::new();
    for step in 0..400 {
        match rnd(6) {
            0 | 1 => h.publish(if rnd(3) == 0 { "s.b" } else { "s.a" }, b"p"),
            2 if !open.is_empty() => {
                let r = open.swap_remove(rnd(open.len() as u64) as usize);
                h.ack(&r, "");
            }
            3 if !open.is_empty() => {
                let r = open[rnd(open.len() as u64) as usize].clone();
                h.ack(&r, "-NAK");
            }
            4 => {
                h.advance(rnd(3) as i64 * SEC);
            }
            _ => {
                if rnd(10) == 0 {
                    h.req("$JS.API.STREAM.PURGE.S", r#"{"filter":"s.b"}"#);
                }
            }
        }
        for o in h.drain() {
            if o.seq > 0 {
                open.retain(|r| r.split('.').nth(5) != Some(&o.seq.to_string()));
                open.push(o.reply.clone());
            }
        }
        let i = h.info("C");
        let s = h.acc.streams.get("S").unwrap();
        let c = s.consumers.get("C").unwrap();
        let want = s.store.num_matching(c.state.sseq, Some(b"s.a"));
        assert_eq!(num(&i, "num_pending") as u64, want, "step {step}");
        assert_eq!(num(&i, "num_ack_pending") as usize, c.state.pending.len());
        assert!(c.state.pending.len() <= 7);
        assert!(num(&i, "ack_floor.stream_seq") <= num(&i, "delivered.stream_seq"));
    }
}

#[test]
fn a_stream_deleted_under_active_consumers() {
    let mut h = H::new("sdel", r#"{"name":"S","subjects":["s.>"]}"#);
    h.sub("d");
    h.publish("s.a", b"1");
    h.req(
        "$JS.API.CONSUMER.CREATE.S.C",
        r#"{"stream_name":"S","config":{"durable_name":"C","ack_policy":"explicit","deliver_subject":"d"}}"#,
    );
    h.req(
        "$JS.API.CONSUMER.CREATE.S.P",
        r#"{"stream_name":"S","config":{"durable_name":"P","ack_policy":"explicit"}}"#,
    );
    h.req_reply(
        "$JS.API.CONSUMER.MSG.NEXT.S.P",
        "_INBOX.w",
        r#"{"batch":5,"expires":60000000000}"#,
    );
    let d = h.drain();
    assert_eq!(d.len(), 2);
    let (j, _) = h.req("$JS.API.STREAM.DELETE.S", "");
    assert!(j.contains("\"success\":true"), "{j}");
    assert!(!h.dir.join("streams").join("S").exists());
    // Acks and requests for what is gone are ignored; polling has nothing to do.
    assert!(h.ack(&d[0].reply, "").is_empty());
    assert!(h
        .req_reply("$JS.API.CONSUMER.MSG.NEXT.S.P", "_INBOX.w", "")
        .1
        .is_empty());
    assert!(h.drain().is_empty());
    let (j, _) = h.req("$JS.API.INFO", "");
    assert!(j.contains("\"consumers\":0"), "{j}");
}

#[test]
fn bad_acks_and_absurd_requests() {
    let mut h = H::new("bad", MEM);
    h.publish("s.a", b"1");
    h.req(
        "$JS.API.CONSUMER.CREATE.S.C",
        r#"{"stream_name":"S","config":{"durable_name":"C","ack_policy":"all"}}"#,
    );
    for subject in [
        "$JS.ACK.S.C.1.1.1.1.0",
        "$JS.ACK.S.NOPE.1.1.1.1.0",
        "$JS.ACK.S.C.x.y.z.1.0",
        "$JS.ACK.S.C.1.18446744073709551615.1.1.0",
        "$JS.ACK.S.C.1.99.99.1.0",
        "$JS.ACK.S.C",
        "$JS.ACK.S.C.1.1.1.1.0.extra",
    ] {
        h.ack(subject, "");
        h.ack(subject, "-NAK {\"delay\":-99999999999999}");
        h.ack(subject, "+NXT {\"batch\":-1}");
    }
    // Ack all of something never delivered does not move the floor.
    assert_eq!(num(&h.info("C"), "ack_floor.stream_seq"), 0);
    for body in [
        r#"{"batch":9223372036854775807,"expires":9223372036854775807}"#,
        r#"{"batch":-5,"expires":-5}"#,
        r#"{"max_bytes":-1,"no_wait":true}"#,
        "99999999999999999999999",
        "{",
    ] {
        h.req_reply("$JS.API.CONSUMER.MSG.NEXT.S.C", "_INBOX.z", body);
        h.advance(SEC);
    }
    assert!(num(&h.info("C"), "delivered.stream_seq") <= 1);
}

#[test]
fn timestamps() {
    let t = SystemTime::UNIX_EPOCH + Duration::from_nanos(1_500_000_000);
    assert_eq!(
        super::info::ts(1_500_000_000),
        crate::util::timefmt::rfc3339(t)
    );
}
