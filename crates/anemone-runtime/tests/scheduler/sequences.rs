//! Sequence models (Triton's `sequence_batching`) through the library: a
//! sequence's requests run one at a time, in order, while other sequences'
//! requests go on; the rules refuse what Triton refuses.

use super::*;
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
    // Its second request waits for it: it does not even reach the queue ...
    let a2 = send(&m, in_sequence(request("s", 2.0, 1, 1), 1, false, true));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(m.model("s", None).unwrap().queued(), 0);
    // ... while another sequence's request does.
    let b1 = send(&m, in_sequence(request("s", 10.0, 1, 1), 2, true, true));
    wait_queued(&m, "s", 1);
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
