//! The message store: one stream's messages, in segment files (`FileStore`) or in memory
//! (`MemStore`), behind one enum, `Store`. It knows nothing of JSON, accounts or sockets: the
//! stream layer calls it from the poll loop. The only thing that runs elsewhere is fsync, on
//! the helper thread of `sync.rs`.
//!
//! # On disk
//!
//! ```text
//! <stream dir>/              the stream layer's (meta.inf, obs/ ...)
//!   seg/                     the store's, nothing else in it
//!     0000000001.seg         sealed segment: records back to back, never appended to again
//!     0000000001.idx         its index file, written once the segment is synced (idx.rs)
//!     0000000002.seg
//!     0000000002.idx
//!     0000000003.seg         the active segment: every write goes here, at its known end
//! ```
//!
//! A segment is sealed once it holds `segment_size` bytes (8 MiB by default). Records are
//! written with pwrite at the segment's known good length, never with a file position, so
//! undoing a failed write is a truncate to that length.
//!
//! # Records (record.rs), little-endian
//!
//! ```text
//!  0   4  len      bytes of the whole record, this field through the CRC
//!  4   1  kind     low nibble 1: message, 2: mark; 0x10 headers present; 0x20 erased
//!  5   8  seq      message: its sequence        mark: the stream's last sequence then
//! 13   8  ts       message: its time, Unix ns   mark: the time of that last sequence
//!     message                                   mark
//! 21   2  subject length                     21  8  floor: every sequence below it is gone
//! 23  [4  header length, only with 0x10]     29  .. tombstones: a count, then removed
//!     ..  subject, headers, data                     sequences ascending, LEB128 deltas
//! end  4  CRC-32C (Castagnoli) of every byte before it
//! ```
//!
//! A message without headers costs 27 bytes besides its subject and data (nats-server: 30,
//! plus its per-block index files). Removals never touch the message's own record: they are
//! marks, at most one per flush, appended to the active segment. A mark carries the floor
//! (raised by purges and by the oldest messages going under max_msgs, max_bytes and max_age;
//! written only when it moved), the sequences removed one by one since the previous flush
//! (deletes, per-subject limits, filtered purges; also skips, so recovery knows they were not
//! lost), and the last sequence, so it never goes back. A mark never removes past its own last
//! sequence; recovery takes one that does for damage. Erase (secure delete) additionally
//! overwrites a removed message's headers and data with zeros in place, keeping its framing.
//!
//! A sealed segment with no live message left is compacted: whatever it held that still
//! matters (tombstones of messages in segments that stay; the floor and last sequence, which
//! every mark carries) is carried into the mark of the next flush, and the file is deleted
//! once a sync covers that mark.
//!
//! # What a successful flush promises
//!
//! `append`, `skip`, `remove`, `purge`, `update_limits` and `expire` change the index at
//! once (an appended message is readable right away) and only queue their records. `flush`
//! writes all of it, normally with one pwrite. When it returns `Ok`, every change since the
//! previous successful flush is in the kernel's page cache, and from then on it survives the
//! process dying in any way (kill -9, abort, OOM kill). After a restart:
//! - every message appended before that flush and not removed is there, byte for byte;
//! - no message removed before that flush comes back (limits raised in the meantime included);
//! - the last sequence is at least what it was, and the next message gets the one after it.
//!
//! When `flush` returns `Err`, none of it happened: the files are cut back to their previous
//! length, segments created since are deleted, the index is as the files say, and the same
//! sequences will be handed out again. Tell those publishers their messages were not stored.
//! If even the cut fails, the store is read-only (`StoreError::Failed`) until a restart.
//!
//! # What a completed sync promises
//!
//! `Flushed::target` lists the files to fdatasync (the segments written) and directories to
//! fsync (after a segment file was created or deleted). Once that target, or any later one,
//! has been synced and `synced(id)` called, every flush up to `id` also survives a power loss
//! or a kernel crash. Until then a power loss may take back what was flushed since the last
//! completed sync (that is nats-server 2.9's promise with its 2-minute sync interval). With
//! the `always` durability setting, acknowledge a flush's messages only after its sync.
//! Index files and the deletion of compacted segments wait for a completed sync, so
//! `Flushed::wants_sync` asks for one even in interval mode; a sync error must be reported
//! with `sync_failed`, which makes the store read-only (the kernel may have dropped the pages).
//!
//! Not promised: appends not yet flushed (a crash loses them; nobody was told they were
//! stored). Recovery may also keep messages whose flush never returned because the process
//! died after their bytes reached the file: never acknowledged, but not lost either.
//!
//! # Recovery (recover.rs)
//!
//! Sealed segments load from their index files when those check out, else are read record by
//! record like the active one. A torn tail is cut off; a damaged record followed by good ones
//! is skipped, and a segment with such a skip is sealed (appends could change where the next
//! scan picks up after the damage); sequences lost either way are reported (`Store::lost`,
//! with damage found later by a read that fails its CRC). Floors and tombstones are then
//! applied. Opening also applies the limits given, which can only remove (written by the
//! first flush).
//!
//! # Memory
//!
//! The index (index.rs) costs 8 bytes per sequence (a 32-bit offset and a 32-bit subject id, in
//! chunks of consecutive sequences), plus per-subject state. Sizes, timestamps and payloads
//! stay on disk: a record's length is where the next one starts, and a segment's newest
//! timestamp lets expiry drop whole segments without reading them.

