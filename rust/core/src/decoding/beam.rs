//! Beam search (as in fairseq / Hugging Face / CTranslate2), with one
//! addition: the greedy path is always a candidate, so the best result never
//! scores below greedy search.
//!
//! Semantics, for each source, with k = `beam_size` ≥ 2 and t the number of
//! new tokens after the current step:
//! - Step 1 runs on the source's single row; the chosen beams then duplicate
//!   it (one `select_rows` call per step for the whole batch).
//! - Candidates are (beam, token) pairs ranked by summed log-probability,
//!   higher first, ties → lower beam index, then lower token id. The top 2k
//!   are scanned in that order: a candidate ending in EOS is offered to the
//!   source's pool of finished hypotheses; any other becomes a live beam,
//!   until k live beams are chosen (the scan stops there).
//! - The pool keeps the best k finished hypotheses by score
//!   Σ log p / len^length_penalty (len counts the new tokens incl. EOS);
//!   equal scores rank in the order they were found.
//! - Stopping rule: the source is done when it has no live beam, or when
//!   the pool is full and the best live beam, scored as if it ended at
//!   length t + 1 with its current sum, does not rank above the worst kept
//!   hypothesis. Since log-probabilities are ≤ 0, this bound is exact for
//!   length_penalty ≤ 0; for length_penalty > 0 it is the heuristic of
//!   Hugging Face's `early_stopping=False` (a longer hypothesis divides by a
//!   larger length and may still have scored higher).
//! - After `max_new_tokens` steps the live beams are offered as they are.
//! - Greedy guarantee: the row on the greedy path (argmax at every step,
//!   same rule as [`super::greedy::greedy`]) is tracked. Its EOS is always
//!   offered to the pool; if its continuation is not chosen as a beam it
//!   lives on as a *shadow* row that only follows the argmax and never
//!   feeds the beam. When the source is done, the greedy row survives (alone)
//!   only while an exact bound says it can still beat the best kept
//!   hypothesis; a shadow row is dropped as soon as it cannot. So the best
//!   returned score is ≥ the greedy score (given a decoder whose per-row
//!   log-probs do not depend on the other rows of the state).
//! - `beam_size == 1` is greedy search.
//!
//! Returns the best `num_hypotheses` of the pool, best first (fewer only if
//! fewer distinct hypotheses exist, e.g. `max_new_tokens == 0`).

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::greedy::{checked_step, checked_vocab_size, greedy};
use super::hypotheses::{argmax, higher_first, length_normalized, FinishedPool};
use super::{reservation, Hypothesis, SearchOptions, StepDecoder};
use crate::Error;

/// Beam search for `batch` sources; `state` holds one row per source (row b
/// = source b). See the module documentation for the exact semantics.
/// Returns per source up to `opts.num_hypotheses` hypotheses, best first.
pub fn beam_search<D: StepDecoder>(
    decoder: &D,
    mut state: D::State,
    batch: usize,
    opts: &SearchOptions,
) -> crate::Result<Vec<Vec<Hypothesis>>> {
    if opts.beam_size == 0 {
        return Err(Error::value("beam_size must be at least 1, got 0"));
    }
    if opts.num_hypotheses == 0 || opts.num_hypotheses > opts.beam_size {
        return Err(Error::value(format!(
            "num_hypotheses must be between 1 and beam_size ({}), got {}",
            opts.beam_size, opts.num_hypotheses
        )));
    }
    if opts.beam_size == 1 {
        return greedy(decoder, state, batch, opts);
    }
    let vocab = checked_vocab_size(decoder)?;
    let mut search = BeamSearch::new(opts, vocab, batch);
    let mut rows: Vec<LiveRow> = (0..batch)
        .map(|source| LiveRow {
            source,
            sum: 0.0,
            node: ROOT,
            is_beam: true,
            is_greedy: true,
        })
        .collect();
    let max_rows = batch.saturating_mul(opts.beam_size.saturating_add(1));
    let mut feed = Vec::with_capacity(reservation::<i64>(max_rows));
    let mut log_probs = Vec::with_capacity(reservation::<f32>(max_rows.saturating_mul(vocab)));
    for len in 1..=opts.max_new_tokens {
        if rows.is_empty() {
            break;
        }
        feed.clear();
        feed.extend(
            rows.iter()
                .map(|row| search.tree.last_token(row.node).unwrap_or(opts.bos_id)),
        );
        checked_step(decoder, &mut state, &feed, &mut log_probs, vocab)?;
        search.advance(&rows, &log_probs, len);
        std::mem::swap(&mut rows, &mut search.next_rows);
        let is_identity = search.parents.len() == feed.len()
            && search.parents.iter().enumerate().all(|(i, &p)| i == p);
        if len < opts.max_new_tokens && !rows.is_empty() && !is_identity {
            decoder.select_rows(&mut state, &search.parents);
        }
    }
    // Rows still alive have run out of steps (or nothing ran at all).
    for row in &rows {
        let len = search.tree.len(row.node);
        search.pools[row.source]
            .offer(length_normalized(row.sum, len, opts.length_penalty), || {
                (row.node, len)
            });
    }
    let tree = search.tree;
    Ok(search
        .pools
        .into_iter()
        .map(|pool| {
            pool.into_ranked()
                .take(opts.num_hypotheses)
                .map(|(score, (node, len))| Hypothesis {
                    tokens: tree.tokens(node, len),
                    score: score as f32,
                })
                .collect()
        })
        .collect())
}

