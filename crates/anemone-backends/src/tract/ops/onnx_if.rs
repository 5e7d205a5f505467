//! `If` that analyses only the branch it will take when the condition is known.
//!
//! tract's `If` runs shape analysis on both branches. Models that switch
//! sub-networks on an input value (Silero VAD picks its 8 kHz or 16 kHz
//! network from the `sr` input) then fail: the branch not taken does not fit
//! the input shape. When anemone plans per input shape it also fixes the
//! values of scalar integer inputs, so the condition is known; this op then
//! analyses and builds only the branch taken, and otherwise behaves exactly
//! like tract's.

use tract_hir::internal::*;
use tract_onnx::model::{OnnxOpRegister, ParseResult, ParsingContext};
use tract_onnx::ops::logic::If;
use tract_onnx::pb::NodeProto;

/// Registers this `If` in place of tract's.
pub fn register(reg: &mut OnnxOpRegister) {
    reg.insert("If", build);
}

fn build(
    ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let (inner, unresolved) = tract_onnx::ops::logic::_if(ctx, node)?;
    let inner = inner
        .as_op()
        .downcast_ref::<If>()
        .context("tract's If builder returned another op")?
        .clone();
    let branch = |attr: &str| -> TractResult<Branch> {
        let ParseResult {
            model,
            unresolved_inputs,
            ..
        } = ctx.parse_graph(node.get_attr(attr)?)?;
        // Outer input 0 is the condition; the captured values follow, in `unresolved` order.
        let mapping = unresolved_inputs
            .iter()
            .map(|name| {
                unresolved
                    .iter()
                    .position(|u| u == name)
                    .map(|p| p + 1)
                    .context("unmapped capture")
            })
            .collect::<TractResult<_>>()?;
        Ok(Branch {
            body: model,
            mapping,
        })
    };
    let op = KnownIf {
        then_branch: branch("then_branch")?,
        else_branch: branch("else_branch")?,
        inner,
    };
    Ok((Box::new(op), unresolved))
}

#[derive(Debug, Clone)]
struct Branch {
    body: InferenceModel,
    /// For each body input, the index of the outer input feeding it.
    mapping: Vec<usize>,
}

#[derive(Debug, Clone)]
struct KnownIf {
    /// tract's op, used unchanged while the condition is unknown.
    inner: If,
    then_branch: Branch,
    else_branch: Branch,
}

// Like tract's `If`, two instances are never considered equal.
impl PartialEq for KnownIf {
    fn eq(&self, _: &Self) -> bool {
        false
    }
}
impl Eq for KnownIf {}

impl KnownIf {
    fn taken(&mut self, cond: bool) -> &mut Branch {
        if cond {
            &mut self.then_branch
        } else {
            &mut self.else_branch
        }
    }
}

fn known_condition(fact: &InferenceFact) -> TractResult<Option<bool>> {
    fact.value
        .concretize()
        .map(|v| v.cast_to_scalar::<bool>())
        .transpose()
}

impl Op for KnownIf {
    fn name(&self) -> StaticName {
        "If".into()
    }

    not_a_typed_op!();
}

impl EvalOp for KnownIf {
    op_out_of_plan!();

    fn eval(&self, ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        self.inner.eval(ctx, inputs)
    }
}

impl InferenceOp for KnownIf {
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
        let Some(cond) = known_condition(inputs[0])? else {
            return self.inner.infer_facts(inputs, outputs, observed);
        };
        let mut inputs: TVec<InferenceFact> = inputs.into_iter().cloned().collect();
        let mut outputs: TVec<InferenceFact> = outputs.into_iter().cloned().collect();
        let branch = self.taken(cond);
        loop {
            let mut changed = false;
            for (body_ix, &outer_ix) in branch.mapping.iter().enumerate() {
                changed |= branch
                    .body
                    .input_fact_mut(body_ix)?
                    .unify_with_mut(&mut inputs[outer_ix])?;
            }
            for (ix, output) in outputs.iter_mut().enumerate() {
                changed |= branch.body.output_fact_mut(ix)?.unify_with_mut(output)?;
            }
            changed |= branch.body.analyse(false)?;
            if !changed {
                return Ok((inputs, outputs, observed.into_iter().cloned().collect()));
            }
        }
    }

    fn nboutputs(&self) -> TractResult<usize> {
        self.inner.nboutputs()
    }

    fn to_typed(
        &self,
        source: &InferenceModel,
        node: &InferenceNode,
        target: &mut TypedModel,
        mapping: &HashMap<OutletId, OutletId>,
    ) -> TractResult<TVec<OutletId>> {
        let Some(cond) = known_condition(source.outlet_fact(node.inputs[0])?)? else {
            return self.inner.to_typed(source, node, target, mapping);
        };
        let branch = if cond {
            &self.then_branch
        } else {
            &self.else_branch
        };
        let body = branch.body.clone().into_typed()?;
        let inputs: TVec<_> = node.inputs.iter().map(|o| mapping[o]).collect();
        // Both arms are the branch taken: the other one may not even type-check.
        let op = tract_core::ops::logic::IfThenElse {
            then_body: body.clone(),
            else_body: body,
            then_input_mapping: branch.mapping.clone(),
            else_input_mapping: branch.mapping.clone(),
        };
        target.wire_node(&node.name, op, &inputs)
    }

    as_op!();
}
