//! Portable micro-kernel: plain f32 arithmetic the compiler may vectorise
//! for the baseline target. The fallback on CPUs without a SIMD kernel.

use super::{check_gemv, tile_table, BPanel, MicroKernel};

const STRIP: usize = 16;

pub(in crate::kernels::gemm) struct Scalar;

impl MicroKernel for Scalar {
    const MR: usize = 4;
    const STRIPS: usize = 1;
    const MC: usize = 64;
    const KC: usize = 256;
    const NC: usize = 1024;

    fn max_strips(_rows: usize) -> usize {
        1
    }

    unsafe fn tile(
        rows: usize,
        strips: usize,
        kc: usize,
        a: *const f32,
        b: BPanel,
        c: *mut f32,
        ldc: usize,
        beta: f32,
    ) {
        // SAFETY: the caller upholds `MicroKernel::tile`'s contract, which is
        // exactly `tile`'s.
        unsafe {
            tile_table!(
                rows,
                strips,
                (kc, a, b, c, ldc, beta),
                [(1, 1), (2, 1), (3, 1), (4, 1)]
            )
        }
    }

    unsafe fn gemv(a: &[f32], b: &[f32], ldb: usize, y: &mut [f32]) {
        check_gemv(a, b, ldb, y.len());
        let n = y.len();
        for (p, &ap) in a.iter().enumerate() {
            for (yj, &bj) in y.iter_mut().zip(&b[p * ldb..p * ldb + n]) {
                *yj += ap * bj;
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
    let mut acc = [[[0.0f32; STRIP]; S]; R];
    for p in 0..kc {
        // SAFETY: p < kc, so row p of the panel and k step p of Ã are in
        // bounds by the caller's contract.
        let (b_row, a_step) = unsafe { (b.ptr.add(p * b.k_stride), a.add(p * R)) };
        for (i, acc_row) in acc.iter_mut().enumerate() {
            // SAFETY: i < R values per k step.
            let ai = unsafe { *a_step.add(i) };
            for (s, acc_strip) in acc_row.iter_mut().enumerate() {
                // SAFETY: strip s < S of row p holds 16 readable f32.
                let bs =
                    unsafe { std::slice::from_raw_parts(b_row.add(s * b.strip_stride), STRIP) };
                for (x, &bv) in acc_strip.iter_mut().zip(bs) {
                    *x += ai * bv;
                }
            }
        }
    }
    for (i, acc_row) in acc.iter().enumerate() {
        for (s, acc_strip) in acc_row.iter().enumerate() {
            // SAFETY: row i < R, columns 16s..16s+16 < 16S of C are writable
            // (and readable when beta != 0) by the caller's contract.
            let cs = unsafe { std::slice::from_raw_parts_mut(c.add(i * ldc + s * STRIP), STRIP) };
            for (dst, &x) in cs.iter_mut().zip(acc_strip) {
                *dst = if beta == 0.0 { x } else { beta * *dst + x };
            }
        }
    }
}
