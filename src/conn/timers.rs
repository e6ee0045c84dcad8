//! Connection timers: the auth timeout, PINGs (and stale connections), the write deadline.
//!
//! Each connection keeps one live entry in a min-heap keyed by its earliest deadline. Stale
//! entries are skipped when popped (the connection's `timer_at` no longer matches, or the
//! token now holds another connection), so moving a deadline never needs a heap search.

use super::{CloseReason, Table};
use crate::config::FIRST_PING_INTERVAL;
use crate::protocol::wire;
use crate::util::logger;
use log::debug;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// How often the round trip is re-measured with a PING even on a busy connection.
const RTT_INTERVAL: Duration = Duration::from_secs(3600);

/// The heap of (deadline, token, cid), earliest first.
#[derive(Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(Instant, usize, u64)>>,
}

impl Timers {
    pub fn push(&mut self, at: Instant, t: usize, cid: u64) {
        self.heap.push(Reverse((at, t, cid)));
    }

    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }
}

impl Table {
    /// The earliest thing the connections need the loop to wake up for, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        let timer = self.timers.next();
        let stall = self.next_stall_end();
        match (timer, stall) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Makes sure the connection's earliest deadline is in the timer heap.
    pub fn schedule(&mut self, t: usize) {
        let wd = self.limits.write_deadline;
        let Some(c) = self.slab.get_mut(t) else {
            return;
        };
        let mut due = c.next_ping;
        if let Some(a) = c.auth_deadline {
            due = due.min(a);
        }
        if c.want_write {
            due = due.min(c.last_write + wd);
        }
        if c.timer_at.is_none_or(|at| due < at) {
            c.timer_at = Some(due);
            self.timers.push(due, t, c.cid);
        }
    }

    /// Runs every connection timer that is due.
    pub fn fire_timers(&mut self) {
        while let Some(&Reverse((at, t, cid))) = self.timers.heap.peek() {
            if at > self.now {
                break;
            }
            self.timers.heap.pop();
            match self.slab.get_mut(t) {
                Some(c) if c.cid == cid && c.timer_at == Some(at) => c.timer_at = None,
                _ => continue,
            }
            self.on_timer(t);
            if self.slab.get(t).is_some_and(|c| c.closing.is_none()) {
                self.schedule(t);
            }
        }
    }

    fn on_timer(&mut self, t: usize) {
        let (now, limits) = (self.now, self.limits);
        let c = &mut self.slab[t];
        if c.closing.is_some() {
            return;
        }
        if c.auth_deadline.is_some_and(|a| a <= now) {
            c.auth_deadline = None;
            debug!("{} - Authentication Timeout", c.label());
            self.send_err(t, wire::ERR_AUTH_TIMEOUT, CloseReason::AuthTimeout);
            return;
        }
        // Only bytes a flush could not write count: output queued in this pass has not been
        // offered to the socket yet.
        if c.want_write && now >= c.last_write + limits.write_deadline {
            self.slow_consumer(t, CloseReason::SlowConsumerDeadline);
            return;
        }
        if c.next_ping <= now {
            c.next_ping = now + limits.ping_interval;
            self.ping_timer(t);
        }
    }

    /// PINGs an idle connection; too many unanswered PINGs make it stale.
    fn ping_timer(&mut self, t: usize) {
        let (now, limits) = (self.now, self.limits);
        let c = &mut self.slab[t];
        // A quiet connection gives its write buffer back (see OUT_KEEP).
        if c.pending() == 0
            && now.saturating_duration_since(c.last_write)
                >= limits.ping_interval.min(FIRST_PING_INTERVAL)
        {
            c.drop_output();
        }
        let idle_for = now.saturating_duration_since(c.last_activity.max(c.last_ping_in));
        // Like nats-server, the first PING always goes out: it measures the round trip.
        let need_rtt = c
            .last_ping_sent
            .is_none_or(|at| now.saturating_duration_since(at) > RTT_INTERVAL);
        if c.connected && idle_for < limits.ping_interval && !need_rtt {
            debug!(
                "{} - Delaying PING due to client activity {:?} ago",
                c.label(),
                idle_for
            );
            return;
        }
        if c.pings_out + 1 > limits.max_pings_out {
            debug!("{} - Stale Client Connection - Closing", c.label());
            self.send_err(t, wire::ERR_STALE, CloseReason::StaleConnection);
            return;
        }
        c.pings_out += 1;
        c.last_ping_sent = Some(now);
        if logger::trace_on() {
            log::trace!("{} - ->> [PING]", c.label());
        }
        self.queue(t, wire::PING);
    }

