//! `js`: JetStream scenarios over the raw protocol, the same requests the official clients
//! send (nats.go 1.2x against a 2.9 server), so tern and nats-server are measured alike.
//!
//! Ops (`-op`):
//! * `pub`   async publish: every PUB has its own reply `_INBOX.<id>.<i>` (one wildcard SUB),
//!           at most `-w` PubAcks outstanding (a writer thread, the reader on this one);
//! * `sync`  publish one at a time, each waiting for its PubAck;
//! * `push`  an ephemeral push consumer, ack none, no flow control, reads the stream back;
//! * `replay` an ordered-consumer-style push consumer (ack none, flow control answered,
//!           idle heartbeats, memory state), as clients replay a stream;
//! * `pull`  a durable pull consumer, explicit acks (`+ACK` per message), fetches of 100;
//! * `kvput` / `kvget` key-value put (a PubAck per put) and get (`DIRECT.GET` by subject),
//!           one at a time, over `-keys` keys;
//! * `ping`  PING/PONG one at a time (`-c` clients): no JetStream at all, the cost of a
//!           round trip itself, the floor under every one-at-a-time op above;
//! * `fill`  async publish without the figures (set-up for a restart measurement);
//! * `first` time from a push consumer's CREATE to its first delivery;
//! * `ready` with `-since <unix ns>`: connect and ask STREAM.INFO until it answers.
//!
//! Consumer ops and `kvget` first fill the stream (not measured); `Server CPU` covers only
//! the measured phase. Every op checks what it gets: an error PubAck, a missing or extra
//! message, or a status other than heartbeats and flow control fails the run.

use crate::jsconn::{Conn, Frame};
use crate::proto;
use crate::report::commafy;
use memchr::memmem;
use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

pub const STREAM: &str = "BENCH";
pub const SUBJECT: &str = "js.bench";
const KV: &str = "BENCH";

pub struct JsCfg {
    pub addr: SocketAddr,
    pub op: String,
    pub n: u64,
    pub size: usize,
    pub window: u64,
    pub keys: u64,
    /// kvput/kvget: connections doing operations at once.
    pub clients: u64,
    pub pid: Option<u32>,
    pub timeout: Duration,
}

struct Measure {
    pid: Option<u32>,
    cpu0: Option<u64>,
    t0: Instant,
}

impl Measure {
    fn start(pid: Option<u32>) -> Measure {
        Measure {
            pid,
            cpu0: pid.and_then(proto::proc_cpu_ns),
            t0: Instant::now(),
        }
    }
    fn report(&self, what: &str, ops: u64) {
        let dt = self.t0.elapsed().as_secs_f64();
        let cpu1 = self.pid.and_then(proto::proc_cpu_ns);
        println!("JS {what} stats: {} msgs/sec", commafy((ops as f64 / dt) as u64));
        println!("Totals: ops={ops} elapsed={dt:.3}s");
        if let (Some(a), Some(b), Some(p)) = (self.cpu0, cpu1, self.pid) {
            let ns = b.saturating_sub(a);
            println!("Server CPU: {ns} ns during load (pid {p}) = {:.1} ns/msg", ns as f64 / ops.max(1) as f64);
        }
    }
}

fn nonce() -> String {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{:x}{:x}", std::process::id(), t & 0xffff_ffff_ffff)
}

/// A request whose reply must not carry an `"error"`.
fn api(c: &mut Conn, subject: &str, body: &str) -> Result<Vec<u8>, String> {
    let inbox = format!("_INBOX.{}.api", nonce());
    let r = c.request(subject, &inbox, body.as_bytes())?;
    if memmem::find(&r, b"\"error\"").is_some() {
        return Err(format!("{subject}: {}", proto::show(&r)));
    }
    Ok(r)
}

