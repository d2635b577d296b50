//! The exact argmax of a wide Linear layer's log-softmax, found without
//! computing every output in fp32: the decoder's greedy step over a 32000-
//! word vocabulary.
//!
//! At batch 1 a greedy step is bound by memory bandwidth: it reads every
//! weight once, and the output projection W [V×E] is the largest of them
//! (65.5 MB of the ~150 MB a Transformer-base step streams). The screen
//! keeps a bfloat16 copy W̃ (half the bytes) and, per row x [E]:
//!
//! 1. computes s̃_j = x·w̃_j for every output j with fp32 sums
//!    (`kernels::bf16_gemv`);
//! 2. bounds |l_j − (s̃_j + b_j)| ≤ β_j = ‖x‖₂·c_j + d_j, where l_j is the
//!    logit `Linear::forward_into` computes, rigorously (module-level proof
//!    below); c_j, d_j are fixed at load;
//! 3. keeps the candidates j whose upper bound s̃_j + b_j + β_j reaches the
//!    best lower bound minus τ (the tie margin), and computes their logits
//!    exactly, with the same GEMM kernel as the full product
//!    (`Linear::forward_strips_into`), so they equal it bit for bit;
//! 4. answers with the top candidate when no other logit lies within τ of
//!    it (or all that do are equal to it, the lowest index then winning),
//!    which makes it the argmax of the log-probabilities too. Otherwise, or
//!    on any non-finite value, it declines and the caller computes the full
//!    product.
//!
//! Why the answer is exact. The fp32 logit errs by (any summation order,
//! fused or not; u = 2⁻²⁴, γ_K = K·u/(1−K·u); Higham, Accuracy and
//! Stability, §3.1) at most γ_K·Σ|x_p·w_jp| plus u·|x·w_j + b_j| for the
//! bias add, and s̃_j from x·w̃_j by at most γ_K·Σ|x_p·w̃_jp|. With
//! Cauchy–Schwarz and e_j = ‖w_j − w̃_j‖₂, x·w_j and x·w̃_j differ by at
//! most ‖x‖·e_j. So |l_j − (s̃_j + b_j)| is at most ‖x‖·(e_j +
//! γ_K(‖w_j‖ + ‖w̃_j‖) + u(1+γ_K)‖w_j‖) plus u·|b_j| and a few 2⁻¹⁴⁹ per
//! term for underflow: β_j, rounded up with f64 slack. A non-candidate j
//! then has l_j ≤ s̃_j + b_j + β_j < m − τ ≤ l_k − τ, k being the index of
//! the best lower bound m: every non-candidate is more than τ below the top
//! logit.
//!
//! The tie margin. `log_softmax_row` computes (l_j − max) − L in f32 with L
//! = ln Σ e^{l−max} ∈ [0, ln V + 1): the top logit gets exactly −L. If l_j ≤
//! top − τ, then fl(l_j − top) ≤ −τ, and with τ = 2^(E−22), 2^E ≥ ln V + 1,
//! that is at least 4 units in the last place of L below zero, so fl(d −
//! L) < −L: a strictly smaller log-probability. Only logits within τ of the
//! top can tie with it after the subtraction, and the screen decides those
//! only when they are equal to it.

use crate::kernels::bf16_gemv::{self, round_to_bf16, Bf16Panels};
use crate::kernels::gemm::MatRef;
use crate::nn::weights::{Dim, Weights};
use crate::nn::Linear;

/// Unit roundoff of f32.
const U: f64 = 1.0 / (1u64 << 24) as f64;

/// Relative slack on every bound, for the f64 arithmetic that computes it
/// (norms of ≤ 2²⁰ terms err by ~2⁻³³ at most).
const F64_SLACK: f64 = 1.0 / (1u64 << 30) as f64;

/// The screen declines when ‖x‖₂ × the largest weight row norm or bias
/// reaches this, far below f32::MAX, so no sum can overflow.
const OVERFLOW_GUARD: f64 = 1.0e30;

