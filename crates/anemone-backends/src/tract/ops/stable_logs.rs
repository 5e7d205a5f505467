//! `LogSoftmax`, `Softplus` and `ReduceLogSumExp`, rewritten before tract
//! parses them into the numerically stable forms ONNX Runtime computes.
//!
//! tract 0.23.9 computes `LogSoftmax` as the log of a softmax, so a masked
//! logit (-1e4, -1e9) whose softmax underflows comes out -inf where ONNX
//! Runtime answers -10001.31 (and -inf feeds NaN downstream); its
//! `Softplus` and `ReduceLogSumExp` take `exp` of inputs above 88 and
//! answer inf for 100 (tests/python/test_operator_sweep.py). The rewrite:
//!
//! - `LogSoftmax(x, axis)` = `d - Log(ReduceSum(Exp(d)))` with
//!   `d = x - ReduceMax(x)` over `axis` (opset 13 on); before opset 13, over
//!   the rows of `Flatten(x, axis)`, reshaped back to `x`'s shape;
//! - `Softplus(x)` = `Relu(x) + Softplus(-|x|)`, whose `exp` never exceeds 1;
//! - `ReduceLogSumExp(x)` = `Log(ReduceSum(Exp(x - m))) + m'` with `m` the
//!   maximum kept over the reduced axes and `m'` as `keepdims` asks.

use tract_onnx::pb::{
    attribute_proto::AttributeType, AttributeProto, GraphProto, ModelProto, NodeProto,
};

/// The reductions' axes, as the opset takes them: an attribute up to a
/// version, an input from it (`ReduceSum` 13, `ReduceMax` 18).
#[derive(Clone)]
enum Axes {
    /// Every axis (none given).
    All,
    /// Constant axes.
    Listed(Vec<i64>),
    /// An input tensor's name (opset 18 on).
    Input(String),
}

/// `ReduceMax`, whose axes are an input from opset 18.
const MAX: (&str, i64) = ("ReduceMax", 18);
/// `ReduceSum`, whose axes are an input from opset 13.
const SUM: (&str, i64) = ("ReduceSum", 13);

struct Expander {
    opset: i64,
    count: usize,
}

use super::{attr, int_attr as int};

impl Expander {
    fn name(&mut self, what: &str) -> String {
        self.count += 1;
        format!("anemone_stable_{}_{what}", self.count)
    }

    fn node(
        &mut self,
        op: &str,
        inputs: Vec<String>,
        attrs: Vec<AttributeProto>,
    ) -> (NodeProto, String) {
        let out = self.name(&op.to_ascii_lowercase());
        (super::proto::node(&out, op, inputs, attrs), out)
    }

    /// A reduction `op` (its name, and the opset from which its axes are
    /// an input) of `x` over `axes`.
    fn reduce(
        &mut self,
        nodes: &mut Vec<NodeProto>,
        (op, from): (&str, i64),
        x: &str,
        axes: &Axes,
        keepdims: i64,
        extra: &[AttributeProto],
    ) -> String {
        let mut attrs = vec![int("keepdims", keepdims)];
        attrs.extend_from_slice(extra);
        let mut inputs = vec![x.to_string()];
        match (axes, self.opset >= from) {
            (Axes::All, _) => {}
            (Axes::Listed(list), false) => attrs.push(AttributeProto {
                name: "axes".into(),
                r#type: AttributeType::Ints as i32,
                ints: list.clone(),
                ..Default::default()
            }),
            (Axes::Listed(list), true) => {
                let value = super::proto::tensor_attr("value", super::proto::ints(list));
                let (constant, name) = self.node("Constant", vec![], vec![value]);
                nodes.push(constant);
                inputs.push(name);
            }
            (Axes::Input(name), _) => inputs.push(name.clone()),
        }
        let (node, out) = self.node(op, inputs, attrs);
        nodes.push(node);
        out
    }

