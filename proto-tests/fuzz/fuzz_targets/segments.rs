//! File store recovery from any segment and index files: `Store::open_file` never panics,
//! `check()` passes on what it opened, appends after recovery work and survive a reopen.
//!
//! Input: a flags byte, then files, each `tag u8, len u16 LE, bytes`. Tag bit 0: a segment
//! (0) or an index file (1); tag >> 1 picks its id (0..=124: 1..=125; 125, 126: u32::MAX - 1
//! and u32::MAX; 127: 1,000,000). The flags:
//! - bit 0: fix every record's CRC in the segments (so mutations reach what lies behind it);
//! - bit 1: fix index files' own CRC; bit 2: first make an index file name its segment's
//!   length and last CRC (the other two trust rules);
//! - bits 3-4: the limits given to `open_file` (none, max_msgs, max_bytes, per subject and
//!   max_age); bits 5-6: the segment size (64 B to 8 MiB).
//!
//! `check()` (every segment read back equals the index) is asked of a run only if its first
//! recovery believed no index file. A believed index file stands for its segment without it
//! being read (idx.rs: the trust rules look at the file's own CRC, the segment's length and
//! its last record only), so damage elsewhere in that segment, or an index forged with bits 1
//! and 2, is by design found later, when a read finds the record damaged and reports it lost.
//! Every run must still open without a panic, take appends and keep them across a reopen.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use tern::jetstream::store::crc::crc32c;
use tern::jetstream::store::{FileConfig, Store, StoreError, StoreLimits};

/// A record needs at least a header (21 bytes) and a CRC.
const MIN_RECORD: usize = 25;

fn fix_records(buf: &mut [u8]) {
    let mut pos = 0;
    while pos + MIN_RECORD <= buf.len() {
        let len = u32::from_le_bytes([buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3]]) as usize;
        if len < MIN_RECORD || len > buf.len() - pos {
            return;
        }
        let crc = crc32c(&buf[pos..pos + len - 4]);
        buf[pos + len - 4..pos + len].copy_from_slice(&crc.to_le_bytes());
        pos += len;
    }
}

fn fix_index(buf: &mut [u8], seg: Option<&Vec<u8>>, flags: u8) {
    if buf.len() < 80 {
        return;
    }
    if flags & 4 != 0 {
        if let Some(s) = seg {
            buf[4..12].copy_from_slice(&(s.len() as u64).to_le_bytes());
            if s.len() >= 4 {
                buf[12..16].copy_from_slice(&s[s.len() - 4..]);
            }
        }
    }
    if flags & 2 != 0 {
        let end = buf.len() - 4;
        let crc = crc32c(&buf[..end]);
        buf[end..].copy_from_slice(&crc.to_le_bytes());
    }
}

fn id_of(tag: u8) -> u32 {
    match tag >> 1 {
        125 => u32::MAX - 1,
        126 => u32::MAX,
        127 => 1_000_000,
        n => u32::from(n) + 1,
    }
}

/// (segments, index files) by id; a later file with the same id replaces the earlier one.
type Files = (BTreeMap<u32, Vec<u8>>, BTreeMap<u32, Vec<u8>>);

fn files(mut data: &[u8], flags: u8) -> Files {
    let (mut segs, mut idxs) = (BTreeMap::new(), BTreeMap::new());
    while data.len() >= 3 {
        let (tag, len) = (data[0], usize::from(u16::from_le_bytes([data[1], data[2]])));
        let body = &data[3..];
        let bytes = body[..len.min(body.len())].to_vec();
        data = &body[bytes.len()..];
        if tag & 1 == 0 {
            segs.insert(id_of(tag), bytes);
        } else {
            idxs.insert(id_of(tag), bytes);
        }
    }
    if flags & 1 != 0 {
        segs.values_mut().for_each(|b| fix_records(b));
    }
    for (id, b) in &mut idxs {
        fix_index(b, segs.get(id), flags);
    }
    (segs, idxs)
}

fn limits(flags: u8) -> StoreLimits {
    let mut l = StoreLimits::default();
    match (flags >> 3) & 3 {
        1 => l.max_msgs = 5,
        2 => l.max_bytes = 400,
        3 => {
            l.max_msgs_per_subject = 1;
            l.max_age = Duration::from_secs(3600);
        }
        _ => {}
    }
    l
}

