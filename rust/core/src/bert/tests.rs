//! BERT on tiny random checkpoints: the weight adaptation (names, prefix,
//! Q/K/V packing, errors), the whole forward pass and the packed sentence
//! path (every pooling mode, on one and several threads) against a naive
//! f64 BERT written straight from the Hugging Face names, padded.

use std::collections::HashMap;

use crate::bert::weights::adapt;
use crate::bert::{BertConfig, BertInput, BertModel, Pooling, PoolingMode};
use crate::nn::{Activation, Tensor, TensorMap};
use crate::test_util::{assert_close, in_pool, Rng};
use crate::Error;

fn config(hidden_act: Activation) -> BertConfig {
    BertConfig {
        vocab_size: 23,
        hidden_size: 12,
        num_hidden_layers: 2,
        num_attention_heads: 3,
        intermediate_size: 20,
        hidden_act,
        max_position_embeddings: 9,
        type_vocab_size: 2,
        layer_norm_eps: 1e-12,
    }
}

/// Every tensor of a Hugging Face `BertModel` state dict for `cfg` (plus
/// the pooler and the int64 `position_ids` buffer), random values, names
/// under `prefix`.
fn hf_tensors(
    cfg: &BertConfig,
    prefix: &str,
    seed: u64,
) -> HashMap<String, (Vec<usize>, Vec<f32>)> {
    let (e, f) = (cfg.hidden_size, cfg.intermediate_size);
    let mut shapes: Vec<(String, Vec<usize>)> = vec![
        (
            "embeddings.word_embeddings.weight".into(),
            vec![cfg.vocab_size, e],
        ),
        (
            "embeddings.position_embeddings.weight".into(),
            vec![cfg.max_position_embeddings, e],
        ),
        (
            "embeddings.token_type_embeddings.weight".into(),
            vec![cfg.type_vocab_size, e],
        ),
        ("embeddings.LayerNorm.weight".into(), vec![e]),
        ("embeddings.LayerNorm.bias".into(), vec![e]),
        ("pooler.dense.weight".into(), vec![e, e]),
        ("pooler.dense.bias".into(), vec![e]),
    ];
    for i in 0..cfg.num_hidden_layers {
        let l = format!("encoder.layer.{i}");
        for p in ["query", "key", "value"] {
            shapes.push((format!("{l}.attention.self.{p}.weight"), vec![e, e]));
            shapes.push((format!("{l}.attention.self.{p}.bias"), vec![e]));
        }
        for (name, rows, cols) in [
            ("attention.output.dense", e, e),
            ("intermediate.dense", f, e),
            ("output.dense", e, f),
        ] {
            shapes.push((format!("{l}.{name}.weight"), vec![rows, cols]));
            shapes.push((format!("{l}.{name}.bias"), vec![rows]));
        }
        for name in ["attention.output.LayerNorm", "output.LayerNorm"] {
            shapes.push((format!("{l}.{name}.weight"), vec![e]));
            shapes.push((format!("{l}.{name}.bias"), vec![e]));
        }
    }
    let mut rng = Rng::new(seed);
    shapes
        .into_iter()
        .map(|(name, shape)| {
            let n: usize = shape.iter().product();
            let data = rng.params(n, name.contains("LayerNorm.weight"));
            (format!("{prefix}{name}"), (shape, data))
        })
        .collect()
}

fn to_map(tensors: &HashMap<String, (Vec<usize>, Vec<f32>)>) -> TensorMap {
    let mut map = TensorMap::new();
    for (name, (shape, data)) in tensors {
        map.insert(
            name.clone(),
            Tensor::new(shape.clone(), data.clone()).unwrap(),
        );
    }
    map.insert_unsupported("embeddings.position_ids".into(), "I64".into());
    map
}

