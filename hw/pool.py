"""maxpool2d on the core: a scatter of input events into the accumulator memory, then a sweep.

docs/spec.md section 3: a maxpool2d layer (kernel K, stride K, no padding) has no weights, state or
parameters. rate and stcb: each input event (c, y, x) ORs its spike (rate: bit 0 of its lanes) or
its T-bit train (stcb) into accumulator word (c // P, y // K, x // K). An event's lanes are its
``mask``: rate and tsc take a whole event-buffer entry, the P channels of one position, as one
event (every set lane), stcb one channel c (lane c mod P, with its train); the sweep then reads every word,
writes zero back, and sends the word's non-zero lanes as an event entry (the word's address is the
entry's group, so a conv consumer finds channel c = og*P + p at (oy, ox)). tsc: an OFF event at step
t >= 1 puts t into its lanes with a lane-wise max (t only grows over the window, so this is the
spec's "write t" and the last write is the largest input value); ON events (t = 0) do nothing but
take their cycle; a clear sweep at t = 0 zeroes the words. The ops go to a
:class:`hw.accmem.AccumulatorMemory`, whose forwarding makes back-to-back events into one window
exact.

y // K and x // K come from per-layer ROMs (K need not be a power of two), c // P and c mod P from
the channel's bits (P is a power of two).
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth import *
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from golden import perf

from .accmem import AccKind, swept_layout
from .bits import bits_for
from .conv_addrgen import conv_event_layout
from .events import entry_layout

__all__ = ["PoolLayerGeom", "pool_event_layout", "pool_op_layout", "PoolScatter", "PoolSweep"]

CODINGS = ("rate", "stcb", "tsc")


@dataclass(frozen=True)
class PoolLayerGeom:
    """One maxpool2d layer: ``in_shape`` (C, H, W) and kernel K (= stride; H, W multiples of K)."""

    in_shape: tuple[int, int, int]
    kernel: int

    def __post_init__(self):
        C, H, W = self.in_shape
        if H % self.kernel or W % self.kernel:
            raise ValueError(f"in_shape {list(self.in_shape)} is not a multiple of kernel {self.kernel}")

    @classmethod
    def of(cls, layer) -> "PoolLayerGeom":
        """From a ``golden.MaxPool2d``."""
        return cls(tuple(layer.in_shape), layer.kernel)

    @property
    def out_shape(self) -> tuple[int, int, int]:
        C, H, W = self.in_shape
        return C, H // self.kernel, W // self.kernel

    def words(self, lanes: int) -> int:
        """N: accumulator words of the output map, P channels per word."""
        C, Hp, Wp = self.out_shape
        return perf.groups(C, lanes) * Hp * Wp


def pool_event_layout(*, lanes: int, c_bits: int, y_bits: int, x_bits: int, payload_bits: int = 0) -> data.StructLayout:
    """A conv event (:func:`hw.conv_addrgen.conv_event_layout`) plus ``mask``: the lanes it stands for."""
    return data.StructLayout({**conv_event_layout(c_bits=c_bits, y_bits=y_bits, x_bits=x_bits,
                                                  payload_bits=payload_bits).members, "mask": unsigned(lanes)})


def pool_op_layout(*, addr_bits: int, word: data.Layout) -> data.StructLayout:
    """An accumulator op (:func:`hw.accmem.acc_op_layout`) plus ``null``: an op that takes its cycle
    but touches no word (a tsc ON event); the core gives the memory only the others."""
    return data.StructLayout({"addr": unsigned(addr_bits), "kind": AccKind, "terms": word, "null": unsigned(1)})


def _check(lanes, coding, T, width, layers):
    if isinstance(lanes, bool) or not isinstance(lanes, int) or lanes < 1 or lanes & (lanes - 1):
        raise TypeError(f"lanes must be a power of two, not {lanes!r}")
    if coding not in CODINGS:
        raise ValueError(f"coding must be one of {', '.join(CODINGS)}, not {coding!r}")
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise TypeError(f"T must be a positive integer, not {T!r}")
    need = {"rate": 1, "stcb": T, "tsc": perf.ceil_log2(T) + 1}[coding]    # tsc: t <= T - 1, signed
    if isinstance(width, bool) or not isinstance(width, int) or width < need:
        raise ValueError(f"width must be at least {need} for {coding} with T={T}, not {width!r}")
    layers = tuple(layers)
    if not layers or not all(isinstance(l, PoolLayerGeom) for l in layers):
        raise TypeError(f"layers must be a non-empty sequence of PoolLayerGeom, not {layers!r}")
    return layers


class PoolScatter(wiring.Component):
    """Input events of a maxpool2d layer into accumulator ops, one per event (an event stands for the
    lanes of its ``mask``: one channel, or every channel of an event-buffer entry).

    Parameters
    ----------
    layers : sequence of PoolLayerGeom
        Every maxpool2d layer of the core; ``layer`` selects one.
    lanes : int
        P (a power of two).
    coding : str
        ``rate``, ``stcb`` (events carry a T-bit train as payload) or ``tsc``.
    T : int
        Time steps (stcb: train length; tsc: window length).
    width : int
        The accumulator memory's lane width (at least 1, T, or ceil_log2(T) + 1 for tsc).
    addr_bits : int
        The accumulator memory's address width.

    Members
    -------
    events : In(stream.Signature(pool_event_layout))
        (c, y, x), ``mask`` (the lanes: bit c mod P, or an entry's set lanes with c its lowest) and,
        for stcb, the train.
    layer : In(layer_bits), t : In(t_bits)
        The phase's layer (set a cycle or more before its first event: its constants are registered) and
        (tsc) step, held through the phase.
    ops : Out(stream.Signature(pool_op_layout))
        The event's op, ``LATENCY`` cycles after it is taken when ``ops`` is ready: a register stage
        that takes a new event in every cycle its op leaves (one op per cycle, no bubble).

    ``LATENCY`` is ``ACCUMULATE_STAGE - MEM_READ_LATENCY``, the conv address generator's.
    """

    LATENCY = perf.ACCUMULATE_STAGE - perf.MEM_READ_LATENCY

    def __init__(self, *, layers, lanes: int, coding: str, T: int, width: int, addr_bits: int):
        self._layers = _check(lanes, coding, T, width, layers)
        self._P, self._coding, self._T, self._width = lanes, coding, T, width
        self.word_layout = data.ArrayLayout(signed(width), lanes)
        self.event_layout = pool_event_layout(
            lanes=lanes,
            c_bits=bits_for(max(l.in_shape[0] - 1 for l in self._layers)),
            y_bits=bits_for(max(l.in_shape[1] - 1 for l in self._layers)),
            x_bits=bits_for(max(l.in_shape[2] - 1 for l in self._layers)),
            payload_bits=T if coding == "stcb" else 0)
        self.op_layout = pool_op_layout(addr_bits=addr_bits, word=self.word_layout)
        # y -> (y // K) * Wp and x -> x // K, the layers' ROMs one after the other
        self.y_rom, self.x_rom, self._ybase, self._xbase = [], [], [], []
        for l in self._layers:
            (_, H, W), K, Wp = l.in_shape, l.kernel, l.out_shape[2]
            self._ybase.append(len(self.y_rom))
            self._xbase.append(len(self.x_rom))
            self.y_rom += [(y // K) * Wp for y in range(H)]
            self.x_rom += [x // K for x in range(W)]
        super().__init__({"events": In(stream.Signature(self.event_layout)),
                          "layer": In(max(1, perf.ceil_log2(len(self._layers)))), "t": In(bits_for(T - 1)),
                          "ops": Out(stream.Signature(self.op_layout))})

    def elaborate(self, platform):
        m = Module()
        P = self._P
        ev = self.events.payload
        abits = len(self.ops.payload.addr)
        m.submodules.yrom = yrom = Memory(shape=unsigned(abits), depth=max(2, len(self.y_rom)), init=self.y_rom)
        m.submodules.xrom = xrom = Memory(shape=unsigned(abits), depth=max(2, len(self.x_rom)), init=self.x_rom)
        yr, xr = yrom.read_port(domain="comb"), xrom.read_port(domain="comb")
        # the layer's ROM bases and plane size, registered every cycle from the held ``layer`` (set a cycle
        # or more before its first event), so no path starts at a multiplexer over the layers
        ybase, xbase = Signal(len(yr.addr)), Signal(len(xr.addr))
        hw = Signal(abits)
        with m.Switch(self.layer):
            for i, l in enumerate(self._layers):
                with m.Case(i):
                    m.d.sync += [ybase.eq(self._ybase[i]), xbase.eq(self._xbase[i]),
                                 hw.eq(l.out_shape[1] * l.out_shape[2])]
        m.d.comb += [yr.addr.eq(ybase + ev.y), xr.addr.eq(xbase + ev.x)]
        lb = exact_log2(P)
        og = ev.c >> lb
        plane = Signal(abits)                     # og * Hp * Wp
        m.d.comb += plane.eq(og * hw)
        terms = Signal(self.word_layout)
        value = {"rate": C(1, 1), "stcb": ev.payload[:self._T], "tsc": self.t}[self._coding]
        for p in range(P):
            m.d.comb += terms[p].eq(Mux(ev.mask[p], value, 0))
        kind = AccKind.MAX if self._coding == "tsc" else AccKind.OR
        null = (self.t == 0) if self._coding == "tsc" else C(0, 1)

        # the output register: refilled in every cycle its op leaves
        m.d.comb += self.events.ready.eq(~self.ops.valid | self.ops.ready)
        with m.If(self.events.ready):
            m.d.sync += self.ops.valid.eq(self.events.valid)
        with m.If(self.events.valid & self.events.ready):
            m.d.sync += [self.ops.payload.addr.eq(plane + yr.data + xr.data), self.ops.payload.kind.eq(kind),
                         self.ops.payload.terms.eq(terms), self.ops.payload.null.eq(null)]
        return m


class PoolSweep(wiring.Component):
    """The sweep of a maxpool2d layer: every output word in address order, then its entry.

    Parameters
    ----------
    layers, lanes, coding, T, width, addr_bits
        As for :class:`PoolScatter`.

    Members
    -------
    start : In(1), clear : In(1)
        Begin a sweep of ``layer``'s N words: ``SWEEP`` ops (rate, stcb), or with ``clear`` ``CLEAR``
        ops (tsc's clear sweep at t = 0).
    layer : In(layer_bits)
    busy : Out(1)
        Ops are still to be issued.
    ops : Out(stream.Signature(pool_op_layout))
        Addresses 0..N-1, one per cycle while ``ready``.
    swept : In(stream.Signature(swept_layout, always_ready=True))
        The accumulator memory's swept words.
    entries : Out(stream.Signature(entry_layout, always_ready=True))
        A swept word with a non-zero lane, ``ENTRY_LATENCY - MEM_READ_LATENCY`` cycles after it:
        group = the word's address (og, oy, ox), mask = its non-zero lanes, and for stcb the P trains.
        The event buffer's append takes one per cycle.

    ``ENTRY_LATENCY`` (op issued to entry) is ``MEM_READ_LATENCY + 1``, within the ``layer_drain``
    that the spec allows after a sweep.
    """

    ENTRY_LATENCY = perf.MEM_READ_LATENCY + 1

    def __init__(self, *, layers, lanes: int, coding: str, T: int, width: int, addr_bits: int):
        self._layers = _check(lanes, coding, T, width, layers)
        self._P, self._coding, self._T = lanes, coding, T
        self.word_layout = data.ArrayLayout(signed(width), lanes)
        self.op_layout = pool_op_layout(addr_bits=addr_bits, word=self.word_layout)
        self.entry_layout = entry_layout(lanes, addr_bits, T if coding == "stcb" else 0)
        super().__init__({
            "start": In(1), "clear": In(1), "layer": In(max(1, perf.ceil_log2(len(self._layers)))),
            "busy": Out(1), "ops": Out(stream.Signature(self.op_layout)),
            "swept": In(stream.Signature(swept_layout(addr_bits=addr_bits, word=self.word_layout),
                                         always_ready=True)),
            "entries": Out(stream.Signature(self.entry_layout, always_ready=True))})

    def elaborate(self, platform):
        m = Module()
        P = self._P
        addr = Signal(len(self.ops.payload.addr))
        kind = Signal(AccKind)
        last = Signal(len(addr))
        with m.Switch(self.layer):
            for i, l in enumerate(self._layers):
                with m.Case(i):
                    m.d.comb += last.eq(l.words(P) - 1)
        m.d.comb += [self.ops.valid.eq(self.busy), self.ops.payload.addr.eq(addr), self.ops.payload.kind.eq(kind)]
        with m.If(self.start):
            m.d.sync += [self.busy.eq(1), addr.eq(0),
                         kind.eq(Mux(self.clear, AccKind.CLEAR, AccKind.SWEEP))]
        with m.Elif(self.ops.valid & self.ops.ready):
            m.d.sync += addr.eq(addr + 1)
            with m.If(addr == last):
                m.d.sync += self.busy.eq(0)

        # the entry of a swept word: lanes with any bit set (rate: the spike bit; stcb: the train)
        word = self.swept.payload.word
        mask = Cat(word[p].as_unsigned().any() for p in range(P))
        m.d.sync += [self.entries.valid.eq(self.swept.valid & mask.any()),
                     self.entries.payload.group.eq(self.swept.payload.addr), self.entries.payload.mask.eq(mask)]
        if self._coding == "stcb":
            m.d.sync += [self.entries.payload.payload[p].eq(word[p].as_unsigned()[:self._T]) for p in range(P)]
        return m
