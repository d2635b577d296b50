//! Vector exp and GELU (via erfc), generic over [`F32Vec`].
//!
//! The polynomial coefficients were fitted for this crate (weighted least
//! squares iterated towards minimax relative error, against 30-digit mpmath
//! values), then rounded to f32.

use super::F32Vec;

/// eˣ < 2⁻¹⁵⁰ below this (so exactly 0 after rounding) and > f32::MAX above
/// that (+inf); clamping there keeps n = round(x/ln2) within `mul_pow2`'s range.
const EXP_LO: f32 = -110.0;
const EXP_HI: f32 = 89.0;
/// eˣ < 2⁻¹⁵⁰ here too (e^-103.97 = 2⁻¹⁵⁰): [`exp`] gives these lanes 0
/// without computing them.
const EXP_ZERO_BELOW: f32 = -104.0;
/// ln 2 split so that n·LN2_HI is exact for |n| ≤ 160 (LN2_HI has 9 bits).
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// eʳ ≈ 1 + r + r²·P(r) on |r| ≤ ln2/2; P ascending. Max relative error of
/// the fit 6e-11; of the f32 evaluation ≈ 1e-7.
const EXP_P: [f32; 6] = [
    0.5,
    0.166_666_66,
    0.041_666_27,
    0.008_333_43,
    0.001_394_603_2,
    0.000_198_264_93,
];

/// eˣ lane-wise: relative error ≲ 1e-7 for normal results, correctly
/// (gradually) underflowing to 0 (also for -inf) and overflowing to +inf.
///
/// Lanes below [`EXP_ZERO_BELOW`] (a softmax's masked -inf scores, the lanes
/// past the end of a row's last vector) are worked out from 0 instead and
/// set to 0: computed, their result would underflow, and on x86 every
/// instruction whose result underflows takes a microcode assist (~150
/// cycles). AVX-512, one core: softmax of a row of 8 or 19 scores 310 →
/// 170 cycles (all-MiniLM-L6-v2 at batch 32, one thread: softmax 3.8% →
/// 2.4% of the profile); the two selects cost ~10% on rows without such
/// lanes (32 scores: 69 → 76 cycles).
#[inline(always)]
pub(crate) unsafe fn exp<V: F32Vec>(x: V) -> V {
    let (zero, below) = (V::splat(0.0), V::splat(EXP_ZERO_BELOW));
    let e = exp_from_zero_limit(x.select_lt(below, zero, x));
    x.select_lt(below, zero, e)
}

/// [`exp`] of lanes at or above [`EXP_ZERO_BELOW`] (or NaN).
#[inline(always)]
unsafe fn exp_from_zero_limit<V: F32Vec>(x: V) -> V {
    let xc = x.max(V::splat(EXP_LO)).min(V::splat(EXP_HI));
    // eˣ = 2ⁿ·eʳ with n = round(x/ln2), r = x - n·ln2 in [-ln2/2, ln2/2].
    let n = xc.mul(V::splat(std::f32::consts::LOG2_E)).round();
    let r = n.mul_add(V::splat(-LN2_HI), xc);
    let r = n.mul_add(V::splat(-LN2_LO), r);
    let p = horner(r, &EXP_P);
    r.mul(r).mul_add(p, r).add(V::splat(1.0)).mul_pow2(n)
}

/// erfc(y)·e^{y²}/t ≈ Q(t) with t = 1/(1 + y/2), for y in [0, 10.2]
/// (t in [0.164, 1]); Q ascending. Max relative error of the fit 2.1e-8.
const ERFCX_Q: [f32; 10] = [
    0.282_065_9,
    0.282_827_88,
    0.238_904_04,
    0.224_260_17,
    -0.094_422_27,
    0.413_705_23,
    -0.660_589_93,
    0.421_636,
    -0.120_071_47,
    0.011_684_474,
];
/// |x| beyond which Φ(-|x|) underflows in f32 anyway; clamping keeps x² finite.
const GELU_CLAMP: f32 = 20.0;

/// GELU(x) = x·Φ(x) lane-wise, the exact (erf) form.
///
/// Computed through erfc so the negative tail keeps its relative accuracy:
/// with y = |x|/√2, erfc(y) = t·Q(t)·e^{-y²}; then GELU(x) = ½x·erfc(y) for
/// x < 0 and x - ½x·erfc(y) for x ≥ 0. y² = x²/2 is formed from the exact
/// split x² = hi + lo ([`F32Vec::mul_err`]), because e^{-y²} magnifies an error in y² by y².
/// Measured relative error ≲ 5e-7 wherever |GELU(x)| > 1e-30 (4.7e-7 on a
/// grid of 2·10⁶ points over [-13, 13]).
#[inline(always)]
pub(crate) unsafe fn gelu<V: F32Vec>(x: V) -> V {
    let one = V::splat(1.0);
    let xc = x.max(V::splat(-GELU_CLAMP)).min(V::splat(GELU_CLAMP));
    let y = xc.abs().mul(V::splat(std::f32::consts::FRAC_1_SQRT_2));
    let t = one.div(y.mul_add(V::splat(0.5), one));
    let q = estrin(t, &ERFCX_Q);
    let (sq_hi, sq_lo) = (xc.mul(xc), xc.mul_err(xc));
    // e^{-(hi+lo)/2} ≈ e^{-hi/2}·(1 - lo/2), lo/2 being below half an ulp of hi.
    let e = exp(sq_hi.mul(V::splat(-0.5)));
    let e = sq_lo.mul(V::splat(-0.5)).mul_add(e, e);
    let erfc = t.mul(q).mul(e);
    // From the clamped xc: past the clamp erfc is 0, and ±inf·0 would be NaN.
    let tail = xc.mul(V::splat(0.5)).mul(erfc);
    x.select_lt(V::splat(0.0), tail, x.sub(tail))
}

