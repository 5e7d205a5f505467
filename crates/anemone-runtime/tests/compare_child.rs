//! Comparing the CPU engines in a child process (issue 11, memory goal):
//! with a comparer installed, only the winner loads in this process, the
//! choice is the in-process comparison's, and a child that fails, hangs,
//! crashes or answers nonsense makes the manager compare here instead,
//! never failing the load.
//!
//! The child is this test binary itself: run with `ANEMONE_TEST_CHILD` set,
//! its `child_entry` test serves one comparison on stdin/stdout and exits.

use anemone_backends::{OnnxRuntime, TractCpu};
use anemone_core::{Backend, LoadOptions, LoadedModel, ModelSource, Probe, Support, Tensor, Tier};
use anemone_runtime::compare::ProcessComparer;
use anemone_runtime::{EngineComparer, InferRequest, Manager, ModelSpec, Outcome, RetimePolicy};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "support/shaped.rs"]
mod shaped;
use shaped::shaped;

const CHILD: &str = "ANEMONE_TEST_CHILD";

/// A backend that counts its loads in this process.
struct Counting {
    inner: Arc<dyn Backend>,
    loads: Arc<AtomicUsize>,
}

impl Backend for Counting {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn probe(&self) -> Probe {
        self.inner.probe()
    }
    fn tier(&self) -> Tier {
        self.inner.tier()
    }
    fn supports(&self, source: &ModelSource) -> Support {
        self.inner.supports(source)
    }
    fn load(
        &self,
        source: &ModelSource,
        options: &LoadOptions,
    ) -> anemone_core::Result<Box<dyn LoadedModel>> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        self.inner.load(source, options)
    }
}

/// The real CPU engines, or the fakes (`small-fast` wins on the synthetic
/// warm-up; `large-fast` on 64-element requests).
fn engines(fake: bool) -> Vec<Arc<dyn Backend>> {
    if fake {
        vec![
            Arc::new(shaped("small-fast", Tier::OptimisedCpu, 200, 20_000).0),
            Arc::new(shaped("large-fast", Tier::PortableCpu, 2_000, 2_000).0),
        ]
    } else {
        vec![Arc::new(OnnxRuntime), Arc::new(TractCpu)]
    }
}

/// The child: serves one comparison when run with `ANEMONE_TEST_CHILD`.
#[test]
fn child_entry() {
    let Ok(kind) = std::env::var(CHILD) else {
        return;
    };
    let stdin = std::io::BufReader::new(std::io::stdin().lock());
    let result = anemone_runtime::compare::serve_child(
        engines(kind == "fake"),
        stdin,
        std::io::stdout().lock(),
    );
    if let Err(e) = result {
        eprintln!("child: {e}");
        std::process::exit(1);
    }
    std::process::exit(0);
}

/// This binary as the comparison child.
fn child(kind: &str) -> Arc<dyn EngineComparer> {
    Arc::new(
        ProcessComparer::new(
            std::env::current_exe().unwrap(),
            ["child_entry", "--exact", "--nocapture", "--test-threads=1"],
        )
        .env(CHILD, kind),
    )
}

fn fixture(case: &str) -> PathBuf {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../../fixtures/generated/{case}/model.onnx"));
    assert!(p.exists(), "{}: run scripts/setup.sh", p.display());
    p
}

