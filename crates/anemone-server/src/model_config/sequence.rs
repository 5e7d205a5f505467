//! Triton's `sequence_batching` as the runtime's [`SequenceSettings`]
//! (and, for a model with a batch dimension, the dynamic batching across
//! sequences that its strategy asks for).

use crate::proto::model_sequence_batching::control::Kind as ProtoKind;
use crate::proto::model_sequence_batching::StrategyChoice;
use crate::proto::{DataType as ProtoType, ModelSequenceBatching};
use anemone_runtime::{
    Batching, ControlKind, FalseTrue, SequenceControl, SequenceSettings, SequenceState,
    MAX_STATE_BYTES,
};
use std::time::Duration;

/// Triton's default `max_sequence_idle_microseconds`: one second.
const DEFAULT_IDLE_US: u64 = 1_000_000;

/// Where an implicit state's `initial_state { data_file }` is read from:
/// given the file's name and the bytes the state needs, its bytes (at most
/// that many), or why not. The server reads `<model>/initial_state/<file>`
/// ([`crate::repository`]); [`no_state_files`] refuses every file.
pub type StateFiles<'a> = &'a dyn Fn(&str, usize) -> Result<Vec<u8>, String>;

/// A [`StateFiles`] for a config read without its model directory.
pub fn no_state_files(file: &str, _: usize) -> Result<Vec<u8>, String> {
    Err(format!(
        "initial_state data_file \"{file}\" cannot be read without the model's directory"
    ))
}

/// The refusal of `sequence_batching.iterative_sequence` on a model that
/// cannot reschedule its requests.
pub const ITERATIVE_REFUSED: &str =
    "sequence_batching.iterative_sequence is for models that reschedule their requests \
     (a Python model's request.set_release_flags(TRITONSERVER_REQUEST_RELEASE_RESCHEDULE)); \
     this model's engine cannot, so remove it";

/// Checks `sequence_batching { iterative_sequence: true }`: a Python
/// model's (the Python process gives its control inputs each run), without
/// implicit state, which anemone does not keep for an iterative model.
pub(super) fn iterative(sb: &ModelSequenceBatching, backend: &str) -> Result<(), String> {
    if backend != "python" {
        return Err(ITERATIVE_REFUSED.into());
    }
    if !sb.state.is_empty() {
        return Err(
            "sequence_batching.iterative_sequence with state is not supported by anemone: keep the \
             sequence's state in model.py, by request.correlation_id(); remove state"
                .into(),
        );
    }
    Ok(())
}

