//! LRU eviction under the memory budget, on-demand loading and pinning,
//! through the `Manager`. A test backend, `sized`, charges what each model's
//! `bytes` setting says, counts its loads, and sleeps `x - 1000` ms when its
//! input is above 1000 (to hold a request in flight). Real numbers after an
//! on-demand load are checked on real models against ONNX Runtime's references.

mod latest;

use crate::support::double::{Double, DoubleLoad};
use crate::support::{assert_close, Case};
use anemone_backends::TractCpu;
use anemone_core::{
    DataType, Dim, ErrorKind, LoadOptions, LoadedModel, ModelFormat, ModelMetadata, Tensor,
    TensorSpec,
};
use anemone_runtime::{EvictionPolicy, InferRequest, Manager, ModelSpec};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Loads per model name.
#[derive(Default)]
struct Loads(std::sync::Mutex<std::collections::BTreeMap<String, usize>>);

impl Loads {
    fn of(&self, name: &str) -> usize {
        self.0.lock().unwrap().get(name).copied().unwrap_or(0)
    }
}

struct Sized(Arc<Loads>);

struct SizedModel(ModelMetadata, u64);

impl DoubleLoad for Sized {
    const NAME: &'static str = "sized";
    fn load(&self, o: &LoadOptions) -> anemone_core::Result<Box<dyn LoadedModel>> {
        let get = |k: &str| {
            o.settings
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        };
        let bytes = get("bytes").unwrap().parse().unwrap();
        *self
            .0
             .0
            .lock()
            .unwrap()
            .entry(get("name").unwrap())
            .or_default() += 1;
        // A load that takes a while, so concurrent requests overlap it.
        std::thread::sleep(Duration::from_millis(50));
        let t = |n: &str| TensorSpec::new(n, DataType::F32, vec![Dim::Fixed(1), Dim::Fixed(4)]);
        Ok(Box::new(SizedModel(
            ModelMetadata::new(ModelFormat::Onnx, vec![t("x")], vec![t("y")]),
            bytes,
        )))
    }
}

impl LoadedModel for SizedModel {
    fn metadata(&self) -> &ModelMetadata {
        &self.0
    }
    fn backend(&self) -> &'static str {
        "sized"
    }
    fn memory_footprint(&self) -> u64 {
        self.1
    }
    fn infer(&self, inputs: &[Tensor]) -> anemone_core::Result<Vec<Tensor>> {
        let v = inputs[0].to_vec::<f32>().unwrap()[0];
        if v > 1000.0 {
            std::thread::sleep(Duration::from_millis((v - 1000.0) as u64));
        }
        Ok(inputs.to_vec())
    }
}

/// Any existing file: the test backend does not read it.
fn any_file() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/models/add/1/model.onnx")
}

fn spec(name: &str, bytes: u64) -> ModelSpec {
    let mut s = ModelSpec::new(name, any_file());
    s.settings = vec![
        ("bytes".into(), bytes.to_string()),
        ("name".into(), name.into()),
    ];
    s
}

fn sized(budget: u64, policy: EvictionPolicy) -> (Manager, Arc<Loads>) {
    let loads = Arc::new(Loads::default());
    let m = Manager::builder()
        .backend(Double(Sized(Arc::clone(&loads))))
        .memory_budget(Some(budget))
        .eviction(policy)
        .workers(4)
        .build()
        .unwrap();
    (m, loads)
}

fn request(model: &str, x: f32) -> InferRequest {
    InferRequest::new(model).input(
        "x",
        Tensor::from_vec(vec![1, 4], vec![x, 2.0, 3.0, 4.0]).unwrap(),
    )
}

fn resident(m: &Manager) -> Vec<String> {
    m.models().iter().map(|i| i.name().to_string()).collect()
}

