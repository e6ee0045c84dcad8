//! Recovery from damage (invariant 4): torn tails at every byte, flipped bits anywhere,
//! missing and bad index files, damage in the middle with good records after it. Each time
//! the store must open, keep every intact message byte for byte, report the rest in `lost`,
//! and go on taking messages after everything it had.

use super::record::{decode, Rec};
use super::tests::{cfg, flush_sync, TempDir};
use super::tests_model::Rng;
use super::*;
use std::fs;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, PartialEq)]
struct Msg {
    seq: u64,
    subject: Vec<u8>,
    hdr: Vec<u8>,
    data: Vec<u8>,
}

/// `n` messages in a store with small segments, flushed and synced in batches (so sealed
/// segments have index files), then closed.
fn build(dir: &TempDir, n: u64, segment_size: u64) -> Vec<Msg> {
    let (mut s, _) = Store::open_file(cfg(dir, segment_size), StoreLimits::default()).unwrap();
    let mut r = Rng(n * 7919 + 1);
    let mut out = Vec::new();
    for i in 1..=n {
        let subject = format!("r.{}", i % 5).into_bytes();
        let hdr = if i % 4 == 0 {
            b"NATS/1.0\r\nx: y\r\n\r\n".to_vec()
        } else {
            vec![]
        };
        let data: Vec<u8> = (0..r.below(90)).map(|_| r.next() as u8).collect();
        let seq = s.append(&subject, &hdr, &data, i as i64 * 10).unwrap();
        out.push(Msg {
            seq,
            subject,
            hdr,
            data,
        });
        if i % 7 == 0 {
            flush_sync(&mut s);
        }
    }
    flush_sync(&mut s);
    out
}

fn seg_dir(dir: &Path) -> PathBuf {
    dir.join("seg")
}

/// Segment files, ascending.
fn segments(stream: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(seg_dir(stream))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().unwrap() == "seg")
        .collect();
    v.sort();
    v
}

fn copy_stream(from: &Path, to: &Path) {
    let _ = fs::remove_dir_all(to);
    fs::create_dir_all(seg_dir(to)).unwrap();
    for e in fs::read_dir(seg_dir(from)).unwrap() {
        let p = e.unwrap().path();
        fs::copy(&p, seg_dir(to).join(p.file_name().unwrap())).unwrap();
    }
}

/// `(start, end, seq)` of each message record of a segment file (test-side decoding).
fn spans(seg: &Path) -> Vec<(usize, usize, u64)> {
    let buf = fs::read(seg).unwrap();
    let (mut pos, mut out) = (0, Vec::new());
    while let Ok((rec, n)) = decode(&buf[pos..]) {
        if let Rec::Msg(m) = rec {
            out.push((pos, pos + n, m.seq));
        }
        pos += n;
    }
    assert_eq!(pos, buf.len(), "test store must be undamaged");
    out
}

fn load(s: &Store, m: &Msg) -> Option<Msg> {
    let x = s.load(m.seq)?;
    Some(Msg {
        seq: x.seq,
        subject: x.subject().to_vec(),
        hdr: x.hdr().to_vec(),
        data: x.data().to_vec(),
    })
}

fn open_at(stream: &Path) -> (Store, Recovery) {
    let c = FileConfig {
        dir: stream.to_path_buf(),
        segment_size: 700,
    };
    Store::open_file(c, StoreLimits::default()).expect("recovery must not refuse to start")
}

/// After damage: the store takes a new message after everything it kept or reported lost,
/// and is consistent again after a flush and a reopen.
fn still_works(stream: &Path, mut s: Store, known_max: u64) {
    let seq = s.append(b"after", b"", b"x", 1).unwrap();
    assert!(seq > known_max, "new seq {seq} must follow {known_max}");
    flush_sync(&mut s);
    drop(s);
    let (s, _) = open_at(stream);
    assert_eq!(s.load(seq).unwrap().data(), b"x");
}

