"""Export a quantization-aware network (:class:`~quant.net.SpikingNet` or :class:`~quant.tsc.TSCNet`,
dense, conv2d and maxpool2d layers) to a golden integer model, and run a golden model with the
torch forward (the exact quantized evaluation path)."""

from __future__ import annotations

import numpy as np
import torch

import golden

from .arch import ConvSpec, DenseSpec, LayerSpec, PoolSpec
from .net import _batched_eval, exact_dtype
from .qnet import QLayer
from .tsc import tsc_batched_eval

__all__ = ["to_golden", "torch_run", "spec_of", "golden_layer", "qlayers_of"]


def golden_layer(spec: LayerSpec, ints: dict | None):
    """One golden layer from a layer spec and its integers (:meth:`QuantNet.integer_layers`)."""
    if spec.kind == "maxpool2d":
        return golden.MaxPool2d(spec.kernel, in_shape=tuple(spec.in_shape))
    args = (ints["weight"], ints["bias"], ints["threshold"], ints["v_init"])
    kw = dict(h=ints.get("h", (1,)), reset=ints.get("reset", "subtract"), leak=ints.get("leak"))
    if spec.kind == "conv2d":
        return golden.Conv2d(*args, in_shape=tuple(spec.in_shape), stride=spec.stride, padding=spec.padding, **kw)
    return golden.Dense(*args, **kw)


def to_golden(net, *, coding: str | None = None) -> "golden.Model":
    """The integer model that ``net``'s quantized forward computes (validated by golden.Model).

    Weights, biases, thresholds and initial membranes are the integers of each layer's (or output
    channel's) power-of-two scale, with BatchNorm folded in (and, for STCB kernels, the taps ``h`` of
    their own scale, see :func:`quant.layers.quantize_stcb_layer`); reset and leak per layer;
    ``input_shape`` is layer 0's input shape; ``v_bits`` is the minimum safe width from golden's
    worst-case analysis. ``coding`` defaults to the net's own (``"tsc"``, ``"stcb"`` or ``"rate"``).
    """
    coding = getattr(net, "coding", "rate") if coding is None else coding
    layers = [golden_layer(spec, ints) for spec, ints in zip(net.specs, net.integer_layers())]
    return golden.Model(layers, coding=coding, T=net.T, encoding=net.encoding, input_max=net.input_max,
                        readout=net.readout, weight_bits=net.weight_bits, v_bits=None,
                        input_shape=list(net.specs[0].in_shape))


def spec_of(layer) -> LayerSpec:
    """The layer spec of a golden layer (its kind and shapes)."""
    kind = getattr(layer, "kind", "dense")
    in_shape = tuple(int(d) for d in getattr(layer, "in_shape", (layer.n_in,)))
    if kind == "maxpool2d":
        return PoolSpec(int(layer.kernel), in_shape, tuple(int(d) for d in layer.out_shape))
    if kind == "conv2d":
        Co, _, K, _ = layer.weight.shape
        return ConvSpec(int(Co), int(K), int(layer.stride), int(layer.padding), in_shape,
                        tuple(int(d) for d in layer.out_shape))
    return DenseSpec(int(layer.n_in), int(layer.n_out), in_shape)


def qlayers_of(model: "golden.Model", dtype: torch.dtype) -> list[QLayer]:
    """A golden model's layers as the torch forward's :class:`QLayer` list (integer-valued tensors)."""
    def t(a):
        return torch.as_tensor(np.array(a), dtype=dtype)
    out = []
    for l in model.layers:
        spec = spec_of(l)
        if spec.kind == "maxpool2d":
            out.append(QLayer(spec))
            continue
        leak = getattr(l, "leak", None)
        out.append(QLayer(spec, t(l.weight), t(l.bias), t(l.threshold),
                          None if model.coding == "tsc" else t(l.v_init),
                          t(l.h) if getattr(l, "has_kernel", False) else None,
                          reset=getattr(l, "reset", "subtract"),
                          leak=None if leak is None else (float(leak[0]), int(leak[1]), True)))
    return out


def torch_run(model: "golden.Model", x, *, batch_size: int = 1024) -> dict:
    """Run a golden integer model with the torch forward (float32 when its widths allow exactness,
    else float64). Same output dict as the net's ``quantized_eval``."""
    dtype = exact_dtype(model)
    x = golden.check_inputs(model, x)
    layers = qlayers_of(model, dtype)
    if model.coding == "tsc":
        return tsc_batched_eval(layers, x, Q=model.T - 1, input_max=model.input_max, dtype=dtype,
                                batch_size=batch_size)
    return _batched_eval(layers, x, T=model.T, encoding=model.encoding, input_max=model.input_max,
                         readout=model.readout, surrogate="arctan", dtype=dtype, batch_size=batch_size)
