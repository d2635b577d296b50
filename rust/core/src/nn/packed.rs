//! Ragged batches without padding: the valid tokens of a padded [B, S] batch
//! packed into N rows, so that the encoder's linear layers, norms and
//! feed-forward do no work for padding and attention runs per sequence on
//! its own length.

use std::ops::Range;

/// Sequence boundaries in a packed [N, E] matrix: sequence b is rows
/// `seq(b)`, the sequences back to back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sequences {
    /// [B + 1]: sequence b is rows offsets[b]..offsets[b + 1].
    offsets: Vec<usize>,
}

impl Sequences {
    /// Sequences of the given lengths, back to back.
    pub fn from_lengths(lengths: impl IntoIterator<Item = usize>) -> Self {
        let mut offsets = vec![0];
        for len in lengths {
            offsets.push(offsets[offsets.len() - 1] + len);
        }
        Sequences { offsets }
    }

    /// B.
    pub fn batch(&self) -> usize {
        self.offsets.len() - 1
    }

    /// N, the rows of all sequences.
    pub fn tokens(&self) -> usize {
        self.offsets[self.batch()]
    }

    /// The rows of sequence b.
    pub fn seq(&self, b: usize) -> Range<usize> {
        self.offsets[b]..self.offsets[b + 1]
    }

    /// Σ over sequences of len², the (query, key) pairs of self-attention.
    pub fn attention_pairs(&self) -> usize {
        self.offsets.windows(2).map(|w| (w[1] - w[0]).pow(2)).sum()
    }

    /// At most `parts` runs of consecutive sequences of about equal cost,
    /// none empty, as (their rows, the run rebased to row 0). A sequence of
    /// length L costs `per_token`·L + L² (its rows plus its attention).
    pub fn split(&self, parts: usize, per_token: usize) -> Vec<(Range<usize>, Sequences)> {
        let cost = |b: usize| {
            let len = self.seq(b).len();
            per_token * len + len * len
        };
        let total: usize = (0..self.batch()).map(cost).sum();
        let mut out = Vec::with_capacity(parts);
        let (mut first, mut done) = (0, 0);
        for b in 0..self.batch() {
            done += cost(b);
            // Close the run once it reaches its share of the total.
            if done * parts >= total * (out.len() + 1) || b + 1 == self.batch() {
                let rows = self.offsets[first]..self.offsets[b + 1];
                if !rows.is_empty() {
                    let lens = (first..=b).map(|i| self.seq(i).len());
                    out.push((rows, Sequences::from_lengths(lens)));
                }
                first = b + 1;
            }
        }
        out
    }
}

/// The valid (non-padding) positions of a padded batch [B, S], packed in
/// order: sequence b is rows `seqs().seq(b)` of a packed [N, E] matrix, N =
/// the number of valid positions. Padding may sit anywhere in a row
/// (attention without a mask over the packed rows equals attention with the
/// padding masked: a masked key contributes nothing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackedBatch {
    /// S.
    len: usize,
    /// [N]: the padded row b·S + s of each packed row (empty when there is
    /// no padding: then packed row i is padded row i).
    rows: Vec<usize>,
    seqs: Sequences,
}

impl PackedBatch {
    /// The packing of a batch [B, S] with `key_padding_mask` [B, S] (true =
    /// padding; `None` = no padding). Panics if the mask is not B·S long.
    pub fn new(batch: usize, len: usize, key_padding_mask: Option<&[bool]>) -> Self {
        let mut rows = Vec::new();
        let seqs = match key_padding_mask {
            Some(mask) if mask.iter().any(|&pad| pad) => {
                assert_eq!(mask.len(), batch * len, "PackedBatch: mask is not [B, S]");
                let mut lengths = Vec::with_capacity(batch);
                for (b, row) in mask.chunks_exact(len).enumerate() {
                    let before = rows.len();
                    let valid = row.iter().enumerate().filter(|&(_, &pad)| !pad);
                    rows.extend(valid.map(|(s, _)| b * len + s));
                    lengths.push(rows.len() - before);
                }
                Sequences::from_lengths(lengths)
            }
            _ => Sequences::from_lengths(std::iter::repeat_n(len, batch)),
        };
        PackedBatch { len, rows, seqs }
    }

    /// The packed sequences.
    pub fn seqs(&self) -> &Sequences {
        &self.seqs
    }

    /// True when no position is padding (packed = padded).
    pub fn is_dense(&self) -> bool {
        self.seqs.tokens() == self.seqs.batch() * self.len
    }

