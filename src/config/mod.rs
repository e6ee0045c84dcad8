//! Settings: every option, default and limit of the server in one place (here), and where
//! they come from: the file format (`syntax.rs`, read by `reader.rs`), the file's option
//! names (`keys.rs`, with typed values from `values.rs`), the command-line flags
//! (`flags.rs`), and what a reload may not change (`reload.rs`).
//!
//! `Config` is plain data: the command line and the config file build one before the loop
//! starts (the settings both give go through `Config::set`), and the loop only reads it. A
//! reload builds a fresh `Config` and swaps it in whole; nothing mutates a live one field by
//! field.

pub mod flags;
pub mod jetstream;
pub mod keys;
mod reader;
#[cfg(test)]
mod reader_tests;
pub mod reload;
pub mod syntax;
#[cfg(test)]
mod syntax_tests;
pub mod values;

use crate::subject::perms::Permissions;
use crate::util::logger::LogSettings;
use std::time::Duration;

/// tern's own version (`-v`, the startup log, and INFO's `go` field).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The nats-server release whose protocol, API and behaviour tern implements: INFO and /varz
/// report it as `version`, because clients choose their APIs from it (nats.py uses the 2.9
/// consumer-create subjects only for servers >= 2.9; Go's key-value store refuses < 2.6.2).
pub const NATS_VERSION: &str = "2.9.10";
/// What INFO calls `go`: the toolchain that built the server, which clients only display; tern
/// puts its own name and version there.
pub const BUILT_WITH: &str = concat!("tern v", env!("CARGO_PKG_VERSION"));

/// Client port nats-server listens on by default.
pub const DEFAULT_PORT: u16 = 4222;
/// Longest argument part of one protocol line a client may send (nats: MAX_CONTROL_LINE_SIZE).
pub const DEFAULT_MAX_CONTROL_LINE: usize = 4096;
/// Largest message payload a client may publish (nats: MAX_PAYLOAD_SIZE).
pub const DEFAULT_MAX_PAYLOAD: usize = 1024 * 1024;
/// Unsent bytes a connection may hold before it is cut off as a slow consumer.
pub const DEFAULT_MAX_PENDING: usize = 64 * 1024 * 1024;
/// How long a connection may hold unsent bytes without the socket taking any.
pub const DEFAULT_WRITE_DEADLINE: Duration = Duration::from_secs(10);
/// How often an idle client is PINGed.
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(120);
/// Unanswered PINGs tolerated before `Stale Connection`.
pub const DEFAULT_MAX_PINGS_OUT: u32 = 2;
/// The first PING goes out this soon after CONNECT (plus up to 20% jitter), to measure RTT.
pub const FIRST_PING_INTERVAL: Duration = Duration::from_secs(2);
/// The first PING to a new route (nats-server: firstPingInterval).
pub const FIRST_ROUTE_PING: Duration = Duration::from_secs(1);
/// Time a client has to send CONNECT when authentication is required.
pub const DEFAULT_AUTH_TIMEOUT: Duration = Duration::from_secs(2);
/// Open client connections accepted at once (nats: DEFAULT_MAX_CONNECTIONS).
pub const DEFAULT_MAX_CONNECTIONS: usize = 64 * 1024;

/// Bytes taken from a socket per read call. One shared buffer of this size serves every
/// connection whose previous read ended on a frame boundary.
pub const READ_CHUNK: usize = 64 * 1024;
/// Reads of one connection per loop pass before it yields to the others (fairness).
pub const READS_PER_PASS: usize = 4;
/// A producer that delivers to a connection holding more than this many unsent bytes pauses
/// (its socket is not read) until that connection drains or the stall expires. This is the
/// flow control that keeps fast producers from filling memory; nats-server "stalls" too.
pub const STALL_WATER: usize = 1024 * 1024;
/// A stall never lasts longer than this, so a consumer that never reads cannot block its
/// producers; it is cut off by max_pending or the write deadline instead.
pub const STALL_MAX: Duration = Duration::from_millis(250);
/// A consumer that drains less than this in a stall (1 MiB/s) stops pacing its producers
/// (stall.rs): one subscriber that stopped reading must not set the pace of the others.
pub const STALL_DRAIN: usize = 256 * 1024;
/// A drained write buffer keeps its capacity up to this size while its connection is busy
/// (reallocating and faulting in fresh pages for every burst cost more than the copies
/// themselves); larger ones are freed at once. A buffer is given back when its connection
/// has been quiet for a ping interval.
pub const OUT_KEEP: usize = 2 * 1024 * 1024;
/// Once this many bytes were queued since the last flush, dirty connections are written
/// between reads instead of at the end of the pass, so one pass of a wide fan-out cannot
/// pile up (fan-out × input) bytes in user space. Each subscriber still gets large writes.
pub const FLUSH_AT: usize = 1024 * 1024;

