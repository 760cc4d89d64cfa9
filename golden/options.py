"""Typed ``argparse`` validators shared by every CLI.

Each factory returns a ``type=`` callable that parses one option value or raises
``argparse.ArgumentTypeError`` with a message saying what was expected; :class:`golden.cli.ArgumentParser`
turns that into ``<prog>: error: <option>: <message>`` and exit code 2. The same checks can be run on
values that do not come from argparse (an environment variable, a Makefile variable) through
:func:`check`.
"""

from __future__ import annotations

import argparse
import math
from typing import Callable, Sequence

from .errors import UsageError

__all__ = ["int_range", "positive_int", "nonneg_int", "seed_int", "probability", "finite_float",
           "positive_float", "lanes_arg", "banks_arg", "int_list", "lanes_list", "banks_list", "choice_list", "check"]

MAX_LANES = 64
MAX_BANKS = 64        # golden.perf.MAX_BANKS (options imports nothing of golden's models)


def _fail(msg: str):
    raise argparse.ArgumentTypeError(msg)


def _int(text: str, what: str) -> int:
    # int("1.5") and int("1e3") fail, int(" 7 ") passes: a count is written as an integer
    try:
        return int(text)
    except (TypeError, ValueError):
        _fail(f"expected {what}, got {text!r}")


def int_range(lo: int | None = None, hi: int | None = None, *, what: str | None = None) -> Callable[[str], int]:
    """An integer in ``lo..hi`` (either bound may be open)."""
    if what is None:
        what = ("an integer" if lo is None and hi is None else
                f"an integer >= {lo}" if hi is None else
                f"an integer <= {hi}" if lo is None else f"an integer from {lo} to {hi}")

    def parse(text: str) -> int:
        v = _int(text, what)
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            _fail(f"expected {what}, got {text!r}")
        return v

    parse.__name__ = "int_range"
    return parse


positive_int = int_range(1, what="a positive integer")
nonneg_int = int_range(0, what="a non-negative integer")
# numpy and random take seeds in 0..2**32-1; a larger one would fail later, after work has started
seed_int = int_range(0, 2 ** 32 - 1, what="a seed from 0 to 4294967295")


def finite_float(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False, hi_open: bool = False,
                 what: str | None = None) -> Callable[[str], float]:
    """A finite number (never nan or inf) within the given bounds."""
    if what is None:
        parts = []
        if lo is not None:
            parts.append(f"{'>' if lo_open else '>='} {lo:g}")
        if hi is not None:
            parts.append(f"{'<' if hi_open else '<='} {hi:g}")
        what = "a finite number" + (" " + " and ".join(parts) if parts else "")

    def parse(text: str) -> float:
        try:
            v = float(text)
        except (TypeError, ValueError):
            _fail(f"expected {what}, got {text!r}")
        if not math.isfinite(v):
            _fail(f"expected {what}, got {text!r}")
        if lo is not None and (v < lo or (lo_open and v == lo)):
            _fail(f"expected {what}, got {text!r}")
        if hi is not None and (v > hi or (hi_open and v == hi)):
            _fail(f"expected {what}, got {text!r}")
        return v

    parse.__name__ = "finite_float"
    return parse


# A stall probability of 1 stalls forever: the interval is half-open on purpose.
probability = finite_float(0.0, 1.0, hi_open=True, what="a probability in [0, 1)")
positive_float = finite_float(0.0, lo_open=True, what="a positive number")


def lanes_arg(text: str) -> int:
    """P: a power of two from 1 to 64."""
    v = _int(text, f"a power of two from 1 to {MAX_LANES}")
    if v < 1 or v > MAX_LANES or v & (v - 1):
        _fail(f"expected a power of two from 1 to {MAX_LANES}, got {text!r}")
    return v


def banks_arg(text: str) -> int:
    """banks: the accumulator's interlacing, an integer from 1 to 64 (docs/spec.md section 3, "Banks")."""
    v = _int(text, f"an integer from 1 to {MAX_BANKS}")
    if v < 1 or v > MAX_BANKS:
        _fail(f"expected an integer from 1 to {MAX_BANKS}, got {text!r}")
    return v


def int_list(item: Callable[[str], int], *, what: str, unique: bool = True) -> Callable[[str], list[int]]:
    """A comma-separated list, each item parsed by ``item``; no empty items, no repeats."""

    def parse(text: str) -> list[int]:
        parts = [p.strip() for p in str(text).split(",")]
        if not parts or any(not p for p in parts):
            _fail(f"expected a comma-separated list of {what}, got {text!r}")
        out: list[int] = []
        for p in parts:
            try:
                v = item(p)
            except argparse.ArgumentTypeError:
                _fail(f"expected a comma-separated list of {what}; {p!r} is not one")
            if unique and v in out:
                _fail(f"{v} is listed twice in {text!r}")
            out.append(v)
        return out

    parse.__name__ = "int_list"
    return parse


lanes_list = int_list(lanes_arg, what=f"powers of two from 1 to {MAX_LANES} (e.g. 1,2,4,8)")
banks_list = int_list(banks_arg, what=f"integers from 1 to {MAX_BANKS} (e.g. 1,3,9)")


def choice_list(choices: Sequence[str], *, what: str = "names") -> Callable[[str], list[str]]:
    """A comma-separated list of ``choices``; no empty items, no repeats."""

    def parse(text: str) -> list[str]:
        parts = [p.strip() for p in str(text).split(",")]
        if not parts or any(not p for p in parts):
            _fail(f"expected a comma-separated list of {what} ({', '.join(choices)}), got {text!r}")
        out: list[str] = []
        for p in parts:
            if p not in choices:
                _fail(f"unknown {what[:-1] if what.endswith('s') else what} {p!r} (choose from {', '.join(choices)})")
            if p in out:
                _fail(f"{p!r} is listed twice")
            out.append(p)
        return out

    parse.__name__ = "choice_list"
    return parse


def check(parse: Callable[[str], object], text: str, option: str):
    """Run a validator outside argparse; a bad value raises ``golden.errors.UsageError`` naming ``option``."""
    try:
        return parse(text)
    except argparse.ArgumentTypeError as e:
        raise UsageError(f"{option}: {e}") from None
