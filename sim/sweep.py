"""``python -m sim.sweep``: design-space exploration of the core from golden's counters, no RTL.

For every configuration (coding x T x lanes) it runs ``golden.run`` on a dataset split and reports
cycles per inference, latency and throughput (at the Fmax that ``hw.synth`` measured for that lane
count, given with ``--fmax-json``, else at ``--clock-mhz``), memory sizes (``golden.geometry.CoreGeometry.memories()``)
and energy per inference (``golden.energy``, with the same network's ANN energy beside it).

Writes ``OUT.csv``, ``OUT.json`` and three PNG plots: ``OUT_cycles.png`` (cycles against lanes),
``OUT_pareto.png`` (energy against latency, Pareto front marked) and ``OUT_codings.png`` (accuracy and
energy per coding). ``--verify K`` runs K configurations, drawn with a fixed seed, through the
Verilator regression (``sim.regress``) on the first ``--verify-limit`` samples and checks that the
predicted cycles equal the RTL's for every sample; it exits 1 if any differs.

Bad input (lanes list, coding, T, model, dataset, Fmax file, energy table) exits 2 with one line and
writes nothing.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import sys
import time
from pathlib import Path

import numpy as np

from golden import energy as en
from golden.cli import ArgumentParser, UsageError, guard, positive_int
from golden.geometry import ConfigError, CoreGeometry
from golden.io import atomic_write, load_model
from golden.model import CODING_ENCODINGS, CODING_READOUTS, CODINGS, ModelError

__all__ = ["parse_lanes", "parse_codings", "parse_T", "load_fmax", "sweep", "verify", "retarget", "pareto_front",
           "table_markdown", "CSV_FIELDS"]

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_LANES = "1,2,4,8,16,32,64"

CSV_FIELDS = ("model", "coding", "T", "lanes", "samples", "accuracy", "cycles_mean", "cycles_min", "cycles_max",
              "clock_mhz", "clock_source", "latency_us", "throughput_per_s", "cycle_efficiency",
              "weight_reads", "state_reads", "state_writes", "param_reads", "syn_ops", "neuron_updates",
              "event_reads", "event_writes", "spikes", "memory_bits", "weight_memory_bits",
              "energy_pj", *[f"energy_{c}_pj" for c in en.CATEGORIES], "ann_float32_pj", "ann_int8_pj",
              "pareto")


def parse_lanes(text: str) -> list[int]:
    """``"1,2,4"`` -> [1, 2, 4]; each a power of two from 1 to 64, no repeats."""
    parts = [p.strip() for p in str(text).split(",")]
    if not parts or any(not p for p in parts):
        raise UsageError(f"--lanes must be a comma-separated list of powers of two from 1 to 64, got {text!r}")
    out = []
    for p in parts:
        try:
            v = int(p)
        except ValueError:
            raise UsageError(f"--lanes: {p!r} is not an integer (expected e.g. 1,2,4,8)") from None
        if v < 1 or v > 64 or v & (v - 1):
            raise UsageError(f"--lanes: {v} is not a power of two from 1 to 64")
        if v in out:
            raise UsageError(f"--lanes: {v} is listed twice")
        out.append(v)
    return out


def parse_codings(text: str) -> list[str]:
    """Comma-separated codings, each one of ``golden.CODINGS``, none twice."""
    out = []
    for c in (p.strip() for p in str(text).split(",")):
        if c not in CODINGS:
            raise UsageError(f"--codings: unknown coding {c!r} (known: {', '.join(CODINGS)})")
        if c in out:
            raise UsageError(f"--codings: {c!r} is listed twice")
        out.append(c)
    return out


def parse_T(text: str) -> list[int]:
    out = []
    for p in (q.strip() for q in str(text).split(",")):
        try:
            v = int(p)
        except ValueError:
            raise UsageError(f"--T: {p!r} is not an integer (expected e.g. 4,8,16)") from None
        if v < 1 or v > 1024:
            raise UsageError(f"--T: {v} is outside 1..1024")
        if v in out:
            raise UsageError(f"--T: {v} is listed twice")
        out.append(v)
    return out


def _as_list(models) -> list:
    """A Model, or a list of Models or (label, Model) pairs -> [(label, Model)]."""
    if not isinstance(models, (list, tuple)):
        models = [models]
    out = []
    for i, m in enumerate(models):
        out.append(m if isinstance(m, tuple) else (f"model{i}" if len(models) > 1 else "model", m))
    return out


def load_fmax(paths, models) -> list[dict]:
    """``hw.synth`` result files -> [{"lanes", "layers", "coding", "fmax_mhz", "file", "part", "target"}].

    Each file must be an ok result for the network of one of ``models`` (a Model or a list); it then
    sets the clock of that network's configurations with the same lane count (and coding, when the
    file records one)."""
    nets = [m.meta()["layers"] for _, m in _as_list(models)]
    out = []
    for p in paths or []:
        p = Path(p)
        if not p.is_file():
            raise UsageError(f"--fmax-json {p}: file not found")
        try:
            d = json.loads(p.read_text())
        except (ValueError, UnicodeDecodeError) as e:
            raise UsageError(f"--fmax-json {p}: not valid JSON ({e})") from None
        if not isinstance(d, dict) or "lanes" not in d or "fmax_mhz" not in d:
            raise UsageError(f"--fmax-json {p}: not an hw.synth result (no lanes/fmax_mhz)")
        if d.get("status") != "ok" or not isinstance(d["fmax_mhz"], (int, float)) or d["fmax_mhz"] <= 0:
            raise UsageError(f"--fmax-json {p}: synthesis status {d.get('status')!r} has no usable Fmax")
        meta = d.get("model_meta") or {}
        layers = meta.get("layers")
        if layers is not None and layers not in nets:
            raise UsageError(f"--fmax-json {p} was synthesised for a different network "
                             f"({[layers[0]['n_in']] + [l['n_out'] for l in layers]}, not "
                             f"{' or '.join(str(m.sizes) for _, m in _as_list(models))})")
        e = {"lanes": int(d["lanes"]), "layers": layers, "coding": meta.get("coding"), "T": meta.get("T"),
             "fmax_mhz": float(d["fmax_mhz"]), "file": str(p), "part": d.get("part"), "target": d.get("target")}
        for o in out:
            if (o["lanes"], o["layers"], o["coding"]) == (e["lanes"], e["layers"], e["coding"]):
                raise UsageError(f"--fmax-json: two files for lanes={e['lanes']} of the same network "
                                 f"({o['file']} and {p})")
        out.append(e)
    return out


def _fmax_for(fmax, model, P):
    """The Fmax entry that applies to ``model`` at ``P`` lanes, or None."""
    if isinstance(fmax, dict):         # {lanes: entry}: applies to every model
        return fmax.get(P)
    for e in fmax or []:
        if e["lanes"] == P and e["layers"] in (None, model.meta()["layers"]) and e["coding"] in (None, model.coding):
            return e
    return None


def pareto_front(points) -> list[bool]:
    """For (latency, energy) pairs: True where no other point is <= in both and < in one."""
    pts = [tuple(p) for p in points]
    flags = []
    for i, (a, b) in enumerate(pts):
        dominated = any((c <= a and d <= b and (c < a or d < b)) for j, (c, d) in enumerate(pts) if j != i)
        flags.append(not dominated)
    return flags


def retarget(model, coding: str, T: int):
    """``model`` under another coding and/or T (the same integer weights). The encoding and readout
    are kept when the coding admits them, else the coding's first admissible one is used."""
    kw = {}
    if coding != model.coding:
        kw["coding"] = coding
        if model.encoding not in CODING_ENCODINGS[coding]:
            kw["encoding"] = CODING_ENCODINGS[coding][0]
        if model.readout not in CODING_READOUTS[coding]:
            kw["readout"] = CODING_READOUTS[coding][0]
    if T != model.T:
        kw["T"] = T
    return model.replace(**kw) if kw else model


