//! The consumer's state on disk: random events against a model, reopened cleanly and
//! with the log cut at every byte of its last write; damaged snapshots; and kill -9 of a
//! child process that publishes, delivers, acks and flushes like the loop, after which
//! every printed ack must hold and every unacked message must come again.

use super::config::AckPolicy;
use super::persist::{self, Log};
use super::state::{Event, State};
use super::tests::{num, H, SEC};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tern-cpersist-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn same(a: &State, b: &State) -> bool {
    (a.sseq, a.dseq, a.adflr, a.asflr, &a.pending, &a.rdc)
        == (b.sseq, b.dseq, b.adflr, b.asflr, &b.pending, &b.rdc)
}

/// A random but valid event for `s`.
fn event(s: &mut State, r: &mut Rng, now: i64) -> Event {
    let pending: Vec<u64> = s.pending.keys().copied().collect();
    match r.below(10) {
        0..=3 => Event::Deliver {
            sseq: s.sseq,
            dseq: s.dseq,
            dc: 1,
            ts: now,
        },
        4 | 5 if !pending.is_empty() => {
            let sseq = pending[r.below(pending.len() as u64) as usize];
            let dseq = s.pending[&sseq].dseq;
            Event::Ack { sseq, dseq }
        }
        6 if !pending.is_empty() => {
            let sseq = pending[r.below(pending.len() as u64) as usize];
            let dc = s.next_dc(sseq);
            Event::Deliver {
                sseq,
                dseq: s.dseq,
                dc,
                ts: now,
            }
        }
        7 if !pending.is_empty() => Event::Touch {
            sseq: pending[0],
            ts: now,
        },
        8 if !pending.is_empty() => Event::Exhaust { sseq: pending[0] },
        9 if r.below(20) == 0 => Event::Purge { sseq: s.sseq },
        _ => Event::Drop {
            sseq: s.asflr.saturating_sub(1),
        },
    }
}

