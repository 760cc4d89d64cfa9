"""hw.events: the event buffer and the event reader, alone, in the Amaranth simulator.

The reader must replay the buffer's entries once per group, one event per cycle with no bubble at
entry or group boundaries, starting exactly perf.LAYER_SETUP cycles after `start`; keep stcb's group
spacing; emit one null event per group for an empty buffer; and hold its output under backpressure.
"""

import random

import pytest
from amaranth import Module
from amaranth.lib import wiring
from amaranth.sim import Simulator

from golden import perf
from hw.events import EventBuffer, EventReader, entry_layout


class Rig(wiring.Component):
    """A buffer wired to a reader."""

    def __init__(self, P, depth, max_groups, pw=0):
        self.layout = entry_layout(P, 4, pw)
        self.buf = EventBuffer(self.layout, depth)
        self.rdr = EventReader(lanes=P, entry=self.layout, depth=depth, max_groups=max_groups, payload_bits=pw,
                               max_min_cycles=16)
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        m.submodules.buf, m.submodules.rdr = self.buf, self.rdr
        m.d.comb += [self.buf.rd_addr.eq(self.rdr.rd_addr), self.rdr.rd_data[0].eq(self.buf.rd_data),
                     self.rdr.rd_one[0].eq(self.buf.rd_one), self.rdr.rd_sel.eq(1),
                     self.rdr.count.eq(self.buf.count)]
        return m


def reference(entries, P, G, pw, whole=False):
    """(index, payload, group, first, last, null, mask) of every event: one per set lane, or with
    ``whole`` one per entry (its lowest lane's index and payload, its mask)."""
    out = []
    for g in range(G):
        if whole:
            evs = [(grp * P + (mask & -mask).bit_length() - 1, (pl[(mask & -mask).bit_length() - 1] if pw else 0), mask)
                   for grp, mask, pl in entries]
        else:
            evs = [(grp * P + p, (pl[p] if pw else 0), 1 << p) for grp, mask, pl in entries
                   for p in range(P) if mask >> p & 1]
        if not evs:
            out.append((0, 0, g, 1, 1, 1, 0))
            continue
        for k, (i, v, mk) in enumerate(evs):
            out.append((i, v, g, int(k == 0), int(k == len(evs) - 1), 0, mk))
    return out


def run(P, entries, G, *, pw=0, min_cycles=1, ready_prob=1.0, seed=0, depth=8, whole=False):
    rig = Rig(P, depth, 8, pw)
    got, cycles = [], {}
    rng = random.Random(seed)

    async def bench(ctx):
        for grp, mask, pl in entries:
            ctx.set(rig.buf.append, 1)
            ctx.set(rig.buf.entry, {"group": grp, "mask": mask, **({"payload": pl} if pw else {})})
            await ctx.tick()
        ctx.set(rig.buf.append, 0)
        ctx.set(rig.rdr.groups, G)
        ctx.set(rig.rdr.min_group_cycles, min_cycles)
        ctx.set(rig.rdr.whole, whole)
        ctx.set(rig.rdr.start, 1)
        await ctx.tick()
        ctx.set(rig.rdr.start, 0)
        ctx.set(rig.rdr.whole, not whole)          # latched at start: a change after it is ignored
        n = 1
        while True:
            ready = rng.random() < ready_prob
            ctx.set(rig.rdr.events.ready, ready)
            if ctx.get(rig.rdr.events.valid) and ready:
                e = ctx.get(rig.rdr.events.payload)
                got.append((e.index, e.payload, e.group, e.first, e.last, e.null, e.mask))
                cycles.setdefault("first", n)
                cycles["last"] = n
            await ctx.tick()
            n += 1
            if not ctx.get(rig.rdr.busy) or n > 500:
                break

    sim = Simulator(rig)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return got, cycles


@pytest.mark.parametrize("P", [1, 2, 8])
def test_replays_every_entry_once_per_group_without_bubbles(P):
    rng = random.Random(P)
    entries = [(g, rng.randrange(1, 1 << P), None) for g in range(5)]
    got, cyc = run(P, entries, G=3)
    assert got == reference(entries, P, 3, 0)
    assert cyc["first"] == perf.LAYER_SETUP                       # cycles after the start cycle
    assert cyc["last"] - cyc["first"] + 1 == len(got)              # one event per cycle, no bubble


def test_single_bit_entries_back_to_back_and_payloads():
    P = 4
    entries = [(g, 1 << (g % P), [g * 10 + p for p in range(P)]) for g in range(6)]
    got, cyc = run(P, entries, G=2, pw=7)
    assert got == reference(entries, P, 2, 7)
    assert cyc["last"] - cyc["first"] + 1 == len(got)


@pytest.mark.parametrize("seed", range(6))
def test_whole_entries_one_event_per_entry_and_cycle(seed):
    # a rate or tsc maxpool2d phase: each entry leaves as one event carrying its mask, one per cycle at
    # full readiness, none dropped or repeated under backpressure
    rng = random.Random(100 + seed)
    P = rng.choice([1, 2, 4, 8])
    entries = [(g, rng.randrange(1, 1 << P), [rng.randrange(8) for _ in range(P)]) for g in range(rng.randint(1, 8))]
    G = rng.randint(1, 3)
    for ready_prob in (1.0, 0.5):
        got, cyc = run(P, entries, G=G, pw=3, ready_prob=ready_prob, seed=seed, whole=True)
        assert got == reference(entries, P, G, 3, whole=True)
        assert len(got) == G * len(entries)
        if ready_prob == 1.0:
            assert cyc["first"] == perf.LAYER_SETUP and cyc["last"] - cyc["first"] + 1 == len(got)