/// Reads `sequence_batching`, refusing what cannot work with a message that
/// says what to change (the same rules as Triton's config validation).
/// The batching is `Some` when the model has a batch dimension.
pub(super) fn sequence_settings(
    sb: &ModelSequenceBatching,
    max_batch_size: Option<usize>,
    files: StateFiles<'_>,
) -> Result<(SequenceSettings, Option<Batching>), String> {
    if sb.iterative_sequence {
        return Err(ITERATIVE_REFUSED.into());
    }
    let mut controls: Vec<SequenceControl> = Vec::new();
    for (i, input) in sb.control_input.iter().enumerate() {
        let at = format!("sequence_batching.control_input[{i}]");
        if input.name.is_empty() {
            return Err(format!("{at} has no name; give the model input it feeds"));
        }
        if controls.iter().any(|c| c.input == input.name) {
            return Err(format!(
                "{at}: control input '{}' is given twice; give each control its own input",
                input.name
            ));
        }
        if input.control.len() != 1 {
            return Err(format!(
                "{at} ('{}') has {} controls; give exactly one (kind and its values)",
                input.name,
                input.control.len()
            ));
        }
        let kind = control_kind(&input.control[0], &format!("{at}.control[0]"))?;
        if controls
            .iter()
            .any(|c| std::mem::discriminant(&c.kind) == std::mem::discriminant(&kind))
        {
            return Err(format!(
                "{at} ('{}'): sequence_batching specifies this control kind twice; give each \
                 kind one input",
                input.name
            ));
        }
        controls.push(SequenceControl {
            input: input.name.clone(),
            kind,
        });
    }
    let idle_us = match sb.max_sequence_idle_microseconds {
        0 => DEFAULT_IDLE_US,
        n => n,
    };
    let mut states: Vec<SequenceState> = Vec::new();
    for (i, state) in sb.state.iter().enumerate() {
        let state = implicit_state(
            state,
            &format!("sequence_batching.state[{i}]"),
            max_batch_size,
            files,
        )?;
        let taken = |s: &SequenceState| s.input == state.input || s.output == state.output;
        if states.iter().any(taken) || controls.iter().any(|c| c.input == state.input) {
            return Err(format!(
                "sequence_batching.state[{i}]: input '{}' or output '{}' is used by another \
                 state or control; give each its own",
                state.input, state.output
            ));
        }
        states.push(state);
    }
    let settings = SequenceSettings {
        max_idle: Duration::from_micros(idle_us),
        controls,
        states,
    };
    let Some(max) = max_batch_size else {
        return Ok((settings, None));
    };
    let batching = match &sb.strategy_choice {
        None => Batching::default(),
        // Triton's direct batcher waits out its delay only while fewer
        // than `minimum_slot_utilization` of its slots (the batch's rows)
        // are filled: at the default 0, a request runs at once.
        Some(StrategyChoice::Direct(direct)) => {
            let utilization = f64::from(direct.minimum_slot_utilization);
            match utilization > 0.0 {
                false => Batching::default(),
                true => Batching {
                    max_queue_delay: Duration::from_micros(direct.max_queue_delay_microseconds),
                    preferred_batch_sizes: vec![((utilization.min(1.0) * max as f64).ceil()
                        as usize)
                        .clamp(1, max)],
                    ..Batching::default()
                },
            }
        }
        Some(StrategyChoice::Oldest(oldest)) => {
            let path = "sequence_batching.oldest.preferred_batch_size";
            Batching {
                preferred_batch_sizes: super::scheduling::preferred_sizes(
                    &oldest.preferred_batch_size,
                    max,
                    path,
                )?,
                max_queue_delay: Duration::from_micros(oldest.max_queue_delay_microseconds),
                preserve_ordering: oldest.preserve_ordering,
            }
        }
    };
    Ok((settings, Some(batching)))
}

