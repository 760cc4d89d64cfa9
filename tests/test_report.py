"""sim.report: the numbers in the report are golden's, the breakdown adds up, the files exist."""

import json

import pytest

import numpy as np

import golden
from golden import Dense, Model, perf
from sim.report import LayerSumError, build_report, cycle_breakdown, layer_costs, write_report


def _model():
    rng = np.random.default_rng(3)
    return Model([Dense(rng.integers(-8, 8, (6, 5)), 0, 5, 0), Dense(rng.integers(-8, 8, (3, 6)), 0, 4, 0)],
                 T=4, input_max=6)


def test_cycle_breakdown_adds_up_to_the_counter():
    m = _model()
    x = np.random.default_rng(0).integers(0, 7, (9, 5))
    g = golden.run(m, x, lanes=2)
    assert sum(perf.breakdown_totals(m, 2, g).values()) == int(g.counters["cycles"].sum())
    cb = cycle_breakdown(m, g)
    # 5 beats and the load's drain; the argmax over 2 lanes, 2 groups of 3 outputs read, 3 beats
    assert cb["load"] == 5 + perf.LOAD_DRAIN and cb["finish"] == perf.finish_cycles(2)
    assert cb["readout"] == 2 * 2 + 3
    assert cb["layer 0 setup"] == 4 * perf.LAYER_SETUP and cb["layer 0 drain"] == 4 * perf.layer_drain("rate", "rate")
    assert cb["encode"] == 4 * (3 + perf.ENC_DRAIN)


def test_report_files_and_figures(tmp_path):
    m = _model()
    x = np.random.default_rng(1).integers(0, 7, (10, 5))
    y = np.arange(10) % 3
    g = golden.run(m, x, lanes=2)
    summary = {"matching_samples": 10, "samples": 10, "mismatches_by_field": {"predictions": 0, "counts": 0,
               "membranes": 0, "counter:cycles": 0}, "rtl_accuracy": float((g.predictions == y).mean()),
               "sim_seconds": 2.0, "samples_per_s": 5.0, "simulated_cycles_per_s": 100.0, "build_seconds": 3.0,
               "build_cached": False, "stall_prob": 0.0}
    metrics = {"float_accuracy": 0.5, "quant_accuracy": 0.4, "golden_agreement": 1.0, "epochs": 1, "seed": 0,
               "train_seconds": 1.0}
    r = write_report(tmp_path, "unit", m, x, y, lanes=2, regress_summary=summary, metrics=metrics)
    for f in ("report.md", "report.json", "raster.png", "cycles.png", "layers.png", "layers_cost.png"):
        assert (tmp_path / f).stat().st_size > 0
    j = json.loads((tmp_path / "report.json").read_text())
    assert j["accuracy"]["golden"] == float((g.predictions == y).mean())
    assert j["per_inference"]["cycles"] == float(g.counters["cycles"].mean())
    assert j["per_inference"]["throughput_per_s"] == 100e6 / float(g.counters["cycles"].mean())
    assert [l["spikes"] for l in j["layers"]] == [float(c["spikes"].mean()) for c in g.layer_counters]
    (costs,) = j["layer_costs"]
    assert [r["part"] for r in costs["rows"]] == ["load", "encoder", "layer 0", "layer 1", "finish + readout"]
    assert [r["weight_reads"] for r in costs["rows"][2:4]] == [float(c["weight_reads"].mean()) for c in g.layer_counters]
    assert [r["cycles"] for r in costs["rows"][2:4]] == [float(c["cycles"].mean()) for c in g.layer_counters]
    assert costs["check"]["sums_equal_totals"] and costs["check"]["rtl"] is None
    md = (tmp_path / "report.md").read_text()
    assert "## Cost per layer: unit (5-6-3, rate coding, T=4, P=2; mean per inference over 10 samples)" in md
    assert "| 50.00% | 40.00% |" in md and "**10/10**" in md
    assert r["agreement"]["quant_vs_golden"] == 1.0


def test_report_without_rtl_or_training():
    m = _model()
    x = np.zeros((2, 5), np.int64)
    g = golden.run(m, x, lanes=4)
    r = build_report("bare", m, g, np.zeros(2, np.int64), None, None)
    assert r["agreement"] is None and r["accuracy"]["rtl"] is None
    assert r["per_inference"]["input_sparsity"] == 1.0


