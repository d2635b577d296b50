//! Ragged batches without padding: the valid tokens of a padded [B, S] batch
//! packed into N rows, so that the encoder's linear layers, norms and
//! feed-forward do no work for padding and attention runs per sequence on
//! its own length.

use std::ops::Range;

/// The valid (non-padding) positions of a padded batch [B, S], packed in
/// order: sequence b is rows `seq(b)` of a packed [N, E] matrix, N = the
/// number of valid positions. Padding may sit anywhere in a row (attention
/// without a mask over the packed rows equals attention with the padding
/// masked: a masked key contributes nothing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackedBatch {
    /// S.
    len: usize,
    /// [N]: the padded row b·S + s of each packed row (empty when there is
    /// no padding: then packed row i is padded row i).
    rows: Vec<usize>,
    /// [B + 1]: sequence b is packed rows offsets[b]..offsets[b + 1].
    offsets: Vec<usize>,
}

impl PackedBatch {
    /// The packing of a batch [B, S] with `key_padding_mask` [B, S] (true =
    /// padding; `None` = no padding). Panics if the mask is not B·S long.
    pub fn new(batch: usize, len: usize, key_padding_mask: Option<&[bool]>) -> Self {
        let mut offsets = Vec::with_capacity(batch + 1);
        offsets.push(0);
        let mut rows = Vec::new();
        match key_padding_mask {
            Some(mask) if mask.iter().any(|&pad| pad) => {
                assert_eq!(mask.len(), batch * len, "PackedBatch: mask is not [B, S]");
                for (b, row) in mask.chunks_exact(len.max(1)).enumerate().take(batch) {
                    let valid = row.iter().enumerate().filter(|&(_, &pad)| !pad);
                    rows.extend(valid.map(|(s, _)| b * len + s));
                    offsets.push(rows.len());
                }
            }
            _ => offsets.extend((1..=batch).map(|b| b * len)),
        }
        PackedBatch { len, rows, offsets }
    }

    /// B.
    pub fn batch(&self) -> usize {
        self.offsets.len() - 1
    }

    /// N, the packed rows.
    pub fn tokens(&self) -> usize {
        self.offsets[self.batch()]
    }

    /// True when no position is padding (packed = padded).
    pub fn is_dense(&self) -> bool {
        self.tokens() == self.batch() * self.len
    }

    /// The packed rows of sequence b.
    pub fn seq(&self, b: usize) -> Range<usize> {
        self.offsets[b]..self.offsets[b + 1]
    }

    /// Σ over sequences of len², the (query, key) pairs of self-attention.
    pub fn attention_pairs(&self) -> usize {
        self.offsets.windows(2).map(|w| (w[1] - w[0]).pow(2)).sum()
    }

    /// x [N, E] packed from `padded` [B·S, E] (moved, not copied, when dense).
    pub fn gather(&self, padded: Vec<f32>, width: usize) -> Vec<f32> {
        if self.is_dense() {
            return padded;
        }
        let mut x = Vec::with_capacity(self.tokens() * width);
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
        let mut out = vec![0.0; self.batch() * self.len * width];
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
        assert_eq!((p.batch(), p.tokens(), p.is_dense()), (3, 5, false));
        assert_eq!([p.seq(0), p.seq(1), p.seq(2)], [0..2, 2..2, 2..5]);
        assert_eq!(p.attention_pairs(), 4 + 9);
        let padded: Vec<f32> = (0..18).map(|i| i as f32).collect();
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
    fn no_padding_is_dense_and_moves_buffers() {
        for mask in [None, Some(&[false; 6][..])] {
            let p = PackedBatch::new(2, 3, mask);
            assert!(p.is_dense());
            assert_eq!((p.tokens(), p.seq(1)), (6, 3..6));
            let x = vec![1.0; 12];
            let ptr = x.as_ptr();
            let y = p.scatter(p.gather(x, 2), 2);
            assert_eq!(y.as_ptr(), ptr);
        }
        let empty = PackedBatch::new(0, 5, Some(&[]));
        assert_eq!((empty.batch(), empty.tokens()), (0, 0));
        let all_pad = PackedBatch::new(2, 2, Some(&[true; 4]));
        assert_eq!(all_pad.tokens(), 0);
        assert_eq!(all_pad.scatter(Vec::new(), 3), vec![0.0; 12]);
    }
}