/// One implicit state: its input and output, and its initial value (zeros
/// of its `data_type` and `dims`, or the bytes of its `data_file`, the batch
/// dimension of 1 in front when the model batches). A state whose `dims`
/// hold -1 takes whatever shape the model's state output has; it starts
/// from its `initial_state`'s dims, or, without one, zeros with 1 for each
/// -1 (as Triton's).
fn implicit_state(
    s: &crate::proto::model_sequence_batching::State,
    at: &str,
    max_batch_size: Option<usize>,
    files: StateFiles<'_>,
) -> Result<SequenceState, String> {
    use crate::proto::model_sequence_batching::initial_state::StateData;
    if s.input_name.is_empty() || s.output_name.is_empty() {
        return Err(format!(
            "{at} needs input_name and output_name: the model input that takes the state and \
             the model output that gives the next one"
        ));
    }
    let dtype = ProtoType::try_from(s.data_type)
        .ok()
        .and_then(super::core_dtype)
        .filter(|d| *d != anemone_core::DataType::Bytes)
        .ok_or_else(|| format!("{at}.data_type must be a numeric TYPE_* (the state's elements)"))?;
    if s.dims.iter().any(|d| *d == 0 || *d < -1) {
        return Err(format!(
            "{at}.dims {:?} must be positive sizes, or -1 for a size that varies",
            s.dims
        ));
    }
    if s.initial_state.len() > 1 {
        return Err(format!(
            "{at} has {} initial_state entries; give one",
            s.initial_state.len()
        ));
    }
    let initial = s.initial_state.first();
    if let Some(initial) = initial {
        if initial.data_type != 0 && initial.data_type != s.data_type {
            return Err(format!(
                "{at}.initial_state must have the state's data_type (or none)"
            ));
        }
    }
    // A state whose size varies (-1) starts from its initial_state's fixed
    // dims, as in Triton; a fixed one from its own.
    let varies = s.dims.contains(&-1);
    let initial_dims = initial.map(|i| i.dims.as_slice()).unwrap_or_default();
    // Without an initial_state, each -1 starts at 1 (zeros), as Triton's
    // sequence state does.
    let ones: Vec<i64> = s
        .dims
        .iter()
        .map(|d| if *d == -1 { 1 } else { *d })
        .collect();
    let dims: &[i64] = if varies && initial.is_none() {
        &ones
    } else if varies {
        let fits = initial_dims.len() == s.dims.len()
            && initial_dims
                .iter()
                .zip(&s.dims)
                .all(|(i, d)| *i > 0 && (*d == -1 || i == d));
        if !fits {
            return Err(format!(
                "{at}.dims {:?} vary (-1): give initial_state the dims the state starts with, \
                 fixed sizes that match the state's fixed ones (e.g. initial_state {{ dims: {:?} \
                 zero_data: true }})",
                s.dims,
                s.dims
                    .iter()
                    .map(|d| if *d == -1 { 1 } else { *d })
                    .collect::<Vec<_>>()
            ));
        }
        initial_dims
    } else {
        if !initial_dims.is_empty() && initial_dims != s.dims.as_slice() {
            return Err(format!(
                "{at}.initial_state must have the state's dims ({:?})",
                s.dims
            ));
        }
        &s.dims
    };
    let mut shape: Vec<usize> = Vec::with_capacity(dims.len() + 1);
    if max_batch_size.is_some() {
        shape.push(1);
    }
    shape.extend(dims.iter().map(|d| *d as usize));
    let bytes = shape
        .iter()
        .try_fold(dtype.size().unwrap_or(1), |n, d| n.checked_mul(*d))
        .filter(|n| *n <= MAX_STATE_BYTES)
        .ok_or_else(|| {
            format!(
                "{at}.dims {:?} make a state larger than {} MiB, which every open sequence \
                 would keep; check the dims",
                s.dims,
                MAX_STATE_BYTES >> 20
            )
        })?;
    let data = match initial {
        None => vec![0u8; bytes],
        Some(initial) => {
            match &initial.state_data {
                Some(StateData::ZeroData(true)) => vec![0u8; bytes],
                Some(StateData::DataFile(file)) => {
                    let data =
                        files(file, bytes).map_err(|e| format!("{at}.initial_state: {e}"))?;
                    if data.len() < bytes {
                        // Triton's words.
                        return Err(format!(
                            "{at}.initial_state setting expects {bytes} bytes, but the data \
                             provided from {file} only has {} bytes; the file holds the state's \
                             elements in row-major order, little-endian",
                            data.len()
                        ));
                    }
                    data
                }
                _ => {
                    return Err(format!(
                        "{at}.initial_state holds no data; set zero_data: true or data_file"
                    ))
                }
            }
        }
    };
    let initial =
        anemone_core::Tensor::from_bytes(dtype, shape, data).map_err(|e| format!("{at}: {e}"))?;
    Ok(SequenceState {
        input: s.input_name.clone(),
        output: s.output_name.clone(),
        initial,
    })
}

