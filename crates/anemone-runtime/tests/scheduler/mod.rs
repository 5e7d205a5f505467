//! The scheduler (issue 10): per-model queues with priorities, timeouts and
//! refusals, dynamic batching, instance groups and cancelled clients, with a
//! test-double backend that records every engine call, and dynamic batching
//! on the real engines checked against ONNX Runtime's Python references.

use crate::support::{assert_close, Case};
use anemone_backends::{OnnxRuntime, TractCpu};
use anemone_core::{
    Backend, DataType, Dim, ErrorKind, LoadOptions, LoadedModel, ModelFormat, ModelMetadata,
    Parameter, RequestView, Tensor, TensorSpec,
};
use anemone_runtime::{
    Batching, InferRequest, InstanceGroup, Manager, ModelSpec, QueuePolicy, QueueSettings,
    TimeoutAction,
};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

mod adopt;
mod decoupled;
mod double;
mod instances;
mod iterative;
mod ragged;
mod rate_limit;
mod sequences;

use double::*;

#[test]
fn batched_requests_get_exactly_their_rows_and_differing_shapes_never_mix() {
    let (m, log) = rows_manager();
    m.load_model_blocking(spec("b").max_batch_size(8).batching(Batching::default()))
        .unwrap();
    log.close();
    let first = send(&m, request("b", 100.0, 1, 2));
    log.wait_for_calls(1);
    // While the engine is stuck, three width-2 and two width-3 requests queue.
    let mut waiting = Vec::new();
    for (i, (rows, width)) in [(1, 2), (2, 3), (2, 2), (1, 3), (1, 2)].iter().enumerate() {
        waiting.push((
            *rows,
            *width,
            10.0 * (i + 1) as f32,
            send(&m, request("b", 10.0 * (i + 1) as f32, *rows, *width)),
        ));
        wait_queued(&m, "b", i + 1);
    }
    log.open();
    assert_eq!(first.join().unwrap().unwrap().shape(), &[1, 2]);
    for (rows, width, start, handle) in waiting {
        let y = handle.join().unwrap().unwrap();
        assert_eq!(y.shape(), &[rows, width]);
        let want: Vec<f32> = (0..rows)
            .flat_map(|r| (0..width).map(move |c| 2.0 * (start + r as f32 + c as f32 / 100.0)))
            .collect();
        assert_eq!(y.to_vec::<f32>().unwrap(), want, "rows starting at {start}");
    }
    // One call for the stuck request, then one per width, in queue order.
    let calls: Vec<(Vec<f32>, usize)> = log
        .calls
        .lock()
        .unwrap()
        .iter()
        .map(|c| (c.1.clone(), c.2))
        .collect();
    assert_eq!(
        calls,
        vec![
            (vec![100.0], 2),
            (vec![10.0, 30.0, 31.0, 50.0], 2),
            (vec![20.0, 21.0, 40.0], 3),
        ]
    );
    let stats = m.metrics().model("b").unwrap().metrics.clone();
    assert_eq!((stats.execution_count, stats.success), (3, 6));
}

