// Test harness (std only): spawning servers (tern and the nats-server reference), temp config
// files, a raw TCP client with deadlines, an INFO JSON key extractor, and a script/transcript
// runner for differential tests (same script against tern and nats-server, byte-identical
// normalised transcripts, plus an explicit expected transcript so tests work without nats-server).

#![allow(dead_code)]

use std::collections::HashSet;
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// How long something that must arrive may take (generous: loaded 2-core machine).
pub const DEADLINE: Duration = Duration::from_secs(5);
/// How long we listen to conclude that nothing more arrives.
pub const QUIET: Duration = Duration::from_millis(250);

/// Normalised INFO line of a plain server (sorted key set).
pub const INFO: &str =
    "INFO [client_id,client_ip,go,headers,host,max_payload,port,proto,server_id,server_name,version]\r\n";
/// Normalised INFO line when authentication is required.
pub const INFO_AUTH: &str = "INFO [auth_required,client_id,client_ip,go,headers,host,max_payload,port,proto,server_id,server_name,version]\r\n";
/// Marker appended to a rendered transcript when the server closed the connection.
pub const CLOSED: &str = "<closed>";

// ---------------------------------------------------------------------------------------------
// Binaries

/// The binary under test: `TERN_BIN` or the crate's `tern` binary.
pub fn tern_bin() -> PathBuf {
    match std::env::var_os("TERN_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_tern")),
    }
}

/// The reference server: `NATS_SERVER`, else `/usr/sbin/nats-server` if present, else none
/// (differential comparisons are then skipped). With `TERN_REQUIRE_REFERENCE` set (CI sets it)
/// a missing reference is a failure instead: a comparison must not pass by not happening.
pub fn reference_bin() -> Option<PathBuf> {
    static REF: OnceLock<Option<PathBuf>> = OnceLock::new();
    REF.get_or_init(|| {
        let p = match std::env::var_os("NATS_SERVER") {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => PathBuf::from("/usr/sbin/nats-server"),
        };
        if p.is_file() {
            return Some(p);
        }
        let required =
            std::env::var("TERN_REQUIRE_REFERENCE").is_ok_and(|v| !v.is_empty() && v != "0");
        if required {
            panic!(
                "TERN_REQUIRE_REFERENCE is set but the reference nats-server is missing ({}): \
                 install it (apt-get install nats-server) or point NATS_SERVER at it",
                p.display()
            );
        }
        eprintln!(
            "note: no reference nats-server at {}; differential comparisons are skipped",
            p.display()
        );
        None
    })
    .clone()
}

// ---------------------------------------------------------------------------------------------
// Temp files

static UNIQUE: AtomicU64 = AtomicU64::new(0);

/// A unique path in the temp dir (not created).
pub fn temp_path(tag: &str, ext: &str) -> PathBuf {
    let n = UNIQUE.fetch_add(1, Ordering::SeqCst);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    std::env::temp_dir().join(format!(
        "tern-proto-{}-{}-{}-{}.{}",
        tag,
        std::process::id(),
        n,
        nanos,
        ext
    ))
}

/// A file removed on drop.
pub struct TempFile {
    pub path: PathBuf,
}

impl TempFile {
    pub fn new(tag: &str, ext: &str, contents: &str) -> TempFile {
        let path = temp_path(tag, ext);
        std::fs::write(&path, contents).expect("write temp file");
        TempFile { path }
    }
    /// Reserve a path without creating the file (removed on drop if created).
    pub fn reserve(tag: &str, ext: &str) -> TempFile {
        TempFile {
            path: temp_path(tag, ext),
        }
    }
    pub fn read(&self) -> String {
        std::fs::read_to_string(&self.path).unwrap_or_default()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Write a nats-server style config file.
pub fn write_config(contents: &str) -> TempFile {
    TempFile::new("conf", "conf", contents)
}

// ---------------------------------------------------------------------------------------------
// Ports

fn issued_ports() -> &'static Mutex<HashSet<u16>> {
    static P: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    P.get_or_init(|| Mutex::new(HashSet::new()))
}

/// A loopback port that was free a moment ago and was not handed out before by this process.
pub fn free_port() -> u16 {
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind ephemeral");
        let port = l.local_addr().unwrap().port();
        drop(l);
        if issued_ports().lock().unwrap().insert(port) {
            return port;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Server process

/// A spawned server process, killed on drop. stdout+stderr go to `log_path`.
pub struct Server {
    pub child: Child,
    pub port: u16,
    pub bin: PathBuf,
    pub log_path: PathBuf,
    _log: TempFile,
    _conf: Option<TempFile>,
}

/// Spawn `bin args...` with stdout and stderr both appended to a fresh log file.
pub fn spawn_logged(bin: &Path, args: &[String]) -> (Child, TempFile) {
    let log = TempFile::reserve("log", "log");
    let f = File::create(&log.path).expect("create log file");
    let f2 = f.try_clone().expect("clone log fd");
    let child = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(f))
        .stderr(Stdio::from(f2))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {}: {}", bin.display(), e));
    (child, log)
}

/// Wait until `addr` accepts a TCP connection, or the child exits, or the deadline passes.
/// Returns true when ready.
pub fn wait_accepting(child: &mut Child, addr: &str, timeout: Duration) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if let Ok(s) = TcpStream::connect(addr) {
            drop(s);
            return true;
        }
        thread::sleep(Duration::from_millis(20));
    }
    false
}

impl Server {
    /// Start the server under test with `-a 127.0.0.1 -p <port> args...`.
    pub fn start(args: &[&str]) -> Server {
        Server::start_with(&tern_bin(), None, args)
    }

    /// Start the server under test with a config file (`-c <file>`) plus args.
    pub fn start_conf(conf: &str, args: &[&str]) -> Server {
        Server::start_with(&tern_bin(), Some(conf), args)
    }

    /// Start `bin` (tern or the reference) on a free loopback port.
    pub fn start_with(bin: &Path, conf: Option<&str>, args: &[&str]) -> Server {
        Server::start_until(bin, conf, args, |child, port| {
            wait_accepting(child, &format!("127.0.0.1:{}", port), DEADLINE)
        })
    }

