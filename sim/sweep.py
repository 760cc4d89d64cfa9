"""``python -m sim.sweep``: design-space exploration of the core from golden's counters, no RTL.

For every configuration (coding x T x lanes) it runs ``golden.run`` on a dataset split and reports
cycles per inference, latency and throughput (at the Fmax that ``hw.synth`` measured for that lane
count, given with ``--fmax-json``, else at ``--clock-mhz``; a row clocked by an Fmax measured on another
netlist than its own core's says so, in the table, the JSON/CSV and on stderr), memory sizes
(``golden.geometry.CoreGeometry.memories()``) and energy per inference (``golden.energy``, with the same
network's ANN energy beside it).

``--out DIR/NAME.json`` names the main output; next to it go ``NAME.csv`` and three PNG plots:
``NAME_cycles.png`` (cycles against lanes), ``NAME_pareto.png`` (energy against latency, Pareto front
marked) and ``NAME_codings.png`` (accuracy and energy per coding; with one coding, energy by lanes and by
category). All five are written together or not at all. ``--verify K`` runs K configurations, drawn with a
fixed seed, through the Verilator regression (``sim.regress``) on the first ``--verify-limit`` samples and
checks that the predicted cycles equal the RTL's for every sample; it exits 1 if any differs.

Bad input (lanes list, coding, T, model, dataset, Fmax file, energy table, output paths) exits 2 with one
line and writes nothing.
"""

from __future__ import annotations

import csv
import io
import json
import re
import sys
import time
from pathlib import Path

import numpy as np

from golden import energy as en
from golden.cli import (ArgumentParser, Output, OutputSet, UsageError, add_data_options, check, check_outputs,
                        banks_list, error_line, guard, int_list, int_range, lanes_list, main_output, nonneg_int, positive_float,
                        positive_int, seed_int)
from golden.geometry import ConfigError, CoreGeometry
from golden.io import load_model
from golden.model import CODING_ENCODINGS, CODING_READOUTS, CODINGS, ModelError
from golden.progress import Progress
from golden.progress import progress as progress_of

__all__ = ["parse_lanes", "parse_codings", "parse_T", "load_fmax", "sweep", "verify", "retarget", "pareto_front",
           "table_markdown", "fmax_netlist", "fmax_notes", "CSV_FIELDS"]

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_LANES = "1,2,4,8,16,32,64"

CSV_FIELDS = ("model", "coding", "T", "lanes", "banks", "samples", "accuracy", "cycles_mean", "cycles_min", "cycles_max",
              "clock_mhz", "clock_source", "clock_netlist", "latency_us", "throughput_per_s", "cycle_efficiency",
              "weight_reads", "state_reads", "state_writes", "param_reads", "syn_ops", "neuron_updates",
              "event_reads", "event_writes", "spikes", "memory_bits", "weight_memory_bits",
              "energy_pj", *[f"energy_{c}_pj" for c in en.CATEGORIES], "ann_float32_pj", "ann_int8_pj",
              "pareto")


def parse_lanes(text: str) -> list[int]:
    """``"1,2,4"`` -> [1, 2, 4]; each a power of two from 1 to 64, no repeats."""
    return check(lanes_list, text, "--lanes")


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


T_LIST = int_list(int_range(1, 1024), what="time steps from 1 to 1024 (e.g. 4,8,16)")


def parse_T(text: str) -> list[int]:
    """``"4,8"`` -> [4, 8]; each from 1 to 1024, no repeats."""
    return check(T_LIST, text, "--T")


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
             "fmax_mhz": float(d["fmax_mhz"]), "file": str(p), "part": d.get("part"), "target": d.get("target"),
             # which netlist was synthesised (hw.synth records it): checked against each core it clocks
             "top": d.get("top"), "verilog_sha256": d.get("verilog_sha256")}
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


def fmax_netlist(entry: dict, model, P: int) -> str:
    """Whether the Fmax ``entry`` was measured on the very netlist hw.generate writes for ``model`` at ``P``
    lanes: "same", "other" (another core: another T, an older gateware, a core hw cannot build) or
    "unknown" (the file records no netlist hash). The network, lanes and coding are already checked;
    this elaborates the core, so it is asked once per configuration that an Fmax file clocks."""
    from hw.synth import same_netlist
    if not isinstance(entry.get("top"), str) or not isinstance(entry.get("verilog_sha256"), str):
        return "unknown"
    return "same" if same_netlist(entry, model, P) else "other"


