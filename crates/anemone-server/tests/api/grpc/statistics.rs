//! ModelStatistics: successes are counted; refused requests are not failures.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statistics_count_successes_and_not_refusals() {
    let server = TestServer::start(examples(), ControlMode::None).await;
    let mut c = server.ready_client().await;
    for _ in 0..3 {
        c.model_infer(add_raw(&X[..4], &Y[..4])).await.unwrap();
    }
    let mut wrong = add_raw(&X, &Y);
    wrong.inputs[0].shape = vec![1, 8]; // right byte count, wrong shape: refused by the model
    assert_eq!(
        c.model_infer(wrong).await.unwrap_err().code(),
        Code::InvalidArgument
    );

    let stats = c
        .model_statistics(proto::ModelStatisticsRequest {
            name: "add".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stats.model_stats.len(), 1);
    let s = &stats.model_stats[0];
    assert_eq!((s.name.as_str(), s.version.as_str()), ("add", "1"));
    // The refused request reached no engine: 3 executions of batch size 1.
    assert_eq!((s.inference_count, s.execution_count), (3, 3));
    assert_eq!(s.batch_stats.len(), 1, "{:?}", s.batch_stats);
    let b = &s.batch_stats[0];
    assert_eq!(b.batch_size, 1);
    for d in [b.compute_input, b.compute_infer, b.compute_output] {
        assert_eq!(d.unwrap().count, 3, "{b:?}");
    }
    assert!(b.compute_infer.unwrap().ns > 0);
    assert!(s.last_inference > 0);
    let i = s.inference_stats.as_ref().unwrap();
    assert_eq!(i.success.unwrap().count, 3);
    // Refused before the queue: not a failed inference, as in tritonserver
    // 2.51 (scripts/triton_peer/batch_stats.py); Prometheus counts it by reason.
    assert_eq!(i.fail.unwrap().count, 0);
    assert!(i.compute_infer.unwrap().ns > 0);
    assert_eq!(
        i.queue.unwrap().count,
        3,
        "queue time per successful request"
    );

    let e = c
        .model_statistics(proto::ModelStatisticsRequest {
            name: "nope".into(),
            version: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    server.stop().await;
}
