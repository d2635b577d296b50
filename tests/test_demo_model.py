"""The bundled date model and the synthetic task it was trained on."""

import datetime as dt
import json
from collections import Counter

import pytest

import transformer_rs as tr
from transformer_rs import cli, demo_task


@pytest.fixture(scope="module")
def model():
    with cli.bundled_model_dir() as path:
        return tr.Transformer.load(path)


def normalise(model, texts, beam_size=1):
    src = [demo_task.SRC_VOCAB.encode(text) for text in texts]
    out = model.generate(src, max_new_tokens=16, beam_size=beam_size)
    return [demo_task.TGT_VOCAB.decode(tokens) for tokens in out]


def test_bundled_model_reaches_99_percent_on_held_out_dates(model):
    examples = demo_task.sample(500, seed=123, split="test")
    outputs = normalise(model, [e.source for e in examples])
    right = sum(out == e.target for out, e in zip(outputs, examples))
    assert right / len(examples) >= 0.99, [
        (e.source, out) for out, e in zip(outputs, examples) if out != e.target
    ][:10]


def test_beam_search_agrees_on_the_demo_inputs(model):
    sources = [e.source for e in demo_task.DEMO_INPUTS]
    assert normalise(model, sources, beam_size=4) == [e.target for e in demo_task.DEMO_INPUTS]


def test_bundled_config_names_the_task_vocabularies(model):
    with cli.bundled_model_dir() as path:
        config = json.loads((path / "config.json").read_text())
    assert config["src_vocab"] == demo_task.SRC_VOCAB.chars
    assert config["tgt_vocab"] == demo_task.TGT_VOCAB.chars
    assert model.config.src_vocab_size == len(demo_task.SRC_VOCAB)
    assert model.config.tgt_vocab_size == len(demo_task.TGT_VOCAB)
    assert (model.config.pad_id, model.config.bos_id, model.config.eos_id) == (
        demo_task.PAD_ID,
        demo_task.BOS_ID,
        demo_task.EOS_ID,
    )


# ---- the task itself (pure Python) -------------------------------------------------------------


def test_examples_are_reproducible_by_seed():
    assert demo_task.sample(50, seed=7) == demo_task.sample(50, seed=7)
    assert demo_task.sample(50, seed=7) != demo_task.sample(50, seed=8)


def test_splits_are_disjoint_by_date_and_format():
    train = {(e.date, e.fmt) for e in demo_task.sample(5000, seed=1, split="train")}
    test = {(e.date, e.fmt) for e in demo_task.sample(5000, seed=1, split="test")}
    assert not train & test
    every_pair = [(e.date, e.fmt) for e in demo_task.sample(2000, seed=3, split="test")]
    assert all(demo_task.split_of(d, f) == "test" for d, f in every_pair)


def test_every_format_appears_in_both_splits():
    for split in ("train", "test"):
        counts = Counter(e.fmt for e in demo_task.sample(3000, seed=5, split=split))
        assert set(counts) == set(demo_task.FORMATS)


def test_targets_are_iso_dates_of_the_rendered_source():
    for e in demo_task.sample(300, seed=11):
        assert dt.date.fromisoformat(e.target) == e.date
        assert demo_task.FIRST_DATE <= e.date <= demo_task.LAST_DATE


@pytest.mark.parametrize(
    "fmt, expected",
    [
        ("weekday_long", "Thursday, 26 November 2026"),
        ("d/m/yyyy", "26/11/2026"),
        ("mon d, yyyy", "Nov 26, 2026"),
        ("yyyy.mm.dd", "2026.11.26"),
        ("d mon yy", "26 nov 26"),
        ("month dth yyyy", "november 26th 2026"),
        ("wd d mon yyyy", "Thu 26 Nov 2026"),
        ("dd-mon-yyyy", "26-Nov-2026"),
        ("weekday_us", "Thursday, November 26, 2026"),
        ("the dth of month", "the 26th of November, 2026"),
        ("dd.mm.yyyy", "26.11.2026"),
        ("yyyymmdd", "20261126"),
    ],
)
def test_formats_render_as_documented(fmt, expected):
    assert demo_task.render(dt.date(2026, 11, 26), fmt) == expected


def test_weekdays_are_correct_and_two_digit_years_unambiguous():
    # strftime is an independent source of weekday and month names (C locale).
    for e in demo_task.sample(400, seed=13):
        if e.fmt in ("weekday_long", "weekday_us"):
            assert e.source.startswith(e.date.strftime("%A") + ", ")
        if e.fmt == "wd d mon yyyy":
            assert e.source == e.date.strftime("%a ") + f"{e.date.day} " + e.date.strftime("%b %Y")
        if e.fmt == "d mon yy":
            yy = int(e.source.split()[-1])
            assert e.date.year == (1900 + yy if yy >= 50 else 2000 + yy)


@pytest.mark.parametrize(
    "day, suffix",
    [
        (1, "1st"),
        (2, "2nd"),
        (3, "3rd"),
        (4, "4th"),
        (11, "11th"),
        (12, "12th"),
        (13, "13th"),
        (21, "21st"),
        (22, "22nd"),
        (23, "23rd"),
        (31, "31st"),
    ],
)
def test_ordinal_suffixes(day, suffix):
    assert demo_task.render(dt.date(2001, 1, day), "month dth yyyy") == f"january {suffix} 2001"


def test_demo_inputs_are_held_out_pairs():
    assert len(demo_task.DEMO_INPUTS) >= 5
    for e in demo_task.DEMO_INPUTS:
        assert demo_task.split_of(e.date, e.fmt) == "test"
        assert e.target == e.date.isoformat()


def test_vocab_round_trip_and_unknown_characters():
    text = "Thursday, 26 November 2026"
    ids = demo_task.SRC_VOCAB.encode(text)
    assert ids[-1] == demo_task.EOS_ID and min(ids[:-1]) > demo_task.UNK_ID
    assert demo_task.SRC_VOCAB.decode(ids) == text
    assert demo_task.SRC_VOCAB.encode("é")[0] == demo_task.UNK_ID
    assert demo_task.TGT_VOCAB.decode([1, 6, 4, 2, 9]) == "1-"


def test_render_rejects_out_of_range_dates_and_unknown_formats():
    with pytest.raises(ValueError, match="date"):
        demo_task.render(dt.date(1949, 12, 31), "yyyymmdd")
    with pytest.raises(ValueError, match="fmt"):
        demo_task.render(dt.date(2000, 1, 1), "nope")
