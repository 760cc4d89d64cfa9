"""Kernel offsets in parallel (docs/spec.md section 3, "Banks"): the accumulator memory interlaced over
``banks`` memories by output position, so that one bundle of an event's valid offsets (all of one
channel group) is one op cycle.

Built so far: :class:`BankedAccumulator` (the banks and the sweep's multiplexer over them). The bundle
generator, the per-slot weight copies and their composition in the core are not built yet, so the core
refuses ``banks > 1`` (:func:`check_core_banks`); golden.perf predicts the cycles of the schedule.
"""

from __future__ import annotations

from amaranth import *
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden import perf
from golden.geometry import ConfigError

from .accmem import AccKind, AccumulatorMemory, acc_op_layout

__all__ = ["check_core_banks", "banked_swept_layout", "BankedAccumulator"]


def check_core_banks(banks) -> int:
    """``banks`` for :class:`hw.core.SpikeCore`: 1, or ConfigError (the banked scatter is specified and
    predicted by golden.perf, but the core does not build it yet)."""
    try:
        banks = perf.check_banks(banks)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if banks != 1:
        raise ConfigError(f"banks={banks}: the core does not build the banked conv scatter yet (golden.perf "
                          f"predicts its cycles, docs/spec.md section 3, Banks); use banks 1")
    return banks


def banked_swept_layout(*, bank_bits: int, addr_bits: int, word: data.Layout) -> data.StructLayout:
    return data.StructLayout({"bank": unsigned(bank_bits), "addr": unsigned(addr_bits), "word": word})


class BankedAccumulator(wiring.Component):
    """``banks`` accumulator memories (:class:`hw.accmem.AccumulatorMemory`), each with its own op port.

    A bundle gives each bank at most one op, so every bank is the one-bank read-modify-write pipeline
    with its own forwarding of its last two writes: any sequence of bundles is exact, whatever words
    consecutive bundles share. The sweep reads one word per cycle from whichever bank holds it; the
    banks' ``swept`` outputs are combined by their own valid flags (an AND-OR multiplexer with no
    delayed select), so the swept word comes ``LATENCY`` cycles after its op, as with one bank.

    Parameters
    ----------
    lanes, width : int
        As :class:`AccumulatorMemory`.
    depth : int
        Words per bank (``golden.perf.bank_depth``).
    banks : int
        Number of banks, 1..``perf.MAX_BANKS``.

    Members
    -------
    ops : In(stream.Signature(acc_op_layout, always_ready=True)).array(banks)
        Bank b's op; at most one ``SWEEP`` over all banks in one cycle (the sweep walks one word).
    swept : Out(stream.Signature(banked_swept_layout, always_ready=True))
        The old word of the ``SWEEP`` op issued in cycle c, with its bank and address, in c + ``LATENCY``.
    forwarded : Out(1)
        Some bank forwarded a write to the op whose old word it has now.
    acc_read, acc_write : Out(range(banks + 1))
        Counter increments: the words read (ops but ``CLEAR``) in this cycle over all banks; the words
        written in this cycle.
    """

    LATENCY = AccumulatorMemory.LATENCY

    def __init__(self, *, lanes: int, width: int, depth: int, banks: int):
        banks = perf.check_banks(banks)
        self._banks = banks
        self._one = AccumulatorMemory(lanes=lanes, width=width, depth=depth)     # its layouts, for the ports
        self._lanes, self._width, self._depth = lanes, width, depth
        self.word_layout = self._one.word_layout
        abits = self._one.addr_bits
        self._bbits = max(1, perf.ceil_log2(banks))
        super().__init__({
            "ops": In(stream.Signature(acc_op_layout(addr_bits=abits, word=self.word_layout),
                                       always_ready=True)).array(banks),
            "swept": Out(stream.Signature(banked_swept_layout(bank_bits=self._bbits, addr_bits=abits,
                                                              word=self.word_layout), always_ready=True)),
            "forwarded": Out(1), "acc_read": Out(range(banks + 1)), "acc_write": Out(range(banks + 1))})

    @property
    def banks(self) -> int:
        return self._banks

    @property
    def addr_bits(self) -> int:
        return self._one.addr_bits

    def elaborate(self, platform):
        m = Module()
        mems = []
        for b in range(self._banks):
            mem = AccumulatorMemory(lanes=self._lanes, width=self._width, depth=self._depth)
            m.submodules[f"bank{b}"] = mem
            m.d.comb += [mem.ops.valid.eq(self.ops[b].valid), mem.ops.payload.eq(self.ops[b].payload)]
            mems.append(mem)
        word, addr, bank = 0, 0, 0
        for b, mem in enumerate(mems):
            sel = Mux(mem.swept.valid, ~0, 0)
            word = word | (mem.swept.payload.word.as_value() & sel)
            addr = addr | (mem.swept.payload.addr & sel)
            bank = bank | Mux(mem.swept.valid, b, 0)
        m.d.comb += [self.swept.valid.eq(Cat(*[mem.swept.valid for mem in mems]).any()),
                     self.swept.payload.word.eq(word), self.swept.payload.addr.eq(addr),
                     self.swept.payload.bank.eq(bank),
                     self.forwarded.eq(Cat(*[mem.forwarded for mem in mems]).any()),
                     self.acc_read.eq(sum(mem.acc_read for mem in mems)),
                     self.acc_write.eq(sum(mem.acc_write for mem in mems))]
        return m
