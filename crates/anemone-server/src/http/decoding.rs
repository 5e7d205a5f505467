//! The server-wide bound on HTTP inference bodies being read and decoded,
//! and where the decoding runs.
//!
//! Decoding is where a request costs more memory than its body (the tensors
//! being built next to the text), before the concurrency limit can refuse
//! it. So once its body has arrived (each at most `--max-request-bytes`),
//! an inference request reserves the body's size from one [`DecodeBudget`]
//! (waiting, in arrival order, while others hold it), decodes, and gives the
//! reservation back once its tensors exist: however many big requests arrive
//! at once, at most the budget's worth of bodies is being decoded. The
//! reservation is not taken before the body is read, so a client that
//! trickles its body in cannot hold the budget and starve the others. A
//! compressed body (`Content-Encoding`) reserves the whole
//! `--max-request-bytes` before it is decompressed, since it may grow that
//! far: the budget bounds decompression too. Bodies over [`BLOCKING_ABOVE`] bytes decode on
//! tokio's blocking threads, so the async threads keep answering (health
//! checks included) while they do.

use super::body::Encoding;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Bodies larger than this decode on a blocking thread; smaller ones decode
/// in place, where the hop would cost more than the work.
pub const BLOCKING_ABOVE: usize = 64 << 10;

/// Bytes of request bodies that may be read and decoded at once, counted in
/// KiB (a semaphore's permits).
#[derive(Clone)]
pub struct DecodeBudget {
    permits: Arc<Semaphore>,
    total_kib: u32,
}

impl DecodeBudget {
    /// A budget of `max_bytes` (at least 1 KiB).
    pub fn new(max_bytes: usize) -> DecodeBudget {
        let total_kib = u32::try_from(max_bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .max(1);
        DecodeBudget {
            permits: Arc::new(Semaphore::new(total_kib as usize)),
            total_kib,
        }
    }

    /// Waits until `bytes` of the budget are free and holds them until the
    /// permit is dropped. A request larger than the whole budget takes all
    /// of it, and so is decoded alone.
    pub async fn reserve(&self, bytes: usize) -> OwnedSemaphorePermit {
        let kib = u32::try_from(bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .min(self.total_kib);
        Arc::clone(&self.permits)
            .acquire_many_owned(kib)
            .await
            .expect("the decode budget is never closed; this is a bug")
    }
}

/// The bytes a body of `len` bytes, sent with `encoding`, reserves while
/// it is decoded: its own length, or for a compressed body the whole
/// request limit, `limit`, which it may grow to once decompressed (so that
/// the budget bounds what decompression allocates too).
pub(super) fn reservation(encoding: Encoding, len: usize, limit: usize) -> usize {
    match encoding {
        Encoding::Identity => len,
        Encoding::Gzip | Encoding::Deflate => limit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_compressed_body_reserves_what_it_may_grow_to() {
        assert_eq!(reservation(Encoding::Identity, 1000, 1 << 20), 1000);
        assert_eq!(reservation(Encoding::Gzip, 1000, 1 << 20), 1 << 20);
        assert_eq!(reservation(Encoding::Deflate, 10, 64 << 20), 64 << 20);
    }

    #[tokio::test]
    async fn reservations_wait_for_room_and_large_ones_go_alone() {
        let budget = DecodeBudget::new(10 << 10);
        let a = budget.reserve(6 << 10).await;
        let b = budget.reserve(4 << 10).await;
        let waiting = tokio::spawn({
            let budget = budget.clone();
            async move { budget.reserve(1).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "the budget is full");
        drop(a);
        let _c = waiting.await.unwrap();
        drop(b);
        drop(_c);
        // Larger than the whole budget: takes all of it rather than waiting forever.
        let all = budget.reserve(1 << 30).await;
        assert_eq!(budget.permits.available_permits(), 0);
        drop(all);
        assert_eq!(budget.permits.available_permits(), 10);
    }
}
