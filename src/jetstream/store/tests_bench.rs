//! The store's figures (not assertions): `cargo test --release --lib store::tests_bench --
//! --ignored --nocapture`. `STORE_BENCH_N` messages of 128 bytes (default 1 M; 6.6 M is
//! 1 GiB on disk) are appended and flushed every 100 appends (one loop pass), read back,
//! and the store reopened: from index files, and again with them removed. Times are the
//! thread's CPU time (user + system, so the kernel's share of each pwrite counts), which a
//! machine shared with other work disturbs less than wall time; fsyncs are left out (the sync
//! thread does them in the server).

use super::tests::{flush_sync, TempDir};
use super::*;
use std::time::Instant;

const SUBJECT: &[u8] = b"bench.x";

fn cpu_ns() -> u128 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as u128 * 1_000_000_000 + t.tv_nsec as u128
}

fn dir_bytes(p: &std::path::Path, ext: &str) -> u64 {
    std::fs::read_dir(p)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum()
}

/// Appends and flushes like the loop: returns CPU ns/msg and the flush's share.
fn append_phase(s: &mut Store, n: u64) -> (u128, u128) {
    let data = [0x5au8; 128];
    let cpu0 = cpu_ns();
    let (mut flush_cpu, mut sync_cpu) = (0u128, 0u128);
    for i in 0..n {
        s.append(SUBJECT, b"", &data, i as i64).unwrap();
        if i % 100 == 99 || i + 1 == n {
            let f0 = cpu_ns();
            let fl = s.flush().unwrap();
            let f1 = cpu_ns();
            flush_cpu += f1 - f0;
            if fl.wants_sync {
                // The sync thread's work, done here at once and not counted.
                fl.target.sync_now().unwrap();
                s.synced(fl.id);
                sync_cpu += cpu_ns() - f1;
            }
        }
    }
    (
        (cpu_ns() - cpu0 - sync_cpu) / n as u128,
        flush_cpu / n as u128,
    )
}

/// CPU ns per load, in order and at random.
fn load_phase(s: &Store, n: u64) -> (u128, u128) {
    let cpu0 = cpu_ns();
    for seq in 1..=n {
        assert_eq!(s.load(seq).unwrap().data().len(), 128);
    }
    let sequential = (cpu_ns() - cpu0) / n as u128;
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let cpu0 = cpu_ns();
    for _ in 0..n / 10 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        assert!(s.load(1 + x % n).is_some());
    }
    (sequential, (cpu_ns() - cpu0) / (n / 10).max(1) as u128)
}

#[test]
#[ignore]
fn bench_append_load_reopen() {
    let n: u64 = std::env::var("STORE_BENCH_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let d = TempDir::new("bench");
    let cfg = FileConfig::new(d.0.join("stream"));
    let seg = cfg.dir.join("seg");
    let (mut s, _) = Store::open_file(cfg.clone(), StoreLimits::default()).unwrap();
    let (append, flush) = append_phase(&mut s, n);
    eprintln!("append + flush: {append} ns/msg CPU (flush share {flush} ns/msg)");
    if std::env::var("STORE_BENCH_APPEND_ONLY").is_ok() {
        return;
    }
    flush_sync(&mut s);
    let (st, idx_mem) = (s.state(), s.index_bytes());
    let (load_seq, load_rand) = load_phase(&s, n);
    drop(s);
    let t = Instant::now();
    let (s, rec) = Store::open_file(cfg.clone(), StoreLimits::default()).unwrap();
    let reopen = t.elapsed();
    assert_eq!(s.state(), st);
    drop(s);
    let (seg_b, idx_b) = (dir_bytes(&seg, "seg"), dir_bytes(&seg, "idx"));
    for e in std::fs::read_dir(&seg).unwrap() {
        let p = e.unwrap().path();
        if p.extension().unwrap() == "idx" {
            std::fs::remove_file(p).unwrap();
        }
    }
    let t = Instant::now();
    let (s, _) = Store::open_file(cfg, StoreLimits::default()).unwrap();
    let rescan = t.elapsed();
    assert_eq!(s.state(), st);
    let nats = 22 + SUBJECT.len() as u64 + 128 + 8;
    let per = |b: u64| b as f64 / n as f64;
    eprintln!(
        "messages: {n} x 128 B on \"bench.x\", {:.1} MiB of segments",
        seg_b as f64 / 1048576.0
    );
    eprintln!("load: {load_seq} ns/msg CPU in order, {load_rand} ns/msg at random");
    eprintln!(
        "on disk: {:.2} B/msg ({:.2} segments + {:.3} index files); nats-server's record: {nats} B/msg",
        per(seg_b + idx_b),
        per(seg_b),
        per(idx_b)
    );
    eprintln!("index in memory: {:.2} B/msg", per(idx_mem as u64));
    eprintln!(
        "reopen: {reopen:?} from index files ({} indexed, {} scanned); {rescan:?} reading every segment",
        rec.segments_indexed, rec.segments_scanned
    );
}