#[test]
fn torn_tail_at_every_byte() {
    let d = TempDir::new("torn");
    let msgs = build(&d, 40, 700);
    let stream = cfg(&d, 700).dir;
    let active = segments(&stream).pop().unwrap();
    let sp = spans(&active);
    assert!(sp.len() >= 3, "the active segment needs a few records");
    let from = sp[sp.len() - 3].0;
    let len = fs::metadata(&active).unwrap().len() as usize;
    let trial = d.0.join("trial");
    for cut in from..=len {
        copy_stream(&stream, &trial);
        let f = fs::OpenOptions::new()
            .write(true)
            .open(seg_dir(&trial).join(active.file_name().unwrap()))
            .unwrap();
        f.set_len(cut as u64).unwrap();
        let (s, rec) = open_at(&trial);
        let whole_end = sp
            .iter()
            .map(|x| x.1)
            .filter(|&e| e <= cut)
            .max()
            .unwrap_or(0)
            .max(from);
        assert_eq!(rec.truncated_bytes, (cut - whole_end) as u64, "cut {cut}");
        for m in &msgs {
            let span = sp.iter().find(|x| x.2 == m.seq);
            match span {
                Some(&(start, end, _)) if end > cut => {
                    assert_eq!(load(&s, m), None, "cut {cut}: seq {} is cut", m.seq);
                    let header_left = start < cut && cut - start >= 13;
                    assert_eq!(
                        rec.lost_seqs.contains(&m.seq),
                        header_left,
                        "cut {cut}: lost {:?}",
                        rec.lost_seqs
                    );
                }
                _ => assert_eq!(
                    load(&s, m).as_ref(),
                    Some(m),
                    "cut {cut}: seq {} is intact",
                    m.seq
                ),
            }
        }
        s.check().unwrap_or_else(|e| panic!("cut {cut}: {e}"));
        let kept = msgs
            .iter()
            .filter(|m| s.load(m.seq).is_some())
            .map(|m| m.seq)
            .max()
            .unwrap_or(0);
        let known = kept.max(rec.lost_seqs.iter().copied().max().unwrap_or(0));
        still_works(&trial, s, known);
    }
}

#[test]
fn flipped_bits_anywhere() {
    let d = TempDir::new("flip");
    let msgs = build(&d, 80, 600);
    let stream = cfg(&d, 600).dir;
    let mut files: Vec<PathBuf> = fs::read_dir(seg_dir(&stream))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(
        files.iter().any(|f| f.extension().unwrap() == "idx"),
        "sealed segments have index files"
    );
    let trial = d.0.join("trial");
    let last_seg = segments(&stream).pop().unwrap();
    let mut r = Rng(0xF11F);
    let rounds = std::env::var("STORE_FLIPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(400);
    for round in 0..rounds {
        let f = &files[r.below(files.len() as u64) as usize];
        let mut bytes = fs::read(f).unwrap();
        let at = r.below(bytes.len() as u64) as usize;
        bytes[at] ^= 1 << r.below(8);
        copy_stream(&stream, &trial);
        let name = f.file_name().unwrap();
        fs::write(seg_dir(&trial).join(name), &bytes).unwrap();
        let (s, rec) = open_at(&trial);
        let hit = if f.extension().unwrap() == "seg" {
            spans(f).into_iter().find(|x| x.0 <= at && at < x.1)
        } else {
            None
        };
        let mut known = 0;
        for m in &msgs {
            let got = load(&s, m);
            if hit.is_some_and(|h| h.2 == m.seq) {
                assert_eq!(
                    got, None,
                    "round {round}: damaged seq {} must not load",
                    m.seq
                );
                // The one case recovery cannot name: the sequence field of the active
                // segment's last record itself was hit.
                let seq_field = f == &last_seg
                    && hit.unwrap().1 == bytes.len()
                    && (5..13).contains(&(at - hit.unwrap().0));
                let lost = s.lost().map(|l| l.msgs.contains(&m.seq)).unwrap_or(false);
                assert!(lost || seq_field, "round {round}: seq {} damaged at {name:?}+{at} is not reported: {rec:?}, lost {:?}", m.seq, s.lost());
                known = known.max(if lost { m.seq } else { 0 });
            } else {
                assert_eq!(
                    got.as_ref(),
                    Some(m),
                    "round {round}: {name:?}+{at} damaged seq {}",
                    m.seq
                );
                known = known.max(m.seq);
            }
        }
        still_works(&trial, s, known);
    }
}

#[test]
fn missing_or_bad_index_files_are_rebuilt() {
    let d = TempDir::new("idx");
    let msgs = build(&d, 60, 500);
    let stream = cfg(&d, 500).dir;
    let (s, rec) = open_at(&stream);
    let want = s.state();
    assert!(
        rec.segments_indexed >= 3 && rec.segments_scanned == 1,
        "{rec:?}"
    );
    drop(s);
    let idx: Vec<PathBuf> = fs::read_dir(seg_dir(&stream))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().unwrap() == "idx")
        .collect();
    // One deleted, one cut short, one with a stale length, one garbage.
    fs::remove_file(&idx[0]).unwrap();
    let b = fs::read(&idx[1]).unwrap();
    fs::write(&idx[1], &b[..b.len() / 2]).unwrap();
    let mut b = fs::read(&idx[2]).unwrap();
    b[4] ^= 1;
    fs::write(&idx[2], &b).unwrap();
    fs::write(&idx[3], b"not an index").unwrap();
    let (mut s, rec) = open_at(&stream);
    assert_eq!(rec.segments_scanned, 5, "{rec:?}");
    assert!(rec.lost_seqs.is_empty() && rec.lost_bytes == 0);
    assert_eq!(s.state(), want);
    for m in &msgs {
        assert_eq!(load(&s, m).as_ref(), Some(m));
    }
    s.check().unwrap();
    // The first synced flush writes them again.
    s.append(b"x", b"", b"", 1).unwrap();
    flush_sync(&mut s);
    drop(s);
    let (_, rec) = open_at(&stream);
    assert_eq!(rec.segments_scanned, 1, "{rec:?}");
}

