"""Kernel offsets in parallel (docs/spec.md section 3, "Banks"): the accumulator memory interlaced over
``banks`` memories by output position, so that one bundle of an event's valid offsets (all of one
channel group) is one op cycle.

The parts: :class:`ConvBundleGen` (an event's bundles, one per cycle: per bank slot its weight word and
accumulator bank address), :class:`BankedAccumulator` (the banks and the sweep's multiplexer over them)
and :class:`BankSweepMap` (the sweep's bank addresses). ``hw.core.SpikeCore(..., banks=N)`` composes
them with a weight fetch per slot; golden.perf predicts the cycles.
"""

from __future__ import annotations

from amaranth import *
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden import perf
from golden.geometry import ConfigError

from .accmem import AccKind, AccumulatorMemory, acc_op_layout
from .bits import bits_for, times_layer_const
from .conv_addrgen import ConvLayerGeom, conv_event_layout

__all__ = ["check_core_banks", "banked_swept_layout", "BankedAccumulator", "bundle_layout", "ConvBundleGen",
           "bundle_axis_rom", "BankSweepMap"]


def check_core_banks(banks, model=None) -> int:
    """``banks`` for :class:`hw.core.SpikeCore` as an int, or ConfigError: an integer from 1 to
    ``perf.MAX_BANKS``."""
    try:
        return perf.check_banks(banks)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def banked_swept_layout(*, bank_bits: int, addr_bits: int, word: data.Layout) -> data.StructLayout:
    return data.StructLayout({"bank": unsigned(bank_bits), "addr": unsigned(addr_bits), "word": word})


class BankedAccumulator(wiring.Component):
    """``banks`` accumulator memories (:class:`hw.accmem.AccumulatorMemory`), each with its own op port.

    A bundle gives each bank at most one op, so every bank is the one-bank read-modify-write pipeline
    with its own forwarding of its last three ops' words: any sequence of bundles is exact, whatever words
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
    merged : Out(1)
        Some bank's pool op met a window that already held a spike (:class:`AccumulatorMemory`'s).
    acc_read, acc_write : Out(range(banks + 1))
        Counter increments: the words read (ops but ``CLEAR``) in this cycle over all banks; the words
        written in this cycle.
    """

    LATENCY = AccumulatorMemory.LATENCY

    def __init__(self, *, lanes: int, width: int, depth: int, banks: int, kinds=tuple(AccKind)):
        banks = perf.check_banks(banks)
        self._banks, self._kinds = banks, tuple(kinds)
        for name, v in (("lanes", lanes), ("width", width), ("depth", depth)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise TypeError(f"{name} must be a positive integer, not {v!r}")
        self._lanes, self._width, self._depth = lanes, width, depth
        # the layouts of AccumulatorMemory's ports (each bank is one)
        self.word_layout = data.ArrayLayout(signed(width), lanes)
        self._abits = abits = max(1, perf.ceil_log2(max(2, depth)))
        self._bbits = max(1, perf.ceil_log2(banks))
        super().__init__({
            "ops": In(stream.Signature(acc_op_layout(addr_bits=abits, word=self.word_layout),
                                       always_ready=True)).array(banks),
            "swept": Out(stream.Signature(banked_swept_layout(bank_bits=self._bbits, addr_bits=abits,
                                                              word=self.word_layout), always_ready=True)),
            "forwarded": Out(1), "merged": Out(1), "acc_read": Out(range(banks + 1)), "acc_write": Out(range(banks + 1))})

    @property
    def banks(self) -> int:
        return self._banks

    @property
    def addr_bits(self) -> int:
        return self._abits

    def elaborate(self, platform):
        m = Module()
        mems = []
        for b in range(self._banks):
            mem = AccumulatorMemory(lanes=self._lanes, width=self._width, depth=self._depth, kinds=self._kinds)
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
                     self.merged.eq(Cat(*[mem.merged for mem in mems]).any()),
                     self.acc_read.eq(sum(mem.acc_read for mem in mems)),
                     self.acc_write.eq(sum(mem.acc_write for mem in mems))]
        return m


