// Monitoring under attack (issue 9, holes 8 and 9): connections that hold every HTTP slot must
// not lock operators out of /varz, and a /connz of thousands of connections must be rendered
// while clients keep being served, not in one go that holds up the loop. Also: a body rendered
// in slices (chunked) carries the same entries, byte for byte, as small pages of it, and is
// framed right for pipelining, HEAD and HTTP/1.0.

use crate::harness::*;
use crate::monitor::{parse_json, Http, Mon};
use std::net::TcpStream;
use std::time::Duration;

/// tern's number of monitoring slots (`http::MAX_CONNS`).
const SLOTS: usize = 256;

/// Send PING, wait for PONG; returns what came before it.
fn sync(c: &mut Client) -> String {
    c.send("PING\r\n");
    let ok = c.read_until(DEADLINE, |rx| find(rx, b"PONG\r\n").is_some());
    assert!(ok, "no PONG: got {:?} closed={}", esc(&c.rx), c.closed);
    let pos = find(&c.rx, b"PONG\r\n").unwrap();
    let got: Vec<u8> = c.rx.drain(..pos + 6).collect();
    esc(&got[..pos])
}

/// Every slot held by a stalled request (`GET /varz HTTP/1.1\r\n` and nothing more), and the
/// attackers reopening the ones they lose: fresh GET /varz still get answered (the oldest
/// stalled request makes room). nats-server has no slot limit and passes as well.
#[test]
fn http_slot_attack_does_not_lock_out_varz() {
    for m in Mon::both(None, &[]) {
        let open = |n: usize| -> Vec<Http> {
            (0..n)
                .map(|_| {
                    let mut h = Http::connect(m.http);
                    h.send("GET /varz HTTP/1.1\r\n");
                    h
                })
                .collect()
        };
        let mut attackers = open(SLOTS);
        for round in 0..5 {
            let r = m.get("/varz");
            assert_eq!(r.status, 200, "{}: round {round}", m.name);
            assert!(r.json().has("server_id"), "{}", m.name);
            // The attackers see which of theirs were dropped and open as many again.
            for h in attackers.iter_mut() {
                h.c.read_until(Duration::from_millis(1), |_| false);
            }
            let lost = attackers.iter().filter(|h| h.c.closed).count();
            attackers.retain(|h| !h.c.closed);
            attackers.extend(open(lost + 1));
        }
    }
}