def test_cycle_breakdown_adds_up_for_tsc_and_stcb():
    rng = np.random.default_rng(8)
    l0 = Dense(rng.integers(-8, 8, (6, 5)), 1, 4, 0)
    l1 = Dense(rng.integers(-8, 8, (3, 6)), 0, 4, 0)
    x = rng.integers(0, 7, (7, 5))
    for m in (Model([l0, l1], coding="tsc", encoding="tsc", readout="membrane", T=5, input_max=6),
              Model([l0, Dense(l1.weight, 0, 4, 0, h=[2, -1])], coding="stcb", T=4, input_max=6),
              Model([l0, l1], coding="stcb", T=4, encoding="direct", input_max=6)):
        g = golden.run(m, x, lanes=4)
        assert sum(perf.breakdown_totals(m, 4, g).values()) == int(g.counters["cycles"].sum())


def test_plots_say_what_a_reader_needs():
    import matplotlib.pyplot as plt
    from sim.report import _plots
    m = _model()
    x = np.random.default_rng(1).integers(0, 7, (10, 5))
    y = np.arange(10) % 3
    g = golden.run(m, x, lanes=2)
    r = build_report("unit", m, g, y, None, None)
    figs = _plots(None, m, x, y, r)
    assert sorted(figs) == ["cycles.png", "layers.png", "layers_cost.png", "raster.png"]
    # the raster names the sample's label and the prediction
    pred = int(golden.run(m, x[:1]).predictions[0])
    verdict = "correct" if pred == y[0] else "wrong"
    assert figs["raster.png"]._suptitle.get_text() == \
        f"Spike raster, test sample 0: label {y[0]}, prediction {pred} ({verdict})"
    # activity per neuron, the encoder included, and no line joining unrelated layers
    (ax,) = figs["layers.png"].axes
    heights = [p.get_height() for p in ax.patches]
    expected = [r["per_inference"]["encoder_spikes"] / m.n_in] + [l["spikes"] / l["n_out"] for l in r["layers"]]
    assert heights == pytest.approx(expected)
    assert [t.get_text().split("\n")[0] for t in ax.get_xticklabels()] == ["encoder", "layer 0", "layer 1"]
    assert ax.get_lines()[0].get_ydata()[0] == m.T and len(ax.get_lines()) == 1   # the T ceiling, nothing else
    assert ax.get_ylabel() == "spikes per neuron per inference"
    # parts of the cycle breakdown that take no cycle are left out of the key
    labels = [t.get_text() for t in figs["cycles.png"].axes[0].get_legend().get_texts()]
    assert labels and all(not l.split(":")[1].strip().startswith("0 ") for l in labels)
    for f in figs.values():
        plt.close(f)


