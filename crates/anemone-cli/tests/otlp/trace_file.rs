//! Triton's trace files (`--trace-file`, `--trace-config triton,file=`):
//! each traced request written as tritonserver 2.51 writes it, checked
//! against a file the real tritonserver wrote
//! (`fixtures/triton/trace_file_2.51.json`: nvidia-pytriton 0.7.0's
//! tritonserver with `--trace-config triton,file=... --trace-config
//! level=TIMESTAMPS --trace-config rate=2`, five HTTP requests on `add`),
//! with Triton's sampling, log frequency and settings.

use super::{http_request, repository, serve, ADD_BODY};
use serde_json::Value;
use std::path::Path;

fn read(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str::<Value>(&text)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// Each trace of a file: `(id, model entry, [(timestamp name, ns)])`, in
/// the file's order.
fn traces(entries: &[Value]) -> Vec<(u64, Value, Vec<(String, u64)>)> {
    let mut out: Vec<(u64, Value, Vec<(String, u64)>)> = Vec::new();
    for e in entries {
        let id = e["id"].as_u64().unwrap();
        if out.last().is_none_or(|t| t.0 != id) {
            out.push((id, Value::Null, Vec::new()));
        }
        let trace = out.last_mut().unwrap();
        match e.get("timestamps") {
            Some(stamps) => {
                let stamps = stamps.as_array().unwrap();
                assert_eq!(stamps.len(), 1, "one timestamp per entry, as Triton: {e}");
                trace.2.push((
                    stamps[0]["name"].as_str().unwrap().to_string(),
                    stamps[0]["ns"].as_u64().unwrap(),
                ));
            }
            None => trace.1 = e.clone(),
        }
    }
    out
}

/// What one request's timestamps must be: Triton's names, in Triton's
/// order, at times that never go back.
fn check_trace(trace: &(u64, Value, Vec<(String, u64)>), triton_order: &[String]) {
    let (id, model, stamps) = trace;
    assert_eq!(model["model_name"], "add", "{model}");
    assert_eq!(model["model_version"], 1, "{model}");
    let keys: Vec<&String> = model.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["id", "model_name", "model_version"], "trace {id}");
    let names: Vec<&str> = stamps.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "REQUEST_START",
            "QUEUE_START",
            "COMPUTE_START",
            "COMPUTE_INPUT_END",
            "COMPUTE_OUTPUT_START",
            "COMPUTE_END",
            "REQUEST_END"
        ],
        "trace {id}"
    );
    // Triton's file names each of them, in the same order.
    let positions: Vec<usize> = (names.iter())
        .map(|n| {
            triton_order
                .iter()
                .position(|t| t == n)
                .unwrap_or_else(|| panic!("{n} is not Triton's"))
        })
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "{names:?} against {triton_order:?}"
    );
    assert!(
        stamps.windows(2).all(|w| w[0].1 <= w[1].1),
        "time went back: {stamps:?}"
    );
    let took = stamps.last().unwrap().1 - stamps[0].1;
    assert!(took > 0 && took < 10_000_000_000, "{took} ns");
}

fn infer(http: std::net::SocketAddr) {
    let (status, body) = http_request(http, "POST", "/v2/models/add/infer", &[], ADD_BODY);
    assert_eq!(status, 200, "{body}");
}

#[test]
fn tritons_trace_file_command_line_writes_tritons_files() {
    let fixture = super::root().join("fixtures/triton/trace_file_2.51.json");
    let triton = traces(&read(&fixture));
    // Five requests at rate 2: Triton traced the 2nd and 4th.
    assert_eq!(triton.iter().map(|t| t.0).collect::<Vec<_>>(), [1, 2]);
    let triton_order: Vec<String> = triton[0].2.iter().map(|(n, _)| n.clone()).collect();
    let triton_keys: Vec<&String> = triton[0].1.as_object().unwrap().keys().collect();
    assert_eq!(triton_keys, ["id", "model_name", "model_version"]);

    let repo = repository("trace-file");
    let dir = super::common::temp_dir::TempDir::new("trace-file-out");
    let file = dir.join("trace.json");
    let mut served = serve(
        &repo,
        &[
            "--trace-config",
            &format!("triton,file={}", file.display()),
            "--trace-config",
            "triton,log-frequency=2",
            "--trace-config",
            "level=TIMESTAMPS",
            "--trace-config",
            "rate=2",
        ],
    );
    let (status, body) = http_request(served.http, "GET", "/v2/trace/setting", &[], "");
    assert_eq!(status, 200, "{body}");
    let settings: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(settings["trace_mode"], "triton", "{settings}");
    assert_eq!(
        settings["trace_file"],
        file.display().to_string(),
        "{settings}"
    );
    assert_eq!(settings["log_frequency"], "2", "{settings}");
    assert_eq!(settings["trace_rate"], "2", "{settings}");
    // Six requests at rate 2: the 2nd, 4th and 6th traced; the first two
    // traces written as soon as there are two, to FILE.0.
    for _ in 0..6 {
        infer(served.http);
    }
    let first = dir.join("trace.json.0");
    let written = traces(&read(&first));
    assert_eq!(written.iter().map(|t| t.0).collect::<Vec<_>>(), [1, 2]);
    assert!(
        !dir.join("trace.json.1").exists(),
        "the third trace alone is not due"
    );
    // The rest at shutdown, to FILE.1.
    let status = served.serving.terminate();
    assert!(status.success(), "{status:?}");
    let rest = traces(&read(&dir.join("trace.json.1")));
    assert_eq!(rest.iter().map(|t| t.0).collect::<Vec<_>>(), [3]);
    for trace in written.iter().chain(&rest) {
        check_trace(trace, &triton_order);
    }
    assert!(!file.exists(), "with a log frequency, only numbered files");
}

