"""Encoder-decoder speed: transformer_rs next to CTranslate2 on the same weights.

A Transformer-base (d_model 512, 8 heads, d_ff 2048, 6+6 layers, vocab 32000;
pre-LN so that CTranslate2 computes exactly the same function) with random
weights. eos_id's generator bias is very negative, so generation always makes
exactly 32 new tokens. Both engines run float32 with the same thread count.
Prints a Markdown table; the last column checks both computed the same thing
(max |memory difference| for encode, share of identical token sequences for
generation).

    python benchmarks/bench_model.py             # the real thing (minutes)
    python benchmarks/bench_model.py --quick     # tiny model, smoke test

Needs `pip install ctranslate2` for the comparison column (skipped without it).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np
import transformer_rs as tr
from transformer_rs.reference.model import random_state_dict

BASE = {
    "d_model": 512, "n_heads": 8, "d_ff": 2048, "n_encoder_layers": 6, "n_decoder_layers": 6,
    "src_vocab_size": 32000, "tgt_vocab_size": 32000, "max_len": 512, "activation": "relu",
    "norm_first": True, "layer_norm_eps": 1e-5, "pad_id": 0, "bos_id": 1, "eos_id": 2,
}  # fmt: skip
QUICK = {**BASE, "d_model": 64, "n_heads": 4, "d_ff": 128, "n_encoder_layers": 2,
         "n_decoder_layers": 2, "src_vocab_size": 1000, "tgt_vocab_size": 1000}  # fmt: skip
ENCODE_SHAPES = [(1, 32), (1, 128), (8, 128), (32, 64)]
NEW_TOKENS = 32
GEN_SRC_LEN = 32
SPECIAL_TOKENS = ["<blank>", "<s>", "</s>", "<unk>"]  # ids 0..3 = pad, bos, eos, unk


def benchmark_weights(config):
    state = random_state_dict(config, seed=0)
    state["generator.bias"][config["eos_id"]] = -1e4  # eos unreachable: exactly N new tokens
    return state


def timed(fn, repeats):
    """(median seconds over `repeats` runs after one warm-up, last result)."""
    result = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


# -- CTranslate2 ---------------------------------------------------------------


def vocabulary(size, prefix):
    return SPECIAL_TOKENS + [f"{prefix}{i}" for i in range(len(SPECIAL_TOKENS), size)]


def _linear(spec, weight, bias):
    spec.weight, spec.bias = weight, bias


def _norm(spec, state, name):
    spec.gamma, spec.beta = state[f"{name}.weight"], state[f"{name}.bias"]


def _encoder_spec(specs, config, state):
    spec = specs.TransformerEncoderSpec(
        config["n_encoder_layers"], config["n_heads"], pre_norm=True
    )
    spec.embeddings[0].weight = state["src_tok_emb.embedding.weight"]
    spec.position_encodings.encodings = state["positional_encoding.pos_embedding"]
    _norm(spec.layer_norm, state, "transformer.encoder.norm")
    for i, layer in enumerate(spec.layer):
        p = f"transformer.encoder.layers.{i}"
        attn = layer.self_attention
        _linear(
            attn.linear[0],
            state[f"{p}.self_attn.in_proj_weight"],
            state[f"{p}.self_attn.in_proj_bias"],
        )
        _linear(
            attn.linear[1],
            state[f"{p}.self_attn.out_proj.weight"],
            state[f"{p}.self_attn.out_proj.bias"],
        )
        _norm(attn.layer_norm, state, f"{p}.norm1")
        _linear(layer.ffn.linear_0, state[f"{p}.linear1.weight"], state[f"{p}.linear1.bias"])
        _linear(layer.ffn.linear_1, state[f"{p}.linear2.weight"], state[f"{p}.linear2.bias"])
        _norm(layer.ffn.layer_norm, state, f"{p}.norm2")
    return spec


def _set_decoder(spec, config, state):
    e = config["d_model"]
    spec.embeddings.weight = state["tgt_tok_emb.embedding.weight"]
    spec.position_encodings.encodings = state["positional_encoding.pos_embedding"]
    _norm(spec.layer_norm, state, "transformer.decoder.norm")
    _linear(spec.projection, state["generator.weight"], state["generator.bias"])
    for i, layer in enumerate(spec.layer):
        p = f"transformer.decoder.layers.{i}"
        sa, ca = f"{p}.self_attn", f"{p}.multihead_attn"
        attn = layer.self_attention
        _linear(attn.linear[0], state[f"{sa}.in_proj_weight"], state[f"{sa}.in_proj_bias"])
        _linear(attn.linear[1], state[f"{sa}.out_proj.weight"], state[f"{sa}.out_proj.bias"])
        _norm(attn.layer_norm, state, f"{p}.norm1")
        cross_w, cross_b = state[f"{ca}.in_proj_weight"], state[f"{ca}.in_proj_bias"]
        _linear(layer.attention.linear[0], cross_w[:e], cross_b[:e])  # Q from the decoder
        _linear(layer.attention.linear[1], cross_w[e:], cross_b[e:])  # K;V from memory
        _linear(
            layer.attention.linear[2], state[f"{ca}.out_proj.weight"], state[f"{ca}.out_proj.bias"]
        )
        _norm(layer.attention.layer_norm, state, f"{p}.norm2")
        _linear(layer.ffn.linear_0, state[f"{p}.linear1.weight"], state[f"{p}.linear1.bias"])
        _linear(layer.ffn.linear_1, state[f"{p}.linear2.weight"], state[f"{p}.linear2.bias"])
        _norm(layer.ffn.layer_norm, state, f"{p}.norm3")


def build_ctranslate2(config, state, folder, threads):
    """(ctranslate2.Translator, ctranslate2.Encoder) holding `state`."""
    import ctranslate2
    from ctranslate2 import specs

    src_vocab = vocabulary(config["src_vocab_size"], "s")
    tgt_vocab = vocabulary(config["tgt_vocab_size"], "t")

    seq2seq = specs.TransformerSpec.from_config(
        (config["n_encoder_layers"], config["n_decoder_layers"]), config["n_heads"], pre_norm=True
    )
    seq2seq.encoder = _encoder_spec(specs, config, state)
    _set_decoder(seq2seq.decoder, config, state)
    seq2seq.config.layer_norm_epsilon = config["layer_norm_eps"]
    seq2seq.register_source_vocabulary(src_vocab)
    seq2seq.register_target_vocabulary(tgt_vocab)

    encoder_only = specs.TransformerEncoderModelSpec(_encoder_spec(specs, config, state))
    encoder_only.config.layer_norm_epsilon = config["layer_norm_eps"]
    encoder_only.register_vocabulary(src_vocab)

    engines = []
    for name, spec, engine in (
        ("seq2seq", seq2seq, ctranslate2.Translator),
        ("encoder", encoder_only, ctranslate2.Encoder),
    ):
        spec.validate()
        spec.optimize()
        os.makedirs(f"{folder}/{name}")
        spec.save(f"{folder}/{name}")
        engines.append(
            engine(f"{folder}/{name}", device="cpu", compute_type="float32", intra_threads=threads)
        )
    return engines


def as_strings(ids, prefix):
    return [
        [SPECIAL_TOKENS[t] if t < len(SPECIAL_TOKENS) else f"{prefix}{t}" for t in row]
        for row in ids
    ]


def as_ids(tokens):
    return [
        [int(t[1:]) if t not in SPECIAL_TOKENS else SPECIAL_TOKENS.index(t) for t in row]
        for row in tokens
    ]


# -- main ----------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny model, one repeat (smoke test)")
    parser.add_argument("--threads", type=int, default=tr.get_num_threads())
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per case (median)")
    args = parser.parse_args()
    config = QUICK if args.quick else BASE
    repeats = args.repeats or (1 if args.quick else 5)
    tr.set_num_threads(args.threads)

    state = benchmark_weights(config)
    model = tr.Transformer.from_state_dict(state, config)
    try:
        import ctranslate2  # noqa: F401
    except ImportError:
        ctranslate2 = None
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        if ctranslate2 is not None:
            translator, ct2_encoder = build_ctranslate2(config, state, folder, args.threads)

        for b, s in ENCODE_SHAPES:
            src = rng.integers(len(SPECIAL_TOKENS), config["src_vocab_size"], (b, s))
            ours, memory = timed(lambda src=src: model.encode(src), repeats)
            theirs, check = None, ""
            if ctranslate2 is not None:
                tokens = as_strings(src, "s")
                theirs, out = timed(lambda t=tokens: ct2_encoder.forward_batch(t), repeats)
                ct2_memory = np.asarray(out.last_hidden_state)
                check = f"max diff {np.abs(ct2_memory - memory).max():.1e}"
            rows.append((f"encode S={s}", b, b * s, ours, theirs, check))

        for b in (1, 8):
            src = rng.integers(len(SPECIAL_TOKENS), config["src_vocab_size"], (b, GEN_SRC_LEN))
            for beam in (1, 4):

                def ours_fn(src=src, beam=beam):
                    return model.generate(src, max_new_tokens=NEW_TOKENS, beam_size=beam)

                ours, out = timed(ours_fn, repeats)
                ours_tokens = [[int(t) for t in row] for row in out]
                assert all(len(row) == NEW_TOKENS for row in ours_tokens), "eos must be unreachable"
                theirs, check = None, ""
                if ctranslate2 is not None:
                    tokens = as_strings(src, "s")

                    def ct2_fn(tokens=tokens, beam=beam):
                        return translator.translate_batch(
                            tokens, beam_size=beam, max_decoding_length=NEW_TOKENS
                        )

                    theirs, results = timed(ct2_fn, repeats)
                    ct2_tokens = as_ids([r.hypotheses[0] for r in results])
                    same = sum(a == b for a, b in zip(ours_tokens, ct2_tokens))
                    check = f"{same}/{b} identical"
                name = "greedy" if beam == 1 else f"beam {beam}"
                rows.append((f"{name}, {NEW_TOKENS} new", b, b * NEW_TOKENS, ours, theirs, check))

    shape = "Transformer-base" if not args.quick else "quick (tiny) model"
    print(f"\n{shape}, float32, {args.threads} thread(s), simd {tr.simd_level()}, "
          f"median of {repeats}\n")  # fmt: skip
    print(
        "| case | B | transformer_rs ms | tokens/s | CTranslate2 ms | tokens/s | speed-up | check |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for name, b, n_tokens, ours, theirs, check in rows:
        theirs_cols = ("-", "-", "-")
        if theirs is not None:
            theirs_cols = (
                f"{theirs * 1e3:.1f}",
                f"{n_tokens / theirs:.0f}",
                f"{theirs / ours:.2f}x",
            )
        print(f"| {name} | {b} | {ours * 1e3:.1f} | {n_tokens / ours:.0f} | "
              f"{theirs_cols[0]} | {theirs_cols[1]} | {theirs_cols[2]} | {check} |")  # fmt: skip


if __name__ == "__main__":
    main()
