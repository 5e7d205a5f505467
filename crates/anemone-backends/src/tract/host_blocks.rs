//! The bookkeeping of a pool of host memory blocks that are lent out and
//! taken back but never freed: which block a request of some size gets,
//! and how much the blocks may hold together.
//!
//! tract-cuda's page-locked blocks for request inputs (`cuda_host`) use it.
//! It knows nothing of CUDA, so every rule here (size classes, reuse, the
//! budget, what happens when memory is refused) is tested on any machine;
//! `cuda_host` only allocates the memory and tracks its addresses.
//!
//! - **Size classes** are quarter steps between powers of two (1, 1.25,
//!   1.5, 1.75 times a power of two): a block wastes at most a fifth of
//!   itself. A 3x224x224 float32 image (602,112 bytes) takes a 640 KiB
//!   block, not a 1 MiB one.
//! - **Reuse first:** a free block of the request's class is lent again.
//! - **Then a new block**, if the blocks stay within the budget together.
//! - **Then any free block large enough** (the smallest): at the budget, or
//!   when the allocator refuses, a request still gets a block while a
//!   larger one lies unused.
//! - **Otherwise none:** the caller keeps the request's memory as it is.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

/// What the pool needs to know of a block.
pub trait HostBlock {
    /// The block's size in bytes: the size class it was allocated for.
    fn size(&self) -> usize;
}

/// Free blocks and the bytes all blocks hold, lent or free.
pub struct BlockPool<B> {
    free: Mutex<Vec<B>>,
    held: AtomicUsize,
    budget: usize,
}

/// The size class of a request of `len` bytes: the smallest of 2^k × (1,
/// 1.25, 1.5, 1.75) that is at least `len`.
pub fn size_class(len: usize) -> usize {
    let Some(power) = len.checked_next_power_of_two() else {
        return len;
    };
    if power == len || power < 8 {
        return power;
    }
    // A quarter of the power of two below `len`.
    let step = power / 8;
    len.div_ceil(step) * step
}

impl<B: HostBlock> BlockPool<B> {
    /// An empty pool whose blocks may hold `budget` bytes together.
    pub const fn new(budget: usize) -> Self {
        BlockPool {
            free: Mutex::new(Vec::new()),
            held: AtomicUsize::new(0),
            budget,
        }
    }

    /// A block of at least `len` bytes: a free one of `len`'s size class,
    /// else a new one from `allocate` (called with the class's size, only
    /// within the budget; `None` when it refuses), else the smallest free
    /// block that is large enough; `None` when there is none.
    pub fn take(&self, len: usize, allocate: impl FnOnce(usize) -> Option<B>) -> Option<B> {
        let class = size_class(len);
        {
            let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(at) = free.iter().rposition(|b| b.size() == class) {
                return Some(free.swap_remove(at));
            }
        }
        if self.reserve(class) {
            match allocate(class) {
                Some(block) => return Some(block),
                None => {
                    self.held.fetch_sub(class, Ordering::Relaxed);
                }
            }
        }
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        let at = (0..free.len())
            .filter(|&i| free[i].size() >= len)
            .min_by_key(|&i| free[i].size())?;
        Some(free.swap_remove(at))
    }

    /// Takes `block` back, to lend it again.
    pub fn give(&self, block: B) {
        self.free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(block);
    }

    /// Bytes all the pool's blocks hold, lent or free.
    pub fn held_bytes(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// Counts `size` more bytes held, if that stays within the budget.
    fn reserve(&self, size: usize) -> bool {
        self.held
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
                held.checked_add(size).filter(|&total| total <= self.budget)
            })
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::atomic::AtomicU64;
    use std::sync::Arc;

    #[derive(Debug, PartialEq)]
    struct Fake {
        id: u64,
        size: usize,
    }

    impl HostBlock for Fake {
        fn size(&self) -> usize {
            self.size
        }
    }

    /// An allocator that numbers its blocks and counts its calls.
    #[derive(Default)]
    struct Counter(AtomicU64);

    impl Counter {
        fn allocate(&self, size: usize) -> Option<Fake> {
            let id = self.0.fetch_add(1, Ordering::Relaxed);
            Some(Fake { id, size })
        }
        fn calls(&self) -> u64 {
            self.0.load(Ordering::Relaxed)
        }
    }

    #[test]
    fn size_classes_are_quarter_steps_between_powers_of_two() {
        // A ResNet image: 640 KiB, not 1 MiB.
        assert_eq!(size_class(3 * 224 * 224 * 4), 640 << 10);
        for (len, class) in [
            (1 << 20, 1 << 20),
            ((1 << 20) + 1, 1_310_720),
            (1_310_720, 1_310_720),
            (1_310_721, 1_572_864),
            (1_835_009, 2 << 20),
            (3, 4),
            (0, 1),
        ] {
            assert_eq!(size_class(len), class, "len {len}");
        }
        let mut last = 0;
        for len in (1..5_000_000).step_by(997) {
            let class = size_class(len);
            assert!(class >= len && class >= last, "len {len}: class {class}");
            // At most a fifth of a block goes unused, above the smallest sizes.
            if len >= 64 {
                assert!((class - len) * 5 <= class, "len {len}: class {class}");
            }
            last = class;
        }
    }

