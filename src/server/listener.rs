//! Listening sockets: binding with a deep accept queue, the one accept loop every listener
//! uses (clients here, routes in `cluster`, monitoring in `monitor`), and the client URLs
//! this server advertises.
//!
//! When accepting fails, the listener backs off, as nats-server does. Out of file descriptors (or kernel memory), `accept` fails again at once for as long as
//! that lasts, and every connection that arrives meanwhile makes the listener readable again.
//! nats-server's accept loop sleeps 10 ms, doubling up to 1 s, and logs one line per sleep:
//! `Temporary Client Accept Error(accept tcp 0.0.0.0:4222: accept4: too many open files),
//! sleeping 10ms`. The loop cannot sleep, so a listener that failed is left alone (its
//! readiness ignored) until the delay has passed, then tried again: one line per try, however
//! many connections knock. A successful accept resets the delay.

use crate::util::logger::os_error;
use log::error;
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Resolves a listen address the way nats-server does: host (IPv4, IPv6 or a name) and
/// port, `-1` meaning any free port.
pub fn listen_addr(host: &str, port: i32) -> io::Result<SocketAddr> {
    let port = if port < 0 { 0 } else { port as u16 };
    crate::util::resolve::resolve(host, port)
}

/// A listening socket registered with the loop, and its backoff.
pub struct Listener {
    sock: TcpListener,
    backoff: Backoff,
}

impl Listener {
    /// Binds `addr` with the deepest accept queue the system allows and registers it under
    /// `token`. mio (like std) asks for 128, which a burst of connects overflows (the dropped
    /// SYNs come back a second later); nats-server asks for somaxconn. `name` is who accepts,
    /// as nats-server's log lines say it ("Client", "Route").
    pub fn bind(
        addr: SocketAddr,
        name: &'static str,
        registry: &Registry,
        token: Token,
    ) -> io::Result<Listener> {
        use std::os::fd::AsRawFd;
        let mut sock = TcpListener::bind(addr)?;
        // SAFETY: listen on a socket we own; the kernel caps the backlog at somaxconn.
        unsafe { libc::listen(sock.as_raw_fd(), 65535) };
        registry.register(&mut sock, token, Interest::READABLE)?;
        Ok(Listener {
            sock,
            backoff: Backoff::new(name),
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sock.local_addr()
    }

    /// Accepts every pending connection, handing each to `take`, unless the listener is
    /// resting after a failure; a failure makes it rest (see the module comment).
    pub fn accept_all(&mut self, now: Instant, mut take: impl FnMut(TcpStream, SocketAddr)) {
        if !self.backoff.begin(now) {
            return;
        }
        loop {
            match self.sock.accept() {
                Ok((sock, addr)) => {
                    self.backoff.accepted();
                    take(sock, addr);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    if self.backoff.failed(&e, self.sock.local_addr().ok(), now) {
                        return;
                    }
                }
            }
        }
    }

    /// When a resting listener is tried again (the loop wakes up for it).
    pub fn retry_at(&self) -> Option<Instant> {
        self.backoff.retry_at
    }

    /// The rest is over: accept again (nothing announces the connections that waited).
    pub fn due(&self, now: Instant) -> bool {
        self.backoff.due(now)
    }

    /// Stops listening (lame duck, shutdown).
    pub fn close(mut self, registry: &Registry) {
        let _ = registry.deregister(&mut self.sock);
    }
}

/// nats-server's ACCEPT_MIN_SLEEP and ACCEPT_MAX_SLEEP.
const MIN_DELAY: Duration = Duration::from_millis(10);
const MAX_DELAY: Duration = Duration::from_secs(1);

/// One listener's backoff.
#[derive(Debug)]
struct Backoff {
    /// Who accepts, as nats-server names it in the log line ("Client", "Route").
    name: &'static str,
    delay: Duration,
    /// The listener is left alone until then.
    retry_at: Option<Instant>,
}

impl Backoff {
    fn new(name: &'static str) -> Backoff {
        Backoff {
            name,
            delay: MIN_DELAY,
            retry_at: None,
        }
    }

    /// Whether the listener may be accepted from now (false while backing off).
    fn begin(&mut self, now: Instant) -> bool {
        if self.retry_at.is_some_and(|at| at > now) {
            return false;
        }
        self.retry_at = None;
        true
    }

    /// Whether the time to try again has come.
    fn due(&self, now: Instant) -> bool {
        self.retry_at.is_some_and(|at| at <= now)
    }

    fn accepted(&mut self) {
        self.delay = MIN_DELAY;
    }

    /// `accept` on the listener at `local` failed with `e`: true when accepting should stop
    /// until `retry_at` (false: the error concerned one connection only, go on).
    fn failed(&mut self, e: &io::Error, local: Option<SocketAddr>, now: Instant) -> bool {
        match e.kind() {
            io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted => return false,
            _ => {}
        }
        let what = match local {
            Some(a) => format!("accept tcp {a}: accept4: {}", os_error(e)),
            None => format!("accept tcp: accept4: {}", os_error(e)),
        };
        // The errors Go calls temporary get its "Temporary" line; any other error backs off
        // too (nats-server would retry at once, but a loop must not spin on it).
        let temporary = matches!(
            e.raw_os_error(),
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
        );
        if temporary {
            error!(
                "Temporary {} Accept Error({what}), sleeping {}ms",
                self.name,
                self.delay.as_millis()
            );
        } else {
            error!("{} Accept error: {what}", self.name);
        }
        self.retry_at = Some(now + self.delay);
        self.delay = (self.delay * 2).min(MAX_DELAY);
        true
    }
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

    #[test]
    fn delays_double_up_to_a_second_and_reset_on_success() {
        let mut b = Backoff::new("Client");
        let now = Instant::now();
        let emfile = io::Error::from_raw_os_error(libc::EMFILE);
        let mut delays = Vec::new();
        for _ in 0..10 {
            assert!(b.begin(now + Duration::from_secs(100)));
            assert!(b.failed(&emfile, None, now));
            delays.push(b.retry_at.unwrap() - now);
            assert!(!b.begin(now) && !b.due(now));
        }
        let ms: Vec<u128> = delays.iter().map(|d| d.as_millis()).collect();
        assert_eq!(ms, [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000]);
        assert!(b.due(now + Duration::from_secs(1)));
        b.accepted();
        assert!(b.failed(&emfile, None, now));
        assert_eq!(b.retry_at, Some(now + MIN_DELAY));
        let aborted = io::Error::from_raw_os_error(libc::ECONNABORTED);
        assert!(!b.failed(&aborted, None, now));
    }
}
