//! The monitoring port as a source of the poll loop: its listener (the source's first token),
//! its connections (the tokens after it), reading requests, answering them, and writing the
//! answers.
//!
//! Two rules keep monitoring from hurting anyone:
//! - Slots are bounded (`http::MAX_CONNS`) but never all held by an attacker: when they are
//!   full, a new connection takes the slot of the oldest idle one or the oldest one with an
//!   incomplete request; one still receiving a response is the last to go (`victim`).
//! - Large bodies (`monitor::stream`) are rendered by `produce`, once per loop pass, for at
//!   most `PASS_BUDGET` bytes shared in turn among the connections that can take more (less
//!   than `WATER` bytes unsent). The loop does not sleep while one can (`has_work`), and a
//!   reader that does not read costs neither CPU nor memory.
//!
//! Data enters through `accept` and `on_event` (readiness), and leaves as bytes on the
//! monitoring sockets; the broker is only read, and so is the JetStream source, which the
//! loop lends through `Cx::others` (server/source.rs).

use super::http::{self, Framing, HttpConn};
use super::stream::Stream;
use super::{respond, Monitor, Reply};
use crate::core::broker::Broker;
use crate::jetstream::source::JetStream;
use crate::server::listener::{listen_addr, Listener};
use crate::server::source::{Cx, ServerEvent, Source};
use log::info;
use mio::event::Event;
use mio::{Interest, Registry, Token};
use slab::Slab;
use std::io;
use std::time::{Instant, SystemTime};
/// Body bytes rendered per loop pass over all monitoring connections (each turn renders at
/// least one entry): about 0.1 ms of work (/connz renders about 150 MB/s), which is what a
/// message in flight waits at most for monitoring in a pass.
const PASS_BUDGET: usize = 16 * 1024;
/// A connection with this much unsent output gets no more until its socket drains.
const WATER: usize = 64 * 1024;
/// The kernel's send buffer of a monitoring socket. Left to autotuning it grows to 4 MiB on
/// loopback for a reader that does not read: a slow reader would pin that much kernel memory
/// per slot, and a whole /connz would be rendered into it at once. 128 KiB (the kernel
/// doubles it) keeps a LAN reader at full speed.
const SEND_BUFFER: libc::c_int = 128 * 1024;