NETLIST_NOTES = {"other": ("synthesised from another netlist", "of another core"),
                 "unknown": ("records no netlist hash", "it cannot be matched to")}


def fmax_notes(rows: list) -> list[str]:
    """One line per Fmax file that clocks a configuration whose netlist it does not describe (or cannot
    say which it describes): the rows are clocked with it all the same, and this says so."""
    by_file: dict = {}
    for r in rows:
        if r.get("clock_netlist") in NETLIST_NOTES:
            by_file.setdefault((r["fmax_file"], r["clock_netlist"]), []).append(r)
    out = []
    for (f, kind), rs in by_file.items():
        cfgs = ", ".join(f"{r['model']} {r['coding']} T={r['T']} P={r['lanes']}" for r in rs)
        what, whose = NETLIST_NOTES[kind]
        out.append(f"--fmax-json {f}: {what}: its Fmax clocks {len(rs)} configuration"
                   f"{'s' if len(rs) > 1 else ''} {whose} ({cfgs}); their latency is an estimate")
    return out


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


def _row(model, coding, T, P, g, y, clock, clock_source, table, label="model", netlist=None, fmax_file=None,
         banks: int = 1) -> dict:
    c = {k: v.astype(np.float64) for k, v in g.counters.items()}
    cyc = g.counters["cycles"]

    def mean(k):
        return float(c[k].mean())

    row = {"model": label, "coding": coding, "T": T, "lanes": P, "banks": banks, "samples": int(g.batch),
           "accuracy": float((g.predictions == y).mean()) if y is not None and len(y) else None,
           "cycles_mean": float(cyc.mean()), "cycles_min": int(cyc.min()), "cycles_max": int(cyc.max()),
           "clock_mhz": clock, "clock_source": clock_source, "clock_netlist": netlist, "fmax_file": fmax_file,
           "latency_us": float(cyc.mean()) / clock, "throughput_per_s": clock * 1e6 / float(cyc.mean()),
           "cycle_efficiency": float((c["weight_reads"] + c["state_writes"]).sum() / c["cycles"].sum()),
           **{k: mean(k) for k in ("weight_reads", "state_reads", "state_writes", "param_reads", "syn_ops",
                                   "neuron_updates", "event_reads", "event_writes", "spikes")}}
    row["counters"] = {k: float(v.mean()) for k, v in c.items()}
    try:
        mems = CoreGeometry(model, P, banks).memories()
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
          progress=True, keep_results=False, banks=(1,)) -> dict:
    """All configurations of one model or several (a list of Models or (label, Model) pairs).

    Each model runs under ``codings`` (default: its own coding) and ``Ts`` (default: its own T),
    re-targeted with :func:`retarget`, at every lanes P and accumulator ``banks`` (golden's cycles;
    a measured Fmax clocks banks 1 only: hw.synth's results are matched by lanes). Returns {"rows": [...], "models": {(label, coding, T): Model},
    "results": {...}}.
    """
    import golden
    table = table or en.DEFAULT_TABLE
    models = {}
    for label, m0 in _as_list(model):
        for coding in codings or [m0.coding]:
            for T in Ts or [m0.T]:
                models[(label, coding, T)] = retarget(m0, coding, T)
    configs = [(key, P, B) for key in models for P in lanes for B in banks]
    rows, results = [], {}
    bar = Progress(len(configs), "sweep", "configurations", enabled=progress)
    for (label, cd, T), P, B in configs:
        m = models[(label, cd, T)]
        g = golden.run(m, x, lanes=P, banks=B)
        f = _fmax_for(fmax, m, P) if B == 1 else None
        if f is not None:
            clock, src = f["fmax_mhz"], f"fmax {Path(f['file']).name}"
            netlist, ffile = fmax_netlist(f, m, P), f["file"]
        else:
            clock, src, netlist, ffile = float(clock_mhz), "--clock-mhz", None, None
        rows.append(_row(m, cd, T, P, g, y, clock, src, table, label, netlist, ffile, banks=B))
        if keep_results:
            results[(label, cd, T, P) if tuple(banks) == (1,) else (label, cd, T, P, B)] = g
        bar.update(1)
    bar.close()
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
    import golden
    from .regress import regress
    from .runner import SimError
    from .toolchain import ToolchainError
    cand = [r for r in rows if r["memory_bits"] is not None]
    rng = np.random.default_rng(seed)
    pick = sorted(rng.choice(len(cand), size=min(k, len(cand)), replace=False).tolist()) if cand else []
    verdicts = []
    for i in progress_of(pick, "verify", "configurations", enabled=progress):
        r = cand[i]
        m = models[(r["model"], r["coding"], r["T"])]
        P, B = r["lanes"], r.get("banks", 1)
        label = re.sub(r"\W", "_", stem or r["model"])
        label = label if label[:1].isalpha() else f"m_{label}"
        # an unmodified model uses sim.regress's own netlist name, so its Verilator builds are reused
        bases = base if isinstance(base, (list, tuple, set)) else [base]
        name = f"{label}_p{P}" if any(m is b for b in bases) else f"{label}_{r['coding']}_t{r['T']}_p{P}"
        name += f"_b{B}" if B > 1 else ""
        t0 = time.perf_counter()
        try:
            res = regress(m, x, y, lanes=P, name=name, log=lambda s: None, **({"banks": B} if B > 1 else {}))
        except (SimError, ToolchainError) as e:
            verdicts.append({"model": r["model"], "coding": r["coding"], "T": r["T"], "lanes": P, "samples": 0, "cycles_match": False,
                             "verdict": "ERROR", "error": str(e).splitlines()[0], "first_cycle_mismatch": None,
                             "regress_first_mismatch": str(e).splitlines()[0], "predicted_cycles_mean": float("nan"),
                             "rtl_cycles_mean": float("nan"), "seconds": round(time.perf_counter() - t0, 1)})
            continue
        g = golden.run(m, x, lanes=P, banks=B)
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


