"""quant.nir: NIR graphs in (post-training quantization) and out (export), golden half (issue 19).

Graphs are built with the ``nir`` API in the shapes snnTorch and Norse emit; SpikingJelly's own
exporter is exercised in tests/test_nir_sj.py. The float reference (``float_run``) is checked
against torch written out layer by layer, with dyadic weights so every float sum is exact.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import traceback
from pathlib import Path

import numpy as np
import pytest

nir = pytest.importorskip("nir")
torch = pytest.importorskip("torch")
import h5py  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import golden  # noqa: E402
from golden import Conv2d, Dense, MaxPool2d, Model, datasets  # noqa: E402
from golden.cli import guard  # noqa: E402
from quant import nir as qnir  # noqa: E402
from quant.nir_convert import CLIPS, PTQConfig, calibrate, float_run, leak_report, quantize, to_nir  # noqa: E402
from quant.nir_graph import plan, read_graph  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DT = 1e-4
X_TE, Y_TE = datasets.load("digits", "test")


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        guard("quant.nir", qnir.main, [str(a) for a in argv])
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def write(graph, path) -> Path:
    nir.write(path, graph)
    return Path(path)


def full(shape, v):
    return np.full(shape, float(v))


def if_node(shape, thr, r=1 / DT, v_reset=0.0):
    return nir.IF(r=full(shape, r), v_threshold=full(shape, thr), v_reset=full(shape, v_reset))


def lif_node(shape, tau, thr, r=None, v_leak=0.0, v_reset=0.0):
    return nir.LIF(tau=full(shape, tau), r=full(shape, tau / DT if r is None else r), v_leak=full(shape, v_leak),
                   v_threshold=full(shape, thr), v_reset=full(shape, v_reset))


def graph_of(input_shape, *named, edges=None):
    nodes = {"input": nir.Input(input_type={"input": np.array(input_shape)})}
    nodes.update(named)
    out = list(named[-1][1].output_type.values())[0]
    nodes["output"] = nir.Output(output_type={"output": np.array([1]) if out is None else np.array(out)})
    if edges is None:
        names = list(nodes)
        edges = list(zip(names[:-1], names[1:]))
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={}, type_check=False)


def dense_graph(rng, hidden=6, neuron=None):
    """Input [64] -> Affine -> IF (or ``neuron``) -> Affine -> Output: a membrane readout."""
    w1, w2 = rng.integers(-127, 128, (hidden, 64)) / 64.0, rng.integers(-127, 128, (10, hidden)) / 8.0
    w1[0, 0], w2[0, 0] = 127 / 64.0, -127 / 8.0          # max|W| = 127 units: scale 1/64 and 1/8
    return graph_of([64], ("fc1", nir.Affine(w1, rng.integers(-8, 8, hidden) / 64.0)),
                    ("sp1", neuron or if_node((hidden,), 20 / 64.0)),
                    ("fc2", nir.Affine(w2, rng.integers(-8, 8, 10) / 8.0)))


# ---------------------------------------------------------------------------------------------
# the mapping, exactly


def test_quantize_dyadic_graph_gives_the_expected_integers_and_float_equals_golden():
    rng = np.random.default_rng(0)
    g = dense_graph(rng)
    p = plan(g, dt=DT)
    assert [s.kind for s in p.stages] == ["dense", "dense"] and p.readout == "membrane"
    assert [s.nodes for s in p.stages] == [["fc1", "sp1"], ["fc2"]]
    cfg = PTQConfig(input_scale=1.0, T=4, weight_bits=8, input_max=16, input_shape=(64,))
    m = quantize(p, cfg)
    fc1, fc2 = g.nodes["fc1"], g.nodes["fc2"]
    l0, l1 = m.layers
    assert np.array_equal(l0.weight, fc1.weight * 64) and np.array_equal(l0.bias, fc1.bias * 64)
    assert np.array_equal(l0.threshold, np.full(6, 20)) and l0.reset == "zero" and l0.leak is None
    assert np.array_equal(l1.weight, fc2.weight * 8) and np.array_equal(l1.bias, fc2.bias * 8)
    assert (m.coding, m.encoding, m.readout, m.T, m.weight_bits) == ("rate", "direct", "membrane", 4, 8)
    # every float value is a small dyadic number: the float run is exact, and golden computes it
    f = float_run(p, X_TE, input_scale=1.0, T=4)
    r = golden.run(m, X_TE)
    assert np.array_equal(f["membranes"] * 8, r.membranes) and np.array_equal(f["predictions"], r.predictions)


def test_quantize_rounds_to_nearest_and_keeps_thresholds_positive():
    rng = np.random.default_rng(0)
    g = dense_graph(rng, neuron=if_node((6,), 20.4 / 64.0))
    g.nodes["fc1"].bias = np.array([0.6, -0.6, 1.4, -1.4, 2.5, 0.2]) / 64.0
    cfg = PTQConfig(input_scale=1.0, T=4, weight_bits=8, input_max=16, input_shape=(64,))
    m = quantize(plan(g, dt=DT), cfg)
    assert m.layers[0].bias.tolist() == [1, -1, 1, -1, 2, 0] and m.layers[0].threshold.tolist() == [20] * 6
    g = dense_graph(rng, neuron=if_node((6,), 0.2 / 64.0))
    assert quantize(plan(g, dt=DT), cfg).layers[0].threshold.tolist() == [1] * 6     # never 0


def test_calibrate_keeps_the_exact_scale_and_otherwise_picks_the_best_clip():
    rng = np.random.default_rng(0)
    cfg = PTQConfig(input_scale=1.0, T=4, weight_bits=8, input_max=16, input_shape=(64,))
    p = plan(dense_graph(rng), dt=DT)
    assert calibrate(p, cfg, X_TE[:100]) == ([1.0, 1.0], 1.0)
    # 3-bit weights: every candidate is tried, and the chosen clips agree at least as often as no clip
    cfg3 = PTQConfig(**{**cfg.__dict__, "weight_bits": 3})
    p = plan(dense_graph(np.random.default_rng(21)), dt=DT)
    x = X_TE[:200]
    clips, agree = calibrate(p, cfg3, x)
    ref = float_run(p, x, input_scale=1.0, T=4)["predictions"]
    got = lambda c: float((golden.run(quantize(p, cfg3, c), x).predictions == ref).mean())  # noqa: E731
    assert agree == got(clips) and all(agree >= got([clips[0], c]) for c in CLIPS)
    assert agree >= got([1.0, 1.0])


def test_float_run_in_batches_is_the_same_run():
    p = plan(dense_graph(np.random.default_rng(1)), dt=DT)
    a = float_run(p, X_TE, input_scale=1.0, T=3)
    b = float_run(p, X_TE, input_scale=1.0, T=3, batch_size=7)
    assert all(np.array_equal(a[k], b[k]) for k in ("predictions", "counts", "membranes"))
    assert a["membranes"].shape == (360, 10)


def test_a_malformed_node_is_refused_by_name():
    g = graph_of([64], ("fc", nir.Affine(np.ones((10, 64)), np.zeros(10))),
                 ("lif", nir.LIF(tau=np.array(["x"] * 10), r=full(10, 1), v_leak=full(10, 0), v_threshold=full(10, 1),
                                 v_reset=full(10, 0))))
    with pytest.raises(ValueError, match=r"^node 'lif' \(LIF\): malformed node: ValueError: could not convert"):
        plan(g, dt=DT)


def test_golden_limits_are_reported_at_the_node():
    """golden refuses the layer (padding 3 > K - 1); the message names the NIR node."""
    rng = np.random.default_rng(15)
    g = graph_of([1, 8, 8], ("conv", _conv(rng.normal(size=(2, 1, 3, 3)), padding=3)), ("sp", if_node((2, 12, 12), 1)),
                 ("fc", nir.Affine(rng.normal(size=(10, 288)), np.zeros(10))))
    cfg = PTQConfig(input_scale=1.0, T=2, weight_bits=8, input_max=16, input_shape=(1, 8, 8))
    with pytest.raises(ValueError, match=r"^node 'conv' \(layer 0\): padding must be an integer in 0\.\.2, got 3$"):
        quantize(plan(g, dt=DT), cfg)


def test_input_scale_multiplies_layer_0_weights_only():
    rng = np.random.default_rng(1)
    p = plan(dense_graph(rng), dt=DT)
    a = float_run(p, X_TE[:50], input_scale=0.5, T=3)
    p.stages[0].weight = p.stages[0].weight * 0.5
    b = float_run(p, X_TE[:50], input_scale=1.0, T=3)
    assert np.array_equal(a["membranes"], b["membranes"])


def test_if_gain_is_dt_times_r():
    """IF with r = 2/dt doubles the input of every step (v <- v + dt r I)."""
    rng = np.random.default_rng(2)
    p = plan(dense_graph(rng, neuron=if_node((6,), 20 / 64.0, r=2 / DT)), dt=DT)
    assert np.array_equal(p.stages[0].gain, np.full(6, 2.0)) and p.stages[0].decay is None
    cfg = PTQConfig(input_scale=1.0, T=4, weight_bits=8, input_max=16, input_shape=(64,))
    m = quantize(p, cfg)
    # the doubled weights reach 254/64: the scale doubles, so the threshold halves in integers
    assert int(m.layers[0].threshold[0]) == 10 and int(np.abs(m.layers[0].weight).max()) == 127


def test_lif_decay_and_gain_and_leak_error():
    rng = np.random.default_rng(3)
    # tau = 4 dt: a = 0.75 exactly; r = tau/dt: gain dt r / tau = 1 (snnTorch's convention)
    p = plan(dense_graph(rng, neuron=lif_node((6,), 4 * DT, 20 / 64.0)), dt=DT)
    st = p.stages[0]
    assert st.decay == 0.75 and np.allclose(st.gain, 1.0, rtol=0, atol=1e-12)
    cfg = PTQConfig(input_scale=1.0, T=4, weight_bits=8, input_max=16, input_shape=(64,))
    assert quantize(p, cfg).layers[0].leak == (192, 8)
    assert leak_report(p, cfg) == [{"layer": 0, "node": "sp1", "decay": 0.75, "leak": [192, 8], "decay_int": 0.75,
                                    "decay_error": 0.0, "tau_steps": 4.0, "tau_steps_int": 4.0}]
    # tau = 3 dt: a = 2/3, leak 171/256 at shift 8, 683/1024 at shift 10
    p = plan(dense_graph(rng, neuron=lif_node((6,), 3 * DT, 20 / 64.0)), dt=DT)
    rep = leak_report(p, cfg)[0]
    assert rep["leak"] == [171, 8] and rep["decay_error"] == pytest.approx(171 / 256 - 2 / 3, abs=1e-15)
    rep10 = leak_report(p, PTQConfig(**{**cfg.__dict__, "leak_shift": 10}))[0]
    assert rep10["leak"] == [683, 10]


def test_lif_float_run_is_the_euler_step():
    """v <- a v + g (W x + b), fire at v >= theta, reset to 0: written out by hand for one layer."""
    rng = np.random.default_rng(4)
    g = graph_of([64], ("fc", nir.Affine(rng.normal(size=(10, 64)), rng.normal(size=10))),
                 ("lif", lif_node((10,), 5 * DT, 1.5, r=2.0)))
    p = plan(g, dt=DT)
    x = X_TE[:40]
    f = float_run(p, x, input_scale=0.1, T=6)
    W, b = g.nodes["fc"].weight, g.nodes["fc"].bias
    cur = (x * 0.1) @ W.T + b
    a, gain = 1 - DT / (5 * DT), DT * 2.0 / (5 * DT)
    v, counts = np.zeros((40, 10)), np.zeros((40, 10))
    for _ in range(6):
        v = a * v + gain * cur
        s = v >= 1.5
        counts += s
        v[s] = 0
    assert np.allclose(f["membranes"], v, rtol=0, atol=1e-12) and np.array_equal(f["counts"], counts)
    key = counts * 1e6 + v
    assert np.array_equal(f["predictions"], np.argmax(key, axis=1)) and p.readout == "count"


def _conv_if(x, w, b, thr, T, padding=1, stride=1):
    """Torch reference: a conv + IF(reset 0) layer over T steps of spikes x (T, B, C, H, W)."""
    v, out = None, []
    for t in range(x.shape[0]):
        cur = F.conv2d(x[t], w, b, stride=stride, padding=padding)
        v = cur if v is None else v + cur
        s = (v >= thr).double()
        v = v * (1 - s)
        out.append(s)
    return torch.stack(out)


def _dyadic(rng, shape, den):
    return torch.tensor(rng.integers(-16, 17, shape) / den, dtype=torch.float64)


@pytest.mark.parametrize("pool", ["AvgPool2d", "SumPool2d"])
def test_pool_folds_into_the_following_dense_layer(pool):
    rng = np.random.default_rng(5)
    w1, b1 = _dyadic(rng, (3, 1, 3, 3), 4), _dyadic(rng, (3,), 4)
    w2, b2 = _dyadic(rng, (10, 48), 8), _dyadic(rng, (10,), 8)
    node = getattr(nir, pool)(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0]))
    g = graph_of([1, 8, 8], ("conv", nir.Conv2d((8, 8), w1.numpy(), 1, 1, 1, 1, b1.numpy())),
                 ("if1", if_node((3, 8, 8), 1.0)), ("pool", node),
                 ("flat", nir.Flatten(input_type={"input": np.array([3, 4, 4])}, start_dim=0)),
                 ("fc", nir.Affine(w2.numpy(), b2.numpy())))
    p = plan(g, dt=DT)
    assert [(s.kind, s.in_shape, s.out_shape) for s in p.stages] == [("conv2d", (1, 8, 8), (3, 8, 8)),
                                                                       ("dense", (192,), (10,))]
    assert p.stages[1].nodes == ["pool", "flat", "fc"]
    x = X_TE[:30]
    xs = torch.tensor(x * 0.25, dtype=torch.float64).reshape(1, 30, 1, 8, 8).repeat(3, 1, 1, 1, 1)
    s1 = _conv_if(xs, w1, b1, 1.0, 3)
    pooled = F.avg_pool2d(s1.reshape(90, 3, 8, 8), 2) * (1 if pool == "AvgPool2d" else 4)
    ref = (pooled.reshape(3, 30, 48) @ w2.T + b2).sum(0)
    f = float_run(p, x, input_scale=0.25, T=3)
    assert np.array_equal(f["membranes"], ref.numpy())


def test_pool_folds_into_the_following_conv_and_a_pool_before_a_neuron_is_a_fixed_kernel_conv():
    rng = np.random.default_rng(6)
    w1, b1 = _dyadic(rng, (2, 1, 3, 3), 4), _dyadic(rng, (2,), 4)
    w2, b2 = _dyadic(rng, (3, 2, 3, 3), 4), _dyadic(rng, (3,), 8)
    w3, b3 = _dyadic(rng, (10, 12), 8), _dyadic(rng, (10,), 8)
    pool = lambda: nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0]))  # noqa: E731
    g = graph_of([1, 8, 8], ("c1", nir.Conv2d((8, 8), w1.numpy(), 1, 1, 1, 1, b1.numpy())), ("n1", if_node((2, 8, 8), 1.0)),
                 ("p1", pool()), ("c2", nir.Conv2d(None, w2.numpy(), 1, 1, 1, 1, b2.numpy())), ("n2", if_node((3, 4, 4), 1.0)),
                 ("p2", nir.AvgPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0]))),
                 ("n3", if_node((3, 2, 2), 0.5)), ("fl", nir.Flatten(input_type={"input": None}, start_dim=0)),
                 ("fc", nir.Affine(w3.numpy(), b3.numpy())))
    p = plan(g, dt=DT)
    c2, p2 = p.stages[1], p.stages[2]
    assert (c2.kind, c2.weight.shape, c2.stride, c2.padding, c2.in_shape, c2.out_shape) == \
        ("conv2d", (3, 2, 6, 6), 2, 2, (2, 8, 8), (3, 4, 4))
    assert (p2.kind, p2.node, p2.weight.shape, p2.stride, p2.padding) == ("conv2d", "p2", (3, 3, 2, 2), 2, 0)
    assert np.array_equal(p2.weight[:, :, 0, 0], np.eye(3) / 4) and p2.nodes == ["p2", "n3"]
    x = X_TE[:25]
    xs = torch.tensor(x * 0.25, dtype=torch.float64).reshape(1, 25, 1, 8, 8).repeat(4, 1, 1, 1, 1)
    s1 = _conv_if(xs, w1, b1, 1.0, 4)
    s1p = (F.avg_pool2d(s1.reshape(100, 2, 8, 8), 2) * 4).reshape(4, 25, 2, 4, 4)
    s2 = _conv_if(s1p, w2, b2, 1.0, 4)
    cur3 = F.avg_pool2d(s2.reshape(100, 3, 4, 4), 2).reshape(4, 25, 3, 2, 2)
    v, s3 = torch.zeros(25, 3, 2, 2, dtype=torch.float64), []
    for t in range(4):
        v = v + cur3[t]
        s = (v >= 0.5).double()
        v = v * (1 - s)
        s3.append(s.reshape(25, 12))
    ref = sum(s @ w3.T + b3 for s in s3)
    f = float_run(p, x, input_scale=0.25, T=4)
    assert np.array_equal(f["membranes"], ref.numpy())
    # and the integer model runs in golden with those layer shapes
    m = quantize(p, PTQConfig(input_scale=0.25, T=4, weight_bits=8, input_max=16, input_shape=(1, 8, 8)))
    assert [(l.kind, l.kernel if l.kind == "conv2d" else None) for l in m.layers] == \
        [("conv2d", 3), ("conv2d", 6), ("conv2d", 2), ("dense", None)]


# ---------------------------------------------------------------------------------------------
# graphs in the shapes other frameworks emit


def test_snntorch_shaped_graph_scalar_parameters_and_avgpool():
    """snnTorch's exporter: Conv2d with input_shape None, Leaky as LIF with scalar (0-d) parameters,
    tau = dt/(1-beta), r = tau/dt, AvgPool2d with (0, 0) padding, Flatten with no input_type."""
    rng = np.random.default_rng(7)
    beta, tau = 0.875, DT / (1 - 0.875)
    lif = lambda: nir.LIF(tau=np.array(tau), r=np.array(tau / DT), v_leak=np.array(0.0),  # noqa: E731
                          v_threshold=np.array(1.0), v_reset=np.array(0.0))
    g = graph_of([1, 8, 8], ("0", nir.Conv2d(None, rng.normal(size=(4, 1, 3, 3)), (1, 1), (1, 1), (1, 1), 1,
                                             rng.normal(size=4))),
                 ("1", lif()), ("2", nir.AvgPool2d(kernel_size=(2, 2), stride=(2, 2), padding=(0, 0))),
                 ("3", nir.Flatten(input_type=None, start_dim=0, end_dim=-1)),
                 ("4", nir.Affine(rng.normal(size=(10, 64)), rng.normal(size=10))), ("5", lif()))
    p = plan(g, dt=DT)
    assert [s.decay for s in p.stages] == pytest.approx([beta, beta], abs=1e-12)
    assert all(np.allclose(s.gain, 1.0, rtol=0, atol=1e-9) for s in p.stages) and p.readout == "count"
    cfg = PTQConfig(input_scale=0.0625, T=4, weight_bits=8, input_max=16, input_shape=(1, 8, 8))
    m = quantize(p, cfg)
    assert [l.leak for l in m.layers] == [(224, 8), (224, 8)]
    assert m.layers[1].weight.shape == (10, 256)


def test_norse_shaped_graph_dt_gain_and_li_readout(tmp_path, capsys):
    """Norse's exporter: LIFBoxCell as LIF with tau = 1/tau_mem_inv and r = 1, LIBoxCell as LI; with
    Norse's dt = 1e-3 and tau_mem_inv = 100 the step is v <- 0.9 v + 0.1 I."""
    rng = np.random.default_rng(8)
    w1 = rng.normal(size=(16, 64))
    g = graph_of([64], ("fc1", nir.Affine(w1, np.zeros(16))),
                 ("lif", nir.LIF(tau=full(16, 0.01), r=full(16, 1), v_leak=full(16, 0), v_threshold=full(16, 1.0),
                                 v_reset=full(16, 0))),
                 ("fc2", nir.Affine(rng.normal(size=(10, 16)), np.zeros(10))),
                 ("li", nir.LI(tau=full(10, 0.02), r=full(10, 1), v_leak=full(10, 0))))
    p = plan(g, dt=1e-3)
    assert p.stages[0].decay == pytest.approx(0.9, abs=1e-12) and np.allclose(p.stages[0].gain, 0.1)
    assert p.stages[1].decay == pytest.approx(0.95, abs=1e-12) and not p.stages[1].fire
    assert p.readout == "membrane"
    src = write(g, tmp_path / "norse.nir")
    code, out, err = run_cli(capsys, "import", src, "--dataset", "digits", "--input-scale", "0.0625", "--T", "5",
                             "--dt", "1e-3", "--out", tmp_path / "m.npz")
    assert code == 0, err
    m = golden.load_model(tmp_path / "m.npz")
    assert [l.leak for l in m.layers] == [(230, 8), (243, 8)] and m.readout == "membrane"
    met = json.loads((tmp_path / "m.json").read_text())
    assert [r["leak"] for r in met["leak"]] == [[230, 8], [243, 8]]
    assert met["dt"] == 1e-3 and met["test_samples"] == 360 and met["readout"] == "membrane"
    assert "layer 0 (lif): decay 1 - dt/tau = 0.900000 -> leak [230, 8] = 0.898438, error -1.56e-03" in out


