//! A model's queue thread: it owns the model's [`PriorityQueue`], fails
//! requests that time out in it, drops those whose client has gone, and when
//! an engine instance is free hands it the next batch: one request, or with
//! dynamic batching as many compatible requests as fit.
//!
//! Each engine instance runs its batches on a thread of its own (a lane), as
//! each Triton instance does. Engines keep state per thread: tract-cuda a
//! stream, a plan state and a CUDA graph per batch size, each recorded on
//! the first calls at that size. Batches handed to the shared worker threads
//! spread each batch size over all of them (16 threads × 32 sizes × 2
//! instances of ResNet-18), so that most calls of a short run were such
//! first calls. A lane records each size once.
//!
//! An OS thread with a condition variable rather than an async task, so the
//! manager keeps working on any executor (or none). It wakes on a new
//! request, a freed instance, the next queue timeout and the end of the
//! batching delay.

use super::order::OrderGate;
use super::queue::{Entry, PriorityQueue, Waiting};
use super::{Job, Work};
use crate::rate_limit::{Acquire, Grant, RateLimit, RateLimiter, Registration, Wake};
use crate::spec::{Batching, QueueSettings};
use crate::worker::WorkerPool;
use anemone_core::{Error, Tensor};
use lanes::next_batch;
#[cfg(test)]
use lanes::pick_lane;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

impl Waiting for Job {
    fn gone(&self) -> bool {
        self.cancelled()
    }
}

/// What the batcher needs to know about a queued request.
pub(crate) trait Batchable {
    /// Rows along the batch dimension; `None`: it cannot be batched with others.
    fn rows(&self) -> Option<usize>;
    /// Whether it can share an engine call with `other`: same inputs, same
    /// dtypes, same dimensions after the first.
    fn fits(&self, other: &Self) -> bool;
    /// The lane it must run on (a sequence model's request, on its
    /// sequence's instance); `None`: any.
    fn lane(&self) -> Option<usize> {
        None
    }
}

impl Batchable for Job {
    /// The rows of the inputs the request gave (an optional input it left
    /// out stands as an empty placeholder, which has none).
    fn rows(&self) -> Option<usize> {
        let absent = &self.admitted.absent;
        let mut given = (self.admitted.inputs.iter().enumerate())
            .filter(|(ix, _)| !absent.contains(ix))
            .map(|(_, t)| t.shape().first().copied());
        let rows = given.next()??;
        given.all(|r| r == Some(rows)).then_some(rows)
    }

    fn lane(&self) -> Option<usize> {
        self.admitted.lane
    }

    /// Requests that left out different optional inputs never share a
    /// batch (nor do they in Triton). A ragged input's shapes may differ
    /// (Triton's `allow_ragged_batch`: `crate::ragged`).
    fn fits(&self, other: &Self) -> bool {
        let (a, b) = (&self.admitted.inputs, &other.admitted.inputs);
        let instance = &self.admitted.instance;
        let ragged = &instance.spec.ragged;
        let shaped_alike = |i: usize, x: &Tensor, y: &Tensor| {
            (x.shape().len() == y.shape().len() && x.shape().get(1..) == y.shape().get(1..))
                || (!ragged.inputs.is_empty()
                    && (instance.metadata().inputs.get(i))
                        .is_some_and(|s| ragged.is_ragged(&s.name)))
        };
        self.admitted.absent == other.admitted.absent
            && a.len() == b.len()
            && (a.iter().zip(b).enumerate())
                .all(|(i, (x, y))| x.dtype() == y.dtype() && shaped_alike(i, x, y))
    }
}

/// How a model's queue forms batches.
#[derive(Debug, Clone)]
pub(crate) struct BatchPlan {
    /// `None`: one request per engine call.
    pub(crate) batching: Option<Batching>,
    /// The most rows one engine call takes (the model's `max_batch_size`).
    pub(crate) max_rows: usize,
    /// The manager's gates: with `batching` off, one request per engine call.
    pub(crate) gates: Arc<crate::gates::FeatureGates>,
}

