//! Models tract cannot plan over symbolic shapes, planned per input shape
//! instead (`Plan::PerShape`): the key a plan is kept under, the plans made
//! and kept as requests come, and the load-time check that the model can
//! be planned at some shape at all.

use super::*;

/// What a shape-specialised plan is specialised on, per input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum PlanKey {
    /// The shape.
    Shape(Vec<usize>),
    /// The value of a 0-d integer or boolean input (a sample rate, a flag, a
    /// step count): such values often pick an `If` branch, and tract analyses
    /// both branches unless it knows which one runs.
    Value(Vec<u8>),
}

impl PlanKey {
    fn of(t: &Tensor) -> PlanKey {
        let scalar_flag = t.shape().is_empty() && !t.dtype().is_float() && t.as_bytes().is_some();
        match t.as_bytes() {
            Some(bytes) if scalar_flag => PlanKey::Value(bytes.to_vec()),
            _ => PlanKey::Shape(t.shape().to_vec()),
        }
    }
}

pub(super) fn has_dynamic_dims(spec: &anemone_core::TensorSpec) -> bool {
    spec.shape
        .as_ref()
        .is_none_or(|dims| dims.iter().any(|d| d.fixed().is_none()))
}

/// The sizes given to a model's dynamic dimensions to check, at load, that
/// tract can plan it at some shape: 1, then 16 and 512 for a model that
/// needs more along a dimension (a kernel, an audio window).
const SAMPLE_SIZES: [usize; 3] = [1, 16, 512];

/// The input facts of a sample: each input's type, and its shape with
/// each dynamic dimension `size` long; `None` when an input's rank is
/// unknown. Facts only: no tensor is made (four dynamic dimensions of 512
/// would be 256 GiB of float32).
fn sample_facts(
    specs: &[anemone_core::TensorSpec],
    size: usize,
) -> Option<Vec<(InferenceFact, Vec<usize>)>> {
    specs
        .iter()
        .map(|spec| {
            let shape: Vec<usize> = (spec.shape.as_ref()?.iter())
                .map(|d| d.fixed().map_or(size, |n| n as usize))
                .collect();
            let fact = InferenceFact::dt_shape(convert::datum_type(spec.dtype), &*shape);
            Some((fact, shape))
        })
        .collect()
}

impl Plan {
    /// For a per-shape plan: why tract cannot analyse the model at any of
    /// the sample shapes (`SAMPLE_SIZES`), naming the first, or `None` when
    /// it can at one of them, the inputs' ranks are not known, or a scalar
    /// integer input's value picks what runs. A model tract cannot plan at any shape (a float16 `Gemm`, a
    /// `Concat` tract reads wrongly) used to load and then fail every
    /// request, blamed on the input, so no other backend took it.
    pub(super) fn fails_at_sample_shapes(
        &self,
        specs: &[anemone_core::TensorSpec],
    ) -> Option<String> {
        // A scalar integer or boolean input (Silero VAD's sample rate) is
        // planned with its value, which no sample can guess.
        let valued = |s: &anemone_core::TensorSpec| {
            s.shape.as_ref().is_some_and(|d| d.is_empty()) && !s.dtype.is_float()
        };
        if specs.iter().any(valued) {
            return None;
        }
        let Plan::PerShape {
            model,
            rewrite,
            precision,
            ..
        } = self
        else {
            return None;
        };
        let mut first = None;
        for size in SAMPLE_SIZES {
            let sample = sample_facts(specs, size)?;
            // Analysed and typed only, not prepared nor kept: that is where
            // such models fail, and a plan kept for a shape no request may
            // send would hold its weights' packing (five real models grew
            // by 14 MiB when it was kept).
            let facts = sample.iter().map(|(fact, _)| fact.clone()).collect();
            match specialise_facts(model, facts).and_then(|m| rewrite(m, *precision)) {
                Ok(_) => return None,
                Err(e) => {
                    first.get_or_insert_with(|| {
                        let shapes: Vec<String> = sample
                            .iter()
                            .map(|(_, shape)| format!("{shape:?}"))
                            .collect();
                        format!(
                            "the input shape(s) {}: {}",
                            shapes.join(", "),
                            tract_message(&e)
                        )
                    });
                }
            }
        }
        first
    }

    /// The plan for these inputs: the static one, or one for their shapes.
    pub(super) fn for_inputs(&self, inputs: &[Tensor]) -> TractResult<Arc<dyn Runnable>> {
        let Plan::PerShape {
            model,
            runtime,
            rewrite,
            precision,
            options,
            cache,
            capacity,
        } = self
        else {
            unreachable!("only called for per-shape plans; this is a bug")
        };
        let key: Vec<PlanKey> = inputs.iter().map(PlanKey::of).collect();
        {
            let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(pos) = cache.iter().position(|(k, _)| *k == key) {
                let entry = cache
                    .remove(pos)
                    .expect("position is in range; this is a bug");
                let runnable = Arc::clone(&entry.1);
                cache.push_back(entry);
                return Ok(runnable);
            }
        }
        let specialised = specialise(model, inputs, &key)?;
        let runnable: Arc<dyn Runnable> =
            Arc::from(runtime.prepare_with_options(rewrite(specialised, *precision)?, options)?);
        let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
        while cache.len() >= *capacity {
            cache.pop_front();
        }
        cache.push_back((key, Arc::clone(&runnable)));
        Ok(runnable)
    }
}

/// `model` analysed and typed for these inputs' shapes (and the values of
/// their scalar flags): what a per-shape plan is prepared from.
fn specialise(
    model: &InferenceModel,
    inputs: &[Tensor],
    key: &[PlanKey],
) -> TractResult<TypedModel> {
    let facts = (inputs.iter().zip(key))
        .map(|(t, k)| {
            Ok(match k {
                PlanKey::Value(_) => InferenceFact::from(convert::to_tract(t)?),
                PlanKey::Shape(_) => {
                    InferenceFact::dt_shape(convert::datum_type(t.dtype()), t.shape())
                }
            })
        })
        .collect::<TractResult<Vec<_>>>()?;
    specialise_facts(model, facts)
}

/// `model` analysed and typed with these input facts.
fn specialise_facts(model: &InferenceModel, facts: Vec<InferenceFact>) -> TractResult<TypedModel> {
    let mut specialised = model.clone();
    for (i, fact) in facts.into_iter().enumerate() {
        specialised.set_input_fact(i, fact)?;
    }
    typed(specialised)
}
