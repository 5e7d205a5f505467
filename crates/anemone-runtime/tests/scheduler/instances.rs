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