ENERGY_GROUPS = (("synaptic adds", ("syn_adds",)), ("neuron updates", ("neuron_updates",)),
                 ("weight reads", ("weight_reads",)), ("state reads + writes", ("state_reads", "state_writes")),
                 ("parameter reads", ("param_reads",)),
                 ("event/input buffers", ("event_reads", "event_writes", "input_writes")),
                 ("accumulator reads + writes", ("acc_reads", "acc_writes")))


def clock_note(rows: list) -> str:
    """How the latencies of ``rows`` were clocked: measured Fmax, an assumed clock, or both."""
    measured = sorted({r["lanes"] for r in rows if r["clock_source"] != "--clock-mhz"})
    assumed = sorted({r["clock_mhz"] for r in rows if r["clock_source"] == "--clock-mhz"})
    if not measured:
        return f"at an assumed {', '.join(f'{c:g}' for c in assumed)} MHz clock (no hw.synth Fmax given)"
    if not assumed:
        return "at each core's measured Fmax (hw.synth)" + _other_netlist(rows)
    return (f"at the measured Fmax for P={','.join(map(str, measured))}, else an assumed "
            f"{', '.join(f'{c:g}' for c in assumed)} MHz" + _other_netlist(rows))


def _other_netlist(rows: list) -> str:
    bad = [r for r in rows if r.get("clock_netlist") in NETLIST_NOTES]
    if not bad:
        return ""
    return f"; {len(bad)} configuration{'s' if len(bad) > 1 else ''} clocked by an Fmax of another netlist (estimate)"


def _energy_stack(ax, labels, rows_at, width=0.7):
    """Stacked energy bars (nJ) by category, one per row; returns the bar tops."""
    import numpy as np
    import matplotlib.pyplot as plt
    colors = plt.cm.tab10(np.arange(len(ENERGY_GROUPS)))
    bottom = np.zeros(len(rows_at))
    for (name, cats), c in zip(ENERGY_GROUPS, colors):
        vals = np.array([sum(r.get(f"energy_{k}_pj") or 0.0 for k in cats) / 1e3 for r in rows_at])
        if vals.any():
            ax.bar(labels, vals, width, bottom=bottom, color=c, label=name)
        bottom += vals
    return bottom


def _plots(out: Path, rows: list, title: str, files: OutputSet) -> list[str]:
    """Stage the three PNGs in ``files``; returns their names."""
    import matplotlib.pyplot as plt
    names = []
    for suffix, fig in figures(rows, title).items():
        p = _sib(out, suffix)
        files.add(p, lambda tmp, fig=fig: fig.savefig(tmp, dpi=110, format="png", bbox_inches="tight"))
        plt.close(fig)
        names.append(p.name)
    return names


