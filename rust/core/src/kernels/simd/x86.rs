//! x86-64 vectors: [`F32x8`] (AVX2 + FMA) and [`F32x16`] (AVX-512F).
//!
//! Every method is a `#[target_feature]` function; see the `# Safety`
//! contract of [`F32Vec`].

use std::arch::x86_64::*;

use super::F32Vec;

/// Eight f32 lanes in a `__m256`, for AVX2 + FMA.
#[derive(Clone, Copy)]
pub(crate) struct F32x8(__m256);

/// Sixteen f32 lanes in a `__m512`, for AVX-512F.
#[derive(Clone, Copy)]
pub(crate) struct F32x16(__m512);

impl F32Vec for F32x8 {
    const LANES: usize = 8;

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn prefetch(p: *const f32) {
        super::prefetch_line(p)
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn splat(v: f32) -> Self {
        F32x8(_mm256_set1_ps(v))
    }
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn load(p: *const f32) -> Self {
        F32x8(_mm256_loadu_ps(p))
    }
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn store(self, p: *mut f32) {
        _mm256_storeu_ps(p, self.0)
    }
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn add(self, o: Self) -> Self {
        F32x8(_mm256_add_ps(self.0, o.0))
    }
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn sub(self, o: Self) -> Self {
        F32x8(_mm256_sub_ps(self.0, o.0))
    }
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn mul(self, o: Self) -> Self {
        F32x8(_mm256_mul_ps(self.0, o.0))
    }
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn div(self, o: Self) -> Self {
        F32x8(_mm256_div_ps(self.0, o.0))
    }
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn mul_add(self, b: Self, c: Self) -> Self {
        F32x8(_mm256_fmadd_ps(self.0, b.0, c.0))
    }
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn mul_err(self, o: Self) -> Self {
        F32x8(_mm256_fmsub_ps(self.0, o.0, _mm256_mul_ps(self.0, o.0)))
    }
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn max(self, o: Self) -> Self {
        F32x8(_mm256_max_ps(self.0, o.0))
    }
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn min(self, o: Self) -> Self {
        F32x8(_mm256_min_ps(self.0, o.0))
    }
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn abs(self) -> Self {
        F32x8(_mm256_andnot_ps(_mm256_set1_ps(-0.0), self.0))
    }
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn round(self) -> Self {
        F32x8(_mm256_round_ps::<
            { _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC },
        >(self.0))
    }
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn pow2i(self) -> Self {
        let biased = _mm256_add_epi32(_mm256_cvtps_epi32(self.0), _mm256_set1_epi32(127));
        F32x8(_mm256_castsi256_ps(_mm256_slli_epi32::<23>(biased)))
    }
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn select_lt(self, o: Self, a: Self, b: Self) -> Self {
        F32x8(_mm256_blendv_ps(
            b.0,
            a.0,
            _mm256_cmp_ps::<_CMP_LT_OQ>(self.0, o.0),
        ))
    }
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn select_eq(self, o: Self, a: Self, b: Self) -> Self {
        F32x8(_mm256_blendv_ps(
            b.0,
            a.0,
            _mm256_cmp_ps::<_CMP_EQ_OQ>(self.0, o.0),
        ))
    }
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn reduce_add(self) -> f32 {
        let x = _mm_add_ps(
            _mm256_castps256_ps128(self.0),
            _mm256_extractf128_ps::<1>(self.0),
        );
        let x = _mm_add_ps(x, _mm_movehl_ps(x, x));
        _mm_cvtss_f32(_mm_add_ss(x, _mm_movehdup_ps(x)))
    }
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn reduce_max(self) -> f32 {
        let x = _mm_max_ps(
            _mm256_castps256_ps128(self.0),
            _mm256_extractf128_ps::<1>(self.0),
        );
        let x = _mm_max_ps(x, _mm_movehl_ps(x, x));
        _mm_cvtss_f32(_mm_max_ss(x, _mm_movehdup_ps(x)))
    }
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn load_bf16_pairs(p: *const u32) -> (Self, Self) {
        let w = _mm256_loadu_si256(p.cast());
        (
            F32x8(_mm256_castsi256_ps(_mm256_slli_epi32::<16>(w))),
            F32x8(_mm256_castsi256_ps(_mm256_and_si256(
                w,
                _mm256_set1_epi32(0xFFFF_0000_u32 as i32),
            ))),
        )
    }
}

/// The AVX-512 mask selecting lanes `lanes` (end ≤ 16).
#[inline(always)]
fn lane_mask(lanes: std::ops::Range<usize>) -> __mmask16 {
    let below = |n: usize| ((1u32 << n) - 1) as __mmask16;
    below(lanes.end) & !below(lanes.start.min(lanes.end))
}

impl F32Vec for F32x16 {
    const LANES: usize = 16;
    const MASKED: bool = true;

    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn load_lanes(p: *const f32, lanes: std::ops::Range<usize>) -> Self {
        // Masked-off lanes are not accessed (their faults are suppressed),
        // so only `p + lane` for `lane` in `lanes` is read.
        F32x16(_mm512_maskz_loadu_ps(lane_mask(lanes), p))
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn store_lanes(self, p: *mut f32, lanes: std::ops::Range<usize>) {
        // As in `load_lanes`: only the lanes in `lanes` are written.
        _mm512_mask_storeu_ps(p, lane_mask(lanes), self.0)
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn shift_index(shift: usize) -> Self {
        // Lane i takes element shift + i of lo:hi (indices 16..31 are hi's).
        let lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        let index = _mm512_add_epi32(lanes, _mm512_set1_epi32(shift as i32));
        F32x16(_mm512_castsi512_ps(index))
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn concat_shifted(lo: Self, hi: Self, index: Self) -> Self {
        F32x16(_mm512_permutex2var_ps(
            lo.0,
            _mm512_castps_si512(index.0),
            hi.0,
        ))
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn prefetch(p: *const f32) {
        super::prefetch_line(p)
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn splat(v: f32) -> Self {
        F32x16(_mm512_set1_ps(v))
    }
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn load(p: *const f32) -> Self {
        F32x16(_mm512_loadu_ps(p))
    }
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn store(self, p: *mut f32) {
        _mm512_storeu_ps(p, self.0)
    }
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn add(self, o: Self) -> Self {
        F32x16(_mm512_add_ps(self.0, o.0))
    }
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn sub(self, o: Self) -> Self {
        F32x16(_mm512_sub_ps(self.0, o.0))
    }
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn mul(self, o: Self) -> Self {
        F32x16(_mm512_mul_ps(self.0, o.0))
    }
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn div(self, o: Self) -> Self {
        F32x16(_mm512_div_ps(self.0, o.0))
    }
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn mul_add(self, b: Self, c: Self) -> Self {
        F32x16(_mm512_fmadd_ps(self.0, b.0, c.0))
    }
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn mul_err(self, o: Self) -> Self {
        F32x16(_mm512_fmsub_ps(self.0, o.0, _mm512_mul_ps(self.0, o.0)))
    }
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn max(self, o: Self) -> Self {
        F32x16(_mm512_max_ps(self.0, o.0))
    }
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn min(self, o: Self) -> Self {
        F32x16(_mm512_min_ps(self.0, o.0))
    }
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn abs(self) -> Self {
        F32x16(_mm512_abs_ps(self.0))
    }
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn round(self) -> Self {
        F32x16(_mm512_roundscale_ps::<
            { _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC },
        >(self.0))
    }
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn pow2i(self) -> Self {
        let biased = _mm512_add_epi32(_mm512_cvtps_epi32(self.0), _mm512_set1_epi32(127));
        F32x16(_mm512_castsi512_ps(_mm512_slli_epi32::<23>(biased)))
    }
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn select_lt(self, o: Self, a: Self, b: Self) -> Self {
        F32x16(_mm512_mask_blend_ps(
            _mm512_cmp_ps_mask::<_CMP_LT_OQ>(self.0, o.0),
            b.0,
            a.0,
        ))
    }
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn select_eq(self, o: Self, a: Self, b: Self) -> Self {
        F32x16(_mm512_mask_blend_ps(
            _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(self.0, o.0),
            b.0,
            a.0,
        ))
    }
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn reduce_add(self) -> f32 {
        _mm512_reduce_add_ps(self.0)
    }
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn reduce_max(self) -> f32 {
        _mm512_reduce_max_ps(self.0)
    }
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn load_bf16_pairs(p: *const u32) -> (Self, Self) {
        let w = _mm512_loadu_si512(p.cast());
        (
            F32x16(_mm512_castsi512_ps(_mm512_slli_epi32::<16>(w))),
            F32x16(_mm512_castsi512_ps(_mm512_and_si512(
                w,
                _mm512_set1_epi32(0xFFFF_0000_u32 as i32),
            ))),
        )
    }

    // One instruction instead of the two-step default.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn mul_pow2(self, n: Self) -> Self {
        F32x16(_mm512_scalef_ps(self.0, n.0))
    }

    // Masked moves instead of the generic bounce buffer.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn load_partial(p: *const f32, n: usize, fill: f32) -> Self {
        debug_assert!(n < 16);
        F32x16(_mm512_mask_loadu_ps(
            _mm512_set1_ps(fill),
            (1u16 << n) - 1,
            p,
        ))
    }
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn store_partial(self, p: *mut f32, n: usize) {
        debug_assert!(n < 16);
        _mm512_mask_storeu_ps(p, (1u16 << n) - 1, self.0)
    }
}
