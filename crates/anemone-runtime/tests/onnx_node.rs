//! The ONNX backend node-test suite, one test per case and backend, through
//! the tract CPU and ONNX Runtime backends.
//!
//! Cases come from the `onnx` PyPI package (`fixtures/generated/onnx-node`,
//! linked by `scripts/setup.sh`). Each case's model is loaded on the backend,
//! run on `test_data_set_0`, and compared with its reference outputs (floats
//! within rtol 1e-3 + atol 1e-5, NaN equal to NaN; everything else exact).
//!
//! `tests/conformance/<backend>.expected-failures` lists the cases known to
//! fail, each with its reason. A listed case must still fail (so a case that
//! starts passing is noticed and taken off the list); an unlisted case must
//! pass. Set `ANEMONE_UPDATE_CONFORMANCE=1` to rewrite the list and
//! `docs/CONFORMANCE.md` from this run instead of checking.

mod support;

use anemone_backends::onnx::read_tensor_proto;
use anemone_backends::{OnnxRuntime, TractCpu};
use anemone_core::{Backend, LoadOptions, ModelSource, Probe, Tensor};
use libtest_mimic::{Arguments, Failed, Trial};
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const RTOL: f64 = 1e-3;
const ATOL: f64 = 1e-5;

fn main() {
    let args = Arguments::from_args();
    let root = support::fixtures().join("onnx-node");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}; run scripts/setup.sh", root.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("model.onnx").exists())
        .collect();
    cases.sort();
    assert!(
        cases.len() > 1000,
        "expected the full ONNX node suite, found {} cases",
        cases.len()
    );

    let update = std::env::var_os("ANEMONE_UPDATE_CONFORMANCE").is_some();
    let backends: [Arc<dyn Backend>; 2] = [Arc::new(TractCpu), Arc::new(OnnxRuntime)];
    let mut trials = Vec::new();
    let mut all_results = Vec::new();
    for backend in backends {
        let results: Arc<Mutex<BTreeMap<String, Option<String>>>> = Arc::default();
        if let Probe::Unavailable { reason } = backend.probe() {
            // Without its library the backend cannot be tested: say so loudly,
            // and fail where the library is required (scripts/test.sh).
            let required = std::env::var_os("ANEMONE_REQUIRE_ORT").is_some();
            let name = format!("{}::SKIPPED_unavailable", backend.name());
            let message = format!("{} is unavailable: {reason}", backend.name());
            eprintln!(
                "SKIPPED the {} conformance suite: {message}",
                backend.name()
            );
            trials.push(Trial::test(name, move || {
                if required {
                    Err(Failed::from(format!(
                        "ANEMONE_REQUIRE_ORT is set but {message}"
                    )))
                } else {
                    Ok(())
                }
            }));
            continue;
        }
        trials.extend(trials_for(&backend, &cases, update, &results));
        all_results.push((backend, results));
    }

    let conclusion = libtest_mimic::run(&args, trials);
    if update {
        for (backend, results) in &all_results {
            let results = results.lock().unwrap();
            write_manifest(&manifest_path(backend.name()), &results);
            write_report(backend.name(), &results);
        }
        let passed_by_any = cases
            .iter()
            .filter_map(|c| c.file_name())
            .filter(|c| {
                all_results.iter().any(|(_, r)| {
                    matches!(r.lock().unwrap().get(&*c.to_string_lossy()), Some(None))
                })
            })
            .count();
        eprintln!(
            "passed by at least one backend: {passed_by_any} of {}",
            cases.len()
        );
    }
    conclusion.exit();
}

fn manifest_path(backend: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("tests/conformance/{backend}.expected-failures"))
}