    /// Like `start_with`, but readiness is seen in /proc/net/tcp{,6} (the client port and every
    /// port in `also` listening) instead of by connecting, so the server never sees a probe
    /// connection (which would show in its connection counters and closed-connection list).
    pub fn start_quiet(bin: &Path, conf: Option<&str>, args: &[&str], also: &[u16]) -> Server {
        Server::start_until(bin, conf, args, |child, port| {
            let end = Instant::now() + DEADLINE * 2;
            while Instant::now() < end {
                if let Ok(Some(_)) = child.try_wait() {
                    return false;
                }
                if is_listening(port) && also.iter().all(|p| is_listening(*p)) {
                    return true;
                }
                thread::sleep(Duration::from_millis(20));
            }
            false
        })
    }

    /// Starts `bin -a 127.0.0.1 -p <free port> [-c conf] args...` until `ready` says it is up,
    /// with a fresh port for each of four attempts (a port can be lost to a race).
    fn start_until(
        bin: &Path,
        conf: Option<&str>,
        args: &[&str],
        ready: impl Fn(&mut Child, u16) -> bool,
    ) -> Server {
        let mut last_log = String::new();
        for _attempt in 0..4 {
            let port = free_port();
            let conf_file = conf.map(write_config);
            let mut full: Vec<String> = vec![
                "-a".into(),
                "127.0.0.1".into(),
                "-p".into(),
                port.to_string(),
            ];
            if let Some(c) = &conf_file {
                full.push("-c".into());
                full.push(c.path.to_string_lossy().into_owned());
            }
            full.extend(args.iter().map(|s| s.to_string()));
            let (mut child, log) = spawn_logged(bin, &full);
            if ready(&mut child, port) {
                return Server {
                    child,
                    port,
                    bin: bin.to_path_buf(),
                    log_path: log.path.clone(),
                    _log: log,
                    _conf: conf_file,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
            last_log = log.read();
        }
        panic!(
            "server {} {:?} did not start; log:\n{}",
            bin.display(),
            args,
            last_log
        );
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the server wrote to stdout/stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Connect and read the INFO line.
    pub fn client(&self) -> Client {
        Client::connect(self.port)
    }

    /// Connect without reading anything.
    pub fn raw(&self) -> Client {
        Client::connect_raw(self.port)
    }

    /// Send a signal by name ("INT", "TERM") with the `kill` utility.
    pub fn signal(&self, sig: &str) {
        send_signal(self.pid(), sig);
    }

    /// Wait for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_child(&mut self.child, timeout)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Some socket of this machine listens on TCP `port` (from /proc/net/tcp and tcp6).
pub fn is_listening(port: u16) -> bool {
    let want = format!(":{:04X}", port);
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|f| {
        std::fs::read_to_string(f)
            .unwrap_or_default()
            .lines()
            .skip(1)
            .any(|l| {
                let mut it = l.split_whitespace();
                let local = it.nth(1).unwrap_or("");
                let state = it.nth(1).unwrap_or("");
                local.ends_with(&want) && state == "0A"
            })
    })
}

pub fn send_signal(pid: u32, sig: &str) {
    let st = Command::new("kill")
        .arg(format!("-{}", sig))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(st.success(), "kill -{} {} failed", sig, pid);
}

pub fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let end = Instant::now() + timeout;
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        if Instant::now() >= end {
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------------------------------------
// Raw client

/// A raw protocol client with a receive buffer. The server's own `PING\r\n` is kept out of
/// `rx` unless `keep_pings` is set, and answered with `PONG\r\n` unless `answer_pings` is off:
/// a server PING comes when the server's timer says so (about 2 s after connecting), so a test
/// that sees it races it.
pub struct Client {
    pub stream: TcpStream,
    /// Received but not yet consumed bytes.
    pub rx: Vec<u8>,
    /// The server closed (EOF or reset).
    pub closed: bool,
    /// The INFO line (JSON part) read by `connect`.
    pub info: String,
    /// Show the server's PINGs in `rx` (and leave them unanswered): for tests of PINGs.
    pub keep_pings: bool,
    /// Answer the server's PINGs that are kept out of `rx`. Scripts turn this off so that a
    /// connection carries only the script's bytes: an answer could complete a frame the server
    /// wrongly waits on, and hide that wait (with the default 2-minute ping interval an
    /// unanswered PING closes nothing within a test).
    pub answer_pings: bool,
    scan: PingScan,
}

/// Where the PING filter stands in the server's byte stream: a server PING is a whole
/// `PING\r\n` line, never bytes inside a MSG/HMSG/RMSG payload. Bytes pass through as they
/// arrive, except a line start that may still become `PING\r\n`.
#[derive(Default)]
struct PingScan {
    /// The current line so far, while it may be a PING or a message line (whose size tells
    /// how many payload bytes follow).
    line: Vec<u8>,
    /// The current line is neither: its bytes pass without being kept.
    plain: bool,
    /// How many bytes of `line` are held back (it is still a prefix of `PING\r\n`).
    held: usize,
    /// Payload bytes (with their CRLF) still to pass before the next line.
    skip: usize,
}

impl PingScan {
    /// Moves `data` to `out`, minus server PINGs unless `keep`; returns how many were taken.
    fn feed(&mut self, mut data: &[u8], keep: bool, out: &mut Vec<u8>) -> usize {
        let mut pings = 0;
        while !data.is_empty() {
            if self.skip > 0 || self.plain {
                // Inside a payload or an uninteresting line: pass up to its end at once.
                let n = if self.skip > 0 {
                    self.skip.min(data.len())
                } else {
                    data.iter()
                        .position(|&b| b == b'\n')
                        .map_or(data.len(), |i| i + 1)
                };
                out.extend_from_slice(&data[..n]);
                if self.skip > 0 {
                    self.skip -= n;
                } else if data[n - 1] == b'\n' {
                    self.plain = false;
                }
                data = &data[n..];
                continue;
            }
            let b = data[0];
            data = &data[1..];
            self.line.push(b);
            if !keep && b"PING\r\n".starts_with(&self.line) {
                self.held += 1;
                if self.line.len() == 6 {
                    pings += 1;
                    self.line.clear();
                    self.held = 0;
                }
                continue;
            }
            if self.held > 0 {
                out.extend_from_slice(&self.line);
                self.held = 0;
            } else {
                out.push(b);
            }
            if b == b'\n' {
                self.skip = message_size(&self.line).map_or(0, |n| n + 2);
                self.line.clear();
            } else if self.line.len() >= 5 && !is_msg_line(&self.line) {
                self.plain = true;
                self.line.clear();
            }
        }
        pings
    }

    /// Bytes held back when the stream ends (they were not a PING after all).
    fn flush(&mut self, out: &mut Vec<u8>) {
        if self.held > 0 {
            out.extend_from_slice(&self.line[..self.held]);
            self.held = 0;
            self.line.clear();
        }
    }
}

/// The line starts like a message from a server (MSG, HMSG, RMSG) with a payload.
fn is_msg_line(line: &[u8]) -> bool {
    line.starts_with(b"MSG ") || line.starts_with(b"HMSG ") || line.starts_with(b"RMSG ")
}

/// The payload size of a message line (its last argument), or None for any other line.
fn message_size(line: &[u8]) -> Option<usize> {
    if !is_msg_line(line) {
        return None;
    }
    let text = String::from_utf8_lossy(line);
    text.split_whitespace().last()?.parse().ok()
}

impl Client {
    pub fn connect_raw(port: u16) -> Client {
        Client::connect_addr(&format!("127.0.0.1:{}", port))
    }

    pub fn connect_addr(addr: &str) -> Client {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {}: {}", addr, e));
        stream.set_nodelay(true).unwrap();
        Client::from_stream(stream)
    }

    /// A client on a connected socket (e.g. one accepted from a server dialling out).
    pub fn from_stream(stream: TcpStream) -> Client {
        Client {
            stream,
            rx: Vec::new(),
            closed: false,
            info: String::new(),
            keep_pings: false,
            answer_pings: true,
            scan: PingScan::default(),
        }
    }

    /// Connect and consume the INFO line; `info` holds its JSON.
    pub fn connect(port: u16) -> Client {
        let mut c = Client::connect_raw(port);
        c.read_info();
        c
    }

    /// Read the INFO line (`INFO {json} \r\n`) and keep its JSON in `self.info`.
    pub fn read_info(&mut self) {
        let line = self.expect_line();
        assert!(
            line.starts_with("INFO {") && line.ends_with("} \r\n"),
            "bad INFO line: {:?}",
            line
        );
        self.info = line["INFO ".len()..line.len() - 3].to_string();
    }

    pub fn send(&mut self, data: impl AsRef<[u8]>) {
        // Errors (the server may already have closed) are not the client's business here.
        let _ = self.stream.write_all(data.as_ref());
    }

    /// One read with a timeout. Returns number of bytes read (0 on timeout or close).
    fn fill(&mut self, timeout: Duration) -> usize {
        if self.closed {
            return 0;
        }
        let t = if timeout.is_zero() {
            Duration::from_millis(1)
        } else {
            timeout
        };
        self.stream.set_read_timeout(Some(t)).unwrap();
        let mut buf = [0u8; 65536];
        match self.stream.read(&mut buf) {
            Ok(0) => {
                self.closed = true;
                self.scan.flush(&mut self.rx);
                0
            }
            Ok(n) => {
                let pings = self.scan.feed(&buf[..n], self.keep_pings, &mut self.rx);
                for _ in 0..pings * usize::from(self.answer_pings) {
                    self.send("PONG\r\n");
                }
                n
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => 0,
            Err(e) if e.kind() == ErrorKind::Interrupted => 0,
            Err(_) => {
                self.closed = true;
                self.scan.flush(&mut self.rx);
                0
            }
        }
    }

    /// Read until `pred(rx)` holds, the connection closes or the timeout passes.
    pub fn read_until(&mut self, timeout: Duration, mut pred: impl FnMut(&[u8]) -> bool) -> bool {
        let end = Instant::now() + timeout;
        loop {
            if pred(&self.rx) {
                return true;
            }
            let now = Instant::now();
            if self.closed || now >= end {
                return false;
            }
            self.fill((end - now).min(Duration::from_millis(100)));
        }
    }

    /// Expect exactly these bytes next (waits up to DEADLINE), and consume them.
    pub fn expect(&mut self, want: impl AsRef<[u8]>) {
        let want = want.as_ref();
        self.read_until(DEADLINE, |rx| {
            rx.len() >= want.len() || !want.starts_with(rx)
        });
        let n = want.len().min(self.rx.len());
        assert!(
            self.rx.len() >= want.len() && &self.rx[..n] == want,
            "expected {:?}, got {:?}{}",
            esc(want),
            esc(&self.rx),
            if self.closed { " <closed>" } else { "" }
        );
        self.rx.drain(..want.len());
    }

    /// Read and consume one CRLF-terminated line (panics after DEADLINE).
    pub fn expect_line(&mut self) -> String {
        self.read_until(DEADLINE, |rx| find(rx, b"\r\n").is_some());
        let pos = find(&self.rx, b"\r\n").unwrap_or_else(|| {
            panic!(
                "no line received: {:?} closed={}",
                esc(&self.rx),
                self.closed
            )
        });
        let line: Vec<u8> = self.rx.drain(..pos + 2).collect();
        String::from_utf8_lossy(&line).into_owned()
    }

    /// Expect the server to close with nothing more sent (EOF or reset within DEADLINE).
    pub fn expect_closed(&mut self) {
        self.read_until(DEADLINE, |rx| !rx.is_empty());
        if !self.closed {
            self.read_until(DEADLINE, |_| false);
        }
        assert!(
            self.rx.is_empty(),
            "expected close, got data {:?}",
            esc(&self.rx)
        );
        assert!(self.closed, "connection not closed within {:?}", DEADLINE);
    }

    /// Expect nothing to arrive (and no close) for `ms` milliseconds.
    pub fn expect_nothing(&mut self, ms: u64) {
        self.read_until(Duration::from_millis(ms), |rx| !rx.is_empty());
        assert!(
            self.rx.is_empty(),
            "expected nothing, got {:?}",
            esc(&self.rx)
        );
        assert!(
            !self.closed,
            "expected connection to stay open, but it was closed"
        );
    }

    /// Read everything until the server closes (or `timeout`); returns (bytes, closed).
    pub fn read_to_close(&mut self, timeout: Duration) -> (Vec<u8>, bool) {
        self.read_until(timeout, |_| false);
        (std::mem::take(&mut self.rx), self.closed)
    }

    /// Send PING and expect PONG next.
    pub fn ping_pong(&mut self) {
        self.send("PING\r\n");
        self.expect("PONG\r\n");
    }

    /// Half-close our side (no more writes).
    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    /// Waits (up to DEADLINE) until the server has read everything sent so far, or closed its
    /// end; false if it did not. Without sock_diag it only pauses a moment.
    pub fn wait_server_read(&self) -> bool {
        let end = Instant::now() + DEADLINE;
        loop {
            match crate::sockdiag::server_unread(&self.stream) {
                Some(0) => return true,
                None => {
                    if !sockdiag_works() {
                        thread::sleep(Duration::from_millis(2));
                    }
                    return true;
                }
                Some(_) if Instant::now() >= end => return false,
                Some(_) => thread::sleep(Duration::from_micros(100)),
            }
        }
    }

    /// Ends the connection once the server has seen it end: our FIN, then its close (EOF, up
    /// to DEADLINE), then a close that leaves no TIME_WAIT socket behind (SO_LINGER 0), so
    /// that thousands of short test connections do not pile up in the kernel's tables.
    pub fn finish(mut self) {
        if !self.closed {
            self.shutdown_write();
            self.read_until(DEADLINE, |_| false);
        }
        let off = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        use std::os::fd::AsRawFd;
        // SAFETY: setsockopt on the socket this client owns, with a live linger value.
        unsafe {
            libc::setsockopt(
                self.stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                &off as *const libc::linger as *const libc::c_void,
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            );
        }
    }
}

/// Whether sock_diag answers on this machine (asked once, about a connection made for it).
fn sockdiag_works() -> bool {
    static WORKS: OnceLock<bool> = OnceLock::new();
    *WORKS.get_or_init(|| {
        let Ok(l) = TcpListener::bind("127.0.0.1:0") else {
            return false;
        };
        let Ok(addr) = l.local_addr() else {
            return false;
        };
        let Ok(s) = TcpStream::connect(addr) else {
            return false;
        };
        let works = crate::sockdiag::server_unread(&s).is_some();
        if !works {
            eprintln!("note: no sock_diag: split writes are separated by a pause only");
        }
        works
    })
}

// ---------------------------------------------------------------------------------------------
// Small byte helpers

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

pub fn count(hay: &[u8], needle: &[u8]) -> usize {
    if needle.is_empty() || hay.len() < needle.len() {
        return 0;
    }
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

/// Printable rendering: UTF-8 text kept, other bytes as \xNN.
pub fn esc(b: &[u8]) -> String {
    let mut s = String::new();
    for chunk in b.utf8_chunks() {
        s.push_str(chunk.valid());
        for x in chunk.invalid() {
            s.push_str(&format!("\\x{:02x}", x));
        }
    }
    s
}

// ---------------------------------------------------------------------------------------------
// Tiny JSON key extractor (top-level object only)

/// Parse the top-level object of `json` into (key, raw value text) pairs, in order.
pub fn json_fields(json: &str) -> Vec<(String, String)> {
    let b = json.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    skip_ws(b, &mut i);
    assert!(i < b.len() && b[i] == b'{', "not a JSON object: {}", json);
    i += 1;
    loop {
        skip_ws(b, &mut i);
        if i >= b.len() {
            panic!("unterminated JSON object: {}", json);
        }
        if b[i] == b'}' {
            break;
        }
        if b[i] == b',' {
            i += 1;
            continue;
        }
        let ks = i;
        skip_value(b, &mut i);
        let key = unquote(&json[ks..i]);
        skip_ws(b, &mut i);
        assert!(i < b.len() && b[i] == b':', "expected ':' in {}", json);
        i += 1;
        skip_ws(b, &mut i);
        let vs = i;
        skip_value(b, &mut i);
        out.push((key, json[vs..i].to_string()));
    }
    out
}

/// Sorted key set of a JSON object.
pub fn json_keys(json: &str) -> Vec<String> {
    let mut k: Vec<String> = json_fields(json).into_iter().map(|(k, _)| k).collect();
    k.sort();
    k
}

/// Raw value text of `key` (strings keep their quotes; use `json_str` for the content).
pub fn json_get(json: &str, key: &str) -> Option<String> {
    json_fields(json)
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

/// String value of `key`, unquoted.
pub fn json_str(json: &str, key: &str) -> Option<String> {
    json_get(json, key).map(|v| unquote(&v))
}

fn unquote(s: &str) -> String {
    let s = s.trim();
    if s.len() >= 2 && s.starts_with('"') && s.ends_with('"') {
        let inner = &s[1..s.len() - 1];
        let mut out = String::new();
        let mut it = inner.chars();
        while let Some(c) = it.next() {
            if c == '\\' {
                match it.next() {
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some('r') => out.push('\r'),
                    Some(o) => out.push(o),
                    None => {}
                }
            } else {
                out.push(c);
            }
        }
        out
    } else {
        s.to_string()
    }
}

fn skip_ws(b: &[u8], i: &mut usize) {
    while *i < b.len() && (b[*i] as char).is_ascii_whitespace() {
        *i += 1;
    }
}

fn skip_value(b: &[u8], i: &mut usize) {
    if *i >= b.len() {
        return;
    }
    match b[*i] {
        b'"' => {
            *i += 1;
            while *i < b.len() {
                match b[*i] {
                    b'\\' => *i += 2,
                    b'"' => {
                        *i += 1;
                        return;
                    }
                    _ => *i += 1,
                }
            }
        }
        b'{' | b'[' => {
            let mut depth = 0i32;
            while *i < b.len() {
                match b[*i] {
                    b'"' => {
                        skip_value(b, i);
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            *i += 1;
                            return;
                        }
                    }
                    _ => {}
                }
                *i += 1;
            }
        }
        _ => {
            while *i < b.len()
                && !matches!(b[*i], b',' | b'}' | b']')
                && !(b[*i] as char).is_ascii_whitespace()
            {
                *i += 1;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Deterministic PRNG for chunking

pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E3779B97F4A7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

// ---------------------------------------------------------------------------------------------
// Scripts and transcripts

/// How a Send step is written to the socket.
#[derive(Clone, Copy, Debug)]
pub enum Chunking {
    /// One write.
    Whole,
    /// One byte per write, with a short sleep after each.
    Bytewise,
    /// Random chunk sizes 1..=max, with a short sleep after each, from a fixed seed.
    Random { seed: u64, max: usize },
}

#[derive(Clone)]
enum Step {
    Open(usize),
    Send(usize, Vec<u8>),
    Sync(usize),
    WaitClose(usize),
    WaitFor(usize, Vec<u8>),
    Sleep(u64),
}

impl std::fmt::Debug for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Open(c) => write!(f, "open({})", c),
            Step::Send(c, d) => write!(f, "send({}, {:?})", c, esc(d)),
            Step::Sync(c) => write!(f, "sync({})", c),
            Step::WaitClose(c) => write!(f, "wait_close({})", c),
            Step::WaitFor(c, d) => write!(f, "wait_for({}, {:?})", c, esc(d)),
            Step::Sleep(ms) => write!(f, "sleep({})", ms),
        }
    }
}

/// A sequence of steps over one or more numbered connections (opened on first use, in order of
/// first use; each open waits for the INFO line).
#[derive(Clone, Debug)]
pub struct Script {
    steps: Vec<Step>,
    chunking: Chunking,
    /// Its connections show the server's PINGs (see `Client::keep_pings`); otherwise they are
    /// dropped from the transcript, unanswered (`Client::answer_pings`).
    keep_pings: bool,
    /// Why the script is checked only as written (not replayed split), if it is.
    whole_only: Option<&'static str>,
}

/// What one connection received (INFO normalised) and whether the server closed it.
#[derive(Clone, Debug, PartialEq)]
pub struct ConnTranscript {
    pub data: Vec<u8>,
    pub closed: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Transcript {
    pub conns: Vec<ConnTranscript>,
}

impl Transcript {
    /// One string per connection: received bytes (escaped) + `<closed>` if closed.
    pub fn render(&self) -> Vec<String> {
        self.conns
            .iter()
            .map(|c| format!("{}{}", esc(&c.data), if c.closed { CLOSED } else { "" }))
            .collect()
    }
}

impl Default for Script {
    fn default() -> Self {
        Script::new()
    }
}

impl Script {
    pub fn new() -> Script {
        Script {
            steps: Vec::new(),
            chunking: Chunking::Whole,
            keep_pings: false,
            whole_only: None,
        }
    }
    /// Open connection `c` now (otherwise it is opened on its first step).
    pub fn open(mut self, c: usize) -> Script {
        self.steps.push(Step::Open(c));
        self
    }
    /// Send raw bytes on connection `c`.
    pub fn send(mut self, c: usize, data: impl AsRef<[u8]>) -> Script {
        self.steps.push(Step::Send(c, data.as_ref().to_vec()));
        self
    }
    /// Send `PING\r\n` on `c` and wait for all PONGs expected so far on `c` (one per sync and one
    /// per line starting with PING sent). Proceeds without failing after DEADLINE or on close.
    pub fn sync(mut self, c: usize) -> Script {
        self.steps.push(Step::Sync(c));
        self
    }
    /// Wait (up to DEADLINE, without failing) for the server to close `c`.
    pub fn wait_close(mut self, c: usize) -> Script {
        self.steps.push(Step::WaitClose(c));
        self
    }
    /// Wait (up to DEADLINE, without failing) until `c` has received `needle` at least once more
    /// than before this step.
    pub fn wait_for(mut self, c: usize, needle: impl AsRef<[u8]>) -> Script {
        self.steps.push(Step::WaitFor(c, needle.as_ref().to_vec()));
        self
    }
    pub fn sleep(mut self, ms: u64) -> Script {
        self.steps.push(Step::Sleep(ms));
        self
    }
    /// Show the server's own PINGs in the transcript (by default they are dropped from it):
    /// for tests of those PINGs.
    pub fn keep_pings(mut self) -> Script {
        self.keep_pings = true;
        self
    }
    /// Check this script only as written, not replayed split (`Pair::check`): for a reply that
    /// depends on how reads split by design, with the reason (a README difference).
    pub fn whole_only(mut self, reason: &'static str) -> Script {
        self.whole_only = Some(reason);
        self
    }
    /// The same script with every Send written in the given chunking.
    pub fn chunked(&self, chunking: Chunking) -> Script {
        Script {
            chunking,
            ..self.clone()
        }
    }

    /// Run against a server on 127.0.0.1:port.
    pub fn run(&self, port: u16) -> Transcript {
        self.run_timed(port).0
    }

    /// `run`, also returning how long the steps took (the final wait for quiet aside): what
    /// one more run of this script costs.
    pub fn run_timed(&self, port: u16) -> (Transcript, Duration) {
        self.run_with(port, None)
    }

    fn run_with(&self, port: u16, replay: Option<&Replay>) -> (Transcript, Duration) {
        let started = Instant::now();
        let mut conns: Vec<Option<Client>> = Vec::new();
        let keep_pings = self.keep_pings;
        let ensure = |conns: &mut Vec<Option<Client>>, c: usize| {
            while conns.len() <= c {
                conns.push(None);
            }
            if conns[c].is_none() {
                let mut cl = Client::connect_raw(port);
                cl.keep_pings = keep_pings;
                cl.answer_pings = false;
                // The greeting is always complete before anything is sent.
                cl.read_until(DEADLINE, |rx| find(rx, b"\r\n").is_some());
                conns[c] = Some(cl);
            }
        };
        let mut pongs_due: Vec<usize> = Vec::new();
        for (i, step) in self.steps.iter().enumerate() {
            let c = step.conn();
            if let Some(c) = c {
                ensure(&mut conns, c);
                pongs_due.resize(conns.len(), 0);
            }
            let cl = c.and_then(|c| conns[c].as_mut());
            match (step, cl) {
                (Step::Send(c, data), Some(cl)) => {
                    pongs_due[*c] += count_pings(data);
                    match replay.and_then(|r| r.cuts[i]) {
                        Some(cut) => write_split(cl, data, cut),
                        None => write_chunked(cl, data, self.chunking),
                    }
                }
                (Step::Sync(c), Some(cl)) => {
                    pongs_due[*c] += 1;
                    let want = pongs_due[*c];
                    cl.send("PING\r\n");
                    cl.read_until(DEADLINE, |rx| count(rx, b"PONG\r\n") >= want);
                }
                (Step::WaitClose(_), Some(cl)) => {
                    cl.read_until(DEADLINE, |_| false);
                }
                (Step::WaitFor(_, needle), Some(cl)) => {
                    let before = count(&cl.rx, needle);
                    cl.read_until(DEADLINE, |rx| count(rx, needle) > before);
                }
                (Step::Sleep(ms), _) => sleep_reading(&mut conns, Duration::from_millis(*ms)),
                _ => {}
            }
        }
        let took = started.elapsed();
        match replay {
            None => drain(&mut conns, &pongs_due),
            Some(r) => reach(&mut conns, r.want, &self.synced_last()),
        }
        let conns = conns
            .into_iter()
            .map(|c| match c {
                Some(c) => {
                    let t = ConnTranscript {
                        data: normalize_info(&c.rx),
                        closed: c.closed,
                    };
                    c.finish();
                    t
                }
                None => ConnTranscript {
                    data: Vec::new(),
                    closed: false,
                },
            })
            .collect();
        (Transcript { conns }, took)
    }

    /// Per connection: its last step is a sync (it stands at a frame boundary, answering).
    fn synced_last(&self) -> Vec<bool> {
        let mut last = Vec::new();
        for step in &self.steps {
            if let Some(c) = step.conn() {
                if last.len() <= c {
                    last.resize(c + 1, false);
                }
                last[c] = matches!(step, Step::Sync(_));
            }
        }
        last
    }

    /// The split replays of this script: per run, where each step's Send is cut (`None`: sent
    /// whole). Run `j` cuts every Send at its `j`th cut point, so every cut point of every Send
    /// is taken by some run, and there are as many runs as the longest list has points.
    fn split_runs(&self) -> Vec<Vec<Option<usize>>> {
        let points: Vec<Vec<usize>> = self
            .steps
            .iter()
            .map(|s| match s {
                Step::Send(_, d) => cut_points(d),
                _ => Vec::new(),
            })
            .collect();
        let runs = points.iter().map(Vec::len).max().unwrap_or(0);
        (0..runs)
            .map(|j| points.iter().map(|p| p.get(j).copied()).collect())
            .collect()
    }
}

impl Step {
    /// The connection the step acts on.
    fn conn(&self) -> Option<usize> {
        match self {
            Step::Open(c) | Step::Send(c, _) | Step::Sync(c) | Step::WaitClose(c) => Some(*c),
            Step::WaitFor(c, _) => Some(*c),
            Step::Sleep(_) => None,
        }
    }
}

/// A split replay of a script: where each step's Send is cut, and the transcript of the
/// whole-write run, which the replay must reproduce.
struct Replay<'a> {
    cuts: &'a [Option<usize>],
    want: &'a Transcript,
}

/// Pauses for `d` while reading every connection (a client that reads is what the server
/// sees in every other step).
fn sleep_reading(conns: &mut [Option<Client>], d: Duration) {
    let end = Instant::now() + d;
    loop {
        let now = Instant::now();
        if now >= end {
            return;
        }
        let open: Vec<&mut Client> = conns.iter_mut().flatten().filter(|c| !c.closed).collect();
        if open.is_empty() {
            thread::sleep(end - now);
            return;
        }
        let slice = (end - now).min(Duration::from_millis(20)) / open.len() as u32;
        for cl in open {
            cl.fill(slice);
        }
    }
}

/// The end of a whole-write run: every PING sent answered (or the connection closed), then
/// every connection quiet for QUIET.
fn drain(conns: &mut [Option<Client>], pongs: &[usize]) {
    for (c, cl) in conns.iter_mut().enumerate() {
        if let Some(cl) = cl {
            let want = pongs.get(c).copied().unwrap_or(0);
            cl.read_until(DEADLINE, |rx| count(rx, b"PONG\r\n") >= want);
        }
    }
    let mut last = Instant::now();
    let end = last + DEADLINE * 2;
    loop {
        let mut any = false;
        for cl in conns.iter_mut().flatten() {
            if !cl.closed && cl.fill(Duration::from_millis(5)) > 0 {
                any = true;
            }
        }
        let now = Instant::now();
        if any {
            last = now;
        }
        if now.duration_since(last) >= QUIET
            || now >= end
            || conns.iter().flatten().all(|c| c.closed)
        {
            break;
        }
    }
}

/// The end of a split replay: each connection read until it holds what the whole-write run
/// received (or cannot any more), then until closed if that run saw a close. Instead of
/// waiting for quiet, a connection whose last step was a sync gets one more PING, which must
/// be answered by a PONG with nothing before it (`expected_replay`).
fn reach(conns: &mut [Option<Client>], want: &Transcript, synced_last: &[bool]) {
    let none = ConnTranscript {
        data: Vec::new(),
        closed: false,
    };
    for (c, cl) in conns.iter_mut().enumerate() {
        let Some(cl) = cl else { continue };
        let w = want.conns.get(c).unwrap_or(&none);
        let mut target = w.data.clone();
        let upto = |rx: &[u8], target: &[u8]| {
            let n = normalize_info(rx);
            n.len() >= target.len() || !target.starts_with(&n)
        };
        cl.read_until(DEADLINE, |rx| upto(rx, &target));
        if synced_last.get(c) == Some(&true) && !w.closed && normalize_info(&cl.rx) == target {
            target.extend_from_slice(b"PONG\r\n");
            cl.send("PING\r\n");
            cl.read_until(DEADLINE, |rx| upto(rx, &target));
        }
        if w.closed {
            cl.read_until(DEADLINE, |_| false);
        }
    }
}

/// What a split replay must give: the whole-write transcript, plus the PONG of `reach`'s
/// extra PING on connections that end with a sync and stay open.
fn expected_replay(want: &Transcript, synced_last: &[bool]) -> Transcript {
    let mut t = want.clone();
    for (c, conn) in t.conns.iter_mut().enumerate() {
        if synced_last.get(c) == Some(&true) && !conn.closed {
            conn.data.extend_from_slice(b"PONG\r\n");
        }
    }
    t
}

/// Where a split replay cuts one send. Every byte of a short one; of a long one (a long
/// payload or line, where a cut does what its neighbours do) the first and last 32 bytes,
/// within 2 bytes of each CR, LF, space or tab (the edges of lines, arguments and payloads,
/// at most 192 of them, evenly chosen) and 15 evenly spaced points.
fn cut_points(data: &[u8]) -> Vec<usize> {
    const SHORT: usize = 256;
    let n = data.len();
    if n <= SHORT {
        return (1..n).collect();
    }
    let mut edges: Vec<usize> = Vec::new();
    for (i, b) in data.iter().enumerate() {
        if matches!(b, b'\r' | b'\n' | b' ' | b'\t') {
            edges.extend((i.saturating_sub(2)..=i + 2).filter(|&p| p >= 1 && p < n));
        }
    }
    edges.dedup();
    if edges.len() > 192 {
        let k = edges.len();
        edges = (0..192).map(|j| edges[j * k / 192]).collect();
    }
    let mut v: Vec<usize> = (1..=32).chain(n - 32..n).chain(edges).collect();
    v.extend((1..16).map(|k| k * n / 16));
    v.sort_unstable();
    v.dedup();
    v
}

/// Writes `data` in two pieces cut at `cut`, the second only once the server has read the
/// first (see `sockdiag`), so the server gets them in two reads.
fn write_split(cl: &mut Client, data: &[u8], cut: usize) {
    cl.send(&data[..cut]);
    cl.wait_server_read();
    cl.send(&data[cut..]);
}

/// Control lines (in one send) that start with a case-insensitive PING: each should get a PONG.
/// PUB/HPUB payloads are skipped using their declared size.
fn count_pings(data: &[u8]) -> usize {
    let mut n = 0;
    let mut i = 0;
    while i < data.len() {
        let nl = match data[i..].iter().position(|&b| b == b'\n') {
            Some(p) => i + p,
            None => data.len(),
        };
        let line = &data[i..nl];
        let upper: Vec<u8> = line
            .iter()
            .take(5)
            .map(|b| b.to_ascii_uppercase())
            .collect();
        if upper.starts_with(b"PING") {
            n += 1;
        }
        let mut next = nl + 1;
        if upper.starts_with(b"PUB ")
            || upper.starts_with(b"PUB\t")
            || upper.starts_with(b"HPUB ")
            || upper.starts_with(b"HPUB\t")
        {
            let text = String::from_utf8_lossy(line);
            if let Some(Ok(size)) = text.split_whitespace().last().map(|t| t.parse::<usize>()) {
                next += size + 2;
            }
        }
        i = next;
    }
    n
}

fn write_chunked(cl: &mut Client, data: &[u8], chunking: Chunking) {
    match chunking {
        Chunking::Whole => cl.send(data),
        Chunking::Bytewise => {
            for b in data {
                cl.send([*b]);
                thread::sleep(Duration::from_micros(700));
            }
        }
        Chunking::Random { seed, max } => {
            let mut rng = Rng::new(seed ^ data.len() as u64);
            let mut i = 0;
            while i < data.len() {
                let n = (1 + rng.below(max as u64) as usize).min(data.len() - i);
                cl.send(&data[i..i + n]);
                i += n;
                thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

/// Replace a leading `INFO {json} \r\n` with `INFO [sorted,keys]\r\n`. Anything else (an INFO
/// without the space before CRLF, no INFO at all) is left as is so the difference shows.
pub fn normalize_info(data: &[u8]) -> Vec<u8> {
    if data.starts_with(b"INFO {") {
        if let Some(pos) = find(data, b"\r\n") {
            let line = &data[..pos];
            if line.ends_with(b"} ") {
                let json = String::from_utf8_lossy(&line[5..line.len() - 1]).into_owned();
                let keys = json_keys(&json);
                let mut out = format!("INFO [{}]\r\n", keys.join(",")).into_bytes();
                out.extend_from_slice(&data[pos + 2..]);
                return out;
            }
        }
    }
    data.to_vec()
}

// ---------------------------------------------------------------------------------------------
// Differential pair

/// The server under test plus, when available, the reference started with the same args/config.
pub struct Pair {
    pub tern: Server,
    pub reference: Option<Server>,
    /// How tern was started, for the extra copies split replays run on.
    conf: Option<String>,
    args: Vec<String>,
    /// Extra tern servers, started on the first split replay that can use them.
    spares: Mutex<Vec<Server>>,
}

/// Split replays of slow scripts (mostly waiting) run on this many tern servers at once (the
/// pair's and spares).
const SPLIT_WORKERS: usize = 4;
/// What the split replays of one slow script (sleeps, server timers) may take in all.
const SPLIT_SLOW_BUDGET: Duration = Duration::from_secs(4);

impl Pair {
    pub fn start(args: &[&str]) -> Pair {
        Pair::start_conf_opt(None, args)
    }
    pub fn start_conf(conf: &str, args: &[&str]) -> Pair {
        Pair::start_conf_opt(Some(conf), args)
    }
    fn start_conf_opt(conf: Option<&str>, args: &[&str]) -> Pair {
        let tern = Server::start_with(&tern_bin(), conf, args);
        let reference = reference_bin().map(|r| Server::start_with(&r, conf, args));
        Pair {
            tern,
            reference,
            conf: conf.map(str::to_string),
            args: args.iter().map(|a| a.to_string()).collect(),
            spares: Mutex::new(Vec::new()),
        }
    }

    /// Run `script` on both servers (concurrently); tern's transcript must equal `expected`
    /// (one rendered string per connection) and the reference's transcript. Then, for a
    /// script written whole, tern must give the same transcript with its writes split
    /// (`replay_split`).
    pub fn check<E: AsRef<str>>(&self, script: &Script, expected: &[E]) {
        let tport = self.tern.port;
        let rport = self.reference.as_ref().map(|r| r.port);
        let s2 = script.clone();
        let rh = rport.map(|p| thread::spawn(move || s2.run(p)));
        let (whole, took) = script.run_timed(tport);
        let t = whole.render();
        let want: Vec<String> = expected.iter().map(|s| s.as_ref().to_string()).collect();
        if t != want {
            panic!(
                "transcript of the server under test (got) differs from the expectation (want)\n{}\nscript: {}",
                describe_diff(&t, &want),
                clip(&format!("{:?}", script), 3000)
            );
        }
        if let Some(h) = rh {
            let r = h.join().expect("reference run panicked").render();
            if t != r {
                panic!(
                    "server under test (got) and reference nats-server (want) differ\n{}\nscript: {}",
                    describe_diff(&t, &r),
                    clip(&format!("{:?}", script), 3000)
                );
            }
        }
        self.replay_split(script, &whole, took);
    }

    /// Replays `script` against tern with each Send written in two pieces, the second sent
    /// once tern has read the first: at every byte of short sends, at the sampled points of
    /// long ones (`cut_points`). Each replay must reproduce `whole`, tern's transcript of the
    /// script written whole, which took `took`. Replays of a slow script (over 100 ms: sleeps
    /// or server timers) are thinned to SPLIT_SLOW_BUDGET. Skipped for scripts not written
    /// whole (they are split already), `whole_only` ones, and with TERN_SPLIT_REPLAY=0.
    pub fn replay_split(&self, script: &Script, whole: &Transcript, took: Duration) {
        if !matches!(script.chunking, Chunking::Whole)
            || script.whole_only.is_some()
            || std::env::var("TERN_SPLIT_REPLAY").is_ok_and(|v| v == "0")
        {
            return;
        }
        let mut runs = script.split_runs();
        if took > Duration::from_millis(100) && !runs.is_empty() {
            let keep = (SPLIT_SLOW_BUDGET.as_millis() / took.as_millis()) as usize;
            let n = runs.len();
            runs = (0..keep.min(n))
                .map(|j| runs[j * n / keep.min(n)].clone())
                .collect();
        }
        if runs.is_empty() {
            return;
        }
        // Slow runs are few and mostly waiting: one server each. Fast ones keep the CPU busy,
        // so no more at once than there are cores: other tests run meanwhile (a route test
        // starved of CPU has lost a gossip race, see the report on issue 9).
        let cores = thread::available_parallelism().map_or(2, |n| n.get());
        let ports = self.split_ports(match runs.len() {
            n if took > Duration::from_millis(100) => n.min(SPLIT_WORKERS),
            0..=7 => 1,
            n => (n / 8).clamp(1, cores.min(SPLIT_WORKERS)),
        });
        let started = Instant::now();
        let synced = script.synced_last();
        let want = expected_replay(whole, &synced).render();
        let failure: Mutex<Option<String>> = Mutex::new(None);
        thread::scope(|scope| {
            let workers = ports.len();
            for (w, port) in ports.iter().enumerate() {
                let (runs, want, failure) = (&runs, &want, &failure);
                scope.spawn(move || {
                    for cuts in runs.iter().skip(w).step_by(workers) {
                        if failure.lock().unwrap().is_some() {
                            return;
                        }
                        let replay = Replay { cuts, want: whole };
                        let got = script.run_with(*port, Some(&replay)).0.render();
                        if got != *want {
                            let at = describe_cuts(script, cuts);
                            let diff = describe_diff(&got, want);
                            *failure.lock().unwrap() = Some(format!("{at}\n{diff}"));
                        }
                    }
                });
            }
        });
        eprintln!(
            "split replay: {} runs on {} servers in {} ms ({})",
            runs.len(),
            ports.len(),
            started.elapsed().as_millis(),
            thread::current().name().unwrap_or("?")
        );
        if let Some(f) = failure.into_inner().unwrap() {
            panic!(
                "tern replied differently when the writes were split (got) than when they were whole (want)\n{}\nscript: {}",
                f,
                clip(&format!("{:?}", script), 3000)
            );
        }
    }

    /// The ports of `n` tern servers for split replays: the pair's, then spares (started in
    /// parallel the first time they are needed, kept for the pair's later checks).
    fn split_ports(&self, n: usize) -> Vec<u16> {
        let mut spares = self.spares.lock().unwrap();
        let missing = n.saturating_sub(1 + spares.len());
        let conf = self.conf.as_deref();
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        // Started without a probe connection, which a script could meet (max_connections).
        let start = || Server::start_quiet(&tern_bin(), conf, &args, &[]);
        let started: Vec<Server> = thread::scope(|scope| {
            let hs: Vec<_> = (0..missing).map(|_| scope.spawn(start)).collect();
            hs.into_iter()
                .map(|h| h.join().expect("spare server start panicked"))
                .collect()
        });
        spares.extend(started);
        let mut ports = vec![self.tern.port];
        ports.extend(spares.iter().take(n - 1).map(|s| s.port));
        ports
    }
}

/// Where a split replay cut each Send, for a failure message.
fn describe_cuts(script: &Script, cuts: &[Option<usize>]) -> String {
    let mut out = String::from("writes split as:");
    for (step, cut) in script.steps.iter().zip(cuts) {
        if let (Step::Send(c, d), Some(k)) = (step, cut) {
            out.push_str(&format!(
                "\n  conn {c}: {:?} | {:?}",
                clip(&esc(&d[..*k]), 300),
                clip(&esc(&d[*k..]), 300)
            ));
        }
    }
    out
}

fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes)", &s[..end], s.len())
}

/// Per-connection description of the first difference between two rendered transcripts.
pub fn describe_diff(got: &[String], want: &[String]) -> String {
    let mut out = String::new();
    if got.len() != want.len() {
        out.push_str(&format!(
            "connection count: got {}, want {}\n",
            got.len(),
            want.len()
        ));
    }
    for (i, (g, w)) in got.iter().zip(want.iter()).enumerate() {
        if g == w {
            continue;
        }
        if g.len() + w.len() < 1500 {
            out.push_str(&format!("conn {}:\n  got:  {:?}\n  want: {:?}\n", i, g, w));
            continue;
        }
        let (gb, wb) = (g.as_bytes(), w.as_bytes());
        let mut at = gb.iter().zip(wb.iter()).take_while(|(a, b)| a == b).count();
        while !g.is_char_boundary(at) || !w.is_char_boundary(at) {
            at -= 1;
        }
        let mut from = at.saturating_sub(120);
        while !g.is_char_boundary(from) {
            from -= 1;
        }
        out.push_str(&format!(
            "conn {}: first difference at byte {} (lengths got {}, want {})\n  got:  ...{:?}\n  want: ...{:?}\n",
            i,
            at,
            g.len(),
            w.len(),
            clip(&g[from..], 400),
            clip(&w[from..], 400)
        ));
    }
    out
}

/// Convenience: one-connection script from a single send.
pub fn one(data: impl AsRef<[u8]>) -> Script {
    Script::new().send(0, data)
}

/// Convenience: one-connection script from a single send, then wait for the server to close.
pub fn closes(data: impl AsRef<[u8]>) -> Script {
    Script::new().send(0, data).wait_close(0)
}

/// Expected transcript string helper: INFO + text.
pub fn info(rest: &str) -> String {
    format!("{}{}", INFO, rest)
}

/// Expected transcript string helper: INFO + text + closed.
pub fn info_closed(rest: &str) -> String {
    format!("{}{}{}", INFO, rest, CLOSED)
}
