"""Bit-accurate execution of an integer model, vectorised over the batch, with the RTL's counters.

The network is feed-forward, so the engine processes layer by layer over all T steps: one matrix
product per layer for the synaptic sums of every sample and step (a conv2d layer: with its
convolution matrix or its patches), in the narrowest dtype in which it is provably exact (float32,
float64 or int64, from the layer's bound on partial sums), then the neuron recurrence over t in the
narrowest integer dtype the width analysis allows. The hardware processes step by step; both
orders give the same result, which the tests check against independent step-major oracles.
docs/spec.md ("How golden computes exactly") gives the argument.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields

import numpy as np

from . import perf
from .model import Model, leak_apply

__all__ = ["Result", "InputError", "run", "check_inputs", "tsc_quantize", "tsc_events", "apply_kernel",
           "synaptic", "synaptic_bound", "exact_dtype", "conv_matrix", "neuron_dtype", "maxpool"]


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
    banks : int
        The accumulator banks the counters are for (:func:`golden.perf.bank_shape`).
    events_in : list of (B, T) int64
        Events reaching each layer at each step.
    events : list of (B, T, n_l) int8 or None
        tsc, ``record=True``: the ON (+1) / OFF (-1) events each layer sends.
    input_events : (B, T, n_in) int8 or None
        tsc, ``record=True``: the input generator's events.
    activations : list of (B, n_l) int64 or None
        tsc: the value every layer but the last sends (maxpool2d: the maximum).
    phase_activity : list of dict name -> int64 array, or None
        Per layer, the activity its cycles depend on (:func:`golden.perf.phase_activity`), from
        which :func:`golden.perf.breakdown_parts` splits and checks the cycles counter.
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
    phase_activity: list | None = None
    banks: int = 1

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
    # one pass: read as unsigned, a negative value is above every input_max
    if arr.size and arr.view(arr.dtype.str.replace("i", "u")).max() > model.input_max:
        bad = np.argwhere((arr < 0) | (arr > model.input_max))[0]
        raise InputError(f"input value {int(arr[tuple(bad)])} at sample {bad[0]}, feature {bad[1]} is outside "
                         f"[0, {model.input_max}]")
    # no copy of int64 inputs: golden reads x and never writes it
    return arr.astype(np.int64, copy=False)


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
#
# Exactness. Every operand is an integer. A floating-point sum of integers is exact while every
# partial sum (and every product) is an integer the format represents: |n| <= 2**24 in float32,
# |n| <= 2**53 in float64. For a product a @ W.T with |a_i| <= amax, any partial sum of output j,
# in whatever order BLAS adds (FMA included: it rounds once, to the exact value), is bounded by
# ``bound = amax * max_j sum_i |W_ji|``; so the product is exact in the narrowest float format whose
# limit ``bound`` does not exceed, and in int64 (numpy's own loops, no BLAS) beyond 2**53.

_EXACT_LIMITS = ((np.dtype(np.float32), 1 << 24), (np.dtype(np.float64), 1 << 53))
_INT64_LIMIT = (1 << 63) - 1
# conv2d as one product with the layer's (n_in, n_out) convolution matrix while that matrix is at
# most this many elements (16 MiB of float32); beyond it, a product with the patches
_CONV_MATRIX_MAX = 1 << 22
# the patch product runs in blocks of rows of about this many outputs (1 MiB of float32)
_PATCH_BLOCK = 1 << 18


def exact_dtype(bound: int) -> np.dtype:
    """The narrowest dtype that sums integer terms whose absolute values add up to at most ``bound``
    exactly: float32 up to 2**24, float64 up to 2**53, else int64 (exact below 2**63)."""
    bound = int(bound)
    for dt, limit in _EXACT_LIMITS:
        if bound <= limit:
            return dt
    if bound > _INT64_LIMIT:
        raise OverflowError(f"a synaptic sum bounded by {bound} does not fit int64")
    return np.dtype(np.int64)


def _cache(layer) -> dict:
    """Values derived from a layer's weights (row sums, weights cast and transposed, conv matrices),
    kept on the layer: its arrays are read-only and its attributes have no setters, so they cannot
    go stale. The per-layer choices of :func:`_plan` (dtype tiers, path) depend on the model too and
    are kept on the model the same way (a Model has no setters either)."""
    c = layer.__dict__.get("_engine_cache")
    if c is None:
        c = layer.__dict__["_engine_cache"] = {}
    return c


def synaptic_bound(layer, amax: int) -> int:
    """Largest sum of |w * s| over one output's synapses, for inputs |s| <= amax (Python int: exact)."""
    c = _cache(layer)
    if "row_sum" not in c:
        w = np.abs(layer.weight).reshape(layer.weight.shape[0], -1)
        c["row_sum"] = int(w.sum(axis=1).max())
    return c["row_sum"] * int(amax)