def _row(model, coding, T, P, g, y, clock, clock_source, table, label="model") -> dict:
    c = {k: v.astype(np.float64) for k, v in g.counters.items()}
    cyc = g.counters["cycles"]

    def mean(k):
        return float(c[k].mean())

    row = {"model": label, "coding": coding, "T": T, "lanes": P, "samples": int(g.batch),
           "accuracy": float((g.predictions == y).mean()) if y is not None and len(y) else None,
           "cycles_mean": float(cyc.mean()), "cycles_min": int(cyc.min()), "cycles_max": int(cyc.max()),
           "clock_mhz": clock, "clock_source": clock_source,
           "latency_us": float(cyc.mean()) / clock, "throughput_per_s": clock * 1e6 / float(cyc.mean()),
           "cycle_efficiency": float((c["weight_reads"] + c["state_writes"]).sum() / c["cycles"].sum()),
           **{k: mean(k) for k in ("weight_reads", "state_reads", "state_writes", "param_reads", "syn_ops",
                                   "neuron_updates", "event_reads", "event_writes", "spikes")}}
    row["counters"] = {k: float(v.mean()) for k, v in c.items()}
    try:
        mems = CoreGeometry(model, P).memories()
    except ConfigError as e:     # a coding golden runs but hw cannot build yet: no memories, no energy
        row.update({"memory_bits": None, "weight_memory_bits": None, "energy_pj": None, "memories": None,
                    "note": str(e)})
        row.update({f"energy_{k}_pj": None for k in en.CATEGORIES})
        ann = en.ann_energy(model, table)
    else:
        e = en.energy(model, g, P, table)
        ann = e["ann"]
        row.update({"memory_bits": sum(m["bits"] for m in mems.values()),
                    "weight_memory_bits": mems["weights"]["bits"], "memories": mems,
                    "energy_pj": e["mean_total_pj"], **{f"energy_{k}_pj": v for k, v in e["mean_pj"].items()}})
    row["ann_float32_pj"] = ann["float32"]["total_pj"]
    row["ann_int8_pj"] = ann["int8"]["total_pj"]
    return row


