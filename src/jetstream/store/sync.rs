//! The fsync helper thread: the only place tern waits for the disk.
//!
//! The poll loop never calls fsync. It hands a batch `(id, SyncTarget)` to `Syncer::submit`
//! (a channel send, never blocking), keeps going, and later drains `(id, result)` completions
//! after the thread's `mio::Waker` wakes it. The thread takes every batch that queued up while
//! it was busy and syncs their files once (group commit: one fdatasync per file for many
//! batches), then completes them all, in order. Nothing here is specific to the message store:
//! the stream layer's own files and the interval sync use the same thread.
//!
//! A sync error completes every batch it covered with that error. After a failed fsync the
//! kernel may have dropped the dirty pages, so the owner must not pretend the data is safe: the
//! store goes read-only (`Store::sync_failed`).

use std::fs::File;
use std::io;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

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
    tx: Option<Sender<(u64, SyncTarget)>>,
    done: Arc<Mutex<Vec<SyncDone>>>,
    thread: Option<JoinHandle<()>>,
}

impl Syncer {
    /// Starts the thread. `waker` is woken after each group of completions (None in tests,
    /// which poll `drain`).
    pub fn start(waker: Option<Arc<mio::Waker>>) -> io::Result<Syncer> {
        let (tx, rx) = channel();
        let done = Arc::new(Mutex::new(Vec::new()));
        let out = done.clone();
        let thread = std::thread::Builder::new()
            .name("tern-sync".into())
            .spawn(move || run(rx, out, waker))?;
        Ok(Syncer {
            tx: Some(tx),
            done,
            thread: Some(thread),
        })
    }

    /// Queues a batch; its completion carries `id`.
    pub fn submit(&self, id: u64, target: SyncTarget) {
        if let Some(tx) = &self.tx {
            if tx.send((id, target)).is_err() {
                // The thread is gone (it only ends when we drop the sender): complete here.
                let err = io::Error::other("sync thread stopped");
                self.lock().push(SyncDone {
                    id,
                    result: Err(err),
                });
            }
        }
    }

    /// Moves the completions so far into `out`, oldest first.
    pub fn drain(&self, out: &mut Vec<SyncDone>) {
        out.append(&mut self.lock());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<SyncDone>> {
        self.done.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Syncer {
    /// Finishes the queued batches, then stops the thread.
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(
    rx: Receiver<(u64, SyncTarget)>,
    done: Arc<Mutex<Vec<SyncDone>>>,
    waker: Option<Arc<mio::Waker>>,
) {
    while let Ok(first) = rx.recv() {
        let mut ids = vec![first.0];
        let mut all = first.1;
        while let Ok((id, t)) = rx.try_recv() {
            ids.push(id);
            all.merge(&t);
        }
        let result = all.sync_now();
        {
            let mut d = done.lock().unwrap_or_else(|e| e.into_inner());
            for id in ids {
                let result = match &result {
                    Ok(()) => Ok(()),
                    Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
                };
                d.push(SyncDone { id, result });
            }
        }
        if let Some(w) = &waker {
            let _ = w.wake();
        }
    }
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
}
