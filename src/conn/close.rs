//! Why a connection closed, and the most recently closed client connections as /connz shows
//! them (`?state=closed`): a snapshot is taken when a client connection is freed.

use super::Conn;
use crate::subject::sublist::Sublist;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

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

/// Closed connections remembered for monitoring (nats-server: DEFAULT_MAX_CLOSED_CLIENTS).
const MAX_CLOSED: usize = 10_000;
/// Subscriptions kept per closed connection.
const CLOSED_SUBS_MAX: usize = 1024;

/// A connection as /connz shows it (also kept for closed connections).
#[derive(Clone, Debug)]
pub struct ConnInfo {
    pub cid: u64,
    pub kind: &'static str,
    pub ip: String,
    pub port: u16,
    pub start: SystemTime,
    pub last_activity: SystemTime,
    pub stop: Option<SystemTime>,
    pub reason: Option<&'static str>,
    pub rtt: Duration,
    pub pending: usize,
    pub in_msgs: u64,
    pub out_msgs: u64,
    pub in_bytes: u64,
    pub out_bytes: u64,
    pub num_subs: usize,
    pub name: String,
    pub lang: String,
    pub version: String,
    pub user: String,
    pub account: String,
    /// (subject, queue, sid, delivered, max)
    pub subs: Vec<(String, String, String, u64, u64)>,
}

/// Wall-clock time of a loop instant of connection `c`: its start plus the loop time since,
/// so it is never before the start.
pub fn wall(c: &Conn, at: Instant) -> SystemTime {
    c.started_wall + at.saturating_duration_since(c.started)
}

/// A snapshot of connection `c` of account `account` (whose index is `sublist`), with its
/// subscriptions if asked.
pub fn snapshot(c: &Conn, account: &str, sublist: &Sublist, with_subs: bool) -> ConnInfo {
    let mut subs = Vec::new();
    if with_subs {
        for &id in c.subs.values().take(CLOSED_SUBS_MAX) {
            if let Some(s) = sublist.get(id) {
                let text = |v: &[u8]| String::from_utf8_lossy(v).into_owned();
                subs.push((
                    text(&s.subject),
                    s.queue.as_deref().map(text).unwrap_or_default(),
                    text(&s.sid),
                    s.delivered,
                    s.max,
                ));
            }
        }
    }
    subs.sort_by(|a, b| a.2.cmp(&b.2));
    ConnInfo {
        cid: c.cid,
        kind: if c.is_client() { "Client" } else { "Router" },
        ip: c.addr.ip().to_string(),
        port: c.addr.port(),
        start: c.started_wall,
        last_activity: wall(c, c.last_activity),
        stop: None,
        reason: None,
        rtt: c.rtt,
        pending: c.pending(),
        in_msgs: c.counters.in_msgs,
        out_msgs: c.counters.out_msgs,
        in_bytes: c.counters.in_bytes,
        out_bytes: c.counters.out_bytes,
        num_subs: c.subs.len(),
        name: c.opts.name.clone(),
        lang: c.opts.lang.clone(),
        version: c.opts.version.clone(),
        user: c.opts.user.clone(),
        account: account.to_string(),
        subs,
    }
}

impl ConnInfo {
    /// Only the id: a connection gone from both the open and the closed lists.
    pub fn stub(cid: u64) -> ConnInfo {
        ConnInfo {
            cid,
            kind: "Client",
            ip: String::new(),
            port: 0,
            start: SystemTime::UNIX_EPOCH,
            last_activity: SystemTime::UNIX_EPOCH,
            stop: None,
            reason: None,
            rtt: Duration::ZERO,
            pending: 0,
            in_msgs: 0,
            out_msgs: 0,
            in_bytes: 0,
            out_bytes: 0,
            num_subs: 0,
            name: String::new(),
            lang: String::new(),
            version: String::new(),
            user: String::new(),
            account: String::new(),
            subs: Vec::new(),
        }
    }
}

/// The most recently closed client connections, oldest first (shared with the /connz pages
/// being rendered).
#[derive(Default)]
pub struct ClosedLog {
    list: VecDeque<Rc<ConnInfo>>,
}

impl ClosedLog {
    /// Remembers a closed connection, forgetting the oldest past `MAX_CLOSED`.
    pub fn push(&mut self, info: ConnInfo) {
        if self.list.len() >= MAX_CLOSED {
            self.list.pop_front();
        }
        self.list.push_back(Rc::new(info));
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Rc<ConnInfo>> {
        self.list.iter()
    }
}
