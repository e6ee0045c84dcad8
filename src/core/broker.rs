//! The loop's shared state and its bookkeeping: connections, the subject index, counters,
//! the dirty list, closing and timers (producer stalls: stall.rs).
//!
//! Everything here runs on the loop thread between two polls. Handlers append output and
//! mark connections dirty; `flush_dirty` writes each dirty connection once at the end of the
//! pass. Limits are checked where bytes are queued (`queue`), and an offending connection is
//! only marked closing there; `reap` frees it after the pass, never in the middle of a fan-out.
//!
//! Timers: each connection keeps one live entry in a min-heap keyed by its earliest deadline
//! (auth timeout, next PING, write deadline). Stale entries are skipped when popped, so moving
//! a deadline never needs a heap search.

use crate::config::{Config, FIRST_PING_INTERVAL, GLOBAL_ACCOUNT, SYSTEM_ACCOUNT};
use crate::conn::{CloseReason, Conn, Kind};
use crate::protocol::wire::{self, WireErr};
use crate::subject::sublist::{SubId, Sublist};

/// A subject namespace: messages never cross from one account to another.
pub struct Account {
    pub name: String,
    pub sublist: Sublist,
    /// Local interest as routes see it: `subject` or `subject queue` -> number of local
    /// subscriptions (kept only when clustering is on; see route/interest.rs).
    pub interest: crate::util::hash::FastMap<Box<[u8]>, u32>,
}
use log::{debug, error, info};
use mio::{Interest, Registry, Token};
use slab::Slab;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant, SystemTime};

/// Closed connections remembered for monitoring (nats-server: DEFAULT_MAX_CLOSED_CLIENTS).
const MAX_CLOSED: usize = 10_000;

/// How often the round trip is re-measured with a PING even on a busy connection.
const RTT_INTERVAL: Duration = Duration::from_secs(3600);

/// Server-wide counters, read by monitoring.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    pub in_msgs: u64,
    pub in_bytes: u64,
    pub out_msgs: u64,
    pub out_bytes: u64,
    pub slow_consumers: u64,
    pub total_connections: u64,
}

/// Identity of this server, fixed at start.
pub struct Identity {
    pub id: String,
    pub name: String,
    pub host: String,
    pub port: u16,
    pub started: SystemTime,
    /// Where clients can reach this server (INFO `connect_urls`).
    pub client_urls: Vec<String>,
}

pub struct Broker {
    pub cfg: Config,
    pub ident: Identity,
    pub conns: Slab<Conn>,
    /// `$G`, `$SYS`, then the configured accounts; indexes never change while running.
    pub accounts: Vec<Account>,
    pub stats: Stats,
    /// The time of the current loop pass.
    pub now: Instant,
    pub registry: Registry,
    /// Trace logging is on (checked before formatting anything on the message path).
    pub trace: bool,
    /// In lame-duck mode: INFO carries `ldm: true`.
    pub lame_duck: bool,
    /// Connections with output to write at the end of this pass.
    pub dirty: Vec<usize>,
    /// Bytes queued since the last `flush_dirty` (see `FLUSH_AT`).
    pub queued: usize,
    /// Connections to free at the end of this pass.
    closing: Vec<usize>,
    timers: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    /// Producers paused on a consumer (see stall.rs).
    pub(crate) stalls: Vec<crate::conn::stall::Stall>,
    /// Clustering state, when `--cluster`/`cluster {}` is on.
    pub cluster: Option<crate::cluster::Cluster>,
    /// The most recently closed client connections, for /connz?state=closed (shared with
    /// the /connz pages being rendered).
    pub closed: std::collections::VecDeque<std::rc::Rc<crate::monitor::ConnInfo>>,
    /// Producers whose stall ended: the loop reads them again.
    pub wake: Vec<usize>,
    /// The current message's MSG line parts (reused per message).
    pub msg_head: crate::core::deliver::MsgHead,
    /// Routes a message goes to, with the queue groups picked there (reused per message).
    pub route_targets: Vec<(usize, Vec<u8>)>,
    /// Auto-unsubscribes reached during a fan-out, applied after it.
    pub unsub_later: Vec<SubId>,
    /// Payload ranges of the PUB run being gathered (`client::process`), kept for its capacity.
    pub run: Vec<std::ops::Range<usize>>,
    pub next_cid: u64,
    /// Client connections open (closing ones included until freed).
    pub clients: usize,
    rng: u64,
}

