"""``python -m hw.synth_table``: the FPGA table of several cores from one command.

Runs :func:`hw.synth.synth` for every model and lane count (optionally also on a second part and
speed grade), and writes ``OUT.json`` (every result), ``OUT.md`` (the table: LUTs, FFs, block RAM,
DSP, Fmax, latency at that Fmax, and the critical path with its logic and routing share) and
``OUT.png`` (Fmax and LUTs against lanes, one line per coding). docs/performance.md's table is
rendered from ``OUT.json`` by ``make readme``.

A model is ``LABEL=PATH`` or ``LABEL=PATH@CODING``; the second form retargets the model's integer
weights to another coding (``stcb=build/models/digits_rate_t8.npz@stcb``: the rate model run as stcb).

:func:`comparison_rows` and :func:`comparison_markdown` build the other table, a core beside published
accelerators (README's mnist5k comparison, ``make readme``): each of our rows pairs one ``sim.regress`` JSON
(accuracy, exactness, cycles per image) with the ``hw.synth`` JSON of the same core (resources, Fmax), so
latency is cycles over the measured Fmax. The published designs' figures (:data:`PUBLISHED`) are the only
ones not read from this repository's JSON: they are what the cited papers state.
"""

from __future__ import annotations

import json
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from golden.cli import (ArgumentParser, Output, OutputSet, UsageError, check_outputs, guard, int_range, lanes_list,
                        main_output, positive_int)

__all__ = ["parse_model", "run_table", "table_markdown", "table_plot", "PUBLISHED", "comparison_rows",
           "comparison_markdown"]


def parse_model(text: str):
    """``LABEL=PATH[@CODING]`` -> (label, model, path text)."""
    import golden
    from golden.model import CODING_ENCODINGS, CODING_READOUTS, CODINGS
    label, sep, rest = text.partition("=")
    if not sep or not label or not rest:
        raise UsageError(f"--model: expected LABEL=PATH or LABEL=PATH@CODING, got {text!r}")
    path, _, coding = rest.partition("@")
    model = golden.load_model(path)
    if coding:
        if coding not in CODINGS:
            raise UsageError(f"--model: unknown coding {coding!r} in {text!r} (choose from {', '.join(CODINGS)})")
        kw = {"coding": coding}
        if model.encoding not in CODING_ENCODINGS[coding]:
            kw["encoding"] = CODING_ENCODINGS[coding][0]
        if model.readout not in CODING_READOUTS[coding]:
            kw["readout"] = CODING_READOUTS[coding][0]
        model = model.replace(**kw)
    return label, model, text


def _reusable(job: dict) -> dict | None:
    """The result a previous run left for exactly this job, or None: its work directory holds today's
    Verilog, it succeeded, and the part, speed grade, package, seed and clock target match, so after a
    change to one coding's gateware only that coding's cores are run again."""
    from .synth import TARGETS, reusable_result
    top = f"{job['label']}_p{job['lanes']}"
    return reusable_result(Path(job["out"]).with_suffix(".json"), job["model"], job["lanes"], top, status="ok",
                           device=job["device"], speed=job["speed"], seed=1, freq_target_mhz=100.0,
                           package=TARGETS["ecp5"].package_for(job["device"]), lanes=job["lanes"], top=top)


def _one(job: dict) -> dict:
    """One synthesis (in a worker process): the result, or its failure as a result."""
    from .synth import SynthError, synth
    label, model, lanes, device, speed, out = (job[k] for k in ("label", "model", "lanes", "device", "speed", "out"))
    r = None if job.get("fresh") else _reusable(job)
    if r is not None:
        r = {**r, "reused": True}
    else:
        try:
            r = synth(model, lanes, "ecp5", device=device, speed=speed, out=Path(out), name=f"{label}_p{lanes}",
                      model_path=job["model_path"], log=lambda *_: None)
        except SynthError as e:
            r = {"status": e.status, "error": str(e).splitlines()[0], "lanes": lanes}
        except UsageError as e:         # e.g. a package the part does not come in: this row fails, not the table
            r = {"status": "rejected", "error": str(e).splitlines()[0], "lanes": lanes}
    r.update(label=label, coding=model.coding, device=device, speed_grade=speed, T=model.T,
             cycles=job["cycles"])
    return r


