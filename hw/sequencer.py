"""The sequencer: which phase the core is in, for which layer and step.

Per sample: LOAD (the input beats), LOAD_DRAIN, then per step and layer the phases of docs/spec.md
section 3 (rate: the encoder's pass, then per layer SETUP, ISSUE, DRAIN; stcb: the train encoder's
single pass, then one phase per layer; tsc: per layer and step the ON/OFF generator's pass, then
the layer's phase), FINISH (the argmax settles), READOUT. Every phase but ISSUE and READOUT has a
fixed length from golden.perf; ISSUE lasts until the event reader's last op, READOUT until the last
result beat. The phase is a registered state, so everything that selects on it starts at a flop.

The sequencer also holds the running layer's descriptor (:mod:`hw.descriptor`): ``desc`` is loaded
from the layer table in the same edge as ``layer``, so the two always agree, and every part reads the
layer's bases and sizes from these flops.
"""

from __future__ import annotations

from amaranth import *
from amaranth.lib import enum, wiring
from amaranth.lib.wiring import In, Out

from golden import perf

from .conv_addrgen import ConvAddressGen
from .descriptor import Kind, LayerTable, encode_cycles
from .pool import PoolScatter

__all__ = ["Sequencer", "Phase"]


class Phase(enum.Enum, shape=4):
    LOAD = 0
    LOAD_DRAIN = 1
    ENCODE = 2           # rate encoder, stcb train encoder or tsc generator pass (with its drain)
    SETUP = 3
    ISSUE = 4
    DRAIN = 5
    FINISH = 6
    READOUT = 7
    SWEEP = 8            # conv2d / maxpool2d: the fire sweep over the layer's output words


