"""golden, schema 2: conv2d, maxpool2d, leak and reset semantics, widths, counters and files.

The independent reference is tests/conv_reference.py (plain Python loops over samples, steps,
positions and synapses, written from docs/spec.md section 2, not from the engine).
"""

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import golden
from golden import Conv2d, Dense, MaxPool2d, Model, ModelError, perf
from golden.geometry import ConfigError, CoreGeometry

from conv_reference import reference_rate, reference_tsc

LS, GD = perf.LAYER_SETUP, perf.GEN_DRAIN


def drain(coding, encoding):
    """The op pipeline's drain: after a dense phase, a conv scatter and a conv sweep alike."""
    return perf.layer_drain(coding, encoding)
DATA = Path(__file__).parent / "data" / "schema1"


# ---------------------------------------------------------------------------------------------
# random small networks of every coding

@st.composite
def conv_nets(draw, coding=None, encoding=None):
    """(model, x): 1-3 conv2d/maxpool2d layers then a dense layer, with random shapes, strides,
    padding, resets, leaks and (stcb) kernels."""
    coding = coding or draw(st.sampled_from(["rate", "stcb", "tsc"]))
    tsc = coding == "tsc"
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    wb = draw(st.integers(3, 6))
    lim = 1 << (wb - 1)
    T = draw(st.integers(2 if tsc else 1, 5))
    input_max = draw(st.integers(T - 1 if tsc else 1, 12)) or 1
    enc = "tsc" if tsc else (encoding or draw(st.sampled_from(["rate", "direct"])))
    readout = "membrane" if tsc else draw(st.sampled_from(["count", "membrane"]))
    shape = (draw(st.integers(1, 2)), draw(st.integers(2, 6)), draw(st.integers(2, 6)))
    input_shape = shape

    def neuron_opts():
        if tsc:
            return {}
        leak = draw(st.one_of(st.none(), st.integers(0, 4).flatmap(
            lambda s: st.tuples(st.integers(0, 1 << s), st.just(s)))))
        return dict(reset=draw(st.sampled_from(["subtract", "zero"])), leak=leak)

    def h():
        return [int(v) for v in rng.integers(-2, 3, draw(st.integers(1, min(3, T))))] if coding == "stcb" else [1]

    layers = []
    for i in range(draw(st.integers(1, 3))):
        C, H, W = shape
        pool_ks = [k for k in (1, 2, 3) if H % k == 0 and W % k == 0]
        can_pool = pool_ks and not (i == 0 and enc == "direct")
        if can_pool and draw(st.booleans()):
            layers.append(MaxPool2d(draw(st.sampled_from(pool_ks)), in_shape=shape))
        else:
            K = draw(st.integers(1, 3))
            p = draw(st.integers(0, K - 1))
            if min(H, W) + 2 * p < K:
                p = K - 1
            Co = draw(st.integers(1, 3))
            layers.append(Conv2d(rng.integers(-lim, lim, (Co, C, K, K)), rng.integers(-3, 4, Co),
                                 rng.integers(1, 2 * lim, Co), 0 if tsc else rng.integers(-3, 4, Co), h(),
                                 in_shape=shape, stride=draw(st.integers(1, 3)), padding=p, **neuron_opts()))
        shape = layers[-1].out_shape
    n = int(np.prod(shape))
    n_out = draw(st.integers(1, 3))
    layers.append(Dense(rng.integers(-lim, lim, (n_out, n)), rng.integers(-3, 4, n_out),
                        rng.integers(1, 2 * lim, n_out), 0 if tsc else rng.integers(-3, 4, n_out), h(),
                        **neuron_opts()))
    model = Model(layers, coding=coding, T=T, encoding=enc, input_max=input_max, readout=readout,
                  weight_bits=wb, input_shape=input_shape)
    x = rng.integers(0, input_max + 1, (draw(st.integers(1, 3)), model.n_in))
    return model, x


def assert_equals_reference(model, x):
    r = golden.run(model, x, lanes=2, record=True)
    if model.coding == "tsc":
        for b, (acts, vs) in enumerate(reference_tsc(model, x)):
            for li, a in enumerate(acts):
                assert r.activations[li][b].tolist() == a, (b, li)
            for li, v in enumerate(vs):
                assert (r.v_final[li] is None) == (v is None)
                if v is not None:
                    assert r.v_final[li][b].tolist() == v, (b, li)
        return r
    for b, (spikes, V, counts, seen) in enumerate(reference_rate(model, x)):
        for li, layer in enumerate(model.layers):
            assert r.spikes[li][b].tolist() == spikes[li], (b, li)
            if layer.kind == "maxpool2d":
                assert r.v_final[li] is None
            else:
                assert r.v_final[li][b].tolist() == V[li], (b, li)
                w = model.widths[li]
                # the width analysis bounds V at every point of every step (after leak, add, reset)
                assert w.v_lo <= seen[li][0] and seen[li][1] <= w.v_hi, (li, seen[li], w)
        assert r.counts[b].tolist() == (counts if model.readout == "count" else [0] * len(counts))
    return r


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conv_nets())
def test_engine_equals_independent_reference(mx):
    assert_equals_reference(*mx)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conv_nets(coding="rate", encoding="direct"))
def test_engine_equals_reference_direct(mx):
    assert_equals_reference(*mx)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conv_nets(), st.sampled_from([1, 2, 4, 8]))
def test_lanes_change_counters_only(mx, P):
    model, x = mx
    r1, rp = golden.run(model, x, record=True), golden.run(model, x, lanes=P, record=True)
    assert rp.predictions.tolist() == r1.predictions.tolist()
    assert all(np.array_equal(a, b) for a, b in zip(r1.v_final, rp.v_final) if a is not None)
    for k in ("syn_ops", "spikes", "neuron_updates"):
        assert rp.counters[k].tolist() == r1.counters[k].tolist(), k
    # a weight word holds P output channels and an event entry P lanes: more lanes never read more
    # weight words or write more entries
    for k in ("weight_reads", "event_writes"):
        assert (rp.counters[k] <= r1.counters[k]).all(), k


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conv_nets(coding="rate"), st.data())
def test_stcb_without_kernel_equals_rate(mx, data):
    model, x = mx
    s = Model(model.layers, coding="stcb", T=model.T, encoding=model.encoding, input_max=model.input_max,
              readout=model.readout, weight_bits=model.weight_bits, input_shape=model.input_shape)
    P = data.draw(st.sampled_from([1, 4]))
    r, q = golden.run(model, x, lanes=P, record=True), golden.run(s, x, lanes=P, record=True)
    assert all(np.array_equal(a, b) for a, b in zip(r.spikes, q.spikes))
    assert q.membranes.tolist() == r.membranes.tolist()
    assert q.counters["syn_ops"].tolist() == r.counters["syn_ops"].tolist()       # the same additions
    assert (q.counters["weight_reads"] <= r.counters["weight_reads"]).all()       # one read per train


# ---------------------------------------------------------------------------------------------
# hand-computed semantics

