"""NIR plans to golden integer models and back: post-training quantization, the float reference
run, the exact rebuild of our own exports, and the export itself.

* :func:`float_run` runs a :class:`~quant.nir_graph.Plan` in float64, the discrete dynamics the
  source framework trained (``v <- a v + g (W s + b)``, fire at ``v >= v_threshold``, reset to 0),
  on the input ``x * input_scale`` every step: the source accuracy.
* :func:`quantize` turns a plan into a ``golden.Model`` (coding rate, direct encoding, reset zero):
  per layer one scale ``s = clip * max|W| / (2**(B-1) - 1)``, integers ``round(W/s)``,
  ``round(b/s)``, ``max(1, round(theta/s))``. Spikes are 0/1 whatever the scale, so each layer's
  scale is free and the integer network only rounds. A decay ``a`` becomes the leak
  ``[round(a * 2**shift), shift]``; :func:`leak_report` states its error.
* :func:`calibrate` picks each layer's clip (greedily, first layer first) that makes golden agree
  most often with the float run on calibration samples.
* :func:`integer_model` rebuilds the model a graph of ours describes, exactly, from its node fields
  and the integer metadata; :func:`to_nir` writes that graph.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import numpy as np

import golden
from golden.model import ModelError

from .nir_graph import SPIKEFORGE_KEY, NirError, Plan, Stage

__all__ = ["PTQConfig", "float_run", "quantize", "calibrate", "leak_report", "graph_meta", "integer_model",
           "to_nir", "CLIPS", "FORMAT", "export_warnings"]

CLIPS = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5)     # calibration candidates: fraction of max|W| kept in range
FORMAT = "spikeforge-integer-model"


@dataclass(frozen=True)
class PTQConfig:
    """How a float plan becomes an integer model."""

    input_scale: float            # the float network saw x * input_scale
    T: int
    weight_bits: int
    input_max: int
    input_shape: tuple[int, ...]
    leak_shift: int = 8


# ---------------------------------------------------------------------------------------------
# float reference


def _effective(st: Stage, i: int, input_scale: float) -> tuple[np.ndarray, np.ndarray]:
    """W and b of the discrete update: the neuron's gain per unit folded in (and the input scale into
    layer 0's weights)."""
    g = st.gain.reshape((-1,) + (1,) * (st.weight.ndim - 1))
    w = st.weight * g * (input_scale if i == 0 else 1.0)
    return w, st.bias * st.gain


