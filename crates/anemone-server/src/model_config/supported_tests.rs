//! Tests of `supported`: the fields and values anemone takes, and the
//! refusals of the rest.

use super::python_only_refusals;
use crate::model_config::fixtures::*;

#[test]
fn refuses_unsupported_fields_by_path() {
    let cases: &[(&str, &str)] = &[
        ("input [ { name: \"x\" is_non_linear_format_io: true } ]", "'input[0].is_non_linear_format_io'"),
        (
            "backend: \"onnxruntime\" model_transaction_policy { decoupled: true }",
            "'model_transaction_policy.decoupled'",
        ),
        ("default_model_filename: \"/srv/x/other.onnx\"", "'default_model_filename'"),
        ("default_model_filename: \"../../x/other.onnx\"", "'..' are refused"),
        ("input [ { name: \"x\" is_shape_tensor: true } ]", "'input[0].is_shape_tensor'"),
        ("output [ { name: \"y\" optional: true } ]", "field 'optional' not found"),
        ("input [ { name: \"x\" data_type: TYPE_BF16 } ]", "'input[0].data_type' is TYPE_BF16"),
        ("input [ { name: \"x\" dims: [ 3, 0 ] } ]", "'input[0].dims' has 0"),
        (
            "backend: \"onnxruntime\" instance_group [ { kind: KIND_MODEL } ]",
            "parameter 'backends'",
        ),
        ("instance_group [ { count: 1 gpus: [ 1 ] } ]", "'instance_group[0].gpus' is [1]"),
        ("instance_group [ { count: 1 gpus: [ 0, 1 ] } ]", "CUDA_VISIBLE_DEVICES"),
        ("instance_group [ { secondary_devices { device_id: 0 } } ]", "'instance_group[0].secondary_devices'"),
        ("instance_group [ { profile: \"0\" } ]", "'instance_group[0].profile'"),
        ("platform: \"tensorflow_savedmodel\"", "anemone runs ONNX models"),
        ("backend: \"pytorch\"", "\"pytorch\", which anemone cannot run"),
        ("max_batch_size: -1", "'max_batch_size'"),
        ("runtime: \"model.py\"", "'runtime'"),
        (
            "parameters { key: \"thread\" value: { string_value: \"1\" } }",
            "unknown parameter 'thread' (did you mean 'threads'?); anemone reads: backends, strict, threads, max_concurrency",
        ),
        ("parameters { key: \"threads\" value: { string_value: \"zero\" } }", "parameter 'threads'"),
    ];
    for (text, needle) in cases {
        let e = err_pbtxt(text);
        assert!(
            e.contains(needle),
            "config {text:?}: message {e:?} lacks {needle:?}"
        );
        // One line of prose: no source indentation left in it.
        assert!(!e.contains("  ") && !e.contains('\n'), "{e:?}");
    }
    let e = err_pbtxt("backend: \"onnxruntime\" instance_group [ { kind: KIND_MODEL } ]");
    assert!(
        e.contains("anemone picks devices through its backend list"),
        "{e}"
    );
    // A Python model places itself, as Triton lets it.
    assert!(crate::model_config::parse_pbtxt(
        "backend: \"python\"\ninstance_group [ { kind: KIND_MODEL } ]"
    )
    .is_ok());
}

#[test]
fn a_backend_anemone_cannot_run_is_refused_alone() {
    // Triton's vLLM config: the backend is refused, advising "python",
    // and the fields a Python model takes are not refused beside it.
    let e = err_pbtxt(
        "backend: \"vllm\"\nmodel_transaction_policy { decoupled: true }\n\
         instance_group [ { count: 1, kind: KIND_MODEL } ]",
    );
    assert!(e.contains("'backend' is \"vllm\""), "{e}");
    assert!(!e.contains("KIND_MODEL") && !e.contains("decoupled"), "{e}");
}

