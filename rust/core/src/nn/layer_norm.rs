//! LayerNorm over the last axis.

use rayon::prelude::*;

use crate::kernels::layer_norm::layer_norm_row;
use crate::nn::weights::Weights;
use crate::Result;

/// y = (x - mean) / sqrt(var + eps) · weight + bias per row of E values.
#[derive(Clone, Debug)]
pub struct LayerNorm {
    /// [E].
    weight: Vec<f32>,
    /// [E].
    bias: Vec<f32>,
    eps: f32,
}

/// Rows per parallel task: below this, a hand-off to another thread costs
/// more than the rows (~0.3 µs each at E = 512).
const ROWS_PER_TASK: usize = 64;

impl LayerNorm {
    /// Reads `weight` [E] and `bias` [E] under `w`; E = `d_model`.
    pub fn new(w: &Weights, d_model: usize, eps: f64) -> Result<Self> {
        let weight = w.get("weight", &[(d_model, "d_model")])?.data().to_vec();
        let bias = w.get("bias", &[(d_model, "d_model")])?.data().to_vec();
        Ok(LayerNorm {
            weight,
            bias,
            eps: eps as f32,
        })
    }

    /// y [M, E] for x [M, E] (dense row-major).
    pub fn forward(&self, x: &[f32]) -> Vec<f32> {
        let mut y = vec![0.0; x.len()];
        self.forward_into(x, &mut y);
        y
    }

    /// y [M, E] ← norm(x [M, E]); rows in parallel when there are enough.
    pub fn forward_into(&self, x: &[f32], y: &mut [f32]) {
        let e = self.weight.len();
        assert_eq!(x.len(), y.len(), "LayerNorm: x and y differ in length");
        if x.is_empty() {
            return;
        }
        let norm_rows = |(yc, xc): (&mut [f32], &[f32])| {
            for (yr, xr) in yc.chunks_exact_mut(e).zip(xc.chunks_exact(e)) {
                layer_norm_row(xr, &self.weight, &self.bias, self.eps, yr);
            }
        };
        let chunk = e.max(1) * ROWS_PER_TASK;
        if x.len() < 2 * chunk || rayon::current_num_threads() == 1 {
            norm_rows((y, x));
        } else {
            y.par_chunks_mut(chunk)
                .zip(x.par_chunks(chunk))
                .for_each(norm_rows);
        }
    }

    /// `weight` [E] and `bias` [E] (for saving).
    pub fn params(&self) -> (&[f32], &[f32]) {
        (&self.weight, &self.bias)
    }
}
