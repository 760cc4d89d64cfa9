"""The short robustness campaign of `make test` (`make robust` runs the long one)."""

import numpy as np
import pytest

import golden
from golden.geometry import CoreGeometry
from sim import coverage as cov
from sim.fuzz import SAMPLES_PER_NETLIST, adversarial_samples, campaign_config, random_network, run_campaign
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
        assert len(x) >= SAMPLES_PER_NETLIST


def test_adversarial_samples_reach_the_current_bounds():
    model, _, _, _ = random_network(7)
    x = adversarial_samples(model, np.random.default_rng(0))
    M, w = model.input_max, model.layers[0].weight
    assert len(x) == SAMPLES_PER_NETLIST and (x[0] == 0).all() and (x[1] == M).all()
    # every sample after the first two that is not random drives some neuron to its extreme current
    acc = x.astype(np.int64) @ w.T
    hi, lo = np.maximum(w, 0).sum(axis=1) * M, np.minimum(w, 0).sum(axis=1) * M
    assert (acc == hi).any(axis=0).sum() >= 1 and (acc == lo).any(axis=0).sum() >= 1


def test_fuzzer_draws_leaks_on_spiking_layers_only():
    # drawn from a generator of their own (sim/fuzz.py), so a seed's other draws are what they were
    nets = [random_network(seed)[0] for seed in range(60)]
    leaky = [m for m in nets if any(l.leak is not None for l in m.layers)]
    assert leaky and all(m.coding != "tsc" for m in leaky)
    assert {m.coding for m in leaky} == {"rate", "stcb"}
    assert all(l.leak is None or 0 <= l.leak[0] < 1 << 16 for m in leaky for l in m.layers)


def test_coverage_goal_follows_the_campaign():
    only_tsc = cov.goal(cov.CampaignConfig(frozenset({"tsc"}), stalls=True, faults=False))
    shapes_tsc = cov.config_goal(cov.CampaignConfig(frozenset({"tsc"}), stalls=True, faults=False))
    assert "count" not in shapes_tsc["config.readout"] and only_tsc["fault"] == []
    assert "buffer-B-written" not in only_tsc["spk"]
    assert "tsc-off-at-Q" in only_tsc["spk"] and "residual-above-threshold" not in only_tsc["st"]
    no_stalls = cov.goal(cov.CampaignConfig(frozenset({"rate"}), stalls=False, faults=True))
    assert "held" not in no_stalls["result"] and "offered-while-busy" in no_stalls["x"]
    assert campaign_config(["rate"], 0.3, [1, 2, 3]).faults is False
    assert campaign_config(["rate"], 0.0, [4]) == cov.CampaignConfig(frozenset({"rate"}), stalls=False, faults=True)
    hits = cov.merge(None, {"x": {"offered-while-busy": 2}})
    assert "x/offered-while-busy" not in cov.missed(hits, cov.CampaignConfig(frozenset({"rate"})))
    assert "x/starved" in cov.missed(hits, cov.CampaignConfig(frozenset({"rate"})))
    with pytest.raises(KeyError, match="no bin"):
        cov.hit("x", "nonsense")


def test_short_campaign_every_coding_on_verilator():
    # seeds covering tsc, stcb and rate (and the protocol faults: seed % 4 == 0)
    seeds = [1033, 1075, 1060]
    c = run_campaign(seeds, jobs=2, progress=False, log=lambda *_: None)
    s = c.summary()
    assert s["mismatches"] == 0, s["failures"]
    assert s["networks"] == 3 and s["lint_clean"] == 3 and s["samples"] >= 3 * SAMPLES_PER_NETLIST
    assert s["faults_injected"] == 3
    hits = s["coverage"]
    # sampled from what the hardware did: the concurrent source offered beats while the core was busy,
    # the sink held beats, the op trace saw null ops, the netlists' codings ran
    assert hits["x"]["offered-while-busy"] > 0 and hits["result"]["held"] > 0 and hits["x"]["back-to-back"] > 0
    assert hits["op"]["null-op"] > 0 and hits["fault"]["wrong-last-flagged"] == 1
    assert {b for b, n in s["shapes"]["config.coding"].items() if n} == {"rate", "stcb", "tsc"}


def test_every_bad_input_is_rejected():
    r = bad_input_campaign()
    assert r["bad_input_failures"] == []
    assert r["bad_inputs_tried"] == r["bad_inputs_rejected"] >= 60


