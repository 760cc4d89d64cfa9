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

__all__ = ["CoreGeometry", "ConfigError", "LayerHW", "COUNTER_BITS", "MAX_LANES", "PARAM_FIELDS", "ceil_log2", "map_pack", "packed_to_flat"]

COUNTER_BITS = 32
MAX_LANES = 64
ceil_log2 = perf.ceil_log2


# a parameter lane's fields, the first lowest (hw.store's layout, hw.config's images)
PARAM_FIELDS = ("bias", "thr", "v_init", "bmt")


class ConfigError(ValueError):
    """The model/lanes combination cannot be built."""


@dataclass(frozen=True)
class LayerHW:
    n_in: int              # dense: weight words per group (after a conv2d/maxpool2d source: its packed index space)
    n_out: int
    groups: int            # dense: neuron groups; conv2d, maxpool2d: channel groups Gc
    last_lanes: int        # real lanes in the last group
    wbase: int             # dense: weight word of (g, i) at wbase + g * n_in + i; conv2d: (og, c, ky, kx) from wbase
    sbase: int             # dense: state word of group g at sbase + g; conv2d: state word w at sbase + w
    fires: bool
    kind: str = "dense"
    pbase: int | None = None   # parameter word of group g (conv2d: channel group og) at pbase + g; None: sbase
    words: int = 0         # conv2d, maxpool2d: N, the output map's words (Gc * Ho * Wo)
    out_shape: tuple = ()  # conv2d, maxpool2d: (Co, Ho, Wo)
    pack: tuple = ()       # conv2d, maxpool2d: (bx, by), the bits of ox and oy in the output's packed word index

    @property
    def param_base(self) -> int:
        return self.sbase if self.pbase is None else self.pbase

    @property
    def spatial(self) -> bool:
        return self.kind != "dense"


def map_pack(shape, P: int) -> tuple[int, int, int]:
    """How a [C, H, W] map's words are indexed by the core: word (og, y, x) of P channels at the *packed*
    index ``(og << (bx + by)) | (y << bx) | x``; returns (bx, by, size of the packed index space). The
    consumer then takes c = og * P + p, y and x from bit fields of an event's index, with no divider."""
    C, H, W = shape
    bx, by = max(1, ceil_log2(W)), max(1, ceil_log2(H))
    return bx, by, perf.groups(C, P) << (bx + by)


def _span(*ranges) -> tuple[int, int]:
    return min(int(r[0]) for r in ranges), max(int(r[1]) for r in ranges)


def packed_to_flat(shape, P: int, word: int, lane: int) -> int:
    """The flat C-major index ``(c * H + y) * W + x`` of lane ``lane`` of the word with packed index
    ``word`` of a [C, H, W] map (:func:`map_pack`), or -1 where that names no neuron (a padding lane,
    or a packed index past the map's rows or columns)."""
    C, H, W = shape
    bx, by, _ = map_pack(shape, P)
    og, y, x = word >> (bx + by), (word >> bx) & ((1 << by) - 1), word & ((1 << bx) - 1)
    c = og * P + lane
    return (c * H + y) * W + x if c < C and y < H and x < W else -1


