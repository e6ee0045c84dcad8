//! Recovery: the store's state rebuilt from its `seg/` folder after a clean stop or a crash.
//!
//! Sealed segments are loaded from their index files when those can be trusted (see
//! `idx.rs`), otherwise read record by record, like the active (last) segment always is. A
//! record is kept only if its framing and CRC check out and its sequence comes after every
//! message before it. What is not kept:
//! - a torn or bad tail (nothing good after it) is cut off the file;
//! - a bad stretch with good records after it stays in the file as a gap. The length field of
//!   the bad record is tried first; if it leads nowhere, the scan moves byte by byte to the
//!   next offset where a record checks out.
//!
//! Sequences whose records were lost are reported: those between the last good message before
//! a bad stretch and the first good one after it, and a torn record's own sequence when its
//! header still reads as the next one. Sequences that marks show removed anyway are not
//! counted as lost. Then floors and tombstones from every mark are applied; limits are not
//! re-derived here, so a raised limit never brings back what was dropped. Recovery never
//! panics and never refuses to start because of what the files contain.

use super::idx;
use super::index::{Chunk, Ent, Index, GONE, MAX_PAD};
use super::record::{decode, header, u64_at, Rec, KIND_MSG};
use super::segment::{find_seg, idx_path, open_rw, seg_path, sizer, truncate, Seg};
use super::Recovery;
use log::warn;
use std::collections::VecDeque;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

/// At most this many lost sequences are listed (the count of bytes is always complete).
const LOST_LIST_MAX: u64 = 1 << 20;

/// Segment ids count up by one per segment from 1, so an id above this comes from a foreign
/// or damaged file name and leaves too little room to count on: the segments are renumbered.
const MAX_START_ID: u32 = 1 << 31;

pub struct Recovered {
    pub ix: Index,
    pub segs: VecDeque<Seg>,
    pub rec: Recovery,
    pub next_id: u32,
    /// Sealed segments read record by record that deserve an index file.
    pub to_index: Vec<u32>,
    /// A file could not be truncated: the store must not append.
    pub failed: bool,
    /// Segments were renamed: the folder must be fsynced (by the sync thread, as every
    /// folder change: recovery also runs on the loop, for a stream created over old files).
    pub renamed: bool,
}

/// State carried from one segment to the next while reading them in order.
#[derive(Default)]
pub struct Scan {
    last_msg: u64,
    last_msg_ts: i64,
    /// The highest last sequence a mark stated so far.
    last_mark: u64,
    /// A bad stretch was seen after message `n` and no good message since.
    open: Option<u64>,
    /// Inclusive ranges of lost sequences.
    lost: Vec<(u64, u64)>,
    lost_bytes: u64,
    truncated: u64,
}

impl Scan {
    fn message(&mut self, seq: u64, ts: i64) {
        if let Some(after) = self.open.take() {
            if seq > after + 1 {
                self.lost.push((after + 1, seq - 1));
            }
        }
        self.last_msg = seq;
        self.last_msg_ts = ts;
    }
}

