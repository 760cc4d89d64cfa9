"""Convolutional SNNs in quant/: the torch forward against an independent step-major oracle
(tests/conv_oracle.py), per-channel scales, BatchNorm folding, leak and reset options, STL through
conv and pool layers. Exactness with array equality, never tolerances. Fast (tiny nets).

The comparisons with golden itself are in tests/test_quant_conv_golden.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import conv_oracle as oracle
from quant import layers as ql
from quant.arch import build_arch
from quant.net import SpikingNet, _batched_eval, encode_inputs
from quant.qnet import QLayer
from quant.tsc import TSCNet, tsc_batched_eval

# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------


def random_layers(rng, arch, shape, *, bits, stcb_K=1, reset="subtract", leak=None, tsc=False, T=4):
    """Random integer layers (oracle dicts) for ``arch`` on ``shape``: weights over the full
    ``bits`` range, mixed-sign biases, thresholds from 1 up, non-zero initial membranes."""
    qm = (1 << (bits - 1)) - 1
    out = []
    for spec in build_arch(arch, shape, int(arch.rsplit("-", 1)[1])):
        d = {"kind": spec.kind, "in_shape": tuple(spec.in_shape), "out_shape": tuple(spec.out_shape)}
        if spec.kind == "maxpool2d":
            d["kernel"] = spec.kernel
            out.append(d)
            continue
        if spec.kind == "conv2d":
            wshape = (spec.channels, spec.in_shape[0], spec.kernel, spec.kernel)
            d.update(stride=spec.stride, padding=spec.padding)
        else:
            wshape = (spec.n_out, spec.n_in)
        n = wshape[0]
        d["weight"] = rng.integers(-qm - 1, qm + 1, wshape)
        d["bias"] = rng.integers(-2 * qm, 2 * qm + 1, n)
        d["threshold"] = rng.integers(1, 3 * qm + 2, n)
        d["v_init"] = np.zeros(n, np.int64) if tsc else rng.integers(-2 * qm, 2 * qm + 1, n)
        d["h"] = [1] if stcb_K == 1 else list(rng.integers(-qm - 1, qm + 1, stcb_K))
        d["reset"], d["leak"] = reset, leak
        out.append(d)
    return out


def to_qlayers(layers, arch, shape, dtype, *, tsc=False):
    specs = build_arch(arch, shape, int(arch.rsplit("-", 1)[1]))
    out = []
    for spec, d in zip(specs, layers):
        if spec.kind == "maxpool2d":
            out.append(QLayer(spec))
            continue
        t = lambda a: torch.as_tensor(np.array(a), dtype=dtype)  # noqa: E731
        h = None if list(d["h"]) == [1] else t(d["h"])
        leak = None if d["leak"] is None else (float(d["leak"][0]), int(d["leak"][1]), True)
        out.append(QLayer(spec, t(d["weight"]), t(d["bias"]), t(d["threshold"]), None if tsc else t(d["v_init"]),
                          h, reset=d["reset"], leak=leak))
    return out


def net_layers(net):
    """A net's exported integers as oracle dicts."""
    out = []
    for spec, d in zip(net.specs, net.integer_layers()):
        e = {"kind": spec.kind, "in_shape": tuple(spec.in_shape), "out_shape": tuple(spec.out_shape)}
        if spec.kind == "maxpool2d":
            e["kernel"] = spec.kernel
        else:
            e.update({k: d[k] for k in ("weight", "bias", "threshold", "v_init", "reset", "leak")})
            e["h"] = list(d["h"])
            if spec.kind == "conv2d":
                e.update(stride=spec.stride, padding=spec.padding)
        out.append(e)
    return out


def assert_rate_same(out, ref):
    spikes, v_final, preds = ref
    assert len(out["spikes"]) == len(spikes)
    for li, (e, g) in enumerate(zip(spikes, out["spikes"])):
        assert g.dtype == np.uint8 and np.array_equal(e, g), f"layer {li} spikes"
    for li, (e, g) in enumerate(zip(v_final, out["v_final"])):
        assert (e is None) == (g is None), li
        if e is not None:
            assert np.array_equal(e, g), f"layer {li} v_final"
    assert np.array_equal(out["predictions"], preds)
    assert np.array_equal(out["counts"], spikes[-1].sum(axis=1))


