//! `TreeEnsembleClassifier`'s label output, computed from its scores.
//!
//! tract 0.23.9 picks the label as the first class of the raw scores'
//! maximum, before it lays out a two-class model's single score column as
//! `[1 - p, p]`: every two-class model exported by skl2onnx, LightGBM or
//! XGBoost (one class id in the leaves) got label 0 or the two labels
//! swapped, with the right probabilities. And its label lookup builds a
//! default value string labels cannot have, so a model with
//! `classlabels_strings` failed every request.
//!
//! anemone rewrites each such node before tract parses it: the node's label
//! output goes to an unused name, and the label becomes
//! `Gather(labels, ArgMax(scores, axis 1))`, as ONNX Runtime picks it (the
//! first class of the largest score, which for two classes is the positive
//! one when `p > 0.5`, or `s > 0` before `LOGISTIC`).
//!
//! One layout stays refused (`unsupported_tree_layout`): two classes,
//! one score column, `post_transform` `NONE` and a negative leaf weight,
//! where ONNX Runtime's scores are `[-s, s]` and tract's `[1 - s, s]`.

use tract_onnx::pb::{
    attribute_proto::AttributeType, tensor_proto::DataType as OnnxType, AttributeProto, ModelProto,
    NodeProto, OperatorSetIdProto, TensorProto,
};

const CLASSIFIER: &str = "TreeEnsembleClassifier";

use super::{attr, int_attr};

/// Why tract cannot compute this classifier's scores as ONNX Runtime does,
/// if it cannot.
pub fn unsupported_tree_layout(node: &NodeProto) -> Option<String> {
    if node.op_type != CLASSIFIER {
        return None;
    }
    let labels = attr(node, "classlabels_int64s")
        .map(|a| a.ints.len())
        .or_else(|| attr(node, "classlabels_strings").map(|a| a.strings.len()))
        .unwrap_or(0);
    let one_column = attr(node, "class_ids").is_some_and(|a| a.ints.iter().all(|&c| c == 0));
    let post = attr(node, "post_transform").map_or(&b"NONE"[..], |a| &a.s[..]);
    let negative = attr(node, "class_weights").is_some_and(|a| a.floats.iter().any(|&w| w < 0.0));
    (labels == 2 && one_column && post == b"NONE" && negative).then(|| {
        "a two-class TreeEnsembleClassifier with one score column, negative leaf weights \
         and post_transform NONE (tract's scores would be [1 - s, s] where ONNX Runtime's \
         are [-s, s]); serve it on onnxruntime"
            .to_string()
    })
}

