//! The health monitor through the runtime (issues 11 and 13): DEGRADED under
//! a slow and a failing engine, a model moved back to the backend it fell
//! back from once that works again, and re-timing on real traffic moving a
//! model to the engine that is faster on it.

use super::{ask, file, wait_for_backend, Double};
use crate::support::shaped::shaped;
use anemone_core::{Tensor, Tier};
use anemone_runtime::{
    HealthPolicy, InferRequest, Manager, ModelSpec, ModelState, RecoveryPolicy, RetimePolicy,
};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// A policy that judges small windows; the monitor's own thread is slow, so
/// the test looks with `check_health` when it wants to.
fn quick() -> HealthPolicy {
    HealthPolicy {
        interval: Duration::from_secs(3600),
        baseline_requests: 5,
        min_requests: 5,
        ..HealthPolicy::default()
    }
}

fn state(m: &Manager, model: &str) -> ModelState {
    m.health().model(model).unwrap().state.clone()
}

#[test]
fn a_slow_then_failing_engine_is_degraded_and_ready_again_when_it_recovers() {
    let (engine, behaviour) = Double::new("engine");
    let m = Manager::builder()
        .backend(engine)
        .health(quick())
        .build()
        .unwrap();
    m.load_model_blocking(ModelSpec::new("d", file())).unwrap();
    behaviour.sleep_us.store(2_000, Ordering::SeqCst);
    let run = |n: usize| {
        for _ in 0..n {
            let _ = ask(&m, "d", 1.0);
        }
        m.check_health();
    };
    run(5); // the baseline: ~2 ms
    run(5);
    assert_eq!(state(&m, "d"), ModelState::Ready);
    behaviour.sleep_us.store(60_000, Ordering::SeqCst); // 30x slower
    run(5);
    let ModelState::Degraded { reason } = state(&m, "d") else {
        panic!("a 30x slower engine is not degraded: {:?}", state(&m, "d"));
    };
    assert!(
        reason.contains("latency trend") && reason.contains("baseline"),
        "{reason}"
    );
    assert!(
        m.health().model("d").unwrap().ready(),
        "degraded still serves"
    );
    behaviour.sleep_us.store(2_000, Ordering::SeqCst);
    for _ in 0..10 {
        run(5);
    }
    assert_eq!(state(&m, "d"), ModelState::Ready, "fast again");
    // Engine errors (one backend: nowhere to fall back to).
    behaviour.broken.store(1, Ordering::SeqCst);
    run(5);
    let ModelState::Degraded { reason } = state(&m, "d") else {
        panic!("a failing engine is not degraded");
    };
    assert!(
        reason.contains("5 of the last 5 requests failed in the engine"),
        "{reason}"
    );
    behaviour.broken.store(0, Ordering::SeqCst);
    run(5);
    assert_eq!(state(&m, "d"), ModelState::Ready);
    let snapshot = m.metrics().monitor;
    let count = |from: &str, to: &str| {
        snapshot
            .transitions
            .iter()
            .find(|((model, f, t), _)| model == "d" && *f == from && *t == to)
            .map_or(0, |(_, n)| *n)
    };
    assert_eq!(
        (count("ready", "degraded"), count("degraded", "ready")),
        (2, 2)
    );
    // Switched off, nothing is judged.
    m.set_monitoring(false);
    behaviour.broken.store(1, Ordering::SeqCst);
    run(10);
    assert_eq!(state(&m, "d"), ModelState::Ready, "monitoring is off");
}

