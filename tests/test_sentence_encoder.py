"""tr.SentenceEncoder: all-MiniLM-L6-v2 against sentence-transformers' own
embeddings, and against the float64 reference (one sentence at a time, hand
made [CLS]/[SEP] and truncation) for sentences that exercise tokenization,
truncation, batching order and every pooling mode; then every error."""

from __future__ import annotations

import numpy as np
import pytest

import transformer_rs as tr
from bert_helpers import edited_json, minilm_dir, minilm_fixture, model_variant
from transformer_rs.reference import bert as ref_bert

# Sentences that exercise the tokenizer: accents and non-Latin scripts,
# emoji ([UNK]), mixed case, surrounding whitespace, an empty and a
# whitespace-only string, and one longer than max_seq_length (256 tokens).
LONG = " ".join(f"word{i} of a rather long sentence," for i in range(120))
OWN_SENTENCES = [
    "Café, naïve résumé — Zürich über alles.",
    "東京は日本の首都です。 Москва — столица России. 🚀✨",
    "MiXeD CaSe Words And ACRONYMS like NASA",
    "   surrounded by spaces and a tab\t",
    "",
    " \t \n ",
    LONG,
    "short",
]


@pytest.fixture(scope="module")
def encoder():
    return tr.SentenceEncoder.load(minilm_dir())


@pytest.fixture(scope="module")
def own_reference():
    return ref_bert.encode_sentences(minilm_dir(), OWN_SENTENCES)


def assert_embeddings_close(got, want, atol=1e-4):
    assert got.dtype == np.float32 and got.shape == want.shape
    cosine = (got * want).sum(axis=1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))
    assert cosine.min() >= 0.99999, cosine
    np.testing.assert_allclose(got, want, rtol=0, atol=atol)


def test_folder_settings_are_read(encoder):
    assert encoder.max_seq_length == 256
    assert encoder.pooling == ("mean",)
    assert encoder.dim == 384
    assert "pooling=mean" in repr(encoder)


def test_embeddings_match_sentence_transformers(encoder, simd_level):
    fx = minilm_fixture()
    got = encoder.encode(list(fx["sentences"]))
    assert_embeddings_close(got, fx["embeddings"])


def test_reference_matches_sentence_transformers():
    fx = minilm_fixture()
    want = ref_bert.encode_sentences(minilm_dir(), list(fx["sentences"]))
    np.testing.assert_allclose(want, fx["embeddings"], rtol=0, atol=1e-5)


def test_own_sentences_match_reference(encoder, own_reference):
    assert_embeddings_close(encoder.encode(OWN_SENTENCES), own_reference)


def test_order_is_kept_whatever_the_batching(encoder, own_reference):
    for batch_size in (1, 2, 3, 32):
        got = encoder.encode(OWN_SENTENCES, batch_size=batch_size)
        assert_embeddings_close(got, own_reference)
    reordered = [OWN_SENTENCES[i] for i in (6, 0, 7, 4, 1)]
    got = encoder.encode(reordered, batch_size=2)
    assert_embeddings_close(got, own_reference[[6, 0, 7, 4, 1]])


def test_batch_companions_do_not_change_an_embedding(encoder):
    """Sentences are packed, not padded: each one's embedding is the one it
    gets alone, whatever else is in its batch."""
    alone = np.stack([encoder.encode(s) for s in OWN_SENTENCES])
    for batch_size in (3, 32):
        got = encoder.encode(OWN_SENTENCES, batch_size=batch_size)
        np.testing.assert_allclose(got, alone, rtol=0, atol=1e-5)


def test_text_normalisation(encoder):
    def one(s):
        return encoder.encode(s)

    # The tokenizer lower-cases; surrounding whitespace is stripped.
    np.testing.assert_allclose(one("HeLLo WoRLD"), one("hello world"), atol=1e-6)
    np.testing.assert_allclose(one("  hello world \n"), one("hello world"), atol=1e-6)
    np.testing.assert_allclose(one(" \t "), one(""), atol=1e-6)
    assert np.abs(one("hello world") - one("hello there")).max() > 1e-2


