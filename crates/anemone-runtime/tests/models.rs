//! The Manager end to end on real ONNX models through the tract CPU backend.
//!
//! Every output is compared with ONNX Runtime's Python API on the same inputs
//! (the references come from `scripts/gen_fixtures.py`).

mod cuda;
mod engine_failures;
use engine_failures::{x, Tricky};
mod eviction;
mod lookup_cache;
mod onnxruntime;
mod scheduler;
mod selection;
mod support;

use crate::support::double::Double;
use anemone_backends::TractCpu;
use anemone_core::{
    DataType, Dim, Error, ErrorKind, InputError, LoadOptions, LoadedModel, ModelFormat,
    ModelMetadata, Probe, Tensor, TensorSpec,
};
use anemone_runtime::{InferRequest, Manager, ModelSpec};
use std::time::Duration;
use support::{assert_close, fixtures, Case};

fn manager() -> Manager {
    Manager::builder()
        .backend(TractCpu)
        .workers(2)
        .build()
        .unwrap()
}

/// Loads a case's model once and checks every run against the references.
fn check_case(name: &str) {
    let case = Case::load(name);
    let m = manager();
    let instance = m
        .load_model_blocking(ModelSpec::new(name, case.model_path()))
        .unwrap_or_else(|e| panic!("{name}: load failed: {}", e.chain_string()));
    assert_eq!(instance.backend(), "tract-cpu");
    for (k, run) in case.runs.iter().enumerate() {
        let mut request = InferRequest::new(name);
        request.inputs = case.inputs(run);
        let response = m
            .infer_blocking(request)
            .unwrap_or_else(|e| panic!("{name} run {k}: {}", e.chain_string()));
        assert_eq!(response.outputs.len(), instance.metadata().outputs.len());
        for out in &run.outputs {
            let got = response
                .output(&out.name)
                .unwrap_or_else(|| panic!("{name} run {k}: no output {}", out.name));
            assert_close(
                &format!("{name} run {k} output {}", out.name),
                got,
                &case.tensor(&out.file),
                case.rtol,
                case.atol,
            );
        }
    }
    let stats = m.metrics();
    assert_eq!(
        stats.model(name).unwrap().metrics.success,
        case.runs.len() as u64
    );
}

