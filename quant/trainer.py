"""The training loop: surrogate-gradient BPTT of the quantization-aware network (dense, conv2d and
maxpool2d layers from ``--arch``, optional folded BatchNorm, leak and reset options) and of its float
reference (for ``coding="stcb"`` optionally with learned temporal kernels and/or the spike-train-level
``grad="stl"`` rule; for ``coding="tsc"``, straight-through QAT of the clipped-floor ANN that a TSC
network computes, see :mod:`quant.tsc`), per-epoch checkpoints, export and the bit-exactness check
against golden.

Deterministic by construction: fixed seeds (torch, numpy, random), ``torch.use_deterministic_algorithms``,
a fixed thread count and a seeded ``torch.Generator`` for shuffling; on the CPU, kernels whose
arithmetic does not depend on the kind of CPU (:mod:`quant.numerics`), so another machine trains the
same bits. The checkpoint holds the
network, optimiser, LR schedule and generator states, so a resumed run replays exactly the
epochs an uninterrupted run would have done and ends with a byte-identical model.
"""

from __future__ import annotations

import json
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import golden
from golden.cli import UsageError
from golden.io import atomic_write

from .arch import arch_string, build_arch, dense_arch, is_dense
from .exactness import check_model
from .export import to_golden
from .net import SpikingNet, encode_inputs, exact_dtype
from .numerics import cpu_numerics, portable_cpu_flags
from .tsc import TSCNet

__all__ = ["Config", "TrainResult", "train", "checkpoint_path", "metrics_path", "CKPT_VERSION"]

CKPT_VERSION = 1


@dataclass
class Config:
    dataset: str = "digits"
    coding: str = "rate"
    encoding: str = "rate"
    T: int = 8
    arch: str = "128-10"
    readout: str = "count"
    weight_bits: int = 8
    surrogate: str = "arctan"
    epochs: int = 20
    lr: float = 3e-3
    batch_size: int = 32
    seed: int = 0
    float_ref: bool = True
    limit: int | None = None
    threads: int = 1
    logit_scale: float = 1.0
    grad: str = "bptt"
    kernel: int = 1
    reset: str = "subtract"
    leak: list | None = None          # [num, shift] or None (IF)
    learn_leak: bool = False
    scale: str = "layer"              # one power-of-two scale per "layer" or per output "channel"
    bn: bool = False
    augment: int = 0                  # random image shifts of up to this many pixels (training only)
    weight_decay: float = 0.0         # AdamW decay of the weights (0: plain Adam)
    label_smoothing: float = 0.0
    device: str = "cpu"
    portable_cpu: bool = True         # CPU-independent kernels (quant.numerics); False: the CPU's own, faster


@dataclass
class TrainResult:
    model: "golden.Model"
    metrics: dict
    exact: bool
    mismatch: str | None
    stopped: bool = False


def checkpoint_path(out) -> Path:
    out = Path(out)
    return out.with_name(out.stem + ".ckpt.pt")


def metrics_path(out) -> Path:
    out = Path(out)
    return out.with_name(out.stem + ".json")


def _seed_everything(seed: int, threads: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % (1 << 32))
    random.seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(threads)


def _build_net(cfg: Config, specs, input_max: int, quantized: bool):
    # both phases start from the same initial weights
    torch.manual_seed(cfg.seed)
    common = dict(weight_bits=cfg.weight_bits, quantized=quantized, per_channel=cfg.scale == "channel", bn=cfg.bn)
    if cfg.coding == "tsc":
        return TSCNet(specs, T=cfg.T, input_max=input_max, encoding=cfg.encoding, readout=cfg.readout,
                      surrogate=cfg.surrogate, **common)
    return SpikingNet(specs, T=cfg.T, encoding=cfg.encoding, input_max=input_max, readout=cfg.readout,
                      surrogate=cfg.surrogate, coding=cfg.coding, kernel=cfg.kernel, grad=cfg.grad,
                      reset=cfg.reset, leak=None if cfg.leak is None else tuple(cfg.leak),
                      learn_leak=cfg.learn_leak, **common)


def specs_of(cfg: Config):
    """The layer specs of ``cfg.arch`` on the dataset's image shape."""
    return build_arch(cfg.arch, golden.datasets.input_shape(cfg.dataset), golden.datasets.N_CLASSES[cfg.dataset])