def sweep(model, x, y, *, lanes, codings=None, Ts=None, clock_mhz=100.0, fmax=None, table=None,
          progress=True, keep_results=False) -> dict:
    """All configurations of one model or several (a list of Models or (label, Model) pairs).

    Each model runs under ``codings`` (default: its own coding) and ``Ts`` (default: its own T),
    re-targeted with :func:`retarget`. Returns {"rows": [...], "models": {(label, coding, T): Model},
    "results": {...}}.
    """
    from tqdm import tqdm
    import golden
    table = table or en.DEFAULT_TABLE
    models = {}
    for label, m0 in _as_list(model):
        for coding in codings or [m0.coding]:
            for T in Ts or [m0.T]:
                models[(label, coding, T)] = retarget(m0, coding, T)
    configs = [(key, P) for key in models for P in lanes]
    rows, results = [], {}
    for (label, cd, T), P in tqdm(configs, desc="sweep", unit="config", disable=not progress, file=sys.stderr):
        m = models[(label, cd, T)]
        g = golden.run(m, x, lanes=P)
        f = _fmax_for(fmax, m, P)
        if f is not None:
            clock, src = f["fmax_mhz"], f"fmax {Path(f['file']).name}"
        else:
            clock, src = float(clock_mhz), "--clock-mhz"
        rows.append(_row(m, cd, T, P, g, y, clock, src, table, label))
        if keep_results:
            results[(label, cd, T, P)] = g
    ok = [r for r in rows if r["energy_pj"] is not None]
    flags = pareto_front([(r["latency_us"], r["energy_pj"]) for r in ok])
    for r in rows:
        r["pareto"] = False
    for r, f in zip(ok, flags):
        r["pareto"] = bool(f)
    return {"rows": rows, "models": models, "results": results}


# ------------------------------------------------------------------------------------------------
# verification against the RTL