def test_write_report_writes_everything_or_nothing(tmp_path, monkeypatch):
    import sim.report as rep
    m = _model()
    x = np.random.default_rng(1).integers(0, 7, (4, 5))
    y = np.arange(4) % 3
    # fails after the plots and regress.json are staged: none of them may be left behind
    monkeypatch.setattr(rep.json, "dumps", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        rep.write_report(tmp_path / "r", "unit", m, x, y, lanes=2, extra_files={"regress.json": "{}"})
    assert not (tmp_path / "r").exists()
    monkeypatch.undo()
    r = rep.write_report(tmp_path / "r", "unit", m, x, y, lanes=2, extra_files={"regress.json": "{}"})
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == sorted(
        ["report.md", "report.json", "regress.json", *r["plots"]])


def test_report_says_which_clock_its_latency_used(tmp_path):
    """No clock: an assumed 100 MHz, said so; --clock-mhz: that clock, said so; --synth: the measured Fmax
    of exactly this core, and a result for another core (other lanes) is refused with exit 2."""
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    rng = np.random.default_rng(5)
    m = Model([Dense(rng.integers(-8, 8, (4, 64)), 0, 5, 0), Dense(rng.integers(-8, 8, (10, 4)), 0, 4, 0)],
              T=2, input_max=16)
    golden.save_model(m, tmp_path / "m.npz")
    from hw.generate import render
    from sim.compare import fmax_from_synth, synth_status
    synth = {"status": "ok", "lanes": 2, "model_meta": json.loads(json.dumps(m.meta())), "fmax_mhz": 123.4,
             "top": "t", "verilog_sha256": render(m, 2, "t")[1]["verilog_sha256"]}
    (tmp_path / "s2.json").write_text(json.dumps(synth))
    (tmp_path / "s4.json").write_text(json.dumps({**synth, "lanes": 4}))
    # a result of another netlist (an older core: same model and lanes) is stale: neither Fmax nor status
    (tmp_path / "old.json").write_text(json.dumps({**synth, "verilog_sha256": "0" * 64}))
    assert fmax_from_synth(tmp_path / "s2.json", m, 2) == {"fmax_mhz": 123.4, "file": str(tmp_path / "s2.json")}
    assert synth_status(tmp_path / "s2.json", m, 2) == "ok"
    assert fmax_from_synth(tmp_path / "old.json", m, 2) is None and synth_status(tmp_path / "old.json", m, 2) is None
    assert fmax_from_synth(tmp_path / "s4.json", m, 2) is None and synth_status(tmp_path / "s4.json", m, 2) is None

    def report(*extra):
        return subprocess.run([sys.executable, "-m", "sim.report", "--model", str(tmp_path / "m.npz"), "--limit", "3",
                               "--lanes", "2", "--out", str(tmp_path / "r.json"), *extra], cwd=root,
                              capture_output=True, text=True, timeout=120)

    cycles = float(golden.run(m, golden.datasets.load("digits", "test")[0][:3], lanes=2).counters["cycles"].mean())
    for extra, clock, phrase in [((), 100.0, "an assumed 100 MHz"), (("--clock-mhz", "50"), 50.0, "50.0 MHz (--clock-mhz)"),
                                 (("--synth", str(tmp_path / "s2.json")), 123.4, "the measured Fmax 123.4 MHz")]:
        p = report(*extra)
        assert p.returncode == 0, p.stderr
        pi = json.loads((tmp_path / "r.json").read_text())["per_inference"]
        assert (pi["clock_mhz"], pi["latency_us"]) == (clock, cycles / clock)
        assert f"| latency at {phrase} | {cycles / clock:.2f} µs |" in (tmp_path / "r.md").read_text()
    p = report("--synth", str(tmp_path / "s4.json"))
    assert p.returncode == 2 and p.stderr.strip().endswith("not a successful hw.synth result of this model at --lanes 2")
    assert len(p.stderr.strip().splitlines()) == 1


def _hand_model():
    """2 inputs, 3 hidden, 2 outputs, T=2, input_max 1: input 0 (x = 1) spikes at both steps, hidden
    neurons 0 and 1 follow it (weight 1, threshold 1), neuron 2 never fires, the outputs never do."""
    return Model([Dense([[1, 0], [1, 0], [0, 0]], 0, 1, 0), Dense([[1, 1, 1], [1, 1, 1]], 0, 100, 0)],
                 T=2, input_max=1)


def test_layer_costs_by_hand():
    m = _hand_model()
    g = golden.run(m, np.array([[1, 0]]), lanes=2)
    t = layer_costs(m, g)
    rows = {r["part"]: r for r in t["rows"]}
    assert [(r["part"], r["kind"], r["shape"]) for r in t["rows"]] == [
        ("load", "input stream", "2 inputs"), ("encoder", "rate encoder", "2 inputs"), ("layer 0", "dense", "2→3"),
        ("layer 1", "dense", "3→2"), ("finish + readout", "argmax, readout", "2 classes")]
    # P = 2: the load 2 beats + 2; the encoder T·(1 word + 3); layer 0: G = 2 groups, 1 event per step:
    # T·(setup 3 + drain 5) + G·(1 + 1) ops; layer 1: G = 1, 2 events per step: 16 + 4; the argmax
    # over 2 lanes 2, the readout 1 group (2 cycles) and 2 classes (one beat each)
    assert [r["cycles"] for r in t["rows"]] == [4, 8, 20, 20, 6]
    assert [r["weight_reads"] for r in t["rows"]] == [0, 0, 2 * 2, 1 * 4, 0]
    assert [r["syn_ops"] for r in t["rows"]] == [0, 0, 3 * 2, 2 * 4, 0]
    assert (rows["encoder"]["spikes"], rows["layer 0"]["spikes"], rows["layer 1"]["spikes"]) == (2, 4, 0)
    assert t["totals"]["cycles"] == 4 + 8 + 20 + 20 + 6 == float(g.counters["cycles"][0])
    assert (t["totals"]["weight_reads"], t["totals"]["syn_ops"], t["totals"]["spikes"]) == (8, 14, 4)
    assert rows["layer 0"]["cycles_share"] == 20 / 58
    from sim.report import layer_costs_markdown
    md = layer_costs_markdown(t)
    assert "| layer 1 | dense | 3→2 | 20.0 | 34.5% | 4.0 | 8.0 | 0.0 |" in md
    assert "| **total** | | | **58.0** | 100% | **8.0** | **14.0** | **4.0** |" in md


def _corrupt(g, where, name, sample, delta=1):
    """A copy of golden's result with one counter of one sample changed."""
    import copy
    bad = copy.copy(g)
    if where == "total":
        bad.counters = {k: v.copy() for k, v in g.counters.items()}
        bad.counters[name][sample] += delta
    else:
        bad.layer_counters = [{k: v.copy() for k, v in c.items()} for c in g.layer_counters]
        bad.layer_counters[where][name][sample] += delta
    return bad


def test_layer_sum_check_fails_when_a_figure_does_not_add_up():
    m = _model()
    x = np.random.default_rng(2).integers(0, 7, (6, 5))
    g = golden.run(m, x, lanes=2)
    assert layer_costs(m, g)["check"]["sums_equal_totals"]
    # a layer's weight reads, the total of syn_ops, a layer's spikes: each on one sample
    for where, name, sample in [(1, "weight_reads", 4), ("total", "syn_ops", 2), (0, "spikes", 5),
                                ("total", "acc_writes", 0)]:
        with pytest.raises(LayerSumError, match=rf"per-layer {name} add up to \d+ on sample {sample}, but the total"):
            layer_costs(m, _corrupt(g, where, name, sample))
    # one more on sample 1, one fewer on sample 2: the means still agree, the samples do not
    with pytest.raises(LayerSumError, match="per-layer weight_reads add up to .* on sample 1"):
        layer_costs(m, _corrupt(_corrupt(g, 1, "weight_reads", 1), 1, "weight_reads", 2, -1))
    # a layer's cycles: the breakdown (the formulas) disagrees first, an AssertionError as well
    with pytest.raises(AssertionError):
        layer_costs(m, _corrupt(g, 0, "cycles", 3))


def test_layer_costs_check_the_rtl_per_layer_spikes_and_totals():
    from tests.test_comparison_row import _samples
    m = _model()
    x = np.random.default_rng(4).integers(0, 7, (5, 5))
    samples, g = _samples(m, x, 2, [True] * 5)
    assert layer_costs(m, g, samples)["check"]["rtl"] == {"samples": 5, "per_layer_spikes_equal": 5, "totals_equal": 5}
    samples[1]["counters_rtl"]["spikes_l1"] += 1
    samples[3]["counters_rtl"]["weight_reads"] += 1
    samples[4]["counters_rtl"]["spikes_enc"] += 1
    assert layer_costs(m, g, samples)["check"]["rtl"] == {"samples": 5, "per_layer_spikes_equal": 3, "totals_equal": 4}
    with pytest.raises(ValueError, match="not the 5 samples"):
        layer_costs(m, g, samples[:4])


def test_layer_costs_of_a_conv_model_and_their_plot(tmp_path):
    import matplotlib.pyplot as plt
    from golden import Conv2d, MaxPool2d
    from sim.report import layer_cost_plot
    rng = np.random.default_rng(6)
    m = Model([Conv2d(rng.integers(-4, 8, (3, 1, 3, 3)), 0, 6, 0, in_shape=(1, 4, 4), padding=1),
               MaxPool2d(2, in_shape=(3, 4, 4)), Dense(rng.integers(-8, 8, (4, 12)), 0, 5, 0)], T=3, input_max=6)
    x = rng.integers(0, 7, (8, 16))
    g = golden.run(m, x, lanes=2)
    t = layer_costs(m, g)
    assert [(r["kind"], r["shape"]) for r in t["rows"][2:5]] == [
        ("conv2d", "1×4×4→3×4×4, k3 s1 p1"), ("maxpool2d", "3×4×4→3×2×2, k2"), ("dense", "12→4")]
    assert t["rows"][1]["shape"] == "1×4×4 inputs" and t["network"] == "1x4x4-3c3-mp2-4"
    for r, c in zip(t["rows"][2:5], g.layer_counters):
        assert all(r[k] == float(c[k].mean()) for k in perf.COUNTERS)
    assert t["rows"][3]["weight_reads"] == 0 and t["rows"][2]["acc_reads"] > 0
    assert sum(r["cycles"] for r in t["rows"]) == pytest.approx(t["totals"]["cycles"])
    fig = layer_cost_plot([{"title": "a", **t}, {"title": "b", **layer_costs(_hand_model(),
                                                                           golden.run(_hand_model(), np.array([[1, 0]]), lanes=2))}])
    ax = fig.axes[0]
    cyc, wr = ax.containers
    assert [p.get_height() for p in cyc] == [r["cycles"] for r in t["rows"]]
    assert [p.get_height() for p in wr] == [r["weight_reads"] for r in t["rows"] if r["weight_reads"] > 0]
    assert ax.get_yscale() == "log" and fig.axes[1].get_yscale() == "linear"    # 4 .. 20: no log needed
    assert ax.get_title().startswith("Cost per layer: a (1x4x4-3c3-mp2-4, rate T=3, P=2;")
    plt.close(fig)
    # the report of a conv model: sim.report's Markdown names the network, and the plot file is written
    r = write_report(tmp_path, "conv", m, x, np.zeros(8, np.int64), lanes=2)
    assert (tmp_path / "layers_cost.png").stat().st_size > 0 and "layers_cost.png" in r["plots"]
    assert "Model: 1x4x4-3c3-mp2-4, coding rate" in r["markdown"]
    assert "| layer 1 | maxpool2d | 3×4×4→3×2×2, k2 |" in r["markdown"]
