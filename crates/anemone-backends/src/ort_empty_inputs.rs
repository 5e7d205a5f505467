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
//! (`scripts/ort_empty_sweep/empty_sweep.py`: run it again when ONNX
//! Runtime is upgraded); tests/python/test_torch_architectures.py checks
//! the networks users meet.

use anemone_core::{Error, InputError, Tensor, TensorSpec};
use std::collections::BTreeSet;
use tract_onnx::pb::{GraphProto, ModelProto, NodeProto};

/// Operators (domain, name; "" is ONNX's own) whose ONNX Runtime 1.31.1
/// CPU kernels end the process on some empty input. Every operator ONNX
/// Runtime runs on the CPU was run in a child process with each axis of
/// each input in turn set to 0 (14,247 runs of 2,778 models): these are the
/// ones that died or never returned. Which Einsum equations crash follows
/// no plain rule (`bnd,bmd->bnm` does, `bij,bjk->bik` does not), so every
/// Einsum counts.
const ENDS_THE_PROCESS: &[(&str, &str)] = &[
    ("", "Attention"),
    ("", "Einsum"),
    ("", "GRU"),
    ("", "LSTM"),
    ("", "STFT"),
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

/// What of `graph` a node's fate depends on besides itself.
struct Context<'a> {
    /// Initializers and `Constant` outputs.
    constants: BTreeSet<&'a str>,
    /// The values made by a `Transpose` that moves the first axis, which
    /// ONNX Runtime's optimizer fuses with a `MatMul` reading them into a
    /// `FusedMatMul` with `transBatch` (SIGFPE on an empty batch).
    batch_transposed: BTreeSet<&'a str>,
    /// Weights' ranks, for `ConvTranspose`.
    ranks: std::collections::BTreeMap<&'a str, usize>,
}

impl<'a> Context<'a> {
    fn of(g: &'a GraphProto) -> Context<'a> {
        let constant_nodes = (g.node.iter()).filter(|n| n.op_type == "Constant");
        let moves_first = |n: &NodeProto| {
            n.op_type == "Transpose"
                && n.attribute
                    .iter()
                    .find(|a| a.name == "perm")
                    .is_some_and(|a| a.ints.first().is_some_and(|&p| p != 0))
        };
        Context {
            constants: (g.initializer.iter().map(|t| t.name.as_str()))
                .chain(constant_nodes.flat_map(|n| n.output.iter().map(String::as_str)))
                .collect(),
            batch_transposed: (g.node.iter().filter(|n| moves_first(n)))
                .flat_map(|n| n.output.iter().map(String::as_str))
                .collect(),
            ranks: (g.initializer.iter())
                .map(|t| (t.name.as_str(), t.dims.len()))
                .collect(),
        }
    }
}

/// Why `node`'s kernel may end the process on an empty input, if it may:
/// one of [`ENDS_THE_PROCESS`], a 3-D `ConvTranspose` (SIGSEGV on an empty
/// depth or height; 1-D and 2-D ones answer), `Unique` along an axis
/// (SIGABRT when a later axis is empty), a `Conv` whose weights are not
/// constants (with an empty kernel it never returns), or a `MatMul` of a
/// batch-moving `Transpose` (see [`Context::batch_transposed`]).
fn fatal(node: &NodeProto, context: &Context<'_>) -> Option<String> {
    let domain = match node.domain.as_str() {
        "ai.onnx" => "",
        d => d,
    };
    let op = node.op_type.as_str();
    if ENDS_THE_PROCESS.contains(&(domain, op)) {
        return Some(match domain {
            "" => op.to_string(),
            d => format!("{d}:{op}"),
        });
    }
    if !domain.is_empty() {
        return None;
    }
    let input = |i: usize| {
        node.input
            .get(i)
            .map(String::as_str)
            .filter(|n| !n.is_empty())
    };
    let has_attr = |name: &str| node.attribute.iter().find(|a| a.name == name);
    let why = match op {
        "ConvTranspose" => {
            let kernel = has_attr("kernel_shape").map(|a| a.ints.len());
            let rank = input(1)
                .and_then(|w| context.ranks.get(w))
                .map(|r| r.saturating_sub(2));
            // Unknown (weights fed, no kernel_shape): counted.
            (kernel.or(rank).is_none_or(|spatial| spatial >= 3)).then_some("3-D ConvTranspose")
        }
        "Unique" => has_attr("axis").map(|_| "Unique along an axis"),
        "Conv" => input(1)
            .is_some_and(|w| !context.constants.contains(w))
            .then_some("Conv with weights fed at run time"),
        "MatMul" => (node.input.iter())
            .any(|i| context.batch_transposed.contains(i.as_str()))
            .then_some("MatMul of a Transpose that moves the first axis (fused by ONNX Runtime)"),
        _ => None,
    };
    why.map(str::to_string)
}

/// The operators of `model` (subgraphs and the model's local functions
/// included) that end ONNX Runtime's process on an empty input, sorted;
/// empty for most models.
///
/// ONNX Runtime inlines a local function's body where it is called, so an
/// `LSTM` inside one dies as one in the graph does. A function's body is
/// read as a graph of its own: its weights come in as the function's
/// inputs, so a `Conv` in one counts as having fed weights (an empty input
/// of such a model is refused where it might have run).
pub(crate) fn fatal_on_empty(model: &ModelProto) -> Vec<String> {
    let bodies: Vec<GraphProto> = (model.functions.iter())
        .map(|f| GraphProto {
            node: f.node.clone(),
            ..Default::default()
        })
        .collect();
    let mut found = BTreeSet::new();
    let mut stack: Vec<&GraphProto> = model.graph.iter().chain(&bodies).collect();
    while let Some(g) = stack.pop() {
        let context = Context::of(g);
        for node in &g.node {
            found.extend(fatal(node, &context));
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
        let model = |graph: Option<GraphProto>| ModelProto {
            graph,
            ..Default::default()
        };
        assert_eq!(fatal_on_empty(&model(Some(graph))), ["GRU", "LSTM"]);
        assert!(fatal_on_empty(&model(None)).is_empty());
    }

    #[test]
    fn the_fatal_operators_are_found_in_local_functions_too() {
        // A graph calling a function `enc` of domain `local` whose body
        // holds an Einsum: ONNX Runtime inlines it, and it dies as one.
        let graph = GraphProto {
            node: vec![node("enc", "local"), node("Relu", "")],
            ..Default::default()
        };
        let function = tract_onnx::pb::FunctionProto {
            name: Some("enc".into()),
            node: vec![node("Einsum", ""), node("Add", "")],
            ..Default::default()
        };
        let model = ModelProto {
            graph: Some(graph),
            functions: vec![function],
            ..Default::default()
        };
        assert_eq!(fatal_on_empty(&model), ["Einsum"]);
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
