//! Store tests: behaviour of both stores, recovery from every kind of damage, crashes and a
//! full disk. Helpers here; the larger suites live in `tests_*.rs`.

use super::*;
use std::path::PathBuf;

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("tern-store-{}-{name}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn cfg(dir: &TempDir, segment_size: u64) -> FileConfig {
    FileConfig {
        dir: dir.0.join("stream"),
        segment_size,
    }
}

pub fn open(dir: &TempDir, segment_size: u64, limits: StoreLimits) -> (Store, Recovery) {
    Store::open_file(cfg(dir, segment_size), limits).expect("open")
}

/// Flushes and syncs on this thread, then reports the sync (what the loop does with the
/// sync thread's completion).
pub fn flush_sync(s: &mut Store) -> Flushed {
    let f = s.flush().expect("flush");
    f.target.sync_now().expect("sync");
    s.synced(f.id);
    f
}

#[test]
fn smoke_file_round_trip() {
    let d = TempDir::new("smoke");
    let (mut s, rec) = open(&d, 300, StoreLimits::default());
    assert_eq!(rec, Recovery::default());
    for i in 1..=20u64 {
        let hdr: &[u8] = if i % 3 == 0 {
            b"NATS/1.0\r\nk: v\r\n\r\n"
        } else {
            b""
        };
        let seq = s
            .append(
                format!("a.{}", i % 4).as_bytes(),
                hdr,
                format!("msg {i}").as_bytes(),
                i as i64,
            )
            .unwrap();
        assert_eq!(seq, i);
        if i % 5 == 0 {
            flush_sync(&mut s);
        }
    }
    assert!(s.remove(3, false));
    assert!(s.remove(4, true));
    flush_sync(&mut s);
    s.check().unwrap();
    let st = s.state();
    assert_eq!(
        (st.msgs, st.first_seq, st.last_seq, st.num_deleted),
        (18, 1, 20, 2)
    );
    drop(s);
    let (s, rec) = open(&d, 300, StoreLimits::default());
    assert!(rec.lost_seqs.is_empty(), "{rec:?}");
    s.check().unwrap();
    assert_eq!(s.state(), st);
    let m = s.load(6).unwrap();
    assert_eq!(
        (m.subject(), m.hdr(), m.data()),
        (&b"a.2"[..], &b"NATS/1.0\r\nk: v\r\n\r\n"[..], &b"msg 6"[..])
    );
    assert!(s.load(4).is_none());
}

#[test]
fn smoke_memory() {
    let mut s = Store::new_memory(StoreLimits {
        max_msgs: 5,
        ..StoreLimits::default()
    });
    for i in 1..=20u64 {
        s.append(b"x", b"", b"data", i as i64).unwrap();
    }
    s.flush().unwrap();
    s.check().unwrap();
    let st = s.state();
    assert_eq!(
        (st.msgs, st.first_seq, st.last_seq, st.bytes),
        (5, 16, 20, 5 * (1 + 4 + 16))
    );
}

