//! Telling a model that is not decoupled which running requests' clients
//! have gone, as Triton does: while its `execute` runs, the instance waits
//! for the process's answer at most [`WATCH_EVERY`] at a time, and between
//! waits asks each request ([`ClientGone`]); one whose client has gone is
//! told to the process (`{"op": "cancelled", "key": K}`, as a decoupled
//! model's requests are by the pump), where `request.is_cancelled()` reads
//! it. A decoupled model's requests are watched by its pump instead.

use super::pump::{tell_cancelled, WATCH_EVERY};
use anemone_core::{ClientGone, RequestView};
use std::os::fd::AsRawFd;
use std::process::{ChildStdin, ChildStdout};
use std::sync::Mutex;

/// The requests of one `execute` of a model that is not decoupled: each
/// one's key in the frame, how to ask about its client, and whether the
/// process was told.
pub(crate) struct Watched<'a> {
    requests: Vec<(u64, ClientGone<'a>, bool)>,
}

impl<'a> Watched<'a> {
    /// The requests that can say whether their clients have gone, keyed
    /// from `first` in order (the keys the execute frame gives them).
    pub(crate) fn new(first: u64, requests: &[RequestView<'a>]) -> Watched<'a> {
        let keyed = (first..).zip(requests);
        Watched {
            requests: keyed
                .filter_map(|(key, r)| r.gone.map(|gone| (key, gone, false)))
                .collect(),
        }
    }

    /// Waits until the process has written something to `stdout`, telling
    /// it meanwhile of the clients that go. Returns at once when no request
    /// can say (nothing to watch), or when the wait fails (the read that
    /// follows says why).
    pub(crate) fn wait(&mut self, stdout: &ChildStdout, stdin: &Mutex<ChildStdin>) {
        if self.requests.iter().all(|(_, _, told)| *told) {
            return;
        }
        while !readable_within(stdout, WATCH_EVERY) {
            for (key, gone, told) in &mut self.requests {
                if !*told && gone.now() {
                    tell_cancelled(stdin, *key);
                    *told = true;
                }
            }
        }
    }
}

/// Whether `stdout` has something to read (or has ended, or failed)
/// within `wait`.
fn readable_within(stdout: &ChildStdout, wait: std::time::Duration) -> bool {
    let mut fd = libc::pollfd {
        fd: stdout.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = libc::c_int::try_from(wait.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: one valid pollfd, for a descriptor this process owns.
    let ready = unsafe { libc::poll(&mut fd, 1, ms) };
    match ready {
        0 => false,
        -1 => std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted,
        _ => true,
    }
}