def test_snntorch_live_round_trip(tmp_path, capsys):
    """snnTorch's own exporter, when it works: dense Leaky network -> NIR -> integer model."""
    snn = pytest.importorskip("snntorch")
    from snntorch.export_nir import export_to_nir
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 16), snn.Leaky(beta=0.875, init_hidden=True, reset_mechanism="zero"),
                              torch.nn.Linear(16, 10),
                              snn.Leaky(beta=0.875, init_hidden=True, output=True, reset_mechanism="zero"))
    try:
        graph = export_to_nir(net, torch.zeros(1, 64))
    except Exception as e:  # noqa: BLE001
        if any(f.name == "infer_types" for f in traceback.extract_tb(e.__traceback__)):
            pytest.skip(f"snntorch.export_nir.export_to_nir fails in nir.NIRGraph.infer_types (nir "
                        f"{nir.__version__}): {type(e).__name__}: {e}")
        raise
    src = write(graph, tmp_path / "snn.nir")
    code, out, err = run_cli(capsys, "import", src, "--dataset", "digits", "--input-scale", "0.0625", "--T", "4",
                             "--out", tmp_path / "m.npz")
    assert code == 0, err
    m = golden.load_model(tmp_path / "m.npz")
    assert [l.leak for l in m.layers] == [(224, 8), (224, 8)] and m.readout == "count"