def test_empty_buffer_gives_one_null_event_per_group():
    got, cyc = run(4, [], G=3)
    assert got == [(0, 0, g, 1, 1, 1, 0) for g in range(3)]
    assert cyc["first"] == perf.LAYER_SETUP and cyc["last"] == perf.LAYER_SETUP + 2


@pytest.mark.parametrize("events_per_group, spacing", [(2, 5), (7, 5), (1, 1)])
def test_group_spacing(events_per_group, spacing):
    # a group of E events occupies max(E, spacing) cycles (stcb's slot unit needs T * taps per group)
    P = 8
    entries = [(0, (1 << events_per_group) - 1, None)]
    got, cyc = run(P, entries, G=4, min_cycles=spacing)
    assert got == reference(entries, P, 4, 0)
    assert cyc["last"] - cyc["first"] + 1 == 3 * max(events_per_group, spacing) + events_per_group


def test_backpressure_neither_drops_nor_duplicates():
    P = 4
    rng = random.Random(9)
    entries = [(g, rng.randrange(1, 16), None) for g in range(6)]
    got, _ = run(P, entries, G=3, ready_prob=0.5, seed=3)
    assert got == reference(entries, P, 3, 0)


@pytest.mark.parametrize("seed", range(12))
def test_random_entries_every_source_of_the_current_word(seed):
    # masks of one to three bits, so an entry is used up while the next word waits in the FIFO, in the landing
    # register or on the memory's output: each of the three sources of the current word is taken; at full
    # readiness the events still leave one per cycle
    rng = random.Random(seed)
    P = rng.choice([2, 4, 8])
    entries = []
    for g in range(rng.randrange(1, 8)):
        bits = rng.sample(range(P), rng.randint(1, min(3, P)))
        entries.append((g, sum(1 << b for b in bits), None))
    G = rng.randint(1, 4)
    for ready_prob in (1.0, 0.6):
        got, cyc = run(P, entries, G=G, ready_prob=ready_prob, seed=seed)
        assert got == reference(entries, P, G, 0)
        if ready_prob == 1.0:
            assert cyc["first"] == perf.LAYER_SETUP and cyc["last"] - cyc["first"] + 1 == len(got)


class Rig2(wiring.Component):
    """Two buffers behind one reader, as the core wires its event buffers."""

    def __init__(self, P, depth):
        self.layout = entry_layout(P, 4, 0)
        self.bufs = [EventBuffer(self.layout, depth) for _ in range(2)]
        self.rdr = EventReader(lanes=P, entry=self.layout, depth=depth, max_groups=8, payload_bits=0, sources=2)
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        m.submodules.rdr = self.rdr
        for k, b in enumerate(self.bufs):
            m.submodules[f"buf{k}"] = b
            m.d.comb += [b.rd_addr.eq(self.rdr.rd_addr), self.rdr.rd_data[k].eq(b.rd_data),
                         self.rdr.rd_one[k].eq(b.rd_one)]
        return m


@pytest.mark.parametrize("ready_prob", [1.0, 0.5])
def test_two_buffers_the_select_picks_one_behind_the_landing_registers(ready_prob):
    # both buffers hold entries and both memories answer every read; the one-hot select alone decides
    # whose words become events, phase after phase
    P = 4
    rng = random.Random(5)
    content = [[(g, rng.randrange(1, 16), None) for g in range(n)] for n in (5, 3)]
    rig = Rig2(P, 8)
    got = {}

    async def bench(ctx):
        for k, entries in enumerate(content):
            for grp, mask, _ in entries:
                ctx.set(rig.bufs[k].append, 1)
                ctx.set(rig.bufs[k].entry, {"group": grp, "mask": mask})
                await ctx.tick()
            ctx.set(rig.bufs[k].append, 0)
        for k in (1, 0, 1):
            ctx.set(rig.rdr.rd_sel, 1 << k)
            ctx.set(rig.rdr.count, len(content[k]))
            ctx.set(rig.rdr.groups, 2)
            ctx.set(rig.rdr.min_group_cycles, 1)
            ctx.set(rig.rdr.start, 1)
            await ctx.tick()
            ctx.set(rig.rdr.start, 0)
            out = got.setdefault(k, [])
            for _ in range(200):
                ready = rng.random() < ready_prob
                ctx.set(rig.rdr.events.ready, ready)
                if ctx.get(rig.rdr.events.valid) and ready:
                    e = ctx.get(rig.rdr.events.payload)
                    out.append((e.index, e.payload, e.group, e.first, e.last, e.null, e.mask))
                await ctx.tick()
                if not ctx.get(rig.rdr.busy):
                    break

    sim = Simulator(rig)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert got[0] == reference(content[0], P, 2, 0)
    assert got[1] == reference(content[1], P, 2, 0) * 2