ARCHS = [("3c3-mp2-4c3s2-5", (2, 8, 8)), ("4c2-3c3s2-6-5", (1, 5, 7)), ("mp2-3c1-5", (2, 4, 6)),
         ("5c3-mp2-mp2-5", (1, 8, 8))]


# ------------------------------------------------------------------------------------------------
# the torch forward == the oracle, on random integer networks
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("encoding", ["rate", "direct"])
@pytest.mark.parametrize("readout", ["count", "membrane"])
@pytest.mark.parametrize("reset,leak", [("subtract", None), ("zero", None), ("subtract", (13, 4)),
                                        ("zero", (1, 1)), ("subtract", (0, 3)), ("subtract", (255, 8))])
def test_random_conv_nets_match_the_oracle(encoding, readout, reset, leak):
    rng = np.random.default_rng(len(encoding) * 100 + len(readout) * 10 + len(reset) + (leak or (0,))[0])
    active = []
    for arch, shape in ARCHS:
        if encoding == "direct" and arch.startswith("mp"):
            continue
        bits, T, input_max = int(rng.choice([2, 4, 8])), int(rng.integers(1, 6)), int(rng.choice([1, 3, 16]))
        layers = random_layers(rng, arch, shape, bits=bits, reset=reset, leak=leak)
        x = rng.integers(0, input_max + 1, (7, int(np.prod(shape))))
        x[0], x[1] = input_max, 0
        ref = oracle.run_rate(layers, x, T=T, encoding=encoding, input_max=input_max, readout=readout)
        for dtype in (torch.float32, torch.float64):
            out = _batched_eval(to_qlayers(layers, arch, shape, dtype), x, T=T, encoding=encoding,
                                input_max=input_max, readout=readout, surrogate="arctan", dtype=dtype, batch_size=3)
            assert_rate_same(out, ref)
        hidden = np.concatenate([s.ravel() for s in ref[0][:-1]])
        active.append(hidden.any() and not hidden.all())
    assert any(active)      # the comparison is not between silent networks


@pytest.mark.parametrize("encoding", ["rate", "direct"])
def test_random_conv_stcb_kernels_match_the_oracle(encoding):
    rng = np.random.default_rng(11 + len(encoding))
    for arch, shape in ARCHS[:2]:
        for K in (2, 3):
            layers = random_layers(rng, arch, shape, bits=5, stcb_K=K)
            x = rng.integers(0, 17, (6, int(np.prod(shape))))
            ref = oracle.run_rate(layers, x, T=5, encoding=encoding, input_max=16, readout="count")
            out = _batched_eval(to_qlayers(layers, arch, shape, torch.float64), x, T=5, encoding=encoding,
                                input_max=16, readout="count", surrogate="arctan", dtype=torch.float64,
                                batch_size=4)
            assert_rate_same(out, ref)


@pytest.mark.parametrize("bits", [2, 5, 8])
def test_random_tsc_conv_nets_match_the_oracle(bits):
    rng = np.random.default_rng(bits)
    for arch, shape in ARCHS:
        T = int(rng.integers(2, 10))
        layers = random_layers(rng, arch, shape, bits=bits, tsc=True, T=T)
        x = rng.integers(0, 17, (9, int(np.prod(shape))))
        x[0], x[1] = 16, 0
        q0, acts, vf, preds = oracle.run_tsc(layers, x, T=T, input_max=16)
        out = tsc_batched_eval(to_qlayers(layers, arch, shape, torch.float64, tsc=True), x, Q=T - 1, input_max=16,
                               dtype=torch.float64, batch_size=4)
        assert np.array_equal(out["inputs"], q0)
        assert len(out["activations"]) == len(acts) == len(layers) - 1
        for e, g in zip(acts, out["activations"]):
            assert np.array_equal(e, g)
        for e, g in zip(vf, out["v_final"]):
            assert (e is None) == (g is None) and (e is None or np.array_equal(e, g))
        assert np.array_equal(out["predictions"], preds)
        assert any(a.any() and (a < T - 1).any() for a in acts)   # activations neither all 0 nor all clipped


# ------------------------------------------------------------------------------------------------
# per-channel scales
# ------------------------------------------------------------------------------------------------