/// One row of the decoder state.
#[derive(Clone, Copy, Debug)]
struct LiveRow {
    source: usize,
    /// Σ log p of the row's tokens, in step order.
    sum: f64,
    /// The row's last token in [`TokenTree`] (its prefix), or [`ROOT`].
    node: usize,
    /// A beam (feeds candidates) or the shadow greedy row (follows argmax only).
    is_beam: bool,
    /// On the greedy path.
    is_greedy: bool,
}

/// A (beam, token) extension of a source's beams; `flat` = beam · V + token.
/// Ordered by rank: `Less` = ranks first (higher sum, then lower beam, then
/// lower token), so a max-heap of candidates has the worst on top.
#[derive(Clone, Copy, Debug)]
struct Candidate {
    sum: f64,
    flat: usize,
}

impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        higher_first(self.sum, other.sum).then(self.flat.cmp(&other.flat))
    }
}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Candidate {}

/// Log-probabilities scanned per [`may_reach`] test.
const SCAN_CHUNK: usize = 64;

/// False only if no `lp` of `chunk` has `parent_sum + lp` (in f64) ≥
/// `threshold` or NaN: a vectorisable f32 pre-test on a threshold lowered
/// by a margin far above the f64/f32 rounding errors, so it never skips a
/// candidate the exact test would admit.
fn may_reach(chunk: &[f32], parent_sum: f64, threshold: f64) -> bool {
    let margin = 1e-6 * (threshold.abs() + parent_sum.abs()) + f64::from(f32::MIN_POSITIVE);
    // ±inf or NaN in the sums makes `floor` NaN or -inf: nothing is skipped.
    let floor = (threshold - parent_sum - margin) as f32;
    if floor.is_nan() {
        return true;
    }
    chunk
        .iter()
        .fold(false, |any, &lp| any | (lp >= floor) | lp.is_nan())
}

/// Node id of the empty prefix.
const ROOT: usize = usize::MAX;

/// Every prefix ever extended, as a tree of (token, parent, depth) nodes, so
/// a step appends one node per new row instead of copying prefixes.
struct TokenTree {
    nodes: Vec<TreeNode>,
}

#[derive(Clone, Copy)]
struct TreeNode {
    token: i64,
    parent: usize,
    len: usize,
}

impl TokenTree {
    fn push(&mut self, parent: usize, token: i64) -> usize {
        let len = self.len(parent) + 1;
        self.nodes.push(TreeNode { token, parent, len });
        self.nodes.len() - 1
    }

    fn last_token(&self, node: usize) -> Option<i64> {
        (node != ROOT).then(|| self.nodes[node].token)
    }

    /// Number of tokens in the prefix ending at `node`.
    fn len(&self, node: usize) -> usize {
        if node == ROOT {
            0
        } else {
            self.nodes[node].len
        }
    }

    /// The prefix ending at `node`, which has `len` tokens.
    fn tokens(&self, mut node: usize, len: usize) -> Vec<i64> {
        let mut tokens = vec![0; len];
        for slot in tokens.iter_mut().rev() {
            *slot = self.nodes[node].token;
            node = self.nodes[node].parent;
        }
        tokens
    }
}

/// Search state besides the live rows; buffers are reused across steps.
struct BeamSearch<'o> {
    opts: &'o SearchOptions,
    vocab: usize,
    tree: TokenTree,
    /// One per source, capacity `beam_size`; payload (node, len).
    pools: Vec<FinishedPool<(usize, usize)>>,
    /// The best candidates of the current source, worst on top.
    top_candidates: BinaryHeap<Candidate>,
    /// Rows after the current step, grouped by source in source order:
    /// beams (best first), then the shadow greedy row if any.
    next_rows: Vec<LiveRow>,
    /// Row of the current state each of `next_rows` continues.
    parents: Vec<usize>,
}

impl<'o> BeamSearch<'o> {
    /// Buffers are reserved for their largest size (within
    /// [`reservation`]: `beam_size` comes from the user and may be huge), so
    /// the steps reuse them without allocating.
    fn new(opts: &'o SearchOptions, vocab: usize, batch: usize) -> Self {
        let k = opts.beam_size;
        // Per source and step: k beams and the greedy row, and up to k + 1
        // EOS offers kept by the pool (one per beam, one for the greedy row).
        let rows = batch.saturating_mul(k.saturating_add(1));
        let nodes = rows.saturating_mul(2).saturating_mul(opts.max_new_tokens);
        BeamSearch {
            opts,
            vocab,
            tree: TokenTree {
                nodes: Vec::with_capacity(reservation::<TreeNode>(nodes)),
            },
            pools: (0..batch).map(|_| FinishedPool::new(k)).collect(),
            top_candidates: BinaryHeap::with_capacity(reservation::<Candidate>(
                k.saturating_mul(2),
            )),
            next_rows: Vec::with_capacity(reservation::<LiveRow>(rows)),
            parents: Vec::with_capacity(reservation::<usize>(rows)),
        }
    }

