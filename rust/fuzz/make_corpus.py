"""Writes the seed corpus of the fuzz targets: micro checkpoints (d_model 4)
in every stored dtype, with and without the positional table, as
``[config length: u16 LE][config.json][model.safetensors]`` for
``checkpoint``, and their config.json texts for ``config``.

Run from the repository root with transformer_rs installed:
``python rust/fuzz/make_corpus.py``.
"""

from __future__ import annotations

import io
import json
import struct
import tempfile
from pathlib import Path

from transformer_rs.reference.model import random_state_dict, save_safetensors

HERE = Path(__file__).parent
BASE = {
    "d_model": 4,
    "n_heads": 2,
    "d_ff": 6,
    "n_encoder_layers": 1,
    "n_decoder_layers": 1,
    "src_vocab_size": 5,
    "tgt_vocab_size": 6,
    "max_len": 5,
    "activation": "relu",
    "norm_first": False,
    "layer_norm_eps": 1e-5,
    "pad_id": 0,
    "bos_id": 1,
    "eos_id": 2,
}
VARIANTS = {
    "post_ln_f32": ({}, None, True),
    "pre_ln_gelu_f16": ({"norm_first": True, "activation": "gelu"}, "F16", True),
    "bf16_no_positions": ({"n_encoder_layers": 0}, "BF16", False),
    "two_layers_f32": ({"n_encoder_layers": 2, "n_decoder_layers": 2, "n_heads": 1}, None, False),
}


def checkpoint_bytes(config: dict, float_dtype: str | None, positions: bool) -> bytes:
    state = random_state_dict(config, seed=len(json.dumps(config)))
    if not positions:
        del state["positional_encoding.pos_embedding"]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.safetensors"
        save_safetensors(path, state, float_dtype=float_dtype)
        return path.read_bytes()


def main() -> None:
    for name, (edits, float_dtype, positions) in VARIANTS.items():
        config = {**BASE, **edits}
        text = json.dumps(config).encode()
        weights = checkpoint_bytes(config, float_dtype, positions)
        seed = io.BytesIO()
        seed.write(struct.pack("<H", len(text)))
        seed.write(text)
        seed.write(weights)
        (HERE / "seeds" / "checkpoint" / name).write_bytes(seed.getvalue())
        (HERE / "seeds" / "config" / name).write_bytes(text)


if __name__ == "__main__":
    main()
