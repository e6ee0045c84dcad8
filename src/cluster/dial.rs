//! Dialling routes without ever blocking the loop.
//!
//! A dial waits for its time in `Dialer::waiting` (configured routes at start, servers learned
//! by gossip, redials). When it is due, an IP literal is connected at once; a host name goes
//! to the resolver, a helper thread (`util/worker.rs`) that may sit in getaddrinfo as long as DNS
//! takes, and its answer comes back through the loop's waker (`lookups_done`). The
//! connect itself is non-blocking: the socket waits in `connecting` (the cluster's tokens
//! after its listener's)
//! until it is writable and then becomes a route (`add_route`: "Route connection created"),
//! or the attempt fails.
//!
//! A failed attempt is one log line, worded and paced as nats-server's `connectToRoute`:
//! `Error trying to connect to route (attempt N): dial tcp 10.0.0.2:6222: connect: connection
//! refused`, at error level for the first attempt (and every 3600th) of a first connect and
//! for every attempt of a reconnect, at debug level otherwise; the next attempt comes after
//! RECONNECT_DELAY.

use super::Cluster;
use crate::config::RouteUrl;
use crate::conn::RouteState;
use crate::core::broker::Broker;
use crate::util::logger::os_error;
use crate::util::worker::Worker;
use log::{debug, log, Level};
use mio::net::TcpStream;
use mio::{Interest, Token, Waker};
use slab::Slab;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Delay between attempts to dial a route (nats-server's DEFAULT_ROUTE_CONNECT).
const RECONNECT_DELAY: Duration = Duration::from_secs(1);
/// How long a connect may take (nats-server's DEFAULT_ROUTE_DIAL).
const DIAL_TIMEOUT: Duration = Duration::from_secs(1);
/// A first connect that keeps failing is reported at error level once per this many attempts
/// (nats-server's DEFAULT_CONNECT_ERROR_REPORTS: about once an hour).
const CONNECT_ERROR_REPORTS: u32 = 3600;

/// One route to dial, and its history.
#[derive(Debug)]
pub(super) struct Dial {
    at: Instant,
    url: RouteUrl,
    /// A configured route: dialled forever.
    explicit: bool,
    /// Failed attempts so far.
    attempts: u32,
    /// Not connected yet since start or since gossip named it (false: a lost route).
    first: bool,
    /// The server gossip named (its id), if this dial comes from gossip.
    gossiped_id: Option<String>,
}

/// A connect in progress.
struct Connecting {
    sock: TcpStream,
    addr: SocketAddr,
    dial: Dial,
    deadline: Instant,
}

/// A lookup's answer from the resolver thread.
type Lookup = (Dial, io::Result<SocketAddr>);

pub(super) struct Dialer {
    waiting: Vec<Dial>,
    connecting: Slab<Connecting>,
    /// Started at the first host name to look up.
    resolver: Option<Worker<Dial, Lookup>>,
    /// `host:port` of each dial being looked up or connected, so none is dialled twice at once.
    in_flight: Vec<String>,
    /// Given to the resolver thread, to wake the loop with each answer.
    waker: Arc<Waker>,
}

impl Dialer {
    pub(super) fn new(waker: Arc<Waker>) -> Dialer {
        Dialer {
            waiting: Vec::new(),
            connecting: Slab::new(),
            resolver: None,
            in_flight: Vec::new(),
            waker,
        }
    }

    /// A configured route, dialled in the first pass.
    pub(super) fn configured(&mut self, url: RouteUrl, now: Instant) {
        self.waiting.push(Dial {
            at: now,
            url,
            explicit: true,
            attempts: 0,
            first: true,
            gossiped_id: None,
        });
    }
}

impl Cluster {
    /// The earliest pending dial or connect deadline.
    pub fn next_dial(&self) -> Option<Instant> {
        let d = &self.dialer;
        let waiting = d.waiting.iter().map(|d| d.at);
        waiting
            .chain(d.connecting.iter().map(|(_, c)| c.deadline))
            .min()
    }

    /// Gives up on connects past their deadline, and starts every dial whose time has come.
    pub fn run_dials(&mut self, b: &mut Broker) {
        let now = b.conns.now;
        if self.stopping {
            return;
        }
        let d = &mut self.dialer;
        let late: Vec<usize> = (d.connecting.iter())
            .filter(|(_, c)| c.deadline <= now)
            .map(|(k, _)| k)
            .collect();
        let due: Vec<Dial>;
        (due, d.waiting) = std::mem::take(&mut d.waiting)
            .into_iter()
            .partition(|d| d.at <= now);
        for k in late {
            let mut c = self.dialer.connecting.remove(k);
            let _ = b.conns.registry.deregister(&mut c.sock);
            self.dial_failed(b, c.dial, &format!("dial tcp {}: i/o timeout", c.addr));
        }
        for d in due {
            self.dial(b, d);
        }
    }

    /// Starts an attempt: connects an IP literal, hands a host name to the resolver.
    fn dial(&mut self, b: &mut Broker, d: Dial) {
        let target = d.url.host_port();
        if self.self_urls.contains(&target)
            || self.dialer.in_flight.contains(&target)
            || already_routed(b, &d.url, d.gossiped_id.as_deref())
        {
            return;
        }
        self.dialer.in_flight.push(target);
        if let Some(addr) = crate::util::resolve::literal(&d.url.host, d.url.port) {
            return self.connect(b, d, addr);
        }
        let dialer = &mut self.dialer;
        if dialer.resolver.is_none() {
            let started = Worker::spawn("tern-resolver", dialer.waker.clone(), |d: Dial| {
                let addr = crate::util::resolve::resolve(&d.url.host, d.url.port);
                (d, addr)
            });
            match started {
                Ok(w) => dialer.resolver = Some(w),
                Err(e) => {
                    let why = format!("lookup {}: cannot start the resolver: {e}", d.url.host);
                    return self.dial_failed(b, d, &why);
                }
            }
        }
        let Some(r) = &dialer.resolver else { return };
        debug!("Looking up route host {}", d.url.host);
        if let Err(d) = r.submit(d) {
            dialer.resolver = None; // the next lookup starts a new thread
            let why = format!("lookup {}: the resolver thread is gone", d.url.host);
            self.dial_failed(b, d, &why);
        }
    }

    /// Takes the resolver's answers (the loop was woken for them) and connects or fails each.
    pub fn lookups_done(&mut self, b: &mut Broker) {
        let Some(r) = &self.dialer.resolver else {
            return;
        };
        for (d, addr) in r.ready() {
            match addr {
                Ok(addr) => self.connect(b, d, addr),
                Err(e) => {
                    let why = format!("lookup {}: {}", d.url.host, os_error(&e));
                    self.dial_failed(b, d, &why);
                }
            }
        }
    }

    /// Starts a non-blocking connect; `on_dial_event` sees how it ends.
    fn connect(&mut self, b: &mut Broker, d: Dial, addr: SocketAddr) {
        if self.stopping {
            return;
        }
        debug!(
            "Trying to connect to route on {} ({addr})",
            d.url.host_port()
        );
        let mut sock = match TcpStream::connect(addr) {
            Ok(sock) => sock,
            Err(e) => {
                let why = format!("dial tcp {addr}: connect: {}", os_error(&e));
                return self.dial_failed(b, d, &why);
            }
        };
        let entry = self.dialer.connecting.vacant_entry();
        let token = Token(self.dial_base + entry.key());
        if let Err(e) = b
            .conns
            .registry
            .register(&mut sock, token, Interest::WRITABLE)
        {
            return self.dial_failed(b, d, &format!("dial tcp {addr}: {}", os_error(&e)));
        }
        entry.insert(Connecting {
            sock,
            addr,
            dial: d,
            deadline: b.conns.now + DIAL_TIMEOUT,
        });
    }

    /// A connecting socket became writable (or failed): it is now a route, or the attempt
    /// failed. A spurious wake-up leaves it waiting.
    pub fn on_dial_event(&mut self, b: &mut Broker, key: usize) {
        let Some(c) = self.dialer.connecting.get(key) else {
            return;
        };
        let outcome = match c.sock.take_error() {
            Ok(None) => match c.sock.peer_addr() {
                Ok(_) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => Err(e),
            },
            Ok(Some(e)) | Err(e) => Err(e),
        };
        let mut c = self.dialer.connecting.remove(key);
        let _ = b.conns.registry.deregister(&mut c.sock);
        if let Err(e) = outcome {
            let why = format!("dial tcp {}: connect: {}", c.addr, os_error(&e));
            return self.dial_failed(b, c.dial, &why);
        }
        let state = RouteState {
            dialled: Some(c.dial.url.clone()),
            explicit: c.dial.explicit,
            attempts: c.dial.attempts,
            ..RouteState::default()
        };
        if self.add_route(b, c.sock, c.addr, state).is_some() {
            self.dial_done(&c.dial);
        } else {
            self.dial_failed(b, c.dial, "cannot register the connection");
        }
    }

    fn dial_done(&mut self, d: &Dial) {
        let target = d.url.host_port();
        self.dialer.in_flight.retain(|t| *t != target);
    }

    /// One line for the failed attempt, then the next one after RECONNECT_DELAY.
    fn dial_failed(&mut self, b: &mut Broker, d: Dial, why: &str) {
        self.dial_done(&d);
        let attempts = d.attempts + 1;
        let report = !d.first || attempts == 1 || attempts.is_multiple_of(CONNECT_ERROR_REPORTS);
        let level = if report { Level::Error } else { Level::Debug };
        log!(
            level,
            "Error trying to connect to route (attempt {attempts}): {why}"
        );
        self.redial(b, Dial { attempts, ..d }, RECONNECT_DELAY);
    }

    /// Schedules another attempt unless the rules say to give up (a gossiped route is tried
    /// `connect_retries` more times).
    fn redial(&mut self, b: &mut Broker, d: Dial, delay: Duration) {
        let retries = b.cfg.cluster.as_ref().map_or(0, |c| c.connect_retries);
        let jitter = Duration::from_millis(b.rng.next_u64() % 100);
        if self.stopping || (!d.explicit && d.attempts > retries) {
            return;
        }
        let at = b.conns.now + delay + jitter;
        self.dialer.waiting.push(Dial { at, ..d });
    }

    /// Gossip named a server we have no route to: dial it at the end of this pass.
    pub(super) fn dial_gossiped(&mut self, b: &Broker, url: RouteUrl, id: String) {
        self.dialer.waiting.push(Dial {
            at: b.conns.now,
            url,
            explicit: false,
            attempts: 0,
            first: true,
            gossiped_id: Some(id),
        });
    }

    /// A route connection closed: dial it again if we dialled it (or must, see `retry`).
    pub(super) fn redial_closed(&mut self, b: &mut Broker, r: &RouteState) {
        let url = r.dialled.clone().or_else(|| {
            (r.retry && r.remote_port != 0).then(|| RouteUrl {
                host: r.remote_host.clone(),
                port: r.remote_port,
                user: None,
                pass: None,
            })
        });
        let Some(url) = url else { return };
        let failed = !r.registered;
        let delay = if r.explicit || failed {
            RECONNECT_DELAY
        } else {
            Duration::ZERO
        };
        if r.registered {
            debug!(
                "Attempting reconnect for solicited route {:?}",
                url.host_port()
            );
        }
        let d = Dial {
            at: b.conns.now,
            url,
            explicit: r.explicit,
            attempts: if failed { r.attempts + 1 } else { 0 },
            first: false,
            gossiped_id: None,
        };
        self.redial(b, d, delay);
    }
}

/// Whether a route to `url` exists. For a dial that gossip asked for, a registered route
/// counts only if it is to the server gossip named: a server restarted on the same address
/// has a new id, and the route to its old self may not have noticed the death yet
/// (nats-server also decides by server id).
fn already_routed(b: &Broker, url: &RouteUrl, gossiped_id: Option<&str>) -> bool {
    let target = url.host_port();
    b.conns.routes.iter().any(|&t| {
        b.conns[t].route().is_some_and(|r| {
            let same_server = gossiped_id.is_none_or(|id| !r.registered || r.remote_id == id);
            same_server
                && (r.dialled.as_ref().is_some_and(|u| u.host_port() == target)
                    || (r.registered && format!("{}:{}", r.remote_host, r.remote_port) == target))
        })
    })
}