def bn_frozen_epochs(cfg: Config) -> int:
    """With BN, the last quarter of the epochs (at least one) fold the frozen running statistics:
    those epochs train exactly the network that is exported."""
    return max(1, cfg.epochs // 4) if cfg.bn else 0


def _device(cfg: Config) -> torch.device:
    dev = torch.device(cfg.device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"--device {cfg.device}: CUDA is not available on this machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UsageError(f"--device {cfg.device}: only {torch.cuda.device_count()} CUDA device(s)")
        # the training forward should compute the exported integers: no TF32 rounding of the sums
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    return dev


def _shift_images(x: torch.Tensor, shape, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    """Shift each image by a random (dy, dx) in [-max_shift, max_shift]^2, filling with zeros.

    The shifted images are still integers in [0, input_max], so the network is trained on valid
    inputs of the integer model."""
    B = x.shape[0]
    C, H, W = shape
    img = x.reshape(B, C, H, W)
    pad = torch.nn.functional.pad(img, (max_shift,) * 4)
    d = torch.randint(0, 2 * max_shift + 1, (B, 2), generator=gen)
    out = torch.empty_like(img)
    for k in range(B):  # small batches; a gather would be faster, this is clearer
        dy, dx = int(d[k, 0]), int(d[k, 1])
        out[k] = pad[k, :, dy:dy + H, dx:dx + W]
    return out.reshape(B, -1)


def _phase_objects(cfg: Config, net, steps_per_epoch: int):
    if cfg.weight_decay:
        # decoupled decay on the synaptic weights only: thresholds, biases, initial membranes, BN
        # affine parameters, kernels and leaks set operating points, not capacity
        wd = [p for p in net.weight]
        ids = {id(p) for p in wd}
        rest = [p for p in net.parameters() if id(p) not in ids]
        opt = torch.optim.AdamW([{"params": wd, "weight_decay": cfg.weight_decay},
                                 {"params": rest, "weight_decay": 0.0}], lr=cfg.lr, fused=True)
    else:
        # fused: the unfused step takes the square root of the second moment with MKL VML, whose last bit
        # depends on the CPU; the fused kernel's vector square root is exact (quant.numerics)
        opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, fused=True)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, cfg.epochs * steps_per_epoch))
    gen = torch.Generator()
    gen.manual_seed(cfg.seed)
    return opt, sched, gen


