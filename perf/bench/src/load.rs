//! The pub/sub load engine shared by the default mode and `subjects`.
//!
//! * Subscribers: connected and SUBscribed first (one PING/PONG each so the
//!   server has registered the interest), then served by a few mio/epoll
//!   threads that keep reading while publishers write (no deadlock under the
//!   server's flow control) and count MSG frames without copying payloads.
//! * Publishers: one thread each, blocking writes of big batches of whole
//!   `PUB` frames, ended by PING/PONG so everything was accepted.
//! * Loss detection: a subscriber that makes no progress for `timeout`, or
//!   is disconnected, or gets an -ERR, fails the run (with its counts).

use crate::proto::{self, Parser};
use crate::report::Sample;
use mio::net::TcpStream as MioStream;
use mio::{Events, Interest, Poll, Token};
use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Target size of one publisher write().
const BATCH_BYTES: usize = 256 * 1024;
const READ_BUF: usize = 256 * 1024;

/// What a publisher sends.
#[derive(Clone)]
pub enum PubKind {
    /// Every message on one subject.
    Fixed(Vec<u8>),
    /// Message j (global index) goes to `<prefix>.<j % k>`.
    Spread { prefix: Vec<u8>, k: u64 },
}

pub struct SubSpec {
    /// SUB lines sent during the handshake.
    pub subs: Vec<u8>,
    /// Messages this connection must receive.
    pub expected: u64,
}

pub struct LoadCfg {
    /// Where publishers connect.
    pub addr: SocketAddr,
    /// Where subscribers connect (another node of a cluster, or the same server).
    pub sub_addr: SocketAddr,
    /// Messages per publisher (global index ranges are consecutive).
    pub pub_counts: Vec<u64>,
    pub size: usize,
    pub kind: PubKind,
    pub subs: Vec<SubSpec>,
    pub sub_threads: usize,
    pub timeout: Duration,
    /// Server pid to read utime+stime from just before publishing starts and
    /// after every message was delivered.
    pub pid: Option<u32>,
    pub verbose: bool,
}

pub struct LoadResult {
    pub pubs: Vec<Sample>,
    pub subs: Vec<Sample>,
    pub server_cpu_ns: Option<u64>,
    pub setup: Duration,
    pub elapsed: Duration,
}

struct SubConn {
    id: usize,
    stream: MioStream,
    parser: Parser,
    expected: u64,
    first: Option<Instant>,
    last: Instant,
    done_at: Option<Instant>,
    queued: bool,
}

/// Publishers and subscribers on different servers of a cluster: interest crosses the route
/// asynchronously. A probe subject subscribed (after the real subscriptions) on the
/// subscribers' server is published from the publishers' server until it arrives; routes keep
/// interest updates in order, so by then the real subscriptions are known there too.
fn wait_for_route(pub_addr: &SocketAddr, sub_addr: &SocketAddr, timeout: Duration) -> Result<(), String> {
    let probe = format!("_BENCH.probe.{}", std::process::id());
    let mut sub = proto::dial(sub_addr)?;
    let mut sp = proto::handshake(&mut sub, format!("SUB {probe} 1\r\n").as_bytes(), Duration::from_secs(30))?;
    let mut publ = proto::dial(pub_addr)?;
    let mut pp = proto::handshake(&mut publ, b"", Duration::from_secs(30))?;
    sub.set_read_timeout(Some(Duration::from_millis(100))).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        publ.write_all(format!("PUB {probe} 0\r\n\r\nPING\r\n").as_bytes()).map_err(|e| e.to_string())?;
        pp = proto::wait_pong(&mut publ, pp, Duration::from_secs(10))?;
        if let Ok(n) = std::io::Read::read(&mut sub, &mut buf) {
            sp.feed_count(&buf[..n])?;
            if sp.msgs > 0 {
                return Ok(());
            }
        }
    }
    Err(format!("no route from {pub_addr} to {sub_addr}: probe not delivered within {timeout:?}"))
}

