//! Issue 11's memory goals through the real `anemone serve`, with its
//! defaults (the CPU engines compared in a child process, large allocations
//! mapped on their own while a model loads):
//! - a server holding the five real models (PP-OCRv4 det/rec/cls, magika,
//!   silero VAD) is within 3x the model bytes above an empty server, each
//!   model served by the engine the comparison picked;
//! - loading models costs about what they are charged against the memory
//!   budget, and unloading them gives it back.
//!
//! Linux only (it reads VmRSS from /proc).

#![cfg(target_os = "linux")]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod common;
use common::serve::{Serve, Serving, Stderr};
use common::temp_dir::TempDir;

const CASES: [&str; 5] = ["ocr_det", "ocr_rec", "ocr_cls", "magika", "silero_vad"];

fn fixture(case: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../../fixtures/generated/{case}/model.onnx"));
    assert!(p.exists(), "{}: run scripts/setup.sh", p.display());
    p
}

fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    let head = format!("GET {path} HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n");
    s.write_all(head.as_bytes()).ok()?;
    let mut reply = String::new();
    s.read_to_string(&mut reply).ok()?;
    let status = reply.split(' ').nth(1)?.parse().ok()?;
    Some((status, reply))
}

/// A server on its own repository, removed after the server is killed.
struct Server {
    serving: Serving,
    _repo: TempDir,
}

/// The server's VmRSS in bytes.
fn rss(server: &Server) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.serving.pid())).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib * 1024
}

/// Starts `anemone serve` on a repository of `cases` with `args`; returns it
/// and its HTTP address.
fn start(tag: &str, cases: &[&str], args: &[&str]) -> (Server, SocketAddr) {
    let repo = TempDir::new(&format!("servemem-{tag}"));
    for case in cases {
        std::fs::create_dir_all(repo.join(case).join("1")).unwrap();
        std::fs::copy(fixture(case), repo.join(case).join("1/model.onnx")).unwrap();
    }
    let serving = Serve::on_free_ports()
        .repository(&repo)
        .args(args)
        .stderr(Stderr::Null)
        .start();
    let http = serving.find_address("HTTP");
    let server = Server {
        serving,
        _repo: repo,
    };
    (server, http)
}

