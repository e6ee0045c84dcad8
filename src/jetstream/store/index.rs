//! The in-memory index both stores share: sequence -> entry, the subject table, the counters
//! and the removal rules. It does no I/O and knows nothing of files: an entry's `loc` is a file
//! offset for the file store and a slot for the memory store, and the byte size of a message
//! comes from the store through a callback (`SizeFn`), so the index itself stays 8 bytes per
//! sequence.
//!
//! Sequences live in chunks: `ents[i]` describes sequence `base + i`. A gap of a few
//! sequences without messages inside a chunk is padded with `HOLE` entries; a longer one (a
//! run of skips, a purge past the end) starts a new chunk, so skipped sequences cost nothing.
//! In the file store each chunk belongs to one segment, and a segment may have several. A message is live when its sequence is at least `first` and its entry is not
//! flagged `GONE`. Two ways to remove, matching the two kinds of marks on disk:
//! - the floor (`floor_to`, `drop_head`, `purge_all`): everything below moves out of the
//!   stream at once. Entries are not touched (a purge of millions is a counter update and one
//!   pass over the subjects), only `first` moves;
//! - one by one (`remove`): the entry gets the `GONE` bit, keeping its subject id in the low
//!   bits, and the sequence goes on `tombs`, which the file store writes at its next flush.
//!
//! Per subject: an exact count and last sequence, and a lower bound for the first one
//! (`first` is exact when it matters: when one message is left, and after `oldest_of`).

use crate::util::hash::{new_map, FastMap};
use std::cell::Cell;
use std::collections::VecDeque;

/// `Ent::sid` of a sequence that was consumed without a message (skip, lost record).
pub const HOLE: u32 = u32::MAX;
/// Longest run of `HOLE`s a chunk is padded with; a longer gap starts a new chunk.
pub const MAX_PAD: u64 = 64;
/// `Ent::sid` flag: the message was removed; the low bits still name its subject.
pub const GONE: u32 = 1 << 31;
/// Subject ids stay below the flag bit (and `HOLE`).
pub const MAX_SUBJECTS: usize = (GONE - 1) as usize;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ent {
    pub loc: u32,
    pub sid: u32,
}

impl Ent {
    /// A record exists for this sequence (live or removed).
    pub fn is_msg(self) -> bool {
        self.sid != HOLE
    }
    /// The subject id of a live message.
    pub fn live_sid(self) -> Option<u32> {
        (self.sid & GONE == 0).then_some(self.sid)
    }
    /// The subject id of a message record, live or removed.
    pub fn subject(self) -> u32 {
        self.sid & !GONE
    }
}

#[derive(Debug, Default)]
pub struct Chunk {
    pub base: u64,
    pub ents: Vec<Ent>,
    /// Live messages in this chunk.
    pub live: u32,
    /// The store's tag: the file store's segment id.
    pub seg: u32,
    /// File store: where this chunk's records stop when another chunk of the same segment
    /// follows (`u32::MAX`: the segment's end bounds it).
    pub stop: u32,
}

impl Chunk {
    /// One past the last sequence described.
    pub fn end(&self) -> u64 {
        self.base + self.ents.len() as u64
    }
}

#[derive(Debug)]
pub struct Subj {
    pub name: Box<[u8]>,
    pub msgs: u64,
    /// No live message of this subject is below `first` (exact when `msgs == 1`).
    pub first: u64,
    pub last: u64,
    /// The store's tag: the segment of its latest append (see `free_zeroed`).
    pub seg: u32,
}

/// Size of the message at `chunk.ents[pos]`, in the store's `bytes` measure. The memory store
/// also releases the message's slot here when it is being dropped.
pub type SizeFn<'a> = dyn FnMut(&Chunk, usize) -> u64 + 'a;

pub struct Index {
    pub chunks: VecDeque<Chunk>,
    pub subs: Vec<Subj>,
    pub(super) names: FastMap<Box<[u8]>, u32>,
    pub(super) free: Vec<u32>,
    /// Subjects whose count fell to zero, to be freed when no entry can name them again.
    zeroed: Vec<u32>,
    pub num_subjects: usize,
    pub msgs: u64,
    pub bytes: u64,
    /// nats-server's first sequence: 0 in a fresh stream, else every sequence below is gone;
    /// the first live message when there is one, `last + 1` when there is none.
    pub first: u64,
    pub last: u64,
    pub last_ts: i64,
    /// Removed one by one since the last flush (the file store's tombstones).
    pub tombs: Vec<u64>,
    /// The subject `intern` returned last.
    hot: u32,
    /// Messages dropped so far, any way (tells the file store when to look for dead segments).
    pub drops: u64,
    /// The chunk `chunk_from` found last: readers go forward in order, so the next answer
    /// is usually this chunk or the one after it (no binary search per delivery).
    hint: Cell<usize>,
}

