"""The `transformer-rs` command line (also `python -m transformer_rs`).

    transformer-rs demo ["26 nov 26" ...] [--beam N]   normalise dates with the bundled model
    transformer-rs generate --model DIR [--beam N]     JSON lines of source ids in, tokens out
    transformer-rs embed --model DIR [FILE] [-o X.npy] sentence embeddings, one per input line
    transformer-rs info                                version, SIMD level, threads, CPU
    transformer-rs bench [--model DIR]                 generated tokens per second

User errors end with one line `transformer-rs: error: ...` on stderr and exit
status 2. The CLI uses only the public transformer_rs API.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.resources
import json
import os
import platform
import stat
import sys
import time
from collections.abc import Sequence

import numpy as np

import transformer_rs as tr

from . import demo_task

PROG = "transformer-rs"
EXIT_USAGE = 2
# The bundled date model's outputs are 11 tokens ("YYYY-MM-DD" + eos); leave headroom.
DEMO_MAX_NEW_TOKENS = 16
GENERATE_BATCH = 32


class UsageError(Exception):
    """A mistake in what the user asked for; reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Fast, exact CPU inference for Transformers.")
    parser.add_argument("--version", action="version", version=f"{PROG} {tr.__version__}")
    parser.add_argument(
        "--threads", type=_positive_int, metavar="N", help="kernel threads (default: all cores)"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = commands.add_parser(
        "demo",
        help="normalise dates with the bundled model",
        description="Rewrite dates such as 'Thu 26 Nov 2026' or '26/11/2026' as 2026-11-26 with "
        "the small Transformer bundled in the package. Without TEXT: built-in examples; "
        "'-' (or a pipe on stdin): one input per line of stdin.",
    )
    demo.add_argument("text", nargs="*", metavar="TEXT", help="dates to normalise, or '-'")
    demo.add_argument("--beam", type=_positive_int, default=1, metavar="N", help="beam size")
    demo.set_defaults(run=_run_demo)

    generate = commands.add_parser(
        "generate",
        help="decode JSON lines of source token ids",
        description='Reads JSON lines from stdin, each {"src": [ids...]} or a bare list of ids; '
        'writes one line {"tokens": [...], "score": ...} per input, in order.',
    )
    generate.add_argument("--model", required=True, metavar="DIR", help="checkpoint folder")
    generate.add_argument("--beam", type=_positive_int, default=1, metavar="N", help="beam size")
    generate.add_argument(
        "--max-new-tokens",
        type=_positive_int,
        metavar="N",
        help="longest output (default: 64, or the model's max_len if smaller)",
    )
    generate.set_defaults(run=_run_generate)

    embed = commands.add_parser(
        "embed",
        help="sentence embeddings from a sentence-transformers folder",
        description="Reads one sentence per line (from FILE, or stdin) and writes one "
        'embedding per line, in order: JSON lines {"embedding": [...]} on stdout, or one '
        "float32 array [N, dim] in NumPy .npy format with --output. An empty line is an "
        "empty sentence.",
    )
    embed.add_argument(
        "--model", required=True, metavar="DIR", help="sentence-transformers model folder"
    )
    embed.add_argument("file", nargs="?", metavar="FILE", help="input text (default or '-': stdin)")
    embed.add_argument("-o", "--output", metavar="PATH", help="write an .npy array here instead")
    embed.add_argument(
        "--batch-size", type=_positive_int, default=32, metavar="N", help="default: 32"
    )
    embed.add_argument(
        "--no-normalize",
        action="store_true",
        help="keep raw pooled vectors (unless the model has a Normalize module)",
    )
    embed.set_defaults(run=_run_embed)

    info = commands.add_parser("info", help="version, SIMD level, threads and CPU")
    info.set_defaults(run=_run_info)

    bench = commands.add_parser(
        "bench",
        help="measure generation speed on this machine",
        description="Greedy generation throughput for a few batch sizes, random source tokens.",
    )
    bench.add_argument("--model", metavar="DIR", help="checkpoint folder (default: bundled model)")
    bench.add_argument("--seconds", type=float, default=1.0, help="time per size (default: 1)")
    bench.set_defaults(run=_run_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the CLI on `argv` (default: sys.argv[1:]); returns the exit status."""
    try:
        args = build_parser().parse_args(argv)
        if args.threads is not None:
            tr.set_num_threads(args.threads)
        args.run(args)
    except SystemExit as done:  # --help / --version
        return done.code if isinstance(done.code, int) else 0
    except (UsageError, ValueError, TypeError, OSError) as err:
        if isinstance(err, BrokenPipeError):
            # The reader went away (`transformer-rs demo | head -1`): stop quietly.
            with contextlib.suppress(OSError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1
        print(f"{PROG}: error: {_one_line(err)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    return 0


def _one_line(err: BaseException) -> str:
    text = str(err) or type(err).__name__
    return " ".join(text.split())


# ---- demo ------------------------------------------------------------------------------------


def bundled_model_dir() -> contextlib.AbstractContextManager:
    """Context manager giving the folder of the bundled date model as a filesystem path."""
    return importlib.resources.as_file(
        importlib.resources.files("transformer_rs") / "data" / "date_model"
    )


def _stdin_is_piped() -> bool:
    try:
        mode = os.fstat(sys.stdin.fileno()).st_mode
    except (AttributeError, OSError, ValueError):
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISREG(mode)


def _demo_inputs(texts: list[str]) -> list[str]:
    """TEXT as given; '-': stdin lines; none: stdin lines if piped and non-empty, else built-ins."""
    if "-" in texts and texts != ["-"]:
        raise UsageError("argument TEXT: '-' (read stdin) must be the only TEXT")
    if texts == ["-"] or (not texts and _stdin_is_piped()):
        lines = [line.strip() for line in sys.stdin if line.strip()]
        if texts or lines:
            return lines
    return texts or [example.source for example in demo_task.DEMO_INPUTS]


def _run_demo(args) -> None:
    inputs = _demo_inputs(args.text)
    with bundled_model_dir() as path:
        model = tr.Transformer.load(path)
    longest = model.config.max_len - 1  # one position for the eos token
    for text in inputs:
        if len(text) > longest:
            raise UsageError(
                f"input {text!r} has {len(text)} characters; the demo model reads at most {longest}"
            )
    width = max((len(text) for text in inputs), default=0)
    with _Progress(len(inputs), "demo") as progress:
        for text in inputs:
            start = time.perf_counter()
            [[(tokens, score)]] = model.generate(
                [demo_task.SRC_VOCAB.encode(text)],
                max_new_tokens=DEMO_MAX_NEW_TOKENS,
                beam_size=args.beam,
                return_scores=True,
            )
            millis = (time.perf_counter() - start) * 1e3
            output = demo_task.TGT_VOCAB.decode(tokens)
            progress.clear()
            print(f"{text:<{width}}  ->  {output}  (log-prob {score:.4f}, {millis:.1f} ms)")
            progress.advance()


# ---- generate --------------------------------------------------------------------------------


def _parse_source(line: str, number: int) -> list[int]:
    expected = 'expected {"src": [token ids...]} or a list of token ids'
    try:
        value = json.loads(line)
    except json.JSONDecodeError as err:
        raise UsageError(f"stdin line {number}: invalid JSON ({err.msg}); {expected}") from None
    if isinstance(value, dict):
        if "src" not in value:
            raise UsageError(f'stdin line {number}: no "src" key; {expected}')
        value = value["src"]
    if not isinstance(value, list) or not all(
        isinstance(t, int) and not isinstance(t, bool) for t in value
    ):
        raise UsageError(f"stdin line {number}: {expected}")
    return value


def _run_generate(args) -> None:
    model = tr.Transformer.load(args.model)
    max_new_tokens = args.max_new_tokens or min(64, model.config.max_len)
    sources = [
        _parse_source(line, number)
        for number, line in enumerate(sys.stdin, start=1)
        if line.strip()
    ]
    with _Progress(len(sources), "generate") as progress:
        for start in range(0, len(sources), GENERATE_BATCH):
            batch = sources[start : start + GENERATE_BATCH]
            results = model.generate(
                batch,
                max_new_tokens=max_new_tokens,
                beam_size=args.beam,
                return_scores=True,
            )
            progress.clear()
            for [(tokens, score)] in results:
                record = {"tokens": [int(t) for t in tokens], "score": float(score)}
                print(json.dumps(record))
            sys.stdout.flush()
            progress.advance(len(batch))


# ---- embed -----------------------------------------------------------------------------------

# Sentences per encode call: bounds memory on big inputs and paces the progress bar.
EMBED_CHUNK = 1024


def _read_lines(path: str | None) -> list[str]:
    """The lines of FILE (or stdin for None / '-'), without their line endings."""
    if path is None or path == "-":
        return sys.stdin.read().splitlines()
    with open(path, encoding="utf-8") as f:
        return f.read().splitlines()


def _run_embed(args) -> None:
    encoder = tr.SentenceEncoder.load(args.model)
    sentences = _read_lines(args.file)
    if not sentences:
        raise UsageError("no input: expected one sentence per line")
    normalize = not args.no_normalize
    chunks = []
    with _Progress(len(sentences), "embed") as progress:
        for start in range(0, len(sentences), EMBED_CHUNK):
            batch = sentences[start : start + EMBED_CHUNK]
            vectors = encoder.encode(
                batch, batch_size=args.batch_size, normalize_embeddings=normalize
            )
            progress.clear()
            if args.output is None:
                for row in vectors:
                    # 9 significant digits round-trip a float32 exactly.
                    values = ", ".join(f"{v:.9g}" for v in row.tolist())
                    print(f'{{"embedding": [{values}]}}')
                sys.stdout.flush()
            else:
                chunks.append(vectors)
            progress.advance(len(batch))
    if args.output is not None:
        embeddings = np.concatenate(chunks)
        with open(args.output, "wb") as f:  # np.save(path) would append ".npy"
            np.save(f, embeddings)
        print(
            f"wrote {embeddings.shape[0]} x {embeddings.shape[1]} float32 to {args.output}",
            file=sys.stderr,
        )


# ---- info ------------------------------------------------------------------------------------

_INTERESTING_FLAGS = ("avx512f", "avx512bw", "avx512vl", "avx2", "fma", "neon", "asimd")


def cpu_description() -> tuple[str, list[str]]:
    """(CPU model name, the SIMD features among _INTERESTING_FLAGS that the CPU reports)."""
    name, flags = platform.processor() or platform.machine(), set()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if key in ("model name", "hardware", "cpu model") and value.strip():
                    name = value.strip()
                elif key in ("flags", "features"):
                    flags.update(value.split())
    return name, [flag for flag in _INTERESTING_FLAGS if flag in flags]


def _run_info(args) -> None:
    name, flags = cpu_description()
    rows = [
        ("version", tr.__version__),
        ("simd_level", tr.simd_level()),
        ("threads", str(tr.get_num_threads())),
        ("cpu", name),
        ("cpu_features", " ".join(flags) or "(none of: " + " ".join(_INTERESTING_FLAGS) + ")"),
        ("python", platform.python_version()),
        ("numpy", np.__version__),
    ]
    for key, value in rows:
        print(f"{key + ':':<14}{value}")


# ---- bench -----------------------------------------------------------------------------------

BENCH_BATCH_SIZES = (1, 8, 32)
BENCH_NEW_TOKENS = 16


def _run_bench(args) -> None:
    if args.seconds <= 0:
        raise UsageError(f"argument --seconds: expected a positive number, got {args.seconds}")
    if args.model is None:
        with bundled_model_dir() as path:
            model = tr.Transformer.load(path)
    else:
        model = tr.Transformer.load(args.model)
    cfg = model.config
    src_len = min(24, cfg.max_len - 1)
    rng = np.random.default_rng(0)
    first_id = max(cfg.pad_id, cfg.bos_id, cfg.eos_id) + 1  # random ordinary tokens
    print(
        f"simd {tr.simd_level()}, {tr.get_num_threads()} threads; d_model {cfg.d_model}, "
        f"{cfg.n_encoder_layers}+{cfg.n_decoder_layers} layers; "
        f"source {src_len} tokens, up to {BENCH_NEW_TOKENS} new tokens, greedy"
    )
    print(f"{'batch':>6} {'new tokens/s':>14} {'ms/batch':>10}")
    with _Progress(len(BENCH_BATCH_SIZES), "bench") as progress:
        for batch in BENCH_BATCH_SIZES:
            src = rng.integers(first_id, cfg.src_vocab_size, size=(batch, src_len))
            model.generate(src, max_new_tokens=BENCH_NEW_TOKENS)  # warm-up
            tokens, runs, start = 0, 0, time.perf_counter()
            while runs == 0 or time.perf_counter() - start < args.seconds:
                out = model.generate(src, max_new_tokens=BENCH_NEW_TOKENS)
                tokens += sum(len(seq) for seq in out)
                runs += 1
            elapsed = time.perf_counter() - start
            progress.clear()
            print(f"{batch:>6} {tokens / elapsed:>14.0f} {elapsed / runs * 1e3:>10.2f}")
            progress.advance()


# ---- progress bar ----------------------------------------------------------------------------


class _Progress:
    """A one-line progress bar on stderr, shown only on a terminal and only after ~2 s."""

    DELAY_S = 2.0

    def __init__(self, total: int, label: str):
        self.total, self.label, self.done = total, label, 0
        self.start = time.perf_counter()
        self.enabled = sys.stderr.isatty()
        self.shown = False

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.clear()

    def advance(self, n: int = 1) -> None:
        self.done += n
        elapsed = time.perf_counter() - self.start
        if not self.enabled or elapsed < self.DELAY_S or self.done >= self.total:
            return
        filled = 30 * self.done // max(self.total, 1)
        bar = "#" * filled + "." * (30 - filled)
        sys.stderr.write(f"\r{self.label} [{bar}] {self.done}/{self.total} {elapsed:.0f}s")
        sys.stderr.flush()
        self.shown = True

    def clear(self) -> None:
        if self.shown:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
            self.shown = False
