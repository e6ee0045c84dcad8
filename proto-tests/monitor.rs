// The monitoring HTTP port (`-m PORT`, config `http: PORT` / `http_port: PORT`): the endpoints
// /varz, /connz (paging, sorting, cid/state/auth/user/acc filters, subscription lists), /subsz,
// /routez, /healthz, /accountz, / and /metrics. Differential: the recursive JSON key sets of every
// endpoint equal nats-server's for the same clients and traffic, and values (config values,
// counters, per-connection fields, orders, error statuses and bodies) agree with nats-server's.
// Robustness of tern's own HTTP server: malformed, oversized and non-GET requests, keep-alive,
// pipelining, HEAD, and stalled or idle HTTP clients never holding up NATS clients.
// Includes a tiny HTTP/1.1 client and a small recursive-descent JSON parser (std only).

use crate::harness::*;
use std::collections::BTreeSet;
use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// JSON

/// A parsed JSON value; numbers keep their text.
#[derive(Clone, Debug, PartialEq)]
pub enum J {
    Null,
    Bool(bool),
    Num(String),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

struct JsonParser<'a> {
    b: &'a [u8],
    i: usize,
}

impl JsonParser<'_> {
    fn err<T>(&self, what: &str) -> Result<T, String> {
        Err(format!("{} at byte {}", what, self.i))
    }
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\r' | b'\n') {
            self.i += 1;
        }
    }
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }
    fn eat(&mut self, c: u8) -> Result<(), String> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            self.err(&format!("expected {:?}", c as char))
        }
    }
    fn lit(&mut self, word: &str, v: J) -> Result<J, String> {
        if self.b[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            Ok(v)
        } else {
            self.err("bad literal")
        }
    }
    fn hex4(&mut self) -> Result<u32, String> {
        if self.i + 4 > self.b.len() {
            return self.err("short \\u escape");
        }
        let s = std::str::from_utf8(&self.b[self.i..self.i + 4]).map_err(|e| e.to_string())?;
        let v = u32::from_str_radix(s, 16).map_err(|_| format!("bad \\u escape at {}", self.i))?;
        self.i += 4;
        Ok(v)
    }
    fn string(&mut self) -> Result<String, String> {
        self.eat(b'"')?;
        let mut out: Vec<u8> = Vec::new();
        loop {
            let Some(c) = self.peek() else {
                return self.err("unterminated string");
            };
            self.i += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    let Some(e) = self.peek() else {
                        return self.err("unterminated escape");
                    };
                    self.i += 1;
                    match e {
                        b'"' | b'\\' | b'/' => out.push(e),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'u' => {
                            let mut cp = self.hex4()?;
                            if (0xD800..0xDC00).contains(&cp)
                                && self.b[self.i..].starts_with(b"\\u")
                            {
                                self.i += 2;
                                let lo = self.hex4()?;
                                cp = 0x10000
                                    + ((cp - 0xD800) << 10)
                                    + (lo.wrapping_sub(0xDC00) & 0x3FF);
                            }
                            let ch = char::from_u32(cp).unwrap_or('\u{FFFD}');
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        }
                        _ => return self.err("bad escape"),
                    }
                }
                c if c < 0x20 => return self.err("control character in string"),
                c => out.push(c),
            }
        }
        String::from_utf8(out).map_err(|e| e.to_string())
    }
    fn value(&mut self, depth: usize) -> Result<J, String> {
        if depth > 100 {
            return self.err("nested too deep");
        }
        self.ws();
        match self.peek() {
            None => self.err("unexpected end"),
            Some(b'{') => {
                self.i += 1;
                let mut v = Vec::new();
                self.ws();
                if self.peek() == Some(b'}') {
                    self.i += 1;
                    return Ok(J::Obj(v));
                }
                loop {
                    self.ws();
                    let k = self.string()?;
                    self.ws();
                    self.eat(b':')?;
                    let val = self.value(depth + 1)?;
                    v.push((k, val));
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(J::Obj(v));
                        }
                        _ => return self.err("expected ',' or '}'"),
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                let mut v = Vec::new();
                self.ws();
                if self.peek() == Some(b']') {
                    self.i += 1;
                    return Ok(J::Arr(v));
                }
                loop {
                    v.push(self.value(depth + 1)?);
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(J::Arr(v));
                        }
                        _ => return self.err("expected ',' or ']'"),
                    }
                }
            }
            Some(b'"') => Ok(J::Str(self.string()?)),
            Some(b't') => self.lit("true", J::Bool(true)),
            Some(b'f') => self.lit("false", J::Bool(false)),
            Some(b'n') => self.lit("null", J::Null),
            Some(c) if c == b'-' || c.is_ascii_digit() => {
                let s = self.i;
                while self.i < self.b.len()
                    && matches!(
                        self.b[self.i],
                        b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'
                    )
                {
                    self.i += 1;
                }
                let text = std::str::from_utf8(&self.b[s..self.i]).unwrap();
                if text.parse::<f64>().is_err() {
                    return self.err("bad number");
                }
                Ok(J::Num(text.to_string()))
            }
            Some(_) => self.err("unexpected character"),
        }
    }
}

/// Parses a complete JSON document.
pub fn parse_json(s: &str) -> Result<J, String> {
    let mut p = JsonParser {
        b: s.as_bytes(),
        i: 0,
    };
    let v = p.value(0)?;
    p.ws();
    if p.i != p.b.len() {
        return p.err("trailing characters");
    }
    Ok(v)
}

impl J {
    pub fn get(&self, key: &str) -> Option<&J> {
        match self {
            J::Obj(v) => v.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
    /// The value at a dotted path of object keys; panics with the document when absent.
    pub fn at(&self, path: &str) -> &J {
        let mut cur = self;
        for k in path.split('.') {
            cur = cur
                .get(k)
                .unwrap_or_else(|| panic!("no {:?} (at {:?}) in {}", path, k, clip_json(self)));
        }
        cur
    }
    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }
    pub fn u64(&self) -> u64 {
        match self {
            J::Num(n) => n
                .parse::<u64>()
                .unwrap_or_else(|_| panic!("not an unsigned integer: {}", n)),
            other => panic!("not a number: {:?}", other),
        }
    }
    pub fn s(&self) -> &str {
        match self {
            J::Str(s) => s,
            other => panic!("not a string: {:?}", other),
        }
    }
    pub fn arr(&self) -> &[J] {
        match self {
            J::Arr(v) => v,
            other => panic!("not an array: {:?}", other),
        }
    }
    pub fn bool(&self) -> bool {
        match self {
            J::Bool(b) => *b,
            other => panic!("not a bool: {:?}", other),
        }
    }
    /// Compact rendering (for messages).
    pub fn render(&self) -> String {
        match self {
            J::Null => "null".into(),
            J::Bool(b) => b.to_string(),
            J::Num(n) => n.clone(),
            J::Str(s) => format!("{:?}", s),
            J::Arr(v) => format!(
                "[{}]",
                v.iter().map(|x| x.render()).collect::<Vec<_>>().join(",")
            ),
            J::Obj(v) => format!(
                "{{{}}}",
                v.iter()
                    .map(|(k, x)| format!("{:?}:{}", k, x.render()))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        }
    }
}

fn clip_json(j: &J) -> String {
    let s = j.render();
    if s.len() > 3000 {
        format!(
            "{}...",
            &s[..s
                .char_indices()
                .nth(3000)
                .map(|(i, _)| i)
                .unwrap_or(s.len())]
        )
    } else {
        s
    }
}

/// The recursive key set: `a`, `a.b`, `list[].c` (array elements' keys are unioned).
pub fn key_set(j: &J) -> BTreeSet<String> {
    fn walk(j: &J, path: &str, out: &mut BTreeSet<String>) {
        match j {
            J::Obj(v) => {
                for (k, x) in v {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{}.{}", path, k)
                    };
                    out.insert(p.clone());
                    walk(x, &p, out);
                }
            }
            J::Arr(v) => {
                let p = format!("{}[]", path);
                for x in v {
                    walk(x, &p, out);
                }
            }
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    walk(j, "", &mut out);
    out
}

// ---------------------------------------------------------------------------------------------
// HTTP

/// One HTTP response.
#[derive(Clone, Debug)]
pub struct Resp {
    pub status: u16,
    pub status_line: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> J {
        parse_json(&self.text())
            .unwrap_or_else(|e| panic!("bad JSON ({}): {:?}", e, clip(&self.text(), 2000)))
    }
}

fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}... ({} bytes)", &s[..i], s.len()),
        None => s.to_string(),
    }
}

/// Parses one response at the start of `buf`: `None` while incomplete. `head_only`: the
/// request was HEAD (no body follows); `eof`: the peer closed, so a body without a length
/// ends here.
pub fn parse_resp(buf: &[u8], head_only: bool, eof: bool) -> Option<(Resp, usize)> {
    let hend = find(buf, b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..hend]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("").to_string();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let hv = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let mut i = hend + 4;
    let mut body = Vec::new();
    if head_only || status < 200 || status == 204 || status == 304 {
        // no body
    } else if hv("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let le = i + find(&buf[i..], b"\r\n")?;
            let size_text = String::from_utf8_lossy(&buf[i..le]).into_owned();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .unwrap_or_else(|_| panic!("bad chunk size {:?}", size_text));
            i = le + 2;
            if size == 0 {
                loop {
                    let te = i + find(&buf[i..], b"\r\n")?;
                    let empty = te == i;
                    i = te + 2;
                    if empty {
                        break;
                    }
                }
                break;
            }
            if buf.len() < i + size + 2 {
                return None;
            }
            body.extend_from_slice(&buf[i..i + size]);
            i += size + 2;
        }
    } else if let Some(cl) = hv("content-length") {
        let n: usize = cl
            .parse()
            .unwrap_or_else(|_| panic!("bad Content-Length {:?}", cl));
        if buf.len() < i + n {
            return None;
        }
        body.extend_from_slice(&buf[i..i + n]);
        i += n;
    } else if eof {
        body.extend_from_slice(&buf[i..]);
        i = buf.len();
    } else {
        return None;
    }
    Some((
        Resp {
            status,
            status_line,
            headers,
            body,
        },
        i,
    ))
}

