//! The server's own cost per request, in process, without the network: the
//! real HTTP router (axum, `tower::ServiceExt::oneshot`) and the real gRPC
//! service (tonic, a framed `ModelInfer` body), answering `GET
//! /v2/health/live` and an infer of the trivial `add` model (two FP32 [1, 4]
//! inputs, tract-cpu) as `scripts/triton_peer` sends it: HTTP JSON, HTTP with
//! the binary tensor extension, and gRPC with `raw_input_contents`.
//!
//! The same requests then go over loopback TCP to the server running in the
//! same process (hyper HTTP/1.1 with keep-alive, as wrk sends them; tonic's
//! client over HTTP/2 for gRPC): the difference between an infer and the
//! health check of the same protocol is what an inference adds over the
//! server's floor, as issue 16 measures it, without a release binary or wrk.
//!
//! Before the timings it prints the heap allocations per request of each
//! in-process request (a counting global allocator; every thread counts, so
//! the runtime's own allocations are in).
//!
//! Run with `cargo bench --workspace --bench server_path`. Figures are
//! recorded in docs/PERFORMANCE.md; nothing here is asserted.

use anemone_server::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use anemone_server::proto::{self, model_infer_request::InferInputTensor};
use anemone_server::{ControlMode, Server, ServerOptions};
use axum::body::{Body, Bytes};
use axum::http::Request;
use criterion::{criterion_group, criterion_main, Criterion};
use prost::Message;
use std::alloc::{GlobalAlloc, Layout, System};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::{Service, ServiceExt};

/// The system allocator, counting allocations and bytes allocated.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counters are plain atomics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const ADD_CONFIG: &str = r#"name: "add"
max_batch_size: 8
input [
  { name: "x" data_type: TYPE_FP32 dims: [ 4 ] },
  { name: "y" data_type: TYPE_FP32 dims: [ 4 ] }
]
output [
  { name: "sum" data_type: TYPE_FP32 dims: [ 4 ] },
  { name: "diff" data_type: TYPE_FP32 dims: [ 4 ] }
]
"#;

const JSON_BODY: &str = r#"{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1.0, 2.0, 3.0, 4.0]}, {"name": "y", "shape": [1, 4], "datatype": "FP32", "data": [10.0, 20.0, 30.0, 40.0]}]}"#;

const X: [f32; 4] = [1.0, 2.0, 3.0, 4.0];
const Y: [f32; 4] = [10.0, 20.0, 30.0, 40.0];

