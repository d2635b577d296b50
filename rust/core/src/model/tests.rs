//! Model-level tests on small random checkpoints: incremental decoding equals
//! full decoding, save/load round trips, and loading/argument errors.

use crate::decoding::{SearchOptions, StepDecoder};
use crate::model::{TokenBatch, Transformer, TransformerConfig};
use crate::nn::{Activation, Tensor};
use crate::test_util::{in_pool, Rng};
use crate::Error;

fn config(norm_first: bool, activation: Activation) -> TransformerConfig {
    TransformerConfig {
        d_model: 12,
        n_heads: 3,
        d_ff: 20,
        n_encoder_layers: 2,
        n_decoder_layers: 2,
        src_vocab_size: 17,
        tgt_vocab_size: 19,
        max_len: 24,
        activation,
        norm_first,
        layer_norm_eps: 1e-5,
        pad_id: 0,
        bos_id: 1,
        eos_id: 2,
    }
}

/// Every CHECKPOINT.md tensor of `cfg` (without the optional positions),
/// filled with small random values.
fn random_tensors(cfg: &TransformerConfig, seed: u64) -> Vec<(String, Tensor)> {
    let (e, f) = (cfg.d_model, cfg.d_ff);
    let mut shapes: Vec<(String, Vec<usize>)> = vec![
        (
            "src_tok_emb.embedding.weight".into(),
            vec![cfg.src_vocab_size, e],
        ),
        (
            "tgt_tok_emb.embedding.weight".into(),
            vec![cfg.tgt_vocab_size, e],
        ),
        ("generator.weight".into(), vec![cfg.tgt_vocab_size, e]),
        ("generator.bias".into(), vec![cfg.tgt_vocab_size]),
    ];
    let attn = |p: String| {
        vec![
            (format!("{p}.in_proj_weight"), vec![3 * e, e]),
            (format!("{p}.in_proj_bias"), vec![3 * e]),
            (format!("{p}.out_proj.weight"), vec![e, e]),
            (format!("{p}.out_proj.bias"), vec![e]),
        ]
    };
    let ff_norms = |p: &str, norms: usize| {
        let mut v = vec![
            (format!("{p}.linear1.weight"), vec![f, e]),
            (format!("{p}.linear1.bias"), vec![f]),
            (format!("{p}.linear2.weight"), vec![e, f]),
            (format!("{p}.linear2.bias"), vec![e]),
        ];
        for n in 1..=norms {
            v.push((format!("{p}.norm{n}.weight"), vec![e]));
            v.push((format!("{p}.norm{n}.bias"), vec![e]));
        }
        v
    };
    for i in 0..cfg.n_encoder_layers {
        let p = format!("transformer.encoder.layers.{i}");
        shapes.extend(attn(format!("{p}.self_attn")));
        shapes.extend(ff_norms(&p, 2));
    }
    for i in 0..cfg.n_decoder_layers {
        let p = format!("transformer.decoder.layers.{i}");
        shapes.extend(attn(format!("{p}.self_attn")));
        shapes.extend(attn(format!("{p}.multihead_attn")));
        shapes.extend(ff_norms(&p, 3));
    }
    for s in ["encoder", "decoder"] {
        shapes.push((format!("transformer.{s}.norm.weight"), vec![e]));
        shapes.push((format!("transformer.{s}.norm.bias"), vec![e]));
    }
    let mut rng = Rng::new(seed);
    shapes
        .into_iter()
        .map(|(name, shape)| {
            let n: usize = shape.iter().product();
            let norm_weight = name.contains("norm") && name.ends_with("weight");
            let data = rng.params(n, norm_weight);
            (name, Tensor::new(shape, data).unwrap())
        })
        .collect()
}

fn model(norm_first: bool, activation: Activation) -> Transformer {
    let cfg = config(norm_first, activation);
    let tensors = random_tensors(&cfg, 11);
    Transformer::from_tensors(cfg, tensors).unwrap()
}

