//! ONNX nodes that tract 0.23.9 loads and then fails on at run time (a 500
//! on every request), found by tests/python/test_operator_sweep.py: an
//! `Equal` of BOOL tensors is rewritten into `Not(Xor(a, b))`, which tract
//! runs; a `Round` of DOUBLE, a `ReduceSumSquare` of integers and a `Pad`
//! with negative constant pads (a crop) are refused at load, naming the
//! node, so that ONNX Runtime serves the model.

use tract_onnx::pb::{tensor_proto::DataType as OnnxType, GraphProto, ModelProto, NodeProto};

use super::attr;
use super::elem_types::{elem_types, ElemTypes};

/// The integer types, which tract's `Square` (in `ReduceSumSquare`) lacks.
const INTEGERS: &[OnnxType] = &[
    OnnxType::Int8,
    OnnxType::Int16,
    OnnxType::Int32,
    OnnxType::Int64,
    OnnxType::Uint8,
    OnnxType::Uint16,
    OnnxType::Uint32,
    OnnxType::Uint64,
];

/// Why tract fails on `node` at run time, if it does.
fn fails(graph: &GraphProto, node: &NodeProto, types: &ElemTypes) -> Option<String> {
    let first = node.input.first().and_then(|i| types.get(i)).copied();
    let is = |t: OnnxType| first == Some(t as i32);
    match node.op_type.as_str() {
        "Round" if is(OnnxType::Double) => Some("Round of DOUBLE".into()),
        "ReduceSumSquare" if INTEGERS.iter().any(|&t| is(t)) => {
            Some("ReduceSumSquare of integers".into())
        }
        "Pad" => {
            let pads = match node.input.get(1).filter(|p| !p.is_empty()) {
                Some(name) => {
                    super::proto::constant(graph, name).and_then(super::proto::int_values)
                }
                None => attr(node, "pads").map(|a| a.ints.clone()),
            };
            pads.is_some_and(|p| p.iter().any(|&v| v < 0))
                .then(|| "Pad with negative pads (a crop)".into())
        }
        _ => None,
    }
}

/// The first node of `proto`'s graph (subgraphs included) that tract fails
/// on at run time, as a reason to refuse the model, naming the node.
pub fn run_failures(proto: &ModelProto) -> Option<String> {
    let mut stack: Vec<(&GraphProto, ElemTypes)> =
        proto.graph.iter().map(|g| (g, ElemTypes::new())).collect();
    while let Some((g, outer)) = stack.pop() {
        let types = elem_types(g, &outer);
        for node in &g.node {
            if let Some(why) = fails(g, node, &types) {
                let name = match node.name.is_empty() {
                    true => String::new(),
                    false => format!(" (node '{}')", node.name),
                };
                return Some(format!(
                    "{why}{name}, which it fails on when run; serve the model on onnxruntime"
                ));
            }
            for a in &node.attribute {
                stack.extend(a.g.iter().chain(&a.graphs).map(|s| (s, types.clone())));
            }
        }
    }
    None
}

/// Rewrites every `Equal` of BOOL tensors into `Not(Xor(a, b))` (tract's
/// `Equal` takes numbers only).
pub fn bool_equal(proto: &mut ModelProto) {
    if let Some(graph) = proto.graph.as_mut() {
        rewrite(graph, &ElemTypes::new(), &mut 0);
    }
}

