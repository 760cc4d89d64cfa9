"""Building blocks of quantization-aware SNN training: fake quantization, surrogates, IF dynamics.

Everything here works in two modes with the *same* code:

* **float** (the reference network): parameters are ordinary float tensors.
* **quantized**: parameters are integer-valued float tensors (``round`` with a straight-through
  estimator), all on one power-of-two scale per layer. Because the scale is common to weights,
  biases, thresholds and initial membranes of a layer, and spikes are 0/1, it cancels out of the IF
  dynamics: the forward pass runs directly in *integer units*. Every value is then an integer far
  below 2**24 (float32) or 2**53 (float64), so the arithmetic is exact and equals golden's.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "SURROGATES", "round_ste", "pow2_scale", "quantize_layer", "spike", "rate_encode", "if_layer",
    "select_prediction",
]


# ----------------------------------------------------------------------------------------------
# straight-through rounding and power-of-two scales
# ----------------------------------------------------------------------------------------------

class _RoundSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return torch.round(x)

    @staticmethod
    def backward(ctx, g):
        return g


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """``round(x)`` (half to even, as ``torch.round``) forward, identity gradient backward."""
    return _RoundSTE.apply(x)


def pow2_scale(max_abs: float, bits: int) -> float:
    """Smallest power of two ``s`` with ``max_abs / s <= 2**(bits-1) - 1``.

    ``max_abs == 0`` gives 1.0 (any scale represents an all-zero tensor).
    """
    if not 2 <= bits <= 16:
        raise ValueError(f"weight bits must be in 2..16, got {bits}")
    qmax = (1 << (bits - 1)) - 1
    max_abs = float(max_abs)
    if not math.isfinite(max_abs):
        raise ValueError(f"weights are not finite (max |W| = {max_abs}); training diverged")
    if max_abs <= 0.0:
        return 1.0
    k = math.ceil(math.log2(max_abs / qmax))
    # guard against log2 rounding at exact powers of two
    while max_abs / 2.0 ** k > qmax:
        k += 1
    while k > -149 and max_abs / 2.0 ** (k - 1) <= qmax:
        k -= 1
    return 2.0 ** k


def quantize_layer(weight, bias, threshold, v_init, bits: int):
    """Fake-quantize one layer's parameters onto a common power-of-two scale.

    Returns ``(W, b, theta, v0, scale)`` where the first four are integer-valued tensors (in units
    of ``scale``) carrying straight-through gradients, ``theta >= 1``, ``|W| <= 2**(bits-1)-1``.
    The real-valued layer they represent is ``scale * (W, b, theta, v0)``.
    """
    qmax = float((1 << (bits - 1)) - 1)
    scale = pow2_scale(weight.detach().abs().max().item(), bits)
    w = torch.clamp(round_ste(weight / scale), -qmax, qmax)
    b = round_ste(bias / scale)
    th = torch.clamp(round_ste(threshold / scale), min=1.0)
    v0 = round_ste(v_init / scale)
    return w, b, th, v0, scale


# ----------------------------------------------------------------------------------------------
# surrogate gradients
# ----------------------------------------------------------------------------------------------

def _arctan(x: torch.Tensor, alpha: float = 2.0) -> torch.Tensor:
    # derivative of (1/pi) * arctan(pi/2 * alpha * x) + 1/2 (SpikingJelly's ATan)
    return (alpha / 2.0) / (1.0 + (math.pi / 2.0 * alpha * x) ** 2)


def _triangle(x: torch.Tensor, width: float = 1.0) -> torch.Tensor:
    return torch.clamp(1.0 - x.abs() / width, min=0.0) / width


SURROGATES = {"arctan": _arctan, "triangle": _triangle}


class _Spike(torch.autograd.Function):
    """Heaviside ``u >= 0`` forward; ``d/du = sg(u / norm) / norm`` backward."""

    @staticmethod
    def forward(ctx, u, norm, surrogate):
        ctx.save_for_backward(u, norm)
        ctx.surrogate = surrogate
        return (u >= 0).to(u.dtype)

    @staticmethod
    def backward(ctx, g):
        u, norm = ctx.saved_tensors
        x = u / norm
        return g * SURROGATES[ctx.surrogate](x) / norm, None, None


def spike(u: torch.Tensor, norm: torch.Tensor, surrogate: str) -> torch.Tensor:
    """Spike where ``u = V - theta >= 0``; the surrogate is applied to ``u / norm`` (norm = theta),
    so the gradient is the same in float units and in integer units."""
    if surrogate not in SURROGATES:
        raise ValueError(f"unknown surrogate {surrogate!r}; choose from {', '.join(SURROGATES)}")
    return _Spike.apply(u, norm.detach(), surrogate)


# ----------------------------------------------------------------------------------------------
# encoder, IF layer, readout
# ----------------------------------------------------------------------------------------------

def rate_encode(x: torch.Tensor, input_max: int, T: int) -> torch.Tensor:
    """Deterministic rate encoder on integer-valued ``x`` (B, n): u += x; spike and u -= input_max
    when u >= input_max. Returns (B, T, n) 0/1 in x's dtype. Exact: u < 2 * input_max."""
    u = torch.zeros_like(x)
    out = torch.empty((x.shape[0], T, x.shape[1]), dtype=x.dtype)
    for t in range(T):
        u = u + x
        s = (u >= input_max).to(x.dtype)
        u = u - input_max * s
        out[:, t] = s
    return out


def if_layer(current: torch.Tensor, threshold: torch.Tensor, v_init: torch.Tensor, *, fire: bool,
             surrogate: str):
    """IF recurrence with reset by subtraction over currents (B, T, n).

    Per step: V += I[t]; s = V >= theta; V -= theta * s, starting from ``v_init``.
    Returns (spikes (B, T, n), final V (B, n)). With ``fire=False`` (membrane readout) the layer
    only integrates and the spikes are all zero.
    """
    B, T, n = current.shape
    v = v_init.expand(B, n)
    if not fire:
        # the sum over T of integer currents is exact (bounded by the membrane width)
        v = v + current.sum(dim=1)
        return current.new_zeros((B, T, n)), v
    out = []
    for t in range(T):
        v = v + current[:, t]
        s = spike(v - threshold, threshold, surrogate)
        v = v - threshold * s
        out.append(s)
    return torch.stack(out, dim=1), v


def select_prediction(counts: torch.Tensor, v: torch.Tensor, readout: str) -> torch.Tensor:
    """Golden's readout: argmax of (count, V) lexicographically, or of V; ties to the lowest index."""
    if readout == "membrane":
        return torch.argmax(v, dim=1)
    best = counts.max(dim=1, keepdim=True).values
    masked = torch.where(counts == best, v, torch.full_like(v, -math.inf))
    return torch.argmax(masked, dim=1)  # torch.argmax returns the first maximal index
