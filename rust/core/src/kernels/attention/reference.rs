//! Plain f64 attention: every query row scored, masked and normalised alone.

use crate::kernels::gemm::MatRef;

/// out [Tq×Dv] (dense) in f64, same semantics as `attention_head`.
pub(super) fn attention(
    q: MatRef,
    k: MatRef,
    v: MatRef,
    mask: Option<MatRef>,
    causal: bool,
    scale: f32,
) -> Vec<f64> {
    let (tq, tk, d, dv) = (q.rows, k.rows, q.cols, v.cols);
    let mut out = vec![0.0; tq * dv];
    for i in 0..tq {
        let mut scores: Vec<(usize, f64)> = Vec::new();
        for j in 0..tk {
            let m = mask.map_or(0.0, |m| m.at(i, j) as f64);
            if (causal && j > i) || m == f64::NEG_INFINITY {
                continue;
            }
            let dot: f64 = (0..d).map(|c| q.at(i, c) as f64 * k.at(j, c) as f64).sum();
            scores.push((j, dot * scale as f64 + m));
        }
        if scores.is_empty() {
            continue;
        }
        let max = scores.iter().map(|s| s.1).fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = scores.iter().map(|s| (s.1 - max).exp()).sum();
        for &(j, s) in &scores {
            let p = (s - max).exp() / sum;
            for c in 0..dv {
                out[i * dv + c] += p * v.at(j, c) as f64;
            }
        }
    }
    out
}
