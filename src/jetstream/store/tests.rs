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
