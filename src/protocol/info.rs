//! The server's identity and the INFO a client gets on connect.
//!
//! Fields and their order are nats-server 2.9's (`server.go` `Info`), written as
//! `INFO {json} \r\n` with the space before CRLF that clients expect. Plain data in, text out:
//! `core` decides what to advertise (`Broker::client_info`), `cluster` writes the route INFO.

use crate::protocol::json::Obj;
use crate::util::rng::Rng;
use std::net::SocketAddr;
use std::time::{Instant, SystemTime};

/// Who this server is, as INFO and /varz show it. Fixed at start except for what the
/// cluster and lame-duck mode change (each kept here only).
pub struct Identity {
    pub id: String,
    pub name: String,
    pub host: String,
    pub port: u16,
    pub started: SystemTime,
    /// Where clients can reach this server (INFO `connect_urls`).
    pub client_urls: Vec<String>,
    /// This server's place in a cluster, when clustering is on.
    pub cluster: Option<ClusterIdent>,
    /// When the set of the cluster's client URLs last changed: a client's first PING after
    /// CONNECT gets a fresh INFO if it connected before that.
    pub urls_changed: Instant,
    /// Lame-duck mode: INFO says `ldm: true`.
    pub lame_duck: bool,
}

/// The cluster as this server is part of it (INFO, route INFO, /varz).
#[derive(Clone, Debug)]
pub struct ClusterIdent {
    pub name: String,
    /// No name was configured: ours was generated and gives way to the cluster's.
    pub dynamic: bool,
    /// Where routes are accepted (the bound port, which `-1` picks).
    pub host: String,
    pub port: u16,
}

impl Identity {
    /// A server listening for clients on `host:port`, not (yet) in a cluster.
    pub fn new(
        id: String,
        name: String,
        host: String,
        port: u16,
        client_urls: Vec<String>,
    ) -> Identity {
        Identity {
            id,
            name,
            host,
            port,
            started: SystemTime::now(),
            client_urls,
            cluster: None,
            urls_changed: Instant::now(),
            lame_duck: false,
        }
    }
}

/// A server id shaped like nats-server's (an NKey public key: 'N' and 55 base32 characters).
pub fn new_server_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut rng = Rng::seeded();
    let mut id = String::with_capacity(56);
    id.push('N');
    for _ in 0..55 {
        id.push(ALPHABET[(rng.next_u64() >> 59) as usize] as char);
    }
    id
}

/// The fields that open both INFO and /varz: who this server is and where clients reach it.
pub fn write_identity(o: &mut Obj, ident: &Identity) {
    o.str("server_id", &ident.id)
        .str("server_name", &ident.name)
        .str("version", crate::config::NATS_VERSION)
        .int("proto", 1)
        .str("go", crate::config::BUILT_WITH)
        .str("host", &ident.host)
        .uint("port", ident.port as u64);
}

/// What a client's INFO says besides the server's identity.
pub struct ClientInfo<'a> {
    pub cid: u64,
    pub addr: SocketAddr,
    pub auth_required: bool,
    pub max_payload: usize,
    /// JetStream is enabled (`jetstream: true`, after max_payload as in nats-server).
    pub jetstream: bool,
    /// The cluster's client URLs, when they are advertised.
    pub connect_urls: Option<&'a [String]>,
}

/// The INFO line for a client connection.
pub fn client_info(ident: &Identity, c: &ClientInfo) -> String {
    let mut s = String::with_capacity(384);
    s.push_str("INFO ");
    let mut o = Obj::new(&mut s);
    write_identity(&mut o, ident);
    o.bool("headers", true);
    if c.auth_required {
        o.bool("auth_required", true);
    }
    o.uint("max_payload", c.max_payload as u64);
    if c.jetstream {
        o.bool("jetstream", true);
    }
    o.uint("client_id", c.cid)
        .str("client_ip", &c.addr.ip().to_string());
    if let Some(cl) = &ident.cluster {
        o.str("cluster", &cl.name);
        if let Some(urls) = c.connect_urls {
            o.strs("connect_urls", urls);
        }
    }
    if ident.lame_duck {
        o.bool("ldm", true);
    }
    o.end();
    s.push_str(" \r\n");
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn server_ids_look_like_nkeys() {
        let a = super::new_server_id();
        assert_eq!(a.len(), 56);
        assert!(a.starts_with('N'));
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_uppercase() || (b'2'..=b'7').contains(&c)));
    }
}
