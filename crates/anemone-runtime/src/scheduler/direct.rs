//! The direct path: a request goes to the worker threads at once, first
//! come first served, unless its model has a queue of its own, which then
//! takes it (and runs it on the thread of one of the model's instances).

use super::{Job, Scheduler, Work};
use crate::worker::WorkerPool;
use anemone_core::Result;
use std::sync::Arc;

/// Sends each job to its model's queue, or straight to the worker pool.
pub(crate) struct Direct {
    workers: Arc<WorkerPool<Work>>,
}

impl Direct {
    /// A scheduler over a pool of `workers` threads.
    pub(crate) fn new(workers: usize) -> std::io::Result<Direct> {
        Ok(Direct {
            workers: Arc::new(WorkerPool::new(workers, Work::run)?),
        })
    }
}

impl Scheduler for Direct {
    fn submit(&self, job: Job) -> Result<()> {
        let instance = Arc::clone(&job.admitted.instance);
        match &instance.queue {
            Some(queue) => queue.submit(job),
            None => {
                self.workers.execute(Work::One(job));
                Ok(())
            }
        }
    }

    fn workers(&self) -> usize {
        self.workers.size()
    }
}
