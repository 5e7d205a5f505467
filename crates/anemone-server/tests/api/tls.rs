//! TLS and mutual TLS on both listeners, through the real server, with
//! certificates this test makes (rcgen): HTTPS and gRPC over TLS serve;
//! plain HTTP to the HTTPS port gets a clear 400; under mTLS a client with
//! no certificate, or one from another CA, is refused and a good one is
//! served; the header timeout still holds under TLS; a bad certificate or
//! key stops start-up with a message that names the file.

use crate::net::{workspace, NetServer};
use crate::support::TempDir;
use anemone_server::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use anemone_server::proto::model_infer_request::InferInputTensor;
use anemone_server::proto::{ModelInferRequest, ServerLiveRequest};
use anemone_server::server::HttpTimeouts;
use anemone_server::tls::{TlsFiles, TlsOptions};
use anemone_server::{Server, ServerOptions};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// A certificate authority made for one test.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its key, as PEM.
struct Leaf {
    cert: String,
    key: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Ca { issuer }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A server certificate for `localhost` and 127.0.0.1.
    fn server(&self) -> Leaf {
        self.leaf("localhost", ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate.
    fn client(&self, name: &str) -> Leaf {
        self.leaf(name, ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn leaf(&self, name: &str, usage: ExtendedKeyUsagePurpose) -> Leaf {
        let mut params = CertificateParams::new(vec![name.to_string()]).unwrap();
        params
            .subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}

/// A folder of PEM files for one test.
struct Dir(TempDir);

impl Dir {
    fn new(tag: &str) -> Dir {
        Dir(TempDir::new(&format!("tls-{tag}")))
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// The server's files: `server.pem`, `server.key` and, for mTLS, `clients.pem`.
    fn files(&self, server: &Leaf, client_ca: Option<&Ca>) -> TlsFiles {
        TlsFiles {
            cert: self.write("server.pem", &server.cert),
            key: self.write("server.key", &server.key),
            client_ca: client_ca.map(|ca| self.write("clients.pem", &ca.pem())),
            flags: ["--cert", "--key", "--client-ca"],
        }
    }
}

async fn start(tls: TlsOptions, timeouts: Option<HttpTimeouts>) -> NetServer {
    let defaults = ServerOptions::default();
    let server = NetServer::start_with(ServerOptions {
        repository: workspace().join("examples/models"),
        http_timeouts: timeouts.unwrap_or(defaults.http_timeouts),
        tls,
        ..defaults
    })
    .await;
    server.wait_ready().await;
    server
}

fn client_config(ca: &Ca, identity: Option<&Leaf>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.pem().as_bytes()).unwrap())
        .unwrap();
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some(leaf) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(leaf.cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(leaf.key.as_bytes()).unwrap(),
            )
            .unwrap(),
    };
    Arc::new(config)
}

const ADD: &str = r#"{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]},
    {"name": "y", "shape": [1, 4], "datatype": "FP32", "data": [1, 1, 1, 1]}],
    "outputs": [{"name": "sum"}]}"#;

/// Posts `ADD` over HTTPS; the status and body, or the error that ended the exchange.
async fn https_add(addr: SocketAddr, config: Arc<ClientConfig>) -> Result<(u16, String), String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let request = format!(
        "POST /v2/models/add/infer HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n{ADD}",
        ADD.len()
    );
    tls.write_all(request.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    read_answer(&mut tls).await
}

/// Reads one `Content-Length` framed HTTP answer.
async fn read_answer(
    stream: &mut (impl tokio::io::AsyncRead + Unpin),
) -> Result<(u16, String), String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .map(|(_, v)| v.trim().parse::<usize>().unwrap());
            if let Some(length) = length.filter(|&n| body.len() >= n) {
                let status = head.split(' ').nth(1).unwrap().parse().unwrap();
                return Ok((status, body[..length].to_string()));
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .map_err(|_| "no answer within 10 s".to_string())?
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err(format!("closed after {} bytes", got.len()));
        }
        got.extend_from_slice(&buf[..n]);
    }
}

fn sum_of(body: &str) -> Vec<f64> {
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["outputs"][0]["name"], "sum", "{v}");
    v["outputs"][0]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// A gRPC channel over TLS to `addr`, trusting `ca`, presenting `identity`.
async fn grpc_channel(
    addr: SocketAddr,
    ca: &Ca,
    identity: Option<&Leaf>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca.pem()))
        .domain_name("localhost");
    if let Some(leaf) = identity {
        tls = tls.identity(Identity::from_pem(&leaf.cert, &leaf.key));
    }
    Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(10))
        .connect()
        .await
}

