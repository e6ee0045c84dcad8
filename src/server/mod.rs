//! The poll loop: one thread, one `mio::Poll`, every socket nonblocking and edge-triggered.
//!
//! One pass of the loop:
//! 1. wait for readiness, no longer than the earliest deadline of the connections (timers,
//!    stalls), of the client listener's backoff and of each source;
//! 2. dispatch: accept clients; read every readable connection until WouldBlock or until its
//!    per-pass budget is spent (then it is revisited next pass without waiting), its bytes
//!    parsed straight out of one shared read buffer and acted on (`read.rs`); hand every other
//!    token to the source whose range holds it;
//! 3. end of pass: each source's work (`Source::end_of_pass`), then the connections' (end
//!    stalls whose consumers drained, run due timers), then write every connection that got
//!    output (one write each, WRITABLE interest only while bytes remain), then free the
//!    connections marked closing (their owners clean up after them).
//!
//! The loop knows sources, not features (`source.rs`): clustering, monitoring and lame-duck
//! mode are plugged in. Signals arrive through a signalfd registered with the same poll;
//! helper threads wake it through the one `mio::Waker`.

pub mod lame_duck;
pub mod listener;
mod read;
pub mod signals;
pub mod source;

pub use read::process;

use crate::config::flags::{self, Flags};
use crate::config::{reload, Config, READ_CHUNK};
use crate::core::broker::Broker;
use crate::protocol::info::{self, Identity};
use crate::util::logger;
use lame_duck::LameDuck;
use listener::{listen_addr, Listener};
use log::{debug, error, info, warn};
use mio::event::Event;
use mio::{Events, Poll, Token, Waker};
use signals::{Signal, Signals};
use source::{source_of, Cx, Others, Plug, ServerEvent, Source, SourceId};
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

const LISTENER: Token = Token(usize::MAX - 1);
const SIGNALS: Token = Token(usize::MAX - 2);
/// Helper threads have results (`util/worker.rs`).
const WAKER: Token = Token(usize::MAX - 3);

pub struct Server {
    poll: Poll,
    /// Where clients connect (closed in lame-duck mode).
    listener: Option<Listener>,
    signals: Signals,
    /// The one waker of this poll, shared by every helper thread.
    waker: Arc<Waker>,
    /// Shared by every connection whose previous read ended on a frame boundary.
    rbuf: Vec<u8>,
    /// Connections that still had bytes when their read budget ran out.
    pending_reads: Vec<usize>,
    broker: Broker,
    /// The subsystems plugged into the loop; a source's id is its index here.
    sources: Vec<Box<dyn Source>>,
    /// The command line, kept so a reload rebuilds the config exactly as at start.
    flags: Flags,
    stopping: bool,
}

impl Server {
    /// Binds the client port and sets up the loop, with lame-duck mode as its first source.
    pub fn new(cfg: Config, flags: Flags) -> io::Result<Server> {
        let signals = Signals::new()?;
        let poll = Poll::new()?;
        let addr = listen_addr(&cfg.host, cfg.port)?;
        let listener = Listener::bind(addr, "Client", poll.registry(), LISTENER)?;
        let bound = listener.local_addr()?;
        signals.register(poll.registry(), SIGNALS)?;
        let id = info::new_server_id();
        let name = if cfg.server_name.is_empty() {
            id.clone()
        } else {
            cfg.server_name.clone()
        };
        let urls = listener::client_urls(&cfg.host, bound.port());
        let ident = Identity::new(id, name, cfg.host.clone(), bound.port(), urls);
        info!("Starting tern");
        info!(
            "  Version:  {} (tern v{})",
            crate::config::NATS_VERSION,
            crate::config::VERSION
        );
        info!("  Name:     {}", ident.name);
        info!("  ID:       {}", ident.id);
        info!("Listening for client connections on {}", bound);
        let broker = Broker::new(cfg, ident, poll.registry().try_clone()?);
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        Ok(Server {
            poll,
            listener: Some(listener),
            signals,
            waker,
            rbuf: vec![0; READ_CHUNK],
            pending_reads: Vec::new(),
            broker,
            sources: vec![Box::new(LameDuck::default())],
            flags,
            stopping: false,
        })
    }

    /// Plugs a subsystem in: `plug` gets its context (its token range, the waker) and
    /// returns its source, or None when the config does not turn it on.
    pub fn plug(&mut self, plug: Plug) -> io::Result<()> {
        let id = self.sources.len();
        let mut cx = Cx {
            broker: &mut self.broker,
            waker: &self.waker,
            id,
            stop: &mut self.stopping,
            others: Others {
                before: &mut self.sources,
                after: &mut [],
            },
        };
        if let Some(source) = plug(&mut cx)? {
            self.sources.push(source);
        }
        Ok(())
    }

    /// The address clients connect to (useful when the port was random).
    pub fn port(&self) -> u16 {
        self.broker.ident.port
    }

