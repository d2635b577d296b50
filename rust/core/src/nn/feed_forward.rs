//! Position-wise feed-forward block: linear2(act(linear1(x))).

use serde::Serialize;

use crate::kernels::activations;
use crate::kernels::gemm::MatRef;
use crate::nn::linear::Linear;
use crate::nn::weights::Weights;
use crate::Result;

/// The feed-forward non-linearity (config.json `activation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    Relu,
    /// Exact erf form, as `torch.nn.functional.gelu`.
    Gelu,
}

/// y [M, E] = linear2(act(linear1(x))) with linear1 [E → F], linear2 [F → E].
#[derive(Clone, Debug)]
pub struct FeedForward {
    linear1: Linear,
    linear2: Linear,
    activation: Activation,
}

impl FeedForward {
    /// Reads `linear1.{weight,bias}` [F, E], [F] and `linear2.{weight,bias}`
    /// [E, F], [E] under `w`.
    pub fn new(w: &Weights, d_model: usize, d_ff: usize, activation: Activation) -> Result<Self> {
        let (e, f) = ((d_model, "d_model"), (d_ff, "d_ff"));
        Ok(FeedForward {
            linear1: Linear::new(&w.pp("linear1"), e, f)?,
            linear2: Linear::new(&w.pp("linear2"), f, e)?,
            activation,
        })
    }

    /// y [M, E] for x [M, E].
    pub fn forward(&self, x: &[f32]) -> Vec<f32> {
        let (e, f) = (self.linear1.in_features(), self.linear1.out_features());
        let rows = x.len() / e;
        let mut hidden = vec![0.0; rows * f];
        let mut y = vec![0.0; rows * e];
        self.forward_into(x, &mut hidden, &mut y);
        y
    }

    /// Writes y [M, E] into `y` for x [M, E], using `hidden` (at least
    /// [M, F]) as the intermediate (for callers that reuse buffers, e.g.
    /// decoder steps).
    pub fn forward_into(&self, x: &[f32], hidden: &mut [f32], y: &mut [f32]) {
        let f = self.linear1.out_features();
        let rows = self.hidden_into(x, hidden);
        self.linear2
            .forward_into(MatRef::row_major(&hidden[..rows * f], rows, f), y);
    }

    /// acc [M, E] += y for x [M, E]; `hidden` is scratch for [M, F], grown
    /// as needed (reuse it across calls). linear2's bias and the residual
    /// add ride on its GEMM (beta = 1 into acc).
    pub fn add_forward(&self, x: &[f32], hidden: &mut Vec<f32>, acc: &mut [f32]) {
        let (e, f) = (self.linear1.in_features(), self.linear1.out_features());
        let rows = x.len() / e;
        if hidden.len() < rows * f {
            hidden.resize(rows * f, 0.0);
        }
        self.hidden_into(x, hidden);
        self.linear2
            .add_forward_into(MatRef::row_major(&hidden[..rows * f], rows, f), acc);
    }

    /// hidden[..M·F] ← act(linear1(x)) for x [M, E] (bias and activation
    /// fused into the GEMM); returns M.
    fn hidden_into(&self, x: &[f32], hidden: &mut [f32]) -> usize {
        let (e, f) = (self.linear1.in_features(), self.linear1.out_features());
        let rows = x.len() / e;
        let act = match self.activation {
            Activation::Relu => activations::Activation::Relu,
            Activation::Gelu => activations::Activation::Gelu,
        };
        self.linear1
            .forward_act_into(MatRef::row_major(x, rows, e), act, &mut hidden[..rows * f]);
        rows
    }

    /// (linear1, linear2), for saving.
    pub fn linears(&self) -> (&Linear, &Linear) {
        (&self.linear1, &self.linear2)
    }
}