def run_table(models, lanes, *, parts, out_dir: Path, jobs: int = 1, fresh: bool = False, log=print) -> list[dict]:
    """Synthesise every (model, lanes, part); ``parts`` is [(device, speed, lanes or None for all)]. A
    result of the same netlist and settings in ``out_dir`` is reused unless ``fresh``."""
    import golden
    from golden import datasets
    x, _ = datasets.load("digits", "test")
    todo = []
    for device, speed, only in parts:
        for label, model, path in models:
            # cycles per inference on the digits test split at this P: the latency at Fmax needs them
            for P in (only or lanes):
                cycles = float(golden.run(model, x, lanes=P).counters["cycles"].mean()) if model.n_in == x.shape[1] \
                    else None
                todo.append({"label": label, "model": model, "model_path": path, "lanes": P, "device": device,
                             "speed": speed, "cycles": cycles, "fresh": fresh,
                             "out": str(out_dir / f"{label}_p{P}_{device}_s{speed}")})
    results = []
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        for r in pool.map(_one, todo):
            results.append(r)
            fm = f"{r['fmax_mhz']:.1f} MHz" if r.get("fmax_mhz") else r.get("status")
            log(f"{r['label']} P={r['lanes']} {r.get('part', r['device'])}-{r['speed_grade']}: {fm}"
                + (" (reused: same netlist and settings)" if r.get("reused") else ""))
    return results


def _cp(r: dict) -> str:
    cp = r.get("critical_path") or {}
    if not cp.get("delay_ns"):
        return ""
    return (f"`{cp['start']}` -> `{cp['end']}`: {cp['delay_ns']:.2f} ns ({cp['logic_ns']:.2f} logic, "
            f"{cp['routing_ns']:.2f} routing)")


