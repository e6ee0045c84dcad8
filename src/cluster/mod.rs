//! Clustering: route connections to other servers, tern or nats-server 2.9, in the same loop.
//!
//! A route is a `Conn` of kind `Route`, which carries its `RouteState`. Its life:
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
//! The handshake and gossip are in `handshake.rs`, dialling in `dial.rs`, remote interest in
//! `interest.rs`. The data plane is the core's: messages to routes (`core/deliver.rs`) and
//! local interest (`core/account.rs`) go to every registered route in `Table::routes`. What
//! the cluster shows of itself (/varz, /routez) is in `monitor/routez.rs`.

mod dial;
mod handshake;
mod interest;

use crate::conn::{CloseReason, Conn, Kind, RouteState};
use crate::core::broker::Broker;
use crate::protocol::info::ClusterIdent;
use crate::protocol::parser::{self, Limits, Op, Parsed, Peer};
use crate::protocol::wire;
use crate::server::listener::{listen_addr, Listener};
use crate::server::source::{Cx, ServerEvent, Source, SourceId};
use crate::util::logger;
use crate::util::rng::Rng;
use log::{debug, error, info};
use mio::event::Event;
use mio::net::TcpStream;
use mio::{Token, Waker};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The cluster's own state; who we are in the cluster (name, route port) is in the broker's
/// identity, the routes themselves are connections (owned by this source).
pub struct Cluster {
    /// This source (stamped on route connections).
    id: SourceId,
    /// The cluster port (the source's first token).
    listener: Option<Listener>,
    /// The token of connecting socket 0 (the ones after the listener's).
    dial_base: usize,
    /// Dials waiting for their time, for a lookup or for their connect (`dial.rs`).
    dialer: dial::Dialer,
    /// Addresses that turned out to be ourselves; never dialled again.
    self_urls: Vec<String>,
    /// Set while shutting down: closed routes are not redialled.
    pub stopping: bool,
}

/// A generated cluster name (nats-server generates one too when none is configured).
fn generated_name() -> String {
    let mut rng = Rng::seeded();
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..22)
        .map(|_| ALPHABET[(rng.next_u64() % 62) as usize] as char)
        .collect()
}

impl Cluster {
    /// Starts clustering if the config asks for it: binds the cluster port.
    pub fn plug(cx: &mut Cx) -> io::Result<Option<Box<dyn Source>>> {
        let Some(cc) = &cx.broker.cfg.cluster else {
            return Ok(None);
        };
        let addr = listen_addr(&cc.host, cc.port)?;
        let registry = &cx.broker.conns.registry;
        let listener = Listener::bind(addr, "Route", registry, cx.token(0))?;
        let bound = listener.local_addr()?;
        info!("Listening for route connections on {bound}");
        let dial_base = cx.token(1).0;
        let Some(mut cl) = Cluster::start(cx.broker, cx.id, bound.port(), cx.waker.clone()) else {
            return Ok(None);
        };
        (cl.listener, cl.dial_base) = (Some(listener), dial_base);
        Ok(Some(Box::new(cl)))
    }

    /// Turns clustering on once the route listener is bound to `port` (None when the config
    /// has no cluster); configured routes are dialled in the first pass. `waker` wakes the
    /// loop when a host name lookup is done.
    pub fn start(b: &mut Broker, id: SourceId, port: u16, waker: Arc<Waker>) -> Option<Cluster> {
        let cc = b.cfg.cluster.as_ref()?;
        let (name, dynamic) = match &cc.name {
            Some(n) => (n.clone(), false),
            None => (generated_name(), true),
        };
        info!("Cluster name is {name}");
        let mut dialer = dial::Dialer::new(waker);
        for url in &cc.routes {
            dialer.configured(url.clone(), b.conns.now);
        }
        b.ident.cluster = Some(ClusterIdent {
            name,
            dynamic,
            host: cc.host.clone(),
            port,
        });
        b.ident.urls_changed = b.conns.now;
        Some(Cluster {
            id,
            listener: None,
            dial_base: 0,
            dialer,
            self_urls: Vec::new(),
            stopping: false,
        })
    }

