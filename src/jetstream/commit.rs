//! Group commit: replies that report a change wait until the change is written, and, with
//! `sync_interval: always`, fsynced.
//!
//! During a pass, PubAcks and API replies that depend on a store are held (`hold`). At the end
//! of the pass every changed store is flushed (one pwrite each) before consumers read, and the
//! consumers write their state after delivering. Then:
//! - `sync_interval: <duration>` (the default, 2 minutes as nats-server 2.9): the held replies
//!   are published at once. The stores, and the consumers' state files written since, are
//!   fsynced on the interval by the sync thread.
//! - `sync_interval: always`: everything the pass wrote goes to the sync thread as one batch;
//!   its held replies are published when that batch's fsync completes (`completions`, on the
//!   loop's waker), so one fsync covers every message of the pass.
//!
//! A store whose flush failed (disk full, I/O error) has rolled the pass's changes back: its
//! held replies become errors. A failed fsync makes the store read-only (the kernel may have
//! dropped the pages) and fails the batch's replies.

use super::inbound::failed_ack;
use super::source::Slot;
use super::store::{SyncDone, SyncTarget, Syncer};
use crate::config::jetstream::Sync;
use crate::core::broker::Broker;
use crate::server::source::SourceId;
use log::error;
use mio::Waker;
use std::collections::VecDeque;
use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

/// What a held reply becomes when its store's flush or sync fails.
#[derive(Clone, Debug)]
pub(super) enum Fail {
    /// A PubAck: an error PubAck of this stream.
    PubAck(Rc<str>),
    /// An API reply: `api::failed_reply` for this request subject.
    Api(String),
    /// Nothing is sent (republished messages, double-ack replies).
    Drop,
}

/// A message to publish once its change is committed.
pub(super) struct Held {
    acc: usize,
    to: Vec<u8>,
    /// The subject on the MSG line, when it differs from `to`.
    shown: Option<Vec<u8>>,
    reply: Vec<u8>,
    hdr: Vec<u8>,
    data: Vec<u8>,
    fail: Fail,
}

impl Held {
    pub fn reply(acc: usize, to: &str, hdr: Vec<u8>, data: Vec<u8>, fail: Fail) -> Held {
        Held {
            acc,
            to: to.as_bytes().to_vec(),
            shown: None,
            reply: Vec::new(),
            hdr,
            data,
            fail,
        }
    }

    pub fn out(acc: usize, out: &super::consumer::Out) -> Held {
        Held {
            acc,
            to: out.to.as_bytes().to_vec(),
            shown: Some(out.subject().to_vec()),
            reply: out.reply.as_bytes().to_vec(),
            hdr: out.hdr().to_vec(),
            data: out.data().to_vec(),
            fail: Fail::Drop,
        }
    }

    pub fn publish(&self, b: &mut Broker, owner: SourceId) -> bool {
        if matches!(self.fail, Fail::PubAck(_) | Fail::Api(_)) && self.shown.is_none() {
            // A reply to a requester's inbox: a subject used once.
            return b.reply_internal(owner, self.acc, &self.to, &self.hdr, &self.data);
        }
        let shown = self.shown.as_deref().unwrap_or(&self.to);
        b.publish_internal_as(
            owner,
            self.acc,
            &self.to,
            shown,
            &self.reply,
            &self.hdr,
            &self.data,
        )
    }

    /// Publishes what the failure turns this reply into, if anything.
    fn publish_failed(&self, b: &mut Broker, owner: SourceId, slots: &[Slot], err: &str) {
        let data = match &self.fail {
            Fail::PubAck(stream) => failed_ack(&slots[self.acc], stream, err),
            Fail::Api(subject) => match super::api::failed_reply(subject, err) {
                super::api::Reply::Json(j) => Some(j.into_bytes()),
                _ => None,
            },
            Fail::Drop => None,
        };
        if let Some(data) = data {
            b.publish_internal(owner, self.acc, &self.to, b"", b"", &data);
        }
    }
}

/// A batch given to the sync thread: what it covers and who waits for it.
struct Batch {
    id: u64,
    /// (account, stream, flush id): `synced` once the batch is done.
    stores: Vec<(usize, String, u64)>,
    held: Vec<Held>,
}

