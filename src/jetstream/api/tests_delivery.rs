//! The delivery half of the fixture replay (SUB, UNSUB, NEXT, ACK, FC, RECV, SLEEP): it
//! stands in for the loop integration the way consumer/mod.rs describes it. After every
//! record it polls the consumers until they have nothing more to say, routes each `Out`
//! to the fixture's subscriptions (a delivery nobody subscribes to is reported with
//! `not_delivered`), flushes the stores and the consumer logs; SLEEP advances the fake
//! clock deadline by deadline, polling at each.

use super::tests::{fixture_interest, set_subs, subs, Record, Want, World};
use crate::jetstream::consumer::{Budget, Out};
use crate::protocol::json;
use std::time::{Duration, UNIX_EPOCH};

/// A received message: (sub, subject, reply, hdr, data).
type Got = (String, String, String, Vec<u8>, Vec<u8>);

/// What the fixture's connection received.
#[derive(Default)]
pub struct Mail {
    /// Every message.
    pub all: Vec<Got>,
    /// Index in `all` of the first message not yet shown by a RECV.
    pub shown: usize,
}

fn now_ns(w: &World) -> i64 {
    w.now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// Routes messages as the broker would; `user` is the account they were published in.
pub fn route(w: &mut World, user: &str, outs: Vec<Out>, stream_consumer: Option<(&str, &str)>) {
    let now = now_ns(w);
    for o in outs {
        let to = o.to.clone();
        let sub = subs()
            .into_iter()
            .find(|(p, _)| crate::jetstream::subject::matches(p, &to));
        let Some((sub, _)) = sub else {
            if let (true, Some((s, c))) = (o.seq > 0, stream_consumer) {
                if let Some(Some(acc)) = w.accounts.get_mut(user) {
                    acc.not_delivered(s, c, o.seq, now);
                }
            }
            continue;
        };
        let subject = String::from_utf8_lossy(o.subject()).into_owned();
        w.mail.all.push((
            sub,
            subject,
            o.reply.clone(),
            o.hdr().to_vec(),
            o.data().to_vec(),
        ));
    }
}

/// Polls every account's consumers until they are quiet (one loop pass, really several).
pub fn pump(w: &mut World) {
    let now = now_ns(w);
    let users: Vec<String> = w.accounts.keys().cloned().collect();
    for user in users {
        for _ in 0..64 {
            let mut outs = Vec::new();
            let Some(Some(acc)) = w.accounts.get_mut(&user) else {
                break;
            };
            sync_interest(acc, now);
            let budget = Budget::default();
            acc.poll(now, &budget, &fixture_interest, &|_| true, &mut outs);
            let ready = acc
                .streams
                .values()
                .any(|s| s.consumers.values().any(|c| c.ready));
            if outs.is_empty() && !ready {
                break;
            }
            route(w, &user, outs, None);
        }
        if let Some(Some(acc)) = w.accounts.get_mut(&user) {
            acc.flush_consumers();
        }
    }
}

/// Push consumers learn whether their deliver subject has a subscriber.
fn sync_interest(acc: &mut crate::jetstream::account::JsAccount, now: i64) {
    for (s, c, subject, _) in acc.deliver_subjects() {
        acc.set_interest(&s, &c, fixture_interest(&subject), now);
    }
}

/// SLEEP: time passes; consumers are polled at each deadline on the way.
pub fn sleep(w: &mut World, ms: u64) {
    let target = w.now + Duration::from_millis(ms);
    for _ in 0..10_000 {
        let now = now_ns(w);
        let next = w
            .accounts
            .values_mut()
            .flatten()
            .flat_map(|a| a.streams.values())
            .flat_map(|s| s.consumers.values())
            .filter_map(|c| c.next_deadline())
            .filter(|&d| d > now)
            .min();
        let Some(d) = next else { break };
        let at = UNIX_EPOCH + Duration::from_nanos(d as u64);
        if at > target {
            break;
        }
        w.now = at;
        pump(w);
    }
    w.now = target;
    pump(w);
}

/// SUB/UNSUB/NEXT/ACK/FC/RECV. Returns the record's result (RECV), else None.
pub fn op(w: &mut World, user: &str, r: &Record) -> Option<Want> {
    let args: Vec<&str> = r.arg.split_whitespace().collect();
    let now = now_ns(w);
    match r.op.as_str() {
        "SUB" => {
            let mut v = subs();
            v.push((args[0].to_string(), args.get(1).unwrap_or(&"").to_string()));
            set_subs(v);
        }
        "UNSUB" => {
            let v = subs().into_iter().filter(|(s, _)| s != args[0]).collect();
            set_subs(v);
        }
        "NEXT" => {
            let req = super::Request {
                subject: &format!("$JS.API.CONSUMER.MSG.NEXT.{}.{}", args[0], args[1]),
                reply: args[2].as_bytes(),
                payload: &r.body,
            };
            let env = w.env();
            let Some(Some(acc)) = w.accounts.get_mut(user) else {
                return None;
            };
            let resp = super::handle(acc, &env, &req);
            route(w, user, resp.outs, None);
        }
        "ACK" | "FC" => {
            let k: usize = args[0].parse().expect("ACK <k>");
            let target = w.mail.all[k - 1].2.clone();
            let reply = if args.get(1) == Some(&"+") {
                format!("_INBOX.ack{k}")
            } else {
                String::new()
            };
            let Some(Some(acc)) = w.accounts.get_mut(user) else {
                return None;
            };
            if r.op == "FC" {
                acc.flow_control(&target);
            } else {
                let outs = acc.ack(target.as_bytes(), &reply, &r.body, now, &fixture_interest);
                route(w, user, outs, None);
            }
        }
        "RECV" => {
            // capture.py listens until 400 ms pass without a message.
            sleep(w, 400);
            // Deliveries to different subscriptions have no order between them.
            let mut msgs: Vec<&Got> = w.mail.all[w.mail.shown..].iter().collect();
            msgs.sort_by(|a, b| a.0.cmp(&b.0));
            let got = msgs.into_iter().map(normalise).collect();
            w.mail.shown = w.mail.all.len();
            return Some(Want::Got(got));
        }
        _ => panic!("not a delivery op: {}", r.op),
    }
    None
}

thread_local! {
    /// The text of the fixture being replayed: the names it uses itself.
    static SCRIPT: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

pub(super) fn set_script(text: &str) {
    SCRIPT.with(|s| *s.borrow_mut() = text.to_string());
}

/// A server-generated ephemeral name: 8 letters and digits the fixture does not name itself
/// (capture.py's rule). Each character is one of 62, so one name in 40 lacks upper or lower
/// case letters: case cannot tell.
fn generated_name(n: &str) -> bool {
    n.len() == 8
        && n.bytes().all(|b| b.is_ascii_alphanumeric())
        && SCRIPT.with(|s| !s.borrow().contains(n))
}

/// A received message as capture.py writes a GOT line.
fn normalise(m: &Got) -> String {
    let (sub, subject, reply, hdr, data) = m;
    let mut parts: Vec<String> = reply.split('.').map(str::to_string).collect();
    let reply = if reply.starts_with("$JS.ACK.") && parts.len() == 9 {
        parts[7] = "<ts>".into();
        if generated_name(&parts[3]) {
            parts[3] = "<eph>".into();
        }
        parts.join(".")
    } else if reply.starts_with("$JS.FC.") && parts.len() == 5 {
        parts[4] = "<fc>".into();
        parts.join(".")
    } else {
        reply.clone()
    };
    let mut text = String::from_utf8_lossy(data).into_owned();
    let parsed = json::parse(data).ok();
    let event = matches!(&parsed, Some(v @ json::Value::Obj(_)) if v.get("id").is_some() && v.get("type").is_some());
    if data.len() > 200 && !event {
        text = format!("<{} bytes>", data.len());
    }
    if let (true, Some(v)) = (event, parsed) {
        {
            let masked = match super::tests::mask(&v) {
                json::Value::Obj(f) => json::Value::Obj(
                    f.into_iter()
                        .map(|(k, x)| {
                            if k == "id" {
                                (k, json::Value::Str("<id>".into()))
                            } else {
                                (k, x)
                            }
                        })
                        .collect(),
                ),
                x => x,
            };
            // capture.py writes the placeholders unescaped.
            text = super::tests::to_json(&masked)
                .replace("\\u003c", "<")
                .replace("\\u003e", ">");
        }
    }
    let h = super::tests::mask_hdr(hdr);
    let mut s = String::new();
    json::Obj::new(&mut s)
        .str("sub", sub)
        .str("subject", subject)
        .str("reply", &reply)
        .str("hdr", &h)
        .str("data", &text)
        .end();
    super::tests::canon(&s)
}

#[test]
fn fixture_consumer_create() {
    super::tests::check("consumer_create.txt");
}

#[test]
fn fixture_consumer_api() {
    super::tests::check("consumer_api.txt");
}

#[test]
fn fixture_consumer_push() {
    super::tests::check("consumer_push.txt");
}

#[test]
fn fixture_consumer_pull() {
    super::tests::check("consumer_pull.txt");
}

#[test]
fn fixture_consumer_retention() {
    super::tests::check("consumer_retention.txt");
}

#[test]
fn fixture_consumer_restart() {
    super::tests::check("consumer_restart.txt");
}

#[test]
fn fixture_consumer_flow() {
    super::tests::check("consumer_flow.txt");
}

#[test]
fn fixture_consumer_clients() {
    super::tests::check("consumer_clients.txt");
}
