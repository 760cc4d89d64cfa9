"""The spikeforge spiking core: the parts of hw/ composed for one integer model and lane count.

Dataflow (docs/spec.md section 3), output-stationary and event-driven::

    InputLoader -> encoder / ON-OFF generator -> EventBuffer (IN)
    EventBuffer -> EventReader -> DenseAddressGen -> WeightFetch -> neuron unit -> EventBuffer (A/B)
                                        \\-> GroupStore (state, parameters) -/      \\-> Argmax -> Readout

The address generator reads a group's state and parameters one cycle before its first weight, so the
neuron unit finishes the update at the group's last op. Every latency is a constant of golden.perf,
which predicts the counters this core reports; a phase drains before the next begins, so the
pipeline stages may read the phase registers (layer, step) of the sequencer.
"""

from __future__ import annotations

from amaranth import *
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

import golden
from golden import perf

from .addrgen import DenseAddressGen
from .argmax import Argmax
from .bits import popcount
from .config import CoreConfig
from .counters import Counters
from .encoders import InputLoader, RateEncoder, TrainEncoder, TscGenerator, enc_lane_layout
from .events import EventBuffer, EventReader, entry_layout
from .fetch import WeightFetch
from .neuron import IfUnit, SlotAccumulator, SlotUnit, TscUnit
from .readout import Readout
from .sequencer import Phase, Sequencer
from .signatures import (CounterSignature, OpTraceSignature, SpikeMonitorSignature, StateTraceSignature,
                         counter_ports)
from .store import GroupStore, param_lane_layout, state_lane_layout

__all__ = ["SpikeCore", "COUNTER_NAMES"]

COUNTER_NAMES = tuple(c for c in perf.COUNTERS if c != "spikes")


