//! The sequence rules and control inputs, without a server.

use super::*;
use anemone_core::{Dim, ModelFormat, TensorSpec};

fn meta() -> ModelMetadata {
    let spec = |name: &str, dtype| TensorSpec::new(name, dtype, vec![Dim::Any, Dim::Fixed(1)]);
    ModelMetadata::new(
        ModelFormat::Onnx,
        vec![
            spec("INPUT", DataType::I32),
            spec("START", DataType::I32),
            spec("CORRID", DataType::U64),
            spec("READY", DataType::Bool),
        ],
        vec![spec("OUTPUT", DataType::I32)],
    )
}

fn settings(max_idle: Duration) -> SequenceSettings {
    SequenceSettings {
        max_idle,
        controls: vec![
            SequenceControl {
                input: "READY".into(),
                kind: ControlKind::Ready(FalseTrue::Bool([false, true])),
            },
            SequenceControl {
                input: "START".into(),
                kind: ControlKind::Start(FalseTrue::Int32([0, 7])),
            },
            SequenceControl {
                input: "CORRID".into(),
                kind: ControlKind::CorrelationId(DataType::U64),
            },
        ],
        states: Vec::new(),
    }
}

fn flags(id: u64, start: bool, end: bool) -> SequenceFlags {
    SequenceFlags {
        id: CorrelationId::Number(id),
        start,
        end,
    }
}

#[test]
fn controls_take_the_engines_places_and_values() {
    let s = Sequences::new("m", settings(Duration::from_secs(1)), &meta(), true).unwrap();
    let x = Tensor::from_vec(vec![1, 1], vec![5i32]).unwrap();
    let inputs = s
        .with_controls(&flags(9, true, false), None, vec![x])
        .unwrap();
    assert_eq!(inputs.len(), 4);
    assert_eq!(inputs[0].to_vec::<i32>().unwrap(), [5]);
    assert_eq!(
        inputs[1].to_vec::<i32>().unwrap(),
        [7],
        "START true is 7 here"
    );
    assert_eq!(inputs[2].to_vec::<u64>().unwrap(), [9]);
    assert_eq!(inputs[3].to_vec::<bool>().unwrap(), [true]);
    assert!(inputs.iter().all(|t| t.shape() == [1, 1]));
    let two = Tensor::from_vec(vec![2, 1], vec![1i32, 2]).unwrap();
    let e = s.check_one_row(&[two]).unwrap_err().to_string();
    assert!(e.contains("must specify batch-size 1"), "{e}");
    let e = s
        .with_controls(
            &SequenceFlags {
                id: CorrelationId::Text("a".into()),
                ..flags(0, true, false)
            },
            None,
            vec![x_one()],
        )
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("is a string, but the model's correlation ID control input is UINT64"),
        "{e}"
    );
}

fn x_one() -> Tensor {
    Tensor::from_vec(vec![1, 1], vec![1i32]).unwrap()
}

#[test]
fn a_control_the_model_lacks_or_types_otherwise_fails_the_load() {
    let mut bad = settings(Duration::from_secs(1));
    bad.controls[0].input = "GO".into();
    let e = Sequences::new("m", bad, &meta(), true)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("'GO' is not one of the model's inputs"), "{e}");
    let mut bad = settings(Duration::from_secs(1));
    bad.controls[1].kind = ControlKind::Start(FalseTrue::Fp32([0.0, 1.0]));
    let e = Sequences::new("m", bad, &meta(), true)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("'START' is INT32 in the model, but its control gives FP32"),
        "{e}"
    );
    // A state names an input and an output of the model, of its type and shape.
    let state = |input: &str, output: &str, initial: Tensor| {
        let mut s = settings(Duration::from_secs(1));
        s.controls.clear();
        s.states.push(SequenceState {
            input: input.into(),
            output: output.into(),
            initial,
        });
        Sequences::new("m", s, &meta(), true)
            .err()
            .map(|e| e.to_string())
    };
    let zeros = |shape: Vec<usize>| Tensor::from_vec(shape, vec![0i32]).unwrap();
    assert_eq!(state("START", "OUTPUT", zeros(vec![1, 1])), None);
    let e = state("H", "OUTPUT", zeros(vec![1, 1])).unwrap();
    assert!(
        e.contains("state input 'H' is not one of the model's inputs"),
        "{e}"
    );
    let e = state("START", "Y", zeros(vec![1, 1])).unwrap();
    assert!(
        e.contains("state output 'Y' is not one of the model's outputs"),
        "{e}"
    );
    let e = state("CORRID", "OUTPUT", zeros(vec![1, 1])).unwrap();
    assert!(
        e.contains("'CORRID' is UINT64 in the model, but the state's data_type is INT32"),
        "{e}"
    );
    let e = state("START", "OUTPUT", zeros(vec![1, 1, 1])).unwrap();
    assert!(e.contains("cannot take the state's [1, 1, 1]"), "{e}");
    // Unbatched, a control input is [1]; this model's are [-1, 1].
    let e = Sequences::new("m", settings(Duration::from_secs(1)), &meta(), false)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("takes one value a request: shape [1]"), "{e}");
}

