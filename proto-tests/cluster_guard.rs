// Hostile peers on the cluster port, and dialling that must not hurt the loop (issue 9, holes
// 1, 2, 4 and 11b; a child of cluster.rs, whose nodes and fake peer it uses):
// - an accepted route is heard only after a valid CONNECT: any other first frame, or wrong
//   credentials, is `-ERR 'Authorization Violation'` and a close (what nats-server answers
//   when cluster authorization is set; tern asks it of every accepted route, as nats-server
//   does of inbound gateways), and until its INFO registers it a route gets no message and
//   its interest and messages are ignored;
// - route frames are held to max_payload and max_control_line like client frames;
// - a route host name is looked up on a helper thread: while a lookup hangs, clients are
//   served; a name that resolves (slowly) still makes a route;
// - a dial to a dead route logs one `Error trying to connect to route (attempt N)` line per
//   attempt, paced and levelled as nats-server does, and no created/closed pair.

use super::*;
use std::process::{Command, Stdio};

const AUTH_VIOLATION: &str = "-ERR 'Authorization Violation'\r\n";

/// A raw connection to `n`'s cluster port, its route INFO read.
fn raw_route(n: &Node) -> Client {
    let mut c = Client::connect_raw(n.cport);
    let info = c.expect_line();
    assert!(info.starts_with("INFO {"), "{}: {info:?}", n.label);
    c
}

/// What `c` gets until the server closes it: must be `want`, then the close.
fn expect_refused(c: &mut Client, want: &str, what: &str, n: &Node) {
    let (got, closed) = c.read_to_close(DEADLINE);
    let got = String::from_utf8_lossy(&got).into_owned();
    assert!(
        got == want && closed,
        "{}: after {what:?} expected {want:?} and a close, got {got:?} (closed: {closed})\n{}",
        n.label,
        describe(&[n])
    );
}

/// A node whose cluster port wants the credentials r/s.
fn guarded(bin: &Path, label: &str) -> Node {
    let mut n = Node::new(bin, label);
    n.cluster_flag = false;
    n.conf = Some(write_config(&format!(
        "cluster {{\n  name: guarded\n  listen: 127.0.0.1:{}\n  authorization {{ user: r, password: s, timeout: 2 }}\n}}\n",
        n.cport
    )));
    n.start()
}

/// The binaries to run a differential test on: nats-server first when installed, then tern.
fn reference_then_tern(test: &str) -> Vec<(PathBuf, &'static str)> {
    let mut v = Vec::new();
    if let Some(r) = nats_server_or_skip(test) {
        v.push((r, "nats-server"));
    }
    v.push((tern_bin(), "tern"));
    v
}

#[test]
fn with_cluster_authorization_nothing_before_a_good_connect_is_heard() {
    let early = [
        "RS+ $G >\r\n",
        "RMSG $G foo 8\r\ninjected\r\n",
        "INFO {\"server_id\":\"EVIL\",\"cluster\":\"guarded\",\"port\":1}\r\n",
        "PING\r\n",
        "CONNECT {\"user\":\"r\",\"pass\":\"wrong\",\"cluster\":\"guarded\",\"name\":\"EVIL\"}\r\nRS+ $G >\r\n",
        "CONNECT {\"cluster\":\"guarded\",\"name\":\"EVIL\"}\r\nRS+ $G >\r\n",
    ];
    for (bin, label) in reference_then_tern("cluster authorization") {
        let n = guarded(&bin, label);
        let mut sub = n.client();
        sub.send("SUB foo 1\r\n");
        sub.sync();
        let mut p = n.client();
        for e in early {
            let mut r = raw_route(&n);
            r.send(e);
            p.send("PUB foo 6\r\nsecret\r\n");
            p.sync();
            expect_refused(&mut r, AUTH_VIOLATION, e, &n);
        }
        let got = sub.drain_for(WATCH);
        assert_eq!(
            payloads(&got),
            vec!["secret"; early.len()],
            "{label}: an injected message reached a subscriber"
        );
        let log = n.log();
        for line in [
            "- authentication error",
            "- Router connection closed: Authentication Failure",
        ] {
            assert_eq!(
                log.matches(line).count(),
                early.len(),
                "{label}: {line}\n{log}"
            );
        }
    }
}