class SpikeCore(wiring.Component):
    """A generated spiking core for one integer model.

    Parameters
    ----------
    model : golden.Model
    lanes : int
        P neurons updated in parallel (power of two, 1..64).

    Members
    -------
    x : In(stream)
        ``payload.value`` (unsigned, one bit wider than ``input_max`` needs) and ``payload.last``,
        ``n_in`` beats per sample; taken only while the core waits for a sample.
    result : Out(stream)
        ``n_out`` beats per sample: ``index``, ``count``, ``membrane`` (signed), ``prediction``
        (the same on every beat) and ``last`` on the final beat.
    err_range, err_protocol : Out(1)
        Sticky until reset: an input value above ``input_max``; ``last`` on the wrong beat.
    done : Out(1)
        High for one cycle while ``cnt`` holds the counters of the sample just completed.
    cnt : Out(CounterSignature)
        Counters of the last completed sample (docs/spec.md section 4).
    spk, st, op : Out
        Monitors: every neuron-group update with its spike mask; the state memory's reads and writes;
        the accumulation ops (hw.signatures).
    """

    def __init__(self, model: golden.Model, *, lanes: int = 8):
        self._cfg = cfg = CoreConfig(model, lanes)
        self.x_layout = data.StructLayout({"value": unsigned(cfg.in_bits), "last": unsigned(1)})
        self.result_layout = data.StructLayout({
            "index": unsigned(cfg.cls_bits), "count": unsigned(cfg.cnt_bits), "membrane": signed(cfg.vbits),
            "prediction": unsigned(cfg.cls_bits), "last": unsigned(1)})
        self.state_lane = state_lane_layout(cfg.vbits, cfg.cur_bits, 0 if cfg.membrane_readout else cfg.cnt_bits)
        self.param_lane = param_lane_layout(cfg.pbits)
        gbits = max(cfg.ev_gbits_in, cfg.ev_gbits_ab)
        self.entry = entry_layout(cfg.P, gbits, max(cfg.payload_in, cfg.payload_ab))
        self.counter_names = tuple(counter_ports(perf.COUNTERS, cfg.L))
        super().__init__({
            "x": In(stream.Signature(self.x_layout)),
            "result": Out(stream.Signature(self.result_layout)),
            "err_range": Out(1), "err_protocol": Out(1), "done": Out(1),
            "cnt": Out(CounterSignature(self.counter_names, cfg.counter_bits)),
            "spk": Out(SpikeMonitorSignature(layer_bits=cfg.layer_bits, t_bits=cfg.tbits, group_bits=cfg.group_bits,
                                             mask_bits=cfg.dbg_mask_bits)),
            "st": Out(StateTraceSignature(addr_bits=cfg.saddr_bits, data_bits=cfg.P * Shape.cast(self.state_lane).width)),
            "op": Out(OpTraceSignature()),
        })

    @property
    def config(self) -> CoreConfig:
        return self._cfg

    # ------------------------------------------------------------------------------------------
    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()
        P, L = cfg.P, cfg.L
        sub = m.submodules
        sub.seq = seq = Sequencer(cfg)
        layer, t0 = seq.layer, seq.t0
        per_layer = lambda values: Array(Const(v) for v in values)   # noqa: E731
        SBASE, GROUPS = per_layer([l.sbase for l in cfg.layers]), per_layer([l.groups for l in cfg.layers])
        LAST_LANES = per_layer([l.last_lanes for l in cfg.layers])
        FIRES = per_layer([int(l.fires) for l in cfg.layers])
        ZERO = per_layer([int(l.reset == "zero") for l in cfg.model.layers])
        # the leak (num, shift) per layer (CoreGeometry.leak_table: a layer without one runs an identity)
        NUM = per_layer([n for n, _ in cfg.leak_table])
        SHIFT = per_layer([sh for _, sh in cfg.leak_table])

        def real_lanes(group):
            return Mux(group == GROUPS[layer] - 1, LAST_LANES[layer], P)

        # ---- memories of the groups, event buffers, input side
        sub.store = store = GroupStore(lanes=P, depth=cfg.state_depth, addr_bits=cfg.saddr_bits,
                                       state_lane=self.state_lane, param_lane=self.param_lane,
                                       param_init=cfg.param_init())
        bufs = [EventBuffer(self.entry, cfg.ev_depth_in)] + [EventBuffer(self.entry, cfg.ev_depth_ab)
                                                             for _ in range(cfg.n_buffers - 1)]
        for i, b in enumerate(bufs):
            sub[f"events_{'in ab'.split()[min(i, 1)]}{i}"] = b
        enc = self._input_side(m, seq, store, bufs[0])

        # ---- the op pipeline: reader -> address generator -> weight fetch -> neuron unit
        max_groups = max(l.groups for l in cfg.layers)
        sub.reader = reader = EventReader(lanes=P, entry=self.entry, depth=max(cfg.ev_depth_in, cfg.ev_depth_ab),
                                          max_groups=max_groups, payload_bits=max(cfg.payload_in, cfg.payload_ab),
                                          max_min_cycles=perf.stcb_group_cycles(cfg.T, cfg.taps))
        src = Signal(range(max(2, cfg.n_buffers)))                 # the buffer the phase's layer reads
        m.d.comb += src.eq(0 if cfg.tsc else Mux(layer == 0, 0, Mux(layer[0], 1, 2 if cfg.n_buffers > 2 else 1)))
        for b in bufs:
            m.d.comb += b.rd_addr.eq(reader.rd_addr)
        m.d.comb += [reader.rd_data.eq(Array(b.rd_data.as_value() for b in bufs)[src]),
                     reader.count.eq(Array(b.count for b in bufs)[src]), reader.start.eq(seq.reader_start),
                     reader.groups.eq(GROUPS[layer]),
                     reader.min_group_cycles.eq(perf.stcb_group_cycles(cfg.T, cfg.taps) if cfg.stcb else 1),
                     seq.reader_last.eq(reader.events.valid & reader.events.payload.last
                                        & (reader.events.payload.group == GROUPS[layer] - 1))]
        sub.agen = agen = DenseAddressGen(event_layout=reader.event_layout, layers=cfg.layers,
                                          waddr_bits=cfg.waddr_bits, saddr_bits=cfg.saddr_bits,
                                          layer_bits=cfg.layer_bits, payload_bits=max(cfg.payload_in, cfg.payload_ab),
                                          zero_word=cfg.weight_depth)
        wiring.connect(m, reader.events, agen.events)
        m.d.comb += agen.layer.eq(layer)
        sub.fetch = fetch = WeightFetch(op_layout=agen.op_layout, lanes=P, weight_bits=cfg.wbits,
                                        depth=cfg.weight_depth + 1, init=cfg.weight_init() + [0],
                                        multiply_bits=cfg.xbits if cfg.direct else 0, negates=cfg.tsc)
        m.d.comb += [fetch.op_valid.eq(agen.op_valid), fetch.op.eq(agen.op), fetch.scale.eq(layer == 0),
                     fetch.negate.eq(~t0 if cfg.tsc else 0)]        # tsc: events after step 0 are OFFs
        op = fetch.out_op
        m.d.comb += [self.op.valid.eq(fetch.out_valid), self.op.null.eq(op.null), self.op.last.eq(op.last)]
        upd = self._neuron_unit(m, seq, store, fetch, real_lanes, FIRES, ZERO, NUM, SHIFT)

        # ---- the state memory's clients: the address generator, the tsc generator, the readout
        res_g = cfg.layers[-1]
        sub.readout = readout = Readout(result_layout=self.result_layout, lanes=P, n_out=cfg.n_out, sbase=res_g.sbase,
                                        saddr_bits=cfg.saddr_bits, state_layout=store.state_layout,
                                        counts=not cfg.membrane_readout)
        wiring.connect(m, readout.result, wiring.flipped(self.result))
        m.d.comb += [readout.state.eq(store.state), readout.start.eq(seq.readout_start),
                     seq.readout_done.eq(readout.done)]
        gen = enc if cfg.tsc else None
        rd_addr = Mux(seq.phase == Phase.READOUT, readout.rd_addr, agen.grp_addr)
        if gen is not None:
            rd_addr = Mux(seq.phase == Phase.ENCODE, gen.st_rd_addr, rd_addr)
        m.d.comb += store.rd_addr.eq(rd_addr)
        wr_gen = gen.st_wr_en if gen is not None else C(0, 1)
        m.d.comb += [store.wr_en.eq(upd["valid"] | wr_gen),
                     store.wr_addr.eq(Mux(wr_gen, gen.st_wr_addr if gen is not None else 0,
                                          SBASE[layer] + upd["group"])),
                     store.wr_data.eq(Mux(wr_gen, gen.st_wr_data.as_value() if gen is not None else 0,
                                          upd["state"].as_value()))]

        # ---- the layer's spikes into the next layer's buffer; the argmax
        self._outputs(m, seq, bufs, upd, real_lanes)
        sub.argmax = argmax = Argmax(lanes=P, v_bits=cfg.vbits, cnt_bits=0 if cfg.membrane_readout else cfg.cnt_bits,
                                     group_bits=len(upd["group"]), cls_bits=cfg.cls_bits)
        m.d.comb += [argmax.clear.eq(seq.sample_start), argmax.in_group.eq(upd["group"]),
                     argmax.in_valid.eq(upd["valid"] & (layer == L - 1) & seq.tlast),
                     argmax.real_lanes.eq(Mux(upd["group"] == res_g.groups - 1, res_g.last_lanes, P)),   # last layer
                     readout.prediction.eq(argmax.best)]
        for p in range(P):
            m.d.comb += argmax.in_v[p].eq(upd["state"][p].v)
            if not cfg.membrane_readout:
                m.d.comb += argmax.in_cnt[p].eq(upd["state"][p].cnt)

        # ---- monitors and counters
        gen_rd = C(0, 1)
        st_rd = agen.grp_rd & ~t0 if not cfg.stcb else C(0, 1)
        if gen is not None:
            gen_rd = (seq.phase == Phase.ENCODE) & (layer != 0) & gen.issuing
            st_rd = st_rd | gen_rd
        m.d.comb += [self.st.rd.eq(st_rd), self.st.raddr.eq(store.rd_addr), self.st.wr.eq(store.wr_en),
                     self.st.waddr.eq(store.wr_addr), self.st.wdata.eq(store.wr_data), self.st.upd.eq(~wr_gen)]
        self._counters(m, seq, bufs, reader, agen, fetch, upd, enc, readout, st_rd, gen_rd, real_lanes)
        return m

    # ------------------------------------------------------------------------------------------
    def _input_side(self, m, seq, store, buf_in):
        """The input loader and the coding's encoder; returns the encoder (or the loader, direct)."""
        cfg = self._cfg
        P = cfg.P
        gbits = max(cfg.ev_gbits_in, cfg.ev_gbits_ab)
        if cfg.direct:
            mode, value = "direct", None
        elif cfg.tsc:
            mode, value = "tsc", signed(cfg.rbits)
        else:
            mode, value = "rate", enc_lane_layout(cfg.xbits, cfg.xmbits)
        m.submodules.loader = ld = InputLoader(x_layout=self.x_layout, lanes=P, n_in=cfg.n_in,
                                               input_max=cfg.model.input_max, mode=mode, value_shape=value,
                                               group_bits=gbits, entry=self.entry, T=cfg.T)
        wiring.connect(m, wiring.flipped(self.x), ld.x)
        m.d.comb += [ld.loading.eq(seq.phase == Phase.LOAD), seq.loader_done.eq(ld.done),
                     self.err_range.eq(ld.err_range), self.err_protocol.eq(ld.err_protocol)]
        # every sample starts with empty buffers; direct input fills IN while loading
        m.d.comb += buf_in.clear.eq(seq.sample_start | seq.encode_start)
        if cfg.direct:
            m.d.comb += [buf_in.append.eq(ld.ent_append), buf_in.entry.eq(ld.ent)]
            return ld
        if cfg.tsc:
            enc = TscGenerator(lanes=P, n_in=cfg.n_in, input_max=cfg.model.input_max, rbits=cfg.rbits,
                               max_words=max([cfg.G_in] + [l.groups for l in cfg.layers]), entry=self.entry,
                               group_bits=gbits, saddr_bits=cfg.saddr_bits, state_layout=store.state_layout,
                               param_layout=store.param_layout, v_bits=cfg.vbits)
            src_words = Array(Const(w) for w in [cfg.G_in] + [l.groups for l in cfg.layers[:-1]])
            src_last = Array(Const(v) for v in [cfg.n_in - (cfg.G_in - 1) * P] + [l.last_lanes for l in cfg.layers[:-1]])
            src_base = Array(Const(v) for v in [0] + [l.sbase for l in cfg.layers[:-1]])
            m.d.comb += [enc.t0.eq(seq.t0), enc.tq.eq(seq.tlast), enc.src_in.eq(seq.layer == 0),
                         enc.words.eq(src_words[seq.layer]), enc.real_last.eq(src_last[seq.layer]),
                         enc.src_base.eq(src_base[seq.layer]), enc.state.eq(store.state), enc.params.eq(store.params)]
        elif cfg.stcb:
            enc = TrainEncoder(lanes=P, n_in=cfg.n_in, input_max=cfg.model.input_max, lane_layout=value, T=cfg.T,
                               entry=self.entry, group_bits=gbits)
        else:
            enc = RateEncoder(lanes=P, n_in=cfg.n_in, input_max=cfg.model.input_max, lane_layout=value,
                              ubits=cfg.ubits, entry=self.entry, group_bits=gbits)
            m.d.comb += enc.t0.eq(seq.t0)
        m.submodules.encoder = enc
        m.d.comb += [enc.start.eq(seq.encode_start), enc.ld_en.eq(ld.wr_en), enc.ld_group.eq(ld.wr_group),
                     enc.ld_lane.eq(ld.wr_lane), enc.ld_value.eq(ld.wr_value),
                     buf_in.append.eq(enc.ent_append), buf_in.entry.eq(enc.ent)]
        m.d.comb += [self.spk.valid.eq(enc.spk_valid), self.spk.enc.eq(1), self.spk.group.eq(enc.spk_group),
                     self.spk.mask.eq(enc.spk_mask)]
        return enc

    def _neuron_unit(self, m, seq, store, fetch, real_lanes, FIRES, ZERO, NUM, SHIFT) -> dict:
        """The coding's neuron unit after the fetch; returns its update signals."""
        cfg = self._cfg
        leak_bits = cfg.leak_bits             # 0: no layer leaks, no multiplier
        op = fetch.out_op
        base_delay = perf.ACCUMULATE_STAGE - perf.MEM_READ_LATENCY + perf.term_stage(cfg.coding, cfg.model.encoding)
        common = dict(lanes=cfg.P, group_bits=len(op.group), term_layout=fetch.term_layout,
                      param_layout=store.param_layout, acc_bits=cfg.acc_bits, base_delay=base_delay)
        if cfg.stcb:
            m.submodules.slots = acc = SlotAccumulator(T=cfg.T, **common)
            tap_bits = cfg.wbits + 1
            m.submodules.slot_unit = unit = SlotUnit(lanes=cfg.P, T=cfg.T, taps=cfg.taps,
                                                     kernels=[l.h.tolist() for l in cfg.model.layers],
                                                     group_bits=len(op.group), slots_layout=acc.slots_layout,
                                                     param_layout=store.param_layout, state_layout=store.state_layout,
                                                     acc_bits=cfg.acc_bits, layer_bits=cfg.layer_bits,
                                                     tap_bits=tap_bits, leak_bits=leak_bits)
            train = op.payload[:cfg.T]
            m.d.comb += [acc.op_valid.eq(fetch.out_valid), acc.first.eq(op.first), acc.last.eq(op.last),
                         acc.next_first.eq(fetch.next_first), acc.group.eq(op.group), acc.terms.eq(fetch.terms),
                         acc.train.eq(Mux(seq.layer == 0, (1 << cfg.T) - 1, train) if cfg.direct else train),
                         acc.params.eq(store.params),
                         unit.hand_valid.eq(acc.hand_valid), unit.hand_group.eq(acc.hand_group),
                         unit.hand_slots.eq(acc.hand_slots), unit.hand_params.eq(acc.hand_params),
                         unit.layer.eq(seq.layer), unit.fires.eq(FIRES[seq.layer]),
                         unit.zero_reset.eq(ZERO[seq.layer]),
                         unit.real_lanes.eq(real_lanes(acc.hand_group))]
        else:
            if cfg.tsc:
                m.submodules.unit = unit = TscUnit(state_layout=store.state_layout, **common)
            else:
                m.submodules.unit = unit = IfUnit(counts=not cfg.membrane_readout, state_layout=store.state_layout,
                                                  leak_bits=leak_bits, **common)
            t0 = seq.t0
            if leak_bits and not cfg.tsc:
                # the step-0 multiplexer is ahead of the leak's multiplier: from a register, not the step's
                # comparator (a phase register: its step is set LAYER_SETUP cycles or more before a state
                # word arrives)
                t0 = Signal(name="unit_t0")
                m.d.sync += t0.eq(seq.t0)
            m.d.comb += [unit.op_valid.eq(fetch.out_valid), unit.first.eq(op.first), unit.last.eq(op.last),
                         unit.next_first.eq(fetch.next_first), unit.group.eq(op.group), unit.terms.eq(fetch.terms),
                         unit.state.eq(store.state), unit.params.eq(store.params), unit.t0.eq(t0),
                         unit.fires.eq(FIRES[seq.layer]), unit.zero_reset.eq(ZERO[seq.layer]),
                         unit.real_lanes.eq(real_lanes(op.group))]
        if leak_bits:
            # registered from the phase's layer (a group's state arrives LAYER_SETUP cycles or more after the
            # layer changes), so the table's multiplexer is not ahead of the multiplier; a shift that every
            # layer shares is a constant, and the shifter wiring
            num = Signal(leak_bits, name="leak_num")
            m.d.sync += num.eq(NUM[seq.layer])
            if cfg.leak_shift_const:
                shift = C(cfg.leak_table[0][1], len(unit.leak_shift))
            else:
                shift = Signal.like(unit.leak_shift, name="leak_shift")
                m.d.sync += shift.eq(SHIFT[seq.layer])
            m.d.comb += [unit.leak_num.eq(num), unit.leak_shift.eq(shift)]
        return {"valid": unit.upd_valid, "group": unit.upd_group, "state": unit.upd_state, "mask": unit.upd_mask,
                "unit": unit}

    def _outputs(self, m, seq, bufs, upd, real_lanes):
        """A layer's update: its spikes into the next layer's event buffer, and the spike monitor."""
        cfg = self._cfg
        P, T = cfg.P, cfg.T
        if cfg.stcb:
            trains = [upd["mask"][p * T:(p + 1) * T] for p in range(P)]
            lane_mask = Cat(*[tr != 0 for tr in trains])
        else:
            lane_mask = upd["mask"]
        for i, b in enumerate(bufs[1:], start=1):
            writes = upd["valid"] & (seq.layer != cfg.L - 1) & (lane_mask != 0) & \
                (seq.layer[0] == (0 if i == 1 else 1))
            m.d.comb += [b.append.eq(writes), b.entry.group.eq(upd["group"]), b.entry.mask.eq(lane_mask)]
            for p in range(P):
                if cfg.stcb:
                    m.d.comb += b.entry.payload[p].eq(trains[p])
            clear_here = seq.reader_start & (seq.layer[0] == (0 if i == 1 else 1))
            m.d.comb += b.clear.eq(clear_here | seq.sample_start)
        with m.If(upd["valid"]):
            m.d.comb += [self.spk.valid.eq(1), self.spk.enc.eq(0), self.spk.group.eq(upd["group"]),
                         self.spk.mask.eq(upd["mask"])]
        m.d.comb += [self.spk.layer.eq(seq.layer), self.spk.t.eq(seq.t)]

    def _counters(self, m, seq, bufs, reader, agen, fetch, upd, enc, readout, st_rd, gen_rd, real_lanes):
        cfg = self._cfg
        T, L = cfg.T, cfg.L
        op = fetch.out_op
        rd_op = fetch.out_valid & ~op.null
        loader = m.submodules.loader
        inc = {n: [] for n in self.counter_names}
        # cycles: beats taken while loading, every cycle of the phases, the readout's reads and beats
        inc["cycles"] += [loader.fired, seq.counted, readout.reading, readout.result.valid & readout.result.ready]
        inc["weight_reads"].append(rd_op)
        inc["event_reads"].append(reader.rd_issue)
        inc["event_writes"] += [b.append for b in bufs]
        real_op = real_lanes(op.group)
        if cfg.stcb:
            # lanes x slots: the two factors are registered first, the product a cycle later
            train = Mux(seq.layer == 0, (1 << T) - 1, op.payload[:T]) if cfg.direct else op.payload[:T]
            lanes_r, slots_r = Signal.like(real_op), Signal(range(T + 1))
            m.d.sync += [lanes_r.eq(Mux(rd_op, real_op, 0)), slots_r.eq(popcount(train))]
            inc["syn_ops"].append(lanes_r * slots_r)
        else:
            inc["syn_ops"].append(Mux(rd_op, real_op, 0))
        inc["param_reads"].append(agen.grp_rd)
        if not cfg.stcb:
            inc["state_reads"].append(agen.grp_rd & ~seq.t0)        # step 0 starts from v_init
        inc["state_writes"].append(upd["valid"])
        inc["neuron_updates"].append(Mux(upd["valid"], real_lanes(upd["group"]) * (T if cfg.stcb else 1), 0))
        if not cfg.tsc:
            fired = Mux(upd["valid"], popcount(upd["mask"]), 0)
            layer_of = seq.layer
            if cfg.stcb:
                # the slot unit counts its spikes slot by slot, the last slot's in its update's cycle;
                # the layer a cycle behind still names their layer then, whenever the sequencer moves on
                fired, layer_of = upd["unit"].inc_spikes, Signal.like(seq.layer)
                m.d.sync += layer_of.eq(seq.layer)
            for li in range(L):
                inc[f"spikes_l{li}"].append(Mux(layer_of == li, fired, 0))
        if not cfg.direct:
            # the encoder, or the tsc generator: one word read (and, but for stcb, written) per issue
            inc["input_writes"].append(loader.wr_en)
            inc["state_reads"].append(enc.issuing)
            if not cfg.stcb:
                inc["state_writes"].append(enc.spk_valid)
            inc["neuron_updates"].append(enc.inc_updates)
            if cfg.tsc:
                inc["param_reads"].append(gen_rd)
                inc["spikes_enc"].append(Mux(seq.layer == 0, enc.inc_spikes, 0))
                for li in range(L - 1):
                    inc[f"spikes_l{li}"].append(Mux(seq.layer == li + 1, enc.inc_spikes, 0))
            else:
                inc["spikes_enc"].append(enc.inc_spikes)
        sizes = {n: [len(Value.cast(v)) for v in vs] or [1] for n, vs in inc.items()}
        m.submodules.counters = ctr = Counters(sizes, cfg.counter_bits)
        for n, vs in inc.items():
            for k, v in enumerate(vs):
                m.d.comb += ctr.inc(n, k).eq(v)
        m.d.comb += ctr.sample_done.eq(readout.done)
        wiring.connect(m, ctr.cnt, wiring.flipped(self.cnt))
        m.d.comb += self.done.eq(ctr.done)