    /// Takes in a connected route (accepted, or dialled with `state.dialled` set).
    pub fn add_route(
        &mut self,
        b: &mut Broker,
        sock: TcpStream,
        addr: SocketAddr,
        state: RouteState,
    ) -> Option<usize> {
        let dialled = state.dialled.is_some();
        let t = match b.conns.add(sock, addr, Kind::Route(Box::new(state))) {
            Ok(t) => t,
            Err(e) => {
                error!("Error registering route connection: {e}");
                return None;
            }
        };
        let now = b.conns.now;
        let c = &mut b.conns[t];
        c.owner = Some(self.id);
        // Until the handshake is done, only the auth timeout (if any) matters.
        c.next_ping = now + Duration::from_secs(3600);
        if !dialled {
            if let Some(cc) = b.cfg.cluster.as_ref().filter(|cc| cc.user.is_some()) {
                let timeout = cc
                    .auth_timeout
                    .unwrap_or(crate::config::DEFAULT_AUTH_TIMEOUT);
                c.auth_deadline = Some(now + timeout);
            }
        }
        info!("{} - Route connection created", c.label());
        if dialled {
            let connect = handshake::connect_line(b, t);
            b.conns.queue(t, connect.as_bytes());
        }
        let info = handshake::info_line(b, false);
        b.conns.queue(t, info.as_bytes());
        b.conns.schedule(t);
        Some(t)
    }

    /// Takes in the routes that connected to the cluster port.
    fn accept(&mut self, b: &mut Broker) {
        let Some(l) = &mut self.listener else { return };
        let mut accepted = Vec::new();
        l.accept_all(b.conns.now, |sock, addr| accepted.push((sock, addr)));
        for (sock, addr) in accepted {
            self.add_route(b, sock, addr, RouteState::default());
        }
    }

    /// Acts on bytes from route `t`, frame by frame; returns how many were used (the caller
    /// keeps the rest, a frame split by the read).
    pub fn frames(&mut self, b: &mut Broker, t: usize, data: &[u8]) -> usize {
        let mut pos = 0;
        while pos < data.len() {
            if b.conns[t].closing.is_some() || !handshake::may_send(b, t, data[pos]) {
                return data.len();
            }
            let lim = Limits {
                peer: Peer::Route,
                max_control_line: b.cfg.max_control_line,
                max_payload: b.cfg.max_payload,
                headers: b.conns[t].opts.headers,
            };
            match parser::parse(&data[pos..], &lim) {
                Parsed::Frame(op, n) => {
                    if logger::trace_on() {
                        b.trace_in(t, &data[pos..pos + n], &op);
                    }
                    pos += n;
                    self.route_op(b, t, op);
                }
                Parsed::Incomplete(need) => {
                    b.conns[t].need = need;
                    break;
                }
                Parsed::Fail(f) => {
                    b.parse_failure(t, f, &data[pos..]);
                    return data.len();
                }
            }
        }
        pos
    }

    /// What a route's frame does.
    fn route_op(&mut self, b: &mut Broker, t: usize, op: Op) {
        let registered = b.conns[t].is_registered_route();
        match op {
            Op::Connect(arg) => handshake::on_connect(b, t, arg),
            Op::Info(arg) => self.on_info(b, t, arg),
            Op::Ping => {
                b.conns[t].last_ping_in = b.conns.now;
                b.conns.queue(t, wire::PONG);
            }
            Op::Pong => b.conns.on_pong(t),
            // See the module comment: nothing before registration reaches the subject index
            // or a subscriber.
            Op::RouteSub { .. } | Op::RouteUnsub { .. } | Op::Pub(_) if !registered => {
                debug!(
                    "{} - Ignoring a frame from a route not registered yet",
                    b.conns[t].label()
                );
            }
            Op::RouteSub {
                account,
                subject,
                queue,
                weight,
            } => interest::on_remote_sub(b, t, account, subject, queue, weight),
            Op::RouteUnsub {
                account,
                subject,
                queue,
            } => interest::on_remote_unsub(b, t, account, subject, queue),
            Op::Pub(m) => {
                let now = b.conns.now;
                let c = &mut b.conns[t];
                c.counters.in_msgs += 1;
                c.counters.in_bytes += m.payload.len() as u64;
                c.last_activity = now;
                b.stats.in_msgs += 1;
                b.stats.in_bytes += m.payload.len() as u64;
                b.deliver(t, &m);
            }
            Op::Err(text) => {
                let text = format!("Route Error {}", String::from_utf8_lossy(text));
                b.conns.log_error(t, &text);
                b.conns.close(t, CloseReason::ParseError);
            }
            // +OK, and client verbs that nats-server also ignores on routes.
            Op::Ok | Op::Sub { .. } | Op::Unsub { .. } => {}
        }
    }