pub fn run(cfg: LoadCfg) -> Result<LoadResult, String> {
    let t_setup = Instant::now();
    // --- subscribers: connect all, pipeline the handshakes, then wait PONGs.
    let mut std_subs: Vec<TcpStream> = Vec::with_capacity(cfg.subs.len());
    let mut parsers = Vec::with_capacity(cfg.subs.len());
    for (i, spec) in cfg.subs.iter().enumerate() {
        let mut s = proto::dial(&cfg.sub_addr).map_err(|e| format!("subscriber #{}: {e}", i + 1))?;
        // big SUB sets are written in chunks inside handshake(); small ones are pipelined here
        if spec.subs.len() > (1 << 20) {
            let p = proto::handshake(&mut s, &spec.subs, Duration::from_secs(600))
                .map_err(|e| format!("subscriber #{}: {e}", i + 1))?;
            parsers.push(Some(p));
        } else {
            let mut out = proto::CONNECT.to_vec();
            out.extend_from_slice(&spec.subs);
            out.extend_from_slice(b"PING\r\n");
            s.write_all(&out).map_err(|e| format!("subscriber #{}: write: {e}", i + 1))?;
            parsers.push(None);
        }
        std_subs.push(s);
    }
    for (i, s) in std_subs.iter_mut().enumerate() {
        if parsers[i].is_none() {
            let p = proto::wait_pong(s, Parser::new(), Duration::from_secs(60))
                .map_err(|e| format!("subscriber #{}: {e}", i + 1))?;
            parsers[i] = Some(p);
        }
    }
    if cfg.sub_addr != cfg.addr {
        wait_for_route(&cfg.addr, &cfg.sub_addr, cfg.timeout)?;
    }
    let now = Instant::now();
    let nthreads = cfg.sub_threads.max(1).min(std_subs.len().max(1));
    let mut groups: Vec<Vec<SubConn>> = (0..nthreads).map(|_| Vec::new()).collect();
    for (i, (s, p)) in std_subs.into_iter().zip(parsers).enumerate() {
        s.set_nonblocking(true).map_err(|e| e.to_string())?;
        let p = p.unwrap();
        if p.msgs > 0 {
            return Err(format!("subscriber #{}: got messages before publishing started", i + 1));
        }
        groups[i % nthreads].push(SubConn {
            id: i,
            stream: MioStream::from_std(s),
            parser: p,
            expected: cfg.subs[i].expected,
            first: None,
            last: now,
            done_at: None,
            queued: false,
        });
    }
    let abort = Arc::new(AtomicBool::new(false));
    // First subscriber failure, visible to the main thread while publishers still run
    // (a publisher may be blocked in write() by a server that stopped reading).
    let sub_err: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let mut sub_handles = Vec::new();
    for g in groups.into_iter().filter(|g| !g.is_empty()) {
        let (abort, sub_err) = (abort.clone(), sub_err.clone());
        let timeout = cfg.timeout;
        sub_handles.push(thread::spawn(move || {
            let r = sub_worker(g, timeout, abort);
            if let Err(e) = &r {
                if !e.is_empty() {
                    sub_err.lock().unwrap().get_or_insert_with(|| e.clone());
                }
            }
            r
        }));
    }

    // --- publishers: connect + handshake, then start together.
    let np = cfg.pub_counts.len();
    let ready = Arc::new(Barrier::new(np + 1));
    let go = Arc::new(Barrier::new(np + 1));
    let failed = Arc::new(AtomicBool::new(false));
    let payload = Arc::new(proto::payload(cfg.size));
    let mut pub_handles = Vec::new();
    let mut first_idx = 0u64;
    for (i, &count) in cfg.pub_counts.iter().enumerate() {
        let (ready, go, failed, payload) = (ready.clone(), go.clone(), failed.clone(), payload.clone());
        let kind = cfg.kind.clone();
        let addr = cfg.addr;
        let lo = first_idx;
        first_idx += count;
        pub_handles.push(thread::spawn(move || -> Result<Sample, String> {
            let conn = proto::dial(&addr).and_then(|mut s| proto::handshake(&mut s, b"", Duration::from_secs(30)).map(|p| (s, p)));
            if conn.is_err() {
                failed.store(true, Ordering::SeqCst);
            }
            ready.wait();
            go.wait();
            let (mut s, p) = conn.map_err(|e| format!("publisher #{}: {e}", i + 1))?;
            if failed.load(Ordering::SeqCst) {
                return Err(String::new());
            }
            publish(&mut s, p, &kind, lo, count, &payload).map_err(|e| format!("publisher #{}: {e}", i + 1))
        }));
    }
    ready.wait();
    let setup = t_setup.elapsed();
    let cpu0 = cfg.pid.and_then(proto::proc_cpu_ns);
    let t0 = Instant::now();
    go.wait();

    while !pub_handles.iter().all(|h| h.is_finished()) {
        if let Some(e) = sub_err.lock().unwrap().clone() {
            let stuck = pub_handles.iter().filter(|h| !h.is_finished()).count();
            return Err(format!("{e} ({stuck} publisher(s) still running)"));
        }
        thread::sleep(Duration::from_millis(2));
    }
    let mut pubs = Vec::new();
    let mut err: Option<String> = None;
    for h in pub_handles {
        match h.join() {
            Ok(Ok(s)) => pubs.push(s),
            Ok(Err(e)) => {
                if err.is_none() && !e.is_empty() {
                    err = Some(e)
                }
            }
            Err(_) => err = err.or(Some("publisher thread panicked".into())),
        }
    }
    if let Some(e) = err {
        // Let the subscriber threads report where they stood (they stop within ~100 ms).
        abort.store(true, Ordering::SeqCst);
        let mut msg = e;
        for h in sub_handles {
            if let Ok(Err(se)) = h.join() {
                if !se.is_empty() {
                    msg = format!("{msg}; {se}");
                }
            }
        }
        return Err(msg);
    }
    if cfg.verbose {
        eprintln!("publishers done after {:.3}s", t0.elapsed().as_secs_f64());
    }
    let mut subs: Vec<(usize, Sample)> = Vec::new();
    let mut keep_open = Vec::new();
    for h in sub_handles {
        match h.join() {
            Ok(Ok((samples, conns))) => {
                subs.extend(samples);
                keep_open.push(conns);
            }
            Ok(Err(e)) => err = err.or(Some(e)),
            Err(_) => err = err.or(Some("subscriber thread panicked".into())),
        }
    }
    if let Some(e) = err {
        return Err(e);
    }
    let elapsed = t0.elapsed();
    let cpu1 = cfg.pid.and_then(proto::proc_cpu_ns);
    drop(keep_open); // close subscriber connections only after the CPU reading
    subs.sort_by_key(|(i, _)| *i);
    Ok(LoadResult {
        pubs,
        subs: subs.into_iter().map(|(_, s)| s).collect(),
        server_cpu_ns: match (cpu0, cpu1) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a)),
            _ => None,
        },
        setup,
        elapsed,
    })
}

