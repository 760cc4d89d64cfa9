"""``python -m sim.fuzz``: constrained-random verification of generated cores against golden.

Each seed draws a random integer network: coding, encoding, readout, 1-4 layers of 1-300 neurons,
2-16-bit weights, T 1-32, lanes, and an extreme mode (all-max or all-negative weights, threshold 1
or at its maximum). Every netlist is linted, built once with Verilator and streams at least
``SAMPLES_PER_NETLIST`` samples (random ones plus adversarial ones: all-zero, saturated, and samples
that drive chosen first-layer neurons to their largest and smallest currents) with independent random
stalls on both streams; every sample's outputs and counters must equal golden, and the testbench's
hazard and stream checks must stay silent. Every fourth network also takes protocol faults (reset
mid-inference, a misplaced `last`, an out-of-range value). Functional coverage is sampled from the
hardware (handshakes, the spike monitor, the state and op traces; see sim.coverage) and summed over
the campaign; the run fails if a bin its configuration can reach is never hit. A failing network is
shrunk to its first failing sample and saved under build/fuzz/ with a one-line replay command.
"""

from __future__ import annotations

import json
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import golden
from golden import Dense, Model, ModelError
from golden.model import Conv2d, MaxPool2d
from golden.cli import (ArgumentParser, Output, OutputSet, UsageError, check_outputs, choice_list, error_line, guard,
                        positive_int, probability, seed_int)
from golden.progress import Progress

from . import coverage as cov

__all__ = ["SAMPLES_PER_NETLIST", "random_network", "adversarial_samples", "Campaign", "run_campaign",
           "campaign_config"]

ROOT = Path(__file__).resolve().parents[1]

# the Verilator build is the expensive part; a sample costs milliseconds
SAMPLES_PER_NETLIST = 32


def _sizes(rng: random.Random, n: int) -> list[int]:
    # mostly small (fast builds), sometimes up to 300
    return [rng.choice([rng.randint(1, 12), rng.randint(1, 40), rng.randint(1, 300) if rng.random() < 0.15
                        else rng.randint(1, 24)]) for _ in range(n)]


#: the codings whose conv2d and maxpool2d layers the core runs, and so --conv draws
CONV_CODINGS = ("rate", "stcb", "tsc")

# What each generator can draw: the lane counts and layer counts of its networks. A campaign's shape goal
# (campaign_config) asks only for the lanes and layers the generators its seeds use can produce; the
# tests check that the draws fill these envelopes exactly, so the goal and the generators cannot drift.
#: random_network's dense networks: 1-4 layers, P 1-64
DENSE_LANES = (1, 2, 4, 8, 16, 32, 64)
DENSE_LAYERS = (1, 2, 3, 4)
#: random_conv_network: 1-2 conv2d layers (each maybe followed by a maxpool2d), then 1-2 dense layers;
#: P 1-16, and on some seeds 32 or 64 (a word of P channels at one position, mostly padding lanes)
CONV_LANES = (1, 2, 4, 8, 16, 32, 64)
CONV_LAYERS = (2, 3, 4, 5, 6)


