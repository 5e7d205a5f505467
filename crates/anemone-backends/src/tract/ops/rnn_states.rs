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
//! `Y_c` still fails. A bidirectional node is left without states (given
//! states, tract fails it above batch 1; without, it is planned per shape):
//! zero states written out as `ConstantOfShape`, as PyTorch exports them,
//! are dropped.

use tract_onnx::pb::{
    tensor_proto::DataType as OnnxType, AttributeProto, GraphProto, ModelProto, TensorProto,
};

use super::elem_types::{elem_types, ElemTypes};
use super::proto::{ints, node as new_node, tensor_attr};
use super::{attr, int_attr};
use std::collections::HashSet;

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

/// The values of `graph` that are zeros written out as `ConstantOfShape`
/// (of no `value`, or a zero one), or parts of such zeros: what PyTorch
/// exports for the initial states of an `nn.LSTM` called without them.
fn written_zeros(graph: &GraphProto) -> HashSet<String> {
    let zero = |t: &TensorProto| {
        t.float_data.iter().all(|&v| v == 0.0)
            && t.double_data.iter().all(|&v| v == 0.0)
            && t.int32_data.iter().all(|&v| v == 0)
            && t.raw_data.iter().all(|&b| b == 0)
    };
    let mut zeros = HashSet::new();
    for n in &graph.node {
        let written = n.op_type == "ConstantOfShape"
            && attr(n, "value").and_then(|a| a.t.as_ref()).is_none_or(zero);
        // Parts of zeros are zeros: a 2-layer LSTM's states are slices of one.
        let part = matches!(
            n.op_type.as_str(),
            "Slice"
                | "Gather"
                | "Split"
                | "Reshape"
                | "Squeeze"
                | "Unsqueeze"
                | "Identity"
                | "Expand"
                | "Transpose"
        ) && n.input.first().is_some_and(|i| zeros.contains(i));
        if written || part {
            zeros.extend(n.output.iter().filter(|o| !o.is_empty()).cloned());
        }
    }
    zeros
}