def test_conv_hand_computed_with_both_resets():
    # x (3x3) = [[1,0,2],[0,1,0],[3,0,1]], W = [[1,2],[-1,1]]: I = [[2,3],[-1,2]] every step (direct);
    # theta 4: t0 V = [2,3,-1,2]; t1 V = [4,6,-2,4] -> spikes [1,1,0,1]
    x = np.array([[1, 0, 2, 0, 1, 0, 3, 0, 1]])
    for reset, v_after in (("subtract", [0, 2, -2, 0]), ("zero", [0, 0, -2, 0])):
        conv = Conv2d([[[[1, 2], [-1, 1]]]], 0, 4, 0, in_shape=(1, 3, 3), reset=reset)
        m = Model([conv, Dense([[1, 1, 1, 1]], 0, 100, 0)], T=2, encoding="direct", input_max=3,
                  readout="membrane")
        r = golden.run(m, x, record=True)
        assert r.spikes[0][0].tolist() == [[0, 0, 0, 0], [1, 1, 0, 1]]
        assert r.v_final[0].tolist() == [v_after]
        assert r.membranes.tolist() == [[3]]                  # three spikes reach the dense layer at t1
        assert m.input_shape == (1, 3, 3) and conv.out_shape == (1, 2, 2)


def test_conv_stride_padding_and_channel_order():
    # 4x4 input 0..15, K=3, S=2, p=1 -> 2x2; channel 0 sums the 3x3 window (zeros outside),
    # channel 1 is the centre tap: x at (0,0), (0,2), (2,0), (2,2)
    w = np.zeros((2, 1, 3, 3), int)
    w[0] = 1
    w[1, 0, 1, 1] = 1
    conv = Conv2d(w, 0, 1000, 0, in_shape=(1, 4, 4), stride=2, padding=1)
    m = Model([conv, Dense(np.zeros((1, 8), int), 0, 1, 0)], T=1, encoding="direct", input_max=15,
              readout="membrane")
    r = golden.run(m, np.arange(16)[None])
    assert conv.out_shape == (2, 2, 2)
    assert r.v_final[0].tolist() == [[10, 24, 51, 90, 0, 2, 8, 10]]      # flattened (c, y, x)


def test_maxpool_is_the_or_per_step_and_channel():
    # 1x1 conv: channel 0 (theta 1) fires wherever x = 1, channel 1 (theta 2) every other step
    x = np.zeros((1, 16), int)
    x[0, 0] = x[0, 15] = 1                                  # (0,0) and (3,3): different pool windows
    conv = Conv2d([[[[1]]], [[[1]]]], 0, [1, 2], 0, in_shape=(1, 4, 4))
    pool = MaxPool2d(2, in_shape=(2, 4, 4))
    m = Model([conv, pool, Dense(np.ones((1, 8), int), 0, 100, 0)], T=2, encoding="direct", input_max=1,
              readout="membrane")
    r = golden.run(m, x, record=True)
    assert pool.out_shape == (2, 2, 2)
    assert r.spikes[1][0].tolist() == [[1, 0, 0, 1, 0, 0, 0, 0], [1, 0, 0, 1, 1, 0, 0, 1]]
    assert r.v_final[1] is None
    assert r.membranes.tolist() == [[6]]


def test_leak_floor_and_step_zero():
    # V <- (V * num) >> shift before adding I, at step 0 too (on v_init)
    def run(v0, leak, T=3):
        m = Model([Dense([[2]], 0, 100, v0, leak=leak)], T=T, encoding="direct", input_max=1, readout="membrane")
        return golden.run(m, np.array([[1]])).membranes.tolist()[0][0]
    assert run(7, (1, 1)) == 4            # 7 -> 3+2 = 5 -> 2+2 = 4 -> 2+2 = 4
    assert run(-7, (1, 1)) == 2           # floor(-3.5) = -4 +2 = -2 -> -1+2 = 1 -> 0+2 = 2
    assert run(7, (1, 1), T=1) == 5       # the leak acts on v_init at step 0
    assert run(10, (3, 2)) == 8           # 30>>2 = 7 +2 = 9 -> 27>>2 = 6 +2 = 8 -> 24>>2 = 6 +2 = 8
    assert run(10, (0, 0)) == 2           # num 0: no memory at all
    assert run(10, (4, 2)) == 16          # num = 2**shift: IF
    assert run(10, None) == 16


def test_reset_zero_versus_subtract():
    # W = 3, theta 4, T = 3: subtract: 3; 6 -> s, 2; 5 -> s, 1;  zero: 3; 6 -> s, 0; 3
    for reset, spikes, v in (("subtract", [0, 1, 1], 1), ("zero", [0, 1, 0], 3)):
        m = Model([Dense([[3]], 0, 4, 0, reset=reset)], T=3, encoding="direct", input_max=1)
        r = golden.run(m, np.array([[1]]), record=True)
        assert r.spikes[0][0, :, 0].tolist() == spikes and r.membranes.tolist() == [[v]]


def test_tsc_conv_and_pool_hand_computed():
    # T = 4 (Q = 3), input_max 3: q = x. conv 2x2 -> 1x1: V = 1 + [1,2,3,-1].[1,2,0,3] = 3, theta 2 -> 1;
    # the pool (second channel map) takes the max of q
    conv = Conv2d([[[[1, 2], [3, -1]]]], 1, 2, 0, in_shape=(1, 2, 2))
    m = Model([conv, Dense([[5]], 0, 1, 0)], coding="tsc", T=4, encoding="tsc", input_max=3, readout="membrane")
    r = golden.run(m, np.array([[1, 2, 0, 3]]), record=True)
    assert r.v_final[0].tolist() == [[3]] and r.activations[0].tolist() == [[1]] and r.membranes.tolist() == [[5]]
    assert r.events[0][0, :, 0].tolist() == [1, -1, 0, 0]
    pool = MaxPool2d(2, in_shape=(1, 2, 2))
    m2 = Model([pool, Dense([[2]], 1, 1, 0)], coding="tsc", T=4, encoding="tsc", input_max=3, readout="membrane")
    r2 = golden.run(m2, np.array([[1, 2, 0, 3], [0, 0, 0, 0]]), record=True)
    assert r2.activations[0].tolist() == [[3], [0]] and r2.v_final[0] is None
    assert r2.membranes.tolist() == [[7], [1]]


# ---------------------------------------------------------------------------------------------
# counters (docs/spec.md sections 3 and 4), hand-computed

def test_conv_counters_direct_hand_computed():
    # 1x3x3 input, conv 3 channels K=2 (-> 3x2x2), all weights 1, theta 1; direct x = 1 at (1,1), (0,2).
    # nv(1,1) = 2*2 = 4 offsets, nv(0,2) = 1*1 = 1: X = 5 per step, Z = 0. P = 2: Gc = 2, N = 2*2*2 = 8.
    # Every conv neuron fires at both steps (its window holds >= 1), so the dense layer sees 12 per step.
    x = np.zeros((1, 9), int)
    x[0, 4] = x[0, 2] = 1
    conv = Conv2d(np.ones((3, 1, 2, 2), int), 0, 1, 0, in_shape=(1, 3, 3))
    m = Model([conv, Dense(np.ones((1, 12), int), 0, 100, 0)], T=2, encoding="direct", input_max=1,
              readout="membrane")
    np.testing.assert_array_equal(conv.valid_offsets(), [[1, 2, 1], [2, 4, 2], [1, 2, 1]])
    r = golden.run(m, x, lanes=2)
    D = drain("rate", "direct")
    # event entries: the input map is written by channel words (one channel: one entry per non-zero
    # pixel); the conv's map has 4 positions x 2 channel words, all spiking at both steps
    c = {k: int(v[0]) for k, v in r.layer_counters[0].items()}
    assert c == {"cycles": 2 * (LS + D + 8 + D) + 2 * 5 * 2, "weight_reads": 2 * 5 * 2,
                 "acc_reads": 20 + 8 * 2, "acc_writes": 20 + 8 * 2, "event_reads": 2 * 2, "syn_ops": 3 * 5 * 2,
                 "state_reads": 8 * 1, "state_writes": 8 * 2, "param_reads": 8 * 2, "neuron_updates": 12 * 2,
                 "event_writes": 8 * 2, "spikes": 24, "input_writes": 0}
    d = {k: int(v[0]) for k, v in r.layer_counters[1].items()}
    assert d["weight_reads"] == 24 and d["syn_ops"] == 24 and d["acc_reads"] == d["acc_writes"] == 0
    assert d["event_reads"] == 1 * 8 * 2                         # one group replays the 8 entries per step
    assert d["cycles"] == 2 * (LS + D) + 12 + 12
    assert r.encoder_counters["event_writes"].tolist() == [2]
    assert r.counters["cycles"].tolist() == [9 + perf.LOAD_DRAIN + c["cycles"] + d["cycles"] + perf.finish_cycles(2)
                                             + perf.READ_CYCLES_PER_GROUP * 1 + 1]


