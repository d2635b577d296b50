//! BERT's input embedding: word + absolute position + token type, then LayerNorm.

use crate::bert::config::BertConfig;
use crate::bert::weights::{POSITION_EMBEDDINGS, TOKEN_TYPE_EMBEDDINGS, WORD_EMBEDDINGS};
use crate::nn::{LayerNorm, Tensor, Weights};
use crate::Result;

/// x[b, t] = LayerNorm(word[id[b, t]] + position[t] + token_type[type[b, t]]),
/// with the tables borrowed from the checkpoint's memory map when possible:
/// word [V, E], position [P, E], token type [TV, E].
#[derive(Clone, Debug)]
pub struct BertEmbeddings {
    word: Tensor,
    position: Tensor,
    token_type: Tensor,
    norm: LayerNorm,
}

impl BertEmbeddings {
    /// Reads the three tables and `embeddings.norm.*` from adapted weights
    /// (see [`super::weights::adapt`]).
    pub fn new(w: &Weights, cfg: &BertConfig) -> Result<Self> {
        let e = (cfg.hidden_size, "hidden_size");
        Ok(BertEmbeddings {
            word: w
                .get(WORD_EMBEDDINGS, &[(cfg.vocab_size, "vocab_size"), e])?
                .clone(),
            position: w
                .get(
                    POSITION_EMBEDDINGS,
                    &[(cfg.max_position_embeddings, "max_position_embeddings"), e],
                )?
                .clone(),
            token_type: w
                .get(
                    TOKEN_TYPE_EMBEDDINGS,
                    &[(cfg.type_vocab_size, "type_vocab_size"), e],
                )?
                .clone(),
            norm: LayerNorm::new(
                &w.pp("embeddings.norm"),
                cfg.hidden_size,
                cfg.layer_norm_eps,
            )?,
        })
    }

    /// x [B·T, E] for `input_ids` [B, T] and `token_type_ids` [B, T] (all
    /// type 0 when `None`); position t is the t-th of its row. Ids must lie
    /// inside their tables and T ≤ P: the model checks both first.
    pub fn forward(
        &self,
        input_ids: &[i64],
        token_type_ids: Option<&[i64]>,
        seq_len: usize,
    ) -> Vec<f32> {
        let e = self.word.shape()[1];
        let (word, position, token_type) = (
            self.word.data(),
            self.position.data(),
            self.token_type.data(),
        );
        let mut x = vec![0.0f32; input_ids.len() * e];
        for (i, (&id, out)) in input_ids.iter().zip(x.chunks_exact_mut(e)).enumerate() {
            let kind = token_type_ids.map_or(0, |t| t[i] as usize);
            let (w, p, k) = (
                &word[id as usize * e..][..e],
                &position[(i % seq_len) * e..][..e],
                &token_type[kind * e..][..e],
            );
            for (((o, &w), &p), &k) in out.iter_mut().zip(w).zip(p).zip(k) {
                *o = w + p + k;
            }
        }
        self.norm.forward(&x)
    }
}
