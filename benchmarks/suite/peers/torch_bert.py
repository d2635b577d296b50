"""sentence-transformers (PyTorch) on the same folder, on the CPU."""

from __future__ import annotations


def build(folder):
    """A function list of sentences -> normalised embeddings [N, H] float32."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(folder.path, device="cpu")
    return lambda sentences: model.encode(
        sentences, batch_size=32, normalize_embeddings=True, convert_to_numpy=True
    )
