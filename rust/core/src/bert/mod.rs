//! Pretrained BERT-family encoders (Hugging Face `BertModel` folders):
//! config parsing, load-time adaptation of the BERT tensor names to the
//! shared `nn` blocks, the embeddings, the model, and sentence-transformers'
//! pooling. Attention, feed-forward and LayerNorm are the same code the
//! seq2seq encoder runs.

pub mod config;
pub mod embeddings;
pub mod model;
pub mod pooling;
pub mod weights;

pub use config::BertConfig;
pub use model::{BertInput, BertModel, SentenceBatch};
pub use pooling::{Pooling, PoolingMode};

#[cfg(test)]
mod tests;
