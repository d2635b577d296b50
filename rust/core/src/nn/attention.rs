//! Multi-head attention with `torch.nn.MultiheadAttention`'s packed weights.
//!
//! The input projection is stored in the layout its use wants: one fused
//! [E → 3E] GEMM for self-attention, a query GEMM plus a fused [E → 2E]
//! key/value GEMM for cross-attention (the memory's K/V are computed once per
//! source), or three separate GEMMs for arbitrary query/key/value (`tr.ops`).
//! Heads are strided [`MatRef`] views into the projected buffers, never
//! copies, and the (batch item, head) pairs run in parallel.
//!
//! The encoder's entry point, [`MultiHeadAttention::add_packed_self_attention`],
//! takes a ragged batch packed without padding ([`Sequences`]) and
//! caller-owned scratch, and adds its result into the residual stream.

use std::cell::RefCell;

use rayon::prelude::*;

use crate::kernels::attention::{attention_head, attention_head_scratch};
use crate::kernels::gemm::MatRef;
use crate::nn::linear::Linear;
use crate::nn::packed::Sequences;
use crate::nn::weights::Weights;
use crate::parallel;
use crate::{Error, Result};

/// Multi-head attention block: in-projection, per-head scaled dot-product
/// attention, out-projection. E width, H heads, D = E / H.
#[derive(Clone, Debug)]
pub struct MultiHeadAttention {
    n_heads: usize,
    width: usize,
    in_proj: InProjection,
    /// [E → E].
    out_proj: Linear,
}

#[derive(Clone, Debug)]
enum InProjection {
    /// [E → 3E]: q; k; v of one input (self-attention).
    Fused(Linear),
    /// [E → E] for the query, [E → 2E] for key; value of the memory.
    QueryAndKv { q: Linear, kv: Linear },
    /// Three [E → E] projections of three different inputs.
    Separate { q: Linear, k: Linear, v: Linear },
}

/// The input-projection layout to build (what the block will be used for).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// query = key = value: one fused QKV GEMM.
    SelfAttention,
    /// key = value (the encoder memory): Q GEMM + fused KV GEMM.
    CrossAttention,
    /// Any query, key, value: three GEMMs.
    General,
}

impl Layout {
    /// The fused layout these inputs allow: the same slice for query, key
    /// and value → [`Layout::SelfAttention`]; for key and value →
    /// [`Layout::CrossAttention`]; else [`Layout::General`]. For callers that
    /// build a block per call (`tr.ops.multi_head_attention`).
    pub fn for_inputs(query: &[f32], key: &[f32], value: &[f32]) -> Self {
        let same = |x: &[f32], y: &[f32]| std::ptr::eq(x, y);
        if same(query, key) && same(key, value) {
            Layout::SelfAttention
        } else if same(key, value) {
            Layout::CrossAttention
        } else {
            Layout::General
        }
    }
}

/// An additive float attention mask of shape [B or 1, H or 1, Tq or 1, Tk]
/// (row-major; -inf = may not attend): an axis of size 1 broadcasts, so
/// `[1, 1, Tq, Tk]` is one mask for everything and `[B, H, Tq, Tk]` one per
/// (item, head).
#[derive(Clone, Copy, Debug)]
pub struct AttnMask<'a> {
    pub data: &'a [f32],
    /// Size B (else 1).
    pub per_batch: bool,
    /// Size H (else 1).
    pub per_head: bool,
    /// Size Tq (else 1: one row for every query).
    pub per_query: bool,
}

impl<'a> AttnMask<'a> {
    /// One [Tq, Tk] mask for every item and head.
    pub fn shared(data: &'a [f32]) -> Self {
        AttnMask {
            data,
            per_batch: false,
            per_head: false,
            per_query: true,
        }
    }

    /// One [Tq, Tk] mask per (item, head): data [B, H, Tq, Tk].
    pub fn per_head(data: &'a [f32]) -> Self {
        AttnMask {
            data,
            per_batch: true,
            per_head: true,
            per_query: true,
        }
    }

    /// The mask's shape for B, H, Tq, Tk.
    fn shape(&self, b: usize, h: usize, tq: usize, tk: usize) -> [usize; 4] {
        let pick = |flag: bool, n: usize| if flag { n } else { 1 };
        [
            pick(self.per_batch, b),
            pick(self.per_head, h),
            pick(self.per_query, tq),
            tk,
        ]
    }

    /// The [Tq, Tk] view for item b, head hh (broadcast axes repeat).
    fn view(&self, b: usize, hh: usize, h: usize, tq: usize, tk: usize) -> MatRef<'a> {
        let [_, mh, mq, _] = self.shape(b + 1, h, tq, tk);
        let item = usize::from(self.per_batch) * b * mh + usize::from(self.per_head) * hh;
        let start = item * mq * tk;
        let row_stride = if self.per_query { tk } else { 0 };
        MatRef::new(&self.data[start..start + mq * tk], tq, tk, row_stride, 1)
    }
}