/// What to do with the queue now.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Run the items at these positions (in serving order) as one batch.
    Run(Vec<usize>),
    /// Wait for more requests until this instant.
    WaitUntil(Instant),
}

/// The next batch, by Triton's rule (`GetDynamicBatch` in Triton's
/// `dynamic_batch_scheduler.cc`): the first request in serving order, then
/// every later one that fits with it, up to `max_rows`.
///
/// - While the oldest picked request is within `max_queue_delay`, the
///   largest preferred size the queue can form runs at once, with the
///   requests that make it up. Without one, a batch that cannot grow past
///   the largest preferred size (or `max_rows` where none is given) without
///   overshooting it runs as it is.
/// - Once the delay has passed (or with no delay), everything picked runs.
/// - Otherwise the batcher waits for more, until the delay ends; but the
///   requests it passed over (another shape) run meanwhile when they make
///   a batch that would run at once on its own.
pub(crate) fn decide<T: Batchable + Waiting>(
    queue: &PriorityQueue<T>,
    plan: &BatchPlan,
    now: Instant,
) -> Option<Decision> {
    decide_on(queue, plan, now, None)
}

/// [`decide`] for a batch to run on `lane`: only the requests that may run
/// there (those not bound to another lane) count, the others are passed
/// over. `None`: every request counts.
pub(crate) fn decide_on<T: Batchable + Waiting>(
    queue: &PriorityQueue<T>,
    plan: &BatchPlan,
    now: Instant,
    lane: Option<usize>,
) -> Option<Decision> {
    let may_run = |item: &T| lane.is_none() || item.lane().is_none_or(|l| Some(l) == lane);
    // The requests that count, in serving order, walked again for each group
    // rather than collected: a decision allocates nothing.
    let entries = || {
        queue
            .iter()
            .enumerate()
            .filter(move |(_, entry)| may_run(&entry.item))
    };
    let (first, head) = entries().next()?;
    let Some(batching) = plan.batching.as_ref().filter(|_| plan.gates.batching()) else {
        return Some(Decision::Run(vec![first]));
    };
    // A batch of one row cannot grow (a model without a batch dimension
    // queues with max_rows 1: its first dimension is not rows).
    if plan.max_rows <= 1 || head.item.rows().is_none() {
        return Some(Decision::Run(vec![first]));
    }
    let decision = decide_group(entries(), plan, batching, now)?;
    let Decision::WaitUntil(due) = decision else {
        return Some(decision);
    };
    // The head's batch waits for more. The requests it passed over (another
    // shape) do not wait with it when they make a batch that runs now (a
    // preferred size, or full), as they would lead the queue alone.
    let passed = entries().position(|(_, e)| e.item.rows().is_some() && !e.item.fits(&head.item));
    Some(
        match passed.and_then(|at| decide_group(entries().skip(at), plan, batching, now)) {
            Some(Decision::Run(batch)) => Decision::Run(batch),
            Some(Decision::WaitUntil(later)) => Decision::WaitUntil(due.min(later)),
            None => Decision::WaitUntil(due),
        },
    )
}

