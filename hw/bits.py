"""Small arithmetic helpers that keep the netlist shallow."""

from __future__ import annotations

from amaranth import *
from amaranth.utils import ceil_log2

__all__ = ["balanced_sum", "popcount", "bits_for", "at_most", "times_const", "times_layer_const"]


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


def at_most(bits, k: int) -> Value:
    """Whether at most ``k`` of ``bits`` are set, as AND/OR logic (no adder: an adder's carry chain
    would sit in front of every use)."""
    bits = Value.cast(bits)
    exactly = [C(1, 1)] + [C(0, 1)] * k          # exactly[j]: j of the bits so far are set
    for i in range(len(bits)):
        b = bits[i]
        exactly = [exactly[0] & ~b] + [(exactly[j] & ~b) | (exactly[j - 1] & b) for j in range(1, k + 1)]
    out = exactly[0]
    for e in exactly[1:]:
        out = out | e
    return out


def times_const(x, k: int) -> Value:
    """``x * k`` for a constant ``k >= 0``: shifted copies of ``x`` summed in a balanced tree. Yosys
    maps even a constant product to a DSP block on the ECP5, whose 3.9 ns after a register ended the
    25F's tsc conv core at 97.8 MHz (``ConvAddressGen``'s ``c * K * K``); x * 9 is one adder."""
    if k < 0:
        raise ValueError(f"k must be >= 0, not {k}")
    x = Value.cast(x)
    terms = [x << i for i in range(k.bit_length()) if k >> i & 1]
    return balanced_sum(terms) if terms else C(0, 1)


def times_layer_const(m: Module, x, consts, layer, domain: str = "sync") -> Value:
    """``x * consts[layer]`` without a multiplier: one :func:`times_const` per distinct constant and a
    select registered from ``layer`` (in ``domain``; ``layer`` is held through a phase, so the select
    is valid the cycle after it is set). Returns the product (combinational in ``x``)."""
    distinct = sorted(set(int(c) for c in consts))
    products = [times_const(x, c) for c in distinct]
    if len(distinct) == 1:
        return products[0]
    sel = Signal(range(len(distinct)))
    with m.Switch(layer):
        for i, c in enumerate(consts):
            with m.Case(i):
                m.d[domain] += sel.eq(distinct.index(int(c)))
    return Array(products)[sel]
