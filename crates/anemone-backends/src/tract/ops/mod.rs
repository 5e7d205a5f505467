//! ONNX operators anemone adds to, or fixes in, tract's ONNX front end.

mod domains;
mod elem_types;
mod fed_slice;
mod int64_cast;
mod negative_indices;
mod onnx_if;
pub mod onnx_loop;
mod proto;
mod rnn_states;
mod run_failures;
mod stable_logs;
mod tree_labels;
mod wrong_answers;

pub use domains::known_in_its_domain;
pub use run_failures::run_failures;
pub use tree_labels::unsupported_tree_layout;
pub use wrong_answers::wrong_answers;

use tract_onnx::pb::{attribute_proto::AttributeType, AttributeProto, ModelProto, NodeProto};
use tract_onnx::Onnx;

/// `node`'s attribute `name`, if it has one.
fn attr<'a>(node: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

/// An integer attribute.
fn int_attr(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Int as i32,
        i: value,
        ..Default::default()
    }
}

/// tract's ONNX front end with anemone's operator additions registered.
pub fn onnx() -> Onnx {
    let mut onnx = tract_onnx::onnx();
    int64_cast::register(&mut onnx.op_register);
    onnx_if::register(&mut onnx.op_register);
    onnx_loop::register(&mut onnx.op_register);
    onnx
}

/// Rewrites a model before parsing so that [`onnx`]'s additions apply.
pub fn prepare_proto(proto: &mut ModelProto) {
    int64_cast::mark_data_casts(proto);
    tree_labels::label_from_scores(proto);
    wrong_answers::default_constant_of_shape(proto);
    stable_logs::stable_logs(proto);
    run_failures::bool_equal(proto);
    fed_slice::clamp_constant_bounds(proto);
    fed_slice::clamp_fed_slices(proto);
    negative_indices::from_the_end(proto);
    rnn_states::zero_initial_states(proto);
}
