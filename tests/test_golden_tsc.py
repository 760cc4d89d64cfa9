"""golden, coding="tsc": ON/OFF events, the exact integer-ANN equivalence, counters, validation."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import golden
from golden import Dense, Model, ModelError, perf


def tsc_model(layers, T, input_max, **kw):
    return Model(layers, coding="tsc", encoding="tsc", readout="membrane", T=T, input_max=input_max, **kw)


def test_hand_computed_window():
    # T=4 (Q=3), input_max=6: q = (x*3 + 3)//6 -> x=[6, 2, 0] -> q=[3, 1, 0]
    # events: input0 ON t0, OFF t3; input1 ON t0, OFF t1; input2 none
    # layer0: W=[[2,-1,5],[1,1,1]], b=[1,0], theta=[2,3]
    #   C: t0 = [1, 2] -> V = [2, 2]; t1 OFF in1: C = [2, 1] -> V = [4, 3]; t2: V = [6, 4];
    #   t3 OFF in0: C = [0, 0] -> V = [6, 4]  (= b + W q = [1+6-1, 0+3+1])
    #   a = clamp(floor(V/theta), 0, 3) = [3, 1]
    # layer1 (membrane): W=[[1,-2]], b=[0] -> V = 1*3 - 2*1 = 1
    l0 = Dense([[2, -1, 5], [1, 1, 1]], [1, 0], [2, 3], 0)
    l1 = Dense([[1, -2]], 0, 1, 0)
    m = tsc_model([l0, l1], T=4, input_max=6)
    r = golden.run(m, np.array([[6, 2, 0]]), record=True)
    assert r.input_events[0].tolist() == [[1, 1, 0], [0, -1, 0], [0, 0, 0], [-1, 0, 0]]
    assert r.v_final[0].tolist() == [[6, 4]]
    assert r.activations[0].tolist() == [[3, 1]]
    assert r.events[0][0].tolist() == [[1, 1], [0, -1], [0, 0], [-1, 0]]
    assert r.membranes.tolist() == [[1]] and r.predictions.tolist() == [0]
    # counters at P=1: layer0 sees 2 ONs at t0, 1 OFF at t1 and t3 -> 4 events x 2 groups
    assert r.layer_counters[0]["weight_reads"].tolist() == [8]
    assert r.layer_counters[1]["weight_reads"].tolist() == [4]
    assert r.encoder_counters["spikes"].tolist() == [4]
    assert r.layer_counters[0]["spikes"].tolist() == [4] and r.counters["spikes"].tolist() == [4]
    G0, G1, T = 2, 1, 4
    setup = perf.LAYER_SETUP + perf.layer_drain("tsc", "tsc")
    cycles = (3 + perf.LOAD_DRAIN + T * (3 + perf.GEN_DRAIN)              # load + input generator
              + T * setup + G0 * (2 + 1 + 1 + 1)                            # layer0: events [2,1,0,1]
              + T * (G0 + perf.GEN_DRAIN)                                    # layer0's output generator
              + T * setup + G1 * (2 + 1 + 1 + 1)                            # layer1: events [2,1,0,1]
              + perf.finish_cycles(1) + perf.READ_CYCLES_PER_GROUP * 1 + 1)
    assert r.counters["cycles"].tolist() == [cycles]


@st.composite
def tsc_models(draw):
    n_layers = draw(st.integers(1, 3))
    sizes = [draw(st.integers(1, 8)) for _ in range(n_layers + 1)]
    input_max = draw(st.integers(1, 20))
    T = draw(st.integers(2, input_max + 1))
    wb = draw(st.integers(2, 8))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    lim = 1 << (wb - 1)
    layers = [Dense(rng.integers(-lim, lim, (b, a)), rng.integers(-20, 20, b), rng.integers(1, 4 * lim, b), 0)
              for a, b in zip(sizes, sizes[1:])]
    return tsc_model(layers, T, input_max, weight_bits=wb), rng.integers(0, input_max + 1, (4, sizes[0]))


@settings(max_examples=80, deadline=None)
@given(tsc_models())
def test_tsc_equals_integer_ann(mx):
    model, x = mx
    Q, M = model.T - 1, model.input_max
    a = (x * Q + M // 2) // M                                  # independent of golden's helpers
    for l in model.layers[:-1]:
        a = np.clip(np.floor_divide(a @ l.weight.T + l.bias, l.threshold), 0, Q)
    V = a @ model.layers[-1].weight.T + model.layers[-1].bias
    r = golden.run(model, x)
    assert r.membranes.tolist() == V.tolist()
    assert r.predictions.tolist() == np.argmax(V, axis=1).tolist()


@settings(max_examples=60, deadline=None)
@given(tsc_models(), st.sampled_from([1, 2, 4, 8]))
def test_at_most_two_weight_reads_and_additions_per_synapse(mx, P):
    model, x = mx
    r = golden.run(model, x, lanes=P)
    for l, c in zip(model.layers, r.layer_counters):
        G = perf.groups(l.n_out, P)
        assert (c["weight_reads"] <= 2 * G * l.n_in).all()
        assert (c["syn_ops"] <= 2 * l.n_out * l.n_in).all()


def test_weight_reads_do_not_grow_with_the_window():
    rng = np.random.default_rng(4)
    layers = [Dense(rng.integers(-8, 8, (6, 5)), 0, 3, 0), Dense(rng.integers(-8, 8, (3, 6)), 0, 1, 0)]
    x = np.full((1, 5), 30)                                   # all inputs at full scale: q = Q > 0
    reads = {T: golden.run(tsc_model(layers, T, 30), x).layer_counters[0]["weight_reads"].tolist()
             for T in (3, 9, 31)}
    # every input is active at every window length: exactly 2 reads per synapse-group (P=1: 6 groups)
    assert reads == {3: [2 * 6 * 5], 9: [2 * 6 * 5], 31: [2 * 6 * 5]}


@pytest.mark.parametrize("kwargs, msg", [
    (dict(T=1), "tsc needs a window T >= 2"),
    (dict(T=9, input_max=7), r"Q = T - 1 = 8 is outside the range of the input encoding"),
    (dict(readout="count"), "coding 'tsc' needs readout 'membrane'"),
    (dict(encoding="rate"), "coding 'tsc' needs encoding 'tsc'"),
    (dict(v_bits=6), r"threshold \* Q = 90 cannot be represented in v_bits=6"),
])
def test_tsc_validation(kwargs, msg):
    args = dict(coding="tsc", encoding="tsc", readout="membrane", T=4, input_max=7)
    args.update(kwargs)
    with pytest.raises(ModelError, match=msg):
        Model([Dense([[1, 2]], 0, 30, 0)], **args)


def test_tsc_rejects_v_init():
    with pytest.raises(ModelError, match="layer 0: tsc layers start from V = bias; v_init must be 0"):
        tsc_model([Dense([[1, 2]], 0, 3, 1)], T=3, input_max=4)


def test_tsc_round_trip(tmp_path):
    m = tsc_model([Dense([[1, -2], [3, 1]], [1, 0], [2, 5], 0)], T=5, input_max=9)
    golden.save_model(m, tmp_path / "t.npz")
    m2 = golden.load_model(tmp_path / "t.npz")
    assert m2 == m and m2.Q == 4
