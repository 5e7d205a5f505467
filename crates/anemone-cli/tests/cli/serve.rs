//! `anemone serve` end to end: its reports, its exit, memory budgets and TLS flags.

use super::*;
use common::serve::Serve;

/// `serve` (given its repository as Triton's `--model-store`) without the
/// ONNX Runtime library says so once, at warn level, with the fix; prints a
/// table of its models once they have loaded; and in poll mode logs a
/// reload that failed.
#[test]
fn serve_reports_its_models_a_missing_onnxruntime_and_failed_reloads() {
    let repo = add_and_broken_repo("serve-report");
    let mut serving = Serve::on_free_ports()
        .args(&[
            // Triton's other name for --model-repository.
            "--model-store",
            repo.to_str().unwrap(),
            "--model-control-mode",
            "poll",
            "--repository-poll-secs",
            "1",
        ])
        .envs(&[("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")])
        .start();
    let lines = serving.lines_until(|l| l.starts_with("broken"));
    let header = lines
        .iter()
        .find(|l| l.starts_with("MODEL"))
        .unwrap_or_else(|| panic!("no table header: {lines:#?}"));
    for column in ["VERSION", "STATE", "BACKEND", "LOAD TIME"] {
        assert!(header.contains(column), "{header}");
    }
    let add = lines.iter().find(|l| l.starts_with("add ")).unwrap();
    for cell in ["1", "READY", "tract-cpu", " ms"] {
        assert!(add.contains(cell), "{add}");
    }
    let broken = lines.last().unwrap();
    assert!(broken.contains("UNAVAILABLE"), "{broken}");

    let stderr = serving.stderr();
    assert!(
        !stderr.contains('\u{1b}'),
        "ANSI codes on a pipe: {stderr:?}"
    );
    let warned = stderr.matches("ONNX Runtime is unavailable").count();
    assert_eq!(warned, 1, "{stderr}");
    assert!(stderr.contains("WARN"), "{stderr}");
    assert!(stderr.contains("install-onnxruntime.sh"), "{stderr}");

    // A change on disk that cannot load is logged.
    std::fs::write(repo.join("add/1/model.onnx"), b"not a model").unwrap();
    let stderr = serving.wait_stderr("reload after a change on disk failed");
    assert!(stderr.contains("add"), "{stderr}");
    assert!(serving.terminate().success());
}