    /// Cleans up after route connection `c` was freed: its remote interest, the URLs it
    /// offered our clients, and, if the rules say so, dials it again.
    pub fn route_closed(&mut self, b: &mut Broker, c: Conn) {
        let Kind::Route(mut r) = c.kind else { return };
        for (_, (acc, id)) in r.subs.drain() {
            b.accounts[acc].sublist.remove(id);
        }
        let still_connected = !r.remote_id.is_empty() && route_to(b, &r.remote_id).is_some();
        if r.registered && !r.connect_urls.is_empty() {
            r.connect_urls.clear();
            client_urls_changed(b);
        }
        if self.stopping || still_connected || r.remote_id == b.ident.id {
            return;
        }
        self.redial_closed(b, &r);
    }
}

impl Source for Cluster {
    fn ready(&mut self, cx: &mut Cx, token: Token, _ev: &Event) {
        match cx.index(token) {
            0 => self.accept(cx.broker),
            n => self.on_dial_event(cx.broker, n - 1),
        }
    }

    fn input(&mut self, cx: &mut Cx, t: usize, data: &[u8]) -> usize {
        self.frames(cx.broker, t, data)
    }

    fn closed(&mut self, cx: &mut Cx, c: Conn) {
        self.route_closed(cx.broker, c);
    }

    fn woken(&mut self, cx: &mut Cx) {
        self.lookups_done(cx.broker);
    }

    fn event(&mut self, cx: &mut Cx, ev: ServerEvent) {
        match ev {
            ServerEvent::LameDuck => routes_lame_duck(cx.broker),
            ServerEvent::Shutdown => self.stopping = true,
            ServerEvent::Reload => {}
        }
    }

    fn deadline(&self) -> Option<Instant> {
        let retry = self.listener.as_ref().and_then(Listener::retry_at);
        self.next_dial().into_iter().chain(retry).min()
    }

    fn end_of_pass(&mut self, cx: &mut Cx) {
        if self
            .listener
            .as_ref()
            .is_some_and(|l| l.due(cx.broker.conns.now))
        {
            self.accept(cx.broker);
        }
        self.run_dials(cx.broker);
    }
}

/// The registered route to the server with id `id`, if any.
fn route_to(b: &Broker, id: &str) -> Option<usize> {
    let mut routes = b.conns.routes.iter().copied();
    routes.find(|&t| {
        b.conns[t]
            .route()
            .is_some_and(|r| r.registered && r.remote_id == id)
    })
}

/// The registered routes.
fn registered_routes(b: &Broker) -> Vec<usize> {
    let routes = b.conns.routes.iter().copied();
    routes
        .filter(|&t| b.conns[t].is_registered_route())
        .collect()
}

/// Client URLs changed: remember when, and tell connected clients (async INFO).
fn client_urls_changed(b: &mut Broker) {
    b.ident.urls_changed = b.conns.now;
    if b.cfg.cluster.as_ref().is_some_and(|c| c.no_advertise) {
        return;
    }
    let clients: Vec<(usize, u64, SocketAddr)> = b
        .conns
        .iter()
        .filter(|(_, c)| c.is_client() && c.connected && c.opts.protocol >= 1)
        .map(|(t, c)| (t, c.cid, c.addr))
        .collect();
    for (t, cid, addr) in clients {
        let line = b.client_info(cid, addr);
        b.conns.queue(t, line.as_bytes());
    }
}

