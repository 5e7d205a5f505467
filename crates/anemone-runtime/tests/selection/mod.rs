//! Backend selection and run-time fallback, with test-double backends whose
//! failures can be switched on (real engines rarely fail on demand), plus
//! auto-tuning across the real tract and ONNX Runtime backends.

use crate::support::{assert_close, Case};
use anemone_backends::{OnnxRuntime, TractCpu};
use anemone_core::{
    Backend, DataType, Dim, Error, ErrorKind, LoadOptions, LoadedModel, ModelFormat, ModelMetadata,
    ModelSource, Probe, Support, Tensor, TensorSpec, Tier,
};
use anemone_runtime::{
    FallbackPolicy, InferRequest, Manager, Mode, ModelSpec, Outcome, RetryPolicy,
};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod failover;
mod standby;
mod warmup;
// --- recover ---
mod monitor;

/// What a double's model does on each inference.
#[derive(Default)]
struct Behaviour {
    /// Fail this many more calls with a retryable error.
    retryable_failures: AtomicU32,
    /// Fail every call with a permanent backend error while non-zero.
    broken: AtomicU32,
    /// Report a lost device while non-zero.
    device_lost: AtomicU32,
    /// Refuse the inputs (an `InvalidInput` error) while non-zero.
    invalid_input: AtomicU32,
    /// Microseconds each call sleeps.
    sleep_us: AtomicU32,
    /// Calls so far.
    calls: AtomicU32,
    /// Models loaded so far.
    loads: AtomicU32,
}

/// A backend named `name` whose model doubles its input `x` into `y`.
struct Double {
    name: &'static str,
    tier: Tier,
    available: bool,
    load_error: Option<&'static str>,
    behaviour: Arc<Behaviour>,
}

impl Double {
    fn new(name: &'static str) -> (Double, Arc<Behaviour>) {
        let behaviour = Arc::new(Behaviour::default());
        (
            Double {
                tier: Tier::Gpu,
                name,
                available: true,
                load_error: None,
                behaviour: behaviour.clone(),
            },
            behaviour,
        )
    }
}

struct DoubleModel {
    meta: ModelMetadata,
    backend: &'static str,
    behaviour: Arc<Behaviour>,
}

impl Backend for Double {
    fn name(&self) -> &'static str {
        self.name
    }
    fn probe(&self) -> Probe {
        if self.available {
            Probe::Available {
                detail: "test double".into(),
            }
        } else {
            Probe::Unavailable {
                reason: format!("{} has no device here", self.name),
            }
        }
    }
    fn tier(&self) -> Tier {
        self.tier
    }
    fn supports(&self, _: &ModelSource) -> Support {
        Support::Yes
    }
    fn load(
        &self,
        source: &ModelSource,
        _: &LoadOptions,
    ) -> anemone_core::Result<Box<dyn LoadedModel>> {
        if let Some(message) = self.load_error {
            return Err(Error::InvalidModel {
                path: source.path.clone(),
                reason: message.into(),
                source: None,
            });
        }
        self.behaviour.loads.fetch_add(1, Ordering::SeqCst);
        Ok(Box::new(DoubleModel {
            meta: ModelMetadata::new(
                ModelFormat::Onnx,
                vec![TensorSpec::new("x", DataType::F32, vec![Dim::Fixed(1)])],
                vec![TensorSpec::new("y", DataType::F32, vec![Dim::Fixed(1)])],
            ),
            backend: self.name,
            behaviour: self.behaviour.clone(),
        }))
    }
}

impl LoadedModel for DoubleModel {
    fn metadata(&self) -> &ModelMetadata {
        &self.meta
    }
    fn backend(&self) -> &'static str {
        self.backend
    }
    fn memory_footprint(&self) -> u64 {
        0
    }
    fn infer(&self, inputs: &[Tensor]) -> anemone_core::Result<Vec<Tensor>> {
        let b = &self.behaviour;
        b.calls.fetch_add(1, Ordering::SeqCst);
        let sleep = b.sleep_us.load(Ordering::SeqCst);
        if sleep > 0 {
            std::thread::sleep(Duration::from_micros(sleep as u64));
        }
        if b.device_lost.load(Ordering::SeqCst) > 0 {
            return Err(Error::DeviceLost {
                backend: self.backend.into(),
                message: "device fell off the bus".into(),
            });
        }
        if b.invalid_input.load(Ordering::SeqCst) > 0 {
            return Err(anemone_core::InputError::Malformed {
                name: "x".into(),
                reason: "the engine cannot take this value".into(),
            }
            .into());
        }
        if b.broken.load(Ordering::SeqCst) > 0 {
            return Err(Error::Backend {
                backend: self.backend.into(),
                message: "kernel failed".into(),
                retryable: false,
                source: None,
            });
        }
        let retryable =
            b.retryable_failures
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if retryable.is_ok() {
            return Err(Error::Backend {
                backend: self.backend.into(),
                message: "busy, try again".into(),
                retryable: true,
                source: None,
            });
        }
        let v = inputs[0].to_vec::<f32>().unwrap()[0];
        Ok(vec![Tensor::from_vec(vec![1], vec![v * 2.0]).unwrap()])
    }
}

