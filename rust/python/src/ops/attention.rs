//! scaled_dot_product_attention over broadcast batch axes.

use numpy::{PyArrayDyn, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::prelude::*;
use rayon::prelude::*;
use transformer_rs_core::kernels::attention::attention_head;
use transformer_rs_core::kernels::gemm::MatRef;

use super::arrays::{c_slice, c_slice_opt, value_error, Output};
use super::batch::{broadcast, check_broadcasts_to, item_offsets, split_matrix};
use crate::errors::compute;

/// softmax(q·kᵀ·scale + mask) · v per batch item: q [..., Tq, D],
/// k [..., Tk, D], v [..., Tk, Dv] → [..., Tq, Dv], batch axes broadcast.
/// `attn_mask` is additive (ops.py turns bool masks into 0 / -inf) with shape
/// [..., Tq or 1, Tk], its batch axes broadcasting to the output's.
/// `scale` defaults to 1/sqrt(D). A query that may attend to no key gets zeros.
#[pyfunction]
#[pyo3(signature = (q, k, v, attn_mask=None, is_causal=false, scale=None))]
#[allow(clippy::too_many_arguments)]
pub fn scaled_dot_product_attention<'py>(
    py: Python<'py>,
    q: PyReadonlyArrayDyn<'py, f32>,
    k: PyReadonlyArrayDyn<'py, f32>,
    v: PyReadonlyArrayDyn<'py, f32>,
    attn_mask: Option<PyReadonlyArrayDyn<'py, f32>>,
    is_causal: bool,
    scale: Option<f64>,
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    let (q_batch, tq, d) = split_matrix("q", "[..., Tq, D]", q.shape())?;
    let (k_batch, tk, k_d) = split_matrix("k", "[..., Tk, D]", k.shape())?;
    let (v_batch, v_tk, dv) = split_matrix("v", "[..., Tk, Dv]", v.shape())?;
    if k_d != d {
        return Err(value_error(format!(
            "k: expected shape [..., Tk, {d}] to match q's last axis, got {:?}",
            k.shape()
        )));
    }
    if v_tk != tk {
        return Err(value_error(format!(
            "v: expected shape [..., {tk}, Dv] to match k's Tk, got {:?}",
            v.shape()
        )));
    }
    let batch = broadcast(&[("q", q_batch), ("k", k_batch), ("v", v_batch)])?;
    let mask_rows = match &attn_mask {
        None => 0,
        Some(mask) => {
            let (m_batch, rows, cols) = split_matrix("attn_mask", "[..., Tq, Tk]", mask.shape())?;
            if cols != tk || (rows != tq && rows != 1) {
                return Err(value_error(format!(
                    "attn_mask: expected shape [..., {tq} or 1, {tk}], got {:?}",
                    mask.shape()
                )));
            }
            check_broadcasts_to("attn_mask", m_batch, &batch)?;
            rows
        }
    };
    let scale = scale.map_or_else(|| default_scale(d), |s| s as f32);
    let mut out = Output::zeros(py, &[batch.as_slice(), &[tq, dv]].concat())?;
    let o = out.data()?;
    if o.is_empty() {
        return Ok(out.into_array());
    }
    let q_items = item_offsets(&batch, q_batch, tq * d);
    let k_items = item_offsets(&batch, k_batch, tk * d);
    let v_items = item_offsets(&batch, v_batch, tk * dv);
    let mask_items = attn_mask
        .as_ref()
        .map(|m| item_offsets(&batch, &m.shape()[..m.ndim() - 2], mask_rows * tk));
    let (q, k, v) = (c_slice("q", &q)?, c_slice("k", &k)?, c_slice("v", &v)?);
    let mask = c_slice_opt("attn_mask", &attn_mask)?;
    compute(py, || {
        if tk == 0 {
            return Ok(()); // no keys: every query gets zeros
        }
        o.par_chunks_mut(tq * dv).enumerate().for_each(|(i, o)| {
            let mask = mask.zip(mask_items.as_ref()).map(|(m, items)| {
                // A single mask row is broadcast to every query by row stride 0.
                let row_stride = if mask_rows == 1 { 0 } else { tk };
                MatRef::new(
                    &m[items[i]..items[i] + mask_rows * tk],
                    tq,
                    tk,
                    row_stride,
                    1,
                )
            });
            attention_head(
                MatRef::row_major(&q[q_items[i]..q_items[i] + tq * d], tq, d),
                MatRef::row_major(&k[k_items[i]..k_items[i] + tk * d], tk, d),
                MatRef::row_major(&v[v_items[i]..v_items[i] + tk * dv], tk, dv),
                mask,
                is_causal,
                scale,
                o,
                dv,
            );
        });
        Ok(())
    })?;
    Ok(out.into_array())
}

/// 1/sqrt(D), PyTorch's default; 1 for D = 0, where every score is 0 anyway.
fn default_scale(d: usize) -> f32 {
    if d == 0 {
        1.0
    } else {
        (1.0 / (d as f64).sqrt()) as f32
    }
}
