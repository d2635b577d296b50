//! Test-only decoders and exhaustive references for the search tests.
//!
//! A [`ToyDecoder`]'s log-probabilities are a pure function of (source,
//! prefix). Its state tracks every row's prefix from the tokens actually
//! fed, so a search that feeds a wrong token or selects a wrong row gets
//! different log-probabilities, and its scores stop matching the ones
//! recomputed here from the returned tokens.

use std::sync::Mutex;

use super::{SearchOptions, StepDecoder};
use crate::Error;

/// BOS of every toy decoder: outside any toy vocabulary, so a BOS fed after
/// the first step is caught.
pub(crate) const BOS: i64 = 1_000;

pub(crate) type LogProbFn = Box<dyn Fn(usize, &[i64]) -> Vec<f32> + Sync>;

pub(crate) struct ToyDecoder {
    pub(crate) vocab: usize,
    pub(crate) eos: i64,
    /// (source, prefix of new tokens) → log-probabilities `[V]` of the next token.
    pub(crate) log_probs: LogProbFn,
    /// Sources of the rows fed at each step, in row order.
    pub(crate) fed: Mutex<Vec<Vec<usize>>>,
    /// `step` fails (returns an error) at this 0-based step.
    pub(crate) fail_at_step: Option<usize>,
}

/// One row: its source and the tokens fed to it, BOS first.
pub(crate) struct ToyState {
    rows: Vec<(usize, Vec<i64>)>,
}

impl ToyState {
    /// One row per source, nothing fed yet.
    pub(crate) fn new(batch: usize) -> Self {
        ToyState {
            rows: (0..batch).map(|source| (source, Vec::new())).collect(),
        }
    }
}

impl ToyDecoder {
    pub(crate) fn new(vocab: usize, eos: i64, log_probs: LogProbFn) -> Self {
        ToyDecoder {
            vocab,
            eos,
            log_probs,
            fed: Mutex::new(Vec::new()),
            fail_at_step: None,
        }
    }

    pub(crate) fn fed(&self) -> Vec<Vec<usize>> {
        self.fed.lock().unwrap().clone()
    }

    /// How many rows of `source` were fed at each step (trailing zeros cut).
    pub(crate) fn rows_fed_for(&self, source: usize) -> Vec<usize> {
        let mut counts: Vec<usize> = self
            .fed()
            .iter()
            .map(|rows| rows.iter().filter(|&&s| s == source).count())
            .collect();
        while counts.last() == Some(&0) {
            counts.pop();
        }
        counts
    }
}

impl StepDecoder for ToyDecoder {
    type State = ToyState;

    fn vocab_size(&self) -> usize {
        self.vocab
    }

    fn step(
        &self,
        state: &mut ToyState,
        tokens: &[i64],
        log_probs: &mut Vec<f32>,
    ) -> crate::Result<()> {
        let mut fed = self.fed.lock().unwrap();
        if self.fail_at_step == Some(fed.len()) {
            return Err(Error::value("toy decoder failure"));
        }
        assert_eq!(tokens.len(), state.rows.len(), "one token per live row");
        fed.push(state.rows.iter().map(|(source, _)| *source).collect());
        log_probs.clear();
        for ((source, prefix), &token) in state.rows.iter_mut().zip(tokens) {
            match prefix.last() {
                None => assert_eq!(token, BOS, "the first token fed is BOS"),
                Some(&last) => {
                    assert_ne!(last, self.eos, "a finished row was fed again");
                    assert!(
                        (0..self.vocab as i64).contains(&token),
                        "fed token {token} is not a vocabulary id"
                    );
                }
            }
            prefix.push(token);
            log_probs.extend((self.log_probs)(*source, &prefix[1..]));
        }
        Ok(())
    }

    fn select_rows(&self, state: &mut ToyState, rows: &[usize]) {
        state.rows = rows.iter().map(|&row| state.rows[row].clone()).collect();
    }
}

/// `log(w / Σw)` computed in f64 (so every value is ≤ 0, and equal weights
/// give bit-equal log-probabilities).
pub(crate) fn log_normalize(logits: &[f64]) -> Vec<f32> {
    let max = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let log_sum = logits.iter().map(|&l| (l - max).exp()).sum::<f64>().ln();
    logits.iter().map(|&l| (l - max - log_sum) as f32).collect()
}