fn rewrite(graph: &mut GraphProto, outer: &ElemTypes, count: &mut usize) {
    let types = elem_types(graph, outer);
    let boolean = |name: &String| types.get(name) == Some(&(OnnxType::Bool as i32));
    let mut out = Vec::with_capacity(graph.node.len());
    for mut node in std::mem::take(&mut graph.node) {
        for a in &mut node.attribute {
            for g in a.g.iter_mut().chain(a.graphs.iter_mut()) {
                rewrite(g, &types, count);
            }
        }
        if node.op_type != "Equal" || node.input.len() != 2 || !node.input.iter().any(boolean) {
            out.push(node);
            continue;
        }
        *count += 1;
        let xor = format!("anemone_bool_equal_{count}_xor");
        out.push(NodeProto {
            name: xor.clone(),
            op_type: "Xor".into(),
            input: node.input.clone(),
            output: vec![xor.clone()],
            ..Default::default()
        });
        out.push(NodeProto {
            name: node.name,
            op_type: "Not".into(),
            input: vec![xor],
            output: node.output,
            ..Default::default()
        });
    }
    graph.node = out;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::pb::TensorProto;
    use tract_onnx::pb::{type_proto, AttributeProto, TypeProto, ValueInfoProto};

    fn typed(name: &str, t: OnnxType) -> ValueInfoProto {
        ValueInfoProto {
            name: name.into(),
            r#type: Some(TypeProto {
                value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                    elem_type: t as i32,
                    shape: None,
                })),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn node(op: &str, inputs: &[&str], output: &str) -> NodeProto {
        NodeProto {
            op_type: op.into(),
            name: output.into(),
            input: inputs.iter().map(|i| i.to_string()).collect(),
            output: vec![output.into()],
            ..Default::default()
        }
    }

    fn model(
        inputs: Vec<ValueInfoProto>,
        nodes: Vec<NodeProto>,
        init: Vec<TensorProto>,
    ) -> ModelProto {
        ModelProto {
            graph: Some(GraphProto {
                input: inputs,
                node: nodes,
                initializer: init,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_nodes_tract_fails_on_are_named_by_their_types() {
        let double = model(
            vec![typed("x", OnnxType::Double)],
            vec![node("Round", &["x"], "r")],
            vec![],
        );
        assert!(run_failures(&double)
            .unwrap()
            .contains("Round of DOUBLE (node 'r')"));
        let float = model(
            vec![typed("x", OnnxType::Float)],
            vec![node("Round", &["x"], "r")],
            vec![],
        );
        assert_eq!(run_failures(&float), None);
        // The type found through a Cast and a Reshape.
        let mut cast = node("Cast", &["x"], "c");
        cast.attribute.push(AttributeProto {
            name: "to".into(),
            i: OnnxType::Int64 as i64,
            ..Default::default()
        });
        let ints = model(
            vec![typed("x", OnnxType::Float)],
            vec![
                cast,
                node("Reshape", &["c", "s"], "re"),
                node("ReduceSumSquare", &["re"], "q"),
            ],
            vec![],
        );
        assert!(run_failures(&ints)
            .unwrap()
            .contains("ReduceSumSquare of integers"));
        let pads = |values: Vec<i64>| TensorProto {
            name: "p".into(),
            dims: vec![values.len() as i64],
            data_type: OnnxType::Int64 as i32,
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        };
        let crop = model(
            vec![],
            vec![node("Pad", &["x", "p"], "pad")],
            vec![pads(vec![0, -1, 0, 2])],
        );
        assert!(run_failures(&crop).unwrap().contains("negative pads"));
        let pad = model(
            vec![],
            vec![node("Pad", &["x", "p"], "pad")],
            vec![pads(vec![0, 1, 0, 2])],
        );
        assert_eq!(run_failures(&pad), None);
    }

    #[test]
    fn equal_of_booleans_becomes_not_xor_and_other_equals_stay() {
        let mut proto = model(
            vec![
                typed("a", OnnxType::Bool),
                typed("b", OnnxType::Bool),
                typed("f", OnnxType::Float),
            ],
            vec![
                node("Equal", &["a", "b"], "e"),
                node("Less", &["f", "f"], "l"),
                node("Equal", &["l", "a"], "e2"),
                node("Equal", &["f", "f"], "e3"),
            ],
            vec![],
        );
        bool_equal(&mut proto);
        let ops: Vec<&str> = proto
            .graph
            .as_ref()
            .unwrap()
            .node
            .iter()
            .map(|n| n.op_type.as_str())
            .collect();
        assert_eq!(ops, ["Xor", "Not", "Less", "Xor", "Not", "Equal"]);
        let not = &proto.graph.as_ref().unwrap().node[1];
        assert_eq!((not.name.as_str(), not.output[0].as_str()), ("e", "e"));
    }
}
