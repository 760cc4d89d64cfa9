"""Address generation: events in, memory addresses out. The part that convolution replaces.

The dense generator turns each event (source neuron ``index``, replayed for consumer ``group``) into
the weight word ``wbase + group * n_in + index``, and each group's first event into the read of the
group's state and parameter words (``sbase + group``), issued one cycle before the weight read so
the group's starting membrane is ready when its first weight arrives. An event-driven convolution
keeps these ports and replaces only how addresses are formed (a scatter over kernel offsets and
channel groups into an accumulator memory), leaving the reader, the fetch, the accumulator and the
neuron units alone.
"""

from __future__ import annotations

from amaranth import *
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["op_layout", "DenseAddressGen"]


def op_layout(*, waddr_bits: int, group_bits: int, layer_bits: int, payload_bits: int) -> data.StructLayout:
    """An accumulation op after address generation (what the weight fetch carries along)."""
    return data.StructLayout({
        "waddr": unsigned(waddr_bits), "group": unsigned(group_bits), "layer": unsigned(layer_bits),
        "payload": unsigned(max(1, payload_bits)), "first": unsigned(1), "last": unsigned(1), "null": unsigned(1),
    })


class DenseAddressGen(wiring.Component):
    """Dense ``every event times every group`` addressing.

    Members
    -------
    events : In(stream)      from the :class:`hw.events.EventReader` (always ready)
    layer : In(layer_bits)   the phase's layer (held through the phase; it travels with the op)
    wbase, n_in, sbase : In  the layer's descriptor fields (held through the phase)
    state_from_memory : In(1)
        The phase's groups start from their stored state (low at step 0, which starts from v_init, and
        for stcb, which keeps no state between phases).
    pbase : In               the layer's first parameter word
    grp_rd : Out(1), st_rd : Out(1), grp_addr : Out(saddr_bits), prm_addr : Out(saddr_bits)
        Read a group's parameter word (``grp_rd``, at ``prm_addr``) and, when it starts from memory, its
        state word (``st_rd``, at ``grp_addr``): on the cycle its first event arrives.
    op : Out(op_layout), op_valid : Out(1)
        The op one cycle later, with its weight address (presented to the weight memory by the fetch).

    """

    LATENCY = 1

    def __init__(self, *, event_layout, n_in_bits: int, waddr_bits: int, saddr_bits: int, layer_bits: int,
                 payload_bits: int, zero_word: int):
        self._zero = zero_word
        self.op_layout = op_layout(waddr_bits=waddr_bits, group_bits=Shape.cast(event_layout["group"].shape).width,
                                   layer_bits=layer_bits, payload_bits=payload_bits)
        self._pw = payload_bits
        super().__init__({"events": In(stream.Signature(event_layout)), "layer": In(layer_bits),
                          "wbase": In(waddr_bits), "n_in": In(n_in_bits), "sbase": In(saddr_bits),
                          "pbase": In(saddr_bits), "prm_addr": Out(saddr_bits),
                          "state_from_memory": In(1), "grp_rd": Out(1), "st_rd": Out(1), "grp_addr": Out(saddr_bits),
                          "op": Out(self.op_layout), "op_valid": Out(1)})

    def elaborate(self, platform):
        m = Module()
        ev = self.events.payload
        m.d.comb += self.events.ready.eq(1)
        fire = self.events.valid
        # the weight base of the current group: wbase + group * n_in, advanced by n_in per group
        gbase = Signal(len(self.op.waddr) + 1)
        base_now = Signal.like(gbase)
        m.d.comb += base_now.eq(Mux(ev.first & (ev.group == 0), self.wbase, gbase))
        with m.If(fire & ev.last):
            m.d.sync += gbase.eq(base_now + self.n_in)
        with m.Elif(fire):
            m.d.sync += gbase.eq(base_now)
        m.d.comb += [self.grp_rd.eq(fire & ev.first), self.st_rd.eq(fire & ev.first & self.state_from_memory),
                     self.grp_addr.eq(self.sbase + ev.group), self.prm_addr.eq(self.pbase + ev.group)]
        # a null op reads the weight memory's last word, which is zero
        m.d.sync += [self.op_valid.eq(fire), self.op.waddr.eq(Mux(ev.null, self._zero, base_now + ev.index)),
                     self.op.group.eq(ev.group),
                     self.op.layer.eq(self.layer), self.op.first.eq(ev.first), self.op.last.eq(ev.last),
                     self.op.null.eq(ev.null)]
        if self._pw:
            m.d.sync += self.op.payload.eq(ev.payload)
        return m