    /// A PONG answers our PINGs: none are outstanding, and the round trip is measured.
    pub fn on_pong(&mut self, t: usize) {
        let now = self.now;
        let c = &mut self.slab[t];
        c.pings_out = 0;
        if let Some(at) = c.last_ping_sent {
            c.rtt = now.saturating_duration_since(at);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::table::Limits;
    use super::super::Kind;
    use super::*;
    use crate::config::Config;
    use std::net::{TcpListener, TcpStream};

    /// A table of accepted client connections, and the peers' sockets.
    pub(crate) struct World {
        pub table: Table,
        listener: TcpListener,
        pub peers: Vec<TcpStream>,
        _poll: mio::Poll,
    }

    impl World {
        pub(crate) fn new(cfg: &Config) -> World {
            let poll = mio::Poll::new().unwrap();
            let table = Table::new(poll.registry().try_clone().unwrap(), Limits::of(cfg));
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            World {
                table,
                listener,
                peers: Vec::new(),
                _poll: poll,
            }
        }

        /// A new client connection (its peer is kept, unread, in `peers`).
        pub(crate) fn client(&mut self) -> usize {
            self.peers
                .push(TcpStream::connect(self.listener.local_addr().unwrap()).unwrap());
            let (sock, addr) = self.listener.accept().unwrap();
            sock.set_nonblocking(true).unwrap();
            let sock = mio::net::TcpStream::from_std(sock);
            let t = self.table.add(sock, addr, Kind::Client).unwrap();
            self.table.flush_dirty();
            t
        }
    }

    /// Bytes queued in the current pass have not been offered to the socket yet, so they do
    /// not count against the write deadline, however long ago the last write was. (A
    /// publisher was once cut as a "slow consumer" for its own PONG: its timer fired in the
    /// pass that queued the PONG, ten quiet seconds after its previous write.)
    #[test]
    fn unflushed_output_is_not_a_write_deadline_miss() {
        let cfg = Config {
            write_deadline: Duration::from_secs(1),
            ..Config::default()
        };
        let mut w = World::new(&cfg);
        let t = w.client();
        let b = &mut w.table;
        b.now += Duration::from_secs(30);
        b[t].last_write = b.now - Duration::from_secs(20);
        b.queue(t, wire::PONG);
        // Make the connection's timer due in this very pass.
        let (now, cid) = (b.now, b[t].cid);
        b.timers.push(now, t, cid);
        b[t].timer_at = Some(now);
        b.fire_timers();
        assert!(
            b[t].closing.is_none(),
            "cut as a slow consumer: {:?}",
            b[t].closing
        );
        b.flush_dirty();
        assert_eq!(b[t].pending(), 0);
    }

    /// Bytes the socket refused do count: no progress for the write deadline is slow.
    #[test]
    fn refused_output_past_the_deadline_is_a_slow_consumer() {
        let cfg = Config {
            write_deadline: Duration::from_secs(1),
            max_pending: 1 << 30,
            ..Config::default()
        };
        let mut w = World::new(&cfg);
        let t = w.client();
        let b = &mut w.table;
        // The peer never reads: fill its socket until a flush leaves bytes behind.
        let chunk = vec![b'x'; 1 << 20];
        while !b[t].want_write {
            b.queue(t, &chunk);
            b.flush_dirty();
        }
        b.now += Duration::from_secs(2);
        b.fire_timers();
        assert_eq!(b[t].closing, Some(CloseReason::SlowConsumerDeadline));
        assert_eq!(b.slow_consumers, 1);
    }
}
