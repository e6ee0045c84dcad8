//! Index files (`<id>.idx`): what a sealed segment holds, so a restart need not read it.
//!
//! Written once a segment is sealed and its bytes are synced; never updated. It describes the
//! segment as a sequence of runs (consecutive message records of one length and subject),
//! holes (sequences without a record), breaks (a long gap in the sequence: the next chunk
//! starts further on) and gaps (mark records), plus the segment's aggregated mark and its
//! subjects. Typical streams cost well under a byte per message here: a run of
//! same-sized messages on one subject is a few bytes whatever its length.
//!
//! Trust rules (checked by `decode` and `recover.rs`): the file's own CRC must match, the
//! length it describes must be the segment file's length, and the CRC field of the segment's
//! last record must be the one it recorded. Otherwise the file is ignored and the segment is
//! read record by record instead.
//!
//! ```text
//! 0   4  magic "TIX1"            40  8  mark: last_seq
//! 4   8  segment length          48  8  mark: last_ts
//! 12  4  CRC field of the last   56  8  mark: floor
//!        record of the segment   64  4  subjects
//! 16  8  base (first sequence)   68  4  tombstones
//! 24  8  entries (sequences)     72  4  body length
//! 32  8  newest message time     76     subjects (u16 length, bytes) ...
//!        body: varint ops; tag & 3 = 0 run (tag >> 4 = count, bit 3: same length as the
//!        previous run, bit 2: same subject; then length and subject index unless same),
//!        1 holes (tag >> 2 = count), 2 gap (tag >> 2 = bytes), 3 break (tag >> 2 =
//!        sequences skipped before the next chunk)
//!        tombstones: varint deltas, ascending
//! end 4  CRC-32C of everything before
//! ```

use super::crc::crc32c;
use super::index::{Chunk, Ent, Index, HOLE, MAX_PAD};
use super::record::{get_uvarint, put_uvarint, u64_at, Mark, MAX_SEQ};
use super::segment::Seg;
use crate::util::hash::{new_map, FastMap};

const MAGIC: &[u8; 4] = b"TIX1";
const FIXED: usize = 76;

/// A decoded index file.
#[derive(Debug, Default)]
pub struct Decoded {
    pub seg_len: u64,
    pub last_crc: u32,
    /// At least one; `seg` is left 0 for the caller to set.
    pub chunks: Vec<Chunk>,
    pub gaps: Vec<u32>,
    pub max_ts: i64,
    pub mark: Mark,
}

/// Builds the index file of a sealed segment from its chunks (in order). `last_crc` is the CRC
/// field of the segment's last record. None if the chunks do not tile the segment.
pub fn encode(seg: &Seg, chunks: &[&Chunk], ix: &Index, last_crc: u32) -> Option<Vec<u8>> {
    let mut local: FastMap<u32, u32> = new_map();
    let mut hot = (u32::MAX, 0u32);
    let mut names: Vec<&[u8]> = Vec::new();
    let mut body = Vec::new();
    let mut w = OpWriter::default();
    let (mut cursor, mut gi, mut n_ents) = (0u64, 0usize, 0u64);
    let base = chunks.first().map_or(0, |c| c.base);
    for (k, c) in chunks.iter().enumerate() {
        if k > 0 {
            w.close_run(&mut body);
            w.close_holes(&mut body);
            put_uvarint(&mut body, ((c.base - chunks[k - 1].end()) << 2) | 3);
        }
        n_ents += c.ents.len() as u64;
        for pos in 0..c.ents.len() {
            let e = c.ents[pos];
            if !e.is_msg() {
                w.close_run(&mut body);
                w.holes += 1;
                continue;
            }
            while gi < seg.gaps.len() && seg.gaps[gi] < e.loc {
                cursor += w.gap(&mut body, seg.gap_len(gi, Some(e.loc)));
                gi += 1;
            }
            if cursor != u64::from(e.loc) {
                return None;
            }
            // The record ends where the next one starts: the next entry, the next gap (all
            // gaps before this record are behind `gi`), or the chunk's or segment's end.
            let next_ent = c.ents.get(pos + 1).map_or(c.stop, |n| n.loc);
            let next_gap = seg.gaps.get(gi).copied().unwrap_or(u32::MAX);
            let len = seg.end.min(u64::from(next_ent.min(next_gap))) - cursor;
            let sid = e.subject();
            if hot.0 != sid {
                let next = names.len() as u32;
                let li = *local.entry(sid).or_insert_with(|| {
                    names.push(ix.name(sid));
                    next
                });
                hot = (sid, li);
            }
            let li = hot.1;
            w.record(&mut body, len, li);
            cursor += len;
        }
    }
    w.close_run(&mut body);
    w.close_holes(&mut body);
    while gi < seg.gaps.len() {
        cursor += w.gap(&mut body, seg.gap_len(gi, None));
        gi += 1;
    }
    if cursor != seg.end {
        return None;
    }
    Some(file_bytes(seg, last_crc, (base, n_ents), &names, &body))
}

