"""Bit-exactness check: the quantized torch forward against golden, on every sample.

``golden_agreement`` is the fraction of samples whose last-layer counts, final membranes and
prediction all match. The check itself is stricter: any difference in the encoder's spikes, any
layer's spikes or any layer's final membranes fails it, and the report names the first differing
sample, layer, time step and neuron (spikes first, in (sample, layer, t, neuron) order).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import golden

__all__ = ["Agreement", "compare", "check_net", "check_model"]


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


def compare(torch_out: dict, res: "golden.Result") -> Agreement:
    """Compare a torch output dict (``quantized_eval`` / ``torch_run``) with ``golden.run(record=True)``."""
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
            where = f"input encoder: {m}".replace("layer 0", "encoder")
    if where is None:
        m = golden.first_spike_mismatch(res.spikes, torch_out["spikes"])
        if m is not None:
            where = str(m)
    if where is None:
        for li, (e, g) in enumerate(zip(res.v_final, torch_out["v_final"])):
            d = e != g
            if d.any():
                b, j = (int(v) for v in np.argwhere(d)[0])
                where = (f"sample {b}, field v_final, layer {li}, time step {res.spikes[0].shape[1] - 1}, "
                         f"neuron {j}: expected {int(e[b, j])}, got {int(g[b, j])}")
                break
    if where is None:
        m = golden.first_output_mismatch(
            {"predictions": res.predictions, "counts": res.counts, "membranes": res.membranes},
            {k: torch_out[k] for k in ("predictions", "counts", "membranes")})
        if m is not None:
            where = str(m)
    return Agreement(samples=B, agreeing=agreeing, exact=where is None and agreeing == B, mismatch=where)


def check_model(model: "golden.Model", torch_out: dict, x, y=None) -> Agreement:
    """Run golden on ``x`` and compare with ``torch_out``; fill in accuracies when labels are given."""
    res = golden.run(model, x, record=True)
    a = compare(torch_out, res)
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
