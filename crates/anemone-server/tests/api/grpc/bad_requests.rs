//! Bad requests and oversized responses are refused with a clear status,
//! and the server (and a stream) goes on.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_and_the_server_goes_on() {
    const LIMIT: usize = 1 << 20;
    let options = ServerOptions {
        http_port: 0,
        grpc_port: 0,
        repository: examples(),
        max_request_bytes: LIMIT,
        ..Default::default()
    };
    let server = TestServer::start_with(options).await;
    let mut c = server.ready_client().await;

    let good = || add_raw(&X[..4], &Y[..4]);
    let with = |f: &dyn Fn(&mut ModelInferRequest)| {
        let mut r = good();
        f(&mut r);
        r
    };
    let fp32 = |n: usize| InferTensorContents {
        fp32_contents: vec![1.0; n],
        ..Default::default()
    };
    let cases: Vec<(&str, ModelInferRequest, Code, &str)> = vec![
        ("unknown model", with(&|r| r.model_name = "nope".into()), Code::NotFound, "Request for unknown model: 'nope' is not found"),
        ("bad version", with(&|r| r.model_version = "v1".into()), Code::InvalidArgument, "version 'v1'"),
        ("unknown datatype", with(&|r| r.inputs[0].datatype = "FP8".into()), Code::InvalidArgument, "input 'x': unknown datatype 'FP8'"),
        ("wrong datatype for the model", with(&|r| r.inputs[0].datatype = "INT32".into()), Code::InvalidArgument, "input 'x'"),
        ("raw bytes vs shape", with(&|r| r.raw_input_contents[0].truncate(12)), Code::InvalidArgument, "input 'x' has 12 bytes"),
        ("typed values vs shape", add_typed(&X[..3], &Y[..4]), Code::InvalidArgument, "input 'x' has 3 values in contents.fp32_contents"),
        ("no data at all", with(&|r| r.raw_input_contents.clear()), Code::InvalidArgument, "input 'x' has 0 values"),
        ("negative dimension", with(&|r| r.inputs[1].shape = vec![-1, 4]), Code::InvalidArgument, "input 'y' has a negative dimension"),
        ("overflowing shape", with(&|r| r.inputs[0].shape = vec![i64::MAX, i64::MAX]), Code::InvalidArgument, "input 'x' shape"),
        (
            "input given twice",
            with(&|r| {
                r.inputs[1].name = "x".into();
            }),
            Code::InvalidArgument,
            "input 'x' is given more than once",
        ),
        ("unknown input", with(&|r| r.inputs[1].name = "z".into()), Code::InvalidArgument, "unknown input 'z'"),
        ("raw entries vs inputs", with(&|r| r.raw_input_contents.push(vec![0; 16].into())), Code::InvalidArgument, "3 raw_input_contents entries"),
        ("mixed raw and typed", with(&|r| r.inputs[1].contents = Some(fp32(4))), Code::InvalidArgument, "input 'y' has typed contents"),
        (
            "FP16 typed",
            with(&|r| {
                r.raw_input_contents.clear();
                r.inputs[0] = typed("x", "FP16", &[1, 4], fp32(4));
            }),
            Code::InvalidArgument,
            "input 'x' is FP16, which has no typed contents field; send its data in raw_input_contents",
        ),
        (
            "typed field vs datatype",
            with(&|r| {
                r.raw_input_contents.clear();
                r.inputs[0] = typed("x", "FP32", &[1, 4], InferTensorContents { fp64_contents: vec![1.0; 4], ..Default::default() });
            }),
            Code::InvalidArgument,
            "input 'x' is FP32, whose values go in contents.fp32_contents, but contents.fp64_contents is given",
        ),
        (
            "typed value out of range",
            with(&|r| {
                r.raw_input_contents.clear();
                r.inputs[0] = typed("x", "INT8", &[1, 4], InferTensorContents { int_contents: vec![1, 2, 300, 4], ..Default::default() });
            }),
            Code::InvalidArgument,
            "input 'x' value 2 (300) is out of range for INT8",
        ),
        (
            "BYTES length prefix",
            with(&|r| {
                r.inputs[0].datatype = "BYTES".into();
                r.raw_input_contents[0] = vec![9, 0, 0, 0, 1].into();
            }),
            Code::InvalidArgument,
            "input 'x': a BYTES element claims 9 bytes",
        ),
        (
            "shared memory input",
            with(&|r| {
                r.inputs[0].parameters.insert("shared_memory_region".into(), param(ParameterChoice::StringParam("r".into())));
            }),
            Code::InvalidArgument,
            "input 'x' is in shared memory region 'r' but has no parameter 'shared_memory_byte_size'",
        ),
        (
            "unknown output",
            with(&|r| r.outputs = vec![InferRequestedOutputTensor { name: "prod".into(), ..Default::default() }]),
            Code::InvalidArgument,
            "unknown output 'prod'",
        ),
        (
            "parameter without a value",
            with(&|r| {
                r.parameters.insert("timeout".into(), InferParameter { parameter_choice: None });
            }),
            Code::InvalidArgument,
            "parameter 'timeout' has no value",
        ),
        (
            "non-finite parameter",
            with(&|r| {
                r.parameters.insert("ratio".into(), param(ParameterChoice::DoubleParam(f64::NAN)));
            }),
            Code::InvalidArgument,
            "parameter 'ratio'",
        ),
        (
            "oversized message",
            with(&|r| {
                r.inputs[0].shape = vec![(LIMIT / 16 + 1) as i64, 4];
                r.raw_input_contents[0] = vec![0; (LIMIT / 16 + 1) * 16].into();
            }),
            Code::ResourceExhausted,
            "limit",
        ),
    ];
    for (what, request, code, message) in cases {
        let e = c.model_infer(request).await.expect_err(what);
        assert_eq!(e.code(), code, "{what}: {}", e.message());
        assert!(
            e.message().contains(message),
            "{what}: '{}' should contain '{message}'",
            e.message()
        );
        // The server still answers, on the same connection.
        assert!(
            c.server_live(proto::ServerLiveRequest {})
                .await
                .unwrap()
                .into_inner()
                .live,
            "{what}"
        );
    }

    // Oversized on a stream: the stream ends with RESOURCE_EXHAUSTED too.
    let mut big = good();
    big.raw_input_contents[0] = vec![0; LIMIT + 1].into();
    let stream = c
        .model_stream_infer(tokio_stream::iter([good(), big]))
        .await;
    let status = match stream {
        Err(status) => status,
        Ok(response) => {
            let mut responses = response.into_inner();
            let first = responses
                .message()
                .await
                .expect("the first request is answered")
                .unwrap();
            assert_eq!(first.error_message, "");
            responses
                .message()
                .await
                .expect_err("an oversized message ends the stream")
        }
    };
    assert_eq!(
        status.code(),
        Code::ResourceExhausted,
        "{}",
        status.message()
    );

    let r = c.model_infer(good()).await.unwrap().into_inner();
    assert_eq!(
        f32s(output(&r, "sum").1),
        zip(&X[..4], &Y[..4], |a, b| a + b)
    );
    assert_eq!(
        server.state.manager.metrics().in_flight,
        0,
        "every permit was released"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_responses_are_refused_and_streams_go_on() {
    // int_bool's outputs take 21 bytes per element and its inputs 13, so a
    // request under the limit can ask for a response over it.
    const LIMIT: usize = 1 << 20;
    let repo = TempRepo::new("big-response", &[("int_bool", "int_bool/model.onnx")]);
    let options = ServerOptions {
        http_port: 0,
        grpc_port: 0,
        repository: repo.0.to_path_buf(),
        max_request_bytes: LIMIT,
        ..Default::default()
    };
    let server = TestServer::start_with(options).await;
    let mut c = server.ready_client().await;
    let request = |n: usize, id: &str| ModelInferRequest {
        model_name: "int_bool".into(),
        id: id.into(),
        inputs: vec![
            tensor("ids", "INT32", &[n as i64]),
            tensor("offsets", "INT64", &[n as i64]),
            tensor("mask", "BOOL", &[n as i64]),
            tensor("k", "INT64", &[]),
        ],
        raw_input_contents: vec![vec![0; 4 * n], vec![0; 8 * n], vec![1; n], vec![0; 8]]
            .into_iter()
            .map(Into::into)
            .collect(),
        ..Default::default()
    };
    let n = 60_000;
    let e = c.model_infer(request(n, "big")).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{}", e.message());
    assert!(
        e.message().contains("response") && e.message().contains(&LIMIT.to_string()),
        "{}",
        e.message()
    );

    stream_error_then_ok(&mut c, request(n, "big"), request(4, "small"), "response").await;
    server.stop().await;
}