def test_no_input_events_no_weight_reads():
    # rate: x = 2 of input_max 4 spikes at t = 1 and t = 3 only; the conv's sweep still runs every step
    conv = Conv2d(np.ones((3, 1, 2, 2), int), 0, 5, 0, in_shape=(1, 3, 3))
    x = np.zeros((1, 9), int)
    x[0, 4] = 2
    for T, steps_with_events in ((1, 0), (2, 1), (4, 2)):
        m = Model([conv, Dense(np.ones((1, 12), int), 0, 100, 0)], T=T, input_max=4, readout="membrane")
        c = golden.run(m, x, lanes=2).layer_counters[0]
        assert c["weight_reads"].tolist() == [2 * 4 * steps_with_events]      # Gc * nv(1,1) per event
        assert c["acc_reads"].tolist() == [2 * 4 * steps_with_events + 8 * T]
        D = drain("rate", "rate")
        assert c["cycles"].tolist() == [T * (LS + D + 8 + D) + 8 * steps_with_events]


def test_null_events_of_a_stride_cost_one_op():
    # K=1, S=2 on 3x3: pixel (1,1) reaches no output (Z), (2,2) reaches (1,1) (X = 1); P = 4: Gc = 1, N = 4
    conv = Conv2d(np.ones((2, 1, 1, 1), int), 0, 1, 0, in_shape=(1, 3, 3), stride=2)
    np.testing.assert_array_equal(conv.valid_offsets(), [[1, 0, 1], [0, 0, 0], [1, 0, 1]])
    x = np.zeros((1, 9), int)
    x[0, 4] = x[0, 8] = 1
    m = Model([conv, Dense(np.ones((1, 8), int), 0, 100, 0)], T=1, encoding="direct", input_max=1,
              readout="membrane")
    c = golden.run(m, x, lanes=4).layer_counters[0]
    assert c["weight_reads"].tolist() == [1] and c["syn_ops"].tolist() == [2] and c["event_reads"].tolist() == [2]
    assert c["cycles"].tolist() == [LS + 2 * drain("rate", "direct") + 4 + 1 + 1]


def _pool_model(coding):
    conv = Conv2d([[[[1]]], [[[1]]]], 0, [1, 2], 0, in_shape=(1, 4, 4))
    return Model([conv, MaxPool2d(2, in_shape=(2, 4, 4)), Dense(np.ones((1, 8), int), 0, 100, 0)], coding=coding,
                 T=2, encoding="direct", input_max=1, readout="membrane")


def test_pool_counters_rate_hand_computed():
    # conv spikes: channel 0 at both steps at 2 pixels, channel 1 at t1: pool inputs E = [2, 4],
    # outputs (different windows) the same; P = 2: Gc = 1, N = 1*2*2 = 4. Entries hold both channels of a
    # position: 2 per step in and out. The scatter takes one op per entry (both channels side by side),
    # not one per event: 2 + 2 ops, not 6
    x = np.zeros((1, 16), int)
    x[0, 0] = x[0, 15] = 1
    r = golden.run(_pool_model("rate"), x, lanes=2)
    c = {k: int(v[0]) for k, v in r.layer_counters[1].items()}
    D = drain("rate", "direct")
    assert c == {"cycles": 2 * (LS + D + 4 + D) + 4, "acc_reads": 4 + 4 * 2, "acc_writes": 4 + 4 * 2,
                 "event_reads": 4, "event_writes": 4, "spikes": 6, "weight_reads": 0, "state_reads": 0,
                 "state_writes": 0, "param_reads": 0, "syn_ops": 0, "neuron_updates": 0, "input_writes": 0}


def test_conv_and_pool_counters_stcb_hand_computed():
    # the same network train by train: the conv sees 2 active trains (direct inputs), X^A = 2
    # (1x1 kernel), Gc = 1, N = 16; the pool sees 4 active trains (2 per channel), N = 4
    x = np.zeros((1, 16), int)
    x[0, 0] = x[0, 15] = 1
    r = golden.run(_pool_model("stcb"), x, lanes=2)
    D = drain("stcb", "direct")
    # the conv's sweep: its 16 words go through the slot unit one at a time, T*taps = 2*1 cycles
    # apart; the last word's slot unit runs in the drain: fetch 3, direct's term stage 1, the handoff
    # 1, T*taps = 2, SLOT_PIPELINE 6 (the dense stcb phase's drain)
    sweep = (16 - 1) * 2 + 1 + (3 + 1 + 1 + 2 + 6)
    # the conv's 4 active output trains sit at 2 positions: 2 entries (of both channels)
    c = {k: int(v[0]) for k, v in r.layer_counters[0].items()}
    assert c == {"cycles": LS + 2 + D + sweep, "weight_reads": 2, "acc_reads": 2 + 16, "acc_writes": 2 + 16,
                 "event_reads": 2, "syn_ops": 2 * 2 * 2, "state_reads": 0, "state_writes": 16, "param_reads": 16,
                 "neuron_updates": 32 * 2, "event_writes": 2, "spikes": 6, "input_writes": 0}
    p = {k: int(v[0]) for k, v in r.layer_counters[1].items()}
    # a pool's sweep uses no slot unit: one word per cycle, then the op pipeline's drain
    assert p["cycles"] == LS + 4 + D + 4 + D and p["acc_reads"] == p["acc_writes"] == 4 + 4
    # event reads count train words: the 4 active trains sit in 2 entries (spec section 4: K^A, not A)
    assert p["event_reads"] == 2 and p["event_writes"] == 2 and p["spikes"] == 6 and p["weight_reads"] == 0


def test_stcb_conv_sweep_waits_for_the_slot_unit():
    # T = 3 and a 2-tap kernel: the slot unit takes T*taps = 6 cycles per output word. A 1x1 conv on a
    # 1x2x2 map with P = 1: N = 4 words; a zero input has no active train, so the scatter is empty
    # (no null op: there is no event) and the layer is LAYER_SETUP 3 + the scatter's drain (3 + 0 + 2)
    # + 3 words at 6 cycles + the last word's issue 1 + its drain (3 + 0 + 1 + 6 + 6)
    conv = Conv2d([[[[1]]]], 0, 1, 0, [2, -1], in_shape=(1, 2, 2))
    m = Model([conv, Dense([[1, 1, 1, 1]], 0, 1, 0)], coding="stcb", T=3, input_max=1)
    r = golden.run(m, np.zeros((1, 4), int), lanes=1)
    assert r.layer_counters[0]["cycles"].tolist() == [3 + (3 + 2) + 3 * 6 + 1 + (3 + 1 + 6 + 6)]
    assert r.layer_counters[0]["weight_reads"].tolist() == [0] and r.layer_counters[0]["acc_reads"].tolist() == [4]