@torch.no_grad()
def _float_eval(net, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    preds = []
    for lo in range(0, len(x), batch_size):
        xb = torch.as_tensor(x[lo:lo + batch_size], dtype=torch.float32)
        f = net(encode_inputs(xb, net.encoding, net.input_max, net.T), quantized=False)
        preds.append(f.predictions.numpy())
    return np.concatenate(preds) if preds else np.zeros(0, dtype=np.int64)


def _quant_eval(net, x: np.ndarray) -> np.ndarray:
    model = to_golden(net)
    return net.quantized_eval(x, dtype=exact_dtype(model))["predictions"]


def _progress(total: int, desc: str):
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return None
    return tqdm(total=total, desc=desc, file=sys.stderr, leave=False, disable=not sys.stderr.isatty(),
                dynamic_ncols=True)


def _config_key(cfg: Config) -> dict:
    d = asdict(cfg)
    if d["leak"] is not None:
        d["leak"] = list(d["leak"])
    return d


def _saved_config(saved: dict, keys) -> dict:
    """A checkpoint's config on today's keys: options added later take their defaults, and a
    checkpoint from before ``arch`` keeps its MLP (``hidden``)."""
    defaults = _config_key(Config())
    cfg = dict(saved)
    if "arch" not in cfg and "hidden" in cfg:
        cfg["arch"] = dense_arch(cfg["hidden"], 10)
    cfg.setdefault("portable_cpu", False)  # checkpoints from before quant.numerics trained with native kernels
    return {k: cfg.get(k, defaults.get(k)) for k in keys}


def train(cfg: Config, data, out, *, resume: bool = False, stop_after: int | None = None,
          log=print) -> TrainResult:
    """Train (see :func:`_train`); torch's global determinism and thread settings are restored after."""
    det, threads = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    try:
        with portable_cpu_flags(cfg.portable_cpu and torch.device(cfg.device).type == "cpu"):
            return _train(cfg, data, out, resume=resume, stop_after=stop_after, log=log)
    finally:
        torch.use_deterministic_algorithms(det)
        torch.set_num_threads(threads)


def _train(cfg: Config, data, out, *, resume: bool, stop_after: int | None, log) -> TrainResult:
    """Train (quantized, then the float reference), export to ``out`` and check exactness.

    ``data`` is ``(x_train, y_train, x_test, y_test)`` as int64 numpy arrays. Writes the model,
    ``NAME.json`` metrics and the ``NAME.ckpt.pt`` checkpoint (every epoch). With ``stop_after``
    the run stops once that many epochs (over both phases) are done, leaving only the checkpoint.
    """
    x_tr, y_tr, x_te, y_te = data
    input_max = golden.datasets.input_max(cfg.dataset)
    specs = specs_of(cfg)
    if specs[0].n_in != x_tr.shape[1]:
        raise UsageError(f"dataset {cfg.dataset} has {x_tr.shape[1]} features but --arch expects {specs[0].n_in}")
    sizes = [specs[0].n_in] + [s.n_out for s in specs]
    out = Path(out)
    ckpt_file = checkpoint_path(out)
    dev = _device(cfg)
    if dev.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    _seed_everything(cfg.seed, cfg.threads)
    if dev.type == "cuda":
        # some CUDA kernels (max-pool backward) have no deterministic version: CUDA runs are not
        # bit-reproducible; the export and its check run on the CPU either way
        torch.use_deterministic_algorithms(True, warn_only=True)
    freeze = bn_frozen_epochs(cfg)
    aug_gen = torch.Generator()
    aug_gen.manual_seed(cfg.seed + 1)

    phases = ["quant"] + (["float"] if cfg.float_ref else [])
    n_train = len(x_tr)
    steps = math.ceil(n_train / cfg.batch_size)

    state = {"version": CKPT_VERSION, "config": _config_key(cfg), "phase": 0, "epoch": 0, "histories": {},
             "results": {}, "seconds": {}, "quant_net": None}
    net = opt = sched = gen = None
    if resume:
        if ckpt_file.exists():
            try:
                saved = torch.load(ckpt_file, weights_only=True, map_location="cpu")
            except Exception as e:  # noqa: BLE001 - any unreadable checkpoint is a usage problem
                raise UsageError(f"cannot read checkpoint {ckpt_file}: {type(e).__name__}: {e}") from None
            if not isinstance(saved, dict) or saved.get("version") != CKPT_VERSION:
                raise UsageError(f"checkpoint {ckpt_file} has an unknown format; delete it or drop --resume")
            # options added later (grad, kernel, arch, ...) default to their values when a checkpoint lacks them
            saved_cfg = _saved_config(saved["config"], state["config"])
            diff = [k for k in state["config"] if saved_cfg[k] != state["config"][k]]
            if diff:
                k = diff[0]
                raise UsageError(f"checkpoint {ckpt_file} was written with {k}={saved_cfg[k]!r}, "
                                 f"not {state['config'][k]!r}; use the same options or drop --resume")
            state = saved
            log(f"resuming from {ckpt_file}: phase {phases[min(state['phase'], len(phases) - 1)]}, "
                f"{state['epoch']} epoch(s) done")
        else:
            log(f"no checkpoint at {ckpt_file}; starting from scratch")

    done_total = sum(cfg.epochs for _ in range(state["phase"])) + state["epoch"]
    stopped = False
    while state["phase"] < len(phases) and not stopped:
        phase = phases[state["phase"]]
        quantized = phase == "quant"
        net = _build_net(cfg, specs, input_max, quantized).to(dev)
        opt, sched, gen = _phase_objects(cfg, net, steps)
        if state["epoch"] and "net" in state:
            net.load_state_dict(state["net"])
            opt.load_state_dict(state["opt"])
            sched.load_state_dict(state["sched"])
            gen.set_state(state["gen"])
            if "aug_gen" in state:
                aug_gen.set_state(state["aug_gen"])
        history = state["histories"].setdefault(phase, [])
        xt = torch.as_tensor(x_tr, dtype=torch.float32)
        yt = torch.as_tensor(y_tr, dtype=torch.int64).to(dev)
        while state["epoch"] < cfg.epochs:
            epoch = state["epoch"] + 1
            t0 = time.perf_counter()
            net.train()
            net.bn_frozen = epoch > cfg.epochs - freeze
            perm = torch.randperm(n_train, generator=gen)
            tot_loss, correct = 0.0, 0
            bar = _progress(steps, f"{phase} {epoch}/{cfg.epochs}")
            for lo in range(0, n_train, cfg.batch_size):
                idx = perm[lo:lo + cfg.batch_size]
                xb = xt[idx]
                if cfg.augment:
                    xb = _shift_images(xb, specs[0].in_shape, cfg.augment, aug_gen)
                xb = xb.to(dev)
                if cfg.coding != "tsc":
                    xb = encode_inputs(xb, cfg.encoding, input_max, cfg.T)
                f = net(xb)
                loss = F.cross_entropy(f.logits * cfg.logit_scale, yt[idx.to(dev)],
                                       label_smoothing=cfg.label_smoothing)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                tot_loss += float(loss.detach()) * len(idx)
                correct += int((f.predictions == yt[idx.to(dev)]).sum())
                if bar is not None:
                    bar.update(1)
            if bar is not None:
                bar.close()
            if not math.isfinite(tot_loss):
                raise ValueError(f"training diverged in {phase} epoch {epoch} (loss {tot_loss}); try a lower --lr")
            net.eval()
            net.to("cpu")   # the exact evaluation runs on the CPU (parameters keep their identity)
            preds = _quant_eval(net, x_te) if quantized else _float_eval(net, x_te)
            net.to(dev)
            test_acc = float((preds == y_te).mean()) if len(y_te) else float("nan")
            secs = time.perf_counter() - t0
            rec = {"epoch": epoch, "loss": tot_loss / n_train, "train_acc": correct / n_train,
                   "test_acc": test_acc, "seconds": secs}
            history.append(rec)
            state["seconds"][phase] = state["seconds"].get(phase, 0.0) + secs
            state["epoch"] = epoch
            log(f"[{phase}] epoch {epoch}/{cfg.epochs}  loss {rec['loss']:.4f}  train {100 * rec['train_acc']:.2f}%  "
                f"test {100 * test_acc:.2f}%  ({secs:.1f}s)")
            if epoch == cfg.epochs:
                state["results"][phase] = test_acc
                if quantized:
                    state["quant_net"] = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
                state["phase"] += 1
                state["epoch"] = 0
                for k in ("net", "opt", "sched", "gen", "aug_gen"):
                    state.pop(k, None)
            else:
                state["net"] = net.state_dict()
                state["opt"] = opt.state_dict()
                state["sched"] = sched.state_dict()
                state["gen"] = gen.get_state()
                state["aug_gen"] = aug_gen.get_state()
            atomic_write(ckpt_file, lambda tmp: torch.save(state, tmp))
            done_total += 1
            if stop_after is not None and done_total >= stop_after:
                stopped = True
            if stopped or state["epoch"] == 0:  # interrupted, or this phase is complete
                break

    if stopped and state["phase"] < len(phases):
        log(f"stopped after {done_total} epoch(s); checkpoint {ckpt_file}; continue with --resume")
        return TrainResult(model=None, metrics={}, exact=True, mismatch=None, stopped=True)

    # export the quantized network and check it against golden on the whole test split
    qnet = _build_net(cfg, specs, input_max, True)
    qnet.load_state_dict(state["quant_net"])
    qnet.eval()
    model = to_golden(qnet)
    dtype = exact_dtype(model)
    torch_out = qnet.quantized_eval(x_te, dtype=dtype)
    agree = check_model(model, torch_out, x_te, y_te)
    ints = qnet.integer_layers()

    hist = state["histories"]
    metrics = {
        "float_accuracy": state["results"].get("float"),
        "quant_accuracy": agree.torch_accuracy,
        "golden_accuracy": agree.golden_accuracy,
        "golden_agreement": agree.fraction,
        "exact": agree.exact,
        "first_mismatch": agree.mismatch,
        "epochs": cfg.epochs,
        "seed": cfg.seed,
        "train_seconds": sum(state["seconds"].values()),
        "quant_train_seconds": state["seconds"].get("quant", 0.0),
        "float_train_seconds": state["seconds"].get("float"),
        "history": hist.get("quant", []),
        "float_history": hist.get("float"),
        "dataset": cfg.dataset, "coding": cfg.coding, "encoding": cfg.encoding, "T": cfg.T,
        "arch": arch_string(specs),
        "hidden": [s.n_out for s in specs[:-1]] if is_dense(specs) else None,
        "layers": [{"kind": s.kind, "in_shape": list(s.in_shape), "out_shape": list(s.out_shape)} for s in specs],
        "readout": cfg.readout, "weight_bits": cfg.weight_bits,
        "surrogate": cfg.surrogate, "lr": cfg.lr, "batch_size": cfg.batch_size, "limit": cfg.limit,
        "threads": cfg.threads, "grad": cfg.grad, "kernel": cfg.kernel, "sizes": sizes, "v_bits": model.v_bits,
        "reset": cfg.reset, "leak": cfg.leak, "learn_leak": cfg.learn_leak,
        "leaks": [l["leak"] and list(l["leak"]) for l in ints if l["kind"] != "maxpool2d"],
        "scale": cfg.scale, "bn": cfg.bn, "bn_frozen_epochs": freeze, "augment": cfg.augment,
        "weight_decay": cfg.weight_decay, "label_smoothing": cfg.label_smoothing, "device": cfg.device,
        "portable_cpu": cfg.portable_cpu, "cpu_numerics": cpu_numerics(),
        "scales": [l["scale"] for l in ints if l["kind"] != "maxpool2d"],
        "h_scales": [l["h_scale"] for l in ints if l["kind"] != "maxpool2d"] if cfg.kernel > 1 else None,
        "h": [l["h"].tolist() for l in ints if l["kind"] != "maxpool2d"] if cfg.kernel > 1 else None,
        "eval_dtype": str(dtype).replace("torch.", ""), "test_samples": int(len(y_te)),
        "model_file": out.name,
    }
    golden.save_model(model, out)
    text = json.dumps(metrics, indent=2) + "\n"
    atomic_write(metrics_path(out), lambda tmp: Path(tmp).write_text(text))
    return TrainResult(model=model, metrics=metrics, exact=agree.exact, mismatch=agree.mismatch)
