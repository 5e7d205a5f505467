//! `anemone models` and `anemone doctor`: backends, libraries, caches, and ONNX Runtime's own logs.

use super::*;

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
        .filter(|b| b["tier"] != "none")
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["coreml", "onnxruntime", "tract-cpu", "python"],
        "the default order of preference"
    );
    // Then the backends this build lacks, each with how to get it.
    let unbuilt: Vec<(&str, &str)> = (backends.iter())
        .filter(|b| b["tier"] == "none")
        .map(|b| (b["name"].as_str().unwrap(), b["reason"].as_str().unwrap()))
        .collect();
    assert!(
        unbuilt.iter().any(|(n, why)| *n == "tract-cuda"
            && why.contains(
                "not built into this binary: it needs Linux and the cargo feature `cuda`"
            )),
        "{unbuilt:?}"
    );
    // The Python backend names the interpreter it found, or what to install.
    let python = &backends[3];
    let said = python["detail"].as_str().or(python["reason"].as_str());
    assert!(said.is_some_and(|s| s.contains("numpy")), "{python}");
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
}

/// `doctor --model-config-name` reads each model's configuration as `serve`
/// with the same flag does: a model whose config.pbtxt is broken but whose
/// configs/h100.pbtxt is sound is runnable with the flag, not without.
#[test]
fn doctor_reads_the_custom_config_serve_would() {
    let repo = temp_dir("doctor-config-name");
    add_version(
        &repo,
        "add",
        "examples/models/add/1/model.onnx",
        "model.onnx",
    );
    std::fs::write(repo.join("add/config.pbtxt"), "max_batch_size: [").unwrap();
    std::fs::create_dir_all(repo.join("add/configs")).unwrap();
    std::fs::write(repo.join("add/configs/h100.pbtxt"), "max_batch_size: 8\n").unwrap();
    let check = |extra: &[&str]| {
        let mut args = vec![
            "doctor",
            "--model-repository",
            repo.to_str().unwrap(),
            "--json",
        ];
        args.extend(extra);
        let json: Value = serde_json::from_str(&assert_ok(&anemone(&args))).unwrap();
        json["models"][0].clone()
    };
    let plain = check(&[]);
    assert_eq!(plain["runnable_on"], serde_json::json!([]), "{plain}");
    assert!(plain.to_string().contains("config.pbtxt line 1"), "{plain}");
    let custom = check(&["--model-config-name", "h100"]);
    assert!(
        !custom["runnable_on"].as_array().unwrap().is_empty(),
        "{custom}"
    );
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
}