impl Broker {
    pub fn new(cfg: Config, ident: Identity, registry: Registry) -> Broker {
        let mut b = Broker {
            cfg,
            ident,
            conns: Slab::new(),
            accounts: Vec::new(),
            stats: Stats::default(),
            now: Instant::now(),
            registry,
            trace: log::log_enabled!(log::Level::Trace),
            lame_duck: false,
            dirty: Vec::new(),
            queued: 0,
            closing: Vec::new(),
            timers: BinaryHeap::new(),
            stalls: Vec::new(),
            wake: Vec::new(),
            cluster: None,
            closed: std::collections::VecDeque::new(),
            msg_head: Default::default(),
            route_targets: Vec::new(),
            unsub_later: Vec::new(),
            run: Vec::new(),
            next_cid: 1,
            clients: 0,
            rng: crate::util::hash::random_seed(),
        };
        b.sync_accounts();
        b
    }

    /// Makes sure every configured account exists (`$G` first). Accounts are never removed
    /// while running, so indexes held by connections stay valid across a reload.
    pub fn sync_accounts(&mut self) {
        let builtin = [GLOBAL_ACCOUNT.to_string(), SYSTEM_ACCOUNT.to_string()];
        let names = builtin.into_iter().chain(self.cfg.accounts.iter().cloned());
        for name in names.collect::<Vec<_>>() {
            if !self.accounts.iter().any(|a| a.name == name) {
                self.accounts.push(Account {
                    name,
                    sublist: Sublist::new(),
                    interest: crate::util::hash::new_map(),
                });
            }
        }
    }

    /// The index of the account called `name` (`""` is `$G`).
    pub fn account_index(&self, name: &str) -> Option<usize> {
        if name.is_empty() {
            return Some(0);
        }
        self.accounts.iter().position(|a| a.name == name)
    }

    /// Subscriptions across all accounts.
    pub fn sub_count(&self) -> usize {
        self.accounts.iter().map(|a| a.sublist.count()).sum()
    }

    /// A cheap pseudo-random number (xorshift) for queue picks and ping jitter.
    pub fn rand(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }

    /// When the first PING goes to a new connection: soon, to measure RTT, with jitter.
    pub fn first_ping_at(&mut self) -> Instant {
        let d = self
            .cfg
            .ping_interval
            .min(crate::config::FIRST_PING_INTERVAL);
        let jitter = (d.as_nanos() as u64 / 5).max(1);
        self.now + d + Duration::from_nanos(self.rand() % jitter)
    }

    /// Appends protocol bytes for connection `t` (nothing if it is closing).
    pub fn queue(&mut self, t: usize, bytes: &[u8]) {
        let Some(c) = self.conns.get_mut(t) else {
            return;
        };
        if c.closing.is_some() {
            return;
        }
        c.out.extend_from_slice(bytes);
        self.after_queue(t);
    }

    /// Bookkeeping after bytes were appended to `t`'s buffer (by `t`'s own protocol replies).
    #[inline]
    pub fn after_queue(&mut self, t: usize) {
        self.queued_for(t, t);
    }

    /// Bookkeeping after `producer`'s message was appended to `consumer`'s buffer: the dirty
    /// list, and past the stall water mark (at most half of max_pending) the slow path.
    #[inline]
    pub fn queued_for(&mut self, producer: usize, consumer: usize) {
        let c = &mut self.conns[consumer];
        if !c.dirty {
            c.dirty = true;
            self.dirty.push(consumer);
        }
        if c.pending() > self.stall_water() {
            self.over_water(producer, consumer);
        }
    }