/// The reference: BERT in f64, one readable step at a time, reading the
/// Hugging Face names directly (separate Q, K, V; additive -inf mask).
fn naive_bert(
    cfg: &BertConfig,
    t: &HashMap<String, (Vec<usize>, Vec<f32>)>,
    ids: &[i64],
    types: &[i64],
    padding: &[bool],
    batch: usize,
    seq: usize,
) -> Vec<f64> {
    let (e, h) = (cfg.hidden_size, cfg.num_attention_heads);
    let d = e / h;
    let w = |name: &str| -> Vec<f64> { t[name].1.iter().map(|&x| x as f64).collect() };
    let eps = cfg.layer_norm_eps;
    let layer_norm = |x: &mut [f64], g: &[f64], b: &[f64]| {
        for row in x.chunks_exact_mut(e) {
            let mean = row.iter().sum::<f64>() / e as f64;
            let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / e as f64;
            for (j, v) in row.iter_mut().enumerate() {
                *v = (*v - mean) / (var + eps).sqrt() * g[j] + b[j];
            }
        }
    };
    let linear = |x: &[f64], wt: &[f64], b: &[f64], n_in: usize, n_out: usize| -> Vec<f64> {
        x.chunks_exact(n_in)
            .flat_map(|row| {
                (0..n_out)
                    .map(move |o| b[o] + (0..n_in).map(|i| row[i] * wt[o * n_in + i]).sum::<f64>())
            })
            .collect()
    };
    let (word, pos, typ) = (
        w("embeddings.word_embeddings.weight"),
        w("embeddings.position_embeddings.weight"),
        w("embeddings.token_type_embeddings.weight"),
    );
    let mut x = vec![0.0f64; batch * seq * e];
    for r in 0..batch * seq {
        for j in 0..e {
            x[r * e + j] = word[ids[r] as usize * e + j]
                + pos[(r % seq) * e + j]
                + typ[types[r] as usize * e + j];
        }
    }
    layer_norm(
        &mut x,
        &w("embeddings.LayerNorm.weight"),
        &w("embeddings.LayerNorm.bias"),
    );
    for i in 0..cfg.num_hidden_layers {
        let l = |s: &str| format!("encoder.layer.{i}.{s}");
        let proj = |p: &str| {
            linear(
                &x,
                &w(&l(&format!("attention.self.{p}.weight"))),
                &w(&l(&format!("attention.self.{p}.bias"))),
                e,
                e,
            )
        };
        let (q, k, v) = (proj("query"), proj("key"), proj("value"));
        let mut ctx = vec![0.0f64; batch * seq * e];
        for b in 0..batch {
            for hh in 0..h {
                for qi in 0..seq {
                    let scores: Vec<f64> = (0..seq)
                        .map(|kj| {
                            if padding[b * seq + kj] {
                                return f64::NEG_INFINITY;
                            }
                            let dot: f64 = (0..d)
                                .map(|c| {
                                    q[(b * seq + qi) * e + hh * d + c]
                                        * k[(b * seq + kj) * e + hh * d + c]
                                })
                                .sum();
                            dot / (d as f64).sqrt()
                        })
                        .collect();
                    let mx = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let z: f64 = scores.iter().map(|s| (s - mx).exp()).sum();
                    for (kj, s) in scores.iter().enumerate() {
                        let p = (s - mx).exp() / z;
                        for c in 0..d {
                            ctx[(b * seq + qi) * e + hh * d + c] +=
                                p * v[(b * seq + kj) * e + hh * d + c];
                        }
                    }
                }
            }
        }
        let attn = linear(
            &ctx,
            &w(&l("attention.output.dense.weight")),
            &w(&l("attention.output.dense.bias")),
            e,
            e,
        );
        let mut x1: Vec<f64> = x.iter().zip(&attn).map(|(a, b)| a + b).collect();
        layer_norm(
            &mut x1,
            &w(&l("attention.output.LayerNorm.weight")),
            &w(&l("attention.output.LayerNorm.bias")),
        );
        let f = cfg.intermediate_size;
        let mut hid = linear(
            &x1,
            &w(&l("intermediate.dense.weight")),
            &w(&l("intermediate.dense.bias")),
            e,
            f,
        );
        for v in &mut hid {
            *v = match cfg.hidden_act {
                Activation::Relu => v.max(0.0),
                Activation::Gelu => 0.5 * *v * (1.0 + erf(*v / std::f64::consts::SQRT_2)),
            };
        }
        let out = linear(
            &hid,
            &w(&l("output.dense.weight")),
            &w(&l("output.dense.bias")),
            f,
            e,
        );
        x = x1.iter().zip(&out).map(|(a, b)| a + b).collect();
        layer_norm(
            &mut x,
            &w(&l("output.LayerNorm.weight")),
            &w(&l("output.LayerNorm.bias")),
        );
    }
    x
}

