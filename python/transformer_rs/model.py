"""The encoder-decoder Transformer: ``tr.Transformer`` and ``tr.TransformerConfig``.

Checkpoints are folders holding ``config.json`` and ``model.safetensors`` named
like the PyTorch tutorial's ``Seq2SeqTransformer`` (see CHECKPOINT.md). This
module validates and converts arguments; all compute runs in Rust with the GIL
released, so one model can serve many Python threads at once.
"""

from __future__ import annotations

import dataclasses
import json
import operator
import os
from collections.abc import Mapping
from typing import Any, Union

import numpy as np

from . import _native, _pickling

__all__ = ["Transformer", "TransformerConfig"]

Hypotheses = list[tuple[list[int], float]]


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
    """Hyper-parameters of a :class:`Transformer`, with the ``config.json`` keys
    as attributes (see CHECKPOINT.md for their meaning)."""

    d_model: int
    n_heads: int
    d_ff: int
    n_encoder_layers: int
    n_decoder_layers: int
    src_vocab_size: int
    tgt_vocab_size: int
    max_len: int
    activation: str
    norm_first: bool
    layer_norm_eps: float
    pad_id: int
    bos_id: int
    eos_id: int

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> TransformerConfig:
        """Builds a config from a ``config.json``-style mapping; keys that are
        not config keys are ignored, a missing key is a ``ValueError``."""
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [n for n in names if n not in config]
        if missing:
            raise ValueError(f"config: missing key(s) {', '.join(missing)}")
        return cls(**{n: config[n] for n in names})

    def to_dict(self) -> dict[str, Any]:
        """The ``config.json`` mapping."""
        return dataclasses.asdict(self)


ConfigLike = Union[TransformerConfig, Mapping[str, Any]]


