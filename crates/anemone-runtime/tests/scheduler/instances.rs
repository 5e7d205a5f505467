//! Instance groups: load spread across engines, and how many requests an
//! instance runs at once with and without a queue (docs/SERVING.md,
//! "Queue, batching and instances").

use super::*;

#[test]
fn instance_groups_spread_load_across_their_engines() {
    let (m, log) = rows_manager();
    *log.sleep_ms.lock().unwrap() = 20;
    let instance = m
        .load_model_blocking(spec("g").instance_group(InstanceGroup::new(3)))
        .unwrap();
    assert_eq!(*log.loads.lock().unwrap(), 3, "one engine per instance");
    let handles: Vec<_> = (0..12)
        .map(|i| send(&m, request("g", i as f32, 1, 1)))
        .collect();
    for h in handles {
        assert!(h.join().unwrap().is_ok());
    }
    let mut per_engine = [0usize; 3];
    for (id, ..) in log.calls.lock().unwrap().iter() {
        per_engine[*id] += 1;
    }
    assert!(
        per_engine.iter().all(|n| *n >= 2),
        "calls per engine: {per_engine:?}"
    );
    let stats: Vec<u64> = instance.instances().iter().map(|s| s.executions).collect();
    assert_eq!(
        stats,
        per_engine.map(|n| n as u64).to_vec(),
        "per-instance counters agree"
    );
}

/// Sends `n` one-row requests to `model` at once and returns the most
/// engine calls that ran at the same time.
fn most_at_once(m: &Manager, log: &Log, model: &str, n: usize) -> usize {
    *log.running.lock().unwrap() = (0, 0);
    let handles: Vec<_> = (0..n)
        .map(|i| send(m, request(model, i as f32, 1, 1)))
        .collect();
    for h in handles {
        assert!(h.join().unwrap().is_ok());
    }
    log.running.lock().unwrap().1
}

/// Without a queue an instance takes requests from several workers at once
/// (anemone's engines are thread-safe); with a queue whose batches hold one
/// row it runs one at a time, as a Triton instance does.
#[test]
fn an_instance_runs_one_request_at_a_time_only_behind_a_queue() {
    let (m, log) = rows_manager();
    *log.sleep_ms.lock().unwrap() = 30;
    m.load_model_blocking(spec("direct").instance_group(InstanceGroup::new(2)))
        .unwrap();
    let direct = most_at_once(&m, &log, "direct", 8);
    assert!(
        direct > 2,
        "without a queue, 4 workers should overlap calls on 2 instances; at most {direct} ran at once"
    );
    m.load_model_blocking(
        spec("queued")
            .max_batch_size(1)
            .batching(Batching::default())
            .instance_group(InstanceGroup::new(2)),
    )
    .unwrap();
    let queued = most_at_once(&m, &log, "queued", 8);
    assert_eq!(
        queued, 2,
        "behind a queue of one-row batches, each of 2 instances runs one call at a time"
    );
}

/// Behind a queue each engine instance runs its batches on one thread of
/// its own, as a Triton instance does: engines keep state per thread
/// (tract-cuda a CUDA graph per batch size), which the shared workers
/// spread over all of them.
#[test]
fn a_queued_instance_runs_every_batch_on_its_own_thread() {
    let (m, log) = rows_manager();
    *log.sleep_ms.lock().unwrap() = 5;
    m.load_model_blocking(
        spec("lanes")
            .max_batch_size(4)
            .batching(Batching::default())
            .instance_group(InstanceGroup::new(2)),
    )
    .unwrap();
    for _ in 0..4 {
        most_at_once(&m, &log, "lanes", 12);
    }
    let threads = log.threads.lock().unwrap().clone();
    let mut per_engine: [std::collections::BTreeSet<String>; 2] = Default::default();
    for (id, thread) in &threads {
        per_engine[*id].insert(thread.clone());
    }
    for (id, names) in per_engine.iter().enumerate() {
        assert_eq!(
            names.len(),
            1,
            "engine {id} ran on {names:?}; each instance should have one thread"
        );
    }
    let lanes: Vec<&String> = per_engine.iter().filter_map(|n| n.first()).collect();
    assert_eq!(
        lanes,
        ["anemone-lanes-instance-0", "anemone-lanes-instance-1"],
        "both instances ran, each on its own named thread ({} calls)",
        threads.len()
    );
}

/// A batch whose engine call fails runs its requests one by one on the same
/// instance's thread (`execute_batch`): only the bad request fails, and the
/// other instance's thread never sees that batch's requests.
#[test]
fn a_failed_batch_runs_its_requests_alone_on_the_same_instance_thread() {
    let (m, log) = rows_manager();
    m.load_model_blocking(
        spec("retry")
            .max_batch_size(8)
            .batching(Batching::default())
            .instance_group(InstanceGroup::new(2)),
    )
    .unwrap();
    *log.poison.lock().unwrap() = Some(13.0);
    // Both instances stuck on a call each, so the next four requests queue
    // and form one batch, which holds the bad row 13.
    log.close();
    let stuck: Vec<_> = [100.0, 200.0]
        .iter()
        .enumerate()
        .map(|(i, first)| {
            // One at a time, or both would form one batch on one instance.
            let h = send(&m, request("retry", *first, 1, 1));
            log.wait_for_calls(i + 1);
            h
        })
        .collect();
    let queued: Vec<_> = [11.0, 12.0, 13.0, 14.0]
        .iter()
        .enumerate()
        .map(|(i, first)| {
            let h = (*first, send(&m, request("retry", *first, 1, 1)));
            wait_queued(&m, "retry", i + 1);
            h
        })
        .collect();
    log.open();
    for h in stuck {
        assert!(h.join().unwrap().is_ok());
    }
    for (first, h) in queued {
        let result = h.join().unwrap();
        if first == 13.0 {
            let e = result.expect_err("the bad row fails");
            assert!(e.to_string().contains("a row starts with 13"), "{e}");
        } else {
            assert_eq!(result.unwrap().to_vec::<f32>().unwrap(), vec![2.0 * first]);
        }
    }
    let calls = log.calls.lock().unwrap().clone();
    let threads = log.threads.lock().unwrap().clone();
    let batch = calls
        .iter()
        .position(|c| c.1 == [11.0, 12.0, 13.0, 14.0])
        .unwrap_or_else(|| panic!("the four queued requests never ran as one batch: {calls:?}"));
    let alone: Vec<usize> = [11.0, 12.0, 13.0, 14.0]
        .iter()
        .map(|f| {
            calls.iter().rposition(|c| c.1 == [*f]).unwrap_or_else(|| {
                panic!("request {f} never ran alone after the failed batch: {calls:?}")
            })
        })
        .collect();
    for call in alone {
        assert!(
            call > batch,
            "request {:?} ran alone before its batch",
            calls[call].1
        );
        assert_eq!(
            threads[call], threads[batch],
            "a retry ran on another instance or thread than its failed batch"
        );
    }
}