/// erf by its Maclaurin series (|x| ≤ 3) or continued fraction tail; 1e-12.
fn erf(x: f64) -> f64 {
    if x.abs() > 3.0 {
        // erfc(x) ~ exp(-x²)/(x√π) · (1 - 1/(2x²) + 3/(4x⁴)); tiny here anyway.
        let y = x.abs();
        let tail = (-y * y).exp() / (y * std::f64::consts::PI.sqrt())
            * (1.0 - 1.0 / (2.0 * y * y) + 3.0 / (4.0 * y.powi(4)));
        return x.signum() * (1.0 - tail);
    }
    let mut term = x;
    let mut sum = x;
    for n in 1..200 {
        term *= -x * x / n as f64;
        sum += term / (2 * n + 1) as f64;
    }
    sum * 2.0 / std::f64::consts::PI.sqrt()
}

#[test]
fn forward_matches_naive_bert_with_and_without_prefix() {
    let (batch, seq) = (4, 7);
    let mut rng = Rng::new(99);
    let ids: Vec<i64> = (0..batch * seq).map(|_| rng.below(23) as i64).collect();
    let types: Vec<i64> = (0..batch * seq).map(|i| (i % 3 == 1) as i64).collect();
    // Row 0 unpadded, row 1 padded after 4 tokens, row 2 after 1, row 3
    // padded on the left and in the middle (positions stay the column's).
    let padding: Vec<bool> = (0..batch * seq)
        .map(|i| match (i / seq, i % seq) {
            (1, t) => t >= 4,
            (2, t) => t >= 1,
            (3, t) => t < 2 || t == 4,
            _ => false,
        })
        .collect();
    for (act, prefix) in [(Activation::Gelu, ""), (Activation::Relu, "bert.")] {
        let cfg = config(act);
        let tensors = hf_tensors(&cfg, prefix, 5);
        let model = BertModel::from_tensors(cfg.clone(), &to_map(&tensors)).unwrap();
        let unprefixed: HashMap<_, _> = tensors
            .iter()
            .map(|(k, v)| (k.trim_start_matches("bert.").to_string(), v.clone()))
            .collect();
        let want = naive_bert(&cfg, &unprefixed, &ids, &types, &padding, batch, seq);
        let got = model
            .forward(BertInput {
                input_ids: &ids,
                token_type_ids: Some(&types),
                key_padding_mask: Some(&padding),
                batch,
                seq_len: seq,
            })
            .unwrap();
        assert_eq!(got.len(), want.len());
        let e = cfg.hidden_size;
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            // Valid positions as Hugging Face; padded ones are zeros.
            let w = if padding[i / e] { 0.0 } else { *w };
            assert!(
                (*g as f64 - w).abs() < 1e-4,
                "{act:?} [{i}]: got {g}, want {w}"
            );
        }
        // No mask and no token types = all keys visible, all type 0.
        let zeros = vec![0i64; batch * seq];
        let none = vec![false; batch * seq];
        let want = naive_bert(&cfg, &unprefixed, &ids, &zeros, &none, batch, seq);
        let got = model
            .forward(BertInput {
                input_ids: &ids,
                token_type_ids: None,
                key_padding_mask: None,
                batch,
                seq_len: seq,
            })
            .unwrap();
        assert_close(&got, &want, 0.0, 1e-4, &format!("{act:?} unpadded"));
    }
}