/// Reads the segment folder. Missing folder contents mean an empty store.
pub fn recover(dir: &Path) -> io::Result<Recovered> {
    let (mut ids, mut idxs) = list(dir)?;
    let renamed = ids.last().is_some_and(|&id| id > MAX_START_ID);
    let failed = renamed && !try_renumber(dir, &mut ids, &mut idxs);
    let mut r = Recovered {
        ix: Index::new(),
        segs: VecDeque::new(),
        rec: Recovery::default(),
        next_id: ids.last().map_or(1, |&id| id.saturating_add(1)),
        to_index: Vec::new(),
        failed,
        renamed,
    };
    let mut sc = Scan::default();
    for (i, &id) in ids.iter().enumerate() {
        let last = i + 1 == ids.len();
        let file = open_rw(&seg_path(dir, id), false)?;
        let has_idx = idxs.contains(&id);
        let loaded = if !last && has_idx {
            from_index(dir, id, &file, &mut r.ix, &sc)
        } else {
            None
        };
        let (mut seg, mut chunks) = match loaded {
            Some(x) => {
                r.rec.segments_indexed += 1;
                if let Some(first) = x.1.iter().find_map(first_msg) {
                    sc.message(first, x.0.max_ts);
                }
                x
            }
            None => {
                r.rec.segments_scanned += 1;
                let (seg, chunks, cut) = scan_file(id, &file, &mut r.ix, &mut sc, !last)?;
                if cut && truncate(&file, seg.end).is_err() {
                    warn!(
                        "store {}: cannot truncate segment {id}; read-only until restart",
                        dir.display()
                    );
                    r.failed = true;
                }
                if !last && seg.clean {
                    r.to_index.push(id);
                }
                if has_idx {
                    let _ = fs::remove_file(idx_path(dir, id));
                }
                (seg, chunks)
            }
        };
        if let Some(m) = chunks.iter().rev().find_map(last_msg) {
            sc.last_msg = sc.last_msg.max(m);
        }
        chunks.retain(|c| !c.ents.is_empty());
        if last {
            // Subjects the active segment names stay interned until it is sealed and indexed.
            for e in chunks
                .iter()
                .flat_map(|c| c.ents.iter())
                .filter(|e| e.is_msg())
            {
                r.ix.subs[e.subject() as usize].seg = id;
            }
        }
        seg.sealed = !last;
        seg.file = Some(Arc::new(file));
        r.ix.chunks.extend(chunks);
        r.segs.push_back(seg);
    }
    for id in idxs.iter().filter(|id| !ids.contains(id)) {
        let _ = fs::remove_file(idx_path(dir, *id));
    }
    assemble(&mut r, sc);
    Ok(r)
}

/// Segment and index ids in the folder, ascending.
fn list(dir: &Path) -> io::Result<(Vec<u32>, Vec<u32>)> {
    let (mut segs, mut idxs) = (Vec::new(), Vec::new());
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        let parsed = name
            .split_once('.')
            .and_then(|(n, ext)| Some((n.parse::<u32>().ok()?, ext)));
        match parsed {
            Some((id, "seg")) if id > 0 => segs.push(id),
            Some((id, "idx")) if id > 0 => idxs.push(id),
            _ => warn!("store {}: ignoring unexpected file {name}", dir.display()),
        }
    }
    segs.sort_unstable();
    idxs.sort_unstable();
    Ok((segs, idxs))
}

/// Renames the segments to 1, 2, ... in their order, after removing every index file (the
/// segments are read and indexed again). Each rename goes to a lower id that is free by then,
/// so the order holds at every step, and `ids` always names the files as they are.
/// `renumber`, false (logged) when it failed: the store is then read-only until restart.
fn try_renumber(dir: &Path, ids: &mut [u32], idxs: &mut Vec<u32>) -> bool {
    let r = renumber(dir, ids, idxs);
    if let Err(e) = &r {
        warn!(
            "store {}: cannot renumber segments: {e}; read-only until restart",
            dir.display()
        );
    }
    r.is_ok()
}

fn renumber(dir: &Path, ids: &mut [u32], idxs: &mut Vec<u32>) -> io::Result<()> {
    warn!(
        "store {}: segment ids up to {} leave no room; renumbering from 1",
        dir.display(),
        ids.last().copied().unwrap_or(0)
    );
    while let Some(&id) = idxs.last() {
        fs::remove_file(idx_path(dir, id))?;
        idxs.pop();
    }
    for (new, id) in (1..).zip(ids.iter_mut()) {
        if *id != new {
            fs::rename(seg_path(dir, *id), seg_path(dir, new))?;
            *id = new;
        }
    }
    Ok(())
}

fn first_msg(c: &Chunk) -> Option<u64> {
    let pos = c.ents.iter().position(|e| e.is_msg())?;
    Some(c.base + pos as u64)
}

fn last_msg(c: &Chunk) -> Option<u64> {
    let pos = c.ents.iter().rposition(|e| e.is_msg())?;
    Some(c.base + pos as u64)
}

