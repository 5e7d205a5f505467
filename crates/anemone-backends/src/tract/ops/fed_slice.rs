//! `Slice` with starts or ends that come from the request (a model input,
//! not the shapes): tract 0.23.9 takes such bounds as they are, so a
//! negative one (counted from the end), one past the length, or an end
//! before the start failed with 500 ("DynSlice: Invalid slicing range")
//! where ONNX clamps them (tests/python/test_operator_sweep.py). Before
//! parsing, each such bound `b` of an axis of length `d` is clamped as ONNX
//! says for a positive step: `c = max(min(b, d), -d)`, then `c + d` where
//! `c < 0`, and the end is at least the start. An empty slice (the end at or
//! before the start) still fails: tract slices no empty range. Bounds made
//! of shapes and constants (the usual export) are left to tract, which
//! folds them; so are slices with no constant `axes` or with a step that is
//! not a positive constant.

use std::collections::HashSet;
use tract_onnx::pb::{
    tensor_proto::DataType as OnnxType, AttributeProto, GraphProto, ModelProto, NodeProto,
    TensorProto,
};

use super::elem_types::elem_types;
use super::int_attr;
use super::proto::{constant, int_values, node, tensor_attr};

/// Whether the constant `t` holds positive integers only.
fn positive(t: &TensorProto) -> bool {
    int_values(t).is_some_and(|values| values.iter().all(|&v| v > 0))
}

/// The values of `graph` that depend on a model input's data (not only on
/// its shape).
fn fed(graph: &GraphProto) -> HashSet<String> {
    let inits: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let mut fed: HashSet<String> = (graph.input.iter())
        .filter(|i| !inits.contains(i.name.as_str()))
        .map(|i| i.name.clone())
        .collect();
    for node in &graph.node {
        let shape_only = matches!(node.op_type.as_str(), "Shape" | "Size");
        if !shape_only && node.input.iter().any(|i| fed.contains(i)) {
            fed.extend(node.output.iter().cloned());
        }
    }
    fed
}

struct Clamper {
    count: usize,
    nodes: Vec<NodeProto>,
}

impl Clamper {
    fn node(&mut self, op: &str, inputs: Vec<String>, attrs: Vec<AttributeProto>) -> String {
        self.count += 1;
        let out = format!(
            "anemone_fed_slice_{}_{}",
            self.count,
            op.to_ascii_lowercase()
        );
        self.nodes.push(node(&out, op, inputs, attrs));
        out
    }

    /// A scalar constant of `data_type` (INT64 or INT32).
    fn scalar(&mut self, data_type: i32, v: i64) -> String {
        let int64 = data_type == OnnxType::Int64 as i32;
        let t = TensorProto {
            data_type,
            int64_data: if int64 { vec![v] } else { vec![] },
            int32_data: if int64 { vec![] } else { vec![v as i32] },
            ..Default::default()
        };
        self.node("Constant", vec![], vec![tensor_attr("value", t)])
    }

    /// `b` clamped into `[0, d]` as ONNX reads a bound of an axis of length
    /// `d`. First into 32 bits, with constants: tract reads a value mixed
    /// with a shape (`d`) in 32 bits, and `INT64_MAX` ("to the end") would
    /// come out -1.
    fn clamp(
        &mut self,
        b: &str,
        d: &str,
        neg_d: &str,
        (lo, hi, zero): (&str, &str, &str),
    ) -> String {
        let b = self.node("Min", vec![b.into(), hi.into()], vec![]);
        let b = self.node("Max", vec![b, lo.into()], vec![]);
        let below = self.node("Min", vec![b, d.into()], vec![]);
        let c = self.node("Max", vec![below, neg_d.into()], vec![]);
        let negative = self.node("Less", vec![c.clone(), zero.into()], vec![]);
        let from_end = self.node("Add", vec![c.clone(), d.into()], vec![]);
        self.node("Where", vec![negative, from_end, c], vec![])
    }
}

