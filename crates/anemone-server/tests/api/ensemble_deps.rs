//! Ensembles in the repository (issue 12): broken ensembles are UNAVAILABLE,
//! each with its own reason, while everything else serves; composing models
//! load with the ensemble; unloading one makes the ensemble unavailable (the
//! index says why); `unload_dependents` unloads the composing models with
//! the ensemble; requests during a concurrent load fail only as not ready.

use crate::ensemble::wait_ready;
use crate::support::{add_model, error_text, serve, Repo, Served};
use anemone_server::proto::{self, model_repository_parameter::ParameterChoice};
use anemone_server::ControlMode;
use serde_json::{json, Value};
use std::collections::HashMap;

/// An ensemble over the example `add` (x, y FP32 [batch, 4] -> sum, diff).
fn ensemble(inputs: &str, outputs: &str, steps: &[&str]) -> String {
    format!(
        "platform: \"ensemble\"\ninput [ {inputs} ]\noutput [ {outputs} ]\nensemble_scheduling {{ step [ {} ] }}\n",
        steps.join(", ")
    )
}

fn tensor(name: &str, dtype: &str) -> String {
    format!("{{ name: \"{name}\" data_type: {dtype} dims: [ -1, 4 ] }}")
}

fn step(inputs: &[(&str, &str)], outputs: &[(&str, &str)]) -> String {
    step_on("add", inputs, outputs)
}

fn step_on(model: &str, inputs: &[(&str, &str)], outputs: &[(&str, &str)]) -> String {
    let map = |kind: &str, pairs: &[(&str, &str)]| -> String {
        pairs
            .iter()
            .map(|(k, v)| format!("{kind} {{ key: \"{k}\" value: \"{v}\" }}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    format!(
        "{{ model_name: \"{model}\" model_version: -1 {} {} }}",
        map("input_map", inputs),
        map("output_map", outputs)
    )
}

/// `out = (x + y) + y`.
fn pair() -> String {
    ensemble(
        &format!("{}, {}", tensor("x", "TYPE_FP32"), tensor("y", "TYPE_FP32")),
        &tensor("out", "TYPE_FP32"),
        &[
            &step(&[("x", "x"), ("y", "y")], &[("sum", "s")]),
            &step(&[("x", "s"), ("y", "y")], &[("sum", "out")]),
        ],
    )
}

fn repo(tag: &str, ensembles: &[(&str, String)]) -> Repo {
    let repo = Repo::new(tag);
    repo.write("add/1/model.onnx", &add_model());
    for (name, config) in ensembles {
        repo.write(&format!("{name}/config.pbtxt"), config.as_bytes());
        std::fs::create_dir_all(repo.root().join(name).join("1")).unwrap();
    }
    repo
}

async fn index(s: &Served) -> HashMap<String, (String, String)> {
    let (status, v) = s
        .http("POST", "/v2/repository/index", Some(json!({})))
        .await;
    assert_eq!(status, 200, "{v}");
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let text = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            (text("name"), (text("state"), text("reason")))
        })
        .collect()
}

