//! Decoupled models (`Manager::infer_decoupled`), with a double whose
//! engine answers each request from a thread of its own, after its call
//! has returned: one response per value of `x` (`y` = twice the value, and
//! `k`, its index), then the final flag alone. The request's `mode`
//! parameter makes it fail its call (`fail`), drop the request without its
//! final flag (`drop`), or send until its client has gone (`until_cancelled`).

use super::*;
use crate::support::double::{Double, DoubleLoad};
use anemone_core::{Responder, Response};
use anemone_runtime::Streamed;

/// What the double saw.
#[derive(Default)]
struct Seen {
    /// Requests per engine call.
    calls: Mutex<Vec<usize>>,
    /// Responses sent by `until_cancelled` requests before they saw their
    /// client had gone, one entry per such request.
    cancelled_after: Mutex<Vec<usize>>,
}

struct Streams(Arc<Seen>);

struct StreamsModel {
    meta: ModelMetadata,
    seen: Arc<Seen>,
}

impl DoubleLoad for Streams {
    const NAME: &'static str = "streams";
    fn load(&self, _: &LoadOptions) -> anemone_core::Result<Box<dyn LoadedModel>> {
        let x = TensorSpec::new("x", DataType::F32, vec![Dim::Any]);
        let y = TensorSpec::new("y", DataType::F32, vec![Dim::Fixed(1)]);
        let k = TensorSpec::new("k", DataType::I64, vec![Dim::Fixed(1)]);
        Ok(Box::new(StreamsModel {
            meta: ModelMetadata::new(ModelFormat::Onnx, vec![x], vec![y, k]),
            seen: Arc::clone(&self.0),
        }))
    }
}

impl LoadedModel for StreamsModel {
    fn metadata(&self) -> &ModelMetadata {
        &self.meta
    }
    fn backend(&self) -> &'static str {
        "streams"
    }
    fn memory_footprint(&self) -> u64 {
        0
    }
    fn infer(&self, _: &[Tensor]) -> anemone_core::Result<Vec<Tensor>> {
        panic!("the runtime never asks a decoupled model for one answer")
    }
    fn answers_each(&self) -> bool {
        true
    }
    fn decoupled(&self) -> bool {
        true
    }
    fn infer_each(&self, requests: &[RequestView<'_>]) -> Vec<anemone_core::Result<Vec<Tensor>>> {
        self.seen.calls.lock().unwrap().push(requests.len());
        requests
            .iter()
            .map(|r| {
                let mode = r.parameters.iter().find(|(k, _)| k == "mode");
                let mode = match mode {
                    Some((_, Parameter::String(m))) => m.as_str(),
                    _ => "",
                };
                if mode == "fail" {
                    return Err(anemone_core::Error::Backend {
                        backend: "streams".into(),
                        message: "asked to fail".into(),
                        retryable: false,
                        source: None,
                    });
                }
                let responder = r
                    .responder
                    .expect("a decoupled request has a responder")
                    .clone();
                let values = r.inputs[0].to_vec::<f32>().unwrap();
                let (mode, seen) = (mode.to_string(), Arc::clone(&self.seen));
                std::thread::spawn(move || respond(&responder, &values, &mode, &seen));
                Ok(Vec::new())
            })
            .collect()
    }
}

/// Sends a request's responses (after its call returned: its thread
/// starts while the call is still running, and sleeps first).
fn respond(responder: &Responder, values: &[f32], mode: &str, seen: &Seen) {
    std::thread::sleep(Duration::from_millis(20));
    let one = |k: usize| Response {
        parameters: Vec::new(),
        outputs: Ok(vec![
            (
                "y".into(),
                Tensor::from_vec(vec![1], vec![2.0 * values[k]]).unwrap(),
            ),
            (
                "k".into(),
                Tensor::from_vec(vec![1], vec![k as i64]).unwrap(),
            ),
        ]),
    };
    if mode == "until_cancelled" {
        let mut sent = 0;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !responder.cancelled() && Instant::now() < deadline {
            responder.send(Some(one(0)), false);
            sent += 1;
            std::thread::sleep(Duration::from_millis(5));
        }
        seen.cancelled_after.lock().unwrap().push(sent);
        responder.send(None, true);
        return;
    }
    for k in 0..values.len() {
        responder.send(Some(one(k)), false);
    }
    if mode != "drop" {
        responder.send(None, true);
    }
}

