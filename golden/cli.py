"""Shared command-line plumbing: one clear line on stderr and exit code 2 for every bad input."""

from __future__ import annotations

import argparse
import sys
from typing import Callable, NoReturn

__all__ = ["UsageError", "ArgumentParser", "guard", "positive_int", "lanes_arg", "prob_arg"]


class UsageError(Exception):
    """A bad option or input detected by a CLI after parsing; reported as one line, exit 2."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports errors as a single line (``prog: error: ...``) with exit code 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def _errors() -> tuple[type[BaseException], ...]:
    from .model import ModelError
    from .engine import InputError
    from .datasets import DatasetError
    return (UsageError, ModelError, InputError, DatasetError, OSError, ValueError)


def guard(prog: str, main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> NoReturn:
    """Run ``main(argv)``; turn the known error types into one stderr line and exit code 2."""
    try:
        code = main(argv)
    except KeyboardInterrupt:
        sys.stderr.write(f"{prog}: interrupted\n")
        raise SystemExit(130)
    except _errors() as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        sys.stderr.write(f"{prog}: error: {msg}\n")
        raise SystemExit(2)
    raise SystemExit(code or 0)


def positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def lanes_arg(text: str) -> int:
    v = positive_int(text)
    if v & (v - 1) or v > 64:
        raise argparse.ArgumentTypeError(f"lanes must be a power of two from 1 to 64, got {text!r}")
    return v


def prob_arg(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a probability in [0, 1), got {text!r}") from None
    if not 0.0 <= v < 1.0:
        raise argparse.ArgumentTypeError(f"expected a probability in [0, 1), got {text!r}")
    return v
