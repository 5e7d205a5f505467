//! The lock between CUDA graph captures (`cuda_graph`) and what must not
//! run while any thread captures one.
//!
//! Each capture holds `CAPTURING` for reading. Allocating or freeing
//! page-locked memory waits on the device, and on an H200 threads that did
//! either while others captured invalidated those captures
//! (`CUDA_ERROR_STREAM_CAPTURE_INVALIDATED`, device runs 41 and 43), although
//! each capture only restricts its own thread: such work runs in
//! [`outside_captures`], which holds the lock for writing.
//!
//! A thread's end is such work too. tract-cuda keeps a stream per thread,
//! with cuBLAS and cuDNN handles, and drops it when the thread ends;
//! destroying a cuDNN handle waits on the device and fails while another
//! thread captures, cudarc panics on the failure, and a panic in a
//! thread-local's destructor aborts the process (the GPU tests' threads
//! ended so, device runs 48 to 52 and 60; a server's instance thread ends
//! when its model is unloaded). So a thread that runs tract-cuda brackets
//! its first call with [`enter`] and [`entered`]: the thread-locals made in
//! between, tract-cuda's stream among them, are destroyed while the thread
//! holds the lock for writing. Thread-local destructors run in the reverse
//! order of their first use (glibc's `__cxa_thread_atexit_impl`); where they
//! did not, the lock would be released at once, as before.
//!
//! No CUDA here: the bracket is tested on any machine.

use std::cell::{Cell, RefCell};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Held for reading by every capture, for writing by [`outside_captures`]
/// and by a thread's end (module documentation).
static CAPTURING: RwLock<()> = RwLock::new(());

thread_local! {
    /// Whether this thread holds [`CAPTURING`] for writing already (while
    /// its thread-locals are destroyed), so that [`outside_captures`] in one
    /// of their destructors does not wait on itself. No destructor: usable
    /// while the others run.
    static ALONE: Cell<bool> = const { Cell::new(false) };
    /// First used before the bracketed call, so destroyed after the
    /// thread-locals it made: releases the lock.
    static RELEASE: Release = const { Release(RefCell::new(None)) };
    /// First used after the bracketed call, so destroyed before the
    /// thread-locals it made: takes the lock.
    static TAKE: Take = const { Take };
}

/// The lock for a capture: held for reading while it lasts.
pub fn capturing() -> RwLockReadGuard<'static, ()> {
    CAPTURING.read().unwrap_or_else(PoisonError::into_inner)
}

/// Runs `f` while no thread captures.
pub fn outside_captures<T>(f: impl FnOnce() -> T) -> T {
    if ALONE.try_with(Cell::get).unwrap_or(false) {
        return f();
    }
    let _alone = CAPTURING.write().unwrap_or_else(PoisonError::into_inner);
    f()
}

/// Call before a call that may use tract-cuda's per-thread state for the
/// first time on this thread (module documentation).
pub fn enter() {
    RELEASE.with(|_| {});
}

/// Call after that call (module documentation).
pub fn entered() {
    TAKE.with(|_| {});
}

struct Release(RefCell<Option<RwLockWriteGuard<'static, ()>>>);

impl Drop for Release {
    fn drop(&mut self) {
        if self.0.get_mut().take().is_some() {
            let _ = ALONE.try_with(|alone| alone.set(false));
        }
    }
}

struct Take;

impl Drop for Take {
    fn drop(&mut self) {
        let guard = CAPTURING.write().unwrap_or_else(PoisonError::into_inner);
        let _ = ALONE.try_with(|alone| alone.set(true));
        // Handed to `Release`, destroyed after the bracketed thread-locals.
        // Where it is gone already, the guard is dropped with the closure
        // and the lock released here.
        if RELEASE
            .try_with(move |release| *release.0.borrow_mut() = Some(guard))
            .is_err()
        {
            let _ = ALONE.try_with(|alone| alone.set(false));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::TryLockError;

    /// Stands for tract-cuda's per-thread stream: made inside the bracket,
    /// it records whether its destructor ran with the lock held for
    /// writing, and frees through `outside_captures` as anemone's own
    /// buffers do.
    struct Stream(std::sync::mpsc::Sender<(bool, bool)>);

    impl Drop for Stream {
        fn drop(&mut self) {
            let held = matches!(CAPTURING.try_read(), Err(TryLockError::WouldBlock));
            let ran = outside_captures(|| true);
            let _ = self.0.send((held, ran));
        }
    }

    thread_local! {
        static STREAM: RefCell<Option<Stream>> = const { RefCell::new(None) };
    }

    /// Runs a thread that makes the stand-in, bracketed or not, and
    /// returns what its destructor saw.
    fn thread_end(bracketed: bool) -> (bool, bool) {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            if bracketed {
                enter();
            }
            STREAM.with(|s| *s.borrow_mut() = Some(Stream(tx)));
            if bracketed {
                entered();
            }
        })
        .join()
        .unwrap();
        rx.recv().unwrap()
    }

    // One test, so that nothing else in this process holds the lock.
    #[test]
    fn a_bracketed_thread_ends_its_state_holding_the_lock_then_releases_it() {
        let (held, ran) = thread_end(false);
        assert!(
            !held && ran,
            "an unbracketed thread held the lock at its end"
        );
        let (held, ran) = thread_end(true);
        assert!(held, "the stand-in was destroyed without the lock held");
        assert!(
            ran,
            "outside_captures in a destructor under the lock did not run"
        );
        assert!(
            CAPTURING.try_write().is_ok(),
            "the lock was not released when the thread ended"
        );
    }
}
