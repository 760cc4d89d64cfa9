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
from golden import Dense, Model, perf

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


@pytest.mark.xfail(strict=True, reason="golden.perf.ceil_log2(0) is 1, its docstring says 0 for n <= 1 "
                   "(found by this pass; perf.py is not this change's to edit; every caller wraps it in max(1, ...))")
def test_ceil_log2_of_zero_is_zero_as_documented():
    assert perf.ceil_log2(0) == 0


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
                          counters={**r.counters, "cycles": r.counters["cycles"] + 1})
    with pytest.raises(AssertionError, match="cycle breakdown .* != cycles counter"):
        perf.breakdown_totals(m, 2, off)


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
