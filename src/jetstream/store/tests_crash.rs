//! Crashes and a full disk (invariants 1, 2, 3, 6 and 7).
//!
//! kill -9: the test re-runs its own binary as a child (`TERN_STORE_CHILD` set) that appends,
//! removes and flushes in a loop with the real sync thread, printing what each successful
//! flush made durable. The parent kills it with SIGKILL at random moments, reopens the store
//! and checks every printed promise; the next round's child continues on the same directory.
//!
//! Full disk: a test-only fault hook (`segment::fault`) makes writes run out of space part way
//! (and truncates fail, for the read-only case); and a child process with `RLIMIT_FSIZE` gets
//! real EFBIG errors from the kernel.

use super::segment::fault;
use super::tests::{flush_sync, TempDir};
use super::tests_model::Rng;
use super::*;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const CHILD_ENV: &str = "TERN_STORE_CHILD";

fn subject(seq: u64) -> Vec<u8> {
    format!("k.{}", seq % 7).into_bytes()
}
fn hdr(seq: u64) -> Vec<u8> {
    if seq.is_multiple_of(5) {
        format!("NATS/1.0\r\nseq: {seq}\r\n\r\n").into_bytes()
    } else {
        Vec::new()
    }
}
/// The payload is a function of the sequence, so the parent can check it byte for byte.
fn payload(seq: u64) -> Vec<u8> {
    (0..(seq * 37) % 300)
        .map(|i| (seq.wrapping_mul(31).wrapping_add(i)) as u8)
        .collect()
}

fn crash_limits() -> StoreLimits {
    StoreLimits {
        max_msgs: 1500,
        ..StoreLimits::default()
    }
}

fn crash_cfg(dir: &std::path::Path) -> FileConfig {
    FileConfig {
        dir: dir.to_path_buf(),
        segment_size: 16 << 10,
    }
}

/// The child: append, remove and flush until killed. After each successful flush it prints
/// `A <seqs>` (stored), `D <seqs>` (removed), `S <seqs>` (skipped) and `F <first_seq>`.
fn child(dir: &str) -> ! {
    let (mut s, _) =
        Store::open_file(crash_cfg(std::path::Path::new(dir)), crash_limits()).unwrap();
    let syncer = Syncer::start(None).unwrap();
    let mut r = Rng(std::process::id() as u64 | 1);
    let out = std::io::stdout();
    let mut done = Vec::new();
    loop {
        let (mut a, mut d, mut sk) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..1 + r.below(40) {
            if r.chance(3) {
                sk.push(s.skip(1).unwrap());
                continue;
            }
            let seq = s.state().last_seq + 1;
            assert_eq!(
                s.append(&subject(seq), &hdr(seq), &payload(seq), seq as i64)
                    .unwrap(),
                seq
            );
            a.push(seq);
            if r.chance(8) {
                let victim = seq - r.below(30).min(seq - 1);
                if s.remove(victim, r.chance(50)) {
                    d.push(victim);
                }
            }
        }
        // Removals become durable with the flush; announce them first, so the parent knows
        // they may have happened even if it is killed before saying so.
        out.lock()
            .write_all(
                format!(
                    "P {}\n",
                    d.iter()
                        .map(|x| x.to_string())
                        .collect::<Vec<_>>()
                        .join(" ")
                )
                .as_bytes(),
            )
            .unwrap();
        let f = s.flush().unwrap();
        if f.wants_sync || r.chance(20) {
            syncer.submit(f.id, f.target);
        }
        syncer.drain(&mut done);
        for c in done.drain(..) {
            c.result.unwrap();
            s.synced(c.id);
        }
        let join = |v: &[u64]| {
            v.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        };
        let line = format!(
            "A {}\nD {}\nS {}\nF {}\n",
            join(&a),
            join(&d),
            join(&sk),
            s.state().first_seq
        );
        out.lock().write_all(line.as_bytes()).unwrap();
    }
}

/// What the children promised so far.
#[derive(Default)]
struct Promised {
    stored: BTreeSet<u64>,
    removed: BTreeSet<u64>,
    /// Removals announced before a flush: they may have happened.
    maybe_removed: BTreeSet<u64>,
    max_seq: u64,
    floor: u64,
}