/// A manager over counted engines; returns the load counters by name.
fn counted(
    fake: bool,
    comparer: Option<Arc<dyn EngineComparer>>,
    retime: RetimePolicy,
) -> (Manager, Vec<(&'static str, Arc<AtomicUsize>)>) {
    let mut counters = Vec::new();
    let mut builder = Manager::builder().engine_comparer(comparer).retime(retime);
    for inner in engines(fake) {
        let loads = Arc::new(AtomicUsize::new(0));
        counters.push((inner.name(), Arc::clone(&loads)));
        builder = builder.backend(Counting { inner, loads });
    }
    (builder.build().unwrap(), counters)
}

fn loads(counters: &[(&'static str, Arc<AtomicUsize>)], name: &str) -> usize {
    counters
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap()
        .1
        .load(Ordering::SeqCst)
}

fn no_retime() -> RetimePolicy {
    RetimePolicy {
        enabled: false,
        ..RetimePolicy::default()
    }
}

#[test]
fn only_the_winner_loads_in_this_process() {
    let (m, counters) = counted(false, Some(child("real")), no_retime());
    let loaded = m
        .load_model_blocking(ModelSpec::new("c", fixture("small_convnet")))
        .unwrap();
    let sel = loaded.selection();
    let winner = sel.chosen().unwrap().to_string();
    let loser = if winner == "onnxruntime" {
        "tract-cpu"
    } else {
        "onnxruntime"
    };
    assert_eq!(
        loads(&counters, &winner),
        1,
        "the winner loads here: {sel:?}"
    );
    assert_eq!(
        loads(&counters, loser),
        0,
        "the loser never loads here: {sel:?}"
    );
    assert_eq!(m.engine_comparisons().elsewhere, 1);
    let attempt = |b: &str| {
        sel.attempts
            .iter()
            .find(|a| a.backend == b)
            .unwrap()
            .clone()
    };
    assert_eq!(attempt(loser).outcome, Outcome::Slower, "{sel:?}");
    // Both timed in the child, and the faster won.
    assert!(attempt(loser).warmup_us.unwrap() >= attempt(&winner).warmup_us.unwrap());
    // It serves.
    let image = Tensor::from_vec(vec![1, 3, 32, 32], vec![0.5f32; 3 * 32 * 32]).unwrap();
    m.infer_blocking(InferRequest::new("c").input("image", image))
        .unwrap();
}

/// The fakes are 10x apart on each shape, so the choice does not depend on
/// the machine's load: the child picks what the in-process comparison picks,
/// on the synthetic warm-up and on the model's own warm-up samples (which
/// travel to the child).
#[test]
fn the_child_chooses_what_the_in_process_comparison_chooses() {
    let sample = || anemone_runtime::WarmupSample {
        name: "large".into(),
        inputs: vec![(
            "x".into(),
            Tensor::from_vec(vec![64], vec![0.5f32; 64]).unwrap(),
        )],
        count: 1,
    };
    for (with_samples, fastest) in [(false, "small-fast"), (true, "large-fast")] {
        let spec = || {
            let spec = ModelSpec::new("f", fixture("small_convnet"));
            if with_samples {
                spec.warmup(sample())
            } else {
                spec
            }
        };
        let (here, _) = counted(true, None, no_retime());
        let in_process = here.load_model_blocking(spec()).unwrap();
        assert_eq!(in_process.selection().chosen(), Some(fastest));
        let (m, counters) = counted(true, Some(child("fake")), no_retime());
        let loaded = m.load_model_blocking(spec()).unwrap();
        let sel = loaded.selection();
        assert_eq!(sel.chosen(), Some(fastest), "{sel:?}");
        assert_eq!(m.engine_comparisons().elsewhere, 1);
        let other = if fastest == "small-fast" {
            "large-fast"
        } else {
            "small-fast"
        };
        assert_eq!((loads(&counters, fastest), loads(&counters, other)), (1, 0));
    }
}

/// Loads the conv net with `comparer` and checks it fell back to the
/// in-process comparison: loaded, both engines loaded here, counted.
fn falls_back(comparer: ProcessComparer) -> Duration {
    let (m, counters) = counted(false, Some(Arc::new(comparer)), no_retime());
    let started = Instant::now();
    let loaded = m
        .load_model_blocking(ModelSpec::new("c", fixture("small_convnet")))
        .unwrap();
    let took = started.elapsed();
    let sel = loaded.selection();
    assert!(
        sel.attempts.iter().all(|a| a.warmup_us.is_some()),
        "both timed here: {sel:?}"
    );
    assert_eq!(
        (
            loads(&counters, "onnxruntime"),
            loads(&counters, "tract-cpu")
        ),
        (1, 1),
        "compared here"
    );
    assert_eq!(
        (
            m.engine_comparisons().elsewhere,
            m.engine_comparisons().fell_back
        ),
        (0, 1)
    );
    took
}

#[test]
fn a_child_that_exits_with_an_error_crashes_or_answers_nonsense_falls_back() {
    falls_back(ProcessComparer::new("false", Vec::<String>::new()));
    falls_back(ProcessComparer::new("sh", ["-c", "kill -9 $$"]));
    falls_back(ProcessComparer::new("sh", ["-c", "echo not a report"]));
    falls_back(ProcessComparer::new(
        "/nonexistent/anemone",
        Vec::<String>::new(),
    ));
    // A report that names other engines than asked.
    falls_back(ProcessComparer::new(
        "sh",
        [
            "-c",
            r#"cat >/dev/null; echo '{"engines":[{"backend":"x","outcome":"timed","us":1}]}'"#,
        ],
    ));
}

#[test]
fn a_child_that_hangs_is_killed_at_its_timeout_and_the_load_falls_back() {
    let took = falls_back(ProcessComparer::new("sleep", ["60"]).timeout(Duration::from_secs(1)));
    assert!(
        took < Duration::from_secs(30),
        "waited {took:?} for a child with a 1 s timeout"
    );
}

#[test]
fn re_timing_runs_in_the_child_too() {
    let policy = RetimePolicy {
        after_requests: 4,
        ..RetimePolicy::default()
    };
    let (m, counters) = counted(true, Some(child("fake")), policy);
    let send = |rows: usize| {
        for _ in 0..4 {
            let x = Tensor::from_vec(vec![rows], vec![0.5f32; rows]).unwrap();
            m.infer_blocking(InferRequest::new("r").input("x", x))
                .unwrap();
        }
    };
    let loaded = m
        .load_model_blocking(ModelSpec::new("r", fixture("small_convnet")))
        .unwrap();
    assert_eq!(loaded.backend(), "small-fast");
    assert_eq!(loads(&counters, "large-fast"), 0);
    // Real requests where the other engine is 10x faster: it moves, and the
    // engine it leaves was never loaded twice; only the winner loads here.
    send(64);
    m.check_health();
    let deadline = Instant::now() + Duration::from_secs(60);
    while m.model("r", None).unwrap().backend() != "large-fast" {
        assert!(
            Instant::now() < deadline,
            "never moved: {:?}",
            m.metrics().monitor.retimed
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        m.engine_comparisons(),
        anemone_runtime::ComparisonCounts {
            elsewhere: 2,
            fell_back: 0
        }
    );
    assert_eq!(
        (
            loads(&counters, "small-fast"),
            loads(&counters, "large-fast")
        ),
        (1, 1)
    );
    let instance = m.model("r", None).unwrap();
    let sel = instance.selection();
    assert_eq!(sel.moved.as_ref().unwrap().reason, "retimed", "{sel:?}");
    send(64);
}
