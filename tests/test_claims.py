"""sim.claims: the T search, the ratios, the per-synapse reads and the verdicts, on tiny inputs; the CLI's
bad input; the README block's renderer."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import golden
from golden import Conv2d, Dense, MaxPool2d, Model
from golden.convert import rate_from_tsc
from sim import claims as cl
from sim.readme import render_block

ROOT = Path(__file__).resolve().parents[1]


def test_search_grid():
    g = cl.search_grid(1024)
    assert g[:32] == list(range(1, 33))
    assert g[32:44] == [40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256]
    assert g[-5:] == [512, 640, 768, 896, 1024] and len(g) == len(set(g)) and g == sorted(g)
    assert cl.search_grid(10) == list(range(1, 11))
    assert cl.search_grid(100)[-3:] == [80, 96, 100]


def test_smallest_T_refines_below_the_first_grid_point():
    calls = []

    def acc(T):
        calls.append(T)
        return 0.9 if T >= 45 else 0.5
    r = cl.smallest_T(acc, 0.9, cl.search_grid(1024))
    assert r["reached"] and r["T"] == 45 and r["accuracy"] == 0.9
    # the grid up to 48, then 41..45 in order (a gap of 7); nothing twice
    assert calls == list(range(1, 33)) + [40, 48] + list(range(41, 46))
    assert len(calls) == len(set(calls))


@pytest.mark.parametrize("first", [225, 226, 240, 255, 256])
def test_smallest_T_bisects_a_wide_gap(first):
    # reached first at grid point 256 (after 224): a gap of 31 is halved, 5 evaluations, not 31
    calls = []

    def acc(T):
        calls.append(T)
        return 0.9 if T >= first else 0.5
    r = cl.smallest_T(acc, 0.9, cl.search_grid(1024))
    assert (r["reached"], r["T"], r["accuracy"]) == (True, first, 0.9)
    grid = cl.search_grid(256)
    assert calls[:len(grid)] == grid and len(calls) == len(grid) + 5 and len(calls) == len(set(calls))
    assert all(224 < t < 256 for t in calls[len(grid):])


def test_smallest_T_not_monotone_and_never_reached():
    acc = {1: 0.1, 2: 0.8, 3: 0.95, 4: 0.7}
    r = cl.smallest_T(lambda T: acc.get(T, 0.5), 0.9, [1, 2, 3, 4, 8])
    assert (r["reached"], r["T"]) == (True, 3)
    # never reached: the best accuracy, at the smallest T that has it
    acc = {1: 0.1, 2: 0.8, 3: 0.8, 4: 0.7}
    r = cl.smallest_T(lambda T: acc.get(T, 0.5), 0.9, [1, 2, 3, 4, 8])
    assert (r["reached"], r["T"], r["accuracy"]) == (False, 2, 0.8)
    assert r["evaluated"] == {1: 0.1, 2: 0.8, 3: 0.8, 4: 0.7, 8: 0.5}


def test_ratios_and_memory_accesses():
    c = {k: np.array([1, 2]) for k in cl.MEMORY_COUNTERS}
    c.update(cycles=np.array([100, 100]), syn_ops=np.array([7, 7]))
    assert cl.memory_accesses(c).tolist() == [len(cl.MEMORY_COUNTERS), 2 * len(cl.MEMORY_COUNTERS)]
    rate = {"cycles": 300.0, "syn_ops": 90.0, "weight_reads": 40.0, "memory_accesses": 50.0}
    tsc = {"cycles": 100.0, "syn_ops": 3.0, "weight_reads": 20.0, "memory_accesses": 100.0}
    assert cl.ratios(rate, tsc) == {"cycles": 3.0, "syn_ops": 30.0, "weight_reads": 2.0, "memory_accesses": 0.5}
    with pytest.raises(ValueError, match="syn_ops"):
        cl.ratios(rate, dict(tsc, syn_ops=0.0))


def test_verdicts():
    assert cl.ratio_verdict(7.0, 7) == cl.HOLDS
    assert cl.ratio_verdict(6.99, 7) == cl.PARTLY
    assert cl.ratio_verdict(1.0, 7) == cl.NOT and cl.ratio_verdict(0.4, 30) == cl.NOT
    assert cl.bound_verdict(2, 2) == cl.HOLDS and cl.bound_verdict(3, 2) == cl.NOT


def _tiny_tsc():
    rng = np.random.default_rng(5)
    layers = [Conv2d(rng.integers(-6, 7, (3, 1, 3, 3)), rng.integers(-3, 4, 3), rng.integers(2, 6, 3),
                     in_shape=(1, 4, 4), padding=1),
              MaxPool2d(2, in_shape=(3, 4, 4)),
              Dense(rng.integers(-6, 7, (4, 12)), rng.integers(-3, 4, 4), 1)]
    m = Model(layers, coding="tsc", encoding="tsc", readout="membrane", T=6, input_max=10)
    return m, rng.integers(0, 11, (30, 16))


def test_reads_per_synapse_tsc_and_rate():
    m, x = _tiny_tsc()
    r = cl.reads_per_synapse(m, x, 2, chunk=7)
    assert r["max"] == 2 and 0 < r["mean"] <= 2          # an ON and an OFF per non-zero value
    rate = rate_from_tsc(m, 9)
    rr = cl.reads_per_synapse(rate, x, 2, chunk=7)
    g = golden.run(rate, x, record=True)
    # the busiest input neuron of any weight layer: its spike count (the encoder's, or a pool's)
    busiest = max(int(g.input_spikes.sum(axis=1).max()), int(g.spikes[1].sum(axis=1).max()))
    assert rr["max"] == busiest and busiest <= 9


def test_reads_per_synapse_checks_the_counter(monkeypatch):
    m, x = _tiny_tsc()
    real = cl._synapse_words
    monkeypatch.setattr(cl, "_synapse_words", lambda layer, P: real(layer, P) + (layer.kind == "dense"))
    with pytest.raises(RuntimeError, match="differ from golden's counter"):
        cl.reads_per_synapse(m, x, 2)


@pytest.mark.parametrize("args, msg", [
    (["--networks", "cifar"], "--networks: unknown network 'cifar'"),
    (["--networks", "digits,digits"], "--networks: give each network once"),
    (["--max-T", "2000"], "--max-T: 2000 is above 1024"),
    (["--lanes", "3"], "--lanes"),
    (["--tolerance", "-1"], "--tolerance"),
    (["--models-dir", "README.md"], "--models-dir README.md: not a directory"),
    (["--fmax-json", "nope.json"], "--fmax-json nope.json"),
    (["--stcb-target", "120"], "--stcb-target: 120.0 is above 100"),
    (["--jobs", "0"], "--jobs"),
])
def test_cli_bad_input_is_one_line_exit_2(args, msg, tmp_path):
    out = tmp_path / "c.json"
    r = subprocess.run([sys.executable, "-m", "sim.claims", *args, "--out", str(out), "--no-rtl"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120, env={"PYTHONPATH": str(ROOT), "PATH": ""})
    assert r.returncode == 2 and msg in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not out.exists()


def _claims_json(tmp_path, verdict="holds"):
    d = {"lanes": 8, "seconds": 612.3,
         "tables": {"tsc": [{"network": "digits `a`", "claim": "at most 2 reads", "figure": "max 2",
                             "command": "python -m sim.claims --networks digits", "verdict": verdict}],
                    "min_latency": [], "stcb": []},
         "rtl": {"digits_tsc": {"matching": 50, "samples": 50, "exact": True, "whole_split": False,
                                "sample_seed": 0, "of": 360}}}
    p = tmp_path / "reports" / "claims"
    p.mkdir(parents=True, exist_ok=True)
    (p / "claims.json").write_text(json.dumps(d))
    return d


def test_claims_block_renders_every_row_and_the_rtl(tmp_path):
    _claims_json(tmp_path)
    body = render_block("claims", tmp_path)
    assert "| digits `a` | at most 2 reads | max 2 | holds | `python -m sim.claims --networks digits` |" in body
    assert "1/1 quoted models equal to golden" in body and "`digits_tsc` 50/50 (seeded sample 0 of 360)" in body
    assert "written by `make claims`" in body and "612 s (models and simulator builds it found were reused)" in body
    # the phases, where the run recorded them
    d = _claims_json(tmp_path)
    d.update(phase_seconds={"train": 300.4, "golden": 200.0, "rtl": 111.6}, jobs=2)
    (tmp_path / "reports" / "claims" / "claims.json").write_text(json.dumps(d))
    assert ("612 s (training 300 s, golden 200 s, RTL 112 s on 2 worker processes; models and simulator builds it "
            "found were reused)") in render_block("claims", tmp_path)


def test_smallest_T_of_a_grid():
    rows = {2: {"accuracy": 0.97}, 4: {"accuracy": 0.981}, 8: {"accuracy": 0.99}}
    assert cl._smallest(rows, 0.98) == 4 and cl._smallest(rows, 0.97) == 2 and cl._smallest(rows, 0.995) is None


@pytest.mark.parametrize("acc, verdicts, smallest", [
    # stcb reaches 98% at T=3, rate at T=4; stcb cheaper at T=8: both hold
    ({"rate": (0.97, 0.982, 0.99), "stcb_k3": (0.981, 0.985, 0.99)}, ["holds", "holds"], {"rate": 4, "stcb_k3": 3}),
    # stcb never reaches it: the second row does not hold, and says so
    ({"rate": (0.97, 0.982, 0.99), "stcb_k3": (0.90, 0.95, 0.97)}, ["holds partly", "does not hold on this network"],
     {"rate": 4, "stcb_k3": None}),
])
def test_kernel_rows_compare_equal_T_and_the_smallest_T(monkeypatch, acc, verdicts, smallest):
    # golden's rows stubbed: stcb is cheaper than rate at every T (cycles, energy); the accuracies decide
    grid = cl.KERNEL_GRID
    monkeypatch.setattr(cl, "_train_missing", lambda *a, **k: None)
    monkeypatch.setattr(cl, "_model", lambda net, kind, d, log: (kind, {"file": f"m/{kind}.npz"}))

    def measure(kind, x, y, P, table):
        fam, T = kind.rsplit("_t", 1)
        T = int(T)
        scale = 1.0 if fam == "rate" else 0.25
        return {"accuracy": acc[fam][grid.index(T)], "cycles": 1000.0 * T * scale,
                "weight_reads": 500.0 * T * scale, "energy_pj": 1e4 * T * scale}
    monkeypatch.setattr(cl, "_measure", measure)
    out, verify = {"tables": {"stcb": []}, "models": {}}, []
    res = cl._kernel_rows(out, "digits `n`", "digits", cl.NETWORKS["digits"], Path("m"), None, None, 8, {}, 0.98,
                          2, print, verify)
    rows = out["tables"]["stcb"]
    assert [r["verdict"] for r in rows] == verdicts
    assert res["smallest_T"] == smallest
    assert "T=8" in rows[0]["claim"] and f"STCB, 3-tap kernel: {100 * acc['stcb_k3'][-1]:.2f}%, 2,000 cycles" in \
        rows[0]["figure"] and "rate: 99.00%, 8,000 cycles" in rows[0]["figure"]
    # every model a row quotes goes to the RTL, once
    quoted = {("rate", 8), ("stcb_k3", 8)} | {(f, t) for f, t in smallest.items() if t}
    assert sorted(k for k, *_ in verify) == sorted(f"digits_{f}_t{t}" for f, t in quoted)
    assert set(out["models"]) == {f"digits_{f}_t{t}" for f in ("rate", "stcb_k3") for t in grid}


@pytest.mark.parametrize("e_stcb, e_rate, verdict", [
    (1.0, 4.0, "holds"),
    (4.0, 1.0, "holds partly (cycles and weight reads; more energy: the T-slot accumulator words)"),
    (None, 1.0, "holds partly (cycles and weight reads; energy not measured)"),
])
def test_stcb_row_verdict_says_why(monkeypatch, e_stcb, e_rate, verdict):
    # stcb: fewer cycles and weight reads, identical predictions; the energy decides the verdict's words
    rows = {"rate": {"cycles": 100.0, "weight_reads": 50.0, "energy_pj": e_rate, "accuracy": 0.9},
            "stcb": {"cycles": 30.0, "weight_reads": 10.0, "energy_pj": e_stcb, "accuracy": 0.9,
                     "energy_note": "no memories"}}
    monkeypatch.setattr(cl, "_measure", lambda m, x, y, P, table: rows[m.name])
    monkeypatch.setattr(cl.golden, "run", lambda m, x, lanes: type(
        "R", (), {"predictions": np.zeros(3), "counters": {"cycles": np.zeros(3)}})())
    out = {"tables": {"stcb": []}}
    m_r, m_s = (type("M", (), {"T": 8, "name": k})() for k in ("rate", "stcb"))
    cl._stcb_row(out, "n", "digits", m_r, m_s, {"file": "f"}, None, None, 8, {}, rtl=False)
    assert out["tables"]["stcb"][0]["verdict"] == verdict


def test_train_commands_follow_the_network():
    # digits: the conv recipe's own epochs; mnist5k: its override, and the deep variant's architecture
    d, m = cl.NETWORKS["digits"], cl.NETWORKS["mnist5k"]
    cmd = cl._train_cmd(d, "tsc_pool_free", Path("o.npz"))
    assert cmd[:2] == ["--arch", d.arch_pool_free] and "--epochs" not in cmd and cmd[cmd.index("--T") + 1] == "17"
    with pytest.raises(ValueError):
        cl._train_cmd(d, "tsc_deep", Path("o.npz"))              # digits has no deep variant
    deep = cl._train_cmd(m, "tsc_deep", Path("o.npz"))
    assert deep[:4] == ["--arch", m.arch_deep, "--coding", "tsc"] and deep[deep.index("--epochs") + 1] == str(m.epochs)
    assert m.arch_deep.count("-") + 1 >= 6                        # the six layers or more
    assert cl._train_cmd(m, "direct_t1", Path("o.npz"))[cl._train_cmd(m, "direct_t1", Path("o.npz")).index(
        "--epochs") + 1] == str(m.epochs)


@pytest.mark.parametrize("deep_cycles, deep_mem, verdict", [
    (3.0, 3.0, "holds"), (1.2, 1.2, "does not hold on this network"),
    (3.0, 1.2, "holds partly (grows in cycles, syn_ops, weight_reads)")])
def test_depth_row_compares_the_shallow_and_the_deep_pool_free_networks(deep_cycles, deep_mem, verdict):
    def variant(arch, layers, T, c, mem):
        return {"arch": arch, "layers": layers, "search": {"T": T, "reached": True},
                "ratios": {"cycles": c, "syn_ops": 2 * c, "weight_reads": 2 * c, "memory_accesses": mem}}
    variants = {"tsc_pool_free": variant("a-b-10", 3, 20, 1.5, 1.5),
                "tsc_deep": variant("a-b-c-d-e-10", 6, 90, deep_cycles, deep_mem)}
    models = {"mnist5k_tsc_pool_free": {"file": "m/pf.npz"}, "mnist5k_tsc_deep": {"file": "m/deep.npz"}}
    row = cl._depth_row("mnist5k", variants, models, 8)
    assert row["verdict"] == verdict
    assert "3 layers (`a-b-10`): rate T=20, 1.50x cycles, 3.00x syn_ops" in row["figure"]
    assert f"6 layers (`a-b-c-d-e-10`): rate T=90, {deep_cycles:.2f}x cycles" in row["figure"]
    assert "m/pf.npz" in row["command"] and "m/deep.npz" in row["command"]


@pytest.fixture(autouse=True)
def _fresh_seen():
    # sim.claims notes golden's runs by model (cl._SEEN): each test starts and ends without any
    cl._SEEN.clear()
    yield
    cl._SEEN.clear()


def _measured_tiny():
    """A tiny dense model, the digits test split, and golden's total cycles over it (noted by cl._seen)."""
    m = _tiny_dense()
    x, _ = golden.datasets.load("digits", "test")
    return m, x, cl._seen(m, x, 8)[1]


