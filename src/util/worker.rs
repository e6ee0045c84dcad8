//! A helper thread of our own for calls the loop must never wait on (DNS lookups today; the
//! store's fsync is meant to follow the same pattern).
//!
//! Jobs go in over a channel; the thread runs them one after another and sends each result
//! back over a second channel, then wakes the loop through the `mio::Waker` registered with
//! its `Poll` (there is one per Poll, shared by every worker). On that wake-up the loop takes
//! whatever results are ready with `ready` and moves on: it never blocks on a job. Dropping
//! the `Worker` closes the job channel and the thread ends after its current job; nothing
//! joins it, so a lookup stuck in the resolver cannot hold up shutdown.

use mio::Waker;
use std::io;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread;

/// One helper thread: `J` jobs in, `R` results out.
pub struct Worker<J, R> {
    jobs: Sender<J>,
    done: Receiver<R>,
}

impl<J: Send + 'static, R: Send + 'static> Worker<J, R> {
    /// Starts the thread `name`, which runs `work` on each job and wakes the loop after each.
    pub fn spawn(
        name: &str,
        waker: Arc<Waker>,
        mut work: impl FnMut(J) -> R + Send + 'static,
    ) -> io::Result<Worker<J, R>> {
        let (jobs, inbox) = mpsc::channel::<J>();
        let (outbox, done) = mpsc::channel::<R>();
        thread::Builder::new().name(name.into()).spawn(move || {
            while let Ok(job) = inbox.recv() {
                if outbox.send(work(job)).is_err() {
                    return; // the loop is gone
                }
                let _ = waker.wake();
            }
        })?;
        Ok(Worker { jobs, done })
    }

    /// Hands a job to the thread; gives it back only if the thread has died.
    pub fn submit(&self, job: J) -> Result<(), J> {
        self.jobs.send(job).map_err(|e| e.0)
    }

    /// The results that are ready now, without waiting.
    pub fn ready(&self) -> Vec<R> {
        self.done.try_iter().collect()
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
}
