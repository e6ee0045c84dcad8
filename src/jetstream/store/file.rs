//! The file store: the index over segment files. This file has what happens between flushes
//! (appends, removals, reads, expiry); `flush.rs` has flush, rollback, compaction and syncs.
//!
//! Appends only touch memory: the record is encoded into the active segment's tail buffer
//! and indexed at once (readable right away). Removals only touch the index (and queue a
//! tombstone or move the floor). Nothing reaches the file until `flush`.

use super::index::{Chunk, Index, MAX_PAD};
use super::limits::{self, Purged};
use super::record::{self, decode, Rec};
use super::recover::{self, Recovered};
use super::segment::{idx_path, seg_index, seg_path, sizer, Seg, Window};
use super::{FileConfig, Lost, Recovery, State, StoreError, StoreLimits, StoredMsg};
use log::warn;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Bytes read at a time when walking records (expiry, time lookups).
const WINDOW: usize = 64 << 10;

/// State as of the last successful flush: what a rollback returns to.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Saved {
    pub first: u64,
    pub last: u64,
    pub last_ts: i64,
    /// The active segment then; later ones were created since.
    pub active: u32,
}

pub struct FileStore {
    pub(super) cfg: FileConfig,
    pub(super) dir: PathBuf,
    /// The `seg/` folder, opened for fsync.
    pub(super) dir_file: Arc<File>,
    /// Directories whose entries changed and are not known synced, and the flush id whose
    /// sync covers them.
    pub(super) dirs_pending: Vec<Arc<File>>,
    pub(super) dirs_until: u64,
    pub(super) ix: Index,
    /// Ascending ids; the last is the active one.
    pub(super) segs: VecDeque<Seg>,
    pub(super) next_id: u32,
    pub(super) limits: StoreLimits,
    pub(super) failed: bool,
    /// Damage found by recovery, and later by reads of records that fail their check.
    pub(super) lost: RefCell<Lost>,
    pub(super) saved: Saved,
    /// A mark must be written at the next flush even without tombstones or a floor move.
    pub(super) force_mark: bool,
    /// Secure deletes of flushed records, done after the next flush: (segment, offset, length).
    pub(super) erases: Vec<(u32, u64, u64)>,
    pub(super) flush_id: u64,
    pub(super) synced_id: u64,
    /// Index files built at sealing, written once a sync covers flush `.0`.
    pub(super) idx_pending: Vec<(u64, u32, Vec<u8>)>,
    /// Compacted segments, deleted once a sync covers flush `.0`.
    pub(super) doomed: Vec<(u64, u32)>,
    /// `Index::drops` when dead segments were last looked for (None: look next flush).
    pub(super) compact_seen: Option<u64>,
    first_ts: Cell<(u64, i64)>,
    window: RefCell<Window>,
    /// Where `seg` found a segment last (readers go through one segment after another).
    seg_hint: Cell<usize>,
}

/// Creates `dir` if missing; returns whether it did.
fn ensure_dir(dir: &Path) -> io::Result<bool> {
    match fs::create_dir(dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(false),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(dir)?;
            Ok(true)
        }
        Err(e) => Err(e),
    }
}

