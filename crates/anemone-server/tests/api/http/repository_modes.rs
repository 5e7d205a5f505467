//! Poll mode: the server follows models added, changed and removed on disk.

use super::*;

/// Poll mode follows the repository on disk: a new model is loaded, a
/// changed config is applied, a removed model is unloaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_mode_follows_the_disk() {
    let repo = TempRepo::new("poll").add();
    let manager = anemone_runtime::Manager::builder()
        .backend(anemone_backends::TractCpu)
        .build()
        .unwrap();
    let options = ServerOptions {
        http_port: 0,
        grpc_port: 0,
        repository: repo.0.to_path_buf(),
        control: ControlMode::Poll,
        poll_interval: Duration::from_millis(100),
        ..Default::default()
    };
    let server = Server::bind(options, manager).await.unwrap();
    let state = server.state();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    let router = anemone_server::http::router(Arc::clone(&state), LIMIT);
    let s = TestServer {
        state,
        router,
        addr: "127.0.0.1:1".parse().unwrap(),
        stop,
        task,
    };
    s.wait_ready(&["add"]).await;

    let repo = repo.fixture("identity", "identity");
    s.wait_for_status("/v2/models/identity/ready", 200).await;

    // A changed config the server must refuse: the reload fails with the field
    // named, and the previous load keeps serving (as in Triton).
    std::fs::write(
        repo.0.join("identity/config.pbtxt"),
        "name: \"identity\"\ndynamic_batching { preferred_batch_size: [ 2 ] }\n",
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let reason = loop {
        let rows = s.post("/v2/repository/index", &[], "").await.json();
        let row = rows
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "identity")
            .cloned()
            .unwrap();
        if let Some(reason) = row["reason"]
            .as_str()
            .filter(|r| r.contains("still serving"))
        {
            assert_eq!(row["state"], "READY", "{row}");
            break reason.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "the bad config was never noticed: {row}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        reason.contains("dynamic_batching") && reason.contains("still serving"),
        "{reason}"
    );
    assert_eq!(s.get("/v2/models/identity/ready").await.status, 200);

    // An entirely new model with a bad config is unavailable, with the reason.
    let repo = repo.fixture("strict", "identity");
    std::fs::write(
        repo.0.join("strict/config.pbtxt"),
        "name: \"strict\"\nruntime: \"libmodel.so\"\n",
    )
    .unwrap();
    let rows = s.wait_index(&[("strict", "UNAVAILABLE")]).await;
    let reason = rows.iter().find(|r| r["name"] == "strict").unwrap()["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(reason.contains("'runtime'"), "{reason}");

    std::fs::remove_dir_all(repo.0.join("identity")).unwrap();
    s.wait_for_status("/v2/models/identity/ready", 404).await;
    assert_eq!(
        s.get("/v2/models/add/ready").await.status,
        200,
        "the other model never stopped serving"
    );
    let r = s.post("/v2/repository/models/add/unload", &[], "").await;
    assert_eq!(r.status, 503, "poll mode refuses the load/unload API");
    s.shutdown().await;
}