/// Sentence-transformers' pooling of padded states [B, T, E] (f64).
fn naive_pool(
    hidden: &[f64],
    lengths: &[usize],
    seq: usize,
    e: usize,
    modes: &[PoolingMode],
    normalize: bool,
) -> Vec<f64> {
    let mut out = Vec::new();
    for (b, &len) in lengths.iter().enumerate() {
        let token = |t: usize, j: usize| hidden[(b * seq + t) * e + j];
        let mut emb = Vec::new();
        for mode in modes {
            for j in 0..e {
                let sum: f64 = (0..len).map(|t| token(t, j)).sum();
                emb.push(match mode {
                    PoolingMode::Cls => token(0, j),
                    PoolingMode::Max => (0..len).map(|t| token(t, j)).fold(f64::MIN, f64::max),
                    PoolingMode::Mean => sum / len as f64,
                    PoolingMode::MeanSqrtLen => sum / (len as f64).sqrt(),
                });
            }
        }
        let norm = emb.iter().map(|v| v * v).sum::<f64>().sqrt();
        out.extend(emb.iter().map(|v| if normalize { v / norm } else { *v }));
    }
    out
}

/// Random packed sentences of `lengths`: (ids [N], types [N]) and the same
/// right-padded to [B, T] with its padding mask.
struct Sentences {
    ids: Vec<i64>,
    types: Vec<i64>,
    padded_ids: Vec<i64>,
    padded_types: Vec<i64>,
    padding: Vec<bool>,
    seq: usize,
}

impl Sentences {
    /// [`naive_bert`] of the padded batch [B, seq].
    fn naive_bert(
        &self,
        cfg: &BertConfig,
        t: &HashMap<String, (Vec<usize>, Vec<f32>)>,
    ) -> Vec<f64> {
        // (Every test batch has a token, so seq ≥ 1.)
        let batch = self.padding.len() / self.seq;
        naive_bert(
            cfg,
            t,
            &self.padded_ids,
            &self.padded_types,
            &self.padding,
            batch,
            self.seq,
        )
    }
}

fn sentences(cfg: &BertConfig, lengths: &[usize], seed: u64) -> Sentences {
    let mut rng = Rng::new(seed);
    let n: usize = lengths.iter().sum();
    let ids: Vec<i64> = (0..n).map(|_| rng.below(cfg.vocab_size) as i64).collect();
    let types: Vec<i64> = (0..n)
        .map(|_| rng.below(cfg.type_vocab_size) as i64)
        .collect();
    let seq = lengths.iter().copied().max().unwrap_or(0);
    let (mut padded_ids, mut padded_types, mut padding) = (Vec::new(), Vec::new(), Vec::new());
    let mut at = 0;
    for &len in lengths {
        for t in 0..seq {
            let valid = t < len;
            padded_ids.push(if valid { ids[at + t] } else { 0 });
            padded_types.push(if valid { types[at + t] } else { 0 });
            padding.push(!valid);
        }
        at += len;
    }
    Sentences {
        ids,
        types,
        padded_ids,
        padded_types,
        padding,
        seq,
    }
}

