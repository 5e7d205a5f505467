//! An ensemble under overload, through the real sockets over both protocols:
//! its one step is a batched model whose queue holds 4, and ten times as many
//! clients call the ensemble. Every answer is a 200 or the step's refusal
//! (HTTP 503 / gRPC UNAVAILABLE, as a direct call gets), no connection is
//! reset, and the statistics of the ensemble and of its composing model add
//! up to what the clients saw (the step's refusals are the ensemble's
//! failures, and the composing model's refusals by reason).

use crate::faults::Faulty;
use crate::overload::{drained, queue_storm, sample, stats, QUEUED_CONFIG};

/// `out` = `queued(x)`, batched as the composing model is.
const ENSEMBLE: &str = r#"platform: "ensemble"
max_batch_size: 2
input [ { name: "x" data_type: TYPE_FP32 dims: [ 16 ] } ]
output [ { name: "out" data_type: TYPE_FP32 dims: [ 16 ] } ]
ensemble_scheduling {
  step [ {
    model_name: "queued" model_version: -1
    input_map { key: "x" value: "x" }
    output_map { key: "y" value: "out" }
  } ]
}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_ensemble_over_a_full_queue_is_200_or_503_and_counted_exactly() {
    let s = Faulty::start_with_ensembles(
        "overload-ensemble",
        None,
        &[("queued", Some(QUEUED_CONFIG))],
        &[("pipeline", ENSEMBLE)],
        false,
    )
    .await;
    let seen = queue_storm(&s, "pipeline").await;
    let m = drained(&s).await;
    // The composing model saw every request: it ran some and refused the
    // rest, which its statistics do not count as failed inferences (as
    // Triton's) and Prometheus counts by reason.
    assert_eq!(stats(&s, "queued").await, (seen.ok(), 0), "{seen:#?}");
    let refused = sample(
        &m,
        "anemone_inference_request_failure_total",
        &["model=\"queued\"", "reason=\"unavailable\""],
    );
    assert_eq!(refused as u64, seen.refused(), "{seen:#?}\n{m}");
    // The ensemble ran every request, and counts the same answers as its
    // clients: a step's refusal fails the ensemble's run.
    assert_eq!(
        stats(&s, "pipeline").await,
        (seen.ok(), seen.refused()),
        "{seen:#?}"
    );
    let success = sample(
        &m,
        "anemone_inference_request_success_total",
        &["model=\"queued\""],
    );
    assert_eq!(success as u64, seen.ok(), "{seen:#?}\n{m}");
    // The server still answers the ensemble once the storm is over.
    let (status, body) = s.http_to("pipeline", 1.0, serde_json::json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["outputs"][0]["name"], "out", "{body}");
    s.stop().await;
}