/// `add` over gRPC: the `sum` output.
async fn grpc_add(channel: Channel) -> Result<Vec<f32>, String> {
    let mut client = GrpcInferenceServiceClient::new(channel);
    let tensor = |name: &str| InferInputTensor {
        name: name.into(),
        datatype: "FP32".into(),
        shape: vec![1, 4],
        ..Default::default()
    };
    let bytes = |v: [f32; 4]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let response = client
        .model_infer(ModelInferRequest {
            model_name: "add".into(),
            inputs: vec![tensor("x"), tensor("y")],
            raw_input_contents: vec![bytes([1., 2., 3., 4.]), bytes([1., 1., 1., 1.])]
                .into_iter()
                .map(Into::into)
                .collect(),
            ..Default::default()
        })
        .await
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?
        .into_inner();
    let i = response
        .outputs
        .iter()
        .position(|o| o.name == "sum")
        .unwrap();
    Ok(response.raw_output_contents[i]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect())
}

/// Whether a gRPC client gets through: connect, then one call.
async fn grpc_served(addr: SocketAddr, ca: &Ca, identity: Option<&Leaf>) -> Result<(), String> {
    let channel = grpc_channel(addr, ca, identity)
        .await
        .map_err(|e| format!("connect: {e:?}"))?;
    GrpcInferenceServiceClient::new(channel)
        .server_live(ServerLiveRequest {})
        .await
        .map(drop)
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_and_grpc_over_tls_serve_and_plain_http_is_told_to_use_https() {
    let ca = Ca::new("anemone test CA");
    let dir = Dir::new("serve");
    let files = dir.files(&ca.server(), None);
    let server = start(
        TlsOptions {
            http: Some(files.clone()),
            grpc: Some(files),
        },
        None,
    )
    .await;

    let (status, body) = https_add(server.http, client_config(&ca, None))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    // x + y, worked out by hand.
    assert_eq!(sum_of(&body), [2.0, 3.0, 4.0, 5.0]);

    // Plain HTTP to the HTTPS port: a 400 that says what to do.
    let mut plain = TcpStream::connect(server.http).await.unwrap();
    plain
        .write_all(b"GET /v2/health/live HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let (status, body) = read_answer(&mut plain).await.unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("https://"), "{body}");

    let channel = grpc_channel(server.grpc, &ca, None).await.unwrap();
    assert_eq!(grpc_add(channel).await.unwrap(), [2.0, 3.0, 4.0, 5.0]);
    // A client that does not trust the server's CA does not get through.
    let stranger = Ca::new("another CA");
    assert!(grpc_served(server.grpc, &stranger, None).await.is_err());
    assert!(https_add(server.http, client_config(&stranger, None))
        .await
        .is_err());
    // Plain-text gRPC to the TLS port fails too.
    let plain = GrpcInferenceServiceClient::connect(format!("http://{}", server.grpc)).await;
    if let Ok(mut client) = plain {
        assert!(client.server_live(ServerLiveRequest {}).await.is_err());
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_refuses_clients_without_a_certificate_from_the_client_ca() {
    let ca = Ca::new("server CA");
    let clients = Ca::new("client CA");
    let other = Ca::new("other CA");
    let dir = Dir::new("mtls");
    let files = dir.files(&ca.server(), Some(&clients));
    let server = start(
        TlsOptions {
            http: Some(files.clone()),
            grpc: Some(files),
        },
        None,
    )
    .await;
    let good = clients.client("good client");
    let forged = other.client("good client");

    // HTTP: no certificate, or one from another CA: refused; a good one: served.
    let refused = https_add(server.http, client_config(&ca, None)).await;
    assert!(refused.is_err(), "{refused:?}");
    let refused = https_add(server.http, client_config(&ca, Some(&forged))).await;
    assert!(refused.is_err(), "{refused:?}");
    let (status, body) = https_add(server.http, client_config(&ca, Some(&good)))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(sum_of(&body), [2.0, 3.0, 4.0, 5.0]);

    // gRPC, the same.
    let refused = grpc_served(server.grpc, &ca, None).await;
    assert!(refused.is_err(), "{refused:?}");
    let refused = grpc_served(server.grpc, &ca, Some(&forged)).await;
    assert!(refused.is_err(), "{refused:?}");
    grpc_served(server.grpc, &ca, Some(&good)).await.unwrap();
    let channel = grpc_channel(server.grpc, &ca, Some(&good)).await.unwrap();
    assert_eq!(grpc_add(channel).await.unwrap(), [2.0, 3.0, 4.0, 5.0]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_header_timeout_holds_under_tls() {
    let ca = Ca::new("timeouts CA");
    let dir = Dir::new("timeouts");
    let server = start(
        TlsOptions {
            http: Some(dir.files(&ca.server(), None)),
            grpc: None,
        },
        Some(HttpTimeouts {
            header: Duration::from_secs(1),
            body: Duration::from_secs(1),
        }),
    )
    .await;
    // Silent before the handshake, and silent after it with half a head:
    // both closed within a few seconds (not the default 30 s).
    let mut silent = TcpStream::connect(server.http).await.unwrap();
    let tcp = TcpStream::connect(server.http).await.unwrap();
    let mut loris = tokio_rustls::TlsConnector::from(client_config(&ca, None))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    loris
        .write_all(b"POST /v2/models/add/infer HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let within = Duration::from_secs(10);
    tokio::time::timeout(within, until_closed(&mut silent))
        .await
        .expect("a silent TCP client is closed by the handshake timeout");
    tokio::time::timeout(within, until_closed(&mut loris))
        .await
        .expect("a slow TLS client is closed by the header timeout");
    // And the server still serves.
    let (status, _) = https_add(server.http, client_config(&ca, None))
        .await
        .unwrap();
    assert_eq!(status, 200);
    server.stop().await;
}

/// Reads until the peer closes (or the connection fails).
async fn until_closed(stream: &mut (impl tokio::io::AsyncRead + Unpin)) {
    let mut buf = [0u8; 1024];
    while !matches!(stream.read(&mut buf).await, Ok(0) | Err(_)) {}
}

/// Start-up with `files` on gRPC: the error.
async fn bind_error(files: TlsFiles) -> String {
    let manager = anemone_runtime::Manager::builder()
        .backend(anemone_backends::TractCpu)
        .build()
        .unwrap();
    let options = ServerOptions {
        repository: workspace().join("examples/models"),
        http_port: 0,
        grpc_port: 0,
        tls: TlsOptions {
            http: None,
            grpc: Some(files),
        },
        ..Default::default()
    };
    match Server::bind(options, manager).await {
        Ok(_) => panic!("started with bad TLS files"),
        Err(e) => e,
    }
}

#[tokio::test]
async fn bad_certificate_or_key_files_stop_start_up_with_the_file_named() {
    let ca = Ca::new("files CA");
    let dir = Dir::new("files");
    let good = dir.files(&ca.server(), None);
    let named = |e: &str, path: &Path, flag: &str| {
        assert!(e.contains(&path.display().to_string()), "{e}");
        assert!(e.contains(flag), "{e}");
    };

    // A key file with no key in it.
    let bad_key = dir.write("bad.key", "this is not a key\n");
    let e = bind_error(TlsFiles {
        key: bad_key.clone(),
        ..good.clone()
    })
    .await;
    named(&e, &bad_key, "--key");
    assert!(e.contains("holds no private key"), "{e}");

    // The key of another certificate.
    let other = dir.write("other.key", &ca.server().key);
    let e = bind_error(TlsFiles {
        key: other.clone(),
        ..good.clone()
    })
    .await;
    assert!(e.contains("does not belong to the certificate"), "{e}");
    named(&e, &other, "--key");

    // A certificate file that is missing, or holds a key instead.
    let missing = dir.0.join("missing.pem");
    let e = bind_error(TlsFiles {
        cert: missing.clone(),
        ..good.clone()
    })
    .await;
    named(&e, &missing, "--cert");
    assert!(e.contains("cannot be read"), "{e}");
    // A path that never ends is refused at its bound, not read until memory
    // runs out.
    let endless = std::path::PathBuf::from("/dev/zero");
    let e = bind_error(TlsFiles {
        cert: endless.clone(),
        ..good.clone()
    })
    .await;
    named(&e, &endless, "--cert");
    assert!(e.contains("is larger than 1024 KiB"), "{e}");
    let e = bind_error(TlsFiles {
        cert: good.key.clone(),
        ..good.clone()
    })
    .await;
    named(&e, &good.key, "--cert");
    assert!(e.contains("holds no certificate"), "{e}");

    // A client CA file with no certificate.
    let e = bind_error(TlsFiles {
        client_ca: Some(good.key.clone()),
        ..good.clone()
    })
    .await;
    named(&e, &good.key, "--client-ca");
    assert!(e.contains("holds no certificate"), "{e}");
}
