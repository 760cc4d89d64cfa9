"""The accumulator memory of conv2d and maxpool2d layers: read-modify-write, one op per cycle.

The scatter adds P weights into an accumulator word (pools OR their spikes or trains in), and the
fire sweep reads every word and writes zero back, so the memory is all-zero between phases
(docs/spec.md section 3). An op issued in cycle c reads its word through the block RAM and a fabric
register (its old word is there in cycle c + ``MEM_READ_LATENCY``), forms the new word in that same
cycle into a register, and writes it into the block RAM a cycle later (the adder's path then ends in a
fabric register next to it, not at the block RAM's data input: that path limited the rate conv core to
86.8-93.4 MHz on the LFE5U-25F). The block RAM reads without write-through, so the three ops after it
would read a stale word: the new word of each of the last three ops is kept beside its address and
*forwarded* to an op on the same address (the nearest wins). Back-to-back ops on one word therefore see
each other's sums, whatever the order of events.

A read of the word being written in the same cycle is thus always forwarded: what the block RAM returns
then is never used. The memory says so to Yosys (``no_rw_check``), which otherwise builds read-first
logic around a wide block RAM that cannot read before it writes: a register of the write data, one of
the read data and a multiplexer per bit. On the digits stcb core at P = 8 (a 768-bit word) that was
1,537 flip-flops and 768 LUTs. ``collision_word`` lets a test put a word of its choice there instead, so
a forwarding path that missed a collision shows up as that word.
"""

from __future__ import annotations

from amaranth import *
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from golden import perf

__all__ = ["AccKind", "acc_op_layout", "swept_layout", "AccumulatorMemory"]


class AccKind(enum.Enum, shape=3):
    """What an op does with its word (``old``) and its terms."""
    ADD = 0     # conv scatter: old + terms, lane by lane
    OR = 1      # rate/stcb pool scatter: old | terms, bit by bit (a spike bit, or a T-bit train, per lane)
    MAX = 2     # lane by lane max(old, terms) (a tsc pool storing t: t only grows over a window)
    SWEEP = 3   # read old, send it on ``swept``, write zero
    CLEAR = 4   # write zero without reading (tsc pool's clear sweep)


def acc_op_layout(*, addr_bits: int, word: data.Layout, trains: data.Layout | None = None) -> data.StructLayout:
    """An op: its word's address, its kind and its terms (with ``slots``: a term and a train per lane)."""
    fields = {"addr": unsigned(addr_bits), "kind": AccKind, "terms": word}
    if trains is not None:
        fields["trains"] = trains
    return data.StructLayout(fields)


def swept_layout(*, addr_bits: int, word: data.Layout) -> data.StructLayout:
    return data.StructLayout({"addr": unsigned(addr_bits), "word": word})


