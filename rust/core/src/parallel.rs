//! The kernel thread pool.
//!
//! Kernels use rayon's `par_*` iterators, and callers at the crate boundary
//! (the bindings) run work inside [`install`], so every parallel loop lands on
//! this pool. Loops short enough that a worker's wake-up matters use
//! [`for_each_index`] instead, which may also be called from outside. The
//! pool can be resized at run time ([`set_num_threads`]), which rayon's
//! global pool cannot, hence our own.
//!
//! **Fork.** `fork()` copies only the calling thread: a child inherits the
//! pool's bookkeeping but none of its workers, so work handed to it would wait
//! forever (rayon and fork, the deadlock huggingface/tokenizers avoids by
//! turning its parallelism off in the child). Here the child keeps its
//! parallelism instead: every pool records the fork generation it was started
//! in, a `pthread_atfork` child handler bumps the generation, and the first
//! call in the child starts a fresh pool of the same size. The parent's pool
//! object is leaked in the child, never dropped: dropping it would signal
//! workers that do not exist there. The same handlers hold the pool lock
//! across `fork()`, so a child never inherits it locked by a thread it lacks.

use std::mem;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use rayon::{ThreadPool, ThreadPoolBuilder};

use crate::{Error, Result};

mod work_sharing;
pub use work_sharing::{for_each_chunk_mut, for_each_index, loop_threads};

/// The kernel pool and the fork generation it was started in (`None` until
/// first use).
static POOL: RwLock<Option<Pool>> = RwLock::new(None);

/// Forks this process descends through: 0 in the process that loaded us, one
/// more in each child (set by the `pthread_atfork` child handler).
static FORK_GENERATION: AtomicU64 = AtomicU64::new(0);

struct Pool {
    threads: Arc<ThreadPool>,
    /// [`FORK_GENERATION`] when `threads` were started; a different current
    /// generation means we are in a forked child and `threads` do not exist.
    generation: u64,
}

impl Pool {
    fn start(n: usize) -> Result<Pool> {
        let generation = FORK_GENERATION.load(Ordering::Acquire);
        let threads = ThreadPoolBuilder::new()
            .num_threads(n)
            .thread_name(|i| format!("transformer-rs-{i}"))
            .build()
            .map_err(|e| Error::value(format!("could not start a pool of {n} threads: {e}")))?;
        Ok(Pool {
            threads: Arc::new(threads),
            generation,
        })
    }

    /// Whether this pool's worker threads exist in this process.
    fn is_alive_here(&self) -> bool {
        self.generation == FORK_GENERATION.load(Ordering::Acquire)
    }

    /// Lets go of a replaced pool: dropped normally in the process that
    /// started it, leaked in a forked child (see the module comment).
    fn retire(self) {
        if !self.is_alive_here() {
            mem::forget(self.threads);
        }
    }
}

/// Returns once every worker of `threads` has run a job. A new thread sets
/// itself up (thread-locals, its registration with crossbeam's epoch
/// collector: a few allocations) whenever the OS first schedules it, which on
/// a loaded machine can be milliseconds later, in the middle of the first
/// calls; after this, that is done. Never call it holding the pool lock: a
/// caller that is a worker of another pool runs that pool's jobs while it
/// waits, and they may need the lock.
fn wait_until_started(threads: &ThreadPool) {
    threads.broadcast(|_| ());
}

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

// The fork handlers are registered before the lock is first taken, so no
// fork can copy it while held. A poisoned lock only means a panic elsewhere
// while holding it; the pool inside is still valid.
fn read() -> RwLockReadGuard<'static, Option<Pool>> {
    fork_handlers::register();
    POOL.read().unwrap_or_else(|e| e.into_inner())
}

fn write() -> RwLockWriteGuard<'static, Option<Pool>> {
    fork_handlers::register();
    POOL.write().unwrap_or_else(|e| e.into_inner())
}

/// The pool to run on, starting it on first use and again in a forked child.
fn current() -> Arc<ThreadPool> {
    if let Some(pool) = read().as_ref().filter(|p| p.is_alive_here()) {
        return Arc::clone(&pool.threads);
    }
    let mut slot = write();
    if let Some(pool) = slot.as_ref().filter(|p| p.is_alive_here()) {
        return Arc::clone(&pool.threads);
    }
    // None yet, or a forked child's stale pool: a child gets as many
    // threads as its parent had.
    let n = slot
        .as_ref()
        .map_or_else(default_num_threads, |p| p.threads.current_num_threads());
    // Falling back to one thread beats failing every call if the OS refuses
    // the threads asked for.
    let fresh = Pool::start(n)
        .or_else(|_| Pool::start(1))
        .expect("cannot start even one worker thread");
    let threads = Arc::clone(&fresh.threads);
    if let Some(old) = slot.replace(fresh) {
        old.retire();
    }
    drop(slot);
    wait_until_started(&threads);
    threads
}

