"""``python -m sim.claims`` (``make claims``): the seed papers' headline claims, measured on our core.

One table per paper, each row a claim, our figure, the command that produced it and a verdict
(holds / holds partly / does not hold on this network):

1. **TSC** (Han & Roy, ECCV 2020) against the rate-coded conversion of the *same* integer ANN
   (:func:`golden.convert.rate_from_tsc`: same weights and thresholds, IF with subtract reset,
   rate-encoded input, biases spread over the window with the half-level shift). The rate model's
   T is the smallest on the search grid (:func:`search_grid`, then every T below the first grid
   point that reaches it) at which its accuracy is within ``--tolerance`` points of the TSC model's,
   up to 1024; where none reaches it, the best accuracy and its T. Ratios rate / TSC of cycles,
   syn_ops, weight reads and all memory accesses at that T; the largest number of weight reads of
   one synapse over the test split (the paper's bound is 2). Each network has a pool-free variant
   (stride-2 convs for the pools); mnist5k also a deeper pool-free one of six layers, and a row that sets
   the two pool-free networks' ratios side by side (the paper's regime is depth).
2. **Minimum latency** (single time step): the T = 1 direct-input SNN's energy per inference
   (``golden.energy``: the counters times the documented 45 nm table) against the same layers as
   an int8 and a float32 ANN (``golden.energy.ann_energy``) and the rate T = 8 SNN trained with the
   same recipe; accuracy beside each.
3. **STCB** against step-by-step rate processing on the same weights (``sim.sweep.retarget``):
   cycles, weight reads, energy; on the conv net and on the dense 64-128-10 net of the same task, both
   verified on the RTL. Then the learned kernel: stcb models with a trained 3-tap kernel against rate
   models of the same recipe, each trained at T = 3, 4 and 8 (:data:`KERNEL_GRID`), compared at equal
   T = 8 and at the smallest T at which each reaches ``--stcb-target`` (98%); digits only
   (:attr:`Network.kernel_grid`).

Every model is trained here with ``quant.train`` (into ``--models-dir``, reused when present; the conv
recipe, at :class:`Network`'s epochs where it sets them; the float reference network only for the tsc
model, whose float accuracy table 2 quotes), every figure is golden's over the whole test split, and
every model a row quotes is run on the RTL with ``sim.regress``, equal to golden on every output and
counter: over the whole split when its golden cycles fit ``--rtl-cycle-budget``, else over a seeded
sample of ``--rtl-samples``. A mismatch exits 1. ``--jobs`` trainings, and then ``--jobs`` RTL runs
(worker processes), go at once; the JSON records the seconds of each phase.

Writes ``--out`` (default build/reports/claims/claims.json); ``python -m sim.readme`` renders the
README block ``claims`` from it. Bad input exits 2 with one line and writes nothing.
"""

from __future__ import annotations

import functools
import json
import re
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

import golden
from golden import energy as en
from golden import perf
from golden.cli import (ArgumentParser, Output, OutputSet, UsageError, check_outputs, guard, lanes_arg,
                        positive_float, positive_int, seed_int)
from golden.convert import rate_from_tsc
from golden.progress import Progress

__all__ = ["NETWORKS", "Network", "search_grid", "smallest_T", "memory_accesses", "MEMORY_COUNTERS", "ratios",
           "reads_per_synapse", "ratio_verdict", "bound_verdict", "claims"]

ROOT = Path(__file__).resolve().parents[1]
# every memory access the counters see: weights, neuron state, parameters, event buffers, accumulators
MEMORY_COUNTERS = ("weight_reads", "state_reads", "state_writes", "param_reads", "event_reads", "event_writes",
                   "acc_reads", "acc_writes")
HOLDS, PARTLY, NOT = "holds", "holds partly", "does not hold on this network"


@dataclass(frozen=True)
class Network:
    """One network of the claims: its dataset, the TSC architecture and its pool-free variant."""
    name: str
    dataset: str
    arch: str
    arch_pool_free: str
    tsc_T: int = 17
    # a deeper pool-free network (table 1's third variant): how the ratios grow with depth
    arch_deep: str | None = None
    # the recipe's epochs, overridden where a 28 x 28 training on this machine's CPU would not fit
    # make claims (None: the conv recipe's own, 60 rate / 40 direct and tsc)
    epochs: int | None = None
    # table 3's learned-kernel grid (six trainings: rate and stcb at each T of KERNEL_GRID)
    kernel_grid: bool = True


NETWORKS = {
    "digits": Network("digits", "digits", "16c3-mp2-32c3-10", "16c3-32c3s2-10"),
    "mnist5k": Network("mnist5k", "mnist5k", "16c3-mp2-32c3-mp2-10", "16c3-32c3s2-32c3s2-10",
                       arch_deep="16c3-16c3s2-32c3-32c3s2-32c3-10", epochs=8, kernel_grid=False),
}


# ------------------------------------------------------------------------------------------------
# the pieces the tests check on tiny inputs

def search_grid(max_T: int = 1024) -> list[int]:
    """Every T from 1 to 32, then quarter-octave steps (40, 48, 56, 64, 80, ..., 1024), up to ``max_T``."""
    grid = list(range(1, min(32, max_T) + 1))
    t = 32
    while t < max_T:
        t += 1 << max(0, t.bit_length() - 3)          # a quarter of the octave t is in
        grid.append(min(t, max_T))
    return grid


def smallest_T(acc_at: Callable[[int], float], target: float, grid: list[int], progress=None,
               scan_max: int = 8) -> dict:
    """The smallest T of ``grid`` with ``acc_at(T) >= target``, refined between the grid point before it
    and it: every T in order where the gap holds ``scan_max`` or fewer, else by bisection (the grid's own
    premise, that accuracy rises with T between its points; a scan of 31 T near T = 240 would cost
    more than the whole grid). Where none reaches the target, the best accuracy and the smallest T
    that has it. Returns {"reached", "T", "accuracy", "evaluated": {T: accuracy}}."""
    seen: dict[int, float] = {}

    def acc(T):
        if T not in seen:
            seen[T] = float(acc_at(T))
            if progress is not None:
                progress.update(1)
                progress.set_postfix(T=T, accuracy=f"{100 * seen[T]:.2f}%")
        return seen[T]

    prev = 0
    for T in grid:
        if acc(T) >= target:
            if T - prev - 1 <= scan_max:
                t = next((t for t in range(prev + 1, T) if acc(t) >= target), T)
            else:                          # acc(prev) < target <= acc(T): halve (prev, T]
                lo, t = prev, T
                while t - lo > 1:
                    mid = (lo + t) // 2
                    lo, t = (lo, mid) if acc(mid) >= target else (mid, t)
            return {"reached": True, "T": t, "accuracy": seen[t], "evaluated": dict(sorted(seen.items()))}
        prev = T
    best = max(seen.values())
    T = min(t for t, a in seen.items() if a == best)
    return {"reached": False, "T": T, "accuracy": best, "evaluated": dict(sorted(seen.items()))}


