//! A collector that is down: the server keeps answering, says once that
//! spans are being dropped and why, and says so again when the collector is
//! back (and the spans then arrive).

use super::*;

/// The server's stderr lines that contain `needle`.
fn count(served: &Served, needle: &str) -> usize {
    served
        .serving
        .stderr()
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

async fn wait_for(served: &Served, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while count(served, needle) == 0 {
        assert!(
            Instant::now() < deadline,
            "no '{needle}' in the server's log: {}",
            served.serving.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_13_a_collector_that_is_down_is_reported_once_and_requests_still_succeed() {
    let port = port_nothing_listens_on();
    let endpoint = format!("http://127.0.0.1:{port}");
    let repo = repository("down");
    let serving = serve_with_stderr(
        &repo,
        &["--otlp-endpoint", &endpoint],
        "100",
        Stderr::Collect { echo: true },
    );
    let http = serving.http;
    let infer = move |n: u32| {
        tokio::task::spawn_blocking(move || http_infer(http, "add", &id(n, 32), &id(n, 16)))
    };
    for n in 1..=5 {
        assert_eq!(infer(n).await.unwrap(), 200);
    }
    let failed = format!("OTLP export to {endpoint} failed");
    wait_for(&serving, &failed).await;
    // More requests, more failed exports: still one warning.
    for n in 6..=10 {
        assert_eq!(infer(n).await.unwrap(), 200);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert_eq!(count(&serving, &failed), 1, "{}", serving.serving.stderr());
    assert!(
        count(&serving, "check --otlp-endpoint") > 0,
        "the warning says what to check"
    );

    // The collector comes up on that port: spans arrive again, and the log says so.
    let (receiver, _) = Receiver::start_on(&format!("127.0.0.1:{port}")).await;
    let trace_id = id(0xabc, 32);
    let sent = trace_id.clone();
    tokio::task::spawn_blocking(move || http_infer(http, "add", &sent, &id(0xabd, 16)))
        .await
        .unwrap();
    receiver.trace(&trace_id, 1).await;
    wait_for(&serving, &format!("OTLP export to {endpoint} works again")).await;
    drop(serving);
}

/// The same over OTLP/HTTP: a collector URL nothing answers is reported
/// once, naming the URL spans go to, and requests are answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_is_down_over_http_is_reported_and_requests_still_succeed() {
    let port = port_nothing_listens_on();
    let endpoint = format!("http://127.0.0.1:{port}");
    let repo = repository("down-http");
    let serving = serve_with_stderr(
        &repo,
        &[
            "--otlp-protocol",
            "http/protobuf",
            "--otlp-endpoint",
            &endpoint,
        ],
        "100",
        Stderr::Collect { echo: false },
    );
    let http = serving.http;
    for n in 1..=3 {
        let status =
            tokio::task::spawn_blocking(move || http_infer(http, "add", &id(n, 32), &id(n, 16)))
                .await
                .unwrap();
        assert_eq!(status, 200);
    }
    wait_for(
        &serving,
        &format!("OTLP export to {endpoint}/v1/traces failed"),
    )
    .await;
    drop(serving);
}

/// A port that nothing listens on (one just freed), for a collector that
/// is down (or starts later).
fn port_nothing_listens_on() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