class CoreGeometry:
    """Parameters of one generated core.

    Parameters
    ----------
    model : Model
    lanes : int
        P, a power of two from 1 to 64.
    banks : int
        Accumulator banks (docs/spec.md section 3, Banks): the accumulator's banks and the weight copies
        of bundle slots 1..banks-1 among the memories.
    """

    def __init__(self, model: Model, lanes: int, banks: int = 1):
        if not isinstance(model, Model):
            raise TypeError(f"model must be a Model, not {type(model).__name__}")
        if isinstance(lanes, bool) or not isinstance(lanes, (int, np.integer)) or lanes < 1:
            raise TypeError(f"lanes must be a positive integer, not {lanes!r}")
        if lanes & (lanes - 1) or lanes > MAX_LANES:
            raise ConfigError(f"lanes must be a power of two from 1 to {MAX_LANES}, not {lanes}")
        try:
            self.banks = perf.check_banks(banks)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        # the core runs IF or leaky dense layers, reset by subtraction or to zero; conv2d and maxpool2d in
        # every coding; a leak on conv2d layers in rate coding (docs/spec.md, status)
        for i, l in enumerate(model.layers):
            if l.kind != "dense" and model.coding == "stcb" and self.banks > 1:
                raise ConfigError(f"layer {i}: banks > 1 on an stcb {l.kind} layer is not built yet (its T-slot "
                                  f"accumulator words are not banked); use banks 1")
            if l.kind != "dense" and i == 0 and model.encoding == "direct" and l.in_shape[0] != 1:
                raise ConfigError(f"layer {i}: direct input into a {l.kind} layer needs one input channel on the "
                                  f"hardware core, not {l.in_shape[0]}")
            if l.kind == "conv2d" and l.leak is not None and model.coding == "stcb":
                raise ConfigError(f"layer {i}: leak={list(l.leak)} on an stcb conv2d layer is not supported by the "
                                  f"hardware core yet (rate conv2d layers leak)")
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
        # input words: P consecutive inputs, or P channels at one position when layer 0 is spatial
        self.G_in = perf.map_words(self.n_in, P, model.input_shape if model.layers[0].kind != "dense" else None)
        self.wbits, self.vbits = model.weight_bits, model.v_bits
        M = model.input_max
        self.xbits = unsigned_bits(M)
        self.in_bits = self.xbits + 1                 # one spare bit so out-of-range values are visible
        self.taps = max(len(l.h) for l in model.layers if hasattr(l, "h"))
        self.kernel = any(l.has_kernel for l in model.layers)

        # ---- layers and memory bases; a conv2d or maxpool2d map is stored by channel words, indexed
        # by packed (og, y, x) (map_pack); a dense consumer of one has a weight column per packed index
        layers, wbase, sbase, pbase = [], 0, 0, 0
        src_pack = map_pack(model.input_shape, P) if model.layers[0].kind != "dense" else None
        self.input_pack = src_pack
        # the encoder's memories are indexed like the input's entries: by packed word index
        self.enc_depth = src_pack[2] if src_pack is not None else self.G_in
        for li, l in enumerate(model.layers):
            fires = not (li == self.L - 1 and self.membrane_readout)
            if l.kind == "dense":
                G = perf.groups(l.n_out, P)
                n_in = l.n_in if src_pack is None else src_pack[2] * P
                layers.append(LayerHW(n_in, l.n_out, G, l.n_out - (G - 1) * P, wbase, sbase, fires, "dense", pbase))
                wbase, sbase, pbase = wbase + G * n_in, sbase + G, pbase + G
                src_pack = None
                continue
            Co, Ho, Wo = l.out_shape
            G = perf.groups(Co, P)
            bx, by, _ = out_pack = map_pack(l.out_shape, P)
            N = G * Ho * Wo
            if l.kind == "conv2d":
                layers.append(LayerHW(l.n_in, l.n_out, G, Co - (G - 1) * P, wbase, sbase, fires, "conv2d", pbase,
                                      N, (Co, Ho, Wo), (bx, by)))
                C, K = l.in_shape[0], l.kernel
                wbase, sbase, pbase = wbase + G * C * K * K, sbase + N, pbase + G
            else:
                layers.append(LayerHW(l.n_in, l.n_out, G, Co - (G - 1) * P, wbase, sbase, fires, "maxpool2d",
                                      pbase, N, (Co, Ho, Wo), (bx, by)))
                if model.coding == "tsc":         # the pool's values (and their countdowns): N state words
                    sbase += N
            src_pack = out_pack
        self.layers = tuple(layers)
        self.weight_depth, self.state_depth, self.param_depth = wbase, sbase, pbase
        self.max_groups = max(l.groups for l in layers)
        self.spatial = any(l.spatial for l in layers)
        self.acc_depth = max([l.words for l in layers if l.spatial], default=0)

        # ---- datapath widths from the worst-case ranges
        w = model.widths
        ranges = []
        for l, lw in zip(model.layers, w):
            if l.kind == "maxpool2d":
                continue
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
        # the accumulator memory holds a step's synaptic sums of a conv2d layer's neurons: sums of a
        # subset of each neuron's weights (times the input values for direct input), which the layer's
        # acc range bounds (a bank holds a part of such a sum, a subset too), and a pool's spike bits or
        # trains; the neuron units widen a swept lane to acc_bits. Sized apart from acc_bits, which also
        # spans V and the thresholds: stcb's P*T slots at acc_bits were 1,472 bits a word at P = 8
        conv_acc = [(lw.acc_lo, lw.acc_hi) for l, lw in zip(model.layers, w) if l.kind == "conv2d"]
        self.acc_mem_bits = signed_bits(*_span(*conv_acc)) if conv_acc else 1
        if self.tsc and any(l.kind == "maxpool2d" for l in model.layers):
            # a tsc pool lane holds its window's earliest spike time t <= T - 1 (hw.pool), signed
            self.acc_mem_bits = max(self.acc_mem_bits, signed_bits(0, T - 1))
        # an accumulator-memory lane: stcb keeps T slots per lane (slot t of lane p at element p*T + t)
        self.acc_lane_bits = self.acc_mem_bits * (T if self.stcb else 1)
        # stcb: a slot holds one step's synaptic sum of a neuron (a dense group's, summed in the slot
        # accumulator, or a conv2d word's, swept at acc_mem_bits and widened), so the layers' acc ranges
        # bound it; the slot unit widens it to acc_bits, which also spans the kernel's products, V and θ.
        # At acc_bits the P*T slots and their copies were half the 25F's flip-flops at P = 8
        self.slot_bits = signed_bits(*_span(*[(lw.acc_lo, lw.acc_hi) for l, lw in zip(model.layers, w)
                                              if l.kind != "maxpool2d"])) if self.stcb else 0
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
        self.cur_bits = max(signed_bits(lw.current_lo, lw.current_hi)
                            for l, lw in zip(model.layers, w) if l.kind != "maxpool2d") if self.tsc else 0
        self.state_lane_bits = self.vbits + self.cur_bits    # tsc keeps the current C above V
        # a parameter lane's four fields, each as wide as its values over every layer, padding lanes
        # (bias 0, threshold 1, v_init 0) included: at v_bits + 1 each, the stcb digits net carried a bias
        # of -11..10 at 24 bits through every register of its neuron units' pipelines
        vals = dict(zip(PARAM_FIELDS, ([0], [1], [0], [-1])))
        for l in model.layers:
            if l.kind == "maxpool2d":
                continue
            b, th, v0 = (np.asarray(a, np.int64) for a in (l.bias, l.threshold, l.v_init))
            for k, a in (("bias", b), ("thr", th), ("v_init", v0), ("bmt", b - th)):
                vals[k] += [int(a.min()), int(a.max())]
        self.param_bits = {k: signed_bits(min(vals[k]), max(vals[k])) for k in PARAM_FIELDS}
        self.param_lane_bits = sum(self.param_bits.values())
        self.cnt_bits = unsigned_bits(T)
        self.cls_bits = max(1, ceil_log2(self.n_out))
        self.layer_bits = max(1, ceil_log2(self.L))
        self.tbits = max(1, ceil_log2(T))
        # a group index names a dense group, an input word, or a packed (og, y, x) word of a map
        packed = [perf.groups(l.out_shape[0], P) << (l.pack[0] + l.pack[1]) for l in layers if l.spatial]
        if self.input_pack is not None:
            packed.append(self.input_pack[2])
        self.group_bits = max(1, ceil_log2(max([self.max_groups, self.G_in] + packed) + 1))
        self.waddr_bits = max(1, ceil_log2(self.weight_depth + 1))     # + the zero word of null ops
        self.saddr_bits = max(1, ceil_log2(max(self.state_depth, self.param_depth)))

        # ---- the input side
        if self.tsc:
            Q = T - 1
            # countdown register: x * Q + input_max // 2, counted down by input_max, -1 when done
            self.rbits = max(signed_bits(-1 - M, M * Q + M // 2),
                             max(signed_bits(lw.v_lo - (int(l.threshold.max()) if l.kind != "maxpool2d" else 1),
                                             lw.v_hi)                # a pool's values count down by 1
                                 for l, lw in zip(model.layers, w)))
            self.ubits = self.rbits
        else:
            self.ubits = unsigned_bits(max(0, M - 1))        # rate encoder state u in [0, input_max)
            self.xmbits = signed_bits(-M, max(0, (1 << self.xbits) - 1 - M))   # x - input_max
            self.rbits = 0
        self.counter_bits = COUNTER_BITS

        # ---- event buffers: entries {group, mask (P), payload (P lanes)}; a map's entries are named by
        # packed word index, so their group field spans the packed space, while the depth is the words
        hidden = [l.words if l.spatial else l.groups for l in layers[:-1]]
        hidden_names = [(perf.groups(l.out_shape[0], P) << (l.pack[0] + l.pack[1])) if l.spatial else l.groups
                        for l in layers[:-1]]
        # tsc runs layer after layer, so one buffer serves every layer's input
        self.ev_depth_in = max([self.G_in] + hidden) if self.tsc else self.G_in
        self.ev_depth_ab = max(hidden) if hidden else 1
        in_names = self.input_pack[2] if self.input_pack is not None else self.G_in
        self.ev_gbits_in = max(1, ceil_log2(max([in_names] + (hidden_names if self.tsc else []))))
        self.ev_gbits_ab = max(1, ceil_log2(max(hidden_names) if hidden_names else 1))
        self.n_buffers = 1 if self.tsc else 1 + min(2, self.L - 1)
        self.payload_in = (self.xbits if self.direct else T if self.stcb else 0)    # per lane
        self.payload_ab = T if self.stcb else 0
        # an entry (group, mask, payload) and its one-lane flag (hw.events.EventBuffer stores it beside the word)
        self.ev_in_bits = self.ev_gbits_in + P + P * self.payload_in + 1
        self.ev_ab_bits = self.ev_gbits_ab + P + P * self.payload_ab + 1
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
            "params": (P * self.param_lane_bits, self.param_depth),
        }
        banked = {}
        if self.spatial:
            mems["acc"] = (P * self.acc_lane_bits, self.acc_depth)
            if self.banks > 1:        # the banks, each as deep as the largest layer needs
                mems["acc"] = (P * self.acc_lane_bits, perf.bank_depth(self.model, P, self.banks))
                banked["acc"] = self.banks
                top = self.conv_weight_words
                if top:               # bundle slots 1..banks-1: a copy each of the conv2d layers' weights
                    mems["weight_copies"] = (P * self.wbits, top)
                    banked["weight_copies"] = self.banks - 1
        if not self.membrane_readout:
            mems["counts"] = (P * self.cnt_bits, self.layers[-1].groups)
        if self.tsc:
            mems["enc_r"] = (P * self.rbits, self.enc_depth)
        elif not self.direct:
            mems["enc_x"] = (P * (self.xbits + self.xmbits), self.enc_depth)     # x and x - input_max
            if not self.stcb:     # stcb encodes a whole train per input in one pass, keeping no u
                mems["enc_u"] = (P * self.ubits, self.enc_depth)
        mems["events_in"] = (self.ev_in_bits, self.ev_depth_in)
        for name in ("events_a", "events_b")[: self.n_buffers - 1]:
            mems[name] = (self.ev_ab_bits, self.ev_depth_ab)
        out = {}
        for k, (width, depth) in mems.items():
            depth = max(2, depth)  # the generator pads one-word memories to two
            nb = banked.get(k, 1)
            out[k] = {"width": width, "depth": depth, "banks": nb, "bits": width * depth * nb}
        return out

    @property
    def conv_weight_words(self) -> int:
        """The weight words up to the last conv2d layer's (they come before every dense layer's)."""
        return max((lh.wbase + lh.groups * l.in_shape[0] * l.kernel ** 2
                    for l, lh in zip(self.model.layers, self.layers) if l.kind == "conv2d"), default=0)

    def parameters(self) -> dict:
        return {"lanes": self.P, "T": self.T, "coding": self.model.coding, "encoding": self.model.encoding,
                "readout": self.model.readout, "input_max": self.model.input_max, "sizes": self.model.sizes,
                "weight_bits": self.wbits, "v_bits": self.vbits, "acc_bits": self.acc_bits,
                # a parameter word's lane: these fields in this order, the first lowest (a loader packs them)
                "param_bits": dict(self.param_bits),
                **({"acc_mem_bits": self.acc_mem_bits} if self.spatial else {}),
                **({"slot_bits": self.slot_bits} if self.stcb else {}),
                "input_bits": self.in_bits, "count_bits": self.cnt_bits, "class_bits": self.cls_bits,
                "groups": [l.groups for l in self.layers], "input_groups": self.G_in,
                "kinds": [l.kind for l in self.model.layers],
                "kernels": [l.h.tolist() if hasattr(l, "h") else [1] for l in self.model.layers], "taps": self.taps,
                "resets": [l.reset for l in self.model.layers],
                "leaks": [list(l.leak) if l.leak is not None else None for l in self.model.layers],
                "leak_bits": self.leak_bits,
                "counter_bits": self.counter_bits, "min_state_raw_distance": perf.MIN_STATE_RAW_DISTANCE,
                **({"banks": self.banks} if self.banks > 1 else {})}
