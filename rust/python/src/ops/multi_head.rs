//! multi_head_attention: torch.nn.MultiheadAttention's forward, batch first.

use numpy::{PyArrayDyn, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::prelude::*;
use transformer_rs_core::nn::{AttnMask, AttnShape, Layout, Masks, MultiHeadAttention};

use super::arrays::{c_slice, c_slice_opt, element_count, into_array, value_error};
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
    let mask_layout = match &attn_mask {
        None => None,
        Some(mask) => match *mask.shape() {
            [mb, mh, mq, mk] if (mb == b || mb == 1) && (mh == h || mh == 1) && (mq == tq || mq == 1) && mk == tk => {
                Some((mb != 1, mh != 1, mq != 1))
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
    let out_shape = [b, tq, e];
    element_count(&out_shape)?;

    let out = compute(py, || {
        // Identical buffers mean identical inputs: self-attention projects
        // once onto [Q | K | V], cross-attention (key = value) onto [K | V].
        let layout = Layout::for_inputs(q_in, k_in, v_in);
        let mha = MultiHeadAttention::from_torch(h, e, w_in, b_in, w_out, b_out, layout)?;
        let attn_mask = mask
            .zip(mask_layout)
            .map(|(data, (per_batch, per_head, per_query))| AttnMask {
                data,
                per_batch,
                per_head,
                per_query,
            });
        let masks = Masks {
            key_padding_mask: None,
            attn_mask,
            causal: is_causal,
        };
        let shape = AttnShape {
            batch: b,
            query_len: tq,
            key_len: tk,
        };
        mha.forward(q_in, k_in, v_in, shape, &masks)
    })?;
    into_array(py, &out_shape, out)
}
