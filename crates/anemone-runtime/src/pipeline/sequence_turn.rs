//! A sequence model's request in its sequence, before and after its run:
//! entered, its turn waited for, its state kept from the answer.

use super::{record_failure, refuse};
use crate::instance::ModelInstance;
use crate::request::{InferRequest, InferResponse};
use anemone_core::{Error, Result};
use std::time::{Duration, Instant};

/// A sequence model's turn for the request: it waits (within the request's
/// timeout) until the sequence's earlier requests are done, so that a
/// sequence runs one request at a time, in order. `None` for any other model.
pub(crate) async fn take_turn(
    instance: &ModelInstance,
    request: &InferRequest,
    timeout: Option<Duration>,
    start: Instant,
) -> Result<Option<Box<crate::sequence::Turn>>> {
    let Some(entered) = enter_sequence(instance, request)? else {
        return Ok(None);
    };
    let turn = entered.turn(request.outputs.as_deref());
    let Some(limit) = timeout else {
        return Ok(Some(Box::new(turn.await)));
    };
    tokio::time::timeout(limit.saturating_sub(start.elapsed()), turn)
        .await
        .map(|turn| Some(Box::new(turn)))
        .map_err(|_| record_failure(instance, Error::Timeout(limit), start))
}

/// Admits a request to a sequence model into its sequence (see
/// [`crate::sequence`]); `None` for any other model.
pub(crate) fn enter_sequence(
    instance: &ModelInstance,
    request: &InferRequest,
) -> Result<Option<crate::sequence::Entered>> {
    match &instance.sequences {
        None => Ok(None),
        Some(sequences) => sequences
            .enter(request.sequence.as_deref())
            .map(Some)
            .map_err(|e| refuse(instance, e)),
    }
}

/// A sequence model's answer, its state outputs kept as the sequence's state
/// for the next request (see [`crate::sequence::Turn::keep_state`]).
pub(super) fn keep_state(
    turn: Option<&crate::sequence::Turn>,
    mut result: Result<InferResponse>,
) -> Result<InferResponse> {
    if let (Some(turn), Ok(response)) = (turn, &mut result) {
        turn.keep_state(&mut response.outputs)?;
    }
    result
}
