//! One segment file: what the store keeps in memory about it, the length of each record in it,
//! and its reads and writes (pread/pwrite at known offsets; the file is never appended to with
//! a file position, so a rollback is a truncate to a known length).
//!
//! A segment's records sit back to back. Message records are in sequence order and each is
//! named by its chunk entry (`Ent::loc` = offset); the other regions (marks, and stretches
//! recovery found damaged) start at the offsets in `gaps`. So a message record runs from its
//! offset to the next start, whichever comes first: the next entry's offset (or its chunk's
//! `stop` when it is the chunk's last), the next gap, or the segment's end. That is how the index stays at 8 bytes per message and still knows each
//! message's size.

use super::index::Chunk;
use super::record::Mark;
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub struct Seg {
    pub id: u32,
    /// Opened when the first flush writes to it (created then if new).
    pub file: Option<Arc<File>>,
    /// Logical length: written bytes plus the ones waiting for the next flush.
    pub end: u64,
    /// Bytes written by successful flushes (the length a rollback truncates back to).
    pub durable: u64,
    /// Bytes `[tail_start, end)`: everything not yet flushed, and recently flushed bytes kept
    /// as a read cache for the newest messages.
    pub tail: Vec<u8>,
    pub tail_start: u64,
    /// Offsets of the non-message regions, ascending.
    pub gaps: Vec<u32>,
    /// Newest timestamp of a message in it (a whole segment can expire without reading it).
    pub max_ts: i64,
    /// What this segment's flushed marks say (floor, last sequence, tombstones).
    pub mark: Mark,
    pub sealed: bool,
    /// No damaged stretch: an index file may describe it.
    pub clean: bool,
    /// The last flush that wrote to it (for the interval sync).
    pub written: u64,
    /// Its index file exists or is built and waiting to be written.
    pub has_idx: bool,
}

impl Seg {
    pub fn new(id: u32) -> Seg {
        Seg {
            id,
            file: None,
            end: 0,
            durable: 0,
            tail: Vec::new(),
            tail_start: 0,
            gaps: Vec::new(),
            max_ts: i64::MIN,
            mark: Mark::default(),
            sealed: false,
            clean: true,
            written: 0,
            has_idx: false,
        }
    }

    /// The bytes waiting for the next flush.
    pub fn pending(&self) -> &[u8] {
        &self.tail[(self.durable - self.tail_start) as usize..]
    }

    /// Length of the region that starts at `off`, given where the next entry starts.
    fn region_len(&self, off: u32, next_ent: Option<u32>) -> u64 {
        let mut next = self.end;
        if let Some(n) = next_ent {
            next = next.min(u64::from(n));
        }
        let i = self.gaps.partition_point(|&g| g <= off);
        if let Some(&g) = self.gaps.get(i) {
            next = next.min(u64::from(g));
        }
        next.saturating_sub(u64::from(off))
    }

    /// Length of the message record of `c.ents[pos]`.
    pub fn record_len(&self, c: &Chunk, pos: usize) -> u64 {
        let next = c.ents.get(pos + 1).map_or(c.stop, |e| e.loc);
        self.region_len(c.ents[pos].loc, Some(next))
    }

    /// Length of the gap region starting at `gaps[i]`, given the next message offset.
    pub fn gap_len(&self, i: usize, next_msg: Option<u32>) -> u64 {
        self.region_len(self.gaps[i], next_msg)
    }

    /// Reads `len` bytes at `off`, from the tail cache or the file.
    pub fn read(&self, off: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut buf = Vec::new();
        self.read_into(off, len, &mut buf)?;
        Ok(buf)
    }

