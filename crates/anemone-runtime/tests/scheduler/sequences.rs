//! Sequence models (Triton's `sequence_batching`) through the library: a
//! sequence's requests run one at a time, in order, while other sequences'
//! requests go on; the rules refuse what Triton refuses.

use super::*;
use crate::support::double::{Double, DoubleLoad};
use anemone_runtime::{CorrelationId, SequenceSettings};

fn in_sequence(r: InferRequest, id: u64, start: bool, end: bool) -> InferRequest {
    r.sequence(CorrelationId::Number(id), start, end)
}

/// Loads "s": a batched sequence model without controls or state.
fn load_sequence_model(m: &Manager) {
    let settings = SequenceSettings {
        max_idle: Duration::from_secs(30),
        controls: Vec::new(),
        states: Vec::new(),
    };
    m.load_model_blocking(
        spec("s")
            .max_batch_size(8)
            .batching(Batching::default())
            .sequence(settings),
    )
    .unwrap();
}

#[test]
fn a_sequence_waits_for_its_own_request_and_no_other() {
    let (m, log) = rows_manager();
    load_sequence_model(&m);
    log.close();
    // Sequence 1's first request reaches the engine and is held there.
    let a1 = send(&m, in_sequence(request("s", 1.0, 1, 1), 1, true, false));
    log.wait_for_calls(1);
    // Its second request waits for it (pending, as Triton counts a
    // sequence's backlog, but not run) ...
    let a2 = send(&m, in_sequence(request("s", 2.0, 1, 1), 1, false, true));
    wait_queued(&m, "s", 1);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(log.calls.lock().unwrap().len(), 1, "only a1 ran");
    // ... while another sequence's request reaches the queue.
    let b1 = send(&m, in_sequence(request("s", 10.0, 1, 1), 2, true, true));
    wait_queued(&m, "s", 2);
    assert_eq!(m.model("s", None).unwrap().open_sequences(), Some(2));
    log.open();
    for (handle, want) in [(a1, 2.0), (a2, 4.0), (b1, 20.0)] {
        assert_eq!(
            handle.join().unwrap().unwrap().to_vec::<f32>().unwrap(),
            [want]
        );
    }
    // Sequence 1's requests ran in the order they were sent.
    let firsts: Vec<f32> = log
        .calls
        .lock()
        .unwrap()
        .iter()
        .flat_map(|c| c.1.clone())
        .collect();
    let at = |v: f32| firsts.iter().position(|f| *f == v).unwrap();
    assert!(at(1.0) < at(2.0), "{firsts:?}");
    // Both sequences ended.
    assert_eq!(m.model("s", None).unwrap().open_sequences(), Some(0));
    let e = m
        .infer_blocking(in_sequence(request("s", 3.0, 1, 1), 1, false, false))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.to_string().contains("must specify the START flag"), "{e}");
    let e = m.infer_blocking(request("s", 3.0, 1, 1)).unwrap_err();
    assert!(
        e.to_string()
            .contains("non-zero or non-empty correlation ID"),
        "{e}"
    );
    let e = m
        .infer_blocking(in_sequence(request("s", 3.0, 2, 1), 5, true, false))
        .unwrap_err();
    assert!(e.to_string().contains("must specify batch-size 1"), "{e}");
}

