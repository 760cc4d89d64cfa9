"""The integer model: the hand-off between quant/, golden/, hw/ and sim/.

A :class:`Model` is a list of :class:`Dense` layers plus the coding metadata. Constructing one
validates everything (shapes, dtypes, ranges against the declared bit widths, thresholds) and runs
the worst-case width analysis, so an object that exists is an object every stage can execute
exactly, with no overflow and no saturation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = [
    "ModelError",
    "Dense",
    "Model",
    "LayerWidths",
    "CODINGS",
    "ENCODINGS",
    "READOUTS",
    "SUPPORTED_CODINGS",
    "CODING_ENCODINGS",
    "CODING_READOUTS",
    "signed_bits",
    "unsigned_bits",
]

CODINGS = ("rate", "stcb", "tsc")
SUPPORTED_CODINGS = ("rate", "stcb", "tsc")
ENCODINGS = ("rate", "direct", "tsc")
# which input encodings and readouts each coding admits
CODING_ENCODINGS = {"rate": ("rate", "direct"), "stcb": ("rate", "direct"), "tsc": ("tsc",)}
CODING_READOUTS = {"rate": ("count", "membrane"), "stcb": ("count", "membrane"), "tsc": ("membrane",)}
READOUTS = ("count", "membrane")

# int64 arithmetic in golden and float64 matmuls stay exact far below this.
MAX_V_BITS = 48
MIN_WEIGHT_BITS, MAX_WEIGHT_BITS = 2, 16


class ModelError(ValueError):
    """An integer model (or its file) is invalid. The message names the field and the layer, on one line."""

    def __init__(self, message="", *args):
        super().__init__(re.sub(r"\s*[\r\n]+\s*", " ", str(message)).strip(), *args)


def signed_bits(lo: int, hi: int) -> int:
    """Smallest two's-complement width holding every integer in [lo, hi]."""
    lo, hi = int(lo), int(hi)
    n = 1
    while not (-(1 << (n - 1)) <= lo and hi <= (1 << (n - 1)) - 1):
        n += 1
    return n


def unsigned_bits(hi: int) -> int:
    """Smallest unsigned width holding every integer in [0, hi] (at least 1)."""
    return max(1, int(hi).bit_length())


def _int_array(value, *, name: str, layer: int | None, ndim: int, shape=None) -> np.ndarray:
    where = f"layer {layer}: " if layer is not None else ""
    arr = np.asarray(value)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        if arr.dtype == object or not np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_:
            raise ModelError(f"{where}{name} must be an integer array, got dtype {arr.dtype}")
        raise ModelError(f"{where}{name} must be an integer array, got dtype {arr.dtype} "
                         "(quantize before building an integer model)")
    if arr.ndim == 0 and shape is not None and ndim == 1:
        arr = np.full(shape, int(arr), dtype=np.int64)
    if arr.ndim != ndim:
        raise ModelError(f"{where}{name} must be {ndim}-D, got shape {arr.shape}")
    if shape is not None and arr.shape != tuple(shape):
        raise ModelError(f"{where}{name} must have shape {tuple(shape)}, got {arr.shape}")
    # every value must fit the widest datapath (MAX_V_BITS) before any arithmetic, so the int64 width
    # analysis below can never overflow and wrap
    lim = 1 << (MAX_V_BITS - 1)
    if arr.size and (arr.min() < -lim or arr.max() >= lim):
        bad = np.argwhere((arr < -lim) | (arr >= lim))[0]
        raise ModelError(f"{where}{name}{list(map(int, bad))} = {int(arr[tuple(bad)])} is outside the "
                         f"{MAX_V_BITS}-bit range the hardware supports")
    return np.ascontiguousarray(arr.astype(np.int64))


