"""The conv2d / maxpool2d parts of issue 18, each alone in the Amaranth simulator.

Each part is checked against a plain-Python reference written here from docs/spec.md section 3
("conv2d and maxpool2d dataflow"), not from the part's code, with random valid/ready stalls on every
stream (nothing lost, nothing duplicated) and its latency checked against golden.perf's constants:

- ``ConvAddressGen``: every event (c, y, x) becomes one op per valid kernel offset (ky outer, kx
  inner) and channel group (og innermost), weight word ``wbase + ((og*C + c)*K + ky)*K + kx`` and
  accumulator word ``(og*Ho + oy)*Wo + ox``; an event reaching no output gives one null op. Random
  K, S, padding, non-square maps, channel counts not multiples of P, two layers; without stalls the
  first op comes ``ACCUMULATE_STAGE - MEM_READ_LATENCY`` cycles after its event, the ops follow one
  per cycle with no bubble, and a step's op count is golden.perf's ``Gc*X + Z``.
- ``AccumulatorMemory``: random op sequences (add, OR, max, sweep, clear) crowded onto a few words,
  with and without bubbles, against a dict; every old word as if each op ran alone after the previous
  one (forwarding), a sweep's word ``MEM_READ_LATENCY`` cycles after its op, ``forwarded`` exactly
  when one of the three ops before it hit the same word, and the read and write increments.
- ``PoolScatter``: each event (c, y, x) becomes one op on word (c // P, y // K, x // K), the lanes of its
  mask (one channel, or a whole entry's):
  OR of the spike bit (rate) or the train (stcb), max with t (tsc OFF), a null op for a tsc ON;
  random stalls, ``ACCUMULATE_STAGE - MEM_READ_LATENCY`` cycles without them.
- ``PoolScatter`` + ``AccumulatorMemory`` + ``PoolSweep``, a whole maxpool2d layer over every step:
  the entries are the OR pooling of each step's map (rate), of the trains (stcb), and the stored
  values the max of the window's values (tsc), entries ``ENTRY_LATENCY`` cycles after their sweep op,
  and the accumulator reads and writes equal golden.perf's counters of the same activity.
- ``SweepGen``: every output word in address order, its packed index, channel group and flags, one
  word every ``spacing`` cycles (1, or stcb's ``T*taps``), against a reference of the spec's order.
- Each part converts to Verilog on its own and passes ``verilator --lint-only -Wall`` with the
  project's waivers.
"""

from __future__ import annotations

import gc
import random
import warnings

import numpy as np
import pytest
from amaranth import Elaboratable, Module, Mux, Signal
from amaranth.back import verilog
from amaranth.hdl import UnusedElaboratable
from amaranth.lib import data
from amaranth.sim import Simulator

from golden import Conv2d, Dense, MaxPool2d, Model, perf
from hw.accmem import AccKind, AccumulatorMemory
from hw.conv_addrgen import ConvAddressGen, ConvLayerGeom
from hw.pool import PoolLayerGeom, PoolScatter, PoolSweep
from hw.sweep import SweepGen, SweepLayer
from sim.toolchain import lint

# ---------------------------------------------------------------------------------------------------
# helpers


def py(value):
    """A simulator value as plain Python (lists for arrays, dicts for structs)."""
    if isinstance(value, data.Const):
        layout = value.shape()
        if isinstance(layout, data.ArrayLayout):
            return [py(value[i]) for i in range(layout.length)]
        return {name: py(value[name]) for name, _ in layout}
    return value


def run_streams(dut, inputs, *, sink, in_prob=1.0, out_prob=1.0, seed=0, extra=None, max_cycles=100_000,
                source="events", probes=None):
    """Offer ``inputs`` (payload dicts) on ``dut.<source>`` and take what comes out of ``sink`` (a stream),
    with the producer's valid high with probability ``in_prob`` and the consumer's ready with
    ``out_prob`` in each cycle. ``extra``: constant inputs. Returns the accepted outputs as (cycle,
    payload), the cycle each input was accepted, and the sampled ``probes`` of every cycle."""
    rng = random.Random(seed)
    src = getattr(dut, source)
    got, taken, trace = [], [], []
    expected_out = []

    async def bench(ctx):
        for name, value in (extra or {}).items():
            ctx.set(getattr(dut, name), value)
        await ctx.tick()         # a phase's layer is set a cycle (in the core: LAYER_SETUP) before its events
        i, cycle, idle = 0, 0, 0
        while cycle < max_cycles:
            offer = i < len(inputs) and rng.random() < in_prob
            ctx.set(src.valid, int(offer))
            if i < len(inputs):
                ctx.set(src.payload, inputs[i])
            take = rng.random() < out_prob
            ctx.set(sink.ready, int(take))
            if offer and ctx.get(src.ready):
                taken.append(cycle)
                i += 1
            if take and ctx.get(sink.valid):
                got.append((cycle, py(ctx.get(sink.payload))))
            if probes:
                trace.append({k: py(ctx.get(v)) for k, v in probes.items()})
            await ctx.tick()
            cycle += 1
            idle = idle + 1 if i == len(inputs) and not ctx.get(sink.valid) else 0
            if idle > 8:
                break
        expected_out.append(cycle)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert expected_out and expected_out[0] < max_cycles, "the part stopped making progress"
    return got, taken, trace


# ---------------------------------------------------------------------------------------------------
# ConvAddressGen