fn seg_files(d: &TempDir) -> usize {
    std::fs::read_dir(d.0.join("stream/seg"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().unwrap() == "seg")
        .count()
}

#[test]
fn compaction_deletes_dead_segments() {
    let d = TempDir::new("compact");
    let (mut s, _) = open(
        &d,
        1024,
        StoreLimits {
            max_msgs: 100,
            ..StoreLimits::default()
        },
    );
    for i in 0..5000u64 {
        s.append(b"a.b", b"", &[7u8; 60], i as i64).unwrap();
        if i % 10 == 9 {
            flush_sync(&mut s);
        }
    }
    let files = seg_files(&d);
    // 100 messages of 96 bytes need about 10 segments of 1 KiB.
    assert!(files <= 14, "{files} segment files");
    s.check().unwrap();
}

fn unlimited() -> StoreLimits {
    StoreLimits::default()
}

#[test]
fn skips_and_a_purge_past_the_end_survive_a_restart() {
    let d = TempDir::new("skip");
    let (mut s, _) = open(&d, 4096, unlimited());
    assert_eq!(
        (s.state().first_seq, s.state().last_seq),
        (0, 0),
        "a fresh stream"
    );
    for want in 1..=3 {
        assert_eq!(s.skip(7).unwrap(), want);
    }
    flush_sync(&mut s);
    drop(s);
    let (mut s, _) = open(&d, 4096, unlimited());
    assert_eq!(
        (s.state().first_seq, s.state().last_seq, s.state().last_ts),
        (4, 3, 7)
    );
    assert_eq!(s.append(b"a", b"", b"x", 8).unwrap(), 4);
    s.skip(9).unwrap();
    assert_eq!(s.append(b"a", b"", b"y", 10).unwrap(), 6);
    assert_eq!(s.purge(None, Some(1000), None), 2);
    assert_eq!((s.state().first_seq, s.state().last_seq), (1000, 999));
    flush_sync(&mut s);
    drop(s);
    let (mut s, rec) = open(&d, 4096, unlimited());
    assert!(rec.lost_seqs.is_empty());
    assert_eq!(
        (s.state().first_seq, s.state().last_seq, s.state().msgs),
        (1000, 999, 0)
    );
    assert_eq!(s.append(b"a", b"", b"z", 11).unwrap(), 1000);
    flush_sync(&mut s);
    s.check().unwrap();
}

#[test]
fn removals_survive_a_restart_with_looser_limits() {
    let d = TempDir::new("limits");
    let strict = StoreLimits {
        max_msgs: 5,
        max_msgs_per_subject: 1,
        ..unlimited()
    };
    let (mut s, _) = open(&d, 256, strict);
    for i in 1..=20u64 {
        let subj = if i % 2 == 0 { "even" } else { "odd" };
        s.append(subj.as_bytes(), b"", format!("{i}").as_bytes(), i as i64)
            .unwrap();
        if i % 3 == 0 {
            flush_sync(&mut s);
        }
    }
    flush_sync(&mut s);
    let st = s.state();
    assert_eq!((st.msgs, st.first_seq, st.last_seq), (2, 19, 20));
    drop(s);
    // Limits raised while stopped: what was dropped stays dropped.
    let (s, _) = open(&d, 256, unlimited());
    assert_eq!(s.state(), st);
    assert_eq!(
        s.subjects(None),
        vec![(b"even".to_vec(), 1), (b"odd".to_vec(), 1)]
    );
    s.check().unwrap();
}

#[test]
fn erase_overwrites_the_payload_on_disk() {
    let d = TempDir::new("erase");
    let (mut s, _) = open(&d, 1 << 20, unlimited());
    s.append(b"k", b"", b"first-secret-payload", 1).unwrap();
    s.append(b"k", b"", b"keep-me", 2).unwrap();
    flush_sync(&mut s);
    s.append(b"k", b"NATS/1.0\r\nh: second-secret\r\n\r\n", b"x", 3)
        .unwrap();
    assert!(
        s.remove(1, true),
        "flushed: erased after the tombstone is written"
    );
    assert!(s.remove(3, true), "not flushed yet: erased in the buffer");
    flush_sync(&mut s);
    let seg = std::fs::read(d.0.join("stream/seg/0000000001.seg")).unwrap();
    let has = |needle: &[u8]| seg.windows(needle.len()).any(|w| w == needle);
    assert!(!has(b"secret") && has(b"keep-me"));
    drop(s);
    let (s, rec) = open(&d, 1 << 20, unlimited());
    assert!(rec.lost_seqs.is_empty());
    assert_eq!((s.load(1), s.load(3)), (None, None));
    assert_eq!(s.load(2).unwrap().data(), b"keep-me");
    s.check().unwrap();
}

#[test]
fn expiry_and_time_lookup() {
    let d = TempDir::new("age");
    let limits = StoreLimits {
        max_age: std::time::Duration::from_nanos(100),
        ..unlimited()
    };
    let (file, _) = open(&d, 200, limits.clone());
    for mut s in [file, Store::new_memory(limits)] {
        for ts in 1000..1040i64 {
            s.append(b"t", b"", &[1u8; 30], ts).unwrap();
            if ts % 4 == 0 {
                flush_sync(&mut s);
            }
        }
        assert_eq!(s.seq_at_or_after_time(1007), Some(8));
        assert_eq!(s.seq_at_or_after_time(0), Some(1));
        assert_eq!(s.seq_at_or_after_time(5000), None);
        // Everything stamped at or before 1105 - 100 goes; the next expires at 1006 + 100.
        assert_eq!(s.expire(1105), Some(1106));
        assert_eq!((s.state().first_seq, s.first_ts()), (7, 1006));
        assert_eq!(s.expire(1138), Some(1139));
        assert_eq!(s.state().first_seq, 40);
        assert_eq!(s.expire(5000), None);
        assert_eq!((s.state().msgs, s.state().first_seq), (0, 41));
        flush_sync(&mut s);
        s.check().unwrap();
    }
}

#[test]
fn last_seq_survives_when_every_segment_is_dropped() {
    let d = TempDir::new("alldrop");
    let (mut s, _) = open(&d, 128, unlimited());
    for i in 0..50u64 {
        s.append(b"x", b"", &[0u8; 40], i as i64).unwrap();
    }
    flush_sync(&mut s);
    assert!(seg_files(&d) > 10);
    assert_eq!(s.purge(None, None, None), 50);
    flush_sync(&mut s);
    assert_eq!(seg_files(&d), 1, "only the active segment is left");
    drop(s);
    let (mut s, _) = open(&d, 128, unlimited());
    assert_eq!(
        (s.state().first_seq, s.state().last_seq, s.state().msgs),
        (51, 50, 0)
    );
    assert_eq!(s.append(b"x", b"", b"", 0).unwrap(), 51);
}

#[test]
fn index_files_wait_for_a_sync() {
    let d = TempDir::new("wait");
    let (mut s, _) = open(&d, 256, unlimited());
    let idx = |d: &TempDir| {
        std::fs::read_dir(d.0.join("stream/seg"))
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension().unwrap() == "idx")
            .count()
    };
    let mut ids = Vec::new();
    for i in 0..40u64 {
        s.append(b"x", b"", &[0u8; 40], i as i64).unwrap();
        let f = s.flush().unwrap();
        ids.push(f.id);
        if seg_files(&d) > 1 {
            assert!(f.wants_sync, "a sealed segment waits for its index file");
        }
    }
    assert_eq!(idx(&d), 0, "no sync, no index file");
    let (id, target) = s.sync_target().expect("unsynced writes");
    assert_eq!(id, *ids.last().unwrap());
    assert!(
        target.files.len() >= 2,
        "every segment written since the last sync"
    );
    target.sync_now().unwrap();
    s.synced(id);
    assert_eq!(idx(&d), seg_files(&d) - 1);
    assert!(s.sync_target().is_none());
    drop(s);
    let (_, rec) = open(&d, 256, unlimited());
    assert_eq!(rec.segments_scanned, 1, "{rec:?}");
}

