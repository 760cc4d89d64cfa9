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
    "SURROGATES", "round_ste", "pow2_scale", "quantize_layer", "quantize_stcb_layer", "spike", "rate_encode",
    "if_layer", "apply_kernel", "kernel_gain", "stl_layer", "select_prediction", "GRADS",
]

# training rules of the spiking codes: surrogate-gradient BPTT, or the spike-train-level rule (stcb)
GRADS = ("bptt", "stl")


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


def quantize_stcb_layer(weight, bias, threshold, v_init, h, bits: int):
    """Fake-quantize an STCB layer with a temporal kernel ``h`` (K taps).

    Two power-of-two scales: ``s`` for the weights (from ``max|W|``) and ``s_h`` for the taps (from
    ``max|h|``), both to ``bits``-bit integers. The bias enters the current *before* the kernel, so it
    shares the weight scale: ``I = b_q + W_q s`` is in units of ``s``. The kernel output
    ``I' = sum_k h_q[k] I[t-k]`` is then in units of ``s * s_h``, and so are ``theta`` and ``v_init``
    (they meet ``I'`` in the membrane). Every integer of the layer is thus on its own consistent
    scale and the forward runs in integer units exactly as golden does.

    Returns ``(W, b, theta, v0, h, scale, h_scale)`` (integer-valued tensors with straight-through
    gradients; ``|W|, |h| <= 2**(bits-1)-1``, ``theta >= 1``).
    """
    qmax = float((1 << (bits - 1)) - 1)
    scale = pow2_scale(weight.detach().abs().max().item(), bits)
    h_scale = pow2_scale(h.detach().abs().max().item(), bits)
    w = torch.clamp(round_ste(weight / scale), -qmax, qmax)
    b = round_ste(bias / scale)
    hq = torch.clamp(round_ste(h / h_scale), -qmax, qmax)
    unit = scale * h_scale  # a power of two: the division is exact
    th = torch.clamp(round_ste(threshold / unit), min=1.0)
    v0 = round_ste(v_init / unit)
    return w, b, th, v0, hq, scale, h_scale


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


def apply_kernel(current: torch.Tensor, h: torch.Tensor | None) -> torch.Tensor:
    """Causal temporal kernel over (B, T, n) currents: ``I'[t] = sum_k h[k] I[t-k]``, ``I[t<0] = 0``
    (golden's ``apply_kernel``). ``h=None`` is the identity. Differentiable in ``current`` and ``h``;
    exact for integer values while ``sum_k |h[k]| * max|I|`` is representable."""
    if h is None:
        return current
    B, T, n = current.shape
    out = None
    for k in range(min(int(h.shape[0]), T)):
        term = h[k] * current[:, :T - k]
        if k:
            term = torch.cat([current.new_zeros((B, k, n)), term], dim=1)
        out = term if out is None else out + term
    return out


def kernel_gain(h: torch.Tensor | None, T: int) -> float:
    """``gamma = sum_k h[k] (T - k) / T``: how much a spike contributes to ``sum_t I'[t]`` on average
    over its position (exact: 1 for ``h = [1]``). The STL rule's d sum_t I' / d count_in = gamma W."""
    if h is None:
        return 1.0
    hv = h.detach().to(torch.float64)
    K = min(int(hv.shape[0]), T)
    return float(sum(float(hv[k]) * (T - k) for k in range(K)) / T)


def stl_layer(current: torch.Tensor, threshold: torch.Tensor, v_init: torch.Tensor, *, fire: bool,
              counts_in: torch.Tensor | None = None, weight: torch.Tensor | None = None, gain: float = 1.0):
    """One IF layer with the spike-train-level ("equivalent gradient") backward.

    ``current``: the kernel output ``I'`` (B, T, n) as a differentiable function of W, b and h, built
    on the *detached* input spike trains. Forward: the exact IF recurrence on ``current`` (the very
    numbers :func:`if_layer` computes, so spikes and V equal BPTT's forward bit for bit). Backward:
    no unrolling through time; with ``z = sum_t I'[t] + v_init`` the output count is treated as

        count_out ~ clamp(z / theta, 0, T)

    so gradients reach W, b, h, v_init (through ``z``, exact given the input trains), theta
    (``-z / theta**2`` inside the clamp) and, when ``counts_in`` (B, n_in) carries gradient from the
    previous layer, the input counts: ``d z / d count_in = gain * W`` (``gain`` = :func:`kernel_gain`).
    The final V gets the gradient of the identity ``V = z - theta * count`` (``V = z`` when
    ``fire=False``).

    Returns (spikes (B, T, n) without gradient, counts (B, n) with the STL gradient, final V (B, n)).
    """
    with torch.no_grad():
        s, v_exact = if_layer(current.detach(), threshold.detach(), v_init.detach(), fire=fire,
                              surrogate="arctan")
    T = current.shape[1]
    z = current.sum(dim=1) + v_init
    if counts_in is not None and counts_in.requires_grad:
        dc = counts_in - counts_in.detach()          # value 0, gradient of the input counts
        z = z + gain * (dc @ weight.detach().T)
    if fire:
        u = torch.clamp(z / threshold, 0.0, float(T))
        counts = s.sum(dim=1) + (u - u.detach())       # exact value, gradient of the clamp
        vz = z - threshold * counts
    else:
        counts = s.sum(dim=1)
        vz = z
    v = v_exact + (vz - vz.detach())
    return s, counts, v


def select_prediction(counts: torch.Tensor, v: torch.Tensor, readout: str) -> torch.Tensor:
    """Golden's readout: argmax of (count, V) lexicographically, or of V; ties to the lowest index."""
    if readout == "membrane":
        return torch.argmax(v, dim=1)
    best = counts.max(dim=1, keepdim=True).values
    masked = torch.where(counts == best, v, torch.full_like(v, -math.inf))
    return torch.argmax(masked, dim=1)  # torch.argmax returns the first maximal index