impl FileStore {
    pub fn open(cfg: FileConfig, limits: StoreLimits) -> io::Result<(FileStore, Recovery)> {
        let mut cfg = cfg;
        cfg.segment_size = cfg.segment_size.clamp(1, 1 << 30);
        let created = ensure_dir(&cfg.dir)?;
        let dir = cfg.dir.join("seg");
        let created_seg = ensure_dir(&dir)?;
        let dir_file = Arc::new(File::open(&dir)?);
        let mut dirs_pending = Vec::new();
        if created_seg {
            dirs_pending.push(Arc::new(File::open(&cfg.dir)?));
        }
        if created {
            if let Some(parent) = cfg.dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                dirs_pending.push(Arc::new(File::open(parent)?));
            }
        }
        let r = recover::recover(&dir)?;
        let lost = RefCell::new(Lost {
            msgs: r.rec.lost_seqs.clone(),
            bytes: r.rec.lost_bytes,
        });
        let Recovered {
            ix,
            segs,
            rec,
            next_id,
            to_index,
            failed,
            renamed,
        } = r;
        if renamed {
            dirs_pending.push(dir_file.clone());
        }
        let mut fs = FileStore {
            cfg,
            dir,
            dir_file,
            dirs_pending,
            dirs_until: 1,
            ix,
            segs,
            next_id,
            limits,
            failed,
            lost,
            saved: Saved::default(),
            force_mark: false,
            erases: Vec::new(),
            flush_id: 0,
            synced_id: 0,
            idx_pending: Vec::new(),
            doomed: Vec::new(),
            compact_seen: None,
            first_ts: Cell::new((0, 0)),
            window: RefCell::default(),
            seg_hint: Cell::new(0),
        };
        for id in to_index {
            fs.build_index(id, 0);
        }
        // Recovery read past damage in the active segment: sealed, so that its bytes stay as
        // they are. Appended records could frame the damaged record's length and make the next
        // scan skip what this one found behind it.
        if fs.segs.back().is_some_and(|s| !s.clean) {
            fs.roll(fs.ix.last + 1);
        }
        // What a failed first flush rolls back to (the new segment stays the active one).
        fs.saved = fs.saved_now();
        if rec.lost_bytes > 0 || !rec.lost_seqs.is_empty() {
            warn!(
                "store {}: recovery lost {} bytes, sequences {:?}",
                fs.dir.display(),
                rec.lost_bytes,
                rec.lost_seqs
            );
        }
        // Limits as they are now (they may have been lowered while stopped); the removals are
        // written by the first flush.
        limits::enforce_all(&mut fs.ix, &fs.limits, &mut sizer(&fs.segs));
        Ok((fs, rec))
    }

    /// The state a rollback returns to, as it is now.
    pub(super) fn saved_now(&self) -> Saved {
        Saved {
            first: self.ix.first,
            last: self.ix.last,
            last_ts: self.ix.last_ts,
            active: self.segs.back().map_or(0, |s| s.id),
        }
    }

    pub fn index(&self) -> &Index {
        &self.ix
    }

    pub fn limits(&self) -> &StoreLimits {
        &self.limits
    }

    pub fn is_failed(&self) -> bool {
        self.failed
    }

    pub fn lost(&self) -> Option<Lost> {
        let l = self.lost.borrow();
        (!l.msgs.is_empty() || l.bytes > 0).then(|| l.clone())
    }

    /// A record that fails its check when read: reported like recovery's losses.
    fn damaged(&self, seq: u64, len: usize) {
        warn!(
            "store {}: record of seq {seq} fails its check",
            self.dir.display()
        );
        let mut l = self.lost.borrow_mut();
        if let Err(i) = l.msgs.binary_search(&seq) {
            l.msgs.insert(i, seq);
            l.bytes += len as u64;
        }
    }

    pub(super) fn seg(&self, id: u32) -> Option<&Seg> {
        if let Some(s) = self.segs.get(self.seg_hint.get()).filter(|s| s.id == id) {
            return Some(s);
        }
        let i = seg_index(&self.segs, id)?;
        // The active segment (the flush's) does not move a reader's hint off its segment.
        if i + 1 < self.segs.len() {
            self.seg_hint.set(i);
        }
        self.segs.get(i)
    }

    pub(super) fn seg_mut(&mut self, id: u32) -> Option<&mut Seg> {
        let i = seg_index(&self.segs, id)?;
        self.segs.get_mut(i)
    }

    /// Starts a new active segment whose first sequence will be `base`.
    fn roll(&mut self, base: u64) {
        if let Some(s) = self.segs.back_mut() {
            s.sealed = true;
        }
        let id = self.next_id;
        self.next_id += 1;
        self.segs.push_back(Seg::new(id));
        self.ix.push_chunk(base, id);
        self.compact_seen = None;
    }

    /// Makes the active segment and its chunk ready to take sequence `seq`.
    fn ready_for(&mut self, seq: u64) {
        let full = self
            .segs
            .back()
            .is_none_or(|s| s.end > 0 && s.end >= self.cfg.segment_size);
        if full {
            return self.roll(seq);
        }
        let Some(end) = self.segs.back().map(|s| s.end as u32) else {
            return;
        };
        let Some(c) = self.ix.chunks.back_mut() else {
            return self.roll(seq);
        };
        if c.ents.is_empty() {
            c.base = seq;
        } else if seq - c.end() > MAX_PAD {
            c.stop = end;
            let id = c.seg;
            self.ix.push_chunk(seq, id);
        } else {
            while self.ix.chunks.back().is_some_and(|c| c.end() < seq) {
                self.ix.pad(end);
            }
        }
    }

    pub fn append(
        &mut self,
        subject: &[u8],
        hdr: &[u8],
        data: &[u8],
        ts: i64,
    ) -> Result<u64, StoreError> {
        if self.failed {
            return Err(StoreError::Failed);
        }
        super::check_input(subject, hdr, data)?;
        let len = record::msg_len(subject, hdr, data);
        let payload = (hdr.len() + data.len()) as u64;
        limits::check_new(
            &mut self.ix,
            &self.limits,
            subject,
            payload,
            false,
            &mut sizer(&self.segs),
        )?;
        let seq = next_seq(&self.ix)?;
        let sid = self.ix.intern(subject).ok_or(StoreError::TooManySubjects)?;
        self.ready_for(seq);
        let Some(seg) = self.segs.back_mut() else {
            return Err(StoreError::Failed);
        };
        let off = seg.end as u32;
        record::encode_msg(&mut seg.tail, seq, ts, subject, hdr, data);
        seg.end += len as u64;
        seg.max_ts = seg.max_ts.max(ts);
        self.ix.subs[sid as usize].seg = seg.id;
        self.ix.push_msg(seq, off, sid, len as u64 + 3, ts);
        limits::enforce(&mut self.ix, &self.limits, sid, &mut sizer(&self.segs));
        Ok(seq)
    }

    pub fn skip(&mut self, ts: i64) -> Result<u64, StoreError> {
        if self.failed {
            return Err(StoreError::Failed);
        }
        let seq = next_seq(&self.ix)?;
        self.ix.skip(seq, ts);
        // The tombstone tells recovery the sequence was not lost (dropped if under the floor).
        self.ix.tombs.push(seq);
        Ok(seq)
    }

    pub fn remove(&mut self, seq: u64, erase: bool) -> bool {
        if self.failed {
            return false;
        }
        let Some((ci, pos, _)) = self.ix.live(seq) else {
            return false;
        };
        let c = &self.ix.chunks[ci];
        let (id, off) = (c.seg, u64::from(c.ents[pos].loc));
        let len = self.seg(id).map_or(0, |s| s.record_len(c, pos));
        self.ix.remove(seq, &mut sizer(&self.segs));
        if erase {
            self.erase(id, off, len);
        }
        true
    }

    /// Secure delete: zeroes the record's headers and data now if it is not flushed yet, else
    /// after the next flush (which writes its tombstone first).
    fn erase(&mut self, id: u32, off: u64, len: u64) {
        let Some(seg) = self.seg_mut(id) else { return };
        if off >= seg.durable {
            let at = (off - seg.tail_start) as usize;
            record::erase(&mut seg.tail[at..at + len as usize]);
        } else {
            self.erases.push((id, off, len));
        }
    }

    pub fn purge(&mut self, filter: Option<&[u8]>, upto: Option<u64>, keep: Option<u64>) -> Purged {
        if self.failed {
            return Purged::default();
        }
        let p = limits::purge(&mut self.ix, filter, upto, keep, &mut sizer(&self.segs));
        // A jump of the last sequence is recorded by a mark even if nothing else changed.
        self.force_mark |= p.jumped;
        p
    }

    pub fn update_limits(&mut self, limits: StoreLimits) {
        self.limits = limits;
        if !self.failed {
            limits::enforce_all(&mut self.ix, &self.limits, &mut sizer(&self.segs));
        }
    }

    /// The record of a live message, read and checked. None (and a log line) if unreadable.
    fn read_msg(&self, seq: u64) -> Option<(Vec<u8>, usize)> {
        let mut buf = Vec::new();
        let len = self.read_msg_into(seq, &mut buf)?;
        Some((buf, len))
    }

    /// The record of `seq` into `buf`; returns its length.
    fn read_msg_into(&self, seq: u64, buf: &mut Vec<u8>) -> Option<usize> {
        let (ci, pos, _) = self.ix.live(seq)?;
        let c = &self.ix.chunks[ci];
        let seg = self.seg(c.seg)?;
        let len = seg.record_len(c, pos) as usize;
        let at = u64::from(c.ents[pos].loc);
        match self.window.borrow_mut().read(seg, at, len, buf) {
            Ok(()) => Some(len),
            Err(e) => {
                warn!("store {}: reading seq {seq}: {e}", self.dir.display());
                None
            }
        }
    }

    /// `load` into a buffer the caller had spare (the consumers recycle theirs).
    pub fn load_into(&self, seq: u64, mut buf: Vec<u8>) -> Option<StoredMsg> {
        let len = self.read_msg_into(seq, &mut buf)?;
        let m = match decode(&buf) {
            Ok((Rec::Msg(m), n)) if n == len && m.seq == seq && !m.erased => m,
            _ => {
                self.damaged(seq, len);
                return None;
            }
        };
        let at = |s: &[u8]| s.as_ptr() as usize - buf.as_ptr() as usize;
        let (s, h, d) = (at(m.subject), at(m.hdr), at(m.data));
        let (subject, hdr, data) = (
            s..s + m.subject.len(),
            h..h + m.hdr.len(),
            d..d + m.data.len(),
        );
        let ts = m.ts;
        Some(StoredMsg {
            seq,
            ts,
            buf,
            subject,
            hdr,
            data,
        })
    }

    pub fn load(&self, seq: u64) -> Option<StoredMsg> {
        self.load_into(seq, Vec::new())
    }

    /// The timestamp of a live message, from its checked record.
    fn ts_of(&self, seq: u64) -> Option<i64> {
        let (buf, len) = self.read_msg(seq)?;
        match decode(&buf) {
            Ok((Rec::Msg(m), n)) if n == len && m.seq == seq => Some(m.ts),
            _ => None,
        }
    }

    pub fn state(&self) -> State {
        State::from_index(&self.ix)
    }

    /// The first message's time: read from disk once per first sequence.
    pub fn first_ts(&self) -> i64 {
        let first = self.ix.first;
        match self.first_ts.get() {
            _ if self.ix.msgs == 0 => 0,
            (seq, ts) if seq == first => ts,
            _ => {
                let ts = self.ts_of(first).unwrap_or(0);
                self.first_ts.set((first, ts));
                ts
            }
        }
    }

    /// The timestamps of chunk `ci`'s live messages from `from` on, reading a window at a
    /// time, until `f` returns false. Unreadable records are passed as None.
    fn walk_ts(&self, ci: usize, from: u64, mut f: impl FnMut(u64, Option<i64>) -> bool) {
        let c = &self.ix.chunks[ci];
        let Some(seg) = self.seg(c.seg) else { return };
        let (mut win, mut win_at) = (Vec::new(), 0u64);
        for pos in (from.max(c.base) - c.base) as usize..c.ents.len() {
            let seq = c.base + pos as u64;
            if c.ents[pos].live_sid().is_none() || seq < self.ix.first {
                continue;
            }
            let (off, len) = (u64::from(c.ents[pos].loc), seg.record_len(c, pos));
            if off < win_at || off + len > win_at + win.len() as u64 {
                let want = (len as usize).max(WINDOW).min((seg.end - off) as usize);
                win = seg.read(off, want).unwrap_or_default();
                win_at = off;
            }
            let rel = (off - win_at) as usize;
            let ts = match win.get(rel..rel + len as usize).map(decode) {
                Some(Ok((Rec::Msg(m), _))) if m.seq == seq => Some(m.ts),
                _ => {
                    self.damaged(seq, len as usize);
                    None
                }
            };
            if !f(seq, ts) {
                return;
            }
        }
    }

    /// Removes messages older than `max_age`; returns when the next one expires.
    pub fn expire(&mut self, now: i64) -> Option<i64> {
        let age = i64::try_from(self.limits.max_age.as_nanos()).unwrap_or(i64::MAX);
        if age == 0 || self.failed {
            return None;
        }
        let cutoff = now.saturating_sub(age);
        while self.ix.msgs > 0 {
            let (ci, _) = self.ix.locate(self.ix.first)?;
            let (end, id) = (self.ix.chunks[ci].end(), self.ix.chunks[ci].seg);
            if self.seg(id).is_some_and(|s| s.max_ts <= cutoff) {
                self.ix.floor_to(end, &mut sizer(&self.segs));
                continue;
            }
            let (mut expired, mut next) = (None, None);
            self.walk_ts(ci, self.ix.first, |seq, ts| match ts {
                Some(ts) if ts > cutoff => {
                    next = Some(ts);
                    false
                }
                // Expired, or unreadable (reported lost; it cannot be served any more).
                _ => {
                    expired = Some(seq);
                    true
                }
            });
            match (expired, next) {
                (_, Some(ts)) => {
                    if let Some(seq) = expired {
                        self.ix.floor_to(seq + 1, &mut sizer(&self.segs));
                    }
                    return Some(ts.saturating_add(age));
                }
                (Some(seq), None) => {
                    self.ix.floor_to(seq + 1, &mut sizer(&self.segs));
                }
                (None, None) => return None,
            }
        }
        None
    }

    /// The first live message stamped at or after `ts`.
    pub fn seq_at_or_after_time(&self, ts: i64) -> Option<u64> {
        for ci in 0..self.ix.chunks.len() {
            let c = &self.ix.chunks[ci];
            if c.live == 0 || self.seg(c.seg).is_none_or(|s| s.max_ts < ts) {
                continue;
            }
            let mut found = None;
            self.walk_ts(ci, self.ix.first, |seq, t| {
                if t.is_some_and(|t| t >= ts) {
                    found = Some(seq);
                }
                found.is_none()
            });
            if found.is_some() {
                return found;
            }
        }
        None
    }

    /// Removes the store's files and its `seg/` folder.
    pub fn delete_all(self) -> io::Result<()> {
        let dir = self.dir.clone();
        drop(self);
        fs::remove_dir_all(&dir)
    }

    /// Builds the index file of sealed segment `id`, to be written once flush `after` is synced.
    pub(super) fn build_index(&mut self, id: u32, after: u64) {
        let Some(seg) = self.seg(id) else { return };
        if !seg.clean || seg.has_idx {
            return;
        }
        let chunks: Vec<&Chunk> = self.ix.chunks.iter().filter(|c| c.seg == id).collect();
        let mut crc = [0u8; 4];
        if seg.end >= 4 {
            match seg.read(seg.end - 4, 4) {
                Ok(b) => crc.copy_from_slice(&b),
                Err(_) => return,
            }
        }
        let Some(bytes) = super::idx::encode(seg, &chunks, &self.ix, u32::from_le_bytes(crc))
        else {
            warn!(
                "store {}: segment {id} could not be indexed",
                self.dir.display()
            );
            return;
        };
        self.idx_pending.push((after, id, bytes));
        if let Some(seg) = self.seg_mut(id) {
            seg.has_idx = true;
        }
    }

    pub(super) fn seg_paths(&self, id: u32) -> (PathBuf, PathBuf) {
        (seg_path(&self.dir, id), idx_path(&self.dir, id))
    }
}

/// The next sequence, unless it is past what a record carries (recovery would read such a
/// record as garbage and the sequence would go back).
fn next_seq(ix: &Index) -> Result<u64, StoreError> {
    Some(ix.last + 1)
        .filter(|&s| s <= record::MAX_SEQ)
        .ok_or(StoreError::SeqExhausted)
}
