"""The training loop: surrogate-gradient BPTT of the quantization-aware network and of its float
reference (for ``coding="stcb"`` optionally with learned temporal kernels and/or the spike-train-level
``grad="stl"`` rule; for ``coding="tsc"``, straight-through QAT of the clipped-floor ANN that a TSC
network computes, see :mod:`quant.tsc`), per-epoch checkpoints, export and the bit-exactness check
against golden.

Deterministic by construction: fixed seeds (torch, numpy, random), ``torch.use_deterministic_algorithms``,
a fixed thread count and a seeded ``torch.Generator`` for shuffling. The checkpoint holds the
network, optimiser, LR schedule and generator states, so a resumed run replays exactly the
epochs an uninterrupted run would have done and ends with a byte-identical model.
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import golden
from golden.cli import UsageError
from golden.io import atomic_write

from .exactness import check_model
from .export import to_golden
from .net import SpikingMLP, encode_inputs, exact_dtype
from .tsc import TSCMLP

__all__ = ["Config", "TrainResult", "train", "checkpoint_path", "metrics_path", "CKPT_VERSION"]

CKPT_VERSION = 1


@dataclass
class Config:
    dataset: str = "digits"
    coding: str = "rate"
    encoding: str = "rate"
    T: int = 8
    hidden: list = field(default_factory=lambda: [128])
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


def _build_net(cfg: Config, sizes, input_max: int, quantized: bool):
    # both phases start from the same initial weights
    torch.manual_seed(cfg.seed)
    if cfg.coding == "tsc":
        return TSCMLP(sizes, T=cfg.T, input_max=input_max, weight_bits=cfg.weight_bits, quantized=quantized,
                      encoding=cfg.encoding, readout=cfg.readout, surrogate=cfg.surrogate)
    return SpikingMLP(sizes, T=cfg.T, encoding=cfg.encoding, input_max=input_max, readout=cfg.readout,
                      weight_bits=cfg.weight_bits, surrogate=cfg.surrogate, quantized=quantized,
                      coding=cfg.coding, kernel=cfg.kernel, grad=cfg.grad)


def _phase_objects(cfg: Config, net: SpikingMLP, steps_per_epoch: int):
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, cfg.epochs * steps_per_epoch))
    gen = torch.Generator()
    gen.manual_seed(cfg.seed)
    return opt, sched, gen


@torch.no_grad()
def _float_eval(net: SpikingMLP, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    preds = []
    for lo in range(0, len(x), batch_size):
        xb = torch.as_tensor(x[lo:lo + batch_size], dtype=torch.float32)
        f = net(encode_inputs(xb, net.encoding, net.input_max, net.T), quantized=False)
        preds.append(f.predictions.numpy())
    return np.concatenate(preds) if preds else np.zeros(0, dtype=np.int64)


def _quant_eval(net: SpikingMLP, x: np.ndarray) -> np.ndarray:
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
    d["hidden"] = list(d["hidden"])
    return d


def train(cfg: Config, data, out, *, resume: bool = False, stop_after: int | None = None,
          log=print) -> TrainResult:
    """Train (see :func:`_train`); torch's global determinism and thread settings are restored after."""
    det, threads = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    try:
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
    sizes = [x_tr.shape[1], *cfg.hidden, 10]
    out = Path(out)
    ckpt_file = checkpoint_path(out)
    _seed_everything(cfg.seed, cfg.threads)

    phases = ["quant"] + (["float"] if cfg.float_ref else [])
    n_train = len(x_tr)
    steps = math.ceil(n_train / cfg.batch_size)

    state = {"version": CKPT_VERSION, "config": _config_key(cfg), "phase": 0, "epoch": 0, "histories": {},
             "results": {}, "seconds": {}, "quant_net": None}
    net = opt = sched = gen = None
    if resume:
        if ckpt_file.exists():
            try:
                saved = torch.load(ckpt_file, weights_only=True)
            except Exception as e:  # noqa: BLE001 - any unreadable checkpoint is a usage problem
                raise UsageError(f"cannot read checkpoint {ckpt_file}: {type(e).__name__}: {e}") from None
            if not isinstance(saved, dict) or saved.get("version") != CKPT_VERSION:
                raise UsageError(f"checkpoint {ckpt_file} has an unknown format; delete it or drop --resume")
            # options added later (grad, kernel) default to their values when a checkpoint lacks them
            defaults = _config_key(Config())
            saved_cfg = {k: saved["config"].get(k, defaults.get(k)) for k in state["config"]}
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
        net = _build_net(cfg, sizes, input_max, quantized)
        opt, sched, gen = _phase_objects(cfg, net, steps)
        if state["epoch"] and "net" in state:
            net.load_state_dict(state["net"])
            opt.load_state_dict(state["opt"])
            sched.load_state_dict(state["sched"])
            gen.set_state(state["gen"])
        history = state["histories"].setdefault(phase, [])
        xt = torch.as_tensor(x_tr, dtype=torch.float32)
        yt = torch.as_tensor(y_tr, dtype=torch.int64)
        while state["epoch"] < cfg.epochs:
            epoch = state["epoch"] + 1
            t0 = time.perf_counter()
            net.train()
            perm = torch.randperm(n_train, generator=gen)
            tot_loss, correct = 0.0, 0
            bar = _progress(steps, f"{phase} {epoch}/{cfg.epochs}")
            for lo in range(0, n_train, cfg.batch_size):
                idx = perm[lo:lo + cfg.batch_size]
                x_in = encode_inputs(xt[idx], cfg.encoding, input_max, cfg.T)
                f = net(x_in)
                loss = F.cross_entropy(f.logits * cfg.logit_scale, yt[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                tot_loss += float(loss.detach()) * len(idx)
                correct += int((f.predictions == yt[idx]).sum())
                if bar is not None:
                    bar.update(1)
            if bar is not None:
                bar.close()
            if not math.isfinite(tot_loss):
                raise ValueError(f"training diverged in {phase} epoch {epoch} (loss {tot_loss}); try a lower --lr")
            net.eval()
            preds = _quant_eval(net, x_te) if quantized else _float_eval(net, x_te)
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
                    state["quant_net"] = {k: v.clone() for k, v in net.state_dict().items()}
                state["phase"] += 1
                state["epoch"] = 0
                for k in ("net", "opt", "sched", "gen"):
                    state.pop(k, None)
            else:
                state["net"] = net.state_dict()
                state["opt"] = opt.state_dict()
                state["sched"] = sched.state_dict()
                state["gen"] = gen.get_state()
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
    qnet = _build_net(cfg, sizes, input_max, True)
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
        "hidden": list(cfg.hidden), "readout": cfg.readout, "weight_bits": cfg.weight_bits,
        "surrogate": cfg.surrogate, "lr": cfg.lr, "batch_size": cfg.batch_size, "limit": cfg.limit,
        "threads": cfg.threads, "grad": cfg.grad, "kernel": cfg.kernel, "sizes": sizes, "v_bits": model.v_bits,
        "scales": [l["scale"] for l in ints],
        "h_scales": [l["h_scale"] for l in ints] if cfg.kernel > 1 else None,
        "h": [l["h"].tolist() for l in ints] if cfg.kernel > 1 else None,
        "eval_dtype": str(dtype).replace("torch.", ""), "test_samples": int(len(y_te)),
        "model_file": out.name,
    }
    golden.save_model(model, out)
    text = json.dumps(metrics, indent=2) + "\n"
    atomic_write(metrics_path(out), lambda tmp: Path(tmp).write_text(text))
    return TrainResult(model=model, metrics=metrics, exact=agree.exact, mismatch=agree.mismatch)