    /// `node`'s stable form, or `None` to keep it.
    fn expand(&mut self, node: &NodeProto) -> Option<Vec<NodeProto>> {
        let x = node.input.first().filter(|i| !i.is_empty())?.clone();
        let y = node.output.first().filter(|o| !o.is_empty())?.clone();
        let mut nodes = Vec::new();
        let last = match node.op_type.as_str() {
            "Softplus" => {
                let (abs, a) = self.node("Abs", vec![x.clone()], vec![]);
                let (neg, n) = self.node("Neg", vec![a], vec![]);
                let (soft, s) = self.node("Softplus", vec![n], vec![]);
                let (relu, r) = self.node("Relu", vec![x], vec![]);
                nodes.extend([abs, neg, soft, relu]);
                ("Add", vec![r, s])
            }
            // Reshape takes its shape as an input from opset 5.
            "LogSoftmax" if self.opset >= 5 => {
                // Before opset 13 the axis (1 by default) splits x into
                // rows and the rest, as Flatten does, and each row is one
                // distribution; from 13 it is one axis (-1 by default).
                let flattens = self.opset < 13;
                let axis = attr(node, "axis").map_or(if flattens { 1 } else { -1 }, |a| a.i);
                let (rows, axes) = match flattens {
                    true => {
                        let (flat, f) =
                            self.node("Flatten", vec![x.clone()], vec![int("axis", axis)]);
                        nodes.push(flat);
                        (f, Axes::Listed(vec![1]))
                    }
                    false => (x.clone(), Axes::Listed(vec![axis])),
                };
                let m = self.reduce(&mut nodes, MAX, &rows, &axes, 1, &[]);
                let (sub, d) = self.node("Sub", vec![rows, m], vec![]);
                let (exp, e) = self.node("Exp", vec![d.clone()], vec![]);
                nodes.extend([sub, exp]);
                let s = self.reduce(&mut nodes, SUM, &e, &axes, 1, &[]);
                let (log, l) = self.node("Log", vec![s], vec![]);
                nodes.push(log);
                match flattens {
                    true => {
                        let (sub, z) = self.node("Sub", vec![d, l], vec![]);
                        let (shape, sh) = self.node("Shape", vec![x], vec![]);
                        nodes.extend([sub, shape]);
                        ("Reshape", vec![z, sh])
                    }
                    false => ("Sub", vec![d, l]),
                }
            }
            "ReduceLogSumExp" => {
                let keepdims = attr(node, "keepdims").map_or(1, |a| a.i);
                let axes = match (
                    node.input.get(1).filter(|a| !a.is_empty()),
                    attr(node, "axes"),
                ) {
                    (Some(input), _) => Axes::Input(input.clone()),
                    (None, Some(a)) => Axes::Listed(a.ints.clone()),
                    (None, None) => Axes::All,
                };
                // noop_with_empty_axes (opset 18) goes to each reduction.
                let extra: Vec<AttributeProto> = attr(node, "noop_with_empty_axes")
                    .cloned()
                    .into_iter()
                    .collect();
                let m = self.reduce(&mut nodes, MAX, &x, &axes, 1, &extra);
                let (sub, d) = self.node("Sub", vec![x.clone(), m], vec![]);
                let (exp, e) = self.node("Exp", vec![d], vec![]);
                nodes.extend([sub, exp]);
                let s = self.reduce(&mut nodes, SUM, &e, &axes, keepdims, &extra);
                let (log, l) = self.node("Log", vec![s], vec![]);
                nodes.push(log);
                let kept = self.reduce(&mut nodes, MAX, &x, &axes, keepdims, &extra);
                ("Add", vec![l, kept])
            }
            _ => return None,
        };
        nodes.push(NodeProto {
            name: node.name.clone(),
            op_type: last.0.into(),
            input: last.1,
            output: vec![y],
            ..Default::default()
        });
        Some(nodes)
    }

    fn graph(&mut self, graph: &mut GraphProto) {
        let mut out = Vec::with_capacity(graph.node.len());
        for mut node in std::mem::take(&mut graph.node) {
            for a in &mut node.attribute {
                for g in a.g.iter_mut().chain(a.graphs.iter_mut()) {
                    self.graph(g);
                }
            }
            match self.expand(&node) {
                Some(nodes) => out.extend(nodes),
                None => out.push(node),
            }
        }
        graph.node = out;
    }
}