def test_conv_and_pool_counters_tsc_hand_computed():
    # T = 3 (Q = 2), input_max 2: q = x = [2, 1, 0, 0]; 1x1 conv (theta 1) passes q; the pool sends max = 2.
    # Conv input events: E = [2, 1, 1] (ONs, then the OFFs of q = 1 and q = 2); X = 4; Gc = 1, N = 4 (P = 1)
    conv = Conv2d([[[[1]]]], 0, 1, 0, in_shape=(1, 2, 2))
    m = Model([conv, MaxPool2d(2, in_shape=(1, 2, 2)), Dense([[1]], 0, 1, 0)], coding="tsc", T=3, encoding="tsc",
              input_max=2, readout="membrane")
    r = golden.run(m, np.array([[2, 1, 0, 0]]), lanes=1)
    assert r.membranes.tolist() == [[2]] and r.activations[1].tolist() == [[2]]
    c = {k: int(v[0]) for k, v in r.layer_counters[0].items()}
    D = drain("tsc", "tsc")
    assert c == {"cycles": 3 * (LS + D + 4 + D) + 4 + 3 * (4 + GD), "weight_reads": 4, "acc_reads": 4 + 12,
                 "acc_writes": 4 + 12, "event_reads": 4, "syn_ops": 4, "state_reads": 4 * 2 + 12,
                 "state_writes": 12 + 12, "param_reads": 12 + 12, "neuron_updates": 12 + 12, "event_writes": 4,
                 "spikes": 4, "input_writes": 0}
    # pool: E = [2, 1, 1], OFF = 2, N = 1: clear sweep, OFF writes, then its generator (theta 1, no params)
    p = {k: int(v[0]) for k, v in r.layer_counters[1].items()}
    assert p == {"cycles": 3 * (LS + D) + 4 + 1 + 3 * (1 + GD), "state_reads": 2 + 3, "state_writes": 1 + 2 + 3,
                 "neuron_updates": 3, "event_reads": 4, "event_writes": 2, "spikes": 2, "weight_reads": 0,
                 "acc_reads": 0, "acc_writes": 0, "param_reads": 0, "syn_ops": 0, "input_writes": 0}


def _brute_taps(layer, events):
    """Valid (event, offset) pairs and events with none, by walking every kernel offset: (..., n_in) -> X, Z."""
    C, H, W = layer.in_shape
    _, Ho, Wo = layer.out_shape
    K, S, p = layer.kernel, layer.stride, layer.padding
    nv = np.zeros(C * H * W, int)
    for c in range(C):
        for y in range(H):
            for x in range(W):
                for ky in range(K):
                    for kx in range(K):
                        dy, dx = y + p - ky, x + p - kx
                        if dy % S == 0 and dx % S == 0 and 0 <= dy // S < Ho and 0 <= dx // S < Wo:
                            nv[(c * H + y) * W + x] += 1
    return (events * nv).sum(axis=-1), (events * (nv == 0)).sum(axis=-1)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conv_nets(), st.sampled_from([1, 2, 4]))