class Transformer:
    """Encoder-decoder Transformer ("Attention Is All You Need") on the CPU.

    Immutable after loading and safe to share between threads. Build one with
    :meth:`load` or :meth:`from_state_dict`.
    """

    __slots__ = ("_config", "_native", "_origin")

    def __init__(self, native: _native.NativeTransformer) -> None:
        """Wraps a loaded native model; use :meth:`load` or :meth:`from_state_dict`."""
        if not isinstance(native, _native.NativeTransformer):
            raise TypeError("use Transformer.load(path) or Transformer.from_state_dict(...)")
        self._native = native
        self._config = TransformerConfig.from_dict(json.loads(native.config_json))
        self._origin: _pickling.FolderOrigin | None = None

    # ----------------------------------------------------------------- loading

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Transformer:
        """Loads a checkpoint folder holding ``config.json`` and
        ``model.safetensors``; float32 weights are memory-mapped, float16 and
        bfloat16 are widened.

        Raises ``FileNotFoundError`` if the folder or a file is missing and
        ``tr.CheckpointError`` (naming the tensor or key) for a malformed
        checkpoint or one whose config contradicts its weights.
        """
        folder = _folder(path)
        origin = _pickling.FolderOrigin.of(folder, _CHECKPOINT_FILES)
        model = cls(_native.NativeTransformer.load(folder))
        model._origin = origin
        return model

    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, Any], config: ConfigLike) -> Transformer:
        """Builds a model from a mapping of CHECKPOINT.md names to arrays
        (NumPy arrays or torch tensors of any float dtype; extra entries are
        ignored) and ``config`` (a dict or :class:`TransformerConfig`).

        The weights are copied, so later changes to ``state_dict`` do not
        affect the model. Raises ``tr.CheckpointError`` for missing or
        mis-shaped tensors and an invalid config.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(
                "state_dict: expected a mapping of names to arrays, "
                f"got {type(state_dict).__name__}"
            )
        if isinstance(config, TransformerConfig):
            config_dict = config.to_dict()
        elif isinstance(config, Mapping):
            config_dict = dict(config)
        else:
            raise TypeError(
                f"config: expected a dict or TransformerConfig, got {type(config).__name__}"
            )
        _check_finite_config(config_dict)
        try:
            config_json = json.dumps(config_dict, default=_json_scalar, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise TypeError(f"config: not JSON-serialisable ({e})") from None
        names = [str(k) for k in state_dict]
        arrays = [_weight_array(name, state_dict[key]) for name, key in zip(names, state_dict)]
        return cls(_native.NativeTransformer.from_tensors(config_json, names, arrays))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Writes ``config.json`` and ``model.safetensors`` (float32, CHECKPOINT.md
        names) into the folder ``path``, creating it if needed."""
        self._native.save(_folder(path))

    @property
    def config(self) -> TransformerConfig:
        """The model's :class:`TransformerConfig`."""
        return self._config

    def __reduce__(self):
        """Pickles as the checkpoint folder's path when loaded from one that is
        unchanged since (the unpickling process maps it again), else as the
        config and the float32 weights."""
        if self._origin is not None and self._origin.unchanged():
            return self._origin.reduce(type(self))
        weights = _pickling.saved_files(self)["model.safetensors"]
        return (_from_pickled_weights, (type(self), self._config.to_dict(), weights))

    def __repr__(self) -> str:
        c = self._config
        return (
            f"Transformer(d_model={c.d_model}, n_heads={c.n_heads}, "
            f"layers={c.n_encoder_layers}+{c.n_decoder_layers}, "
            f"vocab={c.src_vocab_size}->{c.tgt_vocab_size})"
        )

    # ----------------------------------------------------------------- compute

    def encode(self, src) -> np.ndarray:
        """Runs the encoder: ``memory [B, S, d_model]`` float32.

        ``src`` is an integer array ``[B, S]`` padded with ``pad_id``, or a list
        of token-id lists of any lengths (padded here with ``pad_id``).
        Positions holding ``pad_id`` are padding: no query attends to them.
        """
        return self._native.encode(self._tokens(src, "src"))

    def decode(self, tgt, memory, memory_key_padding_mask=None) -> np.ndarray:
        """Runs the decoder (causal) over ``memory``: logits
        ``[B, T, tgt_vocab_size]`` float32.

        ``tgt`` is an integer array ``[B, T]`` (or a list of lists, padded with
        ``pad_id``), ``memory`` ``[B, S, d_model]`` any real float array,
        ``memory_key_padding_mask`` ``[B, S]`` bool with ``True`` = padding.
        """
        tgt = self._tokens(tgt, "tgt")
        memory = _float_array(memory, "memory")
        if memory.ndim != 3:
            raise ValueError(
                f"memory: expected a 3-D array [B, S, d_model], got shape {memory.shape}"
            )
        if memory.shape[0] != tgt.shape[0]:
            raise ValueError(
                f"memory: batch size {memory.shape[0]} does not match tgt's {tgt.shape[0]}"
            )
        if memory.shape[2] != self._config.d_model:
            raise ValueError(
                f"memory: expected width d_model = {self._config.d_model}, got shape {memory.shape}"
            )
        mask = None
        if memory_key_padding_mask is not None:
            mask = _bool_array(memory_key_padding_mask, "memory_key_padding_mask")
            if mask.shape != memory.shape[:2]:
                raise ValueError(
                    f"memory_key_padding_mask: expected shape {memory.shape[:2]} "
                    f"([B, S] of memory), got {mask.shape}"
                )
        return self._native.decode(tgt, memory, mask)

    def forward(self, src, tgt) -> np.ndarray:
        """Encodes ``src`` and decodes ``tgt`` with the source padding mask:
        logits ``[B, T, tgt_vocab_size]`` float32."""
        src = self._tokens(src, "src")
        tgt = self._tokens(tgt, "tgt")
        if src.shape[0] != tgt.shape[0]:
            raise ValueError(f"tgt: batch size {tgt.shape[0]} does not match src's {src.shape[0]}")
        return self._native.forward(src, tgt)

    def generate(
        self,
        src,
        max_new_tokens: int = 64,
        beam_size: int = 1,
        length_penalty: float = 1.0,
        num_hypotheses: int = 1,
        return_scores: bool = False,
    ) -> list[list[int]] | list[Hypotheses]:
        """Generates target tokens for each source, one cached decoder step per
        new token: greedy when ``beam_size == 1``, beam search otherwise.

        Returns, per source, the new token ids (``bos_id`` not included,
        ``eos_id`` included when produced). With ``num_hypotheses > 1`` or
        ``return_scores=True``, each entry is instead a list of
        ``(tokens, score)`` pairs, best first, with score = summed
        log-probability / ``len(tokens) ** length_penalty``.
        """
        src = self._tokens(src, "src")
        max_new_tokens = _int(max_new_tokens, "max_new_tokens")
        beam_size = _int(beam_size, "beam_size")
        num_hypotheses = _int(num_hypotheses, "num_hypotheses")
        if max_new_tokens < 0:
            raise ValueError(
                f"max_new_tokens: expected a non-negative integer, got {max_new_tokens}"
            )
        if max_new_tokens > self._config.max_len:
            raise ValueError(
                f"max_new_tokens: at most max_len = {self._config.max_len} (the positional table), "
                f"got {max_new_tokens}"
            )
        if beam_size < 1:
            raise ValueError(f"beam_size: expected an integer >= 1, got {beam_size}")
        if not 1 <= num_hypotheses <= beam_size:
            raise ValueError(
                f"num_hypotheses: expected between 1 and beam_size ({beam_size}), "
                f"got {num_hypotheses}"
            )
        if isinstance(length_penalty, (bool, np.bool_)) or not isinstance(
            length_penalty, (int, float, np.integer, np.floating)
        ):
            raise TypeError(
                f"length_penalty: expected a real number, got {type(length_penalty).__name__}"
            )
        if not np.isfinite(length_penalty):
            raise ValueError(f"length_penalty: expected a finite number, got {length_penalty}")
        if not isinstance(return_scores, (bool, np.bool_)):
            raise TypeError(f"return_scores: expected a bool, got {type(return_scores).__name__}")
        scores = num_hypotheses > 1 or bool(return_scores)
        hyps = self._native.generate(
            src, max_new_tokens, beam_size, float(length_penalty), num_hypotheses, scores
        )
        if scores:
            return [[(list(tokens), float(score)) for tokens, score in per_src] for per_src in hyps]
        return [list(per_src[0][0]) if per_src else [] for per_src in hyps]

    # ----------------------------------------------------------------- helpers

    def _tokens(self, ids, name: str) -> np.ndarray:
        """``ids`` as a C-contiguous int64 ``[B, L]`` array; ragged lists of
        lists are padded at the end with ``pad_id``. Range checks (ids in the
        vocabulary, length <= max_len) happen in Rust and name ``name``."""
        if isinstance(ids, (list, tuple)) and len(ids) == 0:
            return np.zeros((0, 0), dtype=np.int64)
        is_list = isinstance(ids, (list, tuple))
        if is_list and any(isinstance(row, (list, tuple, np.ndarray)) for row in ids):
            rows = [_token_row(row, name, i) for i, row in enumerate(ids)]
            width = max((len(r) for r in rows), default=0)
            out = np.full((len(rows), width), self._config.pad_id, dtype=np.int64)
            for i, r in enumerate(rows):
                out[i, : len(r)] = r
            return out
        arr = _as_array(ids, name)
        _check_integer(arr, name)
        if arr.ndim != 2:
            raise ValueError(
                f"{name}: expected a 2-D array [B, L] of token ids, got shape {arr.shape}"
            )
        return _to_int64(arr, name)