#[test]
fn an_engine_answering_each_request_gets_ids_and_parameters_and_fails_only_the_bad_one() {
    let (m, log) = rows_manager();
    log.each.store(true, std::sync::atomic::Ordering::Relaxed);
    m.load_model_blocking(spec("e").max_batch_size(8).batching(Batching::default()))
        .unwrap();
    log.close();
    let first = send(&m, request("e", 100.0, 1, 2).id("first"));
    log.wait_for_calls(1);
    *log.poison.lock().unwrap() = Some(20.0);
    let asked = [
        request("e", 10.0, 2, 2)
            .id("a")
            .parameter("k", Parameter::Int(1)),
        request("e", 20.0, 1, 2).id("b"),
        request("e", 30.0, 1, 2)
            .parameter("s", Parameter::String("t".into()))
            .parameter("on", Parameter::Bool(true)),
    ];
    let mut waiting = Vec::new();
    for (i, r) in asked.into_iter().enumerate() {
        waiting.push(send(&m, r));
        wait_queued(&m, "e", i + 1);
    }
    log.open();
    assert_eq!(
        first.join().unwrap().unwrap().to_vec::<f32>().unwrap(),
        [200.0, 200.02]
    );
    let answers: Vec<_> = waiting.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(
        answers[0].as_ref().unwrap().to_vec::<f32>().unwrap(),
        [20.0, 20.02, 22.0, 22.02]
    );
    let e = answers[1].as_ref().unwrap_err();
    assert!(e.to_string().contains("a request starts with 20"), "{e}");
    assert_eq!(
        answers[2].as_ref().unwrap().to_vec::<f32>().unwrap(),
        [60.0, 60.02]
    );
    // The three queued requests ran in one call, and none ran again.
    assert_eq!(log.rows(), vec![vec![100.0], vec![10.0, 11.0, 20.0, 30.0]]);
    let seen = log.requests.lock().unwrap().clone();
    let ids: Vec<Option<&str>> = seen.iter().map(|(id, _)| id.as_deref()).collect();
    assert_eq!(ids, [Some("first"), Some("a"), Some("b"), None]);
    assert_eq!(seen[1].1, [("k".to_string(), Parameter::Int(1))]);
    assert!(seen[2].1.is_empty());
    assert_eq!(
        seen[3].1,
        [
            ("s".to_string(), Parameter::String("t".into())),
            ("on".to_string(), Parameter::Bool(true))
        ]
    );
    let stats = m.metrics().model("e").unwrap().metrics.clone();
    assert_eq!((stats.execution_count, stats.success), (2, 3));
}

#[test]
fn a_full_queue_refuses_at_once_and_nothing_else_fails() {
    let (m, log) = rows_manager();
    m.load_model_blocking(spec("q").queue(queue_of(Some(2))))
        .unwrap();
    log.close();
    let running = send(&m, request("q", 1.0, 1, 1));
    log.wait_for_calls(1);
    // One at a time: two threads sending at once may enqueue in either order.
    let first = send(&m, request("q", 2.0, 1, 1));
    wait_queued(&m, "q", 1);
    let queued = [first, send(&m, request("q", 3.0, 1, 1))];
    wait_queued(&m, "q", 2);
    let refused_at = Instant::now();
    let e = m.infer_blocking(request("q", 4.0, 1, 1)).unwrap_err();
    assert!(
        refused_at.elapsed() < Duration::from_secs(5),
        "refused at once"
    );
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    let text = e.to_string();
    assert!(
        text.contains("queue") && text.contains("full") && text.contains("max_queue_size"),
        "{text}"
    );
    log.open();
    assert!(running.join().unwrap().is_ok());
    for q in queued {
        assert!(q.join().unwrap().is_ok());
    }
    assert_eq!(
        log.rows(),
        vec![vec![1.0], vec![2.0], vec![3.0]],
        "the refused one never ran"
    );
    let stats = m.metrics().model("q").unwrap().metrics.clone();
    assert_eq!((stats.success, stats.failure_count()), (3, 1));
    assert_eq!(
        stats.request_failure.count, 0,
        "a full queue's refusal is counted by reason, not as a failed inference"
    );
}

#[test]
fn higher_priority_requests_overtake_the_backlog() {
    let (m, log) = rows_manager();
    let settings = QueueSettings {
        priority_levels: 3,
        default_priority: 3,
        ..QueueSettings::default()
    };
    m.load_model_blocking(spec("p").queue(settings)).unwrap();
    log.close();
    let running = send(&m, request("p", 0.0, 1, 1));
    log.wait_for_calls(1);
    let mut handles = Vec::new();
    for (i, priority) in [0, 3, 2, 1, 2].into_iter().enumerate() {
        handles.push(send(
            &m,
            request("p", (i + 1) as f32, 1, 1).priority(priority),
        ));
        wait_queued(&m, "p", i + 1);
    }
    log.open();
    assert!(running.join().unwrap().is_ok());
    for h in handles {
        assert!(h.join().unwrap().is_ok());
    }
    // Level 1 first, then 2 in arrival order, then 3 (0 means the default, 3).
    let order: Vec<f32> = log.rows().into_iter().map(|r| r[0]).collect();
    assert_eq!(order, vec![0.0, 4.0, 3.0, 5.0, 1.0, 2.0]);
}

