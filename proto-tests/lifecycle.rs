// Lifecycle: config reload on SIGHUP (permissions change on a live connection, subscriptions
// the new permissions forbid are dropped, a removed user is cut off, a broken file leaves the
// running config alone), `--signal <cmd>=<pidfile>`, and lame-duck mode (INFO with "ldm":true,
// no new connections, clients closed after the grace period, then the process exits), and
// out-of-range config values refused by `-t` and by a reload without harm to the server.
// Every test runs the same steps against tern and, when installed, nats-server, except the
// out-of-range ones (nats-server accepts those values).

use crate::harness::*;
use std::path::PathBuf;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

/// The binaries to check: tern, then nats-server if present.
fn servers() -> Vec<PathBuf> {
    let mut v = vec![tern_bin()];
    v.extend(reference_bin());
    v
}

fn perms_conf(publish: &str, subscribe: &str) -> String {
    format!(
        "authorization {{ users = [ {{user: a, password: a, permissions: {{ publish: [{publish}], subscribe: [{subscribe}] }} }} ] }}\n"
    )
}

const LOGIN: &str = "CONNECT {\"user\":\"a\",\"pass\":\"a\",\"verbose\":false,\"protocol\":1}\r\n";

/// Rewrites the config file and sends SIGHUP; waits until `check` passes (the reload is
/// asynchronous on nats-server) or fails the test.
fn reload_until(server: &Server, conf: &TempFile, text: &str, mut check: impl FnMut() -> bool) {
    std::fs::write(&conf.path, text).expect("rewrite config");
    server.signal("HUP");
    let end = Instant::now() + DEADLINE;
    while Instant::now() < end {
        if check() {
            return;
        }
        thread::sleep(Duration::from_millis(50));
    }
    panic!("reload did not take effect; log:\n{}", server.log());
}

/// Publishes to `subject` and reports whether the server refused it (connection kept).
fn publish_refused(c: &mut Client, subject: &str) -> bool {
    c.send(format!("PUB {subject} 0\r\n\r\nPING\r\n"));
    // The PONG, not the last line: a reload's `-ERR` for a subscription it no longer allows
    // can arrive right behind it.
    assert!(
        c.read_until(DEADLINE, |rx| find(rx, b"PONG\r\n").is_some()),
        "no PONG: {}",
        esc(&c.rx)
    );
    let refused = find(&c.rx, b"Permissions Violation for Publish").is_some();
    c.rx.clear();
    refused
}

#[test]
fn reload_changes_permissions_of_a_live_connection() {
    for bin in servers() {
        let conf = write_config(&perms_conf("\"foo\"", "\"foo\", \"bar\""));
        let path = conf.path.to_string_lossy().into_owned();
        let s = Server::start_with(&bin, None, &["-c", &path]);
        let mut c = s.client();
        c.send(format!("{LOGIN}SUB bar 1\r\n"));
        c.ping_pong();
        assert!(!publish_refused(&mut c, "foo"));
        assert!(publish_refused(&mut c, "bar"));

        // Now bar may be published and foo may not; subscribing to bar is no longer allowed.
        reload_until(&s, &conf, &perms_conf("\"bar\"", "\"foo\""), || {
            !publish_refused(&mut c, "bar")
        });
        assert!(publish_refused(&mut c, "foo"), "{}", bin.display());

        // The subscription to bar was removed: another client's message on bar is not delivered.
        let mut other = s.client();
        other.send(format!("{LOGIN}PUB bar 2\r\nhi\r\nPING\r\n"));
        other.expect("PONG\r\n");
        c.send("PING\r\n");
        c.expect("PONG\r\n");
    }
}

#[test]
fn reload_of_a_broken_file_keeps_the_running_config() {
    for bin in servers() {
        let conf = write_config(&perms_conf("\"foo\"", "\"foo\""));
        let path = conf.path.to_string_lossy().into_owned();
        let s = Server::start_with(&bin, None, &["-c", &path]);
        let mut c = s.client();
        c.send(LOGIN);
        c.ping_pong();
        std::fs::write(
            &conf.path,
            "authorization { users = [ {user: a, password: a, bogus } ] }\n",
        )
        .unwrap();
        s.signal("HUP");
        let end = Instant::now() + DEADLINE;
        while !s.log().contains("Failed to reload server configuration") {
            assert!(Instant::now() < end, "no reload error logged:\n{}", s.log());
            thread::sleep(Duration::from_millis(50));
        }
        // Same user, same permissions, same connection.
        assert!(!publish_refused(&mut c, "foo"));
        assert!(publish_refused(&mut c, "bar"));
    }
}