/// `--trace-file` alone: Triton's defaults (level OFF, rate 1000) until the
/// trace extension changes them; with no log frequency, one file at shutdown.
#[test]
fn trace_file_settings_change_at_run_time() {
    let repo = repository("trace-file-settings");
    let dir = super::common::temp_dir::TempDir::new("trace-file-settings-out");
    let file = dir.join("t.json");
    let mut served = serve(&repo, &["--trace-file", file.to_str().unwrap()]);
    let (_, body) = http_request(served.http, "GET", "/v2/trace/setting", &[], "");
    let settings: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        settings["trace_level"],
        serde_json::json!(["OFF"]),
        "{settings}"
    );
    assert_eq!(settings["trace_rate"], "1000", "{settings}");
    assert_eq!(settings["log_frequency"], "0", "{settings}");
    infer(served.http);
    let answer = super::post_setting(
        served.http,
        "/v2/trace/setting",
        r#"{"trace_level": ["TIMESTAMPS"], "trace_rate": "1"}"#,
    );
    assert_eq!(answer["trace_rate"], "1", "{answer}");
    infer(served.http);
    infer(served.http);
    assert!(!file.exists(), "written before shutdown");
    let (status, body) = http_request(
        served.http,
        "POST",
        "/v2/trace/setting",
        &[],
        r#"{"trace_file": "/tmp/elsewhere.json"}"#,
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("can not be updated"), "{body}");
    let status = served.serving.terminate();
    assert!(status.success(), "{status:?}");
    // The first request was not traced (level OFF): two traces.
    let written = traces(&read(&file));
    assert_eq!(written.iter().map(|t| t.0).collect::<Vec<_>>(), [1, 2]);
}

/// An ensemble's request: each step is a trace of its own with the
/// ensemble's as its `parent_id`, as tritonserver 2.51 writes them (an
/// ensemble `ens` of one `add` step there: the step's trace
/// `{"id": 2, "model_name": "add", "model_version": 1, "parent_id": 1}`
/// with every compute timestamp, the ensemble's with its request's own).
#[test]
fn an_ensembles_steps_are_child_traces() {
    let repo = repository("trace-file-ensemble");
    std::fs::create_dir_all(repo.join("pipe/1")).unwrap();
    std::fs::write(repo.join("pipe/config.pbtxt"), super::ensemble::PIPE).unwrap();
    let dir = super::common::temp_dir::TempDir::new("trace-file-ensemble-out");
    let file = dir.join("t.json");
    let mut served = serve(
        &repo,
        &[
            "--trace-file",
            file.to_str().unwrap(),
            "--trace-level",
            "TIMESTAMPS",
            "--trace-rate",
            "1",
        ],
    );
    let (status, body) = http_request(served.http, "POST", "/v2/models/pipe/infer", &[], ADD_BODY);
    assert_eq!(status, 200, "{body}");
    let status = served.serving.terminate();
    assert!(status.success(), "{status:?}");
    let written = traces(&read(&file));
    let pipe = written
        .iter()
        .find(|t| t.1["model_name"] == "pipe")
        .unwrap_or_else(|| panic!("no trace of the ensemble: {written:?}"));
    let keys: Vec<&String> = pipe.1.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["id", "model_name", "model_version"], "{:?}", pipe.1);
    assert_eq!(pipe.1["model_version"], 1, "{:?}", pipe.1);
    let names: Vec<&str> = pipe.2.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"REQUEST_START"), "{names:?}");
    assert_eq!(names.last(), Some(&"REQUEST_END"), "{names:?}");
    let steps: Vec<_> = written
        .iter()
        .filter(|t| t.1["model_name"] == "add")
        .collect();
    assert_eq!(steps.len(), 2, "one trace per step: {written:?}");
    let (start, end) = (pipe.2[0].1, pipe.2.last().unwrap().1);
    let fixture = super::root().join("fixtures/triton/trace_file_2.51.json");
    let triton_order: Vec<String> = traces(&read(&fixture))[0]
        .2
        .iter()
        .map(|(n, _)| n.clone())
        .collect();
    for step in steps {
        assert_eq!(step.1["parent_id"], pipe.0, "{:?}", step.1);
        let keys: Vec<&String> = step.1.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["id", "model_name", "model_version", "parent_id"]);
        let mut head = step.1.clone();
        head.as_object_mut().unwrap().remove("parent_id");
        check_trace(&(step.0, head, step.2.clone()), &triton_order);
        // Inside the ensemble's request.
        assert!(
            step.2[0].1 >= start && step.2.last().unwrap().1 <= end,
            "{step:?} outside {start}..{end}"
        );
    }
}
