//! Fixtures shared by the configuration tests.

use anemone_core::{DataType as CoreType, Dim, ModelFormat, ModelMetadata, TensorSpec};

use crate::proto::{DataType as ProtoType, ModelConfig, ModelInput, ModelVersionPolicy};

pub(super) const REALISTIC: &str = r#"
# ResNet-50 exported from PyTorch
name: "resnet50"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [
  {
    name: "input"
    data_type: TYPE_FP32
    dims: [ 3, 224, 224 ]
  }
]
output [
  {
    name: "logits"
    data_type: TYPE_FP32
    dims: [ 1000 ]
  }
]
version_policy: { latest { num_versions: 2 } }
instance_group [ { count: 2 kind: KIND_CPU } ]
parameters { key: "backends" value: { string_value: "tract-cpu" } }
default_model_filename: "model.onnx"
"#;

pub(super) fn spec(name: &str, dtype: CoreType, shape: Vec<Dim>) -> TensorSpec {
    TensorSpec::new(name, dtype, shape)
}

pub(super) fn meta(inputs: Vec<TensorSpec>, outputs: Vec<TensorSpec>) -> ModelMetadata {
    ModelMetadata {
        format: ModelFormat::Onnx,
        inputs,
        outputs,
        producer: Some("pytorch 2.4".into()),
        opsets: vec![(String::new(), 17)],
        parameter_count: 0,
        file_size: 0,
        weight_bytes: 0,
        properties: vec![],
    }
}

pub(super) fn resnet_meta() -> ModelMetadata {
    let batch = || Dim::Named("batch".into());
    meta(
        vec![spec(
            "input",
            CoreType::F32,
            vec![batch(), Dim::Fixed(3), Dim::Fixed(224), Dim::Fixed(224)],
        )],
        vec![spec(
            "logits",
            CoreType::F32,
            vec![batch(), Dim::Fixed(1000)],
        )],
    )
}

pub(super) fn err_pbtxt(text: &str) -> String {
    super::parse_pbtxt(text).expect_err("should be refused")
}

pub(super) fn input(name: &str, dt: ProtoType, dims: Vec<i64>) -> ModelInput {
    ModelInput {
        name: name.into(),
        data_type: dt as i32,
        dims,
        ..Default::default()
    }
}

pub(super) fn with_policy(
    choice: Option<crate::proto::model_version_policy::PolicyChoice>,
) -> ModelConfig {
    ModelConfig {
        version_policy: Some(ModelVersionPolicy {
            policy_choice: choice,
        }),
        ..Default::default()
    }
}
