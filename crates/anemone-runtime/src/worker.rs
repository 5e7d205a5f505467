//! The worker threads that run engine calls, off the async executor.

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

type Job = Box<dyn FnOnce() + Send + 'static>;

/// A fixed pool of named OS threads taking jobs from one channel.
///
/// The channel is unbounded, but admission bounds how many requests can be in
/// flight, so at most that many jobs ever wait here.
pub struct WorkerPool {
    sender: Option<Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
}

impl WorkerPool {
    /// Starts `size` threads (at least one).
    pub fn new(size: usize) -> std::io::Result<WorkerPool> {
        let (sender, receiver): (Sender<Job>, Receiver<Job>) = crossbeam_channel::unbounded();
        let threads = (0..size.max(1))
            .map(|i| {
                let receiver = receiver.clone();
                std::thread::Builder::new()
                    .name(format!("anemone-worker-{i}"))
                    .spawn(move || {
                        while let Some(job) = next_job(&receiver) {
                            job();
                        }
                    })
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(WorkerPool {
            sender: Some(sender),
            threads,
        })
    }

    /// Queues a job. Jobs must not panic: callers catch panics inside the job.
    pub fn execute(&self, job: impl FnOnce() + Send + 'static) {
        let sender = self
            .sender
            .as_ref()
            .expect("the pool is only closed in Drop; this is a bug");
        sender
            .send(Box::new(job))
            .expect("workers live as long as the pool; this is a bug");
    }

    /// Number of threads.
    pub fn size(&self) -> usize {
        self.threads.len()
    }
}

/// How long an idle worker polls for the next job before it sleeps. Waking a
/// sleeping thread costs 10-15 µs on a virtual machine; under steady load the
/// next request usually arrives within this window.
const SPIN: Duration = Duration::from_micros(50);

/// The next job, or `None` once the pool is closed.
fn next_job(receiver: &Receiver<Job>) -> Option<Job> {
    let deadline = Instant::now() + SPIN;
    loop {
        match receiver.try_recv() {
            Ok(job) => return Some(job),
            Err(TryRecvError::Disconnected) => return None,
            Err(TryRecvError::Empty) if Instant::now() < deadline => std::hint::spin_loop(),
            Err(TryRecvError::Empty) => return receiver.recv().ok(),
        }
    }
}

impl Drop for WorkerPool {
    fn drop(&mut self) {
        // Closing the channel ends each worker once the queued jobs are done.
        self.sender.take();
        let current = std::thread::current().id();
        for t in self.threads.drain(..) {
            // The last Manager handle may be dropped on a worker itself; don't join yourself.
            if t.thread().id() != current {
                let _ = t.join();
            }
        }
    }
}