def test_long_input_is_truncated_to_max_seq_length(encoder):
    """Everything past token 256 is dropped, and nothing before it."""
    longer = LONG + " and then a tail of entirely different words about cheese"
    a, b = encoder.encode([LONG, longer])
    np.testing.assert_allclose(a, b, atol=1e-6)
    shorter = " ".join(LONG.split()[:60])  # about 200 tokens: not truncated
    c = encoder.encode(shorter)
    assert np.abs(a - c).max() > 1e-3


def test_single_string_gives_one_vector(encoder):
    vec = encoder.encode("Attention is all you need.")
    assert vec.shape == (384,) and vec.dtype == np.float32
    np.testing.assert_array_equal(vec, encoder.encode(["Attention is all you need."])[0])
    assert abs(np.linalg.norm(vec) - 1) < 1e-5


def test_normalize_module_always_normalizes(encoder):
    """As in sentence-transformers, the folder's Normalize module applies
    even with normalize_embeddings=False."""
    out = encoder.encode(OWN_SENTENCES, normalize_embeddings=False)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1, atol=1e-5)


def _without_normalize_module():
    modules = [m for m in edited_json_list("modules.json") if not m["type"].endswith("Normalize")]
    return modules


def edited_json_list(rel):
    import json

    return json.loads((minilm_dir() / rel).read_text(encoding="utf-8"))


