//! ONNX `Loop` (opsets 11 to 21, tensor values only), which tract's ONNX front
//! end has no builder for.
//!
//! Loop inputs are `M` (trip count) and `cond`, both optional, then the initial
//! values of the loop-carried tensors; outer-scope tensors the body reads come
//! after them as extra inputs, as tract does for `If`. The body takes
//! `(iteration_num, cond_in, carried...)` and yields `(cond_out, carried...,
//! scan...)`; the Loop yields the final carried values, then each scan output
//! stacked along a new axis 0. Like onnxruntime and the ONNX reference
//! implementation, and unlike the spec's pseudo-code, `cond_out` stops the
//! loop even when the Loop has no `cond` input.
//!
//! Each loop-carried value keeps the shape the body is typed with, except for
//! dims the body provably changes (an output dim differing from its input dim
//! by a constant, as a growing `Concat` does): those become fresh symbols.

use tract_onnx::model::{OnnxOpRegister, ParseResult, ParsingContext};
use tract_onnx::pb::{GraphProto, NodeProto};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::model::translator::Translate;
use tract_onnx::tract_core::ops::array::DynSlice;
use tract_onnx::tract_hir::internal::*;

/// Registers the `Loop` builder into tract's ONNX operator register.
pub fn register(reg: &mut OnnxOpRegister) {
    reg.insert("Loop", build);
}

fn build(
    ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let name = if !node.name.is_empty() {
        node.name.clone()
    } else {
        node.output.first().cloned().unwrap_or_default()
    };
    let present = |ix: usize| node.input.get(ix).is_some_and(|s| !s.is_empty());
    let (has_max_trip, has_cond) = (present(0), present(1));
    let carried = node.input.len().saturating_sub(2);

    let mut graph: GraphProto = node.get_attr::<&GraphProto>("body")?.clone();
    let formals: Vec<String> = graph.input.iter().map(|i| i.name.clone()).collect();
    ensure!(
        formals.len() == 2 + carried,
        "Loop `{name}`: the body takes {} inputs, expected 2 + {carried} loop-carried",
        formals.len()
    );
    // Body inputs are often untyped (ONNX function expansions) or declare shapes
    // the outer values contradict, so they are dropped from the body's
    // signature: the parser then makes each an untyped source, as it does for
    // outer-scope names, and the facts come from the Loop's own inputs. A body
    // output naming a body input directly would find no such outlet, so it is
    // routed through an Identity.
    graph.input.clear();
    // Shape hints inside the body name dims in its own terms, which may clash
    // with the outer model's symbols (anemone renames those): infer instead.
    graph.value_info.clear();
    for output in graph
        .output
        .iter_mut()
        .filter(|o| formals.contains(&o.name))
    {
        let renamed = format!("{}.loop_passthrough", output.name);
        graph.node.push(NodeProto {
            op_type: "Identity".into(),
            input: vec![output.name.clone()],
            output: vec![renamed.clone()],
            ..Default::default()
        });
        output.name = renamed;
    }
    let ParseResult {
        mut model,
        unresolved_inputs,
        outlets_by_name,
    } = ctx
        .parse_graph(&graph)
        .with_context(|| format!("Parsing the body of Loop `{name}`"))?;
    let closures: Vec<String> = unresolved_inputs
        .into_iter()
        .filter(|n| !formals.contains(n))
        .collect();
    let mut inputs = tvec!();
    for n in formals.iter().chain(closures.iter()) {
        inputs.push(match outlets_by_name.get(n) {
            Some(outlet) => *outlet,
            None => model.add_source(n.clone(), InferenceFact::default())?, // unused by the body
        });
    }
    model.set_input_outlets(&inputs)?;

    let body_outputs = model.output_outlets()?.len();
    ensure!(
        body_outputs > carried,
        "Loop `{name}`: the body yields {body_outputs} outputs, expected 1 + {carried} loop-carried + scans"
    );
    // Unnamed Loop outputs are not wired, so keep the body outputs they stand for.
    let outputs: Vec<usize> = (0..node.output.len())
        .filter(|&ix| !node.output[ix].is_empty())
        .collect();
    ensure!(
        outputs.iter().all(|&o| o + 1 < body_outputs),
        "Loop `{name}` has more outputs than its body"
    );
    let sig = Signature {
        name,
        has_max_trip,
        has_cond,
        carried,
        outputs,
    };
    Ok((
        Box::new(InferenceLoop {
            sig,
            raw_body: model.clone(),
            body: model,
        }),
        closures,
    ))
}

