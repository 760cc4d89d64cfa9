"""Memory geometry and widths of the core for one integer model and lane count.

The one place that both golden's performance and energy models and hw/'s generator read: memory
widths and depths, address bases, register widths. golden never imports hw; hw builds its RTL from
these numbers, so the RTL, its manifest, the energy model and the testbench agree by construction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import perf
from .model import Model, signed_bits, unsigned_bits

__all__ = ["CoreGeometry", "ConfigError", "LayerHW", "COUNTER_BITS", "MAX_LANES", "ceil_log2"]

COUNTER_BITS = 32
MAX_LANES = 64


def ceil_log2(n: int) -> int:
    """Smallest k with 2**k >= n (0 for n <= 1)."""
    return max(0, int(n - 1).bit_length())


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
        # schema 2 is golden-only for now: the core runs dense IF layers (docs/spec.md, status)
        for i, l in enumerate(model.layers):
            if l.kind != "dense":
                raise ConfigError(f"layer {i}: {l.kind} layers are not supported by the hardware core yet "
                                  f"(dense layers only)")
            if l.leak is not None:
                raise ConfigError(f"layer {i}: leak={list(l.leak)} is not supported by the hardware core yet "
                                  f"(IF neurons only)")
            if l.reset != "subtract":
                raise ConfigError(f"layer {i}: reset {l.reset!r} is not supported by the hardware core yet "
                                  f"(reset by subtraction only)")
        self.coding = model.coding
        self.tsc = model.coding == "tsc"
        self.stcb = model.coding == "stcb"
        self.model = model
        self.P = P = int(lanes)
        self.T = model.T
        self.direct = model.encoding == "direct"
        self.membrane_readout = model.readout == "membrane"
        self.n_in = model.n_in
        self.n_out = model.n_out
        self.L = len(model.layers)
        self.G_in = perf.groups(self.n_in, P)
        self.wbits = model.weight_bits
        self.vbits = model.v_bits
        self.xbits = unsigned_bits(model.input_max)
        self.in_bits = self.xbits + 1                 # one spare bit so out-of-range values are visible
        self.ubits = unsigned_bits(max(0, model.input_max - 1))
        if self.tsc:
            # the input countdown register: x * Q + input_max // 2, and -1 once the OFF event is sent
            M, Q = model.input_max, model.T - 1
            self.ubits = signed_bits(-1, M * Q + M // 2)
        # TSC keeps the current C next to V in the state word
        self.cur_bits = max(signed_bits(w.current_lo, w.current_hi) for w in model.widths) if self.tsc else 0
        self.state_lane_bits = model.v_bits + self.cur_bits
        self.tbits = max(1, ceil_log2(self.T))
        self.cnt_bits = unsigned_bits(self.T)
        self.cls_bits = max(1, ceil_log2(self.n_out))
        self.layer_bits = max(1, ceil_log2(self.L))
        self.acc_bits = max(signed_bits(w.acc_lo, w.acc_hi) for w in model.widths)
        self.counter_bits = COUNTER_BITS

        layers, wbase, sbase = [], 0, 0
        for li, l in enumerate(model.layers):
            G = perf.groups(l.n_out, P)
            fires = not (li == self.L - 1 and self.membrane_readout)
            layers.append(LayerHW(l.n_in, l.n_out, G, l.n_out - (G - 1) * P, wbase, sbase, fires))
            wbase += G * l.n_in
            sbase += G
        self.layers = tuple(layers)
        self.weight_depth = wbase
        self.state_depth = sbase
        self.max_groups = max(l.groups for l in layers)
        # event buffers: IN (encoder or direct inputs), A (written by even layers), B (odd layers)
        hidden = [l.groups for l in layers[:-1]]
        # TSC runs layer after layer, so one event buffer serves every layer's input
        self.ev_depth_in = max([self.G_in] + hidden) if self.tsc else self.G_in
        self.ev_depth_ab = max(hidden) if hidden else 1
        self.ev_gbits_in = max(1, ceil_log2(self.ev_depth_in))
        self.ev_gbits_ab = max(1, ceil_log2(self.ev_depth_ab))
        self.ev_cnt_in_bits = unsigned_bits(self.ev_depth_in)
        self.ev_cnt_ab_bits = unsigned_bits(self.ev_depth_ab)
        self.n_buffers = 1 if self.tsc else 1 + min(2, self.L - 1)
        # STCB: an event is a whole T-bit train; the temporal kernel taps per layer (zero-padded)
        self.train_bits = self.T if self.stcb else 0
        self.kernel_taps = max(len(l.h) for l in model.layers)
        self.ev_in_bits = (self.ev_gbits_in + (self.xbits if self.direct else self.train_bits)
                           + (1 if self.tsc else 0))
        self.ev_ab_bits = self.ev_gbits_ab + self.train_bits
        self.dbg_mask_bits = P * self.T if self.stcb else P
        self.group_bits = max(1, ceil_log2(max(self.max_groups, self.G_in) + 1))
        self.waddr_bits = max(1, ceil_log2(self.weight_depth))
        self.saddr_bits = max(1, ceil_log2(self.state_depth))
        self.ev_count_bits = unsigned_bits(P * max(self.ev_depth_in, self.ev_depth_ab))
        if self.weight_depth > (1 << 24):
            raise ConfigError("weight memory deeper than 2**24 words is not supported")
        self._check_counter_range()

    def _check_counter_range(self) -> None:
        """A 32-bit counter must not wrap for the worst-case sample."""
        # syn_ops is the largest counter: every synapse active at every step
        worst = self.T * sum(l.n_out * l.n_in + l.groups * (l.n_in + 8) for l in self.layers)
        if worst >= (1 << self.counter_bits):
            raise ConfigError("worst-case counters exceed 32 bits; reduce T or the layer sizes")

    # ---------------------------------------------------------------------------------------

    def memories(self) -> dict:
        """Every memory with its geometry and size in bits (for the manifest)."""
        P = self.P
        mems = {
            "weights": (P * self.wbits, self.weight_depth),
            "state": (P * self.state_lane_bits, self.state_depth),
            "params": (P * 3 * self.vbits, self.state_depth),
        }
        if not self.membrane_readout:
            mems["counts"] = (P * self.cnt_bits, self.layers[-1].groups)
        if self.tsc:
            mems["enc_r"] = (P * self.ubits, self.G_in)
        elif not self.direct:
            mems["enc_x"] = (P * self.xbits, self.G_in)
            if not self.stcb:     # stcb encodes a whole train per input in one pass, keeping no u
                mems["enc_u"] = (P * self.ubits, self.G_in)
        mems["events_in"] = (self.ev_in_bits, self.ev_depth_in, P)
        for name in ("events_a", "events_b")[: self.n_buffers - 1]:
            mems[name] = (self.ev_ab_bits, self.ev_depth_ab, P)
        out = {}
        for k, v in mems.items():
            width, depth = v[0], max(2, v[1])  # the generator pads one-word memories to two
            banks = v[2] if len(v) > 2 else 1
            out[k] = {"width": width, "depth": depth, "banks": banks, "bits": width * depth * banks}
        return out

    def parameters(self) -> dict:
        return {"lanes": self.P, "T": self.T, "coding": self.model.coding, "encoding": self.model.encoding,
                "readout": self.model.readout, "input_max": self.model.input_max, "sizes": self.model.sizes,
                "weight_bits": self.wbits, "v_bits": self.vbits, "acc_bits": self.acc_bits,
                "input_bits": self.in_bits, "count_bits": self.cnt_bits, "class_bits": self.cls_bits,
                "groups": [l.groups for l in self.layers], "input_groups": self.G_in,
                "kernels": [l.h.tolist() for l in self.model.layers],
                "counter_bits": self.counter_bits}