/// Rewrites every `LogSoftmax` (opset 5 on), `Softplus` and
/// `ReduceLogSumExp` of `proto` into its stable form (module docs).
pub fn stable_logs(proto: &mut ModelProto) {
    let opset = proto
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map_or(1, |o| o.version);
    let mut expander = Expander { opset, count: 0 };
    if let Some(graph) = proto.graph.as_mut() {
        expander.graph(graph);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::pb::tensor_proto::DataType as OnnxType;
    use tract_onnx::pb::{type_proto, OperatorSetIdProto, TypeProto, ValueInfoProto};
    use tract_onnx::prelude::*;

    fn value(name: &str, dims: &[i64]) -> ValueInfoProto {
        use tract_onnx::pb::tensor_shape_proto::{dimension::Value as Dim, Dimension};
        ValueInfoProto {
            name: name.into(),
            r#type: Some(TypeProto {
                value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                    elem_type: OnnxType::Float as i32,
                    shape: Some(tract_onnx::pb::TensorShapeProto {
                        dim: dims
                            .iter()
                            .map(|&d| Dimension {
                                value: Some(Dim::DimValue(d)),
                                ..Default::default()
                            })
                            .collect(),
                    }),
                })),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// One node `op` of `x` [2, 4] at `opset`, rewritten, run by tract.
    fn run(
        op: &str,
        attrs: Vec<AttributeProto>,
        opset: i64,
        out_dims: &[i64],
        x: [[f32; 4]; 2],
    ) -> Vec<f32> {
        let mut proto = ModelProto {
            ir_version: 8,
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: opset,
            }],
            graph: Some(GraphProto {
                node: vec![NodeProto {
                    op_type: op.into(),
                    input: vec!["x".into()],
                    output: vec!["y".into()],
                    attribute: attrs,
                    ..Default::default()
                }],
                input: vec![value("x", &[2, 4])],
                output: vec![value("y", out_dims)],
                ..Default::default()
            }),
            ..Default::default()
        };
        stable_logs(&mut proto);
        assert!(
            proto.graph.as_ref().unwrap().node.len() > 1,
            "{op} rewritten"
        );
        let model = super::super::onnx().model_for_proto_model(&proto).unwrap();
        let plan = model.into_optimized().unwrap().into_runnable().unwrap();
        let input = tract_ndarray::arr2(&x).into_tensor();
        let out = plan.run(tvec!(input.into_tvalue())).unwrap();
        out[0]
            .to_plain_array_view::<f32>()
            .unwrap()
            .iter()
            .copied()
            .collect()
    }

    fn close(got: &[f32], want: &[f32]) {
        assert_eq!(got.len(), want.len(), "{got:?}");
        for (g, w) in got.iter().zip(want) {
            assert!(
                (g - w).abs() <= 1e-3 * w.abs().max(1.0),
                "{got:?} against {want:?}"
            );
        }
    }

    #[test]
    fn masked_logits_keep_their_finite_log_probabilities() {
        // ONNX Runtime's answers; tract's own LogSoftmax gave -inf for the
        // masked ones.
        let axis = AttributeProto {
            name: "axis".into(),
            i: -1,
            r#type: AttributeType::Int as i32,
            ..Default::default()
        };
        let got = run(
            "LogSoftmax",
            vec![axis],
            13,
            &[2, 4],
            [[0.0, -1e4, 1.0, -1e9], [3.0, 2.0, -1e4, 0.0]],
        );
        close(
            &got,
            &[
                -1.3133, -10001.313, -0.3133, -1e9, -0.349, -1.349, -10003.349, -3.349,
            ],
        );
    }

    #[test]
    fn before_opset_13_the_axis_flattens_what_follows_it() {
        // Opset 11, axis 0: one distribution over all eight values; tract's
        // own LogSoftmax gave -inf for all but the largest.
        let got = run(
            "LogSoftmax",
            vec![int("axis", 0)],
            11,
            &[2, 4],
            [[1000.0, 1.0, 2.0, 0.0], [-1000.0, 0.0, 1.0, 3.0]],
        );
        close(
            &got,
            &[
                0.0, -999.0, -998.0, -1000.0, -2000.0, -1000.0, -999.0, -997.0,
            ],
        );
    }

    #[test]
    fn softplus_and_log_sum_exp_do_not_overflow() {
        let got = run(
            "Softplus",
            vec![],
            13,
            &[2, 4],
            [[-100.0, 0.0, 89.0, 100.0], [1.0, -1.0, 20.0, 2.0]],
        );
        close(
            &got,
            &[
                0.0,
                std::f32::consts::LN_2,
                89.0,
                100.0,
                1.3133,
                0.3133,
                20.0,
                2.1269,
            ],
        );
        let axes = AttributeProto {
            name: "axes".into(),
            ints: vec![1],
            r#type: AttributeType::Ints as i32,
            ..Default::default()
        };
        let keep = int("keepdims", 0);
        let got = run(
            "ReduceLogSumExp",
            vec![axes, keep],
            13,
            &[2],
            [[100.0, 100.0, 1.0, -5.0], [0.0, 0.0, 0.0, 0.0]],
        );
        close(&got, &[100.6931, 1.3863]);
    }
}