impl Promised {
    fn read(&mut self, lines: &[String]) {
        let seqs = |l: &str| {
            l[2..]
                .split_whitespace()
                .map(|x| x.parse::<u64>().unwrap())
                .collect::<Vec<_>>()
        };
        let mut group: Vec<&String> = Vec::new();
        for l in lines {
            match &l[..1] {
                "P" => self.maybe_removed.extend(seqs(l)),
                "A" => group = vec![l],
                _ => group.push(l),
            }
            // A group is only promised once its F line arrived (the flush returned Ok before
            // any of it was printed, but a kill may cut the group short).
            if group.len() == 4 && group[3].starts_with("F ") {
                for s in seqs(group[0]) {
                    self.stored.insert(s);
                    self.max_seq = self.max_seq.max(s);
                }
                self.removed.extend(seqs(group[1]));
                self.max_seq = self
                    .max_seq
                    .max(seqs(group[2]).into_iter().max().unwrap_or(0));
                self.floor = self.floor.max(group[3][2..].trim().parse().unwrap());
                group.clear();
            }
        }
    }
}

/// Runs one child until its first flush is printed, lets it go on for a random while, kills it.
fn run_child(dir: &std::path::Path, wait: Duration) -> Vec<String> {
    let exe = std::env::current_exe().unwrap();
    let mut c = Command::new(exe)
        .args([
            "--exact",
            "jetstream::store::tests_crash::kill9_keeps_every_flushed_message",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = c.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let (mut lines, mut first, mut r) = (Vec::new(), Some(tx), BufReader::new(stdout));
        loop {
            let mut line = String::new();
            // A line the kill cut short has no newline: it promises nothing.
            match r.read_line(&mut line) {
                Ok(n) if n > 0 && line.ends_with('\n') => line.pop(),
                _ => break,
            };
            if line.starts_with("F ") {
                if let Some(tx) = first.take() {
                    let _ = tx.send(());
                }
            }
            if line.len() > 1 && "PADSF".contains(&line[..1]) && line.as_bytes()[1] == b' ' {
                lines.push(line);
            }
        }
        lines
    });
    let started = rx.recv_timeout(Duration::from_secs(60)).is_ok();
    std::thread::sleep(wait);
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe { libc::kill(c.id() as i32, libc::SIGKILL) };
    let status = c.wait().unwrap();
    assert!(started, "the child never flushed (status {status:?})");
    reader.join().unwrap()
}

#[test]
fn kill9_keeps_every_flushed_message() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        child(&dir);
    }
    let d = TempDir::new("kill9");
    let dir = d.0.join("stream");
    let mut r = Rng(0xC0FFEE);
    let mut p = Promised::default();
    let rounds = std::env::var("STORE_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(24);
    for round in 0..rounds {
        let lines = run_child(&dir, Duration::from_millis(r.below(150)));
        p.read(&lines);
        let (mut s, rec) = Store::open_file(crash_cfg(&dir), crash_limits()).unwrap();
        let ctx = format!("round {round}: {:?} {rec:?}", s.state());
        p.verify(&s, &dir, &ctx);
        let next = s.state().last_seq + 1;
        assert_eq!(
            s.append(&subject(next), &hdr(next), &payload(next), 0)
                .unwrap(),
            next
        );
        flush_sync(&mut s);
        p.stored.insert(next);
        p.max_seq = next;
        // Opening and appending apply max_msgs too, and this flush made that durable.
        p.floor = s.state().first_seq;
    }
    eprintln!("kill -9: {rounds} rounds, {} messages stored", p.max_seq);
}

impl Promised {
    /// Every promise holds in the reopened store (invariants 1, 2, 3).
    fn verify(&self, s: &Store, dir: &std::path::Path, ctx: &str) {
        let (p, st) = (self, s.state());
        assert!(
            st.last_seq >= p.max_seq,
            "{ctx}: last_seq went back below {}",
            p.max_seq
        );
        assert!(
            st.first_seq >= p.floor,
            "{ctx}: the floor went back below {}",
            p.floor
        );
        // A flush may have succeeded after the last printed one (the kill came before its
        // lines): its appends may have pushed the oldest messages out under max_msgs. No more
        // of them may be missing than such later messages exist.
        let gone = |q: &&u64| !p.removed.contains(q) && !p.maybe_removed.contains(q);
        let pushed_out = p
            .stored
            .range(p.floor..st.first_seq.max(p.floor))
            .filter(gone)
            .count();
        let later = s.num_matching(p.max_seq + 1, None) as usize
            + p.maybe_removed.range(p.max_seq + 1..).count();
        assert!(
            pushed_out <= later,
            "{ctx}: {pushed_out} messages under the floor, {later} after"
        );
        for &seq in p.stored.range(st.first_seq.max(p.floor)..) {
            if p.removed.contains(&seq) {
                assert!(s.load(seq).is_none(), "{ctx}: removed seq {seq} is back");
                continue;
            }
            let m = match s.load(seq) {
                Some(m) => m,
                None if p.maybe_removed.contains(&seq) => continue,
                None => {
                    debug_dump(dir, seq);
                    panic!("{ctx}: flushed seq {seq} is gone")
                }
            };
            let want = (&subject(seq)[..], &hdr(seq)[..], &payload(seq)[..]);
            assert_eq!((m.subject(), m.hdr(), m.data()), want, "{ctx}");
        }
        for &seq in p.stored.range(..p.floor.min(st.first_seq)) {
            assert!(
                s.load(seq).is_none(),
                "{ctx}: seq {seq} under the floor is back"
            );
        }
        s.check().unwrap_or_else(|e| panic!("{ctx}: {e}"));
    }
}

