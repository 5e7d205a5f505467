//! The reading side of a decoupled model's process: a thread that reads
//! every frame the process sends, at any time, and routes it. A response
//! (`op: "response"`, sent by the model's response sender, from `execute`
//! or from a thread of its own after `execute` returned) goes to its
//! request's [`Responder`]; a request to another model (`op: "bls"`) runs
//! on a thread of its own and is answered with its number; anything else
//! answers the frame the instance is waiting on (`Process::exchange`).
//! When the process ends, every request still open ends with an error.
//!
//! A request whose client has gone is told to the process
//! (`{"op": "cancelled", "key": K}`), so that the model's `is_cancelled()`
//! reads a flag of its own rather than asking: at once when a response
//! finds nobody listening, else within [`WATCH_EVERY`] (a watching thread
//! looks at the open requests).

use super::bls::Cancels;
use super::process::Launch;
use super::wire::{self, Reply};
use anemone_core::{Bytes, Caller, Error, Responder, Response, Result};
use std::collections::{HashMap, VecDeque};
use std::io::Read;
use std::process::{ChildStdin, ChildStdout};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// How often the open requests are looked at for clients that have gone.
pub(crate) const WATCH_EVERY: Duration = Duration::from_millis(20);

/// What the pump hands the instance waiting on a frame.
pub(crate) enum Received {
    /// A frame (its header boxed: it is large, and the other variants small).
    Frame(Box<Reply>, Bytes),
    /// A frame that could not be read.
    Bad(Error),
    /// The process's output ended (it exited, or was killed).
    Ended(std::io::Error),
}

/// The requests of a decoupled model whose last response has not come yet,
/// by key.
#[derive(Default)]
pub(crate) struct Pending {
    next: AtomicU64,
    open: Mutex<HashMap<u64, Responder>>,
}

impl Pending {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Responder>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens a request; its responses come back with the key returned.
    pub(crate) fn open(&self, responder: Responder) -> u64 {
        let key = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(key, responder);
        key
    }

    /// Forgets a request (its call failed, or its last response came).
    pub(crate) fn close(&self, key: u64) -> Option<Responder> {
        self.lock().remove(&key)
    }

    fn get(&self, key: u64) -> Option<Responder> {
        self.lock().get(&key).cloned()
    }

    /// The key a request is open under, found by its responder (a
    /// rescheduled request, run again: `reschedule.rs`).
    pub(crate) fn key_of(&self, responder: &Responder) -> Option<u64> {
        (self.lock().iter())
            .find(|(_, r)| Arc::ptr_eq(&r.0, &responder.0))
            .map(|(&key, _)| key)
    }

    /// Whether a request is still open (its last response has not come,
    /// and its client has not gone).
    pub(crate) fn is_open(&self, key: u64) -> bool {
        self.lock().contains_key(&key)
    }

    /// Forgets the open requests whose clients have gone; their keys.
    fn take_cancelled(&self) -> Vec<u64> {
        let mut open = self.lock();
        let gone: Vec<u64> = open
            .iter()
            .filter(|(_, r)| r.cancelled())
            .map(|(k, _)| *k)
            .collect();
        for key in &gone {
            open.remove(key);
        }
        gone
    }

    /// Ends every open request with `error()`.
    fn fail_all(&self, error: impl Fn() -> Error) {
        let open: Vec<Responder> = self.lock().drain().map(|(_, r)| r).collect();
        for responder in open {
            let response = Response {
                outputs: Err(error()),
                parameters: Vec::new(),
            };
            responder.send(Some(response), true);
        }
    }
}

/// The pump of one process.
pub(crate) struct Pump {
    replies: mpsc::Receiver<Received>,
    pending: Arc<Pending>,
}

impl Pump {
    /// Starts the thread reading `stdout`; requests to other models are
    /// answered on `stdin` through `caller`.
    pub(crate) fn start(
        launch: &Launch,
        caller: Option<Caller>,
        stdout: ChildStdout,
        stdin: Arc<Mutex<ChildStdin>>,
        tail: Arc<Mutex<VecDeque<String>>>,
        cancels: Arc<Cancels>,
    ) -> Result<Pump> {
        let (tx, replies) = mpsc::channel();
        let pending = Arc::new(Pending::default());
        let routes = Routes {
            launch: launch.clone(),
            caller,
            stdin,
            pending: Arc::clone(&pending),
            replies: tx,
            cancels,
        };
        let (watched, to) = (Arc::downgrade(&pending), Arc::clone(&routes.stdin));
        std::thread::Builder::new()
            .name(format!("python-pump-{}", launch.model))
            .spawn(move || routes.run(stdout, &tail))
            .map_err(|e| Error::Internal(format!("cannot start a reading thread: {e}")))?;
        std::thread::Builder::new()
            .name(format!("python-watch-{}", launch.model))
            .spawn(move || watch(&watched, &to))
            .map_err(|e| Error::Internal(format!("cannot start a watching thread: {e}")))?;
        Ok(Pump { replies, pending })
    }

    /// The next frame that answers the instance.
    pub(crate) fn receive(&self) -> Received {
        self.replies.recv().unwrap_or_else(|_| {
            Received::Ended(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the reading thread ended",
            ))
        })
    }

    /// The open requests.
    pub(crate) fn pending(&self) -> &Pending {
        &self.pending
    }
}

