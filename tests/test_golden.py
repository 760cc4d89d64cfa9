"""golden: semantics, widths, counters, file format."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st, HealthCheck

import golden
from golden import Dense, Model, ModelError, InputError, perf


def step_major_oracle(model: Model, x: np.ndarray):
    """Independent per-sample, per-step, per-layer reference in plain Python ints (design.md order)."""
    outs = []
    for xs in x.tolist():
        u = [0] * len(xs)
        V = [list(map(int, l.v_init)) for l in model.layers]
        counts = [[0] * l.n_out for l in model.layers]
        spikes = [[[0] * l.n_out for _ in range(model.T)] for l in model.layers]
        for t in range(model.T):
            if model.encoding == "rate":
                s_in = []
                for i, xi in enumerate(xs):
                    u[i] += xi
                    s = 1 if u[i] >= model.input_max else 0
                    u[i] -= model.input_max * s
                    s_in.append(s)
            else:
                s_in = list(xs)
            for li, l in enumerate(model.layers):
                fire = not (li == len(model.layers) - 1 and model.readout == "membrane")
                s_out = []
                for j in range(l.n_out):
                    I = int(l.bias[j]) + sum(int(l.weight[j, i]) * s_in[i] for i in range(l.n_in))
                    V[li][j] += I
                    s = 1 if (fire and V[li][j] >= int(l.threshold[j])) else 0
                    V[li][j] -= int(l.threshold[j]) * s
                    counts[li][j] += s
                    spikes[li][t][j] = s
                    s_out.append(s)
                s_in = s_out
        outs.append((V, counts, spikes))
    return outs


@st.composite
def small_models(draw, encoding=None, readout=None):
    n_layers = draw(st.integers(1, 3))
    sizes = [draw(st.integers(1, 7)) for _ in range(n_layers + 1)]
    wb = draw(st.integers(2, 8))
    T = draw(st.integers(1, 6))
    input_max = draw(st.integers(1, 20))
    enc = encoding or draw(st.sampled_from(["rate", "direct"]))
    ro = readout or draw(st.sampled_from(["count", "membrane"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    layers = []
    for i in range(n_layers):
        n_in, n_out = sizes[i], sizes[i + 1]
        lim = 1 << (wb - 1)
        layers.append(Dense(rng.integers(-lim, lim, (n_out, n_in)), rng.integers(-10, 10, n_out),
                            rng.integers(1, 3 * lim, n_out), rng.integers(-5, 5, n_out)))
    model = Model(layers, T=T, encoding=enc, input_max=input_max, readout=ro, weight_bits=wb)
    x = rng.integers(0, input_max + 1, (draw(st.integers(1, 4)), sizes[0]))
    return model, x


# ---------------------------------------------------------------------------------------------
# hand-computed examples

def test_hand_computed_if_rate():
    # 2 inputs, 1 neuron, weights [3, 2], threshold 4, bias 0, v_init 0, T=4, input_max=2.
    # rate encoder: x=[2,1]: input0 spikes every step; input1: u=1,2->spike,1,2->spike -> [0,1,0,1]
    m = Model([Dense([[3, 2]], 0, 4, 0)], T=4, input_max=2)
    r = golden.run(m, np.array([[2, 1]]), record=True)
    np.testing.assert_array_equal(r.input_spikes[0], [[1, 0], [1, 1], [1, 0], [1, 1]])
    # I = [3,5,3,5]; V: 3 ->no; 8 -> spike, 4; 7 -> spike, 3; 8 -> spike, 4
    np.testing.assert_array_equal(r.spikes[0][0, :, 0], [0, 1, 1, 1])
    assert r.counts.tolist() == [[3]]
    assert r.membranes.tolist() == [[4]]
    assert r.predictions.tolist() == [0]


def test_hand_computed_two_layers_direct_membrane():
    # direct, T=2: layer0 I = [1*3 + 2*1, -1*3 + 0 + 1] = [5, -2]; thr [4, 1]
    # t0: V=[5,-2] -> s=[1,0], V=[1,-2]; t1: V=[6,-4] -> s=[1,0], V=[2,-4]
    # layer1 (membrane): W=[[2,5],[-1,1]], bias [0,1]: I per step = [2, 0] -> V=[4, 0] after 2 steps
    l0 = Dense([[1, 2], [-1, 0]], [0, 1], [4, 1], 0)
    l1 = Dense([[2, 5], [-1, 1]], [0, 1], 100, 0)
    m = Model([l0, l1], T=2, encoding="direct", input_max=3, readout="membrane")
    r = golden.run(m, np.array([[3, 1]]), record=True)
    np.testing.assert_array_equal(r.spikes[0][0], [[1, 0], [1, 0]])
    np.testing.assert_array_equal(r.spikes[1][0], [[0, 0], [0, 0]])
    assert r.v_final[0].tolist() == [[2, -4]]
    assert r.membranes.tolist() == [[4, 0]]
    assert r.counts.tolist() == [[0, 0]]
    assert r.predictions.tolist() == [0]


def test_v_init_and_residual_above_threshold():
    # one spike per step at most: V can stay above threshold after the subtraction
    m = Model([Dense([[10]], 0, 3, 2)], T=3, encoding="direct", input_max=1)
    r = golden.run(m, np.array([[1]]), record=True)
    # V: 12 -> s, 9; 19 -> s, 16; 26 -> s, 23
    assert r.spikes[0][0, :, 0].tolist() == [1, 1, 1]
    assert r.membranes.tolist() == [[23]]


def test_count_readout_ties_and_lexicographic_order():
    # three neurons, all count 1; membranes differ: [1, 3, 3] -> argmax is 1 (lowest of the tie)
    m = Model([Dense([[5], [7], [7]], 0, [4, 4, 4], 0)], T=1, encoding="direct", input_max=1)
    r = golden.run(m, np.array([[1]]))
    assert r.counts.tolist() == [[1, 1, 1]]
    assert r.membranes.tolist() == [[1, 3, 3]]
    assert r.predictions.tolist() == [1]
    # higher count beats higher membrane: neuron 0 fires twice, neuron 1 once with large residual
    m2 = Model([Dense([[4], [9]], 0, [2, 8], 0)], T=1, encoding="direct", input_max=1)
    r2 = golden.run(m2, np.array([[1]]))
    assert r2.counts.tolist() == [[1, 1]] and r2.membranes.tolist() == [[2, 1]]
    m3 = Model([Dense([[4], [9]], 0, [2, 8], 0)], T=2, encoding="direct", input_max=1)
    r3 = golden.run(m3, np.array([[1]]))
    # n0: 4->s,2; 6->s,4 (count 2, V 4); n1: 9->s,1; 10->s,2 (count 2, V 2) -> n0
    assert r3.counts.tolist() == [[2, 2]] and r3.membranes.tolist() == [[4, 2]]
    assert r3.predictions.tolist() == [0]


def test_membrane_ties_go_to_lowest_index():
    m = Model([Dense([[2], [2], [1]], 0, 1, 0)], T=1, encoding="direct", input_max=1, readout="membrane")
    assert golden.run(m, np.array([[1]])).predictions.tolist() == [0]


# ---------------------------------------------------------------------------------------------
# properties

@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_models())
def test_layer_major_equals_step_major(mx):
    model, x = mx
    r = golden.run(model, x, record=True)
    for b, (V, counts, spikes) in enumerate(step_major_oracle(model, x)):
        for li in range(len(model.layers)):
            assert r.spikes[li][b].tolist() == spikes[li]
            assert r.v_final[li][b].tolist() == V[li]
        assert r.counts[b].tolist() == counts[-1]


@settings(max_examples=60, deadline=None)
@given(small_models())
def test_count_bounds_and_widths_hold(mx):
    model, x = mx
    r = golden.run(model, x, record=True)
    assert ((r.counts >= 0) & (r.counts <= model.T)).all()
    for li, (w, v) in enumerate(zip(model.widths, r.v_final)):
        assert (v >= w.v_lo).all() and (v <= w.v_hi).all()
        assert (v >= -(1 << (model.v_bits - 1))).all() and (v < (1 << (model.v_bits - 1))).all()


@settings(max_examples=60, deadline=None)
@given(small_models(encoding="direct"))
def test_t1_direct_is_affine_then_threshold(mx):
    model, x = mx
    model = model.replace(T=1)
    r = golden.run(model, x, record=True)
    a = x
    for li, l in enumerate(model.layers):
        V = a @ l.weight.T + l.bias + l.v_init
        fire = not (li == len(model.layers) - 1 and model.readout == "membrane")
        s = (V >= l.threshold) & fire
        assert r.spikes[li][:, 0].tolist() == s.astype(int).tolist()
        assert r.v_final[li].tolist() == (V - l.threshold * s).tolist()
        a = s.astype(np.int64)


@settings(max_examples=40, deadline=None)
@given(small_models(), st.sampled_from([1, 2, 4, 8]))
def test_lanes_change_counters_only(mx, lanes):
    model, x = mx
    r1, rp = golden.run(model, x), golden.run(model, x, lanes=lanes)
    assert r1.predictions.tolist() == rp.predictions.tolist()
    assert r1.membranes.tolist() == rp.membranes.tolist()
    assert r1.counters["syn_ops"].tolist() == rp.counters["syn_ops"].tolist()
    assert r1.counters["spikes"].tolist() == rp.counters["spikes"].tolist()


# ---------------------------------------------------------------------------------------------
# counters

def test_counters_hand_computed():
    # 3 inputs -> 5 neurons -> 2 neurons, P=2, direct, T=2.
    l0 = Dense(np.ones((5, 3), int), 0, 1, 0)       # every neuron fires each step (x has 2 nonzeros)
    l1 = Dense(np.ones((2, 5), int), 0, 100, 0)     # never fires
    m = Model([l0, l1], T=2, encoding="direct", input_max=3)
    r = golden.run(m, np.array([[1, 0, 2]]), lanes=2)
    c = r.counters
    G0, G1 = 3, 1
    # layer0: E=2 events each step; layer1: E=5 spikes each step
    assert r.layer_counters[0]["weight_reads"].tolist() == [G0 * 2 * 2]
    assert r.layer_counters[1]["weight_reads"].tolist() == [G1 * 5 * 2]
    assert c["weight_reads"].tolist() == [12 + 10]
    assert c["syn_ops"].tolist() == [5 * 2 * 2 + 2 * 5 * 2]
    assert c["state_reads"].tolist() == [(G0 + G1) * 1]
    assert c["state_writes"].tolist() == [(G0 + G1) * 2]
    assert c["param_reads"].tolist() == [(G0 + G1) * 2]
    assert c["neuron_updates"].tolist() == [(5 + 2) * 2]
    # event entries: the inputs' two words each hold a non-zero value (written at load); layer 0's
    # three groups each spike at both steps; every entry of a step is read once per consuming group
    assert c["event_writes"].tolist() == [2 + 3 * 2]
    assert c["event_reads"].tolist() == [G0 * 2 * 2 + G1 * 3 * 2]
    assert c["spikes"].tolist() == [10]
    assert c["input_writes"].tolist() == [0]
    per_phase = perf.LAYER_SETUP + perf.layer_drain("rate", "direct")
    expected_cycles = (3 + perf.LOAD_DRAIN + 2 * (per_phase + G0 * 2) + 2 * (per_phase + G1 * 5)
                       + perf.finish_cycles(2) + perf.READ_CYCLES_PER_GROUP * G1 + 2)
    assert c["cycles"].tolist() == [expected_cycles]


def test_counters_rate_encoder_and_empty_steps():
    # input 0 of 2: no events -> each group still costs one null op
    m = Model([Dense(np.ones((3, 2), int), 0, 1, 0)], T=3, input_max=4)
    r = golden.run(m, np.array([[0, 0], [4, 2]]), lanes=2)
    enc, c = r.encoder_counters, r.counters
    assert enc["spikes"].tolist() == [0, 3 + 1]                    # 4: every step; 2: step 1 only
    assert enc["state_writes"].tolist() == [3, 3]                   # G_in=1 word per step
    assert enc["cycles"].tolist() == [3 * (1 + perf.ENC_DRAIN)] * 2
    assert r.layer_counters[0]["weight_reads"].tolist() == [0, 2 * 4]
    G = 2
    per_phase = perf.LAYER_SETUP + perf.layer_drain("rate", "rate")
    ev = [[0, 0, 0], [1, 2, 1]]
    for b in range(2):
        layer = sum(per_phase + G * max(1, e) for e in ev[b])
        total = (2 + perf.LOAD_DRAIN + 3 * (1 + perf.ENC_DRAIN) + layer + perf.finish_cycles(2)
                 + perf.READ_CYCLES_PER_GROUP * G + 3)
        assert c["cycles"][b] == total
    # one input word: an entry at each step with a spike
    assert enc["event_writes"].tolist() == [0, 3] and r.layer_counters[0]["event_reads"].tolist() == [0, G * 3]
    assert c["syn_ops"].tolist() == [0, 3 * 4]


# ---------------------------------------------------------------------------------------------
# validation and widths

def test_widths_computed_and_v_bits_too_small():
    l = Dense([[100, 100]], 0, 50, 0)
    m = Model([l], T=4, input_max=1)
    # worst-case V: 4 steps x 200 = 800 -> 11 signed bits
    assert m.widths[0].v_hi == 800 and m.v_bits == 11
    with pytest.raises(ModelError, match=r"v_bits=10 is too small: layer 0 needs 11 bits"):
        Model([l], T=4, input_max=1, v_bits=10)


@pytest.mark.parametrize("kwargs, msg", [
    (dict(coding="spiky"), "coding must be one of"),
    (dict(encoding="poisson"), "encoding must be one of"),
    (dict(readout="max"), "readout must be one of"),
    (dict(T=0), "T must be an integer >= 1"),
    (dict(input_max=0), "input_max must be"),
    (dict(weight_bits=17), "weight_bits must be in 2..16"),
    (dict(weight_bits=2), r"layer 0: weight\[0, 0\] = 3 is outside weight_bits=2"),
])
def test_model_rejects(kwargs, msg):
    base = dict(T=2, input_max=3)
    base.update(kwargs)
    with pytest.raises(ModelError, match=msg):
        Model([Dense([[3, -1]], 0, 1, 0)], **base)


@pytest.mark.parametrize("args, msg", [
    (([[1.5, 2.0]], 0, 1, 0), "weight must be an integer array"),
    (([1, 2], 0, 1, 0), "weight must be 2-D"),
    (([[1, 2]], [0, 0], 1, 0), r"bias must have shape \(1,\)"),
    (([[1, 2]], 0, 0, 0), "threshold must be > 0, neuron 0 has 0"),
    (([[1, 2]], 0, -3, 0), "threshold must be > 0"),
    (([[True, False]], 0, 1, 0), "integer array"),
])
def test_dense_rejects(args, msg):
    with pytest.raises(ModelError, match=msg):
        Dense(*args)


def test_layer_chain_mismatch_names_layer():
    with pytest.raises(ModelError, match="layer 1: weight has n_in=3 but layer 0 has n_out=2"):
        Model([Dense(np.ones((2, 2), int)), Dense(np.ones((1, 3), int))], T=1, input_max=1)


def test_inputs_out_of_range_rejected():
    m = Model([Dense([[1, 1]], 0, 1, 0)], T=1, input_max=3)
    with pytest.raises(InputError, match="input value 4 at sample 0, feature 1"):
        golden.run(m, np.array([[0, 4]]))
    with pytest.raises(InputError, match="integer array"):
        golden.run(m, np.array([[0.5, 1.0]]))
    with pytest.raises(InputError, match="shape"):
        golden.run(m, np.array([[1, 1, 1]]))


# ---------------------------------------------------------------------------------------------
# file format

@settings(max_examples=20, deadline=None)
@given(small_models())
def test_save_load_round_trip_is_bit_identical(tmp_path_factory, mx):
    model, x = mx
    p = tmp_path_factory.mktemp("m") / "m.npz"
    golden.save_model(model, p)
    m2 = golden.load_model(p)
    assert m2 == model
    for a, b in zip(model.layers, m2.layers):
        for k in ("weight", "bias", "threshold", "v_init"):
            assert getattr(a, k).tobytes() == getattr(b, k).tobytes()
    p2 = p.with_name("m2.npz")
    golden.save_model(m2, p2)
    assert p.read_bytes() == p2.read_bytes()
    r1, r2 = golden.run(model, x, lanes=2), golden.run(m2, x, lanes=2)
    assert r1.predictions.tolist() == r2.predictions.tolist()
    assert all(r1.counters[k].tolist() == r2.counters[k].tolist() for k in perf.COUNTERS)


def test_callable_after_cli_module_import():
    import golden.run as cli  # noqa: F401 - replaces the package attribute with the module
    m = Model([Dense([[1]], 0, 1, 0)], T=1, input_max=1)
    assert golden.run(m, np.array([[1]])).counts.tolist() == [[1]]


def test_atomic_write_gives_normal_permissions_and_leaves_nothing_on_failure(tmp_path):
    import os
    from golden.io import atomic_write
    p = tmp_path / "out.txt"
    old = os.umask(0o022)
    try:
        atomic_write(p, lambda tmp: open(tmp, "w").write("hi"))
    finally:
        os.umask(old)
    assert p.read_text() == "hi" and (p.stat().st_mode & 0o777) == 0o644

    def boom(tmp):
        open(tmp, "w").write("partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(tmp_path / "never.txt", boom)
    assert sorted(f.name for f in tmp_path.iterdir()) == ["out.txt"]


def test_values_beyond_48_bits_are_rejected_before_the_width_analysis():
    # regression: v_init = -2**63 used to wrap the int64 analysis and load as a 5-bit model
    for v0 in (-2**63, 2**63 - 1, 1 << 47):
        with pytest.raises(ModelError, match="outside the 48-bit range"):
            Model([Dense(np.array([[-3, 2]]), 0, 5, v0)], T=4, input_max=16)