def _tiny_dense(coding="rate"):
    rng = np.random.default_rng(3)
    m = Model([Dense(rng.integers(-30, 40, (10, 64)), 0, 60, 0)], T=4, input_max=16)
    if coding != "rate":
        from sim.sweep import retarget
        m = retarget(m, coding, m.T)
    return m


def test_a_measured_run_is_not_repeated(monkeypatch):
    # the row's golden run is noted: the same-predictions check and the RTL's budget reuse it
    m = _tiny_dense()
    x, y = golden.datasets.load("digits", "test")
    g = golden.run(m, x, lanes=8)
    row = cl._measure(m, x, y, 8, golden.energy.DEFAULT_TABLE)
    calls = []
    real = cl.golden.run
    monkeypatch.setattr(cl.golden, "run", lambda *a, **k: calls.append(a) or real(*a, **k))
    pred, cyc = cl._seen(m, x, 8)
    assert calls == [] and np.array_equal(pred, g.predictions) and cyc == float(g.counters["cycles"].sum())
    assert row["cycles"] * len(x) == pytest.approx(cyc)
    # another split, another P or another model: a run of its own
    cl._seen(m, x[:5], 8)
    cl._seen(m, x, 4)
    other = _tiny_dense()
    assert np.array_equal(cl._seen(other, x, 8)[0], g.predictions)
    assert len(calls) == 3


