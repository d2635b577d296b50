//! Vector exp and GELU (via erfc), generic over [`F32Vec`].
//!
//! The polynomial coefficients were fitted for this crate (weighted least
//! squares iterated towards minimax relative error, against 30-digit mpmath
//! values), then rounded to f32.

use super::F32Vec;

/// Below this, eˣ is subnormal (< f32::MIN_POSITIVE): we return 0.
const EXP_LO: f32 = -87.336_54;
/// Above this, 2ⁿ of the range reduction would overflow: we return +inf
/// (eˣ ≥ 2.4e38 here, near f32::MAX).
const EXP_HI: f32 = 88.376_2;
/// ln 2 split so that n·LN2_HI is exact for |n| ≤ 127 (LN2_HI has 9 bits).
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

/// eˣ lane-wise, relative error ≲ 1.5e-7 for x in [EXP_LO, EXP_HI];
/// 0 below (including -inf), +inf above.
#[inline(always)]
pub(crate) unsafe fn exp<V: F32Vec>(x: V) -> V {
    let xc = x.max(V::splat(EXP_LO)).min(V::splat(EXP_HI));
    // eˣ = 2ⁿ·eʳ with n = round(x/ln2), r = x - n·ln2 in [-ln2/2, ln2/2].
    let n = xc.mul(V::splat(std::f32::consts::LOG2_E)).round();
    let r = n.mul_add(V::splat(-LN2_HI), xc);
    let r = n.mul_add(V::splat(-LN2_LO), r);
    let p = horner(r, &EXP_P);
    let er = r.mul(r).mul_add(p, r).add(V::splat(1.0));
    let y = er.mul(n.pow2i());
    let y = x.select_lt(V::splat(EXP_LO), V::splat(0.0), y);
    V::splat(EXP_HI).select_lt(x, V::splat(f32::INFINITY), y)
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
/// split x² = hi + lo (FMA), because e^{-y²} magnifies an error in y² by y².
/// Measured relative error ≲ 4e-7 wherever |GELU(x)| > 1e-30.
#[inline(always)]
pub(crate) unsafe fn gelu<V: F32Vec>(x: V) -> V {
    let one = V::splat(1.0);
    let xc = x.max(V::splat(-GELU_CLAMP)).min(V::splat(GELU_CLAMP));
    let y = xc.abs().mul(V::splat(std::f32::consts::FRAC_1_SQRT_2));
    let t = one.div(y.mul_add(V::splat(0.5), one));
    let q = horner(t, &ERFCX_Q);
    let sq_hi = xc.mul(xc);
    let sq_lo = xc.mul_add(xc, V::splat(0.0).sub(sq_hi));
    // e^{-(hi+lo)/2} ≈ e^{-hi/2}·(1 - lo/2), lo/2 being below half an ulp of hi.
    let e = exp(sq_hi.mul(V::splat(-0.5)));
    let e = sq_lo.mul(V::splat(-0.5)).mul_add(e, e);
    let erfc = t.mul(q).mul(e);
    let tail = x.mul(V::splat(0.5)).mul(erfc);
    x.select_lt(V::splat(0.0), tail, x.sub(tail))
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
    fn exp_relative_error_below_2e7_over_its_range() {
        let n = 1 << 16;
        let x: Vec<f32> = (0..n)
            .map(|i| EXP_LO + (EXP_HI - EXP_LO) * i as f32 / (n - 1) as f32)
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
        x[..8].copy_from_slice(&[0.0, f32::NEG_INFINITY, -1e30, -88.0, 89.0, 1e30, -87.0, 1.0]);
        for isa in dispatch::available() {
            let mut y = x.clone();
            // SAFETY: `available()` only lists ISAs this CPU runs.
            unsafe { exp_slice(isa, &mut y) };
            assert_eq!(
                &y[..6],
                &[1.0, 0.0, 0.0, 0.0, f32::INFINITY, f32::INFINITY],
                "{isa:?}"
            );
            assert!(
                ((y[6] as f64) / (-87f64).exp() - 1.0).abs() < 2e-7,
                "{isa:?}: {}",
                y[6]
            );
            assert!(
                ((y[7] as f64) / 1f64.exp() - 1.0).abs() < 2e-7,
                "{isa:?}: {}",
                y[7]
            );
        }
    }
}
