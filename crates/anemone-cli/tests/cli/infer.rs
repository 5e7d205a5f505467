//! `anemone infer` against reference outputs from ONNX Runtime.

use super::*;

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
}