/// A user allowed to connect.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub password: String,
    pub permissions: Option<Permissions>,
    /// The account the user belongs to; empty means the global account `$G`.
    pub account: String,
}

/// How clients authenticate. No users and no token means no authentication.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Auth {
    pub users: Vec<User>,
    pub token: Option<String>,
    pub timeout: Option<Duration>,
    /// The user a client without credentials becomes.
    pub no_auth_user: Option<String>,
}

impl Auth {
    pub fn required(&self) -> bool {
        !self.users.is_empty() || self.token.is_some()
    }

    /// What INFO says: with a no_auth_user, clients need not authenticate (nats-server).
    pub fn advertised(&self) -> bool {
        self.required() && self.no_auth_user.is_none()
    }
}

/// A route to dial: `nats-route://[user:pass@]host:port` (or `nats://`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteUrl {
    pub host: String,
    pub port: u16,
    pub user: Option<String>,
    pub pass: Option<String>,
}

impl RouteUrl {
    pub fn parse(s: &str) -> Result<RouteUrl, String> {
        let bad = || format!("invalid route URL {s:?}");
        let rest = s
            .trim()
            .split_once("://")
            .map(|(_, r)| r)
            .unwrap_or(s.trim());
        let rest = rest.trim_end_matches('/');
        let (creds, hostport) = match rest.rsplit_once('@') {
            Some((c, h)) => (Some(c), h),
            None => (None, rest),
        };
        let (host, port) = hostport.rsplit_once(':').ok_or_else(bad)?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(bad());
        }
        let port = port.parse().map_err(|_| bad())?;
        let (user, pass) = match creds.map(|c| c.split_once(':').unwrap_or((c, ""))) {
            Some((u, p)) => (Some(u.to_string()), Some(p.to_string())),
            None => (None, None),
        };
        Ok(RouteUrl {
            host: host.to_string(),
            port,
            user,
            pass,
        })
    }

    /// `host:port`, bracketing IPv6 literals.
    pub fn host_port(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Clustering: where routes are accepted, which to dial, and how they authenticate.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterConfig {
    /// None: a name is generated and the cluster's agreed name is adopted ("dynamic").
    pub name: Option<String>,
    pub host: String,
    /// `-1` picks a free port.
    pub port: i32,
    pub routes: Vec<RouteUrl>,
    /// Credentials routes must present (and that gossiped routes are dialled with).
    pub user: Option<String>,
    pub pass: Option<String>,
    pub auth_timeout: Option<Duration>,
    /// Do not tell clients about the other servers' URLs.
    pub no_advertise: bool,
    /// How many times a route learned by gossip is retried before giving up.
    pub connect_retries: u32,
}

/// A setting that both the command line (`flags.rs`) and the config file (`keys.rs`) give,
/// each under its own names: what it sets is written once, here (`Config::set`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Setting {
    Host(String),
    Port(i32),
    ServerName(String),
    PidFile(String),
    LogFile(String),
    LogTime(bool),
    Debug(bool),
    Trace(bool),
    HttpPort(u16),
    Token(String),
    ClusterHost(String),
    ClusterPort(i32),
    ClusterUser(String),
    ClusterPass(String),
    ClusterName(String),
    Routes(Vec<RouteUrl>),
    NoAdvertise(bool),
    ConnectRetries(u32),
    JetStream(bool),
    StoreDir(String),
}

/// The account every client without one belongs to.
pub const GLOBAL_ACCOUNT: &str = "$G";
/// The system account nats-server always has; tern keeps it (empty) so tools see the same.
pub const SYSTEM_ACCOUNT: &str = "$SYS";

/// How long lame-duck mode spreads client closes over, and the wait before it starts.
pub const DEFAULT_LAME_DUCK_DURATION: Duration = Duration::from_secs(120);
pub const DEFAULT_LAME_DUCK_GRACE: Duration = Duration::from_secs(10);

