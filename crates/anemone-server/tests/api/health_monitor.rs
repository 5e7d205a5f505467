//! The health monitor through the server (issue 13, "The health monitor
//! acts"): a slow and a failing engine are reported degraded in the index,
//! the metrics and health while they keep serving, and a model that fell
//! back moves back once its backend works again, with the move visible.

use crate::faults::Tricky;
use crate::overload::sample;
use crate::support::{serve_on, workspace, Repo, Served};
use anemone_runtime::{HealthPolicy, Manager, RecoveryPolicy};
use anemone_server::ControlMode;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn identity() -> Vec<u8> {
    std::fs::read(workspace().join("fixtures/generated/identity/model.onnx"))
        .expect("run scripts/setup.sh")
}

/// A server on the `tricky` test backend (and tract CPU after it as a
/// standby when `standby`), whose monitor looks every 20 ms and judges
/// windows of 5 requests.
async fn start(repo: &Repo, models: &[(&str, Option<&str>)], standby: bool) -> Served {
    for (name, config) in models {
        repo.write(&format!("{name}/1/model.onnx"), &identity());
        if let Some(config) = config {
            repo.write(&format!("{name}/config.pbtxt"), config.as_bytes());
        }
    }
    let mut builder = Manager::builder().backend(Tricky);
    if standby {
        builder = builder.backend(anemone_backends::TractCpu);
    }
    let manager = builder
        .health(HealthPolicy {
            interval: Duration::from_millis(20),
            baseline_requests: 5,
            min_requests: 5,
            ..HealthPolicy::default()
        })
        .recovery(RecoveryPolicy {
            enabled: true,
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(200),
        })
        .build()
        .unwrap();
    let s = serve_on(&repo.root(), ControlMode::None, &[], manager).await;
    let start = Instant::now();
    for (name, _) in models {
        while s.state.manager.model(name, None).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{name} never loaded"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    s
}

async fn infer(s: &Served, model: &str, x: f32) -> u16 {
    let body = json!({"inputs": [{"name": "x", "shape": [1, 16], "datatype": "FP32", "data": vec![x; 16]}]});
    s.http("POST", &format!("/v2/models/{model}/infer"), Some(body))
        .await
        .0
}

async fn row(s: &Served, model: &str) -> Value {
    let (status, rows) = s.http("POST", "/v2/repository/index", None).await;
    assert_eq!(status, 200, "{rows}");
    rows.as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == model)
        .unwrap()
        .clone()
}