#[test]
fn random_events_survive_reopen_and_compaction() {
    let dir = tmp("model");
    for policy in [AckPolicy::Explicit, AckPolicy::All, AckPolicy::None] {
        let _ = std::fs::remove_dir_all(&dir);
        let mut r = Rng(0x9E37_79B9_7F4A_7C15 ^ policy as u64);
        let mut model = State::starting(1);
        let mut log = Log::create(&dir, &model).unwrap();
        log.compact_at = 4096;
        for pass in 0..300 {
            for _ in 0..1 + r.below(20) {
                let ev = event(&mut model, &mut r, pass);
                model.apply(ev, policy);
                log.push(&ev);
            }
            log.flush(&model).unwrap();
            if pass % 37 == 0 {
                drop(log);
                let (l, back, _) = Log::recover(&dir, policy, || State::starting(1)).unwrap();
                assert!(same(&back, &model), "{policy:?} pass {pass}");
                log = l;
                log.compact_at = 4096;
            }
        }
        assert!(log.generation() > 2, "compaction ran");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The last write cut at every byte: recovery gives the state after some whole prefix of
/// its records, never more, never a mix.
#[test]
fn a_torn_last_write_loses_only_unwritten_records() {
    let dir = tmp("torn");
    let policy = AckPolicy::Explicit;
    let mut r = Rng(77);
    let mut model = State::starting(1);
    let mut log = Log::create(&dir, &model).unwrap();
    for pass in 0..20 {
        for _ in 0..5 {
            let ev = event(&mut model, &mut r, pass);
            model.apply(ev, policy);
            log.push(&ev);
        }
        log.flush(&model).unwrap();
    }
    let path = dir.join("log.1");
    let before = std::fs::metadata(&path).unwrap().len() as usize;
    // The last pass, and the model after each of its records.
    let mut prefixes = vec![model.clone()];
    for _ in 0..6 {
        let ev = event(&mut model, &mut r, 99);
        model.apply(ev, policy);
        log.push(&ev);
        prefixes.push(model.clone());
    }
    log.flush(&model).unwrap();
    drop(log);
    let full = std::fs::read(&path).unwrap();
    let mut seen = BTreeSet::new();
    for cut in before..=full.len() {
        std::fs::write(&path, &full[..cut]).unwrap();
        let (log, back, rec) = Log::recover(&dir, policy, || State::starting(1)).unwrap();
        drop(log);
        let k = prefixes.iter().position(|p| same(p, &back));
        assert!(k.is_some(), "cut at {cut}: a state that is no prefix");
        if cut == full.len() {
            assert_eq!(k, Some(prefixes.len() - 1));
        }
        seen.extend(k);
        assert!(rec.cut < 64, "only the torn record is cut");
    }
    // Every whole prefix of the last write was reached at some cut.
    assert_eq!(seen.len(), prefixes.len(), "{seen:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn damaged_snapshots_fall_back() {
    let dir = tmp("snap");
    let policy = AckPolicy::Explicit;
    let mut s = State::starting(1);
    let mut log = Log::create(&dir, &s).unwrap();
    log.compact_at = 64;
    let mut r = Rng(5);
    for pass in 0..40 {
        let ev = event(&mut s, &mut r, pass);
        s.apply(ev, policy);
        log.push(&ev);
        log.flush(&s).unwrap();
    }
    let gen = log.generation();
    assert!(gen >= 3);
    drop(log);
    // The newest snapshot damaged: the previous generation (whose log is complete up to
    // the compaction) comes back, reported.
    let newest = dir.join(format!("snap.{gen}"));
    let mut b = std::fs::read(&newest).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 0xff;
    std::fs::write(&newest, &b).unwrap();
    let (_, back, rec) = Log::recover(&dir, policy, || State::starting(1)).unwrap();
    assert!(rec.bad_snapshot);
    assert_eq!(rec.gen, gen - 1);
    assert!(back.dseq <= s.dseq);
    // Nothing readable: start over, nothing invented.
    for g in 0..=gen {
        let _ = std::fs::write(dir.join(format!("snap.{g}")), b"junk");
    }
    let (_, back, _) = Log::recover(&dir, policy, || State::starting(7)).unwrap();
    assert!(same(&back, &State::starting(7)));
    assert!(persist::parse_snapshot(b"").is_none());
    let _ = std::fs::remove_dir_all(&dir);
}

const CHILD_ENV: &str = "TERN_CONSUMER_CHILD";
const STREAM: &str = r#"{"name":"S","subjects":["s.>"]}"#;

/// The child: publish, deliver (pull), ack some, flush streams then consumers, print what
/// the flush made durable: `P <seq>` stored, `K <seq>` acked.
fn child(dir: &str) -> ! {
    let mut h = H::reopen(Path::new(dir), STREAM);
    let mut r = Rng(std::process::id() as u64 | 1);
    let out = std::io::stdout();
    loop {
        h.now = crate::jetstream::account::to_ns(std::time::SystemTime::now());
        let mut stored = Vec::new();
        for _ in 0..1 + r.below(10) {
            h.publish("s.a", b"payload");
            stored.push(h.acc.streams["S"].store.state().last_seq);
        }
        h.req_reply("$JS.API.CONSUMER.MSG.NEXT.S.C", "_INBOX.c", "20");
        let mut acked = Vec::new();
        for o in h.poll() {
            if o.seq > 0 && r.below(3) > 0 {
                h.ack(&o.reply, "");
                acked.push(o.seq);
            }
        }
        // Acks become durable with the next flush: announce them first, so the parent
        // knows they may have happened even if the kill comes before `K`.
        let maybe: String = acked.iter().map(|s| format!("M {s}\n")).collect();
        {
            use std::io::Write;
            out.lock().write_all(maybe.as_bytes()).unwrap();
        }
        // Real time: the parent's clock after the restart must be later than the
        // child's deliveries.
        h.now = crate::jetstream::account::to_ns(std::time::SystemTime::now());
        h.poll();
        let mut lines = String::new();
        for s in stored {
            lines.push_str(&format!("P {s}\n"));
        }
        for s in acked {
            lines.push_str(&format!("K {s}\n"));
        }
        use std::io::Write;
        out.lock().write_all(lines.as_bytes()).unwrap();
    }
}

#[test]
fn kill9_keeps_every_written_ack() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        child(&dir);
    }
    let dir = tmp("kill9");
    {
        let mut h = H::reopen(&dir, STREAM);
        h.req(
            "$JS.API.CONSUMER.CREATE.S.C",
            r#"{"stream_name":"S","config":{"durable_name":"C","ack_policy":"explicit","ack_wait":2000000000}}"#,
        );
        h.poll();
    }
    let (mut stored, mut acked, mut maybe) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    for round in 0..5u64 {
        let lines = run_child(&dir, Duration::from_millis(50 + round * 40));
        for l in lines {
            let seq: u64 = l[2..].parse().unwrap();
            match &l[..1] {
                "P" => stored.insert(seq),
                "M" => maybe.insert(seq),
                _ => acked.insert(seq),
            };
        }
    }
    assert!(!acked.is_empty(), "the children acked something");
    // Recover, and take everything the consumer still has to give.
    let mut h = H::reopen(&dir, STREAM);
    h.sub("_INBOX.>");
    let mut again = BTreeSet::new();
    let mut quiet = 0;
    while quiet < 2 {
        h.req_reply("$JS.API.CONSUMER.MSG.NEXT.S.C", "_INBOX.c", "900");
        let got: Vec<_> = h
            .advance(3 * SEC)
            .into_iter()
            .filter(|o| o.seq > 0)
            .collect();
        quiet = if got.is_empty() { quiet + 1 } else { 0 };
        for o in got {
            again.insert(o.seq);
            h.ack(&o.reply, "");
        }
    }
    let twice: Vec<&u64> = acked.intersection(&again).take(20).collect();
    assert!(
        twice.is_empty(),
        "acked and written, yet redelivered: {twice:?}"
    );
    let lost: Vec<&u64> = stored
        .difference(&acked)
        .filter(|s| !again.contains(s) && !maybe.contains(s))
        .take(20)
        .collect();
    assert!(
        lost.is_empty(),
        "stored, never acked, never redelivered: {lost:?}"
    );
    eprintln!(
        "kill -9: {} stored, {} acked before a kill, {} delivered after",
        stored.len(),
        acked.len(),
        again.len()
    );
    assert_eq!(num(&h.info("C"), "num_ack_pending"), 0);
    drop(h);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs the child for `wait` after its first line, then SIGKILL; returns its whole lines.
fn run_child(dir: &Path, wait: Duration) -> Vec<String> {
    let exe = std::env::current_exe().unwrap();
    let mut c = Command::new(exe)
        .args([
            "--exact",
            "jetstream::consumer::tests_persist::kill9_keeps_every_written_ack",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = c.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        let mut r = BufReader::new(stdout);
        loop {
            let mut line = String::new();
            match r.read_line(&mut line) {
                Ok(n) if n > 0 && line.ends_with('\n') => line.pop(),
                _ => break,
            };
            let kind = line.get(..2).unwrap_or("");
            if line.len() > 2 && ["P ", "K ", "M "].contains(&kind) {
                lines.push(line);
            }
        }
        lines
    });
    std::thread::sleep(wait + Duration::from_millis(150));
    let _ = c.kill();
    let _ = c.wait();
    reader.join().unwrap()
}

/// Sequences no stream reaches (above 2^62, as in the store's records) in a log record or a
/// snapshot that check out: the record ends the log, the snapshot is bad, and nothing
/// overflows. Found by the consumer_state fuzz target (a delivery of dseq u64::MAX
/// overflowed `dseq + 1` on replay).
#[test]
fn impossible_sequences_are_damage() {
    let dir = tmp("impossible");
    let policy = AckPolicy::Explicit;
    let s = State::starting(1);
    let mut log = Log::create(&dir, &s).unwrap();
    let ok = Event::Deliver {
        sseq: 1,
        dseq: 1,
        dc: 1,
        ts: 5,
    };
    log.push(&ok);
    log.push(&Event::Deliver {
        sseq: 2,
        dseq: u64::MAX,
        dc: 1,
        ts: 6,
    });
    log.push(&Event::Ack { sseq: 1, dseq: 1 });
    log.flush(&s).unwrap();
    drop(log);
    let (_, back, rec) = Log::recover(&dir, policy, || State::starting(1)).unwrap();
    assert_eq!((rec.events, back.dseq, back.sseq), (1, 2, 2));
    let mut bad = State::starting(u64::MAX);
    bad.dseq = u64::MAX;
    assert!(persist::parse_snapshot(&persist::snapshot_bytes(1, &bad)).is_none());
    let good = persist::snapshot_bytes(1, &back);
    assert!(persist::parse_snapshot(&good).is_some());
    let _ = std::fs::remove_dir_all(&dir);
}
