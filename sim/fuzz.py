"""``python -m sim.fuzz``: constrained-random verification of generated cores against golden.

Each seed draws a random integer network: coding, encoding, readout, 1-4 layers of 1-300 neurons,
2-16-bit weights, T 1-32, lanes, and an extreme mode (all-max or all-negative weights, threshold 1
or at its maximum, zero or saturated inputs). Every distinct netlist is built once with Verilator,
linted, and streamed with random valid/ready stalls; every sample's outputs and counters must equal
golden. Every fourth network also takes protocol faults (reset mid-inference, a misplaced `last`, an
out-of-range value). Functional coverage is sampled from the stimulus and golden's trace; the run
fails if a listed point is never hit. A failing network is shrunk to its first failing sample and
saved under build/fuzz/ with a one-line replay command.
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
from golden import Dense, Model, ModelError, perf
from golden.cli import (ArgumentParser, Output, OutputSet, UsageError, check_outputs, choice_list, error_line, guard,
                        positive_int, probability, seed_int)
from golden.progress import Progress

__all__ = ["COVERAGE_POINTS", "random_network", "coverage_of", "Campaign", "run_campaign"]

ROOT = Path(__file__).resolve().parents[1]

COVERAGE_POINTS = (
    "coding:rate", "coding:stcb", "coding:tsc",
    "encoding:rate", "encoding:direct", "encoding:tsc",
    "readout:count", "readout:membrane",
    "lanes:1", "lanes:64", "lanes:other",
    "layers:1", "layers:4",
    "lane-edge:n_out%P!=0", "lane-edge:n_out<P", "lane-edge:n_in%P!=0",
    "group:no-input-events (null op)", "group:many-events", "update:several-spikes-one-cycle",
    "update:residual-above-threshold", "input:all-zero-sample", "input:saturated-sample",
    "weights:all-max", "weights:all-negative", "threshold:1", "threshold:max",
    "stcb:kernel", "stcb:negative-tap", "tsc:off-at-clip-Q", "tsc:negative-V",
    "fsm:encode-phase", "fsm:no-encode-phase (direct)",
    "hazard:state-RAW-minimum-distance (1 layer, 1 group)", "hazard:acc-reuse-next-group",
    "buffers:A-and-B (>=3 layers)", "stream:input-stalls", "stream:output-stalls", "stream:back-to-back",
    "fault:reset-mid-inference", "fault:wrong-last", "fault:out-of-range-value",
)


def _sizes(rng: random.Random, n: int) -> list[int]:
    # mostly small (fast builds), sometimes up to 300
    return [rng.choice([rng.randint(1, 12), rng.randint(1, 40), rng.randint(1, 300) if rng.random() < 0.15
                        else rng.randint(1, 24)]) for _ in range(n)]


def random_network(seed: int, codings=("rate", "stcb", "tsc")) -> tuple[Model, np.ndarray, int, dict]:
    """A random valid network, its input samples, the lane count and what was drawn."""
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
            layers.append(Dense(w, bias, thr, v0, h=h))
        try:
            model = Model(layers, coding=coding, T=T, encoding=encoding, input_max=input_max, readout=readout,
                          weight_bits=wb)
        except ModelError:
            continue                      # e.g. widths beyond 48 bits: draw again
        lanes = rng.choice([1, 2, 4, 8, 16, 32, 64]) if max(sizes) > 8 else rng.choice([1, 2, 4, 8, 64])
        n = rng.randint(3, 8)
        x = nprng.integers(0, input_max + 1, (n, sizes[0]))
        x[0] = 0
        x[1] = input_max
        info = {"seed": seed, "mode": mode, "sizes": sizes, "coding": coding, "T": T, "lanes": lanes,
                "weight_bits": wb}
        return model, x, lanes, info
    raise RuntimeError(f"seed {seed}: no valid network in 100 draws")


def coverage_of(model: Model, x: np.ndarray, lanes: int, info: dict, g: golden.Result, run: dict) -> set[str]:
    """The functional coverage points this network and its run exercised."""
    hit = {f"coding:{model.coding}", f"encoding:{model.encoding}", f"readout:{model.readout}"}
    hit.add("lanes:1" if lanes == 1 else "lanes:64" if lanes == 64 else "lanes:other")
    if len(model.layers) == 1:
        hit.add("layers:1")
    if len(model.layers) == 4:
        hit.add("layers:4")
    if len(model.layers) >= 3 and model.coding != "tsc":
        hit.add("buffers:A-and-B (>=3 layers)")
    for l in model.layers:
        if l.n_out % lanes:
            hit.add("lane-edge:n_out%P!=0")
        if l.n_out < lanes:
            hit.add("lane-edge:n_out<P")
        if perf.groups(l.n_out, lanes) >= 2:
            hit.add("hazard:acc-reuse-next-group")
        if l.has_kernel:
            hit.add("stcb:kernel")
            if (l.h < 0).any():
                hit.add("stcb:negative-tap")
    if model.n_in % lanes:
        hit.add("lane-edge:n_in%P!=0")
    if len(model.layers) == 1 and perf.groups(model.n_out, lanes) == 1 and model.coding != "stcb":
        hit.add("hazard:state-RAW-minimum-distance (1 layer, 1 group)")
    for ev in g.events_in:
        if (np.asarray(ev) == 0).any():
            hit.add("group:no-input-events (null op)")
        if (np.asarray(ev) >= 4).any():
            hit.add("group:many-events")
    if model.encoding == "direct":
        hit.add("fsm:no-encode-phase (direct)")
    else:
        hit.add("fsm:encode-phase")
    if (x == 0).all(axis=1).any():
        hit.add("input:all-zero-sample")
    if (x == model.input_max).all(axis=1).any():
        hit.add("input:saturated-sample")
    mode = info["mode"]
    if mode in ("all-max", "all-negative"):
        hit.add(f"weights:{mode}")
    if mode == "threshold-1" or any((l.threshold == 1).all() for l in model.layers):
        hit.add("threshold:1")
    if mode == "threshold-max":
        hit.add("threshold:max")
    if model.coding in ("rate", "stcb") and g.spikes is not None:
        for li, s in enumerate(g.spikes):
            P = lanes
            n = s.shape[2]
            pad = (-n) % P
            grouped = np.pad(s, ((0, 0), (0, 0), (0, pad))).reshape(s.shape[0], s.shape[1], -1, P)
            if (grouped.sum(axis=3) >= 2).any():
                hit.add("update:several-spikes-one-cycle")
        # a firing layer that ends with V >= theta fired on its last step and kept a residual
        # at or above threshold after the subtraction
        n_fire = len(model.layers) - (model.readout == "membrane")
        if any((v >= l.threshold).any() for l, v in zip(model.layers[:n_fire], g.v_final[:n_fire])):
            hit.add("update:residual-above-threshold")
    if model.coding == "tsc":
        Q = model.T - 1
        for l, v in zip(model.layers[:-1], g.v_final[:-1]):
            if (np.floor_divide(v, l.threshold) >= Q).any():
                hit.add("tsc:off-at-clip-Q")
            if (v < 0).any():
                hit.add("tsc:negative-V")
    if run.get("stall_cycles", 0) > 0:
        hit.update({"stream:input-stalls", "stream:output-stalls"})
    if len(x) >= 2:
        hit.add("stream:back-to-back")
    for f in run.get("faults", ()):
        hit.add(f"fault:{f}")
    return hit


@dataclass
class Campaign:
    networks: int = 0
    samples: int = 0
    faults_injected: int = 0
    lint_clean: int = 0
    mismatches: int = 0
    coverage: dict = field(default_factory=lambda: {p: 0 for p in COVERAGE_POINTS})
    failures: list = field(default_factory=list)
    per_network: list = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> dict:
        hit = sum(1 for v in self.coverage.values() if v)
        return {"networks": self.networks, "samples": self.samples, "faults_injected": self.faults_injected,
                "lint_clean": self.lint_clean, "mismatches": self.mismatches, "coverage_hit": hit,
                "coverage_total": len(self.coverage), "coverage": self.coverage,
                "missed_coverage": [k for k, v in self.coverage.items() if not v],
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
    from .runner import build, run_job
    from .toolchain import lint
    vdir = ROOT / "build" / "fuzz-verilog" / name
    v, j = generate(model, lanes, vdir, name)
    man = json.loads(j.read_text())
    lr = lint(v, name)
    run = {"lint_clean": lr.returncode == 0, "faults": []}
    if lr.returncode:
        return run, f"lint failed: {lr.stderr.strip().splitlines()[0] if lr.stderr.strip() else lr.returncode}"
    b = build(v, name, fast=True)
    rtl = run_job(b, {"manifest": man, "inputs_array": x, "stall_prob": stall_prob, "seed": info["seed"]})
    run["stall_cycles"] = int(rtl["stall_cycles"])
    g = golden.run(model, x, lanes=lanes)
    verdicts, bad = compare(model, lanes, rtl, g)
    if any(bad.values()):
        i = next(k for k, v in enumerate(verdicts) if v)
        return run, f"sample {i}: {', '.join(verdicts[i])}"
    if int(rtl["err_range"]) or int(rtl["err_protocol"]):
        return run, "error flag raised on valid input"
    if faults:
        r = run_job(b, {"manifest": man, "inputs_array": x[:1], "reset_after": 3 + info["seed"] % 11},
                    testcase="protocol_abuse")
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


def _one(seed: int, codings, stall_prob: float) -> dict:
    """Check one random network (runs in a worker process)."""
    model, x, lanes, info = random_network(seed, codings)
    run, why = check_network(model, x, lanes, info, stall_prob=stall_prob, faults=seed % 4 == 0, name=f"fz{seed}")
    g = golden.run(model, x, lanes=lanes, record=model.coding != "tsc")
    cov = coverage_of(model, x, lanes, info, g, run)
    failure = None
    if why:
        xs, why2 = shrink(model, x, lanes, info, why)
        failure = {"seed": seed, "why": why2, "reproducer": str(_save_reproducer(model, xs, lanes, info, why2))}
    return {"info": info, "samples": len(x), "run": run, "why": why, "coverage": sorted(cov), "failure": failure}


def run_campaign(seeds, *, codings=("rate", "stcb", "tsc"), stall_prob: float = 0.3, log=print,
                 progress: bool = True, jobs: int = 1) -> Campaign:
    """Check every seed's network; ``jobs`` worker processes build and simulate in parallel."""
    from concurrent.futures import ProcessPoolExecutor, as_completed
    c = Campaign()
    t0 = time.perf_counter()
    seeds = list(seeds)
    bar = Progress(len(seeds), "fuzz", "networks", enabled=progress)

    def absorb(r: dict) -> None:
        c.networks += 1
        c.samples += r["samples"]
        c.lint_clean += int(r["run"]["lint_clean"])
        c.faults_injected += len(r["run"]["faults"])
        for p in r["coverage"]:
            c.coverage[p] = c.coverage.get(p, 0) + 1
        c.per_network.append({**r["info"], "n_samples": r["samples"], "ok": r["why"] is None})
        if r["failure"]:
            c.mismatches += 1
            c.failures.append(r["failure"])
            log(f"seed {r['failure']['seed']}: MISMATCH {r['failure']['why']}; reproducer {r['failure']['reproducer']}")
        bar.update(1)
        bar.set_postfix(mismatches=c.mismatches)

    if jobs <= 1:
        for seed in seeds:
            absorb(_one(seed, codings, stall_prob))
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            futures = [pool.submit(_one, seed, codings, stall_prob) for seed in seeds]
            for f in as_completed(futures):
                absorb(f.result())
    bar.close()
    c.per_network.sort(key=lambda n: n["seed"])
    c.seconds = time.perf_counter() - t0
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
    p.add_argument("--replay", default=None, help="re-run a saved reproducer directory")
    p.add_argument("--no-coverage-check", action="store_true", help="do not fail on missed coverage points")
    p.add_argument("--jobs", type=positive_int, default=2, help="parallel worker processes (default 2)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar or progress lines on stderr")
    a = p.parse_args(argv)
    if a.replay:
        if not (Path(a.replay) / "repro.json").exists():
            raise UsageError(f"--replay: no repro.json in {a.replay}")
        return replay(Path(a.replay))
    if a.first_seed + a.seeds - 1 > 2 ** 32 - 1:
        raise UsageError(f"--seeds: {a.seeds} networks from --first-seed {a.first_seed} run past the last seed "
                         f"4294967295")
    # every output is checked before the first network is drawn
    check_outputs([Output("--json", a.json),
                   Output("reproducer directory", ROOT / "build" / "fuzz", kind="dir")])
    c = run_campaign(range(a.first_seed, a.first_seed + a.seeds), codings=tuple(a.coding),
                     stall_prob=a.stall_prob, jobs=a.jobs, progress=not a.no_progress)
    s = c.summary()
    with OutputSet() as files:
        files.add_text(a.json, json.dumps({**s, "networks_detail": c.per_network}, indent=1))
        files.commit()
    print(f"{s['networks']} networks, {s['samples']} samples, {s['faults_injected']} protocol faults, "
          f"lint clean {s['lint_clean']}/{s['networks']}, mismatches {s['mismatches']}, "
          f"coverage {s['coverage_hit']}/{s['coverage_total']} ({s['seconds']:.0f} s); wrote {a.json}")
    for k, v in s["coverage"].items():
        print(f"  {'hit ' if v else 'MISS'} {v:>4}  {k}")
    if s["mismatches"]:
        return 1
    if s["missed_coverage"] and not a.no_coverage_check:
        sys.stderr.write(error_line("sim.fuzz", f"coverage incomplete: {', '.join(s['missed_coverage'])}"))
        return 1
    return 0


if __name__ == "__main__":
    guard("sim.fuzz", main)