def test_per_channel_quantization_scales_and_integers():
    torch.manual_seed(0)
    w = torch.randn(4, 3, 3, 3) * torch.tensor([1.0, 0.01, 5.0, 0.3]).view(4, 1, 1, 1)
    b, th, v0 = torch.randn(4), torch.rand(4) + 0.5, torch.randn(4)
    W, B, TH, V0, scale = ql.quantize_layer(w, b, th, v0, 6, per_channel=True)
    assert isinstance(scale, list) and len(scale) == 4
    for o, s in enumerate(scale):
        assert s == ql.pow2_scale(float(w[o].abs().max()), 6)   # each channel's own power of two
        assert torch.equal(W[o], torch.clamp(torch.round(w[o] / s), -31, 31))
        assert float(B[o]) == round(float(b[o]) / s) and float(V0[o]) == round(float(v0[o]) / s)
        assert float(TH[o]) == max(1, round(float(th[o]) / s))   # theta on its channel's scale too
        assert int(W[o].abs().max()) >= 16     # every channel uses its range (a per-layer scale would not)
    _, _, _, _, s1 = ql.quantize_layer(w, b, th, v0, 6)
    assert s1 == max(scale)


@pytest.mark.parametrize("coding", ["rate", "tsc"])
def test_per_channel_net_exports_the_integers_it_runs(coding):
    torch.manual_seed(1)
    specs = build_arch("6c3-mp2-4c3-5", (1, 6, 6), 5)
    if coding == "tsc":
        net = TSCNet(specs, T=6, input_max=16, weight_bits=6, per_channel=True)
    else:
        net = SpikingNet(specs, T=4, encoding="rate", input_max=16, readout="count", weight_bits=6, per_channel=True)
    with torch.no_grad():
        net.weight[0].mul_(torch.tensor([1.0, 0.05, 3.0, 0.5, 1.0, 0.2]).view(6, 1, 1, 1))
        net.threshold[0].uniform_(0.2, 1.5)
    ints = net.integer_layers()
    assert isinstance(ints[0]["scale"], list) and len(set(ints[0]["scale"])) > 1
    assert not isinstance(ints[-1]["scale"], list)     # the classifier shares one unit across its neurons
    x = np.random.default_rng(0).integers(0, 17, (20, 36))
    layers = net_layers(net)
    if coding == "tsc":
        q0, acts, vf, preds = oracle.run_tsc(layers, x, T=6, input_max=16)
        out = net.quantized_eval(x, dtype=torch.float64)
        assert all(np.array_equal(e, g) for e, g in zip(acts, out["activations"]))
        assert np.array_equal(out["predictions"], preds)
    else:
        assert_rate_same(net.quantized_eval(x, dtype=torch.float64),
                         oracle.run_rate(layers, x, T=4, encoding="rate", input_max=16, readout="count"))


# ------------------------------------------------------------------------------------------------
# BatchNorm folding
# ------------------------------------------------------------------------------------------------

def _bn_net(coding, quantized, *, per_channel=False, T=4, encoding="rate"):
    torch.manual_seed(2)
    specs = build_arch("4c3-mp2-6-5", (1, 6, 6), 5)
    if coding == "tsc":
        net = TSCNet(specs, T=T, input_max=16, weight_bits=8, bn=True, quantized=quantized, per_channel=per_channel)
    else:
        net = SpikingNet(specs, T=T, encoding=encoding, input_max=16, readout="count", weight_bits=8, bn=True,
                         quantized=quantized, per_channel=per_channel, leak=(7, 3), reset="subtract")
    with torch.no_grad():   # statistics and affine parameters of every sign, including gamma < 0
        net.bn_gamma[0].copy_(torch.tensor([1.5, -0.7, 0.3, -2.0]))
        net.bn_beta[0].copy_(torch.tensor([0.2, -0.4, 0.9, 0.1]))
        net.bn_mean0.copy_(torch.tensor([0.5, -1.0, 2.0, 0.0]))
        net.bn_var0.copy_(torch.tensor([0.8, 2.5, 0.1, 1.3]))
        net.bn_gamma[1].uniform_(-1.5, 1.5)
        net.bn_beta[1].uniform_(-0.5, 0.5)
        net.bn_mean1.uniform_(-2.0, 2.0)
        net.bn_var1.uniform_(0.2, 3.0)
        for t in net.threshold:
            t.uniform_(0.5, 1.5)
    net.eval()
    return net


