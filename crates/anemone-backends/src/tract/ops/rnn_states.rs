//! `RNN`, `GRU` and `LSTM` without initial states, given explicit zeros.
//!
//! tract 0.23.9 builds a missing initial state as a constant of the batch
//! size: with a dynamic batch that panics at load (the batch is a symbol),
//! and a model that asks for both `Y_h` and `Y_c` answered 500 "Scan:
//! Clashing resolution for expression" at any batch above 1. ONNX says a
//! missing initial state is zeros, so each missing one of a forward node is
//! given zeros of `[1, batch, hidden_size]` (`[batch, 1, hidden_size]` with
//! `layout = 1`) taken from the input's shape, which tract wires as a state
//! input and runs at every batch. A fixed batch above 1 with both `Y_h` and
//! `Y_c` still fails; a bidirectional node is left as it was (given states,
//! tract fails it at a dynamic batch).

use tract_onnx::pb::{
    attribute_proto::AttributeType, tensor_proto::DataType as OnnxType, AttributeProto, GraphProto,
    ModelProto, NodeProto, TensorProto,
};

use super::elem_types::{elem_types, ElemTypes};
use super::{attr, int_attr};

fn ints(values: &[i64]) -> TensorProto {
    TensorProto {
        dims: vec![values.len() as i64],
        data_type: OnnxType::Int64 as i32,
        int64_data: values.to_vec(),
        ..Default::default()
    }
}

fn tensor_attr(name: &str, t: TensorProto) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Tensor as i32,
        t: Some(t),
        ..Default::default()
    }
}

/// The inputs of `op` that are initial states: `initial_h` (5), and
/// `initial_c` (6) for an LSTM.
fn state_slots(op: &str) -> &'static [usize] {
    match op {
        "LSTM" => &[5, 6],
        "GRU" | "RNN" => &[5],
        _ => &[],
    }
}

/// Gives every recurrent node of `proto` (subgraphs included) zeros for
/// its missing initial states (module docs).
pub fn zero_initial_states(proto: &mut ModelProto) {
    let mut count = 0;
    if let Some(graph) = proto.graph.as_mut() {
        rewrite(graph, &ElemTypes::new(), &mut count);
    }
}

/// The bytes of one zero of the floating-point type `t`, if it is one.
fn zero_bytes(t: i32) -> Option<usize> {
    match t {
        t if t == OnnxType::Float as i32 => Some(4),
        t if t == OnnxType::Double as i32 => Some(8),
        t if t == OnnxType::Float16 as i32 || t == OnnxType::Bfloat16 as i32 => Some(2),
        _ => None,
    }
}

