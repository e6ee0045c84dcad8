//! The consumers' side of streams and accounts (consumer/ holds a consumer itself; this file
//! is where consumers meet streams and accounts): what the integration calls (see mod.rs),
//! and the retention rules that depend on consumers (nats-server 2.9.10's `ackMsg`,
//! `checkInterest`, `needAck`, interest-based publishing, a consumer's delete on an
//! interest stream, purges and message deletes reaching the consumers).

use super::account::JsAccount;
use super::consumer::ack;
use super::consumer::engine::PollCtx;
use super::consumer::state::Event;
use super::consumer::{persist, pull, Budget, Consumer, Out};
use crate::jetstream::config::Retention;
use crate::jetstream::store::SyncTarget;
use crate::jetstream::stream::Stream;

impl Stream {
    /// A message was stored as `seq` (publish.rs calls this).
    pub fn consumers_on_append(&mut self, seq: u64, subject: &[u8]) {
        for c in self.consumers.values_mut() {
            c.on_append(seq, subject);
        }
    }

    /// Messages went away in bulk (purge, limits, expiry): counts are redone on demand.
    pub fn consumers_recount(&mut self) {
        for c in self.consumers.values_mut() {
            c.recount();
        }
    }

    /// Interest retention: nobody would want a message on `subject` (it is not stored).
    pub fn no_interest_in(&self, subject: &str) -> bool {
        if self.config.retention != Retention::Interest {
            return false;
        }
        !self
            .consumers
            .values()
            .any(|c| c.matches(subject.as_bytes()))
    }

    /// `checkInterest`: does a consumer other than `except` still need `seq`?
    fn others_need(&self, seq: u64, except: &str) -> bool {
        let filtered = self
            .consumers
            .values()
            .any(|c| !c.config.filter_subject.is_empty());
        let subject = if filtered {
            match self.store.load(seq) {
                Some(m) => Some(m.subject().to_vec()),
                None => return false,
            }
        } else {
            None
        };
        self.consumers.values().any(|c| {
            c.name != except
                && subject.as_deref().is_none_or(|s| c.matches(s))
                && c.state.needs_ack(seq, c.config.ack_policy)
        })
    }

    /// `ackMsg`: consumer `by` acked these sequences; on interest and workqueue streams a
    /// message nobody else needs is removed.
    pub fn retention_acked(&mut self, by: &str, seqs: &[u64], ranges: &[(u64, u64)]) {
        if self.config.retention == Retention::Limits {
            return;
        }
        let first = self.store.state().first_seq;
        let last = self.store.state().last_seq;
        let mut all: Vec<u64> = seqs.iter().copied().filter(|&s| s >= first).collect();
        for &(from, to) in ranges {
            all.extend(from.max(first)..=to.min(last));
        }
        let mut removed = false;
        for seq in all {
            let remove = match self.config.retention {
                Retention::WorkQueue => true,
                _ => !self.others_need(seq, by),
            };
            if remove && self.store.remove(seq, false) {
                removed = true;
            }
        }
        if removed {
            self.consumers_recount();
        }
    }

    /// A message was deleted (MSG.DELETE): a consumer that had it pending takes it as
    /// terminated (`decStreamPending`).
    pub fn consumers_msg_deleted(&mut self, seq: u64) {
        for c in self.consumers.values_mut() {
            if let Some(p) = c.state.pending.get(&seq).copied() {
                c.record(Event::Ack {
                    sseq: seq,
                    dseq: p.dseq,
                });
            }
            c.recount();
        }
    }

    /// After a purge: `first` is the stream's first sequence now, `filter` the purge's.
    pub fn consumers_purged(&mut self, filter: Option<&str>) {
        let st = self.store.state();
        let mut fseq = st.first_seq;
        if let Some(f) = filter {
            fseq = self
                .store
                .next_matching(0, Some(f.as_bytes()))
                .unwrap_or(st.last_seq + 1);
        }
        for c in self.consumers.values_mut() {
            if let Some(f) = filter {
                if !c.matches(f.as_bytes()) {
                    c.recount();
                    continue;
                }
            }
            let sseq = if fseq == 0 { st.last_seq + 1 } else { fseq };
            c.record(Event::Purge { sseq });
            c.recount();
        }
    }

    /// The stream is being deleted: every pull request waiting on one of its consumers gets
    /// `409 Consumer Deleted`, as when the consumer alone is deleted (nats-server stops each
    /// consumer with its stream).
    pub fn cancel_waiting(&mut self) -> Vec<Out> {
        self.consumers
            .values_mut()
            .flat_map(consumer_deleted)
            .collect()
    }

