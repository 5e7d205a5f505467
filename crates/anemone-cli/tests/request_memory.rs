//! Issue 14, defect 5, through the real `anemone serve` process: a big JSON
//! inference body costs memory in proportion to what it really carries, and
//! decoding it does not stall the async threads that answer health checks.
//!
//! Each test runs its own server process and reads that process's peak RSS
//! (VmHWM) from /proc, so the figures are the server's alone (Linux only).

#![cfg(target_os = "linux")]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod common;
use common::serve::{wait_ready, Serve, Serving, Stderr};
use common::temp_dir::TempDir;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A server on a copy of the example `add` model (FP32 `x`, `y` of shape
/// [batch, 4]), killed when dropped (then its repository removed).
struct Server {
    serving: Serving,
    http: SocketAddr,
    _repo: TempDir,
}

impl Server {
    fn start(tag: &str, args: &[&str], env: &[(&str, &str)]) -> Server {
        let repo = TempDir::new(&format!("reqmem-{tag}"));
        std::fs::create_dir_all(repo.join("add/1")).unwrap();
        std::fs::copy(
            root().join("examples/models/add/1/model.onnx"),
            repo.join("add/1/model.onnx"),
        )
        .unwrap();
        let serving = Serve::on_free_ports()
            .repository(&repo)
            .args(args)
            .envs(env)
            .stderr(Stderr::Null)
            .start();
        let http = serving.find_address("HTTP");
        wait_ready(http, Duration::from_secs(60));
        Server {
            serving,
            http,
            _repo: repo,
        }
    }

    /// One request on a fresh connection: the status and the body.
    fn request(&self, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
        request(self.http, method, path, body)
    }

    /// The server's peak resident memory so far, in bytes.
    fn peak_rss(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.serving.pid())).unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        kib * 1024
    }
}

fn request(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: a\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    // The server may answer (and close) before it has read a refused body.
    let _ = s.write_all(body);
    let mut reply = Vec::new();
    let read = s.read_to_end(&mut reply);
    let text = String::from_utf8_lossy(&reply);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer to {method} {path} ({read:?}): {text:.200}"));
    let split = reply.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    (status, reply[split..].to_vec())
}

/// An `add` request whose inputs carry `values` numbers each (as "0.5")
/// under the shape [rows, 4].
fn add_body(rows: usize, values: usize) -> Vec<u8> {
    let data = vec!["0.5"; values].join(",");
    format!(
        r#"{{"inputs":[{{"name":"x","shape":[{rows},4],"datatype":"FP32","data":[{data}]}},{{"name":"y","shape":[{rows},4],"datatype":"FP32","data":[{data}]}}]}}"#
    )
    .into_bytes()
}

#[test]
fn issue_14_a_json_body_longer_than_its_shape_is_refused_without_being_decoded() {
    let server = Server::start("long", &[], &[]);
    // 3 million values where the shape says 4: a ~24 MiB body that, parsed
    // into a JSON tree first, took over 200 MB.
    let body = add_body(1, 3_000_000);
    let before = server.peak_rss();
    let (status, reply) = server.request("POST", "/v2/models/add/infer", &body);
    let reply = String::from_utf8_lossy(&reply);
    assert_eq!(status, 400, "{reply}");
    assert!(
        reply.contains("input 'x' has more values in 'data' than shape [1, 4] needs (4)"),
        "{reply}"
    );
    let grown = server.peak_rss().saturating_sub(before);
    assert!(
        grown < 4 * body.len() as u64,
        "peak RSS grew by {} MiB for a {} MiB body",
        grown >> 20,
        body.len() >> 20
    );
}

#[test]
fn issue_14_health_answers_while_big_bodies_decode() {
    // One async thread: decoding on it would hold every other request.
    let server = Server::start("health", &[], &[("TOKIO_WORKER_THREADS", "1")]);
    let rows = 131_072;
    let body = std::sync::Arc::new(add_body(rows, rows * 4));
    let start = Instant::now();
    let senders: Vec<_> = (0..2)
        .map(|_| {
            let (addr, body) = (server.http, std::sync::Arc::clone(&body));
            std::thread::spawn(move || request(addr, "POST", "/v2/models/add/infer", &body).0)
        })
        .collect();
    let mut slowest = Duration::ZERO;
    while senders.iter().any(|s| !s.is_finished()) {
        let t = Instant::now();
        assert_eq!(server.request("GET", "/v2/health/live", b"").0, 200);
        slowest = slowest.max(t.elapsed());
        std::thread::sleep(Duration::from_millis(10));
    }
    let took = start.elapsed();
    for s in senders {
        let status = s.join().unwrap();
        assert!(status == 200 || status == 429, "{status}");
    }
    eprintln!("health: slowest {slowest:?}; the two requests: {took:?}");
    // A wide ratio: health waited for whole decodes when they ran on the
    // async thread; now it waits for nothing.
    assert!(
        slowest < took / 4,
        "/v2/health/live took up to {slowest:?} while two {} KiB bodies took {took:?}",
        body.len() >> 10
    );
}
