//! Sentence-transformers' `Pooling` (and `Normalize`) module on packed rows:
//! one vector per sequence from the states of its own tokens, so no
//! padding is ever read or masked.
//!
//! Shape key: B sequences, N tokens of all sequences, E hidden size,
//! P pooling modes.

use crate::nn::packed::Sequences;
use crate::{Error, Result};

/// One mode of a sentence-transformers Pooling config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolingMode {
    /// The first token's state (`pooling_mode_cls_token`).
    Cls,
    /// Per feature, the largest over the tokens (`pooling_mode_max_tokens`).
    Max,
    /// The mean over the tokens (`pooling_mode_mean_tokens`).
    Mean,
    /// The sum over the tokens / √len (`pooling_mode_mean_sqrt_len_tokens`).
    MeanSqrtLen,
}

impl PoolingMode {
    /// The mode named `"cls"`, `"max"`, `"mean"` or `"mean_sqrt_len"`.
    pub fn from_name(name: &str) -> Result<Self> {
        Ok(match name {
            "cls" => PoolingMode::Cls,
            "max" => PoolingMode::Max,
            "mean" => PoolingMode::Mean,
            "mean_sqrt_len" => PoolingMode::MeanSqrtLen,
            other => {
                return Err(Error::value(format!(
                    "pooling: unknown mode {other:?} (expected \"cls\", \"max\", \"mean\" \
                     or \"mean_sqrt_len\")"
                )))
            }
        })
    }
}

/// How token states [N, E] become sentence embeddings [B, P·E]: the
/// modes' vectors side by side in the given order (sentence-transformers'
/// order is cls, max, mean, mean_sqrt_len), then, if `normalize`, each
/// embedding divided by max(‖·‖₂, 1e-12) as `Normalize` does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pooling {
    modes: Vec<PoolingMode>,
    normalize: bool,
}

impl Pooling {
    /// At least one mode (errors name `pooling`).
    pub fn new(modes: Vec<PoolingMode>, normalize: bool) -> Result<Self> {
        if modes.is_empty() {
            return Err(Error::value("pooling: expected at least one mode"));
        }
        Ok(Pooling { modes, normalize })
    }

    /// P·E, the width of one embedding for hidden size E.
    pub fn width(&self, hidden_size: usize) -> usize {
        self.modes.len() * hidden_size
    }

    /// Embeddings [B, P·E] of the sequences packed in `seqs`, from their
    /// token states x [N, E]. A sequence of no tokens pools as
    /// sentence-transformers pools a row that is all padding: mean and
    /// mean_sqrt_len give 0, max gives -1e9 (its fill value for padding);
    /// cls, which would read a padded position's state there, gives 0.
    pub fn pool(&self, x: &[f32], hidden_size: usize, seqs: &Sequences) -> Vec<f32> {
        let e = hidden_size;
        assert_eq!(x.len(), seqs.tokens() * e, "pool: x must be [N, E]");
        let width = self.width(e);
        let mut out = vec![0.0f32; seqs.batch() * width];
        for (b, emb) in out.chunks_exact_mut(width.max(1)).enumerate() {
            let rows = seqs.seq(b);
            let states = &x[rows.start * e..rows.end * e];
            for (mode, dst) in self.modes.iter().zip(emb.chunks_exact_mut(e.max(1))) {
                pool_one(*mode, states, dst);
            }
            if self.normalize {
                normalize(emb);
            }
        }
        out
    }
}

/// Sentence-transformers' value for padding before it takes the max.
const MAX_POOL_PADDING: f32 = -1e9;

