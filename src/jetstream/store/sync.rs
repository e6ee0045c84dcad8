//! The fsync helper thread: the only place tern waits for the disk.
//!
//! The poll loop never calls fsync. It hands a batch `(id, SyncTarget)` to `Syncer::submit`
//! (a channel send, never blocking), keeps going, and later drains `(id, result)` completions
//! after the thread's `mio::Waker` wakes it. The thread (the loop's one helper-thread pattern,
//! `util/worker.rs`, batched) takes every batch that queued up while it was busy and syncs
//! their files once (group commit: one fdatasync per file for many batches), then completes
//! them all, in order. Nothing here is specific to the message store: the stream layer's own
//! files and the interval sync use the same thread.
//!
//! A sync error completes every batch it covered with that error. After a failed fsync the
//! kernel may have dropped the dirty pages, so the owner must not pretend the data is safe: the
//! store goes read-only (`Store::sync_failed`).

use crate::util::worker::Worker;
use std::fs::File;
use std::io;
use std::sync::{Arc, Mutex};

/// What must reach the disk: files to `fdatasync`, directories to `fsync` (after creating or
/// removing a file in them).
#[derive(Clone, Debug, Default)]
pub struct SyncTarget {
    pub files: Vec<Arc<File>>,
    pub dirs: Vec<Arc<File>>,
}

impl SyncTarget {
    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && self.dirs.is_empty()
    }

    /// Adds `other`'s files and directories, each handle once.
    pub fn merge(&mut self, other: &SyncTarget) {
        add_unique(&mut self.files, &other.files);
        add_unique(&mut self.dirs, &other.dirs);
    }

    /// Syncs everything now, on the calling thread (the sync thread, tests, shutdown).
    pub fn sync_now(&self) -> io::Result<()> {
        for f in &self.files {
            f.sync_data()?;
        }
        for d in &self.dirs {
            d.sync_all()?;
        }
        Ok(())
    }
}

fn add_unique(to: &mut Vec<Arc<File>>, from: &[Arc<File>]) {
    for f in from {
        if !to.iter().any(|g| Arc::ptr_eq(f, g)) {
            to.push(f.clone());
        }
    }
}

/// A finished batch.
#[derive(Debug)]
pub struct SyncDone {
    pub id: u64,
    pub result: io::Result<()>,
}

pub struct Syncer {
    worker: Worker<(u64, SyncTarget), SyncDone>,
    /// Batches completed here because the thread was gone.
    failed: Mutex<Vec<SyncDone>>,
}

impl Syncer {
    /// Starts the thread. `waker` is woken after each group of completions (None in tests,
    /// which poll `drain`).
    pub fn start(waker: Option<Arc<mio::Waker>>) -> io::Result<Syncer> {
        let worker = Worker::spawn_batched("tern-sync", waker, sync_batches)?;
        Ok(Syncer {
            worker,
            failed: Mutex::new(Vec::new()),
        })
    }

    /// Queues a batch; its completion carries `id`.
    pub fn submit(&self, id: u64, target: SyncTarget) {
        if let Err((id, _)) = self.worker.submit((id, target)) {
            // The thread is gone (it only ends when we drop the worker): complete here.
            let err = io::Error::other("sync thread stopped");
            let mut failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
            failed.push(SyncDone {
                id,
                result: Err(err),
            });
        }
    }

    /// Moves the completions so far into `out`, oldest first.
    pub fn drain(&self, out: &mut Vec<SyncDone>) {
        out.extend(self.worker.ready());
        out.append(&mut self.failed.lock().unwrap_or_else(|e| e.into_inner()));
    }
}

/// Syncs every queued batch's files once (on the sync thread), then completes them all.
/// Dropping the `Syncer` finishes the batches already queued.
fn sync_batches(batches: Vec<(u64, SyncTarget)>) -> Vec<SyncDone> {
    let mut all = SyncTarget::default();
    for (_, t) in &batches {
        all.merge(t);
    }
    let result = all.sync_now();
    batches
        .into_iter()
        .map(|(id, _)| SyncDone {
            id,
            result: match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn batches_complete_in_order() {
        let dir = std::env::temp_dir().join(format!("tern-sync-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = Arc::new(File::create(dir.join("a")).unwrap());
        let d = Arc::new(File::open(&dir).unwrap());
        let s = Syncer::start(None).unwrap();
        for id in 1..=50 {
            s.submit(
                id,
                SyncTarget {
                    files: vec![f.clone()],
                    dirs: vec![d.clone()],
                },
            );
        }
        let mut got = Vec::new();
        let t0 = Instant::now();
        while got.len() < 50 && t0.elapsed() < Duration::from_secs(30) {
            s.drain(&mut got);
            std::thread::sleep(Duration::from_millis(1));
        }
        let ids: Vec<u64> = got.iter().map(|d| d.id).collect();
        assert_eq!(ids, (1..=50).collect::<Vec<_>>());
        assert!(got.iter().all(|d| d.result.is_ok()));
        drop(s);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn completions_wake_the_loop_and_carry_errors() {
        let mut poll = mio::Poll::new().unwrap();
        let waker = Arc::new(mio::Waker::new(poll.registry(), mio::Token(7)).unwrap());
        let s = Syncer::start(Some(waker)).unwrap();
        // fsync on a character device fails (EINVAL): both batches complete with the error.
        let bad = Arc::new(File::open("/dev/null").unwrap());
        s.submit(
            1,
            SyncTarget {
                files: vec![bad.clone()],
                dirs: vec![],
            },
        );
        s.submit(
            2,
            SyncTarget {
                files: vec![bad],
                dirs: vec![],
            },
        );
        let (mut got, mut events) = (Vec::new(), mio::Events::with_capacity(4));
        let t0 = Instant::now();
        while got.len() < 2 && t0.elapsed() < Duration::from_secs(30) {
            poll.poll(&mut events, Some(Duration::from_secs(1)))
                .unwrap();
            if events.iter().any(|e| e.token() == mio::Token(7)) {
                s.drain(&mut got);
            }
        }
        assert_eq!(got.iter().map(|d| d.id).collect::<Vec<_>>(), vec![1, 2]);
        assert!(got.iter().all(|d| d.result.is_err()));
    }
}