fn publish(s: &mut TcpStream, p: Parser, kind: &PubKind, lo: u64, count: u64, payload: &[u8]) -> Result<Sample, String> {
    let start = Instant::now();
    let wr = |s: &mut TcpStream, b: &[u8]| s.write_all(b).map_err(|e| format!("write: {e}"));
    match kind {
        PubKind::Fixed(subj) => {
            let mut frame = Vec::new();
            proto::push_pub(&mut frame, subj, None, payload);
            let per = (BATCH_BYTES / frame.len()).max(1);
            let mut batch = Vec::with_capacity(per * frame.len());
            for _ in 0..per {
                batch.extend_from_slice(&frame);
            }
            let mut left = count;
            while left >= per as u64 {
                wr(s, &batch)?;
                left -= per as u64;
            }
            wr(s, &batch[..left as usize * frame.len()])?;
        }
        PubKind::Spread { prefix, k } => {
            let mut batch = Vec::with_capacity(BATCH_BYTES + payload.len() + 256);
            let mut subj = Vec::with_capacity(prefix.len() + 24);
            for j in lo..lo + count {
                subj.clear();
                subj.extend_from_slice(prefix);
                subj.push(b'.');
                proto::push_num(&mut subj, j % k);
                proto::push_pub(&mut batch, &subj, None, payload);
                if batch.len() >= BATCH_BYTES {
                    wr(s, &batch)?;
                    batch.clear();
                }
            }
            wr(s, &batch)?;
        }
    }
    wr(s, b"PING\r\n")?;
    proto::wait_pong(s, p, Duration::from_secs(120))?;
    Ok(Sample {
        msgs: count,
        bytes: count * payload.len() as u64,
        start,
        end: Instant::now(),
    })
}

