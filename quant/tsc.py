"""TSC (temporal switch coding): the quantized ANN that a TSC network computes exactly.

A TSC layer over one window ends with ``V = b + W a_prev`` and sends
``a = clamp(floor(V / theta), 0, Q)`` (``Q = T - 1``) as one ON/OFF event pair; the last layer's
``V`` is the output (membrane readout). So the whole network is the integer ANN

    q0  = (x * Q + input_max // 2) // input_max
    a_l = clamp(floor((W_l a_{l-1} + b_l) / theta_l), 0, Q)        (hidden layers)
    V   = W_L a_{L-1} + b_L                                          (prediction = argmax V)

and training it is quantization-aware training of a clipped-floor ReLU with ``Q`` levels:

* **quantized** (the network that is exported): weights, biases and thresholds of a layer on one
  power-of-two scale (:func:`quant.layers.quantize_layer`, round with a straight-through
  estimator). The scale cancels out of ``(W a + b) / theta``, so the forward runs in integer
  units: integer-valued tensors, an exact floor division (:func:`floor_div`) and the clamp. The
  floor uses a straight-through estimator (:class:`_FloorDivSTE`: forward ``floor(z / theta)``,
  backward the gradient of ``z / theta``, also into the learnable per-neuron ``theta``).
* **float** (the reference): the same architecture with the clipped ReLU
  ``clamp(z / theta, 0, Q)`` on the unquantized inputs ``x * Q / input_max``.

The same functions serve training (float32, with gradients) and the exact evaluation that is
compared with golden (no gradients, float32 or float64; see :func:`quant.net.exact_dtype`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .layers import quantize_layer

__all__ = ["TSCMLP", "TSCForward", "floor_div", "floor_div_ste", "tsc_encode", "run_tsc_layers",
           "tsc_batched_eval"]


# ----------------------------------------------------------------------------------------------
# exact floor division with a straight-through gradient
# ----------------------------------------------------------------------------------------------

def floor_div(z: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """``floor(z / theta)`` for integer-valued float tensors (``theta >= 1``), exact whenever
    ``|z| + 2 * theta`` is exactly representable (below 2**24 in float32, 2**53 in float64).

    ``torch.div(..., rounding_mode="floor")`` is already exact for such operands (fmod-based);
    the two comparisons below make that independent of the implementation: afterwards
    ``q * theta <= z < (q + 1) * theta`` holds with exact products.
    """
    q = torch.div(z, theta, rounding_mode="floor")
    q = q - (q * theta > z).to(z.dtype)
    q = q + ((q + 1) * theta <= z).to(z.dtype)
    return q


class _FloorDivSTE(torch.autograd.Function):
    """Forward ``floor(z / theta)`` (exact); backward the gradient of ``z / theta``."""

    @staticmethod
    def forward(ctx, z, theta):
        ctx.save_for_backward(z, theta)
        return floor_div(z, theta)

    @staticmethod
    def backward(ctx, g):
        z, theta = ctx.saved_tensors
        gz = g / theta
        gt = (-g * z / (theta * theta)).sum_to_size(theta.shape)
        return gz, gt


def floor_div_ste(z: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    return _FloorDivSTE.apply(z, theta)


# ----------------------------------------------------------------------------------------------
# input encoding and the forward
# ----------------------------------------------------------------------------------------------

def tsc_encode(x: torch.Tensor, input_max: int, Q: int, *, quantized: bool) -> torch.Tensor:
    """Integer-valued inputs ``x`` (B, n_in) -> layer 0's input values.

    quantized: golden's ``q = (x * Q + input_max // 2) // input_max`` (computed in float64, exact for
    every input_max < 2**16, then cast back); float: ``x * Q / input_max`` (no quantization).
    """
    if not quantized:
        return x * (Q / input_max)
    q = torch.div(x.to(torch.float64) * Q + input_max // 2, input_max, rounding_mode="floor")
    return q.to(x.dtype)


@dataclass
class TSCForward:
    """Outputs of one TSC forward pass (integer-valued tensors in quantized mode)."""

    inputs: torch.Tensor       # (B, n_in) layer 0's input values (q0)
    activations: list          # per hidden layer (B, n) in [0, Q]
    v_final: list              # per layer (B, n): V = W a + b
    counts: torch.Tensor       # (B, n_out) zeros (membrane readout)
    logits: torch.Tensor       # (B, n_out) training logits
    predictions: torch.Tensor  # (B,) argmax V, ties to the lowest index


def run_tsc_layers(params, a_in: torch.Tensor, *, Q: int, quantized: bool) -> TSCForward:
    """Run the TSC ANN given per-layer ``(W, b, theta)`` and layer 0's inputs ``a_in``."""
    acts, v_final = [], []
    h = a_in
    n_layers = len(params)
    for i, (w, b, th) in enumerate(params):
        z = h @ w.T + b
        v_final.append(z)
        if i == n_layers - 1:
            break
        u = floor_div_ste(z, th) if quantized else z / th
        h = torch.clamp(u, 0.0, float(Q))
        acts.append(h)
    v = v_final[-1]
    # the last layer never clips; its (learnable) threshold only serves as the logit scale
    logits = v / params[-1][2].mean()
    with torch.no_grad():
        pred = torch.argmax(v.detach(), dim=1)  # first maximal index, like golden
    return TSCForward(a_in, acts, v_final, torch.zeros_like(v.detach()), logits, pred)


