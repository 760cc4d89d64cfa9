"""golden's fast arithmetic: the exact-dtype tiers, the conv matrix, the float recurrence, the counters'
fast paths, and golden.bench's interleaved comparison.

Every fast path is checked against an independent computation (plain Python integers from
tests/conv_reference.py, or numpy's straightforward reductions) and against golden's own int64
fallback, which the tests force.
"""

from __future__ import annotations

import statistics

import dataclasses
import sys

import numpy as np
import pytest

import golden
from golden import Conv2d, Dense, MaxPool2d, Model, engine, perf

from conv_reference import _currents, reference_rate


def _layer_sum(layer, a):
    """Independent synaptic sums (no bias): Python integers, one sample at a time."""
    bias = [int(b) for b in layer.per_neuron(layer.bias)]
    return np.array([[c - b for c, b in zip(_currents(layer, row), bias)] for row in a.tolist()], dtype=object)


# ---------------------------------------------------------------------------------------------
# the tiers and their edges

@pytest.mark.parametrize("bound, dtype", [
    (0, np.float32), (1 << 24, np.float32), ((1 << 24) + 1, np.float64), (1 << 53, np.float64),
    ((1 << 53) + 1, np.int64), ((1 << 63) - 1, np.int64)])
def test_exact_dtype_edges(bound, dtype):
    assert engine.exact_dtype(bound) == np.dtype(dtype)


def test_exact_dtype_refuses_what_int64_cannot_hold():
    with pytest.raises(OverflowError, match="does not fit int64"):
        engine.exact_dtype(1 << 63)


def test_synaptic_bound_is_the_largest_absolute_row_sum_times_amax():
    d = Dense([[3, -4, 0], [-7, 1, 1]])
    assert engine.synaptic_bound(d, 1) == 9 and engine.synaptic_bound(d, 5) == 45
    w = np.zeros((2, 2, 3, 3), dtype=np.int64)
    w[0, 0, 0, 0], w[0, 1, 2, 2], w[1, 1, 1, 1] = -5, 6, 20
    c = Conv2d(w, in_shape=(2, 4, 4), padding=1)
    assert engine.synaptic_bound(c, 3) == 60           # channel 1: |20| * 3 beats channel 0: 11 * 3


def test_float32_would_round_above_2_24_so_float64_is_taken():
    layer = Dense([[1 << 24, 1]])
    a = np.array([[1, 1]])
    assert engine.synaptic_bound(layer, 1) == (1 << 24) + 1
    assert int(np.float32(1 << 24) + np.float32(1)) == 1 << 24            # what float32 would give
    assert engine.synaptic(layer, a)[0, 0] == (1 << 24) + 1
    with pytest.raises(ValueError, match="not exact"):
        engine.synaptic(layer, a, dtype=np.float32)


def test_bound_above_2_53_takes_the_int64_path(monkeypatch):
    """W = [2**46, 1] with inputs up to 128: the bound is 2**53 + 128, the sum 2**53 + 1, which float64
    rounds to 2**53. The engine must take int64 and get it exactly."""
    layer = Dense([[1 << 46, 1]])
    a = np.array([[128, 1]])
    assert engine.synaptic_bound(layer, 128) == (1 << 53) + 128
    assert engine.exact_dtype(engine.synaptic_bound(layer, 128)) == np.int64
    assert int(np.float64(1 << 53) + np.float64(1)) == 1 << 53             # what float64 would give
    used = []
    real = engine._product
    monkeypatch.setattr(engine, "_product", lambda l, x, dt: used.append(np.dtype(dt)) or real(l, x, dt))
    out = engine.synaptic(layer, a, amax=128)
    assert used == [np.dtype(np.int64)]
    assert out.dtype == np.int64 and out[0, 0] == (1 << 53) + 1
    with pytest.raises(ValueError, match="not exact"):
        engine.synaptic(layer, a, amax=128, dtype=np.float64)


def test_bound_exactly_2_53_stays_in_float64_and_is_exact(monkeypatch):
    layer = Dense([[(1 << 46) - 128, 128]])
    a = np.array([[128, 128]])
    assert engine.synaptic_bound(layer, 128) == 1 << 53
    used = []
    real = engine._product
    monkeypatch.setattr(engine, "_product", lambda l, x, dt: used.append(np.dtype(dt)) or real(l, x, dt))
    assert engine.synaptic(layer, a, amax=128)[0, 0] == 1 << 53
    assert used == [np.dtype(np.float64)]
    # one more in the bound: int64
    assert engine.exact_dtype(engine.synaptic_bound(Dense([[(1 << 46) - 128, 129]]), 128)) == np.int64


# ---------------------------------------------------------------------------------------------
# float products == int64 fallback == plain Python

