"""Mutation fuzzing of real checkpoints: truncations, bit flips and edits of
the safetensors header (length field, dtypes, shapes, offsets, entries) and
of config.json. Loading each one, in a child interpreter so that a crash
fails the test instead of killing pytest, must either give a working model
or raise ``tr.CheckpointError`` / ``ValueError`` / ``OSError``; nothing else
(no ``PanicException``, no ``RuntimeError`` from a caught panic, no abort,
no hang).

The suite runs a small bounded number of examples. The long run raises it:

    TRS_FUZZ_EXAMPLES=100000 python -m pytest tests/test_checkpoint_fuzz.py \\
        -q -p no:cacheprovider --hypothesis-show-statistics
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from isolated import Worker
from transformer_rs.reference.model import random_state_dict, save_safetensors

EXAMPLES = int(os.environ.get("TRS_FUZZ_EXAMPLES", "60"))
DATA = Path(__file__).parent / "data"
ALLOWED = ("CheckpointError", "ValueError", "OSError")

MICRO_CONFIG = {
    "d_model": 4,
    "n_heads": 2,
    "d_ff": 6,
    "n_encoder_layers": 1,
    "n_decoder_layers": 1,
    "src_vocab_size": 5,
    "tgt_vocab_size": 6,
    "max_len": 5,
    "activation": "gelu",
    "norm_first": True,
    "layer_norm_eps": 1e-5,
    "pad_id": 0,
    "bos_id": 1,
    "eos_id": 2,
}

# Loads a folder; a model that loads must then run on small valid inputs.
PROBE = """
import numpy as np
import transformer_rs as tr

def probe(folder):
    model = tr.Transformer.load(folder)
    c = model.config
    n = min(3, c.max_len)
    src = np.arange(2 * n).reshape(2, n) % c.src_vocab_size
    tgt = (np.arange(2 * n).reshape(2, n) * 7 + 1) % c.tgt_vocab_size
    model.forward(src, tgt)
    model.generate(src, max_new_tokens=n)
    model.generate(src, max_new_tokens=n, beam_size=3, num_hypotheses=2)
