"""The per-layer descriptor: everything the core needs to know about the layer it is running.

One :class:`~amaranth.lib.data.StructLayout` word per layer, held in a small ROM (``LayerTable``).
The sequencer latches the running layer's word into a register when it moves to the layer, so every
part reads its bases and sizes from flops instead of from a multiplexer over per-layer constants
(which is what eight separate ``Array(Const)`` tables made). A new kind of layer (conv2d, pool) adds
its fields here, and nowhere else.
"""

from __future__ import annotations

from amaranth import *
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .bits import bits_for

__all__ = ["descriptor_layout", "descriptor_words", "LayerTable"]


def descriptor_layout(cfg) -> data.StructLayout:
    """The descriptor of one layer of the core ``cfg`` (a :class:`hw.config.CoreConfig`).

    Fields: ``wbase`` (weight word of group 0, input 0), ``n_in``, ``sbase`` (state and parameter word
    of group 0), ``groups`` and ``last_lanes`` (real lanes of the last group), ``fires`` (0 for the
    last layer under the membrane readout), ``zero_reset``; ``enc_len`` (the length of the ENCODE
    phase before this layer: the encoder's or tsc generator's pass and drain); and the layer's
    *source* as the tsc generator walks it: ``src_words``, ``src_last`` (real lanes of its last word)
    and ``src_base`` (its first state word)."""
    words = [cfg.G_in] + [l.groups for l in cfg.layers]
    return data.StructLayout({
        "wbase": unsigned(bits_for(max(1, cfg.weight_depth))),
        "n_in": unsigned(bits_for(max(l.n_in for l in cfg.layers))),
        "sbase": unsigned(cfg.saddr_bits),
        "groups": unsigned(bits_for(max(l.groups for l in cfg.layers))),
        "last_lanes": unsigned(bits_for(cfg.P)),
        "fires": unsigned(1),
        "zero_reset": unsigned(1),
        "enc_len": unsigned(bits_for(max(encode_cycles(cfg, li) for li in range(cfg.L)))),
        "src_words": unsigned(bits_for(max(words))),
        "src_last": unsigned(bits_for(cfg.P)),
        "src_base": unsigned(cfg.saddr_bits),
    })


def encode_cycles(cfg, layer: int) -> int:
    """Length of the ENCODE phase before layer ``layer`` (its source's words plus the drain; 0 when
    the coding has none)."""
    from golden import perf
    if cfg.direct:
        return 0
    if cfg.tsc:
        words = cfg.G_in if layer == 0 else cfg.layers[layer - 1].groups
        return words + perf.GEN_DRAIN
    if cfg.stcb:
        return cfg.G_in + perf.train_encoder_drain(cfg.T)
    return cfg.G_in + perf.ENC_DRAIN


def descriptor_words(cfg) -> list[dict]:
    """The descriptor of every layer, as field values (the ROM's contents)."""
    out = []
    for li, (lh, l) in enumerate(zip(cfg.layers, cfg.model.layers)):
        if li == 0:
            src_words, src_last, src_base = cfg.G_in, cfg.n_in - (cfg.G_in - 1) * cfg.P, 0
        else:
            prev = cfg.layers[li - 1]
            src_words, src_last, src_base = prev.groups, prev.last_lanes, prev.sbase
        out.append({"wbase": lh.wbase, "n_in": lh.n_in, "sbase": lh.sbase, "groups": lh.groups,
                    "last_lanes": lh.last_lanes, "fires": int(lh.fires), "zero_reset": int(l.reset == "zero"),
                    "enc_len": encode_cycles(cfg, li), "src_words": src_words, "src_last": src_last,
                    "src_base": src_base})
    return out


class LayerTable(wiring.Component):
    """The descriptor ROM, read without a clock (a LUT ROM: a few words).

    Members
    -------
    layer : In(layer_bits)       the layer to look up
    desc : Out(descriptor_layout(cfg))
    """

    def __init__(self, cfg):
        self.layout = descriptor_layout(cfg)
        self._words = descriptor_words(cfg)
        self._depth = max(2, len(self._words))
        super().__init__({"layer": In(cfg.layer_bits), "desc": Out(self.layout)})

    @property
    def words(self) -> list[dict]:
        return list(self._words)

    def elaborate(self, platform):
        m = Module()
        init = self._words + [self._words[-1]] * (self._depth - len(self._words))
        m.submodules.rom = rom = Memory(shape=self.layout, depth=self._depth, init=init)
        rd = rom.read_port(domain="comb")
        m.d.comb += [rd.addr.eq(self.layer), self.desc.eq(rd.data)]
        return m
