"""sim.sweep: option parsing, the rows (golden's counters, clocks, memories, energy), the Pareto front,
the RTL check's verdicts (with a stand-in for sim.regress), files written and every bad input."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import golden
from golden import Dense, Model
from golden import energy as en
from sim import sweep as sw
from golden.cli import UsageError
from hw.config import CoreConfig

ROOT = Path(__file__).resolve().parents[1]


def digits_model(**kw):
    rng = np.random.default_rng(1)
    args = dict(T=4, input_max=16)
    args.update(kw)
    return Model([Dense(rng.integers(-20, 20, (12, 64)), 0, 40, 0), Dense(rng.integers(-20, 20, (10, 12)), 0, 30, 0)],
                 **args)


def test_parse_lanes():
    assert sw.parse_lanes("1,2,4,64") == [1, 2, 4, 64]
    assert sw.parse_lanes(" 8 ") == [8]
    for bad, msg in [("3", "'3' is not one"), ("1,,2", "comma-separated"), ("a", "'a' is not one"),
                     ("128", "'128' is not one"), ("0", "'0' is not one"), ("2,2", "twice"), ("", "comma-separated")]:
        with pytest.raises(UsageError, match=msg):
            sw.parse_lanes(bad)


def test_parse_codings():
    assert sw.parse_codings("tsc, rate,stcb") == ["tsc", "rate", "stcb"]
    with pytest.raises(UsageError, match="unknown coding 'spiky'"):
        sw.parse_codings("spiky")
    with pytest.raises(UsageError, match="unknown coding ''"):
        sw.parse_codings("rate,")
    with pytest.raises(UsageError, match="twice"):
        sw.parse_codings("rate,rate")


def test_parse_T():
    assert sw.parse_T("4,8") == [4, 8]
    for bad in ("0", "x", "2000", "4,4"):
        with pytest.raises(UsageError):
            sw.parse_T(bad)


def test_pareto_front():
    pts = [(1, 10), (2, 5), (3, 5), (4, 1), (2, 11)]
    assert sw.pareto_front(pts) == [True, True, False, True, False]


def test_rows_follow_golden_counters_clock_and_fmax(tmp_path):
    m = digits_model()
    x = np.random.default_rng(0).integers(0, 17, (15, 64))
    y = np.arange(15) % 10
    fmax = {2: {"fmax_mhz": 50.0, "file": str(tmp_path / "s.json"), "part": "x", "target": "ecp5"}}
    s = sw.sweep(m, x, y, lanes=[1, 2], Ts=[4, 2], clock_mhz=100.0, fmax=fmax, progress=False)
    rows = s["rows"]
    assert [(r["T"], r["lanes"]) for r in rows] == [(4, 1), (4, 2), (2, 1), (2, 2)]
    for r in rows:
        mm = m if r["T"] == 4 else m.replace(T=2)
        g = golden.run(mm, x, lanes=r["lanes"])
        assert r["cycles_mean"] == float(g.counters["cycles"].mean())
        assert r["cycles_min"] == int(g.counters["cycles"].min())
        assert r["accuracy"] == float((g.predictions == y).mean())
        clock = 50.0 if r["lanes"] == 2 else 100.0
        assert r["clock_mhz"] == clock
        assert r["latency_us"] == pytest.approx(r["cycles_mean"] / clock)
        assert r["throughput_per_s"] == pytest.approx(clock * 1e6 / r["cycles_mean"])
        mems = CoreConfig(mm, r["lanes"]).memories()
        assert r["memory_bits"] == sum(v["bits"] for v in mems.values())
        assert r["weight_memory_bits"] == mems["weights"]["bits"]
    assert rows[1]["clock_source"] == "fmax s.json" and rows[0]["clock_source"] == "--clock-mhz"
    # Pareto flags against a brute-force domination check over (latency, energy)
    pts = np.array([(r["latency_us"], r["energy_pj"]) for r in rows])
    dominated = [bool(((pts <= p).all(axis=1) & (pts < p).any(axis=1)).any()) for p in pts]
    assert [r["pareto"] for r in rows] == [not d for d in dominated]
    assert sum(dominated) >= 1 and sum(dominated) < len(rows)        # the check can go both ways here


def test_row_energy_from_a_table_that_charges_only_synaptic_adds():
    # every add costs 1 pJ at any width in 8..32 bits and nothing else costs anything, so the energy
    # per inference is exactly the mean number of synaptic adds counted by golden
    table = {k: dict(v) for k, v in en.DEFAULT_TABLE.items()}
    table["int_add"] = {**table["int_add"], "points": [[8, 1.0], [16, 1.0], [32, 1.0]]}
    table["int_mult"] = {**table["int_mult"], "points": [[8, 0.0], [32, 0.0]]}
    table["sram_read_64b"] = {**table["sram_read_64b"], "points": [[8192, 0.0], [32768, 0.0], [1048576, 0.0]]}
    for k in ("neuron_update_adds", "encoder_update_adds", "sram_write_factor"):
        table[k] = {**table[k], "value": 0}
    m = digits_model()
    x = np.random.default_rng(3).integers(0, 17, (9, 64))
    (row,) = sw.sweep(m, x, None, lanes=[2], table=table, progress=False)["rows"]
    syn = golden.run(m, x, lanes=2).counters["syn_ops"]
    assert row["energy_pj"] == pytest.approx(float(syn.mean()), rel=1e-12)
    assert row["energy_syn_adds_pj"] == row["energy_pj"] and row["energy_weight_reads_pj"] == 0.0
    # the ANN baseline: 64*12 + 12*10 MACs, each an 8-bit mult (0 pJ) and a 32-bit add (1 pJ)
    assert row["ann_int8_pj"] == pytest.approx(64 * 12 + 12 * 10)


def test_load_fmax_checks_the_files(tmp_path):
    m = digits_model()
    good = {"status": "ok", "lanes": 4, "fmax_mhz": 61.5, "model_meta": m.meta(), "part": "LFE5U-25F", "target": "ecp5"}
    (tmp_path / "a.json").write_text(json.dumps(good))
    (e,) = sw.load_fmax([tmp_path / "a.json"], m)
    assert (e["lanes"], e["fmax_mhz"], e["coding"]) == (4, 61.5, "rate")
    assert sw._fmax_for([e], m, 4) is e and sw._fmax_for([e], m, 8) is None
    assert sw._fmax_for([e], digits_model().replace(layers=[Dense(np.ones((3, 64), int), 0, 9, 0)]), 4) is None
    cases = [({**good, "status": "does_not_fit", "fmax_mhz": None}, "no usable Fmax"),
             ({**good, "model_meta": digits_model(T=2).meta() | {"layers": [{"n_in": 64, "n_out": 5}]}}, "different network"),
             ({"hello": 1}, "not an hw.synth result")]
    for i, (d, msg) in enumerate(cases):
        p = tmp_path / f"b{i}.json"
        p.write_text(json.dumps(d))
        with pytest.raises(UsageError, match=msg):
            sw.load_fmax([p], m)
    with pytest.raises(UsageError, match="two files for lanes=4 of the same network"):
        sw.load_fmax([tmp_path / "a.json", tmp_path / "a.json"], m)
    with pytest.raises(UsageError, match="not found"):
        sw.load_fmax([tmp_path / "zzz.json"], m)


def test_verify_verdicts_with_a_stand_in_regression(monkeypatch):
    import sim.regress
    m = digits_model()
    x = np.random.default_rng(2).integers(0, 17, (4, 64))
    s = sw.sweep(m, x, None, lanes=[1, 2, 4], progress=False)
    calls = []

    def fake_regress(model, xs, ys, *, lanes, name, log):
        calls.append((lanes, name))
        cyc = golden.run(model, xs, lanes=lanes).counters["cycles"].copy()
        if lanes == 4:
            cyc[2] += 1                       # the "RTL" is one cycle off on sample 2
        return SimpleNamespace(samples=[{"counters_rtl": {"cycles": int(c)}} for c in cyc],
                               summary={"matching_samples": len(cyc) - (lanes == 4), "samples": len(cyc)},
                               first_mismatch="sample 2: first differing field counter:cycles" if lanes == 4 else None)

    monkeypatch.setattr(sim.regress, "regress", fake_regress)
    v = sw.verify(s["models"], s["rows"], 3, x, None, seed=0, stem="t", base=m, progress=False)
    assert sorted(c[0] for c in calls) == [1, 2, 4] and all(n == f"t_p{p}" for p, n in calls)
    by = {d["lanes"]: d for d in v}
    assert by[1]["verdict"] == by[2]["verdict"] == "match" and by[1]["cycles_match"]
    assert by[4]["verdict"] == "MISMATCH" and by[4]["first_cycle_mismatch"] == 2
    # deterministic choice of configurations
    calls.clear()
    v1 = sw.verify(s["models"], s["rows"], 2, x, None, seed=5, stem="t", base=m, progress=False)
    v2 = sw.verify(s["models"], s["rows"], 2, x, None, seed=5, stem="t", base=m, progress=False)
    assert [d["lanes"] for d in v1] == [d["lanes"] for d in v2]


# --- the command line ------------------------------------------------------------------------------------

def cli(*args):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "sim.sweep", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=120)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    p = tmp_path_factory.mktemp("sweep_model") / "dm.npz"
    golden.save_model(digits_model(), p)
    return p


def test_cli_writes_csv_json_and_plots(model_path, tmp_path):
    out = tmp_path / "sw" / "run.json"
    r = cli("--model", model_path, "--lanes", "1,4", "--T", "4,2", "--limit", "12", "--out", out, "--no-progress")
    assert r.returncode == 0, r.stderr
    d = json.loads((tmp_path / "sw" / "run.json").read_text())
    assert d["samples"] == 12 and len(d["rows"]) == 4 and d["verify"] == []
    assert set(d["plots"]) == {"run_cycles.png", "run_pareto.png", "run_codings.png"}
    for f in d["plots"]:
        assert (tmp_path / "sw" / f).read_bytes()[:4] == b"\x89PNG"
    rows = list(csv.DictReader((tmp_path / "sw" / "run.csv").open()))
    assert tuple(rows[0]) == sw.CSV_FIELDS and len(rows) == 4
    assert float(rows[0]["cycles_mean"]) == d["rows"][0]["cycles_mean"]
    assert "| rate | 4 | 1 |" in r.stdout
    # --out names the main file: the others sit next to it, nothing else is written
    assert sorted(f.name for f in (tmp_path / "sw").iterdir()) == sorted(["run.json", "run.csv", *d["plots"]])
    assert d["clock_note"] == "at an assumed 100 MHz clock (no hw.synth Fmax given)"


def test_cli_out_is_a_file_never_a_directory(model_path, tmp_path):
    # `--out <existing directory>/` used to exit 0 and write outdir.csv and the PNGs next to the directory
    d = tmp_path / "outdir"
    d.mkdir()
    for out in (f"{d}/", str(d)):
        r = cli("--model", model_path, "--lanes", "1", "--limit", "4", "--out", out, "--no-progress")
        assert r.returncode == 2 and r.stderr.startswith(f"sim.sweep: error: --out: {out} is a directory")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["outdir"] and list(d.iterdir()) == []


def test_cli_several_models_side_by_side(model_path, tmp_path):
    other = tmp_path / "m2.npz"
    golden.save_model(digits_model(T=2), other)
    out = tmp_path / "two.json"
    r = cli("--model", model_path, other, "--lanes", "2", "--limit", "8", "--out", out, "--no-progress")
    assert r.returncode == 0, r.stderr
    d = json.loads((tmp_path / "two.json").read_text())
    assert [(row["model"], row["T"]) for row in d["rows"]] == [("dm", 4), ("m2", 2)]
    assert set(d["models"]) == {"dm", "m2"} and "| dm | rate | 4 | 2 |" in r.stdout


@pytest.mark.parametrize("args, needle", [
    (["--lanes", "1,3"], "--lanes: expected a comma-separated list of powers of two from 1 to 64 (e.g. 1,2,4,8); "
                         "'3' is not one"),
    (["--lanes", "1;2"], "'1;2' is not one"),
    (["--codings", "morse"], "unknown coding 'morse'"),
    (["--T", "0"], "--T: expected a comma-separated list of time steps from 1 to 1024"),
    (["--clock-mhz", "0"], "--clock-mhz: expected a positive number, got '0'"),
    (["--verify", "-1"], "--verify: expected a non-negative integer, got '-1'"),
    (["--fmax-json", "nowhere.json"], "file not found"),
    (["--energy-table", "nowhere.json"], "energy table file not found"),
    (["--dataset", "imagenet"], "imagenet"),
])
def test_cli_bad_input(model_path, tmp_path, args, needle):
    r = cli("--model", model_path, "--out", tmp_path / "o.json", "--no-progress", *args)
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and needle in r.stderr and "Traceback" not in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_cli_missing_model(tmp_path):
    r = cli("--model", tmp_path / "none.npz", "--out", tmp_path / "o.json")
    assert r.returncode == 2 and "model file not found" in r.stderr and r.stderr.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_retarget_keeps_weights_and_adapts_encoding():
    m = digits_model()
    assert sw.retarget(m, m.coding, m.T) is m
    m2 = sw.retarget(m, m.coding, 2)
    assert m2.T == 2 and m2.layers == m.layers
    s = sw.retarget(m, "stcb", 4)
    assert s.coding == "stcb" and s.encoding == m.encoding and s.readout == m.readout and s.layers == m.layers
    # tsc admits neither the rate encoding nor the count readout: both adapt, the weights stay
    t = sw.retarget(m, "tsc", 5)
    assert (t.coding, t.encoding, t.readout, t.T) == ("tsc", "tsc", "membrane", 5) and t.layers == m.layers
    # back from tsc: the tsc encoding adapts to rate coding's first encoding, membrane is kept
    r = sw.retarget(t, "rate", 5)
    assert (r.coding, r.encoding, r.readout) == ("rate", "rate", "membrane") and r.layers == m.layers


# --- the plots ------------------------------------------------------------------------------------------

def test_pareto_labels_stay_inside_and_codings_plot_is_never_empty():
    m = digits_model()
    x = np.random.default_rng(0).integers(0, 17, (10, 64))
    y = np.arange(10) % 10
    rows = sw.sweep(m, x, y, lanes=[1, 2, 4, 8], progress=False)["rows"]
    figs = sw.figures(rows, "t")
    assert set(figs) == {"_cycles.png", "_pareto.png", "_codings.png"}
    ax = figs["_pareto.png"].axes[0]
    labels = {t.get_text(): t for t in ax.texts}
    # the slowest point (P=1) sits at the right edge: its label must point inwards, or it is cut off
    assert labels["P=1"].get_ha() == "right" and labels["P=8"].get_ha() == "left"
    assert "assumed 100 MHz" in ax.get_xlabel()
    # one coding: the figure shows where the energy goes at every lane count, not one lonely bar
    (cax,) = figs["_codings.png"].axes
    assert [t.get_text() for t in cax.get_xticklabels()] == ["P=1", "P=2", "P=4", "P=8"]
    assert "energy by lanes" in cax.get_title()
    assert {t.get_text() for t in cax.get_legend().get_texts()} >= {"weight reads", "synaptic adds"}
    for f in figs.values():
        import matplotlib.pyplot as plt
        plt.close(f)


def test_codings_plot_names_each_best_lanes_and_zooms_accuracy():
    m = digits_model()
    x = np.random.default_rng(0).integers(0, 17, (10, 64))
    y = np.arange(10) % 10
    rows = sw.sweep([("a", m), ("b", m.replace(T=2))], x, y, lanes=[1, 4], progress=False)["rows"]
    figs = sw.figures(rows, "t")
    a1, a2 = figs["_codings.png"].axes[:2]
    ticks = [t.get_text() for t in a2.get_xticklabels()]
    best = {T: min((r for r in rows if r["T"] == T), key=lambda r: r["energy_pj"])["lanes"] for T in (4, 2)}
    assert ticks[:2] == [f"rate T=4\nat P={best[4]}", f"rate T=2\nat P={best[2]}"]
    lo, hi = min(100 * r["accuracy"] for r in rows), max(100 * r["accuracy"] for r in rows)
    pad = max(0.5, 0.6 * (hi - lo))
    assert a1.get_ylim() == pytest.approx((max(0.0, lo - pad), min(100.0, hi + pad)))   # zoomed to the values


def test_codings_retarget_every_model_and_each_row_is_golden_under_that_coding():
    # review of issue 17, item 4: `for coding in [m0.coding]` (codings ignored) must fail here
    m = digits_model()
    x = np.random.default_rng(5).integers(0, 17, (6, 64))
    y = np.arange(6) % 10
    s = sw.sweep([("a", m), ("b", m.replace(T=2))], x, y, lanes=[1, 4], codings=["tsc", "rate", "stcb"],
                 progress=False)
    rows = s["rows"]
    assert [(r["model"], r["coding"], r["T"], r["lanes"]) for r in rows] == [
        (lb, cd, T, P) for lb, T in (("a", 4), ("b", 2)) for cd in ("tsc", "rate", "stcb") for P in (1, 4)]
    assert set(s["models"]) == {(lb, cd, T) for lb, T in (("a", 4), ("b", 2)) for cd in ("tsc", "rate", "stcb")}
    for r in rows:
        mm = s["models"][(r["model"], r["coding"], r["T"])]
        assert mm.coding == r["coding"] and mm.T == r["T"]
        assert mm == sw.retarget(m if r["model"] == "a" else m.replace(T=2), r["coding"], r["T"])
        g = golden.run(mm, x, lanes=r["lanes"])
        assert r["cycles_mean"] == float(g.counters["cycles"].mean())
        assert r["weight_reads"] == float(g.counters["weight_reads"].mean())
        assert r["accuracy"] == float((g.predictions == y).mean())
    # the codings really differ in cost, so a row computed under the wrong coding cannot pass by chance
    by = {(r["coding"], r["lanes"]): r["cycles_mean"] for r in rows if r["model"] == "a"}
    assert len({by[(cd, 1)] for cd in ("tsc", "rate", "stcb")}) == 3


def _synth_file(path, m, lanes, sha="render", top="t"):
    """An ok hw.synth result of ``m`` at ``lanes``: of today's netlist (sha="render"), of another one
    (a given hash) or of an unknown one (sha=None: no hash recorded)."""
    from hw.generate import render
    d = {"status": "ok", "lanes": lanes, "fmax_mhz": 50.0 + lanes, "model_meta": json.loads(json.dumps(m.meta())),
         "part": "LFE5U-25F", "target": "ecp5", "top": top}
    if sha is not None:
        d["verilog_sha256"] = render(m, lanes, top)[1]["verilog_sha256"] if sha == "render" else sha
    path.write_text(json.dumps(d))
    return path


def test_fmax_of_another_netlist_is_said(tmp_path):
    # review of issue 17, item 5: an Fmax measured on another netlist (another T of the same network,
    # an older core) still clocks the row, but the row, the table, the clock note and the notes say so
    m = digits_model()
    files = [_synth_file(tmp_path / "p2.json", m, 2), _synth_file(tmp_path / "p1.json", m, 1, sha="0" * 64),
             _synth_file(tmp_path / "p4.json", m, 4, sha=None)]
    fmax = sw.load_fmax(files, m)
    x = np.random.default_rng(0).integers(0, 17, (3, 64))
    rows = sw.sweep(m, x, None, lanes=[1, 2, 4, 8], Ts=[4, 2], fmax=fmax, progress=False)["rows"]
    got = [(r["T"], r["lanes"], r["clock_mhz"], r["clock_netlist"], r["fmax_file"]) for r in rows]
    assert got == [(4, 1, 51.0, "other", str(files[1])), (4, 2, 52.0, "same", str(files[0])),
                   (4, 4, 54.0, "unknown", str(files[2])), (4, 8, 100.0, None, None),
                   (2, 1, 51.0, "other", str(files[1])), (2, 2, 52.0, "other", str(files[0])),
                   (2, 4, 54.0, "unknown", str(files[2])), (2, 8, 100.0, None, None)]
    assert sw.fmax_notes(rows) == [
        f"--fmax-json {files[1]}: synthesised from another netlist: its Fmax clocks 2 configurations of another "
        f"core (model rate T=4 P=1, model rate T=2 P=1); their latency is an estimate",
        f"--fmax-json {files[2]}: records no netlist hash: its Fmax clocks 2 configurations it cannot be matched "
        f"to (model rate T=4 P=4, model rate T=2 P=4); their latency is an estimate",
        f"--fmax-json {files[0]}: synthesised from another netlist: its Fmax clocks 1 configuration of another "
        f"core (model rate T=2 P=2); their latency is an estimate"]
    lines = sw.table_markdown(rows).splitlines()[2:]
    assert [(" (Fmax of another netlist)" in l, " (Fmax, netlist unknown)" in l) for l in lines] == [
        (True, False), (False, False), (False, True), (False, False),
        (True, False), (True, False), (False, True), (False, False)]
    assert "| 52.00 |" in lines[1] and "| 51.00 (Fmax of another netlist) |" in lines[0]
    assert sw.clock_note(rows).endswith("; 5 configurations clocked by an Fmax of another netlist (estimate)")
    same = [r for r in rows if r["clock_netlist"] in ("same", None)]
    assert sw.fmax_notes(same) == [] and "netlist" not in sw.clock_note(same)


def test_cli_notes_an_fmax_of_another_netlist_on_stderr_and_in_the_json(model_path, tmp_path):
    m = golden.load_model(model_path)
    _synth_file(tmp_path / "old.json", m, 2, sha="f" * 64)
    out = tmp_path / "o.json"
    r = cli("--model", model_path, "--lanes", "2", "--limit", "4", "--fmax-json", tmp_path / "old.json",
            "--out", out, "--no-progress")
    assert r.returncode == 0, r.stderr
    note = (f"sim.sweep: note: --fmax-json {tmp_path / 'old.json'}: synthesised from another netlist: its Fmax "
            f"clocks 1 configuration of another core (dm rate T=4 P=2); their latency is an estimate")
    assert r.stderr.splitlines() == [note]
    d = json.loads(out.read_text())
    assert d["fmax_notes"] == [note[len("sim.sweep: note: "):]]
    assert (d["rows"][0]["clock_mhz"], d["rows"][0]["clock_netlist"]) == (52.0, "other")
    assert "| 52.00 (Fmax of another netlist) |" in r.stdout
    (row,) = csv.DictReader((tmp_path / "o.csv").open())
    assert row["clock_netlist"] == "other"