impl Default for Index {
    fn default() -> Index {
        Index::new()
    }
}

impl Index {
    pub fn new() -> Index {
        Index {
            chunks: VecDeque::new(),
            subs: Vec::new(),
            names: new_map(),
            free: Vec::new(),
            zeroed: Vec::new(),
            num_subjects: 0,
            msgs: 0,
            bytes: 0,
            first: 0,
            last: 0,
            last_ts: 0,
            tombs: Vec::new(),
            hot: 0,
            drops: 0,
            hint: Cell::new(0),
        }
    }

    /// The first chunk that ends after `seq` (`partition_point(|c| c.end() <= seq)`).
    fn chunk_from(&self, seq: u64) -> usize {
        let h = self.hint.get();
        for i in [h, h + 1] {
            let Some(c) = self.chunks.get(i) else { break };
            let before = i.checked_sub(1).and_then(|b| self.chunks.get(b));
            if c.end() > seq && before.is_none_or(|b| b.end() <= seq) {
                self.hint.set(i);
                return i;
            }
        }
        let i = self.chunks.partition_point(|c| c.end() <= seq);
        self.hint.set(i);
        i
    }

    /// Chunk and position describing `seq`, if any chunk does.
    pub fn locate(&self, seq: u64) -> Option<(usize, usize)> {
        let n = self.chunks.len();
        let last = self.chunks.back()?;
        if seq >= last.base {
            return (seq < last.end()).then(|| (n - 1, (seq - last.base) as usize));
        }
        let i = self.chunk_from(seq);
        let c = self.chunks.get(i)?;
        (seq >= c.base).then(|| (i, (seq - c.base) as usize))
    }

    pub fn ent(&self, seq: u64) -> Option<Ent> {
        let (ci, pos) = self.locate(seq)?;
        Some(self.chunks[ci].ents[pos])
    }

    /// `(chunk, position, subject id)` of a live message.
    pub fn live(&self, seq: u64) -> Option<(usize, usize, u32)> {
        if seq < self.first || seq > self.last {
            return None;
        }
        let (ci, pos) = self.locate(seq)?;
        let sid = self.chunks[ci].ents[pos].live_sid()?;
        Some((ci, pos, sid))
    }

    pub fn lookup(&self, name: &[u8]) -> Option<u32> {
        self.names.get(name).copied()
    }

    pub fn name(&self, sid: u32) -> &[u8] {
        &self.subs[sid as usize].name
    }

    /// The id of `name`, creating its entry (count 0) when new. `None` past `MAX_SUBJECTS`.
    pub fn intern(&mut self, name: &[u8]) -> Option<u32> {
        // Publishers tend to repeat a subject: compare with the last one before hashing.
        if let Some(s) = self.subs.get(self.hot as usize) {
            if *s.name == *name && !name.is_empty() {
                return Some(self.hot);
            }
        }
        if let Some(&sid) = self.names.get(name) {
            self.hot = sid;
            return Some(sid);
        }
        let subj = Subj {
            name: name.into(),
            msgs: 0,
            first: 0,
            last: 0,
            seg: 0,
        };
        let sid = match self.free.pop() {
            Some(sid) => {
                self.subs[sid as usize] = subj;
                sid
            }
            None if self.subs.len() < MAX_SUBJECTS => {
                self.subs.push(subj);
                (self.subs.len() - 1) as u32
            }
            None => return None,
        };
        self.names.insert(name.into(), sid);
        self.zeroed.push(sid);
        Some(sid)
    }

    /// Frees the ids of subjects with no messages left, except those `keep` still needs
    /// (the file store keeps any subject the active segment's entries may name, since its
    /// index file is built from them, and frees nothing while a flush could roll back).
    pub fn free_zeroed(&mut self, keep: impl Fn(&Subj) -> bool) {
        let mut i = 0;
        while i < self.zeroed.len() {
            let sid = self.zeroed[i];
            let s = &self.subs[sid as usize];
            if s.msgs > 0 || s.name.is_empty() {
                self.zeroed.swap_remove(i);
            } else if keep(s) {
                i += 1;
            } else {
                let name = std::mem::take(&mut self.subs[sid as usize].name);
                self.names.remove(&name);
                self.free.push(sid);
                self.zeroed.swap_remove(i);
            }
        }
    }

    pub fn push_chunk(&mut self, base: u64, seg: u32) {
        self.chunks.push_back(Chunk {
            base,
            ents: Vec::new(),
            live: 0,
            seg,
            stop: u32::MAX,
        });
    }

    /// Pads the last chunk with an entry for a sequence that has no message.
    pub fn pad(&mut self, loc: u32) {
        if let Some(c) = self.chunks.back_mut() {
            c.ents.push(Ent { loc, sid: HOLE });
        }
    }

