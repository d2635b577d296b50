//! `BertModel`: embeddings, then N post-LN encoder layers (the shared
//! `nn::EncoderLayer`), returning `last_hidden_state`. No final norm, no pooler.

use std::path::Path;

use crate::bert::config::BertConfig;
use crate::bert::embeddings::BertEmbeddings;
use crate::bert::weights::adapt;
use crate::model::checkpoint;
use crate::nn::{EncoderLayer, FeedForward, LayerNorm, Layout, MultiHeadAttention, TensorMap};
use crate::{Error, Result};

/// One batch of BERT inputs, all [B, T] row-major.
#[derive(Clone, Copy, Debug)]
pub struct BertInput<'a> {
    pub input_ids: &'a [i64],
    /// `None`: every token has type 0.
    pub token_type_ids: Option<&'a [i64]>,
    /// `true` = padding: no query attends to that key. `None`: no padding.
    pub key_padding_mask: Option<&'a [bool]>,
    /// B.
    pub batch: usize,
    /// T.
    pub seq_len: usize,
}

/// A BERT encoder, immutable after loading (Send + Sync: share it freely).
#[derive(Clone, Debug)]
pub struct BertModel {
    config: BertConfig,
    embeddings: BertEmbeddings,
    layers: Vec<EncoderLayer>,
}

impl BertModel {
    /// Loads `dir/config.json` and `dir/model.safetensors` (memory-mapped) of
    /// a Hugging Face BERT folder. A missing folder or file is an I/O error
    /// (NotFound); a config that is not a supported BERT, or weights that do
    /// not fit it, a checkpoint error naming the key or tensor.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        if !dir.is_dir() {
            let err = std::io::Error::new(std::io::ErrorKind::NotFound, "no such model folder");
            return Err(Error::io(dir.display(), &err));
        }
        let config_path = dir.join("config.json");
        let text = crate::model::config::read_text(&config_path)?;
        let config = BertConfig::from_json(&text).map_err(|e| match e {
            Error::Checkpoint(m) => Error::checkpoint(format!("{}: {m}", config_path.display())),
            other => other,
        })?;
        let weights_path = dir.join("model.safetensors");
        let tensors = checkpoint::read(&weights_path).map_err(|e| match e {
            Error::Checkpoint(m) => Error::checkpoint(format!("{}: {m}", weights_path.display())),
            other => other,
        })?;
        Self::from_tensors(config, &tensors)
    }

    /// Builds the model from BERT-named tensors (see [`super::weights`]).
    pub fn from_tensors(config: BertConfig, tensors: &TensorMap) -> Result<Self> {
        config.validate()?;
        let adapted = adapt(tensors, &config)?;
        let w = adapted.root();
        let (e, h, f) = (
            config.hidden_size,
            config.num_attention_heads,
            config.intermediate_size,
        );
        let eps = config.layer_norm_eps;
        let layers = (0..config.num_hidden_layers)
            .map(|i| {
                let l = w.pp("layers").pp(i);
                Ok(EncoderLayer::from_parts(
                    MultiHeadAttention::new(&l.pp("self_attn"), e, h, Layout::SelfAttention)?,
                    FeedForward::new(&l, e, f, config.hidden_act)?,
                    LayerNorm::new(&l.pp("norm1"), e, eps)?,
                    LayerNorm::new(&l.pp("norm2"), e, eps)?,
                    false,
                ))
            })
            .collect::<Result<_>>()?;
        Ok(BertModel {
            embeddings: BertEmbeddings::new(&w, &config)?,
            layers,
            config,
        })
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    /// last_hidden_state [B, T, E]. Padded positions get values too (their
    /// queries attend to the unpadded keys) but no other position sees them.
    pub fn forward(&self, input: BertInput) -> Result<Vec<f32>> {
        self.check(&input)?;
        let x = self
            .embeddings
            .forward(input.input_ids, input.token_type_ids, input.seq_len);
        self.layers.iter().try_fold(x, |x, layer| {
            layer.forward(x, input.batch, input.seq_len, input.key_padding_mask)
        })
    }

    /// Shapes, T ≤ max_position_embeddings, and every id inside its table;
    /// errors name the argument.
    fn check(&self, input: &BertInput) -> Result<()> {
        let (b, t) = (input.batch, input.seq_len);
        let cfg = &self.config;
        let numel = b
            .checked_mul(t)
            .ok_or_else(|| Error::value(format!("input_ids: shape [{b}, {t}] overflows")))?;
        let lens = [
            ("input_ids", Some(input.input_ids.len())),
            ("token_type_ids", input.token_type_ids.map(<[i64]>::len)),
            ("attention_mask", input.key_padding_mask.map(<[bool]>::len)),
        ];
        for (name, len) in lens {
            if let Some(len) = len.filter(|&n| n != numel) {
                return Err(Error::value(format!(
                    "{name}: {len} values do not fill shape [{b}, {t}]"
                )));
            }
        }
        if t > cfg.max_position_embeddings {
            return Err(Error::value(format!(
                "input_ids: length {t} exceeds max_position_embeddings = {}",
                cfg.max_position_embeddings
            )));
        }
        check_ids(
            "input_ids",
            input.input_ids,
            t,
            cfg.vocab_size,
            "vocab_size",
        )?;
        if let Some(types) = input.token_type_ids {
            check_ids(
                "token_type_ids",
                types,
                t,
                cfg.type_vocab_size,
                "type_vocab_size",
            )?;
        }
        Ok(())
    }
}

/// Every id of `ids` [B, T] in [0, `size`); the error gives the position.
fn check_ids(name: &str, ids: &[i64], seq_len: usize, size: usize, key: &str) -> Result<()> {
    match ids
        .iter()
        .position(|&id| id < 0 || id as u64 >= size as u64)
    {
        None => Ok(()),
        Some(i) => Err(Error::value(format!(
            "{name}: id {} at [{}, {}] is outside [0, {size}) ({key})",
            ids[i],
            i / seq_len,
            i % seq_len
        ))),
    }
}