/// Triton's command line: `--log-verbose 1` logs at debug level (without
/// it, the default level writes no DEBUG line), `--allow-grpc false`
/// leaves gRPC without a listener, saying so, and `--strict-model-config=false`
/// is taken as Triton's older commands write it; the sizes of tritonserver's
/// own pools are taken with a warning naming them, `--rate-limit off` is taken
/// and a mode it does not have refused.
#[test]
fn serve_takes_tritons_verbose_and_allow_flags() {
    let repo = temp_dir("serve-triton-flags");
    add_version(
        &repo,
        "add",
        "examples/models/add/1/model.onnx",
        "model.onnx",
    );
    for (verbose, debug) in [(None, false), (Some("1"), true)] {
        // As old Triton commands write it: the default, accepted.
        let mut args = vec![
            "--model-store",
            repo.to_str().unwrap(),
            "--allow-grpc",
            "false",
            "--strict-model-config=false",
            // Sizes of tritonserver's own pools: taken, with a warning.
            "--pinned-memory-pool-byte-size=268435456",
            "--cuda-memory-pool-byte-size",
            "0:67108864",
            // Triton's ping policing: taken, with the same warning.
            "--grpc-http2-max-ping-strikes=0",
            // Triton's defaults, and a retry count.
            "--rate-limit",
            "off",
            "--model-load-retry-count",
            "2",
            "--model-namespacing=false",
            "--reuse-http-port",
            "false",
            "--response-cache-byte-size",
            "1048576",
            // A GPU internal: taken, with the warning.
            "--enable-peer-access=false",
            // Backend settings: one sizes the threads, the other is named.
            "--backend-config",
            "onnxruntime,intra_op_thread_count=2",
            "--backend-config=python,shm-default-byte-size=1048576",
            // Triton's defaults for endpoints and metrics anemone lacks.
            "--allow-sagemaker=false",
            "--allow-vertex-ai",
            "false",
            "--metrics-config",
            "counter_latencies=true",
        ];
        if let Some(level) = verbose {
            args.extend(["--log-verbose", level]);
        }
        let mut serving = Serve::on_free_ports().args(&args).start();
        let lines = serving.lines_until(|l| l.starts_with("add "));
        assert!(
            lines
                .iter()
                .any(|l| l == "gRPC is switched off (--allow-grpc false)"),
            "{lines:#?}"
        );
        assert!(
            !lines.iter().any(|l| l.starts_with("gRPC listening")),
            "{lines:#?}"
        );
        let stderr = serving.stderr();
        assert_eq!(stderr.contains(" DEBUG "), debug, "{verbose:?}: {stderr}");
        let warned = stderr
            .lines()
            .find(|l| l.contains("not used by anemone"))
            .unwrap_or_else(|| panic!("no warning for Triton's pool sizes: {stderr}"));
        let backends = stderr
            .lines()
            .find(|l| l.contains("--backend-config values not used by anemone"))
            .unwrap_or_else(|| panic!("no warning for --backend-config: {stderr}"));
        assert!(
            backends
                .contains("python,shm-default-byte-size=1048576 (anemone has no python backend")
                && !backends.contains("intra_op_thread_count"),
            "{backends}"
        );
        for part in [
            "--pinned-memory-pool-byte-size=268435456 (tract-cuda keeps its own page-locked pool)",
            "--cuda-memory-pool-byte-size 0:67108864",
            "--grpc-http2-max-ping-strikes=0 (anemone answers every client ping",
            "--enable-peer-access=false (tract-cuda runs each model on one GPU",
        ] {
            assert!(warned.contains(part), "{warned}");
        }
        assert!(serving.terminate().success());
    }
    // Refused, each with its exit status and what it says: a rate limiter
    // mode or resource Triton would not take either, a backend setting
    // anemone cannot honour, namespaces, and a config name that would lead
    // out of a model's configs/.
    for (args, status, says) in [
        (
            &["--rate-limit", "sometimes"][..],
            2,
            "'sometimes' is not a mode; use off (the default) or execution_count",
        ),
        (
            &["--rate-limit-resource", "R1"][..],
            2,
            "'R1': no count; write NAME:COUNT or NAME:COUNT:DEVICE",
        ),
        (
            &["--backend-config", "onnxruntime,arena_extend_strategy=1"][..],
            2,
            "'onnxruntime,arena_extend_strategy=1': not a setting anemone takes",
        ),
        (
            &["--model-namespacing", "true"][..],
            2,
            "anemone has no model namespaces",
        ),
        (
            &["--model-config-name=../x"][..],
            2,
            "'../x' is not a config name",
        ),
        // Lists every model would refuse, refused at start-up as flag
        // mistakes (status 2, as CONFIGURATION.md says of them all).
        (
            &["--backends", "auto", "--strict"][..],
            2,
            "--backends auto and --strict together",
        ),
        (
            &["--backends", "onnxruntime,onnxruntime"][..],
            2,
            "backend 'onnxruntime' is named twice",
        ),
        (
            &["--eviction", "lru"][..],
            2,
            "--eviction lru needs a budget to evict against",
        ),
        // As tritonserver 2.51 refuses it (it loaded every model).
        (
            &["--load-model", "add"][..],
            2,
            "--load-model needs --model-control-mode explicit",
        ),
        (
            &["--load-model", "add", "--model-control-mode", "poll"][..],
            2,
            "--load-model needs --model-control-mode explicit",
        ),
        // u64::MAX seconds overflowed every HTTP connection's deadline.
        (
            &["--http-header-timeout-secs", "18446744073709551615"][..],
            2,
            "not in 1..=31536000",
        ),
    ] {
        let mut all = vec!["serve", "--model-repository", repo.to_str().unwrap()];
        all.extend(args);
        let out = anemone(&all);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(status), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

/// Triton's `--exit-on-error` and `--strict-readiness`, on a repository
/// where one model cannot load: by default the server stays up and is not
/// ready; `--strict-readiness false` is ready (the model itself is not);
/// `--exit-on-error true` prints the table and exits 1 naming the model
/// and its reason.
#[test]
fn serve_takes_tritons_exit_on_error_and_strict_readiness() {
    use common::serve::{get_status, ready_status};
    let repo = add_and_broken_repo("serve-exit-on-error");
    let repo_arg = repo.to_str().unwrap();
    for (strict, ready) in [(None, 503), (Some("false"), 200)] {
        let mut args = vec!["--model-repository", repo_arg];
        if let Some(strict) = strict {
            args.extend(["--strict-readiness", strict]);
        }
        let mut serving = Serve::on_free_ports().args(&args).start();
        let http = serving.find_address("HTTP");
        let lines = serving.lines_until(|l| l.starts_with("broken"));
        assert!(lines.last().unwrap().contains("UNAVAILABLE"), "{lines:#?}");
        assert_eq!(
            ready_status(http),
            Some(ready),
            "--strict-readiness {strict:?}"
        );
        // The model's own readiness says it failed either way.
        assert_eq!(
            get_status(http, "/v2/models/broken/ready"),
            Some(503),
            "--strict-readiness {strict:?}"
        );
        assert!(serving.terminate().success());
    }

    let started = std::time::Instant::now();
    let out = anemone(&[
        "serve",
        "--model-repository",
        repo_arg,
        "--http-port",
        "0",
        "--grpc-port",
        "0",
        "--exit-on-error",
        "true",
    ]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
    // The table first, then one error naming the model and why.
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("add ") && l.contains("READY")),
        "{stdout}"
    );
    let error = stderr
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("{stderr}"));
    for part in ["model 'broken' failed to load", "--exit-on-error true"] {
        assert!(error.contains(part), "{error}");
    }
    assert!(!error.contains("'add'"), "{error}");
    assert!(!stdout.contains("anemone stopped"), "{stdout}");
}