    pub fn slow_consumer(&mut self, t: usize, why: CloseReason) {
        let c = &mut self.conns[t];
        if c.closing.is_some() {
            return;
        }
        self.stats.slow_consumers += 1;
        match why {
            CloseReason::SlowConsumerDeadline => info!(
                "{} - Slow Consumer Detected: WriteDeadline of {:?} exceeded with {} chunks of {} total bytes.",
                c.label(),
                self.cfg.write_deadline,
                1,
                c.pending()
            ),
            _ => info!(
                "{} - Slow Consumer Detected: MaxPending of {} Exceeded",
                c.label(),
                self.cfg.max_pending
            ),
        }
        c.drop_output();
        self.close(t, why);
    }

    /// Sends `-ERR '<text>'` and closes the connection if the error says so.
    pub fn send_err(&mut self, t: usize, err: WireErr, reason: CloseReason) {
        self.send_err_text(t, err.text);
        if err.closes {
            self.close(t, reason);
        }
    }

    pub fn send_err_text(&mut self, t: usize, text: &str) {
        if self.trace {
            if let Some(c) = self.conns.get(t) {
                log::trace!("{} - ->> [-ERR '{}']", c.label(), text);
            }
        }
        let mut line = Vec::with_capacity(text.len() + 9);
        wire::write_err(&mut line, text);
        self.queue(t, &line);
    }

    /// Marks a connection closing; it is freed by `reap` at the end of the pass.
    pub fn close(&mut self, t: usize, reason: CloseReason) {
        let Some(c) = self.conns.get_mut(t) else {
            return;
        };
        if c.closing.is_some() {
            return;
        }
        c.closing = Some(reason);
        self.closing.push(t);
    }

    /// Writes out every connection that got output this pass.
    pub fn flush_dirty(&mut self) {
        self.queued = 0;
        let mut dirty = std::mem::take(&mut self.dirty);
        for &t in &dirty {
            if let Some(c) = self.conns.get_mut(t) {
                c.dirty = false;
                if c.closing.is_none() {
                    self.flush(t);
                }
            }
        }
        dirty.clear();
        if self.dirty.is_empty() {
            self.dirty = dirty;
        }
    }

    /// Writes what the socket takes, and keeps WRITABLE interest only while bytes remain.
    pub fn flush(&mut self, t: usize) {
        let (now, low_water) = (self.now, self.stall_water() / 2);
        let Some(c) = self.conns.get_mut(t) else {
            return;
        };
        let done = match c.flush(now) {
            Ok(done) => done,
            Err(e) => {
                debug!("{} - Error flushing: {}", c.label(), e);
                c.drop_output();
                self.close(t, CloseReason::WriteError);
                return;
            }
        };
        if c.lag.is_some() && c.pending() <= low_water {
            // A lagging consumer that caught up paces its producers again (stall.rs).
            c.lag = None;
        }
        if done == c.want_write {
            let interest = if done {
                Interest::READABLE
            } else {
                Interest::READABLE | Interest::WRITABLE
            };
            if self
                .registry
                .reregister(&mut c.sock, Token(t), interest)
                .is_err()
            {
                self.close(t, CloseReason::WriteError);
                return;
            }
            c.want_write = !done;
            if !done {
                // The socket refused bytes: the write deadline runs from now.
                c.last_write = now;
            }
        }
        if !done {
            self.schedule(t);
        }
    }

    /// The earliest thing the loop must wake up for, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        let timer = self.timers.peek().map(|Reverse((at, _, _))| *at);
        let stall = self.next_stall_end();
        match (timer, stall) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Makes sure the connection's earliest deadline is in the timer heap.
    pub fn schedule(&mut self, t: usize) {
        let wd = self.cfg.write_deadline;
        let Some(c) = self.conns.get_mut(t) else {
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
            self.timers.push(Reverse((due, t, c.cid)));
        }
    }

