"""Hardware configuration: golden's core geometry plus the memory images of one netlist."""

from __future__ import annotations

import numpy as np

from golden.geometry import COUNTER_BITS, MAX_LANES, ConfigError, CoreGeometry, LayerHW

__all__ = ["CoreConfig", "ConfigError", "pack_lanes", "COUNTER_BITS", "MAX_LANES", "LayerHW"]


def pack_lanes(values, width: int) -> int:
    """Pack a sequence of integers (two's complement, ``width`` bits each) lane 0 first."""
    word, mask = 0, (1 << width) - 1
    for p, v in enumerate(values):
        word |= (int(v) & mask) << (p * width)
    return word


class CoreConfig(CoreGeometry):
    """:class:`golden.geometry.CoreGeometry` plus the initial contents of the weight and parameter
    memories."""

    # ---------------------------------------------------------------------------------------
    # memory images

    def weight_init(self) -> list[int]:
        P, words = self.P, []
        for l, lh in zip(self.model.layers, self.layers):
            w = np.zeros((lh.groups * P, l.n_in), dtype=np.int64)
            w[: l.n_out] = l.weight
            for g in range(lh.groups):
                for i in range(l.n_in):
                    words.append(pack_lanes(w[g * P:(g + 1) * P, i], self.wbits))
        return words

    def param_fields(self) -> list[tuple[str, int]]:
        return [("bias", self.pbits), ("thr", self.pbits), ("v_init", self.pbits), ("bmt", self.pbits)]

    def param_init(self) -> list[int]:
        """Parameter words: per lane (bias, threshold, v_init, bias - threshold); padding lanes get
        threshold 1 (their spikes are masked anyway)."""
        P, words, pb = self.P, [], self.pbits
        for l, lh in zip(self.model.layers, self.layers):
            n = lh.groups * P
            bias = np.zeros(n, np.int64); thr = np.ones(n, np.int64); v0 = np.zeros(n, np.int64)
            bias[: l.n_out], thr[: l.n_out], v0[: l.n_out] = l.bias, l.threshold, l.v_init
            for g in range(lh.groups):
                sl = slice(g * P, (g + 1) * P)
                lanes = [pack_lanes([b, t, v, b - t], pb) for b, t, v in zip(bias[sl], thr[sl], v0[sl])]
                words.append(pack_lanes(lanes, 4 * pb))
        return words