class Dense:
    """A dense IF layer with integer parameters.

    Parameters
    ----------
    weight : int array (n_out, n_in)
        Signed synaptic weights.
    bias : int array (n_out,) or scalar
        Constant input current added every time step.
    threshold : int array (n_out,) or scalar
        Firing threshold, strictly positive.
    v_init : int array (n_out,) or scalar
        Membrane potential at the start of every sample.
    h : int array (K,)
        STEB temporal kernel (``stcb`` only): the current becomes ``I'[t] = sum_k h[k] I[t-k]``.
        The default ``[1]`` is the identity, and the only value the other codings accept.
    """

    def __init__(self, weight, bias=0, threshold=1, v_init=0, h=(1,), *, _layer: int | None = None):
        w = _int_array(weight, name="weight", layer=_layer, ndim=2)
        n_out, n_in = w.shape
        if n_out < 1 or n_in < 1:
            raise ModelError(f"{'layer %d: ' % _layer if _layer is not None else ''}"
                             f"weight must be non-empty, got shape {w.shape}")
        self._weight = w
        self._bias = _int_array(bias, name="bias", layer=_layer, ndim=1, shape=(n_out,))
        self._threshold = _int_array(threshold, name="threshold", layer=_layer, ndim=1, shape=(n_out,))
        self._v_init = _int_array(v_init, name="v_init", layer=_layer, ndim=1, shape=(n_out,))
        self._h = _int_array(h, name="h", layer=_layer, ndim=1)
        if not 1 <= len(self._h) <= 16:
            where = f"layer {_layer}: " if _layer is not None else ""
            raise ModelError(f"{where}h must have 1 to 16 taps, got {len(self._h)}")
        if (self._threshold <= 0).any():
            j = int(np.argmax(self._threshold <= 0))
            where = f"layer {_layer}: " if _layer is not None else ""
            raise ModelError(f"{where}threshold must be > 0, neuron {j} has {int(self._threshold[j])}")
        for arr in (self._weight, self._bias, self._threshold, self._v_init, self._h):
            arr.setflags(write=False)

    weight = property(lambda self: self._weight)
    bias = property(lambda self: self._bias)
    threshold = property(lambda self: self._threshold)
    v_init = property(lambda self: self._v_init)
    h = property(lambda self: self._h)

    @property
    def has_kernel(self) -> bool:
        """True unless h is the identity [1]."""
        return not (len(self._h) == 1 and int(self._h[0]) == 1)
    n_in = property(lambda self: self._weight.shape[1])
    n_out = property(lambda self: self._weight.shape[0])

    def __eq__(self, other):
        return (isinstance(other, Dense)
                and all(np.array_equal(getattr(self, k), getattr(other, k))
                        for k in ("weight", "bias", "threshold", "v_init", "h")))

    def __repr__(self):
        return f"Dense({self.n_in} -> {self.n_out})"


@dataclass(frozen=True)
class LayerWidths:
    """Worst-case integer ranges of one layer, from :meth:`Model.widths`.

    ``acc`` is the per-step synaptic sum (without bias), ``current`` adds the bias, ``membrane``
    bounds V at every point of the update (before and after reset). ``*_bits`` are the signed
    widths that hold those ranges.
    """

    acc_lo: int
    acc_hi: int
    current_lo: int
    current_hi: int
    v_lo: int
    v_hi: int
    acc_bits: int
    v_bits: int