def memory_accesses(counters: dict) -> np.ndarray:
    """Per sample: every memory word read or written (:data:`MEMORY_COUNTERS`)."""
    return sum(np.asarray(counters[k], dtype=np.int64) for k in MEMORY_COUNTERS)


def ratios(rate: dict, tsc: dict) -> dict:
    """rate / tsc of each mean per inference (``cycles``, ``syn_ops``, ``weight_reads``, ``memory_accesses``)."""
    out = {}
    for k in ("cycles", "syn_ops", "weight_reads", "memory_accesses"):
        if not tsc[k] > 0:
            raise ValueError(f"tsc's {k} is {tsc[k]}: no ratio")
        out[k] = rate[k] / tsc[k]
    return out


def _synapse_words(layer, P: int) -> np.ndarray:
    """Per input neuron of ``layer``: the weight words one event of it reads (docs/spec.md section 4:
    a dense layer's G groups; a conv2d layer's Gc channel groups at each kernel offset that reaches
    the map)."""
    if layer.kind == "dense":
        return np.full(layer.n_in, perf.groups(layer.n_out, P), dtype=np.int64)
    nv = np.tile(layer.valid_offsets().reshape(-1), layer.in_shape[0]).astype(np.int64)
    return nv * perf.groups(layer.channels, P)


def reads_per_synapse(model, x, P: int, chunk: int = 64) -> dict:
    """How often one synapse's weight is read in an inference: once per event of its input neuron (a
    spike in rate, an ON or an OFF in tsc). Returns the maximum over every synapse (every input neuron
    that reaches an output) and sample, and the mean per synapse, over the weight layers. Each layer's
    reads, summed from the events, must equal golden's ``weight_reads`` counter (which the RTL
    reports): a disagreement raises RuntimeError."""
    worst, total_reads, total_syn_events, n = 0, 0, 0, 0
    for s in range(0, len(x), chunk):
        r = golden.run(model, x[s:s + chunk], lanes=P, record=True)
        if model.coding == "tsc":
            sent = [np.asarray(r.input_events) != 0] + [np.asarray(e) != 0 for e in r.events]
        else:
            sent = [np.asarray(r.input_spikes, dtype=bool)] + [np.asarray(sp, dtype=bool) for sp in r.spikes]
        for li, layer in enumerate(model.layers):
            src = sent[li]                                  # what reaches layer li: (B, T, n_in)
            if model.encoding == "direct" and li == 0:
                # direct input: every non-zero value is an event at every step
                src = np.repeat((x[s:s + chunk] != 0)[:, None, :], model.T, axis=1)
            if not layer.has_neurons:
                continue
            ev = src.sum(axis=1).astype(np.int64)           # events per input neuron (B, n_in)
            words = _synapse_words(layer, P)
            reads = ev @ words
            got = np.asarray(r.layer_counters[li]["weight_reads"], dtype=np.int64)
            if not np.array_equal(reads, got):
                raise RuntimeError(f"layer {li}: weight reads from the events ({int(reads.sum())}) differ from "
                                   f"golden's counter ({int(got.sum())})")
            live = words > 0
            worst = max(worst, int(ev[:, live].max()) if live.any() else 0)
            total_syn_events += int(ev[:, live].sum())
            n += int(live.sum()) * len(ev)
            total_reads += int(got.sum())
    return {"max": worst, "mean": total_syn_events / n if n else 0.0}


def ratio_verdict(value: float, claimed: float) -> str:
    """A "k times fewer" claim: holds at ``value >= claimed``, holds partly when TSC is still ahead."""
    if value >= claimed:
        return HOLDS
    return PARTLY if value > 1 else NOT


def bound_verdict(value: float, bound: float) -> str:
    return HOLDS if value <= bound else NOT


# ------------------------------------------------------------------------------------------------
# models

# the one model whose float reference a table quotes (table 2: the ANN's float accuracy); every other
# model skips quant.train's float reference network, half of its training time, which changes nothing
# of the integer model (the float network trains after the quantized one, from its own seed)
FLOAT_REF_KINDS = ("tsc",)


def _train_cmd(net: Network, kind: str, out: Path) -> list[str]:
    base = ["--dataset", net.dataset, "--recipe", "conv", *(["--epochs", str(net.epochs)] if net.epochs else []),
            "--seed", "0", "--out", str(out), "--quiet", *([] if kind in FLOAT_REF_KINDS else ["--no-float-ref"])]
    tsc_arch = {"tsc": net.arch, "tsc_pool_free": net.arch_pool_free, "tsc_deep": net.arch_deep}
    if tsc_arch.get(kind):
        return ["--arch", tsc_arch[kind], "--coding", "tsc", "--T", str(net.tsc_T), *base]
    if kind == "direct_t1":
        return ["--arch", net.arch, "--coding", "rate", "--encoding", "direct", "--T", "1", *base]
    m = re.fullmatch(r"(rate|stcb_k3)_t(\d+)", kind)
    if m:                               # table 3's learned-kernel grid: rate, and stcb with a 3-tap kernel
        coding = ["--coding", "rate", "--encoding", "rate"] if m[1] == "rate" else ["--coding", "stcb", "--kernel", "3"]
        return ["--arch", net.arch, *coding, "--T", m[2], *base]
    if kind == "dense_rate_t8":         # make train's dense net: the demo's 64-128-10 recipe
        return ["--dataset", net.dataset, "--hidden", "128", "--coding", "rate", "--encoding", "rate", "--T", "8",
                "--readout", "count", "--seed", "0", "--out", str(out), "--quiet", "--no-float-ref"]
    raise ValueError(kind)


