//! The general path: query rows in blocks, GEMM for q kᵀ and P v.

use super::{row_range, Problem};
use crate::kernels::dispatch::Isa;
use crate::kernels::gemm::{gemm, MatRef};
use crate::kernels::softmax::softmax_row_with;

/// Query rows per block: a 64 × Tk score block stays in L2 for Tk in the
/// thousands, and each block's causal key range is cut separately.
pub(super) const BLOCK_ROWS: usize = 64;

/// out[Tq×Dv] (leading dimension ldo) for Tq, Tk, Dv ≥ 1.
pub(super) fn attend(isa: Isa, p: &Problem, out: &mut [f32], ldo: usize, scratch: &mut Vec<f32>) {
    let (tq, tk) = (p.q.rows, p.k.rows);
    let block = BLOCK_ROWS.min(tq);
    if scratch.len() < block * tk + tk {
        scratch.resize(block * tk + tk, 0.0);
    }
    let (scores_buf, mask_buf) = scratch.split_at_mut(block * tk);
    for i0 in (0..tq).step_by(block) {
        let i1 = (i0 + block).min(tq);
        let rows = i1 - i0;
        // Keys seen by the block's last (most-seeing) row; later keys are
        // masked for every row of the block.
        let kv = p.visible_keys(i1 - 1);
        let scores = &mut scores_buf[..rows * kv];
        gemm(
            row_range(p.q, i0, i1),
            row_range(p.k, 0, kv).t(),
            0.0,
            scores,
            kv,
        );
        for (r, row) in scores.chunks_exact_mut(kv).enumerate() {
            let len = p.visible_keys(i0 + r);
            let mask = p.mask_row(i0 + r, 0, len, mask_buf);
            softmax_row_with(isa, &mut row[..len], p.scale, mask);
            row[len..].fill(0.0);
        }
        gemm(
            MatRef::row_major(scores, rows, kv),
            row_range(p.v, 0, kv),
            0.0,
            &mut out[i0 * ldo..],
            ldo,
        );
    }
}
