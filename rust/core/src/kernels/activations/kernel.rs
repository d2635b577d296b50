//! The activation loops, generic over the vector type; instantiated per ISA.

use crate::kernels::simd::{isa_kernel, math, F32Vec};

isa_kernel! {
    pub(super) fn bias_relu(x: &mut [f32], bias: Option<&[f32]>) = bias_relu_generic
}
isa_kernel! {
    pub(super) fn bias_gelu(x: &mut [f32], bias: Option<&[f32]>) = bias_gelu_generic
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

#[inline(always)]
unsafe fn bias_relu_generic<V: F32Vec>(x: &mut [f32], bias: Option<&[f32]>) {
    map_generic::<V, Relu>(x, bias)
}

#[inline(always)]
unsafe fn bias_gelu_generic<V: F32Vec>(x: &mut [f32], bias: Option<&[f32]>) {
    map_generic::<V, Gelu>(x, bias)
}

/// x ← F(x + bias). Caller guarantees `V`'s ISA is available and
/// bias.len() == x.len().
#[inline(always)]
unsafe fn map_generic<V: F32Vec, F: Lanewise>(x: &mut [f32], bias: Option<&[f32]>) {
    let n = x.len();
    let (w, p) = (V::LANES, x.as_mut_ptr());
    let full = n - n % w;
    let rem = n - full;
    match bias {
        None => {
            for i in (0..full).step_by(w) {
                F::apply(V::load(p.add(i))).store(p.add(i));
            }
            if rem > 0 {
                F::apply(V::load_partial(p.add(full), rem, 0.0)).store_partial(p.add(full), rem);
            }
        }
        Some(b) => {
            let bp = b.as_ptr();
            for i in (0..full).step_by(w) {
                F::apply(V::load(p.add(i)).add(V::load(bp.add(i)))).store(p.add(i));
            }
            if rem > 0 {
                let v = V::load_partial(p.add(full), rem, 0.0).add(V::load_partial(
                    bp.add(full),
                    rem,
                    0.0,
                ));
                F::apply(v).store_partial(p.add(full), rem);
            }
        }
    }
}
