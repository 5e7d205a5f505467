//! Issue 14: `--http-restricted-api` / `--grpc-restricted-protocol` are
//! checked at start-up: a malformed group stops `anemone serve` with a
//! message that says what is wrong and never repeats the secret value.

use std::process::Command;

fn serve(args: &[&str]) -> std::process::Output {
    let repo =
        std::env::temp_dir().join(format!("anemone-restricted-flags-{}", std::process::id()));
    std::fs::create_dir_all(&repo).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_anemone"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("ANEMONE_") {
            cmd.env_remove(key);
        }
    }
    let out = cmd
        .args([
            "serve",
            "--http-port",
            "0",
            "--grpc-port",
            "0",
            "--model-repository",
        ])
        .arg(&repo)
        .args(args)
        .output()
        .expect("the anemone binary runs");
    let _ = std::fs::remove_dir_all(&repo);
    out
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
