//! multi_head_attention: torch.nn.MultiheadAttention's forward, batch first.

use numpy::{PyArrayDyn, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::prelude::*;
use rayon::prelude::*;
use transformer_rs_core::kernels::attention::attention_head;
use transformer_rs_core::kernels::gemm::MatRef;

use super::arrays::{c_slice, c_slice_opt, into_array, value_error, zeroed, zeroed_output};
use super::attention::default_scale;
use super::products::linear_rows;
use crate::errors::compute;

/// query [B, Tq, E], key [B, Tk, E], value [B, Tk, E] → [B, Tq, E]:
/// Q, K, V = projections by in_proj_weight [3E, E] (rows Wq; Wk; Wv) and
/// in_proj_bias [3E]; each of the H heads attends on its D = E/H columns;
/// the heads, concatenated, go through out_proj_weight [E, E] and
/// out_proj_bias [E]. `attn_mask` is ONE additive mask [B or 1, H or 1,
/// Tq or 1, Tk] (ops.py merges key_padding_mask and attn_mask into it).
/// `is_causal` lets query i see keys j ≤ i. A query that may attend to no key
/// gets a zero context (so its output is out_proj_bias).
#[pyfunction]
#[pyo3(signature = (query, key, value, num_heads, in_proj_weight, in_proj_bias, out_proj_weight, out_proj_bias, attn_mask=None, is_causal=false))]
#[allow(clippy::too_many_arguments)]
pub fn multi_head_attention<'py>(
    py: Python<'py>,
    query: PyReadonlyArrayDyn<'py, f32>,
    key: PyReadonlyArrayDyn<'py, f32>,
    value: PyReadonlyArrayDyn<'py, f32>,
    num_heads: usize,
    in_proj_weight: PyReadonlyArrayDyn<'py, f32>,
    in_proj_bias: Option<PyReadonlyArrayDyn<'py, f32>>,
    out_proj_weight: PyReadonlyArrayDyn<'py, f32>,
    out_proj_bias: Option<PyReadonlyArrayDyn<'py, f32>>,
    attn_mask: Option<PyReadonlyArrayDyn<'py, f32>>,
    is_causal: bool,
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    let [b, tq, e] = *query.shape() else {
        return Err(value_error(format!(
            "query: expected shape [B, Tq, E], got {:?}",
            query.shape()
        )));
    };
    let tk = match *key.shape() {
        [kb, tk, ke] if kb == b && ke == e => tk,
        _ => {
            return Err(value_error(format!(
                "key: expected shape [{b}, Tk, {e}], got {:?}",
                key.shape()
            )))
        }
    };
    if value.shape() != [b, tk, e] {
        return Err(value_error(format!(
            "value: expected shape [{b}, {tk}, {e}] like key, got {:?}",
            value.shape()
        )));
    }
    if e == 0 {
        return Err(value_error(
            "query: expected a positive embed dim E, got 0".into(),
        ));
    }
    if num_heads == 0 || e % num_heads != 0 {
        return Err(value_error(format!(
            "num_heads: expected a positive divisor of E = {e}, got {num_heads}"
        )));
    }
    let h = num_heads;
    let expect = |name: &str, shape: &[usize], want: &[usize]| {
        if shape == want {
            Ok(())
        } else {
            Err(value_error(format!(
                "{name}: expected shape {want:?}, got {shape:?}"
            )))
        }
    };
    expect("in_proj_weight", in_proj_weight.shape(), &[3 * e, e])?;
    expect("out_proj_weight", out_proj_weight.shape(), &[e, e])?;
    if let Some(bias) = &in_proj_bias {
        expect("in_proj_bias", bias.shape(), &[3 * e])?;
    }
    if let Some(bias) = &out_proj_bias {
        expect("out_proj_bias", bias.shape(), &[e])?;
    }
    let mask_dims = match &attn_mask {
        None => None,
        Some(mask) => match *mask.shape() {
            [mb, mh, mq, mk] if (mb == b || mb == 1) && (mh == h || mh == 1) && (mq == tq || mq == 1) && mk == tk => {
                Some(MaskDims { per_batch: mb != 1, per_head: mh != 1, rows: mq, h, tk })
            }
            _ => {
                return Err(value_error(format!(
                    "attn_mask: expected an additive mask of shape [{b} or 1, {h} or 1, {tq} or 1, {tk}], got {:?}",
                    mask.shape()
                )))
            }
        },
    };

    let (q_in, k_in, v_in) = (
        c_slice("query", &query)?,
        c_slice("key", &key)?,
        c_slice("value", &value)?,
    );
    let (w_in, w_out) = (
        c_slice("in_proj_weight", &in_proj_weight)?,
        c_slice("out_proj_weight", &out_proj_weight)?,
    );
    let b_in = c_slice_opt("in_proj_bias", &in_proj_bias)?;
    let b_out = c_slice_opt("out_proj_bias", &out_proj_bias)?;
    let mask = c_slice_opt("attn_mask", &attn_mask)?;

    // One projection GEMM per distinct input: self-attention (query = key =
    // value) projects once onto [Q | K | V], cross-attention with key = value
    // onto [K | V]. Identical buffers mean identical inputs.
    let same = |x: &[f32], y: &[f32]| std::ptr::eq(x, y);
    let fuse_qkv = same(q_in, k_in) && same(k_in, v_in);
    let fuse_kv = !fuse_qkv && same(k_in, v_in);
    let mut qkv = zeroed(b * tq * 3 * e * usize::from(fuse_qkv))?;
    let mut q_buf = zeroed(b * tq * e * usize::from(!fuse_qkv))?;
    let mut kv = zeroed(b * tk * 2 * e * usize::from(fuse_kv))?;
    let unfused = !fuse_qkv && !fuse_kv;
    let mut k_buf = zeroed(b * tk * e * usize::from(unfused))?;
    let mut v_buf = zeroed(b * tk * e * usize::from(unfused))?;
    let mut context = zeroed(b * tq * e)?;
    let out_shape = [b, tq, e];
    let mut out = zeroed_output(&out_shape)?;

    compute(py, || {
        // Rows [r0, r1) of the packed in-projection: 0..E is Wq, E..2E Wk, 2E..3E Wv.
        let project = |x: &[f32], r0: usize, r1: usize, y: &mut [f32]| {
            linear_rows(
                x,
                e,
                &w_in[r0 * e..r1 * e],
                b_in.map(|bias| &bias[r0..r1]),
                r1 - r0,
                y,
            );
        };
        let (qp, kp, vp);
        if fuse_qkv {
            project(q_in, 0, 3 * e, &mut qkv);
            (qp, kp, vp) = (
                Heads::of(&qkv, 3 * e, 0, tq),
                Heads::of(&qkv, 3 * e, e, tq),
                Heads::of(&qkv, 3 * e, 2 * e, tq),
            );
        } else if fuse_kv {
            project(q_in, 0, e, &mut q_buf);
            project(k_in, e, 3 * e, &mut kv);
            (qp, kp, vp) = (
                Heads::of(&q_buf, e, 0, tq),
                Heads::of(&kv, 2 * e, 0, tk),
                Heads::of(&kv, 2 * e, e, tk),
            );
        } else {
            project(q_in, 0, e, &mut q_buf);
            project(k_in, e, 2 * e, &mut k_buf);
            project(v_in, 2 * e, 3 * e, &mut v_buf);
            (qp, kp, vp) = (
                Heads::of(&q_buf, e, 0, tq),
                Heads::of(&k_buf, e, 0, tk),
                Heads::of(&v_buf, e, 0, tk),
            );
        }
        let d = e / h;
        let scale = default_scale(d);
        if tq > 0 && tk > 0 {
            // One task per batch item; its heads write their D columns of the
            // item's context rows in place (leading dimension E).
            context
                .par_chunks_mut(tq * e)
                .enumerate()
                .for_each(|(bi, ctx)| {
                    for hi in 0..h {
                        let mask = mask
                            .zip(mask_dims.as_ref())
                            .map(|(m, dims)| dims.view(m, bi, hi, tq));
                        let (q, k, v) =
                            (qp.head(bi, hi, d), kp.head(bi, hi, d), vp.head(bi, hi, d));
                        attention_head(q, k, v, mask, is_causal, scale, &mut ctx[hi * d..], e);
                    }
                });
        }
        linear_rows(&context, e, w_out, b_out, e, &mut out);
        Ok(())
    })?;
    into_array(py, &out_shape, out)
}