/// The store, and how many index files its recovery believed (see the module comment).
fn open(dir: &Path, flags: u8) -> (Store, usize) {
    let cfg = FileConfig {
        dir: dir.to_path_buf(),
        segment_size: [64, 300, 4096, 8 << 20][usize::from((flags >> 5) & 3)],
    };
    let (store, rec) = Store::open_file(cfg, limits(flags)).expect("open_file");
    (store, rec.segments_indexed)
}

fn check(s: &Store, strict: bool) -> Result<(), String> {
    if strict {
        s.check()
    } else {
        Ok(())
    }
}

/// Every message readable now, by sequence.
fn contents(s: &Store) -> Vec<(u64, Vec<u8>, Vec<u8>, Vec<u8>)> {
    let st = s.state();
    let mut v = Vec::new();
    if st.msgs == 0 {
        return v;
    }
    let mut seq = st.first_seq;
    while let Some(n) = s.next_matching(seq, None) {
        if let Some(m) = s.load(n) {
            v.push((n, m.subject().to_vec(), m.hdr().to_vec(), m.data().to_vec()));
        }
        if n >= st.last_seq || v.len() > 100_000 {
            break;
        }
        seq = n + 1;
    }
    v
}

fn flush(s: &mut Store, what: &str, strict: bool) {
    if let Err(e) = s.flush() {
        panic!("flush after {what}: {e}");
    }
    if let Err(e) = check(s, strict) {
        panic!("check after {what}: {e}");
    }
}

fn exercise(dir: &Path, flags: u8) {
    let (mut s, indexed) = open(dir, flags);
    let strict = indexed == 0;
    if let Err(e) = check(&s, strict) {
        panic!("check after open: {e}");
    }
    let before = s.state();
    let _ = contents(&s);
    let now = 1_700_000_000_000_000_000i64;
    let mut appended = Vec::new();
    for i in 0..8u8 {
        let subject = [b"a.b".as_slice(), b"c", b"a.d"][usize::from(i % 3)];
        let hdr: &[u8] = if i % 2 == 0 {
            b""
        } else {
            b"NATS/1.0\r\nk: v\r\n\r\n"
        };
        let data = vec![i; usize::from(i) * 7];
        let seq = match s.append(subject, hdr, &data, now) {
            Ok(seq) => seq,
            // The last sequence read back is at 2^62, the most a record carries.
            Err(StoreError::SeqExhausted) => break,
            Err(e) => panic!("append after recovery: {e}"),
        };
        assert!(
            seq > before.last_seq,
            "seq {seq} after last {}",
            before.last_seq
        );
        appended.push(seq);
    }
    flush(&mut s, "appends", strict);
    if let [_, a, b, ..] = appended[..] {
        s.remove(a, false);
        s.remove(b, true);
    }
    flush(&mut s, "removes", strict);
    let _ = s.expire(now);
    flush(&mut s, "expiry", strict);
    if let Some((id, _)) = s.sync_target() {
        s.synced(id);
    }
    flush(&mut s, "a sync", strict);
    let kept = contents(&s);
    let last = s.state().last_seq;
    drop(s);
    let (s, _) = open(dir, flags);
    if let Err(e) = check(&s, strict) {
        panic!("check after reopen: {e}");
    }
    assert!(s.state().last_seq >= last, "last seq went back from {last}");
    let again = contents(&s);
    for m in kept.iter().filter(|m| appended.contains(&m.0)) {
        assert!(again.contains(m), "message {} lost by a reopen", m.0);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let (segs, idxs) = files(rest, flags);
    let dir = std::env::temp_dir().join(format!("tern-fuzz-seg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let seg_dir = dir.join("seg");
    std::fs::create_dir_all(&seg_dir).expect("mkdir");
    for (id, b) in &segs {
        std::fs::write(seg_dir.join(format!("{id:010}.seg")), b).expect("write");
    }
    for (id, b) in &idxs {
        std::fs::write(seg_dir.join(format!("{id:010}.idx")), b).expect("write");
    }
    exercise(&dir, flags);
    let _ = std::fs::remove_dir_all(&dir);
});
