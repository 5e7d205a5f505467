//! ONNX Runtime's session options (`onnxruntime.optimization`, `.parallel`,
//! `.inter_threads`, `.mem_pattern`, `.mem_arena`; Triton's ONNX Runtime
//! parameters map onto them): each combination loads, the model's
//! properties say what the session was built with, and the outputs still
//! match tract's on the same inputs (which are checked against the ONNX
//! Runtime Python reference first).

use super::{ordered_inputs, output, require_library, tract_references};
use crate::support::{assert_close, Case};
use anemone_backends::OnnxRuntime;
use anemone_core::{Backend, LoadOptions, ModelSource};

#[test]
fn session_options_load_show_and_keep_the_outputs() {
    require_library();
    let name = "small_convnet";
    let case = Case::load(name);
    let references = tract_references(&case, name);
    let sets: [&[(&str, &str)]; 4] = [
        &[],
        &[
            ("onnxruntime.optimization", "off"),
            ("onnxruntime.mem_pattern", "off"),
        ],
        &[
            ("onnxruntime.optimization", "basic"),
            ("onnxruntime.mem_arena", "on"),
        ],
        &[
            ("onnxruntime.optimization", "extended"),
            ("onnxruntime.parallel", "on"),
            ("onnxruntime.inter_threads", "2"),
        ],
    ];
    for settings in sets {
        let options = LoadOptions {
            threads: Some(1),
            settings: settings
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        };
        let model = OnnxRuntime
            .load(&ModelSource::from_path(case.model_path()), &options)
            .unwrap_or_else(|e| panic!("{settings:?}: load: {e}"));
        let property = |key: &str| {
            let props = &model.metadata().properties;
            let key = format!("anemone.onnxruntime.{key}");
            props
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.clone())
        };
        let want = |key: &str, default: &str| {
            let key = format!("onnxruntime.{key}");
            settings
                .iter()
                .find(|(k, _)| *k == key)
                .map_or(default, |(_, v)| v)
                .to_string()
        };
        for (key, default) in [
            ("optimization", "all"),
            ("parallel", "off"),
            ("inter_threads", "default"),
            ("mem_pattern", "on"),
            ("mem_arena", "off"),
        ] {
            assert_eq!(
                property(key),
                Some(want(key, default)),
                "{settings:?}: {key}"
            );
        }
        for (k, (run, want)) in case.runs.iter().zip(&references).enumerate() {
            let got = model
                .infer(&ordered_inputs(name, &*model, &case.inputs(run)))
                .unwrap_or_else(|e| panic!("{settings:?} run {k}: {e}"));
            for (out, want) in want {
                assert_close(
                    &format!("{settings:?} run {k} {out} (ONNX Runtime against tract)"),
                    output(name, &*model, &got, out),
                    want,
                    case.rtol,
                    case.atol,
                );
            }
        }
    }
    // A bad value is refused by key.
    let options = LoadOptions {
        threads: None,
        settings: vec![("onnxruntime.optimization".into(), "max".into())],
        ..Default::default()
    };
    let e = OnnxRuntime
        .load(&ModelSource::from_path(case.model_path()), &options)
        .err()
        .expect("refused");
    assert!(
        e.to_string()
            .contains("onnxruntime.optimization is \"max\""),
        "{e}"
    );
}