/// Masks of one attention call; the default is "attend everywhere".
#[derive(Clone, Copy, Debug, Default)]
pub struct Masks<'a> {
    /// [B, Tk], `true` = ignore that key (PyTorch convention).
    pub key_padding_mask: Option<&'a [bool]>,
    pub attn_mask: Option<AttnMask<'a>>,
    /// Query i sees keys j ≤ i only.
    pub causal: bool,
}

/// Sequence sizes of one attention call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttnShape {
    /// B.
    pub batch: usize,
    /// Tq.
    pub query_len: usize,
    /// Tk.
    pub key_len: usize,
}

/// The per-head columns of `len` rows of one batch item in a projected
/// buffer: row t, head h, dim d is `data[t·row_stride + h·D + d]`.
#[derive(Clone, Copy, Debug)]
pub struct Heads<'a> {
    pub data: &'a [f32],
    pub row_stride: usize,
    pub len: usize,
}

impl<'a> Heads<'a> {
    /// Item `item` of a buffer [items·len, row_stride] whose part of interest
    /// starts at column `offset`.
    pub fn item(buf: &'a [f32], row_stride: usize, offset: usize, item: usize, len: usize) -> Self {
        let start = (item * len * row_stride + offset).min(buf.len());
        Heads {
            data: &buf[start..],
            row_stride,
            len,
        }
    }

    /// Head `h` of width `d`: a [len, d] view.
    fn head(&self, h: usize, d: usize) -> MatRef<'a> {
        if self.len == 0 || d == 0 {
            return MatRef::new(&[], self.len, d, self.row_stride, 1);
        }
        MatRef::new(&self.data[h * d..], self.len, d, self.row_stride, 1)
    }
}

impl MultiHeadAttention {
    /// Reads `in_proj_weight` [3E, E], `in_proj_bias` [3E], `out_proj.weight`
    /// [E, E], `out_proj.bias` [E] under `w`; `d_model` = E.
    pub fn new(w: &Weights, d_model: usize, n_heads: usize, layout: Layout) -> Result<Self> {
        let e = d_model;
        let in_w = w.get("in_proj_weight", &[(3 * e, "3·d_model"), (e, "d_model")])?;
        let in_b = w.get("in_proj_bias", &[(3 * e, "3·d_model")])?;
        let out = w.pp("out_proj");
        let out_w = out.get("weight", &[(e, "d_model"), (e, "d_model")])?;
        let out_b = out.get("bias", &[(e, "d_model")])?;
        let attention = Self::from_torch(
            n_heads,
            e,
            in_w.data(),
            Some(in_b.data()),
            out_w.data(),
            Some(out_b.data()),
            layout,
        )?;
        // Packed: the checkpoint's pages of the weights need not stay resident too.
        in_w.release_resident_pages();
        out_w.release_resident_pages();
        Ok(attention)
    }

    /// From `torch.nn.MultiheadAttention`'s packed tensors: `in_proj_weight`
    /// [3E, E] (Wq; Wk; Wv), `in_proj_bias` [3E], `out_proj_weight` [E, E],
    /// `out_proj_bias` [E]. Errors name the argument that does not fit.
    pub fn from_torch(
        n_heads: usize,
        embed_dim: usize,
        in_proj_weight: &[f32],
        in_proj_bias: Option<&[f32]>,
        out_proj_weight: &[f32],
        out_proj_bias: Option<&[f32]>,
        layout: Layout,
    ) -> Result<Self> {
        let e = embed_dim;
        if e == 0 || n_heads == 0 || !e.is_multiple_of(n_heads) {
            return Err(Error::value(format!(
                "num_heads: expected a positive divisor of embed_dim {e}, got {n_heads}"
            )));
        }
        // Sizes come from caller arrays, but overflow must still not panic.
        let Some(ee) = e.checked_mul(e).filter(|ee| ee.checked_mul(3).is_some()) else {
            return Err(Error::value(format!("embed_dim {e} is too large")));
        };
        if in_proj_weight.len() != 3 * ee {
            return Err(Error::value(format!(
                "in_proj_weight: expected shape [{}, {e}] ({} values), got {} values",
                3 * e,
                3 * ee,
                in_proj_weight.len()
            )));
        }
        if let Some(b) = in_proj_bias {
            if b.len() != 3 * e {
                return Err(Error::value(format!(
                    "in_proj_bias: expected shape [{}], got {} values",
                    3 * e,
                    b.len()
                )));
            }
        }
        let bias_part = |lo: usize, hi: usize| in_proj_bias.map(|b| &b[lo * e..hi * e]);
        let rows = |lo: usize, hi: usize| &in_proj_weight[lo * ee..hi * ee];
        let in_proj = match layout {
            Layout::SelfAttention => {
                InProjection::Fused(Linear::from_weight(rows(0, 3), bias_part(0, 3), 3 * e, e)?)
            }
            Layout::CrossAttention => InProjection::QueryAndKv {
                q: Linear::from_weight(rows(0, 1), bias_part(0, 1), e, e)?,
                kv: Linear::from_weight(rows(1, 3), bias_part(1, 3), 2 * e, e)?,
            },
            Layout::General => InProjection::Separate {
                q: Linear::from_weight(rows(0, 1), bias_part(0, 1), e, e)?,
                k: Linear::from_weight(rows(1, 2), bias_part(1, 2), e, e)?,
                v: Linear::from_weight(rows(2, 3), bias_part(2, 3), e, e)?,
            },
        };
        let out_proj = Linear::from_weight(out_proj_weight, out_proj_bias, e, e)
            .map_err(|err| Error::value(format!("out_proj_{err}")))?;
        Ok(MultiHeadAttention {
            n_heads,
            width: e,
            in_proj,
            out_proj,
        })
    }

