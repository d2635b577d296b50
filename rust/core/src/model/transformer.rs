//! The encoder-decoder Transformer of CHECKPOINT.md (PyTorch's
//! `Seq2SeqTransformer` around `nn.Transformer`, `batch_first=True`).

use std::path::Path;

use crate::decoding::{beam::beam_search, greedy::greedy, Hypothesis, SearchOptions};
use crate::kernels::gemm::MatRef;
use crate::model::checkpoint;
use crate::model::config::TransformerConfig;
use crate::nn::{
    ArgmaxScreen, AttnShape, Decoder, Embedding, Encoder, FeedForward, LayerNorm, Linear,
    MultiHeadAttention, PositionalEncoding, Tensor, TensorMap, Weights,
};
use crate::{Error, Result};

/// A batch of token ids: `ids` [B, len] row-major.
#[derive(Clone, Copy, Debug)]
pub struct TokenBatch<'a> {
    pub ids: &'a [i64],
    /// B.
    pub batch: usize,
    /// S or T.
    pub len: usize,
}

impl<'a> TokenBatch<'a> {
    pub fn new(ids: &'a [i64], batch: usize, len: usize) -> Self {
        TokenBatch { ids, batch, len }
    }
}

/// The whole model, immutable after loading (Send + Sync: share it freely).
#[derive(Clone, Debug)]
pub struct Transformer {
    config: TransformerConfig,
    src_embed: Embedding,
    tgt_embed: Embedding,
    /// PE [max_len, E], shared by source and target.
    positions: PositionalEncoding,
    encoder: Encoder,
    decoder: Decoder,
    /// [E → V].
    generator: Linear,
    /// The generator's bf16 copy for greedy steps' argmax (`None` when its
    /// weights are not all finite).
    generator_screen: Option<ArgmaxScreen>,
}

