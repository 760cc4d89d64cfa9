"""``python -m golden.bench``: golden throughput on the digits test split (samples/s), as JSON.

A 64-128-10 rate-coded network (fixed-seed weights with realistic firing) is run over the whole
test split repeatedly; the median of the repeats is reported, for T=8 (target >= 5,000 samples/s
on the 2-core reference machine) and T=32. The digits conv net ``16c3-mp2-32c3-10`` (T=8) is
timed beside SpikingJelly running the same integer weights (multi-step, ``torch.no_grad``, float32,
the same thread count as golden's BLAS) in the same run, each as the median of its repeats after an
untimed warm-up, and the ratio is reported.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import statistics
import time

import numpy as np

from . import datasets, engine
from .cli import ArgumentParser, Output, OutputSet, check_outputs, guard, lanes_arg, main_output, positive_int
from .model import Conv2d, Dense, MaxPool2d, Model

TARGET_SPS = 5000.0


def bench_model(T: int, seed: int = 0) -> Model:
    rng = np.random.default_rng(seed)
    l0 = Dense(rng.integers(-40, 60, (128, 64)), rng.integers(-8, 8, 128), 300, 0)
    l1 = Dense(rng.integers(-60, 60, (10, 128)), 0, 200, 0)
    return Model([l0, l1], T=T, input_max=16)


def conv_bench_model(T: int = 8, seed: int = 0) -> Model:
    """``16c3-mp2-32c3-10`` on [1, 8, 8]: fixed-seed integer weights, one threshold per layer (so
    SpikingJelly's scalar ``v_threshold`` runs it exactly), firing 10-40% of the time."""
    rng = np.random.default_rng(seed)
    c1 = Conv2d(rng.integers(-20, 40, (16, 1, 3, 3)), rng.integers(-8, 8, 16), 120, 0, in_shape=(1, 8, 8), padding=1)
    pool = MaxPool2d(2, in_shape=(16, 8, 8))
    c2 = Conv2d(rng.integers(-30, 36, (32, 16, 3, 3)), rng.integers(-8, 8, 32), 250, 0, in_shape=(16, 4, 4),
                padding=1)
    d = Dense(rng.integers(-60, 60, (10, 512)), 0, 200, 0)
    return Model([c1, pool, c2, d], T=T, input_max=16)


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


def _blas_threads() -> int:
    """Threads of the BLAS numpy uses (threadpoolctl when present, else the CPU count)."""
    try:
        from threadpoolctl import threadpool_info
        n = [i["num_threads"] for i in threadpool_info() if i.get("user_api") == "blas"]
        return max(n) if n else (os.cpu_count() or 1)
    except ImportError:
        return os.cpu_count() or 1


def _spikingjelly_net(model: Model):
    """The same network in SpikingJelly (float32): Conv2d/MaxPool2d/Flatten/Linear with IFNode(v_reset=None)."""
    import torch
    from spikingjelly.activation_based import layer, neuron
    mods, spatial = [], False
    for l in model.layers:
        if l.kind == "maxpool2d":
            mods.append(layer.MaxPool2d(l.kernel, step_mode="m"))
            continue
        if l.kind == "conv2d":
            m = layer.Conv2d(l.in_shape[0], l.channels, l.kernel, stride=l.stride, padding=l.padding, step_mode="m")
        else:
            if spatial:
                mods.append(layer.Flatten(step_mode="m"))
            m = layer.Linear(l.n_in, l.n_out, step_mode="m")
        with torch.no_grad():
            m.weight.copy_(torch.tensor(l.weight, dtype=torch.float32))
            m.bias.copy_(torch.tensor(l.bias, dtype=torch.float32))
        mods += [m, neuron.IFNode(v_threshold=float(l.threshold[0]), v_reset=None, step_mode="m")]
        spatial = l.kind == "conv2d"
    return torch.nn.Sequential(*mods)


def measure_conv(repeats: int, lanes: int) -> dict:
    """golden and SpikingJelly on the digits conv net in one run; medians and their ratio."""
    x, _ = datasets.load("digits", "test")
    model = conv_bench_model()
    out = {"T": model.T, "network": "16c3-mp2-32c3-10", "input_shape": list(model.input_shape), "coding": "rate",
           "lanes": lanes, "samples": len(x), "repeats": repeats}
    rec = engine.run(model, x, lanes=lanes, record=True)     # warm-up, and SpikingJelly's input spikes
    out["mean_spikes"] = float(rec.counters["spikes"].mean())
    out["firing_rates"] = [float(s.mean()) for s in rec.spikes]
    # torch logs a warning about Triton (a GPU compiler) on import; it says nothing about this CPU run
    logging.getLogger("torch._library.triton").setLevel(logging.ERROR)
    try:
        import torch
        from spikingjelly.activation_based import functional
    except ImportError as e:
        sj = None
        out["spikingjelly"] = f"unavailable ({type(e).__name__}: {e})"
    else:
        threads = _blas_threads()
        old_threads = torch.get_num_threads()
        torch.set_num_threads(threads)
        sj = _spikingjelly_net(model)
        inp = torch.tensor(rec.input_spikes.transpose(1, 0, 2).reshape(model.T, len(x), *model.input_shape),
                           dtype=torch.float32)

        def sj_run():
            with torch.no_grad():
                functional.reset_net(sj)
                return sj(inp)
        counts = sj_run().sum(dim=0).numpy()
        # integer weights and sums below 2**24: float32 is exact, so the outputs must agree
        out["spikingjelly_matches_golden"] = bool((counts == rec.counts).all())
    # two blocks, each after an untimed run: interleaving them measured SpikingJelly 1.5-3x slow, because
    # the BLAS worker threads numpy had just used still spin for a while and take the cores from torch's
    g_times, s_times = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        engine.run(model, x, lanes=lanes)
        g_times.append(time.perf_counter() - t0)
    if sj is not None:
        sj_run()
        for _ in range(repeats):
            t0 = time.perf_counter()
            sj_run()
            s_times.append(time.perf_counter() - t0)
    out["median_seconds"] = statistics.median(g_times)
    out["samples_per_s"] = len(x) / out["median_seconds"]
    if sj is not None:
        torch.set_num_threads(old_threads)
        out["spikingjelly"] = {"version": _version("spikingjelly"), "torch": torch.__version__, "dtype": "float32",
                               "threads": threads, "mode": "multi-step, torch.no_grad, IFNode backend torch",
                               "input": "golden's rate-encoded spikes, precomputed (not timed)",
                               "median_seconds": statistics.median(s_times),
                               "samples_per_s": len(x) / statistics.median(s_times)}
        out["golden_over_spikingjelly"] = out["samples_per_s"] / out["spikingjelly"]["samples_per_s"]
    return out


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(dist)
    except PackageNotFoundError:
        return "unknown"


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
    conv = measure_conv(a.repeats, a.lanes)
    out = {"benchmark": "golden", "host": platform.node(), "cpus": os.cpu_count(), "runs": runs,
           "target_samples_per_s_T8": TARGET_SPS, "meets_target": runs[0]["samples_per_s"] >= TARGET_SPS,
           "conv": conv}
    with OutputSet() as files:
        files.add_text(a.out, json.dumps(out, indent=2))
        files.commit()
    for r in runs:
        print(f"golden T={r['T']:>2}: {r['samples_per_s']:>10.0f} samples/s ({r['samples']} samples, "
              f"median of {r['repeats']})")
    line = f"golden conv {conv['network']} T={conv['T']}: {conv['samples_per_s']:>8.0f} samples/s"
    sj = conv.get("spikingjelly")
    if isinstance(sj, dict):
        line += (f"; SpikingJelly {sj['samples_per_s']:.0f} samples/s ({sj['dtype']}, {sj['threads']} threads, "
                 f"outputs {'equal' if conv['spikingjelly_matches_golden'] else 'DIFFERENT'}): "
                 f"ratio {conv['golden_over_spikingjelly']:.2f}")
    else:
        line += f"; SpikingJelly {sj}"
    print(line)
    print(f"target T=8 >= {TARGET_SPS:.0f} samples/s: {'met' if out['meets_target'] else 'NOT met'}; wrote {a.out}")
    return 0 if out["meets_target"] else 1


if __name__ == "__main__":
    guard("golden.bench", main)
