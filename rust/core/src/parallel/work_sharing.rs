//! Parallel loops the calling thread takes part in.
//!
//! `ThreadPool::install` from a thread outside the pool (a Python thread
//! calling `tr.ops.matmul`) hands the whole job to a worker and parks the
//! caller: a sleeping worker must wake before any work starts, 15–180 µs on
//! a 2-core VM, as long as a whole small product. Here the caller starts on
//! the work at once, and the workers woken at the same moment claim what is
//! left when they arrive. A worker that arrives after the last index was
//! claimed does nothing and nobody waits for it. A helper stays awake for
//! [`LINGER`] (100 µs) after its share, watching for the next call, so a
//! loop of small products keeps it busy instead of waking it each time; no
//! thread spins longer than that once calls stop.
//!
//! A worker of the kernel pool (a model's layer, run inside
//! [`super::install`]) calls the same way: between the layer's GEMMs the
//! other worker lingers instead of falling asleep, so each GEMM does not
//! wait for a wake-up (2 threads: Transformer-base encoder at B=1, S=32
//! 9.4 → 7.7 ms, a one-sentence all-MiniLM-L6-v2 embedding +14%, beam 4 at
//! B=8 +15%, over rayon's own splitting). Inside another rayon pool the
//! loop is plain rayon.

use std::any::Any;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rayon::prelude::*;

/// Runs `body(i)` once for every `i` in `0..n`, in parallel on the kernel
/// pool ([`super::install`]'s) when it has more than one thread. The calling
/// thread (outside any pool, or a worker of the kernel pool) works through
/// the indices too and returns as soon as every index is done. A panic in `body` is
/// re-raised on the calling thread after all running indices finish.
pub fn for_each_index<F: Fn(usize) + Sync>(n: usize, body: F) {
    if n <= 1 || n > u32::MAX as usize {
        // (Beyond u32 indices `Shared` cannot count claims; no caller has
        // that many work items.)
        (0..n).for_each(body);
        return;
    }
    let pool = super::current();
    if rayon::current_thread_index().is_some() && pool.current_thread_index().is_none() {
        // A worker of another pool: rayon's own splitting, each index stealable.
        (0..n).into_par_iter().with_max_len(1).for_each(&body);
        return;
    }
    let helpers = pool.current_num_threads().min(n) - 1;
    if helpers == 0 {
        (0..n).for_each(body);
        return;
    }
    let shared = Arc::new(Shared {
        claimed: AtomicU64::new(0),
        gate: AtomicUsize::new(0),
        panic: Mutex::new(None),
        n,
    });
    let job = ErasedBody::new(&body);
    // Workers still lingering after the previous call join through the
    // offer at once; jobs wake sleeping ones for the rest (a job that finds
    // the work done just lingers in turn). Waking a worker while another
    // lingers would put one thread more than there are cores to work: the
    // OS then parks one of them for a time slice (4 ms), maybe one the
    // caller waits for.
    offer(&shared, job);
    let lingering = LINGERING.load(Ordering::Acquire);
    // A worker of the pool calling (a model's layer) may later run its own
    // job while it waits in a join: that one neither helps nor lingers.
    let caller = pool.current_thread_index();
    for _ in lingering.min(helpers)..helpers {
        let shared = Arc::clone(&shared);
        pool.spawn(move || {
            if caller.is_some() && rayon::current_thread_index() == caller {
                return;
            }
            shared.help(job);
            drop(shared);
            linger();
        });
    }
    {
        // Closes the gate and waits for helpers inside, also if `body`
        // panics here: they may be using `body` and the caller's data.
        let _close = CloseOnDrop(&shared);
        shared.work(&body, false);
    }
    let panic = shared
        .panic
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    if let Some(payload) = panic {
        resume_unwind(payload);
    }
}

/// Runs `body(i, chunk)` for the consecutive `chunk_len`-long chunks of
/// `data` (the last may be shorter), as [`for_each_index`] does.
pub fn for_each_chunk_mut<T: Send, F: Fn(usize, &mut [T]) + Sync>(
    data: &mut [T],
    chunk_len: usize,
    body: F,
) {
    assert!(
        chunk_len > 0,
        "for_each_chunk_mut: chunk_len must be positive"
    );
    let len = data.len();
    let base = SendPtr(data.as_mut_ptr());
    for_each_index(len.div_ceil(chunk_len), |i| {
        let start = i * chunk_len;
        let end = (start + chunk_len).min(len);
        let base = &base;
        // SAFETY: `start..end` lies inside `data`, which we borrow mutably
        // for the whole call, and each index runs once, so the chunks handed
        // out are disjoint.
        let chunk = unsafe { std::slice::from_raw_parts_mut(base.0.add(start), end - start) };
        body(i, chunk)
    });
}

/// Threads a [`for_each_index`] called on this thread can use.
pub fn loop_threads() -> usize {
    if rayon::current_thread_index().is_some() {
        rayon::current_num_threads()
    } else {
        super::num_threads()
    }
}

