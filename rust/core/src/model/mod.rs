//! Config, checkpoint loading (safetensors + mmap) and the Transformer:
//! full-sequence encode/decode and incremental decoding (StepDecoder).

pub mod checkpoint;
pub mod config;
pub mod step;
pub mod transformer;

pub use config::TransformerConfig;
pub use step::DecodeState;
pub use transformer::{TokenBatch, Transformer};

#[cfg(test)]
mod tests;
