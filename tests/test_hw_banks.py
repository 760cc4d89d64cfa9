"""The banked conv scatter (docs/spec.md section 3, "Banks"): its parts against plain-Python references,
and the core with banks > 1 against golden in the Amaranth simulator, on every output and counter.

- ``ConvBundleGen``: random conv geometries (K 1..5, stride 1 and 2, padding, non-square maps, Co not a
  multiple of P) and banks 1..9, every event against ``golden.perf.event_bundles`` (an enumeration) under
  random stalls; the bundle count is ``golden.perf``'s ``Gc*XB + Z`` and the first bundle comes LATENCY
  cycles after its event, then one per cycle.
- ``BankSweepMap``: every word of conv2d and maxpool2d maps against ``golden.perf.bank_address``.
- The core: conv/pool/dense nets (rate, direct, tsc; K 3 and 5, stride 2, padding) at banks 2..9, bit-exact
  with golden.run(..., banks=N) (cycles included).
- ``BankedAccumulator``: random bundles (several banks per cycle, crowded onto a few words of each bank)
  and sweeps (one bank per cycle) against one plain dict of words per bank, updated op by op: every swept
  word, its bank and address in its cycle + LATENCY, the forwarding flag, and the read and write counts
  of every cycle.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

import golden
from amaranth import Signal
from amaranth.back import verilog
from amaranth.sim import Simulator

from golden import Conv2d, Dense, MaxPool2d, Model, perf
from golden.geometry import map_pack
from hw.accmem import AccKind
from hw.banks import BankedAccumulator, BankSweepMap, ConvBundleGen, check_core_banks
from hw.config import ConfigError
from hw.conv_addrgen import ConvAddressGen, ConvLayerGeom
from hw.core import SpikeCore
from hw.sweep import SweepLayer
from sim.toolchain import lint
from tests.core_check import run_both
from tests.test_hw_conv_core import conv_net
from tests.test_hw_conv_parts import acc_reference, py, random_conv, run_streams

# parts built only to be refused (or checked and dropped) are never elaborated
pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


def drive_banked(dut, frames):
    """One frame per cycle: a dict bank -> op (absent banks idle); samples every output in every cycle."""
    trace = []

    async def bench(ctx):
        for frame in frames:
            for b in range(dut.banks):
                op = frame.get(b)
                ctx.set(dut.ops[b].valid, int(op is not None))
                if op is not None:
                    ctx.set(dut.ops[b].payload, op)
            trace.append({"swept": ctx.get(dut.swept.valid), "sw": py(ctx.get(dut.swept.payload)),
                          "fwd": ctx.get(dut.forwarded), "rd": ctx.get(dut.acc_read), "wr": ctx.get(dut.acc_write)})
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return trace


@pytest.mark.parametrize("banks, lanes, width", [(3, 2, 6), (9, 1, 5), (4, 3, 8), (1, 2, 6)])
def test_banked_accumulator_against_one_dict_per_bank(banks, lanes, width):
    rng = random.Random(banks * 1000 + lanes * 10 + width)
    depth = 5
    dut = BankedAccumulator(lanes=lanes, width=width, depth=depth, banks=banks)
    assert dut.LATENCY == perf.MEM_READ_LATENCY
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    kinds = [AccKind.ADD] * 6 + [AccKind.OR, AccKind.MAX, AccKind.CLEAR]

    def op(kind):
        return {"addr": rng.choice([0, 0, 1, rng.randrange(depth)]), "kind": kind,
                "terms": [rng.randint(lo, hi) for _ in range(lanes)]}

    frames = []
    for _ in range(500):
        if rng.random() < 0.25:              # a sweep: one word of one bank (a scatter op may ride along)
            f = {rng.randrange(banks): op(AccKind.SWEEP)}
            if banks > 1 and rng.random() < 0.5:
                other = rng.choice([b for b in range(banks) if b not in f])
                f[other] = op(rng.choice(kinds))
        else:                                # a bundle: a random subset of the banks
            f = {b: op(rng.choice(kinds)) for b in range(banks) if rng.random() < 0.7}
        frames.append(f)
    frames += [{b: {"addr": a, "kind": AccKind.SWEEP, "terms": [0] * lanes}} for b in range(banks)
               for a in range(depth)]        # read every word of every bank back
    frames += [{}] * (dut.LATENCY + 2)
    trace = drive_banked(dut, frames)
    L = dut.LATENCY
    # the reference: each bank's ops in issue order, through one dict of words per bank
    per_bank = {b: [(c, f[b]) for c, f in enumerate(frames) if b in f] for b in range(banks)}
    old_at = {}
    for b, seq in per_bank.items():
        olds, _ = acc_reference([o for _, o in seq], lanes, width)
        for (c, o), old in zip(seq, olds):
            old_at[(c, b)] = old
    expect_sweeps = [(c + L, {"bank": b, "addr": f[b]["addr"], "word": old_at[(c, b)]})
                     for c, f in enumerate(frames) for b in sorted(f) if f[b]["kind"] == AccKind.SWEEP]
    got_sweeps = [(n, row["sw"]) for n, row in enumerate(trace) if row["swept"]]
    assert got_sweeps == expect_sweeps
    assert len(expect_sweeps) > 100
    # forwarded: some bank's op of LATENCY cycles ago (not a clear) follows a write to its word in that
    # same bank one, two or three cycles before it
    expect_fwd = [n for n in range(len(frames)) if any(
        (o := frames[n - L].get(b)) is not None and o["kind"] != AccKind.CLEAR
        and any(frames[n - L - d].get(b, {}).get("addr") == o["addr"] for d in (1, 2, 3) if n - L - d >= 0)
        for b in range(banks)) if n >= L]
    assert [n for n, row in enumerate(trace) if row["fwd"]] == expect_fwd
    assert len(expect_fwd) > 50
    # the counts: the reads of a cycle's ops (clears read nothing), the writes LATENCY cycles later
    assert [row["rd"] for row in trace] == [sum(o["kind"] != AccKind.CLEAR for o in f.values()) for f in frames]
    assert [row["wr"] for row in trace] == [len(frames[n - L]) if n >= L else 0 for n in range(len(frames))]


def test_banked_accumulator_rejects_bad_banks():
    for bad in (0, 65, True, 2.5):
        with pytest.raises(ValueError, match="banks must be an integer from 1 to 64"):
            BankedAccumulator(lanes=2, width=4, depth=4, banks=bad)


def test_banked_accumulator_lints_clean(tmp_path):
    part = BankedAccumulator(lanes=4, width=10, depth=40, banks=3)
    ports = [v for _, _, v in part.signature.flatten(part) if isinstance(v, Signal)]
    path = tmp_path / "banked_acc.v"
    path.write_text(verilog.convert(part, name="banked_acc", ports=ports))
    r = lint(path, "banked_acc")
    assert r.returncode == 0, r.stderr


def test_the_core_refuses_bad_banks():
    m = Model([Dense(np.ones((2, 3), int), 0, 1, 0)], T=1, input_max=1)
    for bad in (0, 65, True):
        with pytest.raises(ConfigError, match="banks must be an integer from 1 to 64"):
            SpikeCore(m, lanes=2, banks=bad)
    with pytest.raises(ConfigError, match="banks must be an integer from 1 to 64"):
        check_core_banks(0)


# ---------------------------------------------------------------------------------------------------
# ConvBundleGen


def reference_bundles(layer, geom: ConvLayerGeom, P: int, banks: int, zero: int, c: int, y: int, x: int,
                      payload: int = 0) -> list[dict]:
    """One event's bundles from golden.perf.event_bundles (row chunks, column chunks, og innermost), as
    the part's ``ops`` payloads; one null bundle for an event with no valid offset."""
    (C, _, _), (Co, Ho, Wo), K = geom.in_shape, geom.out_shape, geom.kernel
    r, cc = perf.bank_shape(K, geom.stride, banks)
    per_og = -(-Ho // r) * -(-Wo // cc)
    Gc = -(-Co // P)
    out = []
    for b in perf.event_bundles(layer, banks, y, x):
        for og in range(Gc):
            slots = {bank: (geom.wbase + ((og * C + c) * K + ky) * K + kx, addr + og * per_og)
                     for ky, kx, oy, ox, bank, addr in b}
            out.append({"slots": slots, "null": 0, "payload": payload})
    if not out:
        out = [{"slots": {}, "null": 1, "payload": payload}]
    for i, o in enumerate(out):
        o["first"], o["last"] = int(i == 0), int(i == len(out) - 1)
    return out


def as_reference(op: dict, zero: int) -> dict:
    """A bundle from the part in the reference's form; an invalid slot must read the zero word."""
    slots = {}
    for b, s in enumerate(op["slots"]):
        if s["valid"]:
            slots[b] = (s["waddr"], s["aaddr"])
        else:
            assert s["waddr"] == zero, (b, s)
    return {"slots": slots, "null": op["null"], "payload": op["payload"], "first": op["first"], "last": op["last"]}


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("banks", [1, 3, 9])
def test_bundle_gen_against_the_enumeration_under_random_stalls(banks, seed):
    rng = random.Random(500 * banks + seed)
    P = rng.choice([1, 2, 4])
    l0, g0 = random_conv(rng)
    l1, g1 = random_conv(rng, wbase=g0.weight_words(P))
    zero = g1.wbase + g1.weight_words(P)
    pw = 2
    gen = ConvBundleGen(layers=[g0, g1], lanes=P, banks=banks, zero_word=zero, payload_bits=pw)
    assert gen.LATENCY == ConvAddressGen.LATENCY
    for li, (layer, geom) in enumerate(((l0, g0), (l1, g1))):
        C, H, W = geom.in_shape
        evs = [(c, yy, xx) for c in range(C) for yy in range(H) for xx in range(W)]
        evs += [rng.choice(evs) for _ in range(len(evs) // 3)]
        rng.shuffle(evs)
        inputs = [{"c": c, "y": yy, "x": xx, "payload": rng.randrange(1 << pw)} for c, yy, xx in evs]
        expect = [o for e in inputs for o in reference_bundles(layer, geom, P, banks, zero, e["c"], e["y"], e["x"],
                                                               e["payload"])]
        got, taken, _ = run_streams(gen, inputs, sink=gen.ops, in_prob=0.7, out_prob=0.6, seed=seed + 10 * li,
                                    extra={"layer": li})
        assert len(taken) == len(inputs)
        assert [as_reference(o, zero) for _, o in got] == expect, (layer, banks)


# fixed geometries where an event has several row and column chunks: K 5 with banks 2 and 3, and
# stride 2 with padding (a = 2) with banks 2 and 4 (whole events), maps with inputs no output uses
EDGE = [((2, 7, 6), 5, 1, 2, 3, 2), ((1, 6, 8), 5, 1, 1, 5, 3), ((2, 7, 6), 3, 2, 1, 3, 2), ((3, 5, 6), 3, 2, 0, 2, 4),
        ((1, 5, 4), 4, 2, 3, 3, 6)]


@pytest.mark.parametrize("shape, K, S, p, Co, banks", EDGE)
def test_bundle_gen_edge_geometries(shape, K, S, p, Co, banks):
    P = 2
    layer = Conv2d(np.zeros((Co, shape[0], K, K), np.int64), in_shape=shape, stride=S, padding=p)
    geom = ConvLayerGeom.of(layer, wbase=3)
    zero = 3 + geom.weight_words(P)
    gen = ConvBundleGen(layers=[geom], lanes=P, banks=banks, zero_word=zero)
    C, H, W = shape
    inputs = [{"c": c, "y": y, "x": x, "payload": 0} for c in range(C) for y in range(H) for x in range(W)]
    expect = [o for e in inputs for o in reference_bundles(layer, geom, P, banks, zero, e["c"], e["y"], e["x"])]
    got, _, _ = run_streams(gen, inputs, sink=gen.ops, in_prob=0.8, out_prob=0.7, seed=K + banks)
    assert [as_reference(o, zero) for _, o in got] == expect
    assert max(len(o["slots"]) for o in expect) > 1


@pytest.mark.parametrize("banks", [1, 4, 9])
def test_bundle_gen_cycles_are_golden_perfs(banks):
    rng = random.Random(90 + banks)
    for _ in range(3):
        layer, geom = random_conv(rng)
        P = 2
        gen = ConvBundleGen(layers=[geom], lanes=P, banks=banks, zero_word=geom.weight_words(P))
        C, H, W = geom.in_shape
        spikes = np.array([rng.random() < 0.4 for _ in range(C * H * W)])
        spikes[rng.randrange(spikes.size)] = True
        events = [{"c": i // (H * W), "y": i // W % H, "x": i % W, "payload": 0} for i in np.flatnonzero(spikes)]
        got, taken, _ = run_streams(gen, events, sink=gen.ops)
        XB = perf.conv_bundles(layer, spikes[None, :], banks)
        _, Z = perf.conv_taps(layer, spikes[None, :])
        assert len(got) == geom.channel_groups(P) * int(XB[0]) + int(Z[0])
        cycles = [c for c, _ in got]
        assert cycles[0] == taken[0] + gen.LATENCY
        assert cycles == list(range(cycles[0], cycles[0] + len(got)))      # no bubble between events
        # banks = 1 is ConvAddressGen's op stream, op for op
        if banks == 1:
            agen = ConvAddressGen(layers=[geom], lanes=P, zero_word=geom.weight_words(P))
            ops, _, _ = run_streams(agen, events, sink=agen.ops)
            assert [(o["waddr"], o["null"], o["first"], o["last"]) for _, o in ops] == \
                [(b["slots"][0]["waddr"], b["null"], b["first"], b["last"]) for _, b in got]
            assert [o["aaddr"] for _, o in ops if not o["null"]] == \
                [b["slots"][0]["aaddr"] for _, b in got if not b["null"]]


def test_bundle_gen_lints_clean(tmp_path):
    g0 = ConvLayerGeom((3, 8, 7), (5, 8, 7), 3, 1, 1, 0)
    g1 = ConvLayerGeom((5, 8, 7), (6, 4, 4), 3, 2, 1, g0.weight_words(4))
    part = ConvBundleGen(layers=[g0, g1], lanes=4, banks=9, payload_bits=2, zero_word=g1.wbase + g1.weight_words(4))
    ports = [v for _, _, v in part.signature.flatten(part) if isinstance(v, Signal)]
    path = tmp_path / "bundle_gen.v"
    path.write_text(verilog.convert(part, name="bundle_gen", ports=ports))
    r = lint(path, "bundle_gen")
    assert r.returncode == 0, r.stderr


# ---------------------------------------------------------------------------------------------------
# BankSweepMap


@pytest.mark.parametrize("banks", [2, 3, 9])
def test_bank_sweep_map_against_golden_bank_address(banks):
    P = 2
    conv = Conv2d(np.zeros((5, 2, 3, 3), np.int64), in_shape=(2, 7, 6), padding=1)       # out (5, 7, 6)
    conv2 = Conv2d(np.zeros((3, 5, 5, 5), np.int64), in_shape=(5, 7, 6), stride=2, padding=2)
    pool = MaxPool2d(2, in_shape=(5, 6, 4))
    layers = [conv, conv2, pool]
    sweeps = []
    for l in layers:
        C, Ho, Wo = l.out_shape
        bx, by, _ = map_pack(l.out_shape, P)
        sweeps.append(SweepLayer(-(-C // P), Ho, Wo, bx, by))
    pbits = max(map_pack(l.out_shape, P)[2] for l in layers).bit_length() + 1
    dut = BankSweepMap(sweeps, [perf.layer_bank_shape(l, banks) for l in layers],
                       [l.kind == "conv2d" for l in layers], banks=banks, packed_bits=pbits, word_bits=9, addr_bits=9)
    frames, expect = [], []
    for li, (l, sl) in enumerate(zip(layers, sweeps)):
        for og in range(sl.groups):
            for oy in range(sl.height):
                for ox in range(sl.width):
                    w = (og * sl.height + oy) * sl.width + ox
                    frames.append((li, (og << (sl.bx + sl.by)) | (oy << sl.bx) | ox, w))
                    expect.append(perf.bank_address(l, banks, og, oy, ox))
    got = []

    async def bench(ctx):
        for li, packed, w in frames:
            ctx.set(dut.layer, li)
            ctx.set(dut.packed, packed)
            ctx.set(dut.word, w)
            await ctx.tick()
            got.append((ctx.get(dut.bank), ctx.get(dut.addr)))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert got == expect
    assert len({(li, e) for (li, _, _), e in zip(frames, expect)}) == len(frames)      # no two words share a slot


# ---------------------------------------------------------------------------------------------------
# the core, banks > 1, against golden (every output and counter)

CORE_CASES = [
    ("rate", 2, 9, {}),
    ("direct", 4, 3, {}),
    ("rate", 2, 4, dict(coding="tsc")),
    ("direct", 2, 4, dict(in_shape=(1, 8, 8), convs=((3, 3, 2, 1), (5, 3, 1, 1)), pool_after=(1,))),
    ("rate", 4, 2, dict(in_shape=(1, 7, 6), convs=((3, 5, 1, 2),), pool_after=(), T=2)),
]


@pytest.mark.parametrize("encoding, lanes, banks, kw", CORE_CASES)
def test_core_with_banks_matches_golden(encoding, lanes, banks, kw):
    model, x = conv_net(lanes, encoding=encoding, **kw)
    _, g = run_both(model, x, lanes, banks=banks)
    g1 = golden.run(model, x, lanes=lanes)                            # banks 1: only the conv scatter is longer
    assert (g.counters["cycles"] < g1.counters["cycles"])[1:].all()      # samples with events: fewer cycles
    for k in perf.COUNTERS:
        if k != "cycles":
            assert g.counters[k].tolist() == g1.counters[k].tolist(), k
