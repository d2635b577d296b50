//! Plain f64 layer norm (two-pass, biased variance).

pub(super) fn layer_norm(x: &[f32], gamma: &[f32], beta: &[f32], eps: f32) -> Vec<f64> {
    let n = x.len() as f64;
    let mean = x.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    let inv = 1.0 / (var + eps as f64).sqrt();
    x.iter()
        .zip(gamma)
        .zip(beta)
        .map(|((&v, &g), &b)| (v as f64 - mean) * inv * g as f64 + b as f64)
        .collect()
}
