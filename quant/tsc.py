"""TSC (temporal switch coding): the quantized ANN that a TSC network computes exactly (dense,
conv2d and maxpool2d layers).

A TSC layer over one window ends with ``V = b + W a_prev`` and sends
``a = clamp(floor(V / theta), 0, Q)`` (``Q = T - 1``) as one ON/OFF event pair; the last layer's
``V`` is the output (membrane readout). So the whole network is the integer ANN

    q0  = (x * Q + input_max // 2) // input_max
    a_l = clamp(floor((W_l a_{l-1} + b_l) / theta_l), 0, Q)        (hidden dense / conv2d layers)
    a_l = max over each K x K window of a_{l-1}                      (maxpool2d)
    V   = W_L a_{L-1} + b_L                                          (prediction = argmax V)

(for conv2d, ``W a`` is the zero-padded convolution and ``b``, ``theta`` are per output channel)
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

from dataclasses import dataclass

import numpy as np
import torch

from .qnet import QLayer, QuantNet, as_int64, concat_batches, pool, synapse

__all__ = ["TSCNet", "TSCMLP", "TSCForward", "floor_div", "floor_div_ste", "tsc_encode", "run_tsc_layers",
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
    activations: list          # per layer but the last (B, n) in [0, Q] (maxpool2d: the window max)
    v_final: list              # per layer (B, n): V = W a + b; None for maxpool2d
    counts: torch.Tensor       # (B, n_out) zeros (membrane readout)
    logits: torch.Tensor       # (B, n_out) training logits
    predictions: torch.Tensor  # (B,) argmax V, ties to the lowest index


def run_tsc_layers(layers, a_in: torch.Tensor, *, Q: int, quantized: bool) -> TSCForward:
    """Run the TSC ANN given its layers in order (:class:`~quant.qnet.QLayer`, or callables
    ``input -> QLayer`` for BN with batch statistics) and layer 0's inputs ``a_in`` (B, n_in),
    flattened (c, y, x)."""
    acts, v_final = [], []
    B = a_in.shape[0]
    h = a_in.reshape((B,) + tuple(layers[0].spec.in_shape))
    n_layers = len(layers)
    th_last = None
    for i, layer in enumerate(layers):
        spec = layer.spec
        if spec.kind == "maxpool2d":
            h = pool(h, spec)
            acts.append(h.reshape(B, -1))
            v_final.append(None)
            continue
        q = layer if isinstance(layer, QLayer) else layer(h)
        z = synapse(h, spec, q.weight) + q.per_channel(q.bias)
        v_final.append(z.reshape(B, -1))
        if i == n_layers - 1:
            th_last = q.threshold
            break
        th = q.per_channel(q.threshold)
        u = floor_div_ste(z, th) if quantized else z / th
        h = torch.clamp(u, 0.0, float(Q))
        acts.append(h.reshape(B, -1))
    v = v_final[-1]
    # the last layer never clips; its (learnable) threshold only serves as the logit scale
    logits = v / th_last.mean()
    with torch.no_grad():
        pred = torch.argmax(v.detach(), dim=1)  # first maximal index, like golden
    return TSCForward(a_in, acts, v_final, torch.zeros_like(v.detach()), logits, pred)


# ----------------------------------------------------------------------------------------------
# the network
# ----------------------------------------------------------------------------------------------

class TSCNet(QuantNet):
    """Dense / conv2d layers with the clipped (floor) ReLU of ``Q = T - 1`` levels and maxpool2d
    layers, per-neuron (per-channel for conv2d) learnable thresholds and biases; quantization-aware
    or float. ``per_channel`` and ``bn``: see :class:`~quant.qnet.QuantNet`.

    Same interface as :class:`quant.net.SpikingNet` (``layers``, ``integer_layers``, ``forward``,
    ``quantized_eval``) so the trainer, export and exactness check treat both alike.
    Hidden biases (BN: ``beta``) start at ``theta / 2`` (turns the floor into rounding at
    initialisation).
    """

    coding = "tsc"

    def __init__(self, specs, *, T: int, input_max: int, weight_bits: int, quantized: bool = True,
                 init_gain: float = 1.0, threshold_init: float = 1.0, encoding: str = "tsc",
                 readout: str = "membrane", surrogate: str = "arctan", per_channel: bool = False,
                 bn: bool = False):
        if encoding != "tsc" or readout != "membrane":
            raise ValueError("tsc needs encoding 'tsc' and readout 'membrane'")
        if T < 2 or T - 1 > input_max:
            raise ValueError(f"tsc needs 2 <= T <= input_max + 1, got T={T}, input_max={input_max}")
        super().__init__(specs, weight_bits=weight_bits, quantized=quantized, per_channel=per_channel, bn=bn,
                         init_gain=init_gain, threshold_init=threshold_init, has_v_init=False, hidden_bias=0.5)
        self.T, self.Q, self.input_max = int(T), int(T) - 1, int(input_max)
        self.encoding, self.readout, self.surrogate = "tsc", "membrane", surrogate
        self.reset, self.leak = "subtract", None

    def integer_layers(self):
        """The quantized integers (see :meth:`QuantNet.integer_layers`). ``v_init`` is 0 (a TSC window
        starts from V = b); the last layer's threshold is exported as 1: it never clips (membrane
        readout), so golden ignores it, and 1 keeps it out of the width analysis."""
        layers = super().integer_layers()
        last = layers[-1]
        last["threshold"] = np.ones(last["weight"].shape[0], dtype=np.int64)
        return layers

    # -- forward ---------------------------------------------------------------------------------

    def forward(self, x: torch.Tensor, quantized: bool | None = None) -> TSCForward:
        """``x``: the raw integer-valued inputs (B, n_in); the input quantization is part of the net."""
        quantized = self.quantized if quantized is None else quantized
        a_in = tsc_encode(x, self.input_max, self.Q, quantized=quantized)
        return run_tsc_layers(self.layers(quantized, lazy=True), a_in, Q=self.Q, quantized=quantized)

    @torch.no_grad()
    def quantized_eval(self, x, dtype: torch.dtype = torch.float32, batch_size: int = 1024) -> dict:
        """Exact quantized forward with the net's own quantized parameters, cast to ``dtype``."""
        was = self.training
        self.eval()
        try:
            layers = [q.cast(dtype) for q in self.layers(quantized=True)]
        finally:
            self.train(was)
        return tsc_batched_eval(layers, x, Q=self.Q, input_max=self.input_max, dtype=dtype,
                                batch_size=batch_size)