# ---------------------------------------------------------------------------------------------
# refusals: one line naming the node and the reason, exit 2, nothing written


def _conv(w, **kw):
    args = dict(input_shape=(8, 8), weight=w, stride=1, padding=1, dilation=1, groups=1, bias=np.zeros(w.shape[0]))
    args.update(kw)
    return nir.Conv2d(**args)


def _refusals():
    rng = np.random.default_rng(9)
    fc = lambda n_in=64, n=10: nir.Affine(rng.normal(size=(n, n_in)), np.zeros(n))  # noqa: E731
    w = rng.normal(size=(2, 1, 3, 3))
    cuba = nir.CubaLIF(tau_syn=full(10, 2e-4), tau_mem=full(10, 4e-4), r=full(10, 4), v_leak=full(10, 0),
                       v_threshold=full(10, 1), v_reset=full(10, 0), w_in=full(10, 2))
    rec = {"input": nir.Input(input_type={"input": np.array([64])}), "fc": fc(64, 10),
           "lif": lif_node((10,), 4 * DT, 1.0), "w_rec": nir.Linear(rng.normal(size=(10, 10))),
           "output": nir.Output(output_type={"output": np.array([10])})}
    skip = {"input": nir.Input(input_type={"input": np.array([64])}), "fc1": fc(64, 64), "if1": if_node((64,), 1.0),
            "fc2": fc(64, 10), "output": nir.Output(output_type={"output": np.array([10])})}
    two_in = {"in_a": nir.Input(input_type={"input": np.array([64])}),
              "in_b": nir.Input(input_type={"input": np.array([64])}), "fc": fc(),
              "output": nir.Output(output_type={"output": np.array([10])})}
    inner = nir.NIRGraph(nodes={"i": nir.Input(input_type={"input": np.array([10])}), "l": lif_node((10,), 4 * DT, 1.0),
                                "o": nir.Output(output_type={"output": np.array([10])})},
                         edges=[("i", "l"), ("l", "o")], metadata={}, type_check=False)
    G = nir.NIRGraph
    return {
        "CubaLIF": (graph_of([64], ("fc", fc()), ("syn", cuba)), "node 'syn' (CubaLIF): a current-based LIF"),
        "dilation": (graph_of([1, 8, 8], ("conv", _conv(w, dilation=2, padding=2)), ("sp", if_node((2, 8, 8), 1))),
                     "node 'conv' (Conv2d): dilation [2, 2] is not supported"),
        "groups": (graph_of([1, 8, 8], ("conv", _conv(w, groups=2)), ("sp", if_node((2, 8, 8), 1))),
                   "node 'conv' (Conv2d): groups=2: grouped (depthwise) convolution is not supported"),
        "v_leak": (graph_of([64], ("fc", fc()), ("lif", lif_node((10,), 4 * DT, 1.0, v_leak=0.25))),
                   "node 'lif' (LIF): v_leak=0.25: the core's leak decays towards 0"),
        "v_reset": (graph_of([64], ("fc", fc()), ("sp", if_node((10,), 1.0, v_reset=-0.5))),
                    "node 'sp' (IF): v_reset=-0.5: the core resets to 0 (reset zero)"),
        "recurrent": (G(nodes=rec, edges=[("input", "fc"), ("fc", "lif"), ("lif", "w_rec"), ("w_rec", "lif"),
                                          ("lif", "output")], metadata={}, type_check=False),
                      "node 'lif' (LIF): recurrent edge from 'w_rec'"),
        "skip connection": (G(nodes=skip, edges=[("input", "fc1"), ("fc1", "if1"), ("if1", "fc2"), ("input", "fc2"),
                                                 ("fc2", "output")], metadata={}, type_check=False),
                            "node 'fc2' (Affine): it has 2 inputs ('if1', 'input'): a skip connection or merge, not "
                            "a chain"),
        "two inputs": (G(nodes=two_in, edges=[("in_a", "fc"), ("in_b", "fc"), ("fc", "output")], metadata={},
                         type_check=False), "the graph has 2 Input nodes ('in_a', 'in_b')"),
        "nested graph": (graph_of([64], ("fc", fc()), ("block", inner)), "node 'block' (NIRGraph): a nested graph"),
        "dense shape": (graph_of([64], ("fc", fc(63))), "node 'fc' (Affine): weight reads 63 inputs but receives "
                        "[64] = 64 values (shape mismatch)"),
        "neuron shape": (graph_of([64], ("fc", fc()), ("sp", if_node((12,), 1.0))),
                         "node 'sp' (IF): r has shape [12] but the neuron receives [10] (shape mismatch)"),
        "input vs dataset": (graph_of([1, 28, 28], ("fl", nir.Flatten(input_type={"input": np.array([1, 28, 28])},
                                                                       start_dim=0)), ("fc", fc(784))),
                             "the graph's Input has shape [1, 28, 28] but digits samples are [1, 8, 8] (shape "
                             "mismatch)"),
        "conv last": (graph_of([1, 8, 8], ("conv", _conv(w)), ("sp", if_node((2, 8, 8), 1))),
                      "node 'conv' (Conv2d): the last layer must be dense"),
        "tau varies": (graph_of([64], ("fc", fc()), ("lif", nir.LIF(tau=np.linspace(2e-4, 5e-4, 10), r=full(10, 1),
                                                                    v_leak=full(10, 0), v_threshold=full(10, 1),
                                                                    v_reset=full(10, 0)))),
                       "node 'lif' (LIF): tau varies across neurons"),
    }