/// The whole index file around its body (layout at the top of this file).
fn file_bytes(
    seg: &Seg,
    last_crc: u32,
    (base, n_ents): (u64, u64),
    names: &[&[u8]],
    body: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(FIXED + body.len() + 64);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&seg.end.to_le_bytes());
    out.extend_from_slice(&last_crc.to_le_bytes());
    out.extend_from_slice(&base.to_le_bytes());
    out.extend_from_slice(&n_ents.to_le_bytes());
    out.extend_from_slice(&seg.max_ts.to_le_bytes());
    let m = &seg.mark;
    out.extend_from_slice(&m.last_seq.to_le_bytes());
    out.extend_from_slice(&m.last_ts.to_le_bytes());
    out.extend_from_slice(&m.floor.to_le_bytes());
    out.extend_from_slice(&(names.len() as u32).to_le_bytes());
    out.extend_from_slice(&(m.tombs.len() as u32).to_le_bytes());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    for n in names {
        out.extend_from_slice(&(n.len() as u16).to_le_bytes());
        out.extend_from_slice(n);
    }
    out.extend_from_slice(body);
    let mut prev = 0;
    for &t in &m.tombs {
        put_uvarint(&mut out, t - prev);
        prev = t;
    }
    let crc = crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Gathers consecutive records into runs and consecutive holes into one op.
#[derive(Default)]
struct OpWriter {
    run: Option<(u64, u64, u32)>,
    prev: Option<(u64, u32)>,
    holes: u64,
}

impl OpWriter {
    fn record(&mut self, body: &mut Vec<u8>, len: u64, subj: u32) {
        self.close_holes(body);
        match &mut self.run {
            Some((n, l, s)) if *l == len && *s == subj => *n += 1,
            _ => {
                self.close_run(body);
                self.run = Some((1, len, subj));
            }
        }
    }

    fn close_run(&mut self, body: &mut Vec<u8>) {
        let Some((n, len, subj)) = self.run.take() else {
            return;
        };
        let same_len = self.prev.is_some_and(|p| p.0 == len);
        let same_subj = self.prev.is_some_and(|p| p.1 == subj);
        put_uvarint(
            body,
            (n << 4) | (u64::from(same_len) << 3) | (u64::from(same_subj) << 2),
        );
        if !same_len {
            put_uvarint(body, len);
        }
        if !same_subj {
            put_uvarint(body, u64::from(subj));
        }
        self.prev = Some((len, subj));
    }

    fn close_holes(&mut self, body: &mut Vec<u8>) {
        if self.holes > 0 {
            put_uvarint(body, (self.holes << 2) | 1);
            self.holes = 0;
        }
    }

    fn gap(&mut self, body: &mut Vec<u8>, len: u64) -> u64 {
        self.close_run(body);
        self.close_holes(body);
        put_uvarint(body, (len << 2) | 2);
        len
    }
}

