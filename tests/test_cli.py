"""The `transformer-rs` command line, in-process and as a subprocess.

Expected demo outputs come from the task generator's ground truth
(transformer_rs.demo_task), never from the model.
"""

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import transformer_rs as tr
from transformer_rs import cli, demo_task

EXPECTED = {e.source: e.target for e in demo_task.DEMO_INPUTS}


def run(argv, capsys, stdin=None, monkeypatch=None):
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    threads = tr.get_num_threads()
    try:
        code = cli.main(argv)
    finally:
        tr.set_num_threads(threads)  # `--threads` resizes the pool: no leak into later tests
    out, err = capsys.readouterr()
    return code, out, err


def demo_rows(out):
    """{input: output} from demo lines `INPUT  ->  OUTPUT  (log-prob S, T ms)`."""
    rows = {}
    for line in out.splitlines():
        source, arrow, rest = line.partition("  ->  ")
        assert arrow, line
        output, _, stats = rest.partition("  (")
        assert stats.startswith("log-prob ") and stats.endswith(" ms)"), line
        rows[source.rstrip()] = output
    return rows


def assert_user_error(code, err):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("transformer-rs: error: "), err
    assert "Traceback" not in err


@pytest.fixture(scope="module")
def model_dir():
    with cli.bundled_model_dir() as path:
        yield path


# ---- demo ------------------------------------------------------------------------------------


def test_demo_without_arguments_normalises_the_built_in_examples(capsys):
    code, out, err = run(["demo"], capsys)
    assert code == 0, err
    assert demo_rows(out) == EXPECTED


@pytest.mark.parametrize("beam", ["1", "3"])
def test_demo_normalises_dates_given_as_arguments(capsys, beam):
    import datetime as dt

    date = dt.date(1961, 4, 12)
    texts = [demo_task.render(date, fmt) for fmt in ("dd.mm.yyyy", "weekday_us", "d mon yy")]
    code, out, err = run(["--threads", "1", "demo", "--beam", beam, *texts], capsys)
    assert code == 0, err
    assert demo_rows(out) == {text: "1961-04-12" for text in texts}


def test_demo_reads_one_input_per_line_from_stdin(capsys, monkeypatch):
    examples = demo_task.sample(5, seed=99, split="test")
    stdin = "\n".join(e.source for e in examples) + "\n\n"
    code, out, err = run(["demo", "-"], capsys, stdin=stdin, monkeypatch=monkeypatch)
    assert code == 0, err
    assert demo_rows(out) == {e.source: e.target for e in examples}


def test_demo_rejects_inputs_longer_than_the_model_reads(capsys):
    assert_user_error(*run(["demo", "x" * 500], capsys)[::2])


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_only_on_a_terminal_and_erased_before_output(monkeypatch):
    monkeypatch.setattr(cli._Progress, "DELAY_S", 0.0)
    texts = [e.source for e in demo_task.DEMO_INPUTS[:3]]
    for terminal in (True, False):
        out, err = io.StringIO(), _Terminal() if terminal else io.StringIO()
        monkeypatch.setattr(sys, "stdout", out)
        monkeypatch.setattr(sys, "stderr", err)
        assert cli.main(["demo", *texts]) == 0
        assert demo_rows(out.getvalue()) == {t: EXPECTED[t] for t in texts}
        if terminal:
            assert "\rdemo [" in err.getvalue() and " 2/3 " in err.getvalue()
            assert err.getvalue().endswith("\r\x1b[K")
        else:
            assert err.getvalue() == ""


# ---- generate --------------------------------------------------------------------------------


def test_generate_json_lines_round_trip(capsys, monkeypatch, model_dir):
    examples = demo_task.sample(6, seed=5, split="test")
    lines = []
    for i, e in enumerate(examples):
        ids = demo_task.SRC_VOCAB.encode(e.source)
        lines.append(json.dumps({"src": ids} if i % 2 else ids))
    stdin = "\n".join(lines) + "\n"
    code, out, err = run(
        ["generate", "--model", str(model_dir), "--max-new-tokens", "16"],
        capsys,
        stdin=stdin,
        monkeypatch=monkeypatch,
    )
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert [demo_task.TGT_VOCAB.decode(r["tokens"]) for r in records] == [
        e.target for e in examples
    ]
    # Same tokens and scores as the Python API gives.
    model = tr.Transformer.load(model_dir)
    api = model.generate(
        [demo_task.SRC_VOCAB.encode(e.source) for e in examples],
        max_new_tokens=16,
        return_scores=True,
    )
    assert [(r["tokens"], r["score"]) for r in records] == [
        ([int(t) for t in tokens], pytest.approx(float(score), abs=1e-6))
        for [(tokens, score)] in api
    ]
    assert all(r["tokens"][-1] == demo_task.EOS_ID for r in records)