REFUSALS = _refusals()


@pytest.mark.parametrize("case", list(REFUSALS))
def test_import_refuses_with_one_line_naming_the_node(tmp_path, capsys, case):
    graph, expected = REFUSALS[case]
    src = write(graph, tmp_path / "g.nir")
    out = tmp_path / "m.npz"
    code, stdout, err = run_cli(capsys, "import", src, "--dataset", "digits", "--input-scale", "0.0625", "--T", "4",
                                "--out", out)
    assert code == 2 and stdout == ""
    assert err.startswith(f"quant.nir: error: {src}: {expected}"), err
    assert err.count("\n") == 1 and err.endswith("\n")
    assert sorted(os.listdir(tmp_path)) == ["g.nir"]


def test_maxpool_node_is_refused_by_name(tmp_path, capsys):
    """NIR has no MaxPool node: a file carrying one (an exporter extension) is refused before nir.read."""
    rng = np.random.default_rng(10)
    g = graph_of([1, 8, 8], ("conv", _conv(rng.normal(size=(2, 1, 3, 3)))), ("sp", if_node((2, 8, 8), 1)),
                 ("mp", nir.AvgPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]),
                                      padding=np.array([0, 0]))),
                 ("fc", nir.Affine(rng.normal(size=(10, 32)), np.zeros(10))))
    src = write(g, tmp_path / "g.nir")
    with h5py.File(src, "r+") as f:
        del f["node/nodes/mp/type"]
        f["node/nodes/mp"].create_dataset("type", data="MaxPool2d", dtype=h5py.string_dtype())
    code, stdout, err = run_cli(capsys, "import", src, "--dataset", "digits", "--input-scale", "1", "--T", "2",
                                "--out", tmp_path / "m.npz")
    assert code == 2 and err.startswith(f"quant.nir: error: {src}: node 'mp' (MaxPool2d): max pooling is not a NIR "
                                        "node") and err.count("\n") == 1
    assert sorted(os.listdir(tmp_path)) == ["g.nir"]


