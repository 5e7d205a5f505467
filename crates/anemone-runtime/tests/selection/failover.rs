//! Issue 9 item 2, runtime side: only real backend faults move a model, and
//! a model's counters survive the move with every failure counted.

use super::{ask, file, wait_for_backend, Double};
use anemone_core::ErrorKind;
use anemone_runtime::{FallbackPolicy, Manager, ModelSpec};
use std::sync::atomic::Ordering;

#[test]
fn bad_input_never_moves_a_model_and_its_counters_survive_a_move() {
    let (flaky, behaviour) = Double::new("flaky");
    let (steady, _) = Double::new("steady");
    let m = Manager::builder()
        .backend(flaky)
        .backend(steady)
        .fallback(FallbackPolicy {
            error_rate: 0.5,
            min_errors: 2,
            window: 100,
        })
        .build()
        .unwrap();
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