#[test]
fn encode_pools_packed_sentences_like_the_padded_forward_in_every_mode() {
    let cfg = config(Activation::Gelu);
    let tensors = hf_tensors(&cfg, "", 7);
    let model = BertModel::from_tensors(cfg.clone(), &to_map(&tensors)).unwrap();
    let e = cfg.hidden_size;
    let all = [
        PoolingMode::Cls,
        PoolingMode::Max,
        PoolingMode::Mean,
        PoolingMode::MeanSqrtLen,
    ];
    let mode_sets: Vec<Vec<PoolingMode>> = all
        .iter()
        .map(|&m| vec![m])
        .chain([all.to_vec(), vec![PoolingMode::Mean, PoolingMode::Cls]])
        .collect();
    // Batch of one (length 1 and longest), mixed lengths, all length 1.
    for (k, lengths) in [vec![1], vec![9], vec![4, 1, 7, 2, 9], vec![1, 1, 1]]
        .iter()
        .enumerate()
    {
        let s = sentences(&cfg, lengths, 10 + k as u64);
        let (b, t) = (lengths.len(), s.seq);
        let naive = s.naive_bert(&cfg, &tensors);
        let padded: Vec<f64> = model
            .forward(BertInput {
                input_ids: &s.padded_ids,
                token_type_ids: Some(&s.padded_types),
                key_padding_mask: Some(&s.padding),
                batch: b,
                seq_len: t,
            })
            .unwrap()
            .iter()
            .map(|&v| v as f64)
            .collect();
        let batch = model.sentences(&s.ids, Some(&s.types), lengths).unwrap();
        assert_eq!((batch.len(), batch.is_empty()), (b, false));
        for modes in &mode_sets {
            for normalize in [false, true] {
                let what = format!("lengths {lengths:?}, {modes:?}, normalize {normalize}");
                let pooling = Pooling::new(modes.clone(), normalize).unwrap();
                let got = batch.encode(&pooling);
                assert_eq!(got.len(), b * pooling.width(e), "{what}");
                let from_forward = naive_pool(&padded, lengths, t, e, modes, normalize);
                assert_close(&got, &from_forward, 0.0, 1e-5, &what);
                let from_naive = naive_pool(&naive, lengths, t, e, modes, normalize);
                assert_close(&got, &from_naive, 0.0, 1e-4, &what);
            }
        }
    }
    // Types default to 0.
    let s = sentences(&cfg, &[3, 2], 3);
    let zeros = vec![0i64; s.ids.len()];
    let mean = Pooling::new(vec![PoolingMode::Mean], false).unwrap();
    let implicit = model
        .sentences(&s.ids, None, &[3, 2])
        .unwrap()
        .encode(&mean);
    let explicit = model
        .sentences(&s.ids, Some(&zeros), &[3, 2])
        .unwrap()
        .encode(&mean);
    assert_eq!(implicit, explicit);
}

#[test]
fn encode_splits_sentences_across_threads_without_changing_them() {
    // Big enough (~25 Mflop) that two threads take a run of sentences each.
    let cfg = BertConfig {
        vocab_size: 50,
        hidden_size: 64,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        intermediate_size: 128,
        hidden_act: Activation::Gelu,
        max_position_embeddings: 64,
        type_vocab_size: 2,
        layer_norm_eps: 1e-12,
    };
    let tensors = hf_tensors(&cfg, "", 8);
    let model = BertModel::from_tensors(cfg.clone(), &to_map(&tensors)).unwrap();
    let lengths = [40, 3, 17, 33, 1, 25, 60, 9];
    let s = sentences(&cfg, &lengths, 4);
    let t = s.seq;
    let modes = [PoolingMode::Mean, PoolingMode::Max];
    let pooling = Pooling::new(modes.to_vec(), true).unwrap();
    let naive = s.naive_bert(&cfg, &tensors);
    let want = naive_pool(&naive, &lengths, t, cfg.hidden_size, &modes, true);
    let mut outputs = Vec::new();
    for threads in [1, 2, 3] {
        let got = in_pool(threads, || {
            let batch = model.sentences(&s.ids, Some(&s.types), &lengths).unwrap();
            batch.encode(&pooling)
        });
        assert_close(&got, &want, 0.0, 1e-4, &format!("{threads} threads"));
        outputs.push(got);
    }
    let one: Vec<f64> = outputs[0].iter().map(|&v| v as f64).collect();
    for (got, threads) in outputs.iter().zip([1, 2, 3]) {
        assert_close(got, &one, 0.0, 1e-6, &format!("{threads} threads vs 1"));
    }
}

