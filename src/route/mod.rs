//! Clustering: route connections to other servers, tern or nats-server 2.9, in the same loop.
//!
//! A route is a `Conn` of kind `Route` with a `RouteState`. Its life:
//! - dialled (`--routes`, gossip, reconnect) or accepted on the cluster port. The dialler sends
//!   `CONNECT` and `INFO` at once; the acceptor sends `INFO` and checks the `CONNECT`
//!   (credentials, cluster name).
//! - on the first `INFO` the route is registered under the remote server id, unless it is a
//!   route to ourselves, to another cluster, or a second route to a registered server (the
//!   first one wins, as in nats-server). Registration sends our whole interest (`RS+`), tells
//!   the other routes about the new server (gossip: they dial it), and updates the URLs
//!   clients may fail over to (`connect_urls`).
//! - a later `INFO` naming another server makes us dial it: that is how one seed route grows
//!   into a full mesh.
//! - when it closes, its remote interest goes away, and a route we dialled is dialled again
//!   (configured routes forever, gossiped ones `connect_retries` times).
//!
//! Interest: each account counts its local subscriptions per subject (and per queue group);
//! `RS+` goes out when a plain subject goes 0 -> 1, `RS-` on 1 -> 0, and every change of a
//! queue group's count sends `RS+` with the new weight (or `RS-` at zero). Remote interest
//! lives in the account's subject index as subscriptions owned by the route, so one lookup
//! finds local subscribers and routes alike; `deliver.rs` sends each route one `RMSG`.

use crate::broker::Broker;
use crate::config::{RouteUrl, FIRST_ROUTE_PING};
use crate::conn::{CloseReason, Conn, Kind};
use crate::hash::{new_map, FastMap};
use crate::json::{self, Obj, Value};
use crate::proto;
use crate::sublist::{Sub, SubId};
use log::{debug, error, info};
use mio::net::TcpStream;
use mio::{Interest, Token};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Delay between attempts to dial a configured route.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);

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
    pub connect_received: bool,
    pub info_received: bool,
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

/// A dial waiting for its time.
#[derive(Debug)]
struct Dial {
    at: Instant,
    url: RouteUrl,
    explicit: bool,
    attempts: u32,
}

/// The broker's cluster state.
pub struct Cluster {
    pub name: String,
    /// No name was configured: adopt the cluster's.
    pub dynamic: bool,
    pub host: String,
    pub port: u16,
    /// Registered routes by remote server id.
    pub routes: FastMap<String, usize>,
    dials: Vec<Dial>,
    /// Addresses that turned out to be ourselves; never dialled again.
    self_urls: Vec<String>,
    /// Set while shutting down: closed routes are not redialled.
    pub stopping: bool,
    /// When the set of client URLs last changed (clients learn it on their first PING).
    pub urls_changed: Instant,
}

/// The client URLs of this server: the listen address, or every non-loopback interface
/// address when listening on all of them (as nats-server advertises).
pub fn client_urls(host: &str, port: u16) -> Vec<String> {
    let fmt = |ip: std::net::IpAddr| SocketAddr::new(ip, port).to_string();
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) if ip.is_unspecified() => {
            let mut urls = Vec::new();
            // SAFETY: getifaddrs gives a linked list we only read, then free once.
            unsafe {
                let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
                if libc::getifaddrs(&mut list) == 0 {
                    let mut p = list;
                    while !p.is_null() {
                        let a = (*p).ifa_addr;
                        if !a.is_null() {
                            let ip = match i32::from((*a).sa_family) {
                                libc::AF_INET => {
                                    let sin = &*(a as *const libc::sockaddr_in);
                                    Some(std::net::IpAddr::from(
                                        u32::from_be(sin.sin_addr.s_addr).to_be_bytes(),
                                    ))
                                }
                                libc::AF_INET6 if ip.is_ipv6() || host == "0.0.0.0" => {
                                    let sin6 = &*(a as *const libc::sockaddr_in6);
                                    Some(std::net::IpAddr::from(sin6.sin6_addr.s6_addr))
                                }
                                _ => None,
                            };
                            if let Some(ip) =
                                ip.filter(|ip| !ip.is_loopback() && !is_link_local(ip))
                            {
                                urls.push(fmt(ip));
                            }
                        }
                        p = (*p).ifa_next;
                    }
                    libc::freeifaddrs(list);
                }
            }
            urls.dedup();
            urls
        }
        Ok(ip) => vec![fmt(ip)],
        Err(_) => vec![format!("{host}:{port}")],
    }
}