/// A bound past 32 bits, which tract 0.23.9 reads truncated: `starts` and
/// `ends` both `INT64_MAX` gave one row where ONNX gives none, both `2^40`
/// every row. Any bound beyond a dimension's length means the same as this
/// one (no dimension reaches 2^31 elements).
const BOUND: i64 = i32::MAX as i64;

/// Clamps the constant bounds of every `Slice` of `proto`'s main graph into
/// `[-BOUND, BOUND]`: attributes (before opset 10) in place, constant
/// inputs as a new initializer for that node (the constant may feed
/// others).
pub fn clamp_constant_bounds(proto: &mut ModelProto) {
    let Some(graph) = proto.graph.as_mut() else {
        return;
    };
    let clamp = |v: &i64| (*v).clamp(-BOUND, BOUND);
    let beyond = |values: &[i64]| values.iter().any(|v| !(-BOUND..=BOUND).contains(v));
    // The Slice bounds that need it, by name: their clamped copies.
    let mut copies: std::collections::HashMap<String, TensorProto> = Default::default();
    for node in graph.node.iter().filter(|n| n.op_type == "Slice") {
        for name in node.input.iter().skip(1).take(2).filter(|i| !i.is_empty()) {
            let Some(t) = constant(graph, name).filter(|t| t.data_type == OnnxType::Int64 as i32)
            else {
                continue;
            };
            let Some(values) = int_values(t).filter(|v| beyond(v)) else {
                continue;
            };
            let copy = TensorProto {
                name: format!("{name}_anemone_32_bits"),
                dims: t.dims.clone(),
                data_type: OnnxType::Int64 as i32,
                int64_data: values.iter().map(clamp).collect(),
                ..Default::default()
            };
            copies.insert(name.clone(), copy);
        }
    }
    for node in graph.node.iter_mut().filter(|n| n.op_type == "Slice") {
        for a in (node.attribute.iter_mut()).filter(|a| a.name == "starts" || a.name == "ends") {
            a.ints = a.ints.iter().map(clamp).collect();
        }
        for input in node.input.iter_mut().skip(1).take(2) {
            if let Some(copy) = copies.get(input.as_str()) {
                *input = copy.name.clone();
            }
        }
    }
    graph.initializer.extend(copies.into_values());
}

