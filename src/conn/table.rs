//! The table of connections: every NATS connection (clients and routes) in one slab, keyed
//! by its poll token, and the bookkeeping around writing to them.
//!
//! Everything here runs on the loop thread between two polls. Handlers append output with
//! `queue` (or directly, followed by `after_queue`) and the connection goes on the dirty
//! list; `flush_dirty` writes each dirty connection once at the end of the pass. Limits are
//! checked where bytes are queued, and an offending connection is only marked closing there
//! (`close`); the core frees it after the pass (`take`), never in the middle of a fan-out.

use super::close::ClosedLog;
use super::io::ReadOutcome;
use super::stall::Stall;
use super::timers::Timers;
use super::{CloseReason, Conn, Kind};
use crate::config::Config;
use crate::protocol::wire::{self, WireErr};
use crate::util::logger;
use log::{debug, error, info};
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use slab::Slab;
use std::net::SocketAddr;
use std::ops::{Index, IndexMut};
use std::time::{Duration, Instant};

/// The settings the connection mechanics enforce, taken from the config at start and on
/// every reload (`Limits::of`), so this folder needs nothing else of it.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_pending: usize,
    pub write_deadline: Duration,
    pub ping_interval: Duration,
    pub max_pings_out: u32,
}

impl Limits {
    pub fn of(cfg: &Config) -> Limits {
        Limits {
            max_pending: cfg.max_pending,
            write_deadline: cfg.write_deadline,
            ping_interval: cfg.ping_interval,
            max_pings_out: cfg.max_pings_out,
        }
    }
}

pub struct Table {
    /// The connections; a connection's poll token is its key here.
    pub slab: Slab<Conn>,
    pub registry: Registry,
    /// The time of the current loop pass (set by the loop after each poll).
    pub now: Instant,
    pub limits: Limits,
    /// Connections with output to write at the end of this pass.
    pub dirty: Vec<usize>,
    /// Bytes queued since the last `flush_dirty` (see `FLUSH_AT`).
    pub queued: usize,
    /// Connections to free at the end of this pass.
    closing: Vec<usize>,
    pub(super) timers: Timers,
    /// Producers paused on a consumer (stall.rs).
    pub(super) stalls: Vec<Stall>,
    /// Producers whose stall ended: the loop reads them again.
    pub wake: Vec<usize>,
    /// The most recently closed client connections (/connz?state=closed).
    pub closed: ClosedLog,
    /// Client connections open (closing ones included until freed).
    pub clients: usize,
    /// Route connections (a few), in token order like the slab: what goes to every route is
    /// sent along this list.
    pub routes: Vec<usize>,
    /// Connections cut off as slow consumers, ever (/varz `slow_consumers`).
    pub slow_consumers: u64,
    next_cid: u64,
}

impl Index<usize> for Table {
    type Output = Conn;
    #[inline]
    fn index(&self, t: usize) -> &Conn {
        &self.slab[t]
    }
}

impl IndexMut<usize> for Table {
    #[inline]
    fn index_mut(&mut self, t: usize) -> &mut Conn {
        &mut self.slab[t]
    }
}

impl Table {
    pub fn new(registry: Registry, limits: Limits) -> Table {
        Table {
            slab: Slab::new(),
            registry,
            now: Instant::now(),
            limits,
            dirty: Vec::new(),
            queued: 0,
            closing: Vec::new(),
            timers: Timers::default(),
            stalls: Vec::new(),
            wake: Vec::new(),
            closed: ClosedLog::default(),
            clients: 0,
            routes: Vec::new(),
            slow_consumers: 0,
            next_cid: 1,
        }
    }

    #[inline]
    pub fn get(&self, t: usize) -> Option<&Conn> {
        self.slab.get(t)
    }

    #[inline]
    pub fn get_mut(&mut self, t: usize) -> Option<&mut Conn> {
        self.slab.get_mut(t)
    }

    pub fn contains(&self, t: usize) -> bool {
        self.slab.contains(t)
    }

