//! Incremental decoding: the Transformer as a [`StepDecoder`]. The encoder
//! runs once, each decoder layer's cross-attention K/V are computed once per
//! source, and each step feeds one token per live row through the decoder,
//! appending to the self-attention [`KvCache`]. Steps write into buffers
//! made when decoding starts: once the live rows have reached their peak, a
//! step allocates nothing in this crate (rust/core/tests/step_allocations.rs).

use rayon::prelude::*;

use crate::decoding::kv_cache::KvCache;
use crate::decoding::{argmax_rows, StepDecoder};
use crate::kernels::gemm::MatRef;
use crate::kernels::softmax::log_softmax_row;
use crate::model::transformer::{check_ids, TokenBatch, Transformer};
use crate::nn::{CrossMemory, ScreenScratch, StepBuffers};
use crate::{Error, Result};

/// Slots (live rows) the KV cache makes up front at most; beyond that
/// (a huge beam), a slot is made when the live rows first need it.
const MAX_RESERVED_ROWS: usize = 1024;

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
    /// `select_rows` scratch: the next `sources`.
    next_sources: Vec<usize>,
    /// Self-attention keys/values of every layer and live row; its length is
    /// the number of tokens fed so far (= position of the next one).
    cache: KvCache,
    /// What each step writes into.
    buffers: StepBuffers,
    /// What the generator's argmax screen (`step_argmax`) works in.
    screen: ScreenScratch,
}

impl DecodeState {
    /// Live rows.
    pub fn rows(&self) -> usize {
        self.sources.len()
    }
}

impl Transformer {
    /// Encodes `src` [B, S] and prepares a state with one row per source
    /// (row b = source b), room for `capacity` positions (steps) per row,
    /// and buffers made up front for up to `rows_per_source` live rows per
    /// source (e.g. beam_size + 1; more rows than that still work, and
    /// allocate when they first appear).
    pub fn start_decoding(
        &self,
        src: TokenBatch,
        capacity: usize,
        rows_per_source: usize,
    ) -> Result<DecodeState> {
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
        let reserved = src
            .batch
            .saturating_mul(rows_per_source)
            .min(MAX_RESERVED_ROWS);
        let buffers = StepBuffers::new(self.decoder(), reserved, capacity.max(src.len));
        // Both source lists take turns as `sources`: both need the room.
        let mut sources = Vec::with_capacity(reserved.max(src.batch));
        sources.extend(0..src.batch);
        Ok(DecodeState {
            memory_kv,
            padding,
            src_len: src.len,
            sources,
            next_sources: Vec::with_capacity(reserved),
            cache: KvCache::new(n_layers, e, capacity, src.batch, reserved),
            buffers,
            // Only greedy search (one row per source) asks for the screen.
            screen: ScreenScratch::with_capacity(
                if rows_per_source == 1 {
                    reserved.min(SCREEN_MAX_ROWS)
                } else {
                    0
                },
                self.config().tgt_vocab_size,
            ),
        })
    }
}

/// Live rows up to which a greedy step finds its tokens through the
/// generator's argmax screen. Transformer-base (V = 32000), alternating
/// calls, screen over the full product: B = 1 1.18× on one thread, 1.17× on
/// two; B = 2 1.19× and 1.15×; B = 4 1.06× and 1.03×; B = 8 0.96× and
/// 0.90× (the weights' bytes matter less as rows share them, and the
/// screen's per-row passes over the vocabulary add up).
const SCREEN_MAX_ROWS: usize = 4;

impl Transformer {
    /// Feeds `tokens` (one per live row) through the decoder at the next
    /// position, leaving the final hidden states [rows, E] in the buffers.
    fn advance(&self, state: &mut DecodeState, tokens: &[i64]) -> Result<()> {
        let rows = state.rows();
        if tokens.len() != rows {
            return Err(Error::value(format!(
                "tokens: expected one per live row ({rows}), got {}",
                tokens.len()
            )));
        }
        check_ids("tokens", tokens, 1, self.vocab_size())?;
        let position = state.cache.len();
        let max_len = self.config().max_len;
        if position >= max_len {
            return Err(Error::value(format!(
                "cannot decode past max_len = {max_len} positions (the positional table)"
            )));
        }
        if position >= state.cache.capacity() {
            return Err(Error::value(format!(
                "cannot decode past the {} positions the decoding state was started with",
                state.cache.capacity()
            )));
        }
        state.cache.push_position();
        let buf = &mut state.buffers;
        buf.resize(rows);
        self.tgt_embed()
            .forward_into(tokens, 1, position, self.positions(), buf.input_mut());
        let memory = CrossMemory {
            kv: &[],
            padding: Some(&state.padding),
            src_len: state.src_len,
            sources: &state.sources,
        };
        self.decoder()
            .step(&mut state.cache, &state.memory_kv, memory, buf);
        Ok(())
    }

    /// log_softmax(generator(hidden states)) [rows, V] of the last step.
    fn log_probs_into(&self, state: &DecodeState, log_probs: &mut Vec<f32>) {
        let (e, v, rows) = (self.config().d_model, self.vocab_size(), state.rows());
        log_probs.resize(rows * v, 0.0);
        // One GEMM for the whole vocabulary and every live row.
        self.generator().forward_into(
            MatRef::row_major(state.buffers.output(), rows, e),
            log_probs,
        );
        log_probs.par_chunks_mut(v).for_each(log_softmax_row);
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
        self.advance(state, tokens)?;
        self.log_probs_into(state, log_probs);
        Ok(())
    }

    /// As `step` then the argmax of each row, but with at most
    /// [`SCREEN_MAX_ROWS`] rows the generator's [`ArgmaxScreen`] finds the
    /// tokens from its bf16 copy and a few exact logits, reading half the
    /// bytes of the fp32 product (which runs only when the screen declines).
    ///
    /// [`ArgmaxScreen`]: crate::nn::ArgmaxScreen
    fn step_argmax(
        &self,
        state: &mut DecodeState,
        tokens: &[i64],
        log_probs: &mut Vec<f32>,
        best: &mut Vec<usize>,
    ) -> Result<()> {
        self.advance(state, tokens)?;
        let rows = state.rows();
        if let (Some(screen), true) = (self.generator_screen(), rows <= SCREEN_MAX_ROWS) {
            let x = MatRef::row_major(state.buffers.output(), rows, self.config().d_model);
            if screen.argmax_rows(self.generator(), x, &mut state.screen, best) {
                return Ok(());
            }
        }
        self.log_probs_into(state, log_probs);
        argmax_rows(log_probs, self.vocab_size(), best);
        Ok(())
    }

    fn select_rows(&self, state: &mut DecodeState, rows: &[usize]) {
        state.next_sources.clear();
        state
            .next_sources
            .extend(rows.iter().map(|&row| state.sources[row]));
        std::mem::swap(&mut state.sources, &mut state.next_sources);
        state.cache.select_rows(rows);
    }
}
