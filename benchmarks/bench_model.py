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


# -- ONNX Runtime (encoder only) ------------------------------------------------


def build_onnx_encoder(config, state, threads):
    """An onnxruntime session computing encode() for unpadded [B, S] ids
    (pre-LN, relu; no padding mask: the benchmark inputs have none)."""
    import onnxruntime
    from onnx import TensorProto, helper, numpy_helper

    e, h = config["d_model"], config["n_heads"]
    d = e // h
    nodes, weights = [], {}

    def const(name, value):
        weights[name] = numpy_helper.from_array(np.asarray(value), name)
        return name

    def node(op, inputs, output, **attrs):
        nodes.append(helper.make_node(op, inputs, [output], **attrs))
        return output

    def linear(x, prefix, out):
        weight = const(f"{prefix}.wt", state[f"{prefix}.weight"].T.copy())
        y = node("MatMul", [x, weight], f"{out}.mm")
        return node("Add", [y, const(f"{prefix}.b", state[f"{prefix}.bias"])], out)

    def layer_norm(x, prefix, out):
        scale, bias = (
            const(f"{prefix}.g", state[f"{prefix}.weight"]),
            const(f"{prefix}.bb", state[f"{prefix}.bias"]),
        )
        return node(
            "LayerNormalization", [x, scale, bias], out, axis=-1, epsilon=config["layer_norm_eps"]
        )

    split_heads = const("split_heads", np.array([0, 0, h, d], np.int64))
    merge_heads = const("merge_heads", np.array([0, 0, e], np.int64))
    emb = node("Gather", [const("emb", state["src_tok_emb.embedding.weight"]), "ids"], "emb_x")
    scaled = node("Mul", [emb, const("sqrt_e", np.float32(np.sqrt(e)))], "scaled")
    length = node("Shape", ["ids"], "length", start=1, end=2)
    table = const("pe", state["positional_encoding.pos_embedding"])
    zero = const("zero", np.array([0], np.int64))
    positions = node("Slice", [table, zero, length], "positions")
    x = node("Add", [scaled, positions], "x_in")
    for i in range(config["n_encoder_layers"]):
        p = f"transformer.encoder.layers.{i}"
        hn = layer_norm(x, f"{p}.norm1", f"{p}.h1")
        w_in, b_in = state[f"{p}.self_attn.in_proj_weight"], state[f"{p}.self_attn.in_proj_bias"]
        heads = []
        for j, part in enumerate("qkv"):
            proj = node(
                "MatMul",
                [hn, const(f"{p}.w{part}", w_in[j * e : (j + 1) * e].T.copy())],
                f"{p}.{part}mm",
            )
            proj = node(
                "Add", [proj, const(f"{p}.b{part}", b_in[j * e : (j + 1) * e])], f"{p}.{part}"
            )
            proj = node("Reshape", [proj, split_heads], f"{p}.{part}4")
            perm = [0, 2, 3, 1] if part == "k" else [0, 2, 1, 3]  # k as [B, H, D, S]
            heads.append(node("Transpose", [proj], f"{p}.{part}t", perm=perm))
        scores = node("MatMul", heads[:2], f"{p}.scores")
        scores = node(
            "Mul", [scores, const(f"{p}.scale", np.float32(1 / np.sqrt(d)))], f"{p}.scaled"
        )
        probs = node("Softmax", [scores], f"{p}.probs", axis=-1)
        ctx = node("MatMul", [probs, heads[2]], f"{p}.ctx")
        ctx = node("Transpose", [ctx], f"{p}.ctxt", perm=[0, 2, 1, 3])
        ctx = node("Reshape", [ctx, merge_heads], f"{p}.ctx3")
        x = node("Add", [x, linear(ctx, f"{p}.self_attn.out_proj", f"{p}.attn")], f"{p}.x1")
        hn = layer_norm(x, f"{p}.norm2", f"{p}.h2")
        hidden = node("Relu", [linear(hn, f"{p}.linear1", f"{p}.ff1")], f"{p}.relu")
        x = node("Add", [x, linear(hidden, f"{p}.linear2", f"{p}.ff2")], f"{p}.x2")
    layer_norm(x, "transformer.encoder.norm", "memory")
    graph = helper.make_graph(
        nodes,
        "encoder",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["B", "S"])],
        [helper.make_tensor_value_info("memory", TensorProto.FLOAT, ["B", "S", e])],
        initializer=list(weights.values()),
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    return lambda ids: session.run(None, {"ids": np.asarray(ids, np.int64)})[0]


