//! Producer stalls: the flow control that keeps a fast publisher from burying a subscriber
//! that is merely slower, without letting a subscriber that stopped reading set everyone's pace.
//!
//! Past the water mark (`stall_water`) a consumer pauses the producer that fed it: the rest of
//! the producer's input waits and its socket is not read until the consumer drains to half
//! the mark, or STALL_MAX passes. So 1 publisher → 1 slower subscriber is paced, not cut.
//!
//! But a paused producer stops feeding everyone, so a subscriber that never reads would pause
//! it stall after stall and hand its pace (zero) to every other subscriber, until the write
//! deadline cut it. Hence the drain test: a stall that runs out while its consumer drained
//! less than `stall_drain()` marks the consumer *lagging*. A lagging consumer pauses nobody;
//! its backlog grows until max_pending cuts it off (memory stays bounded per connection, as
//! in nats-server), the write deadline does, or it catches up. It gets its right to pace
//! producers back when it drains to half the mark, or drains at the STALL_DRAIN pace over
//! a STALL_MAX window (a reader that was only descheduled for a moment). Redis never pauses
//! producers and only enforces output limits; nats-server pauses them only briefly; this
//! keeps tern's pacing for readers that read and drops it for those that do not.
//!
//! `over_water` runs where bytes are queued (`Table::queued_for`, `core/deliver.rs`);
//! `check_stalls` ends stalls at the end of each loop pass; the loop re-reads `wake`.

use super::{CloseReason, Table};
use crate::config::{STALL_DRAIN, STALL_MAX, STALL_WATER};
use std::time::Instant;

/// A producer paused because a consumer it delivered to cannot keep up.
pub struct Stall {
    producer: usize,
    producer_cid: u64,
    consumer: usize,
    consumer_cid: u64,
    /// The consumer's `written` when the stall began: what it drained is measured from here.
    written: u64,
    until: Instant,
}

/// A consumer that let a stall run out without draining: it paces no producer until it
/// catches up or drains `stall_drain()` bytes per STALL_MAX again, measured over a window
/// that starts at `since`, when its `written` was `written`.
#[derive(Clone, Copy, Debug)]
pub struct Lag {
    since: Instant,
    written: u64,
}

impl Table {
    /// Past this many unsent bytes a consumer pauses its producers (at most half of
    /// max_pending, so a small max_pending still leaves room to pace before cutting).
    #[inline]
    pub fn stall_water(&self) -> usize {
        STALL_WATER.min(self.limits.max_pending / 2)
    }

    /// Bytes a consumer must drain per STALL_MAX while behind to keep pacing its producers
    /// (scaled down with the water mark for a small max_pending).
    pub fn stall_drain(&self) -> u64 {
        (STALL_DRAIN.min(self.stall_water() / 4)).max(1) as u64
    }

    /// A consumer holds more unsent bytes than the water mark before the end-of-pass flush:
    /// write now. If it is then over max_pending it is a slow consumer; if it is still over
    /// the water mark and it keeps pace, its producer pauses. This is per message (or run),
    /// like nats-server's stall, so one pass cannot bury a consumer that is merely a little
    /// behind.
    #[cold]
    pub fn over_water(&mut self, producer: usize, consumer: usize) {
        // A lagging consumer's socket was full at its last write and WRITABLE is registered:
        // trying again for every message it is sent would be one failed syscall each.
        if !self
            .slab
            .get(consumer)
            .is_some_and(|c| c.lag.is_some() && c.want_write)
        {
            self.flush(consumer);
        }
        let Some(c) = self.slab.get(consumer).filter(|c| c.closing.is_none()) else {
            return;
        };
        if c.pending() > self.limits.max_pending {
            return self.slow_consumer(consumer, CloseReason::SlowConsumerPending);
        }
        if producer == consumer || c.pending() <= self.stall_water() || !self.keeps_pace(consumer) {
            return;
        }
        let c = &self.slab[consumer];
        let (consumer_cid, written) = (c.cid, c.written);
        let Some(p) = self
            .slab
            .get_mut(producer)
            .filter(|p| !p.stalled && p.is_client())
        else {
            return;
        };
        p.stalled = true;
        let producer_cid = p.cid;
        self.stalls.push(Stall {
            producer,
            producer_cid,
            consumer,
            consumer_cid,
            written,
            until: self.now + STALL_MAX,
        });
    }

    /// Whether `consumer` may pause its producers: yes unless it is lagging. A lagging one
    /// gets the right back once it drained `stall_drain()` bytes within STALL_MAX, or
    /// at that average pace over a longer window; otherwise a new window starts.
    fn keeps_pace(&mut self, consumer: usize) -> bool {
        let (now, need) = (self.now, self.stall_drain());
        let c = &mut self.slab[consumer];
        let Some(lag) = c.lag else {
            return true;
        };
        let drained = c.written - lag.written;
        let elapsed = now.saturating_duration_since(lag.since);
        let paced = if elapsed <= STALL_MAX {
            drained >= need
        } else {
            drained as u128 * STALL_MAX.as_nanos() >= need as u128 * elapsed.as_nanos()
        };
        if paced {
            c.lag = None;
        } else if elapsed > STALL_MAX {
            c.lag = Some(Lag {
                since: now,
                written: c.written,
            });
        }
        paced
    }