#[test]
fn requests_waiting_for_their_turn_hold_no_permit() {
    // Two requests in flight at most, server-wide.
    let (m, log) = rows_manager_with(|b| b.max_concurrency(Some(2)));
    load_sequence_model(&m);
    log.close();
    // One client floods sequence 1: its first request holds the engine,
    // five more wait for their turn.
    let mut flood = vec![send(
        &m,
        in_sequence(request("s", 1.0, 1, 1), 1, true, false),
    )];
    log.wait_for_calls(1);
    for i in 2..=6 {
        flood.push(send(
            &m,
            in_sequence(request("s", i as f32, 1, 1), 1, false, i == 6),
        ));
        std::thread::sleep(Duration::from_millis(20));
    }
    // Another client's sequence still gets the second permit: it is
    // admitted and queued, not refused.
    let other = send(&m, in_sequence(request("s", 10.0, 1, 1), 2, true, true));
    wait_queued(&m, "s", 1);
    log.open();
    assert_eq!(
        other.join().unwrap().unwrap().to_vec::<f32>().unwrap(),
        [20.0]
    );
    for (i, handle) in flood.into_iter().enumerate() {
        assert_eq!(
            handle.join().unwrap().unwrap().to_vec::<f32>().unwrap(),
            [2.0 * (i + 1) as f32]
        );
    }
    assert_eq!(m.model("s", None).unwrap().open_sequences(), Some(0));
}

/// A backend whose model keeps a byte state of the size its input asks for:
/// `x` (f32 `[1]`) and `s_in` (u8 `[n]`) in; `y`, the length of `s_in`,
/// and `s_out`, `x` zero bytes (pages from the allocator, never touched,
/// so a state past 1 GiB costs nothing here), out.
struct Hoard;

struct HoardModel(ModelMetadata);

impl DoubleLoad for Hoard {
    const NAME: &'static str = "hoard";
    fn load(&self, _: &LoadOptions) -> anemone_core::Result<Box<dyn LoadedModel>> {
        let spec = |n: &str, dtype| TensorSpec::new(n, dtype, vec![Dim::Any]);
        Ok(Box::new(HoardModel(ModelMetadata::new(
            ModelFormat::Onnx,
            vec![spec("x", DataType::F32), spec("s_in", DataType::U8)],
            vec![spec("y", DataType::F32), spec("s_out", DataType::U8)],
        ))))
    }
}

impl LoadedModel for HoardModel {
    fn metadata(&self) -> &ModelMetadata {
        &self.0
    }
    fn backend(&self) -> &'static str {
        "hoard"
    }
    fn memory_footprint(&self) -> u64 {
        0
    }
    fn infer(&self, inputs: &[Tensor]) -> anemone_core::Result<Vec<Tensor>> {
        let size = inputs[0].to_vec::<f32>().unwrap()[0] as usize;
        let held = inputs[1].shape()[0] as f32;
        let state = anemone_core::Bytes::from(vec![0u8; size]);
        Ok(vec![
            Tensor::from_vec(vec![1], vec![held]).unwrap(),
            Tensor::from_bytes(DataType::U8, vec![size], state).unwrap(),
        ])
    }
}

#[test]
fn a_state_grown_past_its_limit_fails_its_request_and_counts_as_a_failure() {
    let m = Manager::builder().backend(Double(Hoard)).build().unwrap();
    let settings = SequenceSettings {
        max_idle: Duration::from_secs(30),
        controls: Vec::new(),
        states: vec![anemone_runtime::SequenceState {
            input: "s_in".into(),
            output: "s_out".into(),
            initial: Tensor::from_vec(vec![1], vec![0u8]).unwrap(),
        }],
    };
    m.load_model_blocking(spec("hoard").sequence(settings))
        .unwrap();
    let ask = |size: usize, start: bool, end: bool| {
        let x = Tensor::from_vec(vec![1], vec![size as f32]).unwrap();
        let r = InferRequest::new("hoard").input("x", x);
        m.infer_blocking(in_sequence(r, 7, start, end))
            .map(|answer| answer.output("y").unwrap().to_vec::<f32>().unwrap()[0])
    };
    assert_eq!(ask(5, true, false).unwrap(), 1.0, "the initial state");
    let e = ask(anemone_runtime::MAX_STATE_BYTES + (1 << 20), false, false).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.to_string().contains("start a new one"), "{e}");
    assert_eq!(ask(3, false, true).unwrap(), 5.0, "the state from before");
    let stats = m.metrics().model("hoard").unwrap().metrics.clone();
    assert_eq!(
        (stats.success, stats.failure_count()),
        (2, 1),
        "the request whose state was not kept failed"
    );
}
