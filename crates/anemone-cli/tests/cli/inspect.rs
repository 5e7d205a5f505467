//! `anemone inspect` in both formats, on ONNX and Core ML files.

use super::*;

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
