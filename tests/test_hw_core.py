"""SpikeCore in the Amaranth simulator against golden: outputs and every counter, exactly."""

import numpy as np
import pytest

import golden
from golden import Dense, Model
from hw import ConfigError, CoreConfig, SpikeCore
from core_check import run_both
from hw.pysim import simulate


def random_model(seed, *, sizes=None, encoding="rate", readout="count", T=3, wb=5, input_max=5):
    rng = np.random.default_rng(seed)
    sizes = sizes or [int(rng.integers(1, 10)) for _ in range(int(rng.integers(2, 5)))]
    lim = 1 << (wb - 1)
    layers = [Dense(rng.integers(-lim, lim, (n_out, n_in)), rng.integers(-3, 4, n_out),
                    rng.integers(1, 2 * lim, n_out), rng.integers(-3, 4, n_out))
              for n_in, n_out in zip(sizes, sizes[1:])]
    model = Model(layers, T=T, encoding=encoding, input_max=input_max, readout=readout, weight_bits=wb)
    return model, rng.integers(0, input_max + 1, (3, sizes[0]))


def assert_matches_golden(model, x, lanes, **kw):
    return run_both(model, x, lanes, **kw)[0]


@pytest.mark.parametrize("seed, encoding, readout, lanes", [
    (0, "rate", "count", 1), (1, "rate", "count", 2), (2, "rate", "membrane", 4), (3, "direct", "count", 8),
    (4, "direct", "membrane", 2), (5, "rate", "count", 8), (6, "direct", "count", 1), (7, "rate", "membrane", 16),
])
def test_random_networks_match_golden(seed, encoding, readout, lanes):
    model, x = random_model(seed, encoding=encoding, readout=readout, T=int(1 + seed % 4))
    assert_matches_golden(model, x, lanes)


def test_lane_edge_cases_n_not_multiple_of_p():
    # 9 -> 5 -> 3 at P=4: padding lanes in every layer and in the input groups
    model, x = random_model(11, sizes=[9, 5, 3], T=4)
    assert_matches_golden(model, x, 4)


def test_four_layers_uses_both_event_buffers():
    model, x = random_model(12, sizes=[4, 6, 5, 7, 3], T=3, encoding="direct")
    assert_matches_golden(model, x, 2)


def test_stalls_change_nothing_but_nothing_is_lost():
    model, x = random_model(13, sizes=[6, 7, 4], T=3)
    a = assert_matches_golden(model, x, 2)
    b = assert_matches_golden(model, x, 2, stall_prob=0.4, seed=5)
    for k in ("predictions", "counts", "membranes"):
        assert a[k].tolist() == b[k].tolist()


def test_back_to_back_sample_is_independent_of_history():
    model, x = random_model(14, sizes=[5, 6, 3], T=4)
    alone = simulate(model, x[2:3], lanes=2)
    after = simulate(model, x, lanes=2)
    assert after["membranes"][2].tolist() == alone["membranes"][0].tolist()
    assert after["counts"][2].tolist() == alone["counts"][0].tolist()
    assert {k: v[2] for k, v in after["counters"].items()} == {k: v[0] for k, v in alone["counters"].items()}


def test_all_extremes_zero_and_saturated_inputs():
    wb = 4
    layers = [Dense(np.full((3, 4), 7), 0, 1, 0), Dense(np.full((2, 3), -8), 0, 1, 0)]
    model = Model(layers, T=5, input_max=3, weight_bits=wb)
    x = np.array([[0, 0, 0, 0], [3, 3, 3, 3], [3, 0, 3, 0]])
    assert_matches_golden(model, x, 2)


def test_out_of_range_input_sets_sticky_flag():
    model, _ = random_model(15, sizes=[3, 2], input_max=4)
    hw = simulate(model, np.array([[1, 9, 2], [0, 0, 0]]), lanes=1)   # 9 > input_max
    assert hw["err_range"] == 1 and hw["err_protocol"] == 0


def test_config_rejects_bad_lanes():
    model, _ = random_model(16, sizes=[3, 2])
    with pytest.raises(ConfigError, match="power of two"):
        CoreConfig(model, 3)
    with pytest.raises(ConfigError, match="power of two"):
        CoreConfig(model, 128)
    with pytest.raises(TypeError, match="lanes must be a positive integer"):
        CoreConfig(model, 0)


