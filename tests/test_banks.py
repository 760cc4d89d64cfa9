"""Kernel offsets in parallel (docs/spec.md section 3, "Banks"): the bank shape, the bundles of one event
against their enumeration, the cycles golden predicts for banks > 1 (hand-computed), and banks = 1 being
today's counters exactly."""

import itertools
from types import SimpleNamespace

import numpy as np
import pytest

import golden
from golden import Conv2d, Dense, MaxPool2d, Model, perf


def _conv(K, S, p, H, W, C=2, Co=3, seed=0):
    rng = np.random.default_rng(seed)
    return Conv2d(rng.integers(-2, 3, (Co, C, K, K)), 0, 2, 0, in_shape=(C, H, W), stride=S, padding=p)


@pytest.mark.parametrize("K, S, banks, want", [(3, 1, 1, (1, 1)), (3, 1, 2, (1, 2)), (3, 1, 3, (1, 3)),
                                               (3, 1, 4, (1, 3)), (3, 1, 6, (2, 3)), (3, 1, 9, (3, 3)),
                                               (3, 1, 64, (3, 3)), (3, 2, 4, (2, 2)), (3, 2, 3, (1, 2)),
                                               (5, 2, 9, (3, 3)), (2, 2, 9, (1, 1)), (1, 1, 4, (1, 1))])
def test_bank_shape(K, S, banks, want):
    assert perf.bank_shape(K, S, banks) == want


GEOMETRIES = [(3, 1, 0, 6, 5), (3, 1, 1, 6, 5), (3, 2, 1, 7, 6), (5, 2, 2, 9, 8), (4, 3, 1, 8, 9), (2, 2, 0, 5, 4),
              (5, 1, 0, 5, 7), (1, 1, 0, 3, 3)]


