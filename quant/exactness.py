"""Bit-exactness check: the quantized torch forward against golden, on every sample.

``golden_agreement`` is the fraction of samples whose last-layer counts, final membranes and
prediction all match. The check itself is stricter: any difference in the encoder's spikes, any
layer's spikes or any layer's final membranes fails it, and the report names the first differing
sample, layer, time step and neuron (spikes first, in (sample, layer, t, neuron) order); for a
conv2d or maxpool2d layer the neuron's (channel, y, x) follows its flat index, e.g.
``sample 3, field spikes, layer 2, time step 1, neuron 37 (c, y, x) = (2, 1, 1): expected 0, got 1``.

TSC models (no spike trains) are compared on the input quantization, every hidden activation,
every layer's final V, the membranes and the predictions; the report names the first differing
sample, field, layer and neuron, e.g. ``sample 5, field activations, layer 0, neuron 1: expected 3,
got 4``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

import golden

__all__ = ["Agreement", "compare", "check_net", "check_model", "describe"]


@dataclass
class Agreement:
    samples: int
    agreeing: int          # samples whose counts, membranes and prediction match
    exact: bool            # everything (all spikes, all final membranes) matches
    mismatch: str | None   # where the first difference is, or None
    golden_accuracy: float | None = None
    torch_accuracy: float | None = None

    @property
    def fraction(self) -> float:
        return self.agreeing / self.samples if self.samples else 1.0


def _shape(model, layer: int | None):
    """Output shape of a model layer; layer None: the model's input shape."""
    if model is None:
        return None
    if layer is None:
        return tuple(getattr(model, "input_shape", None) or (model.n_in,))
    l = model.layers[layer]
    return tuple(getattr(l, "out_shape", (l.n_out,)))


def describe(m: "golden.Mismatch", model=None, *, input_layer: bool = False) -> str:
    """``str(m)``, with the neuron's (c, y, x) position (golden's format) in image-shaped layers."""
    shape = _shape(model, None if input_layer else m.layer)
    if (shape is not None and len(shape) == 3 and m.neuron is not None and m.position is None
            and m.neuron < int(np.prod(shape))):
        m = dataclasses.replace(m, position=tuple(int(v) for v in np.unravel_index(m.neuron, shape)))
    return str(m)


def compare(torch_out: dict, res: "golden.Result", model=None) -> Agreement:
    """Compare a torch output dict (``quantized_eval`` / ``torch_run``) with ``golden.run(record=True)``.

    ``model`` (optional) only adds the (c, y, x) of a differing neuron in image-shaped layers."""
    if getattr(res, "coding", "rate") == "tsc":
        return _compare_tsc(torch_out, res, model)
    if res.spikes is None:
        raise ValueError("golden result must be recorded (golden.run(..., record=True))")
    B = len(res.predictions)
    ok = np.ones(B, dtype=bool)
    for f in ("counts", "membranes"):
        ok &= (np.asarray(torch_out[f]) == getattr(res, f)).reshape(B, -1).all(axis=1)
    ok &= np.asarray(torch_out["predictions"]) == res.predictions
    agreeing = int(ok.sum())

    where = None
    if res.input_spikes is not None:
        m = golden.first_spike_mismatch([res.input_spikes], [torch_out["input_spikes"]])
        if m is not None:
            where = f"input encoder: {describe(m, model, input_layer=True)}".replace("layer 0", "encoder")
    if where is None:
        m = golden.first_spike_mismatch(res.spikes, torch_out["spikes"])
        if m is not None:
            where = describe(m, model)
    if where is None:
        if len(res.v_final) != len(torch_out["v_final"]):
            raise ValueError("layer count differs between golden and torch")
        for li, (e, g) in enumerate(zip(res.v_final, torch_out["v_final"])):
            if e is None or g is None:       # maxpool2d: no neurons, no membranes
                if (e is None) != (g is None):
                    raise ValueError(f"layer {li}: golden and torch disagree on whether it has membranes")
                continue
            d = e != g
            if d.any():
                b, j = (int(v) for v in np.argwhere(d)[0])
                m = golden.Mismatch(b, "v_final", li, res.spikes[0].shape[1] - 1, j, int(e[b, j]), int(g[b, j]))
                where = describe(m, model)
                break
    if where is None:
        m = golden.first_output_mismatch(
            {"predictions": res.predictions, "counts": res.counts, "membranes": res.membranes},
            {k: torch_out[k] for k in ("predictions", "counts", "membranes")})
        if m is not None:
            where = str(m)
    return Agreement(samples=B, agreeing=agreeing, exact=where is None and agreeing == B, mismatch=where)


