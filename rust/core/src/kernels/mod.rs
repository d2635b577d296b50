//! Compute kernels on f32 slices. Each kernel module has a safe entry point
//! that checks its preconditions and dispatches on [`dispatch::Isa`], the
//! per-ISA `#[target_feature]` implementations, a plain scalar reference, and
//! one test suite run against every ISA the host supports.

pub mod activations;
pub mod attention;
pub mod bf16_gemv;
pub mod dispatch;
pub mod gemm;
pub mod layer_norm;
pub mod softmax;

mod simd;