def test_memory_images_pack_weights_lane_major():
    model = Model([Dense([[1, -2], [3, -4], [5, 6]], 0, 1, 0)], T=1, input_max=1, weight_bits=4)
    cfg = CoreConfig(model, 2)
    # group 0 = neurons 0,1; group 1 = neuron 2 + padding; word (g, i) at g * n_in + i
    assert cfg.weight_init() == [0x31, 0xCE, 0x05, 0x06]


def tsc_model(seed, sizes, T, input_max=7, wb=5):
    rng = np.random.default_rng(seed)
    lim = 1 << (wb - 1)
    layers = [Dense(rng.integers(-lim, lim, (b, a)), rng.integers(-6, 7, b), rng.integers(1, 2 * lim, b), 0)
              for a, b in zip(sizes, sizes[1:])]
    model = Model(layers, coding="tsc", encoding="tsc", readout="membrane", T=T, input_max=input_max,
                  weight_bits=wb)
    return model, rng.integers(0, input_max + 1, (3, sizes[0]))


@pytest.mark.parametrize("seed, sizes, T, lanes", [
    (20, [6, 5, 3], 5, 2), (21, [3, 2], 2, 1), (22, [9, 7, 5], 8, 4), (23, [5, 11, 4, 3], 6, 8),
    (24, [4, 6, 2], 3, 16),
])
def test_tsc_networks_match_golden(seed, sizes, T, lanes):
    model, x = tsc_model(seed, sizes, T)
    x[0] = 0
    x[1] = model.input_max
    run_both(model, x, lanes)


@pytest.mark.parametrize("seed, sizes, T, lanes, encoding, readout, h", [
    (30, [6, 5, 3], 4, 2, "rate", "count", [1]), (31, [4, 3], 1, 1, "rate", "membrane", [1]),
    (32, [9, 7, 5], 5, 4, "direct", "count", [1]), (33, [6, 9, 4, 3], 6, 8, "rate", "count", [2, -1]),
    (34, [5, 6, 2], 8, 16, "direct", "membrane", [1, 1, -1]),
])
def test_stcb_networks_match_golden(seed, sizes, T, lanes, encoding, readout, h):
    rng = np.random.default_rng(seed)
    layers = [Dense(rng.integers(-8, 8, (b, a)), rng.integers(-3, 3, b), rng.integers(1, 9, b), rng.integers(-2, 3, b),
                    h=h[:T]) for a, b in zip(sizes, sizes[1:])]
    model = Model(layers, coding="stcb", T=T, input_max=5, encoding=encoding, readout=readout, weight_bits=5)
    x = rng.integers(0, 6, (3, sizes[0]))
    x[0] = 0
    hw = assert_matches_golden(model, x, lanes)
    if not layers[0].has_kernel:   # h = [1]: the same outputs as rate coding on the same layers
        r = golden.run(model.replace(coding="rate"), x)
        assert hw["membranes"].tolist() == r.membranes.tolist()


@pytest.mark.parametrize("encoding, lanes, h", [("rate", 2, [2, -1]), ("direct", 1, [1]), ("direct", 2, [-1, 2, 1])])
def test_stcb_slots_and_parameter_fields_at_their_extremes(encoding, lanes, h):
    """The slots are as wide as a step's synaptic sums need (slot_bits) and each parameter field as wide as
    its own values (param_bits), not acc_bits and v_bits + 1: a neuron whose weights are all the largest
    weight and one whose weights are all the most negative, under an input at input_max everywhere, fill
    their slots with both ends of that range at every step, and the biases, thresholds and initial
    membranes sit at their fields' ends; the core still equals golden on every output and counter."""
    from golden.geometry import CoreGeometry
    from golden.model import signed_bits
    M, T, n = 3, 4, 7
    first = Dense(np.stack([np.full(n, 15), np.full(n, -16), np.arange(n) - 3]), [-5, 4, 4], [90, 1, 7],
                  [-6, 0, 5], h=h)
    rng = np.random.default_rng(2)
    model = Model([first, Dense(rng.integers(-8, 8, (3, 3)), [0, -1, 1], [2, 3, 9], 0, h=h)], T=T, coding="stcb",
                  encoding=encoding, input_max=M, weight_bits=5)
    g = CoreGeometry(model, lanes)
    smax = M if encoding == "direct" else 1
    assert g.slot_bits == signed_bits(-16 * n * smax, 15 * n * smax) < g.acc_bits
    assert g.param_bits == {"bias": signed_bits(-5, 4), "thr": signed_bits(1, 90), "v_init": signed_bits(-6, 5),
                            "bmt": signed_bits(-95, 3)}
    x = np.stack([np.full(n, M), rng.integers(0, M + 1, n), np.zeros(n, np.int64)])
    hw, r = run_both(model, x, lanes)
    assert int(r.layer_counters[0]["spikes"][0]) > 0