#[test]
fn a_decoupled_model_is_accepted_for_the_python_backend_only() {
    let c = crate::model_config::parse_pbtxt(
        "backend: \"python\"\nmodel_transaction_policy { decoupled: true }",
    )
    .unwrap();
    assert!(c.model_transaction_policy.unwrap().decoupled);
    let c = crate::model_config::parse_pbtxt(
        "backend: \"python\"\nmodel_transaction_policy { decoupled: true }\nsequence_batching { }",
    )
    .unwrap();
    assert!(matches!(
        c.scheduling_choice,
        Some(crate::proto::model_config::SchedulingChoice::SequenceBatching(_))
    ));
    let e = err_pbtxt(
        "backend: \"python\"\nmodel_transaction_policy { decoupled: true }\nsequence_batching { \
         state [ { input_name: \"S\" output_name: \"T\" data_type: TYPE_INT32 dims: [ 1 ] } ] }",
    );
    assert!(
        e.contains("'sequence_batching.state'") && e.contains("correlation_id()"),
        "{e}"
    );
    // As tritonserver 2.51 refuses it.
    let e = err_pbtxt(
        "backend: \"python\"\nmodel_transaction_policy { decoupled: true }\nresponse_cache { enable: true }",
    );
    assert!(
        e.contains("'response_cache'") && e.contains("disable the response cache"),
        "{e}"
    );
    let e = err_pbtxt("backend: \"onnxruntime\"\nmodel_transaction_policy { decoupled: true }");
    assert!(
        e.contains("'model_transaction_policy.decoupled'") && e.contains("backend: \"python\""),
        "{e}"
    );
}

#[test]
fn settings_that_change_nothing_are_accepted() {
    let c = crate::model_config::parse_pbtxt(
        "model_transaction_policy { decoupled: false }\n\
         optimization { graph { level: 0 } input_pinned_memory { enable: true } output_pinned_memory { enable: false } }\n\
         response_cache { enable: false }\n\
         model_warmup [ { name: \"w\" batch_size: 1 inputs { key: \"x\" value: { data_type: TYPE_FP32 dims: [ 2 ] zero_data: true } } } ]\n\
         input [ { name: \"x\" format: FORMAT_NCHW }, { name: \"y\" format: FORMAT_NONE }, { name: \"z\" format: FORMAT_NHWC } ]",
    )
    .unwrap();
    assert_eq!(c.input.len(), 3);
    crate::model_config::parse_pbtxt("optimization { }").unwrap();
    assert!(super::ignored_hints(&c).is_empty());
    // Triton's hints load, and are named for the load's warning.
    let c = crate::model_config::parse_pbtxt(
        "optimization { priority: PRIORITY_MAX cuda { graphs: true } \
         gather_kernel_buffer_threshold: 0 eager_batching: true }",
    )
    .unwrap();
    assert_eq!(
        super::ignored_hints(&c),
        [
            "optimization.priority",
            "optimization.cuda",
            "optimization.eager_batching"
        ]
    );
    let c = crate::model_config::parse_pbtxt(
        "metric_tags { key: \"team\" value: \"a\" }\n\
         model_metrics { metric_control [ { metric_identifier { family: \"f\" } \
         histogram_options { buckets: [ 1, 2 ] } } ] }\n\
         instance_group [ { count: 1 }, { count: 1 rate_limiter { priority: 1 } } ]",
    )
    .unwrap();
    // The rate limiter's settings are used (with --rate-limit), not hints.
    assert_eq!(super::ignored_hints(&c), ["metric_tags", "model_metrics"]);
}

/// A config naming no backend passes the parse with a Python model's
/// fields; they are refused once the model is found not to be Python.
#[test]
fn python_fields_wait_for_the_model_files_when_no_backend_is_named() {
    let c = crate::model_config::parse_pbtxt(
        "model_transaction_policy { decoupled: true }\ninstance_group [ { kind: KIND_MODEL } ]",
    )
    .unwrap();
    let refused = python_only_refusals(&c);
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert!(refused[0].contains("'model_transaction_policy.decoupled'"));
    assert!(refused[1].contains("'instance_group[0].kind' is KIND_MODEL"));
    assert!(
        python_only_refusals(&crate::model_config::parse_pbtxt("max_batch_size: 2").unwrap())
            .is_empty()
    );
}

#[test]
fn every_refusal_is_reported_at_once() {
    let e = err_pbtxt(
        "backend: \"onnxruntime\"\n\
         input [ { name: \"x\" is_non_linear_format_io: true }, { name: \"y\" is_shape_tensor: true } ]\n\
         instance_group [ { kind: KIND_MODEL gpus: [ 2 ] } ]\n\
         parameters { key: \"stric\" value: { string_value: \"1\" } }\n\
         parameters { key: \"threads\" value: { string_value: \"0\" } }",
    );
    assert!(
        e.starts_with("6 problems in config.pbtxt, fix them all: (1) "),
        "{e}"
    );
    for needle in [
        "'input[0].is_non_linear_format_io'",
        "'input[1].is_shape_tensor'",
        "'instance_group[0].kind'",
        "'instance_group[0].gpus'",
        "unknown parameter 'stric' (did you mean 'strict'?)",
        "parameter 'threads'",
    ] {
        assert!(e.contains(needle), "{needle}: {e}");
    }
}
