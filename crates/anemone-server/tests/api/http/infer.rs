//! Inference over HTTP: JSON and binary tensors, requested outputs, and
//! every integer and bool type against the reference outputs.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_in_json_out_with_id_and_parameters() {
    let s = add_server().await;
    let mut request = add_request();
    request["id"] = json!("req-42");
    request["parameters"] = json!({"tag": "abc", "n": 3});
    for path in ["/v2/models/add/infer", "/v2/models/add/versions/1/infer"] {
        let r = s.post_json(path, &request).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert!(r.header("inference-header-content-length").is_none());
        assert_eq!(
            r.json(),
            json!({
                "model_name": "add",
                "model_version": "1",
                "id": "req-42",
                // The request's parameters are not repeated (tritonserver
                // 2.51 answers this request without them).
                "outputs": [
                    {"name": "sum", "datatype": "FP32", "shape": [2, 4], "data": SUM},
                    {"name": "diff", "datatype": "FP32", "shape": [2, 4], "data": DIFF},
                ]
            })
        );
    }
    // Without id and parameters, neither appears.
    let v = s
        .post_json("/v2/models/add/infer", &add_request())
        .await
        .json();
    assert!(
        v.get("id").is_none() && v.get("parameters").is_none(),
        "{v}"
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_inputs_and_outputs() {
    let s = add_server().await;
    // x in binary, y in JSON; sum back in binary, diff in JSON.
    let header = json!({
        "id": "b1",
        "inputs": [
            {"name": "x", "shape": [2, 4], "datatype": "FP32", "parameters": {"binary_data_size": 32}},
            {"name": "y", "shape": [2, 4], "datatype": "FP32", "data": Y},
        ],
        "outputs": [{"name": "sum", "parameters": {"binary_data": true}}, {"name": "diff"}]
    });
    let r = s
        .post_binary("/v2/models/add/infer", &header, &[&f32_bytes(&X)])
        .await;
    let (v, binary) = split_binary(&r);
    assert_eq!(
        r.header("content-length").unwrap(),
        r.body.len().to_string()
    );
    assert_eq!(v["id"], "b1");
    assert_eq!(
        v["outputs"][0],
        json!({"name": "sum", "datatype": "FP32", "shape": [2, 4], "parameters": {"binary_data_size": 32}})
    );
    assert_eq!(
        v["outputs"][1],
        json!({"name": "diff", "datatype": "FP32", "shape": [2, 4], "data": DIFF})
    );
    assert_eq!(f32s(&binary), SUM);

    // Both inputs binary; binary_data_output makes every output binary, in order.
    let header = json!({
        "parameters": {"binary_data_output": true},
        "inputs": [
            {"name": "x", "shape": [2, 4], "datatype": "FP32", "parameters": {"binary_data_size": 32}},
            {"name": "y", "shape": [2, 4], "datatype": "FP32", "parameters": {"binary_data_size": 32}},
        ]
    });
    let r = s
        .post_binary(
            "/v2/models/add/infer",
            &header,
            &[&f32_bytes(&X), &f32_bytes(&Y)],
        )
        .await;
    let (v, binary) = split_binary(&r);
    assert_eq!(v["outputs"][0]["parameters"]["binary_data_size"], 32);
    assert_eq!(v["outputs"][1]["parameters"]["binary_data_size"], 32);
    assert!(v["outputs"][0].get("data").is_none());
    assert_eq!(f32s(&binary[..32]), SUM);
    assert_eq!(f32s(&binary[32..]), DIFF);

    // binary_data_output is for the outputs a request does not name, as in
    // Triton: one named without binary_data is JSON, and the answer comes
    // in the model's order.
    let mut request = add_request();
    request["parameters"] = json!({"binary_data_output": true});
    request["outputs"] =
        json!([{"name": "diff", "parameters": {"binary_data": false}}, {"name": "sum"}]);
    let r = s.post_json("/v2/models/add/infer", &request).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = r.json();
    assert_eq!(
        v["outputs"][0],
        json!({"name": "sum", "datatype": "FP32", "shape": [2, 4], "data": SUM})
    );
    assert_eq!(
        v["outputs"][1],
        json!({"name": "diff", "datatype": "FP32", "shape": [2, 4], "data": DIFF})
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requested_outputs_subset_in_order() {
    let repo = TempRepo::new("subset").fixture("multi_io", "multi_io");
    let s = start(&repo.0, ControlMode::None, &[]).await;
    s.wait_ready(&["multi_io"]).await;
    let input = |name: &str, file: &str| {
        let t = npy(&format!("multi_io/{file}"));
        json!({"name": name, "shape": t.shape(), "datatype": "FP32", "data": values(&t)})
    };
    let request = json!({
        "inputs": [input("x", "run0_in_0.npy"), input("y", "run0_in_1.npy"), input("scale", "run0_in_2.npy")],
        "outputs": [{"name": "out/with:odd*name"}, {"name": "sum"}]
    });
    let r = s.post_json("/v2/models/multi_io/infer", &request).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v = r.json();
    let names: Vec<&str> = v["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    // In the model's order, whatever order the request names them in.
    assert_eq!(names, ["sum", "out/with:odd*name"]);
    let close = |got: &Value, want: &Tensor| {
        let want = want.to_vec::<f32>().unwrap();
        let got: Vec<f64> = got["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert!(
                (g - w as f64).abs() <= 1e-5 + 1e-4 * (w as f64).abs(),
                "{g} vs {w}"
            );
        }
    };
    close(&v["outputs"][0], &npy("multi_io/run0_out_0.npy"));
    close(&v["outputs"][1], &npy("multi_io/run0_out_3.npy"));
    s.shutdown().await;
}

/// int32, int64, bool and a 0-d scalar, in JSON and in binary, against the reference outputs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn int_bool_matches_reference_both_ways() {
    let repo = TempRepo::new("int-bool").fixture("int_bool", "int_bool");
    let s = start(&repo.0, ControlMode::None, &[]).await;
    s.wait_ready(&["int_bool"]).await;
    let inputs = ["ids", "offsets", "mask", "k"];
    let outputs = ["sum_i64", "masked", "not_mask", "ids_times2"];
    for run in 0..2 {
        let ins: Vec<Tensor> = (0..4)
            .map(|i| npy(&format!("int_bool/run{run}_in_{i}.npy")))
            .collect();
        let outs: Vec<Tensor> = (0..4)
            .map(|i| npy(&format!("int_bool/run{run}_out_{i}.npy")))
            .collect();

        let json_inputs: Vec<Value> = inputs
                .iter()
                .zip(&ins)
                .map(|(n, t)| {
                    // The 0-d scalar goes as a bare value, the others as lists.
                    let data = if t.shape().is_empty() { values(t)[0].clone() } else { values(t) };
                    json!({"name": n, "shape": t.shape(), "datatype": t.dtype().kserve_name(), "data": data})
                })
                .collect();
        let r = s
            .post_json(
                "/v2/models/int_bool/infer",
                &json!({ "inputs": json_inputs }),
            )
            .await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let v = r.json();
        for (name, want) in outputs.iter().zip(&outs) {
            let got = output(&v, name);
            assert_eq!(got["datatype"], want.dtype().kserve_name(), "{name}");
            assert_eq!(got["shape"], json!(want.shape()), "{name}");
            assert_eq!(got["data"], values(want), "run {run} {name}");
        }

        let header_inputs: Vec<Value> = inputs
            .iter()
            .zip(&ins)
            .map(|(n, t)| {
                json!({"name": n, "shape": t.shape(), "datatype": t.dtype().kserve_name(),
                           "parameters": {"binary_data_size": t.as_bytes().unwrap().len()}})
            })
            .collect();
        let header = json!({"inputs": header_inputs, "parameters": {"binary_data_output": true}});
        let payloads: Vec<&[u8]> = ins.iter().map(|t| t.as_bytes().unwrap()).collect();
        let r = s
            .post_binary("/v2/models/int_bool/infer", &header, &payloads)
            .await;
        let (v, binary) = split_binary(&r);
        let returned: Vec<&str> = v["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            returned, outputs,
            "run {run}: every output, in the model's order"
        );
        let mut at = 0;
        for o in v["outputs"].as_array().unwrap() {
            let name = o["name"].as_str().unwrap();
            let want = &outs[outputs.iter().position(|n| *n == name).unwrap()];
            let size = o["parameters"]["binary_data_size"].as_u64().unwrap() as usize;
            assert_eq!(o["datatype"], want.dtype().kserve_name(), "{name}");
            assert_eq!(
                &binary[at..at + size],
                want.as_bytes().unwrap(),
                "run {run} {name}"
            );
            at += size;
        }
        assert_eq!(at, binary.len());
    }
    s.shutdown().await;
}

/// Answers compressed as `Accept-Encoding` asks (gzip and deflate, the
/// higher `q` winning, as Triton picks): `Content-Encoding` says which, the
/// body decompresses (with flate2's readers, here) to the same answer, and
/// a binary answer's `Inference-Header-Content-Length` counts the JSON
/// before compression. Without the header, or with none of the two, the
/// answer is as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_compressed_as_accept_encoding_asks() {
    use std::io::Read;
    let s = add_server().await;
    let inflate = |r: &Reply| -> Vec<u8> {
        let mut out = Vec::new();
        match r.header("content-encoding") {
            Some("gzip") => flate2::read::GzDecoder::new(&r.body[..])
                .read_to_end(&mut out)
                .unwrap(),
            Some("deflate") => flate2::read::ZlibDecoder::new(&r.body[..])
                .read_to_end(&mut out)
                .unwrap(),
            other => panic!("not compressed: {other:?}"),
        };
        out
    };
    let cases = [
        ("gzip", "gzip"),
        ("deflate", "deflate"),
        ("gzip;q=0.4, deflate;q=0.9, br", "deflate"),
        ("br, deflate, gzip", "deflate"),
        ("identity;q=0.5, GZIP", "gzip"),
    ];
    for (accept, want) in cases {
        let request = Request::post("/v2/models/add/infer")
            .header("content-type", "application/json")
            .header("accept-encoding", accept)
            .body(Body::from(add_request().to_string()))
            .unwrap();
        let r = s.call(request).await;
        assert_eq!(r.status, 200, "{accept}");
        assert_eq!(r.header("content-encoding"), Some(want), "{accept}");
        assert_eq!(r.header("content-type"), Some("application/json"));
        let v: Value = serde_json::from_slice(&inflate(&r)).unwrap();
        assert_eq!(output(&v, "sum")["data"], json!(SUM), "{accept}");
        assert_eq!(output(&v, "diff")["data"], json!(DIFF), "{accept}");
    }
    // Binary outputs: the JSON and the tensors in one compressed body.
    let mut request = add_request();
    request["parameters"] = json!({"binary_data_output": true});
    let call = Request::post("/v2/models/add/infer")
        .header("content-type", "application/json")
        .header("accept-encoding", "gzip")
        .body(Body::from(request.to_string()))
        .unwrap();
    let r = s.call(call).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    let plain = inflate(&r);
    let n: usize = r
        .header("inference-header-content-length")
        .unwrap()
        .parse()
        .unwrap();
    let v: Value = serde_json::from_slice(&plain[..n]).unwrap();
    assert_eq!(v["outputs"][0]["parameters"]["binary_data_size"], 32);
    assert_eq!(f32s(&plain[n..n + 32]), SUM);
    assert_eq!(f32s(&plain[n + 32..]), DIFF);
    // Not asked for, refused with q=0, or an encoding anemone does not write: plain.
    for accept in [None, Some("gzip;q=0"), Some("br, zstd")] {
        let mut call =
            Request::post("/v2/models/add/infer").header("content-type", "application/json");
        if let Some(accept) = accept {
            call = call.header("accept-encoding", accept);
        }
        let r = s
            .call(call.body(Body::from(add_request().to_string())).unwrap())
            .await;
        assert_eq!(r.header("content-encoding"), None, "{accept:?}");
        assert_eq!(output(&r.json(), "sum")["data"], json!(SUM), "{accept:?}");
    }
    // Errors are never compressed: a client reads them as they are.
    let mut bad = add_request();
    bad["inputs"][0]["shape"] = json!([1, 5]);
    let call = Request::post("/v2/models/add/infer")
        .header("content-type", "application/json")
        .header("accept-encoding", "gzip")
        .body(Body::from(bad.to_string()))
        .unwrap();
    let r = s.call(call).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.header("content-encoding"), None);
    assert!(
        r.json()["error"].as_str().unwrap().contains("'x'"),
        "{}",
        r.json()
    );
    s.shutdown().await;
}