fn file() -> std::path::PathBuf {
    Case::load("identity").model_path()
}

fn ask(m: &Manager, model: &str, v: f32) -> anemone_core::Result<f32> {
    let x = Tensor::from_vec(vec![1], vec![v]).unwrap();
    let r = m.infer_blocking(InferRequest::new(model).input("x", x))?;
    Ok(r.outputs[0].1.to_vec::<f32>().unwrap()[0])
}

#[test]
fn ordered_selection_skips_with_reasons_and_keeps_the_rest_on_standby() {
    let (mut gone, _) = Double::new("gone");
    gone.available = false;
    let (mut refuses, _) = Double::new("refuses");
    refuses.load_error = Some("operator FancyOp is not supported");
    let (works, _) = Double::new("works");
    let (spare, _) = Double::new("spare");
    let m = Manager::builder()
        .backend(gone)
        .backend(refuses)
        .backend(works)
        .backend(spare)
        .build()
        .unwrap();
    let instance = m
        .load_model_blocking(ModelSpec::new("d", file()).backends([
            "coreml-ane",
            "gone",
            "refuses",
            "works",
            "spare",
        ]))
        .unwrap();
    let sel = instance.selection();
    assert_eq!(sel.mode, Mode::Ordered);
    assert_eq!(sel.chosen(), Some("works"));
    let skipped: Vec<(&str, &str)> = sel.skipped().collect();
    assert_eq!(skipped.len(), 3, "{skipped:?}");
    assert_eq!(skipped[0].0, "coreml-ane");
    assert!(
        skipped[0].1.contains("not built into this binary") && skipped[0].1.contains("macOS"),
        "{}",
        skipped[0].1
    );
    assert_eq!(skipped[1], ("gone", "gone has no device here"));
    assert!(
        skipped[2].1.contains("operator FancyOp is not supported"),
        "{}",
        skipped[2].1
    );
    assert_eq!(sel.attempts.last().unwrap().outcome, Outcome::Standby);
    let summary = sel.summary();
    assert!(
        summary.starts_with("on works")
            && summary.contains("skipped gone: gone has no device here")
            && summary.ends_with("standing by: spare"),
        "{summary}"
    );
    assert_eq!(ask(&m, "d", 2.0).unwrap(), 4.0);
    // The manager's default order is the order backends were added.
    let by_default = m.load_model_blocking(ModelSpec::new("e", file())).unwrap();
    assert_eq!(by_default.selection().chosen(), Some("works"));
}

#[test]
fn unknown_names_are_config_errors_with_a_suggestion() {
    let (works, _) = Double::new("works");
    let m = Manager::builder()
        .backend(works)
        .backend(TractCpu)
        .build()
        .unwrap();
    let err = m
        .load_model_blocking(ModelSpec::new("d", file()).backends(["tract-gpu"]))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let text = err.to_string();
    assert!(
        text.contains("unknown backend 'tract-gpu'; did you mean 'tract-cpu'?"),
        "{text}"
    );
    assert!(text.contains("this build has: works, tract-cpu"), "{text}");
    // A server-wide list with a typo stops start-up.
    let err = Manager::builder()
        .backend(TractCpu)
        .preference(Some(vec!["onnxruntim".into()]))
        .build()
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("did you mean 'onnxruntime'?"),
        "{err}"
    );
}

#[test]
fn strict_mode_uses_the_first_backend_or_fails_and_never_falls_back() {
    let (mut gone, _) = Double::new("gone");
    gone.available = false;
    let (works, behaviour) = Double::new("works");
    let (spare, _) = Double::new("spare");
    let m = Manager::builder()
        .backend(gone)
        .backend(works)
        .backend(spare)
        .fallback(FallbackPolicy {
            min_errors: 1,
            ..FallbackPolicy::default()
        })
        .build()
        .unwrap();
    let mut spec = ModelSpec::new("d", file()).backends(["gone", "works"]);
    spec.strict = Some(true);
    let err = m.load_model_blocking(spec).unwrap_err();
    assert!(
        err.to_string().contains("gone has no device here") && err.to_string().contains("strict"),
        "{err}"
    );

    let mut spec = ModelSpec::new("d", file()).backends(["works", "spare"]);
    spec.strict = Some(true);
    let instance = m.load_model_blocking(spec).unwrap();
    assert_eq!(instance.selection().mode, Mode::Strict);
    assert_eq!(
        instance.selection().attempts.len(),
        1,
        "strict keeps no standby"
    );
    behaviour.device_lost.store(1, Ordering::SeqCst);
    for _ in 0..3 {
        assert!(ask(&m, "d", 1.0).is_err());
    }
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(
        m.model("d", None).unwrap().backend(),
        "works",
        "strict never moves"
    );
    assert!(m.fallbacks().is_empty());
}