def _explicit_bn_forward(net, x, T):
    """The unfolded float network in float64: current r = W s, y = gamma (r - mu) / sigma + beta,
    neurons with the net's own theta and v_init on y. Returns the spikes per neuron layer."""
    import torch.nn.functional as F
    spikes = []
    s = encode_inputs(torch.as_tensor(x, dtype=torch.float64), "rate", 16, T).reshape(len(x), T, 1, 6, 6)
    j = 0
    for spec in net.specs:
        if spec.kind == "maxpool2d":
            s = F.max_pool2d(s.reshape((-1,) + tuple(spec.in_shape)), spec.kernel).reshape(
                (len(x), T) + tuple(spec.out_shape))
            continue
        w = net.weight[j].detach().double()
        flat = s.reshape((len(x) * T,) + tuple(spec.in_shape))
        r = F.conv2d(flat, w, padding=spec.padding) if spec.kind == "conv2d" else flat.reshape(len(flat), -1) @ w.T
        shape = (1, -1, 1, 1) if spec.kind == "conv2d" else (1, -1)
        if net.has_bn(j):
            g = net.bn_gamma[j].detach().double().view(shape)
            be = net.bn_beta[j].detach().double().view(shape)
            mu = getattr(net, f"bn_mean{j}").double().view(shape)
            var = getattr(net, f"bn_var{j}").double().view(shape)
            y = g * (r - mu) / torch.sqrt(var + 1e-5) + be
        else:
            y = r + net.bias[j].detach().double().view(shape)
        y = y.reshape((len(x), T) + tuple(spec.out_shape))
        th = net.threshold[j].detach().double().view(shape[1:])
        v = net.v_init[j].detach().double().view(shape[1:]).expand(y.shape[2:]).clone()
        out = []
        for t in range(T):
            v = v * (7 / 8) + y[:, t]
            st = (v >= th).double()
            v = v - th * st
            out.append(st)
        s = torch.stack(out, dim=1)
        spikes.append(s.reshape(len(x), T, -1))
        j += 1
    return spikes


def test_bn_fold_is_the_bn_network():
    """Float: the folded network (sign into W, magnitude into theta and v_init) spikes exactly like
    the network with an explicit BatchNorm, negative gammas included."""
    net = _bn_net("rate", quantized=False).double()
    x = np.random.default_rng(3).integers(0, 17, (40, 36))
    want = _explicit_bn_forward(net, x, 4)
    with torch.no_grad():
        f = net(encode_inputs(torch.as_tensor(x, dtype=torch.float64), "rate", 16, 4), quantized=False)
    got = [s for s, spec in zip(f.spikes, net.specs) if spec.kind != "maxpool2d"]
    for e, g in zip(want, got):
        assert torch.equal(e, g.double())
    assert all(0 < float(s.mean()) < 1 for s in want[:-1])


@pytest.mark.parametrize("coding", ["rate", "tsc"])
@pytest.mark.parametrize("per_channel", [False, True])
def test_bn_fold_exports_exactly(coding, per_channel):
    """Quantized: the exported integers (BN folded with the running statistics) are what the net's
    own evaluation forward runs, including the sign flip of a negative gamma's channel."""
    net = _bn_net(coding, quantized=True, per_channel=per_channel)
    ints = net.integer_layers()
    w_plain = net.weight[0].detach()
    # channel 1 has gamma < 0: its folded weights are the negated weights (up to the channel's scale)
    s1 = ints[0]["scale"][1] if per_channel else ints[0]["scale"]
    assert np.array_equal(ints[0]["weight"][1], -np.clip(np.round(w_plain[1].numpy() / s1), -127, 127))
    x = np.random.default_rng(4).integers(0, 17, (30, 36))
    layers = net_layers(net)
    if coding == "tsc":
        q0, acts, vf, preds = oracle.run_tsc(layers, x, T=4, input_max=16)
        out = net.quantized_eval(x)
        assert all(np.array_equal(e, g) for e, g in zip(acts, out["activations"]))
        assert np.array_equal(out["predictions"], preds)
    else:
        assert ints[0]["leak"] == (7, 3)
        assert_rate_same(net.quantized_eval(x), oracle.run_rate(layers, x, T=4, encoding="rate", input_max=16,
                                                                 readout="count"))


