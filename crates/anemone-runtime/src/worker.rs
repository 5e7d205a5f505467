//! The worker threads that run engine calls, off the async executor.

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A fixed pool of named OS threads taking typed tasks from one channel and
/// running each with the pool's handler.
///
/// The channel is unbounded, but admission bounds how many requests can be in
/// flight, so at most that many tasks ever wait here.
pub struct WorkerPool<T: Send + 'static> {
    sender: Option<Sender<T>>,
    threads: Vec<JoinHandle<()>>,
}

impl<T: Send + 'static> WorkerPool<T> {
    /// Starts `size` threads (at least one), each running `handler` on the
    /// tasks it takes. The handler must not panic: callers catch panics inside.
    pub fn new(size: usize, handler: fn(T)) -> std::io::Result<WorkerPool<T>> {
        Self::named(size, handler, |i| format!("anemone-worker-{i}"))
    }

    /// As [`WorkerPool::new`], thread `i` named `name(i)`.
    pub fn named(
        size: usize,
        handler: fn(T),
        name: impl Fn(usize) -> String,
    ) -> std::io::Result<WorkerPool<T>> {
        let (sender, receiver): (Sender<T>, Receiver<T>) = crossbeam_channel::unbounded();
        let threads = (0..size.max(1))
            .map(|i| {
                let receiver = receiver.clone();
                std::thread::Builder::new().name(name(i)).spawn(move || {
                    while let Some(task) = next_task(&receiver) {
                        handler(task);
                    }
                })
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(WorkerPool {
            sender: Some(sender),
            threads,
        })
    }

    /// Queues a task.
    pub fn execute(&self, task: T) {
        let sender = self
            .sender
            .as_ref()
            .expect("the pool is only closed in Drop; this is a bug");
        if sender.send(task).is_err() {
            unreachable!("workers live as long as the pool; this is a bug");
        }
    }

    /// Number of threads.
    pub fn size(&self) -> usize {
        self.threads.len()
    }
}

/// How long an idle worker polls for the next task before it sleeps. Waking a
/// sleeping thread costs 10-15 µs on a virtual machine; under steady load the
/// next request usually arrives within this window.
const SPIN: Duration = Duration::from_micros(50);

/// The next task, or `None` once the pool is closed.
fn next_task<T>(receiver: &Receiver<T>) -> Option<T> {
    let deadline = Instant::now() + SPIN;
    loop {
        match receiver.try_recv() {
            Ok(task) => return Some(task),
            Err(TryRecvError::Disconnected) => return None,
            Err(TryRecvError::Empty) if Instant::now() < deadline => std::hint::spin_loop(),
            Err(TryRecvError::Empty) => return receiver.recv().ok(),
        }
    }
}

impl<T: Send + 'static> Drop for WorkerPool<T> {
    fn drop(&mut self) {
        // Closing the channel ends each worker once the queued tasks are done.
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