/// Everything the running server needs to know, read-only while the loop runs.
#[derive(Clone, Debug)]
pub struct Config {
    pub host: String,
    /// `-1` asks for a random port.
    pub port: i32,
    pub server_name: String,
    pub max_payload: usize,
    pub max_control_line: usize,
    pub max_connections: usize,
    /// 0 means unlimited.
    pub max_subs: usize,
    pub max_pending: usize,
    pub write_deadline: Duration,
    pub ping_interval: Duration,
    pub max_pings_out: u32,
    pub auth: Auth,
    /// Account names besides `$G`, in the order the config file defines them.
    pub accounts: Vec<String>,
    /// Monitoring HTTP listener (`-m`, `http`), if enabled.
    /// None: the client listen host, as nats-server.
    pub http_host: Option<String>,
    pub http_port: Option<u16>,
    pub lame_duck_duration: Duration,
    pub lame_duck_grace: Duration,
    /// Clustering, if enabled (`--cluster`, `cluster {}`).
    pub cluster: Option<ClusterConfig>,
    /// JetStream (`-js`, `jetstream {}`), and which accounts have it.
    pub js: jetstream::JetStreamConfig,
    /// The file the config was read from (reload re-reads it).
    pub config_file: Option<String>,
    pub debug: bool,
    pub trace: bool,
    pub logtime: bool,
    pub log_file: Option<String>,
    pub pid_file: Option<String>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            host: "0.0.0.0".to_string(),
            port: DEFAULT_PORT as i32,
            server_name: String::new(),
            max_payload: DEFAULT_MAX_PAYLOAD,
            max_control_line: DEFAULT_MAX_CONTROL_LINE,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_subs: 0,
            max_pending: DEFAULT_MAX_PENDING,
            write_deadline: DEFAULT_WRITE_DEADLINE,
            ping_interval: DEFAULT_PING_INTERVAL,
            max_pings_out: DEFAULT_MAX_PINGS_OUT,
            auth: Auth::default(),
            accounts: Vec::new(),
            http_host: None,
            http_port: None,
            lame_duck_duration: DEFAULT_LAME_DUCK_DURATION,
            lame_duck_grace: DEFAULT_LAME_DUCK_GRACE,
            cluster: None,
            js: jetstream::JetStreamConfig::default(),
            config_file: None,
            debug: false,
            trace: false,
            logtime: true,
            log_file: None,
            pid_file: None,
        }
    }
}

impl Config {
    /// Where the monitoring port listens.
    pub fn http_host(&self) -> &str {
        self.http_host.as_deref().unwrap_or(&self.host)
    }

    pub fn auth_timeout(&self) -> Duration {
        self.auth.timeout.unwrap_or(DEFAULT_AUTH_TIMEOUT)
    }

    /// Applies one setting (later ones win, as on nats-server where flags override the file).
    pub fn set(&mut self, s: Setting) {
        match s {
            Setting::Host(h) => self.host = h,
            Setting::Port(p) => self.port = p,
            Setting::ServerName(n) => self.server_name = n,
            Setting::PidFile(f) => self.pid_file = Some(f),
            Setting::LogFile(f) => self.log_file = Some(f),
            Setting::LogTime(on) => self.logtime = on,
            Setting::Debug(on) => self.debug = on,
            Setting::Trace(on) => self.trace = on,
            Setting::HttpPort(p) => self.http_port = Some(p),
            Setting::Token(t) => self.auth.token = Some(t),
            Setting::ClusterHost(h) => self.cluster_mut().host = h,
            Setting::ClusterPort(p) => self.cluster_mut().port = p,
            Setting::ClusterUser(u) => self.cluster_mut().user = Some(u),
            Setting::ClusterPass(p) => self.cluster_mut().pass = Some(p),
            Setting::ClusterName(n) => self.cluster_mut().name = Some(n),
            Setting::Routes(r) => self.cluster_mut().routes = r,
            Setting::NoAdvertise(on) => self.cluster_mut().no_advertise = on,
            Setting::ConnectRetries(n) => self.cluster_mut().connect_retries = n,
            Setting::JetStream(on) => self.js.enabled = on,
            Setting::StoreDir(d) => self.js.store_dir = d,
        }
    }

    /// The cluster settings, created by the first setting that needs them.
    pub fn cluster_mut(&mut self) -> &mut ClusterConfig {
        self.cluster.get_or_insert_with(ClusterConfig::default)
    }

    /// What the logger is told (at start, on reload and on SIGUSR1).
    pub fn log_settings(&self) -> LogSettings {
        LogSettings {
            debug: self.debug,
            trace: self.trace,
            time: self.logtime,
            file: self.log_file.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_urls() {
        let u = RouteUrl::parse("nats-route://ruser:T0pS3cr3t@127.0.0.1:6222/").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("127.0.0.1", 6222));
        assert_eq!(
            (u.user.as_deref(), u.pass.as_deref()),
            (Some("ruser"), Some("T0pS3cr3t"))
        );
        let u = RouteUrl::parse("nats://[::1]:4248").unwrap();
        assert_eq!(
            (u.host.as_str(), u.host_port()),
            ("::1", "[::1]:4248".to_string())
        );
        assert_eq!(RouteUrl::parse("seed:4248").unwrap().host, "seed");
        for bad in ["nats://host", "nats://:1", "nats://h:x", "nats://h:70000"] {
            assert!(RouteUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