# -- main ----------------------------------------------------------------------


def installed(module):
    try:
        __import__(module)
    except ImportError:
        return False
    return True


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
    engines = ["transformer_rs"]
    engines += ["CTranslate2"] if installed("ctranslate2") else []
    engines += ["ONNX Runtime"] if installed("onnxruntime") and installed("onnx") else []
    rng = np.random.default_rng(0)
    rows = []  # (case, B, tokens, {engine: seconds}, check)
    with tempfile.TemporaryDirectory() as folder:
        if "CTranslate2" in engines:
            translator, ct2_encoder = build_ctranslate2(config, state, folder, args.threads)
        if "ONNX Runtime" in engines:
            onnx_encode = build_onnx_encoder(config, state, args.threads)

        for b, s in ENCODE_SHAPES:
            src = rng.integers(len(SPECIAL_TOKENS), config["src_vocab_size"], (b, s))
            seconds, checks = {}, []
            seconds["transformer_rs"], memory = timed(lambda src=src: model.encode(src), repeats)
            if "CTranslate2" in engines:
                tokens = as_strings(src, "s")
                seconds["CTranslate2"], out = timed(
                    lambda t=tokens: ct2_encoder.forward_batch(t), repeats
                )
                diff = np.abs(np.asarray(out.last_hidden_state) - memory).max()
                checks.append(f"CT2 max diff {diff:.1e}")
            if "ONNX Runtime" in engines:
                seconds["ONNX Runtime"], out = timed(lambda src=src: onnx_encode(src), repeats)
                checks.append(f"ORT max diff {np.abs(out - memory).max():.1e}")
            rows.append((f"encode S={s}", b, b * s, seconds, ", ".join(checks)))

        for b in (1, 8):
            src = rng.integers(len(SPECIAL_TOKENS), config["src_vocab_size"], (b, GEN_SRC_LEN))
            for beam in (1, 4):
                seconds, check = {}, ""

                def ours_fn(src=src, beam=beam):
                    return model.generate(src, max_new_tokens=NEW_TOKENS, beam_size=beam)

                seconds["transformer_rs"], out = timed(ours_fn, repeats)
                ours_tokens = [[int(t) for t in row] for row in out]
                assert all(len(row) == NEW_TOKENS for row in ours_tokens), "eos must be unreachable"
                if "CTranslate2" in engines:
                    tokens = as_strings(src, "s")

                    def ct2_fn(tokens=tokens, beam=beam):
                        return translator.translate_batch(
                            tokens, beam_size=beam, max_decoding_length=NEW_TOKENS
                        )

                    seconds["CTranslate2"], results = timed(ct2_fn, repeats)
                    ct2_tokens = as_ids([r.hypotheses[0] for r in results])
                    same = sum(a == b for a, b in zip(ours_tokens, ct2_tokens))
                    check = f"{same}/{b} outputs identical to CT2"
                name = "greedy" if beam == 1 else f"beam {beam}"
                rows.append((f"{name}, {NEW_TOKENS} new", b, b * NEW_TOKENS, seconds, check))

    shape = "Transformer-base" if not args.quick else "quick (tiny) model"
    print(f"\n{shape}, float32, {args.threads} thread(s), simd {tr.simd_level()}, "
          f"median of {repeats}; ms per call and tokens/s\n")  # fmt: skip
    header = "| case | B | " + " | ".join(f"{e} ms | tok/s" for e in engines) + " | check |"
    print(header)
    print("|---|---:|" + "---:|---:|" * len(engines) + "---|")
    for name, b, n_tokens, seconds, check in rows:
        cells = []
        for engine in engines:
            t = seconds.get(engine)
            cells += [f"{t * 1e3:.1f}", f"{n_tokens / t:.0f}"] if t else ["-", "-"]
        print(f"| {name} | {b} | " + " | ".join(cells) + f" | {check} |")


if __name__ == "__main__":
    main()