/// Runs `f` on the kernel pool; rayon parallel iterators inside use it.
pub fn install<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    current().install(f)
}

/// Number of threads of the kernel pool (in a forked child: of the pool it
/// will start, the parent's size).
pub fn num_threads() -> usize {
    if let Some(pool) = read().as_ref() {
        return pool.threads.current_num_threads();
    }
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
    let fresh = Pool::start(n)?;
    wait_until_started(&fresh.threads);
    let old = write().replace(fresh);
    // Outside the lock: dropping a pool wakes its workers to exit.
    if let Some(old) = old {
        old.retire();
    }
    Ok(())
}

/// `pthread_atfork` handlers: hold the pool lock across `fork()` and bump
/// [`FORK_GENERATION`] in the child.
#[cfg(unix)]
mod fork_handlers {
    use std::cell::RefCell;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::RwLockWriteGuard;

    use super::{write, Pool, FORK_GENERATION};

    static REGISTERED: AtomicBool = AtomicBool::new(false);

    thread_local! {
        /// The pool lock, held by the forking thread from `prepare` until
        /// `fork()` returns (handlers run on the thread calling `fork()`).
        static HELD: RefCell<Option<RwLockWriteGuard<'static, Option<Pool>>>> =
            const { RefCell::new(None) };
    }

    /// Registers the handlers once per process (children inherit them).
    pub(super) fn register() {
        if REGISTERED.load(Ordering::Acquire) || REGISTERED.swap(true, Ordering::AcqRel) {
            return;
        }
        // SAFETY: the handlers are `extern "C"` functions with static
        // lifetime that never unwind (no panicking operation inside: the
        // lock recovers from poison, `try_with` tolerates thread teardown,
        // the RefCell is never borrowed re-entrantly).
        let rc = unsafe { libc::pthread_atfork(Some(prepare), Some(release), Some(child)) };
        if rc != 0 {
            // Without handlers a fork child would deadlock on its first
            // call; allow a later call to retry registration.
            REGISTERED.store(false, Ordering::Release);
        }
    }

    extern "C" fn prepare() {
        let guard = write();
        let _ = HELD.try_with(|held| *held.borrow_mut() = Some(guard));
    }

    extern "C" fn release() {
        let _ = HELD.try_with(|held| held.borrow_mut().take());
    }

    extern "C" fn child() {
        FORK_GENERATION.fetch_add(1, Ordering::AcqRel);
        super::work_sharing::forget_lingering();
        release();
    }
}

#[cfg(not(unix))]
mod fork_handlers {
    /// No `fork()` outside Unix.
    pub(super) fn register() {}
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

    /// Sums 0..n on the pool (a parallel reduction needs live workers).
    fn parallel_sum(n: u64) -> u64 {
        use rayon::prelude::*;
        install(|| (0..n).into_par_iter().sum())
    }

    #[cfg(unix)]
    #[test]
    fn a_forked_child_gets_a_working_pool_of_the_same_size() {
        use std::time::{Duration, Instant};

        set_num_threads(2).unwrap();
        let want = (0..100_000u64).sum::<u64>();
        // The parent's workers are running when it forks.
        assert_eq!(parallel_sum(100_000), want);
        // SAFETY: fork() has no preconditions. The child runs only this
        // crate's code and leaves through _exit(), never returning into the
        // test harness, whose other threads do not exist there.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let ok = parallel_sum(100_000) == want
                && num_threads() == 2
                && install(rayon::current_num_threads) == 2
                && set_num_threads(1).is_ok()
                && parallel_sum(1000) == (0..1000u64).sum::<u64>();
            // SAFETY: _exit ends the child without running the parent's
            // atexit handlers or destructors.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) }
        }
        // A deadlocked child fails the test instead of hanging it.
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut status = 0;
        loop {
            // SAFETY: `pid` is our child; `status` is a valid out-pointer.
            let done = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            if done == pid {
                break;
            }
            if Instant::now() > deadline {
                // SAFETY: killing and reaping our own child.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                    libc::waitpid(pid, &mut status, 0);
                }
                panic!("the forked child did not finish within 60 s (deadlock)");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "forked child failed: status {status}"
        );
        // The parent's pool is untouched.
        assert_eq!(parallel_sum(100_000), want);
    }
}