def test_conv_scatter_counters_follow_the_events(mx, P):
    """weight_reads, syn_ops and the scatter cycles of every conv layer from its input events, with the
    valid offsets counted by brute force."""
    model, x = mx
    r = golden.run(model, x, lanes=P, record=True)
    T = model.T
    for li, layer in enumerate(model.layers):
        if layer.kind != "conv2d":
            continue
        Gc = -(-layer.channels // P)
        _, Ho, Wo = layer.out_shape
        N = Gc * Ho * Wo
        c = r.layer_counters[li]
        if li == 0:
            ev = (r.input_spikes if model.encoding == "rate" else
                  np.repeat((x != 0)[:, None, :], T, axis=1) if model.encoding == "direct" else
                  r.input_events != 0).astype(int)
        elif model.coding == "tsc":
            ev = (r.events[li - 1] != 0).astype(int)
        else:
            ev = r.spikes[li - 1].astype(int)
        X, Z = _brute_taps(layer, ev)                        # (B, T)
        D = drain(model.coding, model.encoding)
        if model.coding == "stcb":
            XA, ZA = _brute_taps(layer, ev.any(axis=1).astype(int))
            assert c["weight_reads"].tolist() == (Gc * XA).tolist()
            # the sweep: N words through the serial slot unit (T*taps cycles each, taps = the longest
            # kernel of the model), the last one's slot unit in the dense stcb drain
            slot = T * max(len(l.h) for l in model.layers if l.kind != "maxpool2d")
            sweep = (N - 1) * slot + 1 + (perf.ACCUMULATE_STAGE + (model.encoding == "direct") + 1 + slot
                                          + perf.SLOT_PIPELINE)
            assert c["cycles"].tolist() == (LS + Gc * XA + ZA + D + sweep).tolist()
        else:
            assert c["weight_reads"].tolist() == (Gc * X.sum(1)).tolist()
            gen = T * (N + GD) if model.coding == "tsc" else 0
            assert c["cycles"].tolist() == (T * (LS + D + N + D) + Gc * X.sum(1) + Z.sum(1) + gen).tolist()
        assert c["syn_ops"].tolist() == (layer.channels * X.sum(1)).tolist()


# ---------------------------------------------------------------------------------------------
# width analysis (docs/spec.md section 1)

def _width_model(leak=None, encoding="rate", v_bits=None):
    # channel 0: W = [[3,-2],[1,4]], b 1, theta 4, v0 0; channel 1: W = [[-5,1],[0,0]], b -2, theta 9, v0 3
    conv = Conv2d([[[[3, -2], [1, 4]]], [[[-5, 1], [0, 0]]]], [1, -2], [4, 9], [0, 3], in_shape=(1, 3, 3), leak=leak)
    dense = Dense([[1, 0, 0, 0, 0, 0, 0, 0]], 0, 1, 0)          # needs only 3 bits: layer 0 decides
    return Model([conv, dense], T=3, encoding=encoding, input_max=5, weight_bits=4, v_bits=v_bits)


def test_conv_widths_per_channel_hand_computed():
    w = _width_model().widths[0]
    # ch0: acc [-2, 8], I [-1, 9], V [-3 (widened to -theta = -4), 27]; ch1: acc [-5, 1], I [-7, -1],
    # V [-21, max(3, theta 9)]
    assert (w.acc_lo, w.acc_hi, w.current_lo, w.current_hi, w.v_lo, w.v_hi) == (-5, 8, -7, 9, -21, 27)
    assert (w.acc_bits, w.v_bits, w.leak_bits) == (5, 6, 0)
    assert _width_model().v_bits == 6
    with pytest.raises(ModelError, match=r"v_bits=5 is too small: layer 0 needs 6 bits \(membrane range \[-21, 27\]\)"):
        _width_model(v_bits=5)
    # direct input: smax = input_max = 5 -> ch0 I [-9, 41], V_hi 123; ch1 I [-27, 3], V_lo -81
    d = _width_model(encoding="direct").widths[0]
    assert (d.v_lo, d.v_hi, d.v_bits) == (-81, 123, 8)


def test_leak_width_recurrence_hand_computed():
    # leak [1, 1]: ch0 U: 0, 9, 4+9 = 13, 6+9 = 15; L: 0, -1, -1-1 = -2, -1-1 = -2 (widened to -4);
    # ch1 U: 3, 1, 0, 0 (widened to theta 9); L: 0, -7, -4-7 = -11, -6-7 = -13
    w = _width_model(leak=(1, 1)).widths[0]
    assert (w.v_lo, w.v_hi, w.v_bits, w.leak_bits) == (-13, 15, 5, 1)
    _width_model(leak=(1, 1), v_bits=5)
    with pytest.raises(ModelError, match="v_bits=4 is too small: layer 0 needs 5 bits"):
        _width_model(leak=(1, 1), v_bits=4)
    # num = 2**shift is IF: the recurrence gives the closed form's numbers
    assert _width_model(leak=(8, 3)).widths[0] == LayerWidths_with(_width_model().widths[0], leak_bits=4)


def LayerWidths_with(w, **kw):
    return golden.LayerWidths(**{**vars(w), **kw})


def test_leak_product_width_limit():
    # v_bits + bits(num) <= 64: 48 + bits(65536) = 65 is refused, 47 + 17 = 64 accepted
    l = lambda: [Dense([[1]], 0, 1, 0, leak=(1 << 16, 16))]
    Model(l(), T=2, input_max=1, v_bits=47)
    with pytest.raises(ModelError, match=r"layer 0: leak=\[65536, 16\] needs a 48 \+ 17 = 65-bit product"):
        Model(l(), T=2, input_max=1, v_bits=48)


def test_stcb_conv_kernel_widens_the_current():
    conv = Conv2d([[[[2]]]], 1, 5, 0, [2, -1], in_shape=(1, 2, 2))
    m = Model([conv, Dense(np.zeros((1, 4), int), 0, 1, 0)], coding="stcb", T=2, input_max=1, weight_bits=4)
    # I in [1, 3]; I'[0] = 2 I[0] in [2, 6]; I'[t>0] = 2 I[t] - I[t-1] in [2 - 3, 6 - 1]: [-1, 6] overall
    assert (m.widths[0].current_lo, m.widths[0].current_hi) == (-1, 6)


def test_kernel_prefix_bounds_regression():
    """Found by test_engine_equals_independent_reference: with h = [-1, -1, 2] and a constant current
    3, I' = [-3, -6, 0]; the full-kernel sum (0) missed the first steps, where only a prefix of the taps
    exists, so V = -9 did not fit the chosen v_bits (schema 1 had the same bug)."""
    m = Model([Dense([[0]], 3, 1, 0, h=[-1, -1, 2])], coding="stcb", T=3, encoding="direct", input_max=1,
              readout="membrane", weight_bits=3)
    assert (m.widths[0].current_lo, m.widths[0].current_hi) == (-6, 0)
    r = golden.run(m, np.array([[1]]))
    assert r.membranes.tolist() == [[-9]]
    assert m.widths[0].v_lo <= -9 and -9 >= -(1 << (m.v_bits - 1))


def test_pool_widths():
    rate = _pool_model("rate")
    assert rate.widths[1] == golden.LayerWidths(0, 0, 0, 0, 0, 0, 1, 1)
    conv = Conv2d([[[[1]]]], 0, 1, 0, in_shape=(1, 2, 2))
    tsc = Model([conv, MaxPool2d(2, in_shape=(1, 2, 2)), Dense([[1]], 0, 1, 0)], coding="tsc", T=6, encoding="tsc",
                input_max=8, readout="membrane")
    assert (tsc.widths[1].v_lo, tsc.widths[1].v_hi, tsc.widths[1].v_bits) == (-1, 5, 4)


# ---------------------------------------------------------------------------------------------
# validation: every new field, naming the field and the layer

W4 = np.ones((2, 1, 3, 3), int)


@pytest.mark.parametrize("make, msg", [
    (lambda: Conv2d(np.ones((2, 1, 3), int), in_shape=(1, 4, 4)), "weight must be 4-D"),
    (lambda: Conv2d(np.ones((2, 1, 3, 2), int), in_shape=(1, 4, 4)), "square kernel"),
    (lambda: Conv2d(np.ones((2, 1, 17, 17), int), in_shape=(1, 20, 20)), "kernel must be in 1..16"),
    (lambda: Conv2d(W4, in_shape=(2, 4, 4)), r"in_shape \[2, 4, 4\] has C=2 but weight"),
    (lambda: Conv2d(W4, in_shape=(1, 4)), r"in_shape must be \[C, H, W\]"),
    (lambda: Conv2d(W4, in_shape=(1, 4, 0)), "in_shape must hold integers in 1..4096"),
    (lambda: Conv2d(W4, in_shape=(1, 4.0, 4)), r"in_shape must be \[C, H, W\]"),
    (lambda: Conv2d(W4, in_shape=(64, 4096, 4096)), "holds more than 16777216 values"),
    (lambda: Conv2d(W4, in_shape=(1, 4, 4), stride=0), "stride must be an integer in 1..16, got 0"),
    (lambda: Conv2d(W4, in_shape=(1, 4, 4), stride=True), "stride must be an integer in 1..16, got True"),
    (lambda: Conv2d(W4, in_shape=(1, 4, 4), padding=3), "padding must be an integer in 0..2, got 3"),
    (lambda: Conv2d(W4, in_shape=(1, 4, 4), padding=-1), "padding must be an integer in 0..2"),
    (lambda: Conv2d(W4, in_shape=(1, 2, 2)), r"kernel 3 does not fit in_shape \[1, 2, 2\]"),
    (lambda: Conv2d(W4, [1, 2, 3], in_shape=(1, 4, 4)), r"bias must have shape \(2,\)"),
    (lambda: Conv2d(W4, 0, [1, 0], in_shape=(1, 4, 4)), "threshold must be > 0, channel 1 has 0"),
    (lambda: Conv2d(W4, in_shape=(1, 4, 4), reset="hard"), "reset must be one of 'subtract', 'zero', got 'hard'"),
    (lambda: Dense([[1]], reset=None), "reset must be one of"),
    (lambda: Dense([[1]], leak=(3, 1)), r"leak num must be in 0..2\*\*shift = 2, got leak=\[3, 1\]"),
    (lambda: Dense([[1]], leak=(1, 17)), r"leak shift must be in 0..16"),
    (lambda: Dense([[1]], leak=(-1, 2)), r"leak num must be in 0..2\*\*shift"),
    (lambda: Dense([[1]], leak=(1,)), r"leak must be None or \[num, shift\]"),
    (lambda: Dense([[1]], leak=(0.5, 1)), r"leak must be None or \[num, shift\]"),
    (lambda: Dense([[1]], leak="7/8"), r"leak must be None or \[num, shift\]"),
    (lambda: MaxPool2d(0, in_shape=(1, 4, 4)), "kernel must be an integer in 1..16, got 0"),
    (lambda: MaxPool2d(3, in_shape=(1, 4, 6)), r"maxpool2d kernel 3 must divide H and W of in_shape \[1, 4, 6\]"),
    (lambda: MaxPool2d(2, in_shape=None), r"in_shape must be \[C, H, W\]"),
])
def test_layer_rejects(make, msg):
    with pytest.raises(ModelError, match=msg):
        make()


def _conv(**kw):
    return Conv2d(W4, 0, 1, 0, **{"in_shape": (1, 4, 4), "padding": 1, **kw})


@pytest.mark.parametrize("layers, kw, msg", [
    (lambda: [_conv(), _conv(in_shape=(1, 4, 4)), Dense(np.ones((1, 32), int))], {},
     r"layer 1: in_shape \[1, 4, 4\] does not match layer 0 \(conv2d\) out_shape \[2, 4, 4\]"),
    (lambda: [_conv(), Dense(np.ones((1, 31), int))], {},
     r"layer 1: weight has n_in=31 but layer 0 \(conv2d\) has out_shape \[2, 4, 4\] = 32 outputs"),
    (lambda: [Dense(np.ones((16, 16), int)), _conv(), Dense(np.ones((1, 32), int))], {},
     r"layer 1: in_shape \[1, 4, 4\] does not match layer 0 \(dense\) out_shape \[16\]"),
    (lambda: [_conv()], {}, "layer 0: the last layer must be dense .* got conv2d"),
    (lambda: [_conv(), MaxPool2d(2, in_shape=(2, 4, 4))], {}, "layer 1: the last layer must be dense .* got maxpool2d"),
    (lambda: [MaxPool2d(2, in_shape=(1, 4, 4)), Dense(np.ones((1, 4), int))], {"encoding": "direct"},
     "layer 0: maxpool2d cannot read the direct encoding"),
    (lambda: [_conv(), Dense(np.ones((1, 32), int))], {"input_shape": [16]},
     r"input_shape \[16\] must equal layer 0's in_shape \[1, 4, 4\]"),
    (lambda: [_conv(), Dense(np.ones((1, 32), int))], {"input_shape": [1, 2, 8]},
     r"input_shape \[1, 2, 8\] must equal layer 0's in_shape"),
    (lambda: [Dense(np.ones((1, 16), int))], {"input_shape": [1, 4, 5]},
     r"input_shape \[1, 4, 5\] holds 20 values but layer 0 reads 16"),
    (lambda: [Dense(np.ones((1, 16), int))], {"input_shape": [4, 4]}, "input_shape must be \\[n\\] or \\[C, H, W\\]"),
    (lambda: [Dense(np.ones((1, 16), int))], {"input_shape": [True]}, "input_shape must be"),
    (lambda: [_conv(leak=(1, 1)), Dense(np.ones((1, 32), int))], {"coding": "tsc", "encoding": "tsc", "T": 3,
                                                                  "readout": "membrane"},
     r"layer 0: tsc layers have no leak .* got leak=\[1, 1\]"),
    (lambda: [_conv(), Dense(np.ones((1, 32), int), reset="zero")], {"coding": "tsc", "encoding": "tsc", "T": 3,
                                                                      "readout": "membrane"},
     "layer 1: tsc layers have no reset; reset must be 'subtract', got 'zero'"),
    (lambda: [Conv2d(W4, 0, 1, 0, [1, 1], in_shape=(1, 4, 4)), Dense(np.ones((1, 8), int))], {},
     r"layer 0: a temporal kernel h=\[1, 1\] needs coding 'stcb'"),
    (lambda: [Conv2d(W4 * 9, 0, 1, 0, in_shape=(1, 4, 4)), Dense(np.ones((1, 8), int))], {"weight_bits": 4},
     r"layer 0: weight\[0, 0, 0, 0\] = 9 is outside weight_bits=4"),
    (lambda: [Conv2d(W4, 0, 1, 1, in_shape=(1, 4, 4)), Dense(np.ones((1, 8), int))],
     {"coding": "tsc", "encoding": "tsc", "T": 3, "readout": "membrane"}, "layer 0: tsc layers start from V = bias"),
    (lambda: [_conv(), "dense"], {}, "layer 1: expected golden.Dense, golden.Conv2d or golden.MaxPool2d, got str"),
])
def test_model_rejects(layers, kw, msg):
    with pytest.raises(ModelError, match=msg):
        Model(layers(), **{"T": 2, "input_max": 4, **kw})


# ---------------------------------------------------------------------------------------------
# files: schema 2 round trip, schema 1 unchanged, bad fields

def _zoo() -> dict:
    rng = np.random.default_rng(11)
    c1 = Conv2d(rng.integers(-8, 8, (4, 1, 3, 3)), rng.integers(-2, 3, 4), rng.integers(3, 9, 4), 0,
                in_shape=(1, 6, 6), padding=1, leak=(7, 3))
    c1_if = Conv2d(c1.weight, c1.bias, c1.threshold, 0, in_shape=(1, 6, 6), padding=1)
    c2 = Conv2d(rng.integers(-8, 8, (3, 4, 2, 2)), 0, 6, rng.integers(-2, 3, 3), in_shape=(4, 3, 3), stride=1,
                reset="zero")
    pool = MaxPool2d(2, in_shape=(4, 6, 6))
    d = Dense(rng.integers(-8, 8, (5, 12)), 1, 7, 0, leak=(1, 1))
    stcb_c = Conv2d(c1.weight, c1.bias, c1.threshold, 0, [2, -1], in_shape=(1, 6, 6), padding=1)
    return {
        "rate": Model([c1, pool, c2, d], T=4, input_max=16),
        "direct": Model([c1, pool, c2, Dense(d.weight, 0, 7, 0)], T=3, encoding="direct", input_max=16,
                        readout="membrane"),
        "stcb": Model([stcb_c, pool, Conv2d(c2.weight, 0, 6, 0, [1, 1], in_shape=(4, 3, 3)), Dense(d.weight, 0, 7, 0)],
                      coding="stcb", T=4, input_max=16),
        "tsc": Model([c1_if, pool, Conv2d(c2.weight, 1, 6, 0, in_shape=(4, 3, 3)), Dense(d.weight, 0, 7, 0)],
                     coding="tsc", T=5, encoding="tsc", input_max=16, readout="membrane"),
    }


ZOO = _zoo()


@pytest.mark.parametrize("name", sorted(ZOO))
def test_schema2_round_trip_is_byte_identical(tmp_path, name):
    m = ZOO[name]
    golden.save_model(m, tmp_path / "a.npz")
    m2 = golden.load_model(tmp_path / "a.npz")
    assert m2 == m and m2.input_shape == (1, 6, 6) and [l.kind for l in m2.layers] == [l.kind for l in m.layers]
    golden.save_model(m2, tmp_path / "b.npz")
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    with np.load(tmp_path / "a.npz") as z:
        meta = json.loads(str(z["meta"]))
        assert meta["schema"] == 2 and meta["input_shape"] == [1, 6, 6]
        assert not any(k.startswith("layer1.") for k in z.files)          # the pool has no arrays
    assert meta["layers"][0] == {"type": "conv2d", "in_shape": [1, 6, 6], "out_shape": [4, 6, 6], "kernel": 3,
                                 "stride": 1, "padding": 1, "reset": "subtract",
                                 "leak": [7, 3] if name in ("rate", "direct") else None}
    assert meta["layers"][1] == {"type": "maxpool2d", "in_shape": [4, 6, 6], "out_shape": [4, 3, 3], "kernel": 2}
    x = np.random.default_rng(0).integers(0, 17, (3, 36))
    r1, r2 = golden.run(m, x, lanes=4, record=True), golden.run(m2, x, lanes=4, record=True)
    assert r1.predictions.tolist() == r2.predictions.tolist()
    assert all(r1.counters[k].tolist() == r2.counters[k].tolist() for k in perf.COUNTERS)


def schema1_file(name: str, path: Path) -> Path:
    """A schema-1 model file as golden wrote it before schema 2: tests/data/schema1/models.json holds the
    meta entry and arrays of the files golden wrote then (make_fixtures.py); this writes the same .npz
    entries with numpy's own format writer, not golden's."""
    spec = json.loads((DATA / "models.json").read_text())[name]
    with zipfile.ZipFile(path, "w") as zf:
        entries = {"meta": np.array(json.dumps(spec["meta"], sort_keys=True))}
        entries.update({k: np.array(v, dtype=spec["dtypes"][k]) for k, v in spec["arrays"].items()})
        for key, arr in entries.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, arr, allow_pickle=False)
            zf.writestr(f"{key}.npy", buf.getvalue())
    return path


