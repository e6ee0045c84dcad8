//! One connection: its socket, protocol state, carried input, write buffer and timers.
//!
//! Input: the loop reads into a shared buffer; only when a read ends inside a frame does the
//! connection get bytes of its own (`inbuf`), and further reads go straight into them until
//! the frame completes (`need` says how many bytes that takes). Idle connections hold no
//! buffers at all.
//!
//! Output: everything for the peer is appended to `out`; `flush` writes it with as few
//! syscalls as the socket allows and reports whether bytes remain, so the loop registers
//! WRITABLE interest only while they do. `pending()` is what max_pending is checked against.

pub mod stall;

use crate::config::{OUT_KEEP, READ_CHUNK};
use crate::subject::perms::ConnPerms;
use crate::subject::sublist::SubId;
use crate::util::hash::FastMap;
use mio::net::TcpStream;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Instant, SystemTime};

/// Why a connection was closed, in nats-server's words (logs and /connz).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    ClientClosed,
    AuthTimeout,
    AuthViolation,
    SlowConsumerPending,
    SlowConsumerDeadline,
    WriteError,
    ReadError,
    ParseError,
    StaleConnection,
    ProtocolViolation,
    BadClientProtocol,
    MaxConnections,
    MaxPayload,
    MaxControlLine,
    ServerShutdown,
    NoRespondersHeaders,
    DuplicateRoute,
    DuplicateServerName,
    ClusterNameConflict,
}

impl CloseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::ClientClosed => "Client Closed",
            CloseReason::AuthTimeout => "Authentication Timeout",
            CloseReason::AuthViolation => "Authentication Failure",
            CloseReason::SlowConsumerPending => "Slow Consumer (Pending Bytes)",
            CloseReason::SlowConsumerDeadline => "Slow Consumer (Write Deadline)",
            CloseReason::WriteError => "Write Error",
            CloseReason::ReadError => "Read Error",
            CloseReason::ParseError => "Parse Error",
            CloseReason::StaleConnection => "Stale Connection",
            CloseReason::ProtocolViolation => "Protocol Violation",
            CloseReason::BadClientProtocol => "Bad Client Protocol Version",
            CloseReason::MaxConnections => "Maximum Connections Exceeded",
            CloseReason::MaxPayload => "Maximum Message Payload Exceeded",
            CloseReason::MaxControlLine => "Maximum Control Line Exceeded",
            CloseReason::ServerShutdown => "Server Shutdown",
            CloseReason::NoRespondersHeaders => "No Responders Requires Headers",
            CloseReason::DuplicateRoute => "Duplicate Route",
            CloseReason::DuplicateServerName => "Duplicate Server Name",
            CloseReason::ClusterNameConflict => "Cluster Name Conflict",
        }
    }

    /// Slow consumers are cut off without flushing what they failed to read.
    pub fn skips_flush(self) -> bool {
        matches!(
            self,
            CloseReason::SlowConsumerPending
                | CloseReason::SlowConsumerDeadline
                | CloseReason::WriteError
                | CloseReason::ReadError
        )
    }
}

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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Client,
    Route,
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
    /// Queued on the loop's dirty list for the end-of-pass flush.
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
    /// Route connections only: the route's state (remote server, its interest, ...).
    pub route: Option<Box<crate::cluster::RouteState>>,
    /// Subscriptions by sid.
    pub subs: FastMap<Box<[u8]>, SubId>,

    pub pings_out: u32,
    pub next_ping: Instant,
    pub last_ping_sent: Option<Instant>,
    /// Round trip: accept to CONNECT at first, then PING to PONG.
    pub rtt: std::time::Duration,
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
    pub lag: Option<crate::conn::stall::Lag>,
    pub counters: Counters,
}

pub enum ReadOutcome {
    /// Some bytes arrived.
    Data(usize),
    /// Nothing more until the next readiness event.
    WouldBlock,
    /// The peer closed or the socket failed.
    Closed(CloseReason),
}

