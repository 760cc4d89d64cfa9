"""golden.perf against docs/spec.md, independently of perf's own helpers: the latency constants the spec
lists, the arithmetic helpers against math, and the counters that hand-computed tests elsewhere derive
from those same constants (so a changed constant moved both sides). Written for the mutation pass in
docs/verification.md: each test here kills a mutant that survived the golden tests."""

import math
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import golden
from golden import Conv2d, Dense, MaxPool2d, Model, perf

SPEC = Path(__file__).resolve().parents[1] / "docs" / "spec.md"


def spec_constants() -> dict:
    """``NAME = value`` pairs of the paragraph "The constants live in `golden/perf.py`" (``A = B = 3`` too)."""
    text = SPEC.read_text()
    start = text.index("The constants live in `golden/perf.py`")
    para = text[start:text.index("\n\n", start)]
    out = {}
    for chain in re.findall(r"`((?:[A-Z_]+ = )+\d+)`", para):
        *names, value = [p.strip() for p in chain.split("=")]
        out.update({n: int(value) for n in names})
    return out


def test_latency_constants_are_the_specs():
    want = spec_constants()
    assert want == {"LOAD_CYCLES_PER_BEAT": 1, "LOAD_DRAIN": 2, "MEM_READ_LATENCY": 2, "ENC_DRAIN": 3,
                    "GEN_DRAIN": 3, "LAYER_SETUP": 3, "ACCUMULATE_STAGE": 3, "UPDATE_STAGES": 2,
                    "SLOT_PIPELINE": 6, "READ_CYCLES_PER_GROUP": 2}
    assert {k: getattr(perf, k) for k in want} == want


@pytest.mark.parametrize("P", [1, 2, 3, 4, 5, 8, 16, 33, 64])
def test_finish_cycles_is_ceil_log2_plus_one(P):
    assert perf.finish_cycles(P) == math.ceil(math.log2(P)) + 1


def test_ceil_log2_and_groups_against_math():
    assert perf.ceil_log2(1) == 0
    for n in range(2, 300):
        assert perf.ceil_log2(n) == math.ceil(math.log2(n)), n
    for n in range(1, 70):
        for P in (1, 2, 4, 8, 64):
            assert perf.groups(n, P) == math.ceil(n / P)


def test_ceil_log2_of_zero_is_zero_as_documented():
    # it was 1 for n = 0 ((-1).bit_length()); every caller wraps it in max(1, ...), so no width changed
    assert [perf.ceil_log2(n) for n in (-3, 0, 1, 2, 3, 4, 5, 8, 9, 1024, 1025)] == [0, 0, 0, 1, 2, 2, 3, 3, 4, 10, 11]


def test_tsc_generator_neuron_updates():
    # spec §4, tsc: a layer that feeds another adds its generator's n_out·T neuron updates; the last
    # layer only accumulates; the input generator updates n_in·T
    rng = np.random.default_rng(2)
    m = Model([Dense(rng.integers(-3, 4, (5, 4)), 0, 3, 0), Dense(rng.integers(-3, 4, (3, 5)), 0, 3, 0)],
              coding="tsc", encoding="tsc", readout="membrane", T=4, input_max=6)
    r = golden.run(m, rng.integers(0, 7, (3, 4)), lanes=2)
    assert [c["neuron_updates"].tolist() for c in r.layer_counters] == [[2 * 5 * 4] * 3, [3 * 4] * 3]
    assert r.encoder_counters["neuron_updates"].tolist() == [4 * 4] * 3
    assert r.counters["neuron_updates"].tolist() == [40 + 12 + 16] * 3


def test_stcb_group_with_no_active_train_costs_one_null_op():
    # spec §3, stcb: each layer takes LAYER_SETUP + (G−1)·max(max(1, A), T·taps) + max(1, A) + drain;
    # with no input at all A = 0 and every group still costs its one (null) op
    m = Model([Dense(np.ones((5, 3), int), 0, 1, 0), Dense(np.ones((2, 5), int), 0, 1, 0)],
              coding="stcb", T=2, input_max=3)
    r = golden.run(m, np.zeros((1, 3), int), lanes=2)
    drain = perf.stcb_layer_drain(2, 1, False)
    assert [c["cycles"].tolist() for c in r.layer_counters] == [[3 + 2 * 2 + 1 + drain], [3 + 0 + 1 + drain]]
    assert drain == 3 + 0 + 1 + 2 + 6


