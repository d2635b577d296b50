//! The activation loops, generic over the vector type; instantiated per ISA.

use crate::kernels::simd::{isa_kernel, math, F32Vec};

/// Rows of a tile an epilogue runs over: row r < `rows` is the `width` f32
/// at `c + r·ldc`; bias (`width` f32) and residual (row r at
/// `residual + r·ldr`) are absent when null.
#[derive(Clone, Copy)]
pub(super) struct Tile {
    pub c: *mut f32,
    pub ldc: usize,
    pub rows: usize,
    pub width: usize,
    pub bias: *const f32,
    pub residual: *const f32,
    pub ldr: usize,
}

isa_kernel! {
    pub(super) fn relu_tile(t: Tile) = relu_generic
}
isa_kernel! {
    pub(super) fn gelu_tile(t: Tile) = gelu_generic
}
isa_kernel! {
    pub(super) fn identity_tile(t: Tile) = identity_generic
}

/// A lane-wise function of one vector.
trait Lanewise {
    unsafe fn apply<V: F32Vec>(v: V) -> V;
}

struct Relu;
impl Lanewise for Relu {
    #[inline(always)]
    unsafe fn apply<V: F32Vec>(v: V) -> V {
        // Zero first: x86's max returns its second operand when either is
        // NaN, so a NaN input stays NaN, as in torch.
        V::splat(0.0).max(v)
    }
}

struct Gelu;
impl Lanewise for Gelu {
    #[inline(always)]
    unsafe fn apply<V: F32Vec>(v: V) -> V {
        math::gelu(v)
    }
}

struct Identity;
impl Lanewise for Identity {
    #[inline(always)]
    unsafe fn apply<V: F32Vec>(v: V) -> V {
        v
    }
}

#[inline(always)]
unsafe fn relu_generic<V: F32Vec>(t: Tile) {
    map_generic::<V, Relu>(t)
}

#[inline(always)]
unsafe fn gelu_generic<V: F32Vec>(t: Tile) {
    map_generic::<V, Gelu>(t)
}

#[inline(always)]
unsafe fn identity_generic<V: F32Vec>(t: Tile) {
    map_generic::<V, Identity>(t)
}

/// Every row of `t`: x ← F(x + bias) + residual, in one pass. Caller
/// guarantees `V`'s ISA is available and `Tile`'s contract.
#[inline(always)]
unsafe fn map_generic<V: F32Vec, F: Lanewise>(t: Tile) {
    match (t.bias.is_null(), t.residual.is_null()) {
        (true, true) => map_rows::<V, F, false, false>(t),
        (false, true) => map_rows::<V, F, true, false>(t),
        (true, false) => map_rows::<V, F, false, true>(t),
        (false, false) => map_rows::<V, F, true, true>(t),
    }
}

/// [`map_generic`] with the parts present fixed at compile time.
#[inline(always)]
unsafe fn map_rows<V: F32Vec, F: Lanewise, const BIAS: bool, const RESIDUAL: bool>(t: Tile) {
    let (w, n, bp) = (V::LANES, t.width, t.bias);
    let full = n - n % w;
    let rem = n - full;
    for r in 0..t.rows {
        let p = t.c.add(r * t.ldc);
        let rp = t.residual.wrapping_add(r * t.ldr);
        for i in (0..full).step_by(w) {
            let mut v = V::load(p.add(i));
            if BIAS {
                v = v.add(V::load(bp.add(i)));
            }
            v = F::apply(v);
            if RESIDUAL {
                v = v.add(V::load(rp.add(i)));
            }
            v.store(p.add(i));
        }
        if rem > 0 {
            let mut v = V::load_partial(p.add(full), rem, 0.0);
            if BIAS {
                v = v.add(V::load_partial(bp.add(full), rem, 0.0));
            }
            v = F::apply(v);
            if RESIDUAL {
                v = v.add(V::load_partial(rp.add(full), rem, 0.0));
            }
            v.store_partial(p.add(full), rem);
        }
    }
}
