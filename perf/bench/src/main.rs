//! tern-bench: a lean load generator for NATS-protocol servers.
//! See `tern-bench --help`.

mod conns;
mod js;
mod jsconn;
mod latency;
mod load;
mod proto;
mod report;

use std::collections::HashMap;
use std::process::exit;
use std::time::Duration;

const HELP: &str = "\
tern-bench: load generator for NATS-protocol servers (raw TCP, text protocol)

USAGE:
  tern-bench [pubsub] [FLAGS] [SUBJECT]     pub/sub throughput (nats-bench compatible)
  tern-bench conns    [FLAGS]               open N idle connections and hold them
  tern-bench latency  [FLAGS] [SUBJECT]     request/reply latency at a fixed rate
  tern-bench subjects [FLAGS] [PREFIX]      throughput with K distinct subjects subscribed
  tern-bench js       -op OP [FLAGS]        JetStream: publish, consumers, key-value

Flags take a value and may be written -np 10, --np 10 or -np=10.

COMMON:
  -s URL         server (default nats://127.0.0.1:4222)
  -sub_s URL     subscribers connect here instead (another node of a cluster: measures a route)
  -pid PID       server process: print its utime+stime consumed during the load
                 phase as `Server CPU: <ns> ns during load` (from /proc/PID/stat)
  -h, --help     this text

pubsub (default mode; SUBJECT defaults to foo):
  -np N          publishers, one thread/connection each (default 1)
  -ns N          subscribers, one connection each (default 0)
  -n N           total messages, split across publishers (default 100000);
                 every subscriber must receive all N
  -ms BYTES      message payload size (default 128)
  -csv FILE      write per-client rows (nats-bench CSV layout)
  -st N          subscriber reader threads (epoll) (default min(ns, 2))
  -timeout SECS  fail if a subscriber gets nothing for this long (default 10)
  Subscribers connect, SUB and complete a PING/PONG before publishers start.
  Publishers write batches of PUB frames and finish with PING/PONG.
  Output: `Pub/Sub stats: X msgs/sec ~ Y MB/sec` (published+delivered over the
  whole run), ` Pub stats:`, ` Sub stats:` and per-client lines, then
  `Totals: published=P delivered=D elapsed=S`.
  Exit status 1 (and a `FAILED` line naming the subscriber and its counts) if
  any subscriber lost messages, stalled, got an -ERR or was disconnected.

conns:
  -c N           connections to open (default 10000)
  -window N      connections being set up concurrently (default 500)
  -hold SECS     hold them this long, then exit; without it, hold until
                 stdin is closed (EOF)
  Each connection sends CONNECT + PING and waits for PONG. Prints
  `Connected N conns in X ms (R conns/sec)` then `READY ...` and holds.
  RLIMIT_NOFILE is raised to its hard limit. Fails if any connection is
  refused or closed.

latency (SUBJECT defaults to lat.req):
  -rate R        requests per second (default 5000)
  -d SECS        duration (default 5)
  -ms BYTES      request and reply payload size (default 128)
  One responder connection subscribes and replies; one requester sends
  requests open-loop at the fixed rate, each with a unique reply subject
  _INBOX.<id>.<seq> (one wildcard SUB). Prints
  `Latency (us): p50 .. | p90 .. | p99 .. | p99.9 .. | max .. | mean ..`.
  Fails if a reply is missing.

subjects (PREFIX defaults to bench; subjects are PREFIX.0 .. PREFIX.<K-1>):
  -k K           distinct subjects subscribed (default 10000)
  -nc N          subscriber connections; subject i goes to connection i % N (default 1)
  -n N           messages, message j published on subject j % K (default 1000000)
  -ms BYTES      payload size (default 16)
  -np N          publishers (default 1)
  -csv, -st, -timeout as for pubsub.
  SUBs are written in 1 MiB batches, then PING/PONG; the report adds
  `Setup (connect + subscribe): X ms`. Every message is delivered exactly once.

js (stream BENCH on subject js.bench, file storage; see perf/README.md):
  -op OP         pub (async, -w outstanding PubAcks), sync (one at a time), push,
                 replay, pull (explicit acks, fetches of 100), kvput, kvget, ping, fill,
                 first (CREATE to first delivery), ready (with -since)
  -n N           messages (published, or stored then consumed, or kv ops) (default 100000)
  -ms BYTES      payload size (default 128)
  -w N           outstanding PubAcks for pub/fill (default 4096)
  -keys K        distinct keys for kvput/kvget (default 1000)
  -c N           kvput/kvget/ping: N connections, each one operation at a time (default 1)
  -since NS      ready: Unix ns the server was started at
  -timeout SECS  fail when the server sends nothing for this long (default 10)
  Output: `JS <op> stats: X msgs/sec`, `Totals: ops=N elapsed=S`, and with -pid
  the server CPU of the measured phase only (not the fill).
";

struct Args {
    flags: HashMap<String, String>,
    pos: Vec<String>,
}

impl Args {
    fn parse(argv: &[String], allowed: &[&str]) -> Result<Args, String> {
        let mut flags = HashMap::new();
        let mut pos = Vec::new();
        let mut i = 0;
        while i < argv.len() {
            let a = &argv[i];
            if a.len() > 1 && a.starts_with('-') {
                let k = a.trim_start_matches('-');
                let (k, v) = match k.split_once('=') {
                    Some((k, v)) => (k.to_string(), v.to_string()),
                    None => {
                        if matches!(k, "h" | "help") {
                            print!("{HELP}");
                            exit(0);
                        }
                        i += 1;
                        let v = argv.get(i).ok_or_else(|| format!("flag {a} needs a value"))?;
                        (k.to_string(), v.clone())
                    }
                };
                if !allowed.contains(&k.as_str()) {
                    return Err(format!("unknown flag -{k} (see --help)"));
                }
                flags.insert(k, v);
            } else {
                pos.push(a.clone());
            }
            i += 1;
        }
        if pos.len() > 1 {
            return Err(format!("too many positional arguments: {pos:?}"));
        }
        Ok(Args { flags, pos })
    }
    fn num<T: std::str::FromStr>(&self, k: &str, def: T) -> Result<T, String> {
        match self.flags.get(k) {
            None => Ok(def),
            Some(v) => v.replace('_', "").parse().map_err(|_| format!("bad value for -{k}: {v:?}")),
        }
    }
    fn str(&self, k: &str, def: &str) -> String {
        self.flags.get(k).cloned().unwrap_or_else(|| def.to_string())
    }
    fn subject(&self, def: &str) -> String {
        self.pos.first().cloned().unwrap_or_else(|| def.to_string())
    }
    fn pid(&self) -> Result<Option<u32>, String> {
        match self.flags.get("pid") {
            None => Ok(None),
            Some(v) => {
                let p: u32 = v.parse().map_err(|_| format!("bad -pid {v:?}"))?;
                if proto::proc_cpu_ns(p).is_none() {
                    return Err(format!("cannot read /proc/{p}/stat"));
                }
                Ok(Some(p))
            }
        }
    }
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let (mode, rest) = match argv.first().map(|s| s.as_str()) {
        Some(m @ ("pubsub" | "conns" | "latency" | "subjects" | "js")) => (m.to_string(), &argv[1..]),
        _ => ("pubsub".to_string(), &argv[..]),
    };
    proto::raise_nofile();
    let r = match mode.as_str() {
        "conns" => cmd_conns(rest),
        "latency" => cmd_latency(rest),
        "subjects" => cmd_subjects(rest),
        "js" => cmd_js(rest),
        _ => cmd_pubsub(rest),
    };
    if let Err(e) = r {
        if !e.is_empty() {
            eprintln!("tern-bench: FAILED: {e}");
        }
        exit(1);
    }
}

fn split_counts(n: u64, np: usize) -> Vec<u64> {
    (0..np as u64).map(|i| n / np as u64 + u64::from(i < n % np as u64)).collect()
}

fn print_load(r: &load::LoadResult, csv: Option<String>, pid: Option<u32>) -> Result<(), String> {
    print!("{}", report::report(&r.pubs, &r.subs));
    let published: u64 = r.pubs.iter().map(|s| s.msgs).sum();
    let delivered: u64 = r.subs.iter().map(|s| s.msgs).sum();
    println!(
        "Totals: published={published} delivered={delivered} elapsed={:.3}s setup={:.3}s",
        r.elapsed.as_secs_f64(),
        r.setup.as_secs_f64()
    );
    if let Some(ns) = r.server_cpu_ns {
        let per = ns as f64 / (if delivered > 0 { delivered } else { published }).max(1) as f64;
        println!("Server CPU: {ns} ns during load (pid {}) = {per:.1} ns/msg", pid.unwrap());
    }
    if let Some(f) = csv {
        let id = format!("{:x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs());
        std::fs::write(&f, report::csv(&id, &r.pubs, &r.subs)).map_err(|e| format!("write {f}: {e}"))?;
        println!("Saved metric data in csv file {f}");
    }
    Ok(())
}

fn cmd_pubsub(argv: &[String]) -> Result<(), String> {
    let a = Args::parse(argv, &["s", "sub_s", "np", "ns", "n", "ms", "csv", "pid", "timeout", "st"])?;
    let addr = proto::parse_url(&a.str("s", "nats://127.0.0.1:4222"))?;
    let sub_addr = match a.flags.get("sub_s") {
        Some(u) => proto::parse_url(u)?,
        None => addr,
    };
    let np: usize = a.num("np", 1)?;
    let ns: usize = a.num("ns", 0)?;
    let n: u64 = a.num("n", 100_000)?;
    let ms: usize = a.num("ms", 128)?;
    let subj = a.subject("foo");
    if np == 0 {
        return Err("need at least one publisher".into());
    }
    let pid = a.pid()?;
    println!("Starting benchmark [msgs={n}, msgsize={ms}, pubs={np}, subs={ns}]");
    let cfg = load::LoadCfg {
        addr,
        sub_addr,
        pub_counts: split_counts(n, np),
        size: ms,
        kind: load::PubKind::Fixed(subj.clone().into_bytes()),
        subs: (0..ns)
            .map(|_| load::SubSpec { subs: format!("SUB {subj} 1\r\n").into_bytes(), expected: n })
            .collect(),
        sub_threads: a.num("st", ns.min(2))?,
        timeout: Duration::from_secs_f64(a.num("timeout", 10.0)?),
        pid,
        verbose: std::env::var_os("TERN_BENCH_VERBOSE").is_some(),
    };
    let r = load::run(cfg)?;
    print_load(&r, a.flags.get("csv").cloned(), pid)
}

fn cmd_subjects(argv: &[String]) -> Result<(), String> {
    let a = Args::parse(argv, &["s", "k", "nc", "n", "ms", "np", "csv", "pid", "timeout", "st"])?;
    let addr = proto::parse_url(&a.str("s", "nats://127.0.0.1:4222"))?;
    let k: u64 = a.num("k", 10_000)?;
    let nc: usize = a.num("nc", 1)?;
    let n: u64 = a.num("n", 1_000_000)?;
    let ms: usize = a.num("ms", 16)?;
    let np: usize = a.num("np", 1)?;
    let prefix = a.subject("bench");
    if k == 0 || nc == 0 || np == 0 {
        return Err("-k, -nc and -np must be > 0".into());
    }
    let pid = a.pid()?;
    // exact per-connection expectations
    let mut expected = vec![0u64; nc];
    if k >= n {
        for j in 0..n {
            expected[(j % nc as u64) as usize] += 1;
        }
    } else {
        let full = n / k;
        let rem = n % k;
        for i in 0..k {
            expected[(i % nc as u64) as usize] += full + u64::from(i < rem);
        }
    }
    let mut subs = Vec::new();
    for c in 0..nc as u64 {
        let mut b = Vec::with_capacity(((k / nc as u64) as usize + 1) * (prefix.len() + 24));
        let mut i = c;
        while i < k {
            b.extend_from_slice(b"SUB ");
            b.extend_from_slice(prefix.as_bytes());
            b.push(b'.');
            proto::push_num(&mut b, i);
            b.push(b' ');
            proto::push_num(&mut b, i + 1);
            b.extend_from_slice(b"\r\n");
            i += nc as u64;
        }
        subs.push(load::SubSpec { subs: b, expected: expected[c as usize] });
    }
    println!("Starting subjects benchmark [subjects={k}, sub conns={nc}, msgs={n}, msgsize={ms}, pubs={np}]");
    let cfg = load::LoadCfg {
        addr,
        sub_addr: addr,
        pub_counts: split_counts(n, np),
        size: ms,
        kind: load::PubKind::Spread { prefix: prefix.into_bytes(), k },
        subs,
        sub_threads: a.num("st", nc.min(2))?,
        timeout: Duration::from_secs_f64(a.num("timeout", 10.0)?),
        pid,
        verbose: std::env::var_os("TERN_BENCH_VERBOSE").is_some(),
    };
    let r = load::run(cfg)?;
    println!("Setup (connect + subscribe {k} subjects): {:.1} ms", r.setup.as_secs_f64() * 1e3);
    print_load(&r, a.flags.get("csv").cloned(), pid)
}

fn cmd_js(argv: &[String]) -> Result<(), String> {
    let a = Args::parse(argv, &["s", "op", "n", "ms", "w", "keys", "c", "pid", "timeout", "since"])?;
    let addr = proto::parse_url(&a.str("s", "nats://127.0.0.1:4222"))?;
    let timeout = Duration::from_secs_f64(a.num("timeout", 10.0)?);
    let op = a.str("op", "pub");
    if op == "ready" {
        let since: u128 = a.num("since", 0)?;
        return js::ready(&addr, since, Duration::from_secs(120));
    }
    js::run(js::JsCfg {
        addr,
        op,
        n: a.num("n", 100_000)?,
        size: a.num("ms", 128)?,
        window: a.num::<u64>("w", 4096)?.max(1),
        keys: a.num("keys", 1000)?,
        clients: a.num("c", 1)?,
        pid: a.pid()?,
        timeout,
    })
}

fn cmd_conns(argv: &[String]) -> Result<(), String> {
    let a = Args::parse(argv, &["s", "c", "window", "hold", "pid"])?;
    conns::run(conns::ConnsCfg {
        addr: proto::parse_url(&a.str("s", "nats://127.0.0.1:4222"))?,
        count: a.num("c", 10_000)?,
        window: a.num("window", 500)?,
        hold: match a.flags.get("hold") {
            None => None,
            Some(_) => Some(Duration::from_secs_f64(a.num("hold", 0.0)?)),
        },
        pid: a.pid()?,
    })
}

fn cmd_latency(argv: &[String]) -> Result<(), String> {
    let a = Args::parse(argv, &["s", "rate", "d", "ms", "pid"])?;
    latency::run(latency::LatCfg {
        addr: proto::parse_url(&a.str("s", "nats://127.0.0.1:4222"))?,
        subject: a.subject("lat.req"),
        rate: a.num("rate", 5000)?,
        secs: a.num("d", 5.0)?,
        size: a.num("ms", 128)?,
        pid: a.pid()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sv(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn args_styles() {
        let a = Args::parse(&sv(&["-np", "10", "--ns=5", "-ms", "1_000", "bar"]), &["np", "ns", "ms"]).unwrap();
        assert_eq!(a.num::<usize>("np", 1).unwrap(), 10);
        assert_eq!(a.num::<usize>("ns", 0).unwrap(), 5);
        assert_eq!(a.num::<usize>("ms", 0).unwrap(), 1000);
        assert_eq!(a.num::<usize>("n", 7).unwrap(), 7);
        assert_eq!(a.subject("foo"), "bar");
        assert!(Args::parse(&sv(&["-x", "1"]), &["np"]).is_err());
        assert!(Args::parse(&sv(&["-np"]), &["np"]).is_err());
        assert!(Args::parse(&sv(&["a", "b"]), &[]).is_err());
    }

    #[test]
    fn counts_split() {
        assert_eq!(split_counts(10, 3), vec![4, 3, 3]);
        assert_eq!(split_counts(100_000, 1), vec![100_000]);
        assert_eq!(split_counts(2, 4), vec![1, 1, 0, 0]);
    }
}
