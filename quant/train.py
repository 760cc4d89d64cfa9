"""``python -m quant.train``: quantization-aware SNN training that exports a golden integer model.

Trains the quantized network (surrogate-gradient BPTT through the exact IF dynamics, power-of-two
fake quantization with straight-through gradients), then the same architecture as a float
reference, exports the integer model with ``golden.save_model`` plus ``NAME.json`` metrics, and
checks on the whole test split that the quantized torch forward and golden agree bit for bit
(exit 1 with the first differing sample, layer, time step and neuron otherwise).

``--coding stcb`` trains the same IF network as the rate code, exported as a golden STCB model,
optionally with a learned causal temporal kernel per layer (``--kernel K``) and/or the
spike-train-level equivalent-gradient rule (``--grad stl``) instead of BPTT.

``--coding tsc`` trains the clipped-floor quantized ANN that a temporal-switch-coded network
computes exactly (straight-through floor and round, learnable per-neuron thresholds, Q = T - 1
levels) and exports a golden TSC model (encoding tsc, membrane readout).

``--arch`` builds convolutional networks (``16c3-mp2-32c3-10``: conv2d, maxpool2d and dense layers,
see :mod:`quant.arch`) for every coding; ``--bn`` adds BatchNorm, folded into weights, biases and
thresholds at export; ``--reset`` and ``--leak`` (optionally ``--learn-leak``) choose the neuron.
``--recipe`` (:mod:`quant.recipe`) fills the training flags the user did not give: a conv arch trains
with the documented conv recipe of its coding by default, a dense one with the plain defaults.

Every bad option exits with code 2 and one line on stderr before any training starts. Torch is
imported only after the options have been checked, so that is fast.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path

from golden.cli import (ArgumentParser, Output, UsageError, check_outputs, error_line, guard, int_list, int_range,
                        main_output, positive_float, positive_int, seed_int)
from golden.datasets import DATASETS
from golden.options import finite_float

from .recipe import CONV, PLAIN, RECIPES, describe, recipe_for, resolve

PROG = "python -m quant.train"

# defaults chosen so the digits targets hold with --seed 0 (see docs/quant.md); --epochs, --augment,
# --label-smoothing and --bn default to the recipe's values (quant.recipe: PLAIN for dense archs)
DEFAULT_EPOCHS = PLAIN.epochs
DEFAULT_LR = 3e-3
DEFAULT_BATCH = 32
TRAINABLE_CODINGS = ("rate", "stcb", "tsc")
GRAD_RULES = ("bptt", "stl")
MAX_KERNEL = 16  # golden.Dense: 1..16 taps
RESETS = ("subtract", "zero")
MAX_LEAK_SHIFT = 16  # golden: leak (num, shift), 0 <= num <= 2**shift, shift <= 16
SCALES = ("layer", "channel")
MAX_AUGMENT = 4


# The option validators are golden.options'; these names are kept for build_parser and quant.bench.
hidden_arg = int_list(positive_int, what="positive integers (layer sizes)", unique=False)
int_ge0 = seed_int
T_arg = int_range(1, 1024, what="a number of time steps from 1 to 1024")
bits_arg = int_range(2, 16, what="a weight width from 2 to 16 bits")
kernel_arg = int_range(1, MAX_KERNEL, what=f"a number of kernel taps from 1 to {MAX_KERNEL}")
pos_float = positive_float
nonneg_float = finite_float(0.0, what="a non-negative number")
smoothing_arg = finite_float(0.0, 1.0, hi_open=True, what="a label smoothing in [0, 1)")
augment_arg = int_range(0, MAX_AUGMENT, what=f"a number of pixels from 0 to {MAX_AUGMENT}")


def leak_arg(text: str) -> tuple[int, int]:
    """``NUM,SHIFT``: V <- (V * NUM) >> SHIFT each step, 0 <= NUM <= 2**SHIFT, 0 <= SHIFT <= 16."""
    parts = text.split(",")
    try:
        if len(parts) != 2:
            raise ValueError
        num, shift = int(parts[0]), int(parts[1])
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NUM,SHIFT (two integers, e.g. 15,4), got {text!r}") from None
    if not 0 <= shift <= MAX_LEAK_SHIFT:
        raise argparse.ArgumentTypeError(f"the leak shift must be in 0..{MAX_LEAK_SHIFT}, got {shift} in {text!r}")
    if not 0 <= num <= (1 << shift):
        raise argparse.ArgumentTypeError(f"the leak num must be in 0..2**shift = {1 << shift}, got {num} in {text!r}")
    return num, shift


def device_arg(text: str) -> str:
    """``cpu``, ``cuda`` or ``cuda:N`` (syntax only; availability is checked once torch is imported)."""
    if text == "cpu" or text == "cuda" or (text.startswith("cuda:") and text[5:].isdigit()):
        return text
    raise argparse.ArgumentTypeError(f"expected cpu, cuda or cuda:N, got {text!r}")


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="digits", help=f"one of {', '.join(DATASETS)} (default digits)")
    p.add_argument("--data-dir", default=None, help="directory with the MNIST/Fashion-MNIST/CIFAR-10 files")
    p.add_argument("--coding", default="rate",
                   help="neural coding: rate (default), stcb (spike-train level, optional temporal "
                   "kernel) or tsc (temporal switch coding)")
    p.add_argument("--encoding", default=None, choices=("rate", "direct", "tsc"),
                   help="input encoding (default: rate for --coding rate, tsc for --coding tsc)")
    p.add_argument("--T", type=T_arg, default=8, help="time steps per sample (default 8)")
    p.add_argument("--hidden", type=hidden_arg, default=None,
                   help="hidden dense layer sizes, comma-separated (default 128); --hidden 128 is --arch 128-10")
    p.add_argument("--arch", default=None,
                   help="layers, '-'-separated: <C>c<K>[s<S>] conv (padding K//2), mp<K> max-pool, <N> dense; "
                   "the last is the classifier (e.g. 16c3-mp2-32c3-10)")
    p.add_argument("--reset", default="subtract", choices=RESETS,
                   help="after a spike: subtract the threshold (default) or set V to zero")
    p.add_argument("--leak", type=leak_arg, default=None, metavar="NUM,SHIFT",
                   help="leaky neurons: V <- (V * NUM) >> SHIFT every step (0 <= NUM <= 2**SHIFT, SHIFT <= 16); "
                   "default: IF (no leak)")
    p.add_argument("--learn-leak", action="store_true",
                   help="learn each layer's leak NUM (starting from --leak, at its SHIFT)")
    p.add_argument("--scale", default="layer", choices=SCALES,
                   help="power-of-two quantization scale per layer (default) or per output channel")
    p.add_argument("--recipe", default="auto", choices=RECIPES,
                   help="training recipe for the flags not given: 'conv' (docs/quant.md's tuned conv recipe; "
                   f"rate/stcb with rate encoding: {describe(asdict(CONV['rate']))}; --encoding direct: "
                   f"{describe(asdict(CONV['direct']))}; tsc: {describe(asdict(CONV['tsc']))}), 'none' (the plain "
                   f"defaults: --epochs {PLAIN.epochs}, no augmentation, label smoothing or BN) or 'auto' (default: "
                   "conv when --arch has a conv layer, else none); a flag given explicitly always wins")
    p.add_argument("--bn", action=argparse.BooleanOptionalAction, default=None,
                   help="BatchNorm on every hidden layer, folded into weights, biases and thresholds at export "
                   "(default: the recipe's; --no-bn turns it off)")
    p.add_argument("--augment", type=augment_arg, default=None, metavar="PIXELS",
                   help="shift training images by up to PIXELS in y and x (default: the recipe's, else 0)")
    p.add_argument("--weight-decay", type=nonneg_float, default=0.0,
                   help="AdamW weight decay of the synaptic weights (default 0: plain Adam)")
    p.add_argument("--label-smoothing", type=smoothing_arg, default=None,
                   help="label smoothing of the cross-entropy loss, in [0, 1) (default: the recipe's, else 0)")
    p.add_argument("--device", type=device_arg, default="cpu",
                   help="torch device for training: cpu (default), cuda or cuda:N; evaluation, export and "
                   "the golden check run on the CPU")
    p.add_argument("--readout", default=None, choices=("count", "membrane"),
                   help="readout (default: the recipe's, else count for --coding rate, membrane for --coding tsc)")
    p.add_argument("--weight-bits", type=bits_arg, default=8, help="signed weight width, 2..16 (default 8)")
    p.add_argument("--surrogate", default="arctan", choices=("arctan", "triangle"),
                   help="surrogate gradient of the spike (default arctan)")
    p.add_argument("--kernel", type=kernel_arg, default=1, metavar="K",
                   help="stcb: learn a causal temporal kernel h of K taps per layer (1..min(16, T); "
                   "default 1: h = [1], nothing to learn)")
    p.add_argument("--grad", default="bptt", choices=GRAD_RULES,
                   help="training rule: bptt (surrogate-gradient BPTT, default) or stl (stcb only: "
                   "spike-train-level equivalent gradient)")
    p.add_argument("--epochs", type=positive_int, default=None,
                   help=f"epochs per network (default: the recipe's, else {DEFAULT_EPOCHS})")
    p.add_argument("--lr", type=pos_float, default=DEFAULT_LR, help=f"Adam learning rate (default {DEFAULT_LR})")
    p.add_argument("--batch-size", type=positive_int, default=DEFAULT_BATCH,
                   help=f"mini-batch size (default {DEFAULT_BATCH})")
    p.add_argument("--seed", type=int_ge0, default=0, help="random seed (default 0)")
    p.add_argument("--threads", type=positive_int, default=1,
                   help="torch CPU threads (default 1; results are reproducible for a fixed value)")
    p.add_argument("--native-cpu", action="store_true",
                   help="train with the CPU's own vectorised kernels (AVX2, AVX-512, oneDNN): faster, but the "
                        "weights then depend on the kind of CPU; by default training uses kernels that give the "
                        "same bits on every x86-64 CPU (quant.numerics)")
    p.add_argument("--limit", type=positive_int, default=None,
                   help="use only the first N samples of each split (quick runs, tests)")
    p.add_argument("--out", required=True, help="integer model file to write (.npz); NAME.json and "
                   "NAME.ckpt.pt go next to it")
    p.add_argument("--resume", action="store_true", help="continue from NAME.ckpt.pt next to --out")
    p.add_argument("--stop-after", type=positive_int, default=None, metavar="N",
                   help="stop after N epochs in total (checkpoint only, no model); continue with --resume")
    p.add_argument("--no-float-ref", action="store_true", help="skip the float reference network")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    return p


def companions(out: Path) -> tuple[Path, Path]:
    """NAME.json (metrics) and NAME.ckpt.pt (checkpoint) beside the model; quant.trainer writes them
    (its metrics_path and checkpoint_path; tests/test_quant.py checks the two agree)."""
    return out.with_suffix(".json"), out.with_name(out.stem + ".ckpt.pt")


def check_out(out: str, option: str = "--out") -> Path:
    """Fail (UsageError naming ``option``) unless the model and its companions can be written: checked
    before any training."""
    path = main_output(option, out, ".npz")
    metrics, ckpt = companions(path)
    check_outputs([Output(option, path), Output(option, metrics, note=f"written next to {path.name}"),
                   Output(option, ckpt, note=f"written next to {path.name}")])
    return path


def main(argv=None) -> int:
    a = build_parser().parse_args(argv)
    from golden import datasets
    from golden.model import CODINGS

    from .arch import ArchError, arch_string, build_arch, dense_arch

    if a.coding not in TRAINABLE_CODINGS:
        if a.coding in CODINGS:
            raise UsageError(f"coding {a.coding!r} is not supported yet (supported: {', '.join(TRAINABLE_CODINGS)})")
        raise UsageError(f"unknown coding {a.coding!r}; choose from {', '.join(CODINGS)}")
    tsc = a.coding == "tsc"
    encoding = a.encoding or ("tsc" if tsc else "rate")
    if tsc and encoding != "tsc":
        raise UsageError(f"coding 'tsc' needs --encoding tsc (its own ON/OFF input events), got {encoding!r}")
    if not tsc and encoding == "tsc":
        raise UsageError(f"--encoding tsc needs --coding tsc, got coding {a.coding!r}")
    if a.kernel > 1 and a.coding != "stcb":
        raise UsageError(f"--kernel {a.kernel} needs --coding stcb (coding {a.coding!r} has no temporal kernel)")
    if a.kernel > a.T:
        raise UsageError(f"--kernel {a.kernel} has more taps than --T {a.T} time steps")
    if a.grad == "stl" and a.coding != "stcb":
        raise UsageError(f"--grad stl needs --coding stcb, got coding {a.coding!r}")
    if tsc and (a.leak is not None or a.reset != "subtract"):
        raise UsageError("coding 'tsc' has no membrane dynamics to leak or reset; drop --leak / --reset")
    if a.learn_leak and a.leak is None:
        raise UsageError("--learn-leak needs --leak NUM,SHIFT (its start value and resolution)")
    if a.grad == "stl" and (a.leak is not None or a.reset != "subtract"):
        raise UsageError("--grad stl models IF neurons with reset by subtraction; drop --leak / --reset zero")
    if a.arch is not None and a.hidden is not None:
        raise UsageError("give either --arch or --hidden, not both (--hidden 128 means --arch 128-10)")
    input_max = datasets.input_max(a.dataset)  # unknown dataset -> DatasetError
    arch = a.arch if a.arch is not None else dense_arch(a.hidden or [128], datasets.N_CLASSES[a.dataset])
    try:
        specs = build_arch(arch, datasets.input_shape(a.dataset), datasets.N_CLASSES[a.dataset])
    except ArchError as e:
        raise UsageError(str(e)) from None
    recipe, settings = recipe_for(a.recipe, conv_arch=any(sp.kind == "conv2d" for sp in specs), coding=a.coding,
                                  encoding=encoding)
    run, taken = resolve(settings, {"epochs": a.epochs, "augment": a.augment, "label_smoothing": a.label_smoothing,
                                    "bn": a.bn, "readout": a.readout})
    readout = run.readout or ("membrane" if tsc else "count")
    if tsc and readout != "membrane":
        raise UsageError(f"coding 'tsc' needs --readout membrane (the last layer's V is the output), got {readout!r}")
    if encoding == "direct" and specs[0].kind == "maxpool2d":
        raise UsageError(f"--encoding direct feeds the integer inputs to layer 0, which must be dense or conv, "
                         f"not {specs[0].token!r}")
    if tsc and a.T < 2:
        raise UsageError(f"coding 'tsc' needs a window --T >= 2 (Q = T - 1 levels), got --T {a.T}")
    if tsc and a.T - 1 > input_max:
        raise UsageError(f"coding 'tsc': --T {a.T} gives Q = {a.T - 1} levels but {a.dataset} inputs have only "
                         f"input_max + 1 = {input_max + 1}; use --T <= {input_max + 1}")
    out = check_out(a.out)
    if a.resume and not companions(out)[1].exists():
        raise UsageError(f"--resume: no checkpoint {companions(out)[1]} to continue from (runs write it next to "
                         f"--out); drop --resume to train from scratch")
    x_tr, y_tr = datasets.load(a.dataset, "train", a.data_dir)
    x_te, y_te = datasets.load(a.dataset, "test", a.data_dir)
    if a.limit:
        x_tr, y_tr, x_te, y_te = x_tr[:a.limit], y_tr[:a.limit], x_te[:a.limit], y_te[:a.limit]
    if len(x_tr) == 0:
        raise UsageError(f"dataset {a.dataset} has no training samples")

    if a.device == "cpu" and not a.native_cpu:
        from .numerics import pin_portable_cpu
        why = pin_portable_cpu()  # before torch's first kernel, which fixes ATen's and MKL's choice
        if why:
            sys.stderr.write(f"{PROG}: warning: {why} (cpu_numerics in the metrics)\n")
    from .trainer import Config, metrics_path, train  # imports torch

    cfg = Config(dataset=a.dataset, coding=a.coding, encoding=encoding, T=a.T, arch=arch_string(specs),
                 readout=readout, weight_bits=a.weight_bits, surrogate=a.surrogate, epochs=run.epochs, lr=a.lr,
                 batch_size=a.batch_size, seed=a.seed, float_ref=not a.no_float_ref, limit=a.limit,
                 threads=a.threads, grad=a.grad, kernel=a.kernel, reset=a.reset,
                 leak=None if a.leak is None else list(a.leak), learn_leak=a.learn_leak, scale=a.scale, bn=run.bn,
                 augment=run.augment, weight_decay=a.weight_decay, label_smoothing=run.label_smoothing,
                 device=a.device, portable_cpu=not a.native_cpu)
    log = (lambda *args, **kw: None) if a.quiet else (lambda msg: print(msg, flush=True))
    if describe(taken):  # say what the recipe chose, so a run can be repeated with explicit flags
        log(f"recipe {recipe}: {describe(taken)}")
    r = train(cfg, (x_tr, y_tr, x_te, y_te), out, resume=a.resume, stop_after=a.stop_after, log=log)
    if r.stopped:
        return 0
    m = r.metrics
    fa = "n/a" if m["float_accuracy"] is None else f"{100 * m['float_accuracy']:.2f}%"
    print(f"wrote {out} and {metrics_path(out).name}: float {fa}, quantized {100 * m['quant_accuracy']:.2f}%, "
          f"golden {100 * m['golden_accuracy']:.2f}%, agreement {m['golden_agreement']:.4f} on "
          f"{m['test_samples']} test samples, v_bits {m['v_bits']}, {m['train_seconds']:.1f}s", flush=True)
    if not r.exact:
        sys.stderr.write(error_line(PROG, f"quantized torch and golden differ (outputs agree on "
                         f"{round(m['golden_agreement'] * m['test_samples'])} of {m['test_samples']} "
                         f"test samples); first difference: {r.mismatch}"))
        return 1
    return 0


if __name__ == "__main__":
    guard(PROG, main)
