//! Triton's ragged batching: inputs whose shapes may differ between the
//! requests of one batch (`allow_ragged_batch`), given to the model as one
//! flat tensor of every request's elements, with tensors the server makes
//! to describe the batch (`batch_input`), and outputs cut back by an
//! input's shape (`batch_output`).
//!
//! As Triton's ONNX Runtime backend does (`onnxruntime.cc`, and the backend
//! library's `BackendInputCollector` and `BackendOutputResponder`): a ragged
//! input is the concatenation of the requests' tensors, flattened, so the
//! model takes it with shape `[-1]`; the other inputs are stacked along the
//! batch dimension as in any batch. A batch input's values come from its
//! source input's shape in each request. An engine that answers each request
//! on its own (a Python model) gets each request's own tensors: ragged
//! inputs only let requests of different shapes share its `execute`.

use anemone_core::{DataType, Error, ModelMetadata, Result, Tensor, TensorSpec};

/// A model's ragged inputs, batch inputs and batch outputs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ragged {
    /// Inputs whose shapes may differ within a batch (Triton's
    /// `allow_ragged_batch`). Their shape in requests is the declared one.
    pub inputs: Vec<String>,
    /// Inputs of the model the server makes for each batch (Triton's
    /// `batch_input`); requests do not send them.
    pub batch_inputs: Vec<BatchInput>,
    /// Outputs whose batch is cut back by an input's shape (Triton's
    /// `batch_output`).
    pub batch_outputs: Vec<BatchOutput>,
}

/// What a batch input holds, from its source input's shape in each request
/// (Triton's `BatchInput.Kind`). "Element count" counts every element of the
/// request's tensor, its batch rows included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchInputKind {
    /// `[requests]`: each request's element count.
    ElementCount,
    /// `[requests]`: the element counts added up, request by request (where
    /// each request's elements end in the flat ragged input).
    AccumulatedElementCount,
    /// `[requests + 1]`: 0, then the accumulated counts (where each starts).
    AccumulatedElementCountWithZero,
    /// `[largest element count]`: the shape is the value (zeros inside).
    MaxElementCountAsShape,
    /// `[rows, rank - 1]`: each batch row's shape, batch dimension left out.
    ItemShape,
    /// `[rows × (rank - 1)]`: the same, flattened.
    ItemShapeFlatten,
}

/// One `batch_input` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchInput {
    /// What it holds.
    pub kind: BatchInputKind,
    /// The model inputs given it (Triton's `target_name`).
    pub targets: Vec<String>,
    /// `F32` or `I32`.
    pub dtype: DataType,
    /// The request input whose shapes it describes.
    pub source: String,
}

/// One `batch_output` entry (Triton's `BATCH_SCATTER_WITH_INPUT_SHAPE`):
/// each request gets, in order, as many of the output's elements as its
/// shape holds, that shape being `dims` with each -1 taken from the source
/// input's shape in the request at the same place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchOutput {
    /// The outputs cut this way.
    pub targets: Vec<String>,
    /// The request input whose shape they take.
    pub source: String,
    /// The output's shape, batch dimension included (-1: from the source).
    pub dims: Vec<i64>,
}

impl Ragged {
    /// Whether `name` is an input the server makes (a batch input).
    pub fn is_supplied(&self, name: &str) -> bool {
        (self.batch_inputs.iter()).any(|b| b.targets.iter().any(|t| t == name))
    }

    /// Whether requests may differ in the shape of input `name`.
    pub fn is_ragged(&self, name: &str) -> bool {
        self.inputs.iter().any(|i| i == name)
    }

    /// Whether output `name` is cut back by an input's shape.
    fn is_cut(&self, name: &str) -> bool {
        (self.batch_outputs.iter()).any(|b| b.targets.iter().any(|t| t == name))
    }

    /// `meta` as requests see it: without the batch inputs, and with the
    /// declared shapes (`inputs`, `outputs`: the spec's) of the ragged
    /// inputs and batch outputs, which are flat in the model.
    pub(crate) fn served(
        &self,
        mut meta: ModelMetadata,
        inputs: Option<&[TensorSpec]>,
        outputs: Option<&[TensorSpec]>,
    ) -> ModelMetadata {
        meta.inputs.retain(|i| !self.is_supplied(&i.name));
        declare(&mut meta.inputs, inputs, |name| self.is_ragged(name));
        declare(&mut meta.outputs, outputs, |name| self.is_cut(name));
        meta
    }