/// Where the pump's thread sends what it reads.
struct Routes {
    launch: Launch,
    caller: Option<Caller>,
    stdin: Arc<Mutex<ChildStdin>>,
    pending: Arc<Pending>,
    replies: mpsc::Sender<Received>,
    cancels: Arc<Cancels>,
}

impl Routes {
    fn run(self, mut stdout: ChildStdout, tail: &Mutex<VecDeque<String>>) {
        loop {
            let body = match read_body(&mut stdout) {
                Ok(body) => body,
                Err(e) => {
                    // Let the log thread read what the process wrote last.
                    std::thread::sleep(std::time::Duration::from_millis(50));
                    let last: Vec<String> = tail
                        .lock()
                        .map(|t| t.iter().cloned().collect())
                        .unwrap_or_default();
                    let model = &self.launch.model;
                    self.pending.fail_all(|| Error::Backend {
                        backend: super::NAME.into(),
                        message: format!(
                            "the Python process of model '{model}' ended before it sent the \
                             request's final response{}",
                            if last.is_empty() {
                                String::new()
                            } else {
                                format!("; its last lines: {}", last.join(" | "))
                            }
                        ),
                        retryable: false,
                        source: None,
                    });
                    let _ = self.replies.send(Received::Ended(e));
                    return;
                }
            };
            match wire::split_body(Bytes::from(body)) {
                Err(why) => {
                    let e = wire::bad_frame(&self.launch.model, &why);
                    let _ = self.replies.send(Received::Bad(e));
                }
                Ok((reply, blobs)) => match reply.op.as_deref() {
                    Some("response") => self.respond(reply, blobs),
                    Some("bls") if reply.decoupled => {
                        let (stdin, cancels) = (Arc::clone(&self.stdin), Arc::clone(&self.cancels));
                        let caller = self.caller.clone();
                        super::bls::stream(&self.launch, caller, reply, blobs, stdin, cancels);
                    }
                    Some("bls") => self.call(reply, blobs),
                    Some("bls_cancel") => self.cancels.cancel(reply.call),
                    _ => {
                        let _ = self.replies.send(Received::Frame(Box::new(reply), blobs));
                    }
                },
            }
        }
    }

    /// Hands a response to its request's responder.
    fn respond(&self, reply: Reply, blobs: Bytes) {
        let Some(key) = reply.key else {
            tracing::warn!(model = %self.launch.model, "a response without a request key; dropped");
            return;
        };
        let responder = match reply.last {
            true => self.pending.close(key),
            false => self.pending.get(key),
        };
        // A request that already ended (its call failed): nobody listens.
        let Some(responder) = responder else { return };
        let response = reply.response.map(|r| Response {
            parameters: r.parameters(),
            outputs: match r.error {
                Some(message) => Err(super::refusal(message, r.code.unwrap_or(1))),
                None => wire::tensors(&r.outputs, blobs),
            },
        });
        if !responder.send(response, reply.last) && !reply.last {
            // The client has gone: the model is told.
            self.pending.close(key);
            tell_cancelled(&self.stdin, key);
        }
    }

    /// Runs a request to another model on a thread of its own, so that
    /// responses keep flowing meanwhile, and answers it with its number.
    fn call(&self, reply: Reply, blobs: Bytes) {
        let (launch, caller, stdin) = (
            self.launch.clone(),
            self.caller.clone(),
            Arc::clone(&self.stdin),
        );
        let call = reply.call;
        let spawned = std::thread::Builder::new()
            .name(format!("python-call-{}", launch.model))
            .spawn(move || {
                let answer = super::bls::call(&launch, caller.as_ref(), reply, blobs);
                answer_call(&stdin, answer, call);
            });
        // Answered all the same, so that the model's call does not wait forever.
        if let Err(e) = spawned {
            let why = format!("cannot start a thread for a request to another model: {e}");
            tracing::error!(model = %self.launch.model, "{why}");
            answer_call(&self.stdin, Err(Error::Internal(why)), call);
        }
    }
}

/// Answers the process's request number `call` to another model.
fn answer_call(
    stdin: &Mutex<ChildStdin>,
    answer: Result<anemone_core::CallAnswer>,
    call: Option<u64>,
) {
    write(stdin, wire::call_reply(answer, call));
}

/// Writes a frame to the process (a write to a process that has ended is
/// dropped: its reading side reports the end).
fn write(stdin: &Mutex<ChildStdin>, frame: Result<Vec<u8>>) {
    if let Ok(frame) = frame {
        super::bls::write(stdin, &frame);
    }
}

/// Every [`WATCH_EVERY`], tells the process which open requests' clients
/// have gone, until the process has ended (its pump, and `pending`, gone).
fn watch(pending: &Weak<Pending>, stdin: &Mutex<ChildStdin>) {
    loop {
        std::thread::sleep(WATCH_EVERY);
        let Some(pending) = pending.upgrade() else {
            return;
        };
        for key in pending.take_cancelled() {
            tell_cancelled(stdin, key);
        }
    }
}

/// Tells the process that request `key`'s client has gone.
pub(crate) fn tell_cancelled(stdin: &Mutex<ChildStdin>, key: u64) {
    let told = serde_json::json!({ "op": "cancelled", "key": key });
    write(stdin, wire::frame(&told, &[]));
}

/// One frame's body (what follows its length).
pub(crate) fn read_body(stdout: &mut impl Read) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    stdout.read_exact(&mut len)?;
    let mut body = vec![0u8; u32::from_le_bytes(len) as usize];
    stdout.read_exact(&mut body)?;
    Ok(body)
}