@pytest.mark.parametrize("argv, expected", [
    (["import", "{src}", "--input-scale", "1", "--T", "4"], "--dataset: required to quantize"),
    (["import", "{src}", "--dataset", "digits", "--T", "4"], "--input-scale: required to quantize"),
    (["import", "{src}", "--dataset", "digits", "--input-scale", "0", "--T", "4"],
     "--input-scale: expected a positive number, got '0'"),
    (["import", "{src}", "--dataset", "digits", "--input-scale", "1", "--T", "0"],
     "--T: expected a number of time steps from 1 to 1024, got '0'"),
    (["import", "{src}", "--dataset", "digits", "--input-scale", "1", "--T", "2", "--weight-bits", "17"],
     "--weight-bits: expected a weight width from 2 to 16 bits, got '17'"),
    (["import", "{src}", "--dataset", "digits", "--input-scale", "1", "--T", "2", "--dt", "nan"],
     "--dt: expected a positive time step in seconds, got 'nan'"),
    (["import", "{missing}", "--dataset", "digits", "--input-scale", "1", "--T", "2"], "SRC.nir: {missing}: no such"),
    (["import", "{junk}", "--dataset", "digits", "--input-scale", "1", "--T", "2"], "{junk}: not a readable NIR"),
    (["export", "{src}"], "--out: required option missing"),
    (["import", "{src}", "--dataset", "nope", "--input-scale", "1", "--T", "2"], "--dataset: unknown dataset 'nope'"),
    (["frob"], "COMMAND: invalid choice: 'frob'"),
])
def test_bad_options_and_files(tmp_path, capsys, argv, expected):
    src = write(dense_graph(np.random.default_rng(11)), tmp_path / "g.nir")
    junk = tmp_path / "junk.nir"
    junk.write_text("not hdf5")
    paths = dict(src=src, missing=tmp_path / "nope.nir", junk=junk)
    argv = [a.format(**paths) for a in argv]
    if argv[0] == "import":
        argv += ["--out", str(tmp_path / "m.npz")]
    code, stdout, err = run_cli(capsys, *argv)
    assert code == 2 and err.startswith("quant.nir: error: " + expected.format(**paths)), err
    assert err.count("\n") == 1 and not (tmp_path / "m.npz").exists() and not (tmp_path / "m.json").exists()


