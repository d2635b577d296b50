"""A battery of bad inputs across ops, model calls, checkpoints and configs.

Each case asserts the exception class AND a fragment of its message (which
must name the argument, tensor or key). Cases run in-process when they can
only fail validation; cases that could crash the interpreter (huge claimed
allocations, malformed headers, overflowing shapes, special files) run in a
child interpreter (tests/isolated.py), so a crash fails the case instead of
killing the run. In-process cases also check that no array argument was
modified by the failing call.
"""

# ruff: noqa: E501  (the case tables keep one case per line)
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

import transformer_rs as tr
from isolated import Worker
from transformer_rs import _native
from transformer_rs.reference.model import load_safetensors

DATA = Path(__file__).parent / "data"
GOLDEN = DATA / "tiny_post_ln"  # d_model 32, 4 heads, vocab 50 -> 60, max_len 256
CONFIG = json.loads((GOLDEN / "config.json").read_text())
STATE = load_safetensors(GOLDEN / "model.safetensors")
MODEL = tr.Transformer.load(GOLDEN)
NATIVE = MODEL._native

rng = np.random.default_rng(0)
X = rng.standard_normal((2, 3, 8)).astype(np.float32)
W = rng.standard_normal((5, 8)).astype(np.float32)
Q = rng.standard_normal((2, 4, 6, 8)).astype(np.float32)
E16 = rng.standard_normal((2, 5, 16)).astype(np.float32)
IN_W = rng.standard_normal((48, 16)).astype(np.float32)
IN_B = np.zeros(48, np.float32)
OUT_W = rng.standard_normal((16, 16)).astype(np.float32)
OUT_B = np.zeros(16, np.float32)
SRC = np.array([[4, 9, 41, 47], [41, 15, 0, 0]])
TGT = np.array([[1, 58, 10], [1, 17, 4]])
MEMORY = MODEL.encode(SRC)


def config(**edits):
    return {**CONFIG, **edits}


def case(case_id, fn, *args, exc, match, **kwargs):
    return pytest.param(fn, args, kwargs, exc, match, id=case_id)


