//! NEON micro-kernel (aarch64): a strip of 16 columns is four q registers.
//!
//! Big tile 6 × 16: 24 accumulators + 4 B vectors of the 32 q registers.
//! Thin tiles widen to 64 columns for one row.

use std::arch::aarch64::*;

use super::{tile_table, BPanel, MicroKernel};

pub(in crate::kernels::gemm) struct Neon;

impl MicroKernel for Neon {
    const MR: usize = 6;
    const STRIPS: usize = 1;
    const MC: usize = 120;
    const KC: usize = 256;
    const NC: usize = 2048;

    fn max_strips(rows: usize) -> usize {
        match rows {
            1 => 4,
            2 => 2,
            _ => 1,
        }
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
        // SAFETY: the caller upholds `MicroKernel::tile`'s contract, which
        // includes that this CPU has NEON, and is exactly `tile`'s.
        unsafe {
            tile_table!(
                rows,
                strips,
                (kc, a, b, c, ldc, beta),
                [
                    (1, 1),
                    (1, 2),
                    (1, 4),
                    (2, 1),
                    (2, 2),
                    (3, 1),
                    (4, 1),
                    (5, 1),
                    (6, 1),
                ]
            )
        }
    }
}

/// C[R × 16S] = beta·C + Ã·B̃; see [`MicroKernel::tile`] for the contract.
#[target_feature(enable = "neon")]
unsafe fn tile<const R: usize, const S: usize>(
    kc: usize,
    a: *const f32,
    b: BPanel,
    c: *mut f32,
    ldc: usize,
    beta: f32,
) {
    let mut acc = [[[vdupq_n_f32(0.0); 4]; S]; R];
    let (mut a_step, mut b_row) = (a, b.ptr);
    for _ in 0..kc {
        let mut bv = [[vdupq_n_f32(0.0); 4]; S];
        for (s, v) in bv.iter_mut().enumerate() {
            // SAFETY: strip s < S of the current row holds 16 readable f32.
            unsafe {
                let src = b_row.add(s * b.strip_stride);
                *v = [
                    vld1q_f32(src),
                    vld1q_f32(src.add(4)),
                    vld1q_f32(src.add(8)),
                    vld1q_f32(src.add(12)),
                ];
            }
        }
        for (i, acc_row) in acc.iter_mut().enumerate() {
            // SAFETY: the current k step of Ã holds R readable f32.
            let ai = vdupq_n_f32(unsafe { *a_step.add(i) });
            for (x, bs) in acc_row.iter_mut().zip(&bv) {
                for q in 0..4 {
                    x[q] = vfmaq_f32(x[q], bs[q], ai);
                }
            }
        }
        // Wrapping: after the last step these point past the operands and
        // are never read.
        a_step = a_step.wrapping_add(R);
        b_row = b_row.wrapping_add(b.k_stride);
    }
    let beta_v = vdupq_n_f32(beta);
    for (i, acc_row) in acc.iter().enumerate() {
        for (s, x) in acc_row.iter().enumerate() {
            for (q, &xq) in x.iter().enumerate() {
                // SAFETY: row i < R, columns 16s+4q..+4 of C are writable, and
                // readable when beta != 0, by the caller's contract.
                unsafe {
                    let dst = c.add(i * ldc + s * 16 + q * 4);
                    let out = if beta == 0.0 {
                        xq
                    } else {
                        vfmaq_f32(xq, vld1q_f32(dst), beta_v)
                    };
                    vst1q_f32(dst, out);
                }
            }
        }
    }
}