fn create_stream(c: &mut Conn) -> Result<(), String> {
    let cfg = format!(
        r#"{{"name":"{STREAM}","subjects":["{SUBJECT}"],"retention":"limits","max_consumers":-1,"max_msgs_per_subject":-1,"max_msgs":-1,"max_bytes":-1,"max_age":0,"max_msg_size":-1,"storage":"file","discard":"old","num_replicas":1,"duplicate_window":120000000000,"sealed":false,"deny_delete":false,"deny_purge":false,"allow_rollup_hdrs":false,"allow_direct":false,"mirror_direct":false}}"#
    );
    api(c, &format!("$JS.API.STREAM.CREATE.{STREAM}"), &cfg).map(|_| ())
}

fn check_ack(fr: &Frame) -> Result<(), String> {
    if !fr.data.starts_with(b"{\"stream\":") || memmem::find(fr.data, b"\"error\"").is_some() {
        return Err(format!("bad PubAck: {}", proto::show(fr.data)));
    }
    Ok(())
}

pub fn run(cfg: JsCfg) -> Result<(), String> {
    let mut c = Conn::open(&cfg.addr, cfg.timeout)?;
    match cfg.op.as_str() {
        "pub" | "fill" => {
            create_stream(&mut c)?;
            let m = Measure::start(cfg.pid);
            async_pub(c, SUBJECT, cfg.n, cfg.size, cfg.window)?;
            if cfg.op == "pub" {
                m.report("async publish", cfg.n);
            } else {
                println!("Filled {} msgs in {:.3}s", cfg.n, m.t0.elapsed().as_secs_f64());
            }
            Ok(())
        }
        "sync" => {
            create_stream(&mut c)?;
            let payload = proto::payload(cfg.size);
            let m = Measure::start(cfg.pid);
            sync_ops(&mut c, cfg.n, &mut |_, out, reply| {
                proto::push_pub(out, SUBJECT.as_bytes(), Some(reply), &payload)
            }, &mut check_ack)?;
            m.report("sync publish", cfg.n);
            Ok(())
        }
        "push" | "replay" | "pull" => consume(c, &cfg),
        "kvput" | "kvget" | "ping" => kv(c, &cfg),
        "first" => first_delivery(c),
        _ => Err(format!("unknown -op {:?}", cfg.op)),
    }
}

/// Async publish of `n` messages with at most `window` PubAcks outstanding.
fn async_pub(mut c: Conn, subject: &str, n: u64, size: usize, window: u64) -> Result<(), String> {
    let inbox = format!("_INBOX.{}", nonce());
    c.sub(&format!("{inbox}.*"));
    c.ping()?;
    let acked = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicBool::new(false));
    let mut w = c.s.try_clone().map_err(|e| e.to_string())?;
    let (a2, f2, subj) = (acked.clone(), failed.clone(), subject.to_string());
    let writer = thread::spawn(move || -> Result<(), String> {
        use std::io::Write;
        let payload = proto::payload(size);
        let mut buf = Vec::with_capacity(256 * 1024);
        let mut reply = Vec::with_capacity(64);
        let mut sent = 0u64;
        let chunk = (window / 4).max(1);
        while sent < n {
            if f2.load(Ordering::Relaxed) {
                return Ok(());
            }
            let room = (a2.load(Ordering::Acquire) + window).saturating_sub(sent);
            if room < chunk.min(n - sent) {
                thread::park_timeout(Duration::from_millis(5));
                continue;
            }
            buf.clear();
            for _ in 0..room.min(n - sent).min(4096) {
                reply.clear();
                reply.extend_from_slice(inbox.as_bytes());
                reply.push(b'.');
                proto::push_num(&mut reply, sent);
                proto::push_pub(&mut buf, subj.as_bytes(), Some(&reply), &payload);
                sent += 1;
            }
            w.write_all(&buf).map_err(|e| format!("write: {e}"))?;
        }
        Ok(())
    });
    let writer_thread = writer.thread().clone();
    let mut got = 0u64;
    let mut pong = false;
    let r = (|| -> Result<(), String> {
        while got < n {
            c.fill()?;
            c.frames(
                &mut |fr, _| {
                    check_ack(fr)?;
                    got += 1;
                    Ok(())
                },
                &mut pong,
            )?;
            acked.store(got, Ordering::Release);
            writer_thread.unpark();
        }
        Ok(())
    })();
    if r.is_err() {
        failed.store(true, Ordering::Relaxed);
    }
    let wr = writer.join().map_err(|_| "writer panicked".to_string())?;
    r?;
    wr
}