fn rewrite(graph: &mut GraphProto, outer: &ElemTypes, count: &mut usize) {
    let types = elem_types(graph, outer);
    let zeros = written_zeros(graph);
    let mut out = Vec::with_capacity(graph.node.len());
    for mut node in std::mem::take(&mut graph.node) {
        for a in &mut node.attribute {
            for g in a.g.iter_mut().chain(a.graphs.iter_mut()) {
                rewrite(g, &types, count);
            }
        }
        let slots = state_slots(&node.op_type);
        // A bidirectional node given its zero states as ConstantOfShape
        // answered 500 above batch 1 on tract ("Clashing resolution"),
        // which runs it right without them (planned per shape): they are
        // dropped, which ONNX reads as the same zeros.
        let bidirectional =
            attr(&node, "direction").is_some_and(|a| a.s.as_slice() == b"bidirectional");
        if bidirectional {
            for &i in slots {
                if node.input.get(i).is_some_and(|n| zeros.contains(n)) {
                    node.input[i] = String::new();
                }
            }
        }
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
        let constant = |what: &str, t: TensorProto| {
            new_node(
                &name(what),
                "Constant",
                vec![],
                vec![tensor_attr("value", t)],
            )
        };
        let op = |what: &str, op: &str, inputs: Vec<String>, attribute: Vec<AttributeProto>| {
            new_node(&name(what), op, inputs, attribute)
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
    use tract_onnx::pb::NodeProto;
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
        lstm_with(
            1,
            vec![],
            ["X", "W", "R", "B"].map(String::from).to_vec(),
            vec![],
        )
    }

    /// An LSTM of `directions` over `X` [4, batch, 5], after `before`, with
    /// `inputs`, asked for `Y`, `Y_h` and `Y_c`.
    fn lstm_with(
        directions: i64,
        before: Vec<NodeProto>,
        inputs: Vec<String>,
        more: Vec<TensorProto>,
    ) -> ModelProto {
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
            r#type: Some(TypeProto {
                value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                    elem_type: OnnxType::Float as i32,
                    shape: None,
                })),
                ..Default::default()
            }),
            ..Default::default()
        };
        ModelProto {
            ir_version: 8,
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: 14,
            }],
            graph: Some(GraphProto {
                node: before
                    .into_iter()
                    .chain([NodeProto {
                        op_type: "LSTM".into(),
                        input: inputs,
                        output: ["Y", "Y_h", "Y_c"].map(String::from).to_vec(),
                        attribute: vec![
                            int_attr("hidden_size", 3),
                            AttributeProto {
                                name: "direction".into(),
                                s: if directions == 2 {
                                    b"bidirectional".to_vec()
                                } else {
                                    b"forward".to_vec()
                                },
                                ..Default::default()
                            },
                        ],
                        ..Default::default()
                    }])
                    .collect(),
                input: vec![x],
                output: vec![output("Y"), output("Y_h"), output("Y_c")],
                initializer: [
                    weights("W", &[directions, 12, 5]),
                    weights("R", &[directions, 12, 3]),
                    weights("B", &[directions, 24]),
                ]
                .into_iter()
                .chain(more)
                .collect(),
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

    #[test]
    fn a_bidirectional_lstm_given_written_zeros_runs_at_every_batch() {
        // As PyTorch exports nn.LSTM(bidirectional=True) called without
        // states: zeros [2, batch, 3] from the input's shape, sliced.
        let node = |op: &str, inputs: &[&str], out: &str, attrs: Vec<AttributeProto>| NodeProto {
            op_type: op.into(),
            input: inputs.iter().map(|i| i.to_string()).collect(),
            output: vec![out.into()],
            attribute: attrs,
            ..Default::default()
        };
        let before = vec![
            node("Shape", &["X"], "shape", vec![]),
            node(
                "Gather",
                &["shape", "one"],
                "batch",
                vec![int_attr("axis", 0)],
            ),
            node(
                "Concat",
                &["two", "batch", "three"],
                "state_shape",
                vec![int_attr("axis", 0)],
            ),
            node("ConstantOfShape", &["state_shape"], "zeros", vec![]),
            node("Slice", &["zeros", "zero", "two", "zero"], "h0", vec![]),
        ];
        let consts =
            [("zero", 0), ("one", 1), ("two", 2), ("three", 3)].map(|(n, v)| TensorProto {
                name: n.into(),
                dims: vec![1],
                data_type: OnnxType::Int64 as i32,
                int64_data: vec![v],
                ..Default::default()
            });
        let inputs = ["X", "W", "R", "B", "", "h0", "h0"]
            .map(String::from)
            .to_vec();
        let proto = lstm_with(2, before, inputs, consts.to_vec());
        // Loaded as anemone loads a file (prepared, then planned); tract
        // planned it for a symbolic batch and failed every run above 1.
        let dir = crate::test_dir::TempDir::new("bilstm-zeros");
        let path = dir.join("model.onnx");
        std::fs::write(&path, prost::Message::encode_to_vec(&proto)).unwrap();
        let options = anemone_core::LoadOptions {
            threads: Some(1),
            ..Default::default()
        };
        let model =
            crate::tract::load(&crate::tract::CPU, &path, &options, Default::default()).unwrap();
        for batch in [1usize, 2, 3] {
            let x: Vec<f32> = (0..4 * batch * 5)
                .map(|i| (i % 7) as f32 / 7.0 - 0.4)
                .collect();
            let x = anemone_core::Tensor::from_vec(vec![4, batch, 5], x).unwrap();
            let out = anemone_core::LoadedModel::infer(&model, &[x]).unwrap();
            let (y, y_h) = (
                out[0].to_vec::<f32>().unwrap(),
                out[1].to_vec::<f32>().unwrap(),
            );
            assert_eq!(out[0].shape(), &[4, 2, batch, 3]);
            // Forward ends at the last step, backward at the first.
            let row = batch * 3;
            let ends = |step: usize, dir: usize| y[(step * 2 + dir) * row..][..row].to_vec();
            let h = |dir: usize| y_h[dir * row..][..row].to_vec();
            assert_eq!((ends(3, 0), ends(0, 1)), (h(0), h(1)), "batch {batch}");
        }
    }
}
