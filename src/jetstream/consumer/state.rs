//! A consumer's delivery state, as nats-server 2.9.10 keeps it: the next stream sequence to
//! look at (`sseq`) and the next delivery sequence (`dseq`), the ack floor (every delivery up
//! to it is acked), the deliveries waiting for an ack (`pending`: stream seq → delivery seq
//! and time), the redelivery counts (`rdc`: deliveries beyond the first) and the redelivery
//! queue. The transitions here are the only way the state changes, and each one is also a
//! record of the consumer's log (persist.rs replays them through the same functions), so
//! what comes back after a restart is what the written records say.
//!
//! All times are Unix nanoseconds.

use super::config::AckPolicy;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pending {
    /// The delivery (consumer) sequence of its latest delivery.
    pub dseq: u64,
    /// When it was delivered (or last told in progress).
    pub ts: i64,
}

/// One change to the state: what the log records and replays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A delivery of `sseq` as `dseq`, its `dc`th (1: first).
    Deliver {
        sseq: u64,
        dseq: u64,
        dc: u64,
        ts: i64,
    },
    /// An ack of `sseq` (delivered as `dseq`) under the consumer's ack policy.
    Ack { sseq: u64, dseq: u64 },
    /// `sseq` is gone from the stream: nothing about it is kept.
    Drop { sseq: u64 },
    /// `sseq` was due again past max_deliver: no longer pending, and that refused delivery
    /// still counts in its redelivery count (nats-server increments before it checks; the
    /// count stays in `num_redelivered`).
    Exhaust { sseq: u64 },
    /// A pending delivery's clock restarts at `ts` (+WPI, -NAK with a delay).
    Touch { sseq: u64, ts: i64 },
    /// The stream was purged below `sseq`: nothing pending survives.
    Purge { sseq: u64 },
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    /// Next stream sequence to consider (`o.sseq`).
    pub sseq: u64,
    /// Next delivery sequence (`o.dseq`).
    pub dseq: u64,
    /// Ack floor: delivery and stream sequence (`o.adflr`, `o.asflr`).
    pub adflr: u64,
    pub asflr: u64,
    pub pending: BTreeMap<u64, Pending>,
    /// Deliveries beyond the first, per stream sequence (`o.rdc`).
    pub rdc: HashMap<u64, u64>,
    /// Stream sequences due for redelivery, in order, and the same as a set.
    rdq: VecDeque<u64>,
    rdqi: HashSet<u64>,
    /// Last delivery and last ack (ConsumerInfo's `last_active`); 0: never. Not persisted
    /// (nats-server forgets them on restart too).
    pub last_delivered: i64,
    pub last_ack: i64,
}

impl State {
    /// A fresh consumer starting at `sseq` (nats-server's `selectStartingSeqNo` leaves the
    /// ack floor at zero once the starting state has been stored and read back).
    pub fn starting(sseq: u64) -> State {
        State {
            sseq,
            dseq: 1,
            ..State::default()
        }
    }

    pub fn delivered_stream(&self) -> u64 {
        self.sseq.saturating_sub(1)
    }
    pub fn delivered_consumer(&self) -> u64 {
        self.dseq.saturating_sub(1)
    }

    pub fn has_redeliveries(&self) -> bool {
        !self.rdq.is_empty()
    }
    pub fn redelivery_queue_len(&self) -> usize {
        self.rdq.len()
    }
    pub fn on_redeliver_queue(&self, sseq: u64) -> bool {
        self.rdqi.contains(&sseq)
    }

    pub fn queue_redelivery(&mut self, sseq: u64) {
        if self.rdqi.insert(sseq) {
            self.rdq.push_back(sseq);
        }
    }

    pub fn next_to_redeliver(&mut self) -> Option<u64> {
        let seq = self.rdq.pop_front()?;
        self.rdqi.remove(&seq);
        Some(seq)
    }

    pub fn unqueue(&mut self, sseq: u64) {
        if !self.rdqi.is_empty() && self.rdqi.remove(&sseq) {
            self.rdq.retain(|&s| s != sseq);
        }
    }

