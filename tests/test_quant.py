"""Tests for quant/: exact export to golden, CLI errors, reproducibility, resume, metrics.

Kept fast (tiny networks, --limit subsets, 1-2 epochs). Exactness is asserted with array equality,
never with tolerances.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import golden
from golden.cli import UsageError
from quant import layers as ql
from quant.exactness import check_model, check_net, compare
from quant.export import to_golden, torch_run
from quant.net import SpikingMLP, SpikingNet, exact_dtype
from quant import train as qtrain

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
# --native-cpu: an in-process run cannot pin the CPU-independent kernels once this test process has run
# torch (quant.numerics), so the CLI and in-process runs compared here both use the native ones
TINY = ["--hidden", "12", "--T", "4", "--epochs", "2", "--limit", "120", "--batch-size", "32", "--quiet",
        "--native-cpu"]


def assert_same(model, out, x):
    """Field-by-field equality of the torch forward with golden.run(record=True)."""
    res = golden.run(model, x, record=True)
    for i, (e, g) in enumerate(zip(res.spikes, out["spikes"])):
        assert e.dtype == g.dtype == np.uint8
        assert np.array_equal(e, g), f"layer {i} spikes"
    for e, g in zip(res.v_final, out["v_final"]):
        assert np.array_equal(e, g)
    assert np.array_equal(res.counts, out["counts"])
    assert np.array_equal(res.membranes, out["membranes"])
    assert np.array_equal(res.predictions, out["predictions"])
    if model.encoding == "rate":
        assert np.array_equal(res.input_spikes, out["input_spikes"])
    a = compare(out, res)
    assert a.exact and a.agreeing == len(x) and a.fraction == 1.0 and a.mismatch is None


# ------------------------------------------------------------------------------------------------
# building blocks
# ------------------------------------------------------------------------------------------------

def test_pow2_scale_exact_values():
    assert ql.pow2_scale(127.0, 8) == 1.0
    assert ql.pow2_scale(127.5, 8) == 2.0
    assert ql.pow2_scale(1.0, 8) == 2.0 ** -6
    assert ql.pow2_scale(0.75, 2) == 1.0
    assert ql.pow2_scale(1.0, 2) == 1.0
    assert ql.pow2_scale(1.0001, 2) == 2.0
    assert ql.pow2_scale(0.0, 8) == 1.0
    assert ql.pow2_scale(32767.0, 16) == 1.0
    with pytest.raises(ValueError):
        ql.pow2_scale(1.0, 17)


def test_quantize_layer_integers_and_ste():
    torch.manual_seed(0)
    w = torch.randn(5, 7, requires_grad=True)
    b = torch.randn(5, requires_grad=True)
    th = torch.full((5,), 1e-6, requires_grad=True)
    v0 = torch.randn(5, requires_grad=True)
    for bits in (2, 3, 8, 16):
        W, B, TH, V0, s = ql.quantize_layer(w, b, th, v0, bits)
        qmax = (1 << (bits - 1)) - 1
        assert math.log2(s) == int(math.log2(s))
        for t in (W, B, TH, V0):
            assert torch.equal(t, torch.round(t))
        assert int(W.abs().max()) <= qmax
        assert torch.equal(TH, torch.ones(5))  # tiny thresholds clamp to 1
    (W.sum() + B.sum() + V0.sum()).backward()
    assert torch.equal(w.grad, torch.full_like(w, 1.0 / s))  # straight-through
    assert torch.equal(b.grad, torch.full_like(b, 1.0 / s))


@pytest.mark.parametrize("name", ["arctan", "triangle"])
def test_surrogate_gradient_values(name):
    u = torch.tensor([0.0, -4.0, 4.0, 8.0], requires_grad=True)
    norm = torch.tensor(4.0)
    s = ql.spike(u, norm, name)
    assert s.tolist() == [1.0, 0.0, 1.0, 1.0]
    s.sum().backward()
    g = u.grad.tolist()
    assert g[0] == 0.25  # peak 1 / norm for both
    if name == "triangle":
        assert g[1:] == [0.0, 0.0, 0.0]
    else:
        assert g[1] == g[2] == pytest.approx(0.25 / (1 + math.pi ** 2))  # smooth shape, not an exactness claim
    with pytest.raises(ValueError):
        ql.spike(u, norm, "nope")


# ------------------------------------------------------------------------------------------------
# exactness: torch forward == golden
# ------------------------------------------------------------------------------------------------

def random_model(rng, *, encoding, readout, bits, T, input_max, sizes):
    qm = (1 << (bits - 1)) - 1
    layers = [golden.Dense(rng.integers(-qm - 1, qm + 1, (o, i)), rng.integers(-3 * qm, 3 * qm + 1, o),
                           rng.integers(1, 4 * qm + 2, o), rng.integers(-2 * qm, 2 * qm + 1, o))
              for i, o in zip(sizes[:-1], sizes[1:])]
    return golden.Model(layers, T=T, encoding=encoding, input_max=input_max, readout=readout, weight_bits=bits)


@pytest.mark.parametrize("encoding", ["rate", "direct"])
@pytest.mark.parametrize("readout", ["count", "membrane"])
@pytest.mark.parametrize("bits", [2, 5, 8, 16])
def test_random_golden_models_exact(encoding, readout, bits):
    rng = np.random.default_rng(bits * 7 + len(encoding) + len(readout))
    for trial in range(6):
        T = int(rng.integers(1, 9))
        input_max = int(rng.choice([1, 16, 255]))
        sizes = [int(rng.integers(1, 20)) for _ in range(int(rng.integers(2, 5)))]
        model = random_model(rng, encoding=encoding, readout=readout, bits=bits, T=T, input_max=input_max,
                             sizes=sizes)
        x = rng.integers(0, input_max + 1, (40, sizes[0]))
        x[0] = input_max  # extremes
        x[1] = 0
        assert_same(model, torch_run(model, x), x)


def test_wide_model_uses_float64_and_stays_exact():
    rng = np.random.default_rng(1)
    model = random_model(rng, encoding="direct", readout="count", bits=16, T=8, input_max=255, sizes=[40, 30, 10])
    assert model.v_bits > 24
    assert exact_dtype(model) == torch.float64
    x = rng.integers(0, 256, (50, 40))
    assert_same(model, torch_run(model, x), x)
    small = random_model(rng, encoding="rate", readout="count", bits=8, T=8, input_max=16, sizes=[64, 128, 10])
    assert small.v_bits <= 24 and exact_dtype(small) == torch.float32


@pytest.mark.parametrize("encoding,readout,bits,T", [
    ("rate", "count", 8, 6), ("direct", "count", 8, 1), ("direct", "membrane", 2, 3),
    ("rate", "membrane", 16, 4), ("rate", "count", 4, 8), ("direct", "count", 16, 5)])
def test_random_nets_export_exactly(encoding, readout, bits, T):
    torch.manual_seed(bits + T)
    net = SpikingMLP([64, 24, 16, 10], T=T, encoding=encoding, input_max=16, readout=readout, weight_bits=bits)
    with torch.no_grad():  # negative and non-zero v_init / bias, varied thresholds
        for i in range(3):
            net.v_init[i].uniform_(-1.0, 1.0)
            net.bias[i].uniform_(-0.3, 0.3)
            net.threshold[i].uniform_(0.3, 2.0)
    rng = np.random.default_rng(T)
    x = rng.integers(0, 17, (80, 64))
    model, a = check_net(net, x)
    assert a.exact and a.fraction == 1.0 and a.mismatch is None
    ints = net.integer_layers()
    qmax = (1 << (bits - 1)) - 1
    for layer, q in zip(model.layers, ints):
        assert np.array_equal(layer.weight, q["weight"]) and np.array_equal(layer.v_init, q["v_init"])
        assert int(np.abs(layer.weight).max()) <= qmax and int(layer.threshold.min()) >= 1
        assert math.log2(q["scale"]) == int(math.log2(q["scale"]))
    assert any((l.weight < 0).any() for l in model.layers)
    assert any((l.v_init != 0).any() for l in model.layers)
    assert_same(model, net.quantized_eval(x, dtype=exact_dtype(model)), x)
    # the training forward (with gradients) computes the very same integers
    from quant.net import encode_inputs
    f = net(encode_inputs(torch.as_tensor(x, dtype=torch.float32), encoding, 16, T))
    assert np.array_equal(f.predictions.numpy(), golden.run(model, x).predictions)


def test_mismatch_is_located():
    rng = np.random.default_rng(3)
    model = random_model(rng, encoding="rate", readout="count", bits=8, T=5, input_max=16, sizes=[10, 8, 4])
    x = rng.integers(0, 17, (20, 10))
    out = torch_run(model, x)
    res = golden.run(model, x, record=True)
    out["spikes"][1][7, 3, 2] ^= 1
    a = compare(out, res)
    assert not a.exact
    assert a.mismatch.startswith("sample 7, field spikes, layer 1, time step 3, neuron 2:")


# ------------------------------------------------------------------------------------------------
# CLI: bad input
# ------------------------------------------------------------------------------------------------

BAD = {
    "unknown dataset": ["--dataset", "nope"],
    "missing data dir": ["--dataset", "mnist"],
    "T zero": ["--T", "0"],
    "T negative": ["--T", "-3"],
    "bits low": ["--weight-bits", "1"],
    "bits high": ["--weight-bits", "17"],
    "hidden zero": ["--hidden", "0"],
    "hidden negative": ["--hidden", "64,-2"],
    "hidden malformed": ["--hidden", "64,,32"],
    "hidden text": ["--hidden", "abc"],
    "coding burst": ["--coding", "burst"],
    "coding unknown": ["--coding", "morse"],
    "epochs zero": ["--epochs", "0"],
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_exit_2(case, tmp_path):
    out = tmp_path / "m.npz"
    p = subprocess.run([PY, "-m", "quant.train", *BAD[case], "--out", str(out)], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2
    assert len(p.stderr.splitlines()) == 1 and "Traceback" not in p.stderr
    assert p.stderr.startswith("quant.train: error: ")   # one style for every CLI: <module>: error:
    assert list(tmp_path.iterdir()) == []
    if case == "coding burst":
        assert "unknown coding 'burst'" in p.stderr


@pytest.mark.parametrize("kind", ["parent is a file", "not npz", "out is a dir"])
def test_unwritable_out_exit_2(kind, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    out = {"parent is a file": blocker / "sub" / "m.npz", "not npz": tmp_path / "m.json",
           "out is a dir": tmp_path}[kind]
    p = subprocess.run([PY, "-m", "quant.train", "--out", str(out)], cwd=ROOT, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 2
    assert len(p.stderr.splitlines()) == 1 and "Traceback" not in p.stderr
    assert sorted(x.name for x in tmp_path.iterdir()) == ["file"]


# ------------------------------------------------------------------------------------------------
# training: metrics, exactness, reproducibility, resume
# ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny training in a subprocess (the real CLI) and the same in-process."""
    d = tmp_path_factory.mktemp("train")
    a = d / "a.npz"
    p = subprocess.run([PY, "-m", "quant.train", *TINY, "--seed", "3", "--out", str(a)], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    b = d / "b.npz"
    assert qtrain.main([*TINY, "--seed", "3", "--out", str(b)]) == 0
    return d, a, b


def test_metrics_and_float_reference(trained):
    d, a, _ = trained
    m = json.loads(a.with_suffix(".json").read_text())
    for k in ("float_accuracy", "quant_accuracy", "golden_accuracy", "golden_agreement", "epochs", "seed",
              "train_seconds", "history", "dataset", "coding", "encoding", "T", "hidden", "readout",
              "weight_bits", "surrogate"):
        assert k in m, k
    assert isinstance(m["float_accuracy"], float) and 0.0 <= m["float_accuracy"] <= 1.0
    assert len(m["float_history"]) == 2
    assert m["golden_agreement"] == 1.0 and m["exact"] is True and m["first_mismatch"] is None
    assert m["golden_accuracy"] == m["quant_accuracy"]
    assert (m["epochs"], m["seed"], m["T"], m["hidden"], m["coding"]) == (2, 3, 4, [12], "rate")
    assert [h["epoch"] for h in m["history"]] == [1, 2]
    assert set(m["history"][0]) == {"epoch", "loss", "train_acc", "test_acc", "seconds"}
    assert m["history"][-1]["test_acc"] == m["quant_accuracy"]
    # the saved model is the checked model: golden on it reproduces the recorded accuracy
    model = golden.load_model(a)
    x, y = golden.datasets.load("digits", "test")
    x, y = x[:120], y[:120]
    assert float((golden.run(model, x).predictions == y).mean()) == m["golden_accuracy"]
    assert model.sizes == [64, 12, 10] and model.T == 4 and model.weight_bits == 8


def test_same_seed_gives_identical_bytes(trained):
    _, a, b = trained
    assert a.read_bytes() == b.read_bytes()
    ha = json.loads(a.with_suffix(".json").read_text())["history"]
    hb = json.loads(b.with_suffix(".json").read_text())["history"]
    assert [{k: v for k, v in h.items() if k != "seconds"} for h in ha] == \
           [{k: v for k, v in h.items() if k != "seconds"} for h in hb]


def test_resume_gives_identical_model(trained, capsys):
    d, a, _ = trained
    c = d / "c.npz"
    assert qtrain.main([*TINY, "--seed", "3", "--out", str(c), "--stop-after", "1"]) == 0
    assert not c.exists() and (d / "c.ckpt.pt").exists()
    assert qtrain.main([*TINY, "--seed", "3", "--out", str(c), "--resume", "--stop-after", "3"]) == 0
    assert not c.exists()  # stopped inside the float phase
    assert qtrain.main([*TINY, "--seed", "3", "--out", str(c), "--resume"]) == 0
    assert c.read_bytes() == a.read_bytes()
    mc = json.loads(c.with_suffix(".json").read_text())
    ma = json.loads(a.with_suffix(".json").read_text())
    for k in ("float_accuracy", "quant_accuracy", "golden_accuracy", "golden_agreement"):
        assert mc[k] == ma[k]
    # a checkpoint from other settings is refused
    with pytest.raises(UsageError, match="seed"):
        qtrain.main([*TINY, "--seed", "4", "--out", str(c), "--resume"])


def test_direct_membrane_training_is_exact(tmp_path):
    out = tmp_path / "dm.npz"
    argv = ["--hidden", "10,8", "--T", "1", "--epochs", "1", "--limit", "100", "--encoding", "direct",
            "--readout", "membrane", "--weight-bits", "3", "--surrogate", "triangle", "--no-float-ref",
            "--quiet", "--out", str(out)]
    assert qtrain.main(argv) == 0
    m = json.loads(out.with_suffix(".json").read_text())
    assert m["golden_agreement"] == 1.0 and m["exact"] is True and m["float_accuracy"] is None
    model = golden.load_model(out)
    assert (model.encoding, model.readout, model.weight_bits, model.sizes) == ("direct", "membrane", 3,
                                                                              [64, 10, 8, 10])


def test_mismatch_exits_1(tmp_path, monkeypatch, capsys):
    orig = SpikingNet.quantized_eval

    def broken(self, x, **kw):
        out = orig(self, x, **kw)
        out["spikes"][0][5, 2, 1] ^= 1
        return out

    monkeypatch.setattr(SpikingNet, "quantized_eval", broken)  # the trainer builds SpikingNet
    out = tmp_path / "bad.npz"
    rc = qtrain.main(["--hidden", "8", "--T", "3", "--epochs", "1", "--limit", "60", "--no-float-ref",
                      "--quiet", "--out", str(out)])
    assert rc == 1
    err = capsys.readouterr().err
    assert "sample 5, field spikes, layer 0, time step 2, neuron 1" in err
