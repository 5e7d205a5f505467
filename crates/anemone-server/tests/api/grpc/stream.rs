//! ModelStreamInfer: every request is answered, and the stream survives
//! requests that fail.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_answers_every_request_and_survives_errors() {
    let server = TestServer::start(examples(), ControlMode::None).await;
    let mut c = server.ready_client().await;

    let mut requests = Vec::new();
    for i in 0..6 {
        let x: Vec<f32> = X[..4].iter().map(|v| v + i as f32).collect();
        let mut r = if i % 2 == 0 {
            add_raw(&x, &Y[..4])
        } else {
            add_typed(&x, &Y[..4])
        };
        r.id = format!("s{i}");
        if i == 2 {
            r.inputs[0].shape = vec![1, 5]; // 16 bytes cannot fill [1, 5]
        }
        if i == 4 {
            r.model_name = "nope".into();
        }
        requests.push(r);
    }
    let mut responses = c
        .model_stream_infer(tokio_stream::iter(requests))
        .await
        .unwrap()
        .into_inner();
    let mut seen = Vec::new();
    while let Some(message) = responses.message().await.unwrap() {
        let r = message
            .infer_response
            .expect("every answer carries infer_response, at least with the id");
        let i: usize = r.id.trim_start_matches('s').parse().unwrap();
        match i {
            2 => assert!(
                message.error_message.contains("input 'x'"),
                "{}",
                message.error_message
            ),
            4 => assert!(
                message.error_message.contains("nope"),
                "{}",
                message.error_message
            ),
            _ => {
                assert_eq!(message.error_message, "", "request {i}");
                let x: Vec<f32> = X[..4].iter().map(|v| v + i as f32).collect();
                assert_eq!(
                    f32s(output(&r, "sum").1),
                    zip(&x, &Y[..4], |a, b| a + b),
                    "request {i}"
                );
            }
        }
        seen.push(i);
    }
    assert_eq!(
        seen,
        [0, 1, 2, 3, 4, 5],
        "one answer per request, in request order"
    );

    // A stream with a bad request first still serves the next one.
    let mut bad = add_raw(&X[..4], &Y[..4]);
    bad.raw_input_contents.pop();
    bad.id = "bad".into();
    let mut good = add_raw(&X[..4], &Y[..4]);
    good.id = "good".into();
    let mut responses = stream_error_then_ok(&mut c, bad, good, "raw_input_contents").await;
    assert!(responses.message().await.unwrap().is_none());

    server.stop().await;
}