@pytest.mark.parametrize("seed, coding, encoding, readout, T, lanes, leaks, resets", [
    (40, "rate", "rate", "count", 5, 2, [(3, 2), (7, 3)], ["subtract", "zero"]),
    (41, "rate", "direct", "membrane", 4, 4, [(15, 4), (6, 3)], ["zero", "subtract"]),
    (42, "rate", "rate", "count", 3, 1, [(0, 0), (1, 16)], ["subtract", "subtract"]),   # no V left; floor to -1
    (43, "stcb", "rate", "count", 6, 2, [(13, 4), (1, 1)], ["zero", "subtract"]),
    (44, "stcb", "direct", "membrane", 4, 8, [None, (9, 4)], ["subtract", "zero"]),
])
def test_leaky_networks_match_golden(seed, coding, encoding, readout, T, lanes, leaks, resets):
    # docs/spec.md section 2: V <- (V * num) >> shift before the current, at step 0 too (on v_init); the
    # initial membranes reach well below 0 so the floor of negative products matters
    rng = np.random.default_rng(seed)
    sizes = [6, 7, 3]
    h = [2, -1] if coding == "stcb" and seed % 2 else [1]
    layers = [Dense(rng.integers(-16, 16, (b, a)), rng.integers(-4, 5, b), rng.integers(1, 24, b),
                    rng.integers(-40, 30, b), h=h, leak=lk, reset=rs)
              for (a, b), lk, rs in zip(zip(sizes, sizes[1:]), leaks, resets)]
    model = Model(layers, coding=coding, T=T, input_max=5, encoding=encoding, readout=readout, weight_bits=5)
    x = rng.integers(0, 6, (4, sizes[0]))
    x[0] = 0
    assert_matches_golden(model, x, lanes)
    # the leak changes the outcome (else this would not test it)
    plain = model.replace(layers=[Dense(l.weight, l.bias, l.threshold, l.v_init, h=l.h, reset=l.reset)
                                  for l in model.layers])
    assert golden.run(plain, x).membranes.tolist() != golden.run(model, x).membranes.tolist()


@pytest.mark.parametrize("readout", ["count", "membrane"])
@pytest.mark.parametrize("lanes", [1, 2, 4])
def test_argmax_ties_go_to_the_lowest_index_in_and_across_groups(readout, lanes):
    # direct input x = 1, T = 1: V = w (no firing at threshold 100). Row maxima: neurons 1, 2 and 5
    # tie at 7 -> 1 (same group for P >= 4, different groups for P = 2); all-equal -> 0.
    w = np.array([[3], [7], [7], [2], [5], [7]])
    for weights, expected in ((w, 1), (np.full((6, 1), 4), 0), (w[::-1].copy(), 0)):
        model = Model([Dense(weights, 0, 100, 0)], T=1, encoding="direct", input_max=1, readout=readout)
        hw = simulate(model, np.array([[1]]), lanes=lanes)
        assert golden.run(model, np.array([[1]])).predictions.tolist() == [expected]
        assert hw["predictions"].tolist() == [expected]


def test_a_hung_core_fails_with_a_message_instead_of_hanging():
    # a consumer that never takes results: the core waits in readout forever; simulate() must give up
    import hw.pysim as pysim
    model, x = random_model(0, sizes=[4, 3])
    core = SpikeCore(model, lanes=1)
    real = core.elaborate

    def stuck(platform):
        m = real(platform)
        m.d.comb += core.result.valid.eq(0)       # the result stream never offers a beat
        return m
    core.elaborate = stuck
    with pytest.raises(pysim.SimulationHang, match=r"within 400 cycles: 1/1 samples accepted, 0/1 results"):
        pysim.simulate(model, x[:1], lanes=1, max_cycles=400, core=core)
