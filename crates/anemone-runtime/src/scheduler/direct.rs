//! The direct scheduler: every request goes to the worker threads at once,
//! first come first served, with no queue of its own.

use super::{Admitted, Done, Job, Scheduler, Work};
use crate::worker::WorkerPool;

/// Sends each job straight to the worker pool.
pub(crate) struct Direct {
    workers: WorkerPool<Work>,
}

impl Direct {
    /// A scheduler over a pool of `workers` threads.
    pub(crate) fn new(workers: usize) -> std::io::Result<Direct> {
        Ok(Direct {
            workers: WorkerPool::new(workers, Work::run)?,
        })
    }
}

impl Scheduler for Direct {
    fn submit(&self, admitted: Admitted) -> tokio::sync::oneshot::Receiver<Done> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.workers.execute(Work::One(Job {
            admitted,
            reply,
            priority: 0,
            deadline: None,
            span: tracing::Span::current(),
        }));
        rx
    }

    fn workers(&self) -> usize {
        self.workers.size()
    }
}