def test_breakdown_refuses_counters_that_do_not_add_up():
    m = Model([Dense(np.ones((3, 2), int), 0, 1, 0)], T=3, input_max=4)
    r = golden.run(m, np.array([[0, 0], [4, 2]]), lanes=2)
    parts = perf.breakdown_totals(m, 2, r)
    assert sum(parts.values()) == int(r.counters["cycles"].sum())
    off = SimpleNamespace(batch=r.batch, encoder_counters=r.encoder_counters, layer_counters=r.layer_counters,
                          counters={**r.counters, "cycles": r.counters["cycles"] + 1},
                          phase_activity=r.phase_activity)
    with pytest.raises(AssertionError, match="cycle breakdown .* != cycles counter"):
        perf.breakdown_totals(m, 2, off)
    # a layer's cycles off in one sample: named with the layer and the sample
    lc = [{**r.layer_counters[0], "cycles": r.layer_counters[0]["cycles"] + np.array([0, 1])}]
    off = SimpleNamespace(batch=r.batch, layer_counters=lc, counters=r.counters, phase_activity=r.phase_activity)
    with pytest.raises(AssertionError, match=r"cycle breakdown of layer 0: \d+ != its cycles counter \d+ \(sample 1"):
        perf.breakdown_totals(m, 2, off)
    with pytest.raises(ValueError, match="no phase activity"):
        perf.breakdown_totals(m, 2, SimpleNamespace(batch=2, counters=r.counters, layer_counters=r.layer_counters))


def _conv_net(coding):
    # 1x4x4 input, conv 2 channels K = 3, padding 1 (-> 2x4x4), all weights 1 and theta 1; a dense layer of 2
    conv = Conv2d(np.ones((2, 1, 3, 3), int), 0, 1, 0, in_shape=(1, 4, 4), padding=1)
    return Model([conv, Dense(np.ones((2, 32), int), 0, 1000, 0)], coding=coding, T=2, input_max=1,
                 readout="membrane")


def test_breakdown_of_a_conv_net_hand_computed():
    # rate, P = 2, T = 2: x = input_max at pixel (1, 1) only, so 1 event per step, nv(1, 1) = 3*3 = 9
    # (X = 9, Z = 0 per step); Gc = 1, N = 1*4*4 = 16. Every output the pixel reaches fires at both
    # steps: 9 positions x 2 channels = 18 events per step for the dense layer (G = 1)
    x = np.zeros((3, 16), int)
    x[:, 5] = 1
    m = _conv_net("rate")
    r = golden.run(m, x, lanes=2)
    drain = 3 + 0 + 2                                     # ACCUMULATE_STAGE + term stage + UPDATE_STAGES
    want = {"load": 16 + 2,
            "encode": 2 * (16 + 3),                       # channel words of the 1x4x4 map: 16; ENC_DRAIN
            "layer 0 setup": 2 * 3, "layer 0 scatter": 2 * 1 * 9, "layer 0 sweep": 2 * 16,
            "layer 0 drain": 2 * 2 * drain,               # the scatter's and the sweep's, every step
            "layer 1 setup": 2 * 3, "layer 1 ops": 1 * (18 + 18), "layer 1 drain": 2 * drain,
            "finish": 1 + 1, "readout": 1 * 2 + 2}
    assert perf.breakdown(m, 2, r) == want
    assert r.counters["cycles"].tolist() == [sum(want.values())] * 3
    # stcb, the same net and input: one phase; the conv sees A = 1 active train (X^A = 9), its sweep
    # waits for the serial slot unit (T*taps = 2 cycles per word), and the last word's slot unit runs
    # in the dense stcb drain (3 + 0 + 1 + 2 + SLOT_PIPELINE 6); the dense layer sees 18 active trains
    ms = _conv_net("stcb")
    rs = golden.run(ms, x, lanes=2)
    sdrain = 3 + 0 + 1 + 2 + 6
    want = {"load": 16 + 2, "encode": 16 + (2 + 2 + 1),  # the train encoder: MEM_READ_LATENCY + T + 1
            "layer 0 setup": 3, "layer 0 scatter": 9, "layer 0 sweep": 16, "layer 0 slot wait": 15 * (2 - 1),
            "layer 0 drain": drain + sdrain,
            "layer 1 setup": 3, "layer 1 ops": 18, "layer 1 slot wait": 0, "layer 1 drain": sdrain,
            "finish": 2, "readout": 4}
    assert perf.breakdown(ms, 2, rs) == want
    assert rs.counters["cycles"].tolist() == [sum(want.values())] * 3


def _breakdown_nets(coding, encoding):
    rng = np.random.default_rng(5)
    h = [2, -1] if coding == "stcb" else [1]
    conv = Conv2d(rng.integers(-2, 4, (3, 1, 3, 3)), 0, 3, 0, h, in_shape=(1, 6, 6), padding=1)
    kw = dict(coding=coding, encoding=encoding, T=4, input_max=6, readout="membrane" if coding == "tsc" else "count")
    return {"dense": Model([Dense(rng.integers(-3, 4, (7, 36)), 0, 3, 0, h), Dense(rng.integers(-3, 4, (4, 7)), 0, 4, 0)],
                           **kw),
            "conv": Model([conv, Dense(rng.integers(-3, 4, (4, 108)), 0, 4, 0)], **kw),
            "conv+pool": Model([conv, MaxPool2d(2, in_shape=(3, 6, 6)), Dense(rng.integers(-3, 4, (4, 27)), 0, 4, 0)],
                               **kw)}


CODINGS = [("rate", "rate"), ("rate", "direct"), ("stcb", "rate"), ("stcb", "direct"), ("tsc", "tsc")]


