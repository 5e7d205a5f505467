//! `Cast(to=INT64)` on data, computed in real 64-bit integers.
//!
//! tract's ONNX front end turns every `Cast` to INT64 into a cast to its
//! symbolic-dimension type (`TDim`), so that shape arithmetic (`Shape` →
//! `Cast` → `Reshape`) stays symbolic. On *data* (token ids, offsets) that
//! silently truncates values beyond 32 bits: 2^40 + 8 came out as 8 in
//! tract 0.23.9. anemone marks the casts whose input derives from model
//! inputs (not from `Shape`/`Size` or constants) and builds them as plain
//! 64-bit casts; shape casts keep tract's behaviour.

use std::collections::HashSet;
use tract_hir::internal::*;
use tract_onnx::model::OnnxOpRegister;
use tract_onnx::pb::tensor_proto::DataType as OnnxType;
use tract_onnx::pb::ModelProto;

/// The op type marked casts are renamed to before parsing.
const DATA_CAST: &str = "AnemoneDataCastInt64";

/// Registers the builder for marked casts.
pub fn register(reg: &mut OnnxOpRegister) {
    reg.insert(DATA_CAST, |_, _| Ok((expand(DataCastI64), vec![])));
}

/// Renames `Cast(to=INT64)` nodes of the top-level graph whose input derives
/// from a model input, so [`register`]'s builder handles them.
pub fn mark_data_casts(proto: &mut ModelProto) {
    let Some(graph) = proto.graph.as_mut() else {
        return;
    };
    let initializers: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let mut data: HashSet<String> = graph
        .input
        .iter()
        .map(|i| i.name.clone())
        .filter(|n| !initializers.contains(n.as_str()))
        .collect();
    for node in graph.node.iter_mut() {
        let from_data = node.input.iter().any(|i| data.contains(i));
        if !from_data || matches!(node.op_type.as_str(), "Shape" | "Size") {
            continue;
        }
        let to_int64 = node
            .attribute
            .iter()
            .any(|a| a.name == "to" && a.i == OnnxType::Int64 as i64);
        if node.op_type == "Cast" && node.domain.is_empty() && to_int64 {
            node.op_type = DATA_CAST.to_string();
        }
        data.extend(node.output.iter().cloned());
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq)]
struct DataCastI64;

impl Expansion for DataCastI64 {
    fn name(&self) -> StaticName {
        "onnx.Cast(i64)".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1)?;
        check_output_arity(outputs, 1)?;
        s.equals(&outputs[0].datum_type, i64::datum_type())?;
        s.equals(&outputs[0].rank, &inputs[0].rank)?;
        s.equals(&outputs[0].shape, &inputs[0].shape)?;
        Ok(())
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        model.wire_node(
            prefix,
            tract_core::ops::cast::cast(i64::datum_type()),
            &[inputs[0]],
        )
    }
}
