"""Models pickle, so multiprocessing and task engines can ship them to workers.

A model loaded from a folder pickles as the folder's path and a fingerprint
of its files (the unpickling process maps the checkpoint again); one built
in memory, or whose files changed since it was loaded, pickles its weights.
Either way the unpickled model computes exactly what the original does.
BertModel and SentenceEncoder have no by-value form: they pickle by path only.
"""

from __future__ import annotations

import copy
import json
import multiprocessing as mp
import pickle
import shutil
from operator import methodcaller
from pathlib import Path

import numpy as np
import pytest

import transformer_rs as tr
from bert_helpers import minilm_dir, model_variant
from transformer_rs.reference.model import random_state_dict

DATA = Path(__file__).parent / "data"
SRC = [[5, 9, 13, 4, 7], [11, 3], [8, 8, 20, 31, 2, 6, 17]]
CALLS = [
    methodcaller("encode", SRC),
    methodcaller("generate", SRC, max_new_tokens=10),
    methodcaller("generate", SRC, beam_size=3, num_hypotheses=2, max_new_tokens=8),
]


def outputs(model):
    """What `model` computes on a few calls, in a bitwise-comparable form."""
    return [
        out.tobytes() if isinstance(out, np.ndarray) else out for out in (c(model) for c in CALLS)
    ]


@pytest.fixture
def folder(tmp_path):
    """A private copy of a checkpoint folder (tests modify it)."""
    path = tmp_path / "model"
    shutil.copytree(DATA / "tiny_post_ln", path)
    return path


@pytest.fixture(scope="module")
def in_memory():
    config = json_config(DATA / "tiny_pre_ln_gelu")
    return tr.Transformer.from_state_dict(random_state_dict(config, seed=3), config)


def json_config(path):
    return json.loads((path / "config.json").read_text())


@pytest.mark.parametrize("protocol", [2, pickle.DEFAULT_PROTOCOL, pickle.HIGHEST_PROTOCOL])
def test_loaded_model_pickles_as_its_path(folder, protocol):
    model = tr.Transformer.load(folder)
    data = pickle.dumps(model, protocol=protocol)
    assert len(data) < 2000  # a path and a fingerprint, not the weights
    assert str(folder) in data.decode("latin-1")
    clone = pickle.loads(data)
    assert isinstance(clone, tr.Transformer) and clone is not model
    assert clone.config == model.config
    assert outputs(clone) == outputs(model)
    # The clone pickles by path again.
    assert len(pickle.dumps(clone, protocol=protocol)) < 2000


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_in_memory_model_pickles_its_weights(in_memory, protocol):
    n_weights = sum(a.size for a in random_state_dict(in_memory.config.to_dict()).values())
    data = pickle.dumps(in_memory, protocol=protocol)
    assert len(data) > 4 * n_weights
    clone = pickle.loads(data)
    assert clone.config == in_memory.config
    assert outputs(clone) == outputs(in_memory)


def test_copy_and_deepcopy(folder, in_memory):
    for model in (tr.Transformer.load(folder), in_memory):
        for clone in (copy.copy(model), copy.deepcopy(model)):
            assert outputs(clone) == outputs(model)


def test_a_relative_path_is_pickled_absolute(folder, monkeypatch):
    monkeypatch.chdir(folder.parent)
    model = tr.Transformer.load("model")
    data = pickle.dumps(model)
    monkeypatch.chdir("/")
    assert outputs(pickle.loads(data)) == outputs(model)


def test_files_replaced_after_loading_pickle_the_loaded_weights(folder, in_memory):
    """The model keeps computing with the weights it loaded; its pickle must
    hold those, not the folder's new contents."""
    model = tr.Transformer.load(folder)
    expected = outputs(model)
    other = tr.Transformer.from_state_dict(
        random_state_dict(model.config.to_dict(), seed=9), model.config
    )
    other.save(folder)
    assert outputs(tr.Transformer.load(folder)) != expected
    data = pickle.dumps(model)
    assert len(data) > 10_000  # by value
    assert outputs(pickle.loads(data)) == expected


def test_unpickling_refuses_a_changed_folder(folder):
    model = tr.Transformer.load(folder)
    data = pickle.dumps(model)
    config = folder / "config.json"
    config.write_text(config.read_text() + " ")
    with pytest.raises(tr.CheckpointError, match="changed since"):
        pickle.loads(data)


def test_unpickling_a_missing_folder_raises_file_not_found(folder):
    data = pickle.dumps(tr.Transformer.load(folder))
    shutil.rmtree(folder)
    with pytest.raises(FileNotFoundError, match="not found"):
        pickle.loads(data)


@pytest.mark.parametrize("method", ["spawn", "fork", "forkserver"])
def test_multiprocessing_pool_ships_models_to_workers(folder, in_memory, method):
    models = [tr.Transformer.load(folder), in_memory]
    expected = [call(m) for m in models for call in CALLS]
    with mp.get_context(method).Pool(2) as pool:
        jobs = [pool.apply_async(call, (m,)) for m in models for call in CALLS]
        got = [job.get(timeout=120) for job in jobs]
    for g, e in zip(got, expected):
        if isinstance(e, np.ndarray):
            assert g.dtype == e.dtype and g.tobytes() == e.tobytes()
        else:
            assert g == e


# --------------------------------------------------------------------------
# BERT encoders can only be rebuilt from their folder: they pickle by path.

SENTENCES = ["A man is eating food.", "", "Deux chats dorment sur le canapé."]


@pytest.fixture
def minilm(tmp_path):
    """A private MiniLM folder: files symlinked, config.json a real copy."""
    config = json.loads((minilm_dir() / "config.json").read_text())
    return model_variant(tmp_path / "minilm", replace={"config.json": config})


def test_bert_model_pickles_as_its_path(minilm):
    bert = tr.BertModel.load(minilm)
    ids = np.array([[101, 2023, 2003, 1037, 3231, 102], [101, 7592, 102, 0, 0, 0]])
    mask = (ids != 0).astype(np.int64)
    data = pickle.dumps(bert)
    assert len(data) < 2000
    clone = pickle.loads(data)
    assert clone.config == bert.config
    assert clone.forward(ids, mask).tobytes() == bert.forward(ids, mask).tobytes()


def test_sentence_encoder_pickles_as_its_path(minilm):
    encoder = tr.SentenceEncoder.load(minilm)
    data = pickle.dumps(encoder)
    assert len(data) < 4000
    clone = pickle.loads(data)
    assert clone.encode(SENTENCES).tobytes() == encoder.encode(SENTENCES).tobytes()
    with mp.get_context("spawn").Pool(1) as pool:
        shipped = pool.apply_async(methodcaller("encode", SENTENCES), (encoder,)).get(timeout=120)
    assert shipped.tobytes() == encoder.encode(SENTENCES).tobytes()


@pytest.mark.parametrize("kind", ["BertModel", "SentenceEncoder"])
def test_bert_encoders_with_changed_files_refuse_to_pickle(minilm, kind):
    """They have no by-value form: pickling the folder's new contents would
    ship other weights, so pickling fails, naming the folder."""
    model = getattr(tr, kind).load(minilm)
    config = minilm / "config.json"
    config.write_text(config.read_text() + " ")
    with pytest.raises(pickle.PicklingError, match="changed since it was loaded"):
        pickle.dumps(model)


def test_bert_encoder_unpickling_refuses_a_changed_folder(minilm):
    data = pickle.dumps(tr.SentenceEncoder.load(minilm))
    config = minilm / "config.json"
    config.write_text(config.read_text() + " ")
    with pytest.raises(tr.CheckpointError, match="changed since"):
        pickle.loads(data)