/// How a Loop node and its body are wired.
#[derive(Debug, Clone)]
struct Signature {
    name: String,
    has_max_trip: bool,
    has_cond: bool,
    carried: usize,
    /// For each Loop output, its body output, counted after `cond_out`.
    outputs: Vec<usize>,
}

impl Signature {
    /// The Loop input holding the first loop-carried value.
    fn first_carried(&self) -> usize {
        self.has_max_trip as usize + self.has_cond as usize
    }
}

/// `Loop` in the inference model.
#[derive(Debug, Clone)]
struct InferenceLoop {
    sig: Signature,
    /// The body as parsed, with blank input facts: typed afresh in `to_typed`.
    raw_body: InferenceModel,
    /// The body analysed along with the outer model, for the outer facts.
    body: InferenceModel,
}

impl PartialEq for InferenceLoop {
    fn eq(&self, _: &Self) -> bool {
        false
    }
}
impl Eq for InferenceLoop {}

impl Op for InferenceLoop {
    fn name(&self) -> StaticName {
        "Loop".into()
    }
    not_a_typed_op!();
}

impl EvalOp for InferenceLoop {
    not_out_of_plan!();
}

fn scalar<T: Datum>() -> InferenceFact {
    InferenceFact::dt_shape(T::datum_type(), ShapeFactoid::closed(tvec!()))
}

impl InferenceOp for InferenceLoop {
    fn infer_facts(
        &mut self,
        inputs: TVec<&InferenceFact>,
        outputs: TVec<&InferenceFact>,
        observed: TVec<&InferenceFact>,
    ) -> TractResult<(
        TVec<InferenceFact>,
        TVec<InferenceFact>,
        TVec<InferenceFact>,
    )> {
        let mut inputs: TVec<InferenceFact> = inputs.into_iter().cloned().collect();
        let mut outputs: TVec<InferenceFact> = outputs.into_iter().cloned().collect();
        let (first, k) = (self.sig.first_carried(), self.sig.carried);
        ensure!(
            inputs.len() == self.body.inputs.len() - 2 + first,
            "Loop `{}`: wrong input count",
            self.sig.name
        );
        if self.sig.has_cond {
            inputs[first - 1]
                .datum_type
                .unify_with(&bool::datum_type().into())?;
        }
        self.body.input_fact_mut(0)?.unify_with(&scalar::<i64>())?;
        self.body.input_fact_mut(1)?.unify_with(&scalar::<bool>())?;
        loop {
            let mut changed = false;
            // Carried values: type and shape only, their value changes every iteration.
            for c in 0..k {
                let fact = self.body.input_fact_mut(2 + c)?;
                changed |= fact
                    .datum_type
                    .unify_with_mut(&mut inputs[first + c].datum_type)?;
                changed |= fact.shape.unify_with_mut(&mut inputs[first + c].shape)?;
            }
            // Outer-scope values are the same on every iteration: value included.
            for (j, outer) in inputs[first + k..].iter_mut().enumerate() {
                changed |= self.body.input_fact_mut(2 + k + j)?.unify_with_mut(outer)?;
            }
            changed |= self
                .body
                .analyse(false)
                .with_context(|| format!("Analysing the body of Loop `{}`", self.sig.name))?;
            for (slot, &o) in self.sig.outputs.iter().enumerate() {
                let out = self.body.output_fact(1 + o)?;
                let fact = if o < k {
                    // The final value has the initial value's shape only if the body keeps it.
                    let init = self.body.input_fact(2 + o)?;
                    let shape = match init.shape.rank() {
                        _ if init.shape == out.shape && init.shape.concretize().is_some() => {
                            init.shape.clone()
                        }
                        GenericFactoid::Only(rank) => {
                            ShapeFactoid::closed(tvec![DimFact::default(); rank as usize])
                        }
                        _ => ShapeFactoid::default(),
                    };
                    InferenceFact {
                        datum_type: init.datum_type,
                        shape,
                        ..Default::default()
                    }
                } else {
                    // Scan outputs: the iteration count is known at run time only.
                    let dims = std::iter::once(DimFact::default())
                        .chain(out.shape.dims().cloned())
                        .collect();
                    let shape = if out.shape.is_open() {
                        ShapeFactoid::open(dims)
                    } else {
                        ShapeFactoid::closed(dims)
                    };
                    InferenceFact {
                        datum_type: out.datum_type,
                        shape,
                        ..Default::default()
                    }
                };
                changed |= outputs[slot].unify_with(&fact)?;
            }
            if !changed {
                return Ok((inputs, outputs, observed.into_iter().cloned().collect()));
            }
        }
    }