@pytest.mark.parametrize("K, S, p, H, W", GEOMETRIES)
@pytest.mark.parametrize("banks", [1, 2, 3, 4, 6, 9, 25])
def test_event_bundles_cover_each_valid_offset_once_in_distinct_banks(K, S, p, H, W, banks):
    layer = _conv(K, S, p, H, W)
    r, c = perf.bank_shape(K, S, banks)
    nb, nv = perf.bundle_map(layer, banks), layer.valid_offsets()
    _, Ho, Wo = layer.out_shape
    depth = -(-Ho // r) * -(-Wo // c)                     # per channel group
    for y, x in itertools.product(range(H), range(W)):
        bundles = perf.event_bundles(layer, banks, y, x)
        assert nb[y, x] == len(bundles), (y, x)
        offsets = [(ky, kx) for b in bundles for ky, kx, *_ in b]
        # every valid offset once, and nothing else
        want = [(ky, kx) for ky in range(K) for kx in range(K)
                if (y + p - ky) % S == 0 and (x + p - kx) % S == 0
                and 0 <= (y + p - ky) // S < Ho and 0 <= (x + p - kx) // S < Wo]
        assert sorted(offsets) == want and len(offsets) == nv[y, x]
        for b in bundles:
            assert 1 <= len(b) <= r * c <= banks
            assert len({bank for *_, bank, _ in b}) == len(b)                              # accumulator banks
            assert len({((ky // S) % r) * c + (kx // S) % c for ky, kx, *_ in b}) == len(b)  # weight banks
            for ky, kx, oy, ox, bank, addr in b:
                assert (oy, ox) == ((y + p - ky) // S, (x + p - kx) // S)
                assert 0 <= bank < r * c and 0 <= addr < depth
    # no two output words share a bank word, over every channel group
    slots = {perf.bank_address(layer, banks, og, oy, ox)
             for og, oy, ox in itertools.product(range(2), range(Ho), range(Wo))}
    assert len(slots) == 2 * Ho * Wo


def test_bundle_map_with_one_bank_is_the_valid_offsets():
    for K, S, p, H, W in GEOMETRIES:
        layer = _conv(K, S, p, H, W)
        assert np.array_equal(perf.bundle_map(layer, 1), layer.valid_offsets())


def test_bank_depth():
    conv = _conv(3, 1, 1, 6, 5, C=1, Co=3)                # out (3, 6, 5)
    pool = MaxPool2d(2, in_shape=(3, 6, 4))
    m = Model([conv, Dense(np.ones((2, 90), int), 0, 1, 0)], T=2, input_max=1)
    assert perf.bank_depth(m, 2, 1) == 2 * 6 * 5
    assert perf.bank_depth(m, 2, 9) == 2 * 2 * 2           # ceil(6/3) * ceil(5/3)
    assert perf.bank_depth(m, 4, 3) == 1 * 6 * 2
    m2 = Model([_conv(3, 1, 1, 6, 4, C=1, Co=3), pool, Dense(np.ones((2, 18), int), 0, 1, 0)], T=2, input_max=1)
    assert perf.bank_depth(m2, 2, 4) == 2 * 6 * 2          # conv (1, 3): Gc 2 x 6 x ceil(4/3) > pool 2 x 3 x 2
    assert perf.bank_depth(m2, 2, 9) == 2 * 3 * 2          # conv (3, 3): 2 x 2 x 2 < the pool's 12 words
    assert perf.bank_address(pool, 4, 1, 2, 1) == (0, (1 * 3 + 2) * 2 + 1)   # bank 0, linear


@pytest.mark.parametrize("bad", [0, -1, 65, True, 2.0, "3", None])
def test_banks_must_be_an_integer_in_range(bad):
    m = Model([Dense(np.ones((2, 3), int), 0, 1, 0)], T=1, input_max=1)
    with pytest.raises(ValueError, match="banks must be an integer from 1 to 64"):
        golden.run(m, np.ones((1, 3), int), lanes=2, banks=bad)


def _conv_net(coding):
    # spec's hand-computed net (tests/test_perf_spec.py): 1x4x4 input, 2 channels K = 3 padding 1, dense 2
    conv = Conv2d(np.ones((2, 1, 3, 3), int), 0, 1, 0, in_shape=(1, 4, 4), padding=1)
    return Model([conv, Dense(np.ones((2, 32), int), 0, 1000, 0)], coding=coding, T=2, input_max=1,
                 readout="membrane")


@pytest.mark.parametrize("banks, bundles", [(1, 9), (2, 3 * 2), (3, 3), (4, 3), (6, 2), (9, 1), (64, 1)])
def test_scatter_cycles_hand_computed(banks, bundles):
    # one event per step at pixel (1, 1): 3 valid rows x 3 valid columns; (r, c) = bank_shape(3, 1, banks)
    # gives ceil(3/r) * ceil(3/c) bundles, Gc = 1 at P = 2. Nothing else changes
    x = np.zeros((2, 16), int)
    x[:, 5] = 1
    m = _conv_net("rate")
    base = golden.run(m, x, lanes=2)
    r = golden.run(m, x, lanes=2, banks=banks)
    parts = perf.breakdown(m, 2, r)
    assert parts["layer 0 scatter"] == 2 * bundles
    assert parts == {**perf.breakdown(m, 2, base), "layer 0 scatter": 2 * bundles}
    assert r.counters["cycles"].tolist() == (base.counters["cycles"] - 2 * (9 - bundles)).tolist()
    for k in perf.COUNTERS:
        if k != "cycles":
            assert r.counters[k].tolist() == base.counters[k].tolist(), k
    assert r.banks == banks
    # stcb: one phase, the active train's bundles once
    ms = _conv_net("stcb")
    bs, rs = golden.run(ms, x, lanes=2), golden.run(ms, x, lanes=2, banks=banks)
    assert perf.breakdown(ms, 2, rs)["layer 0 scatter"] == bundles
    assert rs.counters["cycles"].tolist() == (bs.counters["cycles"] - (9 - bundles)).tolist()


def _nets():
    rng = np.random.default_rng(5)
    out = []
    for coding, encoding in [("rate", "rate"), ("rate", "direct"), ("stcb", "rate"), ("tsc", "tsc")]:
        h = [2, -1] if coding == "stcb" else [1]
        conv = Conv2d(rng.integers(-2, 4, (3, 1, 3, 3)), 0, 3, 0, h, in_shape=(1, 6, 6), padding=1)
        conv2 = Conv2d(rng.integers(-2, 4, (4, 3, 3, 3)), 0, 3, 0, h, in_shape=(3, 3, 3), stride=2, padding=1)
        out.append(Model([conv, MaxPool2d(2, in_shape=(3, 6, 6)), conv2, Dense(rng.integers(-3, 4, (4, 16)), 0, 4, 0)],
                         coding=coding, encoding=encoding, T=4, input_max=6,
                         readout="membrane" if coding == "tsc" else "count"))
    return out


@pytest.mark.parametrize("mi", range(4))
def test_banks_one_is_todays_counters_and_more_banks_only_shorten_the_scatter(mi):
    m = _nets()[mi]
    x = np.random.default_rng(6).integers(0, 7, (5, 36))
    x[0] = 0
    base = golden.run(m, x, lanes=2)
    one = golden.run(m, x, lanes=2, banks=1)
    for k in perf.COUNTERS:
        assert one.counters[k].tolist() == base.counters[k].tolist()
    assert all("XB" not in a and "XBA" not in a for a in one.phase_activity)
    prev = base
    for banks in (2, 3, 4, 9):
        r = golden.run(m, x, lanes=2, banks=banks)
        assert np.array_equal(r.predictions, base.predictions)
        assert (r.counters["cycles"] <= prev.counters["cycles"]).all()
        for k in perf.COUNTERS:
            if k != "cycles":
                assert r.counters[k].tolist() == base.counters[k].tolist(), k
        # the layers without a conv2d scatter keep their cycles
        for li, layer in enumerate(m.layers):
            if layer.kind != "conv2d":
                assert r.layer_counters[li]["cycles"].tolist() == base.layer_counters[li]["cycles"].tolist()
        parts = perf.breakdown_parts(m, 2, r)              # checks itself against the counters
        assert sum(parts.values()).tolist() == r.counters["cycles"].tolist()
        # the breakdown reads the bundles, so bundles the counters did not see fail it
        key = "XBA" if m.coding == "stcb" else "XB"
        acts = [dict(a) for a in r.phase_activity]
        acts[0][key] = acts[0][key] + 1
        off = SimpleNamespace(batch=r.batch, counters=r.counters, layer_counters=r.layer_counters,
                              phase_activity=acts)
        with pytest.raises(AssertionError, match="cycle breakdown of layer 0"):
            perf.breakdown_totals(m, 2, off)
        prev = r