def _kinds(net: Network) -> list[str]:
    """Every model a claims run of ``net`` trains."""
    tsc = ["tsc", "tsc_pool_free"] + (["tsc_deep"] if net.arch_deep else [])
    grid = [f"{fam}_t{T}" for T in KERNEL_GRID for fam in ("rate", "stcb_k3")] if net.kernel_grid else []
    return tsc + ["direct_t1", "dense_rate_t8", "rate_t8"] + [k for k in grid if k != "rate_t8"]


def _train_cost(net: Network, kind: str) -> float:
    """A rough training cost, to start the longest trainings first (the order changes no result, only
    how long the pool's last worker runs alone): the arch's multiply-accumulates per sample on the
    dataset's images, times the steps trained (T for rate and stcb, 2 for tsc's ANN with its
    quantizer, 1 for direct input), times the training split's size."""
    from golden.datasets import input_shape
    from quant.arch import build_arch
    args = _train_cmd(net, kind, Path("m.npz"))
    shape = input_shape(net.dataset)
    arch = args[args.index("--arch") + 1] if "--arch" in args else "128-10"
    macs = 0
    for sp in build_arch(arch, shape, 10):
        if sp.kind == "conv2d":
            c, h, w = sp.out_shape
            macs += c * h * w * sp.in_shape[0] * sp.kernel ** 2
        elif sp.kind == "dense":
            macs += sp.n_in * sp.n_out
    T = int(args[args.index("--T") + 1])
    steps = 2 if "tsc" in kind else T
    return float(macs * steps * _train_size(net.dataset))


@functools.lru_cache(maxsize=None)
def _train_size(dataset: str) -> int:
    """Samples in a dataset's training split (the claims' datasets are embedded: loading is quick)."""
    from golden.datasets import load
    return len(load(dataset, "train")[0])


def _rel(p: Path) -> str:
    try:
        return str(Path(p).resolve().relative_to(ROOT))
    except ValueError:
        return str(p)


def _train_missing(todo: list[tuple[Network, str]], models_dir: Path, jobs: int, log) -> None:
    """Train the models (network, kind) of ``todo`` that are not in ``models_dir`` yet, ``jobs`` at a
    time (each quant.train runs on one thread, so two fill this 2-core machine), the costliest first
    (:func:`_train_cost`)."""
    todo = sorted((t for t in todo if not (models_dir / f"{t[0].name}_{t[1]}.npz").is_file()),
                  key=lambda t: -_train_cost(*t))
    if len(todo) > 1 and jobs > 1:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            list(pool.map(lambda t: _model(t[0], t[1], models_dir, log), todo))
    else:
        for net, k in todo:
            _model(net, k, models_dir, log)


def _model(net: Network, kind: str, models_dir: Path, log) -> tuple[golden.Model, dict]:
    out = models_dir / f"{net.name}_{kind}.npz"
    args = _train_cmd(net, kind, out)
    cmd = "python -m quant.train " + " ".join(shlex.quote(_rel(a) if a == str(out) else a) for a in args)
    if not out.is_file():
        log(f"training {out.name}: {cmd}")
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "quant.train", *args], cwd=ROOT, capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError(f"{cmd} failed: {(r.stderr or r.stdout).strip().splitlines()[-1:]}")
        log(f"  {time.perf_counter() - t0:.0f} s")
    info = {"file": _rel(out), "train_command": cmd}
    meta = out.with_suffix(".json")
    if meta.is_file():
        d = json.loads(meta.read_text())
        info["float_accuracy"] = d.get("float_accuracy")
        info["train_seconds"] = d.get("train_seconds")
    return golden.load_model(out), info


# ------------------------------------------------------------------------------------------------
# measuring

def _measure(model, x, y, P: int, table: dict) -> dict:
    """golden over ``x``: the row of figures a table quotes (see :func:`_row`)."""
    return _row(model, golden.run(model, x, lanes=P), x, y, P, table)


# what a claims run still needs of each golden run it made, by model: its predictions (table 3's
# same-predictions check) and its total cycles (whether the RTL runs the whole split). The Result
# itself holds every layer's final membranes (100 MB for a 28 x 28 conv net over 1,000 digits), and a
# run of 28 x 28 digits costs seconds, so neither keeping nor repeating it is free
_SEEN: dict[int, tuple] = {}


def _note(model, x, P: int, g) -> tuple:
    """Note in :data:`_SEEN` what a claims run keeps of golden's run ``g`` of ``model`` over ``x``."""
    _SEEN[id(model)] = e = (model, x, P, g.predictions, float(g.counters["cycles"].sum()))
    return e


def _row(model, g, x, y, P: int, table: dict) -> dict:
    """The figures of golden's run ``g`` of ``model`` over ``x`` (noted in :data:`_SEEN`)."""
    c = g.counters
    _note(model, x, P, g)
    row = {"coding": model.coding, "encoding": model.encoding, "T": model.T, "samples": int(len(x)),
           "accuracy": float((g.predictions == y).mean()),
           **{k: float(np.mean(c[k])) for k in perf.COUNTERS},
           "memory_accesses": float(memory_accesses(c).mean())}
    try:
        e = en.energy(model, g, P, table)
        row["energy_pj"] = e["mean_total_pj"]
        row["energy_acc_pj"] = e["mean_pj"]["acc_reads"] + e["mean_pj"]["acc_writes"]
    except Exception as err:              # noqa: BLE001 - a coding the core cannot build has no memories
        row["energy_pj"], row["energy_acc_pj"], row["energy_note"] = None, None, str(err).splitlines()[0]
    ann = en.ann_energy(model, table)
    row["ann_int8_pj"], row["ann_float32_pj"] = ann["int8"]["total_pj"], ann["float32"]["total_pj"]
    return row


def _seen(model, x, P: int) -> tuple[np.ndarray, float]:
    """(predictions, total cycles) of golden over ``x``: from the run :func:`_row` noted, else a new run."""
    e = _SEEN.get(id(model))
    if e is None or e[0] is not model or e[1] is not x or e[2] != P:
        e = _note(model, x, P, golden.run(model, x, lanes=P))
    return e[3], e[4]


