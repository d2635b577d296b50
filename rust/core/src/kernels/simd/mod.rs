//! Portable f32 vector layer for the element-wise and row kernels (softmax,
//! layer norm, activations, attention) and the GEMM micro-kernels.
//!
//! Each kernel is written once, generic over [`F32Vec`], and instantiated per
//! ISA inside a `#[target_feature]` function by [`isa_kernel!`]:
//! `f32` itself (one lane, the scalar path), AVX2+FMA `F32x8`, AVX-512F
//! `F32x16` and NEON `F32x4`. The generic bodies are `#[inline(always)]` and
//! the vector methods `#[inline]`, so after inlining every intrinsic sits in a
//! function compiled for its ISA.

pub(crate) mod math;
mod scalar;

#[cfg(target_arch = "aarch64")]
pub(crate) mod neon;
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86;

/// A vector of `LANES` f32 values.
///
/// # Safety
/// Every method is `unsafe` because the SIMD implementations are
/// `#[target_feature]` functions: the caller guarantees that the CPU supports
/// the ISA of `Self` (checked once by `Isa::is_available` before entering an
/// [`isa_kernel!`] function). Pointer methods additionally need `LANES`
/// readable (`load`) or writable (`store`) f32 values at the pointer, `n`
/// of them for the `_partial` forms, or those of the given lanes for the
/// `_lanes` forms.
pub(crate) trait F32Vec: Copy {
    const LANES: usize;

    unsafe fn splat(v: f32) -> Self;
    unsafe fn load(p: *const f32) -> Self;
    unsafe fn store(self, p: *mut f32);
    unsafe fn add(self, o: Self) -> Self;
    unsafe fn sub(self, o: Self) -> Self;
    unsafe fn mul(self, o: Self) -> Self;
    unsafe fn div(self, o: Self) -> Self;
    /// `self · b + c`, fused (one rounding) where the ISA has FMA.
    unsafe fn mul_add(self, b: Self, c: Self) -> Self;
    /// The rounding error of the product, `self·o - fl(self·o)`, exactly.
    unsafe fn mul_err(self, o: Self) -> Self;
    unsafe fn max(self, o: Self) -> Self;
    unsafe fn min(self, o: Self) -> Self;
    unsafe fn abs(self) -> Self;
    /// Round to the nearest integer, ties to even (for |self| < 2²², all
    /// this crate needs).
    unsafe fn round(self) -> Self;
    /// 2ⁿ for lanes holding integral n in [-126, 127].
    unsafe fn pow2i(self) -> Self;
    /// self·2ⁿ for lanes of n integral in [-160, 128] and self in [0.5, 2]
    /// (as in exp), rounded once: the result may be subnormal, 0 or +inf.
    #[inline(always)]
    unsafe fn mul_pow2(self, n: Self) -> Self {
        // Two factors, each a normal power of two within `pow2i`'s range.
        let half = n.mul(Self::splat(0.5)).round();
        self.mul(half.pow2i()).mul(n.sub(half).pow2i())
    }
    /// Lane-wise `if self < o { a } else { b }` (false for NaN).
    unsafe fn select_lt(self, o: Self, a: Self, b: Self) -> Self;
    /// Lane-wise `if self == o { a } else { b }`.
    unsafe fn select_eq(self, o: Self, a: Self, b: Self) -> Self;
    unsafe fn reduce_add(self) -> f32;
    unsafe fn reduce_max(self) -> f32;

    /// Loads LANES u32 words at p, each holding two bf16 values, and
    /// returns (low halves, high halves) as f32:
    /// `(f32::from_bits(w << 16), f32::from_bits(w & 0xFFFF_0000))` per
    /// lane. Needs LANES readable u32 at `p` (no alignment required).
    unsafe fn load_bf16_pairs(p: *const u32) -> (Self, Self);

    /// Hints that the cache line holding `p` is about to be used. A hint
    /// only: `p` may be any address (it is never dereferenced). Default:
    /// nothing, for ISAs without a prefetch instruction worth issuing.
    #[inline(always)]
    unsafe fn prefetch(_p: *const f32) {}