def _conv_layers(rng):
    """Conv layers of every stride/padding shape the tests need, small enough for the reference."""
    out = []
    for C, H, W, Co, K, S, p in [(1, 5, 6, 3, 3, 1, 1), (2, 6, 5, 4, 3, 2, 1), (3, 4, 4, 2, 2, 1, 0),
                                 (2, 7, 7, 3, 5, 3, 2), (1, 3, 3, 2, 3, 1, 2), (2, 4, 6, 5, 1, 2, 0)]:
        out.append(Conv2d(rng.integers(-9, 10, (Co, C, K, K)), rng.integers(-4, 5, Co), 5, 0,
                          in_shape=(C, H, W), stride=S, padding=p))
    return out


@pytest.mark.parametrize("conv_matrix_max", [1 << 22, 0], ids=["matrix-where-dense", "patches"])
def test_float_and_int64_products_agree_with_python(monkeypatch, conv_matrix_max):
    monkeypatch.setattr(engine, "_CONV_MATRIX_MAX", conv_matrix_max)
    rng = np.random.default_rng(7)
    layers = _conv_layers(rng) + [Dense(rng.integers(-30, 30, (9, 13)))]
    for layer in layers:
        for amax in (1, 11):
            a = rng.integers(0, amax + 1, (6, layer.n_in))
            ref = _layer_sum(layer, a)
            f32 = engine.synaptic(layer, a, amax, dtype=np.float32)
            f64 = engine.synaptic(layer, a, amax, dtype=np.float64)
            i64 = engine.synaptic(layer, a, amax, dtype=np.int64)
            assert f32.dtype == np.float32 and i64.dtype == np.int64
            for got in (f32, f64, i64, engine.synaptic(layer, a, amax)):
                assert np.array_equal(got.astype(np.int64), ref.astype(np.int64)), (layer, amax)


def test_conv_matrix_places_every_weight_once():
    rng = np.random.default_rng(3)
    for layer in _conv_layers(rng):
        m = engine.conv_matrix(layer)
        assert m.shape == (layer.n_in, layer.n_out)
        # column (o, y, x) holds exactly the weights whose input pixel is inside the map
        eye = np.eye(layer.n_in, dtype=np.int64)
        assert np.array_equal(m, _layer_sum(layer, eye).astype(np.int64))


# ---------------------------------------------------------------------------------------------
# whole runs: float recurrence == int64 recurrence, the chosen dtypes

def _nets():
    rng = np.random.default_rng(11)
    c1 = Conv2d(rng.integers(-20, 40, (4, 1, 3, 3)), rng.integers(-8, 8, 4), [30, 40, 50, 60], [0, 3, -2, 1],
                in_shape=(1, 6, 6), padding=1)
    pool = MaxPool2d(2, in_shape=(4, 6, 6))
    c2 = Conv2d(rng.integers(-30, 36, (5, 4, 3, 3)), rng.integers(-8, 8, 5), 60, 0, in_shape=(4, 3, 3),
                padding=1, reset="zero")
    d = Dense(rng.integers(-60, 60, (4, 45)), rng.integers(-5, 5, 4), 70, 0)
    big = Dense(rng.integers(-(1 << 15), 1 << 15, (5, 36)), rng.integers(-9, 9, 5), 1 << 20, 0)
    last = Dense(rng.integers(-60, 60, (3, 5)), 0, 50, 0)
    nets = []
    for coding in ("rate", "stcb"):
        for enc in ("rate", "direct"):
            for readout in ("count", "membrane"):
                nets.append(Model([c1, pool, c2, d], coding=coding, T=5, encoding=enc, input_max=9, readout=readout))
    # an STEB kernel (stcb) and a leak
    kd = Dense(rng.integers(-60, 60, (4, 45)), rng.integers(-5, 5, 4), 70, 0, h=[2, -1, 1])
    nets.append(Model([c1, pool, c2, kd], coding="stcb", T=5, input_max=9))
    ld = Dense(rng.integers(-60, 60, (4, 45)), rng.integers(-5, 5, 4), 70, 0, leak=(3, 2), reset="zero")
    nets.append(Model([c1, pool, c2, ld], T=5, input_max=9))
    # wide membranes: 16-bit weights
    nets.append(Model([big, last], T=6, input_max=9, weight_bits=16))
    nets.append(Model([big, last], T=6, encoding="direct", input_max=9, weight_bits=16, readout="membrane"))
    return nets


def _same_result(a, b):
    assert np.array_equal(a.predictions, b.predictions)
    assert np.array_equal(a.counts, b.counts) and np.array_equal(a.membranes, b.membranes)
    for va, vb in zip(a.v_final, b.v_final):
        assert (va is None and vb is None) or (va.dtype == vb.dtype == np.int64 and np.array_equal(va, vb))
    assert (a.spikes is None) == (b.spikes is None)
    for sa, sb in zip(a.spikes or [], b.spikes or []):
        assert sa.dtype == sb.dtype == np.uint8 and np.array_equal(sa, sb)
    assert a.counters.keys() == b.counters.keys()
    for k in a.counters:
        assert np.array_equal(a.counters[k], b.counters[k]), k
    for la, lb in zip(a.layer_counters, b.layer_counters):
        for k in la:
            assert np.array_equal(la[k], lb[k]), k
    for ea, eb in zip(a.events_in, b.events_in):
        assert np.array_equal(ea, eb)
    assert len(a.phase_activity) == len(b.phase_activity)
    for pa, pb in zip(a.phase_activity, b.phase_activity):
        assert pa.keys() == pb.keys() and all(np.array_equal(pa[k], pb[k]) for k in pa)


