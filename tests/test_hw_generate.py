"""python -m hw.generate: Verilog + manifest, and bad input."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

import golden
from golden import Dense, Model

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "hw.generate", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=300)


def _model(tmp_path):
    m = Model([Dense(np.arange(12).reshape(3, 4) - 6, [1, 0, -1], 5, 0), Dense(np.ones((2, 3), int), 0, 2, 0)],
              T=3, input_max=9, weight_bits=5)
    p = tmp_path / "m.npz"
    golden.save_model(m, p)
    return m, p


def test_generate_writes_verilog_and_manifest(tmp_path):
    m, p = _model(tmp_path)
    out = tmp_path / "v" / "mycore.v"
    r = _cli("--model", p, "--lanes", 2, "--out", out)
    assert r.returncode == 0, r.stderr
    v, j = out, tmp_path / "v" / "mycore.json"
    assert sorted(f.name for f in (tmp_path / "v").iterdir()) == ["mycore.json", "mycore.v"]
    text = v.read_text()
    assert "module mycore(" in text
    man = json.loads(j.read_text())
    assert man["top"] == "mycore" and man["parameters"]["lanes"] == 2
    assert man["parameters"]["sizes"] == [4, 3, 2] and man["parameters"]["groups"] == [2, 1]
    assert man["verilog_sha256"] == hashlib.sha256(text.encode()).hexdigest()
    # ports are named after the stream members
    for port in ("x__valid", "x__ready", "x__payload", "result__valid", "result__ready", "result__payload",
                 "err_range", "cnt__cycles", "cnt__spikes_l1", "spk__mask", "st__waddr", "op__last"):
        assert port in man["ports"] and port in text
    # value: 4 bits for 9 plus one to flag overflow, then `last`
    assert man["payloads"]["x"]["value"] == {"offset": 0, "width": 5, "signed": False}
    assert man["payloads"]["x"]["last"]["offset"] == 5 and man["ports"]["x__payload"]["width"] == 6
    # weights: 3x4 -> 2 groups of 4 inputs at P=2, 5-bit lanes packed into 10-bit words, plus the zero
    # word that null ops read
    assert man["memories"]["weights"] == {"width": 10, "depth": 8 + 3 + 1, "banks": 1, "bits": 120}
    assert man["memory_bits_total"] == sum(v["bits"] for v in man["memories"].values())
    assert man["payloads"]["result"]["membrane"]["signed"] is True


def test_generate_bad_inputs(tmp_path):
    m, p = _model(tmp_path)
    notdir = tmp_path / "file"
    notdir.write_text("x")
    cases = [
        (["--model", tmp_path / "none.npz", "--out", tmp_path / "o" / "o.v"], "model file not found"),
        (["--model", p, "--lanes", 5, "--out", tmp_path / "o" / "o.v"], "--lanes: expected a power of two"),
        (["--model", p, "--lanes", 128, "--out", tmp_path / "o" / "o.v"], "--lanes: expected a power of two"),
        (["--model", p, "--out", tmp_path / "o" / "o.v", "--name", "9bad-name"], "--name: must be a Verilog identifier"),
        (["--model", p, "--out", notdir / "sub.v"], f"--out: cannot write {notdir}/sub.v: {notdir} is a regular file"),
        (["--model", p, "--out", tmp_path / "o"], "--out: expected a .v file name"),
        (["--model", p, "--out", str(tmp_path) + "/"], "--out: " + str(tmp_path) + "/ is a directory"),
        (["--model", p], "--out: required option missing"),
    ]
    for args, msg in cases:
        r = _cli(*args)
        assert r.returncode == 2, (args, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and msg in lines[0], (args, r.stderr)
        assert r.stderr.startswith("hw.generate: error: ") and "Traceback" not in r.stderr
    assert not (tmp_path / "o").exists() and sorted(f.name for f in tmp_path.iterdir()) == ["file", "m.npz"]


def test_generate_with_a_name_other_than_the_file(tmp_path):
    m, p = _model(tmp_path)
    r = _cli("--model", p, "--out", tmp_path / "x.v", "--name", "top_core")
    assert r.returncode == 0, r.stderr
    assert "module top_core(" in (tmp_path / "x.v").read_text()
    assert json.loads((tmp_path / "x.json").read_text())["top"] == "top_core"