/// A pointer into a slice whose disjoint parts go to different threads.
struct SendPtr<T>(*mut T);
// SAFETY: only used by `for_each_chunk_mut`, which hands each thread a
// disjoint part of a slice of `T: Send`.
unsafe impl<T: Send> Sync for SendPtr<T> {}

/// How long a helper stays awake after its share of a call, watching for
/// the next call: back-to-back products (a loop over matmuls) then find it
/// awake instead of paying a wake-up each (tens of microseconds on a VM,
/// as long as a small product). Short enough that no thread is left
/// spinning once a caller stops: CPU used after the last call is this,
/// once.
const LINGER: std::time::Duration = std::time::Duration::from_micros(100);

/// The latest call from outside the pool, for lingering helpers; its
/// sequence number (0: none yet) is [`OFFER_SEQ`].
static OFFER: Mutex<Option<(Arc<Shared>, ErasedBody)>> = Mutex::new(None);
static OFFER_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Offers a call's share to lingering helpers. `try_lock`: never wait here
/// (in a forked child the lock may be held by a thread that no longer
/// exists; the call then runs without lingering helpers).
fn offer(shared: &Arc<Shared>, job: ErasedBody) {
    if let Ok(mut slot) = OFFER.try_lock() {
        *slot = Some((Arc::clone(shared), job));
        drop(slot);
        // Announced once the slot is unlocked: a lingering worker reacts
        // within nanoseconds and would find it still locked.
        OFFER_SEQ.fetch_add(1, Ordering::Release);
    }
}

/// Workers in [`linger`] now.
static LINGERING: AtomicUsize = AtomicUsize::new(0);

/// Stays awake for [`LINGER`] after a share (and after each further share
/// it joins), helping with any call offered meanwhile.
fn linger() {
    struct Counted;
    impl Drop for Counted {
        fn drop(&mut self) {
            LINGERING.fetch_sub(1, Ordering::AcqRel);
        }
    }
    LINGERING.fetch_add(1, Ordering::AcqRel);
    let _counted = Counted;
    linger_loop();
}

/// In a forked child: the parent's lingering workers do not exist here.
/// (Async-signal-safe: one atomic store.)
pub(super) fn forget_lingering() {
    LINGERING.store(0, Ordering::Release);
}

fn linger_loop() {
    let mut seen = OFFER_SEQ.load(Ordering::Acquire);
    let mut since = std::time::Instant::now();
    loop {
        let now = OFFER_SEQ.load(Ordering::Acquire);
        if now != seen {
            // Busy slot (a newer offer being written): look again.
            let Ok(slot) = OFFER.try_lock() else {
                std::hint::spin_loop();
                continue;
            };
            seen = now;
            let offered = slot.clone();
            drop(slot);
            if let Some((shared, job)) = offered {
                // A share whose caller has finished has its gate closed:
                // `help` then returns without touching `job`.
                shared.help(job);
            }
            since = std::time::Instant::now();
            continue;
        }
        if since.elapsed() >= LINGER {
            break;
        }
        std::hint::spin_loop();
    }
}

/// What the caller and its helpers share; outlives the call (helpers that
/// start late still hold it).
struct Shared {
    /// Indices claimed from the front (low 32 bits: the caller takes 0, 1,
    /// ...) and from the back (high 32 bits: helpers take n-1, n-2, ...);
    /// all are claimed once the two counts add up to n. With the same
    /// threads present, each call gives the caller the same first indices
    /// and the helper the same last ones, so a product repeated over the
    /// same operand (a weight) finds each thread's share still in its own
    /// core's cache.
    claimed: AtomicU64,
    /// [`CLOSED`] once the caller stops waiting for newcomers, plus the
    /// number of helpers currently allowed to run `body`.
    gate: AtomicUsize,
    /// The first panic of a helper, re-raised by the caller.
    panic: Mutex<Option<Box<dyn Any + Send>>>,
    n: usize,
}

const CLOSED: usize = 1 << (usize::BITS - 1);

impl Shared {
    /// Claims and runs indices until none are left: the caller from the
    /// front, helpers from the back.
    fn work(&self, body: &dyn Fn(usize), from_back: bool) {
        let n = self.n as u64;
        let step = if from_back { 1 << 32 } else { 1 };
        while let Ok(seen) = self
            .claimed
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                ((c & 0xffff_ffff) + (c >> 32) < n).then_some(c + step)
            })
        {
            let i = if from_back {
                n - 1 - (seen >> 32)
            } else {
                seen & 0xffff_ffff
            };
            body(i as usize);
        }
    }

    /// Marks every index claimed (after a panic: nobody starts another).
    fn claim_all(&self) {
        self.claimed.store(self.n as u64, Ordering::Relaxed);
    }

    /// A helper's job: enter unless the caller has already closed the gate
    /// (then `job` may point at a finished stack frame: do not touch it).
    fn help(&self, job: ErasedBody) {
        let mut gate = self.gate.load(Ordering::Acquire);
        loop {
            if gate & CLOSED != 0 {
                return;
            }
            match self.gate.compare_exchange_weak(
                gate,
                gate + 1,
                Ordering::Acquire,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(now) => gate = now,
            }
        }
        // SAFETY: the gate was open when we entered, so the caller is (or
        // will be) blocked in `CloseOnDrop::drop` until we leave it below:
        // the body and everything it borrows are alive until then.
        let run = catch_unwind(AssertUnwindSafe(|| {
            self.work(&|i| unsafe { job.call(i) }, true)
        }));
        if let Err(payload) = run {
            self.claim_all();
            let mut slot = self.panic.lock().unwrap_or_else(|e| e.into_inner());
            slot.get_or_insert(payload);
        }
        // Release: our writes happen-before the caller's return.
        self.gate.fetch_sub(1, Ordering::Release);
    }
}