def figures(rows: list, title: str) -> dict:
    """{"_cycles.png": figure, "_pareto.png": ..., "_codings.png": ...} for the sweep's rows."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter
    figs = {}
    groups = {}
    multi = len({r["model"] for r in rows}) > 1
    banked = len({r.get("banks", 1) for r in rows}) > 1
    for r in rows:
        lb = ((r["model"] + (", " if banked else "")) if multi else "") + (f"banks={r['banks']}" if banked else "")
        groups.setdefault((r["coding"], r["T"], lb), []).append(r)
    name = lambda cd, T, lb: f"{lb + ': ' if lb else ''}{cd}, T={T}"  # noqa: E731
    clocked = clock_note(rows)

    def save(fig, suffix):
        figs[suffix] = fig

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for (cd, T, lb), rs in groups.items():
        ax.plot([r["lanes"] for r in rs], [r["cycles_mean"] for r in rs], "o-", label=name(cd, T, lb))
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    lanes = sorted({r["lanes"] for r in rows})
    ax.set_xticks(lanes, [str(P) for P in lanes])
    ax.set_xlabel("lanes P")
    ax.set_ylabel("cycles per inference (mean over the samples)")
    ax.set_title(f"{title}: cycles against lanes")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    save(fig, "_cycles.png")

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    pts = [r for r in rows if r["energy_pj"] is not None]
    x_hi = max((r["latency_us"] for r in pts), default=1.0)
    for (cd, T, lb), rs in groups.items():
        rs = [r for r in rs if r["energy_pj"] is not None]
        ax.plot([r["latency_us"] for r in rs], [r["energy_pj"] / 1e3 for r in rs], "o", label=name(cd, T, lb))
        for r in rs:
            # labels point inwards at the right edge, where they used to be cut off
            right = r["latency_us"] >= 0.8 * x_hi
            ax.annotate(f"P={r['lanes']}", (r["latency_us"], r["energy_pj"] / 1e3), fontsize=7,
                        xytext=(-4 if right else 4, 4), textcoords="offset points", ha="right" if right else "left")
    front = sorted((r for r in rows if r["pareto"]), key=lambda r: r["latency_us"])
    if front:
        ax.plot([r["latency_us"] for r in front], [r["energy_pj"] / 1e3 for r in front], "k--", lw=1,
                label="Pareto front")
    ann = rows[0]
    ax.axhline(ann["ann_int8_pj"] / 1e3, color="gray", ls=":", lw=1, label="same network as an int8 ANN")
    ax.set_xscale("log")
    plain = FuncFormatter(lambda v, _: f"{v:g}")       # 30, 40, 100 rather than 3x10^1
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_formatter(plain)
    ax.tick_params(axis="x", which="both", labelsize=8)
    ax.margins(x=0.08, y=0.12)
    ax.set_xlabel(f"latency per inference (µs), {clocked}")
    ax.set_ylabel("energy per inference (nJ)")
    ax.set_title(f"{title}: energy against latency")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    save(fig, "_pareto.png")

    ann_bars = [("ANN int8", ann["ann_int8_pj"] / 1e3), ("ANN float32", ann["ann_float32_pj"] / 1e3)]
    if len(groups) == 1:
        # one coding: where the energy goes at every lane count, beside the ANN baselines
        (cd, T, lb), rs = next(iter(groups.items()))
        rs = [r for r in rs if r["energy_pj"] is not None]
        fig, ax = plt.subplots(figsize=(7.2, 4.2))
        labels = [f"P={r['lanes']}" for r in rs]
        tops = _energy_stack(ax, labels, rs)
        for i, v in enumerate(tops):
            ax.annotate(f"{v:.1f}", (i, v), ha="center", va="bottom", fontsize=8)
        for k, (lab, v) in enumerate(ann_bars):
            ax.axhline(v, color=("gray", "dimgray")[k], ls=(":", "--")[k], lw=1, label=f"{lab}: {v:.1f} nJ")
        acc = rs[0]["accuracy"] if rs else None
        ax.set_ylabel("energy per inference (nJ)")
        ax.set_title(f"{title}: {name(cd, T, lb)}"
                     + (f", accuracy {100 * acc:.2f}%" if acc is not None else "") + ": energy by lanes")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        save(fig, "_codings.png")
        return figs

    # several codings: accuracy (axis zoomed to the values) and the energy at each one's lowest-energy P
    labels, acc, best = [], [], []
    # the model's name only where two models share a coding and T (it is long and crowds the axis)
    shared = len({(cd, T) for cd, T, _ in groups}) < len(groups)
    for (cd, T, lb), rs in groups.items():
        rs_e = [r for r in rs if r["energy_pj"] is not None]
        b = min(rs_e, key=lambda r: r["energy_pj"]) if rs_e else None
        labels.append(f"{lb + chr(10) if lb and shared else ''}{cd} T={T}" + (f"\nat P={b['lanes']}" if b else ""))
        acc.append(None if rs[0]["accuracy"] is None else 100 * rs[0]["accuracy"])
        best.append(b)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4.2), gridspec_kw={"width_ratios": [1, 1.5]})
    vals = [v for v in acc if v is not None]
    if vals:
        lo, hi = min(vals), max(vals)
        pad = max(0.5, (hi - lo) * 0.6)
        a1.bar(labels, [v or 0.0 for v in acc], color="tab:blue")
        a1.set_ylim(max(0.0, lo - pad), min(100.0, hi + pad))
        for i, v in enumerate(acc):
            if v is not None:
                a1.annotate(f"{v:.2f}%", (i, v), ha="center", va="bottom", fontsize=8)
    a1.set_ylabel("accuracy (%), axis zoomed")
    a1.set_title("accuracy")
    a1.tick_params(axis="x", labelsize=8)
    a2.tick_params(axis="x", labelsize=8)
    ok = [(lab, b) for lab, b in zip(labels, best) if b is not None]
    tops = _energy_stack(a2, [lab for lab, _ in ok], [b for _, b in ok])
    for i, v in enumerate(tops):
        a2.annotate(f"{v:.1f}", (i, v), ha="center", va="bottom", fontsize=8)
    a2.bar([lab for lab, _ in ann_bars], [v for _, v in ann_bars], 0.7, color=["gray", "dimgray"])
    for i, (_, v) in enumerate(ann_bars):
        a2.annotate(f"{v:.1f}", (len(ok) + i, v), ha="center", va="bottom", fontsize=8)
    a2.set_ylabel("energy per inference (nJ)")
    a2.set_title("energy at each coding's lowest-energy lanes P")
    a2.legend(fontsize=7)
    fig.suptitle(f"{title}: codings", fontsize=10)
    save(fig, "_codings.png")
    return figs


def _sib(out: Path, suffix: str) -> Path:
    """A file next to the main output ``out`` (NAME.json): NAME + suffix."""
    return out.with_name(out.stem + suffix)


def table_markdown(rows: list) -> str:
    """The sweep as a Markdown table (one line per configuration; a model column when there are several)."""
    multi = len({r["model"] for r in rows}) > 1
    banked = any(r.get("banks", 1) != 1 for r in rows)
    lines = [("| model " if multi else "") + "| coding | T | P | " + ("banks | " if banked else "") + "accuracy | cycles | clock (MHz) | latency (µs) | "
             "inferences/s | memory (bits) | energy (nJ) | Pareto |",
             ("| --- " if multi else "") + "| --- | --- | --- | " + ("--- | " if banked else "")
             + "--- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        acc = "-" if r["accuracy"] is None else f"{100 * r['accuracy']:.2f}%"
        e = "-" if r["energy_pj"] is None else f"{r['energy_pj'] / 1e3:.2f}"
        lines.append((f"| {r['model']} " if multi else "") +
                     f"| {r['coding']} | {r['T']} | {r['lanes']} | " + (f"{r['banks']} | " if banked else "")
                     + f"{acc} | {r['cycles_mean']:.1f} | "
                     f"{r['clock_mhz']:.2f}{_clock_mark(r)} | {r['latency_us']:.2f} | {r['throughput_per_s']:.0f} | "
                     f"{r['memory_bits'] if r['memory_bits'] is not None else '-'} | {e} | "
                     f"{'*' if r['pareto'] else ''} |")
    return "\n".join(lines)


def _clock_mark(r: dict) -> str:
    """The table's note on a clock measured on another netlist than the row's core."""
    kind = r.get("clock_netlist")
    return {"other": " (Fmax of another netlist)", "unknown": " (Fmax, netlist unknown)"}.get(kind, "")


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
    p.add_argument("--lanes", type=lanes_list, default=DEFAULT_LANES,
                   help=f"comma-separated lane counts, powers of two from 1 to 64 (default {DEFAULT_LANES})")
    p.add_argument("--banks", type=banks_list, default=[1],
                   help="comma-separated accumulator banks, integers from 1 to 64: kernel offsets of a conv2d scatter "
                        "in parallel (docs/spec.md section 3, Banks; default 1)")
    p.add_argument("--codings", default=None, help=f"comma-separated codings golden supports "
                                                   f"({', '.join(CODINGS)}); re-targets each model "
                                                   f"(default: each model's own)")
    p.add_argument("--T", type=T_LIST, default=None,
                   help="comma-separated T values from 1 to 1024; re-targets each model (default: its own)")
    add_data_options(p)
    p.add_argument("--clock-mhz", type=positive_float, default=100.0,
                   help="assumed clock (MHz) for configurations without --fmax-json (default 100)")
    p.add_argument("--fmax-json", nargs="+", action="extend", default=[],
                   help="hw.synth result JSON(s): their measured Fmax clocks the configurations they match")
    p.add_argument("--energy-table", default=None, help="JSON file overriding entries of golden.energy's table")
    p.add_argument("--verify", type=nonneg_int, default=0, help="check K sampled configurations against the RTL")
    p.add_argument("--verify-limit", type=positive_int, default=20, help="samples per verified configuration")
    p.add_argument("--seed", type=seed_int, default=0, help="seed for choosing the verified configurations")
    p.add_argument("--out", default=None, metavar="FILE.json",
                   help="the main output (default build/sweep/<first model>.json); FILE.csv and FILE_cycles.png, "
                        "FILE_pareto.png, FILE_codings.png go next to it")
    p.add_argument("--no-progress", action="store_true", help="no progress bar or progress lines on stderr")
    a = p.parse_args(argv)

    lanes = a.lanes
    codings = parse_codings(a.codings) if a.codings is not None else None
    Ts = a.T
    out = main_output("--out", a.out, ".json") if a.out else None
    if out is not None:    # checked before the models are even read; the default is checked once it is known
        _check_outputs(out, "--out")
    taken: set = set()
    models = [(_label(path, taken), load_model(path)) for path in a.model]
    stem = models[0][0]
    if out is None:
        out = ROOT / "build" / "sweep" / f"{stem}.json"
        _check_outputs(out, "--out (default)")
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
    if a.verify:
        from .toolchain import ToolchainError, ensure_verilator
        try:
            ensure_verilator()
        except ToolchainError as e:
            raise UsageError(f"--verify: needs Verilator: {str(e).splitlines()[0]}") from None

    t0 = time.perf_counter()
    s = sweep(models, x, y, lanes=lanes, codings=codings, Ts=Ts, clock_mhz=a.clock_mhz, fmax=fmax, table=table,
              progress=not a.no_progress, banks=a.banks)
    rows = s["rows"]
    notes = fmax_notes(rows)
    for n in notes:                    # said, never silent: these latencies are clocked by another core's Fmax
        sys.stderr.write(f"sim.sweep: note: {n}\n")
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
           "dataset": a.dataset, "split": a.split, "samples": int(len(x)), "lanes": lanes, "banks": a.banks,
           "codings": codings,
           "T": Ts, "clock_mhz": a.clock_mhz, "clock_note": clock_note(rows), "fmax": fmax, "fmax_notes": notes,
           "energy_table": table,
           "rows": rows, "verify": verdicts, "seconds": round(time.perf_counter() - t0, 1)}
    with OutputSet() as files:         # the JSON, the CSV and the plots: all five or none
        doc["plots"] = _plots(out, rows, stem, files)
        files.add_text(_sib(out, ".csv"), _csv(rows))
        files.add_text(out, json.dumps(doc, indent=1))
        files.commit()
    print(f"wrote {out}, {_sib(out, '.csv').name} and {', '.join(doc['plots'])} ({doc['seconds']} s)")
    bad = [v for v in verdicts if v["verdict"] != "match"]
    if bad:
        v = bad[0]
        sys.stderr.write(error_line("sim.sweep", f"MISMATCH: {v['model']} {v['coding']} T={v['T']} P={v['lanes']}: "
                                                 f"predicted cycles differ from the RTL (first sample "
                                                 f"{v['first_cycle_mismatch']}; {v['regress_first_mismatch']})"))
        return 1
    return 0


def _check_outputs(out: Path, option: str) -> None:
    check_outputs([Output(option, out)] + [Output(option, _sib(out, suf), note=f"next to {out.name}")
                                           for suf in (".csv", "_cycles.png", "_pareto.png", "_codings.png")])


if __name__ == "__main__":
    guard("sim.sweep", main)