    /// Turns the step's log-probabilities `[rows.len(), V]` into
    /// `next_rows`/`parents`; `len` = tokens per row after this step.
    fn advance(&mut self, rows: &[LiveRow], log_probs: &[f32], len: usize) {
        self.next_rows.clear();
        self.parents.clear();
        let mut first = 0;
        while first < rows.len() {
            let source = rows[first].source;
            let count = rows[first..]
                .iter()
                .take_while(|row| row.source == source)
                .count();
            self.advance_source(rows, log_probs, first..first + count, len);
            first += count;
        }
    }

    /// One source's rows `range` of `rows` (beams first, then the shadow
    /// row): choose its next beams, follow its greedy path, retire it if done.
    fn advance_source(
        &mut self,
        rows: &[LiveRow],
        log_probs: &[f32],
        range: std::ops::Range<usize>,
        len: usize,
    ) {
        let vocab = self.vocab;
        let row_log_probs = |row: usize| &log_probs[row * vocab..(row + 1) * vocab];
        let source = rows[range.start].source;
        let first_new = self.next_rows.len();
        let greedy = range
            .clone()
            .find(|&row| rows[row].is_greedy)
            .map(|row| (row, argmax(row_log_probs(row))));
        let beams = rows[range.clone()]
            .iter()
            .take_while(|row| row.is_beam)
            .count();
        let (chosen, greedy_eos_offered) = if beams > 0 {
            self.choose_beams(
                rows,
                log_probs,
                range.start..range.start + beams,
                len,
                greedy,
            )
        } else {
            (0, false)
        };
        if let Some((row, token)) = greedy {
            let sum = rows[row].sum + f64::from(row_log_probs(row)[token]);
            if token as i64 == self.opts.eos_id {
                if !greedy_eos_offered {
                    self.offer_eos(source, rows[row].node, sum, len);
                }
            } else if !self.next_rows[first_new..]
                .iter()
                .any(|next| next.is_greedy)
            {
                let node = self.tree.push(rows[row].node, token as i64);
                self.next_rows.push(LiveRow {
                    source,
                    sum,
                    node,
                    is_beam: false,
                    is_greedy: true,
                });
                self.parents.push(row);
            }
        }
        if len < self.opts.max_new_tokens {
            if beams > 0 && self.beams_are_done(source, first_new, chosen, len) {
                self.keep_only_greedy_row(first_new);
            }
            self.drop_hopeless_shadow_row(source, first_new, len);
        }
    }

    /// Scans the top 2k candidates of the beams `beam_rows` (one source's)
    /// best first: EOS → offered to the pool, others → `next_rows` until k
    /// are chosen. Returns (beams chosen, whether the greedy row's EOS was
    /// offered); `greedy` = (greedy row, its argmax token).
    fn choose_beams(
        &mut self,
        rows: &[LiveRow],
        log_probs: &[f32],
        beam_rows: std::ops::Range<usize>,
        len: usize,
        greedy: Option<(usize, usize)>,
    ) -> (usize, bool) {
        let (opts, vocab) = (self.opts, self.vocab);
        let source = rows[beam_rows.start].source;
        // Partial selection: one pass over beams × V keeping the best
        // `wanted` in a heap, so most candidates cost a single comparison.
        let wanted = opts
            .beam_size
            .saturating_mul(2)
            .min(beam_rows.len() * vocab);
        let top = &mut self.top_candidates;
        top.clear();
        // Sum of the worst kept candidate once `wanted` are kept: a sum below
        // it cannot enter (the common case, one comparison). Comparisons with
        // NaN are false, so NaN sums or thresholds get the exact comparison.
        let mut threshold = f64::NEG_INFINITY;
        for (beam, row) in beam_rows.clone().enumerate() {
            let parent_sum = rows[row].sum;
            let row_log_probs = &log_probs[row * vocab..(row + 1) * vocab];
            for (chunk_index, chunk) in row_log_probs.chunks(SCAN_CHUNK).enumerate() {
                if !may_reach(chunk, parent_sum, threshold) {
                    continue;
                }
                for (i, &lp) in chunk.iter().enumerate() {
                    let sum = parent_sum + f64::from(lp);
                    if sum < threshold {
                        continue;
                    }
                    let candidate = Candidate {
                        sum,
                        flat: beam * vocab + chunk_index * SCAN_CHUNK + i,
                    };
                    if top.len() < wanted {
                        top.push(candidate);
                    } else if let Some(mut worst) = top.peek_mut() {
                        if candidate < *worst {
                            *worst = candidate;
                        }
                    }
                    if top.len() == wanted {
                        threshold = top.peek().map_or(threshold, |worst| worst.sum);
                    }
                }
            }
        }
        // Ascending = best first; the buffer goes back into the heap below.
        let ranked = std::mem::take(top).into_sorted_vec();
        let mut chosen = 0;
        let mut greedy_eos_offered = false;
        for candidate in &ranked {
            let parent = beam_rows.start + candidate.flat / vocab;
            let token = candidate.flat % vocab;
            let on_greedy_path = greedy == Some((parent, token));
            if token as i64 == opts.eos_id {
                self.offer_eos(source, rows[parent].node, candidate.sum, len);
                greedy_eos_offered |= on_greedy_path;
            } else {
                let node = self.tree.push(rows[parent].node, token as i64);
                self.next_rows.push(LiveRow {
                    source,
                    sum: candidate.sum,
                    node,
                    is_beam: true,
                    is_greedy: on_greedy_path,
                });
                self.parents.push(parent);
                chosen += 1;
                if chosen == opts.beam_size {
                    break;
                }
            }
        }
        self.top_candidates = BinaryHeap::from(ranked);
        (chosen, greedy_eos_offered)
    }

