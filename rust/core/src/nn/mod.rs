//! Building blocks, one struct per block, each built by `new(cfg/sizes,
//! weights)` and run by `forward`: Embedding (+ positions), Linear
//! (pre-packed weights), LayerNorm, MultiHeadAttention, FeedForward,
//! EncoderLayer/Encoder, DecoderLayer/Decoder, and the named weight tensors
//! they are built from.

pub mod argmax_screen;
pub mod attention;
pub mod decoder;
pub mod embedding;
pub mod encoder;
pub mod feed_forward;
pub mod layer_norm;
pub mod linear;
pub mod packed;
pub mod weights;

pub use argmax_screen::{ArgmaxScreen, ScreenScratch};
pub use attention::{AttnMask, AttnScratch, AttnShape, Layout, Masks, MultiHeadAttention};
pub use decoder::{CrossMemory, Decoder, DecoderLayer, StepBuffers};
pub use embedding::{Embedding, PositionalEncoding};
pub use encoder::{Encoder, EncoderLayer, EncoderScratch};
pub use feed_forward::{Activation, FeedForward};
pub use layer_norm::LayerNorm;
pub use linear::Linear;
pub use packed::PackedBatch;
pub use weights::{Tensor, TensorMap, Weights};
