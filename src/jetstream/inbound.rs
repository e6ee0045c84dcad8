//! What JetStream does with the messages its internal subscriptions received (the broker's
//! inbox, handed over in `JetStream::end_of_pass`), and the consumers' deliveries.
//!
//! A request is answered by `api::handle`; a publish goes through `JsAccount::publish`; an ack
//! through `JsAccount::ack`. Replies that report a change to a store are held by `Commit`
//! until the end-of-pass flush (and, with `sync_interval: always`, its fsync); the others are
//! published at once, into the requester's account, as from a client of it.

use super::account::{to_ns, Env, ServerJs};
use super::api::{self, Change, Reply, Request};
use super::commit::{Fail, Held};
use super::consumer::{ack, Out};
use super::publish::{self, Inbound, PubOutcome};
use super::source::{JetStream, Purpose, Slot};
use crate::core::broker::Broker;
use crate::core::internal::InternalMsg;
use std::borrow::Cow;
use std::rc::Rc;
use std::time::SystemTime;

/// Whether anything in account `acc` subscribes to `subject`.
pub(super) fn interest(b: &Broker, acc: usize, subject: &str) -> bool {
    b.accounts[acc].sublist.peek(subject.as_bytes()).is_some()
}

/// Whether `subject`'s subscribers in account `acc` can take more now: each connection a
/// plain subscription is on, and one member of each queue group, is under the write
/// buffers' water mark. No subscriber at all: room (the delivery finds nobody).
pub(super) fn room(b: &Broker, acc: usize, subject: &str) -> bool {
    let Some(m) = b.accounts[acc].sublist.peek(subject.as_bytes()) else {
        return true;
    };
    let water = b.conns.stall_water();
    let sublist = &b.accounts[acc].sublist;
    let under = |id| {
        sublist
            .get(id)
            .and_then(|s| b.conns.get(s.conn))
            .is_none_or(|c| c.pending() <= water)
    };
    m.plain.iter().all(|&id| under(id))
        && m.groups
            .iter()
            .all(|g| g.members.iter().any(|&id| under(id)))
}

impl JetStream {
    /// One message from the inbox.
    pub(super) fn on_message(
        &mut self,
        b: &mut Broker,
        m: InternalMsg,
        now: SystemTime,
        server: ServerJs,
    ) {
        let Some(purpose) = self.subs.get(&(m.account, m.sub)).cloned() else {
            return;
        };
        let acc = m.account;
        // Borrowed unless the bytes are not UTF-8 (they always are from a client).
        let reply = text(m.reply());
        let payload = m.payload();
        let (hdr, data) = payload.split_at(m.hdr_len.min(payload.len()));
        match purpose {
            Purpose::Api => {
                let subject = text(m.subject());
                self.on_request(b, acc, &subject, &reply, data, now, server)
            }
            Purpose::Stream(name) => {
                let subject = text(m.subject());
                let msg = Inbound {
                    subject: &subject,
                    hdr,
                    data,
                    has_reply: !reply.is_empty(),
                };
                self.on_publish(b, acc, &name, &msg, &reply, now, server);
            }
            // The subject read as bytes: an ack per delivery, its numbers parsed from them.
            Purpose::Ack => {
                let Slot::On(slot) = &mut self.slots[acc] else {
                    return;
                };
                slot.touched = true;
                let outs = slot.js.ack(m.subject(), &reply, data, to_ns(now), &|s| {
                    interest(b, acc, s)
                });
                self.publish_outs(b, acc, outs);
            }
            Purpose::FlowControl => {
                if let Slot::On(slot) = &mut self.slots[acc] {
                    slot.js.flow_control(&text(m.subject()));
                }
            }
        }
    }