POOLINGS = {
    "cls": {"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False},
    "max": {"pooling_mode_max_tokens": True, "pooling_mode_mean_tokens": False},
    "mean_sqrt_len": {"pooling_mode_mean_sqrt_len_tokens": True, "pooling_mode_mean_tokens": False},
    "cls+max+mean": {"pooling_mode_cls_token": True, "pooling_mode_max_tokens": True},
    "mean": {},
}


@pytest.mark.parametrize("name", list(POOLINGS))
@pytest.mark.parametrize("normalize", [False, True])
def test_pooling_modes_match_reference(tmp_path, name, normalize):
    folder = model_variant(
        tmp_path,
        {
            "1_Pooling/config.json": edited_json("1_Pooling/config.json", **POOLINGS[name]),
            "modules.json": _without_normalize_module(),
        },
    )
    encoder = tr.SentenceEncoder.load(folder)
    assert encoder.pooling == tuple(name.split("+"))
    assert encoder.dim == 384 * len(encoder.pooling)
    sentences = OWN_SENTENCES[:5]
    got = encoder.encode(sentences, batch_size=2, normalize_embeddings=normalize)
    want = ref_bert.encode_sentences(folder, sentences, normalize=normalize)
    assert_embeddings_close(got, want, atol=1e-4 * max(1.0, np.abs(want).max()))
    if not normalize:
        assert np.abs(np.linalg.norm(got, axis=1) - 1).max() > 1e-2


def test_a_sentence_without_tokens_gets_a_zero_embedding(tmp_path):
    """A tokenizer without [CLS]/[SEP] gives "" no tokens: mean pooling of
    nothing is 0 in sentence-transformers (and stays 0 when normalized)."""
    tokenizer = edited_json("tokenizer.json", post_processor=None)
    tokenizer["post_processor"] = None
    encoder = tr.SentenceEncoder.load(model_variant(tmp_path, {"tokenizer.json": tokenizer}))
    got = encoder.encode(["", "hello world", " "])
    np.testing.assert_array_equal(got[[0, 2]], 0)
    np.testing.assert_allclose(got[1], encoder.encode("hello world"), atol=1e-6)
    np.testing.assert_array_equal(encoder.encode(""), 0)


def test_do_lower_case_and_missing_sentence_bert_config(tmp_path):
    """Without sentence_bert_config.json, max_seq_length falls back to the
    tokenizer's model_max_length / max_position_embeddings (512)."""
    folder = model_variant(tmp_path / "a", remove=["sentence_bert_config.json"])
    assert tr.SentenceEncoder.load(folder).max_seq_length == 512
    folder = model_variant(
        tmp_path / "b",
        {"sentence_bert_config.json": {"max_seq_length": 8, "do_lower_case": True}},
    )
    enc = tr.SentenceEncoder.load(folder)
    assert enc.max_seq_length == 8
    want = ref_bert.encode_sentences(folder, OWN_SENTENCES[:3])
    assert_embeddings_close(enc.encode(OWN_SENTENCES[:3]), want)


# ---- errors ----------------------------------------------------------------------------------


def test_bad_arguments(encoder):
    cases = [
        (ValueError, "at least one sentence", dict(sentences=[])),
        (ValueError, "at least one sentence", dict(sentences=())),
        (TypeError, "sentences", dict(sentences=None)),
        (TypeError, "sentences", dict(sentences=42)),
        (TypeError, "sentences", dict(sentences={"a": 1})),
        (TypeError, r"sentences\[1\]", dict(sentences=["ok", 3])),
        (TypeError, r"sentences\[0\]", dict(sentences=[b"bytes"])),
        (ValueError, "batch_size", dict(sentences=["a"], batch_size=0)),
        (TypeError, "batch_size", dict(sentences=["a"], batch_size="3")),
        (TypeError, "batch_size", dict(sentences=["a"], batch_size=2.0)),
        (TypeError, "batch_size", dict(sentences=["a"], batch_size=True)),
        (TypeError, "normalize_embeddings", dict(sentences=["a"], normalize_embeddings="yes")),
    ]
    for exc, pattern, kwargs in cases:
        with pytest.raises(exc, match=pattern):
            encoder.encode(**kwargs)
    given = ["b", "a"]
    encoder.encode(given)
    assert given == ["b", "a"]


def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such model folder"):
        tr.SentenceEncoder.load(tmp_path / "nowhere")
    for i, rel in enumerate(
        ["modules.json", "tokenizer.json", "1_Pooling/config.json", "model.safetensors"]
    ):
        folder = model_variant(tmp_path / str(i), remove=[rel])
        with pytest.raises(FileNotFoundError, match=rel.split("/")[-1]):
            tr.SentenceEncoder.load(folder)


@pytest.mark.parametrize(
    "replace, pattern",
    [
        ({"config.json": edited_json("config.json", model_type="distilbert")}, "not a BERT"),
        ({"config.json": edited_json("config.json", hidden_act="gelu_fast")}, "hidden_act"),
        (
            {"config.json": edited_json("config.json", position_embedding_type="relative_key")},
            "position_embedding_type",
        ),
        (
            {
                "modules.json": [
                    {
                        "idx": 0,
                        "name": "0",
                        "path": "",
                        "type": "sentence_transformers.models.Transformer",
                    },
                    {
                        "idx": 1,
                        "name": "1",
                        "path": "1_Pooling",
                        "type": "sentence_transformers.models.Pooling",
                    },
                    {
                        "idx": 2,
                        "name": "2",
                        "path": "2_Dense",
                        "type": "sentence_transformers.models.Dense",
                    },
                ]
            },
            "Dense",
        ),
        (
            {"modules.json": [{"path": "", "type": "sentence_transformers.models.Transformer"}]},
            "Pooling",
        ),
        ({"modules.json": {"not": "a list"}}, "list"),
        ({"modules.json": "{oops"}, "JSON"),
        (
            {
                "1_Pooling/config.json": edited_json(
                    "1_Pooling/config.json", pooling_mode_lasttoken=True
                )
            },
            "lasttoken",
        ),
        (
            {
                "1_Pooling/config.json": edited_json(
                    "1_Pooling/config.json", pooling_mode_mean_tokens=False
                )
            },
            "no pooling mode",
        ),
        (
            {
                "1_Pooling/config.json": edited_json(
                    "1_Pooling/config.json", word_embedding_dimension=768
                )
            },
            "word_embedding_dimension",
        ),
        ({"sentence_bert_config.json": {"max_seq_length": 1000}}, "max_position_embeddings"),
        ({"sentence_bert_config.json": {"max_seq_length": "long"}}, "max_seq_length"),
        ({"tokenizer.json": "not a tokenizer"}, "tokenizer"),
    ],
)
def test_unsupported_folders_are_checkpoint_errors(tmp_path, replace, pattern):
    folder = model_variant(tmp_path, replace)
    with pytest.raises(tr.CheckpointError, match=pattern):
        tr.SentenceEncoder.load(folder)


def test_constructor_is_not_public():
    with pytest.raises(TypeError, match="load"):
        tr.SentenceEncoder()
