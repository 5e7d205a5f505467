//! Answers in arrival order, for a model with `preserve_ordering` (Triton's
//! dynamic batching setting): batches that finish on different engine
//! instances, or requests that overtook others by priority, hold their
//! answers until every earlier request of the model has been answered,
//! refused or dropped.
//!
//! Each queued request takes a ticket (its arrival number) from the model's
//! [`OrderGate`]. An answer with a ticket is parked in the gate until all
//! earlier tickets are done, then sent; a ticket dropped without an answer (a
//! cancelled client's request, never run) counts as done. Without
//! `preserve_ordering` no ticket is taken and answers go out at once.

use super::Done;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// The release order of one model's answers.
#[derive(Default)]
pub(crate) struct OrderGate {
    state: Mutex<GateState>,
}

#[derive(Default)]
struct GateState {
    /// The next ticket handed out.
    issued: u64,
    /// The ticket whose answer goes out next.
    next: u64,
    /// Tickets done before their turn: the answer to send, or `None` for a
    /// request dropped without one.
    parked: BTreeMap<u64, Option<(oneshot::Sender<Done>, Done)>>,
}

impl OrderGate {
    /// The next ticket, in arrival order.
    pub(crate) fn ticket(self: &Arc<Self>) -> Ticket {
        let mut state = self.lock();
        let seq = state.issued;
        state.issued += 1;
        Ticket {
            gate: Arc::clone(self),
            seq,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks `seq` done, then sends every answer whose turn has come.
    fn finish(&self, seq: u64, answer: Option<(oneshot::Sender<Done>, Done)>) {
        let mut state = self.lock();
        state.parked.insert(seq, answer);
        loop {
            let next = state.next;
            let Some(answer) = state.parked.remove(&next) else {
                break;
            };
            state.next += 1;
            if let Some((to, done)) = answer {
                // Non-blocking; an answer to a client that has gone is dropped.
                let _ = to.send(done);
            }
        }
    }
}

/// A request's place in its model's answer order.
pub(crate) struct Ticket {
    gate: Arc<OrderGate>,
    seq: u64,
}

/// The sending half of a job's answer. Closed when the client's future was
/// dropped (HTTP connection closed, gRPC call cancelled).
pub(crate) struct Reply {
    to: Option<oneshot::Sender<Done>>,
    ticket: Option<Ticket>,
    /// A decoupled model's request: its responses go there, and the end of
    /// its engine call is told there, not on `to`.
    stream: Option<Arc<crate::decoupled::Sink>>,
    /// The model and start of the request, to record its outcome here when
    /// nobody waits for the answer any more (its client went while it ran).
    unheard: Option<Unheard>,
}

/// What [`Reply::recorded_if_unheard`] records with: the model, the
/// request's start, and whether its waiter recorded the outcome itself
/// before it stopped waiting (a request timeout).
type Unheard = (
    Arc<crate::instance::ModelInstance>,
    std::time::Instant,
    Arc<std::sync::atomic::AtomicBool>,
);

impl Reply {
    /// A reply that goes out as soon as it is sent.
    pub(crate) fn new(to: oneshot::Sender<Done>) -> Reply {
        Reply {
            to: Some(to),
            ticket: None,
            stream: None,
            unheard: None,
        }
    }

    /// Records the outcome on `instance`'s statistics when the answer finds
    /// nobody waiting (the waiter records it otherwise), as Triton counts a
    /// request whose client went while it ran.
    pub(crate) fn recorded_if_unheard(mut self, unheard: Unheard) -> Reply {
        self.unheard = Some(unheard);
        self
    }

    /// The reply of a request on a decoupled model, whose responses go to
    /// `sink` as the model sends them.
    pub(crate) fn stream(sink: Arc<crate::decoupled::Sink>) -> Reply {
        Reply {
            to: None,
            ticket: None,
            stream: Some(sink),
            unheard: None,
        }
    }

    /// Takes a place in `gate`'s order: the answer waits for earlier ones.
    /// A decoupled model's responses are not ordered: they go out as sent.
    pub(crate) fn in_order(&mut self, gate: &Arc<OrderGate>) {
        if self.stream.is_none() {
            self.ticket = Some(gate.ticket());
        }
    }

    /// Whether the client stopped waiting.
    pub(crate) fn is_closed(&self) -> bool {
        match &self.stream {
            Some(sink) => sink.is_closed(),
            None => self.to.as_ref().is_none_or(|to| to.is_closed()),
        }
    }

    /// Sends the answer, or parks it until its turn.
    pub(crate) fn send(mut self, done: Done) {
        if let Some(sink) = self.stream.take() {
            sink.executed(done);
            return;
        }
        let Some(to) = self.to.take() else {
            return;
        };
        match self.ticket.take() {
            None => {
                if let (Err(done), Some((instance, start, settled))) =
                    (to.send(done), self.unheard.take())
                {
                    if !settled.load(std::sync::atomic::Ordering::Acquire) {
                        let _ = crate::pipeline::finish(Ok::<_, ()>(done), &instance, start);
                    }
                }
            }
            Some(ticket) => ticket.gate.finish(ticket.seq, Some((to, done))),
        }
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        // Dropped unsent (a cancelled request): later answers must not wait for it.
        if let Some(ticket) = self.ticket.take() {
            ticket.gate.finish(ticket.seq, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::InferResponse;

    fn answer(id: &str) -> Done {
        Ok(InferResponse {
            model: "m".into(),
            version: 1,
            backend: "test",
            id: Some(id.into()),
            outputs: Vec::new(),
            parameters: Vec::new(),
            timings: Default::default(),
        })
    }

    fn id(rx: &mut oneshot::Receiver<Done>) -> Option<String> {
        rx.try_recv().ok().map(|d| d.unwrap().id.unwrap())
    }

    #[test]
    fn later_answers_wait_for_earlier_ones() {
        let gate = Arc::new(OrderGate::default());
        let mut replies = Vec::new();
        let mut rxs = Vec::new();
        for _ in 0..4 {
            let (tx, rx) = oneshot::channel();
            let mut reply = Reply::new(tx);
            reply.in_order(&gate);
            replies.push(Some(reply));
            rxs.push(rx);
        }
        // The third answer first: held.
        replies[2].take().unwrap().send(answer("c"));
        assert_eq!(id(&mut rxs[2]), None);
        // The second request is dropped unanswered (its client went away).
        drop(replies[1].take());
        assert_eq!(id(&mut rxs[2]), None);
        // The first answer releases itself and the held third one.
        replies[0].take().unwrap().send(answer("a"));
        assert_eq!(id(&mut rxs[0]).as_deref(), Some("a"));
        assert_eq!(id(&mut rxs[2]).as_deref(), Some("c"));
        // The last goes out at once.
        replies[3].take().unwrap().send(answer("d"));
        assert_eq!(id(&mut rxs[3]).as_deref(), Some("d"));
    }

    #[test]
    fn without_a_ticket_answers_go_out_at_once() {
        let (tx, mut rx) = oneshot::channel();
        Reply::new(tx).send(answer("x"));
        assert_eq!(id(&mut rx).as_deref(), Some("x"));
    }
}
