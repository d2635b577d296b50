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
/// length; large inputs in parallel. Relative error ≲ 5e-7 wherever
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
    epilogue_row(isa, Some(act), x, bias, None)
}

/// One row of a Linear layer's epilogue, in one pass: x [N] ←
/// act(x + bias) + residual, each part optional (no activation: the
/// identity). Panics if this CPU cannot run `isa` or bias or residual is
/// not of x's length.
pub fn epilogue_row(
    isa: Isa,
    act: Option<Activation>,
    x: &mut [f32],
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
) {
    assert_available(isa, "activation");
    for (what, part) in [("bias", bias), ("residual", residual)] {
        if let Some(part) = part {
            assert_eq!(
                part.len(),
                x.len(),
                "activation: {what} has {} entries for a row of {}",
                part.len(),
                x.len()
            );
        }
    }
    // SAFETY: `isa` is available (asserted above); x is one row we borrow
    // mutably, bias and residual are rows of its length.
    unsafe {
        epilogue_tile(
            isa,
            act,
            x.as_mut_ptr(),
            0,
            1,
            x.len(),
            bias,
            residual.map(|r| (r.as_ptr(), 0)),
        )
    }
}

/// [`epilogue_row`] over the rows of a tile of C, unchecked: row r < `rows`
/// is the `width` f32 at `c + r·ldc`; residual, if any, is (its first row,
/// its row stride). One call per tile, where the GEMM driver would
/// otherwise pay a call and its checks per row of 16–64 values.
///
/// # Safety
/// `isa.is_available()`; each row of C is valid for reads and writes of
/// `width` f32 that nothing else accesses during the call; bias, if any,
/// has `width` entries; each residual row is readable for `width` f32.
#[allow(clippy::too_many_arguments)] // a tile's rows, kept flat as in gemm
pub unsafe fn epilogue_tile(
    isa: Isa,
    act: Option<Activation>,
    c: *mut f32,
    ldc: usize,
    rows: usize,
    width: usize,
    bias: Option<&[f32]>,
    residual: Option<(*const f32, usize)>,
) {
    let (residual, ldr) = residual.unwrap_or((std::ptr::null(), 0));
    let tile = kernel::Tile {
        c,
        ldc,
        rows,
        width,
        bias: bias.map_or(std::ptr::null(), <[f32]>::as_ptr),
        residual,
        ldr,
    };
    // SAFETY: the caller's contract is `Tile`'s and the ISA's.
    unsafe {
        match act {
            Some(Activation::Relu) => kernel::relu_tile(isa, tile),
            Some(Activation::Gelu) => kernel::gelu_tile(isa, tile),
            None => kernel::identity_tile(isa, tile),
        }
    }
}
