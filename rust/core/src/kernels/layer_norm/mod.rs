//! Layer normalisation over rows of width E, f32 throughout with a corrected
//! two-pass mean/variance (accurate for rows with a large mean or constant
//! rows), and a fused residual form for post-LN blocks.

mod kernel;
#[cfg(test)]
mod reference;
#[cfg(test)]
mod tests;

use super::dispatch::{self, Isa};
use super::simd::{self, assert_available};

/// out[E] = (x - mean) / sqrt(var + eps) · gamma + beta, with x, gamma, beta
/// of length E and var the biased (1/E) variance, as in PyTorch.
pub fn layer_norm_row(x: &[f32], gamma: &[f32], beta: &[f32], eps: f32, out: &mut [f32]) {
    layer_norm_row_with(dispatch::selected(), x, gamma, beta, eps, out)
}

/// [`layer_norm_row`] on a given ISA. Panics if this CPU cannot run `isa` or
/// the lengths differ.
pub fn layer_norm_row_with(
    isa: Isa,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    out: &mut [f32],
) {
    assert_available(isa, "layer_norm_row");
    check_lengths("layer_norm_row", x.len(), gamma, beta, out.len());
    // SAFETY: `isa` is available; x, gamma, beta and out all hold E = x.len()
    // elements (checked above), and x and out are distinct borrows.
    unsafe {
        kernel::layer_norm_row(
            isa,
            x.as_ptr(),
            None,
            out.as_mut_ptr(),
            x.len(),
            gamma,
            beta,
            eps,
        )
    }
}

/// x[E] ← LayerNorm(x + r): the residual add and norm of a post-LN block in
/// one kernel (x is the residual stream, r the sub-layer output).
pub fn add_layer_norm_row(x: &mut [f32], r: &[f32], gamma: &[f32], beta: &[f32], eps: f32) {
    add_layer_norm_row_with(dispatch::selected(), x, r, gamma, beta, eps)
}

/// [`add_layer_norm_row`] on a given ISA. Panics if this CPU cannot run
/// `isa` or the lengths differ.
pub fn add_layer_norm_row_with(
    isa: Isa,
    x: &mut [f32],
    r: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
) {
    assert_available(isa, "add_layer_norm_row");
    check_lengths("add_layer_norm_row", x.len(), gamma, beta, r.len());
    let p = x.as_mut_ptr();
    // SAFETY: `isa` is available; x, r, gamma, beta hold E elements (checked
    // above). x is both source and destination: the kernel reads each element
    // before writing it, at the same index, through these raw pointers only.
    unsafe { kernel::layer_norm_row(isa, p, Some(r.as_ptr()), p, x.len(), gamma, beta, eps) }
}

/// out [R×E] = LayerNorm of every row of x [R×E] (row-major, E =
/// gamma.len()), rows in parallel on the kernel pool when x is large.
pub fn layer_norm_rows(x: &[f32], gamma: &[f32], beta: &[f32], eps: f32, out: &mut [f32]) {
    let e = gamma.len();
    assert_eq!(
        x.len(),
        out.len(),
        "layer_norm_rows: x has {} elements but out has {}",
        x.len(),
        out.len()
    );
    check_lengths("layer_norm_rows", e, gamma, beta, e);
    out.copy_from_slice(x);
    let isa = dispatch::selected();
    simd::for_each_row(out, e, |row| {
        let p = row.as_mut_ptr();
        // SAFETY: `isa` is the selected (available) ISA; row, gamma and beta
        // hold E elements; in place is fine as in `add_layer_norm_row`.
        unsafe { kernel::layer_norm_row(isa, p, None, p, e, gamma, beta, eps) }
    });
}

fn check_lengths(what: &str, e: usize, gamma: &[f32], beta: &[f32], other: usize) {
    assert!(
        gamma.len() == e && beta.len() == e && other == e,
        "{what}: lengths differ (row {e}, gamma {}, beta {}, other {other})",
        gamma.len(),
        beta.len()
    );
}
