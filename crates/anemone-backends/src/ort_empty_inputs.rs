//! Empty inputs that ONNX Runtime 1.31.1 does not survive.
//!
//! A request may hold a tensor with a dimension of 0 wherever the model's
//! dims are dynamic, and most kernels answer an empty tensor or refuse it
//! with an error (answered 400, see [`crate::input_blame`]). A few end the
//! process instead: `std::terminate` (SIGABRT), a division by zero
//! (SIGFPE) or a segmentation fault, in ONNX Runtime's own Python API too.
//! As anemone runs ONNX Runtime in its own process, one such request would
//! end the server and every model on it. A model holding one of those
//! operators is therefore not given an empty input: the request is refused
//! (400) before the run, naming the operators, and every other request of
//! the model is served as before. The list comes from running every
//! operator on empty inputs in a child process
//! (tests/python/test_torch_architectures.py checks the ones users meet).

use anemone_core::{Error, InputError, Tensor, TensorSpec};
use std::collections::BTreeSet;
use tract_onnx::pb::{GraphProto, NodeProto};

/// Operators (domain, name; "" is ONNX's own) whose ONNX Runtime 1.31.1
/// CPU kernels end the process on some empty input: every one of them ran
/// in a child process on inputs with each axis in turn set to 0.
const ENDS_THE_PROCESS: &[(&str, &str)] = &[
    ("", "Attention"),
    ("", "ConvTranspose"),
    ("", "Einsum"),
    ("", "GRU"),
    ("", "LSTM"),
    ("", "STFT"),
    ("", "Unique"),
    ("ai.onnx.ml", "FeatureVectorizer"),
    ("com.microsoft", "DynamicQuantizeLSTM"),
    ("com.microsoft", "FusedMatMul"),
    ("com.microsoft", "GroupQueryAttention"),
    ("com.microsoft", "Inverse"),
    ("com.microsoft", "LinearAttention"),
    ("com.microsoft", "MoE"),
    ("com.microsoft", "MultiHeadAttention"),
    ("com.microsoft", "QAttention"),
    ("com.microsoft", "RotaryEmbedding"),
    ("com.microsoft", "SkipLayerNormalization"),
    ("com.microsoft", "SkipSimplifiedLayerNormalization"),
];

/// Whether `node`'s kernel may end the process on an empty input: one of
/// [`ENDS_THE_PROCESS`], or a `Conv` whose weights are not constants (with
/// empty ones it never returns).
fn fatal(node: &NodeProto, constants: &BTreeSet<&str>) -> Option<String> {
    let domain = match node.domain.as_str() {
        "ai.onnx" => "",
        d => d,
    };
    let listed = ENDS_THE_PROCESS.contains(&(domain, node.op_type.as_str()));
    let fed_weights = node.op_type == "Conv"
        && domain.is_empty()
        && node
            .input
            .get(1)
            .is_some_and(|w| !constants.contains(w.as_str()));
    (listed || fed_weights).then(|| match (domain, fed_weights) {
        (_, true) => "Conv with weights fed at run time".to_string(),
        ("", false) => node.op_type.clone(),
        (d, false) => format!("{d}:{}", node.op_type),
    })
}

/// The operators of `graph` (subgraphs included) that end ONNX Runtime's
/// process on an empty input, sorted; empty for most models.
pub(crate) fn fatal_on_empty(graph: Option<&GraphProto>) -> Vec<String> {
    let mut found = BTreeSet::new();
    let mut stack: Vec<&GraphProto> = graph.into_iter().collect();
    while let Some(g) = stack.pop() {
        let constants: BTreeSet<&str> = (g.initializer.iter().map(|t| t.name.as_str()))
            .chain(
                (g.node.iter())
                    .filter(|n| n.op_type == "Constant")
                    .flat_map(|n| n.output.iter().map(String::as_str)),
            )
            .collect();
        for node in &g.node {
            found.extend(fatal(node, &constants));
            for a in &node.attribute {
                stack.extend(a.g.iter().chain(&a.graphs));
            }
        }
    }
    found.into_iter().collect()
}

/// The refusal of `inputs` when one is empty and the model holds one of
/// `fatal` (from [`fatal_on_empty`]); `None` to run them.
pub(crate) fn refuse_empty(
    specs: &[TensorSpec],
    inputs: &[Tensor],
    fatal: &[String],
) -> Option<Error> {
    if fatal.is_empty() {
        return None;
    }
    let empty: Vec<String> = (specs.iter().zip(inputs))
        .filter(|(_, t)| t.shape().contains(&0))
        .map(|(s, t)| format!("{} {:?}", s.name, t.shape()))
        .collect();
    if empty.is_empty() {
        return None;
    }
    Some(Error::Input(InputError::Rejected {
        name: (specs.iter().zip(inputs))
            .filter(|(_, t)| t.shape().contains(&0))
            .map(|(s, _)| s.name.clone())
            .collect::<Vec<_>>()
            .join(", "),
        backend: crate::onnxruntime::NAME.into(),
        message: format!(
            "the input {} is empty (a dimension of 0), and ONNX Runtime 1.31.1 ends its process on empty \
             tensors in the model's {} (so anemone does not run it); send at least one element along every \
             dimension, or serve the model on tract-cpu",
            empty.join(", "),
            fatal.join(", ")
        ),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use anemone_core::DataType;
    use tract_onnx::pb::{AttributeProto, NodeProto};

    fn node(op: &str, domain: &str) -> NodeProto {
        NodeProto {
            op_type: op.into(),
            domain: domain.into(),
            ..Default::default()
        }
    }

    #[test]
    fn the_fatal_operators_are_found_in_subgraphs_too() {
        let body = GraphProto {
            node: vec![node("GRU", "")],
            ..Default::default()
        };
        let mut loop_node = node("Loop", "");
        loop_node.attribute.push(AttributeProto {
            name: "body".into(),
            g: Some(body),
            ..Default::default()
        });
        let graph = GraphProto {
            node: vec![
                node("LSTM", "ai.onnx"),
                node("Add", ""),
                node("Einsum", "custom"),
                loop_node,
            ],
            ..Default::default()
        };
        assert_eq!(fatal_on_empty(Some(&graph)), ["GRU", "LSTM"]);
        assert!(fatal_on_empty(None).is_empty());
    }

    #[test]
    fn only_an_empty_input_of_such_a_model_is_refused() {
        use anemone_core::Dim::Any;
        let specs = vec![
            TensorSpec::new("x", DataType::F32, vec![Any, Any]),
            TensorSpec::new("y", DataType::F32, vec![Any]),
        ];
        let full = Tensor::from_vec(vec![2, 2], vec![1.0f32; 4]).unwrap();
        let empty = Tensor::from_vec(vec![0], Vec::<f32>::new()).unwrap();
        let lstm = ["LSTM".to_string()];
        assert!(refuse_empty(&specs, &[full.clone(), empty.clone()], &[]).is_none());
        assert!(refuse_empty(&specs, &[full.clone(), full.clone()], &lstm).is_none());
        let e = refuse_empty(&specs, &[full, empty], &lstm).unwrap();
        assert_eq!(e.kind(), anemone_core::ErrorKind::InvalidInput);
        let text = e.to_string();
        assert!(
            text.contains("'y'") && text.contains("y [0]") && text.contains("LSTM"),
            "{text}"
        );
    }
}
