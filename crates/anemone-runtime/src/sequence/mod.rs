//! Triton's sequence batcher (`sequence_batching`) for models whose state
//! lives in the client's requests: each request names its sequence (a
//! correlation ID) and whether it starts or ends it; the server checks
//! that a sequence was started, runs its requests one at a time in the
//! order they arrived, and gives the model the control inputs the
//! configuration asks for (START, END, READY, CORRID), which the client
//! never sends. Requests of different sequences still share a dynamic
//! batch.
//!
//! Triton pins each sequence to a batch slot of one model instance, so that
//! a backend may keep a sequence's state inside the instance. The engines
//! anemone runs keep none (an ONNX model is a function of its inputs), so a
//! sequence may run on any instance; what the model sees is the same.

use anemone_core::{DataType, Error, InputError, ModelMetadata, Result, Tensor};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Sequences one model may have open at once; a request starting one more
/// is refused until some end or idle out.
pub const MAX_OPEN_SEQUENCES: usize = 65_536;

/// The most bytes one implicit state may hold, per sequence: 1 GiB. A
/// configuration's initial state is refused above it at load; a state of
/// varying size that grows past it fails the request that grew it, and the
/// sequence keeps its state from before.
pub const MAX_STATE_BYTES: usize = 1 << 30;

/// A sequence's name (Triton's correlation ID): a number, or a string.
/// 0 and "" mean "no sequence".
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CorrelationId {
    /// A whole number (`sequence_id: 42`).
    Number(u64),
    /// A string (`sequence_id: "session-7"`).
    Text(String),
}

impl Default for CorrelationId {
    fn default() -> Self {
        CorrelationId::Number(0)
    }
}

impl CorrelationId {
    /// Whether it names a sequence (not 0, not empty).
    pub fn is_set(&self) -> bool {
        match self {
            CorrelationId::Number(n) => *n != 0,
            CorrelationId::Text(s) => !s.is_empty(),
        }
    }
}

impl std::fmt::Display for CorrelationId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CorrelationId::Number(n) => write!(f, "{n}"),
            CorrelationId::Text(s) => write!(f, "{s}"),
        }
    }
}

/// A request's place in its sequence (Triton's `sequence_id`,
/// `sequence_start` and `sequence_end` request parameters).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SequenceFlags {
    /// The sequence.
    pub id: CorrelationId,
    /// The request starts the sequence.
    pub start: bool,
    /// The request ends the sequence.
    pub end: bool,
}

impl SequenceFlags {
    /// The same, as an engine reads it ([`anemone_core::RequestView::sequence`]).
    pub(crate) fn to_call(&self) -> anemone_core::CallSequence {
        anemone_core::CallSequence {
            id: match &self.id {
                CorrelationId::Number(n) => anemone_core::SequenceId::Number(*n),
                CorrelationId::Text(t) => anemone_core::SequenceId::Text(t.clone()),
            },
            start: self.start,
            end: self.end,
        }
    }
}

/// The values a boolean control input takes for false and true.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FalseTrue {
    /// An INT32 input (`int32_false_true: [ 0, 1 ]`).
    Int32([i32; 2]),
    /// An FP32 input (`fp32_false_true`).
    Fp32([f32; 2]),
    /// A BOOL input (`bool_false_true`).
    Bool([bool; 2]),
}

impl FalseTrue {
    fn dtype(self) -> DataType {
        match self {
            FalseTrue::Int32(_) => DataType::I32,
            FalseTrue::Fp32(_) => DataType::F32,
            FalseTrue::Bool(_) => DataType::Bool,
        }
    }

    fn tensor(self, value: bool, shape: Vec<usize>) -> Tensor {
        let (i, n) = (usize::from(value), shape.iter().product());
        let made = match self {
            FalseTrue::Int32(v) => Tensor::from_vec(shape, vec![v[i]; n]),
            FalseTrue::Fp32(v) => Tensor::from_vec(shape, vec![v[i]; n]),
            FalseTrue::Bool(v) => Tensor::from_vec(shape, vec![v[i]; n]),
        };
        made.expect("one value a row")
    }
}

