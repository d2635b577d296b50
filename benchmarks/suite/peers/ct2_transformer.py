"""CTranslate2 Translator and Encoder holding a Transformer-base state dict
(CHECKPOINT.md names), built with ``ctranslate2.specs``."""

from __future__ import annotations

import os

SPECIAL_TOKENS = ["<blank>", "<s>", "</s>", "<unk>"]  # ids 0..3 = pad, bos, eos, unk


def vocabulary(size, prefix):
    return SPECIAL_TOKENS + [f"{prefix}{i}" for i in range(len(SPECIAL_TOKENS), size)]


def as_strings(ids, prefix):
    """Token ids [B, S] -> CTranslate2's string tokens."""
    return [
        [SPECIAL_TOKENS[t] if t < len(SPECIAL_TOKENS) else f"{prefix}{t}" for t in row]
        for row in ids
    ]


def as_ids(tokens):
    """CTranslate2's string tokens -> token ids."""
    return [
        [int(t[1:]) if t not in SPECIAL_TOKENS else SPECIAL_TOKENS.index(t) for t in row]
        for row in tokens
    ]


def _linear(spec, weight, bias):
    spec.weight, spec.bias = weight, bias


def _norm(spec, state, name):
    spec.gamma, spec.beta = state[f"{name}.weight"], state[f"{name}.bias"]


def _encoder_spec(specs, config, state):
    spec = specs.TransformerEncoderSpec(
        config["n_encoder_layers"], config["n_heads"], pre_norm=config["norm_first"]
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


def _save_and_load(spec, folder, engine, threads):
    spec.validate()
    spec.optimize()
    os.makedirs(folder)
    spec.save(folder)
    return engine(folder, device="cpu", compute_type="float32", intra_threads=threads)


def build_encoder(config, state, folder, threads):
    """ctranslate2.Encoder computing the encoder (pre-LN config) of `state`."""
    import ctranslate2
    from ctranslate2 import specs

    spec = specs.TransformerEncoderModelSpec(_encoder_spec(specs, config, state))
    spec.config.layer_norm_epsilon = config["layer_norm_eps"]
    spec.register_vocabulary(vocabulary(config["src_vocab_size"], "s"))
    return _save_and_load(spec, f"{folder}/ct2_encoder", ctranslate2.Encoder, threads)


def build_translator(config, state, folder, threads):
    """ctranslate2.Translator holding the whole encoder-decoder of `state`."""
    import ctranslate2
    from ctranslate2 import specs

    spec = specs.TransformerSpec.from_config(
        (config["n_encoder_layers"], config["n_decoder_layers"]),
        config["n_heads"],
        pre_norm=config["norm_first"],
    )
    spec.encoder = _encoder_spec(specs, config, state)
    _set_decoder(spec.decoder, config, state)
    spec.config.layer_norm_epsilon = config["layer_norm_eps"]
    spec.register_source_vocabulary(vocabulary(config["src_vocab_size"], "s"))
    spec.register_target_vocabulary(vocabulary(config["tgt_vocab_size"], "t"))
    return _save_and_load(spec, f"{folder}/ct2_seq2seq", ctranslate2.Translator, threads)
