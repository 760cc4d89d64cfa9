"""Re-targeting a TSC integer model to rate coding: the conversion the TSC paper compares against.

A ``tsc`` model computes the clipped-floor integer ANN (docs/spec.md section 2)

    q_l = clamp(floor((W_l q_{l-1} + b_l) / theta_l), 0, Q),    Q = T_tsc - 1,

and reads the last layer's membrane ``b + W q``. :func:`rate_from_tsc` turns it into a ``rate`` model
over ``T`` steps with the *same* integer weights and thresholds: IF neurons, reset by subtraction,
rate-encoded input, membrane readout. A rate neuron's spike count n over T steps stands for the
value ``n * Q / T``; only the biases and initial membranes change, as the conversion literature does
(Rueckauer et al. 2017; the half-level shift of Bu et al., ICLR 2022):

* **Bias spread over time.** The ANN adds b once to ``W q``; the rate neuron sees ``W n_in`` with
  ``n_in ~ q T / Q``, so it needs ``b T / Q`` in total over the T steps.
* **Half-level shift.** A rate neuron converges to the *unfloored* activation ``z / theta``
  (``z = W q + b``), while the ANN floors, which loses half a level on average; uncorrected, each
  layer passes an upward bias of half a level to the next. So the total is shifted by
  ``-theta / 2`` in ANN units, i.e. ``-(T / Q) theta / 2``. The neuron's own count
  ``floor(V / theta)`` then floors once more, which ``+theta / 2`` in ``v_init`` turns into
  rounding. In all, a hidden layer's bias over the window is

      B = (T / Q) (b - theta / 2) + theta / 2

  and the readout layer's (no floor, no shift) is ``B = (T / Q) b``. At ``T = Q`` a hidden
  layer's B is exactly ``b``: the rate model at the TSC model's own level count.
* **Integers.** B is split into a per-step bias ``beta = round(B / T)`` (a constant current, as in
  the ANN) and the remainder ``v_init = round(B - T beta)`` (|remainder| <= T / 2 + theta / 2);
  both round half up, in exact rational arithmetic.
* **Pooling.** ``maxpool2d`` is kept as the core's rate max-pool: the OR of the window's spikes
  each step. Its count is at least the maximum of the window's counts (the TSC value) and at most
  their sum, so it over-counts wherever two inputs of a window fire at different steps; the
  pool-free variants of the networks (a stride-2 conv in place of conv + pool) avoid it.
* **Input.** The rate encoder sends ``floor(T x / input_max)`` spikes for an input x; the TSC input
  is ``round(x Q / input_max)``. The floor loses up to one spike per input over the window (the
  encoder is fixed by the model format; its error shrinks as 1 / T).

``half_level=False`` gives the plain conversion (``B = b T / Q`` everywhere, ``v_init`` the
remainder only), for comparison. The result is an ordinary validated :class:`golden.Model`: save it
with :func:`golden.save_model` and every command (golden, sim.regress, hw.generate) runs it.
"""

from __future__ import annotations

from fractions import Fraction
from math import floor

import numpy as np

from .model import Conv2d, Dense, MaxPool2d, Model, ModelError

__all__ = ["rate_from_tsc", "window_bias"]


def _round_half_up(v: Fraction) -> int:
    return floor(v + Fraction(1, 2))


def window_bias(bias: int, threshold: int, T: int, Q: int, *, hidden: bool, half_level: bool = True) -> Fraction:
    """The bias a converted neuron needs over the T-step window, exactly (see the module docstring)."""
    if hidden and half_level:
        return Fraction(T * (2 * bias - threshold), 2 * Q) + Fraction(threshold, 2)
    return Fraction(T * bias, Q)


def _split(bias, threshold, T: int, Q: int, hidden: bool, half_level: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per-unit (beta, v_init) with T * beta + v_init = round(B)."""
    beta, v0 = [], []
    for b, th in zip(bias.tolist(), threshold.tolist()):
        B = window_bias(b, th, T, Q, hidden=hidden, half_level=half_level)
        step = _round_half_up(B / T)
        beta.append(step)
        v0.append(_round_half_up(B - T * step))
    return np.array(beta, dtype=np.int64), np.array(v0, dtype=np.int64)


def rate_from_tsc(model: Model, T: int, *, half_level: bool = True) -> Model:
    """The ``rate`` model over ``T`` steps that converts the ``tsc`` model ``model`` (same weights and
    thresholds, rate encoding, membrane readout, reset subtract); raises ModelError for another coding
    or a T outside 1..1024. The membrane width is the minimum the new biases need."""
    if not isinstance(model, Model):
        raise TypeError(f"model must be a golden.Model, not {type(model).__name__}")
    if model.coding != "tsc":
        raise ModelError(f"rate_from_tsc converts a tsc model, got coding {model.coding!r}")
    if isinstance(T, bool) or not isinstance(T, (int, np.integer)) or not 1 <= T <= 1024:
        raise ModelError(f"T must be an integer in 1..1024, got {T!r}")
    Q = model.T - 1
    last = len(model.layers) - 1
    layers = []
    for i, l in enumerate(model.layers):
        if l.kind == "maxpool2d":
            layers.append(MaxPool2d(l.kernel, in_shape=l.in_shape, _layer=i))
            continue
        beta, v0 = _split(l.bias, l.threshold, int(T), Q, i != last, half_level)
        if l.kind == "dense":
            layers.append(Dense(l.weight, beta, l.threshold, v0, _layer=i))
        else:
            layers.append(Conv2d(l.weight, beta, l.threshold, v0, in_shape=l.in_shape, stride=l.stride,
                                 padding=l.padding, _layer=i))
    return Model(layers, coding="rate", T=int(T), encoding="rate", input_max=model.input_max, readout="membrane",
                 weight_bits=model.weight_bits, v_bits=None, input_shape=model.input_shape)
