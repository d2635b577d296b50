//! Element-wise activations in place, optionally with a bias added first
//! (the epilogue of a Linear layer: y = act(x·Wᵀ + b)).

mod kernel;
#[cfg(test)]
mod reference;
#[cfg(test)]
mod tests;

use super::dispatch::{self, Isa};
use super::simd::{self, assert_available};

/// Which activation an element-wise kernel applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// max(x, 0).
    Relu,
    /// x·Φ(x) = ½·x·(1 + erf(x/√2)), the exact form of torch's GELU.
    Gelu,
}

/// x ← max(x, 0), any length; large inputs in parallel on the kernel pool.
pub fn relu_inplace(x: &mut [f32]) {
    bias_activation_inplace(Activation::Relu, x, None)
}

/// x ← GELU(x) = x·Φ(x) (exact erf form, as torch.nn.functional.gelu), any
/// length; large inputs in parallel. Relative error ≲ 4e-7 wherever
/// |GELU(x)| > 1e-30, exact (x or -0) for |x| beyond ~13.
pub fn gelu_inplace(x: &mut [f32]) {
    bias_activation_inplace(Activation::Gelu, x, None)
}

/// x [R×N] ← act(x + bias) with bias [N] added to every row (N = bias.len();
/// `None`: no bias, any length). Large inputs run in parallel.
pub fn bias_activation_inplace(act: Activation, x: &mut [f32], bias: Option<&[f32]>) {
    let isa = dispatch::selected();
    match bias {
        Some(b) => simd::for_each_row(x, b.len(), |row| activation_with(isa, act, row, Some(b))),
        None => simd::for_each_chunk(x, |chunk| activation_with(isa, act, chunk, None)),
    }
}

/// One row: x [N] ← act(x + bias) (bias [N] or none) on a given ISA.
/// Panics if this CPU cannot run `isa` or bias.len() != x.len().
pub fn activation_with(isa: Isa, act: Activation, x: &mut [f32], bias: Option<&[f32]>) {
    assert_available(isa, "activation");
    if let Some(b) = bias {
        assert_eq!(
            b.len(),
            x.len(),
            "activation: bias has {} entries for a row of {}",
            b.len(),
            x.len()
        );
    }
    // SAFETY: `isa` is available (asserted above); bias, if any, has x's
    // length, which is all the kernels read.
    unsafe {
        match act {
            Activation::Relu => kernel::bias_relu(isa, x, bias),
            Activation::Gelu => kernel::bias_gelu(isa, x, bias),
        }
    }
}