    fn nboutputs(&self) -> TractResult<usize> {
        Ok(self.sig.outputs.len())
    }

    fn to_typed(
        &self,
        _source: &InferenceModel,
        node: &InferenceNode,
        target: &mut TypedModel,
        mapping: &HashMap<OutletId, OutletId>,
    ) -> TractResult<TVec<OutletId>> {
        let inputs: TVec<OutletId> = node.inputs.iter().map(|o| mapping[o]).collect();
        let (first, k) = (self.sig.first_carried(), self.sig.carried);
        let mut facts: Vec<InferenceFact> = vec![scalar::<i64>(), scalar::<bool>()];
        for (ix, outer) in inputs.iter().enumerate().skip(first) {
            let fact = InferenceFact::from(target.outlet_fact(*outer)?);
            facts.push(if ix < first + k {
                fact.without_value()
            } else {
                fact
            });
        }
        let type_body = |facts: &[InferenceFact]| -> TractResult<TypedModel> {
            let mut body = self.raw_body.clone();
            for (ix, fact) in facts.iter().enumerate() {
                body.set_input_fact(ix, fact.clone())?;
            }
            revive_slice_symbols(body.into_typed()?.into_decluttered()?)
        };
        let context = || format!("Typing the body of Loop `{}`", self.sig.name);
        let mut body = type_body(&facts).with_context(context)?;
        let mut generalised = false;
        for c in 0..k {
            let (init, next) = (body.input_fact(2 + c)?, body.output_fact(1 + c)?);
            ensure!(
                init.datum_type == next.datum_type && init.rank() == next.rank(),
                "Loop `{}`: loop-carried value #{c} changes type or rank between iterations ({init:?} to {next:?}), \
                 which is not supported",
                self.sig.name
            );
            for (axis, (a, b)) in init.shape.iter().zip(next.shape.iter()).enumerate() {
                if (b.clone() - a).to_i64().is_ok_and(|d| d != 0) {
                    facts[2 + c]
                        .shape
                        .set_dim(axis, target.symbols.new_with_prefix("loop").to_dim());
                    generalised = true;
                }
            }
        }
        if generalised {
            body = type_body(&facts).with_context(context)?;
        }
        // A constant trip count is the iteration count if the condition stays true,
        // as in the common `Loop(M, true)` whose body passes `cond_in` through.
        let is_true = |fact: &TypedFact| {
            fact.konst
                .as_ref()
                .is_some_and(|k| k.cast_to_scalar::<bool>().ok() == Some(true))
        };
        let stays_true = (!self.sig.has_cond || is_true(target.outlet_fact(inputs[first - 1])?))
            && (body.outputs[0] == body.inputs[1] || is_true(body.output_fact(0)?));
        ensure!(
            self.sig.has_max_trip || !stays_true,
            "Loop `{}` has no trip count and its condition stays true: it would never end",
            self.sig.name
        );
        let konst_trip = if self.sig.has_max_trip && stays_true {
            target.outlet_fact(inputs[0])?.konst.clone()
        } else {
            None
        };
        let iters = match konst_trip {
            Some(m) => m.cast_to_scalar::<i64>()?.max(0).to_dim(),
            None => target.symbols.new_with_prefix("loop").to_dim(),
        };
        let op = TypedLoop {
            sig: self.sig.clone(),
            iters,
            plan: SimplePlan::new(body)?,
            optimized: false,
        };
        target.wire_node(&node.name, op, &inputs)
    }