class Model:
    """A validated integer SNN.

    Parameters
    ----------
    layers : sequence of Dense
    coding : {"rate", "stcb", "tsc"}
        ``rate``: time-stepped IF; ``stcb``: the same network processed train by train, with an
        optional STEB kernel per layer; ``tsc``: temporal switch coding (an integer ANN in time).
    T : int
        Time steps per sample (>= 1); for tsc the window length, Q = T - 1.
    encoding : {"rate", "direct", "tsc"}
        How the integer inputs reach the first layer (tsc coding takes encoding "tsc").
    input_max : int
        Inputs are integers in [0, input_max].
    readout : {"count", "membrane"}
        tsc takes "membrane".
    weight_bits : int
        Declared signed weight width (2..16); every weight must fit.
    v_bits : int or None
        Declared signed membrane width. ``None`` selects the minimum safe width.
    """

    def __init__(self, layers: Sequence[Dense], *, coding: str = "rate", T: int, encoding: str = "rate",
                 input_max: int, readout: str = "count", weight_bits: int = 8, v_bits: int | None = None):
        if coding not in CODINGS:
            raise ModelError(f"coding must be one of {', '.join(CODINGS)}, got {coding!r}")
        if coding not in SUPPORTED_CODINGS:
            raise ModelError(f"coding {coding!r} is not supported by this version "
                             f"(supported: {', '.join(SUPPORTED_CODINGS)})")
        if encoding not in ENCODINGS:
            raise ModelError(f"encoding must be one of {', '.join(ENCODINGS)}, got {encoding!r}")
        if readout not in READOUTS:
            raise ModelError(f"readout must be one of {', '.join(READOUTS)}, got {readout!r}")
        if encoding not in CODING_ENCODINGS[coding]:
            raise ModelError(f"coding {coding!r} needs encoding {' or '.join(map(repr, CODING_ENCODINGS[coding]))}, "
                             f"got {encoding!r}")
        if readout not in CODING_READOUTS[coding]:
            raise ModelError(f"coding {coding!r} needs readout {' or '.join(map(repr, CODING_READOUTS[coding]))}, "
                             f"got {readout!r}")
        for name, val, lo in (("T", T, 1), ("input_max", input_max, 1), ("weight_bits", weight_bits, 2)):
            if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < lo:
                raise ModelError(f"{name} must be an integer >= {lo}, got {val!r}")
        if weight_bits > MAX_WEIGHT_BITS:
            raise ModelError(f"weight_bits must be in {MIN_WEIGHT_BITS}..{MAX_WEIGHT_BITS}, got {weight_bits}")
        if T > 1024:
            raise ModelError(f"T must be <= 1024, got {T}")
        if input_max > (1 << 16) - 1:
            raise ModelError(f"input_max must be < 65536, got {input_max}")
        if coding == "tsc":
            if T < 2:
                raise ModelError(f"tsc needs a window T >= 2 (Q = T - 1 levels), got T={T}")
            if T - 1 > input_max:
                raise ModelError(f"tsc: Q = T - 1 = {T - 1} is outside the range of the input encoding: the inputs "
                                 f"have only input_max + 1 = {input_max + 1} levels (need T <= input_max + 1)")
        layers = list(layers)
        if not layers:
            raise ModelError("layers must contain at least one Dense layer")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Dense):
                raise ModelError(f"layer {i}: expected golden.Dense, got {type(layer).__name__}")
            if i and layer.n_in != layers[i - 1].n_out:
                raise ModelError(f"layer {i}: weight has n_in={layer.n_in} but layer {i - 1} has "
                                 f"n_out={layers[i - 1].n_out}")
        self._layers = tuple(layers)
        self._coding, self._T, self._encoding = coding, int(T), encoding
        self._input_max, self._readout, self._weight_bits = int(input_max), readout, int(weight_bits)

        wlo, whi = -(1 << (weight_bits - 1)), (1 << (weight_bits - 1)) - 1
        for i, layer in enumerate(layers):
            w = layer.weight
            if w.min() < wlo or w.max() > whi:
                bad = np.argwhere((w < wlo) | (w > whi))[0]
                raise ModelError(f"layer {i}: weight[{bad[0]}, {bad[1]}] = {int(w[tuple(bad)])} is outside "
                                 f"weight_bits={weight_bits} range [{wlo}, {whi}]")

        for i, layer in enumerate(layers):
            if layer.has_kernel and coding != "stcb":
                raise ModelError(f"layer {i}: a temporal kernel h={layer.h.tolist()} needs coding 'stcb' "
                                 f"({coding!r} takes only h=[1])")
            if layer.has_kernel:
                hlo, hhi = -(1 << (weight_bits - 1)), (1 << (weight_bits - 1)) - 1
                if layer.h.min() < hlo or layer.h.max() > hhi or len(layer.h) > T:
                    raise ModelError(f"layer {i}: h={layer.h.tolist()} must have at most T={T} taps within "
                                     f"weight_bits={weight_bits} range [{hlo}, {hhi}]")
        if coding == "tsc":
            for i, layer in enumerate(layers):
                if (layer.v_init != 0).any():
                    raise ModelError(f"layer {i}: tsc layers start from V = bias; v_init must be 0")
        self._widths = tuple(self._analyse(i, l) for i, l in enumerate(layers))
        needed = max(w.v_bits for w in self._widths)
        if v_bits is None:
            v_bits = needed
        if isinstance(v_bits, bool) or not isinstance(v_bits, (int, np.integer)) or v_bits < 2:
            raise ModelError(f"v_bits must be an integer >= 2 or None, got {v_bits!r}")
        if v_bits > MAX_V_BITS:
            raise ModelError(f"v_bits must be <= {MAX_V_BITS}, got {v_bits}")
        for i, w in enumerate(self._widths):
            if coding == "tsc":
                clip = int((T - 1) * layers[i].threshold.max())
                if signed_bits(0, clip) > v_bits:
                    raise ModelError(f"layer {i}: threshold * Q = {clip} cannot be represented in v_bits={v_bits}, "
                                     f"so the clip at Q = {T - 1} is not computable")
            if w.v_bits > v_bits:
                raise ModelError(f"v_bits={v_bits} is too small: layer {i} needs {w.v_bits} bits "
                                 f"(membrane range [{w.v_lo}, {w.v_hi}])")
        if needed > MAX_V_BITS:
            raise ModelError(f"model needs {needed} membrane bits, more than the supported {MAX_V_BITS}")
        self._v_bits = int(v_bits)

    def _analyse(self, i: int, layer: Dense) -> LayerWidths:
        """Worst case over all inputs: every step's input is each synapse at its worst value."""
        if self._coding == "tsc":
            return self._analyse_tsc(layer)
        smax = self._input_max if (i == 0 and self._encoding == "direct") else 1
        w = layer.weight
        acc_lo = (np.minimum(w, 0).sum(axis=1) * smax)
        acc_hi = (np.maximum(w, 0).sum(axis=1) * smax)
        cur_lo = acc_lo + layer.bias
        cur_hi = acc_hi + layer.bias
        if layer.has_kernel:
            # I'[t] = sum_k h[k] I[t-k]: each tap contributes its worst sign of the current range
            hk = layer.h[:, None]
            cur_lo, cur_hi = (np.minimum(hk * cur_lo, hk * cur_hi).sum(axis=0),
                              np.maximum(hk * cur_lo, hk * cur_hi).sum(axis=0))
        T = self._T
        # V_pre(t) <= max(v_init,0) + (t+1) max(I,0); after a reset V >= 0, else V = V_pre.
        v_hi = np.maximum(layer.v_init, 0) + T * np.maximum(cur_hi, 0)
        v_lo = np.minimum(layer.v_init, 0) + T * np.minimum(cur_lo, 0)
        # thresholds and biases live in the same datapath as V
        v_hi = np.maximum.reduce([v_hi, layer.threshold, layer.bias, cur_hi])
        v_lo = np.minimum.reduce([v_lo, layer.bias, cur_lo, -layer.threshold])
        a_lo, a_hi = int(acc_lo.min()), int(acc_hi.max())
        c_lo, c_hi = int(cur_lo.min()), int(cur_hi.max())
        lo, hi = int(v_lo.min()), int(v_hi.max())
        return LayerWidths(a_lo, a_hi, c_lo, c_hi, lo, hi, signed_bits(a_lo, a_hi), signed_bits(lo, hi))

    def _analyse_tsc(self, layer: Dense) -> LayerWidths:
        """TSC: a step's event sum is all ONs (t = 0) or only OFFs; the current C is the sum of the
        active inputs' weights; V = b + sum_t C(t) with every input active at most Q steps; the clip
        compares V with Q * theta, and the countdown keeps V - k * theta >= -1."""
        Q = self._T - 1
        w = layer.weight
        neg, pos = np.minimum(w, 0).sum(axis=1), np.maximum(w, 0).sum(axis=1)
        acc_lo, acc_hi = int(min(neg.min(), (-pos).min())), int(max(pos.max(), (-neg).max()))
        v_lo = layer.bias + Q * neg
        v_hi = layer.bias + Q * pos
        v_hi = np.maximum.reduce([v_hi, Q * layer.threshold, layer.bias, pos])
        v_lo = np.minimum.reduce([v_lo, layer.bias, neg, np.full_like(v_lo, -1), -layer.threshold])
        lo, hi = int(v_lo.min()), int(v_hi.max())
        return LayerWidths(acc_lo, acc_hi, int(neg.min()), int(pos.max()), lo, hi,
                           signed_bits(acc_lo, acc_hi), signed_bits(lo, hi))

    @property
    def Q(self) -> int | None:
        """TSC levels: q in [0, Q], Q = T - 1 (None for other codings)."""
        return self._T - 1 if self._coding == "tsc" else None

    layers = property(lambda self: self._layers)
    coding = property(lambda self: self._coding)
    T = property(lambda self: self._T)
    encoding = property(lambda self: self._encoding)
    input_max = property(lambda self: self._input_max)
    readout = property(lambda self: self._readout)
    weight_bits = property(lambda self: self._weight_bits)
    v_bits = property(lambda self: self._v_bits)

    @property
    def widths(self) -> tuple[LayerWidths, ...]:
        """Per-layer worst-case ranges; hw sizes its registers from these."""
        return self._widths

    @property
    def n_in(self) -> int:
        return self._layers[0].n_in

    @property
    def n_out(self) -> int:
        return self._layers[-1].n_out

    @property
    def sizes(self) -> list[int]:
        return [self.n_in] + [l.n_out for l in self._layers]

    def meta(self) -> dict:
        """JSON-serialisable metadata (everything but the arrays)."""
        return {"coding": self.coding, "T": self.T, "encoding": self.encoding, "input_max": self.input_max,
                "readout": self.readout, "weight_bits": self.weight_bits, "v_bits": self.v_bits,
                "layers": [{"n_in": l.n_in, "n_out": l.n_out} for l in self._layers]}

    def replace(self, **kw) -> "Model":
        """A new validated model with some constructor arguments changed."""
        args = dict(layers=self._layers, coding=self.coding, T=self.T, encoding=self.encoding,
                    input_max=self.input_max, readout=self.readout, weight_bits=self.weight_bits,
                    v_bits=self.v_bits)
        if "v_bits" not in kw and any(k in kw for k in ("layers", "T", "encoding", "input_max")):
            args["v_bits"] = None
        args.update(kw)
        layers = args.pop("layers")
        return Model(layers, **args)

    def __eq__(self, other):
        return isinstance(other, Model) and self.meta() == other.meta() and self._layers == other._layers

    def __repr__(self):
        return (f"Model({'-'.join(map(str, self.sizes))}, coding={self.coding!r}, T={self.T}, "
                f"encoding={self.encoding!r}, readout={self.readout!r}, weight_bits={self.weight_bits}, "
                f"v_bits={self.v_bits})")
