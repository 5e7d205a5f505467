//! The signals that stop a server: the first SIGINT (Ctrl-C) or SIGTERM
//! begins a graceful stop ([`shutdown_signal`]); a second SIGINT, while
//! the server still drains, is a user at a terminal pressing Ctrl-C again
//! to stop it at once ([`second_interrupt`]). SIGTERM never cuts the drain
//! short: automation may send it more than once, and Triton ignores
//! signals once it is exiting.

use std::future::Future;

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
///
/// The signals are caught from the call on (it must run inside the
/// runtime), not from the future's first poll: a SIGTERM that comes
/// between the listeners' binding and the server's first wait stops the
/// server as any other, where the default action used to kill it.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let (mut interrupt, mut term) = (
        listen(SignalKind::interrupt()),
        listen(SignalKind::terminate()),
    );
    async move {
        #[cfg(unix)]
        tokio::select! {
            () = next(&mut interrupt) => {},
            () = next(&mut term) => {},
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Resolves on the second SIGINT counted from the call (made with
/// [`shutdown_signal`]'s, inside the runtime): `anemone serve` then exits
/// at once, without waiting for requests in flight or the models'
/// `finalize`. SIGINTs that come together, before the future is polled,
/// count once.
pub fn second_interrupt() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let mut interrupt = listen(SignalKind::interrupt());
    async move {
        for _ in 0..2 {
            #[cfg(unix)]
            next(&mut interrupt).await;
            #[cfg(not(unix))]
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(unix)]
use tokio::signal::unix::{Signal, SignalKind};

/// A listener for `kind`, or `None` where it cannot be installed (that
/// signal then never comes).
#[cfg(unix)]
fn listen(kind: SignalKind) -> Option<Signal> {
    tokio::signal::unix::signal(kind).ok()
}

/// The next of a listener's signals; never, without a listener.
#[cfg(unix)]
async fn next(s: &mut Option<Signal>) {
    if let Some(s) = s {
        if s.recv().await.is_some() {
            return;
        }
    }
    std::future::pending::<()>().await
}
