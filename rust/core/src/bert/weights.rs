//! Load-time adaptation of Hugging Face BERT tensor names to the layout the
//! shared `nn` blocks read, so BERT runs on the same attention, feed-forward
//! and LayerNorm code as the seq2seq encoder:
//!
//! | BERT (`bert.` prefix optional)                       | nn layout                               |
//! |------------------------------------------------------|-----------------------------------------|
//! | `embeddings.{word,position,token_type}_embeddings.weight` | same name                          |
//! | `embeddings.LayerNorm.{weight,bias}`                 | `embeddings.norm.*`                     |
//! | `encoder.layer.{i}.attention.self.{query,key,value}.*` | `layers.{i}.self_attn.in_proj_{weight,bias}` (Wq; Wk; Wv) |
//! | `encoder.layer.{i}.attention.output.dense.*`          | `layers.{i}.self_attn.out_proj.*`       |
//! | `encoder.layer.{i}.attention.output.LayerNorm.*`      | `layers.{i}.norm1.*`                    |
//! | `encoder.layer.{i}.intermediate.dense.*`              | `layers.{i}.linear1.*`                  |
//! | `encoder.layer.{i}.output.dense.*`                    | `layers.{i}.linear2.*`                  |
//! | `encoder.layer.{i}.output.LayerNorm.*`                | `layers.{i}.norm2.*`                    |
//!
//! Every BERT tensor is shape-checked here, under its own name and against
//! the BERT config key that implies each dimension, so errors speak the
//! checkpoint's language. Other tensors (the pooler, `position_ids`, heads
//! of task models) are ignored.

use crate::bert::config::BertConfig;
use crate::nn::weights::Dim;
use crate::nn::{Tensor, TensorMap, Weights};
use crate::Result;

/// The embedding table names, identical in both layouts.
pub const WORD_EMBEDDINGS: &str = "embeddings.word_embeddings.weight";
pub const POSITION_EMBEDDINGS: &str = "embeddings.position_embeddings.weight";
pub const TOKEN_TYPE_EMBEDDINGS: &str = "embeddings.token_type_embeddings.weight";

/// The tensors of `hf` (a BERT checkpoint, names with or without the
/// `bert.` prefix of task models) renamed, and Q/K/V concatenated, into
/// the nn layout of the module docs. Tensors are shared, not copied, except
/// the concatenated in-projections.
pub fn adapt(hf: &TensorMap, cfg: &BertConfig) -> Result<TensorMap> {
    let e: Dim = (cfg.hidden_size, "hidden_size");
    let f: Dim = (cfg.intermediate_size, "intermediate_size");
    let tables = [
        (WORD_EMBEDDINGS, (cfg.vocab_size, "vocab_size")),
        (
            POSITION_EMBEDDINGS,
            (cfg.max_position_embeddings, "max_position_embeddings"),
        ),
        (
            TOKEN_TYPE_EMBEDDINGS,
            (cfg.type_vocab_size, "type_vocab_size"),
        ),
    ];
    let prefixed = hf
        .root()
        .get_opt(&format!("bert.{WORD_EMBEDDINGS}"), &[tables[0].1, e])?
        .is_some();
    let src = if prefixed {
        hf.root().pp("bert")
    } else {
        hf.root()
    };

    let mut out = TensorMap::new();
    // Moves one checked tensor across under its new name.
    let copy = |out: &mut TensorMap, from: &Weights, name: &str, dims: &[Dim], to: String| {
        from.get(name, dims).map(|t| out.insert(to, t.clone()))
    };
    for (name, rows) in tables {
        copy(&mut out, &src, name, &[rows, e], name.to_string())?;
    }
    let emb_norm = src.pp("embeddings.LayerNorm");
    for p in ["weight", "bias"] {
        copy(&mut out, &emb_norm, p, &[e], format!("embeddings.norm.{p}"))?;
    }

    for i in 0..cfg.num_hidden_layers {
        let layer = src.pp("encoder.layer").pp(i);
        let to = format!("layers.{i}");
        let attn = layer.pp("attention");
        let renames = [
            (attn.pp("output.dense"), e, e, "self_attn.out_proj"),
            (layer.pp("intermediate.dense"), e, f, "linear1"),
            (layer.pp("output.dense"), f, e, "linear2"),
        ];
        for (from, d_in, d_out, name) in renames {
            copy(
                &mut out,
                &from,
                "weight",
                &[d_out, d_in],
                format!("{to}.{name}.weight"),
            )?;
            copy(
                &mut out,
                &from,
                "bias",
                &[d_out],
                format!("{to}.{name}.bias"),
            )?;
        }
        for (from, name) in [
            (attn.pp("output.LayerNorm"), "norm1"),
            (layer.pp("output.LayerNorm"), "norm2"),
        ] {
            for p in ["weight", "bias"] {
                copy(&mut out, &from, p, &[e], format!("{to}.{name}.{p}"))?;
            }
        }
        let (weight, bias) = packed_in_projection(&attn.pp("self"), e)?;
        out.insert(format!("{to}.self_attn.in_proj_weight"), weight);
        out.insert(format!("{to}.self_attn.in_proj_bias"), bias);
    }
    Ok(out)
}

/// `in_proj_weight` [3E, E] = (Wq; Wk; Wv) and `in_proj_bias` [3E] from the
/// separate `query`, `key`, `value` Linear layers under `w`: the packed
/// layout of `torch.nn.MultiheadAttention`, which the fused QKV GEMM reads.
fn packed_in_projection(w: &Weights, e: Dim) -> Result<(Tensor, Tensor)> {
    // Every part is looked up (shape-checked) before anything is allocated:
    // the packed sizes then come from tensors that exist in the file, never
    // from a config's hidden_size alone (3·E·E could be terabytes).
    let mut parts = Vec::with_capacity(3);
    for part in ["query", "key", "value"] {
        let lin = w.pp(part);
        parts.push((
            lin.get("weight", &[e, e])?.data(),
            lin.get("bias", &[e])?.data(),
        ));
    }
    let weight: Vec<f32> = parts.iter().flat_map(|(w, _)| w.iter().copied()).collect();
    let bias: Vec<f32> = parts.iter().flat_map(|(_, b)| b.iter().copied()).collect();
    Ok((
        Tensor::new(vec![3 * e.0, e.0], weight)?,
        Tensor::new(vec![3 * e.0], bias)?,
    ))
}
