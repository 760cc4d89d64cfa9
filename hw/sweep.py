"""The fire sweep's word walker: every output word of a conv2d or maxpool2d layer, one per cycle.

docs/spec.md section 3: after a spatial layer's scatter, one sweep visits its N = Gc * Ho * Wo output
words in address order, ``w = (og * Ho + oy) * Wo + ox``. Each word has two names: ``w`` addresses
the accumulator and state memories, and the *packed* index ``(og << (bx + by)) | (oy << bx) | ox``
(:func:`golden.geometry.map_pack`) names the word in the event entries, so a consumer reads c, y, x
from an event's bit fields. The walker keeps both as counters, so it needs no divider.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth import *
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .bits import bits_for

__all__ = ["SweepLayer", "SweepGen"]


@dataclass(frozen=True)
class SweepLayer:
    """One spatial layer's output map: channel groups ``groups``, ``height`` x ``width``, and the
    widths ``bx``, ``by`` of its packed x and y fields."""

    groups: int
    height: int
    width: int
    bx: int
    by: int

    @property
    def words(self) -> int:
        return self.groups * self.height * self.width


class SweepGen(wiring.Component):
    """Members
    -------
    start : In(1)        begin the sweep of layer ``layer``; its first word goes out in this cycle (with
                         ``layer_ahead``, only while idle: from the cycle after the previous sweep's
                         last word; without, at any time)
    layer : In           the layer's row in ``layers``, held through the sweep; with ``layer_ahead`` (the
                         default) set a cycle before ``start`` at least: its sizes are registered from
                         it, and word 0's end flags loaded from it while idle. Without, it may change
                         in the ``start`` cycle itself (the tsc generator's source map, whose
                         descriptor is loaded with its start), at the cost of a multiplexer on
                         ``start`` and the layer's multiplexer in front of the flags.
    valid : Out(1)       a word this cycle (N cycles in a row from ``start``)
    word : Out           w, the word's address within the layer (0..N-1)
    packed : Out         its packed index
    og : Out             its channel group
    og_last : Out(1)     the word belongs to the last channel group (whose real lanes may be fewer than P)
    plane_end : Out(1)   the word is its channel group's last (the next word starts the next group)
    last : Out(1)        the sweep's last word
    spacing : In         (only with ``max_spacing > 1``) cycles from one word to the next, held through the
                         sweep (at least 1): an stcb conv2d sweep hands each word to the serial slot unit,
                         which takes one every ``T * taps`` cycles (docs/spec.md section 3, stcb)
    """

    def __init__(self, layers, *, packed_bits: int, max_spacing: int = 1, layer_ahead: bool = True):
        self._layers = tuple(layers)
        if not self._layers or not all(isinstance(l, SweepLayer) for l in self._layers):
            raise TypeError(f"layers must be a non-empty sequence of SweepLayer, not {layers!r}")
        self._wbits = bits_for(max(l.words for l in self._layers))
        self._gbits = bits_for(max(l.groups for l in self._layers))
        self._ybits = bits_for(max(l.height for l in self._layers))
        self._xbits = bits_for(max(l.width for l in self._layers))
        self._pbits = packed_bits
        if isinstance(max_spacing, bool) or not isinstance(max_spacing, int) or max_spacing < 1:
            raise TypeError(f"max_spacing must be a positive integer, not {max_spacing!r}")
        self._max_spacing = max_spacing
        self._ahead = bool(layer_ahead)
        members = {"start": In(1), "layer": In(bits_for(len(self._layers) - 1)),
                   "valid": Out(1), "word": Out(self._wbits), "packed": Out(packed_bits),
                   "og": Out(self._gbits), "og_last": Out(1), "plane_end": Out(1),
                   "last": Out(1)}
        if max_spacing > 1:
            members["spacing"] = In(range(max_spacing + 1), init=1)
        super().__init__(members)

    @property
    def layers(self) -> tuple[SweepLayer, ...]:
        return self._layers

    def elaborate(self, platform):
        m = Module()
        # the counters and end flags of the next word, from flops: while idle they hold word 0 of the
        # layer (and go back to it with a sweep's last word), so nothing multiplexes on `start`: the
        # addresses and `last` (and the sequencer's phase logic behind it) start at flops. (Counters
        # cleared through a start multiplexer put it in front of the encoders' memory address and the
        # sequencer's phase: stcb paths across the 25F die.)
        og_r, y_r, x_r, w_r = Signal(self._gbits), Signal(self._ybits), Signal(self._xbits), Signal(self._wbits)
        if self._ahead:
            og, y, x, w = og_r, y_r, x_r, w_r
        else:       # a start may also come mid-sweep (the tsc generator's pass can be shorter than its walk)
            og, y, x, w = (Mux(self.start, 0, og_r), Mux(self.start, 0, y_r), Mux(self.start, 0, x_r),
                           Mux(self.start, 0, w_r))
        run = Signal()
        # the layer's sizes (registered with `layer_ahead`: the layer is set a cycle ahead of `start`),
        # and its word 0's end flags (one column, one row, one group), loaded into the flags while idle
        gmax, ymax, xmax = Signal(self._gbits), Signal(self._ybits), Signal(self._xbits)
        g1, y1, x1 = Signal(), Signal(), Signal()
        packed = Signal(self._pbits)
        sizes = m.d.sync if self._ahead else m.d.comb
        with m.Switch(self.layer):
            for i, l in enumerate(self._layers):
                with m.Case(i):
                    sizes += [gmax.eq(l.groups - 1), ymax.eq(l.height - 1), xmax.eq(l.width - 1)]
                    m.d.comb += [g1.eq(l.groups == 1), y1.eq(l.height == 1), x1.eq(l.width == 1),
                                 packed.eq((og << (l.bx + l.by)) | (y << l.bx) | x)]
        # the next word's end flags (named as the flags they are with `layer_ahead`)
        xe_r, ye_r, ge_r = Signal(name="x_end"), Signal(name="y_end"), Signal(name="g_end")
        if self._ahead:
            x_end, y_end, g_end = xe_r, ye_r, ge_r
        else:                                                   # word 0's from the layer of this cycle
            x_end, y_end, g_end = Mux(self.start, x1, xe_r), Mux(self.start, y1, ye_r), Mux(self.start, g1, ge_r)
        last = g_end & y_end & x_end
        if self._max_spacing > 1:
            # the cycles still to wait before the next word: loaded with spacing - 1 as a word goes out
            gap = Signal(range(self._max_spacing), name="gap")
            valid = self.start | (run & (gap == 0))
            with m.If(valid):
                m.d.sync += gap.eq(self.spacing - 1)
            with m.Elif(gap != 0):
                m.d.sync += gap.eq(gap - 1)
        else:
            valid = self.start | run
        m.d.comb += [self.valid.eq(valid), self.word.eq(w), self.packed.eq(packed), self.og.eq(og),
                     self.og_last.eq(g_end), self.plane_end.eq(x_end & y_end),
                     self.last.eq(valid & last)]
        word0 = [og_r.eq(0), y_r.eq(0), x_r.eq(0), w_r.eq(0), xe_r.eq(x1), ye_r.eq(y1), ge_r.eq(g1)]
        with m.If(valid & last):
            m.d.sync += [run.eq(0)] + word0
        with m.Elif(valid):
            m.d.sync += [run.eq(1), w_r.eq(w + 1), x_r.eq(Mux(x_end, 0, x + 1)),
                         y_r.eq(Mux(x_end, Mux(y_end, 0, y + 1), y)), og_r.eq(Mux(x_end & y_end, og + 1, og)),
                         xe_r.eq(Mux(x_end, x1, x + 1 == xmax)),
                         ye_r.eq(Mux(x_end, Mux(y_end, y1, y + 1 == ymax), y_end)),
                         ge_r.eq(Mux(x_end & y_end, og + 1 == gmax, g_end))]
        with m.Elif(~run):
            m.d.sync += word0
        return m