    /// Applies one event (live, or replayed from the log).
    pub fn apply(&mut self, ev: Event, policy: AckPolicy) -> Applied {
        match ev {
            Event::Deliver { sseq, dseq, dc, ts } => {
                self.deliver(sseq, dseq, dc, ts, policy);
                Applied::default()
            }
            Event::Ack { sseq, dseq } => self.ack(sseq, dseq, policy),
            Event::Drop { sseq } => {
                self.pending.remove(&sseq);
                self.rdc.remove(&sseq);
                self.unqueue(sseq);
                Applied::default()
            }
            Event::Exhaust { sseq } => {
                self.pending.remove(&sseq);
                self.unqueue(sseq);
                self.next_dc(sseq);
                Applied::default()
            }
            Event::Touch { sseq, ts } => {
                if let Some(p) = self.pending.get_mut(&sseq) {
                    p.ts = ts;
                }
                Applied::default()
            }
            Event::Purge { sseq } => {
                self.purge(sseq);
                Applied::default()
            }
        }
    }

    /// `deliverMsg`'s bookkeeping: the next delivery sequence, pending (with acks) or the ack
    /// floor (ack none), the redelivery count.
    fn deliver(&mut self, sseq: u64, dseq: u64, dc: u64, ts: i64, policy: AckPolicy) {
        if dseq >= self.dseq {
            self.dseq = dseq + 1;
        }
        if dc == 1 && sseq >= self.sseq {
            self.sseq = sseq + 1;
        }
        if policy == AckPolicy::None {
            self.adflr = dseq;
            self.asflr = sseq;
        } else {
            // A redelivery keeps the first delivery sequence in `pending` (nats-server's
            // trackPending only restarts the clock), which is what the ack floor follows.
            self.pending
                .entry(sseq)
                .and_modify(|p| p.ts = ts)
                .or_insert(Pending { dseq, ts });
            if dc > 1 {
                self.rdc.insert(sseq, dc - 1);
            }
        }
    }

    /// `processAckMsg` (explicit and all). Returns the stream sequences acked (for
    /// interest and workqueue retention) and whether a max_ack_pending stall may be over.
    fn ack(&mut self, sseq: u64, mut dseq: u64, policy: AckPolicy) -> Applied {
        let mut out = Applied::default();
        match policy {
            AckPolicy::Explicit => {
                if let Some(p) = self.pending.remove(&sseq) {
                    dseq = p.dseq;
                    out.was_pending = true;
                }
                if self.pending.is_empty() {
                    self.adflr = self.dseq.saturating_sub(1);
                    self.asflr = self.sseq.saturating_sub(1);
                } else if dseq == self.adflr.wrapping_add(1) {
                    self.adflr = dseq;
                    self.asflr = sseq;
                    let next = self
                        .pending
                        .range(sseq.saturating_add(1)..self.sseq.max(sseq.saturating_add(1)))
                        .next();
                    if let Some((&ss, p)) = next {
                        if p.dseq > 0 {
                            self.adflr = p.dseq - 1;
                            self.asflr = ss - 1;
                        }
                    }
                }
                // Most acks are of first deliveries: skip the hashing when nothing is there.
                if !self.rdc.is_empty() {
                    self.rdc.remove(&sseq);
                }
                self.unqueue(sseq);
                out.acked = Acked::One(sseq);
            }
            AckPolicy::All => {
                if dseq <= self.adflr || sseq <= self.asflr {
                    return out;
                }
                let from = self.asflr + 1;
                self.adflr = dseq;
                self.asflr = sseq;
                let gone: Vec<u64> = self.pending.range(from..=sseq).map(|(&s, _)| s).collect();
                out.was_pending = !gone.is_empty();
                for s in gone {
                    self.pending.remove(&s);
                    self.rdc.remove(&s);
                    self.unqueue(s);
                }
                if !self.rdc.is_empty() {
                    self.rdc.retain(|&s, _| s > sseq || s < from);
                }
                out.acked = Acked::Range(from, sseq);
            }
            AckPolicy::None => {}
        }
        out
    }

