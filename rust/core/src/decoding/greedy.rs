//! Greedy search: every live row takes the argmax token of each step.

use super::hypotheses::{argmax, length_normalized};
use super::{Hypothesis, SearchOptions, StepDecoder};
use crate::Error;

/// Greedy search for `batch` sources. `state` holds one row per source
/// (row b = source b). Each step feeds the last token of every live row
/// (`opts.bos_id` first), appends the argmax of its log-probabilities
/// `[rows, V]` (ties → lowest id, NaN counts as the maximum, as
/// `numpy.argmax`), and drops the rows that produced `opts.eos_id` from the
/// state. Stops after `opts.max_new_tokens` steps or when every row has
/// finished; `max_new_tokens == 0` runs no step.
///
/// Returns, per source, one [`Hypothesis`]: the new tokens (EOS included
/// when produced) and score Σ log p / len^length_penalty (0 when empty).
/// `opts.beam_size` is ignored; `opts.num_hypotheses` must be 1.
pub fn greedy<D: StepDecoder>(
    decoder: &D,
    mut state: D::State,
    batch: usize,
    opts: &SearchOptions,
) -> crate::Result<Vec<Vec<Hypothesis>>> {
    if opts.num_hypotheses != 1 {
        return Err(Error::value(format!(
            "num_hypotheses must be 1 for greedy search (beam_size=1), got {}",
            opts.num_hypotheses
        )));
    }
    let vocab = checked_vocab_size(decoder)?;
    let mut tokens: Vec<Vec<i64>> = vec![Vec::new(); batch];
    let mut sums = vec![0.0f64; batch];
    // Source of each state row, in row order.
    let mut live: Vec<usize> = (0..batch).collect();
    let mut feed = vec![opts.bos_id; batch];
    let mut kept_rows = Vec::with_capacity(batch);
    let mut log_probs = Vec::new();
    for step in 0..opts.max_new_tokens {
        if live.is_empty() {
            break;
        }
        checked_step(decoder, &mut state, &feed, &mut log_probs, vocab)?;
        kept_rows.clear();
        for (row, (&source, row_log_probs)) in live.iter().zip(log_probs.chunks_exact(vocab)).enumerate() {
            let token = argmax(row_log_probs);
            sums[source] += f64::from(row_log_probs[token]);
            tokens[source].push(token as i64);
            if token as i64 != opts.eos_id {
                kept_rows.push(row);
            }
        }
        if step + 1 == opts.max_new_tokens {
            break;
        }
        if kept_rows.len() < live.len() && !kept_rows.is_empty() {
            decoder.select_rows(&mut state, &kept_rows);
        }
        // `kept_rows` is increasing, so compacting in place is safe.
        for (new_row, &old_row) in kept_rows.iter().enumerate() {
            live[new_row] = live[old_row];
        }
        live.truncate(kept_rows.len());
        feed.clear();
        feed.extend(live.iter().map(|&source| tokens[source][step]));
    }
    Ok(tokens
        .into_iter()
        .zip(sums)
        .map(|(tokens, sum)| {
            let score = length_normalized(sum, tokens.len(), opts.length_penalty) as f32;
            vec![Hypothesis { tokens, score }]
        })
        .collect())
}

/// V of `decoder`, which must be at least 1 for any token to be chosen.
pub(super) fn checked_vocab_size<D: StepDecoder>(decoder: &D) -> crate::Result<usize> {
    match decoder.vocab_size() {
        0 => Err(Error::value("cannot decode with an empty target vocabulary (V = 0)")),
        vocab => Ok(vocab),
    }
}

/// One decoder step for `tokens.len()` rows, checking that the decoder wrote
/// `[rows, V]` log-probabilities (a decoder bug otherwise, hence a panic).
pub(super) fn checked_step<D: StepDecoder>(
    decoder: &D,
    state: &mut D::State,
    tokens: &[i64],
    log_probs: &mut Vec<f32>,
    vocab: usize,
) -> crate::Result<()> {
    decoder.step(state, tokens, log_probs)?;
    assert_eq!(
        log_probs.len(),
        tokens.len() * vocab,
        "StepDecoder::step must write [rows = {}, V = {vocab}] log-probabilities",
        tokens.len()
    );
    Ok(())
}
