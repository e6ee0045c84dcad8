//! Host names to addresses, for the listen addresses and route URLs.
//!
//! IP literals, `localhost` and `/etc/hosts` are resolved here. Other names go to libc's
//! resolver (DNS and the rest of NSS) when the `libc-resolver` feature is on, as it is by
//! default. `make static` builds without it: a statically linked glibc cannot load its NSS
//! modules at run time anyway, and leaving `getaddrinfo` out keeps that binary small.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// The first address of `host` (IPv6 literals may be bracketed).
pub fn resolve(host: &str, port: u16) -> io::Result<SocketAddr> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    if host.eq_ignore_ascii_case("localhost") {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    if let Some(ip) = std::fs::read_to_string("/etc/hosts")
        .ok()
        .and_then(|h| from_hosts(&h, host))
    {
        return Ok(SocketAddr::new(ip, port));
    }
    by_libc(host, port)
}

/// The address `/etc/hosts` gives a name.
fn from_hosts(hosts: &str, name: &str) -> Option<IpAddr> {
    hosts.lines().find_map(|line| {
        let mut fields = line.split('#').next()?.split_whitespace();
        let ip = fields.next()?.parse().ok()?;
        fields.any(|n| n.eq_ignore_ascii_case(name)).then_some(ip)
    })
}

#[cfg(feature = "libc-resolver")]
fn by_libc(host: &str, port: u16) -> io::Result<SocketAddr> {
    use std::net::ToSocketAddrs;
    (host, port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("cannot resolve {host}")))
}

#[cfg(not(feature = "libc-resolver"))]
fn by_libc(host: &str, _port: u16) -> io::Result<SocketAddr> {
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!("cannot resolve {host}: this build resolves IP addresses, localhost and /etc/hosts only"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_and_hosts_file() {
        assert_eq!(
            resolve("127.0.0.1", 4222).unwrap().to_string(),
            "127.0.0.1:4222"
        );
        assert_eq!(resolve("[::1]", 6222).unwrap().to_string(), "[::1]:6222");
        assert_eq!(resolve("LOCALHOST", 1).unwrap().to_string(), "127.0.0.1:1");
        let hosts = "# comment\n10.0.0.5  seed seed.local  # the seed\n::2 six\n";
        assert_eq!(from_hosts(hosts, "seed.local"), "10.0.0.5".parse().ok());
        assert_eq!(from_hosts(hosts, "six"), "::2".parse().ok());
        assert_eq!(from_hosts(hosts, "comment"), None);
    }
}