fn is_link_local(ip: &std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => v4.is_link_local(),
        std::net::IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

/// A generated cluster name (nats-server generates one too when none is configured).
fn generated_name() -> String {
    let mut x = crate::hash::random_seed();
    (0..22)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"[(x % 62) as usize]
                as char
        })
        .collect()
}

/// What we read from a route's INFO.
struct RouteInfo {
    id: String,
    name: String,
    host: String,
    port: u16,
    cluster: String,
    dynamic: bool,
    headers: bool,
    lame_duck: bool,
    ip: String,
    connect_urls: Vec<String>,
}

fn parse_info(arg: &[u8]) -> Result<RouteInfo, String> {
    let v = json::parse(arg).map_err(|e| e.0)?;
    let s = |k: &str| {
        v.get_str(k)
            .map(|o| o.unwrap_or("").to_string())
            .map_err(|e| e.0)
    };
    let b = |k: &str| v.get_bool(k).map(|o| o.unwrap_or(false)).map_err(|e| e.0);
    let urls = match v.get("connect_urls") {
        Some(Value::Arr(items)) => items
            .iter()
            .filter_map(|i| i.as_str().map(String::from))
            .collect(),
        _ => Vec::new(),
    };
    Ok(RouteInfo {
        id: s("server_id")?,
        name: s("server_name")?,
        host: s("host")?,
        port: v
            .get_int("port")
            .map_err(|e| e.0)?
            .unwrap_or(0)
            .clamp(0, 65535) as u16,
        cluster: s("cluster")?,
        dynamic: b("cluster_dynamic")?,
        headers: b("headers")?,
        lame_duck: b("ldm")?,
        ip: s("ip")?,
        connect_urls: urls,
    })
}

impl Broker {
    /// Turns clustering on once the route listener is bound to `port`; configured routes are
    /// dialled in the first pass.
    pub fn start_cluster(&mut self, port: u16) {
        let Some(cc) = &self.cfg.cluster else { return };
        let (name, dynamic) = match &cc.name {
            Some(n) => (n.clone(), false),
            None => (generated_name(), true),
        };
        info!("Cluster name is {name}");
        let dials = cc.routes.iter().map(|url| Dial {
            at: self.now,
            url: url.clone(),
            explicit: true,
            attempts: 0,
        });
        self.cluster = Some(Cluster {
            name,
            dynamic,
            host: cc.host.clone(),
            port,
            routes: new_map(),
            dials: dials.collect(),
            self_urls: Vec::new(),
            stopping: false,
            urls_changed: self.now,
        });
    }

    /// The earliest pending dial.
    pub fn next_dial(&self) -> Option<Instant> {
        self.cluster.as_ref()?.dials.iter().map(|d| d.at).min()
    }

    /// Dials every route whose time has come.
    pub fn run_dials(&mut self) {
        let Some(cl) = &mut self.cluster else { return };
        if cl.dials.is_empty() || cl.stopping {
            return;
        }
        let now = self.now;
        let (due, later): (Vec<Dial>, Vec<Dial>) = std::mem::take(&mut cl.dials)
            .into_iter()
            .partition(|d| d.at <= now);
        cl.dials = later;
        for d in due {
            self.dial(d);
        }
    }

    fn already_routed(&self, url: &RouteUrl) -> bool {
        let target = url.host_port();
        self.conns.iter().any(|(_, c)| {
            c.route.as_ref().is_some_and(|r| {
                r.dialled.as_ref().is_some_and(|u| u.host_port() == target)
                    || (r.registered && format!("{}:{}", r.remote_host, r.remote_port) == target)
            })
        })
    }

    fn dial(&mut self, d: Dial) {
        let Some(cl) = &self.cluster else { return };
        if cl.self_urls.contains(&d.url.host_port()) || self.already_routed(&d.url) {
            return;
        }
        let addr = crate::resolve::resolve(&d.url.host, d.url.port).ok();
        let sock = match addr.map(TcpStream::connect) {
            Some(Ok(sock)) => sock,
            other => {
                let why = match other {
                    Some(Err(e)) => e.to_string(),
                    _ => "cannot resolve host".into(),
                };
                error!(
                    "Error trying to connect to route (attempt {}): {why}",
                    d.attempts + 1
                );
                return self.redial(d.url, d.explicit, d.attempts + 1, RECONNECT_DELAY);
            }
        };
        debug!("Trying to connect to route on {}", d.url.host_port());
        let state = RouteState {
            dialled: Some(d.url),
            explicit: d.explicit,
            attempts: d.attempts,
            ..RouteState::default()
        };
        let peer = addr.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        self.add_route(sock, peer, state);
    }