def _fmax(entries: list, model, P: int):
    for e in entries:
        if e["lanes"] == P and e["layers"] == model.meta()["layers"] and e["coding"] in (None, model.coding):
            return e
    return None


def _latency(row: dict, model, P: int, fmax: list) -> None:
    f = _fmax(fmax, model, P)
    if f is None:
        row["fmax_mhz"], row["latency_us"], row["fmax_file"] = None, None, None
    else:
        row["fmax_mhz"], row["fmax_file"] = f["fmax_mhz"], f["file"]
        row["latency_us"] = row["cycles"] / f["fmax_mhz"]


def _rtl_plan(model, x, P: int, n_sample: int, budget: float, seed: int) -> np.ndarray:
    """The samples the RTL runs: the whole split when golden's cycles over it fit ``budget``, else a
    seeded draw of ``n_sample``."""
    if _seen(model, x, P)[1] <= budget or n_sample >= len(x):
        return np.arange(len(x))
    return np.sort(np.random.default_rng(seed).choice(len(x), size=n_sample, replace=False))


def _rtl(model, x, y, idx: np.ndarray, P: int, name: str, seed: int) -> dict:
    """sim.regress of ``model`` on the samples ``idx`` of the split (a worker process's job)."""
    from .regress import regress
    t0 = time.perf_counter()
    # an optimised C++ build: since the Verilator run-time library is cached (sim.vruntime) it builds in
    # about the time of an unoptimised one (9 s), and simulates 50 mnist5k tsc digits in 11 s, not 91 s
    res = regress(model, x[idx], y[idx], lanes=P, name=name, log=lambda s: None)
    s = res.summary
    return {"samples": int(s["samples"]), "of": int(len(x)), "whole_split": bool(len(idx) == len(x)),
            "sample_seed": None if len(idx) == len(x) else seed, "matching": int(s["matching_samples"]),
            "exact": bool(s["matching_samples"] == s["samples"] and res.first_mismatch is None),
            "first_mismatch": res.first_mismatch, "seconds": round(time.perf_counter() - t0, 1),
            "simulated_cycles_per_s": s["simulated_cycles_per_s"]}


# a Verilator build's seconds under load, on top of the simulator's own wall-clock limit (sim.runner)
RTL_BUILD_SLACK_S = 600


def _rtl_deadline(model, x, P: int, idx: np.ndarray) -> int:
    """Seconds one RTL job may take: the build's slack plus the wall-clock limit sim.runner gives a
    simulation of the cycle budget of golden's cycles over the samples ``idx`` (their share of the split's)."""
    from .runner import cycle_budget, wall_limit
    cycles = _seen(model, x, P)[1] * len(idx) / max(1, len(x))
    return RTL_BUILD_SLACK_S + wall_limit(cycle_budget(int(cycles), 0, 0.0), "verilator")


def _rtl_job(deadline: int, key: str, *args) -> dict:
    """:func:`_rtl` under an alarm of ``deadline`` seconds (in a worker process, or in the main thread): a
    run that hangs outside its simulator, which the simulator's own limits do not see (a worker once
    waited forever on the parent's golden threads, gone after the fork), fails with one line naming the
    model instead of hanging the whole run."""
    import signal
    import threading
    from .runner import SimHang
    if threading.current_thread() is not threading.main_thread():    # signals reach the main thread only
        return _rtl(*args)

    def hung(signum, frame):
        raise SimHang(f"the RTL run of {key} did not finish in {deadline} s (hung outside the simulator?)")
    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(int(deadline))
    try:
        return _rtl(*args)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _verify(to_verify: list, P: int, n_sample: int, budget: float, seed: int, jobs: int, log) -> dict:
    """Every quoted model on the RTL (a model two tables quote, once), ``jobs`` worker processes at a
    time: each run is a Verilator build and a simulator process, and the 2-core machine runs two."""
    from concurrent.futures import ProcessPoolExecutor
    from golden import datasets
    todo, seen = [], set()
    for key, m, name in to_verify:
        if key not in seen:
            seen.add(key)
            x, y = datasets.load(NETWORKS[name].dataset, "test")
            idx = _rtl_plan(m, x, P, n_sample, budget, seed)
            todo.append((key, m, x, y, idx, _rtl_deadline(m, x, P, idx)))
    out = {}

    def done(key, r):
        out[key] = r
        log(f"  RTL {key}: {r['matching']}/{r['samples']} samples equal to golden ({r['seconds']} s)")
    if jobs <= 1 or len(todo) <= 1:
        for key, m, x, y, idx, limit in todo:
            done(key, _rtl_job(limit, key, m, x, y, idx, P, f"claims_{key}", seed))
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            futs = {key: pool.submit(_rtl_job, limit, key, m, x, y, idx, P, f"claims_{key}", seed)
                    for key, m, x, y, idx, limit in todo}
            for key, f in futs.items():
                done(key, f.result())
    return {key: out[key] for key, *_ in todo}        # in the tables' order


def _stcb_row(out: dict, label: str, name: str, m_r, m_s, info_r: dict, x, y, P: int, table: dict, *,
              rtl: bool) -> dict:
    """Table 3's row: the rate model and the same weights processed train by train (stcb)."""
    r_row, s_row = _measure(m_r, x, y, P, table), _measure(m_s, x, y, P, table)
    same = bool(np.array_equal(_seen(m_s, x, P)[0], _seen(m_r, x, P)[0]))
    has_e = s_row["energy_pj"] is not None and r_row["energy_pj"] is not None
    e_txt = (f", {r_row['energy_pj'] / s_row['energy_pj']:.2f}x in energy ({s_row['energy_pj'] / 1e3:,.1f} vs "
             f"{r_row['energy_pj'] / 1e3:,.1f} nJ)" if has_e else
             f"; no energy ({s_row.get('energy_note', 'no memories')})")
    fewer = s_row["cycles"] < r_row["cycles"] and s_row["weight_reads"] < r_row["weight_reads"]
    if same and fewer and has_e and s_row["energy_pj"] < r_row["energy_pj"]:
        verdict = HOLDS
    elif same and fewer:
        verdict = PARTLY + (" (cycles and weight reads; more energy: the T-slot accumulator words)" if has_e
                            else " (cycles and weight reads; energy not measured)")
    else:
        verdict = NOT
    out["tables"]["stcb"].append({
        "network": label, "claim": "spike-train-level processing (STCB) is highly energy-efficient at the "
                                   f"same accuracy (the rate model's weights, re-targeted, T={m_r.T})",
        "figure": f"rate / STCB = {r_row['cycles'] / s_row['cycles']:.2f}x in cycles ({r_row['cycles']:,.0f} vs "
                  f"{s_row['cycles']:,.0f}), {r_row['weight_reads'] / s_row['weight_reads']:.2f}x in weight "
                  f"reads{e_txt}; {'identical' if same else 'DIFFERENT'} predictions ({_pct(s_row['accuracy'])})",
        "command": f"python -m sim.claims --networks {name}: sim.sweep.retarget({info_r['file']}, 'stcb', {m_r.T})",
        "verdict": verdict})
    return {"rate": r_row, "stcb": s_row, "same_predictions": same, "rtl": rtl}


