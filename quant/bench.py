"""``python -m quant.bench``: train the digits target configurations and record accuracy
(float / quantized / golden), golden agreement and training time in one JSON file.

Configurations (64-128-10, ``--seed 0``, default epochs and learning rate):

* ``rate-T8-w8``: rate encoding, T=8, 8-bit weights
* ``direct-T1-w8``: direct encoding, T=1 (minimum latency), 8-bit weights
* ``rate-T8-w4``: rate encoding, T=8, 4-bit weights
* ``tsc-T17-w8``, ``tsc-T9-w8``, ``tsc-T5-w8``: temporal switch coding with windows T = 17, 9, 5
  (Q = 16, 8, 4 activation levels), 8-bit weights
* ``stcb-T8-w8-k{1,3}-{bptt,stl}``: STCB, T=8, 8-bit weights, temporal kernel of 1 (h = [1]) or 3
  learned taps, trained with surrogate-gradient BPTT or the spike-train-level rule
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from golden.cli import (ArgumentParser, Output, OutputSet, UsageError, check_outputs, error_line, guard, main_output,
                        positive_int)

from .train import int_ge0

PROG = "python -m quant.bench"

CONFIGS = {
    "rate-T8-w8": ["--encoding", "rate", "--T", "8", "--weight-bits", "8"],
    "direct-T1-w8": ["--encoding", "direct", "--T", "1", "--weight-bits", "8"],
    "rate-T8-w4": ["--encoding", "rate", "--T", "8", "--weight-bits", "4"],
    "tsc-T17-w8": ["--coding", "tsc", "--T", "17", "--weight-bits", "8"],
    "tsc-T9-w8": ["--coding", "tsc", "--T", "9", "--weight-bits", "8"],
    "tsc-T5-w8": ["--coding", "tsc", "--T", "5", "--weight-bits", "8"],
    "stcb-T8-w8-k1-bptt": ["--coding", "stcb", "--T", "8", "--weight-bits", "8", "--kernel", "1", "--grad", "bptt"],
    "stcb-T8-w8-k3-bptt": ["--coding", "stcb", "--T", "8", "--weight-bits", "8", "--kernel", "3", "--grad", "bptt"],
    "stcb-T8-w8-k1-stl": ["--coding", "stcb", "--T", "8", "--weight-bits", "8", "--kernel", "1", "--grad", "stl"],
    "stcb-T8-w8-k3-stl": ["--coding", "stcb", "--T", "8", "--weight-bits", "8", "--kernel", "3", "--grad", "stl"],
}
KEYS = ("float_accuracy", "quant_accuracy", "golden_accuracy", "golden_agreement", "train_seconds",
        "quant_train_seconds", "float_train_seconds", "epochs", "v_bits", "grad", "kernel")


def main(argv=None) -> int:
    from .train import DEFAULT_EPOCHS
    p = ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("--out", default="build/bench/train.json", metavar="FILE.json",
                   help="results JSON (default build/bench/train.json)")
    p.add_argument("--models", default="build/bench/models", metavar="DIR",
                   help="directory for the trained models (default build/bench/models)")
    p.add_argument("--epochs", type=positive_int, default=None, help=f"override epochs (default {DEFAULT_EPOCHS})")
    p.add_argument("--seed", type=int_ge0, default=0,   # checked before any child training starts
                   help="training seed of every configuration (default 0)")
    p.add_argument("--only", default=None, help=f"comma-separated subset of {', '.join(CONFIGS)}")
    a = p.parse_args(argv)
    names = list(CONFIGS) if a.only is None else [s.strip() for s in a.only.split(",")]
    for n in names:
        if n not in CONFIGS:
            raise UsageError(f"--only: unknown configuration {n!r}; choose from {', '.join(CONFIGS)}")
    check_outputs([Output("--out", main_output("--out", a.out, ".json")), Output("--models", a.models, kind="dir")])

    results = {}
    for i, name in enumerate(names, 1):
        out = Path(a.models) / f"{name}.npz"
        cmd = [sys.executable, "-m", "quant.train", "--dataset", "digits", "--hidden", "128",
               "--seed", str(a.seed), *CONFIGS[name], "--out", str(out)]
        if a.epochs:
            cmd += ["--epochs", str(a.epochs)]
        print(f"[{i}/{len(names)}] {name}: {' '.join(cmd[1:])}", flush=True)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=None, text=True)
        wall = time.perf_counter() - t0
        lines = proc.stdout.strip().splitlines()
        if lines:
            print(f"    {lines[-1]}", flush=True)
        if proc.returncode != 0:
            sys.stderr.write(error_line(PROG, f"{name} failed with exit code {proc.returncode}"))
            return proc.returncode
        m = json.loads(out.with_suffix(".json").read_text())
        results[name] = {"command": "python " + " ".join(cmd[1:]), "model": str(out),
                         "wall_seconds": wall, **{k: m.get(k) for k in KEYS}}
    doc = {"dataset": "digits", "hidden": [128], "seed": a.seed, "configs": results}
    text = json.dumps(doc, indent=2) + "\n"
    with OutputSet() as files:
        files.add_text(a.out, text)
        files.commit()
    print(f"wrote {a.out}")
    for name, r in results.items():
        fa = r["float_accuracy"]
        print(f"  {name:<19} float {100 * fa:6.2f}%  quant {100 * r['quant_accuracy']:6.2f}%  "
              f"golden {100 * r['golden_accuracy']:6.2f}%  agreement {r['golden_agreement']:.4f}  "
              f"train {r['train_seconds']:.1f}s (quant {r['quant_train_seconds']:.1f}s)")
    return 0


if __name__ == "__main__":
    guard(PROG, main)