mod audit;
mod check;
pub mod crc;
mod file;
mod flush;
mod idx;
pub mod index;
mod limits;
mod memory;
pub mod query;
mod record;
mod recover;
mod segment;
pub mod sync;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_bench;
#[cfg(test)]
mod tests_crash;
#[cfg(test)]
mod tests_model;
#[cfg(test)]
mod tests_recovery;

use std::fmt;
use std::io;
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

pub use file::FileStore;
pub use limits::Purged;
pub use memory::MemStore;
pub use sync::{SyncDone, SyncTarget, Syncer};

/// Segment size when the stream layer does not choose one (nats-server's block size for
/// limits-based streams).
pub const DEFAULT_SEGMENT_SIZE: u64 = 8 << 20;

/// A stream's limits as the store applies them. 0 or -1 means unlimited (as nats-server,
/// which checks `> 0`); `max_age` ZERO means no expiry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreLimits {
    pub max_msgs: i64,
    pub max_bytes: i64,
    pub max_age: Duration,
    pub max_msgs_per_subject: i64,
    pub discard_new: bool,
    pub discard_new_per_subject: bool,
}

impl Default for StoreLimits {
    fn default() -> StoreLimits {
        StoreLimits {
            max_msgs: -1,
            max_bytes: -1,
            max_age: Duration::ZERO,
            max_msgs_per_subject: -1,
            discard_new: false,
            discard_new_per_subject: false,
        }
    }
}

#[derive(Clone, Debug)]
pub struct FileConfig {
    /// The stream's directory; the store owns its `seg/` folder and nothing else in it.
    pub dir: PathBuf,
    /// A segment is sealed once it holds this many bytes.
    pub segment_size: u64,
}

impl FileConfig {
    pub fn new(dir: impl Into<PathBuf>) -> FileConfig {
        FileConfig {
            dir: dir.into(),
            segment_size: DEFAULT_SEGMENT_SIZE,
        }
    }
}

/// The stream's state, kept incrementally (nats-server's `StreamState` without the lists).
/// Times are Unix nanoseconds. The first message's time is not here: finding it may read the
/// disk, and most callers want only counts (`Store::first_ts` for STREAM.INFO).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct State {
    pub msgs: u64,
    pub bytes: u64,
    pub first_seq: u64,
    pub last_seq: u64,
    pub last_ts: i64,
    pub num_subjects: u64,
    pub num_deleted: u64,
}

impl State {
    fn from_index(ix: &index::Index) -> State {
        State {
            msgs: ix.msgs,
            bytes: ix.bytes,
            first_seq: ix.first,
            last_seq: ix.last,
            last_ts: ix.last_ts,
            num_subjects: ix.num_subjects as u64,
            num_deleted: ix.num_deleted(),
        }
    }
}

/// A message read back. One buffer holds subject, headers and data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredMsg {
    pub seq: u64,
    pub ts: i64,
    buf: Vec<u8>,
    subject: Range<usize>,
    hdr: Range<usize>,
    data: Range<usize>,
}

impl StoredMsg {
    pub fn subject(&self) -> &[u8] {
        &self.buf[self.subject.clone()]
    }
    /// The header block (`NATS/1.0\r\n...`), empty when the message had none.
    pub fn hdr(&self) -> &[u8] {
        &self.buf[self.hdr.clone()]
    }
    pub fn data(&self) -> &[u8] {
        &self.buf[self.data.clone()]
    }
    /// Its buffer, for the next `Store::load_into`.
    pub fn into_buf(self) -> Vec<u8> {
        self.buf
    }
}

#[derive(Debug)]
pub enum StoreError {
    /// `discard_new` and `max_msgs` reached.
    MaxMsgs,
    /// `discard_new` and `max_bytes` reached.
    MaxBytes,
    /// `discard_new_per_subject` and `max_msgs_per_subject` reached.
    MaxMsgsPerSubject,
    /// An empty subject, or one over 65535 bytes (the protocol's limits come first).
    BadSubject,
    /// A record over 256 MiB (the protocol's limits come first).
    TooLarge,
    /// Over two billion distinct subjects.
    TooManySubjects,
    /// The stream's sequence reached 2^62, the most a record carries.
    SeqExhausted,
    /// An earlier I/O error left the store read-only until restart.
    Failed,
    /// Writing failed; everything since the last successful flush was rolled back.
    Io(io::Error),
}