@pytest.mark.parametrize("coding, encoding", CODINGS)
@pytest.mark.parametrize("net", ["dense", "conv", "conv+pool"])
def test_breakdown_parts_add_up_and_each_one_matters(coding, encoding, net, monkeypatch):
    m = _breakdown_nets(coding, encoding)[net]
    x = np.random.default_rng(6).integers(0, 7, (4, 36))
    x[0] = 0                                              # a sample with no input event at all
    for P in (1, 2, 4):
        r = golden.run(m, x, lanes=P)
        parts = perf.breakdown_parts(m, P, r)
        assert sum(parts.values()).tolist() == r.counters["cycles"].tolist()
        assert all((v >= 0).all() for v in parts.values())
    # any one part of any layer one cycle off, in one sample: the check names that layer
    real = perf._layer_parts
    for li in range(len(m.layers)):
        for name in real(m, li, 4, r.phase_activity[li]):
            def wrong(model, i, lanes, a, li=li, name=name):
                p = real(model, i, lanes, a)
                if i == li:
                    p[name] = p[name] + (np.arange(len(p[name])) == 2)
                return p
            monkeypatch.setattr(perf, "_layer_parts", wrong)
            with pytest.raises(AssertionError, match=f"cycle breakdown of layer {li}: .* \\(sample 2;"):
                perf.breakdown_totals(m, 4, r)
    monkeypatch.setattr(perf, "_layer_parts", real)
    # an activity the counters did not see: a conv layer's valid offsets, or its input events
    acts = [dict(a) for a in r.phase_activity]
    key = {"conv": "X", "conv+pool": "X", "dense": "E"}[net] if coding != "stcb" else \
        {"conv": "XA", "conv+pool": "XA", "dense": "A"}[net]
    acts[0][key] = acts[0][key] + 1
    off = SimpleNamespace(batch=r.batch, counters=r.counters, layer_counters=r.layer_counters, phase_activity=acts)
    with pytest.raises(AssertionError, match="cycle breakdown of layer 0"):
        perf.breakdown_totals(m, 4, off)


@pytest.mark.parametrize("coding, encoding, term", [("rate", "rate", 0), ("rate", "direct", 1), ("stcb", "rate", 0),
                                                    ("stcb", "direct", 1), ("tsc", "tsc", 1)])
def test_layer_drain_is_the_specs_sum(coding, encoding, term):
    # spec §3: layer_drain = ACCUMULATE_STAGE + term_stage + UPDATE_STAGES, term_stage = 1 for direct input
    # and tsc, 0 otherwise
    assert perf.term_stage(coding, encoding) == term
    assert perf.layer_drain(coding, encoding) == 3 + term + 2


def test_stcb_weight_reads_count_trains_not_train_words():
    # spec §3, stcb: per group, each active input train costs one weight-word read; with P = 2 two active
    # trains share one train word (one event-buffer entry), so weight reads and event reads differ
    m = Model([Dense(np.ones((3, 4), int), 0, 1, 0), Dense(np.ones((2, 3), int), 0, 9, 0)],
              coding="stcb", T=2, input_max=3)
    r = golden.run(m, np.array([[3, 3, 0, 3]]), lanes=2)       # 3 active trains in 2 words
    c0 = r.layer_counters[0]
    G = 2
    assert (c0["weight_reads"].tolist(), c0["event_reads"].tolist()) == ([G * 3], [G * 2])


def test_stcb_event_reads_are_train_words_as_the_spec_says():
    # spec §4, stcb: weight_reads = Σ G·A (active trains), event_reads = Σ G·K^A (the train words holding
    # them); the conv2d and maxpool2d tables say K^A too. An earlier text had event_reads = Σ G·A, which
    # golden never computed. P = 2: the dense layer's 3 active trains sit in 2 words; the pool's 4 active
    # trains (2 channels at 2 positions) in 2
    text = SPEC.read_text()
    assert "`event_reads = Σ_l G_l·K^A_l`" in text and "weight_reads = event_reads" not in text
    assert text.count("| `event_reads` | `K` | `K^A` | `K` |") == 2
    m = Model([Dense(np.ones((3, 4), int), 0, 1, 0), Dense(np.ones((2, 3), int), 0, 9, 0)],
              coding="stcb", T=2, input_max=3)
    c0 = golden.run(m, np.array([[3, 3, 0, 3]]), lanes=2).layer_counters[0]
    assert (c0["weight_reads"].tolist(), c0["event_reads"].tolist()) == ([2 * 3], [2 * 2])
    conv = golden.Conv2d([[[[1]]], [[[1]]]], 0, [1, 2], 0, in_shape=(1, 4, 4))
    pm = Model([conv, golden.MaxPool2d(2, in_shape=(2, 4, 4)), Dense(np.ones((1, 8), int), 0, 100, 0)],
               coding="stcb", T=2, encoding="direct", input_max=1, readout="membrane")
    x = np.zeros((1, 16), int)
    x[0, 0] = x[0, 15] = 1
    pool = golden.run(pm, x, lanes=2).layer_counters[1]
    assert pool["acc_reads"].tolist() == [4 + 4] and pool["event_reads"].tolist() == [2]   # A = 4, K^A = 2
