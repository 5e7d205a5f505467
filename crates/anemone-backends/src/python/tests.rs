//! The Python backend with a real interpreter: the repository's `.venv`
//! (scripts/setup.sh makes it; CI always has it), else `python3` when it
//! has numpy, else skipped with a message (never in CI: there
//! `ANEMONE_REQUIRE_ORT` is set, and a missing interpreter fails).

use super::*;
use crate::test_dir::TempDir;
use anemone_core::ErrorKind;
use std::sync::Arc;

/// A Python with numpy, or `None` (outside CI) with a message.
fn python() -> Option<PathBuf> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    for candidate in [venv, PathBuf::from("python3")] {
        if probe::probe(&candidate).is_available() {
            return Some(candidate);
        }
    }
    assert!(
        std::env::var_os("ANEMONE_REQUIRE_ORT").is_none(),
        "no Python with numpy for the Python backend's tests: run scripts/setup.sh"
    );
    eprintln!("SKIPPED: no Python with numpy here (run scripts/setup.sh)");
    None
}

const MODEL: &str = r#"
import json, os, sys
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.config = json.loads(args["model_config"])
        self.marker = os.path.join(args["model_repository"], "finalized")

    def execute(self, requests):
        out = []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "X").as_numpy()
            if (x < 0).any():
                out.append(pb_utils.InferenceResponse(error=pb_utils.TritonError("X must not be negative", pb_utils.TritonError.INVALID_ARG)))
                continue
            if (x > 1000).any():
                print("about to exit", flush=True)
                os._exit(5)
            n = np.full((x.shape[0], 1), len(requests), np.int64)
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("Y", x * 2), pb_utils.Tensor("N", n)]))
        return out

    def finalize(self):
        open(self.marker, "w").write("done")
"#;

fn config() -> String {
    serde_json::json!({
        "name": "twice",
        "max_batch_size": 4,
        "input": [{"name": "X", "data_type": "TYPE_FP32", "dims": [2]}],
        "output": [{"name": "Y", "data_type": "TYPE_FP32", "dims": [2]},
                   {"name": "N", "data_type": "TYPE_INT64", "dims": [1]}],
    })
    .to_string()
}

fn load(dir: &TempDir, python: PathBuf) -> Box<dyn LoadedModel> {
    let model_py = dir.join("twice/1/model.py");
    std::fs::create_dir_all(model_py.parent().unwrap()).unwrap();
    std::fs::write(&model_py, MODEL).unwrap();
    let options = LoadOptions {
        threads: None,
        settings: vec![(config::MODEL_CONFIG_KEY.into(), config())],
        ..Default::default()
    };
    Python::with_interpreter(python)
        .load(&ModelSource::from_path(&model_py), &options)
        .unwrap()
}

fn x(rows: &[[f32; 2]]) -> Tensor {
    Tensor::from_vec(vec![rows.len(), 2], rows.concat()).unwrap()
}

#[test]
fn a_model_answers_alone_and_in_batches_each_request_its_rows() {
    let Some(python) = python() else { return };
    let dir = TempDir::new("python-batches");
    let model = load(&dir, python);
    assert_eq!(model.metadata().inputs[0].shape_string(), "[-1, 2]");
    assert!(
        model.memory_footprint() > 1 << 20,
        "the process's resident memory is charged"
    );
    let out = model.infer(&[x(&[[1.0, 0.5]])]);
    let out = out.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out[0].to_vec::<f32>().unwrap(), [2.0, 1.0]);
    assert_eq!(out[1].to_vec::<i64>().unwrap(), [1]);
    assert!(
        model.answers_each(),
        "the runtime gives it requests as a list"
    );
    let (a, b) = ([x(&[[1.0, 2.0]])], [x(&[[3.0, 4.0], [5.0, 6.0]])]);
    let out = model.infer_each(&[view(&a), view(&b)]);
    let out: Vec<Vec<Tensor>> = out.into_iter().map(|o| o.unwrap()).collect();
    assert_eq!(out[0][0].to_vec::<f32>().unwrap(), [2.0, 4.0]);
    assert_eq!(out[1][0].shape(), [2, 2]);
    assert_eq!(out[1][0].to_vec::<f32>().unwrap(), [6.0, 8.0, 10.0, 12.0]);
    assert_eq!(
        out[0][1].to_vec::<i64>().unwrap(),
        [2],
        "one execute() of two requests"
    );
    assert_eq!(out[1][1].to_vec::<i64>().unwrap(), [2, 2]);
}