    /// Schedules another attempt unless the rules say to give up.
    fn redial(&mut self, url: RouteUrl, explicit: bool, attempts: u32, delay: Duration) {
        let retries = self.cfg.cluster.as_ref().map_or(0, |c| c.connect_retries);
        let jitter = Duration::from_millis(self.rand() % 100);
        let Some(cl) = &mut self.cluster else { return };
        if cl.stopping || (!explicit && attempts > retries) {
            return;
        }
        cl.dials.push(Dial {
            at: self.now + delay + jitter,
            url,
            explicit,
            attempts,
        });
    }

    /// Takes in a route connection (accepted, or dialled with `state.dialled` set).
    pub fn add_route(
        &mut self,
        mut sock: TcpStream,
        addr: SocketAddr,
        state: RouteState,
    ) -> Option<usize> {
        let _ = sock.set_nodelay(true);
        let dialled = state.dialled.is_some();
        let entry = self.conns.vacant_entry();
        let t = entry.key();
        let interest = if dialled {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        if let Err(e) = self.registry.register(&mut sock, Token(t), interest) {
            error!("Error registering route connection: {e}");
            return None;
        }
        let cid = self.next_cid;
        self.next_cid += 1;
        let mut c = Conn::new(sock, Kind::Route, cid, addr, self.now);
        // Until the handshake is done, only the auth timeout (if any) matters.
        c.next_ping = self.now + Duration::from_secs(3600);
        c.want_write = dialled;
        if !dialled {
            if let Some(cc) = self.cfg.cluster.as_ref().filter(|cc| cc.user.is_some()) {
                c.auth_deadline = Some(
                    self.now
                        + cc.auth_timeout
                            .unwrap_or(crate::config::DEFAULT_AUTH_TIMEOUT),
                );
            }
        }
        c.route = Some(Box::new(state));
        entry.insert(c);
        info!("{} - Route connection created", self.conns[t].label());
        if dialled {
            let connect = self.route_connect_line(t);
            self.queue(t, connect.as_bytes());
        }
        let info = self.route_info_json(false);
        self.queue(t, info.as_bytes());
        self.schedule(t);
        Some(t)
    }

    /// The CONNECT a dialling server sends (credentials from the route URL).
    fn route_connect_line(&self, t: usize) -> String {
        let cl = self.cluster.as_ref().expect("cluster on");
        let url = self.conns[t]
            .route
            .as_ref()
            .and_then(|r| r.dialled.as_ref());
        let mut s = String::from("CONNECT ");
        let mut o = Obj::new(&mut s);
        o.bool("echo", true)
            .bool("verbose", false)
            .bool("pedantic", false);
        if let Some(u) = url.and_then(|u| u.user.as_deref()) {
            o.str("user", u);
        }
        if let Some(p) = url.and_then(|u| u.pass.as_deref()) {
            o.str("pass", p);
        }
        o.bool("tls_required", false)
            .bool("headers", true)
            .str("name", &self.ident.id)
            .str("cluster", &cl.name);
        if cl.dynamic {
            o.bool("cluster_dynamic", true);
        }
        o.end();
        s.push_str("\r\n");
        s
    }

    /// Our route INFO (with `ldm` in lame-duck mode).
    pub fn route_info_json(&self, lame_duck: bool) -> String {
        let cl = self.cluster.as_ref().expect("cluster on");
        let cc = self.cfg.cluster.as_ref();
        let mut s = String::from("INFO ");
        let mut o = Obj::new(&mut s);
        o.str("server_id", &self.ident.id)
            .str("server_name", &self.ident.name)
            .str("version", crate::config::VERSION)
            .int("proto", 2)
            .str("go", crate::config::BUILT_WITH)
            .str("host", &cl.host)
            .uint("port", cl.port as u64)
            .bool("headers", true);
        if cc.is_some_and(|c| c.user.is_some()) {
            o.bool("auth_required", true);
        }
        o.uint("max_payload", self.cfg.max_payload as u64)
            .str("cluster", &cl.name);
        if cl.dynamic {
            o.bool("cluster_dynamic", true);
        }
        // nats-server does not hand its client URLs to the cluster when told not to advertise.
        if !cc.is_some_and(|c| c.no_advertise) {
            o.strs("connect_urls", &self.ident.client_urls);
        }
        if lame_duck {
            o.bool("ldm", true);
        }
        o.end();
        s.push_str(" \r\n");
        s
    }

    /// What a route's frame does.
    pub fn route_op(&mut self, t: usize, op: crate::parser::Op) {
        use crate::parser::Op;
        match op {
            Op::Connect(arg) => self.on_route_connect(t, arg),
            Op::Info(arg) => self.on_route_info(t, arg),
            Op::Ping => {
                self.conns[t].last_ping_in = self.now;
                self.queue(t, proto::PONG);
            }
            Op::Pong => self.on_pong(t),
            Op::RouteSub {
                account,
                subject,
                queue,
                weight,
            } => self.on_remote_sub(t, account, subject, queue, weight),
            Op::RouteUnsub {
                account,
                subject,
                queue,
            } => self.on_remote_unsub(t, account, subject, queue),
            Op::Pub(m) => {
                let c = &mut self.conns[t];
                c.counters.in_msgs += 1;
                c.counters.in_bytes += m.payload.len() as u64;
                c.last_activity = self.now;
                self.stats.in_msgs += 1;
                self.stats.in_bytes += m.payload.len() as u64;
                self.deliver(t, &m);
            }
            Op::Err(text) => {
                self.log_error(t, &format!("Route Error {}", String::from_utf8_lossy(text)));
                self.close(t, CloseReason::ParseError);
            }
            // +OK, and client verbs that nats-server also ignores on routes.
            Op::Ok | Op::Sub { .. } | Op::Unsub { .. } => {}
        }
    }

    fn on_route_connect(&mut self, t: usize, arg: &[u8]) {
        let v = match json::parse(arg) {
            Ok(v @ Value::Obj(_)) => v,
            _ => {
                self.log_error(t, "route CONNECT parse error");
                return self.close(t, CloseReason::ProtocolViolation);
            }
        };
        let text = |k: &str| v.get_str(k).ok().flatten().unwrap_or("").to_string();
        if !text("lang").is_empty() {
            self.log_error(t, "attempted to connect to route port");
            self.send_err_text(t, "attempted to connect to route port");
            return self.close(t, CloseReason::ProtocolViolation);
        }
        if let Some(cc) = self.cfg.cluster.as_ref().filter(|cc| cc.user.is_some()) {
            if Some(text("user")) != cc.user
                || Some(text("pass")) != cc.pass.clone().or(Some(String::new()))
            {
                self.log_error(t, "route authentication error");
                return self.send_err(t, proto::ERR_AUTH_VIOLATION, CloseReason::AuthViolation);
            }
        }
        let dynamic = v
            .get_bool("cluster_dynamic")
            .ok()
            .flatten()
            .unwrap_or(false);
        if !self.agree_cluster_name(t, &text("cluster"), dynamic) {
            return;
        }
        let c = &mut self.conns[t];
        c.auth_deadline = None;
        let r = c.route.as_mut().expect("route");
        r.connect_received = true;
        r.remote_id = text("name");
        c.opts.headers = v.get_bool("headers").ok().flatten().unwrap_or(false);
    }

    /// Settles a cluster name difference as nats-server does: a dynamic name gives way to a
    /// configured one, or to a greater dynamic one; otherwise the route is refused.
    fn agree_cluster_name(&mut self, t: usize, theirs: &str, they_are_dynamic: bool) -> bool {
        let cl = self.cluster.as_mut().expect("cluster on");
        if theirs.is_empty() || theirs == cl.name {
            return true;
        }
        if cl.dynamic && (!they_are_dynamic || cl.name.as_str() < theirs) {
            info!("Cluster name updated to {theirs}");
            cl.name = theirs.to_string();
            cl.dynamic = they_are_dynamic;
            let others: Vec<usize> = self
                .conns
                .iter()
                .filter(|(o, c)| *o != t && c.kind == Kind::Route)
                .map(|(o, _)| o)
                .collect();
            for o in others {
                self.close(o, CloseReason::ClusterNameConflict);
            }
            return true;
        }
        let text = format!(
            "Rejecting connection, cluster name {theirs:?} does not match {:?}",
            cl.name
        );
        self.log_error(t, &text);
        self.send_err_text(t, &text);
        self.close(t, CloseReason::ClusterNameConflict);
        false
    }

    fn on_route_info(&mut self, t: usize, arg: &[u8]) {
        let info = match parse_info(arg) {
            Ok(i) => i,
            Err(e) => {
                self.log_error(t, &format!("route INFO parse error: {e}"));
                return self.close(t, CloseReason::ProtocolViolation);
            }
        };
        if info.id == self.ident.id {
            debug!(
                "{} - Detected route to self, ignoring",
                self.conns[t].label()
            );
            let url = self.conns[t]
                .route
                .as_ref()
                .and_then(|r| r.dialled.as_ref())
                .map(RouteUrl::host_port);
            if let (Some(cl), Some(url)) = (self.cluster.as_mut(), url) {
                cl.self_urls.push(url);
            }
            return self.close(t, CloseReason::DuplicateRoute);
        }
        if !self.agree_cluster_name(t, &info.cluster, info.dynamic) {
            return;
        }
        let r = self.conns[t].route.as_ref().expect("route");
        // Server names must be unique in a cluster; the accepting side refuses (nats-server).
        if !r.info_received && r.dialled.is_none() && info.name == self.ident.name {
            self.log_error(
                t,
                &format!("Remote server has a duplicate name: {:?}", info.name),
            );
            return self.close(t, CloseReason::DuplicateServerName);
        }
        if r.info_received {
            if info.id != r.remote_id {
                return self.gossiped(info);
            }
            if info.lame_duck {
                let urls =
                    std::mem::take(&mut self.conns[t].route.as_mut().expect("route").connect_urls);
                if !urls.is_empty() {
                    self.client_urls_changed();
                }
            }
            return;
        }
        let existing = self
            .cluster
            .as_ref()
            .and_then(|cl| cl.routes.get(&info.id).copied());
        let peer_ip = self.conns[t].addr.ip();
        if let Some(other) = existing {
            debug!(
                "{} - Detected duplicate remote route {:?}",
                self.conns[t].label(),
                info.id
            );
            if let Some(o) = self.conns.get_mut(other).and_then(|o| o.route.as_mut()) {
                o.retry = true;
            }
            let r = self.conns[t].route.as_mut().expect("route");
            (r.info_received, r.remote_id) = (true, info.id.clone());
            return self.close(t, CloseReason::DuplicateRoute);
        }
        let c = &mut self.conns[t];
        c.opts.headers = info.headers;
        let r = c.route.as_mut().expect("route");
        r.info_received = true;
        r.remote_id = info.id.clone();
        r.remote_name = info.name.clone();
        r.remote_host = if info.host.is_empty() || info.host == "0.0.0.0" || info.host == "::" {
            peer_ip.to_string()
        } else {
            info.host.clone()
        };
        r.remote_port = info.port;
        r.registered = true;
        r.connect_urls = info.connect_urls.clone();
        r.attempts = 0;
        c.connected = true;
        c.next_ping = self.now + FIRST_ROUTE_PING;
        debug!("{} - Registering remote route {:?}", c.label(), info.id);
        let cl = self.cluster.as_mut().expect("cluster on");
        cl.routes.insert(info.id.clone(), t);
        let others: Vec<usize> = cl.routes.values().copied().filter(|&o| o != t).collect();
        self.send_all_interest(t);
        // Gossip: the others learn of this server and dial it.
        if !others.is_empty() {
            let ip = if info.ip.is_empty() {
                format!("nats-route://{}/", SocketAddr::new(peer_ip, info.port))
            } else {
                info.ip.clone()
            };
            let line = self.gossip_line(&info, &ip);
            for o in others {
                self.queue(o, line.as_bytes());
            }
        }
        if !info.connect_urls.is_empty() {
            self.client_urls_changed();
        }
        self.schedule(t);
    }

    /// The INFO that tells other routes about a new server.
    fn gossip_line(&self, info: &RouteInfo, ip: &str) -> String {
        let mut s = String::from("INFO ");
        let mut o = Obj::new(&mut s);
        o.str("server_id", &info.id)
            .str("server_name", &info.name)
            .str("version", crate::config::VERSION)
            .int("proto", 2)
            .str("host", &info.host)
            .uint("port", info.port as u64)
            .bool("headers", info.headers)
            .uint("max_payload", self.cfg.max_payload as u64)
            .str("ip", ip);
        if let Some(cl) = &self.cluster {
            o.str("cluster", &cl.name);
        }
        o.strs("connect_urls", &info.connect_urls).end();
        s.push_str(" \r\n");
        s
    }

    /// A route told us of another server of the cluster: dial it, unless we know it.
    fn gossiped(&mut self, info: RouteInfo) {
        let Some(cl) = &self.cluster else { return };
        if info.id == self.ident.id || cl.routes.contains_key(&info.id) {
            return;
        }
        let url = match RouteUrl::parse(&info.ip)
            .or_else(|_| RouteUrl::parse(&format!("{}:{}", info.host, info.port)))
        {
            Ok(mut u) => {
                if let Some(cc) = &self.cfg.cluster {
                    (u.user, u.pass) = (cc.user.clone(), cc.pass.clone());
                }
                u
            }
            Err(e) => return error!("Error parsing URL from INFO: {e}"),
        };
        let configured = self
            .cfg
            .cluster
            .as_ref()
            .is_some_and(|cc| cc.routes.iter().any(|r| r.host_port() == url.host_port()));
        if configured {
            return;
        }
        self.dial(Dial {
            at: self.now,
            url,
            explicit: false,
            attempts: 0,
        });
    }

    fn on_remote_sub(
        &mut self,
        t: usize,
        account: &[u8],
        subject: &[u8],
        queue: Option<&[u8]>,
        weight: i64,
    ) {
        let Some(acc) = self.account_index(&String::from_utf8_lossy(account)) else {
            debug!(
                "{} - Unknown account {:?} for remote subject {:?}",
                self.conns[t].label(),
                String::from_utf8_lossy(account),
                String::from_utf8_lossy(subject)
            );
            return;
        };
        let key = interest_key(account, subject, queue);
        self.conns[t].last_activity = self.now;
        let weight = weight.clamp(1, u32::MAX as i64) as u32;
        let r = self.conns[t].route.as_mut().expect("route");
        if let Some(&(a, id)) = r.subs.get(&key) {
            if let Some(sub) = self.accounts[a].sublist.get_mut(id) {
                sub.weight = weight;
            }
            return;
        }
        let mut sub = Sub::new(t, subject, queue, &key);
        sub.weight = weight;
        match self.accounts[acc].sublist.insert(sub) {
            Ok(id) => {
                r.subs.insert(key, (acc, id));
            }
            Err(_) => self.log_error(
                t,
                &format!(
                    "invalid remote subject {:?}",
                    String::from_utf8_lossy(subject)
                ),
            ),
        }
    }

    fn on_remote_unsub(&mut self, t: usize, account: &[u8], subject: &[u8], queue: Option<&[u8]>) {
        let key = interest_key(account, subject, queue);
        self.conns[t].last_activity = self.now;
        let r = self.conns[t].route.as_mut().expect("route");
        if let Some((acc, id)) = r.subs.remove(&key) {
            self.accounts[acc].sublist.remove(id);
        }
    }

    /// Every route learns a change of local interest (see the module comment).
    pub fn interest_changed(
        &mut self,
        acc: usize,
        subject: &[u8],
        queue: Option<&[u8]>,
        delta: i32,
    ) {
        if self.cluster.is_none() {
            return;
        }
        let key: Box<[u8]> = match queue {
            Some(q) => [subject, b" ", q].concat().into(),
            None => subject.into(),
        };
        let a = &mut self.accounts[acc];
        let before = a.interest.get(&key).copied().unwrap_or(0);
        let after = before.saturating_add_signed(delta);
        if after == 0 {
            a.interest.remove(&key);
        } else {
            a.interest.insert(key, after);
        }
        if before == after || (queue.is_none() && before > 0 && after > 0) {
            return;
        }
        let mut line = Vec::new();
        write_interest(&mut line, a.name.as_bytes(), subject, queue, after);
        let routes: Vec<usize> = self
            .cluster
            .as_ref()
            .map(|cl| cl.routes.values().copied().collect())
            .unwrap_or_default();
        for r in routes {
            self.queue(r, &line);
        }
    }

    /// A new route gets all our interest at once.
    fn send_all_interest(&mut self, t: usize) {
        let mut buf = Vec::new();
        for a in &self.accounts {
            for (key, &n) in &a.interest {
                let (subject, queue) = match key.iter().position(|&b| b == b' ') {
                    Some(i) => (&key[..i], Some(&key[i + 1..])),
                    None => (&key[..], None),
                };
                write_interest(&mut buf, a.name.as_bytes(), subject, queue, n);
            }
        }
        if !buf.is_empty() {
            self.queue(t, &buf);
        }
        debug!(
            "{} - Sent local subscriptions to route",
            self.conns[t].label()
        );
    }

    /// Cleans up after a route connection is freed: its remote interest, its registration,
    /// and, if the rules say so, dials it again.
    pub fn route_closed(&mut self, t: usize, c: &mut Conn) {
        let Some(r) = c.route.as_mut() else { return };
        for (_, (acc, id)) in r.subs.drain() {
            self.accounts[acc].sublist.remove(id);
        }
        let Some(cl) = &mut self.cluster else { return };
        let was_registered = r.registered && cl.routes.get(&r.remote_id) == Some(&t);
        if was_registered {
            cl.routes.remove(&r.remote_id);
        }
        let still_connected = !r.remote_id.is_empty() && cl.routes.contains_key(&r.remote_id);
        let stopping = cl.stopping;
        if was_registered && !r.connect_urls.is_empty() {
            r.connect_urls.clear();
            self.client_urls_changed();
        }
        if stopping || still_connected || r.remote_id == self.ident.id {
            return;
        }
        let url = r.dialled.clone().or_else(|| {
            (r.retry && r.remote_port != 0).then(|| RouteUrl {
                host: r.remote_host.clone(),
                port: r.remote_port,
                user: None,
                pass: None,
            })
        });
        if let Some(url) = url {
            let failed = !r.registered;
            let attempts = if failed { r.attempts + 1 } else { 0 };
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
            self.redial(url, r.explicit, attempts, delay);
        }
    }

    /// Client URLs changed: remember when, and tell connected clients (async INFO).
    pub fn client_urls_changed(&mut self) {
        if let Some(cl) = &mut self.cluster {
            cl.urls_changed = self.now;
        }
        if self.cfg.cluster.as_ref().is_some_and(|c| c.no_advertise) {
            return;
        }
        let clients: Vec<(usize, u64, SocketAddr)> = self
            .conns
            .iter()
            .filter(|(_, c)| c.kind == Kind::Client && c.connected && c.opts.protocol >= 1)
            .map(|(t, c)| (t, c.cid, c.addr))
            .collect();
        for (t, cid, addr) in clients {
            let line = crate::info::client_info(self, cid, addr);
            self.queue(t, line.as_bytes());
        }
    }

    /// Every client URL of the cluster (ours first), for INFO's `connect_urls`.
    pub fn cluster_connect_urls(&self) -> Vec<String> {
        let mut urls = self.ident.client_urls.clone();
        for (_, c) in self.conns.iter() {
            if let Some(r) = c.route.as_ref().filter(|r| r.registered) {
                for u in &r.connect_urls {
                    if !urls.contains(u) {
                        urls.push(u.clone());
                    }
                }
            }
        }
        urls
    }

    /// Tells the routes we are in lame-duck mode (they stop offering our URLs to clients).
    pub fn routes_lame_duck(&mut self) {
        if self.cluster.is_none() {
            return;
        }
        let line = self.route_info_json(true);
        let routes: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| c.kind == Kind::Route)
            .map(|(t, _)| t)
            .collect();
        for t in routes {
            self.queue(t, line.as_bytes());
        }
    }
}