def _patch_product(layer, a: np.ndarray, dt: np.dtype) -> np.ndarray:
    """The convolution as one product ``W (Co, C*K*K) @ patches (C*K*K, N*Ho*Wo)``: (N, n_in) ->
    (N, Co, Ho*Wo) in ``dt``, a transposed view of the (Co, N, Ho*Wo) product (the caller's cast
    writes it out in (o, y, x) order, so the transpose costs no pass of its own)."""
    C, H, W = layer.in_shape
    Co, Ho, Wo = layer.out_shape
    K, S, p = layer.kernel, layer.stride, layer.padding
    N = a.shape[0]
    img = np.zeros((C, N, H + 2 * p, W + 2 * p), dtype=dt)          # channel-major: the patches' order
    img[:, :, p:p + H, p:p + W] = a.reshape(N, C, H, W).transpose(1, 0, 2, 3)
    cols = np.empty((C, K, K, N, Ho, Wo), dtype=dt)
    for ky in range(K):
        for kx in range(K):
            cols[:, ky, kx] = img[:, :, ky:ky + S * (Ho - 1) + 1:S, kx:kx + S * (Wo - 1) + 1:S]
    out = layer.weight.reshape(Co, C * K * K).astype(dt) @ cols.reshape(C * K * K, N * Ho * Wo)
    return out.reshape(Co, N, Ho * Wo).transpose(1, 0, 2)


def conv_matrix(layer, dtype=np.int64) -> np.ndarray:
    """The conv2d layer as a dense (n_in, n_out) matrix M, so that the synaptic sum is ``a @ M``:
    M[(c, iy, ix), (o, y, x)] = W[o, c, ky, kx] where iy = y*S + ky - p, ix = x*S + kx - p is inside
    the map (zero padding contributes nothing, so those terms are simply absent)."""
    C, H, W = layer.in_shape
    Co, Ho, Wo = layer.out_shape
    K, S, p = layer.kernel, layer.stride, layer.padding
    ky = np.arange(K)
    iy = np.arange(Ho)[None, :] * S + ky[:, None] - p                  # (K, Ho): input row of (ky, y)
    ix = np.arange(Wo)[None, :] * S + ky[:, None] - p                  # (K, Wo): input column of (kx, x)
    # every (c, ky, kx, y, x) whose input pixel is inside the map
    c, ky5, kx5, y, x = np.meshgrid(np.arange(C), ky, ky, np.arange(Ho), np.arange(Wo), indexing="ij")
    r, q = iy[ky5, y], ix[kx5, x]
    ok = (r >= 0) & (r < H) & (q >= 0) & (q < W)
    c, ky5, kx5, y, x, r, q = (v[ok] for v in (c, ky5, kx5, y, x, r, q))
    m = np.zeros((C * H * W, Co * Ho * Wo), dtype=dtype)
    rows = (c * H + r) * W + q                                          # (E,)
    cols = np.arange(Co)[:, None] * (Ho * Wo) + (y * Wo + x)[None, :]   # (Co, E)
    m[rows[None, :], cols] = layer.weight[:, c, ky5, kx5]
    return m


def _product(layer, a: np.ndarray, dt: np.dtype) -> np.ndarray:
    """a @ W.T (dense) or the convolution (conv2d), computed in ``dt``: (N, n_in) -> (N, n_out), or
    for a conv2d layer possibly (N, Co, Ho*Wo) (:func:`_patch_product`), the same values.

    A conv2d layer runs as one product with its convolution matrix while that matrix is small and
    at least a quarter full (each output reads C*K*K of the n_in inputs); otherwise as a product
    with its patches, which does only the C*K*K multiplications per output."""
    if _uses_matrix(layer):
        return a.astype(dt, copy=False) @ _matrix(layer, dt)
    return _patch_product(layer, a, dt)


def _uses_matrix(layer) -> bool:
    """Dense, or a conv2d layer whose convolution matrix is small and at least a quarter full."""
    return layer.kind == "dense" or (layer.n_in * layer.n_out <= _CONV_MATRIX_MAX
                                     and 4 * layer.weight[0].size >= layer.n_in)


def _matrix(layer, dt: np.dtype, bias: bool = False, events: bool = False) -> np.ndarray:
    """The layer's (n_in, n_out) matrix in ``dt`` (dense: W.T; conv2d: :func:`conv_matrix`), cached;
    with ``bias``, (n_in + 1, n_out): the biases (per neuron) as a last row, for an input of 1. With
    ``events``, :data:`EVENT_COLUMNS` - n_out columns more: the first sums the inputs (their events,
    for 0/1 inputs; 0 from the bias row), the others are zero."""
    def make():
        m = layer.weight.T if layer.kind == "dense" else conv_matrix(layer)
        if events:
            pad = np.zeros((m.shape[0], EVENT_COLUMNS - m.shape[1]), dtype=m.dtype)
            pad[:, 0] = 1
            m = np.hstack([m, pad])
        if bias:
            row = np.zeros(m.shape[1], dtype=np.int64)
            row[:layer.n_out] = layer.per_neuron(layer.bias)
            m = np.vstack([m, row[None, :]])
        m = np.ascontiguousarray(m, dtype=dt)
        m.setflags(write=False)
        return m
    return _cached(layer, ("matrix", np.dtype(dt).str, bias, events), make)


