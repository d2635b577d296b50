//! NEON micro-kernel (aarch64): a strip of 16 columns is four q registers.
//!
//! Big tile 6 × 16: 24 accumulators + 4 B vectors of the 32 q registers.
//! Thin tiles widen to 64 columns for one row.

use super::{check_gemv, generic, tiles, BPanel, MicroKernel};
use crate::kernels::simd::neon::F32x4;

pub(in crate::kernels::gemm) struct Neon;

impl MicroKernel for Neon {
    const MR: usize = 6;
    const STRIPS: usize = 1;
    const MC: usize = 120;
    const KC: usize = 256;
    const NC: usize = 2048;

    tiles! {
        1 => [1, 2, 4],
        2 => [1, 2],
        3 => [1],
        4 => [1],
        5 => [1],
        6 => [1],
    }

    unsafe fn gemv(a: &[f32], b: &[f32], ldb: usize, y: &mut [f32]) {
        check_gemv(a, b, ldb, y.len());
        // SAFETY: the caller guarantees the ISA; `check_gemv` the bounds.
        unsafe { gemv(a, b, ldb, y) }
    }
}

// GEMV: 16 accumulators, a broadcast and loads fit the register file.
generic::isa_entry_points!(F32x4, "neon", gemv_vectors: 16);