macro_rules! cases {
    ($($name:ident),* $(,)?) => {
        $(#[test] fn $name() { check_case(stringify!($name)); })*
    };
}

mod generated {
    use super::check_case;
    cases!(
        dynamic_batch,
        all_dtypes,
        same_symbol,
        multi_io,
        int_bool,
        four_inputs,
        identity,
        batched_identity,
        if_control,
        loop_control,
        gru,
        lstm,
        small_convnet,
        transformer_block,
        resnet18,
    );
}

mod pretrained {
    use super::check_case;
    cases!(ocr_det, ocr_rec, ocr_cls, magika, silero_vad);
}

#[test]
fn metadata_keeps_symbols_and_anonymous_dims() {
    let m = manager();
    let det = m
        .load_model_blocking(ModelSpec::new("det", Case::load("ocr_det").model_path()))
        .unwrap();
    let x = &det.metadata().inputs[0];
    assert_eq!(x.dtype, DataType::F32);
    assert_eq!(x.shape.as_ref().unwrap()[1], Dim::Fixed(3));
    assert!(matches!(x.shape.as_ref().unwrap()[2], Dim::Named(_)));

    // PaddlePaddle writes `?` for both height and width: they must stay independent.
    let cls = m
        .load_model_blocking(ModelSpec::new("cls", Case::load("ocr_cls").model_path()))
        .unwrap();
    assert_eq!(cls.metadata().inputs[0].shape_string(), "[-1, 3, -1, -1]");
    let image = Tensor::from_vec(vec![1, 3, 48, 100], vec![0.1f32; 3 * 48 * 100]).unwrap();
    let out = m
        .infer_blocking(InferRequest::new("cls").input("x", image))
        .unwrap();
    assert_eq!(out.outputs[0].1.shape(), &[1, 2]);
}

#[test]
fn same_symbol_must_agree_across_inputs() {
    let m = manager();
    m.load_model_blocking(ModelSpec::new("s", Case::load("same_symbol").model_path()))
        .unwrap();
    let a = Tensor::from_vec(vec![2, 3], vec![1f32; 6]).unwrap();
    let b = Tensor::from_vec(vec![4, 3], vec![1f32; 12]).unwrap();
    let err = m
        .infer_blocking(InferRequest::new("s").input("a", a).input("b", b))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(
        matches!(err, Error::Input(InputError::Symbol { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("'n' is 2 from input 'a'"), "{err}");
}

#[test]
fn every_validation_failure_is_specific_and_nothing_is_lost() {
    let m = manager();
    m.load_model_blocking(ModelSpec::new(
        "mb",
        Case::load("dynamic_batch").model_path(),
    ))
    .unwrap();
    let good = || Tensor::from_vec(vec![2, 3, 8], vec![0.5f32; 48]).unwrap();
    let cases: Vec<(InferRequest, fn(&InputError) -> bool)> = vec![
        (
            InferRequest::new("mb")
                .input("x", good())
                .input("zz", good()),
            |e| matches!(e, InputError::Unknown { .. }),
        ),
        (InferRequest::new("mb"), |e| {
            matches!(e, InputError::Missing { .. })
        }),
        (
            InferRequest::new("mb")
                .input("x", good())
                .input("x", good()),
            |e| matches!(e, InputError::Duplicate { .. }),
        ),
        (
            InferRequest::new("mb").input(
                "x",
                Tensor::from_vec(vec![2, 3, 8], vec![1i32; 48]).unwrap(),
            ),
            |e| matches!(e, InputError::Dtype { .. }),
        ),
        (
            InferRequest::new("mb")
                .input("x", Tensor::from_vec(vec![6, 8], vec![0f32; 48]).unwrap()),
            |e| matches!(e, InputError::Rank { .. }),
        ),
        (
            InferRequest::new("mb").input(
                "x",
                Tensor::from_vec(vec![2, 3, 7], vec![0f32; 42]).unwrap(),
            ),
            |e| {
                matches!(
                    e,
                    InputError::Dim {
                        axis: 2,
                        expected: 8,
                        got: 7,
                        ..
                    }
                )
            },
        ),
        (
            InferRequest::new("mb").input("x", good()).output("nope"),
            |e| matches!(e, InputError::UnknownOutput { .. }),
        ),
    ];
    for (request, expected) in cases {
        match m.infer_blocking(request) {
            Err(Error::Input(e)) => assert!(expected(&e), "unexpected error: {e}"),
            other => panic!("expected an input error, got {other:?}"),
        }
    }
    let bytes = InferRequest::new("mb")
        .input_bytes("x", DataType::F32, vec![2, 3, 8], vec![0; 10])
        .unwrap_err();
    assert!(
        matches!(
            bytes,
            Error::Input(InputError::ByteLength {
                expected: 192,
                got: 10,
                ..
            })
        ),
        "{bytes}"
    );

    // The model still serves, and no permit leaked.
    let ok = m
        .infer_blocking(InferRequest::new("mb").input("x", good()))
        .unwrap();
    assert_eq!(ok.outputs[0].1.shape(), &[2, 3, 4]);
    let stats = m.metrics();
    let entry = stats.model("mb").unwrap();
    assert_eq!(entry.metrics.failures_of(ErrorKind::InvalidInput), 7);
    assert_eq!(entry.metrics.success, 1);
    assert_eq!(stats.in_flight, 0);
    assert_eq!(entry.in_flight, 0);
}

/// As Triton answers them: in the model's order, whatever order the
/// request names them in.
#[test]
fn requested_outputs_come_back_in_the_models_order() {
    let case = Case::load("multi_io");
    let m = manager();
    m.load_model_blocking(ModelSpec::new("mio", case.model_path()))
        .unwrap();
    let order: Vec<String> = (m.model("mio", None).unwrap().metadata().outputs.iter())
        .map(|o| o.name.clone())
        .filter(|n| n == "scaled" || n == "sum")
        .collect();
    assert_eq!(order.len(), 2);
    for asked in [["scaled", "sum"], ["sum", "scaled"]] {
        let mut request = InferRequest::new("mio").output(asked[0]).output(asked[1]);
        request.inputs = case.inputs(&case.runs[0]);
        let response = m.infer_blocking(request).unwrap();
        let names: Vec<&str> = response.outputs.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, order, "asked {asked:?}");
    }
}

#[test]
fn bad_model_files_get_clear_errors() {
    let bad = fixtures().join("bad");
    let m = manager();
    let expect = [
        ("not_onnx.onnx", "not a valid ONNX protobuf"),
        ("truncated.onnx", "not a valid ONNX protobuf"),
        ("empty.onnx", "the file is empty"),
        (
            "unsupported_op.onnx",
            "does not support the operator(s) com.example:FancyOp",
        ),
        ("missing_external.onnx", "external data file 'weights.bin'"),
    ];
    for (file, needle) in expect {
        let err = m
            .load_model_blocking(ModelSpec::new(file, bad.join(file)))
            .unwrap_err();
        let text = err.chain_string();
        assert!(
            text.contains(file),
            "{file}: message does not name the file: {text}"
        );
        assert!(
            text.contains(needle),
            "{file}: expected '{needle}' in: {text}"
        );
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{file}: {text}");
    }
    let missing = m
        .load_model_blocking(ModelSpec::new("nope", bad.join("does-not-exist.onnx")))
        .unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound);
    assert!(missing.to_string().contains("does-not-exist.onnx"));

    // Failed loads are visible in health; the manager keeps working.
    let health = m.health();
    assert!(!health.ready);
    assert!(health
        .models
        .iter()
        .any(|h| h.name == "truncated.onnx" && !h.ready()));
    m.load_model_blocking(ModelSpec::new(
        "add",
        fixtures().join("identity/model.onnx"),
    ))
    .unwrap();
    let x = Tensor::from_vec(vec![1, 16], vec![2f32; 16]).unwrap();
    assert!(m
        .infer_blocking(InferRequest::new("add").input("x", x))
        .is_ok());
}

#[test]
fn versions_resolve_latest_or_specific_and_unload() {
    let m = manager();
    let path = Case::load("identity").model_path();
    m.load_model_blocking(ModelSpec::new("id", &path).version(1))
        .unwrap();
    m.load_model_blocking(ModelSpec::new("id", &path).version(3))
        .unwrap();
    let x = || Tensor::from_vec(vec![1, 16], vec![1f32; 16]).unwrap();
    assert_eq!(
        m.infer_blocking(InferRequest::new("id").input("x", x()))
            .unwrap()
            .version,
        3
    );
    assert_eq!(
        m.infer_blocking(InferRequest::new("id").version(1).input("x", x()))
            .unwrap()
            .version,
        1
    );
    let err = m
        .infer_blocking(InferRequest::new("id").version(2).input("x", x()))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(
        err.to_string().contains("id version 1, id version 3"),
        "{err}"
    );

    assert_eq!(m.unload_model("id", Some(3)).unwrap(), vec![3]);
    assert_eq!(
        m.infer_blocking(InferRequest::new("id").input("x", x()))
            .unwrap()
            .version,
        1
    );
    assert_eq!(m.unload_model("id", None).unwrap(), vec![1]);
    assert_eq!(
        m.infer_blocking(InferRequest::new("id").input("x", x()))
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        m.unload_model("id", None).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        m.metrics().memory_used,
        0,
        "unloading gives the memory back"
    );
}

#[test]
fn memory_budget_refuses_a_model_that_does_not_fit() {
    let small = Case::load("identity").model_path();
    let big = Case::load("small_convnet").model_path();
    let footprint = {
        let m = manager();
        m.load_model_blocking(ModelSpec::new("c", &big))
            .unwrap()
            .memory_footprint()
    };
    assert!(
        footprint > 1000,
        "the conv net's weights are charged: {footprint}"
    );
    // Loading first checks the file size, then charges the prepared footprint.
    let file_size = std::fs::metadata(&big).unwrap().len();
    let m = Manager::builder()
        .backend(TractCpu)
        .memory_budget(Some(footprint.max(file_size) + 100))
        .build()
        .unwrap();
    m.load_model_blocking(ModelSpec::new("c", &big)).unwrap();
    m.load_model_blocking(ModelSpec::new("tiny", &small))
        .unwrap();
    let err = m
        .load_model_blocking(ModelSpec::new("c2", &big))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Overloaded);
    assert!(err.to_string().contains("memory budget"), "{err}");
    m.unload_model("c", None).unwrap();
    m.load_model_blocking(ModelSpec::new("c2", &big)).unwrap();
}

#[test]
fn async_infer_works_and_many_requests_run_concurrently() {
    let case = Case::load("small_convnet");
    let m = Manager::builder()
        .backend(TractCpu)
        .workers(2)
        .threads(1)
        .build()
        .unwrap();
    let rt = support::runtime();
    rt.block_on(async {
        m.load_model(ModelSpec::new("cnn", case.model_path()))
            .await
            .unwrap();
        let run = &case.runs[0];
        let want = case.tensor(&run.outputs[0].file);
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let m = m.clone();
                let mut request = InferRequest::new("cnn");
                request.inputs = case.inputs(run);
                tokio::spawn(async move { m.infer(request).await })
            })
            .collect();
        for t in tasks {
            let response = t.await.unwrap().unwrap();
            assert_close(
                "concurrent",
                &response.outputs[0].1,
                &want,
                case.rtol,
                case.atol,
            );
        }
    });
    assert_eq!(m.metrics().model("cnn").unwrap().metrics.success, 16);
    assert_eq!(m.metrics().in_flight, 0);
}