/// Appends `n` messages and returns their sequences.
fn add(s: &mut Store, n: u64) -> Vec<u64> {
    (0..n)
        .map(|_| {
            let seq = s.state().last_seq + 1;
            s.append(&subject(seq), &hdr(seq), &payload(seq), seq as i64)
                .unwrap()
        })
        .collect()
}

fn intact(s: &Store, seqs: &[u64]) {
    for &seq in seqs {
        let m = s.load(seq).unwrap_or_else(|| panic!("seq {seq} gone"));
        assert_eq!(m.data(), &payload(seq)[..]);
    }
}

#[test]
fn full_disk_rolls_back_the_batch() {
    let d = TempDir::new("full");
    let dir = d.0.join("stream");
    let limits = StoreLimits {
        max_msgs: 40,
        ..StoreLimits::default()
    };
    let (mut s, _) = Store::open_file(
        FileConfig {
            dir: dir.clone(),
            segment_size: 2048,
        },
        limits.clone(),
    )
    .unwrap();
    let before = add(&mut s, 30);
    flush_sync(&mut s);
    let state = s.state();
    for space in [0u64, 1, 100, 1000, 3000] {
        // A batch that removes (limits, delete, purge) and rolls to new segments.
        let failed = add(&mut s, 25);
        assert!(s.remove(before[29], true));
        s.purge(Some(b"k.3"), None, None);
        fault::set_space(Some(space));
        let e = s.flush().expect_err("the disk is full");
        fault::set_space(None);
        assert!(
            matches!(e, StoreError::Io(ref io) if io.raw_os_error() == Some(libc::ENOSPC)),
            "{e}"
        );
        assert_eq!(
            s.state(),
            state,
            "space {space}: everything since the last flush is undone"
        );
        for &seq in &failed {
            assert!(s.load(seq).is_none());
        }
        intact(&s, &before[before.len() - 30..]);
        s.check().unwrap_or_else(|e| panic!("space {space}: {e}"));
        assert!(!s.is_failed());
    }
    // Space is back: the same sequence numbers are handed out again.
    let again = add(&mut s, 3);
    assert_eq!(again[0], state.last_seq + 1);
    flush_sync(&mut s);
    drop(s);
    let (s, rec) = Store::open_file(
        FileConfig {
            dir,
            segment_size: 2048,
        },
        limits,
    )
    .unwrap();
    assert_eq!(rec.lost_seqs, Vec::<u64>::new());
    intact(&s, &again);
    assert_eq!(s.state().last_seq, again[2]);
    s.check().unwrap();
}

#[test]
fn a_failed_rollback_makes_the_store_read_only() {
    let d = TempDir::new("ro");
    let dir = d.0.join("stream");
    let (mut s, _) = Store::open_file(FileConfig::new(&dir), StoreLimits::default()).unwrap();
    let kept = add(&mut s, 10);
    flush_sync(&mut s);
    add(&mut s, 10);
    fault::set_space(Some(500));
    fault::set_truncate_fails(true);
    assert!(s.flush().is_err());
    fault::set_space(None);
    fault::set_truncate_fails(false);
    assert!(s.is_failed());
    assert!(matches!(
        s.append(b"x", b"", b"", 0),
        Err(StoreError::Failed)
    ));
    assert!(matches!(s.flush(), Err(StoreError::Failed)));
    assert!(!s.remove(kept[0], false));
    intact(&s, &kept);
    assert_eq!(s.state().last_seq, 10);
    drop(s);
    // A restart reads what is there: the part of the failed batch that reached the file is
    // not a promise, but it is not damage either, so nothing is reported lost.
    let (mut s, rec) = Store::open_file(FileConfig::new(&dir), StoreLimits::default()).unwrap();
    intact(&s, &kept);
    assert!(!s.is_failed());
    assert!(rec.lost_seqs.iter().all(|&q| q > 10), "{rec:?}");
    let seq = s.append(b"x", b"", b"", 0).unwrap();
    assert!(seq > 10);
    flush_sync(&mut s);
}

const FSIZE_ENV: &str = "TERN_STORE_FSIZE_CHILD";