/// nats-server 2.9 without cluster authorization takes RS+ and RMSG from anyone on the
/// cluster port (and registers a route on a bare INFO); tern asks for CONNECT all the same.
#[test]
fn without_cluster_authorization_a_route_must_still_connect_first() {
    let n = Node::new(&tern_bin(), "T")
        .with_args(&cluster_args("open", &[]))
        .start();
    let mut sub = n.client();
    sub.send("SUB foo 1\r\n");
    sub.sync();
    let mut p = n.client();
    for e in [
        "RS+ $G >\r\n",
        "RMSG $G foo 8\r\ninjected\r\n",
        "INFO {\"server_id\":\"EVIL\",\"cluster\":\"open\",\"port\":1}\r\n",
    ] {
        let mut r = raw_route(&n);
        r.send(e);
        p.send("PUB foo 6\r\nsecret\r\n");
        p.sync();
        expect_refused(&mut r, AUTH_VIOLATION, e, &n);
    }
    assert_eq!(payloads(&sub.drain_for(WATCH)), vec!["secret"; 3]);

    // After CONNECT, before the INFO that registers it: it is told nothing, and what it
    // sends is not acted on.
    let mut peer = Peer {
        c: raw_route(&n),
        frames: Vec::new(),
        pongs: 0,
    };
    peer.c.send(
        "CONNECT {\"cluster\":\"open\",\"name\":\"EVIL\"}\r\nRS+ $G >\r\nRMSG $G foo 8\r\ninjected\r\n",
    );
    assert!(peer.sync().is_empty());
    p.send("PUB foo 6\r\nsecret\r\n");
    p.sync();
    let got = peer.sync();
    assert!(got.is_empty(), "an unregistered route was sent {got:?}");
    assert_eq!(payloads(&sub.drain_for(WATCH)), vec!["secret"]);

    // Its INFO registers it: our interest arrives, and its own interest now draws messages.
    let nowhere = free_port();
    peer.c.send(format!(
        "INFO {{\"server_id\":\"EVIL\",\"server_name\":\"evil\",\"host\":\"127.0.0.1\",\"port\":{nowhere},\"cluster\":\"open\"}}\r\n"
    ));
    peer.wait_lines(&["RS+ $G foo"]);
    peer.c.send("RS+ $G >\r\nRMSG $G foo 2\r\nok\r\n");
    assert!(peer.sync().is_empty());
    assert_eq!(payloads(&sub.drain_for(WATCH)), vec!["ok"]);
    p.send("PUB foo 6\r\nsecret\r\n");
    p.sync();
    let got = peer.wait_lines(&["RMSG $G foo 6"]);
    assert_eq!(got.len(), 1, "{got:?}");
}

/// A fake peer that completed the handshake (CONNECT, then INFO) with `n`.
fn registered_peer(n: &Node, cluster: &str, id: &str) -> Peer {
    let mut peer = Peer {
        c: raw_route(n),
        frames: Vec::new(),
        pongs: 0,
    };
    let nowhere = free_port();
    peer.c.send(format!(
        "CONNECT {{\"cluster\":\"{cluster}\",\"name\":\"{id}\"}}\r\n\
         INFO {{\"server_id\":\"{id}\",\"host\":\"127.0.0.1\",\"port\":{nowhere},\"cluster\":\"{cluster}\"}}\r\n"
    ));
    assert!(peer.sync().is_empty());
    peer
}