KERNEL_GRID = (3, 4, 8)          # the T of table 3's learned-kernel comparison (a 3-tap kernel needs T >= 3)


def _smallest(rows: dict, target: float) -> int | None:
    """The smallest T of ``rows`` (T -> measured row) whose accuracy reaches ``target``."""
    return next((T for T in sorted(rows) if rows[T]["accuracy"] >= target - 1e-12), None)


def _kernel_rows(out: dict, label: str, name: str, net: Network, models_dir: Path, x, y, P: int, table: dict,
                 target: float, jobs: int, log, to_verify: list) -> dict:
    """Table 3, learned kernel: the stcb model with a trained 3-tap kernel against the rate model of the
    same recipe, at equal T and at the smallest T of :data:`KERNEL_GRID` at which each reaches ``target``."""
    kinds = {fam: {T: f"{fam}_t{T}" for T in KERNEL_GRID} for fam in ("rate", "stcb_k3")}
    _train_missing([(net, k) for fam in kinds.values() for k in fam.values()], models_dir, jobs, log)
    models, rows, infos = {}, {}, {}
    for fam, by_T in kinds.items():
        for T, kind in by_T.items():
            m, info = _model(net, kind, models_dir, log)
            out["models"][f"{name}_{kind}"] = infos[(fam, T)] = info
            models[(fam, T)], rows[(fam, T)] = m, _measure(m, x, y, P, table)
    res = {"grid": list(KERNEL_GRID), "target": target,
           "rows": {f"{fam}_t{T}": r for (fam, T), r in rows.items()}}
    cmd = f"python -m sim.claims --networks {name}: " + "; ".join(
        _golden_cmd(infos[k], net, P) for k in sorted(infos))

    def cost(r):
        e = f", {r['energy_pj'] / 1e3:,.1f} nJ" if r["energy_pj"] is not None else ""
        return f"{_pct(r['accuracy'])}, {r['cycles']:,.0f} cycles, {r['weight_reads']:,.0f} weight reads{e}"
    T = max(KERNEL_GRID)
    r, k = rows[("rate", T)], rows[("stcb_k3", T)]
    cheaper = k["cycles"] < r["cycles"] and (k["energy_pj"] or 0) < (r["energy_pj"] or 0)
    keeps = k["accuracy"] >= r["accuracy"] - 0.005
    out["tables"]["stcb"].append({
        "network": label, "claim": f"a learned STCB kernel keeps accuracy at lower cost (equal T={T})",
        "figure": f"STCB, 3-tap kernel: {cost(k)}; rate: {cost(r)}",
        "command": cmd, "verdict": HOLDS if keeps and cheaper else PARTLY if keeps or cheaper else NOT})
    fam_rows = {fam: {t: rows[(fam, t)] for t in KERNEL_GRID} for fam in kinds}
    t_r, t_k = _smallest(fam_rows["rate"], target), _smallest(fam_rows["stcb_k3"], target)
    res["smallest_T"] = {"rate": t_r, "stcb_k3": t_k}
    if t_k is None:
        fig, verdict = (f"STCB never reaches {_pct(target)} on T in {list(KERNEL_GRID)} (best "
                        f"{_pct(max(v['accuracy'] for v in fam_rows['stcb_k3'].values()))}); rate at "
                        f"T={t_r}" if t_r else "neither reaches it"), NOT
    elif t_r is None:
        fig, verdict = f"STCB reaches it at T={t_k} ({cost(fam_rows['stcb_k3'][t_k])}); rate never does", HOLDS
    else:
        a, b = fam_rows["stcb_k3"][t_k], fam_rows["rate"][t_r]
        fewer_T = t_k <= t_r
        less_e = a["energy_pj"] is not None and b["energy_pj"] is not None and a["energy_pj"] < b["energy_pj"]
        fig = (f"STCB reaches it at T={t_k} ({cost(a)}), rate at T={t_r} ({cost(b)})"
               + (f": rate / STCB = {b['energy_pj'] / a['energy_pj']:.2f}x in energy, "
                  f"{b['cycles'] / a['cycles']:.2f}x in cycles" if less_e or fewer_T else ""))
        verdict = (HOLDS if t_k < t_r and less_e else PARTLY + " (no fewer time steps)" if less_e
                   else PARTLY + " (fewer time steps, not less energy)" if t_k < t_r else NOT)
    out["tables"]["stcb"].append({
        "network": label, "claim": f"STCB keeps accuracy with fewer time steps: the smallest T reaching "
                                   f"{_pct(target)}", "figure": fig, "command": cmd, "verdict": verdict})
    quoted = {("rate", T), ("stcb_k3", T)} | {(f, t) for f, t in (("rate", t_r), ("stcb_k3", t_k)) if t}
    to_verify += [(f"{name}_{fam}_t{t}", models[(fam, t)], name) for fam, t in sorted(quoted)]
    return res