type SubOut = (Vec<(usize, Sample)>, Vec<MioStream>);

fn sub_worker(mut conns: Vec<SubConn>, timeout: Duration, abort: Arc<AtomicBool>) -> Result<SubOut, String> {
    let mut poll = Poll::new().map_err(|e| e.to_string())?;
    for (i, c) in conns.iter_mut().enumerate() {
        poll.registry()
            .register(&mut c.stream, Token(i), Interest::READABLE)
            .map_err(|e| e.to_string())?;
    }
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; READ_BUF];
    let mut ready: VecDeque<usize> = (0..conns.len()).collect();
    for c in conns.iter_mut() {
        c.queued = true;
    }
    let mut remaining = conns.iter().filter(|c| c.expected > 0).count();
    for c in conns.iter_mut().filter(|c| c.expected == 0) {
        c.done_at = Some(c.last);
    }
    let mut last_check = Instant::now();
    while remaining > 0 {
        let wait = if ready.is_empty() { Some(Duration::from_millis(100)) } else { Some(Duration::ZERO) };
        if let Err(e) = poll.poll(&mut events, wait) {
            if e.kind() != ErrorKind::Interrupted {
                return Err(format!("poll: {e}"));
            }
        }
        for ev in events.iter() {
            let i = ev.token().0;
            if !conns[i].queued {
                conns[i].queued = true;
                ready.push_back(i);
            }
        }
        // Serve each ready connection a few reads, round robin, until WouldBlock.
        let mut n = ready.len();
        while n > 0 {
            n -= 1;
            let i = ready.pop_front().unwrap();
            let c = &mut conns[i];
            let mut drained = false;
            for _ in 0..4 {
                match c.stream.read(&mut buf) {
                    Ok(0) => return Err(sub_fail(c, "disconnected by the server")),
                    Ok(k) => {
                        let now = Instant::now();
                        let before = c.parser.msgs;
                        let pings = c.parser.pings;
                        if let Err(e) = c.parser.feed_count(&buf[..k]) {
                            return Err(sub_fail(c, &e));
                        }
                        if c.parser.pings > pings {
                            for _ in pings..c.parser.pings {
                                let _ = c.stream.write(b"PONG\r\n");
                            }
                        }
                        if c.parser.msgs > before {
                            c.last = now;
                            if c.first.is_none() {
                                c.first = Some(now);
                            }
                            if c.parser.msgs > c.expected {
                                return Err(sub_fail(c, "received more messages than were published"));
                            }
                            if c.parser.msgs == c.expected && c.done_at.is_none() {
                                c.done_at = Some(now);
                                remaining -= 1;
                            }
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        drained = true;
                        break;
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(sub_fail(c, &format!("read error: {e}"))),
                }
            }
            if drained {
                c.queued = false;
            } else {
                ready.push_back(i);
            }
        }
        let now = Instant::now();
        if now.duration_since(last_check) >= Duration::from_millis(100) {
            last_check = now;
            if abort.load(Ordering::SeqCst) {
                return Err(match conns.iter().find(|c| c.done_at.is_none()) {
                    Some(c) => sub_fail(c, "run aborted"),
                    None => String::new(),
                });
            }
            for c in conns.iter() {
                if c.done_at.is_none() && now.duration_since(c.last) > timeout {
                    return Err(sub_fail(c, &format!("no message for {}s", timeout.as_secs_f64())));
                }
            }
        }
    }
    let samples = conns
        .iter()
        .map(|c| {
            let end = c.done_at.unwrap();
            (
                c.id,
                Sample {
                    msgs: c.parser.msgs,
                    bytes: c.parser.bytes,
                    start: c.first.unwrap_or(end),
                    end,
                },
            )
        })
        .collect();
    Ok((samples, conns.into_iter().map(|c| c.stream).collect()))
}

fn sub_fail(c: &SubConn, why: &str) -> String {
    format!(
        "subscriber #{} FAILED: {}: received {} of {} msgs ({} missing)",
        c.id + 1,
        why,
        crate::report::commafy(c.parser.msgs),
        crate::report::commafy(c.expected),
        crate::report::commafy(c.expected.saturating_sub(c.parser.msgs))
    )
}
