"""What the spiking and the TSC networks share: layers from an ``--arch``, their parameters, folded
BatchNorm, and power-of-two quantization per layer or per output channel.

A network is a list of :class:`~quant.arch.LayerSpec` (dense, conv2d, maxpool2d). Every dense or
conv2d layer (a *neuron layer*) owns a weight, a bias, a per-neuron (dense) or per-output-channel
(conv2d) threshold and, for the spiking codes, an initial membrane; maxpool2d layers own nothing.
Parameter lists are indexed by neuron layer (pools skipped), so a dense-only network has exactly the
parameters (and state-dict keys) of the original MLPs.

:meth:`QuantNet.neuron_layer` turns one neuron layer's parameters into a :class:`QLayer`: float, or
integer-valued with straight-through gradients (QAT), with BatchNorm folded in first. The forward
functions in :mod:`quant.net` and :mod:`quant.tsc` consume ``QLayer`` objects only, so the same code
runs float training, QAT and the exact evaluation that is compared with golden.

**BatchNorm folding.** BN acts on a layer's synaptic current ``r = W s`` (conv2d: per output channel,
over batch, time steps and positions; dense: per neuron) as ``y = gamma (r - mu) / sigma + beta``.
With ``k = gamma / sigma`` this is ``|k| * (sgn(k) r - sgn(k) mu + beta / |k|)``, so a neuron that
integrates ``y`` against threshold ``theta`` and starts from ``v_init`` spikes exactly when one that
integrates the bracket against ``theta / |k|`` from ``v_init / |k|`` does (its membrane is ``V / |k|``
at every step; the leak is linear). The fold therefore puts the *sign* of ``k`` into the weights, the
shift into the bias and the *magnitude* into the threshold and the initial membrane:

    W' = sgn(k) W,   b' = beta / |k| - sgn(k) mu,   theta' = theta / |k|,   v_init' = v_init / |k|

and then quantizes ``(W', b', theta', v_init')`` like any layer. Putting ``|k|`` into the threshold
rather than the weights keeps every channel's weights on their own range, which matters with one
scale per layer. During training (until the statistics freeze) ``mu, sigma`` are the batch
statistics of ``r`` computed with the float weights, and the running statistics are updated; in
evaluation, in the frozen last epochs and at export they are the running statistics. Either way the
forward pass *is* the quantized folded network, so what is trained at the end is what is exported.
The layer's own bias is not used with BN (``beta`` takes its place).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .arch import LayerSpec
from .layers import quantize_layer, quantize_stcb_layer

__all__ = ["QLayer", "QuantNet", "concat_batches", "synapse", "time_synapse", "pool", "BN_EPS", "BN_MOMENTUM", "to_int",
           "as_int64"]

BN_EPS = 1e-5
BN_MOMENTUM = 0.1
# a BN gain |k| below this is treated as this (a dead channel); keeps theta / |k| finite
MIN_BN_GAIN = 1e-6


@dataclass
class QLayer:
    """One layer as the forward functions consume it.

    For neuron layers the tensors are float (reference) or integer-valued (quantized, in each
    channel's integer units); ``weight`` is (n_out, n_in) or (Co, C, K, K), the vectors are
    (n_out,) or (Co,). ``leak`` is ``None`` or ``(num, shift, floor)`` (:func:`quant.layers.apply_leak`).
    ``scale`` is the power of two per layer (float) or per output channel (list).
    """

    spec: LayerSpec
    weight: torch.Tensor | None = None
    bias: torch.Tensor | None = None
    threshold: torch.Tensor | None = None
    v_init: torch.Tensor | None = None
    h: torch.Tensor | None = None
    reset: str = "subtract"
    leak: tuple | None = None
    scale: float | list = 1.0
    h_scale: float = 1.0
    extra: dict = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.spec.kind

    def per_channel(self, t: torch.Tensor) -> torch.Tensor:
        """A per-output-channel vector shaped to broadcast over the layer's output (C, H, W)."""
        return t.view(-1, 1, 1) if self.spec.kind == "conv2d" else t

    def cast(self, dtype: torch.dtype) -> "QLayer":
        """The same layer with every tensor cast to ``dtype`` (exact for integer values)."""
        def c(t):
            return t.to(dtype) if isinstance(t, torch.Tensor) else t
        leak = None if self.leak is None else (c(self.leak[0]), self.leak[1], self.leak[2])
        return QLayer(self.spec, c(self.weight), c(self.bias), c(self.threshold), c(self.v_init), c(self.h),
                      self.reset, leak, self.scale, self.h_scale, dict(self.extra))


def synapse(x: torch.Tensor, spec: LayerSpec, weight: torch.Tensor) -> torch.Tensor:
    """The layer's linear map without bias: (N, *in_shape) -> (N, *out_shape).

    Exact for integer-valued operands while every partial sum is representable: dense is a matmul,
    conv2d is ``F.conv2d`` with zero padding, always a direct convolution (sums of integer products
    are exact in any order). NNPACK is switched off around it: without oneDNN (quant.numerics turns
    it off; some builds lack it) torch picks NNPACK's Winograd convolution for 3x3 kernels, whose
    transforms round."""
    if spec.kind == "dense":
        return x.reshape(x.shape[0], -1) @ weight.T
    if spec.kind == "conv2d":
        with torch.backends.nnpack.flags(enabled=False):
            return F.conv2d(x.reshape((x.shape[0],) + tuple(spec.in_shape)), weight, stride=spec.stride,
                            padding=spec.padding)
    raise ValueError(f"layer kind {spec.kind!r} has no synapses")


def time_synapse(x: torch.Tensor, spec: LayerSpec, weight: torch.Tensor) -> torch.Tensor:
    """:func:`synapse` over (B, T, ...) spike trains: every step at once -> (B, T, *out_shape)."""
    B, T = x.shape[:2]
    y = synapse(x.reshape((B * T,) + tuple(spec.in_shape)), spec, weight)
    return y.reshape((B, T) + tuple(y.shape[1:]))


def pool(x: torch.Tensor, spec: LayerSpec) -> torch.Tensor:
    """Max pooling of (N, C, H, W) (or (B, T, C, H, W)): the OR of 0/1 spikes, the max of TSC values."""
    if x.dim() == 5:
        B, T = x.shape[:2]
        y = F.max_pool2d(x.reshape((B * T,) + tuple(x.shape[2:])), spec.kernel)
        return y.reshape((B, T) + tuple(y.shape[1:]))
    return F.max_pool2d(x.reshape((x.shape[0],) + tuple(spec.in_shape)), spec.kernel)


def to_int(t: torch.Tensor) -> np.ndarray:
    a = t.detach().to(torch.float64).cpu().numpy()
    r = np.rint(a)
    if not np.array_equal(a, r):
        raise AssertionError("quantized parameter is not integer-valued")
    return r.astype(np.int64)


def as_int64(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.float64).cpu().numpy().astype(np.int64)


def concat_batches(parts: dict, per_layer: tuple = ()) -> dict:
    """The per-batch arrays of an integer run joined along the samples: ``v_final`` and the keys in
    ``per_layer`` hold one list of batches per layer (``v_final`` None for a layer without one), every
    other key one list (None if it is empty)."""
    out = {}
    for k, v in parts.items():
        if k == "v_final":
            out[k] = [None if p[0] is None else np.concatenate(p) for p in v]
        elif k in per_layer:
            out[k] = [np.concatenate(p) for p in v]
        else:
            out[k] = np.concatenate(v) if v else None
    return out


class QuantNet(nn.Module):
    """Layers from ``specs`` with parameters, optional BatchNorm and fake quantization.

    Parameters
    ----------
    specs : the layers (:func:`quant.arch.build_arch`); the last one is the dense classifier.
    weight_bits : signed weight width of the export (2..16).
    quantized : QAT (integer-valued forward) or the float reference.
    per_channel : one power-of-two scale per output channel of every hidden neuron layer instead of
        one per layer. The classifier always has one scale: its membranes are compared *across*
        neurons by the readout, so they must share a unit.
    bn : BatchNorm on every hidden neuron layer, folded (see the module docstring).
    in_gain : factor on layer 0's weights (the direct encoding's ``1 / input_max`` conditioning).
    has_v_init : spiking codes learn an initial membrane; TSC starts from V = b.
    hidden_bias : initial bias (or BN ``beta``) of hidden layers, in units of the threshold.
    """

    def __init__(self, specs: Sequence[LayerSpec], *, weight_bits: int, quantized: bool = True,
                 per_channel: bool = False, bn: bool = False, init_gain: float = 1.0,
                 threshold_init: float = 1.0, in_gain: float = 1.0, has_v_init: bool = True,
                 hidden_bias: float = 0.0, v_init_frac: float = 0.5):
        super().__init__()
        self.specs = list(specs)
        if not self.specs or self.specs[-1].kind != "dense":
            raise ValueError("the last layer must be the dense classifier")
        self.weight_bits, self.quantized = int(weight_bits), bool(quantized)
        self.per_channel, self.bn = bool(per_channel), bool(bn)
        self.in_gain = float(in_gain)
        self.bn_frozen = False
        self.neuron_index = [i for i, s in enumerate(self.specs) if s.kind != "maxpool2d"]
        n_neuron = len(self.neuron_index)
        self.weight = nn.ParameterList()
        self.bias = nn.ParameterList()
        self.threshold = nn.ParameterList()
        self.v_init = nn.ParameterList()
        self.bn_gamma = nn.ParameterList()
        self.bn_beta = nn.ParameterList()
        for j, i in enumerate(self.neuron_index):
            spec = self.specs[i]
            last = j == n_neuron - 1
            if spec.kind == "dense":
                shape, n_out = (spec.n_out, spec.n_in), spec.n_out
                fan_in = spec.n_in
            else:
                C = spec.in_shape[0]
                shape, n_out = (spec.channels, C, spec.kernel, spec.kernel), spec.channels
                fan_in = C * spec.kernel * spec.kernel
            bound = init_gain * math.sqrt(3.0 / fan_in)
            self.weight.append(nn.Parameter(torch.empty(shape).uniform_(-bound, bound)))
            use_bn = self.bn and not last
            b0 = 0.0 if (last or use_bn) else hidden_bias * threshold_init
            self.bias.append(nn.Parameter(torch.full((n_out,), float(b0)), requires_grad=not use_bn))
            self.threshold.append(nn.Parameter(torch.full((n_out,), float(threshold_init))))
            if has_v_init:
                # starting halfway to threshold turns truncation into rounding for rate codes
                self.v_init.append(nn.Parameter(torch.full((n_out,), v_init_frac * threshold_init)))
            if use_bn:
                self.bn_gamma.append(nn.Parameter(torch.ones(n_out)))
                self.bn_beta.append(nn.Parameter(torch.full((n_out,), hidden_bias * threshold_init)))
                self.register_buffer(f"bn_mean{j}", torch.zeros(n_out))
                self.register_buffer(f"bn_var{j}", torch.ones(n_out))
        self.has_v_init = bool(has_v_init)

    # -- layers ----------------------------------------------------------------------------------

    @property
    def n_neuron_layers(self) -> int:
        return len(self.neuron_index)

    def has_bn(self, j: int) -> bool:
        return self.bn and j < self.n_neuron_layers - 1

    def _bn_stats(self, j: int, spec: LayerSpec, w: torch.Tensor, x_in: torch.Tensor | None):
        """(mean, var) of the layer's synaptic current: batch statistics (updating the running ones)
        while training with unfrozen statistics and an input is given, else the running ones."""
        mean, var = getattr(self, f"bn_mean{j}"), getattr(self, f"bn_var{j}")
        if not (self.training and not self.bn_frozen and x_in is not None):
            return mean, var
        if x_in.dim() == len(spec.in_shape) + 2:     # (B, T, ...) trains: every step is a sample
            r = time_synapse(x_in, spec, w)
            r = r.reshape((-1,) + tuple(r.shape[2:]))
        else:                                        # (B, ...) values (direct input, TSC)
            r = synapse(x_in, spec, w)
        dims = (0, 2, 3) if spec.kind == "conv2d" else (0,)
        bm = r.mean(dim=dims)
        bv = r.var(dim=dims, unbiased=False)
        with torch.no_grad():
            n = r.numel() // r.shape[1]
            mean.mul_(1 - BN_MOMENTUM).add_(BN_MOMENTUM * bm.detach())
            var.mul_(1 - BN_MOMENTUM).add_(BN_MOMENTUM * bv.detach() * (n / max(n - 1, 1)))
        return bm, bv

    def folded(self, j: int, x_in: torch.Tensor | None = None):
        """Float ``(W, b, theta, v_init)`` of neuron layer ``j`` with BN folded in (no quantization).

        ``x_in``: the layer's input, needed for batch statistics while training with BN."""
        spec = self.specs[self.neuron_index[j]]
        w = self.weight[j] * self.in_gain if j == 0 and self.in_gain != 1.0 else self.weight[j]
        th = self.threshold[j]
        v0 = self.v_init[j] if self.has_v_init else torch.zeros_like(th)
        if not self.has_bn(j):
            return w, self.bias[j], th, v0
        mean, var = self._bn_stats(j, spec, w, x_in)
        # rsqrt, not sqrt: ATen's sqrt of a float tensor is MKL VML's, whose last bit depends on the CPU
        # (quant.numerics); rsqrt is a vector square root and division, exact IEEE operations
        k = self.bn_gamma[j] * torch.rsqrt(var + BN_EPS)
        sgn = torch.where(k >= 0, 1.0, -1.0).to(k.dtype).detach()
        ak = k.abs().clamp(min=MIN_BN_GAIN)
        w = w * sgn.view((-1,) + (1,) * (w.dim() - 1))
        b = self.bn_beta[j] / ak - sgn * mean
        return w, b, th / ak, v0 / ak

    def neuron_layer(self, j: int, x_in: torch.Tensor | None = None, quantized: bool | None = None) -> QLayer:
        """Neuron layer ``j`` as a :class:`QLayer`: float, or quantized with straight-through gradients
        (one scale per layer; per output channel for hidden layers with ``per_channel``)."""
        quantized = self.quantized if quantized is None else quantized
        spec = self.specs[self.neuron_index[j]]
        w, b, th, v0 = self.folded(j, x_in)
        h = self._kernel(j)
        last = j == self.n_neuron_layers - 1
        pc = self.per_channel and not last
        if quantized and h is not None:
            w, b, th, v0, h, scale, h_scale = quantize_stcb_layer(w, b, th, v0, h, self.weight_bits, per_channel=pc)
        elif quantized:
            w, b, th, v0, scale = quantize_layer(w, b, th, v0, self.weight_bits, per_channel=pc)
            h_scale = 1.0
        else:
            th = th.clamp(min=1e-3)
            scale, h_scale = 1.0, 1.0
        return QLayer(spec, w, b, th, v0 if self.has_v_init else None, h, scale=scale, h_scale=h_scale,
                      **self._neuron_options(j, quantized))

    def _kernel(self, j: int):
        """The STCB temporal kernel of neuron layer ``j`` (None: identity); overridden by SpikingNet."""
        return None

    def _neuron_options(self, j: int, quantized: bool) -> dict:
        """Reset and leak of neuron layer ``j`` (QLayer keyword arguments); overridden by SpikingNet."""
        return {}

    def layers(self, quantized: bool | None = None, lazy: bool = False) -> list:
        """Every layer in order: a :class:`QLayer` (pools: spec only), or, with ``lazy`` and BN batch
        statistics in use, a callable ``x_in -> QLayer`` that the forward calls with the layer's input."""
        out, j = [], 0
        batch_bn = self.bn and self.training and not self.bn_frozen
        for spec in self.specs:
            if spec.kind == "maxpool2d":
                out.append(QLayer(spec))
                continue
            if lazy and batch_bn and self.has_bn(j):
                out.append(_Lazy(self, j, quantized))
            else:
                out.append(self.neuron_layer(j, None, quantized))
            j += 1
        return out

    def integer_layers(self) -> list[dict]:
        """The quantized integers (BN folded with the running statistics) per layer, in order:
        ``kind`` plus, for neuron layers, ``weight``, ``bias``, ``threshold``, ``v_init``, ``h``
        (``[1]`` without a kernel), ``reset``, ``leak`` (None or ``(num, shift)``), ``scale`` and
        ``h_scale``, all as int64 numpy arrays / plain numbers."""
        was = self.training
        self.eval()
        try:
            with torch.no_grad():
                out = []
                for q in self.layers(quantized=True):
                    if q.kind == "maxpool2d":
                        out.append({"kind": q.kind})
                        continue
                    n = q.weight.shape[0]
                    leak = None
                    if q.leak is not None:
                        num = float(q.leak[0])
                        if num != round(num):
                            raise AssertionError(f"quantized leak num {num} is not an integer")
                        leak = (int(num), int(q.leak[1]))
                    out.append({"kind": q.kind, "weight": to_int(q.weight), "bias": to_int(q.bias),
                                "threshold": to_int(q.threshold),
                                "v_init": to_int(q.v_init) if q.v_init is not None else np.zeros(n, np.int64),
                                "h": np.ones(1, dtype=np.int64) if q.h is None else to_int(q.h),
                                "reset": q.reset, "leak": leak, "scale": q.scale, "h_scale": q.h_scale})
                return out
        finally:
            self.train(was)


class _Lazy:
    """A neuron layer whose BN statistics come from its input (training with batch statistics)."""

    def __init__(self, net: QuantNet, j: int, quantized):
        self.net, self.j, self.quantized = net, j, quantized
        self.spec = net.specs[net.neuron_index[j]]
        self.kind = self.spec.kind

    def __call__(self, x_in: torch.Tensor) -> QLayer:
        return self.net.neuron_layer(self.j, x_in, self.quantized)
