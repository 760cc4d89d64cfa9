"""Hardware configuration: golden's core geometry plus the memory images of one netlist."""

from __future__ import annotations

import numpy as np

from golden.geometry import COUNTER_BITS, MAX_LANES, PARAM_FIELDS, ConfigError, CoreGeometry, LayerHW, map_pack

__all__ = ["CoreConfig", "ConfigError", "pack_lanes", "packed_columns", "COUNTER_BITS", "MAX_LANES", "LayerHW"]


def pack_lanes(values, width: int) -> int:
    """Pack a sequence of integers (two's complement, ``width`` bits each) lane 0 first."""
    word, mask = 0, (1 << width) - 1
    for p, v in enumerate(values):
        word |= (int(v) & mask) << (p * width)
    return word


def pack_fields(values, widths) -> int:
    """Pack integers (two's complement) into fields of the given widths, the first lowest."""
    word, at = 0, 0
    for v, w in zip(values, widths, strict=True):
        word |= (int(v) & ((1 << w) - 1)) << at
        at += w
    return word


class CoreConfig(CoreGeometry):
    """:class:`golden.geometry.CoreGeometry` plus the initial contents of the weight and parameter
    memories."""

    # ---------------------------------------------------------------------------------------
    # memory images

    def weight_init(self) -> list[int]:
        """Weight words, layer after layer (docs/spec.md section 3): a dense layer's word (g, i) holds
        W[g*P + p, i] in lane p; after a conv2d or maxpool2d source, i is the source's packed index
        ``packed_word * P + p`` (zero where the packed index names no neuron); a conv2d layer's word
        (og, c, ky, kx) holds W[og*P + p, c, ky, kx]."""
        P, words = self.P, []
        src_shape = tuple(self.model.input_shape) if self.model.layers[0].kind != "dense" else None
        for l, lh in zip(self.model.layers, self.layers):
            if l.kind == "conv2d":
                Co, C, K, _ = l.weight.shape
                w = np.zeros((lh.groups * P, C, K, K), dtype=np.int64)
                w[:Co] = l.weight
                for og in range(lh.groups):
                    for c in range(C):
                        for ky in range(K):
                            for kx in range(K):
                                words.append(pack_lanes(w[og * P:(og + 1) * P, c, ky, kx], self.wbits))
            elif l.kind == "dense":
                w = np.zeros((lh.groups * P, lh.n_in), dtype=np.int64)
                if src_shape is None:                 # a flat source: P consecutive neurons per word
                    w[: l.n_out] = l.weight
                else:                                 # columns in the source map's packed order
                    w[: l.n_out, packed_columns(src_shape, P)] = l.weight
                for g in range(lh.groups):
                    for i in range(lh.n_in):
                        words.append(pack_lanes(w[g * P:(g + 1) * P, i], self.wbits))
            src_shape = tuple(l.out_shape) if l.kind != "dense" else None
        return words

    def param_init(self) -> list[int]:
        """Parameter words: per lane (bias, threshold, v_init, bias - threshold) of a dense group's
        neurons or a conv2d channel group's channels; padding lanes get threshold 1 (their spikes are
        masked anyway). maxpool2d layers have none."""
        P, words = self.P, []
        widths = [self.param_bits[k] for k in PARAM_FIELDS]
        for l, lh in zip(self.model.layers, self.layers):
            if l.kind == "maxpool2d":
                continue
            n = lh.groups * P
            real = l.out_shape[0] if l.kind == "conv2d" else l.n_out
            bias = np.zeros(n, np.int64); thr = np.ones(n, np.int64); v0 = np.zeros(n, np.int64)
            bias[:real], thr[:real], v0[:real] = l.bias, l.threshold, l.v_init
            for g in range(lh.groups):
                sl = slice(g * P, (g + 1) * P)
                lanes = [pack_fields([b, t, v, b - t], widths) for b, t, v in zip(bias[sl], thr[sl], v0[sl])]
                words.append(pack_lanes(lanes, self.param_lane_bits))
        return words


def packed_columns(shape, P: int) -> np.ndarray:
    """For a [C, H, W] map: the packed index (``hw`` event index ``packed_word * P + p``) of every neuron,
    in the flat C-major order of golden (``(c * H + y) * W + x``)."""
    C, H, W = shape
    bx, by, _ = map_pack(shape, P)
    c, y, x = np.meshgrid(np.arange(C), np.arange(H), np.arange(W), indexing="ij")
    return ((((c // P) << (bx + by)) | (y << bx) | x) * P + c % P).reshape(-1)
