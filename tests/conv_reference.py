"""An independent, deliberately plain reference for schema-2 networks (tests only).

Written from docs/spec.md section 2, not from golden/engine.py: Python integers, one sample, one step,
one layer, one neuron and one synapse at a time, step-major (layer l's spikes at step t feed layer
l+1 at step t). No NumPy arithmetic, no im2col, no float; the leak is Python's exact ``(V * num) >> shift``.
"""

from __future__ import annotations


def _conv_current(layer, s_in, o, y, x):
    """b[o] + sum_{c,ky,kx} W[o,c,ky,kx] * s[c, y*S+ky-p, x*S+kx-p], zero outside the map."""
    C, H, W = layer.in_shape
    K, S, p = layer.kernel, layer.stride, layer.padding
    total = int(layer.bias[o])
    for c in range(C):
        for ky in range(K):
            for kx in range(K):
                iy, ix = y * S + ky - p, x * S + kx - p
                if 0 <= iy < H and 0 <= ix < W:
                    total += int(layer.weight[o, c, ky, kx]) * s_in[(c * H + iy) * W + ix]
    return total


def _currents(layer, s_in):
    """This step's currents of every neuron of a dense or conv2d layer, flattened (o, y, x)."""
    if layer.kind == "dense":
        return [int(layer.bias[j]) + sum(int(layer.weight[j, i]) * s_in[i] for i in range(layer.n_in))
                for j in range(layer.n_out)]
    Co, Ho, Wo = layer.out_shape
    return [_conv_current(layer, s_in, o, y, x) for o in range(Co) for y in range(Ho) for x in range(Wo)]


def _pool(layer, a):
    """Max over each K x K window (on 0/1 spikes: the OR), flattened (c, y, x)."""
    C, H, W = layer.in_shape
    K = layer.kernel
    out = []
    for c in range(C):
        for y in range(H // K):
            for x in range(W // K):
                out.append(max(a[(c * H + K * y + dy) * W + K * x + dx] for dy in range(K) for dx in range(K)))
    return out


def _unit(layer, j):
    """Index of the bias/threshold/v_init entry of flattened neuron j (conv: its channel)."""
    if layer.kind == "dense":
        return j
    _, Ho, Wo = layer.out_shape
    return j // (Ho * Wo)


def reference_rate(model, x):
    """rate and stcb (the same network semantics): per sample, (spikes[l][t][j], v_final[l][j] or None,
    counts of the last layer, V bounds seen per layer (min, max) at every point of the update)."""
    outs = []
    for xs in x.tolist():
        u = [0] * len(xs)
        L = len(model.layers)
        V = [[int(l.v_init[_unit(l, j)]) for j in range(l.n_out)] if l.kind != "maxpool2d" else None
             for l in model.layers]
        hist = [[] for _ in model.layers]          # stcb: past currents, newest last
        spikes = [[] for _ in model.layers]
        seen = [[0, 0] for _ in model.layers]
        for t in range(model.T):
            if model.encoding == "rate":
                s_in = []
                for i, xi in enumerate(xs):
                    u[i] += xi
                    s = 1 if u[i] >= model.input_max else 0
                    u[i] -= model.input_max * s
                    s_in.append(s)
            else:
                s_in = list(xs)
            for li, l in enumerate(model.layers):
                if l.kind == "maxpool2d":
                    s_out = _pool(l, s_in)
                    spikes[li].append(s_out)
                    s_in = s_out
                    continue
                fire = not (li == L - 1 and model.readout == "membrane")
                cur = _currents(l, s_in)
                hist[li].append(cur)
                h = [int(v) for v in l.h]
                s_out = []
                for j in range(l.n_out):
                    # I'[t] = sum_k h[k] I[t-k], I[t<0] = 0
                    I = sum(h[k] * hist[li][t - k][j] for k in range(len(h)) if t - k >= 0)
                    v = V[li][j]
                    if l.leak is not None:
                        num, shift = l.leak
                        v = (v * num) >> shift
                    seen[li] = [min(seen[li][0], v), max(seen[li][1], v)]
                    v += I
                    seen[li] = [min(seen[li][0], v), max(seen[li][1], v)]
                    thr = int(l.threshold[_unit(l, j)])
                    s = 1 if (fire and v >= thr) else 0
                    if s:
                        v = v - thr if l.reset == "subtract" else 0
                    seen[li] = [min(seen[li][0], v), max(seen[li][1], v)]
                    V[li][j] = v
                    s_out.append(s)
                spikes[li].append(s_out)
                s_in = s_out
        counts = [sum(spikes[-1][t][j] for t in range(model.T)) for j in range(model.layers[-1].n_out)]
        outs.append((spikes, V, counts, seen))
    return outs


def reference_tsc(model, x):
    """tsc: the clipped-floor integer ANN, per sample: (activations of every layer but the last, V of
    every neuron layer (None for pools))."""
    Q, M = model.T - 1, model.input_max
    outs = []
    for xs in x.tolist():
        a = [(xi * Q + M // 2) // M for xi in xs]
        acts, vs = [], []
        for li, l in enumerate(model.layers):
            if l.kind == "maxpool2d":
                a = _pool(l, a)
                vs.append(None)
            else:
                V = _currents(l, a)
                vs.append(V)
                a = [min(max(v // int(l.threshold[_unit(l, j)]), 0), Q) for j, v in enumerate(V)]
            if li < len(model.layers) - 1:
                acts.append(a)
        outs.append((acts, vs))
    return outs
