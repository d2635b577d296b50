//! Encoder layer and stack, exactly as `nn.TransformerEncoderLayer` /
//! `nn.TransformerEncoder` (+ final norm) with `batch_first=True`.

use crate::model::TransformerConfig;
use crate::nn::attention::{AttnShape, Layout, Masks, MultiHeadAttention};
use crate::nn::feed_forward::FeedForward;
use crate::nn::layer_norm::LayerNorm;
use crate::nn::weights::Weights;
use crate::Result;

/// Self-attention + feed-forward, each wrapped in a residual and a LayerNorm
/// (post-LN: x = norm(x + f(x)); pre-LN: x = x + f(norm(x))).
#[derive(Clone, Debug)]
pub struct EncoderLayer {
    self_attn: MultiHeadAttention,
    ff: FeedForward,
    norm1: LayerNorm,
    norm2: LayerNorm,
    norm_first: bool,
}

impl EncoderLayer {
    /// Reads `self_attn.*`, `linear1.*`, `linear2.*`, `norm1.*`, `norm2.*` under `w`.
    pub fn new(cfg: &TransformerConfig, w: &Weights) -> Result<Self> {
        let e = cfg.d_model;
        Ok(EncoderLayer {
            self_attn: MultiHeadAttention::new(
                &w.pp("self_attn"),
                e,
                cfg.n_heads,
                Layout::SelfAttention,
            )?,
            ff: FeedForward::new(w, e, cfg.d_ff, cfg.activation)?,
            norm1: LayerNorm::new(&w.pp("norm1"), e, cfg.layer_norm_eps)?,
            norm2: LayerNorm::new(&w.pp("norm2"), e, cfg.layer_norm_eps)?,
            norm_first: cfg.norm_first,
        })
    }

    /// From blocks already built, for checkpoints not laid out like
    /// `nn.TransformerEncoderLayer` (BERT adapts its weights at load time);
    /// every block must have the same width E.
    pub fn from_parts(
        self_attn: MultiHeadAttention,
        ff: FeedForward,
        norm1: LayerNorm,
        norm2: LayerNorm,
        norm_first: bool,
    ) -> Self {
        EncoderLayer {
            self_attn,
            ff,
            norm1,
            norm2,
            norm_first,
        }
    }

    /// x [B·S, E] → [B·S, E]; `key_padding_mask` [B, S], true = padding.
    pub fn forward(
        &self,
        x: Vec<f32>,
        batch: usize,
        src_len: usize,
        key_padding_mask: Option<&[bool]>,
    ) -> Result<Vec<f32>> {
        let shape = AttnShape {
            batch,
            query_len: src_len,
            key_len: src_len,
        };
        let masks = Masks {
            key_padding_mask,
            ..Default::default()
        };
        let sa = |h: &[f32]| self.self_attn.forward(h, h, h, shape, &masks);
        Ok(if self.norm_first {
            let a = sa(&self.norm1.forward(&x))?;
            let x = add(x, &a);
            let f = self.ff.forward(&self.norm2.forward(&x));
            add(x, &f)
        } else {
            let x = self.norm1.forward(&add(sa(&x)?, &x));
            self.norm2.forward(&add(self.ff.forward(&x), &x))
        })
    }

    /// (self_attn, ff, norm1, norm2), for saving.
    pub fn parts(&self) -> (&MultiHeadAttention, &FeedForward, &LayerNorm, &LayerNorm) {
        (&self.self_attn, &self.ff, &self.norm1, &self.norm2)
    }
}

/// The encoder stack: N layers, then the final LayerNorm `norm` (which
/// nn.Transformer applies in both post-LN and pre-LN mode).
#[derive(Clone, Debug)]
pub struct Encoder {
    layers: Vec<EncoderLayer>,
    norm: LayerNorm,
}

impl Encoder {
    /// Reads `layers.{i}.*` and `norm.*` under `w` (`transformer.encoder`).
    pub fn new(cfg: &TransformerConfig, w: &Weights) -> Result<Self> {
        let layers = (0..cfg.n_encoder_layers)
            .map(|i| EncoderLayer::new(cfg, &w.pp("layers").pp(i)))
            .collect::<Result<_>>()?;
        Ok(Encoder {
            layers,
            norm: LayerNorm::new(&w.pp("norm"), cfg.d_model, cfg.layer_norm_eps)?,
        })
    }

    /// memory [B·S, E] for embedded x [B·S, E]; `key_padding_mask` [B, S].
    pub fn forward(
        &self,
        mut x: Vec<f32>,
        batch: usize,
        src_len: usize,
        key_padding_mask: Option<&[bool]>,
    ) -> Result<Vec<f32>> {
        for layer in &self.layers {
            x = layer.forward(x, batch, src_len, key_padding_mask)?;
        }
        Ok(self.norm.forward(&x))
    }

    /// The layers.
    pub fn layers(&self) -> &[EncoderLayer] {
        &self.layers
    }

    /// The final norm.
    pub fn norm(&self) -> &LayerNorm {
        &self.norm
    }
}

/// x + y element-wise, reusing x's buffer.
pub(crate) fn add(mut x: Vec<f32>, y: &[f32]) -> Vec<f32> {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
    x
}
