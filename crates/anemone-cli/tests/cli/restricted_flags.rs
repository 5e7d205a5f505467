//! Issue 14: `--http-restricted-api` / `--grpc-restricted-protocol` are
//! checked at start-up: a malformed group stops `anemone serve` with a
//! message that says what is wrong and never repeats the secret value.

use super::*;

fn serve(args: &[&str]) -> Output {
    let repo = temp_dir("restricted-flags");
    let repo = repo.to_str().unwrap();
    let mut all = vec![
        "serve",
        "--http-port",
        "0",
        "--grpc-port",
        "0",
        "--model-repository",
        repo,
    ];
    all.extend_from_slice(args);
    anemone(&all)
}

#[test]
fn issue_14_bad_restriction_groups_stop_the_server_without_revealing_the_value() {
    for (args, says) in [
        (
            ["--http-restricted-api", "repository:admin-key=T0pS3cret"],
            "unknown API 'repository'",
        ),
        (
            ["--grpc-restricted-protocol", "model-repository=T0pS3cret"],
            "no ':'",
        ),
        (
            ["--http-restricted-api", "health,health:k=T0pS3cret"],
            "can not be specified in multiple groups",
        ),
    ] {
        let out = serve(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} started");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(
            !stderr.contains("T0pS3cret"),
            "{args:?} leaked the value: {stderr}"
        );
    }
}
