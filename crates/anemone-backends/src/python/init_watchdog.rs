//! The bound on a fresh process's import of its model.py and its
//! `initialize` (or `auto_complete_config`): a thread beside the exchange
//! kills a process that has not answered within [`init_timeout`], or that
//! is still at it when the server stops ([`STOPPING`]), and the load fails
//! saying which.

use super::process::env_seconds;
use super::NAME;
use anemone_core::{Error, Result};
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The environment variable that bounds a process's import and
/// `initialize`, in seconds ([`DEFAULT_INIT_TIMEOUT`] when unset).
pub(crate) const INIT_TIMEOUT_ENV: &str = "ANEMONE_PYTHON_INIT_TIMEOUT_S";

/// How long a model.py may take to import and `initialize` by default:
/// long enough to download weights, short of waiting without end.
const DEFAULT_INIT_TIMEOUT: Duration = Duration::from_secs(600);

/// [`INIT_TIMEOUT_ENV`]'s bound, or the default (with a warning for a
/// value that is not a positive number of seconds).
fn init_timeout() -> Duration {
    env_seconds(INIT_TIMEOUT_ENV, DEFAULT_INIT_TIMEOUT, false)
}

/// Set while a stopping server waits for the models' `finalize`
/// ([`super::wait_for_finalize`]): a process still importing its model.py
/// or in `initialize` is then killed within [`STOPPING_SEEN_WITHIN`], not
/// waited for, as no `finalize` is owed to a model that never loaded.
pub(crate) static STOPPING: AtomicBool = AtomicBool::new(false);

/// How soon a watchdog sees [`STOPPING`].
const STOPPING_SEEN_WITHIN: Duration = Duration::from_millis(50);

/// Why a watchdog killed its process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Killed {
    /// It had not answered within the bound.
    TimedOut(Duration),
    /// The server is stopping.
    Stopping,
}

/// The thread that watches one process's first exchange.
pub(super) struct InitWatchdog {
    /// Dropped when the exchange has ended.
    done: Sender<()>,
    thread: JoinHandle<Option<Killed>>,
}

impl InitWatchdog {
    /// Starts watching `child`; `asked` is set before a kill, so that the
    /// end is not logged as news (`reap.rs`).
    pub(super) fn start(
        model: &str,
        child: &Arc<Mutex<Child>>,
        asked: &Arc<AtomicBool>,
    ) -> Result<InitWatchdog> {
        let limit = init_timeout();
        let (done, watched) = std::sync::mpsc::channel::<()>();
        let (child, asked) = (Arc::clone(child), Arc::clone(asked));
        let thread = std::thread::Builder::new()
            .name(format!("python-init-{model}"))
            .spawn(move || {
                let deadline = Instant::now() + limit;
                let killed = loop {
                    let wait = deadline.saturating_duration_since(Instant::now());
                    match watched.recv_timeout(wait.min(STOPPING_SEEN_WITHIN)) {
                        Err(RecvTimeoutError::Timeout) if STOPPING.load(Ordering::SeqCst) => {
                            break Some(Killed::Stopping)
                        }
                        Err(RecvTimeoutError::Timeout) if Instant::now() >= deadline => {
                            break Some(Killed::TimedOut(limit))
                        }
                        Err(RecvTimeoutError::Timeout) => {}
                        Ok(()) | Err(RecvTimeoutError::Disconnected) => break None,
                    }
                };
                if killed.is_some() {
                    asked.store(true, Ordering::SeqCst);
                    let _ = child.lock().unwrap_or_else(|e| e.into_inner()).kill();
                }
                killed
            })
            .map_err(|e| Error::Internal(format!("cannot start a watchdog thread: {e}")))?;
        Ok(InitWatchdog { done, thread })
    }

    /// Once the exchange has ended: the error of a process the watchdog
    /// killed, which is what the exchange's own error (an ended process)
    /// gives way to.
    pub(super) fn finish(self, model: &str) -> Result<()> {
        drop(self.done);
        let message = match self.thread.join().ok().flatten() {
            None => return Ok(()),
            Some(Killed::Stopping) => format!(
                "the server is stopping: the process of model '{model}' was ended before its \
                 model.py finished importing and initialize() (no finalize() is owed to it)"
            ),
            Some(Killed::TimedOut(limit)) => format!(
                "model.py of model '{model}' did not finish importing and initialize() within {} s, \
                 and its process was killed; see what it waits for (the log has its output), \
                 or give it longer with {INIT_TIMEOUT_ENV}",
                limit.as_secs_f64()
            ),
        };
        Err(Error::Backend {
            backend: NAME.into(),
            message,
            retryable: false,
            source: None,
        })
    }
}