@pytest.mark.parametrize("name", ["rate_count", "direct_membrane", "stcb_kernel", "tsc"])
def test_schema1_files_load_and_run_unchanged(name, tmp_path):
    """Files written by golden before schema 2 (tests/data/schema1, with the outputs it computed then)."""
    expected = json.loads((DATA / "expected.json").read_text())[name]
    m = golden.load_model(schema1_file(name, tmp_path / f"{name}.npz"))
    assert json.loads((DATA / "models.json").read_text())[name]["meta"]["schema"] == 1
    assert all(l.kind == "dense" and l.reset == "subtract" and l.leak is None for l in m.layers) and m.is_dense
    assert m.v_bits == expected["v_bits"]
    assert [[getattr(w, f) for f in ("acc_lo", "acc_hi", "current_lo", "current_hi", "v_lo", "v_hi", "acc_bits",
                                     "v_bits")] for w in m.widths] == expected["widths"]
    r = golden.run(m, np.array(expected["x"]), lanes=2, record=True)
    assert r.predictions.tolist() == expected["predictions"] and r.counts.tolist() == expected["counts"]
    assert r.membranes.tolist() == expected["membranes"]
    assert [v.tolist() for v in r.v_final] == expected["v_final"]
    if m.coding == "tsc":
        assert [e.tolist() for e in r.events] == expected["events"]
        assert [a.tolist() for a in r.activations] == expected["activations"]
    else:
        assert [s.tolist() for s in r.spikes] == expected["spikes"]
    assert all((c["acc_reads"] == 0).all() and (c["acc_writes"] == 0).all() for c in r.layer_counters)