# ---------------------------------------------------------------------------------------------------
# the bundle generator


def bundle_axis_rom(n: int, n_out: int, K: int, S: int, p: int, parts: int, slots: int, slot_part) -> list[dict]:
    """Per input coordinate along one axis (y with ``parts`` = r, or x with ``parts`` = c): the first valid
    offset ``k0``, the count ``n`` of valid offsets, and per bank slot b (its residue ``slot_part(b)``, or
    None for a slot the layer does not use): ``d``, the index of the valid offset, within every chunk of
    ``parts`` of them, whose output coordinate has that residue (``(o0 - residue) mod parts``; ``K`` for
    an unused slot: never valid), and ``q``, the first chunk's bank coordinate ``(o0 - d) div parts``
    (0 where that is negative: such a slot is never valid, its row is past the last valid one)."""
    rows = []
    for y in range(n):
        ks = [k for k in range(K) if (y + p - k) % S == 0 and 0 <= (y + p - k) // S < n_out]
        k0 = ks[0] if ks else 0
        o0 = (y + p - k0) // S if ks else 0
        d, q = [], []
        for b in range(slots):
            res = slot_part(b)
            if res is None or not ks:
                d.append(K), q.append(0)
                continue
            db = (o0 - res) % parts
            d.append(db), q.append(max(0, (o0 - db) // parts))
        rows.append({"k0": k0, "n": len(ks), "d": d, "q": q})
    return rows


def bundle_layout(*, banks: int, waddr_bits: int, aaddr_bits: int, payload_bits: int = 0) -> data.StructLayout:
    """A bundle: per bank slot b a valid bit, the weight word and the address in bank b; ``first``/``last``:
    the event's first and last bundle; ``null``: the bundle of an event with no valid offset (no slot
    valid); ``og_last``: the bundle is of the last channel group (whose real lanes may be fewer than P);
    ``payload`` travels along."""
    slot = data.StructLayout({"valid": unsigned(1), "waddr": unsigned(waddr_bits), "aaddr": unsigned(aaddr_bits)})
    return data.StructLayout({"slots": data.ArrayLayout(slot, banks), "payload": unsigned(max(1, payload_bits)),
                              "first": unsigned(1), "last": unsigned(1), "null": unsigned(1), "og_last": unsigned(1)})


class ConvBundleGen(wiring.Component):
    """The banked scatter's address generator: an input event (c, y, x) of a conv2d layer expanded into
    its bundles (docs/spec.md section 3, "Banks"), one per cycle.

    Layer l's bank shape is ``(r, c) = golden.perf.bank_shape(K, S, banks)``; bank slot ``b = rb*c + cb``
    is accumulator bank b. Along each axis the valid offsets of the event are cut into chunks of r rows
    (c columns); in every chunk the row with output residue ``rb`` sits at the same index
    ``d_rb = (o0 - rb) mod r`` (o0: the first valid offset's output row), so per-layer ROMs indexed by y
    and by x hold, per slot, that index and the first chunk's bank row ``q_rb = (o0 - d_rb) div r``
    (and the first valid offset and the count); the expander then only adds. Per bundle and slot:
    valid iff ``i*r + d_rb < nv_y`` and ``j*c + d_cb < nv_x`` (chunk i, j); weight word
    ``wbase + ((og*C + ch)*K + ky)*K + kx`` with ``ky = k0y + (i*r + d_rb)*S`` (kx alike); bank address
    ``(og*ceil(Ho/r) + q_rb - i)*ceil(Wo/c) + q_cb - j``. An invalid slot's weight word is the zero word.

    Parameters
    ----------
    layers : sequence of ConvLayerGeom
    lanes, banks : int
        P and the number of accumulator banks.
    zero_word : int
        The weight memory's all-zero word.
    payload_bits : int

    Members
    -------
    events : In(stream.Signature(conv_event_layout))
        As :class:`hw.conv_addrgen.ConvAddressGen`: one event held ahead of the one expanding.
    layer : In(layer_bits)
        The phase's layer, held, set a cycle or more before its first event.
    ops : Out(stream.Signature(bundle_layout))
        One bundle per cycle while ``ready``: row chunks outer, column chunks inner, channel group og
        innermost; an event with no valid offset gives one null bundle.
    busy, held : Out(1)

    ``LATENCY`` is ``ConvAddressGen.LATENCY`` (2): an event taken in cycle c gives its first bundle in
    c + 2 at the earliest, so a phase's timing is that of golden.perf with ``Gc*XB + Z`` op cycles.
    """

    LATENCY = perf.ACCUMULATE_STAGE - perf.MEM_READ_LATENCY + 1

    def __init__(self, *, layers, lanes: int, banks: int, zero_word: int, payload_bits: int = 0):
        layers = tuple(layers)
        if not layers or not all(isinstance(l, ConvLayerGeom) for l in layers):
            raise TypeError(f"layers must be a non-empty sequence of ConvLayerGeom, not {layers!r}")
        if isinstance(lanes, bool) or not isinstance(lanes, int) or lanes < 1:
            raise TypeError(f"lanes must be a positive integer, not {lanes!r}")
        banks = perf.check_banks(banks)
        if isinstance(zero_word, bool) or not isinstance(zero_word, int) or zero_word < 0:
            raise TypeError(f"zero_word must be a non-negative integer, not {zero_word!r}")
        self._layers, self._P, self._B, self._zero, self._pw = layers, lanes, banks, zero_word, payload_bits
        self._shape = [perf.bank_shape(l.kernel, l.stride, banks) for l in layers]
        self._bank_words = [l.channel_groups(lanes) * -(-l.out_shape[1] // r) * -(-l.out_shape[2] // c)
                            for l, (r, c) in zip(layers, self._shape)]
        top = max(zero_word, max(l.wbase + l.weight_words(lanes) for l in layers))
        self._wbits = bits_for(top)
        self._abits = bits_for(max(2, max(self._bank_words)) - 1)
        self._kbits = bits_for(max(l.kernel for l in layers))
        self._gbits = bits_for(max(l.channel_groups(lanes) for l in layers))
        self._lbits = max(1, perf.ceil_log2(len(layers)))
        cb = bits_for(max(l.in_shape[0] - 1 for l in layers))
        yb = bits_for(max(l.in_shape[1] - 1 for l in layers))
        xb = bits_for(max(l.in_shape[2] - 1 for l in layers))
        self.event_layout = conv_event_layout(c_bits=cb, y_bits=yb, x_bits=xb, payload_bits=payload_bits)
        self.op_layout = bundle_layout(banks=banks, waddr_bits=self._wbits, aaddr_bits=self._abits,
                                       payload_bits=payload_bits)
        # the ROMs: layer l's row y at ybase_l + y (x alike); per slot the index d, and the products the
        # expander would otherwise multiply: d*S*K (y) or d*S (x) for the weight word, q*ceil(Wo/c) (y)
        # or q (x) for the bank address
        W, A = self._wbits + 2, self._abits + 2
        self._W, self._A = W, A
        self.rom_layout = data.StructLayout({
            "k0s": unsigned(W), "n": unsigned(self._kbits),
            "d": data.ArrayLayout(unsigned(self._kbits), banks),
            "dw": data.ArrayLayout(unsigned(W), banks), "qa": data.ArrayLayout(unsigned(A), banks)})
        self._yrom, self._xrom, self._ybase, self._xbase = [], [], [], []
        for l, (r, c) in zip(layers, self._shape):
            (_, H, Wd), (_, Ho, Wo), K, S, p = l.in_shape, l.out_shape, l.kernel, l.stride, l.padding
            Wc = -(-Wo // c)
            self._ybase.append(len(self._yrom))
            self._xbase.append(len(self._xrom))
            for row in bundle_axis_rom(H, Ho, K, S, p, r, banks, lambda b, r=r, c=c: b // c if b < r * c else None):
                self._yrom.append({"k0s": row["k0"] * K, "n": row["n"], "d": row["d"],
                                   "dw": [d * S * K if d < K else 0 for d in row["d"]],
                                   "qa": [q * Wc for q in row["q"]]})
            for row in bundle_axis_rom(Wd, Wo, K, S, p, c, banks, lambda b, r=r, c=c: b % c if b < r * c else None):
                self._xrom.append({"k0s": row["k0"], "n": row["n"], "d": row["d"],
                                   "dw": [d * S if d < K else 0 for d in row["d"]], "qa": row["q"]})
        super().__init__({"events": In(stream.Signature(self.event_layout)), "layer": In(self._lbits),
                          "ops": Out(stream.Signature(self.op_layout)), "busy": Out(1), "held": Out(1)})

    @property
    def layers(self) -> tuple[ConvLayerGeom, ...]:
        return self._layers

    @property
    def banks(self) -> int:
        return self._B

    @property
    def bank_words(self) -> list[int]:
        """Words per bank each layer uses (``Gc*ceil(Ho/r)*ceil(Wo/c)``)."""
        return list(self._bank_words)

    def elaborate(self, platform):
        from amaranth.lib.memory import Memory
        m = Module()
        ev = self.events.payload
        B, W, A = self._B, self._W, self._A
        m.submodules.yrom = yrom = Memory(shape=self.rom_layout, depth=max(2, len(self._yrom)), init=self._yrom)
        m.submodules.xrom = xrom = Memory(shape=self.rom_layout, depth=max(2, len(self._xrom)), init=self._xrom)
        yr, xr = yrom.read_port(domain="comb"), xrom.read_port(domain="comb")

        # the layer's constants, registered from the held ``layer``
        ybase, xbase = Signal(len(yr.addr)), Signal(len(xr.addr))
        wbase, wg, ag = Signal(W), Signal(W), Signal(A)
        wrow, arow, wcol = Signal(W), Signal(A), Signal(W)       # steps to the next row chunk, column chunk
        r_, c_ = Signal(self._kbits), Signal(self._kbits)
        gmax = Signal(self._gbits)
        with m.Switch(self.layer):
            for i, (l, (r, c)) in enumerate(zip(self._layers, self._shape)):
                (C, _, _), (_, Ho, Wo), K, S = l.in_shape, l.out_shape, l.kernel, l.stride
                Hr, Wc = -(-Ho // r), -(-Wo // c)
                with m.Case(i):
                    m.d.sync += [ybase.eq(self._ybase[i]), xbase.eq(self._xbase[i]), wbase.eq(l.wbase),
                                 wg.eq(C * K * K), ag.eq(Hr * Wc), wrow.eq(r * S * K),
                                 arow.eq(Wc), wcol.eq(c * S), r_.eq(r), c_.eq(c),
                                 gmax.eq(l.channel_groups(self._P) - 1)]
        m.d.comb += [yr.addr.eq(ybase + ev.y), xr.addr.eq(xbase + ev.x)]
        ck = times_layer_const(m, ev.c, [l.kernel ** 2 for l in self._layers], self.layer)   # c * K * K

        # ---- stage 1: the event taken, with its ROM rows
        hold, take = Signal(), Signal()
        h_y, h_x = Signal(self.rom_layout), Signal(self.rom_layout)
        h_payload = Signal.like(ev.payload)
        h_ck = Signal(W)                  # c * K * K, registered: its adder ends a stage (as ConvAddressGen)
        h_wp = Signal(W)
        m.d.comb += self.events.ready.eq(~hold | take)
        with m.If(self.events.valid & self.events.ready):
            m.d.sync += [hold.eq(1), h_y.eq(yr.data), h_x.eq(xr.data), h_ck.eq(ck), h_payload.eq(ev.payload),
                         h_wp.eq(wbase + yr.data.k0s + xr.data.k0s)]
        with m.Elif(take):
            m.d.sync += hold.eq(0)

        # ---- stage 2: the event being expanded. Per slot the event's base (weight word and bank address
        # of chunk (0, 0), og 0), and the running offsets every slot shares
        busy, first, null = Signal(), Signal(), Signal()
        og = Signal(self._gbits)
        dy, dx = Signal(data.ArrayLayout(unsigned(self._kbits), B)), Signal(data.ArrayLayout(unsigned(self._kbits), B))
        wb = [Signal(W, name=f"wb{b}") for b in range(B)]
        ab = [Signal(A, name=f"ab{b}") for b in range(B)]
        rem_y, rem_x, nvx = Signal(self._kbits), Signal(self._kbits), Signal(self._kbits)
        # running offsets: of this bundle (wo, ao), of og 0 of this column chunk, of the row chunk's first
        wo, ao, wo_col, ao_col, wo_row, ao_row = (Signal(W), Signal(A), Signal(W), Signal(A), Signal(W), Signal(A))
        payload = Signal.like(ev.payload)
        last_row, last_col = rem_y <= r_, rem_x <= c_
        last = null | ((og == gmax) & last_row & last_col)
        m.d.comb += [self.ops.valid.eq(busy), self.busy.eq(busy | hold), self.held.eq(hold)]
        out = self.ops.payload
        m.d.comb += [out.first.eq(first), out.last.eq(last), out.null.eq(null), out.payload.eq(payload),
                     out.og_last.eq(og == gmax)]
        for b in range(B):
            v = ~null & (dy[b] < rem_y) & (dx[b] < rem_x)
            m.d.comb += [out.slots[b].valid.eq(v), out.slots[b].waddr.eq(Mux(v, wb[b] + wo, self._zero)),
                         out.slots[b].aaddr.eq(ab[b] + ao)]
        done = self.ops.valid & self.ops.ready
        m.d.comb += take.eq(hold & (~busy | (done & last)))

        h_w0 = Signal(W)
        m.d.comb += h_w0.eq(h_wp + h_ck)
        with m.If(take):
            m.d.sync += [busy.eq(1), first.eq(1), og.eq(0), payload.eq(h_payload),
                         null.eq((h_y.n == 0) | (h_x.n == 0)), dy.eq(h_y.d), dx.eq(h_x.d),
                         rem_y.eq(h_y.n), rem_x.eq(h_x.n), nvx.eq(h_x.n),
                         wo.eq(0), ao.eq(0), wo_col.eq(0), ao_col.eq(0), wo_row.eq(0), ao_row.eq(0)]
            m.d.sync += [wb[b].eq(h_w0 + h_y.dw[b] + h_x.dw[b]) for b in range(B)]
            m.d.sync += [ab[b].eq(h_y.qa[b] + h_x.qa[b]) for b in range(B)]
        with m.Elif(done):
            m.d.sync += first.eq(0)
            with m.If(last):
                m.d.sync += busy.eq(0)
            with m.Elif(og != gmax):                 # the next channel group
                m.d.sync += [og.eq(og + 1), wo.eq(wo + wg), ao.eq(ao + ag)]
            with m.Elif(~last_col):                  # the next column chunk: kx grows by c*S, ox div c drops by 1
                m.d.sync += [og.eq(0), rem_x.eq(rem_x - c_), wo_col.eq(wo_col + wcol), ao_col.eq(ao_col - 1),
                             wo.eq(wo_col + wcol), ao.eq(ao_col - 1)]
            with m.Else():                           # the next row chunk: back to the first column chunk
                m.d.sync += [og.eq(0), rem_y.eq(rem_y - r_), rem_x.eq(nvx),
                             wo_row.eq(wo_row + wrow), ao_row.eq(ao_row - arow),
                             wo_col.eq(wo_row + wrow), ao_col.eq(ao_row - arow),
                             wo.eq(wo_row + wrow), ao.eq(ao_row - arow)]
        return m


# ---------------------------------------------------------------------------------------------------
# the sweep's bank addresses


class BankSweepMap(wiring.Component):
    """The bank and bank address of the word the sweep walks (docs/spec.md section 3, "Banks"), a cycle
    later (registered: the core issues the word's ``SWEEP`` op a cycle after the walker names it).

    A conv2d layer's word (og, oy, ox), named by its packed index ``(og << (bx + by)) | (oy << bx) | ox``,
    is in bank ``(oy mod r)*c + ox mod c`` at ``og*ceil(Ho/r)*ceil(Wo/c) + (oy div r)*ceil(Wo/c) + ox div c``
    (per-layer tables indexed by oy and by ox: no divider); a maxpool2d layer's word stays in bank 0 at
    its linear address ``word``.

    Parameters
    ----------
    layers : sequence of hw.sweep.SweepLayer
    shapes : sequence of (r, c)
        Each layer's bank shape (``golden.perf.layer_bank_shape``; (1, 1) for a pool).
    conv : sequence of bool
        Which layers are conv2d (mapped) rather than maxpool2d (bank 0, linear).
    banks, packed_bits, word_bits, addr_bits : int

    Members
    -------
    layer : In, packed : In(packed_bits), word : In(word_bits)
    bank : Out(bank_bits), addr : Out(addr_bits)
        The previous cycle's word's bank and address.
    """

    def __init__(self, layers, shapes, conv, *, banks: int, packed_bits: int, word_bits: int, addr_bits: int):
        self._layers, self._shapes, self._conv = tuple(layers), tuple(shapes), tuple(conv)
        if not (len(self._layers) == len(self._shapes) == len(self._conv)) or not self._layers:
            raise ValueError("layers, shapes and conv must be non-empty and of one length")
        self._B = perf.check_banks(banks)
        self._abits = addr_bits
        super().__init__({"layer": In(bits_for(len(self._layers) - 1)), "packed": In(packed_bits),
                          "word": In(word_bits), "bank": Out(max(1, perf.ceil_log2(self._B))),
                          "addr": Out(addr_bits)})

    def elaborate(self, platform):
        m = Module()
        with m.Switch(self.layer):
            for i, (l, (r, c), conv) in enumerate(zip(self._layers, self._shapes, self._conv)):
                with m.Case(i):
                    if not conv:
                        m.d.sync += [self.bank.eq(0), self.addr.eq(self.word)]
                        continue
                    Hr, Wc = -(-l.height // r), -(-l.width // c)
                    ox = self.packed[:l.bx]
                    oy = self.packed[l.bx:l.bx + l.by]
                    og = self.packed[l.bx + l.by:]
                    ny, nx = 1 << l.by, 1 << l.bx
                    ybank = Array([C((y % r) * c) for y in range(ny)])[oy]
                    xbank = Array([C(x % c) for x in range(nx)])[ox]
                    yaddr = Array([C((y // r) * Wc, self._abits + 1) for y in range(ny)])[oy]
                    xaddr = Array([C(x // c, self._abits + 1) for x in range(nx)])[ox]
                    # og * Hr*Wc from a table too: a constant multiplier became a DSP block behind the
                    # walker's start logic, the 85F direct core's critical path (59.9 MHz at P = 16, banks 3)
                    gb = perf.ceil_log2(max(2, l.groups))
                    gaddr = Array([C(g * Hr * Wc if g < l.groups else 0, self._abits + 1)
                                   for g in range(1 << gb)])[og[:gb]]
                    m.d.sync += [self.bank.eq(ybank + xbank), self.addr.eq(gaddr + yaddr + xaddr)]
        return m
