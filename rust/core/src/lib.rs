//! transformer-rs-core: CPU inference for the encoder-decoder Transformer of
//! "Attention Is All You Need". No Python here: the bindings crate wraps it.
//!
//! Shape key used in every doc comment:
//! B batch, S source length, T target length, E model width, H heads,
//! D head dim (E / H), F feed-forward width, V vocabulary.
//!
//! Layers, top to bottom: `model` (config, checkpoint, Transformer) →
//! `nn` (one struct per block) → `decoding` (KV cache, greedy, beam) →
//! `kernels` (GEMM, softmax, layer norm, activations, attention; SIMD with
//! run-time dispatch) and `parallel` (the thread pool). `bert` runs
//! pretrained BERT encoders on the same `nn` blocks.

pub mod bert;
pub mod decoding;
pub mod error;
pub mod kernels;
pub mod model;
pub mod nn;
pub mod parallel;
#[cfg(test)]
pub(crate) mod test_util;

pub use error::{Error, Result};
