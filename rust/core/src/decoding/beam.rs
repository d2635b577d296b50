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

use super::greedy::{checked_step, checked_vocab_size, greedy};
use super::hypotheses::{argmax, higher_first, length_normalized, FinishedPool};
use super::{Hypothesis, SearchOptions, StepDecoder};
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
        .map(|source| LiveRow { source, sum: 0.0, node: ROOT, is_beam: true, is_greedy: true })
        .collect();
    let mut feed = Vec::with_capacity(batch * opts.beam_size);
    let mut log_probs = Vec::new();
    for len in 1..=opts.max_new_tokens {
        if rows.is_empty() {
            break;
        }
        feed.clear();
        feed.extend(rows.iter().map(|row| search.tree.last_token(row.node).unwrap_or(opts.bos_id)));
        checked_step(decoder, &mut state, &feed, &mut log_probs, vocab)?;
        search.advance(&rows, &log_probs, len);
        std::mem::swap(&mut rows, &mut search.next_rows);
        let is_identity = search.parents.len() == feed.len() && search.parents.iter().enumerate().all(|(i, &p)| i == p);
        if len < opts.max_new_tokens && !rows.is_empty() && !is_identity {
            decoder.select_rows(&mut state, &search.parents);
        }
    }
    // Rows still alive have run out of steps (or nothing ran at all).
    for row in &rows {
        let len = search.tree.len(row.node);
        search.pools[row.source].offer(length_normalized(row.sum, len, opts.length_penalty), || (row.node, len));
    }
    let tree = search.tree;
    Ok(search
        .pools
        .into_iter()
        .map(|pool| {
            pool.into_ranked()
                .take(opts.num_hypotheses)
                .map(|(score, (node, len))| Hypothesis { tokens: tree.tokens(node, len), score: score as f32 })
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
#[derive(Clone, Copy, Debug)]
struct Candidate {
    sum: f64,
    flat: usize,
}

/// `Less` when `a` ranks before `b`: higher sum, then lower beam, lower token.
fn rank(a: &Candidate, b: &Candidate) -> Ordering {
    higher_first(a.sum, b.sum).then(a.flat.cmp(&b.flat))
}

/// Node id of the empty prefix.
const ROOT: usize = usize::MAX;

/// Every prefix ever extended, as a tree of (token, parent, depth) nodes, so
/// a step appends one node per new row instead of copying prefixes.
#[derive(Default)]
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
    candidates: Vec<Candidate>,
    /// Rows after the current step, grouped by source in source order:
    /// beams (best first), then the shadow greedy row if any.
    next_rows: Vec<LiveRow>,
    /// Row of the current state each of `next_rows` continues.
    parents: Vec<usize>,
}

impl<'o> BeamSearch<'o> {
    fn new(opts: &'o SearchOptions, vocab: usize, batch: usize) -> Self {
        let rows = batch * (opts.beam_size + 1);
        BeamSearch {
            opts,
            vocab,
            tree: TokenTree::default(),
            pools: (0..batch).map(|_| FinishedPool::new(opts.beam_size)).collect(),
            candidates: Vec::new(),
            next_rows: Vec::with_capacity(rows),
            parents: Vec::with_capacity(rows),
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
            let count = rows[first..].iter().take_while(|row| row.source == source).count();
            self.advance_source(rows, log_probs, first..first + count, len);
            first += count;
        }
    }

    /// One source's rows `range` of `rows` (beams first, then the shadow row).
    fn advance_source(&mut self, rows: &[LiveRow], log_probs: &[f32], range: std::ops::Range<usize>, len: usize) {
        let (opts, vocab) = (self.opts, self.vocab);
        let source = rows[range.start].source;
        let row_log_probs = |row: usize| &log_probs[row * vocab..(row + 1) * vocab];
        let first_new = self.next_rows.len();
        let greedy = range.clone().find(|&row| rows[row].is_greedy).map(|row| (row, argmax(row_log_probs(row))));
        let mut greedy_eos_offered = false;

        let beams = rows[range.clone()].iter().take_while(|row| row.is_beam).count();
        let mut chosen = 0;
        if beams > 0 {
            self.candidates.clear();
            for beam in 0..beams {
                let parent_sum = rows[range.start + beam].sum;
                let extensions = row_log_probs(range.start + beam).iter().enumerate();
                self.candidates.extend(
                    extensions.map(|(token, &lp)| Candidate { sum: parent_sum + f64::from(lp), flat: beam * vocab + token }),
                );
            }
            let top = (2 * opts.beam_size).min(self.candidates.len());
            if top < self.candidates.len() {
                self.candidates.select_nth_unstable_by(top - 1, rank);
                self.candidates.truncate(top);
            }
            self.candidates.sort_unstable_by(rank);
            for candidate in &self.candidates {
                let parent = range.start + candidate.flat / vocab;
                let token = candidate.flat % vocab;
                let on_greedy_path = greedy == Some((parent, token));
                let parent_node = rows[parent].node;
                if token as i64 == opts.eos_id {
                    let tree = &mut self.tree;
                    let score = length_normalized(candidate.sum, len, opts.length_penalty);
                    self.pools[source].offer(score, || (tree.push(parent_node, opts.eos_id), len));
                    greedy_eos_offered |= on_greedy_path;
                } else {
                    let node = self.tree.push(parent_node, token as i64);
                    self.next_rows.push(LiveRow { source, sum: candidate.sum, node, is_beam: true, is_greedy: on_greedy_path });
                    self.parents.push(parent);
                    chosen += 1;
                    if chosen == opts.beam_size {
                        break;
                    }
                }
            }
        }

        if let Some((row, token)) = greedy {
            let sum = rows[row].sum + f64::from(row_log_probs(row)[token]);
            if token as i64 == opts.eos_id {
                if !greedy_eos_offered {
                    let tree = &mut self.tree;
                    let score = length_normalized(sum, len, opts.length_penalty);
                    self.pools[source].offer(score, || (tree.push(rows[row].node, opts.eos_id), len));
                }
            } else if !self.next_rows[first_new..].iter().any(|next| next.is_greedy) {
                let node = self.tree.push(rows[row].node, token as i64);
                self.next_rows.push(LiveRow { source, sum, node, is_beam: false, is_greedy: true });
                self.parents.push(row);
            }
        }

        if len == opts.max_new_tokens {
            return;
        }
        if beams > 0 && self.beams_are_done(source, first_new, chosen, len) {
            // Keep only the greedy row (if alive), as a shadow row.
            let greedy_next = (first_new..self.next_rows.len()).find(|&i| self.next_rows[i].is_greedy);
            let kept = greedy_next.map(|i| (LiveRow { is_beam: false, ..self.next_rows[i] }, self.parents[i]));
            self.next_rows.truncate(first_new);
            self.parents.truncate(first_new);
            if let Some((row, parent)) = kept {
                self.next_rows.push(row);
                self.parents.push(parent);
            }
        }
        // A shadow row is dropped once it cannot beat the best kept hypothesis.
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
        let best_len = if lp > 0.0 { self.opts.max_new_tokens } else { len + 1 };
        higher_first(length_normalized(sum, best_len, lp), best) == Ordering::Less
    }
}