/// nats-server 2.9 applies neither limit to routes (a peer may declare 999999999 bytes and
/// have them buffered); tern holds routes to the clients' limits, with the clients' errors.
#[test]
fn route_frames_are_held_to_max_payload_and_max_control_line() {
    let mut n = Node::new(&tern_bin(), "T").with_args(&cluster_args("limits", &[]));
    n.conf = Some(write_config("max_payload: 1024\nmax_control_line: 256\n"));
    let n = n.start();
    const MPV: &str = "-ERR 'Maximum Payload Violation'\r\n";
    const MCL: &str = "-ERR 'maximum control line exceeded'\r\n";
    let long = "a".repeat(300);
    let cases = [
        ("RMSG $G foo 999999999\r\n".to_string(), MPV),
        ("RMSG $G foo 1025\r\n".to_string(), MPV),
        ("HMSG $G foo + r q 12 2000\r\n".to_string(), MPV),
        (format!("RS+ $G {long}\r\n"), MCL),
        (format!("RS+ $G {long}"), MCL),
        (format!("RMSG $G {long} 1\r\nx\r\n"), MCL),
    ];
    for (i, (frame, want)) in cases.iter().enumerate() {
        let mut peer = registered_peer(&n, "limits", &format!("PEER{i}"));
        peer.c.send(frame);
        expect_refused(&mut peer.c, want, frame, &n);
    }
    // Before CONNECT too: a CONNECT line cannot grow past the limit.
    let mut r = raw_route(&n);
    r.send(format!("CONNECT {{\"name\":\"{long}"));
    expect_refused(&mut r, MCL, "a long CONNECT", &n);
    // Within the limits, a message from a route is delivered.
    let mut peer = registered_peer(&n, "limits", "GOOD");
    let mut sub = n.client();
    sub.send("SUB foo 1\r\n");
    sub.sync();
    let x = "x".repeat(1024);
    peer.c.send(format!("RMSG $G foo 1024\r\n{x}\r\n"));
    assert_eq!(payloads(&[sub.next()]), vec![x]);
    assert!(peer.sync().iter().all(|f| f.line.starts_with("RS+")));
}

/// A tern process with extra environment and a log file (`-l`), killed on drop.
struct Proc {
    child: std::process::Child,
    log: TempFile,
    port: u16,
}