/// The child: a file size limit the kernel enforces (EFBIG), SIGXFSZ ignored. Prints `OK <seq>`
/// after each flush that succeeded, `ERR` at the first failure (after checking the rollback in
/// process), then lifts the limit and prints `OK` lines again.
fn fsize_child(dir: &str) {
    let mut hard = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: reading and setting this process's own resource limit and signal disposition.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        assert_eq!(libc::getrlimit(libc::RLIMIT_FSIZE, &mut hard), 0);
        let lim = libc::rlimit {
            rlim_cur: 64 << 10,
            rlim_max: hard.rlim_max,
        };
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &lim), 0);
    }
    let cfg = FileConfig {
        dir: dir.into(),
        segment_size: 1 << 20,
    };
    let (mut s, _) = Store::open_file(cfg, StoreLimits::default()).unwrap();
    let mut out = std::io::stdout().lock();
    loop {
        let state = s.state();
        add(&mut s, 20);
        match s.flush() {
            Ok(_) => writeln!(out, "OK {}", s.state().last_seq).unwrap(),
            Err(StoreError::Io(e)) => {
                assert_eq!(e.raw_os_error(), Some(libc::EFBIG), "{e}");
                assert_eq!(s.state(), state, "rolled back");
                s.check().unwrap();
                writeln!(out, "ERR").unwrap();
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    // SAFETY: as above; the soft limit goes back up to the hard one.
    unsafe {
        let lim = libc::rlimit {
            rlim_cur: hard.rlim_max,
            rlim_max: hard.rlim_max,
        };
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &lim), 0);
    }
    add(&mut s, 20);
    s.flush().unwrap();
    writeln!(out, "OK {}", s.state().last_seq).unwrap();
}

#[test]
fn file_size_limit_from_the_kernel() {
    if let Ok(dir) = std::env::var(FSIZE_ENV) {
        return fsize_child(&dir);
    }
    let d = TempDir::new("fsize");
    let dir = d.0.join("stream");
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "jetstream::store::tests_crash::file_size_limit_from_the_kernel",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(FSIZE_ENV, &dir)
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let oks: Vec<u64> = text
        .lines()
        .filter_map(|l| l.strip_prefix("OK "))
        .map(|x| x.parse().unwrap())
        .collect();
    assert!(text.contains("ERR") && oks.len() >= 2, "{text}");
    let (s, rec) = Store::open_file(FileConfig::new(&dir), StoreLimits::default()).unwrap();
    assert_eq!(
        (rec.lost_seqs.len(), rec.truncated_bytes),
        (0, 0),
        "{rec:?}"
    );
    let last = *oks.last().unwrap();
    assert_eq!(s.state().last_seq, last);
    intact(&s, &(1..=last).collect::<Vec<_>>());
    s.check().unwrap();
}

/// The kill test's bookkeeping, checked on its own.
#[test]
fn promised_groups_need_their_flush_line() {
    let mut p = Promised::default();
    let lines: Vec<String> = ["P ", "A 1 2", "D ", "S 3", "F 1", "P 1", "A 4", "D 1"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    p.read(&lines);
    assert_eq!(
        (
            p.stored.iter().copied().collect::<Vec<_>>(),
            p.max_seq,
            p.floor
        ),
        (vec![1, 2], 3, 1)
    );
    assert!(p.removed.is_empty());
    assert_eq!(p.maybe_removed.iter().copied().collect::<Vec<_>>(), vec![1]);
}

fn debug_dump(dir: &std::path::Path, seq: u64) {
    use super::record::{decode, Rec};
    let mut files: Vec<_> = std::fs::read_dir(dir.join("seg"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in files {
        let buf = std::fs::read(&f).unwrap();
        if f.extension().unwrap() != "seg" {
            eprintln!("{f:?}: {} bytes", buf.len());
            continue;
        }
        let mut pos = 0;
        let (mut lo, mut hi) = (u64::MAX, 0);
        while pos < buf.len() {
            match decode(&buf[pos..]) {
                Ok((Rec::Msg(m), n)) => {
                    lo = lo.min(m.seq);
                    hi = hi.max(m.seq);
                    if m.seq == seq {
                        eprintln!("{f:?}: record of {seq} at {pos} erased {}", m.erased);
                    }
                    pos += n;
                }
                Ok((Rec::Mark(k), n)) => {
                    if k.tombs.contains(&seq) || k.floor > seq {
                        eprintln!(
                            "{f:?}: mark at {pos}: floor {} last {} tombs has it {}",
                            k.floor,
                            k.last_seq,
                            k.tombs.contains(&seq)
                        );
                    }
                    pos += n;
                }
                Err(e) => {
                    eprintln!("{f:?}: bad at {pos}: {e:?}");
                    break;
                }
            }
        }
        eprintln!("{f:?}: {} bytes, msgs {lo}..={hi}", buf.len());
    }
}
