//! The response cache (issue 12), over HTTP and gRPC: a model whose config
//! enables `response_cache` answers a repeated request without running the
//! engine, counted exactly in its statistics and in /metrics; a model
//! without it always runs; different inputs never share an answer; and the
//! cache's byte bound evicts the least recently used answer.

use crate::support::{add_model, serve_on, Repo, Served};
use anemone_server::proto::{self, model_infer_request::InferInputTensor};
use anemone_server::ControlMode;
use serde_json::{json, Value};

const CACHED: &str = "name: \"cached\"\nresponse_cache { enable: true }\n";

pub(crate) fn repo(tag: &str) -> Repo {
    let repo = Repo::new(tag);
    repo.write("cached/1/model.onnx", &add_model());
    repo.write("cached/config.pbtxt", CACHED.as_bytes());
    repo.write("plain/1/model.onnx", &add_model());
    repo
}

pub(crate) async fn serve_with_cache(repo: &Repo, bytes: u64) -> Served {
    let manager = anemone_runtime::Manager::builder()
        .backend(anemone_backends::TractCpu)
        .response_cache(Some(bytes))
        .build()
        .unwrap();
    let s = serve_on(&repo.root(), ControlMode::None, &[], manager).await;
    // Mode none loads every model in the background: wait until both are ready.
    for model in ["cached", "plain"] {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while s
            .http("GET", &format!("/v2/models/{model}/ready"), None)
            .await
            .0
            != 200
        {
            assert!(
                std::time::Instant::now() < deadline,
                "{model} never became ready"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    s
}

/// `sum = x + y` over HTTP; checks the numbers against the sum computed here.
async fn http_add(s: &Served, model: &str, x: [f32; 4], y: [f32; 4]) {
    let got = http_sum(s, model, x, y).await;
    let want: Vec<f32> = x.iter().zip(&y).map(|(a, b)| a + b).collect();
    assert_eq!(got, want, "{model}: x {x:?} y {y:?}");
}

/// The model's `sum` output for `x` and `y`, over HTTP.
async fn http_sum(s: &Served, model: &str, x: [f32; 4], y: [f32; 4]) -> Vec<f32> {
    let body = json!({"inputs": [
        {"name": "x", "shape": [1, 4], "datatype": "FP32", "data": x},
        {"name": "y", "shape": [1, 4], "datatype": "FP32", "data": y},
    ], "outputs": [{"name": "sum"}]});
    let (status, body) = s
        .http("POST", &format!("/v2/models/{model}/infer"), Some(body))
        .await;
    assert_eq!(status, 200, "{body}");
    crate::support::json_f32s(&body["outputs"][0])
}

async fn grpc_add(s: &Served, model: &str, x: [f32; 4], y: [f32; 4]) {
    let tensor = |name: &str| InferInputTensor {
        name: name.into(),
        datatype: "FP32".into(),
        shape: vec![1, 4],
        ..Default::default()
    };
    let raw = |v: [f32; 4]| v.iter().flat_map(|f| f.to_le_bytes()).collect::<Vec<u8>>();
    let r = s
        .client()
        .await
        .model_infer(proto::ModelInferRequest {
            model_name: model.into(),
            inputs: vec![tensor("x"), tensor("y")],
            raw_input_contents: vec![raw(x), raw(y)].into_iter().map(Into::into).collect(),
            outputs: vec![proto::model_infer_request::InferRequestedOutputTensor {
                name: "sum".into(),
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let got: Vec<f32> = r.raw_output_contents[0]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let want: Vec<f32> = x.iter().zip(&y).map(|(a, b)| a + b).collect();
    assert_eq!(got, want);
}

/// (success, execution_count, cache hits, cache misses) from the model's statistics.
pub(crate) async fn counts(s: &Served, model: &str) -> (u64, u64, u64, u64) {
    let (status, stats) = s
        .http("GET", &format!("/v2/models/{model}/stats"), None)
        .await;
    assert_eq!(status, 200, "{stats}");
    let m = &stats["model_stats"][0];
    let i = &m["inference_stats"];
    let n = |v: &Value| v.as_u64().unwrap_or_else(|| panic!("not a count: {stats}"));
    (
        n(&i["success"]["count"]),
        n(&m["execution_count"]),
        n(&i["cache_hit"]["count"]),
        n(&i["cache_miss"]["count"]),
    )
}

async fn metric(s: &Served, line_start: &str) -> String {
    let (status, body) = s.http("GET", "/metrics", None).await;
    assert_eq!(status, 200);
    let text = body.as_str().unwrap().to_string();
    text.lines()
        .find(|l| l.starts_with(line_start))
        .unwrap_or_else(|| panic!("no '{line_start}' in /metrics:\n{text}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_requests_are_answered_from_the_cache_and_counted() {
    let repo = repo("cache-hits");
    let s = serve_with_cache(&repo, 1 << 20).await;
    let (a, b, c) = (
        [1.0, 2.0, 3.0, 4.0],
        [10.0, 20.0, 30.0, 40.0],
        [10.0, 20.0, 30.0, 41.0],
    );

    http_add(&s, "cached", a, b).await; // miss: runs
    http_add(&s, "cached", a, b).await; // hit
    http_add(&s, "cached", a, b).await; // hit
    http_add(&s, "cached", a, c).await; // other inputs: miss, runs
    grpc_add(&s, "cached", a, b).await; // the same tensors over gRPC: hit
    grpc_add(&s, "cached", a, c).await; // hit
    assert_eq!(counts(&s, "cached").await, (6, 2, 4, 2));
    // Triton's "queue" count includes cache hits; its compute counts do not.
    let (_, stats) = s.http("GET", "/v2/models/cached/stats", None).await;
    let i = &stats["model_stats"][0]["inference_stats"];
    assert_eq!(
        (&i["queue"]["count"], &i["compute_infer"]["count"]),
        (&Value::from(6), &Value::from(2)),
        "{stats}"
    );

    // A model without response_cache runs every request.
    http_add(&s, "plain", a, b).await;
    grpc_add(&s, "plain", a, b).await;
    assert_eq!(counts(&s, "plain").await, (2, 2, 0, 0));

    let hits = metric(&s, "anemone_cache_hits_total{model=\"cached\"").await;
    assert!(hits.ends_with(" 4"), "{hits}");
    assert_eq!(
        metric(&s, "anemone_cache_entries ").await,
        "anemone_cache_entries 2"
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_byte_bound_evicts_the_least_recently_used_answer() {
    let repo = repo("cache-evict");
    // One answer (128 bytes of bookkeeping, "sum" and 16 bytes of FP32) fits; two do not.
    let s = serve_with_cache(&repo, 200).await;
    let (a, b, c) = ([1.0, 2.0, 3.0, 4.0], [5.0; 4], [6.0; 4]);
    http_add(&s, "cached", a, b).await; // miss, stored
    http_add(&s, "cached", a, b).await; // hit
    http_add(&s, "cached", a, c).await; // miss, evicts (a, b)
    http_add(&s, "cached", a, b).await; // miss again
    assert_eq!(counts(&s, "cached").await, (4, 3, 1, 3));
    assert_eq!(
        metric(&s, "anemone_cache_evictions_total ").await,
        "anemone_cache_evictions_total 2"
    );
    assert_eq!(
        metric(&s, "anemone_cache_entries ").await,
        "anemone_cache_entries 1"
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_loaded_again_never_answers_from_what_it_replaced() {
    let repo = repo("cache-reload");
    // An ensemble over `cached`, caching at its own level.
    let tensor =
        |name: &str| format!("{{ name: \"{name}\" data_type: TYPE_FP32 dims: [ -1, 4 ] }}");
    let ensemble = format!(
        "platform: \"ensemble\"\nresponse_cache {{ enable: true }}\ninput [ {}, {} ]\noutput [ {} ]\n\
         ensemble_scheduling {{ step [ {{ model_name: \"cached\" model_version: -1 \
         input_map {{ key: \"x\" value: \"x\" }} input_map {{ key: \"y\" value: \"y\" }} \
         output_map {{ key: \"sum\" value: \"sum\" }} }} ] }}\n",
        tensor("x"),
        tensor("y"),
        tensor("sum")
    );
    repo.write("pipe/config.pbtxt", ensemble.as_bytes());
    repo.write("pipe/1/.keep", b"");
    let manager = anemone_runtime::Manager::builder()
        .backend(anemone_backends::TractCpu)
        .response_cache(Some(1 << 20))
        .build()
        .unwrap();
    let s = serve_on(&repo.root(), ControlMode::Explicit, &[], manager).await;
    let load = |model: &'static str| {
        let s = &s;
        async move {
            let (status, body) = s
                .http("POST", &format!("/v2/repository/models/{model}/load"), None)
                .await;
            assert_eq!(status, 200, "{model}: {body}");
        }
    };
    load("cached").await;
    load("pipe").await;
    let (a, b) = ([1.0, 2.0, 3.0, 4.0], [10.0, 20.0, 30.0, 40.0]);
    let sum: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
    for model in ["cached", "pipe"] {
        assert_eq!(http_sum(&s, model, a, b).await, sum, "{model}: miss");
        assert_eq!(http_sum(&s, model, a, b).await, sum, "{model}: hit");
    }
    // `cached` ran once: its second request, and the ensemble's step, were
    // answered from its cache.
    assert_eq!(counts(&s, "cached").await, (3, 1, 2, 1));
    // A load of the model unchanged on disk does nothing, as in Triton: it
    // keeps serving, its cache with it.
    load("cached").await;
    assert_eq!(
        http_sum(&s, "cached", a, b).await,
        sum,
        "after a no-op load"
    );
    assert_eq!(
        counts(&s, "cached").await,
        (4, 1, 3, 1),
        "answered from the cache"
    );

    // The same version's file replaced by one whose `sum` is x * y, and
    // loaded again, as a user updates a model in place. Its time stays the
    // same, as a clock that advances in ticks stamps a rewrite within one
    // (CI's did): the bytes tell the change.
    let mut mul = add_model();
    let at = mul.windows(5).position(|w| w == b"\"\x03Add").unwrap();
    mul[at + 2..at + 5].copy_from_slice(b"Mul");
    let file = repo.root().join("cached/1/model.onnx");
    let modified = std::fs::metadata(&file).unwrap().modified().unwrap();
    repo.write("cached/1/model.onnx", &mul);
    let rewritten = std::fs::File::options().write(true).open(&file).unwrap();
    rewritten.set_modified(modified).unwrap();
    drop(rewritten);
    load("cached").await;
    let product: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x * y).collect();
    for model in ["cached", "pipe"] {
        assert_eq!(
            http_sum(&s, model, a, b).await,
            product,
            "{model}: answered from the cache of the model it replaced"
        );
        assert_eq!(http_sum(&s, model, a, b).await, product, "{model}: hit");
    }
    s.shutdown().await;
}
