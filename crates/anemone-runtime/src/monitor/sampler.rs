//! The inputs of a model's first real requests, kept for re-timing its
//! engines on the shapes users really send.

use super::policy::MAX_SHAPES;
use anemone_core::Tensor;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

/// Keeps the inputs of the first `after` requests (one set per distinct
/// shape, at most [`MAX_SHAPES`]). Once it has seen enough, a request pays
/// one relaxed atomic load for it.
#[derive(Debug)]
pub(crate) struct Sampler {
    /// True while requests are still wanted.
    wanted: AtomicBool,
    /// Requests offered so far.
    seen: AtomicU64,
    after: u64,
    /// Input sets in the model's input order, one per distinct shape.
    sets: Mutex<Vec<Vec<Tensor>>>,
    /// Set once the re-timing took the sets (it runs once).
    taken: AtomicBool,
}

impl Sampler {
    /// A sampler that wants `after` requests (at least one).
    pub(crate) fn new(after: u64) -> Sampler {
        Sampler {
            wanted: AtomicBool::new(true),
            seen: AtomicU64::new(0),
            after: after.max(1),
            sets: Mutex::default(),
            taken: AtomicBool::new(false),
        }
    }

    /// Offers a validated request's inputs (in the model's order).
    #[inline]
    pub(crate) fn offer(&self, inputs: &[Tensor]) {
        if self.wanted.load(Ordering::Relaxed) {
            self.keep(inputs);
        }
    }

    #[cold]
    fn keep(&self, inputs: &[Tensor]) {
        let mut sets = self.sets.lock().unwrap_or_else(|e| e.into_inner());
        let same_shapes = |set: &Vec<Tensor>| {
            set.len() == inputs.len() && set.iter().zip(inputs).all(|(a, b)| a.shape() == b.shape())
        };
        if sets.len() < MAX_SHAPES && !sets.iter().any(same_shapes) {
            // Compact copies: a request's inputs may be views of its whole
            // decoded message, kept here until the monitor takes them.
            sets.push(inputs.iter().map(Tensor::compact).collect());
        }
        if self.seen.fetch_add(1, Ordering::Relaxed) + 1 >= self.after {
            self.wanted.store(false, Ordering::Relaxed);
        }
    }

    /// The kept sets, once enough requests were seen; `None` before, and
    /// after they were taken once.
    pub(crate) fn take(&self) -> Option<Vec<Vec<Tensor>>> {
        if self.wanted.load(Ordering::Relaxed) || self.taken.swap(true, Ordering::AcqRel) {
            return None;
        }
        Some(std::mem::take(
            &mut *self.sets.lock().unwrap_or_else(|e| e.into_inner()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(n: usize) -> Vec<Tensor> {
        vec![Tensor::from_vec(vec![n], vec![0f32; n]).unwrap()]
    }

    #[test]
    fn keeps_one_set_per_shape_and_hands_them_over_once() {
        let s = Sampler::new(4);
        s.offer(&input(2));
        s.offer(&input(2));
        s.offer(&input(3));
        assert!(s.take().is_none(), "not enough requests yet");
        s.offer(&input(5));
        s.offer(&input(7)); // after the fourth: not kept
        let sets = s.take().unwrap();
        let shapes: Vec<usize> = sets.iter().map(|s| s[0].shape()[0]).collect();
        assert_eq!(shapes, vec![2, 3, 5]);
        assert!(s.take().is_none(), "taken once");
    }
}
