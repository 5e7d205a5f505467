//! Bad requests, each refused with a clear error while nothing else changes.

use super::*;

struct Case {
    what: &'static str,
    path: &'static str,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    status: u16,
    error: &'static str,
}

fn infer(what: &'static str, body: impl Into<Vec<u8>>, status: u16, error: &'static str) -> Case {
    Case {
        what,
        path: "/v2/models/add/infer",
        headers: vec![],
        body: body.into(),
        status,
        error,
    }
}

/// An infer request with a binary part: the JSON, then `binary`.
fn binary(
    what: &'static str,
    header: Value,
    binary: &[u8],
    length: Option<&str>,
    status: u16,
    error: &'static str,
) -> Case {
    let header = header.to_string();
    let length = length
        .map(str::to_string)
        .unwrap_or_else(|| header.len().to_string());
    let mut body = header.into_bytes();
    body.extend_from_slice(binary);
    Case {
        headers: vec![("inference-header-content-length", length)],
        ..infer(what, body, status, error)
    }
}

fn x(extra: Value) -> Value {
    let mut x = json!({"name": "x", "shape": [1, 4], "datatype": "FP32"});
    x.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    x
}

fn y() -> Value {
    json!({"name": "y", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]})
}

fn with(inputs: Value) -> Vec<u8> {
    json!({ "inputs": inputs }).to_string().into_bytes()
}

