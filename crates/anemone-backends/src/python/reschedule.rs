//! Triton's request rescheduling: a model with `sequence_batching {
//! iterative_sequence: true }` calls
//! `request.set_release_flags(TRITONSERVER_REQUEST_RELEASE_RESCHEDULE)`
//! in `execute`, and the request runs again in a later `execute`, until
//! the model answers it (returns its response; a decoupled model sends its
//! final flag) without rescheduling it. As Triton's iterative sequencer, a
//! request that names no sequence is given one of its own (a correlation
//! ID counted per model from 1) and starts it
//! (`TRITONSERVER_REQUEST_FLAG_SEQUENCE_START`); when it runs again its
//! flags are 0.
//!
//! In the server the runtime's queue runs a rescheduled request again
//! (`LoadedModel::iterative`): `execute` runs once a call, and a request
//! it rescheduled is answered [`Answer::Rescheduled`] (see [`Ran::marked`]);
//! the runtime gives each request its sequence. Callers outside the queue
//! (a warmup, a direct call) use [`run`], which runs rescheduled requests
//! again at once, together, until answered, giving a request that names
//! no sequence one of its own here.

use super::process::Process;
use super::wire::{self, Answer};
use super::PythonModel;
use anemone_core::{CallSequence, RequestView, Response, Result, SequenceId};
use std::sync::atomic::Ordering;

/// What one `execute` gave.
pub(super) struct Ran {
    /// One answer per request.
    pub answers: Vec<Answer>,
    /// A decoupled model's requests' keys, in order.
    pub keys: Option<Vec<u64>>,
    /// The requests (their positions) to run again.
    pub rescheduled: Vec<usize>,
}

impl Ran {
    /// The answers, each rescheduled request's [`Answer::Rescheduled`] (a
    /// decoupled model's answers are otherwise empty).
    pub(super) fn marked(self) -> Vec<Answer> {
        let mut answers = self.answers;
        for i in self.rescheduled {
            answers[i] = Answer::Rescheduled;
        }
        answers
    }
}

/// Runs `requests` until none is rescheduled; one answer per request. A
/// failure after the first `execute` fails the requests still running only.
pub(super) fn run(model: &PythonModel, requests: &[RequestView<'_>]) -> Result<Vec<Answer>> {
    let own: Vec<CallSequence> = (requests.iter())
        .map(|r| match r.sequence {
            Some(s) => s.clone(),
            None => CallSequence {
                id: SequenceId::Number(model.next_sequence.fetch_add(1, Ordering::Relaxed)),
                start: true,
                end: false,
            },
        })
        .collect();
    let first: Vec<RequestView<'_>> = (requests.iter().zip(&own))
        .map(|(r, s)| RequestView {
            sequence: Some(s),
            ..*r
        })
        .collect();
    let Ran {
        mut answers,
        mut rescheduled,
        ..
    } = model.run_once(&first)?;
    // Run again, as Triton's: neither starting nor ending the sequence.
    let again: Vec<CallSequence> = (own.into_iter())
        .map(|s| CallSequence {
            start: false,
            end: false,
            ..s
        })
        .collect();
    while !rescheduled.is_empty() {
        // A request whose client has gone is not run again.
        rescheduled.retain(|&i| {
            let gone = requests[i].gone.is_some_and(|g| g.now());
            if gone {
                answers[i] = Answer::Failed {
                    message: "the request's client has gone; it was not run again".into(),
                    code: wire::CANCELLED,
                };
            }
            !gone
        });
        if rescheduled.is_empty() {
            break;
        }
        let views: Vec<RequestView<'_>> = (rescheduled.iter())
            .map(|&i| RequestView {
                sequence: Some(&again[i]),
                ..requests[i]
            })
            .collect();
        // A decoupled model's requests keep their keys (`PythonModel::open`).
        match model.run_once(&views) {
            Ok(ran) => {
                for (answer, &i) in ran.answers.into_iter().zip(&rescheduled) {
                    answers[i] = answer;
                }
                rescheduled = ran.rescheduled.iter().map(|&k| rescheduled[k]).collect();
            }
            Err(e) => {
                for &i in &rescheduled {
                    // A decoupled model's request ends through its responder.
                    if let Some(responder) = requests[i].responder {
                        let response = Response {
                            outputs: Err(super::copy_of(&e)),
                            parameters: Vec::new(),
                        };
                        responder.send(Some(response), true);
                    }
                    answers[i] = Answer::Failed {
                        message: e.to_string(),
                        code: INTERNAL,
                    };
                }
                break;
            }
        }
    }
    Ok(answers)
}

/// Triton's `TritonError.INTERNAL`.
const INTERNAL: i64 = 13;

/// Why a request of a model without `iterative_sequence` cannot run again.
fn not_iterative(model: &PythonModel) -> String {
    // Triton's words first, which its tests look for.
    format!(
        "Request is released with TRITONSERVER_REQUEST_RELEASE_RESCHEDULE, while the model is not \
         configured to handle such a flag: model.py of '{}' rescheduled a request, which needs \
         `sequence_batching {{ iterative_sequence: true }}` in its config.pbtxt, as in Triton; add \
         it, or answer the request in this execute",
        model.launch.model
    )
}

/// A decoupled model's `execute`: positions past the call are dropped, and
/// so are requests no longer open (the model sent their final flag, or
/// their client has gone: nobody would read another run); for a model
/// without `iterative_sequence` the rescheduled requests end with an error
/// (their keys closed in the process's pump).
pub(super) fn checked(model: &PythonModel, process: &Process, mut ran: Ran) -> Ran {
    let n = ran.answers.len();
    ran.rescheduled.retain(|&i| i < n);
    if let (Some(keys), Some(pending)) = (&ran.keys, process.pending()) {
        ran.rescheduled.retain(|&i| pending.is_open(keys[i]));
    }
    if model.iterative || ran.rescheduled.is_empty() {
        return ran;
    }
    if let (Some(keys), Some(pending)) = (&ran.keys, process.pending()) {
        for &i in &ran.rescheduled {
            if let Some(responder) = pending.close(keys[i]) {
                let response = Response {
                    outputs: Err(super::refusal(not_iterative(model), INTERNAL)),
                    parameters: Vec::new(),
                };
                responder.send(Some(response), true);
            }
        }
    }
    ran.rescheduled.clear();
    ran
}

/// A model that is not decoupled: for a model without `iterative_sequence`
/// the rescheduled requests fail.
pub(super) fn checked_answers(model: &PythonModel, mut ran: Ran) -> Ran {
    if model.iterative || ran.rescheduled.is_empty() {
        return ran;
    }
    for &i in &ran.rescheduled {
        ran.answers[i] = Answer::Failed {
            message: not_iterative(model),
            code: INTERNAL,
        };
    }
    ran.rescheduled.clear();
    ran
}