/// c[0] + c[1]·x + … + c[n]·xⁿ by Estrin's scheme: pairs c[i] + c[i+1]·x,
/// then pairs of those with x², x⁴, ...: 4 multiply-adds deep for GELU's
/// degree 9 where Horner's rule is 9, so a vector's GELU waits less on its
/// own chain (one core, 4096 values in L1: 43 → 35.5 cycles per 16 lanes,
/// load and store included; max relative error 4.5e-7 → 4.7e-7). Horner
/// stays for exp's degree 5, as fast either way and a little more exact.
#[inline(always)]
unsafe fn estrin<V: F32Vec, const N: usize>(x: V, c: &[f32; N]) -> V {
    let mut terms: [V; N] = [V::splat(0.0); N];
    let mut len = N.div_ceil(2);
    for i in 0..len {
        terms[i] = if 2 * i + 1 < N {
            V::splat(c[2 * i + 1]).mul_add(x, V::splat(c[2 * i]))
        } else {
            V::splat(c[2 * i])
        };
    }
    let mut power = x.mul(x);
    while len > 1 {
        let half = len.div_ceil(2);
        for i in 0..half {
            terms[i] = if 2 * i + 1 < len {
                terms[2 * i + 1].mul_add(power, terms[2 * i])
            } else {
                terms[2 * i]
            };
        }
        len = half;
        if len > 1 {
            power = power.mul(power);
        }
    }
    terms[0]
}

/// c[0] + c[1]·x + … + c[n]·xⁿ by Horner's rule.
#[inline(always)]
unsafe fn horner<V: F32Vec>(x: V, c: &[f32]) -> V {
    let mut acc = V::splat(c[c.len() - 1]);
    for &ci in c[..c.len() - 1].iter().rev() {
        acc = acc.mul_add(x, V::splat(ci));
    }
    acc
}

/// z ← e^{z - max} in place, returning Σ e^{z - max}: the middle pass of
/// every softmax (`max` finite, each z ≤ max or -inf, which gives 0).
///
/// # Safety
/// `V`'s ISA is available.
#[inline(always)]
pub(crate) unsafe fn exp_sub_sum<V: F32Vec>(z: &mut [f32], max: f32) -> f32 {
    let n = z.len();
    let (w, p) = (V::LANES, z.as_mut_ptr());
    let full = n - n % w;
    let rem = n - full;
    // SAFETY: the ISA is available (caller); loads and stores stay inside z.
    unsafe {
        let vm = V::splat(max);
        let mut vsum = V::splat(0.0);
        for i in (0..full).step_by(w) {
            let e = exp(V::load(p.add(i)).sub(vm));
            e.store(p.add(i));
            vsum = vsum.add(e);
        }
        if rem > 0 {
            let e = exp(V::load_partial(p.add(full), rem, f32::NEG_INFINITY).sub(vm));
            e.store_partial(p.add(full), rem);
            vsum = vsum.add(e);
        }
        vsum.reduce_add()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::dispatch;
    use crate::kernels::simd::isa_kernel;

    isa_kernel! {
        fn exp_slice(x: &mut [f32]) = exp_slice_generic
    }

    /// Whole vectors only: the test lengths are multiples of 16.
    #[inline(always)]
    unsafe fn exp_slice_generic<V: F32Vec>(x: &mut [f32]) {
        for c in x.chunks_exact_mut(V::LANES) {
            exp(V::load(c.as_ptr())).store(c.as_mut_ptr());
        }
    }

    #[test]
    fn exp_relative_error_below_2e7_for_normal_results() {
        let (lo, hi) = (-87.33f32, 88.72f32);
        let n = 1 << 16;
        let x: Vec<f32> = (0..n)
            .map(|i| lo + (hi - lo) * i as f32 / (n - 1) as f32)
            .collect();
        for isa in dispatch::available() {
            let mut y = x.clone();
            // SAFETY: `available()` only lists ISAs this CPU runs.
            unsafe { exp_slice(isa, &mut y) };
            let worst = x
                .iter()
                .zip(&y)
                .map(|(&x, &y)| {
                    let want = (x as f64).exp();
                    (y as f64 - want).abs() / want
                })
                .fold(0.0, f64::max);
            assert!(worst < 2e-7, "{isa:?}: max relative error {worst:e}");
        }
    }

    #[test]
    fn exp_edges() {
        let mut x = vec![0.0; 16];
        let edges = [
            0.0,
            f32::NEG_INFINITY,
            -1e30,
            -104.0,
            88.8,
            1e30,
            f32::INFINITY,
            -95.0,
            -88.0,
            1.0,
        ];
        x[..edges.len()].copy_from_slice(&edges);
        for isa in dispatch::available() {
            let mut y = x.clone();
            // SAFETY: `available()` only lists ISAs this CPU runs.
            unsafe { exp_slice(isa, &mut y) };
            assert_eq!(
                &y[..7],
                &[
                    1.0,
                    0.0,
                    0.0,
                    0.0,
                    f32::INFINITY,
                    f32::INFINITY,
                    f32::INFINITY
                ],
                "{isa:?}"
            );
            // Subnormal results: within half a subnormal step (plus the
            // relative error) of the truth.
            for j in 7..10 {
                let want = (x[j] as f64).exp();
                let err = (y[j] as f64 - want).abs();
                assert!(
                    err <= 0.5 * 1.4013e-45 + 2e-7 * want,
                    "{isa:?}: exp({}) = {:e}",
                    x[j],
                    y[j]
                );
            }
        }
    }
}