# fmt: off
IN_PROCESS = [
    # -- ops ---------------------------------------------------------------
    case("matmul-0d", tr.ops.matmul, np.float32(2.0), W, exc=ValueError, match="a: expected at least 1"),
    case("matmul-inner-mismatch", tr.ops.matmul, X, W, exc=ValueError, match="b: expected shape"),
    case("matmul-complex", tr.ops.matmul, X.astype(np.complex64), W.T, exc=TypeError, match="a: expected a float array"),
    case("matmul-strings", tr.ops.matmul, [["a", "b"]], W, exc=TypeError, match="a: expected a float array"),
    case("matmul-ragged-list", tr.ops.matmul, [[1.0, 2.0], [3.0]], W, exc=ValueError, match="a: cannot convert"),
    case("matmul-batch-no-broadcast", tr.ops.matmul, Q, rng.standard_normal((3, 8, 2)), exc=ValueError, match="does not broadcast"),
    case("linear-weight-shape", tr.ops.linear, X, W.T, exc=ValueError, match="weight: expected shape [out_features, 8]"),
    case("linear-bias-length", tr.ops.linear, X, W, np.zeros(4), exc=ValueError, match="bias: expected shape [5]"),
    case("linear-int-x", tr.ops.linear, X.astype(np.int32), W, exc=TypeError, match="x: expected a float array"),
    case("softmax-axis-range", tr.ops.softmax, X, axis=3, exc=ValueError, match="axis: expected an axis"),
    case("softmax-axis-float", tr.ops.softmax, X, axis=1.0, exc=TypeError, match="axis: expected an int"),
    case("log-softmax-object", tr.ops.log_softmax, np.array([None, 1.0]), exc=TypeError, match="x: expected a float array"),
    case("layer-norm-eps-negative", tr.ops.layer_norm, X, None, None, eps=-1e-5, exc=ValueError, match="eps: expected a finite number"),
    case("layer-norm-eps-nan", tr.ops.layer_norm, X, None, None, eps=float("nan"), exc=ValueError, match="eps: expected a finite number"),
    case("layer-norm-weight-shape", tr.ops.layer_norm, X, np.ones(7), None, exc=ValueError, match="weight: expected shape [8]"),
    case("gelu-int", tr.ops.gelu, np.arange(4), exc=TypeError, match="x: expected a float array"),
    case("relu-bool", tr.ops.relu, np.ones(3, bool), exc=TypeError, match="x: expected a float array"),
    case("sdpa-key-width", tr.ops.scaled_dot_product_attention, Q, Q[..., :4], Q, exc=ValueError, match="k: expected shape"),
    case("sdpa-value-length", tr.ops.scaled_dot_product_attention, Q, Q, Q[:, :, :5], exc=ValueError, match="v: expected shape"),
    case("sdpa-int-mask", tr.ops.scaled_dot_product_attention, Q, Q, Q, np.ones((6, 6), np.int8), exc=TypeError, match="attn_mask: expected a bool or float mask"),
    case("sdpa-mask-shape", tr.ops.scaled_dot_product_attention, Q, Q, Q, np.ones((5, 6), bool), exc=ValueError, match="attn_mask: expected a shape"),
    case("sdpa-is-causal-str", tr.ops.scaled_dot_product_attention, Q, Q, Q, is_causal="yes", exc=TypeError, match="is_causal: expected a bool"),
    case("sdpa-scale-str", tr.ops.scaled_dot_product_attention, Q, Q, Q, scale="1", exc=TypeError, match="scale: expected a real number"),
    case("mha-zero-heads", tr.ops.multi_head_attention, E16, E16, E16, 0, IN_W, IN_B, OUT_W, OUT_B, exc=ValueError, match="num_heads: expected a positive"),
    case("mha-heads-not-divisor", tr.ops.multi_head_attention, E16, E16, E16, 3, IN_W, IN_B, OUT_W, OUT_B, exc=ValueError, match="not divisible by num_heads = 3"),
    case("mha-in-proj-shape", tr.ops.multi_head_attention, E16, E16, E16, 4, IN_W[:47], IN_B, OUT_W, OUT_B, exc=ValueError, match="in_proj_weight: expected shape"),
    case("mha-padding-shape", tr.ops.multi_head_attention, E16, E16, E16, 4, IN_W, IN_B, OUT_W, OUT_B, key_padding_mask=np.zeros((2, 4), bool), exc=ValueError, match="key_padding_mask: expected shape"),
    case("mha-1d-query", tr.ops.multi_head_attention, E16[0, 0], E16, E16, 4, IN_W, IN_B, OUT_W, OUT_B, exc=ValueError, match="query: expected shape"),
    # -- the native ops alone (the Rust layer re-validates) ---------------------
    case("native-matmul-inner", _native.matmul, X, W, exc=ValueError, match="b: expected shape [..., 8, N]"),
    case("native-linear-weight", _native.linear, X, W.T, None, exc=ValueError, match="weight: expected shape"),
    case("native-layer-norm-bias", _native.layer_norm, X, np.ones(8, np.float32), np.ones(3, np.float32), 1e-5, exc=ValueError, match="bias: expected shape [8]"),
    case("native-sdpa-mask-shape", _native.scaled_dot_product_attention, Q, Q, Q, np.zeros((2, 6), np.float32), exc=ValueError, match="attn_mask: expected shape"),
    case("native-mha-zero-heads", _native.multi_head_attention, E16, E16, E16, 0, IN_W, IN_B, OUT_W, OUT_B, exc=ValueError, match="num_heads"),
    case("native-fortran-order", _native.relu, np.asfortranarray(W), exc=TypeError, match="C-contiguous"),
    # -- model calls -----------------------------------------------------------
    case("encode-id-too-large", MODEL.encode, [[4, 50]], exc=ValueError, match="src: token id 50 at [0, 1] is outside the vocabulary"),
    case("encode-negative-id", MODEL.encode, np.array([[3, -1]]), exc=ValueError, match="token id -1"),
    case("encode-float-ids", MODEL.encode, np.array([[1.0, 2.0]]), exc=TypeError, match="src: expected integer token ids"),
    case("encode-ragged-non-int", MODEL.encode, [[1, 2], [3, "x"]], exc=TypeError, match="src[1]: expected integer token ids"),
    case("encode-ragged-nested", MODEL.encode, [[1, 2], [3, [4, 5]]], exc=ValueError, match="src[1]: cannot convert"),
    case("encode-3d", MODEL.encode, np.zeros((1, 2, 3), np.int64), exc=ValueError, match="src: expected a 2-D array"),
    case("encode-too-long", MODEL.encode, np.ones((1, 257), np.int64), exc=ValueError, match="src: length 257 exceeds max_len = 256"),
    case("encode-string", MODEL.encode, "hello", exc=TypeError, match="src: expected integer token ids"),
    case("encode-uint64-huge", MODEL.encode, np.array([[2**63]], np.uint64), exc=ValueError, match="src: token id 9223372036854775808"),
    case("encode-bool-ids", MODEL.encode, np.ones((1, 2), bool), exc=TypeError, match="src: expected integer token ids"),
    case("decode-memory-width", MODEL.decode, TGT, MEMORY[..., :31], exc=ValueError, match="memory: expected width d_model = 32"),
    case("decode-memory-complex", MODEL.decode, TGT, MEMORY.astype(np.complex64), exc=TypeError, match="memory: expected a real float array"),
    case("decode-memory-2d", MODEL.decode, TGT, MEMORY[0], exc=ValueError, match="memory: expected a 3-D array"),
    case("decode-mask-dtype", MODEL.decode, TGT, MEMORY, np.zeros((2, 4), np.int8), exc=TypeError, match="memory_key_padding_mask: expected a bool array"),
    case("decode-mask-shape", MODEL.decode, TGT, MEMORY, np.zeros((2, 3), bool), exc=ValueError, match="memory_key_padding_mask: expected shape"),
    case("decode-batch-mismatch", MODEL.decode, TGT[:1], MEMORY, exc=ValueError, match="memory: batch size 2 does not match"),
    case("decode-tgt-id", MODEL.decode, np.array([[1, 60], [1, 2]]), MEMORY, exc=ValueError, match="tgt: token id 60"),
    case("forward-batch-mismatch", MODEL.forward, SRC, TGT[:1], exc=ValueError, match="tgt: batch size 1 does not match"),
    case("generate-negative-max-new", MODEL.generate, SRC, max_new_tokens=-1, exc=ValueError, match="max_new_tokens: expected a non-negative"),
    case("generate-huge-max-new", MODEL.generate, SRC, max_new_tokens=10**30, exc=ValueError, match="max_new_tokens: at most max_len = 256"),
    case("generate-float-max-new", MODEL.generate, SRC, max_new_tokens=2.0, exc=TypeError, match="max_new_tokens: expected an integer"),
    case("generate-beam-zero", MODEL.generate, SRC, beam_size=0, exc=ValueError, match="beam_size: expected an integer >= 1"),
    case("generate-beam-bool", MODEL.generate, SRC, beam_size=True, exc=TypeError, match="beam_size: expected an integer, got bool"),
    case("generate-hyps-over-beam", MODEL.generate, SRC, beam_size=2, num_hypotheses=3, exc=ValueError, match="num_hypotheses: expected between 1 and beam_size (2)"),
    case("generate-penalty-nan", MODEL.generate, SRC, length_penalty=float("nan"), exc=ValueError, match="length_penalty: expected a finite number"),
    case("generate-penalty-str", MODEL.generate, SRC, length_penalty="1", exc=TypeError, match="length_penalty: expected a real number"),
    case("generate-return-scores-str", MODEL.generate, SRC, return_scores="no", exc=TypeError, match="return_scores: expected a bool"),
    # -- the native model alone --------------------------------------------------
    case("native-encode-id", NATIVE.encode, np.array([[99]]), exc=ValueError, match="src: token id 99"),
    case("native-encode-too-long", NATIVE.encode, np.ones((1, 300), np.int64), exc=ValueError, match="exceeds max_len"),
    case("native-encode-fortran", NATIVE.encode, np.asfortranarray(np.ones((2, 3), np.int64)), exc=TypeError, match="src: expected a C-contiguous"),
    case("native-decode-width", NATIVE.decode, TGT, np.zeros((2, 4, 8), np.float32), None, exc=ValueError, match="memory: expected width d_model = 32"),
    case("native-decode-mask", NATIVE.decode, TGT, MEMORY, np.zeros((2, 5), bool), exc=ValueError, match="memory_key_padding_mask: expected shape [2, 4]"),
    case("native-forward-batch", NATIVE.forward, SRC, TGT[:1], exc=ValueError, match="batch size"),
    case("native-generate-beam-zero", NATIVE.generate, SRC, 5, 0, 1.0, 1, True, exc=ValueError, match="beam_size"),
    case("native-generate-hyps", NATIVE.generate, SRC, 5, 2, 1.0, 3, True, exc=ValueError, match="num_hypotheses"),
    case("native-generate-max-new", NATIVE.generate, SRC, 10**6, 1, 1.0, 1, False, exc=ValueError, match="max_new_tokens: at most max_len"),
    case("native-generate-penalty-inf", NATIVE.generate, SRC, 5, 2, float("inf"), 1, True, exc=ValueError, match="length_penalty"),
    case("native-generate-negative", NATIVE.generate, SRC, -1, 1, 1.0, 1, False, exc=OverflowError, match="negative"),
    case("native-from-tensors-json", _native.NativeTransformer.from_tensors, "{", [], [], exc=tr.CheckpointError, match="config: not valid JSON"),
    case("native-from-tensors-lengths", _native.NativeTransformer.from_tensors, json.dumps(CONFIG), ["a"], [], exc=ValueError, match="names and arrays differ in length"),
    case("load-path-int", tr.Transformer.load, 123, exc=TypeError, match="path: expected a str or os.PathLike"),
    case("load-path-nul", tr.Transformer.load, "a\0b", exc=ValueError, match="path: embedded null"),
    case("save-empty-path", MODEL.save, "", exc=ValueError, match="path: expected a folder"),
    case("native-save-empty-path", NATIVE.save, "", exc=ValueError, match="path: expected a folder"),
    # -- configs and state dicts ---------------------------------------------------
    case("config-missing-key", tr.Transformer.from_state_dict, STATE, {k: v for k, v in CONFIG.items() if k != "d_ff"}, exc=tr.CheckpointError, match="missing key `d_ff`"),
    case("config-string-size", tr.Transformer.from_state_dict, STATE, config(d_model="32"), exc=tr.CheckpointError, match="`d_model` must be a non-negative integer"),
    case("config-float-size", tr.Transformer.from_state_dict, STATE, config(n_heads=4.5), exc=tr.CheckpointError, match="`n_heads` must be a non-negative integer"),
    case("config-not-divisible", tr.Transformer.from_state_dict, STATE, config(n_heads=5), exc=tr.CheckpointError, match="must be divisible by `n_heads` (5)"),
    case("config-zero-size", tr.Transformer.from_state_dict, STATE, config(d_ff=0), exc=tr.CheckpointError, match="`d_ff` must be a positive integer"),
    case("config-bos-outside-vocab", tr.Transformer.from_state_dict, STATE, config(bos_id=60), exc=tr.CheckpointError, match="`bos_id` must be an id in [0, 60)"),
    case("config-pad-negative", tr.Transformer.from_state_dict, STATE, config(pad_id=-1), exc=tr.CheckpointError, match="`pad_id`"),
    case("config-activation", tr.Transformer.from_state_dict, STATE, config(activation="swish"), exc=tr.CheckpointError, match="`activation` must be"),
    case("config-norm-first-int", tr.Transformer.from_state_dict, STATE, config(norm_first=1), exc=tr.CheckpointError, match="`norm_first` must be true or false"),
    case("config-eps-nan", tr.Transformer.from_state_dict, STATE, config(layer_norm_eps=float("nan")), exc=tr.CheckpointError, match="`layer_norm_eps` must be a finite number"),
    case("config-eps-negative", tr.Transformer.from_state_dict, STATE, config(layer_norm_eps=-1.0), exc=tr.CheckpointError, match="`layer_norm_eps` must be a positive"),
    case("config-huge-vocab", tr.Transformer.from_state_dict, STATE, config(src_vocab_size=10**15), exc=tr.CheckpointError, match="src_vocab_size"),
    case("config-huge-max-len", tr.Transformer.from_state_dict, STATE, config(max_len=2**40), exc=tr.CheckpointError, match="`max_len` × `d_model`"),
    case("config-too-big-int", tr.Transformer.from_state_dict, STATE, config(d_model=10**30), exc=tr.CheckpointError, match="`d_model` must be a non-negative integer"),
    case("config-contradicts-weights", tr.Transformer.from_state_dict, STATE, config(d_ff=65), exc=tr.CheckpointError, match="linear1.weight` has shape [64, 32]"),
    case("config-not-a-mapping", tr.Transformer.from_state_dict, STATE, [1, 2], exc=TypeError, match="config: expected a dict"),
    case("state-dict-not-a-mapping", tr.Transformer.from_state_dict, list(STATE.items()), CONFIG, exc=TypeError, match="state_dict: expected a mapping"),
    case("state-dict-missing-tensor", tr.Transformer.from_state_dict, {k: v for k, v in STATE.items() if k != "generator.bias"}, CONFIG, exc=tr.CheckpointError, match="missing tensor `generator.bias`"),
    case("state-dict-wrong-shape", tr.Transformer.from_state_dict, {**STATE, "generator.bias": np.zeros(59)}, CONFIG, exc=tr.CheckpointError, match="`generator.bias` has shape [59]"),
    case("state-dict-strings", tr.Transformer.from_state_dict, {**STATE, "generator.bias": np.array(["a"])}, CONFIG, exc=TypeError, match="state_dict['generator.bias']: expected a numeric array"),
    case("state-dict-ragged", tr.Transformer.from_state_dict, {**STATE, "generator.bias": [[1.0], [1.0, 2.0]]}, CONFIG, exc=ValueError, match="state_dict['generator.bias']: cannot convert"),
]
# fmt: on


