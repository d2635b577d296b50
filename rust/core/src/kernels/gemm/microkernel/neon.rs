//! NEON micro-kernel (aarch64): a strip of 16 columns is four q registers.
//!
//! Big tile 6 × 16: 24 accumulators + 4 B vectors of the 32 q registers.
//! Thin tiles widen to 64 columns for one row.

use std::arch::aarch64::*;

use super::{check_gemv, tile_table, BPanel, MicroKernel};

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

    unsafe fn gemv(a: &[f32], b: &[f32], ldb: usize, y: &mut [f32]) {
        check_gemv(a, b, ldb, y.len());
        // SAFETY: the caller guarantees the ISA; `check_gemv` the bounds.
        unsafe { gemv(a, b, ldb, y) }
    }
}

/// Rows of B one GEMV pass adds into y: eight sequential read streams.
const GEMV_ROWS: usize = 8;

/// See [`MicroKernel::gemv`]; `b` holds `a.len()` rows of `y.len()` at `ldb`.
#[target_feature(enable = "neon")]
unsafe fn gemv(a: &[f32], b: &[f32], ldb: usize, y: &mut [f32]) {
    let mut p = 0;
    while p + GEMV_ROWS <= a.len() {
        // SAFETY: rows p..p+GEMV_ROWS < K of B hold y.len() f32 each (checked by the caller).
        unsafe { gemv_rows::<GEMV_ROWS>(&a[p..p + GEMV_ROWS], b[p * ldb..].as_ptr(), ldb, y) };
        p += GEMV_ROWS;
    }
    for (q, &aq) in a.iter().enumerate().skip(p) {
        // SAFETY: as above for row q.
        unsafe { gemv_rows::<1>(&[aq], b[q * ldb..].as_ptr(), ldb, y) };
    }
}

/// y += Σ_{i<P} a[i] · B[i, ..], B's rows at `b + i·ldb`, each y.len() long.
#[target_feature(enable = "neon")]
unsafe fn gemv_rows<const P: usize>(a: &[f32], b: *const f32, ldb: usize, y: &mut [f32]) {
    const W: usize = 4;
    let n = y.len();
    let mut av = [vdupq_n_f32(0.0); P];
    for (v, &ai) in av.iter_mut().zip(a) {
        *v = vdupq_n_f32(ai);
    }
    let yp = y.as_mut_ptr();
    let mut j = 0;
    // Four vectors per step: independent chains for the out-of-order core.
    while j + 4 * W <= n {
        for v in 0..4 {
            let col = j + v * W;
            // SAFETY: col + W <= n, so y[col..col+W] and B[i, col..col+W] are in bounds.
            unsafe {
                let mut acc = vld1q_f32(yp.add(col));
                for (i, &ai) in av.iter().enumerate() {
                    acc = vfmaq_f32(acc, vld1q_f32(b.add(i * ldb + col)), ai);
                }
                vst1q_f32(yp.add(col), acc);
            }
        }
        j += 4 * W;
    }
    while j + W <= n {
        // SAFETY: j + W <= n, as above.
        unsafe {
            let mut acc = vld1q_f32(yp.add(j));
            for (i, &ai) in av.iter().enumerate() {
                acc = vfmaq_f32(acc, vld1q_f32(b.add(i * ldb + j)), ai);
            }
            vst1q_f32(yp.add(j), acc);
        }
        j += W;
    }
    for (jj, yj) in y.iter_mut().enumerate().skip(j) {
        for (i, &ai) in a.iter().enumerate().take(P) {
            // SAFETY: jj < n, as above.
            *yj = ai.mul_add(unsafe { *b.add(i * ldb + jj) }, *yj);
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
