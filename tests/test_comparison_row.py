"""sim.compare: a comparison row from per-sample RTL counters (RegressResult.samples), its clocking and the
hw.synth result helpers, on synthetic samples (no Verilator): each figure is checked against a value
computed here from golden's counters, so a dropped or hard-coded field fails."""

import numpy as np
import pytest

import golden
from golden import Dense, Model, perf
from hw.signatures import counter_ports
from sim import compare as cp


def _model(coding="rate"):
    rng = np.random.default_rng(7)
    kw = dict(T=4, input_max=8, readout="membrane" if coding == "tsc" else "count",
              encoding="tsc" if coding == "tsc" else "rate")
    return Model([Dense(rng.integers(-8, 9, (6, 5)), 0, 5, 0), Dense(rng.integers(-8, 9, (3, 6)), 0, 5, 0)],
                 coding=coding, **kw)


def _samples(model, x, lanes, match):
    """Samples shaped as sim.regress.regress() writes them, with golden's counters as the RTL's."""
    g = golden.run(model, x, lanes=lanes)
    out = []
    for i in range(len(x)):
        ctr = {}
        for n in counter_ports(perf.COUNTERS, len(model.layers)):
            v = (g.layer_counters[int(n[len("spikes_l"):])]["spikes"] if n.startswith("spikes_l") else
                 g.encoder_counters["spikes"] if n == "spikes_enc" else g.counters[n])
            ctr[n] = int(v[i])
        out.append({"sample": i, "match": match[i], "mismatch": [] if match[i] else ["counter:cycles"],
                    "prediction_rtl": int(g.predictions[i]), "counters_rtl": ctr})
    return out, g


@pytest.mark.parametrize("coding", ["rate", "stcb", "tsc"])
def test_row_is_the_mean_of_the_rtl_counters(coding):
    m = _model(coding)
    x = np.random.default_rng(3).integers(0, 9, (7, 5))
    y = np.array([0, 1, 2, 0, 1, 2, 0])
    match = [True, False, True, True, False, True, True]
    samples, g = _samples(m, x, 2, match)
    r = cp.comparison_row("lbl", m, samples, y, 2)
    c = g.counters
    words = perf.groups(6, 2) * 5 + perf.groups(3, 2) * 6
    assert cp.weight_words(m, 2) == words == 3 * 5 + 2 * 6
    per_syn = c["weight_reads"] / words
    emitted = g.layer_counters[0]["spikes"] + g.layer_counters[1]["spikes"]
    assert r == {
        "label": "lbl", "arch": "6-3", "coding": coding, "T": 4, "encoding": m.encoding, "lanes": 2,
        "accuracy": float((g.predictions == y).mean()), "cycles": float(c["cycles"].mean()),
        "weight_reads": float(c["weight_reads"].mean()), "syn_ops": float(c["syn_ops"].mean()),
        "state_reads": float(c["state_reads"].mean()), "state_writes": float(c["state_writes"].mean()),
        "spikes": float(emitted.mean()),
        "buffer_words": float((c["event_reads"] + c["event_writes"]).mean()),
        "buffer_kind": "train" if coding == "stcb" else "event",
        "predictions": g.predictions.tolist(),
        "input_events": float(g.encoder_counters["spikes"].mean()),
        "weight_reads_per_synapse": float(per_syn.mean()), "weight_reads_per_synapse_max": float(per_syn.max()),
        "weight_words": words, "synapse_words": words, "samples": 7, "rtl_matching": 5,
        "clock_mhz": cp.ASSUMED_MHZ, "clock_measured": False, "clock_source": "assumed",
        "latency_us": float(c["cycles"].mean()) / cp.ASSUMED_MHZ}
    # the figures differ from sample to sample here, so a row taken from one sample cannot pass
    assert len(set(c["cycles"].tolist())) > 1 and per_syn.max() > per_syn.mean()


def test_rtl_matching_counts_the_matching_samples_only():
    m = _model()
    x = np.random.default_rng(4).integers(0, 9, (5, 5))
    y = np.zeros(5, int)
    for match, n in [([True] * 5, 5), ([False] * 5, 0), ([True, False, False, True, False], 2)]:
        samples, _ = _samples(m, x, 4, match)
        row = cp.comparison_row("r", m, samples, y, 4)
        assert (row["rtl_matching"], row["samples"]) == (n, 5)
        assert f"| {n}/5 |" in cp.comparison_markdown([row])


