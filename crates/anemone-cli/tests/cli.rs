//! End-to-end tests of the `anemone` binary: `infer` against reference
//! outputs from ONNX Runtime, `inspect` in both formats, and error reporting.
//!
//! The fixtures under `fixtures/generated/` come from `scripts/setup.sh`;
//! a test fails, with a message saying so, when they are missing.

use anemone_core::{npy, Tensor};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the workspace root exists")
}

/// A path under the workspace root that must exist.
fn fixture(rel: &str) -> PathBuf {
    let path = root().join(rel);
    assert!(
        path.exists(),
        "missing fixture {}: run scripts/setup.sh to generate fixtures/generated/",
        path.display()
    );
    path
}

/// A fresh, empty temporary directory for one test.
fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("anemone-cli-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Puts fixture `src` in a repository as `<name>/1/<file>`.
fn add_version(repo: &Path, name: &str, src: &str, file: &str) {
    std::fs::create_dir_all(repo.join(name).join("1")).unwrap();
    std::fs::copy(fixture(src), repo.join(name).join("1").join(file)).unwrap();
}

/// Runs the binary with `args`, without any `ANEMONE_*` variable of the caller.
fn anemone(args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_anemone"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("ANEMONE_") {
            cmd.env_remove(key);
        }
    }
    cmd.env_remove("RUST_BACKTRACE")
        .args(args)
        .output()
        .expect("the anemone binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Checks a failure: exit 1, a single `error:` report on stderr mentioning
/// every string in `mentions`, and no panic. Returns stderr.
fn assert_error(out: &Output, mentions: &[&str]) -> String {
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout:\n{}\nstderr:\n{stderr}",
        text(&out.stdout)
    );
    assert!(
        stderr.starts_with("error:"),
        "stderr does not start with 'error:':\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    for m in mentions {
        assert!(
            stderr.contains(m),
            "stderr does not mention '{m}':\n{stderr}"
        );
    }
    stderr
}

fn read_npy(path: &Path) -> Tensor {
    let file =
        std::fs::File::open(path).unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    npy::read(file).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Same dtype and shape, and every element within `atol + rtol * |expected|`.
fn assert_close(what: &str, got: &Tensor, want: &Tensor, rtol: f64, atol: f64) {
    assert_eq!(got.dtype(), want.dtype(), "{what}: dtype");
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    if !got.dtype().is_float() {
        assert_eq!(got, want, "{what}: values must be equal");
        return;
    }
    let (g, w) = (got.to_f64_lossy().unwrap(), want.to_f64_lossy().unwrap());
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        assert!(
            (a - b).abs() <= atol + rtol * b.abs(),
            "{what}[{i}]: got {a}, want {b} (rtol {rtol}, atol {atol})"
        );
    }
}

