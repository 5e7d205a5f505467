//! Keeps the standard gRPC health service in step with readiness: a
//! tracker task publishes readiness every 200 ms, and at once when a load
//! or an unload through the repository API asks, which waits until it has
//! (so a client that loads a model and then asks the health service reads
//! the readiness the load made).

use std::time::Duration;
use tokio::sync::watch;

/// Requests to publish (a count), and the last count published.
pub struct HealthSync {
    asked: watch::Sender<u64>,
    done: watch::Sender<u64>,
}

impl Default for HealthSync {
    fn default() -> HealthSync {
        HealthSync {
            asked: watch::channel(0).0,
            done: watch::channel(0).0,
        }
    }
}

/// How long a load's answer waits for the tracker; it publishes in
/// microseconds, so this bounds only a stalled runtime.
const WAIT: Duration = Duration::from_millis(500);

impl HealthSync {
    /// Asks the tracker to publish readiness now and waits until it has.
    /// At once when no tracker runs (a server without gRPC, a test).
    pub async fn publish(&self) {
        if self.asked.receiver_count() == 0 {
            return;
        }
        let mut asked = 0;
        self.asked.send_modify(|n| {
            *n += 1;
            asked = *n;
        });
        let mut done = self.done.subscribe();
        let _ = tokio::time::timeout(WAIT, done.wait_for(|n| *n >= asked)).await;
    }

    /// The tracker's loop: `publish_now` sets the health service's status
    /// from readiness; it runs every 200 ms and whenever asked.
    pub async fn track<F, Fut>(&self, mut publish_now: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let mut asked = self.asked.subscribe();
        loop {
            let target = *asked.borrow_and_update();
            publish_now().await;
            self.done.send_replace(target);
            tokio::select! {
                _ = asked.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn publish_returns_once_the_tracker_has_published() {
        let sync = Arc::new(HealthSync::default());
        // No tracker: at once.
        sync.publish().await;
        let runs = Arc::new(AtomicU64::new(0));
        let tracker = {
            let (sync, runs) = (Arc::clone(&sync), Arc::clone(&runs));
            tokio::spawn(async move {
                sync.track(|| {
                    let runs = Arc::clone(&runs);
                    async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                    }
                })
                .await
            })
        };
        tokio::task::yield_now().await;
        let before = runs.load(Ordering::SeqCst);
        sync.publish().await;
        assert!(
            runs.load(Ordering::SeqCst) > before,
            "published before publish() returned"
        );
        tracker.abort();
    }
}
