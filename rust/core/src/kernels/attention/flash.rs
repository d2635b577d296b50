//! The long-sequence path: an online ("flash") softmax over key blocks.
//!
//! Query rows in blocks of [`BLOCK_ROWS`]; for each block, keys in blocks
//! of [`KEY_BLOCK`]. Per key block: scores = q kᵀ by GEMM into a
//! [rows × KEY_BLOCK] buffer, then per row z = scale·s + mask, a running
//! max m and sum l, e^{z - m} in place, the row's accumulated output rescaled
//! by e^{m_old - m_new}, and out += P v by GEMM (beta = 1). Rows are divided
//! by l at the end. Scratch is O(BLOCK_ROWS · KEY_BLOCK) whatever Tk is: no
//! [Tq × Tk] (nor [64 × Tk]) score matrix, so the working set stays in L2.

use super::blocked::BLOCK_ROWS;
use super::{row_range, Problem};
use crate::kernels::dispatch::Isa;
use crate::kernels::gemm::{gemm, MatRef};
use crate::kernels::simd::{isa_kernel, math, F32Vec};

/// Keys per block: a 64 × 256 score block is 64 KiB.
pub(super) const KEY_BLOCK: usize = 256;

isa_kernel! {
    fn scale_mask_max(z: &mut [f32], scale: f32, mask: Option<&[f32]>) -> f32 = scale_mask_max_generic
}
isa_kernel! {
    fn exp_sub_sum(z: &mut [f32], max: f32) -> f32 = exp_sub_sum_generic
}
isa_kernel! {
    fn scale_row(x: &mut [f32], factor: f32) = scale_row_generic
}

/// out[Tq×Dv] (leading dimension ldo) for Tq, Tk, Dv ≥ 1.
pub(super) fn attend(isa: Isa, p: &Problem, out: &mut [f32], ldo: usize, scratch: &mut Vec<f32>) {
    let (tq, dv) = (p.q.rows, p.v.cols);
    let block = BLOCK_ROWS.min(tq);
    let key_block = KEY_BLOCK.min(p.k.rows);
    // scores [block × key_block], mask row [key_block], running max and sum [block].
    let need = block * key_block + key_block + 2 * block;
    if scratch.len() < need {
        scratch.resize(need, 0.0);
    }
    let (scores_buf, rest) = scratch.split_at_mut(block * key_block);
    let (mask_buf, rest) = rest.split_at_mut(key_block);
    let (max_buf, sum_buf) = rest.split_at_mut(block);
    for i0 in (0..tq).step_by(block) {
        let i1 = (i0 + block).min(tq);
        let rows = i1 - i0;
        let (max, sum) = (&mut max_buf[..rows], &mut sum_buf[..rows]);
        max.fill(f32::NEG_INFINITY);
        sum.fill(0.0);
        for r in 0..rows {
            out[(i0 + r) * ldo..][..dv].fill(0.0);
        }
        // Keys seen by the block's last (most-seeing) row.
        let kv_end = p.visible_keys(i1 - 1);
        for j0 in (0..kv_end).step_by(key_block) {
            let cols = key_block.min(kv_end - j0);
            let scores = &mut scores_buf[..rows * cols];
            gemm(
                row_range(p.q, i0, i1),
                row_range(p.k, j0, j0 + cols).t(),
                0.0,
                scores,
                cols,
            );
            for (r, row) in scores.chunks_exact_mut(cols).enumerate() {
                let i = i0 + r;
                let len = p.visible_keys(i).saturating_sub(j0).min(cols);
                if len == 0 {
                    // Causal: this row sees none of the block's keys.
                    row.fill(0.0);
                    continue;
                }
                let z = &mut row[..len];
                let mask = p.mask_row(i, j0, len, mask_buf);
                // SAFETY: `isa` was asserted available by `Problem::run`;
                // the mask row, if any, has `len` entries like z.
                let block_max = unsafe { scale_mask_max(isa, z, p.scale, mask) };
                let new_max = max[r].max(block_max);
                if new_max == f32::NEG_INFINITY {
                    // Nothing visible yet for this row: it adds nothing.
                    row.fill(0.0);
                    continue;
                }
                // SAFETY: as above; z is the row's visible prefix.
                let block_sum = unsafe { exp_sub_sum(isa, z, new_max) };
                row[len..].fill(0.0);
                // e^{-inf} = 0 when the row had no visible key before.
                let rescale = (max[r] - new_max).exp();
                if rescale != 1.0 {
                    // SAFETY: as above; the slice is the row's Dv outputs.
                    unsafe { scale_row(isa, &mut out[i * ldo..][..dv], rescale) };
                }
                sum[r] = sum[r] * rescale + block_sum;
                max[r] = new_max;
            }
            gemm(
                MatRef::row_major(scores, rows, cols),
                row_range(p.v, j0, j0 + cols),
                1.0,
                &mut out[i0 * ldo..],
                ldo,
            );
        }
        for (r, &l) in sum.iter().enumerate() {
            let row = &mut out[(i0 + r) * ldo..][..dv];
            // l ≥ 1 once a key was visible (the max contributes e⁰).
            let inv = if l > 0.0 { 1.0 / l } else { 0.0 };
            // SAFETY: `isa` was asserted available by `Problem::run`.
            unsafe { scale_row(isa, row, inv) };
        }
    }
}

