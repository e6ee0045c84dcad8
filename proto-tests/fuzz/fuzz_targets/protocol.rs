//! A connection's protocol handling: two real connections on a broker (no loop) are fed the
//! input, cut into reads of arbitrary sizes and interleaved between them, through the same
//! `ingest` path the loop uses (clients to the core, routes to the cluster). Then the pass ends as in the loop (timers, flush, reap), and
//! closing both must leave no subscription and no connection behind.
//!
//! The seed's first byte picks the setup: bit 0 turns client authentication on; bit 1 makes
//! the second connection a route (clustering on), accepted on the cluster port, or dialled by
//! us with bit 3; bit 2 turns cluster authorization on. After every read:
//! - no connection holds more input than its limits allow (max_control_line, max_payload:
//!   a declared size cannot pin memory the peer did not send);
//! - a route that is not registered was sent no message and holds no interest.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use tern::cluster::Cluster;
use tern::config::{ClusterConfig, Config, RouteUrl, User, READ_CHUNK};
use tern::conn::RouteState;
use tern::core::broker::Broker;
use tern::protocol::info::Identity;

struct World {
    broker: Broker,
    /// Clustering, when the seed turns it on.
    cluster: Option<Cluster>,
    listener: TcpListener,
    waker: Arc<mio::Waker>,
    _poll: mio::Poll,
}

fn world() -> World {
    let poll = mio::Poll::new().expect("poll");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let cfg = Config {
        max_payload: 512,
        max_control_line: 128,
        max_pending: 16 * 1024,
        max_subs: 64,
        ..Config::default()
    };
    let ident = Identity::new(
        "NFUZZ".into(),
        "fuzz".into(),
        "127.0.0.1".into(),
        4222,
        vec!["127.0.0.1:4222".into()],
    );
    let broker = Broker::new(cfg, ident, poll.registry().try_clone().expect("registry"));
    let waker = Arc::new(mio::Waker::new(poll.registry(), mio::Token(usize::MAX)).expect("waker"));
    World {
        broker,
        cluster: None,
        listener,
        waker,
        _poll: poll,
    }
}

thread_local! {
    static WORLD: RefCell<World> = RefCell::new(world());
}

fn accept(w: &mut World) -> (mio::net::TcpStream, std::net::SocketAddr, TcpStream) {
    let peer = TcpStream::connect(w.listener.local_addr().expect("addr")).expect("connect");
    let (sock, addr) = w.listener.accept().expect("accept");
    sock.set_nonblocking(true).expect("nonblocking");
    (mio::net::TcpStream::from_std(sock), addr, peer)
}

fn client(w: &mut World) -> (usize, TcpStream) {
    let (sock, addr, peer) = accept(w);
    (w.broker.add_client(sock, addr).expect("add"), peer)
}

/// A route connection: accepted on the cluster port, or one we dialled.
fn route(w: &mut World, dialled: bool) -> (usize, TcpStream) {
    let (sock, addr, peer) = accept(w);
    let state = RouteState {
        dialled: dialled.then(|| RouteUrl {
            host: "127.0.0.1".into(),
            port: 1,
            user: None,
            pass: None,
        }),
        explicit: dialled,
        ..RouteState::default()
    };
    let cl = w.cluster.as_mut().expect("clustered");
    (cl.add_route(&mut w.broker, sock, addr, state).expect("add"), peer)
}

/// The settings the seed byte asks for (see the module comment).
fn configure(w: &mut World, bits: u8) {
    let b = &mut w.broker;
    b.cfg.auth.users = if bits & 1 == 1 {
        vec![User {
            name: "u".into(),
            password: "p".into(),
            ..User::default()
        }]
    } else {
        Vec::new()
    };
    let clustered = bits & 2 == 2;
    b.cfg.cluster = clustered.then(|| ClusterConfig {
        name: Some("fuzz".into()),
        host: "127.0.0.1".into(),
        user: (bits & 4 == 4).then(|| "r".into()),
        pass: (bits & 4 == 4).then(|| "s".into()),
        ..ClusterConfig::default()
    });
    b.ident.cluster = None;
    w.cluster = None;
    if clustered {
        w.cluster = Cluster::start(b, 0, 6222, w.waker.clone());
    }
}

/// Bytes from connection `t`, as the loop hands them over: a client's to the core, a
/// route's to the cluster.
fn ingest(w: &mut World, t: usize, data: &[u8]) {
    let cluster = &mut w.cluster;
    w.broker.ingest(t, data, &mut |b, t, d| match cluster {
        Some(cl) if !b.conns[t].is_client() => cl.frames(b, t, d),
        _ => b.process(t, d),
    });
}

/// The end of a loop pass: stalls, timers, flush, reap (the cluster cleans up after routes).
fn end_of_pass(w: &mut World) {
    let conns = &mut w.broker.conns;
    conns.now = std::time::Instant::now();
    conns.check_stalls();
    conns.fire_timers();
    conns.flush_dirty();
    reap(w);
}

fn reap(w: &mut World) {
    for c in w.broker.reap() {
        if let Some(cl) = &mut w.cluster {
            cl.route_closed(&mut w.broker, c);
        }
    }
}

/// The invariants that must hold after every read (see the module comment).
fn check(b: &Broker) {
    let bound = READ_CHUNK + b.cfg.max_payload + b.cfg.max_control_line + 256;
    for (_, c) in b.conns.iter() {
        assert!(
            c.inbuf.len() <= bound,
            "{} holds {} bytes of input",
            c.label(),
            c.inbuf.len()
        );
        if let Some(r) = c.route().filter(|r| !r.registered) {
            assert_eq!(
                c.counters.out_msgs,
                0,
                "{}: message to an unregistered route",
                c.label()
            );
            assert!(
                r.subs.is_empty(),
                "{}: interest from an unregistered route",
                c.label()
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let (seed, input) = data.split_at(2);
    WORLD.with(|w| {
        let w = &mut *w.borrow_mut();
        configure(w, seed[0]);
        let (a, _pa) = client(w);
        let (b, _pb) = if w.cluster.is_some() {
            route(w, seed[0] & 8 == 8)
        } else {
            client(w)
        };
        let mut x = u64::from(seed[0]) << 8 | u64::from(seed[1]) | 1;
        let mut rest = input;
        while !rest.is_empty() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let n = (1 + (x % 64) as usize).min(rest.len());
            let t = if x & 0x100 == 0 { a } else { b };
            ingest(w, t, &rest[..n]);
            check(&w.broker);
            rest = &rest[n..];
            if x & 0x200 == 0 {
                end_of_pass(w);
            }
        }
        // Closed routes are not dialled again: this broker has no loop to dial them.
        if let Some(cl) = &mut w.cluster {
            cl.stopping = true;
        }
        w.broker.conns.close_all();
        reap(w);
        // The loop would read these producers again; there is none here.
        w.broker.conns.wake.clear();
        assert_eq!(w.broker.conns.len(), 0);
        assert_eq!(
            w.broker.sub_count(),
            0,
            "subscriptions outlived their connections"
        );
        assert_eq!(w.broker.conns.clients, 0);
    });
});
