//! What the cluster shows of itself: the client URLs this server advertises, the `cluster`
//! object of /varz and the routes of /routez.

use crate::config::RouteUrl;
use crate::conn::Kind;
use crate::core::broker::Broker;
use crate::protocol::json::Obj;
use std::net::SocketAddr;
use std::time::Instant;

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
                .str("start", &crate::util::timefmt::rfc3339(c.started_wall))
                .str(
                    "last_activity",
                    &crate::util::timefmt::rfc3339(wall(c.last_activity)),
                );
            if !c.rtt.is_zero() {
                o.str("rtt", &crate::util::timefmt::go_duration(c.rtt));
            }
            o.str(
                "uptime",
                &crate::util::timefmt::uptime(self.now.saturating_duration_since(c.started)),
            )
            .str(
                "idle",
                &crate::util::timefmt::uptime(self.now.saturating_duration_since(c.last_activity)),
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

#[cfg(test)]
mod tests {
    use super::*;

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