/// Polls the monitor until it watches every one of `models` and `ready`
/// holds for each.
async fn wait_for_watch(
    s: &Served,
    models: &[&str],
    ready: impl Fn(&anemone_runtime::ModelWatch) -> bool,
) {
    let start = Instant::now();
    loop {
        let snapshot = s.state.manager.monitor_snapshot();
        let done = models
            .iter()
            .all(|m| snapshot.models.iter().any(|w| w.name == *m && ready(w)));
        if done {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the monitor never got there for {models:?}: {snapshot:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Polls the index until the model's reason contains `text`.
async fn wait_for_reason(s: &Served, model: &str, text: &str) -> Value {
    let start = Instant::now();
    loop {
        let row = row(s, model).await;
        if row["reason"].as_str().is_some_and(|r| r.contains(text)) {
            return row;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{model} never showed '{text}': {row}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn metrics(s: &Served) -> String {
    let (status, body) = s.http("GET", "/metrics", None).await;
    assert_eq!(status, 200);
    body.as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_and_a_failing_engine_are_degraded_in_the_index_metrics_and_health() {
    let repo = Repo::new("health-degraded");
    let s = start(&repo, &[("slow", None), ("failing", None)], false).await;
    // The monitor counts a model's baseline from its first look at it: wait
    // for that look, so the baseline is taken on the requests meant for it
    // however late the monitor's thread runs on a loaded machine.
    wait_for_watch(&s, &["slow", "failing"], |_| true).await;
    // The baselines: x = 1010 sleeps 10 ms in the engine (long enough that
    // a loaded machine's scheduling delays stay well under the 3x threshold).
    for model in ["slow", "failing"] {
        for _ in 0..10 {
            assert_eq!(infer(&s, model, 1010.0).await, 200);
        }
    }
    // Let the monitor take the baselines, then slow one down 20x (x = 1200)
    // and break the other (a negative x panics in the engine).
    wait_for_watch(&s, &["slow", "failing"], |w| w.baseline_seconds.is_some()).await;
    let before = row(&s, "slow").await;
    assert!(
        !before["reason"].as_str().unwrap().contains("degraded"),
        "{before}"
    );
    for _ in 0..6 {
        assert_eq!(infer(&s, "slow", 1200.0).await, 200);
        assert_eq!(infer(&s, "failing", -1.0).await, 500);
    }
    let slow = wait_for_reason(&s, "slow", "degraded: latency trend").await;
    let failing = wait_for_reason(&s, "failing", "failed in the engine").await;
    // Degraded still serves: READY in Triton's terms, and ready to requests.
    assert_eq!(
        (&slow["state"], &failing["state"]),
        (&json!("READY"), &json!("READY"))
    );
    assert!(
        slow["reason"].as_str().unwrap().contains("baseline"),
        "{slow}"
    );
    assert_eq!(s.http("GET", "/v2/models/slow/ready", None).await.0, 200);
    let health = s.state.manager.health();
    assert!(matches!(
        health.model("failing").unwrap().state,
        anemone_runtime::ModelState::Degraded { .. }
    ));
    let m = metrics(&s).await;
    for model in ["slow", "failing"] {
        let m_ = format!("model=\"{model}\"");
        assert_eq!(
            sample(
                &m,
                "anemone_model_health_state",
                &[&m_, "state=\"degraded\""]
            ),
            1.0,
            "{m}"
        );
        assert_eq!(
            sample(&m, "anemone_model_health_state", &[&m_, "state=\"ready\""]),
            0.0
        );
        assert_eq!(
            sample(
                &m,
                "anemone_model_health_transitions_total",
                &[&m_, "from=\"ready\"", "to=\"degraded\""]
            ),
            1.0,
            "{m}"
        );
    }
    // The window judged may hold a few baseline successes: at least the threshold.
    assert!(
        sample(
            &m,
            "anemone_model_engine_error_ratio",
            &["model=\"failing\""]
        ) >= 0.2
    );
    assert!(
        sample(&m, "anemone_process_resident_memory_bytes", &[]) > 1e6,
        "{m}"
    );
    // The slow one is fast again: ready again, counted.
    for _ in 0..10 {
        assert_eq!(infer(&s, "slow", 1010.0).await, 200);
    }
    let start = Instant::now();
    while row(&s, "slow").await["reason"]
        .as_str()
        .unwrap()
        .contains("degraded")
    {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "never ready again"
        );
        for _ in 0..5 {
            infer(&s, "slow", 1010.0).await;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let m = metrics(&s).await;
    assert_eq!(
        sample(
            &m,
            "anemone_model_health_transitions_total",
            &["model=\"slow\"", "from=\"degraded\"", "to=\"ready\""]
        ),
        1.0,
        "{m}"
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_model_that_fell_back_moves_back_with_the_move_in_the_index_and_metrics() {
    let repo = Repo::new("health-recovery");
    let config = "parameters { key: \"backends\" value: { string_value: \"tricky,tract-cpu\" } }";
    let s = start(&repo, &[("moving", Some(config))], true).await;
    // x = 666: the test engine reports its device lost; the model falls back.
    assert_eq!(infer(&s, "moving", 666.0).await, 500);
    let row = wait_for_reason(&s, "moving", "moved from tract-cpu (recovered").await;
    assert_eq!(row["state"], "READY");
    assert!(
        row["reason"].as_str().unwrap().starts_with("on tricky"),
        "{row}"
    );
    let (_, meta) = s.http("GET", "/v2/models/moving", None).await;
    assert_eq!(meta["platform"], "tricky", "{meta}");
    assert_eq!(
        meta["backend_selection"]["moved"]["reason"], "recovered",
        "{meta}"
    );
    assert_eq!(infer(&s, "moving", 2.0).await, 200);
    let m = metrics(&s).await;
    assert_eq!(
        sample(
            &m,
            "anemone_model_moves_total",
            &[
                "model=\"moving\"",
                "from=\"tract-cpu\"",
                "to=\"tricky\"",
                "reason=\"recovered\""
            ]
        ),
        1.0,
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            "anemone_backend_reprobes_total",
            &["model=\"moving\"", "backend=\"tricky\"", "result=\"ok\""]
        ),
        1.0
    );
    s.shutdown().await;
}
