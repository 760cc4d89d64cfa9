"""Weight fetch: one weight word (P weights) per op, from a block RAM with a registered output.

An op arriving with its weight address in cycle c leaves in cycle c + 2 with its P weights
(``perf.MEM_READ_LATENCY``): the block RAM, then a plain fabric register (the RAM's output is slow).
A null op reads the memory's last word, which is all zeros, so nothing has to zero it. With direct
input (weight x input value: one multiplier per lane, a DSP block where the part has them) or tsc
(OFF events subtract: the weights negated) one more registered *term stage* follows
(``perf.term_stage``), so the accumulator after the fetch is a bare adder. ``next_*`` tells the
accumulator, a cycle ahead, that a group's first op comes next.
"""

from __future__ import annotations

from amaranth import *
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from golden import perf

__all__ = ["WeightFetch"]


class WeightFetch(wiring.Component):
    """Members
    -------
    op_valid : In(1), op : In(op layout)
        ``op.waddr`` is read; the other fields travel alongside.
    scale : In(1)
        Direct input only: multiply by the event's value (layer 0); otherwise the weight passes as is
        (still through the multiplier stage, so the latency is the same for every layer). A phase
        register: read the cycle after an op enters.
    negate : In(1)
        tsc: negate the weights (OFF events).
    next_valid, next_first : Out(1)
        The op that leaves next cycle, and whether it starts a group.
    out_valid : Out(1), out_op : Out(op layout), terms : Out(ArrayLayout(signed(term_bits), P))
        The op and its P terms (the weights, or weight x input value for direct input).
    """

    def __init__(self, *, op_layout: data.Layout, lanes: int, weight_bits: int, depth: int, init: list[int],
                 multiply_bits: int = 0, negates: bool = False):
        self._P, self._wb, self._mul, self._neg = lanes, weight_bits, multiply_bits, negates
        self._depth = max(2, depth)
        self._init = list(init) + [0] * (self._depth - len(init))
        term_bits = weight_bits + 1 + multiply_bits + (1 if multiply_bits else 0)
        self.term_layout = data.ArrayLayout(signed(term_bits), lanes)
        super().__init__({"op_valid": In(1), "op": In(op_layout), "scale": In(1), "negate": In(1),
                          "out_valid": Out(1), "out_op": Out(op_layout), "terms": Out(self.term_layout),
                          "next_valid": Out(1), "next_first": Out(1)})

    @property
    def latency(self) -> int:
        return perf.MEM_READ_LATENCY + int(bool(self._mul) or self._neg)

    def elaborate(self, platform):
        m = Module()
        P, wb = self._P, self._wb
        m.submodules.wmem = wmem = Memory(shape=unsigned(P * wb), depth=self._depth, init=self._init)
        rd = wmem.read_port()
        m.d.comb += rd.addr.eq(self.op.waddr)
        v1, op1 = Signal(), Signal.like(self.op)
        m.d.sync += [v1.eq(self.op_valid), op1.eq(self.op)]
        w2 = Signal(P * wb)                          # the fabric register after the block RAM
        v2, op2 = Signal(), Signal.like(self.op)
        m.d.sync += [w2.eq(rd.data), v2.eq(v1), op2.eq(op1)]
        lanes = [w2[p * wb:(p + 1) * wb].as_signed() for p in range(P)]
        if not (self._mul or self._neg):
            m.d.comb += [self.out_valid.eq(v2), self.out_op.eq(op2), self.next_valid.eq(v1),
                         self.next_first.eq(v1 & op1.first)]
            m.d.comb += [self.terms[p].eq(lanes[p]) for p in range(P)]
        else:                                        # the term stage
            m.d.sync += [self.out_valid.eq(v2), self.out_op.eq(op2)]
            if self._mul:
                # the multiplier's operand is a register formed a stage early (the layer compare and the
                # select in front of the DSP block held the direct conv core to 96.3 MHz); the layer does
                # not change while an op is in flight, since a phase ends only after its ops drain
                value = Signal(self._mul)
                m.d.sync += value.eq(Mux(self.scale, op1.payload[:self._mul], 1))
                m.d.sync += [self.terms[p].eq(lanes[p] * value) for p in range(P)]
            else:
                m.d.sync += [self.terms[p].eq(Mux(self.negate, -lanes[p], lanes[p])) for p in range(P)]
            m.d.comb += [self.next_valid.eq(v2), self.next_first.eq(v2 & op2.first)]
        return m
