//! Token embedding scaled by √E plus the sinusoidal positional encoding.

use crate::nn::weights::{Tensor, Weights};
use crate::Result;

/// x[t] = table[token_t] · √E + PE[position_t], table [V, E] (borrowed from
/// the checkpoint's memory map when possible), PE [max_len, E].
#[derive(Clone, Debug)]
pub struct Embedding {
    /// [V, E].
    table: Tensor,
    scale: f32,
}

impl Embedding {
    /// Reads `weight` [V, E] under `w`; `vocab_key` names V in the config.
    pub fn new(w: &Weights, vocab: usize, vocab_key: &str, d_model: usize) -> Result<Self> {
        let table = w
            .get("weight", &[(vocab, vocab_key), (d_model, "d_model")])?
            .clone();
        Ok(Embedding {
            table,
            scale: (d_model as f32).sqrt(),
        })
    }

    /// The [V, E] table (for saving).
    pub fn table(&self) -> &Tensor {
        &self.table
    }

    /// x [B·T, E] for `tokens` [B, T] at positions `first_position + t`.
    /// Tokens must lie in [0, V) and positions inside `positions`: callers
    /// validate both (the model reports them as argument errors).
    pub fn forward(
        &self,
        tokens: &[i64],
        seq_len: usize,
        first_position: usize,
        positions: &PositionalEncoding,
    ) -> Vec<f32> {
        let mut x = vec![0.0f32; tokens.len() * self.table.shape()[1]];
        self.forward_into(tokens, seq_len, first_position, positions, &mut x);
        x
    }

    /// [`Embedding::forward`] writing x [B·T, E] into `x`.
    pub fn forward_into(
        &self,
        tokens: &[i64],
        seq_len: usize,
        first_position: usize,
        positions: &PositionalEncoding,
        x: &mut [f32],
    ) {
        let e = self.table.shape()[1];
        assert_eq!(x.len(), tokens.len() * e, "Embedding: x must hold [B·T, E]");
        let table = self.table.data();
        for (i, (&tok, row)) in tokens.iter().zip(x.chunks_exact_mut(e)).enumerate() {
            let emb = &table[tok as usize * e..(tok as usize + 1) * e];
            let pe = positions.row(first_position + i % seq_len.max(1));
            for ((o, &v), &p) in row.iter_mut().zip(emb).zip(pe) {
                *o = v * self.scale + p;
            }
        }
    }
}

/// The sinusoidal table PE [max_len, E]: PE[p, 2i] = sin(p·10000^(-2i/E)),
/// PE[p, 2i+1] = cos(same), computed in f32 the way the PyTorch module builds
/// its buffer so that positions match it bit for bit where libm agrees.
#[derive(Clone, Debug)]
pub struct PositionalEncoding {
    /// [max_len, E].
    table: Vec<f32>,
    width: usize,
}

impl PositionalEncoding {
    /// PE [max_len, E].
    pub fn new(max_len: usize, d_model: usize) -> Self {
        let e = d_model;
        let log_base = (10000f64).ln() as f32;
        let inv_freq: Vec<f32> = (0..e)
            .step_by(2)
            .map(|i| ((-(i as f32) * log_base) / e as f32).exp())
            .collect();
        let mut table = vec![0.0f32; max_len * e];
        for (p, row) in table.chunks_exact_mut(e.max(1)).enumerate() {
            for (i, &f) in inv_freq.iter().enumerate() {
                let angle = (p as f32 * f) as f64;
                row[2 * i] = angle.sin() as f32;
                if 2 * i + 1 < e {
                    row[2 * i + 1] = angle.cos() as f32;
                }
            }
        }
        PositionalEncoding { table, width: e }
    }

    /// The checkpoint's `pos_embedding` [max_len, E] when `w` holds it (that
    /// is the table PyTorch adds), else the computed sinusoidal table.
    pub fn from_weights(w: &Weights, max_len: usize, d_model: usize) -> Result<Self> {
        match w.get_opt(
            "pos_embedding",
            &[(max_len, "max_len"), (d_model, "d_model")],
        )? {
            Some(t) => Ok(PositionalEncoding {
                table: t.data().to_vec(),
                width: d_model,
            }),
            None => Ok(Self::new(max_len, d_model)),
        }
    }

    /// PE[p] [E].
    pub fn row(&self, p: usize) -> &[f32] {
        &self.table[p * self.width..(p + 1) * self.width]
    }

    /// The whole table [max_len, E] (for saving as `pos_embedding`).
    pub fn table(&self) -> &[f32] {
        &self.table
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sinusoid_values() {
        let pe = PositionalEncoding::new(5, 6);
        assert_eq!(pe.table().len(), 5 * 6);
        assert_eq!(pe.row(0), &[0.0, 1.0, 0.0, 1.0, 0.0, 1.0]);
        let r = pe.row(3);
        for i in 0..3 {
            let angle = 3.0 / 10000f64.powf(2.0 * i as f64 / 6.0);
            assert!((r[2 * i] as f64 - angle.sin()).abs() < 1e-6);
            assert!((r[2 * i + 1] as f64 - angle.cos()).abs() < 1e-6);
        }
    }
}