/// An HTTP connection over the raw harness client.
pub struct Http {
    pub c: Client,
}

impl Http {
    pub fn connect(port: u16) -> Http {
        Http {
            c: Client::connect_raw(port),
        }
    }
    pub fn send(&mut self, data: impl AsRef<[u8]>) {
        self.c.send(data);
    }
    /// The next response (waits up to `DEADLINE`), or None if none arrives / the peer closed.
    pub fn read(&mut self, head_only: bool) -> Option<Resp> {
        self.c
            .read_until(DEADLINE, |rx| parse_resp(rx, head_only, false).is_some());
        let (r, n) = parse_resp(&self.c.rx, head_only, self.c.closed)?;
        self.c.rx.drain(..n);
        Some(r)
    }
    /// GET on this (kept-alive) connection.
    pub fn get(&mut self, target: &str) -> Resp {
        self.send(format!(
            "GET {} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: tern-proto\r\n\r\n",
            target
        ));
        self.read(false).unwrap_or_else(|| {
            panic!(
                "no response to GET {} (got {:?}, closed={})",
                target,
                esc(&self.c.rx),
                self.c.closed
            )
        })
    }
    /// Wait (up to DEADLINE) for the server to close; true if it did.
    pub fn wait_closed(&mut self) -> bool {
        self.c.read_until(DEADLINE, |_| false);
        self.c.closed
    }
}

pub fn http_get(port: u16, target: &str) -> Resp {
    Http::connect(port).get(target)
}

// ---------------------------------------------------------------------------------------------
// Servers with a monitoring port

/// A server with its monitoring port.
pub struct Mon {
    pub srv: Server,
    pub http: u16,
    pub name: &'static str,
}