/// dst [E] ← `mode` over states [L, E] (L = 0: see [`Pooling::pool`]).
fn pool_one(mode: PoolingMode, states: &[f32], dst: &mut [f32]) {
    let e = dst.len();
    let len = states.len() / e.max(1);
    if len == 0 {
        dst.fill(if mode == PoolingMode::Max {
            MAX_POOL_PADDING
        } else {
            0.0
        });
        return;
    }
    dst.copy_from_slice(&states[..e]);
    let rest = states[e..].chunks_exact(e.max(1));
    match mode {
        PoolingMode::Cls => {}
        PoolingMode::Max => {
            for row in rest {
                for (d, &v) in dst.iter_mut().zip(row) {
                    *d = d.max(v);
                }
            }
        }
        PoolingMode::Mean | PoolingMode::MeanSqrtLen => {
            for row in rest {
                for (d, &v) in dst.iter_mut().zip(row) {
                    *d += v;
                }
            }
            // Sentence-transformers divides by the token count (or its
            // square root), clamped at 1e-9: here ≥ 1.
            let count = len as f32;
            let divisor = match mode {
                PoolingMode::Mean => count,
                _ => count.sqrt(),
            };
            for d in dst.iter_mut() {
                *d /= divisor;
            }
        }
    }
}

/// v ← v / max(‖v‖₂, 1e-12), as `torch.nn.functional.normalize`.
fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|&x| x * x).sum::<f32>().sqrt();
    let divisor = norm.max(1e-12);
    for x in v.iter_mut() {
        *x /= divisor;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mode_pools_its_own_rows_in_order() {
        // Two sequences, lengths 1 and 3, E = 2.
        let x = [1.0, -2.0, 3.0, 4.0, -1.0, 8.0, 7.0, 0.0];
        let seqs = Sequences::from_lengths([1, 3]);
        let modes = [
            (PoolingMode::Cls, [1.0, -2.0, 3.0, 4.0]),
            (PoolingMode::Max, [1.0, -2.0, 7.0, 8.0]),
            (PoolingMode::Mean, [1.0, -2.0, 3.0, 4.0]),
            (
                PoolingMode::MeanSqrtLen,
                [1.0, -2.0, 9.0 / 3f32.sqrt(), 12.0 / 3f32.sqrt()],
            ),
        ];
        for (mode, want) in modes {
            let got = Pooling::new(vec![mode], false).unwrap().pool(&x, 2, &seqs);
            assert_eq!(got, want, "{mode:?}");
        }
        let both = Pooling::new(vec![PoolingMode::Max, PoolingMode::Cls], false).unwrap();
        assert_eq!(both.width(2), 4);
        assert_eq!(
            both.pool(&x, 2, &seqs),
            [1.0, -2.0, 1.0, -2.0, 7.0, 8.0, 3.0, 4.0]
        );
    }

    #[test]
    fn a_sequence_of_no_tokens_pools_like_an_all_padding_row() {
        let x = [1.0, 2.0];
        let seqs = Sequences::from_lengths([0, 1, 0]);
        let all = vec![
            PoolingMode::Cls,
            PoolingMode::Max,
            PoolingMode::Mean,
            PoolingMode::MeanSqrtLen,
        ];
        let got = Pooling::new(all, false).unwrap().pool(&x, 2, &seqs);
        let empty = [0.0, 0.0, -1e9, -1e9, 0.0, 0.0, 0.0, 0.0];
        assert_eq!(got[..8], empty);
        assert_eq!(got[8..16], [1.0, 2.0, 1.0, 2.0, 1.0, 2.0, 1.0, 2.0]);
        assert_eq!(got[16..], empty);
    }

    #[test]
    fn normalize_gives_unit_length_and_keeps_zero_vectors_zero() {
        let x = [3.0, 4.0, 0.0, 0.0];
        let seqs = Sequences::from_lengths([1, 1]);
        let p = Pooling::new(vec![PoolingMode::Cls], true).unwrap();
        assert_eq!(p.pool(&x, 2, &seqs), [0.6, 0.8, 0.0, 0.0]);
        assert!(Pooling::new(Vec::new(), true).is_err());
        assert_eq!(
            PoolingMode::from_name("mean_sqrt_len").unwrap(),
            PoolingMode::MeanSqrtLen
        );
        let err = PoolingMode::from_name("weightedmean").unwrap_err();
        assert!(
            matches!(err, Error::Value(m) if m.contains("pooling") && m.contains("weightedmean"))
        );
    }
}