fn rewrite(graph: &mut GraphProto, outer: &ElemTypes, count: &mut usize) {
    let types = elem_types(graph, outer);
    let mut out = Vec::with_capacity(graph.node.len());
    for mut node in std::mem::take(&mut graph.node) {
        for a in &mut node.attribute {
            for g in a.g.iter_mut().chain(a.graphs.iter_mut()) {
                rewrite(g, &types, count);
            }
        }
        let slots = state_slots(&node.op_type);
        let missing = |i: usize| node.input.get(i).is_none_or(|n| n.is_empty());
        let hidden = attr(&node, "hidden_size").map(|a| a.i);
        let (Some(x), Some(hidden)) = (node.input.first().filter(|x| !x.is_empty()), hidden) else {
            out.push(node);
            continue;
        };
        // The zeros' type is X's, which the file must make plain.
        let x_type = types.get(x).copied().unwrap_or(OnnxType::Float as i32);
        let Some(width) = zero_bytes(x_type) else {
            out.push(node);
            continue;
        };
        // Forward only: tract runs a bidirectional node given state inputs
        // wrongly at a dynamic batch ("Clashing resolution" again), and
        // builds it per shape well enough without them.
        let forward = attr(&node, "direction").is_none_or(|a| a.s.as_slice() == b"forward");
        if !forward || !slots.iter().any(|&i| missing(i)) {
            out.push(node);
            continue;
        }
        *count += 1;
        let name = |what: &str| format!("anemone_rnn_{count}_{what}");
        let directions = 1;
        let batch_first = attr(&node, "layout").is_some_and(|a| a.i == 1);
        let constant = |what: &str, t: TensorProto| NodeProto {
            name: name(what),
            op_type: "Constant".into(),
            output: vec![name(what)],
            attribute: vec![tensor_attr("value", t)],
            ..Default::default()
        };
        let op =
            |what: &str, op: &str, inputs: Vec<String>, attribute: Vec<AttributeProto>| NodeProto {
                name: name(what),
                op_type: op.into(),
                input: inputs,
                output: vec![name(what)],
                attribute,
                ..Default::default()
            };
        // X is [seq, batch, input], or [batch, seq, input] with layout 1.
        let batch_axis = if batch_first { 0 } else { 1 };
        out.push(op("shape", "Shape", vec![x.clone()], vec![]));
        out.push(constant("batch_axis", ints(&[batch_axis])));
        out.push(op(
            "batch",
            "Gather",
            vec![name("shape"), name("batch_axis")],
            vec![int_attr("axis", 0)],
        ));
        out.push(constant("directions", ints(&[directions])));
        out.push(constant("hidden", ints(&[hidden])));
        let parts = match batch_first {
            true => vec![name("batch"), name("directions"), name("hidden")],
            false => vec![name("directions"), name("batch"), name("hidden")],
        };
        out.push(op(
            "state_shape",
            "Concat",
            parts,
            vec![int_attr("axis", 0)],
        ));
        let zero = TensorProto {
            dims: vec![1],
            data_type: x_type,
            raw_data: vec![0; width],
            ..Default::default()
        };
        out.push(op(
            "zeros",
            "ConstantOfShape",
            vec![name("state_shape")],
            vec![tensor_attr("value", zero)],
        ));
        let last = *slots.last().unwrap_or(&5);
        if node.input.len() <= last {
            node.input.resize(last + 1, String::new());
        }
        for &i in slots {
            if node.input[i].is_empty() {
                node.input[i] = name("zeros");
            }
        }
        out.push(node);
    }
    graph.node = out;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::pb::tensor_shape_proto::{dimension::Value as Dim, Dimension};
    use tract_onnx::pb::{
        type_proto, OperatorSetIdProto, TensorShapeProto, TypeProto, ValueInfoProto,
    };
    use tract_onnx::prelude::*;

    fn weights(name: &str, dims: &[i64]) -> TensorProto {
        let n: i64 = dims.iter().product();
        TensorProto {
            name: name.into(),
            dims: dims.to_vec(),
            data_type: OnnxType::Float as i32,
            float_data: (0..n).map(|i| ((i * 7 % 11) as f32 - 5.0) / 10.0).collect(),
            ..Default::default()
        }
    }

    /// A forward LSTM over `X` [seq, batch, 5] (batch a symbol) with no
    /// initial state, asked for `Y`, `Y_h` and `Y_c`.
    fn lstm() -> ModelProto {
        let dim = |d: Dim| Dimension {
            value: Some(d),
            ..Default::default()
        };
        let x = ValueInfoProto {
            name: "X".into(),
            r#type: Some(TypeProto {
                value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                    elem_type: OnnxType::Float as i32,
                    shape: Some(TensorShapeProto {
                        dim: vec![
                            dim(Dim::DimValue(4)),
                            dim(Dim::DimParam("batch".into())),
                            dim(Dim::DimValue(5)),
                        ],
                    }),
                })),
                ..Default::default()
            }),
            ..Default::default()
        };
        let output = |n: &str| ValueInfoProto {
            name: n.into(),
            ..Default::default()
        };
        ModelProto {
            ir_version: 8,
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: 14,
            }],
            graph: Some(GraphProto {
                node: vec![NodeProto {
                    op_type: "LSTM".into(),
                    input: ["X", "W", "R", "B"].map(String::from).to_vec(),
                    output: ["Y", "Y_h", "Y_c"].map(String::from).to_vec(),
                    attribute: vec![int_attr("hidden_size", 3)],
                    ..Default::default()
                }],
                input: vec![x],
                output: vec![output("Y"), output("Y_h"), output("Y_c")],
                initializer: vec![
                    weights("W", &[1, 12, 5]),
                    weights("R", &[1, 12, 3]),
                    weights("B", &[1, 24]),
                ],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn an_lstm_without_initial_states_runs_at_every_batch() {
        let mut proto = lstm();
        zero_initial_states(&mut proto);
        let lstm = proto.graph.as_ref().unwrap().node.last().unwrap().clone();
        assert_eq!(lstm.input.len(), 7);
        assert_eq!(lstm.input[5], lstm.input[6]);
        assert!(lstm.input[5].contains("zeros"));
        let model = super::super::onnx().model_for_proto_model(&proto).unwrap();
        let plan = model.into_optimized().unwrap().into_runnable().unwrap();
        for batch in [1usize, 2, 3] {
            let x = tract_ndarray::Array3::from_shape_fn((4, batch, 5), |(s, b, i)| {
                ((s * 5 + b * 3 + i) % 7) as f32 / 7.0 - 0.4
            });
            let out = plan.run(tvec!(x.into_tensor().into_tvalue())).unwrap();
            let y = out[0].to_plain_array_view::<f32>().unwrap();
            let y_h = out[1].to_plain_array_view::<f32>().unwrap();
            assert_eq!(y.shape(), &[4, 1, batch, 3]);
            assert_eq!(y_h.shape(), &[1, batch, 3]);
            assert_eq!(out[2].shape(), &[1, batch, 3]);
            // Y_h is the last step of Y (tract answered 500 above batch 1).
            let last: Vec<f32> = y
                .index_axis(tract_ndarray::Axis(0), 3)
                .iter()
                .copied()
                .collect();
            assert_eq!(
                last,
                y_h.iter().copied().collect::<Vec<_>>(),
                "batch {batch}"
            );
        }
    }
}
