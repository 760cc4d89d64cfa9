"""``python -m sim.demo``: the whole flow on the embedded default (digits, rate coding, T=8).

train (quant) -> integer model -> golden -> Verilog + lint -> RTL regression on the full test
split (Verilator) -> report in build/reports/NAME/. Exits 1 if the RTL disagrees with golden or the
quantized model disagrees with golden.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import golden
from golden import datasets
from golden.cli import ArgumentParser, UsageError, guard, lanes_arg, positive_int

ROOT = Path(__file__).resolve().parents[1]


def _step(msg: str) -> None:
    print(f"\n== {msg}", flush=True)


def main(argv=None) -> int:
    p = ArgumentParser(prog="python -m sim.demo", description=__doc__.splitlines()[0])
    p.add_argument("--name", default="digits_rate_t8")
    p.add_argument("--lanes", type=lanes_arg, default=8)
    p.add_argument("--epochs", type=positive_int, default=None, help="training epochs (default: quant's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--retrain", action="store_true", help="train even if the model file exists")
    p.add_argument("--stall-prob", type=float, default=0.0)
    a = p.parse_args(argv)
    t_all = time.perf_counter()
    model_path = ROOT / "build" / "models" / f"{a.name}.npz"
    metrics_path = model_path.with_suffix(".json")
    env = dict(os.environ, PYTHONPATH=str(ROOT))

    _step("1/5 train + quantize (quant.train: digits, rate coding, T=8, 64-128-10, 8-bit)")
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

    _step("2/5 golden model")
    g = golden.run(model, x, lanes=a.lanes)
    print(f"golden accuracy {100 * (g.predictions == y).mean():.2f}% on {len(y)} samples; "
          f"quantized torch vs golden agreement {metrics.get('golden_agreement')}")

    _step(f"3/5 Verilog (hw.generate, P={a.lanes}) + lint")
    from hw.generate import generate
    from sim.toolchain import lint
    top = f"{a.name}_p{a.lanes}"
    v, j = generate(model, a.lanes, ROOT / "build" / "verilog" / top, top)
    lr = lint(v, top)
    print(f"{v}: verilator --lint-only -Wall {'clean' if lr.returncode == 0 else 'FAILED'}")
    if lr.returncode:
        print(lr.stderr[-2000:], file=sys.stderr)
        return 1

    _step("4/5 RTL regression on Verilator (full test split)")
    from sim.regress import regress
    res = regress(model, x, y, lanes=a.lanes, verilog=v, name=top, stall_prob=a.stall_prob)
    s = res.summary
    reg_dir = ROOT / "build" / "regress"
    reg_dir.mkdir(parents=True, exist_ok=True)
    (reg_dir / f"{top}.json").write_text(json.dumps({"summary": s, "samples": res.samples}, indent=1))
    (reg_dir / f"{top}.xml").write_text(res.junit)
    print(f"{s['matching_samples']}/{s['samples']} samples match golden exactly; simulation {s['sim_seconds']:.1f} s")

    _step("5/5 report")
    from sim.report import write_report
    out = ROOT / "build" / "reports" / a.name
    rep = write_report(out, a.name, model, x, y, lanes=a.lanes, regress_summary=s, metrics=metrics)
    print(rep["markdown"])
    print(f"wrote {out}/report.md, report.json and {', '.join(rep['plots'])} "
          f"({time.perf_counter() - t_all:.0f} s in total)")
    if res.first_mismatch:
        print(f"MISMATCH: {res.first_mismatch}", file=sys.stderr)
        return 1
    if metrics.get("golden_agreement") != 1.0:
        print("quantized torch and golden disagree", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    guard("sim.demo", main)
