"""RTL truth: generated cores on Verilator (cocotb 2.x) against golden, sample by sample."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import golden
from golden import Dense, Model
from hw.generate import generate
from sim.regress import regress, compare
from sim.runner import build, run_job
from sim.toolchain import lint, ensure_verilator
from test_hw_conv_core import conv_net

ROOT = Path(__file__).resolve().parents[1]
GEN = ROOT / "build" / "test-verilog"


def random_model(seed, sizes, *, encoding, readout, T, wb, input_max=7, coding=None, h=(1,), zero=(), leak=None):
    """``zero``: the layers that reset to zero (the others subtract their threshold); ``leak``: {layer:
    (num, shift)} of the leaky layers (the others are IF)."""
    leak = leak or {}
    rng = np.random.default_rng(seed)
    lim = 1 << (wb - 1)
    tsc = encoding == "tsc"
    layers = [Dense(rng.integers(-lim, lim, (n_out, n_in)), rng.integers(-4, 5, n_out),
                    rng.integers(1, 2 * lim + 1, n_out), 0 if tsc else rng.integers(-4, 5, n_out), h=h,
                    reset="zero" if i in zero else "subtract", leak=leak.get(i))
              for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:]))]
    model = Model(layers, T=T, encoding=encoding, input_max=input_max, readout=readout, weight_bits=wb,
                  coding=coding or ("tsc" if tsc else "rate"))
    x = rng.integers(0, input_max + 1, (12, sizes[0]))
    x[0] = 0                     # zero input
    x[1] = input_max             # saturated input
    return model, x


# (name, seed, sizes, encoding, readout, T, weight_bits, lanes[, coding, h]): every coding path and lane edge case
CONFIGS = [
    ("r_cnt_p1", 1, [5, 4, 3], "rate", "count", 4, 4, 1),
    ("r_mem_p4", 2, [9, 7, 5], "rate", "membrane", 3, 6, 4),
    ("d_cnt_p8", 3, [11, 13, 6, 4], "direct", "count", 2, 8, 8),
    ("d_mem_p2", 4, [7, 5, 3], "direct", "membrane", 1, 3, 2),
    ("r_cnt_p16_4l", 5, [18, 9, 17, 10, 5], "rate", "count", 5, 12, 16),
    ("tsc_p2", 6, [7, 6, 3], "tsc", "membrane", 6, 6, 2),
    ("tsc_p8_3l", 7, [13, 9, 10, 4], "tsc", "membrane", 8, 8, 8),
    ("stcb_p4", 8, [10, 7, 5], "rate", "count", 6, 6, 4, "stcb", (1,)),
    ("stcb_k_p2_3l", 9, [6, 8, 5, 3], "direct", "membrane", 5, 5, 2, "stcb", (2, -1, 1)),
]


# layers that reset to zero (reset: zero) in some configurations: rate, direct and stcb, hidden and last
ZERO_RESET = {"r_cnt_p1": (1,), "d_cnt_p8": (0, 2), "stcb_k_p2_3l": (1,)}

# conv2d and maxpool2d networks (tests/test_hw_conv_core.conv_net): two convs with a pool and a strided
# conv (rate, P=4), a direct-input leaky conv on a non-square map with zero reset and membrane readout, and
# an stcb conv with a kernel, five channels at P=4, and a pool (the sweep's words spaced T*taps for the slot unit)
CONV_CONFIGS = {
    # the last conv (K 1, stride 2 on a 2x2 map) gets events none of whose offsets lands in its output
    "conv_r_p4": dict(seed=21, in_shape=(1, 8, 8), convs=((6, 3, 1, 1), (5, 3, 2, 1), (4, 1, 2, 0)), pool_after=(0,),
                      lanes=4),
    "conv_d_p2": dict(seed=22, in_shape=(1, 6, 5), convs=((3, 3, 1, 1),), pool_after=(), lanes=2,
                      encoding="direct", readout="membrane", resets={0: "zero"}, leaks={0: (5, 3)}),
    "conv_s_p4": dict(seed=23, in_shape=(1, 6, 6), convs=((5, 3, 1, 1),), pool_after=(0,), lanes=4, coding="stcb",
                      T=4, kernels={0: [2, -1, 1], 2: [1, 1]}),
}
ALL_CONFIGS = [c[0] for c in CONFIGS] + list(CONV_CONFIGS)

# leaky layers {layer: (num, shift)} in some configurations: rate, direct and stcb (a slot per cycle, and with a
# kernel), with both resets, a layer that keeps no V (num 0) and a shift to the widest num
LEAK = {"r_cnt_p1": {0: (3, 2), 1: (7, 3)}, "d_cnt_p8": {0: (5, 3), 1: (1, 1), 2: (3, 2)},
        "stcb_p4": {1: (13, 4)}, "stcb_k_p2_3l": {0: (0, 0), 1: (5, 3), 2: (9, 4)}}


@pytest.fixture(scope="module")
def cores():
    ensure_verilator()
    out = {}
    for name, seed, sizes, enc, ro, T, wb, lanes, *extra in CONFIGS:
        coding, h = extra if extra else (None, (1,))
        model, x = random_model(seed, sizes, encoding=enc, readout=ro, T=T, wb=wb, coding=coding, h=h,
                                zero=ZERO_RESET.get(name, ()), leak=LEAK.get(name))
        v, j = generate(model, lanes, GEN / name, name)
        # C++ at -O0: builds several times faster, and these simulations are tiny
        out[name] = (model, x, lanes, v, json.loads(j.read_text()), build(v, name, fast=True))
    for name, case in CONV_CONFIGS.items():
        case = dict(case)
        seed, lanes = case.pop("seed"), case.pop("lanes")
        model, x = conv_net(seed, samples=12, **case)
        x[1] = model.input_max                   # a saturated sample beside conv_net's all-zero one
        v, j = generate(model, lanes, GEN / name, name)
        out[name] = (model, x, lanes, v, json.loads(j.read_text()), build(v, name, fast=True))
    return out


def _assert_exact(model, x, lanes, rtl):
    g = golden.run(model, x, lanes=lanes)
    verdicts, bad = compare(model, lanes, rtl, g)
    assert all(v == 0 for v in bad.values()), bad
    assert int(rtl["err_range"]) == 0 and int(rtl["err_protocol"]) == 0


@pytest.mark.parametrize("name", ALL_CONFIGS)
def test_random_network_exact_with_and_without_stalls(cores, name):
    model, x, lanes, v, man, b = cores[name]
    clean = run_job(b, {"manifest": man, "inputs_array": x})
    _assert_exact(model, x, lanes, clean)
    stalled = run_job(b, {"manifest": man, "inputs_array": x, "stall_prob": 0.35, "seed": 7})
    assert int(stalled["stall_cycles"]) > 0
    _assert_exact(model, x, lanes, stalled)
    for k in ("predictions", "counts", "membranes", "cnt_cycles"):
        assert stalled[k].tolist() == clean[k].tolist(), k


def test_conv_coverage_points_are_seen_on_the_scatter_trace(cores):
    """The conv coverage points come from the core's scatter trace port (hw.signatures
    ScatterTraceSignature), counted by the harness: on conv_r_p4 with stalls every one is hit, and a dense
    core hits none (its trace stays low)."""
    model, x, lanes, v, man, b = cores["conv_r_p4"]
    r = run_job(b, {"manifest": man, "inputs_array": x, "stall_prob": 0.35, "seed": 3, "coverage": True})
    _assert_exact(model, x, lanes, r)
    sc = r["coverage"]["scatter"]
    assert all(n > 0 for n in sc.values()), sc
    # the all-zero sample is row 0: its scatters are empty in every step, so every conv/pool layer's
    # sweep follows an empty step at least T times
    assert sc["sweep-after-empty-step"] >= model.T * sum(l.kind != "dense" for l in model.layers)
    model, x, lanes, v, man, b = cores["r_cnt_p1"]
    r = run_job(b, {"manifest": man, "inputs_array": x[:2], "coverage": True})
    assert all(n == 0 for n in r["coverage"]["scatter"].values())


@pytest.mark.parametrize("name", sorted(LEAK))
def test_leaky_configurations_are_leaky(cores, name):
    # the leak must change what these cores compute, or their exactness would not test it
    model, x, lanes, v, man, b = cores[name]
    assert man["parameters"]["leaks"] == [list(LEAK[name][i]) if i in LEAK[name] else None
                                          for i in range(len(model.layers))]
    plain = model.replace(layers=[Dense(l.weight, l.bias, l.threshold, l.v_init, h=l.h, reset=l.reset)
                                  for l in model.layers])
    g, p = golden.run(model, x, record=True), golden.run(plain, x, record=True)
    for li in sorted(LEAK[name]):
        assert g.spikes[li].tolist() != p.spikes[li].tolist() or li == len(model.layers) - 1, (name, li)
    assert g.membranes.tolist() != p.membranes.tolist()


def test_leaky_conv_configuration_is_leaky(cores):
    # the conv layer's leak must change what the core computes, or its exactness would not test it
    model, x, lanes, v, man, b = cores["conv_d_p2"]
    assert man["parameters"]["leaks"] == [[5, 3], None] and man["parameters"]["resets"][0] == "zero"
    case = {k: v for k, v in CONV_CONFIGS["conv_d_p2"].items() if k not in ("seed", "lanes", "leaks")}
    plain, _ = conv_net(CONV_CONFIGS["conv_d_p2"]["seed"], samples=12, **case)
    g, p = golden.run(model, x, record=True), golden.run(plain, x, record=True)
    assert g.spikes[0].tolist() != p.spikes[0].tolist()
    assert g.membranes.tolist() != p.membranes.tolist()


@pytest.mark.parametrize("name", ["r_cnt_p1", "d_cnt_p8", "tsc_p2", "stcb_p4"])
def test_protocol_abuse(cores, name):
    model, x, lanes, v, man, b = cores[name]
    r = run_job(b, {"manifest": man, "inputs_array": x[:1], "reset_after": 5}, testcase="protocol_abuse")
    g = golden.run(model, x[:1], lanes=lanes)
    assert r["after_reset_flags"].tolist() == [0, 0]
    assert r["predictions"].tolist() == g.predictions.tolist()
    assert r["membranes"].tolist() == g.membranes.tolist()
    assert r["cnt_cycles"].tolist() == g.counters["cycles"].tolist()
    assert int(r["protocol_flag"]) == 1
    assert int(r["range_flag"]) == 1
    assert r["final_flags"].tolist() == [0, 0]
    assert r["final_membranes"].tolist() == g.membranes.tolist()
    assert r["final_cnt_weight_reads"].tolist() == g.counters["weight_reads"].tolist()


@pytest.mark.parametrize("name", ["stcb_p4", "stcb_k_p2_3l"])
def test_stcb_train_monitor_reconstructs_every_spike(cores, name):
    from sim.regress import decode_spikes
    model, x, lanes, v, man, b = cores[name]
    r = run_job(b, {"manifest": man, "inputs_array": x[2:3], "spikes": True})
    layers, enc = decode_spikes(r, model, lanes)
    g = golden.run(model, x[2:3], record=True)
    for li in range(len(model.layers)):
        assert layers[li].tolist() == g.spikes[li][0].tolist()
    if model.encoding == "rate":
        assert enc.tolist() == g.input_spikes[0].tolist()


def test_tsc_event_monitor_reconstructs_every_event(cores):
    from sim.regress import decode_events
    model, x, lanes, v, man, b = cores["tsc_p8_3l"]
    r = run_job(b, {"manifest": man, "inputs_array": x[3:4], "spikes": True})
    events, enc = decode_events(r, model, lanes)
    g = golden.run(model, x[3:4], record=True)
    assert enc.tolist() == g.input_events[0].tolist()
    for li in range(len(model.layers) - 1):
        assert events[li].tolist() == g.events[li][0].tolist()


@pytest.mark.parametrize("name", ["r_cnt_p16_4l", "r_cnt_p1", "d_cnt_p8"])      # the last two leaky
def test_spike_monitor_reconstructs_every_spike(cores, name):
    from sim.regress import decode_spikes
    model, x, lanes, v, man, b = cores[name]
    for k in (2, 3):
        r = run_job(b, {"manifest": man, "inputs_array": x[k:k + 1], "spikes": True})
        layers, enc = decode_spikes(r, model, lanes)
        g = golden.run(model, x[k:k + 1], record=True)
        for li in range(len(model.layers)):
            assert layers[li].tolist() == g.spikes[li][0].tolist(), (name, k, li)
        if model.encoding == "rate":
            assert enc.tolist() == g.input_spikes[0].tolist()


@pytest.mark.parametrize("name", ALL_CONFIGS)
def test_lint_clean_with_documented_waivers(cores, name):
    r = lint(cores[name][3], name)
    assert r.returncode == 0, r.stderr[-2000:]


def test_tampered_netlist_is_caught_and_localised(tmp_path):
    # one direct-input layer with membrane readout: any change to an active weight must reach the
    # final membrane, so the test cannot pass by luck
    model = Model([Dense([[3, -2, 1], [-4, 5, 2]], 0, 100, 0)], T=2, encoding="direct", readout="membrane",
                  input_max=7, weight_bits=4)
    v, j = generate(model, 1, GEN / "tamper", "tamper")
    text = v.read_text()
    m = re.search(r"(\bwmem\[0\] = 4'h)([0-9a-f]+);", text)
    assert m, "could not find the weight memory init in the netlist"
    assert int(m.group(2), 16) == 3                 # neuron 0, input 0
    bad = tmp_path / v.name
    bad.write_text(text[:m.start(2)] + "4" + text[m.end(2):])
    (tmp_path / j.name).write_text(j.read_text())
    xs = np.full((3, 3), 7)
    good = regress(model, xs, None, verilog=v, log=lambda *_: None, fast_build=True)
    assert good.first_mismatch is None and good.summary["matching_samples"] == 3
    res = regress(model, xs, None, verilog=bad, log=lambda *_: None, fast_build=True)
    assert res.summary["matching_samples"] == 0
    assert res.summary["hand_edited_netlist"] is True
    # golden membranes: T*7*(3-2+1) = 28 and T*7*(-4+5+2) = 42 -> prediction 1; the tampered weight 4
    # makes neuron 0 reach 42 as well, and the tie goes to index 0
    assert res.first_mismatch.startswith("sample 0: first differing field predictions (golden 1, rtl 0)")
    assert res.summary["mismatches_by_field"]["membranes"] == 3
    assert res.summary["mismatches_by_field"]["counter:cycles"] == 0


def _cli(*args):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "sim.regress", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=600)


def test_regress_cli_bad_inputs(tmp_path, cores):
    model, x, lanes, v, man, b = cores["r_cnt_p1"]
    mpath = tmp_path / "m.npz"
    golden.save_model(model, mpath)
    other = tmp_path / "other.npz"
    golden.save_model(random_model(9, [64, 10], encoding="rate", readout="count", T=2, wb=4, input_max=16)[0], other)
    out = tmp_path / "r.json"
    cases = [
        (["--model", tmp_path / "missing.npz"], "model file not found"),
        (["--model", mpath, "--lanes", 6], "power of two"),
        (["--model", mpath, "--stall-prob", 1.5], "probability"),
        (["--model", mpath], "shape (batch, 5)"),                           # digits have 64 features
        (["--model", other, "--verilog", tmp_path / "nope.v"], "file not found"),
        (["--model", other, "--verilog", v], "generated for a different model"),
        (["--model", other, "--dataset", "svhn"], "unknown dataset"),
    ]
    for args, msg in cases:
        r = _cli(*args, "--json", out)
        assert r.returncode == 2, (args, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and msg in lines[0], (args, r.stderr)
        assert "Traceback" not in r.stderr and not out.exists()


def test_waves_on_request_leave_a_vcd(tmp_path):
    model = Model([Dense([[2, -1], [1, 3]], 0, 3, 0)], T=2, input_max=3, weight_bits=3)
    res = regress(model, np.array([[3, 1], [0, 2]]), None, lanes=1, name="waves", waves=True, log=lambda *_: None,
                  fast_build=True)
    assert res.first_mismatch is None
    vcd = Path(res.summary["vcd"])
    text = vcd.read_text()
    assert "$enddefinitions" in text and " x__valid $end" in text
    assert re.search(r"^#\d+$", text.split("$enddefinitions", 1)[1], re.M)      # value changes over time


@pytest.mark.parametrize("name", ["tsc_p2", "stcb_k_p2_3l", "d_mem_p2"])
def test_regress_and_report_work_unchanged_for_every_coding(cores, name, tmp_path):
    # regression: the summary read counters["spikes"], which tsc once named "events"
    from sim.report import write_report
    model, x, lanes, v, man, b = cores[name]
    y = np.zeros(len(x), np.int64)
    res = regress(model, x, y, verilog=v, log=lambda *_: None, fast_build=True)
    assert res.first_mismatch is None and res.summary["matching_samples"] == len(x)
    rep = write_report(tmp_path, name, model, x, y, lanes=lanes, regress_summary=res.summary)
    assert "**%d/%d**" % (len(x), len(x)) in rep["markdown"]
