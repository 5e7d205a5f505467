//! Ragged batching through `Manager` (`ModelSpec::ragged`, Triton's
//! `allow_ragged_batch`, `batch_input`, `batch_output`), with a double
//! whose engine takes `x` flat and `ends` (where each request's elements
//! end) and answers `y` = 2x and `last` = each request's last element: the
//! queue joins requests of different lengths into one call, and each gets
//! its own elements back in its own shape.

use super::*;
use crate::support::double::{Double, DoubleLoad};
use anemone_runtime::{BatchInput, BatchInputKind, BatchOutput, Ragged};

/// The calls the engine saw: its `x` and `ends`.
type Calls = Arc<Mutex<Vec<(Vec<f32>, Vec<i32>)>>>;

struct Flat(Calls);

struct FlatModel {
    meta: ModelMetadata,
    calls: Calls,
}

impl DoubleLoad for Flat {
    const NAME: &'static str = "flat";
    fn load(&self, _: &LoadOptions) -> anemone_core::Result<Box<dyn LoadedModel>> {
        let meta = ModelMetadata::new(
            ModelFormat::Onnx,
            vec![
                TensorSpec::new("x", DataType::F32, vec![Dim::Any]),
                TensorSpec::new("ends", DataType::I32, vec![Dim::Any]),
            ],
            vec![
                TensorSpec::new("y", DataType::F32, vec![Dim::Any]),
                TensorSpec::new("last", DataType::F32, vec![Dim::Any]),
            ],
        );
        Ok(Box::new(FlatModel {
            meta,
            calls: Arc::clone(&self.0),
        }))
    }
}

impl LoadedModel for FlatModel {
    fn metadata(&self) -> &ModelMetadata {
        &self.meta
    }
    fn backend(&self) -> &'static str {
        "flat"
    }
    fn memory_footprint(&self) -> u64 {
        0
    }
    fn infer(&self, inputs: &[Tensor]) -> anemone_core::Result<Vec<Tensor>> {
        assert_eq!(inputs[0].shape().len(), 1, "a ragged input is flat");
        let x = inputs[0].to_vec::<f32>().unwrap();
        let ends = inputs[1].to_vec::<i32>().unwrap();
        self.calls.lock().unwrap().push((x.clone(), ends.clone()));
        let last: Vec<f32> = ends.iter().map(|&e| x[e as usize - 1]).collect();
        let y = x.iter().map(|v| v * 2.0).collect();
        Ok(vec![
            Tensor::from_vec(vec![x.len()], y).unwrap(),
            Tensor::from_vec(vec![last.len()], last).unwrap(),
        ])
    }
}

fn ragged_spec() -> ModelSpec {
    let mut s = spec("flat").max_batch_size(8).batching(Batching {
        preferred_batch_sizes: vec![3],
        max_queue_delay: Duration::from_secs(30),
        ..Batching::default()
    });
    s.declared_inputs = Some(vec![TensorSpec::new(
        "x",
        DataType::F32,
        vec![Dim::Any, Dim::Any],
    )]);
    s.declared_output_shapes = Some(vec![TensorSpec::new(
        "y",
        DataType::F32,
        vec![Dim::Any, Dim::Any],
    )]);
    s.ragged = Ragged {
        inputs: vec!["x".into()],
        batch_inputs: vec![BatchInput {
            kind: BatchInputKind::AccumulatedElementCount,
            targets: vec!["ends".into()],
            dtype: DataType::I32,
            source: "x".into(),
        }],
        batch_outputs: vec![BatchOutput {
            targets: vec!["y".into()],
            source: "x".into(),
            dims: vec![-1, -1],
        }],
    };
    s
}

#[test]
fn requests_of_different_lengths_share_one_call_and_each_gets_its_own_elements() {
    let calls = Calls::default();
    let m = Manager::builder()
        .backend(Double(Flat(Arc::clone(&calls))))
        .workers(2)
        .build()
        .unwrap();
    m.load_model_blocking(ragged_spec()).unwrap();
    let meta = m.model("flat", None).unwrap().metadata().clone();
    let names: Vec<&str> = meta.inputs.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["x"], "requests never send a batch input");
    let mut handles = Vec::new();
    for (i, n) in [3usize, 4, 5].into_iter().enumerate() {
        let x: Vec<f32> = (0..n).map(|k| (10 * i + k) as f32).collect();
        let r =
            InferRequest::new("flat").input("x", Tensor::from_vec(vec![1, n], x.clone()).unwrap());
        let m2 = m.clone();
        handles.push((x, std::thread::spawn(move || m2.infer_blocking(r))));
        // In arrival order; the third makes the preferred batch and runs.
        if i < 2 {
            wait_queued(&m, "flat", i + 1);
        }
    }
    for (x, h) in handles {
        let answer = h.join().unwrap().unwrap();
        let y = answer.output("y").unwrap();
        assert_eq!(y.shape(), &[1, x.len()]);
        let doubled: Vec<f32> = x.iter().map(|v| v * 2.0).collect();
        assert_eq!(y.to_vec::<f32>().unwrap(), doubled);
        let last = answer.output("last").unwrap();
        assert_eq!(last.to_vec::<f32>().unwrap(), [*x.last().unwrap()]);
    }
    let calls = calls.lock().unwrap().clone();
    // One call: the 12 elements in arrival order, and where each request's end.
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].0.len(), 12);
    assert_eq!(calls[0].1, [3, 7, 12]);
}

#[test]
fn ragged_batching_with_a_sequence_or_a_reshape_is_refused_at_load() {
    let m = Manager::builder()
        .backend(Double(Flat(Calls::default())))
        .workers(1)
        .build()
        .unwrap();
    let mut sequence = ragged_spec();
    sequence.sequence = Some(anemone_runtime::SequenceSettings::default());
    let e = m.load_model_blocking(sequence).unwrap_err();
    assert!(e.to_string().contains("sequence_batching"), "{e}");
    let mut reshaped = ragged_spec();
    reshaped
        .reshapes
        .inputs
        .push(anemone_runtime::reshape::Reshape::new("x", vec![-1], vec![-1]).unwrap());
    let e = m.load_model_blocking(reshaped).unwrap_err();
    assert!(e.to_string().contains("has a reshape"), "{e}");
}
