//! Operators of other domains than ONNX's that share a name with one tract
//! knows.

use tract_onnx::pb::NodeProto;

/// The `com.microsoft` operators tract 0.23.9 implements as ONNX Runtime
/// defines them. tract looks operators up by name alone, so another
/// domain's operator of a name tract knows reached tract's own: ONNX
/// Runtime's `com.microsoft:Attention` (input, weights, bias, mask) went to
/// ONNX's `Attention` (Q, K, V, mask) and panicked at load.
const MICROSOFT_ON_TRACT: [&str; 13] = [
    "BiasGelu",
    "FastGelu",
    "QuickGelu",
    "Gelu",
    "GatherBlockQuantized",
    "GroupQueryAttention",
    "MatMulNBits",
    "MultiHeadAttention",
    "RotaryEmbedding",
    "SimplifiedLayerNormalization",
    "SkipSimplifiedLayerNormalization",
    "SkipLayerNormalization",
    "Rsqrt",
];

/// Whether tract's operator of `node`'s name is the one of `node`'s domain.
pub fn known_in_its_domain(node: &NodeProto) -> bool {
    match node.domain.as_str() {
        "" | "ai.onnx" | "ai.onnx.ml" => true,
        "com.microsoft" => MICROSOFT_ON_TRACT.contains(&node.op_type.as_str()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(domain: &str, op: &str) -> NodeProto {
        NodeProto {
            domain: domain.into(),
            op_type: op.into(),
            ..Default::default()
        }
    }

    #[test]
    fn another_domains_operator_is_not_taken_for_tracts_own() {
        assert!(known_in_its_domain(&node("", "Attention")));
        assert!(known_in_its_domain(&node(
            "ai.onnx.ml",
            "TreeEnsembleClassifier"
        )));
        assert!(known_in_its_domain(&node(
            "com.microsoft",
            "SkipLayerNormalization"
        )));
        assert!(!known_in_its_domain(&node("com.microsoft", "Attention")));
        assert!(!known_in_its_domain(&node("ai.onnx.contrib", "Relu")));
    }
}
