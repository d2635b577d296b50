"""Pretrained BERT-family encoders: ``tr.BertModel`` and ``tr.SentenceEncoder``.

``BertModel`` runs a Hugging Face BERT folder (``config.json`` +
``model.safetensors``) on the engine's shared encoder blocks.
``SentenceEncoder`` adds what a sentence-transformers folder describes around
it: the tokenizer (``tokenizer.json``, run by Hugging Face's ``tokenizers``
package), truncation to ``max_seq_length``, pooling and normalization, so that
``encode`` returns what ``SentenceTransformer.encode`` returns.

Shape key: N sentences, B batch, T tokens, E hidden size, K tokens of all
sentences (unpadded).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import _native, _pickling
from .model import _check_integer, _int, _to_int64

__all__ = ["BertConfig", "BertModel", "SentenceEncoder"]

CheckpointError = _native.CheckpointError

# sentence-transformers module types this package runs, by the suffix of their
# `type` in modules.json.
_TRANSFORMER, _POOLING, _NORMALIZE = "Transformer", "Pooling", "Normalize"

# Pooling modes of a sentence-transformers Pooling config, in the order
# sentence-transformers concatenates them when several are on.
_POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len")
_POOLING_KEYS = {
    "cls": "pooling_mode_cls_token",
    "max": "pooling_mode_max_tokens",
    "mean": "pooling_mode_mean_tokens",
    "mean_sqrt_len": "pooling_mode_mean_sqrt_len_tokens",
}
_UNSUPPORTED_POOLING_KEYS = ("pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken")


@dataclasses.dataclass(frozen=True)
class BertConfig:
    """The ``config.json`` values a :class:`BertModel` uses (absent optional
    keys take ``transformers.BertConfig``'s defaults)."""

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    hidden_act: str
    max_position_embeddings: int
    type_vocab_size: int
    layer_norm_eps: float


class BertModel:
    """A pretrained BERT encoder (Hugging Face ``BertModel``) on the CPU.

    Immutable after loading and safe to share between threads. Build one
    with :meth:`load`.
    """

    __slots__ = ("_config", "_native", "_origin")

    def __init__(self, native: _native.NativeBertModel) -> None:
        """Wraps a loaded native model; use :meth:`load`."""
        if not isinstance(native, _native.NativeBertModel):
            raise TypeError("use BertModel.load(path)")
        self._native = native
        self._config = BertConfig(**json.loads(native.config_json))
        self._origin: _pickling.FolderOrigin | None = None

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> BertModel:
        """Loads a Hugging Face BERT folder: ``config.json`` and
        ``model.safetensors`` (float32 weights memory-mapped; float16 and
        bfloat16 widened). Tensor names may carry the ``bert.`` prefix of
        task models; other tensors (pooler, heads, ``position_ids``) are
        ignored.

        Raises ``FileNotFoundError`` for a missing folder or file and
        ``tr.CheckpointError`` for a config that is not BERT, an unsupported
        ``hidden_act`` (only ``"gelu"``, the exact erf form, and ``"relu"``)
        or ``position_embedding_type`` (only ``"absolute"``), and for weights
        that do not fit the config (naming the tensor and key).
        """
        origin = _pickling.FolderOrigin.of(path, ("config.json", "model.safetensors"))
        model = cls(_native.NativeBertModel.load(os.fspath(path)))
        model._origin = origin
        return model

    @property
    def config(self) -> BertConfig:
        """The model's :class:`BertConfig`."""
        return self._config

    def __reduce__(self):
        """Pickles as the folder's path (see ``_pickling``); the unpickling
        process loads it again."""
        return _pickling.reduce_by_path(self, self._origin)

    def __repr__(self) -> str:
        c = self._config
        return (
            f"BertModel(hidden_size={c.hidden_size}, layers={c.num_hidden_layers}, "
            f"heads={c.num_attention_heads}, vocab={c.vocab_size})"
        )

    def forward(self, input_ids, attention_mask=None, token_type_ids=None) -> np.ndarray:
        """``last_hidden_state``: float32 ``[B, T, hidden_size]``.

        ``input_ids`` is an integer array ``[B, T]`` (T at most
        ``max_position_embeddings``); ``attention_mask`` ``[B, T]`` holds 1
        for tokens and 0 for padding (any real or bool dtype; no query attends to a
        padding key);
        ``token_type_ids`` ``[B, T]`` defaults to zeros. Positions are
        0..T-1 in every row, as in ``transformers`` with right padding.
        Valid positions equal ``transformers``'; only they are computed, and
        padded positions hold zeros.
        """
        ids = _id_array(input_ids, "input_ids")
        padding = None
        if attention_mask is not None:
            mask = np.asarray(attention_mask)
            if mask.dtype.kind not in "biuf":
                raise TypeError(
                    f"attention_mask: expected an array of 1 (token) and 0 (padding), "
                    f"got dtype {mask.dtype}"
                )
            _same_shape(mask, ids, "attention_mask")
            if mask.dtype.kind != "b" and not np.isin(mask, (0, 1)).all():
                raise ValueError("attention_mask: expected only 1 (token) and 0 (padding)")
            padding = np.ascontiguousarray(mask == 0)
        types = None
        if token_type_ids is not None:
            types = _id_array(token_type_ids, "token_type_ids")
            _same_shape(types, ids, "token_type_ids")
        return self._native.forward(ids, padding, types)


def _id_array(x, name: str) -> np.ndarray:
    """A C-contiguous int64 ``[B, T]`` array of ids (TypeError for non-integers)."""
    arr = np.asarray(x)
    _check_integer(arr, name)
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array [B, T], got shape {arr.shape}")
    return _to_int64(arr, name)


def _same_shape(arr: np.ndarray, ids: np.ndarray, name: str) -> None:
    if arr.shape != ids.shape:
        raise ValueError(f"{name}: expected shape {ids.shape} (that of input_ids), got {arr.shape}")


# ---------------------------------------------------------------------------------------------


class SentenceEncoder:
    """A sentence-transformers model folder (e.g. all-MiniLM-L6-v2): BERT,
    then pooling, then (optionally) normalization. Build one with
    :meth:`load`; :meth:`encode` turns sentences into embeddings.

    Supported modules (``modules.json``): ``Transformer`` (a BERT model),
    ``Pooling`` (CLS, mean, max or mean-sqrt-len tokens, or several
    concatenated) and ``Normalize``.
    """

    __slots__ = (
        "_bert",
        "_do_lower_case",
        "_max_seq_length",
        "_normalize",
        "_origin",
        "_pooling",
        "_tokenizer",
    )

    def __init__(self) -> None:
        raise TypeError("use SentenceEncoder.load(path)")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SentenceEncoder:
        """Loads a sentence-transformers folder: ``modules.json``, the BERT
        folder it names (``config.json``, ``model.safetensors``,
        ``tokenizer.json``, optional ``sentence_bert_config.json`` with
        ``max_seq_length`` and ``do_lower_case``) and the pooling folder's
        ``config.json``.

        Raises ``FileNotFoundError`` for a missing folder or file and
        ``tr.CheckpointError`` for anything this package cannot run
        (another module type, an unsupported pooling mode, a config that is
        not BERT).
        """
        root = Path(os.fspath(path))
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: no such model folder")
        modules = _read_modules(root)
        bert_dir = root / modules[_TRANSFORMER]
        origin = _pickling.FolderOrigin.of(root, _files_read(modules))
        st_config = _read_json(bert_dir / "sentence_bert_config.json", required=False) or {}
        self = object.__new__(cls)
        self._origin = origin
        self._bert = BertModel.load(bert_dir)
        self._max_seq_length = _max_seq_length(st_config, bert_dir, self._bert.config)
        self._do_lower_case = bool(st_config.get("do_lower_case", False))
        self._pooling = _read_pooling(root / modules[_POOLING], self._bert.config.hidden_size)
        self._normalize = _NORMALIZE in modules
        self._tokenizer = _load_tokenizer(bert_dir / "tokenizer.json", self._max_seq_length)
        return self

    def __reduce__(self):
        """Pickles as the folder's path (see ``_pickling``); the unpickling
        process loads it again."""
        return _pickling.reduce_by_path(self, self._origin)

    @property
    def bert(self) -> BertModel:
        """The underlying :class:`BertModel`."""
        return self._bert

    @property
    def max_seq_length(self) -> int:
        """Longer inputs are truncated to this many tokens ([CLS] and [SEP] included)."""
        return self._max_seq_length

    @property
    def pooling(self) -> tuple[str, ...]:
        """The pooling modes, concatenated in this order: ``"cls"``, ``"max"``,
        ``"mean"``, ``"mean_sqrt_len"``."""
        return self._pooling

    @property
    def dim(self) -> int:
        """Width of an embedding: hidden_size times the number of pooling modes."""
        return self._bert.config.hidden_size * len(self._pooling)

    def __repr__(self) -> str:
        return (
            f"SentenceEncoder({self._bert!r}, pooling={'+'.join(self._pooling)}, "
            f"max_seq_length={self._max_seq_length}, normalize={self._normalize})"
        )

    def encode(
        self,
        sentences: str | Sequence[str],
        batch_size: int = 32,
        normalize_embeddings: bool = True,
    ) -> np.ndarray:
        """Embeddings of ``sentences``: float32 ``[N, dim]`` in input order
        (a single ``str`` gives one ``[dim]`` vector, as sentence-transformers
        does).

        Each sentence is stripped of surrounding whitespace (and lower-cased if
        the folder says ``do_lower_case``), tokenized, truncated to
        :attr:`max_seq_length` tokens, run through BERT in batches of
        ``batch_size`` (longest sentences first, as sentence-transformers
        batches them; each sentence packed without padding, so no compute goes
        to padding), pooled, and scaled to unit length if
        ``normalize_embeddings`` or the folder has a ``Normalize`` module.
        An empty string is fine; an empty list is a ``ValueError``. A sentence
        the tokenizer turns into no tokens at all (one without [CLS]/[SEP])
        pools as sentence-transformers pools a row of padding: mean 0, max
        -1e9, and cls 0.
        """
        single = isinstance(sentences, str)
        texts = _sentence_list([sentences] if single else sentences)
        batch_size = _int(batch_size, "batch_size")
        if batch_size < 1:
            raise ValueError(f"batch_size: expected a positive integer, got {batch_size}")
        if not isinstance(normalize_embeddings, (bool, np.bool_)):
            raise TypeError(
                f"normalize_embeddings: expected a bool, got {type(normalize_embeddings).__name__}"
            )
        normalize = bool(normalize_embeddings) or self._normalize
        texts = [t.strip() for t in texts]
        if self._do_lower_case:
            texts = [t.lower() for t in texts]
        if len(texts) == 1:
            # One sentence: nothing to sort or concatenate, and `encode` runs
            # on this thread (`encode_batch` would wake tokenizers' own pool).
            e = self._tokenizer.encode(texts[0])
            ids = np.array(e.ids, dtype=np.int64)
            lengths = np.array([len(ids)], dtype=np.int64)
            out = self._encode_packed(ids, lengths, np.array(e.type_ids, np.int64), normalize)
            return out[0] if single else out
        encodings = self._tokenizer.encode_batch(texts)
        lengths = np.fromiter(map(len, (e.ids for e in encodings)), np.int64, len(encodings))
        order = np.argsort(-lengths, kind="stable")  # longest first, like sentence-transformers
        lengths = lengths[order]
        total = int(lengths.sum())
        in_order = [encodings[i] for i in order]
        ids = np.fromiter(itertools.chain.from_iterable(e.ids for e in in_order), np.int64, total)
        types = np.fromiter(
            itertools.chain.from_iterable(e.type_ids for e in in_order), np.int64, total
        )
        # Token offsets [N + 1] of the sorted sentences in ids / types.
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            stop = min(start + batch_size, len(order))
            tokens = slice(offsets[start], offsets[stop])
            out[order[start:stop]] = self._encode_packed(
                ids[tokens], lengths[start:stop], types[tokens], normalize
            )
        return out

    def _encode_packed(
        self, ids: np.ndarray, lengths: np.ndarray, types: np.ndarray, normalize: bool
    ) -> np.ndarray:
        """Embeddings ``[B, dim]`` of B tokenized sentences packed back to back:
        ``ids`` and ``types`` int64 ``[K]``, ``lengths`` int64 ``[B]``."""
        return self._bert._native.encode(ids, lengths, types, self._pooling, normalize)


def _sentence_list(sentences) -> list[str]:
    if not isinstance(sentences, (list, tuple)):
        raise TypeError(
            f"sentences: expected a str or a list of str, got {type(sentences).__name__}"
        )
    if len(sentences) == 0:
        raise ValueError("sentences: expected at least one sentence, got an empty list")
    for i, s in enumerate(sentences):
        if not isinstance(s, str):
            raise TypeError(f"sentences[{i}]: expected a str, got {type(s).__name__}")
    return list(sentences)


# ---- reading a sentence-transformers folder -------------------------------------------------


def _read_json(path: Path, required: bool = True) -> Any:
    """The parsed file, ``None`` if absent and not required;
    FileNotFoundError / CheckpointError naming the file otherwise."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if required:
            raise FileNotFoundError(f"{path}: no such file") from None
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}: not valid JSON: {err}") from None


def _read_modules(root: Path) -> dict[str, str]:
    """Module kind -> its folder (relative to ``root``) from ``modules.json``,
    which must list a Transformer, then a Pooling, then optionally Normalize."""
    path = root / "modules.json"
    entries = _read_json(path)
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise CheckpointError(f"{path}: expected a list of module objects")
    kinds = []
    found: dict[str, str] = {}
    for entry in entries:
        kind = str(entry.get("type", "")).rsplit(".", 1)[-1]
        if kind not in (_TRANSFORMER, _POOLING, _NORMALIZE):
            raise CheckpointError(
                f"{path}: module {entry.get('type')!r} is not supported "
                "(supported: Transformer (BERT), Pooling, Normalize)"
            )
        kinds.append(kind)
        found[kind] = str(entry.get("path", ""))
    if kinds not in ([_TRANSFORMER, _POOLING], [_TRANSFORMER, _POOLING, _NORMALIZE]):
        raise CheckpointError(
            f"{path}: expected the modules Transformer, Pooling and optionally Normalize, "
            f"in that order; got {kinds}"
        )
    return found


def _files_read(modules: dict[str, str]) -> tuple[str, ...]:
    """Every file :meth:`SentenceEncoder.load` reads (some optional), relative
    to the model folder."""
    bert_files = ("config.json", "model.safetensors", "tokenizer.json")
    bert_files += ("sentence_bert_config.json", "tokenizer_config.json")
    names = ["modules.json", os.path.join(modules[_POOLING], "config.json")]
    names += [os.path.join(modules[_TRANSFORMER], name) for name in bert_files]
    return tuple(os.path.normpath(name) for name in names)


def _max_seq_length(st_config: dict, bert_dir: Path, config: BertConfig) -> int:
    """sentence_bert_config.json's ``max_seq_length``; without one, the
    smaller of ``max_position_embeddings`` and the tokenizer's
    ``model_max_length`` (what sentence-transformers falls back to)."""
    value = st_config.get("max_seq_length")
    if value is None:
        tok_config = _read_json(bert_dir / "tokenizer_config.json", required=False) or {}
        limit = tok_config.get("model_max_length")
        value = config.max_position_embeddings
        if isinstance(limit, int) and limit > 0:
            value = min(value, limit)
    if not isinstance(value, int) or isinstance(value, bool) or value < 2:
        raise CheckpointError(
            f"{bert_dir / 'sentence_bert_config.json'}: `max_seq_length` must be an integer "
            f">= 2 (room for [CLS] and [SEP]), got {value!r}"
        )
    if value > config.max_position_embeddings:
        raise CheckpointError(
            f"{bert_dir / 'sentence_bert_config.json'}: `max_seq_length` {value} exceeds the "
            f"model's max_position_embeddings ({config.max_position_embeddings})"
        )
    return value


def _read_pooling(folder: Path, hidden_size: int) -> tuple[str, ...]:
    path = folder / "config.json"
    config = _read_json(path)
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    for key in _UNSUPPORTED_POOLING_KEYS:
        if config.get(key):
            raise CheckpointError(
                f"{path}: `{key}` is not supported (supported: CLS, mean, max, mean_sqrt_len)"
            )
    modes = tuple(m for m in _POOLING_MODES if config.get(_POOLING_KEYS[m]))
    if not modes:
        raise CheckpointError(
            f"{path}: no pooling mode is on (expected one of {', '.join(_POOLING_KEYS.values())})"
        )
    width = config.get("word_embedding_dimension", hidden_size)
    if width != hidden_size:
        raise CheckpointError(
            f"{path}: `word_embedding_dimension` {width} does not match the model's "
            f"hidden_size {hidden_size}"
        )
    return modes


def _load_tokenizer(path: Path, max_seq_length: int):
    """``tokenizer.json`` through the ``tokenizers`` package, set up as
    sentence-transformers calls it: truncation to ``max_seq_length`` (longest
    first, special tokens included), no padding (sentences are packed)."""
    from tokenizers import Tokenizer  # deferred: only sentence encoders need it

    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        tokenizer = Tokenizer.from_file(os.fspath(path))
    except Exception as err:  # tokenizers raises a bare Exception for malformed files
        raise CheckpointError(f"{path}: not a readable tokenizer: {err}") from None
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_seq_length, strategy="longest_first")
    return tokenizer