fn log_softmax(x: &[f32]) -> Vec<f32> {
    let m = x.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let lse = m + x.iter().map(|v| (v - m).exp()).sum::<f32>().ln();
    x.iter().map(|v| v - lse).collect()
}

fn assert_close(got: &[f32], want: &[f32], tol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "{what}[{i}]: got {g}, want {w}"
        );
    }
}

#[test]
fn cached_steps_equal_full_decode_at_every_position() {
    for (norm_first, act) in [(false, Activation::Relu), (true, Activation::Gelu)] {
        let m = model(norm_first, act);
        let v = m.config().tgt_vocab_size;
        // Two sources, the second padded at the end.
        let src = [3i64, 4, 5, 6, 7, 8, 9, 0];
        let src = TokenBatch::new(&src, 2, 4);
        let tgt = [1i64, 5, 6, 7, 8, 1, 9, 10, 11, 12];
        let t = 5;
        let full = m.forward(src, TokenBatch::new(&tgt, 2, t)).unwrap();
        let mut state = m.start_decoding(src, t, 1).unwrap();
        let mut log_probs = Vec::new();
        for pos in 0..t {
            m.step(&mut state, &[tgt[pos], tgt[t + pos]], &mut log_probs)
                .unwrap();
            for b in 0..2 {
                let want = log_softmax(&full[(b * t + pos) * v..(b * t + pos + 1) * v]);
                assert_close(
                    &log_probs[b * v..(b + 1) * v],
                    &want,
                    1e-4,
                    &format!("row {b} position {pos}"),
                );
            }
        }
    }
}

#[test]
fn select_rows_reorders_duplicates_and_drops_every_cache() {
    let m = model(false, Activation::Relu);
    let v = m.config().tgt_vocab_size;
    let src = [3i64, 4, 5, 6, 7, 8];
    let src = TokenBatch::new(&src, 2, 3);
    let mut state = m.start_decoding(src, 4, 2).unwrap();
    let mut lp = Vec::new();
    m.step(&mut state, &[1, 1], &mut lp).unwrap();
    m.step(&mut state, &[5, 9], &mut lp).unwrap();
    // Rows: [source 1 prefix (1, 9)] twice, then [source 0 prefix (1, 5)].
    m.select_rows(&mut state, &[1, 1, 0]);
    m.step(&mut state, &[4, 6, 7], &mut lp).unwrap();
    let expect = |s: usize, prefix: [i64; 3], row: usize| {
        let tgt = prefix;
        let src_row = [src.ids[s * 3], src.ids[s * 3 + 1], src.ids[s * 3 + 2]];
        let full = m
            .forward(TokenBatch::new(&src_row, 1, 3), TokenBatch::new(&tgt, 1, 3))
            .unwrap();
        assert_close(
            &lp[row * v..(row + 1) * v],
            &log_softmax(&full[2 * v..3 * v]),
            1e-4,
            &format!("row {row}"),
        );
    };
    expect(1, [1, 9, 4], 0);
    expect(1, [1, 9, 6], 1);
    expect(0, [1, 5, 7], 2);
    m.select_rows(&mut state, &[2]);
    m.step(&mut state, &[3], &mut lp).unwrap();
    let full = m
        .forward(
            TokenBatch::new(&src.ids[..3], 1, 3),
            TokenBatch::new(&[1, 5, 7, 3], 1, 4),
        )
        .unwrap();
    assert_close(&lp, &log_softmax(&full[3 * v..4 * v]), 1e-4, "after drop");
}

/// Greedy search (beam 1, one hypothesis) with `cfg`'s BOS and EOS, scores on.
fn greedy_options(cfg: &TransformerConfig, max_new_tokens: usize) -> SearchOptions {
    SearchOptions {
        max_new_tokens,
        beam_size: 1,
        length_penalty: 1.0,
        num_hypotheses: 1,
        bos_id: cfg.bos_id,
        eos_id: cfg.eos_id,
        return_scores: true,
    }
}