/// Caps the socket's send buffer (best effort: the default works too).
fn cap_send_buffer(sock: &mio::net::TcpStream) {
    use std::os::fd::AsRawFd;
    let size = SEND_BUFFER;
    // SAFETY: setsockopt on a socket we own, with a pointer to a live c_int and its size.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// A body being rendered for a connection, and how it goes out.
struct Pending {
    stream: Stream,
    head_only: bool,
    http11: bool,
    keep_alive: bool,
    /// Chosen when the first slice is ready; `None` until the head is written.
    framing: Option<Framing>,
}

struct Slot {
    conn: HttpConn,
    pending: Option<Pending>,
    /// When it was accepted or last completed a request: the oldest goes first.
    since: Instant,
}

impl Slot {
    /// Receiving a response, as opposed to idle or sending a request.
    fn busy(&self) -> bool {
        self.pending.is_some() || self.conn.unsent() > 0
    }
}

/// Closes monitoring connection `key`.
fn close(slots: &mut Slab<Slot>, streaming: &mut Vec<usize>, key: usize, registry: &Registry) {
    if let Some(mut s) = slots.try_remove(key) {
        let _ = registry.deregister(&mut s.conn.sock);
        streaming.retain(|&k| k != key);
    }
}

/// The slot to free for a new connection: the oldest not busy, else the oldest.
fn victim(slots: impl Iterator<Item = (usize, bool, Instant)>) -> Option<usize> {
    slots
        .min_by_key(|&(_, busy, since)| (busy, since))
        .map(|(key, _, _)| key)
}

pub struct Monitoring {
    listener: Listener,
    /// The token of slot 0 (the listener has the one before it).
    base: usize,
    slots: Slab<Slot>,
    pub monitor: Monitor,
    /// Slots with a body still being rendered, served in turn by `produce`.
    streaming: Vec<usize>,
    turn: usize,
    /// One slice of body (kept for its capacity).
    scratch: Vec<u8>,
}

impl Monitoring {
    /// Starts monitoring if the config asks for it (`-m`, `http`): binds its port.
    pub fn plug(cx: &mut Cx) -> io::Result<Option<Box<dyn Source>>> {
        let cfg = &cx.broker.cfg;
        let Some(port) = cfg.http_port else {
            return Ok(None);
        };
        let addr = listen_addr(cfg.http_host(), port as i32)?;
        let registry = &cx.broker.conns.registry;
        let listener = Listener::bind(addr, "Monitoring", registry, cx.token(0))?;
        info!("Starting http monitor on {}", listener.local_addr()?);
        Ok(Some(Box::new(Monitoring {
            listener,
            base: cx.token(1).0,
            slots: Slab::new(),
            monitor: Monitor::new(),
            streaming: Vec::new(),
            turn: 0,
            scratch: Vec::new(),
        })))
    }

    fn accept(&mut self, registry: &Registry, now: Instant) {
        let Monitoring {
            listener,
            slots,
            streaming,
            base,
            ..
        } = self;
        listener.accept_all(now, |mut sock, _| {
            cap_send_buffer(&sock);
            if slots.len() >= http::MAX_CONNS {
                let all = slots.iter().map(|(k, s)| (k, s.busy(), s.since));
                if let Some(key) = victim(all) {
                    close(slots, streaming, key, registry);
                }
            }
            let entry = slots.vacant_entry();
            let token = Token(*base + entry.key());
            if registry
                .register(&mut sock, token, Interest::READABLE)
                .is_ok()
            {
                entry.insert(Slot {
                    conn: HttpConn::new(sock, now),
                    pending: None,
                    since: now,
                });
            }
        });
    }

    /// Readiness of connection `key`: read, answer complete requests, write.
    fn on_event(
        &mut self,
        key: usize,
        registry: &Registry,
        b: &Broker,
        mut js: Option<&mut JetStream>,
    ) {
        let Monitoring {
            slots,
            monitor,
            streaming,
            ..
        } = self;
        let Some(slot) = slots.get_mut(key) else {
            return;
        };
        // Answer buffered requests, then read more if the socket may hold more: it is
        // edge-triggered, so bytes left unread now would never be announced again. A body
        // still being rendered holds the requests behind it (`produce` comes back here).
        loop {
            let fill = slot.conn.fill();
            if fill == http::Fill::Closed {
                return self.close(key, registry);
            }
            let mut answered = false;
            while slot.pending.is_none() && slot.conn.out.len() < http::OUT_LIMIT {
                let Some(next) = slot.conn.next_request(b.conns.now) else {
                    break;
                };
                slot.since = b.conns.now;
                answered = true;
                let keep_alive = !slot.conn.closing;
                let req = match next {
                    Ok(req) => req,
                    Err(status) => {
                        let resp = http::Response::text(status, "bad request");
                        http::write_response(&mut slot.conn.out, &resp, keep_alive, false);
                        continue;
                    }
                };
                let head_only = req.method == "HEAD";
                match respond(monitor, b, js.as_deref_mut(), &req) {
                    Reply::Done(resp) => {
                        http::write_response(&mut slot.conn.out, &resp, keep_alive, head_only)
                    }
                    Reply::Stream(stream) => {
                        slot.pending = Some(Pending {
                            stream,
                            head_only,
                            http11: req.http11,
                            keep_alive,
                            framing: None,
                        });
                        if !streaming.contains(&key) {
                            streaming.push(key);
                        }
                    }
                }
            }
            let full = slot.conn.out.len() >= http::OUT_LIMIT || slot.pending.is_some();
            if fill == http::Fill::Drained || !answered || full {
                break;
            }
        }
        self.flush(key, registry, b.conns.now);
    }

    /// Writes what `key` has queued; closes it when done and asked to, or on error.
    fn flush(&mut self, key: usize, registry: &Registry, now: Instant) {
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        let c = &mut slot.conn;
        let before = c.unsent();
        match c.flush() {
            Ok(true) if c.closing && slot.pending.is_none() => self.close(key, registry),
            Ok(done) => {
                // A reader that keeps reading a long body is not idle.
                if slot.pending.is_some() && c.unsent() < before {
                    c.deadline = now + http::IDLE_TIMEOUT;
                }
                if done == c.want_write {
                    let interest = if done {
                        Interest::READABLE
                    } else {
                        Interest::READABLE | Interest::WRITABLE
                    };
                    let token = Token(self.base + key);
                    if registry.reregister(&mut c.sock, token, interest).is_err() {
                        return self.close(key, registry);
                    }
                    c.want_write = !done;
                }
            }
            Err(_) => self.close(key, registry),
        }
    }

    fn close(&mut self, key: usize, registry: &Registry) {
        close(&mut self.slots, &mut self.streaming, key, registry);
    }

    /// Drops connections that did not finish a request in time (slow clients).
    fn expire(&mut self, registry: &Registry, now: Instant) {
        if self.slots.is_empty() {
            return;
        }
        let expired: Vec<usize> = (self.slots.iter())
            .filter(|(_, s)| s.conn.deadline <= now)
            .map(|(k, _)| k)
            .collect();
        for key in expired {
            self.close(key, registry);
        }
    }

    /// The earliest connection deadline.
    fn next_deadline(&self) -> Option<Instant> {
        self.slots.iter().map(|(_, s)| s.conn.deadline).min()
    }

    /// A body can be rendered now: the loop must not sleep.
    fn has_work(&self) -> bool {
        self.streaming
            .iter()
            .any(|&k| self.slots.get(k).is_some_and(|s| s.conn.unsent() < WATER))
    }

    /// Renders this pass's share of the pending bodies, in turn, and writes them.
    fn produce(&mut self, registry: &Registry, b: &Broker, mut js: Option<&mut JetStream>) {
        if self.streaming.is_empty() {
            return;
        }
        self.turn = (self.turn + 1) % self.streaming.len();
        let mut order = self.streaming.clone();
        order.rotate_left(self.turn);
        let mut budget = PASS_BUDGET;
        for key in order {
            if budget == 0 {
                break;
            }
            let ready = self.slots.get(key).is_some_and(|s| s.conn.unsent() < WATER);
            if ready {
                let rendered = self.produce_one(key, b, js.as_deref_mut(), budget);
                budget = budget.saturating_sub(rendered);
                self.flush(key, registry, b.conns.now);
                if self.slots.get(key).is_some_and(|s| s.pending.is_none()) {
                    // Done: requests that queued behind this body are answered now.
                    self.streaming.retain(|&k| k != key);
                    self.on_event(key, registry, b, js.as_deref_mut());
                }
            }
        }
    }

    /// Renders one slice of `key`'s body into its output; returns the bytes rendered.
    fn produce_one(
        &mut self,
        key: usize,
        b: &Broker,
        js: Option<&mut JetStream>,
        budget: usize,
    ) -> usize {
        let Some(slot) = self.slots.get_mut(key) else {
            return 0;
        };
        let Some(p) = &mut slot.pending else {
            return 0;
        };
        let body = &mut self.scratch;
        body.clear();
        let mut done = p.stream.produce(b, js, body, budget);
        let out = &mut slot.conn.out;
        match p.framing {
            Some(Framing::Chunked) => http::write_chunk(out, body),
            Some(_) => out.extend_from_slice(body),
            None => {
                // The first slice: a body complete already goes with its length.
                let framing = if done {
                    Framing::Length(body.len())
                } else if p.http11 {
                    Framing::Chunked
                } else {
                    Framing::UntilClose
                };
                let keep_alive = p.keep_alive && framing != Framing::UntilClose;
                let ct = p.stream.content_type;
                http::write_head(out, 200, ct, framing, keep_alive);
                slot.conn.closing |= !keep_alive;
                p.framing = Some(framing);
                if p.head_only {
                    done = true;
                } else if framing == Framing::Chunked {
                    http::write_chunk(out, body);
                } else {
                    out.extend_from_slice(body);
                }
            }
        }
        if done {
            if p.framing == Some(Framing::Chunked) && !p.head_only {
                http::end_chunks(&mut slot.conn.out);
            }
            slot.pending = None;
        }
        body.len()
    }
}

impl Source for Monitoring {
    fn ready(&mut self, cx: &mut Cx, token: Token, _ev: &Event) {
        let index = cx.index(token);
        let b: &Broker = cx.broker;
        match index {
            0 => self.accept(&b.conns.registry, b.conns.now),
            n => {
                let js = cx.others.find::<JetStream>();
                self.on_event(n - 1, &b.conns.registry, b, js)
            }
        }
    }

    fn event(&mut self, _cx: &mut Cx, ev: ServerEvent) {
        if ev == ServerEvent::Reload {
            self.monitor.config_load_time = SystemTime::now();
        }
    }

    fn deadline(&self) -> Option<Instant> {
        let slots = self.next_deadline();
        let retry = self.listener.retry_at();
        slots.into_iter().chain(retry).min()
    }

    fn end_of_pass(&mut self, cx: &mut Cx) {
        let b: &Broker = cx.broker;
        let (registry, now) = (&b.conns.registry, b.conns.now);
        if self.listener.due(now) {
            self.accept(registry, now);
        }
        self.expire(registry, now);
        self.produce(registry, b, cx.others.find::<JetStream>());
    }

    fn busy(&self) -> bool {
        self.has_work()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn victim_is_the_oldest_idle_then_the_oldest() {
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        // An idle one goes before an older one receiving a response.
        let slots = [(1, true, at(0)), (2, false, at(5)), (3, false, at(2))];
        assert_eq!(victim(slots.into_iter()), Some(3));
        // All busy: the oldest.
        let slots = [(1, true, at(3)), (2, true, at(1))];
        assert_eq!(victim(slots.into_iter()), Some(2));
        assert_eq!(victim(std::iter::empty()), None);
    }
}
