"""``python -m sim.bench``: RTL simulation throughput and Verilator build time, as JSON.

Uses the demo model (build/models/digits_rate_t8.npz) when it exists, else a fixed-seed 64-128-10
rate network; builds from scratch in a temporary build root (so the build time is real), then
streams the whole digits test split. Target: the 360 samples simulate in under 60 s. Throughput is
reported twice: over the simulation proper (the harness streaming the samples) and over the whole job
with the simulator's start-up.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import golden
from golden import datasets
from golden.bench import bench_model
from golden.cli import ArgumentParser, Output, OutputSet, check_outputs, guard, lanes_arg, main_output

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 60.0


def main(argv=None) -> int:
    p = ArgumentParser(prog="python -m sim.bench", description=__doc__.splitlines()[0])
    p.add_argument("--out", default="build/bench/rtl.json", metavar="FILE.json",
                   help="results JSON (default build/bench/rtl.json)")
    p.add_argument("--lanes", type=lanes_arg, default=8, help="P, a power of two from 1 to 64 (default 8)")
    a = p.parse_args(argv)
    check_outputs([Output("--out", main_output("--out", a.out, ".json"))])
    from hw.generate import generate
    from sim.runner import build, run_job
    demo = ROOT / "build" / "models" / "digits_rate_t8.npz"
    model = golden.load_model(demo) if demo.exists() else bench_model(8)
    x, y = datasets.load("digits", "test")
    (ROOT / "build").mkdir(exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="bench-", dir=ROOT / "build"))
    try:
        top = f"bench_p{a.lanes}"
        t0 = time.perf_counter()
        v, j = generate(model, a.lanes, tmp / "v", top)
        gen_s = time.perf_counter() - t0
        b = build(v, top, build_root=tmp / "sim")
        t1 = time.perf_counter()
        rtl = run_job(b, {"manifest": json.loads(j.read_text()), "inputs_array": x})
        sim_s = time.perf_counter() - t1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    g = golden.run(model, x, lanes=a.lanes)
    exact = bool((rtl["predictions"] == g.predictions).all() and (rtl["cnt_cycles"] == g.counters["cycles"]).all())
    cycles = int(g.counters["cycles"].sum())
    out = {"benchmark": "rtl", "model": str(demo) if demo.exists() else "fixed-seed 64-128-10 (golden.bench)",
           "lanes": a.lanes, "samples": len(x), "generate_seconds": gen_s, "build_seconds": b.seconds,
           "sim_seconds": sim_s, "samples_per_s": len(x) / sim_s, "simulated_cycles": cycles,
           "run_seconds": float(rtl["run_seconds"]),
           "simulated_cycles_per_s": cycles / float(rtl["run_seconds"]),
           "simulated_cycles_per_s_with_startup": cycles / sim_s, "exact_vs_golden": exact,
           "target_sim_seconds": TARGET_S, "meets_target": sim_s < TARGET_S and exact}
    with OutputSet() as files:
        files.add_text(a.out, json.dumps(out, indent=2))
        files.commit()
    print(f"RTL: build {b.seconds:.1f} s, {len(x)} samples in {sim_s:.1f} s ({out['samples_per_s']:.1f} samples/s, "
          f"{out['simulated_cycles_per_s']:.0f} cycles/s, {out['simulated_cycles_per_s_with_startup']:.0f} with "
          f"start-up), exact={exact}; target < {TARGET_S:.0f} s: "
          f"{'met' if out['meets_target'] else 'NOT met'}; wrote {a.out}")
    return 0 if out["meets_target"] else 1


if __name__ == "__main__":
    guard("sim.bench", main)