def _compare_tsc(torch_out: dict, res: "golden.Result", model=None) -> Agreement:
    """TSC: compare the input quantization (through golden's input ON/OFF events), every hidden
    layer's activation, every layer's final V, the membranes and the predictions. The first
    difference is reported in (sample, field, layer, neuron) order: the first differing sample,
    then within it inputs, activations layer by layer, v_final layer by layer, predictions,
    membranes."""
    if res.events is None or res.activations is None:
        raise ValueError("golden result must be recorded (golden.run(..., record=True))")
    B = len(res.predictions)
    ok = np.ones(B, dtype=bool)
    for f in ("counts", "membranes"):
        ok &= (np.asarray(torch_out[f]) == getattr(res, f)).reshape(B, -1).all(axis=1)
    ok &= np.asarray(torch_out["predictions"]) == res.predictions
    agreeing = int(ok.sum())

    # golden's quantized inputs, read back from its input events (the OFF event's step; 0: no events)
    off = res.input_events == -1
    q_gold = np.where(off.any(axis=1), off.argmax(axis=1), 0).astype(np.int64)
    # (field, layer, expected (B, ...), got (B, ...)) in reporting order within a sample
    fields = [("inputs", None, q_gold, np.asarray(torch_out["inputs"]))]
    fields += [("activations", li, e, np.asarray(g)) for li, (e, g) in
               enumerate(zip(res.activations, torch_out["activations"]))]
    for li, (e, g) in enumerate(zip(res.v_final, torch_out["v_final"])):
        if e is None or g is None:           # maxpool2d: no neurons, no V
            if (e is None) != (g is None):
                raise ValueError(f"layer {li}: golden and torch disagree on whether it has a V")
            continue
        fields.append(("v_final", li, e, np.asarray(g)))
    fields += [("predictions", None, res.predictions, np.asarray(torch_out["predictions"])),
               ("membranes", None, res.membranes, np.asarray(torch_out["membranes"]))]
    if len(res.activations) != len(torch_out["activations"]) or len(res.v_final) != len(torch_out["v_final"]):
        raise ValueError("layer count differs between golden and torch")
    bad = np.zeros(B, dtype=bool)
    for _, _, e, g in fields:
        if e.shape != g.shape:
            raise ValueError(f"shape differs: golden {e.shape} vs torch {g.shape}")
        bad |= (e != g).reshape(B, -1).any(axis=1)
    where = None
    if bad.any():
        b = int(np.argmax(bad))
        for name, li, e, g in fields:
            d = np.atleast_1d(e[b] != g[b])
            if d.any():
                idx = tuple(int(v) for v in np.argwhere(d)[0])
                ev, gv = np.atleast_1d(e[b])[idx], np.atleast_1d(g[b])[idx]
                if name == "inputs":
                    m = golden.Mismatch(b, name, None, None, idx[0], int(ev), int(gv))
                    where = describe(m, model, input_layer=True)
                elif name == "predictions":
                    where = str(golden.Mismatch(b, name, None, None, None, int(ev), int(gv)))
                else:
                    m = golden.Mismatch(b, name, li, None, idx[0], int(ev), int(gv))
                    where = describe(m, model) if name != "membranes" else str(m)
                break
    return Agreement(samples=B, agreeing=agreeing, exact=where is None and agreeing == B, mismatch=where)


def check_model(model: "golden.Model", torch_out: dict, x, y=None) -> Agreement:
    """Run golden on ``x`` and compare with ``torch_out``; fill in accuracies when labels are given."""
    res = golden.run(model, x, record=True)
    a = compare(torch_out, res, model)
    if y is not None and len(y):
        a.golden_accuracy = float((res.predictions == y).mean())
        a.torch_accuracy = float((np.asarray(torch_out["predictions"]) == y).mean())
    return a


def check_net(net, x, y=None):
    """Export ``net``, run its own quantized eval and golden on ``x``; returns (model, Agreement)."""
    from .export import to_golden
    from .net import exact_dtype
    model = to_golden(net)
    out = net.quantized_eval(x, dtype=exact_dtype(model))
    return model, check_model(model, out, x, y)