impl Conn {
    pub fn new(sock: TcpStream, kind: Kind, cid: u64, addr: SocketAddr, now: Instant) -> Conn {
        Conn {
            sock,
            kind,
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
            route: None,
            subs: crate::util::hash::new_map(),
            pings_out: 0,
            next_ping: now,
            last_ping_sent: None,
            rtt: std::time::Duration::ZERO,
            last_activity: now,
            last_ping_in: now,
            timer_at: None,
            stalled: false,
            written: 0,
            lag: None,
            counters: Counters::default(),
        }
    }

    /// Bytes queued for the peer and not yet taken by the socket.
    #[inline]
    pub fn pending(&self) -> usize {
        self.out.len() - self.out_pos
    }

    /// Reads once into `buf`, mapping errors to a close reason.
    pub fn read_into(sock: &mut TcpStream, buf: &mut [u8]) -> ReadOutcome {
        loop {
            match sock.read(buf) {
                Ok(0) => return ReadOutcome::Closed(CloseReason::ClientClosed),
                Ok(n) => return ReadOutcome::Data(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return ReadOutcome::WouldBlock,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return ReadOutcome::Closed(CloseReason::ReadError),
            }
        }
    }

    /// Makes room in `inbuf` for the next read: at least what the pending frame still needs.
    pub fn inbuf_room(&mut self) -> &mut [u8] {
        let want = self.need.max(self.in_len + READ_CHUNK);
        if self.inbuf.len() < want {
            self.inbuf.resize(want, 0);
        }
        &mut self.inbuf[self.in_len..]
    }

    /// Keeps the unparsed tail `rest` of a read from the shared buffer.
    pub fn carry(&mut self, rest: &[u8]) {
        let want = self.need.max(rest.len() + READ_CHUNK);
        if self.inbuf.len() < want {
            self.inbuf.resize(want, 0);
        }
        self.inbuf[..rest.len()].copy_from_slice(rest);
        self.in_len = rest.len();
    }

    /// Appends bytes that arrived behind a split frame.
    pub fn append_in(&mut self, data: &[u8]) {
        let end = self.in_len + data.len();
        if self.inbuf.len() < end {
            self.inbuf.resize(end, 0);
        }
        self.inbuf[self.in_len..end].copy_from_slice(data);
        self.in_len = end;
    }

    /// Drops the first `used` bytes of `inbuf`; frees it when nothing is left.
    pub fn consume_inbuf(&mut self, used: usize) {
        if used >= self.in_len {
            self.in_len = 0;
            self.need = 0;
            self.inbuf = Vec::new();
        } else if used > 0 {
            self.inbuf.copy_within(used..self.in_len, 0);
            self.in_len -= used;
        }
    }

    /// Writes as much of `out` as the socket takes. `Ok(true)` when everything went.
    pub fn flush(&mut self, now: Instant) -> io::Result<bool> {
        while self.out_pos < self.out.len() {
            match self.sock.write(&self.out[self.out_pos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.out_pos += n;
                    self.written += n as u64;
                    self.last_write = now;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Keep the unsent tail at the front once most of the buffer is sent.
                    if self.out_pos > self.out.len() / 2 {
                        self.out.drain(..self.out_pos);
                        self.out_pos = 0;
                    }
                    return Ok(false);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.out.clear();
        self.out_pos = 0;
        if self.out.capacity() > OUT_KEEP {
            self.out = Vec::new();
        }
        self.last_write = now;
        Ok(true)
    }

    /// Discards the write buffer (slow consumers, shutdown of dead sockets).
    pub fn drop_output(&mut self) {
        self.out = Vec::new();
        self.out_pos = 0;
    }

    /// How the connection names itself in logs: `ip:port - cid:N`.
    pub fn label(&self) -> String {
        let kind = match self.kind {
            Kind::Client => "cid",
            Kind::Route => "rid",
        };
        format!("{} - {}:{}", self.addr, kind, self.cid)
    }
}
