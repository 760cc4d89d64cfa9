"""The integer model: the hand-off between quant/, golden/, hw/ and sim/.

A :class:`Model` is a list of layers (:class:`Dense`, :class:`Conv2d`, :class:`MaxPool2d`) plus the
coding metadata. Constructing one validates everything (shapes and how they chain, dtypes, ranges
against the declared bit widths, thresholds, neuron options) and runs the worst-case width analysis,
so an object that exists is an object every stage can execute exactly, with no overflow and no
saturation. docs/spec.md section 1 is the contract.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = [
    "ModelError",
    "Dense",
    "Conv2d",
    "MaxPool2d",
    "Model",
    "LayerWidths",
    "CODINGS",
    "ENCODINGS",
    "READOUTS",
    "SUPPORTED_CODINGS",
    "CODING_ENCODINGS",
    "CODING_READOUTS",
    "RESETS",
    "LAYER_KINDS",
    "signed_bits",
    "unsigned_bits",
    "leak_apply",
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
RESETS = ("subtract", "zero")
LAYER_KINDS = ("dense", "conv2d", "maxpool2d")
MAX_KERNEL = 16              # conv and pool kernels K (square), and conv strides
MAX_DIM = 4096               # each of C, H, W
MAX_MAP = 1 << 24            # C * H * W of any layer's input or output
MAX_LEAK_SHIFT = 16
# the leak's product V * num (v_bits + bits(num) signed bits) must fit the multiplier and int64
MAX_LEAK_PRODUCT_BITS = 64


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


def _where(layer: int | None) -> str:
    return f"layer {layer}: " if layer is not None else ""


def leak_apply(v, num: int, shift: int):
    """The leak ``(v * num) >> shift`` (arithmetic shift: floor), exactly.

    Works on int64 arrays and Python ints. It splits ``v = q * 2**shift + r`` (0 <= r < 2**shift) so
    the product ``v * num`` itself, which can need ``v_bits + bits(num)`` > 63 bits, is never formed:
    ``floor(v * num / 2**shift) = q * num + (r * num) >> shift``.
    """
    q = v >> shift
    r = v & ((1 << shift) - 1)
    return q * num + ((r * num) >> shift)


def _int_param(value, *, name: str, layer: int | None, lo: int, hi: int) -> int:
    """A plain integer option (not bool, not float) within [lo, hi]."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ModelError(f"{_where(layer)}{name} must be an integer in {lo}..{hi}, got {value!r}")
    if not lo <= int(value) <= hi:
        raise ModelError(f"{_where(layer)}{name} must be an integer in {lo}..{hi}, got {int(value)}")
    return int(value)


def _shape3(value, *, name: str, layer: int | None) -> tuple[int, int, int]:
    """A (C, H, W) shape of positive integers, each <= MAX_DIM, with C*H*W <= MAX_MAP."""
    if (isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 3
            or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in value)):
        raise ModelError(f"{_where(layer)}{name} must be [C, H, W] (three positive integers), got {value!r}")
    shape = tuple(int(v) for v in value)
    if any(not 1 <= v <= MAX_DIM for v in shape):
        raise ModelError(f"{_where(layer)}{name} must hold integers in 1..{MAX_DIM}, got {list(shape)}")
    if shape[0] * shape[1] * shape[2] > MAX_MAP:
        raise ModelError(f"{_where(layer)}{name} {list(shape)} holds more than {MAX_MAP} values")
    return shape


def _reset(value, layer: int | None) -> str:
    if not isinstance(value, str) or value not in RESETS:
        raise ModelError(f"{_where(layer)}reset must be one of {', '.join(map(repr, RESETS))}, got {value!r}")
    return value


def _leak(value, layer: int | None) -> tuple[int, int] | None:
    """None (IF) or (num, shift) with 0 <= shift <= 16 and 0 <= num <= 2**shift."""
    if value is None:
        return None
    if (isinstance(value, (str, bytes, dict)) or not hasattr(value, "__len__") or len(value) != 2
            or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in value)):
        raise ModelError(f"{_where(layer)}leak must be None or [num, shift] (two integers), got {value!r}")
    num, shift = int(value[0]), int(value[1])
    if not 0 <= shift <= MAX_LEAK_SHIFT:
        raise ModelError(f"{_where(layer)}leak shift must be in 0..{MAX_LEAK_SHIFT}, got leak=[{num}, {shift}]")
    if not 0 <= num <= (1 << shift):
        raise ModelError(f"{_where(layer)}leak num must be in 0..2**shift = {1 << shift}, got leak=[{num}, {shift}]")
    return (num, shift)