/// The batch led by the first of `entries`: it and every later entry that
/// fits with it, up to `max_rows`, and whether it runs now (see [`decide`]).
/// `None` when there are no entries.
fn decide_group<'q, T: Batchable + Waiting + 'q>(
    mut entries: impl Iterator<Item = (usize, &'q Entry<T>)>,
    plan: &BatchPlan,
    batching: &Batching,
    now: Instant,
) -> Option<Decision> {
    let (first, head) = entries.next()?;
    let mut rows = head.item.rows().unwrap_or(1);
    let preferred = &batching.preferred_batch_sizes;
    let max_preferred = preferred.iter().copied().max().unwrap_or(plan.max_rows);
    let mut picked = vec![first];
    // How many of `picked` make the batch to run at once: a preferred size,
    // or the most that stays within the largest preferred size.
    let mut best = preferred.contains(&rows).then_some(1);
    let mut oldest = head.enqueued;
    for (i, entry) in entries {
        if rows >= plan.max_rows {
            break;
        }
        let Some(more) = entry.item.rows() else {
            continue;
        };
        if !entry.item.fits(&head.item) {
            continue;
        }
        if rows + more > max_preferred && best.is_none() {
            best = Some(picked.len());
        }
        if rows + more > plan.max_rows {
            continue;
        }
        picked.push(i);
        rows += more;
        oldest = oldest.min(entry.enqueued);
        if preferred.contains(&rows) {
            best = Some(picked.len());
        }
    }
    let no_delay = batching.max_queue_delay.is_zero();
    let due = oldest + batching.max_queue_delay;
    let delay_passed = !no_delay && due <= now;
    Some(match best {
        Some(n) if !delay_passed => {
            picked.truncate(n);
            Decision::Run(picked)
        }
        _ if no_delay || delay_passed || rows >= max_preferred => Decision::Run(picked),
        _ => Decision::WaitUntil(due),
    })
}

/// The state a model's queue thread shares with the requests and the workers.
struct Shared {
    state: Mutex<State>,
    /// Signalled on a new request, a freed instance, a turn given by the
    /// rate limiter and on close.
    wake: Condvar,
    /// The model's instances in the rate limiter, when it holds them.
    limits: Option<Registration>,
}

struct State {
    queue: PriorityQueue<Job>,
    /// Whether each engine instance (lane) is running a batch now.
    running: Vec<bool>,
    /// The lane in the rate limiter's line, waiting for its resources.
    waiting: Option<usize>,
    /// Set when the model version is dropped: the thread ends once the queue is empty.
    closed: bool,
}

/// A model version's request queue and the thread that serves it.
pub(crate) struct ModelQueue {
    shared: Arc<Shared>,
    /// With `preserve_ordering`: answers go out in arrival order.
    order: Option<Arc<OrderGate>>,
}

/// One engine instance (lane) held by a running batch, given back on drop
/// with the rate-limiter resources it holds.
pub(crate) struct Slot {
    shared: Arc<Shared>,
    lane: usize,
    grant: Option<Grant>,
}

/// The manager's rate limiter and each lane's rate limit (`None`: not held).
pub(crate) type LaneLimits = (Arc<RateLimiter>, Vec<Option<RateLimit>>);

/// Why a model's queue did not start.
pub(crate) enum QueueStart {
    /// Its rate-limiter resources cannot be met: what to change.
    Limits(String),
    /// Its threads could not be started.
    Threads(std::io::Error),
}

impl Slot {
    /// The engine instance the batch runs on.
    pub(crate) fn lane(&self) -> usize {
        self.lane
    }

    /// Puts the batch's rescheduled jobs back in the queue, ahead of those
    /// waiting, to run again on this slot's lane (see `reschedule.rs`).
    pub(crate) fn requeue(&self, jobs: Vec<Job>) {
        if jobs.is_empty() {
            return;
        }
        let items = (jobs.into_iter())
            .map(|job| {
                let priority = job.priority;
                (super::reschedule::again(job, self.lane), priority)
            })
            .collect();
        lock(&self.shared).queue.requeue(items, Instant::now());
        self.shared.wake.notify_all();
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let grant = self.grant.take();
        let mut state = lock(&self.shared);
        state.running[self.lane] = false;
        // As Triton's `OnRelease`: an instance whose queue has more work
        // joins the limiter's line before it gives its resources back, so
        // that it competes for the next turn with those already waiting.
        if let (Some(limits), Some(true)) = (&self.shared.limits, grant.as_ref().map(Grant::holds))
        {
            if state.waiting.is_none() && !state.queue.is_empty() {
                limits.stage(self.lane);
                state.waiting = Some(self.lane);
            }
        }
        drop(state);
        // With no lock held: giving back wakes the instance whose turn it is.
        drop(grant);
        self.shared.wake.notify_all();
    }
}

fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    shared.state.lock().unwrap_or_else(|e| e.into_inner())
}