#[test]
fn a_sequence_opens_at_start_and_closes_at_end_or_when_idle() {
    let s =
        Arc::new(Sequences::new("m", settings(Duration::from_millis(50)), &meta(), true).unwrap());
    let refused = |f: Option<&SequenceFlags>| s.enter(f).err().unwrap().to_string();
    let e = refused(None);
    assert!(e.contains("non-zero or non-empty correlation ID"), "{e}");
    let e = refused(Some(&flags(0, true, false)));
    assert!(e.contains("non-zero or non-empty correlation ID"), "{e}");
    let e = refused(Some(&flags(1, false, false)));
    assert!(e.contains("must specify the START flag"), "{e}");
    drop(s.enter(Some(&flags(1, true, false))).unwrap());
    drop(s.enter(Some(&flags(1, false, false))).unwrap());
    assert_eq!(s.open_count(), 1);
    drop(s.enter(Some(&flags(1, false, true))).unwrap());
    assert_eq!(s.open_count(), 0, "closed at its end");
    assert!(s.enter(Some(&flags(1, false, false))).is_err());
    // Idle: closed after max_idle without a request, but not while one is in flight.
    drop(s.enter(Some(&flags(2, true, false))).unwrap());
    let held = s.enter(Some(&flags(3, true, false))).unwrap();
    std::thread::sleep(Duration::from_millis(80));
    assert!(
        s.enter(Some(&flags(2, false, false))).is_err(),
        "idle for longer than max_idle"
    );
    drop(s.enter(Some(&flags(3, false, false))).unwrap());
    drop(held);
}

/// A sequence started again while its END still runs (a client sending
/// [start, end] then [start, mid, end] back to back on one stream): the
/// END, when it ends, closes only the sequence it ended, and the new one's
/// requests go on.
#[test]
fn a_start_right_after_an_end_is_not_closed_by_that_end() {
    let s = Arc::new(Sequences::new("m", settings(Duration::from_secs(5)), &meta(), true).unwrap());
    drop(s.enter(Some(&flags(4, true, false))).unwrap());
    let ending = s.enter(Some(&flags(4, false, true))).unwrap();
    let again = s.enter(Some(&flags(4, true, false))).unwrap();
    drop(ending);
    assert_eq!(s.open_count(), 1, "the new sequence stays open");
    drop(again);
    drop(s.enter(Some(&flags(4, false, false))).unwrap());
    drop(s.enter(Some(&flags(4, false, true))).unwrap());
    assert_eq!(s.open_count(), 0, "closed at its own end");
}

#[test]
fn a_sequences_requests_take_turns() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let s = Arc::new(Sequences::new("m", settings(Duration::from_secs(5)), &meta(), true).unwrap());
    rt.block_on(async {
        let first = s
            .enter(Some(&flags(4, true, false)))
            .unwrap()
            .turn(None)
            .await;
        let second = s.enter(Some(&flags(4, false, false))).unwrap();
        let mut waiting = Box::pin(second.turn(None));
        // The second waits while the first holds the turn ...
        let pending = tokio::time::timeout(Duration::from_millis(30), &mut waiting).await;
        assert!(pending.is_err());
        // ... and runs once it is done.
        drop(first);
        tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .unwrap();
    });
}