# ----------------------------------------------------------------------------------------------
# the network
# ----------------------------------------------------------------------------------------------

class TSCMLP(nn.Module):
    """Dense layers ``sizes[0] -> ... -> sizes[-1]`` with the clipped (floor) ReLU of ``Q = T - 1``
    levels, per-neuron learnable thresholds and biases; quantization-aware or float.

    Same interface as :class:`quant.net.SpikingMLP` (``layer_params``, ``integer_layers``,
    ``forward``, ``quantized_eval``) so the trainer, export and exactness check treat both alike.
    Hidden biases start at ``theta / 2`` (turns the floor into rounding at initialisation).
    """

    coding = "tsc"

    def __init__(self, sizes, *, T: int, input_max: int, weight_bits: int, quantized: bool = True,
                 init_gain: float = 1.0, threshold_init: float = 1.0, encoding: str = "tsc",
                 readout: str = "membrane", surrogate: str = "arctan"):
        super().__init__()
        if encoding != "tsc" or readout != "membrane":
            raise ValueError("tsc needs encoding 'tsc' and readout 'membrane'")
        if T < 2 or T - 1 > input_max:
            raise ValueError(f"tsc needs 2 <= T <= input_max + 1, got T={T}, input_max={input_max}")
        self.sizes = [int(s) for s in sizes]
        self.T, self.Q, self.input_max = int(T), int(T) - 1, int(input_max)
        self.encoding, self.readout, self.surrogate = "tsc", "membrane", surrogate
        self.weight_bits, self.quantized = int(weight_bits), bool(quantized)
        self.weight = nn.ParameterList()
        self.bias = nn.ParameterList()
        self.threshold = nn.ParameterList()
        n_layers = len(self.sizes) - 1
        for i, (n_in, n_out) in enumerate(zip(self.sizes[:-1], self.sizes[1:])):
            bound = init_gain * math.sqrt(3.0 / n_in)
            self.weight.append(nn.Parameter(torch.empty(n_out, n_in).uniform_(-bound, bound)))
            b0 = 0.0 if i == n_layers - 1 else 0.5 * threshold_init
            self.bias.append(nn.Parameter(torch.full((n_out,), b0)))
            self.threshold.append(nn.Parameter(torch.full((n_out,), float(threshold_init))))

    # -- parameters ------------------------------------------------------------------------------

    def layer_params(self, quantized: bool | None = None):
        """Per layer ``(W, b, theta, scale)``: float (scale 1) or integer-valued (STE)."""
        quantized = self.quantized if quantized is None else quantized
        out = []
        for w, b, th in zip(self.weight, self.bias, self.threshold):
            if quantized:
                W, B, TH, _, s = quantize_layer(w, b, th, torch.zeros_like(b), self.weight_bits)
                out.append((W, B, TH, s))
            else:
                out.append((w, b, th.clamp(min=1e-3), 1.0))
        return out

    def integer_layers(self):
        """The quantized integers as int64 numpy arrays (list of dicts with ``scale``). ``v_init`` is
        0 (a TSC window starts from V = b); the last layer's threshold is exported as 1: it never
        clips (membrane readout), so golden ignores it, and 1 keeps it out of the width analysis."""
        from .net import _to_int
        with torch.no_grad():
            params = self.layer_params(quantized=True)
            layers = []
            for i, (w, b, th, scale) in enumerate(params):
                th_i = np.ones(w.shape[0], dtype=np.int64) if i == len(params) - 1 else _to_int(th)
                layers.append({"weight": _to_int(w), "bias": _to_int(b), "threshold": th_i,
                               "v_init": np.zeros(w.shape[0], dtype=np.int64), "scale": scale})
        return layers

    # -- forward ---------------------------------------------------------------------------------

    def forward(self, x: torch.Tensor, quantized: bool | None = None) -> TSCForward:
        """``x``: the raw integer-valued inputs (B, n_in); the input quantization is part of the net."""
        quantized = self.quantized if quantized is None else quantized
        params = [p[:3] for p in self.layer_params(quantized)]
        a_in = tsc_encode(x, self.input_max, self.Q, quantized=quantized)
        return run_tsc_layers(params, a_in, Q=self.Q, quantized=quantized)

    @torch.no_grad()
    def quantized_eval(self, x, dtype: torch.dtype = torch.float32, batch_size: int = 1024) -> dict:
        """Exact quantized forward with the net's own quantized parameters, cast to ``dtype``."""
        params = [tuple(t.to(dtype) for t in p[:3]) for p in self.layer_params(quantized=True)]
        return tsc_batched_eval(params, x, Q=self.Q, input_max=self.input_max, dtype=dtype,
                                batch_size=batch_size)