/// What a control input tells the model (Triton's `Control.kind`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ControlKind {
    /// True on the first request of a sequence.
    Start(FalseTrue),
    /// True on the last request of a sequence.
    End(FalseTrue),
    /// True when the batch row holds a request (always, here: anemone
    /// leaves no empty rows).
    Ready(FalseTrue),
    /// The correlation ID, as this type (UINT64, INT64, UINT32, INT32 for a
    /// number; BYTES for a string).
    CorrelationId(DataType),
}

/// One control input of a sequence model.
#[derive(Debug, Clone, PartialEq)]
pub struct SequenceControl {
    /// The model input that receives it.
    pub input: String,
    /// What it carries.
    pub kind: ControlKind,
}

/// Triton's `sequence_batching` settings of a model.
#[derive(Debug, Clone, PartialEq)]
pub struct SequenceSettings {
    /// A sequence with no request for this long is closed; its next request
    /// must start it again. By default, 1 s (Triton's).
    pub max_idle: Duration,
    /// The control inputs the server gives the model.
    pub controls: Vec<SequenceControl>,
    /// Implicit state: model outputs kept between a sequence's requests and
    /// given back to the model as inputs (Triton's `state`).
    pub states: Vec<SequenceState>,
}

/// One implicit state of a sequence model (Triton's `sequence_batching.state`):
/// the model's `output` after a request is its `input` on the sequence's next
/// request; the first request of a sequence gets `initial`.
#[derive(Debug, Clone, PartialEq)]
pub struct SequenceState {
    /// The model input that receives the state.
    pub input: String,
    /// The model output that gives the next state.
    pub output: String,
    /// The state a sequence starts with, in the shape one request gives the
    /// model (the batch dimension of 1 included when the model batches).
    pub initial: Tensor,
}

impl Default for SequenceSettings {
    fn default() -> Self {
        SequenceSettings {
            max_idle: Duration::from_secs(1),
            controls: Vec::new(),
            states: Vec::new(),
        }
    }
}

impl SequenceSettings {
    /// Whether `name` is an input the server gives the model (a control or
    /// a state input), which requests must not send.
    pub fn is_supplied(&self, name: &str) -> bool {
        self.controls.iter().any(|c| c.input == name) || self.states.iter().any(|s| s.input == name)
    }

    /// `error` in the request's terms: an engine that refuses a call names
    /// every input it was given, and a sequence model's include the controls
    /// and state the server supplies, which the client never sent. They are
    /// left out, except the correlation ID input, named as the
    /// `sequence_id` the client did send (a string ID the model cannot read
    /// is the usual culprit).
    pub(crate) fn in_request_terms(&self, error: Error) -> Error {
        let Error::Input(InputError::Rejected {
            name,
            backend,
            message,
        }) = error
        else {
            return error;
        };
        let names: Vec<String> = name
            .split(", ")
            .filter_map(|n| match self.controls.iter().find(|c| c.input == n) {
                Some(c) if matches!(c.kind, ControlKind::CorrelationId(_)) => {
                    Some(format!("sequence_id (given to the model as {n})"))
                }
                Some(_) => None,
                None if self.states.iter().any(|s| s.input == n) => None,
                None => Some(n.to_string()),
            })
            .collect();
        Error::Input(InputError::Rejected {
            name: names.join(", "),
            backend,
            message,
        })
    }
}

/// Where each of the engine's inputs comes from.
#[derive(Debug, Clone, Copy)]
enum Source {
    /// The request's next input (in the served order).
    Request,
    /// The control input at this index of the settings.
    Control(usize),
    /// The state at this index of the settings.
    State(usize),
}

