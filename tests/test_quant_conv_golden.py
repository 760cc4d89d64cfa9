"""Convolutional SNNs, quant/ against golden: the torch forward of random schema-2 golden models
(every coding, encoding, reset and leak) equals golden.run on every spike, membrane and prediction;
trained nets (BN, per-channel scales, learned leak) export exactly; a mismatch is located at its
layer, step and (c, y, x); the CLI rejects bad conv options with one line and exit 2, before
importing torch; and a tiny train + export runs for every coding with conv layers.

Fast: tiny networks, --limit subsets, 1-2 epochs. Exactness with array equality only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

import golden
from quant import train as qtrain
from quant.arch import build_arch
from quant.exactness import check_model, check_net, compare
from quant.export import to_golden, torch_run
from quant.net import SpikingNet, exact_dtype, leak_exact_bits
from quant.tsc import TSCNet

from test_quant_conv import random_layers

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
ARCHS = [("3c3-mp2-4c3s2-5", (2, 8, 8)), ("4c2-3c3s2-6-5", (1, 5, 7)), ("mp2-3c1-5", (2, 4, 6))]


def golden_model(layers, *, coding, T, encoding, input_max, readout, bits, shape):
    """Oracle dicts (tests/test_quant_conv.random_layers) as a validated golden.Model."""
    gl = []
    for d in layers:
        if d["kind"] == "maxpool2d":
            gl.append(golden.MaxPool2d(d["kernel"], in_shape=d["in_shape"]))
            continue
        args = (d["weight"], d["bias"], d["threshold"], d["v_init"])
        kw = dict(h=d["h"], reset=d["reset"], leak=d["leak"])
        if d["kind"] == "conv2d":
            gl.append(golden.Conv2d(*args, in_shape=d["in_shape"], stride=d["stride"], padding=d["padding"], **kw))
        else:
            gl.append(golden.Dense(*args, **kw))
    return golden.Model(gl, coding=coding, T=T, encoding=encoding, input_max=input_max, readout=readout,
                        weight_bits=bits, input_shape=list(shape))


def assert_same(model, out, x):
    """Field-by-field equality of the torch forward with golden.run(record=True)."""
    res = golden.run(model, x, record=True)
    if model.coding == "tsc":
        assert len(res.activations) == len(out["activations"])
        for e, g in zip(res.activations, out["activations"]):
            assert np.array_equal(e, g)
    else:
        assert len(res.spikes) == len(out["spikes"]) == len(model.layers)
        for i, (e, g) in enumerate(zip(res.spikes, out["spikes"])):
            assert e.dtype == g.dtype == np.uint8 and np.array_equal(e, g), f"layer {i} spikes"
        assert np.array_equal(res.counts, out["counts"])
        if model.encoding == "rate":
            assert np.array_equal(res.input_spikes, out["input_spikes"])
    for i, (e, g) in enumerate(zip(res.v_final, out["v_final"])):
        assert (e is None) == (g is None) and (e is None or np.array_equal(e, g)), f"layer {i} v_final"
    assert np.array_equal(res.membranes, out["membranes"])
    assert np.array_equal(res.predictions, out["predictions"])
    a = compare(out, res, model)
    assert a.exact and a.agreeing == len(x) and a.mismatch is None
    return res


# ------------------------------------------------------------------------------------------------
# random golden models: torch_run == golden.run
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("coding", ["rate", "stcb"])
@pytest.mark.parametrize("encoding", ["rate", "direct"])
@pytest.mark.parametrize("readout", ["count", "membrane"])
@pytest.mark.parametrize("reset,leak", [("subtract", None), ("zero", None), ("subtract", (11, 4)), ("zero", (3, 2))])
def test_random_golden_conv_models_exact(coding, encoding, readout, reset, leak):
    rng = np.random.default_rng(zlib.crc32(repr((coding, encoding, readout, reset, leak)).encode()))
    for arch, shape in ARCHS:
        if encoding == "direct" and arch.startswith("mp"):
            continue
        bits, T, input_max = int(rng.choice([2, 5, 8])), int(rng.integers(1, 7)), int(rng.choice([1, 16, 255]))
        K = int(rng.integers(1, min(T, 3) + 1)) if coding == "stcb" else 1
        layers = random_layers(rng, arch, shape, bits=bits, stcb_K=K, reset=reset, leak=leak)
        model = golden_model(layers, coding=coding, T=T, encoding=encoding, input_max=input_max, readout=readout,
                             bits=bits, shape=shape)
        x = rng.integers(0, input_max + 1, (12, int(np.prod(shape))))
        x[0], x[1] = input_max, 0
        assert_same(model, torch_run(model, x), x)


@pytest.mark.parametrize("bits", [2, 6, 8])
def test_random_golden_tsc_conv_models_exact(bits):
    rng = np.random.default_rng(40 + bits)
    for arch, shape in ARCHS:
        T = int(rng.integers(2, 12))
        layers = random_layers(rng, arch, shape, bits=bits, tsc=True, T=T)
        model = golden_model(layers, coding="tsc", T=T, encoding="tsc", input_max=16, readout="membrane",
                             bits=bits, shape=shape)
        x = rng.integers(0, 17, (15, int(np.prod(shape))))
        assert_same(model, torch_run(model, x), x)


def test_wide_leaky_conv_model_uses_float64_and_stays_exact():
    """A leak's product V * num can pass 2**24 while golden's widths do not: exact_dtype sees it."""
    rng = np.random.default_rng(5)
    layers = random_layers(rng, "6c3-8", (2, 6, 6), bits=6, leak=(65535, 16))
    model = golden_model(layers, coding="rate", T=6, encoding="direct", input_max=255, readout="count", bits=6,
                         shape=(2, 6, 6))
    assert max(w.v_bits for w in model.widths) <= 24 < leak_exact_bits(model)
    assert exact_dtype(model) == torch.float64
    x = rng.integers(0, 256, (10, 72))
    assert_same(model, torch_run(model, x), x)


# ------------------------------------------------------------------------------------------------
# nets export exactly: BN, per-channel scales, learned leak, every coding
# ------------------------------------------------------------------------------------------------

NETS = {
    "rate": dict(coding="rate"),
    "rate bn channel": dict(coding="rate", bn=True, per_channel=True),
    "rate direct membrane": dict(coding="rate", encoding="direct", readout="membrane", bn=True),
    "rate zero reset leak": dict(coding="rate", reset="zero", leak=(13, 4), learn_leak=True),
    "stcb kernel": dict(coding="stcb", kernel=3, bn=True),
    "tsc": dict(coding="tsc"),
    "tsc bn channel": dict(coding="tsc", bn=True, per_channel=True),
}


@pytest.mark.parametrize("name", sorted(NETS))
def test_conv_nets_export_exactly(name):
    kw = dict(NETS[name])
    coding = kw.pop("coding")
    torch.manual_seed(len(name))
    specs = build_arch("6c3-mp2-8c3s2-16-10", (1, 8, 8), 10)
    if coding == "tsc":
        net = TSCNet(specs, T=9, input_max=16, weight_bits=8, **kw)
    else:
        base = dict(T=5, encoding="rate", input_max=16, readout="count", weight_bits=8)
        base.update(kw)
        net = SpikingNet(specs, coding=coding, **base)
    x, _ = golden.datasets.load("digits", "test")
    x = x[:60]
    net.train()
    with torch.no_grad():    # train-mode passes move the BN running statistics off their initial values
        for _ in range(3):
            net(x_in := _encode(net, x))
        for t in net.threshold:
            t.mul_(0.5)
    net.eval()
    model, a = check_net(net, x)
    assert a.exact and a.fraction == 1.0 and a.mismatch is None, a.mismatch
    assert [l.kind for l in model.layers] == ["conv2d", "maxpool2d", "conv2d", "dense", "dense"]
    assert model.input_shape == (1, 8, 8) and model.coding == coding
    res = golden.run(model, x, record=True)
    if coding != "tsc":
        hidden = np.concatenate([s.ravel() for s in res.spikes[:-1]])
        assert hidden.any() and not hidden.all()
        if "leak" in kw:
            assert all(l.leak is not None and l.leak[1] == 4 for l in model.layers if l.kind != "maxpool2d")
            assert {l.reset for l in model.layers if l.kind != "maxpool2d"} == {"zero"}
    del x_in


def _encode(net, x):
    from quant.net import encode_inputs
    xb = torch.as_tensor(x, dtype=torch.float32)
    return xb if net.coding == "tsc" else encode_inputs(xb, net.encoding, net.input_max, net.T)


def test_stcb_retarget_of_a_rate_conv_model_is_the_same_network():
    """h = [1]: a rate conv model retargeted to coding stcb predicts (and spikes) identically."""
    torch.manual_seed(0)
    net = SpikingNet(build_arch("6c3-mp2-8c3-10", (1, 8, 8), 10), T=6, encoding="rate", input_max=16,
                     readout="count", weight_bits=8)
    with torch.no_grad():
        for t in net.threshold:
            t.mul_(0.4)
    x, _ = golden.datasets.load("digits", "test")
    rate = to_golden(net)
    stcb = rate.replace(coding="stcb")
    a, b = golden.run(rate, x, record=True), golden.run(stcb, x, record=True)
    assert np.array_equal(a.predictions, b.predictions)
    assert all(np.array_equal(e, g) for e, g in zip(a.spikes, b.spikes))
    assert to_golden(net, coding="stcb") == stcb


# ------------------------------------------------------------------------------------------------
# the mismatch report
# ------------------------------------------------------------------------------------------------

def test_conv_mismatch_is_located_with_channel_and_position():
    rng = np.random.default_rng(3)
    layers = random_layers(rng, "3c3-mp2-4c3s2-5", (2, 8, 8), bits=6)
    model = golden_model(layers, coding="rate", T=4, encoding="rate", input_max=16, readout="count", bits=6,
                         shape=(2, 8, 8))
    x = rng.integers(0, 17, (20, 128))
    res = golden.run(model, x, record=True)
    out = torch_run(model, x)
    # layer 2 is conv2d with out_shape (4, 2, 2): neuron 13 is channel 3, y 0, x 1
    out["spikes"][2][6, 1, 13] ^= 1
    a = compare(out, res, model)
    assert not a.exact
    assert a.mismatch.startswith("sample 6, field spikes, layer 2, time step 1, neuron 13 (c, y, x) = (3, 0, 1): ")
    out = torch_run(model, x)
    out["spikes"][1][2, 3, 17] ^= 1     # the pool layer (3, 4, 4): neuron 17 = c 1, y 0, x 1
    assert compare(out, res, model).mismatch.startswith(
        "sample 2, field spikes, layer 1, time step 3, neuron 17 (c, y, x) = (1, 0, 1): ")
    out = torch_run(model, x)
    out["v_final"][0][4, 70] += 1        # conv (3, 8, 8): 70 = c 1, y 0, x 6
    m = compare(out, res, model).mismatch
    assert m.startswith("sample 4, field v_final, layer 0, time step 3, neuron 70 (c, y, x) = (1, 0, 6): ")
    assert check_model(model, torch_run(model, x), x).exact
    # a torch output that gives the pool layer a membrane (or drops a conv layer's) is refused
    out = torch_run(model, x)
    out["v_final"][1] = np.zeros((20, 48), np.int64)
    with pytest.raises(ValueError, match="layer 1: golden and torch disagree"):
        compare(out, res, model)


def test_conv_training_mismatch_exits_1(tmp_path, monkeypatch, capsys):
    orig = SpikingNet.quantized_eval

    def broken(self, x, **kw):
        out = orig(self, x, **kw)
        out["spikes"][0][5, 2, 9] ^= 1        # conv 2x8x8: neuron 9 = c 0, y 1, x 1
        return out

    monkeypatch.setattr(SpikingNet, "quantized_eval", broken)
    # --native-cpu: in this test process torch has run, so the portable kernels could not be chosen (a
    # warning line on stderr); the one-line error is what is checked here
    rc = qtrain.main(["--arch", "2c3-mp2-10", "--T", "3", "--epochs", "1", "--limit", "40", "--no-float-ref",
                      "--quiet", "--native-cpu", "--out", str(tmp_path / "bad.npz")])
    assert rc == 1
    err = capsys.readouterr().err
    assert "sample 5, field spikes, layer 0, time step 2, neuron 9 (c, y, x) = (0, 1, 1)" in err
    assert len(err.splitlines()) == 1


# ------------------------------------------------------------------------------------------------
# CLI: bad conv options (exit 2, one line, nothing written, torch never imported)
# ------------------------------------------------------------------------------------------------

BAD = {
    "arch syntax": (["--arch", "16x3-10"], "token 1 '16x3' is not a layer"),
    "arch empty token": (["--arch", "16c3--10"], "token 2 is empty"),
    "arch pool does not divide": (["--arch", "16c3-mp3-10"], "the 8x8 map is not a multiple of the 3x3 window"),
    "arch conv after dense": (["--arch", "64-8c3-10"], "needs a [C, H, W] input"),
    "arch classifier": (["--arch", "16c3-mp2-12"], "must be a dense layer with 10 outputs"),
    "arch conv last": (["--arch", "16c3"], "is the classifier"),
    "arch and hidden": (["--arch", "16c3-10", "--hidden", "64"], "either --arch or --hidden"),
    "arch pool too deep": (["--arch", "mp2-mp2-mp2-mp2-10"], "the 1x1 map is not a multiple"),
    "arch kernel": (["--arch", "4c17-10"], "kernel 17"),
    "direct pool first": (["--arch", "mp2-10", "--encoding", "direct"], "must be dense or conv"),
    "reset unknown": (["--reset", "hold"], "invalid choice: 'hold'"),
    "leak one number": (["--leak", "15"], "expected NUM,SHIFT"),
    "leak text": (["--leak", "a,b"], "expected NUM,SHIFT"),
    "leak num too big": (["--leak", "17,4"], "the leak num must be in 0..2**shift = 16"),
    "leak negative": (["--leak=-1,4"], "the leak num must be in 0..2**shift"),
    "leak shift too big": (["--leak", "1,17"], "the leak shift must be in 0..16"),
    "learn leak without leak": (["--learn-leak"], "--learn-leak needs --leak"),
    "tsc leak": (["--coding", "tsc", "--T", "5", "--leak", "15,4"], "coding 'tsc' has no membrane dynamics"),
    "tsc reset zero": (["--coding", "tsc", "--T", "5", "--reset", "zero"], "coding 'tsc' has no membrane dynamics"),
    "stl leak": (["--coding", "stcb", "--grad", "stl", "--leak", "15,4"], "--grad stl models IF neurons"),
    "stl reset zero": (["--coding", "stcb", "--grad", "stl", "--reset", "zero"], "--grad stl models IF neurons"),
    "scale unknown": (["--scale", "tensor"], "invalid choice: 'tensor'"),
    "augment too big": (["--augment", "9"], "--augment: expected a number of pixels from 0 to 4, got '9'"),
    "augment text": (["--augment", "x"], "expected a number of pixels"),
    "weight decay negative": (["--weight-decay=-0.1"], "expected a non-negative number"),
    "weight decay text": (["--weight-decay", "lots"], "expected a non-negative number"),
    "label smoothing one": (["--label-smoothing", "1"], "--label-smoothing: expected a label smoothing in [0, 1), got '1'"),
    "device unknown": (["--device", "tpu"], "expected cpu, cuda or cuda:N"),
    "device index text": (["--device", "cuda:x"], "expected cpu, cuda or cuda:N"),
}


@pytest.fixture(scope="module")
def no_torch(tmp_path_factory):
    """A PYTHONPATH entry whose ``torch`` refuses to import: the checks must all happen before."""
    d = tmp_path_factory.mktemp("notorch")
    (d / "torch").mkdir()
    (d / "torch" / "__init__.py").write_text("raise ImportError('torch imported before the options were checked')\n")
    return d


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_conv_options_exit_2(case, tmp_path, no_torch):
    args, msg = BAD[case]
    out = tmp_path / "m.npz"
    env = {**os.environ, "PYTHONPATH": f"{no_torch}{os.pathsep}{ROOT}"}
    p = subprocess.run([PY, "-m", "quant.train", *args, "--out", str(out)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2, p.stderr
    assert len(p.stderr.splitlines()) == 1 and "Traceback" not in p.stderr
    assert p.stderr.startswith("quant.train: error: ")
    assert msg in p.stderr, p.stderr
    assert p.stdout == ""
    assert list(tmp_path.iterdir()) == []


def test_good_options_do_reach_torch(tmp_path, no_torch):
    """The fake torch is what the rows above rely on: a valid command does get to the import."""
    env = {**os.environ, "PYTHONPATH": f"{no_torch}{os.pathsep}{ROOT}"}
    p = subprocess.run([PY, "-m", "quant.train", "--arch", "4c3-mp2-10", "--out", str(tmp_path / "m.npz")],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and "torch imported before the options were checked" in p.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_exits_2(tmp_path):
    p = subprocess.run([PY, "-m", "quant.train", "--arch", "4c3-10", "--device", "cuda", "--limit", "10",
                        "--out", str(tmp_path / "m.npz")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and len(p.stderr.splitlines()) == 1
    assert "CUDA is not available" in p.stderr
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------------
# tiny end-to-end train + export with conv layers, every coding
# ------------------------------------------------------------------------------------------------

E2E = {
    "rate": ["--coding", "rate", "--T", "3"],
    "rate direct bn": ["--coding", "rate", "--encoding", "direct", "--T", "1", "--readout", "membrane", "--bn"],
    "rate lif zero learned": ["--coding", "rate", "--T", "3", "--reset", "zero", "--leak", "14,4", "--learn-leak",
                              "--scale", "channel"],
    "stcb kernel": ["--coding", "stcb", "--T", "3", "--kernel", "2"],
    "stcb stl": ["--coding", "stcb", "--T", "3", "--grad", "stl"],
    "tsc": ["--coding", "tsc", "--T", "5", "--bn", "--augment", "1", "--weight-decay", "0.01",
            "--label-smoothing", "0.1"],
}


@pytest.mark.parametrize("case", sorted(E2E))
def test_tiny_conv_training_exports_exactly(case, tmp_path):
    out = tmp_path / "m.npz"
    argv = ["--arch", "4c3-mp2-6c3s2-10", "--epochs", "2", "--limit", "60", "--batch-size", "16", "--quiet",
            *E2E[case], "--out", str(out)]
    assert qtrain.main(argv) == 0
    m = json.loads(out.with_suffix(".json").read_text())
    assert m["golden_agreement"] == 1.0 and m["exact"] is True and m["first_mismatch"] is None
    assert m["golden_accuracy"] == m["quant_accuracy"] and m["test_samples"] == 60
    assert m["arch"] == "4c3-mp2-6c3s2-10" and m["hidden"] is None
    assert [l["kind"] for l in m["layers"]] == ["conv2d", "maxpool2d", "conv2d", "dense"]
    assert m["layers"][2]["out_shape"] == [6, 2, 2] and m["sizes"] == [64, 256, 64, 24, 10]
    model = golden.load_model(out)
    assert [l.kind for l in model.layers] == ["conv2d", "maxpool2d", "conv2d", "dense"]
    assert model.input_shape == (1, 8, 8)
    x, y = golden.datasets.load("digits", "test")
    assert float((golden.run(model, x[:60]).predictions == y[:60]).mean()) == m["golden_accuracy"]
    if "--leak" in E2E[case]:
        assert len(m["leaks"]) == 3 and all(l[1] == 4 and 0 <= l[0] <= 16 for l in m["leaks"])
        assert all(isinstance(s, list) for s in m["scales"][:-1]) and not isinstance(m["scales"][-1], list)
    if "--bn" in E2E[case]:
        assert m["bn"] is True and m["bn_frozen_epochs"] == 1


def test_conv_training_is_reproducible_and_resumable(tmp_path):
    argv = ["--arch", "4c3-mp2-10", "--T", "3", "--epochs", "2", "--limit", "50", "--bn", "--augment", "1",
            "--quiet"]
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    assert qtrain.main([*argv, "--out", str(a)]) == 0
    assert qtrain.main([*argv, "--out", str(b), "--stop-after", "1"]) == 0 and not b.exists()
    assert qtrain.main([*argv, "--out", str(b), "--resume"]) == 0
    assert a.read_bytes() == b.read_bytes()


# ------------------------------------------------------------------------------------------------
# quant.bench: the conv configurations
# ------------------------------------------------------------------------------------------------

def test_bench_conv_configs_parse_and_retarget(tmp_path):
    from quant import bench
    conv = [n for n in bench.CONFIGS if n.startswith("conv-")]
    assert conv == ["conv-rate-T8-w8", "conv-direct-T1-w8", "conv-tsc-T17-w8", "conv-stcb-T8-w8"]
    assert len(bench.CONFIGS) == 14 and all("--hidden" in a for n, a in bench.CONFIGS.items() if n not in conv)
    parser = qtrain.build_parser()
    for name in conv:
        a = parser.parse_args([*bench.CONFIGS[name], "--out", "m.npz"])
        assert a.arch == "16c3-mp2-32c3-10" and a.weight_bits == 8 and a.hidden is None
    rate = parser.parse_args([*bench.CONFIGS["conv-rate-T8-w8"], "--out", "m.npz"])
    stcb = parser.parse_args([*bench.CONFIGS["conv-stcb-T8-w8"], "--out", "m.npz"])
    assert {k: v for k, v in vars(rate).items() if k != "coding"} == {k: v for k, v in vars(stcb).items()
                                                                          if k != "coding"}
    assert (rate.coding, stcb.coding) == ("rate", "stcb")
    # the retarget check on a small trained-looking rate conv model
    torch.manual_seed(1)
    net = SpikingNet(build_arch("4c3-mp2-10", (1, 8, 8), 10), T=4, encoding="rate", input_max=16, readout="count",
                     weight_bits=8)
    with torch.no_grad():
        for t in net.threshold:
            t.mul_(0.4)
    golden.save_model(to_golden(net), tmp_path / "r.npz")
    assert bench.retarget_agreement(tmp_path / "r.npz") == 1.0


# ------------------------------------------------------------------------------------------------
# image datasets: tiny files in the real formats feed conv nets of their shape
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dataset,coding", [("mnist", "rate"), ("fashion-mnist", "tsc"), ("cifar10", "rate"),
                                            ("cifar10", "tsc")])
def test_conv_training_on_image_datasets(dataset, coding, tmp_path):
    from test_datasets import write_cifar_dir, write_mnist_dir
    data = tmp_path / "data"
    data.mkdir()
    (write_cifar_dir if dataset == "cifar10" else write_mnist_dir)(data)
    out = tmp_path / "m.npz"
    extra = ["--T", "5", "--bn"] if coding == "tsc" else ["--T", "2", "--encoding", "direct"]
    argv = ["--dataset", dataset, "--data-dir", str(data), "--arch", "3c3s2-mp2-10", "--coding", coding, *extra,
            "--epochs", "1", "--batch-size", "4", "--no-float-ref", "--quiet", "--out", str(out)]
    assert qtrain.main(argv) == 0
    m = json.loads(out.with_suffix(".json").read_text())
    shape = golden.datasets.input_shape(dataset)
    assert m["exact"] is True and m["golden_agreement"] == 1.0
    assert m["layers"][0]["in_shape"] == list(shape)
    assert m["layers"][1]["out_shape"] == [3, shape[1] // 4, shape[2] // 4]
    model = golden.load_model(out)
    assert model.input_shape == shape and model.layers[0].in_shape == shape
