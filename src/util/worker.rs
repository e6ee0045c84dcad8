//! The one helper-thread pattern, for calls the loop must never wait on: the resolver's DNS
//! lookups (`cluster/dial.rs`) and the store's fsync (`jetstream/store/sync.rs`).
//!
//! Jobs go in over a channel; the thread runs them and sends each result back over a second
//! channel, then wakes the loop through the `mio::Waker` registered with its `Poll` (one per
//! Poll, shared by every worker). On that wake-up the loop takes whatever results are ready
//! (`ready`) and moves on: it never blocks on a job. Two kinds:
//! - `spawn`: one job at a time, a wake-up per result. Dropping the worker closes the job
//!   channel and the thread ends after its current job; nothing joins it, so a lookup stuck
//!   in the resolver cannot hold up shutdown.
//! - `spawn_batched`: the thread takes every job that queued up while it was busy and runs
//!   them as one batch (group commit: one fsync for many). Dropping the worker waits for the
//!   jobs already queued, so nothing handed over is lost.

use mio::Waker;
use std::io;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

/// One helper thread: `J` jobs in, `R` results out.
pub struct Worker<J, R> {
    jobs: Option<Sender<J>>,
    done: Receiver<R>,
    /// Joined on drop (`spawn_batched`).
    thread: Option<JoinHandle<()>>,
}

impl<J: Send + 'static, R: Send + 'static> Worker<J, R> {
    /// Starts the thread `name`, which runs `work` on each job and wakes the loop after each.
    pub fn spawn(
        name: &str,
        waker: Arc<Waker>,
        mut work: impl FnMut(J) -> R + Send + 'static,
    ) -> io::Result<Worker<J, R>> {
        let batch = move |jobs: Vec<J>| jobs.into_iter().map(&mut work).collect();
        let (worker, _) = Worker::start(name, Some(waker), false, batch)?;
        Ok(worker)
    }

    /// Starts the thread `name`, which runs `work` on every job queued since it last looked
    /// (in order; one result per job, in the same order) and wakes the loop after each batch.
    /// `waker` may be None where a test polls `ready`.
    pub fn spawn_batched(
        name: &str,
        waker: Option<Arc<Waker>>,
        work: impl FnMut(Vec<J>) -> Vec<R> + Send + 'static,
    ) -> io::Result<Worker<J, R>> {
        let (mut worker, thread) = Worker::start(name, waker, true, work)?;
        worker.thread = Some(thread);
        Ok(worker)
    }

    fn start(
        name: &str,
        waker: Option<Arc<Waker>>,
        batched: bool,
        mut work: impl FnMut(Vec<J>) -> Vec<R> + Send + 'static,
    ) -> io::Result<(Worker<J, R>, JoinHandle<()>)> {
        let (jobs, inbox) = mpsc::channel::<J>();
        let (outbox, done) = mpsc::channel::<R>();
        let thread = thread::Builder::new().name(name.into()).spawn(move || {
            while let Ok(first) = inbox.recv() {
                let mut batch = vec![first];
                if batched {
                    batch.extend(inbox.try_iter());
                }
                for result in work(batch) {
                    if outbox.send(result).is_err() {
                        return; // the loop is gone
                    }
                }
                if let Some(w) = &waker {
                    let _ = w.wake();
                }
            }
        })?;
        let worker = Worker {
            jobs: Some(jobs),
            done,
            thread: None,
        };
        Ok((worker, thread))
    }

    /// Hands a job to the thread; gives it back only if the thread has died.
    pub fn submit(&self, job: J) -> Result<(), J> {
        match &self.jobs {
            Some(jobs) => jobs.send(job).map_err(|e| e.0),
            None => Err(job),
        }
    }

    /// The results that are ready now, without waiting.
    pub fn ready(&self) -> Vec<R> {
        self.done.try_iter().collect()
    }
}

impl<J, R> Drop for Worker<J, R> {
    /// Closes the job channel; a batched worker's thread finishes the queued jobs first.
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Events, Poll, Token};
    use std::time::Duration;

    #[test]
    fn jobs_run_on_the_helper_thread_and_wake_the_poll() {
        let mut poll = Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), Token(7)).unwrap());
        let loop_thread = thread::current().id();
        let w = Worker::spawn("test-worker", waker, move |n: u32| {
            (n * 2, thread::current().id() != loop_thread)
        })
        .unwrap();
        assert!(w.submit(21).is_ok());
        let mut events = Events::with_capacity(4);
        let mut got = Vec::new();
        while got.is_empty() {
            poll.poll(&mut events, Some(Duration::from_secs(5)))
                .unwrap();
            assert!(events.iter().any(|e| e.token() == Token(7)), "no wake-up");
            got = w.ready();
        }
        assert_eq!(got, vec![(42, true)]);
    }

    /// Jobs queued while the thread is busy are one batch; dropping the worker finishes them.
    #[test]
    fn batches_take_what_queued_up_and_finish_on_drop() {
        let (gate_tx, gate) = mpsc::channel::<()>();
        let (sizes_tx, sizes) = mpsc::channel::<usize>();
        let w = Worker::spawn_batched("test-batch", None, move |jobs: Vec<u32>| {
            let _ = gate.recv(); // hold the thread until the test has queued more
            let _ = sizes_tx.send(jobs.len());
            jobs
        })
        .unwrap();
        // The thread takes a batch and waits at the gate: what comes later queues up.
        for n in 1..=4 {
            w.submit(n).unwrap();
        }
        for _ in 0..2 {
            gate_tx.send(()).unwrap();
        }
        let first = sizes.recv().unwrap();
        drop(w);
        let rest: Vec<usize> = sizes.try_iter().collect();
        assert_eq!(first + rest.iter().sum::<usize>(), 4, "{first} {rest:?}");
        assert!(rest.len() <= 1, "at most one more batch: {rest:?}");
    }
}
