//! Iterative models (`LoadedModel::iterative`, Triton's request
//! rescheduling), with a double that answers a request of `x` = n after its
//! n-th run and reschedules it before: a rescheduled request goes back to
//! the model's queue, runs again on its engine instance in the request's
//! own sequence, and new requests join it in the next call.

use super::*;
use crate::support::double::{Double, DoubleLoad};
use anemone_core::{Answer, CallSequence, SequenceId};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

/// One request in one engine call: the engine, the sequence and whether
/// the call starts it, and the number of requests in the call.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Run {
    engine: usize,
    sequence: u64,
    start: bool,
    size: usize,
}

#[derive(Default)]
struct Seen {
    runs: Mutex<Vec<Run>>,
    engines: AtomicUsize,
}

struct Steps(Arc<Seen>);

struct StepsModel {
    meta: ModelMetadata,
    seen: Arc<Seen>,
    engine: usize,
    /// Runs so far, by sequence.
    counts: Mutex<HashMap<u64, usize>>,
}

impl DoubleLoad for Steps {
    const NAME: &'static str = "steps";
    fn load(&self, _: &LoadOptions) -> anemone_core::Result<Box<dyn LoadedModel>> {
        let x = TensorSpec::new("x", DataType::F32, vec![Dim::Any, Dim::Fixed(1)]);
        let y = TensorSpec::new("y", DataType::F32, vec![Dim::Any, Dim::Fixed(1)]);
        Ok(Box::new(StepsModel {
            meta: ModelMetadata::new(ModelFormat::Onnx, vec![x], vec![y]),
            seen: Arc::clone(&self.0),
            engine: self.0.engines.fetch_add(1, Ordering::Relaxed),
            counts: Mutex::default(),
        }))
    }
}

impl LoadedModel for StepsModel {
    fn metadata(&self) -> &ModelMetadata {
        &self.meta
    }
    fn backend(&self) -> &'static str {
        "steps"
    }
    fn memory_footprint(&self) -> u64 {
        0
    }
    fn infer(&self, _: &[Tensor]) -> anemone_core::Result<Vec<Tensor>> {
        panic!("the runtime gives an iterative model its requests one by one")
    }
    fn answers_each(&self) -> bool {
        true
    }
    fn iterative(&self) -> bool {
        true
    }
    fn infer_each_answered(
        &self,
        requests: &[RequestView<'_>],
    ) -> Vec<anemone_core::Result<Answer>> {
        // The second engine instance is slower: requests put back by one
        // find the other free.
        std::thread::sleep(Duration::from_millis(2 + 6 * self.engine as u64));
        let mut counts = self.counts.lock().unwrap();
        (requests.iter())
            .map(|r| {
                let Some(CallSequence {
                    id: SequenceId::Number(sequence),
                    start,
                    end: false,
                }) = r.sequence
                else {
                    panic!(
                        "an iterative model's request runs in a sequence: {:?}",
                        r.sequence
                    )
                };
                self.seen.runs.lock().unwrap().push(Run {
                    engine: self.engine,
                    sequence: *sequence,
                    start: *start,
                    size: requests.len(),
                });
                let wanted = r.inputs[0].to_vec::<f32>().unwrap()[0] as usize;
                let count = counts.entry(*sequence).or_default();
                *count = if *start { 1 } else { *count + 1 };
                if *count < wanted {
                    return Ok(Answer {
                        rescheduled: true,
                        ..Answer::default()
                    });
                }
                let outputs = vec![Tensor::from_vec(vec![1, 1], vec![*count as f32]).unwrap()];
                counts.remove(sequence);
                Ok(Answer {
                    outputs,
                    ..Answer::default()
                })
            })
            .collect()
    }
}

fn manager() -> (Manager, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let m = Manager::builder()
        .backend(Double(Steps(Arc::clone(&seen))))
        .workers(2)
        .build()
        .unwrap();
    (m, seen)
}

fn steps_spec(name: &str, instances: usize) -> ModelSpec {
    spec(name)
        .max_batch_size(4)
        .batching(Batching::default())
        .instance_group(InstanceGroup::new(instances))
}

fn runs_of(m: &Manager, n: usize) -> std::thread::JoinHandle<anemone_core::Result<Tensor>> {
    let x = Tensor::from_vec(vec![1, 1], vec![n as f32]).unwrap();
    send(m, InferRequest::new("it").input("x", x))
}

#[test]
fn a_rescheduled_request_runs_again_in_a_sequence_of_its_own_each_run_counted() {
    let (m, seen) = manager();
    m.load_model_blocking(steps_spec("it", 1)).unwrap();
    let y = runs_of(&m, 3).join().unwrap().unwrap();
    assert_eq!(y.to_vec::<f32>().unwrap(), [3.0]);
    let y = runs_of(&m, 2).join().unwrap().unwrap();
    assert_eq!(y.to_vec::<f32>().unwrap(), [2.0]);
    let runs: Vec<(u64, bool)> = (seen.runs.lock().unwrap().iter())
        .map(|r| (r.sequence, r.start))
        .collect();
    // Correlation IDs counted per model version from 1; started once.
    assert_eq!(
        runs,
        [(1, true), (1, false), (1, false), (2, true), (2, false)]
    );
    let stats = m.metrics().model("it").unwrap().metrics.clone();
    assert_eq!((stats.success, stats.execution_count), (5, 5));
}

#[test]
fn a_request_that_comes_meanwhile_joins_the_next_call_and_ends_first() {
    let (m, seen) = manager();
    m.load_model_blocking(steps_spec("it", 1)).unwrap();
    let long = runs_of(&m, 60);
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.runs.lock().unwrap().len() < 3 {
        assert!(Instant::now() < deadline, "the first request never ran");
        std::thread::sleep(Duration::from_millis(1));
    }
    let short = runs_of(&m, 2).join().unwrap().unwrap();
    assert_eq!(short.to_vec::<f32>().unwrap(), [2.0]);
    assert_eq!(
        long.join().unwrap().unwrap().to_vec::<f32>().unwrap(),
        [60.0]
    );
    let runs = seen.runs.lock().unwrap().clone();
    let (first, second) = (runs[0].sequence, runs.last().map(|r| r.sequence));
    assert_eq!(second, Some(first), "the long request ran last: {runs:?}");
    let shorts: Vec<&Run> = runs.iter().filter(|r| r.sequence != first).collect();
    assert_eq!(shorts.len(), 2, "{runs:?}");
    assert!(
        shorts.iter().all(|r| r.size == 2),
        "the short request shared both its calls with the long one: {runs:?}"
    );
    assert!(runs[..3].iter().all(|r| r.size == 1), "{runs:?}");
}

#[test]
fn with_two_instances_each_request_stays_on_its_own_with_an_id_of_its_own() {
    let (m, seen) = manager();
    m.load_model_blocking(steps_spec("it", 2)).unwrap();
    let handles: Vec<_> = (0..8).map(|_| runs_of(&m, 5)).collect();
    for h in handles {
        assert_eq!(h.join().unwrap().unwrap().to_vec::<f32>().unwrap(), [5.0]);
    }
    let runs = seen.runs.lock().unwrap().clone();
    let mut engine_of: HashMap<u64, usize> = HashMap::new();
    for r in &runs {
        let engine = *engine_of.entry(r.sequence).or_insert(r.engine);
        assert_eq!(engine, r.engine, "sequence {} moved: {runs:?}", r.sequence);
    }
    assert_eq!(engine_of.len(), 8, "eight sequences: {runs:?}");
    assert_eq!(runs.len(), 40);
}