#[test]
fn retryable_errors_are_retried_per_the_policy() {
    let (works, behaviour) = Double::new("works");
    let m = Manager::builder()
        .backend(works)
        .retry(RetryPolicy {
            max_retries: 2,
            backoff: Duration::from_millis(1),
        })
        .build()
        .unwrap();
    m.load_model_blocking(ModelSpec::new("d", file())).unwrap();
    behaviour.retryable_failures.store(2, Ordering::SeqCst);
    assert_eq!(
        ask(&m, "d", 3.0).unwrap(),
        6.0,
        "two failures, two retries, then success"
    );
    assert_eq!(behaviour.calls.load(Ordering::SeqCst), 3);
    assert_eq!(m.model("d", None).unwrap().retries(), 2);
    behaviour.retryable_failures.store(3, Ordering::SeqCst);
    let err = ask(&m, "d", 3.0).unwrap_err();
    assert!(
        err.retryable() && err.to_string().contains("busy, try again"),
        "{err}"
    );
    assert_eq!(
        behaviour.calls.load(Ordering::SeqCst),
        6,
        "one try and two retries, no more"
    );
    // Permanent errors are not retried.
    behaviour.broken.store(1, Ordering::SeqCst);
    let _ = ask(&m, "d", 3.0).unwrap_err();
    assert_eq!(behaviour.calls.load(Ordering::SeqCst), 7);
}