    /// Whether an engine that stacks requests needs [`Ragged::assemble`]
    /// and [`Ragged::scatter`] (ragged or batch inputs, or batch outputs).
    pub(crate) fn reshapes_batches(&self) -> bool {
        !(self.inputs.is_empty() && self.batch_inputs.is_empty() && self.batch_outputs.is_empty())
    }

    /// The engine's inputs (in `engine`'s order) for these requests, each
    /// holding its inputs in `served`'s order: ragged inputs flattened and
    /// joined, others stacked along the batch dimension, batch inputs made.
    pub(crate) fn assemble(
        &self,
        engine: &ModelMetadata,
        served: &ModelMetadata,
        requests: &[&[Tensor]],
    ) -> Result<Vec<Tensor>> {
        let position = |name: &str| served.inputs.iter().position(|s| s.name == name);
        let mut next = 0;
        let mut inputs = Vec::with_capacity(engine.inputs.len());
        for spec in &engine.inputs {
            let made = self
                .batch_inputs
                .iter()
                .find(|b| b.targets.contains(&spec.name));
            if let Some(batch_input) = made {
                let source =
                    position(&batch_input.source).ok_or_else(|| lost(&batch_input.source))?;
                let shapes: Vec<&[usize]> = requests.iter().map(|r| r[source].shape()).collect();
                inputs.push(batch_input.make(&shapes)?);
                continue;
            }
            let at = next;
            next += 1;
            let parts: Vec<&Tensor> = requests.iter().map(|r| &r[at]).collect();
            let joined = match self.is_ragged(&spec.name) {
                true => {
                    let flat: Vec<Tensor> = (parts.iter())
                        .map(|t| (*t).clone().reshaped(vec![t.len()]))
                        .collect::<std::result::Result<_, _>>()
                        .map_err(shaped)?;
                    Tensor::concat_batch(&flat.iter().collect::<Vec<_>>()).map_err(shaped)?
                }
                false if parts.len() == 1 => parts[0].clone(),
                false => Tensor::concat_batch(&parts).map_err(shaped)?,
            };
            inputs.push(joined);
        }
        Ok(inputs)
    }

    /// Each request's outputs (in `served`'s order) from the engine's
    /// outputs for the batch: a batch output cut by its source input's
    /// shape in each request, the others split by `rows`.
    pub(crate) fn scatter(
        &self,
        served: &ModelMetadata,
        outputs: Vec<Tensor>,
        requests: &[&[Tensor]],
        rows: &[usize],
    ) -> Result<Vec<Vec<Tensor>>> {
        let mut answers: Vec<Vec<Tensor>> = requests.iter().map(|_| Vec::new()).collect();
        for (spec, output) in served.outputs.iter().zip(outputs) {
            let parts = match self
                .batch_outputs
                .iter()
                .find(|b| b.targets.contains(&spec.name))
            {
                Some(batch_output) => {
                    let source = (served.inputs.iter())
                        .position(|s| s.name == batch_output.source)
                        .ok_or_else(|| lost(&batch_output.source))?;
                    batch_output.cut(&spec.name, output, requests, source)?
                }
                None if requests.len() == 1 => vec![output],
                None => output.split_batch(rows).map_err(shaped)?,
            };
            for (answer, part) in answers.iter_mut().zip(parts) {
                answer.push(part);
            }
        }
        Ok(answers)
    }
}