def _depth_row(name: str, variants: dict, models: dict, P: int) -> dict:
    """Table 1's depth trend: the rate / TSC ratios of the shallow and the deep pool-free network."""
    parts = []
    for kind in ("tsc_pool_free", "tsc_deep"):
        v = variants[kind]
        r, s = v["ratios"], v["search"]
        parts.append(f"{v['layers']} layers (`{v['arch']}`): rate T={s['T']}" + ("" if s["reached"] else " (never reached)")
                     + f", {r['cycles']:.2f}x cycles, {r['syn_ops']:.2f}x syn_ops, {r['weight_reads']:.2f}x weight "
                     f"reads, {r['memory_accesses']:.2f}x memory accesses")
    keys = ("cycles", "syn_ops", "weight_reads", "memory_accesses")
    grows = [k for k in keys if variants["tsc_deep"]["ratios"][k] > variants["tsc_pool_free"]["ratios"][k]]
    files = "; ".join(_golden_cmd(models[f"{name}_{k}"], NETWORKS[name], P) for k in ("tsc_pool_free", "tsc_deep"))
    return {"network": f"{name}, pool-free, shallow against deep",
            "claim": "TSC's advantage over rate coding grows with depth (the paper's deep-network regime)",
            "figure": "rate / TSC: " + "; ".join(parts),
            "command": f"python -m sim.claims --networks {name}: {files}",
            "verdict": HOLDS if len(grows) == len(keys) else
            f"{PARTLY} (grows in {', '.join(grows)})" if grows else NOT}


def _pct(v: float) -> str:
    return f"{100 * v:.2f}%"


def _golden_cmd(info: dict, net: Network, P: int) -> str:
    return f"python -m golden.run --model {info['file']} --dataset {net.dataset} --lanes {P}"


