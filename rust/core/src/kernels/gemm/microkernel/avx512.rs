//! AVX-512F micro-kernel: a strip of 16 columns is one zmm register.
//!
//! Big tile 14 × 32: 28 accumulators + 2 B vectors; the A value is broadcast
//! straight from memory into the FMA. Thin tiles for few rows go up to 128
//! columns so even one row keeps 8 independent FMA chains in flight.

use std::arch::x86_64::*;

use super::{check_gemv, tile_table, BPanel, MicroKernel};

pub(in crate::kernels::gemm) struct Avx512;

impl MicroKernel for Avx512 {
    const MR: usize = 14;
    const STRIPS: usize = 2;
    const MC: usize = 168;
    // 512 measured ~5% faster than 256 at 1024³ and 2048³ (fewer passes
    // over C); the 64 KiB B micro-panel then streams from L2.
    const KC: usize = 512;
    const NC: usize = 2048;

    fn max_strips(rows: usize) -> usize {
        match rows {
            1 => 8,
            2..=6 => 4,
            _ => 2,
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
        // includes that this CPU has AVX-512F, and is exactly `tile`'s.
        unsafe {
            tile_table!(
                rows,
                strips,
                (kc, a, b, c, ldc, beta),
                [
                    (1, 1),
                    (1, 2),
                    (1, 4),
                    (1, 8),
                    (2, 1),
                    (2, 2),
                    (2, 4),
                    (3, 1),
                    (3, 2),
                    (3, 4),
                    (4, 1),
                    (4, 2),
                    (4, 4),
                    (5, 1),
                    (5, 2),
                    (5, 4),
                    (6, 1),
                    (6, 2),
                    (6, 4),
                    (7, 1),
                    (7, 2),
                    (8, 1),
                    (8, 2),
                    (9, 1),
                    (9, 2),
                    (10, 1),
                    (10, 2),
                    (11, 1),
                    (11, 2),
                    (12, 1),
                    (12, 2),
                    (13, 1),
                    (13, 2),
                    (14, 1),
                    (14, 2),
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
#[target_feature(enable = "avx512f")]
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
#[target_feature(enable = "avx512f")]
unsafe fn gemv_rows<const P: usize>(a: &[f32], b: *const f32, ldb: usize, y: &mut [f32]) {
    const W: usize = 16;
    let n = y.len();
    let mut av = [_mm512_set1_ps(0.0); P];
    for (v, &ai) in av.iter_mut().zip(a) {
        *v = _mm512_set1_ps(ai);
    }
    let yp = y.as_mut_ptr();
    let mut j = 0;
    // Four vectors per step: independent chains for the out-of-order core.
    while j + 4 * W <= n {
        for v in 0..4 {
            let col = j + v * W;
            // SAFETY: col + W <= n, so y[col..col+W] and B[i, col..col+W] are in bounds.
            unsafe {
                let mut acc = _mm512_loadu_ps(yp.add(col));
                for (i, &ai) in av.iter().enumerate() {
                    acc = _mm512_fmadd_ps(ai, _mm512_loadu_ps(b.add(i * ldb + col)), acc);
                }
                _mm512_storeu_ps(yp.add(col), acc);
            }
        }
        j += 4 * W;
    }
    while j + W <= n {
        // SAFETY: j + W <= n, as above.
        unsafe {
            let mut acc = _mm512_loadu_ps(yp.add(j));
            for (i, &ai) in av.iter().enumerate() {
                acc = _mm512_fmadd_ps(ai, _mm512_loadu_ps(b.add(i * ldb + j)), acc);
            }
            _mm512_storeu_ps(yp.add(j), acc);
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
#[target_feature(enable = "avx512f")]
unsafe fn tile<const R: usize, const S: usize>(
    kc: usize,
    a: *const f32,
    b: BPanel,
    c: *mut f32,
    ldc: usize,
    beta: f32,
) {
    let mut acc = [[_mm512_setzero_ps(); S]; R];
    // C is touched only after the k loop; start its (likely L2/L3) lines
    // on their way now so the stores do not stall on them.
    for i in 0..R {
        for s in 0..S {
            _mm_prefetch::<_MM_HINT_T0>(c.wrapping_add(i * ldc + s * 16).cast::<i8>());
        }
    }
    let (mut a_step, mut b_row) = (a, b.ptr);
    for _ in 0..kc {
        let mut bv = [_mm512_setzero_ps(); S];
        for (s, v) in bv.iter_mut().enumerate() {
            // SAFETY: strip s < S of the current row holds 16 readable f32.
            *v = unsafe { _mm512_loadu_ps(b_row.add(s * b.strip_stride)) };
        }
        for (i, acc_row) in acc.iter_mut().enumerate() {
            // SAFETY: the current k step of Ã holds R readable f32.
            let ai = _mm512_set1_ps(unsafe { *a_step.add(i) });
            for (x, &bs) in acc_row.iter_mut().zip(&bv) {
                *x = _mm512_fmadd_ps(ai, bs, *x);
            }
        }
        // Wrapping: after the last step these point past the operands and
        // are never read.
        a_step = a_step.wrapping_add(R);
        b_row = b_row.wrapping_add(b.k_stride);
    }
    let beta_v = _mm512_set1_ps(beta);
    for (i, acc_row) in acc.iter().enumerate() {
        for (s, &x) in acc_row.iter().enumerate() {
            // SAFETY: row i < R, columns 16s..16s+16 of C are writable, and
            // readable when beta != 0, by the caller's contract.
            unsafe {
                let dst = c.add(i * ldc + s * 16);
                let out = if beta == 0.0 {
                    x
                } else {
                    _mm512_fmadd_ps(beta_v, _mm512_loadu_ps(dst), x)
                };
                _mm512_storeu_ps(dst, out);
            }
        }
    }
}