def tsc_batched_eval(params, x, *, Q: int, input_max: int, dtype, batch_size: int = 1024) -> dict:
    """Exact evaluation on integer inputs ``x`` (B, n_in). Returns numpy arrays in integer units:
    ``inputs`` (B, n_in) q0, ``activations`` (list per hidden layer, (B, n)), ``v_final`` (list per
    layer), ``counts`` (zeros), ``membranes``, ``predictions`` (all int64); ``spikes`` and
    ``input_spikes`` are None (no spike trains in TSC)."""
    from .net import _as_int64
    x = np.asarray(x)
    n_layers = len(params)
    parts = {"inputs": [], "activations": [[] for _ in range(n_layers - 1)],
             "v_final": [[] for _ in range(n_layers)], "counts": [], "membranes": [], "predictions": []}
    for lo in range(0, max(len(x), 1), batch_size):
        xb = torch.as_tensor(x[lo:lo + batch_size], dtype=dtype)
        f = run_tsc_layers(params, tsc_encode(xb, input_max, Q, quantized=True), Q=Q, quantized=True)
        parts["inputs"].append(_as_int64(f.inputs))
        for i in range(n_layers):
            parts["v_final"][i].append(_as_int64(f.v_final[i]))
            if i < n_layers - 1:
                parts["activations"][i].append(_as_int64(f.activations[i]))
        parts["counts"].append(_as_int64(f.counts))
        parts["membranes"].append(_as_int64(f.v_final[-1]))
        parts["predictions"].append(f.predictions.numpy().astype(np.int64))
    out = {k: [np.concatenate(p) for p in v] if k in ("activations", "v_final") else np.concatenate(v)
           for k, v in parts.items()}
    out["spikes"] = None
    out["input_spikes"] = None
    return out
