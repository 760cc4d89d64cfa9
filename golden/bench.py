"""``python -m golden.bench``: golden throughput on the digits test split (samples/s), as JSON.

A 64-128-10 rate-coded network (fixed-seed weights with realistic firing) is run over the whole
test split repeatedly; the median of the repeats is reported, for T=8 (target >= 5,000 samples/s
on the 2-core reference machine) and T=32.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time

import numpy as np

from . import datasets, engine
from .cli import ArgumentParser, Output, OutputSet, check_outputs, guard, lanes_arg, main_output, positive_int
from .model import Dense, Model

TARGET_SPS = 5000.0


def bench_model(T: int, seed: int = 0) -> Model:
    rng = np.random.default_rng(seed)
    l0 = Dense(rng.integers(-40, 60, (128, 64)), rng.integers(-8, 8, 128), 300, 0)
    l1 = Dense(rng.integers(-60, 60, (10, 128)), 0, 200, 0)
    return Model([l0, l1], T=T, input_max=16)


def measure(T: int, repeats: int, lanes: int) -> dict:
    x, _ = datasets.load("digits", "test")
    model = bench_model(T)
    engine.run(model, x, lanes=lanes)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        r = engine.run(model, x, lanes=lanes)
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    return {"T": T, "network": "64-128-10", "coding": "rate", "lanes": lanes, "samples": len(x),
            "repeats": repeats, "median_seconds": med, "samples_per_s": len(x) / med,
            "mean_spikes": float(r.counters["spikes"].mean())}


def main(argv=None) -> int:
    p = ArgumentParser(prog="python -m golden.bench", description=__doc__.splitlines()[0])
    p.add_argument("--out", default="build/bench/golden.json", metavar="FILE.json",
                   help="results JSON (default build/bench/golden.json)")
    p.add_argument("--repeats", type=positive_int, default=15, help="timed runs per T; the median counts (default 15)")
    p.add_argument("--lanes", type=lanes_arg, default=8, help="P for the counters, a power of two from 1 to 64 "
                                                              "(default 8)")
    a = p.parse_args(argv)
    check_outputs([Output("--out", main_output("--out", a.out, ".json"))])
    runs = [measure(T, a.repeats, a.lanes) for T in (8, 32)]
    out = {"benchmark": "golden", "host": platform.node(), "cpus": os.cpu_count(), "runs": runs,
           "target_samples_per_s_T8": TARGET_SPS, "meets_target": runs[0]["samples_per_s"] >= TARGET_SPS}
    with OutputSet() as files:
        files.add_text(a.out, json.dumps(out, indent=2))
        files.commit()
    for r in runs:
        print(f"golden T={r['T']:>2}: {r['samples_per_s']:>10.0f} samples/s ({r['samples']} samples, "
              f"median of {r['repeats']})")
    print(f"target T=8 >= {TARGET_SPS:.0f} samples/s: {'met' if out['meets_target'] else 'NOT met'}; wrote {a.out}")
    return 0 if out["meets_target"] else 1


if __name__ == "__main__":
    guard("golden.bench", main)
