//! A harness for tests that need the real sockets of a running server:
//! a server on port 0 for both protocols, a raw keep-alive HTTP/1.1 client
//! (so the test sees exactly what the server writes), and the tonic client.

use anemone_server::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use anemone_server::state::AppState;
use anemone_server::ServerOptions;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::TempDir;
pub use crate::support::{fixture, workspace};

/// A model repository in the temporary directory, removed on drop.
pub struct Repo(pub TempDir);

impl Repo {
    pub fn new(tag: &str) -> Repo {
        Repo(TempDir::new(&format!("net-{tag}")))
    }

    /// `<name>/1/model.onnx` copied from `source`, with `config` as its
    /// `config.pbtxt` when given.
    pub fn model(self, name: &str, source: &Path, config: Option<&str>) -> Repo {
        let dir = self.0.join(name).join("1");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(source, dir.join("model.onnx")).unwrap();
        if let Some(config) = config {
            std::fs::write(self.0.join(name).join("config.pbtxt"), config).unwrap();
        }
        self
    }
}

/// A server running in this process on real listeners.
pub struct NetServer {
    pub http: SocketAddr,
    pub grpc: SocketAddr,
    pub state: Arc<AppState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub done: Option<tokio::task::JoinHandle<Result<(), String>>>,
}

impl NetServer {
    /// Serves `repository` (every model loaded at start-up) with the tract CPU
    /// backend and, where this build has it, ONNX Runtime (tract first).
    pub async fn start(repository: &Path) -> NetServer {
        NetServer::start_with(ServerOptions {
            repository: repository.to_path_buf(),
            ..Default::default()
        })
        .await
    }

    /// Serves with `options` (ports are replaced by 0; by default, as
    /// [`ServerOptions`], every model is loaded at start-up).
    pub async fn start_with(options: ServerOptions) -> NetServer {
        let manager = anemone_runtime::Manager::builder()
            .backend(anemone_backends::TractCpu)
            .backend(anemone_backends::OnnxRuntime)
            .build()
            .unwrap();
        let options = ServerOptions {
            http_port: 0,
            grpc_port: 0,
            ..options
        };
        let r = crate::support::run_server(options, manager).await;
        NetServer {
            http: r.http,
            grpc: r.grpc,
            state: r.state,
            stop: Some(r.stop),
            done: Some(r.task),
        }
    }

    /// Waits (at most two minutes) until the server is ready.
    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !self.state.ready() {
            assert!(Instant::now() < deadline, "server not ready after 120 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends the shutdown signal and returns at once.
    pub fn signal_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    pub async fn stop(mut self) {
        self.signal_stop();
        let done = self.done.take().unwrap();
        tokio::time::timeout(Duration::from_secs(30), done)
            .await
            .expect("server stopped within 30 s")
            .unwrap()
            .unwrap();
    }

    /// A plain gRPC channel to the server, for calls the generated client
    /// cannot make (raw HTTP/2 bodies, other message types).
    pub async fn grpc_channel(&self) -> tonic::transport::Channel {
        tonic::transport::Endpoint::from_shared(format!("http://{}", self.grpc))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    pub async fn grpc_client(&self) -> GrpcInferenceServiceClient<tonic::transport::Channel> {
        GrpcInferenceServiceClient::connect(format!("http://{}", self.grpc))
            .await
            .unwrap()
    }

    pub async fn http_client(&self) -> HttpConn {
        HttpConn::connect(self.http).await
    }
}

/// One keep-alive HTTP/1.1 connection, written and read by hand.
pub struct HttpConn {
    stream: TcpStream,
    buffered: Vec<u8>,
}

/// An HTTP answer.
pub struct HttpReply {
    pub status: u16,
    pub body: Vec<u8>,
}

impl HttpReply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

impl HttpConn {
    pub async fn connect(addr: SocketAddr) -> HttpConn {
        let stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        HttpConn {
            stream,
            buffered: Vec::new(),
        }
    }

    /// The raw stream, for tests that write partial requests.
    pub fn stream(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// Sends one request and reads its answer (`Content-Length` framed).
    pub async fn send(&mut self, method: &str, path: &str, body: &[u8]) -> HttpReply {
        self.send_with(method, path, "content-type: application/json\r\n", body)
            .await
    }

    /// Sends one request with more header lines (`headers`, each ending in
    /// CRLF) and reads its answer.
    pub async fn send_with(
        &mut self,
        method: &str,
        path: &str,
        headers: &str,
        body: &[u8],
    ) -> HttpReply {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nhost: anemone\r\n{headers}content-length: {}\r\n\r\n",
            body.len()
        );
        let mut request = head.into_bytes();
        request.extend_from_slice(body);
        self.stream.write_all(&request).await.unwrap();
        self.read_reply().await
    }

    /// Reads one answer.
    pub async fn read_reply(&mut self) -> HttpReply {
        let split = loop {
            if let Some(p) = self.buffered.windows(4).position(|w| w == b"\r\n\r\n") {
                break p;
            }
            self.fill().await;
        };
        let head = String::from_utf8(self.buffered[..split].to_vec()).unwrap();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        let length: usize = head
            .split("\r\n")
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
            .map(|(_, v)| v.trim().parse().unwrap())
            .expect("a content-length");
        let start = split + 4;
        while self.buffered.len() < start + length {
            self.fill().await;
        }
        let body = self.buffered[start..start + length].to_vec();
        self.buffered.drain(..start + length);
        HttpReply { status, body }
    }

    async fn fill(&mut self) {
        let mut chunk = [0u8; 64 * 1024];
        let n = self.stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the server closed the connection");
        self.buffered.extend_from_slice(&chunk[..n]);
    }
}

/// The median of `samples`.
pub fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}
