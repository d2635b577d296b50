//! AVX2 + FMA micro-kernel: a strip of 16 columns is two ymm registers.
//!
//! Big tile 6 × 16: 12 accumulators + 2 B vectors + 1 broadcast A value
//! (15 of the 16 ymm registers). Thin tiles widen to 64 columns for one row.

use std::arch::x86_64::*;

use super::{check_gemv, tile_table, BPanel, MicroKernel};

pub(in crate::kernels::gemm) struct Avx2;

impl MicroKernel for Avx2 {
    const MR: usize = 6;
    const STRIPS: usize = 1;
    const MC: usize = 120;
    const KC: usize = 256;
    const NC: usize = 2048;

    fn max_strips(rows: usize) -> usize {
        match rows {
            1 => 4,
            2..=3 => 2,
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
        // includes that this CPU has AVX2 and FMA, and is exactly `tile`'s.
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
                    (3, 2),
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
#[target_feature(enable = "avx2,fma")]
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
#[target_feature(enable = "avx2,fma")]
unsafe fn gemv_rows<const P: usize>(a: &[f32], b: *const f32, ldb: usize, y: &mut [f32]) {
    const W: usize = 8;
    let n = y.len();
    let mut av = [_mm256_set1_ps(0.0); P];
    for (v, &ai) in av.iter_mut().zip(a) {
        *v = _mm256_set1_ps(ai);
    }
    let yp = y.as_mut_ptr();
    let mut j = 0;
    // Four vectors per step: independent chains for the out-of-order core.
    while j + 4 * W <= n {
        for v in 0..4 {
            let col = j + v * W;
            // SAFETY: col + W <= n, so y[col..col+W] and B[i, col..col+W] are in bounds.
            unsafe {
                let mut acc = _mm256_loadu_ps(yp.add(col));
                for (i, &ai) in av.iter().enumerate() {
                    acc = _mm256_fmadd_ps(ai, _mm256_loadu_ps(b.add(i * ldb + col)), acc);
                }
                _mm256_storeu_ps(yp.add(col), acc);
            }
        }
        j += 4 * W;
    }
    while j + W <= n {
        // SAFETY: j + W <= n, as above.
        unsafe {
            let mut acc = _mm256_loadu_ps(yp.add(j));
            for (i, &ai) in av.iter().enumerate() {
                acc = _mm256_fmadd_ps(ai, _mm256_loadu_ps(b.add(i * ldb + j)), acc);
            }
            _mm256_storeu_ps(yp.add(j), acc);
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
#[target_feature(enable = "avx2,fma")]
unsafe fn tile<const R: usize, const S: usize>(
    kc: usize,
    a: *const f32,
    b: BPanel,
    c: *mut f32,
    ldc: usize,
    beta: f32,
) {
    let mut acc = [[[_mm256_setzero_ps(); 2]; S]; R];
    // C is touched only after the k loop; start its (likely L2/L3) lines
    // on their way now so the stores do not stall on them.
    for i in 0..R {
        for s in 0..S {
            _mm_prefetch::<_MM_HINT_T0>(c.wrapping_add(i * ldc + s * 16).cast::<i8>());
        }
    }
    let (mut a_step, mut b_row) = (a, b.ptr);
    for _ in 0..kc {
        let mut bv = [[_mm256_setzero_ps(); 2]; S];
        for (s, v) in bv.iter_mut().enumerate() {
            // SAFETY: strip s < S of the current row holds 16 readable f32.
            unsafe {
                let src = b_row.add(s * b.strip_stride);
                *v = [_mm256_loadu_ps(src), _mm256_loadu_ps(src.add(8))];
            }
        }
        for (i, acc_row) in acc.iter_mut().enumerate() {
            // SAFETY: the current k step of Ã holds R readable f32.
            let ai = _mm256_set1_ps(unsafe { *a_step.add(i) });
            for (x, bs) in acc_row.iter_mut().zip(&bv) {
                x[0] = _mm256_fmadd_ps(ai, bs[0], x[0]);
                x[1] = _mm256_fmadd_ps(ai, bs[1], x[1]);
            }
        }
        // Wrapping: after the last step these point past the operands and
        // are never read.
        a_step = a_step.wrapping_add(R);
        b_row = b_row.wrapping_add(b.k_stride);
    }
    let beta_v = _mm256_set1_ps(beta);
    for (i, acc_row) in acc.iter().enumerate() {
        for (s, x) in acc_row.iter().enumerate() {
            for (h, &xh) in x.iter().enumerate() {
                // SAFETY: row i < R, columns 16s+8h..+8 of C are writable, and
                // readable when beta != 0, by the caller's contract.
                unsafe {
                    let dst = c.add(i * ldc + s * 16 + h * 8);
                    let out = if beta == 0.0 {
                        xh
                    } else {
                        _mm256_fmadd_ps(beta_v, _mm256_loadu_ps(dst), xh)
                    };
                    _mm256_storeu_ps(dst, out);
                }
            }
        }
    }
}