pub(super) struct Commit {
    sync: Sync,
    syncer: Syncer,
    next_batch: u64,
    /// Held this pass, with the stream whose flush each waits for.
    held: Vec<(Held, Option<Rc<str>>)>,
    /// Files the held replies need fsynced besides the stores (meta.inf, directories).
    extra: SyncTarget,
    /// This pass's failed flushes: (account, stream, error).
    failed: Vec<(usize, String, String)>,
    /// Stores whose flush asked for a sync even in interval mode (index files, compaction).
    wants: Vec<(usize, String)>,
    /// Interval mode: the consumers' files written since the last interval fsync, which
    /// that fsync covers (a consumer's state is as durable as the messages it points at).
    consumers_written: SyncTarget,
    /// Batches at the sync thread, oldest first.
    batches: VecDeque<Batch>,
    next_interval: Option<Instant>,
}

impl Commit {
    pub fn new(waker: Arc<Waker>, sync: Sync) -> io::Result<Commit> {
        let next_interval = match sync {
            Sync::Interval(d) => Some(Instant::now() + d),
            Sync::Always => None,
        };
        Ok(Commit {
            sync,
            syncer: Syncer::start(Some(waker))?,
            next_batch: 1,
            held: Vec::new(),
            extra: SyncTarget::default(),
            failed: Vec::new(),
            wants: Vec::new(),
            consumers_written: SyncTarget::default(),
            batches: VecDeque::new(),
            next_interval,
        })
    }

    /// Holds `h` until `stream`'s flush (None: no store involved) and, with `always`, the
    /// fsync of the pass, which also covers `sync`.
    pub fn hold(&mut self, h: Held, stream: Option<Rc<str>>, sync: Option<SyncTarget>) {
        if let Some(t) = sync {
            self.extra.merge(&t);
        }
        self.held.push((h, stream));
    }

    /// Step 3 of the pass: flush every store of the accounts touched this pass.
    pub fn flush_streams(&mut self, slots: &mut [Slot]) {
        for (acc, slot) in slots.iter_mut().enumerate() {
            let Slot::On(slot) = slot else { continue };
            if !slot.touched {
                continue;
            }
            for (name, s) in slot.js.streams.iter_mut() {
                match s.store.flush() {
                    Ok(f) if f.wants_sync || self.sync == Sync::Always => {
                        self.wants.push((acc, name.clone()))
                    }
                    Ok(_) => {}
                    Err(e) => {
                        error!("JetStream: flushing stream {name:?} failed: {e}");
                        self.failed.push((acc, name.clone(), e.to_string()));
                    }
                }
            }
        }
    }

    /// Step 5: consumers write their state, then the held replies go out, now or after the
    /// pass's fsync.
    pub fn finish_pass(&mut self, b: &mut Broker, owner: SourceId, slots: &mut [Slot]) {
        let mut target = std::mem::take(&mut self.extra);
        for slot in slots.iter_mut() {
            let Slot::On(slot) = slot else { continue };
            if std::mem::take(&mut slot.touched) {
                if let Some(t) = slot.js.flush_consumers() {
                    match self.sync {
                        Sync::Always => target.merge(&t),
                        // Written (a kill -9 cannot lose it); fsynced with the interval's.
                        Sync::Interval(_) => self.consumers_written.merge(&t),
                    }
                }
            }
            slot.touched = std::mem::take(&mut slot.polled);
        }
        // The stores' writes to sync: all of them with `always`; otherwise what a store asked
        // for (index files, deleting compacted segments wait for a sync).
        let mut stores = Vec::new();
        for (acc, name) in std::mem::take(&mut self.wants) {
            let Some(Slot::On(slot)) = slots.get_mut(acc) else {
                continue;
            };
            let Some(s) = slot.js.streams.get_mut(&name) else {
                continue;
            };
            if let Some((id, t)) = s.store.sync_target() {
                target.merge(&t);
                stores.push((acc, name, id));
            }
        }
        if self.sync != Sync::Always && self.failed.is_empty() {
            // The usual pass: the replies go out in order and `held` keeps its capacity.
            for (h, _) in self.held.drain(..) {
                h.publish(b, owner);
            }
        } else {
            let ok = self.settle(b, owner, slots);
            if self.sync == Sync::Always && !(target.is_empty() && ok.is_empty()) {
                self.submit(target, stores, ok);
                return;
            }
            for h in &ok {
                h.publish(b, owner);
            }
        }
        if !target.is_empty() || !stores.is_empty() {
            self.submit(target, stores, Vec::new());
        }
    }

