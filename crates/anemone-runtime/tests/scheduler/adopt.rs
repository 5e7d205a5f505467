//! Inputs an engine adopts (`LoadedModel::adopt_input`, tract-cuda's copy
//! into page-locked memory) are handed over as the request goes to the
//! scheduler, before it waits, and the engine then runs on the adopted copy.

use super::*;

/// Requests through a queue, one at a time, each of its own values.
fn run_each(m: &Manager, model: &str, n: usize) {
    let handles: Vec<_> = (0..n)
        .map(|i| (i, send(m, request(model, 10.0 * i as f32, 2, 3))))
        .collect();
    for (i, h) in handles {
        let y = h.join().unwrap().unwrap();
        let want: Vec<f32> = (0..2)
            .flat_map(|r| {
                (0..3).map(move |c| 2.0 * (10.0 * i as f32 + r as f32 + c as f32 / 100.0))
            })
            .collect();
        assert_eq!(y.to_vec::<f32>().unwrap(), want, "request {i}");
    }
}

#[test]
fn queued_requests_run_on_the_inputs_their_engine_adopted() {
    let (m, log) = rows_manager();
    *log.adopt.lock().unwrap() = true;
    m.load_model_blocking(spec("q").queue(queue_of(None)))
        .unwrap();
    run_each(&m, "q", 6);
    let adopted = log.adopted.lock().unwrap().clone();
    let seen = log.seen.lock().unwrap().clone();
    assert_eq!(adopted.len(), 6, "one adoption per request");
    assert_eq!(seen.len(), 6, "one engine call per request");
    for address in &seen {
        assert!(
            adopted.contains(address),
            "the engine ran on an input it had not adopted"
        );
    }
}

#[test]
fn batched_requests_are_adopted_one_by_one_before_they_are_stacked() {
    let (m, log) = rows_manager();
    *log.adopt.lock().unwrap() = true;
    m.load_model_blocking(spec("b").max_batch_size(8).batching(Batching::default()))
        .unwrap();
    run_each(&m, "b", 6);
    assert_eq!(log.adopted.lock().unwrap().len(), 6);
}

/// A panic in an engine's `adopt_input` (a bug in the engine) costs the
/// request nothing: it runs on its own inputs, on both paths, and the
/// server goes on.
#[test]
fn an_adoption_that_panics_leaves_the_request_its_own_inputs() {
    let (m, log) = rows_manager();
    log.adopt_panics
        .store(true, std::sync::atomic::Ordering::Relaxed);
    m.load_model_blocking(spec("q").queue(queue_of(None)))
        .unwrap();
    m.load_model_blocking(spec("b").max_batch_size(8).batching(Batching::default()))
        .unwrap();
    run_each(&m, "q", 3);
    run_each(&m, "b", 3);
    let y = crate::support::runtime()
        .block_on(m.infer(request("q", 5.0, 2, 3)))
        .unwrap();
    assert_eq!(y.output("y").unwrap().to_vec::<f32>().unwrap()[0], 10.0);
    assert!(log.adopted.lock().unwrap().is_empty());
    let stats = m.metrics().model("q").unwrap().metrics.clone();
    assert_eq!((stats.success, stats.failure_count()), (4, 0));
}

#[test]
fn an_engine_that_adopts_nothing_runs_on_the_requests_own_inputs() {
    let (m, log) = rows_manager();
    m.load_model_blocking(spec("q").queue(queue_of(None)))
        .unwrap();
    let x = request("q", 1.0, 2, 3);
    let sent = address(&x.inputs[0].1);
    let y = m.infer_blocking(x).unwrap();
    assert_eq!(y.output("y").unwrap().shape(), &[2, 3]);
    assert!(log.adopted.lock().unwrap().is_empty());
    assert_eq!(*log.seen.lock().unwrap(), vec![sent], "no copy on the way");
}