#[test]
fn indexes_describe_holes_breaks_and_marks() {
    let d = TempDir::new("shapes");
    let (mut s, _) = open(
        &d,
        400,
        StoreLimits {
            max_msgs_per_subject: 2,
            ..unlimited()
        },
    );
    let mut r = super::tests_model::Rng(77);
    for i in 0..400u64 {
        match r.below(10) {
            0 => {
                for _ in 0..r.below(200) {
                    s.skip(i as i64).unwrap();
                }
            }
            1 => {
                let seq = r.below(s.state().last_seq + 1);
                s.remove(seq, r.chance(50));
            }
            _ => {
                let subj = format!("s.{}", r.below(9));
                s.append(subj.as_bytes(), b"", &[3u8; 20], i as i64)
                    .unwrap();
            }
        }
        if r.chance(20) {
            flush_sync(&mut s);
        }
    }
    flush_sync(&mut s);
    s.check().unwrap();
    let want = s.state();
    drop(s);
    let (s, rec) = open(
        &d,
        400,
        StoreLimits {
            max_msgs_per_subject: 2,
            ..unlimited()
        },
    );
    assert_eq!(
        rec.segments_scanned, 1,
        "every sealed segment loads from its index: {rec:?}"
    );
    assert_eq!(s.state(), want);
    s.check().unwrap();
}

#[test]
fn bad_input_is_refused_without_change() {
    let d = TempDir::new("bad");
    let (file, _) = open(&d, 4096, unlimited());
    for mut s in [file, Store::new_memory(unlimited())] {
        assert!(matches!(
            s.append(b"", b"", b"x", 0),
            Err(StoreError::BadSubject)
        ));
        let long = vec![b'a'; 70_000];
        assert!(matches!(
            s.append(&long, b"", b"x", 0),
            Err(StoreError::BadSubject)
        ));
        let st = s.state();
        assert_eq!((st.last_seq, st.msgs), (0, 0));
        assert_eq!(s.append(b"ok", b"", b"", 0).unwrap(), 1);
    }
    fn sendable<T: Send>() {}
    sendable::<Store>();
}