def test_bn_statistics_batch_then_running_then_frozen():
    torch.manual_seed(0)
    specs = build_arch("3c3-5", (1, 4, 4), 5)
    net = SpikingNet(specs, T=2, encoding="rate", input_max=4, readout="count", weight_bits=8, bn=True)
    x = encode_inputs(torch.randint(0, 5, (16, 16)).float(), "rate", 4, 2)
    net.train()
    f_batch = net(x)
    r = torch.nn.functional.conv2d(x.reshape(32, 1, 4, 4), net.weight[0].detach(), padding=1)
    mu, var = r.mean(dim=(0, 2, 3)), r.var(dim=(0, 2, 3), unbiased=True)
    assert torch.allclose(net.bn_mean0, 0.1 * mu) and torch.allclose(net.bn_var0, 0.9 + 0.1 * var)
    before = net.bn_mean0.clone()
    net.bn_frozen = True               # the last epochs: the running statistics, no more updates
    f_frozen = net(x)
    assert torch.equal(net.bn_mean0, before)
    net.eval()
    f_eval = net(x)
    assert torch.equal(f_frozen.logits, f_eval.logits)
    assert not torch.equal(f_batch.logits, f_eval.logits)
    f_batch.logits.sum().backward()
    assert net.bn_gamma[0].grad is not None and net.bias[0].grad is None   # BN replaces the bias


# ------------------------------------------------------------------------------------------------
# leak, learnable leak, reset and gradients through conv / pool layers
# ------------------------------------------------------------------------------------------------

def test_apply_leak_is_an_arithmetic_shift():
    v = torch.tensor([-9.0, -8.0, -1.0, 0.0, 1.0, 7.0, 100.0])
    for num, shift in [(15, 4), (1, 1), (0, 3), (8, 3), (255, 8)]:
        got = ql.apply_leak(v, (float(num), shift, True))
        want = [(int(a) * num) >> shift for a in v.tolist()]
        assert got.tolist() == want
    assert ql.apply_leak(v, (3.0, 2, False)).tolist() == (v * 0.75).tolist()


def test_learnable_leak_gets_a_gradient_and_exports_an_integer():
    torch.manual_seed(0)
    specs = build_arch("4c3-mp2-5", (1, 4, 4), 5)
    net = SpikingNet(specs, T=4, encoding="rate", input_max=4, readout="count", weight_bits=8, leak=(12, 4),
                     learn_leak=True)
    x = encode_inputs(torch.randint(0, 5, (8, 16)).float(), "rate", 4, 4)
    net(x).logits.sum().backward()
    assert len(net.leak_factor) == 2 and all(p.grad is not None and p.grad != 0 for p in net.leak_factor)
    with torch.no_grad():
        net.leak_factor[0].fill_(0.61)      # 0.61 * 16 = 9.76 -> 10
        net.leak_factor[1].fill_(1.7)       # clamped to 1 -> 16
    ints = [d for d in net.integer_layers() if d["kind"] != "maxpool2d"]
    assert [d["leak"] for d in ints] == [(10, 4), (16, 4)]


def test_reset_zero_and_leak_in_if_layer():
    cur = torch.tensor([[[3.0], [3.0], [3.0], [-1.0]]])       # (B=1, T=4, n=1)
    th, v0 = torch.tensor([4.0]), torch.tensor([2.0])
    s, v = ql.if_layer(cur, th, v0, fire=True, surrogate="arctan", reset="zero")
    assert s.flatten().tolist() == [1, 0, 1, 0] and v.tolist() == [[-1.0]]
    s, v = ql.if_layer(cur, th, v0, fire=True, surrogate="arctan", reset="subtract", leak=(1.0, 1, True))
    # V: 2>>1=1, +3=4 fire ->0; 0+3=3; 3>>1=1 +3=4 fire -> 0; 0 - 1 = -1
    assert s.flatten().tolist() == [1, 0, 1, 0] and v.tolist() == [[-1.0]]
    with pytest.raises(ValueError, match="reset"):
        ql.if_layer(cur, th, v0, fire=True, surrogate="arctan", reset="hold")


