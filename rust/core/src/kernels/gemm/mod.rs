//! Single-precision matrix multiply, C = beta·C + A·B, BLIS style.
//!
//! ```text
//! mod.rs         public entry points: check shapes, pick the B source, dispatch on the ISA
//! mat_ref.rs     MatRef, the strided operand view
//! packed_b.rs    PackedB, B packed once (Linear weights)
//! pack.rs        packing A row panels and B strips
//! driver.rs      the five cache-blocking loops (NC, KC, MC, NR, MR), threading, the GEMV
//! microkernel/   per ISA (scalar, avx2, avx512, neon): register-tile kernel + GEMV row sweep
//! buffer.rs      64-byte aligned storage; per-thread scratch for packed operands
//! ```
//!
//! Small products skip what they do not need: a row-major B with few rows
//! of A (M ≤ 64) is read in place instead of packed; M = 1 on a row-major B
//! is a GEMV sweeping B's rows (`driver::gemv`); with M ≤ MR the driver uses
//! one thin, wide tile over the whole K, which makes `gemm_packed` for decoder
//! steps a GEMV-like stream over the packed panels. Products below
//! [`runs_on_calling_thread`]'s threshold never touch the thread pool.
#![deny(unsafe_op_in_unsafe_fn)]

mod buffer;
mod driver;
mod mat_ref;
mod microkernel;
mod pack;
mod packed_b;
#[cfg(test)]
mod tests;

pub use mat_ref::MatRef;
pub use packed_b::PackedB;

use super::dispatch::{self, Isa};
use buffer::{with_scratch, Scratch};
use driver::BSource;

/// Up to this many rows of A, a row-major B is read in place: packing it
/// would cost as much memory traffic as the product itself.
const DIRECT_B_MAX_M: usize = 64;

/// Products smaller than this many multiply-adds, called from a thread
/// outside any rayon pool (a Python thread), stay on that thread: handing
/// work to the pool from outside costs a wake-up round trip, 100–200 µs
/// measured from Python on a 2-core VM, and 2 threads lost to 1 up to
/// M = 32, K = 512, N = 512 (2²³ FMAs, ~270 µs on one core).
const PAR_MIN_FMAS: usize = 1 << 24;

/// The same threshold inside a pool worker (the model's layers, or a large
/// op already handed to the pool): splitting there is a cheap `join`, and a
/// decoder step's products (e.g. 1×512×32000 for the generator) need both
/// threads.
const PAR_MIN_FMAS_IN_POOL: usize = 1 << 19;

/// Whether [`gemm`] / [`gemm_packed`] of A [M×K] · B [K×N], called from the
/// current thread, does all its work on it with no rayon calls: callers may
/// then skip handing such products to the thread pool (a cross-thread round
/// trip costs more than a small product). On a thread outside any rayon
/// pool that is every product below [`PAR_MIN_FMAS`], and every product
/// while the kernel pool ([`crate::parallel`]) has one thread (~90 µs round
/// trip for nothing: it halved M = 1, K = 512, N = 1040 called from Python).
pub fn runs_on_calling_thread(m: usize, k: usize, n: usize) -> bool {
    let fmas = m.saturating_mul(k).saturating_mul(n);
    match rayon::current_thread_index() {
        Some(_) => fmas < PAR_MIN_FMAS_IN_POOL,
        None => fmas < PAR_MIN_FMAS || crate::parallel::num_threads() == 1,
    }
}

/// C[M×N] (row-major, leading dimension `ldc`) = beta·C + A[M×K] · B[K×N].
/// `beta == 0` overwrites C without reading it (NaNs in C do not leak).
/// Runs on the kernel of [`dispatch::selected`], multithreaded on the
/// current rayon pool when the product is large enough.
pub fn gemm(a: MatRef, b: MatRef, beta: f32, c: &mut [f32], ldc: usize) {
    gemm_with(dispatch::selected(), a, b, beta, c, ldc)
}

/// [`gemm`] on the kernel of `isa`. Panics unless `isa.is_available()`.
pub fn gemm_with(isa: Isa, a: MatRef, b: MatRef, beta: f32, c: &mut [f32], ldc: usize) {
    assert!(
        isa.is_available(),
        "gemm: this CPU cannot run {} kernels",
        isa.name()
    );
    assert_eq!(
        a.cols, b.rows,
        "gemm: A is {}x{} but B is {}x{}",
        a.rows, a.cols, b.rows, b.cols
    );
    check_c(a.rows, b.cols, c.len(), ldc);
    if handled_without_product(a.rows, b.cols, a.cols, beta, c, ldc) {
        return;
    }
    let b_row_major = b.col_stride == 1 || b.cols == 1;
    if b_row_major && a.rows == 1 {
        driver::gemv(isa, a, b, beta, c);
    } else if b_row_major && a.rows <= DIRECT_B_MAX_M {
        driver::run(isa, a, &BSource::direct(b), beta, c, ldc);
    } else {
        let (k, n) = (b.rows, b.cols);
        with_scratch(
            Scratch::PackedB,
            pack::strip_count(n) * k * pack::STRIP,
            |strips| {
                let parallel = k * n >= pack::PAR_PACK_MIN && !runs_on_calling_thread(a.rows, k, n);
                pack::pack_b(b, strips, parallel);
                driver::run(isa, a, &BSource::Strips { strips, k, n }, beta, c, ldc);
            },
        );
    }
}

/// C[M×N] = beta·C + A[M×K] · B, B [K×N] pre-packed: the fast path of
/// every Linear layer, from decoder steps (M = 1..8) to whole batches.
pub fn gemm_packed(a: MatRef, b: &PackedB, beta: f32, c: &mut [f32], ldc: usize) {
    gemm_packed_with(dispatch::selected(), a, b, beta, c, ldc)
}

/// [`gemm_packed`] on the kernel of `isa`. Panics unless `isa.is_available()`.
pub fn gemm_packed_with(isa: Isa, a: MatRef, b: &PackedB, beta: f32, c: &mut [f32], ldc: usize) {
    assert!(
        isa.is_available(),
        "gemm_packed: this CPU cannot run {} kernels",
        isa.name()
    );
    assert_eq!(
        a.cols,
        b.k(),
        "gemm_packed: A has {} columns but B has K = {}",
        a.cols,
        b.k()
    );
    check_c(a.rows, b.n(), c.len(), ldc);
    if handled_without_product(a.rows, b.n(), a.cols, beta, c, ldc) {
        return;
    }
    driver::run(
        isa,
        a,
        &BSource::Strips {
            strips: b.strips(),
            k: b.k(),
            n: b.n(),
        },
        beta,
        c,
        ldc,
    );
}

fn check_c(m: usize, n: usize, len: usize, ldc: usize) {
    assert!(ldc >= n, "gemm: ldc {ldc} < N {n}");
    if m > 0 && n > 0 {
        assert!(
            (m - 1) * ldc + n <= len,
            "gemm: C of {len} elements cannot hold {m}x{n} with ldc {ldc}"
        );
    }
}

/// Finishes empty products (M, N or K = 0) here, so the driver only sees
/// real work: with K = 0, C = beta·C (zeros when beta == 0).
fn handled_without_product(
    m: usize,
    n: usize,
    k: usize,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
) -> bool {
    if m == 0 || n == 0 {
        return true;
    }
    if k > 0 {
        return false;
    }
    for row in c.chunks_mut(ldc).take(m) {
        for x in &mut row[..n] {
            *x = if beta == 0.0 { 0.0 } else { beta * *x };
        }
    }
    true
}
