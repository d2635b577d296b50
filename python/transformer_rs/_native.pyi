"""Type stubs of the compiled module transformer_rs._native (private)."""

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__version__: str

class CheckpointError(ValueError): ...

def set_num_threads(n: int) -> None: ...
def get_num_threads() -> int: ...
def simd_level() -> str: ...
def available_simd_levels() -> list[str]: ...
def force_simd_level(level: str | None = None) -> None: ...

# --- ops: C-contiguous float32 arrays in (ops.py converts and validates with
# friendly messages; these re-check shapes and raise ValueError), new arrays out.

F32 = npt.NDArray[np.float32]

def relu(x: F32) -> F32: ...
def gelu(x: F32) -> F32: ...
def matmul(a: object, b: object) -> F32 | None:
    """a [..., M, K] @ b [..., K, N] -> [..., M, N], batch axes broadcast, for
    C-contiguous float32 arrays of at least 2-D; None for anything else."""

def linear(x: F32, weight: F32, bias: F32 | None = None) -> F32:
    """x [..., in] @ weight[out, in].T + bias[out] -> [..., out]."""

def softmax(x: F32) -> F32:
    """Softmax over the last axis."""

def log_softmax(x: F32) -> F32:
    """Log-softmax over the last axis."""

def layer_norm(x: F32, weight: F32, bias: F32, eps: float) -> F32:
    """Layer norm of x [..., E] over the last axis; weight, bias [E]."""

def scaled_dot_product_attention(
    q: F32,
    k: F32,
    v: F32,
    attn_mask: F32 | None = None,
    is_causal: bool = False,
    scale: float | None = None,
) -> F32:
    """q [..., Tq, D], k [..., Tk, D], v [..., Tk, Dv] -> [..., Tq, Dv], batch axes broadcast.
    attn_mask: ADDITIVE float mask [..., Tq or 1, Tk] broadcasting to the output batch."""

def multi_head_attention(
    query: F32,
    key: F32,
    value: F32,
    num_heads: int,
    in_proj_weight: F32,
    in_proj_bias: F32 | None,
    out_proj_weight: F32,
    out_proj_bias: F32 | None,
    attn_mask: F32 | None = None,
    is_causal: bool = False,
) -> F32:
    """query [B, Tq, E], key/value [B, Tk, E] -> [B, Tq, E] (torch packed weights).
    attn_mask: ONE additive float mask [B or 1, H or 1, Tq or 1, Tk] (ops.py merges
    key_padding_mask and attn_mask into it). Passing the same buffer as query, key
    and value (or key and value) fuses their projections."""

# --- model: model.py validates and converts first (int64 / float32 / bool, C order).

I64 = npt.NDArray[np.int64]

class NativeTransformer:
    """Immutable encoder-decoder model; safe to share between threads."""
    @staticmethod
    def load(path: str) -> NativeTransformer: ...
    @staticmethod
    def from_tensors(
        config_json: str, names: list[str], arrays: list[F32]
    ) -> NativeTransformer: ...
    def save(self, path: str) -> None: ...
    @property
    def config_json(self) -> str: ...
    def encode(self, src: I64) -> F32: ...
    def decode(
        self, tgt: I64, memory: F32, memory_key_padding_mask: npt.NDArray[np.bool_] | None = None
    ) -> F32: ...
    def forward(self, src: I64, tgt: I64) -> F32: ...
    def generate(
        self,
        src: I64,
        max_new_tokens: int,
        beam_size: int,
        length_penalty: float,
        num_hypotheses: int,
        return_scores: bool,
    ) -> list[list[tuple[list[int], float]]]: ...

# --- BERT: bert.py validates and converts first (int64 ids, bool padding mask, C order).

Bools = npt.NDArray[np.bool_]

class NativeBertModel:
    """Immutable BERT encoder; safe to share between threads."""
    @staticmethod
    def load(path: str) -> NativeBertModel: ...
    @property
    def config_json(self) -> str: ...
    def forward(
        self,
        input_ids: I64,
        key_padding_mask: Bools | None = None,
        token_type_ids: I64 | None = None,
    ) -> F32:
        """last_hidden_state [B, T, E]; key_padding_mask True = padding."""
    def encode(
        self,
        input_ids: I64,
        lengths: I64,
        token_type_ids: I64 | None,
        pooling: Sequence[str],
        normalize: bool,
    ) -> F32:
        """Sentence embeddings [B, P·E] of B sentences packed back to back:
        input_ids, token_type_ids [K]; lengths [B] (token counts summing to K);
        pooling modes from "cls", "max", "mean", "mean_sqrt_len"."""
