"""python -m golden.run on schema-2 models of every coding: the model summary (text and JSON), no traceback."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import golden
from golden import Conv2d, Dense, MaxPool2d, Model

ROOT = Path(__file__).resolve().parents[1]


def cli(*args):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "golden.run", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=300)


def digits_models() -> dict:
    """Networks on the digits images [1, 8, 8] (values 0..16), one per coding."""
    rng = np.random.default_rng(3)
    w1, w2 = rng.integers(-20, 30, (4, 1, 3, 3)), rng.integers(-20, 20, (10, 64))
    conv = lambda **kw: Conv2d(w1, 1, 60, 0, in_shape=(1, 8, 8), padding=1, **kw)
    pool = MaxPool2d(2, in_shape=(4, 8, 8))
    return {
        "rate": Model([conv(leak=(15, 4), reset="zero"), pool, Dense(w2, 0, 40, 0)], T=4, input_max=16),
        "direct": Model([conv(), pool, Dense(w2, 0, 40, 0)], T=2, encoding="direct", input_max=16,
                        readout="membrane"),
        "stcb": Model([Conv2d(w1, 1, 60, 0, [1, 1], in_shape=(1, 8, 8), padding=1), pool,
                       Dense(w2, 0, 40, 0, [2, -1])], coding="stcb", T=4, input_max=16),
        "tsc": Model([conv(), pool, Dense(w2, 0, 40, 0)], coding="tsc", T=5, encoding="tsc", input_max=16,
                     readout="membrane"),
        "dense, 3-D input": Model([Dense(rng.integers(-9, 9, (6, 64)), 0, 30, 0), Dense(rng.integers(-9, 9, (10, 6)))],
                                  T=3, input_max=16, input_shape=[1, 8, 8]),
    }


@pytest.mark.parametrize("name", list(digits_models()))
def test_run_prints_the_summary(tmp_path, name):
    m = digits_models()[name]
    golden.save_model(m, tmp_path / "m.npz")
    out = tmp_path / "s.json"
    r = cli("--model", tmp_path / "m.npz", "--limit", 12, "--lanes", 4, "--json", out)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    s = json.loads(out.read_text())
    summ = s["summary"]
    assert summ == m.summary() and summ["input_shape"] == [1, 8, 8]
    lines = r.stdout.splitlines()
    assert lines[0].startswith("model: input 1x8x8, coding " + m.coding)
    for row in summ["layers"]:
        line = lines[2 + row["index"]]
        assert line.split()[:2] == [str(row["index"]), row["type"]]
        assert f"{row['params']}" in line and f"{row['memory_bits']['weights']}" in line
    assert lines[2 + len(m.layers)].split()[0] == "total"
    assert f"({summ['total']['memory_bits']['total']} bits)" in lines[2 + len(m.layers)]
    assert "accuracy" in r.stdout and "acc_reads" in r.stdout
    res = golden.run(m, golden.datasets.load("digits", "test")[0][:12], lanes=4)
    assert s["mean_counters"]["acc_reads"] == float(res.counters["acc_reads"].mean())


def test_summary_numbers_hand_computed():
    m = digits_models()["rate"]                  # v_bits decides the parameter and state bits
    s = m.summary()
    conv, pool, dense = s["layers"]
    assert (conv["type"], conv["in_shape"], conv["out_shape"], conv["kernel"], conv["stride"], conv["padding"]) == \
        ("conv2d", [1, 8, 8], [4, 8, 8], 3, 1, 1)
    assert conv["params"] == 36 + 3 * 4 and conv["neurons"] == 256 and conv["leak"] == [15, 4]
    assert conv["memory_bits"] == {"weights": 36 * 8, "params": 12 * m.v_bits, "state": 256 * m.v_bits,
                                   "total": 36 * 8 + 268 * m.v_bits}
    assert pool["params"] == pool["neurons"] == 0 and pool["memory_bits"]["total"] == 0
    assert dense["params"] == 640 + 30 and dense["neurons"] == 10
    assert s["total"]["params"] == 48 + 670 and s["total"]["neurons"] == 266
    t = digits_models()["tsc"].summary()
    # tsc: the state holds C beside V; a pool stores a value and countdown in [-1, Q] (4 bits for Q = 4)
    assert t["layers"][1]["memory_bits"]["state"] == 64 * 4
    stcb = digits_models()["stcb"].summary()
    assert stcb["layers"][0]["params"] == 36 + 12 + 2 and stcb["layers"][0]["memory_bits"]["weights"] == 38 * 8