    as_op!();
}

/// `Loop` in the typed model: runs a plan of the body until the trip count
/// or the condition stops it.
#[derive(Debug, Clone)]
pub struct TypedLoop {
    sig: Signature,
    /// Iteration count, the length of the scan outputs: a fresh symbol unless constant.
    iters: TDim,
    plan: Arc<TypedSimplePlan>,
    /// Whether the body is codegen'd already.
    optimized: bool,
}

impl PartialEq for TypedLoop {
    fn eq(&self, _: &Self) -> bool {
        false
    }
}
impl Eq for TypedLoop {}

impl TypedLoop {
    fn body(&self) -> &TypedModel {
        self.plan.model()
    }

    fn with_body(&self, body: TypedModel, optimized: bool) -> TractResult<TypedLoop> {
        Ok(TypedLoop {
            plan: SimplePlan::new(body)?,
            optimized,
            ..self.clone()
        })
    }
}

impl Op for TypedLoop {
    fn name(&self) -> StaticName {
        "Loop".into()
    }

    // The iteration count, and dims of growing loop-carried values, are known
    // only once the loop has run.
    fn mints_runtime_symbols(&self) -> bool {
        true
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "{} loop-carried, outputs {:?}, iterations {}",
            self.sig.carried, self.sig.outputs, self.iters
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for TypedLoop {
    op_out_of_plan!();

    fn eval(&self, ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let mut inputs = inputs.into_iter();
        let max_trip = if self.sig.has_max_trip {
            Some(inputs.next().unwrap().cast_to_scalar::<i64>()?)
        } else {
            None
        };
        let mut cond = if self.sig.has_cond {
            inputs.next().unwrap().cast_to_scalar::<bool>()?
        } else {
            true
        };
        let mut carried: TVec<TValue> = inputs.by_ref().take(self.sig.carried).collect();
        let closures: TVec<TValue> = inputs.collect();
        let scan_count = self.body().outputs.len() - 1 - self.sig.carried;
        let mut scans: Vec<Vec<Tensor>> = vec![vec![]; scan_count];
        let mut state = self.plan.spawn()?;
        let mut i = 0i64;
        while cond && max_trip.is_none_or(|m| i < m) {
            // cond_in is true whenever the body runs: a false one would have stopped the loop.
            let mut body_inputs = tvec!(tensor0(i).into_tvalue(), tensor0(true).into_tvalue());
            body_inputs.extend(carried.drain(..));
            body_inputs.extend(closures.iter().cloned());
            let mut outputs = state
                .run(body_inputs)
                .with_context(|| format!("Loop `{}`, iteration {i}", self.sig.name))?
                .into_iter();
            cond = outputs.next().unwrap().cast_to_scalar::<bool>()?;
            carried.extend(outputs.by_ref().take(self.sig.carried));
            for (scan, value) in scans.iter_mut().zip(outputs) {
                scan.push(value.into_tensor());
                scan.last_mut().unwrap().insert_axis(0)?;
            }
            i += 1;
        }
        let mut results = tvec!();
        for &o in &self.sig.outputs {
            if o < self.sig.carried {
                results.push(carried[o].clone());
            } else if scans[o - self.sig.carried].is_empty() {
                let fact = self.body().output_fact(1 + o)?;
                let shape = fact.shape.eval_to_usize(ctx.symbols).with_context(|| {
                    format!(
                        "Loop `{}` ran no iteration and its scan output #{o} has no known shape",
                        self.sig.name
                    )
                })?;
                let shape: TVec<usize> = std::iter::once(0).chain(shape.iter().copied()).collect();
                results.push(Tensor::zero_dt(fact.datum_type, &shape)?.into_tvalue());
            } else {
                let stacked =
                    Tensor::stack_tensors(0, &scans[o - self.sig.carried]).with_context(|| {
                        format!(
                            "Loop `{}`: scan output #{o} changes shape between iterations",
                            self.sig.name
                        )
                    })?;
                results.push(stacked.into_tvalue());
            }
        }
        Ok(results)
    }
}

impl TypedOp for TypedLoop {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let body = self.body();
        let first = self.sig.first_carried();
        ensure!(
            inputs.len() == first + body.inputs.len() - 2,
            "Loop `{}`: wrong input count",
            self.sig.name
        );
        for c in 0..self.sig.carried {
            let (outer, inner) = (inputs[first + c], body.input_fact(2 + c)?);
            ensure!(
                outer.datum_type == inner.datum_type && outer.rank() == inner.rank(),
                "Loop `{}`: initial value #{c} is {outer:?}, the body expects {inner:?}",
                self.sig.name
            );
        }
        let mut facts = tvec!();
        for &o in &self.sig.outputs {
            if o < self.sig.carried {
                facts.push(body.input_fact(2 + o)?.without_value());
            } else {
                let fact = body.output_fact(1 + o)?;
                let shape: TVec<TDim> = std::iter::once(self.iters.clone())
                    .chain(fact.shape.iter().cloned())
                    .collect();
                facts.push(fact.datum_type.fact(shape));
            }
        }
        Ok(facts)
    }

    fn codegen(
        &self,
        model: &TypedModel,
        node: &TypedNode,
    ) -> TractResult<Option<TypedModelPatch>> {
        if self.optimized {
            return Ok(None);
        }
        let body = self
            .body()
            .clone()
            .into_optimized()
            .with_context(|| format!("Optimizing Loop `{}`", self.sig.name))?;
        let op = self.with_body(revive_slice_symbols(body)?, true)?;
        Ok(Some(TypedModelPatch::replace_single_op(
            model,
            node,
            &node.inputs,
            op,
        )?))
    }

    fn set_symbols(
        &self,
        _source: &TypedModel,
        node: &TypedNode,
        target: &mut TypedModel,
        mapping: &HashMap<OutletId, OutletId>,
        subs: &HashMap<Symbol, TDim>,
    ) -> TractResult<TVec<OutletId>> {
        let inputs = node.inputs.iter().map(|o| mapping[o]).collect::<TVec<_>>();
        let mut op = self.with_body(self.body().set_symbols(subs)?, self.optimized)?;
        op.iters = self.iters.substitute_all(subs)?;
        target.wire_node(&node.name, op, &inputs)
    }

    fn nested_model_multipliers(&self, _inputs: &[&TypedFact]) -> Vec<(StaticName, TDim)> {
        vec![("loop".into(), self.iters.clone())]
    }

    as_op!();
}

/// Mints again, in the model's own scope, the `DynSlice` length symbols that
/// tract's `StridedSlice` declutter mints in its patch's scope, dead once the
/// patch is applied: a plan then fails to resolve them, or, as symbols compare
/// by index only, takes one for another of the model's symbols. Slicing by the
/// iteration number is common in Loop bodies; top-level models with a runtime
/// `Slice` need this after `into_decluttered` too.
pub fn revive_slice_symbols(body: TypedModel) -> TractResult<TypedModel> {
    let dead = |node: &TypedNode| {
        node.op_as::<DynSlice>()
            .is_some_and(|op| matches!(&op.len, TDim::Sym(s) if s.scope().is_none()))
    };
    if !body.nodes().iter().any(dead) {
        return Ok(body);
    }
    #[derive(Debug)]
    struct Revive;
    impl Translate<TypedFact, Box<dyn TypedOp>, TypedFact, Box<dyn TypedOp>> for Revive {
        fn translate_node(
            &self,
            _source: &TypedModel,
            node: &TypedNode,
            target: &mut TypedModel,
            mapping: &HashMap<OutletId, OutletId>,
        ) -> TractResult<TVec<OutletId>> {
            let inputs: TVec<OutletId> = node.inputs.iter().map(|o| mapping[o]).collect();
            match node.op_as::<DynSlice>() {
                Some(op) if matches!(&op.len, TDim::Sym(s) if s.scope().is_none()) => {
                    let op = DynSlice::new(
                        op.axis,
                        target.symbols.new_with_prefix("loop_slice").to_dim(),
                    );
                    target.wire_node(&node.name, op, &inputs)
                }
                _ => target.wire_node(&node.name, node.op.clone(), &inputs),
            }
        }
    }
    Revive.translate_model(&body)
}
