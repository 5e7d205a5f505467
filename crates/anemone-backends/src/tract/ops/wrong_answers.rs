//! ONNX nodes that tract 0.23.9 loads and then answers wrongly (a 200 with
//! the wrong numbers), found by comparing every operator with ONNX
//! Runtime's Python API (tests/python/test_operator_sweep.py). A model with
//! one of them is refused on tract, naming the node, so that its next
//! backend (ONNX Runtime by default) serves it; and `ConstantOfShape`
//! without a `value`, which tract fills with DOUBLE zeros where ONNX says
//! FLOAT, is given ONNX's default value.

use tract_onnx::pb::{AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto};

use super::attr;

/// The activations ONNX gives each recurrent operator by default, per
/// direction.
fn default_activations(op: &str) -> &'static [&'static str] {
    match op {
        "RNN" => &["Tanh"],
        "GRU" => &["Sigmoid", "Tanh"],
        _ => &["Sigmoid", "Tanh", "Tanh"],
    }
}

/// Why tract answers `node` wrongly, if it does.
fn wrong(node: &NodeProto) -> Option<String> {
    let op = node.op_type.as_str();
    let text = |name: &str| attr(node, name).map(|a| String::from_utf8_lossy(&a.s).into_owned());
    match op {
        "RNN" | "GRU" | "LSTM" => {
            if text("direction").as_deref() == Some("reverse") {
                return Some(format!(
                    "{op} with direction=\"reverse\" (tract computes it forward)"
                ));
            }
            let asked = attr(node, "activations").map(|a| {
                a.strings
                    .iter()
                    .map(|s| String::from_utf8_lossy(s).to_ascii_lowercase())
                    .collect::<Vec<_>>()
            })?;
            let defaults = default_activations(op);
            let default = asked
                .iter()
                .enumerate()
                .all(|(i, a)| *a == defaults[i % defaults.len()].to_ascii_lowercase());
            (!default).then(|| {
                format!(
                    "{op} with activations {asked:?} (tract computes the default ones, {defaults:?})"
                )
            })
        }
        "Celu" => {
            let alpha = attr(node, "alpha").map_or(1.0, |a| a.f);
            (alpha != 1.0).then(|| format!("Celu with alpha={alpha} (tract computes alpha=1)"))
        }
        "GlobalLpPool" => Some("GlobalLpPool (tract's is not (sum |x|^p)^(1/p))".into()),
        "Einsum" => {
            let equation = text("equation").unwrap_or_default();
            scalar_sum_of_one_operand(&equation).then(|| {
                format!("Einsum \"{equation}\" with a scalar output (tract does not reduce it)")
            })
        }
        _ => None,
    }
}

/// An Einsum whose output is a scalar and that sums an index found in one
/// operand only (`ij->`, `bij,bjk->`): tract returns it unreduced. A dot
/// product (`ij,ij->`), every index in both operands, it answers right.
fn scalar_sum_of_one_operand(equation: &str) -> bool {
    let Some((inputs, output)) = equation.split_once("->") else {
        return false;
    };
    if !output.trim().is_empty() {
        return false;
    }
    let operands: Vec<&str> = inputs.split(',').map(str::trim).collect();
    let letters = inputs.chars().filter(|c| c.is_ascii_alphabetic());
    letters
        .into_iter()
        .any(|l| operands.iter().filter(|o| o.contains(l)).count() == 1)
}

/// The first node of `graph` (subgraphs included) that tract answers
/// wrongly, as a reason to refuse the model, naming the node.
pub fn wrong_answers(graph: Option<&GraphProto>) -> Option<String> {
    let mut stack: Vec<&GraphProto> = graph.into_iter().collect();
    while let Some(g) = stack.pop() {
        let quantized = quantized_softmax(g);
        for (i, node) in g.node.iter().enumerate() {
            let why = wrong(node).or_else(|| {
                quantized.contains(&i).then(|| {
                    "Softmax between DequantizeLinear and QuantizeLinear (tract answers the top \
                     quantum for every element)"
                        .to_string()
                })
            });
            if let Some(why) = why {
                let name = match node.name.is_empty() {
                    true => String::new(),
                    false => format!(" (node '{}')", node.name),
                };
                return Some(format!(
                    "{why}{name}, which it would answer wrongly; serve the model on onnxruntime"
                ));
            }
            for a in &node.attribute {
                stack.extend(a.g.iter());
                stack.extend(a.graphs.iter());
            }
        }
    }
    None
}

/// The names of `graph`'s `Softmax` nodes that read a `DequantizeLinear`'s
/// output and feed a `QuantizeLinear`, as `quantize_static` writes them
/// around a transformer's attention: tract 0.23.9 fuses the three into a
/// quantized softmax that answers the top quantum (255 for u8) for every
/// element. Their positions in `graph.node`.
fn quantized_softmax(graph: &GraphProto) -> Vec<usize> {
    use std::collections::HashMap;
    let producer: HashMap<&str, &str> = (graph.node.iter())
        .flat_map(|n| {
            n.output
                .iter()
                .map(move |o| (o.as_str(), n.op_type.as_str()))
        })
        .collect();
    let quantizes = |value: &str| {
        (graph.node.iter())
            .any(|n| n.op_type == "QuantizeLinear" && n.input.first().is_some_and(|i| i == value))
    };
    (graph.node.iter().enumerate())
        .filter(|(_, n)| n.op_type == "Softmax")
        .filter(|(_, n)| {
            n.input.first().and_then(|i| producer.get(i.as_str())) == Some(&"DequantizeLinear")
        })
        .filter(|(_, n)| n.output.first().is_some_and(|o| quantizes(o)))
        .map(|(i, _)| i)
        .collect()
}

