"""Bit-accurate execution of an integer model, vectorised over the batch, with the RTL's counters.

The network is feed-forward, so the engine processes layer by layer over all T steps: one exact
float64 matrix product per layer (integer operands, every partial sum far below 2**53; a conv2d
layer is a product over its im2col patches) and an elementwise neuron recurrence over t. The
hardware processes step by step; both orders give the same result, which the tests check against
independent step-major oracles.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import perf
from .model import Model, leak_apply

__all__ = ["Result", "InputError", "run", "check_inputs", "tsc_quantize", "tsc_events", "apply_kernel",
           "synaptic", "maxpool"]


class InputError(ValueError):
    """Input samples do not fit the model (shape, dtype or range)."""


@dataclass
class Result:
    """Everything a run produces. Per-layer lists are indexed by the model's layer index, maxpool2d
    layers included; 3-D layers are flattened C-major, ``(c * H + y) * W + x``.

    Attributes
    ----------
    predictions : (B,) int64
    counts : (B, n_out) int64
        Last layer's spike counts (all zero for the membrane readout).
    membranes : (B, n_out) int64
        Last layer's final membrane potentials.
    v_final : list of (B, n_l) int64, or None for a maxpool2d layer
        Every layer's final membrane potentials.
    spikes : list of (B, T, n_l) uint8 or None
        Per-layer spikes when ``record=True`` (rate and stcb).
    input_spikes : (B, T, n_in) uint8 or None
        The rate encoder's spikes when ``record=True`` (rate encoding only).
    counters : dict name -> (B,) int64
        Totals over the whole core, including ``spikes`` (network layers only).
    layer_counters : list of dict name -> (B,) int64
        The same counters per network layer (``cycles`` is the layer's phases).
    encoder_counters : dict name -> (B,) int64
        The on-chip rate encoder's share (zeros for direct encoding).
    lanes : int
    events_in : list of (B, T) int64
        Events reaching each layer at each step.
    events : list of (B, T, n_l) int8 or None
        tsc, ``record=True``: the ON (+1) / OFF (-1) events each layer sends.
    input_events : (B, T, n_in) int8 or None
        tsc, ``record=True``: the input generator's events.
    activations : list of (B, n_l) int64 or None
        tsc: the value every layer but the last sends (maxpool2d: the maximum).
    """

    predictions: np.ndarray
    counts: np.ndarray
    membranes: np.ndarray
    v_final: list
    counters: dict
    layer_counters: list
    encoder_counters: dict
    lanes: int
    spikes: list | None = None
    input_spikes: np.ndarray | None = None
    events_in: list = field(default_factory=list)
    events: list | None = None
    input_events: np.ndarray | None = None
    activations: list | None = None
    coding: str = "rate"

    @property
    def batch(self) -> int:
        return len(self.predictions)


def check_inputs(model: Model, x) -> np.ndarray:
    """Return ``x`` as int64 (B, n_in), or raise :class:`InputError` naming the problem."""
    arr = np.asarray(x)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise InputError(f"inputs must be an integer array, got dtype {arr.dtype}")
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != model.n_in:
        raise InputError(f"inputs must have shape (batch, {model.n_in}), got {np.asarray(x).shape}")
    if arr.size and (arr.min() < 0 or arr.max() > model.input_max):
        bad = np.argwhere((arr < 0) | (arr > model.input_max))[0]
        raise InputError(f"input value {int(arr[tuple(bad)])} at sample {bad[0]}, feature {bad[1]} is outside "
                         f"[0, {model.input_max}]")
    return arr.astype(np.int64)


def tsc_quantize(x: np.ndarray, input_max: int, Q: int) -> np.ndarray:
    """TSC input quantization: q = (x * Q + input_max // 2) // input_max."""
    return (x * Q + input_max // 2) // input_max


def tsc_events(a: np.ndarray, T: int) -> np.ndarray:
    """ON (+1) at t = 0 and OFF (-1) at t = a for every value a >= 1; (B, n) -> (B, T, n) int8."""
    B, n = a.shape
    ev = np.zeros((B, T, n), dtype=np.int8)
    on = a >= 1
    ev[:, 0][on] = 1
    b_idx, j_idx = np.nonzero(on)
    ev[b_idx, a[on], j_idx] = -1
    return ev


def _tsc_event_counts(a: np.ndarray, T: int) -> np.ndarray:
    """Events per step of the ON/OFF pairs of values ``a`` (B, n): (B, T) int64, without building them."""
    B = a.shape[0]
    E = np.zeros((B, T), dtype=np.int64)
    on = a >= 1
    E[:, 0] = on.sum(axis=1)
    rows = np.broadcast_to(np.arange(B)[:, None], a.shape)[on]
    np.add.at(E, (rows, a[on]), 1)
    return E


# ---------------------------------------------------------------------------------------------
# layer arithmetic (shared by every coding)

# float32 represents every integer below 2**24 exactly; a product whose terms' absolute sum stays
# below that is exact in float32 whatever order BLAS adds in
_F32_EXACT = 1 << 24


def _exact_matmul(a: np.ndarray, w: np.ndarray, bound: int | None = None) -> np.ndarray:
    """Integer a @ w.T through BLAS; exact because the model's width analysis bounds every partial
    sum by 2**48 (float64) or, when ``bound`` (the largest sum of |a_i w_ji|) is below 2**24, in
    float32."""
    dt = np.float32 if bound is not None and bound < _F32_EXACT else np.float64
    return (a.astype(dt) @ w.T.astype(dt)).astype(np.int64)


def _abs_bound(layer, amax: int) -> int:
    """Largest sum of |w * s| over one output's synapses, for inputs |s| <= amax."""
    w = np.abs(layer.weight).reshape(layer.weight.shape[0], -1)
    return int(w.sum(axis=1).max()) * int(amax)


def _patches(a: np.ndarray, layer) -> np.ndarray:
    """im2col: (N, C*H*W) -> (N, C*K*K, Ho*Wo), rows in (c, ky, kx) order, zero padding."""
    C, H, W = layer.in_shape
    _, Ho, Wo = layer.out_shape
    K, S, p = layer.kernel, layer.stride, layer.padding
    img = a.reshape(-1, C, H, W)
    if p:
        img = np.pad(img, ((0, 0), (0, 0), (p, p), (p, p)))
    win = np.lib.stride_tricks.sliding_window_view(img, (K, K), axis=(2, 3))[:, :, ::S, ::S][:, :, :Ho, :Wo]
    return win.transpose(0, 1, 4, 5, 2, 3).reshape(img.shape[0], C * K * K, Ho * Wo)


def synaptic(layer, a: np.ndarray, amax: int = 1) -> np.ndarray:
    """The synaptic sum of one step, without bias: (N, n_in) inputs -> (N, n_out) int64, exactly.

    Dense: ``a @ W.T``. Conv2d: ``sum_{c,ky,kx} W[o,c,ky,kx] a[c, y*S+ky-p, x*S+kx-p]`` (zero
    padding), flattened (o, y, x). ``amax`` bounds |a| (1 for spikes and events).
    """
    bound = _abs_bound(layer, amax)
    if layer.kind == "dense":
        return _exact_matmul(a, layer.weight, bound)
    N = a.shape[0]
    dt = np.float32 if bound < _F32_EXACT else np.float64
    cols = _patches(a.astype(dt, copy=False), layer)                          # (N, C*K*K, Ho*Wo)
    # (Co, C*K*K) @ each sample's patches: the result is already in (o, y, x) order
    out = np.matmul(layer.weight.reshape(layer.weight.shape[0], -1).astype(dt), cols)
    return out.reshape(N, -1).astype(np.int64)


def maxpool(layer, a: np.ndarray) -> np.ndarray:
    """Max over each K x K window: (N, C*H*W) -> (N, C*(H/K)*(W/K)), same dtype. On spikes it is the OR."""
    C, H, W = layer.in_shape
    K = layer.kernel
    img = a.reshape(-1, C, H, W)
    # K*K strided views combined elementwise: much faster than a reduction over two inner axes
    out = img[:, :, ::K, ::K].copy()
    for dy in range(K):
        for dx in range(K):
            if dy or dx:
                np.maximum(out, img[:, :, dy::K, dx::K], out=out)
    return out.reshape(a.shape[0], -1)


def apply_kernel(cur: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Causal STEB kernel over time: I'[t] = sum_k h[k] I[t-k], I[t<0] = 0; cur is (B, T, n)."""
    out = np.zeros_like(cur)
    T = cur.shape[1]
    for k, hk in enumerate(h.tolist()):
        if k < T and hk:
            out[:, k:] += hk * cur[:, :T - k]
    return out


def _rate_encode(x: np.ndarray, input_max: int, T: int) -> np.ndarray:
    """Deterministic rate encoder: u += x; spike and u -= input_max when u >= input_max."""
    u = np.zeros_like(x)
    out = np.empty((x.shape[0], T, x.shape[1]), dtype=np.uint8)
    for t in range(T):
        u += x
        s = u >= input_max
        u -= input_max * s
        out[:, t] = s
    return out


def _neuron_layer(current: np.ndarray, layer, fire: bool):
    """The neuron recurrence over T for currents (B, T, n): leak, add, fire, reset.

    Returns (spikes uint8 (B, T, n), final V int64 (B, n)).
    """
    B, T, n = current.shape
    threshold = layer.per_neuron(layer.threshold)
    v = np.broadcast_to(layer.per_neuron(layer.v_init), (B, n)).astype(np.int64).copy()
    spikes = np.zeros((B, T, n), dtype=np.uint8)
    zero = layer.reset == "zero"
    for t in range(T):
        if layer.leak is not None:
            v = leak_apply(v, *layer.leak)          # step 0 too: the leak acts on v_init
        v += current[:, t]
        if fire:
            s = v >= threshold
            if zero:
                v[s] = 0
            else:
                v -= threshold * s
            spikes[:, t] = s
    return spikes, v


# ---------------------------------------------------------------------------------------------
# codings

def _run_tsc(model: Model, x: np.ndarray, P: int, record: bool) -> "Result":
    """Temporal switch coding: every layer is the clipped-floor integer ANN; the ON/OFF events are
    derived from the values for the counters (and recorded on request)."""
    B, T, Q, M = x.shape[0], model.T, model.T - 1, model.input_max
    q = tsc_quantize(x, M, Q)
    input_events = _tsc_event_counts(q, T)
    act = perf.Activity(tsc_events(q, T) != 0, [])
    v_final, events_rec, acts, events_in = [], [], [], []
    n_layers = len(model.layers)
    a_in, E = q, input_events
    for li, layer in enumerate(model.layers):
        last = li == n_layers - 1
        events_in.append(E)
        if layer.kind == "maxpool2d":
            V = None
            a = maxpool(layer, a_in)
        else:
            # sum_t C(t) with C += ON/OFF weights is exactly W q (every input is active for q steps)
            V = synaptic(layer, a_in, amax=Q) + layer.per_neuron(layer.bias)
            a = None if last else np.clip(np.floor_divide(V, layer.per_neuron(layer.threshold)), 0, Q)
        v_final.append(V)
        if last:
            E_out = np.zeros((B, T), dtype=np.int64)
            ev_out = np.zeros((B, T, layer.n_out), dtype=np.int8)
        else:
            acts.append(a)
            E_out = _tsc_event_counts(a, T)
            ev_out = tsc_events(a, T)
        if record:
            events_rec.append(ev_out)
        act.layers.append(ev_out != 0)
        a_in, E = a, E_out
    totals, layer_counters, enc = perf.count(model, P, act)
    membranes = v_final[-1]
    predictions = np.argmax(membranes, axis=1).astype(np.int64)
    return Result(predictions=predictions, counts=np.zeros_like(membranes), membranes=membranes, v_final=v_final,
                  counters=totals, layer_counters=layer_counters, encoder_counters=enc, lanes=P,
                  events_in=events_in, events=events_rec if record else None,
                  input_events=tsc_events(q, T) if record else None, activations=acts, coding="tsc")


def run(model: Model, x, *, lanes: int = 1, record: bool = False) -> Result:
    """Run ``model`` on integer inputs ``x`` (B, n_in), flattened C-major, and return outputs and counters.

    ``lanes`` is the hardware's P; it changes only the counters, never the outputs.
    """
    if not isinstance(model, Model):
        raise TypeError(f"model must be a golden.Model, not {type(model).__name__}")
    if isinstance(lanes, bool) or not isinstance(lanes, (int, np.integer)) or lanes < 1:
        raise ValueError(f"lanes must be a positive integer, not {lanes!r}")
    x = check_inputs(model, x)
    if model.coding == "tsc":
        return _run_tsc(model, x, int(lanes), record)
    B, T, P = x.shape[0], model.T, int(lanes)
    input_spikes = None
    if model.encoding == "rate":
        input_spikes = _rate_encode(x, model.input_max, T)
        events = input_spikes.sum(axis=2, dtype=np.int64)               # (B, T)
        act = perf.Activity(input_spikes.astype(bool), [])
        layer_in = input_spikes
    else:
        nnz = (x != 0).sum(axis=1, dtype=np.int64)
        events = np.repeat(nnz[:, None], T, axis=1)
        act = perf.Activity(np.broadcast_to((x != 0)[:, None, :], (B, T, x.shape[1])), [])
        layer_in = None

    spikes_rec, v_final, events_in = [], [], []
    n_layers = len(model.layers)
    for li, layer in enumerate(model.layers):
        last = li == n_layers - 1
        fire = not (last and model.readout == "membrane")
        if layer.kind == "maxpool2d":
            # OR over each window, step by step (stcb: slot by slot, the same thing); no neurons
            s = maxpool(layer, layer_in.reshape(B * T, -1)).reshape(B, T, -1)
            v = None
        else:
            if layer_in is None:  # direct encoding: the same integer current every step
                cur = synaptic(layer, x, amax=model.input_max)
                cur = np.repeat(cur[:, None, :], T, axis=1)
            else:
                cur = synaptic(layer, layer_in.reshape(B * T, -1)).reshape(B, T, -1)
            cur += layer.per_neuron(layer.bias)
            if layer.has_kernel:
                cur = apply_kernel(cur, layer.h)
            s, v = _neuron_layer(cur, layer, fire)
        step_spikes = s.sum(axis=2, dtype=np.int64)                       # (B, T)
        act.layers.append(s.astype(bool))
        events_in.append(events)
        v_final.append(v)
        if record:
            spikes_rec.append(s)
        layer_in, events = s, step_spikes

    counts = s.sum(axis=1, dtype=np.int64)
    membranes = v_final[-1]
    if model.readout == "count":
        # lexicographic (count, V); argmax picks the lowest index on ties
        key = counts * (1 << (model.v_bits + 1)) + (membranes + (1 << model.v_bits))
    else:
        key = membranes
    predictions = np.argmax(key, axis=1).astype(np.int64)
    totals, layer_counters, enc = perf.count(model, P, act)
    return Result(predictions=predictions, counts=counts, membranes=membranes, v_final=v_final,
                  counters=totals, layer_counters=layer_counters, encoder_counters=enc, lanes=P,
                  spikes=spikes_rec if record else None,
                  input_spikes=input_spikes if record else None, events_in=events_in, coding=model.coding)