    /// A `$JS.API` request (under a domain's prefix too).
    #[allow(clippy::too_many_arguments)]
    fn on_request(
        &mut self,
        b: &mut Broker,
        acc: usize,
        subject: &str,
        reply: &str,
        payload: &[u8],
        now: SystemTime,
        server: ServerJs,
    ) {
        let subject = self.undomain(subject);
        let req = Request {
            subject: &subject,
            reply: reply.as_bytes(),
            payload,
        };
        let resp = match &mut self.slots[acc] {
            Slot::Off => return,
            Slot::NotEnabled => api::not_enabled(&req),
            Slot::On(slot) => {
                slot.touched = true;
                let env = Env {
                    now,
                    server,
                    domain: self.settings.domain.as_deref(),
                    interest: &|s| interest(b, acc, s),
                };
                api::handle(&mut slot.js, &env, &req)
            }
        };
        if let Some(change) = resp.change {
            self.apply_change(b, acc, change);
        }
        let (hdr, data) = match resp.reply {
            Reply::None => (Vec::new(), Vec::new()),
            Reply::Json(j) => (Vec::new(), j.into_bytes()),
            Reply::Msg { hdr, data } => (hdr, data),
        };
        let has_reply = !(hdr.is_empty() && data.is_empty());
        if has_reply && !reply.is_empty() {
            let held = Held::reply(acc, reply, hdr, data, Fail::Api(subject.clone()));
            match (resp.flush, resp.sync) {
                (Some(stream), sync) => self.commit.hold(held, Some(stream.into()), sync),
                (None, Some(sync)) => self.commit.hold(held, None, Some(sync)),
                (None, None) => {
                    held.publish(b, self.id);
                }
            }
        }
        self.publish_outs(b, acc, resp.outs);
    }

    /// `$JS.<domain>.API.x` is `$JS.API.x`.
    fn undomain(&self, subject: &str) -> String {
        if let Some(d) = &self.settings.domain {
            let prefix = format!("$JS.{d}.API.");
            if let Some(rest) = subject.strip_prefix(&prefix) {
                return format!("$JS.API.{rest}");
            }
        }
        subject.to_string()
    }

    /// Keeps the internal subscriptions in step with the streams.
    fn apply_change(&mut self, b: &mut Broker, acc: usize, change: Change) {
        if let Slot::On(slot) = &mut self.slots[acc] {
            slot.acks_dirty = true;
        }
        match change {
            Change::Created(s) | Change::Updated(s) => {
                self.subscribe_stream(b, acc, &s);
                // A new or shorter max_age: look for the next expiry again.
                self.arm_timer(to_ns(SystemTime::now()));
            }
            Change::Deleted(s) => self.unsubscribe_stream(b, acc, &s),
            Change::ConsumerCreated(..) | Change::ConsumerUpdated(..) => {
                // Look at the deliver subjects' interest again at the next poll.
                if let Slot::On(slot) = &mut self.slots[acc] {
                    slot.interest_gen = u64::MAX;
                }
            }
            Change::ConsumerDeleted(s, c) => {
                if let Slot::On(slot) = &mut self.slots[acc] {
                    slot.interest.remove(&(s, c));
                }
            }
        }
    }

    /// A message on a stream's subjects.
    #[allow(clippy::too_many_arguments)]
    fn on_publish(
        &mut self,
        b: &mut Broker,
        acc: usize,
        stream: &Rc<str>,
        msg: &Inbound,
        reply: &str,
        now: SystemTime,
        server: ServerJs,
    ) {
        let Slot::On(slot) = &mut self.slots[acc] else {
            return;
        };
        slot.touched = true;
        let env = Env {
            now,
            server,
            domain: self.settings.domain.as_deref(),
            interest: &|s| interest(b, acc, s),
        };
        let Some(outcome) = slot.js.publish(&env, stream, msg) else {
            return;
        };
        let max_age = slot
            .js
            .streams
            .get(&**stream)
            .map_or(0, |s| s.config.max_age);
        if max_age > 0 && matches!(outcome, PubOutcome::Stored(_)) {
            // The new message expires max_age from now: the timer must wake the loop by then
            // (it is armed only at start and when it fires).
            self.arm_timer(to_ns(now).saturating_add(max_age));
        }
        match outcome {
            PubOutcome::Done(Some(bytes)) if !reply.is_empty() => {
                b.publish_internal(self.id, acc, reply.as_bytes(), b"", b"", &bytes);
            }
            PubOutcome::Done(_) => {}
            PubOutcome::Stored(stored) => {
                if let (Some(ack), false) = (stored.ack, reply.is_empty()) {
                    let held =
                        Held::reply(acc, reply, Vec::new(), ack, Fail::PubAck(stream.clone()));
                    self.commit.hold(held, Some(stream.clone()), None);
                }
                if let Some(r) = stored.republish {
                    let held = Held::reply(acc, &r.subject, r.hdr, r.data, Fail::Drop);
                    self.commit.hold(held, Some(stream.clone()), None);
                }
            }
        }
    }