    /// nats-server's `consumer.purge`: the stream lost everything below `sseq`.
    fn purge(&mut self, sseq: u64) {
        if self.sseq < sseq {
            self.sseq = sseq;
        }
        if self.asflr < sseq {
            self.asflr = sseq - 1;
            self.adflr = self.dseq.saturating_sub(1);
        }
        self.pending.clear();
        let keep = self.sseq;
        let old: Vec<u64> = self.rdq.drain(..).collect();
        self.rdqi.clear();
        for s in old.into_iter().filter(|&s| s >= keep) {
            self.queue_redelivery(s);
        }
    }

    /// `needAck`: whether this consumer still needs `sseq` acked (interest retention).
    /// `matches` says whether the message is one of this consumer's.
    pub fn needs_ack(&self, sseq: u64, policy: AckPolicy) -> bool {
        if sseq <= self.asflr {
            return false;
        }
        match policy {
            AckPolicy::None | AckPolicy::All => true,
            AckPolicy::Explicit => sseq >= self.sseq || self.pending.contains_key(&sseq),
        }
    }

    /// Pending deliveries whose ack wait (or backoff step) has run out, oldest sequence
    /// first, and when to look again (`checkPending`). Their clocks are shifted to `now` as
    /// nats-server does, keeping their order.
    pub fn expired(&mut self, now: i64, ack_wait: i64, backoff: &[i64]) -> (Vec<u64>, Option<i64>) {
        let mut next = backoff
            .last()
            .copied()
            .unwrap_or(ack_wait.saturating_add(ACK_WAIT_DELAY));
        let mut expired = Vec::new();
        for (&seq, p) in &self.pending {
            let elapsed = now.saturating_sub(p.ts);
            let mut deadline = ack_wait;
            if !backoff.is_empty() {
                let dc = self.rdc.get(&seq).copied().unwrap_or(0) as usize;
                let (mut i, mut nbi) = (dc, dc + 1);
                if dc + 1 >= backoff.len() {
                    i = backoff.len() - 1;
                    nbi = i;
                }
                deadline = backoff[i];
                next = next.min(backoff[nbi]);
            }
            if elapsed >= deadline {
                if !self.rdqi.contains(&seq) {
                    expired.push(seq);
                }
            } else if deadline.saturating_sub(elapsed) < next {
                next = deadline.saturating_sub(elapsed);
            }
        }
        if let Some(&first) = expired.first() {
            let off = self
                .pending
                .get(&first)
                .map_or(0, |p| now.saturating_sub(p.ts));
            for &s in &expired {
                self.queue_redelivery(s);
                if let Some(p) = self.pending.get_mut(&s) {
                    p.ts = p.ts.saturating_add(off);
                }
            }
        }
        let when = (!self.pending.is_empty())
            .then(|| now.saturating_add(next.saturating_add(ACK_WAIT_DELAY)));
        (expired, when)
    }

    /// The redelivery count of `sseq` after one more delivery (`incDeliveryCount`).
    pub fn next_dc(&mut self, sseq: u64) -> u64 {
        let c = self.rdc.entry(sseq).or_insert(0);
        *c = c.saturating_add(1);
        c.saturating_add(1)
    }

    /// What `next_dc` would return, without counting the delivery.
    pub fn peek_dc(&self, sseq: u64) -> u64 {
        self.rdc.get(&sseq).map_or(2, |c| c.saturating_add(2))
    }

    /// Takes back `next_to_redeliver` + `next_dc` (the delivery could not happen).
    pub fn unredeliver(&mut self, sseq: u64) {
        if let Some(c) = self.rdc.get_mut(&sseq) {
            *c = c.saturating_sub(1);
            if *c == 0 {
                self.rdc.remove(&sseq);
            }
        }
        if self.rdqi.insert(sseq) {
            self.rdq.push_front(sseq);
        }
    }
}

/// nats-server's `ackWaitDelay`: the pending timer fires 1 ms late so a burst is handled at
/// once.
pub const ACK_WAIT_DELAY: i64 = 1_000_000;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Acked {
    #[default]
    Nothing,
    One(u64),
    /// Every stream sequence in `[from, to]` (ack all).
    Range(u64, u64),
}

