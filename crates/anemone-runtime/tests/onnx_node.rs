//! The ONNX backend node-test suite, one test per case and backend, through
//! the tract CPU and ONNX Runtime backends.
//!
//! Cases come from the `onnx` PyPI package (`fixtures/generated/onnx-node`,
//! linked by `scripts/setup.sh`). Each case's model is loaded on the backend,
//! run on `test_data_set_0`, and compared with its reference outputs (floats
//! within rtol 1e-3 + atol 1e-5, NaN equal to NaN; everything else exact).
//!
//! `tests/conformance/<backend>.expected-failures` lists the cases known to
//! fail, each with the kind of failure (`load`, `data`, `run`, `mismatch`,
//! `panic`) and its whole reason. A listed case must still fail *the same
//! way* (a case listed as refused at load that starts loading and gives wrong
//! numbers fails the suite; one that starts passing is noticed and taken off
//! the list); an unlisted case must pass; an entry naming a case that no
//! longer exists fails. Set `ANEMONE_UPDATE_CONFORMANCE=1` to rewrite the
//! lists and `docs/conformance/<backend>.md` from this run instead of checking.

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
        let results: Arc<Mutex<BTreeMap<String, Option<Failure>>>> = Arc::default();
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

/// How a case failed: what an expected failure must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The backend refused the model at load.
    Load,
    /// The harness cannot read the case's test data.
    Data,
    /// The engine failed at run time.
    Run,
    /// Wrong outputs: count, dtype, shape or values.
    Mismatch,
    /// The engine panicked (caught).
    Panic,
}

impl Kind {
    const ALL: [Kind; 5] = [
        Kind::Load,
        Kind::Data,
        Kind::Run,
        Kind::Mismatch,
        Kind::Panic,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::Load => "load",
            Kind::Data => "data",
            Kind::Run => "run",
            Kind::Mismatch => "mismatch",
            Kind::Panic => "panic",
        }
    }

    fn parse(word: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == word)
    }
}

/// A case's failure: its kind and the whole error.
#[derive(Debug, Clone)]
struct Failure {
    kind: Kind,
    message: String,
}

fn fail(kind: Kind, message: String) -> Failure {
    Failure { kind, message }
}

/// One trial per case on one backend, named `<backend>::<case>`, or
/// `<backend>::xfail::<case>` for a case listed as failing; plus one trial
/// that fails when the list names cases that do not exist.
fn trials_for(
    backend: &Arc<dyn Backend>,
    cases: &[PathBuf],
    update: bool,
    results: &Arc<Mutex<BTreeMap<String, Option<Failure>>>>,
) -> Vec<Trial> {
    let expected = read_manifest(&manifest_path(backend.name()));
    let names: Vec<String> = cases
        .iter()
        .map(|dir| dir.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let stale: Vec<String> = expected
        .keys()
        .filter(|k| !names.contains(k))
        .cloned()
        .collect();
    let mut trials = vec![Trial::test(
        format!("{}::expected_failures_name_existing_cases", backend.name()),
        move || match (stale.is_empty(), update) {
            (true, _) | (_, true) => Ok(()),
            (false, false) => Err(Failed::from(format!(
                "{} lists cases that do not exist: {}; remove them",
                manifest_path_name(),
                stale.join(", ")
            ))),
        },
    )];
    trials.extend(cases.iter().zip(names).map(|(dir, name)| {
        let dir = dir.clone();
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
                Err(p) => Err(fail(
                    Kind::Panic,
                    format!(
                        "panicked: {}",
                        p.downcast_ref::<String>()
                            .cloned()
                            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_default()
                    ),
                )),
            };
            results
                .lock()
                .unwrap()
                .insert(name.clone(), outcome.clone().err());
            if update {
                return Ok(());
            }
            match (outcome, known) {
                (Ok(()), None) => Ok(()),
                (Ok(()), Some(_)) => Err(Failed::from(format!(
                    "{name} now passes on {}: remove it from {}",
                    backend.name(),
                    manifest_path_name()
                ))),
                (Err(e), None) => Err(Failed::from(format!("{}: {}", e.kind.name(), e.message))),
                (Err(e), Some((kind, _))) if e.kind == kind => Ok(()),
                (Err(e), Some((kind, reason))) => Err(Failed::from(format!(
                    "{name} is listed as failing with `{}` ({reason}) but now fails with `{}`: {}\n\
                     check the change, then update {}",
                    kind.name(),
                    e.kind.name(),
                    e.message,
                    manifest_path_name()
                ))),
            }
        })
    }));
    trials
}

fn manifest_path_name() -> &'static str {
    "crates/anemone-runtime/tests/conformance/<backend>.expected-failures"
}