def random_conv_network(seed: int, coding: str = "rate") -> tuple[Model, np.ndarray, int, dict]:
    """A random convolutional network in ``coding``: 1-2 conv layers with kernels 1-5, strides 1-2 and
    any padding < K, channel counts drawn regardless of P (P 1-16; on a fifth of the seeds, from a
    generator of its own, 32 or 64), non-square maps, a 2x2 or 3x3 pool where the map allows, then 1-2
    dense layers. Rate and stcb: rate or direct input (direct: one input channel),
    either readout, either reset per layer; stcb: an STEB kernel of 1-3 taps on some layers (drawn from
    a generator of its own, so the rest of a seed's network is the same in both codings). tsc: the tsc
    input generator, membrane readout, no reset or initial membrane (the integer ANN). A rate seed draws
    what it drew before stcb and tsc existed. A leak on some rate conv2d layers and on some rate and
    stcb dense layers (the core refuses a leak on stcb conv2d layers, the model on tsc layers), drawn
    from a generator of its own too, so every other draw of a seed is what it was before leaks."""
    if coding not in CONV_CODINGS:
        raise ValueError(f"coding must be one of {', '.join(CONV_CODINGS)}, not {coding!r}")
    tsc = coding == "tsc"
    rng = random.Random(f"conv {seed}" if not tsc else f"conv {coding} {seed}")
    hrng = random.Random(f"conv kernel {seed}")
    lrng = random.Random(f"conv leak {seed}")
    nprng = np.random.default_rng([seed, 7] if not tsc else [seed, 7, 2])
    for _ in range(100):
        encoding = rng.choice(["rate", "direct"])
        C = 1 if encoding == "direct" else rng.choice([1, 1, 2, 3])
        shape = (C, rng.randint(3, 12), rng.randint(3, 12))
        in_shape = shape
        wb = rng.randint(3, 10)
        lim = 1 << (wb - 1)
        T = rng.randint(1, 8)
        input_max = rng.randint(1, 63)
        if tsc:                                   # the tsc window: input_max + 1 <= T (Q = T - 1)
            encoding, T = "tsc", rng.randint(2, 24)
            input_max = rng.randint(1, T - 1)
        layers = []

        def kernel() -> tuple:
            if coding != "stcb" or hrng.random() >= 0.5:
                return (1,)
            h = tuple(hrng.randint(-2, 2) for _ in range(hrng.randint(1, min(3, T))))
            return h if any(h) else (1,)

        def leak(kind: str):
            # as random_network's leak_of: num < 2**16 keeps v_bits + bits(num) <= 64 and a leak only narrows
            # the membrane range, so it never makes a valid network invalid (a redraw would change the seed)
            if tsc or (coding == "stcb" and kind == "conv2d") or lrng.random() >= 0.3:
                return None
            shift = lrng.choice([0, 1, 2, 3, 4, 5, 8, 16])
            num = lrng.choice([0, 1 << shift, lrng.randint(0, 1 << shift)])
            return (min(num, (1 << 16) - 1), shift)

        def neuron_params(n, fan_in):
            scale = max(1, int(lim * fan_in * 0.5) // max(1, rng.randint(1, 6)))
            b, th, v0 = (nprng.integers(-lim // 2, lim // 2 + 1, n), nprng.integers(1, scale + 1, n),
                         nprng.integers(-lim, lim, n))
            reset = "zero" if rng.random() < 0.3 else "subtract"
            return (b, th, 0, "subtract") if tsc else (b, th, v0, reset)
        try:
            for _ in range(rng.choice([1, 1, 2])):
                K = rng.randint(1, min(5, shape[1] + 2, shape[2] + 2))
                S, pad = rng.choice([1, 1, 2]), rng.randint(0, K - 1)
                if (shape[1] + 2 * pad - K) < 0 or (shape[2] + 2 * pad - K) < 0:
                    continue
                co = rng.randint(1, 12)
                b, th, v0, reset = neuron_params(co, shape[0] * K * K)
                layers.append(Conv2d(nprng.integers(-lim, lim, (co, shape[0], K, K)), b, th, v0, kernel(),
                                     in_shape=shape, stride=S, padding=pad, reset=reset, leak=leak("conv2d")))
                shape = layers[-1].out_shape
                ks = [k for k in (2, 3) if shape[1] % k == 0 and shape[2] % k == 0]
                if ks and rng.random() < 0.5:
                    layers.append(MaxPool2d(rng.choice(ks), in_shape=shape))
                    shape = layers[-1].out_shape
            if not layers:
                continue
            n = int(np.prod(shape))
            for n_out in [rng.randint(1, 16) for _ in range(rng.choice([1, 1, 2]))]:
                b, th, v0, reset = neuron_params(n_out, n)
                layers.append(Dense(nprng.integers(-lim, lim, (n_out, n)), b, th, v0, kernel(), reset=reset,
                                    leak=leak("dense")))
                n = n_out
            readout = rng.choice(["count", "membrane"])
            model = Model(layers, coding=coding, T=T, encoding=encoding, input_max=input_max,
                          readout="membrane" if tsc else readout, weight_bits=wb)
        except ModelError:
            continue
        lanes = rng.choice([1, 2, 4, 8, 16])
        wide = random.Random(f"conv lanes {seed}")   # a generator of its own: the other draws stay what they were
        if wide.random() < 0.2:
            lanes = wide.choice([32, 64])
        x = adversarial_samples(model, nprng)
        info = {"seed": seed, "mode": "conv", "sizes": model.sizes, "coding": coding, "T": T, "lanes": lanes,
                "weight_bits": wb, "resets": [l.reset for l in model.layers],
                "leaks": [list(l.leak) if l.leak is not None else None for l in model.layers],
                "input_shape": list(in_shape), "layers": [repr(l) for l in model.layers]}
        return model, x, lanes, info
    raise RuntimeError(f"seed {seed}: no valid conv network in 100 draws")


def _conv_coding(seed: int, codings, conv: float) -> str | None:
    """The coding of the conv network ``seed`` draws in a campaign of ``codings`` with ``--conv conv``,
    or None when it draws a dense network."""
    conv_codings = [c for c in CONV_CODINGS if c in codings]
    if conv_codings and conv > 0 and random.Random(f"conv? {seed}").random() < conv:
        return random.Random(f"conv coding {seed}").choice(conv_codings)
    return None


def random_network(seed: int, codings=("rate", "stcb", "tsc"), conv: float = 0.0) -> tuple[Model, np.ndarray, int, dict]:
    """A random valid network, its input samples, the lane count and what was drawn. With probability
    ``conv`` (drawn from a generator of its own, so a seed's dense network does not change with it) the
    seed draws a convolutional network instead (:func:`random_conv_network`), in one of the campaign's
    codings (chosen by a generator of its own too)."""
    conv_coding = _conv_coding(seed, codings, conv)
    if conv_coding is not None:
        return random_conv_network(seed, conv_coding)
    rng = random.Random(seed)
    nprng = np.random.default_rng(seed)
    for _ in range(100):
        coding = rng.choice(list(codings))
        n_layers = rng.choice([1, 1, 2, 2, 3, 4])
        sizes = _sizes(rng, n_layers + 1)
        wb = rng.randint(2, 16)
        lim = 1 << (wb - 1)
        if coding == "tsc":
            input_max = rng.randint(1, 40)
            T = rng.randint(2, min(32, input_max + 1))
            encoding, readout = "tsc", "membrane"
        else:
            input_max = rng.randint(1, 255)
            T = rng.randint(1, 32 if coding == "rate" else 12)
            encoding = rng.choice(["rate", "direct"])
            readout = rng.choice(["count", "membrane"])
        mode = rng.choice(["random"] * 4 + ["all-max", "all-negative", "threshold-1", "threshold-max"])
        # reset to zero on some spiking layers; drawn from a generator of its own, so every other draw of a
        # seed (and so the networks earlier campaigns found by seed) stays what it was
        zrng = random.Random(f"reset {seed} {len(sizes)}")

        def reset_of(_layer: int) -> str:
            return "zero" if coding != "tsc" and zrng.random() < 0.3 else "subtract"
        # a leak on some spiking layers, from a generator of its own for the same reason: a leak only narrows
        # the membrane range, and num < 2**16 keeps v_bits + bits(num) <= 64, so it never makes a valid
        # network invalid (a redraw would change the seed's later draws)
        lrng = random.Random(f"leak {seed} {len(sizes)}")

        def leak_of(_layer: int):
            if coding == "tsc" or lrng.random() >= 0.3:
                return None
            shift = lrng.choice([0, 1, 2, 3, 4, 5, 8, 16])
            num = lrng.choice([0, 1 << shift, lrng.randint(0, 1 << shift)])
            return (min(num, (1 << 16) - 1), shift)
        layers = []
        for a, b in zip(sizes, sizes[1:]):
            if mode == "all-max":
                w = np.full((b, a), lim - 1)
            elif mode == "all-negative":
                w = nprng.integers(-lim, 0, (b, a))
            else:
                w = nprng.integers(-lim, lim, (b, a))
            scale = max(1, int(np.abs(w).sum(axis=1).max()) // max(1, rng.randint(1, 8)))
            thr = {"threshold-1": np.ones(b, int), "threshold-max": np.full(b, lim * a)}.get(
                mode, nprng.integers(1, scale + 1, b))
            bias = nprng.integers(-lim, lim, b)
            v0 = 0 if coding == "tsc" else nprng.integers(-lim, lim, b)
            h = (1,)
            if coding == "stcb" and rng.random() < 0.5:
                h = tuple(int(v) for v in nprng.integers(-2, 3, rng.randint(1, min(3, T))))
                if not any(h):
                    h = (1,)
            layers.append(Dense(w, bias, thr, v0, h=h, reset=reset_of(len(layers)), leak=leak_of(len(layers))))
        try:
            model = Model(layers, coding=coding, T=T, encoding=encoding, input_max=input_max, readout=readout,
                          weight_bits=wb)
        except ModelError:
            continue                      # e.g. widths beyond 48 bits: draw again
        lanes = rng.choice(list(DENSE_LANES)) if max(sizes) > 8 else rng.choice([1, 2, 4, 8, 64])
        x = adversarial_samples(model, nprng)
        info = {"seed": seed, "mode": mode, "sizes": sizes, "coding": coding, "T": T, "lanes": lanes,
                "weight_bits": wb, "resets": [l.reset for l in model.layers],
                "leaks": [list(l.leak) if l.leak is not None else None for l in model.layers]}
        return model, x, lanes, info
    raise RuntimeError(f"seed {seed}: no valid network in 100 draws")


def adversarial_samples(model: Model, rng: np.random.Generator, n: int = SAMPLES_PER_NETLIST) -> np.ndarray:
    """``n`` samples: all-zero, saturated, then for a few first-layer neurons the input that drives
    their current to its largest value (every input with a positive weight at input_max, the others
    at 0) and to its smallest (the opposite), so membranes reach the bounds of the width analysis;
    the rest uniformly random."""
    M, l0 = model.input_max, model.layers[0]
    rows = [np.zeros(model.n_in, np.int64), np.full(model.n_in, M, np.int64)]
    if l0.kind == "conv2d":
        # a conv neuron (o, oy, ox): its receptive field at input_max where the kernel is positive (or
        # negative), everything else 0
        C, H, W = l0.in_shape
        K, S, p = l0.kernel, l0.stride, l0.padding
        Co, Ho, Wo = l0.out_shape
        for _ in range(max(1, (n - 2) // 4)):
            o, oy, ox = int(rng.integers(Co)), int(rng.integers(Ho)), int(rng.integers(Wo))
            for sign in (1, -1):
                img = np.zeros((C, H, W), np.int64)
                for c in range(C):
                    for ky in range(K):
                        for kx in range(K):
                            y, x = oy * S + ky - p, ox * S + kx - p
                            if 0 <= y < H and 0 <= x < W and sign * l0.weight[o, c, ky, kx] > 0:
                                img[c, y, x] = M
                rows.append(img.reshape(-1))
    else:
        w = l0.weight
        for j in rng.permutation(w.shape[0])[:max(1, (n - 2) // 4)]:
            rows.append(np.where(w[j] > 0, M, 0))
            rows.append(np.where(w[j] < 0, M, 0))
    while len(rows) < n:
        rows.append(rng.integers(0, M + 1, model.n_in))
    return np.array(rows[:n], dtype=np.int64)


def campaign_config(codings, stall_prob: float, seeds, conv: float = 0.0) -> cov.CampaignConfig:
    """What a campaign can reach: its codings, whether it stalls, whether any seed takes the faults,
    whether any seed draws a conv network, and the lane and layer counts of the generators its seeds use
    (a seed's choice of generator is known before it draws: :func:`_conv_coding`). A conv-only campaign
    is not asked for a one-layer network or P = 64, which random_conv_network never draws."""
    seeds = list(seeds)
    kinds = {_conv_coding(s, codings, conv) is not None for s in seeds}
    lanes, layers = set(), set()
    if True in kinds:
        lanes |= set(CONV_LANES)
        layers |= set(CONV_LAYERS)
    if False in kinds or not seeds:
        lanes |= set(DENSE_LANES)
        layers |= set(DENSE_LAYERS)
    return cov.CampaignConfig(frozenset(codings), stalls=stall_prob > 0,
                              faults=any(s % 4 == 0 for s in seeds), conv=True in kinds,
                              lanes=frozenset(lanes), layers=frozenset(layers))


@dataclass
class Campaign:
    networks: int = 0
    samples: int = 0
    faults_injected: int = 0
    lint_clean: int = 0
    mismatches: int = 0
    config: cov.CampaignConfig = field(default_factory=lambda: cov.CampaignConfig(frozenset({"rate", "stcb", "tsc"})))
    coverage: dict = field(default_factory=lambda: cov.merge(None, {}))
    shapes: dict = field(default_factory=lambda: cov.merge(None, {}, cov.CONFIG_POINTS))
    failures: list = field(default_factory=list)
    per_network: list = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> dict:
        goal = cov.goal(self.config)
        total = sum(len(b) for b in goal.values())
        missed = cov.missed(self.coverage, self.config)
        sgoal = cov.config_goal(self.config)
        stotal = sum(len(b) for b in sgoal.values())
        smissed = cov.config_missed(self.shapes, self.config)
        return {"networks": self.networks, "samples": self.samples, "faults_injected": self.faults_injected,
                "lint_clean": self.lint_clean, "mismatches": self.mismatches,
                "coverage_hit": total - len(missed), "coverage_total": total,
                "coverage": self.coverage, "coverage_goal": goal, "missed_coverage": missed,
                # the network shapes the campaign built (manifests): a table of its own, not functional bins
                "shapes_hit": stotal - len(smissed), "shapes_total": stotal, "shapes": self.shapes,
                "shapes_goal": sgoal, "missed_shapes": smissed,
                "campaign": {"codings": sorted(self.config.codings), "stalls": self.config.stalls,
                             "faults": self.config.faults, "conv": self.config.conv,
                             "lanes": sorted(self.config.lanes), "layers": sorted(self.config.layers)},
                "failures": self.failures, "seconds": self.seconds}


def _save_reproducer(model: Model, x: np.ndarray, lanes: int, info: dict, why: str) -> Path:
    d = ROOT / "build" / "fuzz" / f"seed{info['seed']}"
    d.mkdir(parents=True, exist_ok=True)
    golden.save_model(model, d / "model.npz")
    np.save(d / "inputs.npy", x)
    (d / "repro.json").write_text(json.dumps({**info, "lanes": lanes, "why": why,
                                              "replay": f"python -m sim.fuzz --replay {d}"}, indent=2))
    return d


def check_network(model: Model, x: np.ndarray, lanes: int, info: dict, *, stall_prob: float, faults: bool,
                  name: str) -> tuple[dict, str | None]:
    """Lint, build, run with stalls (and faults); returns (run facts, first mismatch or None)."""
    from hw.generate import generate
    from .regress import compare
    from .runner import SimHang, build, cycle_budget, run_job
    from .tb import state_words
    from .toolchain import lint
    vdir = ROOT / "build" / "fuzz-verilog" / name
    v, j = generate(model, lanes, vdir, name)
    man = json.loads(j.read_text())
    lr = lint(v, name)
    run = {"lint_clean": lr.returncode == 0, "faults": []}
    if lr.returncode:
        return run, f"lint failed: {lr.stderr.strip().splitlines()[0] if lr.stderr.strip() else lr.returncode}"
    b = build(v, name, fast=True)
    g = golden.run(model, x, lanes=lanes)
    budget = cycle_budget(int(g.counters["cycles"].sum()), len(x) * (model.n_in + model.n_out), stall_prob)
    job = {"manifest": man, "inputs_array": x, "stall_prob": stall_prob, "seed": info["seed"],
           "max_cycles": budget, "coverage": True, "state_words": state_words(model, lanes)}
    try:
        rtl = run_job(b, job)
    except SimHang as e:
        return run, f"hang: {e}"
    run["stall_cycles"] = int(rtl["stall_cycles"])
    run["busy_offers"] = int(rtl["busy_offers"])
    run["coverage"] = rtl["coverage"]
    run["shapes"] = cov.config_hits(man["parameters"])
    verdicts, bad = compare(model, lanes, rtl, g)
    if any(bad.values()):
        i = next(k for k, v in enumerate(verdicts) if v)
        return run, f"sample {i}: {', '.join(verdicts[i])}"
    if rtl["violations"]:
        return run, f"testbench check: {rtl['violations'][0]}"
    if int(rtl["err_range"]) or int(rtl["err_protocol"]):
        return run, "error flag raised on valid input"
    if faults:
        try:
            r = run_job(b, {**job, "inputs_array": x[:1], "reset_after": 3 + info["seed"] % 11, "stall_prob": 0.0},
                        testcase="protocol_abuse")
        except SimHang as e:
            return run, f"hang in the protocol-fault test: {e}"
        run["coverage"] = cov.merge(cov.merge(None, run["coverage"]), r["coverage"])
        g1 = golden.run(model, x[:1], lanes=lanes)
        ok = (r["after_reset_flags"].tolist() == [0, 0] and r["membranes"].tolist() == g1.membranes.tolist()
              and r["cnt_cycles"].tolist() == g1.counters["cycles"].tolist())
        flags_ok = int(r["protocol_flag"]) == 1 and int(r["range_flag"]) == 1
        final_ok = (r["final_flags"].tolist() == [0, 0]
                    and r["final_membranes"].tolist() == g1.membranes.tolist())
        run["faults"] = ["reset-mid-inference", "wrong-last", "out-of-range-value"]
        if not (ok and flags_ok and final_ok):
            return run, "protocol fault handling differs from the contract"
    return run, None


def shrink(model: Model, x: np.ndarray, lanes: int, info: dict, why: str) -> tuple[np.ndarray, str]:
    """Reduce the inputs to the first failing sample (re-checked); networks are kept whole."""
    if why.startswith("sample "):
        i = int(why.split()[1].rstrip(":"))
        xs = x[i:i + 1]
        _, again = check_network(model, xs, lanes, info, stall_prob=0.0, faults=False, name=f"shrink{info['seed']}")
        if again:
            return xs, again
    return x, why


def _one(seed: int, codings, stall_prob: float, conv: float = 0.0) -> dict:
    """Check one random network (runs in a worker process)."""
    model, x, lanes, info = random_network(seed, codings, conv)
    run, why = check_network(model, x, lanes, info, stall_prob=stall_prob, faults=seed % 4 == 0, name=f"fz{seed}")
    failure = None
    if why:
        xs, why2 = shrink(model, x, lanes, info, why)
        failure = {"seed": seed, "why": why2, "reproducer": str(_save_reproducer(model, xs, lanes, info, why2))}
    return {"info": info, "samples": len(x), "run": run, "why": why, "coverage": run.get("coverage") or {},
            "failure": failure}


def run_campaign(seeds, *, codings=("rate", "stcb", "tsc"), stall_prob: float = 0.3, log=print,
                 progress: bool = True, jobs: int = 1, conv: float = 0.0) -> Campaign:
    """Check every seed's network; ``jobs`` worker processes build and simulate in parallel."""
    from concurrent.futures import ProcessPoolExecutor, as_completed
    seeds = list(seeds)
    c = Campaign(config=campaign_config(codings, stall_prob, seeds, conv))
    t0 = time.perf_counter()
    bar = Progress(len(seeds), "fuzz", "networks", enabled=progress)

    def absorb(r: dict) -> None:
        c.networks += 1
        c.samples += r["samples"]
        c.lint_clean += int(r["run"]["lint_clean"])
        c.faults_injected += len(r["run"]["faults"])
        c.coverage = cov.merge(c.coverage, r["coverage"])
        c.shapes = cov.merge(c.shapes, r["run"].get("shapes") or {}, cov.CONFIG_POINTS)
        c.per_network.append({**r["info"], "n_samples": r["samples"], "ok": r["why"] is None})
        if r["failure"]:
            c.mismatches += 1
            c.failures.append(r["failure"])
            log(f"seed {r['failure']['seed']}: MISMATCH {r['failure']['why']}; reproducer {r['failure']['reproducer']}")
        bar.update(1)
        bar.set_postfix(mismatches=c.mismatches)

    if jobs <= 1:
        for seed in seeds:
            absorb(_one(seed, codings, stall_prob, conv))
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            futures = [pool.submit(_one, seed, codings, stall_prob, conv) for seed in seeds]
            for f in as_completed(futures):
                absorb(f.result())
    bar.close()
    c.per_network.sort(key=lambda n: n["seed"])
    c.seconds = time.perf_counter() - t0
    return c


def merge_campaigns(paths) -> Campaign:
    """One campaign from the summaries (``--json``) of shards run one after another: counts, coverage and
    shapes added up, the goal that of the shards' configurations together (codings, lanes and layers
    joined), seconds the sum of the shards'. A seed in two shards is refused (it would count twice)."""
    c, seen, configs = Campaign(), set(), []
    for p in paths:
        try:
            d = json.loads(Path(p).read_text())
        except (OSError, ValueError) as e:
            raise UsageError(f"--merge: cannot read {p}: {e}") from None
        camp = d.get("campaign") if isinstance(d, dict) else None
        if not isinstance(camp, dict) or not {"conv", "lanes", "layers"} <= set(camp) or "networks_detail" not in d:
            raise UsageError(f"--merge: {p} is not a sim.fuzz summary of this version (no campaign lanes, "
                             f"layers and networks_detail); run its seeds again")
        seeds = {n["seed"] for n in d["networks_detail"]}
        if seen & seeds:
            raise UsageError(f"--merge: seed {min(seen & seeds)} is in two shards ({p} and an earlier one)")
        seen |= seeds
        unknown = [f"{q}/{b}" for q, bins in d["shapes"].items() for b in bins
                   if b not in cov.CONFIG_POINTS.get(q, {})]
        if unknown:
            raise UsageError(f"--merge: {p} has shape bins this version does not know ({', '.join(unknown)})")
        configs.append(cov.CampaignConfig(frozenset(camp["codings"]), stalls=camp["stalls"], faults=camp["faults"],
                                          conv=camp["conv"], lanes=frozenset(camp["lanes"]),
                                          layers=frozenset(camp["layers"])))
        for k in ("networks", "samples", "faults_injected", "lint_clean", "mismatches"):
            setattr(c, k, getattr(c, k) + int(d[k]))
        c.coverage = cov.merge(c.coverage, d["coverage"])
        c.shapes = cov.merge(c.shapes, d["shapes"], cov.CONFIG_POINTS)
        c.failures += d["failures"]
        c.per_network += d["networks_detail"]
        c.seconds += float(d["seconds"])
    c.config = cov.CampaignConfig(frozenset().union(*(k.codings for k in configs)),
                                  stalls=any(k.stalls for k in configs), faults=any(k.faults for k in configs),
                                  conv=any(k.conv for k in configs),
                                  lanes=frozenset().union(*(k.lanes for k in configs)),
                                  layers=frozenset().union(*(k.layers for k in configs)))
    c.per_network.sort(key=lambda n: n["seed"])
    return c


def replay(d: Path) -> int:
    d = Path(d)
    meta = json.loads((d / "repro.json").read_text())
    model = golden.load_model(d / "model.npz")
    x = np.load(d / "inputs.npy")
    _, why = check_network(model, x, meta["lanes"], meta, stall_prob=0.0, faults=False, name=f"replay{meta['seed']}")
    print(f"replay {d}: {'MISMATCH ' + why if why else 'passes now'}")
    return 1 if why else 0


def main(argv=None) -> int:
    p = ArgumentParser(prog="python -m sim.fuzz", description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=positive_int, default=20, help="number of random networks (default 20)")
    p.add_argument("--first-seed", type=seed_int, default=0,
                   help="seed of the first network; network i uses seed first-seed + i (default 0)")
    p.add_argument("--coding", type=choice_list(golden.CODINGS, what="codings"), default=list(golden.CODINGS),
                   help=f"comma-separated codings to draw from (default {','.join(golden.CODINGS)})")
    p.add_argument("--stall-prob", type=probability, default=0.3,
                   help="probability in [0, 1) of a random valid/ready stall before each beat (default 0.3)")
    p.add_argument("--json", default="build/fuzz/fuzz.json", metavar="FILE.json",
                   help="campaign summary with every network (default build/fuzz/fuzz.json)")
    p.add_argument("--conv", type=probability, default=0.0,
                   help="probability in [0, 1) that a seed draws a convolutional network (conv2d, maxpool2d, dense) "
                        "in one of the campaign's codings (rate, stcb, tsc); default 0: dense networks only, as "
                        "earlier campaigns")
    p.add_argument("--replay", default=None, help="re-run a saved reproducer directory")
    p.add_argument("--merge", nargs="+", default=None, metavar="SHARD.json",
                   help="add up the --json summaries of shards run one after another (disjoint seeds) into one "
                        "campaign, written to --json and checked like one: no network is run")
    p.add_argument("--no-coverage-check", action="store_true", help="do not fail on missed coverage points")
    p.add_argument("--jobs", type=positive_int, default=2, help="parallel worker processes (default 2)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar or progress lines on stderr")
    a = p.parse_args(argv)
    if a.replay:
        if not (Path(a.replay) / "repro.json").exists():
            raise UsageError(f"--replay: no repro.json in {a.replay}")
        return replay(Path(a.replay))
    if a.merge:
        if Path(a.json).resolve() in {Path(m).resolve() for m in a.merge}:
            raise UsageError(f"--json: {a.json} is one of the --merge shards")
        check_outputs([Output("--json", a.json)])
        c = merge_campaigns(a.merge)
        return _report(c, a.json, a.no_coverage_check, f"merged {len(a.merge)} shards: ")
    if a.first_seed + a.seeds - 1 > 2 ** 32 - 1:
        raise UsageError(f"--seeds: {a.seeds} networks from --first-seed {a.first_seed} run past the last seed "
                         f"4294967295")
    # every output is checked before the first network is drawn
    check_outputs([Output("--json", a.json),
                   Output("reproducer directory", ROOT / "build" / "fuzz", kind="dir")])
    c = run_campaign(range(a.first_seed, a.first_seed + a.seeds), codings=tuple(a.coding),
                     stall_prob=a.stall_prob, jobs=a.jobs, progress=not a.no_progress, conv=a.conv)
    return _report(c, a.json, a.no_coverage_check)


def _report(c: Campaign, json_path: str, no_coverage_check: bool, prefix: str = "") -> int:
    """Write the campaign's summary, print it with every goal bin, and return the exit status."""
    s = c.summary()
    with OutputSet() as files:
        files.add_text(json_path, json.dumps({**s, "networks_detail": c.per_network}, indent=1))
        files.commit()
    print(f"{prefix}{s['networks']} networks, {s['samples']} samples, {s['faults_injected']} protocol faults, "
          f"lint clean {s['lint_clean']}/{s['networks']}, mismatches {s['mismatches']}, "
          f"functional coverage {s['coverage_hit']}/{s['coverage_total']} bins, network shapes "
          f"{s['shapes_hit']}/{s['shapes_total']} ({s['seconds']:.0f} s); wrote {json_path}")
    for point, bins in s["coverage_goal"].items():
        for b in bins:
            n = s["coverage"][point][b]
            print(f"  {'hit ' if n else 'MISS'} {n:>6}  {point}/{b}")
    for point, bins in s["shapes_goal"].items():
        for b in bins:
            n = s["shapes"][point][b]
            print(f"  {'ran ' if n else 'MISS'} {n:>6}  {point}/{b} (networks)")
    if s["mismatches"]:
        return 1
    missed = s["missed_coverage"] + s["missed_shapes"]
    if missed and not no_coverage_check:
        sys.stderr.write(error_line("sim.fuzz", f"coverage incomplete: {', '.join(missed)}"))
        return 1
    return 0


if __name__ == "__main__":
    guard("sim.fuzz", main)
