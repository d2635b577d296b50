//! Scaled-dot-product attention for one (batch, head) item. PLACEHOLDER BODY.

use super::gemm::{gemm, MatRef};
use super::softmax::softmax_row;

/// out[Tq×Dv] (row-major, leading dimension `ldo`) =
/// softmax(scale · q kᵀ + mask) · v, with q [Tq×D], k [Tk×D], v [Tk×Dv]
/// (any strides, so heads are views into fused QKV buffers), `mask` an
/// additive [Tq×Tk] view (row_stride 0 broadcasts one row to every query,
/// -inf = may not attend), and `causal` letting query i see keys j ≤ i only.
/// A query that may attend to no key gets a row of zeros.
#[allow(clippy::too_many_arguments)]
pub fn attention_head(
    q: MatRef,
    k: MatRef,
    v: MatRef,
    mask: Option<MatRef>,
    causal: bool,
    scale: f32,
    out: &mut [f32],
    ldo: usize,
) {
    let (tq, tk) = (q.rows, k.rows);
    assert_eq!(q.cols, k.cols, "attention_head: q and k head dims differ");
    assert_eq!(v.rows, tk, "attention_head: v rows != k rows");
    if let Some(m) = &mask {
        assert!(
            m.rows == tq && m.cols == tk,
            "attention_head: mask is {}x{}, expected {tq}x{tk}",
            m.rows,
            m.cols
        );
    }
    let mut scores = vec![0.0f32; tq * tk];
    gemm(q, k.t(), 0.0, &mut scores, tk);
    let mut row_mask = vec![0.0f32; tk];
    for i in 0..tq {
        for (j, rm) in row_mask.iter_mut().enumerate() {
            let m = mask.as_ref().map_or(0.0, |m| m.at(i, j));
            *rm = if causal && j > i {
                f32::NEG_INFINITY
            } else {
                m
            };
        }
        softmax_row(&mut scores[i * tk..(i + 1) * tk], scale, Some(&row_mask));
    }
    gemm(MatRef::row_major(&scores, tq, tk), v, 0.0, out, ldo);
}
