"""golden, coding="stcb": identical to rate with h=[1], the STEB kernel, train-level counters."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import golden
from golden import Dense, Model, ModelError, perf
from test_golden import step_major_oracle


@st.composite
def nets(draw):
    n_layers = draw(st.integers(1, 3))
    sizes = [draw(st.integers(1, 7)) for _ in range(n_layers + 1)]
    T = draw(st.integers(1, 8))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    layers = [Dense(rng.integers(-8, 8, (b, a)), rng.integers(-3, 4, b), rng.integers(1, 12, b),
                    rng.integers(-3, 4, b)) for a, b in zip(sizes, sizes[1:])]
    kw = dict(T=T, input_max=int(rng.integers(1, 9)), encoding=draw(st.sampled_from(["rate", "direct"])),
              readout=draw(st.sampled_from(["count", "membrane"])), weight_bits=4)
    x = rng.integers(0, kw["input_max"] + 1, (4, sizes[0]))
    return layers, kw, x, rng


def train_level_oracle(model: Model, x: np.ndarray):
    """STCB the way the hardware does it, written independently of golden.engine: per sample and layer,
    every active input train (a T-slot 0/1 word; direct input: its value in every slot) adds its weight
    into the T-slot current of every neuron, the bias enters every slot, the kernel h runs over the
    slots, then the IF over the slots gives the output train. Plain Python ints."""
    T, M = model.T, model.input_max
    outs = []
    for xs in x.tolist():
        if model.encoding == "rate":
            trains = []
            for xi in xs:
                u, bits = 0, []
                for _ in range(T):
                    u += xi
                    bits.append(1 if u >= M else 0)
                    u -= M * bits[-1]
                trains.append(bits)
        else:
            trains = [[xi] * T for xi in xs]
        V_all, spikes_all = [], []
        for li, l in enumerate(model.layers):
            fire = not (li == len(model.layers) - 1 and model.readout == "membrane")
            cur = [[int(l.bias[j])] * T for j in range(l.n_out)]
            for i, tr in enumerate(trains):
                if any(tr):
                    for j in range(l.n_out):
                        for t in range(T):
                            cur[j][t] += int(l.weight[j, i]) * tr[t]
            h = [int(v) for v in l.h]
            out_trains, V = [], []
            for j in range(l.n_out):
                v, bits = int(l.v_init[j]), []
                for t in range(T):
                    v += sum(h[k] * cur[j][t - k] for k in range(len(h)) if t - k >= 0)
                    s = 1 if (fire and v >= int(l.threshold[j])) else 0
                    v -= int(l.threshold[j]) * s
                    bits.append(s)
                out_trains.append(bits)
                V.append(v)
            V_all.append(V)
            spikes_all.append([[out_trains[j][t] for j in range(l.n_out)] for t in range(T)])
            trains = out_trains
        outs.append((V_all, spikes_all))
    return outs


@settings(max_examples=60, deadline=None)
@given(nets(), st.sampled_from([1, 2, 8]), st.booleans())
def test_stcb_equals_an_independent_train_level_reference(net, P, kernel):
    layers, kw, x, rng = net
    if kernel:
        layers = [Dense(l.weight, l.bias, l.threshold, l.v_init, h=rng.integers(-2, 3, int(rng.integers(1, 4))))
                  for l in layers]
        if all(not l.has_kernel for l in layers) or any(len(l.h) > kw["T"] for l in layers):
            layers = [Dense(l.weight, l.bias, l.threshold, l.v_init, h=[1, -1][:kw["T"]] or [1]) for l in layers]
    s = golden.run(Model(layers, coding="stcb", **kw), x, lanes=P, record=True)
    for b, (V, spikes) in enumerate(train_level_oracle(Model(layers, coding="stcb", **kw), x)):
        for li in range(len(layers)):
            assert s.v_final[li][b].tolist() == V[li], (b, li)
            assert s.spikes[li][b].tolist() == spikes[li], (b, li)


@settings(max_examples=40, deadline=None)
@given(nets(), st.sampled_from([1, 2, 8]))
def test_h1_train_level_reference_equals_the_step_major_rate_reference(net, P):
    # two independent plain-Python references: the train-level one (stcb) and test_golden's step-major
    # one (rate); with h = [1] they must agree, and golden's counters must show the stcb saving
    layers, kw, x, _ = net
    m = Model(layers, coding="stcb", **kw)
    for (V, spikes), (Vr, _, spikes_r) in zip(train_level_oracle(m, x), step_major_oracle(m.replace(coding="rate"), x)):
        assert V == Vr and spikes == spikes_r
    r = golden.run(m.replace(coding="rate"), x, lanes=P)
    s = golden.run(m, x, lanes=P)
    assert (s.counters["weight_reads"] <= r.counters["weight_reads"]).all()
    assert s.counters["syn_ops"].tolist() == r.counters["syn_ops"].tolist()   # same additions, fewer reads


def test_retargeting_the_same_layers():
    l = [Dense([[1, 2], [3, -1]], 0, 2, 0)]
    m = Model(l, coding="rate", T=4, input_max=3)
    s = Model(m.layers, coding="stcb", T=m.T, input_max=m.input_max)
    assert s.layers == m.layers and s.coding == "stcb"


def test_kernel_hand_computed():
    # one input always spiking (x = input_max), w = 3, bias 1: I[t] = 4; h = [2, -1]:
    # I' = [8, 4, 4]; V: 8 -> spike (thr 5), 3; 7 -> spike, 2; 6 -> spike, 1
    m = Model([Dense([[3]], 1, 5, 0, h=[2, -1])], coding="stcb", T=3, input_max=2, weight_bits=4)
    r = golden.run(m, np.array([[2]]), record=True)
    assert r.spikes[0][0, :, 0].tolist() == [1, 1, 1]
    assert r.membranes.tolist() == [[1]]


def test_kernel_matches_direct_convolution():
    rng = np.random.default_rng(5)
    h = np.array([1, -2, 3])
    l = Dense(rng.integers(-6, 6, (4, 5)), rng.integers(-2, 3, 4), 7, 1, h=h)
    m = Model([l], coding="stcb", T=6, input_max=4, weight_bits=4, readout="membrane")
    x = rng.integers(0, 5, (3, 5))
    r = golden.run(m, x, record=True)
    s_in = r.input_spikes.astype(np.int64)
    I = s_in @ l.weight.T + l.bias                              # (B, T, n)
    Ip = np.zeros_like(I)
    for t in range(6):
        for k in range(3):
            if t - k >= 0:
                Ip[:, t] += h[k] * I[:, t - k]
    V = np.full((3, 4), 1) + Ip.sum(axis=1)                     # membrane readout: no firing
    assert r.membranes.tolist() == V.tolist()


def test_train_level_counters_hand_computed():
    # inputs: x=[2, 0, 1], input_max=2, T=2: trains [11, 00, 01] -> 2 active trains, 3 spikes
    l0 = Dense(np.ones((3, 3), int), 0, 100, 0)
    m = Model([l0], coding="stcb", T=2, input_max=2, readout="membrane")
    r = golden.run(m, np.array([[2, 0, 1]]), lanes=2)
    c, e = r.layer_counters[0], r.encoder_counters
    G = 2
    assert c["weight_reads"].tolist() == [G * 2] and c["event_reads"].tolist() == [G * 2]
    assert c["syn_ops"].tolist() == [3 * 3]
    assert c["state_reads"].tolist() == [0] and c["state_writes"].tolist() == [G]
    assert e["event_writes"].tolist() == [2] and e["spikes"].tolist() == [3]
    # load; the train encoder's pass over 2 words; the layer: groups start T*taps = 2 cycles apart, each
    # with its 2 ops; the argmax, 2 groups read, 3 beats
    assert r.counters["cycles"].tolist() == [3 + perf.LOAD_DRAIN + 2 + perf.train_encoder_drain(2)
                                             + perf.LAYER_SETUP + (G - 1) * 2 + 2 + perf.stcb_layer_drain(2, 1, False)
                                             + perf.finish_cycles(2) + G * perf.READ_CYCLES_PER_GROUP + 3]
    assert set(r.counters) == set(perf.COUNTERS)


@pytest.mark.parametrize("coding", ["rate", "tsc"])
def test_other_codings_reject_a_kernel(coding):
    kw = dict(coding=coding, T=3, input_max=4)
    if coding == "tsc":
        kw.update(encoding="tsc", readout="membrane")
    with pytest.raises(ModelError, match=rf"layer 0: a temporal kernel h=\[1, 1\] needs coding 'stcb'"):
        Model([Dense([[1, 2]], 0, 3, 0, h=[1, 1])], **kw)


def test_kernel_validation_and_round_trip(tmp_path):
    with pytest.raises(ModelError, match="h=.* must have at most T=2 taps"):
        Model([Dense([[1]], 0, 3, 0, h=[1, 1, 1])], coding="stcb", T=2, input_max=1)
    with pytest.raises(ModelError, match=r"within weight_bits=4 range \[-8, 7\]"):
        Model([Dense([[1]], 0, 3, 0, h=[9])], coding="stcb", T=2, input_max=1, weight_bits=4)
    with pytest.raises(ModelError, match="h must have 1 to 16 taps"):
        Dense([[1]], h=np.array([], dtype=np.int64))
    m = Model([Dense([[1, -1]], 0, 3, 0, h=[2, -1])], coding="stcb", T=4, input_max=3)
    golden.save_model(m, tmp_path / "k.npz")
    assert golden.load_model(tmp_path / "k.npz") == m
    assert m.widths[0].v_bits >= Model([Dense([[1, -1]], 0, 3, 0)], coding="stcb", T=4, input_max=3).widths[0].v_bits
