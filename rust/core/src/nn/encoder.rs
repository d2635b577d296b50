//! Encoder layer and stack, exactly as `nn.TransformerEncoderLayer` /
//! `nn.TransformerEncoder` (+ final norm) with `batch_first=True`.
//!
//! The stack runs on ragged batches packed without padding ([`PackedBatch`]):
//! its padded entry point packs once, runs every layer on the N valid rows
//! with scratch buffers shared by all layers, and scatters back (zeros at
//! padded positions, as PyTorch's fast path). Residual adds ride on the GEMMs
//! (beta = 1 into the residual stream).
//!
//! Threads: sequences never interact, so with several sequences the stack
//! splits them into one run per thread and each thread takes its run
//! through all layers, with no synchronisation between layers (a GEMM
//! split across threads joins after every product). Within a run, the
//! GEMMs still split when another thread runs out of work.

use rayon::prelude::*;

use crate::model::TransformerConfig;
use crate::nn::attention::{AttnScratch, Layout, MultiHeadAttention};
use crate::nn::feed_forward::FeedForward;
use crate::nn::layer_norm::LayerNorm;
use crate::nn::packed::{PackedBatch, Sequences};
use crate::nn::weights::Weights;
use crate::{Error, Result};

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

    /// x [N, E] ← layer(x) for the sequences packed in `seqs` (N =
    /// `seqs.tokens()`); `scratch` is reused across layers and calls.
    pub fn forward_packed(&self, x: &mut [f32], seqs: &Sequences, scratch: &mut EncoderScratch) {
        let EncoderScratch {
            normed,
            hidden,
            attn,
        } = scratch;
        normed.resize(x.len(), 0.0);
        if self.norm_first {
            // x += sa(norm1(x)); x += ff(norm2(x)).
            self.norm1.forward_into(x, normed);
            self.self_attn
                .add_packed_self_attention(normed, seqs, attn, x);
            self.norm2.forward_into(x, normed);
            self.ff.add_forward(normed, hidden, x);
        } else {
            // x = norm1(x + sa(x)); x = norm2(x + ff(x)).
            normed.copy_from_slice(x);
            self.self_attn
                .add_packed_self_attention(x, seqs, attn, normed);
            self.norm1.forward_into(normed, x);
            normed.copy_from_slice(x);
            self.ff.add_forward(x, hidden, normed);
            self.norm2.forward_into(normed, x);
        }
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

    /// memory [B·S, E] for embedded x [B·S, E]; `key_padding_mask` [B, S],
    /// true = padding. Padded positions of memory are zeros (PyTorch's fast
    /// path writes the same); no work is done for them.
    pub fn forward(
        &self,
        x: Vec<f32>,
        batch: usize,
        src_len: usize,
        key_padding_mask: Option<&[bool]>,
    ) -> Result<Vec<f32>> {
        let e = self.norm.params().0.len();
        let seqs = check_and_pack(x.len(), e, batch, src_len, key_padding_mask)?;
        let mut packed = seqs.gather(x, e);
        self.forward_packed(&mut packed, seqs.seqs());
        Ok(seqs.scatter(packed, e))
    }

    /// x [N, E] ← memory for the embedded sequences x [N, E] packed in
    /// `seqs`; runs of sequences in parallel (see the module doc).
    pub fn forward_packed(&self, x: &mut [f32], seqs: &Sequences) {
        forward_packed_layers(&self.layers, Some(&self.norm), x, seqs);
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

/// x [N, E] ← `final_norm`(the `layers` in turn (x)) for the sequences
/// packed in `seqs` (N = `seqs.tokens()`): the stack of [`Encoder`], and
/// of encoders without a final norm (BERT). With several threads and
/// enough work, runs of sequences go to different threads (module doc).
pub(crate) fn forward_packed_layers(
    layers: &[EncoderLayer],
    final_norm: Option<&LayerNorm>,
    x: &mut [f32],
    seqs: &Sequences,
) {
    if seqs.tokens() == 0 {
        return;
    }
    let e = x.len() / seqs.tokens();
    let flops_per_token = flops_per_token(layers, e);
    let threads = rayon::current_num_threads();
    let run = |x: &mut [f32], seqs: &Sequences| forward_run(layers, final_norm, x, seqs);
    if threads == 1 || seqs.batch() < 2 || flops_per_token * seqs.tokens() < MIN_SPLIT_FLOPS {
        return run(x, seqs);
    }
    // A token's layer work, in units of one attention (query, key) pair.
    let per_token = flops_per_token / (4 * e * layers.len().max(1));
    let mut runs = Vec::with_capacity(threads);
    let mut rest = x;
    let mut at = 0;
    for (rows, seqs) in seqs.split(threads, per_token) {
        let (_, tail) = rest.split_at_mut(rows.start - at);
        let (mine, tail) = tail.split_at_mut(rows.len() * e);
        runs.push((mine, seqs));
        (rest, at) = (tail, rows.end);
    }
    runs.into_par_iter().for_each(|(x, seqs)| run(x, &seqs));
}

/// x [N, E] ← `final_norm`(the `layers` in turn (x)) for the sequences
/// `seqs`, on the calling thread (its GEMMs may still split).
fn forward_run(
    layers: &[EncoderLayer],
    final_norm: Option<&LayerNorm>,
    x: &mut [f32],
    seqs: &Sequences,
) {
    let mut scratch = EncoderScratch::default();
    for layer in layers {
        layer.forward_packed(x, seqs, &mut scratch);
    }
    if let Some(norm) = final_norm {
        let normed = &mut scratch.normed;
        normed.resize(x.len(), 0.0);
        normed.copy_from_slice(x);
        norm.forward_into(normed, x);
    }
}

/// Multiply-adds ×2 of the layers' linear maps per token of width E: QKV,
/// out, and the two feed-forward projections.
fn flops_per_token(layers: &[EncoderLayer], e: usize) -> usize {
    let f = layers
        .first()
        .map_or(0, |l| l.ff.linears().0.out_features());
    2 * layers.len() * (4 * e * e + 2 * e * f)
}

/// Below this many flops an encoder pass stays in one run: splitting it
/// across threads costs more than the run (~0.2 ms of work).
const MIN_SPLIT_FLOPS: usize = 1 << 24;

/// Buffers of [`EncoderLayer::forward_packed`], grown as needed: one set
/// serves every layer of a forward pass.
#[derive(Clone, Debug, Default)]
pub struct EncoderScratch {
    /// A normalised copy of the residual stream [N, E].
    normed: Vec<f32>,
    /// The feed-forward's hidden activations [N, F].
    hidden: Vec<f32>,
    attn: AttnScratch,
}

/// The packing of a padded batch x [B·S, E] after checking its sizes.
fn check_and_pack(
    x_len: usize,
    e: usize,
    batch: usize,
    src_len: usize,
    key_padding_mask: Option<&[bool]>,
) -> Result<PackedBatch> {
    let rows = batch.checked_mul(src_len);
    if rows.and_then(|r| r.checked_mul(e)) != Some(x_len) {
        return Err(Error::value(format!(
            "x: expected shape [{batch}·{src_len}, {e}], got {x_len} values"
        )));
    }
    if let Some(m) = key_padding_mask {
        if Some(m.len()) != rows {
            return Err(Error::value(format!(
                "key_padding_mask: expected shape [{batch}, {src_len}], got {} values",
                m.len()
            )));
        }
    }
    Ok(PackedBatch::new(batch, src_len, key_padding_mask))
}

/// x + y element-wise, reusing x's buffer.
pub(crate) fn add(mut x: Vec<f32>, y: &[f32]) -> Vec<f32> {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
    x
}