    /// Offers prefix `parent_node` + EOS (`len` tokens, Σ log p = `sum`).
    fn offer_eos(&mut self, source: usize, parent_node: usize, sum: f64, len: usize) {
        let (tree, eos) = (&mut self.tree, self.opts.eos_id);
        let score = length_normalized(sum, len, self.opts.length_penalty);
        self.pools[source].offer(score, || (tree.push(parent_node, eos), len));
    }

    /// The source's beams are done: of its new rows `next_rows[first_new..]`
    /// keep only the greedy one (if alive), as a shadow row.
    fn keep_only_greedy_row(&mut self, first_new: usize) {
        let greedy = (first_new..self.next_rows.len()).find(|&i| self.next_rows[i].is_greedy);
        let kept = greedy.map(|i| {
            let row = LiveRow {
                is_beam: false,
                ..self.next_rows[i]
            };
            (row, self.parents[i])
        });
        self.next_rows.truncate(first_new);
        self.parents.truncate(first_new);
        if let Some((row, parent)) = kept {
            self.next_rows.push(row);
            self.parents.push(parent);
        }
    }

    /// Drops the source's shadow row (the last of `next_rows[first_new..]`,
    /// if any) once it cannot beat the best kept hypothesis.
    fn drop_hopeless_shadow_row(&mut self, source: usize, first_new: usize, len: usize) {
        if let Some(last) = self.next_rows[first_new..].last() {
            if !last.is_beam && !self.greedy_can_beat_best(source, last.sum, len) {
                self.next_rows.pop();
                self.parents.pop();
            }
        }
    }

    /// The stopping rule (module documentation) after a step that left
    /// `chosen` live beams of `len` tokens at `next_rows[first_new..]`, best first.
    fn beams_are_done(&self, source: usize, first_new: usize, chosen: usize, len: usize) -> bool {
        if chosen == 0 {
            return true;
        }
        let pool = &self.pools[source];
        let Some(worst) = pool.worst_score().filter(|_| pool.is_full()) else {
            return false;
        };
        let best_live_sum = self.next_rows[first_new].sum;
        let bound = length_normalized(best_live_sum, len + 1, self.opts.length_penalty);
        higher_first(bound, worst) != Ordering::Less
    }

    /// Whether a greedy row of `len` tokens summing to `sum` could still end
    /// (at a length in len+1 ..= max_new_tokens, with a sum ≤ `sum`) with a
    /// score above the best kept hypothesis: an exact bound.
    fn greedy_can_beat_best(&self, source: usize, sum: f64, len: usize) -> bool {
        let Some(best) = self.pools[source].best_score() else {
            return true;
        };
        let lp = self.opts.length_penalty;
        // sum ≤ 0: sum / L^lp is largest at the longest L when lp > 0, else at the shortest.
        let best_len = if lp > 0.0 {
            self.opts.max_new_tokens
        } else {
            len + 1
        };
        higher_first(length_normalized(sum, best_len, lp), best) == Ordering::Less
    }
}

#[cfg(test)]
mod tests {
    use super::super::toy_decoders::{
        all_hypotheses, hashed_log_probs, log_normalize, options, recomputed_score, ToyDecoder,
        ToyState,
    };
    use super::*;