#[test]
fn preserve_ordering_holds_an_answer_until_earlier_requests_are_answered() {
    let (m, log) = rows_manager();
    let settings = QueueSettings {
        priority_levels: 3,
        default_priority: 3,
        ..QueueSettings::default()
    };
    let batching = Batching {
        preserve_ordering: true,
        ..Batching::default()
    };
    m.load_model_blocking(
        spec("o")
            .max_batch_size(8)
            .batching(batching)
            .queue(settings),
    )
    .unwrap();
    log.close();
    let running = send(&m, request("o", 0.0, 1, 1));
    log.wait_for_calls(1);
    // The earlier request will be held inside the engine; the later one has
    // a higher priority (and another width, so they never share a batch).
    log.hold(1.0);
    let early = send(&m, request("o", 1.0, 1, 1));
    wait_queued(&m, "o", 1);
    let late = send(&m, request("o", 2.0, 1, 2).priority(1));
    wait_queued(&m, "o", 2);
    log.open();
    assert!(running.join().unwrap().is_ok());
    // The later request ran first and is done; the earlier one is in the engine.
    log.wait_for_calls(3);
    assert_eq!(log.rows(), vec![vec![0.0], vec![2.0], vec![1.0]]);
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !late.is_finished(),
        "the later request was answered before the earlier one"
    );
    log.release();
    assert_eq!(
        early.join().unwrap().unwrap().to_vec::<f32>().unwrap(),
        [2.0]
    );
    assert_eq!(
        late.join().unwrap().unwrap().to_vec::<f32>().unwrap(),
        [4.0, 4.02]
    );
}

#[test]
fn a_request_timed_out_in_the_queue_fails_and_never_runs() {
    let (m, log) = rows_manager();
    let mut settings = queue_of(None);
    settings.default_policy.default_timeout = Some(Duration::from_millis(30));
    settings.default_policy.timeout_action = TimeoutAction::Reject;
    m.load_model_blocking(spec("t").queue(settings)).unwrap();
    log.close();
    let running = send(&m, request("t", 1.0, 1, 1));
    log.wait_for_calls(1);
    let late = send(&m, request("t", 2.0, 1, 1));
    let e = late.join().unwrap().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    log.open();
    assert!(running.join().unwrap().is_ok());
    assert!(m.infer_blocking(request("t", 3.0, 1, 1)).is_ok());
    assert_eq!(
        log.rows(),
        vec![vec![1.0], vec![3.0]],
        "the timed-out request never ran"
    );
    let stats = m.metrics().model("t").unwrap().metrics.clone();
    assert_eq!(stats.failures_of(ErrorKind::Timeout), 1);
}

#[test]
fn a_request_whose_timeout_has_run_out_is_refused_on_every_path_and_never_runs() {
    let (m, log) = rows_manager();
    m.load_model_blocking(spec("plain")).unwrap();
    m.load_model_blocking(spec("queued").queue(queue_of(None)))
        .unwrap();
    m.load_model_blocking(
        spec("batched")
            .max_batch_size(8)
            .batching(Batching::default()),
    )
    .unwrap();
    let rt = crate::support::runtime();
    // Enough fast calls that "plain" runs inline on the async path.
    for i in 0..anemone_runtime::INLINE_AFTER_RUNS + 5 {
        rt.block_on(m.infer(request("plain", i as f32, 1, 1)))
            .unwrap();
    }
    let ran = log.calls.lock().unwrap().len();
    let gone = Duration::from_nanos(1);
    for model in ["plain", "queued", "batched"] {
        let r = || request(model, -1.0, 1, 1).timeout(gone);
        let e = rt.block_on(m.infer(r())).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout, "{model}, async: {e}");
        let e = m.infer_blocking(r()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout, "{model}, blocking: {e}");
        let stats = m.metrics().model(model).unwrap().metrics.clone();
        assert_eq!(stats.failures_of(ErrorKind::Timeout), 2, "{model}");
        // A timeout with room left is answered.
        let ok = request(model, 7.0, 1, 1).timeout(Duration::from_secs(10));
        assert!(rt.block_on(m.infer(ok)).is_ok(), "{model}");
    }
    let rows: Vec<Vec<f32>> = log.rows().split_off(ran);
    assert_eq!(
        rows,
        vec![vec![7.0]; 3],
        "a timed-out request reached an engine"
    );
}

