"""Performance counters: registered increments, a live total per counter, a snapshot per sample.

Every contribution (``inc[name][k]``, from whichever unit did the work) is registered, the
contributions of a counter are summed and registered, then added to the live total: nothing wide is
added in series with the datapath. Because every increment takes the same ``LATENCY`` cycles, the
sample boundary (``sample_done``, the cycle the last result beat is taken) lines up with the
increments: the snapshot holds exactly one sample's work. ``done`` is high while a fresh snapshot
is on ``cnt``.
"""

from __future__ import annotations

from amaranth import *
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .bits import balanced_sum
from .signatures import CounterSignature

__all__ = ["Counters"]


class Counters(wiring.Component):
    """Parameters
    ----------
    sources : dict name -> list of increment widths (bits)
    width : int     counter width

    Members
    -------
    inc : In(...)   ``inc[name][k]`` contribution k of counter ``name`` this cycle
    sample_done : In(1)
    cnt : Out(CounterSignature), done : Out(1)
    """

    LATENCY = 2

    def __init__(self, sources: dict, width: int):
        self._names = tuple(sources)
        self._sources = {n: list(ws) for n, ws in sources.items()}
        self._width = width
        members = {"sample_done": In(1), "cnt": Out(CounterSignature(self._names, width)), "done": Out(1)}
        for n, ws in self._sources.items():
            for k, w in enumerate(ws):
                members[f"inc_{n}_{k}"] = In(max(1, w))
        super().__init__(members)

    def inc(self, name: str, k: int = 0):
        return getattr(self, f"inc_{name}_{k}")

    def elaborate(self, platform):
        m = Module()
        # the boundary travels with the increments: LATENCY register stages for both
        done = self.sample_done
        for i in range(self.LATENCY):
            d = Signal(name=f"done_d{i}")
            m.d.sync += d.eq(done)
            done = d
        for n, ws in self._sources.items():
            regs = []
            for k, w in enumerate(ws):
                r = Signal(max(1, w), name=f"{n}_r{k}")
                m.d.sync += r.eq(self.inc(n, k))
                regs.append(r)
            total = Signal(max(1, max(ws)) + len(ws), name=f"{n}_sum")
            m.d.sync += total.eq(balanced_sum(regs))
            live = Signal(self._width, name=f"live_{n}")
            nxt = Signal(self._width, name=f"next_{n}")
            m.d.comb += nxt.eq(live + total)
            with m.If(done):
                m.d.sync += [getattr(self.cnt, n).eq(nxt), live.eq(0)]
            with m.Else():
                m.d.sync += live.eq(nxt)
        m.d.sync += self.done.eq(done)
        return m
