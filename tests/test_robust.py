"""The short robustness campaign of `make test` (`make robust` runs the long one)."""

import numpy as np

import golden
from sim.fuzz import COVERAGE_POINTS, coverage_of, random_network, run_campaign
from sim.robust import bad_input_campaign


def test_random_networks_are_valid_and_reproducible():
    for seed in range(30):
        a = random_network(seed)
        b = random_network(seed)
        assert a[0] == b[0] and np.array_equal(a[1], b[1]) and a[2] == b[2]
        model, x, lanes, info = a
        golden.check_inputs(model, x)
        assert 1 <= len(model.layers) <= 4 and all(1 <= n <= 300 for n in model.sizes)
        assert lanes in (1, 2, 4, 8, 16, 32, 64)


def test_short_campaign_every_coding_on_verilator():
    # small seeds covering tsc, stcb and rate (direct, with protocol faults: seed % 4 == 0)
    c = run_campaign([1033, 1075, 1060], jobs=2, progress=False, log=lambda *_: None)
    s = c.summary()
    assert s["mismatches"] == 0, s["failures"]
    assert s["networks"] == 3 and s["lint_clean"] == 3
    assert s["faults_injected"] == 3
    assert {"coding:rate", "coding:tsc", "coding:stcb", "stream:input-stalls", "fault:wrong-last"} <= {
        k for k, v in s["coverage"].items() if v}
    assert set(s["coverage"]) == set(COVERAGE_POINTS)


def test_coverage_points_are_sampled_from_the_run():
    model, x, lanes, info = random_network(1060)
    g = golden.run(model, x, lanes=lanes, record=True)
    quiet = coverage_of(model, x, lanes, info, g, {"faults": []})
    noisy = coverage_of(model, x, lanes, info, g, {"faults": ["wrong-last"], "stall_cycles": 5})
    assert "fault:wrong-last" in noisy - quiet and "stream:input-stalls" in noisy - quiet
    assert quiet <= set(COVERAGE_POINTS)


def test_every_bad_input_is_rejected():
    r = bad_input_campaign()
    assert r["bad_input_failures"] == []
    assert r["bad_inputs_tried"] == r["bad_inputs_rejected"] >= 60
