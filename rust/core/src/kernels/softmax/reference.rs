//! Plain f64 softmax and log-softmax with the module's edge semantics.

/// softmax(scale·x + mask) in f64: masked (-inf mask) positions are 0; no
/// position above -inf → zeros.
pub(super) fn softmax(x: &[f32], scale: f32, mask: Option<&[f32]>) -> Vec<f64> {
    let z: Vec<f64> = x
        .iter()
        .enumerate()
        .map(|(j, &v)| {
            let m = mask.map_or(0.0, |m| m[j] as f64);
            if m == f64::NEG_INFINITY {
                m
            } else {
                v as f64 * scale as f64 + m
            }
        })
        .collect();
    let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if max == f64::NEG_INFINITY {
        return vec![0.0; x.len()];
    }
    let e: Vec<f64> = z.iter().map(|&v| (v - max).exp()).collect();
    let sum: f64 = e.iter().sum();
    e.iter().map(|v| v / sum).collect()
}

pub(super) fn log_softmax(x: &[f32]) -> Vec<f64> {
    let max = x
        .iter()
        .map(|&v| v as f64)
        .fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = x.iter().map(|&v| (v as f64 - max).exp()).sum();
    x.iter().map(|&v| v as f64 - max - sum.ln()).collect()
}
