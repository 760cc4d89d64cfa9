"""Export a quantization-aware network (:class:`~quant.net.SpikingMLP` or :class:`~quant.tsc.TSCMLP`)
to a golden integer model, and run a golden model with the torch forward (the exact quantized
evaluation path)."""

from __future__ import annotations

import numpy as np
import torch

import golden

from .net import _batched_eval, exact_dtype
from .tsc import tsc_batched_eval

__all__ = ["to_golden", "torch_run"]


def to_golden(net, *, coding: str | None = None) -> "golden.Model":
    """The integer model that ``net``'s quantized forward computes (validated by golden.Model).

    Weights, biases, thresholds and initial membranes are the integers of each layer's
    power-of-two scale (and, for STCB kernels, the taps ``h`` of theirs, see
    :func:`quant.layers.quantize_stcb_layer`); ``v_bits`` is the minimum safe width from golden's
    worst-case analysis. ``coding`` defaults to the net's own (``"tsc"``, ``"stcb"`` or ``"rate"``).
    """
    coding = getattr(net, "coding", "rate") if coding is None else coding
    layers = [golden.Dense(l["weight"], l["bias"], l["threshold"], l["v_init"], h=l.get("h", (1,)), _layer=i)
              for i, l in enumerate(net.integer_layers())]
    return golden.Model(layers, coding=coding, T=net.T, encoding=net.encoding, input_max=net.input_max,
                        readout=net.readout, weight_bits=net.weight_bits, v_bits=None)


def torch_run(model: "golden.Model", x, *, batch_size: int = 1024) -> dict:
    """Run a golden integer model with the torch forward (float32 when its widths allow exactness,
    else float64). Same output dict as the net's ``quantized_eval``."""
    dtype = exact_dtype(model)
    x = golden.check_inputs(model, x)
    if model.coding == "tsc":
        params = [tuple(torch.as_tensor(np.array(getattr(l, k)), dtype=dtype)
                        for k in ("weight", "bias", "threshold")) for l in model.layers]
        return tsc_batched_eval(params, x, Q=model.T - 1, input_max=model.input_max, dtype=dtype,
                                batch_size=batch_size)
    params = [tuple(torch.as_tensor(np.array(getattr(l, k)), dtype=dtype)
                    for k in ("weight", "bias", "threshold", "v_init"))
              + ((torch.as_tensor(np.array(l.h), dtype=dtype) if l.has_kernel else None),)
              for l in model.layers]
    return _batched_eval(params, x, T=model.T, encoding=model.encoding, input_max=model.input_max,
                         readout=model.readout, surrogate="arctan", dtype=dtype, batch_size=batch_size)