/// Runs run `run` of the fixture case in `dir` through `anemone infer` and
/// compares every output with the reference. Returns stdout.
fn check_case(dir: &str, run: usize, test: &str) -> String {
    let case_dir = fixture(dir);
    let case: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture(&format!("{dir}/case.json"))).unwrap(),
    )
    .unwrap();
    let run = &case["runs"][run];
    let out_dir = temp_dir(test);
    let model = case_dir.join(case["model"].as_str().unwrap());
    let mut args: Vec<String> = vec![
        "infer".into(),
        model.display().to_string(),
        "--output-dir".into(),
        out_dir.display().to_string(),
    ];
    for input in run["inputs"].as_array().unwrap() {
        let file = fixture(&format!("{dir}/{}", input["file"].as_str().unwrap()));
        args.extend([
            "--input".into(),
            format!("{}={}", input["name"].as_str().unwrap(), file.display()),
        ]);
    }
    let stdout = assert_ok(&anemone(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    let (rtol, atol) = (
        case["rtol"].as_f64().unwrap(),
        case["atol"].as_f64().unwrap(),
    );
    for output in run["outputs"].as_array().unwrap() {
        let name = output["name"].as_str().unwrap();
        let stem: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let want = read_npy(&fixture(&format!(
            "{dir}/{}",
            output["file"].as_str().unwrap()
        )));
        assert_close(
            name,
            &read_npy(&out_dir.join(format!("{stem}.npy"))),
            &want,
            rtol,
            atol,
        );
    }
    let _ = std::fs::remove_dir_all(out_dir);
    stdout
}

#[test]
fn infer_add_example_writes_npy_outputs() {
    let dir = temp_dir("add");
    let out = anemone(&[
        "infer",
        fixture("examples/models/add/1/model.onnx")
            .to_str()
            .unwrap(),
        "--input",
        &format!("x={}", fixture("examples/x.npy").display()),
        "--input",
        &format!("y={}", fixture("examples/y.npy").display()),
        "--output-dir",
        dir.to_str().unwrap(),
    ]);
    let stdout = assert_ok(&out);
    // By default the faster of the two CPU engines serves (setup.sh installs ONNX Runtime).
    assert!(
        stdout.contains("backend  onnxruntime") || stdout.contains("backend  tract-cpu"),
        "{stdout}"
    );
    let sum = Tensor::from_vec(vec![1, 4], vec![11.0f32, 22.0, 33.0, 44.0]).unwrap();
    let diff = Tensor::from_vec(vec![1, 4], vec![-9.0f32, -18.0, -27.0, -36.0]).unwrap();
    assert_eq!(read_npy(&dir.join("sum.npy")), sum);
    assert_eq!(read_npy(&dir.join("diff.npy")), diff);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn infer_output_flag_selects_outputs_and_json_reports_them() {
    let dir = temp_dir("add-json");
    let out = anemone(&[
        "infer",
        fixture("examples/models/add/1/model.onnx")
            .to_str()
            .unwrap(),
        "-i",
        &format!("x={}", fixture("examples/x.npy").display()),
        "-i",
        &format!("y={}", fixture("examples/y.npy").display()),
        "--output",
        "diff",
        "--json",
        "--backends",
        "tract-cpu",
        "--output-dir",
        dir.join("made/here").to_str().unwrap(),
    ]);
    let json: Value = serde_json::from_str(&assert_ok(&out)).expect("stdout is one JSON object");
    assert_eq!(json["backend"], "tract-cpu");
    assert!(
        json["latency_ms"].as_f64().unwrap() >= 0.0 && json["load_ms"].as_f64().unwrap() >= 0.0
    );
    let outputs = json["outputs"].as_array().unwrap();
    assert_eq!(outputs.len(), 1, "{json}");
    assert_eq!(outputs[0]["name"], "diff");
    assert_eq!(outputs[0]["dtype"], "f32");
    assert_eq!(outputs[0]["shape"], serde_json::json!([1, 4]));
    assert_eq!(
        outputs[0]["first_values"],
        serde_json::json!([-9.0, -18.0, -27.0, -36.0])
    );
    assert!(dir.join("made/here/diff.npy").is_file());
    assert!(!dir.join("made/here/sum.npy").exists());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn infer_multi_io_sanitises_odd_output_names() {
    let stdout = check_case("fixtures/generated/multi_io", 0, "multi_io");
    assert!(
        stdout.contains("output 'out/with:odd*name' -> out_with_odd_name.npy"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("output 'sum' ->"),
        "only changed names are mapped:\n{stdout}"
    );
}

#[test]
fn infer_int_bool_is_exact_with_a_scalar_input() {
    let k = read_npy(&fixture("fixtures/generated/int_bool/run1_in_3.npy"));
    assert!(
        k.shape().is_empty() && k.dtype() == anemone_core::DataType::I64,
        "k is a 0-d int64 scalar"
    );
    check_case("fixtures/generated/int_bool", 1, "int_bool");
}

#[test]
fn infer_takes_a_bare_file_for_a_single_input_model() {
    let dir = temp_dir("bare");
    let model = fixture("fixtures/generated/dynamic_batch/model.onnx");
    let input = fixture("fixtures/generated/dynamic_batch/run1_in_0.npy");
    let out = anemone(&[
        "infer",
        model.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "-d",
        dir.to_str().unwrap(),
    ]);
    assert_ok(&out);
    let want = read_npy(&fixture("fixtures/generated/dynamic_batch/run1_out_0.npy"));
    assert_close("y", &read_npy(&dir.join("y.npy")), &want, 1e-4, 1e-5);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn inspect_json_describes_dynamic_dims_and_backends() {
    let out = anemone(&[
        "inspect",
        fixture("fixtures/generated/dynamic_batch/model.onnx")
            .to_str()
            .unwrap(),
        "--json",
    ]);
    let json: Value = serde_json::from_str(&assert_ok(&out)).expect("stdout is one JSON object");
    let x = json["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "x")
        .expect("input x");
    assert_eq!(x["dtype"], "f32");
    assert_eq!(x["shape"], serde_json::json!(["batch", "seq", 8]));
    assert_eq!(json["format"], "onnx");
    assert!(json["file_size"].as_u64().unwrap() > 0);
    assert!(json["opsets"]
        .as_array()
        .unwrap()
        .iter()
        .any(|o| o["domain"] == "ai.onnx"));
    let tract = json["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "tract-cpu")
        .expect("tract-cpu listed");
    assert_eq!(tract["probe"]["status"], "available");
    assert_eq!(tract["supports"], true);
    assert!(tract.get("reason").is_none());
    // The selection the default order makes, by loading the model.
    let sel = &json["selection"];
    assert_eq!(sel["mode"], "ordered");
    assert_eq!(sel["attempts"][0]["outcome"], "chosen");
    assert_eq!(sel["backend"], sel["attempts"][0]["backend"], "{sel}");
    assert_eq!(sel["attempts"][1]["outcome"], "slower");
    // A list given by the user is followed in order, without timing.
    let out = anemone(&[
        "inspect",
        fixture("fixtures/generated/dynamic_batch/model.onnx")
            .to_str()
            .unwrap(),
        "--json",
        "--backends",
        "onnxruntime,tract-cpu",
    ]);
    let json: Value = serde_json::from_str(&assert_ok(&out)).unwrap();
    assert_eq!(
        json["selection"]["attempts"],
        serde_json::json!([{"backend": "onnxruntime", "outcome": "chosen"}, {"backend": "tract-cpu", "outcome": "standby"}])
    );
}

/// PP-OCR rec carries its 6,623-entry alphabet as a property: the text
/// form cuts it and says so; `--json` keeps it whole.
#[test]
fn inspect_cuts_long_values_in_text_and_keeps_them_in_json() {
    let model = fixture("fixtures/generated/ocr_rec/model.onnx");
    let model = model.to_str().unwrap();
    let stdout = assert_ok(&anemone(&["inspect", model, "--no-select"]));
    let longest = stdout.lines().map(|l| l.chars().count()).max().unwrap();
    assert!(longest <= 240, "a {longest}-character line in:\n{stdout}");
    let row = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("character:"))
        .unwrap_or_else(|| panic!("no character property in:\n{stdout}"));
    assert!(
        row.contains("more characters of") && row.contains("--json"),
        "{row}"
    );
    let json: Value = serde_json::from_str(&assert_ok(&anemone(&[
        "inspect",
        model,
        "--no-select",
        "--json",
    ])))
    .unwrap();
    assert!(
        json["properties"]["character"]
            .as_str()
            .unwrap()
            .chars()
            .count()
            > 6000,
        "--json keeps the whole value"
    );
}

#[test]
fn inspect_text_shows_anonymous_dims_as_minus_one() {
    let stdout = assert_ok(&anemone(&[
        "inspect",
        fixture("fixtures/generated/ocr_cls/model.onnx")
            .to_str()
            .unwrap(),
    ]));
    let x = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("x "))
        .unwrap_or_else(|| panic!("no row for x:\n{stdout}"));
    assert!(x.contains("f32") && x.contains("[-1, 3, -1, -1]"), "{x}");
    for label in [
        "format",
        "size",
        "opsets",
        "parameters",
        "weights",
        "backends",
        "tract-cpu",
        "selection (",
        "(fastest CPU engine, warm-up median: ",
    ] {
        assert!(stdout.contains(label), "no '{label}' in:\n{stdout}");
    }
}

/// `inspect` on Core ML files works on any system; the expected values are
/// what coremltools reads back (`fixtures/generated/coreml/*.expected.json`).
#[test]
fn inspect_describes_core_ml_files() {
    for case in ["program_fp16_int32", "nn_flexible"] {
        let want: Value = serde_json::from_str(
            &std::fs::read_to_string(fixture(&format!(
                "fixtures/generated/coreml/{case}.expected.json"
            )))
            .unwrap(),
        )
        .unwrap();
        let model = fixture(&format!(
            "fixtures/generated/coreml/{}",
            want["file"].as_str().unwrap()
        ));
        let json: Value = serde_json::from_str(&assert_ok(&anemone(&[
            "inspect",
            model.to_str().unwrap(),
            "--json",
        ])))
        .expect("stdout is one JSON object");
        assert_eq!(json["format"], "coreml", "{case}");
        let names = |v: &Value| -> Vec<String> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|f| f["name"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(
            names(&json["inputs"]),
            names(&want["description"]["input"]),
            "{case}"
        );
        assert_eq!(
            names(&json["outputs"]),
            names(&want["description"]["output"]),
            "{case}"
        );
        assert_eq!(
            json["properties"]["coreml.model_type"], want["modelType"],
            "{case}"
        );
        let coreml = json["backends"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["name"] == "coreml")
            .expect("coreml listed");
        assert_eq!(coreml["supports"], true, "{case}");
        if !cfg!(target_vendor = "apple") {
            assert_eq!(coreml["probe"]["status"], "unavailable");
            assert!(coreml["probe"]["reason"]
                .as_str()
                .unwrap()
                .contains("needs macOS"));
        }
    }
    let stdout = assert_ok(&anemone(&[
        "inspect",
        fixture("fixtures/generated/coreml/program_fp16_int32.mlpackage")
            .to_str()
            .unwrap(),
    ]));
    let x = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("x "))
        .unwrap_or_else(|| panic!("no row for x:\n{stdout}"));
    assert!(x.contains("f16") && x.contains("[1, 3, 8, 8]"), "{x}");
    assert!(stdout.contains("coreml.model_type"), "{stdout}");
}

#[cfg(not(target_vendor = "apple"))]
#[test]
fn compute_plan_says_it_needs_a_mac() {
    let model = fixture("fixtures/generated/coreml/program_fp16_int32.mlpackage");
    let model = model.to_str().unwrap();
    assert_error(
        &anemone(&["inspect", model, "--compute-plan"]),
        &["macOS 14.4"],
    );
    assert_error(
        &anemone(&["inspect", model, "--compute-plan", "--compute-units", "npu"]),
        &["--compute-units"],
    );
    let onnx = fixture("examples/models/add/1/model.onnx");
    assert_error(
        &anemone(&["inspect", onnx.to_str().unwrap(), "--compute-plan"]),
        &["for Core ML models"],
    );
}

#[test]
fn bad_core_ml_files_fail_cleanly() {
    for (file, says) in [
        ("truncated.mlmodel", "truncated"),
        ("no_data.mlpackage", "no Data directory"),
        ("compiled.mlmodelc", ".mlmodelc"),
    ] {
        let path = fixture(&format!("fixtures/generated/coreml/bad/{file}"));
        assert_error(
            &anemone(&["inspect", path.to_str().unwrap()]),
            &[file, says],
        );
    }
}

#[test]
fn bad_models_fail_cleanly() {
    for (file, inspect_fails) in [
        ("not_onnx.onnx", true),
        ("truncated.onnx", true),
        ("unsupported_op.onnx", false),
        ("missing_external.onnx", true),
        ("empty.onnx", true),
    ] {
        let path = fixture(&format!("fixtures/generated/bad/{file}"));
        let path = path.to_str().unwrap();
        assert_error(&anemone(&["infer", path]), &[file]);
        let inspect = anemone(&["inspect", path]);
        if inspect_fails {
            assert_error(&inspect, &[file]);
        } else {
            // Described, but no backend can load it: the selection says why.
            let text = assert_ok(&inspect);
            assert!(
                text.contains("no backend can run") && text.contains("FancyOp"),
                "{text}"
            );
        }
    }
}

#[test]
fn missing_model_fails_cleanly() {
    for cmd in ["infer", "inspect"] {
        assert_error(
            &anemone(&[cmd, "/nonexistent/anemone/model.onnx"]),
            &["/nonexistent/anemone/model.onnx"],
        );
    }
}

#[test]
fn bad_inputs_name_the_input_and_the_file() {
    let dir = temp_dir("bad-inputs");
    let model = fixture("examples/models/add/1/model.onnx");
    let model = model.to_str().unwrap();
    let y = format!("y={}", fixture("examples/y.npy").display());

    let missing = dir.join("missing.npy");
    assert_error(
        &anemone(&[
            "infer",
            model,
            "-i",
            &format!("x={}", missing.display()),
            "-i",
            &y,
        ]),
        &["'x'", "missing.npy"],
    );

    let wrong = dir.join("x_i64.npy");
    npy::write(
        &Tensor::from_vec(vec![1, 4], vec![1i64, 2, 3, 4]).unwrap(),
        std::fs::File::create(&wrong).unwrap(),
    )
    .unwrap();
    assert_error(
        &anemone(&[
            "infer",
            model,
            "-i",
            &format!("x={}", wrong.display()),
            "-i",
            &y,
        ]),
        &["'x'", "x_i64.npy", "INT64", "FP32"],
    );

    let not_npy = fixture("examples/models/add/1/model.onnx");
    assert_error(
        &anemone(&[
            "infer",
            model,
            "-i",
            &format!("x={}", not_npy.display()),
            "-i",
            &y,
        ]),
        &["'x'", "model.onnx"],
    );

    let x = fixture("examples/x.npy");
    assert_error(
        &anemone(&["infer", model, "-i", x.to_str().unwrap()]),
        &["x.npy", "NAME=FILE", "x, y"],
    );
    assert_error(&anemone(&["infer", model, "-i", "=x.npy"]), &["=x.npy"]);
    let _ = std::fs::remove_dir_all(dir);
}

/// The top-level help says where ONNX Runtime stands (it is not "on the way").
#[test]
fn top_level_help_says_how_onnxruntime_is_found() {
    let stdout = assert_ok(&anemone(&["--help"]));
    assert!(!stdout.contains("on the way"), "{stdout}");
    assert!(
        stdout.contains("scripts/install-onnxruntime.sh"),
        "{stdout}"
    );
}

#[test]
fn help_documents_env_vars_and_defaults() {
    let stdout = assert_ok(&anemone(&["infer", "--help"]));
    for s in [
        "ANEMONE_INPUT",
        "ANEMONE_OUTPUT_DIR",
        "ANEMONE_THREADS",
        "ANEMONE_JSON",
        "ANEMONE_LOG",
        "[default: .]",
        "[default: warn]",
    ] {
        assert!(stdout.contains(s), "no '{s}' in:\n{stdout}");
    }
    assert!(assert_ok(&anemone(&["--version"])).starts_with("anemone "));
}

#[test]
fn models_reports_the_backend_each_model_landed_on() {
    let repo = temp_dir("models-repo");
    add_version(
        &repo,
        "add",
        "examples/models/add/1/model.onnx",
        "model.onnx",
    );
    add_version(
        &repo,
        "pinned",
        "examples/models/add/1/model.onnx",
        "model.onnx",
    );
    std::fs::write(
        repo.join("pinned/config.pbtxt"),
        "parameters { key: \"backends\" value: { string_value: \"tract-cuda,tract-cpu\" } }",
    )
    .unwrap();
    let out = anemone(&[
        "models",
        "--model-repository",
        repo.to_str().unwrap(),
        "--json",
    ]);
    let rows: Value = serde_json::from_str(&assert_ok(&out)).expect("stdout is JSON");
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(
        (rows[0]["name"].as_str(), rows[0]["state"].as_str()),
        (Some("add"), Some("READY"))
    );
    // The default order reaches the CPU engines: both are timed, the faster serves.
    let attempts = rows[0]["selection"]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert_eq!(attempts[0]["outcome"], "chosen");
    assert_eq!(attempts[1]["outcome"], "slower");
    assert_eq!(rows[0]["backend"], attempts[0]["backend"]);
    assert!(
        attempts[0]["warmup_us"].as_f64().unwrap() <= attempts[1]["warmup_us"].as_f64().unwrap()
    );
    assert_eq!(rows[1]["backend"], "tract-cpu");
    let skipped = &rows[1]["selection"]["attempts"][0];
    assert_eq!(skipped["backend"], "tract-cuda");
    assert_eq!(skipped["outcome"], "skipped");
    assert!(
        skipped["reason"]
            .as_str()
            .unwrap()
            .contains("feature `cuda`"),
        "{skipped}"
    );

    // Text form, auto mode: both CPU engines are timed.
    let out = anemone(&[
        "models",
        "--model-repository",
        repo.to_str().unwrap(),
        "--backends",
        "auto",
    ]);
    let text = assert_ok(&out);
    assert!(text.contains("chosen (auto mode, warm-up median"), "{text}");

    // A model that cannot load fails the command after the report.
    std::fs::write(repo.join("add/1/model.onnx"), b"not onnx").unwrap();
    let out = anemone(&["models", "--model-repository", repo.to_str().unwrap()]);
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("UNAVAILABLE") && stdout.contains("not loaded:"),
        "{stdout}"
    );
    assert!(
        stderr.contains("error: 1 of 2 models could not be loaded: add"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(repo);
}

#[test]
fn an_unknown_backend_name_stops_with_a_suggestion() {
    let out = anemone(&[
        "infer",
        fixture("examples/models/add/1/model.onnx")
            .to_str()
            .unwrap(),
        "--backends",
        "onnxruntim",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unknown backend 'onnxruntim'; did you mean 'onnxruntime'?"),
        "{stderr}"
    );
}

#[test]
fn doctor_reports_hardware_backends_libraries_and_caches() {
    let out = anemone(&["doctor", "--json"]);
    let json: Value = serde_json::from_str(&assert_ok(&out)).expect("stdout is JSON");
    assert!(json["cpu"]["usable_cores"].as_u64().unwrap() >= 1);
    assert!(json["memory"]["total_bytes"].as_u64().unwrap() > 0);
    let backends = json["backends"].as_array().unwrap();
    let names: Vec<&str> = backends
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["coreml", "onnxruntime", "tract-cpu"],
        "the default order of preference"
    );
    assert_eq!(backends[0]["status"], "unavailable", "{}", backends[0]);
    assert!(backends[0]["reason"]
        .as_str()
        .unwrap()
        .contains("Core ML needs macOS"));
    let backends = &backends[1..];
    assert_eq!(backends[1]["status"], "available");
    assert_eq!(
        backends[0]["status"], "available",
        "scripts/setup.sh installs ONNX Runtime: {}",
        backends[0]
    );
    let libs = json["libraries"].as_array().unwrap();
    assert!(
        libs[0]["path"].as_str().unwrap().contains("libonnxruntime"),
        "{}",
        libs[0]
    );
    assert!(!json["caches"].as_array().unwrap().is_empty());
}

/// ONNX Runtime libraries that are missing, of the wrong version, corrupt, or
/// not ONNX Runtime at all: each is reported with what to do, and anemone
/// goes on with the backends that work.
#[test]
fn bad_onnxruntime_libraries_are_reported_and_serving_goes_on() {
    let dir = temp_dir("bad-ort");
    // An "ONNX Runtime 1.16.3": exports OrtGetApiBase, reports its version,
    // and (like a real old release) has no API version 31.
    let stub = dir.join("stub.c");
    std::fs::write(
        &stub,
        "typedef struct { const void* (*GetApi)(unsigned); const char* (*GetVersionString)(void); } Base;\n\
         static const void* get_api(unsigned v) { (void)v; return 0; }\n\
         static const char* version(void) { return \"1.16.3\"; }\n\
         static const Base base = { get_api, version };\n\
         const Base* OrtGetApiBase(void) { return &base; }\n",
    )
    .unwrap();
    let old = dir.join("libonnxruntime.so.1.16.3");
    let cc = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&old)
        .arg(&stub)
        .status()
        .expect("a C compiler (cc) builds the stub");
    assert!(cc.success());
    let corrupt = dir.join("libonnxruntime.so.1.31.1");
    std::fs::write(
        &corrupt,
        vec![0x7fu8, b'E', b'L', b'F', 2, 1, 1, 0, 0xde, 0xad, 0xbe, 0xef],
    )
    .unwrap();
    let not_ort = dir.join("libnot-ort.so");
    let cc = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&not_ort)
        .arg("-x")
        .arg("c")
        .arg("/dev/null")
        .status()
        .unwrap();
    assert!(cc.success());
    let cases: [(&Path, &str); 4] = [
        (Path::new("/nonexistent/libonnxruntime.so"), "libonnxruntime not found at /nonexistent/libonnxruntime.so; run scripts/install-onnxruntime.sh"),
        (&old, "expected version >= '1.31.x', but got '1.16.3'"),
        (&corrupt, "failed to load"),
        (&not_ort, "does not export `OrtGetApiBase`"),
    ];
    for (library, says) in cases {
        let run = |args: &[&str]| {
            Command::new(env!("CARGO_BIN_EXE_anemone"))
                .args(args)
                .env("ORT_DYLIB_PATH", library)
                .output()
                .unwrap()
        };
        let text = assert_ok(&run(&["doctor"]));
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with("onnxruntime "))
            .unwrap_or_default();
        assert!(
            line.contains("unavailable") && line.contains(says),
            "{}: {line}",
            library.display()
        );
        if library.exists() {
            assert!(
                line.contains("scripts/install-onnxruntime.sh"),
                "says what to do: {line}"
            );
        }
        // The model still runs, on tract.
        let out = run(&[
            "infer",
            fixture("examples/models/add/1/model.onnx")
                .to_str()
                .unwrap(),
            "-i",
            &format!("x={}", fixture("examples/x.npy").display()),
            "-i",
            &format!("y={}", fixture("examples/y.npy").display()),
            "--output-dir",
            dir.to_str().unwrap(),
            "--json",
        ]);
        let json: Value = serde_json::from_str(&assert_ok(&out)).unwrap();
        assert_eq!(json["backend"], "tract-cpu", "{}", library.display());
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// On a machine without Core ML, doctor lists a repository's Core ML model as
/// not loadable here, with the reason, and its ONNX model as runnable.
#[test]
fn doctor_checks_a_repository_and_names_models_that_cannot_run_here() {
    let repo = temp_dir("doctor-repo");
    add_version(
        &repo,
        "add",
        "examples/models/add/1/model.onnx",
        "model.onnx",
    );
    add_version(
        &repo,
        "classifier",
        "fixtures/generated/coreml/pipeline.mlmodel",
        "model.mlmodel",
    );
    let out = anemone(&[
        "doctor",
        "--model-repository",
        repo.to_str().unwrap(),
        "--json",
    ]);
    let json: Value = serde_json::from_str(&assert_ok(&out)).unwrap();
    let models = json["models"].as_array().unwrap();
    assert_eq!(models.len(), 2, "{models:?}");
    assert_eq!(models[0]["name"], "add");
    assert!(!models[0]["runnable_on"].as_array().unwrap().is_empty());
    assert_eq!(models[1]["name"], "classifier");
    assert_eq!(models[1]["runnable_on"], serde_json::json!([]));
    let why = &models[1]["not_here"][0];
    assert_eq!(why[0], "coreml");
    assert!(
        why[1].as_str().unwrap().contains("Core ML needs macOS"),
        "{why}"
    );
    let text = assert_ok(&anemone(&[
        "doctor",
        "--model-repository",
        repo.to_str().unwrap(),
    ]));
    assert!(
        text.contains("classifier (coreml): NOT LOADABLE HERE"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(repo);
}

/// ONNX Runtime's own log lines go through anemone's logging: silero VAD
/// fed one sample (too short for its STFT's reflect padding), with
/// `--log-level off`, leaves exactly the one `error:` line, with no
/// `[E:onnxruntime:...]` line from ONNX Runtime and no ANSI colour.
#[test]
fn onnxruntime_log_lines_do_not_leak() {
    let dir = temp_dir("ort-log");
    let write = |name: &str, t: Tensor| {
        let path = dir.join(format!("{name}.npy"));
        std::fs::write(&path, npy::to_bytes(&t)).unwrap();
        format!("{name}={}", path.display())
    };
    let input = write("input", Tensor::from_vec(vec![1, 1], vec![0.5f32]).unwrap());
    let state = write(
        "state",
        Tensor::from_vec(vec![2, 1, 128], vec![0f32; 256]).unwrap(),
    );
    let sr = write("sr", Tensor::from_vec(vec![], vec![16000i64]).unwrap());
    let model = fixture("fixtures/generated/silero_vad/model.onnx");
    let mut args = vec![
        "infer",
        model.to_str().unwrap(),
        "-d",
        dir.to_str().unwrap(),
    ];
    for i in [&input, &state, &sr] {
        args.extend(["-i", i.as_str()]);
    }
    args.extend(["--backends", "onnxruntime", "--log-level", "off"]);
    let out = anemone(&args);
    // ONNX Runtime itself calls it INVALID_ARGUMENT: the input's fault.
    let stderr = assert_error(&out, &["onnxruntime", "cannot run on input"]);
    assert!(!stderr.contains("[E:onnxruntime"), "{stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "ANSI codes on a pipe: {stderr:?}"
    );
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    let _ = std::fs::remove_dir_all(dir);
}

/// A running `anemone serve` child, stopped with SIGTERM when dropped.
struct Serving {
    child: std::process::Child,
    stdout: std::sync::mpsc::Receiver<String>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Serving {
    fn start(args: &[&str], env: &[(&str, &str)]) -> Serving {
        use std::io::BufRead;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_anemone"));
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("ANEMONE_") {
                cmd.env_remove(key);
            }
        }
        let mut child = cmd
            .args(["serve", "--http-port", "0", "--grpc-port", "0"])
            .args(args)
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("the anemone binary runs");
        let (tx, stdout) = std::sync::mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (err, sink) = (child.stderr.take().unwrap(), stderr.clone());
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        Serving {
            child,
            stdout,
            stderr,
        }
    }

    /// Stdout lines up to and including the first that `done` accepts
    /// (at most a minute).
    fn lines_until(&self, done: impl Fn(&str) -> bool) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let line = self
                .stdout
                .recv_timeout(std::time::Duration::from_secs(60))
                .unwrap_or_else(|e| {
                    panic!("{e}; stdout so far: {lines:#?}\nstderr: {}", self.stderr())
                });
            let last = done(&line);
            lines.push(line);
            if last {
                return lines;
            }
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits up to a minute for stderr to contain `what`.
    fn wait_stderr(&self, what: &str) -> String {
        let start = std::time::Instant::now();
        loop {
            let s = self.stderr();
            if s.contains(what) {
                return s;
            }
            assert!(
                start.elapsed() < std::time::Duration::from_secs(60),
                "no '{what}' on stderr:\n{s}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// SIGTERM, then the exit status (at most a minute later).
    fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let start = std::time::Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                start.elapsed() < std::time::Duration::from_secs(60),
                "no exit a minute after SIGTERM"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `serve` without the ONNX Runtime library says so once, at warn level,
/// with the fix; prints a table of its models once they have loaded; and in
/// poll mode logs a reload that failed.
#[test]
fn serve_reports_its_models_a_missing_onnxruntime_and_failed_reloads() {
    let repo = temp_dir("serve-report");
    add_version(
        &repo,
        "add",
        "examples/models/add/1/model.onnx",
        "model.onnx",
    );
    add_version(
        &repo,
        "broken",
        "fixtures/generated/bad/truncated.onnx",
        "model.onnx",
    );
    let mut serving = Serving::start(
        &[
            "--model-repository",
            repo.to_str().unwrap(),
            "--model-control-mode",
            "poll",
            "--repository-poll-secs",
            "1",
        ],
        &[("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")],
    );
    let lines = serving.lines_until(|l| l.starts_with("broken"));
    let header = lines
        .iter()
        .find(|l| l.starts_with("MODEL"))
        .unwrap_or_else(|| panic!("no table header: {lines:#?}"));
    for column in ["VERSION", "STATE", "BACKEND", "LOAD TIME"] {
        assert!(header.contains(column), "{header}");
    }
    let add = lines.iter().find(|l| l.starts_with("add ")).unwrap();
    for cell in ["1", "READY", "tract-cpu", " ms"] {
        assert!(add.contains(cell), "{add}");
    }
    let broken = lines.last().unwrap();
    assert!(broken.contains("UNAVAILABLE"), "{broken}");

    let stderr = serving.stderr();
    assert!(
        !stderr.contains('\u{1b}'),
        "ANSI codes on a pipe: {stderr:?}"
    );
    let warned = stderr.matches("ONNX Runtime is unavailable").count();
    assert_eq!(warned, 1, "{stderr}");
    assert!(stderr.contains("WARN"), "{stderr}");
    assert!(stderr.contains("install-onnxruntime.sh"), "{stderr}");

    // A change on disk that cannot load is logged.
    std::fs::write(repo.join("add/1/model.onnx"), b"not a model").unwrap();
    let stderr = serving.wait_stderr("reload after a change on disk failed");
    assert!(stderr.contains("add"), "{stderr}");
    assert!(serving.terminate().success());
    let _ = std::fs::remove_dir_all(repo);
}

/// `--exit-timeout-secs` bounds the exit even while an engine call runs on:
/// a `Loop` of a million iterations (seconds on tract) is still running when
/// SIGTERM comes, and the process exits 0 within the timeout (plus slack),
/// not when the call ends.
#[test]
fn serve_exits_within_the_exit_timeout_while_an_engine_call_runs() {
    use std::io::{Read, Write};
    let repo = temp_dir("exit-timeout");
    add_version(
        &repo,
        "loop",
        "fixtures/generated/loop_control/model.onnx",
        "model.onnx",
    );
    std::fs::write(
        repo.join("loop/config.pbtxt"),
        "parameters { key: \"backends\" value: { string_value: \"tract-cpu\" } }\n",
    )
    .unwrap();
    let mut serving = Serving::start(
        &[
            "--model-repository",
            repo.to_str().unwrap(),
            "--exit-timeout-secs",
            "1",
        ],
        &[],
    );
    let lines = serving.lines_until(|l| l.starts_with("loop"));
    let http = lines
        .iter()
        .find_map(|l| l.strip_prefix("HTTP listening on "))
        .unwrap()
        .to_string();
    let body = r#"{"inputs": [{"name": "trip", "shape": [], "datatype": "INT64", "data": [1000000]},
        {"name": "x", "shape": [2], "datatype": "FP32", "data": [0, 0]}]}"#;
    let mut client = std::net::TcpStream::connect(&http).unwrap();
    write!(
        client,
        "POST /v2/models/loop/infer HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    // The engine call has started well before this.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let start = std::time::Instant::now();
    let status = serving.terminate();
    let took = start.elapsed();
    assert!(status.success(), "{status:?}\n{}", serving.stderr());
    assert!(
        took < std::time::Duration::from_secs(4),
        "exited {took:?} after SIGTERM with --exit-timeout-secs 1"
    );
    // The request was cut off, not answered.
    let mut answer = Vec::new();
    let _ = client.read_to_end(&mut answer);
    assert!(!String::from_utf8_lossy(&answer).contains("200 OK"));
    let _ = std::fs::remove_dir_all(repo);
}

/// doctor runs serve's own repository checks: a config serve refuses (here a
/// `default_model_filename` naming a missing file, and an unknown backend
/// key) is reported as not loadable, with serve's reason.
#[test]
fn doctor_reports_the_configs_serve_refuses() {
    let repo = temp_dir("doctor-config");
    add_version(
        &repo,
        "add",
        "examples/models/add/1/model.onnx",
        "model.onnx",
    );
    add_version(
        &repo,
        "typo",
        "examples/models/add/1/model.onnx",
        "model.onnx",
    );
    std::fs::write(
        repo.join("typo/config.pbtxt"),
        "default_model_filename: \"modle.onnx\"\n",
    )
    .unwrap();
    add_version(
        &repo,
        "keys",
        "examples/models/add/1/model.onnx",
        "model.onnx",
    );
    std::fs::write(
        repo.join("keys/config.pbtxt"),
        "parameters { key: \"tract-cpu.bogus\" value: { string_value: \"1\" } }\n",
    )
    .unwrap();
    let out = anemone(&[
        "doctor",
        "--model-repository",
        repo.to_str().unwrap(),
        "--json",
    ]);
    let json: Value = serde_json::from_str(&assert_ok(&out)).unwrap();
    let models = json["models"].as_array().unwrap();
    let row = |name: &str| models.iter().find(|m| m["name"] == name).unwrap();
    assert!(!row("add")["runnable_on"].as_array().unwrap().is_empty());
    for (name, reason) in [
        (
            "typo",
            "the model file 'modle.onnx' named by default_model_filename is missing",
        ),
        ("keys", "backend tract-cpu reads: tract-cpu.plan_cache"),
    ] {
        let m = row(name);
        assert_eq!(m["runnable_on"], serde_json::json!([]), "{m}");
        assert_eq!(m["not_here"][0][0], "repository", "{m}");
        assert!(
            m["not_here"][0][1].as_str().unwrap().contains(reason),
            "{m}"
        );
    }
    let _ = std::fs::remove_dir_all(repo);
}

/// `--memory-budget` takes units; `--eviction lru` needs a budget; `models`
/// with a budget for one of two models reports the other evicted (loaded again
/// on request), not failed, and shows the budget and what is resident.
#[test]
fn models_with_a_memory_budget_and_lru_eviction_shows_what_is_resident() {
    let repo = temp_dir("evict-models");
    add_version(
        &repo,
        "convnet",
        "fixtures/generated/small_convnet/model.onnx",
        "model.onnx",
    );
    add_version(
        &repo,
        "ocr_cls",
        "fixtures/generated/ocr_cls/model.onnx",
        "model.onnx",
    );
    let r = repo.to_str().unwrap();
    let tract = ["--backends", "tract-cpu"];
    // Charged on tract: ocr_cls about 523 KiB, convnet a few KiB; 525KiB holds one, not both.
    let mut args = vec![
        "models",
        "--model-repository",
        r,
        "--memory-budget",
        "525KiB",
        "--eviction",
        "lru",
    ];
    args.extend(tract);
    let out = assert_ok(&anemone(&args));
    assert!(
        out.contains("of the 525.0 KiB budget charged (eviction lru); resident: ")
            && out.contains("evicted (loaded again on request): "),
        "{out}"
    );
    assert!(out.contains("evicted (LRU) to make room for '"), "{out}");

    // Without eviction, the same budget refuses the second model.
    let mut args = vec![
        "models",
        "--model-repository",
        r,
        "--memory-budget",
        "525KiB",
    ];
    args.extend(tract);
    let out = anemone(&args);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("error: 1 of 2 models could not be loaded"),
        "{}",
        text(&out.stderr)
    );

    let out = anemone(&["models", "--model-repository", r, "--memory-budget", "2XB"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("e.g. 2GiB or 512MiB"),
        "{}",
        text(&out.stderr)
    );
    let out = anemone(&["serve", "--model-repository", r, "--eviction", "lru"]);
    assert_error(&out, &["--eviction lru needs a budget", "--memory-budget"]);
    let _ = std::fs::remove_dir_all(&repo);
}

/// TLS: a certificate that cannot be read, or flags that do not go
/// together, stop `anemone serve` at once with the file or flag named (and
/// no panic); an https URL without a CA stops `anemone bench`. (Bad
/// certificate and key contents: crates/anemone-server/tests/api/tls.rs.)
#[test]
fn serve_and_bench_refuse_bad_tls_files_and_flags() {
    let dir = temp_dir("tls-flags");
    let missing = dir.join("missing.pem");
    let key = dir.join("server.key");
    std::fs::write(&key, "not a key\n").unwrap();
    let repo = root().join("examples/models");
    // Run with a deadline: a server that starts instead of refusing fails
    // the test rather than hanging it.
    let serve = |extra: &[&str]| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_anemone"))
            .args(["serve", "--model-repository", repo.to_str().unwrap()])
            .args(["--http-port", "0", "--grpc-port", "0"])
            .args(extra)
            .env_remove("RUST_BACKTRACE")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("anemone serve {extra:?} started instead of refusing");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        child.wait_with_output().unwrap()
    };
    let m = missing.to_str().unwrap();
    let k = key.to_str().unwrap();
    assert_error(
        &serve(&["--http-tls-cert", m, "--http-tls-key", k]),
        &["HTTP TLS", m, "--http-tls-cert", "cannot be read"],
    );
    assert_error(
        &serve(&["--grpc-server-cert", m, "--grpc-server-key", k]),
        &["--grpc-server-cert", "add --grpc-use-ssl"],
    );
    assert_error(
        &serve(&["--http-tls-cert", m]),
        &["--http-tls-cert needs --http-tls-key"],
    );
    assert_error(
        &anemone(&["bench", "--model", "add", "--url", "https://127.0.0.1:1"]),
        &["https", "--ca-cert"],
    );
    let _ = std::fs::remove_dir_all(dir);
}
