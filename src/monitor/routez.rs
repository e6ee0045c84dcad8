//! What the cluster shows of itself: the `cluster` object of /varz and the routes of
//! /routez (each route's state is its connection's, `conn::RouteState`).

use crate::config::RouteUrl;
use crate::core::broker::Broker;
use crate::protocol::json::Obj;
use crate::util::timefmt;
use std::time::Instant;

/// varz's `cluster` object.
pub fn cluster_varz(b: &Broker) -> String {
    let mut s = String::new();
    let mut o = Obj::new(&mut s);
    if let (Some(cl), Some(cc)) = (&b.ident.cluster, &b.cfg.cluster) {
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
pub fn routez_list(b: &Broker, with_subs: bool) -> (String, usize) {
    let wall_now = std::time::SystemTime::now();
    let wall = |at: Instant| {
        wall_now
            .checked_sub(b.conns.now.saturating_duration_since(at))
            .unwrap_or(wall_now)
    };
    let mut s = String::from("[");
    let mut n = 0;
    for &t in &b.conns.routes {
        let c = &b.conns[t];
        let Some(r) = c.route().filter(|r| r.registered) else {
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
            .str("start", &timefmt::rfc3339(c.started_wall))
            .str("last_activity", &timefmt::rfc3339(wall(c.last_activity)));
        if !c.rtt.is_zero() {
            o.str("rtt", &timefmt::go_duration(c.rtt));
        }
        o.str(
            "uptime",
            &timefmt::uptime(b.conns.now.saturating_duration_since(c.started)),
        )
        .str(
            "idle",
            &timefmt::uptime(b.conns.now.saturating_duration_since(c.last_activity)),
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
