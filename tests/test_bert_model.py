"""tr.BertModel: the real all-MiniLM-L6-v2 against PyTorch's last_hidden_state,
tiny random BERTs against the float64 NumPy reference, and every error."""

from __future__ import annotations

import json

import numpy as np
import pytest

import transformer_rs as tr
from bert_helpers import edited_json, minilm_dir, minilm_fixture, model_variant
from transformer_rs.reference import bert as ref_bert
from transformer_rs.reference.model import save_safetensors


@pytest.fixture(scope="module")
def minilm():
    return tr.BertModel.load(minilm_dir())


def test_config_is_read_from_the_folder(minilm):
    c = minilm.config
    assert (c.hidden_size, c.num_hidden_layers, c.num_attention_heads) == (384, 6, 12)
    assert (c.intermediate_size, c.vocab_size, c.hidden_act) == (1536, 30522, "gelu")
    assert c.layer_norm_eps == 1e-12
    assert "hidden_size=384" in repr(minilm)


def test_last_hidden_state_matches_pytorch(minilm, simd_level):
    fx = minilm_fixture()
    ids, mask, types = fx["input_ids"], fx["attention_mask"], fx["token_type_ids"]
    given = [a.copy() for a in (ids, mask, types)]
    out = minilm.forward(ids, attention_mask=mask, token_type_ids=types)
    assert out.dtype == np.float32 and out.shape == fx["last_hidden_state"].shape
    real = mask.astype(bool)
    np.testing.assert_allclose(out[real], fx["last_hidden_state"][real], rtol=0, atol=1e-4)
    for before, after in zip(given, (ids, mask, types)):
        np.testing.assert_array_equal(before, after)  # inputs untouched


def test_reference_matches_pytorch():
    """The float64 oracle used by the other tests is itself right."""
    fx = minilm_fixture()
    out = ref_bert.BertModel.load(minilm_dir()).forward(
        fx["input_ids"], fx["attention_mask"], fx["token_type_ids"]
    )
    real = fx["attention_mask"].astype(bool)
    np.testing.assert_allclose(out[real], fx["last_hidden_state"][real], rtol=0, atol=2e-5)


def test_padding_does_not_change_real_positions(minilm):
    """Keys masked out are invisible: a row padded with arbitrary ids gives
    the same states at its real positions as the row alone."""
    row = minilm_fixture()["input_ids"][1]
    n = int((row != 0).sum())
    alone = minilm.forward(row[None, :n])
    padded = np.concatenate([row[:n], [2023, 7592, 999, 0, 5]])[None]
    mask = np.r_[np.ones(n, int), np.zeros(5, int)][None]
    out = minilm.forward(padded, attention_mask=mask)
    np.testing.assert_allclose(out[0, :n], alone[0], rtol=0, atol=2e-5)
    as_bool = minilm.forward(padded, attention_mask=mask.astype(bool))
    np.testing.assert_array_equal(as_bool, out)


def test_only_valid_positions_are_computed_and_padding_is_zero(minilm):
    """Padding anywhere in a row (left, middle, right): valid positions keep
    their column as position id and equal the reference; padded ones are 0."""
    oracle = ref_bert.BertModel.load(minilm_dir())
    ids = np.array([[0, 0, 101, 7592, 2088, 102], [101, 2023, 999, 2003, 1037, 102]])
    mask = np.array([[0, 0, 1, 1, 1, 1], [1, 1, 0, 1, 1, 1]])
    out = minilm.forward(ids, mask)
    want = oracle.forward(ids, mask, np.zeros_like(ids))
    real = mask.astype(bool)
    np.testing.assert_allclose(out[real], want[real], rtol=0, atol=1e-4)
    np.testing.assert_array_equal(out[~real], 0)
    assert np.abs(out[real]).max() > 0.1


def test_defaults_are_all_visible_and_type_zero(minilm):
    ids = minilm_fixture()["input_ids"][:2]
    base = minilm.forward(ids)
    np.testing.assert_array_equal(base, minilm.forward(ids, np.ones_like(ids), np.zeros_like(ids)))
    other_type = minilm.forward(ids, token_type_ids=np.ones_like(ids))
    assert np.abs(other_type - base).max() > 1e-3  # token types are really added


# ---- tiny random checkpoints -----------------------------------------------------------------