/// The open sequences of one model, shared by the instance that replaces it
/// on a fallback.
pub(crate) struct Sequences {
    model: String,
    settings: SequenceSettings,
    /// The engine's inputs in its order.
    layout: Vec<Source>,
    batched: bool,
    open: Mutex<Open>,
    clock: Instant,
    /// The model's engine instances: each sequence runs on one of them.
    lanes: usize,
    /// The instance the next sequence to start runs on (round robin).
    next_lane: AtomicUsize,
    /// Requests waiting for their sequence's earlier requests to finish:
    /// pending, as Triton counts a sequence batcher's backlog.
    waiting: AtomicUsize,
    /// Whether the sweeper watches this table (from its first sequence).
    watched: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct Open {
    by_id: HashMap<CorrelationId, Arc<OpenSequence>>,
    /// Sweep idle sequences when this many are open.
    sweep_at: usize,
}

struct OpenSequence {
    /// Held while one of its requests runs: the next waits its turn, in
    /// arrival order (Tokio's mutex is fair).
    turn: Arc<tokio::sync::Mutex<()>>,
    /// Microseconds since the clock's start when a request last came or went.
    last: AtomicU64,
    /// Its implicit state after its last request (`None`: the initial state).
    state: Mutex<Option<Vec<Tensor>>>,
    /// The engine instance its requests run on, as Triton keeps a sequence
    /// on one model instance: a Python model may keep the sequence's state
    /// in itself.
    lane: usize,
    /// Its END has been sent (a start after it is no conflict).
    ending: std::sync::atomic::AtomicBool,
}

/// A request's admission into its sequence; dropping it (after the request
/// ran, failed, or was cancelled) closes the sequence if the request ended it.
pub(crate) struct Entered {
    sequences: Arc<Sequences>,
    sequence: Arc<OpenSequence>,
    flags: SequenceFlags,
    /// Whether this request opened the sequence (it was not open, or it
    /// started it again).
    opened: bool,
    /// Set when the request was refused before it ran: it leaves the
    /// sequence as it was (see [`Turn::refused`]).
    refused: std::sync::atomic::AtomicBool,
}

/// A request's turn in its sequence: no other request of the sequence runs
/// until it is dropped.
pub(crate) struct Turn {
    _guard: tokio::sync::OwnedMutexGuard<()>,
    entered: Entered,
    /// For each implicit state, whether the request asked for its output by
    /// name (it is otherwise kept from the answer).
    asked: Vec<bool>,
}

impl Sequences {
    /// Checks the settings against the engine's inputs and outputs (see
    /// `check.rs`).
    pub(crate) fn new(
        model: &str,
        settings: SequenceSettings,
        engine: &ModelMetadata,
        batched: bool,
    ) -> Result<Sequences> {
        for control in &settings.controls {
            check::control(model, control, engine, batched)?;
        }
        for state in &settings.states {
            check::state(model, state, engine)?;
        }
        let layout = engine
            .inputs
            .iter()
            .map(
                |i| match settings.controls.iter().position(|c| c.input == i.name) {
                    Some(ix) => Source::Control(ix),
                    None => match settings.states.iter().position(|s| s.input == i.name) {
                        Some(ix) => Source::State(ix),
                        None => Source::Request,
                    },
                },
            )
            .collect();
        Ok(Sequences {
            model: model.to_string(),
            settings,
            layout,
            batched,
            open: Mutex::new(Open {
                by_id: HashMap::new(),
                sweep_at: 64,
            }),
            clock: Instant::now(),
            lanes: 1,
            next_lane: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            watched: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The same, for a model with `lanes` engine instances: each sequence
    /// is given one of them when it starts, in turn, and all its requests
    /// run there.
    pub(crate) fn with_lanes(mut self, lanes: usize) -> Sequences {
        self.lanes = lanes.max(1);
        self
    }

    /// The settings.
    pub(crate) fn settings(&self) -> &SequenceSettings {
        &self.settings
    }

    /// Requests waiting for their sequence's earlier requests to finish.
    pub(crate) fn waiting(&self) -> usize {
        self.waiting.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Sequences open now: started, not ended, and not idle for longer
    /// than `max_idle` (such a sequence is closed; it may not be swept yet).
    pub(crate) fn open_count(&self) -> usize {
        let now = self.now_us();
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.by_id.values().filter(|s| !self.idle(s, now)).count()
    }

    fn now_us(&self) -> u64 {
        u64::try_from(self.clock.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    fn idle(&self, sequence: &Arc<OpenSequence>, now: u64) -> bool {
        let max = u64::try_from(self.settings.max_idle.as_micros()).unwrap_or(u64::MAX);
        // A sequence with a request waiting or running is not idle.
        Arc::strong_count(sequence) == 1
            && now.saturating_sub(sequence.last.load(Ordering::Relaxed)) > max
    }

    /// Admits a request into its sequence, in Triton's terms: it must name
    /// one; a sequence that is not open (never started, ended, or idle for
    /// longer than `max_idle`) must be started. A start on an open sequence
    /// begins it again (Triton logs the conflict and goes on).
    pub(crate) fn enter(self: &Arc<Self>, flags: Option<&SequenceFlags>) -> Result<Entered> {
        let flags = match flags {
            Some(f) if f.id.is_set() => f.clone(),
            _ => {
                return Err(invalid(format!(
                    "inference request to model '{}' must specify a non-zero or non-empty \
                     correlation ID (the sequence_id parameter)",
                    self.model
                )))
            }
        };
        let now = self.now_us();
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let found = match open.by_id.get(&flags.id) {
            Some(s) if !self.idle(s, now) => Some(Arc::clone(s)),
            _ => None,
        };
        let opened = found.is_none() || flags.start;
        let sequence = match found {
            // A start while the sequence is open (its END still running, or
            // never sent): a new sequence under the id, with the initial
            // state. It waits for the earlier one's requests (the same turn,
            // on the same instance), and the earlier one's END, when it
            // ends, closes only itself.
            Some(s) if flags.start => {
                if !s.ending.load(Ordering::Relaxed) {
                    tracing::warn!(
                        model = %self.model,
                        sequence = %flags.id,
                        "a sequence was started again before its end; the earlier one ends here"
                    );
                }
                let again = Arc::new(OpenSequence {
                    turn: Arc::clone(&s.turn),
                    last: AtomicU64::new(now),
                    state: Mutex::new(None),
                    lane: s.lane,
                    ending: std::sync::atomic::AtomicBool::new(false),
                });
                open.by_id.insert(flags.id.clone(), Arc::clone(&again));
                again
            }
            Some(s) => s,
            None if !flags.start => {
                open.by_id.remove(&flags.id);
                return Err(invalid(format!(
                    "inference request for sequence {} to model '{}' must specify the START \
                     flag on the first request of the sequence (sequence_start: true); a \
                     sequence closes at its END and after {} ms without a request",
                    flags.id,
                    self.model,
                    self.settings.max_idle.as_millis()
                )));
            }
            None => {
                if !self.watched.swap(true, Ordering::Relaxed) {
                    sweeper::watch(self);
                }
                if open.by_id.len() >= open.sweep_at {
                    open.by_id.retain(|_, s| !self.idle(s, now));
                    open.sweep_at = (open.by_id.len() * 2).max(64);
                }
                if open.by_id.len() >= MAX_OPEN_SEQUENCES && !open.by_id.contains_key(&flags.id) {
                    return Err(Error::Unavailable {
                        what: format!("model '{}'", self.model),
                        reason: format!(
                            "it has {MAX_OPEN_SEQUENCES} sequences open; end sequences \
                             (sequence_end: true) or let idle ones close after {} ms, then retry",
                            self.settings.max_idle.as_millis()
                        ),
                    });
                }
                let s = Arc::new(OpenSequence {
                    turn: Arc::new(tokio::sync::Mutex::new(())),
                    last: AtomicU64::new(now),
                    state: Mutex::new(None),
                    lane: self.next_lane.fetch_add(1, Ordering::Relaxed) % self.lanes,
                    ending: std::sync::atomic::AtomicBool::new(false),
                });
                open.by_id.insert(flags.id.clone(), Arc::clone(&s));
                s
            }
        };
        sequence.last.store(now, Ordering::Relaxed);
        if flags.end {
            sequence.ending.store(true, Ordering::Relaxed);
        }
        Ok(Entered {
            sequences: Arc::clone(self),
            sequence,
            flags,
            opened,
            refused: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Refuses a request of more than one row to a batching model (Triton's
    /// rule: the sequence batcher takes one row a request).
    pub(crate) fn check_one_row(&self, served: &[Tensor]) -> Result<()> {
        let rows = served.first().and_then(|t| t.shape().first().copied());
        match rows {
            Some(rows) if self.batched && rows != 1 => Err(invalid(format!(
                "inference request to model '{}' must specify batch-size 1 due to \
                 requirements of sequence batcher (this one has {rows}); send each \
                 sequence's requests one row at a time",
                self.model
            ))),
            _ => Ok(()),
        }
    }

    /// The engine's inputs: the request's (validated, in the served order)
    /// with the control inputs where the engine has them, one value a row,
    /// and the state inputs (`state`, or the initial states when `None`).
    pub(crate) fn with_controls(
        &self,
        flags: &SequenceFlags,
        state: Option<Vec<Tensor>>,
        served: Vec<Tensor>,
    ) -> Result<Vec<Tensor>> {
        let shape = match self.batched {
            true => vec![
                served
                    .first()
                    .and_then(|t| t.shape().first().copied())
                    .unwrap_or(1),
                1,
            ],
            false => vec![1],
        };
        let mut served = served.into_iter();
        let mut inputs = Vec::with_capacity(self.layout.len());
        for source in &self.layout {
            let tensor = match *source {
                Source::Request => served
                    .next()
                    .ok_or_else(|| Error::Internal("a sequence model lost an input".into()))?,
                Source::Control(ix) => {
                    control(&self.settings.controls[ix].kind, flags, shape.clone())?
                }
                Source::State(ix) => match &state {
                    Some(state) => state[ix].clone(),
                    None => self.settings.states[ix].initial.clone(),
                },
            };
            inputs.push(tensor);
        }
        Ok(inputs)
    }
}

/// The flags a warm-up sample runs with: a sequence of one request, with a
/// correlation ID of the control's type.
pub(crate) fn warmup_flags(sequences: &Sequences) -> SequenceFlags {
    let text = sequences
        .settings
        .controls
        .iter()
        .any(|c| c.kind == ControlKind::CorrelationId(DataType::Bytes));
    SequenceFlags {
        id: match text {
            true => CorrelationId::Text("1".into()),
            false => CorrelationId::Number(1),
        },
        start: true,
        end: true,
    }
}

/// The control tensor for one request.
fn control(kind: &ControlKind, flags: &SequenceFlags, shape: Vec<usize>) -> Result<Tensor> {
    Ok(match *kind {
        ControlKind::Start(v) => v.tensor(flags.start, shape),
        ControlKind::End(v) => v.tensor(flags.end, shape),
        ControlKind::Ready(v) => v.tensor(true, shape),
        ControlKind::CorrelationId(dtype) => correlation_tensor(&flags.id, dtype, shape)?,
    })
}

fn correlation_tensor(id: &CorrelationId, dtype: DataType, shape: Vec<usize>) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let wrong = |given: &str| {
        invalid(format!(
            "sequence_id {id} is {given}, but the model's correlation ID control input is {}; \
             send a {}",
            dtype.kserve_name(),
            match dtype {
                DataType::Bytes => "string sequence_id",
                _ => "whole-number sequence_id",
            }
        ))
    };
    let made = match (id, dtype) {
        (CorrelationId::Text(s), DataType::Bytes) => {
            Tensor::from_strings(shape, vec![s.as_bytes().to_vec(); n])
        }
        (CorrelationId::Text(_), _) => return Err(wrong("a string")),
        (CorrelationId::Number(id_n), DataType::U64) => Tensor::from_vec(shape, vec![*id_n; n]),
        // The id's 8 bytes, as Triton copies them: an id of 2^63 or more
        // (tritonclient's C++ client sends it as a negative int64) reads
        // back as the negative number it was sent as.
        (CorrelationId::Number(id_n), DataType::I64) => {
            Tensor::from_vec(shape, vec![i64::from_ne_bytes(id_n.to_ne_bytes()); n])
        }
        (CorrelationId::Number(id_n), DataType::U32) => Tensor::from_vec(
            shape,
            vec![u32::try_from(*id_n).map_err(|_| wrong("beyond UINT32"))?; n],
        ),
        (CorrelationId::Number(id_n), DataType::I32) => Tensor::from_vec(
            shape,
            vec![i32::try_from(*id_n).map_err(|_| wrong("beyond INT32"))?; n],
        ),
        (CorrelationId::Number(_), _) => return Err(wrong("a number")),
    };
    made.map_err(|e| Error::Internal(format!("correlation ID tensor: {e}")))
}

fn invalid(message: String) -> Error {
    Error::Input(anemone_core::InputError::Sequence { message })
}

mod check;
mod sweeper;
#[cfg(test)]
mod tests;
mod turn;
