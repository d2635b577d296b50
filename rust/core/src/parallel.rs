//! The kernel thread pool.
//!
//! Kernels use rayon's `par_*` iterators, and callers at the crate boundary
//! (the bindings) run work inside [`install`], so every parallel loop lands on
//! this pool. Loops short enough that a worker's wake-up matters use
//! [`for_each_index`] instead, which may also be called from outside. The pool can be resized at run time ([`set_num_threads`]), which
//! rayon's global pool cannot, hence our own.

use std::sync::{Arc, OnceLock, RwLock};

use rayon::{ThreadPool, ThreadPoolBuilder};

use crate::{Error, Result};

mod work_sharing;
pub use work_sharing::{for_each_chunk_mut, for_each_index, loop_threads};

static POOL: OnceLock<RwLock<Arc<ThreadPool>>> = OnceLock::new();

/// Default thread count: `RAYON_NUM_THREADS`, then `OMP_NUM_THREADS` (first
/// positive integer wins), then the number of cores this process may use.
pub fn default_num_threads() -> usize {
    for var in ["RAYON_NUM_THREADS", "OMP_NUM_THREADS"] {
        if let Some(n) = std::env::var(var)
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
        {
            if n > 0 {
                return n;
            }
        }
    }
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

fn build(n: usize) -> Result<Arc<ThreadPool>> {
    ThreadPoolBuilder::new()
        .num_threads(n)
        .thread_name(|i| format!("transformer-rs-{i}"))
        .build()
        .map(Arc::new)
        .map_err(|e| Error::value(format!("could not start a pool of {n} threads: {e}")))
}

fn cell() -> &'static RwLock<Arc<ThreadPool>> {
    POOL.get_or_init(|| {
        let n = default_num_threads();
        // Falling back to one thread beats failing every call if the OS
        // refuses the threads the environment asked for.
        let pool = build(n)
            .or_else(|_| build(1))
            .expect("cannot start even one worker thread");
        RwLock::new(pool)
    })
}

fn current() -> Arc<ThreadPool> {
    // A poisoned lock only means a panic elsewhere while holding it; the Arc
    // inside is still a valid pool.
    cell().read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Runs `f` on the kernel pool; rayon parallel iterators inside use it.
pub fn install<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    current().install(f)
}

/// Number of threads of the kernel pool.
pub fn num_threads() -> usize {
    current().current_num_threads()
}

/// Replaces the kernel pool with one of `n` threads. Calls already running
/// finish on the old pool.
pub fn set_num_threads(n: usize) -> Result<()> {
    if n == 0 {
        return Err(Error::value(
            "n: expected a positive number of threads, got 0",
        ));
    }
    let pool = build(n)?;
    *cell().write().unwrap_or_else(|e| e.into_inner()) = pool;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_and_run() {
        set_num_threads(2).unwrap();
        assert_eq!(num_threads(), 2);
        assert_eq!(install(rayon::current_num_threads), 2);
        assert!(set_num_threads(0).is_err());
        assert_eq!(num_threads(), 2);
    }
}