    /// [N]: the padded row b·S + s that each packed row comes from.
    pub fn padded_rows(&self) -> impl Iterator<Item = usize> + '_ {
        let dense = self.is_dense();
        (0..self.seqs.tokens()).map(move |i| if dense { i } else { self.rows[i] })
    }

    /// x [N, E] packed from `padded` [B·S, E] (moved, not copied, when dense).
    pub fn gather(&self, padded: Vec<f32>, width: usize) -> Vec<f32> {
        if self.is_dense() {
            return padded;
        }
        let mut x = Vec::with_capacity(self.seqs.tokens() * width);
        for &r in &self.rows {
            x.extend_from_slice(&padded[r * width..(r + 1) * width]);
        }
        x
    }

    /// [B·S, E] from `packed` [N, E], zeros at padded positions (what
    /// PyTorch's encoder fast path writes there).
    pub fn scatter(&self, packed: Vec<f32>, width: usize) -> Vec<f32> {
        if self.is_dense() {
            return packed;
        }
        let mut out = vec![0.0; self.seqs.batch() * self.len * width];
        for (&r, row) in self.rows.iter().zip(packed.chunks_exact(width.max(1))) {
            out[r * width..(r + 1) * width].copy_from_slice(row);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_valid_positions_in_order_and_scatters_zeros_at_padding() {
        let mask = [false, true, false, true, true, true, false, false, false];
        let p = PackedBatch::new(3, 3, Some(&mask));
        let s = p.seqs();
        assert_eq!((s.batch(), s.tokens(), p.is_dense()), (3, 5, false));
        assert_eq!([s.seq(0), s.seq(1), s.seq(2)], [0..2, 2..2, 2..5]);
        assert_eq!(s.attention_pairs(), 4 + 9);
        let padded: Vec<f32> = (0..18).map(|i| i as f32).collect();
        assert_eq!(p.padded_rows().collect::<Vec<_>>(), [0, 2, 6, 7, 8]);
        let packed = p.gather(padded.clone(), 2);
        assert_eq!(packed, [0., 1., 4., 5., 12., 13., 14., 15., 16., 17.]);
        let back = p.scatter(packed, 2);
        let want: Vec<f32> = padded
            .iter()
            .enumerate()
            .map(|(i, &v)| if mask[i / 2] { 0.0 } else { v })
            .collect();
        assert_eq!(back, want);
    }

    #[test]
    fn split_makes_balanced_non_empty_runs_covering_every_row() {
        let seqs = Sequences::from_lengths([5, 0, 5, 5, 5, 0]);
        let parts = seqs.split(2, 1);
        let rows: Vec<_> = parts.iter().map(|p| p.0.clone()).collect();
        assert_eq!(rows, [0..10, 10..20]);
        assert_eq!(parts[0].1, Sequences::from_lengths([5, 0, 5]));
        // The trailing empty sequence adds no rows: no run needs it.
        assert_eq!(parts[1].1, Sequences::from_lengths([5, 5]));
        // One long sequence outweighs many short ones; runs are never empty.
        let skewed = Sequences::from_lengths([100, 1, 1, 1]);
        let parts = skewed.split(2, 10);
        assert_eq!(parts.len(), 2);
        assert_eq!((parts[0].0.clone(), parts[1].0.clone()), (0..100, 100..103));
        assert_eq!(Sequences::from_lengths([0, 0]).split(2, 1), []);
        assert_eq!(Sequences::from_lengths([7]).split(3, 1).len(), 1);
    }

    #[test]
    fn no_padding_is_dense_and_moves_buffers() {
        for mask in [None, Some(&[false; 6][..])] {
            let p = PackedBatch::new(2, 3, mask);
            assert!(p.is_dense());
            assert_eq!((p.seqs().tokens(), p.seqs().seq(1)), (6, 3..6));
            assert!(p.padded_rows().eq(0..6));
            let x = vec![1.0; 12];
            let ptr = x.as_ptr();
            let y = p.scatter(p.gather(x, 2), 2);
            assert_eq!(y.as_ptr(), ptr);
        }
        let empty = PackedBatch::new(0, 5, Some(&[]));
        assert_eq!((empty.seqs().batch(), empty.seqs().tokens()), (0, 0));
        let all_pad = PackedBatch::new(2, 2, Some(&[true; 4]));
        assert_eq!(all_pad.seqs().tokens(), 0);
        assert_eq!(all_pad.scatter(Vec::new(), 3), vec![0.0; 12]);
    }
}
