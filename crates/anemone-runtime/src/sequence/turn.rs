//! A request's place in its sequence: its turn (the sequence's earlier
//! requests done), the state it runs with, and the state it leaves.

use super::{Entered, SequenceFlags, Turn, MAX_STATE_BYTES};
use anemone_core::{Error, Result, Tensor};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// One request counted in [`super::Sequences::waiting`] while it lives
/// (a request cancelled while it waits is uncounted too).
struct Waiting<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> Waiting<'a> {
    fn count(counter: &'a std::sync::atomic::AtomicUsize) -> Waiting<'a> {
        counter.fetch_add(1, Ordering::Relaxed);
        Waiting(counter)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Entered {
    /// Waits for the sequence's earlier requests to finish. `outputs` are
    /// the outputs the request asked for by name.
    pub(crate) async fn turn(self, outputs: Option<&[String]>) -> Turn {
        let asked = self.asked(outputs);
        let guard = {
            let _waiting = Waiting::count(&self.sequences.waiting);
            Arc::clone(&self.sequence.turn).lock_owned().await
        };
        Turn {
            _guard: guard,
            entered: self,
            asked,
        }
    }

    /// Waits, on this thread, for the sequence's earlier requests to finish.
    pub(crate) fn turn_blocking(self, outputs: Option<&[String]>) -> Turn {
        let asked = self.asked(outputs);
        let guard = {
            let _waiting = Waiting::count(&self.sequences.waiting);
            Arc::clone(&self.sequence.turn).blocking_lock_owned()
        };
        Turn {
            _guard: guard,
            entered: self,
            asked,
        }
    }

    fn asked(&self, outputs: Option<&[String]>) -> Vec<bool> {
        let asked = |name: &String| outputs.is_some_and(|o| o.contains(name));
        let states = &self.sequences.settings.states;
        states.iter().map(|s| asked(&s.output)).collect()
    }
}

impl Turn {
    /// Marks the request refused before it ran (validation, a limit): it
    /// leaves its sequence as it was, as Triton checks a request before its
    /// sequence batcher sees it. A START does not open the sequence, an END
    /// does not close it.
    pub(crate) fn refused(&self) {
        self.entered.refused.store(true, Ordering::Relaxed);
    }

    /// The request's flags.
    pub(crate) fn flags(&self) -> &SequenceFlags {
        &self.entered.flags
    }

    /// The engine instance the request must run on: its sequence's, when
    /// the model has more than one.
    pub(crate) fn lane(&self) -> Option<usize> {
        (self.entered.sequences.lanes > 1).then_some(self.entered.sequence.lane)
    }

    /// The sequence's state for this request: `None` (the initial state)
    /// when it starts the sequence or none was kept yet.
    pub(crate) fn state(&self) -> Option<Vec<Tensor>> {
        if self.entered.flags.start {
            return None;
        }
        self.entered
            .sequence
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Keeps the state outputs of this request's answer as the sequence's
    /// state, and takes them out of the answer unless the request asked for
    /// them by name. A state grown past [`MAX_STATE_BYTES`] is not kept:
    /// the request fails, and the sequence keeps its state from before.
    pub(crate) fn keep_state(&self, outputs: &mut Vec<(String, Tensor)>) -> Result<()> {
        let asked = &self.asked;
        let states = &self.entered.sequences.settings.states;
        if states.is_empty() {
            return Ok(());
        }
        for state in states {
            let Some((_, tensor)) = outputs.iter().find(|(name, _)| *name == state.output) else {
                return Ok(());
            };
            let bytes = tensor.byte_len();
            if bytes > MAX_STATE_BYTES {
                return Err(Error::Input(anemone_core::InputError::Sequence {
                    message: format!(
                        "the sequence's state '{}' grew to {bytes} bytes, past the {} MiB a \
                         sequence may keep; end the sequence and start a new one",
                        state.output,
                        MAX_STATE_BYTES >> 20
                    ),
                }));
            }
        }
        let mut kept = Vec::with_capacity(states.len());
        for (ix, state) in states.iter().enumerate() {
            let Some(at) = outputs.iter().position(|(name, _)| *name == state.output) else {
                return Ok(());
            };
            kept.push(match asked.get(ix).copied().unwrap_or(false) {
                true => outputs[at].1.clone(),
                false => outputs.remove(at).1,
            });
        }
        *self
            .entered
            .sequence
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(kept);
        Ok(())
    }
}

impl Drop for Entered {
    fn drop(&mut self) {
        let sequences = &self.sequences;
        self.sequence
            .last
            .store(sequences.now_us(), Ordering::Relaxed);
        let refused = self.refused.load(Ordering::Relaxed);
        if refused && !self.opened {
            return;
        }
        if !self.flags.end && !refused {
            return;
        }
        let mut open = sequences.open.lock().unwrap_or_else(|e| e.into_inner());
        // Only this sequence: a start since may have opened a new one under the id.
        if open
            .by_id
            .get(&self.flags.id)
            .is_some_and(|s| Arc::ptr_eq(s, &self.sequence))
        {
            open.by_id.remove(&self.flags.id);
        }
    }
}
