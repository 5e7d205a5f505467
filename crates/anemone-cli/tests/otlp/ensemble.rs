//! Issue 12 with issue 13: a traced request to an ensemble has one
//! `ensemble_step` span per step below its request span, and each step's
//! engine call below its step.

use super::*;

/// `pipe`: two steps of `add`, `out = (x + y) + (x - y) = 2x`.
pub(crate) const PIPE: &str = r#"name: "pipe"
platform: "ensemble"
max_batch_size: 0
input [
  { name: "x" data_type: TYPE_FP32 dims: [ -1, 4 ] },
  { name: "y" data_type: TYPE_FP32 dims: [ -1, 4 ] }
]
output [ { name: "out" data_type: TYPE_FP32 dims: [ -1, 4 ] } ]
ensemble_scheduling {
  step [
    { model_name: "add" model_version: -1
      input_map { key: "x" value: "x" } input_map { key: "y" value: "y" }
      output_map { key: "sum" value: "s" } output_map { key: "diff" value: "d" } },
    { model_name: "add" model_version: -1
      input_map { key: "x" value: "s" } input_map { key: "y" value: "d" }
      output_map { key: "sum" value: "out" } }
  ]
}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_12_an_ensemble_request_has_a_span_per_step() {
    let (receiver, otlp) = Receiver::start().await;
    let repo = repository("ensemble");
    std::fs::create_dir_all(repo.join("pipe/1")).unwrap();
    std::fs::write(repo.join("pipe/config.pbtxt"), PIPE).unwrap();
    let endpoint = format!("http://{otlp}");
    let serving = serve(&repo, &["--otlp-endpoint", &endpoint]);
    let (trace_id, span_id) = (id(0xe4, 32), id(0xf4, 16));
    let parent = format!("00-{trace_id}-{span_id}-01");
    let http = serving.http;
    let (status, body) = tokio::task::spawn_blocking(move || {
        let headers = [("traceparent", parent.as_str())];
        http_request(http, "POST", "/v2/models/pipe/infer", &headers, ADD_BODY)
    })
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    // x = [1, 2, 3, 4]: (x + y) + (x - y) = 2x, whatever y is.
    assert_eq!(answer["outputs"][0]["name"], "out");
    assert_eq!(
        answer["outputs"][0]["data"],
        serde_json::json!([2.0, 4.0, 6.0, 8.0])
    );
    let spans = receiver.trace(&trace_id, 2).await;
    let request = spans.iter().find(|s| s.name == "infer").unwrap();
    assert_eq!(request.parent, span_id, "the client's span is the parent");
    assert_eq!(request.attributes["model"], "pipe");
    assert_eq!(
        request.attributes["version"], "1",
        "{:?}",
        request.attributes
    );
    let steps: Vec<&Got> = spans
        .iter()
        .filter(|s| s.name == "ensemble_step" && s.parent == request.span_id)
        .collect();
    assert_eq!(steps.len(), 2, "one span per step: {spans:#?}");
    for step in &steps {
        assert_eq!(step.attributes["model"], "add");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !receiver
            .spans(&trace_id)
            .iter()
            .any(|s| s.parent == step.span_id && s.name == "compute_infer")
        {
            assert!(
                Instant::now() < deadline,
                "no engine span below step {step:#?}: {:#?}",
                receiver.spans(&trace_id)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    drop(serving);
}