def _rewrite(src: Path, dst: Path, meta_fn=None, arrays=None, drop=()):
    with np.load(src) as z:
        files = {k: z[k] for k in z.files}
    meta = json.loads(str(files["meta"]))
    if meta_fn:
        meta_fn(meta)
    files["meta"] = np.array(json.dumps(meta))
    files.update(arrays or {})
    for k in drop:
        files.pop(k)
    np.savez(dst, **files)
    return dst


def _set(path, value):
    def f(meta):
        d = meta
        for k in path[:-1]:
            d = d[k]
        if value is KeyError:
            del d[path[-1]]
        else:
            d[path[-1]] = value
    return f


BAD_FILES = [
    ("type", _set(["layers", 0, "type"], "conv3d"), {}, (), "layer 0: type must be one of dense, conv2d, maxpool2d"),
    ("type missing", _set(["layers", 0, "type"], KeyError), {}, (), "layer 0: type must be one of"),
    ("inputs key", _set(["layers", 2, "inputs"], [1]), {}, (), "layer 2: conv2d entry has unknown 'inputs'"),
    ("stride missing", _set(["layers", 2, "stride"], KeyError), {}, (), "layer 2: conv2d entry lacks stride"),
    ("kernel bool", _set(["layers", 1, "kernel"], True), {}, (), "layer 1: kernel must be an integer, got True"),
    ("padding float", _set(["layers", 0, "padding"], 1.0), {}, (), "layer 0: padding must be an integer, got 1.0"),
    ("stride range", _set(["layers", 2, "stride"], 0), {}, (), "layer 2: stride must be an integer in 1..16, got 0"),
    ("padding range", _set(["layers", 0, "padding"], 3), {}, (), "layer 0: padding must be an integer in 0..2, got 3"),
    ("in_shape 2-D", _set(["layers", 1, "in_shape"], [4, 6]), {}, (), r"layer 1: in_shape must be \[C, H, W\]"),
    ("in_shape huge", _set(["layers", 1, "in_shape"], [4, 10 ** 30, 6]), {}, (), "layer 1: in_shape must hold integers"),
    ("out_shape lie", _set(["layers", 1, "out_shape"], [4, 2, 2]), {}, (),
     r"layer 1: out_shape \[4, 2, 2\] does not match \[4, 3, 3\] computed from in_shape \[4, 6, 6\]"),
    ("conv out_shape lie", _set(["layers", 0, "out_shape"], [4, 5, 5]), {}, (), r"layer 0: out_shape \[4, 5, 5\]"),
    ("pool divisibility", _set(["layers", 1, "kernel"], 4), {}, (), "layer 1: maxpool2d kernel 4 must divide"),
    ("chain", lambda m: (_set(["layers", 2, "in_shape"], [4, 4, 4])(m), _set(["layers", 2, "out_shape"], [3, 3, 3])(m)),
     {}, (), r"layer 2: in_shape \[4, 4, 4\] does not match layer 1 \(maxpool2d\) out_shape \[4, 3, 3\]"),
    ("reset", _set(["layers", 3, "reset"], "hard"), {}, (), "layer 3: reset must be one of 'subtract', 'zero'"),
    ("reset type", _set(["layers", 0, "reset"], 0), {}, (), "layer 0: reset must be one of"),
    ("leak shape", _set(["layers", 0, "leak"], [7]), {}, (), r"layer 0: leak must be null or \[num, shift\]"),
    ("leak bool", _set(["layers", 0, "leak"], [True, 3]), {}, (), r"layer 0: leak must be null or \[num, shift\]"),
    ("leak range", _set(["layers", 0, "leak"], [9, 3]), {}, (), r"layer 0: leak num must be in 0..2\*\*shift = 8"),
    ("leak missing", _set(["layers", 3, "leak"], KeyError), {}, (), "layer 3: dense entry lacks leak"),
    ("input_shape missing", _set(["input_shape"], KeyError), {}, (), "metadata lacks input_shape"),
    ("input_shape wrong", _set(["input_shape"], [36]), {}, (), r"input_shape \[36\] must equal layer 0's in_shape"),
    ("pool with arrays", None, {"layer1.weight": np.ones((1, 1), np.int64)}, (), "unexpected entries layer1.weight"),
    ("conv weight shape", None, {"layer2.weight": np.ones((3, 4, 3, 3), np.int64)}, (),
     r"layer 2: weight shape \(3, 4, 3, 3\) does not match metadata \(Co, C, K, K\) = \(3, 4, 2, 2\)"),
    ("conv bias shape", None, {"layer0.bias": np.ones(3, np.int64)}, (), r"layer 0: bias must have shape \(4,\)"),
    ("conv threshold 0", None, {"layer2.threshold": np.zeros(3, np.int64)}, (),
     "layer 2: threshold must be > 0, channel 0 has 0"),
    ("conv float weight", None, {"layer0.weight": np.ones((4, 1, 3, 3))}, (), "layer 0: weight must be an integer"),
    ("conv missing v_init", None, {}, ("layer2.v_init",), "layer 2: missing array 'v_init'"),
    ("dense type on conv arrays", _set(["layers", 0], {"type": "dense", "n_in": 36, "n_out": 4, "reset": "subtract",
                                                       "leak": None}), {}, (),
     r"layer 0: weight shape \(4, 1, 3, 3\) does not match metadata n_out=4, n_in=36"),
]