/// Decodes an index file, interning its subjects into `ix`. None if anything is off.
pub fn decode(buf: &[u8], ix: &mut Index) -> Option<Decoded> {
    if buf.len() < FIXED + 4 || &buf[..4] != MAGIC {
        return None;
    }
    let end = buf.len() - 4;
    if crc32c(&buf[..end]).to_le_bytes() != buf[end..] {
        return None;
    }
    let u32_at = |at: usize| u32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
    let mut d = Decoded {
        seg_len: u64_at(buf, 4),
        last_crc: u32_at(12),
        max_ts: u64_at(buf, 32) as i64,
        ..Decoded::default()
    };
    let (base, n_ents) = (u64_at(buf, 16), u64_at(buf, 24));
    if base > MAX_SEQ || n_ents > MAX_SEQ || d.seg_len > u64::from(u32::MAX) {
        return None;
    }
    d.chunks.push(Chunk {
        base,
        stop: u32::MAX,
        ..Chunk::default()
    });
    d.mark = Mark {
        last_seq: u64_at(buf, 40),
        last_ts: u64_at(buf, 48) as i64,
        floor: u64_at(buf, 56),
        tombs: Vec::new(),
    };
    let (n_subj, n_tombs, body_len) = (
        u32_at(64) as usize,
        u32_at(68) as usize,
        u32_at(72) as usize,
    );
    let mut at = FIXED;
    let mut sids = Vec::new();
    for _ in 0..n_subj {
        let l = usize::from(u16::from_le_bytes([*buf.get(at)?, *buf.get(at + 1)?]));
        let name = buf.get(at + 2..at + 2 + l)?;
        sids.push(ix.intern(name)?);
        at += 2 + l;
    }
    let body = buf.get(at..at.checked_add(body_len)?)?;
    at += body_len;
    decode_body(body, &sids, &mut d)?;
    let mut prev = 0u64;
    for i in 0..n_tombs {
        let delta = get_uvarint(&buf[..end], &mut at)?;
        if i > 0 && delta == 0 {
            return None;
        }
        prev = prev.checked_add(delta)?;
        d.mark.tombs.push(prev);
    }
    let counted: u64 = d.chunks.iter().map(|c| c.ents.len() as u64).sum();
    let m = &d.mark;
    // A consistent mark's tombstones and floor stay within its last sequence (+ 1).
    let sane = d.chunks.iter().all(|c| c.end() <= MAX_SEQ) && m.last_seq <= MAX_SEQ;
    let sane = sane && m.is_consistent();
    (at == end && counted == n_ents && sane).then_some(d)
}

fn decode_body(body: &[u8], sids: &[u32], d: &mut Decoded) -> Option<()> {
    let (mut at, mut cursor) = (0usize, 0u64);
    let (mut len, mut subj) = (None::<u64>, None::<u32>);
    let mut c = d.chunks.pop()?;
    while at < body.len() {
        let tag = get_uvarint(body, &mut at)?;
        match tag & 3 {
            0 => {
                if tag & 8 == 0 {
                    len = Some(get_uvarint(body, &mut at)?);
                }
                if tag & 4 == 0 {
                    let li = usize::try_from(get_uvarint(body, &mut at)?).ok()?;
                    subj = Some(*sids.get(li)?);
                }
                let (l, s, n) = (len?, subj?, tag >> 4);
                if l == 0 || n == 0 || cursor.checked_add(l.checked_mul(n)?)? > d.seg_len {
                    return None;
                }
                for _ in 0..n {
                    c.ents.push(Ent {
                        loc: u32::try_from(cursor).ok()?,
                        sid: s,
                    });
                    cursor += l;
                }
            }
            1 => {
                let k = tag >> 2;
                if k == 0 || k > MAX_PAD {
                    return None;
                }
                let loc = u32::try_from(cursor).ok()?;
                c.ents
                    .extend(std::iter::repeat_n(Ent { loc, sid: HOLE }, k as usize));
            }
            2 => {
                let l = tag >> 2;
                d.gaps.push(u32::try_from(cursor).ok()?);
                cursor = cursor.checked_add(l)?;
                if l == 0 || cursor > d.seg_len {
                    return None;
                }
            }
            _ => {
                let base = c.end().checked_add(tag >> 2).filter(|&b| b <= MAX_SEQ)?;
                c.stop = u32::try_from(cursor).ok()?;
                d.chunks.push(std::mem::replace(
                    &mut c,
                    Chunk {
                        base,
                        stop: u32::MAX,
                        ..Chunk::default()
                    },
                ));
            }
        }
    }
    d.chunks.push(c);
    (cursor == d.seg_len).then_some(())
}
