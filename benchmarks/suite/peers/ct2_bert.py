"""CTranslate2 Encoder holding a BERT encoder, built from the safetensors
weights with ``ctranslate2.specs`` as its own Transformers converter lays them
out (post-LN, embedding LayerNorm, word + token-type embeddings added)."""

from __future__ import annotations

import os

import numpy as np


def build(folder, directory, threads):
    """ctranslate2.Encoder; forward_batch(list of token-id lists) skips padding."""
    import ctranslate2
    from ctranslate2 import specs
    from ctranslate2.specs import common_spec

    cfg, w = folder.config, folder.state
    assert cfg["position_embedding_type"] == "absolute"
    encoder = specs.TransformerEncoderSpec(
        cfg["num_hidden_layers"],
        cfg["num_attention_heads"],
        pre_norm=False,
        activation=common_spec.Activation.GELU,
        layernorm_embedding=True,
        num_source_embeddings=2,
        embeddings_merge=common_spec.EmbeddingsMerge.ADD,
    )
    encoder.scale_embeddings = False
    encoder.embeddings[0].weight = w["embeddings.word_embeddings.weight"]
    encoder.embeddings[1].weight = w["embeddings.token_type_embeddings.weight"]
    encoder.position_encodings.encodings = w["embeddings.position_embeddings.weight"]

    def linear(spec, name):
        spec.weight, spec.bias = w[f"{name}.weight"], w[f"{name}.bias"]

    def norm(spec, name):
        spec.gamma, spec.beta = w[f"{name}.weight"], w[f"{name}.bias"]

    norm(encoder.layernorm_embedding, "embeddings.LayerNorm")
    for i, layer in enumerate(encoder.layer):
        p = f"encoder.layer.{i}"
        qkv = [f"{p}.attention.self.{part}" for part in ("query", "key", "value")]
        fused = layer.self_attention.linear[0]
        fused.weight = np.concatenate([w[f"{name}.weight"] for name in qkv])
        fused.bias = np.concatenate([w[f"{name}.bias"] for name in qkv])
        linear(layer.self_attention.linear[1], f"{p}.attention.output.dense")
        norm(layer.self_attention.layer_norm, f"{p}.attention.output.LayerNorm")
        linear(layer.ffn.linear_0, f"{p}.intermediate.dense")
        linear(layer.ffn.linear_1, f"{p}.output.dense")
        norm(layer.ffn.layer_norm, f"{p}.output.LayerNorm")

    spec = specs.TransformerEncoderModelSpec(encoder)
    spec.config.layer_norm_epsilon = cfg["layer_norm_eps"]
    spec.config.unk_token = "[UNK]"
    vocab = folder.tokenizer.get_vocab()
    tokens = sorted(vocab, key=vocab.get)
    tokens += [f"<extra_id_{i}>" for i in range(cfg["vocab_size"] - len(tokens))]
    spec.register_vocabulary(tokens)
    spec.validate()
    spec.optimize()
    path = os.path.join(directory, "ct2_bert")
    os.makedirs(path)
    spec.save(path)
    return ctranslate2.Encoder(path, device="cpu", compute_type="float32", intra_threads=threads)