    #[test]
    fn a_block_given_back_is_lent_again_to_its_size_class() {
        let pool = BlockPool::new(16 << 20);
        let alloc = Counter::default();
        let a = pool.take(602_112, |s| alloc.allocate(s)).unwrap();
        assert_eq!(a.size, 640 << 10);
        assert_eq!(pool.held_bytes(), 640 << 10);
        pool.give(a);
        // The same class takes the same block, with no new allocation.
        let b = pool.take(600_000, |s| alloc.allocate(s)).unwrap();
        assert_eq!((b.id, alloc.calls()), (0, 1));
        // Another class gets its own block while budget remains.
        let c = pool.take(2 << 20, |s| alloc.allocate(s)).unwrap();
        assert_eq!((c.id, c.size), (1, 2 << 20));
        assert_eq!(pool.held_bytes(), (640 << 10) + (2 << 20));
    }

    #[test]
    fn at_the_budget_a_larger_free_block_serves_and_otherwise_none() {
        let pool = BlockPool::new(3 << 20);
        let alloc = Counter::default();
        let big = pool.take(2 << 20, |s| alloc.allocate(s)).unwrap();
        let small = pool.take(1 << 20, |s| alloc.allocate(s)).unwrap();
        assert_eq!(pool.held_bytes(), 3 << 20);
        // The budget is spent and nothing is free: no block, no allocation.
        assert!(pool.take(1 << 20, |s| alloc.allocate(s)).is_none());
        assert_eq!(alloc.calls(), 2);
        pool.give(big);
        pool.give(small);
        // A request of a class with no free block and no budget left takes
        // the smallest free block large enough.
        let taken = pool.take(700_000, |s| alloc.allocate(s)).unwrap();
        assert_eq!(taken.size, 1 << 20);
        let taken2 = pool.take(700_000, |s| alloc.allocate(s)).unwrap();
        assert_eq!(taken2.size, 2 << 20);
        assert!(pool.take(700_000, |s| alloc.allocate(s)).is_none());
        assert_eq!((alloc.calls(), pool.held_bytes()), (2, 3 << 20));
    }

    #[test]
    fn a_refused_allocation_gives_its_budget_back() {
        let pool: BlockPool<Fake> = BlockPool::new(4 << 20);
        let mut asked = Vec::new();
        assert!(pool
            .take(1 << 20, |s| {
                asked.push(s);
                None
            })
            .is_none());
        assert_eq!(asked, [1 << 20]);
        assert_eq!(pool.held_bytes(), 0);
        // Memory refused once is asked for again next time.
        let alloc = Counter::default();
        assert!(pool.take(1 << 20, |s| alloc.allocate(s)).is_some());
        assert_eq!(pool.held_bytes(), 1 << 20);
    }

    #[test]
    fn a_request_larger_than_the_budget_gets_nothing() {
        let pool = BlockPool::new(1 << 20);
        let alloc = Counter::default();
        assert!(pool.take(2 << 20, |s| alloc.allocate(s)).is_none());
        assert_eq!((alloc.calls(), pool.held_bytes()), (0, 0));
    }

    /// Many threads taking and giving back: the blocks stay within the
    /// budget, and no block is lent to two at once.
    #[test]
    fn threads_never_share_a_block_nor_pass_the_budget() {
        let budget = 8 << 20;
        let pool = Arc::new(BlockPool::new(budget));
        let alloc = Arc::new(Counter::default());
        let lent = Arc::new(Mutex::new(HashSet::new()));
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let (pool, alloc, lent) = (pool.clone(), alloc.clone(), lent.clone());
                std::thread::spawn(move || {
                    let mut got = 0;
                    for i in 0..2_000 {
                        let len = [300_000, 602_112, 1 << 20, 1_500_000][(i + t) % 4];
                        let Some(block) = pool.take(len, |s| alloc.allocate(s)) else {
                            continue;
                        };
                        assert!(block.size >= len);
                        assert!(
                            lent.lock().unwrap().insert(block.id),
                            "block {} lent twice",
                            block.id
                        );
                        assert!(pool.held_bytes() <= budget);
                        std::thread::yield_now();
                        lent.lock().unwrap().remove(&block.id);
                        pool.give(block);
                        got += 1;
                    }
                    got
                })
            })
            .collect();
        let got: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert!(got > 0);
        assert!(pool.held_bytes() <= budget);
        let blocks = pool.free.lock().unwrap();
        assert_eq!(blocks.len() as u64, alloc.calls(), "every block came back");
        assert_eq!(
            blocks.iter().map(|b| b.size).sum::<usize>(),
            pool.held_bytes()
        );
    }
}