impl fmt::Display for StoreError {
    /// nats-server's wording where it has one (`store.go`).
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            StoreError::MaxMsgs => f.write_str("maximum messages exceeded"),
            StoreError::MaxBytes => f.write_str("maximum bytes exceeded"),
            StoreError::MaxMsgsPerSubject => f.write_str("maximum messages per subject exceeded"),
            StoreError::BadSubject => f.write_str("subject is empty or too long"),
            StoreError::TooLarge => f.write_str("message too large"),
            StoreError::TooManySubjects => f.write_str("too many subjects"),
            StoreError::SeqExhausted => f.write_str("sequence space exhausted"),
            StoreError::Failed => f.write_str("store is read-only after an I/O error"),
            StoreError::Io(e) => write!(f, "store write failed: {e}"),
        }
    }
}

impl std::error::Error for StoreError {}

/// What both stores refuse before looking at limits.
fn check_input(subject: &[u8], hdr: &[u8], data: &[u8]) -> Result<(), StoreError> {
    if subject.is_empty() || subject.len() > usize::from(u16::MAX) {
        return Err(StoreError::BadSubject);
    }
    if hdr.len() > u32::MAX as usize || record::msg_len(subject, hdr, data) > record::MAX_RECORD {
        return Err(StoreError::TooLarge);
    }
    Ok(())
}

/// What a successful `flush` wrote, and what to fsync for it to survive a power loss.
#[derive(Debug, Default)]
pub struct Flushed {
    /// This flush's number (unchanged when there was nothing to write). Pass it to
    /// `Store::synced` once `target` (or any later target) has been synced.
    pub id: u64,
    /// The segments written and, when a file was created, their directory.
    pub target: SyncTarget,
    /// The store has work that waits for a sync (index files, deleting compacted segments):
    /// sync `target` and call `synced` even when the durability setting does not ask for it.
    pub wants_sync: bool,
}

/// Messages recovery could not keep (nats-server's `LostStreamData`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lost {
    pub msgs: Vec<u64>,
    pub bytes: u64,
}

/// What `open_file` found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Sequences whose records were damaged and are gone (ascending).
    pub lost_seqs: Vec<u64>,
    /// Bytes of damaged records skipped or cut off.
    pub lost_bytes: u64,
    /// Bytes cut from segment tails (a torn last write).
    pub truncated_bytes: u64,
    /// Sealed segments loaded from their index files.
    pub segments_indexed: usize,
    /// Segments read record by record (the active one, and any whose index was missing or
    /// stale).
    pub segments_scanned: usize,
}

/// Both boxed: the handle stays one pointer wide wherever the stream layer keeps it.
pub enum Store {
    File(Box<FileStore>),
    Memory(Box<MemStore>),
}

macro_rules! each {
    ($self:expr, $s:ident => $e:expr) => {
        match $self {
            Store::File($s) => $e,
            Store::Memory($s) => $e,
        }
    };
}

impl Store {
    /// Opens the file store in `cfg.dir`, creating it if missing, else recovering it.
    pub fn open_file(cfg: FileConfig, limits: StoreLimits) -> io::Result<(Store, Recovery)> {
        let (fs, rec) = FileStore::open(cfg, limits)?;
        Ok((Store::File(Box::new(fs)), rec))
    }

    pub fn new_memory(limits: StoreLimits) -> Store {
        Store::Memory(Box::new(MemStore::new(limits)))
    }

    /// Stores a message as `last_seq + 1`: readable at once, written by the next `flush`.
    pub fn append(
        &mut self,
        subject: &[u8],
        hdr: &[u8],
        data: &[u8],
        ts: i64,
    ) -> Result<u64, StoreError> {
        each!(self, s => s.append(subject, hdr, data, ts))
    }

    /// Consumes the next sequence without a message (survives a restart once flushed).
    pub fn skip(&mut self, ts: i64) -> Result<u64, StoreError> {
        match self {
            Store::File(s) => s.skip(ts),
            Store::Memory(s) => Ok(s.skip(ts)),
        }
    }

    /// Writes everything since the last flush. On error, all of it is rolled back.
    pub fn flush(&mut self) -> Result<Flushed, StoreError> {
        match self {
            Store::File(s) => s.flush(),
            Store::Memory(s) => {
                s.flush();
                Ok(Flushed::default())
            }
        }
    }