/// SplitMix64: a small, well-mixed deterministic hash.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Pseudo-random log-probabilities of (seed, source, prefix): logits uniform
/// in [-3, 3], rounded to multiples of `quantum` when > 0 (coarse → many
/// ties); the EOS logit gets `eos_drift · (source + 1) · prefix.len()` so
/// sources finish at different times.
pub(crate) fn hashed_log_probs(
    vocab: usize,
    eos: i64,
    seed: u64,
    quantum: f64,
    eos_drift: f64,
) -> LogProbFn {
    Box::new(move |source, prefix| {
        let mut h = mix(seed ^ mix(source as u64));
        for &token in prefix {
            h = mix(h ^ token as u64);
        }
        let logits: Vec<f64> = (0..vocab)
            .map(|v| {
                let unit = (mix(h ^ mix(v as u64 + 7)) >> 11) as f64 / (1u64 << 53) as f64;
                let mut logit = 6.0 * unit - 3.0;
                if quantum > 0.0 {
                    logit = (logit / quantum).round() * quantum;
                }
                if v as i64 == eos {
                    logit += eos_drift * (source + 1) as f64 * prefix.len() as f64;
                }
                logit
            })
            .collect();
        log_normalize(&logits)
    })
}

/// Σ log p of `tokens` (in step order, f64) and the score
/// `sum / len^length_penalty` (0 when empty), recomputed from the decoder's function.
pub(crate) fn recomputed_score(
    decoder: &ToyDecoder,
    source: usize,
    tokens: &[i64],
    length_penalty: f32,
) -> f32 {
    let mut sum = 0.0f64;
    for i in 0..tokens.len() {
        sum += f64::from((decoder.log_probs)(source, &tokens[..i])[tokens[i] as usize]);
    }
    if tokens.is_empty() {
        0.0
    } else {
        (sum / (tokens.len() as f64).powf(f64::from(length_penalty))) as f32
    }
}

/// Every hypothesis the search may return for `source`: ended by EOS within
/// `max_new_tokens`, or exactly `max_new_tokens` long without EOS; with its
/// recomputed score.
pub(crate) fn all_hypotheses(
    decoder: &ToyDecoder,
    source: usize,
    opts: &SearchOptions,
) -> Vec<(Vec<i64>, f32)> {
    fn extend(vocab: usize, opts: &SearchOptions, prefix: &mut Vec<i64>, out: &mut Vec<Vec<i64>>) {
        if prefix.len() == opts.max_new_tokens {
            out.push(prefix.clone());
            return;
        }
        for token in 0..vocab as i64 {
            prefix.push(token);
            if token == opts.eos_id {
                out.push(prefix.clone());
            } else {
                extend(vocab, opts, prefix, out);
            }
            prefix.pop();
        }
    }
    let mut out = Vec::new();
    extend(decoder.vocab, opts, &mut Vec::new(), &mut out);
    out.into_iter()
        .map(|tokens| {
            let score = recomputed_score(decoder, source, &tokens, opts.length_penalty);
            (tokens, score)
        })
        .collect()
}

/// Greedy search written out plainly for one source: argmax = first index
/// holding the maximum value.
pub(crate) fn reference_greedy(
    decoder: &ToyDecoder,
    source: usize,
    opts: &SearchOptions,
) -> Vec<i64> {
    let mut tokens = Vec::new();
    while tokens.len() < opts.max_new_tokens {
        let log_probs = (decoder.log_probs)(source, &tokens);
        let max = log_probs.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let token = log_probs.iter().position(|&lp| lp == max).unwrap() as i64;
        tokens.push(token);
        if token == opts.eos_id {
            break;
        }
    }
    tokens
}

/// Options with the toy BOS and the given EOS.
pub(crate) fn options(
    max_new_tokens: usize,
    beam_size: usize,
    length_penalty: f32,
    eos_id: i64,
) -> SearchOptions {
    SearchOptions {
        max_new_tokens,
        beam_size,
        length_penalty,
        num_hypotheses: 1,
        bos_id: BOS,
        eos_id,
        return_scores: true,
    }
}