    /// Ends the stalls whose consumer drained (below half the water mark), went away, turned
    /// out to be lagging, or that lasted long enough; the producers are read again. A stall
    /// that ran out while its consumer drained less than `stall_drain()` marks it lagging.
    pub fn check_stalls(&mut self) {
        if self.stalls.is_empty() {
            return;
        }
        let (now, low_water, need) = (self.now, self.stall_water() / 2, self.stall_drain());
        let mut stalls = std::mem::take(&mut self.stalls);
        stalls.retain(|s| {
            let consumer = self
                .slab
                .get_mut(s.consumer)
                .filter(|c| c.cid == s.consumer_cid && c.closing.is_none());
            if let Some(c) = consumer.filter(|c| c.pending() > low_water && c.lag.is_none()) {
                if now < s.until {
                    return true;
                }
                if c.written - s.written < need {
                    c.lag = Some(Lag {
                        since: now,
                        written: c.written,
                    });
                }
            }
            if let Some(p) = self.slab.get_mut(s.producer) {
                if p.cid == s.producer_cid {
                    p.stalled = false;
                    self.wake.push(s.producer);
                }
            }
            false
        });
        self.stalls = stalls;
    }

    /// When the earliest stall runs out, if any.
    pub fn next_stall_end(&self) -> Option<Instant> {
        self.stalls.iter().map(|s| s.until).min()
    }
}

#[cfg(test)]
mod tests {
    use super::super::timers::tests::World;
    use super::*;
    use crate::config::Config;
    use std::io::Read;
    use std::net::TcpStream;
    use std::time::Duration;

    /// A table with a producer and a consumer connection; the consumer's peer socket is
    /// returned unread, so the consumer's output backs up.
    fn pair() -> (World, usize, usize, TcpStream) {
        let mut w = World::new(&Config::default());
        let producer = w.client();
        let consumer = w.client();
        let peer = w.peers.pop().unwrap();
        (w, producer, consumer, peer)
    }

    /// Queues output for `consumer` until its socket refuses bytes and more than the water
    /// mark is left unsent, then reports it over water on behalf of `producer`.
    fn back_up(b: &mut Table, producer: usize, consumer: usize) {
        let chunk = vec![b'x'; 256 * 1024];
        while !b[consumer].want_write || b[consumer].pending() <= b.stall_water() {
            b[consumer].out.extend_from_slice(&chunk);
            b.flush(consumer);
        }
        b.over_water(producer, consumer);
    }

    /// A consumer that drains nothing during a stall paces nobody afterwards: the producer
    /// is read again and later deliveries to the consumer do not pause it.
    #[test]
    fn a_consumer_that_does_not_drain_stops_pacing() {
        let (mut w, p, c, _peer) = pair();
        let b = &mut w.table;
        back_up(b, p, c);
        assert!(
            b[p].stalled,
            "a consumer over the water mark pauses its producer"
        );
        b.now += Duration::from_millis(100);
        b.check_stalls();
        assert!(
            b[p].stalled,
            "the stall lasts while the consumer may still drain"
        );
        b.now += STALL_MAX;
        b.check_stalls();
        assert!(!b[p].stalled && b.wake == vec![p]);
        assert!(b[c].lag.is_some(), "it drained nothing: lagging");
        b[c].out.extend_from_slice(&[b'y'; 4096]);
        b.over_water(p, c);
        assert!(!b[p].stalled, "a lagging consumer pauses nobody");
        assert!(
            b[c].closing.is_none(),
            "below max_pending it stays connected"
        );
    }

    /// The peer reads until the consumer's socket took the minimum drain more.
    fn drain(b: &mut Table, c: usize, peer: &mut TcpStream) {
        let (start, n) = (b[c].written, b.stall_drain());
        let mut buf = vec![0u8; 64 * 1024];
        peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        while b[c].written - start < n {
            assert!(peer.read(&mut buf).unwrap() > 0);
            b.flush(c);
        }
    }

    /// A consumer that drains at the minimum pace during a stall keeps pacing its producer
    /// (a slow reader is paced, not cut), and a lagging one that starts reading again does too.
    #[test]
    fn a_consumer_that_drains_keeps_pacing() {
        let (mut w, p, c, mut peer) = pair();
        let b = &mut w.table;
        back_up(b, p, c);
        drain(b, c, &mut peer);
        b.now += STALL_MAX;
        b.check_stalls();
        assert!(b[c].lag.is_none(), "it drained enough to keep pacing");
        assert!(!b[p].stalled);
        back_up(b, p, c);
        assert!(b[p].stalled, "paced again");
        b.now += STALL_MAX;
        b.check_stalls();
        assert!(b[c].lag.is_some() && !b[p].stalled);
        // The reader comes back: once it drained the minimum, it paces its producer again.
        drain(b, c, &mut peer);
        b.now += Duration::from_millis(10);
        back_up(b, p, c);
        assert!(b[c].lag.is_none() && b[p].stalled);
    }
}