#[test]
fn a_cancelled_clients_request_is_never_run() {
    let (m, log) = rows_manager();
    m.load_model_blocking(spec("c").queue(queue_of(None)))
        .unwrap();
    let rt = crate::support::runtime();
    log.close();
    let running = rt.spawn({
        let m = m.clone();
        async move { m.infer(request("c", 1.0, 1, 1)).await.is_ok() }
    });
    log.wait_for_calls(1);
    let gone = rt.spawn({
        let m = m.clone();
        async move { m.infer(request("c", 2.0, 1, 1)).await.is_ok() }
    });
    wait_queued(&m, "c", 1);
    gone.abort(); // the client goes away (an HTTP connection closed, a gRPC call cancelled)
    let _ = rt.block_on(gone);
    log.open();
    assert!(rt.block_on(running).unwrap());
    let still = rt.block_on(m.infer(request("c", 3.0, 1, 1)));
    assert!(still.is_ok());
    assert_eq!(log.rows(), vec![vec![1.0], vec![3.0]], "engine calls");
    assert_eq!(
        m.model("c", None).unwrap().in_flight(),
        0,
        "its permits were given back"
    );
}

/// Triton's dynamic batcher on a model with `max_batch_size: 0`: a queue,
/// one request an engine call whatever the delay (a first dimension that is
/// not rows is never concatenated, even empty ones that would fit in one);
/// preferred sizes need rows.
#[test]
fn batching_without_a_batch_dimension_queues_one_request_a_call() {
    let (m, log) = rows_manager();
    let batching = Batching {
        max_queue_delay: Duration::from_secs(30),
        ..Batching::default()
    };
    m.load_model_blocking(spec("n").batching(batching)).unwrap();
    log.close();
    let first = send(&m, request("n", 100.0, 1, 2));
    log.wait_for_calls(1);
    let mut waiting = Vec::new();
    for (i, rows) in [2, 0, 0, 1].into_iter().enumerate() {
        waiting.push(send(&m, request("n", 10.0 * (i + 1) as f32, rows, 2)));
        wait_queued(&m, "n", i + 1);
    }
    log.open();
    assert!(first.join().unwrap().is_ok());
    for handle in waiting {
        assert!(handle.join().unwrap().is_ok());
    }
    let calls: Vec<Vec<f32>> = log
        .calls
        .lock()
        .unwrap()
        .iter()
        .map(|c| c.1.clone())
        .collect();
    assert_eq!(
        calls,
        vec![vec![100.0], vec![10.0, 11.0], vec![], vec![], vec![40.0]]
    );
    let preferred = Batching {
        preferred_batch_sizes: vec![2],
        ..Batching::default()
    };
    let e = m
        .load_model_blocking(spec("p").batching(preferred))
        .unwrap_err();
    assert!(e.to_string().contains("needs a batch dimension"), "{e}");
}

