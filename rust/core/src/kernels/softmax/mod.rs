//! Row softmax and log-softmax: numerically stable (max-subtracted), with the
//! attention scale and additive mask fused into the first pass.
//!
//! Semantics of `softmax(scale·x + mask)` at the edges (inputs x are finite):
//! - a position whose mask is -inf is masked: probability 0, even if `scale·x`
//!   overflowed to +inf (where IEEE would give NaN);
//! - a row with no position above -inf (fully masked, or empty) becomes zeros;
//! - if `scale·x + mask` overflows to +inf somewhere, the result is the limit
//!   of softmax: equal mass on the +inf positions, 0 elsewhere.

mod kernel;
#[cfg(test)]
mod reference;
#[cfg(test)]
mod tests;

use super::dispatch::{self, Isa};
use super::simd::{self, assert_available};

/// x[n] ← softmax(scale·x + mask) over one row of n scores. `mask` [n] is
/// additive: 0 keeps a position, -inf drops it. A row where every position is
/// masked becomes all zeros instead of NaN. See the module doc for overflow.
pub fn softmax_row(x: &mut [f32], scale: f32, mask: Option<&[f32]>) {
    softmax_row_with(dispatch::selected(), x, scale, mask)
}

/// [`softmax_row`] on a given ISA (tests, benchmarks). Panics if this CPU
/// cannot run `isa` or the mask length differs from the row's.
pub fn softmax_row_with(isa: Isa, x: &mut [f32], scale: f32, mask: Option<&[f32]>) {
    assert_available(isa, "softmax_row");
    if let Some(m) = mask {
        assert_eq!(
            m.len(),
            x.len(),
            "softmax_row: mask has {} entries for a row of {}",
            m.len(),
            x.len()
        );
    }
    // SAFETY: `isa` is available (asserted above); the mask, if any, has the
    // row's length, which is all the kernel reads.
    unsafe { kernel::softmax_row(isa, x, scale, mask) }
}

/// x[n] ← log_softmax(x) over one row. Stable for any finite input
/// (e.g. ±1e30 in one row). An empty or all -inf row is left unchanged.
pub fn log_softmax_row(x: &mut [f32]) {
    log_softmax_row_with(dispatch::selected(), x)
}

/// [`log_softmax_row`] on a given ISA. Panics if this CPU cannot run `isa`.
pub fn log_softmax_row_with(isa: Isa, x: &mut [f32]) {
    assert_available(isa, "log_softmax_row");
    // SAFETY: `isa` is available (asserted above); the kernel touches x only.
    unsafe { kernel::log_softmax_row(isa, x) }
}

/// x [R×n] row-major ← softmax of every row (no scale, no mask), rows in
/// parallel on the kernel pool when x is large. E.g. `tr.ops.softmax` over
/// the last axis.
pub fn softmax_rows(x: &mut [f32], n: usize) {
    let isa = dispatch::selected();
    simd::for_each_row(x, n, |row| softmax_row_with(isa, row, 1.0, None));
}

/// x [R×n] row-major ← log_softmax of every row, rows in parallel when x is
/// large. E.g. the decoder's [B×V] vocabulary scores.
pub fn log_softmax_rows(x: &mut [f32], n: usize) {
    let isa = dispatch::selected();
    simd::for_each_row(x, n, |row| log_softmax_row_with(isa, row));
}
