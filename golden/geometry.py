"""Memory geometry and datapath widths of the core for one integer model and lane count.

The one place that both golden's energy model and hw/'s generator read: memory widths and depths,
address bases, register widths. golden never imports hw; hw builds its RTL from these numbers, so
the RTL, its manifest, the energy model and the testbench agree by construction. Every width comes
from the model's worst-case ranges (:attr:`golden.Model.widths`), so nothing in the datapath can
overflow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import perf
from .model import Model, signed_bits, unsigned_bits

__all__ = ["CoreGeometry", "ConfigError", "LayerHW", "COUNTER_BITS", "MAX_LANES", "ceil_log2"]

COUNTER_BITS = 32
MAX_LANES = 64
ceil_log2 = perf.ceil_log2


class ConfigError(ValueError):
    """The model/lanes combination cannot be built."""


@dataclass(frozen=True)
class LayerHW:
    n_in: int
    n_out: int
    groups: int
    last_lanes: int        # real lanes in the last group
    wbase: int             # weight word of (g, i) at wbase + g * n_in + i
    sbase: int             # state/param word of group g at sbase + g
    fires: bool


def _span(*ranges) -> tuple[int, int]:
    return min(int(r[0]) for r in ranges), max(int(r[1]) for r in ranges)


class CoreGeometry:
    """Parameters of one generated core.

    Parameters
    ----------
    model : Model
    lanes : int
        P, a power of two from 1 to 64.
    """

    def __init__(self, model: Model, lanes: int):
        if not isinstance(model, Model):
            raise TypeError(f"model must be a Model, not {type(model).__name__}")
        if isinstance(lanes, bool) or not isinstance(lanes, (int, np.integer)) or lanes < 1:
            raise TypeError(f"lanes must be a positive integer, not {lanes!r}")
        if lanes & (lanes - 1) or lanes > MAX_LANES:
            raise ConfigError(f"lanes must be a power of two from 1 to {MAX_LANES}, not {lanes}")
        # the core runs dense layers, IF or leaky, reset by subtraction or to zero; conv and pool are
        # golden-only for now (docs/spec.md, status)
        for i, l in enumerate(model.layers):
            if l.kind != "dense":
                raise ConfigError(f"layer {i}: {l.kind} layers are not supported by the hardware core yet "
                                  f"(dense layers only)")
            # reset "zero" is a multiplexer in the neuron units (IfUnit, SlotUnit), the leak a multiplier and
            # a shift ahead of their adders; tsc layers have neither (the model refuses them)
        self.model = model
        self.coding = model.coding
        self.tsc = model.coding == "tsc"
        self.stcb = model.coding == "stcb"
        self.P = P = int(lanes)
        self.T = T = model.T
        self.direct = model.encoding == "direct"
        self.membrane_readout = model.readout == "membrane"
        self.n_in, self.n_out, self.L = model.n_in, model.n_out, len(model.layers)
        self.G_in = perf.groups(self.n_in, P)
        self.wbits, self.vbits = model.weight_bits, model.v_bits
        M = model.input_max
        self.xbits = unsigned_bits(M)
        self.in_bits = self.xbits + 1                 # one spare bit so out-of-range values are visible
        self.taps = max(len(l.h) for l in model.layers)
        self.kernel = any(l.has_kernel for l in model.layers)

        # ---- layers and memory bases
        layers, wbase, sbase = [], 0, 0
        for li, l in enumerate(model.layers):
            G = perf.groups(l.n_out, P)
            fires = not (li == self.L - 1 and self.membrane_readout)
            layers.append(LayerHW(l.n_in, l.n_out, G, l.n_out - (G - 1) * P, wbase, sbase, fires))
            wbase += G * l.n_in
            sbase += G
        self.layers = tuple(layers)
        self.weight_depth, self.state_depth = wbase, sbase
        self.max_groups = max(l.groups for l in layers)

        # ---- datapath widths from the worst-case ranges
        w = model.widths
        ranges = []
        for l, lw in zip(model.layers, w):
            b_lo, b_hi = int(l.bias.min()), int(l.bias.max())
            th_hi = int(l.threshold.max())
            if self.tsc:
                # C += sum of +-w; V += C: both accumulate in the op stage
                ranges += [(lw.current_lo + lw.acc_lo, lw.current_hi + lw.acc_hi),
                           (lw.v_lo + lw.current_lo + lw.acc_lo, lw.v_hi + lw.current_hi + lw.acc_hi),
                           (lw.v_lo - th_hi, lw.v_hi)]                      # generator: R - theta
            elif self.stcb:
                pre = (lw.acc_lo + b_lo, lw.acc_hi + b_hi)                 # a slot's current before the kernel
                big = max(abs(pre[0]), abs(pre[1])) * int(np.abs(l.h).sum())
                ranges += [(lw.acc_lo, lw.acc_hi), pre, (-big, big), (lw.current_lo - th_hi, lw.current_hi),
                           (lw.v_lo + lw.current_lo - th_hi, lw.v_hi + lw.current_hi)]
            else:
                # V + bias + sum(w) and the same minus theta accumulate side by side; bias - theta is a
                # parameter of its own
                lo, hi = lw.v_lo + b_lo + lw.acc_lo, lw.v_hi + b_hi + lw.acc_hi
                ranges += [(lo - th_hi, hi), (b_lo - th_hi, b_hi)]
        self.acc_bits = signed_bits(*_span(*ranges))
        # the leak per layer as the neuron units' multiplier and shifter run it: (num, shift), a layer
        # without a leak the identity. When every leaky layer shifts by the same s, the identity is
        # (2**s, s), so the shift is a constant (wiring, no shifter), unless the product would pass 64
        # bits; else (1, 0). leak_bits is the multiplier's num width (0: no layer leaks, none is built).
        leaks = [l.leak for l in model.layers]
        shifts = {lk[1] for lk in leaks if lk is not None}
        s = next(iter(shifts)) if len(shifts) == 1 else 0
        identity = (1 << s, s) if self.vbits + 1 + s + 1 <= 64 else (1, 0)
        self.leak_table = tuple(tuple(lk) if lk is not None else identity for lk in leaks)
        self.leak_shift_const = len({sh for _, sh in self.leak_table}) == 1
        self.leak_bits = max(unsigned_bits(n) for n, _ in self.leak_table) if shifts else 0
        self.cur_bits = max(signed_bits(lw.current_lo, lw.current_hi) for lw in w) if self.tsc else 0
        self.state_lane_bits = self.vbits + self.cur_bits    # tsc keeps the current C above V
        self.pbits = self.vbits + 1                          # bias, threshold, v_init, bias - threshold
        self.cnt_bits = unsigned_bits(T)
        self.cls_bits = max(1, ceil_log2(self.n_out))
        self.layer_bits = max(1, ceil_log2(self.L))
        self.tbits = max(1, ceil_log2(T))
        self.group_bits = max(1, ceil_log2(max(self.max_groups, self.G_in) + 1))
        self.waddr_bits = max(1, ceil_log2(self.weight_depth + 1))     # + the zero word of null ops
        self.saddr_bits = max(1, ceil_log2(self.state_depth))

        # ---- the input side
        if self.tsc:
            Q = T - 1
            # countdown register: x * Q + input_max // 2, counted down by input_max, -1 when done
            self.rbits = max(signed_bits(-1 - M, M * Q + M // 2),
                             max(signed_bits(lw.v_lo - int(l.threshold.max()), lw.v_hi)
                                 for l, lw in zip(model.layers, w)))
            self.ubits = self.rbits
        else:
            self.ubits = unsigned_bits(max(0, M - 1))        # rate encoder state u in [0, input_max)
            self.xmbits = signed_bits(-M, max(0, (1 << self.xbits) - 1 - M))   # x - input_max
            self.rbits = 0
        self.counter_bits = COUNTER_BITS

        # ---- event buffers: entries {group, mask (P), payload (P lanes)}
        hidden = [l.groups for l in layers[:-1]]
        # tsc runs layer after layer, so one buffer serves every layer's input
        self.ev_depth_in = max([self.G_in] + hidden) if self.tsc else self.G_in
        self.ev_depth_ab = max(hidden) if hidden else 1
        self.ev_gbits_in = max(1, ceil_log2(self.ev_depth_in))
        self.ev_gbits_ab = max(1, ceil_log2(self.ev_depth_ab))
        self.n_buffers = 1 if self.tsc else 1 + min(2, self.L - 1)
        self.payload_in = (self.xbits if self.direct else T if self.stcb else 0)    # per lane
        self.payload_ab = T if self.stcb else 0
        self.ev_in_bits = self.ev_gbits_in + P + P * self.payload_in
        self.ev_ab_bits = self.ev_gbits_ab + P + P * self.payload_ab
        self.dbg_mask_bits = P * T if self.stcb else P
        if self.weight_depth > (1 << 24):
            raise ConfigError("weight memory deeper than 2**24 words is not supported")
        self._check_counter_range()

    def _check_counter_range(self) -> None:
        """A 32-bit counter must not wrap for the worst-case sample."""
        # syn_ops is the largest counter: every synapse active at every step; cycles are bounded by
        # an op per event and group plus the fixed costs
        worst = self.T * sum(l.n_out * l.n_in + l.groups * (l.n_in + 16) for l in self.layers) + \
            self.T * self.taps * self.max_groups * self.L + 64 * (self.n_in + self.n_out + self.T * self.L)
        if worst >= (1 << self.counter_bits):
            raise ConfigError("worst-case counters exceed 32 bits; reduce T or the layer sizes")

    # -------------------------------------------------------------------------------------------

    def memories(self) -> dict:
        """Every memory with its geometry and size in bits (for the manifest and the energy model)."""
        P = self.P
        mems = {
            "weights": (P * self.wbits, self.weight_depth + 1),     # the last word is zero (null ops)
            "state": (P * self.state_lane_bits, self.state_depth),
            "params": (P * 4 * self.pbits, self.state_depth),
        }
        if not self.membrane_readout:
            mems["counts"] = (P * self.cnt_bits, self.layers[-1].groups)
        if self.tsc:
            mems["enc_r"] = (P * self.rbits, self.G_in)
        elif not self.direct:
            mems["enc_x"] = (P * (self.xbits + self.xmbits), self.G_in)     # x and x - input_max
            if not self.stcb:     # stcb encodes a whole train per input in one pass, keeping no u
                mems["enc_u"] = (P * self.ubits, self.G_in)
        mems["events_in"] = (self.ev_in_bits, self.ev_depth_in)
        for name in ("events_a", "events_b")[: self.n_buffers - 1]:
            mems[name] = (self.ev_ab_bits, self.ev_depth_ab)
        out = {}
        for k, (width, depth) in mems.items():
            depth = max(2, depth)  # the generator pads one-word memories to two
            out[k] = {"width": width, "depth": depth, "banks": 1, "bits": width * depth}
        return out

    def parameters(self) -> dict:
        return {"lanes": self.P, "T": self.T, "coding": self.model.coding, "encoding": self.model.encoding,
                "readout": self.model.readout, "input_max": self.model.input_max, "sizes": self.model.sizes,
                "weight_bits": self.wbits, "v_bits": self.vbits, "acc_bits": self.acc_bits,
                "input_bits": self.in_bits, "count_bits": self.cnt_bits, "class_bits": self.cls_bits,
                "groups": [l.groups for l in self.layers], "input_groups": self.G_in,
                "kernels": [l.h.tolist() for l in self.model.layers], "taps": self.taps,
                "resets": [l.reset for l in self.model.layers],
                "leaks": [list(l.leak) if l.leak is not None else None for l in self.model.layers],
                "leak_bits": self.leak_bits,
                "counter_bits": self.counter_bits, "min_state_raw_distance": perf.MIN_STATE_RAW_DISTANCE}