fn evicted(m: &Manager) -> Vec<String> {
    m.evicted().into_iter().map(|e| e.name).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_least_recently_used_idle_model_is_evicted_and_comes_back_on_demand() {
    let (m, loads) = sized(2500, EvictionPolicy::Lru);
    for name in ["a", "b"] {
        m.load_model(spec(name, 1000)).await.unwrap();
    }
    // `a` is used after `b`, so `b` is the least recently used.
    m.infer(request("a", 1.0)).await.unwrap();
    m.load_model(spec("c", 1000)).await.unwrap();
    assert_eq!(resident(&m), ["a", "c"]);
    assert_eq!(evicted(&m), ["b"]);
    let gone = &m.evicted()[0];
    assert_eq!(gone.reason, "evicted (LRU) to make room for 'c'");
    assert_eq!(gone.memory_bytes, 1000);
    assert!(m.metrics().memory_used <= 2500);

    // A request for `b` loads it again (evicting `a`, now the LRU) and is answered.
    let y = m.infer(request("b", 7.0)).await.unwrap();
    assert_eq!(
        y.output("y").unwrap().to_vec::<f32>().unwrap(),
        [7.0, 2.0, 3.0, 4.0]
    );
    assert_eq!(resident(&m), ["b", "c"]);
    assert_eq!(evicted(&m), ["a"]);
    assert_eq!(loads.of("b"), 2);
    let metrics = m.metrics();
    assert_eq!(
        metrics.eviction.evictions,
        [("a".into(), 1), ("b".into(), 1)]
    );
    assert_eq!(metrics.eviction.on_demand_loads, [("b".into(), 1)]);
    assert_eq!(metrics.eviction.load_time.count(), 4);
    assert_eq!(metrics.memory_used, 2000);
    // Its counters survive the eviction.
    assert_eq!(metrics.model("b").unwrap().metrics.success, 1);
    m.infer(request("b", 1.0)).await.unwrap();
    assert_eq!(m.metrics().model("b").unwrap().metrics.success, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_with_a_request_in_flight_is_never_evicted() {
    let (m, _) = sized(2500, EvictionPolicy::Lru);
    m.load_model(spec("a", 1000)).await.unwrap();
    m.load_model(spec("b", 1000)).await.unwrap();
    // `a` is the least recently used but busy: a request runs on it for 1.5 s.
    let busy = {
        let m = m.clone();
        tokio::spawn(async move { m.infer(request("a", 2500.0)).await })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while m.model("a", None).unwrap().in_flight() == 0 {
        assert!(Instant::now() < deadline, "the slow request never started");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    m.infer(request("b", 1.0)).await.unwrap();
    m.load_model(spec("c", 1000)).await.unwrap();
    assert_eq!(evicted(&m), ["b"], "the idle one goes, not the busy one");
    assert_eq!(
        busy.await
            .unwrap()
            .unwrap()
            .output("y")
            .unwrap()
            .to_vec::<f32>()
            .unwrap()[0],
        2500.0
    );
    // With both resident models busy or pinned, there is no room: a clear refusal.
    m.unload_model("a", None).unwrap();
    m.load_model(spec("a", 1000).pinned(true)).await.unwrap();
    let busy = {
        let m = m.clone();
        tokio::spawn(async move { m.infer(request("c", 2500.0)).await })
    };
    while m.model("c", None).unwrap().in_flight() == 0 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let e = m.load_model(spec("d", 1000)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    let text = e.to_string();
    assert!(
        text.contains("no model can be evicted now")
            && text.contains("'a' version 1 (1000 bytes, pinned)")
            && text.contains("'c' version 1 (1000 bytes, 1 requests in flight)"),
        "{text}"
    );
    busy.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_for_an_evicted_model_trigger_one_load() {
    let (m, loads) = sized(1500, EvictionPolicy::Lru);
    m.load_model(spec("cold", 1000)).await.unwrap();
    m.load_model(spec("hot", 1000)).await.unwrap();
    assert_eq!(evicted(&m), ["cold"]);
    let requests: Vec<_> = (0..16)
        .map(|i| {
            let m = m.clone();
            tokio::spawn(async move { m.infer(request("cold", i as f32)).await })
        })
        .collect();
    for (i, r) in requests.into_iter().enumerate() {
        let y = r
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("request {i}: {e}"));
        assert_eq!(y.output("y").unwrap().to_vec::<f32>().unwrap()[0], i as f32);
    }
    assert_eq!(loads.of("cold"), 2, "one load at start, one on demand");
    assert_eq!(m.metrics().eviction.on_demand_loads, [("cold".into(), 1)]);
    // The same through the blocking API.
    let m2 = m.clone();
    let y = tokio::task::spawn_blocking(move || m2.infer_blocking(request("hot", 5.0)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(y.output("y").unwrap().to_vec::<f32>().unwrap()[0], 5.0);
    assert_eq!(loads.of("hot"), 2);
}

/// Requests that keep arriving while an on-demand load ends: one that
/// looked for the model just before the load installed it, and for the
/// load just after the load was done, gets the loaded model (it got "not
/// loaded"; the tritonclient eviction test caught it once).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_arriving_as_an_on_demand_load_ends_get_the_model() {
    let (m, _) = sized(1500, EvictionPolicy::Lru);
    for round in 0..20 {
        let (cold, hot) = if round % 2 == 0 {
            ("a", "b")
        } else {
            ("b", "a")
        };
        if round == 0 {
            m.load_model(spec("a", 1000)).await.unwrap();
            m.load_model(spec("b", 1000)).await.unwrap();
        }
        // `cold` is evicted; requests arrive through its 50 ms load and after.
        assert_eq!(evicted(&m), [cold], "round {round}");
        let started = Instant::now();
        let mut requests = Vec::new();
        // Under the global limit of 256 requests in flight.
        while started.elapsed() < Duration::from_millis(70) && requests.len() < 200 {
            let m = m.clone();
            requests.push(tokio::spawn(
                async move { m.infer(request(cold, 1.0)).await },
            ));
            std::thread::sleep(Duration::from_micros(300));
        }
        for (i, r) in requests.into_iter().enumerate() {
            r.await
                .unwrap()
                .unwrap_or_else(|e| panic!("round {round} request {i}: {e}"));
        }
        // Loading `cold` evicted `hot`: the next round asks for it.
        assert_eq!(evicted(&m), [hot], "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_model_is_never_evicted() {
    let (m, _) = sized(2500, EvictionPolicy::Lru);
    m.load_model(spec("pinned", 1000).pinned(true))
        .await
        .unwrap();
    for name in ["b", "c", "d", "e"] {
        m.load_model(spec(name, 1000)).await.unwrap();
    }
    assert_eq!(resident(&m), ["e", "pinned"]);
    assert_eq!(evicted(&m), ["b", "c", "d"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_larger_than_the_budget_is_refused_with_both_sizes() {
    let (m, _) = sized(2500, EvictionPolicy::Lru);
    m.load_model(spec("a", 1000)).await.unwrap();
    let e = m.load_model(spec("huge", 3000)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    let text = e.to_string();
    assert!(
        text.contains("needs 3000 bytes") && text.contains("whole memory budget of 2500 bytes"),
        "{text}"
    );
    assert_eq!(
        resident(&m),
        ["a"],
        "nothing was evicted for a load that can never fit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_eviction_a_load_beyond_the_budget_is_refused() {
    let (m, _) = sized(1500, EvictionPolicy::Off);
    m.load_model(spec("a", 1000)).await.unwrap();
    let e = m.load_model(spec("b", 1000)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Overloaded, "{e}");
    assert_eq!(resident(&m), ["a"]);
    assert!(m.evicted().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unloaded_model_is_forgotten_not_loaded_on_demand() {
    let (m, loads) = sized(1500, EvictionPolicy::Lru);
    m.load_model(spec("a", 1000)).await.unwrap();
    m.load_model(spec("b", 1000)).await.unwrap();
    assert_eq!(evicted(&m), ["a"]);
    assert_eq!(m.unload_model("a", None).unwrap(), Vec::<u64>::new());
    assert!(m.evicted().is_empty());
    let e = m.infer(request("a", 1.0)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert_eq!(loads.of("a"), 1);
}

/// Real models through tract, a budget that holds two of three: round-robin
/// requests all succeed with ONNX Runtime's numbers, at most two are resident.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_models_round_robin_under_a_budget_for_two() {
    let cases = ["small_convnet", "ocr_cls", "transformer_block"];
    let probe = Manager::builder().backend(TractCpu).build().unwrap();
    let mut sizes = Vec::new();
    for name in cases {
        let case = Case::load(name);
        let m = probe
            .load_model(ModelSpec::new(name, case.model_path()))
            .await
            .unwrap();
        sizes.push(m.memory_footprint());
    }
    // Room for any two (each is charged something), never for all three.
    assert!(sizes.iter().all(|s| *s > 0), "{sizes:?}");
    let budget = sizes.iter().sum::<u64>() - 1;
    let m = Manager::builder()
        .backend(TractCpu)
        .memory_budget(Some(budget))
        .eviction(EvictionPolicy::Lru)
        .build()
        .unwrap();
    for name in cases {
        m.load_model(ModelSpec::new(name, Case::load(name).model_path()))
            .await
            .unwrap();
    }
    let resident_max = Arc::new(AtomicUsize::new(0));
    for round in 0..3 {
        for name in cases {
            let case = Case::load(name);
            let run = &case.runs[round % case.runs.len()];
            let mut r = InferRequest::new(name);
            r.inputs = case.inputs(run);
            let response = m
                .infer(r)
                .await
                .unwrap_or_else(|e| panic!("{name} round {round}: {}", e.chain_string()));
            for out in &run.outputs {
                assert_close(
                    &format!("{name} round {round} {}", out.name),
                    response.output(&out.name).unwrap(),
                    &case.tensor(&out.file),
                    case.rtol,
                    case.atol,
                );
            }
            resident_max.fetch_max(m.models().len(), Ordering::Relaxed);
            assert!(m.metrics().memory_used <= budget);
        }
    }
    assert!(resident_max.load(Ordering::Relaxed) <= 2);
    let on_demand: u64 = m
        .metrics()
        .eviction
        .on_demand_loads
        .iter()
        .map(|(_, n)| n)
        .sum();
    assert!(
        on_demand >= 3,
        "round robin over three with room for two reloads: {on_demand}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_with_a_sequence_open_is_not_evicted_until_the_sequence_closes() {
    use anemone_runtime::{CorrelationId, SequenceSettings};
    let (m, loads) = sized(2500, EvictionPolicy::Lru);
    let settings = SequenceSettings {
        max_idle: Duration::from_millis(300),
        ..SequenceSettings::default()
    };
    m.load_model(spec("s", 1000).sequence(settings))
        .await
        .unwrap();
    m.load_model(spec("b", 1000)).await.unwrap();
    let step = |x: f32, start: bool, end: bool| {
        request("s", x).sequence(CorrelationId::Number(9), start, end)
    };
    // A sequence is open on `s` (the least recently used), between requests.
    m.infer(step(1.0, true, false)).await.unwrap();
    m.infer(request("b", 1.0)).await.unwrap();
    assert_eq!(m.model("s", None).unwrap().open_sequences(), Some(1));
    m.load_model(spec("c", 1000)).await.unwrap();
    assert_eq!(evicted(&m), ["b"], "the model with an open sequence stays");
    // The sequence goes on where it was.
    m.infer(step(2.0, false, false)).await.unwrap();
    assert_eq!(loads.of("s"), 1, "never unloaded");
    // With the sequence open and `c` pinned, a fourth model finds no room
    // and is told why.
    m.unload_model("c", None).unwrap();
    m.load_model(spec("c", 1000).pinned(true)).await.unwrap();
    let e = m.load_model(spec("d", 1000)).await.unwrap_err();
    assert!(e.to_string().contains("1 sequences open"), "{e}");
    // Once idle past max_idle, the sequence is closed and `s` can go.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(m.model("s", None).unwrap().open_sequences(), Some(0));
    m.load_model(spec("d", 1000)).await.unwrap();
    assert!(evicted(&m).contains(&"s".to_string()), "{:?}", evicted(&m));
}
