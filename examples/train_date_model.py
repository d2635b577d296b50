"""Train the date-normalisation model that ships inside transformer_rs.

    /path/to/torch-venv/bin/python examples/train_date_model.py

Trains the PyTorch tutorial Seq2SeqTransformer (seq2seq_transformer.py) on the
synthetic task in transformer_rs/demo_task.py, stops once greedy decoding is
exactly right on enough of the held-out split, and writes `config.json`
(checkpoint keys, plus the vocabularies as extra keys) and `model.safetensors`
into python/transformer_rs/data/date_model/. Needs torch and safetensors; a
few minutes on 2 CPU cores.

The bundled checkpoint came from `--threads 1` with the defaults (seed 0): it
stopped after 600 steps of 128 examples at 99.85% held-out exact match (2,000
examples), 99.86% on a further 5,000.
"""

import argparse
import importlib.util
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path

# On a busy machine spinning OpenMP workers burn the cores they wait for; sleep instead.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from seq2seq_transformer import Seq2SeqTransformer  # noqa: E402
from torch import nn  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "python" / "transformer_rs"


def load_task():
    # The task module is pure Python; load it by path so training needs neither the
    # compiled transformer_rs engine nor an installed package.
    spec = importlib.util.spec_from_file_location("demo_task", PACKAGE / "demo_task.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["demo_task"] = module
    spec.loader.exec_module(module)
    return module


task = load_task()

CONFIG = {
    "d_model": 96,
    "n_heads": 4,
    "d_ff": 256,
    "n_encoder_layers": 2,
    "n_decoder_layers": 2,
    "src_vocab_size": len(task.SRC_VOCAB),
    "tgt_vocab_size": len(task.TGT_VOCAB),
    "max_len": 64,
    "activation": "relu",
    "norm_first": False,
    "layer_norm_eps": 1e-5,
    "pad_id": task.PAD_ID,
    "bos_id": task.BOS_ID,
    "eos_id": task.EOS_ID,
}


def pad_batch(rows):
    """List of id lists -> (`ids [B, L]` padded with pad_id, `pad [B, L]` True at padding)."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), task.PAD_ID, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
    return ids, ids == task.PAD_ID


def make_batch(examples):
    src, src_pad = pad_batch([task.SRC_VOCAB.encode(e.source) for e in examples])
    tgt, tgt_pad = pad_batch([[task.BOS_ID] + task.TGT_VOCAB.encode(e.target) for e in examples])
    return src, src_pad, tgt, tgt_pad


def exact_match(model, examples, batch_size=500):
    """Fraction of `examples` whose greedy output is exactly the target."""
    model.eval()
    right = 0
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        src, src_pad, _, _ = make_batch(chunk)
        ys = model.greedy(src, src_pad, 16, task.BOS_ID, task.EOS_ID)
        right += sum(task.TGT_VOCAB.decode(y[1:]) == e.target for y, e in zip(ys, chunk))
    model.train()
    return right / len(examples)


def save(model, out_dir, dtype):
    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to(dtype).contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(out_dir / "model.safetensors"))
    config = dict(CONFIG, src_vocab=task.SRC_VOCAB.chars, tgt_vocab=task.TGT_VOCAB.chars)
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")


def main():
    # nn.Transformer warns that the bool padding mask and the float causal mask differ in type.
    warnings.filterwarnings("ignore", message="Support for mismatched key_padding_mask")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=PACKAGE / "data" / "date_model")
    ap.add_argument("--steps", type=int, default=2000, help="maximum optimiser steps")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--eval-every", type=int, default=200)
    ap.add_argument("--target", type=float, default=0.998, help="held-out exact match to stop at")
    ap.add_argument("--float16", action="store_true", help="store weights as float16")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = Seq2SeqTransformer(CONFIG).train()
    # As in the PyTorch tutorial: Xavier-uniform matrices. nn.Embedding's default N(0, 1),
    # scaled by sqrt(d_model), would drown the positional encoding and make copying digits
    # by position very slow to learn.
    for p in model.parameters():
        if p.dim() > 1:
            nn.init.xavier_uniform_(p)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    warmup = 150

    def lr_at(step):
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / (args.steps - warmup))) + 0.01

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    loss_fn = nn.CrossEntropyLoss(ignore_index=task.PAD_ID)
    held_out = task.sample(2000, seed=10_000, split="test")
    t0 = time.time()
    for step in range(1, args.steps + 1):
        # Fresh training examples every step: seeds 1.. are the training stream.
        src, src_pad, tgt, tgt_pad = make_batch(task.sample(args.batch_size, seed=step))
        logits = model(src, tgt[:, :-1], src_pad, tgt_pad[:, :-1])
        loss = loss_fn(logits.reshape(-1, logits.size(-1)), tgt[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 50 == 0:
            print(f"step {step} loss {loss.item():.4f} {time.time() - t0:.0f}s", flush=True)
        if step % args.eval_every == 0 or step == args.steps:
            acc = exact_match(model, held_out)
            print(f"step {step} held-out exact match {acc:.4f}", flush=True)
            save(model, args.out, torch.float16 if args.float16 else torch.float32)
            if acc >= args.target:
                break

    final = task.sample(5000, seed=20_000, split="test")
    dtype = torch.float16 if args.float16 else torch.float32
    model.load_state_dict({k: v.to(dtype).float() for k, v in model.state_dict().items()})
    print(f"final held-out exact match (5000, stored weights): {exact_match(model, final):.4f}")
    save(model, args.out, dtype)


if __name__ == "__main__":
    main()
