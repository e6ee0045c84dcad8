// Clustering (nats-server 2.9's route protocol): three tern nodes seeded through one of them
// (or all listing all, themselves included) grow one full mesh and deliver plain, wildcard,
// queue (exactly once across the cluster), request/reply, header and no-responders traffic
// across routes, with UNSUB (and auto-unsub) withdrawing interest; a SIGKILLed node restarted on
// the same ports rejoins and its interest flows again; mixed clusters with a nats-server node,
// seeded from either side; route handshake rejections (cluster name, duplicate server name,
// route to self, cluster authorization); the cluster fields of the client INFO (`cluster`,
// `connect_urls`, `--no_advertise`); and the raw route protocol spoken by a fake peer over TCP,
// both on tern's cluster port and as the server tern dials.
//
// Every test starts its own servers on fresh ports (client, cluster and monitoring port). Routes
// are seen forming in /routez; remote interest is seen in /routez?subs=1 (`subscriptions_list`
// of the route to the subscriber's node) before anything is published that depends on it.
// Where nats-server's behaviour is the expectation (client INFO, duplicate names), the same
// test runs against nats-server first when it is installed.

use crate::harness::*;
use std::collections::{BTreeSet, VecDeque};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::thread;
use std::time::{Duration, Instant};

/// Routes forming, interest propagating, a killed node rejoining: may take this long.
const SLOW: Duration = Duration::from_secs(10);
/// How long we watch to conclude that something (a route, a message) does not happen.
const WATCH: Duration = Duration::from_millis(400);

// ---------------------------------------------------------------------------------------------
// Nodes

/// One server of a cluster with its own client, cluster and monitoring ports (kept across a
/// restart). Killed on drop.
struct Node {
    bin: PathBuf,
    label: String,
    port: u16,
    cport: u16,
    mport: u16,
    /// Pass `--cluster nats://127.0.0.1:<cport>` (false when the config file has the listen).
    cluster_flag: bool,
    args: Vec<String>,
    conf: Option<TempFile>,
    child: Option<Child>,
    /// One log per run of the process.
    logs: Vec<TempFile>,
    /// server_id of the running process.
    id: String,
}

impl Node {
    /// A node with fresh ports, not started yet.
    fn new(bin: &Path, label: &str) -> Node {
        Node {
            bin: bin.to_path_buf(),
            label: label.to_string(),
            port: free_port(),
            cport: free_port(),
            mport: free_port(),
            cluster_flag: true,
            args: Vec::new(),
            conf: None,
            child: None,
            logs: Vec::new(),
            id: String::new(),
        }
    }

    fn with_args(mut self, args: &[String]) -> Node {
        self.args.extend(args.iter().cloned());
        self
    }

    /// The URL other nodes route to.
    fn route_url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.cport)
    }

    /// The URL clients are offered for this node (`connect_urls`).
    fn client_url(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn start(mut self) -> Node {
        self.launch();
        self
    }

    /// (Re)start the process on the node's ports; waits for the client and monitoring ports.
    fn launch(&mut self) {
        assert!(self.child.is_none(), "{} is running", self.label);
        let mut full: Vec<String> = [
            "-a",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-m",
            &self.mport.to_string(),
            "-n",
            &self.label,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if self.cluster_flag {
            full.push("--cluster".into());
            full.push(self.route_url());
        }
        if let Some(c) = &self.conf {
            full.push("-c".into());
            full.push(c.path.to_string_lossy().into_owned());
        }
        full.extend(self.args.iter().cloned());
        let (mut child, log) = spawn_logged(&self.bin, &full);
        let ok = wait_accepting(&mut child, &self.client_url(), SLOW)
            && wait_accepting(&mut child, &format!("127.0.0.1:{}", self.mport), SLOW);
        self.logs.push(log);
        if !ok {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{} ({} {:?}) did not start; log:\n{}",
                self.label,
                self.bin.display(),
                full,
                self.log()
            );
        }
        self.child = Some(child);
        let c = Client::connect(self.port);
        self.id = json_str(&c.info, "server_id").expect("server_id in INFO");
    }

    /// SIGKILL, and wait for the process to be gone.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Everything every run of the process logged.
    fn log(&self) -> String {
        self.logs
            .iter()
            .enumerate()
            .map(|(i, l)| format!("--- {} run {} ---\n{}", self.label, i + 1, l.read()))
            .collect()
    }

    /// GET `path` on the monitoring port; the body of a 200 answer.
    fn http_get(&self, path: &str) -> Result<String, String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.mport)).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
            .map_err(|e| e.to_string())?;
        let mut data = Vec::new();
        let mut buf = [0u8; 16384];
        let end = Instant::now() + DEADLINE;
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => data.extend_from_slice(&buf[..n]),
                Err(e) => return Err(format!("{e} after {:?}", esc(&data))),
            }
            // Stop at Content-Length if the server keeps the connection open.
            if let Some(h) = find(&data, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&data[..h]).to_ascii_lowercase();
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok());
                if len.is_some_and(|n| data.len() >= h + 4 + n) {
                    break;
                }
            }
            if Instant::now() > end {
                return Err(format!("timeout: {:?}", esc(&data)));
            }
        }
        let h = find(&data, b"\r\n\r\n").ok_or_else(|| format!("no head: {:?}", esc(&data)))?;
        let head = String::from_utf8_lossy(&data[..h]);
        if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
            return Err(format!("status: {head}"));
        }
        Ok(String::from_utf8_lossy(&data[h + 4..]).into_owned())
    }

    /// /routez (with subscription lists when `subs`): the body and its routes.
    fn routez(&self, subs: bool) -> Result<(String, Vec<RouteView>), String> {
        let body = self.http_get(if subs { "/routez?subs=1" } else { "/routez" })?;
        let num: usize = json_get(&body, "num_routes")
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| format!("no num_routes: {body}"))?;
        let routes: Vec<RouteView> = json_get(&body, "routes")
            .map(|a| array_items(&a))
            .unwrap_or_default()
            .iter()
            .map(|r| RouteView {
                rid: json_get(r, "rid").unwrap_or_default(),
                remote_id: json_str(r, "remote_id").unwrap_or_default(),
                subs: json_get(r, "subscriptions_list")
                    .map(|a| array_items(&a).iter().map(|s| unq(s)).collect())
                    .unwrap_or_default(),
            })
            .collect();
        if routes.len() != num {
            return Err(format!(
                "num_routes {num} but {} routes: {body}",
                routes.len()
            ));
        }
        Ok((body, routes))
    }

    fn client(&self) -> Cli {
        Cli::new(self)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One route as /routez shows it.
#[derive(Debug)]
struct RouteView {
    rid: String,
    remote_id: String,
    subs: Vec<String>,
}

/// The items (raw text) of a JSON array.
fn array_items(s: &str) -> Vec<String> {
    let b = s.trim().as_bytes();
    assert!(b.first() == Some(&b'['), "not an array: {s}");
    let (mut out, mut depth, mut start, mut in_str, mut i) = (Vec::new(), 0i32, 1, false, 0);
    while i < b.len() {
        let ch = b[i];
        if in_str {
            if ch == b'\\' {
                i += 1;
            } else if ch == b'"' {
                in_str = false;
            }
        } else {
            match ch {
                b'"' => in_str = true,
                b'[' | b'{' => depth += 1,
                b']' | b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        let item = std::str::from_utf8(&b[start..i]).unwrap().trim();
                        if !item.is_empty() {
                            out.push(item.to_string());
                        }
                        break;
                    }
                }
                b',' if depth == 1 => {
                    out.push(
                        std::str::from_utf8(&b[start..i])
                            .unwrap()
                            .trim()
                            .to_string(),
                    );
                    start = i + 1;
                }
                _ => {}
            }
        }
        i += 1;
    }
    out
}

/// The content of a JSON string (escapes decoded; Go writes `>` as `\u003e`).
fn unq(s: &str) -> String {
    let s = s.trim();
    let s = s
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(s);
    let mut out = String::new();
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('u') => {
                let hex: String = it.by_ref().take(4).collect();
                let v = u32::from_str_radix(&hex, 16).unwrap_or(0xfffd);
                out.push(char::from_u32(v).unwrap_or('\u{fffd}'));
            }
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some(o) => out.push(o),
            None => {}
        }
    }
    out
}

/// What every node's /routez says, and the tail of every log: for failure messages.
fn describe(nodes: &[&Node]) -> String {
    let mut out = String::new();
    for n in nodes {
        let rz = match n.routez(true) {
            Ok((body, _)) => body,
            Err(e) => format!("<{e}>"),
        };
        let log = n.log();
        let tail = &log[log.len().saturating_sub(4000)..];
        out.push_str(&format!(
            "=== {} id={} port={} cport={} ({})\n/routez?subs=1: {}\nlog (tail):\n{}\n",
            n.label,
            n.id,
            n.port,
            n.cport,
            n.bin.display(),
            rz,
            tail
        ));
    }
    out
}