class _Neurons:
    """What dense and conv2d layers share: per-output-unit parameters, the STEB kernel, reset and leak.

    ``bias``, ``threshold`` and ``v_init`` have one value per *unit*: a dense neuron, or a conv2d output
    channel (shared by all its positions).
    """

    kind = ""

    def _init_params(self, n_units: int, bias, threshold, v_init, h, reset, leak, layer: int | None) -> None:
        self._bias = _int_array(bias, name="bias", layer=layer, ndim=1, shape=(n_units,))
        self._threshold = _int_array(threshold, name="threshold", layer=layer, ndim=1, shape=(n_units,))
        self._v_init = _int_array(v_init, name="v_init", layer=layer, ndim=1, shape=(n_units,))
        self._h = _int_array(h, name="h", layer=layer, ndim=1)
        if not 1 <= len(self._h) <= 16:
            raise ModelError(f"{_where(layer)}h must have 1 to 16 taps, got {len(self._h)}")
        if (self._threshold <= 0).any():
            j = int(np.argmax(self._threshold <= 0))
            unit = "channel" if self.kind == "conv2d" else "neuron"
            raise ModelError(f"{_where(layer)}threshold must be > 0, {unit} {j} has {int(self._threshold[j])}")
        self._reset = _reset(reset, layer)
        self._leak = _leak(leak, layer)
        for arr in (self._weight, self._bias, self._threshold, self._v_init, self._h):
            arr.setflags(write=False)

    weight = property(lambda self: self._weight)
    bias = property(lambda self: self._bias)
    threshold = property(lambda self: self._threshold)
    v_init = property(lambda self: self._v_init)
    h = property(lambda self: self._h)
    reset = property(lambda self: self._reset)
    leak = property(lambda self: self._leak)
    has_neurons = True

    @property
    def has_kernel(self) -> bool:
        """True unless h is the identity [1]."""
        return not (len(self._h) == 1 and int(self._h[0]) == 1)

    @property
    def n_in(self) -> int:
        return int(np.prod(self.in_shape))

    @property
    def n_out(self) -> int:
        return int(np.prod(self.out_shape))

    @property
    def positions(self) -> int:
        """Neurons per unit: 1 for dense, Ho * Wo for conv2d."""
        return self.n_out // len(self._bias)

    def per_neuron(self, values: np.ndarray) -> np.ndarray:
        """A per-unit array (bias, threshold, v_init) expanded to the layer's flattened neurons."""
        return np.repeat(values, self.positions) if self.positions > 1 else values

    def _same(self, other) -> bool:
        return (type(other) is type(self) and self.reset == other.reset and self.leak == other.leak
                and self.in_shape == other.in_shape and self.out_shape == other.out_shape
                and all(np.array_equal(getattr(self, k), getattr(other, k))
                        for k in ("weight", "bias", "threshold", "v_init", "h")))


class Dense(_Neurons):
    """A dense layer of IF (or LIF) neurons with integer parameters.

    Parameters
    ----------
    weight : int array (n_out, n_in)
        Signed synaptic weights. After a conv2d or maxpool2d layer, inputs are its flattened
        ``(c, y, x)`` outputs.
    bias : int array (n_out,) or scalar
        Constant input current added every time step.
    threshold : int array (n_out,) or scalar
        Firing threshold, strictly positive.
    v_init : int array (n_out,) or scalar
        Membrane potential at the start of every sample.
    h : int array (K,)
        STEB temporal kernel (``stcb`` only): the current becomes ``I'[t] = sum_k h[k] I[t-k]``.
        The default ``[1]`` is the identity, and the only value the other codings accept.
    reset : {"subtract", "zero"}
        After a spike, V -= threshold (the default) or V = 0.
    leak : None or (num, shift)
        LIF leak ``V <- (V * num) >> shift`` at the start of every step, step 0 included;
        ``0 <= shift <= 16``, ``0 <= num <= 2**shift``. None is IF.
    """

    kind = "dense"

    def __init__(self, weight, bias=0, threshold=1, v_init=0, h=(1,), *, reset: str = "subtract",
                 leak=None, _layer: int | None = None):
        w = _int_array(weight, name="weight", layer=_layer, ndim=2)
        n_out, n_in = w.shape
        if n_out < 1 or n_in < 1:
            raise ModelError(f"{_where(_layer)}weight must be non-empty, got shape {w.shape}")
        self._weight = w
        self._init_params(n_out, bias, threshold, v_init, h, reset, leak, _layer)

    in_shape = property(lambda self: (self._weight.shape[1],))
    out_shape = property(lambda self: (self._weight.shape[0],))
    n_in = property(lambda self: self._weight.shape[1])
    n_out = property(lambda self: self._weight.shape[0])
    positions = 1

    def per_neuron(self, values: np.ndarray) -> np.ndarray:
        return values

    def __eq__(self, other):
        return self._same(other)

    def __repr__(self):
        return f"Dense({self.n_in} -> {self.n_out})"


