//! The poll loop: one thread, one `mio::Poll`, every socket nonblocking and edge-triggered.
//!
//! One pass of the loop:
//! 1. wait for readiness, no longer than the earliest timer or stall deadline;
//! 2. accept every pending connection; read every readable connection until WouldBlock or
//!    until its per-pass budget is spent (then it is revisited next pass without waiting);
//!    bytes are parsed straight out of one shared read buffer and acted on;
//! 3. end stalls whose consumers drained, run due timers (auth timeout, PINGs, write deadline);
//! 4. write every connection that got output this pass (one write per connection, WRITABLE
//!    interest only for those left with unsent bytes);
//! 5. free the connections marked closing.
//!
//! Signals arrive through a signalfd registered with the same poll; helper threads (DNS
//! lookups for routes) wake it through a `mio::Waker`.

pub mod listener;
pub mod signals;

use crate::cluster::{self, Cluster};
use crate::config::flags::{self, Flags};
use crate::config::reload;
use crate::config::{Config, FLUSH_AT, READS_PER_PASS, READ_CHUNK};
use crate::conn::io::{read_into, ReadOutcome};
use crate::conn::{CloseReason, Conn, RouteState};
use crate::core::broker::Broker;
use crate::monitor::side::{HttpSide, HTTP_BASE};
use crate::protocol::info::{self, Identity};
use crate::util::logger;
use listener::Backoff;
use log::{debug, error, info as log_info, warn};
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};
use signals::{Signal, Signals};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

const LISTENER: Token = Token(usize::MAX - 1);
const SIGNALS: Token = Token(usize::MAX - 2);
const HTTP_LISTENER: Token = Token(usize::MAX - 3);
const ROUTE_LISTENER: Token = Token(usize::MAX - 4);
/// Helper threads have results (`worker.rs`).
const WAKER: Token = Token(usize::MAX - 5);

/// Lame duck: no new clients; the existing ones are closed one by one, then the server exits.
struct LameDuck {
    clients: Vec<(usize, u64)>,
    next_at: Instant,
    interval: Duration,
    /// The grace period is over and closing has begun.
    closing: bool,
}

pub struct Server {
    poll: Poll,
    listener: Option<TcpListener>,
    signals: Signals,
    /// Shared by every connection whose previous read ended on a frame boundary.
    rbuf: Vec<u8>,
    /// Connections that still had bytes when their read budget ran out.
    pending_reads: Vec<usize>,
    broker: Broker,
    http: Option<HttpSide>,
    /// The cluster port, when clustering is on.
    route_listener: Option<TcpListener>,
    cluster: Option<Cluster>,
    /// The command line, kept so a reload rebuilds the config exactly as at start.
    flags: Flags,
    /// Lame-duck mode: clients still to close, and when to close the next one.
    lame_duck: Option<LameDuck>,
    /// Accepting failed (out of descriptors): the listeners rest a while (`accept.rs`).
    accept_backoff: Backoff,
    route_backoff: Backoff,
    stopping: bool,
}

/// Resolves the listen address the way nats-server does: host (IPv4, IPv6 or a name) and
/// port, `-1` meaning any free port.
/// Binds a listener with the deepest accept queue the system allows. mio (like std) asks
/// for 128, which a burst of connects overflows (the dropped SYNs come back a second later);
/// nats-server asks for somaxconn. Listening again only raises the backlog.
fn bind_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    use std::os::fd::AsRawFd;
    let listener = TcpListener::bind(addr)?;
    // SAFETY: listen on a socket we own; the kernel caps the backlog at somaxconn.
    unsafe { libc::listen(listener.as_raw_fd(), 65535) };
    Ok(listener)
}

fn listen_addr(host: &str, port: i32) -> io::Result<SocketAddr> {
    let port = if port < 0 { 0 } else { port as u16 };
    crate::util::resolve::resolve(host, port)
}

