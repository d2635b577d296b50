//! The softmax passes, generic over the vector type; instantiated per ISA.

use crate::kernels::simd::{isa_kernel, math, F32Vec};

isa_kernel! {
    pub(super) fn softmax_row(x: &mut [f32], scale: f32, mask: Option<&[f32]>) = softmax_generic
}
isa_kernel! {
    pub(super) fn log_softmax_row(x: &mut [f32]) = log_softmax_generic
}

const NEG_INF: f32 = f32::NEG_INFINITY;

/// Caller guarantees `V`'s ISA is available and `mask.len() == x.len()`.
#[inline(always)]
unsafe fn softmax_generic<V: F32Vec>(x: &mut [f32], scale: f32, mask: Option<&[f32]>) {
    let n = x.len();
    let (w, p) = (V::LANES, x.as_mut_ptr());
    let full = n - n % w;
    let rem = n - full;
    let neg_inf = V::splat(NEG_INF);
    let vscale = V::splat(scale);

    // Pass 1: x ← z = scale·x + mask (masked stays -inf), max z, and
    // whether any z is NaN (max skips NaNs; torch's row is then all NaN).
    let mut vmax = neg_inf;
    let (zero, one) = (V::splat(0.0), V::splat(1.0));
    let mut vnan = zero;
    match mask {
        None => {
            for i in (0..full).step_by(w) {
                let z = V::load(p.add(i)).mul(vscale);
                z.store(p.add(i));
                vmax = vmax.max(z);
                vnan = vnan.add(z.select_eq(z, zero, one));
            }
            if rem > 0 {
                V::load_partial(p.add(full), rem, 0.0)
                    .mul(vscale)
                    .store_partial(p.add(full), rem);
                let z = V::load_partial(p.add(full), rem, NEG_INF);
                vmax = vmax.max(z);
                vnan = vnan.add(z.select_eq(z, zero, one));
            }
        }
        Some(m) => {
            let mp = m.as_ptr();
            for i in (0..full).step_by(w) {
                let mv = V::load(mp.add(i));
                let z = V::load(p.add(i)).mul_add(vscale, mv);
                let z = mv.select_eq(neg_inf, neg_inf, z);
                z.store(p.add(i));
                vmax = vmax.max(z);
                vnan = vnan.add(z.select_eq(z, zero, one));
            }
            if rem > 0 {
                // Padding lanes get mask -inf, so they come out -inf.
                let mv = V::load_partial(mp.add(full), rem, NEG_INF);
                let z = V::load_partial(p.add(full), rem, 0.0).mul_add(vscale, mv);
                let z = mv.select_eq(neg_inf, neg_inf, z);
                z.store_partial(p.add(full), rem);
                vmax = vmax.max(z);
                vnan = vnan.add(z.select_eq(z, zero, one));
            }
        }
    }
    if vnan.reduce_add() > 0.0 {
        x.fill(f32::NAN);
        return;
    }
    let max = vmax.reduce_max();
    if max == NEG_INF {
        x.fill(0.0);
        return;
    }
    if max == f32::INFINITY {
        let count = x.iter().filter(|&&z| z == f32::INFINITY).count() as f32;
        for z in x.iter_mut() {
            *z = if *z == f32::INFINITY {
                1.0 / count
            } else {
                0.0
            };
        }
        return;
    }

    // Pass 2: x ← e^{z - max} and their sum.
    let sum = math::exp_sub_sum::<V>(x, max);

    // Pass 3: normalise. sum ≥ 1 (the max contributes e⁰).
    let inv = V::splat(1.0 / sum);
    for i in (0..full).step_by(w) {
        V::load(p.add(i)).mul(inv).store(p.add(i));
    }
    if rem > 0 {
        V::load_partial(p.add(full), rem, 0.0)
            .mul(inv)
            .store_partial(p.add(full), rem);
    }
}

/// log_softmax(x) = (x - max) - ln Σ e^{x - max}. Caller guarantees `V`'s
/// ISA is available.
#[inline(always)]
unsafe fn log_softmax_generic<V: F32Vec>(x: &mut [f32]) {
    let n = x.len();
    let (w, p) = (V::LANES, x.as_mut_ptr());
    let full = n - n % w;
    let rem = n - full;

    // Max, and whether any x is NaN (max skips NaNs; torch's row is then
    // all NaN).
    let mut vmax = V::splat(NEG_INF);
    let (zero, one) = (V::splat(0.0), V::splat(1.0));
    let mut vnan = zero;
    for i in (0..full).step_by(w) {
        let v = V::load(p.add(i));
        vmax = vmax.max(v);
        vnan = vnan.add(v.select_eq(v, zero, one));
    }
    if rem > 0 {
        let v = V::load_partial(p.add(full), rem, NEG_INF);
        vmax = vmax.max(v);
        vnan = vnan.add(v.select_eq(v, zero, one));
    }
    if vnan.reduce_add() > 0.0 {
        x.fill(f32::NAN);
        return;
    }
    let max = vmax.reduce_max();
    if max == NEG_INF {
        return;
    }

    let vm = V::splat(max);
    let mut vsum = V::splat(0.0);
    for i in (0..full).step_by(w) {
        vsum = vsum.add(math::exp(V::load(p.add(i)).sub(vm)));
    }
    if rem > 0 {
        vsum = vsum.add(math::exp(
            V::load_partial(p.add(full), rem, NEG_INF).sub(vm),
        ));
    }

    let log_sum = V::splat(vsum.reduce_add().ln());
    for i in (0..full).step_by(w) {
        V::load(p.add(i)).sub(vm).sub(log_sum).store(p.add(i));
    }
    if rem > 0 {
        V::load_partial(p.add(full), rem, 0.0)
            .sub(vm)
            .sub(log_sum)
            .store_partial(p.add(full), rem);
    }
}
