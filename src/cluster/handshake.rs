//! The route handshake: the CONNECT and INFO we send, what an accepted route may send before
//! its CONNECT (nothing else: see the module comment of `cluster`), the checks of its CONNECT
//! (credentials, cluster name) and of its INFO (ourselves, duplicates, names), registration,
//! and gossip (a later INFO naming another server of the cluster makes us dial it).

use super::{client_urls_changed, registered_routes, route_to, Cluster};
use crate::config::{RouteUrl, BUILT_WITH, FIRST_ROUTE_PING, NATS_VERSION};
use crate::conn::CloseReason;
use crate::core::broker::Broker;
use crate::protocol::json::{self, Obj, Value};
use crate::protocol::wire;
use log::{debug, error, info};
use std::net::SocketAddr;

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

/// Our cluster name and whether it is generated ("dynamic").
fn our_name(b: &Broker) -> (&str, bool) {
    b.ident
        .cluster
        .as_ref()
        .map_or(("", false), |c| (c.name.as_str(), c.dynamic))
}

/// The CONNECT a dialling server sends (credentials from the route URL).
pub(super) fn connect_line(b: &Broker, t: usize) -> String {
    let (name, dynamic) = our_name(b);
    let url = b.conns[t].route().and_then(|r| r.dialled.as_ref());
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
        .str("name", &b.ident.id)
        .str("cluster", name);
    if dynamic {
        o.bool("cluster_dynamic", true);
    }
    o.end();
    s.push_str("\r\n");
    s
}

/// Our route INFO (with `ldm` in lame-duck mode).
pub(super) fn info_line(b: &Broker, lame_duck: bool) -> String {
    let Some(cl) = &b.ident.cluster else {
        return String::new();
    };
    let cc = b.cfg.cluster.as_ref();
    let mut s = String::from("INFO ");
    let mut o = Obj::new(&mut s);
    o.str("server_id", &b.ident.id)
        .str("server_name", &b.ident.name)
        .str("version", NATS_VERSION)
        .int("proto", 2)
        .str("go", BUILT_WITH)
        .str("host", &cl.host)
        .uint("port", cl.port as u64)
        .bool("headers", true);
    if cc.is_some_and(|c| c.user.is_some()) {
        o.bool("auth_required", true);
    }
    o.uint("max_payload", b.cfg.max_payload as u64)
        .str("cluster", &cl.name);
    if cl.dynamic {
        o.bool("cluster_dynamic", true);
    }
    // nats-server does not hand its client URLs to the cluster when told not to advertise.
    if !cc.is_some_and(|c| c.no_advertise) {
        o.strs("connect_urls", &b.ident.client_urls);
    }
    if lame_duck {
        o.bool("ldm", true);
    }
    o.end();
    s.push_str(" \r\n");
    s
}

/// Whether route `t` may send its next frame: an accepted route only once a CONNECT has
/// been accepted, unless that frame is the CONNECT (`first` is its first byte). Otherwise
/// it gets nats-server's answer to a frame before CONNECT when authorization is required,
/// and is closed.
pub(super) fn may_send(b: &mut Broker, t: usize, first: u8) -> bool {
    let waiting = b.conns[t]
        .route()
        .is_some_and(|r| r.dialled.is_none() && !r.connect_received);
    if !waiting || matches!(first, b'C' | b'c') {
        return true;
    }
    auth_violation(b, t);
    false
}

fn auth_violation(b: &mut Broker, t: usize) {
    b.conns.log_error(t, "authentication error");
    b.conns
        .send_err(t, wire::ERR_AUTH_VIOLATION, CloseReason::AuthViolation);
}

pub(super) fn on_connect(b: &mut Broker, t: usize, arg: &[u8]) {
    let v = match json::parse(arg) {
        Ok(v @ Value::Obj(_)) => v,
        _ => {
            b.conns.log_error(t, "route CONNECT parse error");
            return b.conns.close(t, CloseReason::ProtocolViolation);
        }
    };
    let text = |k: &str| v.get_str(k).ok().flatten().unwrap_or("").to_string();
    if !text("lang").is_empty() {
        b.conns.log_error(t, "attempted to connect to route port");
        b.conns
            .send_err_text(t, "attempted to connect to route port");
        return b.conns.close(t, CloseReason::ProtocolViolation);
    }
    if let Some(cc) = b.cfg.cluster.as_ref().filter(|cc| cc.user.is_some()) {
        if Some(text("user")) != cc.user
            || Some(text("pass")) != cc.pass.clone().or(Some(String::new()))
        {
            return auth_violation(b, t);
        }
    }
    let dynamic = v
        .get_bool("cluster_dynamic")
        .ok()
        .flatten()
        .unwrap_or(false);
    if !agree_cluster_name(b, t, &text("cluster"), dynamic) {
        return;
    }
    let c = &mut b.conns[t];
    c.auth_deadline = None;
    c.opts.headers = v.get_bool("headers").ok().flatten().unwrap_or(false);
    if let Some(r) = c.route_mut() {
        r.connect_received = true;
        r.remote_id = text("name");
    }
}

/// Settles a cluster name difference as nats-server does: a dynamic name gives way to a
/// configured one, or to a greater dynamic one; otherwise the route is refused.
fn agree_cluster_name(b: &mut Broker, t: usize, theirs: &str, they_are_dynamic: bool) -> bool {
    let Some(cl) = b.ident.cluster.as_mut() else {
        return false;
    };
    if theirs.is_empty() || theirs == cl.name {
        return true;
    }
    if cl.dynamic && (!they_are_dynamic || cl.name.as_str() < theirs) {
        info!("Cluster name updated to {theirs}");
        cl.name = theirs.to_string();
        cl.dynamic = they_are_dynamic;
        let others: Vec<usize> = b.conns.routes.iter().copied().filter(|&o| o != t).collect();
        for o in others {
            b.conns.close(o, CloseReason::ClusterNameConflict);
        }
        return true;
    }
    let text = format!(
        "Rejecting connection, cluster name {theirs:?} does not match {:?}",
        cl.name
    );
    b.conns.log_error(t, &text);
    b.conns.send_err_text(t, &text);
    b.conns.close(t, CloseReason::ClusterNameConflict);
    false
}