impl Broker {
    /// varz's `cluster` object.
    pub fn cluster_varz(&self) -> String {
        let mut s = String::new();
        let mut o = Obj::new(&mut s);
        if let (Some(cl), Some(cc)) = (&self.cluster, &self.cfg.cluster) {
            o.str("name", &cl.name)
                .str("addr", &cl.host)
                .uint("cluster_port", cl.port as u64);
            o.float(
                "auth_timeout",
                cc.auth_timeout
                    .unwrap_or(crate::config::DEFAULT_AUTH_TIMEOUT)
                    .as_secs_f64(),
            );
            if !cc.routes.is_empty() {
                let urls: Vec<String> = cc.routes.iter().map(RouteUrl::host_port).collect();
                o.strs("urls", &urls);
            }
            o.float("tls_timeout", 2.0);
        }
        o.end();
        s
    }

    /// The `routes` array of /routez, and how many there are.
    pub fn routez_list(&self, with_subs: bool) -> (String, usize) {
        let wall_now = std::time::SystemTime::now();
        let wall = |at: Instant| {
            wall_now
                .checked_sub(self.now.saturating_duration_since(at))
                .unwrap_or(wall_now)
        };
        let mut s = String::from("[");
        let mut n = 0;
        for (_, c) in self.conns.iter().filter(|(_, c)| c.kind == Kind::Route) {
            let Some(r) = c.route.as_ref().filter(|r| r.registered) else {
                continue;
            };
            if n > 0 {
                s.push(',');
            }
            n += 1;
            let configured = r.explicit;
            let mut o = Obj::new(&mut s);
            o.uint("rid", c.cid)
                .str("remote_id", &r.remote_id)
                .bool("did_solicit", r.dialled.is_some())
                .bool("is_configured", configured)
                .str("ip", &c.addr.ip().to_string())
                .uint("port", c.addr.port() as u64)
                .str("start", &crate::timefmt::rfc3339(c.started_wall))
                .str(
                    "last_activity",
                    &crate::timefmt::rfc3339(wall(c.last_activity)),
                );
            if !c.rtt.is_zero() {
                o.str("rtt", &crate::timefmt::go_duration(c.rtt));
            }
            o.str(
                "uptime",
                &crate::timefmt::uptime(self.now.saturating_duration_since(c.started)),
            )
            .str(
                "idle",
                &crate::timefmt::uptime(self.now.saturating_duration_since(c.last_activity)),
            )
            .uint("pending_size", c.pending() as u64)
            .uint("in_msgs", c.counters.in_msgs)
            .uint("out_msgs", c.counters.out_msgs)
            .uint("in_bytes", c.counters.in_bytes)
            .uint("out_bytes", c.counters.out_bytes)
            .uint("subscriptions", r.subs.len() as u64);
            if with_subs && !r.subs.is_empty() {
                let mut subjects: Vec<String> = r
                    .subs
                    .keys()
                    .map(|k| {
                        let k = String::from_utf8_lossy(k);
                        k.split(' ').nth(1).unwrap_or_default().to_string()
                    })
                    .collect();
                subjects.sort();
                o.strs("subscriptions_list", &subjects);
            }
            o.end();
        }
        s.push(']');
        (s, n)
    }
}

