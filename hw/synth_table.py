"""``python -m hw.synth_table``: the FPGA table of several cores from one command.

Runs :func:`hw.synth.synth` for every model and lane count (optionally also on a second part and
speed grade), and writes ``OUT.json`` (every result), ``OUT.md`` (the table: LUTs, FFs, block RAM,
DSP, Fmax, latency at that Fmax, and the critical path with its logic and routing share) and
``OUT.png`` (Fmax and LUTs against lanes, one line per coding). docs/performance.md's table is
rendered from ``OUT.json`` by ``make readme``.

A model is ``LABEL=PATH`` or ``LABEL=PATH@CODING``; the second form retargets the model's integer
weights to another coding (``stcb=build/models/digits_rate_t8.npz@stcb``: the rate model run as stcb).
"""

from __future__ import annotations

import json
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from golden.cli import (ArgumentParser, Output, OutputSet, UsageError, check_outputs, guard, int_range, lanes_list,
                        main_output, positive_int)

__all__ = ["parse_model", "run_table", "table_markdown", "table_plot"]


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