impl Proc {
    fn start(args: &[String], env: &[(&str, &str)]) -> Proc {
        let port = free_port();
        let log = TempFile::reserve("log", "log");
        let mut cmd = Command::new(tern_bin());
        cmd.args(["-a", "127.0.0.1", "-p", &port.to_string(), "-D", "-l"])
            .arg(&log.path)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn tern");
        assert!(
            wait_accepting(&mut child, &format!("127.0.0.1:{port}"), SLOW),
            "tern did not start: {}",
            log.read()
        );
        Proc { child, log, port }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The resolver is a helper thread: a lookup that hangs (a test hook makes every name lookup
/// take a minute, standing in for an unanswering DNS server) holds up no client.
#[test]
fn a_route_host_name_that_resolves_slowly_does_not_stall_clients() {
    let t = Proc::start(
        &[
            "--cluster".into(),
            format!("nats://127.0.0.1:{}", free_port()),
            "--cluster_name".into(),
            "dns".into(),
            "--routes".into(),
            "nats://route.tern.invalid:4248".into(),
        ],
        &[("TERN_TEST_RESOLVE_DELAY_MS", "60000")],
    );
    // The route is dialled in the first pass, before this client is accepted.
    let mut c = Client::connect(t.port);
    c.send("CONNECT {\"verbose\":false}\r\nSUB x 1\r\n");
    let mut round_trips = 0;
    for _ in 0..50 {
        c.send("PUB x 2\r\nhi\r\n");
        c.expect("MSG x 1 2\r\nhi\r\n");
        c.ping_pong();
        round_trips += 1;
    }
    let log = t.log.read();
    assert!(
        log.contains("Looking up route host route.tern.invalid")
            && !log.contains("Error trying to connect to route"),
        "the lookup should still be in flight after {round_trips} round trips:\n{log}"
    );
}

/// A host name goes through the resolver thread and back: the route forms.
#[test]
fn a_route_host_name_is_looked_up_off_the_loop_and_the_route_forms() {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    use std::net::ToSocketAddrs;
    let first = (host.as_str(), 1)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next());
    if host.is_empty() || !first.is_some_and(|a| a.is_ipv4()) {
        eprintln!("note: the host name {host:?} does not resolve to IPv4 here; skipped");
        return;
    }
    // B listens on every address, so whatever the host name resolves to reaches it.
    let mut b = Node::new(&tern_bin(), "B");
    b.cluster_flag = false;
    b.conf = Some(write_config(&format!(
        "cluster {{\n  name: dns\n  listen: 0.0.0.0:{}\n}}\n",
        b.cport
    )));
    let b = b.start();
    let a = Proc::start(
        &[
            "--cluster".into(),
            format!("nats://127.0.0.1:{}", free_port()),
            "--cluster_name".into(),
            "dns".into(),
            "--routes".into(),
            format!("nats://{host}:{}", b.cport),
        ],
        &[("TERN_TEST_RESOLVE_DELAY_MS", "300")],
    );
    let mut sb = b.client();
    sb.send("SUB dns 1\r\n");
    sb.sync();
    let end = Instant::now() + SLOW;
    while b.routez(true).unwrap().1.is_empty() {
        assert!(Instant::now() < end, "no route from A:\n{}", a.log.read());
        thread::sleep(Duration::from_millis(30));
    }
    let mut pa = Client::connect(a.port);
    pa.send("CONNECT {\"verbose\":false}\r\n");
    let end = Instant::now() + SLOW;
    loop {
        pa.send("PUB dns 2\r\nok\r\nPING\r\n");
        pa.expect("PONG\r\n");
        if let Some(m) = sb.drain_for(WATCH).pop() {
            assert_eq!(esc(&m.raw), "MSG dns 1 2\r\nok\r\n");
            break;
        }
        assert!(Instant::now() < end, "nothing crossed the route");
    }
    assert!(a
        .log
        .read()
        .contains(&format!("Looking up route host {host}")));
}

/// The `[ERR]`/`[DBG]` lines about failed route dials in `log`, without pid and time.
fn dial_errors(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("Error trying to connect to route"))
        .map(|l| l[l.find("[ERR]").or(l.find("[DBG]")).unwrap_or(0)..].to_string())
        .collect()
}

/// A configured route to a closed port, for 3.5 s: one line per attempt, the first at error
/// level and the others at debug level (a first connect), and never a route created and
/// closed; the same lines as nats-server's.
#[test]
fn a_dial_to_a_dead_route_logs_one_line_per_attempt() {
    let dead = free_port();
    let mut seen = Vec::new();
    for (bin, label) in reference_then_tern("dial errors") {
        let n = Node::new(&bin, label)
            .with_args(&cluster_args("dead", &[]))
            .with_args(&[
                "--routes".into(),
                format!("nats://127.0.0.1:{dead}"),
                "-D".into(),
            ])
            .start();
        thread::sleep(Duration::from_millis(3500));
        let log = n.log();
        let lines = dial_errors(&log);
        assert!(
            (2..=5).contains(&lines.len()),
            "{label}: {} dial error lines in 3.5 s\n{log}",
            lines.len()
        );
        assert_eq!(
            lines[0],
            format!(
                "[ERR] Error trying to connect to route (attempt 1): dial tcp 127.0.0.1:{dead}: connect: connection refused"
            ),
            "{label}"
        );
        for (i, l) in lines.iter().enumerate().skip(1) {
            assert!(
                l.starts_with(&format!(
                    "[DBG] Error trying to connect to route (attempt {})",
                    i + 1
                )),
                "{label}: {l}"
            );
        }
        for never in ["Route connection created", "Router connection closed"] {
            assert!(!log.contains(never), "{label}: {never}\n{log}");
        }
        seen.push((label, lines[0].clone()));
    }
    assert!(seen.windows(2).all(|w| w[0].1 == w[1].1), "{seen:?}");
}

/// A route that was up and is lost: every failed redial is reported at error level, one
/// line each (nats-server's reconnect), with no created/closed pair per attempt.
#[test]
fn a_lost_route_logs_each_failed_redial_at_error_level() {
    for (bin, label) in reference_then_tern("redial errors") {
        let mut a = Node::new(&bin, "A")
            .with_args(&cluster_args("lost", &[]))
            .start();
        let b = Node::new(&bin, "B")
            .with_args(&cluster_args("lost", &[&a]))
            .start();
        wait_mesh(&[&a, &b]);
        let before = b.log();
        a.kill();
        let end = Instant::now() + SLOW;
        while dial_errors(&b.log()).len() < 2 {
            assert!(
                Instant::now() < end,
                "{label}: no redial errors\n{}",
                b.log()
            );
            thread::sleep(Duration::from_millis(50));
        }
        let log = b.log();
        let lines = dial_errors(&log);
        for (i, l) in lines.iter().take(2).enumerate() {
            let want = format!(
                "[ERR] Error trying to connect to route (attempt {}): dial tcp 127.0.0.1:{}: connect: connection refused",
                i + 1,
                a.cport
            );
            assert_eq!(l, &want, "{label}\n{log}");
        }
        let created = |l: &str| l.matches("Route connection created").count();
        assert_eq!(created(&log), created(&before), "{label}\n{log}");
    }
}
