//! End-to-end tests of the `anemone` binary: `infer` against reference
//! outputs from ONNX Runtime, `inspect` in both formats, and error reporting.
//!
//! The fixtures under `fixtures/generated/` come from `scripts/setup.sh`;
//! a test fails, with a message saying so, when they are missing.

use anemone_core::{npy, Tensor};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

#[path = "../common/mod.rs"]
mod common;
use common::temp_dir::TempDir;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the workspace root exists")
}

/// A path under the workspace root that must exist.
fn fixture(rel: &str) -> PathBuf {
    let path = root().join(rel);
    assert!(
        path.exists(),
        "missing fixture {}: run scripts/setup.sh to generate fixtures/generated/",
        path.display()
    );
    path
}

/// A fresh, empty temporary directory for one test, removed when dropped.
fn temp_dir(test: &str) -> TempDir {
    TempDir::new(&format!("cli-{test}"))
}

/// Puts fixture `src` in a repository as `<name>/1/<file>`.
fn add_version(repo: &Path, name: &str, src: &str, file: &str) {
    std::fs::create_dir_all(repo.join(name).join("1")).unwrap();
    std::fs::copy(fixture(src), repo.join(name).join("1").join(file)).unwrap();
}

/// A repository of `add` (loads) and `broken` (a truncated file: fails).
fn add_and_broken_repo(test: &str) -> TempDir {
    let repo = temp_dir(test);
    add_version(
        &repo,
        "add",
        "examples/models/add/1/model.onnx",
        "model.onnx",
    );
    add_version(
        &repo,
        "broken",
        "fixtures/generated/bad/truncated.onnx",
        "model.onnx",
    );
    repo
}

/// Runs the binary with `args`, without any `ANEMONE_*` variable of the caller.
fn anemone(args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_anemone"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("ANEMONE_") {
            cmd.env_remove(key);
        }
    }
    cmd.env_remove("RUST_BACKTRACE")
        .args(args)
        .output()
        .expect("the anemone binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Checks a failure: exit 1, a single `error:` report on stderr mentioning
/// every string in `mentions`, and no panic. Returns stderr.
fn assert_error(out: &Output, mentions: &[&str]) -> String {
    assert_exit(out, 1, mentions)
}

/// [`assert_error`] for a flag mistake (flags that do not go together): exit 2.
fn assert_mistake(out: &Output, mentions: &[&str]) -> String {
    assert_exit(out, 2, mentions)
}

fn assert_exit(out: &Output, code: i32, mentions: &[&str]) -> String {
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{stderr}",
        text(&out.stdout)
    );
    assert!(
        stderr.starts_with("error:"),
        "stderr does not start with 'error:':\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    for m in mentions {
        assert!(
            stderr.contains(m),
            "stderr does not mention '{m}':\n{stderr}"
        );
    }
    stderr
}

fn read_npy(path: &Path) -> Tensor {
    let file =
        std::fs::File::open(path).unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    npy::read(file).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Same dtype and shape, and every element within `atol + rtol * |expected|`.
fn assert_close(what: &str, got: &Tensor, want: &Tensor, rtol: f64, atol: f64) {
    assert_eq!(got.dtype(), want.dtype(), "{what}: dtype");
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    if !got.dtype().is_float() {
        assert_eq!(got, want, "{what}: values must be equal");
        return;
    }
    let (g, w) = (got.to_f64_lossy().unwrap(), want.to_f64_lossy().unwrap());
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        assert!(
            (a - b).abs() <= atol + rtol * b.abs(),
            "{what}[{i}]: got {a}, want {b} (rtol {rtol}, atol {atol})"
        );
    }
}

/// Runs run `run` of the fixture case in `dir` through `anemone infer` and
/// compares every output with the reference. Returns stdout.
fn check_case(dir: &str, run: usize, test: &str) -> String {
    let case_dir = fixture(dir);
    let case: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture(&format!("{dir}/case.json"))).unwrap(),
    )
    .unwrap();
    let run = &case["runs"][run];
    let out_dir = temp_dir(test);
    let model = case_dir.join(case["model"].as_str().unwrap());
    let mut args: Vec<String> = vec![
        "infer".into(),
        model.display().to_string(),
        "--output-dir".into(),
        out_dir.display().to_string(),
    ];
    for input in run["inputs"].as_array().unwrap() {
        let file = fixture(&format!("{dir}/{}", input["file"].as_str().unwrap()));
        args.extend([
            "--input".into(),
            format!("{}={}", input["name"].as_str().unwrap(), file.display()),
        ]);
    }
    let stdout = assert_ok(&anemone(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    let (rtol, atol) = (
        case["rtol"].as_f64().unwrap(),
        case["atol"].as_f64().unwrap(),
    );
    for output in run["outputs"].as_array().unwrap() {
        let name = output["name"].as_str().unwrap();
        let stem: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let want = read_npy(&fixture(&format!(
            "{dir}/{}",
            output["file"].as_str().unwrap()
        )));
        assert_close(
            name,
            &read_npy(&out_dir.join(format!("{stem}.npy"))),
            &want,
            rtol,
            atol,
        );
    }
    stdout
}

mod errors;
mod grpc_connections;
mod infer;
mod inspect;
mod models_doctor;
mod restricted_flags;
mod serve;
