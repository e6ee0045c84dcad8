//! The INFO a client gets on connect, and the server's identity.
//!
//! Fields and their order are nats-server 2.9's (`server.go` `Info`), written as
//! `INFO {json} \r\n` with the space before CRLF that clients expect.

use crate::core::broker::Broker;
use crate::protocol::json::Obj;
use std::net::SocketAddr;

/// A server id shaped like nats-server's (an NKey public key: 'N' and 55 base32 characters).
pub fn new_server_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut x = crate::util::hash::random_seed();
    let mut id = String::with_capacity(56);
    id.push('N');
    for _ in 0..55 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        id.push(ALPHABET[(x >> 59) as usize] as char);
    }
    id
}

/// The fields that open both INFO and /varz: who this server is and where clients reach it.
pub fn write_identity(o: &mut Obj, b: &Broker) {
    o.str("server_id", &b.ident.id)
        .str("server_name", &b.ident.name)
        .str("version", crate::config::VERSION)
        .int("proto", 1)
        .str("go", crate::config::BUILT_WITH)
        .str("host", &b.ident.host)
        .uint("port", b.ident.port as u64);
}

/// The INFO line for a new client connection.
pub fn client_info(b: &Broker, cid: u64, addr: SocketAddr) -> String {
    let mut s = String::with_capacity(384);
    s.push_str("INFO ");
    let mut o = Obj::new(&mut s);
    write_identity(&mut o, b);
    o.bool("headers", true);
    if b.cfg.auth.advertised() {
        o.bool("auth_required", true);
    }
    o.uint("max_payload", b.cfg.max_payload as u64)
        .uint("client_id", cid)
        .str("client_ip", &addr.ip().to_string());
    if let Some(cl) = &b.cluster {
        o.str("cluster", &cl.name);
        if !b.cfg.cluster.as_ref().is_some_and(|c| c.no_advertise) {
            o.strs("connect_urls", &b.cluster_connect_urls());
        }
    }
    if b.lame_duck {
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
