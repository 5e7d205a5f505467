//! The scheduler tests' double: a backend whose model doubles `x` into
//! `y` and logs every engine call, with the helpers that drive it.

use super::*;
use crate::support::double::{Double, DoubleLoad};

/// What the double's engines saw, shared by every engine it loads.
#[derive(Default)]
pub(super) struct Log {
    /// One entry per engine call: `(engine id, first value of each row, row width)`.
    pub(super) calls: Mutex<Vec<(usize, Vec<f32>, usize)>>,
    /// Engines loaded so far.
    pub(super) loads: Mutex<usize>,
    /// While true, engine calls wait (a stuck engine that lets work pile up).
    pub(super) closed: Mutex<bool>,
    pub(super) opened: Condvar,
    /// Milliseconds each call sleeps.
    pub(super) sleep_ms: Mutex<u64>,
    /// A call whose first value is this waits until it is cleared.
    pub(super) hold: Mutex<Option<f32>>,
    /// Engine calls running now, and the most that ever ran at once.
    pub(super) running: Mutex<(usize, usize)>,
    /// One entry per engine call: `(engine id, the calling thread's name)`.
    pub(super) threads: Mutex<Vec<(usize, String)>>,
    /// A call with a row whose first value is this fails (a bad input).
    pub(super) poison: Mutex<Option<f32>>,
    /// While true, the engine adopts every input (`adopt_input`) as a copy.
    pub(super) adopt: Mutex<bool>,
    /// While true, `adopt_input` panics (an engine's bug).
    pub(super) adopt_panics: std::sync::atomic::AtomicBool,
    /// Addresses of the adopted copies, and of every input an unstacked
    /// call ran on.
    pub(super) adopted: Mutex<Vec<usize>>,
    pub(super) seen: Mutex<Vec<usize>>,
    /// While true, the engine answers each request on its own
    /// (`answers_each`, as a Python model does).
    pub(super) each: std::sync::atomic::AtomicBool,
    /// The id and parameters of every request `infer_each` saw.
    pub(super) requests: Mutex<Vec<(Option<String>, Vec<(String, Parameter)>)>>,
}