    pub fn run(&mut self) -> io::Result<()> {
        info!("Server is ready");
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
                self.dispatch(ev);
            }
            self.end_of_pass();
        }
        info!("Initiating Shutdown...");
        if let Some(l) = self.listener.take() {
            l.close(self.poll.registry());
        }
        self.broadcast(ServerEvent::Shutdown);
        self.broker.conns.close_all();
        self.reap();
        info!("Server Exiting..");
        Ok(())
    }

    fn dispatch(&mut self, ev: &Event) {
        match ev.token() {
            LISTENER => self.accept(),
            SIGNALS => self.on_signals(),
            WAKER => {
                for id in 0..self.sources.len() {
                    self.with_source(id, |s, cx| s.woken(cx));
                }
            }
            Token(t) => match source_of(t) {
                Some(id) => self.with_source(id, |s, cx| s.ready(cx, Token(t), ev)),
                None => {
                    let to_the_end = ev.is_read_closed() || ev.is_error();
                    if ev.is_readable() || to_the_end {
                        self.read(t, to_the_end);
                    }
                    if ev.is_writable() && self.broker.conns.contains(t) {
                        self.broker.conns.flush(t);
                    }
                }
            },
        }
    }

    /// Runs `f` on source `id` with its context; the others are lent to it around it.
    fn with_source(&mut self, id: SourceId, f: impl FnOnce(&mut dyn Source, &mut Cx)) {
        if id >= self.sources.len() {
            return;
        }
        let (before, rest) = self.sources.split_at_mut(id);
        let Some((source, after)) = rest.split_first_mut() else {
            return;
        };
        let mut cx = Cx {
            broker: &mut self.broker,
            waker: &self.waker,
            id,
            stop: &mut self.stopping,
            others: Others { before, after },
        };
        f(source.as_mut(), &mut cx);
    }

    /// Tells every source what happened to the server.
    fn broadcast(&mut self, ev: ServerEvent) {
        for id in 0..self.sources.len() {
            self.with_source(id, |s, cx| s.event(cx, ev));
        }
    }

    fn poll_timeout(&self) -> Option<Duration> {
        if !self.pending_reads.is_empty()
            || !self.broker.conns.wake.is_empty()
            || self.sources.iter().any(|s| s.busy())
        {
            return Some(Duration::ZERO);
        }
        let retry = self.listener.as_ref().and_then(Listener::retry_at);
        let sources = self.sources.iter().filter_map(|s| s.deadline());
        let deadline = (self.broker.conns.next_deadline().into_iter())
            .chain(retry)
            .chain(sources)
            .min();
        deadline.map(|d| d.saturating_duration_since(Instant::now()))
    }

    fn end_of_pass(&mut self) {
        let mut again = std::mem::take(&mut self.pending_reads);
        again.append(&mut self.broker.conns.wake);
        for t in again {
            // Left unread by the budget, or a stall that ended: read to WouldBlock.
            self.read(t, true);
        }
        if (self.listener.as_ref()).is_some_and(|l| l.due(self.broker.conns.now)) {
            self.accept();
        }
        for id in 0..self.sources.len() {
            self.with_source(id, |s, cx| s.end_of_pass(cx));
        }
        let conns = &mut self.broker.conns;
        conns.check_stalls();
        conns.fire_timers();
        conns.flush_dirty();
        self.reap();
    }

    /// Frees the connections marked closing; the sources that owned some clean up after them.
    fn reap(&mut self) {
        for c in self.broker.reap() {
            if let Some(id) = c.owner {
                self.with_source(id, |s, cx| s.closed(cx, c));
            }
        }
    }

    fn accept(&mut self) {
        let Some(l) = &mut self.listener else {
            return;
        };
        let b = &mut self.broker;
        l.accept_all(b.conns.now, |sock, addr| {
            b.add_client(sock, addr);
        });
    }

    fn on_signals(&mut self) {
        for sig in self.signals.read() {
            debug!("Trapped \"{}\" signal", sig.name());
            match sig {
                Signal::Interrupt => self.stopping = true,
                // As nats-server: SIGTERM does not cut a lame-duck exit short.
                Signal::Terminate if !self.broker.ident.lame_duck => self.stopping = true,
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
        self.broadcast(ServerEvent::Reload);
        info!("Reloaded server configuration");
        Ok(())
    }

    /// Stops accepting and says so in INFO; the sources do the rest (lame_duck.rs closes the
    /// clients, the cluster tells the routes).
    fn enter_lame_duck(&mut self) {
        if self.broker.ident.lame_duck || self.stopping {
            return;
        }
        info!("Entering lame duck mode, stop accepting new clients");
        if let Some(l) = self.listener.take() {
            l.close(self.poll.registry());
        }
        self.broker.ident.lame_duck = true;
        self.broadcast(ServerEvent::LameDuck);
    }
}