fn wait_for_backend(m: &Manager, model: &str, backend: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while m.model(model, None).unwrap().backend() != backend {
        assert!(
            Instant::now() < deadline,
            "{model} did not move to {backend}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn auto_mode_times_every_candidate_and_keeps_the_fastest() {
    let (slow, slow_behaviour) = Double::new("slow");
    let (fast, fast_behaviour) = Double::new("fast");
    slow_behaviour.sleep_us.store(3000, Ordering::SeqCst);
    fast_behaviour.sleep_us.store(100, Ordering::SeqCst);
    let (mut gone, _) = Double::new("gone");
    gone.available = false;
    let m = Manager::builder()
        .backend(gone)
        .backend(slow)
        .backend(fast)
        .build()
        .unwrap();
    let instance = m
        .load_model_blocking(ModelSpec::new("d", file()).backends(["auto"]))
        .unwrap();
    let sel = instance.selection();
    assert_eq!(sel.mode, Mode::Auto);
    assert_eq!(sel.chosen(), Some("fast"));
    let timed: Vec<(&str, f64)> = sel
        .attempts
        .iter()
        .filter_map(|a| a.warmup_us.map(|t| (a.backend.as_str(), t)))
        .collect();
    assert_eq!(timed.len(), 2, "{timed:?}");
    assert_eq!(timed[0].0, "fast");
    assert!(
        timed[1].1 >= 3000.0,
        "the slow one slept 3 ms per call: {timed:?}"
    );
    assert_eq!(sel.attempts[1].outcome, Outcome::Slower);
    assert_eq!(
        sel.skipped().next(),
        Some(("gone", "gone has no device here"))
    );
    assert!(
        sel.summary().contains("auto, warm-up median: fast"),
        "{}",
        sel.summary()
    );
    assert!(
        slow_behaviour.calls.load(Ordering::SeqCst) >= 5,
        "warm-up plus timed runs"
    );
    // Auto and strict together make no sense.
    let mut spec = ModelSpec::new("e", file()).backends(["auto"]);
    spec.strict = Some(true);
    assert!(m
        .load_model_blocking(spec)
        .unwrap_err()
        .to_string()
        .contains("choose one"));
}

/// Auto mode across the real engines: both are timed, the model serves on
/// the faster one, and its answers match the ONNX Runtime Python reference.
#[test]
fn auto_mode_over_tract_and_onnxruntime_serves_correct_answers() {
    if let Probe::Unavailable { reason } = OnnxRuntime.probe() {
        if std::env::var_os("ANEMONE_REQUIRE_ORT").is_some() {
            panic!("ANEMONE_REQUIRE_ORT is set but {reason}");
        }
        eprintln!("SKIPPED auto_mode_over_tract_and_onnxruntime: {reason}");
        return;
    }
    let case = Case::load("small_convnet");
    let m = Manager::builder()
        .backend(OnnxRuntime)
        .backend(TractCpu)
        .threads(1)
        .build()
        .unwrap();
    let instance = m
        .load_model_blocking(ModelSpec::new("cnn", case.model_path()).backends(["auto"]))
        .unwrap();
    let timed: Vec<f64> = instance
        .selection()
        .attempts
        .iter()
        .filter_map(|a| a.warmup_us)
        .collect();
    assert_eq!(timed.len(), 2, "{:?}", instance.selection());
    assert!(timed[0] <= timed[1]);
    for run in &case.runs {
        let mut request = InferRequest::new("cnn");
        request.inputs = case.inputs(run);
        let got = m.infer_blocking(request).unwrap();
        let want = case.tensor(&run.outputs[0].file);
        assert_close("auto", &got.outputs[0].1, &want, case.rtol, case.atol);
    }
}

#[test]
fn the_default_order_times_the_cpu_engines_and_keeps_the_faster() {
    let (slow, slow_behaviour) = Double::new("slow-cpu");
    let (fast, fast_behaviour) = Double::new("fast-cpu");
    slow_behaviour.sleep_us.store(3000, Ordering::SeqCst);
    fast_behaviour.sleep_us.store(100, Ordering::SeqCst);
    let (slow, fast) = (
        Double {
            tier: Tier::OptimisedCpu,
            ..slow
        },
        Double {
            tier: Tier::PortableCpu,
            ..fast
        },
    );
    let m = Manager::builder()
        .backend(slow)
        .backend(fast)
        .build()
        .unwrap();
    let instance = m.load_model_blocking(ModelSpec::new("d", file())).unwrap();
    let sel = instance.selection();
    assert_eq!(sel.mode, Mode::Ordered);
    assert_eq!(sel.chosen(), Some("fast-cpu"), "{sel:?}");
    assert_eq!(sel.attempts[1].outcome, Outcome::Slower);
    assert!(
        sel.summary().contains("fastest CPU engine"),
        "{}",
        sel.summary()
    );
    // A list the user gives is followed in order, untimed.
    let pinned = m
        .load_model_blocking(ModelSpec::new("e", file()).backends(["slow-cpu", "fast-cpu"]))
        .unwrap();
    assert_eq!(pinned.selection().chosen(), Some("slow-cpu"));
    assert!(pinned
        .selection()
        .attempts
        .iter()
        .all(|a| a.warmup_us.is_none()));
    // A GPU backend ahead of them wins without timing.
    let (gpu, _) = Double::new("gpu");
    let (slow, _) = Double::new("slow-cpu");
    let (fast, _) = Double::new("fast-cpu");
    let m = Manager::builder()
        .backend(gpu)
        .backend(Double {
            tier: Tier::OptimisedCpu,
            ..slow
        })
        .backend(Double {
            tier: Tier::PortableCpu,
            ..fast
        })
        .build()
        .unwrap();
    let instance = m.load_model_blocking(ModelSpec::new("d", file())).unwrap();
    assert_eq!(instance.selection().chosen(), Some("gpu"));
    assert!(instance
        .selection()
        .attempts
        .iter()
        .all(|a| a.warmup_us.is_none()));
}

/// When no CPU engine of the default order can run the synthetic warm-up
/// (an input that must hold real sizes: a U-Net given a 1x1 image), the
/// first that loaded serves, and the summary says so rather than reading as
/// if it had been timed.
#[test]
fn the_default_order_says_when_no_cpu_engine_could_be_timed() {
    let (first, first_behaviour) = Double::new("first-cpu");
    let (second, second_behaviour) = Double::new("second-cpu");
    first_behaviour.invalid_input.store(1, Ordering::SeqCst);
    second_behaviour.invalid_input.store(1, Ordering::SeqCst);
    let m = Manager::builder()
        .backend(Double {
            tier: Tier::OptimisedCpu,
            ..first
        })
        .backend(Double {
            tier: Tier::PortableCpu,
            ..second
        })
        .build()
        .unwrap();
    let instance = m.load_model_blocking(ModelSpec::new("u", file())).unwrap();
    let sel = instance.selection();
    assert!(
        sel.attempts.iter().all(|a| a.warmup_us.is_none()),
        "{sel:?}"
    );
    let summary = sel.summary();
    assert!(
        summary.contains("the warm-up failed on every CPU engine, so the first that loaded serves"),
        "{summary}"
    );
}