impl Transformer {
    /// Loads `dir/config.json` and `dir/model.safetensors` (memory-mapped).
    /// A missing folder or file is an I/O error (NotFound); anything wrong
    /// inside them is a checkpoint error naming the key or tensor.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        if !dir.is_dir() {
            let err =
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such checkpoint folder");
            return Err(Error::io(dir.display(), &err));
        }
        let config = TransformerConfig::read(&dir.join("config.json"))?;
        let tensors = checkpoint::read(&dir.join("model.safetensors"))?;
        Self::from_map(config, &tensors)
    }

    /// Builds the model from named tensors (CHECKPOINT.md names; extra
    /// tensors are ignored).
    pub fn from_tensors(config: TransformerConfig, tensors: Vec<(String, Tensor)>) -> Result<Self> {
        config.validate()?;
        let mut map = TensorMap::new();
        for (name, t) in tensors {
            map.insert(name, t);
        }
        Self::from_map(config, &map)
    }

    fn from_map(config: TransformerConfig, map: &TensorMap) -> Result<Self> {
        let cfg = &config;
        let w: Weights = map.root();
        let e = cfg.d_model;
        let t = w.pp("transformer");
        // The generator first (its screen before it, see
        // `ArgmaxScreen::from_weights`): its 65 MB weight (Transformer-base)
        // is then paged in and dropped before the layers are resident.
        let (g, d_model, vocab) = (
            w.pp("generator"),
            (e, "d_model"),
            (cfg.tgt_vocab_size, "tgt_vocab_size"),
        );
        let generator_screen = ArgmaxScreen::from_weights(&g, d_model, vocab)?;
        let generator = Linear::new(&g, d_model, vocab)?;
        let model = Transformer {
            src_embed: Embedding::new(
                &w.pp("src_tok_emb.embedding"),
                cfg.src_vocab_size,
                "src_vocab_size",
                e,
            )?,
            tgt_embed: Embedding::new(
                &w.pp("tgt_tok_emb.embedding"),
                cfg.tgt_vocab_size,
                "tgt_vocab_size",
                e,
            )?,
            encoder: Encoder::new(cfg, &t.pp("encoder"))?,
            decoder: Decoder::new(cfg, &t.pp("decoder"))?,
            generator,
            generator_screen,
            // Last: an absent table is computed from the config alone (up to
            // MAX_POSITION_ENTRIES), so only once every weight has checked out.
            positions: PositionalEncoding::from_weights(
                &w.pp("positional_encoding"),
                cfg.max_len,
                e,
            )?,
            config,
        };
        Ok(model)
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &TransformerConfig {
        &self.config
    }

    /// Writes `dir/config.json` and `dir/model.safetensors` (creating `dir`).
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        if dir.as_os_str().is_empty() {
            // create_dir_all("") succeeds, and the files would land in the
            // working directory.
            return Err(Error::value("path: expected a folder, got an empty path"));
        }
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir.display(), &e))?;
        let config_path = dir.join("config.json");
        std::fs::write(&config_path, self.config.to_json() + "\n")
            .map_err(|e| Error::io(config_path.display(), &e))?;
        checkpoint::write(&dir.join("model.safetensors"), &self.named_tensors().0)
    }

    /// Every tensor under its CHECKPOINT.md name.
    fn named_tensors(&self) -> NamedTensors {
        let (cfg, e) = (&self.config, self.config.d_model);
        let mut out = NamedTensors::default();
        for (name, emb) in [
            ("src_tok_emb", &self.src_embed),
            ("tgt_tok_emb", &self.tgt_embed),
        ] {
            let table = emb.table();
            out.push(
                format!("{name}.embedding.weight"),
                table.shape().to_vec(),
                table.data().to_vec(),
            );
        }
        out.push(
            "positional_encoding.pos_embedding".into(),
            vec![cfg.max_len, e],
            self.positions.table().to_vec(),
        );
        for (i, layer) in self.encoder.layers().iter().enumerate() {
            let p = format!("transformer.encoder.layers.{i}");
            let (sa, ff, n1, n2) = layer.parts();
            out.attention(&format!("{p}.self_attn"), sa);
            out.feed_forward(&p, ff);
            out.layer_norm(&format!("{p}.norm1"), n1);
            out.layer_norm(&format!("{p}.norm2"), n2);
        }
        out.layer_norm("transformer.encoder.norm", self.encoder.norm());
        for (i, layer) in self.decoder.layers().iter().enumerate() {
            let p = format!("transformer.decoder.layers.{i}");
            let (sa, ca, ff, norms) = layer.parts();
            out.attention(&format!("{p}.self_attn"), sa);
            out.attention(&format!("{p}.multihead_attn"), ca);
            out.feed_forward(&p, ff);
            for (j, n) in norms.into_iter().enumerate() {
                out.layer_norm(&format!("{p}.norm{}", j + 1), n);
            }
        }
        out.layer_norm("transformer.decoder.norm", self.decoder.norm());
        out.linear("generator", &self.generator);
        out
    }

    /// memory [B, S, E] for `src` [B, S]. Positions holding `pad_id` are
    /// padding: no query attends to them, and memory is zero there (as in
    /// PyTorch's fast path). The encoder does no work for them: it runs on
    /// the valid tokens only, packed.
    pub fn encode(&self, src: TokenBatch) -> Result<Vec<f32>> {
        self.check_tokens("src", src, self.config.src_vocab_size)?;
        let x = self.src_embed.forward(src.ids, src.len, 0, &self.positions);
        let padding = self.padding_mask(src);
        self.encoder.forward(x, src.batch, src.len, Some(&padding))
    }

    /// logits [B, T, V] for `tgt` [B, T] (causal) over `memory` [B, S, E]
    /// (`memory_shape` = [B, S, E]); `memory_key_padding_mask` [B, S], true =
    /// padding.
    pub fn decode(
        &self,
        tgt: TokenBatch,
        memory: &[f32],
        memory_shape: [usize; 3],
        memory_key_padding_mask: Option<&[bool]>,
    ) -> Result<Vec<f32>> {
        self.check_tokens("tgt", tgt, self.config.tgt_vocab_size)?;
        let [mb, s, me] = memory_shape;
        let e = self.config.d_model;
        if me != e {
            return Err(Error::value(format!(
                "memory: expected width d_model = {e}, got shape {memory_shape:?}"
            )));
        }
        if mb != tgt.batch {
            return Err(Error::value(format!(
                "memory: batch size {mb} does not match tgt's batch size {}",
                tgt.batch
            )));
        }
        if Some(memory.len()) != mb.checked_mul(s).and_then(|n| n.checked_mul(e)) {
            return Err(Error::value(format!(
                "memory: {} values do not fill shape {memory_shape:?}",
                memory.len()
            )));
        }
        if let Some(m) = memory_key_padding_mask {
            if m.len() != mb * s {
                return Err(Error::value(format!(
                    "memory_key_padding_mask: expected shape [{mb}, {s}], got {} values",
                    m.len()
                )));
            }
        }
        let x = self.tgt_embed.forward(tgt.ids, tgt.len, 0, &self.positions);
        let shape = AttnShape {
            batch: tgt.batch,
            query_len: tgt.len,
            key_len: s,
        };
        let hidden = self
            .decoder
            .forward(x, shape, memory, memory_key_padding_mask)?;
        Ok(self
            .generator
            .forward(MatRef::row_major(&hidden, tgt.batch * tgt.len, e)))
    }

    /// logits [B, T, V]: encode `src` [B, S], then decode `tgt` [B, T] with
    /// the padding mask taken from `src`.
    pub fn forward(&self, src: TokenBatch, tgt: TokenBatch) -> Result<Vec<f32>> {
        if src.batch != tgt.batch {
            return Err(Error::value(format!(
                "tgt: batch size {} does not match src's batch size {}",
                tgt.batch, src.batch
            )));
        }
        let memory = self.encode(src)?;
        let padding = self.padding_mask(src);
        self.decode(
            tgt,
            &memory,
            [src.batch, src.len, self.config.d_model],
            Some(&padding),
        )
    }

    /// For each source of `src` [B, S], up to `opts.num_hypotheses`
    /// hypotheses, best first: greedy search when `opts.beam_size == 1`,
    /// beam search otherwise, with the key/value cache (one decoder step per
    /// new token). `opts.bos_id` / `opts.eos_id` are normally the config's.
    pub fn generate(&self, src: TokenBatch, opts: &SearchOptions) -> Result<Vec<Vec<Hypothesis>>> {
        if opts.beam_size == 0 {
            return Err(Error::value("beam_size: expected at least 1, got 0"));
        }
        if opts.num_hypotheses == 0 || opts.num_hypotheses > opts.beam_size {
            return Err(Error::value(format!(
                "num_hypotheses: expected between 1 and beam_size ({}), got {}",
                opts.beam_size, opts.num_hypotheses
            )));
        }
        if !opts.length_penalty.is_finite() {
            return Err(Error::value(format!(
                "length_penalty: expected a finite number, got {}",
                opts.length_penalty
            )));
        }
        // Step i feeds the token at position i, so the last of
        // max_new_tokens steps needs position max_new_tokens - 1.
        if opts.max_new_tokens > self.config.max_len {
            return Err(Error::value(format!(
                "max_new_tokens: at most max_len = {} (the positional table), got {}",
                self.config.max_len, opts.max_new_tokens
            )));
        }
        // Live rows per source: 1 for greedy; k beams and the shadow greedy
        // row for beam search.
        let rows_per_source = match opts.beam_size {
            1 => 1,
            k => k.saturating_add(1),
        };
        let state = self.start_decoding(src, opts.max_new_tokens, rows_per_source)?;
        if opts.beam_size == 1 {
            greedy(self, state, src.batch, opts)
        } else {
            beam_search(self, state, src.batch, opts)
        }
    }

    /// [B·S] true where `src` holds `pad_id`.
    pub(crate) fn padding_mask(&self, src: TokenBatch) -> Vec<bool> {
        src.ids.iter().map(|&t| t == self.config.pad_id).collect()
    }

    /// Checks shape, length ≤ max_len and every id in [0, vocab).
    pub(crate) fn check_tokens(&self, name: &str, tokens: TokenBatch, vocab: usize) -> Result<()> {
        if Some(tokens.ids.len()) != tokens.batch.checked_mul(tokens.len) {
            return Err(Error::value(format!(
                "{name}: {} ids do not fill shape [{}, {}]",
                tokens.ids.len(),
                tokens.batch,
                tokens.len
            )));
        }
        if tokens.len > self.config.max_len {
            return Err(Error::value(format!(
                "{name}: length {} exceeds max_len = {}",
                tokens.len, self.config.max_len
            )));
        }
        check_ids(name, tokens.ids, tokens.len, vocab)
    }

    pub(crate) fn tgt_embed(&self) -> &Embedding {
        &self.tgt_embed
    }

    pub(crate) fn positions(&self) -> &PositionalEncoding {
        &self.positions
    }

    pub(crate) fn decoder(&self) -> &Decoder {
        &self.decoder
    }

    pub(crate) fn generator(&self) -> &Linear {
        &self.generator
    }

    pub(crate) fn generator_screen(&self) -> Option<&ArgmaxScreen> {
        self.generator_screen.as_ref()
    }
}