#[test]
fn memory_past_the_budget_degrades_every_model_with_the_figures() {
    let (engine, _) = Double::new("engine");
    let m = Manager::builder()
        .backend(engine)
        .memory_budget(Some(1 << 20))
        .health(quick())
        .build()
        .unwrap();
    m.load_model_blocking(ModelSpec::new("a", file())).unwrap();
    m.load_model_blocking(ModelSpec::new("b", file())).unwrap();
    // 256 MiB touched after the manager started: past its 1 MiB budget,
    // whatever the other tests of this process free (and trim) meanwhile
    // (16 MiB was once offset by their unloads in a CI run).
    let held = vec![1u8; 256 << 20];
    m.check_health();
    for model in ["a", "b"] {
        let ModelState::Degraded { reason } = state(&m, model) else {
            panic!("{model} is not degraded under memory pressure");
        };
        assert!(
            reason.starts_with("memory pressure: the process grew by")
                && reason.contains("of the 1 MiB budget"),
            "{reason}"
        );
    }
    let snapshot = m.metrics().monitor;
    assert!(snapshot.memory.rss > 1 << 20 && snapshot.memory_pressure.is_some());
    m.set_monitoring(false);
    m.check_health();
    assert_eq!(state(&m, "a"), ModelState::Ready, "monitoring is off");
    // The `monitoring` feature gate switches the same judging off.
    m.set_monitoring(true);
    m.check_health();
    assert!(matches!(state(&m, "a"), ModelState::Degraded { .. }));
    m.gates().set("monitoring", false).unwrap();
    assert!(!m.monitoring());
    m.check_health();
    assert_eq!(
        state(&m, "a"),
        ModelState::Ready,
        "the monitoring gate is off"
    );
    drop(held);
}

