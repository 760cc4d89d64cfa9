"""An independent, step-major reference for convolutional SNNs, for the quant tests.

Written from design.md ("Schema 2") with plain NumPy integer loops: explicit zero padding and a loop
over output positions for conv2d, an explicit window reduction for maxpool2d, Python's arithmetic
shift for the leak, one sample and one time step at a time. It shares no code with quant/ or golden/,
so agreement with both is evidence, not a tautology.

A layer is a dict: ``kind`` ("dense", "conv2d", "maxpool2d"), ``in_shape``, ``out_shape`` and, for
neuron layers, int64 ``weight``, ``bias``, ``threshold``, ``v_init`` (per neuron or per output
channel), ``h`` (STCB taps), ``stride``, ``padding``, ``reset``, ``leak`` (None or (num, shift)).
"""

from __future__ import annotations

import numpy as np


def _current(layer: dict, s: np.ndarray) -> np.ndarray:
    """b + W s for one sample: s has the layer's in_shape (flattened for dense)."""
    w = layer["weight"]
    if layer["kind"] == "dense":
        return w @ s.reshape(-1) + layer["bias"]
    C, H, W = layer["in_shape"]
    Co, Ho, Wo = layer["out_shape"]
    K, S, p = w.shape[-1], layer["stride"], layer["padding"]
    x = np.zeros((C, H + 2 * p, W + 2 * p), dtype=np.int64)
    x[:, p:p + H, p:p + W] = s.reshape(C, H, W)
    out = np.zeros((Co, Ho, Wo), dtype=np.int64)
    for y in range(Ho):
        for xx in range(Wo):
            patch = x[:, y * S:y * S + K, xx * S:xx * S + K]
            out[:, y, xx] = (w * patch[None]).sum(axis=(1, 2, 3)) + layer["bias"]
    return out.reshape(-1)


def _pool(layer: dict, s: np.ndarray) -> np.ndarray:
    C, H, W = layer["in_shape"]
    K = layer["kernel"]
    a = s.reshape(C, H // K, K, W // K, K)
    return a.max(axis=(2, 4)).reshape(-1)


def _per_neuron(layer: dict, v: np.ndarray) -> np.ndarray:
    """Per-channel vector -> one value per neuron in (c, y, x) order."""
    if layer["kind"] == "conv2d":
        Co, Ho, Wo = layer["out_shape"]
        return np.repeat(v, Ho * Wo)
    return v


def run_rate(layers, x, *, T, encoding, input_max, readout):
    """Rate / STCB semantics. Returns (spikes per layer (B, T, n) uint8, v_final per layer (B, n) or
    None for pools, predictions (B,))."""
    x = np.asarray(x, dtype=np.int64)
    B = len(x)
    n_layers = len(layers)
    spikes = [np.zeros((B, T, int(np.prod(l["out_shape"]))), dtype=np.uint8) for l in layers]
    v_final = [None if l["kind"] == "maxpool2d" else np.zeros((B, int(np.prod(l["out_shape"]))), np.int64)
               for l in layers]
    preds = np.zeros(B, dtype=np.int64)
    for b in range(B):
        u = np.zeros(x.shape[1], dtype=np.int64)
        V = [None if l["kind"] == "maxpool2d" else _per_neuron(l, l["v_init"]).copy() for l in layers]
        hist = [[] for _ in layers]
        for t in range(T):
            if encoding == "rate":
                u += x[b]
                inp = (u >= input_max).astype(np.int64)
                u -= input_max * inp
            else:
                inp = x[b].copy()
            for li, l in enumerate(layers):
                if l["kind"] == "maxpool2d":
                    out = _pool(l, inp)
                else:
                    hist[li].append(_current(l, inp))
                    h = l.get("h", [1])
                    cur = sum(int(h[k]) * hist[li][t - k] for k in range(len(h)) if t - k >= 0)
                    th = _per_neuron(l, l["threshold"])
                    if l.get("leak") is not None:
                        num, shift = l["leak"]
                        V[li] = (V[li] * num) >> shift        # arithmetic shift = floor
                    V[li] = V[li] + cur
                    fire = not (li == n_layers - 1 and readout == "membrane")
                    out = (V[li] >= th).astype(np.int64) if fire else np.zeros_like(V[li])
                    if l.get("reset", "subtract") == "subtract":
                        V[li] = V[li] - th * out
                    else:
                        V[li] = V[li] * (1 - out)
                spikes[li][b, t] = out
                inp = out
        for li in range(n_layers):
            if V[li] is not None:
                v_final[li][b] = V[li]
        counts = spikes[-1][b].sum(axis=0).astype(np.int64)
        v = v_final[-1][b]
        if readout == "count":
            best = np.flatnonzero(counts == counts.max())
            preds[b] = best[np.argmax(v[best])]
        else:
            preds[b] = int(np.argmax(v))
    return spikes, v_final, preds


def run_tsc(layers, x, *, T, input_max):
    """TSC semantics: q = clamp(floor((W q_in + b) / theta), 0, Q), max pooling, last layer V.
    Returns (inputs q0 (B, n), activations per layer but the last, v_final per layer (None for
    pools), predictions)."""
    x = np.asarray(x, dtype=np.int64)
    Q = T - 1
    q0 = (x * Q + input_max // 2) // input_max
    B = len(x)
    acts = [[] for _ in layers[:-1]]
    vf = [[] if l["kind"] != "maxpool2d" else None for l in layers]
    preds = np.zeros(B, dtype=np.int64)
    for b in range(B):
        a = q0[b]
        for li, l in enumerate(layers):
            if l["kind"] == "maxpool2d":
                a = _pool(l, a)
                acts[li].append(a)
                continue
            z = _current(l, a)
            vf[li].append(z)
            if li == len(layers) - 1:
                preds[b] = int(np.argmax(z))
                break
            th = _per_neuron(l, l["threshold"])
            a = np.clip(z // th, 0, Q)          # Python / NumPy floor division of integers
            acts[li].append(a)
    return q0, [np.array(a) for a in acts], [None if v is None else np.array(v) for v in vf], preds