impl Mon {
    /// Start `bin`; `{HTTP}` in `conf` is replaced by a free port, otherwise `-m <port>` is added.
    fn start_bin(bin: &Path, name: &'static str, conf: Option<&str>, args: &[&str]) -> Mon {
        let http = free_port();
        let hs = http.to_string();
        let in_conf = conf.is_some_and(|c| c.contains("{HTTP}"));
        let conf = conf.map(|c| c.replace("{HTTP}", &hs));
        let mut full: Vec<&str> = args.to_vec();
        if !in_conf {
            full.push("-m");
            full.push(&hs);
        }
        // No probe connection: it would show in the counters and the closed-connection list.
        let srv = Server::start_quiet(bin, conf.as_deref(), &full, &[http]);
        Mon { srv, http, name }
    }
    pub fn tern(conf: Option<&str>, args: &[&str]) -> Mon {
        Mon::start_bin(&tern_bin(), "tern", conf, args)
    }
    pub fn reference(conf: Option<&str>, args: &[&str]) -> Option<Mon> {
        reference_bin().map(|b| Mon::start_bin(&b, "nats-server", conf, args))
    }
    /// tern, then nats-server when installed.
    pub fn both(conf: Option<&str>, args: &[&str]) -> Vec<Mon> {
        let mut v = vec![Mon::tern(conf, args)];
        v.extend(Mon::reference(conf, args));
        v
    }
    pub fn get(&self, target: &str) -> Resp {
        http_get(self.http, target)
    }
    /// GET, require 200 and parse JSON.
    pub fn json(&self, target: &str) -> J {
        let r = self.get(target);
        assert_eq!(
            r.status,
            200,
            "{}: GET {} answered {:?}: {:?}",
            self.name,
            target,
            r.status_line,
            clip(&r.text(), 500)
        );
        parse_json(&r.text()).unwrap_or_else(|e| {
            panic!(
                "{}: GET {}: bad JSON ({}): {}",
                self.name,
                target,
                e,
                clip(&r.text(), 2000)
            )
        })
    }
    /// Poll `target` until `pred` holds (up to 2×DEADLINE); returns the last document.
    pub fn json_until(&self, target: &str, mut pred: impl FnMut(&J) -> bool) -> J {
        let end = Instant::now() + DEADLINE * 2;
        loop {
            let j = self.json(target);
            if pred(&j) || Instant::now() >= end {
                return j;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
    /// A NATS client that sent CONNECT `json` and got the PONG of a PING.
    pub fn nats(&self, connect_json: &str) -> Client {
        let mut c = self.srv.client();
        c.send(format!("CONNECT {}\r\nPING\r\n", connect_json));
        let got = sync_after_ping(&mut c);
        assert_eq!(got, "", "{}: unexpected reply to CONNECT", self.name);
        c
    }
}

/// Wait for the PONG of a PING already sent; returns what arrived before it, with the server's
/// own PINGs removed (and answered).
fn sync_after_ping(c: &mut Client) -> String {
    let ok = c.read_until(DEADLINE, |rx| find(rx, b"PONG\r\n").is_some());
    assert!(
        ok,
        "no PONG within {:?}: got {:?} closed={}",
        DEADLINE,
        esc(&c.rx),
        c.closed
    );
    let pos = find(&c.rx, b"PONG\r\n").unwrap();
    let got: Vec<u8> = c.rx.drain(..pos + 6).collect();
    let text = esc(&got[..pos]);
    for _ in 0..text.matches("PING\r\n").count() {
        c.send("PONG\r\n");
    }
    text.replace("PING\r\n", "")
}

/// Send PING, wait for PONG; returns what arrived before it (server PINGs removed).
fn sync(c: &mut Client) -> String {
    c.send("PING\r\n");
    sync_after_ping(c)
}

/// An RFC 3339 UTC timestamp (`2006-01-02T15:04:05.999999999Z`, as Go prints them) in
/// nanoseconds since the Unix epoch.
fn ts(s: &str) -> i128 {
    fn bad(s: &str) -> ! {
        panic!("bad timestamp {:?}", s)
    }
    let (date, time) = s.split_once('T').unwrap_or_else(|| bad(s));
    let time = time.strip_suffix('Z').unwrap_or_else(|| bad(s));
    let d: Vec<i64> = date
        .split('-')
        .map(|x| x.parse().unwrap_or_else(|_| bad(s)))
        .collect();
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let t: Vec<i64> = hms
        .split(':')
        .map(|x| x.parse().unwrap_or_else(|_| bad(s)))
        .collect();
    assert!(
        d.len() == 3 && t.len() == 3 && frac.len() <= 9,
        "bad timestamp {:?}",
        s
    );
    // Days from civil (proleptic Gregorian).
    let (y, mo, da) = (if d[1] <= 2 { d[0] - 1 } else { d[0] }, d[1], d[2]);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if mo > 2 { mo - 3 } else { mo + 9 }) + 2) / 5 + da - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    let secs = days * 86400 + t[0] * 3600 + t[1] * 60 + t[2];
    let nanos: i64 = if frac.is_empty() {
        0
    } else {
        format!("{:0<9}", frac).parse().unwrap_or_else(|_| bad(s))
    };
    secs as i128 * 1_000_000_000 + nanos as i128
}

fn local_port(c: &Client) -> u16 {
    c.stream.local_addr().unwrap().port()
}

/// The /connz entry of the connection whose remote port is `port`.
fn conn_by_port(connz: &J, port: u16) -> J {
    connz
        .at("connections")
        .arr()
        .iter()
        .find(|c| c.at("port").u64() == port as u64)
        .cloned()
        .unwrap_or_else(|| panic!("no connection with port {} in {}", port, clip_json(connz)))
}

/// The client ports of /connz's connections, in order.
fn ports_of(connz: &J) -> Vec<u16> {
    connz
        .at("connections")
        .arr()
        .iter()
        .map(|c| c.at("port").u64() as u16)
        .collect()
}

/// Wait until /connz?state=closed lists at least `n` connections.
fn wait_closed_conns(m: &Mon, n: u64) {
    let j = m.json_until("/connz?state=closed", |j| j.at("total").u64() >= n);
    assert!(
        j.at("total").u64() >= n,
        "{}: closed connection(s) not listed: {}",
        m.name,
        clip_json(&j)
    );
}

/// One named client with subscriptions (incl. a queue one) that published and received a
/// message, plus one client that connected and closed. Returns the open client.
fn standard_traffic(m: &Mon) -> Client {
    let mut a = m.nats(r#"{"name":"n","lang":"l","version":"v","verbose":false}"#);
    a.send("SUB foo 1\r\nSUB bar q 2\r\nSUB baz.* 3\r\nPUB foo 5\r\nhello\r\n");
    assert_eq!(sync(&mut a), "MSG foo 1 5\r\nhello\r\n", "{}", m.name);
    let mut b = m.nats(r#"{"verbose":false,"name":"gone"}"#);
    b.send("SUB gone 1\r\n");
    sync(&mut b);
    drop(b);
    wait_closed_conns(m, 1);
    a
}

/// The differences between the key sets of `targets` on tern and the reference (empty: none).
fn key_set_report(t: &Mon, r: &Mon, targets: &[&str], ignore: &[&str]) -> String {
    let mut report = String::new();
    for target in targets {
        let tk = key_set(&t.json(target));
        let rk: BTreeSet<String> = key_set(&r.json(target))
            .into_iter()
            .filter(|k| !ignore.iter().any(|p| k.starts_with(p)))
            .collect();
        if tk != rk {
            let only_t: Vec<_> = tk.difference(&rk).collect();
            let only_r: Vec<_> = rk.difference(&tk).collect();
            report.push_str(&format!(
                "GET {}:\n  only in tern: {:?}\n  only in nats-server: {:?}\n",
                target, only_t, only_r
            ));
        }
    }
    report
}

// ---------------------------------------------------------------------------------------------
// Differential key sets

/// Queried last: nats-server keeps the detail list it built for a closed connection's answer
/// and shows it in every later answer about that connection.
const KEYED_LAST: &[&str] = &["/connz?state=all&subs=detail"];

const KEYED: &[&str] = &[
    "/varz",
    "/connz",
    "/connz?subs=1",
    "/connz?subs=detail",
    "/connz?state=closed",
    "/connz?state=closed&subs=1",
    "/connz?auth=1",
    "/subsz",
    "/subsz?subs=1",
    "/subsz?subs=1&test=foo",
    "/routez",
    "/healthz",
    "/accountz",
];

#[test]
fn key_sets_match_reference() {
    let t = Mon::tern(None, &[]);
    let Some(r) = Mon::reference(None, &[]) else {
        return;
    };
    let _ct = standard_traffic(&t);
    let _cr = standard_traffic(&r);
    let mut report = key_set_report(&t, &r, KEYED, &[]);
    // nats-server's $G has its internal $SYS service imports; tern has none.
    report += &key_set_report(&t, &r, &["/accountz?acc=$G"], &["account_detail.imports"]);
    report += &key_set_report(&t, &r, KEYED_LAST, &[]);
    assert!(report.is_empty(), "key sets differ:\n{}", report);
}

#[test]
fn accountz_global_account_detail() {
    let t = Mon::tern(None, &[]);
    let _c = standard_traffic(&t);
    let j = t.json("/accountz?acc=$G");
    let want: BTreeSet<String> = [
        "server_id",
        "now",
        "system_account",
        "account_detail",
        "account_detail.account_name",
        "account_detail.update_time",
        "account_detail.expired",
        "account_detail.complete",
        "account_detail.jetstream_enabled",
        "account_detail.leafnode_connections",
        "account_detail.client_connections",
        "account_detail.subscriptions",
        "account_detail.sublist_stats",
        "account_detail.sublist_stats.num_subscriptions",
        "account_detail.sublist_stats.num_cache",
        "account_detail.sublist_stats.num_inserts",
        "account_detail.sublist_stats.num_removes",
        "account_detail.sublist_stats.num_matches",
        "account_detail.sublist_stats.cache_hit_rate",
        "account_detail.sublist_stats.max_fanout",
        "account_detail.sublist_stats.avg_fanout",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(key_set(&j), want);
    assert_eq!(j.at("account_detail.account_name").s(), "$G");
    assert_eq!(j.at("account_detail.client_connections").u64(), 1);
    assert_eq!(j.at("account_detail.subscriptions").u64(), 3);
    assert_eq!(j.at("system_account").s(), "$SYS");
}

const AUTH_CONF: &str = r#"
http: {HTTP}
authorization { users: [ {user: g, password: g} ] }
accounts {
  A { users: [{user: a, password: a}] }
  B { users: [{user: b, password: b}] }
}
"#;

/// Clients of AUTH_CONF: a (account A, named, with subs and traffic), b (B), g (global); one
/// closed `a` client. Returned in that order.
fn auth_traffic(m: &Mon) -> Vec<Client> {
    let mut a =
        m.nats(r#"{"user":"a","pass":"a","name":"n","lang":"l","version":"v","verbose":false}"#);
    a.send("SUB foo 1\r\nSUB bar q 2\r\nPUB foo 2\r\nhi\r\n");
    assert_eq!(sync(&mut a), "MSG foo 1 2\r\nhi\r\n", "{}", m.name);
    let mut b = m.nats(r#"{"user":"b","pass":"b","verbose":false}"#);
    b.send("SUB foo 1\r\n");
    sync(&mut b);
    let mut g = m.nats(r#"{"user":"g","pass":"g","verbose":false}"#);
    g.send("SUB foo 1\r\nSUB g.> 2\r\n");
    sync(&mut g);
    let mut gone = m.nats(r#"{"user":"a","pass":"a","verbose":false,"name":"gone"}"#);
    gone.send("SUB x 1\r\n");
    sync(&mut gone);
    drop(gone);
    wait_closed_conns(m, 1);
    vec![a, b, g]
}

#[test]
fn key_sets_match_reference_with_users_and_accounts() {
    let t = Mon::tern(Some(AUTH_CONF), &[]);
    let Some(r) = Mon::reference(Some(AUTH_CONF), &[]) else {
        return;
    };
    let _ct = auth_traffic(&t);
    let _cr = auth_traffic(&r);
    let mut targets: Vec<&str> = KEYED.to_vec();
    targets.extend_from_slice(&[
        "/connz?auth=1&subs=1&state=all",
        "/connz?auth=1&user=a",
        "/connz?auth=1&acc=A",
        "/connz?auth=1&state=closed",
        "/subsz?subs=1&acc=A",
    ]);
    for m in [&t, &r] {
        assert!(m.json("/varz").at("auth_required").bool(), "{}", m.name);
    }
    let mut report = key_set_report(&t, &r, &targets, &[]);
    report += &key_set_report(
        &t,
        &r,
        &["/accountz?acc=A", "/accountz?acc=B", "/accountz?acc=$G"],
        &["account_detail.imports"],
    );
    report += &key_set_report(&t, &r, KEYED_LAST, &[]);
    assert!(report.is_empty(), "key sets differ:\n{}", report);
}

#[test]
fn connz_auth_shows_user_and_account() {
    for m in Mon::both(Some(AUTH_CONF), &[]) {
        let cl = auth_traffic(&m);
        let (pa, pb, pg) = (local_port(&cl[0]), local_port(&cl[1]), local_port(&cl[2]));
        // Without auth=1: neither field.
        let j = m.json("/connz");
        for c in j.at("connections").arr() {
            assert!(
                !c.has("authorized_user") && !c.has("account"),
                "{}: {}",
                m.name,
                c.render()
            );
        }
        let j = m.json("/connz?auth=1");
        assert_eq!(j.at("num_connections").u64(), 3, "{}", m.name);
        let ca = conn_by_port(&j, pa);
        assert_eq!(ca.at("authorized_user").s(), "a", "{}", m.name);
        assert_eq!(ca.at("account").s(), "A", "{}", m.name);
        let cb = conn_by_port(&j, pb);
        assert_eq!(cb.at("authorized_user").s(), "b", "{}", m.name);
        assert_eq!(cb.at("account").s(), "B", "{}", m.name);
        // The global account is not shown.
        let cg = conn_by_port(&j, pg);
        assert_eq!(cg.at("authorized_user").s(), "g", "{}", m.name);
        assert!(!cg.has("account"), "{}: {}", m.name, cg.render());
        // Closed connections keep theirs.
        let j = m.json("/connz?auth=1&state=closed");
        let c = &j.at("connections").arr()[0];
        assert_eq!(c.at("authorized_user").s(), "a", "{}", m.name);
        assert_eq!(c.at("account").s(), "A", "{}", m.name);
        // Filters.
        let j = m.json("/connz?auth=1&user=b");
        assert_eq!(ports_of(&j), vec![pb], "{}", m.name);
        assert_eq!(j.at("num_connections").u64(), 1, "{}", m.name);
        let j = m.json("/connz?auth=1&acc=A");
        assert_eq!(ports_of(&j), vec![pa], "{}", m.name);
        let j = m.json("/connz?auth=1&acc=A&state=closed");
        assert_eq!(j.at("num_connections").u64(), 1, "{}", m.name);
        assert_eq!(j.at("total").u64(), 1, "{}", m.name);
        // Accounts.
        let j = m.json("/accountz");
        let names: BTreeSet<&str> = j.at("accounts").arr().iter().map(|a| a.s()).collect();
        for want in ["A", "B", "$G", "$SYS"] {
            assert!(names.contains(want), "{}: {:?}", m.name, names);
        }
        let j = m.json("/accountz?acc=A");
        assert_eq!(j.at("account_detail.account_name").s(), "A", "{}", m.name);
        assert_eq!(
            j.at("account_detail.client_connections").u64(),
            1,
            "{}",
            m.name
        );
        // (nats-server also lists its internal $SYS service-import subscriptions of B.)
        let j = m.json("/subsz?subs=1&acc=B");
        let subs: Vec<&J> = j
            .at("subscriptions_list")
            .arr()
            .iter()
            .filter(|s| !s.at("subject").s().starts_with("$SYS."))
            .collect();
        assert_eq!(subs.len(), 1, "{}: {}", m.name, j.render());
        assert_eq!(subs[0].at("account").s(), "B", "{}", m.name);
        assert_eq!(subs[0].at("subject").s(), "foo", "{}", m.name);
    }
}

/// What nats-server reports for `total` (and the page fields) when /connz filters by cid or
/// user: `total` stays the number of connections before that filter, `limit` is 1 for a cid.
#[test]
fn connz_filter_totals_match_reference() {
    for m in Mon::both(Some(AUTH_CONF), &[]) {
        let cl = auth_traffic(&m);
        let j = m.json("/connz?auth=1");
        let cid_b = conn_by_port(&j, local_port(&cl[1])).at("cid").u64();
        let page = |target: &str| {
            let j = m.json(target);
            (
                target.to_string(),
                j.at("num_connections").u64(),
                j.at("total").u64(),
                j.at("offset").u64(),
                j.at("limit").u64(),
            )
        };
        let cidq = format!("/connz?cid={}", cid_b);
        let got = vec![
            page("/connz"),
            page(&cidq),
            page("/connz?auth=1&user=b"),
            page("/connz?auth=1&acc=B"),
            page("/connz?state=all"),
        ];
        let want = vec![
            ("/connz".to_string(), 3, 3, 0, 1024),
            (cidq.clone(), 1, 3, 0, 1),
            ("/connz?auth=1&user=b".to_string(), 1, 3, 0, 1024),
            ("/connz?auth=1&acc=B".to_string(), 1, 1, 0, 1024),
            ("/connz?state=all".to_string(), 4, 4, 0, 1024),
        ];
        assert_eq!(
            got, want,
            "{}: (target, num_connections, total, offset, limit)",
            m.name
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Values

#[test]
fn varz_values_from_config() {
    let conf =
        "http_port: {HTTP}\nmax_payload: 65536\nmax_connections: 100\nping_interval: \"30s\"\n\
                write_deadline: \"3s\"\nmax_pending: 1000000\nmax_control_line: 2048\nping_max: 5\n\
                max_subscriptions: 50\n";
    for m in Mon::both(Some(conf), &[]) {
        let v = m.json("/varz");
        let want: [(&str, u64); 10] = [
            ("max_subscriptions", 50),
            ("port", m.srv.port as u64),
            ("http_port", m.http as u64),
            ("max_payload", 65536),
            ("max_connections", 100),
            ("ping_interval", 30_000_000_000),
            ("ping_max", 5),
            ("write_deadline", 3_000_000_000),
            ("max_pending", 1_000_000),
            ("max_control_line", 2048),
        ];
        for (k, val) in want {
            assert_eq!(v.at(k).u64(), val, "{}: varz {}", m.name, k);
        }
        assert_eq!(v.at("host").s(), "127.0.0.1", "{}", m.name);
        assert_eq!(v.at("proto").u64(), 1, "{}", m.name);
        assert!(!v.has("auth_required"), "{}", m.name);
        assert_eq!(v.at("connections").u64(), 0, "{}", m.name);
        assert_eq!(v.at("system_account").s(), "$SYS", "{}", m.name);
        assert_eq!(v.at("server_id").s().len(), 56, "{}", m.name);
        // The same server id and max_payload as the INFO line.
        let c = m.srv.client();
        assert_eq!(
            json_str(&c.info, "server_id").unwrap(),
            v.at("server_id").s()
        );
        assert_eq!(json_get(&c.info, "max_payload").unwrap(), "65536");
    }
    // Defaults.
    for m in Mon::both(None, &[]) {
        let v = m.json("/varz");
        assert!(!v.has("max_subscriptions"), "{}", m.name);
        let want: [(&str, u64); 7] = [
            ("max_payload", 1048576),
            ("max_connections", 65536),
            ("ping_interval", 120_000_000_000),
            ("ping_max", 2),
            ("write_deadline", 10_000_000_000),
            ("max_pending", 67108864),
            ("max_control_line", 4096),
        ];
        for (k, val) in want {
            assert_eq!(v.at(k).u64(), val, "{}: varz {}", m.name, k);
        }
        assert_eq!(v.at("http_port").u64(), m.http as u64, "{}", m.name);
    }
}

/// nats-server's monitoring listener binds to the client listen host unless `http` names one,
/// and /varz says so.
#[test]
fn varz_http_host_defaults_to_client_host() {
    for m in Mon::both(None, &[]) {
        let v = m.json("/varz");
        assert_eq!(v.at("host").s(), "127.0.0.1", "{}", m.name);
        assert_eq!(
            v.at("http_host").s(),
            "127.0.0.1",
            "{}: varz http_host",
            m.name
        );
    }
}

#[test]
fn varz_counters_follow_traffic() {
    for m in Mon::both(None, &[]) {
        let v0 = m.json("/varz");
        let subs0 = v0.at("subscriptions").u64();
        for k in [
            "in_msgs",
            "out_msgs",
            "in_bytes",
            "out_bytes",
            "connections",
            "total_connections",
        ] {
            assert_eq!(v0.at(k).u64(), 0, "{}: initial {}", m.name, k);
        }
        let mut s = m.nats(r#"{"verbose":false}"#);
        s.send("SUB foo 1\r\nSUB foo.* 2\r\n");
        sync(&mut s);
        let mut p = m.nats(r#"{"verbose":false}"#);
        // 5 messages in (41 bytes); 4 delivered (37 bytes).
        p.send("PUB foo 10\r\n0123456789\r\nPUB foo 10\r\n0123456789\r\nPUB foo 10\r\n0123456789\r\nPUB nobody 4\r\nnone\r\nPUB foo.bar 7\r\nfoo.bar\r\n");
        sync(&mut p);
        // p's PONG came after the deliveries were queued to s, so s's PONG follows them.
        let got = sync(&mut s);
        assert_eq!(
            count(got.as_bytes(), b"MSG foo 1 10\r\n"),
            3,
            "{}: {:?}",
            m.name,
            got
        );
        assert_eq!(
            count(got.as_bytes(), b"MSG foo.bar 2 7\r\n"),
            1,
            "{}: {:?}",
            m.name,
            got
        );
        let want: [(&str, u64); 6] = [
            ("in_msgs", 5),
            ("in_bytes", 41),
            ("out_msgs", 4),
            ("out_bytes", 37),
            ("connections", 2),
            ("total_connections", 2),
        ];
        let v = m.json_until("/varz", |v| want.iter().all(|(k, n)| v.at(k).u64() == *n));
        for (k, n) in want {
            assert_eq!(v.at(k).u64(), n, "{}: varz {}", m.name, k);
        }
        let subs = v.at("subscriptions").u64();
        if m.name == "tern" {
            assert_eq!(
                subs, 2,
                "tern: varz subscriptions (exactly the client subscriptions)"
            );
        } else {
            assert!(
                subs >= 2 && subs >= subs0 + 2,
                "{}: subscriptions {}",
                m.name,
                subs
            );
        }
        // A close: one connection fewer, the total stays; an UNSUB lowers subscriptions.
        drop(p);
        s.send("UNSUB 2\r\n");
        sync(&mut s);
        let v = m.json_until("/varz", |v| v.at("connections").u64() == 1);
        assert_eq!(v.at("connections").u64(), 1, "{}", m.name);
        assert_eq!(v.at("total_connections").u64(), 2, "{}", m.name);
        assert_eq!(v.at("subscriptions").u64(), subs - 1, "{}", m.name);
        assert_eq!(v.at("slow_consumers").u64(), 0, "{}", m.name);
    }
}

#[test]
fn varz_http_req_stats_count_the_current_request() {
    for m in Mon::both(None, &[]) {
        let v = m.json("/varz");
        assert_eq!(
            v.at("http_req_stats").render(),
            "{\"/varz\":1}",
            "{}",
            m.name
        );
        m.json("/connz");
        m.json("/connz?subs=1");
        m.json("/subsz");
        let v = m.json("/varz");
        let stats = v.at("http_req_stats");
        assert_eq!(
            stats.get("/varz").map(|x| x.u64()),
            Some(2),
            "{}: {}",
            m.name,
            stats.render()
        );
        assert_eq!(
            stats.get("/connz").map(|x| x.u64()),
            Some(2),
            "{}: {}",
            m.name,
            stats.render()
        );
        assert_eq!(
            stats.get("/subsz").map(|x| x.u64()),
            Some(1),
            "{}: {}",
            m.name,
            stats.render()
        );
        assert!(
            stats.get("/routez").is_none(),
            "{}: {}",
            m.name,
            stats.render()
        );
    }
}

#[test]
fn connz_connection_fields() {
    for m in Mon::both(None, &[]) {
        let a = standard_traffic(&m);
        let j = m.json("/connz");
        assert_eq!(j.at("num_connections").u64(), 1, "{}", m.name);
        assert_eq!(j.at("total").u64(), 1, "{}", m.name);
        assert_eq!(j.at("offset").u64(), 0, "{}", m.name);
        assert_eq!(j.at("limit").u64(), 1024, "{}", m.name);
        assert_eq!(
            j.at("server_id").s(),
            m.json("/varz").at("server_id").s(),
            "{}",
            m.name
        );
        let c = conn_by_port(&j, local_port(&a));
        assert_eq!(c.at("kind").s(), "Client", "{}", m.name);
        assert_eq!(c.at("type").s(), "nats", "{}", m.name);
        assert_eq!(c.at("ip").s(), "127.0.0.1", "{}", m.name);
        assert_eq!(c.at("name").s(), "n", "{}", m.name);
        assert_eq!(c.at("lang").s(), "l", "{}", m.name);
        assert_eq!(c.at("version").s(), "v", "{}", m.name);
        for (k, n) in [
            ("in_msgs", 1),
            ("out_msgs", 1),
            ("in_bytes", 5),
            ("out_bytes", 5),
            ("subscriptions", 3),
            ("pending_bytes", 0),
        ] {
            assert_eq!(c.at(k).u64(), n, "{}: connz {}", m.name, k);
        }
        assert!(!c.has("subscriptions_list"), "{}", m.name);
        assert!(!c.has("stop") && !c.has("reason"), "{}", m.name);
        let cid = c.at("cid").u64();
        // subs=1: the subjects.
        let j = m.json("/connz?subs=1");
        let c = conn_by_port(&j, local_port(&a));
        let mut subs: Vec<&str> = c
            .at("subscriptions_list")
            .arr()
            .iter()
            .map(|s| s.s())
            .collect();
        subs.sort();
        assert_eq!(subs, vec!["bar", "baz.*", "foo"], "{}", m.name);
        // subs=detail: subject, queue, sid, msgs, cid.
        let j = m.json("/connz?subs=detail");
        let c = conn_by_port(&j, local_port(&a));
        assert!(!c.has("subscriptions_list"), "{}", m.name);
        let mut det: Vec<String> = c
            .at("subscriptions_list_detail")
            .arr()
            .iter()
            .map(|d| {
                format!(
                    "{} {} {} {} {}",
                    d.at("subject").s(),
                    d.get("qgroup").map(|q| q.s()).unwrap_or("-"),
                    d.at("sid").s(),
                    d.at("msgs").u64(),
                    d.at("cid").u64() == cid
                )
            })
            .collect();
        det.sort();
        assert_eq!(
            det,
            vec!["bar q 2 0 true", "baz.* - 3 0 true", "foo - 1 1 true"],
            "{}",
            m.name
        );
        // cid filter.
        let j = m.json(&format!("/connz?cid={}", cid));
        assert_eq!(ports_of(&j), vec![local_port(&a)], "{}", m.name);
        let j = m.json("/connz?cid=999999");
        assert_eq!(j.at("num_connections").u64(), 0, "{}", m.name);
        assert!(j.at("connections").arr().is_empty(), "{}", m.name);
    }
}

/// A connection that has not sent CONNECT yet: nats-server shows `"rtt": "0s"` (always present
/// for a client) and `last_activity` equal to `start`.
#[test]
fn connz_connection_before_connect() {
    for m in Mon::both(None, &[]) {
        let c = m.srv.client();
        let port = local_port(&c) as u64;
        // (nats-server sends INFO before it lists the connection.)
        let j = m.json_until("/connz", |j| {
            j.at("connections")
                .arr()
                .iter()
                .any(|e| e.at("port").u64() == port)
        });
        let e = conn_by_port(&j, local_port(&c));
        assert_eq!(
            e.get("rtt").map(|r| r.s()),
            Some("0s"),
            "{}: {}",
            m.name,
            e.render()
        );
        assert_eq!(
            e.at("last_activity").s(),
            e.at("start").s(),
            "{}: last_activity of a connection with no activity",
            m.name
        );
        for k in ["name", "lang", "version", "subscriptions_list"] {
            assert!(!e.has(k), "{}: {}", m.name, e.render());
        }
        assert_eq!(e.at("subscriptions").u64(), 0, "{}", m.name);
    }
}

/// Every connection's last activity is at or after its start.
#[test]
fn connz_last_activity_not_before_start() {
    for m in Mon::both(None, &[]) {
        let mut cl = Vec::new();
        for i in 0..5 {
            cl.push(m.srv.client());
            let mut c = m.nats(r#"{"verbose":false}"#);
            c.send(format!("SUB s{} 1\r\n", i));
            sync(&mut c);
            cl.push(c);
        }
        let j = m.json("/connz");
        for e in j.at("connections").arr() {
            assert!(
                ts(e.at("last_activity").s()) >= ts(e.at("start").s()),
                "{}: last_activity before start: {}",
                m.name,
                e.render()
            );
        }
    }
}

/// A client's last activity for /connz.
fn last_activity(m: &Mon, c: &Client) -> String {
    conn_by_port(&m.json("/connz"), local_port(c))
        .at("last_activity")
        .s()
        .to_string()
}

/// nats-server does not count PING (nor PONG) as activity.
#[test]
fn connz_last_activity_not_changed_by_ping() {
    for m in Mon::both(None, &[]) {
        let mut s = m.nats(r#"{"verbose":false}"#);
        s.send("SUB foo 1\r\n");
        sync(&mut s);
        let l0 = last_activity(&m, &s);
        thread::sleep(Duration::from_millis(30));
        sync(&mut s);
        sync(&mut s);
        s.send("PONG\r\n");
        sync(&mut s);
        assert_eq!(
            last_activity(&m, &s),
            l0,
            "{}: a PING changed last_activity",
            m.name
        );
    }
}

/// nats-server updates a connection's last activity on CONNECT, PUB, SUB, UNSUB and on message
/// delivery to it.
#[test]
fn connz_last_activity_changed_by_delivery_sub_unsub() {
    for m in Mon::both(None, &[]) {
        let mut s = m.nats(r#"{"verbose":false}"#);
        s.send("SUB foo 1\r\n");
        sync(&mut s);
        let mut p = m.nats(r#"{"verbose":false}"#);
        let l0 = last_activity(&m, &s);
        thread::sleep(Duration::from_millis(30));
        p.send("PUB foo 1\r\nx\r\n");
        sync(&mut p);
        assert_eq!(sync(&mut s), "MSG foo 1 1\r\nx\r\n", "{}", m.name);
        let j = m.json_until("/connz", |j| {
            conn_by_port(j, local_port(&s)).at("last_activity").s() != l0
        });
        let l1 = conn_by_port(&j, local_port(&s))
            .at("last_activity")
            .s()
            .to_string();
        assert!(
            ts(&l1) > ts(&l0),
            "{}: delivery did not update the subscriber's last_activity ({} -> {})",
            m.name,
            l0,
            l1
        );
        let lp = last_activity(&m, &p);
        thread::sleep(Duration::from_millis(30));
        p.send("PUB nobody 0\r\n\r\n");
        sync(&mut p);
        let lp1 = last_activity(&m, &p);
        assert!(
            ts(&lp1) > ts(&lp),
            "{}: PUB did not update last_activity",
            m.name
        );
        thread::sleep(Duration::from_millis(30));
        p.send("SUB bar 5\r\n");
        sync(&mut p);
        let lp2 = last_activity(&m, &p);
        assert!(
            ts(&lp2) > ts(&lp1),
            "{}: SUB did not update last_activity",
            m.name
        );
        thread::sleep(Duration::from_millis(30));
        p.send("UNSUB 5\r\n");
        sync(&mut p);
        let lp3 = last_activity(&m, &p);
        assert!(
            ts(&lp3) > ts(&lp2),
            "{}: UNSUB did not update last_activity",
            m.name
        );
    }
}

/// Three clients whose counters give a strict order for each sort key.
struct SortSetup {
    clients: Vec<Client>,
    ports: Vec<u16>,
}

fn sort_setup(m: &Mon) -> SortSetup {
    let mut cl: Vec<Client> = (0..3).map(|_| m.nats(r#"{"verbose":false}"#)).collect();
    // subs: c1 1, c2 3, c3 2.
    cl[0].send("SUB x1 1\r\n");
    cl[1].send("SUB x2 1\r\nSUB y2 2\r\nSUB z2 3\r\n");
    cl[2].send("SUB x3 1\r\nSUB y3 2\r\n");
    for c in cl.iter_mut() {
        sync(c);
    }
    // c1: 2 msgs × 50 B to c3; c2: 5 × 2 B to c1; c3: 1 × 30 B to c2.
    let p50 = "a".repeat(50);
    let p30 = "b".repeat(30);
    cl[0].send(format!("PUB x3 50\r\n{p50}\r\nPUB x3 50\r\n{p50}\r\n"));
    cl[1].send("PUB x1 2\r\nzz\r\n".repeat(5));
    cl[2].send(format!("PUB x2 30\r\n{p30}\r\n"));
    let mut seen_after_pub: Vec<String> = cl.iter_mut().map(sync).collect();
    // Wait for every delivery.
    let wants: [(usize, &[u8], usize); 3] = [
        (0, b"MSG x1 1 2\r\n", 5),
        (1, b"MSG x2 1 30\r\n", 1),
        (2, b"MSG x3 1 50\r\n", 2),
    ];
    for (i, needle, n) in wants {
        let mut seen = std::mem::take(&mut seen_after_pub[i]);
        let end = Instant::now() + DEADLINE;
        while count(seen.as_bytes(), needle) < n && Instant::now() < end {
            seen.push_str(&sync(&mut cl[i]));
        }
        assert_eq!(
            count(seen.as_bytes(), needle),
            n,
            "{}: client {} got {:?}",
            m.name,
            i,
            seen
        );
    }
    // Latest activity: c3, then c1, then c2.
    for i in [2, 0, 1] {
        thread::sleep(Duration::from_millis(20));
        cl[i].send("UNSUB 99\r\n");
        sync(&mut cl[i]);
    }
    let ports = cl.iter().map(local_port).collect();
    SortSetup { clients: cl, ports }
}

#[test]
fn connz_sort_orders() {
    for m in Mon::both(None, &[]) {
        let st = sort_setup(&m);
        let p = &st.ports;
        // Counters must have settled (nats-server updates in_msgs after a read batch).
        m.json_until("/connz", |j| {
            j.at("connections")
                .arr()
                .iter()
                .map(|c| c.at("in_msgs").u64())
                .sum::<u64>()
                == 8
        });
        let order = |sort: &str| ports_of(&m.json(&format!("/connz?sort={}", sort)));
        let idx = |v: Vec<u16>| -> Vec<usize> {
            v.iter()
                .map(|x| p.iter().position(|y| y == x).unwrap() + 1)
                .collect()
        };
        let mut got = Vec::new();
        let mut want = Vec::new();
        for (sort, w) in [
            ("cid", vec![1, 2, 3]),
            ("start", vec![1, 2, 3]),
            ("subs", vec![2, 3, 1]),
            ("msgs_from", vec![2, 1, 3]),
            ("bytes_from", vec![1, 3, 2]),
            ("msgs_to", vec![1, 3, 2]),
            ("bytes_to", vec![3, 2, 1]),
            ("last", vec![2, 1, 3]),
        ] {
            got.push((sort, idx(order(sort))));
            want.push((sort, w));
        }
        assert_eq!(
            got, want,
            "{}: client order (1..3 = connect order) per sort",
            m.name
        );
        // Without a sort: by cid.
        assert_eq!(idx(order("")), vec![1, 2, 3], "{}", m.name);
        drop(st.clients);
    }
}

/// sort=uptime follows nats-server: ascending uptime, the newest connection first.
#[test]
fn connz_sort_by_uptime_matches_reference() {
    for m in Mon::both(None, &[]) {
        let mut cl = Vec::new();
        for _ in 0..3 {
            cl.push(m.nats(r#"{"verbose":false}"#));
            thread::sleep(Duration::from_millis(20));
        }
        let p: Vec<u16> = cl.iter().map(local_port).collect();
        let got = ports_of(&m.json("/connz?sort=uptime"));
        assert_eq!(
            got,
            vec![p[2], p[1], p[0]],
            "{}: sort=uptime (ports in connect order {:?})",
            m.name,
            p
        );
    }
}

/// sort=idle on tern: the most idle connection first.
#[test]
fn connz_sort_by_idle() {
    let m = Mon::tern(None, &[]);
    let st = sort_setup(&m);
    let p = &st.ports;
    let got = ports_of(&m.json("/connz?sort=idle"));
    assert_eq!(
        got,
        vec![p[2], p[0], p[1]],
        "sort=idle (ports in connect order {:?})",
        p
    );
}

#[test]
fn connz_paging() {
    for m in Mon::both(None, &[]) {
        let st = sort_setup(&m);
        let p = &st.ports;
        let page = |q: &str| {
            let j = m.json(&format!("/connz?{}", q));
            (
                ports_of(&j),
                j.at("num_connections").u64(),
                j.at("total").u64(),
                j.at("offset").u64(),
                j.at("limit").u64(),
            )
        };
        assert_eq!(
            page("limit=2"),
            (vec![p[0], p[1]], 2, 3, 0, 2),
            "{}",
            m.name
        );
        assert_eq!(
            page("limit=2&offset=2"),
            (vec![p[2]], 1, 3, 2, 2),
            "{}",
            m.name
        );
        assert_eq!(
            page("offset=1"),
            (vec![p[1], p[2]], 2, 3, 1, 1024),
            "{}",
            m.name
        );
        assert_eq!(page("offset=7"), (vec![], 0, 3, 7, 1024), "{}", m.name);
        assert_eq!(
            page("limit=-1&offset=-5"),
            (vec![p[0], p[1], p[2]], 3, 3, 0, 1024),
            "{}",
            m.name
        );
        assert_eq!(
            page("limit=0"),
            (vec![p[0], p[1], p[2]], 3, 3, 0, 1024),
            "{}",
            m.name
        );
        assert_eq!(
            page("sort=bytes_to&limit=1&offset=1"),
            (vec![p[1]], 1, 3, 1, 1),
            "{}",
            m.name
        );
        assert_eq!(
            page("sort=subs&limit=2"),
            (vec![p[1], p[2]], 2, 3, 0, 2),
            "{}",
            m.name
        );
    }
}

#[test]
fn connz_closed_connections() {
    for m in Mon::both(None, &[]) {
        let a = standard_traffic(&m);
        let j = m.json("/connz?state=closed");
        assert_eq!(j.at("num_connections").u64(), 1, "{}", m.name);
        assert_eq!(j.at("total").u64(), 1, "{}", m.name);
        let c = &j.at("connections").arr()[0];
        assert_eq!(c.at("reason").s(), "Client Closed", "{}", m.name);
        assert_eq!(c.at("name").s(), "gone", "{}", m.name);
        assert!(c.has("stop"), "{}", m.name);
        assert!(ts(c.at("stop").s()) >= ts(c.at("start").s()), "{}", m.name);
        assert_eq!(c.at("subscriptions").u64(), 1, "{}", m.name);
        let closed_cid = c.at("cid").u64();
        // subs=1 keeps the closed connection's subscriptions.
        let j = m.json("/connz?state=closed&subs=1");
        let subs = j.at("connections").arr()[0]
            .at("subscriptions_list")
            .render();
        assert_eq!(subs, "[\"gone\"]", "{}", m.name);
        // all = open + closed, by cid.
        let j = m.json("/connz?state=all");
        assert_eq!(j.at("total").u64(), 2, "{}", m.name);
        let cids: Vec<u64> = j
            .at("connections")
            .arr()
            .iter()
            .map(|c| c.at("cid").u64())
            .collect();
        let open_cid = conn_by_port(&m.json("/connz"), local_port(&a))
            .at("cid")
            .u64();
        let mut want = vec![open_cid, closed_cid];
        want.sort();
        assert_eq!(cids, want, "{}", m.name);
        assert_eq!(
            m.json("/connz?state=open").at("total").u64(),
            1,
            "{}",
            m.name
        );
        assert_eq!(
            m.json("/connz?state=ANY").at("total").u64(),
            2,
            "{}",
            m.name
        );
        // sort=stop and sort=reason are fine on closed connections.
        for q in [
            "/connz?state=closed&sort=stop",
            "/connz?state=closed&sort=reason",
        ] {
            assert_eq!(
                m.json(q).at("num_connections").u64(),
                1,
                "{}: {}",
                m.name,
                q
            );
        }
        // A connection closed by the server for a protocol error.
        let mut bad = m.srv.client();
        bad.send("FOO\r\n");
        bad.read_until(DEADLINE, |_| false);
        let j = m.json_until("/connz?state=closed", |j| j.at("total").u64() == 2);
        let reasons: BTreeSet<&str> = j
            .at("connections")
            .arr()
            .iter()
            .map(|c| c.at("reason").s())
            .collect();
        assert_eq!(
            reasons,
            ["Client Closed", "Protocol Violation"]
                .into_iter()
                .collect(),
            "{}",
            m.name
        );
        // sort=stop: the latest stop first; sort=reason: alphabetical.
        let order = |q: &str| -> Vec<String> {
            m.json(q)
                .at("connections")
                .arr()
                .iter()
                .map(|c| c.at("reason").s().to_string())
                .collect()
        };
        assert_eq!(
            order("/connz?state=closed&sort=stop"),
            vec!["Protocol Violation", "Client Closed"],
            "{}",
            m.name
        );
        assert_eq!(
            order("/connz?state=closed&sort=reason"),
            vec!["Client Closed", "Protocol Violation"],
            "{}",
            m.name
        );
        // A connection reset by the client (closed with the INFO unread: the kernel sends RST)
        // is a read error, as nats-server reports it.
        let raw = TcpStream::connect(m.srv.addr()).unwrap();
        let mut buf = [0u8; 16];
        raw.set_read_timeout(Some(DEADLINE)).unwrap();
        assert!(raw.peek(&mut buf).unwrap_or(0) > 0, "{}: no INFO", m.name);
        let reset_port = raw.local_addr().unwrap().port();
        drop(raw);
        let j = m.json_until("/connz?state=closed", |j| j.at("total").u64() == 3);
        let c = conn_by_port(&j, reset_port);
        assert_eq!(
            c.at("reason").s(),
            "Read Error",
            "{}: reset connection",
            m.name
        );
    }
}

#[test]
fn connz_bad_options_are_400() {
    for m in Mon::both(None, &[]) {
        let _a = standard_traffic(&m);
        for q in [
            "/connz?sort=nonsense",
            "/connz?sort=stop",
            "/connz?sort=reason",
            "/connz?sort=stop&state=open",
            "/connz?sort=stop&state=all",
            "/connz?state=nonsense",
            "/connz?subs=maybe",
            "/connz?auth=2",
            "/connz?limit=abc",
            "/connz?offset=1.5",
            "/connz?cid=-1",
            "/subsz?subs=yes",
            "/subsz?test=foo.*",
            "/subsz?limit=x",
        ] {
            let r = m.get(q);
            assert_eq!(
                r.status,
                400,
                "{}: GET {} -> {:?} {:?}",
                m.name,
                q,
                r.status_line,
                r.text()
            );
        }
        // ParseBool spellings are accepted.
        for q in [
            "/connz?subs=true",
            "/connz?subs=T",
            "/connz?auth=FALSE",
            "/connz?subs=DETAIL",
        ] {
            assert_eq!(m.get(q).status, 200, "{}: {}", m.name, q);
        }
        let r = m.get("/nonexistent");
        assert_eq!(r.status, 404, "{}", m.name);
    }
}

/// Error responses carry nats-server's exact body text.
#[test]
fn error_bodies_match_reference() {
    let t = Mon::tern(None, &[]);
    let Some(r) = Mon::reference(None, &[]) else {
        return;
    };
    let mut report = String::new();
    for q in [
        "/connz?sort=nonsense",
        "/connz?sort=stop",
        "/connz?sort=reason",
        "/connz?state=nonsense",
        "/connz?subs=maybe",
        "/connz?limit=abc",
        "/connz?cid=x",
        "/subsz?test=foo.*",
        "/accountz?acc=nope",
        "/nonexistent",
    ] {
        let a = t.get(q);
        let b = r.get(q);
        if (a.status, &a.body) != (b.status, &b.body) {
            report.push_str(&format!(
                "GET {}\n  tern:        {} {:?}\n  nats-server: {} {:?}\n",
                q,
                a.status,
                a.text(),
                b.status,
                b.text()
            ));
        }
    }
    assert!(report.is_empty(), "error responses differ:\n{}", report);
}

#[test]
fn subsz_filters_and_paging() {
    for m in Mon::both(None, &[]) {
        let mut a = m.nats(r#"{"verbose":false}"#);
        a.send("SUB foo 1\r\nSUB * 2\r\nSUB > 3\r\nSUB foo.bar 4\r\nSUB bar q 5\r\nSUB fo 6\r\n");
        sync(&mut a);
        let subjects = |q: &str| -> Vec<String> {
            let j = m.json(q);
            let mut v: Vec<String> = j
                .get("subscriptions_list")
                .map(|l| {
                    l.arr()
                        .iter()
                        .map(|s| s.at("subject").s().to_string())
                        .collect()
                })
                .unwrap_or_default();
            v.sort();
            v
        };
        assert_eq!(
            subjects("/subsz?subs=1&test=foo"),
            vec!["*", ">", "foo"],
            "{}",
            m.name
        );
        assert_eq!(
            subjects("/subsz?subs=1&test=foo.bar"),
            vec![">", "foo.bar"],
            "{}",
            m.name
        );
        assert_eq!(
            subjects("/subsz?subs=1&test=nothing.here.x"),
            vec![">"],
            "{}",
            m.name
        );
        let j = m.json("/subsz?subs=1&test=foo");
        assert_eq!(j.at("total").u64(), 3, "{}", m.name);
        for s in j.at("subscriptions_list").arr() {
            assert_eq!(s.at("account").s(), "$G", "{}", m.name);
        }
        // Without subs=1: only the statistics, no list.
        let j = m.json("/subsz?test=foo");
        assert!(
            !j.has("subscriptions_list") && !j.has("total"),
            "{}: {}",
            m.name,
            j.render()
        );
        assert!(j.at("num_subscriptions").u64() >= 6, "{}", m.name);
        // Paging over the $G subscriptions (nats-server lists its internal ones too, so only
        // the page sizes are compared).
        let all = m.json("/subsz?subs=1").at("subscriptions_list").arr().len();
        assert!(all >= 6, "{}", m.name);
        let j = m.json("/subsz?subs=1&limit=2&offset=1");
        assert_eq!(j.at("subscriptions_list").arr().len(), 2, "{}", m.name);
        assert_eq!(
            (
                j.at("total").u64(),
                j.at("offset").u64(),
                j.at("limit").u64()
            ),
            (2, 1, 2),
            "{}",
            m.name
        );
        let j = m.json("/subsz?subs=1&test=foo&limit=1");
        assert_eq!(j.at("subscriptions_list").arr().len(), 1, "{}", m.name);
        // tern counts exactly the client subscriptions.
        if m.name == "tern" {
            let j = m.json("/subsz");
            assert_eq!(j.at("num_subscriptions").u64(), 6);
            assert_eq!(all, 6);
        }
        // The queue group is shown.
        let j = m.json("/subsz?subs=1&test=bar");
        let q: Vec<String> = j
            .at("subscriptions_list")
            .arr()
            .iter()
            .filter(|s| s.at("subject").s() == "bar")
            .map(|s| s.at("qgroup").s().to_string())
            .collect();
        assert_eq!(q, vec!["q"], "{}", m.name);
    }
}

#[test]
fn healthz_routez_index_metrics() {
    for m in Mon::both(None, &[]) {
        let r = m.get("/healthz");
        assert_eq!(r.status, 200, "{}", m.name);
        assert_eq!(
            r.json(),
            parse_json("{\"status\":\"ok\"}").unwrap(),
            "{}",
            m.name
        );
        assert!(
            r.header("content-type")
                .unwrap_or("")
                .starts_with("application/json"),
            "{}",
            m.name
        );
        let j = m.json("/routez");
        assert_eq!(j.at("num_routes").u64(), 0, "{}", m.name);
        assert!(j.at("routes").arr().is_empty(), "{}", m.name);
        let r = m.get("/");
        assert_eq!(r.status, 200, "{}", m.name);
        assert!(
            r.text().contains("varz") && r.text().contains("connz"),
            "{}",
            m.name
        );
        let r = m.get("/metrics");
        if m.name == "tern" {
            assert_eq!(r.status, 200);
            let t = r.text();
            assert!(t.contains("# TYPE gnatsd_varz_connections gauge"), "{}", t);
            assert!(t.contains("gnatsd_varz_in_msgs{server_id=\""), "{}", t);
            for line in t.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
                let v = line.rsplit(' ').next().unwrap();
                assert!(v.parse::<f64>().is_ok(), "bad sample line {:?}", line);
            }
        } else {
            assert_eq!(r.status, 404, "nats-server has no /metrics");
        }
    }
}

/// nats-server answers JSONP: `?callback=cb` wraps the JSON as `cb(...)`, served as
/// application/javascript (errors stay plain text).
#[test]
fn jsonp_callback() {
    for m in Mon::both(None, &[]) {
        let r = m.get("/healthz?callback=cb");
        assert_eq!(r.status, 200, "{}", m.name);
        assert_eq!(r.text(), "cb({\"status\":\"ok\"})", "{}", m.name);
        assert_eq!(
            r.header("content-type"),
            Some("application/javascript"),
            "{}",
            m.name
        );
        for target in [
            "/varz?callback=f",
            "/connz?callback=f",
            "/subsz?callback=f",
            "/routez?callback=f",
        ] {
            let r = m.get(target);
            let t = r.text();
            assert!(
                t.starts_with("f({") && t.ends_with("})"),
                "{}: GET {}: {:?}",
                m.name,
                target,
                clip(&t, 200)
            );
            parse_json(&t[2..t.len() - 1]).unwrap_or_else(|e| panic!("{}: {}", m.name, e));
        }
        let r = m.get("/connz?callback=f&sort=bad");
        assert_eq!(r.status, 400, "{}", m.name);
        assert!(!r.text().starts_with("f("), "{}", m.name);
    }
}

#[test]
fn accountz_lists_accounts() {
    for m in Mon::both(None, &[]) {
        let j = m.json("/accountz");
        let mut names: Vec<&str> = j.at("accounts").arr().iter().map(|a| a.s()).collect();
        names.sort();
        assert_eq!(names, vec!["$G", "$SYS"], "{}", m.name);
        assert_eq!(j.at("system_account").s(), "$SYS", "{}", m.name);
        let j = m.json("/accountz?acc=$SYS");
        assert_eq!(
            j.at("account_detail.account_name").s(),
            "$SYS",
            "{}",
            m.name
        );
        let r = m.get("/accountz?acc=nope");
        assert_eq!(r.status, 400, "{}: {:?}", m.name, r.text());
    }
}

// ---------------------------------------------------------------------------------------------
// tern's HTTP server: robustness

/// Send raw bytes on a fresh connection; the response (if any) and whether it was closed.
fn raw_exchange(port: u16, data: &[u8]) -> (Option<Resp>, bool) {
    let mut h = Http::connect(port);
    h.send(data);
    let r = h.read(false);
    let closed = h.wait_closed();
    (r, closed)
}

#[test]
fn http_malformed_requests_get_4xx_and_close() {
    let m = Mon::tern(None, &[]);
    let reqs: [&[u8]; 11] = [
        b"hello\r\n\r\n",
        b"garbage garbage garbage garbage\r\n\r\n",
        b"GET / FOO/1.1\r\n\r\n",
        b"GET / HTTP/1\r\n\r\n",
        b"GET / HTTP/x.y\r\n\r\n",
        b"GET HTTP/1.1\r\n\r\n",
        b"GET  HTTP/1.1\r\n\r\n",
        b"GET varz HTTP/1.1\r\n\r\n",
        b"\r\n\r\n",
        b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
        b"GET /\xff HTTP/1.1\r\n\r\n",
    ];
    let mut report = String::new();
    for req in reqs {
        let (r, closed) = raw_exchange(m.http, req);
        let req = esc(req);
        match r {
            None => report.push_str(&format!("{:?}: no response (closed={})\n", req, closed)),
            Some(r) if !(400..500).contains(&r.status) || !closed => report.push_str(&format!(
                "{:?}: {:?}, closed={} (want a 4xx and a close)\n",
                req, r.status_line, closed
            )),
            Some(_) => {}
        }
    }
    // A well-formed but unsupported version: 505 (as Go's server) or a 4xx.
    let (r, closed) = raw_exchange(m.http, b"GET / HTTP/9.9\r\n\r\n");
    let r = r.expect("response to HTTP/9.9");
    assert!(
        r.status == 505 || (400..500).contains(&r.status),
        "{:?}",
        r.status_line
    );
    assert!(closed);
    // Still serving afterwards.
    assert_eq!(m.get("/healthz").status, 200);
    assert!(report.is_empty(), "malformed requests:\n{}", report);
}

/// Resident set size of a process in KiB.
fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{}/status", pid)).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Write up to `total` bytes of `chunk` repeated on `s` (stops when the peer stops taking them).
fn flood(s: &mut TcpStream, chunk: &[u8], total: usize) -> usize {
    s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut sent = 0;
    while sent < total {
        match s.write(chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => sent += n,
        }
    }
    sent
}

#[test]
fn http_oversized_requests_are_refused() {
    let m = Mon::tern(None, &[]);
    let rss0 = rss_kib(m.srv.pid());
    // Headers over 8 KiB in total.
    let mut req = String::from("GET /varz HTTP/1.1\r\nHost: x\r\n");
    for i in 0..100 {
        req.push_str(&format!("X-Filler-{}: {}\r\n", i, "f".repeat(100)));
    }
    req.push_str("\r\n");
    let (r, closed) = raw_exchange(m.http, req.as_bytes());
    if let Some(r) = &r {
        assert_eq!(r.status, 431, "{:?}", r.status_line);
    }
    assert!(closed, "oversized request: connection not closed");
    // One header line that never ends, streamed: 32 MiB offered.
    for start in ["GET /varz HTTP/1.1\r\nX-Endless: ", "GET /varz?"] {
        let mut h = Http::connect(m.http);
        h.send(start);
        let stream = h.c.stream.try_clone().unwrap();
        let writer = thread::spawn(move || {
            let mut s = stream;
            flood(&mut s, &[b'a'; 65536], 32 << 20)
        });
        let r = h.read(false);
        if let Some(r) = &r {
            assert_eq!(r.status, 431, "{:?}", r.status_line);
        }
        assert!(
            h.wait_closed(),
            "endless line {:?}: connection not closed",
            start
        );
        let sent = writer.join().unwrap();
        assert!(
            sent < 32 << 20,
            "the server took all 32 MiB of an endless request"
        );
    }
    let rss1 = rss_kib(m.srv.pid());
    assert!(
        rss1 < rss0 + 16 * 1024,
        "RSS grew from {} KiB to {} KiB on oversized requests",
        rss0,
        rss1
    );
    assert_eq!(m.get("/healthz").status, 200);
}

#[test]
fn http_methods_other_than_get_and_head_are_405() {
    let m = Mon::tern(None, &[]);
    for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
        let mut h = Http::connect(m.http);
        h.send(format!("{} /varz HTTP/1.1\r\nHost: x\r\n\r\n", method));
        let r = h
            .read(false)
            .unwrap_or_else(|| panic!("no response to {}", method));
        assert_eq!(r.status, 405, "{} -> {:?}", method, r.status_line);
        let allow = r.header("allow").unwrap_or("");
        assert!(allow.contains("GET"), "{}: Allow {:?}", method, allow);
        h.send("PUT /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
        let r = h.read(false).expect("second response on the connection");
        assert_eq!(
            r.status, 405,
            "PUT with Content-Length: 0 -> {:?}",
            r.status_line
        );
    }
    // With a body: refused (405, or 413 since no endpoint takes one), never served.
    let (r, _) = raw_exchange(
        m.http,
        b"POST /varz HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
    );
    let r = r.expect("response to POST with a body");
    assert!(r.status == 405 || r.status == 413, "{:?}", r.status_line);
}

#[test]
fn http_keep_alive_pipelining_and_head() {
    let m = Mon::tern(None, &[]);
    // Two requests on one connection.
    let mut h = Http::connect(m.http);
    let a = h.get("/healthz");
    let b = h.get("/varz");
    assert_eq!((a.status, b.status), (200, 200));
    assert_eq!(a.text(), "{\"status\":\"ok\"}");
    assert_eq!(b.json().at("http_req_stats./healthz").u64(), 1);
    // Pipelined: answered in order.
    let mut h = Http::connect(m.http);
    h.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /routez HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\nGET /varz HTTP/1.1\r\nHost: x\r\n\r\n");
    let r1 = h.read(false).expect("1st");
    let r2 = h.read(false).expect("2nd");
    let r3 = h.read(false).expect("3rd");
    let r4 = h.read(false).expect("4th");
    assert_eq!(r1.text(), "{\"status\":\"ok\"}");
    assert!(r2.json().has("routes"));
    assert_eq!(r3.status, 404);
    assert!(r4.json().has("server_id"));
    // HEAD: headers only, then the next response follows directly.
    let mut h = Http::connect(m.http);
    h.send("HEAD /varz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    let hr = h.read(true).expect("HEAD response");
    assert_eq!(hr.status, 200);
    assert!(hr.body.is_empty());
    let n: usize = hr
        .header("content-length")
        .expect("Content-Length")
        .parse()
        .unwrap();
    assert!(n > 100, "HEAD /varz Content-Length {}", n);
    let g = h.read(false).expect("GET after HEAD");
    assert_eq!(g.text(), "{\"status\":\"ok\"}");
    // Connection: close and HTTP/1.0 end the connection after the response.
    for req in [
        "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "GET /healthz HTTP/1.0\r\n\r\n",
    ] {
        let (r, closed) = raw_exchange(m.http, req.as_bytes());
        assert_eq!(r.expect("response").status, 200, "{:?}", req);
        assert!(closed, "{:?}: not closed", req);
    }
    // A request split into single bytes.
    let mut h = Http::connect(m.http);
    for b in b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" {
        h.send([*b]);
        thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(
        h.read(false).expect("bytewise").text(),
        "{\"status\":\"ok\"}"
    );
}

/// More pipelined requests than fit in the request buffer at once are all answered.
#[test]
fn http_pipelined_requests_beyond_8k_are_all_answered() {
    let m = Mon::tern(None, &[]);
    let one = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut report = String::new();
    for n in [100usize, 400, 2000] {
        let mut h = Http::connect(m.http);
        let s2 = h.c.stream.try_clone().unwrap();
        s2.set_write_timeout(Some(DEADLINE * 2)).unwrap();
        let all = one.repeat(n);
        let writer = thread::spawn(move || {
            let mut s = s2;
            let _ = s.write_all(all.as_bytes());
        });
        let mut got = 0;
        while got < n {
            match h.read(false) {
                Some(r) => {
                    assert_eq!(r.text(), "{\"status\":\"ok\"}");
                    got += 1;
                }
                None => break,
            }
        }
        drop(h);
        writer.join().unwrap();
        if got != n {
            report.push_str(&format!(
                "{} pipelined requests ({} bytes in one write): {} answered\n",
                n,
                n * one.len(),
                got
            ));
        }
    }
    assert!(report.is_empty(), "{}", report);
}

/// Stalled (slow-loris) and idle HTTP clients hold up neither NATS clients nor other HTTP
/// clients.
#[test]
fn http_stalled_clients_do_not_block_nats() {
    let m = Mon::tern(None, &[]);
    let mut stalled = Vec::new();
    for i in 0..50 {
        let mut h = Http::connect(m.http);
        h.send(format!("GET /varz HTTP/1.1\r\nHost: x\r\nX-Slow-{}: ", i));
        stalled.push(h);
    }
    for _ in 0..100 {
        stalled.push(Http::connect(m.http));
    }
    // A huge response that the client never reads.
    let mut unread = Http::connect(m.http);
    let mut many = String::new();
    for _ in 0..300 {
        many.push_str("GET /varz HTTP/1.1\r\nHost: x\r\n\r\n");
    }
    unread.send(&many);
    let mut s = m.nats(r#"{"verbose":false}"#);
    s.send("SUB foo 1\r\n");
    sync(&mut s);
    let mut p = m.nats(r#"{"verbose":false}"#);
    for i in 0..20 {
        p.send(format!("PUB foo 2\r\n{:02}\r\n", i));
        assert_eq!(sync(&mut p), "");
        let got = sync(&mut s);
        assert_eq!(got, format!("MSG foo 1 2\r\n{:02}\r\n", i));
    }
    assert_eq!(m.get("/healthz").text(), "{\"status\":\"ok\"}");
    let v = m.json("/varz");
    assert_eq!(v.at("connections").u64(), 2);
    // The stalled ones are still open (or dropped by a timeout), never answered.
    for h in stalled.iter_mut().take(5) {
        h.c.read_until(Duration::from_millis(50), |rx| !rx.is_empty());
        assert!(
            h.c.rx.is_empty(),
            "an incomplete request was answered: {:?}",
            esc(&h.c.rx)
        );
    }
    // Completing a stalled request gets it answered.
    let h = &mut stalled[0];
    if !h.c.closed {
        h.send("1\r\n\r\n");
        let r = h
            .read(false)
            .expect("response once the request is complete");
        assert_eq!(r.status, 200);
        assert!(r.json().has("server_id"));
    }
    drop(unread);
}

/// A request that never completes is dropped eventually.
#[test]
fn http_stalled_request_is_dropped() {
    let m = Mon::tern(None, &[]);
    let mut h = Http::connect(m.http);
    h.send("GET /varz HTTP/1.1\r\nHost: x\r\n");
    let end = Instant::now() + Duration::from_secs(60);
    h.c.read_until(end - Instant::now(), |_| false);
    assert!(h.c.closed, "a stalled request was not dropped within 60 s");
    let resp = String::from_utf8_lossy(&h.c.rx).into_owned();
    assert!(
        resp.is_empty() || resp.starts_with("HTTP/1.1 408"),
        "{:?}",
        resp
    );
}

#[test]
fn curl_reads_varz() {
    let m = Mon::tern(None, &[]);
    let out = match std::process::Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "10",
            &format!("http://127.0.0.1:{}/varz", m.http),
        ])
        .output()
    {
        Ok(o) => o,
        Err(_) => {
            eprintln!("note: curl not installed; curl_reads_varz skipped");
            return;
        }
    };
    assert!(out.status.success(), "curl failed: {:?}", out);
    let j = parse_json(&String::from_utf8_lossy(&out.stdout)).expect("curl /varz JSON");
    assert_eq!(j.at("port").u64(), m.srv.port as u64);
    // curl -I (HEAD) too.
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-I",
            "--max-time",
            "10",
            &format!("http://127.0.0.1:{}/healthz", m.http),
        ])
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(head.starts_with("HTTP/1.1 200"), "{:?}", head);
}