/// Where the heads of Q, K or V live in a projection buffer of rows
/// [B·T, width]: head h of batch item b is the T×D block at column
/// `offset + h·D` of item b's rows.
struct Heads<'a> {
    data: &'a [f32],
    width: usize,
    offset: usize,
    rows: usize,
}

impl<'a> Heads<'a> {
    fn of(data: &'a [f32], width: usize, offset: usize, rows: usize) -> Self {
        Heads {
            data,
            width,
            offset,
            rows,
        }
    }

    /// Head `h` of batch item `b`: a [T×D] view, row stride `width`.
    fn head(&self, b: usize, h: usize, d: usize) -> MatRef<'a> {
        let start = b * self.rows * self.width + self.offset + h * d;
        MatRef::new(&self.data[start..], self.rows, d, self.width, 1)
    }
}

/// Layout of the additive mask [B or 1, H or 1, rows = Tq or 1, Tk].
struct MaskDims {
    per_batch: bool,
    per_head: bool,
    rows: usize,
    h: usize,
    tk: usize,
}

impl MaskDims {
    /// The [Tq×Tk] mask of batch item `b`, head `h` (broadcast axes repeat).
    fn view<'a>(&self, mask: &'a [f32], b: usize, h: usize, tq: usize) -> MatRef<'a> {
        let heads = if self.per_head { self.h } else { 1 };
        let item = usize::from(self.per_batch) * b * heads + usize::from(self.per_head) * h;
        let start = item * self.rows * self.tk;
        let row_stride = if self.rows == 1 { 0 } else { self.tk };
        MatRef::new(
            &mask[start..start + self.rows * self.tk],
            tq,
            self.tk,
            row_stride,
            1,
        )
    }
}
