"""Tests for TSC (temporal switch coding) in quant/: the exact floor, exact export to golden TSC
models, CLI checks, a brief training run and reproducibility.

Fast (tiny networks, --limit subsets, 1-2 epochs). Exactness is asserted with array equality.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import golden
from quant import train as qtrain
from quant.exactness import check_net, compare
from quant.export import torch_run
from quant.net import exact_dtype
from quant.tsc import TSCMLP, TSCNet, floor_div, floor_div_ste, tsc_encode

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
TINY = ["--coding", "tsc", "--hidden", "32", "--T", "5", "--epochs", "3", "--limit", "300", "--batch-size", "16",
        "--quiet", "--native-cpu"]  # in-process and CLI runs compared like for like (see test_quant.TINY)


def assert_same(model, out, x):
    """Field-by-field equality of the torch forward with golden.run(record=True)."""
    res = golden.run(model, x, record=True)
    assert res.coding == "tsc"
    q = golden.engine.tsc_quantize(np.asarray(x, dtype=np.int64), model.input_max, model.Q)
    assert np.array_equal(out["inputs"], q)
    assert np.array_equal(golden.engine.tsc_events(out["inputs"], model.T), res.input_events)
    assert len(out["activations"]) == len(res.activations) == len(model.layers) - 1
    for li, (e, g) in enumerate(zip(res.activations, out["activations"])):
        assert np.array_equal(e, g), f"layer {li} activations"
        assert g.min() >= 0 and g.max() <= model.Q
        assert np.array_equal(golden.engine.tsc_events(g, model.T), res.events[li])
    for e, g in zip(res.v_final, out["v_final"]):
        assert np.array_equal(e, g)
    assert np.array_equal(res.membranes, out["membranes"])
    assert np.array_equal(res.predictions, out["predictions"])
    assert not out["counts"].any()
    a = compare(out, res)
    assert a.exact and a.agreeing == len(x) and a.fraction == 1.0 and a.mismatch is None


def random_tsc_model(rng, *, bits, T, input_max, sizes):
    qm = (1 << (bits - 1)) - 1
    layers = [golden.Dense(rng.integers(-qm - 1, qm + 1, (o, i)), rng.integers(-3 * qm, 3 * qm + 1, o),
                           rng.integers(1, 4 * qm + 2, o), 0)
              for i, o in zip(sizes[:-1], sizes[1:])]
    return golden.Model(layers, coding="tsc", T=T, encoding="tsc", input_max=input_max, readout="membrane",
                        weight_bits=bits)


# ------------------------------------------------------------------------------------------------
# building blocks
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_floor_div_is_exact_floor_division(dtype):
    rng = np.random.default_rng(0)
    lim = (1 << 23) if dtype == torch.float32 else (1 << 50)
    z = np.concatenate([rng.integers(-lim, lim, 20000), np.arange(-50, 51)])
    th = np.concatenate([rng.integers(1, 1 << 12, 20000), np.full(101, 7)])
    th[:100] = 1
    th[100:200] = rng.integers(1 << 20, 1 << 22, 100)
    got = floor_div(torch.as_tensor(z, dtype=dtype), torch.as_tensor(th, dtype=dtype))
    assert np.array_equal(got.numpy().astype(np.int64), np.floor_divide(z, th))


def test_floor_div_ste_gradient():
    z = torch.tensor([[-7.0, 7.0, 9.0], [3.0, -1.0, 0.0]], requires_grad=True)
    th = torch.tensor([2.0, 4.0, 3.0], requires_grad=True)
    u = floor_div_ste(z, th)
    assert u.tolist() == [[-4.0, 1.0, 3.0], [1.0, -1.0, 0.0]]
    u.sum().backward()
    assert torch.equal(z.grad, (1.0 / th).expand(2, 3))
    assert torch.allclose(th.grad, -(z.detach() / th.detach() ** 2).sum(dim=0))


def test_tsc_encode_matches_golden():
    x = np.arange(0, 256)[None, :]
    for im, Q in ((16, 16), (16, 8), (16, 4), (16, 1), (255, 254), (255, 9), (1, 1)):
        xs = x[:, :im + 1]
        q = tsc_encode(torch.as_tensor(xs, dtype=torch.float32), im, Q, quantized=True)
        assert np.array_equal(q.numpy().astype(np.int64), golden.engine.tsc_quantize(xs, im, Q))
        f = tsc_encode(torch.as_tensor(xs, dtype=torch.float32), im, Q, quantized=False)
        assert torch.allclose(f, torch.as_tensor(xs * Q / im, dtype=torch.float32))


# ------------------------------------------------------------------------------------------------
# exactness: torch forward == golden
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bits", [2, 5, 8, 16])
def test_random_golden_tsc_models_exact(bits):
    rng = np.random.default_rng(100 + bits)
    for trial in range(8):
        input_max = int(rng.choice([1, 3, 16, 255]))
        T = int(rng.integers(2, min(input_max, 40) + 2))
        sizes = [int(rng.integers(1, 20)) for _ in range(int(rng.integers(2, 5)))]
        model = random_tsc_model(rng, bits=bits, T=T, input_max=input_max, sizes=sizes)
        x = rng.integers(0, input_max + 1, (40, sizes[0]))
        x[0] = input_max  # extremes
        x[1] = 0
        assert_same(model, torch_run(model, x), x)


def test_wide_tsc_model_uses_float64_and_stays_exact():
    rng = np.random.default_rng(1)
    model = random_tsc_model(rng, bits=16, T=200, input_max=255, sizes=[60, 30, 10])
    assert exact_dtype(model) == torch.float64
    x = rng.integers(0, 256, (50, 60))
    assert_same(model, torch_run(model, x), x)
    small = random_tsc_model(rng, bits=8, T=17, input_max=16, sizes=[64, 128, 10])
    assert exact_dtype(small) == torch.float32


@pytest.mark.parametrize("T,bits", [(17, 8), (9, 4), (5, 8), (2, 3), (3, 16)])
def test_random_tsc_nets_export_exactly(T, bits):
    torch.manual_seed(T * 10 + bits)
    net = TSCMLP([64, 24, 16, 10], T=T, input_max=16, weight_bits=bits)
    with torch.no_grad():  # negative and positive biases, varied thresholds
        for i in range(3):
            net.bias[i].uniform_(-2.0, 2.0)
            net.threshold[i].uniform_(0.2, 2.0)
    rng = np.random.default_rng(T)
    x = rng.integers(0, 17, (120, 64))
    x[0], x[1] = 16, 0
    model, a = check_net(net, x)
    assert a.exact and a.fraction == 1.0 and a.mismatch is None
    assert (model.coding, model.encoding, model.readout, model.T, model.Q) == ("tsc", "tsc", "membrane", T, T - 1)
    assert all(not l.v_init.any() for l in model.layers)
    assert np.array_equal(model.layers[-1].threshold, np.ones(10, dtype=np.int64))
    ints = net.integer_layers()
    qmax = (1 << (bits - 1)) - 1
    for layer, q in zip(model.layers, ints):
        assert np.array_equal(layer.weight, q["weight"]) and np.array_equal(layer.bias, q["bias"])
        assert int(np.abs(layer.weight).max()) <= qmax and int(layer.threshold.min()) >= 1
        assert math.log2(q["scale"]) == int(math.log2(q["scale"]))
    out = net.quantized_eval(x, dtype=exact_dtype(model))
    assert_same(model, out, x)
    # activations are not degenerate: some clipped at Q, some zero, some in between
    acts = np.concatenate([a.ravel() for a in out["activations"]])
    assert (acts == 0).any() and (acts == T - 1).any()
    assert T == 2 or ((acts > 0) & (acts < T - 1)).any()
    # the training forward (float32, with gradients) computes the very same integers
    f = net(torch.as_tensor(x, dtype=torch.float32))
    res = golden.run(model, x, record=True)
    assert np.array_equal(f.predictions.numpy(), res.predictions)
    for e, g in zip(res.activations, f.activations):
        assert np.array_equal(e, g.detach().numpy().astype(np.int64))
    f.logits.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.threshold[:-1])


def test_tsc_mismatch_is_located():
    rng = np.random.default_rng(3)
    model = random_tsc_model(rng, bits=8, T=9, input_max=16, sizes=[10, 8, 6, 4])
    x = rng.integers(0, 17, (20, 10))
    res = golden.run(model, x, record=True)
    out = torch_run(model, x)
    out["activations"][1][7, 2] += 1
    a = compare(out, res)
    assert not a.exact and a.agreeing == 20  # outputs still agree, the hidden layer does not
    assert a.mismatch.startswith("sample 7, field activations, layer 1, neuron 2: expected ")
    out = torch_run(model, x)
    out["membranes"][4, 3] += 1
    out["v_final"][-1] = out["membranes"]
    a = compare(out, res)
    assert not a.exact and a.agreeing == 19
    assert a.mismatch.startswith("sample 4, field v_final, layer 2, neuron 3")
    out = torch_run(model, x)
    out["inputs"][2, 5] += 1
    assert compare(out, res).mismatch.startswith("sample 2, field inputs, neuron 5")


# ------------------------------------------------------------------------------------------------
# CLI: bad input
# ------------------------------------------------------------------------------------------------

BAD = {
    "T one": (["--coding", "tsc", "--T", "1"], "--T >= 2"),
    "T too large": (["--coding", "tsc", "--T", "18"], "use --T <= 17"),
    "readout count": (["--coding", "tsc", "--readout", "count"], "needs --readout membrane"),
    "encoding direct": (["--coding", "tsc", "--encoding", "direct"], "needs --encoding tsc"),
    "encoding rate": (["--coding", "tsc", "--encoding", "rate"], "needs --encoding tsc"),
    "tsc encoding with rate": (["--encoding", "tsc"], "needs --coding tsc"),
    "coding burst": (["--coding", "burst"], "unknown coding 'burst'"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_tsc_input_exit_2(case, tmp_path):
    args, msg = BAD[case]
    out = tmp_path / "m.npz"
    p = subprocess.run([PY, "-m", "quant.train", *args, "--out", str(out)], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2, p.stderr
    assert len(p.stderr.splitlines()) == 1 and "Traceback" not in p.stderr
    assert p.stderr.startswith("quant.train: error: ")   # one style for every CLI: <module>: error:
    assert msg in p.stderr
    assert p.stdout == ""
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------------
# training: metrics, exactness, reproducibility
# ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny TSC training in a subprocess (the real CLI) and the same in-process."""
    d = tmp_path_factory.mktemp("tsc")
    a = d / "a.npz"
    p = subprocess.run([PY, "-m", "quant.train", *TINY, "--seed", "3", "--out", str(a)], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    b = d / "b.npz"
    assert qtrain.main([*TINY, "--seed", "3", "--out", str(b)]) == 0
    return d, a, b


def test_tsc_training_is_exact(trained):
    d, a, _ = trained
    m = json.loads(a.with_suffix(".json").read_text())
    assert m["golden_agreement"] == 1.0 and m["exact"] is True and m["first_mismatch"] is None
    assert m["golden_accuracy"] == m["quant_accuracy"]
    assert isinstance(m["float_accuracy"], float) and 0.0 <= m["float_accuracy"] <= 1.0
    assert (m["coding"], m["encoding"], m["readout"], m["T"], m["hidden"], m["epochs"]) == \
           ("tsc", "tsc", "membrane", 5, [32], 3)
    assert m["history"][-1]["test_acc"] == m["quant_accuracy"]
    assert m["golden_accuracy"] > 0.5  # it learned something in 3 short epochs (chance is 0.1)
    model = golden.load_model(a)
    assert (model.coding, model.encoding, model.readout, model.sizes, model.T) == \
           ("tsc", "tsc", "membrane", [64, 32, 10], 5)
    assert all(not l.v_init.any() for l in model.layers)
    x, y = golden.datasets.load("digits", "test")
    x, y = x[:300], y[:300]
    assert float((golden.run(model, x).predictions == y).mean()) == m["golden_accuracy"]
    assert_same(model, torch_run(model, x), x)


def test_tsc_metrics_keys_match_rate(trained, tmp_path):
    d, a, _ = trained
    r = tmp_path / "r.npz"
    assert qtrain.main(["--hidden", "6", "--T", "2", "--epochs", "1", "--limit", "40", "--quiet",
                        "--out", str(r)]) == 0
    mr = json.loads(r.with_suffix(".json").read_text())
    mt = json.loads(a.with_suffix(".json").read_text())
    assert set(mt) == set(mr)
    assert set(mt["history"][0]) == set(mr["history"][0])


def test_tsc_same_seed_gives_identical_bytes(trained):
    _, a, b = trained
    assert a.read_bytes() == b.read_bytes()
    ha = json.loads(a.with_suffix(".json").read_text())["history"]
    hb = json.loads(b.with_suffix(".json").read_text())["history"]
    assert [{k: v for k, v in h.items() if k != "seconds"} for h in ha] == \
           [{k: v for k, v in h.items() if k != "seconds"} for h in hb]


def test_tsc_resume_gives_identical_model(trained):
    d, a, _ = trained
    c = d / "c.npz"
    assert qtrain.main([*TINY, "--seed", "3", "--out", str(c), "--stop-after", "1"]) == 0
    assert not c.exists()
    assert qtrain.main([*TINY, "--seed", "3", "--out", str(c), "--resume"]) == 0
    assert c.read_bytes() == a.read_bytes()


def test_tsc_mismatch_exits_1(tmp_path, monkeypatch, capsys):
    orig = TSCNet.quantized_eval

    def broken(self, x, **kw):
        out = orig(self, x, **kw)
        out["activations"][0][5, 1] = (out["activations"][0][5, 1] + 1) % self.T
        return out

    monkeypatch.setattr(TSCNet, "quantized_eval", broken)  # the trainer builds TSCNet
    out = tmp_path / "bad.npz"
    rc = qtrain.main(["--coding", "tsc", "--hidden", "8", "--T", "4", "--epochs", "1", "--limit", "60",
                      "--no-float-ref", "--quiet", "--out", str(out)])
    assert rc == 1
    err = capsys.readouterr().err
    assert "sample 5, field activations, layer 0, neuron 1" in err
