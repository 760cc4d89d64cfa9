"""The spiking MLP, trained as a float reference or quantization-aware, and its exact eval forward.

One forward function (:func:`run_layers`) serves three purposes:

* float training / evaluation of the reference network,
* quantization-aware training (integer-valued parameters with straight-through gradients),
* the exact quantized evaluation that is compared bit for bit with golden (no gradients,
  integer-valued float32 tensors, or float64 when the model's widths exceed 24 bits).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .layers import (GRADS, apply_kernel, if_layer, kernel_gain, quantize_layer, quantize_stcb_layer,
                     rate_encode, select_prediction, stl_layer)

__all__ = ["SpikingMLP", "Forward", "run_layers", "exact_dtype", "tsc_exact_bits", "stcb_exact_bits",
           "encode_inputs", "FLOAT32_EXACT_BITS", "MAX_KERNEL"]

# golden.Dense accepts 1..16 taps
MAX_KERNEL = 16

# float32 has a 24-bit significand: every integer of magnitude <= 2**24 is exact.
FLOAT32_EXACT_BITS = 24


@dataclass
class Forward:
    """Outputs of one forward pass (tensors; integer-valued in quantized mode)."""

    spikes: list          # per layer (B, T, n) 0/1
    v_final: list         # per layer (B, n)
    counts: torch.Tensor  # (B, n_out) last-layer spike counts
    logits: torch.Tensor  # (B, n_out) training logits
    predictions: torch.Tensor  # (B,) golden's readout rule


def encode_inputs(x: torch.Tensor, encoding: str, input_max: int, T: int) -> torch.Tensor:
    """Integer-valued inputs (B, n_in) -> what layer 0 consumes: rate spikes (B, T, n_in) or x.

    ``tsc``: x itself; :class:`quant.tsc.TSCMLP` quantizes its inputs (q0) inside its forward."""
    if encoding == "rate":
        return rate_encode(x, input_max, T)
    return x


def run_layers(params, x_in: torch.Tensor, *, T: int, encoding: str, readout: str, surrogate: str,
               grad: str = "bptt") -> Forward:
    """Run the IF network given per-layer ``(W, b, theta, v_init)`` or ``(W, b, theta, v_init, h)``
    tensors (``h``: the STCB temporal kernel, ``None`` for the identity).

    ``x_in`` is the encoder output: (B, T, n_in) spikes (rate) or (B, n_in) values (direct, the same
    current every step). Layer by layer over all T steps equals step by step (feed-forward).

    ``grad="stl"`` changes only the backward pass (:func:`quant.layers.stl_layer`); the forward
    values are the same numbers as with ``"bptt"``. Without autograd (evaluation) both are the
    BPTT code path.
    """
    if grad not in GRADS:
        raise ValueError(f"unknown grad {grad!r}; choose from {', '.join(GRADS)}")
    stl = grad == "stl" and torch.is_grad_enabled()
    spikes, v_final = [], []
    h_in, c_in = x_in, None
    n_layers = len(params)
    counts = None
    for i, p in enumerate(params):
        w, b, th, v0 = p[:4]
        hk = p[4] if len(p) > 4 else None
        last = i == n_layers - 1
        fire = not (last and readout == "membrane")
        if i == 0 and encoding == "direct":
            cur = (h_in @ w.T + b).unsqueeze(1).expand(h_in.shape[0], T, w.shape[0])
        else:
            cur = h_in @ w.T + b
        cur = apply_kernel(cur, hk)
        if stl:
            s, counts, v = stl_layer(cur, th, v0, fire=fire, counts_in=c_in, weight=w,
                                     gain=kernel_gain(hk, T))
            c_in = counts
        else:
            s, v = if_layer(cur, th, v0, fire=fire, surrogate=surrogate)
        spikes.append(s)
        v_final.append(v)
        h_in = s
    th_last = params[-1][2]
    v = v_final[-1]
    if not stl:
        counts = spikes[-1].sum(dim=1)
    if readout == "count":
        # a differentiable stand-in for the lexicographic (count, V) readout
        logits = counts + v / th_last
    else:
        # the last layer never fires; its (learnable) threshold only serves as the logit scale
        logits = v / th_last.mean()
    with torch.no_grad():
        pred = select_prediction(counts.detach(), v.detach(), readout)
    return Forward(spikes, v_final, counts, logits, pred)


def exact_dtype(model) -> torch.dtype:
    """float32 when every accumulator and membrane of the golden ``model`` fits in 24 bits (so all
    float32 arithmetic on them is exact), else float64 (exact up to 2**53; golden caps widths at 48)."""
    need = max([model.v_bits] + [w.acc_bits for w in model.widths] + [w.v_bits for w in model.widths])
    if model.coding == "tsc":
        need = max(need, tsc_exact_bits(model))
    if model.coding == "stcb":
        need = max(need, stcb_exact_bits(model))
    return torch.float32 if need <= FLOAT32_EXACT_BITS else torch.float64


def stcb_exact_bits(model) -> int:
    """Signed width of every value the torch kernel forms: each product ``h[k] * I[t-k]`` and each
    partial sum of ``sum_k h[k] I[t-k]`` is bounded by ``sum_k |h[k]| * max|I|``, where ``I`` is the
    pre-kernel current (``b + W s``, its synaptic part bounded as in golden's ``acc``). Golden's own
    widths bound the full kernel sum, not its partial sums, hence this extra bound. 1 bit for
    models without kernels."""
    from golden.model import signed_bits
    bound = 0
    for i, l in enumerate(model.layers):
        if not l.has_kernel:
            continue
        smax = model.input_max if (i == 0 and model.encoding == "direct") else 1
        w = l.weight
        lo = np.minimum(w, 0).sum(axis=1) * smax + l.bias
        hi = np.maximum(w, 0).sum(axis=1) * smax + l.bias
        m = int(np.abs(l.h).sum()) * np.maximum(np.abs(lo), np.abs(hi))
        bound = max(bound, int(m.max()))
    return signed_bits(-bound, bound)


def tsc_exact_bits(model) -> int:
    """Signed width of every value the TSC torch forward forms: the partial sums of ``a @ W.T``
    (``a`` in [0, Q]) lie between ``Q * sum(W-)`` and ``Q * sum(W+)``, plus the bias, plus up to
    ``2 * theta`` in the floor division's check products ``q * theta``, ``(q + 1) * theta``."""
    from golden.model import signed_bits
    Q = model.T - 1
    bound = 0
    for l in model.layers:
        w = l.weight
        pos, neg = np.maximum(w, 0).sum(axis=1), -np.minimum(w, 0).sum(axis=1)
        m = Q * np.maximum(pos, neg) + np.abs(l.bias) + 2 * l.threshold
        bound = max(bound, int(m.max()))
    return signed_bits(-bound, bound)


class SpikingMLP(nn.Module):
    """Dense IF layers ``sizes[0] -> sizes[1] -> ... -> sizes[-1]`` with learnable per-neuron
    thresholds, initial membranes and biases.

    With ``encoding="direct"`` the first layer's weights are parametrised as ``p / input_max`` so
    that raw integer inputs and rate spikes start with comparable currents (the quantizer sees the
    effective weights; the parametrisation only conditions the optimiser).

    ``coding="stcb"``: the same network (it is exported as a golden STCB model); with ``kernel=K > 1``
    every layer also learns a causal temporal kernel ``h`` of K taps, initialised to ``[1, 0, ...]``
    (the identity), quantized with :func:`quant.layers.quantize_stcb_layer`. ``kernel=1`` means
    ``h = [1]`` fixed: nothing to learn, the network is the rate network. ``grad="stl"`` selects the
    spike-train-level backward (:func:`quant.layers.stl_layer`) instead of BPTT.
    """

    def __init__(self, sizes, *, T: int, encoding: str, input_max: int, readout: str, weight_bits: int,
                 surrogate: str = "arctan", quantized: bool = True, init_gain: float = 1.0,
                 threshold_init: float = 1.0, coding: str = "rate", kernel: int = 1, grad: str = "bptt"):
        super().__init__()
        if coding not in ("rate", "stcb"):
            raise ValueError(f"SpikingMLP trains coding 'rate' or 'stcb', got {coding!r}")
        if not 1 <= kernel <= min(MAX_KERNEL, T):
            raise ValueError(f"kernel must have 1..min(16, T={T}) taps, got {kernel}")
        if kernel > 1 and coding != "stcb":
            raise ValueError(f"a temporal kernel (kernel={kernel}) needs coding 'stcb'")
        if grad not in GRADS:
            raise ValueError(f"unknown grad {grad!r}; choose from {', '.join(GRADS)}")
        if grad == "stl" and coding != "stcb":
            raise ValueError("grad 'stl' needs coding 'stcb'")
        self.sizes = [int(s) for s in sizes]
        self.T, self.encoding, self.input_max = int(T), encoding, int(input_max)
        self.readout, self.weight_bits, self.surrogate = readout, int(weight_bits), surrogate
        self.coding, self.kernel, self.grad = coding, int(kernel), grad
        self.quantized = bool(quantized)
        self.in_gain = 1.0 / input_max if encoding == "direct" else 1.0
        self.weight = nn.ParameterList()
        self.bias = nn.ParameterList()
        self.threshold = nn.ParameterList()
        self.v_init = nn.ParameterList()
        self.h = nn.ParameterList()
        for n_in, n_out in zip(self.sizes[:-1], self.sizes[1:]):
            bound = init_gain * math.sqrt(3.0 / n_in)
            self.weight.append(nn.Parameter(torch.empty(n_out, n_in).uniform_(-bound, bound)))
            self.bias.append(nn.Parameter(torch.zeros(n_out)))
            self.threshold.append(nn.Parameter(torch.full((n_out,), float(threshold_init))))
            # starting halfway to threshold turns truncation into rounding for rate codes
            self.v_init.append(nn.Parameter(torch.full((n_out,), 0.5 * threshold_init)))
            if self.kernel > 1:
                h0 = torch.zeros(self.kernel)
                h0[0] = 1.0
                self.h.append(nn.Parameter(h0))

    @property
    def has_kernel(self) -> bool:
        return self.kernel > 1

    # -- parameters ------------------------------------------------------------------------------

    def layer_params(self, quantized: bool | None = None):
        """Per layer ``(W, b, theta, v_init, h, scale, h_scale)``: float (scales 1) or
        integer-valued (STE). ``h`` is None (and ``h_scale`` 1) without a learned kernel."""
        quantized = self.quantized if quantized is None else quantized
        out = []
        for i in range(len(self.weight)):
            w = self.weight[i] * self.in_gain if i == 0 else self.weight[i]
            b, th, v0 = self.bias[i], self.threshold[i], self.v_init[i]
            h = self.h[i] if self.has_kernel else None
            if quantized and h is not None:
                out.append(quantize_stcb_layer(w, b, th, v0, h, self.weight_bits))
            elif quantized:
                out.append(_with_h(quantize_layer(w, b, th, v0, self.weight_bits)))
            else:
                out.append((w, b, th.clamp(min=1e-3), v0, h, 1.0, 1.0))
        return out

    def integer_layers(self):
        """The quantized integer parameters as int64 numpy arrays: list of dicts (``weight``,
        ``bias``, ``threshold``, ``v_init``, ``h`` (``[1]`` without a kernel), ``scale`` (weights and
        bias), ``h_scale`` (taps; theta and v_init are in units of ``scale * h_scale``))."""
        with torch.no_grad():
            layers = []
            for w, b, th, v0, h, scale, h_scale in self.layer_params(quantized=True):
                layers.append({"weight": _to_int(w), "bias": _to_int(b), "threshold": _to_int(th),
                               "v_init": _to_int(v0),
                               "h": np.ones(1, dtype=np.int64) if h is None else _to_int(h),
                               "scale": scale, "h_scale": h_scale})
        return layers

    # -- forward ---------------------------------------------------------------------------------

    def forward(self, x_in: torch.Tensor, quantized: bool | None = None) -> Forward:
        params = [p[:5] for p in self.layer_params(quantized)]
        return run_layers(params, x_in, T=self.T, encoding=self.encoding, readout=self.readout,
                          surrogate=self.surrogate, grad=self.grad)

    @torch.no_grad()
    def quantized_eval(self, x, dtype: torch.dtype = torch.float32, batch_size: int = 1024) -> dict:
        """Exact quantized forward on integer inputs ``x`` (B, n_in): the net's own quantized
        parameters (the very tensors the training forward uses), cast to ``dtype``.

        Returns numpy arrays in integer units: ``spikes`` (list of (B, T, n) uint8), ``v_final``
        (list of (B, n) int64), ``counts``, ``membranes``, ``predictions``, ``input_spikes``.
        """
        params = [tuple(None if t is None else t.to(dtype) for t in p[:5])
                  for p in self.layer_params(quantized=True)]
        return _batched_eval(params, x, T=self.T, encoding=self.encoding, input_max=self.input_max,
                             readout=self.readout, surrogate=self.surrogate, dtype=dtype,
                             batch_size=batch_size)


def _with_h(q):
    """``quantize_layer``'s ``(W, b, theta, v0, scale)`` -> ``(W, b, theta, v0, None, scale, 1.0)``."""
    w, b, th, v0, scale = q
    return w, b, th, v0, None, scale, 1.0


def _to_int(t: torch.Tensor) -> np.ndarray:
    a = t.detach().to(torch.float64).cpu().numpy()
    r = np.rint(a)
    if not np.array_equal(a, r):
        raise AssertionError("quantized parameter is not integer-valued")
    return r.astype(np.int64)


def _as_int64(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.float64).cpu().numpy().astype(np.int64)


def _batched_eval(params, x, *, T, encoding, input_max, readout, surrogate, dtype, batch_size) -> dict:
    x = np.asarray(x)
    n_layers = len(params)
    parts = {"spikes": [[] for _ in range(n_layers)], "v_final": [[] for _ in range(n_layers)],
             "counts": [], "membranes": [], "predictions": [], "input_spikes": []}
    for lo in range(0, max(len(x), 1), batch_size):
        xb = torch.as_tensor(x[lo:lo + batch_size], dtype=dtype)
        x_in = encode_inputs(xb, encoding, input_max, T)
        f = run_layers(params, x_in, T=T, encoding=encoding, readout=readout, surrogate=surrogate)
        for i in range(n_layers):
            parts["spikes"][i].append(f.spikes[i].to(torch.uint8).numpy())
            parts["v_final"][i].append(_as_int64(f.v_final[i]))
        parts["counts"].append(_as_int64(f.counts))
        parts["membranes"].append(_as_int64(f.v_final[-1]))
        parts["predictions"].append(f.predictions.numpy().astype(np.int64))
        if encoding == "rate":
            parts["input_spikes"].append(x_in.to(torch.uint8).numpy())
    out = {k: [np.concatenate(p) for p in v] if k in ("spikes", "v_final") else
           (np.concatenate(v) if v else None) for k, v in parts.items()}
    return out