@pytest.mark.parametrize(
    "line, culprit",
    [
        ("{not json", "line 2: invalid JSON"),
        ('{"tokens": [4, 5]}', 'line 2: no "src" key'),
        ('["a", "b"]', "line 2: expected"),
        ("[1.5]", "line 2: expected"),
        ("7", "line 2: expected"),
    ],
)
def test_generate_rejects_bad_json_lines(capsys, monkeypatch, model_dir, line, culprit):
    stdin = "[4, 5, 6, 2]\n" + line + "\n"
    code, out, err = run(
        ["generate", "--model", str(model_dir)], capsys, stdin=stdin, monkeypatch=monkeypatch
    )
    assert_user_error(code, err)
    assert culprit in err
    assert out == ""


def test_generate_reports_token_ids_out_of_range(capsys, monkeypatch, model_dir):
    stdin = json.dumps([4, 5, 10_000]) + "\n"
    code, _, err = run(
        ["generate", "--model", str(model_dir)], capsys, stdin=stdin, monkeypatch=monkeypatch
    )
    assert_user_error(code, err)


def test_generate_missing_model_dir(capsys, tmp_path):
    code, _, err = run(["generate", "--model", str(tmp_path / "nowhere")], capsys)
    assert_user_error(code, err)


@pytest.mark.parametrize("broken", ["config", "weights", "missing_weights"])
def test_generate_bad_checkpoint_dir(capsys, tmp_path, model_dir, broken):
    bad = tmp_path / "bad"
    shutil.copytree(model_dir, bad)
    if broken == "config":
        (bad / "config.json").write_text("{ this is not json")
    elif broken == "weights":
        (bad / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00notjson!")
    else:
        (bad / "model.safetensors").unlink()
    code, _, err = run(["generate", "--model", str(bad)], capsys)
    assert_user_error(code, err)


# ---- argument errors, info, bench ------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["--threads", "0", "info"],
        ["--threads", "many", "info"],
        ["demo", "--beam", "0"],
        ["generate"],
        ["frobnicate"],
        [],
        ["bench", "--seconds", "0"],
    ],
)
def test_bad_arguments_are_one_line_errors(capsys, argv):
    code, _, err = run(argv, capsys)
    assert_user_error(code, err)


def test_help_exits_zero(capsys):
    code, out, _ = run(["--help"], capsys)
    assert code == 0 and "demo" in out and "generate" in out


def test_info_reports_runtime_and_cpu(capsys):
    code, out, err = run(["--threads", "1", "info"], capsys)
    assert code == 0, err
    fields = dict(line.split(":", 1) for line in out.splitlines())
    fields = {k: v.strip() for k, v in fields.items()}
    assert fields["version"] == tr.__version__
    assert fields["simd_level"] == tr.simd_level()
    assert fields["threads"] == "1"
    assert fields["cpu"]


def test_cpu_description_lists_only_known_simd_flags():
    name, flags = cli.cpu_description()
    assert isinstance(name, str)
    assert set(flags) <= set(cli._INTERESTING_FLAGS)
    if Path("/proc/cpuinfo").exists() and "avx2" in Path("/proc/cpuinfo").read_text().split():
        assert "avx2" in flags


def test_bench_prints_a_row_per_batch_size(capsys, model_dir):
    code, out, err = run(["bench", "--model", str(model_dir), "--seconds", "0.01"], capsys)
    assert code == 0, err
    rows = [line.split() for line in out.splitlines()[2:]]
    assert [int(r[0]) for r in rows] == list(cli.BENCH_BATCH_SIZES)
    assert all(float(r[1]) > 0 for r in rows)


# ---- as a subprocess -------------------------------------------------------------------------


def console_script():
    beside = Path(sys.executable).parent / "transformer-rs"
    return str(beside) if beside.exists() else shutil.which("transformer-rs")


def launchers():
    yield pytest.param([sys.executable, "-m", "transformer_rs"], id="python-m")
    yield pytest.param("console-script", id="console-script")


@pytest.fixture(params=list(launchers()))
def launcher(request):
    if request.param == "console-script":
        script = console_script()
        assert script, "the transformer-rs console script is not installed (pip install .)"
        return [script]
    return request.param


def subprocess_run(launcher, args, stdin=""):
    env = dict(os.environ, PYTHONIOENCODING="utf-8")
    return subprocess.run(
        launcher + args, input=stdin, capture_output=True, text=True, env=env, timeout=300
    )


def test_subprocess_demo(launcher):
    done = subprocess_run(launcher, ["--threads", "2", "demo"])
    assert done.returncode == 0, done.stderr
    assert demo_rows(done.stdout) == EXPECTED
    assert done.stderr == ""  # no progress bar when stderr is not a terminal


def test_subprocess_demo_reads_a_pipe(launcher):
    examples = demo_task.sample(3, seed=17, split="test")
    done = subprocess_run(launcher, ["demo"], stdin="\n".join(e.source for e in examples))
    assert done.returncode == 0, done.stderr
    assert demo_rows(done.stdout) == {e.source: e.target for e in examples}


def test_subprocess_user_error_has_no_traceback(launcher, tmp_path):
    done = subprocess_run(launcher, ["generate", "--model", str(tmp_path / "missing")])
    assert_user_error(done.returncode, done.stderr)
    assert done.stdout == ""
