"""SpikingJelly as a real client of quant.nir (issue 19): train a small digits conv network here,
export it with SpikingJelly's own ``export_to_nir``, import it, and compare in golden and on the RTL.

conv + ``IFNode(v_reset=0)`` + AvgPool2d + Linear (and the same with ``LIFNode(tau=3)``), multi-step,
T=4, the input ``x / 16`` every step (direct encoding); the recipe is tests/nir_sj_nets.py, which
``make nir-sj`` runs on the whole test split. Training takes a few seconds per network.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nir = pytest.importorskip("nir")
pytest.importorskip("nirtorch", reason="SpikingJelly's NIR exporter imports nirtorch (make setup installs it)")
sj = pytest.importorskip("spikingjelly.activation_based")
from spikingjelly.activation_based import functional, layer  # noqa: E402

import golden  # noqa: E402
from golden import datasets  # noqa: E402
from golden.cli import guard  # noqa: E402
from quant import nir as qnir  # noqa: E402
from quant.nir_convert import float_run  # noqa: E402
from quant.nir_graph import plan, read_graph  # noqa: E402

from nir_sj_nets import SCALE, T, export, neuron_node, predict, train, trained_conv_net  # noqa: E402


def run_cli(capsys, *argv):
    with pytest.raises(SystemExit) as e:
        guard("quant.nir", qnir.main, [str(a) for a in argv])
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


@pytest.fixture(scope="module", params=["if", "lif"])
def trained(request, tmp_path_factory):
    """A trained SpikingJelly network (tests/nir_sj_nets.py), its own test predictions (float64), and its
    exported graph."""
    x_te, y_te = datasets.load("digits", "test")
    net = trained_conv_net(request.param)
    pred = predict(net, x_te)
    d = tmp_path_factory.mktemp(request.param)
    src = d / "sj.nir"
    export(net, src)
    return dict(kind=request.param, net=net, pred=pred, acc=float((pred == y_te).mean()), src=src, dir=d,
                x=x_te, y=y_te)


def test_spikingjelly_export_is_read_as_conv_then_dense(trained):
    g = read_graph(trained["src"])
    p = plan(g, dt=1e-4)
    kinds = [(s.kind, s.neuron_type, s.in_shape, s.out_shape) for s in p.stages]
    neuron_type = "IF" if trained["kind"] == "if" else "LIF"
    assert kinds == [("conv2d", neuron_type, (1, 8, 8), (8, 8, 8)), ("dense", None, (512,), (10,))]
    assert p.readout == "membrane"
    if trained["kind"] == "lif":
        # SpikingJelly LIF(tau=3, decay_input=True): v <- v + (x - v)/3, i.e. decay 2/3 and gain 1/3
        assert p.stages[0].decay == pytest.approx(2 / 3, abs=1e-12)
        assert np.allclose(p.stages[0].gain, 1 / 3, rtol=0, atol=1e-12)
    else:
        assert p.stages[0].decay is None and np.allclose(p.stages[0].gain, 1.0, rtol=0, atol=1e-9)


def test_float_run_predicts_what_spikingjelly_predicts(trained):
    """The graph run here in float64 is SpikingJelly's own network, sample by sample."""
    p = plan(read_graph(trained["src"]), dt=1e-4)
    f = float_run(p, trained["x"], input_scale=SCALE, T=T)
    assert np.array_equal(f["predictions"], trained["pred"])


def test_import_golden_within_one_point_and_round_trip_exact(trained, capsys):
    d, src = trained["dir"], trained["src"]
    code, out, err = run_cli(capsys, "import", src, "--dataset", "digits", "--input-scale", "0.0625", "--T", T,
                             "--weight-bits", "8", "--out", d / "m.npz")
    assert code == 0, err
    met = json.loads((d / "m.json").read_text())
    m = golden.load_model(d / "m.npz")
    r = golden.run(m, trained["x"])
    golden_acc = float((r.predictions == trained["y"]).mean())
    assert met["integer_accuracy"] == golden_acc and met["source_accuracy"] == trained["acc"]
    assert met["agreement"] == float((r.predictions == trained["pred"]).mean())
    assert abs(golden_acc - trained["acc"]) <= 0.01, (golden_acc, trained["acc"])
    assert (m.coding, m.encoding, m.readout, m.T) == ("rate", "direct", "membrane", T)
    assert [l.kind for l in m.layers] == ["conv2d", "dense"] and m.layers[0].reset == "zero"
    if trained["kind"] == "lif":
        assert met["leak"] == [{"layer": 0, "node": "_1", "decay": pytest.approx(2 / 3, abs=1e-12), "leak": [171, 8],
                                "decay_int": 171 / 256, "decay_error": pytest.approx(171 / 256 - 2 / 3, abs=1e-12),
                                "tau_steps": pytest.approx(3.0, abs=1e-9), "tau_steps_int": 256 / 85}]
        assert "layer 0 (_1): decay 1 - dt/tau = 0.666667 -> leak [171, 8] = 0.667969, error +1.30e-03" in out
        assert m.layers[0].leak == (171, 8)
    else:
        assert met["leak"] == [] and m.layers[0].leak is None
    # export then import: the same integer model, the same outputs on every sample
    code, _, err = run_cli(capsys, "export", d / "m.npz", "--out", d / "f.nir")
    assert code == 0 and err == "", err            # reset zero, v_init 0, direct encoding: nothing to warn
    code, _, err = run_cli(capsys, "import", d / "f.nir", "--out", d / "m2.npz")
    assert code == 0, err
    m2 = golden.load_model(d / "m2.npz")
    assert m2 == m
    r2 = golden.run(m2, trained["x"], record=True)
    r = golden.run(m, trained["x"], record=True)
    assert np.array_equal(r2.predictions, r.predictions) and np.array_equal(r2.membranes, r.membranes)
    assert all(np.array_equal(a, b) for a, b in zip(r.v_final, r2.v_final))


