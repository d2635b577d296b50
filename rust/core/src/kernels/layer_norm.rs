//! Layer normalisation over one row. PLACEHOLDER BODY (scalar).

/// out = (x - mean) / sqrt(var + eps) · gamma + beta, all of length E.
pub fn layer_norm_row(x: &[f32], gamma: &[f32], beta: &[f32], eps: f32, out: &mut [f32]) {
    let n = x.len();
    assert!(
        gamma.len() == n && beta.len() == n && out.len() == n,
        "layer_norm_row: lengths"
    );
    let mean = x.iter().sum::<f32>() / n as f32;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n as f32;
    let inv = 1.0 / (var + eps).sqrt();
    for j in 0..n {
        out[j] = (x[j] - mean) * inv * gamma[j] + beta[j];
    }
}
