//! A collector over TLS with an API key, as managed tracing services are
//! reached: `--otlp-endpoint https://...` over OTLP/HTTP and OTLP/gRPC,
//! `--otlp-ca-cert` trusting the collector's own certificate, and
//! `--otlp-header` sent with every export (gRPC metadata). Without the CA
//! the certificate is refused: nothing is exported, the server says so,
//! and requests are still answered.

use super::*;

/// A self-signed certificate for `localhost`, and its key (PEM), in `dir`.
fn certificate(dir: &Path) -> (String, String, PathBuf) {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert, key) = (made.cert.pem(), made.signing_key.serialize_pem());
    let path = dir.join("collector.pem");
    std::fs::write(&path, &cert).unwrap();
    (cert, key, path)
}

async fn traced_request(served: &Served, n: u32) -> String {
    let (trace_id, http) = (id(n, 32), served.http);
    let sent = trace_id.clone();
    let status = tokio::task::spawn_blocking(move || http_infer(http, "add", &sent, &id(n, 16)))
        .await
        .unwrap();
    assert_eq!(status, 200);
    trace_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_go_over_tls_with_the_api_key_over_http_and_grpc() {
    let dir = common::temp_dir::TempDir::new("otlp-tls");
    let (cert, key, ca) = certificate(&dir);
    let ca = ca.to_str().unwrap();
    for (n, protocol) in [(0x71, "http/protobuf"), (0x72, "grpc")] {
        let (receiver, addr) = match protocol {
            "grpc" => Receiver::start_tls(&cert, &key).await,
            _ => Receiver::start_https(&cert, &key).await,
        };
        let endpoint = format!("https://localhost:{}", addr.port());
        let repo = repository(&format!("tls-{n}"));
        let served = serve(
            &repo,
            &[
                "--otlp-endpoint",
                &endpoint,
                "--otlp-protocol",
                protocol,
                "--otlp-ca-cert",
                ca,
                "--otlp-header",
                "X-Api-Key=s3cret",
            ],
        );
        let trace_id = traced_request(&served, n).await;
        let spans = receiver.trace(&trace_id, 4).await;
        assert!(
            spans.iter().any(|s| s.name == "compute_infer"),
            "{protocol}: {spans:#?}"
        );
        let keys = receiver.api_keys();
        assert!(
            !keys.is_empty() && keys.iter().all(|k| k == "s3cret"),
            "{protocol}: {keys:?}"
        );
        drop(served);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_certificate_nobody_vouches_for_is_refused() {
    let dir = common::temp_dir::TempDir::new("otlp-tls-refused");
    let (cert, key, _) = certificate(&dir);
    let (receiver, addr) = Receiver::start_https(&cert, &key).await;
    let endpoint = format!("https://localhost:{}/v1/traces", addr.port());
    let repo = repository("tls-refused");
    let served = serve_with_stderr(
        &repo,
        &[
            "--otlp-endpoint",
            &endpoint,
            "--otlp-protocol",
            "http/protobuf",
        ],
        "100",
        Stderr::Collect { echo: true },
    );
    // Answered while no span can go.
    traced_request(&served, 0x73).await;
    let failed = format!("OTLP export to {endpoint} failed");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !served.serving.stderr().contains(&failed) {
        assert!(
            Instant::now() < deadline,
            "no '{failed}': {}",
            served.serving.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        served.serving.stderr().contains("certificate"),
        "the warning names the certificate: {}",
        served.serving.stderr()
    );
    assert!(
        receiver.all().is_empty(),
        "a span crossed an unverified TLS connection"
    );
    drop(served);
}

#[test]
fn tls_flags_that_cannot_work_stop_the_server() {
    let repo = repository("tls-flags");
    for (args, says) in [
        (
            vec![
                "--otlp-endpoint",
                "http://127.0.0.1:9",
                "--otlp-ca-cert",
                "/etc/hostname",
            ],
            "--otlp-ca-cert is for an https:// collector",
        ),
        (
            vec![
                "--otlp-endpoint",
                "https://127.0.0.1:9",
                "--otlp-ca-cert",
                "/nonexistent.pem",
            ],
            "cannot read it",
        ),
        (
            vec![
                "--otlp-endpoint",
                "https://127.0.0.1:9",
                "--otlp-ca-cert",
                "/etc/hostname",
            ],
            "holds no PEM certificate",
        ),
        // A path that never ends, refused at once.
        (
            vec![
                "--otlp-endpoint",
                "https://127.0.0.1:9",
                "--otlp-ca-cert",
                "/dev/zero",
            ],
            "is not a regular file",
        ),
        (
            vec![
                "--otlp-endpoint",
                "http://127.0.0.1:9",
                "--otlp-header",
                "novalue",
            ],
            "expected KEY=VALUE",
        ),
        (
            vec![
                "--otlp-endpoint",
                "http://127.0.0.1:9",
                "--otlp-header",
                "bad key=1",
            ],
            "not a header name",
        ),
    ] {
        // A header that is not KEY=VALUE, or not a header, is a flag
        // mistake (exit 2); the files are read when the exporter is built (1).
        let status = if args.contains(&"--otlp-header") {
            2
        } else {
            1
        };
        refused(&repo, &args, says, status);
    }
}
