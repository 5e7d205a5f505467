//! Issue 13's run-time settings through the real server: lowering the global
//! concurrency limit through `POST /v2/anemone/config` refuses the request
//! over it; the batching and fallback gates switch behaviour; changes are
//! all-or-nothing and visible in the settings and in Prometheus; the logging
//! API without a log control is UNAVAILABLE, not silently ignored; and every
//! metric the Grafana dashboard plots exists in `/metrics`.

use crate::faults::{grpc_request_to, Faulty};
use crate::net::HttpConn;
use crate::overload::{get, sample};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

async fn post(s: &Faulty, path: &str, body: Value) -> (u16, Value) {
    let mut conn = HttpConn::connect(s.http).await;
    let r = conn.send("POST", path, body.to_string().as_bytes()).await;
    let status = r.status;
    (status, r.json())
}

fn setting(table: &Value, key: &str) -> Value {
    table["settings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"] == key)
        .cloned()
        .unwrap_or_else(|| panic!("no {key} in {table}"))
}

async fn wait_in_flight(s: &Faulty, n: usize) {
    let start = Instant::now();
    while s.state.manager.metrics().in_flight < n {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "never {n} in flight"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lowering_the_concurrency_limit_at_run_time_refuses_the_request_over_it() {
    let s = Arc::new(Faulty::start_with("ops-limit", Some(8), &[("tricky", None)], false).await);
    let busy = {
        let s = Arc::clone(&s);
        tokio::spawn(async move { s.http_to("tricky", 1800.0, json!({})).await })
    };
    wait_in_flight(&s, 1).await;
    // Under the limit of 8, a second request is served.
    assert_eq!(s.http_to("tricky", 1.0, json!({})).await.0, 200);
    let (status, table) = post(&s, "/v2/anemone/config", json!({"max-concurrency": 1})).await;
    assert_eq!(status, 200, "{table}");
    assert_eq!(
        setting(&table, "max-concurrency"),
        json!({"key": "max-concurrency", "value": "1", "source": "api", "runtime": true})
    );
    let (status, body) = s.http_to("tricky", 1.0, json!({})).await;
    assert_eq!(status, 429, "{body}");
    let e = s
        .client()
        .await
        .model_infer(grpc_request_to("tricky", 1.0, None, None))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted);
    assert_eq!(busy.await.unwrap().0, 200);
    let m = get(&s, "/metrics").await;
    assert_eq!(sample(&m, "anemone_concurrency_limit", &[]), 1.0, "{m}");
    let Ok(s) = Arc::try_unwrap(s) else {
        panic!("the server is still shared")
    };
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn changes_are_all_or_nothing_and_name_what_is_wrong() {
    let s = Faulty::start_with("ops-refuse", Some(8), &[("tricky", None)], false).await;
    let cases = [
        (
            json!({"gate-batching": false, "host": "0.0.0.0"}),
            "setting 'host' cannot change while serving",
        ),
        (
            json!({"gate-batching": false, "max-concurrency": 0}),
            "'max-concurrency' must be a whole number of at least 1",
        ),
        (
            json!({"gate-batchin": false}),
            "unknown setting 'gate-batchin'",
        ),
        (
            json!({"gate-fallback": "maybe"}),
            "'gate-fallback' must be true or false",
        ),
        // No log control in this server: refused, and nothing else applied.
        (
            json!({"gate-batching": false, "log-level": "info"}),
            "logging is not controllable",
        ),
    ];
    for (change, want) in cases {
        let (status, body) = post(&s, "/v2/anemone/config", change.clone()).await;
        let error = body["error"].as_str().unwrap_or_default();
        assert!(
            status >= 400 && error.contains(want),
            "{change}: {status} {body}"
        );
        assert!(
            s.state.manager.gates().batching(),
            "{change} applied part of itself"
        );
    }
    let (status, _) = post(&s, "/v2/logging", json!({"log_info": true})).await;
    assert_eq!(status, 503);
    let e = s
        .client()
        .await
        .log_settings(anemone_server::proto::LogSettingsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
    s.stop().await;
}

/// One instance, batches of 2 preferred, a long delay: two requests sent
/// together run as one batch; with the gate off, as two engine calls at once.
const BATCHED: &str = "max_batch_size: 4
dynamic_batching { preferred_batch_size: [2] max_queue_delay_microseconds: 5000000 }
instance_group [ { count: 1 kind: KIND_CPU } ]
";

async fn two_together(s: &Arc<Faulty>) -> u64 {
    let before = s
        .state
        .manager
        .metrics()
        .model("batched")
        .unwrap()
        .metrics
        .execution_count;
    let a = {
        let s = Arc::clone(s);
        tokio::spawn(async move { s.http_to("batched", 1.0, json!({})).await })
    };
    let b = {
        let s = Arc::clone(s);
        tokio::spawn(async move { s.http_to("batched", 2.0, json!({})).await })
    };
    assert_eq!(a.await.unwrap().0, 200);
    assert_eq!(b.await.unwrap().0, 200);
    s.state
        .manager
        .metrics()
        .model("batched")
        .unwrap()
        .metrics
        .execution_count
        - before
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_batching_gate_switches_batching_at_run_time() {
    let s = Arc::new(
        Faulty::start_with("ops-batching", None, &[("batched", Some(BATCHED))], false).await,
    );
    assert_eq!(two_together(&s).await, 1, "batched together");
    let (status, table) = post(&s, "/v2/anemone/config", json!({"gate-batching": false})).await;
    assert_eq!(
        (status, setting(&table, "gate-batching")["value"].clone()),
        (200, json!("false"))
    );
    // Alone and at once: not held 5 s for a partner.
    let started = Instant::now();
    assert_eq!(s.http_to("batched", 3.0, json!({})).await.0, 200);
    assert!(started.elapsed() < Duration::from_secs(4));
    assert_eq!(two_together(&s).await, 2, "one engine call each");
    let m = get(&s, "/metrics").await;
    assert_eq!(
        sample(&m, "anemone_feature_gate", &["gate=\"batching\""]),
        0.0,
        "{m}"
    );
    assert_eq!(
        sample(&m, "anemone_feature_gate", &["gate=\"fallback\""]),
        1.0,
        "{m}"
    );
    let Ok(s) = Arc::try_unwrap(s) else {
        panic!("the server is still shared")
    };
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_the_fallback_gate_off_a_failing_model_stays_on_its_backend() {
    let config = "parameters { key: \"backends\" value: { string_value: \"tricky,tract-cpu\" } }";
    let s = Faulty::start_with("ops-fallback", None, &[("tricky", Some(config))], true).await;
    s.state.manager.gates().set("fallback", false).unwrap();
    let platform = |s: &Faulty| s.state.manager.model("tricky", None).unwrap().backend();
    for _ in 0..3 {
        assert_eq!(s.http_to("tricky", 666.0, json!({})).await.0, 500);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(platform(&s), "tricky", "no fallback with the gate off");
    // The same failure with the gate on moves it: the gate was what held it.
    let (status, _) = post(&s, "/v2/anemone/config", json!({"gate-fallback": true})).await;
    assert_eq!(status, 200);
    assert_eq!(s.http_to("tricky", 666.0, json!({})).await.0, 500);
    let start = Instant::now();
    while platform(&s) != "tract-cpu" {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no fallback with the gate on"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.stop().await;
}

/// The families of `/metrics` (`# TYPE` lines) and their types, from a
/// server with every optional part on (memory budget, response cache), after
/// one inference, and the machine's CPU, memory and GPU families.
async fn families() -> std::collections::BTreeMap<String, String> {
    let repo = crate::support::Repo::new("ops-families");
    repo.write("add/1/model.onnx", &crate::support::add_model());
    let manager = anemone_runtime::Manager::builder()
        .backend(anemone_backends::TractCpu)
        .memory_budget(Some(1 << 30))
        .response_cache(Some(1 << 20))
        .build()
        .unwrap();
    let s = crate::support::serve_on(
        &repo.root(),
        anemone_server::ControlMode::None,
        &[],
        manager,
    )
    .await;
    let start = Instant::now();
    while s.state.manager.model("add", None).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "add never loaded"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let body = json!({"inputs": [
        {"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]},
        {"name": "y", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]});
    let (status, answer) = s.http("POST", "/v2/models/add/infer", Some(body)).await;
    assert_eq!(status, 200, "{answer}");
    let (_, metrics) = s.http("GET", "/metrics", None).await;
    let mut metrics = metrics.as_str().unwrap().to_string();
    s.shutdown().await;
    // The machine's families, with every figure a machine can give (a GPU
    // needs one; the server renders them through this function).
    let host = anemone_server::host_metrics::HostFigures {
        cpu_utilization: Some(0.5),
        memory: Some(anemone_server::host_metrics::HostMemory { total: 4, used: 2 }),
        gpus: vec![anemone_server::host_metrics::GpuFigures {
            ordinal: 0,
            uuid: "GPU-0".into(),
            reading: anemone_server::host_metrics::GpuReading {
                utilization: Some(0.5),
                memory_total: Some(4),
                memory_used: Some(2),
                power: Some(100.0),
                power_limit: Some(700.0),
                energy_mj: Some(5),
            },
            energy_joules: 0.0,
        }],
    };
    anemone_server::prometheus::host::render(&host, &mut metrics);
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(name, kind)| (name.to_string(), kind.to_string()))
        .collect()
}

/// Prometheus' naming conventions: counters end in `_total`, nothing else
/// does; units are base units spelled out; `_count`, `_sum` and `_bucket`
/// belong to histograms only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metric_names_follow_the_prometheus_conventions() {
    let families = families().await;
    assert!(families.len() > 30, "{families:?}");
    for (name, kind) in &families {
        assert!(name.starts_with("anemone_"), "{name}");
        assert_eq!(
            kind == "counter",
            name.ends_with("_total"),
            "{name} is a {kind}"
        );
        for word in name.split('_') {
            let bad = [
                "us",
                "ms",
                "ns",
                "microseconds",
                "milliseconds",
                "per",
                "num",
            ];
            assert!(
                !bad.contains(&word),
                "{name}: not a base unit or a Prometheus name"
            );
        }
        if kind != "histogram" {
            for suffix in ["_count", "_sum", "_bucket"] {
                assert!(!name.ends_with(suffix), "{name} is a {kind}");
            }
        }
    }
}

/// Every `anemone_*` name in the dashboard's queries is a family in `/metrics`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_on_the_grafana_dashboard_exists() {
    let families = families().await;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/grafana/anemone-dashboard.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let dashboard: Value = serde_json::from_str(&text).unwrap();
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            exprs.push(target["expr"].as_str().unwrap().to_string());
        }
    }
    assert!(exprs.len() >= 12, "{exprs:?}");
    let mut used = 0;
    for expr in &exprs {
        let mut rest = expr.as_str();
        while let Some(at) = rest.find("anemone_") {
            let name: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[at + name.len()..];
            let histogram = ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
                name.strip_suffix(suffix)
                    .filter(|base| families.get(*base).is_some_and(|k| k == "histogram"))
            });
            let family = histogram.unwrap_or(&name);
            assert!(
                families.contains_key(family),
                "{name} (in `{expr}`) is not in /metrics"
            );
            used += 1;
        }
    }
    assert!(used >= exprs.len());
}
