//! Issue 13's logging, metrics port and layered configuration, through the
//! real `anemone` binary: the logging API (HTTP and gRPC) changes what the
//! server writes on stderr, JSON log lines parse, the metrics port serves,
//! `config show` layers default < file < env < flag, and a bad config file
//! stops start-up with the file, line, key and a suggestion.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod common;
use common::serve::{Serve, Serving, Stderr};
use common::temp_dir::TempDir;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The binary with no `ANEMONE_*` variable of the caller's environment.
fn anemone() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_anemone"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("ANEMONE_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

fn temp(tag: &str) -> TempDir {
    TempDir::new(&format!("ops-{tag}"))
}

/// A server on the example repository, its stderr in a file; killed when dropped.
struct Server {
    serving: Serving,
    /// Address lines as printed: "HTTP", "gRPC", "Metrics".
    addrs: Vec<(String, SocketAddr)>,
    /// Holds the stderr file; removed after the server is killed.
    _dir: TempDir,
}

impl Server {
    fn start(tag: &str, args: &[&str]) -> Server {
        let dir = temp(tag);
        let serving = Serve::on_free_ports()
            .repository(&root().join("examples/models"))
            .args(args)
            .stderr(Stderr::File(dir.join("stderr.log")))
            .start();
        // The address lines come first, then the model table once loaded.
        let addrs = serving
            .lines_until(|l| l.starts_with("add "))
            .iter()
            .filter_map(|l| l.split_once(" listening on "))
            .map(|(what, addr)| (what.to_string(), addr.parse().unwrap()))
            .collect();
        Server {
            serving,
            addrs,
            _dir: dir,
        }
    }

    fn addr(&self, what: &str) -> Option<SocketAddr> {
        self.addrs.iter().find(|(w, _)| w == what).map(|(_, a)| *a)
    }

    fn http(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        http(self.addr("HTTP").unwrap(), method, path, body)
    }

    fn stderr(&self) -> String {
        self.serving.stderr()
    }