/// `--exit-timeout-secs` bounds the exit even while an engine call runs on:
/// a `Loop` of a million iterations (seconds on tract) is still running when
/// SIGTERM comes, and the process exits 0 within the timeout (plus slack),
/// not when the call ends.
#[test]
fn serve_exits_within_the_exit_timeout_while_an_engine_call_runs() {
    use std::io::{Read, Write};
    let repo = temp_dir("exit-timeout");
    add_version(
        &repo,
        "loop",
        "fixtures/generated/loop_control/model.onnx",
        "model.onnx",
    );
    std::fs::write(
        repo.join("loop/config.pbtxt"),
        "parameters { key: \"backends\" value: { string_value: \"tract-cpu\" } }\n",
    )
    .unwrap();
    let mut serving = Serve::on_free_ports()
        .args(&[
            "--model-repository",
            repo.to_str().unwrap(),
            "--exit-timeout-secs",
            "1",
        ])
        .start();
    let lines = serving.lines_until(|l| l.starts_with("loop"));
    let http = lines
        .iter()
        .find_map(|l| l.strip_prefix("HTTP listening on "))
        .unwrap()
        .to_string();
    let body = r#"{"inputs": [{"name": "trip", "shape": [], "datatype": "INT64", "data": [1000000]},
        {"name": "x", "shape": [2], "datatype": "FP32", "data": [0, 0]}]}"#;
    let mut client = std::net::TcpStream::connect(&http).unwrap();
    write!(
        client,
        "POST /v2/models/loop/infer HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    // The engine call has started well before this.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let start = std::time::Instant::now();
    let status = serving.terminate();
    let took = start.elapsed();
    assert!(status.success(), "{status:?}\n{}", serving.stderr());
    assert!(
        took < std::time::Duration::from_secs(4),
        "exited {took:?} after SIGTERM with --exit-timeout-secs 1"
    );
    // The request was cut off, not answered.
    let mut answer = Vec::new();
    let _ = client.read_to_end(&mut answer);
    assert!(!String::from_utf8_lossy(&answer).contains("200 OK"));
}

