//! Greedy search: every live row takes the argmax token of each step.

use super::hypotheses::length_normalized;
use super::{argmax_rows, reservation, Hypothesis, SearchOptions, StepDecoder};
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
/// when produced) and score Σ log p / len^length_penalty (0 when empty),
/// or NaN unless `opts.return_scores` (each step then asks the decoder for
/// its argmax only, [`StepDecoder::step_argmax`]).
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
    let mut tokens: Vec<Vec<i64>> = (0..batch)
        .map(|_| Vec::with_capacity(reservation::<i64>(opts.max_new_tokens)))
        .collect();
    let mut sums = vec![0.0f64; batch];
    // Source of each state row, in row order.
    let mut live: Vec<usize> = (0..batch).collect();
    let mut feed = vec![opts.bos_id; batch];
    let mut kept_rows = Vec::with_capacity(batch);
    let mut log_probs = Vec::with_capacity(reservation::<f32>(batch.saturating_mul(vocab)));
    let mut best = Vec::with_capacity(batch);
    for step in 0..opts.max_new_tokens {
        if live.is_empty() {
            break;
        }
        if opts.return_scores {
            checked_step(decoder, &mut state, &feed, &mut log_probs, vocab)?;
            argmax_rows(&log_probs, vocab, &mut best);
            for ((&source, &token), row_log_probs) in
                live.iter().zip(&best).zip(log_probs.chunks_exact(vocab))
            {
                sums[source] += f64::from(row_log_probs[token]);
            }
        } else {
            decoder.step_argmax(&mut state, &feed, &mut log_probs, &mut best)?;
            assert_eq!(
                best.len(),
                feed.len(),
                "StepDecoder::step_argmax must write one token per row"
            );
        }
        kept_rows.clear();
        for (row, (&source, &token)) in live.iter().zip(&best).enumerate() {
            assert!(
                token < vocab,
                "StepDecoder::step_argmax: token {token} ≥ V = {vocab}"
            );
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
            let score = if opts.return_scores {
                length_normalized(sum, tokens.len(), opts.length_penalty) as f32
            } else {
                f32::NAN
            };
            vec![Hypothesis { tokens, score }]
        })
        .collect())
}

