"""The per-layer descriptor: everything the core needs to know about the layer it is running.

One :class:`~amaranth.lib.data.StructLayout` word per layer, held in a small ROM (``LayerTable``).
The sequencer latches the running layer's word into a register when it moves to the layer, so every
part reads its bases and sizes from flops instead of from a multiplexer over per-layer constants
(which is what eight separate ``Array(Const)`` tables made). A new kind of layer (conv2d, pool) adds
its fields here, and nowhere else.
"""

from __future__ import annotations

from amaranth import *
from amaranth.lib import data, enum, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .bits import bits_for

__all__ = ["Kind", "descriptor_layout", "descriptor_words", "LayerTable", "source_maps"]


class Kind(enum.Enum, shape=2):
    DENSE = 0
    CONV = 1
    POOL = 2


def descriptor_layout(cfg) -> data.StructLayout:
    """The descriptor of one layer of the core ``cfg`` (a :class:`hw.config.CoreConfig`).

    Fields: ``wbase`` (weight word of group 0, input 0), ``n_in``, ``sbase`` (state and parameter word
    of group 0), ``groups`` and ``last_lanes`` (real lanes of the last group), ``fires`` (0 for the
    last layer under the membrane readout), ``zero_reset``; ``enc_len`` (the length of the ENCODE
    phase before this layer: the encoder's or tsc generator's pass and drain); and the layer's
    *source* as the tsc generator walks it: ``src_words``, ``src_last`` (real lanes of its last word)
    and ``src_base`` (its first state word). conv2d and maxpool2d layers: ``kind``, ``pbase`` (the
    parameter word of channel group 0; a dense layer's equals ``sbase``), ``words`` (N), ``last_plane``
    (the first accumulator word of the last channel group, whose lanes are ``last_lanes``) and the
    layer's index among the core's conv2d layers, maxpool2d layers and both (``cidx``, ``pidx``,
    ``xidx``), which select its row in those parts' own tables. The tsc generator's source also has
    ``src_pbase`` (its parameter word of group 0), ``src_map`` (it is a map stored by channel words:
    the input of a spatial layer 0, or a conv2d/maxpool2d layer's output) and ``src_midx`` (its row in
    :func:`source_maps`). ``leak_num`` and ``leak_shift``: the layer's leak as the neuron units run it
    (``CoreGeometry.leak_table``; a layer without one the identity)."""
    words = [cfg.G_in] + [l.words if l.spatial else l.groups for l in cfg.layers]
    n_sp = max(1, sum(l.spatial for l in cfg.layers))
    n_maps = max(1, len(source_maps(cfg)))
    return data.StructLayout({
        "kind": Kind,
        "pbase": unsigned(cfg.saddr_bits),
        "words": unsigned(bits_for(max([l.words for l in cfg.layers] + [1]))),
        "last_plane": unsigned(bits_for(max([l.words for l in cfg.layers] + [1]))),
        "cidx": unsigned(bits_for(n_sp - 1)), "pidx": unsigned(bits_for(n_sp - 1)),
        "xidx": unsigned(bits_for(n_sp - 1)),
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
        "leak_num": unsigned(max(1, cfg.leak_bits)),
        "leak_shift": unsigned(bits_for(max(sh for _, sh in cfg.leak_table))),
        "src_pbase": unsigned(cfg.saddr_bits),
        "src_map": unsigned(1),
        "src_pool": unsigned(1),
        "src_midx": unsigned(bits_for(n_maps - 1)),
    })


def source_maps(cfg) -> list:
    """The maps stored by channel words that a tsc generator may walk, as :class:`hw.sweep.SweepLayer`
    rows: the input map (when layer 0 is spatial), then every conv2d/maxpool2d layer's output."""
    from golden import perf
    from .sweep import SweepLayer
    rows = []
    if cfg.input_pack is not None:
        C, H, W = cfg.model.input_shape
        rows.append(SweepLayer(perf.groups(C, cfg.P), H, W, cfg.input_pack[0], cfg.input_pack[1]))
    for lh in cfg.layers:
        if lh.spatial:
            rows.append(SweepLayer(lh.groups, lh.out_shape[1], lh.out_shape[2], lh.pack[0], lh.pack[1]))
    return rows


def encode_cycles(cfg, layer: int) -> int:
    """Length of the ENCODE phase before layer ``layer`` (its source's words plus the drain; 0 when
    the coding has none)."""
    from golden import perf
    if cfg.direct:
        return 0
    if cfg.tsc:
        prev = cfg.layers[layer - 1] if layer else None
        words = cfg.G_in if layer == 0 else prev.words if prev.spatial else prev.groups
        return words + perf.GEN_DRAIN
    if cfg.stcb:
        return cfg.G_in + perf.train_encoder_drain(cfg.T)
    return cfg.G_in + perf.ENC_DRAIN


def descriptor_words(cfg) -> list[dict]:
    """The descriptor of every layer, as field values (the ROM's contents)."""
    from golden import perf
    out = []
    idx = {"conv2d": 0, "maxpool2d": 0}
    xidx = 0
    for li, (lh, l) in enumerate(zip(cfg.layers, cfg.model.layers)):
        kind = {"dense": Kind.DENSE, "conv2d": Kind.CONV, "maxpool2d": Kind.POOL}[lh.kind]
        sp = {"cidx": 0, "pidx": 0, "xidx": 0, "words": lh.words, "last_plane": 0}
        if lh.spatial:
            sp.update({"cidx" if lh.kind == "conv2d" else "pidx": idx[lh.kind], "xidx": xidx,
                       "last_plane": (lh.groups - 1) * lh.out_shape[1] * lh.out_shape[2]})
            idx[lh.kind] += 1
            xidx += 1
        if li == 0:
            src_words, src_last, src_base, src_pbase = cfg.G_in, cfg.n_in - (cfg.G_in - 1) * cfg.P, 0, 0
            src_map = int(cfg.input_pack is not None)
            if src_map:
                C = cfg.model.input_shape[0]
                src_last = C - (perf.groups(C, cfg.P) - 1) * cfg.P
        else:
            prev = cfg.layers[li - 1]
            src_words, src_last, src_base, src_pbase = prev.groups, prev.last_lanes, prev.sbase, prev.param_base
            src_map = int(prev.spatial)
            if src_map:
                src_words = prev.words
        # the source map's row in source_maps: the input's first, then the spatial layers in order
        src_midx = 0
        if src_map and li > 0:
            src_midx = int(cfg.input_pack is not None) + sum(l.spatial for l in cfg.layers[:li - 1])
        num, shift = cfg.leak_table[li]
        out.append({"kind": kind, "pbase": lh.param_base, **sp, "leak_num": num if cfg.leak_bits else 0,
                    "leak_shift": shift, "wbase": lh.wbase, "n_in": lh.n_in, "sbase": lh.sbase, "groups": lh.groups,
                    "last_lanes": lh.last_lanes, "fires": int(lh.fires), "zero_reset": int(l.reset == "zero"),
                    "enc_len": encode_cycles(cfg, li), "src_words": src_words, "src_last": src_last,
                    "src_base": src_base, "src_pbase": src_pbase, "src_map": src_map, "src_midx": src_midx,
                    "src_pool": int(li > 0 and cfg.layers[li - 1].kind == "maxpool2d")})
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
