//! Tests of `error.rs`.
use super::*;

#[test]
fn kinds_and_retryability() {
    let overloaded = Error::Overloaded {
        limit: "global concurrency limit".into(),
        in_use: 4,
        capacity: 4,
    };
    assert_eq!(overloaded.kind(), ErrorKind::Overloaded);
    assert!(overloaded.retryable());
    let input = Error::from(InputError::Duplicate { name: "x".into() });
    assert_eq!(input.kind(), ErrorKind::InvalidInput);
    assert!(!input.retryable());
    assert_eq!(
        Error::Timeout(Duration::from_millis(5)).kind(),
        ErrorKind::Timeout
    );
    assert!(!Error::Internal("x".into()).retryable());
}

#[test]
fn kind_indices_match_all() {
    for (i, k) in ErrorKind::ALL.iter().enumerate() {
        assert_eq!(k.index(), i);
    }
}

#[test]
fn source_chain_is_kept() {
    let io = std::io::Error::new(std::io::ErrorKind::InvalidData, "bad magic");
    let err = Error::InvalidModel {
        path: "m.onnx".into(),
        reason: "not a protobuf".into(),
        source: Some(io.into()),
    };
    assert!(std::error::Error::source(&err).is_some());
    assert_eq!(
        err.chain_string(),
        "cannot load m.onnx: not a protobuf: bad magic"
    );
}

#[test]
fn not_found_lists_loaded_models() {
    let err = Error::ModelNotFound {
        name: "a".into(),
        version: Some(2),
        loaded: vec!["b".into()],
    };
    assert_eq!(
        err.to_string(),
        "Request for unknown model: 'a' version 2 is not found; loaded: b"
    );
}
