"""The synthetic task behind `transformer-rs demo`: date normalisation.

A character-level sequence-to-sequence task. The source is a date written in
one of several human formats, the target is the same date in ISO 8601::

    "Thursday, 26 November 2026"  ->  "2026-11-26"
    "26 nov 26"                   ->  "2026-11-26"

Dates range over 1950-01-01 .. 2049-12-31, so a two-digit year is unambiguous
(50..99 -> 19xx, 00..49 -> 20xx). A weekday, when a format shows one, is always
the correct one for the date.

Everything here is pure Python (no torch, no NumPy): the generator is
deterministic given a seed, and every (date, format) pair belongs to exactly one
split, so the held-out split never overlaps with what the model trained on.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import random
from dataclasses import dataclass
from typing import Callable

__all__ = [
    "BOS_ID",
    "DEMO_INPUTS",
    "EOS_ID",
    "FIRST_DATE",
    "FORMATS",
    "LAST_DATE",
    "PAD_ID",
    "SRC_VOCAB",
    "TGT_VOCAB",
    "UNK_ID",
    "Example",
    "Vocab",
    "iso",
    "render",
    "sample",
    "split_of",
]

PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
_SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")

FIRST_DATE = _dt.date(1950, 1, 1)
LAST_DATE = _dt.date(2049, 12, 31)

_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


class Vocab:
    """A character vocabulary: ids 0..3 are pad, bos, eos, unk; then one id per character."""

    def __init__(self, chars: str):
        if len(set(chars)) != len(chars):
            raise ValueError("chars: expected distinct characters")
        self.chars = chars
        self._id = {c: i + len(_SPECIALS) for i, c in enumerate(chars)}

    def __len__(self) -> int:
        return len(_SPECIALS) + len(self.chars)

    def encode(self, text: str) -> list[int]:
        """Character ids of `text` followed by eos; unknown characters map to unk."""
        return [self._id.get(c, UNK_ID) for c in text] + [EOS_ID]

    def decode(self, ids) -> str:
        """The text of `ids`, stopping at the first eos; pad/bos are skipped, unk shows as '?'."""
        out = []
        for i in ids:
            i = int(i)
            if i == EOS_ID:
                break
            if i == UNK_ID:
                out.append("?")
            elif i >= len(_SPECIALS) and i < len(self):
                out.append(self.chars[i - len(_SPECIALS)])
        return "".join(out)


SRC_VOCAB = Vocab(" ,-./0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
TGT_VOCAB = Vocab("-0123456789")


def _ordinal(day: int) -> str:
    if 11 <= day <= 13:
        return f"{day}th"
    return f"{day}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(day % 10, 'th') }"


def _month(d: _dt.date) -> str:
    return _MONTHS[d.month - 1]


def _weekday(d: _dt.date) -> str:
    return _WEEKDAYS[d.weekday()]


# name -> renderer. Order matters: the index is part of the split hash.
FORMATS: dict[str, Callable[[_dt.date], str]] = {
    "weekday_long": lambda d: f"{_weekday(d)}, {d.day} {_month(d)} {d.year}",
    "d/m/yyyy": lambda d: f"{d.day}/{d.month}/{d.year}",
    "mon d, yyyy": lambda d: f"{_month(d)[:3]} {d.day}, {d.year}",
    "yyyy.mm.dd": lambda d: f"{d.year}.{d.month:02d}.{d.day:02d}",
    "d mon yy": lambda d: f"{d.day} {_month(d)[:3].lower()} {d.year % 100:02d}",
    "month dth yyyy": lambda d: f"{_month(d).lower()} {_ordinal(d.day)} {d.year}",
    "wd d mon yyyy": lambda d: f"{_weekday(d)[:3]} {d.day} {_month(d)[:3]} {d.year}",
    "dd-mon-yyyy": lambda d: f"{d.day:02d}-{_month(d)[:3]}-{d.year}",
    "weekday_us": lambda d: f"{_weekday(d)}, {_month(d)} {d.day}, {d.year}",
    "the dth of month": lambda d: f"the {_ordinal(d.day)} of {_month(d)}, {d.year}",
    "dd.mm.yyyy": lambda d: f"{d.day:02d}.{d.month:02d}.{d.year}",
    "yyyymmdd": lambda d: f"{d.year}{d.month:02d}{d.day:02d}",
}
_FORMAT_NAMES = tuple(FORMATS)


def iso(date: _dt.date) -> str:
    """The target text: `date` as YYYY-MM-DD."""
    return date.isoformat()


def render(date: _dt.date, fmt: str) -> str:
    """The source text: `date` written in format `fmt` (a key of FORMATS)."""
    if not FIRST_DATE <= date <= LAST_DATE:
        raise ValueError(f"date: expected {FIRST_DATE}..{LAST_DATE}, got {date}")
    try:
        return FORMATS[fmt](date)
    except KeyError:
        raise ValueError(f"fmt: expected one of {list(FORMATS)}, got {fmt!r}") from None


def split_of(date: _dt.date, fmt: str) -> str:
    """ "train" or "test": a fixed hash of the (date, format) pair; about 10% are "test"."""
    key = f"{date.isoformat()}|{_FORMAT_NAMES.index(fmt)}".encode()
    return "test" if hashlib.sha256(key).digest()[0] % 10 == 0 else "train"


@dataclass(frozen=True)
class Example:
    source: str
    target: str
    date: _dt.date
    fmt: str


def sample(n: int, seed: int, split: str = "train") -> list[Example]:
    """`n` examples drawn uniformly over (date, format) pairs of `split`, reproducible by `seed`."""
    if split not in ("train", "test"):
        raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
    rng = random.Random(seed)
    first, span = FIRST_DATE.toordinal(), (LAST_DATE - FIRST_DATE).days + 1
    out: list[Example] = []
    while len(out) < n:
        date = _dt.date.fromordinal(first + rng.randrange(span))
        fmt = _FORMAT_NAMES[rng.randrange(len(_FORMAT_NAMES))]
        if split_of(date, fmt) == split:
            out.append(Example(render(date, fmt), iso(date), date, fmt))
    return out


def _demo_inputs() -> tuple[Example, ...]:
    # Fixed dates, each shown in a format whose (date, format) pair is held out from training.
    picks = (
        (_dt.date(2049, 12, 31), "weekday_long"),
        (_dt.date(1969, 7, 20), "wd d mon yyyy"),
        (_dt.date(1989, 11, 9), "mon d, yyyy"),
        (_dt.date(2000, 2, 29), "month dth yyyy"),
        (_dt.date(1976, 1, 3), "d mon yy"),
        (_dt.date(2001, 9, 1), "d/m/yyyy"),
        (_dt.date(2026, 11, 26), "yyyy.mm.dd"),
    )
    return tuple(Example(render(d, f), iso(d), d, f) for d, f in picks)


DEMO_INPUTS: tuple[Example, ...] = _demo_inputs()