    /// `read` into `buf` (replacing what it held; a reused buffer allocates nothing).
    pub fn read_into(&self, off: u64, len: usize, buf: &mut Vec<u8>) -> io::Result<()> {
        if off + len as u64 > self.end {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "read past the segment's end",
            ));
        }
        buf.clear();
        buf.resize(len, 0);
        let split = self.tail_start.clamp(off, off + len as u64);
        let head = (split - off) as usize;
        if head > 0 {
            let f = self
                .file
                .as_ref()
                .ok_or_else(|| io::Error::other("segment has no file"))?;
            f.read_exact_at(&mut buf[..head], off)?;
        }
        if head < len {
            let at = (split - self.tail_start) as usize;
            buf[head..].copy_from_slice(&self.tail[at..at + len - head]);
        }
        Ok(())
    }

    /// Drops the flushed part of the tail cache once it grows past `keep` bytes.
    pub fn trim_tail(&mut self, keep: usize) {
        if self.tail.len() > keep && self.durable == self.end {
            self.tail.clear();
            self.tail_start = self.end;
        }
    }

    /// Forgets everything after `durable` (a flush's rollback), in memory only.
    pub fn cut_pending(&mut self) {
        self.tail
            .truncate((self.durable - self.tail_start) as usize);
        self.end = self.durable;
        let keep = self.gaps.partition_point(|&g| u64::from(g) < self.durable);
        self.gaps.truncate(keep);
    }
}

pub fn seg_path(dir: &Path, id: u32) -> PathBuf {
    dir.join(format!("{id:010}.seg"))
}

pub fn idx_path(dir: &Path, id: u32) -> PathBuf {
    dir.join(format!("{id:010}.idx"))
}

pub fn open_rw(path: &Path, create: bool) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(false)
        .open(path)
}

/// Writes the pending bytes at `durable` (one pwrite, repeated only if the kernel writes
/// less). The caller moves `durable` on success.
pub fn write_pending(seg: &Seg) -> io::Result<()> {
    let f = seg
        .file
        .as_ref()
        .ok_or_else(|| io::Error::other("segment has no file"))?;
    let buf = seg.pending();
    #[cfg(test)]
    if let Some(err) = fault::before_write(f, buf, seg.durable) {
        return Err(err);
    }
    f.write_all_at(buf, seg.durable)
}

/// Truncates a file back to `len` (rollback, recovery).
pub fn truncate(f: &File, len: u64) -> io::Result<()> {
    #[cfg(test)]
    if fault::truncate_fails() {
        return Err(io::Error::other("injected truncate failure"));
    }
    f.set_len(len)
}

/// Test-only faults in the write path, per thread (tests run in parallel): a disk that has
/// only so many bytes left, and a truncate that fails.
#[cfg(test)]
pub mod fault {
    use std::cell::Cell;
    use std::fs::File;
    use std::io;
    use std::os::unix::fs::FileExt;

    thread_local! {
        static SPACE: Cell<Option<u64>> = const { Cell::new(None) };
        static NO_TRUNCATE: Cell<bool> = const { Cell::new(false) };
    }

    /// From now on writes succeed for `bytes` more bytes in total, then fail with ENOSPC
    /// (after writing what fits, as a real full disk does). None: unlimited.
    pub fn set_space(bytes: Option<u64>) {
        SPACE.with(|s| s.set(bytes));
    }

    pub fn set_truncate_fails(fail: bool) {
        NO_TRUNCATE.with(|t| t.set(fail));
    }

    pub(super) fn truncate_fails() -> bool {
        NO_TRUNCATE.with(|t| t.get())
    }

    pub(super) fn before_write(f: &File, buf: &[u8], at: u64) -> Option<io::Error> {
        let left = SPACE.with(|s| s.get())?;
        if (buf.len() as u64) <= left {
            SPACE.with(|s| s.set(Some(left - buf.len() as u64)));
            return None;
        }
        let fits = left as usize;
        if let Err(e) = f.write_all_at(&buf[..fits], at) {
            return Some(e);
        }
        SPACE.with(|s| s.set(Some(0)));
        Some(io::Error::from_raw_os_error(libc::ENOSPC))
    }
}

/// Where the segment with this id is (segments are kept in id order; the active one is
/// last, and looked at first).
pub fn seg_index(segs: &VecDeque<Seg>, id: u32) -> Option<usize> {
    let last = segs.len().checked_sub(1)?;
    if segs[last].id == id {
        return Some(last);
    }
    let i = segs.partition_point(|s| s.id < id);
    (segs.get(i)?.id == id).then_some(i)
}

/// The segment with this id.
pub fn find_seg(segs: &VecDeque<Seg>, id: u32) -> Option<&Seg> {
    seg_index(segs, id).map(|i| &segs[i])
}