/// A request of `inputs` without id or parameters.
fn view(inputs: &[Tensor]) -> RequestView<'_> {
    RequestView {
        inputs,
        id: None,
        parameters: &[],
        responder: None,
        absent: &[],
        sequence: None,
        outputs: None,
        timeout: None,
        gone: None,
    }
}

#[test]
fn a_refusal_is_the_requests_fault_and_fails_only_that_request_of_a_batch() {
    let Some(python) = python() else { return };
    let dir = TempDir::new("python-refusal");
    let model = load(&dir, python);
    let e = model.infer(&[x(&[[-1.0, 0.0]])]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert_eq!(e.to_string(), "X must not be negative");
    let (good, bad) = ([x(&[[1.0, 2.0]])], [x(&[[-1.0, 2.0]])]);
    let answers = model.infer_each(&[view(&good), view(&bad), view(&good)]);
    assert_eq!(
        answers[0].as_ref().unwrap()[0].to_vec::<f32>().unwrap(),
        [2.0, 4.0]
    );
    let e = answers[1].as_ref().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert_eq!(
        answers[2].as_ref().unwrap()[1].to_vec::<i64>().unwrap(),
        [3]
    );
}

#[test]
fn a_process_that_dies_is_named_with_its_last_words_and_started_again() {
    let Some(python) = python() else { return };
    let dir = TempDir::new("python-dies");
    let model = load(&dir, python);
    let e = model.infer(&[x(&[[2000.0, 0.0]])]).unwrap_err().to_string();
    assert!(e.contains("ended (exit status: 5)"), "{e}");
    assert!(e.contains("about to exit"), "{e}");
    let out = model.infer(&[x(&[[1.0, 1.0]])]).unwrap();
    assert_eq!(out[0].to_vec::<f32>().unwrap(), [2.0, 2.0]);
    drop(model);
    let marker = dir.join("twice/finalized");
    assert_eq!(
        std::fs::read_to_string(marker).unwrap(),
        "done",
        "dropping runs finalize()"
    );
}

#[test]
fn a_missing_interpreter_or_numpy_is_explained() {
    let reason = match probe::probe(Path::new("/nonexistent/python3")) {
        Probe::Unavailable { reason } => reason,
        other => panic!("{other:?}"),
    };
    assert!(
        reason.contains("cannot run /nonexistent/python3"),
        "{reason}"
    );
    assert!(reason.contains(PYTHON_ENV), "{reason}");
    let no_config = Python::with_interpreter("python3").load(
        &ModelSource::from_path("m/1/model.py"),
        &LoadOptions::default(),
    );
    let e = no_config.err().expect("refused").to_string();
    assert!(e.contains(config::MODEL_CONFIG_KEY), "{e}");
}

#[test]
fn auto_complete_config_fills_in_the_config_or_is_not_there() {
    let Some(python) = python() else { return };
    let dir = TempDir::new("python-auto-complete");
    let model_py = dir.join("m/1/model.py");
    std::fs::create_dir_all(model_py.parent().unwrap()).unwrap();
    let given = serde_json::json!({"name": "m", "input": [], "output": [], "max_batch_size": 0});
    std::fs::write(&model_py, MODEL).unwrap();
    assert!(!defines_auto_complete(MODEL));
    let none = auto_complete(&python, None, &model_py, "m", &given).unwrap();
    assert_eq!(
        none, None,
        "a model without auto_complete_config keeps its config"
    );
    let source = r#"
class TritonPythonModel:
    @staticmethod
    def auto_complete_config(c):
        c.add_input({"name": "X", "data_type": "TYPE_FP32", "dims": [2]})
        c.add_output({"name": "Y", "data_type": "TYPE_FP32", "dims": [2]})
        c.set_max_batch_size(8)
        c.set_dynamic_batching()
        return c
"#;
    std::fs::write(&model_py, source).unwrap();
    assert!(defines_auto_complete(source));
    let completed = auto_complete(&python, None, &model_py, "m", &given)
        .unwrap()
        .unwrap();
    assert_eq!(completed["max_batch_size"], 8);
    assert_eq!(completed["input"][0]["dims"], serde_json::json!([2]));
    assert_eq!(completed["output"][0]["name"], "Y");
    assert_eq!(completed["dynamic_batching"], serde_json::json!({}));
    // A batch size below the one the config says is Triton's ValueError.
    let bigger = serde_json::json!({"name": "m", "input": [], "output": [], "max_batch_size": 16});
    let e = auto_complete(&python, None, &model_py, "m", &bigger).unwrap_err();
    assert!(
        e.to_string().contains("ValueError") && e.to_string().contains("max_batch_size 16"),
        "{e}"
    );
}

const DECOUPLED: &str = r#"
import os, threading, time
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.marker = os.path.join(args["model_repository"], "cancelled")

    def execute(self, requests):
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "X").as_numpy()
            threading.Thread(target=self.send, args=(r.get_response_sender(), x)).start()
        return None

    def send(self, sender, x):
        time.sleep(0.05)
        if x[0] < 0:
            while not sender.is_cancelled():
                time.sleep(0.01)
            open(self.marker, "w").write("seen")
            sender.send(pb_utils.InferenceResponse([pb_utils.Tensor("Y", np.array([-1], np.float32))]),
                        flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
            return
        for k in range(int(x[0])):
            sender.send(pb_utils.InferenceResponse([pb_utils.Tensor("Y", np.array([k], np.float32))]))
        if x[0] > 100:
            os._exit(4)
        sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
"#;

/// A responder that keeps what it is sent, and says the client has gone
/// once `gone` is set.
#[derive(Default)]
struct Kept {
    got: std::sync::Mutex<Vec<(Option<Result<Vec<f32>>>, bool)>>,
    gone: AtomicBool,
}

impl anemone_core::ResponseSink for Kept {
    fn send(&self, response: Option<anemone_core::Response>, last: bool) -> bool {
        let values = response.map(|r| r.outputs.map(|o| o[0].1.to_vec::<f32>().unwrap()));
        self.got.lock().unwrap().push((values, last));
        true
    }
    fn cancelled(&self) -> bool {
        self.gone.load(Ordering::Relaxed)
    }
}

impl Kept {
    fn wait_last(&self) -> Vec<(Option<Result<Vec<f32>>>, bool)> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            {
                let mut got = self.got.lock().unwrap();
                if got.last().is_some_and(|(_, last)| *last) {
                    return std::mem::take(&mut *got);
                }
            }
            assert!(std::time::Instant::now() < deadline, "no last response");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}

#[test]
fn a_decoupled_model_sends_responses_from_its_threads_after_execute_returns() {
    let Some(python) = python() else { return };
    let dir = TempDir::new("python-decoupled");
    let model_py = dir.join("streams/1/model.py");
    std::fs::create_dir_all(model_py.parent().unwrap()).unwrap();
    std::fs::write(&model_py, DECOUPLED).unwrap();
    let config = serde_json::json!({
        "name": "streams",
        "model_transaction_policy": {"decoupled": true},
        "input": [{"name": "X", "data_type": "TYPE_FP32", "dims": [1]}],
        "output": [{"name": "Y", "data_type": "TYPE_FP32", "dims": [1]}],
    });
    let options = LoadOptions {
        settings: vec![(config::MODEL_CONFIG_KEY.into(), config.to_string())],
        ..Default::default()
    };
    let model = Python::with_interpreter(python)
        .load(&ModelSource::from_path(&model_py), &options)
        .unwrap();
    assert!(model.decoupled() && model.answers_each());
    let one = |v: f32| [Tensor::from_vec(vec![1], vec![v]).unwrap()];
    let e = model.infer(&one(1.0)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    // Two requests in one call; their responses come after it returned.
    let (a, b) = (Arc::new(Kept::default()), Arc::new(Kept::default()));
    let (ra, rb) = (
        anemone_core::Responder(a.clone()),
        anemone_core::Responder(b.clone()),
    );
    let (xa, xb) = (one(3.0), one(1.0));
    let mut views = [view(&xa), view(&xb)];
    views[0].responder = Some(&ra);
    views[1].responder = Some(&rb);
    let answers = model.infer_each(&views);
    assert!(answers.iter().all(|a| a.as_ref().is_ok_and(Vec::is_empty)));
    let got = a.wait_last();
    let values: Vec<Vec<f32>> = got[..3]
        .iter()
        .map(|(r, _)| r.as_ref().unwrap().as_ref().unwrap().clone())
        .collect();
    assert_eq!(values, [[0.0], [1.0], [2.0]]);
    assert!(
        got[3].0.is_none() && got[3].1,
        "the final flag alone: {got:?}"
    );
    assert_eq!(b.wait_last().len(), 2);
    // A client that has gone is seen by is_cancelled().
    let c = Arc::new(Kept::default());
    let rc = anemone_core::Responder(c.clone());
    let xc = one(-1.0);
    let mut v = view(&xc);
    v.responder = Some(&rc);
    assert!(model.infer_each(&[v])[0].is_ok());
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert!(c.got.lock().unwrap().is_empty());
    c.gone.store(true, Ordering::Relaxed);
    let marker = dir.join("streams/cancelled");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !marker.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "is_cancelled() never became true"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // What it sends after its client has gone reaches nobody.
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert!(c.got.lock().unwrap().is_empty());
    // A process that ends with a request open ends it with an error, and
    // the next call starts it again.
    let d = Arc::new(Kept::default());
    let rd = anemone_core::Responder(d.clone());
    let xd = one(101.0);
    let mut v = view(&xd);
    v.responder = Some(&rd);
    assert!(model.infer_each(&[v])[0].is_ok());
    let got = d.wait_last();
    assert_eq!(got.len(), 102, "101 responses and the error");
    let e = got[101].0.as_ref().unwrap().as_ref().unwrap_err();
    assert!(
        e.to_string()
            .contains("ended before it sent the request's final response"),
        "{e}"
    );
    let e2 = Arc::new(Kept::default());
    let re = anemone_core::Responder(e2.clone());
    let mut v = view(&xb);
    v.responder = Some(&re);
    assert!(model.infer_each(&[v])[0].is_ok());
    assert_eq!(e2.wait_last().len(), 2);
}

const COUNTS: &str = r#"
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.family = pb_utils.MetricFamily(name="rows_total", description="Rows seen", kind=pb_utils.MetricFamily.COUNTER)
        self.rows = self.family.Metric(labels={"instance": args["model_instance_name"]})

    def execute(self, requests):
        out = []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "X").as_numpy()
            self.rows.increment(x.shape[0])
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("Y", x * 2), pb_utils.Tensor("N", np.full((x.shape[0], 1), int(self.rows.value()), np.int64))]))
        return out
