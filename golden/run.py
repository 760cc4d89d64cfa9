"""``python -m golden.run``: model summary, accuracy and mean hardware counters of a model on a dataset.

This module is also callable: ``golden.run(model, x, ...)`` keeps working after
``import golden.run`` has replaced the package attribute with this module.
"""

from __future__ import annotations

import json
import sys
import types


from . import engine, perf
from .cli import ArgumentParser, Output, OutputSet, add_data_options, banks_arg, check_outputs, guard, lanes_arg
from .io import load_model


def _shape(s) -> str:
    return "x".join(map(str, s))


def format_summary(summary: dict) -> list[str]:
    """``Model.summary()`` as text lines: one per layer, then the totals."""
    head = (f"  {'layer':<5} {'type':<13} {'in':>10} {'out':>10} {'params':>9} {'neurons':>8} "
            f"{'weight bits':>12} {'param bits':>11} {'state bits':>11}")
    lines = [f"model: input {_shape(summary['input_shape'])}, coding {summary['coding']}, T={summary['T']}, "
             f"weight_bits={summary['weight_bits']}, v_bits={summary['v_bits']}", head]
    for r in summary["layers"]:
        kind = r["type"]
        if "kernel" in r:
            kind += (f" k{r['kernel']}" + (f"s{r['stride']}" if r.get("stride", 1) != 1 else "")
                     + (f"p{r['padding']}" if r.get("padding", 0) else ""))
        mb = r["memory_bits"]
        lines.append(f"  {r['index']:<5} {kind:<13} {_shape(r['in_shape']):>10} {_shape(r['out_shape']):>10} "
                     f"{r['params']:>9} {r['neurons']:>8} {mb['weights']:>12} {mb['params']:>11} {mb['state']:>11}")
    t, mb = summary["total"], summary["total"]["memory_bits"]
    lines.append(f"  {'total':<5} {'':<13} {'':>10} {'':>10} {t['params']:>9} {t['neurons']:>8} {mb['weights']:>12} "
                 f"{mb['params']:>11} {mb['state']:>11}   ({mb['total']} bits)")
    return lines


def summarize(model, x, y, lanes: int, banks: int = 1) -> dict:
    res = engine.run(model, x, lanes=lanes, banks=banks)
    acc = float((res.predictions == y).mean()) if len(y) else float("nan")
    return {
        "model": model.meta(), "summary": model.summary(), "lanes": lanes, "banks": banks, "samples": int(len(y)),
        "accuracy": acc,
        "mean_counters": {k: float(v.mean()) for k, v in res.counters.items()},
        "mean_layer_spikes": [float(c["spikes"].mean()) for c in res.layer_counters],
        "mean_encoder_spikes": float(res.encoder_counters["spikes"].mean()),
    }


def main(argv=None) -> int:
    from . import datasets
    p = ArgumentParser(prog="python -m golden.run", description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="integer model file (.npz)")
    add_data_options(p)
    p.add_argument("--lanes", type=lanes_arg, default=1, help="hardware lanes P for the counters")
    p.add_argument("--banks", type=banks_arg, default=1,
                   help="accumulator banks for the counters: kernel offsets of a conv2d scatter in parallel "
                        "(docs/spec.md section 3, Banks; default 1)")
    p.add_argument("--json", default=None, metavar="FILE.json", help="write the summary as JSON here")
    a = p.parse_args(argv)
    if a.json:
        check_outputs([Output("--json", a.json)])
    model = load_model(a.model)
    x, y = datasets.load(a.dataset, a.split, a.data_dir)
    if a.limit:
        x, y = x[:a.limit], y[:a.limit]
    engine.check_inputs(model, x)
    s = summarize(model, x, y, a.lanes, a.banks)
    print("\n".join(format_summary(s["summary"])))
    print(f"{a.model}: {s['samples']} {a.dataset}/{a.split} samples, accuracy {100 * s['accuracy']:.2f}%, "
          f"lanes={a.lanes}" + (f", banks={a.banks}" if a.banks != 1 else ""))
    for k in perf.COUNTERS:
        print(f"  {k:<15} {s['mean_counters'][k]:>12.1f} per inference")
    if a.json:
        with OutputSet() as files:
            files.add_text(a.json, json.dumps(s, indent=2))
            files.commit()
    return 0


class _CallableModule(types.ModuleType):
    def __call__(self, *args, **kwargs):
        return engine.run(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

if __name__ == "__main__":
    guard("golden.run", main)
