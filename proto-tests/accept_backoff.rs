// Out of file descriptors (issue 9, hole 11a): `accept` fails with EMFILE for as long as that
// lasts, and every connection that knocks makes the listener readable again. Like nats-server,
// tern backs off (10 ms doubling to 1 s, one log line per try) rather than logging every
// 100 ms plus once per knock, and accepts again once descriptors are free. The server runs
// with a small RLIMIT_NOFILE; the same test runs against nats-server first when installed.

use crate::harness::*;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// `bin` on a free port, logging to a file, allowed `nofile` descriptors.
fn start_limited(bin: &Path, nofile: u64) -> (Child, TempFile, u16) {
    let port = free_port();
    let log = TempFile::reserve("log", "log");
    let mut cmd = Command::new(bin);
    cmd.args(["-a", "127.0.0.1", "-p", &port.to_string(), "-l"])
        .arg(&log.path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: only setrlimit (async-signal-safe) runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: nofile,
                rlim_max: nofile,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("spawn");
    assert!(
        wait_accepting(&mut child, &format!("127.0.0.1:{port}"), DEADLINE),
        "{} did not start: {}",
        bin.display(),
        log.read()
    );
    (child, log, port)
}

/// The log lines about failed accepts, from the level tag on, the port written as PORT.
fn accept_errors(log: &str, port: u16) -> Vec<String> {
    log.lines()
        .filter(|l| l.to_lowercase().contains("too many open files"))
        .map(|l| {
            let from = l.find("[ERR]").unwrap_or(0);
            l[from..].replace(&port.to_string(), "PORT")
        })
        .collect()
}

#[test]
fn out_of_descriptors_accept_errors_back_off() {
    let mut bins: Vec<(std::path::PathBuf, &str)> = Vec::new();
    match reference_bin() {
        Some(r) => bins.push((r, "nats-server")),
        None => eprintln!("note: nats-server not installed, tern alone"),
    }
    bins.push((tern_bin(), "tern"));
    let mut first_lines = Vec::new();
    for (bin, label) in bins {
        let (mut child, log, port) = start_limited(&bin, 40);
        // Fill the descriptor table: clients until one is not accepted (no INFO).
        let mut held = Vec::new();
        loop {
            let mut c = Client::connect_raw(port);
            let accepted =
                c.read_until(Duration::from_millis(500), |rx| find(rx, b"\r\n").is_some());
            held.push(c);
            if !accepted {
                break;
            }
            assert!(held.len() < 100, "{label}: never ran out of descriptors");
        }
        // Three seconds of knocking: a new connection every 50 ms.
        let before = accept_errors(&log.read(), port).len();
        let end = Instant::now() + Duration::from_secs(3);
        let mut knocks = 0;
        while Instant::now() < end {
            held.push(Client::connect_raw(port));
            knocks += 1;
            thread::sleep(Duration::from_millis(50));
        }
        let lines = accept_errors(&log.read(), port);
        let flood = lines.len() - before;
        assert!(
            (1..=12).contains(&flood),
            "{label}: {flood} accept error lines in 3 s of {knocks} knocks:\n{}",
            lines.join("\n")
        );
        // Descriptors come back: connections are accepted again.
        drop(held);
        let mut c = Client::connect_raw(port);
        c.read_info();
        c.send("CONNECT {\"verbose\":false}\r\nPING\r\n");
        c.expect("PONG\r\n");
        first_lines.push((label, lines[0].clone()));
        let _ = child.kill();
        let _ = child.wait();
    }
    assert!(
        first_lines.last().is_some_and(|(_, l)| l
            == "[ERR] Temporary Client Accept Error(accept tcp 127.0.0.1:PORT: accept4: too many open files), sleeping 10ms"),
        "{first_lines:?}"
    );
    assert!(
        first_lines.windows(2).all(|w| w[0].1 == w[1].1),
        "{first_lines:?}"
    );
}