    /// Runs every connection timer that is due.
    pub fn fire_timers(&mut self) {
        while let Some(&Reverse((at, t, cid))) = self.timers.peek() {
            if at > self.now {
                break;
            }
            self.timers.pop();
            match self.conns.get_mut(t) {
                Some(c) if c.cid == cid && c.timer_at == Some(at) => c.timer_at = None,
                _ => continue,
            }
            self.on_timer(t);
            if self.conns.get(t).is_some_and(|c| c.closing.is_none()) {
                self.schedule(t);
            }
        }
    }

    fn on_timer(&mut self, t: usize) {
        let now = self.now;
        let c = &mut self.conns[t];
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
        if c.want_write && now >= c.last_write + self.cfg.write_deadline {
            self.slow_consumer(t, CloseReason::SlowConsumerDeadline);
            return;
        }
        if c.next_ping <= now {
            c.next_ping = now + self.cfg.ping_interval;
            self.ping_timer(t);
        }
    }

    /// PINGs an idle connection; too many unanswered PINGs make it stale.
    fn ping_timer(&mut self, t: usize) {
        let c = &mut self.conns[t];
        // A quiet connection gives its write buffer back (see OUT_KEEP).
        if c.pending() == 0
            && self.now.saturating_duration_since(c.last_write)
                >= self.cfg.ping_interval.min(FIRST_PING_INTERVAL)
        {
            c.drop_output();
        }
        let idle_for = self
            .now
            .saturating_duration_since(c.last_activity.max(c.last_ping_in));
        // Like nats-server, the first PING always goes out: it measures the round trip.
        let need_rtt = c
            .last_ping_sent
            .is_none_or(|at| self.now.saturating_duration_since(at) > RTT_INTERVAL);
        if c.connected && idle_for < self.cfg.ping_interval && !need_rtt {
            debug!(
                "{} - Delaying PING due to client activity {:?} ago",
                c.label(),
                idle_for
            );
            return;
        }
        if c.pings_out + 1 > self.cfg.max_pings_out {
            debug!("{} - Stale Client Connection - Closing", c.label());
            self.send_err(t, wire::ERR_STALE, CloseReason::StaleConnection);
            return;
        }
        c.pings_out += 1;
        c.last_ping_sent = Some(self.now);
        if self.trace {
            log::trace!("{} - ->> [PING]", c.label());
        }
        self.queue(t, wire::PING);
    }

    /// A PONG answers our PINGs: none are outstanding, and the round trip is measured.
    pub fn on_pong(&mut self, t: usize) {
        let c = &mut self.conns[t];
        c.pings_out = 0;
        if let Some(at) = c.last_ping_sent {
            c.rtt = self.now.saturating_duration_since(at);
        }
    }

    /// Frees every connection marked closing this pass.
    pub fn reap(&mut self) {
        while let Some(t) = self.closing.pop() {
            self.free(t);
        }
    }

    fn free(&mut self, t: usize) {
        let Some(mut c) = self.conns.try_remove(t) else {
            return;
        };
        if c.kind == Kind::Client {
            self.clients -= 1;
        }
        let reason = c.closing.unwrap_or(CloseReason::ServerShutdown);
        if !reason.skips_flush() {
            let _ = c.flush(self.now);
        }
        // Read what the peer already sent, so closing sends FIN rather than RST and the
        // client gets to read our last -ERR.
        let mut sink = [0u8; 4096];
        for _ in 0..16 {
            match std::io::Read::read(&mut c.sock, &mut sink) {
                Ok(n) if n > 0 => {}
                _ => break,
            }
        }
        let _ = self.registry.deregister(&mut c.sock);
        if c.kind == Kind::Client {
            let mut info = crate::monitor::snapshot(self, &c, true);
            info.stop = Some(SystemTime::now());
            info.reason = Some(reason.as_str());
            if self.closed.len() >= MAX_CLOSED {
                self.closed.pop_front();
            }
            self.closed.push_back(std::rc::Rc::new(info));
        }
        for (_, id) in c.subs.drain() {
            if let Some(sub) = self.accounts[c.account].sublist.remove(id) {
                self.interest_changed(c.account, &sub.subject, sub.queue.as_deref(), -1);
            }
        }
        if c.kind == Kind::Route {
            info!(
                "{} - Router connection closed: {}",
                c.label(),
                reason.as_str()
            );
            self.route_closed(t, &mut c);
            return;
        }
        debug!(
            "{} - Client connection closed: {}",
            c.label(),
            reason.as_str()
        );
    }

