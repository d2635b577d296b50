//! One-lane "vector": the scalar path runs the same generic kernels, so every
//! ISA computes the same formulas (same exp/erfc polynomials), differing only
//! in rounding order.

use super::F32Vec;

impl F32Vec for f32 {
    const LANES: usize = 1;

    #[inline(always)]
    unsafe fn splat(v: f32) -> Self {
        v
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        *p
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        *p = self;
    }
    #[inline(always)]
    unsafe fn add(self, o: Self) -> Self {
        self + o
    }
    #[inline(always)]
    unsafe fn sub(self, o: Self) -> Self {
        self - o
    }
    #[inline(always)]
    unsafe fn mul(self, o: Self) -> Self {
        self * o
    }
    #[inline(always)]
    unsafe fn div(self, o: Self) -> Self {
        self / o
    }
    #[inline(always)]
    unsafe fn mul_add(self, b: Self, c: Self) -> Self {
        // Unfused: `f32::mul_add` is a slow libm call on baseline x86-64,
        // and the extra rounding stays within every kernel's tolerance.
        self * b + c
    }
    #[inline(always)]
    unsafe fn mul_err(self, o: Self) -> Self {
        // An f32 × f32 product is exact in f64.
        (self as f64 * o as f64 - (self * o) as f64) as f32
    }
    #[inline(always)]
    unsafe fn max(self, o: Self) -> Self {
        if self > o {
            self
        } else {
            o
        }
    }
    #[inline(always)]
    unsafe fn min(self, o: Self) -> Self {
        if self < o {
            self
        } else {
            o
        }
    }
    #[inline(always)]
    unsafe fn abs(self) -> Self {
        f32::abs(self)
    }
    #[inline(always)]
    unsafe fn round(self) -> Self {
        // Adding 1.5·2²³ pushes the fraction bits out (the FPU rounds to
        // nearest even); baseline x86-64 has no round instruction, and
        // `round_ties_even` would be a libm call.
        const MAGIC: f32 = 12_582_912.0;
        (self + MAGIC) - MAGIC
    }
    #[inline(always)]
    unsafe fn pow2i(self) -> Self {
        f32::from_bits(((self as i32 + 127) as u32) << 23)
    }
    #[inline(always)]
    unsafe fn select_lt(self, o: Self, a: Self, b: Self) -> Self {
        if self < o {
            a
        } else {
            b
        }
    }
    #[inline(always)]
    unsafe fn select_eq(self, o: Self, a: Self, b: Self) -> Self {
        if self == o {
            a
        } else {
            b
        }
    }
    #[inline(always)]
    unsafe fn reduce_add(self) -> f32 {
        self
    }
    #[inline(always)]
    unsafe fn reduce_max(self) -> f32 {
        self
    }
    #[inline(always)]
    unsafe fn load_bf16_pairs(p: *const u32) -> (Self, Self) {
        let w = *p;
        (f32::from_bits(w << 16), f32::from_bits(w & 0xFFFF_0000))
    }
}
