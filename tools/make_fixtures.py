"""Regenerate the golden encoder-decoder cases in tests/data with PyTorch.

Needs torch and safetensors (never run in CI). The weights come from
``build(config, seed)`` below, on the tutorial module
``examples/seq2seq_transformer.py`` (bit-identical to the stored checkpoints for
the seeds below); the inputs ``src`` / ``tgt`` are data and are taken from the
existing ``cases.npz`` when there is one, else drawn afresh. Outputs follow
tests/data/README.md.

    python tools/make_fixtures.py            # rewrite tests/data/<case>/
    python tools/make_fixtures.py --check    # compare with tests/data, write nothing
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
from seq2seq_transformer import Seq2SeqTransformer  # noqa: E402

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
GREEDY_MAX_NEW = 12
SPECIAL = {"pad_id": 0, "bos_id": 1, "eos_id": 2, "layer_norm_eps": 1e-5, "max_len": 256}

# name: (config, seed, (B, S, T))
CASES = {
    "tiny_post_ln": (
        {"d_model": 32, "n_heads": 4, "d_ff": 64, "n_encoder_layers": 2, "n_decoder_layers": 2,
         "src_vocab_size": 50, "tgt_vocab_size": 60, "activation": "relu", "norm_first": False,
         **SPECIAL},
        1,
        (3, 9, 7),
    ),
    "tiny_pre_ln_gelu": (
        {"d_model": 32, "n_heads": 2, "d_ff": 80, "n_encoder_layers": 1, "n_decoder_layers": 2,
         "src_vocab_size": 40, "tgt_vocab_size": 45, "activation": "gelu", "norm_first": True,
         **SPECIAL},
        2,
        (2, 6, 5),
    ),
}  # fmt: skip


def build(config, seed):
    """The fixture model: seeded initialisation, then LayerNorm weights and all
    biases moved away from their 1/0 defaults (so a loader that drops one
    fails the comparison) and embeddings halved."""
    torch.manual_seed(seed)
    model = Seq2SeqTransformer(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or ".norm" in name:
                p.add_(0.1 * torch.randn_like(p))
            if "embedding" in name:
                p.mul_(0.5)
    return model


def fresh_inputs(config, seed, shape):
    """src [B,S], tgt [B,T] int64 padded at the end with pad_id; row 0 full;
    tgt starts with bos_id; ordinary tokens are >= 3."""
    b, s, t = shape
    rng = np.random.default_rng(seed)
    src_len = np.concatenate([[s], rng.integers(1, s + 1, b - 1)])
    tgt_len = np.concatenate([[t], rng.integers(1, t + 1, b - 1)])
    src = rng.integers(3, config["src_vocab_size"], (b, s))
    tgt = rng.integers(3, config["tgt_vocab_size"], (b, t))
    tgt[:, 0] = config["bos_id"]
    src[np.arange(s)[None, :] >= src_len[:, None]] = config["pad_id"]
    tgt[np.arange(t)[None, :] >= tgt_len[:, None]] = config["pad_id"]
    return src, tgt


def make_case(config, seed, src, tgt):
    """(model, cases dict) computed by PyTorch for the given inputs."""
    model = build(config, seed)
    src_t, tgt_t = torch.from_numpy(src), torch.from_numpy(tgt)
    src_pad, tgt_pad = src_t == config["pad_id"], tgt_t == config["pad_id"]
    with torch.inference_mode():
        memory = model.encode(src_t, src_pad)
        logits = model.decode(tgt_t, memory, tgt_pad, src_pad)
        greedy = model.greedy(src_t, src_pad, GREEDY_MAX_NEW, config["bos_id"], config["eos_id"])
    cases = {
        "src": src,
        "src_pad": src_pad.numpy(),
        "tgt": tgt,
        "tgt_pad": tgt_pad.numpy(),
        "memory": memory.numpy(),
        "logits": logits.numpy(),
        "greedy": greedy.numpy(),
        "greedy_max_new": np.int64(GREEDY_MAX_NEW),
    }
    return model, cases


def check(name, config, model, cases):
    """Compare with the stored case; returns the largest output difference."""
    folder = DATA / name
    assert json.loads((folder / "config.json").read_text()) == config, "config.json differs"
    stored = load_file(folder / "model.safetensors")
    state = model.state_dict()
    assert set(stored) == set(state), "tensor names differ"
    for key, value in stored.items():
        assert torch.equal(value, state[key]), f"{key} differs"
    with np.load(folder / "cases.npz") as old:
        for key in ("src", "src_pad", "tgt", "tgt_pad", "greedy", "greedy_max_new"):
            np.testing.assert_array_equal(cases[key], old[key], err_msg=key)
        worst = 0.0
        for key, keep in (("memory", ~old["src_pad"]), ("logits", ~old["tgt_pad"])):
            worst = max(worst, float(np.abs(cases[key][keep] - old[key][keep]).max()))
    return worst


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with tests/data only")
    args = parser.parse_args()
    for name, (config, seed, shape) in CASES.items():
        folder = DATA / name
        if (folder / "cases.npz").exists():
            with np.load(folder / "cases.npz") as old:
                src, tgt = old["src"], old["tgt"]
        else:
            src, tgt = fresh_inputs(config, seed, shape)
        model, cases = make_case(config, seed, src, tgt)
        if args.check:
            worst = check(name, config, model, cases)
            print(
                f"{name}: weights identical, greedy identical, max |memory/logits diff| {worst:.2e}"
            )
            assert worst < 1e-5, "outputs moved"
            continue
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        save_file(state, folder / "model.safetensors")
        np.savez(folder / "cases.npz", **cases)
        print(f"wrote {folder}")


if __name__ == "__main__":
    main()