    pub fn iter(&self) -> slab::Iter<'_, Conn> {
        self.slab.iter()
    }

    pub fn len(&self) -> usize {
        self.slab.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slab.is_empty()
    }

    /// Takes in a connected socket: `TCP_NODELAY`, READABLE interest, the next connection id.
    pub fn add(
        &mut self,
        mut sock: TcpStream,
        addr: SocketAddr,
        kind: Kind,
    ) -> std::io::Result<usize> {
        let _ = sock.set_nodelay(true);
        let entry = self.slab.vacant_entry();
        let t = entry.key();
        self.registry
            .register(&mut sock, Token(t), Interest::READABLE)?;
        let cid = self.next_cid;
        self.next_cid += 1;
        match kind {
            Kind::Client => self.clients += 1,
            Kind::Route(_) => {
                let at = self.routes.partition_point(|&r| r < t);
                self.routes.insert(at, t);
            }
        }
        entry.insert(Conn::new(sock, kind, cid, addr, self.now));
        Ok(t)
    }

    /// The next connection marked closing this pass, for the core to free.
    pub fn next_closing(&mut self) -> Option<usize> {
        self.closing.pop()
    }

    /// Removes connection `t`: what it still has to send goes out (unless it is cut off), what
    /// its peer already sent is read (so closing sends FIN rather than RST and the peer gets to
    /// read our last -ERR), and it leaves the poll. The caller cleans up the rest.
    pub fn take(&mut self, t: usize) -> Option<Conn> {
        let mut c = self.slab.try_remove(t)?;
        match c.kind {
            Kind::Client => self.clients -= 1,
            Kind::Route(_) => self.routes.retain(|&r| r != t),
        }
        let reason = c.closing.unwrap_or(CloseReason::ServerShutdown);
        if !reason.skips_flush() {
            let _ = c.flush(self.now);
        }
        let mut sink = [0u8; 4096];
        for _ in 0..16 {
            match super::io::read_into(&mut c.sock, &mut sink) {
                ReadOutcome::Data(_) => {}
                _ => break,
            }
        }
        let _ = self.registry.deregister(&mut c.sock);
        Some(c)
    }

    /// Marks a connection closing; it is freed at the end of the pass.
    pub fn close(&mut self, t: usize, reason: CloseReason) {
        let Some(c) = self.slab.get_mut(t) else {
            return;
        };
        if c.closing.is_some() {
            return;
        }
        c.closing = Some(reason);
        self.closing.push(t);
    }

    /// Marks every connection closing (shutdown).
    pub fn close_all(&mut self) {
        let all: Vec<usize> = self.slab.iter().map(|(t, _)| t).collect();
        for t in all {
            self.close(t, CloseReason::ServerShutdown);
        }
    }

    /// Appends protocol bytes for connection `t` (nothing if it is closing).
    pub fn queue(&mut self, t: usize, bytes: &[u8]) {
        let Some(c) = self.slab.get_mut(t) else {
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
        let water = self.stall_water();
        let c = &mut self.slab[consumer];
        if !c.dirty {
            c.dirty = true;
            self.dirty.push(consumer);
        }
        if c.pending() > water {
            self.over_water(producer, consumer);
        }
    }

    pub fn slow_consumer(&mut self, t: usize, why: CloseReason) {
        let c = &mut self.slab[t];
        if c.closing.is_some() {
            return;
        }
        self.slow_consumers += 1;
        match why {
            CloseReason::SlowConsumerDeadline => info!(
                "{} - Slow Consumer Detected: WriteDeadline of {:?} exceeded with {} chunks of {} total bytes.",
                c.label(),
                self.limits.write_deadline,
                1,
                c.pending()
            ),
            _ => info!(
                "{} - Slow Consumer Detected: MaxPending of {} Exceeded",
                c.label(),
                self.limits.max_pending
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
        if logger::trace_on() {
            if let Some(c) = self.slab.get(t) {
                log::trace!("{} - ->> [-ERR '{}']", c.label(), text);
            }
        }
        let mut line = Vec::with_capacity(text.len() + 9);
        wire::write_err(&mut line, text);
        self.queue(t, &line);
    }

    pub fn log_error(&self, t: usize, what: &str) {
        if let Some(c) = self.slab.get(t) {
            error!("{} - {}", c.label(), what);
        }
    }

    /// Writes out every connection that got output this pass.
    pub fn flush_dirty(&mut self) {
        self.queued = 0;
        let mut dirty = std::mem::take(&mut self.dirty);
        for &t in &dirty {
            if let Some(c) = self.slab.get_mut(t) {
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
        let Some(c) = self.slab.get_mut(t) else {
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
}