impl Log {
    /// Makes engine calls wait, for at most 5 s: a broken scheduler then
    /// fails an assertion instead of hanging the test.
    pub(super) fn close(self: &Arc<Self>) {
        *self.closed.lock().unwrap() = true;
        let log = Arc::clone(self);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(5));
            log.open();
        });
    }
    pub(super) fn open(&self) {
        *self.closed.lock().unwrap() = false;
        self.opened.notify_all();
    }
    /// Makes calls whose first value is `first` wait, for at most 5 s.
    pub(super) fn hold(self: &Arc<Self>, first: f32) {
        *self.hold.lock().unwrap() = Some(first);
        let log = Arc::clone(self);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(5));
            log.release();
        });
    }
    pub(super) fn release(&self) {
        *self.hold.lock().unwrap() = None;
        let _closed = self.closed.lock().unwrap();
        self.opened.notify_all();
    }
    /// The first value of every row each call ran, in call order.
    pub(super) fn rows(&self) -> Vec<Vec<f32>> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .map(|c| c.1.clone())
            .collect()
    }
    /// Waits until `n` engine calls have started.
    pub(super) fn wait_for_calls(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.calls.lock().unwrap().len() < n {
            assert!(Instant::now() < deadline, "{n} engine calls never started");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// A backend whose model doubles `x` (f32, `[batch, width]`, both dynamic)
/// into `y`, logging every call.
pub(super) struct Rows(Arc<Log>);

pub(super) struct RowsModel {
    pub(super) id: usize,
    pub(super) meta: ModelMetadata,
    pub(super) log: Arc<Log>,
}

impl DoubleLoad for Rows {
    const NAME: &'static str = "rows";
    fn load(&self, _: &LoadOptions) -> anemone_core::Result<Box<dyn LoadedModel>> {
        let mut loads = self.0.loads.lock().unwrap();
        *loads += 1;
        let spec = |n: &str| TensorSpec::new(n, DataType::F32, vec![Dim::Any, Dim::Any]);
        Ok(Box::new(RowsModel {
            id: *loads - 1,
            meta: ModelMetadata::new(ModelFormat::Onnx, vec![spec("x")], vec![spec("y")]),
            log: self.0.clone(),
        }))
    }
}

impl LoadedModel for RowsModel {
    fn metadata(&self) -> &ModelMetadata {
        &self.meta
    }
    fn backend(&self) -> &'static str {
        "rows"
    }
    fn memory_footprint(&self) -> u64 {
        0
    }
    fn infer(&self, inputs: &[Tensor]) -> anemone_core::Result<Vec<Tensor>> {
        let x = &inputs[0];
        let width = x.shape()[1];
        self.log.seen.lock().unwrap().push(address(x));
        let values = x.to_vec::<f32>().unwrap();
        let firsts = values.chunks(width.max(1)).map(|r| r[0]).collect();
        self.log
            .calls
            .lock()
            .unwrap()
            .push((self.id, firsts, width));
        let thread = std::thread::current()
            .name()
            .unwrap_or("unnamed")
            .to_string();
        self.log.threads.lock().unwrap().push((self.id, thread));
        let poison = *self.log.poison.lock().unwrap();
        if let Some(p) = poison.filter(|p| values.chunks(width.max(1)).any(|r| r[0] == *p)) {
            return Err(anemone_core::Error::Backend {
                backend: "rows".into(),
                message: format!("a row starts with {p}"),
                retryable: false,
                source: None,
            });
        }
        let mut closed = self.log.closed.lock().unwrap();
        let held = || (values.first()).is_some_and(|v| *self.log.hold.lock().unwrap() == Some(*v));
        while *closed || held() {
            closed = self.log.opened.wait(closed).unwrap();
        }
        drop(closed);
        {
            let mut running = self.log.running.lock().unwrap();
            running.0 += 1;
            running.1 = running.1.max(running.0);
        }
        let sleep = *self.log.sleep_ms.lock().unwrap();
        std::thread::sleep(Duration::from_millis(sleep));
        self.log.running.lock().unwrap().0 -= 1;
        let y = values.iter().map(|v| v * 2.0).collect();
        Ok(vec![Tensor::from_vec(x.shape().to_vec(), y).unwrap()])
    }
    fn answers_each(&self) -> bool {
        self.log.each.load(std::sync::atomic::Ordering::Relaxed)
    }
    /// One call for every request, logged as one; each request doubled, or
    /// failed alone when its first value is the poison.
    fn infer_each(&self, requests: &[RequestView<'_>]) -> Vec<anemone_core::Result<Vec<Tensor>>> {
        let firsts = requests
            .iter()
            .flat_map(|r| {
                r.inputs[0]
                    .to_vec::<f32>()
                    .unwrap()
                    .into_iter()
                    .step_by(r.inputs[0].shape()[1].max(1))
            })
            .collect();
        let width = requests[0].inputs[0].shape()[1];
        self.log
            .calls
            .lock()
            .unwrap()
            .push((self.id, firsts, width));
        self.log.requests.lock().unwrap().extend(
            requests
                .iter()
                .map(|r| (r.id.map(str::to_string), r.parameters.to_vec())),
        );
        let mut closed = self.log.closed.lock().unwrap();
        while *closed {
            closed = self.log.opened.wait(closed).unwrap();
        }
        drop(closed);
        let poison = *self.log.poison.lock().unwrap();
        requests
            .iter()
            .map(|r| {
                let x = &r.inputs[0];
                let values = x.to_vec::<f32>().unwrap();
                if poison == values.first().copied() {
                    return Err(anemone_core::Error::Backend {
                        backend: "rows".into(),
                        message: format!("a request starts with {}", values[0]),
                        retryable: false,
                        source: None,
                    });
                }
                let y = values.iter().map(|v| v * 2.0).collect();
                Ok(vec![Tensor::from_vec(x.shape().to_vec(), y).unwrap()])
            })
            .collect()
    }
    fn adopt_input(&self, ix: usize, input: &Tensor) -> Option<Tensor> {
        assert_eq!(ix, 0, "the double has one input");
        if self
            .log
            .adopt_panics
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            panic!("the double's adopt_input panics");
        }
        if !*self.log.adopt.lock().unwrap() {
            return None;
        }
        let copy = anemone_core::Bytes::copy_from_slice(input.as_bytes().unwrap());
        let adopted = Tensor::from_bytes(input.dtype(), input.shape().to_vec(), copy).unwrap();
        self.log.adopted.lock().unwrap().push(address(&adopted));
        Some(adopted)
    }
}

/// Where a tensor's bytes are.
pub(super) fn address(t: &Tensor) -> usize {
    t.as_bytes().unwrap().as_ptr() as usize
}

pub(super) fn rows_manager() -> (Manager, Arc<Log>) {
    rows_manager_with(|b| b)
}

/// [`rows_manager`] with more settings of the builder.
pub(super) fn rows_manager_with(
    settings: impl FnOnce(anemone_runtime::ManagerBuilder) -> anemone_runtime::ManagerBuilder,
) -> (Manager, Arc<Log>) {
    let log = Arc::new(Log::default());
    let m = settings(
        Manager::builder()
            .backend(Double(Rows(log.clone())))
            .workers(4),
    )
    .build()
    .unwrap();
    (m, log)
}

pub(super) fn spec(name: &str) -> ModelSpec {
    ModelSpec::new(name, Case::load("identity").model_path())
}

/// A request of `rows` rows of `width` values; row `r` starts at `first + r`.
pub(super) fn request(model: &str, first: f32, rows: usize, width: usize) -> InferRequest {
    let values = (0..rows)
        .flat_map(|r| (0..width).map(move |c| first + r as f32 + c as f32 / 100.0))
        .collect();
    InferRequest::new(model).input("x", Tensor::from_vec(vec![rows, width], values).unwrap())
}

/// Sends a request on its own thread.
pub(super) fn send(
    m: &Manager,
    r: InferRequest,
) -> std::thread::JoinHandle<anemone_core::Result<Tensor>> {
    let m = m.clone();
    std::thread::spawn(move || {
        m.infer_blocking(r)
            .map(|resp| resp.output("y").unwrap().clone())
    })
}

/// Waits until the model's queue holds `n` requests.
pub(super) fn wait_queued(m: &Manager, model: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while m.model(model, None).unwrap().queued() < n {
        assert!(
            Instant::now() < deadline,
            "{model}: {n} requests never queued"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

pub(super) fn queue_of(size: Option<usize>) -> QueueSettings {
    QueueSettings {
        default_policy: QueuePolicy {
            max_queue_size: size,
            ..QueuePolicy::default()
        },
        ..QueueSettings::default()
    }
}
