"""``python -m quant.nir``: NIR graphs (SpikingJelly, snnTorch, Norse, Sinabs) in and out of the core.

``import SRC.nir --dataset D --input-scale S --T T --weight-bits B --out M.npz`` quantizes a float
graph after training into an integer model (coding rate, direct encoding, reset zero), calibrated
on the dataset's training split, and writes ``M.npz`` with ``M.json`` beside it: the source
accuracy (the graph run in float64 here), the integer accuracy (golden), their agreement on the
test split, each layer's scale, and the LIF leak approximation error. A graph written by
``export`` carries our integer model in its metadata and imports exactly, without ``--dataset``.

``export M.npz --out F.nir`` writes an integer model as a NIR graph; what NIR cannot express
(subtract reset, v_init) is marked in node metadata and warned about on stderr.

Anything that cannot be represented exits 2 with one line naming the node and the reason, and
writes nothing. docs/nir.md has the node table.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from golden.cli import (ArgumentParser, Output, OutputSet, UsageError, check_outputs, finite_float, guard,
                        int_range, main_output, positive_float, positive_int)

PROG = "python -m quant.nir"

T_arg = int_range(1, 1024, what="a number of time steps from 1 to 1024")
bits_arg = int_range(2, 16, what="a weight width from 2 to 16 bits")
shift_arg = int_range(0, 16, what="a leak shift from 0 to 16")
dt_arg = finite_float(0.0, lo_open=True, what="a positive time step in seconds")
DEFAULT_DT = 1e-4            # the exporters' default step (SpikingJelly, snnTorch)
DEFAULT_LEAK_SHIFT = 8
DEFAULT_CALIB = 512


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", help="import or export")
    # prog stays the module's name: every error line starts "quant.nir: error:"
    i = sub.add_parser("import", prog=PROG, usage=f"{PROG} import SRC.nir [options] --out M.npz",
                       help="NIR graph -> integer model (.npz)")
    i.add_argument("src", metavar="SRC.nir", help="the NIR graph (HDF5)")
    i.add_argument("--dataset", default=None, help="calibration and evaluation data (digits, mnist, ...); not "
                   "needed for a graph that carries spikeforge integer metadata")
    i.add_argument("--data-dir", default=None, help="directory with the MNIST/Fashion-MNIST/CIFAR-10 files")
    i.add_argument("--input-scale", type=positive_float, default=None, metavar="S",
                   help="the float network saw the input x * S (digits trained on x/16: 0.0625)")
    i.add_argument("--T", type=T_arg, default=None, help="time steps per sample")
    i.add_argument("--weight-bits", type=bits_arg, default=None, help="signed weight width, 2..16 (default 8)")
    i.add_argument("--dt", type=dt_arg, default=None,
                   help=f"the source's time step in seconds, which turns tau and r into a decay and a gain "
                   f"(default {DEFAULT_DT:g}, the SpikingJelly and snnTorch exporters')")
    i.add_argument("--leak-shift", type=shift_arg, default=None,
                   help=f"LIF decay as [num, shift] with this shift, 0..16 (default {DEFAULT_LEAK_SHIFT})")
    i.add_argument("--calib", type=positive_int, default=DEFAULT_CALIB, metavar="N",
                   help=f"calibration samples from the training split (default {DEFAULT_CALIB})")
    i.add_argument("--limit", type=positive_int, default=None, help="evaluate on the first N test samples only")
    i.add_argument("--out", required=True, help="integer model to write (.npz); NAME.json (metrics) goes next to it")
    e = sub.add_parser("export", prog=PROG, usage=f"{PROG} export M.npz [--dt DT] --out F.nir",
                       help="integer model (.npz) -> NIR graph")
    e.add_argument("model", metavar="M.npz", help="integer model file")
    e.add_argument("--dt", type=dt_arg, default=DEFAULT_DT, help=f"time step the graph's tau and r assume "
                   f"(default {DEFAULT_DT:g})")
    e.add_argument("--out", required=True, help="NIR graph to write (.nir)")
    return p


def _accuracy(pred, y) -> float | None:
    return float((pred == y).mean()) if len(y) else None


def _pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.2f}%"


def cmd_import(a) -> int:
    out = main_output("--out", a.out, ".npz")
    metrics_path = out.with_suffix(".json")
    check_outputs([Output("--out", out), Output("--out", metrics_path, note=f"written next to {out.name}")])
    src = Path(a.src)
    if not src.is_file():
        raise UsageError(f"SRC.nir: {src}: no such file")
    if a.dataset is not None:
        from golden.datasets import DatasetError, input_max
        try:
            input_max(a.dataset)
        except DatasetError as e:
            raise UsageError(f"--dataset: {e}") from None

    import numpy as np

    import golden
    from golden import datasets

    from .nir_convert import PTQConfig, calibrate, float_run, graph_meta, integer_model, leak_report, quantize
    from .nir_graph import NirError, plan as make_plan, read_graph

    try:
        graph = read_graph(src)
        ours = graph_meta(graph.metadata)
        if ours is not None:
            for opt, val in (("--input-scale", a.input_scale), ("--T", a.T), ("--weight-bits", a.weight_bits),
                             ("--dt", a.dt), ("--leak-shift", a.leak_shift)):
                if val is not None:
                    raise UsageError(f"{opt}: {src} carries its integer model (spikeforge metadata), which fixes "
                                     "it; drop the option")
            plan = make_plan(graph, dt=float(ours.get("dt", DEFAULT_DT)))
            model = integer_model(plan, ours)
        else:
            for opt, val in (("--dataset", a.dataset), ("--input-scale", a.input_scale), ("--T", a.T)):
                if val is None:
                    raise UsageError(f"{opt}: required to quantize {src}, a float graph (it carries no spikeforge "
                                     "integer metadata)")
            plan = make_plan(graph, dt=a.dt or DEFAULT_DT)
    except NirError as e:
        raise NirError(f"{src}: {e}") from None

    metrics: dict = {"source": str(src), "readout": plan.readout,
                     "nodes": [st.nodes for st in plan.stages]}
    if ours is not None:
        metrics.update(exact=True, from_metadata=True)
        x = y = None
        if a.dataset:
            x, y = datasets.load(a.dataset, "test", a.data_dir)
            if a.limit:
                x, y = x[:a.limit], y[:a.limit]
            golden.check_inputs(model, x)
            pred = golden.run(model, x).predictions
            metrics.update(dataset=a.dataset, test_samples=int(len(y)), integer_accuracy=_accuracy(pred, y))
    else:
        shape = tuple(datasets.input_shape(a.dataset))
        if plan.input_shape != shape and plan.input_shape != (int(np.prod(shape)),):
            raise NirError(f"{src}: the graph's Input has shape {list(plan.input_shape)} but {a.dataset} samples are "
                           f"{list(shape)} (shape mismatch)")
        if len(plan.input_shape) == 1 and plan.stages[0].kind == "conv2d":
            raise NirError(f"{src}: node {plan.stages[0].node!r} (Conv2d) reads a flat Input (shape mismatch)")
        cfg = PTQConfig(input_scale=a.input_scale, T=a.T, weight_bits=a.weight_bits or 8,
                        input_max=datasets.input_max(a.dataset), input_shape=plan.input_shape,
                        leak_shift=DEFAULT_LEAK_SHIFT if a.leak_shift is None else a.leak_shift)
        x_tr, _ = datasets.load(a.dataset, "train", a.data_dir)
        x_te, y_te = datasets.load(a.dataset, "test", a.data_dir)
        if a.limit:
            x_te, y_te = x_te[:a.limit], y_te[:a.limit]
        x_cal = x_tr[:a.calib]
        try:
            clips, cal_agree = calibrate(plan, cfg, x_cal)
            model = quantize(plan, cfg, clips)
        except NirError as e:
            raise NirError(f"{src}: {e}") from None
        src_pred = float_run(plan, x_te, input_scale=cfg.input_scale, T=cfg.T)["predictions"]
        int_pred = golden.run(model, x_te).predictions
        metrics.update(
            exact=False, from_metadata=False, dataset=a.dataset, input_scale=cfg.input_scale, T=cfg.T,
            weight_bits=cfg.weight_bits, dt=a.dt or DEFAULT_DT, leak_shift=cfg.leak_shift,
            calibration={"split": "train", "samples": int(len(x_cal)), "clips": clips, "agreement": cal_agree},
            test_samples=int(len(y_te)), source_accuracy=_accuracy(src_pred, y_te),
            integer_accuracy=_accuracy(int_pred, y_te),
            agreement=float((src_pred == int_pred).mean()) if len(y_te) else None,
            leak=leak_report(plan, cfg))
    metrics["v_bits"] = model.v_bits
    metrics["model"] = model.meta()
    with OutputSet() as files:
        files.add(out, lambda tmp: golden.save_model(model, tmp))
        files.add_text(metrics_path, json.dumps(metrics, indent=2) + "\n")
        files.commit()
    how = "exact (spikeforge metadata)" if ours is not None else "post-training quantization"
    line = f"wrote {out} and {metrics_path.name}: {model!r}, {how}"
    if "integer_accuracy" in metrics:
        line += (f"; {metrics['test_samples']} {metrics['dataset']}/test samples: integer "
                 f"{_pct(metrics['integer_accuracy'])}")
    if ours is None:
        line += f", source {_pct(metrics['source_accuracy'])}, agreement {_pct(metrics['agreement'])}"
    print(line)
    for r in metrics.get("leak", []):
        print(f"  layer {r['layer']} ({r['node']}): decay 1 - dt/tau = {r['decay']:.6f} -> leak {r['leak']} = "
              f"{r['decay_int']:.6f}, error {r['decay_error']:+.2e}")
    return 0


def cmd_export(a) -> int:
    out = main_output("--out", a.out, ".nir")
    check_outputs([Output("--out", out)])
    import nir

    from golden import load_model

    from .nir_convert import export_warnings, to_nir
    from .nir_graph import NirError

    model = load_model(a.model)
    try:
        graph = to_nir(model, dt=a.dt)
    except NirError as e:
        raise NirError(f"{a.model}: {e}") from None
    for w in export_warnings(model):
        sys.stderr.write(f"quant.nir: warning: {w}\n")
    with OutputSet() as files:
        files.add(out, lambda tmp: nir.write(tmp, graph))
        files.commit()
    print(f"wrote {out}: {len(graph.nodes)} NIR nodes from {model!r}")
    return 0


def main(argv=None) -> int:
    a = build_parser().parse_args(argv)
    return cmd_import(a) if a.command == "import" else cmd_export(a)


if __name__ == "__main__":
    guard("quant.nir", main)