/// Waits until every node has exactly one route to each other node (and no others).
fn wait_mesh(nodes: &[&Node]) {
    let end = Instant::now() + SLOW;
    for n in nodes {
        let mut want: Vec<&str> = nodes
            .iter()
            .filter(|o| o.id != n.id)
            .map(|o| o.id.as_str())
            .collect();
        want.sort();
        loop {
            let got = n.routez(false).map(|(_, r)| {
                let mut ids: Vec<String> = r.into_iter().map(|r| r.remote_id).collect();
                ids.sort();
                ids
            });
            if got.as_ref().is_ok_and(|ids| ids == &want) {
                break;
            }
            if Instant::now() > end {
                panic!(
                    "no full mesh within {SLOW:?}: {} has routes {:?}, want {:?}\n{}",
                    n.label,
                    got,
                    want,
                    describe(nodes)
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Waits until `at` knows (`present`) or no longer knows `from`'s interest in `subject`
/// (listed on `at`'s route to `from` in /routez?subs=1).
fn wait_interest(at: &Node, from: &Node, subject: &str, present: bool) {
    let end = Instant::now() + SLOW;
    loop {
        let r = at.routez(true);
        let seen = r.as_ref().ok().and_then(|(_, routes)| {
            routes
                .iter()
                .find(|r| r.remote_id == from.id)
                .map(|r| r.subs.iter().any(|s| s == subject))
        });
        if seen == Some(present) {
            return;
        }
        if Instant::now() > end {
            panic!(
                "{} {} see {}'s interest in {subject:?} within {SLOW:?}\n{}",
                at.label,
                if present { "did not" } else { "still" },
                from.label,
                describe(&[at, from])
            );
        }
        thread::sleep(Duration::from_millis(30));
    }
}

/// Every node other than `from` sees `from`'s interest in `subject`.
fn wait_seen_by_all(nodes: &[&Node], from: &Node, subject: &str) {
    for n in nodes.iter().filter(|n| n.id != from.id) {
        wait_interest(n, from, subject, true);
    }
}

fn wait_gone_from_all(nodes: &[&Node], from: &Node, subject: &str) {
    for n in nodes.iter().filter(|n| n.id != from.id) {
        wait_interest(n, from, subject, false);
    }
}

/// Route arguments: cluster name and the seeds to route to.
fn cluster_args(name: &str, seeds: &[&Node]) -> Vec<String> {
    let mut v = vec!["--cluster_name".to_string(), name.to_string()];
    if !seeds.is_empty() {
        v.push("--routes".into());
        v.push(
            seeds
                .iter()
                .map(|s| s.route_url())
                .collect::<Vec<_>>()
                .join(","),
        );
    }
    v
}

/// Three tern nodes; B and C know only A.
fn tern_trio(name: &str) -> (Node, Node, Node) {
    let bin = tern_bin();
    let a = Node::new(&bin, "A")
        .with_args(&cluster_args(name, &[]))
        .start();
    let b = Node::new(&bin, "B")
        .with_args(&cluster_args(name, &[&a]))
        .start();
    let c = Node::new(&bin, "C")
        .with_args(&cluster_args(name, &[&a]))
        .start();
    (a, b, c)
}

// ---------------------------------------------------------------------------------------------
// Clients

#[derive(Debug, Clone, PartialEq)]
struct Msg {
    subject: String,
    sid: String,
    reply: Option<String>,
    /// Header block of an HMSG (empty for MSG).
    hdr: Vec<u8>,
    payload: Vec<u8>,
    /// The whole frame as received.
    raw: Vec<u8>,
}

/// A client connection that parses MSG/HMSG frames, answers the server's PINGs and keeps
/// async INFOs and -ERRs aside.
struct Cli {
    c: Client,
    node: String,
    msgs: VecDeque<Msg>,
    pongs: usize,
    errs: Vec<String>,
    infos: Vec<String>,
}

impl Cli {
    fn new(node: &Node) -> Cli {
        let c = Client::connect(node.port);
        let mut cli = Cli {
            c,
            node: node.label.clone(),
            msgs: VecDeque::new(),
            pongs: 0,
            errs: Vec::new(),
            infos: Vec::new(),
        };
        cli.send(
            "CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,\"no_responders\":true,\"protocol\":1}\r\n",
        );
        cli.sync();
        cli
    }

    fn send(&mut self, data: impl AsRef<[u8]>) {
        self.c.send(data);
    }

    /// One read (up to `wait`), then parse what is complete.
    fn pump(&mut self, wait: Duration) {
        let n0 = self.c.rx.len();
        self.c.read_until(wait, |rx| rx.len() > n0);
        self.parse();
    }

    fn parse(&mut self) {
        loop {
            let rx = &self.c.rx;
            let Some(eol) = find(rx, b"\r\n") else { return };
            let line = String::from_utf8_lossy(&rx[..eol]).into_owned();
            let toks: Vec<&str> = line.split_whitespace().collect();
            let verb = toks.first().copied().unwrap_or("");
            let mut used = eol + 2;
            match verb {
                "MSG" | "HMSG" => {
                    let hdrs = verb == "HMSG";
                    let nargs = toks.len() - 1;
                    let (fixed, with_reply) = if hdrs { (4, 5) } else { (3, 4) };
                    assert!(
                        nargs == fixed || nargs == with_reply,
                        "{}: bad frame {line:?}",
                        self.node
                    );
                    let total: usize = toks[toks.len() - 1].parse().expect("size");
                    let hlen: usize = if hdrs {
                        toks[toks.len() - 2].parse().expect("header size")
                    } else {
                        0
                    };
                    if rx.len() < used + total + 2 {
                        return;
                    }
                    let body = &rx[used..used + total];
                    assert_eq!(
                        &rx[used + total..used + total + 2],
                        b"\r\n",
                        "{}: payload not followed by CRLF: {:?}",
                        self.node,
                        esc(rx)
                    );
                    let msg = Msg {
                        subject: toks[1].to_string(),
                        sid: toks[2].to_string(),
                        reply: (nargs == with_reply).then(|| toks[3].to_string()),
                        hdr: body[..hlen].to_vec(),
                        payload: body[hlen..].to_vec(),
                        raw: rx[..used + total + 2].to_vec(),
                    };
                    used += total + 2;
                    self.msgs.push_back(msg);
                }
                "PING" => self.c.send("PONG\r\n"),
                "PONG" => self.pongs += 1,
                "+OK" => {}
                "INFO" => self.infos.push(line["INFO ".len()..].trim().to_string()),
                _ => self.errs.push(line.clone()),
            }
            self.c.rx.drain(..used);
        }
    }

    /// PING and wait for its PONG: everything sent before was processed by the server.
    fn sync(&mut self) {
        let want = self.pongs + 1;
        self.send("PING\r\n");
        let end = Instant::now() + SLOW;
        while self.pongs < want {
            assert!(
                Instant::now() < end && !self.c.closed,
                "{}: no PONG (closed={}), errors {:?}, rx {:?}",
                self.node,
                self.c.closed,
                self.errs,
                esc(&self.c.rx)
            );
            self.pump(Duration::from_millis(50));
        }
        assert!(
            self.errs.is_empty(),
            "{}: errors {:?}",
            self.node,
            self.errs
        );
    }

    /// The next message (fails after SLOW).
    fn next(&mut self) -> Msg {
        let end = Instant::now() + SLOW;
        loop {
            if let Some(m) = self.msgs.pop_front() {
                return m;
            }
            assert!(
                Instant::now() < end && !self.c.closed,
                "{}: no message within {SLOW:?} (closed={}), errors {:?}",
                self.node,
                self.c.closed,
                self.errs
            );
            self.pump(Duration::from_millis(50));
        }
    }

    /// Everything that arrives within `d` (and what was queued).
    fn drain_for(&mut self, d: Duration) -> Vec<Msg> {
        let end = Instant::now() + d;
        while Instant::now() < end {
            self.pump(Duration::from_millis(20));
        }
        self.msgs.drain(..).collect()
    }

    fn expect_nothing(&mut self) {
        expect_nothing_on(&mut [self]);
    }
}

/// Nothing more arrives on any of these clients within WATCH (watched all at once).
fn expect_nothing_on(clis: &mut [&mut Cli]) {
    let end = Instant::now() + WATCH;
    while Instant::now() < end {
        for c in clis.iter_mut() {
            c.pump(Duration::from_millis(5));
        }
    }
    for c in clis.iter_mut() {
        let got: Vec<String> = c.msgs.drain(..).map(|m| esc(&m.raw)).collect();
        assert!(
            got.is_empty(),
            "{}: expected no message, got {:?}",
            c.node,
            got
        );
        assert!(c.errs.is_empty(), "{}: errors {:?}", c.node, c.errs);
    }
}

/// Pumps every client until `total` messages arrived altogether (or SLOW passes), then watches
/// a little longer for extra ones. Returns each client's messages.
fn collect(clis: &mut [&mut Cli], total: usize) -> Vec<Vec<Msg>> {
    let mut got: Vec<Vec<Msg>> = clis.iter().map(|_| Vec::new()).collect();
    let end = Instant::now() + SLOW;
    let mut quiet_from: Option<Instant> = None;
    loop {
        for (i, c) in clis.iter_mut().enumerate() {
            c.pump(Duration::from_millis(5));
            got[i].extend(c.msgs.drain(..));
        }
        let n: usize = got.iter().map(Vec::len).sum();
        let now = Instant::now();
        if n >= total {
            let q = *quiet_from.get_or_insert(now);
            if now.duration_since(q) >= WATCH {
                break;
            }
        }
        if now > end {
            break;
        }
    }
    got
}

fn payloads(ms: &[Msg]) -> Vec<String> {
    ms.iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Delivery cases, for any cluster (tern only, or mixed with nats-server)

/// A plain subscriber on every node; a message published on each node reaches every one of
/// them exactly once (the publisher's own node too). Closing the subscribers withdraws their
/// interest everywhere. `r` prefixes every subject (one prefix per round on one cluster).
fn case_plain(nodes: &[&Node], r: &str) {
    let subject = format!("{r}plain.x");
    let mut clis: Vec<Cli> = nodes.iter().map(|n| n.client()).collect();
    for c in clis.iter_mut() {
        c.send(format!("SUB {subject} 1\r\n"));
        c.sync();
    }
    for n in nodes {
        wait_seen_by_all(nodes, n, &subject);
    }
    for (i, c) in clis.iter_mut().enumerate() {
        c.send(format!("PUB {subject} 6\r\nfrom-{i}\r\n"));
        c.sync();
    }
    for (k, c) in clis.iter_mut().enumerate() {
        let mut got = Vec::new();
        for _ in 0..nodes.len() {
            let m = c.next();
            assert_eq!(
                (m.subject.as_str(), m.sid.as_str()),
                (subject.as_str(), "1")
            );
            assert_eq!(m.reply, None);
            got.push(String::from_utf8_lossy(&m.payload).into_owned());
        }
        got.sort();
        let want: Vec<String> = (0..nodes.len()).map(|i| format!("from-{i}")).collect();
        assert_eq!(got, want, "subscriber on {}", nodes[k].label);
    }
    expect_nothing_on(&mut clis.iter_mut().collect::<Vec<_>>());
    drop(clis);
    for n in nodes {
        wait_gone_from_all(nodes, n, &subject);
    }
}

/// Wildcards across routes: `wc.>` on the first node, `wc.*` and `wc.>` on one connection of
/// the second (two MSGs for one routed message), `>` on the last one.
fn case_wildcards(nodes: &[&Node], r: &str) {
    let (first, second, last) = (nodes[0], nodes[1], nodes[nodes.len() - 1]);
    let s = |x: &str| format!("{r}{x}");
    let mut c0 = first.client();
    let mut c1 = second.client();
    let mut c2 = last.client();
    c0.send(format!("SUB {} 1\r\n", s("wc.>")));
    c1.send(format!("SUB {} 1\r\nSUB {} 2\r\n", s("wc.*"), s("wc.>")));
    c2.send("SUB > 1\r\n");
    for c in [&mut c0, &mut c1, &mut c2] {
        c.sync();
    }
    wait_seen_by_all(nodes, first, &s("wc.>"));
    wait_seen_by_all(nodes, second, &s("wc.*"));
    wait_seen_by_all(nodes, second, &s("wc.>"));
    wait_seen_by_all(nodes, last, ">");
    let mut publisher = first.client();
    publisher.send(format!(
        "PUB {} 2\r\nw1\r\nPUB {} 2\r\nw2\r\nPUB {} 2\r\nw3\r\n",
        s("wc.a"),
        s("wc.a.b"),
        s("other")
    ));
    publisher.sync();
    let sorted = |ms: Vec<Msg>| {
        let mut v: Vec<(String, String, String)> = ms
            .into_iter()
            .map(|m| {
                (
                    m.subject,
                    m.sid,
                    String::from_utf8_lossy(&m.payload).into_owned(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let t = |x: &str, sid: &str, p: &str| (s(x), sid.to_string(), p.to_string());
    let got0 = sorted((0..2).map(|_| c0.next()).collect());
    assert_eq!(got0, vec![t("wc.a", "1", "w1"), t("wc.a.b", "1", "w2")]);
    let got1 = sorted((0..3).map(|_| c1.next()).collect());
    assert_eq!(
        got1,
        vec![
            t("wc.a", "1", "w1"),
            t("wc.a", "2", "w1"),
            t("wc.a.b", "2", "w2")
        ]
    );
    let got2 = sorted((0..3).map(|_| c2.next()).collect());
    assert_eq!(
        got2,
        vec![
            t("other", "1", "w3"),
            t("wc.a", "1", "w1"),
            t("wc.a.b", "1", "w2")
        ]
    );
    // Published on the last node: `wc.x` reaches the first two nodes, `>` on its own node.
    let mut p2 = last.client();
    p2.send(format!("PUB {} 2\r\nw4\r\n", s("wc.x")));
    p2.sync();
    assert_eq!(sorted(vec![c0.next()]), vec![t("wc.x", "1", "w4")]);
    assert_eq!(
        sorted((0..2).map(|_| c1.next()).collect()),
        vec![t("wc.x", "1", "w4"), t("wc.x", "2", "w4")]
    );
    assert_eq!(sorted(vec![c2.next()]), vec![t("wc.x", "1", "w4")]);
    expect_nothing_on(&mut [&mut c0, &mut c1, &mut c2]);
    drop((c0, c1, c2));
    wait_gone_from_all(nodes, last, ">");
}

/// A queue group with members on every node (two on the first): each of `per_node` messages
/// published on every node is delivered exactly once in the whole cluster, and every node's
/// members get some.
fn case_queue(nodes: &[&Node], per_node: usize, r: &str) {
    let subject = format!("{r}qq");
    let mut members: Vec<Cli> = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let mut c = n.client();
        c.send(format!("SUB {subject} workers 1\r\n"));
        if i == 0 {
            c.send(format!("SUB {subject} workers 2\r\n"));
        }
        c.sync();
        members.push(c);
    }
    for n in nodes {
        wait_seen_by_all(nodes, n, &subject);
    }
    let mut pubs: Vec<Cli> = nodes.iter().map(|n| n.client()).collect();
    for (i, p) in pubs.iter_mut().enumerate() {
        let mut batch = String::new();
        for k in 0..per_node {
            let body = format!("n{i}-{k:04}");
            batch.push_str(&format!("PUB {subject} {}\r\n{}\r\n", body.len(), body));
        }
        p.send(batch);
    }
    for p in pubs.iter_mut() {
        p.sync();
    }
    let total = per_node * nodes.len();
    let mut refs: Vec<&mut Cli> = members.iter_mut().collect();
    let got = collect(&mut refs, total);
    let counts: Vec<usize> = got.iter().map(Vec::len).collect();
    let mut all: Vec<String> = got.iter().flat_map(|m| payloads(m)).collect();
    all.sort();
    let n_all = all.len();
    all.dedup();
    let mut want: Vec<String> = (0..nodes.len())
        .flat_map(|i| (0..per_node).map(move |k| format!("n{i}-{k:04}")))
        .collect();
    want.sort();
    let labels: Vec<&str> = nodes.iter().map(|n| n.label.as_str()).collect();
    assert_eq!(
        n_all, total,
        "queue group: {n_all} deliveries for {total} messages (per node {labels:?}: {counts:?})"
    );
    assert_eq!(
        all, want,
        "queue group: duplicates or losses (per node {counts:?})"
    );
    for (i, m) in got.iter().enumerate() {
        for msg in m {
            assert_eq!(msg.subject, subject);
            assert!(
                msg.sid == "1" || (i == 0 && msg.sid == "2"),
                "bad sid {:?}",
                msg.sid
            );
        }
        assert!(
            !m.is_empty(),
            "queue members on {} got none of {total} messages (per node {labels:?}: {counts:?})",
            nodes[i].label
        );
    }
}

/// A responder on the last node answers requests from every other node.
fn case_request_reply(nodes: &[&Node], r: &str) {
    let last = nodes[nodes.len() - 1];
    let svc = format!("{r}svc");
    let mut responder = last.client();
    responder.send(format!("SUB {svc} 1\r\n"));
    responder.sync();
    wait_seen_by_all(nodes, last, &svc);
    let mut reqs = Vec::new();
    for (i, n) in nodes[..nodes.len() - 1].iter().enumerate() {
        let mut req = n.client();
        let inbox = format!("_INBOX.{r}req{i}");
        // The inbox's RS+ travels on the same route ahead of the request.
        req.send(format!(
            "SUB {inbox} 7\r\nPUB {svc} {inbox} 5\r\nping{i}\r\n"
        ));
        let m = responder.next();
        assert_eq!(m.subject, svc);
        assert_eq!(m.reply.as_deref(), Some(inbox.as_str()));
        assert_eq!(m.payload, format!("ping{i}").into_bytes());
        responder.send(format!("PUB {inbox} 5\r\npong{i}\r\n"));
        let rep = req.next();
        assert_eq!(
            esc(&rep.raw),
            format!("MSG {inbox} 7 5\r\npong{i}\r\n"),
            "reply on {}",
            n.label
        );
        reqs.push(req);
    }
    let mut all: Vec<&mut Cli> = reqs.iter_mut().collect();
    all.push(&mut responder);
    expect_nothing_on(&mut all);
}

/// UNSUB on one node withdraws its interest from the others; `UNSUB sid max` too, once the
/// max is reached through messages from another node.
fn case_unsub(nodes: &[&Node], r: &str) {
    let (first, second) = (nodes[0], nodes[1]);
    let (un, au) = (format!("{r}un.x"), format!("{r}au.x"));
    let mut sub = second.client();
    sub.send(format!("SUB {un} 4\r\nSUB {au} 5\r\nUNSUB 5 2\r\n"));
    sub.sync();
    wait_seen_by_all(nodes, second, &un);
    wait_seen_by_all(nodes, second, &au);
    let mut p = first.client();
    p.send(format!("PUB {un} 1\r\n1\r\n"));
    p.sync();
    assert_eq!(esc(&sub.next().raw), format!("MSG {un} 4 1\r\n1\r\n"));
    sub.send("UNSUB 4\r\n");
    sub.sync();
    wait_gone_from_all(nodes, second, &un);
    let mut pubs: Vec<Cli> = nodes.iter().map(|n| n.client()).collect();
    for p in pubs.iter_mut() {
        p.send(format!("PUB {un} 1\r\n2\r\n"));
        p.sync();
    }
    sub.expect_nothing();
    // Auto-unsubscribe after 2 messages, published on another node.
    let mut batch = String::new();
    for k in 0..5 {
        batch.push_str(&format!("PUB {au} 1\r\n{k}\r\n"));
    }
    p.send(batch);
    p.sync();
    assert_eq!(esc(&sub.next().raw), format!("MSG {au} 5 1\r\n0\r\n"));
    assert_eq!(esc(&sub.next().raw), format!("MSG {au} 5 1\r\n1\r\n"));
    sub.expect_nothing();
    wait_gone_from_all(nodes, second, &au);
}

/// Headers: an HPUB on every node reaches a headers-capable subscriber on every node as the
/// same bytes. No responders: a 503 when nobody in the cluster subscribes, none when the
/// only subscriber is on another node.
fn case_headers_and_no_responders(nodes: &[&Node], r: &str) {
    let subject = format!("{r}h.x");
    let mut subs: Vec<Cli> = nodes.iter().map(|n| n.client()).collect();
    for s in subs.iter_mut() {
        s.send(format!("SUB {subject} 3\r\n"));
        s.sync();
    }
    for n in nodes {
        wait_seen_by_all(nodes, n, &subject);
    }
    let mut pubs: Vec<Cli> = nodes.iter().map(|n| n.client()).collect();
    for (i, p) in pubs.iter_mut().enumerate() {
        p.send(format!(
            "HPUB {subject} r.1 18 20\r\nNATS/1.0\r\nA: {i}\r\n\r\nhi\r\n"
        ));
        p.sync();
    }
    for (k, s) in subs.iter_mut().enumerate() {
        let mut got: Vec<String> = (0..nodes.len()).map(|_| esc(&s.next().raw)).collect();
        got.sort();
        let want: Vec<String> = (0..nodes.len())
            .map(|i| format!("HMSG {subject} 3 r.1 18 20\r\nNATS/1.0\r\nA: {i}\r\n\r\nhi\r\n"))
            .collect();
        assert_eq!(got, want, "subscriber on {}", nodes[k].label);
    }
    expect_nothing_on(&mut subs.iter_mut().collect::<Vec<_>>());

    let last = nodes[nodes.len() - 1];
    let mut sl = last.client();
    sl.send(format!("SUB {r}somebody.home 1\r\n"));
    sl.sync();
    wait_seen_by_all(nodes, last, &format!("{r}somebody.home"));
    for (i, p) in pubs.iter_mut().enumerate() {
        let inbox = format!("_INBOX.{r}nr{i}");
        p.send(format!(
            "SUB {inbox} 9\r\nPUB {r}nobody.home {inbox} 0\r\n\r\n"
        ));
        p.sync();
        assert_eq!(
            esc(&p.next().raw),
            format!("HMSG {inbox} 9 16 16\r\nNATS/1.0 503\r\n\r\n\r\n"),
            "no responders, asked on {}",
            nodes[i].label
        );
        p.send(format!("PUB {r}somebody.home {inbox} 2\r\nhi\r\n"));
        p.sync();
        assert_eq!(
            esc(&sl.next().raw),
            format!("MSG {r}somebody.home 1 {inbox} 2\r\nhi\r\n")
        );
    }
    let mut all: Vec<&mut Cli> = pubs.iter_mut().collect();
    all.push(&mut sl);
    expect_nothing_on(&mut all);
}

fn all_cases(nodes: &[&Node], r: &str) {
    case_plain(nodes, r);
    case_wildcards(nodes, r);
    case_queue(nodes, 100, r);
    case_request_reply(nodes, r);
    case_headers_and_no_responders(nodes, r);
    case_unsub(nodes, r);
}

// ---------------------------------------------------------------------------------------------
// 1. Three tern nodes

#[test]
fn three_tern_nodes_form_a_full_mesh_from_one_seed() {
    let (a, b, c) = tern_trio("trio");
    let nodes = [&a, &b, &c];
    wait_mesh(&nodes);
    // Distinct remote ids on every node, none of them its own.
    for n in nodes {
        let (body, routes) = n.routez(false).unwrap();
        let ids: BTreeSet<&str> = routes.iter().map(|r| r.remote_id.as_str()).collect();
        assert_eq!(ids.len(), 2, "{}: {body}", n.label);
        assert!(
            !ids.contains(n.id.as_str()),
            "{}: route to itself: {body}",
            n.label
        );
    }
    case_plain(&nodes, "");
    case_wildcards(&nodes, "");
}

#[test]
fn three_tern_nodes_queue_group_is_exactly_once_across_the_cluster() {
    let (a, b, c) = tern_trio("trioq");
    let nodes = [&a, &b, &c];
    wait_mesh(&nodes);
    // 300 messages published on one node ...
    let mut members: Vec<Cli> = Vec::new();
    for n in nodes {
        let mut m = n.client();
        m.send("SUB job workers 1\r\n");
        m.sync();
        members.push(m);
    }
    for n in nodes {
        wait_seen_by_all(&nodes, n, "job");
    }
    let mut p = a.client();
    let mut batch = String::new();
    for k in 0..300 {
        batch.push_str(&format!("PUB job 4\r\n{k:04}\r\n"));
    }
    p.send(batch);
    p.sync();
    let mut refs: Vec<&mut Cli> = members.iter_mut().collect();
    let got = collect(&mut refs, 300);
    let counts: Vec<usize> = got.iter().map(Vec::len).collect();
    let mut all: Vec<String> = got.iter().flat_map(|m| payloads(m)).collect();
    all.sort();
    let want: Vec<String> = (0..300).map(|k| format!("{k:04}")).collect();
    assert_eq!(all, want, "per node (A, B, C): {counts:?}");
    assert!(
        counts.iter().all(|&n| n > 0),
        "per node (A, B, C): {counts:?}"
    );
    drop(members);
    // ... and from every node, with two members on A.
    case_queue(&nodes, 100, "");
}

#[test]
fn three_tern_nodes_request_reply_headers_no_responders_unsub() {
    let (a, b, c) = tern_trio("trior");
    let nodes = [&a, &b, &c];
    wait_mesh(&nodes);
    case_request_reply(&nodes, "");

    case_headers_and_no_responders(&nodes, "");
    case_unsub(&nodes, "");
}

#[test]
fn every_node_listing_every_route_including_itself_forms_one_mesh() {
    // The usual deployment: the same `routes` list (all nodes, itself included) everywhere,
    // so every pair dials each other at once and every node dials itself.
    let bin = tern_bin();
    let mut nodes = vec![
        Node::new(&bin, "A"),
        Node::new(&bin, "B"),
        Node::new(&bin, "C"),
    ];
    let routes = nodes
        .iter()
        .map(|n| n.route_url())
        .collect::<Vec<_>>()
        .join(",");
    for n in nodes.iter_mut() {
        n.args = cluster_args("sym", &[]);
        n.args.extend(["--routes".to_string(), routes.clone()]);
    }
    let nodes: Vec<Node> = nodes.into_iter().map(Node::start).collect();
    let refs: Vec<&Node> = nodes.iter().collect();
    wait_mesh(&refs);
    // Stable: the same route connections a while later (no duplicate-resolution loop).
    let rids = |n: &Node| {
        let mut v: Vec<(String, String)> = n
            .routez(false)
            .unwrap()
            .1
            .into_iter()
            .map(|r| (r.remote_id, r.rid))
            .collect();
        v.sort();
        v
    };
    let before: Vec<_> = refs.iter().map(|n| rids(n)).collect();
    let created = |n: &Node| n.log().matches("Route connection created").count();
    let created_before: Vec<usize> = refs.iter().map(|n| created(n)).collect();
    thread::sleep(WATCH * 4);
    let after: Vec<_> = refs.iter().map(|n| rids(n)).collect();
    assert_eq!(before, after, "routes changed\n{}", describe(&refs));
    let created_after: Vec<usize> = refs.iter().map(|n| created(n)).collect();
    assert_eq!(
        created_before,
        created_after,
        "route connections keep being created\n{}",
        describe(&refs)
    );
    case_plain(&refs, "");
    case_queue(&refs, 50, "");
}

// ---------------------------------------------------------------------------------------------
// 2. A killed node rejoins

#[test]
fn a_killed_node_restarted_on_the_same_ports_rejoins() {
    let (mut a, mut b, c) = tern_trio("phoenix");
    wait_mesh(&[&a, &b, &c]);
    // Subscribers on B and C from before any restart.
    let mut sb = b.client();
    sb.send("SUB before 1\r\n");
    sb.sync();
    let mut sc = c.client();
    sc.send("SUB before 1\r\n");
    sc.sync();

    // The seed A dies: B and C keep their route to each other, and redial A (configured).
    let old_a = a.id.clone();
    a.kill();
    for n in [&b, &c] {
        let end = Instant::now() + SLOW;
        while n
            .routez(false)
            .map(|(_, r)| r.iter().any(|r| r.remote_id == old_a))
            .unwrap_or(true)
        {
            assert!(
                Instant::now() < end,
                "{} still routes to dead A\n{}",
                n.label,
                describe(&[n])
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
    let mut pb = b.client();
    wait_interest(&b, &c, "before", true);
    pb.send("PUB before 3\r\nb2c\r\n");
    pb.sync();
    assert_eq!(esc(&sc.next().raw), "MSG before 1 3\r\nb2c\r\n");
    assert_eq!(esc(&sb.next().raw), "MSG before 1 3\r\nb2c\r\n");

    a.launch();
    assert_ne!(a.id, old_a);
    wait_mesh(&[&a, &b, &c]);
    check_rejoined(&a, &[&b, &c], &mut [&mut sb, &mut sc], "a1");

    // A non-seed node dies: it dials A again on restart and learns of C by gossip.
    b.kill();
    b.launch();
    wait_mesh(&[&a, &b, &c]);
    let mut sa = a.client();
    sa.send("SUB before 1\r\n");
    sa.sync();
    check_rejoined(&b, &[&a, &c], &mut [&mut sa, &mut sc], "b1");
}

/// After `node` restarted: the others' existing subscribers get what is published on it, and
/// a new subscriber on it gets what is published on the others.
fn check_rejoined(node: &Node, others: &[&Node], subs: &mut [&mut Cli], tag: &str) {
    for o in others {
        wait_interest(node, o, "before", true);
    }
    let mut p = node.client();
    p.send(format!("PUB before {}\r\n{tag}\r\n", tag.len()));
    p.sync();
    for s in subs.iter_mut() {
        let m = s.next();
        assert_eq!(
            esc(&m.raw),
            format!("MSG before 1 {}\r\n{tag}\r\n", tag.len()),
            "subscriber on {} after {} restarted",
            s.node,
            node.label
        );
    }
    let mut fresh = node.client();
    fresh.send("SUB after 2\r\n");
    fresh.sync();
    for o in others {
        wait_interest(o, node, "after", true);
        let mut p = o.client();
        p.send(format!("PUB after {}\r\n{}\r\n", o.label.len(), o.label));
        p.sync();
        let m = fresh.next();
        assert_eq!(
            esc(&m.raw),
            format!("MSG after 2 {}\r\n{}\r\n", o.label.len(), o.label)
        );
    }
    fresh.expect_nothing();
}

// ---------------------------------------------------------------------------------------------
// 3. Mixed clusters: two tern nodes and one nats-server

fn nats_server_or_skip(test: &str) -> Option<PathBuf> {
    let r = reference_bin();
    if r.is_none() {
        eprintln!("note: {test}: nats-server not installed, skipped");
    }
    r
}

#[test]
fn mixed_cluster_seeded_by_nats_server() {
    let Some(ns) = nats_server_or_skip("mixed_cluster_seeded_by_nats_server") else {
        return;
    };
    let n = Node::new(&ns, "N")
        .with_args(&cluster_args("mixn", &[]))
        .start();
    let t1 = Node::new(&tern_bin(), "T1")
        .with_args(&cluster_args("mixn", &[&n]))
        .start();
    let t2 = Node::new(&tern_bin(), "T2")
        .with_args(&cluster_args("mixn", &[&n]))
        .start();
    // The nats-server node first (publisher of the wildcard case), then in the middle.
    wait_mesh(&[&n, &t1, &t2]);
    all_cases(&[&n, &t1, &t2], "r1.");
    all_cases(&[&t2, &n, &t1], "r2.");
}

#[test]
fn mixed_cluster_seeded_by_tern() {
    let Some(ns) = nats_server_or_skip("mixed_cluster_seeded_by_tern") else {
        return;
    };
    let t1 = Node::new(&tern_bin(), "T1")
        .with_args(&cluster_args("mixt", &[]))
        .start();
    let n = Node::new(&ns, "N")
        .with_args(&cluster_args("mixt", &[&t1]))
        .start();
    let t2 = Node::new(&tern_bin(), "T2")
        .with_args(&cluster_args("mixt", &[&t1]))
        .start();
    wait_mesh(&[&t1, &n, &t2]);
    all_cases(&[&t1, &t2, &n], "r1.");
    all_cases(&[&n, &t1, &t2], "r2.");
}

// ---------------------------------------------------------------------------------------------
// 4. Handshake rejections

/// Watches `nodes` for WATCH*5: none ever shows a route.
fn assert_no_routes_for_a_while(nodes: &[&Node]) {
    let end = Instant::now() + WATCH * 5;
    while Instant::now() < end {
        for n in nodes {
            let (body, routes) = n.routez(false).unwrap();
            assert!(
                routes.is_empty(),
                "{} has a route: {body}\n{}",
                n.label,
                describe(nodes)
            );
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until `n` has no route (a refused one may show for a moment).
fn wait_no_route(n: &Node) {
    let end = Instant::now() + SLOW;
    while !n.routez(false).unwrap().1.is_empty() {
        assert!(
            Instant::now() < end,
            "{} keeps a route\n{}",
            n.label,
            describe(&[n])
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until `pred(log)` holds for one of the nodes' logs.
fn wait_log(nodes: &[&Node], what: &str, pred: impl Fn(&str) -> bool) {
    let end = Instant::now() + SLOW;
    while !nodes.iter().any(|n| pred(&n.log())) {
        assert!(
            Instant::now() < end,
            "no log line {what}\n{}",
            describe(nodes)
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// A node still serves clients.
fn assert_serves(n: &Node) {
    let mut c = n.client();
    c.send("SUB alive 1\r\nPUB alive 2\r\nok\r\n");
    assert_eq!(esc(&c.next().raw), "MSG alive 1 2\r\nok\r\n");
}

#[test]
fn different_cluster_names_never_form_a_route() {
    let x = Node::new(&tern_bin(), "X")
        .with_args(&cluster_args("x", &[]))
        .start();
    let y = Node::new(&tern_bin(), "Y")
        .with_args(&cluster_args("y", &[&x]))
        .start();
    wait_log(&[&x, &y], "about the cluster name", |l| {
        l.contains("cluster name") && l.contains("does not match")
    });
    assert_no_routes_for_a_while(&[&x, &y]);
    assert_serves(&x);
    assert_serves(&y);
}

#[test]
fn a_route_to_itself_is_dropped() {
    let bin = tern_bin();
    let mut s = Node::new(&bin, "S");
    let own = s.route_url();
    s.args = cluster_args("selfish", &[]);
    s.args.extend(["--routes".to_string(), own]);
    let s = s.start();
    // The dial happens at once; give it a moment to be detected (and to not loop).
    wait_log(&[&s], "about the route connection", |l| {
        l.contains("Route connection created")
    });
    assert_no_routes_for_a_while(&[&s]);
    thread::sleep(Duration::from_millis(1500));
    let created = s.log().matches("Route connection created").count();
    assert!(
        created <= 2,
        "the route to itself is redialled ({created} route connections):\n{}",
        s.log()
    );
    assert_serves(&s);
    // It is still a working cluster node: another node can join it.
    let o = Node::new(&bin, "O")
        .with_args(&cluster_args("selfish", &[&s]))
        .start();
    wait_mesh(&[&s, &o]);
    let mut so = o.client();
    so.send("SUB x 1\r\n");
    so.sync();
    wait_interest(&s, &o, "x", true);
    let mut ps = s.client();
    ps.send("PUB x 1\r\n!\r\n");
    ps.sync();
    assert_eq!(esc(&so.next().raw), "MSG x 1 1\r\n!\r\n");
}

#[test]
fn duplicate_server_names_never_form_a_route() {
    // nats-server 2.9 refuses a route to a server with its own name ("Remote server has a
    // duplicate name"); checked against nats-server first when installed.
    for bin in binaries() {
        let x = Node::new(&bin, "same")
            .with_args(&cluster_args("dupn", &[]))
            .start();
        let y = Node::new(&bin, "same")
            .with_args(&cluster_args("dupn", &[&x]))
            .start();
        // The acceptor refuses it on the dialler's INFO; the dialler may register it for the
        // moment before the close reaches it (nats-server does), but keeps none.
        assert_no_routes_for_a_while(&[&x]);
        wait_no_route(&y);
        wait_log(&[&x, &y], "about the duplicate name", |l| {
            l.contains("duplicate name")
        });
        assert_serves(&x);
        assert_serves(&y);
    }
}

#[test]
fn cluster_authorization_accepts_only_the_right_credentials() {
    let bin = tern_bin();
    let mut s = Node::new(&bin, "S");
    s.cluster_flag = false;
    s.conf = Some(write_config(&format!(
        "cluster {{\n  name: guarded\n  listen: 127.0.0.1:{}\n  authorization {{ user: r, password: s, timeout: 2 }}\n}}\n",
        s.cport
    )));
    let s = s.start();
    let url = |cred: &str| format!("nats-route://{cred}127.0.0.1:{}", s.cport);
    let wrong = Node::new(&bin, "W")
        .with_args(&[
            "--cluster_name".into(),
            "guarded".into(),
            "--routes".into(),
            url("r:wrong@"),
        ])
        .start();
    let anonymous = Node::new(&bin, "Z")
        .with_args(&[
            "--cluster_name".into(),
            "guarded".into(),
            "--routes".into(),
            url(""),
        ])
        .start();
    wait_log(&[&s], "about the refused routes", |l| {
        l.matches("Route connection created").count() >= 2
    });
    // The guarded node never registers them, and nothing flows between them: a subscriber
    // on S gets nothing of what W and Z publish (S never sends them its interest).
    let mut ss = s.client();
    ss.send("SUB sec.x 1\r\n");
    ss.sync();
    let mut pw = wrong.client();
    let mut pz = anonymous.client();
    assert_no_routes_for_a_while(&[&s]);
    for p in [&mut pw, &mut pz] {
        p.send("PUB sec.x 4\r\nleak\r\n");
        p.sync();
    }
    ss.expect_nothing();
    // The diallers learn of the refusal from the -ERR that follows the guarded node's INFO
    // (they may register the route for that moment, as nats-server does): none stays.
    wait_no_route(&wrong);
    wait_no_route(&anonymous);
    let good = Node::new(&bin, "G")
        .with_args(&[
            "--cluster_name".into(),
            "guarded".into(),
            "--routes".into(),
            url("r:s@"),
        ])
        .start();
    wait_mesh(&[&s, &good]);
    // The refused ones are not let in by gossip either.
    wait_no_route(&wrong);
    wait_no_route(&anonymous);
    for p in [&mut pw, &mut pz] {
        p.send("PUB sec.x 4\r\nleak\r\n");
        p.sync();
    }
    ss.expect_nothing();
    let mut sg = good.client();
    sg.send("SUB sec 1\r\n");
    sg.sync();
    wait_interest(&s, &good, "sec", true);
    let mut ps = s.client();
    ps.send("PUB sec 2\r\nok\r\n");
    ps.sync();
    assert_eq!(esc(&sg.next().raw), "MSG sec 1 2\r\nok\r\n");
    assert_eq!(s.routez(false).unwrap().1.len(), 1);
}

// ---------------------------------------------------------------------------------------------
// 5. Client INFO

fn connect_urls(info: &str) -> Option<BTreeSet<String>> {
    json_get(info, "connect_urls").map(|a| array_items(&a).iter().map(|s| unq(s)).collect())
}

/// The binaries to check the client INFO with: nats-server if present (so the expectations
/// are seen to be the reference's), then tern.
fn binaries() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = reference_bin().into_iter().collect();
    v.push(tern_bin());
    v
}

#[test]
fn client_info_names_the_cluster_and_lists_connect_urls() {
    for bin in binaries() {
        let a = Node::new(&bin, "A")
            .with_args(&cluster_args("infoc", &[]))
            .start();
        // A client from before the cluster grows learns of the others by async INFO.
        let mut early = a.client();
        let b = Node::new(&bin, "B")
            .with_args(&cluster_args("infoc", &[&a]))
            .start();
        let c = Node::new(&bin, "C")
            .with_args(&cluster_args("infoc", &[&a]))
            .start();
        wait_mesh(&[&a, &b, &c]);
        let all: BTreeSet<String> = [&a, &b, &c].iter().map(|n| n.client_url()).collect();
        for n in [&a, &b, &c] {
            let cl = n.client();
            assert_eq!(
                json_str(&cl.c.info, "cluster").as_deref(),
                Some("infoc"),
                "{} {}: {}",
                bin.display(),
                n.label,
                cl.c.info
            );
            assert_eq!(
                connect_urls(&cl.c.info),
                Some(all.clone()),
                "{} {}: {}",
                bin.display(),
                n.label,
                cl.c.info
            );
        }
        let end = Instant::now() + SLOW;
        loop {
            early.pump(Duration::from_millis(50));
            let last = early.infos.last().and_then(|i| connect_urls(i));
            if last.as_ref() == Some(&all) {
                break;
            }
            assert!(
                Instant::now() < end,
                "{}: a client of A got no async INFO listing {all:?}; INFOs: {:?}",
                bin.display(),
                early.infos
            );
        }
        // A node going away is taken out of the list.
        drop(c);
        let two: BTreeSet<String> = [&a, &b].iter().map(|n| n.client_url()).collect();
        let end = Instant::now() + SLOW;
        loop {
            early.pump(Duration::from_millis(50));
            if early.infos.last().and_then(|i| connect_urls(i)).as_ref() == Some(&two) {
                break;
            }
            assert!(
                Instant::now() < end,
                "{}: no async INFO without C's URL; INFOs: {:?}",
                bin.display(),
                early.infos
            );
        }
    }
}

#[test]
fn no_advertise_keeps_other_nodes_urls_from_clients() {
    for bin in binaries() {
        let a = Node::new(&bin, "A")
            .with_args(&cluster_args("quiet", &[]))
            .with_args(&["--no_advertise".to_string()])
            .start();
        let b = Node::new(&bin, "B")
            .with_args(&cluster_args("quiet", &[&a]))
            .start();
        wait_mesh(&[&a, &b]);
        let ca = a.client();
        let urls_a = connect_urls(&ca.c.info).unwrap_or_default();
        assert!(
            !urls_a.contains(&b.client_url()),
            "{}: a client of the no_advertise node is told of B: {}",
            bin.display(),
            ca.c.info
        );
        assert_eq!(json_str(&ca.c.info, "cluster").as_deref(), Some("quiet"));
        // Nor does A advertise itself to the clients of B.
        let cb = b.client();
        let urls_b = connect_urls(&cb.c.info).unwrap_or_default();
        assert!(
            !urls_b.contains(&a.client_url()),
            "{}: a client of B is told of the no_advertise node A: {}",
            bin.display(),
            cb.c.info
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 6. Raw route protocol with a fake peer

/// One frame a route sent: its control line and, for RMSG/HMSG, the payload (with headers).
#[derive(Debug, Clone)]
struct Frame {
    line: String,
    payload: Vec<u8>,
}

/// A fake nats-server on the other end of a route: reads frames, answers PINGs.
struct Peer {
    c: Client,
    frames: Vec<Frame>,
    pongs: usize,
}

impl Peer {
    fn pump(&mut self, wait: Duration) {
        let n0 = self.c.rx.len();
        self.c.read_until(wait, |rx| rx.len() > n0);
        loop {
            let rx = &self.c.rx;
            let Some(eol) = find(rx, b"\r\n") else { return };
            let line = String::from_utf8_lossy(&rx[..eol]).into_owned();
            let verb = line.split_whitespace().next().unwrap_or("").to_string();
            let mut used = eol + 2;
            let mut payload = Vec::new();
            if verb == "RMSG" || verb == "HMSG" || verb == "MSG" {
                let n: usize = line
                    .split_whitespace()
                    .last()
                    .and_then(|t| t.parse().ok())
                    .expect("size");
                if rx.len() < used + n + 2 {
                    return;
                }
                payload = rx[used..used + n].to_vec();
                used += n + 2;
            }
            self.c.rx.drain(..used);
            match verb.as_str() {
                "PING" => self.c.send("PONG\r\n"),
                "PONG" => self.pongs += 1,
                _ => self.frames.push(Frame { line, payload }),
            }
        }
    }

    /// PING; returns the frames that came before its PONG (and removes them).
    fn sync(&mut self) -> Vec<Frame> {
        let want = self.pongs + 1;
        self.c.send("PING\r\n");
        let end = Instant::now() + SLOW;
        while self.pongs < want {
            assert!(
                Instant::now() < end && !self.c.closed,
                "route: no PONG (closed={}); frames {:?}",
                self.c.closed,
                self.frames
            );
            self.pump(Duration::from_millis(50));
        }
        std::mem::take(&mut self.frames)
    }

    /// Waits until the frames received include every line of `lines` (in any order).
    fn wait_lines(&mut self, lines: &[&str]) -> Vec<Frame> {
        let end = Instant::now() + SLOW;
        loop {
            if lines
                .iter()
                .all(|l| self.frames.iter().any(|f| f.line == *l))
            {
                return std::mem::take(&mut self.frames);
            }
            assert!(
                Instant::now() < end && !self.c.closed,
                "route: waiting for {lines:?} (closed={}); frames {:?}",
                self.c.closed,
                self.frames
            );
            self.pump(Duration::from_millis(50));
        }
    }
}

#[test]
fn raw_route_protocol_with_a_fake_peer() {
    let t = Node::new(&tern_bin(), "T")
        .with_args(&cluster_args("raw", &[]))
        .start();
    let mut local = t.client();
    local.send("SUB foo 1\r\nSUB bar q 2\r\nSUB bar q 3\r\n");
    local.sync();

    // The acceptor speaks first: its route INFO.
    let mut peer = Peer {
        c: Client::connect_raw(t.cport),
        frames: Vec::new(),
        pongs: 0,
    };
    let info = peer.c.expect_line();
    assert!(
        info.starts_with("INFO {") && info.ends_with("\r\n"),
        "{info:?}"
    );
    let json = info["INFO ".len()..].trim_end();
    assert_eq!(
        json_str(json, "server_id").as_deref(),
        Some(t.id.as_str()),
        "{info}"
    );
    assert_eq!(json_str(json, "cluster").as_deref(), Some("raw"), "{info}");
    assert_eq!(json_get(json, "port"), Some(t.cport.to_string()), "{info}");
    assert_eq!(json_get(json, "headers").as_deref(), Some("true"), "{info}");

    // We dialled: CONNECT then INFO, as nats-server does.
    let nowhere = free_port();
    peer.c.send(format!(
        "CONNECT {{\"echo\":true,\"verbose\":false,\"pedantic\":false,\"tls_required\":false,\"headers\":true,\"name\":\"FAKEPEER\",\"cluster\":\"raw\"}}\r\n\
         INFO {{\"server_id\":\"FAKEPEER\",\"server_name\":\"fake\",\"version\":\"2.9.10\",\"proto\":1,\"go\":\"go1.19.4\",\"host\":\"127.0.0.1\",\"port\":{nowhere},\"headers\":true,\"max_payload\":1048576,\"cluster\":\"raw\",\"connect_urls\":[\"127.0.0.1:{nowhere}\"]}}\r\n"
    ));
    // Registered: our whole interest, queue groups with their weight.
    let got = peer.wait_lines(&["RS+ $G foo", "RS+ $G bar q 2"]);
    assert!(
        got.iter().all(|f| f.line.starts_with("RS+ ")),
        "unexpected frames after the handshake: {got:?}"
    );
    assert_eq!(got.len(), 2, "{got:?}");
    let end = Instant::now() + SLOW;
    while !t
        .routez(false)
        .unwrap()
        .1
        .iter()
        .any(|r| r.remote_id == "FAKEPEER")
    {
        assert!(
            Instant::now() < end,
            "no route to FAKEPEER: {}",
            describe(&[&t])
        );
        thread::sleep(Duration::from_millis(30));
    }
    // Our PING gets a PONG with nothing before it.
    assert!(peer.sync().is_empty());

    // Interest changes: a new subject, a queue weight going down and up, an UNSUB.
    local.send("SUB foo.new 4\r\nUNSUB 3\r\n");
    local.sync();
    peer.wait_lines(&["RS+ $G foo.new", "RS+ $G bar q 1"]);
    local.send("SUB foo 5\r\nUNSUB 1\r\nUNSUB 4\r\nSUB bar q 3\r\n");
    local.sync();
    let got = peer.wait_lines(&["RS- $G foo.new", "RS+ $G bar q 2"]);
    assert!(
        !got.iter()
            .any(|f| f.line.contains("$G foo ") || f.line.ends_with("$G foo")),
        "foo kept one local subscriber throughout: no RS+/RS- for it expected: {got:?}"
    );

    // The peer's interest: a client publishing on baz makes tern send RMSG.
    peer.c.send("RS+ $G baz\r\n");
    assert!(peer.sync().is_empty());
    let mut p = t.client();
    p.send("PUB baz 5\r\nhello\r\nPUB baz r.1 2\r\nhi\r\nHPUB baz 12 14\r\nNATS/1.0\r\n\r\nho\r\nPUB nobody 1\r\nx\r\n");
    p.sync();
    let end = Instant::now() + SLOW;
    while peer.frames.len() < 3 {
        assert!(Instant::now() < end, "route: frames {:?}", peer.frames);
        peer.pump(Duration::from_millis(50));
    }
    let mut got = peer.sync();
    got.retain(|f| !f.line.starts_with("INFO"));
    let shown: Vec<String> = got
        .iter()
        .map(|f| format!("{}\r\n{}", f.line, esc(&f.payload)))
        .collect();
    assert_eq!(
        shown,
        vec![
            "RMSG $G baz 5\r\nhello".to_string(),
            "RMSG $G baz r.1 2\r\nhi".to_string(),
            "HMSG $G baz 12 14\r\nNATS/1.0\r\n\r\nho".to_string(),
        ]
    );

    // RMSG from the peer reaches the local subscriber (with and without reply) ...
    peer.c.send("RMSG $G foo 2\r\nhi\r\nRMSG $G foo r.2 2\r\nho\r\nHMSG $G foo 12 14\r\nNATS/1.0\r\n\r\nhh\r\n");
    assert_eq!(esc(&local.next().raw), "MSG foo 5 2\r\nhi\r\n");
    assert_eq!(esc(&local.next().raw), "MSG foo 5 r.2 2\r\nho\r\n");
    assert_eq!(
        esc(&local.next().raw),
        "HMSG foo 5 12 14\r\nNATS/1.0\r\n\r\nhh\r\n"
    );
    local.expect_nothing();
    // ... and is never sent back, even though the peer has interest in it.
    peer.c.send("RS+ $G foo\r\nRS+ $G >\r\nRS+ $G bar q 1\r\n");
    assert!(peer.sync().is_empty());
    peer.c.send("RMSG $G foo 2\r\nhi\r\n");
    assert_eq!(esc(&local.next().raw), "MSG foo 5 2\r\nhi\r\n");

    // A queue RMSG reaches exactly one local member (never the peer's own group member).
    let mut batch = String::new();
    for k in 0..20 {
        batch.push_str(&format!("RMSG $G bar | q 2\r\n{k:02}\r\n"));
    }
    batch.push_str("RMSG $G bar + r.3 q 1\r\nz\r\n");
    peer.c.send(batch);
    let mut got: Vec<Msg> = (0..21).map(|_| local.next()).collect();
    local.expect_nothing();
    let last = got.pop().unwrap();
    assert!(
        esc(&last.raw) == "MSG bar 2 r.3 1\r\nz\r\n"
            || esc(&last.raw) == "MSG bar 3 r.3 1\r\nz\r\n",
        "{:?}",
        esc(&last.raw)
    );
    assert_eq!(
        payloads(&got),
        (0..20).map(|k| format!("{k:02}")).collect::<Vec<_>>()
    );
    assert!(got.iter().all(|m| m.sid == "2" || m.sid == "3"));
    // A plain RMSG on a subject with only queue subscribers reaches nobody.
    peer.c.send("RMSG $G bar 1\r\nn\r\n");
    local.expect_nothing();
    let back = peer.sync();
    assert!(
        back.iter().all(|f| f.line.starts_with("INFO")),
        "tern sent the peer's own messages back: {back:?}"
    );

    // Local publishes on bar: the peer's `>` gets each of them as one RMSG, which also names
    // the queue group when the peer's member was picked (`RMSG $G bar | q 2`); the group gets
    // each message exactly once, either there or in a local member.
    let mut batch = String::new();
    for k in 0..40 {
        batch.push_str(&format!("PUB bar 2\r\n{k:02}\r\n"));
    }
    p.send(batch);
    p.sync();
    let mut locals = Vec::new();
    let end = Instant::now() + SLOW;
    let mut remote = Vec::new();
    loop {
        local.pump(Duration::from_millis(10));
        locals.extend(local.msgs.drain(..));
        peer.pump(Duration::from_millis(10));
        remote.extend(
            peer.frames
                .drain(..)
                .filter(|f| !f.line.starts_with("INFO")),
        );
        if remote.len() >= 40 || Instant::now() > end {
            break;
        }
    }
    remote.extend(
        peer.sync()
            .into_iter()
            .filter(|f| !f.line.starts_with("INFO")),
    );
    locals.extend(local.drain_for(WATCH));
    let shown: Vec<String> = remote
        .iter()
        .map(|f| format!("{} {}", f.line, esc(&f.payload)))
        .collect();
    assert_eq!(
        remote.iter().map(|f| esc(&f.payload)).collect::<Vec<_>>(),
        (0..40).map(|k| format!("{k:02}")).collect::<Vec<_>>(),
        "every message once to the peer (its `>`), in order: {shown:?}"
    );
    let mut picked: Vec<String> = Vec::new();
    for f in &remote {
        match f.line.as_str() {
            "RMSG $G bar 2" => {}
            "RMSG $G bar | q 2" => picked.push(esc(&f.payload)),
            other => panic!("unexpected {other:?} in {shown:?}"),
        }
    }
    let mut all: Vec<String> = payloads(&locals);
    all.extend(picked.iter().cloned());
    all.sort();
    assert_eq!(
        all,
        (0..40).map(|k| format!("{k:02}")).collect::<Vec<_>>(),
        "queue group q: local members got {:?}, the peer's member {:?}",
        payloads(&locals),
        picked
    );
    assert!(
        !picked.is_empty(),
        "the peer's queue member got none of 40 (locals: {})",
        locals.len()
    );
    assert!(!locals.is_empty(), "the local members got none of 40");

    // Without the peer's `>`, a message whose group was picked locally is not sent at all.
    peer.c.send("RS- $G >\r\n");
    assert!(peer.sync().iter().all(|f| f.line.starts_with("INFO")));
    let mut batch = String::new();
    for k in 0..40 {
        batch.push_str(&format!("PUB bar 2\r\n{k:02}\r\n"));
    }
    p.send(batch);
    p.sync();
    let (mut locals, mut remote) = (Vec::new(), Vec::new());
    let end = Instant::now() + SLOW;
    while locals.len() + remote.len() < 40 && Instant::now() < end {
        local.pump(Duration::from_millis(10));
        locals.extend(local.msgs.drain(..));
        peer.pump(Duration::from_millis(10));
        remote.append(&mut peer.frames);
    }
    locals.extend(local.drain_for(WATCH));
    remote.extend(peer.sync());
    remote.retain(|f| !f.line.starts_with("INFO"));
    let shown: Vec<String> = remote
        .iter()
        .map(|f| format!("{} {}", f.line, esc(&f.payload)))
        .collect();
    assert!(
        remote.iter().all(|f| f.line == "RMSG $G bar | q 2"),
        "{shown:?}"
    );
    let mut all = payloads(&locals);
    all.extend(remote.iter().map(|f| esc(&f.payload)));
    all.sort();
    assert_eq!(
        all,
        (0..40).map(|k| format!("{k:02}")).collect::<Vec<_>>(),
        "{shown:?}"
    );

    // PING from tern: answered by pump; the route stays up.
    assert!(peer.sync().iter().all(|f| f.line.starts_with("INFO")));
    assert!(!peer.c.closed);
    assert!(t
        .routez(false)
        .unwrap()
        .1
        .iter()
        .any(|r| r.remote_id == "FAKEPEER"));

    // The peer leaves: its interest goes with it (a publish on baz goes nowhere, no error).
    drop(peer);
    let end = Instant::now() + SLOW;
    while !t.routez(false).unwrap().1.is_empty() {
        assert!(Instant::now() < end, "{}", describe(&[&t]));
        thread::sleep(Duration::from_millis(30));
    }
    p.send("PUB baz 1\r\nx\r\n");
    p.sync();
    assert_serves(&t);
}

/// Accepts one connection on `l` within SLOW (the listener is non-blocking).
fn accept_within(l: &TcpListener, what: &str) -> Client {
    let end = Instant::now() + SLOW;
    loop {
        match l.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).unwrap();
                return Client::from_stream(stream);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < end, "no connection: {what}");
                thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

/// Reads the dialler's `CONNECT {..}` and `INFO {..}` lines: their JSON.
fn dialler_handshake(c: &mut Client) -> (String, String) {
    let connect = c.expect_line();
    assert!(
        connect.starts_with("CONNECT {"),
        "a dialled route must start with CONNECT: {connect:?}"
    );
    let info = c.expect_line();
    assert!(info.starts_with("INFO {"), "then INFO: {info:?}");
    (
        connect["CONNECT ".len()..].trim_end().to_string(),
        info["INFO ".len()..].trim_end().to_string(),
    )
}

#[test]
fn raw_route_protocol_tern_dials_a_fake_peer() {
    let seed = TcpListener::bind("127.0.0.1:0").unwrap();
    seed.set_nonblocking(true).unwrap();
    let seed_port = seed.local_addr().unwrap().port();
    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    other.set_nonblocking(true).unwrap();
    let other_port = other.local_addr().unwrap().port();
    let t = Node::new(&tern_bin(), "T")
        .with_args(&cluster_args("dial", &[]))
        .with_args(&[
            "--routes".into(),
            format!("nats-route://ru:rp@127.0.0.1:{seed_port}"),
        ])
        .start();
    let mut local = t.client();
    local.send("SUB foo 1\r\nSUB bar q 2\r\n");
    local.sync();

    // The configured route is dialled: CONNECT (with the URL's credentials), then INFO.
    let mut c = accept_within(&seed, "tern did not dial its configured route");
    let (connect, info) = dialler_handshake(&mut c);
    assert_eq!(
        json_str(&connect, "name").as_deref(),
        Some(t.id.as_str()),
        "{connect}"
    );
    assert_eq!(
        json_str(&connect, "cluster").as_deref(),
        Some("dial"),
        "{connect}"
    );
    assert_eq!(
        json_str(&connect, "user").as_deref(),
        Some("ru"),
        "{connect}"
    );
    assert_eq!(
        json_str(&connect, "pass").as_deref(),
        Some("rp"),
        "{connect}"
    );
    assert_eq!(
        json_get(&connect, "headers").as_deref(),
        Some("true"),
        "{connect}"
    );
    assert_eq!(
        json_get(&connect, "lang"),
        None,
        "a route CONNECT is not a client's: {connect}"
    );
    assert_eq!(
        json_str(&info, "server_id").as_deref(),
        Some(t.id.as_str()),
        "{info}"
    );
    assert_eq!(json_get(&info, "port"), Some(t.cport.to_string()), "{info}");
    assert_eq!(
        json_str(&info, "cluster").as_deref(),
        Some("dial"),
        "{info}"
    );
    let mut peer = Peer {
        c,
        frames: Vec::new(),
        pongs: 0,
    };
    // Our INFO registers the route: our interest arrives.
    peer.c.send(format!(
        "INFO {{\"server_id\":\"FAKESEED\",\"server_name\":\"seed\",\"version\":\"2.9.10\",\"proto\":1,\"host\":\"127.0.0.1\",\"port\":{seed_port},\"headers\":true,\"max_payload\":1048576,\"cluster\":\"dial\"}}\r\n"
    ));
    let got = peer.wait_lines(&["RS+ $G foo", "RS+ $G bar q 1"]);
    assert_eq!(got.len(), 2, "{got:?}");
    // An RMSG from it reaches the local subscriber.
    peer.c.send("RMSG $G foo 2\r\nhi\r\n");
    assert_eq!(esc(&local.next().raw), "MSG foo 1 2\r\nhi\r\n");

    // Gossip: an INFO naming another server of the cluster makes tern dial it.
    peer.c.send(format!(
        "INFO {{\"server_id\":\"FAKEOTHER\",\"server_name\":\"other\",\"version\":\"2.9.10\",\"proto\":1,\"host\":\"127.0.0.1\",\"port\":{other_port},\"headers\":true,\"max_payload\":1048576,\"ip\":\"nats-route://127.0.0.1:{other_port}/\",\"cluster\":\"dial\"}}\r\n"
    ));
    let mut g = accept_within(&other, "tern did not dial the gossiped server");
    let (connect, _) = dialler_handshake(&mut g);
    assert_eq!(
        json_str(&connect, "name").as_deref(),
        Some(t.id.as_str()),
        "{connect}"
    );
    assert!(peer.sync().iter().all(|f| f.line.starts_with("INFO")));

    // The configured route is lost: tern dials it again.
    drop(peer);
    let mut again = accept_within(&seed, "tern did not redial its configured route");
    let (connect, _) = dialler_handshake(&mut again);
    assert_eq!(
        json_str(&connect, "name").as_deref(),
        Some(t.id.as_str()),
        "{connect}"
    );
    assert_serves(&t);
}

// Hostile peers on the cluster port; dialling that must not hurt the loop.
#[path = "cluster_guard.rs"]
mod guard;
