//! Building blocks, one struct per block, each built by `new(weights, ..)`
//! and run by `forward`: Linear (pre-packed weights), MultiHeadAttention,
//! plus the named weight tensors they are built from.

pub mod attention;
pub mod linear;
pub mod weights;

pub use attention::{AttnMask, AttnShape, Layout, Masks, MultiHeadAttention};
pub use linear::Linear;
pub use weights::{Tensor, TensorMap, Weights};
