//! A connection's future, polled again at once when it wakes itself while
//! being polled, instead of going back to Tokio's scheduler.
//!
//! hyper hands a request body to the handler through a channel that the
//! connection fills only once the handler asks for the body, so every
//! request with a body wakes its own connection task during one poll. Tokio
//! treats a task woken while it runs as a task that yielded: it puts it at
//! the back of the run queue and wakes another worker thread to help, which
//! finds nothing to do and sleeps again. On a small machine that costs a
//! context switch per request (measured: 1.6 per body-carrying request
//! against 1.0 for a GET, `benches/server_path.rs`).
//!
//! [`SelfWaking`] gives the inner future a waker that, while the inner
//! future is being polled, only notes the wake; the wrapper then polls again
//! in the same turn (a few times at most, so a future that keeps waking
//! itself, like one out of Tokio's cooperative budget, still yields). Wakes
//! that come at any other time go to the task's own waker, unchanged.

use futures_util::task::AtomicWaker;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

/// Re-polls at most this many times in one turn before yielding for real.
const MAX_REPOLLS: usize = 4;

/// See the module documentation.
pub struct SelfWaking<F> {
    inner: Pin<Box<F>>,
    flag: Arc<Flag>,
    waker: Waker,
}

/// The waker handed to the inner future.
struct Flag {
    /// Set while the inner future is being polled.
    polling: AtomicBool,
    /// Set when the inner future was woken while being polled.
    woken: AtomicBool,
    /// The task's own waker, for wakes outside a poll.
    task: AtomicWaker,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // SeqCst on both sides: either the poller sees `woken`, or this
        // sees `polling` false and wakes the task (or both: one extra poll).
        self.woken.store(true, Ordering::SeqCst);
        if !self.polling.load(Ordering::SeqCst) {
            self.task.wake();
        }
    }
}

impl<F: Future> SelfWaking<F> {
    /// Wraps `inner`.
    pub fn new(inner: F) -> SelfWaking<F> {
        let flag = Arc::new(Flag {
            polling: AtomicBool::new(false),
            woken: AtomicBool::new(false),
            task: AtomicWaker::new(),
        });
        SelfWaking {
            inner: Box::pin(inner),
            waker: Waker::from(Arc::clone(&flag)),
            flag,
        }
    }
}

impl<F: Future> Future for SelfWaking<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        this.flag.task.register(cx.waker());
        let mut inner_cx = Context::from_waker(&this.waker);
        for _ in 0..=MAX_REPOLLS {
            this.flag.polling.store(true, Ordering::SeqCst);
            this.flag.woken.store(false, Ordering::SeqCst);
            let poll = this.inner.as_mut().poll(&mut inner_cx);
            this.flag.polling.store(false, Ordering::SeqCst);
            if poll.is_ready() {
                return poll;
            }
            if !this.flag.woken.load(Ordering::SeqCst) {
                return Poll::Pending;
            }
        }
        // Still waking itself: let the other tasks run first.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Wakes itself `times` times while polled, then finishes.
    struct WakesItself {
        times: usize,
        polls: Arc<AtomicUsize>,
    }

    impl Future for WakesItself {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.polls.fetch_add(1, Ordering::Relaxed);
            if self.times == 0 {
                return Poll::Ready(());
            }
            self.times -= 1;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    /// Counts the wakes of the task.
    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn self_wakes_are_polled_again_in_the_same_turn() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&count));
        let mut cx = Context::from_waker(&waker);
        let polls = Arc::new(AtomicUsize::new(0));
        let mut f = SelfWaking::new(WakesItself {
            times: 2,
            polls: Arc::clone(&polls),
        });
        assert!(Pin::new(&mut f).poll(&mut cx).is_ready());
        assert_eq!(polls.load(Ordering::Relaxed), 3);
        assert_eq!(count.0.load(Ordering::Relaxed), 0, "the task was not woken");

        // A future that keeps waking itself still yields, waking the task.
        let mut f = SelfWaking::new(WakesItself {
            times: 100,
            polls: Arc::new(AtomicUsize::new(0)),
        });
        assert!(Pin::new(&mut f).poll(&mut cx).is_pending());
        assert_eq!(count.0.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn wakes_after_the_poll_reach_the_task() {
        let (tx, rx) = tokio::sync::oneshot::channel::<u8>();
        let task = tokio::spawn(SelfWaking::new(rx));
        tokio::task::yield_now().await;
        tx.send(7).unwrap();
        assert_eq!(task.await.unwrap().unwrap(), 7);
    }
}
