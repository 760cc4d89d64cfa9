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
    "SURROGATES", "round_ste", "floor_ste", "pow2_scale", "pow2_scales", "quantize_layer", "quantize_stcb_layer",
    "spike", "rate_encode", "if_layer", "apply_leak", "apply_kernel", "kernel_gain", "stl_layer",
    "select_prediction", "GRADS", "RESETS", "MAX_LEAK_SHIFT",
]

# training rules of the spiking codes: surrogate-gradient BPTT, or the spike-train-level rule (stcb)
GRADS = ("bptt", "stl")
# what a spike does to the membrane (design.md, "Schema 2"): V -= theta, or V = 0
RESETS = ("subtract", "zero")
# golden: leak (num, shift) with 0 <= num <= 2**shift and shift <= 16
MAX_LEAK_SHIFT = 16


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


class _FloorSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return torch.floor(x)

    @staticmethod
    def backward(ctx, g):
        return g


def floor_ste(x: torch.Tensor) -> torch.Tensor:
    """``floor(x)`` forward, identity gradient backward (the leak's arithmetic shift)."""
    return _FloorSTE.apply(x)


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


def pow2_scales(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """Per-output-channel :func:`pow2_scale` of ``weight`` (first axis = output channel), as a tensor
    of ``weight``'s dtype and device (powers of two, so dividing by them is exact)."""
    m = weight.detach().abs().reshape(weight.shape[0], -1).amax(dim=1)
    return torch.tensor([pow2_scale(v, bits) for v in m.tolist()], dtype=weight.dtype, device=weight.device)


def _scales(weight: torch.Tensor, bits: int, per_channel: bool):
    """``(scale for weight, scale for per-channel vectors, reported scale)``: one power of two per
    layer (a float), or one per output channel (tensors shaped to broadcast)."""
    if not per_channel:
        s = pow2_scale(weight.detach().abs().max().item(), bits)
        return s, s, s
    s = pow2_scales(weight, bits)
    return s.view(-1, *([1] * (weight.dim() - 1))), s, s.tolist()


def quantize_layer(weight, bias, threshold, v_init, bits: int, *, per_channel: bool = False):
    """Fake-quantize one layer's parameters onto a common power-of-two scale.

    Returns ``(W, b, theta, v0, scale)`` where the first four are integer-valued tensors (in units
    of ``scale``) carrying straight-through gradients, ``theta >= 1``, ``|W| <= 2**(bits-1)-1``.
    The real-valued layer they represent is ``scale * (W, b, theta, v0)``.

    ``per_channel``: one scale per output channel (the first axis of ``weight``; ``scale`` is then a
    list). Still exact: each channel's weights, bias, threshold and initial membrane share its scale,
    and an output channel's dynamics never mix with another's, so the scale cancels channel by
    channel (spikes are 0/1, and the next layer only sees spikes).
    """
    qmax = float((1 << (bits - 1)) - 1)
    sw, sc, scale = _scales(weight, bits, per_channel)
    w = torch.clamp(round_ste(weight / sw), -qmax, qmax)
    b = round_ste(bias / sc)
    th = torch.clamp(round_ste(threshold / sc), min=1.0)
    v0 = round_ste(v_init / sc)
    return w, b, th, v0, scale


def quantize_stcb_layer(weight, bias, threshold, v_init, h, bits: int, *, per_channel: bool = False):
    """Fake-quantize an STCB layer with a temporal kernel ``h`` (K taps).

    Two power-of-two scales: ``s`` for the weights (from ``max|W|``) and ``s_h`` for the taps (from
    ``max|h|``), both to ``bits``-bit integers. The bias enters the current *before* the kernel, so it
    shares the weight scale: ``I = b_q + W_q s`` is in units of ``s``. The kernel output
    ``I' = sum_k h_q[k] I[t-k]`` is then in units of ``s * s_h``, and so are ``theta`` and ``v_init``
    (they meet ``I'`` in the membrane). Every integer of the layer is thus on its own consistent
    scale and the forward runs in integer units exactly as golden does.

    Returns ``(W, b, theta, v0, h, scale, h_scale)`` (integer-valued tensors with straight-through
    gradients; ``|W|, |h| <= 2**(bits-1)-1``, ``theta >= 1``). ``per_channel``: ``s`` per output
    channel as in :func:`quantize_layer` (``h`` is per layer, so its scale stays one number).
    """
    qmax = float((1 << (bits - 1)) - 1)
    sw, sc, scale = _scales(weight, bits, per_channel)
    h_scale = pow2_scale(h.detach().abs().max().item(), bits)
    w = torch.clamp(round_ste(weight / sw), -qmax, qmax)
    b = round_ste(bias / sc)
    hq = torch.clamp(round_ste(h / h_scale), -qmax, qmax)
    unit = sc * h_scale  # powers of two: the division is exact
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
    out = torch.empty((x.shape[0], T, x.shape[1]), dtype=x.dtype, device=x.device)
    for t in range(T):
        u = u + x
        s = (u >= input_max).to(x.dtype)
        u = u - input_max * s
        out[:, t] = s
    return out


def apply_leak(v: torch.Tensor, leak) -> torch.Tensor:
    """The leak ``V <- (V * num) >> shift``. ``leak = (num, shift, floor)``: with ``floor`` (the
    quantized network, integer units) the arithmetic shift, i.e. ``floor(V * num / 2**shift)``, with a
    straight-through gradient; without (the float reference) the plain factor ``num / 2**shift``.
    Exact for integers while ``|V * num|`` is representable (see :func:`quant.net.exact_dtype`):
    dividing by a power of two and flooring add no rounding."""
    num, shift, floor = leak
    y = v * num / float(1 << int(shift))
    return floor_ste(y) if floor else y


def if_layer(current: torch.Tensor, threshold: torch.Tensor, v_init: torch.Tensor, *, fire: bool,
             surrogate: str, reset: str = "subtract", leak=None):
    """IF recurrence over currents (B, T, *S) (S: (n,) for dense layers, (C, H, W) for conv layers).

    Per step: leak (when ``leak`` is set, :func:`apply_leak`, at step 0 too); V += I[t];
    s = V >= theta; reset ``"subtract"`` (V -= theta * s) or ``"zero"`` (V *= 1 - s); V starts from
    ``v_init``. ``threshold`` and ``v_init`` broadcast to S (per neuron, or per channel as (C, 1, 1)).
    Returns (spikes (B, T, *S), final V (B, *S)). With ``fire=False`` (membrane readout) the layer
    only integrates and the spikes are all zero.
    """
    if reset not in RESETS:
        raise ValueError(f"unknown reset {reset!r}; choose from {', '.join(RESETS)}")
    B, T = current.shape[:2]
    S = tuple(current.shape[2:])
    v = v_init.expand((B,) + S)
    if not fire and leak is None:
        # the sum over T of integer currents is exact (bounded by the membrane width)
        v = v + current.sum(dim=1)
        return current.new_zeros(current.shape), v
    out = []
    for t in range(T):
        if leak is not None:
            v = apply_leak(v, leak)
        v = v + current[:, t]
        if fire:
            s = spike(v - threshold, threshold, surrogate)
            v = v - threshold * s if reset == "subtract" else v * (1.0 - s)
            out.append(s)
    if not fire:
        return current.new_zeros(current.shape), v
    return torch.stack(out, dim=1), v


def apply_kernel(current: torch.Tensor, h: torch.Tensor | None) -> torch.Tensor:
    """Causal temporal kernel over (B, T, ...) currents: ``I'[t] = sum_k h[k] I[t-k]``, ``I[t<0] = 0``
    (golden's ``apply_kernel``). ``h=None`` is the identity. Differentiable in ``current`` and ``h``;
    exact for integer values while ``sum_k |h[k]| * max|I|`` is representable."""
    if h is None:
        return current
    T = current.shape[1]
    out = None
    for k in range(min(int(h.shape[0]), T)):
        term = h[k] * current[:, :T - k]
        if k:
            pad = current.new_zeros((current.shape[0], k) + tuple(current.shape[2:]))
            term = torch.cat([pad, term], dim=1)
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
              counts_in: torch.Tensor | None = None, weight: torch.Tensor | None = None, gain: float = 1.0,
              synapse=None):
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

    ``synapse``: the layer's linear map without bias (for conv layers the convolution with the
    detached weights); default ``c -> c @ weight.detach().T`` (dense). Shapes generalise to (B, T, *S)
    as in :func:`if_layer`.

    Returns (spikes (B, T, n) without gradient, counts (B, n) with the STL gradient, final V (B, n)).
    """
    with torch.no_grad():
        s, v_exact = if_layer(current.detach(), threshold.detach(), v_init.detach(), fire=fire,
                              surrogate="arctan")
    T = current.shape[1]
    z = current.sum(dim=1) + v_init
    if counts_in is not None and counts_in.requires_grad:
        dc = counts_in - counts_in.detach()          # value 0, gradient of the input counts
        lin = synapse if synapse is not None else (lambda c: c @ weight.detach().T)
        z = z + gain * lin(dc)
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