#[test]
fn damage_in_the_middle_is_skipped_not_truncated() {
    let d = TempDir::new("mid");
    let msgs = build(&d, 12, 1 << 20);
    let stream = cfg(&d, 1 << 20).dir;
    let seg = segments(&stream).pop().unwrap();
    let sp = spans(&seg);
    let len = fs::metadata(&seg).unwrap().len();
    let mut bytes = fs::read(&seg).unwrap();
    // Seq 4: its length field is garbage (the scan must find seq 5 byte by byte);
    // seq 8: a payload byte (its length leads straight to seq 9).
    let (s4, s8) = (sp[3], sp[7]);
    bytes[s4.0..s4.0 + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    bytes[s8.1 - 6] ^= 0x40;
    fs::write(&seg, &bytes).unwrap();
    for _ in 0..2 {
        let (s, rec) = open_at(&stream);
        assert_eq!(rec.lost_seqs, vec![4, 8]);
        assert_eq!(rec.lost_bytes, ((s4.1 - s4.0) + (s8.1 - s8.0)) as u64);
        assert_eq!(rec.truncated_bytes, 0);
        assert_eq!(
            fs::metadata(&seg).unwrap().len(),
            len,
            "good records after damage are kept"
        );
        for m in &msgs {
            let want = if m.seq == 4 || m.seq == 8 {
                None
            } else {
                Some(m)
            };
            assert_eq!(load(&s, m).as_ref(), want);
        }
        let st = s.state();
        assert_eq!((st.msgs, st.last_seq, st.num_deleted), (10, 12, 2));
        s.check().unwrap();
    }
    let (s, _) = open_at(&stream);
    still_works(&stream, s, 12);
}

#[test]
fn junk_after_the_last_record_is_cut() {
    let d = TempDir::new("junk");
    let msgs = build(&d, 10, 1 << 20);
    let stream = cfg(&d, 1 << 20).dir;
    let seg = segments(&stream).pop().unwrap();
    let len = fs::metadata(&seg).unwrap().len();
    // What a power loss can leave: zeroed blocks, or an old record's bytes.
    let mut bytes = fs::read(&seg).unwrap();
    bytes.extend_from_slice(&[0u8; 4096]);
    fs::write(&seg, &bytes).unwrap();
    let (s, rec) = open_at(&stream);
    assert_eq!((rec.truncated_bytes, rec.lost_seqs.len()), (4096, 0));
    assert_eq!(fs::metadata(&seg).unwrap().len(), len);
    assert!(msgs.iter().all(|m| load(&s, m).as_ref() == Some(m)));
    still_works(&stream, s, 10);
}

/// Segment file names at the top of the id range (found by the segments fuzz target: an
/// empty `4294967295.seg` made the next roll overflow): recovery renumbers the segments, every
/// message stays readable, and new segments keep rolling and survive a reopen.
#[test]
fn segment_ids_at_the_top_of_the_range_are_renumbered() {
    let d = TempDir::new("topids");
    let msgs = build(&d, 30, 700);
    let stream = cfg(&d, 700).dir;
    let segs = segments(&stream);
    assert!(segs.len() >= 3, "{segs:?}");
    let n = segs.len();
    let top = [u32::MAX - 1, u32::MAX];
    for (p, id) in segs[n - 2..].iter().zip(top) {
        fs::rename(p, seg_dir(&stream).join(format!("{id:010}.seg"))).unwrap();
    }
    let (mut s, rec) = open_at(&stream);
    assert!(rec.lost_seqs.is_empty(), "{:?}", rec.lost_seqs);
    assert!(msgs.iter().all(|m| load(&s, m).as_ref() == Some(m)));
    let mut added = Vec::new();
    for i in 0..40u8 {
        added.push(s.append(b"after", b"", &[i; 50], 1).unwrap());
        flush_sync(&mut s);
    }
    s.check().unwrap();
    drop(s);
    let names: Vec<_> = segments(&stream)
        .iter()
        .map(|p| p.file_name().unwrap().to_owned())
        .collect();
    assert!(
        names
            .iter()
            .all(|n| *n.to_string_lossy() < *"2147483648.seg"),
        "{names:?}"
    );
    let (s, _) = open_at(&stream);
    s.check().unwrap();
    assert!(msgs.iter().all(|m| load(&s, m).as_ref() == Some(m)));
    for (i, seq) in added.iter().enumerate() {
        assert_eq!(s.load(*seq).unwrap().data(), &[i as u8; 50][..]);
    }
}

/// A record that checks out but whose sequence does not follow the messages before it (here
/// segment 1's last record rewritten to a high sequence, CRC and all) is damage: recovery
/// skips every later record up to it, and `check` (found by the segments fuzz target) reads
/// the segments in the same order with the same rule, instead of each one on its own.
#[test]
fn a_record_out_of_sequence_is_damage_for_recovery_and_check() {
    let d = TempDir::new("outofseq");
    let stream = cfg(&d, 700).dir;
    let msgs = build(&d, 30, 700);
    let (mut s, _) = open_at(&stream);
    // A mark in the active segment, after its messages.
    s.remove(msgs[29].seq, false);
    flush_sync(&mut s);
    drop(s);
    let first = &segments(&stream)[0];
    let (start, end, _) = *spans(first).last().unwrap();
    let mut bytes = fs::read(first).unwrap();
    bytes[start + 5..start + 13].copy_from_slice(&1000u64.to_le_bytes());
    let crc = super::crc::crc32c(&bytes[start..end - 4]);
    bytes[end - 4..end].copy_from_slice(&crc.to_le_bytes());
    fs::write(first, &bytes).unwrap();
    let (s, _) = open_at(&stream);
    s.check().unwrap();
    assert_eq!(
        s.load(1000).unwrap().subject(),
        &msgs[spans(first).len() - 1].subject[..]
    );
    still_works(&stream, s, 1000);
}

/// A record with an empty subject (the store never writes one: appends refuse it) is damage,
/// not a message: an empty name is how the index marks a freed subject id. Found by the
/// segments fuzz target (`check` then failed with "live message names freed subject").
#[test]
fn a_record_without_a_subject_is_damage() {
    let d = TempDir::new("nosubject");
    let stream = cfg(&d, 1 << 20).dir;
    let msgs = build(&d, 5, 1 << 20);
    let seg = segments(&stream).pop().unwrap();
    let mut bytes = fs::read(&seg).unwrap();
    super::record::encode_msg(&mut bytes, 6, 60, b"", b"", b"x");
    super::record::encode_msg(&mut bytes, 7, 70, b"r.7", b"", b"y");
    fs::write(&seg, &bytes).unwrap();
    let (s, rec) = open_at(&stream);
    s.check().unwrap();
    assert_eq!(rec.lost_seqs, [6]);
    assert!(s.load(6).is_none());
    assert_eq!(s.load(7).unwrap().data(), b"y");
    assert!(msgs.iter().all(|m| load(&s, m).as_ref() == Some(m)));
    still_works(&stream, s, 7);
}

/// A mark that removes past its own last sequence (a floor above `last + 1`, or a
/// tombstone above `last`; a CRC forged or matching by chance: tern never writes one, a
/// purge past the end writes `last = floor - 1`) is damage, not applied. Applied, it removed
/// messages appended after it: the segments fuzz target found first a floor of 6565473
/// after last 11 (the next append got 12), then a tombstone 28 in a mark of last 23 (message
/// 28, appended and flushed after that mark, gone after a reopen).
#[test]
fn a_mark_that_removes_past_its_last_sequence_is_damage() {
    for (floor, tombs) in [(1000, vec![]), (1, vec![3, 8])] {
        let d = TempDir::new("markpast");
        let stream = cfg(&d, 1 << 20).dir;
        build(&d, 5, 1 << 20);
        let seg = segments(&stream).pop().unwrap();
        let mut bytes = fs::read(&seg).unwrap();
        let mark = super::record::Mark {
            last_seq: 5,
            last_ts: 50,
            floor,
            tombs,
        };
        let n = super::record::encode_mark(&mut bytes, &mark);
        fs::write(&seg, &bytes).unwrap();
        let (mut s, rec) = open_at(&stream);
        assert_eq!(rec.lost_bytes, n as u64);
        s.check().unwrap();
        let st = s.state();
        assert_eq!((st.first_seq, st.last_seq, st.msgs), (1, 5, 5));
        for seq in 6..=9 {
            assert_eq!(s.append(b"a", b"", b"x", 60).unwrap(), seq);
        }
        flush_sync(&mut s);
        drop(s);
        let (s, _) = open_at(&stream);
        s.check().unwrap();
        assert_eq!(s.state().msgs, 9);
        assert!(s.load(8).is_some(), "message 8 lost by a reopen");
    }
}

/// Sequences stop at 2^62 (what a record can carry): past it appends and skips are refused
/// instead of writing records that recovery would take for garbage. Found by the segments
/// fuzz target (the last sequence went back from 2^62 + 8 on a reopen).
#[test]
fn sequences_stop_at_the_records_limit() {
    let d = TempDir::new("maxseq");
    let stream = cfg(&d, 1 << 20).dir;
    let (mut s, _) = open_at(&stream);
    s.append(b"a", b"", b"x", 1).unwrap();
    s.purge(None, Some(u64::MAX), None);
    let top = s.append(b"a", b"", b"y", 2).unwrap();
    assert_eq!(top, 1 << 62);
    assert!(matches!(
        s.append(b"a", b"", b"z", 3),
        Err(StoreError::SeqExhausted)
    ));
    assert!(matches!(s.skip(4), Err(StoreError::SeqExhausted)));
    flush_sync(&mut s);
    drop(s);
    let (mut s, _) = open_at(&stream);
    s.check().unwrap();
    assert_eq!(s.state().last_seq, top);
    assert_eq!(s.load(top).unwrap().data(), b"y");
    // Emptied at the top: the floor is one past it, and the mark that says so is read back
    // (the segments fuzz target found it cut as a torn tail: the last sequence went back).
    assert!(s.remove(top, false));
    flush_sync(&mut s);
    drop(s);
    let (mut s, rec) = open_at(&stream);
    assert_eq!(rec.truncated_bytes, 0);
    let st = s.state();
    assert_eq!((st.first_seq, st.last_seq, st.msgs), (top + 1, top, 0));
    assert!(matches!(
        s.append(b"a", b"", b"z", 5),
        Err(StoreError::SeqExhausted)
    ));
}

/// A segment that recovery resynchronised in is not appended to. Damage whose length field
/// ends exactly at the file's end hides a mark (tombstone 4): recovery finds the mark byte by
/// byte. Appended to, the same length would frame the first new record, a second scan would
/// skip the mark, and message 4 would come back; also after a failed first flush's rollback.
/// Found by the segments fuzz target.
#[test]
fn a_segment_with_damage_in_it_takes_no_appends() {
    use super::record::{KIND_MSG, MSG_OVERHEAD};
    let d = TempDir::new("resync");
    let stream = cfg(&d, 1 << 20).dir;
    build(&d, 5, 1 << 20);
    let seg = segments(&stream).pop().unwrap();
    let mut bytes = fs::read(&seg).unwrap();
    let pos = bytes.len();
    let mut mark = Vec::new();
    super::record::encode_mark(
        &mut mark,
        &super::record::Mark {
            last_seq: 5,
            last_ts: 50,
            floor: 1,
            tombs: vec![4],
        },
    );
    let len = MSG_OVERHEAD + 8 + mark.len();
    bytes.extend_from_slice(&(len as u32).to_le_bytes());
    bytes.push(KIND_MSG);
    bytes.extend_from_slice(&6u64.to_le_bytes());
    bytes.extend_from_slice(&60u64.to_le_bytes());
    bytes.resize(pos + MSG_OVERHEAD + 8, 0);
    bytes.extend_from_slice(&mark);
    assert_eq!(bytes.len(), pos + len);
    fs::write(&seg, &bytes).unwrap();
    let (mut s, _) = open_at(&stream);
    assert!(s.load(4).is_none(), "the mark behind the damage removes 4");
    // A first flush that fails (full disk) rolls back; the segment stays sealed.
    s.append(b"a", b"", b"x", 60).unwrap();
    super::segment::fault::set_space(Some(0));
    assert!(s.flush().is_err(), "the disk is full");
    super::segment::fault::set_space(None);
    for seq in 6..=8 {
        assert_eq!(s.append(b"a", b"", b"x", 60).unwrap(), seq);
    }
    flush_sync(&mut s);
    s.check().unwrap();
    drop(s);
    let (s, _) = open_at(&stream);
    s.check().unwrap();
    assert!(s.load(4).is_none(), "message 4 came back");
    assert_eq!((s.state().msgs, s.state().last_seq), (7, 8));
}