# ---------------------------------------------------------------------------------------------
# export and the exact round trip


def _our_model(readout="count") -> Model:
    rng = np.random.default_rng(12)
    conv = Conv2d(rng.integers(-60, 60, (4, 1, 3, 3)), rng.integers(-5, 5, 4), rng.integers(30, 90, 4),
                  rng.integers(-9, 9, 4), in_shape=(1, 8, 8), padding=1, reset="subtract", leak=(200, 8))
    d1 = Dense(rng.integers(-40, 40, (12, 256)), rng.integers(-3, 3, 12), rng.integers(20, 60, 12), 0, reset="zero")
    d2 = Dense(rng.integers(-40, 40, (10, 12)), 0, rng.integers(5, 30, 10), rng.integers(-4, 4, 10),
               leak=(15, 4) if readout == "membrane" else None)
    return Model([conv, d1, d2], T=6, input_max=16, readout=readout, encoding="rate", weight_bits=8)


@pytest.mark.parametrize("readout", ["count", "membrane"])
def test_export_then_import_is_exact(tmp_path, capsys, readout):
    m = _our_model(readout)
    golden.save_model(m, tmp_path / "m.npz")
    code, out, err = run_cli(capsys, "export", tmp_path / "m.npz", "--out", tmp_path / "f.nir")
    assert code == 0, err
    warn = err.splitlines()
    assert warn[0] == ("quant.nir: warning: layer 0 resets by subtraction, which NIR cannot express (IF/LIF reset to "
                       "v_reset); written as reset to 0 and marked reset='subtract' in the node metadata")
    assert any(w.startswith("quant.nir: warning: layer 0 starts from a non-zero v_init") for w in warn)
    g = read_graph(tmp_path / "f.nir")
    kinds = {k: type(n).__name__ for k, n in g.nodes.items()}
    last = ["LI"] if readout == "membrane" else ["IF"]
    assert sorted(kinds.values()) == sorted(["Input", "Conv2d", "LIF", "Flatten", "Affine", "IF", "Affine", *last,
                                             "Output"])
    assert g.nodes["lif0"].metadata["reset"] == "subtract" and g.nodes["if1"].metadata["reset"] == "zero"
    code, out, err = run_cli(capsys, "import", tmp_path / "f.nir", "--out", tmp_path / "m2.npz")
    assert code == 0 and err == "", err
    m2 = golden.load_model(tmp_path / "m2.npz")
    assert m2 == m
    a, b = golden.run(m, X_TE, record=True), golden.run(m2, X_TE, record=True)
    assert np.array_equal(a.predictions, b.predictions) and np.array_equal(a.membranes, b.membranes)
    assert all(np.array_equal(u, v) for u, v in zip(a.v_final, b.v_final))
    assert all(np.array_equal(u, v) for u, v in zip(a.spikes, b.spikes))
    assert json.loads((tmp_path / "m2.json").read_text())["exact"] is True