    /// The pass's held replies: those of stores whose flush failed are answered with errors
    /// now; the others are returned, in order.
    fn settle(&mut self, b: &mut Broker, owner: SourceId, slots: &[Slot]) -> Vec<Held> {
        let held = std::mem::take(&mut self.held);
        let failed = std::mem::take(&mut self.failed);
        if failed.is_empty() {
            // The usual pass: nothing to sort out, no second vector.
            return held.into_iter().map(|(h, _)| h).collect();
        }
        let (ok, bad): (Vec<_>, Vec<_>) = held.into_iter().partition(|(h, stream)| {
            stream.as_ref().is_none_or(|s| {
                !failed
                    .iter()
                    .any(|(a, n, _)| *a == h.acc && n.as_str() == &**s)
            })
        });
        for (h, stream) in bad {
            let err = failed
                .iter()
                .find(|(a, n, _)| *a == h.acc && stream.as_deref() == Some(n.as_str()));
            h.publish_failed(b, owner, slots, err.map_or("", |(_, _, e)| e.as_str()));
        }
        ok.into_iter().map(|(h, _)| h).collect()
    }

    fn submit(&mut self, target: SyncTarget, stores: Vec<(usize, String, u64)>, held: Vec<Held>) {
        let id = self.next_batch;
        self.next_batch += 1;
        self.syncer.submit(id, target);
        self.batches.push_back(Batch { id, stores, held });
    }

    /// The sync thread finished batches: their stores are durable up to the flushes they
    /// covered, and their replies go out (or fail).
    pub fn completions(&mut self, b: &mut Broker, owner: SourceId, slots: &mut [Slot]) {
        let mut done: Vec<SyncDone> = Vec::new();
        self.syncer.drain(&mut done);
        for d in done {
            let Some(i) = self.batches.iter().position(|x| x.id == d.id) else {
                continue;
            };
            let Some(batch) = self.batches.remove(i) else {
                continue;
            };
            let err = d.result.as_ref().err().map(|e| e.to_string());
            for (acc, name, flush_id) in &batch.stores {
                let Some(Slot::On(slot)) = slots.get_mut(*acc) else {
                    continue;
                };
                let Some(s) = slot.js.streams.get_mut(name) else {
                    continue;
                };
                match &err {
                    None => s.store.synced(*flush_id),
                    Some(e) => {
                        error!(
                            "JetStream: fsync of stream {name:?} failed: {e}; it is read-only now"
                        );
                        s.store.sync_failed();
                    }
                }
            }
            for h in &batch.held {
                match &err {
                    None => {
                        h.publish(b, owner);
                    }
                    Some(e) => h.publish_failed(b, owner, slots, e),
                }
            }
        }
    }

    /// Whether the interval fsync is due.
    pub fn interval_due(&self, now: Instant) -> bool {
        self.next_interval.is_some_and(|t| t <= now)
    }

    pub fn next_interval(&self) -> Option<Instant> {
        self.next_interval
    }

    /// The interval fsync: everything written and not yet synced, handed to the sync thread
    /// as one batch (nothing waits here).
    pub fn submit_sync_all(&mut self, slots: &mut [Slot]) {
        if let Sync::Interval(d) = self.sync {
            self.next_interval = Some(Instant::now() + d);
        }
        let mut target = std::mem::take(&mut self.consumers_written);
        let mut stores = Vec::new();
        for (acc, slot) in slots.iter_mut().enumerate() {
            let Slot::On(slot) = slot else { continue };
            for (name, s) in slot.js.streams.iter_mut() {
                if let Some((id, t)) = s.store.sync_target() {
                    target.merge(&t);
                    stores.push((acc, name.clone(), id));
                }
            }
        }
        if !stores.is_empty() || !target.is_empty() {
            self.submit(target, stores, Vec::new());
        }
    }

    /// At shutdown: what the last pass wrote goes to the sync thread, and the loop, with
    /// nothing else left to serve, waits for it (5 s at most) so the replies still waiting
    /// go out.
    pub fn shutdown(&mut self, b: &mut Broker, owner: SourceId, slots: &mut [Slot]) {
        self.submit_sync_all(slots);
        let mut waited = 0;
        while !self.batches.is_empty() && waited < 500 {
            std::thread::sleep(std::time::Duration::from_millis(10));
            self.completions(b, owner, slots);
            waited += 1;
        }
    }
}