/// Values that once panicked (`Duration::from_secs_f64`, `Instant + huge`) or wrapped. tern
/// refuses them with the key's position; nats-server accepts them (and wraps), so these two
/// tests run against tern only.
const OUT_OF_RANGE: &[(&str, &str)] = &[
    (
        "authorization { user: a, password: a, timeout: 100000000000000000000.0 }\n",
        "timeout",
    ),
    ("ping_interval: 9223372036854775807\n", "ping_interval"),
    (
        "max_pending: 9223372036854775807\nmax_payload: 9223372036854775807\n",
        "max_payload",
    ),
];

#[test]
fn check_config_refuses_out_of_range_values() {
    for (text, key) in OUT_OF_RANGE {
        let conf = write_config(text);
        let out = Command::new(tern_bin())
            .args(["-t", "-c"])
            .arg(&conf.path)
            .output()
            .expect("run tern -t");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{text}: {stderr}");
        // The error names the file and position (`file:line:col: ...`) and the key.
        let at = format!("{}:", conf.path.display());
        assert!(
            stderr.contains(&at) && stderr.contains(key),
            "{text}: {stderr}"
        );
    }
}

#[test]
fn reload_of_an_out_of_range_value_keeps_the_server_running() {
    for (text, key) in OUT_OF_RANGE {
        let conf = write_config(&perms_conf("\"foo\"", "\"foo\""));
        let path = conf.path.to_string_lossy().into_owned();
        let mut s = Server::start_with(&tern_bin(), None, &["-c", &path]);
        let mut c = s.client();
        c.send(LOGIN);
        c.ping_pong();
        std::fs::write(&conf.path, text).unwrap();
        s.signal("HUP");
        let end = Instant::now() + DEADLINE;
        while !s.log().contains("Failed to reload server configuration") {
            assert!(
                s.child.try_wait().unwrap().is_none(),
                "{text}: died:\n{}",
                s.log()
            );
            assert!(Instant::now() < end, "no reload error logged:\n{}", s.log());
            thread::sleep(Duration::from_millis(50));
        }
        assert!(s.log().contains(key), "{text}: {}", s.log());
        // The running config stays: same connection, same permissions; new clients are served.
        assert!(!publish_refused(&mut c, "foo"));
        assert!(publish_refused(&mut c, "bar"));
        let mut other = s.client();
        other.send(format!("{LOGIN}PING\r\n"));
        other.expect("PONG\r\n");
        thread::sleep(Duration::from_millis(100));
        assert!(s.wait_exit(Duration::ZERO).is_none(), "{text}: exited");
    }
}

#[test]
fn reload_that_removes_a_user_or_changes_its_password_cuts_its_connections() {
    for bin in servers() {
        let conf = write_config(&perms_conf("\">\"", "\">\""));
        let path = conf.path.to_string_lossy().into_owned();
        let s = Server::start_with(&bin, None, &["-c", &path]);
        let mut c = s.client();
        c.send(LOGIN);
        c.ping_pong();
        // A changed password: Authorization Violation, then close.
        std::fs::write(
            &conf.path,
            "authorization { users = [ {user: a, password: z} ] }\n",
        )
        .unwrap();
        s.signal("HUP");
        let (rx, closed) = c.read_to_close(DEADLINE);
        assert!(closed, "{}: still open: {}", bin.display(), esc(&rx));
        assert_eq!(
            esc(&rx),
            esc(b"-ERR 'Authorization Violation'\r\n"),
            "{}",
            bin.display()
        );
        // A user that is gone: closed without an error (nats-server treats it as moved).
        let mut z = s.client();
        z.send("CONNECT {\"user\":\"a\",\"pass\":\"z\",\"verbose\":false}\r\n");
        z.ping_pong();
        std::fs::write(
            &conf.path,
            "authorization { users = [ {user: b, password: b} ] }\n",
        )
        .unwrap();
        s.signal("HUP");
        let (rx, closed) = z.read_to_close(DEADLINE);
        assert!(closed, "{}: still open: {}", bin.display(), esc(&rx));
        assert_eq!(esc(&rx), "", "{}", bin.display());
        // The new user can connect.
        let mut b = s.client();
        b.send("CONNECT {\"user\":\"b\",\"pass\":\"b\",\"verbose\":false}\r\nPING\r\n");
        b.expect("PONG\r\n");
    }
}

