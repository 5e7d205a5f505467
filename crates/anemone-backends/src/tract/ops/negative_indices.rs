//! `GatherND` with negative indices: ONNX counts them from the end of their
//! axis, tract 0.23.9 panicked on them (500 "collapse_axis: Index
//! 18446744073709551615"). Indices that are not constants are given their
//! axes' lengths where negative, `Where(i < 0, i + dims, i)`, with `dims`
//! the data's dimensions from `batch_dims` on, as many as the indices' last
//! axis holds (which the file must declare: else the node is left alone).

use tract_onnx::pb::tensor_shape_proto::dimension::Value as Dim;
use tract_onnx::pb::{type_proto, GraphProto, ModelProto, NodeProto, TensorProto, ValueInfoProto};

use super::attr;
use super::proto::{constant, ints, node, tensor_attr};

/// The length of the last axis of `value` as `graph` declares it.
fn last_axis(graph: &GraphProto, value: &str) -> Option<i64> {
    let declared = |i: &ValueInfoProto| i.name == value;
    let info = (graph.input.iter().chain(&graph.value_info)).find(|i| declared(i))?;
    let type_proto::Value::TensorType(t) = info.r#type.as_ref()?.value.as_ref()?;
    match t.shape.as_ref()?.dim.last()?.value.as_ref()? {
        Dim::DimValue(k) if *k > 0 => Some(*k),
        _ => None,
    }
}

/// Rewrites the fed indices of every `GatherND` of `proto`'s main graph
/// (module docs).
pub fn from_the_end(proto: &mut ModelProto) {
    let Some(graph) = proto.graph.as_mut() else {
        return;
    };
    let mut plans = Vec::new();
    for (n, g) in graph.node.iter().enumerate() {
        let (Some(data), Some(indices)) = (g.input.first(), g.input.get(1)) else {
            continue;
        };
        if g.op_type != "GatherND" || constant(graph, indices).is_some() {
            continue;
        }
        if let Some(k) = last_axis(graph, indices) {
            let batch = attr(g, "batch_dims").map_or(0, |a| a.i);
            plans.push((n, data.clone(), indices.clone(), batch, k));
        }
    }
    for (count, (n, data, indices, batch, k)) in plans.into_iter().enumerate().rev() {
        let name = |what: &str| format!("anemone_gather_nd_{count}_{what}");
        let constant = |what: &str, t: TensorProto| {
            node(
                &name(what),
                "Constant",
                vec![],
                vec![tensor_attr("value", t)],
            )
        };
        let added: Vec<NodeProto> = vec![
            node(&name("shape"), "Shape", vec![data], vec![]),
            constant("from", ints(&[batch])),
            constant("to", ints(&[batch + k])),
            node(
                &name("dims"),
                "Slice",
                vec![name("shape"), name("from"), name("to")],
                vec![],
            ),
            constant("zero", ints(&[0])),
            node(
                &name("negative"),
                "Less",
                vec![indices.clone(), name("zero")],
                vec![],
            ),
            node(
                &name("from_end"),
                "Add",
                vec![indices.clone(), name("dims")],
                vec![],
            ),
            node(
                &name("indices"),
                "Where",
                vec![name("negative"), name("from_end"), indices],
                vec![],
            ),
        ];
        graph.node[n].input[1] = name("indices");
        graph.node.splice(n..n, added);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tract::ops::proto::value;
    use tract_onnx::pb::tensor_proto::DataType as OnnxType;
    use tract_onnx::pb::OperatorSetIdProto;
    use tract_onnx::prelude::*;

    /// GatherND of x [2, 3, 4] (x = 100a + 10b + c) at `indices` [2, 2],
    /// rewritten and run by tract.
    fn gather(indices: [[i64; 2]; 2]) -> Vec<f32> {
        let mut proto = ModelProto {
            ir_version: 8,
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: 13,
            }],
            graph: Some(GraphProto {
                node: vec![NodeProto {
                    op_type: "GatherND".into(),
                    input: vec!["x".into(), "i".into()],
                    output: vec!["y".into()],
                    ..Default::default()
                }],
                input: vec![
                    value("x", OnnxType::Float, &[2, 3, 4]),
                    value("i", OnnxType::Int64, &[2, 2]),
                ],
                output: vec![ValueInfoProto {
                    name: "y".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        from_the_end(&mut proto);
        let model = super::super::onnx().model_for_proto_model(&proto).unwrap();
        let plan = model.into_optimized().unwrap().into_runnable().unwrap();
        let x = tract_ndarray::Array3::from_shape_fn((2, 3, 4), |(a, b, c)| {
            (100 * a + 10 * b + c) as f32
        });
        let i = tract_ndarray::arr2(&indices);
        let out = plan
            .run(tvec!(
                x.into_tensor().into_tvalue(),
                i.into_tensor().into_tvalue()
            ))
            .unwrap();
        out[0]
            .to_plain_array_view::<f32>()
            .unwrap()
            .iter()
            .copied()
            .collect()
    }

    #[test]
    fn negative_indices_count_from_the_end() {
        assert_eq!(
            gather([[0, 1], [1, 2]]),
            [10.0, 11.0, 12.0, 13.0, 120.0, 121.0, 122.0, 123.0]
        );
        // [-1, -1] is [1, 2]; [0, -3] is [0, 0].
        assert_eq!(
            gather([[-1, -1], [0, -3]]),
            [120.0, 121.0, 122.0, 123.0, 0.0, 1.0, 2.0, 3.0]
        );
    }
}
