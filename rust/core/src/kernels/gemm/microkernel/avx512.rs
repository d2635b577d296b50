//! AVX-512F micro-kernel: a strip of 16 columns is one zmm register.
//!
//! Big tile 9 × 48: 27 accumulators + 3 B vectors + 1 broadcast A value (31
//! of the 32 zmm registers). Per k step that is 3 loads and 9 broadcasts for
//! 27 FMAs, where 14 × 32 took 2 and 14 for 28: measured on one core with
//! A and B in L1 (KC = 256–512), 150–160 GFLOP/s against 143–145 for
//! 14 × 32 (8 × 48: 151, 6 × 64: 147, 4 × 96: 122); `gemm_gflops` at
//! 1024³ 120–130 → 134–145, packed 130–133 → 145. Thin tiles for few rows
//! go up to 128 columns so even one row keeps 8 independent FMA chains in
//! flight.

use super::{check_gemv, generic, tiles, BPanel, MicroKernel};
use crate::kernels::simd::{self, x86::F32x16};

pub(in crate::kernels::gemm) struct Avx512;

impl MicroKernel for Avx512 {
    const MR: usize = 9;
    const STRIPS: usize = 3;
    // 18 row panels: the A block, 162 × 512 (324 KiB), stays in L2; 117
    // and 216 measured no better.
    const MC: usize = 162;
    // 512 measured ~5% faster than 256 at 1024³ and 2048³ (fewer passes
    // over C), and than 384 with this tile; the 96 KiB B micro-panel then
    // streams from L2.
    const KC: usize = 512;
    const NC: usize = 2048;

    tiles! {
        1 => [1, 2, 3, 4, 8],
        2 => [1, 2, 3, 4],
        3 => [1, 2, 3, 4],
        4 => [1, 2, 3, 4],
        5 => [1, 2, 3, 4],
        6 => [1, 2, 3, 4],
        7 => [1, 2, 3],
        8 => [1, 2, 3],
        9 => [1, 2, 3],
    }

    unsafe fn gemv(a: &[f32], b: &[f32], ldb: usize, y: &mut [f32]) {
        check_gemv(a, b, ldb, y.len());
        // SAFETY: the caller guarantees the ISA; `check_gemv` the bounds.
        unsafe { gemv(a, b, ldb, y) }
    }

    unsafe fn pack_a_rows(a: &[f32], lda: usize, rows: usize, panel: &mut [f32]) {
        let kc = panel.len() / rows;
        if rows < 8 || kc < 8 {
            return super::super::pack::pack_a_rows(a, lda, rows, panel);
        }
        assert_eq!(panel.len(), rows * kc, "pack_a: panel holds {rows} rows");
        assert!((rows - 1) * lda + kc <= a.len(), "pack_a: A too short");
        // SAFETY: the caller guarantees the ISA (AVX-512F implies AVX2);
        // the asserts above the bounds.
        unsafe { pack_a_rows_8x8(a, lda, rows, kc, panel) }
    }
}

/// How far ahead (in f32) `pack_a_rows_8x8` fetches each row of A.
const PACK_A_PREFETCH: usize = 64;

/// `panel[p·h + i] = a[i·lda + p]` by 8×8 blocks transposed in registers:
/// 8 loads, 24 shuffles and 8 stores per 64 values, where one value at a
/// time takes a load and a store each, with each row prefetched (packing A
/// was ~15% of a BERT layer's GEMM time at N = 384; of 1024×512×512, 8% one
/// value at a time, 5% here). Rows go in groups of 8 at 0, 8, ...; the last
/// kc % 8 columns of those, and the h % 8 rows after them, one value at a
/// time (a 9-row panel is one group and one row: an overlapping second
/// group would transpose 16 rows for 9).
///
/// # Safety
/// AVX2 is available; 8 ≤ h = `rows`; kc ≥ 8; `a` holds (h-1)·lda + kc
/// values; `panel` holds h·kc.
#[target_feature(enable = "avx2")]
unsafe fn pack_a_rows_8x8(a: &[f32], lda: usize, rows: usize, kc: usize, panel: &mut [f32]) {
    use std::arch::x86_64::*;
    let (src, dst) = (a.as_ptr(), panel.as_mut_ptr());
    let grouped = rows / 8 * 8;
    let groups = (0..grouped).step_by(8);
    let mut p = 0;
    while p + 8 <= kc {
        for i0 in groups.clone() {
            // SAFETY: rows i0..i0+8 < h, columns p..p+8 ≤ kc of A are in
            // bounds, and so are panel[(p+j)·h + i0 ..][..8] for j < 8
            // ((p+7)·h + i0 + 8 ≤ kc·h); the caller guarantees AVX2.
            unsafe {
                if p % 16 == 0 {
                    // Each row is its own stream; fetch it a few lines ahead.
                    for k in 0..8 {
                        let ahead = src.wrapping_add((i0 + k) * lda + p + PACK_A_PREFETCH);
                        simd::prefetch_line(ahead);
                    }
                }
                let r: [__m256; 8] =
                    std::array::from_fn(|k| _mm256_loadu_ps(src.add((i0 + k) * lda + p)));
                let t0 = _mm256_unpacklo_ps(r[0], r[1]);
                let t1 = _mm256_unpackhi_ps(r[0], r[1]);
                let t2 = _mm256_unpacklo_ps(r[2], r[3]);
                let t3 = _mm256_unpackhi_ps(r[2], r[3]);
                let t4 = _mm256_unpacklo_ps(r[4], r[5]);
                let t5 = _mm256_unpackhi_ps(r[4], r[5]);
                let t6 = _mm256_unpacklo_ps(r[6], r[7]);
                let t7 = _mm256_unpackhi_ps(r[6], r[7]);
                let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
                let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
                let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
                let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
                let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
                let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
                let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
                let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
                let columns = [
                    _mm256_permute2f128_ps::<0x20>(u0, u4),
                    _mm256_permute2f128_ps::<0x20>(u1, u5),
                    _mm256_permute2f128_ps::<0x20>(u2, u6),
                    _mm256_permute2f128_ps::<0x20>(u3, u7),
                    _mm256_permute2f128_ps::<0x31>(u0, u4),
                    _mm256_permute2f128_ps::<0x31>(u1, u5),
                    _mm256_permute2f128_ps::<0x31>(u2, u6),
                    _mm256_permute2f128_ps::<0x31>(u3, u7),
                ];
                for (j, column) in columns.into_iter().enumerate() {
                    _mm256_storeu_ps(dst.add((p + j) * rows + i0), column);
                }
            }
        }
        p += 8;
    }
    for p in p..kc {
        for i in 0..grouped {
            panel[p * rows + i] = a[i * lda + p];
        }
    }
    for i in grouped..rows {
        for (p, &x) in a[i * lda..][..kc].iter().enumerate() {
            panel[p * rows + i] = x;
        }
    }
}

// GEMV: 16 accumulators, a broadcast and loads fit the register file.
generic::isa_entry_points!(F32x16, "avx512f", gemv_vectors: 16);
