"""Bring your PyTorch model: export a Seq2SeqTransformer and run it with transformer_rs.

    python examples/export_pytorch_model.py [OUT_DIR]

Builds the tutorial model (seq2seq_transformer.py) with random weights -- use
your trained one instead -- writes OUT_DIR/config.json + OUT_DIR/model.safetensors,
loads the folder with `tr.Transformer.load` and the live module with
`tr.Transformer.from_state_dict`, and checks both against PyTorch: logits and
greedy decoding. Needs torch and safetensors besides transformer_rs.
"""

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from seq2seq_transformer import Seq2SeqTransformer

import transformer_rs as tr

CONFIG = {
    "d_model": 64,
    "n_heads": 4,
    "d_ff": 128,
    "n_encoder_layers": 2,
    "n_decoder_layers": 2,
    "src_vocab_size": 50,
    "tgt_vocab_size": 40,
    "max_len": 32,
    "activation": "relu",
    "norm_first": False,
    "layer_norm_eps": 1e-5,
    "pad_id": 0,
    "bos_id": 1,
    "eos_id": 2,
}


def export(model, config, out_dir):
    """The two files transformer_rs reads: config.json and model.safetensors."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = {name: t.detach().contiguous() for name, t in model.state_dict().items()}
    save_file(tensors, str(out_dir / "model.safetensors"))
    (out_dir / "config.json").write_text(json.dumps(config, indent=2))


def main():
    out_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp()) / "my_model"
    torch.manual_seed(0)
    torch_model = Seq2SeqTransformer(CONFIG).eval()
    export(torch_model, CONFIG, out_dir)

    from_files = tr.Transformer.load(out_dir)
    from_module = tr.Transformer.from_state_dict(torch_model.state_dict(), CONFIG)

    src = torch.tensor([[5, 17, 9, 33, 2], [8, 41, 2, 0, 0]])  # second row padded with pad_id 0
    tgt = torch.tensor([[1, 7, 12], [1, 30, 3]])
    with torch.inference_mode():
        src_pad = src == CONFIG["pad_id"]
        expected = torch_model(src, tgt, src_pad, None).numpy()
        greedy = torch_model.greedy(src, src_pad, 10, CONFIG["bos_id"], CONFIG["eos_id"])
    for name, model in (("load", from_files), ("from_state_dict", from_module)):
        logits = model.forward(src.numpy(), tgt.numpy())
        print(f"{name}: max |logits - torch| = {np.abs(logits - expected).max():.2e}")
        assert np.allclose(logits, expected, atol=1e-4)
    # transformer_rs returns only the new tokens, up to and including eos.
    eos, torch_tokens = CONFIG["eos_id"], []
    for row in greedy[:, 1:].tolist():
        torch_tokens.append(row[: row.index(eos) + 1] if eos in row else row)
    ours = from_files.generate(src.numpy(), max_new_tokens=10)
    print(f"greedy: transformer_rs {ours}, torch {torch_tokens}")
    assert [list(map(int, t)) for t in ours] == torch_tokens
    print(f"wrote {out_dir}; transformer_rs and PyTorch agree")


if __name__ == "__main__":
    main()