/// Rewrites every top-level `TreeEnsembleClassifier` so that its label is
/// looked up from its scores (module docs).
pub fn label_from_scores(proto: &mut ModelProto) {
    let Some(graph) = proto.graph.as_mut() else {
        return;
    };
    let mut added = Vec::new();
    let mut rewritten = false;
    for (index, node) in graph.node.iter_mut().enumerate() {
        if node.op_type != CLASSIFIER || node.output.first().is_none_or(|l| l.is_empty()) {
            continue;
        }
        let labels = if let Some(a) = attr(node, "classlabels_int64s") {
            TensorProto {
                dims: vec![a.ints.len() as i64],
                data_type: OnnxType::Int64 as i32,
                int64_data: a.ints.clone(),
                ..Default::default()
            }
        } else if let Some(a) = attr(node, "classlabels_strings") {
            let labels = TensorProto {
                dims: vec![a.strings.len() as i64],
                data_type: OnnxType::String as i32,
                string_data: a.strings.clone(),
                ..Default::default()
            };
            // The node itself counts classes 0..n, so that tract's own
            // (unused) label lookup has the default value it needs.
            let count = a.strings.len() as i64;
            node.attribute.retain(|a| a.name != "classlabels_strings");
            node.attribute.push(AttributeProto {
                name: "classlabels_int64s".into(),
                r#type: AttributeType::Ints as i32,
                ints: (0..count).collect(),
                ..Default::default()
            });
            labels
        } else {
            continue;
        };
        let tag = format!("anemone_tree_label_{index}");
        let label = std::mem::replace(&mut node.output[0], format!("{tag}_unused"));
        if node.output.len() < 2 || node.output[1].is_empty() {
            node.output.resize(2, String::new());
            node.output[1] = format!("{tag}_scores");
        }
        let scores = node.output[1].clone();
        let labels_name = format!("{tag}_classes");
        added.push((
            index,
            NodeProto {
                name: format!("{tag}_constant"),
                op_type: "Constant".into(),
                output: vec![labels_name.clone()],
                attribute: vec![AttributeProto {
                    name: "value".into(),
                    r#type: AttributeType::Tensor as i32,
                    t: Some(labels),
                    ..Default::default()
                }],
                ..Default::default()
            },
            NodeProto {
                name: format!("{tag}_argmax"),
                op_type: "ArgMax".into(),
                input: vec![scores],
                output: vec![format!("{tag}_index")],
                attribute: vec![int_attr("axis", 1), int_attr("keepdims", 0)],
                ..Default::default()
            },
            NodeProto {
                name: format!("{tag}_gather"),
                op_type: "Gather".into(),
                input: vec![labels_name, format!("{tag}_index")],
                output: vec![label],
                attribute: vec![int_attr("axis", 0)],
                ..Default::default()
            },
        ));
        rewritten = true;
    }
    // Each classifier's three nodes right after it, later ones first so
    // the indices stay right.
    for (index, constant, argmax, gather) in added.into_iter().rev() {
        graph
            .node
            .splice(index + 1..index + 1, [constant, argmax, gather]);
    }
    if rewritten && !proto.opset_import.iter().any(|o| o.domain.is_empty()) {
        proto.opset_import.push(OperatorSetIdProto {
            domain: String::new(),
            version: 13,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::prelude::*;

    /// A two-class forest of one stump as skl2onnx writes it: one score
    /// column (class id 0), `p` of the positive class in the leaves.
    fn binary_stump(labels: AttributeProto, post: &str, weights: [f32; 2]) -> ModelProto {
        let ints = |name: &str, v: Vec<i64>| AttributeProto {
            name: name.into(),
            r#type: AttributeType::Ints as i32,
            ints: v,
            ..Default::default()
        };
        let floats = |name: &str, v: Vec<f32>| AttributeProto {
            name: name.into(),
            r#type: AttributeType::Floats as i32,
            floats: v,
            ..Default::default()
        };
        let strings = |name: &str, v: Vec<&str>| AttributeProto {
            name: name.into(),
            r#type: AttributeType::Strings as i32,
            strings: v.into_iter().map(|s| s.as_bytes().to_vec()).collect(),
            ..Default::default()
        };
        let node = NodeProto {
            op_type: CLASSIFIER.into(),
            domain: "ai.onnx.ml".into(),
            input: vec!["x".into()],
            output: vec!["label".into(), "probabilities".into()],
            attribute: vec![
                labels,
                ints("nodes_treeids", vec![0, 0, 0]),
                ints("nodes_nodeids", vec![0, 1, 2]),
                ints("nodes_featureids", vec![0, 0, 0]),
                floats("nodes_values", vec![0.5, 0.0, 0.0]),
                strings("nodes_modes", vec!["BRANCH_LEQ", "LEAF", "LEAF"]),
                ints("nodes_truenodeids", vec![1, 0, 0]),
                ints("nodes_falsenodeids", vec![2, 0, 0]),
                ints("class_treeids", vec![0, 0]),
                ints("class_nodeids", vec![1, 2]),
                ints("class_ids", vec![0, 0]),
                floats("class_weights", weights.to_vec()),
                strings("post_transform", vec![post]),
            ]
            .into_iter()
            .map(|mut a| {
                if a.name == "post_transform" {
                    a.r#type = AttributeType::String as i32;
                    a.s = a.strings.remove(0);
                }
                a
            })
            .collect(),
            ..Default::default()
        };
        let value = |name: &str, elem: OnnxType| tract_onnx::pb::ValueInfoProto {
            name: name.into(),
            r#type: Some(tract_onnx::pb::TypeProto {
                value: Some(tract_onnx::pb::type_proto::Value::TensorType(
                    tract_onnx::pb::type_proto::Tensor {
                        elem_type: elem as i32,
                        shape: None,
                    },
                )),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut x = value("x", OnnxType::Float);
        if let Some(tract_onnx::pb::type_proto::Value::TensorType(t)) =
            x.r#type.as_mut().and_then(|t| t.value.as_mut())
        {
            use tract_onnx::pb::tensor_shape_proto::{dimension::Value as Dim, Dimension};
            t.shape = Some(tract_onnx::pb::TensorShapeProto {
                dim: [4, 1]
                    .iter()
                    .map(|&d| Dimension {
                        value: Some(Dim::DimValue(d)),
                        ..Default::default()
                    })
                    .collect(),
            });
        }
        ModelProto {
            ir_version: 8,
            opset_import: vec![OperatorSetIdProto {
                domain: "ai.onnx.ml".into(),
                version: 1,
            }],
            graph: Some(tract_onnx::pb::GraphProto {
                node: vec![node],
                input: vec![x],
                output: vec![
                    value("label", OnnxType::Int64),
                    value("probabilities", OnnxType::Float),
                ],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn run(mut proto: ModelProto) -> (Tensor, Tensor) {
        label_from_scores(&mut proto);
        let onnx = super::super::onnx();
        let model = onnx.model_for_proto_model(&proto).unwrap();
        let plan = model.into_optimized().unwrap().into_runnable().unwrap();
        let x = tensor2(&[[0.0f32], [1.0], [0.2], [0.9]]);
        let out = plan.run(tvec!(x.into_tvalue())).unwrap();
        (out[0].clone().into_tensor(), out[1].clone().into_tensor())
    }

    #[test]
    fn a_two_class_forest_labels_each_row_by_its_larger_probability() {
        // Leaves: p = 0.2 (x <= 0.5) and 0.7 (x > 0.5) for class 1.
        let labels = AttributeProto {
            name: "classlabels_int64s".into(),
            r#type: AttributeType::Ints as i32,
            ints: vec![10, 20],
            ..Default::default()
        };
        let (label, probabilities) = run(binary_stump(labels, "NONE", [0.2, 0.7]));
        let probabilities: Vec<f32> = (probabilities.to_plain_array_view::<f32>().unwrap())
            .iter()
            .copied()
            .collect();
        let expected = [0.8, 0.2, 0.3, 0.7, 0.8, 0.2, 0.3, 0.7];
        for (got, want) in probabilities.iter().zip(expected) {
            assert!((got - want).abs() < 1e-6, "{probabilities:?}");
        }
        // tract alone answered 10 for every row.
        let label: Vec<i64> = label
            .to_plain_array_view::<i64>()
            .unwrap()
            .iter()
            .copied()
            .collect();
        assert_eq!(label, [10, 20, 10, 20]);
    }

    #[test]
    fn string_labels_are_answered() {
        let labels = AttributeProto {
            name: "classlabels_strings".into(),
            r#type: AttributeType::Strings as i32,
            strings: vec![b"no".to_vec(), b"yes".to_vec()],
            ..Default::default()
        };
        let (label, _) = run(binary_stump(labels, "LOGISTIC", [-1.0, 2.0]));
        let label: Vec<String> = label
            .to_plain_array_view::<String>()
            .unwrap()
            .iter()
            .cloned()
            .collect();
        // sigmoid(-1) < 0.5 < sigmoid(2).
        assert_eq!(label, ["no", "yes", "no", "yes"]);
    }

    #[test]
    fn the_layout_tract_scores_differently_is_named() {
        let labels = AttributeProto {
            name: "classlabels_int64s".into(),
            r#type: AttributeType::Ints as i32,
            ints: vec![0, 1],
            ..Default::default()
        };
        let proto = binary_stump(labels.clone(), "NONE", [-1.0, 2.0]);
        let node = &proto.graph.as_ref().unwrap().node[0];
        assert!(unsupported_tree_layout(node).unwrap().contains("[-s, s]"));
        let proto = binary_stump(labels, "LOGISTIC", [-1.0, 2.0]);
        assert!(unsupported_tree_layout(&proto.graph.as_ref().unwrap().node[0]).is_none());
    }
}