/// What an applied event means for the stream and the engine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub acked: Acked,
    /// Something left `pending` (a max_ack_pending stall may be over).
    pub was_pending: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deliver(s: &mut State, sseq: u64, dc: u64, ts: i64, p: AckPolicy) -> u64 {
        let dseq = s.dseq;
        s.apply(Event::Deliver { sseq, dseq, dc, ts }, p);
        dseq
    }

    #[test]
    fn explicit_ack_floor_moves_over_contiguous_acks() {
        let p = AckPolicy::Explicit;
        let mut s = State::starting(1);
        for seq in 1..=5 {
            deliver(&mut s, seq, 1, 0, p);
        }
        s.apply(Event::Ack { sseq: 2, dseq: 2 }, p);
        assert_eq!((s.adflr, s.asflr), (0, 0));
        s.apply(Event::Ack { sseq: 1, dseq: 1 }, p);
        assert_eq!((s.adflr, s.asflr), (2, 2));
        s.apply(Event::Ack { sseq: 4, dseq: 4 }, p);
        s.apply(Event::Ack { sseq: 3, dseq: 3 }, p);
        assert_eq!((s.adflr, s.asflr), (4, 4));
        s.apply(Event::Ack { sseq: 5, dseq: 5 }, p);
        assert_eq!((s.adflr, s.asflr, s.pending.len()), (5, 5, 0));
    }

    #[test]
    fn ack_all_takes_everything_below() {
        let p = AckPolicy::All;
        let mut s = State::starting(1);
        for seq in 1..=5 {
            deliver(&mut s, seq, 1, 0, p);
        }
        let a = s.apply(Event::Ack { sseq: 3, dseq: 3 }, p);
        assert_eq!(a.acked, Acked::Range(1, 3));
        assert_eq!((s.adflr, s.asflr, s.pending.len()), (3, 3, 2));
        let a = s.apply(Event::Ack { sseq: 2, dseq: 2 }, p);
        assert_eq!(a.acked, Acked::Nothing);
    }

    #[test]
    fn expiry_queues_in_sequence_order_with_backoff() {
        let p = AckPolicy::Explicit;
        let mut s = State::starting(1);
        deliver(&mut s, 1, 1, 100, p);
        deliver(&mut s, 2, 1, 50, p);
        let (e, next) = s.expired(1000, 2000, &[]);
        assert!(e.is_empty());
        assert_eq!(next, Some(1000 + 1050 + ACK_WAIT_DELAY));
        let (e, _) = s.expired(3000, 2000, &[]);
        assert_eq!(e, vec![1, 2]);
        assert_eq!(s.next_to_redeliver(), Some(1));
        assert_eq!(s.next_dc(1), 2);
        // Backoff: the first redelivery waits backoff[1].
        let mut s = State::starting(1);
        deliver(&mut s, 1, 1, 0, p);
        let (e, _) = s.expired(10, 10, &[10, 100]);
        assert_eq!(e, vec![1]);
        s.next_to_redeliver();
        let dc = s.next_dc(1);
        deliver(&mut s, 1, dc, 10, p);
        let (e, next) = s.expired(50, 10, &[10, 100]);
        assert!(e.is_empty());
        assert_eq!(next, Some(50 + 60 + ACK_WAIT_DELAY));
    }

    #[test]
    fn needs_ack_follows_floor_and_pending() {
        let p = AckPolicy::Explicit;
        let mut s = State::starting(1);
        deliver(&mut s, 1, 1, 0, p);
        deliver(&mut s, 2, 1, 0, p);
        assert!(s.needs_ack(1, p) && s.needs_ack(2, p) && s.needs_ack(9, p));
        s.apply(Event::Ack { sseq: 2, dseq: 2 }, p);
        assert!(s.needs_ack(1, p) && !s.needs_ack(2, p));
        s.apply(Event::Ack { sseq: 1, dseq: 1 }, p);
        assert!(!s.needs_ack(1, p) && s.needs_ack(3, p));
    }
}