# A layer of fewer outputs than this whose inputs are spikes computes its product this many columns
# wide, one of them the sum of its inputs: the events per step of the layer before, which the
# counters need, at no cost (numpy's BLAS, measured on the 2-core machine, multiplies (2880, 128)
# by (128, 16) slightly faster than by (128, 10): the 10 columns are done as 8 + 2)
EVENT_COLUMNS = 16


def _biased_bound(layer, amax: int) -> int:
    """:func:`synaptic_bound` with the bias as one more term: the largest sum of |w * s| over one
    unit's synapses plus |bias| (Python ints: exact), which bounds every partial sum of the product
    that carries the bias as an input of constant 1."""
    amax = int(amax)

    def make():
        rows = np.abs(layer.weight).reshape(layer.weight.shape[0], -1).sum(axis=1)
        return max(int(r) * amax + abs(int(b)) for r, b in zip(rows, layer.bias))
    return _cached(layer, ("biased_bound", amax), make)


def _flat(acc: np.ndarray) -> np.ndarray:
    """A product from :func:`_product` as (N, n_out)."""
    return acc if acc.ndim == 2 else np.ascontiguousarray(acc).reshape(acc.shape[0], -1)


def synaptic(layer, a: np.ndarray, amax: int = 1, dtype=None) -> np.ndarray:
    """The synaptic sum of one step, without bias: (N, n_in) inputs -> (N, n_out), exactly.

    Dense: ``a @ W.T``. Conv2d: ``sum_{c,ky,kx} W[o,c,ky,kx] a[c, y*S+ky-p, x*S+kx-p]`` (zero
    padding), flattened (o, y, x). ``amax`` bounds |a| (1 for spikes and events). The product runs
    in :func:`exact_dtype` of :func:`synaptic_bound`; ``dtype`` forces one (int64: the exact
    fallback; a float only where it is exact, else ValueError). The result is int64, or the float
    dtype holding the exact integers when ``dtype`` names one.
    """
    need = exact_dtype(synaptic_bound(layer, amax))
    if dtype is None:
        return _flat(_product(layer, a, need)).astype(np.int64, copy=False)
    dtype = np.dtype(dtype)
    if dtype.kind == "f" and (need.kind != "f" or need.itemsize > dtype.itemsize):
        raise ValueError(f"{dtype} is not exact for this layer: its synaptic sums need {need}")
    return _flat(_product(layer, a, dtype))


def maxpool(layer, a: np.ndarray) -> np.ndarray:
    """Max over each K x K window: (N, C*H*W) -> (N, C*(H/K)*(W/K)), same dtype. On spikes it is the OR."""
    C, H, W = layer.in_shape
    K = layer.kernel
    img = a.reshape(-1, C, H, W)
    if a.dtype == np.bool_ and K in (2, 4, 8) and a.flags.c_contiguous:
        # spikes: OR the K rows of each window, then read the K neighbours in a row as one K-byte
        # word, non-zero when any of them spiked (two passes over ever smaller maps). A row of W
        # bools is read as the widest words that tile it (8 bytes for W = 8: one word per row)
        wb = next(b for b in (8, 4, 2, 1) if W % b == 0)
        g = a.view(np.uint8).reshape(-1, K, W).view(np.dtype(f"u{wb}"))     # (N*C*H/K, K, W/wb)
        rows = g[:, 0].copy()
        for dy in range(1, K):
            np.bitwise_or(rows, g[:, dy], out=rows)
        return (rows.view(np.uint8).view(np.dtype(f"u{K}")) != 0).reshape(a.shape[0], -1)
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
    """Deterministic rate encoder: u += x; spike and u -= input_max when u >= input_max. Step-major
    (T, B, n) bool.

    u < input_max before the add and x <= input_max, so at most one spike per step and after t + 1
    steps floor((t + 1) x / input_max) spikes in all: the spike at step t is a function of (t, x)
    alone, read from a table of the input_max + 1 values (Python integers: exact) while that table
    is small; else the recurrence itself (u + x < 2 * input_max < 2**17: int32 holds it)."""
    B, n = x.shape
    out = np.empty((T, B, n), dtype=bool)
    if (input_max + 1) * T <= _ENCODER_TABLE_MAX:
        # the table packed 8 steps to a byte: one look-up per 8 steps, then the bit of each of its
        # steps, all 8 in one call (the shifts broadcast over the steps' maps)
        packed = _encoder_table(input_max, T)
        idx = x.astype(np.intp, copy=False)
        o8 = out.view(np.uint8)
        for c in range(packed.shape[0]):
            bits = np.take(packed[c], idx)
            k = min(8, T - 8 * c)
            o = o8[8 * c:8 * c + k]
            np.right_shift(bits, _STEP_SHIFTS[:k], out=o)
            np.bitwise_and(o, 1, out=o)                   # 0 or 1: a valid bool
        return out
    u = np.zeros(x.shape, dtype=np.int32)
    x = x.astype(np.int32)
    sub = np.empty(x.shape, dtype=np.int32)
    for t in range(T):
        u += x
        s = out[t]
        np.greater_equal(u, input_max, out=s)
        np.multiply(s, input_max, out=sub)
        u -= sub
    return out


