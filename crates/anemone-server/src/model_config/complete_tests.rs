//! Tests of `complete`: filling a configuration from the model, and
//! checking what it gives against the model.

use super::*;
use crate::model_config::fixtures::*;
use crate::model_config::versions_to_load;
use anemone_core::DataType as CoreType;

#[test]
fn complete_fills_from_model_without_batching() {
    let m = meta(
        vec![
            spec(
                "x",
                CoreType::F32,
                vec![Dim::Named("n".into()), Dim::Fixed(3), Dim::Any],
            ),
            spec("mask", CoreType::Bool, vec![]),
        ],
        vec![
            spec(
                "y",
                CoreType::I64,
                vec![Dim::Named("n".into()), Dim::Fixed(10)],
            ),
            TensorSpec {
                name: "z".into(),
                dtype: CoreType::Bytes,
                shape: None,
            },
        ],
    );
    let c = complete(None, "net", &m).unwrap();
    assert_eq!(c.name, "net");
    assert_eq!(c.platform, "onnxruntime_onnx");
    assert_eq!(c.backend, "onnxruntime");
    assert_eq!(c.max_batch_size, 0);
    assert_eq!(c.input.len(), 2);
    assert_eq!(
        (c.input[0].name.as_str(), c.input[0].data_type),
        ("x", ProtoType::TypeFp32 as i32)
    );
    assert_eq!(c.input[0].dims, vec![-1, 3, -1]);
    assert_eq!(c.input[1].data_type, ProtoType::TypeBool as i32);
    assert!(c.input[1].dims.is_empty());
    assert_eq!(c.output[0].data_type, ProtoType::TypeInt64 as i32);
    assert_eq!(c.output[0].dims, vec![-1, 10]);
    assert_eq!(c.output[1].data_type, ProtoType::TypeString as i32);
    assert_eq!(c.output[1].dims, vec![-1]);
    assert_eq!(versions_to_load(&c, &[1, 2]).unwrap(), vec![2]);
    // Given config values are kept.
    let given = ModelConfig {
        backend: "tract".into(),
        ..Default::default()
    };
    let c = complete(Some(given), "net", &m).unwrap();
    assert_eq!(
        (c.platform.as_str(), c.backend.as_str()),
        ("onnxruntime_onnx", "tract")
    );
}

#[test]
fn complete_fills_from_model_with_batching() {
    let given = ModelConfig {
        max_batch_size: 8,
        ..Default::default()
    };
    let c = complete(Some(given), "resnet50", &resnet_meta()).unwrap();
    assert_eq!(c.input[0].dims, vec![3, 224, 224]);
    assert_eq!(c.output[0].dims, vec![1000]);
    assert_eq!(c.max_batch_size, 8);
    // Fixed first dimension cannot batch.
    let m = meta(
        vec![spec("x", CoreType::F32, vec![Dim::Fixed(1), Dim::Fixed(3)])],
        vec![],
    );
    let e = complete(
        Some(ModelConfig {
            max_batch_size: 4,
            ..Default::default()
        }),
        "m",
        &m,
    )
    .unwrap_err();
    assert!(
        e.contains("max_batch_size is set but input 'x' has a fixed first dimension 1"),
        "{e}"
    );
    let m = meta(
        vec![spec("x", CoreType::F32, vec![Dim::Any])],
        vec![spec("y", CoreType::F32, vec![])],
    );
    let e = complete(
        Some(ModelConfig {
            max_batch_size: 4,
            ..Default::default()
        }),
        "m",
        &m,
    )
    .unwrap_err();
    assert!(e.contains("output 'y' is a scalar"), "{e}");
}

