//! The file store's flush and what hangs on it: the mark record, rollback on a write error,
//! compaction, and the work that waits for a sync (index files, deleting compacted segments).
//!
//! A flush appends at most one mark to the active segment (the floor if it moved, the
//! tombstones since the last flush, tombstones carried over from segments being compacted,
//! and always the last sequence), then writes each segment's pending bytes with one pwrite
//! at its known good length (normally one segment, so one pwrite). If a write fails, every
//! file is cut back to its good length, segments created since are deleted, and the index is
//! put back as the files describe it; the caller tells those publishers their messages were
//! not stored.
//!
//! Index files and deletions depend on data being on disk, so they wait for a completed sync
//! covering the flush they belong to (`synced`): an index file never describes bytes a power
//! loss could take back, and a segment is deleted only after the mark that replaces what it
//! held is safe.

use super::file::{FileStore, Saved};
use super::index::GONE;
use super::record::{self, Mark};
use super::segment::{open_rw, sizer, truncate, write_pending, Seg};
use super::sync::SyncTarget;
use super::{Flushed, StoreError};
use log::warn;
use std::fs;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

/// Flushed bytes of the active segment kept in memory for reads of the newest messages.
const TAIL_KEEP: usize = 64 << 10;

impl FileStore {
    pub fn flush(&mut self) -> Result<Flushed, StoreError> {
        if self.failed {
            return Err(StoreError::Failed);
        }
        // Segments can only die when messages go, or when one is sealed.
        let doomed = match self.compact_seen {
            Some(drops) if drops == self.ix.drops => Vec::new(),
            _ => self.dead_segments(),
        };
        let sealed_written = self
            .segs
            .iter()
            .rev()
            .any(|s| s.sealed && s.durable < s.end);
        let mark = self.pending_mark(&doomed);
        if let Some(m) = &mark {
            self.append_mark(m);
        }
        if self.segs.iter().all(|s| s.durable == s.end) {
            return Ok(Flushed {
                id: self.flush_id,
                target: SyncTarget::default(),
                wants_sync: self.wants_sync(),
            });
        }
        let id = self.flush_id + 1;
        match self.write_all(id) {
            Ok(mut target) => {
                self.commit(id, mark, &doomed);
                // A segment sealed and written just now may be dead: look again next time.
                self.compact_seen = (!sealed_written).then_some(self.ix.drops);
                let wants_sync = self.wants_sync();
                if wants_sync {
                    // Whoever syncs this and calls `synced(id)` vouches for every earlier flush.
                    target.merge(&self.unsynced());
                }
                Ok(Flushed {
                    id,
                    target,
                    wants_sync,
                })
            }
            Err(e) => {
                warn!(
                    "store {}: write failed, rolling back to the last flush: {e}",
                    self.dir.display()
                );
                self.rollback();
                self.compact_seen = None;
                Err(StoreError::Io(e))
            }
        }
    }

    fn wants_sync(&self) -> bool {
        !self.idx_pending.is_empty() || !self.doomed.is_empty()
    }

    /// Sealed, fully written segments without a live message.
    fn dead_segments(&self) -> Vec<u32> {
        // Chunks are in segment order, so this is sorted.
        let mut alive: Vec<u32> = self
            .ix
            .chunks
            .iter()
            .filter(|c| c.live > 0)
            .map(|c| c.seg)
            .collect();
        alive.dedup();
        let n = self.segs.len();
        self.segs
            .iter()
            .take(n.saturating_sub(1))
            .filter(|s| s.sealed && s.durable == s.end && alive.binary_search(&s.id).is_err())
            .map(|s| s.id)
            .collect()
    }

    /// The mark this flush must write, if any.
    fn pending_mark(&mut self, doomed: &[u32]) -> Option<Mark> {
        let mut tombs = std::mem::take(&mut self.ix.tombs);
        // Tombstones held by segments about to go, for messages in segments that stay.
        for &d in doomed {
            let Some(seg) = self.seg(d) else { continue };
            for &t in &seg.mark.tombs {
                let stays = self
                    .ix
                    .locate(t)
                    .is_some_and(|(ci, _)| !doomed.contains(&self.ix.chunks[ci].seg));
                if stays {
                    tombs.push(t);
                }
            }
        }
        let first = self.ix.first;
        tombs.retain(|&t| t >= first);
        tombs.sort_unstable();
        tombs.dedup();
        if tombs.is_empty() && first <= self.saved.first && !self.force_mark && doomed.is_empty() {
            return None;
        }
        Some(Mark {
            last_seq: self.ix.last,
            last_ts: self.ix.last_ts,
            floor: first,
            tombs,
        })
    }