def verify(models: dict, rows: list, k: int, x, y, *, seed: int = 0, stem: str | None = None, base=(),
           progress=True) -> list[dict]:
    """Run ``k`` configurations (drawn with ``seed``) through ``sim.regress`` and compare cycles per sample."""
    from tqdm import tqdm
    import golden
    from .regress import regress
    from .runner import SimError
    from .toolchain import ToolchainError
    cand = [r for r in rows if r["memory_bits"] is not None]
    rng = np.random.default_rng(seed)
    pick = sorted(rng.choice(len(cand), size=min(k, len(cand)), replace=False).tolist()) if cand else []
    verdicts = []
    for i in tqdm(pick, desc="verify", unit="config", disable=not progress, file=sys.stderr):
        r = cand[i]
        m = models[(r["model"], r["coding"], r["T"])]
        P = r["lanes"]
        label = re.sub(r"\W", "_", stem or r["model"])
        label = label if label[:1].isalpha() else f"m_{label}"
        # an unmodified model uses sim.regress's own netlist name, so its Verilator builds are reused
        bases = base if isinstance(base, (list, tuple, set)) else [base]
        name = f"{label}_p{P}" if any(m is b for b in bases) else f"{label}_{r['coding']}_t{r['T']}_p{P}"
        t0 = time.perf_counter()
        try:
            res = regress(m, x, y, lanes=P, name=name, log=lambda s: None)
        except (SimError, ToolchainError) as e:
            verdicts.append({"model": r["model"], "coding": r["coding"], "T": r["T"], "lanes": P, "samples": 0, "cycles_match": False,
                             "verdict": "ERROR", "error": str(e).splitlines()[0], "first_cycle_mismatch": None,
                             "regress_first_mismatch": str(e).splitlines()[0], "predicted_cycles_mean": float("nan"),
                             "rtl_cycles_mean": float("nan"), "seconds": round(time.perf_counter() - t0, 1)})
            continue
        g = golden.run(m, x, lanes=P)
        pred = [int(v) for v in g.counters["cycles"]]
        rtl = [int(s["counters_rtl"]["cycles"]) for s in res.samples]
        diff = [j for j, (a, b) in enumerate(zip(pred, rtl)) if a != b]
        v = {"model": r["model"], "coding": r["coding"], "T": r["T"], "lanes": P, "samples": len(rtl),
             "predicted_cycles_mean": float(np.mean(pred)), "rtl_cycles_mean": float(np.mean(rtl)),
             "cycles_match": not diff and len(pred) == len(rtl), "first_cycle_mismatch": diff[0] if diff else None,
             "all_outputs_and_counters_match": res.summary["matching_samples"] == res.summary["samples"],
             "regress_first_mismatch": res.first_mismatch, "seconds": round(time.perf_counter() - t0, 1)}
        v["verdict"] = "match" if v["cycles_match"] and v["all_outputs_and_counters_match"] else "MISMATCH"
        verdicts.append(v)
    return verdicts


# ------------------------------------------------------------------------------------------------
# outputs

def _csv(rows) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else (repr(r[k]) if isinstance(r[k], float) else r[k]))
                    for k in CSV_FIELDS})
    return buf.getvalue()