/// Dynamic batching on the real engines: requests cut from ONNX Runtime
/// reference runs, sent by many threads at once, each get exactly the rows
/// ONNX Runtime's Python API computed for them.
#[test]
fn batched_rows_equal_onnxruntime_references_under_concurrency() {
    let case = Case::load("dynamic_batch");
    let mut backends: Vec<Arc<dyn Backend>> = vec![Arc::new(TractCpu)];
    if OnnxRuntime.probe().is_available() {
        backends.push(Arc::new(OnnxRuntime));
    }
    for backend in backends {
        let name = backend.name();
        let m = Manager::builder()
            .backends([backend])
            .workers(2)
            .build()
            .unwrap();
        m.load_model_blocking(
            ModelSpec::new("mlp", case.model_path())
                .max_batch_size(8)
                .batching(Batching {
                    max_queue_delay: Duration::from_millis(20),
                    ..Batching::default()
                }),
        )
        .unwrap();
        // Each row of each reference run becomes a request of its own.
        let mut requests = Vec::new();
        for run in &case.runs {
            let (x, y) = (
                case.tensor(&run.inputs[0].file),
                case.tensor(&run.outputs[0].file),
            );
            let (xs, ys) = (x.to_vec::<f32>().unwrap(), y.to_vec::<f32>().unwrap());
            let (xrow, yrow) = (xs.len() / x.shape()[0], ys.len() / y.shape()[0]);
            for r in 0..x.shape()[0] {
                let mut xshape = x.shape().to_vec();
                let mut yshape = y.shape().to_vec();
                xshape[0] = 1;
                yshape[0] = 1;
                let xt = Tensor::from_vec(xshape, xs[r * xrow..(r + 1) * xrow].to_vec()).unwrap();
                let yt = Tensor::from_vec(yshape, ys[r * yrow..(r + 1) * yrow].to_vec()).unwrap();
                requests.push((xt, yt));
            }
        }
        let requests = Arc::new(requests);
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let (m, requests) = (m.clone(), requests.clone());
                std::thread::spawn(move || {
                    for round in 0..6 {
                        let (x, want) = &requests[(t + round) % requests.len()];
                        let got = m
                            .infer_blocking(InferRequest::new("mlp").input("x", x.clone()))
                            .unwrap();
                        assert_close("batched row", got.output("y").unwrap(), want, 1e-4, 1e-5);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let stats = m.metrics().model("mlp").unwrap().metrics.clone();
        assert_eq!(stats.success, 48, "{name}");
        assert!(
            stats.execution_count < stats.success,
            "{name}: requests were batched ({} engine calls for {} requests)",
            stats.execution_count,
            stats.success
        );
    }
}

/// Triton's rule for preferred sizes, checked against tritonserver 2.51
/// (docs/SERVING.md): with `preferred_batch_size: [2]`, three requests queued
/// behind a running batch run as two at once and the third alone once its
/// delay has passed. (A rule that waits until the whole queue adds up to a
/// preferred size ran all three together after the delay.)
#[test]
fn the_largest_preferred_batch_the_queue_can_form_runs_and_the_rest_waits() {
    let (m, log) = rows_manager();
    m.load_model_blocking(spec("pref").max_batch_size(8).batching(Batching {
        preferred_batch_sizes: vec![2],
        max_queue_delay: Duration::from_secs(1),
        ..Batching::default()
    }))
    .unwrap();
    log.close();
    // One at a time, each queued before the next: queue order is fixed.
    let mut handles = Vec::new();
    handles.push(send(&m, request("pref", 0.0, 1, 1)));
    wait_queued(&m, "pref", 1);
    handles.push(send(&m, request("pref", 1.0, 1, 1)));
    log.wait_for_calls(1);
    for (n, v) in [2.0, 3.0, 4.0].into_iter().enumerate() {
        handles.push(send(&m, request("pref", v, 1, 1)));
        wait_queued(&m, "pref", n + 1);
    }
    log.open();
    for h in handles {
        assert!(h.join().unwrap().is_ok());
    }
    let mut calls = log.rows();
    for c in &mut calls {
        c.sort_by(f32::total_cmp);
    }
    assert_eq!(
        calls,
        vec![vec![0.0, 1.0], vec![2.0, 3.0], vec![4.0]],
        "engine calls and the rows each ran"
    );
}
