"""The dense run's shortcuts (golden.engine, golden.perf) against plain numpy: entries counted by
popcount, per-sample totals summed over the steps first, spike counts in narrow dtypes, the one-pass
input range check. Each shortcut is compared with the obvious computation it replaces."""

import numpy as np
import pytest

import golden
from golden import engine, perf
from golden.model import Dense, Model


def _maps(rng, T, B, n, p):
    """A step-major (T, B, n) bool map and the (B, T, n) view the counters receive."""
    tv = rng.random((T, B, n)) < p
    return tv, tv.transpose(1, 0, 2)


@pytest.mark.parametrize("P", [1, 2, 4, 8])
@pytest.mark.parametrize("n", [8, 16, 64, 128, 24, 40])
def test_entries_by_popcount_equal_any_per_word(P, n):
    rng = np.random.default_rng(n * 10 + P)
    for p in (0.0, 0.05, 0.5, 1.0):
        tv, ev = _maps(rng, 3, 5, n, p)
        pad = (-n) % P
        want = np.pad(ev, ((0, 0), (0, 0), (0, pad))).reshape(5, 3, -1, P).any(axis=3).sum(axis=2)
        assert np.array_equal(perf._entries.__wrapped__(ev, P, None), want), (P, n, p)
        assert np.array_equal(perf._entries.__wrapped__(np.ascontiguousarray(ev), P, None), want)


@pytest.mark.parametrize("P", [1, 2, 3, 4, 8, 16])
@pytest.mark.parametrize("n", [8, 16, 24, 40, 7])
@pytest.mark.parametrize("T", [1, 8, 300])
def test_entry_totals_equal_the_entries_summed_over_the_steps(P, n, T):
    """The dense counters' entries per sample, counted word by word over the steps first (words of P
    bytes, P of 1 to 8 dividing n), else from the per-step entries: both equal the plain count."""
    rng = np.random.default_rng(n * 100 + P * 10 + T)
    for p in (0.0, 0.02, 0.5, 1.0):
        tv, ev = _maps(rng, T, 5, n, p)
        pad = (-n) % P
        want = np.pad(ev, ((0, 0), (0, 0), (0, pad))).reshape(5, T, -1, P).any(axis=3).sum(axis=(1, 2))
        for m in (ev, np.ascontiguousarray(ev)):             # step-major view, and not
            got = perf._entry_totals(m, P)
            assert got.dtype == np.int64 and np.array_equal(got, want), (P, n, T, p)


def test_true_per_row():
    rng = np.random.default_rng(3)
    for k in (8, 16, 24, 64, 72, 10, 3):
        b = rng.random((7, 4, k)) < 0.4
        assert np.array_equal(perf._true_per_row(b), b.sum(axis=-1)), k


@pytest.mark.parametrize("T", [1, 8, 255, 256, 300])
def test_total_events_equal_plain_sums(T):
    rng = np.random.default_rng(T)
    tv, ev = _maps(rng, T, 6, 10, 0.97)
    want = ev.sum(axis=(1, 2), dtype=np.int64)
    assert np.array_equal(perf._total_events(ev), want)
    assert np.array_equal(perf._total_events(np.ascontiguousarray(ev)), want)          # not step-major
    assert np.array_equal(perf._total_events(ev.astype(np.int8)), want)                # not bool
    with perf.shared_counts():                                                         # from the memo
        perf.note_events_per_step(ev, ev.sum(axis=2, dtype=np.int64))
        assert np.array_equal(perf._total_events(ev), want)


@pytest.mark.parametrize("T", [8, 300])
def test_counts_of_long_runs(T):
    """Spike counts summed in uint8 while T < 256, else uint16: the same as plain int64 sums, with
    neurons that spike at every step (counts of T)."""
    rng = np.random.default_rng(T)
    m = Model([Dense(rng.integers(5, 20, (12, 6)), 3, 4, 0), Dense(rng.integers(-3, 9, (5, 12)), 1, 2, 0)],
              T=T, input_max=3)
    x = rng.integers(0, 4, (9, 6))
    x[0] = 3
    r = golden.run(m, x, lanes=4, record=True)
    want = r.spikes[-1].sum(axis=1, dtype=np.int64)
    assert np.array_equal(r.counts, want)
    assert r.counts.max() == T
    assert np.array_equal(r.counters["spikes"], sum(s.sum(axis=(1, 2), dtype=np.int64) for s in r.spikes))


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint64])
def test_input_range_check_in_one_pass(dtype):
    m = Model([Dense(np.ones((3, 4), dtype=np.int64), 0, 2, 0)], T=2, input_max=7)
    x = np.full((2, 4), 7, dtype=dtype)
    got = engine.check_inputs(m, x)
    assert got.dtype == np.int64 and np.array_equal(got, x)
    for bad in [8] + ([-1] if np.issubdtype(dtype, np.signedinteger) else []):
        y = x.copy()
        y[1, 2] = bad
        with pytest.raises(engine.InputError, match="sample 1, feature 2"):
            engine.check_inputs(m, y)
    if dtype is np.int64:
        assert engine.check_inputs(m, x) is x or np.shares_memory(engine.check_inputs(m, x), x)


def _dense_nets(rng):
    """Rate and direct, one to three dense layers, widths that are and are not multiples of the lanes."""
    nets = []
    for encoding in ("rate", "direct"):
        for sizes in ([16, 10], [24, 40, 7], [9, 33, 16, 3], [64, 128, 10]):
            layers = [Dense(rng.integers(-20, 30, (o, i)), rng.integers(-4, 5, o), int(rng.integers(20, 90)), 0,
                            reset=str(rng.choice(["zero", "subtract"])))
                      for i, o in zip(sizes, sizes[1:])]
            readout = "membrane" if len(sizes) == 3 else "count"
            nets.append(Model(layers, T=int(rng.integers(1, 10)), input_max=15, encoding=encoding,
                              readout=readout))
    return nets


@pytest.mark.parametrize("P", [1, 3, 4, 8, 16])
def test_dense_counters_equal_the_general_count(P):
    """perf.count takes _count_dense for rate-coded dense networks: every counter of the encoder, of
    every layer and of the totals equals the general _count's, sample by sample (also for an idle
    sample), and the result arrays are the model's counters, not shared between calls."""
    rng = np.random.default_rng(P)
    for m in _dense_nets(rng):
        assert perf._all_dense_rate(m)
        x = rng.integers(0, m.input_max + 1, (7, m.n_in))
        x[0] = 0
        r = golden.run(m, x, lanes=P, record=True)
        inputs = (r.input_spikes.view(bool) if r.input_spikes is not None
                  else np.broadcast_to((x != 0)[:, None, :], (len(x), m.T, m.n_in)))
        act = perf.Activity(inputs, [s.view(bool) for s in r.spikes])
        fast = perf.count(m, P, act)
        with perf.shared_counts():
            plain = perf._count(m, P, act)
        pairs = [(fast[0], plain[0]), (fast[2], plain[2])] + list(zip(fast[1], plain[1]))
        assert len(fast[1]) == len(plain[1]) == len(m.layers)
        for a, b in pairs:
            assert list(a) == list(b)
            for k in a:
                assert a[k].dtype == np.int64 and a[k].shape == (len(x),)
                assert np.array_equal(a[k], b[k]), (m.encoding, [l.n_out for l in m.layers], k)
        for k in r.counters:                                   # the run's own counters are the same
            assert np.array_equal(r.counters[k], plain[0][k]), k
        again = perf.count(m, P, act)
        again[0]["cycles"] += 1
        assert np.array_equal(fast[0]["cycles"], plain[0]["cycles"])
