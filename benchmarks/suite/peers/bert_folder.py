"""A sentence-transformers BERT folder (all-MiniLM-L6-v2) read for the peers:
config, weights, tokenizer and the mean pooling + L2 normalisation that turn
``last_hidden_state`` into sentence embeddings. The peers that compute only the
encoder (ONNX Runtime, CTranslate2) run this same tokenizer and pooling, so
every engine goes from strings to embeddings.
Shape key: B batch, T tokens (padded to the longest of the batch), H hidden."""

from __future__ import annotations

import json
import os

import numpy as np


class BertFolder:
    """config: config.json; state: float weights without the ``bert.`` prefix."""

    def __init__(self, path):
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        self.path = str(path)
        with open(os.path.join(path, "config.json")) as f:
            self.config = json.load(f)
        with open(os.path.join(path, "1_Pooling", "config.json")) as f:
            pooling = json.load(f)
        if not pooling.get("pooling_mode_mean_tokens"):
            raise ValueError(f"{path}: the peers implement mean pooling only")
        with open(os.path.join(path, "sentence_bert_config.json")) as f:
            max_seq_length = json.load(f)["max_seq_length"]
        self.state = {
            name.removeprefix("bert."): value
            for name, value in load_file(os.path.join(path, "model.safetensors")).items()
            if value.dtype.kind == "f"
        }
        self.tokenizer = Tokenizer.from_file(os.path.join(path, "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_seq_length)

    def token_ids(self, sentences):
        """One list of token ids per sentence ([CLS] ... [SEP], truncated)."""
        return [e.ids for e in self.tokenizer.encode_batch(list(sentences))]

    def padded(self, sentences):
        """(ids [B, T] int64, attention_mask [B, T] int64, 1 = token, 0 = padding)."""
        rows = self.token_ids(sentences)
        width = max(len(r) for r in rows)
        ids = np.zeros((len(rows), width), np.int64)
        mask = np.zeros((len(rows), width), np.int64)
        for i, r in enumerate(rows):
            ids[i, : len(r)], mask[i, : len(r)] = r, 1
        return ids, mask


def mean_pool_normalize(hidden, mask):
    """hidden [B, T, H], mask [B, T] -> L2-normalised mean of unmasked rows [B, H]."""
    mask = np.asarray(mask, np.float32)[:, :, None]
    mean = (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
    return mean / np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)