/// One trial per case on one backend, named `<backend>::<case>`, or
/// `<backend>::xfail::<case>` for a case listed as failing.
fn trials_for(
    backend: &Arc<dyn Backend>,
    cases: &[PathBuf],
    update: bool,
    results: &Arc<Mutex<BTreeMap<String, Option<String>>>>,
) -> Vec<Trial> {
    let expected = read_manifest(&manifest_path(backend.name()));
    cases
        .iter()
        .map(|dir| {
            let dir = dir.clone();
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            let known = expected.get(&name).cloned();
            let (backend, results) = (Arc::clone(backend), Arc::clone(results));
            let label = if known.is_some() && !update {
                format!("{}::xfail::{name}", backend.name())
            } else {
                format!("{}::{name}", backend.name())
            };
            Trial::test(label, move || {
                let outcome = match catch_unwind(AssertUnwindSafe(|| run_case(&*backend, &dir))) {
                    Ok(r) => r,
                    Err(p) => Err(format!(
                        "panicked: {}",
                        p.downcast_ref::<String>().cloned().unwrap_or_default()
                    )),
                };
                results
                    .lock()
                    .unwrap()
                    .insert(name.clone(), outcome.clone().err());
                match (outcome, known, update) {
                    (_, _, true) | (Ok(()), None, false) | (Err(_), Some(_), false) => Ok(()),
                    (Ok(()), Some(_), false) => Err(Failed::from(format!(
                        "{name} now passes on {}: remove it from {}",
                        backend.name(),
                        manifest_path_name()
                    ))),
                    (Err(e), None, false) => Err(Failed::from(e)),
                }
            })
        })
        .collect()
}

fn manifest_path_name() -> &'static str {
    "crates/anemone-runtime/tests/conformance/<backend>.expected-failures"
}

/// Loads, runs and checks one case; the error says what went wrong.
fn run_case(backend: &dyn Backend, dir: &Path) -> Result<(), String> {
    let model = backend
        .load(
            &ModelSource::from_path(dir.join("model.onnx")),
            &LoadOptions {
                threads: Some(1),
                ..Default::default()
            },
        )
        .map_err(|e| format!("load: {}", e.chain_string()))?;
    let data = dir.join("test_data_set_0");
    let read = |prefix: &str, n: usize| -> Result<Vec<Tensor>, String> {
        (0..n)
            .map(|i| {
                read_tensor_proto(&data.join(format!("{prefix}_{i}.pb")))
                    .map_err(|e| format!("{prefix} {i}: {e}"))
            })
            .collect()
    };
    let meta = model.metadata();
    let inputs = read("input", meta.inputs.len())?;
    let expected = read("output", meta.outputs.len())?;
    let outputs = model
        .infer(&inputs)
        .map_err(|e| format!("run: {}", e.chain_string()))?;
    for ((spec, got), want) in meta.outputs.iter().zip(&outputs).zip(&expected) {
        compare(got, want).map_err(|e| format!("output '{}': {e}", spec.name))?;
    }
    Ok(())
}

fn compare(got: &Tensor, want: &Tensor) -> Result<(), String> {
    if got.dtype() != want.dtype() {
        return Err(format!("dtype {} instead of {}", got.dtype(), want.dtype()));
    }
    if got.shape() != want.shape() {
        return Err(format!(
            "shape {:?} instead of {:?}",
            got.shape(),
            want.shape()
        ));
    }
    if !want.dtype().is_float() {
        return if got == want {
            Ok(())
        } else {
            Err("values differ".into())
        };
    }
    let (g, w) = (got.to_f64_lossy().unwrap(), want.to_f64_lossy().unwrap());
    let bad = g.iter().zip(&w).filter(|(a, b)| {
        !((a.is_nan() && b.is_nan()) || *a == *b || (*a - *b).abs() <= ATOL + RTOL * b.abs())
    });
    match bad.count() {
        0 => Ok(()),
        n => Err(format!(
            "{n} of {} values outside rtol {RTOL} atol {ATOL}",
            g.len()
        )),
    }
}

fn read_manifest(path: &Path) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| match l.split_once(char::is_whitespace) {
            Some((name, reason)) => (
                name.to_string(),
                reason.trim().trim_start_matches('#').trim().to_string(),
            ),
            None => (l.to_string(), String::new()),
        })
        .collect()
}

