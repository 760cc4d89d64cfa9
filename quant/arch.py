"""The ``--arch`` grammar of ``quant.train`` and shape inference, in pure Python.

No torch and no numpy: the CLI parses and checks an architecture *before* it imports torch, so a bad
``--arch`` costs milliseconds and writes nothing.

Grammar (design.md, "quant.train --arch"): a ``-``-separated list of layer tokens; the input shape
comes from the dataset.

* ``<C>c<K>`` or ``<C>c<K>s<S>``: conv2d with C output channels, a K x K kernel, stride S (default
  1) and zero padding ``K // 2``; ``Ho = (H + 2p - K) // S + 1`` (the same for W).
* ``mp<K>``: max pooling with a K x K window and stride K, no padding; H and W must be multiples
  of K.
* ``<N>``: dense with N outputs; after a 3-D layer it reads the ``(c, y, x)`` flatten order.

The last token is the classifier: a dense layer with one output per class. So ``--hidden 128`` is
``--arch 128-10`` and ``--arch 16c3-mp2-32c3-10`` is a small VGG-style network for digits.
Numbers are positive decimal integers without leading zeros or signs, letters are lower case.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence, Union

__all__ = ["ArchError", "ConvSpec", "PoolSpec", "DenseSpec", "LayerSpec", "parse_arch", "build_arch",
           "dense_arch", "arch_string", "is_dense", "neuron_layers"]


class ArchError(ValueError):
    """An ``--arch`` string does not parse or its shapes do not chain. One line, naming the token."""


class _Spatial:
    """A layer of 3-D maps: its sizes are the products of its shapes."""

    @property
    def n_in(self) -> int:
        return _prod(self.in_shape)

    @property
    def n_out(self) -> int:
        return _prod(self.out_shape)


@dataclass(frozen=True)
class ConvSpec(_Spatial):
    """conv2d: ``in_shape`` [C, H, W] -> ``out_shape`` [Co, Ho, Wo]."""

    channels: int
    kernel: int
    stride: int
    padding: int
    in_shape: tuple
    out_shape: tuple
    kind: str = "conv2d"

    @property
    def token(self) -> str:
        return f"{self.channels}c{self.kernel}" + (f"s{self.stride}" if self.stride != 1 else "")


@dataclass(frozen=True)
class PoolSpec(_Spatial):
    """maxpool2d: window K x K, stride K, no padding; no neurons, no parameters."""

    kernel: int
    in_shape: tuple
    out_shape: tuple
    kind: str = "maxpool2d"

    @property
    def token(self) -> str:
        return f"mp{self.kernel}"


@dataclass(frozen=True)
class DenseSpec:
    """dense: reads its input flattened in ``(c, y, x)`` order."""

    n_in: int
    n_out: int
    in_shape: tuple
    kind: str = "dense"

    @property
    def out_shape(self) -> tuple:
        return (self.n_out,)

    @property
    def token(self) -> str:
        return str(self.n_out)


LayerSpec = Union[ConvSpec, PoolSpec, DenseSpec]

_NUM = r"[1-9][0-9]*"
_CONV = re.compile(rf"^(?P<C>{_NUM})c(?P<K>{_NUM})(?:s(?P<S>{_NUM}))?$")
_POOL = re.compile(rf"^mp(?P<K>{_NUM})$")
_DENSE = re.compile(rf"^(?P<N>{_NUM})$")
# golden's limits (golden.model MAX_DIM, MAX_KERNEL: kernels, strides and pool windows), so an arch the
# CLI accepts is one golden can hold; the dense cap keeps a typo from allocating gigabytes
MAX_CHANNELS = 4096
MAX_KERNEL = 16
MAX_DENSE = 1 << 16
GRAMMAR = "<C>c<K>, <C>c<K>s<S>, mp<K> or <N>"


def _prod(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def parse_arch(text: str) -> list[tuple]:
    """Syntax only: ``text`` -> ``[("conv", C, K, S) | ("pool", K) | ("dense", N), ...]``.

    Raises :class:`ArchError` naming the first bad token (1-based position)."""
    if not isinstance(text, str) or not text.strip():
        raise ArchError(f"--arch must be a '-'-separated list of layer tokens ({GRAMMAR}), got {text!r}")
    tokens = text.split("-")
    out = []
    for i, tok in enumerate(tokens, 1):
        if tok == "":
            raise ArchError(f"--arch {text!r}: token {i} is empty (a leading, trailing or doubled '-')")
        m = _CONV.match(tok)
        if m:
            C, K, S = int(m["C"]), int(m["K"]), int(m["S"] or 1)
            if C > MAX_CHANNELS:
                raise ArchError(f"--arch {text!r}: token {i} {tok!r} has {C} channels, more than {MAX_CHANNELS}")
            if K > MAX_KERNEL:
                raise ArchError(f"--arch {text!r}: token {i} {tok!r} has kernel {K}, more than {MAX_KERNEL}")
            if S > MAX_KERNEL:
                raise ArchError(f"--arch {text!r}: token {i} {tok!r} has stride {S}, more than {MAX_KERNEL}")
            out.append(("conv", C, K, S))
            continue
        m = _POOL.match(tok)
        if m:
            K = int(m["K"])
            if K < 2:
                raise ArchError(f"--arch {text!r}: token {i} {tok!r}: a max-pool window must be at least 2 "
                                f"(mp1 is the identity)")
            if K > MAX_KERNEL:
                raise ArchError(f"--arch {text!r}: token {i} {tok!r} has window {K}, more than {MAX_KERNEL}")
            out.append(("pool", K))
            continue
        m = _DENSE.match(tok)
        if m:
            N = int(m["N"])
            if N > MAX_DENSE:
                raise ArchError(f"--arch {text!r}: token {i} {tok!r} has {N} neurons, more than {MAX_DENSE}")
            out.append(("dense", N))
            continue
        raise ArchError(f"--arch {text!r}: token {i} {tok!r} is not a layer; expected {GRAMMAR} "
                        f"(positive integers, no leading zeros)")
    return out


def build_arch(arch: str | Sequence[tuple], input_shape: Sequence[int], n_classes: int) -> list[LayerSpec]:
    """Parse ``arch`` (or take parsed tokens) and infer every layer's shapes from ``input_shape``
    (``[n]`` or ``[C, H, W]``).

    Raises :class:`ArchError` when a token does not parse, a conv or pool layer gets a flat input,
    a pooled map is not a multiple of the window, or the last token is not the classifier (dense,
    ``n_classes`` outputs)."""
    text = arch if isinstance(arch, str) else arch_string_from_tokens(arch)
    tokens = parse_arch(text) if isinstance(arch, str) else list(arch)
    shape = tuple(int(d) for d in input_shape)
    if len(shape) not in (1, 3) or any(d < 1 for d in shape):
        raise ArchError(f"input shape must be [n] or [C, H, W] with positive sizes, got {list(shape)}")
    specs: list[LayerSpec] = []
    for i, tok in enumerate(tokens, 1):
        where = f"--arch {text!r}: token {i} {_token_text(tok)!r}"
        kind = tok[0]
        if kind in ("conv", "pool") and len(shape) != 3:
            prev = "the input" if not specs else f"token {i - 1} ({specs[-1].kind})"
            raise ArchError(f"{where} needs a [C, H, W] input, but {prev} gives the flat shape {list(shape)}")
        if kind == "conv":
            _, Co, K, S = tok
            C, H, W = shape
            p = K // 2
            Ho, Wo = (H + 2 * p - K) // S + 1, (W + 2 * p - K) // S + 1
            spec = ConvSpec(Co, K, S, p, shape, (Co, Ho, Wo))
        elif kind == "pool":
            _, K = tok
            C, H, W = shape
            if H % K or W % K:
                raise ArchError(f"{where}: the {H}x{W} map is not a multiple of the {K}x{K} window")
            spec = PoolSpec(K, shape, (C, H // K, W // K))
        else:
            _, N = tok
            spec = DenseSpec(_prod(shape), N, shape)
        specs.append(spec)
        shape = tuple(spec.out_shape)
    last = specs[-1]
    if last.kind != "dense" or last.n_out != n_classes:
        raise ArchError(f"--arch {text!r}: the last token {last.token!r} is the classifier and must be a dense "
                        f"layer with {n_classes} outputs (one per class), e.g. '{text.rsplit('-', 1)[0]}-{n_classes}'"
                        if len(specs) > 1 else
                        f"--arch {text!r}: the last token is the classifier and must be {n_classes} (one output "
                        f"per class)")
    return specs


def _token_text(tok: tuple) -> str:
    if tok[0] == "conv":
        return f"{tok[1]}c{tok[2]}" + (f"s{tok[3]}" if tok[3] != 1 else "")
    if tok[0] == "pool":
        return f"mp{tok[1]}"
    return str(tok[1])


def arch_string_from_tokens(tokens: Sequence[tuple]) -> str:
    return "-".join(_token_text(t) for t in tokens)


def arch_string(specs: Sequence[LayerSpec]) -> str:
    """The canonical ``--arch`` text of built specs (``16c3s1`` is written ``16c3``)."""
    return "-".join(s.token for s in specs)


def dense_arch(hidden: Sequence[int], n_classes: int) -> str:
    """``--hidden 128,64`` as an ``--arch`` string: ``128-64-10``."""
    return "-".join(str(int(h)) for h in [*hidden, n_classes])


def is_dense(specs: Sequence[LayerSpec]) -> bool:
    return all(s.kind == "dense" for s in specs)


def neuron_layers(specs: Sequence[LayerSpec]) -> list[int]:
    """Indices of the layers that have neurons and parameters (conv2d and dense, not maxpool2d)."""
    return [i for i, s in enumerate(specs) if s.kind != "maxpool2d"]