#[test]
fn health_reports_live_ready_and_shutdown() {
    let m = manager();
    assert!(m.health().live && m.health().ready);
    m.load_model_blocking(ModelSpec::new("id", Case::load("identity").model_path()))
        .unwrap();
    let h = m.health();
    assert!(h.ready);
    assert_eq!(h.model("id").unwrap().backend.as_deref(), Some("tract-cpu"));
    m.shutdown();
    let h = m.health();
    assert!(!h.live && !h.ready);
    let err = m.infer_blocking(
        InferRequest::new("id").input("x", Tensor::from_vec(vec![1, 16], vec![0f32; 16]).unwrap()),
    );
    assert_eq!(err.unwrap_err().kind(), ErrorKind::Unavailable);
}

#[test]
fn unknown_backend_name_is_a_clear_config_error() {
    let m = manager();
    let err = m
        .load_model_blocking(
            ModelSpec::new("id", Case::load("identity").model_path()).backends(["tract-gpu"]),
        )
        .unwrap_err();
    assert!(
        err.to_string().contains("unknown backend 'tract-gpu'")
            && err.to_string().contains("this build has: tract-cpu"),
        "{err}"
    );
}

#[test]
fn threads_are_configurable_and_give_the_same_answer() {
    let case = Case::load("small_convnet");
    let m = manager();
    m.load_model_blocking(ModelSpec::new("one", case.model_path()).threads(1))
        .unwrap();
    m.load_model_blocking(ModelSpec::new("two", case.model_path()).threads(2))
        .unwrap();
    let run = &case.runs[1];
    let want = case.tensor(&run.outputs[0].file);
    for name in ["one", "two"] {
        let mut request = InferRequest::new(name);
        request.inputs = case.inputs(run);
        let got = m.infer_blocking(request).unwrap();
        assert_close(name, &got.outputs[0].1, &want, case.rtol, case.atol);
    }
}

