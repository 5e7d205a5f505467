//! The element types of a graph's values, as far as the file tells them
//! without running tract's analysis: what the rewrites and refusals that
//! depend on a type (an `Equal` of BOOL tensors, a `Round` of DOUBLE ones)
//! need before tract parses the model. A value whose type the file does not
//! make plain is absent, and nothing is done about it.

use std::collections::HashMap;
use tract_onnx::pb::{tensor_proto::DataType as OnnxType, type_proto, GraphProto, ValueInfoProto};

use super::attr;

/// Value name → ONNX element type (`tensor_proto::DataType` as i32).
pub(crate) type ElemTypes = HashMap<String, i32>;

/// Operators whose outputs are all BOOL.
const BOOLEAN: &[&str] = &[
    "Equal",
    "Less",
    "Greater",
    "LessOrEqual",
    "GreaterOrEqual",
    "And",
    "Or",
    "Xor",
    "Not",
    "IsNaN",
    "IsInf",
];

/// Operators whose first output is INT64 whatever their inputs.
const INDICES: &[&str] = &["Shape", "Size", "ArgMax", "ArgMin", "NonZero"];

/// Operators whose outputs have their first input's type.
const SAME_AS_FIRST: &[&str] = &[
    "Identity",
    "Reshape",
    "Transpose",
    "Squeeze",
    "Unsqueeze",
    "Flatten",
    "Expand",
    "Concat",
    "Gather",
    "GatherElements",
    "GatherND",
    "Slice",
    "Tile",
    "Pad",
    "Split",
    "Neg",
    "Abs",
    "Relu",
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Mod",
    "Min",
    "Max",
    "Sum",
    "Mean",
    "Round",
    "Floor",
    "Ceil",
    "Clip",
    "ReduceSum",
    "ReduceMean",
    "ReduceMax",
    "ReduceMin",
    "ReduceProd",
    "ReduceSumSquare",
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "CumSum",
    "Sign",
    "Sqrt",
    "Exp",
    "Log",
    "Sigmoid",
    "Tanh",
    "Softmax",
    "LogSoftmax",
    "MatMul",
    "Gemm",
    "DepthToSpace",
    "SpaceToDepth",
    "ScatterElements",
    "ScatterND",
    "Trilu",
    "Compress",
    "ReverseSequence",
    "Range",
    "Dropout",
    "Pow",
    "Reciprocal",
];

/// The element type `info` declares, if it declares a tensor's.
fn declared(info: &ValueInfoProto) -> Option<i32> {
    match info.r#type.as_ref()?.value.as_ref()? {
        type_proto::Value::TensorType(t) if t.elem_type != 0 => Some(t.elem_type),
        _ => None,
    }
}

/// The element types of `graph`'s values that its declarations, its
/// constants and the operators above make plain, `outer` (an enclosing
/// graph's) included.
pub(crate) fn elem_types(graph: &GraphProto, outer: &ElemTypes) -> ElemTypes {
    let mut types = outer.clone();
    let declarations = graph
        .input
        .iter()
        .chain(&graph.value_info)
        .chain(&graph.output);
    for info in declarations {
        if let Some(t) = declared(info) {
            types.insert(info.name.clone(), t);
        }
    }
    for init in &graph.initializer {
        types.insert(init.name.clone(), init.data_type);
    }
    for node in &graph.node {
        let op = node.op_type.as_str();
        let input = |i: usize| node.input.get(i).and_then(|n| types.get(n)).copied();
        let out = if BOOLEAN.contains(&op) {
            Some(OnnxType::Bool as i32)
        } else if INDICES.contains(&op) {
            Some(OnnxType::Int64 as i32)
        } else if op == "Cast" {
            attr(node, "to").map(|a| a.i as i32)
        } else if op == "CastLike" || op == "Where" {
            input(1)
        } else if op == "Constant" {
            node.attribute.first().and_then(|a| match a.name.as_str() {
                "value" => a.t.as_ref().map(|t| t.data_type),
                "value_float" | "value_floats" => Some(OnnxType::Float as i32),
                "value_int" | "value_ints" => Some(OnnxType::Int64 as i32),
                "value_string" | "value_strings" => Some(OnnxType::String as i32),
                _ => None,
            })
        } else if op == "ConstantOfShape" {
            Some(
                attr(node, "value")
                    .and_then(|a| a.t.as_ref())
                    .map_or(OnnxType::Float as i32, |t| t.data_type),
            )
        } else if SAME_AS_FIRST.contains(&op) {
            input(0)
        } else {
            None
        };
        if let Some(t) = out {
            let outputs = match op {
                "Split" => &node.output[..],
                _ => &node.output[..node.output.len().min(1)],
            };
            for o in outputs.iter().filter(|o| !o.is_empty()) {
                types.entry(o.clone()).or_insert(t);
            }
        }
    }
    types
}
