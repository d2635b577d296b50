//! Incremental decoding: the Transformer as a [`StepDecoder`]. The encoder
//! runs once, each decoder layer's cross-attention K/V are computed once per
//! source, and each step feeds one token per live row through the decoder,
//! appending to the per-layer self-attention [`KvCache`].

use rayon::prelude::*;

use crate::decoding::kv_cache::{gather, KvCache};
use crate::decoding::StepDecoder;
use crate::kernels::gemm::MatRef;
use crate::kernels::softmax::log_softmax_row;
use crate::model::transformer::{check_ids, TokenBatch, Transformer};
use crate::nn::CrossMemory;
use crate::{Error, Result};

/// Decoding state for one batch of sources: rows are live hypotheses.
#[derive(Clone, Debug)]
pub struct DecodeState {
    /// Per decoder layer: cross-attention k; v [B_src·S, 2E].
    memory_kv: Vec<Vec<f32>>,
    /// [B_src, S] additive key-padding rows (0 keep, -inf padding).
    padding: Vec<f32>,
    /// S.
    src_len: usize,
    /// Source index of each live row.
    sources: Vec<usize>,
    /// Per decoder layer: self-attention keys/values of each live row.
    caches: Vec<KvCache>,
    /// Tokens fed so far (= position of the next one).
    position: usize,
}

impl DecodeState {
    /// Live rows.
    pub fn rows(&self) -> usize {
        self.sources.len()
    }
}

impl Transformer {
    /// Encodes `src` [B, S] and prepares a state with one row per source
    /// (row b = source b) and room for `capacity` positions per row.
    pub fn start_decoding(&self, src: TokenBatch, capacity: usize) -> Result<DecodeState> {
        // `step` refuses positions past max_len, so room beyond it is never
        // used: the clamp keeps a huge `capacity` from reserving memory.
        let capacity = capacity.min(self.config().max_len);
        let memory = self.encode(src)?;
        let rows = src.batch * src.len;
        let memory_kv = self
            .decoder()
            .layers()
            .iter()
            .map(|layer| layer.memory_kv(&memory, rows))
            .collect();
        let padding = self
            .padding_mask(src)
            .iter()
            .map(|&pad| if pad { f32::NEG_INFINITY } else { 0.0 })
            .collect();
        let e = self.config().d_model;
        let n_layers = self.decoder().layers().len();
        Ok(DecodeState {
            memory_kv,
            padding,
            src_len: src.len,
            sources: (0..src.batch).collect(),
            caches: (0..n_layers)
                .map(|_| KvCache::new(src.batch, e, capacity))
                .collect(),
            position: 0,
        })
    }
}

impl StepDecoder for Transformer {
    type State = DecodeState;

    fn vocab_size(&self) -> usize {
        self.config().tgt_vocab_size
    }

    fn step(
        &self,
        state: &mut DecodeState,
        tokens: &[i64],
        log_probs: &mut Vec<f32>,
    ) -> Result<()> {
        let rows = state.rows();
        if tokens.len() != rows {
            return Err(Error::value(format!(
                "tokens: expected one per live row ({rows}), got {}",
                tokens.len()
            )));
        }
        check_ids("tokens", tokens, 1, self.vocab_size())?;
        let max_len = self.config().max_len;
        if state.position >= max_len {
            return Err(Error::value(format!(
                "cannot decode past max_len = {max_len} positions (the positional table)"
            )));
        }
        let x = self
            .tgt_embed()
            .forward(tokens, 1, state.position, self.positions());
        let memory = CrossMemory {
            kv: &[],
            padding: Some(&state.padding),
            src_len: state.src_len,
            sources: &state.sources,
        };
        let hidden = self
            .decoder()
            .step(x, &mut state.caches, &state.memory_kv, memory)?;
        state.position += 1;
        let (e, v) = (self.config().d_model, self.vocab_size());
        log_probs.resize(rows * v, 0.0);
        self.generator()
            .forward_into(MatRef::row_major(&hidden, rows, e), log_probs);
        log_probs.par_chunks_mut(v).for_each(log_softmax_row);
        Ok(())
    }

    fn select_rows(&self, state: &mut DecodeState, rows: &[usize]) {
        state.sources = gather(std::mem::take(&mut state.sources), rows);
        for cache in &mut state.caches {
            cache.select_rows(rows);
        }
    }
}