"#;

#[test]
fn a_models_metrics_reach_the_registry_it_was_given_and_leave_with_it() {
    let Some(python) = python() else { return };
    let dir = TempDir::new("python-metrics");
    let model_py = dir.join("counts/1/model.py");
    std::fs::create_dir_all(model_py.parent().unwrap()).unwrap();
    std::fs::write(&model_py, COUNTS).unwrap();
    let registry = anemone_core::custom_metrics::CustomMetrics::new();
    let options = LoadOptions {
        settings: vec![(config::MODEL_CONFIG_KEY.into(), config())],
        custom_metrics: Some(registry.clone()),
        ..Default::default()
    };
    let backend = Python::with_interpreter(python);
    let model = backend
        .load(&ModelSource::from_path(&model_py), &options)
        .unwrap_or_else(|e| panic!("{e}"));
    model.infer(&[x(&[[1.0, 2.0]])]).unwrap();
    let out = model.infer(&[x(&[[1.0, 2.0], [3.0, 4.0]])]).unwrap();
    // value() read back what the registry holds: 1 + 2 rows.
    assert_eq!(out[1].to_vec::<i64>().unwrap(), [3, 3]);
    let mut text = String::new();
    registry.render(&mut text);
    assert!(text.contains("# TYPE rows_total counter\n"), "{text}");
    assert!(
        text.contains("rows_total{instance=\"twice_0\"} 3\n"),
        "{text}"
    );
    drop(model);
    let start = std::time::Instant::now();
    loop {
        let mut text = String::new();
        registry.render(&mut text);
        if text.is_empty() {
            break;
        }
        assert!(
            start.elapsed().as_secs() < 10,
            "still shown after unload: {text}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // Without a registry (a library user loading the backend alone) the
    // model's declaration fails with the reason.
    let options = LoadOptions {
        custom_metrics: None,
        ..options
    };
    let e = backend
        .load(&ModelSource::from_path(&model_py), &options)
        .err()
        .expect("loaded without a registry");
    assert!(e.to_string().contains("keeps no custom metrics"), "{e}");
}

/// Each `TritonError` code the model sets is the class tritonserver 2.51
/// answers it with (HTTP 400 / 404 / 503 / 501 / 500), the model's words kept.
#[test]
fn a_models_error_code_is_tritons_class() {
    let cases = [
        (wire::UNKNOWN, ErrorKind::InvalidInput),
        (1, ErrorKind::Backend),
        (wire::NOT_FOUND, ErrorKind::NotFound),
        (wire::INVALID_ARG, ErrorKind::InvalidInput),
        (wire::UNAVAILABLE, ErrorKind::Unavailable),
        (wire::UNSUPPORTED, ErrorKind::Unsupported),
        (wire::ALREADY_EXISTS, ErrorKind::InvalidInput),
        (wire::CANCELLED, ErrorKind::InvalidInput),
        (99, ErrorKind::Backend),
    ];
    for (code, kind) in cases {
        let e = refusal(format!("code {code}"), code);
        assert_eq!(e.kind(), kind, "code {code}: {e}");
        assert!(e.to_string().contains(&format!("code {code}")), "{e}");
    }
}

/// A model.py whose import fails for a module the interpreter lacks is told
/// to install it there (the model.py is fine); another failure, to fix it.
#[test]
fn a_missing_module_is_to_be_installed_not_fixed_in_model_py() {
    let python = std::path::Path::new("/opt/venv/bin/python");
    let advice = super::advice::what_to_fix(
        "ModuleNotFoundError: No module named 'torch.utils'",
        python,
        "fix model.py",
    );
    assert!(
        advice.contains("'torch'")
            && advice.contains("/opt/venv/bin/python -m pip install")
            && advice.contains("ANEMONE_PYTHON")
            && !advice.contains("fix model.py"),
        "{advice}"
    );
    assert_eq!(
        super::advice::what_to_fix("NameError: name 'x' is not defined", python, "fix model.py"),
        "fix model.py"
    );
    let broken = super::advice::what_to_fix(
        "ImportError: numpy.core.multiarray failed to import",
        python,
        "fix model.py",
    );
    assert!(
        broken.contains("cannot import numpy")
            && broken.contains("/opt/venv/bin/python -m pip install --force-reinstall numpy")
            && !broken.contains("fix model.py"),
        "{broken}"
    );
}