/// The key remote interest is stored under: `account subject[ queue]` (as nats-server).
fn interest_key(account: &[u8], subject: &[u8], queue: Option<&[u8]>) -> Box<[u8]> {
    let mut k = Vec::with_capacity(account.len() + subject.len() + 16);
    k.extend_from_slice(account);
    k.push(b' ');
    k.extend_from_slice(subject);
    if let Some(q) = queue {
        k.push(b' ');
        k.extend_from_slice(q);
    }
    k.into()
}

/// `RS+ acc subject[ queue weight]` or, at zero, `RS- acc subject[ queue]`.
fn write_interest(out: &mut Vec<u8>, account: &[u8], subject: &[u8], queue: Option<&[u8]>, n: u32) {
    out.extend_from_slice(if n > 0 { b"RS+ " } else { b"RS- " });
    out.extend_from_slice(account);
    out.push(b' ');
    out.extend_from_slice(subject);
    if let Some(q) = queue {
        out.push(b' ');
        out.extend_from_slice(q);
        if n > 0 {
            out.push(b' ');
            proto::write_uint(out, n as u64);
        }
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interest_lines() {
        let mut out = Vec::new();
        write_interest(&mut out, b"$G", b"foo", None, 1);
        write_interest(&mut out, b"$G", b"foo", None, 0);
        write_interest(&mut out, b"$G", b"bar", Some(b"q"), 3);
        write_interest(&mut out, b"$G", b"bar", Some(b"q"), 0);
        assert_eq!(
            out,
            b"RS+ $G foo\r\nRS- $G foo\r\nRS+ $G bar q 3\r\nRS- $G bar q\r\n"
        );
        assert_eq!(&*interest_key(b"$G", b"bar", Some(b"q")), b"$G bar q");
    }

    #[test]
    fn route_info_fields() {
        let i = parse_info(br#"{"server_id":"N1","server_name":"a","host":"0.0.0.0","port":6222,"cluster":"c","connect_urls":["1.2.3.4:4222"],"ip":"nats-route://1.2.3.4:6222/","ldm":true}"#).unwrap();
        assert_eq!(
            (i.id.as_str(), i.port, i.cluster.as_str(), i.lame_duck),
            ("N1", 6222, "c", true)
        );
        assert_eq!(i.connect_urls, vec!["1.2.3.4:4222".to_string()]);
        assert!(parse_info(b"{\"port\":\"x\"}").is_err());
    }

    #[test]
    fn loopback_listen_address_is_its_own_url() {
        assert_eq!(
            client_urls("127.0.0.1", 4222),
            vec!["127.0.0.1:4222".to_string()]
        );
        assert_eq!(client_urls("::1", 4222), vec!["[::1]:4222".to_string()]);
        for u in client_urls("0.0.0.0", 4222) {
            assert!(!u.starts_with("127."), "{u}");
        }
    }
}