@pytest.mark.parametrize("name, meta_fn, arrays, drop, msg", BAD_FILES, ids=[c[0] for c in BAD_FILES])
def test_bad_schema2_fields(tmp_path, name, meta_fn, arrays, drop, msg):
    good = tmp_path / "good.npz"
    golden.save_model(ZOO["rate"], good)
    bad = _rewrite(good, tmp_path / "bad.npz", meta_fn, arrays, drop)
    with pytest.raises(ModelError, match=msg) as e:
        golden.load_model(bad)
    assert "\n" not in str(e.value)


def test_schema1_layer_entries_are_strict(tmp_path):
    p = _rewrite(schema1_file("rate_count", tmp_path / "rc.npz"), tmp_path / "s1.npz",
                 _set(["layers", 0, "leak"], [1, 1]))
    with pytest.raises(ModelError, match="layer 0: a schema-1 layer entry holds exactly n_in and n_out"):
        golden.load_model(p)


# ---------------------------------------------------------------------------------------------
# the hardware core refuses what it cannot run yet

@pytest.mark.parametrize("model, msg", [
    (Model([Conv2d(np.ones((2, 1, 3, 3), int), leak=(3, 2), in_shape=(1, 4, 4), padding=1),
            Dense(np.ones((1, 32), int))], T=2, coding="stcb", input_max=1),
     r"layer 0: leak=\[3, 2\] on an stcb conv2d layer is not supported by the hardware core yet"),
    (Model([Conv2d(np.ones((2, 2, 3, 3), int), in_shape=(2, 4, 4), padding=1), Dense(np.ones((1, 32), int))],
           T=2, input_max=1, encoding="direct"),
     "layer 0: direct input into a conv2d layer needs one input channel on the hardware core, not 2"),
])
def test_core_geometry_refuses_schema2_features(model, msg):
    with pytest.raises(ConfigError, match=msg):
        CoreGeometry(model, 4)


def test_stcb_spatial_layers_run_at_banks_1_only():
    CoreGeometry(ZOO["stcb"], 4)
    with pytest.raises(ConfigError, match=r"layer 0: banks > 1 on an stcb conv2d layer is not built yet"):
        CoreGeometry(ZOO["stcb"], 4, banks=3)


def test_core_geometry_builds_rate_conv_models():
    """conv2d and maxpool2d run on the core in rate coding: maps by packed channel words."""
    m = Model([Conv2d(np.ones((5, 1, 3, 3), int), in_shape=(1, 4, 6), padding=1), MaxPool2d(2, in_shape=(5, 4, 6)),
               Dense(np.ones((3, 30), int))], T=2, input_max=1)
    g = CoreGeometry(m, 4)
    assert [l.kind for l in g.layers] == ["conv2d", "maxpool2d", "dense"]
    # N = Gc * Ho * Wo words; the conv map's packed (og, y, x) has bx = 3, by = 2, the pool's bx = 2, by = 1,
    # and the dense layer has a weight column per packed index of the pool's map: (Gc << 3) * P
    assert [l.words for l in g.layers[:2]] == [2 * 4 * 6, 2 * 2 * 3] and g.acc_depth == 48
    assert g.layers[0].pack == (3, 2) and g.layers[1].pack == (2, 1) and g.layers[2].n_in == (2 << 3) * 4


def test_core_geometry_builds_leaky_conv_models():
    """A leak on a conv2d layer runs on the core (the sweep feeds the IfUnit's multiplier): the leak table
    and the manifest's leaks carry it, a layer without one runs the identity at the shared shift."""
    m = Model([Conv2d(np.ones((2, 1, 3, 3), int), in_shape=(1, 4, 4), padding=1, leak=(3, 2), reset="zero"),
               Dense(np.ones((1, 32), int))], T=2, input_max=1)
    g = CoreGeometry(m, 4)
    assert g.leak_table == ((3, 2), (4, 2)) and g.leak_bits == 3        # the identity's num 4
    assert g.parameters()["leaks"] == [[3, 2], None] and g.parameters()["resets"] == ["zero", "subtract"]


def test_core_geometry_still_builds_dense_models(tmp_path):
    m = golden.load_model(schema1_file("rate_count", tmp_path / "rc.npz"))
    assert CoreGeometry(m, 4).weight_depth > 0
    # reset "zero" runs on the core (a multiplexer in the neuron units) and the manifest says which layers
    z = Model([Dense([[1]]), Dense([[1]], reset="zero")], T=2, input_max=1)
    assert CoreGeometry(z, 4).parameters()["resets"] == ["subtract", "zero"]
    # so does the leak (a multiplier and a shift): the manifest lists each layer's, the multiplier's width
    # is the widest num's
    lk = Model([Dense([[1]], leak=(3, 2)), Dense([[1]]), Dense([[1]], leak=(0, 0))], T=2, input_max=1)
    prm = CoreGeometry(lk, 4).parameters()
    assert (prm["leaks"], prm["leak_bits"]) == ([[3, 2], None, [0, 0]], 2)
    assert CoreGeometry(z, 4).parameters()["leak_bits"] == 0
    # the hardware's table: IF layers run an identity; with one shift shared by the leaky layers it is
    # (2**s, s), so the shift is a constant (the multiplier's num then needs s + 1 bits)
    g = CoreGeometry(lk, 4)
    assert (g.leak_table, g.leak_shift_const) == (((3, 2), (1, 0), (0, 0)), False)
    one = Model([Dense([[1]], leak=(171, 8)), Dense([[1]])], T=2, input_max=1)
    g = CoreGeometry(one, 4)
    assert (g.leak_table, g.leak_shift_const, g.leak_bits) == (((171, 8), (256, 8)), True, 9)


def test_first_spike_mismatch_names_the_position():
    m = ZOO["rate"]
    x = np.random.default_rng(1).integers(0, 17, (2, 36))
    r = golden.run(m, x, record=True)
    got = [s.copy() for s in r.spikes]
    j = (2 * 6 + 4) * 6 + 1                                  # channel 2, y 4, x 1 of layer 0's (4, 6, 6)
    got[0][1, 3, j] ^= 1
    mm = golden.first_spike_mismatch(r.spikes, got, shapes=[l.out_shape for l in m.layers])
    assert (mm.sample, mm.layer, mm.t, mm.neuron, mm.position) == (1, 0, 3, j, (2, 4, 1))
    assert "neuron 97 (c, y, x) = (2, 4, 1)" in str(mm)
    assert golden.first_spike_mismatch(r.spikes, got).position is None


def test_replace_keeps_or_drops_the_input_shape():
    m = ZOO["rate"]
    assert m.replace(T=2).input_shape == (1, 6, 6) and m.replace(T=2).T == 2
    d = Model([Dense(np.ones((2, 16), int))], T=2, input_max=1, input_shape=[1, 4, 4])
    assert d.replace(T=3).input_shape == (1, 4, 4)
    assert d.replace(layers=[Dense(np.ones((2, 5), int))]).input_shape == (5,)       # no longer 16 values
    assert m.arch == "4c3-mp2-3c2p0-5" and repr(m).startswith("Model(1x6x6-4c3-mp2-3c2p0-5, coding='rate'")
