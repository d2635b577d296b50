//! The Tq = 1 path (a decoder step against a KV cache): scores by vector dot
//! products, softmax, then a weighted sum of V rows. No GEMM, no packing.

use super::Problem;
use crate::kernels::dispatch::Isa;
use crate::kernels::gemm::MatRef;
use crate::kernels::simd::{isa_kernel, F32Vec};
use crate::kernels::softmax::softmax_row_with;

isa_kernel! {
    fn key_scores(q: &[f32], k: MatRef, scores: &mut [f32]) = key_scores_generic
}
isa_kernel! {
    fn weighted_rows(p: &[f32], v: MatRef, out: &mut [f32]) = weighted_rows_generic
}

/// out[Dv] for one query (Tq = 1), Tk, Dv ≥ 1, unit column strides
/// (`Problem::decode_applies`).
pub(super) fn attend(isa: Isa, p: &Problem, out: &mut [f32], scratch: &mut Vec<f32>) {
    let len = p.visible_keys(0);
    if scratch.len() < 2 * len {
        scratch.resize(2 * len, 0.0);
    }
    let (scores, mask_buf) = scratch.split_at_mut(len);
    let q = &p.q.data[..p.q.cols];
    // SAFETY: `isa` was asserted available by `Problem::run`. q holds D
    // contiguous values (unit col stride, checked view); k is a checked view
    // with unit col stride and at least `len` rows of D values.
    unsafe { key_scores(isa, q, p.k, scores) };
    softmax_row_with(isa, scores, p.scale, p.mask_row(0, 0, len, mask_buf));
    // SAFETY: as above; v is a checked view with unit col stride, ≥ len rows
    // of Dv = out.len() values.
    unsafe { weighted_rows(isa, scores, p.v, out) };
}

/// scores[j] = q · k_j for j < scores.len(). Four keys at a time so four
/// independent FMA chains hide the FMA latency.
#[inline(always)]
unsafe fn key_scores_generic<V: F32Vec>(q: &[f32], k: MatRef, scores: &mut [f32]) {
    let d = k.cols;
    if d == 0 {
        // Empty head dim: every score is 0 (and rows may not be addressable).
        scores.fill(0.0);
        return;
    }
    let w = V::LANES;
    let full = d - d % w;
    let rem = d - full;
    let (qp, kp) = (q.as_ptr(), k.data.as_ptr());
    let row = |j: usize| kp.add(j * k.row_stride);
    let n = scores.len();
    let mut j = 0;
    while j + 4 <= n {
        let (k0, k1, k2, k3) = (row(j), row(j + 1), row(j + 2), row(j + 3));
        let zero = V::splat(0.0);
        let (mut a0, mut a1, mut a2, mut a3) = (zero, zero, zero, zero);
        for c in (0..full).step_by(w) {
            let qv = V::load(qp.add(c));
            a0 = V::load(k0.add(c)).mul_add(qv, a0);
            a1 = V::load(k1.add(c)).mul_add(qv, a1);
            a2 = V::load(k2.add(c)).mul_add(qv, a2);
            a3 = V::load(k3.add(c)).mul_add(qv, a3);
        }
        if rem > 0 {
            let qv = V::load_partial(qp.add(full), rem, 0.0);
            a0 = V::load_partial(k0.add(full), rem, 0.0).mul_add(qv, a0);
            a1 = V::load_partial(k1.add(full), rem, 0.0).mul_add(qv, a1);
            a2 = V::load_partial(k2.add(full), rem, 0.0).mul_add(qv, a2);
            a3 = V::load_partial(k3.add(full), rem, 0.0).mul_add(qv, a3);
        }
        scores[j] = a0.reduce_add();
        scores[j + 1] = a1.reduce_add();
        scores[j + 2] = a2.reduce_add();
        scores[j + 3] = a3.reduce_add();
        j += 4;
    }
    for (jj, s) in scores.iter_mut().enumerate().skip(j) {
        let kj = row(jj);
        let mut a = V::splat(0.0);
        for c in (0..full).step_by(w) {
            a = V::load(kj.add(c)).mul_add(V::load(qp.add(c)), a);
        }
        if rem > 0 {
            a = V::load_partial(kj.add(full), rem, 0.0)
                .mul_add(V::load_partial(qp.add(full), rem, 0.0), a);
        }
        *s = a.reduce_add();
    }
}

/// out[Dv] = Σ_j p[j]·v_j over j < p.len(), skipping p[j] = 0 (masked keys).
/// Columns in strips of four vectors held in registers across all keys.
#[inline(always)]
unsafe fn weighted_rows_generic<V: F32Vec>(p: &[f32], v: MatRef, out: &mut [f32]) {
    let dv = out.len();
    let w = V::LANES;
    let (vp, op) = (v.data.as_ptr(), out.as_mut_ptr());
    let row = |j: usize| vp.add(j * v.row_stride);
    let mut c = 0;
    while c + 4 * w <= dv {
        let zero = V::splat(0.0);
        let (mut a0, mut a1, mut a2, mut a3) = (zero, zero, zero, zero);
        for (j, &pj) in p.iter().enumerate() {
            if pj == 0.0 {
                continue;
            }
            let (s, r) = (V::splat(pj), row(j).add(c));
            a0 = V::load(r).mul_add(s, a0);
            a1 = V::load(r.add(w)).mul_add(s, a1);
            a2 = V::load(r.add(2 * w)).mul_add(s, a2);
            a3 = V::load(r.add(3 * w)).mul_add(s, a3);
        }
        a0.store(op.add(c));
        a1.store(op.add(c + w));
        a2.store(op.add(c + 2 * w));
        a3.store(op.add(c + 3 * w));
        c += 4 * w;
    }
    while c < dv {
        let width = w.min(dv - c);
        let mut a = V::splat(0.0);
        for (j, &pj) in p.iter().enumerate() {
            if pj == 0.0 {
                continue;
            }
            let r = row(j).add(c);
            let vj = if width == w {
                V::load(r)
            } else {
                V::load_partial(r, width, 0.0)
            };
            a = vj.mul_add(V::splat(pj), a);
        }
        if width == w {
            a.store(op.add(c));
        } else {
            a.store_partial(op.add(c), width);
        }
        c += width;
    }
}
