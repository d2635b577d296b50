//! BERT's input embedding: word + absolute position + token type, then LayerNorm.

use crate::bert::config::BertConfig;
use crate::bert::weights::{POSITION_EMBEDDINGS, TOKEN_TYPE_EMBEDDINGS, WORD_EMBEDDINGS};
use crate::nn::{LayerNorm, Tensor, Weights};
use crate::Result;

/// x[i] = LayerNorm(word[id[i]] + position[pos[i]] + token_type[type[i]])
/// for token i at position pos[i] of its sequence, with the tables borrowed
/// from the checkpoint's memory map when possible: word [V, E], position
/// [P, E], token type [TV, E].
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

    /// x [N, E] for N tokens: `input_ids` [N], `token_type_ids` [N] (all
    /// type 0 when `None`) and `positions` [N], each token's index in its
    /// sequence. Ids and positions must lie inside their tables: the model
    /// checks them first.
    pub fn forward(
        &self,
        input_ids: &[i64],
        token_type_ids: Option<&[i64]>,
        positions: &[usize],
    ) -> Vec<f32> {
        let e = self.word.shape()[1];
        let (word, position, token_type) = (
            self.word.data(),
            self.position.data(),
            self.token_type.data(),
        );
        let mut sum = vec![0.0f32; input_ids.len() * e];
        let rows = sum.chunks_exact_mut(e).zip(input_ids).zip(positions);
        for (i, ((out, &id), &pos)) in rows.enumerate() {
            let kind = token_type_ids.map_or(0, |t| t[i] as usize);
            let (w, p, k) = (
                &word[id as usize * e..][..e],
                &position[pos * e..][..e],
                &token_type[kind * e..][..e],
            );
            for (((o, &w), &p), &k) in out.iter_mut().zip(w).zip(p).zip(k) {
                *o = w + p + k;
            }
        }
        self.norm.forward(&sum)
    }
}