impl Server {
    pub fn new(cfg: Config, flags: Flags) -> io::Result<Server> {
        let signals = Signals::new()?;
        let poll = Poll::new()?;
        let addr = listen_addr(&cfg.host, cfg.port)?;
        let mut listener = bind_listener(addr)?;
        let bound = listener.local_addr()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        signals.register(poll.registry(), SIGNALS)?;
        let id = info::new_server_id();
        let name = if cfg.server_name.is_empty() {
            id.clone()
        } else {
            cfg.server_name.clone()
        };
        let urls = listener::client_urls(&cfg.host, bound.port());
        let ident = Identity::new(id, name, cfg.host.clone(), bound.port(), urls);
        log_info!("Starting tern");
        log_info!("  Version:  {}", crate::config::VERSION);
        log_info!("  Name:     {}", ident.name);
        log_info!("  ID:       {}", ident.id);
        log_info!("Listening for client connections on {}", bound);
        let http = match cfg.http_port {
            Some(port) => {
                let addr = listen_addr(cfg.http_host(), port as i32)?;
                let mut listener = bind_listener(addr)?;
                poll.registry()
                    .register(&mut listener, HTTP_LISTENER, Interest::READABLE)?;
                log_info!("Starting http monitor on {}", listener.local_addr()?);
                Some(HttpSide::new(listener))
            }
            None => None,
        };
        let route_listener = match &cfg.cluster {
            Some(cc) => {
                let addr = listen_addr(&cc.host, cc.port)?;
                let mut listener = bind_listener(addr)?;
                poll.registry()
                    .register(&mut listener, ROUTE_LISTENER, Interest::READABLE)?;
                log_info!(
                    "Listening for route connections on {}",
                    listener.local_addr()?
                );
                Some(listener)
            }
            None => None,
        };
        let registry = poll.registry().try_clone()?;
        let mut broker = Broker::new(cfg, ident, registry);
        // One waker per Poll, shared by every helper thread (`util/worker.rs`).
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let cluster = match &route_listener {
            Some(l) => Cluster::start(&mut broker, l.local_addr()?.port(), waker),
            None => None,
        };
        Ok(Server {
            poll,
            listener: Some(listener),
            signals,
            rbuf: vec![0; READ_CHUNK],
            pending_reads: Vec::new(),
            broker,
            http,
            route_listener,
            cluster,
            flags,
            lame_duck: None,
            accept_backoff: Backoff::new("Client"),
            route_backoff: Backoff::new("Route"),
            stopping: false,
        })
    }

    /// The address clients connect to (useful when the port was random).
    pub fn port(&self) -> u16 {
        self.broker.ident.port
    }

