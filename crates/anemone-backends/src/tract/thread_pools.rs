//! The thread pools tract's matrix products run on, shared between models.
//!
//! tract-linalg runs a plan's matrix products on the rayon pool its
//! `RunOptions` name. A pool per loaded model made threads grow with the
//! models (300 models on 2 cores: about 600 threads, each with its stack),
//! although the cores do not. Every model that asks for the same number of
//! threads now gets the same pool; rayon takes work from several callers at
//! once, and a pool is dropped when the last model holding it is unloaded.

use rayon::{ThreadPool, ThreadPoolBuilder};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use tract_linalg::multithread::Executor;

/// The pools alive now, by thread count. Weak, so that unloading the last
/// model of a count ends its threads.
static POOLS: Mutex<Option<HashMap<usize, Weak<ThreadPool>>>> = Mutex::new(None);

/// The executor for a model that asked for `threads` threads: none (the
/// calling thread) for one, else the process's pool of that size, started
/// if there is none. Fails, rather than panicking as tract-linalg's own
/// constructor does, when the system refuses the threads.
pub(crate) fn executor_for(threads: usize) -> Result<Option<Executor>, String> {
    if threads <= 1 {
        return Ok(None);
    }
    let mut pools = POOLS.lock().unwrap_or_else(|e| e.into_inner());
    let pools = pools.get_or_insert_with(HashMap::new);
    if let Some(pool) = pools.get(&threads).and_then(Weak::upgrade) {
        return Ok(Some(Executor::MultiThread(pool)));
    }
    let pool = ThreadPoolBuilder::new()
        .thread_name(move |i| format!("tract-{threads}-{i}"))
        .num_threads(threads)
        .build()
        .map(Arc::new)
        .map_err(|e| {
            format!(
                "cannot start {threads} threads for tract's matrix products: {e} \
                 (the host's thread limit, `ulimit -u`; or set the model's \
                 `threads` parameter or `--threads` lower)"
            )
        })?;
    pools.retain(|_, pool| pool.strong_count() > 0);
    pools.insert(threads, Arc::downgrade(&pool));
    Ok(Some(Executor::MultiThread(pool)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool_of(executor: &Option<Executor>) -> Arc<ThreadPool> {
        match executor {
            Some(Executor::MultiThread(pool)) => pool.clone(),
            other => panic!("expected a pool, got {other:?}"),
        }
    }

    #[test]
    fn models_asking_for_the_same_threads_share_one_pool_until_the_last_goes() {
        // 7 threads: a count no other test of this binary asks for.
        let first = executor_for(7).unwrap();
        let second = executor_for(7).unwrap();
        assert!(Arc::ptr_eq(&pool_of(&first), &pool_of(&second)));
        assert_eq!(pool_of(&first).current_num_threads(), 7);
        let other = executor_for(5).unwrap();
        assert!(!Arc::ptr_eq(&pool_of(&first), &pool_of(&other)));

        let weak = Arc::downgrade(&pool_of(&first));
        drop((first, second));
        assert!(weak.upgrade().is_none(), "the pool outlived its models");
        let again = executor_for(7).unwrap();
        assert_eq!(pool_of(&again).current_num_threads(), 7);
    }

    #[test]
    fn one_thread_runs_on_the_caller() {
        assert!(executor_for(1).unwrap().is_none());
        assert!(executor_for(0).unwrap().is_none());
    }
}
