//! Replays the checked-in fuzz corpus (`fuzz/corpus/<target>/`: seeds, and
//! every input a fuzzer ever crashed on) through the same entry points as the
//! fuzz targets in `fuzz/fuzz_targets/`, on stable Rust, so CI needs no
//! fuzzer: a decoder that panics on any of them fails here.

use std::panic::{catch_unwind, AssertUnwindSafe};

/// Calls `decode` on every file of `fuzz/corpus/<target>/`; fails naming
/// each file that panicked. The corpus must not be empty.
fn replay(target: &str, decode: impl Fn(&[u8])) {
    let dir = crate::net::workspace().join("fuzz/corpus").join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} is empty", dir.display());
    let mut panicked = Vec::new();
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        if catch_unwind(AssertUnwindSafe(|| decode(&bytes))).is_err() {
            panicked.push(file.display().to_string());
        }
    }
    assert!(
        panicked.is_empty(),
        "{} of {} inputs panicked: {panicked:#?}",
        panicked.len(),
        files.len()
    );
}

#[test]
fn http_json_corpus() {
    replay("http_json", anemone_server::fuzzing::http_json);
}

#[test]
fn http_binary_corpus() {
    replay("http_binary", anemone_server::fuzzing::http_binary);
}

#[test]
fn grpc_infer_corpus() {
    replay("grpc_infer", anemone_server::fuzzing::grpc_infer);
}

#[test]
fn model_config_corpus() {
    replay("model_config", anemone_server::fuzzing::model_config);
}

#[test]
fn npy_corpus() {
    replay("npy", |b| {
        let _ = anemone_core::npy::from_bytes(b);
    });
}

#[test]
fn coreml_corpus() {
    replay("coreml", |b| {
        let _ = anemone_backends::coreml::describe::describe_spec_bytes(b);
    });
}
