"""Generation row group: ``tr.Transformer.generate`` of Transformer-base 6+6
next to CTranslate2's Translator (compute_type float32) on the same weights,
greedy and beam 4, exactly NEW_TOKENS new tokens per source of SRC_LEN tokens,
in generated tokens/s. Shape key: B batch."""

from __future__ import annotations

import tempfile

import numpy as np

import transformer_rs as tr

from .common import OURS, Context, Row, time_engines
from .transformer_base import FIRST_TOKEN, config_and_weights

TITLE = (
    "Transformer-base generation, 32 new tokens from 32 source tokens (tokens/s, higher is better)"
)
UNIT = "tok/s"
NEW_TOKENS = 32
SRC_LEN = 32
CASES = [(1, 1), (1, 4), (8, 1), (8, 4)]  # (B, beam size)


def value(row: Row, engine: str) -> float:
    return row.work / row.seconds[engine]


def measure(ctx: Context) -> list[Row]:
    config, state = config_and_weights(ctx.quick)
    ours = tr.Transformer.from_state_dict(state, config)
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        translator = None
        if ctx.peer("ctranslate2"):
            from .peers import ct2_transformer

            translator = ct2_transformer.build_translator(config, state, folder, ctx.threads)
        for b, beam in CASES:
            src = rng.integers(FIRST_TOKEN, config["src_vocab_size"], (b, SRC_LEN))
            name = "greedy" if beam == 1 else f"beam {beam}"
            row = Row("generate", f"{name}, B={b}", ctx.threads, work=b * NEW_TOKENS)
            row.target = 1.3
            calls = {
                OURS: lambda src=src, beam=beam: ours.generate(
                    src, max_new_tokens=NEW_TOKENS, beam_size=beam
                )
            }
            if translator is not None:
                tokens = ct2_transformer.as_strings(src, "s")
                calls["CTranslate2"] = lambda tokens=tokens, beam=beam: [
                    r.hypotheses[0]
                    for r in translator.translate_batch(
                        tokens, beam_size=beam, max_decoding_length=NEW_TOKENS
                    )
                ]
            outputs = time_engines(row, calls, ctx)
            ours_ids = [[int(t) for t in seq] for seq in outputs[OURS]]
            if any(len(seq) != NEW_TOKENS for seq in ours_ids):
                raise RuntimeError("eos must be unreachable: every output has NEW_TOKENS tokens")
            if translator is not None:
                theirs = ct2_transformer.as_ids(outputs["CTranslate2"])
                same = sum(a == t for a, t in zip(ours_ids, theirs))
                row.check = f"{same}/{b} outputs identical to CTranslate2"
            rows.append(row)
    return rows