_CHECKPOINT_FILES = ("config.json", "model.safetensors")


def _from_pickled_weights(cls: type[Transformer], config: dict, weights: bytes) -> Transformer:
    """Unpickles a model pickled by value (``weights``: safetensors bytes)."""
    return cls.from_state_dict(_pickling.read_safetensors(weights), config)


def _token_row(row, name: str, i: int) -> np.ndarray:
    """Row ``i`` of a ragged token list as a 1-D int64 array."""
    arr = _as_array(row, f"{name}[{i}]")
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    _check_integer(arr, f"{name}[{i}]")
    if arr.ndim != 1:
        raise ValueError(f"{name}[{i}]: expected a list of token ids, got shape {arr.shape}")
    return _to_int64(arr, f"{name}[{i}]")


def _folder(path) -> str:
    """A checkpoint folder argument as a ``str`` path (``bytes`` paths are
    decoded as ``os`` does); TypeError/ValueError name ``path``."""
    try:
        folder = os.fsdecode(os.fspath(path))
    except TypeError:
        raise TypeError(
            f"path: expected a str or os.PathLike folder, got {type(path).__name__}"
        ) from None
    if folder == "":
        raise ValueError("path: expected a folder, got an empty path")
    if "\0" in folder:
        raise ValueError("path: embedded null character")
    return folder


