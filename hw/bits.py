"""Small arithmetic helpers that keep the netlist shallow."""

from __future__ import annotations

from amaranth import *
from amaranth.utils import ceil_log2

__all__ = ["balanced_sum", "popcount", "bits_for"]


def balanced_sum(values) -> Value:
    """The sum of ``values`` as a balanced adder tree (a Python ``sum`` builds a chain as deep as the
    list is long, which is slow in hardware and too deep for Yosys's recursion on wide words)."""
    vals = [Value.cast(v) for v in values]
    if not vals:
        return C(0, 1)
    while len(vals) > 1:
        vals = [vals[i] + vals[i + 1] if i + 1 < len(vals) else vals[i] for i in range(0, len(vals), 2)]
    return vals[0]


def popcount(value) -> Value:
    """The number of set bits of ``value``."""
    value = Value.cast(value)
    return balanced_sum(value[i] for i in range(len(value)))


def bits_for(n: int) -> int:
    """Bits of an unsigned field that holds 0..n (at least 1)."""
    return max(1, ceil_log2(n + 1))
