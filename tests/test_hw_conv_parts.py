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
  when one of the two ops before it hit the same word, and the read and write increments.
"""

from __future__ import annotations

import gc
import random
import warnings

import numpy as np
import pytest
from amaranth.hdl import UnusedElaboratable
from amaranth.lib import data
from amaranth.sim import Simulator

from golden import Conv2d, perf
from hw.accmem import AccKind, AccumulatorMemory
from hw.conv_addrgen import ConvAddressGen, ConvLayerGeom

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
    assert agen.LATENCY == perf.ACCUMULATE_STAGE - perf.MEM_READ_LATENCY
    # the events of one step: a random spike map in the reader's order (c, y, x)
    C, H, W = geom.in_shape
    spikes = np.array([rng.random() < 0.4 for _ in range(C * H * W)])
    spikes[rng.randrange(spikes.size)] = True
    events = [{"c": i // (H * W), "y": i // W % H, "x": i % W, "payload": 0} for i in np.flatnonzero(spikes)]
    got, taken, trace = run_streams(agen, events, sink=agen.ops, probes={"busy": agen.busy})
    X, Z = perf.conv_taps(layer, spikes[None, :])
    Gc = geom.channel_groups(P)
    assert len(got) == Gc * int(X[0]) + int(Z[0])                     # golden.perf's scatter cycles
    cycles = [c for c, _ in got]
    # the first op LATENCY cycles after the first event, then one per cycle, no bubble between events
    assert cycles[0] == taken[0] + agen.LATENCY
    assert cycles == list(range(cycles[0], cycles[0] + len(got)))
    firsts = [c for c, op in got if op["first"]]
    assert firsts == [t + agen.LATENCY for t in taken]
    assert [r["busy"] for r in trace[cycles[0]:cycles[-1] + 1]] == [1] * len(got)
    assert not trace[cycles[-1] + 1]["busy"]


# fixed geometries for the edges: inputs no output uses (null ops), a kernel larger than the map with
# padding, stride 2 with every parity, and P not dividing Co
EDGE_GEOMS = [((2, 4, 5), 1, 2, 0, 3), ((1, 3, 2), 5, 1, 2, 5), ((3, 7, 6), 3, 2, 1, 9), ((2, 5, 5), 4, 2, 3, 2)]


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
                          "fwd": ctx.get(dut.forwarded), "rd": ctx.get(dut.acc_read), "wr": ctx.get(dut.acc_write)})
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return trace


@pytest.mark.parametrize("lanes, width", [(1, 4), (3, 5), (8, 12)])
@pytest.mark.parametrize("bubbles", [0.0, 0.3])
def test_accmem_read_modify_write_with_forwarding(lanes, width, bubbles):
    rng = random.Random(lanes * 100 + width + int(bubbles * 10))
    depth = 6
    acc = AccumulatorMemory(lanes=lanes, width=width, depth=depth)
    assert acc.LATENCY == perf.MEM_READ_LATENCY
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    kinds = [AccKind.ADD] * 6 + [AccKind.OR, AccKind.MAX, AccKind.SWEEP, AccKind.SWEEP, AccKind.CLEAR]
    ops = []
    for _ in range(600):
        addr = rng.choice([0, 0, 0, 1, 1, rng.randrange(depth)])      # mostly two words: many hazards
        ops.append({"addr": addr, "kind": rng.choice(kinds), "terms": [rng.randint(lo, hi) for _ in range(lanes)]})
    # read every word back, twice: the second round sees the zeros the first wrote
    ops += [{"addr": a, "kind": AccKind.SWEEP, "terms": [0] * lanes} for a in list(range(depth)) * 2]
    frames, issued = [], []
    for op in ops:
        while rng.random() < bubbles:
            frames.append(None)
        issued.append(len(frames))
        frames.append(op)
    frames += [None] * (acc.LATENCY + 2)
    trace = drive_acc(acc, frames)
    olds, _ = acc_reference(ops, lanes, width)
    L = acc.LATENCY
    # the sweeps: each in its cycle + LATENCY, with the word left by every earlier op
    expect_sweeps = [(c + L, {"addr": op["addr"], "word": old}) for c, op, old in zip(issued, ops, olds)
                     if op["kind"] == AccKind.SWEEP]
    got_sweeps = [(n, row["sw"]) for n, row in enumerate(trace) if row["swept"]]
    assert got_sweeps == expect_sweeps
    # forwarded: one of the ops one or two cycles earlier wrote the same word (not for a clear)
    by_cycle = {c: op for c, op in zip(issued, ops)}
    expect_fwd = [n for n, _ in enumerate(trace)
                  if (op := by_cycle.get(n - L)) is not None and op["kind"] != AccKind.CLEAR
                  and any(by_cycle.get(n - L - d, {}).get("addr") == op["addr"] for d in (1, 2))]
    assert [n for n, row in enumerate(trace) if row["fwd"]] == expect_fwd
    assert len(expect_fwd) > len(ops) // 4                               # the hazards were exercised
    # the counter increments: a read per op but a clear, in its cycle; a write per op, LATENCY later
    assert [n for n, row in enumerate(trace) if row["rd"]] == [c for c, op in zip(issued, ops)
                                                               if op["kind"] != AccKind.CLEAR]
    assert [n for n, row in enumerate(trace) if row["wr"]] == [c + L for c in issued]
