"""Shared command-line plumbing: one clear line on stderr and exit code 2 for every bad input.

Every error line has the form ``<prog>: error: <option>: <what is wrong>`` (``prog`` is the module, e.g.
``sim.regress``); errors that come from a file rather than an option (a corrupt model, a missing
dataset) name the file instead. The option validators live in :mod:`golden.options` and the output
path checks in :mod:`golden.outputs`; both are re-exported here so a CLI imports one module.
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import Callable, NoReturn

from .errors import UsageError
from .options import (banks_arg, banks_list, check, choice_list, finite_float, int_list, int_range, lanes_arg, lanes_list,
                      nonneg_int, positive_float, positive_int, probability, seed_int)
from .outputs import Output, OutputSet, check_outputs, main_output

__all__ = ["UsageError", "ArgumentParser", "guard", "error_line", "short_prog",
           "positive_int", "nonneg_int", "seed_int", "int_range", "lanes_arg", "lanes_list", "banks_arg", "banks_list", "int_list",
           "choice_list", "probability", "prob_arg", "finite_float", "positive_float", "check",
           "Output", "OutputSet", "check_outputs", "main_output", "add_data_options"]

prob_arg = probability        # the older name, kept for callers outside this package


def short_prog(prog: str) -> str:
    """``python -m sim.regress`` -> ``sim.regress``: the name every error line starts with."""
    return prog[len("python -m "):] if prog.startswith("python -m ") else prog


def error_line(prog: str, message: str) -> str:
    first = message.splitlines()[0] if message else "error"
    return f"{short_prog(prog)}: error: {first}\n"


def _option_first(message: str) -> str:
    """argparse's messages, reworded so the option comes first, as in every other error line."""
    m = re.match(r"argument (\S+): (.*)$", message, re.S)
    if m:
        opt = m.group(1).split("/")[-1]
        return f"{opt}: {m.group(2)}"
    m = re.match(r"the following arguments are required: (.*)$", message)
    if m:
        opts = m.group(1)
        return f"{opts}: {'required option missing' if ',' not in opts else 'required options missing'}"
    m = re.match(r"unrecognized arguments: (.*)$", message)
    if m:
        return f"{m.group(1)}: unrecognized argument{'s' if ' ' in m.group(1) else ''}"
    return message


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports errors as a single line (``prog: error: option: ...``) with exit code 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(error_line(self.prog, _option_first(message)))
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
        sys.stderr.write(f"{short_prog(prog)}: interrupted\n")
        raise SystemExit(130)
    except _errors() as e:
        sys.stderr.write(error_line(prog, str(e) or type(e).__name__))
        raise SystemExit(2)
    raise SystemExit(code or 0)


def add_data_options(p: argparse.ArgumentParser) -> None:
    """``--dataset``, ``--split``, ``--data-dir`` and ``--limit``: the samples a command evaluates, spelled
    and checked the same way by every command that reads a dataset split."""
    from .datasets import DATASETS
    p.add_argument("--dataset", default="digits", help=f"one of {', '.join(DATASETS)} (default digits)")
    p.add_argument("--split", default="test", choices=("train", "test"), help="dataset split (default test)")
    p.add_argument("--data-dir", default=None, help="directory with the MNIST/Fashion-MNIST/CIFAR-10 files")
    p.add_argument("--limit", type=positive_int, default=None, help="first N samples only")
