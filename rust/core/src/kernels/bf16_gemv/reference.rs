//! Plain references: bf16 rounding by f64 arithmetic (no bit tricks), and
//! the product with its error bound, summed in f64.

use crate::kernels::gemm::MatRef;

/// x rounded to bf16 (8 significant bits, f32's exponent range), ties to
/// even, by scaling to an integer count of ulps in f64: values at or past
/// 2¹²⁸ after rounding are ±inf, NaN stays NaN.
pub(super) fn round_to_bf16(x: f32) -> f32 {
    if x.is_nan() || x.is_infinite() || x == 0.0 {
        return x;
    }
    let v = x as f64;
    // The exponent of |x| (exact: f64 holds every f32 as a normal number),
    // not below f32's smallest normal exponent: subnormals share its ulp.
    let e = (((v.to_bits() >> 52) & 0x7FF) as i32 - 1023).max(-126);
    let ulp = 2f64.powi(e - 7);
    let rounded = (v / ulp).round_ties_even() * ulp;
    if rounded.abs() >= 2f64.powi(128) {
        return f32::INFINITY.copysign(x);
    }
    // Exact: 8 significant bits within f32's range.
    let r = rounded as f32;
    // A value below half bf16's smallest subnormal (2⁻¹³³) rounds to a
    // zero of its own sign.
    r.copysign(x)
}

/// The exact product (in f64) of x [M×K] and the bf16 weight `w` [N×K]
/// (already rounded, row-major), and for each element the bound the kernel
/// must meet: γ_K·Σ|x·w| + K·2⁻¹⁴⁸, plus the f64 sum's own rounding.
pub(super) fn gemv(x: MatRef, w: &[f32], n: usize) -> (Vec<f64>, Vec<f64>) {
    let (m, k) = (x.rows, x.cols);
    let u = 2f64.powi(-24);
    let gamma = k as f64 * u / (1.0 - k as f64 * u);
    let gamma64 = k as f64 * 2f64.powi(-53) / (1.0 - k as f64 * 2f64.powi(-53));
    let mut exact = vec![0.0; m * n];
    let mut bound = vec![0.0; m * n];
    for r in 0..m {
        for j in 0..n {
            let (mut sum, mut mag) = (0.0f64, 0.0f64);
            for p in 0..k {
                // An f32 × f32 product is exact in f64.
                let t = x.at(r, p) as f64 * w[j * k + p] as f64;
                sum += t;
                mag += t.abs();
            }
            exact[r * n + j] = sum;
            bound[r * n + j] = (gamma + 2.0 * gamma64) * mag + k as f64 * 2f64.powi(-148);
        }
    }
    (exact, bound)
}