fn le(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// A repository holding `add`, in a fresh temporary folder.
fn repository() -> PathBuf {
    let root = std::env::temp_dir().join(format!("anemone-server-path-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("add/1")).unwrap();
    std::fs::write(root.join("add/config.pbtxt"), ADD_CONFIG).unwrap();
    let onnx = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/models/add/1/model.onnx");
    std::fs::copy(onnx, root.join("add/1/model.onnx")).unwrap();
    root
}

/// One kind of request, sent again and again.
#[derive(Clone, Copy)]
enum Kind {
    Health,
    HttpJson,
    HttpBinary,
    Grpc,
    GrpcHealth,
}

struct Fixture {
    /// HTTP/1.1 over loopback TCP to the running server, one connection.
    tcp: tokio::sync::Mutex<(tokio::net::TcpStream, Vec<u8>)>,
    /// gRPC over loopback TCP to the running server.
    client: GrpcInferenceServiceClient<tonic::transport::Channel>,
    grpc_request: proto::ModelInferRequest,
    router: axum::Router,
    grpc: anemone_server::grpc::InferenceService,
    binary: (Bytes, usize),
    grpc_body: Bytes,
    grpc_live: Bytes,
}

fn framed(message: &impl Message) -> Bytes {
    let mut out = vec![0u8];
    out.extend_from_slice(&(message.encoded_len() as u32).to_be_bytes());
    message.encode(&mut out).unwrap();
    Bytes::from(out)
}

/// Starts a server on `root` on its own runtime (two worker threads, as
/// `anemone serve` on two cores), with `add` loaded; returns its state and
/// its HTTP and gRPC addresses. It serves until the process exits.
fn start_server(
    server_rt: &tokio::runtime::Runtime,
    root: &Path,
) -> (Arc<anemone_server::state::AppState>, SocketAddr, SocketAddr) {
    server_rt.block_on(async {
        let manager = anemone_runtime::Manager::builder()
            .backend(anemone_backends::TractCpu)
            .build()
            .unwrap();
        let options = ServerOptions {
            http_port: 0,
            grpc_port: 0,
            repository: root.to_path_buf(),
            control: ControlMode::Explicit,
            ..Default::default()
        };
        let server = Server::bind(options, manager).await.unwrap();
        let state = server.state();
        let (http, grpc) = (
            server.http_addr().expect("HTTP is on"),
            server.grpc_addr().expect("gRPC is on"),
        );
        tokio::spawn(server.run(std::future::pending()));
        state.load_model("add", None).await.unwrap();
        (state, http, grpc)
    })
}

impl Fixture {
    async fn new(
        state: Arc<anemone_server::state::AppState>,
        http_addr: SocketAddr,
        grpc_addr: SocketAddr,
    ) -> Fixture {
        let tcp = tokio::net::TcpStream::connect(http_addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let client = GrpcInferenceServiceClient::connect(format!("http://{grpc_addr}"))
            .await
            .unwrap();
        let router = anemone_server::http::router(Arc::clone(&state), 64 << 20);
        let grpc = anemone_server::grpc::service(Arc::clone(&state), 64 << 20);
        let header = r#"{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "parameters": {"binary_data_size": 16}}, {"name": "y", "shape": [1, 4], "datatype": "FP32", "parameters": {"binary_data_size": 16}}], "parameters": {"binary_data_output": true}}"#;
        let mut body = header.as_bytes().to_vec();
        body.extend(le(&X));
        body.extend(le(&Y));
        let input = |name: &str| InferInputTensor {
            name: name.into(),
            datatype: "FP32".into(),
            shape: vec![1, 4],
            ..Default::default()
        };
        let grpc_request = proto::ModelInferRequest {
            model_name: "add".into(),
            inputs: vec![input("x"), input("y")],
            raw_input_contents: vec![le(&X).into(), le(&Y).into()],
            ..Default::default()
        };
        let grpc_body = framed(&grpc_request);
        Fixture {
            tcp: tokio::sync::Mutex::new((tcp, Vec::with_capacity(4096))),
            client,
            grpc_request,
            router,
            grpc,
            binary: (Bytes::from(body), header.len()),
            grpc_body,
            grpc_live: framed(&proto::ServerLiveRequest {}),
        }
    }

    /// Sends one request and reads its whole answer; panics unless it is a 200.
    async fn send(&self, kind: Kind) -> usize {
        let http = |method: &str, uri: &str| Request::builder().method(method).uri(uri);
        let (response, grpc) = match kind {
            Kind::Health => (
                self.router
                    .clone()
                    .oneshot(http("GET", "/v2/health/live").body(Body::empty()).unwrap())
                    .await
                    .unwrap(),
                false,
            ),
            Kind::HttpJson => (
                self.router
                    .clone()
                    .oneshot(
                        http("POST", "/v2/models/add/infer")
                            .header("content-type", "application/json")
                            .body(Body::from(JSON_BODY))
                            .unwrap(),
                    )
                    .await
                    .unwrap(),
                false,
            ),
            Kind::HttpBinary => (
                self.router
                    .clone()
                    .oneshot(
                        http("POST", "/v2/models/add/infer")
                            .header("content-type", "application/octet-stream")
                            .header("inference-header-content-length", self.binary.1)
                            .body(Body::from(self.binary.0.clone()))
                            .unwrap(),
                    )
                    .await
                    .unwrap(),
                false,
            ),
            Kind::Grpc | Kind::GrpcHealth => {
                let (path, body) = match kind {
                    Kind::Grpc => ("ModelInfer", &self.grpc_body),
                    _ => ("ServerLive", &self.grpc_live),
                };
                let uri = format!("/inference.GRPCInferenceService/{path}");
                let request = http("POST", uri.as_str())
                    .header("content-type", "application/grpc")
                    .header("te", "trailers")
                    .body(tonic::body::Body::new(Body::from(body.clone())))
                    .unwrap();
                let mut service = self.grpc.clone();
                let response = ServiceExt::ready(&mut service)
                    .await
                    .unwrap()
                    .call(request)
                    .await
                    .unwrap();
                (response.map(Body::new), true)
            }
        };
        assert_eq!(response.status(), 200);
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        if grpc {
            // A failed RPC is a trailers-only answer: no message.
            assert!(bytes.len() > 5, "the RPC failed");
        }
        bytes.len()
    }
}

impl Fixture {
    /// Sends one request over loopback TCP (HTTP/1.1 keep-alive, or gRPC)
    /// and reads its whole answer.
    async fn send_tcp(&self, kind: Kind) -> usize {
        match kind {
            Kind::Grpc => {
                let mut client = self.client.clone();
                let r = client.model_infer(self.grpc_request.clone()).await.unwrap();
                return r.into_inner().raw_output_contents.len();
            }
            Kind::GrpcHealth => {
                let mut client = self.client.clone();
                let r = client
                    .server_live(proto::ServerLiveRequest {})
                    .await
                    .unwrap();
                return usize::from(r.into_inner().live);
            }
            _ => {}
        }
        let mut request = Vec::with_capacity(512);
        let (head, body): (&str, &[u8]) = match kind {
            Kind::Health => ("GET /v2/health/live HTTP/1.1\r\nHost: bench\r\n", &[]),
            Kind::HttpJson => (
                "POST /v2/models/add/infer HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n",
                JSON_BODY.as_bytes(),
            ),
            _ => {
                request.extend_from_slice(
                    format!(
                        "POST /v2/models/add/infer HTTP/1.1\r\nHost: bench\r\nInference-Header-Content-Length: {}\r\n",
                        self.binary.1
                    )
                    .as_bytes(),
                );
                ("", &self.binary.0[..])
            }
        };
        request.extend_from_slice(head.as_bytes());
        request.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
        request.extend_from_slice(body);
        let mut guard = self.tcp.lock().await;
        let (stream, buffer) = &mut *guard;
        stream.write_all(&request).await.unwrap();
        buffer.clear();
        loop {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the server closed the connection");
            buffer.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(buffer);
            let Some(end) = text.find("\r\n\r\n") else {
                continue;
            };
            assert!(text.starts_with("HTTP/1.1 200"), "{text}");
            let length: usize = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if buffer.len() >= end + 4 + length {
                return length;
            }
        }
    }
}

/// Context switches so far, voluntary and not, summed over this process's threads.
fn context_switches() -> u64 {
    let mut total = 0;
    for task in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        total += status
            .lines()
            .filter(|l| l.contains("ctxt_switches"))
            .filter_map(|l| l.split_whitespace().last()?.parse::<u64>().ok())
            .sum::<u64>();
    }
    total
}

fn server_path(c: &mut Criterion) {
    let root = repository();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (state, http, grpc) = start_server(&server_rt, &root);
    let fixture = rt.block_on(Fixture::new(state, http, grpc));
    let kinds = [
        ("health: GET /v2/health/live", Kind::Health),
        ("add: HTTP JSON infer", Kind::HttpJson),
        ("add: HTTP binary infer", Kind::HttpBinary),
        ("gRPC: ServerLive", Kind::GrpcHealth),
        ("add: gRPC ModelInfer", Kind::Grpc),
    ];
    const N: u64 = 2000;
    for (name, kind) in kinds {
        let (allocations, bytes) = rt.block_on(async {
            for _ in 0..200 {
                fixture.send(kind).await;
            }
            let (a, b) = (
                ALLOCATIONS.load(Ordering::Relaxed),
                BYTES.load(Ordering::Relaxed),
            );
            for _ in 0..N {
                fixture.send(kind).await;
            }
            (
                ALLOCATIONS.load(Ordering::Relaxed) - a,
                BYTES.load(Ordering::Relaxed) - b,
            )
        });
        println!(
            "allocations per request, {name}: {:.1} ({:.0} bytes)",
            allocations as f64 / N as f64,
            bytes as f64 / N as f64
        );
    }
    // Context switches per request over loopback (every thread of the
    // process: the server's two workers and this client).
    for (name, kind) in kinds {
        let switches = rt.block_on(async {
            for _ in 0..200 {
                fixture.send_tcp(kind).await;
            }
            let before = context_switches();
            for _ in 0..N {
                fixture.send_tcp(kind).await;
            }
            context_switches() - before
        });
        println!(
            "context switches per request over loopback, {name}: {:.2}",
            switches as f64 / N as f64
        );
    }
    for (name, kind) in kinds {
        c.bench_function(&format!("in process: {name}"), |b| {
            b.to_async(&rt).iter(|| fixture.send(kind));
        });
    }
    for (name, kind) in kinds {
        c.bench_function(&format!("loopback: {name}"), |b| {
            b.to_async(&rt).iter(|| fixture.send_tcp(kind));
        });
    }
    // The Host check every request to a loopback listener passes
    // (`--http-allow-host`; docs/SECURITY.md).
    let hosts = anemone_server::hosts::AllowedHosts::default();
    for host in ["127.0.0.1:8000", "localhost:8000", "rebound.test:8000"] {
        c.bench_function(&format!("host check: {host}"), |b| {
            b.iter(|| hosts.allows(std::hint::black_box(host.as_bytes())));
        });
    }
    // Headers forwarded to the model (`--http-header-forward-pattern`;
    // docs/SERVING.md): the eight headers tritonclient's HTTP client sends,
    // one of them matched, as strings for the request's parameters.
    let mut headers = axum::http::HeaderMap::new();
    for (k, v) in [
        ("host", "localhost:8000"),
        ("user-agent", "python/gevent-http-client-1.5.3"),
        ("accept-encoding", "gzip, deflate"),
        ("connection", "keep-alive"),
        ("content-type", "application/json"),
        ("content-length", "151"),
        ("inference-header-content-length", "151"),
        ("x-tenant", "acme"),
    ] {
        headers.insert(k, v.parse().unwrap());
    }
    for pattern in ["^x-tenant$", ".*"] {
        let forward = anemone_server::forwarded_headers::ForwardPattern::parse("--bench", pattern)
            .unwrap()
            .unwrap();
        c.bench_function(&format!("header forwarding: {pattern}, 8 headers"), |b| {
            b.iter(|| forward.http(std::hint::black_box(&headers)).unwrap());
        });
    }
    drop(fixture);
    let _ = std::fs::remove_dir_all(&root);
}

criterion_group!(benches, server_path);
criterion_main!(benches);