def tiny_bert(folder, hidden_act="gelu", prefix="bert.", dtype="F32", seed=0):
    """A random BERT folder as transformers saves a task model: `bert.` names,
    a pooler and an int64 `position_ids` buffer the loader must skip."""
    cfg = {
        "model_type": "bert",
        "vocab_size": 37,
        "hidden_size": 16,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 24,
        "hidden_act": hidden_act,
        "max_position_embeddings": 12,
        "type_vocab_size": 3,
        "layer_norm_eps": 1e-7,
        "position_embedding_type": "absolute",
    }
    e, f = cfg["hidden_size"], cfg["intermediate_size"]
    shapes = {
        "embeddings.word_embeddings.weight": (37, e),
        "embeddings.position_embeddings.weight": (12, e),
        "embeddings.token_type_embeddings.weight": (3, e),
        "embeddings.LayerNorm.weight": (e,),
        "embeddings.LayerNorm.bias": (e,),
        "pooler.dense.weight": (e, e),
        "pooler.dense.bias": (e,),
    }
    for i in range(2):
        p = f"encoder.layer.{i}"
        for name, (rows, cols) in {
            "attention.self.query": (e, e),
            "attention.self.key": (e, e),
            "attention.self.value": (e, e),
            "attention.output.dense": (e, e),
            "intermediate.dense": (f, e),
            "output.dense": (e, f),
        }.items():
            shapes[f"{p}.{name}.weight"] = (rows, cols)
            shapes[f"{p}.{name}.bias"] = (rows,)
        for name in ("attention.output.LayerNorm", "output.LayerNorm"):
            shapes[f"{p}.{name}.weight"] = (e,)
            shapes[f"{p}.{name}.bias"] = (e,)
    rng = np.random.default_rng(seed)
    tensors = {
        prefix + name: (1.0 if name.endswith("LayerNorm.weight") else 0.0)
        + 0.4 * rng.standard_normal(shape).astype(np.float32)
        for name, shape in shapes.items()
    }
    tensors[prefix + "embeddings.position_ids"] = np.arange(12, dtype=np.int64)[None]
    folder.mkdir(parents=True, exist_ok=True)
    save_safetensors(folder / "model.safetensors", tensors, float_dtype=dtype)
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


@pytest.mark.parametrize(
    "hidden_act, prefix, dtype",
    [("gelu", "bert.", "F32"), ("relu", "", "F32"), ("gelu", "", "F16"), ("relu", "bert.", "BF16")],
)
def test_tiny_random_bert_matches_reference(tmp_path, hidden_act, prefix, dtype):
    folder = tiny_bert(tmp_path / "m", hidden_act, prefix, dtype)
    model = tr.BertModel.load(folder)
    oracle = ref_bert.BertModel.load(folder)
    rng = np.random.default_rng(1)
    for b, t in [(1, 1), (3, 7), (2, 12)]:
        ids = rng.integers(0, 37, size=(b, t))
        types = rng.integers(0, 3, size=(b, t))
        mask = np.ones((b, t), dtype=np.int64)
        mask[1:, t // 2 + 1 :] = 0  # rows after the first padded at the end
        got = model.forward(ids, mask, types)
        want = oracle.forward(ids, mask, types)
        real = mask.astype(bool)
        np.testing.assert_allclose(got[real], want[real], rtol=0, atol=1e-4)


def test_empty_batch(minilm):
    assert minilm.forward(np.zeros((0, 5), dtype=np.int64)).shape == (0, 5, 384)


# ---- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"model_type": "roberta"}, ["not a BERT", "roberta"]),
        ({"model_type": None, "architectures": ["GPT2Model"]}, ["not a BERT"]),
        ({"hidden_act": "gelu_new"}, ["hidden_act", "gelu_new"]),
        ({"hidden_act": "silu"}, ["hidden_act", "silu"]),
        ({"position_embedding_type": "relative_key"}, ["position_embedding_type"]),
        ({"num_attention_heads": 7}, ["num_attention_heads"]),
        ({"hidden_size": None}, ["hidden_size"]),
        ({"intermediate_size": 1000}, ["intermediate.dense", "intermediate_size"]),
        ({"vocab_size": 100}, ["word_embeddings", "vocab_size"]),
    ],
)
def test_unsupported_or_mismatched_config_is_a_checkpoint_error(tmp_path, changes, words):
    folder = model_variant(tmp_path, {"config.json": edited_json("config.json", **changes)})
    with pytest.raises(tr.CheckpointError) as err:
        tr.BertModel.load(folder)
    for word in words:
        assert word in str(err.value)
    assert "config.json" in str(err.value) or "tensor" in str(err.value)


def test_missing_files_are_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such model folder"):
        tr.BertModel.load(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="config.json"):
        tr.BertModel.load(model_variant(tmp_path / "a", remove=["config.json"]))
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        tr.BertModel.load(model_variant(tmp_path / "b", remove=["model.safetensors"]))