    /// Closes every connection (shutdown), flushing what can be flushed without waiting.
    pub fn close_all(&mut self) {
        let all: Vec<usize> = self.conns.iter().map(|(t, _)| t).collect();
        for t in all {
            self.close(t, CloseReason::ServerShutdown);
        }
        self.reap();
    }

    /// Removes one of `t`'s subscriptions from the index and from the connection.
    pub fn remove_sub(&mut self, t: usize, id: SubId) {
        let Some(c) = self.conns.get_mut(t) else {
            return;
        };
        let acc = c.account;
        if let Some(sub) = self.accounts[acc].sublist.remove(id) {
            c.subs.remove(&sub.sid);
            self.interest_changed(acc, &sub.subject, sub.queue.as_deref(), -1);
        }
    }

    /// Applies the auto-unsubscribes that a fan-out in account `acc` reached.
    pub fn apply_unsubs(&mut self, acc: usize) {
        while let Some(id) = self.unsub_later.pop() {
            if let Some(owner) = self.accounts[acc].sublist.get(id).map(|s| s.conn) {
                if let Some(c) = self.conns.get(owner) {
                    debug!("{} - Auto-unsubscribe limit reached", c.label());
                }
                self.remove_sub(owner, id);
            }
        }
    }

    pub fn log_error(&self, t: usize, what: &str) {
        if let Some(c) = self.conns.get(t) {
            error!("{} - {}", c.label(), what);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    /// A broker with one accepted client connection (and the peer's socket).
    fn broker_with_client(cfg: Config) -> (Broker, usize, TcpStream, mio::Poll) {
        let poll = mio::Poll::new().unwrap();
        let ident = Identity {
            id: "NTEST".into(),
            name: "test".into(),
            host: "127.0.0.1".into(),
            port: 4222,
            started: SystemTime::now(),
            client_urls: Vec::new(),
        };
        let mut b = Broker::new(cfg, ident, poll.registry().try_clone().unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (sock, addr) = listener.accept().unwrap();
        sock.set_nonblocking(true).unwrap();
        let t = b
            .add_client(mio::net::TcpStream::from_std(sock), addr)
            .unwrap();
        b.flush_dirty();
        (b, t, peer, poll)
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
        let (mut b, t, _peer, _poll) = broker_with_client(cfg);
        b.now += Duration::from_secs(30);
        b.conns[t].last_write = b.now - Duration::from_secs(20);
        b.queue(t, wire::PONG);
        // Make the connection's timer due in this very pass.
        b.timers.push(Reverse((b.now, t, b.conns[t].cid)));
        b.conns[t].timer_at = Some(b.now);
        b.fire_timers();
        assert!(
            b.conns[t].closing.is_none(),
            "cut as a slow consumer: {:?}",
            b.conns[t].closing
        );
        b.flush_dirty();
        assert_eq!(b.conns[t].pending(), 0);
    }

    /// Bytes the socket refused do count: no progress for the write deadline is slow.
    #[test]
    fn refused_output_past_the_deadline_is_a_slow_consumer() {
        let cfg = Config {
            write_deadline: Duration::from_secs(1),
            max_pending: 1 << 30,
            ..Config::default()
        };
        let (mut b, t, _peer, _poll) = broker_with_client(cfg);
        // The peer never reads: fill its socket until a flush leaves bytes behind.
        let chunk = vec![b'x'; 1 << 20];
        while !b.conns[t].want_write {
            b.queue(t, &chunk);
            b.flush_dirty();
        }
        b.now += Duration::from_secs(2);
        b.fire_timers();
        assert_eq!(b.conns[t].closing, Some(CloseReason::SlowConsumerDeadline));
        assert_eq!(b.stats.slow_consumers, 1);
    }
}