/// Gives every `ConstantOfShape` without a `value` ONNX's default, a FLOAT
/// zero (tract fills it with DOUBLE zeros).
pub fn default_constant_of_shape(proto: &mut ModelProto) {
    let mut stack: Vec<&mut GraphProto> = proto.graph.iter_mut().collect();
    while let Some(g) = stack.pop() {
        for node in &mut g.node {
            if node.op_type == "ConstantOfShape" && attr(node, "value").is_none() {
                node.attribute.push(AttributeProto {
                    name: "value".into(),
                    r#type: tract_onnx::pb::attribute_proto::AttributeType::Tensor as i32,
                    t: Some(TensorProto {
                        dims: vec![1],
                        data_type: tract_onnx::pb::tensor_proto::DataType::Float as i32,
                        float_data: vec![0.0],
                        ..Default::default()
                    }),
                    ..Default::default()
                });
            }
            for a in &mut node.attribute {
                stack.extend(a.g.iter_mut());
                stack.extend(a.graphs.iter_mut());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(op: &str, attrs: Vec<AttributeProto>) -> NodeProto {
        NodeProto {
            op_type: op.into(),
            name: "n".into(),
            attribute: attrs,
            ..Default::default()
        }
    }

    fn s(name: &str, v: &str) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            s: v.as_bytes().to_vec(),
            ..Default::default()
        }
    }

    fn strings(name: &str, v: &[&str]) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            strings: v.iter().map(|x| x.as_bytes().to_vec()).collect(),
            ..Default::default()
        }
    }

    fn graph(nodes: Vec<NodeProto>) -> GraphProto {
        GraphProto {
            node: nodes,
            ..Default::default()
        }
    }

    #[test]
    fn the_nodes_tract_answers_wrongly_are_named_and_others_pass() {
        let refused = [
            node("LSTM", vec![s("direction", "reverse")]),
            node("RNN", vec![strings("activations", &["Relu"])]),
            node("GRU", vec![strings("activations", &["Sigmoid", "Relu"])]),
            node(
                "Celu",
                vec![AttributeProto {
                    name: "alpha".into(),
                    f: 2.0,
                    ..Default::default()
                }],
            ),
            node("GlobalLpPool", vec![]),
            node("Einsum", vec![s("equation", "ij->")]),
            node("Einsum", vec![s("equation", "bij,bjk->")]),
        ];
        for n in refused {
            let why = wrong_answers(Some(&graph(vec![n.clone()]))).unwrap_or_default();
            assert!(
                why.contains(&n.op_type) && why.contains("(node 'n')"),
                "{why}"
            );
        }
        let served = [
            node("LSTM", vec![s("direction", "bidirectional")]),
            node(
                "GRU",
                vec![strings(
                    "activations",
                    &["Sigmoid", "Tanh", "sigmoid", "tanh"],
                )],
            ),
            node("RNN", vec![]),
            node("Celu", vec![]),
            node("Einsum", vec![s("equation", "ij,jk->ik")]),
            node("Einsum", vec![s("equation", "ij,ij->")]),
        ];
        for n in served {
            assert_eq!(
                wrong_answers(Some(&graph(vec![n.clone()]))),
                None,
                "{}",
                n.op_type
            );
        }
        // Inside a subgraph too.
        let body = AttributeProto {
            name: "body".into(),
            g: Some(graph(vec![node("GlobalLpPool", vec![])])),
            ..Default::default()
        };
        assert!(wrong_answers(Some(&graph(vec![node("Loop", vec![body])]))).is_some());
    }

    #[test]
    fn a_softmax_between_dequantize_and_quantize_is_named() {
        let io = |op: &str, i: &str, o: &str| NodeProto {
            op_type: op.into(),
            input: vec![i.into()],
            output: vec![o.into()],
            ..Default::default()
        };
        let qdq = graph(vec![
            io("DequantizeLinear", "q", "x"),
            io("Softmax", "x", "p"),
            io("QuantizeLinear", "p", "pq"),
        ]);
        let why = wrong_answers(Some(&qdq)).unwrap_or_default();
        assert!(
            why.contains("Softmax between DequantizeLinear and QuantizeLinear"),
            "{why}"
        );
        // A float softmax, or one whose output stays float, is served.
        let float = graph(vec![
            io("Softmax", "x", "p"),
            io("QuantizeLinear", "p", "pq"),
        ]);
        assert_eq!(wrong_answers(Some(&float)), None);
        let dequantized = graph(vec![
            io("DequantizeLinear", "q", "x"),
            io("Softmax", "x", "p"),
        ]);
        assert_eq!(wrong_answers(Some(&dequantized)), None);
    }

    #[test]
    fn constant_of_shape_gets_a_float_zero() {
        let mut proto = ModelProto {
            graph: Some(graph(vec![node("ConstantOfShape", vec![])])),
            ..Default::default()
        };
        default_constant_of_shape(&mut proto);
        let value = proto.graph.unwrap().node[0].attribute[0].t.clone().unwrap();
        assert_eq!(value.float_data, vec![0.0]);
        assert_eq!(
            value.data_type,
            tract_onnx::pb::tensor_proto::DataType::Float as i32
        );
    }
}