/// Closes the gate and waits until no helper is inside.
struct CloseOnDrop<'a>(&'a Shared);

impl Drop for CloseOnDrop<'_> {
    fn drop(&mut self) {
        let shared = self.0;
        if std::thread::panicking() {
            shared.claim_all();
        }
        shared.gate.fetch_or(CLOSED, Ordering::AcqRel);
        // Helpers inside are finishing one index each: a short wait.
        let mut spins = 0u32;
        while shared.gate.load(Ordering::Acquire) != CLOSED {
            if spins < 1 << 10 {
                std::hint::spin_loop();
                spins += 1;
            } else {
                std::thread::yield_now();
            }
        }
    }
}

/// `&F` with its type (and lifetime) erased, so a `'static` pool job can
/// carry it; only [`Shared::help`] calls it, inside the open gate.
#[derive(Clone, Copy)]
struct ErasedBody {
    data: *const (),
    call: unsafe fn(*const (), usize),
}

// SAFETY: it stands for an `&F` with `F: Sync`, which may be sent and shared.
unsafe impl Send for ErasedBody {}

impl ErasedBody {
    fn new<F: Fn(usize) + Sync>(body: &F) -> Self {
        /// # Safety
        /// `data` must point at a live `F`.
        unsafe fn call<F: Fn(usize)>(data: *const (), i: usize) {
            // SAFETY: the caller guarantees `data` is a live `F`.
            unsafe { (*data.cast::<F>())(i) }
        }
        ErasedBody {
            data: (body as *const F).cast(),
            call: call::<F>,
        }
    }

    /// # Safety
    /// The `F` this was made from must still be alive.
    unsafe fn call(&self, i: usize) {
        // SAFETY: forwarded to our caller.
        unsafe { (self.call)(self.data, i) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    fn count_each(n: usize) -> Vec<u32> {
        let hits: Vec<AtomicU32> = (0..n).map(|_| AtomicU32::new(0)).collect();
        for_each_index(n, |i| {
            hits[i].fetch_add(1, Ordering::Relaxed);
        });
        hits.into_iter().map(AtomicU32::into_inner).collect()
    }

    #[test]
    fn every_index_runs_exactly_once_from_outside_and_inside_the_pool() {
        super::super::set_num_threads(2).unwrap();
        for n in [0, 1, 2, 3, 7, 64, 1000] {
            assert!(count_each(n).iter().all(|&c| c == 1), "outside, n = {n}");
            let inside = super::super::install(|| count_each(n));
            assert!(inside.iter().all(|&c| c == 1), "inside, n = {n}");
        }
    }

    #[test]
    fn repeated_calls_never_touch_a_finished_call() {
        // Late helpers of call r must not run indices of call r + 1.
        super::super::set_num_threads(2).unwrap();
        for round in 0..2000usize {
            let n = 1 + round % 5;
            assert!(count_each(n).iter().all(|&c| c == 1), "round {round}");
        }
    }

    #[test]
    fn chunks_cover_the_slice_once() {
        super::super::set_num_threads(2).unwrap();
        for (len, chunk) in [(0, 3), (1, 3), (10, 3), (12, 3), (1000, 7)] {
            let mut data = vec![0usize; len];
            for_each_chunk_mut(&mut data, chunk, |i, part| {
                assert!(part.len() <= chunk);
                part.iter_mut()
                    .enumerate()
                    .for_each(|(j, x)| *x += i * chunk + j + 1);
            });
            assert!(
                data.iter().enumerate().all(|(j, &x)| x == j + 1),
                "{len}/{chunk}"
            );
        }
    }

    #[test]
    fn a_panic_in_the_body_reaches_the_caller_after_the_loop() {
        super::super::set_num_threads(2).unwrap();
        let done = AtomicU32::new(0);
        let result = catch_unwind(AssertUnwindSafe(|| {
            for_each_index(64, |i| {
                if i == 40 {
                    panic!("index 40");
                }
                done.fetch_add(1, Ordering::Relaxed);
            })
        }));
        let payload = result.expect_err("the panic must propagate");
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"index 40"));
        // The pool still works afterwards.
        assert!(count_each(16).iter().all(|&c| c == 1));
    }
}