#[test]
fn thermal_pressure_lowers_concurrency_and_degrades_health() {
    let any_file = Case::load("identity").model_path();
    let m = Manager::builder()
        .backend(Double(Tricky))
        .max_concurrency(Some(8))
        .workers(8)
        .build()
        .unwrap();
    m.load_model_blocking(ModelSpec::new("slow", &any_file))
        .unwrap();
    // Hold `n` requests in flight (each sleeps 300 ms) and count how many more get in.
    let admitted_beyond = |held: usize| -> usize {
        std::thread::scope(|s| {
            for _ in 0..held {
                let m = &m;
                s.spawn(move || m.infer_blocking(InferRequest::new("slow").input("x", x(1300.0))));
            }
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while m.metrics().in_flight < held && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(2));
            }
            let r = m.infer_blocking(InferRequest::new("slow").input("x", x(1.0)));
            usize::from(r.is_ok())
        })
    };
    assert_eq!(admitted_beyond(4), 1, "4 of 8 in use: one more gets in");
    m.set_thermal_state(anemone_runtime::ThermalState::Serious);
    let h = m.health();
    assert!(h.ready, "degraded models still serve");
    match &h.model("slow").unwrap().state {
        anemone_runtime::ModelState::Degraded { reason } => {
            assert!(
                reason.contains("thermal state serious") && reason.contains("1/2"),
                "{reason}"
            )
        }
        other => panic!("expected degraded, got {other:?}"),
    }
    let err = {
        std::thread::scope(|s| {
            for _ in 0..4 {
                let m = &m;
                s.spawn(move || m.infer_blocking(InferRequest::new("slow").input("x", x(1300.0))));
            }
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while m.metrics().in_flight < 4 && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(2));
            }
            m.infer_blocking(InferRequest::new("slow").input("x", x(1.0)))
                .unwrap_err()
        })
    };
    assert_eq!(
        err.kind(),
        ErrorKind::Overloaded,
        "4 of the 4 allowed at serious"
    );
    assert!(
        err.to_string().contains("lowered under thermal pressure"),
        "{err}"
    );
    m.set_thermal_state(anemone_runtime::ThermalState::Nominal);
    assert_eq!(
        m.health().model("slow").unwrap().state,
        anemone_runtime::ModelState::Ready
    );
    assert_eq!(admitted_beyond(4), 1, "the full limit is back");
}
