//! Shared helpers for the integration tests: fixture cases and tensor comparison.
#![allow(dead_code)]

use anemone_core::{npy, Tensor};

pub mod double;
pub mod shaped;
use std::path::{Path, PathBuf};

/// `fixtures/generated`, made by `scripts/setup.sh`. Fails loudly when missing:
/// a test that silently skipped here would pass without checking anything.
///
/// `ANEMONE_FIXTURES` names another directory of cases instead (a test binary
/// run away from its source tree, as `scripts/cuda_bench.sh` does): there a
/// case that is not generated fails when it is loaded, by its name.
pub fn fixtures() -> PathBuf {
    if let Some(dir) = std::env::var_os("ANEMONE_FIXTURES") {
        return PathBuf::from(dir);
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/generated");
    assert!(
        dir.join(".stamp").exists(),
        "test fixtures are missing in {}: run `scripts/setup.sh` (or `scripts/test.sh`, which runs it) first",
        dir.display()
    );
    dir
}

/// One fixture case: a model plus runs of inputs and ONNX Runtime reference outputs.
#[derive(Debug, serde::Deserialize)]
pub struct Case {
    pub description: String,
    pub model: String,
    pub rtol: f64,
    pub atol: f64,
    pub runs: Vec<Run>,
    #[serde(skip)]
    pub dir: PathBuf,
}

#[derive(Debug, serde::Deserialize)]
pub struct Run {
    pub inputs: Vec<Named>,
    pub outputs: Vec<Named>,
}

#[derive(Debug, serde::Deserialize)]
pub struct Named {
    pub name: String,
    pub file: String,
}

impl Case {
    pub fn load(name: &str) -> Case {
        let dir = fixtures().join(name);
        let text = std::fs::read_to_string(dir.join("case.json"))
            .unwrap_or_else(|e| panic!("{name}/case.json: {e}"));
        let mut case: Case =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}/case.json: {e}"));
        case.dir = dir;
        case
    }

    pub fn model_path(&self) -> PathBuf {
        self.dir.join(&self.model)
    }

    pub fn tensor(&self, file: &str) -> Tensor {
        let path = self.dir.join(file);
        npy::read(std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    pub fn inputs(&self, run: &Run) -> Vec<(String, Tensor)> {
        run.inputs
            .iter()
            .map(|n| (n.name.clone(), self.tensor(&n.file)))
            .collect()
    }
}

/// Checks `got` against the reference `want`: same dtype and shape; floats
/// within `atol + rtol * |want|` (NaN matches NaN), everything else exact.
pub fn assert_close(what: &str, got: &Tensor, want: &Tensor, rtol: f64, atol: f64) {
    assert_eq!(got.dtype(), want.dtype(), "{what}: dtype");
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    if !want.dtype().is_float() {
        assert!(
            got == want,
            "{what}: values differ (exact comparison)\n got {:?}\nwant {:?}",
            preview(got),
            preview(want)
        );
        return;
    }
    let (g, w) = (got.to_f64_lossy().unwrap(), want.to_f64_lossy().unwrap());
    let mut worst: Option<(usize, f64)> = None;
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        let ok = (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= atol + rtol * b.abs();
        if !ok {
            let excess = (a - b).abs() - (atol + rtol * b.abs());
            if worst.is_none_or(|(_, e)| excess > e) {
                worst = Some((i, excess));
            }
        }
    }
    if let Some((i, _)) = worst {
        let bad = g
            .iter()
            .zip(&w)
            .filter(|(a, b)| (*a - *b).abs() > atol + rtol * b.abs())
            .count();
        panic!(
            "{what}: {bad} of {} values outside rtol {rtol} atol {atol}; worst at {i}: got {} want {}",
            g.len(),
            g[i],
            w[i]
        );
    }
}

fn preview(t: &Tensor) -> Vec<f64> {
    t.to_f64_lossy()
        .unwrap_or_default()
        .into_iter()
        .take(16)
        .collect()
}

/// A two-thread tokio runtime, for the tests that call the async API.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}