/// Clamps the fed bounds of every `Slice` of `proto`'s main graph (module
/// docs).
pub fn clamp_fed_slices(proto: &mut ModelProto) {
    let Some(graph) = proto.graph.as_mut() else {
        return;
    };
    let fed = fed(graph);
    let types = elem_types(graph, &Default::default());
    // Constants by name, looked up before the nodes are taken.
    let (constants, positives): (HashSet<String>, HashSet<String>) = {
        let names = (graph.initializer.iter().map(|t| &t.name)).chain(
            graph
                .node
                .iter()
                .filter(|n| n.op_type == "Constant")
                .flat_map(|n| &n.output),
        );
        let constants: HashSet<String> = names
            .filter(|n| constant(graph, n).is_some())
            .cloned()
            .collect();
        let positives = (constants.iter())
            .filter(|n| constant(graph, n).is_some_and(positive))
            .cloned()
            .collect();
        (constants, positives)
    };
    let mut clamper = Clamper {
        count: 0,
        nodes: Vec::new(),
    };
    let mut out = Vec::with_capacity(graph.node.len());
    for mut node in std::mem::take(&mut graph.node) {
        let input = |i: usize| node.input.get(i).filter(|n| !n.is_empty());
        let candidate = node.op_type == "Slice"
            && (input(1).is_some_and(|s| fed.contains(s))
                || input(2).is_some_and(|e| fed.contains(e)))
            && input(3).is_some_and(|a| constants.contains(a))
            && input(4).is_none_or(|s| positives.contains(s));
        if !candidate {
            out.push(node);
            continue;
        }
        let bound_type = types
            .get(&node.input[1])
            .copied()
            .unwrap_or(OnnxType::Int64 as i32);
        let shape = clamper.node("Shape", vec![node.input[0].clone()], vec![]);
        let mut dims = clamper.node(
            "Gather",
            vec![shape, node.input[3].clone()],
            vec![int_attr("axis", 0)],
        );
        if bound_type != OnnxType::Int64 as i32 {
            dims = clamper.node("Cast", vec![dims], vec![int_attr("to", bound_type as i64)]);
        }
        let neg_dims = clamper.node("Neg", vec![dims.clone()], vec![]);
        let lo = clamper.scalar(bound_type, -BOUND);
        let hi = clamper.scalar(bound_type, BOUND);
        let zero = clamper.scalar(bound_type, 0);
        let consts = (lo.as_str(), hi.as_str(), zero.as_str());
        let start = clamper.clamp(&node.input[1].clone(), &dims, &neg_dims, consts);
        let end = clamper.clamp(&node.input[2].clone(), &dims, &neg_dims, consts);
        let end = clamper.node("Max", vec![end, start.clone()], vec![]);
        out.append(&mut clamper.nodes);
        node.input[1] = start;
        node.input[2] = end;
        out.push(node);
    }
    graph.node = out;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tract::ops::proto::value;
    use tract_onnx::pb::{OperatorSetIdProto, ValueInfoProto};
    use tract_onnx::prelude::*;

    /// `x[:, start:end]` of a [2, 6] `x` whose bounds are inputs, clamped
    /// and run by tract.
    fn slice(start: i64, end: i64) -> Vec<f32> {
        let axes = TensorProto {
            name: "axes".into(),
            dims: vec![1],
            data_type: OnnxType::Int64 as i32,
            int64_data: vec![1],
            ..Default::default()
        };
        let mut proto = ModelProto {
            ir_version: 8,
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: 13,
            }],
            graph: Some(GraphProto {
                node: vec![NodeProto {
                    op_type: "Slice".into(),
                    input: ["x", "s", "e", "axes"].map(String::from).to_vec(),
                    output: vec!["y".into()],
                    ..Default::default()
                }],
                input: vec![
                    value("x", OnnxType::Float, &[2, 6]),
                    value("s", OnnxType::Int64, &[1]),
                    value("e", OnnxType::Int64, &[1]),
                ],
                output: vec![ValueInfoProto {
                    name: "y".into(),
                    ..Default::default()
                }],
                initializer: vec![axes],
                ..Default::default()
            }),
            ..Default::default()
        };
        clamp_fed_slices(&mut proto);
        assert!(proto.graph.as_ref().unwrap().node.len() > 1, "clamped");
        let model = super::super::onnx().model_for_proto_model(&proto).unwrap();
        let typed = model.into_typed().unwrap().into_decluttered().unwrap();
        let typed = super::super::onnx_loop::revive_slice_symbols(typed).unwrap();
        let plan = typed.into_optimized().unwrap().into_runnable().unwrap();
        let x = tract_ndarray::Array2::from_shape_fn((2, 6), |(r, c)| (r * 10 + c) as f32);
        let bound = |v: i64| tract_ndarray::arr1(&[v]).into_tensor().into_tvalue();
        let out = plan
            .run(tvec!(
                x.into_tensor().into_tvalue(),
                bound(start),
                bound(end)
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
    fn fed_bounds_are_read_as_onnx_reads_them() {
        assert_eq!(slice(1, 3), [1.0, 2.0, 11.0, 12.0]);
        // Counted from the end: x[:, -2:-1].
        assert_eq!(slice(-2, -1), [4.0, 14.0]);
        // Past the end, and far before the start.
        assert_eq!(slice(4, 100), [4.0, 5.0, 14.0, 15.0]);
        assert_eq!(slice(-100, 1), [0.0, 10.0]);
        assert_eq!(slice(0, i64::MAX).len(), 12);
        assert_eq!(slice(-(1 << 32) + 1, 3).len(), 6);
        assert_eq!(slice(i64::MIN, i64::MAX).len(), 12);
        // Crossed or equal bounds (empty in ONNX) still fail: tract's
        // Tensor::slice refuses an empty range.
    }

    #[test]
    fn bounds_made_of_shapes_and_constants_are_left_to_tract() {
        let node = |op: &str, inputs: &[&str], out: &str| NodeProto {
            op_type: op.into(),
            input: inputs.iter().map(|i| i.to_string()).collect(),
            output: vec![out.into()],
            ..Default::default()
        };
        let mut proto = ModelProto {
            graph: Some(GraphProto {
                node: vec![
                    node("Shape", &["x"], "shape"),
                    node("Gather", &["shape", "one"], "len"),
                    node("Slice", &["x", "zero", "len", "axes"], "y"),
                ],
                input: vec![value("x", OnnxType::Float, &[2, 6])],
                initializer: ["zero", "one", "axes"]
                    .map(|n| TensorProto {
                        name: n.into(),
                        data_type: OnnxType::Int64 as i32,
                        int64_data: vec![1],
                        ..Default::default()
                    })
                    .to_vec(),
                ..Default::default()
            }),
            ..Default::default()
        };
        clamp_fed_slices(&mut proto);
        assert_eq!(proto.graph.unwrap().node.len(), 3);
    }

    /// `x[:, start:end:step]` of a [2, 6] `x`, the bounds constants, clamped
    /// and run by tract.
    fn constant_slice(start: i64, end: i64, step: i64) -> Vec<f32> {
        let int = |name: &str, v: i64| TensorProto {
            name: name.into(),
            dims: vec![1],
            data_type: OnnxType::Int64 as i32,
            raw_data: v.to_le_bytes().to_vec(),
            ..Default::default()
        };
        let mut proto = ModelProto {
            ir_version: 8,
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: 13,
            }],
            graph: Some(GraphProto {
                node: vec![NodeProto {
                    op_type: "Slice".into(),
                    input: ["x", "s", "e", "axes", "steps"].map(String::from).to_vec(),
                    output: vec!["y".into()],
                    ..Default::default()
                }],
                input: vec![value("x", OnnxType::Float, &[2, 6])],
                output: vec![ValueInfoProto {
                    name: "y".into(),
                    ..Default::default()
                }],
                initializer: vec![
                    int("s", start),
                    int("e", end),
                    int("axes", 1),
                    int("steps", step),
                ],
                ..Default::default()
            }),
            ..Default::default()
        };
        clamp_constant_bounds(&mut proto);
        let model = super::super::onnx().model_for_proto_model(&proto).unwrap();
        let plan = model.into_optimized().unwrap().into_runnable().unwrap();
        let x = tract_ndarray::Array2::from_shape_fn((2, 6), |(r, c)| (r * 10 + c) as f32);
        let out = plan.run(tvec!(x.into_tensor().into_tvalue())).unwrap();
        out[0]
            .to_plain_array_view::<f32>()
            .unwrap()
            .iter()
            .copied()
            .collect()
    }

    #[test]
    fn constant_bounds_past_32_bits_are_read_as_onnx_reads_them() {
        // tract gave one row for INT64_MAX twice, every row for 2^40 twice.
        assert!(constant_slice(i64::MAX, i64::MAX, 1).is_empty());
        assert!(constant_slice(1 << 40, 1 << 40, 1).is_empty());
        assert!(constant_slice(i64::MIN, i64::MIN, 1).is_empty());
        assert_eq!(constant_slice(4, i64::MAX, 1), [4.0, 5.0, 14.0, 15.0]);
        assert_eq!(constant_slice(i64::MIN, 2, 1), [0.0, 1.0, 10.0, 11.0]);
        // Backwards from the end to before the start.
        assert_eq!(
            constant_slice(i64::MAX, i64::MIN, -2),
            [5.0, 3.0, 1.0, 15.0, 13.0, 11.0]
        );
    }
}