_ENCODER_TABLE_MAX = 1 << 20
_STEP_SHIFTS = np.arange(8, dtype=np.uint8)[:, None, None]      # bit j of a packed byte is step 8c + j
_ENCODER_TABLES: dict = {}


def _encoder_table(input_max: int, T: int) -> np.ndarray:
    """(ceil(T / 8), input_max + 1) uint8: bit j of [c, v] says whether value v spikes at step
    t = 8c + j, floor((t+1) v / M) - floor(t v / M)."""
    key = (int(input_max), int(T))
    if key not in _ENCODER_TABLES:
        t = np.arange(T, dtype=np.int64)[:, None]
        v = np.arange(input_max + 1, dtype=np.int64)[None, :]
        spikes = ((t + 1) * v // input_max - t * v // input_max).astype(bool)
        table = np.packbits(spikes, axis=0, bitorder="little")
        table.setflags(write=False)
        _ENCODER_TABLES[key] = table
    return _ENCODER_TABLES[key]


_INT_DTYPES = tuple(np.dtype(t) for t in (np.int16, np.int32, np.int64))


def neuron_dtype(layer, widths) -> np.dtype:
    """The narrowest integer dtype that holds every value of a layer's recurrence (int16, int32 or
    int64): narrower words make the elementwise steps over T, the bulk of golden's time, faster.

    The width analysis bounds every value the recurrence forms (the synaptic sum, the current, V
    before and after the reset, the threshold, and so ``threshold * spike``) by ``widths``, so none
    of its sums or differences can leave that range: the narrow dtype is exact, nothing wraps."""
    m = _cached(layer, ("range", widths), lambda: max(abs(int(v)) for v in (
        widths.acc_lo, widths.acc_hi, widths.current_lo, widths.current_hi, widths.v_lo, widths.v_hi,
        int(layer.threshold.max()))))
    for dt in _INT_DTYPES:
        if m <= np.iinfo(dt).max:
            return dt
    raise OverflowError(f"a membrane range of {m} does not fit int64")


def _neuron_narrow(current: np.ndarray, layer, fire: bool, T: int, key=None):
    """:func:`_neuron_layer` (no leak) in the integer dtype of ``current`` (:func:`neuron_dtype`).

    ``current`` is step-major (T, B, n), or (1, B, n) for the same current every step (direct input);
    bias included. Returns (spikes bool (T, B, n), final V int64 (B, n))."""
    _, B, n = current.shape
    dt = current.dtype
    # one threshold for the whole layer (the usual case) as a scalar: a contiguous loop over each
    # step's map instead of a broadcast one per row, twice as fast for the compare and the reset
    threshold, v_init = _cached(layer, ("neuron", dt.str), lambda: (
        _uniform(layer.per_neuron(layer.threshold), dt), _uniform(layer.per_neuron(layer.v_init), dt)))
    v = np.empty((B, n), dtype=dt) if key is None else _scratch(key + ("v",), (B, n), dt)
    if key is None:
        spikes = np.zeros((T, B, n), dtype=bool)
    else:                                     # a run's scratch map: every step is written below
        spikes = _scratch(key, (T, B, n), np.bool_)
        if not fire:
            spikes.fill(False)
    zero = layer.reset == "zero"
    # the reset as a product with the spike mask: numpy's masked (where=) loops are several times slower
    # (the mask is copied into the dtype first: a mixed bool * int product goes through a buffered loop)
    tmp = np.empty((B, n), dtype=dt) if key is None else _scratch(key + ("tmp",), (B, n), dt)
    one = current.shape[0] == 1
    for t in range(T):
        c = current[0 if one else t]
        if t:
            np.add(v, c, out=v)
        elif isinstance(v_init, np.ndarray) or v_init:
            np.add(c, v_init, out=v)          # step 0 from v_init: one pass instead of a fill and an add
        else:
            np.copyto(v, c)
        if fire:
            s = spikes[t]
            np.greater_equal(v, threshold, out=s)
            if zero:
                np.logical_not(s, out=tmp)
                np.multiply(v, tmp, out=v)
            else:
                np.copyto(tmp, s)
                np.multiply(tmp, threshold, out=tmp)
                np.subtract(v, tmp, out=v)
    return spikes, v.astype(np.int64)


def _uniform(values: np.ndarray, dt: np.dtype):
    """Per-neuron ``values`` in ``dt``: one scalar of ``dt`` when they are all equal, else the array."""
    a = np.asarray(values).astype(dt)
    if a.size and (a == a.flat[0]).all():
        return dt.type(a.flat[0])
    a.setflags(write=False)
    return a


def _neuron_layer(current: np.ndarray, layer, fire: bool):
    """The neuron recurrence over T for step-major currents (T, B, n): leak, add, fire, reset.

    Returns (spikes bool (T, B, n), final V int64 (B, n)).
    """
    T, B, n = current.shape
    threshold = layer.per_neuron(layer.threshold)
    v = np.broadcast_to(layer.per_neuron(layer.v_init), (B, n)).astype(np.int64).copy()
    spikes = np.zeros((T, B, n), dtype=bool)
    zero = layer.reset == "zero"
    for t in range(T):
        if layer.leak is not None:
            v = leak_apply(v, *layer.leak)          # step 0 too: the leak acts on v_init
        v += current[t]
        if fire:
            s = v >= threshold
            if zero:
                v[s] = 0
            else:
                v -= threshold * s
            spikes[t] = s
    return spikes, v


def _layer_currents(model: Model, li: int, layer, layer_in, x: np.ndarray):
    """Layer ``li``'s currents, bias included and STEB kernel applied, in its :func:`neuron_dtype`:
    step-major (T, B, n), or (1, B, n) when they are the same every step (direct input, no kernel).
    ``layer_in`` is the previous layer's step-major (T, B, n_in) spikes (None: direct input ``x``).

    Returns (currents, events): ``events`` (T, B) int64 are the spikes of ``layer_in`` at each step
    when the product counted them (see :data:`EVENT_COLUMNS`), else None."""
    B, T = x.shape[0], model.T
    p = _plan(model, li, layer, layer_in is None)
    dt, pdt = p["dt"], p["pdt"]
    a = x if layer_in is None else layer_in.reshape(-1, layer_in.shape[-1])     # rows (t, b)
    steps = 1 if layer_in is None else T
    if p["matrix"]:
        # the product into scratch arrays (inputs cast to pdt, then the product), cast to dt. The bias
        # rides in the product as a last input of constant 1 whose weights are the biases, when the
        # biased sums are exact in the same dtype (then no pass of its own adds it); else it is added
        # in dt after the cast (nothing at all for a zero bias)
        fold, events = p["fold"], p["events"]
        k = a.shape[1]
        if fold:
            # the column of ones is written when the scratch array is made: nothing else writes it
            af = _scratch(("a", li, True), (a.shape[0], k + 1), pdt, init=lambda m: m[:, k].fill(1))
            np.copyto(af[:, :k], a, casting="unsafe")
        else:
            af = _scratch(("a", li, False), a.shape, pdt)
            np.copyto(af, a, casting="unsafe")              # 0/1 spikes or inputs <= input_max: exact
        acc = _scratch(("acc", li, events), (a.shape[0], EVENT_COLUMNS if events else layer.n_out), pdt)
        np.matmul(af, p["w"], out=acc)
        cur = _scratch(("cur", li), (steps, B, layer.n_out), dt)
        flat = cur.reshape(a.shape[0], layer.n_out)
        np.copyto(flat, acc[:, :layer.n_out], casting="unsafe")     # exact integers within the acc bounds
        if p["bias"] is not None:
            flat += p["bias"]
        return cur, (acc[:, layer.n_out].astype(np.int64).reshape(T, B) if events else None)
    if not layer.has_kernel:
        # the patch product in blocks of rows whose float results stay in cache until they are cast
        # (the patches and products of the whole batch would go out to memory and back)
        cur = _scratch(("cur", li), (steps, B, layer.n_out), dt)
        flat = cur.reshape(a.shape[0], layer.channels, -1)
        bias = _cached(layer, ("bias", dt.str, 4), lambda: layer.bias[:, None].astype(dt))
        rows = max(1, _PATCH_BLOCK // layer.n_out)
        for r in range(0, a.shape[0], rows):
            out = flat[r:r + rows]
            np.copyto(out, _patch_product(layer, a[r:r + rows], pdt), casting="unsafe")
            out += bias
        return cur, None
    acc = _product(layer, a, pdt)
    acc = acc.reshape(steps, B, *acc.shape[1:])               # a view, also of a transposed product
    if layer.has_kernel:
        cur = np.ascontiguousarray(acc).reshape(steps, B, -1).astype(np.int64) + layer.per_neuron(layer.bias)
        # apply_kernel runs along axis 1 of (B, T, n): give it the step-major array transposed
        cur = apply_kernel(np.broadcast_to(cur, (T, B, cur.shape[2])).transpose(1, 0, 2), layer.h)
        return np.ascontiguousarray(cur.transpose(1, 0, 2).astype(dt)), None   # within the current range: exact
    cur = np.empty((steps, B, layer.n_out), dtype=dt)
    out = cur.reshape(acc.shape)
    # per output channel for a (.., Co, Ho*Wo) product, per neuron otherwise
    bias = layer.bias[:, None] if acc.ndim == 4 else layer.per_neuron(layer.bias)
    # the product's exact integers cast to dt (the widths bound acc), then the bias added in dt (they
    # bound acc + bias too): a plain cast and a narrow add beat one mixed float-to-int add several times
    np.copyto(out, acc, casting="unsafe")
    out += _cached(layer, ("bias", dt.str, acc.ndim), lambda: bias.astype(dt))
    return cur, None


def _plan(model: Model, li: int, layer, direct: bool) -> dict:
    """The choices :func:`_layer_currents` makes for layer ``li`` (its current and product dtypes; for a
    product with a matrix: the bias fold, the event column, the matrix, the bias added after the
    cast or None), made once per model and layer: they depend on the model alone, which cannot
    change, and making them afresh (a dozen lookups and checks per layer) was a few percent of a
    dense run.
    ``direct``: the layer reads the integer inputs (amax = input_max), else spikes."""
    def make():
        dt = neuron_dtype(layer, model.widths[li])
        amax = model.input_max if direct else 1
        pdt = exact_dtype(synaptic_bound(layer, amax))
        p = {"dt": dt, "pdt": pdt, "matrix": not layer.has_kernel and _uses_matrix(layer)}
        if p["matrix"]:
            fold = bool(layer.bias.any()) and exact_dtype(_biased_bound(layer, amax)) == pdt
            # a sum of at most n_in ones, exact in pdt's range
            events = (not direct and layer.n_out < EVENT_COLUMNS
                      and exact_dtype(layer.n_in).itemsize <= pdt.itemsize)
            bias = None
            if not fold and layer.bias.any():
                bias = layer.per_neuron(layer.bias).astype(dt)
                bias.setflags(write=False)
            p.update(fold=fold, events=events, w=_matrix(layer, pdt, fold, events), bias=bias)
        return p
    return _cached(model, ("plan", li, bool(direct), EVENT_COLUMNS), make)    # (tests change EVENT_COLUMNS)


def _cached(layer, key, make):
    """``make()`` once per layer and key (see :func:`_cache`)."""
    c = _cache(layer)
    if key not in c:
        c[key] = make()
    return c[key]


_SCRATCH = threading.local()


def _scratch(key, shape, dtype, init=None) -> np.ndarray:
    """An uninitialised array for one of a run's large temporaries (currents, float products, spike
    maps), kept per thread and handed out again by the next run with the same key, shape and dtype:
    a fresh array of megabytes costs a page fault per 4 KiB the first time it is written, which for
    the conv bench net was a quarter of a run. Nothing a :class:`Result` holds is one of these (its
    arrays are copies), and each thread has its own, so concurrent runs never share one."""
    d = getattr(_SCRATCH, "arrays", None)
    if d is None:
        d = _SCRATCH.arrays = {}
    a = d.get(key)
    if a is None or a.shape != tuple(shape) or a.dtype != dtype:
        a = d[key] = np.empty(shape, dtype=dtype)
        if init is not None:          # what every run would write alike, written once
            init(a)
    return a


# ---------------------------------------------------------------------------------------------
# codings

def _run_tsc(model: Model, x: np.ndarray, P: int, record: bool, banks: int = 1) -> "Result":
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
    totals, layer_counters, enc = perf.count(model, P, act, banks)
    membranes = v_final[-1]
    predictions = np.argmax(membranes, axis=1).astype(np.int64)
    return Result(predictions=predictions, counts=np.zeros_like(membranes), membranes=membranes, v_final=v_final,
                  counters=totals, layer_counters=layer_counters, encoder_counters=enc, lanes=P,
                  events_in=events_in, events=events_rec if record else None,
                  input_events=tsc_events(q, T) if record else None, activations=acts, coding="tsc",
                  phase_activity=perf.phase_activity(model, P, act, banks), banks=banks)


def run(model: Model, x, *, lanes: int = 1, banks: int = 1, record: bool = False,
        threads: int | None = None) -> Result:
    """Run ``model`` on integer inputs ``x`` (B, n_in), flattened C-major, and return outputs and counters.

    ``lanes`` is the hardware's P and ``banks`` its accumulator banks (kernel offsets of a conv2d
    layer's scatter in parallel); they change only the counters, never the outputs. ``threads``
    splits the batch into that many parts run side by side (default: one per CPU, but no more than
    one per ``WORK_PER_THREAD`` synapse-steps, see :func:`_work`); samples are independent, so the
    result is the same for every split.
    """
    if not isinstance(model, Model):
        raise TypeError(f"model must be a golden.Model, not {type(model).__name__}")
    if isinstance(lanes, bool) or not isinstance(lanes, (int, np.integer)) or lanes < 1:
        raise ValueError(f"lanes must be a positive integer, not {lanes!r}")
    banks = perf.check_banks(banks)
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, (int, np.integer))
                                or threads < 1):
        raise ValueError(f"threads must be a positive integer or None, not {threads!r}")
    x = check_inputs(model, x)
    if threads is not None:
        n = threads
    else:
        n = len(x) * _work(model) // WORK_PER_THREAD
        n = min(os.cpu_count() or 1, n) if n > 1 else n
    n = max(1, min(int(n), len(x)))
    # parts of at most _part_samples samples each, so the step-major arrays of a long T stay in memory
    # (mnist5k's first conv layer at T = 256: 12,544 neurons x 256 steps, 13 GB for 1,000 samples at once)
    n_parts = max(n, -(-len(x) // _part_samples(model, record)))
    if n_parts == 1:
        return _run_batch(model, x, int(lanes), record, banks)
    parts = np.array_split(x, n_parts)
    if n == 1:
        return _concat([_run_batch(model, part, int(lanes), record, banks) for part in parts])
    with _one_blas_thread():
        results = list(_pool(n).map(lambda part: _run_batch(model, part, int(lanes), record, banks), parts))
    return _concat(results)


# the bytes one part's step-major arrays may take (each of the n threads runs one part at a time)
PART_BYTES = 1 << 30


def _part_samples(model: Model, record: bool) -> int:
    """The most samples one part may hold within PART_BYTES: the widest layer's step-major arrays at
    16 bytes a neuron-step (its product, currents, spikes and scratch), and 4 more a neuron-step of
    every layer for what is kept between layers (spike counts; with ``record``, 8: the spikes too)."""
    widths = [model.n_in] + [l.n_out for l in model.layers]
    return max(1, PART_BYTES // (model.T * (16 * max(widths) + (4 + 4 * record) * sum(widths))))


# a part smaller than this many synapse-steps (see _work) costs more in fixed overheads (thread
# hand-off, numpy call overheads paid twice, the GIL between calls) than a second core saves:
# measured on the 2-core machine, the 64-128-10 demo net at T=8 (27M for 360 samples) ran slower
# on two threads, the 16c3-mp2-32c3-10 conv net (253M) 1.25x faster
WORK_PER_THREAD = 1 << 26
_POOLS: dict = {}
_LOCK = threading.Lock()
# the BLAS limit is process-wide: concurrent run() calls share one, set by the first to enter and
# lifted by the last to leave (nested save/restore pairs could otherwise restore each other's limit)
_BLAS = {"controller": None, "modules": 0, "users": 0, "limit": None}     # modules: len(sys.modules) then


def _forget_threads() -> None:
    """In a forked child: only the forking thread exists there, so the parent's pools (whose workers
    are gone: a task handed to one waits forever), the lock (another thread may have held it) and the
    BLAS limit's bookkeeping are the parent's, not the child's. The child starts afresh."""
    global _LOCK
    _POOLS.clear()
    _LOCK = threading.Lock()
    _BLAS.update(controller=None, modules=0, users=0, limit=None)


os.register_at_fork(after_in_child=_forget_threads)


def _work(model: Model) -> int:
    """Synapse-steps of one sample: every neuron's fan-in (a conv2d neuron's C*K*K), times T."""
    per_step = sum(l.n_out * (l.weight[0].size if l.kind == "conv2d" else l.n_in)
                   for l in model.layers if l.kind != "maxpool2d")
    return per_step * model.T


def _pool(n: int) -> ThreadPoolExecutor:
    """A pool of n worker threads, made once (numpy releases the GIL in its loops and BLAS)."""
    with _LOCK:
        if n not in _POOLS:
            _POOLS[n] = ThreadPoolExecutor(n, thread_name_prefix="golden")
        return _POOLS[n]


@contextlib.contextmanager
def _one_blas_thread():
    """BLAS limited to one thread while golden's own workers run: each worker's products then run
    in the worker, instead of every worker's BLAS spawning (and spinning) threads for all cores."""
    with _LOCK:
        # the controller knows the BLAS libraries loaded when it was made (0.4 ms to make): made again
        # when modules were imported since (scipy brings a BLAS of its own), never while a limit is held
        if _BLAS["users"] == 0 and _BLAS["modules"] != len(sys.modules):
            _BLAS["modules"] = len(sys.modules)
            try:
                from threadpoolctl import ThreadpoolController
                _BLAS["controller"] = ThreadpoolController()
            except ImportError:           # without it the BLAS threads only oversubscribe the cores
                pass
        if _BLAS["controller"] is not None:
            if _BLAS["users"] == 0:
                _BLAS["limit"] = _BLAS["controller"].limit(limits=1, user_api="blas")
            _BLAS["users"] += 1
    try:
        yield
    finally:
        with _LOCK:
            if _BLAS["controller"] is not None:
                _BLAS["users"] -= 1
                if _BLAS["users"] == 0:
                    _BLAS["limit"].restore_original_limits()
                    _BLAS["limit"] = None


def _concat(parts: list):
    """Results (or their fields) of consecutive parts of a batch joined into one, sample-wise."""
    first = parts[0]
    if first is None:
        return None
    if isinstance(first, Result):
        return Result(**{f.name: _concat([getattr(p, f.name) for p in parts]) for f in fields(Result)})
    if isinstance(first, np.ndarray):
        return np.concatenate(parts, axis=0)
    if isinstance(first, list):
        return [_concat(list(items)) for items in zip(*parts)]
    if isinstance(first, dict):
        return {k: _concat([p[k] for p in parts]) for k in first}
    return first                          # lanes, coding: the same in every part


def _run_batch(model: Model, x: np.ndarray, P: int, record: bool, banks: int = 1) -> Result:
    """:func:`run` on one batch of checked inputs, in this thread."""
    with perf.shared_counts():            # the per-step spike counts below are the counters' too
        return _run_arrays(model, x, P, record, banks)


def _run_arrays(model: Model, x: np.ndarray, P: int, record: bool, banks: int = 1) -> Result:
    if model.coding == "tsc":
        return _run_tsc(model, x, P, record, banks)
    B, T = x.shape[0], model.T
    input_spikes = None
    # every map is step-major (T, B, n): each step's rows are contiguous for the recurrence, and a
    # layer's product takes all T*B rows at once; the counters get (B, T, n) views of them
    if model.encoding == "rate":
        input_spikes = _rate_encode(x, model.input_max, T)              # (T, B, n_in) bool
        act = perf.Activity(input_spikes.transpose(1, 0, 2), [])
        events = perf.events_per_step(act.inputs)                       # (B, T)
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
        counted = None
        if layer.kind == "maxpool2d":
            # OR over each window, step by step (stcb: slot by slot, the same thing); no neurons
            s = maxpool(layer, layer_in.reshape(T * B, -1)).reshape(T, B, -1)
            v = None
        else:
            cur, counted = _layer_currents(model, li, layer, layer_in, x)
            if layer.leak is None:
                s, v = _neuron_narrow(cur, layer, fire, T, key=("spikes", li))
            else:                                 # the leak's split product needs int64
                s, v = _neuron_layer(np.broadcast_to(cur, (T, B, cur.shape[2])).astype(np.int64), layer, fire)
        if events is None:                        # the previous layer's spikes per step (B, T)
            prev = act.layers[-1]
            if counted is not None:               # counted by this layer's product: the counters' too
                events = counted.T
                perf.note_events_per_step(prev, events)
            else:
                events = perf.events_per_step(prev)
        sv = s.transpose(1, 0, 2)                                         # (B, T, n) view
        act.layers.append(sv)
        events_in.append(events)
        v_final.append(v)
        if record:
            spikes_rec.append(sv.copy(order="C").view(np.uint8))       # never the scratch map itself
        layer_in, events = s, None

    counts = perf.step_sums(s)
    perf.note_total_events(act.layers[-1], counts)          # the counters' last-layer spikes
    membranes = v_final[-1]
    if model.readout == "count":
        # lexicographic (count, V); argmax picks the lowest index on ties
        key = counts * (1 << (model.v_bits + 1)) + (membranes + (1 << model.v_bits))
    else:
        key = membranes
    predictions = np.argmax(key, axis=1).astype(np.int64)
    totals, layer_counters, enc = perf.count(model, P, act, banks)
    return Result(predictions=predictions, counts=counts, membranes=membranes, v_final=v_final,
                  counters=totals, layer_counters=layer_counters, encoder_counters=enc, lanes=P,
                  spikes=spikes_rec if record else None,
                  input_spikes=(np.ascontiguousarray(input_spikes.transpose(1, 0, 2)).view(np.uint8)
                                if record and input_spikes is not None else None),
                  events_in=[np.ascontiguousarray(e) for e in events_in], coding=model.coding,
                  phase_activity=perf.phase_activity(model, P, act, banks), banks=banks)
