//! A request's responses on their way to its caller ([`Responses`]), with a
//! bound on the bytes that wait for the caller to read them: a decoupled
//! model's (`decoupled.rs`) and a streaming ensemble's (`ensemble/stream.rs`).

use crate::request::InferResponse;
use anemone_core::{Error, Result};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

/// One response of a decoupled model, as [`Responses`] gives it.
#[derive(Debug)]
pub struct Streamed {
    /// The response (its outputs, those the request asked for, or the
    /// model's error); `None` when the model sent the final flag alone.
    pub response: Option<Result<InferResponse>>,
    /// Whether this is the request's last response.
    pub last: bool,
}

/// The responses to one request on a decoupled model, in the order the
/// model sent them. Dropping it before the request reached its engine
/// cancels the request (it is dropped from its queue, never run); after,
/// the model is told (`is_cancelled()`), and its further responses are
/// dropped.
pub struct Responses {
    rx: mpsc::UnboundedReceiver<(Streamed, u64)>,
    /// Bytes sent and not read yet (see [`Sink`]).
    waiting: Arc<AtomicU64>,
}

impl Responses {
    /// The next response; `None` after the last.
    pub async fn next(&mut self) -> Option<Streamed> {
        let next = self.rx.recv().await;
        self.read(next)
    }

    /// The next response, waiting on this thread (not an async executor's).
    pub fn blocking_next(&mut self) -> Option<Streamed> {
        let next = self.rx.blocking_recv();
        self.read(next)
    }

    fn read(&self, next: Option<(Streamed, u64)>) -> Option<Streamed> {
        let (streamed, weight) = next?;
        self.waiting.fetch_sub(weight, Ordering::Relaxed);
        Some(streamed)
    }

    /// Responses that are the one answer of a model that is not decoupled.
    pub(crate) fn one(answer: Result<InferResponse>) -> Responses {
        let (tx, rx) = mpsc::unbounded_channel();
        let streamed = Streamed {
            response: Some(answer),
            last: true,
        };
        let _ = tx.send((streamed, 0));
        Responses {
            rx,
            waiting: Arc::default(),
        }
    }
}

/// What one response weighs against the buffer: its outputs' bytes, and at
/// least [`MIN_WEIGHT`] (a response without outputs still takes memory).
fn weight(response: &Option<Result<InferResponse>>) -> u64 {
    let bytes = match response {
        Some(Ok(r)) => r.outputs.iter().map(|(_, t)| t.byte_len() as u64).sum(),
        _ => 0,
    };
    bytes.max(MIN_WEIGHT)
}

/// How the overload error of a full buffer begins ([`Feed::overflowed`]).
pub(crate) const BUFFER_FULL: &str = "response buffer of a request to model";

/// The least a response weighs against a request's response buffer.
const MIN_WEIGHT: u64 = 256;

/// The sending side of [`Responses`], counting what waits to be read.
pub(crate) struct Feed {
    tx: mpsc::UnboundedSender<(Streamed, u64)>,
    /// Bytes sent and not read yet, shared with [`Responses`].
    waiting: Arc<AtomicU64>,
    /// Their limit: a caller that reads slower than the responses come
    /// cannot make the server hold them without end.
    limit: u64,
    /// The model the responses are of, for the overload error.
    model: String,
}

/// What came of [`Feed::send`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sent {
    /// The caller will read it.
    Delivered,
    /// Nobody reads any more.
    Gone,
    /// Not sent: it would put the waiting bytes past the limit.
    Overflow,
}

impl Feed {
    /// A feed of responses of `model`, holding at most `limit` bytes unread.
    pub(crate) fn new(model: &str, limit: u64) -> (Feed, Responses) {
        let (tx, rx) = mpsc::unbounded_channel();
        let waiting = Arc::new(AtomicU64::new(0));
        let feed = Feed {
            tx,
            waiting: Arc::clone(&waiting),
            limit,
            model: model.to_string(),
        };
        (feed, Responses { rx, waiting })
    }

    /// Sends a response (`None`: the final flag alone), the last when
    /// `last`. A response that is not the last and would put the waiting
    /// bytes past the limit is not sent ([`Sent::Overflow`]).
    pub(crate) fn send(&self, response: Option<Result<InferResponse>>, last: bool) -> Sent {
        let weight = weight(&response);
        let waiting = self.waiting.fetch_add(weight, Ordering::Relaxed) + weight;
        if !last && waiting > self.limit {
            self.waiting.fetch_sub(weight, Ordering::Relaxed);
            return Sent::Overflow;
        }
        match self.tx.send((Streamed { response, last }, weight)) {
            Ok(()) => Sent::Delivered,
            Err(_) => Sent::Gone,
        }
    }

    /// Ends the responses with the overload error of a full buffer.
    pub(crate) fn overflowed(&self) {
        let error = Error::Overloaded {
            limit: format!(
                "{BUFFER_FULL} '{}' (responses sent and not read by the client: read faster, or \
                 raise --max-stream-buffer-bytes)",
                self.model
            ),
            in_use: usize::try_from(self.waiting.load(Ordering::Relaxed)).unwrap_or(usize::MAX),
            capacity: usize::try_from(self.limit).unwrap_or(usize::MAX),
        };
        let streamed = Streamed {
            response: Some(Err(error)),
            last: true,
        };
        let _ = self.tx.send((streamed, 0));
    }

    /// Whether the caller stopped reading.
    pub(crate) fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}
