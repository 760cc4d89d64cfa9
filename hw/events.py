"""Event buffers and the event reader: how spikes travel from one layer to the next.

An event buffer holds *entries*: a producer group index, a P-bit mask of which of its P neurons
emitted, and optionally a payload per lane (the input value for direct input, the T-bit train for
stcb). A producer that updates P neurons at once writes one entry per group with at least one event,
so all P lanes can emit in the same cycle; the consumer walks the set bits, one event per cycle.

:class:`EventReader` replays a buffer's entries once per group of the consuming layer and emits one
event per cycle, without bubbles at entry or group boundaries: it prefetches entries into a small
FIFO ahead of the bit iterator. This is the only part that knows how events are stored; the address
generator after it sees a plain stream of (input index, payload) events.
"""

from __future__ import annotations

from amaranth import *
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2, exact_log2

from golden import perf

from .bits import at_most

__all__ = ["entry_layout", "event_layout", "EventBuffer", "EventReader", "READER_FIFO_DEPTH"]

READER_FIFO_DEPTH = 4


def entry_layout(lanes: int, group_bits: int, payload_bits: int) -> data.StructLayout:
    """One buffer entry: producer group, P-bit mask, P payloads of ``payload_bits`` (may be 0)."""
    fields = {"group": unsigned(group_bits), "mask": unsigned(lanes)}
    if payload_bits:
        fields["payload"] = data.ArrayLayout(unsigned(payload_bits), lanes)
    return data.StructLayout(fields)


def event_layout(index_bits: int, group_bits: int, payload_bits: int, lanes: int = 1) -> data.StructLayout:
    """One event as the reader emits it, tagged with the consuming group and its position in it."""
    return data.StructLayout({
        "index": unsigned(index_bits),        # the source neuron: entry.group * P + lane
        "payload": unsigned(max(1, payload_bits)),
        "mask": unsigned(lanes),              # the entry's lanes it stands for: its lane, or (whole) all
        "group": unsigned(group_bits),        # the consuming layer's group this event is replayed for
        "first": unsigned(1), "last": unsigned(1),
        "null": unsigned(1),                  # a group with no events: one null op
    })


class EventBuffer(wiring.Component):
    """A list of entries in a memory: appended by a producer, replayed by an :class:`EventReader`.

    Members
    -------
    clear : In(1)
        Empty the buffer (the entries stay in memory; the count returns to 0).
    append : In(1), entry : In(layout)
        Write ``entry`` at the end of the list.
    count : Out(range(depth + 1))
        Entries in the buffer.
    rd_addr : In(...), rd_data : Out(layout), rd_one : Out(1)
        Synchronous read port: ``rd_data`` holds entry ``rd_addr`` of the previous cycle, and ``rd_one``
        whether its mask has one lane set at most (:func:`at_most`, computed when the entry was written).
    """

    def __init__(self, layout: data.StructLayout, depth: int):
        self._layout, self._depth = layout, int(depth)
        self._abits = max(1, ceil_log2(max(2, depth)))
        super().__init__({"clear": In(1), "append": In(1), "entry": In(layout),
                          "count": Out(range(depth + 1)), "rd_addr": In(self._abits), "rd_data": Out(layout),
                          "rd_one": Out(1)})

    def elaborate(self, platform):
        m = Module()
        # the one-lane flag is stored beside the entry: the reader needs it the cycle a word arrives, and
        # a block RAM's clock-to-out (5.8 ns on the LFE5U-25F-6) leaves no time to compute it from the
        # word there (that path measured 93.9 MHz); the writer's mask comes from registers
        word = data.StructLayout({"entry": self._layout, "one": unsigned(1)})
        m.submodules.mem = mem = Memory(shape=word, depth=max(2, self._depth), init=[])
        wr, rd = mem.write_port(), mem.read_port()
        m.d.comb += [wr.addr.eq(self.count), wr.data.entry.eq(self.entry), wr.data.one.eq(at_most(self.entry.mask, 1)),
                     wr.en.eq(self.append & ~self.clear),
                     rd.addr.eq(self.rd_addr), self.rd_data.eq(rd.data.entry), self.rd_one.eq(rd.data.one)]
        with m.If(self.clear):
            m.d.sync += self.count.eq(0)
        with m.Elif(self.append):
            m.d.sync += self.count.eq(self.count + 1)
        return m