type Build<'a> = dyn FnMut(u64, &mut Vec<u8>, &[u8]) + 'a;
type Check<'a> = dyn FnMut(&Frame) -> Result<(), String> + 'a;

/// `n` request/replies one at a time: `build(i, out, reply)` writes request i.
fn sync_ops(c: &mut Conn, n: u64, build: &mut Build, check: &mut Check) -> Result<(), String> {
    let inbox = format!("_INBOX.{}.r", nonce());
    c.sub(&inbox);
    c.ping()?;
    for i in 0..n {
        build(i, &mut c.out, inbox.as_bytes());
        let done = Cell::new(false);
        c.run_until(
            &mut |fr, _| {
                check(fr)?;
                done.set(true);
                Ok(())
            },
            &mut || done.get(),
        )?;
    }
    Ok(())
}

/// Fills the stream with `n` messages on a connection of its own (not measured).
fn fill(cfg: &JsCfg, subject: &str) -> Result<(), String> {
    let c = Conn::open(&cfg.addr, cfg.timeout)?;
    async_pub(c, subject, cfg.n, cfg.size, 4096)
}

/// push, replay, pull: the stream is filled, then read back by one consumer.
fn consume(mut c: Conn, cfg: &JsCfg) -> Result<(), String> {
    create_stream(&mut c)?;
    fill(cfg, SUBJECT)?;
    let id = nonce();
    let deliver = format!("_INBOX.{id}.d");
    let n = cfg.n;
    let m = Measure::start(cfg.pid);
    let got = Cell::new(0u64);
    if cfg.op == "pull" {
        let cc = r#"{"stream_name":"BENCH","config":{"durable_name":"PULL","deliver_policy":"all","ack_policy":"explicit","ack_wait":30000000000,"max_deliver":-1,"replay_policy":"instant","max_waiting":512,"max_ack_pending":1000,"num_replicas":0}}"#;
        api(&mut c, &format!("$JS.API.CONSUMER.DURABLE.CREATE.{STREAM}.PULL"), cc)?;
        c.sub(&deliver);
        let next = format!("$JS.API.CONSUMER.MSG.NEXT.{STREAM}.PULL");
        while got.get() < n {
            let batch = (n - got.get()).min(100);
            let body = format!(r#"{{"expires":10000000000,"batch":{batch}}}"#);
            proto::push_pub(&mut c.out, next.as_bytes(), Some(deliver.as_bytes()), body.as_bytes());
            let in_batch = Cell::new(0u64);
            c.run_until(
                &mut |fr, out| {
                    if fr.reply.starts_with(b"$JS.ACK.") {
                        in_batch.set(in_batch.get() + 1);
                        proto::push_pub(out, fr.reply, None, b"+ACK");
                        Ok(())
                    } else {
                        Err(format!("pull: unexpected {:?}", proto::show(fr.hdr)))
                    }
                },
                &mut || in_batch.get() == batch,
            )?;
            got.set(got.get() + batch);
        }
        c.flush()?;
        // Every ack applied (nats-server applies them on another goroutine: ask until so).
        let info = format!("$JS.API.CONSUMER.INFO.{STREAM}.PULL");
        for i in 0.. {
            let r = api(&mut c, &info, "")?;
            if memmem::find(&r, b"\"num_ack_pending\":0").is_some() {
                break;
            }
            if i > 500 {
                return Err(format!("acks not applied: {}", proto::show(&r)));
            }
            thread::sleep(Duration::from_millis(2));
        }
        m.report("pull+ack", n);
        return Ok(());
    }
    let cc = if cfg.op == "push" {
        format!(r#"{{"stream_name":"BENCH","config":{{"deliver_subject":"{deliver}","deliver_policy":"all","ack_policy":"none","replay_policy":"instant","num_replicas":0}}}}"#)
    } else {
        format!(r#"{{"stream_name":"BENCH","config":{{"deliver_subject":"{deliver}","deliver_policy":"all","ack_policy":"none","max_deliver":1,"replay_policy":"instant","flow_control":true,"idle_heartbeat":5000000000,"mem_storage":true,"num_replicas":1,"inactive_threshold":300000000000}}}}"#)
    };
    c.sub(&deliver);
    c.sub(&format!("_INBOX.{id}.api"));
    let api_inbox = format!("_INBOX.{id}.api");
    proto::push_pub(
        &mut c.out,
        format!("$JS.API.CONSUMER.CREATE.{STREAM}").as_bytes(),
        Some(api_inbox.as_bytes()),
        cc.as_bytes(),
    );
    let mut fc = 0u64;
    c.run_until(
        &mut |fr, out| {
            if fr.reply.starts_with(b"$JS.ACK.") {
                got.set(got.get() + 1);
            } else if fr.reply.starts_with(b"$JS.FC.") {
                fc += 1;
                proto::push_pub(out, fr.reply, None, b"");
            } else if fr.subject == api_inbox.as_bytes() {
                if memmem::find(fr.data, b"\"error\"").is_some() {
                    return Err(format!("consumer create: {}", proto::show(fr.data)));
                }
            } else if fr.status() != Some(b"100") {
                return Err(format!("push: unexpected {:?}", proto::show(fr.hdr)));
            }
            Ok(())
        },
        &mut || got.get() >= n,
    )?;
    if got.get() != n {
        return Err(format!("{} messages delivered, {n} stored", got.get()));
    }
    m.report(if cfg.op == "push" { "push" } else { "replay" }, n);
    if fc > 0 {
        println!("Flow control requests answered: {fc}");
    }
    Ok(())
}

/// Key-value put or get over `keys` keys of bucket BENCH: `clients` connections (threads),
/// each doing its share of the `n` operations one at a time.
fn kv(mut c: Conn, cfg: &JsCfg) -> Result<(), String> {
    let cfg_json = format!(
        r#"{{"name":"KV_{KV}","subjects":["$KV.{KV}.>"],"retention":"limits","max_consumers":-1,"max_msgs_per_subject":1,"max_msgs":-1,"max_bytes":-1,"max_age":0,"max_msg_size":-1,"storage":"file","discard":"new","num_replicas":1,"duplicate_window":120000000000,"sealed":false,"deny_delete":true,"deny_purge":false,"allow_rollup_hdrs":true,"allow_direct":true,"mirror_direct":false}}"#
    );
    if cfg.op != "ping" {
        api(&mut c, &format!("$JS.API.STREAM.CREATE.KV_{KV}"), &cfg_json)?;
    }
    let keys = cfg.keys.max(1);
    if cfg.op == "kvget" {
        // Every key holds a value before the gets are measured.
        kv_ops(&mut c, "kvput", cfg.size, keys, 0, keys)?;
    }
    let clients = cfg.clients.max(1);
    let mut conns = vec![c];
    for _ in 1..clients {
        conns.push(Conn::open(&cfg.addr, cfg.timeout)?);
    }
    let m = Measure::start(cfg.pid);
    let results: Vec<Result<(), String>> = thread::scope(|s| {
        let handles: Vec<_> = conns
            .iter_mut()
            .enumerate()
            .map(|(k, c)| {
                let share = cfg.n / clients + u64::from((k as u64) < cfg.n % clients);
                s.spawn(move || kv_ops(c, &cfg.op, cfg.size, share, k as u64 * 7919, keys))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("kv client panicked".into()))).collect()
    });
    for r in results {
        r?;
    }
    let what = match cfg.op.as_str() {
        "kvput" => "kv put",
        "kvget" => "kv get",
        _ => "ping",
    };
    m.report(what, cfg.n);
    Ok(())
}

/// `n` kv puts or gets on `c`, one at a time, keys from `first` round the `keys` keys.
fn kv_ops(c: &mut Conn, op: &str, size: usize, n: u64, first: u64, keys: u64) -> Result<(), String> {
    if op == "ping" {
        for _ in 0..n {
            c.ping()?;
        }
        return Ok(());
    }
    let payload = proto::payload(size);
    let mut subj = Vec::with_capacity(64);
    if op == "kvput" {
        return sync_ops(
            c,
            n,
            &mut |i, out, reply| {
                subj.clear();
                subj.extend_from_slice(format!("$KV.{KV}.k").as_bytes());
                proto::push_num(&mut subj, (first + i) % keys);
                proto::push_pub(out, &subj, Some(reply), &payload);
            },
            &mut check_ack,
        );
    }
    let prefix = format!("$JS.API.DIRECT.GET.KV_{KV}.$KV.{KV}.k");
    sync_ops(
        c,
        n,
        &mut |i, out, reply| {
            subj.clear();
            subj.extend_from_slice(prefix.as_bytes());
            proto::push_num(&mut subj, (first + i) % keys);
            proto::push_pub(out, &subj, Some(reply), b"");
        },
        &mut |fr| {
            if fr.status().is_some() || fr.data.len() != size {
                return Err(format!("kv get: {:?} {} bytes", proto::show(fr.hdr), fr.data.len()));
            }
            Ok(())
        },
    )
}

/// Time from a push consumer's CREATE (deliver all) to its first delivery.
fn first_delivery(mut c: Conn) -> Result<(), String> {
    let id = nonce();
    let deliver = format!("_INBOX.{id}.d");
    let api_inbox = format!("_INBOX.{id}.api");
    c.sub(&deliver);
    c.sub(&api_inbox);
    c.ping()?;
    let cc = format!(r#"{{"stream_name":"BENCH","config":{{"deliver_subject":"{deliver}","deliver_policy":"all","ack_policy":"explicit","replay_policy":"instant","num_replicas":0}}}}"#);
    proto::push_pub(
        &mut c.out,
        format!("$JS.API.CONSUMER.CREATE.{STREAM}").as_bytes(),
        Some(api_inbox.as_bytes()),
        cc.as_bytes(),
    );
    let t0 = Instant::now();
    let first: Cell<Option<Duration>> = Cell::new(None);
    c.run_until(
        &mut |fr, _| {
            if fr.subject == api_inbox.as_bytes() && memmem::find(fr.data, b"\"error\"").is_some() {
                return Err(format!("consumer create: {}", proto::show(fr.data)));
            }
            if fr.reply.starts_with(b"$JS.ACK.") && first.get().is_none() {
                first.set(Some(t0.elapsed()));
            }
            Ok(())
        },
        &mut || first.get().is_some(),
    )?;
    println!("First delivery: {:.2} ms after CONSUMER.CREATE", first.get().unwrap_or_default().as_secs_f64() * 1e3);
    Ok(())
}

/// `ready`: from `since` (Unix ns, taken just before the server was started) until a
/// STREAM.INFO is answered; prints the stream's message count from the reply.
pub fn ready(addr: &SocketAddr, since: u128, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        let r = Conn::open(addr, Duration::from_secs(5)).and_then(|mut c| {
            let inbox = format!("_INBOX.{}.i", nonce());
            c.request(&format!("$JS.API.STREAM.INFO.{STREAM}"), &inbox, b"")
        });
        match r {
            Ok(reply) if memmem::find(&reply, b"\"error\"").is_none() => {
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
                let msgs = memmem::find(&reply, b"\"messages\":").map(|i| {
                    let d = &reply[i + 11..];
                    let e = d.iter().position(|c| !c.is_ascii_digit()).unwrap_or(d.len());
                    String::from_utf8_lossy(&d[..e]).into_owned()
                });
                println!("Ready: {:.1} ms from start to STREAM.INFO (messages {})", (now.saturating_sub(since)) as f64 / 1e6, msgs.unwrap_or_default());
                return Ok(());
            }
            _ if Instant::now() > deadline => return Err(format!("no STREAM.INFO within {timeout:?}: {r:?}", r = r.map(|v| proto::show(&v)))),
            _ => thread::sleep(Duration::from_millis(5)),
        }
    }
}
