"""transformer_rs: fast, exact CPU inference for encoder-decoder Transformers
and pretrained BERT sentence encoders.

Rust kernels (SIMD, multithreaded) behind a NumPy API. See the README for a tour.
"""

from . import ops, reference
from ._native import (
    CheckpointError,
    __version__,
    get_num_threads,
    set_num_threads,
    simd_level,
)
from .bert import BertModel, SentenceEncoder
from .model import Transformer, TransformerConfig

__all__ = [
    "BertModel",
    "CheckpointError",
    "SentenceEncoder",
    "Transformer",
    "TransformerConfig",
    "__version__",
    "get_num_threads",
    "ops",
    "reference",
    "set_num_threads",
    "simd_level",
]