#[test]
fn complete_checks_given_tensors() {
    let m = resnet_meta();
    let cfg = |inputs: Vec<ModelInput>, mbs: i32| ModelConfig {
        max_batch_size: mbs,
        input: inputs,
        ..Default::default()
    };

    // -1 matches a fixed dim; empty data_type and dims are filled.
    let ok = complete(
        Some(cfg(
            vec![input("input", ProtoType::TypeFp32, vec![3, -1, -1])],
            2,
        )),
        "r",
        &m,
    )
    .unwrap();
    assert_eq!(ok.input[0].dims, vec![3, -1, -1]);
    assert_eq!(ok.output[0].dims, vec![1000]);
    let ok = complete(
        Some(cfg(vec![input("input", ProtoType::TypeInvalid, vec![])], 2)),
        "r",
        &m,
    )
    .unwrap();
    assert_eq!(ok.input[0].data_type, ProtoType::TypeFp32 as i32);
    assert_eq!(ok.input[0].dims, vec![3, 224, 224]);
    // Without batching the dims include the batch dimension.
    let ok = complete(
        Some(cfg(
            vec![input("input", ProtoType::TypeFp32, vec![-1, 3, 224, 224])],
            0,
        )),
        "r",
        &m,
    )
    .unwrap();
    assert_eq!(ok.input[0].dims, vec![-1, 3, 224, 224]);

    let e = complete(
        Some(cfg(
            vec![input("input", ProtoType::TypeFp16, vec![3, 224, 224])],
            2,
        )),
        "r",
        &m,
    )
    .unwrap_err();
    assert!(
        e.contains("input 'input'") && e.contains("TYPE_FP16") && e.contains("TYPE_FP32"),
        "{e}"
    );
    let e = complete(
        Some(cfg(
            vec![input("input", ProtoType::TypeFp32, vec![3, 256, 224])],
            2,
        )),
        "r",
        &m,
    )
    .unwrap_err();
    assert!(e.contains("dims[1] is 256") && e.contains("224"), "{e}");
    let e = complete(
        Some(cfg(
            vec![input("input", ProtoType::TypeFp32, vec![-1, 3, 224, 224])],
            2,
        )),
        "r",
        &m,
    )
    .unwrap_err();
    assert!(e.contains("4 dimension(s)") && e.contains("batch"), "{e}");
    let e = complete(
        Some(cfg(
            vec![input("image", ProtoType::TypeFp32, vec![3, 224, 224])],
            2,
        )),
        "r",
        &m,
    )
    .unwrap_err();
    assert!(
        e.contains("'image' is not an input of the model") && e.contains("input"),
        "{e}"
    );
    let e = complete(
        Some(cfg(vec![input("", ProtoType::TypeFp32, vec![])], 2)),
        "r",
        &m,
    )
    .unwrap_err();
    assert!(e.contains("input[0] has no name"), "{e}");

    let two = meta(
        vec![
            spec("a", CoreType::I64, vec![Dim::Any]),
            spec("b", CoreType::I64, vec![Dim::Any]),
        ],
        vec![
            spec("y", CoreType::F32, vec![Dim::Any]),
            spec("z", CoreType::F32, vec![Dim::Any]),
        ],
    );
    let e = complete(
        Some(cfg(vec![input("a", ProtoType::TypeInt64, vec![-1])], 0)),
        "t",
        &two,
    )
    .unwrap_err();
    assert!(e.contains("model input 'b' is missing"), "{e}");
    let dup = vec![
        input("a", ProtoType::TypeInt64, vec![-1]),
        input("a", ProtoType::TypeInt64, vec![-1]),
    ];
    assert!(complete(Some(cfg(dup, 0)), "t", &two)
        .unwrap_err()
        .contains("listed twice"));
    // Outputs may be a subset but must exist and match.
    let mut c = cfg(vec![], 0);
    c.output = vec![ModelOutput {
        name: "z".into(),
        data_type: ProtoType::TypeFp32 as i32,
        dims: vec![-1],
        ..Default::default()
    }];
    let done = complete(Some(c.clone()), "t", &two).unwrap();
    assert_eq!(done.output.len(), 1);
    assert_eq!(done.input.len(), 2);
    c.output[0].name = "w".into();
    assert!(complete(Some(c.clone()), "t", &two)
        .unwrap_err()
        .contains("'w' is not an output of the model; the model's outputs are: y, z"));
    c.output[0].name = "z".into();
    c.output[0].data_type = ProtoType::TypeInt32 as i32;
    assert!(complete(Some(c), "t", &two)
        .unwrap_err()
        .contains("output 'z'"));

    // Batching with given inputs still requires a dynamic first dim.
    let fixed = meta(
        vec![spec("x", CoreType::F32, vec![Dim::Fixed(1), Dim::Fixed(3)])],
        vec![],
    );
    let e = complete(
        Some(cfg(vec![input("x", ProtoType::TypeFp32, vec![3])], 4)),
        "m",
        &fixed,
    )
    .unwrap_err();
    assert!(
        e.contains("max_batch_size is set but input 'x' has a fixed first dimension 1"),
        "{e}"
    );
}

