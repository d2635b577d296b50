"""Smoke and API tests of tr.Transformer against the PyTorch golden fixtures.

tests/data/tiny_post_ln and tests/data/tiny_pre_ln_gelu are copies of the
fixtures made by PyTorch 2.13 from the tutorial's Seq2SeqTransformer (see the
project's fixtures README): a checkpoint plus cases.npz with encoder memory,
decoder logits and greedy decodes.
"""

from __future__ import annotations

import json
import shutil
import struct
import threading
from pathlib import Path

import numpy as np
import pytest

import transformer_rs as tr

DATA = Path(__file__).parent / "data"
CASES = ["tiny_post_ln", "tiny_pre_ln_gelu"]
TOL = 1e-4


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """A minimal safetensors reader (float32/float16 only), independent of the code under test."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    data = raw[8 + n :]
    dtypes = {"F32": "<f4", "F16": "<f2"}
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        lo, hi = info["data_offsets"]
        out[name] = np.frombuffer(data[lo:hi], dtype=dtypes[info["dtype"]]).reshape(info["shape"])
    return out


def write_safetensors(path: Path, tensors: dict[str, np.ndarray]) -> None:
    names = {np.dtype("<f4"): "F32", np.dtype("<f2"): "F16"}
    header, blobs, offset = {}, [], 0
    for name, arr in tensors.items():
        b = np.ascontiguousarray(arr).tobytes()
        header[name] = {
            "dtype": names[arr.dtype],
            "shape": list(arr.shape),
            "data_offsets": [offset, offset + len(b)],
        }
        blobs.append(b)
        offset += len(b)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


@pytest.fixture(scope="module", params=CASES)
def case(request):
    folder = DATA / request.param
    return folder, tr.Transformer.load(folder), dict(np.load(folder / "cases.npz"))


def test_encode_decode_forward_match_pytorch(case):
    _, model, c = case
    memory = model.encode(c["src"])
    assert memory.dtype == np.float32 and memory.flags.c_contiguous
    keep_src = ~c["src_pad"]
    np.testing.assert_allclose(memory[keep_src], c["memory"][keep_src], atol=TOL, rtol=TOL)
    keep_tgt = ~c["tgt_pad"]
    logits = model.decode(c["tgt"], memory, c["src_pad"])
    np.testing.assert_allclose(logits[keep_tgt], c["logits"][keep_tgt], atol=TOL, rtol=TOL)
    logits = model.forward(c["src"], c["tgt"])
    np.testing.assert_allclose(logits[keep_tgt], c["logits"][keep_tgt], atol=TOL, rtol=TOL)


def test_greedy_generate_matches_pytorch(case):
    _, model, c = case
    cfg = model.config
    got = model.generate(c["src"], max_new_tokens=int(c["greedy_max_new"]))
    for row, ref in zip(got, c["greedy"]):
        ref = list(ref[1:])
        # The reference pads finished rows with pad_id after eos.
        if cfg.eos_id in ref:
            ref = ref[: ref.index(cfg.eos_id) + 1]
        assert row == ref


def test_ragged_lists_are_padded_with_pad_id(case):
    _, model, c = case
    src = c["src"]
    ragged = [[int(t) for t, pad in zip(row, p) if not pad] for row, p in zip(src, c["src_pad"])]
    np.testing.assert_array_equal(model.encode(ragged), model.encode(src))
    assert model.generate(ragged, max_new_tokens=5) == model.generate(src, max_new_tokens=5)


def test_scores_are_length_normalised_log_probs(case):
    _, model, c = case
    src = c["src"][:1]
    for lp in (0.0, 1.0, 0.6):
        [[(tokens, score)]] = model.generate(
            src, max_new_tokens=6, return_scores=True, length_penalty=lp
        )
        tgt = np.array([[model.config.bos_id] + tokens[:-1]])
        logp = log_softmax(model.forward(src, tgt))[0]
        total = sum(logp[i, t] for i, t in enumerate(tokens))
        assert score == pytest.approx(total / len(tokens) ** lp, abs=1e-4)


def test_beam_search_shapes(case):
    _, model, c = case
    out = model.generate(c["src"], max_new_tokens=5, beam_size=3, num_hypotheses=2)
    assert len(out) == len(c["src"])
    for hyps in out:
        assert 1 <= len(hyps) <= 2
        scores = [s for _, s in hyps]
        assert scores == sorted(scores, reverse=True)
        for tokens, score in hyps:
            assert all(isinstance(t, int) for t in tokens) and isinstance(score, float)
            assert 1 <= len(tokens) <= 5
    plain = model.generate(c["src"], max_new_tokens=5, beam_size=3)
    assert all(isinstance(row, list) and all(isinstance(t, int) for t in row) for row in plain)
    assert model.generate(c["src"], max_new_tokens=0) == [[] for _ in c["src"]]


def test_save_load_and_from_state_dict_round_trip(case, tmp_path):
    folder, model, c = case
    expected = model.forward(c["src"], c["tgt"])
    model.save(tmp_path / "saved")
    again = tr.Transformer.load(tmp_path / "saved")
    assert again.config == model.config
    np.testing.assert_array_equal(again.forward(c["src"], c["tgt"]), expected)

    state = read_safetensors(folder / "model.safetensors")
    config = json.loads((folder / "config.json").read_text())
    from_dict = tr.Transformer.from_state_dict(state, config)
    np.testing.assert_array_equal(from_dict.forward(c["src"], c["tgt"]), expected)
    from_cfg = tr.Transformer.from_state_dict(state, tr.TransformerConfig(**config))
    np.testing.assert_array_equal(from_cfg.forward(c["src"], c["tgt"]), expected)


def test_float16_checkpoint_is_widened(tmp_path):
    folder = DATA / "tiny_post_ln"
    state = read_safetensors(folder / "model.safetensors")
    state = {k: v.astype(np.float16) for k, v in state.items()}
    out = tmp_path / "half"
    out.mkdir()
    shutil.copy(folder / "config.json", out / "config.json")
    write_safetensors(out / "model.safetensors", state)
    half = tr.Transformer.load(out)
    widened = tr.Transformer.from_state_dict(
        {k: v.astype(np.float32) for k, v in state.items()}, half.config
    )
    c = np.load(folder / "cases.npz")
    np.testing.assert_array_equal(
        half.forward(c["src"], c["tgt"]), widened.forward(c["src"], c["tgt"])
    )


def test_config_is_a_frozen_dataclass(case):
    folder, model, _ = case
    cfg = model.config
    assert cfg.to_dict() == json.loads((folder / "config.json").read_text())
    with pytest.raises(AttributeError):
        cfg.d_model = 3


def test_inputs_are_not_modified_and_threads_agree(case):
    _, model, c = case
    src = c["src"].copy()
    results = [None] * 4

    def run(i):
        results[i] = model.encode(src)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    np.testing.assert_array_equal(src, c["src"])
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])


# ---------------------------------------------------------------------- errors


@pytest.fixture(scope="module")
def model():
    return tr.Transformer.load(DATA / "tiny_post_ln")


def test_token_errors_name_the_argument(model):
    v = model.config.src_vocab_size
    with pytest.raises(ValueError, match=r"src.*-1"):
        model.encode([[3, -1]])
    with pytest.raises(ValueError, match=rf"src.*{v}"):
        model.encode(np.array([[3, v]]))
    with pytest.raises(ValueError, match="tgt"):
        model.forward([[3]], [[model.config.tgt_vocab_size]])
    with pytest.raises(ValueError, match="max_len"):
        model.encode(np.ones((1, model.config.max_len + 1), dtype=np.int64))
    with pytest.raises(TypeError, match="src"):
        model.encode(np.array([[1.0, 2.0]]))
    with pytest.raises(ValueError, match="src"):
        model.encode(np.array([1, 2]))


def test_decode_argument_errors(model):
    memory = model.encode([[3, 4]])
    with pytest.raises(ValueError, match="memory"):
        model.decode([[1]], memory[:, :, :-1])
    with pytest.raises(ValueError, match="memory"):
        model.decode([[1]], memory[0])
    with pytest.raises(ValueError, match="memory_key_padding_mask"):
        model.decode([[1]], memory, np.zeros((1, 3), dtype=bool))
    with pytest.raises(TypeError, match="memory_key_padding_mask"):
        model.decode([[1]], memory, np.zeros((1, 2)))


@pytest.mark.parametrize(
    "kwargs, error, word",
    [
        ({"max_new_tokens": -1}, ValueError, "max_new_tokens"),
        ({"max_new_tokens": 10**6}, ValueError, "max_new_tokens"),
        ({"beam_size": 0}, ValueError, "beam_size"),
        ({"beam_size": 2, "num_hypotheses": 3}, ValueError, "num_hypotheses"),
        ({"num_hypotheses": 0}, ValueError, "num_hypotheses"),
        ({"beam_size": 1.5}, TypeError, "beam_size"),
        ({"length_penalty": float("nan")}, ValueError, "length_penalty"),
    ],
)
def test_generate_argument_errors(model, kwargs, error, word):
    with pytest.raises(error, match=word):
        model.generate([[3, 4]], **kwargs)


def test_loading_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        tr.Transformer.load(tmp_path / "nope")
    folder = tmp_path / "ckpt"
    shutil.copytree(DATA / "tiny_post_ln", folder)
    (folder / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(tr.CheckpointError, match="safetensors"):
        tr.Transformer.load(folder)
    (folder / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError):
        tr.Transformer.load(folder)

    state = read_safetensors(DATA / "tiny_post_ln" / "model.safetensors")
    config = json.loads((DATA / "tiny_post_ln" / "config.json").read_text())
    missing = {k: v for k, v in state.items() if k != "generator.bias"}
    with pytest.raises(tr.CheckpointError, match="generator.bias"):
        tr.Transformer.from_state_dict(missing, config)
    with pytest.raises(tr.CheckpointError, match=r"src_tok_emb.embedding.weight.*src_vocab_size"):
        tr.Transformer.from_state_dict(state, {**config, "src_vocab_size": 49})
    with pytest.raises(tr.CheckpointError, match="n_heads"):
        tr.Transformer.from_state_dict(state, {**config, "n_heads": 5})
    with pytest.raises(ValueError, match="d_ff"):
        tr.Transformer.from_state_dict(state, {k: v for k, v in config.items() if k != "d_ff"})


class FakeTorchTensor:
    """Duck-types the torch.Tensor methods from_state_dict uses (torch is not a test dependency)."""

    def __init__(self, array, dtype_is_float=True):
        self.array = array
        self.calls = []
        self.dtype_is_float = dtype_is_float

    def detach(self):
        self.calls.append("detach")
        return self

    def cpu(self):
        self.calls.append("cpu")
        return self

    def is_floating_point(self):
        return self.dtype_is_float

    def float(self):
        self.calls.append("float")
        return FakeTorchTensor(self.array.astype(np.float32))

    def numpy(self):
        return self.array


def test_from_state_dict_accepts_torch_like_tensors():
    folder = DATA / "tiny_pre_ln_gelu"
    state = read_safetensors(folder / "model.safetensors")
    config = json.loads((folder / "config.json").read_text())
    fakes = {k: FakeTorchTensor(v.astype(np.float16)) for k, v in state.items()}
    model = tr.Transformer.from_state_dict(fakes, config)
    assert all(f.calls == ["detach", "cpu", "float"] for f in fakes.values())
    reference = tr.Transformer.from_state_dict(
        {k: v.astype(np.float16).astype(np.float32) for k, v in state.items()}, config
    )
    c = np.load(folder / "cases.npz")
    np.testing.assert_array_equal(
        model.forward(c["src"], c["tgt"]), reference.forward(c["src"], c["tgt"])
    )


def test_generate_from_many_threads_agrees(model):
    src = [[3, 4, 5], [6, 7]]
    expected = model.generate(src, max_new_tokens=8, beam_size=2, num_hypotheses=2)
    results = [None] * 4

    def run(i):
        results[i] = model.generate(src, max_new_tokens=8, beam_size=2, num_hypotheses=2)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [expected] * 4


def test_native_model_refuses_fortran_ordered_arrays():
    """NumPy calls a Fortran-ordered array contiguous too; read as row-major
    it would be silently transposed, so the binding refuses it, naming it."""
    from transformer_rs import _native

    native = _native.NativeTransformer.load(str(DATA / "tiny_post_ln"))
    src = np.asfortranarray(np.array([[5, 6, 7], [8, 9, 10]], dtype=np.int64))
    with pytest.raises(TypeError, match="src: expected a C-contiguous"):
        native.encode(src)
    memory = native.encode(np.ascontiguousarray(src))
    tgt = np.array([[1, 5], [1, 6]], dtype=np.int64)
    with pytest.raises(TypeError, match="memory: expected a C-contiguous"):
        native.decode(tgt, np.asfortranarray(memory), None)
