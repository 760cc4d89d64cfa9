"""The spiking network (dense, conv2d and maxpool2d layers; rate or STCB), trained as a float
reference or quantization-aware, and its exact eval forward.

One forward function (:func:`run_layers`) serves three purposes:

* float training / evaluation of the reference network,
* quantization-aware training (integer-valued parameters with straight-through gradients),
* the exact quantized evaluation that is compared bit for bit with golden (no gradients,
  integer-valued float32 tensors, or float64 when the model's widths exceed 24 bits).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from .arch import DenseSpec
from .layers import (GRADS, MAX_LEAK_SHIFT, RESETS, apply_kernel, if_layer, kernel_gain, rate_encode, round_ste,
                     select_prediction, stl_layer)
from .qnet import QLayer, QuantNet, as_int64, concat_batches, pool, synapse, time_synapse

__all__ = ["SpikingNet", "SpikingMLP", "Forward", "run_layers", "exact_dtype", "tsc_exact_bits", "stcb_exact_bits",
           "leak_exact_bits", "encode_inputs", "dense_specs", "FLOAT32_EXACT_BITS", "MAX_KERNEL"]

# golden.Dense accepts 1..16 taps
MAX_KERNEL = 16

# float32 has a 24-bit significand: every integer of magnitude <= 2**24 is exact.
FLOAT32_EXACT_BITS = 24

@dataclass
class Forward:
    """Outputs of one forward pass (tensors; integer-valued in quantized mode)."""

    spikes: list          # per layer (B, T, n) 0/1, n = the layer's flattened (c, y, x) output
    v_final: list         # per layer (B, n); None for maxpool2d layers (no neurons)
    counts: torch.Tensor  # (B, n_out) last-layer spike counts
    logits: torch.Tensor  # (B, n_out) training logits
    predictions: torch.Tensor  # (B,) golden's readout rule


def encode_inputs(x: torch.Tensor, encoding: str, input_max: int, T: int) -> torch.Tensor:
    """Integer-valued inputs (B, n_in) -> what layer 0 consumes: rate spikes (B, T, n_in) or x.

    ``tsc``: x itself; :class:`quant.tsc.TSCNet` quantizes its inputs (q0) inside its forward."""
    if encoding == "rate":
        return rate_encode(x, input_max, T)
    return x


def dense_specs(sizes: Sequence[int]) -> list[DenseSpec]:
    """``[n_in, h1, ..., n_out]`` as dense layer specs (the MLP of ``--hidden``)."""
    sizes = [int(s) for s in sizes]
    return [DenseSpec(a, b, (a,)) for a, b in zip(sizes[:-1], sizes[1:])]


def _resolve(layer, x_in):
    """A QLayer, or a lazy one that needs its input (BN batch statistics)."""
    return layer if isinstance(layer, QLayer) else layer(x_in)


def run_layers(layers, x_in: torch.Tensor, *, T: int, encoding: str, readout: str, surrogate: str,
               grad: str = "bptt") -> Forward:
    """Run the spiking network given its layers in order (:class:`~quant.qnet.QLayer`, or callables
    ``input -> QLayer`` for BN with batch statistics, see :meth:`QuantNet.layers`).

    ``x_in`` is the encoder output: (B, T, n_in) spikes (rate) or (B, n_in) values (direct, the same
    current every step), flattened (c, y, x). Layer by layer over all T steps equals step by step
    (feed-forward). A conv2d neuron gets ``b[o] + sum W[o,c,ky,kx] s[c, y*S+ky-p, x*S+kx-p]``
    (zero padding); maxpool2d emits the OR of its window's spikes (the max of 0/1).

    ``grad="stl"`` changes only the backward pass (:func:`quant.layers.stl_layer`; a max-pool passes
    the count gradient to its window's largest input count); the forward values are the same
    numbers as with ``"bptt"``. Without autograd (evaluation) both are the BPTT code path.
    """
    if grad not in GRADS:
        raise ValueError(f"unknown grad {grad!r}; choose from {', '.join(GRADS)}")
    stl = grad == "stl" and torch.is_grad_enabled()
    direct = encoding == "direct"
    B = x_in.shape[0]
    first = layers[0].spec
    if direct and first.kind == "maxpool2d":
        raise ValueError("direct encoding feeds integers to layer 0, which must be a dense or conv2d layer")
    h_in = x_in.reshape(((B,) if direct else (B, T)) + tuple(first.in_shape))
    spikes, v_final = [], []
    c_in = None           # STL: the input counts, carrying the count gradient
    counts, th_last = None, None
    n_layers = len(layers)
    for i, layer in enumerate(layers):
        spec = layer.spec
        if spec.kind == "maxpool2d":
            s = pool(h_in, spec)
            if stl and c_in is not None and c_in.requires_grad:
                pc = pool(c_in, spec)
                c_in = s.sum(dim=1) + (pc - pc.detach())
            elif stl:
                c_in = None
            spikes.append(s.reshape(B, T, -1))
            v_final.append(None)
            h_in = s
            continue
        q = _resolve(layer, h_in)
        if i == 0 and direct:
            cur = synapse(h_in, spec, q.weight) + q.per_channel(q.bias)
            cur = cur.unsqueeze(1).expand((B, T) + tuple(cur.shape[1:]))
        else:
            cur = time_synapse(h_in, spec, q.weight) + q.per_channel(q.bias)
        cur = apply_kernel(cur, q.h)
        fire = not (i == n_layers - 1 and readout == "membrane")
        th, v0 = q.per_channel(q.threshold), q.per_channel(q.v_init)
        if stl:
            w_det = q.weight.detach()
            s, counts, v = stl_layer(cur, th, v0, fire=fire, counts_in=c_in, gain=kernel_gain(q.h, T),
                                     synapse=lambda c, spec=spec, w=w_det: synapse(c, spec, w))
            c_in = counts
        else:
            s, v = if_layer(cur, th, v0, fire=fire, surrogate=surrogate, reset=q.reset, leak=q.leak)
        spikes.append(s.reshape(B, T, -1))
        v_final.append(v.reshape(B, -1))
        h_in = s
        th_last = q.threshold
    v = v_final[-1]
    if not stl:
        counts = spikes[-1].sum(dim=1)
    counts = counts.reshape(B, -1)
    if readout == "count":
        # a differentiable stand-in for the lexicographic (count, V) readout
        logits = counts + v / th_last
    else:
        # the last layer never fires; its (learnable) threshold only serves as the logit scale
        logits = v / th_last.mean()
    with torch.no_grad():
        pred = select_prediction(counts.detach(), v.detach(), readout)
    return Forward(spikes, v_final, counts, logits, pred)


def _neuron_layers(model):
    """(index, layer) of the golden model's layers that have weights (not maxpool2d)."""
    return [(i, l) for i, l in enumerate(model.layers) if getattr(l, "kind", "dense") != "maxpool2d"]


def _weight_rows(l) -> np.ndarray:
    """A dense or conv weight as (n_out or Co, fan_in): each row bounds one output channel's sums."""
    return l.weight.reshape(l.weight.shape[0], -1)


def exact_dtype(model) -> torch.dtype:
    """float32 when every accumulator and membrane of the golden ``model`` fits in 24 bits (so all
    float32 arithmetic on them is exact), else float64 (exact up to 2**53; golden caps widths at 48).

    Beyond golden's widths: the TSC floor division's check products, the STCB kernel's partial sums
    and the leak's product ``V * num`` (before the shift), each bounded by its own function."""
    widths = [w for w in model.widths if w is not None]
    need = max([model.v_bits] + [w.acc_bits for w in widths] + [w.v_bits for w in widths])
    if model.coding == "tsc":
        need = max(need, tsc_exact_bits(model))
    if model.coding == "stcb":
        need = max(need, stcb_exact_bits(model))
    need = max(need, leak_exact_bits(model))
    return torch.float32 if need <= FLOAT32_EXACT_BITS else torch.float64


def leak_exact_bits(model) -> int:
    """Signed width of the leak's product ``V * num`` (the torch forward forms it before dividing by
    ``2**shift``): ``|V|`` is bounded by golden's membrane range of the layer. 1 bit without leaks."""
    from golden.model import signed_bits
    bound = 0
    for i, l in _neuron_layers(model):
        leak = getattr(l, "leak", None)
        if leak is None:
            continue
        w = model.widths[i]
        m = max(abs(int(w.v_lo)), abs(int(w.v_hi)))
        bound = max(bound, m * int(leak[0]))
    return signed_bits(-bound, bound)


def stcb_exact_bits(model) -> int:
    """Signed width of every value the torch kernel forms: each product ``h[k] * I[t-k]`` and each
    partial sum of ``sum_k h[k] I[t-k]`` is bounded by ``sum_k |h[k]| * max|I|``, where ``I`` is the
    pre-kernel current (``b + W s``, its synaptic part bounded as in golden's ``acc``; a conv
    position sums a subset of its channel's weights). Golden's own widths bound the full kernel sum,
    not its partial sums, hence this extra bound. 1 bit for models without kernels."""
    from golden.model import signed_bits
    bound = 0
    for i, l in _neuron_layers(model):
        if not l.has_kernel:
            continue
        smax = model.input_max if (i == 0 and model.encoding == "direct") else 1
        w = _weight_rows(l)
        lo = np.minimum(w, 0).sum(axis=1) * smax + l.bias
        hi = np.maximum(w, 0).sum(axis=1) * smax + l.bias
        m = int(np.abs(l.h).sum()) * np.maximum(np.abs(lo), np.abs(hi))
        bound = max(bound, int(m.max()))
    return signed_bits(-bound, bound)


def tsc_exact_bits(model) -> int:
    """Signed width of every value the TSC torch forward forms: the partial sums of ``W a``
    (``a`` in [0, Q]; dense or conv) lie between ``Q * sum(W-)`` and ``Q * sum(W+)`` of the output
    channel, plus the bias, plus up to ``2 * theta`` in the floor division's check products
    ``q * theta``, ``(q + 1) * theta``."""
    from golden.model import signed_bits
    Q = model.T - 1
    bound = 0
    for _, l in _neuron_layers(model):
        w = _weight_rows(l)
        pos, neg = np.maximum(w, 0).sum(axis=1), -np.minimum(w, 0).sum(axis=1)
        m = Q * np.maximum(pos, neg) + np.abs(l.bias) + 2 * l.threshold
        bound = max(bound, int(m.max()))
    return signed_bits(-bound, bound)


class SpikingNet(QuantNet):
    """IF (or leaky) spiking layers from ``specs`` (dense, conv2d, maxpool2d) with learnable
    thresholds, initial membranes and biases (per neuron for dense, per output channel for conv2d).

    With ``encoding="direct"`` the first layer's weights are parametrised as ``p / input_max`` so
    that raw integer inputs and rate spikes start with comparable currents (the quantizer sees the
    effective weights; the parametrisation only conditions the optimiser).

    ``coding="stcb"``: the same network (it is exported as a golden STCB model); with ``kernel=K > 1``
    every neuron layer also learns a causal temporal kernel ``h`` of K taps, initialised to
    ``[1, 0, ...]`` (the identity), quantized with :func:`quant.layers.quantize_stcb_layer`.
    ``kernel=1`` means ``h = [1]`` fixed: nothing to learn, the network is the rate network.
    ``grad="stl"`` selects the spike-train-level backward (:func:`quant.layers.stl_layer`) instead of
    BPTT; it models IF neurons with reset by subtraction, so it takes neither ``leak`` nor
    ``reset="zero"``.

    ``reset``: ``"subtract"`` or ``"zero"`` for every layer. ``leak``: ``None`` (IF) or ``(num, shift)``
    for every neuron layer, ``V <- (V * num) >> shift`` each step before the current is added.
    ``learn_leak``: each neuron layer learns its own ``num`` (``shift`` fixed, starting from ``leak``):
    a factor ``lambda`` in [0, 1], quantized to ``num = round(lambda * 2**shift)`` with a
    straight-through gradient. ``per_channel`` and ``bn``: see :class:`~quant.qnet.QuantNet`.
    """

    def __init__(self, specs, *, T: int, encoding: str, input_max: int, readout: str, weight_bits: int,
                 surrogate: str = "arctan", quantized: bool = True, init_gain: float = 1.0,
                 threshold_init: float = 1.0, coding: str = "rate", kernel: int = 1, grad: str = "bptt",
                 reset: str = "subtract", leak: tuple | None = None, learn_leak: bool = False,
                 per_channel: bool = False, bn: bool = False):
        if coding not in ("rate", "stcb"):
            raise ValueError(f"SpikingNet trains coding 'rate' or 'stcb', got {coding!r}")
        if not 1 <= kernel <= min(MAX_KERNEL, T):
            raise ValueError(f"kernel must have 1..min(16, T={T}) taps, got {kernel}")
        if kernel > 1 and coding != "stcb":
            raise ValueError(f"a temporal kernel (kernel={kernel}) needs coding 'stcb'")
        if grad not in GRADS:
            raise ValueError(f"unknown grad {grad!r}; choose from {', '.join(GRADS)}")
        if grad == "stl" and coding != "stcb":
            raise ValueError("grad 'stl' needs coding 'stcb'")
        if reset not in RESETS:
            raise ValueError(f"unknown reset {reset!r}; choose from {', '.join(RESETS)}")
        if leak is not None:
            num, shift = (int(v) for v in leak)
            if not (0 <= shift <= MAX_LEAK_SHIFT and 0 <= num <= (1 << shift)):
                raise ValueError(f"leak must be (num, shift) with 0 <= shift <= {MAX_LEAK_SHIFT} and "
                                 f"0 <= num <= 2**shift, got {tuple(leak)}")
            leak = (num, shift)
        if learn_leak and leak is None:
            raise ValueError("learn_leak needs an initial leak (num, shift)")
        if grad == "stl" and (leak is not None or reset != "subtract"):
            raise ValueError("grad 'stl' models IF neurons with reset by subtraction (no leak, reset 'subtract')")
        if encoding == "direct" and specs[0].kind == "maxpool2d":
            raise ValueError("direct encoding needs a dense or conv2d first layer, not maxpool2d")
        super().__init__(specs, weight_bits=weight_bits, quantized=quantized, per_channel=per_channel, bn=bn,
                         init_gain=init_gain, threshold_init=threshold_init,
                         in_gain=1.0 / input_max if encoding == "direct" else 1.0, has_v_init=True)
        self.T, self.encoding, self.input_max = int(T), encoding, int(input_max)
        self.readout, self.surrogate = readout, surrogate
        self.coding, self.kernel, self.grad = coding, int(kernel), grad
        self.reset, self.leak, self.learn_leak = reset, leak, bool(learn_leak)
        self.h = nn.ParameterList()
        self.leak_factor = nn.ParameterList()
        for j in range(self.n_neuron_layers):
            if self.kernel > 1:
                h0 = torch.zeros(self.kernel)
                h0[0] = 1.0
                self.h.append(nn.Parameter(h0))
            if self.learn_leak:
                self.leak_factor.append(nn.Parameter(torch.tensor(leak[0] / float(1 << leak[1]))))

    @property
    def has_kernel(self) -> bool:
        return self.kernel > 1

    def _kernel(self, j: int):
        return self.h[j] if self.has_kernel else None

    def _neuron_options(self, j: int, quantized: bool) -> dict:
        if self.leak is None:
            return {"reset": self.reset, "leak": None}
        num, shift = self.leak
        one = float(1 << shift)
        if self.learn_leak:
            lam = self.leak_factor[j].clamp(0.0, 1.0)
            num = torch.clamp(round_ste(lam * one), 0.0, one) if quantized else lam * one
        return {"reset": self.reset, "leak": (num if self.learn_leak else float(num), shift, quantized)}

    # -- forward ---------------------------------------------------------------------------------

    def forward(self, x_in: torch.Tensor, quantized: bool | None = None) -> Forward:
        return run_layers(self.layers(quantized, lazy=True), x_in, T=self.T, encoding=self.encoding,
                          readout=self.readout, surrogate=self.surrogate, grad=self.grad)

    @torch.no_grad()
    def quantized_eval(self, x, dtype: torch.dtype = torch.float32, batch_size: int = 1024) -> dict:
        """Exact quantized forward on integer inputs ``x`` (B, n_in): the net's own quantized
        parameters (the very tensors the training forward uses; BN folded with the running
        statistics), cast to ``dtype``.

        Returns numpy arrays in integer units: ``spikes`` (list of (B, T, n) uint8, one per layer,
        pools included), ``v_final`` (list of (B, n) int64; None for pools), ``counts``,
        ``membranes``, ``predictions``, ``input_spikes``.
        """
        was = self.training
        self.eval()
        try:
            layers = [q.cast(dtype) for q in self.layers(quantized=True)]
        finally:
            self.train(was)
        return _batched_eval(layers, x, T=self.T, encoding=self.encoding, input_max=self.input_max,
                             readout=self.readout, surrogate=self.surrogate, dtype=dtype,
                             batch_size=batch_size)


class SpikingMLP(SpikingNet):
    """:class:`SpikingNet` with dense layers ``sizes[0] -> sizes[1] -> ... -> sizes[-1]``."""

    def __init__(self, sizes, **kw):
        super().__init__(dense_specs(sizes), **kw)
        self.sizes = [int(s) for s in sizes]


def _batched_eval(layers, x, *, T, encoding, input_max, readout, surrogate, dtype, batch_size) -> dict:
    x = np.asarray(x)
    n_layers = len(layers)
    parts = {"spikes": [[] for _ in range(n_layers)], "v_final": [[] for _ in range(n_layers)],
             "counts": [], "membranes": [], "predictions": [], "input_spikes": []}
    prec = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")   # no reduced-precision matmuls: the sums must be exact
    try:
        for lo in range(0, max(len(x), 1), batch_size):
            xb = torch.as_tensor(x[lo:lo + batch_size], dtype=dtype)
            x_in = encode_inputs(xb, encoding, input_max, T)
            f = run_layers(layers, x_in, T=T, encoding=encoding, readout=readout, surrogate=surrogate)
            for i in range(n_layers):
                parts["spikes"][i].append(f.spikes[i].to(torch.uint8).numpy())
                parts["v_final"][i].append(None if f.v_final[i] is None else as_int64(f.v_final[i]))
            parts["counts"].append(as_int64(f.counts))
            parts["membranes"].append(as_int64(f.v_final[-1]))
            parts["predictions"].append(f.predictions.numpy().astype(np.int64))
            if encoding == "rate":
                parts["input_spikes"].append(x_in.to(torch.uint8).numpy())
    finally:
        torch.set_float32_matmul_precision(prec)
    return concat_batches(parts, per_layer=("spikes",))
