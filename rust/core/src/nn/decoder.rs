//! Decoder layer and stack, exactly as `nn.TransformerDecoderLayer` /
//! `nn.TransformerDecoder` (+ final norm) with `batch_first=True`, plus the
//! one-token step used by incremental decoding.

use crate::decoding::kv_cache::KvCache;
use crate::kernels::gemm::MatRef;
use crate::model::TransformerConfig;
use crate::nn::attention::{AttnShape, Heads, Layout, Masks, MultiHeadAttention};
use crate::nn::encoder::add;
use crate::nn::feed_forward::FeedForward;
use crate::nn::layer_norm::LayerNorm;
use crate::nn::weights::Weights;
use crate::Result;

/// Encoder memory as the cross-attention of one layer sees it during
/// incremental decoding: k; v [B_src·S, 2E], computed once per source, and
/// an additive key-padding row [B_src, S] (0 or -inf) per source.
#[derive(Clone, Copy, Debug)]
pub struct CrossMemory<'a> {
    pub kv: &'a [f32],
    pub padding: Option<&'a [f32]>,
    /// S.
    pub src_len: usize,
    /// Source index of each live row.
    pub sources: &'a [usize],
}

/// Masked self-attention, cross-attention over the encoder memory and
/// feed-forward, each with a residual and a LayerNorm (post-LN or pre-LN).
#[derive(Clone, Debug)]
pub struct DecoderLayer {
    self_attn: MultiHeadAttention,
    cross_attn: MultiHeadAttention,
    ff: FeedForward,
    norm1: LayerNorm,
    norm2: LayerNorm,
    norm3: LayerNorm,
    norm_first: bool,
}

impl DecoderLayer {
    /// Reads `self_attn.*`, `multihead_attn.*`, `linear1.*`, `linear2.*`,
    /// `norm1.*`..`norm3.*` under `w`.
    pub fn new(cfg: &TransformerConfig, w: &Weights) -> Result<Self> {
        let (e, h, eps) = (cfg.d_model, cfg.n_heads, cfg.layer_norm_eps);
        Ok(DecoderLayer {
            self_attn: MultiHeadAttention::new(&w.pp("self_attn"), e, h, Layout::SelfAttention)?,
            cross_attn: MultiHeadAttention::new(
                &w.pp("multihead_attn"),
                e,
                h,
                Layout::CrossAttention,
            )?,
            ff: FeedForward::new(w, e, cfg.d_ff, cfg.activation)?,
            norm1: LayerNorm::new(&w.pp("norm1"), e, eps)?,
            norm2: LayerNorm::new(&w.pp("norm2"), e, eps)?,
            norm3: LayerNorm::new(&w.pp("norm3"), e, eps)?,
            norm_first: cfg.norm_first,
        })
    }

    /// y [B·T, E] for x [B·T, E] (causal self-attention) and memory
    /// [B·S, E]; `memory_key_padding_mask` [B, S], true = padding.
    pub fn forward(
        &self,
        x: Vec<f32>,
        shape: AttnShape,
        memory: &[f32],
        memory_key_padding_mask: Option<&[bool]>,
    ) -> Result<Vec<f32>> {
        let self_shape = AttnShape {
            key_len: shape.query_len,
            ..shape
        };
        let causal = Masks {
            causal: true,
            ..Default::default()
        };
        let cross = Masks {
            key_padding_mask: memory_key_padding_mask,
            ..Default::default()
        };
        let sa = |h: &[f32]| self.self_attn.forward(h, h, h, self_shape, &causal);
        let ca = |h: &[f32]| self.cross_attn.forward(h, memory, memory, shape, &cross);
        self.residual_blocks(x, sa, ca)
    }

    /// One decoding step: y [R, E] for x [R, E], the newest position of each
    /// live row. Appends this position's self-attention key/value to `cache`
    /// (row r = live row r) and attends over the whole cached prefix and over
    /// the row's source memory.
    pub fn step(&self, x: Vec<f32>, cache: &mut KvCache, memory: CrossMemory) -> Result<Vec<f32>> {
        let e = self.self_attn.width();
        let rows = x.len() / e;
        let sa = |h: &[f32]| {
            let qkv = self.self_attn.project_qkv(h, rows);
            for (r, row) in qkv.chunks_exact(3 * e).enumerate() {
                cache.push(r, &row[e..2 * e], &row[2 * e..]);
            }
            let cache: &KvCache = cache;
            Ok(self.self_attn.attend(
                rows,
                1,
                false,
                |r| {
                    let len = cache.len(r);
                    let q = Heads::item(&qkv, 3 * e, 0, r, 1);
                    let k = Heads {
                        data: cache.keys(r),
                        row_stride: e,
                        len,
                    };
                    let v = Heads {
                        data: cache.values(r),
                        row_stride: e,
                        len,
                    };
                    (q, k, v)
                },
                |_, _| None,
            ))
        };
        let ca = |h: &[f32]| {
            let q = self.cross_attn.project_q(h, rows);
            let s = memory.src_len;
            Ok(self.cross_attn.attend(
                rows,
                1,
                false,
                |r| {
                    let src = memory.sources[r];
                    let q = Heads::item(&q, e, 0, r, 1);
                    (
                        q,
                        Heads::item(memory.kv, 2 * e, 0, src, s),
                        Heads::item(memory.kv, 2 * e, e, src, s),
                    )
                },
                |r, _| {
                    memory.padding.map(|p| {
                        MatRef::new(
                            &p[memory.sources[r] * s..(memory.sources[r] + 1) * s],
                            1,
                            s,
                            0,
                            1,
                        )
                    })
                },
            ))
        };
        self.residual_blocks(x, sa, ca)
    }