#[test]
fn a_start_beyond_the_open_limit_is_refused_until_one_ends() {
    let s =
        Arc::new(Sequences::new("m", settings(Duration::from_secs(60)), &meta(), true).unwrap());
    for id in 1..=MAX_OPEN_SEQUENCES as u64 {
        drop(s.enter(Some(&flags(id, true, false))).unwrap());
    }
    assert_eq!(s.open_count(), MAX_OPEN_SEQUENCES);
    let over = u64::try_from(MAX_OPEN_SEQUENCES).unwrap() + 1;
    let e = s.enter(Some(&flags(over, true, false))).err().unwrap();
    assert_eq!(e.kind(), anemone_core::ErrorKind::Unavailable);
    assert!(e.to_string().contains("sequences open"), "{e}");
    // An open sequence goes on; once one ends, a new one may start.
    drop(s.enter(Some(&flags(7, false, true))).unwrap());
    drop(s.enter(Some(&flags(over, true, false))).unwrap());
}

#[test]
fn a_state_grown_past_the_limit_fails_its_request_and_keeps_the_old_one() {
    let mut settings = settings(Duration::from_secs(60));
    settings.controls.clear();
    settings.states.push(SequenceState {
        input: "START".into(),
        output: "OUTPUT".into(),
        initial: Tensor::from_vec(vec![1, 1], vec![0i32]).unwrap(),
    });
    let s = Arc::new(Sequences::new("m", settings, &meta(), true).unwrap());
    let answer = |state: Tensor| vec![("OUTPUT".to_string(), state)];
    let turn = s
        .enter(Some(&flags(1, true, false)))
        .unwrap()
        .turn_blocking(None);
    let mut outputs = answer(Tensor::from_vec(vec![1, 1], vec![41i32]).unwrap());
    turn.keep_state(&mut outputs).unwrap();
    assert!(
        outputs.is_empty(),
        "the state is the server's, not the answer's"
    );
    drop(turn);
    // Past 1 GiB (zeroed pages from the allocator, never touched).
    let huge = Tensor::from_bytes(
        DataType::I32,
        vec![1, MAX_STATE_BYTES / 4 + 1],
        vec![0u8; MAX_STATE_BYTES + 4],
    )
    .unwrap();
    let turn = s
        .enter(Some(&flags(1, false, false)))
        .unwrap()
        .turn_blocking(None);
    let e = turn.keep_state(&mut answer(huge)).unwrap_err();
    assert_eq!(e.kind(), anemone_core::ErrorKind::InvalidInput);
    assert!(
        e.to_string()
            .contains("past the 1024 MiB a sequence may keep; end the sequence"),
        "{e}"
    );
    assert_eq!(turn.state().unwrap()[0].to_vec::<i32>().unwrap(), [41]);
}

#[test]
fn an_engine_refusal_names_what_the_client_sent() {
    let mut s = settings(Duration::from_secs(1));
    s.states.push(SequenceState {
        input: "STATE_IN".into(),
        output: "STATE_OUT".into(),
        initial: Tensor::from_vec(vec![1, 1], vec![0i32]).unwrap(),
    });
    let rejected = |name: &str| {
        Error::Input(InputError::Rejected {
            name: name.into(),
            backend: "tract-cpu".into(),
            message: "Can not parse as I32".into(),
        })
    };
    let named = |e: Error| match e {
        Error::Input(InputError::Rejected { name, .. }) => name,
        other => panic!("{other}"),
    };
    let engine_inputs: Vec<String> = ["INPUT"]
        .into_iter()
        .map(String::from)
        .chain(s.controls.iter().map(|c| c.input.clone()))
        .chain(s.states.iter().map(|st| st.input.clone()))
        .collect();
    assert_eq!(
        named(s.in_request_terms(rejected(&engine_inputs.join(", ")))),
        "INPUT, sequence_id (given to the model as CORRID)"
    );
    // Other errors pass unchanged.
    let timeout = Error::Timeout(Duration::from_secs(1));
    assert!(matches!(s.in_request_terms(timeout), Error::Timeout(_)));
}

/// Abandoned sequences (never ended) give their entries, and so their
/// states, back once idle, with no later request to sweep them: the
/// sweeper thread does it every second.
#[test]
fn idle_sequences_are_removed_on_time_without_new_ones() {
    let s =
        Arc::new(Sequences::new("m", settings(Duration::from_millis(50)), &meta(), true).unwrap());
    for id in 1..=100 {
        drop(s.enter(Some(&flags(id, true, false))).unwrap());
    }
    let entries = |s: &Sequences| s.open.lock().unwrap().by_id.len();
    assert_eq!(entries(&s), 100);
    let deadline = Instant::now() + sweeper::SWEEP_EVERY * 5;
    while entries(&s) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    // Before the sweeper: all 100 stayed until 64 more sequences started.
    assert_eq!(entries(&s), 0, "idle sequences stayed in the table");
}