/// Starts a server on `cases`, waits until every one is ready, and returns
/// it with its VmRSS in bytes and each model's metadata reply.
fn serve(tag: &str, cases: &[&str], args: &[&str]) -> (Server, u64, Vec<String>) {
    let (server, http) = start(tag, cases, args);
    let start = Instant::now();
    let ready =
        |c: &&str| get(http, &format!("/v2/models/{c}/ready")).is_some_and(|(s, _)| s == 200);
    while !cases.iter().all(&ready) || get(http, "/v2/health/ready").is_none_or(|(s, _)| s != 200) {
        assert!(start.elapsed() < Duration::from_secs(300), "not ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    let rss = rss(&server);
    let mut replies: Vec<String> = cases
        .iter()
        .map(|c| get(http, &format!("/v2/models/{c}")).unwrap().1)
        .collect();
    replies.push(get(http, "/metrics").unwrap().1);
    (server, rss, replies)
}

fn post(addr: SocketAddr, path: &str) -> u16 {
    let mut s = TcpStream::connect(addr).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: a\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    reply.split(' ').nth(1).unwrap().parse().unwrap()
}

#[test]
fn five_real_models_stay_within_3x_their_bytes_above_an_empty_server() {
    let files: u64 = CASES
        .iter()
        .map(|c| std::fs::metadata(fixture(c)).unwrap().len())
        .sum();
    let (empty_server, empty, _) = serve("empty", &[], &[]);
    drop(empty_server);
    let (_server, rss, mut meta) = serve("five", &CASES, &[]);
    let metrics = meta.pop().unwrap();
    // Every model's engines were compared in a child, none in the server.
    for line in [
        "anemone_engine_comparisons_total{where=\"child\"} 5",
        "anemone_engine_comparisons_total{where=\"fell_back\"} 0",
    ] {
        assert!(metrics.contains(line), "no {line} in /metrics");
    }
    let above = rss.saturating_sub(empty);
    let ratio = above as f64 / files as f64;
    eprintln!(
        "five models ({:.1} MiB): RSS {:.0} MiB, {:.0} MiB above the empty server ({:.2}x)",
        files as f64 / 1048576.0,
        rss as f64 / 1048576.0,
        above as f64 / 1048576.0,
        ratio
    );
    // Measured 2.75-2.81x on a 2-core VM (debug build, 2026-11-30); without
    // mapping large allocations while loading (`--malloc-load-mmap-threshold
    // 0`) 3.1-3.2x, and with the engines compared in the server 4.0-4.3x.
    assert!(
        ratio < 3.0,
        "{ratio:.2}x the model bytes above an empty server; the goal is 3x"
    );
    // Both engines were candidates (silero VAD's synthetic warm-up fails on
    // both: issue 11), and each model serves on one of them.
    for m in meta {
        for engine in ["onnxruntime", "tract-cpu"] {
            assert!(m.contains(&format!("\"backend\":\"{engine}\"")), "{m}");
        }
    }
}

/// Loads three models of tens of MB one by one through the API, on one
/// engine, then unloads them: the RSS they add is close to what they are
/// charged against the memory budget (the engines' own accounting), and
/// the unloads give it back.
#[test]
fn loading_costs_what_is_charged_and_unloading_gives_it_back() {
    let cases = ["ocr_rec", "batching_mlp", "resnet18"];
    let args = [
        "--model-control-mode",
        "explicit",
        "--backends",
        "onnxruntime",
        "--strict",
    ];
    let (server, http) = start("charge", &cases, &args);
    let wait_ready = Instant::now();
    while get(http, "/v2/health/live").is_none_or(|(s, _)| s != 200) {
        assert!(wait_ready.elapsed() < Duration::from_secs(60), "not live");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    let empty = rss(&server);
    for case in cases {
        let status = post(http, &format!("/v2/repository/models/{case}/load"));
        assert_eq!(status, 200, "load {case}");
    }
    std::thread::sleep(Duration::from_millis(500));
    let loaded = rss(&server);
    let metrics = get(http, "/metrics").unwrap().1;
    let charged: u64 = cases
        .iter()
        .map(|c| {
            let prefix = format!("anemone_model_memory_bytes{{model=\"{c}\",");
            let line = metrics
                .lines()
                .find(|l| l.starts_with(&prefix))
                .unwrap_or_else(|| panic!("no {prefix} in /metrics"));
            line.rsplit(' ').next().unwrap().parse::<u64>().unwrap()
        })
        .sum();
    for case in cases {
        let status = post(http, &format!("/v2/repository/models/{case}/unload"));
        assert_eq!(status, 200, "unload {case}");
    }
    std::thread::sleep(Duration::from_millis(1000));
    let unloaded = rss(&server);
    let mib = |b: u64| b as f64 / 1048576.0;
    let added = loaded.saturating_sub(empty);
    let kept = unloaded.saturating_sub(empty);
    eprintln!(
        "empty {:.0} MiB; three models charged {:.1} MiB added {:.1} MiB ({:.2}x); {:.1} MiB kept after unloading",
        mib(empty),
        mib(charged),
        mib(added),
        added as f64 / charged as f64,
        mib(kept)
    );
    // Measured on a 2-core VM (debug build, 2026-11-30): 1.21x, and 13 MiB
    // kept (ONNX Runtime's own fixed cost: its code and global state).
    // Without mapping large allocations while loading: 1.38x, 25 MiB kept.
    assert!(
        (added as f64) < 1.3 * charged as f64,
        "loading added {:.1} MiB for {:.1} MiB charged",
        mib(added),
        mib(charged)
    );
    assert!(
        kept < 20 << 20,
        "{:.1} MiB kept after unloading every model",
        mib(kept)
    );
}