/// A sealed segment from its index file, if the file can be trusted.
fn from_index(
    dir: &Path,
    id: u32,
    file: &File,
    ix: &mut Index,
    sc: &Scan,
) -> Option<(Seg, Vec<Chunk>)> {
    let buf = fs::read(idx_path(dir, id)).ok()?;
    let d = idx::decode(&buf, ix)?;
    let len = file.metadata().ok()?.len();
    let mut crc = [0u8; 4];
    if len >= 4 {
        file.read_exact_at(&mut crc, len - 4).ok()?;
    }
    let first = d.chunks.iter().find_map(first_msg);
    if d.seg_len != len
        || u32::from_le_bytes(crc) != d.last_crc
        || first.is_some_and(|s| s <= sc.last_msg)
    {
        warn!(
            "store {}: index of segment {id} does not match it; reading the segment",
            dir.display()
        );
        return None;
    }
    let mut seg = Seg::new(id);
    (seg.end, seg.durable, seg.tail_start) = (len, len, len);
    (seg.gaps, seg.mark, seg.max_ts, seg.has_idx) = (d.gaps, d.mark, d.max_ts, true);
    let chunks = d
        .chunks
        .into_iter()
        .map(|c| Chunk { seg: id, ..c })
        .collect();
    Some((seg, chunks))
}

/// Reads a whole segment record by record. Returns it, its chunks, and whether its file must
/// be cut back to `seg.end`. A sealed segment's bad tail is followed by the next segment, whose
/// first message bounds what was lost.
fn scan_file(
    id: u32,
    file: &File,
    ix: &mut Index,
    sc: &mut Scan,
    sealed: bool,
) -> io::Result<(Seg, Vec<Chunk>, bool)> {
    let len = file.metadata()?.len();
    let mut buf = vec![0u8; usize::try_from(len).map_err(io::Error::other)?];
    file.read_exact_at(&mut buf, 0)?;
    // Offsets are u32: anything past 4 GiB is not ours and counts as a torn tail.
    let usable = buf.len().min(u32::MAX as usize);
    let (seg, chunks) = scan(&buf[..usable], id, ix, sc);
    let cut = seg.end < len;
    if cut {
        sc.truncated += len - seg.end;
        sc.lost_bytes += len - seg.end;
        if sealed {
            sc.open.get_or_insert(sc.last_msg);
        }
    }
    Ok((seg, chunks, cut))
}

/// The records of one segment. `seg.end` is where the good records stop.
pub fn scan(buf: &[u8], id: u32, ix: &mut Index, sc: &mut Scan) -> (Seg, Vec<Chunk>) {
    let mut seg = Seg::new(id);
    let mut chunks: Vec<Chunk> = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        match decode(&buf[pos..]) {
            Ok((Rec::Msg(m), n)) if m.seq > sc.last_msg => {
                if let Some(sid) = ix.intern(m.subject) {
                    place(&mut chunks, m.seq, pos as u32, id);
                    let sid = if m.erased { sid | GONE } else { sid };
                    if let Some(c) = chunks.last_mut() {
                        c.ents.push(Ent {
                            loc: pos as u32,
                            sid,
                        });
                    }
                    seg.max_ts = seg.max_ts.max(m.ts);
                    sc.message(m.seq, m.ts);
                    pos += n;
                    continue;
                }
            }
            Ok((Rec::Mark(k), n)) => {
                sc.last_mark = sc.last_mark.max(k.last_seq);
                seg.gaps.push(pos as u32);
                seg.mark.merge(&k);
                pos += n;
                continue;
            }
            _ => {}
        }
        // Damaged at `pos`.
        match resync(buf, pos, sc.last_msg) {
            Some(next) => {
                warn!(
                    "segment {id}: {} damaged bytes at offset {pos} skipped",
                    next - pos
                );
                seg.gaps.push(pos as u32);
                seg.clean = false;
                sc.lost_bytes += (next - pos) as u64;
                sc.open.get_or_insert(sc.last_msg);
                pos = next;
            }
            None => {
                warn!(
                    "segment {id}: {} bytes at offset {pos} are not a record; cut off",
                    buf.len() - pos
                );
                torn_tail(&buf[pos..], sc);
                break;
            }
        }
    }
    (seg.end, seg.durable, seg.tail_start) = (pos as u64, pos as u64, pos as u64);
    (seg, chunks)
}

