//! Incremental decoding: greedy and beam search over any [`StepDecoder`].
//!
//! The search algorithms only see this trait, so they are written and tested
//! once (against toy decoders in the tests) and the Transformer implements it
//! with its per-layer key/value caches.

/// What search needs from a model: one decoder step for the rows that are
/// still alive. A row is one hypothesis (greedy: one per source; beam: up to
/// `beam_size` per source). The state owns every per-row cache.
pub trait StepDecoder: Sync {
    /// Per-call decoding state: encoder memory, cross-attention K/V, the
    /// self-attention KV cache, for the rows alive now.
    type State: Send;

    /// V: size of the output vocabulary.
    fn vocab_size(&self) -> usize;

    /// Feeds one token per live row (`tokens.len()` == rows) at the next
    /// position and writes log-probabilities `[rows, V]` into `log_probs`.
    /// Cost: one decoder step per row, independent of the prefix length
    /// except inside attention.
    fn step(
        &self,
        state: &mut Self::State,
        tokens: &[i64],
        log_probs: &mut Vec<f32>,
    ) -> crate::Result<()>;

    /// Feeds one token per live row, as [`StepDecoder::step`], and writes
    /// each row's next greedy token to `best` (one per row): the index
    /// `argmax` gives on the row's log-probabilities (the first of equal
    /// maxima, NaN counting as the maximum). `log_probs` is scratch. The
    /// default runs `step` and takes each row's argmax; a model may find the
    /// same tokens without computing every log-probability.
    fn step_argmax(
        &self,
        state: &mut Self::State,
        tokens: &[i64],
        log_probs: &mut Vec<f32>,
        best: &mut Vec<usize>,
    ) -> crate::Result<()> {
        self.step(state, tokens, log_probs)?;
        argmax_rows(log_probs, self.vocab_size(), best);
        Ok(())
    }

    /// Keeps rows `rows[i]` of the current state as new row `i`, in that
    /// order; a row may repeat (beam expansion) or be dropped (finished).
    fn select_rows(&self, state: &mut Self::State, rows: &[usize]);
}

/// Search settings (API.md `generate`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SearchOptions {
    pub max_new_tokens: usize,
    /// 1 = greedy.
    pub beam_size: usize,
    pub length_penalty: f32,
    /// Hypotheses to return per source, ≤ beam_size.
    pub num_hypotheses: usize,
    pub bos_id: i64,
    pub eos_id: i64,
    /// Whether the caller uses the scores. Without them, greedy search asks
    /// the decoder only for each step's argmax ([`StepDecoder::step_argmax`])
    /// and reports NaN scores; beam search always scores (it ranks by them).
    pub return_scores: bool,
}

/// One finished (or length-capped) hypothesis: new tokens (no BOS; EOS
/// included when produced) and score = Σ log p / len(tokens)^length_penalty.
#[derive(Clone, Debug, PartialEq)]
pub struct Hypothesis {
    pub tokens: Vec<i64>,
    pub score: f32,
}

/// The search reserves each of its buffers for the largest size it can
/// reach, up to this many bytes, so that its steps do not allocate; beyond
/// that (a huge batch, beam or token budget) buffers grow on demand.
const RESERVE_LIMIT_BYTES: usize = 16 << 20;

/// Capacity to reserve for a buffer of `T` that can reach `max_len` elements.
fn reservation<T>(max_len: usize) -> usize {
    max_len.min(RESERVE_LIMIT_BYTES / std::mem::size_of::<T>().max(1))
}

/// `best` ← the `argmax` of each `vocab`-long row of `log_probs` [rows, V].
pub(crate) fn argmax_rows(log_probs: &[f32], vocab: usize, best: &mut Vec<usize>) {
    best.clear();
    best.extend(log_probs.chunks_exact(vocab).map(hypotheses::argmax));
}

pub mod beam;
pub mod greedy;
mod hypotheses;
pub mod kv_cache;
#[cfg(test)]
mod toy_decoders;