async fn infer_pair(s: &Served) -> (u16, Value) {
    let body = json!({"inputs": [
        {"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]},
        {"name": "y", "shape": [1, 4], "datatype": "FP32", "data": [10, 20, 30, 40]},
    ]});
    s.http("POST", "/v2/models/pair/infer", Some(body)).await
}

fn assert_pair_answer(body: &Value) {
    assert_eq!(body["outputs"][0]["name"], "out", "{body}");
    assert_eq!(
        body["outputs"][0]["data"],
        json!([21.0, 42.0, 63.0, 84.0]),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_ensembles_are_unavailable_each_with_its_own_reason() {
    let xy = format!("{}, {}", tensor("x", "TYPE_FP32"), tensor("y", "TYPE_FP32"));
    let out = tensor("out", "TYPE_FP32");
    let cases = [
        ("pair", pair(), ""),
        (
            "cycle",
            ensemble(&xy, &out, &[
                &step(&[("x", "b"), ("y", "y")], &[("sum", "a")]),
                &step(&[("x", "a"), ("y", "y")], &[("sum", "b"), ("diff", "out")]),
            ]),
            "the steps form a cycle: step 0 (model 'add'), step 1 (model 'add')",
        ),
        (
            "missing",
            ensemble(&xy, &out, &[&step_on("ghost", &[("x", "x")], &[("y", "out")])]),
            "composing model 'ghost' could not be loaded, so the ensemble cannot be: failed to load model 'ghost': it is not in the",
        ),
        (
            "dtype",
            ensemble(
                &format!("{}, {}", tensor("x", "TYPE_INT32"), tensor("y", "TYPE_FP32")),
                &out,
                &[&step(&[("x", "x"), ("y", "y")], &[("sum", "out")])],
            ),
            "step 0 (model 'add'): tensor 'x' (INT32 [-1, 4]) cannot feed input 'x' (FP32 [batch, 4]): the data types differ",
        ),
        (
            "unproduced",
            ensemble(&xy, &format!("{out}, {}", tensor("extra", "TYPE_FP32")), &[
                &step(&[("x", "x"), ("y", "y")], &[("sum", "out")]),
            ]),
            "ensemble output 'extra' is not produced by any step",
        ),
        (
            "twice",
            ensemble(&xy, &out, &[
                &step(&[("x", "x"), ("y", "y")], &[("sum", "out")]),
                &step(&[("x", "y"), ("y", "x")], &[("sum", "out")]),
            ]),
            "tensor 'out' has two producers: step 0 (model 'add') output 'sum' and step 1 (model 'add') output 'sum'",
        ),
    ];
    let repo = repo(
        "ensemble-broken",
        &cases
            .iter()
            .map(|(n, c, _)| (*n, c.clone()))
            .collect::<Vec<_>>(),
    );
    let s = serve(&repo.root(), ControlMode::None, &[], None).await;
    wait_ready(&s, "pair").await;
    // Start-up loads the ensembles one after another: wait until all have settled.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let rows = loop {
        let rows = index(&s).await;
        if rows
            .values()
            .all(|(state, _)| !state.is_empty() && state != "LOADING")
        {
            break rows;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still loading: {rows:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(rows["add"].0, "READY");
    assert_eq!(rows["pair"].0, "READY", "{:?}", rows["pair"]);
    for (name, _, reason) in cases.iter().skip(1) {
        let (state, got) = &rows[*name];
        assert_eq!(state, "UNAVAILABLE", "{name}: {got}");
        assert!(got.contains(reason), "{name}: {got}\n  wanted: {reason}");
        // Each reason is its own: no other case's text leaks into it.
        for (other, _, theirs) in cases.iter().skip(1).filter(|(o, ..)| o != name) {
            assert!(
                !got.contains(theirs),
                "{name} also says {other}'s reason: {got}"
            );
        }
    }
    // Everything else keeps serving.
    let (status, body) = infer_pair(&s).await;
    assert_eq!(status, 200, "{body}");
    assert_pair_answer(&body);
    let (status, body) = s
        .http(
            "POST",
            "/v2/models/cycle/infer",
            Some(json!({"inputs": []})),
        )
        .await;
    assert_eq!(status, 503, "{body}");
    assert!(
        error_text(&body).contains("the steps form a cycle"),
        "{body}"
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn composing_models_load_with_the_ensemble_and_their_unload_makes_it_unavailable() {
    let repo = repo("ensemble-deps", &[("pair", pair())]);
    let s = serve(&repo.root(), ControlMode::Explicit, &[], None).await;
    let (status, body) = s.http_load("pair", None).await;
    assert_eq!(status, 200, "{body}");
    let rows = index(&s).await;
    assert_eq!(
        rows["add"].0, "READY",
        "loading the ensemble loads its composing model"
    );
    assert_eq!(rows["pair"].0, "READY");
    let (status, body) = infer_pair(&s).await;
    assert_eq!(status, 200, "{body}");
    assert_pair_answer(&body);

    // The composing model goes: the ensemble is unavailable, and says why.
    let (status, body) = s
        .http("POST", "/v2/repository/models/add/unload", None)
        .await;
    assert_eq!(status, 200, "{body}");
    let rows = index(&s).await;
    assert_eq!(rows["pair"].0, "UNAVAILABLE");
    assert!(
        rows["pair"]
            .1
            .contains("composing model 'add' of step 0 (model 'add') is not loaded"),
        "{:?}",
        rows["pair"]
    );
    assert_ne!(s.http("GET", "/v2/models/pair/ready", None).await.0, 200);
    // Strict readiness agrees with the index: a loaded model cannot serve.
    assert_eq!(s.http("GET", "/v2/health/ready", None).await.0, 503);
    let (status, body) = infer_pair(&s).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        error_text(&body).contains("composing model 'add'"),
        "{body}"
    );

    // It comes back: so does the ensemble.
    assert_eq!(s.http_load("add", None).await.0, 200);
    assert_eq!(index(&s).await["pair"].0, "READY");
    assert_eq!(infer_pair(&s).await.0, 200);
    assert_eq!(s.http("GET", "/v2/health/ready", None).await.0, 200);

    // A plain unload (gRPC, no parameter) leaves the composing model loaded.
    let unload = |name: &str, dependents: Option<bool>| proto::RepositoryModelUnloadRequest {
        model_name: name.into(),
        parameters: dependents
            .map(|b| {
                HashMap::from([(
                    "unload_dependents".to_string(),
                    proto::ModelRepositoryParameter {
                        parameter_choice: Some(ParameterChoice::BoolParam(b)),
                    },
                )])
            })
            .unwrap_or_default(),
        ..Default::default()
    };
    s.client()
        .await
        .repository_model_unload(unload("pair", None))
        .await
        .unwrap();
    let rows = index(&s).await;
    assert_eq!(
        (rows["pair"].0.as_str(), rows["add"].0.as_str()),
        ("UNAVAILABLE", "READY")
    );

    // unload_dependents (HTTP, then gRPC): the composing model goes with it.
    assert_eq!(s.http_load("pair", None).await.0, 200);
    let body = json!({"parameters": {"unload_dependents": true}});
    let (status, body) = s
        .http("POST", "/v2/repository/models/pair/unload", Some(body))
        .await;
    assert_eq!(status, 200, "{body}");
    let rows = index(&s).await;
    assert_eq!(
        (rows["pair"].0.as_str(), rows["add"].0.as_str()),
        ("UNAVAILABLE", "UNAVAILABLE")
    );
    assert_eq!(s.http_load("pair", None).await.0, 200);
    s.client()
        .await
        .repository_model_unload(unload("pair", Some(true)))
        .await
        .unwrap();
    assert_eq!(index(&s).await["add"].0, "UNAVAILABLE");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_during_a_concurrent_ensemble_load_fail_only_as_not_ready() {
    let repo = repo("ensemble-concurrent", &[("pair", pair())]);
    let s = std::sync::Arc::new(serve(&repo.root(), ControlMode::Explicit, &[], None).await);
    let clients: Vec<_> = (0..6)
        .map(|_| {
            let s = std::sync::Arc::clone(&s);
            tokio::spawn(async move {
                let (mut refused, mut answered) = (0, 0);
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
                while answered < 5 {
                    assert!(std::time::Instant::now() < deadline, "never answered");
                    let (status, body) = infer_pair(&s).await;
                    match status {
                        200 => {
                            assert_pair_answer(&body);
                            answered += 1;
                        }
                        404 | 503 => {
                            let text = error_text(&body);
                            assert!(
                                ["is not found", "is loading", "is not ready"]
                                    .iter()
                                    .any(|t| text.contains(t)),
                                "an unclear refusal: {status} {text}"
                            );
                            refused += 1;
                        }
                        other => panic!("status {other}: {body}"),
                    }
                }
                refused
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let loads = (0..2).map(|_| {
        let s = std::sync::Arc::clone(&s);
        tokio::spawn(async move { s.http_load("pair", None).await })
    });
    let mut ok = 0;
    for load in loads {
        let (status, body) = load.await.unwrap();
        // Two loads at once: the second waits for the first, and both
        // succeed, as in Triton.
        match status {
            200 => ok += 1,
            other => panic!("load: {other} {body}"),
        }
    }
    assert_eq!(ok, 2);
    for c in clients {
        c.await.unwrap();
    }
    match std::sync::Arc::try_unwrap(s) {
        Ok(s) => s.shutdown().await,
        Err(_) => panic!("a client still holds the server"),
    }
}