    /// Loads the first `n < LANES` values at `p`; the other lanes hold `fill`.
    #[inline(always)]
    unsafe fn load_partial(p: *const f32, n: usize, fill: f32) -> Self {
        debug_assert!(n < Self::LANES && Self::LANES <= MAX_LANES);
        let mut buf = [fill; MAX_LANES];
        std::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), n);
        Self::load(buf.as_ptr())
    }

    /// Whether [`F32Vec::load_lanes`] and [`F32Vec::store_lanes`] are single
    /// masked instructions (AVX-512): a kernel can then start its vectors at
    /// a cache-line boundary and mask off the lanes outside its data, rather
    /// than have every load straddle two lines.
    const MASKED: bool = false;

    /// Lanes `lanes` of the vector at `p` (`p + lane` for each), the others
    /// 0. Reads no other address: with [`F32Vec::MASKED`], the rest of the
    /// vector may lie outside any allocation. `lanes.end ≤ LANES`.
    #[inline(always)]
    unsafe fn load_lanes(p: *const f32, lanes: std::ops::Range<usize>) -> Self {
        debug_assert!(lanes.end <= Self::LANES && Self::LANES <= MAX_LANES);
        let mut buf = [0.0f32; MAX_LANES];
        for lane in lanes {
            buf[lane] = *p.wrapping_add(lane);
        }
        Self::load(buf.as_ptr())
    }

    /// Stores lanes `lanes` of `self` at `p + lane`; writes no other address.
    /// `lanes.end ≤ LANES`.
    #[inline(always)]
    unsafe fn store_lanes(self, p: *mut f32, lanes: std::ops::Range<usize>) {
        debug_assert!(lanes.end <= Self::LANES && Self::LANES <= MAX_LANES);
        let mut buf = [0.0f32; MAX_LANES];
        self.store(buf.as_mut_ptr());
        for lane in lanes {
            *p.wrapping_add(lane) = buf[lane];
        }
    }

    /// The lane permutation [`F32Vec::concat_shifted`] applies for `shift`
    /// (< LANES), prepared once for a loop of them.
    #[inline(always)]
    unsafe fn shift_index(shift: usize) -> Self {
        Self::splat(shift as f32)
    }

    /// LANES consecutive values of `lo` followed by `hi`, from lane
    /// `shift` of `lo` on (`index` = `shift_index(shift)`): the vector
    /// starting `shift` lanes past `lo`'s, built from two whole-line
    /// vectors. One permute with [`F32Vec::MASKED`] (AVX-512); elsewhere
    /// through memory, correct but slow (kernels use it only when MASKED).
    #[inline(always)]
    unsafe fn concat_shifted(lo: Self, hi: Self, index: Self) -> Self {
        let mut buf = [0.0f32; 2 * MAX_LANES];
        index.store(buf.as_mut_ptr());
        let shift = buf[0] as usize;
        lo.store(buf.as_mut_ptr());
        hi.store(buf.as_mut_ptr().add(Self::LANES));
        Self::load(buf.as_ptr().add(shift))
    }

    /// Stores the first `n < LANES` lanes at `p`.
    #[inline(always)]
    unsafe fn store_partial(self, p: *mut f32, n: usize) {
        debug_assert!(n < Self::LANES && Self::LANES <= MAX_LANES);
        let mut buf = [0.0f32; MAX_LANES];
        self.store(buf.as_mut_ptr());
        std::ptr::copy_nonoverlapping(buf.as_ptr(), p, n);
    }
}

/// The widest vector (AVX-512: 16 lanes).
const MAX_LANES: usize = 16;