def table_markdown(results: list) -> str:
    lines = ["| core | part | P | LUTs | FFs | DP16KD | DSP | Fmax (MHz) | latency at Fmax (µs) | critical path |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        part = f"{r.get('part', r['device'])}-{r['speed_grade']}"
        if r.get("status") != "ok":
            lines.append(f"| {r['label']} (T={r['T']}) | {part} | {r['lanes']} | **{r.get('status')}**: "
                         f"{r.get('error', '')} | | | | | | |")
            continue
        lat = f"{r['cycles'] / r['fmax_mhz']:.2f}" if r.get("cycles") else ""
        flow = "" if r.get("yosys_flow", "abc9") == "abc9" else " (classic ABC)"
        lines.append(f"| {r['label']} (T={r['T']}) | {part} | {r['lanes']} | {r['luts']} | {r['ffs']} | {r['bram']} | "
                     f"{r['dsp']} | {r['fmax_mhz']:.2f}{flow} | {lat} | {_cp(r)} |")
    return "\n".join(lines)


def table_plot(results: list):
    """Fmax and LUTs against lanes, one line per coding (the default part and speed grade only)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    base = [r for r in results if r.get("status") == "ok"]
    if not base:
        return None
    first = (base[0]["device"], base[0]["speed_grade"])
    base = [r for r in base if (r["device"], r["speed_grade"]) == first]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for label in dict.fromkeys(r["label"] for r in base):
        rs = sorted((r for r in base if r["label"] == label), key=lambda r: r["lanes"])
        P = [r["lanes"] for r in rs]
        a1.plot(P, [r["fmax_mhz"] for r in rs], marker="o", label=label)
        a2.plot(P, [r["luts"] for r in rs], marker="o", label=label)
        for r in rs:
            a1.annotate(f"{r['fmax_mhz']:.0f}", (r["lanes"], r["fmax_mhz"]), textcoords="offset points",
                        xytext=(0, 5), ha="center", fontsize=7)
    a1.axhline(100, color="grey", lw=0.8, ls="--")
    a1.text(a1.get_xlim()[0], 100, " 100 MHz", va="bottom", fontsize=7, color="grey")
    part = f"{base[0].get('part')}-{first[1]}"
    for ax, what in ((a1, "Fmax (MHz)"), (a2, "LUTs")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted({r["lanes"] for r in base}), [str(p) for p in sorted({r["lanes"] for r in base})])
        ax.set_xlabel("lanes P")
        ax.set_ylabel(what)
        ax.grid(alpha=0.3)
    a1.set_title(f"Fmax on {part} (nextpnr, out of context)", fontsize=9)
    a2.set_title(f"LUTs on {part}", fontsize=9)
    a2.legend(fontsize=8)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------------
# a core beside published MNIST accelerators

# As the cited papers state them (None: not stated there). Skydiver states a throughput, not a latency.
PUBLISHED = (
    {"design": "Spiker+", "url": "https://arxiv.org/abs/2401.01141",
     "cite": "Carpegna, Savino, Di Carlo, \"Spiker+: a framework for the generation of efficient Spiking Neural "
             "Networks FPGA accelerators for inference at the edge\", 2024",
     "network": "fully connected", "platform": "Xilinx FPGA", "resources": "7,612 logic cells, 18 BRAM",
     "clock_mhz": None, "latency_us": 780.0, "images_per_s": None, "accuracy": 0.9385},
    {"design": "snn-fpga", "url": "https://github.com/im-afan/snn-fpga",
     "cite": "Fan, Levy, \"A Robust, Open-Source Framework for Spiking Neural Networks on Low-End FPGAs\", 2025 "
             "(arXiv:2507.07284)",
     "network": "fully connected / any-to-any", "platform": "Xilinx Artix-7", "resources": "6,358 LUTs, 40.5 BRAM",
     "clock_mhz": 100.0, "latency_us": 520.0, "images_per_s": None, "accuracy": None},
    {"design": "Skydiver", "url": "https://arxiv.org/abs/2203.07516",
     "cite": "Chen, Gao, Fang, Luan, \"Skydiver: A Spiking Neural Network Accelerator Exploiting Spatio-Temporal "
             "Workload Balance\", IEEE TCAD 2022",
     "network": "convolutional", "platform": "Xilinx XC7Z045", "resources": None,
     "clock_mhz": None, "latency_us": None, "images_per_s": 22600.0, "accuracy": 0.985},
)


def _arch(layers: list) -> str:
    """``16c3-mp2-32c3-mp2-10`` from a model's layer metadata."""
    parts = []
    for l in layers:
        if l["type"] == "conv2d":
            parts.append(f"{l['out_shape'][0]}c{l['kernel']}" + (f"s{l['stride']}" if l.get("stride", 1) != 1 else ""))
        elif l["type"] == "maxpool2d":
            parts.append(f"mp{l['kernel']}")
        else:
            parts.append(str(l["n_out"]))
    return "-".join(parts)


def comparison_rows(cores) -> list[dict]:
    """One row per core from ``(label, regress, synth, metrics)``: ``regress`` the JSON ``sim.regress`` wrote,
    ``synth`` the ``hw.synth`` JSON of the same core or None (not synthesised), ``metrics`` quant.train's
    NAME.json or None. A synthesis of another core (other lanes, banks or layers) is refused (ValueError):
    its Fmax would clock the wrong cycle count."""
    rows = []
    for label, reg, syn, met in cores:
        s = reg["summary"] if "summary" in reg else reg
        m = s["model"]
        banks = s.get("banks", 1)
        row = {"label": label, "coding": m["coding"], "encoding": m["encoding"], "T": m["T"], "arch": _arch(m["layers"]),
               "lanes": s["lanes"], "banks": banks, "samples": s["samples"], "matching": s["matching_samples"],
               "golden_accuracy": s.get("golden_accuracy"), "rtl_accuracy": s.get("rtl_accuracy"),
               "cycles": s["mean_counters"]["cycles"], "stall_prob": s.get("stall_prob"),
               "sim_seconds": s.get("sim_seconds"),
               "float_accuracy": (met or {}).get("float_accuracy"), "train_seconds": (met or {}).get("train_seconds"),
               "synth_status": None if syn is None else syn.get("status")}
        if syn is not None:
            theirs = (syn.get("lanes"), syn.get("banks", 1), (syn.get("model_meta") or {}).get("layers"),
                      (syn.get("model_meta") or {}).get("coding"), (syn.get("model_meta") or {}).get("T"))
            if theirs != (s["lanes"], banks, m["layers"], m["coding"], m["T"]):
                raise ValueError(f"{label}: the synthesis result is of another core (lanes, banks, layers, coding or "
                                 f"T differ from the regression's P={s['lanes']}, banks {banks})")
            if syn.get("status") == "ok" and syn.get("fmax_mhz"):
                f = syn["fmax_mhz"]
                row.update(part=f"{syn.get('part', syn.get('device'))}-{syn.get('speed')}", luts=syn["luts"],
                           ffs=syn["ffs"], bram=syn["bram"], dsp=syn["dsp"], fmax_mhz=f,
                           latency_us=row["cycles"] / f, images_per_s=f * 1e6 / row["cycles"],
                           synth_seconds=(syn.get("seconds") or {}).get("total"),
                           yosys_flow=syn.get("yosys_flow", "abc9"))
        rows.append(row)
    return rows


def _num(v, fmt="{:,.0f}"):
    return "" if v is None else fmt.format(v)


def comparison_markdown(rows: list[dict], published=PUBLISHED, *, target_us: float = 100.0) -> str:
    """The comparison table (our rows, then the published designs) and a line on the latency targets: the
    best core at or under ``target_us`` per image, every core under the slowest published latency."""
    lines = ["| design | network, coding | platform | P, banks | LUTs | FFs | block RAM | DSP | clock (MHz) | "
             "cycles per image | latency per image (µs) | images/s | accuracy | RTL = golden |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        coding = {"rate": "rate", "tsc": "tsc", "stcb": "stcb"}[r["coding"]]
        if r["coding"] == "rate" and r["encoding"] == "direct":
            coding = "rate, direct input"
        acc = _pct(r["golden_accuracy"]) + (f" ({r['samples']:,} mnist5k test digits)" if r["samples"] else "")
        net = f"`{r['arch']}`, {coding}, T={r['T']}"
        if r.get("fmax_mhz"):
            lines.append(f"| spikeforge `{r['label']}` | {net} | {r['part']} (nextpnr) | {r['lanes']}, {r['banks']} | "
                         f"{r['luts']:,} | {r['ffs']:,} | {r['bram']} DP16KD | {r['dsp']} | {r['fmax_mhz']:.1f} "
                         f"(measured{'' if r['yosys_flow'] == 'abc9' else ', classic ABC'}) | {r['cycles']:,.1f} | **{r['latency_us']:.1f}** | {r['images_per_s']:,.0f} | "
                         f"{acc} | {r['matching']}/{r['samples']} |")
        else:
            what = "not synthesised yet" if r["synth_status"] is None else f"synthesis: {r['synth_status']}"
            lines.append(f"| spikeforge `{r['label']}` | {net} | {what} | {r['lanes']}, {r['banks']} | | | | | | "
                         f"{r['cycles']:,.1f} | | | {acc} | {r['matching']}/{r['samples']} |")
    for p in published:
        lat = _num(p["latency_us"], "{:,.0f}")
        if p["latency_us"] is None and p["images_per_s"]:
            lat = f"({1e6 / p['images_per_s']:.1f} = 1 / throughput)"
        cells = [f"[{p['design']}]({p['url']})", p["network"], p["platform"], "", p["resources"] or "", "", "", "",
                 _num(p["clock_mhz"]), "", lat, _num(p["images_per_s"]),
                 _pct(p["accuracy"]) + " (MNIST)" if p["accuracy"] is not None else "", ""]
        lines.append("|" + "|".join(f" {c} " if c else " " for c in cells) + "|")
    done = [r for r in rows if r.get("latency_us") is not None]
    text = []
    if done:
        best = min(done, key=lambda r: r["latency_us"])
        worst = max(done, key=lambda r: r["latency_us"])
        slowest = max((p["latency_us"] for p in published if p["latency_us"]), default=None)
        text.append(f"Best latency: `{best['label']}`, {best['latency_us']:.1f} µs per image at its measured "
                    f"{best['fmax_mhz']:.1f} MHz ({'within' if best['latency_us'] <= target_us else 'above'} "
                    f"{target_us:g} µs).")
        if slowest is not None:
            text.append(f"Slowest synthesised core: `{worst['label']}`, {worst['latency_us']:.1f} µs "
                        f"({'below' if worst['latency_us'] < slowest else 'not below'} the {slowest:g} µs of "
                        f"the slowest published design).")
    missing = [r["label"] for r in rows if r.get("latency_us") is None]
    if missing:
        text.append(f"No measured Fmax yet for {', '.join(f'`{m}`' for m in missing)}, so no latency.")
    cites = "; ".join(f"{p['design']}: {p['cite']}" for p in published)
    text.append(f"Published figures as their papers state them ({cites}); a blank is a figure this table does not "
                f"take from the source. Their accuracies are on MNIST as each paper reports it, ours on the 1,000 "
                f"test digits of mnist5k (a stratified split of 5,000 real MNIST digits).")
    return "\n".join(lines + [""] + [" ".join(text)])


def _pct(v) -> str:
    return "" if v is None else f"{100 * v:.2f}%"


def main(argv=None) -> int:
    p = ArgumentParser(prog="python -m hw.synth_table", description=__doc__.splitlines()[0])
    p.add_argument("--model", action="append", required=True, metavar="LABEL=PATH[@CODING]",
                   help="a core to synthesise; repeat for each (PATH@CODING retargets the model)")
    p.add_argument("--lanes", type=lanes_list, default=[1, 8, 16], help="lane counts (default 1,8,16)")
    p.add_argument("--device", default="25k", help="ECP5 device (default 25k: LFE5U-25F)")
    p.add_argument("--speed", type=int_range(6, 8, what="an ECP5 speed grade: 6, 7 or 8"), default=6,
                   help="speed grade (default 6)")
    p.add_argument("--also", action="append", default=[], metavar="DEVICE:SPEED:P",
                   help="also synthesise every model at P lanes on another part, e.g. 85k:8:8")
    p.add_argument("--jobs", type=positive_int, default=2, help="parallel syntheses (default 2)")
    p.add_argument("--fresh", action="store_true",
                   help="synthesise every core again (default: reuse a result of the same netlist and settings)")
    p.add_argument("--out", required=True, metavar="FILE.json",
                   help="the results; FILE.md (the table), FILE.png (the plot) and the work directory FILE/ "
                        "go next to it")
    a = p.parse_args(argv)
    out = main_output("--out", a.out, ".json")
    check_outputs([Output("--out", out), Output("--out", out.with_suffix(".md")),
                   Output("--out", out.with_suffix(".png")), Output("--out", out.with_suffix(""), kind="dir")])
    parts = [(a.device, a.speed, None)]
    for spec in a.also:
        bits = spec.split(":")
        try:
            device, speed, lanes = bits[0], int(bits[1]), [int(v) for v in bits[2].split(",")]
        except (IndexError, ValueError):
            raise UsageError(f"--also: expected DEVICE:SPEED:P, e.g. 85k:8:8, got {spec!r}") from None
        parts.append((device, speed, lanes))
    from .synth import SPEEDS, TARGETS, NoToolsError, tools_available, INSTALL_HINT
    for device, speed, _ in parts:
        if device not in TARGETS["ecp5"].devices:
            raise UsageError(f"--device/--also: unknown ECP5 device {device!r}")
        if speed not in SPEEDS["ecp5"]:
            raise UsageError(f"--speed/--also: unknown ECP5 speed grade {speed!r}")
    models = [parse_model(m) for m in a.model]
    if not tools_available("ecp5"):
        raise NoToolsError(INSTALL_HINT)
    results = run_table(models, a.lanes, parts=parts, out_dir=out.with_suffix(""), jobs=a.jobs, fresh=a.fresh)
    md = table_markdown(results)
    fig = table_plot(results)
    with OutputSet() as files:
        files.add_text(out, json.dumps({"results": results, "command": "python -m hw.synth_table " +
                                        " ".join(argv if argv is not None else sys.argv[1:])}, indent=1,
                                       default=str))
        files.add_text(out.with_suffix(".md"), md + "\n")
        if fig is not None:
            files.add(out.with_suffix(".png"), lambda tmp: fig.savefig(tmp, dpi=110, format="png",
                                                                       bbox_inches="tight"))
        files.commit()
    print(md)
    print(f"wrote {out}, {out.with_suffix('.md')} and {out.with_suffix('.png')}")
    return 0 if all(r.get("status") == "ok" for r in results) else 1


if __name__ == "__main__":
    guard("hw.synth_table", main)