/// The screen declines when the candidates of one call span more strips
/// of 16 outputs than this: recomputing them would cost a good part of the
/// full product (e.g. x = 0, where every logit is the bias alone).
const MAX_STRIPS: usize = 64;

/// Candidates of one call at most (all of them fit in `MAX_STRIPS` strips).
const MAX_CANDIDATES: usize = 16 * MAX_STRIPS;

/// The bf16 copy of a Linear layer's weight and the per-output error bound
/// coefficients; see the module doc.
#[derive(Clone, Debug)]
pub struct ArgmaxScreen {
    weights: Bf16Panels,
    /// c_j: the bound's coefficient of ‖x‖₂, per output.
    per_norm: Vec<f64>,
    /// d_j: its constant part, per output.
    constant: Vec<f64>,
    /// The largest ‖w_j‖₂, ‖w̃_j‖₂ or |b_j|: with ‖x‖₂ it bounds every
    /// partial sum, so that the screen can check that none overflows (the
    /// error bound assumes none does).
    largest: f64,
    /// τ, the tie margin (a power of two).
    tie_margin: f64,
}

/// Reused buffers of [`ArgmaxScreen::argmax_rows`], so a decoding step
/// allocates nothing once they have grown.
#[derive(Clone, Debug, Default)]
pub struct ScreenScratch {
    /// s̃ [M, N].
    approx: Vec<f32>,
    /// Candidate outputs of every row, row r's at `bounds[r]..bounds[r+1]`.
    candidates: Vec<usize>,
    bounds: Vec<usize>,
    /// The strips (of 16 outputs) holding any candidate, ascending.
    strips: Vec<usize>,
    /// Exact outputs of those strips [M, 16·strips].
    exact: Vec<f32>,
}

impl ScreenScratch {
    /// Room for calls of up to `rows` rows over `n` outputs: the buffers
    /// then never grow (the screen declines before its candidates outgrow
    /// them).
    pub fn with_capacity(rows: usize, n: usize) -> Self {
        if rows == 0 {
            return ScreenScratch::default();
        }
        ScreenScratch {
            approx: Vec::with_capacity(rows * n),
            candidates: Vec::with_capacity(MAX_CANDIDATES),
            bounds: Vec::with_capacity(rows + 1),
            strips: Vec::with_capacity(MAX_CANDIDATES),
            exact: Vec::with_capacity(rows * 16 * MAX_STRIPS),
        }
    }
}

impl ArgmaxScreen {
    /// The screen of `linear`, whose weight is W [N×K] (row-major, as
    /// `weight`) and bias `bias` [N]. `None` when any weight or bias is not
    /// finite or rounds to an infinite bf16, or K is too large for the
    /// bound (K·u ≥ 1/2): the full product is then always computed.
    pub fn new(weight: &[f32], bias: Option<&[f32]>, n: usize, k: usize) -> Option<Self> {
        assert_eq!(weight.len(), n * k, "ArgmaxScreen: weight is not {n}×{k}");
        if (k as f64) * U >= 0.5 || n == 0 || k == 0 {
            return None;
        }
        let gamma = k as f64 * U / (1.0 - k as f64 * U);
        // Products that underflow err by up to 2⁻¹⁴⁹ each, in both sums.
        let underflow = (2 * k + 2) as f64 * f64::powi(2.0, -149);
        let mut per_norm = Vec::with_capacity(n);
        let mut constant = Vec::with_capacity(n);
        let mut largest = 0.0f64;
        for (j, row) in weight.chunks_exact(k).enumerate() {
            let (mut w2, mut wt2, mut e2) = (0.0f64, 0.0f64, 0.0f64);
            for &w in row {
                let wt = round_to_bf16(w);
                if !w.is_finite() || !wt.is_finite() {
                    return None;
                }
                let (w, wt) = (f64::from(w), f64::from(wt));
                w2 += w * w;
                wt2 += wt * wt;
                e2 += (w - wt) * (w - wt);
            }
            let (wn, wtn) = (w2.sqrt(), wt2.sqrt());
            let b = bias.map_or(0.0, |b| f64::from(b[j]));
            if !b.is_finite() {
                return None;
            }
            largest = largest.max(wn).max(wtn).max(b.abs());
            let c = e2.sqrt() + gamma * (wn + wtn) + U * (1.0 + gamma) * wn;
            per_norm.push(c * (1.0 + F64_SLACK));
            constant.push((U * b.abs() + underflow) * (1.0 + F64_SLACK));
        }
        // τ = 2^(E−22) with 2^E ≥ ln N + 1 (module doc).
        let exponent = ((n as f64).ln() + 1.0).log2().ceil() as i32;
        Some(ArgmaxScreen {
            weights: Bf16Panels::from_linear_weight(weight, n, k),
            per_norm,
            constant,
            largest,
            tie_margin: f64::powi(2.0, exponent - 22),
        })
    }

