//! AArch64 vectors: [`F32x4`] (NEON, Advanced SIMD).
//!
//! Every method is a `#[target_feature]` function; see the `# Safety`
//! contract of [`F32Vec`].

use std::arch::aarch64::*;

use super::F32Vec;

/// Four f32 lanes in a `float32x4_t`.
#[derive(Clone, Copy)]
pub(crate) struct F32x4(float32x4_t);

impl F32Vec for F32x4 {
    const LANES: usize = 4;

    #[inline]
    #[target_feature(enable = "neon")]
    unsafe fn splat(v: f32) -> Self {
        F32x4(vdupq_n_f32(v))
    }
    #[inline]
    #[target_feature(enable = "neon")]
    unsafe fn load(p: *const f32) -> Self {
        F32x4(vld1q_f32(p))
    }
    #[inline]
    #[target_feature(enable = "neon")]
    unsafe fn store(self, p: *mut f32) {
        vst1q_f32(p, self.0)
    }
    #[inline]
    #[target_feature(enable = "neon")]
    unsafe fn add(self, o: Self) -> Self {
        F32x4(vaddq_f32(self.0, o.0))
    }
    #[inline]
    #[target_feature(enable = "neon")]
    unsafe fn sub(self, o: Self) -> Self {
        F32x4(vsubq_f32(self.0, o.0))
    }
    #[inline]
    #[target_feature(enable = "neon")]
    unsafe fn mul(self, o: Self) -> Self {
        F32x4(vmulq_f32(self.0, o.0))
    }
    #[inline]
    #[target_feature(enable = "neon")]
    unsafe fn div(self, o: Self) -> Self {
        F32x4(vdivq_f32(self.0, o.0))
    }
    #[inline]
    #[target_feature(enable = "neon")]
    unsafe fn mul_add(self, b: Self, c: Self) -> Self {
        // vfmaq_f32(c, a, b) = c + a·b, fused.
        F32x4(vfmaq_f32(c.0, self.0, b.0))
    }
    #[inline]
    #[target_feature(enable = "neon")]
    unsafe fn mul_err(self, o: Self) -> Self {
        // vfmsq_f32(a, b, c) = a - b·c, fused: -(fl(x·o) - x·o).
        F32x4(vnegq_f32(vfmsq_f32(vmulq_f32(self.0, o.0), self.0, o.0)))
    }
    #[inline]
    #[target_feature(enable = "neon")]
    unsafe fn max(self, o: Self) -> Self {
        F32x4(vmaxq_f32(self.0, o.0))
    }
    #[inline]
    #[target_feature(enable = "neon")]
    unsafe fn min(self, o: Self) -> Self {
        F32x4(vminq_f32(self.0, o.0))
    }
    #[inline]
    #[target_feature(enable = "neon")]
    unsafe fn abs(self) -> Self {
        F32x4(vabsq_f32(self.0))
    }
    #[inline]
    #[target_feature(enable = "neon")]
    unsafe fn round(self) -> Self {
        F32x4(vrndnq_f32(self.0))
    }
    #[inline]
    #[target_feature(enable = "neon")]
    unsafe fn pow2i(self) -> Self {
        let biased = vaddq_s32(vcvtq_s32_f32(self.0), vdupq_n_s32(127));
        F32x4(vreinterpretq_f32_s32(vshlq_n_s32::<23>(biased)))
    }
    #[inline]
    #[target_feature(enable = "neon")]
    unsafe fn select_lt(self, o: Self, a: Self, b: Self) -> Self {
        F32x4(vbslq_f32(vcltq_f32(self.0, o.0), a.0, b.0))
    }
    #[inline]
    #[target_feature(enable = "neon")]
    unsafe fn select_eq(self, o: Self, a: Self, b: Self) -> Self {
        F32x4(vbslq_f32(vceqq_f32(self.0, o.0), a.0, b.0))
    }
    #[inline]
    #[target_feature(enable = "neon")]
    unsafe fn reduce_add(self) -> f32 {
        vaddvq_f32(self.0)
    }
    #[inline]
    #[target_feature(enable = "neon")]
    unsafe fn reduce_max(self) -> f32 {
        vmaxvq_f32(self.0)
    }
    #[inline]
    #[target_feature(enable = "neon")]
    unsafe fn load_bf16_pairs(p: *const u32) -> (Self, Self) {
        let w = vld1q_u32(p);
        (
            F32x4(vreinterpretq_f32_u32(vshlq_n_u32::<16>(w))),
            F32x4(vreinterpretq_f32_u32(vandq_u32(
                w,
                vdupq_n_u32(0xFFFF_0000),
            ))),
        )
    }
}