def test_narrow_recurrence_and_float_products_equal_int64(monkeypatch):
    nets = _nets()
    rng = np.random.default_rng(5)
    fast = []
    for m in nets:
        x = rng.integers(0, m.input_max + 1, (17, m.n_in))
        fast.append((m, x, golden.run(m, x, lanes=4, record=True)))
    dts = {engine.neuron_dtype(l, w) for m in nets for l, w in zip(m.layers, m.widths) if l.kind != "maxpool2d"}
    assert dts == {np.dtype(np.int16), np.dtype(np.int32)}
    monkeypatch.setattr(engine, "neuron_dtype", lambda layer, widths: np.dtype(np.int64))
    monkeypatch.setattr(engine, "_EXACT_LIMITS", ())                       # every product in int64
    for m, x, r in fast:
        _same_result(r, golden.run(m, x, lanes=4, record=True))


def test_neuron_dtype_follows_the_widths():
    rng = np.random.default_rng(2)
    small = Dense(rng.integers(-9, 9, (3, 4)), 0, 10, 0)
    assert engine.neuron_dtype(small, Model([small], T=4, input_max=3).widths[0]) == np.int16
    # V reaching exactly 2**15 - 1 stays in int16; one more is int32
    edge = Dense([[(1 << 15) - 1]], 0, 1, 0)
    w = Model([edge], T=1, input_max=1, weight_bits=16).widths[0]
    assert max(abs(w.v_lo), abs(w.v_hi)) == (1 << 15) - 1
    assert engine.neuron_dtype(edge, w) == np.int16
    w = Model([edge], T=2, input_max=1, weight_bits=16).widths[0]
    assert max(abs(w.v_lo), abs(w.v_hi)) == 2 * ((1 << 15) - 1)
    assert engine.neuron_dtype(edge, w) == np.int32
    # a threshold alone can decide it
    thr = Dense([[1]], 0, 1 << 15, 0)
    assert engine.neuron_dtype(thr, Model([thr], T=1, input_max=1).widths[0]) == np.int32
    # past int32: int64
    big = Dense([[(1 << 15) - 1]], 0, 1 << 31, 0)
    assert engine.neuron_dtype(big, Model([big], T=4, input_max=1, weight_bits=16).widths[0]) == np.int64
    with pytest.raises(OverflowError):
        engine.neuron_dtype(big, type(w)(0, 0, 0, 0, 0, 1 << 63, 2, 65))


# ---------------------------------------------------------------------------------------------
# the counters' fast paths

