//! What greedy and beam search share: the argmax rule, the ranking order of
//! scores, the length-normalised score and the pool of finished hypotheses.
//!
//! Sums of log-probabilities are accumulated in f64, in step order, and the
//! score is formed from that sum by one formula; so two searches that walk
//! the same prefix get bit-identical scores (beam search relies on this to
//! compare its result with the greedy path), and the f32 score returned is
//! the correctly rounded value of the f64 one.

use std::cmp::Ordering;

use super::reservation;

/// Index of the largest of `row` (`[V]`, V ≥ 1) by the NumPy/PyTorch `argmax`
/// rules: the first of equal maxima wins (lowest token id), and NaN counts as
/// the maximum (the first NaN wins).
pub(crate) fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &value) in row.iter().enumerate() {
        if value.is_nan() {
            return i;
        }
        if value > row[best] {
            best = i;
        }
    }
    best
}

/// Ranking order of scores or summed log-probabilities: `Less` when `a`
/// ranks before `b`. Higher first; NaN ranks above everything (as in
/// [`argmax`]) and equal values tie (callers break ties by position).
pub(crate) fn higher_first(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => b.partial_cmp(&a).unwrap_or(Ordering::Equal),
    }
}

/// Score of a hypothesis of `len` new tokens whose log-probabilities sum to
/// `sum`: `sum / len^length_penalty`, and 0 for the empty hypothesis.
pub(crate) fn length_normalized(sum: f64, len: usize, length_penalty: f32) -> f64 {
    if len == 0 {
        return 0.0;
    }
    sum / (len as f64).powf(f64::from(length_penalty))
}

/// The best `capacity` hypotheses offered so far, as (score, payload).
/// Equal scores rank in offer order: an offer that only ties the worst kept
/// hypothesis of a full pool is rejected.
pub(crate) struct FinishedPool<P> {
    capacity: usize,
    /// Unordered; ranked once by [`FinishedPool::into_ranked`].
    entries: Vec<PoolEntry<P>>,
    offers: u64,
}

struct PoolEntry<P> {
    score: f64,
    /// Offer order, the tie-break between equal scores.
    seq: u64,
    payload: P,
}

impl<P> PoolEntry<P> {
    /// `Less` when `self` ranks before `other`.
    fn rank(&self, other: &Self) -> Ordering {
        higher_first(self.score, other.score).then(self.seq.cmp(&other.seq))
    }
}

impl<P> FinishedPool<P> {
    /// A pool keeping the best `capacity` hypotheses (memory reserved up
    /// front, within [`reservation`]).
    pub(crate) fn new(capacity: usize) -> Self {
        assert!(
            capacity > 0,
            "a finished-hypothesis pool needs room for one hypothesis"
        );
        FinishedPool {
            capacity,
            entries: Vec::with_capacity(reservation::<PoolEntry<P>>(capacity)),
            offers: 0,
        }
    }

    pub(crate) fn is_full(&self) -> bool {
        self.entries.len() >= self.capacity
    }

    fn worst_index(&self) -> Option<usize> {
        (0..self.entries.len()).max_by(|&i, &j| self.entries[i].rank(&self.entries[j]))
    }

    /// Score of the hypothesis ranked last, if any.
    pub(crate) fn worst_score(&self) -> Option<f64> {
        self.worst_index().map(|i| self.entries[i].score)
    }

    /// Score of the hypothesis ranked first, if any.
    pub(crate) fn best_score(&self) -> Option<f64> {
        self.entries
            .iter()
            .min_by(|a, b| a.rank(b))
            .map(|e| e.score)
    }

    /// Keeps the hypothesis if the pool has room or it ranks strictly above
    /// the worst kept one (which it then replaces). `payload` is only built
    /// for a kept hypothesis.
    pub(crate) fn offer(&mut self, score: f64, payload: impl FnOnce() -> P) {
        let seq = self.offers;
        self.offers += 1;
        if !self.is_full() {
            self.entries.push(PoolEntry {
                score,
                seq,
                payload: payload(),
            });
            return;
        }
        let worst = self.worst_index().expect("a full pool is not empty");
        if higher_first(score, self.entries[worst].score) == Ordering::Less {
            self.entries[worst] = PoolEntry {
                score,
                seq,
                payload: payload(),
            };
        }
    }

    /// The kept hypotheses, best first.
    pub(crate) fn into_ranked(mut self) -> impl Iterator<Item = (f64, P)> {
        self.entries.sort_by(|a, b| a.rank(b));
        self.entries.into_iter().map(|e| (e.score, e.payload))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_follows_numpy() {
        assert_eq!(argmax(&[0.0]), 0);
        assert_eq!(argmax(&[-1.0, 3.0, 3.0, 2.0]), 1);
        assert_eq!(argmax(&[f32::NEG_INFINITY, f32::NEG_INFINITY]), 0);
        assert_eq!(argmax(&[-0.0, 0.0]), 0);
        assert_eq!(argmax(&[1.0, f32::NAN, 5.0, f32::NAN]), 1);
        assert_eq!(argmax(&[-5.0, -4.0, f32::INFINITY, f32::INFINITY]), 2);
    }

    #[test]
    fn higher_first_is_descending_with_nan_on_top() {
        assert_eq!(higher_first(2.0, 1.0), Ordering::Less);
        assert_eq!(higher_first(1.0, 2.0), Ordering::Greater);
        assert_eq!(higher_first(0.0, -0.0), Ordering::Equal);
        assert_eq!(higher_first(f64::NAN, f64::INFINITY), Ordering::Less);
        assert_eq!(higher_first(f64::NEG_INFINITY, f64::NAN), Ordering::Greater);
    }

    #[test]
    fn length_normalized_divides_by_len_to_the_penalty() {
        assert_eq!(length_normalized(0.0, 0, 1.0), 0.0);
        assert_eq!(length_normalized(-3.0, 0, 2.0), 0.0);
        assert_eq!(length_normalized(-3.0, 2, 0.0), -3.0);
        assert_eq!(length_normalized(-3.0, 2, 1.0), -1.5);
        assert_eq!(length_normalized(-3.0, 2, 2.0), -0.75);
        assert_eq!(length_normalized(-3.0, 4, 0.5), -1.5);
    }

    #[test]
    fn pool_keeps_the_best_and_ranks_ties_by_offer_order() {
        let mut pool = FinishedPool::new(3);
        assert_eq!(pool.best_score(), None);
        for (score, name) in [(-2.0, "a"), (-1.0, "b"), (-3.0, "c")] {
            pool.offer(score, || name);
        }
        assert!(pool.is_full());
        assert_eq!(pool.worst_score(), Some(-3.0));
        pool.offer(-3.0, || "tie loses");
        pool.offer(-4.0, || "worse");
        pool.offer(-1.0, || "d ties b");
        assert_eq!(pool.worst_score(), Some(-2.0));
        assert_eq!(pool.best_score(), Some(-1.0));
        let ranked: Vec<_> = pool.into_ranked().collect();
        assert_eq!(ranked, vec![(-1.0, "b"), (-1.0, "d ties b"), (-2.0, "a")]);
    }
}
