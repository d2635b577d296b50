//! Decoder layer and stack, exactly as `nn.TransformerDecoderLayer` /
//! `nn.TransformerDecoder` (+ final norm) with `batch_first=True`, plus the
//! one-token step used by incremental decoding.

use rayon::prelude::*;

use crate::decoding::kv_cache::KvCache;
use crate::kernels::attention::attention_head_scratch;
use crate::kernels::gemm::MatRef;
use crate::model::TransformerConfig;
use crate::nn::attention::{AttnShape, Layout, Masks, MultiHeadAttention};
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

    /// One decoding step of this layer (index `layer` in `cache`) for the
    /// newest position of each of the R live rows: `buf`'s residual stream
    /// x [R, E] is updated in place. Writes this position's self-attention
    /// key/value to `cache` (row r = live row r), which then attends over the
    /// row's whole cached prefix, and the cross-attention over the row's
    /// source memory. Allocates nothing once `buf` has seen R rows.
    pub fn step(
        &self,
        layer: usize,
        cache: &mut KvCache,
        memory: CrossMemory,
        buf: &mut StepBuffers,
    ) {
        let StepBuffers {
            x,
            normed,
            qkv,
            q,
            context,
            out,
            hidden,
            scores,
            sizes: _,
        } = buf;
        let (x, normed, out) = (&mut x[..], &mut normed[..], &mut out[..]);
        if self.norm_first {
            self.norm1.forward_into(x, normed);
            self.self_attention_step(layer, normed, cache, qkv, context, scores, out);
            add_into(x, out);
            self.norm2.forward_into(x, normed);
            self.cross_attention_step(normed, memory, q, context, scores, out);
            add_into(x, out);
            self.norm3.forward_into(x, normed);
            self.ff.forward_into(normed, hidden, out);
            add_into(x, out);
        } else {
            self.self_attention_step(layer, x, cache, qkv, context, scores, out);
            add_into(out, x);
            self.norm1.forward_into(out, x);
            self.cross_attention_step(x, memory, q, context, scores, out);
            add_into(out, x);
            self.norm2.forward_into(out, x);
            self.ff.forward_into(x, hidden, out);
            add_into(out, x);
            self.norm3.forward_into(out, x);
        }
    }

    /// out [R, E] = self-attention of h [R, E] (one position per row) after
    /// appending its key/value to `cache`; `qkv` [R, 3E], `context` [R, E]
    /// and `scores` (one per (row, head)) are scratch.
    #[allow(clippy::too_many_arguments)]
    fn self_attention_step(
        &self,
        layer: usize,
        h: &[f32],
        cache: &mut KvCache,
        qkv: &mut [f32],
        context: &mut [f32],
        scores: &mut [Vec<f32>],
        out: &mut [f32],
    ) {
        let mha = &self.self_attn;
        let e = mha.width();
        let rows = h.len() / e;
        mha.project_qkv_into(h, rows, qkv);
        for (r, row) in qkv.chunks_exact(3 * e).enumerate() {
            cache.write(layer, r, &row[e..2 * e], &row[2 * e..]);
        }
        let (qkv, cache) = (&*qkv, &*cache);
        let len = cache.len();
        attend_rows(mha, context, scores, out, |r, head, d| {
            let keys = head_view(cache.keys(layer, r), 0, len, e, head, d);
            let values = head_view(cache.values(layer, r), 0, len, e, head, d);
            let query = head_view(qkv, r * 3 * e, 1, 3 * e, head, d);
            (query, keys, values, None)
        });
    }

    /// out [R, E] = cross-attention of h [R, E] over each row's source
    /// memory; `q` [R, E], `context` [R, E] and `scores` are scratch.
    fn cross_attention_step(
        &self,
        h: &[f32],
        memory: CrossMemory,
        q: &mut [f32],
        context: &mut [f32],
        scores: &mut [Vec<f32>],
        out: &mut [f32],
    ) {
        let mha = &self.cross_attn;
        let e = mha.width();
        let rows = h.len() / e;
        mha.project_q_into(h, rows, q);
        let (q, s) = (&*q, memory.src_len);
        attend_rows(mha, context, scores, out, |r, head, d| {
            let src = memory.sources[r];
            let start = src * s * 2 * e;
            let keys = head_view(memory.kv, start, s, 2 * e, head, d);
            let values = head_view(memory.kv, start + e, s, 2 * e, head, d);
            let query = head_view(q, r * e, 1, e, head, d);
            let padding = memory
                .padding
                .map(|p| MatRef::new(&p[src * s..(src + 1) * s], 1, s, 0, 1));
            (query, keys, values, padding)
        });
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

    /// One step for the newest position of each of the R live rows: takes
    /// the embedded tokens from `buf.input_mut()` [R, E] and leaves the hidden
    /// states (after the final norm) in `buf.output()` [R, E]. Layer l uses
    /// layer l of `cache` and `memory_kv[l]`.
    pub fn step(
        &self,
        cache: &mut KvCache,
        memory_kv: &[Vec<f32>],
        memory: CrossMemory,
        buf: &mut StepBuffers,
    ) {
        for (l, (layer, kv)) in self.layers.iter().zip(memory_kv).enumerate() {
            layer.step(l, cache, CrossMemory { kv, ..memory }, buf);
        }
        self.norm.forward_into(&buf.x, &mut buf.normed);
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

/// Buffers the decoder steps of one decoding session write into: sized for
/// the live rows R and reused from step to step, so steps allocate nothing
/// once R has reached its peak (E width, F feed-forward width, H heads).
#[derive(Clone, Debug, Default)]
pub struct StepBuffers {
    /// The residual stream [R, E].
    x: Vec<f32>,
    /// LayerNorm output [R, E]; after the stack, the final hidden states.
    normed: Vec<f32>,
    /// Self-attention q; k; v [R, 3E].
    qkv: Vec<f32>,
    /// Cross-attention queries [R, E].
    q: Vec<f32>,
    /// Attention heads side by side [R, E], before the out-projection.
    context: Vec<f32>,
    /// A sub-layer's output [R, E].
    out: Vec<f32>,
    /// Feed-forward hidden layer [R, F].
    hidden: Vec<f32>,
    /// Attention scratch of each (row, head) task [R·H], each with room for
    /// the scores of `max_keys` keys.
    scores: Vec<Vec<f32>>,
    /// (E, F, H, max_keys).
    sizes: (usize, usize, usize, usize),
}

impl StepBuffers {
    /// Buffers for `decoder` with room for `rows` live rows attending over at
    /// most `max_keys` keys (cache positions or source length).
    pub fn new(decoder: &Decoder, rows: usize, max_keys: usize) -> Self {
        let (e, f, h) = decoder.layers.first().map_or((0, 0, 0), |layer| {
            let e = layer.self_attn.width();
            (
                e,
                layer.ff.linears().0.out_features(),
                e / layer.self_attn.head_dim(),
            )
        });
        let mut buf = StepBuffers {
            sizes: (e, f, h, max_keys),
            ..Default::default()
        };
        buf.resize(rows);
        buf
    }

    /// Sizes every buffer for `rows` live rows: a shrink keeps the memory,
    /// so only a new peak of live rows allocates.
    pub fn resize(&mut self, rows: usize) {
        let (e, f, h, max_keys) = self.sizes;
        for (v, width) in [
            (&mut self.x, e),
            (&mut self.normed, e),
            (&mut self.qkv, 3 * e),
            (&mut self.q, e),
            (&mut self.context, e),
            (&mut self.out, e),
            (&mut self.hidden, f),
        ] {
            v.resize(rows * width, 0.0);
        }
        while self.scores.len() < rows * h {
            // The Tq = 1 attention kernel needs 2·Tk floats.
            self.scores.push(Vec::with_capacity(2 * max_keys));
        }
    }

    /// The decoder's input [R, E], to embed the step's tokens into.
    pub fn input_mut(&mut self) -> &mut [f32] {
        &mut self.x
    }

    /// The hidden states [R, E] after [`Decoder::step`].
    pub fn output(&self) -> &[f32] {
        &self.normed
    }
}

/// x += y, elementwise.
fn add_into(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

/// Head `head` [rows, D] of the `rows` rows starting at `start` in `buf`
/// (row stride `row_stride`, heads side by side at unit stride).
fn head_view(
    buf: &[f32],
    start: usize,
    rows: usize,
    row_stride: usize,
    head: usize,
    d: usize,
) -> MatRef<'_> {
    if rows == 0 {
        return MatRef::new(&[], 0, d, row_stride, 1);
    }
    MatRef::new(&buf[start + head * d..], rows, d, row_stride, 1)
}

/// out [R, E] = out_proj(context) where `context` [R, E] holds, per row r
/// and head h, softmax(scale · q kᵀ + mask) v for `(q [1, D], k [Tk, D],
/// v [Tk, D], mask [1, Tk])` = `item(r, h, D)`: the same kernel and order of
/// operations as [`MultiHeadAttention::attend`], with the (row, head) pairs in
/// parallel, each with its own `scores` scratch (at least R·H of them).
fn attend_rows<'a>(
    mha: &MultiHeadAttention,
    context: &mut [f32],
    scores: &mut [Vec<f32>],
    out: &mut [f32],
    item: impl Fn(usize, usize, usize) -> (MatRef<'a>, MatRef<'a>, MatRef<'a>, Option<MatRef<'a>>)
        + Sync,
) {
    let (e, d) = (mha.width(), mha.head_dim());
    let heads = e / d;
    let rows = context.len() / e;
    let scale = 1.0 / (d as f32).sqrt();
    context
        .par_chunks_mut(d)
        .zip(scores[..rows * heads].par_iter_mut())
        .enumerate()
        .for_each(|(i, (head_out, scratch))| {
            let (q, k, v, mask) = item(i / heads, i % heads, d);
            attention_head_scratch(q, k, v, mask, false, scale, head_out, d, scratch);
        });
    mha.out_proj()
        .forward_into(MatRef::row_major(context, rows, e), out);
}
