//! Triton's rate limiter (`ManagerBuilder::rate_limit`, the server's
//! `--rate-limit execution_count`): instances that share a resource never
//! run together, waiting instances take turns by executions × priority,
//! and a model whose resources cannot be met does not load
//! (docs/SERVING.md, "Rate limiter").

use super::*;
use anemone_runtime::rate_limit::Resource;
use anemone_runtime::RateLimit;

fn limit(name: &str, count: u64, priority: u32) -> RateLimit {
    RateLimit {
        resources: vec![Resource {
            name: name.into(),
            count,
            global: true,
        }],
        priority,
    }
}

/// A queued model of one instance whose group holds `name` while it runs.
fn limited(model: &str, name: &str, count: u64, priority: u32) -> ModelSpec {
    spec(model).instance_group(InstanceGroup::new(1).rate_limit(limit(name, count, priority)))
}

/// Sends `n` one-row requests to each model at once; the most engine calls
/// that ran at the same time.
fn most_at_once(m: &Manager, log: &Log, models: &[&str], n: usize) -> usize {
    *log.running.lock().unwrap() = (0, 0);
    let handles: Vec<_> = models
        .iter()
        .flat_map(|model| (0..n).map(move |i| send(m, request(model, i as f32, 1, 1))))
        .collect();
    for h in handles {
        assert!(h.join().unwrap().is_ok());
    }
    log.running.lock().unwrap().1
}

#[test]
fn models_that_share_a_resource_never_run_at_once() {
    // Without a limiter the same specs load (their rate_limiter ignored)
    // and the two models, each behind a queue of its own, run side by
    // side: what the limiter must prevent.
    let (free, free_log) = rows_manager();
    *free_log.sleep_ms.lock().unwrap() = 20;
    for model in ["a", "b"] {
        free.load_model_blocking(limited(model, "R", 1, 0).queue(QueueSettings::default()))
            .unwrap();
    }
    assert_eq!(most_at_once(&free, &free_log, &["a", "b"], 4), 2);

    let (m, log) = rows_manager_with(|b| b.rate_limit(Some(vec![])));
    *log.sleep_ms.lock().unwrap() = 20;
    for model in ["a", "b"] {
        m.load_model_blocking(limited(model, "R", 1, 0)).unwrap();
    }
    // A third model without a rate_limiter is never held.
    m.load_model_blocking(spec("c").queue(QueueSettings::default()))
        .unwrap();
    assert_eq!(
        most_at_once(&m, &log, &["a", "b"], 4),
        1,
        "R has 1 (the most any instance needs), so one call at a time"
    );
    assert_eq!(
        most_at_once(&m, &log, &["a", "b", "c"], 4),
        2,
        "c runs beside them"
    );
    // Two of R (given): both run at once again.
    let (two, two_log) = rows_manager_with(|b| b.rate_limit(Some(vec!["R:2".parse().unwrap()])));
    *two_log.sleep_ms.lock().unwrap() = 20;
    for model in ["a", "b"] {
        two.load_model_blocking(limited(model, "R", 1, 0)).unwrap();
    }
    assert_eq!(most_at_once(&two, &two_log, &["a", "b"], 4), 2);
}

#[test]
fn waiting_instances_take_turns_by_executions_times_priority() {
    let (m, log) = rows_manager_with(|b| b.rate_limit(Some(vec![])));
    m.load_model_blocking(limited("high", "R", 1, 1)).unwrap();
    m.load_model_blocking(limited("low", "R", 1, 2)).unwrap();
    // One call holds R while both backlogs form.
    log.close();
    let first = send(&m, request("high", 100.0, 1, 1));
    log.wait_for_calls(1);
    let mut waiting: Vec<_> = (0..8)
        .flat_map(|i| {
            [
                send(&m, request("high", i as f32, 1, 1)),
                send(&m, request("low", i as f32, 1, 1)),
            ]
        })
        .collect();
    wait_queued(&m, "high", 8);
    wait_queued(&m, "low", 8);
    log.open();
    waiting.push(first);
    for h in waiting {
        assert!(h.join().unwrap().is_ok());
    }
    // Engine 0 is high's, 1 low's. Priority 2 gets half the turns of 1
    // while both wait: 8 of the first 12 calls are high's.
    let order: Vec<usize> = log
        .calls
        .lock()
        .unwrap()
        .iter()
        .map(|(id, ..)| *id)
        .collect();
    let high = order[..12].iter().filter(|id| **id == 0).count();
    assert!(
        (7..=9).contains(&high),
        "high ran {high} of the first 12 calls: {order:?}"
    );
    assert_eq!(order.len(), 17);
}

#[test]
fn a_model_whose_resources_cannot_be_met_does_not_load_and_others_serve() {
    let (m, _log) = rows_manager_with(|b| b.rate_limit(Some(vec!["R:1".parse().unwrap()])));
    m.load_model_blocking(limited("fits", "R", 1, 0)).unwrap();
    let e = m
        .load_model_blocking(limited("big", "R", 2, 0))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    let text = e.to_string();
    assert!(
        text.contains("model 'big'") && text.contains("limited to 1") && text.contains("R:2"),
        "{text}"
    );
    let e = m
        .load_model_blocking(limited("none", "S", 1, 0))
        .unwrap_err();
    assert!(e.to_string().contains("\"S\" is limited to 0"), "{e}");
    assert!(m.infer_blocking(request("fits", 1.0, 1, 1)).is_ok());
    // Global in one model, per device in another: refused by name.
    let (m, _log) = rows_manager_with(|b| b.rate_limit(Some(vec![])));
    m.load_model_blocking(limited("g", "R", 1, 0)).unwrap();
    let mut local = limit("R", 1, 0);
    local.resources[0].global = false;
    let e = m
        .load_model_blocking(spec("d").instance_group(InstanceGroup::new(1).rate_limit(local)))
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("\"R\" is global in model 'g' and per device in model 'd'"),
        "{e}"
    );
}

/// An unloaded model gives its place back: the other model, held behind it,
/// runs on.
#[test]
fn unloading_a_model_waiting_for_resources_lets_the_others_run() {
    let (m, log) = rows_manager_with(|b| b.rate_limit(Some(vec![])));
    m.load_model_blocking(limited("a", "R", 1, 0)).unwrap();
    m.load_model_blocking(limited("b", "R", 1, 0)).unwrap();
    log.hold(1.0);
    let a = send(&m, request("a", 1.0, 1, 1));
    log.wait_for_calls(1);
    let b = send(&m, request("b", 2.0, 1, 1));
    wait_queued(&m, "b", 1);
    // (An unload may wait for the model's requests: it runs on its own.)
    let unload = {
        let m = m.clone();
        std::thread::spawn(move || m.unload_model("b", None))
    };
    std::thread::sleep(Duration::from_millis(50));
    log.release();
    assert!(unload.join().unwrap().is_ok());
    assert!(a.join().unwrap().is_ok());
    // b's queued request is answered (served or refused), never stuck.
    let _ = b.join().unwrap();
    let c = m.infer_blocking(request("a", 3.0, 1, 1));
    assert!(c.is_ok(), "{c:?}");
}