    /// Publishes consumer output: deliveries under their stored subject, statuses and
    /// advisories as they are. `after_sync` ones wait for the pass's commit.
    pub(super) fn publish_outs(&mut self, b: &mut Broker, acc: usize, mut outs: Vec<Out>) {
        self.publish_outs_drain(b, acc, &mut outs);
    }

    /// `publish_outs` leaving `outs` empty with its capacity.
    fn publish_outs_drain(&mut self, b: &mut Broker, acc: usize, outs: &mut Vec<Out>) {
        for out in outs.drain(..) {
            if out.after_sync {
                self.commit.hold(Held::out(acc, &out), None, None);
                continue;
            }
            let got = b.publish_internal_as(
                self.id,
                acc,
                out.to.as_bytes(),
                out.subject(),
                out.reply.as_bytes(),
                out.hdr(),
                out.data(),
            );
            if !got && out.seq > 0 {
                self.undelivered(acc, &out);
            }
            if let Slot::On(slot) = &mut self.slots[acc] {
                slot.js.spare.keep(out);
            }
        }
    }

    /// A delivery that reached nobody: its consumer hears of it.
    fn undelivered(&mut self, acc: usize, out: &Out) {
        let Some(a) = ack::parse_subject(out.reply.as_bytes()) else {
            return;
        };
        if let Slot::On(slot) = &mut self.slots[acc] {
            let now = to_ns(SystemTime::now());
            slot.js.not_delivered(a.stream, a.consumer, out.seq, now);
        }
    }

    /// Step 4 of the pass: consumers deliver (a bounded slice each, only to subscribers with
    /// room); push consumers first learn whether their deliver subjects have interest.
    pub(super) fn poll_consumers(&mut self, b: &mut Broker, now: SystemTime) {
        let now_ns = to_ns(now);
        let mut busy = false;
        let mut next: Option<i64> = None;
        for acc in 0..self.slots.len() {
            let Slot::On(slot) = &mut self.slots[acc] else {
                continue;
            };
            if slot.js.consumer_count() == 0 {
                continue;
            }
            let gen = {
                let st = &b.accounts[acc].sublist.stats;
                st.inserts + st.removes
            };
            slot.js.interest_gen = gen;
            if gen != slot.interest_gen {
                slot.interest_gen = gen;
                for (s, c, subject, _group) in slot.js.deliver_subjects() {
                    let has = interest(b, acc, &subject);
                    if slot.interest.insert((s.clone(), c.clone()), has) != Some(has) {
                        slot.js.set_interest(&s, &c, has, now_ns);
                    }
                }
            }
            let mut outs = std::mem::take(&mut self.outs_buf);
            let d = slot.js.poll(
                now_ns,
                &self.budget,
                &|s| interest(b, acc, s),
                &|s| room(b, acc, s),
                &mut outs,
            );
            next = match (next, d) {
                (Some(a), Some(d)) => Some(a.min(d)),
                (a, d) => a.or(d),
            };
            if !outs.is_empty() {
                slot.touched = true;
                slot.polled = true;
                busy = true;
                self.publish_outs_drain(b, acc, &mut outs);
            }
            self.outs_buf = outs;
        }
        self.busy = busy;
        if let Some(t) = next {
            self.arm_timer(t);
        }
    }

    /// The loop wakes at `t` (Unix ns) at the latest to run expiry and consumer timers.
    pub(super) fn arm_timer(&mut self, t: i64) {
        self.wake_at = Some(self.wake_at.map_or(t, |w| w.min(t)));
    }
}

/// The PubAck for a message whose store failed to flush.
pub(super) fn failed_ack(slot: &Slot, stream: &str, err: &str) -> Option<Vec<u8>> {
    let Slot::On(slot) = slot else {
        return None;
    };
    let s = slot.js.streams.get(stream)?;
    let e = super::api::errors::ApiError::with(
        super::api::errors::STREAM_STORE_FAILED,
        err.to_string(),
    );
    let _ = publish::store_error;
    Some(s.error_ack(&e))
}

/// Borrowed unless the bytes are not UTF-8. `str::from_utf8` checks ASCII a word at a time;
/// `from_utf8_lossy` alone walks byte by byte (a visible cost on every ack and publish).
fn text(b: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(b) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(b),
    }
}