/// V of `decoder`, which must be at least 1 for any token to be chosen.
pub(super) fn checked_vocab_size<D: StepDecoder>(decoder: &D) -> crate::Result<usize> {
    match decoder.vocab_size() {
        0 => Err(Error::value(
            "cannot decode with an empty target vocabulary (V = 0)",
        )),
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

#[cfg(test)]
mod tests {
    use super::super::toy_decoders::{
        hashed_log_probs, log_normalize, options, recomputed_score, reference_greedy, ToyDecoder,
        ToyState,
    };
    use super::*;

    fn run(decoder: &ToyDecoder, batch: usize, opts: &SearchOptions) -> Vec<Hypothesis> {
        let result = greedy(decoder, ToyState::new(batch), batch, opts).unwrap();
        assert_eq!(result.len(), batch);
        result
            .into_iter()
            .map(|mut hyps| {
                assert_eq!(hyps.len(), 1);
                hyps.pop().unwrap()
            })
            .collect()
    }

    #[test]
    fn equals_argmax_at_each_step_and_drops_finished_rows_with_or_without_scores() {
        for seed in 0..60u64 {
            let vocab = 2 + (seed % 7) as usize;
            let eos = (seed % 3) as i64 % vocab as i64;
            let quantum = [0.0, 0.5, 2.0][(seed % 3) as usize];
            let batch = 1 + (seed % 5) as usize;
            let decoder =
                ToyDecoder::new(vocab, eos, hashed_log_probs(vocab, eos, seed, quantum, 0.4));
            for length_penalty in [0.0, 1.0, 2.0, -0.5] {
                let opts = options(1 + (seed % 9) as usize, 1, length_penalty, eos);
                *decoder.fed.lock().unwrap() = Vec::new();
                let hyps = run(&decoder, batch, &opts);
                for (source, hyp) in hyps.iter().enumerate() {
                    let expected = reference_greedy(&decoder, source, &opts);
                    assert_eq!(hyp.tokens, expected, "seed {seed} source {source}");
                    assert_eq!(
                        hyp.score,
                        recomputed_score(&decoder, source, &expected, length_penalty)
                    );
                    // The row is fed once per token it produced, and never after EOS.
                    assert_eq!(decoder.rows_fed_for(source), vec![1; expected.len()]);
                }
                // Rows stay in source order as others drop out.
                for rows in decoder.fed() {
                    assert!(rows.windows(2).all(|w| w[0] < w[1]));
                }
                // Without scores: the same tokens (through `step_argmax`),
                // NaN scores.
                let unscored = SearchOptions {
                    return_scores: false,
                    ..opts
                };
                for (hyp, bare) in hyps.iter().zip(run(&decoder, batch, &unscored)) {
                    assert_eq!(hyp.tokens, bare.tokens, "seed {seed}");
                    assert!(bare.score.is_nan());
                }
            }
        }
    }

    #[test]
    fn sources_finish_at_different_times() {
        // Source s puts all mass on EOS at step s + 1, else on token 1 + s.
        let log_probs = Box::new(|source: usize, prefix: &[i64]| {
            let mut logits = vec![0.0; 4];
            logits[if prefix.len() == source {
                0
            } else {
                1 + source % 3
            }] = 30.0;
            log_normalize(&logits)
        });
        let decoder = ToyDecoder::new(4, 0, log_probs);
        let hyps = run(&decoder, 3, &options(10, 1, 1.0, 0));
        assert_eq!(hyps[0].tokens, vec![0]);
        assert_eq!(hyps[1].tokens, vec![2, 0]);
        assert_eq!(hyps[2].tokens, vec![3, 3, 0]);
        assert_eq!(decoder.fed(), vec![vec![0, 1, 2], vec![1, 2], vec![2]]);
    }

    #[test]
    fn stops_at_max_new_tokens_without_eos() {
        let decoder = ToyDecoder::new(3, 0, Box::new(|_, _| log_normalize(&[-5.0, 1.0, 0.0])));
        let hyps = run(&decoder, 2, &options(4, 1, 2.0, 0));
        for hyp in &hyps {
            assert_eq!(hyp.tokens, vec![1; 4]);
            let lp = log_normalize(&[-5.0, 1.0, 0.0])[1] as f64;
            assert_eq!(hyp.score, ((lp + lp + lp + lp) / 16.0) as f32);
        }
        assert_eq!(decoder.fed().len(), 4);
    }

    #[test]
    fn zero_max_new_tokens_runs_no_step() {
        let decoder = ToyDecoder::new(3, 0, hashed_log_probs(3, 0, 1, 0.0, 0.0));
        for length_penalty in [0.0, 1.0] {
            let hyps = run(&decoder, 2, &options(0, 1, length_penalty, 0));
            assert_eq!(
                hyps,
                vec![
                    Hypothesis {
                        tokens: vec![],
                        score: 0.0
                    };
                    2
                ]
            );
        }
        assert!(decoder.fed().is_empty());
        assert!(
            greedy(&decoder, ToyState::new(0), 0, &options(5, 1, 1.0, 0))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn eos_at_first_step() {
        let decoder = ToyDecoder::new(3, 2, Box::new(|_, _| log_normalize(&[0.0, 1.0, 1.0])));
        let hyps = run(&decoder, 1, &options(5, 1, 1.0, 1));
        assert_eq!(
            hyps[0].tokens,
            vec![1],
            "tie between 1 and 2 goes to the lower id"
        );
        assert_eq!(hyps[0].score, log_normalize(&[0.0, 1.0, 1.0])[1]);
        assert_eq!(decoder.fed().len(), 1);
    }

    #[test]
    fn errors() {
        let decoder = ToyDecoder::new(3, 0, hashed_log_probs(3, 0, 1, 0.0, 0.0));
        let mut opts = options(5, 1, 1.0, 0);
        opts.num_hypotheses = 2;
        assert!(
            matches!(greedy(&decoder, ToyState::new(1), 1, &opts), Err(Error::Value(m)) if m.contains("num_hypotheses"))
        );
        let empty = ToyDecoder::new(0, 0, Box::new(|_, _| Vec::new()));
        assert!(
            matches!(greedy(&empty, ToyState::new(1), 1, &options(5, 1, 1.0, 0)), Err(Error::Value(m)) if m.contains("vocabulary"))
        );
        let mut failing = ToyDecoder::new(3, 0, hashed_log_probs(3, 0, 1, 0.0, -1.0));
        failing.fail_at_step = Some(2);
        let err = greedy(&failing, ToyState::new(2), 2, &options(5, 1, 1.0, 0)).unwrap_err();
        assert_eq!(err, Error::value("toy decoder failure"));
    }
}