    /// Removes a consumer (CONSUMER.DELETE, inactivity). On an interest stream, messages
    /// only it still needed go too. Waiting pull requests get `409 Consumer Deleted`.
    pub fn remove_consumer(&mut self, name: &str) -> Option<Vec<Out>> {
        let mut c = self.consumers.remove(name)?;
        let outs = consumer_deleted(&mut c);
        if self.config.retention == Retention::Interest {
            let st = self.store.state();
            let start = c.state.asflr.max(st.first_seq);
            let mut removed = false;
            for seq in start..=st.last_seq {
                if self.store.load(seq).is_some() && !self.others_need(seq, name) {
                    removed |= self.store.remove(seq, false);
                }
            }
            if removed {
                self.consumers_recount();
            }
        }
        if let Some(d) = c.dir.take() {
            c.log = None;
            if let Err(e) = std::fs::remove_dir_all(&d) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    log::warn!("JetStream: removing consumer {}: {e}", d.display());
                }
            }
        }
        Some(outs)
    }

    /// Polls every consumer that has work or a passed deadline; removes ephemerals past
    /// their inactivity threshold. Returns the next deadline.
    pub fn poll_consumers(&mut self, cx: &mut PollCtx) -> Option<i64> {
        let now = cx.now;
        let expired: Vec<String> = self
            .consumers
            .values()
            .filter(|c| c.expired(now) && !c.still_wanted(now, cx))
            .map(|c| c.name.clone())
            .collect();
        for name in expired {
            if let Some(outs) = self.remove_consumer(&name) {
                cx.outs.extend(outs);
            }
        }
        cx.max_msg_size = self.config.max_msg_size;
        let names: Vec<String> = self
            .consumers
            .values()
            .filter(|c| c.ready || c.next_deadline().is_some_and(|t| t <= now))
            .map(|c| c.name.clone())
            .collect();
        for name in names {
            let Some(c) = self.consumers.get_mut(&name) else {
                continue;
            };
            c.poll(&self.store, cx);
            self.apply_acks(&name, cx);
        }
        self.consumers
            .values()
            .filter_map(|c| {
                if c.ready {
                    Some(now)
                } else {
                    c.next_deadline()
                }
            })
            .min()
    }

    /// Retention for what a consumer call acked.
    pub fn apply_acks(&mut self, by: &str, cx: &mut PollCtx) {
        if cx.acked.is_empty() && cx.acked_ranges.is_empty() {
            return;
        }
        let seqs = std::mem::take(&mut cx.acked);
        let ranges = std::mem::take(&mut cx.acked_ranges);
        self.retention_acked(by, &seqs, &ranges);
    }

    /// Writes every consumer's recorded state changes.
    pub fn flush_consumers(&mut self, target: &mut SyncTarget) -> std::io::Result<()> {
        let mut first_err = Ok(());
        for c in self.consumers.values_mut() {
            {
                match c.flush_log() {
                    Ok(Some(t)) => target.merge(&t),
                    Ok(None) => {}
                    Err(e) => {
                        log::warn!(
                            "JetStream: writing consumer state {} > {}: {e}",
                            c.stream,
                            c.name
                        );
                        if first_err.is_ok() {
                            first_err = Err(e);
                        }
                    }
                }
            }
        }
        first_err
    }
}

impl JsAccount {
    /// A message published to a consumer's ack subject (`$JS.ACK.<stream>.<consumer>.*.*.*.*.*`)
    /// in this account. Returns what to publish.
    pub fn ack(
        &mut self,
        subject: &[u8],
        reply: &str,
        payload: &[u8],
        now: i64,
        interest: &dyn Fn(&str) -> bool,
    ) -> Vec<Out> {
        let Some(a) = ack::parse_subject(subject) else {
            return Vec::new();
        };
        let Some(stream) = self.streams.get_mut(a.stream) else {
            return Vec::new();
        };
        let mut cx = PollCtx::new(now, interest);
        cx.track_acked = stream.config.retention != Retention::Limits;
        {
            let Stream {
                consumers, store, ..
            } = &mut *stream;
            let Some(c) = consumers.get_mut(a.consumer) else {
                return Vec::new();
            };
            c.process_ack(&a, payload, reply, store, &mut cx);
        }
        stream.apply_acks(a.consumer, &mut cx);
        cx.outs
    }

    /// A flow control answer (`$JS.FC.<stream>.<consumer>.<id>`).
    pub fn flow_control(&mut self, subject: &str) {
        let mut t = subject.splitn(5, '.');
        let (Some("$JS"), Some("FC"), Some(s), Some(c)) = (t.next(), t.next(), t.next(), t.next())
        else {
            return;
        };
        if let Some(c) = self.streams.get_mut(s).and_then(|s| s.consumers.get_mut(c)) {
            c.flow_control_answered(subject);
        }
    }