class TSCMLP(TSCNet):
    """:class:`TSCNet` with dense layers ``sizes[0] -> ... -> sizes[-1]``."""

    def __init__(self, sizes, **kw):
        from .net import dense_specs
        super().__init__(dense_specs(sizes), **kw)
        self.sizes = [int(s) for s in sizes]


def tsc_batched_eval(layers, x, *, Q: int, input_max: int, dtype, batch_size: int = 1024) -> dict:
    """Exact evaluation on integer inputs ``x`` (B, n_in). Returns numpy arrays in integer units:
    ``inputs`` (B, n_in) q0, ``activations`` (list per layer but the last, (B, n)), ``v_final``
    (list per layer; None for maxpool2d), ``counts`` (zeros), ``membranes``, ``predictions`` (all
    int64); ``spikes`` and ``input_spikes`` are None (no spike trains in TSC)."""
    x = np.asarray(x)
    n_layers = len(layers)
    parts = {"inputs": [], "activations": [[] for _ in range(n_layers - 1)],
             "v_final": [[] for _ in range(n_layers)], "counts": [], "membranes": [], "predictions": []}
    prec = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")   # no reduced-precision matmuls: the sums must be exact
    try:
        for lo in range(0, max(len(x), 1), batch_size):
            xb = torch.as_tensor(x[lo:lo + batch_size], dtype=dtype)
            f = run_tsc_layers(layers, tsc_encode(xb, input_max, Q, quantized=True), Q=Q, quantized=True)
            parts["inputs"].append(as_int64(f.inputs))
            for i in range(n_layers):
                parts["v_final"][i].append(None if f.v_final[i] is None else as_int64(f.v_final[i]))
                if i < n_layers - 1:
                    parts["activations"][i].append(as_int64(f.activations[i]))
            parts["counts"].append(as_int64(f.counts))
            parts["membranes"].append(as_int64(f.v_final[-1]))
            parts["predictions"].append(f.predictions.numpy().astype(np.int64))
    finally:
        torch.set_float32_matmul_precision(prec)
    out = concat_batches(parts, per_layer=("activations",))
    out["spikes"] = None
    out["input_spikes"] = None
    return out