def conv_out_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output rows (or columns) of a convolution: (size + 2p - K) // S + 1."""
    return (size + 2 * padding - kernel) // stride + 1


class Conv2d(_Neurons):
    """A 2-D convolution of IF (or LIF) neurons, zero padding, square kernel.

    Parameters
    ----------
    weight : int array (Co, C, K, K)
    bias, threshold, v_init : int array (Co,) or scalar
        One value per output channel, shared by all its positions.
    h : int array (K,)
        STEB temporal kernel (``stcb`` only), as for :class:`Dense`.
    in_shape : (C, H, W)
        Input shape; C must equal ``weight.shape[1]``.
    stride : int
        1..16.
    padding : int
        0..K-1 zeros on every side.
    reset, leak
        As for :class:`Dense`.

    The output shape is ``(Co, Ho, Wo)`` with ``Ho = (H + 2p - K) // S + 1``; outputs (spikes,
    membranes) are flattened C-major, ``(o * Ho + y) * Wo + x``.
    """

    kind = "conv2d"

    def __init__(self, weight, bias=0, threshold=1, v_init=0, h=(1,), *, in_shape, stride: int = 1,
                 padding: int = 0, reset: str = "subtract", leak=None, _layer: int | None = None):
        w = _int_array(weight, name="weight", layer=_layer, ndim=4)
        co, c, k, k2 = w.shape
        if k != k2:
            raise ModelError(f"{_where(_layer)}weight must have a square kernel (Co, C, K, K), got shape {w.shape}")
        if co < 1 or c < 1:
            raise ModelError(f"{_where(_layer)}weight must be non-empty, got shape {w.shape}")
        if not 1 <= k <= MAX_KERNEL:
            raise ModelError(f"{_where(_layer)}kernel must be in 1..{MAX_KERNEL}, got weight shape {w.shape}")
        if co > MAX_DIM:
            raise ModelError(f"{_where(_layer)}weight has {co} output channels, more than {MAX_DIM}")
        shape = _shape3(in_shape, name="in_shape", layer=_layer)
        if shape[0] != c:
            raise ModelError(f"{_where(_layer)}in_shape {list(shape)} has C={shape[0]} but weight {w.shape} "
                             f"reads C={c} channels")
        self._stride = _int_param(stride, name="stride", layer=_layer, lo=1, hi=MAX_KERNEL)
        self._padding = _int_param(padding, name="padding", layer=_layer, lo=0, hi=k - 1)
        H, W = shape[1], shape[2]
        if H + 2 * self._padding < k or W + 2 * self._padding < k:
            raise ModelError(f"{_where(_layer)}kernel {k} does not fit in_shape {list(shape)} with "
                             f"padding {self._padding}")
        ho = conv_out_size(H, k, self._stride, self._padding)
        wo = conv_out_size(W, k, self._stride, self._padding)
        if co * ho * wo > MAX_MAP:
            raise ModelError(f"{_where(_layer)}out_shape {[co, ho, wo]} holds more than {MAX_MAP} values")
        self._weight = w
        self._in_shape = shape
        self._out_shape = (co, ho, wo)
        self._init_params(co, bias, threshold, v_init, h, reset, leak, _layer)

    in_shape = property(lambda self: self._in_shape)
    out_shape = property(lambda self: self._out_shape)
    kernel = property(lambda self: self._weight.shape[2])
    stride = property(lambda self: self._stride)
    padding = property(lambda self: self._padding)
    channels = property(lambda self: self._weight.shape[0])

    def valid_offsets_axes(self) -> tuple[np.ndarray, np.ndarray]:
        """``(nv_y (H,), nv_x (W,))`` int64: per input row (column), the kernel rows ky (columns kx)
        through which it reaches an output row (column) inside the map (docs/spec.md section 3)."""
        K, S, p = self.kernel, self._stride, self._padding
        _, H, W = self._in_shape
        _, Ho, Wo = self._out_shape

        def along(n: int, n_out: int) -> np.ndarray:
            d = np.arange(n)[:, None] + p - np.arange(K)[None, :]        # y + p - ky
            return ((d % S == 0) & (d >= 0) & (d // S < n_out)).sum(axis=1).astype(np.int64)

        return along(H, Ho), along(W, Wo)

    def valid_offsets(self) -> np.ndarray:
        """(H, W) int64: for each input pixel, the kernel offsets (ky, kx) through which it reaches an
        output position inside the map (docs/spec.md section 3, ``nv(y, x)``)."""
        nv_y, nv_x = self.valid_offsets_axes()
        return nv_y[:, None] * nv_x[None, :]

    def __eq__(self, other):
        return self._same(other) and self._stride == other._stride and self._padding == other._padding

    def __repr__(self):
        return (f"Conv2d({list(self._in_shape)} -> {list(self._out_shape)}, k={self.kernel}, "
                f"s={self._stride}, p={self._padding})")


class MaxPool2d:
    """Max pooling, stride = kernel, no padding: no neurons, no state, no parameters.

    Rate and stcb: the OR of the window's spikes at each step; tsc: the maximum value.

    Parameters
    ----------
    kernel : int
        K in 1..16; H and W of ``in_shape`` must be multiples of K.
    in_shape : (C, H, W)
    """

    kind = "maxpool2d"
    has_neurons = False
    has_kernel = False
    reset = None
    leak = None

    def __init__(self, kernel: int, *, in_shape, _layer: int | None = None):
        self._kernel = _int_param(kernel, name="kernel", layer=_layer, lo=1, hi=MAX_KERNEL)
        shape = _shape3(in_shape, name="in_shape", layer=_layer)
        C, H, W = shape
        if H % self._kernel or W % self._kernel:
            raise ModelError(f"{_where(_layer)}maxpool2d kernel {self._kernel} must divide H and W of in_shape "
                             f"{list(shape)}")
        self._in_shape = shape
        self._out_shape = (C, H // self._kernel, W // self._kernel)

    in_shape = property(lambda self: self._in_shape)
    out_shape = property(lambda self: self._out_shape)
    kernel = property(lambda self: self._kernel)
    stride = property(lambda self: self._kernel)
    channels = property(lambda self: self._in_shape[0])
    n_in = property(lambda self: int(np.prod(self._in_shape)))
    n_out = property(lambda self: int(np.prod(self._out_shape)))

    def __eq__(self, other):
        return type(other) is MaxPool2d and self._kernel == other._kernel and self._in_shape == other._in_shape

    def __repr__(self):
        return f"MaxPool2d({list(self._in_shape)} -> {list(self._out_shape)}, k={self._kernel})"


@dataclass(frozen=True)
class LayerWidths:
    """Worst-case integer ranges of one layer, from :meth:`Model.widths`.

    ``acc`` is the per-step synaptic sum (without bias), ``current`` adds the bias, ``membrane``
    bounds V at every point of the update (before and after reset, after the leak). ``*_bits`` are the
    signed widths that hold those ranges. ``leak_bits`` is ``bits(num)`` for a leaky layer (0
    otherwise): its product ``V * num`` needs ``v_bits + leak_bits`` signed bits. A maxpool2d layer has
    no arithmetic: zeros, except tsc, whose stored values and countdowns lie in ``[-1, Q]``.
    """

    acc_lo: int
    acc_hi: int
    current_lo: int
    current_hi: int
    v_lo: int
    v_hi: int
    acc_bits: int
    v_bits: int
    leak_bits: int = 0


def _input_shape(value, n_in: int, first) -> tuple[int, ...]:
    """The model's input shape: [n] or [C, H, W] holding layer 0's inputs (equal to its in_shape when
    layer 0 is spatial)."""
    if value is None:
        return tuple(first.in_shape)
    if (isinstance(value, (str, bytes, dict)) or not hasattr(value, "__len__") or len(value) not in (1, 3)
            or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 1 <= v <= MAX_MAP
                   for v in value)):
        raise ModelError(f"input_shape must be [n] or [C, H, W] of positive integers, got {value!r}")
    shape = tuple(int(v) for v in value)
    if len(shape) == 3:
        shape = _shape3(shape, name="input_shape", layer=None)
    if int(np.prod(shape)) != n_in:
        raise ModelError(f"input_shape {list(shape)} holds {int(np.prod(shape))} values but layer 0 reads {n_in}")
    if first.kind != "dense" and shape != tuple(first.in_shape):
        raise ModelError(f"input_shape {list(shape)} must equal layer 0's in_shape {list(first.in_shape)}")
    return shape


class Model:
    """A validated integer SNN.

    Parameters
    ----------
    layers : sequence of Dense, Conv2d, MaxPool2d
        Feed-forward, in order; shapes must chain exactly (a dense layer reads the flattened output
        of a spatial one); the last layer is dense.
    coding : {"rate", "stcb", "tsc"}
        ``rate``: time-stepped IF/LIF; ``stcb``: the same network processed train by train, with an
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
    input_shape : None, [n] or [C, H, W]
        Shape of a sample (flattened C-major in ``golden.run``); None takes layer 0's ``in_shape``.
    """

    def __init__(self, layers: Sequence[Dense | Conv2d | MaxPool2d], *, coding: str = "rate", T: int,
                 encoding: str = "rate", input_max: int, readout: str = "count", weight_bits: int = 8,
                 v_bits: int | None = None, input_shape: Sequence[int] | None = None):
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
            if not isinstance(layer, (Dense, Conv2d, MaxPool2d)):
                raise ModelError(f"layer {i}: expected golden.Dense, golden.Conv2d or golden.MaxPool2d, "
                                 f"got {type(layer).__name__}")
            if not i:
                continue
            prev = layers[i - 1]
            if layer.kind == "dense":
                if layer.n_in != prev.n_out:
                    if prev.kind == "dense":
                        raise ModelError(f"layer {i}: weight has n_in={layer.n_in} but layer {i - 1} has "
                                         f"n_out={prev.n_out}")
                    raise ModelError(f"layer {i}: weight has n_in={layer.n_in} but layer {i - 1} ({prev.kind}) has "
                                     f"out_shape {list(prev.out_shape)} = {prev.n_out} outputs")
            elif tuple(layer.in_shape) != tuple(prev.out_shape):
                raise ModelError(f"layer {i}: in_shape {list(layer.in_shape)} does not match layer {i - 1} "
                                 f"({prev.kind}) out_shape {list(prev.out_shape)}")
        if layers[-1].kind != "dense":
            raise ModelError(f"layer {len(layers) - 1}: the last layer must be dense (it carries the readout), "
                             f"got {layers[-1].kind}")
        if layers[0].kind == "maxpool2d" and encoding == "direct":
            raise ModelError("layer 0: maxpool2d cannot read the direct encoding's integer inputs (it takes the OR "
                             "of spikes); put a conv2d or dense layer first")
        self._input_shape = _input_shape(input_shape, layers[0].n_in, layers[0])
        self._layers = tuple(layers)
        self._coding, self._T, self._encoding = coding, int(T), encoding
        self._input_max, self._readout, self._weight_bits = int(input_max), readout, int(weight_bits)
        neurons = [(i, l) for i, l in enumerate(layers) if l.has_neurons]

        wlo, whi = -(1 << (weight_bits - 1)), (1 << (weight_bits - 1)) - 1
        for i, layer in neurons:
            w = layer.weight
            if w.min() < wlo or w.max() > whi:
                bad = np.argwhere((w < wlo) | (w > whi))[0]
                raise ModelError(f"layer {i}: weight[{', '.join(map(str, bad))}] = {int(w[tuple(bad)])} is outside "
                                 f"weight_bits={weight_bits} range [{wlo}, {whi}]")

        for i, layer in neurons:
            if layer.has_kernel and coding != "stcb":
                raise ModelError(f"layer {i}: a temporal kernel h={layer.h.tolist()} needs coding 'stcb' "
                                 f"({coding!r} takes only h=[1])")
            if layer.has_kernel:
                hlo, hhi = -(1 << (weight_bits - 1)), (1 << (weight_bits - 1)) - 1
                if layer.h.min() < hlo or layer.h.max() > hhi or len(layer.h) > T:
                    raise ModelError(f"layer {i}: h={layer.h.tolist()} must have at most T={T} taps within "
                                     f"weight_bits={weight_bits} range [{hlo}, {hhi}]")
        if coding == "tsc":
            for i, layer in neurons:
                if (layer.v_init != 0).any():
                    raise ModelError(f"layer {i}: tsc layers start from V = bias; v_init must be 0")
                if layer.leak is not None:
                    raise ModelError(f"layer {i}: tsc layers have no leak (a clipped-floor integer ANN), "
                                     f"got leak={list(layer.leak)}")
                if layer.reset != "subtract":
                    raise ModelError(f"layer {i}: tsc layers have no reset; reset must be 'subtract', "
                                     f"got {layer.reset!r}")
        self._widths = tuple(self._analyse(i, l) for i, l in enumerate(layers))
        needed = max(w.v_bits for w in self._widths)
        if v_bits is None:
            v_bits = needed
        if isinstance(v_bits, bool) or not isinstance(v_bits, (int, np.integer)) or v_bits < 2:
            raise ModelError(f"v_bits must be an integer >= 2 or None, got {v_bits!r}")
        if v_bits > MAX_V_BITS:
            raise ModelError(f"v_bits must be <= {MAX_V_BITS}, got {v_bits}")
        for i, w in enumerate(self._widths):
            if coding == "tsc" and layers[i].has_neurons:
                clip = int((T - 1) * layers[i].threshold.max())
                if signed_bits(0, clip) > v_bits:
                    raise ModelError(f"layer {i}: threshold * Q = {clip} cannot be represented in v_bits={v_bits}, "
                                     f"so the clip at Q = {T - 1} is not computable")
            if w.v_bits > v_bits:
                raise ModelError(f"v_bits={v_bits} is too small: layer {i} needs {w.v_bits} bits "
                                 f"(membrane range [{w.v_lo}, {w.v_hi}])")
        if needed > MAX_V_BITS:
            raise ModelError(f"model needs {needed} membrane bits, more than the supported {MAX_V_BITS}")
        for i, w in enumerate(self._widths):
            if w.leak_bits and v_bits + w.leak_bits > MAX_LEAK_PRODUCT_BITS:
                raise ModelError(f"layer {i}: leak={list(layers[i].leak)} needs a {v_bits} + {w.leak_bits} = "
                                 f"{v_bits + w.leak_bits}-bit product V*num, more than {MAX_LEAK_PRODUCT_BITS} bits")
        self._v_bits = int(v_bits)

    def _analyse(self, i: int, layer) -> LayerWidths:
        """Worst case over all inputs: every step's input is each synapse at its worst value."""
        if not layer.has_neurons:
            if self._coding == "tsc":
                Q = self._T - 1
                return LayerWidths(0, 0, 0, 0, -1, Q, 1, signed_bits(-1, Q))
            return LayerWidths(0, 0, 0, 0, 0, 0, 1, 1)
        # one row per unit (dense neuron or conv output channel) over everything that can reach it: a
        # conv neuron meets each input pixel through at most one kernel offset, and padding only removes
        # terms, so the full kernel bounds every position
        w = layer.weight.reshape(len(layer.bias), -1)
        if self._coding == "tsc":
            return self._analyse_tsc(layer, w)
        smax = self._input_max if (i == 0 and self._encoding == "direct") else 1
        acc_lo = (np.minimum(w, 0).sum(axis=1) * smax)
        acc_hi = (np.maximum(w, 0).sum(axis=1) * smax)
        cur_lo = acc_lo + layer.bias
        cur_hi = acc_hi + layer.bias
        if layer.has_kernel:
            # I'[t] = sum_{k<=t} h[k] I[t-k]: each tap contributes its worst sign of the current range,
            # and at steps t < K-1 only the first t+1 taps exist (I[t<0] = 0), so the extremes are over
            # every prefix of the kernel, not only the full sum
            hk = layer.h[:, None]
            lo_taps = np.cumsum(np.minimum(hk * cur_lo, hk * cur_hi), axis=0)
            hi_taps = np.cumsum(np.maximum(hk * cur_lo, hk * cur_hi), axis=0)
            cur_lo, cur_hi = lo_taps.min(axis=0), hi_taps.max(axis=0)
        T = self._T
        if layer.leak is None:
            # V_pre(t) <= max(v_init,0) + (t+1) max(I,0); after a reset V >= 0, else V = V_pre.
            v_hi = np.maximum(layer.v_init, 0) + T * np.maximum(cur_hi, 0)
            v_lo = np.minimum(layer.v_init, 0) + T * np.minimum(cur_lo, 0)
        else:
            # the leak is monotone and never crosses 0, so the bound follows the recurrence
            # U_t = leak(U_{t-1}) + max(I_hi, 0) from max(v_init, 0) (docs/spec.md, width analysis)
            num, shift = layer.leak
            u = np.maximum(layer.v_init, 0)
            lo_ = np.minimum(layer.v_init, 0)
            v_hi, v_lo = u.copy(), lo_.copy()
            for _ in range(T):
                u = leak_apply(u, num, shift) + np.maximum(cur_hi, 0)
                lo_ = leak_apply(lo_, num, shift) + np.minimum(cur_lo, 0)
                v_hi, v_lo = np.maximum(v_hi, u), np.minimum(v_lo, lo_)
        # thresholds and biases live in the same datapath as V
        v_hi = np.maximum.reduce([v_hi, layer.threshold, layer.bias, cur_hi])
        v_lo = np.minimum.reduce([v_lo, layer.bias, cur_lo, -layer.threshold])
        a_lo, a_hi = int(acc_lo.min()), int(acc_hi.max())
        c_lo, c_hi = int(cur_lo.min()), int(cur_hi.max())
        lo, hi = int(v_lo.min()), int(v_hi.max())
        leak_bits = unsigned_bits(layer.leak[0]) if layer.leak is not None else 0
        return LayerWidths(a_lo, a_hi, c_lo, c_hi, lo, hi, signed_bits(a_lo, a_hi), signed_bits(lo, hi), leak_bits)

    def _analyse_tsc(self, layer, w: np.ndarray) -> LayerWidths:
        """TSC: a step's event sum is all ONs (t = 0) or only OFFs; the current C is the sum of the
        active inputs' weights; V = b + sum_t C(t) with every input active at most Q steps; the clip
        compares V with Q * theta, and the countdown keeps V - k * theta >= -1."""
        Q = self._T - 1
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
    input_shape = property(lambda self: self._input_shape)

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
        """Flattened sizes: the input, then every layer's output."""
        return [self.n_in] + [l.n_out for l in self._layers]

    @property
    def is_dense(self) -> bool:
        """True for a schema-1 network: dense IF layers only, reset subtract, no leak."""
        return all(l.kind == "dense" and l.reset == "subtract" and l.leak is None for l in self._layers)

    def meta(self) -> dict:
        """JSON-serialisable metadata (everything but the arrays), in the schema-2 layout."""
        return {"coding": self.coding, "T": self.T, "encoding": self.encoding, "input_max": self.input_max,
                "readout": self.readout, "weight_bits": self.weight_bits, "v_bits": self.v_bits,
                "input_shape": list(self._input_shape), "layers": [_layer_meta(l) for l in self._layers]}

    def summary(self) -> dict:
        """Per layer and in total: type, shapes, parameters, neurons and memory bits.

        ``params`` counts the integers a layer stores: weights, (bias, threshold, v_init) per dense
        neuron or conv channel, and the STEB taps when h is not [1]. ``memory_bits`` are logical sizes
        (not padded to P lanes; ``hw.generate``'s manifest has the physical ones): weights and taps at
        ``weight_bits``; parameters at ``v_bits`` each; state: one membrane of ``v_bits`` per neuron
        (tsc: plus its current C), and for a tsc maxpool2d one stored value and countdown per output.
        """
        rows = []
        for i, (l, w) in enumerate(zip(self._layers, self._widths)):
            row = {"index": i, "type": l.kind, "in_shape": list(l.in_shape), "out_shape": list(l.out_shape)}
            if l.kind == "conv2d":
                row.update(kernel=l.kernel, stride=l.stride, padding=l.padding)
            elif l.kind == "maxpool2d":
                row.update(kernel=l.kernel)
            if l.has_neurons:
                row.update(reset=l.reset, leak=list(l.leak) if l.leak else None)
                taps = len(l.h) if l.has_kernel else 0
                units = len(l.bias)
                row["params"] = int(l.weight.size + 3 * units + taps)
                row["neurons"] = l.n_out
                state_lane = self.v_bits
                if self.coding == "tsc":
                    state_lane += signed_bits(w.current_lo, w.current_hi)
                row["memory_bits"] = {"weights": int((l.weight.size + taps) * self.weight_bits),
                                      "params": int(3 * units * self.v_bits), "state": int(l.n_out * state_lane)}
            else:
                row["params"], row["neurons"] = 0, 0
                state = l.n_out * w.v_bits if self.coding == "tsc" else 0
                row["memory_bits"] = {"weights": 0, "params": 0, "state": int(state)}
            row["memory_bits"]["total"] = sum(row["memory_bits"].values())
            rows.append(row)
        total = {"params": sum(r["params"] for r in rows), "neurons": sum(r["neurons"] for r in rows),
                 "memory_bits": {k: sum(r["memory_bits"][k] for r in rows)
                                 for k in ("weights", "params", "state", "total")}}
        return {"input_shape": list(self._input_shape), "coding": self.coding, "T": self.T,
                "weight_bits": self.weight_bits, "v_bits": self.v_bits, "layers": rows, "total": total}

    def replace(self, **kw) -> "Model":
        """A new validated model with some constructor arguments changed."""
        args = dict(layers=self._layers, coding=self.coding, T=self.T, encoding=self.encoding,
                    input_max=self.input_max, readout=self.readout, weight_bits=self.weight_bits,
                    v_bits=self.v_bits, input_shape=self._input_shape)
        if "v_bits" not in kw and any(k in kw for k in ("layers", "T", "encoding", "input_max")):
            args["v_bits"] = None
        if "layers" in kw and "input_shape" not in kw:
            first = list(kw["layers"])[0] if len(kw["layers"]) else None
            # keep the shape while it still describes the new first layer's input
            keep = (first is not None and hasattr(first, "in_shape") and int(np.prod(self._input_shape)) == first.n_in
                    and (first.kind == "dense" or tuple(first.in_shape) == self._input_shape))
            args["input_shape"] = self._input_shape if keep else None
        args.update(kw)
        layers = args.pop("layers")
        return Model(layers, **args)

    @property
    def arch(self) -> str:
        """The layer list as quant's --arch tokens (``16c3-mp2-32c3-10``; ``p<n>`` marks a padding
        other than K // 2)."""
        toks = []
        for l in self._layers:
            if l.kind == "dense":
                toks.append(str(l.n_out))
            elif l.kind == "maxpool2d":
                toks.append(f"mp{l.kernel}")
            else:
                t = f"{l.channels}c{l.kernel}" + (f"s{l.stride}" if l.stride != 1 else "")
                toks.append(t + (f"p{l.padding}" if l.padding != l.kernel // 2 else ""))
        return "-".join(toks)

    def __eq__(self, other):
        return isinstance(other, Model) and self.meta() == other.meta() and self._layers == other._layers

    def __repr__(self):
        net = ("-".join(map(str, self.sizes)) if all(l.kind == "dense" for l in self._layers)
               else f"{'x'.join(map(str, self._input_shape))}-{self.arch}")
        return (f"Model({net}, coding={self.coding!r}, T={self.T}, "
                f"encoding={self.encoding!r}, readout={self.readout!r}, weight_bits={self.weight_bits}, "
                f"v_bits={self.v_bits})")


def _layer_meta(l) -> dict:
    """A layer's schema-2 metadata entry (docs/spec.md section 1)."""
    if l.kind == "dense":
        return {"type": "dense", "n_in": l.n_in, "n_out": l.n_out, "reset": l.reset,
                "leak": list(l.leak) if l.leak is not None else None}
    if l.kind == "conv2d":
        return {"type": "conv2d", "in_shape": list(l.in_shape), "out_shape": list(l.out_shape), "kernel": l.kernel,
                "stride": l.stride, "padding": l.padding, "reset": l.reset,
                "leak": list(l.leak) if l.leak is not None else None}
    return {"type": "maxpool2d", "in_shape": list(l.in_shape), "out_shape": list(l.out_shape), "kernel": l.kernel}