#[test]
fn greedy_generate_matches_argmax_of_full_decode() {
    let m = model(true, Activation::Gelu);
    let cfg = m.config().clone();
    let src = [3i64, 4, 5, 6, 7, 0];
    let src = TokenBatch::new(&src, 2, 3);
    let opts = greedy_options(&cfg, 6);
    let out = m.generate(src, &opts).unwrap();
    for (b, hyps) in out.iter().enumerate() {
        let mut prefix = vec![cfg.bos_id];
        let src_row = &src.ids[b * 3..(b + 1) * 3];
        for _ in 0..opts.max_new_tokens {
            let t = prefix.len();
            let logits = m
                .forward(
                    TokenBatch::new(src_row, 1, 3),
                    TokenBatch::new(&prefix, 1, t),
                )
                .unwrap();
            let last = &logits[(t - 1) * cfg.tgt_vocab_size..];
            let next = (0..last.len())
                .fold(0, |best, j| if last[j] > last[best] { j } else { best })
                as i64;
            prefix.push(next);
            if next == cfg.eos_id {
                break;
            }
        }
        assert_eq!(hyps[0].tokens, prefix[1..], "source {b}");
    }
    let beams = m
        .generate(
            src,
            &SearchOptions {
                beam_size: 3,
                num_hypotheses: 2,
                ..opts
            },
        )
        .unwrap();
    assert!(beams.iter().all(|h| !h.is_empty() && h.len() <= 2));
}

#[test]
fn greedy_without_scores_finds_the_same_tokens() {
    // Without scores, greedy steps take their argmax from the generator's
    // bf16 screen (up to 4 rows; more take the full product), which must
    // pick exactly the tokens the fp32 log-probabilities give, ties
    // included: in the second model every generator row appears twice, so
    // every step's maximum is a tie that the lower id wins.
    for (seed, duplicated_rows) in [(3, false), (4, true)] {
        let cfg = TransformerConfig {
            tgt_vocab_size: 300,
            ..config(seed == 4, Activation::Relu)
        };
        let mut tensors = random_tensors(&cfg, seed);
        if duplicated_rows {
            for (name, t) in &mut tensors {
                let width = if name == "generator.weight" {
                    cfg.d_model
                } else if name == "generator.bias" {
                    1
                } else {
                    continue;
                };
                let mut data = t.data().to_vec();
                for pair in data.chunks_exact_mut(2 * width) {
                    let (even, odd) = pair.split_at_mut(width);
                    odd.copy_from_slice(even);
                }
                *t = Tensor::new(t.shape().to_vec(), data).unwrap();
            }
        }
        let m = Transformer::from_tensors(cfg.clone(), tensors).unwrap();
        let mut rng = Rng::new(seed);
        for batch in [1, 3, 4, 6] {
            let src: Vec<i64> = (0..batch * 5)
                .map(|_| 3 + rng.below(cfg.src_vocab_size - 3) as i64)
                .collect();
            let src = TokenBatch::new(&src, batch, 5);
            let scored = greedy_options(&cfg, 10);
            let with = m.generate(src, &scored).unwrap();
            let without = m
                .generate(
                    src,
                    &SearchOptions {
                        return_scores: false,
                        ..scored
                    },
                )
                .unwrap();
            for (w, wo) in with.iter().zip(&without) {
                assert_eq!(w[0].tokens, wo[0].tokens, "seed {seed} batch {batch}");
                assert!(wo[0].score.is_nan());
                if duplicated_rows {
                    assert!(w[0].tokens.iter().all(|&t| t % 2 == 0), "{:?}", w[0].tokens);
                }
            }
        }
    }
}