#[test]
fn reload_without_a_config_file_is_refused_and_harmless() {
    for bin in servers() {
        let s = Server::start_with(&bin, None, &[]);
        let mut c = s.client();
        c.send("CONNECT {\"verbose\":false}\r\n");
        c.ping_pong();
        s.signal("HUP");
        let end = Instant::now() + DEADLINE;
        while !s.log().contains("Failed to reload server configuration") {
            assert!(Instant::now() < end, "no reload error logged:\n{}", s.log());
            thread::sleep(Duration::from_millis(50));
        }
        c.ping_pong();
    }
}

#[test]
fn signal_flag_reloads_through_the_pid_file() {
    for bin in servers() {
        let conf = write_config(&perms_conf("\"foo\"", "\"foo\""));
        let pid_file = TempFile::reserve("lifecycle-pid", "pid");
        let (conf_path, pid_path) = (
            conf.path.to_string_lossy().into_owned(),
            pid_file.path.to_string_lossy().into_owned(),
        );
        let s = Server::start_with(&bin, None, &["-c", &conf_path, "-P", &pid_path]);
        assert_eq!(pid_file.read().trim(), s.pid().to_string());
        let mut c = s.client();
        c.send(LOGIN);
        c.ping_pong();
        assert!(publish_refused(&mut c, "bar"));
        std::fs::write(&conf.path, perms_conf("\"bar\"", "\"foo\"")).unwrap();
        let out = Command::new(&bin)
            .arg("--signal")
            .arg(format!("reload={pid_path}"))
            .output()
            .expect("run --signal");
        assert!(out.status.success(), "{}: {:?}", bin.display(), out);
        let end = Instant::now() + DEADLINE;
        while publish_refused(&mut c, "bar") {
            assert!(
                Instant::now() < end,
                "reload via --signal did not happen:\n{}",
                s.log()
            );
            thread::sleep(Duration::from_millis(50));
        }
        // A pid that is not there is an error.
        let out = Command::new(&bin)
            .args(["--signal", "reload=999999999"])
            .output()
            .unwrap();
        assert!(!out.status.success());
    }
}

#[test]
fn lame_duck_mode_tells_clients_stops_accepting_then_exits() {
    for bin in servers() {
        let conf = "lame_duck_duration: \"30s\"\nlame_duck_grace_period: \"1s\"\n";
        let mut s = Server::start_with(&bin, Some(conf), &[]);
        let mut c = s.client();
        c.send("CONNECT {\"verbose\":false,\"protocol\":1}\r\n");
        c.ping_pong();
        s.signal("USR2");
        assert!(
            c.read_until(DEADLINE, |rx| find(rx, b"\"ldm\":true").is_some()),
            "{}: no ldm INFO: {}",
            bin.display(),
            esc(&c.rx)
        );
        assert!(
            c.rx.starts_with(b"INFO {") && c.rx.ends_with(b"} \r\n"),
            "{}",
            esc(&c.rx)
        );
        // No new clients.
        let end = Instant::now() + DEADLINE;
        while std::net::TcpStream::connect(s.addr()).is_ok() {
            assert!(
                Instant::now() < end,
                "{} still accepts connections in lame-duck mode",
                bin.display()
            );
            thread::sleep(Duration::from_millis(50));
        }
        // After the grace period the last client is closed and the server exits.
        let (_, closed) = c.read_to_close(Duration::from_secs(20));
        assert!(
            closed,
            "{}: client not closed in lame-duck mode",
            bin.display()
        );
        let status = s.wait_exit(Duration::from_secs(20));
        assert!(
            status.is_some(),
            "{} did not exit after lame-duck mode",
            bin.display()
        );
    }
}
