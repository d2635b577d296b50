//! Linear layer y = x Wᵀ + b with W packed once for the GEMM micro-kernels.

use crate::kernels::activations::Activation;
use crate::kernels::gemm::{gemm_packed_fused, gemm_packed_strips, Epilogue, MatRef, PackedB};
use crate::nn::weights::{Dim, Weights};
use crate::{Error, Result};

/// y [M, N] = x [M, K] · Wᵀ + b, W [N = out_features, K = in_features] in
/// PyTorch layout, stored pre-packed (Wᵀ as GEMM operand B).
#[derive(Clone, Debug)]
pub struct Linear {
    weight: PackedB,
    /// [N], or `None` for a bias-free layer.
    bias: Option<Vec<f32>>,
}

impl Linear {
    /// Reads `weight` [out, in] and `bias` [out] (the bias must be present).
    pub fn new(w: &Weights, in_features: Dim, out_features: Dim) -> Result<Self> {
        let weight = w.get("weight", &[out_features, in_features])?;
        let bias = w.get("bias", &[out_features])?;
        let linear = Self::from_weight(
            weight.data(),
            Some(bias.data()),
            out_features.0,
            in_features.0,
        )?;
        // Packed: the checkpoint's pages of W need not stay resident too.
        weight.release_resident_pages();
        Ok(linear)
    }

    /// Packs `weight` [out_features, in_features] (row-major) and copies
    /// `bias` [out_features]. Errors name `weight`/`bias` on a length mismatch.
    pub fn from_weight(
        weight: &[f32],
        bias: Option<&[f32]>,
        out_features: usize,
        in_features: usize,
    ) -> Result<Self> {
        if Some(weight.len()) != out_features.checked_mul(in_features) {
            return Err(Error::value(format!(
                "weight: expected {out_features}×{in_features} = {} values, got {}",
                out_features.saturating_mul(in_features),
                weight.len()
            )));
        }
        if let Some(b) = bias {
            if b.len() != out_features {
                return Err(Error::value(format!(
                    "bias: expected {out_features} values, got {}",
                    b.len()
                )));
            }
        }
        Ok(Linear {
            weight: PackedB::from_linear_weight(weight, out_features, in_features),
            bias: bias.map(<[f32]>::to_vec),
        })
    }

    /// K.
    pub fn in_features(&self) -> usize {
        self.weight.k()
    }

    /// N.
    pub fn out_features(&self) -> usize {
        self.weight.n()
    }

    /// y [M, N] for x [M, K] (`x.cols` must be K).
    pub fn forward(&self, x: MatRef) -> Vec<f32> {
        let mut y = vec![0.0; x.rows * self.out_features()];
        self.forward_into(x, &mut y);
        y
    }

    /// Writes y [M, N] (dense row-major) into `y` for x [M, K].
    pub fn forward_into(&self, x: MatRef, y: &mut [f32]) {
        self.run(x, 0.0, None, y);
    }

    /// y [M, N] ← act(x Wᵀ + b) for x [M, K]: bias and activation are
    /// applied to each GEMM tile while it is in cache, not as extra passes.
    pub fn forward_act_into(&self, x: MatRef, activation: Activation, y: &mut [f32]) {
        self.run(x, 0.0, Some(activation), y);
    }

    /// acc [M, N] += x Wᵀ + b for x [M, K]: the GEMM accumulates into acc
    /// (beta = 1) and adds the bias per tile, so a residual add costs no
    /// pass of its own.
    pub fn add_forward_into(&self, x: MatRef, acc: &mut [f32]) {
        self.run(x, 1.0, None, acc);
    }

    /// y [M, 16·strips.len()] = the outputs of x [M, K] in the 16-wide
    /// column strips `strips` (strip s = outputs 16s .. 16s + 16), side by
    /// side in that order: each equal, bit for bit, to the same output of
    /// [`Linear::forward_into`] for the same x (see `gemm_packed_strips`;
    /// the bias is added as the GEMM epilogue adds it). Outputs past N are
    /// x·0 (0 for finite x).
    pub fn forward_strips_into(&self, x: MatRef, strips: &[usize], y: &mut [f32]) {
        gemm_packed_strips(x, &self.weight, strips, y);
        let (n, width) = (self.out_features(), strips.len() * 16);
        if let (Some(bias), true) = (&self.bias, width > 0) {
            for row in y.chunks_exact_mut(width) {
                for (piece, &s) in row.chunks_exact_mut(16).zip(strips) {
                    for (v, &b) in piece.iter_mut().zip(&bias[(16 * s).min(n)..]) {
                        *v += b;
                    }
                }
            }
        }
    }