def test_rtl_plan_whole_split_within_the_budget_else_a_seeded_draw():
    m, x, total = _measured_tiny()
    assert np.array_equal(cl._rtl_plan(m, x, 8, 5, total, 0), np.arange(len(x)))
    a = cl._rtl_plan(m, x, 8, 5, total - 1, 0)
    assert len(a) == 5 and np.array_equal(a, np.sort(a)) and len(set(a.tolist())) == 5
    assert np.array_equal(a, cl._rtl_plan(m, x, 8, 5, total - 1, 0))             # seeded
    assert not np.array_equal(a, cl._rtl_plan(m, x, 8, 5, total - 1, 1))
    assert np.array_equal(cl._rtl_plan(m, x, 8, len(x), 0, 0), np.arange(len(x)))   # a sample of all of it


def _fake_rtl(m, x, y, idx, P, name, seed):          # module level: a worker process unpickles it by name
    return {"samples": len(idx), "matching": len(idx), "seconds": 0.0, "name": name, "pid": os.getpid()}


@pytest.mark.parametrize("jobs", [1, 2])
def test_verify_runs_each_quoted_model_once_in_the_tables_order(monkeypatch, jobs):
    # the RTL runs stubbed (the real ones: test_verify_on_the_rtl); worker processes fork, and inherit it
    monkeypatch.setattr(cl, "_rtl", _fake_rtl)
    a, b = _tiny_dense(), _tiny_dense("stcb")
    log = []
    res = cl._verify([("k_b", b, "digits"), ("k_a", a, "digits"), ("k_b", b, "digits")], 8, 3, 0, 0, jobs,
                     log.append)
    assert list(res) == ["k_b", "k_a"]
    assert [r["name"] for r in res.values()] == ["claims_k_b", "claims_k_a"]
    assert all(r["samples"] == 3 for r in res.values()) and len(log) == 2
    assert all((r["pid"] != os.getpid()) == (jobs > 1) for r in res.values())   # in workers


