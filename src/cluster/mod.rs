//! Clustering: route connections to other servers, tern or nats-server 2.9, in the same loop.
//!
//! A route is a `Conn` of kind `Route` with a `RouteState`. Its life:
//! - dialled (`--routes`, gossip, reconnect; `dial.rs`: the host name is looked up on a
//!   helper thread and the connect completes in the loop) or accepted on the cluster port.
//!   The dialler sends `CONNECT` and `INFO` at once; the acceptor sends `INFO` and checks the
//!   `CONNECT` (credentials, cluster name).
//! - an accepted route must send `CONNECT` before anything else, with the credentials when
//!   `cluster { authorization }` is set: any other first frame, or wrong credentials, is an
//!   `Authorization Violation` and the end of it (nats-server's rule for routes with
//!   authorization and for inbound gateways; tern applies it to every accepted route).
//! - on the first `INFO` the route is registered under the remote server id, unless it is a
//!   route to ourselves, to another cluster, or a second route to a registered server (the
//!   first one wins, as in nats-server). Registration sends our whole interest (`RS+`), tells
//!   the other routes about the new server (gossip: they dial it), and updates the URLs
//!   clients may fail over to (`connect_urls`). Until then the route gets nothing but the
//!   handshake and PONGs, and its RS+/RS-/RMSG/HMSG are ignored: a peer sends those only
//!   after our INFO registered us, and its own INFO comes before them on the same stream.
//! - a later `INFO` naming another server makes us dial it: that is how one seed route grows
//!   into a full mesh.
//! - when it closes, its remote interest goes away, and a route we dialled is dialled again
//!   (configured routes forever, gossiped ones `connect_retries` times).
//!
//! Interest (RS+/RS-) is in `interest.rs`; /varz and /routez in `monitor.rs`.

mod dial;
mod handshake;
mod interest;
mod routez;

pub use dial::DIAL_BASE;
pub use routez::client_urls;

use crate::config::RouteUrl;
use crate::conn::{CloseReason, Conn, Kind};
use crate::core::broker::Broker;
use crate::protocol::wire;
use crate::subject::sublist::SubId;
use crate::util::hash::{new_map, FastMap};
use log::{debug, error, info};
use mio::net::TcpStream;
use mio::{Interest, Token, Waker};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    /// An accepted route sent a valid CONNECT: only then is anything else it sends acted on.
    pub connect_received: bool,
    pub info_received: bool,
    /// Registered under its server id: it may get interest and messages.
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

/// The broker's cluster state.
pub struct Cluster {
    pub name: String,
    /// No name was configured: adopt the cluster's.
    pub dynamic: bool,
    pub host: String,
    pub port: u16,
    /// Registered routes by remote server id.
    pub routes: FastMap<String, usize>,
    /// Dials waiting for their time, for a lookup or for their connect (`dial.rs`).
    dialer: dial::Dialer,
    /// Addresses that turned out to be ourselves; never dialled again.
    self_urls: Vec<String>,
    /// Set while shutting down: closed routes are not redialled.
    pub stopping: bool,
    /// When the set of client URLs last changed (clients learn it on their first PING).
    pub urls_changed: Instant,
}