    /// E.
    pub fn width(&self) -> usize {
        self.width
    }

    /// D = E / H.
    pub fn head_dim(&self) -> usize {
        self.width / self.n_heads
    }

    /// `in_proj_weight` [3E, E] and `in_proj_bias` [3E] (zeros if the block
    /// has none), as PyTorch stores them (for saving).
    pub fn in_proj_weight_and_bias(&self) -> (Vec<f32>, Vec<f32>) {
        let parts: Vec<&Linear> = match &self.in_proj {
            InProjection::Fused(qkv) => vec![qkv],
            InProjection::QueryAndKv { q, kv } => vec![q, kv],
            InProjection::Separate { q, k, v } => vec![q, k, v],
        };
        let mut weight = Vec::with_capacity(3 * self.width * self.width);
        let mut bias = Vec::with_capacity(3 * self.width);
        for lin in parts {
            weight.extend(lin.weight());
            match lin.bias() {
                Some(b) => bias.extend_from_slice(b),
                None => bias.extend(std::iter::repeat_n(0.0, lin.out_features())),
            }
        }
        (weight, bias)
    }

    /// The out-projection [E → E].
    pub fn out_proj(&self) -> &Linear {
        &self.out_proj
    }

    /// out [B, Tq, E] for query [B, Tq, E], key and value [B, Tk, E] (all
    /// dense row-major), like `torch.nn.MultiheadAttention(batch_first=True)`
    /// with `need_weights=False`. A query that may attend to no key gets the
    /// out-projection of zeros (PyTorch gives NaN there).
    ///
    /// Pass the *same slice* for query, key and value (self-attention) or for
    /// key and value (cross-attention) to get the fused projections.
    pub fn forward(
        &self,
        query: &[f32],
        key: &[f32],
        value: &[f32],
        shape: AttnShape,
        masks: &Masks,
    ) -> Result<Vec<f32>> {
        let AttnShape {
            batch: b,
            query_len: tq,
            key_len: tk,
        } = shape;
        let (e, h) = (self.width, self.n_heads);
        check_len("query", query.len(), &[b, tq, e])?;
        check_len("key", key.len(), &[b, tk, e])?;
        check_len("value", value.len(), &[b, tk, e])?;
        if let Some(m) = masks.key_padding_mask {
            check_len("key_padding_mask", m.len(), &[b, tk])?;
        }
        if let Some(m) = masks.attn_mask {
            check_len("attn_mask", m.data.len(), &m.shape(b, h, tq, tk))?;
        }
        let head_masks = HeadMasks::new(masks, b, h, tq, tk);
        let same = |x: &[f32], y: &[f32]| std::ptr::eq(x, y);
        let out = if same(query, key) && same(key, value) && tq == tk {
            let qkv = self.project_qkv(query, b * tq);
            let s = 3 * e;
            self.attend(
                b,
                tq,
                masks.causal,
                |i| {
                    (
                        Heads::item(&qkv, s, 0, i, tq),
                        Heads::item(&qkv, s, e, i, tk),
                        Heads::item(&qkv, s, 2 * e, i, tk),
                    )
                },
                |i, hh| head_masks.get(i, hh),
            )
        } else if same(key, value) {
            let q = self.project_q(query, b * tq);
            let kv = self.project_kv(key, b * tk);
            self.attend(
                b,
                tq,
                masks.causal,
                |i| {
                    (
                        Heads::item(&q, e, 0, i, tq),
                        Heads::item(&kv, 2 * e, 0, i, tk),
                        Heads::item(&kv, 2 * e, e, i, tk),
                    )
                },
                |i, hh| head_masks.get(i, hh),
            )
        } else {
            let q = self.project_q(query, b * tq);
            let k = self.project_part(Part::K, key, b * tk);
            let v = self.project_part(Part::V, value, b * tk);
            self.attend(
                b,
                tq,
                masks.causal,
                |i| {
                    (
                        Heads::item(&q, e, 0, i, tq),
                        Heads::item(&k, e, 0, i, tk),
                        Heads::item(&v, e, 0, i, tk),
                    )
                },
                |i, hh| head_masks.get(i, hh),
            )
        };
        Ok(out)
    }

    /// q; k; v [rows, 3E] of x [rows, E] (one GEMM in the self-attention layout).
    pub fn project_qkv(&self, x: &[f32], rows: usize) -> Vec<f32> {
        let e = self.width;
        let x = MatRef::row_major(x, rows, e);
        match &self.in_proj {
            InProjection::Fused(qkv) => qkv.forward(x),
            InProjection::QueryAndKv { q, kv } => {
                interleave(rows, &[(&q.forward(x), e), (&kv.forward(x), 2 * e)])
            }
            InProjection::Separate { q, k, v } => interleave(
                rows,
                &[(&q.forward(x), e), (&k.forward(x), e), (&v.forward(x), e)],
            ),
        }
    }

