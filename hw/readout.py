"""Readout: the last layer's final membranes (and spike counts) as result beats.

For each group of the last layer the state word is read (``perf.READ_CYCLES_PER_GROUP`` cycles: the
memory, then its output register), then its real lanes leave one beat each. The read address stays
put while beats wait on a stalled consumer, so a held beat never changes. The cycles counted are the
reads and the beats that were taken, whatever the consumer's stalls.
"""

from __future__ import annotations

from amaranth import *
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from golden import perf

__all__ = ["Readout"]


class Readout(wiring.Component):
    """Members
    -------
    start : In(1)              begin the readout (after the argmax has settled)
    prediction : In            the argmax, the same on every beat
    rd_addr : Out ; state : In (the group store's registered output)
    result : Out(stream {index, count, membrane, prediction, last})
    busy : Out(1), reading : Out(1)     reading: a counted read cycle
    done : Out(1)              the last beat was taken this cycle
    """

    def __init__(self, *, result_layout, lanes: int, n_out: int, sbase: int, saddr_bits: int, state_layout,
                 counts: bool):
        self._P, self._n, self._sbase, self._counts = lanes, n_out, sbase, counts
        self._lp = exact_log2(lanes)
        self._G = perf.groups(n_out, lanes)
        super().__init__({"start": In(1), "prediction": In(result_layout["prediction"].shape),
                          "rd_addr": Out(saddr_bits), "state": In(state_layout),
                          "result": Out(stream.Signature(result_layout)), "busy": Out(1), "reading": Out(1),
                          "done": Out(1)})

    def elaborate(self, platform):
        m = Module()
        P, lp = self._P, self._lp
        g = Signal(range(self._G + 1))
        lane = Signal(range(max(2, P)))
        wait = Signal(range(perf.READ_CYCLES_PER_GROUP + 1))
        sending = Signal()
        m.d.comb += [self.rd_addr.eq(self._sbase + g), self.reading.eq(self.busy & ~sending)]
        index = Cat(lane[:lp], g) if lp else g
        res = self.result.payload
        word = self.state
        m.d.comb += [res.index.eq(index), res.membrane.eq(Array(word[p].v for p in range(P))[lane]),
                     res.prediction.eq(self.prediction), res.last.eq(index == self._n - 1),
                     self.result.valid.eq(sending)]
        if self._counts:
            m.d.comb += res.count.eq(Array(word[p].cnt for p in range(P))[lane])
        take = self.result.valid & self.result.ready
        with m.If(self.start):
            m.d.sync += [self.busy.eq(1), g.eq(0), lane.eq(0), wait.eq(perf.READ_CYCLES_PER_GROUP - 1), sending.eq(0)]
        with m.Elif(self.busy & ~sending):
            with m.If(wait == 0):
                m.d.sync += sending.eq(1)
            with m.Else():
                m.d.sync += wait.eq(wait - 1)
        with m.Elif(take):
            with m.If(index == self._n - 1):
                m.d.sync += [self.busy.eq(0), sending.eq(0)]
            with m.Elif(lane == P - 1):
                m.d.sync += [g.eq(g + 1), lane.eq(0), sending.eq(0), wait.eq(perf.READ_CYCLES_PER_GROUP - 1)]
            with m.Else():
                m.d.sync += lane.eq(lane + 1)
        m.d.comb += self.done.eq(take & (index == self._n - 1))
        return m
