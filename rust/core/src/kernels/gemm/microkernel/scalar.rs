//! Portable micro-kernel: the generic tile on one-lane `f32` "vectors", plain
//! f32 arithmetic the compiler may vectorise for the baseline target. The
//! fallback on CPUs without a SIMD kernel.

use super::{check_gemv, generic, tiles, BPanel, MicroKernel};

pub(in crate::kernels::gemm) struct Scalar;

impl MicroKernel for Scalar {
    const MR: usize = 4;
    const STRIPS: usize = 1;
    const MC: usize = 64;
    const KC: usize = 256;
    const NC: usize = 1024;

    tiles! {
        1 => [1],
        2 => [1],
        3 => [1],
        4 => [1],
    }

    unsafe fn gemv(a: &[f32], b: &[f32], ldb: usize, y: &mut [f32]) {
        // One row of B at a time, not the generic 8-row body: on one-lane
        // "vectors" that body hides this loop from the auto-vectoriser
        // (measured 2× slower at K=512, N=509).
        // The sums start from zero in a buffer and go into y once (the
        // trait's contract), a piece of y's columns at a time.
        const PIECE: usize = 256;
        check_gemv(a, b, ldb, y.len());
        let mut sums = [0.0f32; PIECE];
        for (j0, y) in (0..).step_by(PIECE).zip(y.chunks_mut(PIECE)) {
            let sums = &mut sums[..y.len()];
            sums.fill(0.0);
            for (p, &ap) in a.iter().enumerate() {
                let row = &b[p * ldb + j0..][..y.len()];
                for (s, &bj) in sums.iter_mut().zip(row) {
                    *s += ap * bj;
                }
            }
            for (yj, s) in y.iter_mut().zip(sums.iter()) {
                *yj += s;
            }
        }
    }
}

/// C[R × 16S] = beta·C + Ã·B̃; see [`MicroKernel::tile`] for the contract.
unsafe fn tile<const R: usize, const S: usize>(
    kc: usize,
    a: *const f32,
    b: BPanel,
    c: *mut f32,
    ldc: usize,
    beta: f32,
) {
    // SAFETY: the caller upholds `MicroKernel::tile`'s contract; plain f32
    // needs no ISA, and a strip is 16 one-lane vectors.
    unsafe { generic::tile::<f32, R, S, 16>(kc, a, b, c, ldc, beta) }
}
