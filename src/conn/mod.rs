//! Connections: one NATS connection (a client or a route) and the table that holds them all.
//!
//! - `mod.rs` (here): `Conn`, its kind and the state a route carries;
//! - `io.rs`: a connection's buffers, the one read and the one write loop;
//! - `table.rs`: the slab of connections, queueing output, the dirty list, closing;
//! - `timers.rs`: auth timeout, PINGs and the write deadline;
//! - `stall.rs`: producer stalls and slow consumers;
//! - `close.rs`: why a connection closed, and the log of closed ones (/connz?state=closed).
//!
//! Input: the loop reads into a shared buffer; only when a read ends inside a frame does the
//! connection get bytes of its own (`inbuf`), and further reads go straight into them until
//! the frame completes (`need` says how many bytes that takes). Idle connections hold no
//! buffers at all. Output: everything for the peer is appended to `out`; `flush` writes it
//! with as few syscalls as the socket allows.

pub mod close;
pub mod io;
pub mod stall;
pub mod table;
pub mod timers;

pub use close::CloseReason;
pub use table::Table;

use crate::config::RouteUrl;
use crate::subject::perms::ConnPerms;
use crate::subject::sublist::SubId;
use crate::util::hash::FastMap;
use mio::net::TcpStream;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

/// What the client told us in CONNECT. Before CONNECT, verbose, pedantic and echo are true.
#[derive(Clone, Debug)]
pub struct ClientOpts {
    pub verbose: bool,
    pub pedantic: bool,
    pub echo: bool,
    pub headers: bool,
    pub no_responders: bool,
    pub protocol: i64,
    pub name: String,
    pub lang: String,
    pub version: String,
    pub user: String,
}

impl Default for ClientOpts {
    fn default() -> ClientOpts {
        ClientOpts {
            verbose: true,
            pedantic: true,
            echo: true,
            headers: false,
            no_responders: false,
            protocol: 0,
            name: String::new(),
            lang: String::new(),
            version: String::new(),
            user: String::new(),
        }
    }
}

/// The credential fields of CONNECT, kept so a config reload can check them again.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub pass: String,
    pub token: String,
    pub account: String,
}

/// What is at the other end. A route carries its state, so a route connection is never
/// without it (`cluster/` drives it; the core reads `registered`).
#[derive(Debug)]
pub enum Kind {
    Client,
    Route(Box<RouteState>),
}

/// One route connection's state.
#[derive(Debug, Default)]
pub struct RouteState {
    /// The URL we dialled, if we did (None: accepted on the cluster port).
    pub dialled: Option<RouteUrl>,
    /// A configured route (`--routes`): redialled forever.
    pub explicit: bool,
    /// Failed dial attempts so far (gossiped routes give up after `connect_retries`).
    pub attempts: u32,
    /// Redial when this closes even if we did not dial it (set on the survivor of a
    /// duplicate pair, as nats-server does, so two crossed closes cannot lose the route).
    pub retry: bool,
    /// An accepted route sent a valid CONNECT: only then is anything else it sends acted on.
    pub connect_received: bool,
    pub info_received: bool,
    /// Registered under its server id: it may get interest and messages.
    pub registered: bool,
    pub remote_id: String,
    pub remote_name: String,
    /// Where the remote accepts routes, from its INFO (for redialling an accepted route).
    pub remote_host: String,
    pub remote_port: u16,
    /// The remote's client URLs, offered to our clients for failover.
    pub connect_urls: Vec<String>,
    /// Remote interest: `account subject[ queue]` -> (account index, subscription).
    pub subs: FastMap<Box<[u8]>, (usize, SubId)>,
}

/// Per-connection message counters, as /connz reports them.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counters {
    pub in_msgs: u64,
    pub in_bytes: u64,
    pub out_msgs: u64,
    pub out_bytes: u64,
}

pub struct Conn {
    pub sock: TcpStream,
    pub kind: Kind,
    /// The loop source that speaks this connection's protocol (routes: the cluster's); None
    /// for a client, which the core serves.
    pub owner: Option<usize>,
    pub cid: u64,
    pub addr: SocketAddr,
    pub started: Instant,
    pub started_wall: SystemTime,
    pub opts: ClientOpts,
    /// CONNECT was received and accepted (for routes: the handshake is done).
    pub connected: bool,
    /// A PING after CONNECT was answered (the first one may carry a fresh INFO).
    pub ponged: bool,
    /// The credentials it connected with, if any.
    pub creds: Option<Box<Credentials>>,
    /// Set when authentication is required and CONNECT has not arrived yet.
    pub auth_deadline: Option<Instant>,
    pub closing: Option<CloseReason>,