impl ModelQueue {
    /// Starts the queue thread of model `name` and one thread for each of
    /// its `instances` engine instances, registered with the rate limiter
    /// when `limits` has one.
    pub(crate) fn start(
        name: &str,
        settings: QueueSettings,
        plan: BatchPlan,
        instances: usize,
        limits: Option<LaneLimits>,
    ) -> Result<ModelQueue, QueueStart> {
        let lanes = (0..instances.max(1))
            .map(|i| WorkerPool::named(1, Work::run, |_| format!("anemone-{name}-instance-{i}")))
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(QueueStart::Threads)?;
        let mut refused = None;
        let shared = Arc::new_cyclic(|weak: &std::sync::Weak<Shared>| {
            let limits = limits.and_then(|(limiter, lane_limits)| {
                let weak = weak.clone();
                // Taking the queue's lock orders the wake after the queue
                // thread's check, which holds it until it waits.
                let wake: Wake = Arc::new(move || {
                    if let Some(shared) = weak.upgrade() {
                        drop(lock(&shared));
                        shared.wake.notify_all();
                    }
                });
                limiter
                    .register(name, &lane_limits, wake)
                    .unwrap_or_else(|e| {
                        refused = Some(e);
                        None
                    })
            });
            Shared {
                state: Mutex::new(State {
                    queue: PriorityQueue::new(settings),
                    running: vec![false; lanes.len()],
                    waiting: None,
                    closed: false,
                }),
                wake: Condvar::new(),
                limits,
            }
        });
        if let Some(reason) = refused {
            return Err(QueueStart::Limits(reason));
        }
        let order = plan
            .batching
            .as_ref()
            .filter(|b| b.preserve_ordering)
            .map(|_| Arc::new(OrderGate::default()));
        let thread_shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name(format!("anemone-queue-{name}"))
            .spawn(move || serve(&thread_shared, &plan, &lanes))
            .map_err(QueueStart::Threads)?;
        Ok(ModelQueue { shared, order })
    }

    /// Queues a job, or refuses it at once with `Unavailable` when its
    /// priority level's queue is full: the job is dropped and the refusal
    /// counted on its model (by reason, not as a failed inference).
    pub(crate) fn submit(&self, mut job: Job) -> Result<(), Error> {
        let (priority, deadline) = (job.priority, job.deadline);
        let mut state = lock(&self.shared);
        // Tickets are taken under the queue's lock, so their order is arrival order.
        if let Some(gate) = &self.order {
            job.reply.in_order(gate);
        }
        match state.queue.push(job, priority, deadline, Instant::now()) {
            Ok(()) => {
                drop(state);
                self.shared.wake.notify_all();
                Ok(())
            }
            Err((job, full)) => {
                drop(state);
                let instance = &job.admitted.instance;
                let refused = Error::Unavailable {
                    what: format!("model '{}'", instance.name()),
                    reason: format!(
                        "its queue for priority level {} is full ({} waiting, the \
                         max_queue_size of its queue policy); retry later, or raise max_queue_size",
                        full.level, full.max_queue_size
                    ),
                };
                instance.metrics.record_refusal(refused.kind());
                // Dropping its reply leaves the answer order: later answers
                // do not wait for it.
                drop(job);
                Err(refused)
            }
        }
    }

    /// Requests waiting in the queue now.
    pub(crate) fn len(&self) -> usize {
        lock(&self.shared).queue.len()
    }
}

impl Drop for ModelQueue {
    fn drop(&mut self) {
        lock(&self.shared).closed = true;
        self.shared.wake.notify_all();
    }
}

/// Calls other queues' wakes with this queue's lock let go, and takes it again.
fn with_wakes<'a>(
    shared: &'a Shared,
    state: MutexGuard<'a, State>,
    wakes: Vec<Wake>,
) -> MutexGuard<'a, State> {
    if wakes.is_empty() {
        return state;
    }
    drop(state);
    wakes.iter().for_each(|w| w());
    lock(shared)
}

