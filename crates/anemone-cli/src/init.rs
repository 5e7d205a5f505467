//! anemone as a container's first process (PID 1).
//!
//! A container started without an init (`docker run` without `--init`, a
//! Kubernetes pod) runs its entrypoint as PID 1, which inherits every
//! orphaned process of the container: a Python model's subprocess whose
//! parent (the model's process) ended first, say, or one a library left
//! running. The kernel expects PID 1 to wait for them; a server that does
//! not leaves each as a zombie, holding its process ID until the container
//! stops. And PID 1 gets no signal for which it has no handler.
//!
//! So when anemone starts as PID 1 it does what tini does: it forks, the
//! child runs the command as usual, and PID 1 stays behind as a small init
//! that waits for every process that ends (the child's orphans included),
//! passes the signals it is sent on to the child, and exits as the child
//! did. It runs no thread and no Rust code that allocates after the fork.

/// Becomes the init described above when this process is PID 1 (Linux and
/// other Unix systems; a no-op elsewhere). Returns in the child, which goes
/// on with the command; the init never returns. Must be called before any
/// thread starts. If the fork fails, the command runs as PID 1 (and says
/// so).
pub fn supervise_when_pid_1() {
    #[cfg(unix)]
    unix::supervise_when_pid_1();
}

#[cfg(unix)]
mod unix {
    use std::mem::MaybeUninit;

    pub fn supervise_when_pid_1() {
        // SAFETY: getpid has no preconditions.
        if unsafe { libc::getpid() } != 1 {
            return;
        }
        // SAFETY: called before any thread starts (see the caller), so the
        // mask and the fork concern this one thread; every pointer is to a
        // local that outlives the call.
        unsafe {
            let mut all = MaybeUninit::<libc::sigset_t>::uninit();
            libc::sigfillset(all.as_mut_ptr());
            let all = all.assume_init();
            let mut before = MaybeUninit::<libc::sigset_t>::uninit();
            // Blocked before the fork, so that no signal sent between the
            // fork and the init's first wait is lost.
            libc::pthread_sigmask(libc::SIG_SETMASK, &all, before.as_mut_ptr());
            let before = before.assume_init();
            let child = libc::fork();
            if child != 0 {
                if child > 0 {
                    init(child, &all);
                }
                eprintln!(
                    "anemone: running as PID 1 without an init (fork failed: {}): processes \
                     orphaned in this container will not be waited for; start the container \
                     with an init (docker run --init)",
                    std::io::Error::last_os_error()
                );
            }
            libc::pthread_sigmask(libc::SIG_SETMASK, &before, std::ptr::null_mut());
        }
    }

    /// PID 1's loop: every signal is taken as it comes (all are blocked).
    /// A child that ended is waited for; when it is `server`, the init
    /// exits with its status (128 + the signal that ended it). Any other
    /// signal is passed to `server`, unless the kernel sent it (a
    /// terminal's Ctrl-C goes to the whole foreground group, the server
    /// included, which would otherwise get it twice).
    ///
    /// SAFETY: all signals are blocked in this thread; `all` is the full set.
    unsafe fn init(server: libc::pid_t, all: &libc::sigset_t) -> ! {
        loop {
            let mut info = MaybeUninit::<libc::siginfo_t>::zeroed();
            let signal = libc::sigwaitinfo(all, info.as_mut_ptr());
            if signal < 0 {
                continue; // EINTR
            }
            if signal == libc::SIGCHLD {
                loop {
                    let mut status = 0;
                    let ended = libc::waitpid(-1, &mut status, libc::WNOHANG);
                    if ended <= 0 {
                        break;
                    }
                    if ended == server {
                        let code = if libc::WIFEXITED(status) {
                            libc::WEXITSTATUS(status)
                        } else {
                            128 + libc::WTERMSIG(status)
                        };
                        libc::_exit(code);
                    }
                }
                continue;
            }
            if info.assume_init().si_code != libc::SI_KERNEL {
                libc::kill(server, signal);
            }
        }
    }
}
