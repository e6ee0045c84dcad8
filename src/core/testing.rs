//! Unit-test scaffolding: a broker with no loop, and real sockets to give it connections.

use super::broker::Broker;
use crate::config::Config;
use crate::protocol::info::Identity;
use mio::net::TcpStream;
use std::net::{SocketAddr, TcpListener};

/// A broker, a listener to make connections with, and the peers' ends (kept open).
pub(crate) struct World {
    pub b: Broker,
    listener: TcpListener,
    pub peers: Vec<std::net::TcpStream>,
    pub poll: mio::Poll,
}

impl World {
    pub(crate) fn new(cfg: Config) -> World {
        let poll = mio::Poll::new().unwrap();
        let ident = Identity::new(
            "NTEST".into(),
            "test".into(),
            "127.0.0.1".into(),
            4222,
            Vec::new(),
        );
        let b = Broker::new(cfg, ident, poll.registry().try_clone().unwrap());
        World {
            b,
            listener: TcpListener::bind("127.0.0.1:0").unwrap(),
            peers: Vec::new(),
            poll,
        }
    }

    /// A connected socket (its peer is kept in `peers`).
    pub(crate) fn accept(&mut self) -> (TcpStream, SocketAddr) {
        let addr = self.listener.local_addr().unwrap();
        self.peers.push(std::net::TcpStream::connect(addr).unwrap());
        let (sock, addr) = self.listener.accept().unwrap();
        sock.set_nonblocking(true).unwrap();
        (TcpStream::from_std(sock), addr)
    }

    /// A new client connection.
    pub(crate) fn client(&mut self) -> usize {
        let (sock, addr) = self.accept();
        self.b.add_client(sock, addr).unwrap()
    }

    /// Client `t` sends `bytes` (all of it: the tests send whole frames).
    pub(crate) fn send(&mut self, t: usize, bytes: &[u8]) {
        self.b.ingest(t, bytes, &mut |b, t, d| b.process(t, d));
    }
}
