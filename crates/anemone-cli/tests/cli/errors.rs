//! Bad models, missing models and bad inputs fail cleanly; the help explains.

use super::*;

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