fn manager() -> (Manager, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let m = Manager::builder()
        .backend(Double(Streams(Arc::clone(&seen))))
        .workers(2)
        .build()
        .unwrap();
    (m, seen)
}

fn ask(model: &str, values: &[f32]) -> InferRequest {
    let x = Tensor::from_vec(vec![values.len()], values.to_vec()).unwrap();
    InferRequest::new(model).input("x", x)
}

/// Every response of a request, until its last.
fn all(mut responses: anemone_runtime::Responses) -> Vec<Streamed> {
    let mut out = Vec::new();
    while let Some(next) = responses.blocking_next() {
        out.push(next);
    }
    out
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn a_decoupled_model_streams_each_response_after_its_call_and_one_answer_is_refused() {
    let (m, seen) = manager();
    m.load_model_blocking(spec("s")).unwrap();
    let responses = block_on(m.infer_decoupled(ask("s", &[1.5, -2.0, 4.0]).id("r1"))).unwrap();
    let got = all(responses);
    assert_eq!(got.len(), 4, "three responses and the final flag: {got:?}");
    for (k, (streamed, x)) in got.iter().zip([1.5f32, -2.0, 4.0]).enumerate() {
        assert!(!streamed.last);
        let r = streamed.response.as_ref().unwrap().as_ref().unwrap();
        assert_eq!(r.id.as_deref(), Some("r1"));
        assert_eq!((r.model.as_str(), r.version), ("s", 1));
        assert_eq!(r.output("y").unwrap().to_vec::<f32>().unwrap(), [2.0 * x]);
        assert_eq!(r.output("k").unwrap().to_vec::<i64>().unwrap(), [k as i64]);
    }
    assert!(got[3].last && got[3].response.is_none());
    // The outputs asked for, only.
    let got = all(block_on(m.infer_decoupled(ask("s", &[3.0]).output("k"))).unwrap());
    let r = got[0].response.as_ref().unwrap().as_ref().unwrap();
    let names: Vec<&str> = r.outputs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["k"]);
    // One answer cannot be given: refused, counted as a refusal, never run.
    let e = m.infer_blocking(ask("s", &[1.0])).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    assert!(e.to_string().contains("is decoupled"), "{e}");
    let e = block_on(m.infer(ask("s", &[1.0]))).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    assert_eq!(*seen.calls.lock().unwrap(), [1, 1]);
    let stats = m.metrics().model("s").unwrap().metrics.clone();
    assert_eq!((stats.success, stats.execution_count), (2, 2));
}

#[test]
fn a_failed_call_or_a_request_dropped_without_its_final_flag_ends_its_responses_with_an_error() {
    let (m, _) = manager();
    m.load_model_blocking(spec("s")).unwrap();
    let failing = ask("s", &[1.0]).parameter("mode", Parameter::String("fail".into()));
    let got = all(block_on(m.infer_decoupled(failing)).unwrap());
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].last);
    let e = got[0].response.as_ref().unwrap().as_ref().unwrap_err();
    assert!(e.to_string().contains("asked to fail"), "{e}");
    let dropping = ask("s", &[1.0, 2.0]).parameter("mode", Parameter::String("drop".into()));
    let got = all(block_on(m.infer_decoupled(dropping)).unwrap());
    assert_eq!(got.len(), 3, "two responses, then the error: {got:?}");
    assert!(got[..2]
        .iter()
        .all(|s| !s.last && s.response.as_ref().unwrap().is_ok()));
    let e = got[2].response.as_ref().unwrap().as_ref().unwrap_err();
    assert!(got[2].last);
    assert!(
        e.to_string().contains("without sending its final response"),
        "{e}"
    );
    let stats = m.metrics().model("s").unwrap().metrics.clone();
    assert_eq!(stats.success, 1, "the dropped request's call went well");
    assert_eq!(
        stats.failures,
        [(ErrorKind::Backend, 1)],
        "the failed call counts"
    );
}