def claims(networks: list[str], *, models_dir: Path, lanes: int = 8, tolerance: float = 0.5, max_T: int = 1024,
           rtl_samples: int = 50, rtl_cycle_budget: float = 2e6, seed: int = 0, fmax: list | None = None,
           rtl: bool = True, progress: bool = True, stcb_target: float = 0.98, jobs: int = 2, log=print) -> dict:
    """Every table for ``networks`` (keys of :data:`NETWORKS`); see the module docstring."""
    from golden import datasets
    from .sweep import retarget
    table = en.DEFAULT_TABLE
    fmax = fmax or []
    P = lanes
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    _SEEN.clear()
    out = {"lanes": P, "tolerance_points": tolerance, "max_T": max_T, "grid": search_grid(max_T),
           "rtl_samples": rtl_samples, "rtl_cycle_budget": rtl_cycle_budget, "seed": seed, "jobs": jobs,
           "energy_table": "golden.energy.DEFAULT_TABLE (Horowitz, ISSCC 2014, 45 nm)",
           "networks": {}, "tables": {"tsc": [], "min_latency": [], "stcb": []}, "models": {}}
    to_verify = []                          # (key, model) quoted by a row: each goes to the RTL

    # every network's models in one pool: its last worker then idles for one short training at most
    t0 = time.perf_counter()
    _train_missing([(NETWORKS[name], k) for name in networks for k in _kinds(NETWORKS[name])], models_dir, jobs, log)
    t_train = time.perf_counter() - t0
    for name in networks:
        net = NETWORKS[name]
        x, y = datasets.load(net.dataset, "test")
        nd = out["networks"][name] = {"dataset": net.dataset, "test_samples": int(len(x)), "variants": {}}
        variants = [("tsc", net.arch), ("tsc_pool_free", net.arch_pool_free)]
        if net.arch_deep:
            variants.append(("tsc_deep", net.arch_deep))
        # ---------------------------------------------------------------- table 1: TSC vs conversion
        for kind, arch in variants:
            m_tsc, info = _model(net, kind, models_dir, log)
            key_tsc = f"{name}_{kind}"
            out["models"][key_tsc] = info
            tsc_row = _measure(m_tsc, x, y, P, table)
            _latency(tsc_row, m_tsc, P, fmax)
            target = tsc_row["accuracy"] - tolerance / 100
            grid = search_grid(max_T)
            log(f"{key_tsc}: tsc T={m_tsc.T} accuracy {_pct(tsc_row['accuracy'])}; searching the converted rate "
                f"model's smallest T <= {max_T} within {tolerance} points")
            bar = Progress(len(grid), f"{key_tsc} T search", "T", enabled=progress)

            at = {}                     # T -> (converted model, its row): the found T's run is not repeated

            def acc_at(T, m=m_tsc):
                m_T = rate_from_tsc(m, T)
                at[T] = (m_T, _row(m_T, golden.run(m_T, x, lanes=P), x, y, P, table))
                return at[T][1]["accuracy"]
            found = smallest_T(acc_at, target - 1e-12, grid, bar)
            bar.close()
            m_rate, rate_row = at[found["T"]]
            key_rate = f"{name}_{kind}_as_rate_t{found['T']}"
            rate_file = models_dir / f"{key_rate}.npz"
            golden.save_model(m_rate, rate_file)
            rinfo = {"file": _rel(rate_file), "from": info["file"],
                     "command": f"golden.convert.rate_from_tsc({info['file']}, T={found['T']})"}
            out["models"][key_rate] = rinfo
            _latency(rate_row, m_rate, P, fmax)
            rat = ratios(rate_row, tsc_row)
            rps_tsc = reads_per_synapse(m_tsc, x, P)
            rps_rate = reads_per_synapse(m_rate, x, P)
            lat = (rate_row["latency_us"] / tsc_row["latency_us"]
                   if rate_row["latency_us"] is not None and tsc_row["latency_us"] is not None else None)
            nd["variants"][kind] = {"arch": arch, "layers": len(m_tsc.layers), "tsc": tsc_row, "rate": rate_row, "search": {
                "reached": found["reached"], "T": found["T"], "accuracy": found["accuracy"],
                "target": target, "evaluated": {str(k): v for k, v in found["evaluated"].items()}},
                "ratios": rat, "latency_ratio_us": lat,
                "reads_per_synapse": {"tsc": rps_tsc, "rate": rps_rate}}
            to_verify += [(key_tsc, m_tsc, name), (key_rate, m_rate, name)]
            cmd = (f"python -m sim.claims --networks {name}: {_golden_cmd(info, net, P)}; "
                   f"{_golden_cmd(rinfo, net, P)}")
            label = f"{name} `{arch}`" + {"tsc": "", "tsc_pool_free": " (pool-free)",
                                          "tsc_deep": f" (pool-free, {len(m_tsc.layers)} layers)"}[kind]
            reach = (f"rate reaches {_pct(found['accuracy'])} at T={found['T']} (TSC {_pct(tsc_row['accuracy'])}, "
                     f"T={m_tsc.T})" if found["reached"] else
                     f"rate never within {tolerance} points of TSC's {_pct(tsc_row['accuracy'])} up to T={max_T}: "
                     f"best {_pct(found['accuracy'])} at T={found['T']}")
            lat_txt = (f"; {rate_row['latency_us']:.1f} µs vs {tsc_row['latency_us']:.1f} µs at Fmax"
                       if lat is not None else "; µs: not synthesized")
            T1 = out["tables"]["tsc"]
            T1.append({"network": label, "claim": "the converted rate SNN needs T steps for TSC's accuracy",
                       "figure": reach, "command": cmd, "verdict": "measured (no claim)"})
            T1.append({"network": label, "claim": "at most 2 weight reads (memory accesses) and 2 additions per "
                       "synapse", "figure": f"max {rps_tsc['max']} reads per synapse over the test split "
                       f"(mean {rps_tsc['mean']:.3f}); rate at T={found['T']}: max {rps_rate['max']}",
                       "command": cmd, "verdict": bound_verdict(rps_tsc["max"], 2)})
            T1.append({"network": label, "claim": "7-14.5x lower inference latency than the converted rate SNN",
                       "figure": f"rate / TSC = {rat['cycles']:.2f}x in cycles ({rate_row['cycles']:,.0f} vs "
                       f"{tsc_row['cycles']:,.0f}){lat_txt}", "command": cmd,
                       "verdict": ratio_verdict(rat["cycles"], 7)})
            T1.append({"network": label, "claim": "30-60x fewer addition operations",
                       "figure": f"rate / TSC = {rat['syn_ops']:.2f}x in syn_ops ({rate_row['syn_ops']:,.0f} vs "
                       f"{tsc_row['syn_ops']:,.0f})", "command": cmd, "verdict": ratio_verdict(rat["syn_ops"], 30)})
            T1.append({"network": label, "claim": "30-60x fewer memory accesses",
                       "figure": f"rate / TSC = {rat['weight_reads']:.2f}x in weight reads ({rate_row['weight_reads']:,.0f} vs "
                       f"{tsc_row['weight_reads']:,.0f}), {rat['memory_accesses']:.2f}x in all memory "
                       f"accesses ({rate_row['memory_accesses']:,.0f} vs {tsc_row['memory_accesses']:,.0f})",
                       "command": cmd, "verdict": ratio_verdict(min(rat["weight_reads"], rat["memory_accesses"]), 30)})

        if net.arch_deep:                   # the paper's regime is depth: the pool-free pair side by side
            out["tables"]["tsc"].append(_depth_row(name, nd["variants"], out["models"], P))
        # ------------------------------------------------- table 2: T = 1 direct vs ANN and rate T = 8
        m_d, info_d = _model(net, "direct_t1", models_dir, log)
        m_r, info_r = _model(net, "rate_t8", models_dir, log)
        out["models"][f"{name}_direct_t1"], out["models"][f"{name}_rate_t8"] = info_d, info_r
        d_row, r_row = _measure(m_d, x, y, P, table), _measure(m_r, x, y, P, table)
        nd["min_latency"] = {"direct_t1": d_row, "rate_t8": r_row}
        to_verify += [(f"{name}_direct_t1", m_d, name), (f"{name}_rate_t8", m_r, name)]
        cmd = f"python -m sim.claims --networks {name}: {_golden_cmd(info_d, net, P)}; {_golden_cmd(info_r, net, P)}"
        label = f"{name} `{net.arch}`"
        e1 = d_row["energy_pj"]
        # the accumulator memory (conv and pool layers) is charged like every memory: say its share
        acc_note = "; accumulator reads + writes per inference " + ", ".join(
            f"{k} {row['acc_reads'] + row['acc_writes']:,.0f} ({row['energy_acc_pj'] / 1e3:,.1f} nJ)"
            for k, row in (("T=1", d_row), ("T=8", r_row)))
        # the ANN of these layers is the TSC model of table 1 (a clipped-floor integer ANN, trained on the
        # same architecture): its accuracy, and its float reference's, stand beside the ANN's energy
        tsc_acc = nd["variants"]["tsc"]["tsc"]["accuracy"]
        tsc_float = out["models"][f"{name}_tsc"].get("float_accuracy")
        ann_acc = (f"the same layers as an integer ANN (the TSC model, {m_d.weight_bits}-bit weights): "
                   f"{_pct(tsc_acc)}, float {_pct(tsc_float) if tsc_float is not None else 'n/a'}")
        nd["min_latency"]["ann_accuracy"], nd["min_latency"]["ann_float_accuracy"] = tsc_acc, tsc_float
        for what, ann, claimed in (("int8", d_row["ann_int8_pj"], 10), ("float32", d_row["ann_float32_pj"], 10)):
            out["tables"]["min_latency"].append({
                "network": label, "claim": f"10x less energy than a standard ANN ({what} MACs, same layers)",
                "figure": f"ANN / T=1 = {ann / e1:.2f}x: {e1 / 1e3:,.1f} nJ (T=1, {_pct(d_row['accuracy'])}) vs {ann / 1e3:,.1f} nJ "
                          f"({what} ANN; {ann_acc}){acc_note}",
                "command": cmd, "verdict": ratio_verdict(ann / e1, claimed)})
        out["tables"]["min_latency"].append({
            "network": label, "claim": "3x less energy than an SNN (rate T=8, same recipe)",
            "figure": f"rate T=8 / T=1 = {r_row['energy_pj'] / e1:.2f}x: {e1 / 1e3:,.1f} nJ ({_pct(d_row['accuracy'])}) vs "
                      f"{r_row['energy_pj'] / 1e3:,.1f} nJ ({_pct(r_row['accuracy'])}); cycles "
                      f"{d_row['cycles']:,.0f} vs {r_row['cycles']:,.0f}{acc_note}",
            "command": cmd, "verdict": ratio_verdict(r_row["energy_pj"] / e1, 3)})

        # ---------------------------------------------------- table 3: STCB vs rate on the same weights
        # the conv net and a dense net of the same task, both verified on the RTL
        m_s = retarget(m_r, "stcb", m_r.T)
        nd["stcb"] = {"conv": _stcb_row(out, label, name, m_r, m_s, info_r, x, y, P, table, rtl=True)}
        to_verify.append((f"{name}_rate_t8_as_stcb", m_s, name))
        m_dr, info_dr = _model(net, "dense_rate_t8", models_dir, log)
        out["models"][f"{name}_dense_rate_t8"] = info_dr
        m_ds = retarget(m_dr, "stcb", m_dr.T)
        nd["stcb"]["dense"] = _stcb_row(out, f"{name} `{m_dr.arch}` (dense)", name, m_dr, m_ds, info_dr, x, y, P,
                                        table, rtl=True)
        to_verify += [(f"{name}_dense_rate_t8", m_dr, name), (f"{name}_dense_rate_t8_as_stcb", m_ds, name)]
        if net.kernel_grid:
            nd["stcb"]["kernel"] = _kernel_rows(out, label, name, net, models_dir, x, y, P, table, stcb_target,
                                                jobs, log, to_verify)

    # ---------------------------------------------------------------- every quoted model on the RTL
    t_rtl = time.perf_counter()
    out["rtl"] = _verify(to_verify, P, rtl_samples, rtl_cycle_budget, seed, jobs, log) if rtl else {}
    _SEEN.clear()
    out["phase_seconds"] = {"train": round(t_train, 1), "golden": round(t_rtl - t_start - t_train, 1),
                            "rtl": round(time.perf_counter() - t_rtl, 1)}
    out["seconds"] = round(time.perf_counter() - t_start, 1)
    return out


