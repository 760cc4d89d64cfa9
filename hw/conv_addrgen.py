"""Conv address generation: an input event (c, y, x) expanded into one op per valid kernel offset and
channel group (docs/spec.md section 3, "conv2d and maxpool2d dataflow").

An event reaches output (oy, ox) = ((y + p - ky)/S, (x + p - kx)/S) through the offsets (ky, kx)
where both divisions are exact and the position is inside the output map. Along one axis the valid
offsets are an arithmetic progression: ky0, ky0 + S, ... (nv_y of them), and each step of S lowers oy
by one. So per layer two small ROMs, indexed by y and by x, hold the first valid offset, its output
coordinate and the count; the expansion then only adds per-layer constants, with no divider and no
variable multiplier. The loop order is ky outer, kx inner, channel group og innermost: within one
event every op touches a different accumulator word, so a read-modify-write hazard can only come from
the next event (which the accumulator memory forwards).
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth import *
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from golden import perf

from .bits import bits_for, times_layer_const

__all__ = ["ConvLayerGeom", "axis_rom", "conv_event_layout", "conv_op_layout", "ConvAddressGen"]


@dataclass(frozen=True)
class ConvLayerGeom:
    """One conv2d layer as the address generator sees it.

    ``in_shape`` (C, H, W), ``out_shape`` (Co, Ho, Wo), kernel K, stride S, padding p, and ``wbase``:
    the weight word of (og, c, ky, kx) is ``wbase + ((og*C + c)*K + ky)*K + kx``; the accumulator word
    of (og, oy, ox) is ``(og*Ho + oy)*Wo + ox`` (one accumulator memory shared by every layer).
    """

    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    kernel: int
    stride: int
    padding: int
    wbase: int = 0

    def __post_init__(self):
        (_, H, W), (_, Ho, Wo), K, S, p = self.in_shape, self.out_shape, self.kernel, self.stride, self.padding
        if K < 1 or S < 1 or not 0 <= p < K or self.wbase < 0:
            raise ValueError(f"kernel {K}, stride {S}, padding {p}, wbase {self.wbase}: need K >= 1, S >= 1, "
                             f"0 <= p < K, wbase >= 0")
        # the ROMs are built from the shapes, so a wrong out_shape would silently drop or invent ops
        want = ((H + 2 * p - K) // S + 1, (W + 2 * p - K) // S + 1)
        if (Ho, Wo) != want or min(want) < 1:
            raise ValueError(f"out_shape {list(self.out_shape)} does not follow from in_shape {list(self.in_shape)}, "
                             f"K={K}, S={S}, p={p} (Ho, Wo = {list(want)})")

    @classmethod
    def of(cls, layer, wbase: int = 0) -> "ConvLayerGeom":
        """From a ``golden.Conv2d``."""
        return cls(tuple(layer.in_shape), tuple(layer.out_shape), layer.kernel, layer.stride, layer.padding, wbase)

    def channel_groups(self, lanes: int) -> int:
        return perf.groups(self.out_shape[0], lanes)

    def weight_words(self, lanes: int) -> int:
        C, K = self.in_shape[0], self.kernel
        return self.channel_groups(lanes) * C * K * K

    def acc_words(self, lanes: int) -> int:
        _, Ho, Wo = self.out_shape
        return self.channel_groups(lanes) * Ho * Wo


def axis_rom(n: int, n_out: int, K: int, S: int, p: int) -> list[tuple[int, int, int]]:
    """Per input coordinate along one axis: (first valid offset, its output coordinate, count of valid
    offsets); (0, 0, 0) where no offset is valid."""
    rows = []
    for y in range(n):
        ks = [k for k in range(K) if (y + p - k) % S == 0 and 0 <= (y + p - k) // S < n_out]
        rows.append((ks[0], (y + p - ks[0]) // S, len(ks)) if ks else (0, 0, 0))
    return rows


def conv_event_layout(*, c_bits: int, y_bits: int, x_bits: int, payload_bits: int = 0) -> data.StructLayout:
    """An input event: channel c at (y, x), and a payload passed to its ops (direct input's value,
    tsc's ON/OFF sign, an stcb train)."""
    return data.StructLayout({"c": unsigned(c_bits), "y": unsigned(y_bits), "x": unsigned(x_bits),
                              "payload": unsigned(max(1, payload_bits))})


def conv_op_layout(*, waddr_bits: int, aaddr_bits: int, payload_bits: int = 0) -> data.StructLayout:
    """A scatter op: the weight word and the accumulator word; ``first``/``last``: the event's first and
    last op; ``null``: the op of an event that reaches no output (reads the zero word, writes nothing)."""
    return data.StructLayout({"waddr": unsigned(waddr_bits), "aaddr": unsigned(aaddr_bits),
                              "payload": unsigned(max(1, payload_bits)),
                              "first": unsigned(1), "last": unsigned(1), "null": unsigned(1)})


class ConvAddressGen(wiring.Component):
    """The scatter's address generator for conv2d layers.

    Parameters
    ----------
    layers : sequence of ConvLayerGeom
        Every conv2d layer the core runs; ``layer`` selects one.
    lanes : int
        P, output channels per weight and accumulator word.
    zero_word : int
        The weight memory's all-zero word, read by null ops.
    payload_bits : int
        Width of the payload each event carries to its ops (0: none).

    Members
    -------
    events : In(stream.Signature(conv_event_layout))
        Input events. One event is held ahead of the one being expanded: ``ready`` is high while that
        place is free or is freed in this cycle (the expanding event's last op leaves), so events
        follow each other's ops with no bubble.
    layer : In(layer_bits)
        The phase's layer, held through the phase and set at least a cycle before its first event (the
        part registers the layer's constants; the core sets it ``LAYER_SETUP`` cycles ahead).
    ops : Out(stream.Signature(conv_op_layout))
        One op per cycle while ``ready`` is high: for each valid offset (ky outer, kx inner) and channel
        group og = 0..Gc-1 (innermost); an event with no valid offset gives one null op. An event
        accepted in cycle c gives its first op in cycle c + ``LATENCY`` at the earliest (later while
        the event before it still expands).
    busy : Out(1)
        An event is held or being expanded (a phase has ended when the reader is done and ``busy`` is
        low).
    held : Out(1)
        An event is held, waiting for the expander.

    ``LATENCY`` is ``ACCUMULATE_STAGE - MEM_READ_LATENCY + 1``: a register stage after the event is
    taken holds its ROM rows (which carry the products ``k0 * K`` and ``o0 * Wo``) and its first
    weight word, so no multiplier or ROM sits in series with the expander's adders (the two in series
    limited a conv core to 50 MHz on the LFE5U-25F). The core's sequencer shortens the drain after a
    conv2d scatter by that extra cycle, so a phase still takes golden.perf's cycles.
    """

    LATENCY = perf.ACCUMULATE_STAGE - perf.MEM_READ_LATENCY + 1

    def __init__(self, *, layers, lanes: int, zero_word: int, payload_bits: int = 0):
        layers = tuple(layers)
        if not layers or not all(isinstance(l, ConvLayerGeom) for l in layers):
            raise TypeError(f"layers must be a non-empty sequence of ConvLayerGeom, not {layers!r}")
        if isinstance(lanes, bool) or not isinstance(lanes, int) or lanes < 1:
            raise TypeError(f"lanes must be a positive integer, not {lanes!r}")
        if isinstance(zero_word, bool) or not isinstance(zero_word, int) or zero_word < 0:
            raise TypeError(f"zero_word must be a non-negative integer, not {zero_word!r}")
        self._layers, self._P, self._zero, self._pw = layers, lanes, zero_word, payload_bits
        top = max(zero_word, max(l.wbase + l.weight_words(lanes) for l in layers))
        self._wbits = bits_for(top)
        self._abits = bits_for(max(l.acc_words(lanes) for l in layers))
        self._cbits = bits_for(max(l.in_shape[0] - 1 for l in layers))
        self._ybits = bits_for(max(l.in_shape[1] - 1 for l in layers))
        self._xbits = bits_for(max(l.in_shape[2] - 1 for l in layers))
        self._kbits = bits_for(max(l.kernel for l in layers))
        self._obits = bits_for(max(max(l.out_shape[1:]) for l in layers))
        self._gbits = bits_for(max(l.channel_groups(lanes) for l in layers))
        self._lbits = max(1, perf.ceil_log2(len(layers)))
        self.event_layout = conv_event_layout(c_bits=self._cbits, y_bits=self._ybits, x_bits=self._xbits,
                                              payload_bits=payload_bits)
        self.op_layout = conv_op_layout(waddr_bits=self._wbits, aaddr_bits=self._abits, payload_bits=payload_bits)
        prod = bits_for(max(max((l.kernel - 1) * l.kernel, (max(l.out_shape[1:]) - 1) * l.out_shape[2])
                            for l in layers))
        self.rom_layout = data.StructLayout({"k0": unsigned(self._kbits), "o0": unsigned(self._obits),
                                             "n": unsigned(self._kbits), "k0s": unsigned(max(self._kbits, prod)),
                                             "o0s": unsigned(max(self._obits, prod))})
        # the y ROMs of every layer one after the other (and the x ROMs): layer l's row y at ybase_l + y
        self.y_rom, self.x_rom, self._ybase, self._xbase = [], [], [], []
        for l in layers:
            (_, H, W), (_, Ho, Wo), K, S, p = l.in_shape, l.out_shape, l.kernel, l.stride, l.padding
            self._ybase.append(len(self.y_rom))
            self._xbase.append(len(self.x_rom))
            self.y_rom += axis_rom(H, Ho, K, S, p)
            self.x_rom += axis_rom(W, Wo, K, S, p)
        super().__init__({"events": In(stream.Signature(self.event_layout)), "layer": In(self._lbits),
                          "ops": Out(stream.Signature(self.op_layout)), "busy": Out(1), "held": Out(1)})

    @property
    def layers(self) -> tuple[ConvLayerGeom, ...]:
        return self._layers

    def elaborate(self, platform):
        m = Module()
        ev = self.events.payload

        # the ROM rows also hold the products the first op needs (k0 * K for y, o0 * Wo for y), so
        # the expander adds and never multiplies by a per-layer constant
        def rom(rows, axis):
            init = []
            for i, l in enumerate(self._layers):
                base = (self._ybase if axis == "y" else self._xbase)[i]
                n = l.in_shape[1] if axis == "y" else l.in_shape[2]
                for k0, o0, cnt in rows[base:base + n]:
                    init.append({"k0": k0, "o0": o0, "n": cnt,
                                 "k0s": k0 * l.kernel if axis == "y" else k0,
                                 "o0s": o0 * l.out_shape[2] if axis == "y" else o0})
            return Memory(shape=self.rom_layout, depth=max(2, len(init)), init=init)

        m.submodules.yrom = yrom = rom(self.y_rom, "y")
        m.submodules.xrom = xrom = rom(self.x_rom, "x")
        yr, xr = yrom.read_port(domain="comb"), xrom.read_port(domain="comb")

        W = self._wbits + 2          # room for the discarded candidates past the last offset
        A = self._abits + 2
        # the layer's constants, registered every cycle from the held ``layer`` (a phase's first event
        # comes cycles after its layer is set), so no path starts at a multiplexer over the layers:
        # the ROM bases, the weight base, K * K, and the steps to the next og, kx (same og = 0 row), ky
        ybase, xbase = Signal(len(yr.addr)), Signal(len(xr.addr))
        wg, ag, wx, wy, ay = Signal(W), Signal(A), Signal(W), Signal(W), Signal(A)
        wbase = Signal(W)
        gmax = Signal(self._gbits)
        with m.Switch(self.layer):
            for i, l in enumerate(self._layers):
                (C, _, _), (_, Ho, Wo), K, S = l.in_shape, l.out_shape, l.kernel, l.stride
                with m.Case(i):
                    m.d.sync += [ybase.eq(self._ybase[i]), xbase.eq(self._xbase[i]), wbase.eq(l.wbase),
                                 wg.eq(C * K * K), ag.eq(Ho * Wo), wx.eq(S), wy.eq(S * K),
                                 ay.eq(Wo), gmax.eq(l.channel_groups(self._P) - 1)]
        m.d.comb += [yr.addr.eq(ybase + ev.y), xr.addr.eq(xbase + ev.x)]
        # c * K * K as shifted adds of c, one per kernel size, the select registered from the layer
        ck = times_layer_const(m, ev.c, [l.kernel ** 2 for l in self._layers], self.layer)

        # ---- stage 1: the event taken, with its ROM rows and c * K * K (a register stage, so that the
        # ROM lookups and the product (a DSP's delay) do not sit in series with the expander's adders)
        hold = Signal()
        h_wp, h_a0 = Signal(W), Signal(A)           # h_wp: the first weight word but for c * K * K
        h_ck = Signal(W)                             # c * K * K, registered: its adder ends a stage
        h_nx, h_ny = Signal(self._kbits), Signal(self._kbits)
        h_null, h_payload = Signal(), Signal.like(ev.payload)
        take = Signal()                  # the expander takes the held event this cycle
        m.d.comb += self.events.ready.eq(~hold | take)
        with m.If(self.events.valid & self.events.ready):
            m.d.sync += [hold.eq(1), h_wp.eq(wbase + yr.data.k0s + xr.data.k0s), h_ck.eq(ck),
                         h_a0.eq(yr.data.o0s + xr.data.o0s), h_nx.eq(xr.data.n), h_ny.eq(yr.data.n),
                         h_null.eq((yr.data.n == 0) | (xr.data.n == 0)), h_payload.eq(ev.payload)]
        with m.Elif(take):
            m.d.sync += hold.eq(0)

        # ---- stage 2: the event being expanded
        busy = Signal()
        og = Signal(self._gbits)
        kx_left, ky_left, nvx = Signal(self._kbits), Signal(self._kbits), Signal(self._kbits)
        wcur, acur = Signal(W), Signal(A)        # this op
        wcol, acol = Signal(W), Signal(A)        # og = 0 of this offset
        wrow, arow = Signal(W), Signal(A)        # og = 0 of this ky's first kx
        null, first, payload = Signal(), Signal(), Signal.like(ev.payload)
        # this op is the event's last: a flop, set with the counters below (the three comparisons sat in
        # front of `take`, and so of the event reader's ready and its whole refill logic: the stcb core's
        # critical path)
        last = Signal()
        m.d.comb += [self.ops.valid.eq(busy), self.busy.eq(busy | hold), self.held.eq(hold),
                     self.ops.payload.waddr.eq(Mux(null, self._zero, wcur)),
                     self.ops.payload.aaddr.eq(Mux(null, 0, acur)),
                     self.ops.payload.null.eq(null), self.ops.payload.first.eq(first),
                     self.ops.payload.last.eq(last), self.ops.payload.payload.eq(payload)]
        done = self.ops.valid & self.ops.ready
        # the held event is taken in the cycle the current one's last op leaves: no bubble
        m.d.comb += take.eq(hold & (~busy | (done & last)))

        h_w0 = Signal(W)
        m.d.comb += h_w0.eq(h_wp + h_ck)             # from flops: one adder
        # `last` of the next op: null, or og == gmax with no kx and no ky left, from the values set below
        one_og = gmax == 0
        with m.If(take):
            m.d.sync += [busy.eq(1), og.eq(0), kx_left.eq(h_nx - 1), ky_left.eq(h_ny - 1),
                         nvx.eq(h_nx), wcur.eq(h_w0), acur.eq(h_a0), wcol.eq(h_w0), acol.eq(h_a0),
                         wrow.eq(h_w0), arow.eq(h_a0), null.eq(h_null), first.eq(1), payload.eq(h_payload),
                         last.eq(h_null | (one_og & (h_nx == 1) & (h_ny == 1)))]
        with m.Elif(done):
            m.d.sync += first.eq(0)
            with m.If(last):
                m.d.sync += busy.eq(0)
            with m.Elif(og != gmax):
                m.d.sync += [og.eq(og + 1), wcur.eq(wcur + wg), acur.eq(acur + ag),
                             last.eq((og + 1 == gmax) & (kx_left == 0) & (ky_left == 0))]
            with m.Elif(kx_left != 0):            # next kx: the offset grows by S, ox drops by one
                m.d.sync += [og.eq(0), kx_left.eq(kx_left - 1), wcol.eq(wcol + wx), acol.eq(acol - 1),
                             wcur.eq(wcol + wx), acur.eq(acol - 1),
                             last.eq(one_og & (kx_left == 1) & (ky_left == 0))]
            with m.Else():                        # next ky: back to the first kx, oy drops by one
                m.d.sync += [og.eq(0), kx_left.eq(nvx - 1), ky_left.eq(ky_left - 1),
                             wrow.eq(wrow + wy), arow.eq(arow - ay), wcol.eq(wrow + wy), acol.eq(arow - ay),
                             wcur.eq(wrow + wy), acur.eq(arow - ay),
                             last.eq(one_og & (nvx == 1) & (ky_left == 1))]
        return m