def test_verify_on_the_rtl():
    # two models in two worker processes, each a real Verilator build and run, equal on every counter
    a, b = _tiny_dense(), _tiny_dense("stcb")
    res = cl._verify([("va", a, "digits"), ("vb", b, "digits")], 8, 3, 0, 0, 2, lambda s: None)
    assert list(res) == ["va", "vb"]
    for r in res.values():
        assert r["exact"] and r["matching"] == r["samples"] == 3 and r["of"] == 360 and r["sample_seed"] == 0
        assert r["first_mismatch"] is None and r["simulated_cycles_per_s"] > 0


def test_only_the_quoted_float_reference_is_trained():
    # table 2 quotes the tsc model's float accuracy; every other training skips its float network
    for net in cl.NETWORKS.values():
        for kind in cl._kinds(net):
            cmd = cl._train_cmd(net, kind, Path("o.npz"))
            assert ("--no-float-ref" in cmd) == (kind != "tsc"), (net.name, kind)


def test_the_no_float_ref_model_is_the_same_model(tmp_path):
    # the float network trains after the quantized one: skipping it leaves the integer model as it was
    base = [sys.executable, "-m", "quant.train", "--dataset", "digits", "--hidden", "16", "--T", "2", "--epochs", "1",
            "--limit", "200", "--seed", "0", "--quiet"]
    for name, extra in (("with", []), ("without", ["--no-float-ref"])):
        r = subprocess.run(base + ["--out", str(tmp_path / f"{name}.npz"), *extra], cwd=ROOT, capture_output=True,
                           text=True)
        assert r.returncode == 0, r.stderr
    a, b = golden.load_model(tmp_path / "with.npz"), golden.load_model(tmp_path / "without.npz")
    assert a.meta() == b.meta()
    for la, lb in zip(a.layers, b.layers):
        assert np.array_equal(la.weight, lb.weight) and np.array_equal(la.bias, lb.bias)
        assert np.array_equal(la.threshold, lb.threshold)
    assert json.loads((tmp_path / "with.json").read_text())["float_accuracy"] is not None
    assert json.loads((tmp_path / "without.json").read_text()).get("float_accuracy") is None