#[test]
fn complete_checks_name_and_platform() {
    let m = resnet_meta();
    let e = complete(
        Some(ModelConfig {
            name: "other".into(),
            ..Default::default()
        }),
        "resnet50",
        &m,
    )
    .unwrap_err();
    assert!(e.contains("'other'") && e.contains("'resnet50'"), "{e}");
    let kept = complete(
        Some(ModelConfig {
            platform: "anemone".into(),
            ..Default::default()
        }),
        "r",
        &m,
    )
    .unwrap();
    assert_eq!(kept.platform, "anemone");
    let mut coreml = m.clone();
    coreml.format = ModelFormat::CoreMl;
    assert_eq!(complete(None, "r", &coreml).unwrap().platform, "anemone");
}

#[test]
fn instance_groups_are_named_and_counted_as_triton_shows_them() {
    let group = |name: &str, count: i32| crate::proto::ModelInstanceGroup {
        name: name.into(),
        count,
        ..Default::default()
    };
    let done = complete(
        Some(ModelConfig {
            instance_group: vec![group("", 0), group("mine", 3), group("", 2)],
            ..Default::default()
        }),
        "r",
        &resnet_meta(),
    )
    .unwrap();
    let got: Vec<(&str, i32)> = done
        .instance_group
        .iter()
        .map(|g| (g.name.as_str(), g.count))
        .collect();
    // tritonserver 2.51 showed `count: 0` as 1, and a group without a
    // name as `{model}_{index}` ("add0_0").
    assert_eq!(got, [("r_0", 1), ("mine", 3), ("r_2", 2)]);
    assert!(complete(None, "r", &resnet_meta())
        .unwrap()
        .instance_group
        .is_empty());
}

/// Triton's `qa/L0_scalar_io`: a rank-0 model input configured `dims: [ 1 ]`
/// is served as one element, through a reshape to a scalar.
#[test]
fn a_scalar_given_dims_one_is_reshaped_to_a_scalar() {
    let m = meta(
        vec![spec("INPUT", CoreType::F32, vec![])],
        vec![spec("OUTPUT", CoreType::F32, vec![])],
    );
    let cfg = ModelConfig {
        input: vec![input("INPUT", ProtoType::TypeFp32, vec![1])],
        ..Default::default()
    };
    let c = complete(Some(cfg), "scalar", &m).unwrap();
    assert_eq!(c.input[0].dims, vec![1]);
    assert_eq!(
        c.input[0].reshape.as_ref().map(|r| r.shape.clone()),
        Some(vec![])
    );
    // Other dims are still refused; an output left out is filled as the model's.
    let cfg = ModelConfig {
        input: vec![input("INPUT", ProtoType::TypeFp32, vec![2])],
        ..Default::default()
    };
    let e = complete(Some(cfg), "scalar", &m).unwrap_err();
    assert!(e.contains("dims [2] have 1 dimension(s)"), "{e}");
}
