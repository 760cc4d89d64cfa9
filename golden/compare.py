"""Locate the first difference between two runs: sample, then field, then layer, step and neuron.

Used by quant/ (quantized torch vs golden) and sim/ (RTL vs golden) so a mismatch is reported
where it starts, not where it ends up.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Mismatch", "first_spike_mismatch", "first_output_mismatch"]


@dataclass(frozen=True)
class Mismatch:
    """Where two runs first differ. ``position`` is the neuron's (c, y, x) in a 3-D layer."""

    sample: int
    field: str
    layer: int | None = None
    t: int | None = None
    neuron: int | None = None
    expected: object = None
    got: object = None
    position: tuple | None = None

    def __str__(self) -> str:
        where = [f"sample {self.sample}", f"field {self.field}"]
        if self.layer is not None:
            where.append(f"layer {self.layer}")
        if self.t is not None:
            where.append(f"time step {self.t}")
        if self.neuron is not None:
            where.append(f"neuron {self.neuron}" + (" (c, y, x) = ({}, {}, {})".format(*self.position)
                                                     if self.position is not None else ""))
        return ", ".join(where) + f": expected {self.expected}, got {self.got}"


def first_spike_mismatch(expected: list, got: list, sample_offset: int = 0, shapes=None) -> Mismatch | None:
    """First differing spike over (sample, layer, t, neuron) in that priority order.

    ``expected`` and ``got`` are per-layer arrays (B, T, n). ``shapes`` (optional, e.g.
    ``[l.out_shape for l in model.layers]``) adds the (c, y, x) position for 3-D layers.
    """
    if len(expected) != len(got):
        raise ValueError(f"layer count differs: {len(expected)} vs {len(got)}")
    B = expected[0].shape[0]
    diff_any = np.zeros(B, dtype=bool)
    for e, g in zip(expected, got):
        diff_any |= (np.asarray(e) != np.asarray(g)).reshape(B, -1).any(axis=1)
    if not diff_any.any():
        return None
    b = int(np.argmax(diff_any))
    for li, (e, g) in enumerate(zip(expected, got)):
        d = np.asarray(e[b]) != np.asarray(g[b])
        if d.any():
            t, j = (int(v) for v in np.argwhere(d)[0])
            pos = None
            if shapes is not None and len(shapes[li]) == 3:
                pos = tuple(int(v) for v in np.unravel_index(j, tuple(shapes[li])))
            return Mismatch(b + sample_offset, "spikes", li, t, j, int(e[b][t, j]), int(g[b][t, j]), pos)
    raise AssertionError("unreachable")


def first_output_mismatch(expected: dict, got: dict, fields=("predictions", "counts", "membranes")) -> Mismatch | None:
    """First differing output over samples; within a sample the first field in ``fields`` order."""
    B = len(np.asarray(expected[fields[0]]))
    bad = np.zeros(B, dtype=bool)
    for f in fields:
        e, g = np.asarray(expected[f]), np.asarray(got[f])
        bad |= (e != g).reshape(B, -1).any(axis=1)
    if not bad.any():
        return None
    b = int(np.argmax(bad))
    for f in fields:
        e, g = np.asarray(expected[f])[b], np.asarray(got[f])[b]
        if np.any(e != g):
            if e.ndim:
                j = int(np.argmax(e != g))
                return Mismatch(b, f, neuron=j, expected=int(e[j]), got=int(g[j]))
            return Mismatch(b, f, expected=int(e), got=int(g))
    raise AssertionError("unreachable")