    /// Bytes of a frame that a read split; `in_len` of them are valid.
    pub inbuf: Vec<u8>,
    pub in_len: usize,
    /// Total bytes the frame at the start of `inbuf` needs before it can be parsed.
    pub need: usize,

    pub out: Vec<u8>,
    pub out_pos: usize,
    /// Queued on the table's dirty list for the end-of-pass flush.
    pub dirty: bool,
    /// WRITABLE interest is registered.
    pub want_write: bool,
    /// Since when the socket has taken no bytes while some wait (set when a flush leaves
    /// bytes behind, moved on each write that makes progress): the write deadline.
    pub last_write: Instant,

    /// The account (index into the broker's accounts) this connection lives in.
    pub account: usize,
    /// Publish/subscribe permissions of its user, if restricted.
    pub perms: Option<Box<ConnPerms>>,
    /// Subscriptions by sid.
    pub subs: FastMap<Box<[u8]>, SubId>,

    pub pings_out: u32,
    pub next_ping: Instant,
    pub last_ping_sent: Option<Instant>,
    /// Round trip: accept to CONNECT at first, then PING to PONG.
    pub rtt: Duration,
    /// Last CONNECT, message in or out, or subscription change (nats-server's `last`).
    pub last_activity: Instant,
    /// Last PING from the peer: like activity, it makes our own PING moot.
    pub last_ping_in: Instant,
    /// The time of this connection's live entry in the timer heap.
    pub timer_at: Option<Instant>,
    /// This producer is paused until a consumer it fed drains (or the stall times out).
    pub stalled: bool,
    /// Bytes the socket has taken in all (stall.rs measures a consumer's drain with it).
    pub written: u64,
    /// Set while this consumer, found not draining, paces no producer (stall.rs).
    pub lag: Option<stall::Lag>,
    pub counters: Counters,
}

impl Conn {
    pub fn new(sock: TcpStream, kind: Kind, cid: u64, addr: SocketAddr, now: Instant) -> Conn {
        Conn {
            sock,
            kind,
            owner: None,
            cid,
            addr,
            started: now,
            started_wall: SystemTime::now(),
            opts: ClientOpts::default(),
            connected: false,
            ponged: false,
            creds: None,
            auth_deadline: None,
            closing: None,
            inbuf: Vec::new(),
            in_len: 0,
            need: 0,
            out: Vec::new(),
            out_pos: 0,
            dirty: false,
            want_write: false,
            last_write: now,
            account: 0,
            perms: None,
            subs: crate::util::hash::new_map(),
            pings_out: 0,
            next_ping: now,
            last_ping_sent: None,
            rtt: Duration::ZERO,
            last_activity: now,
            last_ping_in: now,
            timer_at: None,
            stalled: false,
            written: 0,
            lag: None,
            counters: Counters::default(),
        }
    }

    #[inline]
    pub fn is_client(&self) -> bool {
        matches!(self.kind, Kind::Client)
    }

    /// The route's state, if this is a route.
    #[inline]
    pub fn route(&self) -> Option<&RouteState> {
        match &self.kind {
            Kind::Route(r) => Some(r),
            Kind::Client => None,
        }
    }

    pub fn route_mut(&mut self) -> Option<&mut RouteState> {
        match &mut self.kind {
            Kind::Route(r) => Some(r),
            Kind::Client => None,
        }
    }

    /// A route that completed its handshake (the only kind that gets messages and interest).
    #[inline]
    pub fn is_registered_route(&self) -> bool {
        self.route().is_some_and(|r| r.registered)
    }

    /// Bytes queued for the peer and not yet taken by the socket.
    #[inline]
    pub fn pending(&self) -> usize {
        self.out.len() - self.out_pos
    }

    /// How the connection names itself in logs: `ip:port - cid:N` (`rid:N` for routes).
    pub fn label(&self) -> String {
        let kind = match self.kind {
            Kind::Client => "cid",
            Kind::Route(_) => "rid",
        };
        format!("{} - {}:{}", self.addr, kind, self.cid)
    }
}
