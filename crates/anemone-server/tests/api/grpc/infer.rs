//! ModelInfer: raw and typed contents, requested outputs, and every
//! integer and bool type (and a scalar) against the reference outputs.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infer_with_raw_and_typed_contents() {
    let server = TestServer::start(examples(), ControlMode::None).await;
    let mut c = server.ready_client().await;
    let (sum, diff) = (zip(&X, &Y, |a, b| a + b), zip(&X, &Y, |a, b| a - b));

    for request in [add_raw(&X, &Y), add_typed(&X, &Y)] {
        let r = c.model_infer(request).await.unwrap().into_inner();
        assert_eq!(
            (
                r.model_name.as_str(),
                r.model_version.as_str(),
                r.id.as_str()
            ),
            ("add", "1", "")
        );
        assert_eq!(
            r.outputs
                .iter()
                .map(|o| o.name.as_str())
                .collect::<Vec<_>>(),
            ["sum", "diff"]
        );
        for (name, want) in [("sum", &sum), ("diff", &diff)] {
            let (meta, raw) = output(&r, name);
            assert_eq!(
                (meta.datatype.as_str(), meta.shape.as_slice()),
                ("FP32", &[2, 4][..])
            );
            assert!(
                meta.contents.is_none(),
                "outputs travel in raw_output_contents"
            );
            assert_eq!(&f32s(raw), want, "{name}");
        }
    }

    // A subset of outputs, and an id and parameters of every kind: the id
    // comes back, the parameters do not (as tritonserver 2.51 answers).
    let mut request = add_raw(&X[..4], &Y[..4]);
    request.id = "req-42".into();
    request.outputs = vec![InferRequestedOutputTensor {
        name: "diff".into(),
        ..Default::default()
    }];
    request.parameters = HashMap::from([
        (
            "timeout".to_string(),
            param(ParameterChoice::Int64Param(30_000_000)),
        ),
        ("flag".to_string(), param(ParameterChoice::BoolParam(true))),
        (
            "label".to_string(),
            param(ParameterChoice::StringParam("hello".into())),
        ),
        (
            "ratio".to_string(),
            param(ParameterChoice::DoubleParam(0.5)),
        ),
        (
            "big".to_string(),
            param(ParameterChoice::Uint64Param(u64::MAX)),
        ),
    ]);
    let r = c.model_infer(request.clone()).await.unwrap().into_inner();
    assert_eq!(r.id, "req-42");
    assert!(r.parameters.is_empty(), "{:?}", r.parameters);
    assert_eq!(r.outputs.len(), 1);
    let (meta, raw) = output(&r, "diff");
    assert_eq!(meta.shape, [1, 4]);
    assert_eq!(f32s(raw), diff[..4]);

    // Outputs come in the model's order, whatever order they are asked in
    // (as Triton answers them).
    let mut request = add_raw(&X[..4], &Y[..4]);
    request.outputs = ["diff", "sum"]
        .map(|n| InferRequestedOutputTensor {
            name: n.into(),
            ..Default::default()
        })
        .to_vec();
    let r = c.model_infer(request).await.unwrap().into_inner();
    assert_eq!(
        r.outputs
            .iter()
            .map(|o| o.name.as_str())
            .collect::<Vec<_>>(),
        ["sum", "diff"]
    );

    // A version that exists, and one that does not.
    let mut request = add_raw(&X[..4], &Y[..4]);
    request.model_version = "1".into();
    assert_eq!(
        c.model_infer(request.clone())
            .await
            .unwrap()
            .into_inner()
            .model_version,
        "1"
    );
    request.model_version = "7".into();
    assert_eq!(
        c.model_infer(request).await.unwrap_err().code(),
        Code::NotFound
    );

    // The `timeout` parameter reaches the scheduler: a wrong one is refused there.
    let mut request = add_raw(&X[..4], &Y[..4]);
    request.parameters.insert(
        "timeout".into(),
        param(ParameterChoice::StringParam("soon".into())),
    );
    let e = c.model_infer(request).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("timeout"), "{}", e.message());

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn int_bool_model_with_every_dtype_and_a_scalar() {
    let repo = TempRepo::new("int-bool", &[("int_bool", "int_bool/model.onnx")]);
    let server = TestServer::start(repo.0.to_path_buf(), ControlMode::None).await;
    let mut c = server.ready_client().await;

    let m = c
        .model_metadata(proto::ModelMetadataRequest {
            name: "int_bool".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let dtypes: Vec<(&str, &str)> = m
        .inputs
        .iter()
        .map(|t| (t.name.as_str(), t.datatype.as_str()))
        .collect();
    assert_eq!(
        dtypes,
        [
            ("ids", "INT32"),
            ("offsets", "INT64"),
            ("mask", "BOOL"),
            ("k", "INT64")
        ]
    );
    assert_eq!(m.inputs[3].shape, Vec::<i64>::new(), "k is 0-d");

    let outputs = ["sum_i64", "masked", "not_mask", "ids_times2"];
    for run in 0..2 {
        let inputs: Vec<Tensor> = (0..4)
            .map(|i| read_npy(&format!("int_bool/run{run}_in_{i}.npy")))
            .collect();
        let shape = |t: &Tensor| t.shape().iter().map(|&d| d as i64).collect::<Vec<i64>>();
        let names = ["ids", "offsets", "mask", "k"];
        let datatypes = ["INT32", "INT64", "BOOL", "INT64"];

        // Typed contents, each dtype in its own field.
        let contents = [
            InferTensorContents {
                int_contents: inputs[0].to_vec::<i32>().unwrap(),
                ..Default::default()
            },
            InferTensorContents {
                int64_contents: inputs[1].to_vec::<i64>().unwrap(),
                ..Default::default()
            },
            InferTensorContents {
                bool_contents: inputs[2].to_vec::<bool>().unwrap(),
                ..Default::default()
            },
            InferTensorContents {
                int64_contents: inputs[3].to_vec::<i64>().unwrap(),
                ..Default::default()
            },
        ];
        let typed_request = ModelInferRequest {
            model_name: "int_bool".into(),
            id: format!("typed-{run}"),
            inputs: (0..4)
                .map(|i| {
                    typed(
                        names[i],
                        datatypes[i],
                        &shape(&inputs[i]),
                        contents[i].clone(),
                    )
                })
                .collect(),
            ..Default::default()
        };
        // The same inputs as raw bytes.
        let raw_request = ModelInferRequest {
            model_name: "int_bool".into(),
            id: format!("raw-{run}"),
            inputs: (0..4)
                .map(|i| tensor(names[i], datatypes[i], &shape(&inputs[i])))
                .collect(),
            raw_input_contents: inputs
                .iter()
                .map(|t| t.as_bytes().unwrap().to_vec().into())
                .collect(),
            ..Default::default()
        };
        for request in [typed_request, raw_request] {
            let id = request.id.clone();
            let r = c.model_infer(request).await.unwrap().into_inner();
            assert_eq!(r.id, id);
            for (i, name) in outputs.iter().enumerate() {
                let want = read_npy(&format!("int_bool/run{run}_out_{i}.npy"));
                let (meta, raw) = output(&r, name);
                assert_eq!(meta.datatype, want.dtype().kserve_name(), "{id} {name}");
                assert_eq!(meta.shape, shape(&want), "{id} {name}");
                assert_eq!(
                    raw,
                    want.as_bytes().unwrap(),
                    "{id} {name}: values differ from the reference"
                );
            }
        }
    }

    // Raw BOOL bytes other than 0 and 1 mean true, as in C.
    let request = ModelInferRequest {
        model_name: "int_bool".into(),
        inputs: vec![
            tensor("ids", "INT32", &[4]),
            tensor("offsets", "INT64", &[4]),
            tensor("mask", "BOOL", &[4]),
            tensor("k", "INT64", &[]),
        ],
        raw_input_contents: vec![
            vec![0; 16].into(),
            vec![0; 32].into(),
            vec![2, 0, 255, 1].into(),
            5i64.to_le_bytes().to_vec().into(),
        ],
        outputs: ["not_mask", "masked"]
            .map(|n| InferRequestedOutputTensor {
                name: n.into(),
                ..Default::default()
            })
            .to_vec(),
        ..Default::default()
    };
    let r = c.model_infer(request).await.unwrap().into_inner();
    assert_eq!(output(&r, "not_mask").1, [0, 1, 0, 0]);
    let masked: Vec<i64> = output(&r, "masked")
        .1
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(masked, [5, 0, 5, 5]);

    // A BOOL input given in int_contents is refused, naming both fields.
    let inputs: Vec<Tensor> = (0..4)
        .map(|i| read_npy(&format!("int_bool/run0_in_{i}.npy")))
        .collect();
    let n = inputs[0].len() as i64;
    let request = ModelInferRequest {
        model_name: "int_bool".into(),
        inputs: vec![
            typed(
                "ids",
                "INT32",
                &[n],
                InferTensorContents {
                    int_contents: inputs[0].to_vec().unwrap(),
                    ..Default::default()
                },
            ),
            typed(
                "offsets",
                "INT64",
                &[n],
                InferTensorContents {
                    int64_contents: inputs[1].to_vec().unwrap(),
                    ..Default::default()
                },
            ),
            typed(
                "mask",
                "BOOL",
                &[n],
                InferTensorContents {
                    int_contents: vec![1; n as usize],
                    ..Default::default()
                },
            ),
            typed(
                "k",
                "INT64",
                &[],
                InferTensorContents {
                    int64_contents: vec![1],
                    ..Default::default()
                },
            ),
        ],
        ..Default::default()
    };
    let e = c.model_infer(request).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("input 'mask'")
            && e.message().contains("bool_contents")
            && e.message().contains("int_contents"),
        "{}",
        e.message()
    );

    server.stop().await;
}