/// (name, shape, values) of every tensor to save, in PyTorch layout.
#[derive(Default)]
struct NamedTensors(Vec<(String, Vec<usize>, Vec<f32>)>);

impl NamedTensors {
    fn push(&mut self, name: String, shape: Vec<usize>, values: Vec<f32>) {
        self.0.push((name, shape, values));
    }

    /// `{name}.weight` [N, K], `{name}.bias` [N] (zeros for a bias-free layer).
    fn linear(&mut self, name: &str, lin: &Linear) {
        let (n, k) = (lin.out_features(), lin.in_features());
        self.push(format!("{name}.weight"), vec![n, k], lin.weight());
        self.push(
            format!("{name}.bias"),
            vec![n],
            lin.bias().map_or_else(|| vec![0.0; n], <[f32]>::to_vec),
        );
    }

    fn layer_norm(&mut self, name: &str, norm: &LayerNorm) {
        let (w, b) = norm.params();
        self.push(format!("{name}.weight"), vec![w.len()], w.to_vec());
        self.push(format!("{name}.bias"), vec![b.len()], b.to_vec());
    }

    fn feed_forward(&mut self, layer: &str, ff: &FeedForward) {
        let (l1, l2) = ff.linears();
        self.linear(&format!("{layer}.linear1"), l1);
        self.linear(&format!("{layer}.linear2"), l2);
    }

    /// Packed `in_proj_weight` [3E, E] / `in_proj_bias` [3E] and `out_proj`.
    fn attention(&mut self, name: &str, mha: &MultiHeadAttention) {
        let e = mha.width();
        let (w, b) = mha.in_proj_weight_and_bias();
        self.push(format!("{name}.in_proj_weight"), vec![3 * e, e], w);
        self.push(format!("{name}.in_proj_bias"), vec![3 * e], b);
        self.linear(&format!("{name}.out_proj"), mha.out_proj());
    }
}

/// Every id of `ids` [B, len] in [0, vocab), else an error naming `name`,
/// the id and its [row, column].
pub(crate) fn check_ids(name: &str, ids: &[i64], len: usize, vocab: usize) -> Result<()> {
    match ids.iter().position(|&t| t < 0 || t as u64 >= vocab as u64) {
        None => Ok(()),
        Some(i) => {
            // An id exists, so len ≥ 1.
            let (row, col) = (i / len.max(1), i % len.max(1));
            Err(Error::value(format!(
                "{name}: token id {} at [{row}, {col}] is outside the vocabulary [0, {vocab})",
                ids[i]
            )))
        }
    }
}
