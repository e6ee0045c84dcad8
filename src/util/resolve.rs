//! Host names to addresses, for the listen addresses and route URLs.
//!
//! IP literals, `localhost` and `/etc/hosts` are resolved here. Other names go to libc's
//! resolver (DNS and the rest of NSS) when the `libc-resolver` feature is on, as it is by
//! default. `make static` builds without it: a statically linked glibc cannot load its NSS
//! modules at run time anyway, and leaving `getaddrinfo` out keeps that binary small.
//!
//! `resolve` may block (a file read, a DNS round trip): the loop calls only `literal`, which
//! never does I/O; route host names are resolved on a helper thread (`cluster/dial.rs`), and the
//! listen addresses before the loop starts.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// The address of `host` when it needs no lookup: an IP literal (IPv6 may be bracketed) or
/// `localhost`. Never blocks.
pub fn literal(host: &str, port: u16) -> Option<SocketAddr> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, port));
    }
    host.eq_ignore_ascii_case("localhost")
        .then(|| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port))
}

/// The first address of `host`. May block: not for the loop thread (see the module comment).
pub fn resolve(host: &str, port: u16) -> io::Result<SocketAddr> {
    if let Some(addr) = literal(host, port) {
        return Ok(addr);
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    test_delay();
    if let Some(ip) = std::fs::read_to_string("/etc/hosts")
        .ok()
        .and_then(|h| from_hosts(&h, host))
    {
        return Ok(SocketAddr::new(ip, port));
    }
    by_libc(host, port)
}

/// Tests only: `TERN_TEST_RESOLVE_DELAY_MS` makes every name lookup (not literals) take that
/// long, standing in for a slow DNS server, so a test can show the loop does not wait on it.
fn test_delay() {
    static DELAY: std::sync::OnceLock<Option<std::time::Duration>> = std::sync::OnceLock::new();
    let delay = DELAY.get_or_init(|| {
        let ms = std::env::var("TERN_TEST_RESOLVE_DELAY_MS").ok()?;
        ms.parse().ok().map(std::time::Duration::from_millis)
    });
    if let Some(d) = delay {
        std::thread::sleep(*d);
    }
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
        assert_eq!(literal("[::1]", 1), "[::1]:1".parse().ok());
        assert_eq!(literal("seed.local", 1), None);
        let hosts = "# comment\n10.0.0.5  seed seed.local  # the seed\n::2 six\n";
        assert_eq!(from_hosts(hosts, "seed.local"), "10.0.0.5".parse().ok());
        assert_eq!(from_hosts(hosts, "six"), "::2".parse().ok());
        assert_eq!(from_hosts(hosts, "comment"), None);
    }
}
