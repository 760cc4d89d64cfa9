"""The prediction: argmax over the last layer, as a registered comparator tree plus a running best.

Each update of a last-layer group at the last step brings P candidates. Key: (count, V) compared
lexicographically (count readout) or V alone (membrane readout); as one unsigned number, the count
above V with V's sign bit inverted, so one comparator decides. Padding lanes never win. Ties go to
the lower index: inside the tree the left (lower) candidate wins ties, and the running best (earlier
groups) wins ties against a later group. The result is final ``perf.finish_cycles(P)`` cycles after
the last group's update.
"""

from __future__ import annotations

from amaranth import *
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from golden import perf

__all__ = ["Argmax"]


class Argmax(wiring.Component):
    """Members
    -------
    clear : In(1)                  forget the running best (a new sample)
    in_valid : In(1), in_group : In, in_v : In(P x signed v_bits), in_cnt : In(P x cnt_bits)
    real_lanes : In                real lanes of ``in_group``
    best : Out(cls_bits)           index of the best neuron so far
    """

    def __init__(self, *, lanes: int, v_bits: int, cnt_bits: int, group_bits: int, cls_bits: int):
        self._P, self._vb, self._cb, self._lp = lanes, v_bits, cnt_bits, exact_log2(lanes)
        super().__init__({"clear": In(1), "in_valid": In(1), "in_group": In(group_bits),
                          "in_v": In(signed(v_bits)).array(lanes), "in_cnt": In(cnt_bits).array(lanes),
                          "real_lanes": In(range(lanes + 1)), "best": Out(cls_bits)})

    @property
    def latency(self) -> int:
        return perf.finish_cycles(self._P)

    def elaborate(self, platform):
        m = Module()
        P, lp = self._P, self._lp
        kbits = 1 + self._cb + self._vb
        # level 0: (key, index) per lane; the valid bit on top keeps padding lanes last
        level = []
        for p in range(P):
            v = self.in_v[p]
            key = Cat(v[:-1], ~v[-1], self.in_cnt[p] if self._cb else C(0, 0), p < self.real_lanes)
            idx = Cat(C(p, lp), self.in_group) if lp else self.in_group
            level.append((key, idx))
        valid = self.in_valid
        depth = 0
        while len(level) > 1:
            nxt = []
            for i in range(0, len(level), 2):
                (ka, ia), (kb, ib) = level[i], level[i + 1]
                k, ix = Signal(kbits, name=f"am{depth}_k{i // 2}"), Signal(len(self.best) + 1, name=f"am{depth}_i{i // 2}")
                right = kb > ka                      # the lower index wins ties
                m.d.sync += [k.eq(Mux(right, kb, ka)), ix.eq(Mux(right, ib, ia))]
                nxt.append((k, ix))
            v2 = Signal(name=f"am{depth}_valid")
            m.d.sync += v2.eq(valid)
            level, valid, depth = nxt, v2, depth + 1
        (key, idx), = level
        best_k, best_ok = Signal(kbits), Signal()
        with m.If(self.clear):
            m.d.sync += best_ok.eq(0)
        with m.Elif(valid & (~best_ok | (key > best_k))):
            m.d.sync += [best_k.eq(key), self.best.eq(idx), best_ok.eq(1)]
        return m
