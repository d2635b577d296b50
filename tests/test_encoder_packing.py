"""The encoder runs ragged batches packed without padding: each sequence must
come out as if encoded alone, padded positions of memory are zeros, padding
may sit anywhere in a row, and long sources take the flash attention path."""

from __future__ import annotations

import numpy as np
import pytest

import transformer_rs as tr
from transformer_rs import reference
from transformer_rs.reference.model import random_state_dict

CONFIG = {
    "d_model": 12, "n_heads": 3, "d_ff": 20, "n_encoder_layers": 2, "n_decoder_layers": 1,
    "src_vocab_size": 30, "tgt_vocab_size": 20, "max_len": 1200, "activation": "relu",
    "norm_first": False, "layer_norm_eps": 1e-5, "pad_id": 0, "bos_id": 1, "eos_id": 2,
}  # fmt: skip
ATOL = RTOL = 2e-4  # float32 engine vs float64 reference


@pytest.fixture(scope="module", params=[False, True], ids=["post_ln", "pre_ln"])
def models(request):
    config = {**CONFIG, "norm_first": request.param}
    state = random_state_dict(config, seed=5, scale=1.5)
    return tr.Transformer.from_state_dict(state, config), reference.Transformer(state, config)


def test_ragged_batch_equals_each_sequence_encoded_alone(models):
    model, _ = models
    rng = np.random.default_rng(0)
    lengths = [7, 1, 0, 33, 16, 2, 33]
    sources = [[int(t) for t in rng.integers(3, 30, n)] for n in lengths]
    memory = model.encode(sources)
    assert memory.shape == (len(sources), max(lengths), CONFIG["d_model"])
    for row, src in zip(memory, sources):
        n = len(src)
        if n:
            np.testing.assert_allclose(row[:n], model.encode([src])[0], rtol=1e-5, atol=1e-5)
        assert not row[n:].any(), "padded positions of memory are zeros"


def test_padding_anywhere_in_a_row_matches_the_reference(models):
    model, ref = models
    rng = np.random.default_rng(1)
    src = rng.integers(3, 30, (4, 9))
    src[0, [0, 4]] = 0  # leading and inner padding
    src[1, 3:] = 0
    src[2, :] = 0  # nothing to attend to
    memory = model.encode(src)
    keep = src != 0
    np.testing.assert_allclose(memory[keep], ref.encode(src)[keep], rtol=RTOL, atol=ATOL)
    assert not memory[~keep].any()


def test_long_source_takes_the_flash_path_and_matches_the_reference(models):
    model, ref = models
    rng = np.random.default_rng(2)
    src = rng.integers(3, 30, (2, 1100))
    src[1, 1037:] = 0  # the second row is shorter, still on the flash path
    memory = model.encode(src)
    keep = src != 0
    np.testing.assert_allclose(memory[keep], ref.encode(src)[keep], rtol=RTOL, atol=ATOL)


def test_batches_split_across_threads_equal_each_sequence_alone():
    """Wide enough that the stack gives each thread a run of sequences."""
    config = {**CONFIG, "d_model": 64, "n_heads": 4, "d_ff": 256, "norm_first": True}
    model = tr.Transformer.from_state_dict(random_state_dict(config, seed=6), config)
    rng = np.random.default_rng(3)
    sources = [[int(t) for t in rng.integers(3, 30, n)] for n in [40, 3, 64, 17, 64, 30]]
    threads = tr.get_num_threads()
    try:
        for n in (1, 2):
            tr.set_num_threads(n)
            memory = model.encode(sources)
            for row, src in zip(memory, sources):
                alone = model.encode([src])[0]
                np.testing.assert_allclose(row[: len(src)], alone, rtol=1e-5, atol=1e-5)
                assert not row[len(src) :].any()
    finally:
        tr.set_num_threads(threads)