    /// Switches a gate (an INFO line, "feature gate switched") and waits
    /// until the request's answer is in, then a little for the line.
    fn log_an_info_line(&self, on: bool) {
        let (status, body) = self.http(
            "POST",
            "/v2/anemone/config",
            &format!("{{\"gate-monitoring\": {on}}}"),
        );
        assert_eq!(status, 200, "{body}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A plain HTTP/1.1 request: the status and the body.
fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

fn switched(stderr: &str) -> usize {
    stderr.matches("feature gate switched").count()
}

#[test]
fn the_logging_api_changes_what_the_server_logs_over_http_and_grpc() {
    let s = Server::start("logapi", &["--log-format", "json"]);
    // At the default level (warn), an INFO line is not written.
    s.log_an_info_line(false);
    assert_eq!(switched(&s.stderr()), 0, "{}", s.stderr());
    let (status, body) = s.http("GET", "/v2/logging", "");
    assert_eq!(status, 200);
    let settings: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(settings["log_info"], false, "{body}");
    assert_eq!(settings["log_format"], "json");

    let (status, body) = s.http("POST", "/v2/logging", r#"{"log_info": true}"#);
    assert_eq!(
        (status, body.contains(r#""log_info":true"#)),
        (200, true),
        "{body}"
    );
    s.log_an_info_line(true);
    assert_eq!(switched(&s.stderr()), 1, "{}", s.stderr());

    // Triton's switches are independent: INFO off again, over gRPC.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let grpc = s.addr("gRPC").unwrap();
    let answer = runtime.block_on(async move {
        use anemone_server::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
        use anemone_server::proto::log_settings_request::{
            setting_value::ParameterChoice, SettingValue,
        };
        let mut c = GrpcInferenceServiceClient::connect(format!("http://{grpc}"))
            .await
            .unwrap();
        let set = |key: &str, v: ParameterChoice| {
            (
                key.to_string(),
                SettingValue {
                    parameter_choice: Some(v),
                },
            )
        };
        let bad = c
            .log_settings(anemone_server::proto::LogSettingsRequest {
                settings: [set("log_verbose_level", ParameterChoice::BoolParam(true))].into(),
            })
            .await
            .unwrap_err();
        assert_eq!(bad.code(), tonic::Code::InvalidArgument, "{bad:?}");
        c.log_settings(anemone_server::proto::LogSettingsRequest {
            settings: [set("log_info", ParameterChoice::BoolParam(false))].into(),
        })
        .await
        .unwrap()
        .into_inner()
    });
    use anemone_server::proto::log_settings_response::setting_value::ParameterChoice as Out;
    assert_eq!(
        answer.settings["log_info"].parameter_choice,
        Some(Out::BoolParam(false))
    );
    s.log_an_info_line(false);
    assert_eq!(
        switched(&s.stderr()),
        1,
        "INFO is off again: {}",
        s.stderr()
    );

    // Every line is one JSON object, with the event's level and fields.
    let stderr = s.stderr();
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let line = lines
        .iter()
        .find(|l| l["fields"]["message"] == "feature gate switched")
        .unwrap();
    assert_eq!(
        (line["level"].as_str(), line["fields"]["gate"].as_str()),
        (Some("INFO"), Some("monitoring"))
    );

    // What anemone cannot do is a clear 400.
    let (status, body) = s.http("POST", "/v2/logging", r#"{"log_file": "/tmp/x.log"}"#);
    assert_eq!(status, 400);
    assert!(
        body.contains("log_file") && body.contains("stderr"),
        "{body}"
    );
    let (status, body) = s.http("POST", "/v2/logging", r#"{"log_format": "text"}"#);
    assert_eq!(status, 400);
    assert!(body.contains("--log-format"), "{body}");
}

/// Triton's `--log-file`: log lines are appended to the file, not written on
/// stderr; the logging API reports the file and refuses another one; a file
/// that cannot be opened stops start-up with the flag named. And Triton's
/// `--id`, the name the server metadata answers, and its `--log-info`,
/// `--log-warning` and `--log-error` switches.
#[test]
fn log_file_takes_the_log_lines_and_the_logging_api_reports_it() {
    let dir = temp("log-file");
    let file = dir.join("anemone.log");
    std::fs::write(&file, "an earlier line\n").unwrap();
    let s = Server::start(
        "log-file-server",
        &[
            "--log-level",
            "debug",
            "--log-file",
            file.to_str().unwrap(),
            "--id",
            "inference-a",
        ],
    );
    let (status, body) = s.http("GET", "/v2", "");
    assert_eq!(status, 200);
    let metadata: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(metadata["name"], "inference-a", "{body}");
    let log = std::fs::read_to_string(&file).unwrap();
    assert!(log.starts_with("an earlier line\n"), "not appended: {log}");
    assert!(
        log.contains(" DEBUG ") && log.contains("logging at this filter"),
        "{log}"
    );
    assert!(!s.stderr().contains(" DEBUG "), "{}", s.stderr());
    let (status, body) = s.http("GET", "/v2/logging", "");
    assert_eq!(status, 200);
    let settings: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(settings["log_file"], file.to_str().unwrap());
    // The same file, or none named, changes nothing; another is refused.
    let same = format!("{{\"log_file\": {:?}}}", file.to_str().unwrap());
    assert_eq!(s.http("POST", "/v2/logging", &same).0, 200);
    let (status, body) = s.http("POST", "/v2/logging", r#"{"log_file": "/tmp/x.log"}"#);
    assert_eq!(status, 400);
    assert!(
        body.contains("--log-file") && body.contains("anemone.log"),
        "{body}"
    );

    // Triton's severity switches at start-up: INFO on (over the default
    // `warn`), WARN off.
    let switched = dir.join("switched.log");
    let s = Server::start(
        "log-switches",
        &[
            "--log-file",
            switched.to_str().unwrap(),
            "--log-info",
            "true",
            "--log-warning=false",
        ],
    );
    let (_, body) = s.http("GET", "/v2/logging", "");
    let settings: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (
            &settings["log_info"],
            &settings["log_warning"],
            &settings["log_error"]
        ),
        (&true.into(), &false.into(), &true.into()),
        "{body}"
    );
    let log = std::fs::read_to_string(&switched).unwrap();
    assert!(log.contains(" INFO "), "{log}");

    let out = anemone()
        .args([
            "serve",
            "--model-repository",
            "examples/models",
            "--http-port",
            "0",
        ])
        .args([
            "--grpc-port",
            "0",
            "--log-file",
            "/nonexistent/dir/anemone.log",
        ])
        .current_dir(root())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--log-file /nonexistent/dir/anemone.log: cannot open"),
        "{stderr}"
    );
}

#[test]
fn the_metrics_port_serves_metrics_and_port_0_prints_a_free_port() {
    let s = Server::start("metrics", &["--metrics-port", "0"]);
    let metrics = s.addr("Metrics").expect("a 'Metrics listening on' line");
    assert_ne!(metrics.port(), 0);
    let (status, body) = http(metrics, "GET", "/metrics", "");
    assert_eq!(status, 200);
    assert!(
        body.contains("anemone_feature_gate{gate=\"batching\"} 1"),
        "{body}"
    );
    assert_eq!(http(metrics, "GET", "/v2/health/ready", "").0, 404);
    // Still on the HTTP port.
    assert_eq!(s.http("GET", "/metrics", "").0, 200);
    drop(s);
    let off = Server::start("nometrics", &["--allow-metrics", "false"]);
    assert_eq!(off.addr("Metrics"), None, "{:?}", off.addrs);
}

/// `config show`'s JSON: key -> (value, source).
fn shown(
    args: &[&str],
    env: &[(&str, &str)],
) -> std::collections::HashMap<String, (serde_json::Value, String)> {
    let out = anemone()
        .args(["config", "show", "--json", "--"])
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["settings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["key"].as_str().unwrap().to_string(),
                (
                    s["value"].clone(),
                    s["source"].as_str().unwrap().to_string(),
                ),
            )
        })
        .collect()
}

#[test]
fn config_show_layers_default_file_env_and_flag() {
    let dir = temp("layers");
    let file = dir.join("anemone.toml");
    std::fs::write(
        &file,
        "max-concurrency = 64\nworkers = 3\nthreads = 2\nmodel-control-mode = \"explicit\"\n\
         load-model = [\"add\"]\ngate-batching = false\nlog-level = \"info\"\n",
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let s = shown(
        &["--config", file, "--threads", "5"],
        &[("ANEMONE_WORKERS", "4")],
    );
    let at = |k: &str| {
        let (v, source) = &s[k];
        (
            v.as_str().map(str::to_string).unwrap_or(v.to_string()),
            source.as_str(),
        )
    };
    assert_eq!(at("max-concurrency"), ("64".into(), "file"));
    assert_eq!(at("workers"), ("4".into(), "env"));
    assert_eq!(at("threads"), ("5".into(), "flag"));
    assert_eq!(at("http-port"), ("8000".into(), "default"));
    assert_eq!(at("gate-batching"), ("false".into(), "file"));
    assert_eq!(at("log-level"), ("info".into(), "file"));
    assert_eq!(at("load-model"), (r#"["add"]"#.into(), "file"));
    assert_eq!(at("config"), (file.to_string(), "flag"));
    // The file's values reach the server itself.
    let served = Server::start("fromfile", &["--config", file]);
    let (_, body) = served.http("GET", "/v2/anemone/config", "");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let setting = |k: &str| {
        v["settings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["key"] == k)
            .unwrap()
            .clone()
    };
    assert_eq!(setting("max-concurrency")["value"], "64");
    assert_eq!(setting("gate-batching")["value"], "false");
    // Changed at run time: from the API.
    let (status, _) = served.http("POST", "/v2/anemone/config", r#"{"max-concurrency": 7}"#);
    assert_eq!(status, 200);
    let out = anemone()
        .args(["config", "show", "--url"])
        .arg(format!("http://{}", served.addr("HTTP").unwrap()))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("max-concurrency "))
        .unwrap();
    assert!(line.contains(" api ") && line.contains(" 7"), "{text}");
}

#[test]
fn serve_help_explains_the_layers() {
    for flag in ["-h", "--help"] {
        let out = anemone().args(["serve", flag]).output().unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(
            help.contains("Configuration layers, lowest precedence first")
                && help.contains("ANEMONE_<FLAG>")
                && help.contains("the TOML file given by --config")
                && help.contains("anemone config show"),
            "{help}"
        );
    }
}

#[test]
fn a_misspelled_key_names_the_file_line_key_and_the_nearest_flag() {
    let dir = temp("typo");
    let file = dir.join("bad.toml");
    std::fs::write(&file, "# settings\nhttp-port = 0\nmax-concurency = 3\n").unwrap();
    let started = Instant::now();
    let out = anemone()
        .args(["serve", "--grpc-port", "0", "--model-repository"])
        .arg(root().join("examples/models"))
        .arg("--config")
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let want = format!(
        "config file {}, line 3, key 'max-concurency': unknown key; did you mean 'max-concurrency'?",
        file.display()
    );
    assert!(stderr.contains(&want), "{stderr}");
    // The file is at fault, not the command line: no usage lines.
    assert!(!stderr.contains("Usage:"), "{stderr}");
    assert_eq!(out.status.code(), Some(2), "a usage-class error: {stderr}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("listening"),
        "it did not start"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    // A bad value is checked by the flag's own parser, and located too.
    std::fs::write(&file, "max-concurrency = \"lots\"\n").unwrap();
    let out = anemone()
        .args(["config", "show", "--", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("line 1, key 'max-concurrency': invalid value 'lots'"),
        "{stderr}"
    );
    // The status `serve` stops with on the same file: a usage error.
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    // Per-model tables have no meaning here: said, with where they go.
    std::fs::write(
        &file,
        "max-concurrency = 4\n\n[models.resnet]\nthreads = 2\n",
    )
    .unwrap();
    let out = anemone()
        .args(["config", "show", "--", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("line 3, key 'models': tables are not supported: per-model settings go in each model's config.pbtxt"),
        "{stderr}"
    );
    assert!(!stderr.contains("Usage:"), "{stderr}");
}

/// `--config /dev/zero` (a path that never ends) is refused at once with
/// the bound, instead of reading until memory runs out.
#[test]
fn a_config_file_that_never_ends_is_refused() {
    let mut child = anemone()
        .args([
            "serve",
            "--http-port",
            "0",
            "--grpc-port",
            "0",
            "--config",
            "/dev/zero",
        ])
        .arg("--model-repository")
        .arg(root().join("examples/models"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("anemone serve --config /dev/zero still reading after 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success());
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(
        stderr.contains("cannot read the config file /dev/zero")
            && stderr.contains("larger than 1024 KiB"),
        "{stderr}"
    );
}

#[test]
fn a_bad_environment_value_names_the_variable() {
    let out = anemone()
        .env("ANEMONE_HTTP_PORT", "abc")
        .args(["serve", "--grpc-port", "0", "--model-repository"])
        .arg(root().join("examples/models"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "environment variable ANEMONE_HTTP_PORT=\"abc\": invalid value 'abc' for '--http-port"
        ),
        "{stderr}"
    );
    // The same value typed as a flag keeps clap's own message.
    let out = anemone()
        .env("ANEMONE_HTTP_PORT", "1")
        .args(["serve", "--http-port", "abc", "--model-repository"])
        .arg(root().join("examples/models"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("environment variable"), "{stderr}");
    assert!(
        stderr.contains("invalid value 'abc' for '--http-port"),
        "{stderr}"
    );
}

#[test]
fn a_zero_that_would_serve_nothing_is_refused_at_start() {
    // Each started a server that refused every request (429, 413), loaded
    // no model, or quietly ran one worker.
    for (flag, value, want) in [
        ("--max-concurrency", "0", "must be at least 1"),
        ("--workers", "0", "must be at least 1"),
        ("--threads", "0", "must be at least 1"),
        ("--max-request-bytes", "0", "0 bytes holds nothing"),
        ("--memory-budget", "0GiB", "0 bytes holds nothing"),
    ] {
        let out = anemone()
            .args(["serve", "--http-port", "0", "--grpc-port", "0", flag, value])
            .arg("--model-repository")
            .arg(root().join("examples/models"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {stderr}");
        assert!(
            stderr.contains(&format!("invalid value '{value}' for '{flag}"))
                && stderr.contains(want),
            "{flag} {value}: {stderr}"
        );
    }
}