#[test]
fn a_model_that_fell_back_moves_back_when_its_backend_works_again() {
    let (gpu, gpu_behaviour) = Double::new("gpu");
    let (cpu, _) = Double::new("cpu");
    let m = Manager::builder()
        .backend(gpu)
        .backend(cpu)
        .health(quick())
        .recovery(RecoveryPolicy {
            enabled: true,
            backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(40),
        })
        .build()
        .unwrap();
    m.load_model_blocking(ModelSpec::new("d", file())).unwrap();
    gpu_behaviour.device_lost.store(1, Ordering::SeqCst);
    let _ = ask(&m, "d", 1.0).unwrap_err();
    wait_for_backend(&m, "d", "cpu");
    // While the device is still lost, re-probes fail and the model stays.
    let reprobes = |result: &str| {
        m.metrics()
            .monitor
            .reprobes
            .iter()
            .find(|((model, backend, r), _)| model == "d" && backend == "gpu" && *r == result)
            .map_or(0, |(_, n)| *n)
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while reprobes("failed") < 2 {
        assert!(Instant::now() < deadline, "no re-probe");
        m.check_health();
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(m.model("d", None).unwrap().backend(), "cpu");
    // The device is back: the next re-probe moves the model back.
    gpu_behaviour.device_lost.store(0, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(10);
    while m.model("d", None).unwrap().backend() != "gpu" {
        assert!(Instant::now() < deadline, "never moved back");
        m.check_health();
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(ask(&m, "d", 2.0).unwrap(), 4.0);
    let instance = m.model("d", None).unwrap();
    let moved = instance.selection().moved.clone().unwrap();
    assert_eq!(
        (moved.from.as_str(), moved.reason.as_str()),
        ("cpu", "recovered")
    );
    assert!(moved.detail.contains("device_lost"), "{moved:?}");
    assert!(instance.selection().fallback_from.is_none());
    let summary = instance.selection().summary();
    assert!(summary.contains("moved from cpu (recovered"), "{summary}");
    assert!(summary.ends_with("standing by: cpu"), "{summary}");
    assert_eq!(reprobes("ok"), 1);
    let moves = m.metrics().monitor.moves;
    assert_eq!(
        moves,
        vec![(("d".into(), "cpu".into(), "gpu".into(), "recovered"), 1)]
    );
}

#[test]
fn recovery_switched_off_leaves_a_fallen_back_model_where_it_is() {
    let (gpu, gpu_behaviour) = Double::new("gpu");
    let (cpu, _) = Double::new("cpu");
    let m = Manager::builder()
        .backend(gpu)
        .backend(cpu)
        .recovery(RecoveryPolicy {
            enabled: false,
            backoff: Duration::ZERO,
            ..RecoveryPolicy::default()
        })
        .build()
        .unwrap();
    m.load_model_blocking(ModelSpec::new("d", file())).unwrap();
    gpu_behaviour.device_lost.store(1, Ordering::SeqCst);
    let _ = ask(&m, "d", 1.0).unwrap_err();
    wait_for_backend(&m, "d", "cpu");
    gpu_behaviour.device_lost.store(0, Ordering::SeqCst);
    for _ in 0..5 {
        m.check_health();
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(m.model("d", None).unwrap().backend(), "cpu");
    assert!(m.metrics().monitor.reprobes.is_empty());
}

/// Two CPU engines: `small-fast` wins the load-time comparison (dynamic
/// dimensions at 1) but is 10x slower on the large inputs real requests send.
fn retiming(policy: RetimePolicy) -> Manager {
    let (small_fast, _) = shaped("small-fast", Tier::OptimisedCpu, 200, 20_000);
    let (large_fast, _) = shaped("large-fast", Tier::PortableCpu, 2_000, 2_000);
    Manager::builder()
        .backend(small_fast)
        .backend(large_fast)
        .health(quick())
        .retime(policy)
        .build()
        .unwrap()
}

fn send(m: &Manager, rows: usize, n: usize) {
    for _ in 0..n {
        let x = Tensor::from_vec(vec![rows], vec![0.5f32; rows]).unwrap();
        m.infer_blocking(InferRequest::new("r").input("x", x))
            .unwrap();
    }
}

fn retimed(m: &Manager) -> Vec<(String, f64)> {
    m.metrics()
        .monitor
        .retimed
        .into_iter()
        .filter(|((model, _), _)| model == "r")
        .map(|((_, backend), s)| (backend, s))
        .collect()
}

#[test]
fn re_timing_on_real_traffic_moves_the_model_to_the_faster_engine() {
    let policy = RetimePolicy {
        after_requests: 4,
        ..RetimePolicy::default()
    };
    let m = retiming(policy);
    let loaded = m.load_model_blocking(ModelSpec::new("r", file())).unwrap();
    assert_eq!(loaded.backend(), "small-fast", "the load-time comparison");
    send(&m, 64, 4);
    m.check_health();
    wait_for_backend(&m, "r", "large-fast");
    let instance = m.model("r", None).unwrap();
    let sel = instance.selection();
    let moved = sel.moved.clone().unwrap();
    assert_eq!(
        (moved.from.as_str(), moved.reason.as_str()),
        ("small-fast", "retimed")
    );
    assert!(moved.detail.contains("1 real request shape"), "{moved:?}");
    // The selection holds the traffic timings: a wide ratio, not a timing.
    let us = |b: &str| {
        sel.attempts
            .iter()
            .find(|a| a.backend == b)
            .and_then(|a| a.warmup_us)
            .unwrap()
    };
    assert!(us("small-fast") > 3.0 * us("large-fast"), "{sel:?}");
    let summary = sel.summary();
    assert!(
        summary.starts_with("on large-fast (fastest on real requests, median: large-fast"),
        "{summary}"
    );
    assert_eq!(retimed(&m).len(), 2);
    assert_eq!(
        m.metrics().monitor.moves,
        vec![(
            (
                "r".into(),
                "small-fast".into(),
                "large-fast".into(),
                "retimed"
            ),
            1
        )]
    );
    send(&m, 64, 1);
}

#[test]
fn re_timing_keeps_the_engine_when_it_is_faster_on_the_traffic_too_or_is_off() {
    let policy = RetimePolicy {
        after_requests: 4,
        ..RetimePolicy::default()
    };
    // Traffic of the load-time shape: the chosen engine stays, timed.
    let m = retiming(policy);
    m.load_model_blocking(ModelSpec::new("r", file())).unwrap();
    send(&m, 1, 4);
    m.check_health();
    let deadline = Instant::now() + Duration::from_secs(20);
    while retimed(&m).len() < 2 {
        assert!(Instant::now() < deadline, "never re-timed");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(m.model("r", None).unwrap().backend(), "small-fast");
    assert!(m.metrics().monitor.moves.is_empty());
    // Off for the model, and off for the manager: nothing is re-timed.
    for (spec_on, policy_on) in [(false, true), (true, false)] {
        let m = retiming(RetimePolicy {
            enabled: policy_on,
            ..policy
        });
        let mut spec = ModelSpec::new("r", file());
        spec.retime = spec_on;
        m.load_model_blocking(spec).unwrap();
        send(&m, 64, 8);
        // Longer than re-timing takes when on (about 0.5 s here).
        for _ in 0..20 {
            m.check_health();
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(retimed(&m).is_empty(), "re-timed while off");
        assert_eq!(m.model("r", None).unwrap().backend(), "small-fast");
    }
}

/// A CPU backend whose model refuses inputs below 2 (as a model whose input
/// must be a real sample rate refuses the synthetic warm-up's), and otherwise
/// takes `us` per call.
struct Picky {
    name: &'static str,
    tier: Tier,
    us: u64,
}

struct PickyModel(anemone_core::ModelMetadata, &'static str, u64);

impl anemone_core::Backend for Picky {
    fn name(&self) -> &'static str {
        self.name
    }
    fn probe(&self) -> anemone_core::Probe {
        anemone_core::Probe::Available {
            detail: "test double".into(),
        }
    }
    fn tier(&self) -> Tier {
        self.tier
    }
    fn supports(&self, _: &anemone_core::ModelSource) -> anemone_core::Support {
        anemone_core::Support::Yes
    }
    fn load(
        &self,
        _: &anemone_core::ModelSource,
        _: &anemone_core::LoadOptions,
    ) -> anemone_core::Result<Box<dyn anemone_core::LoadedModel>> {
        use anemone_core::{DataType, Dim, ModelFormat, ModelMetadata, TensorSpec};
        let n = Dim::Named("n".into());
        let meta = ModelMetadata::new(
            ModelFormat::Onnx,
            vec![TensorSpec::new("x", DataType::F32, vec![n.clone()])],
            vec![TensorSpec::new("y", DataType::F32, vec![n])],
        );
        Ok(Box::new(PickyModel(meta, self.name, self.us)))
    }
}

impl anemone_core::LoadedModel for PickyModel {
    fn metadata(&self) -> &anemone_core::ModelMetadata {
        &self.0
    }
    fn backend(&self) -> &'static str {
        self.1
    }
    fn memory_footprint(&self) -> u64 {
        0
    }
    fn infer(&self, inputs: &[Tensor]) -> anemone_core::Result<Vec<Tensor>> {
        if inputs[0].to_vec::<f32>().unwrap().iter().any(|v| *v < 2.0) {
            return Err(anemone_core::InputError::Malformed {
                name: "x".into(),
                reason: "must be at least 2".into(),
            }
            .into());
        }
        std::thread::sleep(Duration::from_micros(self.2));
        Ok(vec![inputs[0].clone()])
    }
}

/// Issue 11's silero VAD case: the synthetic warm-up fails on every engine,
/// so the first that loaded serves untimed; real requests then time them.
#[test]
fn a_model_whose_warm_up_failed_everywhere_is_re_timed_on_its_real_requests() {
    let m = Manager::builder()
        .backend(Picky {
            name: "picky-slow",
            tier: Tier::OptimisedCpu,
            us: 20_000,
        })
        .backend(Picky {
            name: "picky-fast",
            tier: Tier::PortableCpu,
            us: 1_000,
        })
        .health(quick())
        .retime(RetimePolicy {
            after_requests: 4,
            ..RetimePolicy::default()
        })
        .build()
        .unwrap();
    let loaded = m.load_model_blocking(ModelSpec::new("p", file())).unwrap();
    assert_eq!(loaded.backend(), "picky-slow", "{:?}", loaded.selection());
    for _ in 0..4 {
        let x = Tensor::from_vec(vec![3], vec![5.0f32; 3]).unwrap();
        m.infer_blocking(InferRequest::new("p").input("x", x))
            .unwrap();
    }
    m.check_health();
    wait_for_backend(&m, "p", "picky-fast");
    let moved = m
        .model("p", None)
        .unwrap()
        .selection()
        .moved
        .clone()
        .unwrap();
    assert_eq!(
        (moved.from.as_str(), moved.reason.as_str()),
        ("picky-slow", "retimed")
    );
}

/// [`Picky`] whose model also takes a sequence's START control (INT32).
struct PickySequence(Picky);

impl anemone_core::Backend for PickySequence {
    fn name(&self) -> &'static str {
        self.0.name
    }
    fn probe(&self) -> anemone_core::Probe {
        self.0.probe()
    }
    fn tier(&self) -> Tier {
        self.0.tier
    }
    fn supports(&self, _: &anemone_core::ModelSource) -> anemone_core::Support {
        anemone_core::Support::Yes
    }
    fn load(
        &self,
        _: &anemone_core::ModelSource,
        _: &anemone_core::LoadOptions,
    ) -> anemone_core::Result<Box<dyn anemone_core::LoadedModel>> {
        use anemone_core::{DataType, Dim, ModelFormat, ModelMetadata, TensorSpec};
        let n = Dim::Named("n".into());
        let meta = ModelMetadata::new(
            ModelFormat::Onnx,
            vec![
                TensorSpec::new("x", DataType::F32, vec![n.clone()]),
                TensorSpec::new("START", DataType::I32, vec![Dim::Any]),
            ],
            vec![TensorSpec::new("y", DataType::F32, vec![n])],
        );
        Ok(Box::new(PickyModel(meta, self.0.name, self.0.us)))
    }
}

/// The same as a sequence model: the requests' inputs kept for re-timing
/// hold the sequence's controls, which the re-timing gives the engines too
/// (it named only the request's inputs, so every engine failed on the
/// sets and the re-timing was skipped).
#[test]
fn a_sequence_model_is_re_timed_on_its_real_requests_with_their_controls() {
    use anemone_runtime::{
        ControlKind, CorrelationId, FalseTrue, SequenceControl, SequenceSettings,
    };
    let picky = |name, tier, us| PickySequence(Picky { name, tier, us });
    let m = Manager::builder()
        .backend(picky("picky-slow", Tier::OptimisedCpu, 20_000))
        .backend(picky("picky-fast", Tier::PortableCpu, 1_000))
        .health(quick())
        .retime(RetimePolicy {
            after_requests: 4,
            ..RetimePolicy::default()
        })
        .build()
        .unwrap();
    let settings = SequenceSettings {
        max_idle: Duration::from_secs(30),
        controls: vec![SequenceControl {
            input: "START".into(),
            kind: ControlKind::Start(FalseTrue::Int32([0, 1])),
        }],
        states: Vec::new(),
    };
    let loaded = m
        .load_model_blocking(ModelSpec::new("p", file()).sequence(settings))
        .unwrap();
    assert_eq!(loaded.backend(), "picky-slow", "{:?}", loaded.selection());
    for i in 0..4 {
        let x = Tensor::from_vec(vec![3], vec![5.0f32; 3]).unwrap();
        let r = InferRequest::new("p").input("x", x);
        m.infer_blocking(r.sequence(CorrelationId::Number(1), i == 0, i == 3))
            .unwrap();
    }
    m.check_health();
    wait_for_backend(&m, "p", "picky-fast");
}
