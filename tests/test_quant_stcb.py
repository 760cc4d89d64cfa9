"""Tests for STCB in quant/: the temporal kernel and its quantization, exact export to golden STCB
models, the spike-train-level (STL) gradient, CLI checks, a brief training run and reproducibility.

Fast (tiny networks, --limit subsets, 1-3 epochs). Exactness is asserted with array equality, and
the STL gradients with exact equality (all numbers involved are dyadic rationals).
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
from quant import layers as ql
from quant import train as qtrain
from quant.exactness import check_net, compare
from quant.export import to_golden, torch_run
from quant.net import SpikingMLP, exact_dtype, run_layers, stcb_exact_bits

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
TINY = ["--coding", "stcb", "--kernel", "3", "--hidden", "16", "--T", "4", "--epochs", "3", "--limit", "300",
        "--batch-size", "16", "--no-float-ref", "--quiet", "--native-cpu"]  # as test_quant.TINY: like for like


def assert_same(model, out, x):
    """Field-by-field equality of the torch forward with golden.run(record=True)."""
    res = golden.run(model, x, record=True)
    assert res.coding == "stcb"
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


def random_stcb_model(rng, *, bits, T, input_max, sizes, encoding, readout, K):
    qm = (1 << (bits - 1)) - 1
    layers = []
    for i, o in zip(sizes[:-1], sizes[1:]):
        h = rng.integers(-qm - 1, qm + 1, K) if K > 1 else [1]
        layers.append(golden.Dense(rng.integers(-qm - 1, qm + 1, (o, i)), rng.integers(-2 * qm, 2 * qm + 1, o),
                                   rng.integers(1, 6 * qm + 2, o), rng.integers(-qm, 3 * qm, o), h=h))
    return golden.Model(layers, coding="stcb", T=T, encoding=encoding, input_max=input_max, readout=readout,
                        weight_bits=bits)


# ------------------------------------------------------------------------------------------------
# kernel and quantization
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_apply_kernel_matches_golden(dtype):
    rng = np.random.default_rng(0)
    for K, T in ((1, 1), (1, 5), (2, 2), (3, 8), (5, 5), (16, 20)):
        cur = rng.integers(-1000, 1000, (3, T, 7))
        h = rng.integers(-127, 128, K)
        got = ql.apply_kernel(torch.as_tensor(cur, dtype=dtype), torch.as_tensor(h, dtype=dtype))
        assert np.array_equal(got.numpy().astype(np.int64), golden.engine.apply_kernel(cur, h))
    c = torch.ones(1, 3, 1)
    assert ql.apply_kernel(c, None) is c


def test_quantize_stcb_layer_scales():
    w = torch.tensor([[0.5, -0.25], [0.125, 0.0]])
    b = torch.tensor([0.3, -0.1])
    th = torch.tensor([1.0, 0.01])
    v0 = torch.tensor([0.5, -0.2])
    h = torch.tensor([1.0, -0.3, 0.05], requires_grad=True)
    W, B, TH, V0, H, s, sh = ql.quantize_stcb_layer(w, b, th, v0, h, 8)
    # max|W| = 0.5: 0.5 / 2**-7 = 64 <= 127 < 128 = 0.5 / 2**-8; max|h| = 1: 1 / 2**-6 = 64 <= 127 < 128
    assert (s, sh) == (2.0 ** -7, 2.0 ** -6)
    assert W.tolist() == [[64.0, -32.0], [16.0, 0.0]]
    assert H.tolist() == [64.0, -19.0, 3.0]
    assert B.tolist() == [38.0, -13.0]              # the bias is on the weight scale (before the kernel)
    assert TH.tolist() == [8192.0, 82.0]            # theta and v_init on scale * h_scale = 2**-13
    assert V0.tolist() == [4096.0, -1638.0]
    (H * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert h.grad.tolist() == [1.0 / sh, 2.0 / sh, 3.0 / sh]   # straight-through round
    assert ql.kernel_gain(None, 8) == 1.0
    assert ql.kernel_gain(torch.tensor([2.0, -1.0]), 4) == (2 * 4 - 3) / 4


# ------------------------------------------------------------------------------------------------
# exactness: torch forward == golden
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("encoding,readout,bits", [("rate", "count", 8), ("rate", "membrane", 4),
                                                   ("direct", "count", 5), ("direct", "membrane", 8),
                                                   ("rate", "count", 2)])
def test_random_golden_stcb_models_exact(encoding, readout, bits):
    rng = np.random.default_rng(7 + bits)
    for trial in range(6):
        input_max = int(rng.choice([1, 3, 16, 255]))
        T = int(rng.integers(1, 13))
        K = int(rng.integers(1, min(T, 16) + 1))
        sizes = [int(rng.integers(1, 20)) for _ in range(int(rng.integers(2, 5)))]
        model = random_stcb_model(rng, bits=bits, T=T, input_max=input_max, sizes=sizes, encoding=encoding,
                                  readout=readout, K=K)
        x = rng.integers(0, input_max + 1, (30, sizes[0]))
        x[0], x[1] = input_max, 0
        assert_same(model, torch_run(model, x), x)


def test_wide_kernel_model_uses_float64_and_stays_exact():
    rng = np.random.default_rng(2)
    model = random_stcb_model(rng, bits=12, T=10, input_max=255, sizes=[40, 20, 10], encoding="direct",
                              readout="count", K=6)
    assert stcb_exact_bits(model) > 24 and exact_dtype(model) == torch.float64
    x = rng.integers(0, 256, (30, 40))
    assert_same(model, torch_run(model, x), x)
    plain = random_stcb_model(rng, bits=8, T=8, input_max=16, sizes=[64, 32, 10], encoding="rate",
                              readout="count", K=1)
    assert stcb_exact_bits(plain) == 1


@pytest.mark.parametrize("encoding,readout,K,bits", [("rate", "count", 3, 8), ("rate", "membrane", 2, 4),
                                                     ("direct", "count", 4, 8), ("rate", "count", 1, 8)])
def test_random_kernel_nets_export_exactly(encoding, readout, K, bits):
    torch.manual_seed(K * 10 + bits)
    T = 6
    net = SpikingMLP([64, 24, 16, 10], T=T, encoding=encoding, input_max=16, readout=readout, weight_bits=bits,
                     coding="stcb", kernel=K)
    with torch.no_grad():  # non-trivial kernels, biases, thresholds and initial membranes
        for i in range(3):
            if K > 1:
                net.h[i].copy_(torch.linspace(1.0, -0.4, K) + 0.1 * torch.randn(K))
            net.bias[i].uniform_(-0.3, 0.3)
            net.threshold[i].uniform_(0.5, 2.0)
            net.v_init[i].uniform_(-0.5, 1.0)
    rng = np.random.default_rng(K)
    x = rng.integers(0, 17, (80, 64))
    x[0], x[1] = 16, 0
    model, a = check_net(net, x)
    assert a.exact and a.fraction == 1.0 and a.mismatch is None
    assert (model.coding, model.encoding, model.readout, model.T) == ("stcb", encoding, readout, T)
    ints = net.integer_layers()
    qmax = (1 << (bits - 1)) - 1
    for layer, q in zip(model.layers, ints):
        assert len(layer.h) == K and np.array_equal(layer.h, q["h"])
        assert int(np.abs(layer.h).max()) <= qmax and int(np.abs(layer.weight).max()) <= qmax
        assert math.log2(q["h_scale"]) == int(math.log2(q["h_scale"]))
        if K == 1:
            assert layer.h.tolist() == [1] and q["h_scale"] == 1.0
    out = net.quantized_eval(x, dtype=exact_dtype(model))
    assert_same(model, out, x)
    spikes = np.concatenate([s.ravel() for s in out["spikes"][:-1]])
    assert spikes.any() and not spikes.all()
    # the training forward (float32, with gradients) computes golden's integers, with either rule
    res = golden.run(model, x, record=True)
    xin = torch.as_tensor(x, dtype=torch.float32)
    if encoding == "rate":
        xin = ql.rate_encode(xin, 16, T)
    for grad in ("bptt", "stl"):
        net.grad = grad
        f = net(xin)
        assert np.array_equal(f.predictions.numpy(), res.predictions)
        for e, g in zip(res.spikes, f.spikes):
            assert np.array_equal(e, g.detach().numpy().astype(np.uint8))
        for e, g in zip(res.v_final, f.v_final):
            assert np.array_equal(e, g.detach().numpy().astype(np.int64))
        assert np.array_equal(res.counts, f.counts.detach().numpy().astype(np.int64))
        net.zero_grad()
        f.logits.sum().backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.weight)
        if K > 1:
            assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.h)


def test_kernel1_stcb_net_is_the_rate_net():
    torch.manual_seed(3)
    r = SpikingMLP([20, 8, 5], T=4, encoding="rate", input_max=16, readout="count", weight_bits=6)
    torch.manual_seed(3)
    s = SpikingMLP([20, 8, 5], T=4, encoding="rate", input_max=16, readout="count", weight_bits=6,
                   coding="stcb", kernel=1)
    mr, ms = to_golden(r), to_golden(s)
    assert (mr.coding, ms.coding) == ("rate", "stcb")
    assert mr.layers == ms.layers and all(l.h.tolist() == [1] for l in ms.layers)


# ------------------------------------------------------------------------------------------------
# the spike-train-level gradient
# ------------------------------------------------------------------------------------------------

def _stl_case(h):
    T = 4
    s_in = torch.tensor([[[1., 0, 1], [0, 1, 1], [1, 0, 0], [1, 1, 0]]], dtype=torch.float64)
    W = torch.tensor([[2., -1, 1], [1, 1, -3], [-2, -2, 1]], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([1., 0, -1], dtype=torch.float64, requires_grad=True)
    th = torch.tensor([4., 2, 2], dtype=torch.float64, requires_grad=True)
    v0 = torch.tensor([2., 3, 0], dtype=torch.float64, requires_grad=True)
    hk = None if h is None else torch.tensor(h, dtype=torch.float64, requires_grad=True)
    c_in = s_in.sum(dim=1).clone().requires_grad_(True)
    cur = ql.apply_kernel(s_in @ W.T + b, hk)
    s, counts, v = ql.stl_layer(cur, th, v0, fire=True, counts_in=c_in, weight=W, gain=ql.kernel_gain(hk, T))
    g = torch.tensor([[1., 2, 3]], dtype=torch.float64)
    (counts * g).sum().backward()
    return T, s_in, W, b, th, v0, hk, c_in, cur, s, counts, v


def test_stl_backward_is_the_clamp_derivative_without_kernel():
    """h = [1]: sum_t I[t] = T b + W c_in exactly, so the STL gradient must equal autograd of
    clamp((T b + W c_in + v_init) / theta, 0, T) in every argument."""
    T, s_in, W, b, th, v0, _, c_in, cur, s, counts, v = _stl_case(None)
    # forward: exact IF values
    s_ref, v_ref = ql.if_layer(cur.detach(), th.detach(), v0.detach(), fire=True, surrogate="arctan")
    assert torch.equal(s, s_ref) and torch.equal(v, v_ref) and torch.equal(counts, s_ref.sum(dim=1))
    W2, b2, th2, v02 = (t.detach().clone().requires_grad_(True) for t in (W, b, th, v0))
    c2 = s_in.sum(dim=1).clone().requires_grad_(True)
    u = torch.clamp((T * b2 + c2 @ W2.T + v02) / th2, 0.0, float(T))
    (u * torch.tensor([[1., 2, 3]], dtype=torch.float64)).sum().backward()
    for got, want in ((W, W2), (b, b2), (th, th2), (v0, v02), (c_in, c2)):
        assert torch.equal(got.grad, want.grad)
    # the values: z = [12, 2, -12], z / theta = [3, 1, -6]: neurons 0 and 1 inside the clamp, 2 below it
    z = (T * b2 + c2 @ W2.T + v02).detach()
    assert z.tolist() == [[12.0, 2.0, -12.0]]
    assert th.grad.tolist() == [-12 / 16, -2 * 2 / 4, 0.0]
    assert b.grad.tolist() == [T / 4, 2 * T / 2, 0.0]
    assert c_in.grad.tolist() == [[2 / 4 + 2 * 1 / 2, -1 / 4 + 2 * 1 / 2, 1 / 4 - 2 * 3 / 2]]


def test_stl_backward_with_kernel_hand_computed():
    """h = [2, -1], T = 4. I = W s + b per step; I'[t] = 2 I[t] - I[t-1]; z = sum_t I' + v_init.
    d z / d W_ji = sum_k h[k] * (spikes of input i in the first T - k steps); d z / d b = sum_k h[k] (T - k);
    d z / d h[k] = sum_{t < T-k} I[t]; d z / d count_in = gamma W, gamma = sum_k h[k] (T - k) / T = 5/4."""
    T, s_in, W, b, th, v0, hk, c_in, cur, s, counts, v = _stl_case([2.0, -1.0])
    I = (s_in @ W.T + b).detach()[0]                         # (T, 3)
    assert I.tolist() == [[4, -2, -2], [1, -2, -2], [3, 1, -3], [2, 2, -5]]
    z = (cur.sum(dim=1) + v0).detach()[0]
    # z = 2 * sum_t I - sum_{t<3} I + v_init
    assert z.tolist() == [2 * 10 - 8 + 2, 2 * -1 - -3 + 3, 2 * -12 - -7 + 0] == [14, 4, -17]
    s_ref, v_ref = ql.if_layer(cur.detach(), th.detach(), v0.detach(), fire=True, surrogate="arctan")
    assert torch.equal(s, s_ref) and torch.equal(v, v_ref)
    g = torch.tensor([1., 2, 3], dtype=torch.float64)
    mask = torch.tensor([1., 1, 0], dtype=torch.float64)    # 14/4 = 3.5, 4/2 = 2 inside [0, 4]; -8.5 outside
    gm = g * mask / th.detach()
    C0 = s_in[0].sum(dim=0)                                  # spikes in all 4 steps
    C1 = s_in[0, :T - 1].sum(dim=0)                          # spikes in the first 3 steps
    assert torch.equal(W.grad, gm[:, None] * (2 * C0 - C1)[None, :])
    assert torch.equal(b.grad, gm * (2 * 4 - 3))
    assert torch.equal(v0.grad, gm)
    assert torch.equal(th.grad, -g * mask * z / th.detach() ** 2)
    assert torch.equal(hk.grad, torch.stack([(gm * I.sum(dim=0)).sum(), (gm * I[:T - 1].sum(dim=0)).sum()]))
    assert hk.grad.tolist() == [1 / 4 * 10 + 2 / 2 * -1, 1 / 4 * 8 + 2 / 2 * -3]
    assert torch.equal(c_in.grad, (5 / 4) * (gm @ W.detach())[None, :])


def test_stl_membrane_layer_and_two_layer_chain():
    """fire=False: V = z, gradient 1 to v_init and the plain sum to W; in a net the count gradient
    of layer 1 reaches layer 0's parameters through layer 0's clamp (no time unrolling)."""
    torch.manual_seed(0)
    net = SpikingMLP([6, 5, 3], T=3, encoding="rate", input_max=4, readout="membrane", weight_bits=8,
                     coding="stcb", kernel=2, grad="stl", quantized=False)
    x = ql.rate_encode(torch.tensor([[4., 0, 2, 3, 1, 4], [1., 1, 1, 0, 4, 2]]), 4, 3)
    f = net(x)
    params = net.layers(False)
    with torch.no_grad():
        ref = run_layers(params, x, T=3, encoding="rate", readout="membrane", surrogate="arctan", grad="bptt")
    assert torch.equal(f.v_final[-1].detach(), ref.v_final[-1]) and torch.equal(f.logits.detach(), ref.logits)
    f.v_final[-1].sum().backward()
    assert torch.equal(net.v_init[1].grad, torch.full((3,), 2.0))  # dV/dv_init = 1 per sample
    assert net.weight[0].grad is not None and net.h[0].grad is not None
    # layer 0's gradient arrives only through its count clamp: its v_init gradient is
    # sum_j dV_j/dcount_i / theta_i inside the clamp, i.e. gain * sum_j W1_ji / theta0_i
    W1, h1 = params[1].weight.detach(), params[1].h.detach()
    cur0 = ql.apply_kernel(x @ params[0].weight.detach().T + params[0].bias.detach(), params[0].h.detach())
    z0 = cur0.sum(dim=1) + params[0].v_init.detach()
    th0 = params[0].threshold.detach()
    inside = ((z0 / th0 >= 0) & (z0 / th0 <= 3)).to(z0.dtype)
    want = (ql.kernel_gain(h1, 3) * W1.sum(dim=0) / th0 * inside).sum(dim=0)
    assert torch.allclose(net.v_init[0].grad, want, rtol=1e-6, atol=1e-7)


# ------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------

BAD = {
    "kernel zero": ["--coding", "stcb", "--kernel", "0"],
    "kernel negative": ["--coding", "stcb", "--kernel", "-2"],
    "kernel over 16": ["--coding", "stcb", "--T", "32", "--kernel", "17"],
    "kernel over T": ["--coding", "stcb", "--T", "4", "--kernel", "5"],
    "kernel text": ["--coding", "stcb", "--kernel", "three"],
    "grad unknown": ["--coding", "stcb", "--grad", "hebb"],
    "stl with rate": ["--grad", "stl"],
    "stl with tsc": ["--coding", "tsc", "--T", "5", "--grad", "stl"],
    "kernel with rate": ["--kernel", "2"],
    "kernel with tsc": ["--coding", "tsc", "--T", "5", "--kernel", "2"],
    "stcb tsc encoding": ["--coding", "stcb", "--encoding", "tsc"],
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_exit_2(case, tmp_path):
    out = tmp_path / "m.npz"
    p = subprocess.run([PY, "-m", "quant.train", *BAD[case], "--out", str(out)], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2, p.stderr
    assert len(p.stderr.splitlines()) == 1 and "Traceback" not in p.stderr
    assert p.stderr.startswith("quant.train: error: ")   # one style for every CLI: <module>: error:
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------------
# training: exactness, metrics, reproducibility
# ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny kernel training in a subprocess (the real CLI) and the same in-process."""
    d = tmp_path_factory.mktemp("stcb")
    a = d / "a.npz"
    p = subprocess.run([PY, "-m", "quant.train", *TINY, "--seed", "5", "--out", str(a)], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    b = d / "b.npz"
    assert qtrain.main([*TINY, "--seed", "5", "--out", str(b)]) == 0
    return d, a, b


def test_kernel_training_is_exact(trained):
    d, a, _ = trained
    m = json.loads(a.with_suffix(".json").read_text())
    assert m["golden_agreement"] == 1.0 and m["exact"] is True and m["first_mismatch"] is None
    assert m["golden_accuracy"] == m["quant_accuracy"] > 0.25  # 3 tiny epochs; chance is 0.1
    assert (m["coding"], m["encoding"], m["readout"], m["T"], m["grad"], m["kernel"]) == \
           ("stcb", "rate", "count", 4, "bptt", 3)
    model = golden.load_model(a)
    assert model.coding == "stcb" and all(len(l.h) == 3 for l in model.layers)
    assert [l.h.tolist() for l in model.layers] == m["h"]
    assert any(l.h[1:].any() for l in model.layers)  # the kernels were learned (init [1, 0, 0])
    x, y = golden.datasets.load("digits", "test")
    x, y = x[:300], y[:300]
    assert float((golden.run(model, x).predictions == y).mean()) == m["golden_accuracy"]
    assert_same(model, torch_run(model, x), x)


def test_stcb_metrics_keys_match_rate(trained, tmp_path):
    _, a, _ = trained
    r = tmp_path / "r.npz"
    assert qtrain.main(["--hidden", "6", "--T", "2", "--epochs", "1", "--limit", "40", "--quiet",
                        "--out", str(r)]) == 0
    mr = json.loads(r.with_suffix(".json").read_text())
    ms = json.loads(a.with_suffix(".json").read_text())
    assert set(ms) == set(mr) and {"grad", "kernel"} <= set(mr)
    assert (mr["grad"], mr["kernel"], mr["h"]) == ("bptt", 1, None)


def test_stcb_same_seed_gives_identical_bytes(trained):
    _, a, b = trained
    assert a.read_bytes() == b.read_bytes()
    ha = json.loads(a.with_suffix(".json").read_text())["history"]
    hb = json.loads(b.with_suffix(".json").read_text())["history"]
    assert [{k: v for k, v in h.items() if k != "seconds"} for h in ha] == \
           [{k: v for k, v in h.items() if k != "seconds"} for h in hb]


def test_stcb_resume_gives_identical_model(trained):
    d, a, _ = trained
    c = d / "c.npz"
    assert qtrain.main([*TINY, "--seed", "5", "--out", str(c), "--stop-after", "1"]) == 0
    assert not c.exists()
    assert qtrain.main([*TINY, "--seed", "5", "--out", str(c), "--resume"]) == 0
    assert c.read_bytes() == a.read_bytes()


def test_stl_training_is_exact_and_reproducible(tmp_path):
    argv = ["--coding", "stcb", "--kernel", "2", "--grad", "stl", "--hidden", "16", "--T", "4", "--epochs", "3",
            "--limit", "300", "--batch-size", "16", "--no-float-ref", "--quiet"]
    outs = [tmp_path / "s1.npz", tmp_path / "s2.npz"]
    for o in outs:
        assert qtrain.main([*argv, "--out", str(o)]) == 0
    m = json.loads(outs[0].with_suffix(".json").read_text())
    assert m["golden_agreement"] == 1.0 and m["exact"] is True and (m["grad"], m["kernel"]) == ("stl", 2)
    assert m["golden_accuracy"] > 0.25
    assert outs[0].read_bytes() == outs[1].read_bytes()


def test_stcb_kernel1_bptt_trains_the_rate_network(tmp_path):
    common = ["--hidden", "8", "--T", "3", "--epochs", "1", "--limit", "60", "--no-float-ref", "--quiet"]
    r, s = tmp_path / "r.npz", tmp_path / "s.npz"
    assert qtrain.main([*common, "--out", str(r)]) == 0
    assert qtrain.main([*common, "--coding", "stcb", "--out", str(s)]) == 0
    mr, ms = golden.load_model(r), golden.load_model(s)
    assert ms.coding == "stcb" and mr.layers == ms.layers