/// One line per failing case: its name and the first line of its error.
fn write_manifest(path: &Path, results: &BTreeMap<String, Option<String>>) {
    let mut out = String::from(
        "# ONNX node-test cases this backend is known to fail, with the reason.\n\
         # Written by `ANEMONE_UPDATE_CONFORMANCE=1 cargo test -p anemone-runtime --test onnx_node`.\n",
    );
    for (name, error) in results {
        if let Some(e) = error {
            out.push_str(&format!("{name}  # {}\n", short_reason(e)));
        }
    }
    std::fs::write(path, out).unwrap();
}

/// The first line of an error, without paths, cut to a readable length.
fn short_reason(e: &str) -> String {
    let line = e.lines().next().unwrap_or("");
    // "load: cannot load /abs/path/model.onnx: reason" → "load: reason"
    let line = match line.split_once("model.onnx: ") {
        Some((head, rest)) => format!(
            "{} {rest}",
            head.split(" cannot load ").next().unwrap_or("")
        ),
        None => line.to_string(),
    };
    // Any other path to a model (ONNX Runtime quotes it) becomes `model.onnx`,
    // so the list reads the same on every machine.
    let words: Vec<String> = line
        .split(' ')
        .map(|w| match w.find("model.onnx") {
            Some(i) if w.starts_with('/') => w[i..].to_string(),
            _ => w.to_string(),
        })
        .collect();
    words.join(" ").chars().take(160).collect()
}

/// Pass rate and failure categories, for docs/CONFORMANCE.md.
fn write_report(backend: &str, results: &BTreeMap<String, Option<String>>) {
    let total = results.len();
    let passed = results.values().filter(|e| e.is_none()).count();
    let mut categories: BTreeMap<&str, usize> = BTreeMap::new();
    for e in results.values().flatten() {
        *categories.entry(category(e)).or_default() += 1;
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs/conformance")
        .join(format!("{backend}.md"));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut out = format!(
        "<!-- Written by `ANEMONE_UPDATE_CONFORMANCE=1 cargo test -p anemone-runtime --test onnx_node`. -->\n\
         # {backend}: ONNX node tests\n\n\
         **{passed} of {total} cases pass ({:.1}%)**, comparing floats within rtol {RTOL} + atol {ATOL}.\n\n\
         | why the others fail | cases |\n|---|---|\n",
        100.0 * passed as f64 / total as f64
    );
    let mut rows: Vec<_> = categories.into_iter().collect();
    rows.sort_by(|a, b| b.1.cmp(&a.1));
    for (c, n) in rows {
        out.push_str(&format!("| {c} | {n} |\n"));
    }
    std::fs::write(path, out).unwrap();
}

fn category(e: &str) -> &'static str {
    let has = |needle: &str| e.contains(needle);
    if e.starts_with("panicked") {
        "engine panic (caught, the case fails cleanly)"
    } else if e.starts_with("load:") && has("does not support the operator") {
        "operator not implemented in tract"
    } else if e.starts_with("load:")
        && (has("NOT_IMPLEMENTED") || has("Could not find an implementation"))
    {
        "operator or type combination not implemented in ONNX Runtime"
    } else if e.starts_with("load:") && (has("cannot carry") || has("is not a tensor")) {
        "sequence, optional or exotic element type (bfloat16, float8, int4, complex) in the model's signature"
    } else if e.starts_with("load:") && backend_is_tract(e) {
        "tract cannot analyse or prepare the model"
    } else if e.starts_with("load:") {
        "the engine refuses the model at load"
    } else if e.starts_with("input ") || e.starts_with("output ") && !e.starts_with("output '") {
        "test data the harness cannot read (sequence, optional or exotic dtype)"
    } else if e.starts_with("run:") {
        "engine error at run time"
    } else if has("values outside") {
        "numeric mismatch beyond tolerance"
    } else {
        "wrong output shape, dtype or values"
    }
}

fn backend_is_tract(e: &str) -> bool {
    !e.contains("onnxruntime")
}