    /// q [rows, E] of x [rows, E].
    pub fn project_q(&self, x: &[f32], rows: usize) -> Vec<f32> {
        self.project_part(Part::Q, x, rows)
    }

    /// Writes q; k; v [rows, 3E] of x [rows, E] into `out` with no
    /// allocation (decoder steps reuse `out`). Self-attention layout only:
    /// the one fused GEMM.
    pub fn project_qkv_into(&self, x: &[f32], rows: usize, out: &mut [f32]) {
        let InProjection::Fused(qkv) = &self.in_proj else {
            panic!("project_qkv_into needs the self-attention layout");
        };
        qkv.forward_into(MatRef::row_major(x, rows, self.width), out);
    }

    /// Writes q [rows, E] of x [rows, E] into `out` with no allocation.
    /// Cross-attention or general layout only (a separate query GEMM).
    pub fn project_q_into(&self, x: &[f32], rows: usize, out: &mut [f32]) {
        let (InProjection::QueryAndKv { q, .. } | InProjection::Separate { q, .. }) = &self.in_proj
        else {
            panic!("project_q_into needs a separate query projection");
        };
        q.forward_into(MatRef::row_major(x, rows, self.width), out);
    }

    /// k; v [rows, 2E] of x [rows, E] (one GEMM in the cross-attention layout).
    pub fn project_kv(&self, x: &[f32], rows: usize) -> Vec<f32> {
        let e = self.width;
        match &self.in_proj {
            InProjection::QueryAndKv { kv, .. } => kv.forward(MatRef::row_major(x, rows, e)),
            _ => interleave(
                rows,
                &[
                    (&self.project_part(Part::K, x, rows), e),
                    (&self.project_part(Part::V, x, rows), e),
                ],
            ),
        }
    }

    /// One of q, k, v [rows, E] of x [rows, E]. Layouts that fuse it with
    /// another part compute both and keep the columns asked for.
    fn project_part(&self, part: Part, x: &[f32], rows: usize) -> Vec<f32> {
        let e = self.width;
        let xm = MatRef::row_major(x, rows, e);
        let (full, stride, offset) = match (&self.in_proj, part) {
            (InProjection::Separate { q, .. }, Part::Q)
            | (InProjection::QueryAndKv { q, .. }, Part::Q) => return q.forward(xm),
            (InProjection::Separate { k, .. }, Part::K) => return k.forward(xm),
            (InProjection::Separate { v, .. }, Part::V) => return v.forward(xm),
            (InProjection::QueryAndKv { kv, .. }, Part::K) => (kv.forward(xm), 2 * e, 0),
            (InProjection::QueryAndKv { kv, .. }, Part::V) => (kv.forward(xm), 2 * e, e),
            (InProjection::Fused(qkv), p) => (qkv.forward(xm), 3 * e, p as usize * e),
        };
        let mut out = Vec::with_capacity(rows * e);
        for r in 0..rows {
            out.extend_from_slice(&full[r * stride + offset..r * stride + offset + e]);
        }
        out
    }

    /// The attention core: out [B·Tq, E] = out_proj(concat_h softmax(q_h k_hᵀ/√D + mask) v_h).
    /// `items(b)` gives batch item b's (q [Tq], k [Tk_b], v [Tk_b]) heads —
    /// key lengths may differ per item (per-row KV caches); `mask(b, h)` an
    /// additive [Tq, Tk_b] mask view or None. Runs (b, h) pairs in parallel.
    pub fn attend<'a, I, M>(
        &self,
        batch: usize,
        tq: usize,
        causal: bool,
        items: I,
        mask: M,
    ) -> Vec<f32>
    where
        I: Fn(usize) -> (Heads<'a>, Heads<'a>, Heads<'a>) + Sync,
        M: Fn(usize, usize) -> Option<MatRef<'a>> + Sync,
    {
        let (e, h, d) = (self.width, self.n_heads, self.head_dim());
        let scale = 1.0 / (d as f32).sqrt();
        // Head-major scratch [B, H, Tq, D]: each (b, h) owns a contiguous chunk.
        let mut heads = vec![0.0f32; batch * h * tq * d];
        if !heads.is_empty() {
            heads
                .par_chunks_mut(tq * d)
                .enumerate()
                .for_each(|(i, out)| {
                    let (b, hh) = (i / h, i % h);
                    let (q, k, v) = items(b);
                    attention_head(
                        q.head(hh, d),
                        k.head(hh, d),
                        v.head(hh, d),
                        mask(b, hh),
                        causal,
                        scale,
                        out,
                        d,
                    );
                });
        }
        // [B, H, Tq, D] → [B·Tq, E] (heads side by side), then out-project.
        let mut concat = vec![0.0f32; batch * tq * e];
        for b in 0..batch {
            for hh in 0..h {
                for t in 0..tq {
                    let src = ((b * h + hh) * tq + t) * d;
                    let dst = (b * tq + t) * e + hh * d;
                    concat[dst..dst + d].copy_from_slice(&heads[src..src + d]);
                }
            }
        }
        self.out_proj
            .forward(MatRef::row_major(&concat, batch * tq, e))
    }
}