    /// c [M, N] ← act(beta·c + x Wᵀ + b).
    fn run(&self, x: MatRef, beta: f32, activation: Option<Activation>, c: &mut [f32]) {
        let n = self.out_features();
        assert_eq!(
            c.len(),
            x.rows * n,
            "Linear: output holds {} values, expected {}×{n}",
            c.len(),
            x.rows
        );
        let epilogue = Epilogue {
            bias: self.bias.as_deref(),
            activation,
            residual: None,
        };
        gemm_packed_fused(x, &self.weight, beta, c, n, epilogue);
    }

    /// W [N, K] row-major, as PyTorch stores it (for saving).
    pub fn weight(&self) -> Vec<f32> {
        self.weight.unpack_linear_weight()
    }

    /// b [N], if any.
    pub fn bias(&self) -> Option<&[f32]> {
        self.bias.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_naive_and_round_trips() {
        let (m, k, n) = (3, 5, 7);
        let w: Vec<f32> = (0..n * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..n).map(|i| i as f32 * 0.1 - 0.3).collect();
        let x: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.11).cos()).collect();
        let lin = Linear::from_weight(&w, Some(&b), n, k).unwrap();
        let y = lin.forward(MatRef::row_major(&x, m, k));
        for i in 0..m {
            for j in 0..n {
                let want: f32 = b[j] + (0..k).map(|p| x[i * k + p] * w[j * k + p]).sum::<f32>();
                assert!((y[i * n + j] - want).abs() < 1e-5);
            }
        }
        assert_eq!(lin.weight(), w);
        let mut acc: Vec<f32> = (0..m * n).map(|i| i as f32 * 0.5).collect();
        lin.add_forward_into(MatRef::row_major(&x, m, k), &mut acc);
        for (i, (a, y)) in acc.iter().zip(&y).enumerate() {
            assert!((a - (y + i as f32 * 0.5)).abs() < 1e-5);
        }
        let mut relu = vec![0.0; m * n];
        lin.forward_act_into(MatRef::row_major(&x, m, k), Activation::Relu, &mut relu);
        assert_eq!(relu, y.iter().map(|v| v.max(0.0)).collect::<Vec<_>>());
        let no_bias = Linear::from_weight(&w, None, n, k).unwrap();
        let y0 = no_bias.forward(MatRef::row_major(&x, m, k));
        assert!((y0[0] + b[0] - y[0]).abs() < 1e-6);
    }

    #[test]
    fn strips_equal_the_full_product_bit_for_bit() {
        let mut rng = crate::test_util::Rng::new(9);
        // K beyond every ISA's KC (the product then sums in slices), rows
        // around the thin tiles' limits, N with a partial last strip.
        for (m, k, n) in [
            (1, 5, 50),
            (3, 300, 77),
            (9, 600, 40),
            (10, 700, 33),
            (17, 64, 100),
        ] {
            let w = rng.vec(n * k, -1.0, 1.0);
            let b = rng.vec(n, -1.0, 1.0);
            let x = rng.vec(m * k, -1.0, 1.0);
            let lin = Linear::from_weight(&w, Some(&b), n, k).unwrap();
            let x = MatRef::row_major(&x, m, k);
            let full = lin.forward(x);
            let last = n.div_ceil(16) - 1;
            let strips = [last, 0, last, 1.min(last)];
            let mut part = vec![f32::NAN; m * 16 * strips.len()];
            lin.forward_strips_into(x, &strips, &mut part);
            for (i, row) in part.chunks_exact(16 * strips.len()).enumerate() {
                for (t, &s) in strips.iter().enumerate() {
                    for jj in 0..16 {
                        let got = row[16 * t + jj];
                        let j = 16 * s + jj;
                        if j < n {
                            assert_eq!(got.to_bits(), full[i * n + j].to_bits(), "({i}, {j})");
                        } else {
                            assert_eq!(got, 0.0);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn rejects_wrong_lengths() {
        assert!(Linear::from_weight(&[0.0; 5], None, 2, 3).is_err());
        assert!(Linear::from_weight(&[0.0; 6], Some(&[0.0; 3]), 2, 3).is_err());
    }
}
