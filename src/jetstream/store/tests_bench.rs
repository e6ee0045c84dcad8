//! The store's figures (not assertions): `cargo test --release --lib store::tests_bench --
//! --ignored --nocapture`. `STORE_BENCH_N` messages of 128 bytes (default 1 M; 6.6 M is
//! 1 GiB on disk) are appended and flushed every 100 appends (one loop pass), read back,
//! and the store reopened: from index files, and again with them removed.

use super::tests::{flush_sync, TempDir};
use super::*;
use std::time::Instant;

fn dir_bytes(p: &std::path::Path, ext: &str) -> u64 {
    std::fs::read_dir(p)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum()
}

/// CPU time of this thread (user + system), in ns: what the store costs the loop, unlike wall
/// time on a machine shared with other work.
fn cpu_ns() -> u128 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as u128 * 1_000_000_000 + t.tv_nsec as u128
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
    let subject = b"bench.x";
    let data = [0x5au8; 128];
    let (t, cpu0) = (Instant::now(), cpu_ns());
    let (mut flush_ns, mut sync_ns, mut sync_cpu) = (0u128, 0u128, 0u128);
    for i in 0..n {
        s.append(subject, b"", &data, i as i64).unwrap();
        if i % 100 == 99 {
            let f = Instant::now();
            let fl = s.flush().unwrap();
            if fl.wants_sync {
                // As the loop would: hand the target to the sync thread; here it is synced at
                // once and not counted.
                let (pause, pause_cpu) = (Instant::now(), cpu_ns());
                fl.target.sync_now().unwrap();
                sync_cpu += cpu_ns() - pause_cpu;
                s.synced(fl.id);
                sync_ns += pause.elapsed().as_nanos();
                flush_ns -= pause.elapsed().as_nanos().min(flush_ns);
            }
            flush_ns += f.elapsed().as_nanos();
        }
    }
    s.flush().unwrap();
    let total = t.elapsed().as_nanos() - sync_ns;
    // The fsyncs (and their CPU) belong to the sync thread in the server.
    let cpu = (cpu_ns() - cpu0 - sync_cpu) / n as u128;
    let line = format!(
        "append + flush: {cpu} ns/msg CPU, {} ns/msg wall (flush share {} ns/msg)",
        total / n as u128,
        flush_ns / n as u128
    );
    if std::env::var("STORE_BENCH_APPEND_ONLY").is_ok() {
        return eprintln!("{line}");
    }
    flush_sync(&mut s);
    let st = s.state();
    let idx_mem = s.index_bytes();
    let cpu0 = cpu_ns();
    for seq in 1..=n {
        let m = s.load(seq).unwrap();
        assert_eq!(m.data().len(), 128);
    }
    let load_seq = (cpu_ns() - cpu0) / n as u128;
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let cpu0 = cpu_ns();
    for _ in 0..n / 10 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        assert!(s.load(1 + x % n).is_some());
    }
    let load_rand = (cpu_ns() - cpu0) / (n / 10) as u128;
    drop(s);
    let t = Instant::now();
    let (s, rec) = Store::open_file(cfg.clone(), StoreLimits::default()).unwrap();
    let reopen = t.elapsed();
    assert_eq!(s.state(), st);
    drop(s);
    for e in std::fs::read_dir(&seg).unwrap() {
        let p = e.unwrap().path();
        if p.extension().unwrap() == "idx" {
            std::fs::remove_file(p).unwrap();
        }
    }
    let t = Instant::now();
    let (s, rec2) = Store::open_file(cfg, StoreLimits::default()).unwrap();
    let rescan = t.elapsed();
    assert_eq!(s.state(), st);
    let (seg_b, idx_b) = (dir_bytes(&seg, "seg"), dir_bytes(&seg, "idx"));
    let nats = 22 + subject.len() as u64 + 128 + 8;
    eprintln!(
        "messages: {n} x 128 B on {:?}, {:.1} MiB of segments",
        std::str::from_utf8(subject).unwrap(),
        seg_b as f64 / 1048576.0
    );
    eprintln!("{line}");
    eprintln!("load: {load_seq} ns/msg CPU sequential, {load_rand} ns/msg random");
    eprintln!(
        "on disk: {:.2} B/msg ({:.2} segments + {:.3} index files); nats-server .blk record: {nats} B/msg",
        (seg_b + idx_b) as f64 / n as f64,
        seg_b as f64 / n as f64,
        idx_b as f64 / n as f64
    );
    eprintln!("index in memory: {:.2} B/msg", idx_mem as f64 / n as f64);
    eprintln!(
        "reopen: {:?} from index files ({} indexed, {} scanned); {:?} reading every segment",
        reopen, rec.segments_indexed, rec.segments_scanned, rescan
    );
    assert_eq!(rec2.segments_indexed, 0);
}