/// A generated cluster name (nats-server generates one too when none is configured).
fn generated_name() -> String {
    let mut x = crate::util::hash::random_seed();
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

impl Broker {
    /// Turns clustering on once the route listener is bound to `port`; configured routes are
    /// dialled in the first pass. `waker` wakes the loop when a host name lookup is done.
    pub fn start_cluster(&mut self, port: u16, waker: Arc<Waker>) {
        let Some(cc) = &self.cfg.cluster else { return };
        let (name, dynamic) = match &cc.name {
            Some(n) => (n.clone(), false),
            None => (generated_name(), true),
        };
        info!("Cluster name is {name}");
        let mut dialer = dial::Dialer::new(waker);
        for url in &cc.routes {
            dialer.configured(url.clone(), self.now);
        }
        self.cluster = Some(Cluster {
            name,
            dynamic,
            host: cc.host.clone(),
            port,
            routes: new_map(),
            dialer,
            self_urls: Vec::new(),
            stopping: false,
            urls_changed: self.now,
        });
    }

    /// Takes in a connected route (accepted, or dialled with `state.dialled` set).
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
        if let Err(e) = self
            .registry
            .register(&mut sock, Token(t), Interest::READABLE)
        {
            error!("Error registering route connection: {e}");
            return None;
        }
        let cid = self.next_cid;
        self.next_cid += 1;
        let mut c = Conn::new(sock, Kind::Route, cid, addr, self.now);
        // Until the handshake is done, only the auth timeout (if any) matters.
        c.next_ping = self.now + Duration::from_secs(3600);
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

    /// Whether connection `t` is a registered route (the only kind that gets messages).
    pub fn is_registered_route(&self, t: usize) -> bool {
        self.conns
            .get(t)
            .and_then(|c| c.route.as_ref())
            .is_some_and(|r| r.registered)
    }

    /// What a route's frame does.
    pub fn route_op(&mut self, t: usize, op: crate::protocol::parser::Op) {
        use crate::protocol::parser::Op;
        let registered = self.is_registered_route(t);
        match op {
            Op::Connect(arg) => self.on_route_connect(t, arg),
            Op::Info(arg) => self.on_route_info(t, arg),
            Op::Ping => {
                self.conns[t].last_ping_in = self.now;
                self.queue(t, wire::PONG);
            }
            Op::Pong => self.on_pong(t),
            // See the module comment: nothing before registration reaches the subject index
            // or a subscriber.
            Op::RouteSub { .. } | Op::RouteUnsub { .. } | Op::Pub(_) if !registered => {
                debug!(
                    "{} - Ignoring a frame from a route not registered yet",
                    self.conns[t].label()
                );
            }
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
        self.redial_closed(r);
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
            let line = crate::protocol::info::client_info(self, cid, addr);
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
            .filter(|(_, c)| c.route.as_ref().is_some_and(|r| r.registered))
            .map(|(t, _)| t)
            .collect();
        for t in routes {
            self.queue(t, line.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ClusterConfig, Config};
    use crate::core::broker::Identity;
    use crate::protocol::parser::Msg;
    use std::net::TcpListener;

    /// A clustered broker, and a way to give it accepted connections.
    struct World {
        b: Broker,
        listener: TcpListener,
        peers: Vec<std::net::TcpStream>,
        _poll: mio::Poll,
    }

    impl World {
        fn new() -> World {
            let poll = mio::Poll::new().unwrap();
            let cfg = Config {
                cluster: Some(ClusterConfig {
                    name: Some("c".into()),
                    host: "127.0.0.1".into(),
                    ..ClusterConfig::default()
                }),
                ..Config::default()
            };
            let ident = Identity {
                id: "NTEST".into(),
                name: "test".into(),
                host: "127.0.0.1".into(),
                port: 4222,
                started: std::time::SystemTime::now(),
                client_urls: Vec::new(),
            };
            let mut b = Broker::new(cfg, ident, poll.registry().try_clone().unwrap());
            let waker = Arc::new(Waker::new(poll.registry(), Token(usize::MAX)).unwrap());
            b.start_cluster(6222, waker);
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            World {
                b,
                listener,
                peers: Vec::new(),
                _poll: poll,
            }
        }

        fn accept(&mut self) -> (TcpStream, SocketAddr) {
            let addr = self.listener.local_addr().unwrap();
            self.peers.push(std::net::TcpStream::connect(addr).unwrap());
            let (sock, addr) = self.listener.accept().unwrap();
            sock.set_nonblocking(true).unwrap();
            (TcpStream::from_std(sock), addr)
        }
    }

    /// Remote interest of a route that is not registered (as if it had got in before the
    /// handshake) draws no message: the fan-out skips it, plain and queue alike.
    #[test]
    fn only_registered_routes_get_messages() {
        let mut w = World::new();
        let (sock, addr) = w.accept();
        let r = w.b.add_route(sock, addr, RouteState::default()).unwrap();
        w.b.on_remote_sub(r, b"$G", b">", None, 0);
        w.b.on_remote_sub(r, b"$G", b"foo", Some(b"q"), 1);
        let (sock, addr) = w.accept();
        let c = w.b.add_client(sock, addr).unwrap();
        let m = Msg {
            account: b"",
            subject: b"foo",
            reply: b"",
            queues: b"",
            hdr_size: None,
            hdr_len: 0,
            size: b"6",
            len: 6,
            payload: b"secret",
        };
        assert!(!w.b.deliver(c, &m));
        assert_eq!(w.b.conns[r].counters.out_msgs, 0);
        w.b.conns[r].route.as_mut().unwrap().registered = true;
        assert!(w.b.deliver(c, &m));
        assert_eq!(w.b.conns[r].counters.out_msgs, 1);
    }

    /// What an accepted route sends before a valid CONNECT is an Authorization Violation,
    /// and its RS+/RMSG are not acted on: no interest, no message for local subscribers.
    #[test]
    fn an_accepted_route_must_connect_first() {
        let mut w = World::new();
        let (sock, addr) = w.accept();
        let c = w.b.add_client(sock, addr).unwrap();
        w.b.process(c, b"CONNECT {}\r\nSUB foo 1\r\n");
        for early in [
            &b"RS+ $G >\r\n"[..],
            b"RMSG $G foo 8\r\ninjected\r\n",
            b"PING\r\n",
        ] {
            let (sock, addr) = w.accept();
            let r = w.b.add_route(sock, addr, RouteState::default()).unwrap();
            w.b.conns[c].counters.out_msgs = 0;
            w.b.process(r, early);
            assert_eq!(w.b.conns[r].closing, Some(CloseReason::AuthViolation));
            assert!(w.b.conns[r].route.as_ref().unwrap().subs.is_empty());
            assert_eq!(w.b.conns[c].counters.out_msgs, 0);
        }
        // After a CONNECT, but before its INFO registers it: still not acted on.
        let (sock, addr) = w.accept();
        let r = w.b.add_route(sock, addr, RouteState::default()).unwrap();
        w.b.process(
            r,
            b"CONNECT {\"cluster\":\"c\",\"name\":\"X\"}\r\nRS+ $G >\r\nRMSG $G foo 8\r\ninjected\r\n",
        );
        assert_eq!(w.b.conns[r].closing, None);
        assert!(w.b.conns[r].route.as_ref().unwrap().subs.is_empty());
        assert_eq!(w.b.conns[c].counters.out_msgs, 0);
        // Registered: now its interest and messages count.
        w.b.process(
            r,
            b"INFO {\"server_id\":\"X\",\"cluster\":\"c\",\"port\":1}\r\nRS+ $G >\r\nRMSG $G foo 2\r\nok\r\n",
        );
        assert_eq!(w.b.conns[r].route.as_ref().unwrap().subs.len(), 1);
        assert_eq!(w.b.conns[c].counters.out_msgs, 1);
    }
}