#[test]
fn bad_sentences_are_value_errors_naming_the_argument() {
    let cfg = config(Activation::Gelu);
    let model = BertModel::from_tensors(cfg.clone(), &to_map(&hf_tensors(&cfg, "", 3))).unwrap();
    let ids = [1i64, 2, 3, 4, 5];
    let err = |ids: &[i64], types: Option<&[i64]>, lengths: &[usize]| match model
        .sentences(ids, types, lengths)
    {
        Err(Error::Value(m)) => m,
        other => panic!("expected a value error, got {other:?}"),
    };
    let m = err(&ids, None, &[2, 2]);
    assert!(
        m.contains("lengths") && m.contains("4") && m.contains("5"),
        "{m}"
    );
    let long = [1i64; 10];
    let m = err(&long, None, &[10]);
    assert!(
        m.contains("lengths") && m.contains("max_position_embeddings"),
        "{m}"
    );
    let m = err(&[1, 2, 23, 4, 5], None, &[2, 3]);
    assert!(
        m.contains("input_ids") && m.contains("23") && m.contains("[2]"),
        "{m}"
    );
    let m = err(&[1, 2, -1, 4, 5], None, &[5]);
    assert!(m.contains("input_ids") && m.contains("-1"), "{m}");
    let m = err(&ids, Some(&[0, 0, 0, 2, 0]), &[5]);
    assert!(
        m.contains("token_type_ids") && m.contains("type_vocab_size"),
        "{m}"
    );
    let m = err(&ids, Some(&[0, 0]), &[5]);
    assert!(m.contains("token_type_ids"), "{m}");
    let empty = model.sentences(&[], None, &[]).unwrap();
    assert!(empty.is_empty());
    let mean = Pooling::new(vec![PoolingMode::Mean], true).unwrap();
    assert!(empty.encode(&mean).is_empty());
    // Sentences of no tokens are fine: zeros for mean pooling, and the
    // others are what they are alone.
    let with_empty = model.sentences(&ids, None, &[0, 2, 0, 3, 0]).unwrap();
    let got = with_empty.encode(&mean);
    let e = cfg.hidden_size;
    assert!(got[..e].iter().chain(&got[2 * e..3 * e]).all(|&v| v == 0.0));
    let alone = model
        .sentences(&ids[2..], None, &[3])
        .unwrap()
        .encode(&mean);
    assert_close(
        &got[3 * e..4 * e],
        &alone.iter().map(|&v| v as f64).collect::<Vec<_>>(),
        0.0,
        1e-6,
        "alone",
    );
}

#[test]
fn adaptation_packs_qkv_and_renames() {
    let cfg = config(Activation::Gelu);
    let tensors = hf_tensors(&cfg, "", 1);
    let adapted = adapt(&to_map(&tensors), &cfg).unwrap();
    let w = adapted.root();
    let e = cfg.hidden_size;
    let packed = w
        .get(
            "layers.1.self_attn.in_proj_weight",
            &[(3 * e, "3E"), (e, "E")],
        )
        .unwrap()
        .data();
    let parts: Vec<f32> = ["query", "key", "value"]
        .iter()
        .flat_map(|p| {
            tensors[&format!("encoder.layer.1.attention.self.{p}.weight")]
                .1
                .clone()
        })
        .collect();
    assert_eq!(packed, parts.as_slice());
    let bias = w
        .get("layers.0.self_attn.in_proj_bias", &[(3 * e, "3E")])
        .unwrap();
    assert_eq!(
        &bias.data()[e..2 * e],
        tensors["encoder.layer.0.attention.self.key.bias"]
            .1
            .as_slice()
    );
    let f = cfg.intermediate_size;
    for (to, from, dims) in [
        (
            "layers.0.linear1.weight",
            "encoder.layer.0.intermediate.dense.weight",
            vec![(f, "F"), (e, "E")],
        ),
        (
            "layers.1.linear2.bias",
            "encoder.layer.1.output.dense.bias",
            vec![(e, "E")],
        ),
        (
            "layers.0.norm1.weight",
            "encoder.layer.0.attention.output.LayerNorm.weight",
            vec![(e, "E")],
        ),
        (
            "layers.1.norm2.bias",
            "encoder.layer.1.output.LayerNorm.bias",
            vec![(e, "E")],
        ),
        (
            "layers.0.self_attn.out_proj.weight",
            "encoder.layer.0.attention.output.dense.weight",
            vec![(e, "E"), (e, "E")],
        ),
        (
            "embeddings.norm.bias",
            "embeddings.LayerNorm.bias",
            vec![(e, "E")],
        ),
    ] {
        assert_eq!(
            w.get(to, &dims).unwrap().data(),
            tensors[from].1.as_slice(),
            "{to}"
        );
    }
}