    /// Indexes a new message `seq == last + 1`, which the last chunk must be ready to take.
    pub fn push_msg(&mut self, seq: u64, loc: u32, sid: u32, size: u64, ts: i64) {
        let Some(c) = self.chunks.back_mut() else {
            return;
        };
        debug_assert_eq!(c.end(), seq);
        c.ents.push(Ent { loc, sid });
        c.live += 1;
        if self.msgs == 0 {
            self.first = seq;
        }
        self.msgs += 1;
        self.bytes += size;
        self.last = seq;
        self.last_ts = ts;
        let s = &mut self.subs[sid as usize];
        if s.msgs == 0 {
            s.first = seq;
            self.num_subjects += 1;
        }
        s.msgs += 1;
        s.last = seq;
    }

    /// Consumes `seq == last + 1` without a message (nats-server's SkipMsg). No entry: a
    /// later message pads or starts a chunk.
    pub fn skip(&mut self, seq: u64, ts: i64) {
        self.last = seq;
        self.last_ts = ts;
        if self.msgs == 0 {
            self.first = seq + 1;
        }
    }

    /// Removes one live message and records it for a tombstone.
    /// Returns the removed entry, or `None` if `seq` is not a live message.
    pub fn remove(&mut self, seq: u64, size: &mut SizeFn) -> Option<Ent> {
        let (ci, pos, sid) = self.live(seq)?;
        let sz = size(&self.chunks[ci], pos);
        let c = &mut self.chunks[ci];
        let ent = c.ents[pos];
        c.ents[pos].sid |= GONE;
        c.live -= 1;
        self.msgs -= 1;
        self.bytes -= sz;
        self.drops += 1;
        self.subject_dropped(sid, seq, true);
        self.tombs.push(seq);
        if seq == self.first {
            self.advance_first();
        }
        Some(ent)
    }

    /// Drops the first live message (limits), under the floor: no tombstone.
    pub fn drop_head(&mut self, size: &mut SizeFn) -> bool {
        if self.msgs == 0 {
            return false;
        }
        let head = self.first;
        self.floor_to(head + 1, size) == 1
    }

    /// Drops every live message below `to` and raises `first` to at least `to` (within
    /// `last + 1`). Returns how many were dropped.
    pub fn floor_to(&mut self, to: u64, size: &mut SizeFn) -> u64 {
        let to = to.min(self.last + 1);
        if to <= self.first {
            return 0;
        }
        if to > self.last {
            return self.purge_all();
        }
        let mut dropped = 0;
        let mut ci = self.chunks.partition_point(|c| c.end() <= self.first);
        while ci < self.chunks.len() && self.chunks[ci].base < to {
            let (base, end) = (self.chunks[ci].base, self.chunks[ci].end());
            for seq in self.first.max(base)..to.min(end) {
                if self.chunks[ci].live == 0 {
                    break;
                }
                let pos = (seq - base) as usize;
                let Some(sid) = self.chunks[ci].ents[pos].live_sid() else {
                    continue;
                };
                let sz = size(&self.chunks[ci], pos);
                self.chunks[ci].live -= 1;
                self.msgs -= 1;
                self.bytes -= sz;
                self.drops += 1;
                self.subject_dropped(sid, seq, false);
                dropped += 1;
            }
            ci += 1;
        }
        self.first = to;
        self.advance_first();
        dropped
    }

    /// Everything goes (purge): `first = last + 1`. Touches chunks and subjects, not entries.
    pub fn purge_all(&mut self) -> u64 {
        let n = self.msgs;
        for c in self.chunks.iter_mut() {
            c.live = 0;
        }
        for (sid, s) in self.subs.iter_mut().enumerate() {
            if s.msgs > 0 {
                s.msgs = 0;
                self.zeroed.push(sid as u32);
            }
        }
        self.num_subjects = 0;
        self.msgs = 0;
        self.bytes = 0;
        self.first = self.last + 1;
        self.drops += n.max(1);
        n
    }

    fn subject_dropped(&mut self, sid: u32, seq: u64, maybe_last: bool) {
        let s = &mut self.subs[sid as usize];
        s.msgs -= 1;
        if s.msgs == 0 {
            self.num_subjects -= 1;
            self.zeroed.push(sid);
            return;
        }
        if s.first == seq {
            s.first = seq + 1;
        }
        if maybe_last && s.last == seq {
            let lower = s.first.max(self.first);
            let last = self
                .scan_back(seq - 1, lower, |x| x == sid)
                .unwrap_or(lower);
            self.subs[sid as usize].last = last;
        }
        let s = &mut self.subs[sid as usize];
        if s.msgs == 1 {
            s.first = s.last;
        }
    }