def _arrays(value):
    """Every NumPy array inside ``value`` (args, kwargs, dicts, lists)."""
    if isinstance(value, np.ndarray):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _arrays(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _arrays(v)


@pytest.mark.parametrize("fn, args, kwargs, exc, match", IN_PROCESS)
def test_bad_input_raises_and_leaves_arguments_unchanged(fn, args, kwargs, exc, match):
    before = copy.deepcopy((args, kwargs))
    with pytest.raises(exc) as info:
        fn(*args, **kwargs)
    assert match in str(info.value), f"{match!r} not in {str(info.value)!r}"
    assert "internal error" not in str(info.value)
    for old, new in zip(_arrays(before), _arrays((args, kwargs))):
        assert old.dtype == new.dtype and old.shape == new.shape
        np.testing.assert_array_equal(old, new)


def test_battery_is_at_least_forty_distinct_cases():
    ids = [p.id for p in IN_PROCESS] + [c[0] for c in ISOLATED]
    assert len(set(ids)) == len(ids) >= 40


def test_nan_and_inf_inputs_compute_without_error():
    """Non-finite values are data, not errors: they propagate, the call
    returns, and the input stays as it was."""
    x = np.array([[np.nan, 1.0, 2.0], [0.0, 1.0, 2.0], [np.inf, 0.0, 1.0]], np.float32)
    kept = x.copy()
    out = tr.ops.softmax(x)
    np.testing.assert_allclose(out[1], tr.reference.softmax(x[1]), rtol=1e-6)
    np.testing.assert_array_equal(x, kept)
    memory = MEMORY.copy()
    memory[1] = np.nan
    kept = memory.copy()
    logits = MODEL.decode(TGT, memory)
    assert np.isfinite(logits[0]).all() and np.isnan(logits[1]).all()
    np.testing.assert_array_equal(memory, kept)


# -- cases that could crash: in a child interpreter ----------------------------

SETUP = f"""
import json, os, struct, tempfile
import numpy as np
import transformer_rs as tr

GOLDEN = {str(GOLDEN)!r}
CONFIG = json.load(open(GOLDEN + "/config.json"))
WEIGHTS = open(GOLDEN + "/model.safetensors", "rb").read()
N = struct.unpack("<Q", WEIGHTS[:8])[0]
HEADER, DATA = json.loads(WEIGHTS[8:8 + N]), WEIGHTS[8 + N:]

def header(**entries):
    "HEADER with some entries replaced (None deletes)."
    h = json.loads(json.dumps(HEADER))
    for name, entry in entries.items():
        name = name.replace("__", ".")
        if entry is None:
            del h[name]
        else:
            h[name] = {{**h.get(name, {{}}), **entry}}
    return h

def checkpoint(config=None, weights=None, h=None, data=DATA, length=None):
    "A checkpoint folder: config (dict or bytes), weights bytes, or a header."
    folder = tempfile.mkdtemp(dir=BASE)
    config = CONFIG if config is None else config
    with open(folder + "/config.json", "wb") as f:
        f.write(config if isinstance(config, bytes) else json.dumps(config).encode())
    if weights is None:
        text = json.dumps(h if h is not None else HEADER).encode()
        text += b" " * (-len(text) % 8)
        weights = struct.pack("<Q", len(text) if length is None else length) + text + data
    with open(folder + "/model.safetensors", "wb") as f:
        f.write(weights)
    return folder

def load(**kw):
    return tr.Transformer.load(checkpoint(**kw))
"""

G = "generator__weight"  # `generator.weight` [60, 32], F32
# fmt: off
ISOLATED = [
    ("tensor-1e12-squared", f"load(h=header({G}={{'shape': [10**12, 10**12]}}))", "CheckpointError", "`generator.weight`"),
    ("tensor-shape-overflows-u64", f"load(h=header({G}={{'shape': [2**32, 2**32, 2**32]}}))", "CheckpointError", "`generator.weight`"),
    ("tensor-offsets-claim-terabytes", f"load(h=header({G}={{'shape': [10**6, 10**6], 'data_offsets': [0, 4 * 10**12]}}))", "CheckpointError", "`generator.weight`"),
    ("header-length-u64-max", "load(length=2**64 - 1)", "CheckpointError", "not a valid safetensors file"),
    ("header-length-past-file", "load(length=len(WEIGHTS))", "CheckpointError", "not a valid safetensors file"),
    ("header-not-json", "load(weights=struct.pack('<Q', 4) + b'{{{{')", "CheckpointError", "not a valid safetensors file"),
    ("weights-truncated", "load(weights=WEIGHTS[:-5])", "CheckpointError", "not a valid safetensors file"),
    ("weights-empty-file", "load(weights=b'')", "CheckpointError", "not a valid safetensors file"),
    ("data-not-covered", "load(data=DATA + bytes(12))", "CheckpointError", "of the"),
    ("offsets-overlap", f"e = HEADER['generator.weight']['data_offsets']; load(h=header({G}={{'data_offsets': [e[0] - 4, e[1] - 4]}}))", "CheckpointError", "gap or overlap"),
    ("offsets-reversed", f"e = HEADER['generator.weight']['data_offsets']; load(h=header({G}={{'data_offsets': [e[1], e[0]]}}))", "CheckpointError", "`generator.weight`"),
    ("dtype-unknown", f"load(h=header({G}={{'dtype': 'F33'}}))", "CheckpointError", "`generator.weight`: unknown dtype `F33`"),
    ("dtype-integer-for-float", f"load(h=header({G}={{'dtype': 'I32'}}))", "CheckpointError", "`generator.weight` has dtype I32"),
    ("shape-wrong-same-bytes", f"load(h=header({G}={{'shape': [32, 60]}}))", "CheckpointError", "`generator.weight` has shape [32, 60]"),
    ("tensor-missing", "load(h=header(generator__bias=None), data=DATA)", "CheckpointError", "not a valid safetensors file"),
    ("config-not-json", "load(config=b'{\"d_model\": 32,')", "CheckpointError", "config: not valid JSON"),
    ("config-not-utf8", "load(config=b'\\xff\\xfe{}')", "CheckpointError", "not valid UTF-8"),
    ("config-too-large", "d = checkpoint(); f = open(d + '/config.json', 'r+b'); f.truncate(65 << 20); f.close(); tr.Transformer.load(d)", "CheckpointError", "larger than"),
    ("config-is-a-fifo", "d = checkpoint(); os.remove(d + '/config.json'); os.mkfifo(d + '/config.json'); tr.Transformer.load(d)", "CheckpointError", "config: not a regular file"),
    ("weights-is-a-fifo", "d = checkpoint(); os.remove(d + '/model.safetensors'); os.mkfifo(d + '/model.safetensors'); tr.Transformer.load(d)", "CheckpointError", "not a regular file"),
    ("weights-is-a-device", "d = checkpoint(); os.remove(d + '/model.safetensors'); os.symlink('/dev/zero', d + '/model.safetensors'); tr.Transformer.load(d)", "CheckpointError", "not a regular file"),
    ("bert-config-is-a-fifo", "d = tempfile.mkdtemp(dir=BASE); os.mkfifo(d + '/config.json'); open(d + '/model.safetensors', 'wb').close(); tr.BertModel.load(d)", "CheckpointError", "config: not a regular file"),
    ("bert-weights-1e12-squared", "d = tempfile.mkdtemp(dir=BASE); open(d + '/config.json', 'w').write(json.dumps({'model_type': 'bert', 'vocab_size': 8, 'hidden_size': 4, 'num_hidden_layers': 1, 'num_attention_heads': 1, 'intermediate_size': 4})); open(d + '/model.safetensors', 'wb').write(open(checkpoint(h=header(generator__weight={'shape': [10**12, 10**12]})) + '/model.safetensors', 'rb').read()); tr.BertModel.load(d)", "CheckpointError", "`generator.weight`"),
    ("config-d-model-2-62", "load(config={**CONFIG, 'd_model': 2**62, 'max_len': 1})", "CheckpointError", "d_model"),
    ("from-state-dict-huge-config", "tr.Transformer.from_state_dict({}, {**CONFIG, 'd_model': 2**20, 'n_heads': 1, 'd_ff': 2**45})", "CheckpointError", "`d_ff` × `d_model`"),
    ("matmul-result-terabytes", "tr.ops.matmul(np.zeros((2**20, 1, 1, 1), np.float32), np.zeros((1, 2**20, 1, 1), np.float32))", "MemoryError", "cannot allocate"),
    ("save-over-a-file", "d = checkpoint(); tr.Transformer.load(d).save(d + '/config.json')", "OSError", "config.json"),
]
# fmt: on


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    base = tmp_path_factory.mktemp("hostile")  # pytest prunes it, even after a crash
    w = Worker(setup=f"BASE = {str(base)!r}\n" + SETUP, timeout=60)
    yield w
    w.close()


@pytest.mark.parametrize(
    "code, exc, match", [c[1:] for c in ISOLATED], ids=[c[0] for c in ISOLATED]
)
def test_dangerous_input_fails_cleanly_in_a_child(worker, code, exc, match):
    outcome = worker.run(code)
    assert outcome.raised is not None, "no exception"
    assert outcome.is_a(exc), f"{outcome.raised}: {outcome.message}"
    assert match in outcome.message, f"{match!r} not in {outcome.message!r}"


def test_saving_over_the_loaded_checkpoint_keeps_the_model_intact(worker):
    """The model maps its float32 weights from the file; saving it over that
    same file (here with another layout: an extra tensor is dropped, so every
    offset moves) must not change what the model computes, nor crash it."""
    code = (
        "h = header(aaa__extra={'dtype': 'F32', 'shape': [4], 'data_offsets': [0, 16]});"
        "h = {k: ({**v, 'data_offsets': [v['data_offsets'][0] + 16, v['data_offsets'][1] + 16]}"
        "         if k != 'aaa.extra' else v) for k, v in h.items()};"
        "d = checkpoint(h=h, data=bytes(16) + DATA); m = tr.Transformer.load(d);"
        "before = m.encode([[4, 9, 41]]); m.save(d); after = m.encode([[4, 9, 41]]);"
        "assert (before == after).all(), 'weights changed under the model';"
        "assert sorted(os.listdir(d)) == ['config.json', 'model.safetensors'], os.listdir(d)"
    )
    outcome = worker.run(code)
    assert outcome.raised is None, f"{outcome.raised}: {outcome.message}"


def test_huge_beam_runs_in_a_child(worker):
    """A beam far larger than the vocabulary is legal: it searches every
    hypothesis without reserving memory for the beam."""
    code = (
        "m = tr.Transformer.load(GOLDEN); m.generate([[4, 9]], max_new_tokens=3, beam_size=10**12)"
    )
    outcome = worker.run(code)
    assert outcome.raised is None, f"{outcome.raised}: {outcome.message}"