"""


def _micro_checkpoint(tmp: Path) -> tuple[bytes, bytes]:
    path = tmp / "micro.safetensors"
    save_safetensors(path, random_state_dict(MICRO_CONFIG, seed=3), float_dtype="F16")
    return json.dumps(MICRO_CONFIG).encode(), path.read_bytes()


@pytest.fixture(scope="module")
def bases(tmp_path_factory) -> list[tuple[bytes, bytes]]:
    """(config.json, model.safetensors) bytes of real checkpoints."""
    real = [
        ((DATA / d / "config.json").read_bytes(), (DATA / d / "model.safetensors").read_bytes())
        for d in ("tiny_post_ln", "tiny_pre_ln_gelu")
    ]
    return [_micro_checkpoint(tmp_path_factory.mktemp("micro")), *real]


@pytest.fixture(scope="module")
def worker():
    w = Worker(setup=PROBE, timeout=60)
    yield w
    w.close()


# -- mutations ----------------------------------------------------------------

DTYPES = ["F32", "F16", "BF16", "F64", "I64", "I32", "U8", "BOOL", "F4", "F8_E4M3", "C64", "Q4", ""]
NASTY_INTS = st.one_of(
    st.integers(0, 64),
    st.sampled_from([-1, 2**31, 2**32, 10**12, 2**62, 2**63 - 1, 2**63, 2**64 - 1, 2**64]),
)
JSON_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    NASTY_INTS,
    st.floats(allow_nan=False),
    st.text(max_size=8),
    st.lists(st.integers(0, 9), max_size=3),
)


def _split(weights: bytes) -> tuple[dict, bytes] | None:
    """(header, data) of a well-formed file, or None."""
    (n,) = struct.unpack("<Q", weights[:8])
    return json.loads(weights[8 : 8 + n]), weights[8 + n :]


def _join(header: dict, data: bytes, pad: bool) -> bytes:
    text = json.dumps(header).encode()
    if pad:
        text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


@st.composite
def header_edit(draw, weights: bytes) -> bytes:
    header, data = _split(weights)
    names = sorted(k for k in header if k != "__metadata__")
    name = draw(st.sampled_from(names))
    entry = header[name]
    edit = draw(
        st.sampled_from(
            [
                "dtype",
                "shape",
                "offsets",
                "drop_field",
                "drop_tensor",
                "rename",
                "extra",
                "metadata",
            ]
        )
    )
    event(f"header edit: {edit}")
    if edit == "dtype":
        entry["dtype"] = draw(st.one_of(st.sampled_from(DTYPES), JSON_VALUES))
    elif edit == "shape":
        entry["shape"] = draw(st.one_of(st.lists(NASTY_INTS, max_size=4), JSON_VALUES))
    elif edit == "offsets":
        entry["data_offsets"] = draw(
            st.one_of(st.lists(NASTY_INTS, min_size=2, max_size=2), JSON_VALUES)
        )
    elif edit == "drop_field":
        del entry[draw(st.sampled_from(sorted(entry)))]
    elif edit == "drop_tensor":
        del header[name]
    elif edit == "rename":
        header[draw(st.text(max_size=12))] = header.pop(name)
    elif edit == "extra":
        header[name + ".extra"] = {
            "dtype": draw(st.sampled_from(DTYPES)),
            "shape": draw(st.lists(NASTY_INTS, max_size=3)),
            "data_offsets": draw(st.lists(NASTY_INTS, min_size=2, max_size=2)),
        }
    else:
        header["__metadata__"] = draw(
            st.one_of(JSON_VALUES, st.dictionaries(st.text(), JSON_VALUES))
        )
    return _join(header, data, pad=draw(st.booleans()))


@st.composite
def mutated_weights(draw, weights: bytes) -> bytes:
    kind = draw(st.sampled_from(["truncate", "bit_flips", "header", "length", "splice"]))
    event(f"weights: {kind}")
    if kind == "truncate":
        return weights[: draw(st.integers(0, len(weights) - 1))]
    if kind == "bit_flips":
        (n,) = struct.unpack("<Q", weights[:8])
        out = bytearray(weights)
        # Mostly inside the length field and the header, where bits matter most.
        where = st.one_of(st.integers(0, 8 + n - 1), st.integers(0, len(out) - 1))
        for pos, bit in draw(st.lists(st.tuples(where, st.integers(0, 7)), min_size=1, max_size=8)):
            out[pos] ^= 1 << bit
        return bytes(out)
    if kind == "header":
        return draw(header_edit(weights))
    if kind == "length":
        (n,) = struct.unpack("<Q", weights[:8])
        new_n = draw(st.one_of(st.integers(0, 2**64 - 1), st.integers(max(0, n - 16), n + 16)))
        return struct.pack("<Q", new_n) + weights[8:]
    # splice: a run of random bytes written over the file
    start = draw(st.integers(0, len(weights) - 1))
    return weights[:start] + draw(st.binary(min_size=1, max_size=64)) + weights[start + 64 :]


@st.composite
def mutated_config(draw, config: bytes) -> bytes:
    # Mostly kept: a broken config stops the load before the weights are read.
    kind = (
        draw(st.sampled_from(["value", "drop", "text"])) if draw(st.integers(0, 3)) == 0 else "keep"
    )
    event(f"config: {kind}")
    if kind == "keep":
        return config
    if kind == "text":
        cut = draw(st.integers(0, len(config)))
        return config[:cut] + draw(st.binary(max_size=8)) + config[cut + 1 :]
    parsed = json.loads(config)
    key = draw(st.sampled_from(sorted(parsed)))
    if kind == "drop":
        del parsed[key]
    else:
        parsed[key] = draw(JSON_VALUES)
    return json.dumps(parsed).encode()


@st.composite
def checkpoints(draw, bases):
    config, weights = draw(st.sampled_from(bases))
    return draw(mutated_config(config)), draw(mutated_weights(weights))


# -- the property ---------------------------------------------------------------


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("mutated")


@pytest.fixture(scope="module")
def strategy(bases):
    return checkpoints(bases)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_mutated_checkpoints_load_or_raise_checkpoint_errors(data, strategy, worker, folder):
    config, weights = data.draw(strategy)
    (folder / "config.json").write_bytes(config)
    (folder / "model.safetensors").write_bytes(weights)
    outcome = worker.run(f"probe({str(folder)!r})")
    event(f"outcome: {outcome.raised or 'loaded and ran'}")
    if outcome.raised is not None:
        assert any(outcome.is_a(cls) for cls in ALLOWED), f"{outcome.raised}: {outcome.message}"
        assert "internal error" not in outcome.message, outcome.message
