//! A connection's protocol handling: two real client connections on a broker (no loop) are
//! fed the input, cut into reads of arbitrary sizes and interleaved between them, through the
//! same `ingest` path the loop uses. Then the pass ends as in the loop (timers, flush, reap),
//! and closing both must leave no subscription and no connection behind.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;
use std::net::{TcpListener, TcpStream};
use tern::broker::{Broker, Identity};
use tern::config::{Config, User};

struct World {
    broker: Broker,
    listener: TcpListener,
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
    let ident = Identity {
        id: "NFUZZ".into(),
        name: "fuzz".into(),
        host: "127.0.0.1".into(),
        port: 4222,
        started: std::time::SystemTime::now(),
        client_urls: vec!["127.0.0.1:4222".into()],
    };
    let broker = Broker::new(cfg, ident, poll.registry().try_clone().expect("registry"));
    World { broker, listener, _poll: poll }
}

thread_local! {
    static WORLD: RefCell<World> = RefCell::new(world());
}

fn client(w: &mut World) -> (usize, TcpStream) {
    let peer = TcpStream::connect(w.listener.local_addr().expect("addr")).expect("connect");
    let (sock, addr) = w.listener.accept().expect("accept");
    sock.set_nonblocking(true).expect("nonblocking");
    let t = w.broker.add_client(mio::net::TcpStream::from_std(sock), addr).expect("add");
    (t, peer)
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let (seed, input) = data.split_at(2);
    WORLD.with(|w| {
        let w = &mut *w.borrow_mut();
        // One bit of the seed turns authentication on.
        w.broker.cfg.auth.users = if seed[0] & 1 == 1 {
            vec![User { name: "u".into(), password: "p".into(), ..User::default() }]
        } else {
            Vec::new()
        };
        let (a, _pa) = client(w);
        let (b, _pb) = client(w);
        let mut x = u64::from(seed[0]) << 8 | u64::from(seed[1]) | 1;
        let mut rest = input;
        while !rest.is_empty() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let n = (1 + (x % 64) as usize).min(rest.len());
            let t = if x & 0x100 == 0 { a } else { b };
            w.broker.ingest(t, &rest[..n]);
            rest = &rest[n..];
            if x & 0x200 == 0 {
                w.broker.now = std::time::Instant::now();
                w.broker.check_stalls();
                w.broker.fire_timers();
                w.broker.flush_dirty();
                w.broker.reap();
            }
        }
        w.broker.close_all();
        w.broker.wake.clear(); // the loop would read these producers again; there is none here
        assert_eq!(w.broker.conns.len(), 0);
        assert_eq!(w.broker.sub_count(), 0, "subscriptions outlived their connections");
        assert_eq!(w.broker.clients, 0);
    });
});