    /// The documented semantics written out plainly for one source: prefixes
    /// as vectors, full sorts, no batching, no decoder state. Returns the
    /// hypotheses and the number of rows alive at each step.
    fn reference_beam(
        decoder: &ToyDecoder,
        source: usize,
        opts: &SearchOptions,
    ) -> (Vec<(Vec<i64>, f32)>, Vec<usize>) {
        struct Row {
            prefix: Vec<i64>,
            sum: f64,
            is_beam: bool,
            is_greedy: bool,
        }
        let k = opts.beam_size;
        let lp = f64::from(opts.length_penalty);
        let score = |sum: f64, len: usize| {
            if len == 0 {
                0.0
            } else {
                sum / (len as f64).powf(lp)
            }
        };
        // (score, offer order, tokens), kept sorted best first, at most k.
        let mut pool: Vec<(f64, usize, Vec<i64>)> = Vec::new();
        let mut offers = 0;
        let mut offer = |pool: &mut Vec<(f64, usize, Vec<i64>)>, score: f64, tokens: Vec<i64>| {
            pool.push((score, offers, tokens));
            offers += 1;
            pool.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap().then(a.1.cmp(&b.1)));
            pool.truncate(k);
        };
        let extend = |prefix: &[i64], token: i64| [prefix, &[token]].concat();
        let mut rows = vec![Row {
            prefix: vec![],
            sum: 0.0,
            is_beam: true,
            is_greedy: true,
        }];
        let mut rows_per_step = Vec::new();
        for len in 1..=opts.max_new_tokens {
            if rows.is_empty() {
                break;
            }
            rows_per_step.push(rows.len());
            let log_probs: Vec<Vec<f32>> = rows
                .iter()
                .map(|row| (decoder.log_probs)(source, &row.prefix))
                .collect();
            let greedy = rows.iter().position(|row| row.is_greedy).map(|row| {
                let max = log_probs[row]
                    .iter()
                    .cloned()
                    .fold(f32::NEG_INFINITY, f32::max);
                (row, log_probs[row].iter().position(|&x| x == max).unwrap())
            });
            let mut next: Vec<Row> = Vec::new();
            let mut greedy_eos_offered = false;
            let mut candidates = Vec::new();
            for (beam, row) in rows.iter().enumerate().filter(|(_, row)| row.is_beam) {
                for (token, &x) in log_probs[beam].iter().enumerate() {
                    candidates.push((row.sum + f64::from(x), beam, token));
                }
            }
            candidates.sort_by(|a, b| {
                b.0.partial_cmp(&a.0)
                    .unwrap()
                    .then((a.1, a.2).cmp(&(b.1, b.2)))
            });
            for &(sum, beam, token) in candidates.iter().take(2 * k) {
                let on_greedy_path = greedy == Some((beam, token));
                if token as i64 == opts.eos_id {
                    offer(
                        &mut pool,
                        score(sum, len),
                        extend(&rows[beam].prefix, opts.eos_id),
                    );
                    greedy_eos_offered |= on_greedy_path;
                } else {
                    let prefix = extend(&rows[beam].prefix, token as i64);
                    next.push(Row {
                        prefix,
                        sum,
                        is_beam: true,
                        is_greedy: on_greedy_path,
                    });
                    if next.len() == k {
                        break;
                    }
                }
            }
            let chosen = next.len();
            if let Some((row, token)) = greedy {
                let sum = rows[row].sum + f64::from(log_probs[row][token]);
                let prefix = extend(&rows[row].prefix, token as i64);
                if token as i64 == opts.eos_id {
                    if !greedy_eos_offered {
                        offer(&mut pool, score(sum, len), prefix);
                    }
                } else if !next.iter().any(|row| row.is_greedy) {
                    next.push(Row {
                        prefix,
                        sum,
                        is_beam: false,
                        is_greedy: true,
                    });
                }
            }
            if len < opts.max_new_tokens {
                let had_beams = rows.iter().any(|row| row.is_beam);
                let done = chosen == 0
                    || (pool.len() == k && score(next[0].sum, len + 1) <= pool[k - 1].0);
                if had_beams && done {
                    next.retain(|row| row.is_greedy);
                    next.iter_mut().for_each(|row| row.is_beam = false);
                }
                if let Some(last) = next.last() {
                    let best_len = if lp > 0.0 {
                        opts.max_new_tokens
                    } else {
                        len + 1
                    };
                    if !last.is_beam && !pool.is_empty() && score(last.sum, best_len) <= pool[0].0 {
                        next.pop();
                    }
                }
            }
            rows = next;
        }
        for row in rows {
            offer(&mut pool, score(row.sum, row.prefix.len()), row.prefix);
        }
        let hyps = pool
            .into_iter()
            .take(opts.num_hypotheses)
            .map(|(s, _, tokens)| (tokens, s as f32))
            .collect();
        (hyps, rows_per_step)
    }

    fn run(decoder: &ToyDecoder, batch: usize, opts: &SearchOptions) -> Vec<Vec<(Vec<i64>, f32)>> {
        *decoder.fed.lock().unwrap() = Vec::new();
        let result = beam_search(decoder, ToyState::new(batch), batch, opts).unwrap();
        assert_eq!(result.len(), batch);
        result
            .into_iter()
            .map(|hyps| hyps.into_iter().map(|h| (h.tokens, h.score)).collect())
            .collect()
    }

    fn greedy_scores(
        decoder: &ToyDecoder,
        batch: usize,
        opts: &SearchOptions,
    ) -> Vec<(Vec<i64>, f32)> {
        let opts = SearchOptions {
            beam_size: 1,
            num_hypotheses: 1,
            ..*opts
        };
        greedy(decoder, ToyState::new(batch), batch, &opts)
            .unwrap()
            .into_iter()
            .map(|mut hyps| {
                let h = hyps.pop().unwrap();
                (h.tokens, h.score)
            })
            .collect()
    }

    /// Properties any beam result must have, whatever the search did.
    fn check_hypotheses(
        decoder: &ToyDecoder,
        source: usize,
        opts: &SearchOptions,
        hyps: &[(Vec<i64>, f32)],
    ) {
        assert!(!hyps.is_empty() && hyps.len() <= opts.num_hypotheses);
        for (i, (tokens, score)) in hyps.iter().enumerate() {
            let eos_at = tokens.iter().position(|&t| t == opts.eos_id);
            assert!(
                eos_at.map_or(tokens.len() == opts.max_new_tokens, |at| at + 1
                    == tokens.len())
            );
            assert!(tokens.len() <= opts.max_new_tokens);
            assert_eq!(
                *score,
                recomputed_score(decoder, source, tokens, opts.length_penalty),
                "{tokens:?}"
            );
            if i > 0 {
                assert!(hyps[i - 1].1 >= *score, "best first");
                assert!(
                    hyps[..i].iter().all(|(other, _)| other != tokens),
                    "distinct"
                );
            }
        }
    }

    #[test]
    fn matches_the_plain_reference_and_never_loses_to_greedy() {
        let mut shadow_rows_seen = 0;
        for seed in 0..150u64 {
            let vocab = 2 + (seed % 6) as usize;
            let eos = (seed % 2) as i64;
            let quantum = [0.0, 0.0, 1.0, 3.0][(seed % 4) as usize];
            let eos_drift = [0.0, 0.3, 1.0][(seed % 3) as usize];
            let batch = 1 + (seed % 4) as usize;
            let decoder = ToyDecoder::new(
                vocab,
                eos,
                hashed_log_probs(vocab, eos, seed, quantum, eos_drift),
            );
            for beam_size in 2..=5 {
                for length_penalty in [0.0, 0.5, 1.0, 2.0, -0.5] {
                    let mut opts = options(1 + (seed % 8) as usize, beam_size, length_penalty, eos);
                    opts.num_hypotheses = 1 + (seed as usize % beam_size);
                    let greedy = greedy_scores(&decoder, batch, &opts);
                    let result = run(&decoder, batch, &opts);
                    for (source, hyps) in result.iter().enumerate() {
                        let context = format!(
                            "seed {seed} k {beam_size} lp {length_penalty} source {source}"
                        );
                        check_hypotheses(&decoder, source, &opts, hyps);
                        let (expected, rows_per_step) = reference_beam(&decoder, source, &opts);
                        assert_eq!(hyps, &expected, "{context}");
                        assert_eq!(decoder.rows_fed_for(source), rows_per_step, "{context}");
                        assert!(
                            hyps[0].1 >= greedy[source].1,
                            "{context}: beam {:?} < greedy {:?}",
                            hyps[0],
                            greedy[source]
                        );
                        shadow_rows_seen += rows_per_step
                            .iter()
                            .filter(|&&rows| rows > beam_size)
                            .count();
                    }
                    // One row block per source, in source order.
                    for rows in decoder.fed() {
                        assert!(rows.windows(2).all(|w| w[0] <= w[1]));
                    }
                }
            }
        }
        assert!(shadow_rows_seen > 0, "the shadow greedy row was exercised");
    }

    #[test]
    fn large_vocabularies_match_the_reference() {
        // Several scan chunks per row, with the chunk pre-test skipping most.
        for seed in 0..12u64 {
            let vocab = [130, 200, 64][seed as usize % 3];
            let eos = 3;
            let decoder = ToyDecoder::new(
                vocab,
                eos,
                hashed_log_probs(vocab, eos, seed, [0.0, 0.5][seed as usize % 2], 0.5),
            );
            for length_penalty in [0.0, 1.0] {
                let opts = SearchOptions {
                    num_hypotheses: 2,
                    ..options(5, 3, length_penalty, eos)
                };
                let result = run(&decoder, 2, &opts);
                for (source, hyps) in result.iter().enumerate() {
                    check_hypotheses(&decoder, source, &opts, hyps);
                    assert_eq!(hyps, &reference_beam(&decoder, source, &opts).0);
                }
            }
        }
    }

    #[test]
    fn may_reach_never_skips_an_admissible_candidate() {
        let exact = |chunk: &[f32], parent: f64, threshold: f64| {
            chunk.iter().any(|&lp| {
                let sum = parent + f64::from(lp);
                sum.is_nan() || sum >= threshold
            })
        };
        let mut values = vec![
            0.0f32,
            -0.0,
            -1e-30,
            -1.0,
            -2.5,
            -100.0,
            f32::NEG_INFINITY,
            f32::NAN,
        ];
        values.extend([1.0f32, 1.0 + f32::EPSILON, 1.0 - f32::EPSILON / 2.0].map(|v| -v));
        let sums = [
            0.0,
            -1.0,
            -1.0000001,
            -3.5,
            -1e6,
            f64::NEG_INFINITY,
            f64::NAN,
        ];
        for &lp in &values {
            for &parent in &sums {
                for &threshold in &sums {
                    let chunk = [f32::NEG_INFINITY, lp];
                    if exact(&chunk, parent, threshold) {
                        assert!(
                            may_reach(&chunk, parent, threshold),
                            "{lp} {parent} {threshold}"
                        );
                    }
                    // Just at the boundary, from both sides.
                    let boundary = (threshold - parent) as f32;
                    for delta in [-1e-7f32, 0.0, 1e-7] {
                        let near = [boundary + delta * boundary.abs()];
                        if exact(&near, parent, threshold) {
                            assert!(may_reach(&near, parent, threshold));
                        }
                    }
                }
            }
        }
        assert!(
            !may_reach(&[-10.0; 64], -1.0, -2.0),
            "clearly hopeless chunks are skipped"
        );
    }

    #[test]
    fn exhaustive_when_the_beam_holds_every_hypothesis() {
        // V = 3, 3 steps: 1 + 2 + 4 + 8 = 15 complete hypotheses. With k = 16
        // nothing is pruned and the pool never fills, so the search returns all.
        for seed in 0..40u64 {
            let eos = (seed % 3) as i64;
            let decoder = ToyDecoder::new(
                3,
                eos,
                hashed_log_probs(3, eos, seed, [0.0, 1.0][seed as usize % 2], 0.2),
            );
            for length_penalty in [0.0, 1.0, 2.0, -1.0] {
                let mut opts = options(3, 16, length_penalty, eos);
                opts.num_hypotheses = 16;
                let result = run(&decoder, 2, &opts);
                for (source, hyps) in result.iter().enumerate() {
                    check_hypotheses(&decoder, source, &opts, hyps);
                    let mut expected = all_hypotheses(&decoder, source, &opts);
                    assert_eq!(expected.len(), 15);
                    let mut got = hyps.clone();
                    got.sort_by(|a, b| a.0.cmp(&b.0));
                    expected.sort_by(|a, b| a.0.cmp(&b.0));
                    assert_eq!(got, expected, "seed {seed} lp {length_penalty}");
                }
            }
        }
    }

    #[test]
    fn huge_beam_size_searches_everything_without_reserving_for_it() {
        let decoder = ToyDecoder::new(3, 0, hashed_log_probs(3, 0, 77, 0.0, 0.2));
        let mut opts = options(3, usize::MAX, 1.0, 0);
        opts.num_hypotheses = 4;
        let mut expected = all_hypotheses(&decoder, 0, &opts);
        expected.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap());
        expected.truncate(4);
        assert_eq!(run(&decoder, 1, &opts)[0], expected);
    }

    #[test]
    fn best_is_between_greedy_and_the_exhaustive_optimum() {
        for seed in 0..80u64 {
            let vocab = 3 + (seed % 2) as usize;
            let eos = 0;
            let decoder = ToyDecoder::new(
                vocab,
                eos,
                hashed_log_probs(vocab, eos, seed + 1000, 0.0, 0.5),
            );
            for length_penalty in [0.0, 1.0, 2.0] {
                for beam_size in [2, 3] {
                    let opts = options(4, beam_size, length_penalty, eos);
                    let greedy = greedy_scores(&decoder, 1, &opts)[0].1;
                    let best = run(&decoder, 1, &opts)[0][0].1;
                    let optimum = all_hypotheses(&decoder, 0, &opts)
                        .iter()
                        .map(|h| h.1)
                        .fold(f32::NEG_INFINITY, f32::max);
                    assert!(greedy <= best && best <= optimum);
                }
            }
        }
    }

    #[test]
    fn beam_size_one_is_greedy() {
        for seed in 0..30u64 {
            let decoder = ToyDecoder::new(5, 1, hashed_log_probs(5, 1, seed, 1.0, 0.3));
            let opts = options(6, 1, 1.0, 1);
            let beam: Vec<_> = run(&decoder, 3, &opts)
                .into_iter()
                .map(|mut h| h.pop().unwrap())
                .collect();
            assert_eq!(beam, greedy_scores(&decoder, 3, &opts));
        }
    }

    /// log-probs from explicit weights per prefix, uniform elsewhere.
    fn scripted(vocab: usize, table: Vec<(Vec<i64>, Vec<f64>)>) -> ToyDecoder {
        ToyDecoder::new(
            vocab,
            0,
            Box::new(move |_, prefix| {
                let weights = table
                    .iter()
                    .find(|(p, _)| p == prefix)
                    .map_or(vec![1.0; vocab], |(_, w)| w.clone());
                log_normalize(&weights.iter().map(|w| w.ln()).collect::<Vec<_>>())
            }),
        )
    }

    #[test]
    fn keeps_the_greedy_path_when_the_beam_prunes_it() {
        // Tokens: 0 = EOS, 1 = a, 2 = b, 3 = c, 4 = d. Greedy: a a EOS (p = 0.4·0.25·1).
        // With k = 2, "a a" (0.1) is pruned at step 2 by "b a" and "b b" (0.15),
        // whose continuations are uniform: for length_penalty ≤ 1 every
        // hypothesis plain beam search finds scores below the greedy one.
        let tiny = 1e-9;
        let decoder = scripted(
            5,
            vec![
                (vec![], vec![tiny, 0.4, 0.3, 0.3, tiny]),
                (vec![1], vec![tiny, 0.25, 0.25, 0.25, 0.25]),
                (vec![2], vec![tiny, 0.5, 0.5, tiny, tiny]),
                (vec![1, 1], vec![1.0, tiny, tiny, tiny, tiny]),
            ],
        );
        for length_penalty in [0.0, 1.0, 2.0] {
            let mut opts = options(6, 2, length_penalty, 0);
            opts.num_hypotheses = 2;
            let greedy = greedy_scores(&decoder, 1, &opts);
            let result = run(&decoder, 1, &opts);
            assert_eq!(greedy[0].0, vec![1, 1, 0]);
            if length_penalty <= 1.0 {
                assert_eq!(result[0][0], greedy[0], "lp {length_penalty}");
            } else {
                assert!(result[0][0].1 >= greedy[0].1);
            }
            // Step 3 fed the two beams plus the shadow greedy row.
            assert_eq!(decoder.rows_fed_for(0)[..3], [1, 2, 3]);
            check_hypotheses(&decoder, 0, &opts, &result[0]);
        }
    }

    #[test]
    fn finished_sources_leave_the_state() {
        // Source 0: EOS is certain at step 1. Source 1: EOS is likely only from step 3.
        let decoder = ToyDecoder::new(
            4,
            0,
            Box::new(|source, prefix: &[i64]| {
                let eos_weight = if source == 0 || prefix.len() >= 2 {
                    1e6
                } else {
                    1e-3
                };
                log_normalize(&[eos_weight, 1.0, 2.0, 3.0].map(f64::ln))
            }),
        );
        let mut opts = options(8, 2, 1.0, 0);
        opts.num_hypotheses = 2;
        let result = run(&decoder, 2, &opts);
        for (source, hyps) in result.iter().enumerate() {
            check_hypotheses(&decoder, source, &opts, hyps);
        }
        assert_eq!(result[0][0].0, vec![0]);
        assert_eq!(result[1][0].0, vec![3, 3, 0]);
        let fed = decoder.fed();
        assert_eq!(fed[0], vec![0, 1]);
        assert!(fed.len() < 8, "the search stopped before max_new_tokens");
        // Source 0 had 1 finished hypothesis after step 1, needed k = 2: it ran on
        // until its beams could no longer beat the worst kept one, then left.
        let last_step_of_0 = fed.iter().rposition(|rows| rows.contains(&0)).unwrap();
        assert!(fed[last_step_of_0 + 1..]
            .iter()
            .all(|rows| rows.iter().all(|&s| s == 1)));
        let (expected, rows_per_step) = reference_beam(&decoder, 0, &opts);
        assert_eq!(result[0], expected);
        assert_eq!(decoder.rows_fed_for(0), rows_per_step);
    }

    #[test]
    fn zero_max_new_tokens_gives_the_empty_hypothesis() {
        let decoder = ToyDecoder::new(3, 0, hashed_log_probs(3, 0, 5, 0.0, 0.0));
        let mut opts = options(0, 3, 1.0, 0);
        opts.num_hypotheses = 3;
        assert_eq!(run(&decoder, 2, &opts), vec![vec![(vec![], 0.0)]; 2]);
        assert!(decoder.fed().is_empty());
    }

    #[test]
    fn eos_at_first_step() {
        // EOS most likely at step 1: the best hypothesis is [EOS] alone.
        let decoder = scripted(3, vec![(vec![], vec![0.9, 0.05, 0.05])]);
        let mut opts = options(4, 2, 1.0, 0);
        opts.num_hypotheses = 2;
        let result = run(&decoder, 1, &opts);
        assert_eq!(result[0][0], (vec![0], (0.9f64 / 1.0).ln() as f32));
        check_hypotheses(&decoder, 0, &opts, &result[0]);
    }

    #[test]
    fn errors() {
        let decoder = ToyDecoder::new(3, 0, hashed_log_probs(3, 0, 1, 0.0, 0.0));
        let beam = |beam_size, num_hypotheses| {
            let opts = SearchOptions {
                num_hypotheses,
                ..options(5, beam_size, 1.0, 0)
            };
            beam_search(&decoder, ToyState::new(1), 1, &opts)
        };
        assert!(matches!(beam(0, 1), Err(Error::Value(m)) if m.contains("beam_size")));
        assert!(matches!(beam(2, 3), Err(Error::Value(m)) if m.contains("num_hypotheses")));
        assert!(matches!(beam(2, 0), Err(Error::Value(m)) if m.contains("num_hypotheses")));
        let mut failing = ToyDecoder::new(3, 0, hashed_log_probs(3, 0, 1, 0.0, -1.0));
        failing.fail_at_step = Some(1);
        let opts = SearchOptions {
            num_hypotheses: 2,
            ..options(5, 2, 1.0, 0)
        };
        let err = beam_search(&failing, ToyState::new(2), 2, &opts).unwrap_err();
        assert_eq!(err, Error::value("toy decoder failure"));
    }
}
