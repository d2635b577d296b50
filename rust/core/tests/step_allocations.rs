//! Decoding allocates nothing per step once warm: a counting global
//! allocator records the allocations between the starts of consecutive
//! decoder steps, i.e. one whole iteration of the search loop (the step,
//! the search's bookkeeping and the row selection of the KV cache).
//!
//! The GEMM driver included: its work items are computed, not stored, and
//! its packing buffers are per-thread and kept between calls.
//!
//! One test per file: the counter is process-wide, and the test harness
//! would otherwise run other tests concurrently.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use transformer_rs_core::decoding::beam::beam_search;
use transformer_rs_core::decoding::greedy::greedy;
use transformer_rs_core::decoding::{SearchOptions, StepDecoder};
use transformer_rs_core::model::{DecodeState, TokenBatch, Transformer, TransformerConfig};
use transformer_rs_core::nn::{Activation, Tensor};

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

/// The system allocator, counting every allocation and reallocation.
struct Counting;

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged, so `System`'s guarantees hold; counting has no side effect on
// the memory returned.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: forwarded from our caller, who upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: as in `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: `ptr` came from this allocator, i.e. from `System`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, i.e. from `System`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> usize {
    ALLOCATIONS.load(Ordering::SeqCst)
}

/// The Transformer, recording the allocation count and the live rows at the
/// start of every step.
struct Recording<'a> {
    model: &'a Transformer,
    /// (allocations so far, rows) per step; reserved so recording does not
    /// allocate.
    steps: Mutex<Vec<(usize, usize)>>,
}

impl StepDecoder for Recording<'_> {
    type State = DecodeState;

    fn vocab_size(&self) -> usize {
        self.model.vocab_size()
    }

    fn step(
        &self,
        state: &mut DecodeState,
        tokens: &[i64],
        log_probs: &mut Vec<f32>,
    ) -> transformer_rs_core::Result<()> {
        let now = allocations();
        self.steps.lock().unwrap().push((now, tokens.len()));
        self.model.step(state, tokens, log_probs)
    }

    fn step_argmax(
        &self,
        state: &mut DecodeState,
        tokens: &[i64],
        log_probs: &mut Vec<f32>,
        best: &mut Vec<usize>,
    ) -> transformer_rs_core::Result<()> {
        let now = allocations();
        self.steps.lock().unwrap().push((now, tokens.len()));
        self.model.step_argmax(state, tokens, log_probs, best)
    }

    fn select_rows(&self, state: &mut DecodeState, rows: &[usize]) {
        self.model.select_rows(state, rows)
    }
}

fn config(norm_first: bool) -> TransformerConfig {
    TransformerConfig {
        d_model: 16,
        n_heads: 4,
        d_ff: 24,
        n_encoder_layers: 1,
        n_decoder_layers: 2,
        src_vocab_size: 13,
        tgt_vocab_size: 11,
        max_len: 32,
        activation: Activation::Relu,
        norm_first,
        layer_norm_eps: 1e-5,
        pad_id: 0,
        bos_id: 1,
        eos_id: 2,
    }
}

/// Every checkpoint tensor of `cfg`, small deterministic values; the EOS
/// logit is pushed down so that rows live for the whole run.
fn tiny_model(cfg: &TransformerConfig) -> Transformer {
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
    let mut block = |p: String, attentions: &[&str], norms: usize| {
        for a in attentions {
            shapes.push((format!("{p}.{a}.in_proj_weight"), vec![3 * e, e]));
            shapes.push((format!("{p}.{a}.in_proj_bias"), vec![3 * e]));
            shapes.push((format!("{p}.{a}.out_proj.weight"), vec![e, e]));
            shapes.push((format!("{p}.{a}.out_proj.bias"), vec![e]));
        }
        shapes.push((format!("{p}.linear1.weight"), vec![f, e]));
        shapes.push((format!("{p}.linear1.bias"), vec![f]));
        shapes.push((format!("{p}.linear2.weight"), vec![e, f]));
        shapes.push((format!("{p}.linear2.bias"), vec![e]));
        for n in 1..=norms {
            shapes.push((format!("{p}.norm{n}.weight"), vec![e]));
            shapes.push((format!("{p}.norm{n}.bias"), vec![e]));
        }
    };
    for i in 0..cfg.n_encoder_layers {
        block(format!("transformer.encoder.layers.{i}"), &["self_attn"], 2);
    }
    for i in 0..cfg.n_decoder_layers {
        block(
            format!("transformer.decoder.layers.{i}"),
            &["self_attn", "multihead_attn"],
            3,
        );
    }
    for stack in ["encoder", "decoder"] {
        shapes.push((format!("transformer.{stack}.norm.weight"), vec![e]));
        shapes.push((format!("transformer.{stack}.norm.bias"), vec![e]));
    }
    let mut seed = 7u64;
    let tensors = shapes
        .into_iter()
        .map(|(name, shape)| {
            let n: usize = shape.iter().product();
            let mut data: Vec<f32> = (0..n)
                .map(|_| {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    ((seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
                })
                .collect();
            if name == "generator.bias" {
                data[cfg.eos_id as usize] = -1e4;
            }
            let tensor = Tensor::new(shape, data).unwrap();
            (name, tensor)
        })
        .collect();
    Transformer::from_tensors(cfg.clone(), tensors).unwrap()
}

#[test]
fn steady_state_steps_allocate_nothing() {
    transformer_rs_core::parallel::install(|| {
        for norm_first in [false, true] {
            let cfg = config(norm_first);
            let model = tiny_model(&cfg);
            let src_ids = [3i64, 4, 5, 6, 7, 8, 9, 0, 5, 6, 7, 8];
            let src = TokenBatch::new(&src_ids, 2, 6);
            // Greedy with scores, greedy without (the generator's argmax
            // screen), beam search.
            for (beam_size, return_scores) in [(1, true), (1, false), (3, true)] {
                let opts = SearchOptions {
                    max_new_tokens: 12,
                    beam_size,
                    length_penalty: 1.0,
                    num_hypotheses: 1,
                    bos_id: cfg.bos_id,
                    eos_id: cfg.eos_id,
                    return_scores,
                };
                let rows_per_source = if beam_size == 1 { 1 } else { beam_size + 1 };
                let state = model
                    .start_decoding(src, opts.max_new_tokens, rows_per_source)
                    .unwrap();
                let recording = Recording {
                    model: &model,
                    steps: Mutex::new(Vec::with_capacity(opts.max_new_tokens + 1)),
                };
                let result = if beam_size == 1 {
                    greedy(&recording, state, 2, &opts)
                } else {
                    beam_search(&recording, state, 2, &opts)
                }
                .unwrap();
                assert!(result.iter().all(|h| h[0].tokens.len() == 12));
                let steps = recording.steps.into_inner().unwrap();
                assert_eq!(steps.len(), 12);
                // Iteration i runs from the start of step i to that of step
                // i + 1; the first two grow the search's row set (1 → k rows).
                for (i, pair) in steps.windows(2).enumerate().skip(2) {
                    let allocated = pair[1].0 - pair[0].0;
                    assert_eq!(
                        allocated, 0,
                        "norm_first {norm_first} beam {beam_size} scores {return_scores} step {i} ({} rows)",
                        pair[0].1
                    );
                }
            }
        }
    });
}