/// Loads, runs and checks one case; the error says how and what went wrong.
fn run_case(backend: &dyn Backend, dir: &Path) -> Result<(), Failure> {
    let model = backend
        .load(
            &ModelSource::from_path(dir.join("model.onnx")),
            &LoadOptions {
                threads: Some(1),
                ..Default::default()
            },
        )
        .map_err(|e| fail(Kind::Load, e.chain_string()))?;
    let data = dir.join("test_data_set_0");
    let count = |prefix: &str| {
        (0..)
            .take_while(|i| data.join(format!("{prefix}_{i}.pb")).exists())
            .count()
    };
    let read = |prefix: &str, n: usize| -> Result<Vec<Tensor>, Failure> {
        (0..n)
            .map(|i| {
                read_tensor_proto(&data.join(format!("{prefix}_{i}.pb")))
                    .map_err(|e| fail(Kind::Data, format!("{prefix} {i}: {e}")))
            })
            .collect()
    };
    let meta = model.metadata();
    let inputs = read("input", meta.inputs.len())?;
    let expected = read("output", count("output"))?;
    let outputs = model
        .infer(&inputs)
        .map_err(|e| fail(Kind::Run, e.chain_string()))?;
    if outputs.len() != meta.outputs.len() || expected.len() != meta.outputs.len() {
        return Err(fail(
            Kind::Mismatch,
            format!(
                "{} outputs, the model declares {}, the test data has {}",
                outputs.len(),
                meta.outputs.len(),
                expected.len()
            ),
        ));
    }
    for ((spec, got), want) in meta.outputs.iter().zip(&outputs).zip(&expected) {
        compare(got, want)
            .map_err(|e| fail(Kind::Mismatch, format!("output '{}': {e}", spec.name)))?;
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

/// `<case>  <kind>  # <reason>` per line: the kind must be one of [`Kind`].
fn read_manifest(path: &Path) -> BTreeMap<String, (Kind, String)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (head, reason) = l.split_once('#').unwrap_or((l, ""));
            let mut words = head.split_whitespace();
            let (name, kind) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
            let kind = Kind::parse(kind).unwrap_or_else(|| {
                panic!(
                    "{}: '{l}' has no failure kind; write `<case>  <kind>  # <reason>` with kind one of {}",
                    path.display(),
                    Kind::ALL.map(Kind::name).join(", ")
                )
            });
            (name.to_string(), (kind, reason.trim().to_string()))
        })
        .collect()
}

/// One line per failing case: its name, the kind of failure and the whole error.
fn write_manifest(path: &Path, results: &BTreeMap<String, Option<Failure>>) {
    let mut out = String::from(
        "# ONNX node-test cases this backend is known to fail: `<case>  <kind>  # <reason>`.\n\
         # The kind (load, data, run, mismatch, panic) must match how the case fails.\n\
         # Written by `ANEMONE_UPDATE_CONFORMANCE=1 cargo test -p anemone-runtime --test onnx_node`.\n",
    );
    for (name, error) in results {
        if let Some(e) = error {
            out.push_str(&format!(
                "{name}  {}  # {}\n",
                e.kind.name(),
                reason(&e.message)
            ));
        }
    }
    std::fs::write(path, out).unwrap();
}

/// An error on one line, without machine-specific paths.
fn reason(e: &str) -> String {
    let line = e.lines().map(str::trim).collect::<Vec<_>>().join(" | ");
    // "cannot load /abs/path/model.onnx: reason" → "reason"
    let line = match line.split_once("model.onnx: ") {
        Some((head, rest)) => match head.find("cannot load ") {
            Some(i) => format!("{}{rest}", &head[..i]),
            None => format!("{head}model.onnx: {rest}"),
        },
        None => line,
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
    words.join(" ").trim().to_string()
}

/// Pass rate and failure categories, for docs/CONFORMANCE.md.
fn write_report(backend: &str, results: &BTreeMap<String, Option<Failure>>) {
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

fn category(f: &Failure) -> &'static str {
    let e = f.message.as_str();
    let has = |needle: &str| e.contains(needle);
    match f.kind {
        Kind::Panic => "engine panic (caught, the case fails cleanly)",
        Kind::Load if has("does not support the operator") => "operator not implemented in tract",
        Kind::Load if has("NOT_IMPLEMENTED") || has("Could not find an implementation") => {
            "operator or type combination not implemented in ONNX Runtime"
        }
        Kind::Load if has("cannot carry") || has("is not a tensor") => {
            "sequence, optional or exotic element type (bfloat16, float8, int4, complex) in the model's signature"
        }
        Kind::Load if !has("onnxruntime") => "tract cannot analyse or prepare the model",
        Kind::Load => "the engine refuses the model at load",
        Kind::Data => "test data the harness cannot read (sequence, optional or exotic dtype)",
        Kind::Run => "engine error at run time",
        Kind::Mismatch if has("values outside") => "numeric mismatch beyond tolerance",
        Kind::Mismatch => "wrong output count, shape, dtype or values",
    }
}
