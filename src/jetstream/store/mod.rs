//! The message store: one stream's messages, in files (`FileStore`) or in memory
//! (`MemStore`), behind one enum, `Store`. It knows nothing of JSON, accounts or sockets; the
//! stream layer calls it from the poll loop. Only fsync runs elsewhere (`sync.rs`).
//!
//! LAYOUT-PLACEHOLDER

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
/// Times are Unix nanoseconds; `first_ts` is 0 when there is no message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct State {
    pub msgs: u64,
    pub bytes: u64,
    pub first_seq: u64,
    pub first_ts: i64,
    pub last_seq: u64,
    pub last_ts: i64,
    pub num_subjects: u64,
    pub num_deleted: u64,
}

impl State {
    fn from_index(ix: &index::Index, first_ts: i64) -> State {
        State {
            msgs: ix.msgs,
            bytes: ix.bytes,
            first_seq: ix.first,
            first_ts,
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
}

#[derive(Debug)]
pub enum StoreError {
    /// `discard_new` and `max_msgs` reached.
    MaxMsgs,
    /// `discard_new` and `max_bytes` reached.
    MaxBytes,
    /// `discard_new_per_subject` and `max_msgs_per_subject` reached.
    MaxMsgsPerSubject,
    /// A subject over 65535 bytes or a record over 256 MiB (the protocol limits come first).
    TooLarge,
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
            StoreError::TooLarge => f.write_str("message too large"),
            StoreError::Failed => f.write_str("store is read-only after an I/O error"),
            StoreError::Io(e) => write!(f, "store write failed: {e}"),
        }
    }
}

impl std::error::Error for StoreError {}

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

pub enum Store {
    File(FileStore),
    Memory(MemStore),
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
        Ok((Store::File(fs), rec))
    }

    pub fn new_memory(limits: StoreLimits) -> Store {
        Store::Memory(MemStore::new(limits))
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

    /// Removes one message; `erase` also overwrites its headers and data on disk.
    pub fn remove(&mut self, seq: u64, erase: bool) -> bool {
        each!(self, s => s.remove(seq, erase))
    }

    /// nats-server's purge: see `limits::purge`. Returns how many messages went.
    pub fn purge(&mut self, filter: Option<&[u8]>, upto: Option<u64>, keep: Option<u64>) -> u64 {
        each!(self, s => s.purge(filter, upto, keep).count)
    }

    pub fn state(&self) -> State {
        each!(self, s => s.state())
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
