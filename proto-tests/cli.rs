// Command line: nats-server's flags in Go style (`-x`, `--x`, `-x=v`, `-x v`): address (IPv4
// and IPv6), port (including -1 for a random one), server name, auth flags, -D/-V/-DV log
// levels, -l log file, -T timestamps, -P pid file, -v/--version, -h/--help, unknown flags,
// log line format, and SIGINT/SIGTERM shutdown (and immediate restart on the same port).
// These are behaviour checks that pass on nats-server too: no tern-specific text is asserted.

use crate::harness::*;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Child;
use std::thread;
use std::time::{Duration, Instant};

/// A server spawned with exactly the given args (no implicit -a/-p); killed on drop.
struct Proc {
    child: Child,
    log: TempFile,
}

impl Proc {
    fn spawn(args: &[String]) -> Proc {
        let (child, log) = spawn_logged(&tern_bin(), args);
        Proc { child, log }
    }
    fn spawn_str(args: &[&str]) -> Proc {
        Proc::spawn(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }
    fn log(&self) -> String {
        self.log.read()
    }
    fn pid(&self) -> u32 {
        self.child.id()
    }
    /// Wait until `addr` accepts connections (panics with the log otherwise).
    fn ready(&mut self, addr: &str) {
        if !wait_accepting(&mut self.child, addr, DEADLINE) {
            panic!("server not accepting on {}; log:\n{}", addr, self.log());
        }
    }
    /// Wait until the log contains `needle` (panics with the log otherwise).
    fn wait_log(&self, needle: &str) -> String {
        let end = Instant::now() + DEADLINE;
        loop {
            let l = self.log();
            if l.contains(needle) {
                return l;
            }
            assert!(
                Instant::now() < end,
                "log never contained {:?}:\n{}",
                needle,
                l
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
    fn exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        wait_child(&mut self.child, timeout)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run to completion (deadline) and return (exit status, combined output).
fn run_to_exit(args: &[&str]) -> (std::process::ExitStatus, String) {
    let mut p = Proc::spawn_str(args);
    let st = p
        .exit(DEADLINE)
        .unwrap_or_else(|| panic!("{:?} did not exit; output:\n{}", args, p.log()));
    (st, p.log())
}

/// A parsed log line: `[pid] [YYYY/MM/DD HH:MM:SS.ffffff ][LVL] message`.
#[derive(Debug)]
struct LogLine {
    pid: u32,
    timestamp: bool,
    level: String,
    msg: String,
}

fn parse_log_line(line: &str) -> Option<LogLine> {
    let rest = line.strip_prefix('[')?;
    let close = rest.find(']')?;
    let pid: u32 = rest[..close].parse().ok()?;
    let mut rest = rest[close + 1..].strip_prefix(' ')?;
    let mut timestamp = false;
    const PAT: &[u8] = b"dddd/dd/dd dd:dd:dd.dddddd ";
    if rest.len() > PAT.len()
        && rest.as_bytes()[..PAT.len()].iter().zip(PAT).all(|(c, p)| {
            if *p == b'd' {
                c.is_ascii_digit()
            } else {
                c == p
            }
        })
    {
        timestamp = true;
        rest = &rest[PAT.len()..];
    }
    let rest = rest.strip_prefix('[')?;
    let level = rest.get(..3)?.to_string();
    if !["INF", "DBG", "TRC", "WRN", "ERR", "FTL"].contains(&level.as_str()) {
        return None;
    }
    let msg = rest.get(3..)?.strip_prefix("] ")?.to_string();
    Some(LogLine {
        pid,
        timestamp,
        level,
        msg,
    })
}

fn log_lines(log: &str) -> Vec<LogLine> {
    log.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            parse_log_line(l).unwrap_or_else(|| panic!("malformed log line {:?} in:\n{}", l, log))
        })
        .collect()
}

fn has_line(lines: &[LogLine], level: &str, msg: &str) -> bool {
    lines.iter().any(|l| l.level == level && l.msg == msg)
}

fn talk(port: u16) {
    let mut c = Client::connect(port);
    c.send("CONNECT {\"verbose\":false}\r\nSUB foo 1\r\nPUB foo 2\r\nhi\r\nPING\r\n");
    c.expect("MSG foo 1 2\r\nhi\r\nPONG\r\n");
}

#[test]
fn log_line_format_and_startup_lines() {
    let port = free_port();
    let mut p = Proc::spawn(&[
        "-a".into(),
        "127.0.0.1".into(),
        "-p".into(),
        port.to_string(),
    ]);
    p.ready(&format!("127.0.0.1:{}", port));
    let log = p.wait_log("Server is ready");
    let lines = log_lines(&log);
    assert!(
        lines.iter().all(|l| l.pid == p.pid() && l.timestamp),
        "{}",
        log
    );
    assert!(
        has_line(
            &lines,
            "INF",
            &format!("Listening for client connections on 127.0.0.1:{}", port)
        ),
        "{}",
        log
    );
    assert!(has_line(&lines, "INF", "Server is ready"), "{}", log);
    let listen = lines
        .iter()
        .position(|l| l.msg.starts_with("Listening for client connections"))
        .unwrap();
    let ready = lines
        .iter()
        .position(|l| l.msg == "Server is ready")
        .unwrap();
    assert!(listen < ready);
    // Without -D / -V: no debug or trace lines, even with client traffic.
    talk(port);
    thread::sleep(Duration::from_millis(200));
    let log = p.log();
    assert!(
        log_lines(&log)
            .iter()
            .all(|l| l.level != "DBG" && l.level != "TRC"),
        "{}",
        log
    );
}

#[test]
fn logtime_false_drops_timestamps() {
    for flag in ["-T=false", "--logtime=false"] {
        let port = free_port();
        let mut p = Proc::spawn(&[
            "-a".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
            flag.into(),
        ]);
        p.ready(&format!("127.0.0.1:{}", port));
        let log = p.wait_log("Server is ready");
        let lines = log_lines(&log);
        assert!(
            lines.iter().all(|l| !l.timestamp && l.pid == p.pid()),
            "{}:\n{}",
            flag,
            log
        );
        assert!(
            log.lines()
                .any(|l| l == format!("[{}] [INF] Server is ready", p.pid())),
            "{}",
            log
        );
    }
    // -T=true is the default format.
    let port = free_port();
    let mut p = Proc::spawn(&[
        "-a".into(),
        "127.0.0.1".into(),
        "-p".into(),
        port.to_string(),
        "-T=true".into(),
    ]);
    p.ready(&format!("127.0.0.1:{}", port));
    let log = p.wait_log("Server is ready");
    assert!(log_lines(&log).iter().all(|l| l.timestamp), "{}", log);
}

fn levels_with(flags: &[&str]) -> (bool, bool, String) {
    let port = free_port();
    let mut args: Vec<String> = vec![
        "-a".into(),
        "127.0.0.1".into(),
        "-p".into(),
        port.to_string(),
    ];
    args.extend(flags.iter().map(|s| s.to_string()));
    let mut p = Proc::spawn(&args);
    p.ready(&format!("127.0.0.1:{}", port));
    p.wait_log("Server is ready");
    talk(port);
    thread::sleep(Duration::from_millis(300));
    let log = p.log();
    let lines = log_lines(&log);
    let dbg = lines.iter().any(|l| l.level == "DBG");
    let trc = lines.iter().any(|l| l.level == "TRC");
    if trc {
        assert!(
            lines
                .iter()
                .any(|l| l.level == "TRC" && l.msg.contains("PING")),
            "trace without the PING:\n{}",
            log
        );
    }
    (dbg, trc, log)
}

#[test]
fn debug_and_trace_flags() {
    for (flags, want_dbg, want_trc) in [
        (&["-D"][..], true, false),
        (&["--debug"][..], true, false),
        (&["-V"][..], false, true),
        (&["--trace"][..], false, true),
        (&["-DV"][..], true, true),
        (&["-D", "-V"][..], true, true),
        (&["-D=true", "-V=false"][..], true, false),
    ] {
        let (dbg, trc, log) = levels_with(flags);
        assert_eq!(
            (dbg, trc),
            (want_dbg, want_trc),
            "flags {:?}; log:\n{}",
            flags,
            log
        );
    }
}

#[test]
fn log_file_flag() {
    for flag in ["-l", "--log"] {
        let file = TempFile::reserve("logfile", "log");
        let port = free_port();
        let mut p = Proc::spawn(&[
            "-a".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
            flag.into(),
            file.path.to_string_lossy().into_owned(),
        ]);
        p.ready(&format!("127.0.0.1:{}", port));
        let end = Instant::now() + DEADLINE;
        while !file.read().contains("Server is ready") {
            assert!(
                Instant::now() < end,
                "log file {:?} never got 'Server is ready': {:?}",
                file.path,
                file.read()
            );
            thread::sleep(Duration::from_millis(20));
        }
        let lines = log_lines(&file.read());
        assert!(has_line(
            &lines,
            "INF",
            &format!("Listening for client connections on 127.0.0.1:{}", port)
        ));
        assert!(lines.iter().all(|l| l.pid == p.pid()));
        // The log goes to the file instead of the console.
        assert!(
            !p.log().contains("Server is ready"),
            "console output: {}",
            p.log()
        );
    }
}

#[test]
fn pid_file_flag() {
    for flag in ["-P", "--pid"] {
        let file = TempFile::reserve("pidfile", "pid");
        let port = free_port();
        let mut p = Proc::spawn(&[
            "-a".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
            flag.into(),
            file.path.to_string_lossy().into_owned(),
        ]);
        p.ready(&format!("127.0.0.1:{}", port));
        let end = Instant::now() + DEADLINE;
        while file.read().trim().is_empty() {
            assert!(Instant::now() < end, "pid file not written");
            thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(file.read().trim(), p.pid().to_string());
    }
}

#[test]
fn address_and_port_flag_spellings() {
    for (a, pflag) in [
        ("-a", "-p"),
        ("--addr", "--port"),
        ("--net", "-p"),
        ("-a=", "-p="),
        ("--addr=", "--port="),
        ("--net=", "--port="),
    ] {
        let port = free_port();
        let args: Vec<String> = if a.ends_with('=') {
            vec![format!("{}127.0.0.1", a), format!("{}{}", pflag, port)]
        } else {
            vec![a.into(), "127.0.0.1".into(), pflag.into(), port.to_string()]
        };
        let mut p = Proc::spawn(&args);
        p.ready(&format!("127.0.0.1:{}", port));
        let c = Client::connect(port);
        assert_eq!(
            json_get(&c.info, "port"),
            Some(port.to_string()),
            "{:?}",
            args
        );
        assert_eq!(
            json_str(&c.info, "host").as_deref(),
            Some("127.0.0.1"),
            "{:?}",
            args
        );
    }
}

#[test]
fn server_name_flag_spellings() {
    for form in [
        &["-n", "alpha"][..],
        &["--name", "alpha"],
        &["--server_name", "alpha"],
        &["-n=alpha"],
        &["--server_name=alpha"],
    ] {
        let port = free_port();
        let mut args: Vec<String> = vec![
            "-a".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
        ];
        args.extend(form.iter().map(|s| s.to_string()));
        let mut p = Proc::spawn(&args);
        p.ready(&format!("127.0.0.1:{}", port));
        let c = Client::connect(port);
        assert_eq!(
            json_str(&c.info, "server_name").as_deref(),
            Some("alpha"),
            "{:?}",
            form
        );
        assert_ne!(json_str(&c.info, "server_id").as_deref(), Some("alpha"));
    }
}

#[test]
fn random_port_is_logged() {
    let mut p = Proc::spawn_str(&["-a", "127.0.0.1", "-p", "-1"]);
    let log = p.wait_log("Server is ready");
    let prefix = "Listening for client connections on 127.0.0.1:";
    let line = log_lines(&log)
        .into_iter()
        .find(|l| l.msg.starts_with(prefix))
        .expect("no listening line");
    let port: u16 = line.msg[prefix.len()..].parse().expect("port number");
    assert!(port > 0);
    p.ready(&format!("127.0.0.1:{}", port));
    let c = Client::connect(port);
    assert_eq!(json_get(&c.info, "port"), Some(port.to_string()));
    talk(port);
}

fn ipv6_available() -> bool {
    std::net::TcpListener::bind("[::1]:0").is_ok()
}

#[test]
fn ipv6_addresses() {
    if !ipv6_available() {
        eprintln!("note: no IPv6 loopback; skipping ipv6_addresses");
        return;
    }
    // -a ::1 : IPv6 loopback only.
    let port = free_port();
    let mut p = Proc::spawn(&["-a".into(), "::1".into(), "-p".into(), port.to_string()]);
    p.ready(&format!("[::1]:{}", port));
    let log = p.wait_log("Server is ready");
    assert!(
        has_line(
            &log_lines(&log),
            "INF",
            &format!("Listening for client connections on [::1]:{}", port)
        ),
        "{}",
        log
    );
    let mut c = Client::connect_addr(&format!("[::1]:{}", port));
    c.read_info();
    assert_eq!(json_str(&c.info, "host").as_deref(), Some("::1"));
    assert_eq!(json_str(&c.info, "client_ip").as_deref(), Some("::1"));
    c.ping_pong();
    drop(p);

    // -a :: : all addresses, IPv6 and (dual stack) IPv4.
    let port = free_port();
    let mut p = Proc::spawn(&["--addr=::".into(), format!("--port={}", port)]);
    p.ready(&format!("[::1]:{}", port));
    let log = p.wait_log("Server is ready");
    assert!(
        has_line(
            &log_lines(&log),
            "INF",
            &format!("Listening for client connections on [::]:{}", port)
        ),
        "{}",
        log
    );
    let mut c6 = Client::connect_addr(&format!("[::1]:{}", port));
    c6.read_info();
    assert_eq!(json_str(&c6.info, "host").as_deref(), Some("::"));
    c6.ping_pong();
    let mut c4 = Client::connect_addr(&format!("127.0.0.1:{}", port));
    c4.read_info();
    c4.ping_pong();
}

#[test]
fn auth_flag_spellings() {
    let port = free_port();
    let mut p = Proc::spawn(&[
        "-a".into(),
        "127.0.0.1".into(),
        format!("--port={}", port),
        "--user=bob".into(),
        "--pass=pw".into(),
    ]);
    p.ready(&format!("127.0.0.1:{}", port));
    let mut c = Client::connect(port);
    assert_eq!(json_get(&c.info, "auth_required").as_deref(), Some("true"));
    c.send("CONNECT {\"user\":\"bob\",\"pass\":\"pw\",\"verbose\":false}\r\nPING\r\n");
    c.expect("PONG\r\n");
    let mut bad = Client::connect(port);
    bad.send("CONNECT {\"user\":\"bob\",\"pass\":\"no\"}\r\n");
    bad.expect("-ERR 'Authorization Violation'\r\n");
    bad.expect_closed();
    drop(p);

    let port = free_port();
    let mut p = Proc::spawn(&[
        "-a=127.0.0.1".into(),
        "-p".into(),
        port.to_string(),
        "--auth=sekrit".into(),
    ]);
    p.ready(&format!("127.0.0.1:{}", port));
    let mut c = Client::connect(port);
    c.send("CONNECT {\"auth_token\":\"sekrit\",\"verbose\":false}\r\nPING\r\n");
    c.expect("PONG\r\n");
}

#[test]
fn version_flag() {
    for flag in ["-v", "--version"] {
        let (st, out) = run_to_exit(&[flag]);
        assert_eq!(st.code(), Some(0), "{}: {}", flag, out);
        assert!(
            out.chars().any(|c| c.is_ascii_digit()),
            "{} printed no version: {:?}",
            flag,
            out
        );
        assert!(!out.contains("Server is ready"));
    }
}

#[test]
fn help_flag() {
    for flag in ["-h", "--help"] {
        let (st, out) = run_to_exit(&[flag]);
        assert_eq!(st.code(), Some(0), "{}: {}", flag, out);
        assert!(
            out.contains("port"),
            "{} output does not mention the port flag: {:?}",
            flag,
            out
        );
        assert!(!out.contains("Server is ready"));
    }
}

#[test]
fn unknown_flags_are_refused() {
    // Refused promptly (the server never starts) with a message naming the flag. The exit code
    // is not asserted: nats-server 2.9.10 prints the usage and exits 0 for flag errors.
    for (flag, name) in [
        ("--bogus", "bogus"),
        ("-bogus=3", "bogus"),
        ("--no-such-flag", "no-such-flag"),
        ("-x", "-x"),
    ] {
        let (st, out) = run_to_exit(&["-a", "127.0.0.1", "-p", "-1", flag]);
        assert!(st.code().is_some(), "{} killed by a signal", flag);
        assert!(
            out.contains(name),
            "{}: message does not name the flag: {:?}",
            flag,
            out
        );
        assert!(!out.contains("Server is ready"), "{}: server started", flag);
    }
    // A flag missing its value, or with a bad value: refused too.
    for args in [&["-p"][..], &["-p", "abc"]] {
        let (st, out) = run_to_exit(args);
        assert!(st.code().is_some());
        assert!(
            !out.contains("Server is ready"),
            "{:?}: server started: {}",
            args,
            out
        );
    }
    // A stray positional argument: non-zero exit, named in the message.
    let (st, out) = run_to_exit(&["-a", "127.0.0.1", "-p", "-1", "stray_arg"]);
    assert_ne!(st.code(), Some(0), "{}", out);
    assert!(out.contains("stray_arg"), "{:?}", out);
    assert!(!out.contains("Server is ready"));
}

#[test]
fn unreadable_config_file_is_refused() {
    let missing: PathBuf = temp_path("missing", "conf");
    let (st, out) = run_to_exit(&[
        "-a",
        "127.0.0.1",
        "-p",
        "-1",
        "-c",
        &missing.to_string_lossy(),
    ]);
    assert_ne!(st.code(), Some(0), "{}", out);
    assert!(!out.contains("Server is ready"));
}

#[test]
fn sigint_exits_zero_promptly_even_with_clients() {
    let port = free_port();
    let mut p = Proc::spawn(&[
        "-a".into(),
        "127.0.0.1".into(),
        "-p".into(),
        port.to_string(),
    ]);
    p.ready(&format!("127.0.0.1:{}", port));
    let mut c = Client::connect(port);
    c.send("CONNECT {\"verbose\":false}\r\nSUB foo 1\r\nPING\r\n");
    c.expect("PONG\r\n");
    send_signal(p.pid(), "INT");
    let st = p.exit(DEADLINE).expect("did not exit on SIGINT");
    assert_eq!(st.code(), Some(0));
    // The client is disconnected.
    let (_, closed) = c.read_to_close(DEADLINE);
    assert!(closed);
}

#[test]
fn sigterm_exits_promptly() {
    let port = free_port();
    let mut p = Proc::spawn(&[
        "-a".into(),
        "127.0.0.1".into(),
        "-p".into(),
        port.to_string(),
    ]);
    p.ready(&format!("127.0.0.1:{}", port));
    let mut c = Client::connect(port);
    c.ping_pong();
    send_signal(p.pid(), "TERM");
    let st = p.exit(DEADLINE).expect("did not exit on SIGTERM");
    // Handled (a normal exit, not death by signal). nats-server 2.9.10 exits with status 1 here.
    assert!(
        st.code().is_some(),
        "killed by the signal instead of handling it: {:?}",
        st
    );
    assert!(
        TcpStream::connect(format!("127.0.0.1:{}", port)).is_err(),
        "still listening"
    );
}

#[test]
fn restart_on_same_port_after_sigint() {
    let port = free_port();
    let addr = format!("127.0.0.1:{}", port);
    let args: Vec<String> = vec![
        "-a".into(),
        "127.0.0.1".into(),
        "-p".into(),
        port.to_string(),
    ];
    let mut p = Proc::spawn(&args);
    p.ready(&addr);
    // Established connections at shutdown leave TIME_WAIT sockets on the server's port.
    let mut clients: Vec<Client> = (0..3).map(|_| Client::connect(port)).collect();
    for c in clients.iter_mut() {
        c.ping_pong();
    }
    send_signal(p.pid(), "INT");
    assert_eq!(p.exit(DEADLINE).expect("no exit").code(), Some(0));
    drop(p);
    // Restart at once on the same port: it must bind.
    let mut q = Proc::spawn(&args);
    q.ready(&addr);
    q.wait_log("Server is ready");
    talk(port);
}