    pub fn run(&mut self) -> io::Result<()> {
        log_info!("Server is ready");
        let mut events = Events::with_capacity(1024);
        while !self.stopping {
            let timeout = self.poll_timeout();
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            self.broker.conns.now = Instant::now();
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept(),
                    SIGNALS => self.on_signals(),
                    HTTP_LISTENER => {
                        if let Some(h) = &mut self.http {
                            h.accept(self.poll.registry(), self.broker.conns.now);
                        }
                    }
                    ROUTE_LISTENER => self.accept_routes(),
                    WAKER => {
                        if let Some(cl) = &mut self.cluster {
                            cl.lookups_done(&mut self.broker);
                        }
                    }
                    Token(t) if t >= HTTP_BASE => {
                        if let Some(h) = &mut self.http {
                            h.on_event(t - HTTP_BASE, self.poll.registry(), &self.broker);
                        }
                    }
                    Token(t) if t >= cluster::DIAL_BASE => {
                        if let Some(cl) = &mut self.cluster {
                            cl.on_dial_event(&mut self.broker, t - cluster::DIAL_BASE);
                        }
                    }
                    Token(t) => {
                        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                            self.read(t);
                        }
                        if ev.is_writable() && self.broker.conns.contains(t) {
                            self.broker.conns.flush(t);
                        }
                    }
                }
            }
            self.end_of_pass();
        }
        log_info!("Initiating Shutdown...");
        if let Some(mut l) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut l);
        }
        if let Some(cl) = &mut self.cluster {
            cl.stopping = true;
        }
        let routes = self.broker.close_all();
        self.routes_closed(routes);
        log_info!("Server Exiting..");
        Ok(())
    }

    fn poll_timeout(&self) -> Option<Duration> {
        let http = self.http.as_ref();
        if !self.pending_reads.is_empty()
            || !self.broker.conns.wake.is_empty()
            || http.is_some_and(|h| h.has_work())
        {
            return Some(Duration::ZERO);
        }
        let now = Instant::now();
        let mut deadline = self.broker.conns.next_deadline();
        let lame_duck = self.lame_duck.as_ref().map(|l| l.next_at);
        let (accept, routes) = (self.accept_backoff.retry_at, self.route_backoff.retry_at);
        let http = http.and_then(|h| h.next_deadline());
        let dial = self.cluster.as_ref().and_then(|cl| cl.next_dial());
        for r in [accept, routes, lame_duck, dial, http]
            .into_iter()
            .flatten()
        {
            deadline = Some(deadline.map_or(r, |d| d.min(r)));
        }
        deadline.map(|d| d.saturating_duration_since(now))
    }

    fn end_of_pass(&mut self) {
        let mut again = std::mem::take(&mut self.pending_reads);
        again.append(&mut self.broker.conns.wake);
        for t in again {
            self.read(t);
        }
        let now = self.broker.conns.now;
        if self.accept_backoff.due(now) {
            self.accept();
        }
        if self.route_backoff.due(now) {
            self.accept_routes();
        }
        if let Some(h) = &mut self.http {
            h.expire(self.poll.registry(), now);
            h.produce(self.poll.registry(), &self.broker);
        }
        self.lame_duck_step();
        if let Some(cl) = &mut self.cluster {
            cl.run_dials(&mut self.broker);
        }
        let conns = &mut self.broker.conns;
        conns.check_stalls();
        conns.fire_timers();
        conns.flush_dirty();
        let routes = self.broker.reap();
        self.routes_closed(routes);
    }

    /// The cluster cleans up after the route connections the reap freed.
    fn routes_closed(&mut self, routes: Vec<Conn>) {
        if let Some(cl) = &mut self.cluster {
            for c in routes {
                cl.route_closed(&mut self.broker, c);
            }
        }
    }

    /// Acts on bytes read from connection `t` (the core handles clients, the cluster routes)
    /// and keeps any unfinished frame.
    fn ingest(&mut self, t: usize, data: &[u8]) {
        let cluster = &mut self.cluster;
        self.broker
            .ingest(t, data, &mut |b, t, d| process(b, cluster, t, d));
    }

    /// Acts on the bytes connection `t` holds once they make a whole frame.
    fn process_carried(&mut self, t: usize) {
        let cluster = &mut self.cluster;
        self.broker
            .process_carried(t, &mut |b, t, d| process(b, cluster, t, d));
    }

    fn accept(&mut self) {
        if !self.accept_backoff.begin(self.broker.conns.now) {
            return;
        }
        loop {
            let Some(listener) = &self.listener else {
                return;
            };
            match listener.accept() {
                Ok((sock, addr)) => {
                    self.accept_backoff.accepted();
                    self.broker.add_client(sock, addr);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    let local = listener.local_addr().ok();
                    if self.accept_backoff.failed(&e, local, self.broker.conns.now) {
                        return;
                    }
                }
            }
        }
    }

    /// Reads connection `t` until WouldBlock or its budget for this pass is spent.
    fn read(&mut self, t: usize) {
        // Bytes kept back by a stall may hold whole frames: act on them first.
        self.process_carried(t);
        for _ in 0..READS_PER_PASS {
            let Some(c) = self.broker.conns.get_mut(t) else {
                return;
            };
            if c.closing.is_some() || c.stalled {
                return;
            }
            let outcome = if c.in_len == 0 {
                // The common case: parse straight out of the shared buffer, keep only a tail.
                let mut rbuf = std::mem::take(&mut self.rbuf);
                let outcome = read_into(&mut c.sock, &mut rbuf);
                if let ReadOutcome::Data(n) = outcome {
                    self.ingest(t, &rbuf[..n]);
                }
                self.rbuf = rbuf;
                outcome
            } else {
                // A split frame: read straight into the connection's own bytes.
                c.inbuf_room();
                let outcome = read_into(&mut c.sock, &mut c.inbuf[c.in_len..]);
                if let ReadOutcome::Data(n) = outcome {
                    c.in_len += n;
                    self.process_carried(t);
                }
                outcome
            };
            let conns = &mut self.broker.conns;
            if conns.queued >= FLUSH_AT {
                conns.flush_dirty();
            }
            match outcome {
                ReadOutcome::Data(_) => {}
                ReadOutcome::WouldBlock => return,
                ReadOutcome::Closed(reason) => {
                    conns.close(t, reason);
                    return;
                }
            }
        }
        self.pending_reads.push(t);
    }

    fn accept_routes(&mut self) {
        let (Some(l), Some(cl)) = (&self.route_listener, &mut self.cluster) else {
            return;
        };
        let now = self.broker.conns.now;
        if !self.route_backoff.begin(now) {
            return;
        }
        loop {
            match l.accept() {
                Ok((sock, addr)) => {
                    self.route_backoff.accepted();
                    cl.add_route(&mut self.broker, sock, addr, RouteState::default());
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    if self.route_backoff.failed(&e, l.local_addr().ok(), now) {
                        return;
                    }
                }
            }
        }
    }

    fn on_signals(&mut self) {
        for sig in self.signals.read() {
            debug!("Trapped \"{}\" signal", sig.name());
            match sig {
                Signal::Interrupt => self.stopping = true,
                // As nats-server: SIGTERM does not cut a lame-duck exit short.
                Signal::Terminate if self.lame_duck.is_none() => self.stopping = true,
                Signal::Terminate => {}
                Signal::Hangup => {
                    if let Err(e) = self.reload() {
                        error!("Failed to reload server configuration: {e}");
                    }
                }
                Signal::User1 => {
                    if let Err(e) = logger::init(&self.broker.cfg.log_settings()) {
                        error!("Failed to reopen log file: {e}");
                    }
                }
                Signal::User2 => self.enter_lame_duck(),
            }
        }
    }

    /// Re-reads the config file and applies it; on any error the running config stays.
    fn reload(&mut self) -> Result<(), String> {
        if self.flags.config.is_none() {
            return Err(
                "can only reload config when a file is provided using -c or --config".into(),
            );
        }
        let (cfg, warnings) = flags::build_config(&self.flags)?;
        reload::check_immutable(&self.broker.cfg, &cfg)?;
        logger::init(&cfg.log_settings()).map_err(|e| format!("cannot open log file: {e}"))?;
        for w in &warnings {
            warn!("{w}");
        }
        self.broker.apply_reload(cfg);
        if let Some(h) = &mut self.http {
            h.monitor.config_load_time = SystemTime::now();
        }
        log_info!("Reloaded server configuration");
        Ok(())
    }

    /// Stops accepting, tells clients (INFO with `ldm`), and after the grace period closes
    /// them spread over the lame-duck duration; the server exits when none are left.
    fn enter_lame_duck(&mut self) {
        if self.lame_duck.is_some() || self.stopping {
            return;
        }
        log_info!("Entering lame duck mode, stop accepting new clients");
        if let Some(mut l) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut l);
        }
        let b = &mut self.broker;
        b.ident.lame_duck = true;
        cluster::routes_lame_duck(b);
        let clients: Vec<(usize, u64)> = b
            .conns
            .iter()
            .filter(|(_, c)| c.is_client())
            .map(|(t, c)| (t, c.cid))
            .collect();
        if clients.is_empty() {
            self.stopping = true;
            return;
        }
        for &(t, cid) in &clients {
            let c = &b.conns[t];
            if c.opts.protocol >= 1 {
                let line = b.client_info(cid, c.addr);
                b.conns.queue(t, line.as_bytes());
            }
        }
        let grace = b.cfg.lame_duck_grace;
        let spread = b
            .cfg
            .lame_duck_duration
            .saturating_sub(grace)
            .max(Duration::from_secs(1));
        let interval = (spread / clients.len() as u32).min(Duration::from_secs(1));
        self.lame_duck = Some(LameDuck {
            clients,
            next_at: b.conns.now + grace,
            interval,
            closing: false,
        });
    }

    fn lame_duck_step(&mut self) {
        let now = self.broker.conns.now;
        let Some(ld) = &mut self.lame_duck else {
            return;
        };
        if now < ld.next_at {
            return;
        }
        if !ld.closing {
            ld.closing = true;
            log_info!("Closing existing clients");
        }
        // Close as many as the elapsed time allows (at least one), like nats-server's batches.
        let due = 1
            + (now.saturating_duration_since(ld.next_at).as_nanos() / ld.interval.as_nanos().max(1))
                as usize;
        for _ in 0..due {
            let Some((t, cid)) = ld.clients.pop() else {
                break;
            };
            if self.broker.conns.get(t).is_some_and(|c| c.cid == cid) {
                self.broker.conns.close(t, CloseReason::ServerShutdown);
            }
        }
        let half = ld.interval / 2;
        let jitter =
            Duration::from_nanos(self.broker.rng.next_u64() % half.as_nanos().max(1) as u64);
        ld.next_at = now + half + jitter;
        if ld.clients.is_empty() {
            self.stopping = true;
        }
    }
}

/// Hands bytes from connection `t` to whoever speaks its protocol.
fn process(b: &mut Broker, cluster: &mut Option<Cluster>, t: usize, data: &[u8]) -> usize {
    match cluster {
        Some(cl) if !b.conns[t].is_client() => cl.input(b, t, data),
        _ => b.process(t, data),
    }
}