def _as_array(x, name: str) -> np.ndarray:
    """``np.asarray(x)``, with NumPy's complaint about ragged or unconvertible
    input re-raised naming ``name``."""
    try:
        return np.asarray(x)
    except (TypeError, ValueError, OverflowError) as e:
        kind = TypeError if isinstance(e, TypeError) else ValueError
        raise kind(f"{name}: cannot convert to an array ({e})") from None


def _check_integer(arr: np.ndarray, name: str) -> None:
    """TypeError naming ``name`` unless ``arr`` holds (signed or unsigned) integers."""
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected integer token ids, got dtype {arr.dtype}")


def _to_int64(arr: np.ndarray, name: str) -> np.ndarray:
    """C-contiguous int64, refusing unsigned ids that int64 cannot hold."""
    if arr.dtype.kind == "u" and arr.size and arr.max() > np.iinfo(np.int64).max:
        raise ValueError(f"{name}: token id {arr.max()} is outside the vocabulary")
    return np.ascontiguousarray(arr, dtype=np.int64)


def _float_array(x, name: str) -> np.ndarray:
    """Any real array as C-contiguous float32 (TypeError for complex, object, ...)."""
    arr = _as_array(x, name)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{name}: expected a real float array, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.float32)


def _bool_array(x, name: str) -> np.ndarray:
    """A C-contiguous bool array (TypeError for any other dtype)."""
    arr = _as_array(x, name)
    if arr.dtype != np.bool_:
        raise TypeError(f"{name}: expected a bool array (True = padding), got dtype {arr.dtype}")
    return np.ascontiguousarray(arr)


def _check_finite_config(config: dict) -> None:
    """``tr.CheckpointError`` naming the key of a NaN or infinite number, which
    JSON (and so the Rust config parser) cannot represent."""
    for key, value in config.items():
        if isinstance(value, (float, np.floating)) and not np.isfinite(value):
            raise _native.CheckpointError(f"config: `{key}` must be a finite number, got {value}")


def _json_scalar(value):
    """NumPy scalars in a config dict serialise as the Python numbers they hold."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not a JSON value")


def _int(value, name: str) -> int:
    """``value`` as a Python int (TypeError for bools, floats and non-numbers)."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected an integer, got bool")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name}: expected an integer, got {type(value).__name__}") from None


def _weight_array(name: str, value) -> np.ndarray:
    """One state-dict entry as a C-contiguous float32 array. Torch tensors are
    detached and moved to the CPU (torch is never imported here); bfloat16,
    which NumPy lacks, goes through ``.float()``."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        value = value.detach().cpu()
        if getattr(value, "is_floating_point", lambda: False)():
            value = value.float()
        value = value.numpy()
    arr = _as_array(value, f"state_dict[{name!r}]")
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"state_dict[{name!r}]: expected a numeric array, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.float32)