/// The queue thread's loop; it ends once the queue is closed and empty,
/// and the lanes (dropped with it) once their batches are done.
///
/// With a rate limiter (`limits`), a batch ready to run first asks for its
/// lane's resources; while it waits, it keeps that lane and its batch can
/// still grow, and a queue that empties meanwhile leaves the line.
fn serve(shared: &Arc<Shared>, plan: &BatchPlan, lanes: &[WorkerPool<Work>]) {
    let limits = shared.limits.as_ref();
    let mut state = lock(shared);
    loop {
        let now = Instant::now();
        for job in state.queue.expire(now) {
            let waited = now.saturating_duration_since(job.admitted.start);
            job.reply.send(Err(Error::Timeout(waited)));
        }
        if state.queue.is_empty() {
            if let (Some(lane), Some(limits)) = (state.waiting.take(), limits) {
                state = with_wakes(shared, state, limits.withdraw(lane));
                continue;
            }
            if state.closed {
                return;
            }
            state = shared.wake.wait(state).unwrap_or_else(|e| e.into_inner());
            continue;
        }
        let mut wake_at = state.queue.next_deadline();
        let next = match state.waiting {
            Some(lane) => Some((lane, decide_on(&state.queue, plan, now, Some(lane)))),
            None => next_batch(&state, plan, now),
        };
        if let Some((lane, decision)) = next {
            match decision {
                Some(Decision::Run(positions)) => {
                    let (grant, wakes) = match limits.map(|l| l.acquire(lane)) {
                        None => (None, Vec::new()),
                        Some((Acquire::Granted(grant), wakes)) => (Some(grant), wakes),
                        Some((Acquire::Wait, wakes)) => {
                            state.waiting = Some(lane);
                            if !wakes.is_empty() {
                                state = with_wakes(shared, state, wakes);
                                continue;
                            }
                            // To the wait below, the lock held until then
                            // so that the wake of its turn is not missed.
                            state = wait(shared, state, wake_at);
                            continue;
                        }
                    };
                    state.waiting = None;
                    let jobs: Vec<Job> = state
                        .queue
                        .take(&positions)
                        .into_iter()
                        .map(|e| e.item)
                        .collect();
                    state.running[lane] = true;
                    drop(state);
                    wakes.iter().for_each(|w| w());
                    let slot = Slot {
                        shared: Arc::clone(shared),
                        lane,
                        grant,
                    };
                    lanes[lane].execute(Work::Batch(jobs, slot));
                    state = lock(shared);
                    continue;
                }
                Some(Decision::WaitUntil(t)) => {
                    wake_at = Some(wake_at.map_or(t, |d| d.min(t)));
                    if let (Some(lane), Some(limits)) = (state.waiting.take(), limits) {
                        state = with_wakes(shared, state, limits.withdraw(lane));
                        continue;
                    }
                }
                // Nothing may run on the lane in the rate limiter's line
                // (its sequences' requests are done): it leaves the line.
                None => {
                    if let (Some(lane), Some(limits)) = (state.waiting.take(), limits) {
                        state = with_wakes(shared, state, limits.withdraw(lane));
                        continue;
                    }
                }
            }
        }
        state = wait(shared, state, wake_at);
    }
}

/// Waits for a wake, or until `until` (a timeout or the end of a delay).
fn wait<'a>(
    shared: &'a Shared,
    state: MutexGuard<'a, State>,
    until: Option<Instant>,
) -> MutexGuard<'a, State> {
    match until {
        None => shared.wake.wait(state).unwrap_or_else(|e| e.into_inner()),
        Some(t) => {
            let wait = t.saturating_duration_since(Instant::now());
            shared
                .wake
                .wait_timeout(state, wait.max(Duration::from_micros(1)))
                .unwrap_or_else(|e| e.into_inner())
                .0
        }
    }
}

mod lanes;
#[cfg(test)]
mod tests;
