"""python -m golden.run: the happy path and every bad input (exit 2, one line, nothing written)."""

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


def cli(*args, cwd=None):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "golden.run", *map(str, args)], capture_output=True,
                          text=True, env=env, cwd=cwd or ROOT, timeout=120)


def digits_model(**kw):
    rng = np.random.default_rng(1)
    args = dict(T=4, input_max=16)
    args.update(kw)
    return Model([Dense(rng.integers(-20, 20, (12, 64)), 0, 40, 0), Dense(rng.integers(-20, 20, (10, 12)), 0, 30, 0)],
                 **args)


def rewrite(src: Path, dst: Path, meta_update=None, arrays_update=None, drop=()):
    with np.load(src) as z:
        files = {k: z[k] for k in z.files}
    meta = json.loads(str(files["meta"]))
    meta.update(meta_update or {})
    files["meta"] = np.array(json.dumps(meta))
    files.update(arrays_update or {})
    for k in drop:
        files.pop(k)
    np.savez(dst, **files)
    return dst


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    p = tmp_path_factory.mktemp("models") / "good.npz"
    golden.save_model(digits_model(), p)
    return p


def test_happy_path_prints_accuracy_and_writes_json(good, tmp_path):
    out = tmp_path / "s.json"
    r = cli("--model", good, "--limit", 20, "--lanes", 4, "--json", out)
    assert r.returncode == 0, r.stderr
    assert "accuracy" in r.stdout and "weight_reads" in r.stdout
    s = json.loads(out.read_text())
    assert s["samples"] == 20 and s["lanes"] == 4
    x, y = golden.datasets.load("digits", "test")
    res = golden.run(golden.load_model(good), x[:20], lanes=4)
    assert s["accuracy"] == float((res.predictions == y[:20]).mean())
    assert s["mean_counters"]["cycles"] == float(res.counters["cycles"].mean())


def _bad_cases(good: Path, d: Path):
    trunc = d / "trunc.npz"
    trunc.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    (d / "text.npz").write_text("not a zip at all\n")
    np.save(d / "plain.npy", np.zeros(3))
    w = np.load(good)["layer0.weight"]
    return {
        "missing file": (d / "nope.npz", "model file not found"),
        "truncated": (trunc, "not a readable .npz"),
        "not npz": (d / "text.npz", "not a readable .npz"),
        "npy not npz": (d / "plain.npy", "not a readable .npz"),
        "schema": (rewrite(good, d / "schema.npz", {"schema": 99}), "unsupported schema version 99"),
        "foreign npz": (rewrite(good, d / "foreign.npz", {"format": "other"}), "format is 'other'"),
        "float weights": (rewrite(good, d / "dtype.npz", arrays_update={"layer0.weight": w.astype(np.float32)}),
                          "layer 0: weight must be an integer array"),
        "shape": (rewrite(good, d / "shape.npz", arrays_update={"layer1.bias": np.zeros(3, np.int64)}),
                  r"layer 1: bias must have shape (10,)"),
        "weights outside bits": (rewrite(good, d / "wbits.npz", {"weight_bits": 4}), "outside weight_bits=4"),
        "threshold <= 0": (rewrite(good, d / "thr.npz", arrays_update={"layer1.threshold": np.zeros(10, np.int64)}),
                           "layer 1: threshold must be > 0"),
        "coding": (rewrite(good, d / "coding.npz", {"coding": "burst"}), "coding must be one of"),
        "encoding": (rewrite(good, d / "enc.npz", {"encoding": "poisson"}), "encoding must be one of"),
        "readout": (rewrite(good, d / "ro.npz", {"readout": "vote"}), "readout must be one of"),
        "v_bits small": (rewrite(good, d / "vb.npz", {"v_bits": 4}), "v_bits=4 is too small: layer"),
        "missing array": (rewrite(good, d / "miss.npz", drop=["layer1.v_init"]), "layer 1: missing array 'v_init'"),
    }


def test_bad_model_files(good, tmp_path):
    for name, (path, msg) in _bad_cases(good, tmp_path).items():
        out = tmp_path / f"{name}.json"
        r = cli("--model", path, "--limit", 5, "--json", out)
        assert r.returncode == 2, (name, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1, (name, r.stderr)
        assert msg in lines[0], (name, lines[0])
        assert "Traceback" not in r.stderr and not out.exists()


def test_bad_options_and_datasets(good, tmp_path):
    small = tmp_path / "small.npz"
    golden.save_model(digits_model(input_max=8), small)
    cases = [
        (["--model", small], "is outside [0, 8]"),                     # digits go up to 16
        (["--model", good, "--dataset", "imagenet"], "unknown dataset"),
        (["--model", good, "--dataset", "mnist"], "--data-dir is required"),
        (["--model", good, "--dataset", "mnist", "--data-dir", tmp_path / "none"], "not found"),
        (["--model", good, "--lanes", 3], "--lanes: expected a power of two"),
        (["--model", good, "--limit", 0], "--limit: expected a positive integer"),
        (["--model", good, "--split", "val"], "--split: invalid choice"),
        (["--limit", 3], "--model: required option missing"),
    ]
    for args, msg in cases:
        out = tmp_path / "o.json"
        r = cli(*args, "--json", out)
        assert r.returncode == 2, (args, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and msg in lines[0], (args, r.stderr)
        assert not out.exists()


def test_corrupt_dataset_file(good, tmp_path):
    for n in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
              "t10k-labels-idx1-ubyte"):
        (tmp_path / n).write_bytes(b"\x00\x00\x08\x03garbage")
    r = cli("--model", good, "--dataset", "mnist", "--data-dir", tmp_path)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "Traceback" not in r.stderr
