"""The HDL harness (sim.harness) and the testbench around it: hangs fail fast with one line, hazard checks
run in every regression, and functional coverage counts what the core's ports did."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import golden
from hw.generate import generate
from sim import coverage as cov
from sim.harness import COVER_EVENTS, harness
from sim.runner import SimHang, build, cycle_budget, run_job, wall_limit
from sim.toolchain import ensure_verilator
from test_sim import random_model

ROOT = Path(__file__).resolve().parents[1]
GEN = ROOT / "build" / "test-verilog"


@pytest.fixture(scope="module")
def core():
    ensure_verilator()
    model, x = random_model(21, [9, 7, 5], encoding="rate", readout="count", T=3, wb=5)
    v, j = generate(model, 4, GEN / "hx_core", "hx_core")
    return model, x, v, json.loads(j.read_text()), build(v, "hx_core", fast=True)


def _mutant(tmp_path: Path, v: Path, pattern: str, repl: str, name: str) -> Path:
    """A copy of netlist ``v`` (and its manifest) with one line replaced: the pattern must match once."""
    text = v.read_text()
    new, n = re.subn(pattern, repl, text)
    assert n == 1, f"{pattern!r} matched {n} times"
    d = tmp_path / name
    d.mkdir()
    (d / v.name).write_text(new)
    (d / v.with_suffix(".json").name).write_text(v.with_suffix(".json").read_text())
    return d / v.name


def _budget(model, x):
    """A tight budget for the hung netlists: golden's cycles, the beats, and 300. They are fast (-O0) builds,
    which simulate an idle core at about 100 cycles a second: sim.regress's budget (cycle_budget: 4x golden
    plus 10,000) cost each of these tests 80 to 300 s. The formula has a test of its own below."""
    g = golden.run(model, x, lanes=4)
    return int(g.counters["cycles"].sum()) + len(x) * (model.n_in + model.n_out) + 300


def test_harness_refuses_a_core_with_other_inputs(core):
    man = json.loads(json.dumps(core[3]))
    man["ports"]["extra"] = {"direction": "input", "width": 1}
    with pytest.raises(ValueError, match="inputs"):
        harness(man)


def test_a_core_that_never_answers_fails_with_one_line_naming_sample_and_phase(core, tmp_path):
    model, x, v, man, _ = core
    # the result stream never becomes valid: every input beat is accepted, no result beat comes
    bad = _mutant(tmp_path, v, r"\.sending\(result__valid\),", ".sending(),", "novalid")
    b = build(bad, "hx_core", fast=True)
    with pytest.raises(SimHang) as e:
        run_job(b, {"manifest": man, "inputs_array": x[:3], "max_cycles": _budget(model, x[:3])})
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("the core hangs: sample 0, computing: all 9 input beats accepted, no result beat"), msg


def test_a_core_that_stops_taking_input_hangs_in_the_input_phase(core, tmp_path):
    model, x, v, man, _ = core
    bad = _mutant(tmp_path, v, r"assign x__ready = [^;]+;", "assign x__ready = 1'b0;", "noready")
    b = build(bad, "hx_core", fast=True)
    with pytest.raises(SimHang, match=r"^the core hangs: sample 0, input: 0 of 9 beats accepted, no progress "
                                      r"within \d+ cycles$"):
        run_job(b, {"manifest": man, "inputs_array": x[:2], "max_cycles": _budget(model, x[:2])})
    # the protocol-fault test's waits have budgets too
    with pytest.raises(SimHang, match=r"^the core hangs: sample 0 \(before the mid-inference reset\), input"):
        run_job(b, {"manifest": man, "inputs_array": x[:1], "max_cycles": _budget(model, x[:1])},
                testcase="protocol_abuse")


def test_sim_regress_exits_1_with_one_line_on_a_hung_core(tmp_path):
    # digits-shaped, so the CLI streams real samples; the netlist never raises result__valid
    model, _ = random_model(22, [64, 6, 10], encoding="rate", readout="count", T=2, wb=4, input_max=16)
    v, _ = generate(model, 4, GEN / "hx_digits", "hx_digits")
    bad = _mutant(tmp_path, v, r"\.sending\(result__valid\),", ".sending(),", "novalid")
    mpath = tmp_path / "m.npz"
    golden.save_model(model, mpath)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("PYTEST_CURRENT_TEST", None)          # as a user runs it, not under pytest
    p = subprocess.run([sys.executable, "-m", "sim.regress", "--model", str(mpath), "--verilog", str(bad),
                        "--limit", "3", "--json", str(tmp_path / "r.json")],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 1, p.stderr
    assert len(lines) == 1 and lines[0].startswith("sim.regress: error: HANG: the core hangs: sample 0, computing"), \
        p.stderr
    assert "Traceback" not in p.stderr and not (tmp_path / "r.json").exists()


def test_cycle_budget_is_four_times_golden_plus_the_stalls_and_a_margin():
    assert cycle_budget(1000, 10, 0.0) == 4 * 1000 + 10 * 2 + 10_000
    assert cycle_budget(1000, 10, 0.2) == 4 * 1000 + 10 * (2 + 5) + 10_000      # 20 x p / (1 - p) = 5 per beat


def test_wall_clock_limit_follows_the_cycle_budget():
    assert wall_limit(None, "verilator") is None
    assert wall_limit(2_000_000, "verilator") == 300 + 100
    assert wall_limit(3_000, "icarus") == 310


def test_hazard_checks_run_in_every_regression_without_coverage(core, tmp_path):
    # a manifest that demands more read-after-write distance than the core gives: the harness flags it
    # although the job asks for no coverage (the checks used to run only with coverage on)
    model, x, v, man, _ = core
    strict = json.loads(json.dumps(man))
    strict["parameters"]["min_state_raw_distance"] = 10_000
    d = tmp_path / "strict"
    d.mkdir()
    (d / v.name).write_text(v.read_text())
    (d / v.with_suffix(".json").name).write_text(json.dumps(strict))
    b = build(d / v.name, "hx_core", fast=True)
    r = run_job(b, {"manifest": strict, "inputs_array": x[:2]})
    assert any(s.startswith("state word read closer to its last write than the minimum read-after-write distance")
               for s in r["violations"]), r["violations"]
    clean = run_job(core[4], {"manifest": man, "inputs_array": x[:2]})
    assert clean["violations"] == []


def test_functional_bins_count_what_the_core_accepted(core):
    model, x, v, man, b = core
    M = model.input_max
    rng = np.random.default_rng(5)
    rnd = rng.integers(1, M, (3, model.n_in))
    with_zero = np.vstack([np.zeros((1, model.n_in), np.int64), rnd, np.full((1, model.n_in), M)])
    r = run_job(b, {"manifest": man, "inputs_array": with_zero, "stall_prob": 0.3, "seed": 3, "coverage": True})
    ev = json.loads(str(r["cover_events"]))
    assert ev["c_all_zero"] == 1 and ev["c_saturated"] == 1
    assert r["coverage"]["x"]["all-zero-sample"] == 1 and r["coverage"]["x"]["saturated-sample"] == 1
    # the same campaign with its all-zero sample dropped before the core sees it: the bin is not hit, and the
    # campaign reports it missed
    r2 = run_job(b, {"manifest": man, "inputs_array": with_zero[1:], "stall_prob": 0.3, "seed": 3, "coverage": True})
    assert r2["coverage"]["x"]["all-zero-sample"] == 0
    assert "x/all-zero-sample" in cov.missed(r2["coverage"], cov.CampaignConfig(frozenset({"rate"})))
    # a sample that is zero but for its last beat is not all-zero
    almost = np.zeros((1, model.n_in), np.int64)
    almost[0, -1] = 1
    r3 = run_job(b, {"manifest": man, "inputs_array": almost, "coverage": True})
    assert r3["coverage"]["x"]["all-zero-sample"] == 0
    # stalls were injected and observed by the harness (not planned by Python)
    assert int(r["stall_cycles"]) > 0 and ev["c_held"] > 0
    assert set(ev) == set(COVER_EVENTS) | {"back_to_back"}


def test_configuration_coverage_is_a_table_of_its_own():
    assert not any(p.startswith("config.") for p in cov.POINTS)
    hits = cov.config_hits({"coding": "rate", "encoding": "direct", "readout": "count", "lanes": 4,
                            "sizes": [9, 7, 5], "kernels": [[1], [1]]})
    on = {f"{p}/{b}" for p, bins in hits.items() for b, n in bins.items() if n}
    assert on == {"config.coding/rate", "config.encoding/direct", "config.readout/count", "config.lanes/2-32",
                  "config.layers/2-3", "config.lane_edge/n_out%P!=0", "config.lane_edge/n_in%P!=0"}
    # the neuron options, from the manifest's resets and leaks
    hits = cov.config_hits({"coding": "stcb", "encoding": "rate", "readout": "count", "lanes": 1, "sizes": [3, 2],
                            "kernels": [[1]], "resets": ["zero"], "leaks": [[3, 2]]})
    assert hits["config.reset"]["zero"] == 1 and hits["config.leak"]["on"] == 1
    assert cov.config_hits({"coding": "rate", "encoding": "rate", "readout": "count", "lanes": 1, "sizes": [3, 2],
                            "leaks": [None]})["config.leak"]["on"] == 0