impl BatchInput {
    /// The tensor for requests whose source inputs have these shapes.
    fn make(&self, shapes: &[&[usize]]) -> Result<Tensor> {
        let count = |shape: &[usize]| shape.iter().product::<usize>();
        let rows_of = |shape: &[usize]| shape.first().copied().unwrap_or(1);
        let (shape, values): (Vec<usize>, Vec<usize>) = match self.kind {
            BatchInputKind::ElementCount => (
                vec![shapes.len()],
                shapes.iter().map(|s| count(s)).collect(),
            ),
            BatchInputKind::AccumulatedElementCount => (
                vec![shapes.len()],
                accumulated(shapes.iter().map(|s| count(s))),
            ),
            BatchInputKind::AccumulatedElementCountWithZero => {
                let mut values = vec![0];
                values.extend(accumulated(shapes.iter().map(|s| count(s))));
                (vec![values.len()], values)
            }
            BatchInputKind::MaxElementCountAsShape => {
                let max = shapes.iter().map(|s| count(s)).max().unwrap_or(0);
                (vec![max], vec![0; max])
            }
            BatchInputKind::ItemShape | BatchInputKind::ItemShapeFlatten => {
                let rank = shapes.first().map_or(1, |s| s.len()).max(1) - 1;
                let mut values = Vec::new();
                for s in shapes {
                    for _ in 0..rows_of(s) {
                        values.extend(s.iter().skip(1).copied());
                    }
                }
                let shape = match self.kind {
                    BatchInputKind::ItemShape => {
                        vec![values.len().checked_div(rank).unwrap_or(0), rank]
                    }
                    _ => vec![values.len()],
                };
                (shape, values)
            }
        };
        let made = match self.dtype {
            DataType::F32 => {
                Tensor::from_vec(shape, values.into_iter().map(|v| v as f32).collect())
            }
            _ => Tensor::from_vec(
                shape,
                (values.into_iter())
                    .map(|v| i32::try_from(v).unwrap_or(i32::MAX))
                    .collect::<Vec<i32>>(),
            ),
        };
        made.map_err(shaped)
    }
}

impl BatchOutput {
    /// `output` cut into each request's part, shaped as its source input.
    fn cut(
        &self,
        name: &str,
        output: Tensor,
        requests: &[&[Tensor]],
        source: usize,
    ) -> Result<Vec<Tensor>> {
        let shapes: Vec<Vec<usize>> = (requests.iter())
            .map(|r| {
                let given = r[source].shape();
                (self.dims.iter().enumerate())
                    .map(|(i, &d)| match usize::try_from(d) {
                        Ok(d) => d,
                        Err(_) => given.get(i).copied().unwrap_or(1),
                    })
                    .collect()
            })
            .collect();
        let counts: Vec<usize> = shapes.iter().map(|s| s.iter().product()).collect();
        let total: usize = counts.iter().sum();
        if output.len() != total {
            return Err(Error::Backend {
                backend: "ragged batch".into(),
                message: format!(
                    "batch output '{name}' holds {} elements, but the requests' '{}' shapes need {total}; \
                     the model must answer as many elements as its batch_output's source input gives",
                    output.len(),
                    self.source
                ),
                retryable: false,
                source: None,
            });
        }
        let flat = output.reshaped(vec![total]).map_err(shaped)?;
        let parts = flat.split_batch(&counts).map_err(shaped)?;
        (parts.into_iter().zip(shapes))
            .map(|(part, shape)| part.reshaped(shape).map_err(shaped))
            .collect()
    }
}

/// Refuses what ragged batching cannot be joined with on a model file (a
/// Python model only lets ragged requests share an `execute`): a sequence
/// model, whose server-given inputs take the places batch inputs would,
/// and a reshape of a ragged input, which is flat in the model.
pub(crate) fn check(spec: &crate::ModelSpec, format: anemone_core::ModelFormat) -> Result<()> {
    let ragged = &spec.ragged;
    if format == anemone_core::ModelFormat::Python || !ragged.reshapes_batches() {
        return Ok(());
    }
    let refuse = |why: String| Err(Error::Config(format!("model '{}': {why}", spec.name)));
    if spec.sequence.is_some() {
        return refuse(
            "ragged batching (allow_ragged_batch, batch_input, batch_output) with sequence_batching is \
             not supported by anemone yet on a model file; pad the sequence's inputs to one shape, or \
             serve it without sequence_batching"
                .into(),
        );
    }
    if let Some(r) = spec
        .reshapes
        .inputs
        .iter()
        .find(|r| ragged.is_ragged(&r.name))
    {
        return refuse(format!(
            "input '{}' is allow_ragged_batch and has a reshape; a ragged input is flat in the model \
             ([-1]), so remove the reshape",
            r.name
        ));
    }
    Ok(())
}