def test_export_of_a_zero_reset_if_model_means_the_same_to_any_nir_reader(tmp_path, capsys):
    """Hard reset, no v_init, direct encoding: stripped of our metadata the graph is a plain float graph;
    its float run equals golden, and quantizing it (scale 1: every max|W| is 127) gives the same model."""
    rng = np.random.default_rng(13)
    w1, w2 = rng.integers(-127, 128, (4, 1, 3, 3)), rng.integers(-127, 128, (10, 256))
    w1[0, 0, 0, 0], w2[0, 0] = 127, -127
    m = Model([Conv2d(w1, rng.integers(-9, 9, 4), 150, 0, in_shape=(1, 8, 8), padding=1, reset="zero"),
               Dense(w2, rng.integers(-9, 9, 10), 1, 0, reset="zero")], T=4, input_max=16, encoding="direct",
              readout="membrane")
    g = to_nir(m)
    g.metadata = {}
    for n in g.nodes.values():
        n.metadata = {}
    src = write(g, tmp_path / "plain.nir")
    p = plan(read_graph(src), dt=DT)
    f = float_run(p, X_TE, input_scale=1.0, T=4)
    r = golden.run(m, X_TE)
    assert np.array_equal(f["membranes"], r.membranes) and np.array_equal(f["predictions"], r.predictions)
    code, out, err = run_cli(capsys, "import", src, "--dataset", "digits", "--input-scale", "1", "--T", "4",
                             "--out", tmp_path / "m2.npz")
    assert code == 0, err
    assert golden.load_model(tmp_path / "m2.npz").layers == m.layers
    met = json.loads((tmp_path / "m2.json").read_text())
    assert met["agreement"] == 1.0 and met["source_accuracy"] == met["integer_accuracy"]