    /// Interest in a push consumer's deliver subject changed.
    pub fn set_interest(&mut self, stream: &str, consumer: &str, interest: bool, now: i64) {
        if let Some(c) = self
            .streams
            .get_mut(stream)
            .and_then(|s| s.consumers.get_mut(consumer))
        {
            c.set_interest(interest, now);
        }
    }

    /// Push consumers and what they deliver to: (stream, consumer, subject, group).
    pub fn deliver_subjects(&self) -> Vec<(String, String, String, String)> {
        let mut v = Vec::new();
        for s in self.streams.values() {
            for c in s.consumers.values().filter(|c| c.config.is_push()) {
                v.push((
                    s.config.name.clone(),
                    c.name.clone(),
                    c.config.deliver_subject.clone(),
                    c.config.deliver_group.clone(),
                ));
            }
        }
        v
    }

    /// A delivery reached no subscriber (`didNotDeliver`).
    pub fn not_delivered(&mut self, stream: &str, consumer: &str, seq: u64, now: i64) {
        let Some(c) = self
            .streams
            .get_mut(stream)
            .and_then(|s| s.consumers.get_mut(consumer))
        else {
            return;
        };
        if c.config.is_push() {
            c.set_interest(false, now);
        } else if c.state.pending.contains_key(&seq) && !c.state.on_redeliver_queue(seq) {
            c.state.queue_redelivery(seq);
            c.ready = true;
        }
    }

    /// Polls the account's consumers: deliveries and statuses go to `outs`. Returns the
    /// next deadline (Unix ns) at which to poll again without new input.
    pub fn poll(
        &mut self,
        now: i64,
        budget: &Budget,
        interest: &dyn Fn(&str) -> bool,
        room: &dyn Fn(&str) -> bool,
        outs: &mut Vec<Out>,
    ) -> Option<i64> {
        let mut next: Option<i64> = None;
        for s in self.streams.values_mut() {
            if s.consumers.is_empty() {
                continue;
            }
            let mut cx = PollCtx::new(now, interest);
            cx.budget = *budget;
            cx.room = room;
            cx.track_acked = s.config.retention != Retention::Limits;
            // Deliveries go straight into the caller's vector (it keeps its capacity from
            // pass to pass): no growing from empty and no second copy per poll.
            cx.outs = std::mem::take(outs);
            cx.spare = std::mem::take(&mut self.spare);
            cx.interest_gen = self.interest_gen;
            let d = s.poll_consumers(&mut cx);
            *outs = std::mem::take(&mut cx.outs);
            self.spare = std::mem::take(&mut cx.spare);
            next = match (next, d) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        next
    }

    /// Writes every consumer's state changes of this pass (call after the streams'
    /// flush). Returns what to fsync; with `sync: always`, send the `after_sync` replies
    /// only once it is synced.
    pub fn flush_consumers(&mut self) -> Option<SyncTarget> {
        let mut t = SyncTarget::default();
        for s in self.streams.values_mut() {
            let _ = s.flush_consumers(&mut t);
        }
        (!t.is_empty()).then_some(t)
    }

    /// Per-consumer figures for monitoring (`/jsz?consumers=true`, `/metrics`): (stream,
    /// consumer, num_pending, num_ack_pending, num_redelivered, num_waiting).
    pub fn consumer_figures(&mut self) -> Vec<(String, String, u64, u64, u64, u64)> {
        let mut v = Vec::new();
        for s in self.streams.values_mut() {
            let Stream {
                consumers, store, ..
            } = s;
            for c in consumers.values_mut() {
                let pending = c.num_pending(store);
                v.push((
                    c.stream.clone(),
                    c.name.clone(),
                    pending,
                    c.state.pending.len() as u64,
                    c.state.rdc.len() as u64,
                    c.waiting.len() as u64,
                ));
            }
        }
        v
    }

    /// Consumers in all the account's streams (account INFO).
    pub fn consumer_count(&self) -> usize {
        self.streams.values().map(|s| s.consumers.len()).sum()
    }
}

/// Brings back the consumers of a file stream (`<stream dir>/obs/*`). A directory that
/// cannot be read is skipped with a warning and left on disk.
pub fn open_consumers(stream: &mut Stream, now: i64) {
    let Some(sdir) = stream.dir.clone() else {
        return;
    };
    for dir in persist::consumer_dirs(&sdir) {
        match persist::open_consumer(&stream.config.name, &stream.store, &dir, now) {
            Ok(c) => {
                stream.consumers.insert(c.name.clone(), c);
            }
            Err(e) => log::warn!("JetStream: skipping consumer {}: {e}", dir.display()),
        }
    }
}

/// `409 Consumer Deleted` to each of the consumer's waiting pull requests (they are dropped).
fn consumer_deleted(c: &mut Consumer) -> Vec<Out> {
    c.waiting
        .reqs
        .drain(..)
        .map(|w| Out::status(&w.reply, pull::status(409, "Consumer Deleted")))
        .collect()
}