/// doctor runs serve's own repository checks: a config serve refuses (here a
/// `default_model_filename` naming a missing file, and an unknown backend
/// key) is reported as not loadable, with serve's reason.
#[test]
fn doctor_reports_the_configs_serve_refuses() {
    let repo = temp_dir("doctor-config");
    add_version(
        &repo,
        "add",
        "examples/models/add/1/model.onnx",
        "model.onnx",
    );
    add_version(
        &repo,
        "typo",
        "examples/models/add/1/model.onnx",
        "model.onnx",
    );
    std::fs::write(
        repo.join("typo/config.pbtxt"),
        "default_model_filename: \"modle.onnx\"\n",
    )
    .unwrap();
    add_version(
        &repo,
        "keys",
        "examples/models/add/1/model.onnx",
        "model.onnx",
    );
    std::fs::write(
        repo.join("keys/config.pbtxt"),
        "parameters { key: \"tract-cpu.bogus\" value: { string_value: \"1\" } }\n",
    )
    .unwrap();
    let out = anemone(&[
        "doctor",
        "--model-repository",
        repo.to_str().unwrap(),
        "--json",
    ]);
    let json: Value = serde_json::from_str(&assert_ok(&out)).unwrap();
    let models = json["models"].as_array().unwrap();
    let row = |name: &str| models.iter().find(|m| m["name"] == name).unwrap();
    assert!(!row("add")["runnable_on"].as_array().unwrap().is_empty());
    for (name, reason) in [
        (
            "typo",
            "the model file 'modle.onnx' named by default_model_filename is missing",
        ),
        ("keys", "backend tract-cpu reads: tract-cpu.plan_cache"),
    ] {
        let m = row(name);
        assert_eq!(m["runnable_on"], serde_json::json!([]), "{m}");
        assert_eq!(m["not_here"][0][0], "repository", "{m}");
        assert!(
            m["not_here"][0][1].as_str().unwrap().contains(reason),
            "{m}"
        );
    }
}