/// z ← scale·z + mask (masked positions -inf, +inf clamped to f32::MAX so
/// that e^{z - max} stays defined), returns max z (-inf for an empty or
/// fully masked row). Caller guarantees `mask.len() == z.len()`.
#[inline(always)]
unsafe fn scale_mask_max_generic<V: F32Vec>(
    z: &mut [f32],
    scale: f32,
    mask: Option<&[f32]>,
) -> f32 {
    let n = z.len();
    let (w, p) = (V::LANES, z.as_mut_ptr());
    let full = n - n % w;
    let rem = n - full;
    let vscale = V::splat(scale);
    let mut vmax = V::splat(f32::NEG_INFINITY);
    let mp = mask.map(<[f32]>::as_ptr);
    for i in (0..full).step_by(w) {
        vmax = vmax.max(scale_mask_lanes::<V>(p, mp, i, w, vscale));
    }
    if rem > 0 {
        vmax = vmax.max(scale_mask_lanes::<V>(p, mp, full, rem, vscale));
    }
    vmax.reduce_max()
}

/// `lanes` values of z from `at` ← scale·z + mask (clamped, see
/// [`scale_mask_max_generic`]); returns them with -inf in unused lanes.
#[inline(always)]
unsafe fn scale_mask_lanes<V: F32Vec>(
    p: *mut f32,
    mask: Option<*const f32>,
    at: usize,
    lanes: usize,
    scale: V,
) -> V {
    let neg_inf = V::splat(f32::NEG_INFINITY);
    let whole = lanes == V::LANES;
    let x = load_lanes::<V>(p.add(at), lanes, 0.0);
    let z = match mask {
        None => x.mul(scale),
        Some(mp) => {
            let m = load_lanes::<V>(mp.add(at), lanes, f32::NEG_INFINITY);
            m.select_eq(neg_inf, neg_inf, x.mul_add(scale, m))
        }
    }
    .min(V::splat(f32::MAX));
    if whole {
        z.store(p.add(at));
        z
    } else {
        z.store_partial(p.add(at), lanes);
        // The unused lanes must not raise the max.
        V::load_partial(p.add(at), lanes, f32::NEG_INFINITY)
    }
}

/// `lanes` ≤ LANES values at `p`, the other lanes `fill`.
#[inline(always)]
unsafe fn load_lanes<V: F32Vec>(p: *const f32, lanes: usize, fill: f32) -> V {
    if lanes == V::LANES {
        V::load(p)
    } else {
        V::load_partial(p, lanes, fill)
    }
}

/// z ← e^{z - max}, returns Σ z (max finite, z ≤ max or -inf).
#[inline(always)]
unsafe fn exp_sub_sum_generic<V: F32Vec>(z: &mut [f32], max: f32) -> f32 {
    math::exp_sub_sum::<V>(z, max)
}

/// x ← factor · x.
#[inline(always)]
unsafe fn scale_row_generic<V: F32Vec>(x: &mut [f32], factor: f32) {
    let n = x.len();
    let (w, p) = (V::LANES, x.as_mut_ptr());
    let full = n - n % w;
    let f = V::splat(factor);
    for i in (0..full).step_by(w) {
        V::load(p.add(i)).mul(f).store(p.add(i));
    }
    if n > full {
        V::load_partial(p.add(full), n - full, 0.0)
            .mul(f)
            .store_partial(p.add(full), n - full);
    }
}
