"""Every CLI that takes a model works on models of every coding and encoding.

The table runs each CLI on a rate model with the rate encoder, a rate model with direct input, an
stcb model with an STEB kernel and a tsc model (all 64 inputs, so they read the digits set), and
checks the exit code, that nothing went to stderr but progress, and what the CLI wrote.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import golden
from golden import Dense, Model

ROOT = Path(__file__).resolve().parents[1]

CODINGS = {
    "rate": dict(coding="rate", encoding="rate", readout="count", T=4),
    "direct": dict(coding="rate", encoding="direct", readout="membrane", T=2),
    "stcb-kernel": dict(coding="stcb", encoding="rate", readout="count", T=4),
    "tsc": dict(coding="tsc", encoding="tsc", readout="membrane", T=5),
}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("codings")
    rng = np.random.default_rng(11)
    out = {}
    for name, kw in CODINGS.items():
        h = (2, -1) if name == "stcb-kernel" else (1,)
        v0 = 0 if kw["coding"] == "tsc" else rng.integers(-3, 4, 6)
        layers = [Dense(rng.integers(-12, 13, (6, 64)), rng.integers(-4, 5, 6), rng.integers(20, 40, 6), v0, h=h),
                  Dense(rng.integers(-12, 13, (10, 6)), 0, 9, 0)]
        m = Model(layers, input_max=16, weight_bits=6, **kw)
        golden.save_model(m, d / f"{name}.npz")
        out[name] = (m, d / f"{name}.npz")
    return out


def run(*args, timeout=600):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=timeout)


def _ok(r):
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Traceback" not in r.stderr + r.stdout


@pytest.mark.parametrize("coding", list(CODINGS))
def test_golden_run(models, coding, tmp_path):
    m, path = models[coding]
    r = run("-m", "golden.run", "--model", path, "--limit", 20, "--lanes", 2, "--json", tmp_path / "g.json")
    _ok(r)
    s = json.loads((tmp_path / "g.json").read_text())
    g = golden.run(m, golden.datasets.load("digits", "test")[0][:20], lanes=2)
    assert s["samples"] == 20 and s["mean_counters"]["cycles"] == float(g.counters["cycles"].mean())
    assert f"{float(g.counters['spikes'].mean()):.1f}" in r.stdout


@pytest.mark.parametrize("coding", list(CODINGS))
def test_hw_generate(models, coding, tmp_path):
    _ok(run("-m", "hw.generate", "--model", models[coding][1], "--lanes", 4, "--out", tmp_path / "v.v"))
    man = json.loads((tmp_path / "v.json").read_text())
    assert man["parameters"]["coding"] == models[coding][0].coding


@pytest.mark.parametrize("coding", list(CODINGS))
def test_sim_regress_and_report(models, coding, tmp_path):
    m, path = models[coding]
    j = tmp_path / "r.json"
    r = run("-m", "sim.regress", "--model", path, "--limit", 6, "--lanes", 4, "--stall-prob", 0.2, "--json", j)
    _ok(r)
    s = json.loads(j.read_text())["summary"]
    assert s["matching_samples"] == s["samples"] == 6 and s["violations"] == []
    r = run("-m", "sim.report", "--model", path, "--limit", 6, "--lanes", 4, "--regress", j,
            "--out", tmp_path / "report.json")
    _ok(r)
    rep = json.loads((tmp_path / "report.json").read_text())
    assert rep["agreement"]["matching"] == 6 and rep["model"]["coding"] == m.coding
    assert all((tmp_path / p).read_bytes()[:4] == b"\x89PNG" for p in rep["plots"])


@pytest.mark.parametrize("coding", list(CODINGS))
def test_sim_sweep(models, coding, tmp_path):
    m, path = models[coding]
    r = run("-m", "sim.sweep", "--model", path, "--lanes", "1,8", "--limit", 10, "--no-progress",
            "--out", tmp_path / "s.json")
    _ok(r)
    d = json.loads((tmp_path / "s.json").read_text())
    assert [(row["coding"], row["lanes"]) for row in d["rows"]] == [(m.coding, 1), (m.coding, 8)]
    assert all(row["energy_pj"] > 0 for row in d["rows"])


@pytest.mark.parametrize("coding", list(CODINGS))
def test_hw_synth(models, coding, tmp_path):
    from hw.synth import tools_available
    if not tools_available("ecp5"):
        pytest.fail("the yowasp FPGA tools are part of the toolchain; run `make setup`")
    r = run("-m", "hw.synth", "--model", models[coding][1], "--lanes", 1, "--out", tmp_path / "syn.json", timeout=900)
    _ok(r)
    d = json.loads((tmp_path / "syn.json").read_text())
    assert d["status"] == "ok" and d["fmax_mhz"] > 0 and d["luts"] > 0