    /// After the head went: `first` moves to the next live message, or `last + 1`.
    fn advance_first(&mut self) {
        if self.msgs == 0 {
            self.first = self.first.max(self.last + 1);
            return;
        }
        let from = self.first;
        if let Some(seq) = self.scan(from, self.last, |_| true) {
            self.first = seq;
        }
    }

    /// The first live message in `[from, to]` whose subject id passes `keep`.
    pub fn scan(&self, from: u64, to: u64, mut keep: impl FnMut(u32) -> bool) -> Option<u64> {
        let from = from.max(self.first);
        if from > to {
            return None;
        }
        let start = self.chunk_from(from);
        for c in self.chunks.range(start..) {
            if c.base > to {
                break;
            }
            if c.live == 0 {
                continue;
            }
            let lo = (from.max(c.base) - c.base) as usize;
            let hi = (to.min(c.end() - 1) - c.base) as usize;
            for (i, e) in c.ents[lo..=hi].iter().enumerate() {
                if let Some(sid) = e.live_sid() {
                    if keep(sid) {
                        return Some(c.base + (lo + i) as u64);
                    }
                }
            }
        }
        None
    }

    /// The last live message in `[lower, from]` whose subject id passes `keep`.
    pub fn scan_back(&self, from: u64, lower: u64, keep: impl Fn(u32) -> bool) -> Option<u64> {
        let lower = lower.max(self.first).max(1);
        let mut seq = from.min(self.last);
        while seq >= lower {
            let Some((ci, pos)) = self.locate(seq) else {
                // Not described: go to the end of the chunk before it.
                let i = self.chunks.partition_point(|c| c.end() <= seq);
                seq = self.chunks.get(i.checked_sub(1)?)?.end().checked_sub(1)?;
                continue;
            };
            let c = &self.chunks[ci];
            if c.live > 0 {
                for p in (0..=pos).rev() {
                    let s = c.base + p as u64;
                    if s < lower {
                        return None;
                    }
                    if c.ents[p].live_sid().is_some_and(&keep) {
                        return Some(s);
                    }
                }
            }
            seq = c.base.checked_sub(1)?;
        }
        None
    }

    /// The oldest live message of subject `sid` (exact; refreshes the subject's lower bound).
    pub fn oldest_of(&mut self, sid: u32) -> Option<u64> {
        let s = &self.subs[sid as usize];
        if s.msgs == 0 {
            return None;
        }
        if s.msgs == 1 {
            return Some(s.last);
        }
        let (from, to) = (s.first, s.last);
        let seq = self.scan(from, to, |x| x == sid)?;
        self.subs[sid as usize].first = seq;
        Some(seq)
    }

    /// Recomputes every counter from the entries, `first` (as a floor) and the `GONE` bits:
    /// used by recovery, by a flush's rollback and by `check`. Afterwards `first` is the first
    /// live message, or `last + 1` (or 0 in a stream that never had a sequence).
    pub fn recount(&mut self, size: &mut SizeFn) {
        for s in self.subs.iter_mut() {
            s.msgs = 0;
        }
        let (mut msgs, mut bytes, mut first_live) = (0u64, 0u64, None);
        for ci in 0..self.chunks.len() {
            let c = &self.chunks[ci];
            let mut live = 0;
            for pos in 0..c.ents.len() {
                let seq = c.base + pos as u64;
                let Some(sid) = c.ents[pos].live_sid() else {
                    continue;
                };
                if seq < self.first || seq > self.last {
                    continue;
                }
                live += 1;
                bytes += size(c, pos);
                first_live.get_or_insert(seq);
                let s = &mut self.subs[sid as usize];
                if s.msgs == 0 {
                    s.first = seq;
                }
                s.msgs += 1;
                s.last = seq;
            }
            msgs += u64::from(live);
            self.chunks[ci].live = live;
        }
        self.msgs = msgs;
        self.bytes = bytes;
        self.num_subjects = self.subs.iter().filter(|s| s.msgs > 0).count();
        self.zeroed = (0..self.subs.len() as u32)
            .filter(|&sid| {
                self.subs[sid as usize].msgs == 0 && !self.subs[sid as usize].name.is_empty()
            })
            .collect();
        self.first = match first_live {
            Some(seq) => seq,
            None if self.first == 0 && self.last == 0 => 0,
            None => self.first.max(self.last + 1),
        };
    }

    /// Bytes of memory the index holds per its structures (for the figures, not exact).
    pub fn heap_bytes(&self) -> usize {
        let ents: usize = self.chunks.iter().map(|c| c.ents.capacity() * 8 + 48).sum();
        let subs: usize = self.subs.iter().map(|s| s.name.len() + 64 + 48).sum();
        ents + subs + self.tombs.capacity() * 8
    }
}