def _entries_plain(ev, P, shape=None):
    """docs/spec.md's entries, written out: per step, the P-lane words with at least one event."""
    B, T, n = ev.shape
    ev = ev != 0
    if shape is not None and len(shape) == 3:
        C, H, W = shape
        g = ev.reshape(B, T, C, H * W)
        G = -(-C // P)
        return np.array([[sum(g[b, t, k * P:(k + 1) * P, pos].any() for k in range(G) for pos in range(H * W))
                          for t in range(T)] for b in range(B)], dtype=np.int64)
    G = -(-n // P)
    return np.array([[sum(ev[b, t, k * P:(k + 1) * P].any() for k in range(G)) for t in range(T)]
                     for b in range(B)], dtype=np.int64)


@pytest.mark.parametrize("P", [1, 2, 3, 4, 8, 16, 64])
def test_entries_and_events_per_step(P):
    rng = np.random.default_rng(P)
    for shape in [(24,), (13,), (4, 3, 2), (3, 2, 2), (8, 1, 3)]:
        n = int(np.prod(shape))
        spatial = shape if len(shape) == 3 else None
        for density in (0.05, 0.5):
            ev = rng.random((3, 4, n)) < density
            for form in (ev, ev.astype(np.uint8), ev.astype(np.int64), ev[:, ::-1][:, ::-1],
                         np.broadcast_to(ev[:, :1], ev.shape)):
                got = perf._entries(form, P, spatial)
                assert got.dtype == np.int64
                assert np.array_equal(got, _entries_plain(form, P, spatial))
                counts = perf.events_per_step(form)
                assert counts.dtype == np.int64
                assert np.array_equal(counts, (np.asarray(form) != 0).sum(axis=2))


@pytest.mark.parametrize("P", [1, 2, 3, 8, 16])
def test_entries_of_channel_maps_read_as_words(P):
    """[C, H, W] maps with H*W a multiple of 8 take the 64-bit-word path (C a multiple of P, or C < P);
    the others the plane-by-plane one: both equal the plain definition, also on step-major views."""
    rng = np.random.default_rng(10 + P)
    for shape in [(16, 2, 4), (3, 4, 4), (8, 4, 4), (5, 2, 8), (32, 4, 4), (2, 8, 8), (3, 4, 8), (6, 4, 8), (5, 8, 8)]:
        n = int(np.prod(shape))
        for density in (0.02, 0.4):
            tb = rng.random((4, 3, n)) < density          # step-major (T, B, n), as golden.engine keeps it
            for form in (tb.transpose(1, 0, 2), np.ascontiguousarray(tb.transpose(1, 0, 2))):
                got = perf._entries(form, P, shape)
                assert got.dtype == np.int64 and got.shape == (3, 4)
                assert np.array_equal(got, _entries_plain(form, P, shape)), (shape, P)
                assert np.array_equal(perf.events_per_step(form), form.sum(axis=2))


def test_row_sums_and_nonzero_bytes():
    rng = np.random.default_rng(12)
    a = rng.integers(0, 65, (5, 7, 33)).astype(np.uint8)
    assert np.array_equal(perf._row_sums(a, 64), a.sum(axis=2))
    # beyond float32's exact range: numpy's integer sum
    assert np.array_equal(perf._row_sums(a, 1 << 24), a.sum(axis=2))
    w = rng.integers(0, 1 << 63, 200, dtype=np.uint64)
    w[::3] &= np.uint64(0x00FF00000000FF00)
    w[::7] = 0
    want = [sum(1 for k in range(8) if (int(v) >> (8 * k)) & 0xFF) for v in w]
    assert perf._nonzero_bytes(w).tolist() == want


def test_conv_taps_equal_the_plain_sums():
    """X (valid event-offset pairs) and Z (events reaching no output) from float matrix-vector products,
    against integer weighted sums, also on step-major views; layers with strides leave inputs that reach
    no output (Z > 0)."""
    rng = np.random.default_rng(13)
    layers = [Conv2d(rng.integers(-3, 4, (2, C, K, K)), in_shape=(C, H, W), stride=S, padding=p)
              for C, H, W, K, S, p in [(2, 4, 4, 3, 1, 1), (1, 8, 8, 3, 3, 0), (3, 4, 6, 2, 2, 0), (1, 5, 8, 3, 2, 1)]]
    for layer in layers:
        nv = np.tile(layer.valid_offsets().reshape(-1), layer.in_shape[0])
        tb = rng.random((3, 5, layer.n_in)) < 0.3
        for ev in (tb.transpose(1, 0, 2), np.ascontiguousarray(tb.transpose(1, 0, 2)), tb[0]):
            X, Z = perf.conv_taps(layer, ev)
            e = np.asarray(ev, dtype=np.int64)
            assert np.array_equal(X, e @ nv) and np.array_equal(Z, e @ (nv == 0))
    assert any((np.tile(l.valid_offsets().reshape(-1), l.in_shape[0]) == 0).any() for l in layers)


@pytest.mark.parametrize("input_max, T", [(1, 3), (2, 8), (7, 9), (16, 8), (16, 32), (255, 17), (1000, 5)])
def test_rate_encoder_table_equals_the_recurrence(monkeypatch, input_max, T):
    """The encoder reads spikes from a table packed 8 steps to a byte; the recurrence (u += x, spike
    and subtract at input_max), written out here and also the engine's own fallback, must agree."""
    rng = np.random.default_rng(input_max + T)
    x = rng.integers(0, input_max + 1, (6, 11))
    x[0, :3] = [0, input_max, 1]
    u = np.zeros_like(x)
    want = np.zeros((T,) + x.shape, dtype=bool)
    for t in range(T):
        u = u + x
        want[t] = u >= input_max
        u = u - input_max * want[t]
    got = engine._rate_encode(x, input_max, T)
    assert got.dtype == np.bool_ and got.view(np.uint8).max() <= 1 and np.array_equal(got, want)
    monkeypatch.setattr(engine, "_ENCODER_TABLE_MAX", 0)
    assert np.array_equal(engine._rate_encode(x, input_max, T), want)


def test_patch_blocks_table_and_tiers_do_not_change_a_run(monkeypatch):
    """Whole runs with every conv2d layer on the patch product in blocks of one and of three rows, the
    encoder's recurrence instead of its table, and every product in int64, equal the default run."""
    rng = np.random.default_rng(14)
    nets = _nets()
    base = []
    for m in nets:
        x = rng.integers(0, m.input_max + 1, (7, m.n_in))
        base.append((m, x, golden.run(m, x, lanes=4, record=True)))
    monkeypatch.setattr(engine, "_CONV_MATRIX_MAX", 0)
    monkeypatch.setattr(engine, "_ENCODER_TABLE_MAX", 0)
    for block in (1, 3 * 36 * 4):
        monkeypatch.setattr(engine, "_PATCH_BLOCK", block)
        for m, x, r in base:
            _same_result(r, golden.run(m, x, lanes=4, record=True))
    monkeypatch.setattr(engine, "_EXACT_LIMITS", ())
    for m, x, r in base:
        _same_result(r, golden.run(m, x, lanes=4, record=True))


@pytest.mark.parametrize("batch", [1, 5])
def test_a_result_holds_none_of_the_runs_scratch_arrays(batch):
    """golden.engine reuses its large temporaries from run to run (per thread): a later run, of the same
    shapes and other inputs, must leave an earlier Result as it was (one sample and T = 1 make the
    step-major maps contiguous in (B, T, n) too, where a view would pass for a copy)."""
    rng = np.random.default_rng(15)
    for m in _nets() + [Model([Dense(rng.integers(-9, 9, (6, 8)), 0, 5, 0)], T=1, input_max=3)]:
        xs = [rng.integers(0, m.input_max + 1, (batch, m.n_in)) for _ in range(2)]
        first = golden.run(m, xs[0], lanes=4, record=True)
        kept = golden.run(m, xs[0], lanes=4, record=True)
        golden.run(m, xs[1], lanes=4, record=True)
        golden.run(m, xs[1], lanes=4)
        _same_result(first, kept)
        for a, b in zip(first.spikes, kept.spikes):
            assert not np.shares_memory(a, b)


# ---------------------------------------------------------------------------------------------
# golden.bench

spikingjelly = pytest.importorskip("spikingjelly")


def test_bench_compare_interleaves_and_takes_the_median_ratio():
    from golden import bench
    rng = np.random.default_rng(1)
    m = Model([Dense(rng.integers(-20, 40, (12, 16)), 0, 40, 0), Dense(rng.integers(-30, 30, (3, 12)), 0, 30, 0)],
              T=4, input_max=7)
    x = rng.integers(0, 8, (20, 16))
    out = bench.compare("16-12-3", m, x, repeats=5, lanes=2, gap_s=0)
    assert out["spikingjelly_matches_golden"] is True
    pairs = out["pairs"]
    assert len(pairs) == 5
    for p in pairs:
        assert p["golden_over_spikingjelly"] == pytest.approx(p["spikingjelly_seconds"] / p["golden_seconds"])
    assert out["golden_over_spikingjelly"] == statistics.median(p["golden_over_spikingjelly"] for p in pairs)
    assert out["median_seconds"] == statistics.median(p["golden_seconds"] for p in pairs)
    assert out["spikingjelly"]["median_seconds"] == statistics.median(p["spikingjelly_seconds"] for p in pairs)
    assert out["meets_ratio_target"] == (out["golden_over_spikingjelly"] >= bench.TARGET_RATIO)


def test_bench_compare_notices_different_outputs():
    """SpikingJelly's IFNode takes one threshold per layer (the bench builds it from threshold[0]); a
    model with per-neuron thresholds runs differently there, and the comparison must say so."""
    from golden import bench
    rng = np.random.default_rng(4)
    m = Model([Dense(rng.integers(0, 40, (6, 8)), 0, [20, 20, 20, 90, 90, 90], 0)], T=6, input_max=3)
    x = rng.integers(0, 4, (10, 8))
    assert bench.compare("8-6", m, x, repeats=5, lanes=1, gap_s=0)["spikingjelly_matches_golden"] is False


@pytest.mark.parametrize("wrong", ["counts", "membranes"])
def test_bench_compare_checks_counts_and_membranes(monkeypatch, wrong):
    from golden import bench
    rng = np.random.default_rng(6)
    m = Model([Dense(rng.integers(-20, 40, (5, 8)), 0, 30, 0)], T=4, input_max=3)
    x = rng.integers(0, 4, (9, 8))
    r = golden.run(m, x)

    def runner(model, spikes, threads):
        counts, membranes = r.counts.copy(), r.membranes.copy()
        (counts if wrong == "counts" else membranes)[4, 2] += 1
        return lambda: (counts, membranes)
    monkeypatch.setattr(bench, "_spikingjelly_runner", runner)
    assert bench.compare("8-5", m, x, repeats=5, lanes=1, gap_s=0)["spikingjelly_matches_golden"] is False
    monkeypatch.setattr(bench, "_spikingjelly_runner", lambda model, spikes, threads: lambda: (r.counts, r.membranes))
    assert bench.compare("8-5", m, x, repeats=5, lanes=1, gap_s=0)["spikingjelly_matches_golden"] is True


def test_bench_needs_five_repeats(tmp_path):
    """The interleaved comparison needs at least 5 pairs: fewer is an option error (one line, exit 2)."""
    import subprocess
    import sys
    out = tmp_path / "b.json"
    p = subprocess.run([sys.executable, "-m", "golden.bench", "--repeats", "4", "--out", str(out)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and not out.exists()
    assert p.stderr.splitlines() == [p.stderr.strip()] and p.stderr.startswith("golden.bench: error: ")
    assert "--repeats" in p.stderr and "5" in p.stderr and "Traceback" not in p.stderr


# ---------------------------------------------------------------------------------------------
# batch parts on threads

def test_threads_split_the_batch_without_changing_anything():
    rng = np.random.default_rng(9)
    nets = _nets()
    tsc = Model([Dense(rng.integers(-9, 9, (6, 45)), 0, 7, 0), Dense(rng.integers(-9, 9, (3, 6)))],
                coding="tsc", encoding="tsc", T=5, input_max=9, readout="membrane")
    for m in (nets[0], nets[5], nets[-1], tsc):
        x = rng.integers(0, m.input_max + 1, (23, m.n_in))
        one = golden.run(m, x, lanes=2, record=True, threads=1)
        for n in (2, 3, 23, 40):
            many = golden.run(m, x, lanes=2, record=True, threads=n)
            _same_result(one, many)
            if m.coding == "tsc":
                for a, b in zip(one.activations + one.events, many.activations + many.events):
                    assert np.array_equal(a, b)
                assert np.array_equal(one.input_events, many.input_events)
            else:
                assert np.array_equal(one.input_spikes, many.input_spikes) or one.input_spikes is None


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_threads_must_be_a_positive_integer(bad):
    m = _nets()[0]
    with pytest.raises(ValueError, match="threads must be a positive integer"):
        golden.run(m, np.zeros((2, m.n_in), dtype=np.int64), threads=bad)


def test_counts_memo_is_per_call():
    """perf.count computes each event map's entries once per call, and nothing survives the call."""
    m = _nets()[0]
    x = np.random.default_rng(1).integers(0, m.input_max + 1, (5, m.n_in))
    a = golden.run(m, x, lanes=4)
    assert perf._MEMO.get() is None
    b = golden.run(m, x[::-1].copy(), lanes=4)
    assert np.array_equal(a.counters["cycles"], b.counters["cycles"][::-1])


def test_counts_with_and_without_the_memo_agree():
    for m in _nets()[:4]:
        x = np.random.default_rng(2).integers(0, m.input_max + 1, (6, m.n_in))
        r = golden.run(m, x, lanes=4, record=True)
        inputs = (r.input_spikes.view(bool) if r.input_spikes is not None
                  else np.broadcast_to((x != 0)[:, None, :], (len(x), m.T, m.n_in)))
        act = perf.Activity(inputs, [s.view(bool) for s in r.spikes])
        memo = perf.count(m, 4, act)
        plain = perf._count(m, 4, act)                       # outside count(): no memo
        for a, b in [(memo[0], plain[0]), (memo[2], plain[2])] + list(zip(memo[1], plain[1])):
            assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("K", [1, 2, 3, 4, 8])
def test_maxpool_on_spikes_is_the_or_of_each_window(K):
    rng = np.random.default_rng(K)
    C, H, W = 3, 2 * K, 3 * K
    layer = MaxPool2d(K, in_shape=(C, H, W))
    for density in (0.02, 0.3):
        s = rng.random((5, C * H * W)) < density
        img = s.reshape(5, C, H, W)
        want = np.array([[[[img[n, c, y * K:(y + 1) * K, x * K:(x + 1) * K].any() for x in range(W // K)]
                           for y in range(H // K)] for c in range(C)] for n in range(5)]).reshape(5, -1)
        got = engine.maxpool(layer, s)
        assert got.dtype == np.bool_ and np.array_equal(got, want)
        # integer values (tsc): the maximum, unchanged
        v = rng.integers(0, 9, (5, C * H * W))
        assert np.array_equal(engine.maxpool(layer, v), v.reshape(5, C, H // K, K, W // K, K).max(axis=(3, 5))
                              .reshape(5, -1))


def test_default_threads_follow_the_work(monkeypatch):
    m = _nets()[0]                      # conv 4x1x3x3 on 6x6, pool, conv 5x4x3x3 on 3x3, dense 45 -> 4
    assert engine._work(m) == (144 * 9 + 45 * 36 + 4 * 45) * 5
    x = np.random.default_rng(0).integers(0, m.input_max + 1, (10, m.n_in))
    used = []
    real = engine._pool
    monkeypatch.setattr(engine, "_pool", lambda n: used.append(n) or real(n))
    monkeypatch.setattr(engine.os, "cpu_count", lambda: 3)
    golden.run(m, x)                                       # 10 samples: far below WORK_PER_THREAD
    assert used == []
    monkeypatch.setattr(engine, "WORK_PER_THREAD", 4 * engine._work(m))
    golden.run(m, x)                                       # 10 samples: 2 parts' worth of work
    golden.run(m, np.concatenate([x, x]))                  # 20: 5 parts' worth, but 3 CPUs
    assert used == [2, 3]


@pytest.mark.parametrize("threads", [1, 2])
def test_a_long_T_runs_in_parts_that_fit_memory_with_the_same_result(monkeypatch, threads):
    # PART_BYTES bounds a part's step-major arrays: shrunk here so 10 samples need 4 parts; the
    # result is the one-part run's, field by field (outputs, counters, recorded spikes)
    m = _nets()[0]
    x = np.random.default_rng(1).integers(0, m.input_max + 1, (10, m.n_in))
    want = golden.run(m, x, lanes=2, record=True, threads=1)
    widths = [m.n_in] + [l.n_out for l in m.layers]
    per_sample = m.T * (16 * max(widths) + 8 * sum(widths))
    monkeypatch.setattr(engine, "PART_BYTES", 3 * per_sample)   # 3 samples a part: 10 -> 4 parts
    sizes = []
    real = engine._run_batch
    monkeypatch.setattr(engine, "_run_batch", lambda model, part, *a: sizes.append(len(part)) or real(model, part, *a))
    got = golden.run(m, x, lanes=2, record=True, threads=threads)
    assert sorted(sizes) == [2, 2, 3, 3]
    for f in dataclasses.fields(want):
        assert _same(getattr(want, f.name), getattr(got, f.name)), f.name


def _same(a, b) -> bool:
    """Equal values, recursively through lists and dicts of arrays."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(_same(u, v) for u, v in zip(a, b))
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    return a == b


def _spy_matrix(monkeypatch):
    """Record every (layer, dtype, bias folded) the engine asks golden.engine._matrix for."""
    used = []
    real = engine._matrix
    monkeypatch.setattr(engine, "_matrix", lambda layer, dt, bias=False, events=False:
                        used.append((layer, np.dtype(dt), bias)) or real(layer, dt, bias, events))
    return used


def _same_as_reference(model, x, r):
    """golden's spikes and final membranes of every neuron layer equal tests/conv_reference.py's."""
    for b, (spikes, V, counts, _) in enumerate(reference_rate(model, x)):
        for li, layer in enumerate(model.layers):
            assert r.spikes[li][b].tolist() == spikes[li], (b, li)
            if layer.kind != "maxpool2d":
                assert r.v_final[li][b].tolist() == V[li], (b, li)
        if model.readout == "count":
            assert r.counts[b].tolist() == counts


def test_bias_rides_in_the_product_where_the_biased_sums_are_exact(monkeypatch):
    """A layer with a bias whose biased sums stay exact in the product's dtype takes the bias as an
    input of constant 1 (one row more in its matrix); a zero bias is not added at all. Runs with
    per-neuron and uniform thresholds and initial membranes, rate and direct, a conv layer on its
    matrix, equal the plain reference."""
    used = _spy_matrix(monkeypatch)
    rng = np.random.default_rng(21)
    conv = Conv2d(rng.integers(-9, 10, (3, 2, 3, 3)), [4, -7, 2], [20, 25, 30], [1, 0, -2], in_shape=(2, 4, 4),
                  padding=1)
    mid = Dense(rng.integers(-30, 30, (6, 48)), rng.integers(-9, 9, 6), 40, 3)
    out = Dense(rng.integers(-30, 30, (4, 6)), 0, [35, 20, 50, 45], 0)
    assert engine._uses_matrix(conv)
    for enc in ("rate", "direct"):
        m = Model([conv, mid, out], T=4, encoding=enc, input_max=5)
        x = rng.integers(0, 6, (9, m.n_in))
        used.clear()
        r = golden.run(m, x, lanes=2, record=True)
        folded = {(id(l), b) for l, _, b in used}
        assert folded == {(id(conv), True), (id(mid), True), (id(out), False)}
        _same_as_reference(m, x, r)


def test_small_layers_count_their_input_events_in_the_product(monkeypatch):
    """A layer of fewer than EVENT_COLUMNS outputs on spikes sums its inputs in one more column of its
    product: the previous layer's spikes per step, which events_in and the counters then use. They
    equal plain sums of the recorded spikes, and whole runs equal runs without the column."""
    seeded = []
    real_note = perf.note_events_per_step
    monkeypatch.setattr(perf, "note_events_per_step", lambda ev, c: seeded.append(ev.shape) or real_note(ev, c))
    rng = np.random.default_rng(22)
    nets = _nets()
    runs, used = [], 0
    for m in nets:
        x = rng.integers(0, m.input_max + 1, (11, m.n_in))
        seeded.clear()
        r = golden.run(m, x, lanes=4, record=True)
        # every neuron layer after the first with < 16 outputs (and no STEB kernel) counted its inputs
        want = [(len(x), m.T, m.layers[li - 1].n_out) for li, l in enumerate(m.layers)
                if li and l.kind != "maxpool2d" and l.n_out < engine.EVENT_COLUMNS and not l.has_kernel
                and engine._uses_matrix(l)]
        assert seeded == want
        used += len(want)
        for li in range(1, len(m.layers)):
            assert np.array_equal(r.events_in[li], r.spikes[li - 1].sum(axis=2, dtype=np.int64)), li
        runs.append((m, x, r))
    assert used >= len(nets) - 1
    monkeypatch.setattr(engine, "EVENT_COLUMNS", 0)
    for m, x, r in runs:
        seeded.clear()
        _same_result(r, golden.run(m, x, lanes=4, record=True))
        assert seeded == []


def _edge_model(bias):
    """Dense [[2**12, 2**12 - 1]] on inputs up to 2**11 (direct): the unbiased bound is 2**24 - 2**11."""
    layer = Dense([[1 << 12, (1 << 12) - 1]], bias, 1 << 30, 0)
    m = Model([layer], T=1, encoding="direct", input_max=1 << 11, weight_bits=14, readout="membrane")
    assert engine.synaptic_bound(layer, m.input_max) == (1 << 24) - (1 << 11)
    return layer, m


def test_bias_folds_up_to_2_24_in_float32(monkeypatch):
    """A bias of 2**11 brings the biased bound to exactly 2**24: still float32, folded, exact (also with
    a negative bias)."""
    used = _spy_matrix(monkeypatch)
    for bias in (1 << 11, -(1 << 11)):
        layer, m = _edge_model(bias)
        assert engine._biased_bound(layer, m.input_max) == 1 << 24
        used.clear()
        r = golden.run(m, np.array([[1 << 11, 1 << 11], [1 << 11, 0], [0, 1]]))
        assert used == [(layer, np.dtype(np.float32), True)]
        assert r.membranes[:, 0].tolist() == [(1 << 24) - (1 << 11) + bias, (1 << 23) + bias, (1 << 12) - 1 + bias]


def test_bias_that_leaves_float32_is_added_in_integers(monkeypatch):
    """The product is exact in float32, but with the bias the sums would leave float32's exact range
    (2**24 + 1): the engine must not fold the bias into the float32 product (it would round to 2**24)
    and adds it in the integer dtype after the cast."""
    used = _spy_matrix(monkeypatch)
    layer, m = _edge_model((1 << 11) + 1)
    assert engine.exact_dtype(engine.synaptic_bound(layer, m.input_max)) == np.float32
    assert engine.exact_dtype(engine._biased_bound(layer, m.input_max)) == np.float64
    x = np.array([[1 << 11, 1 << 11]])
    folded = np.concatenate([x, [[1]]], axis=1).astype(np.float32) @ engine._matrix(layer, np.float32, True)
    assert int(folded[0, 0]) == 1 << 24                                   # what the fold would give
    used.clear()
    r = golden.run(m, x)
    assert used == [(layer, np.dtype(np.float32), False)]
    assert r.membranes[0, 0] == (1 << 24) + 1


def test_blas_limit_is_held_while_a_run_is_threaded_and_lifted_after(monkeypatch):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from concurrent.futures import ThreadPoolExecutor

    def blas_threads():
        return [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
    m = _nets()[0]
    x = np.random.default_rng(3).integers(0, m.input_max + 1, (8, m.n_in))
    seen = []
    real = engine._run_batch

    def spy(*a):
        seen.append(blas_threads())
        return real(*a)
    monkeypatch.setattr(engine, "_run_batch", spy)
    with threadpoolctl.threadpool_limits(limits=3, user_api="blas"):     # whatever the environment says
        before = blas_threads()
        assert before and all(n == 3 for n in before)
        one = golden.run(m, x, threads=2)
        assert len(seen) == 2 and all(s == [1] * len(before) for s in seen)
        assert blas_threads() == before
        # three callers at once: the limit is shared, and lifted once, by the last to leave
        with ThreadPoolExecutor(3) as ex:
            results = list(ex.map(lambda _: golden.run(m, x, threads=2), range(3)))
        assert blas_threads() == before and engine._BLAS["users"] == 0
    for r in results:
        _same_result(one, r)


def test_the_blas_controller_is_made_again_after_new_imports(monkeypatch):
    # a controller made before scipy (or torch) loaded its own BLAS would not hold that one: it is
    # made again when modules were imported since, and kept while nothing was
    pytest.importorskip("threadpoolctl")
    m = _nets()[0]
    x = np.random.default_rng(3).integers(0, m.input_max + 1, (4, m.n_in))
    golden.run(m, x, threads=2)
    made = engine._BLAS["controller"]
    golden.run(m, x, threads=2)
    assert engine._BLAS["controller"] is made                     # nothing imported: the same one
    monkeypatch.setitem(sys.modules, "spikeforge_test_new_module", type(sys)("spikeforge_test_new_module"))
    golden.run(m, x, threads=2)
    assert engine._BLAS["controller"] is not made and engine._BLAS["modules"] == len(sys.modules)


def _run_in_child(m, x, q):
    q.put(golden.run(m, x, threads=2).predictions.tolist())


def test_a_forked_child_runs_golden_on_threads_of_its_own():
    # the parent's worker threads do not exist in a forked child: a child that was handed the parent's
    # pool waited for them forever (sim.claims' RTL workers hung so, after the parent's golden runs)
    import multiprocessing as mp
    m = _nets()[0]
    x = np.random.default_rng(4).integers(0, m.input_max + 1, (6, m.n_in))
    want = golden.run(m, x, threads=2).predictions.tolist()        # the parent's pool is made
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_run_in_child, args=(m, x, q))
    p.start()
    p.join(60)
    hung = p.is_alive()
    if hung:
        p.kill()
    assert not hung, "golden.run in a forked child did not finish in 60 s"
    assert p.exitcode == 0 and q.get(timeout=5) == want
