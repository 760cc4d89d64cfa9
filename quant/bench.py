"""``python -m quant.bench``: train the digits target configurations and record accuracy
(float / quantized / golden), golden agreement and training time in one JSON file.

Dense configurations (64-128-10, ``--hidden 128``, ``--seed 0``, default epochs and learning rate):

* ``rate-T8-w8``: rate encoding, T=8, 8-bit weights
* ``direct-T1-w8``: direct encoding, T=1 (minimum latency), 8-bit weights
* ``rate-T8-w4``: rate encoding, T=8, 4-bit weights
* ``tsc-T17-w8``, ``tsc-T9-w8``, ``tsc-T5-w8``: temporal switch coding with windows T = 17, 9, 5
  (Q = 16, 8, 4 activation levels), 8-bit weights
* ``stcb-T8-w8-k{1,3}-{bptt,stl}``: STCB, T=8, 8-bit weights, temporal kernel of 1 (h = [1]) or 3
  learned taps, trained with surrogate-gradient BPTT or the spike-train-level rule

Convolutional configurations (``--arch 16c3-mp2-32c3-10``, 8-bit weights, ``--seed 0``, each with
the recipe of docs/quant.md, "Convolutional networks"):

* ``conv-rate-T8-w8``: rate encoding, T=8
* ``conv-direct-T1-w8``: direct encoding, T=1 (a single time step)
* ``conv-tsc-T17-w8``: temporal switch coding, T=17 (Q=16)
* ``conv-stcb-T8-w8``: STCB with h = [1], trained with the rate recipe (``same_integers_as_rate``:
  it learns the very integers of ``conv-rate-T8-w8``); and on ``conv-rate-T8-w8``,
  ``stcb_retarget_agreement``: its model retargeted to coding stcb in golden, the fraction of test
  samples whose prediction equals the rate model's (1.0: h = [1] is the same network)
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

DENSE = ["--hidden", "128"]
CONV = ["--arch", "16c3-mp2-32c3-10"]
# the conv recipes (docs/quant.md, "Convolutional networks"), tuned on digits with --seed 0 (and checked
# on seeds 1, 2): label smoothing 0.1 for every coding, 60 epochs for the rate code and 40 for the others;
# one-pixel shifts for the multi-step codes (they make the single-step binary network underfit); BatchNorm
# for TSC
CONV_RATE = [*CONV, "--encoding", "rate", "--T", "8", "--weight-bits", "8", "--epochs", "60", "--augment", "1",
             "--label-smoothing", "0.1"]
CONV_DIRECT = [*CONV, "--encoding", "direct", "--T", "1", "--readout", "membrane", "--weight-bits", "8",
               "--epochs", "40", "--label-smoothing", "0.1"]
CONV_TSC = [*CONV, "--coding", "tsc", "--T", "17", "--weight-bits", "8", "--epochs", "40", "--augment", "1", "--bn",
            "--label-smoothing", "0.1"]

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
CONFIGS = {name: [*DENSE, *args] for name, args in CONFIGS.items()}
CONFIGS.update({
    "conv-rate-T8-w8": CONV_RATE,
    "conv-direct-T1-w8": CONV_DIRECT,
    "conv-tsc-T17-w8": CONV_TSC,
    "conv-stcb-T8-w8": [*CONV_RATE[:CONV_RATE.index("--encoding")], "--coding", "stcb",
                        *CONV_RATE[CONV_RATE.index("--encoding"):]],
})
KEYS = ("float_accuracy", "quant_accuracy", "golden_accuracy", "golden_agreement", "train_seconds",
        "quant_train_seconds", "float_train_seconds", "epochs", "v_bits", "grad", "kernel", "arch", "bn",
        "augment", "weight_decay", "label_smoothing", "scale", "reset", "leak", "leaks")


def retarget_agreement(rate_model_file: Path) -> float:
    """Fraction of digits test samples on which the rate model and the same integers retargeted to
    coding stcb (h = [1]) predict the same class in golden."""
    import golden
    x, _ = golden.datasets.load("digits", "test")
    rate = golden.load_model(rate_model_file)
    stcb = rate.replace(coding="stcb")
    return float((golden.run(rate, x).predictions == golden.run(stcb, x).predictions).mean()) if len(x) else 1.0


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
        cmd = [sys.executable, "-m", "quant.train", "--dataset", "digits", "--seed", str(a.seed), *CONFIGS[name],
               "--out", str(out)]
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
        if name == "conv-rate-T8-w8":
            results[name]["stcb_retarget_agreement"] = retarget_agreement(out)
            print(f"    retargeted to stcb: predictions agree on "
                  f"{100 * results[name]['stcb_retarget_agreement']:.2f}% of the test samples", flush=True)
        if name == "conv-stcb-T8-w8" and "conv-rate-T8-w8" in results:
            import golden
            same = golden.load_model(out).layers == golden.load_model(results["conv-rate-T8-w8"]["model"]).layers
            results[name]["same_integers_as_rate"] = bool(same)
            print(f"    the same integers as conv-rate-T8-w8: {same}", flush=True)
    doc = {"dataset": "digits", "seed": a.seed, "configs": results}
    text = json.dumps(doc, indent=2) + "\n"
    with OutputSet() as files:
        files.add_text(a.out, text)
        files.commit()
    print(f"wrote {a.out}")
    for name, r in results.items():
        fa = r["float_accuracy"]
        print(f"  {name:<20} float {100 * fa:6.2f}%  quant {100 * r['quant_accuracy']:6.2f}%  "
              f"golden {100 * r['golden_accuracy']:6.2f}%  agreement {r['golden_agreement']:.4f}  "
              f"train {r['train_seconds']:.1f}s (quant {r['quant_train_seconds']:.1f}s)")
    return 0


if __name__ == "__main__":
    guard(PROG, main)