def reference_ops(geom: ConvLayerGeom, P: int, zero: int, c: int, y: int, x: int, payload: int = 0) -> list[dict]:
    """The ops of one event, straight from the spec's definitions (a search over every offset)."""
    (C, H, W), (Co, Ho, Wo), K, S, p = geom.in_shape, geom.out_shape, geom.kernel, geom.stride, geom.padding
    Gc = -(-Co // P)
    ops = []
    for ky in range(K):
        for kx in range(K):
            dy, dx = y + p - ky, x + p - kx
            if dy % S or dx % S:
                continue
            oy, ox = dy // S, dx // S
            if not (0 <= oy < Ho and 0 <= ox < Wo):
                continue
            for og in range(Gc):
                ops.append({"waddr": geom.wbase + ((og * C + c) * K + ky) * K + kx,
                            "aaddr": (og * Ho + oy) * Wo + ox, "null": 0, "payload": payload})
    if not ops:
        ops = [{"waddr": zero, "aaddr": 0, "null": 1, "payload": payload}]
    for i, op in enumerate(ops):
        op["first"], op["last"] = int(i == 0), int(i == len(ops) - 1)
    return ops


def random_conv(rng, wbase=0):
    """A random conv geometry: K 1..5, S 1..2, any legal padding, non-square maps, odd channel counts."""
    K, S = rng.randint(1, 5), rng.randint(1, 2)
    p = rng.randint(0, K - 1)
    H = rng.randint(max(1, K - 2 * p), 9)
    W = rng.randint(max(1, K - 2 * p), 9)
    C, Co = rng.randint(1, 5), rng.randint(1, 11)
    layer = Conv2d(np.zeros((Co, C, K, K), np.int64), in_shape=(C, H, W), stride=S, padding=p)
    return layer, ConvLayerGeom.of(layer, wbase)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("P", [1, 2, 4])
def test_conv_addrgen_ops_under_random_stalls(P, seed):
    rng = random.Random(1000 * P + seed)
    l0, g0 = random_conv(rng)
    l1, g1 = random_conv(rng, wbase=g0.weight_words(P))
    zero = g1.wbase + g1.weight_words(P)
    pw = 3
    agen = ConvAddressGen(layers=[g0, g1], lanes=P, zero_word=zero, payload_bits=pw)
    for li, geom in enumerate((g0, g1)):
        (C, H, W) = geom.in_shape
        # every pixel of every channel once, then random repeats (same-address runs), in random order
        evs = [(c, y, x) for c in range(C) for y in range(H) for x in range(W)]
        evs += [rng.choice(evs) for _ in range(len(evs) // 2)]
        rng.shuffle(evs)
        inputs = [{"c": c, "y": y, "x": x, "payload": rng.randrange(1 << pw)} for c, y, x in evs]
        expect = [op for e in inputs for op in reference_ops(geom, P, zero, e["c"], e["y"], e["x"], e["payload"])]
        got, taken, _ = run_streams(agen, inputs, sink=agen.ops, in_prob=0.7, out_prob=0.5, seed=seed + 10 * li,
                                    extra={"layer": li})
        assert len(taken) == len(inputs)
        assert [op for _, op in got] == expect


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("P", [1, 4])
def test_conv_addrgen_latency_and_op_count_match_golden_perf(P, seed):
    rng = random.Random(7000 + 100 * P + seed)
    layer, geom = random_conv(rng)
    zero = geom.weight_words(P)
    agen = ConvAddressGen(layers=[geom], lanes=P, zero_word=zero)
    assert agen.LATENCY == perf.ACCUMULATE_STAGE - perf.MEM_READ_LATENCY + 1
    # the events of one step: a random spike map in the reader's order (c, y, x)
    C, H, W = geom.in_shape
    spikes = np.array([rng.random() < 0.4 for _ in range(C * H * W)])
    spikes[rng.randrange(spikes.size)] = True
    events = [{"c": i // (H * W), "y": i // W % H, "x": i % W, "payload": 0} for i in np.flatnonzero(spikes)]
    got, taken, trace = run_streams(agen, events, sink=agen.ops,
                                    probes={"busy": agen.busy, "ready": agen.events.ready})
    X, Z = perf.conv_taps(layer, spikes[None, :])
    Gc = geom.channel_groups(P)
    assert len(got) == Gc * int(X[0]) + int(Z[0])                     # golden.perf's scatter cycles
    cycles = [c for c, _ in got]
    # the first op LATENCY cycles after the first event, then one per cycle, no bubble between events
    assert cycles[0] == taken[0] + agen.LATENCY
    assert cycles == list(range(cycles[0], cycles[0] + len(got)))
    firsts = [c for c, op in got if op["first"]]
    assert len(firsts) == len(taken) and all(f >= t + agen.LATENCY for f, t in zip(firsts, taken))
    assert [r["busy"] for r in trace[cycles[0]:cycles[-1] + 1]] == [1] * len(got)
    assert not trace[cycles[-1] + 1]["busy"]
    # one event is held ahead of the one expanding, never more: an event is taken only once the one
    # two before it has started
    assert all(taken[k] >= firsts[k - 2] for k in range(2, len(taken)))


# fixed geometries for the edges: inputs no output uses (null ops), a kernel larger than the map with
# padding, stride 2 with every parity, P not dividing Co, and one channel group with events of one kx
# and two ky (the op's `last` flag, set when the event is taken)
EDGE_GEOMS = [((2, 4, 5), 1, 2, 0, 3), ((1, 3, 2), 5, 1, 2, 5), ((3, 7, 6), 3, 2, 1, 9), ((2, 5, 5), 4, 2, 3, 2),
              ((1, 6, 6), 3, 2, 1, 1)]


@pytest.mark.parametrize("shape, K, S, p, Co", EDGE_GEOMS)
def test_conv_addrgen_edge_geometries(shape, K, S, p, Co):
    P = 4
    layer = Conv2d(np.zeros((Co, shape[0], K, K), np.int64), in_shape=shape, stride=S, padding=p)
    geom = ConvLayerGeom.of(layer, wbase=5)
    zero = 5 + geom.weight_words(P)
    agen = ConvAddressGen(layers=[geom], lanes=P, zero_word=zero)
    C, H, W = shape
    inputs = [{"c": c, "y": y, "x": x, "payload": 0} for c in range(C) for y in range(H) for x in range(W)]
    expect = [op for e in inputs for op in reference_ops(geom, P, zero, e["c"], e["y"], e["x"])]
    got, _, _ = run_streams(agen, inputs, sink=agen.ops, in_prob=0.8, out_prob=0.6, seed=K)
    assert [op for _, op in got] == expect
    # golden's count of the inputs no output uses is the count of null ops
    X, Z = perf.conv_taps(layer, np.ones((1, C * H * W), bool))
    assert sum(op["null"] for _, op in got) == int(Z[0])
    assert len(got) == geom.channel_groups(P) * int(X[0]) + int(Z[0])


def test_conv_addrgen_rejects_bad_arguments():
    g = ConvLayerGeom((1, 3, 3), (2, 3, 3), 3, 1, 1)
    bad = [(dict(layers=[g], lanes=0, zero_word=0), "lanes must be a positive integer"),
           (dict(layers=[], lanes=1, zero_word=0), "layers must be"),
           (dict(layers=[g], lanes=1, zero_word=-1), "zero_word must be")]
    with warnings.catch_warnings():       # the refused object is never elaborated, on purpose
        warnings.simplefilter("ignore", UnusedElaboratable)
        for kw, msg in bad:
            with pytest.raises(TypeError, match=msg):
                ConvAddressGen(**kw)
        gc.collect()
    with pytest.raises(ValueError, match=r"out_shape \[2, 2, 3\] does not follow"):
        ConvLayerGeom((1, 3, 3), (2, 2, 3), 3, 1, 1)
    with pytest.raises(ValueError, match="0 <= p < K"):
        ConvLayerGeom((1, 3, 3), (2, 3, 3), 3, 1, 3)


# ---------------------------------------------------------------------------------------------------
# AccumulatorMemory


def wrap(v: int, bits: int) -> int:
    """``v`` as a two's-complement ``bits``-bit value."""
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


def acc_reference(ops, lanes: int, width: int):
    """A dict of words updated by each op in turn (no pipeline at all): each op's old word, and the
    words at the end."""
    mem, olds = {}, []
    for op in ops:
        old = mem.get(op["addr"], [0] * lanes)
        olds.append(old)
        k, t = op["kind"], op["terms"]
        if k == AccKind.ADD:
            new = [wrap(a + b, width) for a, b in zip(old, t)]
        elif k == AccKind.OR:
            new = [wrap((a | b) & ((1 << width) - 1), width) for a, b in zip(old, t)]
        elif k == AccKind.MAX:
            new = [max(a, b) for a, b in zip(old, t)]
        else:
            new = [0] * lanes
        mem[op["addr"]] = new
    return olds, mem


def drive_acc(dut, frames):
    """One frame per cycle (an op dict, or None for a bubble); samples every output in every cycle."""
    trace = []

    async def bench(ctx):
        for frame in frames:
            ctx.set(dut.ops.valid, int(frame is not None))
            if frame is not None:
                ctx.set(dut.ops.payload, frame)
            trace.append({"swept": ctx.get(dut.swept.valid), "sw": py(ctx.get(dut.swept.payload)),
                          "fwd": ctx.get(dut.forwarded), "merged": ctx.get(dut.merged), "rd": ctx.get(dut.acc_read), "wr": ctx.get(dut.acc_write)})
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return trace


def expand_slot_op(op, slots, width, term_bits):
    """A slotted op (a term and a ``slots``-bit train per lane) as a term per element, for acc_reference:
    ADD: lane g's term in the elements of its set train bits; OR: lane g's train in the low ``slots``
    bits of its group's elements (element t of the group holds bits t*width.. of it)."""
    out = []
    for g, (term, train) in enumerate(zip(op["terms"], op["trains"])):
        for t in range(slots):
            if op["kind"] == AccKind.OR:
                out.append(train >> (t * width) & ((1 << width) - 1))
            else:
                out.append(term if train >> t & 1 else 0)
    return dict(op, terms=out)


ALL_KINDS = tuple(AccKind)


@pytest.mark.parametrize("lanes, width, slots, kinds", [
    (1, 4, None, ALL_KINDS), (3, 5, None, ALL_KINDS), (8, 12, None, ALL_KINDS),
    (3, 5, None, (AccKind.ADD, AccKind.SWEEP)),                # a rate conv net without pools: no OR, no MAX
    (3, 4, 1, (AccKind.ADD, AccKind.OR, AccKind.SWEEP)),       # stcb at T = 1: a one-bit train per lane
    (8, 5, 4, (AccKind.ADD, AccKind.OR, AccKind.SWEEP, AccKind.CLEAR)),     # stcb: two lanes of 4 slots
    (12, 3, 6, (AccKind.ADD, AccKind.OR, AccKind.SWEEP)),      # a train wider than a slot: over 2 elements
])
@pytest.mark.parametrize("bubbles", [0.0, 0.3])
@pytest.mark.parametrize("collisions", ["old", "garbage"])
def test_accmem_read_modify_write_with_forwarding(lanes, width, slots, kinds, bubbles, collisions):
    """``collisions``: what the block RAM returns for a read of the word written in the same cycle: the
    old word (the simulator's model), or a garbage word (the hardware's is undefined: the memory is
    ``no_rw_check``). The results must not depend on it."""
    rng = random.Random(lanes * 100 + width + 7 * (slots or 0) + len(kinds) + int(bubbles * 10))
    depth = 6
    term_bits = max(2, width - 1)
    garbage = int("10" * lanes * width, 2) & ((1 << lanes * width) - 1) if collisions == "garbage" else None
    acc = AccumulatorMemory(lanes=lanes, width=width, depth=depth, kinds=kinds, slots=slots,
                            term_bits=term_bits if slots else None, collision_word=garbage)
    assert acc.LATENCY == perf.MEM_READ_LATENCY
    tb = term_bits if slots else width
    lo, hi = -(1 << (tb - 1)), (1 << (tb - 1)) - 1
    G = lanes // (slots or 1)
    pick_kinds = [k for k in [AccKind.ADD] * 6 + [AccKind.OR, AccKind.MAX, AccKind.SWEEP, AccKind.SWEEP,
                                                   AccKind.CLEAR] if k in kinds]

    def terms():
        if not slots:
            return {"terms": [rng.randint(lo, hi) for _ in range(lanes)]}
        return {"terms": [rng.randint(lo, hi) for _ in range(G)], "trains": [rng.randrange(1 << slots) for _ in range(G)]}

    ops = []
    for _ in range(600):
        addr = rng.choice([0, 0, 0, 1, 1, rng.randrange(depth)])      # mostly two words: many hazards
        ops.append({"addr": addr, "kind": rng.choice(pick_kinds), **terms()})
    # read every word back, twice: the second round sees the zeros the first wrote
    zero = {"terms": [0] * G, "trains": [0] * G} if slots else {"terms": [0] * lanes}
    ops += [{"addr": a, "kind": AccKind.SWEEP, **zero} for a in list(range(depth)) * 2]
    frames, issued = [], []
    for op in ops:
        while rng.random() < bubbles:
            frames.append(None)
        issued.append(len(frames))
        frames.append(op)
    frames += [None] * (acc.LATENCY + 2)
    trace = drive_acc(acc, frames)
    if slots:
        ops = [expand_slot_op(op, slots, width, term_bits) for op in ops]
    olds, _ = acc_reference(ops, lanes, width)
    L = acc.LATENCY
    # the sweeps: each in its cycle + LATENCY, with the word left by every earlier op
    expect_sweeps = [(c + L, {"addr": op["addr"], "word": old}) for c, op, old in zip(issued, ops, olds)
                     if op["kind"] == AccKind.SWEEP]
    got_sweeps = [(n, row["sw"]) for n, row in enumerate(trace) if row["swept"]]
    assert got_sweeps == expect_sweeps
    # forwarded: one of the ops one, two or three cycles earlier wrote the same word (not for a clear):
    # their new words reach the block RAM 2, 3 and 4 cycles after them, too late for this op's read
    by_cycle = {c: op for c, op in zip(issued, ops)}
    expect_fwd = [n for n, _ in enumerate(trace)
                  if (op := by_cycle.get(n - L)) is not None and op["kind"] != AccKind.CLEAR
                  and any(by_cycle.get(n - L - d, {}).get("addr") == op["addr"] for d in (1, 2, 3))]
    assert [n for n, row in enumerate(trace) if row["fwd"]] == expect_fwd
    assert len(expect_fwd) > len(ops) // 4                               # the hazards were exercised
    # reads of the word being written: the op three cycles earlier (its new word reaches the write port
    # then) on the same address
    collided = [c for c, op in by_cycle.items() if by_cycle.get(c - L - 1, {}).get("addr") == op["addr"]]
    assert len(collided) > len(ops) // 20
    # merged (coverage): an OR sharing a set bit with its old word, or a MAX with a lane where both are
    # non-zero, a cycle after the op's write
    mask = (1 << width) - 1
    expect_merged = [c + L + 1 for c, op, old in zip(issued, ops, olds)
                     if (op["kind"] == AccKind.OR and any((a & b & mask) for a, b in zip(old, op["terms"])))
                     or (op["kind"] == AccKind.MAX and any(a and b for a, b in zip(old, op["terms"])))]
    assert [n for n, row in enumerate(trace) if row["merged"]] == expect_merged
    assert bool(expect_merged) == (AccKind.OR in kinds)
    # the counter increments: a read per op but a clear, in its cycle; a write per op, LATENCY later
    assert [n for n, row in enumerate(trace) if row["rd"]] == [c for c, op in zip(issued, ops)
                                                               if op["kind"] != AccKind.CLEAR]
    assert [n for n, row in enumerate(trace) if row["wr"]] == [c + L for c in issued]


def test_accmem_block_ram_is_marked_no_rw_check():
    """The Verilog marks the accumulator's memory ``no_rw_check`` (forwarding makes a colliding read
    don't-care, see the garbage variant above); without it Yosys builds read-first logic around it."""
    acc = AccumulatorMemory(lanes=8, width=12, depth=6, slots=8, term_bits=10,
                            kinds=(AccKind.ADD, AccKind.OR, AccKind.SWEEP))
    ports = [v for _, _, v in acc.signature.flatten(acc) if isinstance(v, Signal)]
    text = verilog.convert(acc, name="acc", ports=ports)
    assert text.count("(* no_rw_check") == 1


# ---------------------------------------------------------------------------------------------------
# maxpool2d: PoolScatter, PoolSweep


def pool_width(coding, T):
    return {"rate": 1, "stcb": T, "tsc": (T - 1).bit_length() + 1}[coding]


def random_pool(rng):
    K = rng.randint(1, 3)
    C, H, W = rng.randint(1, 7), K * rng.randint(1, 4), K * rng.randint(1, 4)
    return PoolLayerGeom((C, H, W), K)


def reference_pool_op(geom, P, coding, t, c, y, x, train=0, mask=None):
    """The op of one pool event, from the spec: word (c // P, y // K, x // K), the lanes of ``mask``
    (default: lane c mod P alone; rate and tsc take a whole entry, the set lanes of its word)."""
    _, Hp, Wp = geom.out_shape
    K = geom.kernel
    addr = ((c // P) * Hp + y // K) * Wp + x // K
    value = {"rate": 1, "stcb": train, "tsc": t}[coding]
    mask = 1 << (c % P) if mask is None else mask
    terms = [value if mask >> p & 1 else 0 for p in range(P)]
    kind = AccKind.MAX if coding == "tsc" else AccKind.OR
    return {"addr": addr, "kind": kind, "terms": terms, "null": int(coding == "tsc" and t == 0)}


def signed_lanes(values, width):
    return [wrap(v, width) for v in values]


@pytest.mark.parametrize("coding", ["rate", "stcb", "tsc"])
@pytest.mark.parametrize("P", [1, 4])
def test_pool_scatter_ops_under_random_stalls(coding, P):
    rng = random.Random(hash((coding, P)) % 1000)
    T = 5
    geoms = [random_pool(rng), random_pool(rng)]
    width = pool_width(coding, T)
    sc = PoolScatter(layers=geoms, lanes=P, coding=coding, T=T, width=width, addr_bits=8)
    assert sc.LATENCY == perf.ACCUMULATE_STAGE - perf.MEM_READ_LATENCY
    for li, geom in enumerate(geoms):
        C, H, W = geom.in_shape
        t = rng.randrange(T) if coding == "tsc" else 0
        evs = []
        for _ in range(60):
            c, y, x, tr = rng.randrange(C), rng.randrange(H), rng.randrange(W), rng.randrange(1, 1 << T)
            mask = 1 << (c % P)
            if coding != "stcb" and rng.random() < 0.5:
                # a whole entry: c is its lowest lane, the mask any set of the word's real lanes above it
                lanes = min(P, C - (c - c % P))
                mask |= sum(rng.getrandbits(1) << p for p in range(c % P, lanes))
            evs.append((c, y, x, tr, mask))
        inputs = [{"c": c, "y": y, "x": x, "payload": tr if coding == "stcb" else 0, "mask": mask}
                  for c, y, x, tr, mask in evs]
        expect = []
        for c, y, x, tr, mask in evs:
            op = reference_pool_op(geom, P, coding, t, c, y, x, tr, mask)
            op["terms"] = signed_lanes(op["terms"], width)
            expect.append(op)
        got, taken, _ = run_streams(sc, inputs, sink=sc.ops, in_prob=0.7, out_prob=0.5, seed=li,
                                    extra={"layer": li, "t": t})
        assert [op for _, op in got] == expect
        # without stalls: the op LATENCY cycles after its event, one per cycle
        got, taken, _ = run_streams(sc, inputs, sink=sc.ops, extra={"layer": li, "t": t})
        assert [c for c, _ in got] == [c + sc.LATENCY for c in taken] == list(range(sc.LATENCY, len(evs) + 1))


class PoolLayer(Elaboratable):
    """A maxpool2d layer as the core will wire it: the scatter's ops (null ops dropped) or the sweep's
    into one accumulator memory, its swept words back into the sweep."""

    def __init__(self, geom, P, coding, T):
        width = pool_width(coding, T)
        self.acc = AccumulatorMemory(lanes=P, width=width, depth=geom.words(P))
        kw = dict(layers=[geom], lanes=P, coding=coding, T=T, width=width, addr_bits=self.acc.addr_bits)
        self.sc, self.sw = PoolScatter(**kw), PoolSweep(**kw)

    def elaborate(self, platform):
        m = Module()
        m.submodules.acc, m.submodules.sc, m.submodules.sw = acc, sc, sw = self.acc, self.sc, self.sw
        use_sc = sc.ops.valid
        m.d.comb += [sc.ops.ready.eq(1), sw.ops.ready.eq(~use_sc),
                     acc.ops.valid.eq(Mux(use_sc, ~sc.ops.payload.null, sw.ops.valid))]
        for f in ("addr", "kind", "terms"):
            m.d.comb += getattr(acc.ops.payload, f).eq(Mux(use_sc, getattr(sc.ops.payload, f),
                                                           getattr(sw.ops.payload, f)))
        m.d.comb += [sw.swept.valid.eq(acc.swept.valid), sw.swept.payload.eq(acc.swept.payload)]
        return m


def run_pool_layer(dut, phases):
    """phases: ("scatter", events, t) or ("sweep", clear). Returns per-cycle samples."""
    trace = []

    async def bench(ctx):
        async def cycle():
            trace.append({"ent": ctx.get(dut.sw.entries.valid), "entry": py(ctx.get(dut.sw.entries.payload)),
                          "op": ctx.get(dut.sw.ops.valid) and ctx.get(dut.sw.ops.ready),
                          "op_addr": ctx.get(dut.sw.ops.payload.addr),
                          "swept": ctx.get(dut.acc.swept.valid), "word": py(ctx.get(dut.acc.swept.payload)),
                          "rd": ctx.get(dut.acc.acc_read), "wr": ctx.get(dut.acc.acc_write),
                          "taken": ctx.get(dut.sc.events.valid) and ctx.get(dut.sc.events.ready)})
            await ctx.tick()

        await ctx.tick()            # the layer is set a cycle before its first event (its constants register)
        for phase in phases:
            if phase[0] == "scatter":
                _, events, t = phase
                ctx.set(dut.sc.t, t)
                for ev in events:
                    ctx.set(dut.sc.events.valid, 1)
                    ctx.set(dut.sc.events.payload, ev)
                    assert ctx.get(dut.sc.events.ready)
                    await cycle()
                ctx.set(dut.sc.events.valid, 0)
            else:
                ctx.set(dut.sw.start, 1)
                ctx.set(dut.sw.clear, int(phase[1]))
                await cycle()
                ctx.set(dut.sw.start, 0)
                while ctx.get(dut.sw.busy):
                    await cycle()
            for _ in range(perf.layer_drain("rate", "rate")):       # the drain the spec allows
                await cycle()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return trace


def pool_entries(events, P, rng):
    """Events (c, y, x) as the core's reader gives them to a rate or tsc pool: one per event-buffer
    entry (the channels c // P of one position), c its lowest lane and ``mask`` its set lanes; in a
    random order of entries."""
    words = {}
    for c, y, x in events:
        words[(c // P, y, x)] = words.get((c // P, y, x), 0) | 1 << (c % P)
    out = [{"c": og * P + (mask & -mask).bit_length() - 1, "y": y, "x": x, "payload": 0, "mask": mask}
           for (og, y, x), mask in words.items()]
    rng.shuffle(out)
    return out


def golden_pool_counters(geom, P, coding, T, ev_in, ev_out):
    """golden.perf's counters of a maxpool2d layer 0 (then a dense layer) with this activity."""
    pool = MaxPool2d(geom.kernel, in_shape=geom.in_shape)
    model = Model([pool, Dense(np.zeros((2, pool.n_out), np.int64))], coding=coding, T=T,
                  encoding="tsc" if coding == "tsc" else "rate", input_max=T,
                  readout="membrane" if coding == "tsc" else "count")
    act = perf.Activity(inputs=ev_in[None], layers=[ev_out[None], np.zeros((1, T, 2), bool)])
    return perf.count(model, P, act)[1][0]


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("P", [1, 2, 4])
@pytest.mark.parametrize("coding", ["rate", "stcb", "tsc"])
def test_pool_layer_against_reference_and_golden_counters(coding, P, seed):
    rng = random.Random(hash((coding, P, seed)) % 10_000)
    geom, T = random_pool(rng), rng.randint(2, 5)
    C, H, W = geom.in_shape
    _, Hp, Wp = geom.out_shape
    K, N = geom.kernel, geom.words(P)
    dut = PoolLayer(geom, P, coding, T)
    density = rng.choice([0.05, 0.3, 0.7])
    idx = [(c, y, x) for c in range(C) for y in range(H) for x in range(W)]
    if coding == "tsc":
        # two windows (two samples): the first leaves its values behind, the second's clear sweep at
        # t = 0 must remove them
        phases, reads, writes = [], 0, 0
        for _ in range(2):
            q = {i: (rng.randrange(T) if rng.random() < density * 1.5 else 0) for i in idx}
            # t = 0 clears the words, then each step's events: ON at t = 0 for q >= 1, OFF at t = q
            phases.append(("sweep", True))
            ev_in = np.zeros((T, C * H * W), bool)
            for t in range(T):
                evs = [i for i in idx if (t == 0 and q[i] >= 1) or (t >= 1 and q[i] == t)]
                for c, y, x in evs:
                    ev_in[t, (c * H + y) * W + x] = True
                phases.append(("scatter", pool_entries(evs, P, rng), t))
            # golden: the pool's state reads (OFF events) and writes (clear sweep + OFF events), less
            # the generator's share (N*T each), which is not this part's
            g = golden_pool_counters(geom, P, coding, T, ev_in, np.zeros((T, C * Hp * Wp), bool))
            reads, writes = reads + g["state_reads"] - N * T, writes + g["state_writes"] - N * T
        phases.append(("sweep", False))                    # read the stored values back (test only)
        trace = run_pool_layer(dut, phases)
        words = [row["word"] for row in trace if row["swept"]]
        assert [w["addr"] for w in words] == list(range(N))
        for w in words:
            og, oy, ox = w["addr"] // (Hp * Wp), w["addr"] // Wp % Hp, w["addr"] % Wp
            for p in range(P):
                c = og * P + p
                expect = max((q[(c, oy * K + dy, ox * K + dx)] for dy in range(K) for dx in range(K)),
                             default=0) if c < C else 0
                assert w["word"][p] == expect, (w["addr"], p)
        assert sum(row["rd"] for row in trace) - N == reads         # minus the test's read-back sweep
        assert sum(row["wr"] for row in trace) - N == writes
        return
    steps = 1 if coding == "stcb" else T
    trains = {i: (rng.randrange(1 << T) if rng.random() < density else 0) for i in idx}
    ev_in = np.array([[bool(trains[i] >> t & 1) for i in idx] for t in range(T)])
    phases, expect_entries = [], []
    for s in range(steps):
        if coding == "stcb":            # one event per active train, its lane alone
            active = [i for i in idx if trains[i]]
            evs = [{"c": c, "y": y, "x": x, "payload": trains[(c, y, x)], "mask": 1 << (c % P)} for c, y, x in active]
            rng.shuffle(evs)
        else:
            evs = pool_entries([i for i in idx if trains[i] >> s & 1], P, rng)
        phases += [("scatter", evs, 0), ("sweep", False)]
        for a in range(N):
            og, oy, ox = a // (Hp * Wp), a // Wp % Hp, a % Wp
            lanes = []
            for p in range(P):
                c = og * P + p
                v = 0
                if c < C:
                    for dy in range(K):
                        for dx in range(K):
                            tr = trains[(c, oy * K + dy, ox * K + dx)]
                            v |= tr if coding == "stcb" else tr >> s & 1
                lanes.append(v)
            if any(lanes):
                e = {"group": a, "mask": sum(1 << p for p, v in enumerate(lanes) if v)}
                if coding == "stcb":
                    e["payload"] = lanes
                expect_entries.append(e)
    trace = run_pool_layer(dut, phases)
    got = [row["entry"] for row in trace if row["ent"]]
    assert got == expect_entries
    # each entry ENTRY_LATENCY cycles after its word's sweep op, and within the drain
    op_cycles = [n for n, row in enumerate(trace) if row["op"]]
    ent_cycles = [n for n, row in enumerate(trace) if row["ent"]]
    lat = dut.sw.ENTRY_LATENCY
    assert lat == perf.MEM_READ_LATENCY + 1 <= perf.layer_drain(coding, "rate")
    sweep_ops = [(n, trace[n]["op_addr"]) for n in op_cycles]
    assert len(sweep_ops) == N * steps
    by_step = [sweep_ops[k * N:(k + 1) * N] for k in range(steps)]
    assert all([a for _, a in ops] == list(range(N)) for ops in by_step)
    assert all(b - a == 1 for ops in by_step for (a, _), (b, _) in zip(ops, ops[1:]))   # one per cycle
    op_at = dict(sweep_ops)
    assert all(op_at.get(n - lat) == trace[n]["entry"]["group"] for n in ent_cycles)
    # golden.perf's accumulator counters for the same activity
    pooled = np.array([[any(ev_in[t, (c * H + y) * W + x] for y in range(oy * K, oy * K + K)
                            for x in range(ox * K, ox * K + K))
                        for c in range(C) for oy in range(Hp) for ox in range(Wp)] for t in range(T)])
    g = golden_pool_counters(geom, P, coding, T, ev_in, pooled)
    assert sum(row["rd"] for row in trace) == g["acc_reads"]
    assert sum(row["wr"] for row in trace) == g["acc_writes"]


# ---------------------------------------------------------------------------------------------------
# every part alone through Verilog and the linter


def lint_parts():
    g0 = ConvLayerGeom((3, 8, 7), (5, 8, 7), 3, 1, 1, 0)
    g1 = ConvLayerGeom((5, 8, 7), (6, 4, 4), 3, 2, 1, g0.weight_words(4))
    pool = [PoolLayerGeom((5, 8, 8), 2), PoolLayerGeom((6, 4, 4), 4)]
    kw = dict(layers=pool, lanes=4, coding="stcb", T=4, width=4, addr_bits=7)
    return {"conv_addrgen": lambda: ConvAddressGen(layers=[g0, g1], lanes=4, payload_bits=2,
                                                   zero_word=g1.wbase + g1.weight_words(4)),
            "accmem": lambda: AccumulatorMemory(lanes=4, width=10, depth=112),
            "pool_scatter": lambda: PoolScatter(**kw), "pool_sweep": lambda: PoolSweep(**kw),
            "sweep_gen": lambda: SweepGen([SweepLayer(2, 8, 7, 3, 3), SweepLayer(2, 4, 4, 2, 2)], packed_bits=8,
                                          max_spacing=24)}


@pytest.mark.parametrize("name", sorted(lint_parts()))
def test_part_lints_clean(name, tmp_path):
    part = lint_parts()[name]()
    # an always-ready stream's ready is a constant, not a port of the standalone part
    ports = [v for _, _, v in part.signature.flatten(part) if isinstance(v, Signal)]
    path = tmp_path / f"{name}.v"
    path.write_text(verilog.convert(part, name=name, ports=ports))
    r = lint(path, name)
    assert r.returncode == 0, r.stderr


# ---------------------------------------------------------------------------------------------------
# SweepGen: the fire sweep's word walker (docs/spec.md section 3), with the stcb spacing


def sweep_reference(layer, spacing: int) -> list:
    """The words of a sweep in address order, (cycle from start, w, packed, og, og_last, plane_end, last):
    w = (og*H + y)*W + x, packed = (og << (bx + by)) | (y << bx) | x, one every ``spacing`` cycles."""
    rows, w = [], 0
    for og in range(layer.groups):
        for y in range(layer.height):
            for x in range(layer.width):
                rows.append((w * spacing, w, (og << (layer.bx + layer.by)) | (y << layer.bx) | x, og,
                             int(og == layer.groups - 1), int(y == layer.height - 1 and x == layer.width - 1),
                             int(w == layer.words - 1)))
                w += 1
    return rows


@pytest.mark.parametrize("spacing", [1, 2, 5])
def test_sweep_gen_walks_every_word_at_its_spacing(spacing):
    # maps of one column, one row, one word and one channel group too: the walker's end flags of word 0
    # come from the layer alone
    layers = [SweepLayer(2, 3, 5, 3, 2), SweepLayer(3, 2, 2, 1, 1), SweepLayer(2, 3, 1, 1, 2), SweepLayer(1, 1, 4, 2, 1),
              SweepLayer(1, 1, 1, 1, 1), SweepLayer(3, 1, 1, 1, 1)]
    dut = SweepGen(layers, packed_bits=8, max_spacing=5)
    got = {}

    async def bench(ctx):
        for li, layer in enumerate(layers):
            ctx.set(dut.layer, li)
            ctx.set(dut.spacing, spacing)
            await ctx.tick()                          # idle: no word without a start
            assert not ctx.get(dut.valid)
            ctx.set(dut.start, 1)
            rows = []
            for cyc in range(layer.words * spacing + 4):
                if ctx.get(dut.valid):
                    rows.append((cyc, ctx.get(dut.word), ctx.get(dut.packed), ctx.get(dut.og), ctx.get(dut.og_last),
                                 ctx.get(dut.plane_end), ctx.get(dut.last)))
                await ctx.tick()
                ctx.set(dut.start, 0)
            got[li] = rows

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    for li, layer in enumerate(layers):
        assert got[li] == sweep_reference(layer, spacing), li


def sweeps_back_to_back(dut, layer_order, spacing=None):
    """Sweeps of ``dut`` over the layers of ``layer_order``, each set in its own start cycle and started in
    the cycle after the previous sweep's last word; returns each sweep's rows (cycle from its start,
    word, packed, og, og_last, plane_end, last), as :func:`sweep_reference` gives them."""
    got = []

    async def bench(ctx):
        if spacing is not None:
            ctx.set(dut.spacing, spacing)
        await ctx.tick()
        for li in layer_order:
            ctx.set(dut.layer, li)
            ctx.set(dut.start, 1)
            rows = []
            for cyc in range(10 ** 4):
                if ctx.get(dut.valid):
                    rows.append((cyc, ctx.get(dut.word), ctx.get(dut.packed), ctx.get(dut.og), ctx.get(dut.og_last),
                                 ctx.get(dut.plane_end), ctx.get(dut.last)))
                done = ctx.get(dut.valid) and ctx.get(dut.last)
                await ctx.tick()
                ctx.set(dut.start, 0)
                if done:
                    break
            got.append(rows)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return got


@pytest.mark.parametrize("spacing", [1, 3])
def test_sweep_gen_back_to_back_sweeps(spacing):
    """A sweep started in the cycle after the last word of the one before (the walker is back at word 0
    with that word, not a cycle later) walks the same words."""
    layer = SweepLayer(2, 2, 3, 2, 1)
    dut = SweepGen([layer], packed_bits=8, max_spacing=3)
    got = sweeps_back_to_back(dut, [0, 0, 0], spacing)
    ref = sweep_reference(layer, spacing)
    assert got[0] == ref
    assert got[1] == ref
    assert got[2] == ref


@pytest.mark.parametrize("ahead", [False, True])
def test_sweep_gen_layer_set_with_the_start(ahead):
    """Without ``layer_ahead`` the layer may change in the start cycle itself (the tsc generator's source
    map): every sweep walks its own layer's words, back to back. With ``layer_ahead`` that contract is
    not kept, and the test shows it (the sizes come a cycle late)."""
    layers = [SweepLayer(2, 3, 2, 1, 2), SweepLayer(1, 1, 1, 1, 1), SweepLayer(3, 2, 1, 1, 1)]
    order = [0, 1, 2, 0, 2, 1]
    dut = SweepGen(layers, packed_bits=8, layer_ahead=ahead)
    got = sweeps_back_to_back(dut, order)
    expect = [sweep_reference(layers[li], 1) for li in order]
    assert (got == expect) == (not ahead)


def test_sweep_gen_without_spacing_has_no_spacing_port():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        assert "spacing" not in SweepGen([SweepLayer(1, 2, 2, 1, 1)], packed_bits=3).signature.members
        with pytest.raises(TypeError, match="max_spacing must be a positive integer"):
            SweepGen([SweepLayer(1, 2, 2, 1, 1)], packed_bits=3, max_spacing=0)
        gc.collect()                      # the unused parts warn when collected: here, inside the filter