class EventReader(wiring.Component):
    """Replays ``count`` entries ``groups`` times as a stream of single events.

    A ``start`` pulse (with ``count``, ``groups``, ``min_group_cycles`` and ``whole`` valid) begins a phase.
    The first event leaves ``perf.LAYER_SETUP`` cycles after ``start``; then one event per cycle
    while ``events.ready`` is high, except that a group's first event waits until
    ``min_group_cycles`` cycles have passed since the previous group's first event (stcb's slot unit
    needs that spacing). With ``count == 0`` each group gets one null event. ``busy`` is high from
    ``start`` until the last event has been taken.

    With ``whole`` (a maxpool2d phase, rate and tsc: docs/spec.md section 3) each entry leaves as one
    event: ``index`` names its lowest set lane (so the channel group and the position decode as for
    any event) and ``mask`` all its lanes. Otherwise an event is one lane and ``mask`` that lane's bit.

    Members
    -------
    start, count, groups, min_group_cycles, whole : In
    rd_addr : Out, rd_data : In(array of ``sources`` entry layouts), rd_one : In(sources), rd_sel : In(sources)
        The buffers' read ports (data one cycle after the address; each buffer gets ``rd_addr``; ``rd_one``
        bit k is buffer k's :attr:`EventBuffer.rd_one`, whether the word has one lane at most) and a
        one-hot register naming the phase's buffer, valid from the cycle after ``start`` + 1. Each
        buffer's word lands in registers of its own; the select acts behind them, so a block RAM's
        late output meets no logic before a flip-flop.
    events : Out(stream of :func:`event_layout`)
    busy : Out(1)
    """

    def __init__(self, *, lanes: int, entry: data.StructLayout, depth: int, max_groups: int, payload_bits: int,
                 max_min_cycles: int = 1, sources: int = 1):
        self._sources = int(sources)
        self._spacing = max_min_cycles > 1          # only stcb spaces its groups
        self._P = lanes
        self._lp = exact_log2(lanes)
        self._entry = entry
        self._gbits = Shape.cast(entry["group"].shape).width
        self._pw = payload_bits
        self._depth = depth
        gbits_out = max(1, ceil_log2(max_groups + 1))
        self.event_layout = event_layout(self._gbits + self._lp, gbits_out, payload_bits, lanes)
        super().__init__({
            "start": In(1), "count": In(range(depth + 1)), "groups": In(range(max_groups + 1)),
            "min_group_cycles": In(range(max_min_cycles + 1)), "whole": In(1),
            "rd_addr": Out(max(1, ceil_log2(max(2, depth)))),
            "rd_data": In(data.ArrayLayout(entry, self._sources)), "rd_one": In(self._sources),
            "rd_sel": In(self._sources),
            "events": Out(stream.Signature(self.event_layout)),
            "busy": Out(1), "rd_issue": Out(1),
        })

    @property
    def setup_latency(self) -> int:
        return perf.LAYER_SETUP

    def elaborate(self, platform):
        m = Module()
        P, lp, D = self._P, self._lp, READER_FIFO_DEPTH
        ev = self.events
        width = Shape.cast(self._entry).width

        # ---- phase registers, latched on start
        n_entries = Signal.like(self.count)
        n_groups = Signal.like(self.groups)
        min_cyc = Signal.like(self.min_group_cycles)
        null_phase = Signal()
        whole = Signal()
        setup = Signal(range(perf.LAYER_SETUP + 1))
        with m.If(self.start):
            m.d.sync += [n_entries.eq(self.count), n_groups.eq(self.groups), min_cyc.eq(self.min_group_cycles),
                         null_phase.eq(self.count == 0), whole.eq(self.whole), self.busy.eq(1),
                         setup.eq(perf.LAYER_SETUP - 2)]
        with m.Elif(setup != 0):
            m.d.sync += setup.eq(setup - 1)
        running = self.busy & ~self.start & (setup == 0)

        # ---- prefetch: entries 0..N-1, `groups` times over, through a landing register into a FIFO; the
        # first read goes out in the start cycle itself
        rk = Signal.like(self.count)                 # next entry to read
        rg = Signal.like(self.groups)                # replays begun
        reading = Signal()
        inflight, tag = Signal(), Signal()
        fifo = [Signal(width, name=f"fifo{i}") for i in range(D)]
        fifo_last = [Signal(name=f"fifo_last{i}") for i in range(D)]
        fifo_one = [Signal(name=f"fifo_one{i}") for i in range(D)]
        level = Signal(range(D + 1))
        pop = Signal()
        issue = Signal()
        # the last entry and the last replay are compared with registers latched at start (the start
        # cycle itself compares the inputs), so no subtraction sits before a comparison
        nm1, gm1 = Signal.like(self.count), Signal.like(self.groups)
        with m.If(self.start):
            m.d.sync += [nm1.eq(self.count - 1), gm1.eq(self.groups - 1)]
        k_now = Mux(self.start, 0, rk)
        r_now = Mux(self.start, 0, rg)
        last_k = Mux(self.start, self.count == 1, rk == nm1)
        last_r = Mux(self.start, self.groups == 1, rg == gm1)
        # `land` (below) holds a word that the FIFO would already hold, so it counts towards the FIFO's level
        land_ok = Signal()
        m.d.comb += [issue.eq(Mux(self.start, self.count != 0, reading & (level + land_ok + inflight < D))),
                     self.rd_addr.eq(k_now), self.rd_issue.eq(issue)]
        m.d.sync += inflight.eq(issue)
        with m.If(issue):
            m.d.sync += [rk.eq(Mux(last_k, 0, k_now + 1)), rg.eq(r_now + last_k), tag.eq(last_k),
                         reading.eq(~(last_k & last_r))]
        with m.Elif(self.start):
            m.d.sync += [rk.eq(0), rg.eq(0), reading.eq(0)]
        # ---- the current entry: a register, or the bypass register that caught the memory's word when the
        # FIFO was empty. Each buffer's word goes into landing and bypass registers of its own, through
        # their clock enable alone (a block RAM's clock-to-out is 5.8 ns of a 10 ns cycle on the
        # LFE5U-25F-6: the buffer select in front held the direct conv core to 94.9 MHz, 98.8 as an
        # AND-OR); the phase's buffer is picked behind them. (A stage register per buffer loaded every
        # cycle, with cur_reg taking the entry over after a cycle, measured 91.3 MHz: its longer enable
        # logic became the critical path.)
        S = self._sources
        cur_reg = Signal(width)
        land_k = [Signal(width, name=f"land{k}") for k in range(S)]
        byp_k = [Signal(width, name=f"byp{k}") for k in range(S)]

        def pick(regs):
            if S == 1:
                return regs[0]
            out = 0
            for k in range(S):
                out = out | (regs[k] & self.rd_sel[k].replicate(len(regs[k])))
            return out
        land, byp = Signal(width), Signal(width)
        m.d.comb += [land.eq(pick(land_k)), byp.eq(pick(byp_k))]
        use_byp = Signal()
        cur = Signal(width)
        m.d.comb += cur.eq(Mux(use_byp, byp, cur_reg))
        cur_last, cur_ok = Signal(), Signal()
        src = data.View(self._entry, cur)
        mask = src.mask
        # whether cur's entry holds one lane at most (its event is the entry's last), kept in a flop beside
        # every copy of the word: computed where the word is loaded, so `done_entry` below is a flop (a
        # multiplexer for the bypass) and not the mask's lowest-bit isolation and "rest is empty" test in
        # front of the refill logic, which held the 25F-6 at 87.9-93.7 MHz in every coding (ffe3fa8).
        # The memory stores the flag beside the word (EventBuffer.rd_one): the landing and bypass
        # registers take it as they take the word, through their clock enable alone
        byp_one_k = [Signal(name=f"byp_one{k}") for k in range(S)]
        land_one_k = [Signal(name=f"land_one{k}") for k in range(S)]
        cur_one_reg = Signal()
        cur_one = Signal()
        m.d.comb += cur_one.eq(Mux(use_byp, pick(byp_one_k), cur_one_reg))
        low = Signal(P)
        m.d.comb += low.eq(mask & -mask)             # the lowest set bit, isolated
        lane = Signal(max(1, lp))
        for q in reversed(range(P)):
            with m.If(low[q]):
                m.d.comb += lane.eq(q)
        rest = Signal(P)
        m.d.comb += rest.eq(mask & ~low)

        # ---- groups: the event stream's register, group counter and (stcb) spacing
        g = Signal.like(ev.payload.group)
        more = Signal()                              # g != groups
        first = Signal()                             # the next event starts a group
        take = ev.valid & ev.ready
        free = ~ev.valid | ev.ready
        spaced = C(1, 1)
        if self._spacing:
            top = (1 << len(self.min_group_cycles)) - 1
            since = Signal(range(top + 1))           # cycles since the current group's first event
            spaced = ~first | (since >= min_cyc)
        can_emit = running & free & spaced & more
        emit_null = can_emit & null_phase
        emit_ev = can_emit & ~null_phase & cur_ok
        done_entry = cur_one | whole                 # == (rest == 0) | whole, from flops
        refill = ~cur_ok | (emit_ev & done_entry)    # cur needs the next entry this cycle
        # Where cur's next word comes from, oldest first: the FIFO's head, the landing register (a word
        # that arrived last cycle and was not taken), the memory (into the bypass register: `bypass`). A
        # landed word goes to a FIFO slot a cycle after it arrived; timing is that of a FIFO written
        # straight from the memory, since `land_ok` counts in the FIFO's level.
        from_fifo = refill & (level != 0)
        from_land = refill & (level == 0) & land_ok
        bypass = refill & (level == 0) & ~land_ok & inflight
        m.d.comb += pop.eq(from_fifo)
        land_last = Signal()
        land_one = Signal()
        m.d.comb += land_one.eq(pick(land_one_k))
        m.d.sync += land_ok.eq(inflight & ~bypass)
        with m.If(inflight):
            m.d.sync += [land_k[k].eq(self.rd_data[k].as_value()) for k in range(S)] + [
                land_one_k[k].eq(self.rd_one[k]) for k in range(S)] + [land_last.eq(tag)]
        # the FIFO is circular: a slot is written only through its flip-flops' clock enable, and the head is
        # read from registers
        assert D & (D - 1) == 0, "the pointers wrap by overflow"
        wp = Signal(range(D))
        rp = Signal(range(D))
        write = land_ok & ~from_land
        for i in range(D):
            with m.If(write & (wp == i)):
                m.d.sync += [fifo[i].eq(land), fifo_last[i].eq(land_last), fifo_one[i].eq(land_one)]
        with m.If(write):
            m.d.sync += wp.eq(wp + 1)
        with m.If(pop):
            m.d.sync += rp.eq(rp + 1)
        head = Array(fifo)[rp]
        head_last = Array(fifo_last)[rp]
        head_one = Array(fifo_one)[rp]
        m.d.sync += level.eq(level + write - pop)
        # cur's next word
        with m.If(bypass):
            m.d.sync += [byp_k[k].eq(self.rd_data[k].as_value()) for k in range(S)] + [
                byp_one_k[k].eq(self.rd_one[k]) for k in range(S)] + [
                use_byp.eq(1), cur_last.eq(tag), cur_ok.eq(1)]
        with m.Elif(from_fifo):
            m.d.sync += [cur_reg.eq(head), use_byp.eq(0), cur_last.eq(head_last), cur_ok.eq(1),
                         cur_one_reg.eq(head_one)]
        with m.Elif(from_land):
            m.d.sync += [cur_reg.eq(land), use_byp.eq(0), cur_last.eq(land_last), cur_ok.eq(1),
                         cur_one_reg.eq(land_one)]
        with m.Elif(refill):
            m.d.sync += cur_ok.eq(0)
        with m.Elif(emit_ev):
            # cur becomes the rest: one lane at most when the mask held two at most
            m.d.sync += [cur_reg.eq(Cat(src.group, rest, cur[len(src.group) + P:])), use_byp.eq(0),
                         cur_one_reg.eq(at_most(mask, 2))]

        with m.If(self.start):
            m.d.sync += [g.eq(0), first.eq(1), more.eq(self.groups != 0)]
        with m.If(free):
            m.d.sync += ev.valid.eq(emit_null | emit_ev)
        group_done = (emit_ev & done_entry & cur_last) | emit_null
        with m.If(emit_ev):
            m.d.sync += [ev.payload.index.eq(Cat(lane[:lp], src.group) if lp else src.group),
                         ev.payload.mask.eq(Mux(whole, mask, low)),
                         ev.payload.group.eq(g), ev.payload.first.eq(first), ev.payload.null.eq(0),
                         ev.payload.last.eq(done_entry & cur_last), first.eq(done_entry & cur_last)]
            if self._pw:
                lanes_payload = [src.payload[p] for p in range(P)]
                m.d.sync += ev.payload.payload.eq(Array(lanes_payload)[lane] if P > 1 else lanes_payload[0])
        with m.If(emit_null):
            m.d.sync += [ev.payload.index.eq(0), ev.payload.mask.eq(0), ev.payload.group.eq(g),
                         ev.payload.first.eq(1), ev.payload.last.eq(1), ev.payload.null.eq(1)]
        with m.If(group_done):
            m.d.sync += [g.eq(g + 1), more.eq(g != gm1)]
        if self._spacing:
            with m.If(self.start):
                m.d.sync += since.eq(top)
            with m.Elif((emit_ev | emit_null) & first):
                m.d.sync += since.eq(1)
            with m.Elif(since != top):
                m.d.sync += since.eq(since + 1)
        with m.If(~self.start & self.busy & ~more & free & (setup == 0)):
            m.d.sync += self.busy.eq(0)
        with m.If(self.start):
            m.d.sync += cur_ok.eq(0)
        return m
