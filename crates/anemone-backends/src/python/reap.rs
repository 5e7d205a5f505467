//! A Python process that ends without anemone asking (the system killed
//! it, the model exited) is reaped as soon as its standard error ends, so
//! that no zombie waits for the model's next request or its unload, and
//! the end is logged then, with the exit status and the last lines. An
//! end anemone asked for (`finalize`, an unload, a kill after a call
//! failed) is not logged here: what asked for it says why.

use std::collections::VecDeque;
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long after its standard error ended a process is waited for: one
/// that closed its standard error and runs on is reaped when it is ended.
const WAIT: Duration = Duration::from_secs(2);

/// Called by the log thread once the process's standard error has ended.
pub(super) fn once_ended(
    model: &str,
    child: &Mutex<Child>,
    asked: &AtomicBool,
    tail: &Mutex<VecDeque<String>>,
) {
    let deadline = Instant::now() + WAIT;
    loop {
        // The lock is held for a `waitpid(WNOHANG)` only: the instance's
        // own calls (kill, wait) are not held up.
        let status = child.lock().unwrap_or_else(|e| e.into_inner()).try_wait();
        match status {
            Ok(Some(status)) => {
                if !asked.load(Ordering::SeqCst) {
                    let message = ended_message(model, &status.to_string(), tail);
                    tracing::warn!(model = %model, "{message}");
                }
                return;
            }
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => return,
        }
    }
}

/// What is said of a process that ended: its exit `status` and its last
/// lines of standard error; the request it failed and the log (above) say
/// the same.
pub(super) fn ended_message(model: &str, status: &str, tail: &Mutex<VecDeque<String>>) -> String {
    let lines: Vec<String> = tail
        .lock()
        .map(|t| t.iter().cloned().collect())
        .unwrap_or_default();
    let last = match lines.is_empty() {
        true => String::new(),
        false => format!("; its last lines: {}", lines.join(" | ")),
    };
    format!(
        "the Python process of model '{model}' ended ({status}){last}; it is started again for the next request"
    )
}