def main(argv=None) -> int:
    p = ArgumentParser(prog="python -m sim.claims", description=__doc__.splitlines()[0])
    p.add_argument("--networks", default="digits", help=f"comma-separated, of {', '.join(NETWORKS)} (default digits)")
    p.add_argument("--models-dir", default=str(ROOT / "build" / "claims" / "models"), metavar="DIR",
                   help="where the models are trained (reused when present; default build/claims/models)")
    p.add_argument("--out", default=str(ROOT / "build" / "reports" / "claims" / "claims.json"), metavar="FILE.json",
                   help="results (default build/reports/claims/claims.json)")
    p.add_argument("--lanes", type=lanes_arg, default=8, help="hardware lanes P (default 8)")
    p.add_argument("--tolerance", type=positive_float, default=0.5,
                   help="accuracy points the converted rate model may lie below TSC's (default 0.5)")
    p.add_argument("--max-T", type=positive_int, default=1024, help="largest T searched, 1..1024 (default 1024)")
    p.add_argument("--rtl-samples", type=positive_int, default=50,
                   help="seeded RTL sample size where the whole split does not fit the budget (default 50)")
    p.add_argument("--rtl-cycle-budget", type=positive_float, default=2e6,
                   help="golden cycles of the whole split up to which the RTL runs it all (default 2e6)")
    p.add_argument("--no-rtl", action="store_true", help="skip sim.regress (figures only; not for the README)")
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the RTL sample (default 0)")
    p.add_argument("--fmax-json", action="append", default=[], metavar="FILE.json",
                   help="hw.synth result whose Fmax clocks the rows of the same layers, coding and lanes (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--stcb-target", type=positive_float, default=98.0,
                   help="table 3: the accuracy (percent) whose smallest T is compared (default 98)")
    p.add_argument("--jobs", type=positive_int, default=2,
                   help="models trained, and then RTL runs, at once (default 2)")
    a = p.parse_args(argv)
    nets = [n.strip() for n in a.networks.split(",") if n.strip()]
    for n in nets:
        if n not in NETWORKS:
            raise UsageError(f"--networks: unknown network {n!r} (known: {', '.join(NETWORKS)})")
    if not nets or len(set(nets)) != len(nets):
        raise UsageError("--networks: give each network once")
    if a.stcb_target > 100:
        raise UsageError(f"--stcb-target: {a.stcb_target} is above 100 (percent)")
    if a.max_T > 1024:
        raise UsageError(f"--max-T: {a.max_T} is above 1024")
    check_outputs([Output("--out", a.out)])
    fmax = []
    for f in a.fmax_json:
        fp = Path(f)
        try:
            d = json.loads(fp.read_text())
        except (OSError, ValueError) as e:
            raise UsageError(f"--fmax-json {f}: {type(e).__name__}: {e}") from None
        if not isinstance(d, dict) or d.get("status") != "ok" or not isinstance(d.get("fmax_mhz"), (int, float)):
            raise UsageError(f"--fmax-json {f}: not an ok hw.synth result with an Fmax")
        meta = d.get("model_meta") or {}
        fmax.append({"lanes": int(d.get("lanes", 0)), "layers": meta.get("layers"), "coding": meta.get("coding"),
                     "fmax_mhz": float(d["fmax_mhz"]), "file": _rel(fp)})
    if Path(a.models_dir).exists() and not Path(a.models_dir).is_dir():
        raise UsageError(f"--models-dir {a.models_dir}: not a directory")
    try:
        res = claims(nets, models_dir=Path(a.models_dir), lanes=a.lanes, tolerance=a.tolerance, max_T=a.max_T,
                     rtl_samples=a.rtl_samples, rtl_cycle_budget=a.rtl_cycle_budget, seed=a.seed, fmax=fmax,
                     rtl=not a.no_rtl, progress=not a.no_progress, stcb_target=a.stcb_target / 100, jobs=a.jobs,
                     log=lambda s: print(s, file=sys.stderr, flush=True))
    except RuntimeError as e:            # a training run that failed, or the per-synapse check
        print(f"sim.claims: {str(e).splitlines()[0]}", file=sys.stderr)
        return 1
    res["command"] = "python -m sim.claims " + " ".join(shlex.quote(v) for v in (argv if argv is not None else sys.argv[1:]))
    with OutputSet() as files:
        files.add_text(a.out, json.dumps(res, indent=2))
        files.commit()
    bad = [k for k, v in res["rtl"].items() if not v["exact"]]
    print(f"wrote {a.out} in {res['seconds']:.0f} s; RTL: "
          + ("skipped" if a.no_rtl else f"{len(res['rtl']) - len(bad)}/{len(res['rtl'])} models equal to golden"))
    if bad:
        print(f"sim.claims: RTL differs from golden for {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    guard("sim.claims", main)