    /// The screen of the Linear layer `Linear::new(w, in_features,
    /// out_features)` builds, from the same `weight` and `bias` tensors.
    /// Made before that layer, which drops the weight's mapped pages once it
    /// has packed them: so the pages are read in from the file once, for
    /// both.
    pub fn from_weights(
        w: &Weights,
        in_features: Dim,
        out_features: Dim,
    ) -> crate::Result<Option<Self>> {
        let weight = w.get("weight", &[out_features, in_features])?;
        let bias = w.get("bias", &[out_features])?;
        Ok(Self::new(
            weight.data(),
            Some(bias.data()),
            out_features.0,
            in_features.0,
        ))
    }

    /// N.
    pub fn outputs(&self) -> usize {
        self.per_norm.len()
    }

    /// For each row of x [M, K], the index `argmax` (first of equal maxima,
    /// NaN counting as the maximum) gives on the row's log-softmax of
    /// `linear`'s outputs, as `Linear::forward_into` and `log_softmax_row`
    /// compute them, written to `tokens`; `false` (`tokens` unspecified)
    /// when the screen cannot tell it apart from a near tie or sees a
    /// non-finite value: the caller then computes the full product.
    /// `linear` must be the layer this screen was made from.
    pub fn argmax_rows(
        &self,
        linear: &Linear,
        x: MatRef,
        scratch: &mut ScreenScratch,
        tokens: &mut Vec<usize>,
    ) -> bool {
        let (m, n) = (x.rows, self.outputs());
        assert_eq!(linear.out_features(), n, "ArgmaxScreen: another layer");
        tokens.clear();
        let s = scratch;
        s.approx.resize(m * n, 0.0);
        bf16_gemv::gemv(x, &self.weights, &mut s.approx);
        let bias = linear.bias();
        let bias_at = |j: usize| bias.map_or(0.0, |b| f64::from(b[j]));
        // Step 2–3: each row's candidates.
        s.candidates.clear();
        s.bounds.clear();
        s.bounds.push(0);
        for (r, approx) in s.approx.chunks_exact(n).enumerate() {
            let norm = (0..x.cols)
                .map(|p| f64::from(x.at(r, p)).powi(2))
                .sum::<f64>()
                .sqrt();
            // |partial sums| ≤ ‖x‖·‖w‖ + |b| (each, × 1 + γ_K) stay far
            // below f32::MAX ≈ 2¹²⁸.
            let safe = norm * self.largest + self.largest < OVERFLOW_GUARD;
            if !safe {
                return false;
            }
            // β_j plus slack for the f64 sums below.
            let bound = |j: usize, mid: f64| {
                norm * self.per_norm[j] + self.constant[j] + mid.abs() * F64_SLACK
            };
            let mut best_low = f64::NEG_INFINITY;
            for (j, &a) in approx.iter().enumerate() {
                let mid = f64::from(a) + bias_at(j);
                best_low = best_low.max(mid - bound(j, mid));
            }
            if !best_low.is_finite() {
                return false;
            }
            let floor = best_low - self.tie_margin;
            for (j, &a) in approx.iter().enumerate() {
                let mid = f64::from(a) + bias_at(j);
                // A NaN in s̃ makes j a candidate, computed exactly.
                let excluded = mid + bound(j, mid) < floor;
                if !excluded {
                    if s.candidates.len() == MAX_CANDIDATES {
                        return false;
                    }
                    s.candidates.push(j);
                }
            }
            s.bounds.push(s.candidates.len());
        }
        s.strips.clear();
        s.strips.extend(s.candidates.iter().map(|&j| j / 16));
        s.strips.sort_unstable();
        s.strips.dedup();
        if s.strips.len() > MAX_STRIPS {
            return false;
        }
        // Step 3: the candidates' logits, exactly.
        let width = 16 * s.strips.len();
        s.exact.resize(m * width, 0.0);
        linear.forward_strips_into(x, &s.strips, &mut s.exact);
        // Step 4.
        for r in 0..m {
            let row = &s.exact[r * width..][..width];
            let logit = |j: usize| {
                let strip = s
                    .strips
                    .binary_search(&(j / 16))
                    .expect("candidate's strip");
                row[16 * strip + j % 16]
            };
            let candidates = &s.candidates[s.bounds[r]..s.bounds[r + 1]];
            let mut top = f32::NEG_INFINITY;
            let mut best = None;
            for &j in candidates {
                let l = logit(j);
                if !l.is_finite() {
                    return false;
                }
                if best.is_none() || l > top {
                    (top, best) = (l, Some(j));
                }
            }
            let Some(best) = best else { return false };
            let near = f64::from(top) - self.tie_margin;
            if candidates
                .iter()
                .any(|&j| logit(j) != top && f64::from(logit(j)) > near)
            {
                return false;
            }
            tokens.push(best);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decoding::argmax_rows;
    use crate::kernels::softmax::log_softmax_row;
    use crate::test_util::Rng;

    /// What greedy decoding takes without the screen: the argmax of each
    /// row's log-softmax of the fp32 product.
    fn full_argmax(linear: &Linear, x: MatRef) -> Vec<usize> {
        let n = linear.out_features();
        let mut logits = linear.forward(x);
        logits.chunks_exact_mut(n).for_each(log_softmax_row);
        let mut best = Vec::new();
        argmax_rows(&logits, n, &mut best);
        best
    }

    /// Runs the screen on x [m, k] and checks that whatever it answers is
    /// the full product's argmax; returns whether it answered.
    fn check(weight: &[f32], bias: &[f32], x: &[f32], m: usize, n: usize, k: usize) -> bool {
        let linear = Linear::from_weight(weight, Some(bias), n, k).unwrap();
        let screen = ArgmaxScreen::new(weight, Some(bias), n, k).expect("finite weights");
        let x = MatRef::row_major(x, m, k);
        let mut scratch = ScreenScratch::default();
        let mut tokens = vec![usize::MAX; 3];
        let answered = screen.argmax_rows(&linear, x, &mut scratch, &mut tokens);
        if answered {
            assert_eq!(tokens, full_argmax(&linear, x), "m {m} n {n} k {k}");
        }
        answered
    }

    #[test]
    fn answers_the_full_argmax_on_random_layers() {
        let mut rng = Rng::new(11);
        let mut answered = 0;
        let cases = 120;
        for case in 0..cases {
            let (m, n, k) = (1 + rng.below(4), 1 + rng.below(700), 1 + rng.below(300));
            let scale = [1e-3f32, 1.0, 40.0][case % 3];
            let weight = rng.vec(n * k, -scale, scale);
            let bias = rng.vec(n, -1.0, 1.0);
            let x = rng.vec(m * k, -2.0, 2.0);
            answered += usize::from(check(&weight, &bias, &x, m, n, k));
        }
        // Random logits are far apart next to the bf16 error: the screen
        // should almost never need the full product.
        assert!(answered >= cases * 9 / 10, "answered {answered} of {cases}");
    }

    #[test]
    fn finds_the_winner_among_rows_closer_than_bf16_can_tell() {
        // Every row is one base row plus a perturbation ~100× below bf16's
        // rounding step: the bf16 logits cannot rank them, only the bound
        // and the exact recomputation can.
        let mut rng = Rng::new(5);
        for _ in 0..40 {
            let (n, k) = (40 + rng.below(200), 64 + rng.below(200));
            let base = rng.vec(k, -1.0, 1.0);
            let mut weight = Vec::with_capacity(n * k);
            for _ in 0..n {
                weight.extend(base.iter().map(|&b| b * (1.0 + rng.uniform(-4e-5, 4e-5))));
            }
            let bias = vec![0.0; n];
            let x = rng.vec(2 * k, -1.0, 1.0);
            // Answered or not, never wrong (checked inside).
            check(&weight, &bias, &x, 2, n, k);
        }
    }

    #[test]
    fn exact_ties_go_to_the_lowest_index_or_to_the_full_product() {
        // Weights and inputs on a coarse binary grid: many logits are
        // exactly equal, and the first of them must win.
        let mut rng = Rng::new(3);
        let mut answered = 0;
        for _ in 0..60 {
            let (n, k) = (20 + rng.below(100), 1 + rng.below(40));
            let grid = |rng: &mut Rng| (rng.below(5) as f32 - 2.0) * 0.25;
            let weight: Vec<f32> = (0..n * k).map(|_| grid(&mut rng)).collect();
            let bias: Vec<f32> = (0..n).map(|_| grid(&mut rng)).collect();
            let x: Vec<f32> = (0..k).map(|_| grid(&mut rng)).collect();
            answered += usize::from(check(&weight, &bias, &x, 1, n, k));
        }
        assert!(answered > 0, "exact ties are decidable");
    }

    #[test]
    fn declines_near_ties_and_non_finite_inputs() {
        let k = 8;
        let row: Vec<f32> = (0..k).map(|p| 0.1 + p as f32 * 0.01).collect();
        // Output 1 is output 0 with one weight 16 units in the last place
        // larger: its logit is within τ (2⁻²⁰ for N = 3) of output 0's, a
        // few units in the last place above it.
        let mut weight = [row.clone(), row.clone(), vec![0.0; k]].concat();
        weight[k + 3] = f32::from_bits(weight[k + 3].to_bits() + 16);
        let bias = vec![0.0; 3];
        let x = vec![1.0; k];
        assert!(!check(&weight, &bias, &x, 1, 3, k));
        // Far apart: answered.
        assert!(check(&weight, &bias, &[-1.0; 8], 1, 3, k));
        for bad in [f32::NAN, f32::INFINITY, 3e38] {
            let mut x = x.clone();
            x[2] = bad;
            assert!(!check(&weight, &bias, &x, 1, 3, k), "x holds {bad}");
        }
        let mut nan = weight.clone();
        nan[5] = f32::NAN;
        assert!(ArgmaxScreen::new(&nan, Some(&bias), 3, k).is_none());
        assert!(ArgmaxScreen::new(&weight, Some(&[0.0, f32::INFINITY, 0.0]), 3, k).is_none());
        // Rounds up to an infinite bf16.
        let mut huge = weight.clone();
        huge[0] = f32::MAX;
        assert!(ArgmaxScreen::new(&huge, Some(&bias), 3, k).is_none());
    }

    #[test]
    fn declines_when_too_many_outputs_are_candidates() {
        // x = 0: every logit is its bias, and all biases are equal.
        let (n, k) = (16 * MAX_STRIPS + 5, 4);
        let weight = vec![0.5; n * k];
        assert!(!check(&weight, &vec![1.0; n], &vec![0.0; k], 1, n, k));
    }
}
