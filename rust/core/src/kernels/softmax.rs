//! Row softmax and log-softmax, numerically stable, with scale and additive
//! mask fused. PLACEHOLDER BODIES (scalar) until the SIMD versions land.

/// x ← softmax(scale·x + mask) over one row. `mask` (same length) is
/// additive: 0 keeps, -inf drops. A row with no finite entry (every position
/// masked) becomes all zeros instead of NaN.
pub fn softmax_row(x: &mut [f32], scale: f32, mask: Option<&[f32]>) {
    if let Some(m) = mask {
        assert_eq!(m.len(), x.len(), "softmax_row: mask length");
    }
    for (j, v) in x.iter_mut().enumerate() {
        *v = *v * scale + mask.map_or(0.0, |m| m[j]);
    }
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        x.fill(0.0);
        return;
    }
    let mut sum = 0.0;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in x.iter_mut() {
        *v /= sum;
    }
}

/// x ← log_softmax(x) over one row.
pub fn log_softmax_row(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = x.iter().map(|v| (v - max).exp()).sum();
    let lse = max + sum.ln();
    for v in x.iter_mut() {
        *v -= lse;
    }
}
