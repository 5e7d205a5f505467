//! Tests of bench/client.rs: URLs, targets and answers checked.

use super::*;

#[test]
fn urls_are_checked() {
    let t = Target::parse(Protocol::Http, "http://127.0.0.1:8000", None).unwrap();
    assert_eq!(
        (t.authority.as_str(), t.base.as_str(), t.url.as_str()),
        ("127.0.0.1:8000", "", "http://127.0.0.1:8000")
    );
    let t = Target::parse(Protocol::Grpc, "localhost:8001/", None).unwrap();
    assert_eq!(
        (t.authority.as_str(), t.url.as_str()),
        ("localhost:8001", "http://localhost:8001")
    );
    let t = Target::parse(Protocol::Http, "http://[::1]/kserve/", None).unwrap();
    assert_eq!(
        (t.authority.as_str(), t.base.as_str()),
        ("[::1]:80", "/kserve")
    );
    assert!(Target::parse(Protocol::Http, "https://h:1", None)
        .unwrap_err()
        .to_string()
        .contains("https"));
    assert!(Target::parse(Protocol::Http, "ftp://h:1", None).is_err());
    assert!(Target::parse(Protocol::Http, "http://", None).is_err());
}

#[test]
fn model_paths_escape_names() {
    assert_eq!(model_path("", "add", None), "/v2/models/add");
    assert_eq!(
        model_path("/p", "a b/c", Some("2")),
        "/p/v2/models/a%20b%2Fc/versions/2"
    );
}

#[test]
fn http_errors_keep_the_servers_message() {
    let f = http_failure(StatusCode::NOT_FOUND, br#"{"error":"unknown model 'q'"}"#);
    assert_eq!(
        (f.status.as_str(), f.message.as_str()),
        ("HTTP 404", "unknown model 'q'")
    );
    assert_eq!(
        http_failure(StatusCode::BAD_GATEWAY, b"upstream down").message,
        "upstream down"
    );
}

#[test]
fn error_chains_skip_what_was_said() {
    #[derive(Debug)]
    struct E(&'static str, Option<Box<E>>);
    impl std::fmt::Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }
    impl std::error::Error for E {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }
    let e = E(
        "transport error",
        Some(Box::new(E(
            "tcp connect error",
            Some(Box::new(E("refused", None))),
        ))),
    );
    assert_eq!(
        error_text(&e),
        "transport error: tcp connect error: refused"
    );
    assert_eq!(
        chain_text("tcp connect error".into(), Some(&e)),
        "tcp connect error: transport error: refused"
    );
}

#[test]
fn a_get_asks_the_server_to_close_its_connection() {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut head = Vec::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line.trim().is_empty() {
                break;
            }
            head.push(line.trim().to_ascii_lowercase());
        }
        let mut stream = stream;
        stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}")
            .unwrap();
        head
    });
    let target = Target::parse(Protocol::Http, &url, None).unwrap();
    let body = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(get(&target, "/v2/models/m".into()))
        .unwrap();
    assert_eq!(&body[..], b"{}");
    let head = server.join().unwrap();
    assert!(head.contains(&"connection: close".to_string()), "{head:?}");
}