    /// Every flush up to `id` is on disk (its sync completed).
    pub fn synced(&mut self, id: u64) {
        if let Store::File(s) = self {
            s.synced(id);
        }
    }

    /// A sync of this store's files failed: it goes read-only.
    pub fn sync_failed(&mut self) {
        if let Store::File(s) = self {
            s.sync_failed();
        }
    }

    /// For the interval sync: everything written and not yet known synced, and the flush id
    /// it covers. None when there is nothing to sync.
    pub fn sync_target(&mut self) -> Option<(u64, SyncTarget)> {
        match self {
            Store::File(s) => s.sync_target(),
            Store::Memory(_) => None,
        }
    }

    pub fn load(&self, seq: u64) -> Option<StoredMsg> {
        each!(self, s => s.load(seq))
    }

    /// `load` into a spare buffer (its bytes are replaced; no allocation when it is large
    /// enough).
    pub fn load_into(&self, seq: u64, buf: Vec<u8>) -> Option<StoredMsg> {
        each!(self, s => s.load_into(seq, buf))
    }

    /// Removes one message; `erase` also overwrites its headers and data on disk.
    pub fn remove(&mut self, seq: u64, erase: bool) -> bool {
        each!(self, s => s.remove(seq, erase))
    }

    /// nats-server's purge: see `limits::purge`. Returns how many messages went.
    pub fn purge(&mut self, filter: Option<&[u8]>, upto: Option<u64>, keep: Option<u64>) -> u64 {
        each!(self, s => s.purge(filter, upto, keep).count)
    }

    pub fn state(&self) -> State {
        State::from_index(self.index())
    }

    /// The first message's time (Unix ns), 0 when there is none.
    pub fn first_ts(&self) -> i64 {
        each!(self, s => s.first_ts())
    }

    fn index(&self) -> &index::Index {
        each!(self, s => s.index())
    }

    /// Up to `max` interior gaps (deleted sequences between first and last), ascending.
    pub fn deleted(&self, max: usize) -> Vec<u64> {
        self.index().deleted(max)
    }

    /// Subjects matching `filter` (all when None) and their message counts.
    pub fn subjects(&self, filter: Option<&[u8]>) -> Vec<(Vec<u8>, u64)> {
        self.index().subjects(filter)
    }

    /// Messages lost to damage: found by recovery, or later when a record failed its check
    /// on reading. None for memory, or when nothing was lost.
    pub fn lost(&self) -> Option<Lost> {
        match self {
            Store::File(s) => s.lost(),
            Store::Memory(_) => None,
        }
    }

    pub fn next_matching(&self, from_seq: u64, filter: Option<&[u8]>) -> Option<u64> {
        self.index().next_matching(from_seq, filter)
    }

    pub fn last_for_subject(&self, subject: &[u8]) -> Option<u64> {
        self.index().last_for_subject(subject)
    }

    pub fn last_per_subject(&self, filter: Option<&[u8]>) -> Vec<u64> {
        self.index().last_per_subject(filter)
    }

    pub fn num_matching(&self, from_seq: u64, filter: Option<&[u8]>) -> u64 {
        self.index().num_matching(from_seq, filter)
    }

    pub fn seq_at_or_after_time(&self, ts: i64) -> Option<u64> {
        each!(self, s => s.seq_at_or_after_time(ts))
    }

    /// Removes messages older than `max_age` at `now` (Unix ns); returns when the next one
    /// expires, for the loop's timer.
    pub fn expire(&mut self, now: i64) -> Option<i64> {
        each!(self, s => s.expire(now))
    }

    /// New limits (STREAM.UPDATE), applied at once; call `expire` after a `max_age` change.
    pub fn update_limits(&mut self, limits: StoreLimits) {
        each!(self, s => s.update_limits(limits))
    }

    pub fn limits(&self) -> &StoreLimits {
        each!(self, s => s.limits())
    }

    /// Appends are refused after an I/O error until restart.
    pub fn is_failed(&self) -> bool {
        match self {
            Store::File(s) => s.is_failed(),
            Store::Memory(_) => false,
        }
    }

    /// Removes the store's files (stream delete).
    pub fn delete_all(self) -> io::Result<()> {
        match self {
            Store::File(s) => s.delete_all(),
            Store::Memory(_) => Ok(()),
        }
    }

    /// Recomputes every counter from the index (and, for files, every record on disk) and
    /// compares. Reads the whole store: tests and debugging only.
    pub fn check(&self) -> Result<(), String> {
        each!(self, s => s.check())
    }

    /// Heap bytes of the in-memory index (entries and subjects), for the figures.
    pub fn index_bytes(&self) -> usize {
        self.index().heap_bytes()
    }
}