/// Buffers of [`MultiHeadAttention::add_packed_self_attention`], grown as
/// needed and reused across calls (e.g. the layers of one encoder forward).
#[derive(Clone, Debug, Default)]
pub struct AttnScratch {
    /// q; k; v [N, 3E].
    qkv: Vec<f32>,
    /// Per sequence b, its heads [H, len_b, D], at rows seq(b) of [N, E].
    heads: Vec<f32>,
    /// The heads side by side [N, E].
    concat: Vec<f32>,
}

/// Below this many flops per task, attention pairs share a thread: a task
/// handed to another thread costs a wake-up (15–180 µs on the 2-core VM).
const MIN_TASK_FLOPS: usize = 1 << 22;

thread_local! {
    /// Score scratch of [`attention_head_scratch`], one per pool thread.
    static HEAD_SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

impl MultiHeadAttention {
    /// acc [N, E] += self-attention of x [N, E] over the sequences packed in
    /// `seqs` (N = `seqs.tokens()`): each sequence attends to all of its own
    /// rows and nothing else, so packed padding-free rows need no mask.
    /// One fused QKV GEMM; the out-projection's bias and the residual add
    /// ride on its GEMM (beta = 1 into acc).
    pub fn add_packed_self_attention(
        &self,
        x: &[f32],
        seqs: &Sequences,
        scratch: &mut AttnScratch,
        acc: &mut [f32],
    ) {
        let (e, h, d) = (self.width, self.n_heads, self.head_dim());
        let n = seqs.tokens();
        assert!(
            x.len() == n * e && acc.len() == n * e,
            "add_packed_self_attention: x and acc must be [{n}, {e}]"
        );
        if n == 0 {
            return;
        }
        let AttnScratch { qkv, heads, concat } = scratch;
        let xm = MatRef::row_major(x, n, e);
        match &self.in_proj {
            InProjection::Fused(fused) => {
                qkv.resize(n * 3 * e, 0.0);
                fused.forward_into(xm, qkv);
            }
            _ => *qkv = self.project_qkv(x, n),
        }
        heads.resize(n * e, 0.0);
        concat.resize(n * e, 0.0);
        let scale = 1.0 / (d as f32).sqrt();
        let qkv: &[f32] = qkv;
        // One task per (sequence, head): its [len, D] output chunk.
        let mut tasks = Vec::with_capacity(seqs.batch() * h);
        let mut rest: &mut [f32] = heads;
        for b in 0..seqs.batch() {
            let rows = seqs.seq(b);
            let (mine, tail) = rest.split_at_mut(rows.len() * e);
            rest = tail;
            if !rows.is_empty() {
                tasks.extend(
                    mine.chunks_exact_mut(rows.len() * d)
                        .enumerate()
                        .map(|(hh, out)| (rows.clone(), hh, out)),
                );
            }
        }
        let run = |(rows, hh, out): (std::ops::Range<usize>, usize, &mut [f32])| {
            let part = |p: usize| {
                let start = rows.start * 3 * e + p * e + hh * d;
                MatRef::new(&qkv[start..], rows.len(), d, 3 * e, 1)
            };
            HEAD_SCRATCH.with_borrow_mut(|sc| {
                attention_head_scratch(part(0), part(1), part(2), None, false, scale, out, d, sc)
            });
        };
        let flops = 4 * d * h * seqs.attention_pairs();
        if flops < 2 * MIN_TASK_FLOPS || parallel::loop_threads() == 1 {
            tasks.into_iter().for_each(run);
        } else {
            // Shared with the kernel pool as the layer's GEMMs are, so the
            // worker lingering after the QKV projection joins at once (rayon's
            // own splitting would leave these tasks to the calling thread
            // until that worker gave up lingering). Each index takes a group
            // of tasks.
            let per_group = (MIN_TASK_FLOPS * tasks.len()).div_ceil(flops).max(1);
            parallel::for_each_chunk_mut(&mut tasks, per_group, |_, group| {
                for (rows, hh, out) in group.iter_mut() {
                    run((rows.clone(), *hh, &mut **out));
                }
            });
        }
        // Per sequence [H, len, D] → [len, E] (heads side by side).
        for b in 0..seqs.batch() {
            let rows = seqs.seq(b);
            let (r0, len) = (rows.start, rows.len());
            for hh in 0..h {
                for t in 0..len {
                    let src = r0 * e + (hh * len + t) * d;
                    let dst = (r0 + t) * e + hh * d;
                    concat[dst..dst + d].copy_from_slice(&heads[src..src + d]);
                }
            }
        }
        self.out_proj
            .add_forward_into(MatRef::row_major(concat, n, e), acc);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    Q = 0,
    K = 1,
    V = 2,
}

/// Columns side by side: parts (buf [rows, width], width) → [rows, Σ width].
fn interleave(rows: usize, parts: &[(&[f32], usize)]) -> Vec<f32> {
    let total: usize = parts.iter().map(|p| p.1).sum();
    let mut out = Vec::with_capacity(rows * total);
    for r in 0..rows {
        for (buf, w) in parts {
            out.extend_from_slice(&buf[r * w..(r + 1) * w]);
        }
    }
    out
}

fn check_len(name: &str, len: usize, shape: &[usize]) -> Result<()> {
    let want = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    if want != Some(len) {
        return Err(Error::value(format!(
            "{name}: expected shape {shape:?}, got {len} values"
        )));
    }
    Ok(())
}

/// Additive masks per (b, h), prepared once per call: key padding becomes
/// a [B, Tk] row of 0 / -inf broadcast over queries (row stride 0); when an
/// attn_mask is given too, the two are summed into one buffer
/// [B, H or 1, Tq, Tk].
struct HeadMasks<'a> {
    h: usize,
    tq: usize,
    tk: usize,
    kind: MaskKind<'a>,
}

enum MaskKind<'a> {
    None,
    /// [B, Tk] key-padding rows.
    KeyPadding(Vec<f32>),
    Attn(AttnMask<'a>),
    /// attn_mask + key padding: [B, H or 1, Tq, Tk].
    Combined {
        data: Vec<f32>,
        per_head: bool,
    },
}

impl<'a> HeadMasks<'a> {
    fn new(masks: &Masks<'a>, b: usize, h: usize, tq: usize, tk: usize) -> Self {
        let padding: Option<Vec<f32>> = masks.key_padding_mask.map(|m| {
            m.iter()
                .map(|&pad| if pad { f32::NEG_INFINITY } else { 0.0 })
                .collect()
        });
        let kind = match (masks.attn_mask, padding) {
            (None, None) => MaskKind::None,
            (None, Some(p)) => MaskKind::KeyPadding(p),
            (Some(m), None) => MaskKind::Attn(m),
            (Some(m), Some(p)) => {
                let heads = if m.per_head { h } else { 1 };
                let mut data = Vec::with_capacity(b * heads * tq * tk);
                for bi in 0..b {
                    for hh in 0..heads {
                        let view = m.view(bi, hh, h, tq, tk);
                        for i in 0..tq {
                            data.extend((0..tk).map(|j| view.at(i, j) + p[bi * tk + j]));
                        }
                    }
                }
                MaskKind::Combined {
                    data,
                    per_head: m.per_head,
                }
            }
        };
        HeadMasks { h, tq, tk, kind }
    }

    /// The [Tq, Tk] mask view of item b, head hh.
    fn get(&self, b: usize, hh: usize) -> Option<MatRef<'_>> {
        let (h, tq, tk) = (self.h, self.tq, self.tk);
        match &self.kind {
            MaskKind::None => None,
            MaskKind::KeyPadding(p) => Some(MatRef::new(&p[b * tk..(b + 1) * tk], tq, tk, 0, 1)),
            MaskKind::Attn(m) => Some(m.view(b, hh, h, tq, tk)),
            MaskKind::Combined { data, per_head } => {
                let m = AttnMask {
                    data,
                    per_batch: true,
                    per_head: *per_head,
                    per_query: true,
                };
                Some(m.view(b, hh, h, tq, tk))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::Rng;

    /// Naive MHA in f64, straight from the definition.
    #[allow(clippy::too_many_arguments)]
    fn naive(
        e: usize,
        h: usize,
        wi: &[f32],
        bi: &[f32],
        wo: &[f32],
        bo: &[f32],
        q: &[f32],
        k: &[f32],
        v: &[f32],
        shape: AttnShape,
        masks: &Masks,
    ) -> Vec<f32> {
        let AttnShape {
            batch: b,
            query_len: tq,
            key_len: tk,
        } = shape;
        let d = e / h;
        let proj = |x: &[f32], n: usize, part: usize| -> Vec<f64> {
            let mut out = vec![0.0f64; n * e];
            for r in 0..n {
                for o in 0..e {
                    let row = part * e + o;
                    let mut acc = bi[row] as f64;
                    for i in 0..e {
                        acc += x[r * e + i] as f64 * wi[row * e + i] as f64;
                    }
                    out[r * e + o] = acc;
                }
            }
            out
        };
        let (pq, pk, pv) = (proj(q, b * tq, 0), proj(k, b * tk, 1), proj(v, b * tk, 2));
        let mut ctx = vec![0.0f64; b * tq * e];
        for bb in 0..b {
            for hh in 0..h {
                for i in 0..tq {
                    let mut s = vec![f64::NEG_INFINITY; tk];
                    for (j, sj) in s.iter_mut().enumerate() {
                        let mut m = 0.0f64;
                        if let Some(kpm) = masks.key_padding_mask {
                            if kpm[bb * tk + j] {
                                m = f64::NEG_INFINITY;
                            }
                        }
                        if let Some(a) = masks.attn_mask {
                            // Index the [B|1, H|1, Tq|1, Tk] layout directly.
                            let (nh, nq) = (
                                if a.per_head { h } else { 1 },
                                if a.per_query { tq } else { 1 },
                            );
                            let (ib, ih, iq) = (
                                if a.per_batch { bb } else { 0 },
                                if a.per_head { hh } else { 0 },
                                if a.per_query { i } else { 0 },
                            );
                            m += a.data[((ib * nh + ih) * nq + iq) * tk + j] as f64;
                        }
                        if masks.causal && j > i {
                            m = f64::NEG_INFINITY;
                        }
                        let dot: f64 = (0..d)
                            .map(|x| {
                                pq[(bb * tq + i) * e + hh * d + x]
                                    * pk[(bb * tk + j) * e + hh * d + x]
                            })
                            .sum();
                        *sj = dot / (d as f64).sqrt() + m;
                    }
                    let mx = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    if mx == f64::NEG_INFINITY {
                        continue;
                    }
                    let z: f64 = s.iter().map(|x| (x - mx).exp()).sum();
                    for (j, sj) in s.iter().enumerate() {
                        let p = (sj - mx).exp() / z;
                        for x in 0..d {
                            ctx[(bb * tq + i) * e + hh * d + x] +=
                                p * pv[(bb * tk + j) * e + hh * d + x];
                        }
                    }
                }
            }
        }
        let mut out = vec![0.0f32; b * tq * e];
        for r in 0..b * tq {
            for o in 0..e {
                let acc: f64 = bo[o] as f64
                    + (0..e)
                        .map(|i| ctx[r * e + i] * wo[o * e + i] as f64)
                        .sum::<f64>();
                out[r * e + o] = acc as f32;
            }
        }
        out
    }

    fn assert_close(got: &[f32], want: &[f32], tol: f32) {
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= tol * (1.0 + w.abs()),
                "index {i}: got {g}, want {w}"
            );
        }
    }

    #[test]
    fn general_forward_matches_naive_in_every_layout_and_mask_combination() {
        let mut rng = Rng::new(7);
        for &(b, tq, tk, e, h) in &[
            (1, 1, 1, 4, 1),
            (2, 3, 5, 8, 2),
            (3, 4, 4, 12, 3),
            (1, 7, 2, 6, 6),
        ] {
            let wi = rng.vec(3 * e * e, -1.0, 1.0);
            let bi = rng.vec(3 * e, -1.0, 1.0);
            let wo = rng.vec(e * e, -1.0, 1.0);
            let bo = rng.vec(e, -1.0, 1.0);
            let q = rng.vec(b * tq * e, -1.0, 1.0);
            let k = rng.vec(b * tk * e, -1.0, 1.0);
            let v = rng.vec(b * tk * e, -1.0, 1.0);
            let kpm: Vec<bool> = (0..b * tk)
                .map(|i| i % tk == tk - 1 && tk > 1 || i == 0 && b > 2)
                .collect();
            let shared: Vec<f32> = (0..tq * tk).map(|_| rng.uniform(-1.0, 1.0)).collect();
            let per_head: Vec<f32> = (0..b * h * tq * tk)
                .map(|i| {
                    if i % 5 == 3 {
                        f32::NEG_INFINITY
                    } else {
                        rng.uniform(-1.0, 1.0)
                    }
                })
                .collect();
            let shape = AttnShape {
                batch: b,
                query_len: tq,
                key_len: tk,
            };
            // [B, 1, 1, Tk] (one row per item) and [1, H, Tq, Tk] (per head).
            let per_item_row: Vec<f32> = (0..b * tk).map(|_| rng.uniform(-1.0, 1.0)).collect();
            let item_rows = AttnMask {
                data: &per_item_row,
                per_batch: true,
                per_head: false,
                per_query: false,
            };
            let heads_only = AttnMask {
                data: &per_head[..h * tq * tk],
                per_batch: false,
                per_head: true,
                per_query: true,
            };
            let mask_sets = [
                Masks::default(),
                Masks {
                    attn_mask: Some(item_rows),
                    ..Default::default()
                },
                Masks {
                    key_padding_mask: Some(&kpm),
                    attn_mask: Some(item_rows),
                    causal: true,
                },
                Masks {
                    key_padding_mask: Some(&kpm),
                    attn_mask: Some(heads_only),
                    causal: false,
                },
                Masks {
                    key_padding_mask: Some(&kpm),
                    ..Default::default()
                },
                Masks {
                    attn_mask: Some(AttnMask::shared(&shared)),
                    causal: true,
                    ..Default::default()
                },
                Masks {
                    key_padding_mask: Some(&kpm),
                    attn_mask: Some(AttnMask::shared(&shared)),
                    causal: false,
                },
                Masks {
                    key_padding_mask: Some(&kpm),
                    attn_mask: Some(AttnMask::per_head(&per_head)),
                    causal: true,
                },
                Masks {
                    attn_mask: Some(AttnMask::per_head(&per_head)),
                    ..Default::default()
                },
            ];
            for layout in [
                Layout::SelfAttention,
                Layout::CrossAttention,
                Layout::General,
            ] {
                let mha =
                    MultiHeadAttention::from_torch(h, e, &wi, Some(&bi), &wo, Some(&bo), layout)
                        .unwrap();
                for masks in &mask_sets {
                    // Distinct inputs.
                    let got = mha.forward(&q, &k, &v, shape, masks).unwrap();
                    assert_close(
                        &got,
                        &naive(e, h, &wi, &bi, &wo, &bo, &q, &k, &v, shape, masks),
                        1e-4,
                    );
                    // key = value (fused KV path).
                    let got = mha.forward(&q, &k, &k, shape, masks).unwrap();
                    assert_close(
                        &got,
                        &naive(e, h, &wi, &bi, &wo, &bo, &q, &k, &k, shape, masks),
                        1e-4,
                    );
                }
                // query = key = value (fused QKV path), self-attention shapes.
                let sshape = AttnShape {
                    batch: b,
                    query_len: tk,
                    key_len: tk,
                };
                let m = Masks {
                    key_padding_mask: Some(&kpm),
                    causal: true,
                    ..Default::default()
                };
                let got = mha.forward(&k, &k, &k, sshape, &m).unwrap();
                assert_close(
                    &got,
                    &naive(e, h, &wi, &bi, &wo, &bo, &k, &k, &k, sshape, &m),
                    1e-4,
                );
                let (w2, b2) = mha.in_proj_weight_and_bias();
                assert_eq!((w2, b2), (wi.clone(), bi.clone()));
            }
        }
    }

    #[test]
    fn layout_for_inputs_follows_slice_identity() {
        let (a, b) = (vec![0.0f32; 4], vec![0.0f32; 4]);
        assert_eq!(Layout::for_inputs(&a, &a, &a), Layout::SelfAttention);
        assert_eq!(Layout::for_inputs(&a, &b, &b), Layout::CrossAttention);
        assert_eq!(Layout::for_inputs(&a, &a, &b), Layout::General);
        assert_eq!(Layout::for_inputs(&a, &b, &b[..3]), Layout::General);
    }

    #[test]
    fn fully_masked_query_gives_out_proj_bias() {
        let e = 4;
        let mut rng = Rng::new(3);
        let (wi, wo, bo) = (
            rng.vec(3 * e * e, -1.0, 1.0),
            rng.vec(e * e, -1.0, 1.0),
            rng.vec(e, -1.0, 1.0),
        );
        let mha = MultiHeadAttention::from_torch(2, e, &wi, None, &wo, Some(&bo), Layout::General)
            .unwrap();
        let x = rng.vec(2 * e, -1.0, 1.0);
        let kpm = [true, true];
        let masks = Masks {
            key_padding_mask: Some(&kpm),
            ..Default::default()
        };
        let out = mha
            .forward(
                &x[..e],
                &x,
                &x,
                AttnShape {
                    batch: 1,
                    query_len: 1,
                    key_len: 2,
                },
                &masks,
            )
            .unwrap();
        assert_close(&out, &bo, 0.0);
    }

    #[test]
    fn bad_arguments_name_themselves() {
        let e = 4;
        let w = vec![0.0; 3 * e * e];
        let o = vec![0.0; e * e];
        let err = |r: Result<MultiHeadAttention>| r.unwrap_err().to_string();
        assert!(err(MultiHeadAttention::from_torch(
            3,
            e,
            &w,
            None,
            &o,
            None,
            Layout::General
        ))
        .contains("num_heads"));
        assert!(err(MultiHeadAttention::from_torch(
            2,
            e,
            &w[1..],
            None,
            &o,
            None,
            Layout::General
        ))
        .contains("in_proj_weight"));
        assert!(err(MultiHeadAttention::from_torch(
            2,
            e,
            &w,
            Some(&[0.0; 3]),
            &o,
            None,
            Layout::General
        ))
        .contains("in_proj_bias"));
        assert!(err(MultiHeadAttention::from_torch(
            2,
            e,
            &w,
            None,
            &o[1..],
            None,
            Layout::General
        ))
        .contains("out_proj_weight"));
        assert!(err(MultiHeadAttention::from_torch(
            2,
            e,
            &w,
            None,
            &o,
            Some(&[0.0]),
            Layout::General
        ))
        .contains("out_proj_bias"));
        let mha =
            MultiHeadAttention::from_torch(2, e, &w, None, &o, None, Layout::General).unwrap();
        let x = vec![0.0; 2 * e];
        let shape = AttnShape {
            batch: 1,
            query_len: 2,
            key_len: 2,
        };
        let e1 = mha
            .forward(&x[1..], &x, &x, shape, &Masks::default())
            .unwrap_err()
            .to_string();
        assert!(e1.contains("query"), "{e1}");
        let kpm = [false];
        let m = Masks {
            key_padding_mask: Some(&kpm),
            ..Default::default()
        };
        assert!(mha
            .forward(&x, &x, &x, shape, &m)
            .unwrap_err()
            .to_string()
            .contains("key_padding_mask"));
        let am = [0.0; 3];
        let m = Masks {
            attn_mask: Some(AttnMask::shared(&am)),
            ..Default::default()
        };
        assert!(mha
            .forward(&x, &x, &x, shape, &m)
            .unwrap_err()
            .to_string()
            .contains("attn_mask"));
    }
}
