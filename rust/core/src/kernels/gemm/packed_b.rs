//! B packed once, for weights that are multiplied many times.

use super::buffer::AlignedBuf;
use super::pack::{pack_b, strip_count, PAR_PACK_MIN, STRIP};
use super::MatRef;
use crate::kernels::dispatch;

/// B [K×N] packed once into the strip layout every micro-kernel reads (see
/// `pack`): strips of 16 columns, each K rows long, the last one
/// zero-padded. The layout does not depend on the ISA, so one PackedB serves
/// every kernel. Used for every Linear layer: x [M×K] @ Wᵀ with W [N×K].
#[derive(Clone, Debug)]
pub struct PackedB {
    k: usize,
    n: usize,
    /// `strip_count(n)` strips of K×16.
    strips: AlignedBuf,
}

impl PackedB {
    /// Packs B [K×N] (any strides).
    pub fn pack(b: MatRef) -> Self {
        let mut strips = AlignedBuf::zeroed(strip_count(b.cols) * b.rows * STRIP);
        let isa = dispatch::selected();
        pack_b(
            isa,
            b,
            strips.as_mut_slice(),
            b.rows * b.cols >= PAR_PACK_MIN,
        );
        PackedB {
            k: b.rows,
            n: b.cols,
            strips,
        }
    }

    /// Packs B = Wᵀ [K×N] for a PyTorch Linear weight W [N = out_features,
    /// K = in_features] (row-major), reading W in place.
    pub fn from_linear_weight(w: &[f32], out_features: usize, in_features: usize) -> Self {
        assert_eq!(
            w.len(),
            out_features * in_features,
            "from_linear_weight: weight has {} elements, expected {out_features}x{in_features}",
            w.len()
        );
        Self::pack(MatRef::row_major(w, out_features, in_features).t())
    }

    /// K, the shared dimension.
    pub fn k(&self) -> usize {
        self.k
    }

    /// N, the output width.
    pub fn n(&self) -> usize {
        self.n
    }

    /// The Linear weight W [N×K] (row-major) this was packed from (for saving
    /// a model).
    pub fn unpack_linear_weight(&self) -> Vec<f32> {
        let mut w = vec![0.0; self.n * self.k];
        if self.k == 0 {
            return w;
        }
        for (s, strip) in self.strips().chunks_exact(self.k * STRIP).enumerate() {
            for (p, row) in strip.chunks_exact(STRIP).enumerate() {
                for (jj, &v) in row.iter().enumerate().take(self.n - s * STRIP) {
                    w[(s * STRIP + jj) * self.k + p] = v;
                }
            }
        }
        w
    }

    /// The packed strips: strip `s` row `p` is `strips()[(s·K + p)·16 ..][..16]`.
    pub(super) fn strips(&self) -> &[f32] {
        self.strips.as_slice()
    }
}
