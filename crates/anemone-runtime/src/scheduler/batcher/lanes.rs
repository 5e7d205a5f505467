//! Which engine instance (lane) of a model's queue runs its next batch:
//! the cheapest idle one, or, for a model whose requests are bound to
//! lanes (a sequence model's, an iterative model's rescheduled ones), an
//! idle lane that has a batch of its own to run.

use super::{decide, decide_on, BatchPlan, Batchable, Decision, State};
use std::time::Instant;

/// The lane the next batch should run on, or `None` to wait for one.
///
/// The idle lane whose engine costs least (`cost(lane, false)`: its EWMA
/// latency; see [`crate::instance::ModelInstance::lane_cost`]). A busy lane
/// on another backend is waited for instead when it would still finish
/// sooner (`cost(lane, true)`: twice its latency), so that an instance on the
/// CPU beside one on a GPU takes only the batches it can finish first.
/// Lanes on one backend never wait for each other: one slow first call (a
/// GPU engine records its CUDA graphs then) must not starve a lane.
pub(super) fn pick_lane(
    running: &[bool],
    cost: impl Fn(usize, bool) -> u128,
    backend: impl Fn(usize) -> &'static str,
) -> Option<usize> {
    let idle = (0..running.len())
        .filter(|&l| !running[l])
        .min_by_key(|&l| cost(l, false))?;
    let best = cost(idle, false);
    let sooner = (0..running.len())
        .filter(|&l| running[l] && backend(l) != backend(idle))
        .any(|l| cost(l, true) < best);
    (!sooner).then_some(idle)
}

/// The lane the next batch runs on, and what to do about it; `None` to wait
/// for a lane.
///
/// A model whose requests may run anywhere takes the lane [`pick_lane`]
/// chooses. A sequence model's requests are bound to their sequences'
/// lanes: each idle lane is tried in turn (the one the first request is
/// bound to first, then by cost) until one has a batch to run now;
/// otherwise the earliest wait of theirs.
pub(super) fn next_batch(
    state: &State,
    plan: &BatchPlan,
    now: Instant,
) -> Option<(usize, Option<Decision>)> {
    let head = state.queue.iter().next()?;
    let model = &head.item.admitted.instance;
    // A sequence's requests, and rescheduled ones, run on their instance.
    let bound =
        (model.sequences.is_some() || model.own_sequences.is_some()) && state.running.len() > 1;
    if !bound {
        let lane = pick_lane(
            &state.running,
            |lane, busy| model.lane_cost(lane, busy),
            |lane| model.lane_engine(lane).model.backend(),
        )?;
        return Some((lane, decide(&state.queue, plan, now)));
    }
    let mut idle: Vec<usize> = (0..state.running.len())
        .filter(|&l| !state.running[l])
        .collect();
    idle.sort_by_key(|&l| (head.item.lane() != Some(l), model.lane_cost(l, false)));
    let mut wait: Option<(usize, Option<Decision>)> = None;
    for lane in idle {
        match decide_on(&state.queue, plan, now, Some(lane)) {
            Some(Decision::Run(positions)) => return Some((lane, Some(Decision::Run(positions)))),
            Some(Decision::WaitUntil(t)) => {
                let sooner = match &wait {
                    Some((_, Some(Decision::WaitUntil(earlier)))) => t < *earlier,
                    _ => true,
                };
                if sooner {
                    wait = Some((lane, Some(Decision::WaitUntil(t))));
                }
            }
            _ => {}
        }
    }
    wait
}
