//! Issue 9 item 2, runtime side: only real backend faults move a model, and
//! a model's counters survive the move with every failure counted; a
//! failing backend or a lost device hands the model to the next candidate.

use super::{ask, file, wait_for_backend, Behaviour, Double};
use anemone_core::{Error, ErrorKind};
use anemone_runtime::{FallbackPolicy, Manager, ModelSpec};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// A manager with a `flaky` double first and a `steady` one after it, that
/// moves a model off a backend once `min_errors` of its last 100 calls
/// failed and they are half of them; with both doubles' behaviours.
fn flaky_then_steady(min_errors: u64) -> (Manager, Arc<Behaviour>, Arc<Behaviour>) {
    let (flaky, flaky_behaviour) = Double::new("flaky");
    let (steady, steady_behaviour) = Double::new("steady");
    let m = Manager::builder()
        .backend(flaky)
        .backend(steady)
        .fallback(FallbackPolicy {
            error_rate: 0.5,
            min_errors,
            window: 100,
        })
        .build()
        .unwrap();
    (m, flaky_behaviour, steady_behaviour)
}

#[test]
fn bad_input_never_moves_a_model_and_its_counters_survive_a_move() {
    let (m, behaviour, _) = flaky_then_steady(2);
    m.load_model_blocking(ModelSpec::new("d", file())).unwrap();
    for _ in 0..3 {
        assert_eq!(ask(&m, "d", 1.0).unwrap(), 2.0);
    }
    // Inputs the engine refuses are the client's fault: never a reason to move.
    behaviour.invalid_input.store(1, Ordering::SeqCst);
    for _ in 0..10 {
        let e = ask(&m, "d", 1.0).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    }
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert_eq!(m.model("d", None).unwrap().backend(), "flaky");
    assert!(m.fallbacks().is_empty(), "{:?}", m.fallbacks());
    // Real faults do move it.
    behaviour.invalid_input.store(0, Ordering::SeqCst);
    behaviour.broken.store(1, Ordering::SeqCst);
    let (mut backend_failures, mut moved_meanwhile) = (0, 0);
    while m.model("d", None).unwrap().backend() == "flaky" {
        // A request may reach the new backend between the check and the call.
        match ask(&m, "d", 1.0) {
            Ok(_) => moved_meanwhile += 1,
            Err(_) => backend_failures += 1,
        }
        assert!(backend_failures < 100_000, "the model never moved");
    }
    wait_for_backend(&m, "d", "steady");
    assert_eq!(ask(&m, "d", 2.0).unwrap(), 4.0);
    // One set of counters across the move, holding every request.
    let metrics = m.metrics().model("d").unwrap().metrics.clone();
    assert_eq!(metrics.success, 4 + moved_meanwhile, "{metrics:?}");
    assert_eq!(metrics.failures_of(ErrorKind::InvalidInput), 10);
    assert_eq!(metrics.failures_of(ErrorKind::Backend), backend_failures);
    assert_eq!(metrics.failure_count(), 10 + backend_failures);
}

#[test]
fn a_failing_backend_hands_the_model_to_the_next_candidate() {
    let (m, behaviour, steady_behaviour) = flaky_then_steady(3);
    m.load_model_blocking(ModelSpec::new("d", file()).max_concurrency(4))
        .unwrap();
    for _ in 0..5 {
        assert_eq!(ask(&m, "d", 1.0).unwrap(), 2.0);
    }
    behaviour.broken.store(1, Ordering::SeqCst);
    // 5 successes: errors 1/6, 2/7 stay; the 5th error (5/10) trips.
    for _ in 0..5 {
        let e = ask(&m, "d", 1.0).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Backend);
    }
    wait_for_backend(&m, "d", "steady");
    assert_eq!(ask(&m, "d", 4.0).unwrap(), 8.0);
    assert_eq!(steady_behaviour.calls.load(Ordering::SeqCst), 1);
    let instance = m.model("d", None).unwrap();
    let sel = instance.selection();
    let from = sel.fallback_from.as_ref().unwrap();
    assert_eq!(
        (from.from.as_str(), from.reason.as_str()),
        ("flaky", "error_rate")
    );
    assert!(from.detail.contains("kernel failed"), "{}", from.detail);
    assert_eq!(sel.chosen(), Some("steady"));
    assert!(
        sel.summary().contains("fell back from flaky (error_rate"),
        "{}",
        sel.summary()
    );
    assert_eq!(
        m.fallbacks(),
        vec![(
            (
                "d".to_string(),
                "flaky".to_string(),
                "steady".to_string(),
                "error_rate"
            ),
            1
        )]
    );
    let metrics = m.metrics();
    assert_eq!(metrics.fallbacks.len(), 1);
    assert_eq!(metrics.in_flight, 0);
}

#[test]
fn a_lost_device_moves_the_model_at_once_and_the_old_instance_serves_meanwhile() {
    let (gpu, behaviour) = Double::new("gpu");
    let (cpu, cpu_behaviour) = Double::new("cpu");
    let m = Manager::builder()
        .backend(gpu)
        .backend(cpu)
        .build()
        .unwrap();
    m.load_model_blocking(ModelSpec::new("d", file())).unwrap();
    behaviour.device_lost.store(1, Ordering::SeqCst);
    let e = ask(&m, "d", 1.0).unwrap_err();
    assert!(matches!(e, Error::DeviceLost { .. }), "{e}");
    wait_for_backend(&m, "d", "cpu");
    assert_eq!(ask(&m, "d", 5.0).unwrap(), 10.0);
    assert_eq!(cpu_behaviour.calls.load(Ordering::SeqCst), 1);
    assert_eq!(m.fallbacks()[0].0 .3, "device_lost");
    // With nowhere left to go, the model stays and says so.
    cpu_behaviour.device_lost.store(1, Ordering::SeqCst);
    let _ = ask(&m, "d", 1.0).unwrap_err();
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(m.model("d", None).unwrap().backend(), "cpu");
}