/// One control: its kind and the values it takes.
fn control_kind(
    c: &crate::proto::model_sequence_batching::Control,
    at: &str,
) -> Result<ControlKind, String> {
    let kind = ProtoKind::try_from(c.kind).map_err(|_| {
        format!(
            "{at}.kind is {}; use CONTROL_SEQUENCE_START, _READY, _END or _CORRID",
            c.kind
        )
    })?;
    let given = [
        !c.int32_false_true.is_empty(),
        !c.fp32_false_true.is_empty(),
        !c.bool_false_true.is_empty(),
    ];
    if kind == ProtoKind::ControlSequenceCorrid {
        if given.iter().any(|g| *g) {
            return Err(format!(
                "{at}: sequence batching must not specify either 'int32_false_true', \
                 'fp32_false_true' or 'bool_false_true' for CONTROL_SEQUENCE_CORRID; give \
                 its data_type only"
            ));
        }
        let dtype = ProtoType::try_from(c.data_type).unwrap_or(ProtoType::TypeInvalid);
        let core = match dtype {
            ProtoType::TypeUint64
            | ProtoType::TypeInt64
            | ProtoType::TypeUint32
            | ProtoType::TypeInt32
            | ProtoType::TypeString => super::core_dtype(dtype),
            _ => None,
        };
        return core.map(ControlKind::CorrelationId).ok_or_else(|| {
            format!(
                "{at}: CONTROL_SEQUENCE_CORRID needs data_type TYPE_UINT64, TYPE_INT64, \
                 TYPE_UINT32, TYPE_INT32 or TYPE_STRING"
            )
        });
    }
    if given.iter().filter(|g| **g).count() != 1 {
        return Err(format!(
            "{at}: sequence batching control tensor must specify exactly one of \
             'int32_false_true', 'fp32_false_true' or 'bool_false_true' (two values: false, true)"
        ));
    }
    let two = |n: usize| {
        (n == 2).then_some(()).ok_or_else(|| {
            format!("{at}: the false_true list needs two values (false, true), got {n}")
        })
    };
    let values = if given[0] {
        two(c.int32_false_true.len())?;
        FalseTrue::Int32([c.int32_false_true[0], c.int32_false_true[1]])
    } else if given[1] {
        two(c.fp32_false_true.len())?;
        FalseTrue::Fp32([c.fp32_false_true[0], c.fp32_false_true[1]])
    } else {
        two(c.bool_false_true.len())?;
        FalseTrue::Bool([c.bool_false_true[0], c.bool_false_true[1]])
    };
    Ok(match kind {
        ProtoKind::ControlSequenceStart => ControlKind::Start(values),
        ProtoKind::ControlSequenceEnd => ControlKind::End(values),
        ProtoKind::ControlSequenceReady => ControlKind::Ready(values),
        ProtoKind::ControlSequenceCorrid => unreachable!("handled above"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::model_config::SchedulingChoice;

    fn read(text: &str) -> Result<(SequenceSettings, Option<Batching>), String> {
        let c = crate::model_config::parse_pbtxt(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        let Some(SchedulingChoice::SequenceBatching(sb)) = &c.scheduling_choice else {
            panic!("no sequence_batching in {text}")
        };
        let max = usize::try_from(c.max_batch_size).ok().filter(|n| *n > 0);
        sequence_settings(sb, max, &no_state_files)
    }

    #[test]
    fn tritons_example_controls_become_settings() {
        // simple_dyna_sequence's config from Triton's docs/examples.
        let (s, b) = read(
            "max_batch_size: 8\n\
             sequence_batching {\n\
               max_sequence_idle_microseconds: 5000000\n\
               oldest { max_candidate_sequences: 4 preferred_batch_size: [ 2 ] }\n\
               control_input [\n\
                 { name: \"START\" control [ { kind: CONTROL_SEQUENCE_START fp32_false_true: [ 0, 1 ] } ] },\n\
                 { name: \"END\" control [ { kind: CONTROL_SEQUENCE_END bool_false_true: [ false, true ] } ] },\n\
                 { name: \"READY\" control [ { kind: CONTROL_SEQUENCE_READY int32_false_true: [ 0, 1 ] } ] },\n\
                 { name: \"CORRID\" control [ { kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_UINT64 } ] }\n\
               ]\n\
             }",
        )
        .unwrap();
        assert_eq!(s.max_idle, Duration::from_secs(5));
        assert_eq!(
            s.controls
                .iter()
                .map(|c| (c.input.as_str(), c.kind))
                .collect::<Vec<_>>(),
            [
                ("START", ControlKind::Start(FalseTrue::Fp32([0.0, 1.0]))),
                ("END", ControlKind::End(FalseTrue::Bool([false, true]))),
                ("READY", ControlKind::Ready(FalseTrue::Int32([0, 1]))),
                (
                    "CORRID",
                    ControlKind::CorrelationId(anemone_core::DataType::U64)
                ),
            ]
        );
        let b = b.unwrap();
        assert_eq!(b.preferred_batch_sizes, [2]);
        assert_eq!(b.max_queue_delay, Duration::ZERO);
        // Implicit state: zeros of its dims, after a batch dimension of 1.
        let (s, _) = read(
            "max_batch_size: 4\n\
             sequence_batching { state [ { input_name: \"h\" output_name: \"h_out\" \
               data_type: TYPE_FP32 dims: [ 2, 3 ] initial_state { zero_data: true } } ] }",
        )
        .unwrap();
        let state = &s.states[0];
        assert_eq!(
            (state.input.as_str(), state.output.as_str()),
            ("h", "h_out")
        );
        assert_eq!(state.initial.shape(), [1, 2, 3]);
        assert_eq!(state.initial.to_vec::<f32>().unwrap(), [0.0; 6]);
        // A data file: its first bytes (Triton ignores the rest), in row-major
        // order; one too short is refused with Triton's words.
        let text = "sequence_batching { state [ { input_name: \"h\" output_name: \"h_out\" \
             data_type: TYPE_INT32 dims: [ 2 ] initial_state { data_file: \"h.bin\" } } ] }";
        let c = crate::model_config::parse_pbtxt(text).unwrap();
        let Some(SchedulingChoice::SequenceBatching(sb)) = &c.scheduling_choice else {
            unreachable!()
        };
        let file = |name: &str, bytes: usize| {
            assert_eq!((name, bytes), ("h.bin", 8));
            Ok([7i32, -3, 99]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .take(bytes)
                .collect())
        };
        let (s, _) = sequence_settings(sb, None, &file).unwrap();
        assert_eq!(s.states[0].initial.shape(), [2]);
        assert_eq!(s.states[0].initial.to_vec::<i32>().unwrap(), [7, -3]);
        let short = |_: &str, _: usize| Ok(vec![1u8; 5]);
        let e = sequence_settings(sb, None, &short).unwrap_err();
        assert!(
            e.contains("expects 8 bytes, but the data provided from h.bin only has 5 bytes"),
            "{e}"
        );
        // A state of varying size starts from its initial_state's dims.
        let (s, _) = read(
            "max_batch_size: 2\n\
             sequence_batching { state [ { input_name: \"h\" output_name: \"h_out\" \
               data_type: TYPE_FP32 dims: [ -1, 4 ] initial_state { zero_data: true dims: [ 1, 4 ] } } ] }",
        )
        .unwrap();
        assert_eq!(s.states[0].initial.shape(), [1, 1, 4]);
        // Without an initial_state, each -1 starts at 1, as in Triton.
        let (s, _) = read(
            "sequence_batching { state [ { input_name: \"h\" output_name: \"h_out\" \
               data_type: TYPE_FP32 dims: [ -1, 3 ] } ] }",
        )
        .unwrap();
        assert_eq!(s.states[0].initial.shape(), [1, 3]);
        assert_eq!(s.states[0].initial.to_vec::<f32>().unwrap(), [0.0; 3]);
        // Direct: the delay holds requests only while minimum_slot_utilization
        // is unmet; at its default 0, a lone request runs at once (Triton's).
        let (_, b) = read(
            "max_batch_size: 4 sequence_batching { direct { max_queue_delay_microseconds: 1500000 } }",
        )
        .unwrap();
        assert_eq!(b.unwrap().max_queue_delay, Duration::ZERO);
        let (_, b) = read(
            "max_batch_size: 4 sequence_batching { direct { max_queue_delay_microseconds: 1500000 \
             minimum_slot_utilization: 0.5 } }",
        )
        .unwrap();
        let b = b.unwrap();
        assert_eq!(
            (b.max_queue_delay, b.preferred_batch_sizes),
            (Duration::from_millis(1500), vec![2])
        );
        // No batch dimension: no batching; no idle time: Triton's second.
        let (s, b) = read("sequence_batching { }").unwrap();
        assert_eq!(
            (s.max_idle, s.controls.len(), b),
            (Duration::from_secs(1), 0, None)
        );
    }

    #[test]
    fn configs_that_cannot_work_are_refused_by_path() {
        for (text, wanted) in [
            (
                "sequence_batching { state [ { input_name: \"a\" } ] }",
                "needs input_name and output_name",
            ),
            (
                "sequence_batching { state [ { input_name: \"a\" output_name: \"b\" data_type: TYPE_FP32 dims: [ -1, 4 ] \
                   initial_state { zero_data: true dims: [ 0, 4 ] } } ] }",
                "vary (-1): give initial_state the dims",
            ),
            (
                "sequence_batching { state [ { input_name: \"a\" output_name: \"b\" data_type: TYPE_FP32 dims: [ -1, 4 ] \
                   initial_state { zero_data: true dims: [ 1, 5 ] } } ] }",
                "that match the state's fixed ones",
            ),
            (
                "sequence_batching { state [ { input_name: \"a\" output_name: \"b\" data_type: TYPE_FP32 dims: [ 0 ] } ] }",
                "must be positive sizes, or -1",
            ),
            (
                "sequence_batching { state [ { input_name: \"a\" output_name: \"b\" data_type: TYPE_STRING dims: [ 1 ] } ] }",
                "must be a numeric TYPE_*",
            ),
            (
                "sequence_batching { state [ { input_name: \"a\" output_name: \"b\" data_type: TYPE_FP32 dims: [ 1 ] \
                   initial_state { data_file: \"s.bin\" } } ] }",
                "cannot be read without the model's directory",
            ),
            (
                "sequence_batching { state [ { input_name: \"a\" output_name: \"b\" data_type: TYPE_FP32 \
                   dims: [ 1000000, 1000000 ] } ] }",
                "larger than 1024 MiB",
            ),
            (
                "sequence_batching { state [ { input_name: \"a\" output_name: \"b\" data_type: TYPE_FP32 \
                   dims: [ 4294967296, 4294967296, 4294967296 ] } ] }",
                "larger than 1024 MiB",
            ),
            (
                "sequence_batching { state [ { input_name: \"a\" output_name: \"b\" data_type: TYPE_FP32 dims: [ 1 ] \
                   initial_state { zero_data: true dims: [ 2 ] } } ] }",
                "must have the state's dims",
            ),
            (
                "sequence_batching { state [ { input_name: \"a\" output_name: \"b\" data_type: TYPE_FP32 dims: [ 1 ] }, \
                   { input_name: \"a\" output_name: \"c\" data_type: TYPE_FP32 dims: [ 1 ] } ] }",
                "used by another state or control",
            ),
            ("sequence_batching { iterative_sequence: true }", "iterative_sequence"),
            (
                "sequence_batching { control_input [ { name: \"S\" } ] }",
                "control_input[0] ('S') has 0 controls",
            ),
            (
                "sequence_batching { control_input [ { name: \"S\" control [ { kind: CONTROL_SEQUENCE_START } ] } ] }",
                "exactly one of 'int32_false_true'",
            ),
            (
                "sequence_batching { control_input [ { name: \"S\" control [ { kind: CONTROL_SEQUENCE_START int32_false_true: [ 1 ] } ] } ] }",
                "needs two values",
            ),
            (
                "sequence_batching { control_input [ { name: \"C\" control [ { kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_FP32 } ] } ] }",
                "TYPE_UINT64, TYPE_INT64",
            ),
            (
                "sequence_batching { control_input [ { name: \"C\" control [ { kind: CONTROL_SEQUENCE_CORRID int32_false_true: [ 0, 1 ] data_type: TYPE_INT32 } ] } ] }",
                "must not specify",
            ),
            (
                "sequence_batching { control_input [ \
                   { name: \"A\" control [ { kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] } ] }, \
                   { name: \"B\" control [ { kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] } ] } ] }",
                "control kind twice",
            ),
            (
                "sequence_batching { control_input [ \
                   { name: \"A\" control [ { kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] } ] }, \
                   { name: \"A\" control [ { kind: CONTROL_SEQUENCE_END int32_false_true: [ 0, 1 ] } ] } ] }",
                "given twice",
            ),
            (
                "max_batch_size: 4 sequence_batching { oldest { preferred_batch_size: [ 8 ] } }",
                "outside 1..=4",
            ),
        ] {
            let e = read(text).unwrap_err();
            assert!(e.contains(wanted), "{text}: {e}");
            assert!(!e.contains("  "), "double space in: {e}");
        }
    }
}
