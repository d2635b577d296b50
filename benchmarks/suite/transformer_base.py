"""The Transformer-base model of the encoder and generation row groups:
d_model 512, 8 heads, d_ff 2048, 6 + 6 layers, vocabulary 32000, pre-LN (so
that CTranslate2 computes exactly the same function), random weights whose
eos logit is unreachable, so that generation makes exactly the requested
number of tokens. --quick uses a tiny model of the same structure."""

from __future__ import annotations

from transformer_rs.reference.model import random_state_dict

BASE = {
    "d_model": 512, "n_heads": 8, "d_ff": 2048, "n_encoder_layers": 6, "n_decoder_layers": 6,
    "src_vocab_size": 32000, "tgt_vocab_size": 32000, "max_len": 512, "activation": "relu",
    "norm_first": True, "layer_norm_eps": 1e-5, "pad_id": 0, "bos_id": 1, "eos_id": 2,
}  # fmt: skip
QUICK = {**BASE, "d_model": 64, "n_heads": 4, "d_ff": 128, "n_encoder_layers": 2,
         "n_decoder_layers": 2, "src_vocab_size": 1000, "tgt_vocab_size": 1000}  # fmt: skip
FIRST_TOKEN = 4  # ids 0..3 are pad, bos, eos, unk


def config_and_weights(quick: bool):
    config = QUICK if quick else BASE
    state = random_state_dict(config, seed=0)
    state["generator.bias"][config["eos_id"]] = -1e4  # eos unreachable: exactly N new tokens
    return config, state


def encoder_flops(config, batch: int, length: int) -> float:
    """Multiply-add FLOPs of encode() on [batch, length]: the projections and
    the feed-forward (2 * tokens * weights) plus the attention products."""
    e, f, layers = config["d_model"], config["d_ff"], config["n_encoder_layers"]
    tokens = batch * length
    linear = 2.0 * tokens * (4 * e * e + 2 * e * f)
    attention = 4.0 * batch * length * length * e
    return layers * (linear + attention)