#[test]
fn save_then_load_round_trips() {
    let m = model(false, Activation::Gelu);
    let dir = std::env::temp_dir().join(format!("trs-model-rt-{}", std::process::id()));
    m.save(&dir).unwrap();
    let loaded = Transformer::load(&dir).unwrap();
    assert_eq!(loaded.config(), m.config());
    let src = [3i64, 4, 5, 0];
    let tgt = [1i64, 7, 8];
    let a = m
        .forward(TokenBatch::new(&src, 1, 4), TokenBatch::new(&tgt, 1, 3))
        .unwrap();
    let b = loaded
        .forward(TokenBatch::new(&src, 1, 4), TokenBatch::new(&tgt, 1, 3))
        .unwrap();
    assert_eq!(a, b);
    std::fs::remove_dir_all(&dir).unwrap();
}

fn load_error(edit: impl FnOnce(&mut Vec<(String, Tensor)>, &mut TransformerConfig)) -> String {
    let mut cfg = config(false, Activation::Relu);
    let mut tensors = random_tensors(&cfg, 5);
    edit(&mut tensors, &mut cfg);
    match Transformer::from_tensors(cfg, tensors) {
        Err(Error::Checkpoint(m)) => m,
        other => panic!("expected a checkpoint error, got {other:?}"),
    }
}

#[test]
fn bad_checkpoints_name_the_tensor() {
    let m = load_error(|t, _| t.retain(|(n, _)| n != "transformer.decoder.layers.1.norm3.bias"));
    assert!(
        m.contains("transformer.decoder.layers.1.norm3.bias") && m.contains("missing"),
        "{m}"
    );
    // The config says a different vocabulary than the embedding has.
    let m = load_error(|_, c| c.src_vocab_size = 16);
    assert!(
        m.contains("src_tok_emb.embedding.weight") && m.contains("src_vocab_size"),
        "{m}"
    );
    let m = load_error(|_, c| c.d_ff = 21);
    assert!(m.contains("linear1.weight") && m.contains("d_ff"), "{m}");
    let m = load_error(|t, _| {
        let i = t.iter().position(|(n, _)| n == "generator.bias").unwrap();
        t[i].1 = Tensor::new(vec![1, 19], vec![0.0; 19]).unwrap();
    });
    assert!(m.contains("generator.bias") && m.contains("[1, 19]"), "{m}");
    let m = load_error(|_, c| c.n_heads = 5);
    assert!(m.contains("n_heads"), "{m}");
    // A positional table of the wrong shape is an error, extra tensors are not.
    let m = load_error(|t, _| {
        t.push((
            "positional_encoding.pos_embedding".into(),
            Tensor::new(vec![3, 12], vec![0.0; 36]).unwrap(),
        ))
    });
    assert!(m.contains("pos_embedding"), "{m}");
    let cfg = config(false, Activation::Relu);
    let mut t = random_tensors(&cfg, 5);
    t.push((
        "something.else".into(),
        Tensor::new(vec![2], vec![0.0; 2]).unwrap(),
    ));
    Transformer::from_tensors(cfg, t).unwrap();
}