#[test]
fn a_client_that_stops_reading_is_seen_as_cancelled_by_the_model() {
    let (m, seen) = manager();
    m.load_model_blocking(spec("s")).unwrap();
    let endless = ask("s", &[1.0]).parameter("mode", Parameter::String("until_cancelled".into()));
    let mut responses = block_on(m.infer_decoupled(endless)).unwrap();
    for _ in 0..3 {
        let next = responses.blocking_next().unwrap();
        assert!(!next.last);
    }
    drop(responses);
    let deadline = Instant::now() + Duration::from_secs(5);
    while seen.cancelled_after.lock().unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the model never saw its client go"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let sent = seen.cancelled_after.lock().unwrap()[0];
    assert!(
        (3..1000).contains(&sent),
        "{sent} responses before the cancel was seen"
    );
}

#[test]
fn a_request_holds_its_permit_until_its_last_response_or_its_client_goes() {
    let seen = Arc::new(Seen::default());
    let m = Manager::builder()
        .backend(Double(Streams(Arc::clone(&seen))))
        .workers(2)
        .max_concurrency(Some(1))
        .build()
        .unwrap();
    m.load_model_blocking(spec("s")).unwrap();
    let endless = ask("s", &[1.0]).parameter("mode", Parameter::String("until_cancelled".into()));
    let mut streaming = block_on(m.infer_decoupled(endless)).unwrap();
    // Its engine call has returned (responses come from the model's thread).
    assert!(!streaming.blocking_next().unwrap().last);
    assert_eq!(m.metrics().in_flight, 1, "still streaming: in flight");
    let Err(e) = block_on(m.infer_decoupled(ask("s", &[2.0]))) else {
        panic!("a second request was admitted over --max-concurrency 1 while the first streamed");
    };
    assert_eq!(e.kind(), ErrorKind::Overloaded, "{e}");
    // The client goes: the permit comes back (when the model next looks).
    drop(streaming);
    let deadline = Instant::now() + Duration::from_secs(5);
    while m.metrics().in_flight != 0 {
        assert!(Instant::now() < deadline, "the permit never came back");
        std::thread::sleep(Duration::from_millis(5));
    }
    // A request that ends gives it back with its last response.
    for _ in 0..3 {
        let got = all(block_on(m.infer_decoupled(ask("s", &[1.0, 2.0]))).unwrap());
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(m.metrics().in_flight, 0);
    }
}

#[test]
fn a_caller_that_does_not_read_ends_its_request_at_the_buffer_limit() {
    let seen = Arc::new(Seen::default());
    let m = Manager::builder()
        .backend(Double(Streams(Arc::clone(&seen))))
        .workers(2)
        .stream_buffer_bytes(4096)
        .build()
        .unwrap();
    m.load_model_blocking(spec("s")).unwrap();
    let endless = ask("s", &[1.0]).parameter("mode", Parameter::String("until_cancelled".into()));
    let responses = block_on(m.infer_decoupled(endless)).unwrap();
    // Nobody reads: the model is told its client has gone once 4 KiB wait
    // (each response counts 256 bytes at least).
    let deadline = Instant::now() + Duration::from_secs(5);
    while seen.cancelled_after.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the model was never stopped");
        std::thread::sleep(Duration::from_millis(5));
    }
    let sent = seen.cancelled_after.lock().unwrap()[0];
    assert!(
        (17..40).contains(&sent),
        "{sent} sent before the model stopped"
    );
    let got = all(responses);
    assert_eq!(got.len(), 17, "16 responses fit, then the error: {got:?}");
    assert!(got[..16]
        .iter()
        .all(|s| !s.last && s.response.as_ref().unwrap().is_ok()));
    assert!(got[16].last);
    let e = got[16].response.as_ref().unwrap().as_ref().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Overloaded, "{e}");
    assert!(e.to_string().contains("response buffer"), "{e}");
    assert_eq!(m.metrics().in_flight, 0);
}
