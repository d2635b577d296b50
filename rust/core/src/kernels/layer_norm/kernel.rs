//! The layer-norm passes, generic over the vector type; instantiated per ISA.

use crate::kernels::simd::{isa_kernel, F32Vec};

isa_kernel! {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn layer_norm_row(
        x: *const f32,
        residual: Option<*const f32>,
        out: *mut f32,
        e: usize,
        gamma: &[f32],
        beta: &[f32],
        eps: f32,
    ) = layer_norm_generic
}

/// out = LN(x [+ residual]) over E elements.
///
/// Corrected two-pass: pass 1 gives an approximate mean m₀ (f32 sum); pass 2
/// sums d = v - m₀ and d², both small when the mean is large, so the mean
/// is m₀ + Σd/E (kept as two f32s) and var = Σd²/E - (Σd/E)² loses nothing to
/// cancellation. Pass 3 normalises ((v - m₀) - Σd/E).
///
/// Caller guarantees: `V`'s ISA is available; x, out, residual (if any),
/// gamma, beta hold E elements; out may equal x (each element is read before
/// it is written, at the same index) but must not otherwise overlap.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn layer_norm_generic<V: F32Vec>(
    x: *const f32,
    residual: Option<*const f32>,
    out: *mut f32,
    e: usize,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
) {
    if e == 0 {
        return;
    }
    let w = V::LANES;
    let full = e - e % w;
    let rem = e - full;
    let (g, b) = (gamma.as_ptr(), beta.as_ptr());

    // Pass 1: v = x (+ residual, stored to out), Σ(v - v₀). Shifting by the
    // first element makes a constant row's m₀ exact (then d = 0 below).
    let v0 = match residual {
        None => *x,
        Some(r) => *x + *r,
    };
    let vv0 = V::splat(v0);
    let mut vsum = V::splat(0.0);
    let src = match residual {
        None => {
            for i in (0..full).step_by(w) {
                vsum = vsum.add(V::load(x.add(i)).sub(vv0));
            }
            if rem > 0 {
                vsum = vsum.add(V::load_partial(x.add(full), rem, v0).sub(vv0));
            }
            x
        }
        Some(r) => {
            for i in (0..full).step_by(w) {
                let v = V::load(x.add(i)).add(V::load(r.add(i)));
                v.store(out.add(i));
                vsum = vsum.add(v.sub(vv0));
            }
            if rem > 0 {
                let v = V::load_partial(x.add(full), rem, v0).add(V::load_partial(
                    r.add(full),
                    rem,
                    0.0,
                ));
                v.store_partial(out.add(full), rem);
                vsum = vsum.add(v.sub(vv0));
            }
            out as *const f32
        }
    };
    let inv_e = 1.0 / e as f32;
    let m0 = v0 + vsum.reduce_add() * inv_e;

    // Pass 2: Σd, Σd² with d = v - m₀ (padding lanes hold m₀, so d = 0).
    let vm0 = V::splat(m0);
    let (mut s1, mut s2) = (V::splat(0.0), V::splat(0.0));
    for i in (0..full).step_by(w) {
        let d = V::load(src.add(i)).sub(vm0);
        s1 = s1.add(d);
        s2 = d.mul_add(d, s2);
    }
    if rem > 0 {
        let d = V::load_partial(src.add(full), rem, m0).sub(vm0);
        s1 = s1.add(d);
        s2 = d.mul_add(d, s2);
    }
    let mean_lo = s1.reduce_add() * inv_e;
    let var = (s2.reduce_add() * inv_e - mean_lo * mean_lo).max(0.0);
    let inv_std = V::splat(1.0 / (var + eps).sqrt());

    // Pass 3: out = ((v - m₀) - mean_lo) · inv_std · gamma + beta.
    let vlo = V::splat(mean_lo);
    for i in (0..full).step_by(w) {
        let y = V::load(src.add(i)).sub(vm0).sub(vlo).mul(inv_std);
        y.mul_add(V::load(g.add(i)), V::load(b.add(i)))
            .store(out.add(i));
    }
    if rem > 0 {
        let y = V::load_partial(src.add(full), rem, 0.0)
            .sub(vm0)
            .sub(vlo)
            .mul(inv_std);
        let gv = V::load_partial(g.add(full), rem, 0.0);
        y.mul_add(gv, V::load_partial(b.add(full), rem, 0.0))
            .store_partial(out.add(full), rem);
    }
}
