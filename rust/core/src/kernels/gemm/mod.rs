//! Single-precision matrix multiply, C = beta·C + A·B, BLIS style.
//!
//! ```text
//! mod.rs         public entry points: check shapes, pick the B source, dispatch on the ISA
//! mat_ref.rs     MatRef, the strided operand view
//! packed_b.rs    PackedB, B packed once (Linear weights)
//! pack.rs        packing A row panels and B strips
//! driver.rs      the five cache-blocking loops (NC, KC, MC, NR, MR), threading
//! gemv.rs        M = 1 on a row-major B: blocks of B's rows, partial sums added in order
//! microkernel/   per ISA (scalar, avx2, avx512, neon): register-tile kernel + GEMV row sweep
//! buffer.rs      64-byte aligned storage; per-thread scratch for packed operands
//! ```
//!
//! Small products skip what they do not need: a row-major B with few rows
//! of A (M ≤ 256) is not packed whole: read in place, its micro-panels
//! copied by the first row panel for the others (`driver`); M = 1 on a
//! row-major B
//! is a GEMV sweeping B's rows (`gemv`); with M ≤ MR the driver uses
//! one thin, wide tile over the whole K, which makes `gemm_packed` for decoder
//! steps a GEMV-like stream over the packed panels. Products below
//! [`runs_on_calling_thread`]'s threshold never touch the thread pool;
//! larger ones may be called from any thread (see `crate::parallel`).
#![deny(unsafe_op_in_unsafe_fn)]

mod buffer;
mod driver;
mod epilogue;
mod gemv;
mod mat_ref;
mod microkernel;
mod pack;
mod packed_b;
#[cfg(test)]
mod tests;

pub(crate) use buffer::AlignedBuf;
pub use epilogue::Epilogue;
pub use mat_ref::MatRef;
pub use packed_b::PackedB;

use super::dispatch::{self, Isa};
use buffer::{with_scratch, Scratch};
use driver::BSource;

/// Up to this many rows of A, a row-major B is read in place (its
/// micro-panels copied as the first row panel reads them, see `driver`)
/// instead of packed whole first, which costs a write and a read of all of
/// B. AVX-512, K = 512, N = 2048: M = 128 70 → 90 GFLOP/s on one thread,
/// 152 → 174 on two; M = 256 77 → 87 and 155 → 177; at 1024³ packing first
/// stayed ahead.
const DIRECT_B_MAX_M: usize = 256;

/// Products smaller than this many multiply-adds run on one thread: below
/// it, handing a share to another thread (a spawn, a wake-up, a join) costs
/// more than the share. Measured at K = 512 on a 2-core AVX-512 VM, calling
/// from Python.
const PAR_MIN_FMAS: usize = 1 << 18;

/// Whether [`gemm`] / [`gemm_packed`] of A [M×K] · B [K×N], called from the
/// current thread, does all its work on it: products below [`PAR_MIN_FMAS`],
/// and every product when there is one thread to run on. Larger ones split
/// their loops with [`crate::parallel::for_each_index`], which the calling
/// thread joins, whether or not it is a pool worker: a Python thread need
/// not hand a product to the pool, and starts on it at once.
fn runs_on_calling_thread(m: usize, k: usize, n: usize) -> bool {
    let fmas = m.saturating_mul(k).saturating_mul(n);
    fmas < PAR_MIN_FMAS || crate::parallel::loop_threads() == 1
}

/// C[M×N] (row-major, leading dimension `ldc`) = beta·C + A[M×K] · B[K×N].
/// `beta == 0` overwrites C without reading it (NaNs in C do not leak).
/// Runs on the kernel of [`dispatch::selected`], multithreaded on the
/// kernel pool (with the calling thread taking part) when the product is
/// large enough.
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
        gemv::gemv(isa, a, b, beta, c);
    } else if b_row_major && a.rows <= DIRECT_B_MAX_M {
        driver::run(
            isa,
            a,
            &BSource::direct(b),
            beta,
            c,
            ldc,
            &Epilogue::default(),
        );
    } else {
        let (k, n) = (b.rows, b.cols);
        with_scratch(
            Scratch::PackedB,
            pack::strip_count(n) * k * pack::STRIP,
            |strips| {
                let parallel = k * n >= pack::PAR_PACK_MIN && !runs_on_calling_thread(a.rows, k, n);
                pack::pack_b(isa, b, strips, parallel);
                driver::run(
                    isa,
                    a,
                    &BSource::strips(strips, k, n),
                    beta,
                    c,
                    ldc,
                    &Epilogue::default(),
                );
            },
        );
    }
}