/// `data`, gzip-compressed.
fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn cases() -> Vec<Case> {
    let data = json!({"data": [1, 2, 3, 4]});
    let bin16 = json!({"parameters": {"binary_data_size": 16}});
    vec![
            infer("truncated JSON", r#"{"inputs": ["#, 400, "malformed inference request JSON: EOF while parsing a list at line 1 column 12"),
            infer("not JSON", "hello", 400, "malformed inference request JSON: expected value at line 1 column 1"),
            infer("inputs missing", "{}", 400, "missing field `inputs`"),
            infer("inputs not a list", r#"{"inputs": 5}"#, 400, "invalid type: integer `5`, expected a sequence"),
            infer("shape missing", with(json!([{"name": "x", "datatype": "FP32", "data": [1]}])), 400, "missing field `shape`"),
            infer("datatype missing", with(json!([{"name": "x", "shape": [1], "data": [1]}])), 400, "missing field `datatype`"),
            infer("name missing", with(json!([{"shape": [1], "datatype": "FP32", "data": [1]}])), 400, "missing field `name`"),
            infer("too few values", with(json!([x(json!({"data": [1, 2, 3]})), y()])), 400, "input 'x' has 3 values in 'data', but shape [1, 4] needs 4"),
            infer("a value of the wrong type", with(json!([x(json!({"data": [1, 2, "a", 4]})), y()])), 400, "input 'x' value 2 (\"a\") is not a valid FP32"),
            infer("unknown datatype", with(json!([x(json!({"datatype": "FP8", "data": [1, 2, 3, 4]})), y()])), 400, "input 'x': unknown datatype 'FP8'"),
            infer("negative dimension", with(json!([x(json!({"shape": [-1, 4], "data": [1, 2, 3, 4]})), y()])), 400, "input 'x' has a negative dimension -1"),
            infer("overflowing element count", with(json!([x(json!({"shape": [4294967296u64, 4294967296u64, 16], "data": [1]})), y()])), 400, "has more elements than can be addressed"),
            infer("dimension beyond i64", br#"{"inputs": [{"name": "x", "shape": [99999999999999999999], "datatype": "FP32", "data": [1]}]}"#.to_vec(), 400, "malformed inference request JSON"),
            infer("input given twice", with(json!([x(data.clone()), x(data.clone()), y()])), 400, "input 'x' is given more than once"),
            infer("both data and binary_data_size", with(json!([x(json!({"data": [1, 2, 3, 4], "parameters": {"binary_data_size": 16}})), y()])), 400, "input 'x' has 'data' and parameter 'binary_data_size'; give only one of"),
            infer("neither data nor binary_data_size", with(json!([x(json!({})), y()])), 400, "input 'x' has no data: give one of 'data', parameter 'binary_data_size'"),
            infer("binary_data_size not a count", with(json!([x(json!({"parameters": {"binary_data_size": -16}})), y()])), 400, "parameter 'binary_data_size' must be a byte count, got -16"),
            infer("binary_data_size without a binary part", with(json!([x(bin16.clone()), y()])), 400, "the request has no binary part"),
            binary("header length not a number", json!({"inputs": [x(bin16.clone()), y()]}), &[0; 16], Some("abc"), 400, "header Inference-Header-Content-Length must be a byte count, got 'abc'"),
            binary("header length past the body", json!({"inputs": [x(bin16.clone()), y()]}), &[0; 16], Some("100000"), 400, "header Inference-Header-Content-Length is 100000, but the body has only"),
            binary("binary part too short", json!({"inputs": [x(bin16.clone()), y()]}), &[0; 12], None, 400, "input 'x' has binary_data_size 16, but only 12 of the 12 bytes after the JSON header remain"),
            binary("binary part too long", json!({"inputs": [x(bin16.clone()), y()]}), &[0; 20], None, 400, "the binary part has 20 bytes, but the inputs' binary_data_size values add up to 16"),
            binary("binary size disagrees with the shape", json!({"inputs": [x(json!({"parameters": {"binary_data_size": 12}})), y()]}), &[0; 12], None, 400, "input 'x' has 12 bytes of data, but"),
            infer("unknown input", with(json!([x(data.clone()), {"name": "z", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}])), 400, "unknown input 'z'"),
            infer("wrong dtype for the model", with(json!([x(json!({"datatype": "INT32", "data": [1, 2, 3, 4]})), y()])), 400, "input 'x' has type"),
            infer("unknown output", json!({"inputs": [x(data.clone()), y()], "outputs": [{"name": "nope"}]}).to_string(), 400, "unknown output 'nope'"),
            infer("binary_data not a boolean", json!({"inputs": [x(data.clone()), y()], "outputs": [{"name": "sum", "parameters": {"binary_data": "yes"}}]}).to_string(), 400, "output 'sum': parameter 'binary_data' must be true or false"),
            infer("binary_data_output not a boolean", json!({"inputs": [x(data.clone()), y()], "parameters": {"binary_data_output": 1}}).to_string(), 400, "request parameter 'binary_data_output' must be true or false"),
            infer("shared memory", with(json!([x(json!({"parameters": {"shared_memory_region": "r", "shared_memory_byte_size": 16}})), y()])), 404, "names shared memory region 'r', which is not registered"),
            infer("a negative class count", json!({"inputs": [x(data.clone()), y()], "outputs": [{"name": "sum", "parameters": {"classification": -2}}]}).to_string(), 400, "parameter 'classification' must be a number of classes (1 or more), got -2"),
            infer("a class count that is not a number", json!({"inputs": [x(data.clone()), y()], "outputs": [{"name": "sum", "parameters": {"classification": "2"}}]}).to_string(), 400, "parameter 'classification' must be a number of classes, got \"2\""),
            infer("timeout not a number", json!({"inputs": [x(data.clone()), y()], "parameters": {"timeout": "soon"}}).to_string(), 400, "parameter 'timeout' must be a whole number of microseconds (0: none)"),
            Case { path: "/v2/models/add/versions/one/infer", ..infer("version not an integer", with(json!([x(data.clone()), y()])), 400, "model version 'one' is not a non-negative integer") },
            Case { path: "/v2/models/add/versions/-1/infer", ..infer("negative version", with(json!([x(data.clone()), y()])), 400, "model version '-1' is not a non-negative integer") },
            Case { path: "/v2/models/add/versions/7/infer", ..infer("unknown version", with(json!([x(data.clone()), y()])), 404, "'add'") },
            Case { path: "/v2/models/nope/infer", ..infer("unknown model", with(json!([x(data.clone()), y()])), 404, "Request for unknown model: 'nope' is not found") },
            Case {
                headers: vec![("content-encoding", "gzip".into())],
                ..infer("marked gzip but not gzip", with(json!([x(data.clone()), y()])), 400, "the body is marked Content-Encoding gzip but does not decompress")
            },
            Case {
                headers: vec![("content-encoding", "br".into())],
                ..infer("an encoding not supported", with(json!([x(data.clone()), y()])), 400, "Content-Encoding 'br' is not supported; send the body uncompressed, or with gzip or deflate")
            },
            Case {
                headers: vec![("content-encoding", "gzip".into())],
                ..infer("over the limit once decompressed", gzip(&vec![b' '; LIMIT + 1]), 413, "request body exceeds the 1048576-byte limit (--max-request-bytes) (once decompressed)")
            },
            infer("body over the limit", vec![b' '; LIMIT + 1], 413, "request body exceeds the 1048576-byte limit"),
            // Other routes read compressed bodies as inference does: this
            // registration is refused for what it says, once decompressed.
            Case {
                path: "/v2/systemsharedmemory/region/r/register",
                headers: vec![("content-encoding", "gzip".into())],
                ..infer("a gzip registration", gzip(br#"{"key": "/a/b", "byte_size": 8}"#), 400, "shared memory key '/a/b' is not a shared memory object's name")
            },
            Case {
                path: "/v2/repository/index",
                headers: vec![("content-encoding", "br".into())],
                ..infer("an index request in br", "{}", 400, "Content-Encoding 'br' is not supported")
            },
            Case { path: "/v2/repository/index", ..infer("malformed index request", "{", 400, "malformed repository index request JSON") },
            Case { path: "/v2/repository/index", ..infer("index ready not a boolean", r#"{"ready": "yes"}"#, 400, "expected a boolean") },
        ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_gets_a_clear_error_and_nothing_else_changes() {
    let s = add_server().await;
    let mut failures = Vec::new();
    for case in cases() {
        let headers: Vec<(&str, &str)> =
            case.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = s.post(case.path, &headers, case.body).await;
        let error = serde_json::from_slice::<Value>(&r.body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string));
        match error {
            Some(e) if r.status == case.status && e.contains(case.error) => {
                r.error(); // exactly {"error": "..."}
            }
            _ => failures.push(format!(
                "{}: expected {} containing {:?}, got {} {}",
                case.what,
                case.status,
                case.error,
                r.status,
                String::from_utf8_lossy(&r.body)
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );

    let r = s.post_json("/v2/models/add/infer", &add_request()).await;
    assert_eq!(r.status, 200);
    assert_eq!(output(&r.json(), "sum")["data"], json!(SUM));
    assert_eq!(s.state.manager.metrics().in_flight, 0);
    assert_eq!(s.get("/v2/health/ready").await.status, 200);
    s.shutdown().await;
}