    fn append_mark(&mut self, m: &Mark) {
        if self.segs.is_empty() {
            self.roll_for_mark();
        }
        let Some(seg) = self.segs.back_mut() else {
            return;
        };
        seg.gaps.push(seg.end as u32);
        seg.end += record::encode_mark(&mut seg.tail, m) as u64;
    }

    /// Writes every segment's pending bytes; returns what to sync for them.
    fn write_all(&mut self, id: u64) -> io::Result<SyncTarget> {
        let mut target = SyncTarget::default();
        for i in 0..self.segs.len() {
            if self.segs[i].durable == self.segs[i].end {
                continue;
            }
            if self.segs[i].file.is_none() {
                let path = self.seg_paths(self.segs[i].id).0;
                self.segs[i].file = Some(Arc::new(open_rw(&path, true)?));
                if !self
                    .dirs_pending
                    .iter()
                    .any(|d| Arc::ptr_eq(d, &self.dir_file))
                {
                    self.dirs_pending.push(self.dir_file.clone());
                }
                self.dirs_until = self.dirs_until.max(id);
            }
            write_pending(&self.segs[i])?;
            target.files.extend(self.segs[i].file.clone());
        }
        target.dirs = self.dirs_pending.clone();
        Ok(target)
    }

    fn commit(&mut self, id: u64, mark: Option<Mark>, doomed: &[u32]) {
        // Only the segments from the previous active one on can have changed.
        let from = self.segs.partition_point(|s| s.id < self.saved.active);
        for s in self.segs.range_mut(from..).filter(|s| s.durable < s.end) {
            s.durable = s.end;
            s.written = id;
        }
        if let (Some(m), Some(s)) = (mark, self.segs.back_mut()) {
            s.mark.merge(&m);
        }
        self.saved = self.saved_now();
        self.force_mark = false;
        self.flush_id = id;
        let sealed: Vec<u32> = self
            .segs
            .range(from..)
            .filter(|s| s.sealed && !s.has_idx)
            .map(|s| s.id)
            .collect();
        for sid in sealed {
            self.build_index(sid, id);
            for c in self.ix.chunks.iter_mut().rev().filter(|c| c.seg == sid) {
                c.ents.shrink_to_fit();
            }
        }
        for s in self.segs.range_mut(from..) {
            if s.sealed {
                s.tail = Vec::new();
                s.tail_start = s.end;
            } else {
                s.trim_tail(TAIL_KEEP);
            }
        }
        for &d in doomed {
            self.ix.chunks.retain(|c| c.seg != d);
            self.segs.retain(|s| s.id != d);
            self.idx_pending.retain(|p| p.1 != d);
            self.doomed.push((id, d));
        }
        self.do_erases();
        let active = self.saved.active;
        self.ix.free_zeroed(|s| s.seg == active);
    }

    /// Overwrites the payload of removed records whose tombstones are now written.
    fn do_erases(&mut self) {
        for (id, off, len) in std::mem::take(&mut self.erases) {
            let Some(seg) = self.seg_mut(id) else {
                continue;
            };
            let Ok(mut buf) = seg.read(off, len as usize) else {
                continue;
            };
            if !record::erase(&mut buf) {
                continue;
            }
            if off >= seg.tail_start {
                let at = (off - seg.tail_start) as usize;
                seg.tail[at..at + buf.len()].copy_from_slice(&buf);
            }
            if let Some(Err(e)) = seg.file.as_ref().map(|f| f.write_all_at(&buf, off)) {
                warn!("segment {id}: secure delete at offset {off} failed: {e}");
            }
        }
    }

    /// Puts files and index back as of the last successful flush.
    fn rollback(&mut self) {
        let saved = self.saved;
        while self.segs.back().is_some_and(|s| s.id > saved.active) {
            let Some(s) = self.segs.pop_back() else { break };
            self.ix.chunks.retain(|c| c.seg != s.id);
            if s.file.is_some() {
                if let Err(e) = fs::remove_file(self.seg_paths(s.id).0) {
                    self.fail(&format!(
                        "cannot remove segment {} after a failed write: {e}",
                        s.id
                    ));
                }
            }
        }
        let mut failed = Vec::new();
        for s in self.segs.iter_mut() {
            if let Some(f) = &s.file {
                // Past `durable` there may be part of the failed write even if nothing was pending.
                if let Err(e) = truncate(f, s.durable) {
                    failed.push(format!(
                        "cannot cut segment {} back after a failed write: {e}",
                        s.id
                    ));
                }
            }
            s.cut_pending();
        }
        for why in failed {
            self.fail(&why);
        }
        if let Some(s) = self.segs.back_mut() {
            s.sealed = false;
        }
        self.rebuild_index(saved);
        self.force_mark = false;
        self.erases.clear();
    }