fn load_error(
    edit: impl FnOnce(&mut HashMap<String, (Vec<usize>, Vec<f32>)>, &mut BertConfig),
) -> String {
    let mut cfg = config(Activation::Gelu);
    let mut tensors = hf_tensors(&cfg, "bert.", 2);
    edit(&mut tensors, &mut cfg);
    match BertModel::from_tensors(cfg, &to_map(&tensors)) {
        Err(Error::Checkpoint(m)) => m,
        other => panic!("expected a checkpoint error, got {other:?}"),
    }
}

#[test]
fn bad_weights_name_the_bert_tensor_and_config_key() {
    let m = load_error(|t, _| {
        t.remove("bert.encoder.layer.1.attention.self.value.bias");
    });
    assert!(
        m.contains("bert.encoder.layer.1.attention.self.value.bias"),
        "{m}"
    );
    let m = load_error(|_, c| c.intermediate_size = 21);
    assert!(
        m.contains("bert.encoder.layer.0.intermediate.dense") && m.contains("intermediate_size"),
        "{m}"
    );
    let m = load_error(|_, c| c.max_position_embeddings = 16);
    assert!(
        m.contains("position_embeddings") && m.contains("max_position_embeddings"),
        "{m}"
    );
    let m = load_error(|_, c| c.num_hidden_layers = 3);
    assert!(m.contains("encoder.layer.2"), "{m}");
}

#[test]
fn bad_inputs_are_value_errors_naming_the_argument() {
    let cfg = config(Activation::Gelu);
    let model =
        BertModel::from_tensors(cfg, &to_map(&hf_tensors(&config(Activation::Gelu), "", 3)))
            .unwrap();
    let ids = vec![1i64; 10];
    let input = BertInput {
        input_ids: &ids,
        token_type_ids: None,
        key_padding_mask: None,
        batch: 2,
        seq_len: 5,
    };
    let err = |input: BertInput| match model.forward(input) {
        Err(Error::Value(m)) => m,
        other => panic!("expected a value error, got {other:?}"),
    };
    assert!(err(BertInput { batch: 3, ..input }).contains("input_ids"));
    let bad_ids = vec![1, 2, 23, 4, 5, 6, 7, 8, 9, 10];
    let m = err(BertInput {
        input_ids: &bad_ids,
        ..input
    });
    assert!(
        m.contains("input_ids") && m.contains("23") && m.contains("[0, 2]"),
        "{m}"
    );
    let types = vec![0, 0, 0, 0, 0, 0, 0, 2, 0, 0];
    let m = err(BertInput {
        token_type_ids: Some(&types),
        ..input
    });
    assert!(
        m.contains("token_type_ids") && m.contains("type_vocab_size"),
        "{m}"
    );
    let mask = vec![false; 9];
    assert!(err(BertInput {
        key_padding_mask: Some(&mask),
        ..input
    })
    .contains("attention_mask"));
    let long = vec![1i64; 10];
    let m = err(BertInput {
        input_ids: &long,
        batch: 1,
        seq_len: 10,
        ..input
    });
    assert!(m.contains("max_position_embeddings"), "{m}");
    let out = model
        .forward(BertInput {
            input_ids: &[],
            batch: 0,
            seq_len: 5,
            ..input
        })
        .unwrap();
    assert!(out.is_empty());
}
