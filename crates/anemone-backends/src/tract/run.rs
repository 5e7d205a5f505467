//! Running a tract plan: on a per-thread reused state where the target
//! keeps states, with the outputs converted, and an engine failure told
//! apart into the inputs' fault or the backend's (see [`crate::input_blame`]).

use super::{convert, tract_message, RunState, TractModel};
use anemone_core::{Error, Result, Tensor};
use std::sync::Mutex;
use std::thread::ThreadId;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::runtime::{Runnable, State};

impl TractModel {
    /// Runs `values` on `runnable`, on this thread's reused state where the
    /// target keeps states, and converts the outputs.
    pub(super) fn run(
        &self,
        runnable: &dyn Runnable,
        values: TVec<TValue>,
        fail: &dyn Fn(&str, TractError) -> Error,
    ) -> Result<Vec<Tensor>> {
        // An output that is a shape (`Shape(x)` of a dynamic input) comes
        // out in the symbols of the input dimensions: their values are
        // this run's input shapes.
        let symbols = (0..runnable.output_count())
            .any(|i| {
                runnable
                    .output_fact(i)
                    .is_ok_and(|f| f.datum_type == DatumType::TDim)
            })
            .then(|| symbol_values(runnable, &values));
        let outputs = match &self.states {
            Some(states) => run_reusing_state(runnable, states, values, self.run_state),
            None => runnable.run(values),
        }
        .map_err(|e| fail("inference failed", e))?;
        outputs
            .iter()
            .map(|v| match &symbols {
                Some(symbols) if v.datum_type() == DatumType::TDim => {
                    let resolved = v
                        .to_plain_array_view::<TDim>()?
                        .iter()
                        .map(|d| d.eval_to_i64(symbols))
                        .collect::<TractResult<Vec<i64>>>()?;
                    let array = tract_ndarray::ArrayD::from_shape_vec(v.shape(), resolved)?;
                    convert::from_tract(&array.into_tensor())
                }
                _ => convert::from_tract(v),
            })
            .collect::<TractResult<Vec<_>>>()
            .map_err(|e| fail("cannot convert outputs", e))
    }

    /// An engine failure as an error: the backend's, blamed on the inputs
    /// where the message says so or one of them is `empty` (see
    /// [`crate::input_blame`]).
    pub(super) fn failure(&self, what: &str, e: TractError, empty: bool) -> Error {
        let message = format!("{what}: {}", tract_message(&e));
        let known = crate::input_blame::Known {
            invalid_input: false,
            empty_input: empty,
        };
        crate::input_blame::engine_error(
            self.backend,
            &self.metadata.inputs,
            known,
            message,
            Some(e.into()),
        )
    }
}

/// The values of the symbols in `runnable`'s input dimensions, from the
/// shapes of `values`.
fn symbol_values(runnable: &dyn Runnable, values: &[TValue]) -> SymbolValues {
    let mut symbols = SymbolValues::default();
    for (i, value) in values.iter().enumerate() {
        let Ok(fact) = runnable.input_fact(i) else {
            continue;
        };
        for (dim, &len) in fact.shape.iter().zip(value.shape()) {
            if let TDim::Sym(symbol) = dim {
                symbols.set(symbol, len as i64);
            }
        }
    }
    symbols
}

/// Runs `runnable` on the calling thread's own state from `states`, spawning
/// one on the thread's first call. A state whose run failed is dropped rather
/// than put back, so an error never leaves a half-run state behind.
fn run_reusing_state(
    runnable: &dyn Runnable,
    states: &Mutex<Vec<(ThreadId, Box<dyn State>)>>,
    values: TVec<TValue>,
    run_state: Option<RunState>,
) -> TractResult<TVec<TValue>> {
    let me = std::thread::current().id();
    let taken = {
        let mut states = states.lock().unwrap_or_else(|e| e.into_inner());
        let pos = states.iter().position(|(t, _)| *t == me);
        pos.map(|p| states.swap_remove(p).1)
    };
    let mut state = match taken {
        Some(state) => state,
        None => runnable.spawn()?,
    };
    let outputs = match run_state {
        Some(run) => run(&mut state, values)?,
        None => state.run(values)?,
    };
    states
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((me, state));
    Ok(outputs)
}