    /// The index as the files say after a rollback: entries past the last flushed sequence
    /// go, removals not yet written are undone, counters are recounted.
    fn rebuild_index(&mut self, saved: Saved) {
        let ix = &mut self.ix;
        while ix.chunks.back().is_some_and(|c| c.base > saved.last) {
            ix.chunks.pop_back();
        }
        if let Some(c) = ix.chunks.back_mut() {
            let keep = saved.last.saturating_sub(c.base) + 1;
            c.ents.truncate(keep.min(c.ents.len() as u64) as usize);
            c.stop = u32::MAX;
        }
        (ix.first, ix.last, ix.last_ts) = (saved.first, saved.last, saved.last_ts);
        ix.tombs.clear();
        for c in ix.chunks.iter_mut() {
            for e in c.ents.iter_mut().filter(|e| e.is_msg()) {
                e.sid &= !GONE;
            }
        }
        for s in &self.segs {
            for &t in &s.mark.tombs {
                if let Some((ci, pos)) = ix.locate(t) {
                    if ix.chunks[ci].ents[pos].is_msg() {
                        ix.chunks[ci].ents[pos].sid |= GONE;
                    }
                }
            }
        }
        ix.recount(&mut sizer(&self.segs));
        if let Some(active) = self.segs.back().map(|s| s.id) {
            if ix.chunks.back().is_none_or(|c| c.seg != active) {
                ix.push_chunk(ix.last + 1, active);
            }
        }
    }

    /// A new active segment to hold a mark when there is none (empty store).
    fn roll_for_mark(&mut self) {
        let id = self.next_id;
        self.next_id += 1;
        self.segs.push_back(Seg::new(id));
        self.ix.push_chunk(self.ix.last + 1, id);
    }

    fn fail(&mut self, why: &str) {
        warn!(
            "store {}: {why}; read-only until restart",
            self.dir.display()
        );
        self.failed = true;
    }

    /// Every segment written and not known synced, and the directories to sync.
    fn unsynced(&self) -> SyncTarget {
        let files = self
            .segs
            .iter()
            .filter(|s| s.written > self.synced_id)
            .filter_map(|s| s.file.clone())
            .collect();
        SyncTarget {
            files,
            dirs: self.dirs_pending.clone(),
        }
    }

    /// For the interval sync: what is written and not known synced, and the flush it covers.
    pub fn sync_target(&mut self) -> Option<(u64, SyncTarget)> {
        let t = self.unsynced();
        (!t.is_empty() || self.wants_sync()).then_some((self.flush_id, t))
    }

    /// A sync covering every flush up to `id` completed.
    pub fn synced(&mut self, id: u64) {
        let id = id.min(self.flush_id);
        self.synced_id = self.synced_id.max(id);
        if self.synced_id >= self.dirs_until {
            self.dirs_pending.clear();
        }
        let (ready, wait): (Vec<_>, Vec<_>) = self.idx_pending.drain(..).partition(|p| p.0 <= id);
        self.idx_pending = wait;
        for (_, sid, bytes) in ready {
            let path = self.seg_paths(sid).1;
            if let Err(e) = fs::write(&path, &bytes) {
                warn!(
                    "store {}: writing {}: {e}",
                    self.dir.display(),
                    path.display()
                );
            }
        }
        let (ready, wait): (Vec<_>, Vec<_>) = self.doomed.drain(..).partition(|d| d.0 <= id);
        self.doomed = wait;
        for (_, sid) in &ready {
            let (seg, idx) = self.seg_paths(*sid);
            for p in [seg, idx] {
                match fs::remove_file(&p) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => {
                        warn!(
                            "store {}: removing {}: {e}",
                            self.dir.display(),
                            p.display()
                        )
                    }
                    _ => {}
                }
            }
        }
        if !ready.is_empty() {
            self.dirs_pending.push(self.dir_file.clone());
            self.dirs_until = self.flush_id + 1;
        }
    }

    /// A sync of this store's files failed: the kernel may have dropped the written pages.
    pub fn sync_failed(&mut self) {
        self.fail("a sync failed");
    }
}
