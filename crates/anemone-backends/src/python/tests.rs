//! The Python backend with a real interpreter: the repository's `.venv`
//! (scripts/setup.sh makes it; CI always has it), else `python3` when it
//! has numpy, else skipped with a message (never in CI: there
//! `ANEMONE_REQUIRE_ORT` is set, and a missing interpreter fails).

use super::*;
use crate::test_dir::TempDir;
use anemone_core::ErrorKind;

/// A Python with numpy, or `None` (outside CI) with a message.
fn python() -> Option<PathBuf> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    for candidate in [venv, PathBuf::from("python3")] {
        if probe(&candidate).is_available() {
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
    let reason = match probe(Path::new("/nonexistent/python3")) {
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