def test_measured_clock_sets_the_latency():
    m = _model()
    x = np.random.default_rng(5).integers(0, 9, (3, 5))
    samples, g = _samples(m, x, 1, [True] * 3)
    r = cp.comparison_row("r", m, samples, np.zeros(3, int), 1, fmax={"fmax_mhz": 40, "file": "s.json"})
    cyc = float(g.counters["cycles"].mean())
    assert (r["clock_mhz"], r["clock_measured"], r["clock_source"]) == (40.0, True, "s.json")
    assert r["latency_us"] == cyc / 40.0
    assert cp.clocking(250.0, None) == {"clock_mhz": 100.0, "clock_measured": False, "clock_source": "assumed",
                                        "latency_us": 2.5}
    md = cp.comparison_markdown([r, cp.comparison_row("s", m, samples, np.zeros(3, int), 1)])
    assert f"{cyc / 40.0:.2f} µs at 40.0 MHz |" in md and f"{cyc / 100:.2f} µs at 100.0 MHz (assumed) |" in md


def test_result_fmax_and_status():
    ok = {"status": "ok", "fmax_mhz": 55, "file": "a.json"}
    assert cp.result_fmax(ok) == {"fmax_mhz": 55.0, "file": "a.json"}
    assert cp.result_status(ok) == "ok"
    assert cp.result_fmax(None) is None and cp.result_status(None) is None
    assert cp.result_fmax({**ok, "fmax_mhz": None}) is None
    bad = {"status": "does_not_fit", "fmax_mhz": 55, "file": "a.json", "error": "needs 30000 LUTs"}
    assert cp.result_fmax(bad) is None
    assert cp.result_status(bad) == "does_not_fit: needs 30000 LUTs"
    assert cp.result_status({"status": "timeout", "file": "a.json"}) == "timeout"


def test_conv_weight_words_and_synapse_words():
    """A conv weight word serves every position: the core holds Gc·C·K² of them, and one event of an
    input pixel reads Gc·nv(y, x) (the kernel offsets through which it reaches the map); reads per
    synapse divide by the latter, which for a dense layer is its G·n_in weight words."""
    from golden import Conv2d, MaxPool2d
    rng = np.random.default_rng(6)
    m = Model([Conv2d(rng.integers(-4, 8, (3, 2, 3, 3)), 0, 6, 0, in_shape=(2, 4, 4), padding=1),
               MaxPool2d(2, in_shape=(3, 4, 4)), Dense(rng.integers(-8, 8, (4, 12)), 0, 5, 0)], T=3, input_max=6)
    # P = 2: conv Gc = 2 groups of 2 input channels by 9 offsets; the pool none; dense 2 groups by 12 inputs
    assert cp.weight_words(m, 2) == 2 * 2 * 9 + 0 + 2 * 12
    # nv per row (and column) of a 4-wide map, K = 3, padding 1: 2, 3, 3, 2 (sum 10), in each of 2 channels
    assert cp.synapse_words(m, 2) == 2 * 2 * 10 * 10 + 0 + 2 * 12
    x = rng.integers(0, 7, (6, 32))
    samples, g = _samples(m, x, 2, [True] * 6)
    r = cp.comparison_row("conv", m, samples, np.zeros(6, int), 2)
    assert (r["arch"], r["weight_words"], r["synapse_words"]) == ("3c3-mp2-4", 60, 424)
    assert r["weight_reads_per_synapse"] == float((g.counters["weight_reads"] / 424).mean())
    # the conv row is said apart, against the first row
    base = cp.comparison_row("rate T=8", _model(), _samples(_model(), x[:, :5] % 9, 2, [True] * 6)[0],
                             np.zeros(6, int), 2)
    note = cp.conv_notes([base, r])
    assert note.startswith(f"- **conv**: {100 * r['accuracy']:.2f}% against {100 * base['accuracy']:.2f}% for the "
                           f"dense rate T=8 core, at {r['cycles'] / base['cycles']:.2f}x its cycles")
    assert "60 weight words for 424 synapse words" in note and f"read {r['weight_reads_per_synapse']:.3f} times" in note
    assert cp.conv_notes([base]) == ""
