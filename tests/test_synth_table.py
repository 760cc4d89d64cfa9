"""hw.synth_table: the model specs, the table's figures, the reuse of results of the same netlist, the
default package of each part, and the options it rejects (exit 2, one line)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import golden
from golden import Dense, Model
from hw import synth_table as st
from hw.generate import render
from hw.synth import TARGETS

ROOT = Path(__file__).resolve().parents[1]


def _model(T=3):
    rng = np.random.default_rng(11)
    return Model([Dense(rng.integers(-8, 8, (6, 12)), 0, 5, 0), Dense(rng.integers(-8, 8, (4, 6)), 0, 4, 0)],
                 T=T, input_max=9)


def test_parse_model_retargets_and_rejects(tmp_path):
    golden.save_model(_model(), tmp_path / "m.npz")
    label, m, _ = st.parse_model(f"rate={tmp_path / 'm.npz'}")
    assert (label, m.coding) == ("rate", "rate")
    label, m, _ = st.parse_model(f"s={tmp_path / 'm.npz'}@stcb")
    assert (label, m.coding, m.T) == ("s", "stcb", 3)
    assert np.array_equal(m.layers[0].weight, _model().layers[0].weight)      # the same integer weights
    for bad, msg in [("nolabel", "expected LABEL=PATH"), (f"x={tmp_path / 'm.npz'}@morse", "unknown coding 'morse'")]:
        with pytest.raises(Exception, match=msg):
            st.parse_model(bad)


def test_table_rows_give_latency_at_the_measured_fmax():
    ok = {"status": "ok", "label": "rate", "T": 8, "part": "LFE5U-25F", "device": "25k", "speed_grade": 6,
          "lanes": 8, "luts": 4502, "ffs": 3000, "bram": 6, "dsp": 0, "fmax_mhz": 112.5, "cycles": 3150.0,
          "critical_path": {"start": "a.Q", "end": "b.D", "delay_ns": 8.9, "logic_ns": 4.0, "routing_ns": 4.9}}
    bad = {"status": "does_not_fit", "error": "needs 30000 LUTs", "label": "stcb", "T": 8, "device": "25k",
           "speed_grade": 6, "lanes": 32}
    md = st.table_markdown([ok, {**ok, "yosys_flow": "abc", "lanes": 16}, bad]).splitlines()
    assert md[2] == ("| rate (T=8) | LFE5U-25F-6 | 8 | 4502 | 3000 | 6 | 0 | 112.50 | 28.00 | "
                     "`a.Q` -> `b.D`: 8.90 ns (4.00 logic, 4.90 routing) |")
    assert "112.50 (classic ABC)" in md[3]
    assert md[4].startswith("| stcb (T=8) | 25k-6 | 32 | **does_not_fit**: needs 30000 LUTs")


def _job(tmp_path, model, lanes=2, device="25k", speed=6):
    return {"label": "r", "model": model, "model_path": "m.npz", "lanes": lanes, "device": device, "speed": speed,
            "cycles": 10.0, "out": str(tmp_path / f"r_p{lanes}_{device}_s{speed}")}


def test_a_result_of_the_same_netlist_and_settings_is_reused(tmp_path):
    m = _model()
    job = _job(tmp_path, m)
    out = Path(job["out"])
    out.mkdir()
    text = render(m, 2, "r_p2")[0]
    (out / "r_p2.v").write_text(text)
    res = {"status": "ok", "device": "25k", "speed": 6, "seed": 1, "freq_target_mhz": 100.0, "package": "CABGA256",
           "lanes": 2, "top": "r_p2", "fmax_mhz": 99.0, "luts": 10}
    out.with_suffix(".json").write_text(json.dumps(res))
    assert st._reusable(job) == res
    r = st._one(job)                       # no synthesis runs: the tools are not even needed
    assert (r["reused"], r["fmax_mhz"], r["label"], r["cycles"]) == (True, 99.0, "r", 10.0)
    # anything else and the core is synthesised again
    for change in ({"speed": 8}, {"package": "CABGA381"}, {"seed": 2}, {"status": "does_not_fit"}):
        out.with_suffix(".json").write_text(json.dumps({**res, **change}))
        assert st._reusable(job) is None, change
    out.with_suffix(".json").write_text(json.dumps(res))
    (out / "r_p2.v").write_text(text.replace("module", "module ", 1))          # another netlist
    assert st._reusable(job) is None
    (out / "r_p2.v").write_text(render(_model(T=4), 2, "r_p2")[0])            # another model's core
    assert st._reusable(job) is None


def test_each_part_gets_a_package_it_comes_in():
    ecp5 = TARGETS["ecp5"]
    assert ecp5.package_for("25k") == "CABGA256" and ecp5.package_for("85k") == "CABGA381"


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "hw.synth_table", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=120)


@pytest.mark.parametrize("args, msg", [
    (["--also", "85k:8"], "--also: expected DEVICE:SPEED:P, e.g. 85k:8:8, got '85k:8'"),
    (["--also", "99k:8:8"], "unknown ECP5 device '99k'"),
    (["--lanes", "3"], "--lanes"),
    (["--speed", "5"], "an ECP5 speed grade: 6, 7 or 8"),
])
def test_bad_options_exit_2_with_one_line(tmp_path, args, msg):
    golden.save_model(_model(), tmp_path / "m.npz")
    r = _cli("--model", f"r={tmp_path / 'm.npz'}", *args, "--out", tmp_path / "t.json")
    assert r.returncode == 2 and msg in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert not (tmp_path / "t.json").exists() and not (tmp_path / "t").exists()


# ------------------------------------------------------------------------------------------------
# the mnist5k comparison (README's mnist5k-compare block): our cores from their JSON beside published designs

_LAYERS = [{"type": "conv2d", "in_shape": [1, 28, 28], "out_shape": [16, 28, 28], "kernel": 3, "stride": 1,
            "padding": 1, "reset": "subtract", "leak": None},
           {"type": "maxpool2d", "in_shape": [16, 28, 28], "out_shape": [16, 14, 14], "kernel": 2},
           {"type": "dense", "n_in": 3136, "n_out": 10, "reset": "subtract", "leak": None}]


def _regress(lanes=16, banks=9, cycles=6467.9, coding="rate", encoding="direct", T=1, matching=1000):
    meta = {"coding": coding, "T": T, "encoding": encoding, "layers": _LAYERS}
    return {"summary": {"lanes": lanes, **({"banks": banks} if banks > 1 else {}), "model": meta, "samples": 1000,
                        "matching_samples": matching, "golden_accuracy": 0.976, "rtl_accuracy": 0.976,
                        "stall_prob": 0.2, "mean_counters": {"cycles": cycles}}, "samples": []}


def _synth(lanes=16, banks=9, fmax=80.0, coding="rate", T=1, status="ok"):
    return {"status": status, "lanes": lanes, **({"banks": banks} if banks > 1 else {}), "part": "LFE5U-85F",
            "speed": 6, "device": "85k", "luts": 12345, "ffs": 6789, "bram": 90, "dsp": 12, "fmax_mhz": fmax,
            "model_meta": {"coding": coding, "T": T, "layers": _LAYERS}, "seconds": {"total": 1500.0}}


def test_comparison_latency_is_the_cycles_over_the_measured_fmax():
    rows = st.comparison_rows([("d", _regress(), _synth(), {"float_accuracy": 0.975, "train_seconds": 266.8}),
                               ("r", _regress(cycles=40000.0, coding="rate", encoding="rate", T=8),
                                _synth(fmax=64.0, T=8), None)])
    d, r = rows
    assert d["arch"] == "16c3-mp2-10" and (d["lanes"], d["banks"]) == (16, 9)
    assert d["latency_us"] == pytest.approx(6467.9 / 80.0) and d["images_per_s"] == pytest.approx(80e6 / 6467.9)
    assert r["latency_us"] == pytest.approx(625.0)
    # a core mapped by the classic ABC pass (Yosys's ABC9 assertion) says so beside its Fmax
    abc = st.comparison_markdown(st.comparison_rows([("d", _regress(), {**_synth(), "yosys_flow": "abc"}, None)]))
    assert "| 80.0 (measured, classic ABC) |" in abc
    md = st.comparison_markdown(rows).splitlines()
    assert md[2] == ("| spikeforge `d` | `16c3-mp2-10`, rate, direct input, T=1 | LFE5U-85F-6 (nextpnr) | 16, 9 | "
                     "12,345 | 6,789 | 90 DP16KD | 12 | 80.0 (measured) | 6,467.9 | **80.8** | 12,369 | "
                     "97.60% (1,000 mnist5k test digits) | 1000/1000 |")
    assert md[3].startswith("| spikeforge `r` | `16c3-mp2-10`, rate, T=8 |") and "| **625.0** |" in md[3]
    # the published designs follow, with the figures their papers state
    pub = "\n".join(md[4:7])
    assert "[Spiker+](https://arxiv.org/abs/2401.01141)" in pub and "| 780 |" in pub and "93.85% (MNIST)" in pub
    assert "[snn-fpga](https://github.com/im-afan/snn-fpga)" in pub and "| 520 |" in pub and "| 100 |" in pub
    assert "|  |" not in pub and "[Skydiver]" in pub and "| 22,600 |" in pub and "98.50% (MNIST)" in pub and "(44.2 = 1 / throughput)" in pub
    tail = md[-1]
    assert "Best latency: `d`, 80.8 µs per image at its measured 80.0 MHz (within 100 µs)." in tail
    assert "Slowest synthesised core: `r`, 625.0 µs (below the 780 µs of the slowest published design)." in tail
    # the target is checked against the figures, not assumed
    slow = st.comparison_rows([("d", _regress(), _synth(fmax=60.0), None)])
    assert "(above 100 µs)" in st.comparison_markdown(slow)


def test_comparison_refuses_a_synthesis_of_another_core():
    for other in (_synth(lanes=8), _synth(banks=1), _synth(T=8), _synth(coding="tsc")):
        with pytest.raises(ValueError, match="the synthesis result is of another core"):
            st.comparison_rows([("d", _regress(), other, None)])


def test_a_core_without_a_measured_fmax_gets_no_latency():
    rows = st.comparison_rows([("t", _regress(coding="tsc", encoding="tsc", T=8), None, None),
                               ("f", _regress(), _synth(status="does_not_fit", fmax=None), None)])
    assert all("latency_us" not in r for r in rows)
    md = st.comparison_markdown(rows)
    assert "| spikeforge `t` | `16c3-mp2-10`, tsc, T=8 | not synthesised yet | 16, 9 |" in md
    assert "| spikeforge `f` | `16c3-mp2-10`, rate, direct input, T=1 | synthesis: does_not_fit |" in md
    assert "No measured Fmax yet for `t`, `f`, so no latency." in md and "Best latency" not in md


def test_readme_block_renders_from_the_json_and_a_drifted_fmax_fails_the_check(tmp_path):
    from sim import readme as rd
    assert rd.render_block("mnist5k-compare", tmp_path) is None           # no sources: the block is kept
    for sub in ("regress", "synth", "models"):
        (tmp_path / sub).mkdir()
    core = rd.mnist5k_core("mnist5k_direct_t1")
    (tmp_path / "regress" / f"{core}.json").write_text(json.dumps(_regress()))
    body = rd.render_block("mnist5k-compare", tmp_path)
    assert "| spikeforge `mnist5k_direct_t1` |" in body and "not synthesised yet" in body
    assert "`mnist5k_rate_t8`" not in body                                # no regression JSON: no row
    assert "written by `make mnist5k-train mnist5k-regress mnist5k-synth`.</sub>" in body
    (tmp_path / "synth" / f"{core}_85k.json").write_text(json.dumps(_synth()))
    (tmp_path / "models" / "mnist5k_direct_t1.json").write_text(json.dumps({"float_accuracy": 0.975,
                                                                             "train_seconds": 266.8}))
    body = rd.render_block("mnist5k-compare", tmp_path)
    assert "| **80.8** |" in body and "`mnist5k_direct_t1` 267 s, float reference 97.50%" in body
    assert "`mnist5k_direct_t1` 1,500 s" in body
    doc = tmp_path / "doc.md"
    doc.write_text(f"x\n<!-- BEGIN generated:mnist5k-compare -->\n{body}\n<!-- END generated:mnist5k-compare -->\n")
    check = [sys.executable, "-m", "sim.readme", "--check", "--build-dir", tmp_path, "--files", doc]
    run = lambda: subprocess.run(list(map(str, check)), capture_output=True, text=True, cwd=ROOT,
                                 env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=120)
    assert run().returncode == 0
    (tmp_path / "synth" / f"{core}_85k.json").write_text(json.dumps(_synth(fmax=70.0)))
    r = run()
    assert r.returncode == 1 and "out of date" in r.stderr and "**92.4**" in r.stdout


def _readme_mnist():
    from sim.readme import MNIST5K_CORES, mnist5k_core
    return [ROOT / "build" / "regress" / f"{mnist5k_core(m)}.json" for m in MNIST5K_CORES]


@pytest.mark.skipif(not any(p.is_file() for p in _readme_mnist()),
                    reason="no build/regress/mnist5k_<model>_p<P>_b<banks>.json: run `make mnist5k-regress` first")
def test_readme_mnist5k_block_equals_its_json():
    r = subprocess.run([sys.executable, "-m", "sim.readme", "--check", "--only", "mnist5k-compare"],
                       capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_makefile_builds_each_mnist5k_core_the_table_reads():
    # the Makefile's per-model lanes and banks and sim.readme's MNIST5K_CORES name the same cores
    from sim.readme import MNIST5K_CORES, mnist5k_core
    r = subprocess.run(["make", "-n", "mnist5k-regress", "mnist5k-synth", "PY=python"], capture_output=True, text=True,
                       cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr
    for name, (P, B) in MNIST5K_CORES.items():
        core = mnist5k_core(name)
        assert (f"--model build/models/{name}.npz --lanes {P} --banks {B} --device 85k" in r.stdout
                and f"--out build/synth/{core}_85k.json" in r.stdout), name
        assert f"--lanes {P} --banks {B} --stall-prob 0.2 --json build/regress/{core}.json" in r.stdout, name