/// Makes the last chunk ready for message `seq` at `loc`: pad a short gap, else a new chunk.
fn place(chunks: &mut Vec<Chunk>, seq: u64, loc: u32, id: u32) {
    if let Some(c) = chunks.last_mut() {
        if seq - c.end() <= MAX_PAD {
            while c.end() < seq {
                c.ents.push(Ent {
                    loc,
                    sid: super::index::HOLE,
                });
            }
            return;
        }
        c.stop = loc;
    }
    chunks.push(Chunk {
        base: seq,
        ents: Vec::new(),
        live: 0,
        seg: id,
        stop: u32::MAX,
    });
}

/// The next offset after damage at `pos` where a record checks out.
fn resync(buf: &[u8], pos: usize, last_msg: u64) -> Option<usize> {
    let good = |p: usize| match decode(&buf[p..]) {
        Ok((Rec::Msg(m), _)) => m.seq > last_msg,
        Ok((Rec::Mark(_), _)) => true,
        Err(_) => false,
    };
    if let Some((len, ..)) = header(&buf[pos..]) {
        if pos + len < buf.len() && good(pos + len) {
            return Some(pos + len);
        }
    }
    (pos + 1..buf.len()).find(|&p| header(&buf[p..]).is_some() && good(p))
}

/// A tail that is not a record: its sequence is lost if its header still reads as a message
/// that comes next (13 bytes are enough to read it; skips may come between).
fn torn_tail(tail: &[u8], sc: &mut Scan) {
    if tail.len() >= 13 && tail[4] & 0x0f == KIND_MSG {
        let seq = u64_at(tail, 5);
        if seq > sc.last_msg && seq <= sc.last_msg.max(sc.last_mark) + MAX_PAD {
            sc.lost.push((seq, seq));
        }
    }
}

/// Floors, tombstones, counters and the lost list, once every segment is read.
fn assemble(r: &mut Recovered, mut sc: Scan) {
    let ix = &mut r.ix;
    let (mut last, mut last_ts, mut floor) = (sc.last_msg, sc.last_msg_ts, 0);
    let mut tombs: Vec<u64> = Vec::new();
    for s in &r.segs {
        if s.mark.last_seq >= last {
            (last, last_ts) = (s.mark.last_seq, s.mark.last_ts);
        }
        floor = floor.max(s.mark.floor);
        tombs.extend_from_slice(&s.mark.tombs);
    }
    tombs.sort_unstable();
    tombs.dedup();
    for &t in &tombs {
        if let Some((ci, pos)) = ix.locate(t) {
            if ix.chunks[ci].ents[pos].is_msg() {
                ix.chunks[ci].ents[pos].sid |= GONE;
            }
        }
    }
    if let Some(after) = sc.open.take() {
        if last > after {
            sc.lost.push((after + 1, last));
        }
    }
    // A torn record's sequence is not reused.
    last = last.max(sc.lost.iter().map(|l| l.1).max().unwrap_or(0));
    // Every sequence below the floor is gone: a purge past the end writes `floor - 1` as the
    // last sequence, and a damaged mark that does not is read the same way.
    last = last.max(floor.saturating_sub(1));
    (ix.first, ix.last, ix.last_ts) = (floor, last, last_ts);
    ix.recount(&mut sizer(&r.segs));
    let mut lost = Vec::new();
    for &(a, b) in &sc.lost {
        for seq in a.max(floor)..=b {
            if lost.len() as u64 >= LOST_LIST_MAX {
                break;
            }
            if tombs.binary_search(&seq).is_err() {
                lost.push(seq);
            }
        }
    }
    lost.sort_unstable();
    lost.dedup();
    r.rec.lost_seqs = lost;
    r.rec.lost_bytes = sc.lost_bytes;
    r.rec.truncated_bytes = sc.truncated;
    // The last chunk belongs to the active segment.
    if let Some(active) = r.segs.back() {
        if ix.chunks.back().is_none_or(|c| c.seg != active.id) {
            ix.push_chunk(ix.last + 1, active.id);
        }
    }
    debug_assert!(r.segs.iter().all(|s| find_seg(&r.segs, s.id).is_some()));
}