/// Gives each of `specs` that is `chosen` its shape in `declared`.
fn declare(
    specs: &mut [TensorSpec],
    declared: Option<&[TensorSpec]>,
    chosen: impl Fn(&str) -> bool,
) {
    for spec in specs.iter_mut().filter(|s| chosen(&s.name)) {
        let shape = (declared.into_iter().flatten())
            .find(|d| d.name == spec.name)
            .and_then(|d| d.shape.clone());
        if shape.is_some() {
            spec.shape = shape;
        }
    }
}

fn accumulated(counts: impl Iterator<Item = usize>) -> Vec<usize> {
    counts
        .scan(0, |sum, n| {
            *sum += n;
            Some(*sum)
        })
        .collect()
}

/// A tensor that would not join, split or take a shape: the model's
/// outputs do not match the batch it was given.
fn shaped(e: anemone_core::TensorError) -> Error {
    Error::Backend {
        backend: "ragged batch".into(),
        message: format!("the batch's tensors do not fit: {e}"),
        retryable: false,
        source: None,
    }
}

fn lost(name: &str) -> Error {
    Error::Internal(format!("ragged batching lost the source input '{name}'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn make(kind: BatchInputKind, dtype: DataType, shapes: &[&[usize]]) -> Tensor {
        let b = BatchInput {
            kind,
            targets: vec!["B".into()],
            dtype,
            source: "X".into(),
        };
        b.make(shapes).unwrap()
    }

    #[test]
    fn batch_inputs_hold_what_tritons_collector_writes() {
        // Triton's ragged batching guide: requests [1, 3], [1, 4], [1, 5].
        let shapes: &[&[usize]] = &[&[1, 3], &[1, 4], &[1, 5]];
        let f = |kind| make(kind, DataType::F32, shapes);
        assert_eq!(
            f(BatchInputKind::AccumulatedElementCount)
                .to_vec::<f32>()
                .unwrap(),
            [3.0, 7.0, 12.0]
        );
        let i = |kind| make(kind, DataType::I32, shapes);
        assert_eq!(
            i(BatchInputKind::ElementCount).to_vec::<i32>().unwrap(),
            [3, 4, 5]
        );
        let with_zero = i(BatchInputKind::AccumulatedElementCountWithZero);
        assert_eq!(with_zero.to_vec::<i32>().unwrap(), [0, 3, 7, 12]);
        assert_eq!(i(BatchInputKind::MaxElementCountAsShape).shape(), &[5]);
        // Two rows in the second request: each row's shape, batch left out.
        let rows: &[&[usize]] = &[&[1, 3, 2], &[2, 4, 2]];
        let item = make(BatchInputKind::ItemShape, DataType::I32, rows);
        assert_eq!(item.shape(), &[3, 2]);
        assert_eq!(item.to_vec::<i32>().unwrap(), [3, 2, 4, 2, 4, 2]);
        let flat = make(BatchInputKind::ItemShapeFlatten, DataType::F32, rows);
        assert_eq!(flat.shape(), &[6]);
    }

    #[test]
    fn a_batch_output_is_cut_by_each_requests_source_shape() {
        let out = BatchOutput {
            targets: vec!["Y".into()],
            source: "X".into(),
            dims: vec![-1, -1],
        };
        let x1 = Tensor::from_vec(vec![1, 2], vec![0f32; 2]).unwrap();
        let x2 = Tensor::from_vec(vec![1, 3], vec![0f32; 3]).unwrap();
        let y = Tensor::from_vec(vec![5], vec![1f32, 2.0, 3.0, 4.0, 5.0]).unwrap();
        let parts = out
            .cut("Y", y.clone(), &[std::slice::from_ref(&x1), &[x2]], 0)
            .unwrap();
        assert_eq!(parts[0].shape(), &[1, 2]);
        assert_eq!(parts[1].to_vec::<f32>().unwrap(), [3.0, 4.0, 5.0]);
        let e = out.cut("Y", y, &[&[x1]], 0).unwrap_err();
        assert!(e.to_string().contains("holds 5 elements"), "{e}");
    }
}