@pytest.mark.parametrize("grad", ["bptt", "stl"])
def test_gradients_reach_every_conv_layer(grad):
    torch.manual_seed(0)
    specs = build_arch("4c3-mp2-6c3s2-5", (1, 8, 8), 5)
    net = SpikingNet(specs, T=4, encoding="rate", input_max=16, readout="count", weight_bits=8, coding="stcb",
                     kernel=2, grad=grad)
    x = encode_inputs(torch.randint(0, 17, (8, 64)).float(), "rate", 16, 4)
    f = net(x)
    with torch.no_grad():
        ref = net(x)     # no autograd: the BPTT code path
    assert torch.equal(f.logits.detach(), ref.logits) and torch.equal(f.counts.detach(), ref.counts)
    f.logits.sum().backward()
    for p in list(net.weight) + list(net.threshold) + list(net.h):
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


def test_stl_pool_passes_the_count_gradient_to_the_window_maximum():
    specs = build_arch("mp2-3", (1, 2, 2), 3)
    net = SpikingNet(specs, T=3, encoding="rate", input_max=4, readout="count", weight_bits=8, coding="stcb",
                     grad="stl", quantized=False)
    # counts of the four inputs over 3 steps: 3, 1, 0, 2 -> the max-pooled count gradient goes to input 0
    x = torch.tensor([[[1.0, 1, 0, 1], [1, 0, 0, 0], [1, 0, 0, 1]]])
    c_in = x.sum(dim=1).reshape(1, 1, 2, 2).requires_grad_(True)
    from quant.qnet import pool
    pooled = pool(c_in, specs[0])
    pooled.sum().backward()
    assert c_in.grad.flatten().tolist() == [1.0, 0.0, 0.0, 0.0]
    f = net(x)                        # the layer runs: its forward spikes are the exact OR
    assert f.spikes[0].flatten().tolist() == [1.0, 1.0, 1.0]


def test_validation_of_network_options():
    specs = build_arch("4c3-5", (1, 4, 4), 5)
    kw = dict(T=4, encoding="rate", input_max=4, readout="count", weight_bits=8)
    with pytest.raises(ValueError, match="leak"):
        SpikingNet(specs, leak=(17, 4), **kw)
    with pytest.raises(ValueError, match="leak"):
        SpikingNet(specs, leak=(1, 17), **kw)
    with pytest.raises(ValueError, match="learn_leak"):
        SpikingNet(specs, learn_leak=True, **kw)
    with pytest.raises(ValueError, match="reset"):
        SpikingNet(specs, reset="hold", **kw)
    with pytest.raises(ValueError, match="stl"):
        SpikingNet(specs, coding="stcb", grad="stl", leak=(1, 1), **kw)
    with pytest.raises(ValueError, match="direct"):
        SpikingNet(build_arch("mp2-5", (1, 4, 4), 5), **{**kw, "encoding": "direct"})
    assert math.isclose(SpikingNet(specs, **{**kw, "encoding": "direct"}).in_gain, 1 / 4)


@pytest.mark.parametrize("onednn", [True, False])
def test_conv_synapse_is_exact_without_onednn(onednn):
    """quant.numerics turns oneDNN off for portable training; torch then picks NNPACK's Winograd
    convolution for 3x3 kernels, which rounds. ``synapse`` must stay an exact direct convolution
    (found when a portable run's exactness check failed: layer 0, neuron (2, 0, 6))."""
    from quant.qnet import synapse
    spec = build_arch("8c3-10", (1, 8, 8), 10)[0]
    rng = np.random.default_rng(3)
    x = rng.integers(0, 17, size=(32, 1, 8, 8))
    w = rng.integers(-128, 128, size=(8, 1, 3, 3))
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    ref = np.zeros((32, 8, 8, 8), dtype=np.int64)
    for dy in range(3):
        for dx in range(3):
            ref += np.einsum("bchw,oc->bohw", xp[:, :, dy:dy + 8, dx:dx + 8], w[:, :, dy, dx])
    was = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = onednn
    try:
        got = synapse(torch.tensor(x, dtype=torch.float32), spec, torch.tensor(w, dtype=torch.float32))
    finally:
        torch.backends.mkldnn.enabled = was
    assert np.array_equal(got.numpy().astype(np.int64), ref) and np.array_equal(got.numpy(), ref.astype(np.float32))
