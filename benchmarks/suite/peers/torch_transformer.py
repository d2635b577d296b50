"""PyTorch computing ``tr.Transformer.encode`` of a Transformer-base state dict:
the tutorial's embedding * sqrt(E) + positions, then ``nn.TransformerEncoder``
(batch first, in eval mode so that PyTorch takes its fused fast path).
Shape key: B batch, S source length, E d_model."""

from __future__ import annotations

import math

import numpy as np


def build_encoder(config, state):
    """A function ids [B, S] (no padding) -> memory [B, S, E] float32."""
    import torch
    from torch import nn

    e = config["d_model"]
    layer = nn.TransformerEncoderLayer(
        e,
        config["n_heads"],
        config["d_ff"],
        dropout=0.0,
        activation=config["activation"],
        layer_norm_eps=config["layer_norm_eps"],
        batch_first=True,
        norm_first=config["norm_first"],
    )
    encoder = nn.TransformerEncoder(
        layer,
        config["n_encoder_layers"],
        norm=nn.LayerNorm(e, eps=config["layer_norm_eps"]),
        enable_nested_tensor=False,
    )
    prefix = "transformer.encoder."
    encoder.load_state_dict(
        {k[len(prefix) :]: torch.from_numpy(v) for k, v in state.items() if k.startswith(prefix)}
    )
    encoder.eval()
    embedding = torch.from_numpy(state["src_tok_emb.embedding.weight"])
    positions = torch.from_numpy(state["positional_encoding.pos_embedding"])
    scale = math.sqrt(e)

    def encode(ids):
        with torch.inference_mode():
            ids = torch.from_numpy(np.asarray(ids, np.int64))
            x = embedding[ids] * scale + positions[: ids.shape[1]]
            return encoder(x).numpy()

    return encode