#[test]
fn bad_arguments_are_value_errors_naming_the_argument() {
    let m = model(false, Activation::Relu);
    let value_err = |r: crate::Result<Vec<f32>>| match r {
        Err(Error::Value(msg)) => msg,
        other => panic!("expected a value error, got {other:?}"),
    };
    let msg = value_err(m.encode(TokenBatch::new(&[3, 17], 1, 2)));
    assert!(
        msg.contains("src") && msg.contains("17") && msg.contains("[0, 1]"),
        "{msg}"
    );
    let msg = value_err(m.encode(TokenBatch::new(&[-1], 1, 1)));
    assert!(msg.contains("src") && msg.contains("-1"), "{msg}");
    let long = vec![3i64; 25];
    assert!(value_err(m.encode(TokenBatch::new(&long, 1, 25))).contains("max_len"));
    let memory = m.encode(TokenBatch::new(&[3, 4], 1, 2)).unwrap();
    let msg = value_err(m.decode(TokenBatch::new(&[1, 19], 1, 2), &memory, [1, 2, 12], None));
    assert!(msg.contains("tgt") && msg.contains("19"), "{msg}");
    let msg = value_err(m.decode(TokenBatch::new(&[1], 1, 1), &memory, [1, 3, 8], None));
    assert!(msg.contains("memory") && msg.contains("d_model"), "{msg}");
    let msg = value_err(m.decode(TokenBatch::new(&[1], 1, 1), &memory, [1, 3, 12], None));
    assert!(msg.contains("memory"), "{msg}");
    let msg = value_err(m.decode(
        TokenBatch::new(&[1], 1, 1),
        &memory,
        [1, 2, 12],
        Some(&[false]),
    ));
    assert!(msg.contains("memory_key_padding_mask"), "{msg}");
    // Degenerate but valid: empty batch, empty target.
    assert!(m.encode(TokenBatch::new(&[], 0, 3)).unwrap().is_empty());
    assert!(m
        .decode(TokenBatch::new(&[], 1, 0), &memory, [1, 2, 12], None)
        .unwrap()
        .is_empty());
    let opts = SearchOptions {
        max_new_tokens: 25,
        beam_size: 1,
        length_penalty: 1.0,
        num_hypotheses: 1,
        bos_id: 1,
        eos_id: 2,
        return_scores: true,
    };
    let gen_err = |o: SearchOptions| match m.generate(TokenBatch::new(&[3], 1, 1), &o) {
        Err(Error::Value(msg)) => msg,
        other => panic!("expected a value error, got {other:?}"),
    };
    assert!(gen_err(opts).contains("max_new_tokens"));
    assert!(gen_err(SearchOptions {
        max_new_tokens: 3,
        beam_size: 0,
        ..opts
    })
    .contains("beam_size"));
    assert!(gen_err(SearchOptions {
        max_new_tokens: 3,
        num_hypotheses: 2,
        ..opts
    })
    .contains("num_hypotheses"));
}

#[test]
fn fully_padded_source_decodes_without_nan() {
    let m = model(true, Activation::Relu);
    let logits = m
        .forward(
            TokenBatch::new(&[0, 0], 1, 2),
            TokenBatch::new(&[1, 4], 1, 2),
        )
        .unwrap();
    assert!(logits.iter().all(|x| x.is_finite()));
}

#[test]
fn hostile_capacities_and_paths_fail_cleanly() {
    let m = model(true, Activation::Gelu);
    // A capacity no cache could hold is clamped to max_len, not reserved.
    let mut state = m
        .start_decoding(TokenBatch::new(&[3, 4], 1, 2), usize::MAX, 1)
        .unwrap();
    let mut lp = Vec::new();
    m.step(&mut state, &[1], &mut lp).unwrap();
    assert_eq!(lp.len(), 19);
    // An empty folder path would write into the working directory.
    let err = m.save("").unwrap_err();
    assert!(
        matches!(err, Error::Value(ref msg) if msg.contains("path")),
        "{err:?}"
    );
}

#[test]
fn encode_on_the_kernel_pool_equals_one_thread() {
    // Two 160-token sources at E = 64: the layers' GEMMs and attention
    // heads are big enough to be shared with the kernel pool's other
    // workers (when this host has more than one core), which must not
    // change a bit of the result.
    let cfg = TransformerConfig {
        d_model: 64,
        n_heads: 4,
        d_ff: 96,
        max_len: 200,
        ..config(false, Activation::Relu)
    };
    let m = Transformer::from_tensors(cfg.clone(), random_tensors(&cfg, 5)).unwrap();
    let mut rng = Rng::new(6);
    let ids: Vec<i64> = (0..2 * 160)
        .map(|_| 3 + rng.below(cfg.src_vocab_size - 3) as i64)
        .collect();
    let src = TokenBatch::new(&ids, 2, 160);
    let pooled = crate::parallel::install(|| m.encode(src).unwrap());
    let serial = in_pool(1, || m.encode(src).unwrap());
    assert!(
        pooled == serial,
        "encode differs between the kernel pool and one thread"
    );
}
