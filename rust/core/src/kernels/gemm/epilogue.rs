//! What a Linear layer does to its product after the multiply: bias,
//! activation, residual add. Applied by the driver to each finished tile of
//! C while the tile is still in L1, instead of as separate passes over a C
//! that has long left the cache (for a 1024×2048 FFN hidden layer, three
//! passes over 8 MiB each).

use super::MatRef;
use crate::kernels::activations::{epilogue_tile, Activation};
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

    /// Applies the epilogue, in one pass, to the tile C[rows, j0 .. j0 +
    /// width] whose first row starts at `c` (row stride `ldc`).
    ///
    /// # Safety
    /// `isa` is available; the tile's rows are valid for reads and writes
    /// and nothing else touches them during the call; `check` passed for a
    /// product the tile lies inside.
    pub(super) unsafe fn apply_tile(
        &self,
        isa: Isa,
        c: *mut f32,
        ldc: usize,
        rows: std::ops::Range<usize>,
        j0: usize,
        width: usize,
    ) {
        if rows.is_empty() {
            return;
        }
        let bias = self.bias.map(|b| &b[j0..j0 + width]);
        let residual = self.residual.map(|r| {
            // The tile's last residual row is in bounds (checked here), so
            // are the ones before it.
            let _ = &r.data[(rows.end - 1) * r.row_stride + j0..][..width];
            (
                r.data[rows.start * r.row_stride + j0..].as_ptr(),
                r.row_stride,
            )
        });
        // SAFETY: the caller's contract for C and the ISA; bias holds width
        // values and each residual row width values (the slices above).
        unsafe {
            epilogue_tile(
                isa,
                self.activation,
                c,
                ldc,
                rows.len(),
                width,
                bias,
                residual,
            )
        }
    }
}