def test_conv_import_and_its_round_trip_run_exactly_on_the_rtl(trained, tmp_path, capsys):
    """The conv network on hardware: imported (conv2d with reset zero, the LIF's leak [171, 8] on the conv
    layer, the pool folded into the dense layer), exported and re-imported, then the round-tripped model
    on Verilator with random stalls: every sample and counter equals golden (a few samples here; the whole
    test split is ``make nir-sj``)."""
    from sim.regress import regress
    from sim.toolchain import ensure_verilator
    ensure_verilator()
    code, _, err = run_cli(capsys, "import", trained["src"], "--dataset", "digits", "--input-scale", "0.0625",
                           "--T", T, "--weight-bits", "8", "--limit", "8", "--calib", "128", "--out", tmp_path / "m.npz")
    assert code == 0, err
    code, _, err = run_cli(capsys, "export", tmp_path / "m.npz", "--out", tmp_path / "f.nir")
    assert code == 0, err
    code, _, err = run_cli(capsys, "import", tmp_path / "f.nir", "--out", tmp_path / "m2.npz")
    assert code == 0, err
    m, m2 = golden.load_model(tmp_path / "m.npz"), golden.load_model(tmp_path / "m2.npz")
    assert m2 == m and [(l.kind, l.reset) for l in m2.layers] == [("conv2d", "zero"), ("dense", "zero")]
    assert m2.layers[0].leak == ((171, 8) if trained["kind"] == "lif" else None)
    n = 12
    res = regress(m2, trained["x"][:n], trained["y"][:n], lanes=8, stall_prob=0.2,
                  name=f"nir_conv_{trained['kind']}", log=lambda *_: None, fast_build=True)
    assert res.first_mismatch is None, res.first_mismatch
    assert res.summary["matching_samples"] == n


@pytest.mark.parametrize("kind", ["if", "lif"])
def test_dense_spikingjelly_network_imports_and_runs_exactly_on_the_rtl(tmp_path, capsys, kind):
    """The whole path on hardware: SpikingJelly Linear + IFNode(v_reset=0) (or LIFNode(tau=3, v_reset=0): a leak
    [171, 8]) + Linear, trained here, exported by SpikingJelly, imported (reset zero), then verified on
    Verilator: every sample and counter equals golden."""
    from sim.regress import regress
    from sim.toolchain import ensure_verilator
    ensure_verilator()
    torch.set_num_threads(1)
    torch.manual_seed(1)
    x_te, y_te = datasets.load("digits", "test")
    net = torch.nn.Sequential(layer.Flatten(), layer.Linear(64, 24), neuron_node(kind), layer.Linear(24, 10))
    functional.set_step_mode(net, "m")
    net = train(net, 4)
    src = tmp_path / "dense.nir"
    export(net, src)
    code, _, err = run_cli(capsys, "import", src, "--dataset", "digits", "--input-scale", "0.0625", "--T", T,
                           "--weight-bits", "8", "--out", tmp_path / "m.npz")
    assert code == 0, err
    m = golden.load_model(tmp_path / "m.npz")
    assert [(l.kind, l.reset) for l in m.layers] == [("dense", "zero"), ("dense", "zero")] and m.readout == "membrane"
    assert [l.leak for l in m.layers] == ([None, None] if kind == "if" else [(171, 8), None])
    g = golden.run(m, x_te)
    assert (g.predictions == y_te).mean() > 0.8
    res = regress(m, x_te[:48], y_te[:48], lanes=8, name="nir_dense" if kind == "if" else "nir_dense_lif",
                  log=lambda *_: None, fast_build=True)
    assert res.first_mismatch is None, res.first_mismatch
    assert res.summary["matching_samples"] == 48
