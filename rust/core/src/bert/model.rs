//! `BertModel`: embeddings, then N post-LN encoder layers (the shared
//! `nn::EncoderLayer`), returning `last_hidden_state`. No final norm, no pooler.
//!
//! Every pass runs on packed rows, without padding: the valid tokens of all
//! sequences back to back ([N, E]), each sequence attending only to its own
//! rows, runs of sequences on different threads (`nn::encoder`). `forward`
//! packs a padded batch and scatters the result back; `encode` takes
//! sentences already packed and pools them, so [B, T, E] never exists.
//!
//! Shape key: B sequences, T padded length, N tokens of all sequences,
//! E hidden size, P pooling modes.

use std::path::Path;

use crate::bert::config::BertConfig;
use crate::bert::embeddings::BertEmbeddings;
use crate::bert::pooling::Pooling;
use crate::bert::weights::adapt;
use crate::model::checkpoint;
use crate::nn::encoder::forward_packed_layers;
use crate::nn::packed::{PackedBatch, Sequences};
use crate::nn::{EncoderLayer, FeedForward, LayerNorm, Layout, MultiHeadAttention, TensorMap};
use crate::{Error, Result};

/// One batch of BERT inputs, all [B, T] row-major.
#[derive(Clone, Copy, Debug)]
pub struct BertInput<'a> {
    pub input_ids: &'a [i64],
    /// `None`: every token has type 0.
    pub token_type_ids: Option<&'a [i64]>,
    /// `true` = padding: no query attends to that key, and the position's
    /// own output is zeros. `None`: no padding.
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

    /// last_hidden_state [B, T, E]. Only valid positions are computed (a
    /// token's position id is its index t in the padded row, as in
    /// `transformers`); padded positions are zeros. Valid positions equal
    /// Hugging Face's, whose padded positions hold values no valid position
    /// depends on.
    pub fn forward(&self, input: BertInput) -> Result<Vec<f32>> {
        self.check(&input)?;
        let (t, e) = (input.seq_len, self.config.hidden_size);
        let packing = PackedBatch::new(input.batch, t, input.key_padding_mask);
        let rows: Vec<usize> = packing.padded_rows().collect();
        let ids: Vec<i64> = rows.iter().map(|&r| input.input_ids[r]).collect();
        let types: Option<Vec<i64>> = input
            .token_type_ids
            .map(|types| rows.iter().map(|&r| types[r]).collect());
        let positions: Vec<usize> = rows.iter().map(|&r| r % t).collect();
        let hidden = self.hidden_states(&ids, types.as_deref(), &positions, packing.seqs());
        Ok(packing.scatter(hidden, e))
    }

    /// Checks B sentences packed back to back for [`SentenceBatch::encode`]:
    /// `input_ids` [N] and `token_type_ids` [N] (`None`: all type 0) hold the
    /// tokens of every sentence in turn, `lengths` [B] how many are each
    /// sentence's (each at most max_position_embeddings, summing to N; a
    /// sentence of no tokens pools as [`Pooling::pool`] says), every id
    /// inside its table. Errors are value errors naming the argument.
    pub fn sentences<'a>(
        &'a self,
        input_ids: &'a [i64],
        token_type_ids: Option<&'a [i64]>,
        lengths: &[usize],
    ) -> Result<SentenceBatch<'a>> {
        let cfg = &self.config;
        let n = input_ids.len();
        if let Some(b) = lengths
            .iter()
            .position(|&len| len > cfg.max_position_embeddings)
        {
            return Err(Error::value(format!(
                "lengths: sentence {b} has {} tokens, more than max_position_embeddings = {}",
                lengths[b], cfg.max_position_embeddings
            )));
        }
        // Each length ≤ max_position_embeddings: the sum cannot overflow.
        let total: usize = lengths.iter().sum();
        if total != n {
            return Err(Error::value(format!(
                "lengths: they sum to {total}, but input_ids holds {n} tokens"
            )));
        }
        if let Some(types) = token_type_ids.filter(|t| t.len() != n) {
            return Err(Error::value(format!(
                "token_type_ids: {} values, expected one per token of input_ids ({n})",
                types.len()
            )));
        }
        let flat = |i: usize| format!("[{i}]");
        check_ids("input_ids", input_ids, cfg.vocab_size, "vocab_size", flat)?;
        if let Some(types) = token_type_ids {
            check_ids(
                "token_type_ids",
                types,
                cfg.type_vocab_size,
                "type_vocab_size",
                flat,
            )?;
        }
        Ok(SentenceBatch {
            model: self,
            input_ids,
            token_type_ids,
            seqs: Sequences::from_lengths(lengths.iter().copied()),
        })
    }

    /// Hidden states x [N, E] of the tokens packed in `seqs` (`input_ids`,
    /// `token_type_ids` and `positions` [N], already checked).
    fn hidden_states(
        &self,
        input_ids: &[i64],
        token_type_ids: Option<&[i64]>,
        positions: &[usize],
        seqs: &Sequences,
    ) -> Vec<f32> {
        let mut x = self
            .embeddings
            .forward(input_ids, token_type_ids, positions);
        forward_packed_layers(&self.layers, None, &mut x, seqs);
        x
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
        let padded = |i: usize| format!("[{}, {}]", i / t, i % t);
        check_ids(
            "input_ids",
            input.input_ids,
            cfg.vocab_size,
            "vocab_size",
            padded,
        )?;
        if let Some(types) = input.token_type_ids {
            check_ids(
                "token_type_ids",
                types,
                cfg.type_vocab_size,
                "type_vocab_size",
                padded,
            )?;
        }
        Ok(())
    }
}

/// B sentences packed back to back, checked against the model that made
/// them ([`BertModel::sentences`]).
#[derive(Clone, Debug)]
pub struct SentenceBatch<'a> {
    model: &'a BertModel,
    /// [N].
    input_ids: &'a [i64],
    /// [N]; `None`: all type 0.
    token_type_ids: Option<&'a [i64]>,
    seqs: Sequences,
}

impl SentenceBatch<'_> {
    /// Sentence embeddings [B, P·E]: the model's hidden states of each
    /// sentence's tokens, pooled (and normalised) as `pooling` says.
    pub fn encode(&self, pooling: &Pooling) -> Vec<f32> {
        let seqs = &self.seqs;
        let positions: Vec<usize> = (0..seqs.batch())
            .flat_map(|b| 0..seqs.seq(b).len())
            .collect();
        let hidden =
            self.model
                .hidden_states(self.input_ids, self.token_type_ids, &positions, seqs);
        pooling.pool(&hidden, self.model.config.hidden_size, seqs)
    }

    /// B.
    pub fn len(&self) -> usize {
        self.seqs.batch()
    }

    /// True when there is no sentence.
    pub fn is_empty(&self) -> bool {
        self.seqs.batch() == 0
    }
}

/// Every id of `ids` in [0, `size`); the error gives the id's index as
/// `locate` writes it.
fn check_ids(
    name: &str,
    ids: &[i64],
    size: usize,
    key: &str,
    locate: impl Fn(usize) -> String,
) -> Result<()> {
    match ids
        .iter()
        .position(|&id| id < 0 || id as u64 >= size as u64)
    {
        None => Ok(()),
        Some(i) => Err(Error::value(format!(
            "{name}: id {} at {} is outside [0, {size}) ({key})",
            ids[i],
            locate(i)
        ))),
    }
}