def test_trainings_start_costliest_first(tmp_path, monkeypatch):
    # every network's models in one pool, longest first; a model already trained is not trained again
    started = []
    monkeypatch.setattr(cl, "_model", lambda net, kind, d, log: started.append((net.name, kind)))
    todo = [(cl.NETWORKS[n], k) for n in ("digits", "mnist5k") for k in cl._kinds(cl.NETWORKS[n])]
    (tmp_path / "digits_tsc.npz").write_bytes(b"")
    cl._train_missing(todo, tmp_path, 1, print)
    assert len(started) == len(todo) - 1 and ("digits", "tsc") not in started
    assert started[0] == ("mnist5k", "rate_t8") and started[1] == ("mnist5k", "tsc_deep")
    costs = [cl._train_cost(cl.NETWORKS[n], k) for n, k in started]
    assert costs == sorted(costs, reverse=True)
    # the cost follows the work: T steps, the deeper arch, the larger dataset
    d, m = cl.NETWORKS["digits"], cl.NETWORKS["mnist5k"]
    assert cl._train_cost(d, "rate_t8") == 2 * cl._train_cost(d, "rate_t4") > cl._train_cost(d, "tsc")
    assert cl._train_cost(m, "tsc_deep") > cl._train_cost(m, "tsc_pool_free") > cl._train_cost(m, "tsc")
    assert cl._train_cost(m, "rate_t8") > cl._train_cost(d, "rate_t8")