class Sequencer(wiring.Component):
    """Members
    -------
    loader_done, reader_last, readout_done : In(1)
    sweep_last : In(1)     conv2d / maxpool2d: the sweep's last word goes out this cycle
    phase : Out(Phase), layer : Out, t : Out, t0, tlast : Out(1)
    desc : Out(descriptor layout)   the descriptor of ``layer`` (a register, loaded with it)
    encode_start, reader_start, readout_start, sample_start, sweep_start : Out(1)   one-cycle pulses

    A conv2d or maxpool2d layer's phase (docs/spec.md section 3) is SETUP, ISSUE (the scatter: it ends
    in the cycle its last op leaves the conv address generator or pool scatter, their ``LATENCY``
    cycles after its event left the reader, so the DRAIN that follows is shorter by as much), DRAIN,
    SWEEP (N words, one per cycle; an stcb conv2d layer's one every T*taps cycles, for the slot unit), DRAIN
    (stcb: after a conv2d sweep the slot unit's ``stcb_layer_drain``, after a scatter or a pool's sweep
    ``layer_drain``); a tsc maxpool2d layer's is SETUP, ISSUE, DRAIN, and at step 0
    then its clear SWEEP.
    counted : Out(1)       the cycle counts (every cycle but LOAD and READOUT, which count beats and reads)
    """

    def __init__(self, cfg):
        self._cfg = cfg
        self._table = LayerTable(cfg)
        self.desc_layout = self._table.layout
        super().__init__({"loader_done": In(1), "reader_last": In(1), "readout_done": In(1), "sweep_last": In(1),
                          "sweep_start": Out(1),
                          "phase": Out(Phase), "layer": Out(cfg.layer_bits), "t": Out(cfg.tbits),
                          "desc": Out(self.desc_layout, init=self._table.words[0]),
                          "t0": Out(1), "tlast": Out(1), "encode_start": Out(1), "reader_start": Out(1),
                          "readout_start": Out(1), "sample_start": Out(1), "counted": Out(1)})

    def encode_cycles(self, layer: int) -> int:
        """Length of an ENCODE phase before layer ``layer`` (its source's words plus the drain)."""
        return encode_cycles(self._cfg, layer)

    def drain_cycles(self) -> int:
        """The DRAIN after a phase that ends in the neuron unit: a dense phase, a conv2d sweep (stcb:
        the slot unit's pass over the last group or word and its pipeline)."""
        cfg = self._cfg
        if cfg.stcb:
            return perf.stcb_layer_drain(cfg.T, cfg.taps, cfg.direct)
        return perf.layer_drain(cfg.coding, cfg.model.encoding)

    def scatter_drain_cycles(self) -> int:
        """The pipeline's drain after a scatter, or after a maxpool2d sweep (its words go to the
        accumulator memory or the event buffer, not through the slot unit): ``layer_drain``."""
        return perf.layer_drain(self._cfg.coding, self._cfg.model.encoding)

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        L, T = cfg.L, cfg.T
        encodes = not cfg.direct          # rate encoder, train encoder or tsc generator
        # the layer (and its descriptor) of the next cycle: this one unless a phase moves on
        m.submodules.table = table = self._table
        layer_next = Signal.like(self.layer)
        m.d.comb += [layer_next.eq(self.layer), table.layer.eq(layer_next)]
        m.d.sync += [self.layer.eq(layer_next), self.desc.eq(table.desc)]
        wait = self._wait = Signal(range(max(max(self.encode_cycles(li) for li in range(L)), self.drain_cycles(),
                                             perf.LOAD_DRAIN, perf.LAYER_SETUP, perf.finish_cycles(cfg.P)) + 1))
        m.d.comb += [self.t0.eq(self.t == 0), self.tlast.eq((self.t == T - 1) | C(int(cfg.stcb), 1))]
        spatial = self.desc.kind != Kind.DENSE
        swept = Signal()                  # a spatial layer's DRAIN follows its sweep (else its scatter)
        # tsc maxpool2d: a step is its scatter and drain; step 0 then has the clear sweep, and no drain after
        tsc_pool = (self.desc.kind == Kind.POOL) & C(int(cfg.tsc), 1)
        for s in (self.encode_start, self.reader_start, self.sample_start, self.sweep_start):
            m.d.sync += s.eq(0)
        # the readout starts in FINISH's last cycle, so its two read cycles follow with no gap
        m.d.comb += self.readout_start.eq((self.phase == Phase.FINISH) & (wait == 0))

        def enter_encode():               # the ENCODE phase before layer_next
            m.d.sync += [self.phase.eq(Phase.ENCODE), self.encode_start.eq(1), wait.eq(table.desc.enc_len - 1)]

        def enter_setup():
            m.d.sync += [self.phase.eq(Phase.SETUP), self.reader_start.eq(1), wait.eq(perf.LAYER_SETUP - 1)]

        def begin_step(t_next):
            m.d.sync += self.t.eq(t_next)
            m.d.comb += layer_next.eq(0)
            if encodes:
                enter_encode()
            else:
                enter_setup()

        with m.If(wait != 0):
            m.d.sync += wait.eq(wait - 1)
        with m.Switch(self.phase):
            with m.Case(Phase.LOAD):
                with m.If(self.loader_done):
                    m.d.sync += [self.phase.eq(Phase.LOAD_DRAIN), wait.eq(perf.LOAD_DRAIN - 1)]
            with m.Case(Phase.LOAD_DRAIN):
                with m.If(wait == 0):
                    begin_step(0)
            with m.Case(Phase.ENCODE):
                with m.If(wait == 0):
                    enter_setup()
            with m.Case(Phase.SETUP):
                with m.If(wait == 0):
                    m.d.sync += self.phase.eq(Phase.ISSUE)
            with m.Case(Phase.ISSUE):
                with m.If(self.reader_last):
                    # a scatter's ISSUE ends when its last op leaves the conv address generator or the
                    # pool scatter, LATENCY cycles after its event left the reader: its DRAIN is shorter by that
                    conv_drain = self.scatter_drain_cycles() - ConvAddressGen.LATENCY
                    pool_drain = self.scatter_drain_cycles() - PoolScatter.LATENCY
                    m.d.sync += [self.phase.eq(Phase.DRAIN), swept.eq(~spatial),
                                 wait.eq(Mux(self.desc.kind == Kind.CONV, conv_drain - 1,
                                             Mux(spatial, pool_drain - 1, self.drain_cycles() - 1)))]
            with m.Case(Phase.DRAIN):
                with m.If((wait == 0) & ~swept & ~(tsc_pool & ~self.t0)):
                    m.d.sync += [self.phase.eq(Phase.SWEEP), self.sweep_start.eq(1)]
                with m.Elif(wait == 0):
                    self._next_phase(m, layer_next, begin_step, enter_encode, enter_setup)
            with m.Case(Phase.SWEEP):
                with m.If(self.sweep_last & tsc_pool):         # the clear sweep: its writes need no drain
                    self._next_phase(m, layer_next, begin_step, enter_encode, enter_setup)
                with m.Elif(self.sweep_last):
                    # a conv2d sweep drains through the neuron unit (stcb: the slot unit), a pool's does not
                    m.d.sync += [self.phase.eq(Phase.DRAIN), swept.eq(1),
                                 wait.eq(Mux(self.desc.kind == Kind.CONV, self.drain_cycles() - 1,
                                             self.scatter_drain_cycles() - 1))]
            with m.Case(Phase.FINISH):
                with m.If(wait == 0):
                    m.d.sync += self.phase.eq(Phase.READOUT)
            with m.Case(Phase.READOUT):
                with m.If(self.readout_done):
                    m.d.sync += [self.phase.eq(Phase.LOAD), self.sample_start.eq(1)]
        m.d.comb += self.counted.eq(~self.phase.as_value().matches(Phase.LOAD, Phase.READOUT))
        return m

    def _next_phase(self, m, layer_next, begin_step, enter_encode, enter_setup):
        cfg = self._cfg
        L, T = cfg.L, cfg.T
        last_layer = self.layer == L - 1
        last_t = self.t == T - 1
        if cfg.tsc:          # layer after layer: each step of a window starts with the generator
            with m.If(~last_t):
                m.d.sync += self.t.eq(self.t + 1)
                enter_encode()
            with m.Elif(~last_layer):
                m.d.sync += self.t.eq(0)
                m.d.comb += layer_next.eq(self.layer + 1)
                enter_encode()
            with m.Else():
                self._finish(m)
        elif cfg.stcb:       # one phase per layer covers the window
            with m.If(~last_layer):
                m.d.comb += layer_next.eq(self.layer + 1)
                enter_setup()
            with m.Else():
                self._finish(m)
        else:
            with m.If(~last_layer):
                m.d.comb += layer_next.eq(self.layer + 1)
                enter_setup()
            with m.Elif(~last_t):
                begin_step(self.t + 1)
            with m.Else():
                self._finish(m)

    def _finish(self, m):
        m.d.sync += [self.phase.eq(Phase.FINISH), self._wait.eq(perf.finish_cycles(self._cfg.P) - 1)]