impl Cluster {
    pub(super) fn on_info(&mut self, b: &mut Broker, t: usize, arg: &[u8]) {
        let info = match parse_info(arg) {
            Ok(i) => i,
            Err(e) => {
                b.conns
                    .log_error(t, &format!("route INFO parse error: {e}"));
                return b.conns.close(t, CloseReason::ProtocolViolation);
            }
        };
        if info.id == b.ident.id {
            debug!("{} - Detected route to self, ignoring", b.conns[t].label());
            let route = b.conns[t].route();
            let url = route
                .and_then(|r| r.dialled.as_ref())
                .map(RouteUrl::host_port);
            if let Some(url) = url {
                self.self_urls.push(url);
            }
            return b.conns.close(t, CloseReason::DuplicateRoute);
        }
        if !agree_cluster_name(b, t, &info.cluster, info.dynamic) {
            return;
        }
        let Some(r) = b.conns[t].route() else { return };
        // Server names must be unique in a cluster; the accepting side refuses (nats-server).
        if !r.info_received && r.dialled.is_none() && info.name == b.ident.name {
            let text = format!("Remote server has a duplicate name: {:?}", info.name);
            b.conns.log_error(t, &text);
            return b.conns.close(t, CloseReason::DuplicateServerName);
        }
        if r.info_received {
            return self.later_info(b, t, info);
        }
        if let Some(other) = route_to(b, &info.id) {
            debug!(
                "{} - Detected duplicate remote route {:?}",
                b.conns[t].label(),
                info.id
            );
            if let Some(o) = b.conns.get_mut(other).and_then(|o| o.route_mut()) {
                o.retry = true;
            }
            if let Some(r) = b.conns[t].route_mut() {
                (r.info_received, r.remote_id) = (true, info.id.clone());
            }
            return b.conns.close(t, CloseReason::DuplicateRoute);
        }
        register(b, t, info);
    }

    /// An INFO after the first: gossip about another server, or the remote's lame duck.
    fn later_info(&mut self, b: &mut Broker, t: usize, info: RouteInfo) {
        let Some(r) = b.conns[t].route_mut() else {
            return;
        };
        if info.id != r.remote_id {
            return self.gossiped(b, info);
        }
        if info.lame_duck {
            let urls = std::mem::take(&mut r.connect_urls);
            if !urls.is_empty() {
                client_urls_changed(b);
            }
        }
    }

    /// A route told us of another server of the cluster: dial it, unless we know it.
    fn gossiped(&mut self, b: &mut Broker, info: RouteInfo) {
        if info.id == b.ident.id || route_to(b, &info.id).is_some() {
            return;
        }
        let url = match RouteUrl::parse(&info.ip)
            .or_else(|_| RouteUrl::parse(&format!("{}:{}", info.host, info.port)))
        {
            Ok(mut u) => {
                if let Some(cc) = &b.cfg.cluster {
                    (u.user, u.pass) = (cc.user.clone(), cc.pass.clone());
                }
                u
            }
            Err(e) => return error!("Error parsing URL from INFO: {e}"),
        };
        let configured = b
            .cfg
            .cluster
            .as_ref()
            .is_some_and(|cc| cc.routes.iter().any(|r| r.host_port() == url.host_port()));
        if configured {
            return;
        }
        self.dial_gossiped(b, url, info.id);
    }
}

/// The route's first INFO passed every check: from now on it is part of the cluster.
fn register(b: &mut Broker, t: usize, info: RouteInfo) {
    let (now, peer_ip) = (b.conns.now, b.conns[t].addr.ip());
    let c = &mut b.conns[t];
    c.opts.headers = info.headers;
    c.connected = true;
    c.next_ping = now + FIRST_ROUTE_PING;
    let label = c.label();
    let Some(r) = c.route_mut() else { return };
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
    debug!("{label} - Registering remote route {:?}", info.id);
    let others: Vec<usize> = registered_routes(b)
        .into_iter()
        .filter(|&o| o != t)
        .collect();
    super::interest::send_all(b, t);
    // Gossip: the others learn of this server and dial it.
    if !others.is_empty() {
        let ip = if info.ip.is_empty() {
            format!("nats-route://{}/", SocketAddr::new(peer_ip, info.port))
        } else {
            info.ip.clone()
        };
        let line = gossip_line(b, &info, &ip);
        for o in others {
            b.conns.queue(o, line.as_bytes());
        }
    }
    if !info.connect_urls.is_empty() {
        client_urls_changed(b);
    }
    b.conns.schedule(t);
}

/// The INFO that tells other routes about a new server.
fn gossip_line(b: &Broker, info: &RouteInfo, ip: &str) -> String {
    let mut s = String::from("INFO ");
    let mut o = Obj::new(&mut s);
    o.str("server_id", &info.id)
        .str("server_name", &info.name)
        .str("version", NATS_VERSION)
        .int("proto", 2)
        .str("host", &info.host)
        .uint("port", info.port as u64)
        .bool("headers", info.headers)
        .uint("max_payload", b.cfg.max_payload as u64)
        .str("ip", ip);
    if let Some(cl) = &b.ident.cluster {
        o.str("cluster", &cl.name);
    }
    o.strs("connect_urls", &info.connect_urls).end();
    s.push_str(" \r\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