/// Defines `unsafe fn $name(isa: Isa, args..)` that runs the generic kernel
/// `$generic::<V>(args..)` with `V` the vector type of `isa`, each
/// instantiation compiled inside a `#[target_feature]` function.
///
/// Safety contract of the generated function: `isa.is_available()`.
macro_rules! isa_kernel {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? = $generic:ident) => {
        $(#[$meta])*
        /// # Safety
        /// `isa.is_available()` must hold.
        $vis unsafe fn $name(isa: $crate::kernels::dispatch::Isa, $($arg: $ty),*) $(-> $ret)? {
            use $crate::kernels::dispatch::Isa;
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                $generic::<$crate::kernels::simd::x86::F32x8>($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx2,fma")]
            unsafe fn avx512($($arg: $ty),*) $(-> $ret)? {
                $generic::<$crate::kernels::simd::x86::F32x16>($($arg),*)
            }
            #[cfg(target_arch = "aarch64")]
            #[target_feature(enable = "neon")]
            unsafe fn neon($($arg: $ty),*) $(-> $ret)? {
                $generic::<$crate::kernels::simd::neon::F32x4>($($arg),*)
            }
            match isa {
                Isa::Scalar => $generic::<f32>($($arg),*),
                #[cfg(target_arch = "x86_64")]
                Isa::Avx2 => avx2($($arg),*),
                #[cfg(target_arch = "x86_64")]
                Isa::Avx512 => avx512($($arg),*),
                #[cfg(target_arch = "aarch64")]
                Isa::Neon => neon($($arg),*),
                #[allow(unreachable_patterns)]
                other => unreachable!("{} kernels do not exist on this architecture", other.name()),
            }
        }
    };
}
pub(crate) use isa_kernel;

/// Asserts that this CPU runs `isa`, the precondition of every
/// [`isa_kernel!`] function; `what` names the caller in the panic message.
pub(crate) fn assert_available(isa: crate::kernels::dispatch::Isa, what: &str) {
    assert!(
        isa.is_available(),
        "{what}: this CPU cannot run {} kernels",
        isa.name()
    );
}

/// Below this many elements a row-wise kernel runs on the calling thread:
/// splitting smaller jobs costs more than it saves.
const PAR_MIN_ELEMS: usize = 1 << 15;

/// Hints that the cache line holding `p` will be read soon (x86-64:
/// PREFETCHT0, part of the baseline ISA, so any code may call it; elsewhere
/// nothing). A hint only: `p` may be any address. The x86 vectors'
/// [`F32Vec::prefetch`] is this.
#[inline(always)]
pub(crate) fn prefetch_line(p: *const f32) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE is part of x86-64, and a prefetch never dereferences its
    // address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Calls `f` on every row of x [R×n] (row-major), rows in parallel on the
/// current rayon pool when x is large. Panics unless n divides x.len()
/// (n = 0 is accepted only for an empty x).
pub(crate) fn for_each_row(x: &mut [f32], n: usize, f: impl Fn(&mut [f32]) + Sync + Send) {
    if x.is_empty() {
        return;
    }
    assert!(
        n > 0 && x.len().is_multiple_of(n),
        "row length {n} does not divide {} elements",
        x.len()
    );
    if x.len() < PAR_MIN_ELEMS || x.len() == n {
        x.chunks_exact_mut(n).for_each(f);
    } else {
        use rayon::prelude::*;
        // About PAR_MIN_ELEMS elements per task.
        let rows_per_task = (PAR_MIN_ELEMS / n).max(1);
        x.par_chunks_exact_mut(n)
            .with_min_len(rows_per_task)
            .for_each(f);
    }
}

/// Calls `f` on consecutive chunks covering x (for element-wise kernels): one
/// call for small x, chunks of about PAR_MIN_ELEMS in parallel for large x.
pub(crate) fn for_each_chunk(x: &mut [f32], f: impl Fn(&mut [f32]) + Sync + Send) {
    if x.len() < 2 * PAR_MIN_ELEMS {
        f(x);
    } else {
        use rayon::prelude::*;
        x.par_chunks_mut(PAR_MIN_ELEMS).for_each(f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::dispatch;

    isa_kernel! {
        fn lanes() -> usize = lanes_generic
    }

    isa_kernel! {
        fn concat_shifted_of(x: &[f32], shift: usize, out: &mut [f32]) = concat_shifted_generic
    }

    #[inline(always)]
    unsafe fn lanes_generic<V: F32Vec>() -> usize {
        V::LANES
    }

    /// out[..LANES] = `concat_shifted` of the vectors at x[0] and x[LANES].
    #[inline(always)]
    unsafe fn concat_shifted_generic<V: F32Vec>(x: &[f32], shift: usize, out: &mut [f32]) {
        assert!(x.len() >= 2 * V::LANES && out.len() >= V::LANES);
        // SAFETY: the ISA is the caller's; x holds two vectors, out one.
        unsafe {
            let (lo, hi) = (V::load(x.as_ptr()), V::load(x.as_ptr().add(V::LANES)));
            V::concat_shifted(lo, hi, V::shift_index(shift)).store(out.as_mut_ptr());
        }
    }

    #[test]
    fn concat_shifted_is_the_vector_shift_lanes_on() {
        let x: Vec<f32> = (0..2 * MAX_LANES).map(|i| i as f32 - 7.5).collect();
        for isa in dispatch::available() {
            // SAFETY: `available()` only lists ISAs this CPU runs.
            let w = unsafe { lanes(isa) };
            for shift in 0..w {
                let mut out = vec![f32::NAN; w];
                // SAFETY: as above.
                unsafe { concat_shifted_of(isa, &x, shift, &mut out) };
                assert_eq!(out, x[shift..][..w], "{} shift {shift}", isa.name());
            }
        }
    }
}