def _per_neuron(st: Stage, a: np.ndarray) -> np.ndarray:
    return np.repeat(a, int(np.prod(st.out_shape)) // len(a))


def _syn_float(st: Stage, w: np.ndarray, a: np.ndarray) -> np.ndarray:
    """One step's weighted sum in float64: (N, n_in) -> (N, n_out)."""
    if st.kind == "dense":
        return a @ w.T
    import torch
    import torch.nn.functional as F
    img = torch.from_numpy(np.ascontiguousarray(a.reshape(-1, *st.in_shape)))
    out = F.conv2d(img, torch.from_numpy(np.ascontiguousarray(w)), stride=st.stride, padding=st.padding)
    return out.reshape(a.shape[0], -1).numpy()


def float_run(plan: Plan, x: np.ndarray, *, input_scale: float, T: int, batch_size: int = 256) -> dict:
    """The source network in float64 over T steps. Returns ``predictions``, ``counts`` and
    ``membranes`` of the last layer (count readout: argmax of (count, V), like the core). Runs
    ``batch_size`` samples at a time: a layer's spikes take B x T x n floats."""
    x = np.asarray(x, dtype=np.float64)
    parts = [_float_batch(plan, x[i:i + batch_size], input_scale, T) for i in range(0, max(len(x), 1), batch_size)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _float_batch(plan: Plan, x: np.ndarray, input_scale: float, T: int) -> dict:
    B = x.shape[0]
    spikes = None
    for i, st in enumerate(plan.stages):
        w, b = _effective(st, i, input_scale)
        bias = _per_neuron(st, b)
        if spikes is None:
            cur = np.broadcast_to((_syn_float(st, w, x) + bias)[:, None, :], (B, T, len(bias)))
        else:
            cur = (_syn_float(st, w, spikes.reshape(B * T, -1)) + bias).reshape(B, T, -1)
        v = np.zeros((B, cur.shape[2]))
        out = np.zeros((B, T, cur.shape[2]))
        thr = _per_neuron(st, st.threshold) if st.fire else None
        for t in range(T):
            if st.decay is not None:
                v = st.decay * v
            v = v + cur[:, t]
            if st.fire:
                s = v >= thr
                v = np.where(s, 0.0, v)
                out[:, t] = s
        spikes = out
    counts = spikes.sum(axis=1)
    if plan.readout == "count":
        order = np.lexsort((-np.arange(v.shape[1])[None].repeat(B, 0), v, counts), axis=1)
        pred = order[:, -1]
    else:
        pred = np.argmax(v, axis=1)
    return {"predictions": pred.astype(np.int64), "counts": counts, "membranes": v}


# ---------------------------------------------------------------------------------------------
# quantization


def _leak(decay: float | None, shift: int):
    if decay is None:
        return None
    num = int(np.clip(np.rint(decay * (1 << shift)), 0, 1 << shift))
    return (num, shift)


def leak_report(plan: Plan, cfg: PTQConfig) -> list[dict]:
    """Per leaky layer: the NIR decay a = 1 - dt/tau, the integer leak, and the approximation error."""
    rows = []
    for i, st in enumerate(plan.stages):
        if st.decay is None:
            continue
        num, shift = _leak(st.decay, cfg.leak_shift)
        a_int = num / (1 << shift)
        rows.append({"layer": i, "node": st.neuron, "decay": st.decay, "leak": [num, shift], "decay_int": a_int,
                     "decay_error": a_int - st.decay,
                     "tau_steps": 1.0 / (1.0 - st.decay) if st.decay < 1 else None,
                     "tau_steps_int": 1.0 / (1.0 - a_int) if a_int < 1 else None})
    return rows


def _map_model_error(e: ModelError, plan: Plan) -> NirError:
    """golden names the layer; the user knows the node."""
    m = re.match(r"layer (\d+): (.*)$", str(e))
    if m and int(m.group(1)) < len(plan.stages):
        st = plan.stages[int(m.group(1))]
        return NirError(f"node {st.node!r} (layer {m.group(1)}): {m.group(2)}")
    return NirError(str(e))


def quantize(plan: Plan, cfg: PTQConfig, clips=None) -> "golden.Model":
    """The integer model of ``plan`` (see the module docstring); ``clips`` per layer, default 1."""
    clips = list(clips) if clips is not None else [1.0] * len(plan.stages)
    qmax = (1 << (cfg.weight_bits - 1)) - 1
    layers = []
    for i, (st, clip) in enumerate(zip(plan.stages, clips)):
        w, b = _effective(st, i, cfg.input_scale)
        thr = st.threshold if st.fire else None      # the gain scales the input, not the threshold
        m = float(np.abs(w).max())
        if m == 0.0:
            m = float(max(np.abs(b).max(initial=0.0), np.abs(thr).max(initial=0.0) if thr is not None else 0.0)) or 1.0
        s = clip * m / qmax
        wi = np.clip(np.rint(w / s), -qmax, qmax).astype(np.int64)
        bi = np.rint(b / s).astype(np.int64)
        ti = np.maximum(1, np.rint(thr / s)).astype(np.int64) if thr is not None else np.ones(len(b), np.int64)
        kw = dict(reset="zero", leak=_leak(st.decay, cfg.leak_shift), _layer=i)
        try:
            if st.kind == "conv2d":
                layers.append(golden.Conv2d(wi, bi, ti, 0, in_shape=st.in_shape, stride=st.stride,
                                            padding=st.padding, **kw))
            else:
                layers.append(golden.Dense(wi, bi, ti, 0, **kw))
        except ModelError as e:
            raise _map_model_error(e, plan) from None
    try:
        return golden.Model(layers, coding="rate", T=cfg.T, encoding="direct", input_max=cfg.input_max,
                            readout=plan.readout, weight_bits=cfg.weight_bits, v_bits=None,
                            input_shape=list(cfg.input_shape))
    except ModelError as e:
        raise _map_model_error(e, plan) from None


def calibrate(plan: Plan, cfg: PTQConfig, x: np.ndarray, candidates=CLIPS) -> tuple[list[float], float]:
    """Per layer, the clip in ``candidates`` whose integer model agrees most with the float run on
    ``x`` (ties: the larger clip); returns the clips and that agreement."""
    ref = float_run(plan, x, input_scale=cfg.input_scale, T=cfg.T)["predictions"]
    clips = [1.0] * len(plan.stages)
    best_agree = 0.0
    for i in range(len(plan.stages)):
        best = None
        for c in candidates:
            trial = clips[:i] + [c] + clips[i + 1:]
            pred = golden.run(quantize(plan, cfg, trial), x).predictions
            agree = float((pred == ref).mean())
            if best is None or agree > best[0]:
                best = (agree, c)
        best_agree, clips[i] = best
    return clips, best_agree


# ---------------------------------------------------------------------------------------------
# our own graphs


def _ints(a, what: str, node: str) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if not np.all(np.isfinite(a)) or np.any(a != np.rint(a)):
        raise NirError(f"node {node!r}: {what} holds non-integers although the graph carries {SPIKEFORGE_KEY} "
                       "integer metadata (edited after export?)")
    return np.rint(a).astype(np.int64)


def graph_meta(metadata: dict) -> dict | None:
    """Our integer model's metadata, if a graph's ``metadata`` carries it."""
    raw = (metadata or {}).get(SPIKEFORGE_KEY)
    if raw is None:
        return None
    try:
        meta = json.loads(raw.decode("utf8") if isinstance(raw, bytes) else str(raw))
    except ValueError:
        raise NirError(f"graph metadata {SPIKEFORGE_KEY!r} is not valid JSON") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise NirError(f"graph metadata {SPIKEFORGE_KEY!r} is not a {FORMAT} description")
    return meta


def integer_model(plan: Plan, meta: dict) -> "golden.Model":
    """The exact integer model of a graph written by :func:`to_nir`: weights, biases and thresholds
    from the nodes (which must hold integers), what NIR cannot say (v_init, subtract reset, the exact
    leak, a membrane readout's threshold) from the metadata."""
    layers = []
    for i, st in enumerate(plan.stages):
        lm = st.metadata
        if lm.get("layer") != i:
            raise NirError(f"node {st.node!r}: its {SPIKEFORGE_KEY} metadata is for layer {lm.get('layer')}, "
                           f"but it is layer {i} of the chain")
        if np.any(np.abs(st.gain - 1.0) > 1e-9):
            raise NirError(f"node {st.neuron or st.node!r}: input gain dt*r/tau = {st.gain[0]:g}, not 1 as "
                           "written by quant.nir export (edited, or imported with another --dt?)")
        leak = lm.get("leak")
        if (st.decay is None) != (leak is None or leak[0] == (1 << leak[1])):
            raise NirError(f"node {st.neuron or st.node!r}: a {st.neuron_type or 'readout'} node but the metadata "
                           f"leak is {leak}")
        if st.decay is not None:
            if abs(st.decay - leak[0] / (1 << leak[1])) > 1e-9:
                raise NirError(f"node {st.neuron!r}: decay {st.decay:g} does not match the metadata leak {leak}")
        w, b = _ints(st.weight, "weight", st.node), _ints(st.bias, "bias", st.node)
        thr = _ints(st.threshold, "v_threshold", st.neuron) if st.fire else np.asarray(lm.get("threshold"))
        kw = dict(reset=lm.get("reset", "zero"), leak=leak, _layer=i)
        try:
            if st.kind == "conv2d":
                layers.append(golden.Conv2d(w, b, thr, lm.get("v_init", 0), in_shape=st.in_shape, stride=st.stride,
                                            padding=st.padding, **kw))
            else:
                layers.append(golden.Dense(w, b, thr, lm.get("v_init", 0), **kw))
        except ModelError as e:
            raise _map_model_error(e, plan) from None
    if meta.get("readout") != plan.readout:
        raise NirError(f"metadata readout {meta.get('readout')!r} but the graph ends in a "
                       f"{plan.readout} readout")
    try:
        return golden.Model(layers, coding=meta["coding"], T=meta["T"], encoding=meta["encoding"],
                            input_max=meta["input_max"], readout=meta["readout"],
                            weight_bits=meta["weight_bits"], v_bits=meta["v_bits"],
                            input_shape=meta["input_shape"])
    except KeyError as e:
        raise NirError(f"graph metadata {SPIKEFORGE_KEY!r} lacks {e}") from None
    except ModelError as e:
        raise _map_model_error(e, plan) from None


def export_warnings(model: "golden.Model") -> list[str]:
    """What a NIR reader other than quant.nir will not see (each also marked in the metadata)."""
    out = []
    n = len(model.layers)
    for i, l in enumerate(model.layers):
        fires = not (i == n - 1 and model.readout == "membrane")
        if fires and l.reset == "subtract":
            out.append(f"layer {i} resets by subtraction, which NIR cannot express (IF/LIF reset to v_reset); "
                       "written as reset to 0 and marked reset='subtract' in the node metadata")
        if (l.v_init != 0).any():
            out.append(f"layer {i} starts from a non-zero v_init, which NIR has no field for; kept in the node "
                       "metadata only")
    if model.encoding == "rate":
        out.append("encoding 'rate': the graph's input is the on-chip rate encoder's spikes, not the pixel values")
    return out


def to_nir(model: "golden.Model", *, dt: float = 1e-4):
    """``model`` as a NIR graph (Input, then per layer Affine or Conv2d and IF/LIF, Flatten before a
    dense layer that reads a map, Output), with our integer metadata on the graph and on every
    weight node. Refuses (NirError) what NIR cannot carry at all: tsc coding, STEB kernels, max
    pooling."""
    import nir

    if model.coding == "tsc":
        raise NirError("coding 'tsc' is an integer ANN in time (ON/OFF events), not IF/LIF neurons; NIR cannot "
                       "describe it")
    nodes = {"input": nir.Input(input_type={"input": np.array(model.input_shape)})}
    edges, prev, shape = [], "input", tuple(model.input_shape)
    n = len(model.layers)

    def add(name, node):
        nonlocal prev
        nodes[name] = node
        edges.append((prev, name))
        prev = name

    for i, l in enumerate(model.layers):
        if l.kind == "maxpool2d":
            raise NirError(f"layer {i}: maxpool2d has no NIR node (NIR 1.0 pools by average or sum)")
        if l.has_kernel:
            raise NirError(f"layer {i}: the STEB kernel h={l.h.tolist()} has no NIR node")
        fires = not (i == n - 1 and model.readout == "membrane")
        lm = {"layer": i, "v_init": l.v_init.tolist(), "reset": l.reset,
              "leak": list(l.leak) if l.leak is not None else None, "threshold": l.threshold.tolist()}
        md = {SPIKEFORGE_KEY: json.dumps(lm)}
        if l.kind == "dense":
            if len(shape) == 3:
                add(f"flatten{i}", nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1))
            add(f"affine{i}", nir.Affine(weight=l.weight.astype(np.float64), bias=l.bias.astype(np.float64),
                                         metadata=md))
        else:
            add(f"conv{i}", nir.Conv2d(input_shape=tuple(l.in_shape[1:]), weight=l.weight.astype(np.float64),
                                       stride=l.stride, padding=l.padding, dilation=1, groups=1,
                                       bias=l.bias.astype(np.float64), metadata=md))
        shape = tuple(l.out_shape)
        decay = None if l.leak is None or l.leak[0] == (1 << l.leak[1]) else l.leak[0] / (1 << l.leak[1])
        full = lambda v: np.full(shape, float(v))       # noqa: E731
        nmd = {"reset": l.reset}
        if fires:
            thr = l.per_neuron(l.threshold).reshape(shape).astype(np.float64)
            if decay is None:
                add(f"if{i}", nir.IF(r=full(1.0 / dt), v_threshold=thr, v_reset=full(0), metadata=nmd))
            else:
                tau = dt / (1.0 - decay)
                add(f"lif{i}", nir.LIF(tau=full(tau), r=full(tau / dt), v_leak=full(0), v_threshold=thr,
                                       v_reset=full(0), metadata=nmd))
        elif decay is not None:
            tau = dt / (1.0 - decay)
            add(f"li{i}", nir.LI(tau=full(tau), r=full(tau / dt), v_leak=full(0), metadata=nmd))
    add("output", nir.Output(output_type={"output": np.array(shape)}))
    meta = {"format": FORMAT, "schema": 2, "dt": dt, **model.meta()}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={SPIKEFORGE_KEY: json.dumps(meta)}, type_check=True)