/// nats-server's file store size of a message: its record length here plus 3 (nats-server's
/// records carry an 8-byte hash and no kind byte: 30 bytes of framing to our 27). Remembers
/// the last segment it looked up: calls come in runs over one chunk.
pub fn sizer(segs: &VecDeque<Seg>) -> impl FnMut(&Chunk, usize) -> u64 + '_ {
    let mut at = usize::MAX;
    move |c: &Chunk, pos: usize| {
        if segs.get(at).is_none_or(|s| s.id != c.seg) {
            at = segs.partition_point(|s| s.id < c.seg);
        }
        segs.get(at)
            .filter(|s| s.id == c.seg)
            .map_or(0, |s| s.record_len(c, pos) + 3)
    }
}

/// Read-ahead for sequential reads (a consumer replaying a stream): when a read starts where
/// the previous one ended, or a little after it (a filtered consumer stepping over other
/// subjects, a key-value get stepping over the marks of the puts), a whole window is read and
/// the next records come from memory. Random reads read just their record.
#[derive(Default)]
pub struct Window {
    seg: u32,
    off: u64,
    buf: Vec<u8>,
    /// Where the previous read ended.
    next: u64,
}

const WINDOW_BYTES: u64 = 64 << 10;
/// How far past the previous read's end a read may start and still count as sequential.
const SKIP_BYTES: u64 = 4 << 10;

impl Window {
    /// Record bytes `off..off + len` of `seg` into `out`.
    pub fn read(&mut self, seg: &Seg, off: u64, len: usize, out: &mut Vec<u8>) -> io::Result<()> {
        let end = off + len as u64;
        if self.seg != seg.id {
            *self = Window {
                seg: seg.id,
                ..Window::default()
            };
        }
        let hit = off >= self.off && end <= self.off + self.buf.len() as u64;
        let sequential = off >= self.next && off - self.next <= SKIP_BYTES;
        self.next = end;
        if hit {
            let at = (off - self.off) as usize;
            out.clear();
            out.extend_from_slice(&self.buf[at..at + len]);
            return Ok(());
        }
        // The tail is in memory already; only the file part is worth reading ahead.
        if !sequential || end > seg.tail_start {
            return seg.read_into(off, len, out);
        }
        let want = (len as u64).max(WINDOW_BYTES).min(seg.tail_start - off);
        seg.read_into(off, want as usize, &mut self.buf)?;
        self.off = off;
        out.clear();
        out.extend_from_slice(&self.buf[..len]);
        Ok(())
    }
}

#[cfg(test)]
mod window_tests {
    use super::*;

    /// A segment of `len` flushed bytes whose byte i is `i % 251`.
    fn flushed_seg(len: usize) -> (Seg, PathBuf) {
        let path = std::env::temp_dir().join(format!("tern-window-{}-{len}", std::process::id()));
        let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let mut seg = Seg::new(1);
        seg.file = Some(Arc::new(File::open(&path).unwrap()));
        (seg.end, seg.durable, seg.tail_start) = (len as u64, len as u64, len as u64);
        (seg, path)
    }

    fn want(off: u64, len: usize) -> Vec<u8> {
        (off..off + len as u64).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn reads_ahead_when_a_read_starts_at_or_a_little_past_the_last_end() {
        let (seg, path) = flushed_seg(300 << 10);
        let (mut w, mut out) = (Window::default(), Vec::new());
        w.read(&seg, 0, 100, &mut out).unwrap();
        assert_eq!(
            (out.clone(), w.off, w.buf.len()),
            (want(0, 100), 0, 64 << 10)
        );
        // Past the window, 34 bytes after the last read's end (a kv mark between two puts).
        let at = (64 << 10) + 10;
        w.read(&seg, at - 134, 100, &mut out).unwrap();
        w.read(&seg, at, 100, &mut out).unwrap();
        assert_eq!((out.clone(), w.off), (want(at, 100), at));
        // A jump further than SKIP_BYTES is a random read: just the record.
        let far = at + (100 << 10);
        w.read(&seg, far, 100, &mut out).unwrap();
        assert_eq!((out, w.off), (want(far, 100), at));
        std::fs::remove_file(path).unwrap();
    }
}
