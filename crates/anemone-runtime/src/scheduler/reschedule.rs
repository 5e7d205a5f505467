//! Requests that run again: a model that is
//! [iterative](anemone_core::LoadedModel::iterative) (Triton's
//! `sequence_batching { iterative_sequence: true }`) may answer a request
//! with [`anemone_core::Answer::rescheduled`], and the request goes back to
//! its model's queue, ahead of the requests waiting there, to run again on
//! the same engine instance (whose process keeps the model's state for it)
//! in a later call, batched with whatever else is queued: new requests join
//! the running ones at each call, as in Triton's continuous batching.
//!
//! As Triton's iterative sequencer (`IterativeSequencer` in Triton's
//! `sequence_utils.h`): a request that names no sequence is given one of
//! its own, a correlation ID counted per model version from 1, and starts
//! it; each later run neither starts nor ends it. Its concurrency permits
//! stay held until it is answered, and it is not timed out by the queue
//! again: it was admitted once. Each run counts as a successful inference
//! with its own times, as in Triton's statistics.

use super::Job;
use anemone_core::{CallSequence, SequenceId};
use std::sync::atomic::{AtomicU64, Ordering};

/// A model version's own correlation IDs, for requests that name none.
#[derive(Debug)]
pub(crate) struct OwnSequences {
    next: AtomicU64,
}

impl Default for OwnSequences {
    fn default() -> Self {
        OwnSequences {
            next: AtomicU64::new(1),
        }
    }
}

impl OwnSequences {
    /// Gives each job that names no sequence one of its own, starting it.
    pub(crate) fn enter(&self, jobs: &mut [Job]) {
        for job in jobs.iter_mut().filter(|j| j.admitted.sequence.is_none()) {
            let id = self.next.fetch_add(1, Ordering::Relaxed);
            job.admitted.sequence = Some(CallSequence {
                id: SequenceId::Number(id),
                start: true,
                end: false,
            });
        }
    }
}

/// A rescheduled job made ready to run again on engine instance `lane`:
/// its sequence goes on (neither started nor ended again), on that
/// instance only, with no queue deadline. Its next run's times count from
/// now (Triton counts each run as an inference, its queue time from when
/// it was put back); its client's latency still counts from its arrival.
pub(crate) fn again(mut job: Job, lane: usize) -> Job {
    job.admitted.start = std::time::Instant::now();
    job.admitted.validated = std::time::Duration::ZERO;
    if let Some(sequence) = job.admitted.sequence.as_mut() {
        sequence.start = false;
        sequence.end = false;
    }
    job.admitted.lane = Some(lane);
    job.deadline = None;
    job
}