/// Tells the routes we are in lame-duck mode (they stop offering our URLs to clients).
fn routes_lame_duck(b: &mut Broker) {
    if b.ident.cluster.is_none() {
        return;
    }
    let line = handshake::info_line(b, true);
    for t in registered_routes(b) {
        b.conns.queue(t, line.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ClusterConfig, Config};
    use crate::core::testing::World;
    use crate::protocol::parser::Msg;
    use mio::Token;

    /// A clustered broker with no loop.
    fn world() -> (World, Cluster) {
        let cfg = Config {
            cluster: Some(ClusterConfig {
                name: Some("c".into()),
                host: "127.0.0.1".into(),
                ..ClusterConfig::default()
            }),
            ..Config::default()
        };
        let mut w = World::new(cfg);
        let waker = Arc::new(Waker::new(w.poll.registry(), Token(usize::MAX)).unwrap());
        let cl = Cluster::start(&mut w.b, 0, 6222, waker).unwrap();
        (w, cl)
    }

    /// An accepted route connection.
    fn route(w: &mut World, cl: &mut Cluster) -> usize {
        let (sock, addr) = w.accept();
        cl.add_route(&mut w.b, sock, addr, RouteState::default())
            .unwrap()
    }

    /// Remote interest of a route that is not registered (as if it had got in before the
    /// handshake) draws no message: the fan-out skips it, plain and queue alike.
    #[test]
    fn only_registered_routes_get_messages() {
        let (mut w, mut cl) = world();
        let r = route(&mut w, &mut cl);
        interest::on_remote_sub(&mut w.b, r, b"$G", b">", None, 0);
        interest::on_remote_sub(&mut w.b, r, b"$G", b"foo", Some(b"q"), 1);
        let c = w.client();
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
        w.b.conns[r].route_mut().unwrap().registered = true;
        assert!(w.b.deliver(c, &m));
        assert_eq!(w.b.conns[r].counters.out_msgs, 1);
    }

    /// What an accepted route sends before a valid CONNECT is an Authorization Violation,
    /// and its RS+/RMSG are not acted on: no interest, no message for local subscribers.
    #[test]
    fn an_accepted_route_must_connect_first() {
        let (mut w, mut cl) = world();
        let c = w.client();
        w.send(c, b"CONNECT {}\r\nSUB foo 1\r\n");
        for early in [
            &b"RS+ $G >\r\n"[..],
            b"RMSG $G foo 8\r\ninjected\r\n",
            b"PING\r\n",
        ] {
            let r = route(&mut w, &mut cl);
            w.b.conns[c].counters.out_msgs = 0;
            cl.frames(&mut w.b, r, early);
            assert_eq!(w.b.conns[r].closing, Some(CloseReason::AuthViolation));
            assert!(w.b.conns[r].route().unwrap().subs.is_empty());
            assert_eq!(w.b.conns[c].counters.out_msgs, 0);
        }
        // After a CONNECT, but before its INFO registers it: still not acted on.
        let r = route(&mut w, &mut cl);
        cl.frames(
            &mut w.b,
            r,
            b"CONNECT {\"cluster\":\"c\",\"name\":\"X\"}\r\nRS+ $G >\r\nRMSG $G foo 8\r\ninjected\r\n",
        );
        assert_eq!(w.b.conns[r].closing, None);
        assert!(w.b.conns[r].route().unwrap().subs.is_empty());
        assert_eq!(w.b.conns[c].counters.out_msgs, 0);
        // Registered: now its interest and messages count.
        cl.frames(
            &mut w.b,
            r,
            b"INFO {\"server_id\":\"X\",\"cluster\":\"c\",\"port\":1}\r\nRS+ $G >\r\nRMSG $G foo 2\r\nok\r\n",
        );
        assert_eq!(w.b.conns[r].route().unwrap().subs.len(), 1);
        assert_eq!(w.b.conns[c].counters.out_msgs, 1);
    }
}