/// With 5,000 connections, a /connz of all of them is rendered while clients keep being served:
/// a SUB and PING sent after the response began, and answered before its end was read, shows in
/// the last entry. Rendered in one go, the whole page would predate the SUB. (The reader does
/// not read until the PONG, so the server can only have rendered what the socket took.)
#[test]
fn big_connz_is_rendered_while_clients_are_served() {
    let m = Mon::tern(None, &[]);
    let idle: Vec<TcpStream> = (0..5000)
        .map(|_| TcpStream::connect(("127.0.0.1", m.srv.port)).expect("connect"))
        .collect();
    let v = m.json_until("/varz", |v| v.at("connections").u64() >= 5000);
    assert_eq!(v.at("connections").u64(), 5000);
    let mut last = m.nats(r#"{"verbose":false}"#);
    let mut h = Http::connect(m.http);
    h.send("GET /connz?limit=6000 HTTP/1.1\r\nHost: x\r\n\r\n");
    let began =
        h.c.read_until(DEADLINE * 4, |rx| find(rx, b"\r\n\r\n").is_some());
    assert!(began, "no response head: {:?}", esc(&h.c.rx));
    last.send("SUB probe 1\r\n");
    assert_eq!(sync(&mut last), "");
    let mut resp = None;
    for _ in 0..12 {
        resp = h.read(false);
        if resp.is_some() {
            break;
        }
    }
    let resp = resp.expect("the /connz response");
    assert_eq!(resp.status, 200);
    let j = resp.json();
    let conns = j.at("connections").arr();
    assert_eq!(conns.len(), 5001);
    assert_eq!(j.at("num_connections").u64(), 5001);
    let port = last.stream.local_addr().unwrap().port() as u64;
    let entry = conns.last().unwrap();
    assert_eq!(
        entry.at("port").u64(),
        port,
        "the newest connection is last"
    );
    assert_eq!(
        entry.at("subscriptions").u64(),
        1,
        "the last entry was rendered before the SUB that was answered first"
    );
    drop(idle);
}

/// The entries of a page rendered in slices (a chunked body) are, byte for byte, those of the
/// same connections fetched a few at a time (bodies complete in one slice), apart from the
/// times that move on between requests.
#[test]
fn sliced_connz_has_the_bytes_of_small_pages() {
    let m = Mon::tern(None, &[]);
    let mut clients: Vec<Client> = Vec::new();
    for i in 0..300 {
        let mut c = m.srv.client();
        c.send(format!(
            "CONNECT {{\"verbose\":false,\"name\":\"c{i}\",\"lang\":\"x\\\"<&>\"}}\r\nSUB s.{i} {i}\r\n"
        ));
        clients.push(c);
    }
    for c in clients.iter_mut() {
        sync(c);
    }
    let entries = |body: &str| -> Vec<String> {
        // One entry per connection, between the lines that open and close it.
        let moving = ["\"uptime\"", "\"idle\"", "\"last_activity\""];
        let list = body.strip_suffix("\n  ]\n}").expect("the end of the list");
        list.split("\n    {\n")
            .skip(1)
            .map(|e| {
                e.trim_end_matches(',')
                    .lines()
                    .filter(|l| !moving.iter().any(|k| l.trim_start().starts_with(k)))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .collect()
    };
    let big = m.get("/connz?subs=detail&limit=300");
    assert_eq!(big.header("transfer-encoding"), Some("chunked"));
    let big = entries(&big.text());
    assert_eq!(big.len(), 300);
    let mut small = Vec::new();
    for offset in (0..300).step_by(25) {
        let r = m.get(&format!("/connz?subs=detail&limit=25&offset={offset}"));
        assert!(r.header("content-length").is_some());
        small.extend(entries(&r.text()));
    }
    assert_eq!(big.len(), small.len());
    for (i, (b, s)) in big.iter().zip(&small).enumerate() {
        assert_eq!(b, s, "entry {i}");
    }
    // JSONP around a sliced body.
    let r = m.get("/connz?limit=300&callback=f");
    assert_eq!(r.header("content-type"), Some("application/javascript"));
    let t = r.text();
    let inner = t.strip_prefix("f(").and_then(|t| t.strip_suffix(')'));
    let j = parse_json(inner.expect("f(...)")).expect("JSON inside f(...)");
    assert_eq!(j.at("connections").arr().len(), 300);
    // Requests pipelined behind a sliced body are answered after it, in order; HEAD gets the
    // head only; HTTP/1.0 gets the body up to the close.
    let mut h = Http::connect(m.http);
    let get = |target: &str, method: &str| format!("{method} {target} HTTP/1.1\r\nHost: x\r\n\r\n");
    h.send(
        get("/connz?limit=300", "GET") + &get("/connz?limit=300", "HEAD") + &get("/healthz", "GET"),
    );
    let r = h.read(false).expect("the sliced body");
    assert_eq!(r.json().at("connections").arr().len(), 300);
    let r = h.read(true).expect("HEAD");
    assert_eq!((r.status, r.body.len()), (200, 0));
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(
        h.read(false).expect("GET /healthz").text(),
        "{\"status\":\"ok\"}"
    );
    let mut h = Http::connect(m.http);
    h.send("GET /connz?limit=300 HTTP/1.0\r\n\r\n");
    let r = h.read(false).expect("HTTP/1.0");
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(r.header("transfer-encoding"), None);
    assert_eq!(r.json().at("connections").arr().len(), 300);
    assert!(h.wait_closed());
}
