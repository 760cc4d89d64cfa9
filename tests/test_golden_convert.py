"""golden.convert.rate_from_tsc: a TSC integer model re-targeted to rate coding (the TSC paper's baseline)."""

from fractions import Fraction

import numpy as np
import pytest

import golden
from golden import Conv2d, Dense, MaxPool2d, Model, ModelError
from golden.convert import rate_from_tsc, window_bias


def tsc_model(layers, T, input_max, **kw):
    return Model(layers, coding="tsc", encoding="tsc", readout="membrane", T=T, input_max=input_max, **kw)


def small_conv_tsc():
    rng = np.random.default_rng(3)
    layers = [Conv2d(rng.integers(-8, 9, (4, 1, 3, 3)), rng.integers(-5, 6, 4), rng.integers(3, 9, 4),
                     in_shape=(1, 6, 6), padding=1),
              MaxPool2d(2, in_shape=(4, 6, 6)),
              Conv2d(rng.integers(-8, 9, (6, 4, 3, 3)), rng.integers(-5, 6, 6), rng.integers(3, 9, 6),
                     in_shape=(4, 3, 3), stride=2, padding=1),
              Dense(rng.integers(-8, 9, (3, 24)), rng.integers(-5, 6, 3), 1)]
    return tsc_model(layers, T=9, input_max=16)


def test_same_weights_thresholds_and_structure():
    m = small_conv_tsc()
    r = rate_from_tsc(m, 40)
    assert (r.coding, r.T, r.encoding, r.readout, r.input_max) == ("rate", 40, "rate", "membrane", 16)
    assert r.weight_bits == m.weight_bits and r.input_shape == m.input_shape
    assert [l.kind for l in r.layers] == [l.kind for l in m.layers]
    for a, b in zip(m.layers, r.layers):
        if a.kind == "maxpool2d":
            assert b.kernel == a.kernel and b.in_shape == a.in_shape
            continue
        assert np.array_equal(a.weight, b.weight) and np.array_equal(a.threshold, b.threshold)
        assert b.reset == "subtract" and b.leak is None
        if a.kind == "conv2d":
            assert (b.stride, b.padding) == (a.stride, a.padding)


def test_hand_computed_biases():
    # hidden: b=5, theta=4, Q=16, T=32: B = 32 (10 - 4) / 32 + 2 = 8 -> beta = round(8/32) = 0, v_init = 8
    assert window_bias(5, 4, 32, 16, hidden=True) == 8
    # hidden: b=-7, theta=3, Q=4, T=10: B = 10 (-14 - 3) / 8 + 3/2 = -19.75 -> beta = round(-1.975) = -2,
    #   v_init = round(-19.75 + 20) = round(0.25) = 0
    # readout: b=-7, Q=4, T=10: B = -17.5 -> beta = round(-1.75) = -2, v_init = round(2.5) = 3 (half up)
    l0 = Dense([[1, 2]], [-7], [3])
    l1 = Dense([[1]], [-7], [1])
    r = rate_from_tsc(tsc_model([l0, l1], T=5, input_max=4), 10)
    assert r.layers[0].bias.tolist() == [-2] and r.layers[0].v_init.tolist() == [0]
    assert r.layers[1].bias.tolist() == [-2] and r.layers[1].v_init.tolist() == [3]
    # without the half-level shift the hidden layer gets b T / Q = -17.5 as well
    p = rate_from_tsc(tsc_model([l0, l1], T=5, input_max=4), 10, half_level=False)
    assert p.layers[0].bias.tolist() == [-2] and p.layers[0].v_init.tolist() == [3]
    assert window_bias(-7, 3, 10, 4, hidden=False) == Fraction(-35, 2)


@pytest.mark.parametrize("T", [1, 7, 8, 33, 1024])
def test_window_total_is_the_rounded_bias(T):
    m = small_conv_tsc()
    r = rate_from_tsc(m, T)
    Q, last = m.T - 1, len(m.layers) - 1
    for i, (a, b) in enumerate(zip(m.layers, r.layers)):
        if a.kind == "maxpool2d":
            continue
        for bi, th, beta, v0 in zip(a.bias.tolist(), a.threshold.tolist(), b.bias.tolist(), b.v_init.tolist()):
            B = window_bias(bi, th, T, Q, hidden=i != last)
            assert T * beta + v0 == int(np.floor(B + Fraction(1, 2)))
            assert abs(v0) <= Fraction(T, 2) + Fraction(th, 2) + 1


def test_at_T_equal_Q_the_hidden_bias_is_the_ann_bias():
    m = small_conv_tsc()
    r = rate_from_tsc(m, m.T - 1)
    for a, b in zip(m.layers[:-1], r.layers[:-1]):
        if a.kind != "maxpool2d":
            assert ((m.T - 1) * b.bias + b.v_init).tolist() == a.bias.tolist()


def test_a_normal_model_file(tmp_path):
    r = rate_from_tsc(small_conv_tsc(), 24)
    golden.save_model(r, tmp_path / "r.npz")
    back = golden.load_model(tmp_path / "r.npz")
    assert back == r
    x = np.random.default_rng(0).integers(0, 17, (5, 36))
    g = golden.run(back, x)
    assert g.counts.sum() == 0 and g.layer_counters[-1]["spikes"].sum() == 0     # membrane readout


def _dense_pair(seed):
    rng = np.random.default_rng(seed)
    Q, M = 7, 255
    l0 = Dense(rng.integers(-20, 40, (24, 30)), rng.integers(-50, 50, 24), rng.integers(30, 90, 24), 0)
    l1 = Dense(rng.integers(-30, 30, (5, 24)), rng.integers(-20, 20, 5), 1, 0)
    return tsc_model([l0, l1], T=Q + 1, input_max=M), rng.integers(0, M + 1, (200, 30))


def test_rate_counts_converge_to_the_floored_activation():
    """At T = 1024 a hidden neuron's count n stands for n Q / T: with the half-level shift it is an
    unbiased estimate of the ANN's floored value (mean error near 0); the plain conversion converges to
    the unfloored value, half a level above. Measured on the neurons the ANN does not clip."""
    errs = {True: [], False: []}
    for seed in range(1, 4):
        m, x = _dense_pair(seed)
        g = golden.run(m, x)
        a = g.activations[0]
        mid = (a > 0) & (a < m.T - 1)
        for hl in errs:
            r = golden.run(rate_from_tsc(m, 1024, half_level=hl), x, record=True)
            n = r.spikes[0].sum(axis=1)
            errs[hl].append((n * (m.T - 1) / 1024 - a)[mid])
            if hl:
                assert (r.predictions == g.predictions).mean() >= 0.95
    shifted, plain = np.concatenate(errs[True]), np.concatenate(errs[False])
    assert shifted.size > 300
    assert abs(shifted.mean()) < 0.15 and plain.mean() > 0.4
    assert (np.abs(shifted) <= 1).mean() > 0.95


def test_refuses_other_codings_and_bad_T():
    m = small_conv_tsc()
    with pytest.raises(ModelError, match="tsc model"):
        rate_from_tsc(rate_from_tsc(m, 8), 8)
    for T in (0, 1025, 2.0, True):
        with pytest.raises(ModelError, match="T must be"):
            rate_from_tsc(m, T)
    with pytest.raises(TypeError):
        rate_from_tsc("model.npz", 8)