@pytest.mark.parametrize("which, expected", [
    ("tsc", "coding 'tsc' is an integer ANN in time"),
    ("maxpool", "layer 1: maxpool2d has no NIR node"),
    ("kernel", "layer 0: the STEB kernel h=[2, -1] has no NIR node"),
])
def test_export_refuses_what_nir_cannot_carry(tmp_path, capsys, which, expected):
    rng = np.random.default_rng(14)
    w1, w2 = rng.integers(-20, 30, (4, 1, 3, 3)), rng.integers(-20, 20, (10, 64))
    if which == "tsc":
        m = Model([Dense(w2, 0, 40, 0)], coding="tsc", T=5, encoding="tsc", input_max=16, readout="membrane")
    elif which == "maxpool":
        m = Model([Conv2d(w1, 1, 60, 0, in_shape=(1, 8, 8), padding=1), MaxPool2d(2, in_shape=(4, 8, 8)),
                   Dense(w2, 0, 40, 0)], T=4, input_max=16)
    else:
        m = Model([Dense(w2, 0, 40, 0, [2, -1])], coding="stcb", T=4, input_max=16)
    golden.save_model(m, tmp_path / "m.npz")
    code, out, err = run_cli(capsys, "export", tmp_path / "m.npz", "--out", tmp_path / "f.nir")
    assert code == 2 and err.startswith(f"quant.nir: error: {tmp_path / 'm.npz'}: {expected}"), err
    assert err.count("\n") == 1
    assert not (tmp_path / "f.nir").exists()


def test_metadata_graph_refuses_quantization_options(tmp_path, capsys):
    golden.save_model(_our_model(), tmp_path / "m.npz")
    run_cli(capsys, "export", tmp_path / "m.npz", "--out", tmp_path / "f.nir")
    code, out, err = run_cli(capsys, "import", tmp_path / "f.nir", "--T", "4", "--out", tmp_path / "m2.npz")
    assert code == 2 and err.startswith(f"quant.nir: error: --T: {tmp_path / 'f.nir'} carries its integer model")
    assert not (tmp_path / "m2.npz").exists()


def test_edited_export_is_refused(tmp_path, capsys):
    """A weight made non-integer after export contradicts the integer metadata."""
    golden.save_model(_our_model(), tmp_path / "m.npz")
    run_cli(capsys, "export", tmp_path / "m.npz", "--out", tmp_path / "f.nir")
    with h5py.File(tmp_path / "f.nir", "r+") as f:
        w = f["node/nodes/affine1/weight"]
        arr = w[()]
        arr[0, 0] += 0.5
        w[...] = arr
    code, out, err = run_cli(capsys, "import", tmp_path / "f.nir", "--out", tmp_path / "m2.npz")
    assert code == 2 and err.startswith(f"quant.nir: error: {tmp_path / 'f.nir'}: node 'affine1': weight holds "
                                        "non-integers")
    assert not (tmp_path / "m2.npz").exists()


def test_module_entry_point(tmp_path):
    src = write(REFUSALS["CubaLIF"][0], tmp_path / "g.nir")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-m", "quant.nir", "import", str(src), "--dataset", "digits", "--input-scale",
                        "1", "--T", "2", "--out", str(tmp_path / "m.npz")], capture_output=True, text=True, env=env,
                       cwd=ROOT, timeout=300)
    assert r.returncode == 2 and r.stderr.startswith(f"quant.nir: error: {src}: node 'syn' (CubaLIF)")
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