def _plots(out: Path, rows: list, title: str) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    files = []
    groups = {}
    multi = len({r["model"] for r in rows}) > 1
    for r in rows:
        groups.setdefault((r["coding"], r["T"], r["model"] if multi else ""), []).append(r)
    name = lambda cd, T, lb: f"{lb + ': ' if lb else ''}{cd}, T={T}"  # noqa: E731

    fig, ax = plt.subplots(figsize=(6, 4))
    for (cd, T, lb), rs in groups.items():
        ax.plot([r["lanes"] for r in rs], [r["cycles_mean"] for r in rs], "o-", label=name(cd, T, lb))
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("lanes P")
    ax.set_ylabel("cycles per inference (mean)")
    ax.set_title(f"{title}: cycles against lanes")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    p = _sib(out, "_cycles.png")
    atomic_write(p, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    files.append(p.name)

    fig, ax = plt.subplots(figsize=(6, 4))
    for (cd, T, lb), rs in groups.items():
        rs = [r for r in rs if r["energy_pj"] is not None]
        ax.plot([r["latency_us"] for r in rs], [r["energy_pj"] / 1e3 for r in rs], "o", label=name(cd, T, lb))
        for r in rs:
            ax.annotate(f"P={r['lanes']}", (r["latency_us"], r["energy_pj"] / 1e3), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
    front = sorted((r for r in rows if r["pareto"]), key=lambda r: r["latency_us"])
    if front:
        ax.plot([r["latency_us"] for r in front], [r["energy_pj"] / 1e3 for r in front], "k--", lw=1,
                label="Pareto front")
    ann = rows[0]
    ax.axhline(ann["ann_int8_pj"] / 1e3, color="gray", ls=":", lw=1, label="ANN int8 (MAC + weights)")
    ax.set_xscale("log")
    ax.set_xlabel("latency per inference (µs)")
    ax.set_ylabel("energy per inference (nJ)")
    ax.set_title(f"{title}: energy against latency")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    p = _sib(out, "_pareto.png")
    atomic_write(p, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    files.append(p.name)

    # per (coding, T): accuracy and the lowest energy over lanes; the ANN baselines beside them
    labels, acc, ener = [], [], []
    for (cd, T, lb), rs in groups.items():
        rs_e = [r for r in rs if r["energy_pj"] is not None]
        labels.append(f"{lb + chr(10) if lb else ''}{cd}\nT={T}")
        acc.append(100 * (rs[0]["accuracy"] or 0.0))
        ener.append(min(r["energy_pj"] for r in rs_e) / 1e3 if rs_e else 0.0)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(8, 3.6))
    a1.bar(labels, acc, color="tab:blue")
    a1.set_ylabel("accuracy (%)")
    a1.set_ylim(0, 108)
    a1.set_title("accuracy")
    for i, v in enumerate(acc):
        a1.text(i, v + 1, f"{v:.1f}", ha="center", fontsize=8)
    a2.bar(labels + ["ANN\nint8", "ANN\nfloat32"], ener + [ann["ann_int8_pj"] / 1e3, ann["ann_float32_pj"] / 1e3],
           color=["tab:orange"] * len(ener) + ["gray", "dimgray"])
    a2.set_ylabel("energy per inference (nJ)")
    a2.set_title("energy (best lanes)")
    fig.suptitle(f"{title}: codings" + (" (one coding in this sweep)" if len({k[0] for k in groups}) == 1 else ""),
                 fontsize=9)
    fig.tight_layout()
    p = _sib(out, "_codings.png")
    atomic_write(p, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    files.append(p.name)
    return files


def _sib(out: Path, suffix: str) -> Path:
    return out.parent / (out.name + suffix)


def table_markdown(rows: list) -> str:
    """The sweep as a Markdown table (one line per configuration; a model column when there are several)."""
    multi = len({r["model"] for r in rows}) > 1
    lines = [("| model " if multi else "") + "| coding | T | P | accuracy | cycles | clock (MHz) | latency (µs) | "
             "inferences/s | memory (bits) | energy (nJ) | Pareto |",
             ("| --- " if multi else "") + "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        acc = "-" if r["accuracy"] is None else f"{100 * r['accuracy']:.2f}%"
        e = "-" if r["energy_pj"] is None else f"{r['energy_pj'] / 1e3:.2f}"
        lines.append((f"| {r['model']} " if multi else "") +
                     f"| {r['coding']} | {r['T']} | {r['lanes']} | {acc} | {r['cycles_mean']:.1f} | "
                     f"{r['clock_mhz']:.2f} | {r['latency_us']:.2f} | {r['throughput_per_s']:.0f} | "
                     f"{r['memory_bits'] if r['memory_bits'] is not None else '-'} | {e} | "
                     f"{'*' if r['pareto'] else ''} |")
    return "\n".join(lines)


def _label(path: str, taken: set) -> str:
    base = re.sub(r"\W", "_", Path(path).stem) or "model"
    base = base if base[0].isalpha() else f"m_{base}"
    label, i = base, 2
    while label in taken:
        label, i = f"{base}_{i}", i + 1
    taken.add(label)
    return label


def main(argv=None) -> int:
    from golden import datasets
    p = ArgumentParser(prog="python -m sim.sweep", description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, nargs="+", action="extend",
                   help="integer model file(s) (.npz); several (e.g. one per coding, same task) are swept side by side")
    p.add_argument("--lanes", default=DEFAULT_LANES, help=f"comma-separated lane counts (default {DEFAULT_LANES})")
    p.add_argument("--codings", default=None, help=f"comma-separated codings golden supports "
                                                   f"({', '.join(CODINGS)}); re-targets each model "
                                                   f"(default: each model's own)")
    p.add_argument("--T", default=None, help="comma-separated T values; re-targets each model (default: its own)")
    p.add_argument("--dataset", default="digits")
    p.add_argument("--split", default="test", choices=("train", "test"))
    p.add_argument("--data-dir", default=None)
    p.add_argument("--limit", type=positive_int, default=None, help="first N samples only")
    p.add_argument("--clock-mhz", type=float, default=100.0, help="clock for configurations without --fmax-json")
    p.add_argument("--fmax-json", nargs="+", action="extend", default=[], help="hw.synth result JSON(s)")
    p.add_argument("--energy-table", default=None, help="JSON file overriding entries of golden.energy's table")
    p.add_argument("--verify", type=int, default=0, help="check K sampled configurations against the RTL")
    p.add_argument("--verify-limit", type=positive_int, default=20, help="samples per verified configuration")
    p.add_argument("--seed", type=int, default=0, help="seed for choosing the verified configurations")
    p.add_argument("--out", default=None, help="output prefix (default build/sweep/<first model>): OUT.csv, OUT.json, "
                                               "OUT_*.png")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)

    lanes = parse_lanes(a.lanes)
    codings = parse_codings(a.codings) if a.codings is not None else None
    Ts = parse_T(a.T) if a.T is not None else None
    if not (a.clock_mhz > 0 and math.isfinite(a.clock_mhz)):
        raise UsageError(f"--clock-mhz must be a positive number, got {a.clock_mhz}")
    if a.verify < 0:
        raise UsageError(f"--verify must be >= 0, got {a.verify}")
    taken: set = set()
    models = [(_label(path, taken), load_model(path)) for path in a.model]
    for label, model in models:
        for cd in codings or [model.coding]:
            for T in Ts or [model.T]:
                try:
                    retarget(model, cd, T)
                except ModelError as e:
                    raise UsageError(f"{label}: coding {cd}, T={T}: {e}") from None
    table = en.load_table(a.energy_table) if a.energy_table else en.DEFAULT_TABLE
    fmax = load_fmax(a.fmax_json, [m for _, m in models])
    x, y = datasets.load(a.dataset, a.split, a.data_dir)
    if a.limit:
        x, y = x[:a.limit], y[:a.limit]
    from golden.engine import check_inputs
    for _, model in models:
        check_inputs(model, x)
    stem = models[0][0]
    out = Path(a.out) if a.out else ROOT / "build" / "sweep" / stem
    # every output is checked before any is written, so a bad --out leaves nothing half-written
    for suffix in (".csv", ".json", "_cycles.png", "_pareto.png", "_codings.png"):
        target = _sib(out, suffix)
        if target.is_dir():
            raise UsageError(f"output {target} is a directory")
    if out.parent.exists() and not out.parent.is_dir():
        raise UsageError(f"output directory {out.parent} is a file")
    if a.verify:
        from .toolchain import ToolchainError, ensure_verilator
        try:
            ensure_verilator()
        except ToolchainError as e:
            raise UsageError(f"--verify needs Verilator: {str(e).splitlines()[0]}") from None

    t0 = time.perf_counter()
    s = sweep(models, x, y, lanes=lanes, codings=codings, Ts=Ts, clock_mhz=a.clock_mhz, fmax=fmax, table=table,
              progress=not a.no_progress)
    rows = s["rows"]
    print(table_markdown(rows))
    verdicts = []
    if a.verify:
        n = min(a.verify_limit, len(x))
        verdicts = verify(s["models"], rows, a.verify, x[:n], y[:n], seed=a.seed, base=[m for _, m in models],
                          progress=not a.no_progress)
        for v in verdicts:
            print(f"verify {v['model']} {v['coding']} T={v['T']} P={v['lanes']}: {v['verdict']} on {v['samples']} "
                  f"samples (predicted {v['predicted_cycles_mean']:.1f}, RTL {v['rtl_cycles_mean']:.1f} "
                  f"cycles/inference; {v['seconds']} s)")
    doc = {"models": {label: {"path": str(path), "meta": m.meta()} for (label, m), path in zip(models, a.model)},
           "dataset": a.dataset, "split": a.split, "samples": int(len(x)), "lanes": lanes, "codings": codings,
           "T": Ts, "clock_mhz": a.clock_mhz, "fmax": fmax, "energy_table": table, "rows": rows,
           "verify": verdicts, "seconds": round(time.perf_counter() - t0, 1)}
    doc["plots"] = _plots(out, rows, stem)
    atomic_write(_sib(out, ".csv"), lambda tmp: Path(tmp).write_text(_csv(rows)))
    atomic_write(_sib(out, ".json"), lambda tmp: Path(tmp).write_text(json.dumps(doc, indent=1)))
    print(f"wrote {_sib(out, '.csv')}, {_sib(out, '.json')} and {', '.join(doc['plots'])} "
          f"({doc['seconds']} s)")
    bad = [v for v in verdicts if v["verdict"] != "match"]
    if bad:
        v = bad[0]
        print(f"MISMATCH: {v['model']} {v['coding']} T={v['T']} P={v['lanes']}: predicted cycles differ from the RTL "
              f"(first sample {v['first_cycle_mismatch']}; {v['regress_first_mismatch']})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    guard("sim.sweep", main)
