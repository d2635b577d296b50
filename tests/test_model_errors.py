"""tr.Transformer: every malformed checkpoint and bad argument gives a clear
Python exception naming the culprit; what is merely unusual still works."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

import transformer_rs as tr
from transformer_rs import reference

DATA = Path(__file__).parent / "data"
GOLDEN = DATA / "tiny_post_ln"
CONFIG = json.loads((GOLDEN / "config.json").read_text())
STATE = reference.load_safetensors(GOLDEN / "model.safetensors")
SRC = np.array([[4, 9, 41, 47], [41, 15, 0, 0]])
TGT = np.array([[1, 58, 10], [1, 17, 4]])


def write_checkpoint(folder: Path, state=STATE, config=CONFIG, float_dtype=None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    reference.save_safetensors(folder / "model.safetensors", state, float_dtype=float_dtype)
    return folder


@pytest.fixture(scope="module")
def model():
    return tr.Transformer.load(GOLDEN)


# -- checkpoints -------------------------------------------------------------


def test_missing_folder_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        tr.Transformer.load(tmp_path / "nope")


@pytest.mark.parametrize("missing", ["config.json", "model.safetensors"])
def test_missing_file_is_file_not_found(tmp_path, missing):
    folder = tmp_path / "ckpt"
    shutil.copytree(GOLDEN, folder)
    (folder / missing).unlink()
    with pytest.raises(FileNotFoundError, match=missing):
        tr.Transformer.load(folder)


@pytest.mark.parametrize(
    "name",
    [
        "src_tok_emb.embedding.weight",
        "generator.bias",
        "transformer.encoder.norm.weight",
        "transformer.decoder.layers.1.norm3.bias",
        "transformer.decoder.layers.0.multihead_attn.in_proj_weight",
        "transformer.encoder.layers.1.linear2.weight",
    ],
)
def test_missing_tensor_is_named(tmp_path, name):
    state = {k: v for k, v in STATE.items() if k != name}
    with pytest.raises(tr.CheckpointError, match=name):
        tr.Transformer.load(write_checkpoint(tmp_path / "ckpt", state))
    with pytest.raises(tr.CheckpointError, match=name):
        tr.Transformer.from_state_dict(state, CONFIG)


@pytest.mark.parametrize(
    "name",
    [
        "generator.weight",
        "transformer.encoder.layers.0.self_attn.in_proj_bias",
        "transformer.decoder.layers.1.linear1.weight",
        "tgt_tok_emb.embedding.weight",
        "positional_encoding.pos_embedding",
    ],
)
def test_wrong_shape_is_named(tmp_path, name):
    state = dict(STATE)
    value = STATE[name]
    state[name] = value.T.copy() if value.ndim == 2 else np.concatenate([value, value[:1]])
    with pytest.raises(tr.CheckpointError, match=name):
        tr.Transformer.load(write_checkpoint(tmp_path / "ckpt", state))
    with pytest.raises(tr.CheckpointError, match=name):
        tr.Transformer.from_state_dict(state, CONFIG)


@pytest.mark.parametrize("dtype", [np.int32, np.float64])
def test_unknown_dtype_in_the_file_is_named(tmp_path, dtype):
    state = dict(STATE)
    state["generator.bias"] = STATE["generator.bias"].astype(dtype)
    with pytest.raises(tr.CheckpointError, match="generator.bias"):
        tr.Transformer.load(write_checkpoint(tmp_path / "ckpt", state))


@pytest.mark.parametrize(
    "key, value, culprit",
    [
        ("tgt_vocab_size", 61, "tgt_tok_emb.embedding.weight|generator"),
        ("src_vocab_size", 49, "src_tok_emb.embedding.weight"),
        ("d_ff", 65, "linear1"),
        ("d_model", 36, "d_model|weight"),
        ("n_decoder_layers", 3, "transformer.decoder.layers.2"),
        ("n_encoder_layers", 3, "transformer.encoder.layers.2"),
    ],
)
def test_config_contradicting_the_weights_is_named(tmp_path, key, value, culprit):
    config = {**CONFIG, key: value}
    with pytest.raises(tr.CheckpointError, match=culprit):
        tr.Transformer.load(write_checkpoint(tmp_path / "ckpt", config=config))


def _corrupt(blob: bytes, how: str) -> bytes:
    (header_len,) = struct.unpack("<Q", blob[:8])
    if how == "empty":
        return b""
    if how == "short_length":
        return blob[:5]
    if how == "header_past_end":
        return struct.pack("<Q", len(blob) * 2) + blob[8:]
    if how == "not_json":
        return blob[:8] + b"{" * header_len + blob[8 + header_len :]
    if how == "truncated_data":
        return blob[: len(blob) - 100]
    if how == "random":
        return np.random.default_rng(0).bytes(4096)
    raise AssertionError(how)


@pytest.mark.parametrize(
    "how", ["empty", "short_length", "header_past_end", "not_json", "truncated_data", "random"]
)
def test_invalid_safetensors_is_a_checkpoint_error(tmp_path, how):
    folder = tmp_path / "ckpt"
    shutil.copytree(GOLDEN, folder)
    path = folder / "model.safetensors"
    path.write_bytes(_corrupt(path.read_bytes(), how))
    with pytest.raises(tr.CheckpointError, match="(?i)safetensors|header|generator|transformer"):
        tr.Transformer.load(folder)


def test_offsets_outside_the_data_name_the_tensor(tmp_path):
    folder = write_checkpoint(tmp_path / "ckpt")
    path = folder / "model.safetensors"
    blob = path.read_bytes()
    (header_len,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + header_len])
    header["generator.bias"]["data_offsets"][1] += 4  # 61 floats' worth for a [60] tensor
    new_header = json.dumps(header).encode()
    new_header += b" " * (-len(new_header) % 8)
    path.write_bytes(struct.pack("<Q", len(new_header)) + new_header + blob[8 + header_len :])
    with pytest.raises(tr.CheckpointError, match="generator.bias"):
        tr.Transformer.load(folder)


def test_invalid_config_json_is_a_checkpoint_error(tmp_path):
    folder = write_checkpoint(tmp_path / "ckpt")
    (folder / "config.json").write_text("{not json")
    with pytest.raises(tr.CheckpointError, match="config"):
        tr.Transformer.load(folder)


@pytest.mark.parametrize("key", ["d_model", "n_heads", "d_ff", "max_len", "eos_id", "norm_first"])
def test_config_missing_a_key_is_named(tmp_path, key):
    config = {k: v for k, v in CONFIG.items() if k != key}
    with pytest.raises(tr.CheckpointError, match=key):
        tr.Transformer.load(write_checkpoint(tmp_path / "ckpt", config=config))


@pytest.mark.parametrize(
    "key, value",
    [
        ("n_heads", 5),  # 32 % 5 != 0
        ("n_heads", 0),
        ("n_heads", -4),
        ("d_model", 0),
        ("d_model", -32),
        ("d_model", 32.5),
        ("d_ff", 0),
        ("max_len", 0),
        ("src_vocab_size", 0),
        ("tgt_vocab_size", -1),
        ("n_decoder_layers", 0),
        ("n_encoder_layers", -1),
        ("activation", "tanh"),
        ("norm_first", "yes"),
        ("layer_norm_eps", -1e-5),
        ("pad_id", 60),
        ("bos_id", -1),
        ("eos_id", 1000),
    ],
)
@pytest.mark.parametrize("via", ["load", "from_state_dict"])
def test_impossible_config_is_named(tmp_path, key, value, via):
    config = {**CONFIG, key: value}
    if via == "load":
        with pytest.raises(tr.CheckpointError, match=key):
            tr.Transformer.load(write_checkpoint(tmp_path / "ckpt", config=config))
    else:
        with pytest.raises(ValueError, match=key):
            tr.Transformer.from_state_dict(STATE, config)


def test_extra_tensors_are_ignored(tmp_path, model):
    state = {
        **STATE,
        "unused.head.weight": np.ones((3, 3), np.float32),
        "transformer.encoder.layers.7.linear1.weight": np.ones((2, 2), np.float32),
    }
    loaded = tr.Transformer.load(write_checkpoint(tmp_path / "ckpt", state))
    np.testing.assert_array_equal(loaded.forward(SRC, TGT), model.forward(SRC, TGT))
    from_dict = tr.Transformer.from_state_dict(state, CONFIG)
    np.testing.assert_array_equal(from_dict.forward(SRC, TGT), model.forward(SRC, TGT))


def test_positional_table_is_optional(tmp_path, model):
    state = {k: v for k, v in STATE.items() if k != "positional_encoding.pos_embedding"}
    loaded = tr.Transformer.load(write_checkpoint(tmp_path / "ckpt", state))
    np.testing.assert_allclose(loaded.forward(SRC, TGT), model.forward(SRC, TGT), atol=1e-4)


@pytest.mark.parametrize("float_dtype, to_f32_tol", [("F16", 0.02), ("BF16", 0.2)])
def test_half_precision_checkpoints_load_widened(tmp_path, model, float_dtype, to_f32_tol):
    folder = write_checkpoint(tmp_path / "ckpt", float_dtype=float_dtype)
    half = tr.Transformer.load(folder)
    logits = half.forward(SRC, TGT)
    assert logits.dtype == np.float32
    # Exactly the widened weights: the reference on the same file agrees to f32 accuracy ...
    widened = reference.Transformer.load(folder)
    np.testing.assert_allclose(logits, widened.forward(SRC, TGT), rtol=0, atol=1e-4)
    # ... and the f32 model agrees to the format's precision.
    np.testing.assert_allclose(logits, model.forward(SRC, TGT), rtol=0, atol=to_f32_tol)


def test_from_state_dict_takes_any_float_dtype_and_leaves_it_untouched(model):
    state = {k: v.astype(np.float64) for k, v in STATE.items()}
    before = {k: v.copy() for k, v in state.items()}
    from_f64 = tr.Transformer.from_state_dict(state, tr.TransformerConfig(**CONFIG))
    np.testing.assert_array_equal(from_f64.forward(SRC, TGT), model.forward(SRC, TGT))
    for k, v in state.items():
        np.testing.assert_array_equal(v, before[k])


# -- arguments ---------------------------------------------------------------


@pytest.mark.parametrize("bad", [50, 1000, -1])
def test_source_ids_outside_the_vocabulary_are_rejected(model, bad):
    src = SRC.copy()
    src[1, 1] = bad
    for call in (
        lambda: model.encode(src),
        lambda: model.encode([[4, 9], [bad]]),
        lambda: model.forward(src, TGT),
        lambda: model.generate(src, max_new_tokens=2),
    ):
        with pytest.raises(ValueError, match="src"):
            call()


@pytest.mark.parametrize("bad", [60, -2])
def test_target_ids_outside_the_vocabulary_are_rejected(model, bad):
    tgt = TGT.copy()
    tgt[0, 2] = bad
    memory = model.encode(SRC)
    with pytest.raises(ValueError, match="tgt"):
        model.decode(tgt, memory)
    with pytest.raises(ValueError, match="tgt"):
        model.forward(SRC, tgt)


def test_sequences_longer_than_max_len_are_rejected(model):
    too_long = np.full((1, CONFIG["max_len"] + 1), 5)
    with pytest.raises(ValueError, match="src"):
        model.encode(too_long)
    with pytest.raises(ValueError, match="tgt"):
        model.decode(too_long, model.encode(SRC[:1]))
    with pytest.raises(ValueError, match="tgt"):
        model.forward(SRC[:1], too_long)
    assert model.encode(too_long[:, :-1]).shape == (1, CONFIG["max_len"], CONFIG["d_model"])


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"max_new_tokens": -1}, "max_new_tokens"),
        ({"max_new_tokens": CONFIG["max_len"] + 1}, "max_new_tokens"),  # past the positions
        ({"beam_size": 0}, "beam_size"),
        ({"beam_size": -3}, "beam_size"),
        ({"beam_size": 2, "num_hypotheses": 3}, "num_hypotheses"),
        ({"num_hypotheses": 0}, "num_hypotheses"),
    ],
)
def test_bad_generation_arguments_are_named(model, kwargs, name):
    with pytest.raises(ValueError, match=name):
        model.generate(SRC, **kwargs)


def test_zero_new_tokens_gives_empty_outputs(model):
    assert [list(t) for t in model.generate(SRC, max_new_tokens=0)] == [[], []]


@pytest.mark.parametrize(
    "memory",
    [
        np.zeros((2, 4, 31), np.float32),  # wrong width
        np.zeros((2, 4), np.float32),  # wrong rank
        np.zeros((3, 4, 32), np.float32),  # batch differs from tgt
    ],
)
def test_memory_of_the_wrong_shape_is_rejected(model, memory):
    with pytest.raises(ValueError, match="memory"):
        model.decode(TGT, memory)


def test_padding_mask_of_the_wrong_shape_is_rejected(model):
    memory = model.encode(SRC)
    with pytest.raises(ValueError, match="memory_key_padding_mask"):
        model.decode(TGT, memory, memory_key_padding_mask=np.zeros((2, 5), bool))


def test_float_token_arrays_are_a_type_error(model):
    with pytest.raises(TypeError, match="src"):
        model.encode(SRC.astype(np.float32))
    with pytest.raises(TypeError, match="src"):
        model.generate(SRC.astype(np.float64))
    with pytest.raises(TypeError, match="tgt"):
        model.decode(TGT.astype(np.float32), model.encode(SRC))
    with pytest.raises(TypeError, match="tgt"):
        model.forward(SRC, TGT.astype(np.float64))


def test_any_integer_dtype_is_accepted(model):
    expected = model.forward(SRC, TGT)
    for dtype in (np.int8, np.uint16, np.int32, np.uint64):
        np.testing.assert_array_equal(model.forward(SRC.astype(dtype), TGT.astype(dtype)), expected)
