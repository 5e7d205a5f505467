//! Load-time tuning (`backends = auto`, and the CPU engines of the default
//! order): the model's warm-up samples when it declares some, else a request
//! built from its declared inputs, timed on each candidate.

use crate::trim::{LoadPhase, LoadStep};
use anemone_core::{DataType, Dim, LoadedModel, ModelMetadata, Result, Tensor};
use std::time::{Duration, Instant};

/// Untimed runs before the timed ones.
const WARMUP_RUNS: usize = 2;
/// Timed runs at most...
const MAX_TIMED_RUNS: usize = 9;
/// ...and at most this long, after at least three runs.
const TIME_BUDGET: Duration = Duration::from_secs(2);

/// Inputs for a warm-up: dynamic dimensions are 1 (an undeclared shape is a
/// scalar); floating-point inputs hold
/// small pseudo-random values (never all zeros, which some engines run
/// faster than real data); integer inputs hold 0 (a safe index) and booleans
/// false; strings are empty.
pub fn warmup_inputs(meta: &ModelMetadata) -> Vec<Tensor> {
    let mut seed: u32 = 0x9e37_79b9;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        (seed as f32 / u32::MAX as f32) * 2.0 - 1.0
    };
    meta.inputs
        .iter()
        .map(|spec| {
            let shape: Vec<usize> = spec
                .shape
                .iter()
                .flatten()
                .map(|d| match d {
                    Dim::Fixed(n) => *n as usize,
                    _ => 1,
                })
                .collect();
            let count: usize = shape.iter().product();
            let tensor = match spec.dtype {
                DataType::F32 => {
                    Tensor::from_vec(shape, (0..count).map(|_| next()).collect::<Vec<f32>>())
                }
                DataType::F64 => Tensor::from_vec(
                    shape,
                    (0..count).map(|_| next() as f64).collect::<Vec<f64>>(),
                ),
                DataType::F16 => Tensor::from_vec(
                    shape,
                    (0..count)
                        .map(|_| half::f16::from_f32(next()))
                        .collect::<Vec<_>>(),
                ),
                DataType::Bytes => Tensor::from_strings(shape, vec![Vec::new(); count]),
                other => {
                    Tensor::from_bytes(other, shape, vec![0; count * other.size().unwrap_or(1)])
                }
            };
            tensor.unwrap_or_else(|_| Tensor::scalar(0u8))
        })
        .collect()
}

/// Runs the synthetic warm-up ([`warmup_inputs`]) and returns the median
/// time of the timed runs.
pub fn time_warmup(model: &dyn LoadedModel) -> Result<Duration> {
    time_runs(model, &[warmup_inputs(model.metadata())])
}

/// Times `model` on `sets` (each a full input list, in the model's input
/// order): a timed run infers every set once; returns the median run. Used
/// with a model's own warm-up samples, so engines are compared on the shapes
/// it declares.
pub fn time_runs(model: &dyn LoadedModel, sets: &[Vec<Tensor>]) -> Result<Duration> {
    let _serving = LoadPhase::start(LoadStep::Timing);
    let run = || -> Result<()> {
        for inputs in sets {
            model.infer(inputs)?;
        }
        Ok(())
    };
    for _ in 0..WARMUP_RUNS {
        run()?;
    }
    let started = Instant::now();
    let mut times = Vec::with_capacity(MAX_TIMED_RUNS);
    while times.len() < MAX_TIMED_RUNS && (times.len() < 3 || started.elapsed() < TIME_BUDGET) {
        let t = Instant::now();
        run()?;
        times.push(t.elapsed());
    }
    times.sort_unstable();
    Ok(times[times.len() / 2])
}

#[cfg(test)]
mod tests {
    use super::*;
    use anemone_core::{ModelFormat, TensorSpec};

    #[test]
    fn warmup_inputs_follow_the_declared_shapes_and_dtypes() {
        let meta = ModelMetadata::new(
            ModelFormat::Onnx,
            vec![
                TensorSpec::new(
                    "x",
                    DataType::F32,
                    vec![Dim::Named("batch".into()), Dim::Fixed(3)],
                ),
                TensorSpec::new("ids", DataType::I64, vec![Dim::Any]),
                TensorSpec::new("flag", DataType::Bool, vec![]),
            ],
            vec![],
        );
        let inputs = warmup_inputs(&meta);
        assert_eq!(inputs[0].shape(), &[1, 3]);
        let x = inputs[0].to_vec::<f32>().unwrap();
        assert!(x.iter().all(|v| (-1.0..1.0).contains(v)) && x.iter().any(|v| *v != 0.0));
        assert_eq!(
            (inputs[1].dtype(), inputs[1].shape()),
            (DataType::I64, &[1usize][..])
        );
        assert_eq!(inputs[1].to_vec::<i64>().unwrap(), vec![0]);
        assert_eq!(
            (inputs[2].dtype(), inputs[2].shape()),
            (DataType::Bool, &[][..])
        );
    }
}