class AccumulatorMemory(wiring.Component):
    """Accumulator words of ``lanes`` signed lanes of ``width`` bits, updated in place.

    Parameters
    ----------
    lanes : int
        Lanes per word: P (stcb conv: P x T slots, slot t of lane p at element p*T + t).
    width : int
        Bits per lane (``acc_mem_bits``: a conv2d layer's synaptic sums; a pool uses 1, or T for stcb trains,
        in lane 0's bits upward).
        Sums wrap at ``width`` bits: the core sizes it so that they cannot.
    depth : int
        Words (``max_l N_l``).
    kinds : the :class:`AccKind` s built (default all). The core builds those its layers issue: a
        multiplexer input and a lane-wise max of the whole word for ``MAX`` were dead logic in every
        core (the tsc pool has a read-modify-write of its own). An op of a kind not built writes zero.
    slots, term_bits : stcb's T and the width of a term (None: a term per element). A word is then ``lanes / slots``
        groups of ``slots`` elements (lane p's slot t at element p*slots + t), and an op carries one term
        and one ``slots``-bit train per lane instead of a term per element: ``ADD`` adds lane p's term into
        the slots its train marks, ``OR`` ORs lane p's train into the low ``slots`` bits of its group (a
        pool's T-bit train). The op's registers are then P*(term_bits + T) bits, not P*T*width (768 on the
        digits stcb core at P = 8).
    collision_word : int or None
        Verification only (default None): the word the block RAM's read returns when it reads the
        address written in the same cycle, instead of the old word the simulator models. The hardware's
        word is undefined there (``no_rw_check``); no result may depend on it.

    Members
    -------
    ops : In(stream.Signature(acc_op_layout, always_ready=True))
        One op per cycle at most; the memory never holds the producer (a fixed-latency pipeline).
    swept : Out(stream.Signature(swept_layout, always_ready=True))
        The old word of a ``SWEEP`` op issued in cycle c, in cycle c + ``LATENCY``.
    forwarded : Out(1)
        In cycle c + ``LATENCY``: the old word of the op issued in cycle c came from one of the three
        ops before it, not from the RAM (a coverage point).
    merged : Out(1)
        In cycle c + ``LATENCY`` + 1: an ``OR`` op whose terms share a set bit with its old word, or a
        ``MAX`` op whose terms and old word are both non-zero in a lane (a pool window that already
        held a spike: a coverage point).
    acc_read, acc_write : Out(1)
        Counter increments: a word read (every op but ``CLEAR``), in the cycle it is issued; a word
        written (every op), in the cycle its new word is formed (c + ``LATENCY``; it reaches the block
        RAM a cycle later).

    ``LATENCY`` is ``perf.MEM_READ_LATENCY``.
    """

    LATENCY = perf.MEM_READ_LATENCY

    def __init__(self, *, lanes: int, width: int, depth: int, kinds=tuple(AccKind), slots: int | None = None,
                 term_bits: int | None = None, collision_word: int | None = None):
        self._slotted = slots is not None
        slots = 1 if slots is None else slots
        term_bits = width if term_bits is None else term_bits
        for name, v in (("lanes", lanes), ("width", width), ("depth", depth), ("slots", slots),
                        ("term_bits", term_bits)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise TypeError(f"{name} must be a positive integer, not {v!r}")
        if lanes % slots:
            raise ValueError(f"lanes ({lanes}) must be a multiple of slots ({slots})")
        if self._slotted and AccKind.MAX in kinds:
            raise ValueError("MAX takes a term per element: not with slots")
        self._lanes, self._width, self._depth = lanes, width, max(2, depth)
        self._kinds, self._slots = frozenset(AccKind(k) for k in kinds), slots
        self._abits = max(1, perf.ceil_log2(self._depth))
        self._collision_word = collision_word
        self.word_layout = data.ArrayLayout(signed(width), lanes)
        if self._slotted:
            G = lanes // slots
            op = acc_op_layout(addr_bits=self._abits, word=data.ArrayLayout(signed(term_bits), G),
                               trains=data.ArrayLayout(unsigned(slots), G))
        else:
            op = acc_op_layout(addr_bits=self._abits, word=self.word_layout)
        super().__init__({
            "ops": In(stream.Signature(op, always_ready=True)),
            "swept": Out(stream.Signature(swept_layout(addr_bits=self._abits, word=self.word_layout),
                                          always_ready=True)),
            "forwarded": Out(1), "merged": Out(1), "acc_read": Out(1), "acc_write": Out(1)})

    @property
    def depth(self) -> int:
        return self._depth

    @property
    def addr_bits(self) -> int:
        return self._abits

    def elaborate(self, platform):
        m = Module()
        # no_rw_check: a read of the word written in the same cycle is always forwarded (see the module's
        # docstring), so its collision behaviour is don't-care
        m.submodules.mem = mem = Memory(shape=self.word_layout, depth=self._depth, init=[],
                                        attrs={"no_rw_check": 1})
        rd, wr = mem.read_port(), mem.write_port()
        op = self.ops.payload
        rd_data = rd.data
        if self._collision_word is not None:
            # verification only: the word a collision reads is the test's, not the simulator's old word
            collided = Signal()
            m.d.sync += collided.eq(wr.en & (wr.addr == rd.addr))
            rd_data = Mux(collided, C(self._collision_word, len(rd.data)), rd.data)
        m.d.comb += [rd.addr.eq(op.addr), self.acc_read.eq(self.ops.valid & (op.kind != AccKind.CLEAR))]

        # the op travels beside its read: RAM (1), fabric register (2)
        v1, op1 = Signal(), Signal.like(op)
        v2, op2 = Signal(), Signal.like(op)
        ram = Signal(self.word_layout)
        m.d.sync += [v1.eq(self.ops.valid), op1.eq(op), v2.eq(v1), op2.eq(op1)]

        # the new words of the last two ops (w1: formed a cycle ago, in the RAM's write port now; w2: two
        # cycles ago, written a cycle ago): the RAM read of op2 missed them and the one being formed now
        w1_en, w1_addr, w1_data = Signal(), Signal(self._abits), Signal(self.word_layout)
        w2_en, w2_addr, w2_data = Signal(), Signal(self._abits), Signal(self.word_layout)
        # the nearest hit is compared a cycle ahead: op1 against op2, whose new word is w1 when op1
        # reaches stage 2, so the multiplexer in front of the adder takes its select from a flop (the
        # compare in series limited a conv core to 79 MHz)
        hit1 = Signal()
        m.d.sync += hit1.eq(v2 & (op2.addr == op1.addr))
        # the two older hits are folded into the RAM word's register: the words they forward are w1 and
        # w2 now, and the same words (then w2 and gone from the pipeline, but in the RAM for a read after
        # it) are what op1 needs at stage 2, so ``old`` is one 2:1 multiplexer before the adder
        hit2, hit3 = w1_en & (w1_addr == op1.addr), w2_en & (w2_addr == op1.addr)
        fwd_old = Signal()
        m.d.sync += [ram.eq(Mux(hit2, w1_data, Mux(hit3, w2_data, rd_data))), fwd_old.eq(hit2 | hit3)]
        old = Signal(self.word_layout)
        m.d.comb += old.eq(Mux(hit1, w1_data, ram))
        uses_old = op2.kind != AccKind.CLEAR
        m.d.comb += self.forwarded.eq(v2 & uses_old & (hit1 | fwd_old))

        # the op's terms, element by element (with slots: lane p's term where its train is set, and its
        # train in the low bits of its group for an OR)
        S, n = self._slots, self._lanes
        if self._slotted:
            add_terms = [Mux(op2.trains[i // S][i % S], op2.terms[i // S], 0) for i in range(n)]
            gw = S * self._width
            or_terms = Cat(*[Cat(op2.trains[g], C(0, gw - S)) for g in range(n // S)])
        else:
            add_terms, or_terms = [op2.terms[i] for i in range(n)], op2.terms.as_value()
        # (coverage) the lanes where a pool op met a window that already held a spike, registered: the
        # strobe is a cycle late, so that its compare is not in series with the adder's path from ``old``
        met = Signal(n)
        is_or, is_max = op2.kind == AccKind.OR, op2.kind == AccKind.MAX
        old_v, w = old.as_value(), self._width
        hits = []
        for i in range(n):
            hit = C(0, 1)
            if AccKind.OR in self._kinds:
                hit = hit | (is_or & ((old_v[i * w:(i + 1) * w] & or_terms[i * w:(i + 1) * w]) != 0))
            if AccKind.MAX in self._kinds:
                hit = hit | (is_max & (old[i] != 0) & (op2.terms[i] != 0))
            hits.append(v2 & hit)
        m.d.sync += met.eq(Cat(*hits))
        m.d.comb += self.merged.eq(met != 0)

        new = Signal(self.word_layout)
        with m.Switch(op2.kind):
            if AccKind.ADD in self._kinds:
                with m.Case(AccKind.ADD):
                    m.d.comb += [new[i].eq(old[i] + add_terms[i]) for i in range(n)]
            if AccKind.OR in self._kinds:
                with m.Case(AccKind.OR):
                    m.d.comb += new.eq(old_v | or_terms)
            if AccKind.MAX in self._kinds:
                with m.Case(AccKind.MAX):
                    m.d.comb += [new[i].eq(Mux(op2.terms[i] > old[i], op2.terms[i], old[i])) for i in range(n)]
            with m.Default():                          # SWEEP and CLEAR (and a kind not built) write zero
                m.d.comb += new.eq(0)
        m.d.comb += [wr.en.eq(w1_en), wr.addr.eq(w1_addr), wr.data.eq(w1_data), self.acc_write.eq(v2),
                     self.swept.valid.eq(v2 & (op2.kind == AccKind.SWEEP)),
                     self.swept.payload.addr.eq(op2.addr), self.swept.payload.word.eq(old)]
        m.d.sync += [w1_en.eq(v2), w1_addr.eq(op2.addr), w1_data.eq(new),
                     w2_en.eq(w1_en), w2_addr.eq(w1_addr), w2_data.eq(w1_data)]
        return m
