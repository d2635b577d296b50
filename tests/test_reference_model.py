"""The NumPy reference model (the oracle of every model test) against the
PyTorch golden cases, and its safetensors reader/writer."""

from __future__ import annotations

import numpy as np
import pytest

from test_model_fixtures import CASES, DATA, golden, golden_greedy
from transformer_rs import reference
from transformer_rs.reference.model import random_state_dict, sinusoidal_positions

TOL = 1e-5  # float64 NumPy vs PyTorch float32: they agree to ~1e-6


@pytest.fixture(scope="module", params=CASES)
def name(request):
    return request.param


@pytest.fixture(scope="module")
def case(name):
    """(reference model, config dict, cases arrays) for one golden case."""
    config, cases = golden(name)
    return reference.Transformer.load(DATA / name), config, cases


def test_memory_matches_pytorch(case):
    ref, _, cases = case
    memory = ref.encode(cases["src"])
    keep = ~cases["src_pad"]
    np.testing.assert_allclose(memory[keep], cases["memory"][keep], rtol=0, atol=TOL)


def test_logits_match_pytorch(case):
    ref, _, cases = case
    logits = ref.decode(
        cases["tgt"],
        cases["memory"],
        memory_key_padding_mask=cases["src_pad"],
        tgt_key_padding_mask=cases["tgt_pad"],
    )
    keep = ~cases["tgt_pad"]
    np.testing.assert_allclose(logits[keep], cases["logits"][keep], rtol=0, atol=TOL)


def test_forward_without_target_mask_matches_pytorch_where_not_padded(case):
    """Padding sits at the end of tgt, so causality alone hides it."""
    ref, _, cases = case
    logits = ref.forward(cases["src"], cases["tgt"])
    keep = ~cases["tgt_pad"]
    np.testing.assert_allclose(logits[keep], cases["logits"][keep], rtol=0, atol=TOL)


def test_greedy_matches_pytorch(case):
    ref, config, cases = case
    got = ref.greedy(cases["src"], int(cases["greedy_max_new"]))
    assert got == golden_greedy(config, cases["greedy"])


def test_greedy_of_token_lists_equals_greedy_of_padded_array(case):
    ref, _, cases = case
    lists = [row[~pad].tolist() for row, pad in zip(cases["src"], cases["src_pad"])]
    assert ref.greedy(lists, 5) == ref.greedy(cases["src"], 5)


def test_step_log_probs_are_log_softmax_of_forward(case):
    ref, config, cases = case
    src = cases["src"][:1]
    tokens = [5, 7, config["eos_id"]]
    logits = ref.forward(src, [[config["bos_id"], 5, 7]])[0]
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    expected = log_probs[np.arange(3), tokens]
    np.testing.assert_allclose(ref.step_log_probs(src, [tokens])[0], expected, rtol=1e-12)
    assert ref.score(src, [tokens], 1.0)[0] == pytest.approx(expected.sum() / 3)
    assert ref.score(src, [tokens], 0.0)[0] == pytest.approx(expected.sum())


def test_sinusoidal_table_is_the_checkpoint_buffer(name, case):
    """PyTorch computes the table in float32: agreement to float32 rounding."""
    _, config, _ = case
    stored = reference.load_safetensors(DATA / name / "model.safetensors")
    table = sinusoidal_positions(config["max_len"], config["d_model"])
    np.testing.assert_allclose(stored["positional_encoding.pos_embedding"], table, atol=2e-5)


def test_a_fully_padded_source_gives_finite_memory(case):
    """Its queries see no key: attention rows are zeros, not NaN."""
    ref, config, cases = case
    src = cases["src"].copy()
    src[1] = config["pad_id"]
    memory = ref.encode(src)
    assert np.isfinite(memory).all()
    keep = ~cases["src_pad"][0]
    np.testing.assert_allclose(memory[0][keep], cases["memory"][0][keep], atol=TOL)


@pytest.mark.parametrize("float_dtype", ["F32", "F16", "BF16"])
def test_safetensors_round_trip(tmp_path, float_dtype):
    rng = np.random.default_rng(0)
    tensors = {"a": rng.standard_normal((3, 5)).astype(np.float32), "b.c": np.float32([1.5, -2.0])}
    path = tmp_path / "x.safetensors"
    reference.save_safetensors(path, tensors, float_dtype=float_dtype)
    loaded = reference.load_safetensors(path)
    assert set(loaded) == set(tensors)
    rtol = {"F32": 0, "F16": 2**-11, "BF16": 2**-8}[float_dtype]
    for key, value in tensors.items():
        assert loaded[key].dtype == np.float32 and loaded[key].shape == value.shape
        np.testing.assert_allclose(loaded[key], value, rtol=rtol, atol=0)
    np.testing.assert_array_equal(loaded["b.c"], tensors["b.c"])  # exact in every format


def test_bfloat16_rounds_to_nearest_even(tmp_path):
    # 1 + 2^-8 is halfway between bf16 1.0 and 1 + 2^-7: ties go to even (1.0);
    # 1 + 3 * 2^-8 is halfway between 1 + 2^-7 and 1 + 2^-6: even is 1 + 2^-6.
    values = np.float32([1 + 2**-8, 1 + 3 * 2**-8, -3.0, 65504.0])
    path = tmp_path / "bf16.safetensors"
    reference.save_safetensors(path, {"x": values}, float_dtype="BF16")
    loaded = reference.load_safetensors(path)["x"]
    np.testing.assert_array_equal(loaded, np.float32([1.0, 1 + 2**-6, -3.0, 65536.0]))


def test_loader_rejects_unknown_dtypes(tmp_path):
    path = tmp_path / "i32.safetensors"
    reference.save_safetensors(path, {"x": np.int32([1, 2])})
    with pytest.raises(ValueError, match="I32"):
        reference.load_safetensors(path)


def test_random_state_dict_has_every_parameter_of_the_config(name, case):
    _, config, _ = case
    state = random_state_dict(config, seed=1)
    stored = reference.load_safetensors(DATA / name / "model.safetensors")
    assert set(state) == set(stored)
    for key, value in stored.items():
        assert state[key].shape == value.shape and state[key].dtype == np.float32
