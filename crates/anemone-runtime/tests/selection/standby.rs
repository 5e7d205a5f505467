//! Standby backends: loaded on the first fallback by default, up front with
//! [`ModelSpec::hot_standby`], and then taken by the fallback without a load.

use super::{ask, file, wait_for_backend, Double};
use anemone_runtime::{Manager, ModelSpec};
use std::sync::atomic::Ordering;

#[test]
fn a_standby_is_loaded_on_fallback_unless_it_is_hot() {
    let (gpu, gpu_behaviour) = Double::new("gpu");
    let (cpu, cpu_behaviour) = Double::new("cpu");
    let (last, last_behaviour) = Double::new("last");
    let m = Manager::builder()
        .backend(gpu)
        .backend(cpu)
        .backend(last)
        .build()
        .unwrap();
    let loads = || {
        (
            cpu_behaviour.loads.load(Ordering::SeqCst),
            last_behaviour.loads.load(Ordering::SeqCst),
        )
    };
    let lazy = m
        .load_model_blocking(ModelSpec::new("lazy", file()))
        .unwrap();
    assert_eq!(loads(), (0, 0), "a lazy standby was loaded up front");
    let mut spec = ModelSpec::new("hot", file());
    spec.hot_standby = true;
    let hot = m.load_model_blocking(spec).unwrap();
    assert_eq!(loads(), (1, 0), "only the next backend stands by hot");
    assert_eq!(hot.backend(), "gpu");
    assert_eq!(lazy.backend(), "gpu");

    // The device is lost: the hot model moves to its loaded standby (no new
    // load of `cpu`), and loads the one after it as its next hot standby.
    gpu_behaviour.device_lost.store(1, Ordering::SeqCst);
    let _ = ask(&m, "hot", 1.0).unwrap_err();
    wait_for_backend(&m, "hot", "cpu");
    assert_eq!(loads(), (1, 1));
    assert_eq!(ask(&m, "hot", 2.0).unwrap(), 4.0);
    // The lazy model loads `cpu` when it falls back.
    let _ = ask(&m, "lazy", 1.0).unwrap_err();
    wait_for_backend(&m, "lazy", "cpu");
    assert_eq!(loads(), (2, 1));
}