    /// Runs self-attention `sa`, cross-attention `ca` and the feed-forward
    /// with residuals and norms in this layer's (post- or pre-LN) order.
    fn residual_blocks(
        &self,
        x: Vec<f32>,
        mut sa: impl FnMut(&[f32]) -> Result<Vec<f32>>,
        ca: impl Fn(&[f32]) -> Result<Vec<f32>>,
    ) -> Result<Vec<f32>> {
        Ok(if self.norm_first {
            let a = sa(&self.norm1.forward(&x))?;
            let x = add(x, &a);
            let c = ca(&self.norm2.forward(&x))?;
            let x = add(x, &c);
            let f = self.ff.forward(&self.norm3.forward(&x));
            add(x, &f)
        } else {
            let x = self.norm1.forward(&add(sa(&x)?, &x));
            let x = self.norm2.forward(&add(ca(&x)?, &x));
            self.norm3.forward(&add(self.ff.forward(&x), &x))
        })
    }

    /// k; v [rows, 2E] of the encoder memory [rows, E] for this layer's
    /// cross-attention (computed once per source when decoding).
    pub fn memory_kv(&self, memory: &[f32], rows: usize) -> Vec<f32> {
        self.cross_attn.project_kv(memory, rows)
    }

    /// (self_attn, cross_attn, ff, [norm1, norm2, norm3]), for saving.
    pub fn parts(
        &self,
    ) -> (
        &MultiHeadAttention,
        &MultiHeadAttention,
        &FeedForward,
        [&LayerNorm; 3],
    ) {
        (
            &self.self_attn,
            &self.cross_attn,
            &self.ff,
            [&self.norm1, &self.norm2, &self.norm3],
        )
    }
}

/// The decoder stack: N layers, then the final LayerNorm `norm`.
#[derive(Clone, Debug)]
pub struct Decoder {
    layers: Vec<DecoderLayer>,
    norm: LayerNorm,
}

impl Decoder {
    /// Reads `layers.{i}.*` and `norm.*` under `w` (`transformer.decoder`).
    pub fn new(cfg: &TransformerConfig, w: &Weights) -> Result<Self> {
        let layers = (0..cfg.n_decoder_layers)
            .map(|i| DecoderLayer::new(cfg, &w.pp("layers").pp(i)))
            .collect::<Result<_>>()?;
        Ok(Decoder {
            layers,
            norm: LayerNorm::new(&w.pp("norm"), cfg.d_model, cfg.layer_norm_eps)?,
        })
    }

    /// Hidden states [B·T, E] (after the final norm) for embedded targets
    /// x [B·T, E] and memory [B·S, E].
    pub fn forward(
        &self,
        mut x: Vec<f32>,
        shape: AttnShape,
        memory: &[f32],
        memory_key_padding_mask: Option<&[bool]>,
    ) -> Result<Vec<f32>> {
        for layer in &self.layers {
            x = layer.forward(x, shape, memory, memory_key_padding_mask)?;
        }
        Ok(self.norm.forward(&x))
    }

    /// One step: hidden states [R, E] (after the final norm) of the newest
    /// position for x [R, E]; `caches[l]` and `memory_kv[l]` belong to layer l.
    pub fn step(
        &self,
        mut x: Vec<f32>,
        caches: &mut [KvCache],
        memory_kv: &[Vec<f32>],
        memory: CrossMemory,
    ) -> Result<Vec<f32>> {
        for ((layer, cache), kv) in self.layers.iter().zip(caches).zip(memory_kv) {
            x = layer.step(x, cache, CrossMemory { kv, ..memory })?;
        }
        Ok(self.norm.forward(&x))
    }

    /// The layers.
    pub fn layers(&self) -> &[DecoderLayer] {
        &self.layers
    }

    /// The final norm.
    pub fn norm(&self) -> &LayerNorm {
        &self.norm
    }
}
