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

from .bits import bits_for

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
        Input events. ``ready`` is low while an event is being expanded, except in the cycle its last
        op is accepted, so events follow each other with no bubble.
    layer : In(layer_bits)
        The phase's layer, held through the phase.
    ops : Out(stream.Signature(conv_op_layout))
        One op per cycle while ``ready`` is high: for each valid offset (ky outer, kx inner) and channel
        group og = 0..Gc-1 (innermost); an event with no valid offset gives one null op. An event
        accepted in cycle c gives its first op in cycle c + ``LATENCY`` (when the output is free).
    busy : Out(1)
        An event is being expanded (a phase has ended when the reader is done and ``busy`` is low).

    ``LATENCY`` is ``ACCUMULATE_STAGE - MEM_READ_LATENCY``: the op's weight word then arrives
    ``ACCUMULATE_STAGE`` cycles after its event leaves the reader, as for dense layers. The ROMs are
    small and read asynchronously (LUTs), so their lookup and the first addresses fit that one cycle.
    """

    LATENCY = perf.ACCUMULATE_STAGE - perf.MEM_READ_LATENCY

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
        self.rom_layout = data.StructLayout({"k0": unsigned(self._kbits), "o0": unsigned(self._obits),
                                             "n": unsigned(self._kbits)})
        # the y ROMs of every layer one after the other (and the x ROMs): layer l's row y at ybase_l + y
        self.y_rom, self.x_rom, self._ybase, self._xbase = [], [], [], []
        for l in layers:
            (_, H, W), (_, Ho, Wo), K, S, p = l.in_shape, l.out_shape, l.kernel, l.stride, l.padding
            self._ybase.append(len(self.y_rom))
            self._xbase.append(len(self.x_rom))
            self.y_rom += axis_rom(H, Ho, K, S, p)
            self.x_rom += axis_rom(W, Wo, K, S, p)
        super().__init__({"events": In(stream.Signature(self.event_layout)), "layer": In(self._lbits),
                          "ops": Out(stream.Signature(self.op_layout)), "busy": Out(1)})

    @property
    def layers(self) -> tuple[ConvLayerGeom, ...]:
        return self._layers

    def elaborate(self, platform):
        m = Module()
        ev = self.events.payload

        def rom(rows):
            return Memory(shape=self.rom_layout, depth=max(2, len(rows)),
                          init=[{"k0": k0, "o0": o0, "n": n} for k0, o0, n in rows])

        m.submodules.yrom = yrom = rom(self.y_rom)
        m.submodules.xrom = xrom = rom(self.x_rom)
        yr, xr = yrom.read_port(domain="comb"), xrom.read_port(domain="comb")
        m.d.comb += [yr.addr.eq(Array(Const(b) for b in self._ybase)[self.layer] + ev.y),
                     xr.addr.eq(Array(Const(b) for b in self._xbase)[self.layer] + ev.x)]

        W = self._wbits + 2          # room for the discarded candidates past the last offset
        A = self._abits + 2
        # ---- the first op of the offered event (used only when it is accepted)
        w0, a0 = Signal(W), Signal(A)
        # per-layer steps: next og, next kx (same og = 0 row), next ky
        wg, ag, wx, wy, ay = Signal(W), Signal(A), Signal(W), Signal(W), Signal(A)
        gmax = Signal(self._gbits)
        with m.Switch(self.layer):
            for i, l in enumerate(self._layers):
                (C, _, _), (_, Ho, Wo), K, S = l.in_shape, l.out_shape, l.kernel, l.stride
                with m.Case(i):
                    m.d.comb += [w0.eq(l.wbase + (ev.c * K + yr.data.k0) * K + xr.data.k0),
                                 a0.eq(yr.data.o0 * Wo + xr.data.o0),
                                 wg.eq(C * K * K), ag.eq(Ho * Wo), wx.eq(S), wy.eq(S * K), ay.eq(Wo),
                                 gmax.eq(l.channel_groups(self._P) - 1)]
        null_in = (yr.data.n == 0) | (xr.data.n == 0)

        # ---- the event being expanded
        busy = Signal()
        og = Signal(self._gbits)
        kx_left, ky_left, nvx = Signal(self._kbits), Signal(self._kbits), Signal(self._kbits)
        wcur, acur = Signal(W), Signal(A)        # this op
        wcol, acol = Signal(W), Signal(A)        # og = 0 of this offset
        wrow, arow = Signal(W), Signal(A)        # og = 0 of this ky's first kx
        null, first, payload = Signal(), Signal(), Signal.like(ev.payload)
        last = null | ((og == gmax) & (kx_left == 0) & (ky_left == 0))
        m.d.comb += [self.ops.valid.eq(busy), self.busy.eq(busy),
                     self.ops.payload.waddr.eq(Mux(null, self._zero, wcur)),
                     self.ops.payload.aaddr.eq(Mux(null, 0, acur)),
                     self.ops.payload.null.eq(null), self.ops.payload.first.eq(first),
                     self.ops.payload.last.eq(last), self.ops.payload.payload.eq(payload)]
        done = self.ops.valid & self.ops.ready
        # the next event is taken in the cycle the current one's last op leaves: no bubble
        m.d.comb += self.events.ready.eq(~busy | (done & last))

        with m.If(self.events.valid & self.events.ready):
            m.d.sync += [busy.eq(1), og.eq(0), kx_left.eq(xr.data.n - 1), ky_left.eq(yr.data.n - 1),
                         nvx.eq(xr.data.n), wcur.eq(w0), acur.eq(a0), wcol.eq(w0), acol.eq(a0),
                         wrow.eq(w0), arow.eq(a0), null.eq(null_in), first.eq(1), payload.eq(ev.payload)]
        with m.Elif(done):
            m.d.sync += first.eq(0)
            with m.If(last):
                m.d.sync += busy.eq(0)
            with m.Elif(og != gmax):
                m.d.sync += [og.eq(og + 1), wcur.eq(wcur + wg), acur.eq(acur + ag)]
            with m.Elif(kx_left != 0):            # next kx: the offset grows by S, ox drops by one
                m.d.sync += [og.eq(0), kx_left.eq(kx_left - 1), wcol.eq(wcol + wx), acol.eq(acol - 1),
                             wcur.eq(wcol + wx), acur.eq(acol - 1)]
            with m.Else():                        # next ky: back to the first kx, oy drops by one
                m.d.sync += [og.eq(0), kx_left.eq(nvx - 1), ky_left.eq(ky_left - 1),
                             wrow.eq(wrow + wy), arow.eq(arow - ay), wcol.eq(wrow + wy), acol.eq(arow - ay),
                             wcur.eq(wrow + wy), acur.eq(arow - ay)]
        return m