/// C[M×N] = beta·C + A[M×K] · B, B [K×N] pre-packed: the fast path of
/// every Linear layer, from decoder steps (M = 1..8) to whole batches.
pub fn gemm_packed(a: MatRef, b: &PackedB, beta: f32, c: &mut [f32], ldc: usize) {
    gemm_packed_fused(a, b, beta, c, ldc, Epilogue::default())
}

/// C[M×N] = epi(beta·C + A[M×K] · B), B [K×N] pre-packed, with the
/// epilogue (bias, activation, residual) applied to each tile of C as it is
/// finished. Panics if the epilogue's parts do not fit M×N.
pub fn gemm_packed_fused(
    a: MatRef,
    b: &PackedB,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
    epi: Epilogue,
) {
    gemm_packed_fused_with(dispatch::selected(), a, b, beta, c, ldc, epi)
}

/// [`gemm_packed`] on the kernel of `isa`. Panics unless `isa.is_available()`.
pub fn gemm_packed_with(isa: Isa, a: MatRef, b: &PackedB, beta: f32, c: &mut [f32], ldc: usize) {
    gemm_packed_fused_with(isa, a, b, beta, c, ldc, Epilogue::default())
}

/// [`gemm_packed_fused`] on the kernel of `isa`. Panics unless
/// `isa.is_available()`.
pub fn gemm_packed_fused_with(
    isa: Isa,
    a: MatRef,
    b: &PackedB,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
    epi: Epilogue,
) {
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
    epi.check(a.rows, b.n());
    if a.rows == 0 || b.n() == 0 {
        return;
    }
    if a.cols == 0 {
        // No product to attach the epilogue to: C = epi(beta·C) row by row.
        handled_without_product(a.rows, b.n(), 0, beta, c, ldc);
        if !epi.is_empty() {
            // SAFETY: `isa` is available (asserted above); C holds the M×N
            // product at stride ldc (`check_c`), borrowed mutably here.
            unsafe { epi.apply_tile(isa, c.as_mut_ptr(), ldc, 0..a.rows, 0, b.n()) };
        }
        return;
    }
    driver::run(
        isa,
        a,
        &BSource::strips(b.strips(), b.k(), b.n()),
        beta,
        c,
        ldc,
        &epi,
    );
}

/// C[M × 16·strips.len()] (row-major, dense) = A[M×K] · the 16-column
/// strips `strips` of B (strip s = columns 16s .. 16s + 16, zero past N),
/// side by side in the order given. Each column equals, bit for bit, the
/// same column of `gemm_packed(a, b, 0.0, ..)` for the same A: the strips
/// are gathered into a small packed B and run through the same driver,
/// whose tiles sum each column over the same K slices in the same order
/// for the same M and K, whatever the width or the threads. So a caller
/// can recompute a few columns of a wide product exactly (the decoder's
/// screened argmax over the vocabulary).
pub fn gemm_packed_strips(a: MatRef, b: &PackedB, strips: &[usize], c: &mut [f32]) {
    let isa = dispatch::selected();
    let (k, width) = (b.k(), strips.len() * pack::STRIP);
    assert_eq!(
        a.cols, k,
        "gemm_packed_strips: A has {} columns but B has K = {k}",
        a.cols
    );
    assert_eq!(
        c.len(),
        a.rows * width,
        "gemm_packed_strips: C must hold {}x{width} values",
        a.rows
    );
    let n_strips = pack::strip_count(b.n());
    if let Some(&s) = strips.iter().find(|&&s| s >= n_strips) {
        panic!("gemm_packed_strips: strip {s} out of range (B has {n_strips})");
    }
    if a.rows == 0 || width == 0 {
        return;
    }
    if k == 0 {
        c.fill(0.0);
        return;
    }
    let strip_len = k * pack::STRIP;
    with_scratch(Scratch::PackedB, strips.len() * strip_len, |gathered| {
        for (to, &s) in gathered.chunks_exact_mut(strip_len).zip(strips) {
            to.copy_from_slice(&b.strips()[s * strip_len..][..strip_len]);
        }
        driver::run(
            isa,
            a,
            &BSource::strips(gathered, k, width),
            0.0,
            c,
            width,
            &Epilogue::default(),
        );
    });
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
