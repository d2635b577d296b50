"""`transformer-rs embed`: lines in, one embedding per line out (JSON lines
or .npy), equal to tr.SentenceEncoder.encode; user errors exit 2."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pytest

import transformer_rs as tr
from bert_helpers import minilm_dir
from transformer_rs import cli

LINES = ["The quick brown fox.", "", "Zürich, 東京 and naïve cafés", "  spaced  "]


@pytest.fixture(scope="module")
def expected():
    return tr.SentenceEncoder.load(minilm_dir()).encode(LINES)


def run(argv, capsys, monkeypatch, stdin=""):
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_json_lines_from_stdin(capsys, monkeypatch, expected):
    code, out, err = run(
        ["embed", "--model", str(minilm_dir()), "--batch-size", "32"],
        capsys,
        monkeypatch,
        "\n".join(LINES) + "\n",
    )
    assert code == 0, err
    rows = [json.loads(line)["embedding"] for line in out.splitlines()]
    got = np.array(rows, dtype=np.float32)
    np.testing.assert_array_equal(got, expected)  # 9 digits round-trip float32


def test_npy_output_from_a_file(capsys, monkeypatch, tmp_path, expected):
    source = tmp_path / "in.txt"
    source.write_text("\n".join(LINES), encoding="utf-8")
    target = tmp_path / "out.bin"
    code, out, err = run(
        ["embed", "--model", str(minilm_dir()), str(source), "-o", str(target)],
        capsys,
        monkeypatch,
    )
    assert code == 0, err
    assert out == "" and "4 x 384" in err
    np.testing.assert_array_equal(np.load(target), expected)


def test_no_normalize_keeps_the_models_normalize_module(capsys, monkeypatch, tmp_path, expected):
    target = tmp_path / "out.npy"
    argv = ["embed", "--model", str(minilm_dir()), "--no-normalize", "-o", str(target)]
    code, _, err = run(argv, capsys, monkeypatch, "\n".join(LINES))
    assert code == 0, err
    np.testing.assert_allclose(np.load(target), expected, atol=1e-6)


@pytest.mark.parametrize(
    "argv, stdin, words",
    [
        (["embed", "--model", "{missing}"], "hi\n", "no such model folder"),
        (["embed", "--model", "{model}"], "", "no input"),
        (["embed", "--model", "{model}", "{missing}"], "", "No such file"),
        (["embed", "--model", "{model}", "--batch-size", "0"], "hi\n", "--batch-size"),
        (["embed"], "hi\n", "--model"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(capsys, monkeypatch, tmp_path, argv, stdin, words):
    argv = [a.format(missing=str(tmp_path / "missing"), model=str(minilm_dir())) for a in argv]
    code, out, err = run(argv, capsys, monkeypatch, stdin)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("transformer-rs: error: "), err
    assert words in err


def test_not_a_bert_folder_exits_2(capsys, monkeypatch, tmp_path):
    (tmp_path / "modules.json").write_text("[]")
    code, _, err = run(["embed", "--model", str(tmp_path)], capsys, monkeypatch, "hi\n")
    assert code == 2 and "modules.json" in err


def test_subprocess_pipe():
    result = subprocess.run(
        [sys.executable, "-m", "transformer_rs", "embed", "--model", str(minilm_dir())],
        input="hello world\nsecond line\n",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line)["embedding"] for line in result.stdout.splitlines()]
    assert len(rows) == 2 and len(rows[0]) == 384
    assert abs(np.linalg.norm(rows[1]) - 1) < 1e-5
