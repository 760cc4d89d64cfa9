"""Bit-accurate execution of an integer model, vectorised over the batch, with the RTL's counters.

The network is feed-forward, so the engine processes layer by layer over all T steps: one exact
float64 matrix product per layer (integer operands, every partial sum far below 2**53) and an
elementwise IF recurrence over t. The hardware processes step by step; both orders give the same
result, which the tests check against an independent step-major oracle.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import perf
from .model import Model

__all__ = ["Result", "InputError", "run", "check_inputs", "tsc_quantize", "tsc_events", "apply_kernel"]


class InputError(ValueError):
    """Input samples do not fit the model (shape, dtype or range)."""


@dataclass
class Result:
    """Everything a run produces.

    Attributes
    ----------
    predictions : (B,) int64
    counts : (B, n_out) int64
        Last layer's spike counts (all zero for the membrane readout).
    membranes : (B, n_out) int64
        Last layer's final membrane potentials.
    v_final : list of (B, n_l) int64
        Every layer's final membrane potentials.
    spikes : list of (B, T, n_l) uint8 or None
        Per-layer spikes when ``record=True``.
    input_spikes : (B, T, n_in) uint8 or None
        The rate encoder's spikes when ``record=True`` (rate encoding only).
    counters : dict name -> (B,) int64
        Totals over the whole core, including ``spikes`` (network layers only).
    layer_counters : list of dict name -> (B,) int64
        The same counters per network layer (``cycles`` is the layer's phases).
    encoder_counters : dict name -> (B,) int64
        The on-chip rate encoder's share (zeros for direct encoding).
    lanes : int
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


def _run_tsc(model: Model, x: np.ndarray, P: int, record: bool) -> "Result":
    """Temporal switch coding, step by step: C += ON/OFF-signed weights, V += C, then the clip."""
    B, T, Q, M = x.shape[0], model.T, model.T - 1, model.input_max
    q = tsc_quantize(x, M, Q)
    ev_in = tsc_events(q, T)
    input_events = ev_in != 0
    v_final, events_rec, acts, events_in, emitted = [], [], [], [], []
    n_layers = len(model.layers)
    for li, layer in enumerate(model.layers):
        last = li == n_layers - 1
        E = (ev_in != 0).sum(axis=2, dtype=np.int64)                        # (B, T) input events per step
        C = np.zeros((B, layer.n_out), dtype=np.int64)
        V = np.broadcast_to(layer.bias, (B, layer.n_out)).astype(np.int64).copy()
        for t in range(T):
            if E[:, t].any():
                C += _exact_matmul(ev_in[:, t], layer.weight)
            V += C
        events_in.append(E)
        v_final.append(V)
        if last:
            ev_out = np.zeros((B, T, layer.n_out), dtype=np.int8)
        else:
            a = np.clip(np.floor_divide(V, layer.threshold), 0, Q)
            acts.append(a)
            ev_out = tsc_events(a, T)
        emitted.append(ev_out != 0)
        if record:
            events_rec.append(ev_out)
        ev_in = ev_out
    act = perf.Activity(input_events, emitted)
    totals, layer_counters, enc = perf.count(model, P, act)
    membranes = v_final[-1]
    predictions = np.argmax(membranes, axis=1).astype(np.int64)
    return Result(predictions=predictions, counts=np.zeros_like(membranes), membranes=membranes, v_final=v_final,
                  counters=totals, layer_counters=layer_counters, encoder_counters=enc, lanes=P,
                  events_in=events_in, events=events_rec if record else None,
                  input_events=tsc_events(q, T) if record else None, activations=acts, coding="tsc")


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


def _if_layer(current: np.ndarray, v_init: np.ndarray, threshold: np.ndarray, fire: bool):
    """IF recurrence over T for currents (B, T, n): returns (spikes uint8 (B,T,n), final V)."""
    B, T, n = current.shape
    v = np.broadcast_to(v_init, (B, n)).astype(np.int64).copy()
    spikes = np.zeros((B, T, n), dtype=np.uint8)
    for t in range(T):
        v += current[:, t]
        if fire:
            s = v >= threshold
            v -= threshold * s
            spikes[:, t] = s
    return spikes, v


def _exact_matmul(a: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Integer a @ w.T through float64 BLAS; exact because the model's width analysis bounds every
    partial sum by 2**48."""
    return (a.astype(np.float64) @ w.T.astype(np.float64)).astype(np.int64)


def run(model: Model, x, *, lanes: int = 1, record: bool = False) -> Result:
    """Run ``model`` on integer inputs ``x`` (B, n_in) and return outputs and counters.

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
        act = perf.Activity(np.broadcast_to((x != 0)[:, None, :], (B, T, model.n_in)), [])
        layer_in = None

    spikes_rec, v_final, events_in = [], [], []
    n_layers = len(model.layers)
    for li, layer in enumerate(model.layers):
        last = li == n_layers - 1
        fire = not (last and model.readout == "membrane")
        if layer_in is None:  # direct encoding: the same integer current every step
            cur = _exact_matmul(x, layer.weight)
            cur = np.repeat(cur[:, None, :], T, axis=1)
        else:
            flat = layer_in.reshape(B * T, -1)
            cur = _exact_matmul(flat, layer.weight).reshape(B, T, -1)
        cur += layer.bias
        if layer.has_kernel:
            cur = apply_kernel(cur, layer.h)
        s, v = _if_layer(cur, layer.v_init, layer.threshold, fire)
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