/// `--memory-budget` takes units; `--eviction lru` needs a budget; `models`
/// with a budget for one of two models reports the other evicted (loaded again
/// on request), not failed, and shows the budget and what is resident.
#[test]
fn models_with_a_memory_budget_and_lru_eviction_shows_what_is_resident() {
    let repo = temp_dir("evict-models");
    add_version(
        &repo,
        "convnet",
        "fixtures/generated/small_convnet/model.onnx",
        "model.onnx",
    );
    add_version(
        &repo,
        "ocr_cls",
        "fixtures/generated/ocr_cls/model.onnx",
        "model.onnx",
    );
    let r = repo.to_str().unwrap();
    let tract = ["--backends", "tract-cpu"];
    // Charged on tract: ocr_cls about 523 KiB, convnet a few KiB; 525KiB holds one, not both.
    let mut args = vec![
        "models",
        "--model-repository",
        r,
        "--memory-budget",
        "525KiB",
        "--eviction",
        "lru",
    ];
    args.extend(tract);
    let out = assert_ok(&anemone(&args));
    assert!(
        out.contains("of the 525.0 KiB budget charged (eviction lru); resident: ")
            && out.contains("evicted (loaded again on request): "),
        "{out}"
    );
    assert!(out.contains("evicted (LRU) to make room for '"), "{out}");

    // Without eviction, the same budget refuses the second model.
    let mut args = vec![
        "models",
        "--model-repository",
        r,
        "--memory-budget",
        "525KiB",
    ];
    args.extend(tract);
    let out = anemone(&args);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("error: 1 of 2 models could not be loaded"),
        "{}",
        text(&out.stderr)
    );

    let out = anemone(&["models", "--model-repository", r, "--memory-budget", "2XB"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("e.g. 2GiB or 512MiB"),
        "{}",
        text(&out.stderr)
    );
    // A flag mistake (status 2), for `models` as for `serve`.
    for command in ["serve", "models"] {
        let out = anemone(&[command, "--model-repository", r, "--eviction", "lru"]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{command}: {stderr}");
        assert!(
            stderr.contains("--eviction lru needs a budget") && stderr.contains("--memory-budget"),
            "{command}: {stderr}"
        );
    }
}

/// TLS: a certificate that cannot be read, or flags that do not go
/// together, stop `anemone serve` at once with the file or flag named (and
/// no panic); an https URL without a CA stops `anemone bench`. (Bad
/// certificate and key contents: crates/anemone-server/tests/api/tls.rs.)
#[test]
fn serve_and_bench_refuse_bad_tls_files_and_flags() {
    let dir = temp_dir("tls-flags");
    let missing = dir.join("missing.pem");
    let key = dir.join("server.key");
    std::fs::write(&key, "not a key\n").unwrap();
    let repo = root().join("examples/models");
    // Run with a deadline: a server that starts instead of refusing fails
    // the test rather than hanging it.
    let serve = |extra: &[&str]| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_anemone"))
            .args(["serve", "--model-repository", repo.to_str().unwrap()])
            .args(["--http-port", "0", "--grpc-port", "0"])
            .args(extra)
            .env_remove("RUST_BACKTRACE")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("anemone serve {extra:?} started instead of refusing");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        child.wait_with_output().unwrap()
    };
    let m = missing.to_str().unwrap();
    let k = key.to_str().unwrap();
    assert_error(
        &serve(&["--http-tls-cert", m, "--http-tls-key", k]),
        &["HTTP TLS", m, "--http-tls-cert", "cannot be read"],
    );
    assert_mistake(
        &serve(&["--grpc-server-cert", m, "--grpc-server-key", k]),
        &["--grpc-server-cert", "add --grpc-use-ssl"],
    );
    assert_mistake(
        &serve(&["--http-tls-cert", m]),
        &["--http-tls-cert needs --http-tls-key"],
    );
    assert_error(
        &anemone(&["bench", "--model", "add", "--url", "https://127.0.0.1:1"]),
        &["https", "--ca-cert"],
    );
}

/// `--malloc-load-mmap-threshold` above glibc's largest threshold, or not a
/// byte size (from the flag or the environment), stops `serve` at once with
/// the limit or the units named.
#[test]
fn serve_refuses_a_bad_load_mmap_threshold() {
    // A repository that does not exist: were the value taken, serve would
    // stop on that instead of running on.
    let repo = temp_dir("bad-mmap-threshold").join("missing");
    let repo = repo.to_str().unwrap();
    let out = anemone(&[
        "serve",
        "--model-repository",
        repo,
        "--malloc-load-mmap-threshold",
        "64MiB",
    ]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "started: {stderr}");
    assert!(
        stderr.contains("--malloc-load-mmap-threshold") && stderr.contains("32MiB or less"),
        "{stderr}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_anemone"))
        .args(["serve", "--model-repository", repo])
        .env("ANEMONE_MALLOC_LOAD_MMAP_THRESHOLD", "lots")
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "started: {stderr}");
    assert!(
        stderr.contains("ANEMONE_MALLOC_LOAD_MMAP_THRESHOLD") && stderr.contains("MiB"),
        "{stderr}"
    );
}