def test_train_cost_reads_the_training_split_size(monkeypatch):
    # the split's size comes from the data, not from a table of the known datasets' sizes
    import golden.datasets
    d = cl.NETWORKS["digits"]
    full = cl._train_cost(d, "tsc")
    x, y = golden.datasets.load("digits", "train")
    monkeypatch.setattr(golden.datasets, "load", lambda name, split, **kw: (x[:len(x) // 3], y[:len(x) // 3]))
    cl._train_size.cache_clear()
    try:
        assert cl._train_cost(d, "tsc") * len(x) == full * (len(x) // 3)
    finally:
        cl._train_size.cache_clear()


def _hung_rtl(m, x, y, idx, P, name, seed):          # module level: a worker process unpickles it by name
    time.sleep(60)


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_hung_rtl_job_fails_with_its_model_named(monkeypatch, jobs):
    # a run that hangs outside the simulator (a worker once waited forever on threads lost in the fork)
    # is stopped by its deadline, in a worker process and in the main thread alike
    monkeypatch.setattr(cl, "_rtl", _hung_rtl)
    monkeypatch.setattr(cl, "_rtl_deadline", lambda m, x, P, idx: 1)
    a, b = _tiny_dense(), _tiny_dense("stcb")
    t0 = time.perf_counter()
    from sim.runner import SimHang
    with pytest.raises(SimHang, match=r"the RTL run of h_a did not finish in 1 s"):
        cl._verify([("h_a", a, "digits"), ("h_b", b, "digits")], 8, 3, 0, 0, jobs, lambda s: None)
    assert time.perf_counter() - t0 < 30


def test_rtl_deadline_covers_the_simulators_own_limit():
    from sim.runner import cycle_budget, wall_limit
    m, x, total = _measured_tiny()
    idx = np.arange(36)
    want = cl.RTL_BUILD_SLACK_S + wall_limit(cycle_budget(int(total * 36 / 360), 0, 0.0), "verilator")
    assert cl._rtl_deadline(m, x, 8, idx) == want > cl.RTL_BUILD_SLACK_S + 300
