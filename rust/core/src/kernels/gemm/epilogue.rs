//! What a Linear layer does to its product after the multiply: bias,
//! activation, residual add. Applied by the driver to each finished tile of
//! C while the tile is still in L1, instead of as separate passes over a C
//! that has long left the cache (for a 1024×2048 FFN hidden layer, three
//! passes over 8 MiB each).

use super::MatRef;
use crate::kernels::activations::{activation_with, Activation};
use crate::kernels::dispatch::Isa;

/// C[i][j] ← act(C[i][j] + bias[j]) + residual[i][j], each part optional,
/// applied once C holds the whole product (`beta·C + A·B`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Epilogue<'a> {
    /// bias [N], added to every row.
    pub bias: Option<&'a [f32]>,
    /// Applied after the bias.
    pub activation: Option<Activation>,
    /// residual [M×N] (unit column stride), added last: the skip connection
    /// of `x + sublayer(x)`.
    pub residual: Option<MatRef<'a>>,
}

impl Epilogue<'_> {
    /// Whether there is anything to apply.
    pub(super) fn is_empty(&self) -> bool {
        self.bias.is_none() && self.activation.is_none() && self.residual.is_none()
    }

    /// Panics unless the parts fit a product of `m × n`.
    pub(super) fn check(&self, m: usize, n: usize) {
        if let Some(bias) = self.bias {
            assert_eq!(
                bias.len(),
                n,
                "gemm epilogue: bias has {} entries, N = {n}",
                bias.len()
            );
        }
        if let Some(r) = self.residual {
            assert!(
                r.rows == m && r.cols == n && (r.col_stride == 1 || n == 1),
                "gemm epilogue: residual is {}x{} (col stride {}), expected {m}x{n} with unit column stride",
                r.rows,
                r.cols,
                r.col_stride
            );
        }
    }

    /// Applies the epilogue to `row` = C[i][j0 .. j0 + row.len()].
    pub(super) fn apply(&self, isa: Isa, i: usize, j0: usize, row: &mut [f32]) {
        let bias = self.bias.map(|b| &b[j0..j0 + row.len()]);
        match (self.activation, bias) {
            (Some(act), bias) => activation_with(isa, act, row, bias),
            (None, Some(bias)) => row.iter_mut().zip(bias).for_each(|(c, b)| *c += b),
            (None, None) => {}
        }
        if let Some(r) = self.residual {
            let start = i * r.row_stride + j0;
            let skip = &r.data[start..start + row.len()];
            row.iter_mut().zip(skip).for_each(|(c, s)| *c += s);
        }
    }
}
