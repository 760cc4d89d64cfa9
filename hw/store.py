"""The neuron state and parameter memories, with registered outputs.

One state word holds a group's P lanes: the membrane V, then (tsc) the current C, then (count
readout) the spike count. One parameter word holds, per lane, the bias, the threshold, the initial
membrane and bias - threshold (so the accumulator can form V + bias - threshold without a second adder
in series). Reads go through the memory and then a fabric register: the data of a read issued in
cycle c is on ``state``/``params`` in cycle c + 2 (``perf.MEM_READ_LATENCY``).
"""

from __future__ import annotations

from amaranth import *
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from golden import perf
from golden.geometry import PARAM_FIELDS

__all__ = ["GroupStore", "state_lane_layout", "param_lane_layout"]


def state_lane_layout(v_bits: int, cur_bits: int, cnt_bits: int) -> data.StructLayout:
    fields = {"v": signed(v_bits)}
    if cur_bits:
        fields["c"] = signed(cur_bits)
    if cnt_bits:
        fields["cnt"] = unsigned(cnt_bits)
    return data.StructLayout(fields)


def param_lane_layout(p_bits: int | dict) -> data.StructLayout:
    """A parameter lane: bias, threshold, v_init and bias - threshold, signed, the first lowest; ``p_bits``
    is one width for all four or a width per field (``CoreGeometry.param_bits``)."""
    widths = p_bits if isinstance(p_bits, dict) else dict.fromkeys(PARAM_FIELDS, p_bits)
    return data.StructLayout({k: signed(widths[k]) for k in PARAM_FIELDS})


class GroupStore(wiring.Component):
    """State (read/write) and parameter (read-only) memories of every layer's groups.

    Members
    -------
    state_rd_en, state_rd_addr : In     read a state word (the port holds its word while ``en`` is low)
    param_rd_en, param_rd_addr : In     read a parameter word; the two read ports are independent
    state : Out(ArrayLayout(state lane, P)), params : Out(ArrayLayout(param lane, P))
        The words read two cycles earlier (held until the next enabled read).
    wr_en, wr_addr, wr_data : In    write a state word

    The memory's own ports are the truth of its traffic: the core's state trace and its
    ``state_reads`` counter both come from ``state_rd_en``.
    """

    def __init__(self, *, lanes: int, depth: int, addr_bits: int, state_lane: data.Layout, param_lane: data.Layout,
                 param_init: list[int], param_depth: int | None = None):
        self._depth = max(2, depth)
        self._pdepth = max(2, depth if param_depth is None else param_depth)
        self.state_layout = data.ArrayLayout(state_lane, lanes)
        self.param_layout = data.ArrayLayout(param_lane, lanes)
        self._param_init = list(param_init) + [0] * (self._pdepth - len(param_init))
        super().__init__({"state_rd_en": In(1), "state_rd_addr": In(addr_bits),
                          "param_rd_en": In(1), "param_rd_addr": In(addr_bits),
                          "state": Out(self.state_layout), "params": Out(self.param_layout),
                          "wr_en": In(1), "wr_addr": In(addr_bits), "wr_data": In(self.state_layout)})

    @property
    def read_latency(self) -> int:
        return perf.MEM_READ_LATENCY

    def elaborate(self, platform):
        m = Module()
        # no_rw_check: no state read whose word is used meets a write to that word in the same cycle (the
        # core tests and sim.regress check it: hw.pysim's and the testbench's hazards), so what the block
        # RAM reads then is don't-care. Without the mark Yosys builds read-first logic around a wide
        # block RAM (a register of the write data, one of the read data, an address compare and a
        # multiplexer per bit), whose compare after the read address was the stcb core's critical path
        m.submodules.smem = smem = Memory(shape=self.state_layout, depth=self._depth, init=[],
                                          attrs={"no_rw_check": 1})
        m.submodules.pmem = pmem = Memory(shape=Shape.cast(self.param_layout).width, depth=self._pdepth,
                                          init=self._param_init)
        s_rd, s_wr, p_rd = smem.read_port(), smem.write_port(), pmem.read_port()
        m.d.comb += [s_rd.addr.eq(self.state_rd_addr), s_rd.en.eq(self.state_rd_en),
                     p_rd.addr.eq(self.param_rd_addr), p_rd.en.eq(self.param_rd_en),
                     s_wr.addr.eq(self.wr_addr), s_wr.data.eq(self.wr_data), s_wr.en.eq(self.wr_en)]
        # the fabric registers after the block RAMs (their output is slow; nothing else follows it),
        # enabled a cycle after their port, so a word stays until the next read of its port
        s_en, p_en = Signal(), Signal()
        m.d.sync += [s_en.eq(self.state_rd_en), p_en.eq(self.param_rd_en)]
        with m.If(s_en):
            m.d.sync += self.state.eq(s_rd.data)
        with m.If(p_en):
            m.d.sync += self.params.eq(p_rd.data)
        return m
