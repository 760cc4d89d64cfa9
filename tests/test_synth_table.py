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