def test_missing_or_bad_tensor_is_named(tmp_path):
    folder = tiny_bert(tmp_path / "m")
    tensors = ref_bert.load_float_tensors(folder / "model.safetensors")
    del tensors["bert.encoder.layer.1.attention.self.key.weight"]
    save_safetensors(folder / "model.safetensors", tensors, float_dtype="F32")
    with pytest.raises(tr.CheckpointError, match=r"bert\.encoder\.layer\.1\.attention\.self\.key"):
        tr.BertModel.load(folder)
    (folder / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(tr.CheckpointError, match="safetensors"):
        tr.BertModel.load(folder)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(tr.CheckpointError, match="JSON"):
        tr.BertModel.load(folder)


def test_bad_inputs_name_the_argument(minilm):
    ids = np.array([[101, 2023, 102]])
    cases = [
        (TypeError, "input_ids", dict(input_ids=ids.astype(np.float32))),
        (TypeError, "input_ids", dict(input_ids=ids.astype(bool))),
        (ValueError, "input_ids", dict(input_ids=ids[0])),
        (ValueError, "input_ids", dict(input_ids=np.array([[101, 30522]]))),
        (ValueError, "input_ids", dict(input_ids=np.array([[-1, 5]]))),
        (ValueError, "max_position_embeddings", dict(input_ids=np.ones((1, 513), np.int64))),
        (ValueError, "attention_mask", dict(input_ids=ids, attention_mask=np.ones((1, 2), int))),
        (ValueError, "attention_mask", dict(input_ids=ids, attention_mask=np.array([[1, 2, 1]]))),
        (ValueError, "attention_mask", dict(input_ids=ids, attention_mask=[[1.0, 0.5, 1.0]])),
        (TypeError, "attention_mask", dict(input_ids=ids, attention_mask=[["1", "1", "0"]])),
        (ValueError, "token_type_ids", dict(input_ids=ids, token_type_ids=np.array([[0, 2, 0]]))),
        (ValueError, "token_type_ids", dict(input_ids=ids, token_type_ids=np.zeros((2, 3), int))),
        (TypeError, "token_type_ids", dict(input_ids=ids, token_type_ids=[["a", "b", "c"]])),
    ]
    for exc, word, kwargs in cases:
        with pytest.raises(exc, match=word):
            minilm.forward(**kwargs)


def test_constructor_is_not_public():
    with pytest.raises(TypeError, match="load"):
        tr.BertModel(object())


def test_fully_masked_row_is_zeros(minilm):
    """No valid position: nothing to compute, every position is padding (0)."""
    ids = np.array([[101, 7592, 102], [101, 2023, 102]])
    mask = np.array([[0, 0, 0], [1, 1, 1]])
    out = minilm.forward(ids, attention_mask=mask)
    np.testing.assert_array_equal(out[0], 0)
    np.testing.assert_array_equal(out[1], minilm.forward(ids[1:])[0])


def test_native_sentence_path_checks_its_arguments(minilm):
    """NativeBertModel.encode (behind SentenceEncoder.encode) checks what it
    is given before computing, naming the argument."""
    native = minilm._native
    ids = np.array([101, 7592, 102, 101, 102], dtype=np.int64)
    lengths = np.array([3, 2], dtype=np.int64)
    types = np.zeros(5, dtype=np.int64)
    out = native.encode(ids, lengths, types, ("cls", "mean"), False)
    assert out.shape == (2, 768) and out.dtype == np.float32
    hidden = minilm.forward(np.array([[101, 7592, 102], [101, 102, 0]]), [[1, 1, 1], [1, 1, 0]])
    np.testing.assert_allclose(out[0, :384], hidden[0, 0], atol=1e-5)
    np.testing.assert_allclose(out[1, 384:], hidden[1, :2].mean(axis=0), atol=1e-5)
    # A sentence of no tokens pools as sentence-transformers pools an
    # all-padding row: mean 0, max -1e9 (cls has no token: 0).
    empty = native.encode(ids, np.array([3, 0, 2]), types, ("cls", "max", "mean"), False)
    np.testing.assert_array_equal(empty[1], np.repeat(np.float32([0, -1e9, 0]), 384))
    np.testing.assert_array_equal(empty[[0, 2], :384], out[:, :384])
    long, bad_id = np.ones(513, np.int64), np.array([101, 30522, 102])
    cases = [
        (ValueError, "lengths", (ids, np.array([3, 3]), types, ("mean",), True)),
        (ValueError, "lengths", (ids, np.array([6, -1]), types, ("mean",), True)),
        (ValueError, "max_position_embeddings", (long, np.array([513]), None, ("mean",), True)),
        (ValueError, "input_ids", (bad_id, np.array([3]), None, ("mean",), True)),
        (ValueError, "token_type_ids", (ids, lengths, np.zeros(4, np.int64), ("mean",), True)),
        (ValueError, "token_type_ids", (ids, lengths, np.full(5, 2, np.int64), ("mean",), True)),
        (ValueError, "pooling", (ids, lengths, types, ("weightedmean",), True)),
        (ValueError, "pooling", (ids, lengths, types, (), True)),
        (TypeError, "input_ids", (ids[::2], np.array([3]), None, ("mean",), True)),
    ]  # fmt: skip
    for exc, word, args in cases:
        with pytest.raises(exc, match=word):
            native.encode(*args)