def test_conv_draws_cover_the_shapes_the_core_runs():
    """sim.fuzz --conv: over 60 seeds the drawn convolutional networks have kernels 1 to 5, strides 1
    and 2, padding, pools, channel counts that are not multiples of P, non-square maps, both input
    encodings and zero resets; and a seed's dense network does not change when --conv is given."""
    from sim.fuzz import random_conv_network
    seen = {"K": set(), "S": set(), "pad": False, "pool": False, "ch%P": False, "nonsquare": False,
            "enc": set(), "zero": False}
    for seed in range(60):
        model, x, lanes, info = random_conv_network(seed)
        assert x.shape == (SAMPLES_PER_NETLIST, model.n_in) and x.min() >= 0 and x.max() <= model.input_max
        CoreGeometry(model, lanes)                   # the core accepts every draw
        seen["enc"].add(model.encoding)
        for l in model.layers:
            seen["zero"] |= l.reset == "zero"
            if l.kind == "conv2d":
                seen["K"].add(l.kernel)
                seen["S"].add(l.stride)
                seen["pad"] |= l.padding > 0
                seen["ch%P"] |= l.out_shape[0] % lanes != 0
                seen["nonsquare"] |= l.in_shape[1] != l.in_shape[2]
            seen["pool"] |= l.kind == "maxpool2d"
    assert seen["K"] == {1, 2, 3, 4, 5} and seen["S"] == {1, 2} and seen["enc"] == {"rate", "direct"}
    assert seen["pad"] and seen["pool"] and seen["ch%P"] and seen["nonsquare"] and seen["zero"]
    for seed in range(20):
        m0 = random_network(seed, ("rate",))[0]
        m1 = random_network(seed, ("rate",), 0.5)[0]
        assert m1 == m0 or any(l.kind != "dense" for l in m1.layers)


def test_tsc_conv_draws_are_tsc_networks_the_core_runs():
    """sim.fuzz --conv draws tsc conv networks too (the core runs tsc conv2d and maxpool2d): the tsc
    input generator, membrane readout, no initial membrane, input_max < T; kernels, strides and pools
    vary; a multi-coding campaign draws both codings, a rate-only one only rate."""
    from sim.fuzz import random_conv_network
    seen = {"K": set(), "S": set(), "pool": False}
    for seed in range(40):
        model, x, lanes, info = random_conv_network(seed, "tsc")
        assert model.coding == "tsc" and model.encoding == "tsc" and model.readout == "membrane"
        assert model.input_max < model.T and info["coding"] == "tsc"
        assert x.shape == (SAMPLES_PER_NETLIST, model.n_in) and x.max() <= model.input_max
        CoreGeometry(model, lanes)
        for l in model.layers:
            assert l.kind == "maxpool2d" or (not np.any(l.v_init) and l.reset == "subtract")
            if l.kind == "conv2d":
                seen["K"].add(l.kernel)
                seen["S"].add(l.stride)
            seen["pool"] |= l.kind == "maxpool2d"
    assert seen["K"] == {1, 2, 3, 4, 5} and seen["S"] == {1, 2} and seen["pool"]
    codings = {random_network(s, ("rate", "stcb", "tsc"), 0.99)[0].coding for s in range(30)}
    assert codings == {"rate", "stcb", "tsc"}
    assert {random_network(s, ("rate",), 0.99)[0].coding for s in range(10)} == {"rate"}
    with pytest.raises(ValueError, match="coding must be one of rate, stcb, tsc"):
        random_conv_network(0, "direct")


def test_conv_draws_in_stcb_have_kernels_and_both_codings_are_drawn():
    """sim.fuzz --conv also draws stcb conv networks (with STEB kernels of several taps on some layers),
    which the core accepts; a campaign of rate and stcb draws both; a rate-only campaign only rate."""
    from sim.fuzz import random_conv_network
    taps = set()
    for seed in range(30):
        model, x, lanes, info = random_conv_network(seed, "stcb")
        assert model.coding == info["coding"] == "stcb"
        CoreGeometry(model, lanes)
        taps |= {len(l.h) for l in model.layers if hasattr(l, "h") and list(l.h) != [1]}
    assert taps == {1, 2, 3}
    both = {random_network(seed, ("rate", "stcb"), 0.99)[3]["coding"] for seed in range(20)}
    assert both == {"rate", "stcb"}
    assert {random_network(seed, ("rate", "tsc"), 0.99)[3]["coding"] for seed in range(20)} <= {"rate", "tsc"}


def _shapes_of(seeds, codings, conv):
    """The configuration bins the networks of ``seeds`` have, from their geometry's manifest parameters
    (what sim.fuzz reads after generating each netlist), without building anything."""
    shapes = cov.merge(None, {}, cov.CONFIG_POINTS)
    for seed in seeds:
        model, _, lanes, _ = random_network(seed, codings, conv)
        shapes = cov.merge(shapes, cov.config_hits(CoreGeometry(model, lanes).parameters()), cov.CONFIG_POINTS)
    return shapes


@pytest.mark.parametrize("codings", [("rate", "stcb", "tsc"), ("rate",), ("stcb",), ("tsc",)])
def test_a_conv_campaign_can_close_its_shape_goal(codings):
    """The shape goal of a conv campaign asks only for what its generators draw, and they draw all of it:
    `--coding rate,stcb,tsc --conv 0.99` once exited 1 on config.lanes/64, config.layers/1 and
    config.leak/on, which conv draws never had (the goal was that of dense campaigns)."""
    from sim.fuzz import _conv_coding
    seeds = [s for s in range(400) if _conv_coding(s, codings, 0.99) is not None][:120]
    cfg = campaign_config(codings, 0.3, seeds, 0.99)
    assert cfg.conv and 1 not in cfg.layers and 64 in cfg.lanes
    assert cov.config_missed(_shapes_of(seeds, codings, 0.99), cfg) == []
    # the shards: every shape bin each one's goal asks for is drawn, a dense seed (319) included
    for lo, hi in [(300, 350), (350, 402)]:
        cfg = campaign_config(("rate", "stcb", "tsc"), 0.3, range(lo, hi), 0.99)
        assert cov.config_missed(_shapes_of(range(lo, hi), ("rate", "stcb", "tsc"), 0.99), cfg) == []


