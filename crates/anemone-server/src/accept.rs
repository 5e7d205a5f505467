//! What a listener does when it cannot accept a connection: out of file
//! descriptors (EMFILE, ENFILE), or a connection reset before it was
//! accepted. It waits a little rather than try again at once (which would
//! spin a core for as long as the cause lasts), and says so at `warn`,
//! once every [`WARN_EVERY`] per listener, with how many failed meanwhile.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a listener waits after a failed accept.
const BACKOFF: Duration = Duration::from_millis(20);

/// How often a listener's failed accepts are logged.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// The failed accepts of one listener, for its warnings.
pub(crate) struct AcceptFailures {
    protocol: &'static str,
    last_warned: Mutex<Option<Instant>>,
    unsaid: AtomicU64,
}

impl AcceptFailures {
    pub(crate) const fn new(protocol: &'static str) -> AcceptFailures {
        AcceptFailures {
            protocol,
            last_warned: Mutex::new(None),
            unsaid: AtomicU64::new(0),
        }
    }

    /// Records a failed accept, warns when it is time to, and waits.
    pub(crate) async fn back_off(&self, e: &std::io::Error) {
        if self.due() {
            let more = self.unsaid.swap(0, Ordering::Relaxed);
            let advice = advice(e);
            let meanwhile = match more {
                0 => String::new(),
                n => format!(" ({n} more since the last warning)"),
            };
            tracing::warn!(
                "cannot accept a {} connection: {e}{advice}; trying again every {} ms{meanwhile}",
                self.protocol,
                BACKOFF.as_millis()
            );
        } else {
            self.unsaid.fetch_add(1, Ordering::Relaxed);
        }
        tokio::time::sleep(BACKOFF).await;
    }

    fn due(&self) -> bool {
        let mut last = self.last_warned.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        match *last {
            Some(at) if now.duration_since(at) < WARN_EVERY => false,
            _ => {
                *last = Some(now);
                true
            }
        }
    }
}

/// What to do about a failed accept, when the error says.
#[cfg(unix)]
fn advice(e: &std::io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EMFILE) => {
            ": the open-file limit (ulimit -n) is reached; raise it, or lower the clients' connections"
        }
        Some(libc::ENFILE) => ": the system's open-file table is full",
        _ => "",
    }
}

#[cfg(not(unix))]
fn advice(_: &std::io::Error) -> &'static str {
    ""
}

/// The connections the listener `listener` gives (none when it gives
/// none) accepts, with `TCP_NODELAY` set, for tonic: a failed accept is
/// waited out ([`AcceptFailures::back_off`]) rather than handed to tonic,
/// which would ask again at once.
pub(crate) fn connections(
    listener: impl std::future::Future<Output = Option<tokio::net::TcpListener>>,
) -> impl futures_util::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use futures_util::StreamExt;
    futures_util::stream::once(listener)
        .filter_map(std::future::ready)
        .flat_map(accepted)
}

fn accepted(
    listener: tokio::net::TcpListener,
) -> impl futures_util::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    static GRPC: AcceptFailures = AcceptFailures::new("gRPC");
    futures_util::stream::unfold(listener, |listener| async move {
        loop {
            match listener.accept().await {
                Ok((tcp, _)) => {
                    if let Err(e) = tcp.set_nodelay(true) {
                        tracing::debug!("cannot set TCP_NODELAY on a gRPC connection: {e}");
                    }
                    return Some((Ok(tcp), listener));
                }
                Err(e) => GRPC.back_off(&e).await,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_warns_once_then_counts_until_it_is_due_again() {
        let failures = AcceptFailures::new("HTTP");
        assert!(failures.due());
        assert!(!failures.due());
        *failures.last_warned.lock().unwrap() = Some(Instant::now() - WARN_EVERY);
        assert!(failures.due());
    }
}
