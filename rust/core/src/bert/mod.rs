//! Pretrained BERT-family encoders (Hugging Face `BertModel` folders):
//! config parsing, load-time adaptation of the BERT tensor names to the
//! shared `nn` blocks, the embeddings, and the model. Attention, feed-forward
//! and LayerNorm are the same code the seq2seq encoder runs.

pub mod config;
pub mod embeddings;
pub mod model;
pub mod weights;

pub use config::BertConfig;
pub use model::{BertInput, BertModel};

#[cfg(test)]
mod tests;