def test_the_generators_draw_exactly_their_declared_lanes_and_layers():
    """campaign_config's lanes and layers are the generators' envelopes: the draws fill them exactly, so the
    goal can neither ask for what is never drawn nor miss what is."""
    from sim.fuzz import CONV_LANES, CONV_LAYERS, DENSE_LANES, DENSE_LAYERS, random_conv_network
    def goal(lanes, layers):
        c = cov.CampaignConfig(frozenset({"rate"}), lanes=frozenset(lanes), layers=frozenset(layers))
        return {p: b for p, b in cov.config_goal(c).items() if p in ("config.lanes", "config.layers")}
    conv = [random_conv_network(s, c) for s in range(150) for c in ("rate", "stcb", "tsc")]
    lanes, layers = {n[2] for n in conv}, {len(n[0].layers) for n in conv}
    # six layers (two conv2d, two pools, two dense) are drawn too, but rarely (9 in 4500 draws)
    assert lanes == set(CONV_LANES) and layers <= set(CONV_LAYERS) and max(layers) >= 4
    assert goal(lanes, layers) == goal(CONV_LANES, CONV_LAYERS)
    dense = [random_network(s) for s in range(300)]
    assert {n[2] for n in dense} == set(DENSE_LANES) and {len(n[0].layers) for n in dense} == set(DENSE_LAYERS)
    assert campaign_config(["rate"], 0.3, range(8)) == cov.CampaignConfig(frozenset({"rate"}), faults=True)
    # a dense seed in a conv campaign brings the dense envelope with it; conv-only seeds do not
    assert campaign_config(["rate", "stcb", "tsc"], 0.3, [319], 0.99).layers == frozenset(DENSE_LAYERS)
    assert campaign_config(["rate", "stcb", "tsc"], 0.3, [320], 0.99).layers == frozenset(CONV_LAYERS)
    layers = cov.config_hits({"coding": "rate", "encoding": "rate", "readout": "count", "lanes": 2,
                              "sizes": [9, 5, 5, 5, 5, 4]})["config.layers"]
    assert layers == {"1": 0, "2-3": 0, "4+": 1}              # five layers were once counted as "2-3"


def test_conv_draws_leak_where_the_core_runs_a_leak():
    """random_conv_network draws a leak on rate conv2d layers and on rate and stcb dense layers, never on
    stcb conv2d (the core refuses it) or tsc layers, and the core accepts every draw."""
    from sim.fuzz import random_conv_network
    where = set()
    for seed in range(60):
        for coding in ("rate", "stcb", "tsc"):
            model, _, lanes, info = random_conv_network(seed, coding)
            CoreGeometry(model, lanes)
            where |= {(coding, l.kind) for l in model.layers if getattr(l, "leak", None) is not None}
            assert info["leaks"] == [list(l.leak) if getattr(l, "leak", None) is not None else None
                                     for l in model.layers]
    assert where == {("rate", "conv2d"), ("rate", "dense"), ("stcb", "dense")}


def test_shards_merge_into_one_campaign(tmp_path):
    """sim.fuzz --merge adds up shards run one after another and checks the joined goal; a seed in two
    shards is refused."""
    from golden.cli import UsageError
    from sim.fuzz import Campaign, merge_campaigns

    def shard(name, seeds, conv_hits):
        c = Campaign(config=campaign_config(["rate"], 0.3, seeds, 0.99), networks=len(seeds), samples=32 * len(seeds))
        c.coverage = cov.merge(None, {"scatter": {"no-valid-offset": conv_hits}})
        c.per_network = [{"seed": s} for s in seeds]
        p = tmp_path / name
        p.write_text(__import__("json").dumps({**c.summary(), "networks_detail": c.per_network}))
        return p
    a, b = shard("a.json", [1, 2], 3), shard("b.json", [5, 6, 7], 4)
    m = merge_campaigns([a, b])
    assert m.networks == 5 and m.samples == 160 and m.coverage["scatter"]["no-valid-offset"] == 7
    assert m.config.faults is False and m.config.conv and [n["seed"] for n in m.per_network] == [1, 2, 5, 6, 7]
    with pytest.raises(UsageError, match="seed 2 is in two shards"):
        merge_campaigns([a, shard("c.json", [2, 9], 1)])


@pytest.mark.parametrize("seed, coding", [(2, "rate"), (6, "rate"), (17, "stcb"), (35, "stcb"),
                                         (3, "tsc"), (5, "tsc")])
def test_conv_fuzz_networks_match_golden_in_the_amaranth_simulator(seed, coding):
    from core_check import run_both
    from sim.fuzz import random_conv_network
    model, x, lanes, _ = random_conv_network(seed, coding)
    run_both(model, x[:4], lanes)
