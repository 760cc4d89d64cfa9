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
from amaranth.utils import ceil_log2, exact_log2

import golden
from golden import perf

from .addrgen import DenseAddressGen
from .argmax import Argmax
from .bits import balanced_sum, popcount
from .config import CoreConfig
from .counters import Counters
from .accmem import AccKind, AccumulatorMemory
from .banks import BankedAccumulator, BankSweepMap, ConvBundleGen, check_core_banks
from .conv_addrgen import ConvAddressGen, ConvLayerGeom
from .descriptor import Kind, source_maps
from .encoders import InputLoader, RateEncoder, TrainEncoder, TscGenerator, enc_lane_layout
from .events import EventBuffer, EventReader, entry_layout
from .fetch import WeightFetch
from .neuron import IfUnit, SlotAccumulator, SlotUnit, TscUnit
from .pool import PoolLayerGeom, PoolScatter
from .readout import Readout
from .sequencer import Phase, Sequencer
from .signatures import (CounterSignature, OpTraceSignature, ScatterTraceSignature, SpikeMonitorSignature, StateTraceSignature,
                         counter_ports)
from .store import GroupStore, param_lane_layout, state_lane_layout
from .sweep import SweepGen, SweepLayer

__all__ = ["SpikeCore", "COUNTER_NAMES"]

COUNTER_NAMES = tuple(c for c in perf.COUNTERS if c != "spikes")


class SpikeCore(wiring.Component):
    """A generated spiking core for one integer model.

    Parameters
    ----------
    model : golden.Model
    lanes : int
        P neurons updated in parallel (power of two, 1..64).
    banks : int
        Accumulator banks (docs/spec.md section 3, Banks): a conv2d scatter does up to ``banks`` kernel
        offsets per cycle (1: one, the default).

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

    def __init__(self, model: golden.Model, *, lanes: int = 8, banks: int = 1):
        self._cfg = cfg = CoreConfig(model, lanes, check_core_banks(banks))
        self._banks = cfg.banks
        self.x_layout = data.StructLayout({"value": unsigned(cfg.in_bits), "last": unsigned(1)})
        self.result_layout = data.StructLayout({
            "index": unsigned(cfg.cls_bits), "count": unsigned(cfg.cnt_bits), "membrane": signed(cfg.vbits),
            "prediction": unsigned(cfg.cls_bits), "last": unsigned(1)})
        self.state_lane = state_lane_layout(cfg.vbits, cfg.cur_bits, 0 if cfg.membrane_readout else cfg.cnt_bits)
        self.param_lane = param_lane_layout(cfg.param_bits)
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
            "sc": Out(ScatterTraceSignature()),
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
        layer, t0, desc = seq.layer, seq.t0, seq.desc        # desc: the running layer's descriptor

        def real_lanes(group):
            return Mux(group == desc.groups - 1, desc.last_lanes, P)

        # ---- memories of the groups, event buffers, input side
        sub.store = store = GroupStore(lanes=P, depth=cfg.state_depth, param_depth=cfg.param_depth,
                                       addr_bits=cfg.saddr_bits,
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
                                          max_min_cycles=perf.stcb_group_cycles(cfg.T, cfg.taps),
                                          sources=len(bufs))
        src = Signal(range(max(2, cfg.n_buffers)))                 # the buffer the phase's layer reads
        m.d.comb += src.eq(0 if cfg.tsc else Mux(layer == 0, 0, Mux(layer[0], 1, 2 if cfg.n_buffers > 2 else 1)))
        for b in bufs:
            m.d.comb += b.rd_addr.eq(reader.rd_addr)
        dense = desc.kind == Kind.DENSE
        rev = reader.events
        dense_last = rev.valid & rev.payload.last & (rev.payload.group == desc.groups - 1)
        # the reader lands every buffer's word in registers of its own and selects behind them (a
        # multiplexer in front of its registers held the direct conv core to 94.9 MHz, 98.8 as an AND-OR)
        sel_r = Signal(len(bufs))
        m.d.sync += sel_r.eq(Cat(*[src == i for i in range(len(bufs))]))
        m.d.comb += [reader.rd_data[i].eq(b.rd_data) for i, b in enumerate(bufs)]
        m.d.comb += [reader.rd_one[i].eq(b.rd_one) for i, b in enumerate(bufs)]
        m.d.comb += [reader.rd_sel.eq(sel_r),
                     reader.count.eq(Array(b.count for b in bufs)[src]), reader.start.eq(seq.reader_start),
                     reader.groups.eq(Mux(dense, desc.groups, 1)),      # a scatter reads its source once
                     reader.min_group_cycles.eq(perf.stcb_group_cycles(cfg.T, cfg.taps) if cfg.stcb else 1),
                     reader.whole.eq((desc.kind == Kind.POOL)
                                     & C(int(perf.pool_scatters_entries(cfg.coding)), 1))]
        pw = max(cfg.payload_in, cfg.payload_ab)
        sub.agen = agen = DenseAddressGen(event_layout=reader.event_layout,
                                          n_in_bits=Shape.cast(seq.desc_layout["n_in"].shape).width,
                                          waddr_bits=cfg.waddr_bits, saddr_bits=cfg.saddr_bits,
                                          layer_bits=cfg.layer_bits, payload_bits=pw, zero_word=cfg.weight_depth)
        m.d.comb += [agen.events.valid.eq(rev.valid & dense), agen.events.payload.eq(rev.payload),
                     agen.layer.eq(layer), agen.wbase.eq(desc.wbase), agen.n_in.eq(desc.n_in),
                     agen.sbase.eq(desc.sbase), agen.pbase.eq(desc.pbase),
                     agen.state_from_memory.eq(~t0 if not cfg.stcb else 0)]
        # the fetch's op: the dense generator's fields, then (conv scatter) the accumulator word
        abits = max(1, ceil_log2(max(2, cfg.acc_depth)))
        B = self._banks                          # banks > 1: a conv op is a bundle, slot b into bank b
        fop_layout = data.StructLayout({**agen.op_layout.members, "aaddr": unsigned(abits), "og_last": unsigned(1),
                                        "conv": unsigned(1),
                                        **({"bvalid": unsigned(B), "baddr": data.ArrayLayout(unsigned(abits), B)}
                                           if B > 1 else {})})
        fop, fop_valid = Signal(fop_layout), Signal()
        m.d.comb += [fop.as_value()[:Shape.cast(agen.op_layout).width].eq(agen.op.as_value()),
                     fop_valid.eq(agen.op_valid)]
        sub.fetch = fetch = WeightFetch(op_layout=fop_layout, lanes=P, weight_bits=cfg.wbits,
                                        depth=cfg.weight_depth + 1, init=cfg.weight_init() + [0],
                                        multiply_bits=cfg.xbits if cfg.direct else 0, negates=cfg.tsc)
        m.d.comb += [fetch.op_valid.eq(fop_valid), fetch.op.eq(fop), fetch.scale.eq(layer == 0),
                     fetch.negate.eq(~t0 if cfg.tsc else 0)]        # tsc: events after step 0 are OFFs
        sp = self._spatial_side(m, seq, rev, fop, fop_valid, fetch) if cfg.spatial else None
        if sp is not None:
            m.d.comb += [getattr(self.sc, k).eq(v) for k, v in sp["trace"].items()]
        m.d.comb += [rev.ready.eq(sp["reader_ready"] if sp else 1),
                     seq.reader_last.eq(Mux(dense, dense_last, sp["scatter_last"]) if sp else dense_last)]
        upd = self._neuron_unit(m, seq, store, fetch, real_lanes, sp)
        m.d.comb += [self.op.valid.eq(upd["op_valid"]), self.op.last.eq(upd["op_last"]),
                     self.op.null.eq(upd["op_null"])]

        # ---- the state memory's clients: the address generator, the tsc generator, the readout
        res_g = cfg.layers[-1]
        sub.readout = readout = Readout(result_layout=self.result_layout, lanes=P, n_out=cfg.n_out, sbase=res_g.sbase,
                                        saddr_bits=cfg.saddr_bits, state_layout=store.state_layout,
                                        counts=not cfg.membrane_readout)
        wiring.connect(m, readout.result, wiring.flipped(self.result))
        m.d.comb += [readout.state.eq(store.state), readout.start.eq(seq.readout_start),
                     seq.readout_done.eq(readout.done)]
        gen = enc if cfg.tsc else None
        st_rd, wr_gen = self._store_clients(m, seq, store, agen, gen, readout, upd, sp)

        # ---- the layer's spikes into the next layer's buffer; the argmax
        self._outputs(m, seq, bufs, upd, sp)
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

        # ---- monitors (the state memory's own ports) and counters
        rmw = sp["pool_rmw"] if sp is not None else None
        not_upd = wr_gen | (rmw["wr"] | sp["clear"] if rmw is not None else 0)     # not a neuron update
        m.d.comb += [self.st.rd.eq(st_rd), self.st.raddr.eq(store.state_rd_addr), self.st.wr.eq(store.wr_en),
                     self.st.waddr.eq(store.wr_addr), self.st.wdata.eq(store.wr_data), self.st.upd.eq(~not_upd),
                     self.st.fwd.eq(rmw["fwd"] if rmw is not None else 0)]
        self._counters(m, seq, bufs, reader, agen, fetch, upd, enc, readout, store, st_rd, real_lanes, sp)
        return m

    def _spatial_side(self, m, seq, rev, fop, fop_valid, fetch) -> dict:
        """conv2d and maxpool2d layers (docs/spec.md section 3): the reader's events, decoded into (c, y, x)
        from the source map's packed index, go to the conv address generator (its ops into the weight
        fetch, then ADD into the accumulator memory) or to the pool scatter (OR into the accumulator
        memory); the sweep then walks the layer's words: a conv2d word's state and parameters are read in
        the walker's cycle and its accumulator word (SWEEP) a cycle later, so the word reaches the neuron
        unit as a dense op's weights do; a maxpool2d word becomes an event entry."""
        cfg = self._cfg
        P, L = cfg.P, cfg.L
        lp = exact_log2(P)
        desc = seq.desc
        sub = m.submodules
        conv_ph, pool_ph = desc.kind == Kind.CONV, desc.kind == Kind.POOL
        ts = perf.term_stage(cfg.coding, cfg.model.encoding)
        spatial = [(li, lh) for li, lh in enumerate(cfg.layers) if lh.spatial]
        convs = [(li, lh) for li, lh in spatial if lh.kind == "conv2d"]
        pools = [(li, lh) for li, lh in spatial if lh.kind == "maxpool2d"]
        B = self._banks
        T = cfg.T
        pw = max(cfg.payload_in, cfg.payload_ab)       # the events' payload: direct input's value, stcb's train
        # the op kinds the layers issue: ADD, SWEEP and (rate and stcb pools) OR; MAX is never issued (the
        # tsc pool has a read-modify-write of its own), and a lane-wise max of the word is a large dead part.
        # Direct-input rate cores keep it: without it Yosys 0.70's ABC9 fails an assertion on the digits
        # direct core (ABC_OPS_REINTEGRATE), and its classic ABC mapping closed at 82.8-89.1 MHz on the
        # 25F-6 at seeds 1-4, against 100.98 MHz (seed 1) by ABC9 with it
        kinds = [AccKind.ADD, AccKind.SWEEP] + ([AccKind.OR] if pools and not cfg.tsc else [])
        if cfg.direct and not cfg.stcb:
            kinds.append(AccKind.MAX)
        if B > 1:           # pools and their sweeps use bank 0, at linear addresses (docs/spec.md, Banks)
            sub.acc = acc = BankedAccumulator(lanes=P, width=cfg.acc_mem_bits, banks=B,
                                              depth=perf.bank_depth(cfg.model, P, B), kinds=kinds)
            aport = acc.ops[0]
        elif cfg.stcb:
            # T slots per lane (slot t of lane p at element p*T + t); an op carries lane p's weight and the
            # event's train (ADD), or lane p's pool train (OR, into the low T bits of its slots)
            sub.acc = acc = AccumulatorMemory(lanes=P * T, width=cfg.acc_mem_bits, depth=cfg.acc_depth, kinds=kinds,
                                              slots=T, term_bits=Shape.cast(fetch.term_layout.elem_shape).width)
            aport = acc.ops
        else:
            sub.acc = acc = AccumulatorMemory(lanes=P, width=cfg.acc_mem_bits, depth=cfg.acc_depth, kinds=kinds)
            aport = acc.ops
        aop = aport.payload

        # ---- the event's (c, y, x): bit fields of the source map's packed index
        def src_pack(li):
            return cfg.input_pack[:2] if li == 0 else cfg.layers[li - 1].pack
        cb = max(1, max(ceil_log2(cfg.model.layers[li].in_shape[0]) for li, _ in spatial))
        yb = max(1, max(ceil_log2(cfg.model.layers[li].in_shape[1]) for li, _ in spatial))
        xb = max(1, max(ceil_log2(cfg.model.layers[li].in_shape[2]) for li, _ in spatial))
        ev_c, ev_y, ev_x = Signal(cb), Signal(yb), Signal(xb)
        idx = rev.payload.index
        with m.Switch(seq.layer):
            for li, _ in spatial:
                bx, by = src_pack(li)
                with m.Case(li):
                    m.d.comb += [ev_x.eq(idx[lp:lp + bx]), ev_y.eq(idx[lp + bx:lp + bx + by]),
                                 ev_c.eq(Cat(idx[:lp], idx[lp + bx + by:]))]
        real_ev = rev.valid & ~rev.payload.null
        # an empty step: its null event ends the scatter as a real last op would have, LATENCY cycles on
        null_ev = rev.valid & rev.payload.null
        null_conv = null_ev
        for i in range(ConvAddressGen.LATENCY - PoolScatter.LATENCY):
            r = Signal(name=f"null_conv_d{i}")
            m.d.sync += r.eq(null_conv)
            null_conv = r
        scatter_last = Mux(conv_ph, null_conv, null_ev)
        reader_ready = C(1, 1)
        pool_rmw = None
        if convs:
            geoms = [ConvLayerGeom.of(cfg.model.layers[li], lh.wbase) for li, lh in convs]
            if B > 1:
                sub.cagen = cagen = ConvBundleGen(layers=geoms, lanes=P, banks=B, zero_word=cfg.weight_depth,
                                                  payload_bits=cfg.payload_in)
            else:
                sub.cagen = cagen = ConvAddressGen(layers=geoms, lanes=P, zero_word=cfg.weight_depth,
                                                   payload_bits=pw)
            ce = cagen.events.payload
            m.d.comb += [cagen.layer.eq(desc.cidx), cagen.ops.ready.eq(1),
                         cagen.events.valid.eq(real_ev & conv_ph), ce.c.eq(ev_c), ce.y.eq(ev_y), ce.x.eq(ev_x)]
            if pw:
                m.d.comb += ce.payload.eq(rev.payload.payload)
            reader_ready = Mux(conv_ph, cagen.events.ready | rev.payload.null, 1)
            # the ops of the phase's last event are its last
            final = Signal()
            with m.If(seq.reader_start):
                m.d.sync += final.eq(0)
            with m.Elif(cagen.events.valid & cagen.events.ready & rev.payload.last):
                m.d.sync += final.eq(1)
            cop = cagen.ops.payload
            # (the phase's last event may be held while the one before it still expands)
            scatter_last = scatter_last | (conv_ph & cagen.ops.valid & cop.last & final & ~cagen.held)
            with m.If(conv_ph):
                if B > 1:
                    m.d.comb += [fop_valid.eq(cagen.ops.valid), fop.waddr.eq(cop.slots[0].waddr), fop.null.eq(cop.null),
                                 fop.first.eq(cop.first), fop.last.eq(cop.last), fop.group.eq(0),
                                 fop.layer.eq(seq.layer), fop.aaddr.eq(cop.slots[0].aaddr),   # (baddr: every slot's)
                                 fop.og_last.eq(cop.og_last), fop.conv.eq(1),
                                 fop.bvalid.eq(Cat(*[sl.valid for sl in cop.slots]))]
                    m.d.comb += [fop.baddr[b].eq(cop.slots[b].aaddr) for b in range(B)]
                else:
                    m.d.comb += [fop_valid.eq(cagen.ops.valid), fop.waddr.eq(cop.waddr), fop.null.eq(cop.null),
                                 fop.first.eq(cop.first), fop.last.eq(cop.last), fop.group.eq(0),
                                 fop.layer.eq(seq.layer), fop.aaddr.eq(cop.aaddr),
                                 fop.og_last.eq(cop.aaddr >= desc.last_plane), fop.conv.eq(1)]
                if pw:
                    m.d.comb += fop.payload.eq(cop.payload)
            # the fetched weights into the accumulator word
            fo = fetch.out_op
            if B > 1:
                self._bundle_slots(m, seq, cop, cagen, conv_ph, fop_valid, fetch, acc, geoms)
            else:
                with m.If(fetch.out_valid & fo.conv & ~fo.null):
                    m.d.comb += [acc.ops.valid.eq(1), aop.addr.eq(fo.aaddr), aop.kind.eq(AccKind.ADD)]
                    m.d.comb += [aop.terms[p].eq(fetch.terms[p]) for p in range(P)]
                    if cfg.stcb:      # the weight into the slots whose train bit is set (direct input: all)
                        train = fo.payload[:T]
                        if cfg.direct:
                            train = Mux(seq.layer == 0, (1 << T) - 1, train)
                        m.d.comb += [aop.trains[p].eq(train) for p in range(P)]
        if pools:
            sub.pscat = pscat = PoolScatter(layers=[PoolLayerGeom.of(cfg.model.layers[li]) for li, _ in pools],
                                            lanes=P, coding=cfg.coding, T=cfg.T,
                                            width=cfg.T if cfg.stcb else cfg.acc_lane_bits,
                                            addr_bits=acc.addr_bits)
            pe_ = pscat.events.payload
            m.d.comb += [pscat.layer.eq(desc.pidx), pscat.t.eq(seq.t), pscat.ops.ready.eq(1),
                         pscat.events.valid.eq(real_ev & pool_ph), pe_.c.eq(ev_c), pe_.y.eq(ev_y), pe_.x.eq(ev_x),
                         pe_.mask.eq(rev.payload.mask)]
            if cfg.stcb:                                         # the event's train, ORed into its lane
                m.d.comb += pe_.payload.eq(rev.payload.payload[:T])
            last_in = Signal()                                   # its op leaves a cycle after the event
            m.d.sync += last_in.eq(pscat.events.valid & rev.payload.last)
            scatter_last = scatter_last | (pool_ph & last_in)
            if not cfg.tsc:
                with m.If(pscat.ops.valid & ~pscat.ops.payload.null):
                    m.d.comb += [aport.valid.eq(1), aop.addr.eq(pscat.ops.payload.addr), aop.kind.eq(AccKind.OR)]
                    if cfg.stcb:
                        m.d.comb += [aop.trains[p].eq(pscat.ops.payload.terms[p]) for p in range(P)]
                    else:
                        m.d.comb += aop.terms.as_value().eq(pscat.ops.payload.terms.as_value())
            else:
                pool_rmw = self._tsc_pool_rmw(m, seq, pscat.ops)

        # ---- the sweep: walker (c), SWEEP op (c + 1), swept word (c + 3), [term stage], neuron unit
        sweeps = [SweepLayer(lh.groups, lh.out_shape[1], lh.out_shape[2], lh.pack[0], lh.pack[1])
                  for _, lh in spatial]
        # stcb: a conv2d layer's words go to the serial slot unit, one every T * taps cycles
        slot = max(1, perf.stcb_group_cycles(cfg.T, cfg.taps)) if cfg.stcb and convs else 1
        sub.sweep = sw = SweepGen(sweeps, packed_bits=cfg.group_bits, max_spacing=slot)
        m.d.comb += [sw.start.eq(seq.sweep_start), sw.layer.eq(desc.xidx), seq.sweep_last.eq(sw.last)]
        if slot > 1:
            m.d.comb += sw.spacing.eq(Mux(conv_ph, slot, 1))
        meta = data.StructLayout({"valid": unsigned(1), "word": unsigned(len(sw.word)),
                                  "name": unsigned(cfg.group_bits), "og_last": unsigned(1), "og": unsigned(len(sw.og))})
        s = [Signal(meta, name=f"sweep_s{i}") for i in range(4 + ts)]
        m.d.comb += [s[0].valid.eq(sw.valid), s[0].word.eq(sw.word), s[0].name.eq(sw.packed),
                     s[0].og_last.eq(sw.og_last), s[0].og.eq(sw.og)]
        for i in range(1, len(s)):
            m.d.sync += s[i].eq(s[i - 1])
        # (tsc: a maxpool2d layer's sweep is its clear sweep, at step 0: zero to its state words)
        if B > 1:           # a conv2d word in its bank at its bank address, a pool's in bank 0 (linear)
            sub.bsweep = bsm = BankSweepMap(sweeps, [perf.layer_bank_shape(cfg.model.layers[li], B) for li, _ in spatial],
                                            [lh.kind == "conv2d" for _, lh in spatial], banks=B,
                                            packed_bits=cfg.group_bits, word_bits=len(sw.word), addr_bits=acc.addr_bits)
            m.d.comb += [bsm.layer.eq(desc.xidx), bsm.packed.eq(sw.packed), bsm.word.eq(sw.word)]
            with m.If((s[1].valid & ~pool_ph) if cfg.tsc else s[1].valid):
                with m.Switch(bsm.bank):
                    for b in range(B):
                        with m.Case(b):
                            m.d.comb += [acc.ops[b].valid.eq(1), acc.ops[b].payload.addr.eq(bsm.addr),
                                         acc.ops[b].payload.kind.eq(AccKind.SWEEP)]
        else:
            with m.If((s[1].valid & ~pool_ph) if cfg.tsc else s[1].valid):
                m.d.comb += [acc.ops.valid.eq(1), aop.addr.eq(s[1].word), aop.kind.eq(AccKind.SWEEP)]
        word = acc.swept.payload.word
        if ts:                                                   # direct input: the fetch's term stage
            word_d = Signal.like(word)
            m.d.sync += word_d.eq(word)
            word = word_d
        u = s[3 + ts]
        unit_op = {"valid": u.valid & conv_ph, "next": s[2 + ts].valid & conv_ph, "og_last": u.og_last,
                   "name": u.name, "off": u.word, "word": word}
        # a pool word with a set lane becomes an entry, a cycle after its swept word (stcb: with its trains,
        # the low T bits of each lane's T slots)
        pool_entry = {"valid": Signal(), "group": Signal(cfg.group_bits), "mask": Signal(P),
                      "trains": [Signal(T, name=f"pool_train{p}") for p in range(P)] if cfg.stcb else None}
        lb = cfg.acc_lane_bits
        pool_lanes = [acc.swept.payload.word.as_value()[p * lb:p * lb + (T if cfg.stcb else lb)] for p in range(P)]
        lanes_set = Cat(*[w != 0 for w in pool_lanes])
        m.d.sync += [pool_entry["valid"].eq(acc.swept.valid & pool_ph & (lanes_set != 0)),
                     pool_entry["group"].eq(s[3].name), pool_entry["mask"].eq(lanes_set)]
        if cfg.stcb:
            m.d.sync += [pool_entry["trains"][p].eq(pool_lanes[p]) for p in range(P)]
        off_bits = max(1, ceil_log2(max([l.groups for l in cfg.layers if not l.spatial] +
                                         [l.words for l in cfg.layers if l.spatial]) + 1))
        clear = sw.valid & pool_ph & C(int(cfg.tsc), 1)
        # what the scatter did (ScatterTraceSignature), from the parts' own handshakes and strobes
        trace = {"no_offset": (cagen.ops.valid & cagen.ops.payload.null) if convs else C(0, 1),
                 "forwarded": acc.forwarded | (pool_rmw["fwd"] if pool_rmw is not None else 0),
                 "merged": acc.merged | (pool_rmw["merged"] if pool_rmw is not None else 0),
                 "empty_step": null_ev & rev.ready & (conv_ph | pool_ph),
                 "stall": real_ev & ~rev.ready & conv_ph}
        # a conv2d word's parameter word: read in the walker's cycle, or (stcb) timed to arrive with its
        # swept word, which the slot unit's handoff takes in its cycle (words may follow each other closely)
        prm = s[1 + ts] if cfg.stcb else s[0]
        return {"reader_ready": reader_ready, "trace": trace, "scatter_last": scatter_last, "sweep": sw, "acc": acc,
                "unit_op": unit_op, "pool_entry": pool_entry, "off_bits": off_bits, "pool_rmw": pool_rmw,
                "clear": clear, "prm_rd": prm.valid & conv_ph, "prm_og": prm.og}

    def _bundle_slots(self, m, seq, cop, cagen, conv_ph, fop_valid, fetch, acc, geoms):
        """banks > 1 (docs/spec.md section 3, Banks): slot 0 of a bundle goes through the core's weight
        fetch; slots 1..B-1 each through a weight fetch of their own, on a copy of the conv2d layers'
        weights, in step with it (same latency, same term stage); every valid slot's terms are ADDed into
        its bank at its bank address, carried with the op through the fetch."""
        cfg, P, B = self._cfg, self._cfg.P, self._banks
        top = cfg.conv_weight_words                  # the conv2d layers' words come before the dense layers' 
        words = cfg.weight_init()[:top]
        layout = data.StructLayout({"waddr": unsigned(max(1, ceil_log2(max(2, top)))),
                                    "payload": unsigned(max(1, cfg.payload_in)), "first": unsigned(1)})
        fo = fetch.out_op
        for b in range(B):
            if b == 0:
                terms = fetch.terms
            else:
                f = WeightFetch(op_layout=layout, lanes=P, weight_bits=cfg.wbits, depth=top, init=words,
                                multiply_bits=cfg.xbits if cfg.direct else 0, negates=cfg.tsc)
                m.submodules[f"fetch_slot{b}"] = f
                sl = cop.slots[b]
                m.d.comb += [f.op_valid.eq(fop_valid & conv_ph), f.op.waddr.eq(Mux(sl.valid, sl.waddr, 0)),
                             f.op.first.eq(cop.first), f.scale.eq(fetch.scale), f.negate.eq(fetch.negate)]
                if cfg.payload_in:
                    m.d.comb += f.op.payload.eq(cop.payload)
                terms = f.terms
            with m.If(fetch.out_valid & fo.conv & fo.bvalid[b]):
                m.d.comb += [acc.ops[b].valid.eq(1), acc.ops[b].payload.addr.eq(fo.baddr[b]),
                             acc.ops[b].payload.kind.eq(AccKind.ADD)]
                m.d.comb += [acc.ops[b].payload.terms[p].eq(terms[p]) for p in range(P)]

    def _tsc_pool_rmw(self, m, seq, ops) -> dict:
        """tsc maxpool2d (docs/spec.md section 3): an OFF's op (the pool scatter's MAX of t into lane
        c mod P; an ON's op is null) reads the pool's state word in its cycle c, forms the lane-wise max
        of the word and the op's terms in c + 2 into a register (t in the op's lanes, which is the max:
        see below), and writes it back from there in c + 3.
        The store does not write through, so the three previous ops' words are forwarded (the nearest
        wins), as the accumulator memory does. Returns the read (``rd``, ``raddr``) and the write
        (``wr``, ``waddr``, ``wdata``), addresses within the layer."""
        cfg = self._cfg
        P = cfg.P
        word = data.ArrayLayout(self.state_lane, P)
        pl = ops.payload
        rd = ops.valid & ~pl.null
        v1, a1, t1 = Signal(), Signal.like(pl.addr), Signal.like(pl.terms)
        v2, a2, t2 = Signal(), Signal.like(pl.addr), Signal.like(pl.terms)
        m.d.sync += [v1.eq(rd), a1.eq(pl.addr), t1.eq(pl.terms), v2.eq(v1), a2.eq(a1), t2.eq(t1)]
        # r1: the word formed a cycle ago (being written now), r2 and r3: formed two and three cycles ago
        r1v, r1a, r1w = Signal(), Signal.like(pl.addr), Signal(word)
        r2v, r2a, r2w = Signal(), Signal.like(pl.addr), Signal(word)
        r3w = Signal(word)
        old, new = Signal(word), Signal(word)
        store = m.submodules.store
        # the hits, compared a cycle ahead (the op in stage 1 against the op now in stage 2, whose word
        # is r1 a cycle later, against r1, which is r2 then, and against r2, which is r3 then), so the
        # multiplexer in front of the max takes its selects from flops: the compares in series limited
        # the tsc conv core to 71 MHz
        hit1, hit2, miss = Signal(), Signal(), Signal()
        h1, h2, h3 = v2 & (a2 == a1), r1v & (r1a == a1), r2v & (r2a == a1)
        m.d.sync += [hit1.eq(h1), hit2.eq(h2), miss.eq(~(h1 | h2 | h3))]
        # the memory's word (late: a block RAM's clock-to-out) meets one multiplexer, selected by `miss`;
        # the forwarded words, all from flops, are picked behind it (the memory's word last in a chain of
        # three measured 97.8 MHz)
        m.d.comb += old.eq(Mux(miss, store.state, Mux(hit1, r1w, Mux(hit2, r2w, r3w))))
        # the lane-wise max of t and the old value is t itself in the OFF's lanes (docs/spec.md section 3:
        # the clear sweep leaves zero and t only grows over the window, so no stored value exceeds this
        # step's t), so no compare is formed: the op's non-zero terms pick t. A max's carry chain on
        # the store's state register held the tsc conv core to 87.8-89.1 MHz on the 25F-6 (97.8 at best,
        # with the four maxes side by side and the hits picking one)
        for p in range(P):
            m.d.comb += [new[p].eq(old[p]), new[p].v.eq(Mux(t2[p] != 0, t2[p], old[p].v))]
        m.d.sync += [r1v.eq(v2), r1a.eq(a2), r1w.eq(new), r2v.eq(r1v), r2a.eq(r1a), r2w.eq(r1w), r3w.eq(r2w)]
        # the read's word will not be used: an op in flight (the next three stages) writes the same word
        fwd = rd & ((v1 & (a1 == pl.addr)) | (v2 & (a2 == pl.addr)) | (r1v & (r1a == pl.addr)))
        # (coverage) a window that already held an OFF: a max over two times
        merged = v2 & (Cat(*[(old[p].v != 0) & (t2[p] != 0) for p in range(P)]) != 0)
        return {"rd": rd, "raddr": pl.addr, "wr": r1v, "waddr": r1a, "wdata": r1w, "fwd": fwd, "merged": merged}

    def _store_clients(self, m, seq, store, agen, gen, readout, upd, sp):
        """The state and parameter memories' clients, arbitrated here and nowhere else: the address
        generator (a group's words before its first op), the tsc generator (the source layer's words,
        in ENCODE), the readout (the last layer's words, in READOUT); the neuron updates and the tsc
        generator's countdowns write. Returns the state reads that feed an update or the generator (the
        readout's are not neuron traffic) and the generator's write strobe."""
        desc = seq.desc
        encode, readout_phase = seq.phase == Phase.ENCODE, seq.phase == Phase.READOUT
        st_en, st_addr = agen.st_rd, agen.grp_addr
        pr_en, pr_addr = agen.grp_rd, agen.prm_addr
        wr_en, wr_addr, wr_data = upd["valid"], desc.sbase + upd["off"], upd["state"].as_value()
        if sp is not None:          # a conv2d sweep: the word's state (not at step 0) and its group's parameters
            sw, conv = sp["sweep"], desc.kind == Kind.CONV
            st_en = st_en | (sw.valid & conv & ~seq.t0)
            st_addr = Mux(conv, desc.sbase + sw.word, st_addr)
            pr_en = pr_en | sp["prm_rd"]
            pr_addr = Mux(conv, desc.pbase + sp["prm_og"], pr_addr)
            rmw = sp["pool_rmw"]
            if rmw is not None:     # tsc maxpool2d: an OFF's read-modify-write, the clear sweep's zeros
                st_en, st_addr = st_en | rmw["rd"], Mux(rmw["rd"], desc.sbase + rmw["raddr"], st_addr)
                wr_en = wr_en | rmw["wr"] | sp["clear"]
                wr_addr = Mux(rmw["wr"], desc.sbase + rmw["waddr"], Mux(sp["clear"], desc.sbase + sw.word, wr_addr))
                wr_data = Mux(rmw["wr"], rmw["wdata"].as_value(), Mux(sp["clear"], 0, wr_data))
        wr_gen = C(0, 1)
        if gen is not None:
            gen_rd = encode & (seq.layer != 0) & gen.issuing
            st_en, st_addr = st_en | gen_rd, Mux(encode, gen.st_rd_addr, st_addr)
            # a maxpool2d source counts down with theta = 1: no parameter word
            pr_en, pr_addr = pr_en | (gen_rd & ~desc.src_pool), Mux(encode, gen.prm_rd_addr, pr_addr)
            wr_gen = gen.st_wr_en
        st_rd = Signal()
        m.d.comb += [st_rd.eq(st_en),
                     store.state_rd_en.eq(st_en | readout_phase),
                     store.state_rd_addr.eq(Mux(readout_phase, readout.rd_addr, st_addr)),
                     store.param_rd_en.eq(pr_en), store.param_rd_addr.eq(pr_addr),
                     store.wr_en.eq(wr_en | wr_gen),
                     store.wr_addr.eq(Mux(wr_gen, gen.st_wr_addr if gen is not None else 0, wr_addr)),
                     store.wr_data.eq(Mux(wr_gen, gen.st_wr_data.as_value() if gen is not None else 0, wr_data))]
        return st_rd, wr_gen

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
        shape = tuple(cfg.model.input_shape) if cfg.input_pack is not None else None
        pack = cfg.input_pack[:2] if shape else None
        m.submodules.loader = ld = InputLoader(x_layout=self.x_layout, lanes=P, n_in=cfg.n_in,
                                               input_max=cfg.model.input_max, mode=mode, value_shape=value,
                                               group_bits=gbits, entry=self.entry, T=cfg.T, shape=shape, pack=pack)
        wiring.connect(m, wiring.flipped(self.x), ld.x)
        m.d.comb += [ld.loading.eq(seq.phase == Phase.LOAD), seq.loader_done.eq(ld.done),
                     self.err_range.eq(ld.err_range), self.err_protocol.eq(ld.err_protocol)]
        # every sample starts with empty buffers; direct input fills IN while loading
        m.d.comb += buf_in.clear.eq(seq.sample_start | seq.encode_start)
        if cfg.direct:
            m.d.comb += [buf_in.append.eq(ld.ent_append), buf_in.entry.eq(ld.ent)]
            return ld
        if cfg.tsc:
            maps = source_maps(cfg)
            enc = TscGenerator(lanes=P, n_in=cfg.n_in, input_max=cfg.model.input_max, rbits=cfg.rbits,
                               max_words=max([cfg.G_in] + [l.words if l.spatial else l.groups for l in cfg.layers]),
                               entry=self.entry, group_bits=gbits, saddr_bits=cfg.saddr_bits,
                               state_layout=store.state_layout, param_layout=store.param_layout, v_bits=cfg.vbits,
                               maps=maps, in_depth=cfg.enc_depth)
            m.d.comb += [enc.t0.eq(seq.t0), enc.tq.eq(seq.tlast), enc.src_in.eq(seq.layer == 0),
                         enc.words.eq(seq.desc.src_words), enc.real_last.eq(seq.desc.src_last),
                         enc.src_base.eq(seq.desc.src_base), enc.src_pbase.eq(seq.desc.src_pbase),
                         enc.state.eq(store.state), enc.params.eq(store.params)]
            if maps:
                m.d.comb += [enc.src_map.eq(seq.desc.src_map), enc.src_midx.eq(seq.desc.src_midx),
                             enc.src_pool.eq(seq.desc.src_pool)]
        elif cfg.stcb:
            enc = TrainEncoder(lanes=P, n_in=cfg.n_in, input_max=cfg.model.input_max, lane_layout=value, T=cfg.T,
                               entry=self.entry, group_bits=gbits, shape=shape, pack=pack)
        else:
            enc = RateEncoder(lanes=P, n_in=cfg.n_in, input_max=cfg.model.input_max, lane_layout=value,
                              ubits=cfg.ubits, entry=self.entry, group_bits=gbits, shape=shape, pack=pack)
            m.d.comb += enc.t0.eq(seq.t0)
        m.submodules.encoder = enc
        m.d.comb += [enc.start.eq(seq.encode_start), enc.ld_en.eq(ld.wr_en), enc.ld_group.eq(ld.wr_group),
                     enc.ld_lane.eq(ld.wr_lane), enc.ld_value.eq(ld.wr_value),
                     buf_in.append.eq(enc.ent_append), buf_in.entry.eq(enc.ent)]
        m.d.comb += [self.spk.valid.eq(enc.spk_valid), self.spk.enc.eq(1), self.spk.group.eq(enc.spk_group),
                     self.spk.mask.eq(enc.spk_mask)]
        return enc

    def _neuron_unit(self, m, seq, store, fetch, real_lanes, sp) -> dict:
        """The coding's neuron unit after the fetch (and, for conv2d layers, after the sweep); returns its
        update signals. A conv2d word has two names: ``name`` (its packed index, for the event entries)
        and ``off`` (its state word within the layer); a dense group is both."""
        cfg = self._cfg
        leak_bits = cfg.leak_bits             # 0: no layer leaks, no multiplier
        op = fetch.out_op
        base_delay = perf.ACCUMULATE_STAGE - perf.MEM_READ_LATENCY + perf.term_stage(cfg.coding, cfg.model.encoding)
        common = dict(lanes=cfg.P, group_bits=len(op.group), term_layout=fetch.term_layout,
                      param_layout=store.param_layout, acc_bits=cfg.acc_bits, base_delay=base_delay)
        if cfg.stcb:
            return self._slot_unit(m, seq, store, fetch, real_lanes, sp, common)
        if sp is None:
            gbits, term_layout = len(op.group), fetch.term_layout
        else:
            gbits = cfg.group_bits + sp["off_bits"]
            term_bits = max(Shape.cast(fetch.term_layout.elem_shape).width, cfg.acc_bits)
            term_layout = data.ArrayLayout(signed(term_bits), cfg.P)
        common.update(group_bits=gbits, term_layout=term_layout)
        if cfg.tsc:
            m.submodules.unit = unit = TscUnit(state_layout=store.state_layout, **common)
        else:
            m.submodules.unit = unit = IfUnit(counts=not cfg.membrane_readout, state_layout=store.state_layout,
                                              leak_bits=cfg.leak_bits, **common)
        t0 = seq.t0
        if cfg.leak_bits and not cfg.tsc:
            # the step-0 multiplexer is ahead of the leak's multiplier: from a register, not the step's
            # comparator (a phase register: its step is set LAYER_SETUP cycles or more before a state
            # word arrives)
            t0 = Signal(name="unit_t0")
            m.d.sync += t0.eq(seq.t0)
        if not cfg.tsc:
            self._leak(m, seq, unit)
        m.d.comb += [unit.state.eq(store.state), unit.params.eq(store.params), unit.t0.eq(t0),
                     unit.fires.eq(seq.desc.fires), unit.zero_reset.eq(seq.desc.zero_reset)]
        dense_op = [unit.op_valid.eq(fetch.out_valid & ~op.conv), unit.first.eq(op.first), unit.last.eq(op.last),
                    unit.next_first.eq(fetch.next_first & (seq.desc.kind == Kind.DENSE)),
                    unit.real_lanes.eq(real_lanes(op.group))]
        null = op.null
        if sp is None:
            m.d.comb += dense_op + [unit.group.eq(op.group), unit.terms.eq(fetch.terms)]
            name, off = unit.upd_group, unit.upd_group
        else:
            ob = sp["off_bits"]
            with m.If(seq.desc.kind == Kind.CONV):      # the sweep's ops: one per word, its accumulator word
                u = sp["unit_op"]
                m.d.comb += [unit.op_valid.eq(u["valid"]), unit.first.eq(1), unit.last.eq(1),
                             unit.next_first.eq(u["next"]), unit.real_lanes.eq(Mux(u["og_last"], seq.desc.last_lanes,
                                                                                   cfg.P)),
                             unit.group.eq(Cat(u["name"], u["off"][:ob]))]
                m.d.comb += [unit.terms[p].eq(u["word"][p]) for p in range(cfg.P)]
            with m.Else():
                name_d = Signal(cfg.group_bits)
                m.d.comb += name_d.eq(op.group)
                m.d.comb += dense_op + [unit.group.eq(Cat(name_d, op.group))]
                m.d.comb += [unit.terms[p].eq(fetch.terms[p]) for p in range(cfg.P)]
            null = op.null & ~op.conv
            name, off = unit.upd_group[:cfg.group_bits], unit.upd_group[cfg.group_bits:]
        # the update's real lanes, as the unit registers them (fin stage, then the update): for the counters
        real_fin, real_upd = Signal(range(cfg.P + 1)), Signal(range(cfg.P + 1))
        with m.If(unit.op_valid & unit.last):
            m.d.sync += real_fin.eq(unit.real_lanes)
        m.d.sync += real_upd.eq(real_fin)
        return {"valid": unit.upd_valid, "group": name, "off": off, "state": unit.upd_state, "mask": unit.upd_mask,
                "unit": unit, "real": real_upd, "op_valid": unit.op_valid, "op_last": unit.last, "op_null": null}

    def _slot_unit(self, m, seq, store, fetch, real_lanes, sp, common) -> dict:
        """stcb: the slot accumulator after the fetch (dense layers) and the slot unit. A conv2d layer's
        sweep hands each swept accumulator word (its P x T slots, the same layout as the slot
        accumulator's vector) with its parameter word to the slot unit directly, in the cycle a dense
        group's last op would, so a word's update follows the dense group's timing (docs/spec.md section 3,
        stcb). As for the IfUnit, the unit's group carries a word's packed name and its state word."""
        cfg = self._cfg
        P, T = cfg.P, cfg.T
        op = fetch.out_op
        m.submodules.slots = acc = SlotAccumulator(T=T, slot_bits=cfg.slot_bits, load=sp is not None,
                                                   **{k: v for k, v in common.items() if k != "acc_bits"})
        gbits = len(op.group) if sp is None else cfg.group_bits + sp["off_bits"]
        m.submodules.slot_unit = unit = SlotUnit(lanes=P, T=T, taps=cfg.taps,
                                                 kernels=[l.h.tolist() if hasattr(l, "h") else [1] for l in cfg.model.layers],
                                                 group_bits=gbits, slots_layout=acc.slots_layout,
                                                 param_layout=store.param_layout, state_layout=store.state_layout,
                                                 acc_bits=cfg.acc_bits, layer_bits=cfg.layer_bits,
                                                 tap_bits=cfg.wbits + 1, leak_bits=cfg.leak_bits)
        train = op.payload[:T]
        dense_op = fetch.out_valid if sp is None else fetch.out_valid & ~op.conv
        dense_next = fetch.next_first if sp is None else fetch.next_first & (seq.desc.kind == Kind.DENSE)
        m.d.comb += [acc.op_valid.eq(dense_op), acc.first.eq(op.first), acc.last.eq(op.last),
                     acc.next_first.eq(dense_next), acc.group.eq(op.group), acc.terms.eq(fetch.terms),
                     acc.train.eq(Mux(seq.layer == 0, (1 << T) - 1, train) if cfg.direct else train),
                     acc.params.eq(store.params),
                     unit.layer.eq(seq.layer), unit.fires.eq(seq.desc.fires),
                     unit.zero_reset.eq(seq.desc.zero_reset)]
        self._leak(m, seq, unit)
        if sp is None:
            m.d.comb += [unit.hand_valid.eq(acc.hand_valid), unit.hand_group.eq(acc.hand_group),
                         unit.hand_slots.eq(acc.hand_slots), unit.hand_params.eq(acc.hand_params),
                         unit.real_lanes.eq(real_lanes(acc.hand_group))]
            return {"valid": unit.upd_valid, "group": unit.upd_group, "off": unit.upd_group, "state": unit.upd_state,
                    "mask": unit.upd_mask, "unit": unit, "real": None, "op_valid": fetch.out_valid,
                    "op_last": op.last, "op_null": op.null}
        # a conv2d word's handoff through the slot accumulator's handoff register: its slots, each
        # sign-extended from the accumulator memory's lane (acc_mem_bits) to slot_bits, and its parameter
        # word (read to arrive now); its names and place registered here beside it
        u = sp["unit_op"]
        ob = sp["off_bits"]
        m.d.comb += [acc.load_valid.eq(u["valid"]), acc.load_params.eq(store.params)]
        m.d.comb += [acc.load_slots[p][t].eq(u["word"][p * T + t]) for p in range(P) for t in range(T)]
        cv, cg, cl = Signal(name="conv_hand_valid"), Signal(gbits, name="conv_hand_group"), Signal(name="conv_hand_last")
        m.d.sync += cv.eq(u["valid"])
        with m.If(u["valid"]):
            m.d.sync += [cg.eq(Cat(u["name"], u["off"][:ob])), cl.eq(u["og_last"])]
        name_d = Signal(cfg.group_bits)
        m.d.comb += name_d.eq(acc.hand_group)
        m.d.comb += [unit.hand_valid.eq(acc.hand_valid),
                     unit.hand_group.eq(Mux(cv, cg, Cat(name_d, acc.hand_group))),
                     unit.hand_slots.eq(acc.hand_slots), unit.hand_params.eq(acc.hand_params),
                     unit.real_lanes.eq(Mux(cv, Mux(cl, seq.desc.last_lanes, P), real_lanes(acc.hand_group)))]
        name, off = unit.upd_group[:cfg.group_bits], unit.upd_group[cfg.group_bits:]
        # the update's real lanes (neuron updates): a conv2d word's from its place in the layer's words
        real = Mux(seq.desc.kind == Kind.CONV, Mux(off >= seq.desc.last_plane, seq.desc.last_lanes, P),
                   real_lanes(name))
        return {"valid": unit.upd_valid, "group": name, "off": off, "state": unit.upd_state,
                "mask": unit.upd_mask, "unit": unit, "real": None, "real_stcb": real,
                "op_valid": dense_op | u["valid"], "op_last": op.last | u["valid"],
                "op_null": op.null & ~op.conv & ~u["valid"]}

    def _leak(self, m, seq, unit):
        """The layer's leak (num, shift) into the unit, from the descriptor's registers (a layer without one
        runs an identity, CoreGeometry.leak_table); a shift every layer shares is a constant, the shifter
        wiring. Nothing when no layer leaks (no multiplier is built)."""
        cfg = self._cfg
        if not cfg.leak_bits:
            return
        shift = C(cfg.leak_table[0][1], len(unit.leak_shift)) if cfg.leak_shift_const else seq.desc.leak_shift
        m.d.comb += [unit.leak_num.eq(seq.desc.leak_num), unit.leak_shift.eq(shift)]

    def _outputs(self, m, seq, bufs, upd, sp):
        """A layer's update (or a maxpool2d sweep's entry): its spikes into the next layer's event
        buffer, and the spike monitor."""
        cfg = self._cfg
        P, T = cfg.P, cfg.T
        if cfg.stcb:
            trains = [upd["mask"][p * T:(p + 1) * T] for p in range(P)]
            lane_mask = Cat(*[tr != 0 for tr in trains])
        else:
            lane_mask = upd["mask"]
        valid, group = upd["valid"], upd["group"]
        mon_mask = upd["mask"]
        if sp is not None:                      # a pool's sweep writes entries while no neuron updates
            pe = sp["pool_entry"]
            valid, group = valid | pe["valid"], Mux(pe["valid"], pe["group"], group)
            lane_mask = Mux(pe["valid"], pe["mask"], lane_mask)
            if cfg.stcb:
                trains = [Mux(pe["valid"], pe["trains"][p], trains[p]) for p in range(P)]
                mon_mask = Cat(*trains)
            else:
                mon_mask = lane_mask
        for i, b in enumerate(bufs[1:], start=1):
            writes = valid & (seq.layer != cfg.L - 1) & (lane_mask != 0) & \
                (seq.layer[0] == (0 if i == 1 else 1))
            m.d.comb += [b.append.eq(writes), b.entry.group.eq(group), b.entry.mask.eq(lane_mask)]
            for p in range(P):
                if cfg.stcb:
                    m.d.comb += b.entry.payload[p].eq(trains[p])
            clear_here = seq.reader_start & (seq.layer[0] == (0 if i == 1 else 1))
            m.d.comb += b.clear.eq(clear_here | seq.sample_start)
        with m.If(valid):
            m.d.comb += [self.spk.valid.eq(1), self.spk.enc.eq(0), self.spk.group.eq(group),
                         self.spk.mask.eq(mon_mask)]
        m.d.comb += [self.spk.layer.eq(seq.layer), self.spk.t.eq(seq.t)]

    def _counters(self, m, seq, bufs, reader, agen, fetch, upd, enc, readout, store, st_rd, real_lanes, sp):
        cfg = self._cfg
        T, L = cfg.T, cfg.L
        op = fetch.out_op
        rd_op = fetch.out_valid & ~op.null
        loader = m.submodules.loader
        inc = {n: [] for n in self.counter_names}
        # cycles: beats taken while loading, every cycle of the phases, the readout's reads and beats
        inc["cycles"] += [loader.fired, seq.counted, readout.reading, readout.result.valid & readout.result.ready]
        # a bundle (banks > 1) reads one weight word per valid slot
        n_rd = Mux(op.conv, popcount(op.bvalid), 1) if self._banks > 1 else 1
        inc["weight_reads"].append(Mux(rd_op, n_rd, 0) if self._banks > 1 else rd_op)
        inc["event_reads"].append(reader.rd_issue)
        inc["event_writes"] += [b.append for b in bufs]
        # a conv2d scatter op adds the real lanes of its channel group
        real_op = Mux(op.conv, Mux(op.og_last, seq.desc.last_lanes, cfg.P), real_lanes(op.group))
        if cfg.stcb:
            # lanes x slots: the two factors are registered first, the product a cycle later
            train = Mux(seq.layer == 0, (1 << T) - 1, op.payload[:T]) if cfg.direct else op.payload[:T]
            lanes_r, slots_r = Signal.like(real_op), Signal(range(T + 1))
            m.d.sync += [lanes_r.eq(Mux(rd_op, real_op, 0)), slots_r.eq(popcount(train))]
            inc["syn_ops"].append(lanes_r * slots_r)
        else:
            inc["syn_ops"].append(Mux(rd_op, real_op * n_rd if self._banks > 1 else real_op, 0))
        inc["param_reads"].append(store.param_rd_en)
        inc["state_reads"].append(st_rd)                            # step 0 starts from v_init
        inc["state_writes"].append(upd["valid"])
        if sp is not None and sp["pool_rmw"] is not None:        # tsc maxpool2d: OFF writes, the clear sweep
            inc["state_writes"] += [sp["pool_rmw"]["wr"], sp["clear"]]
        if upd["real"] is not None:
            inc["neuron_updates"].append(Mux(upd["valid"], upd["real"], 0))
        else:
            inc["neuron_updates"].append(Mux(upd["valid"], upd.get("real_stcb", real_lanes(upd["group"])) * T, 0))
        if sp is not None:
            inc["acc_reads"].append(sp["acc"].acc_read)
            inc["acc_writes"].append(sp["acc"].acc_write)
        if not cfg.tsc:
            fired = Mux(upd["valid"], popcount(upd["mask"]), 0)
            layer_of = seq.layer
            if cfg.stcb:
                # the slot unit counts its spikes slot by slot, the last slot's in its update's cycle;
                # the layer a cycle behind still names their layer then, whenever the sequencer moves on
                fired, layer_of = upd["unit"].inc_spikes, Signal.like(seq.layer)
                m.d.sync += layer_of.eq(seq.layer)
            if sp is not None and not cfg.stcb:     # a pool's output spikes: its entries' lanes
                pe = sp["pool_entry"]
                fired = fired + Mux(pe["valid"], popcount(pe["mask"]), 0)
            for li in range(L):
                inc[f"spikes_l{li}"].append(Mux(layer_of == li, fired, 0))
            if sp is not None and cfg.stcb:
                # a pool's output spikes, its entries' P*T train bits, counted over two registered stages
                # (each lane's, then their sum) with their layer beside them: a popcount of P*T bits in
                # front of the counter's register limited the stcb conv core to 70 MHz on the 25F. The
                # count lands two cycles later, within the pool's drain: a pool is never the last layer
                # (golden.Model refuses it), so the sample's end is far behind
                pe = sp["pool_entry"]
                P = cfg.P
                lane_n = [Signal(range(T + 1), name=f"pool_spikes{p}") for p in range(P)]
                total, l1, l2 = Signal(range(P * T + 1), name="pool_spikes"), Signal.like(seq.layer), \
                    Signal.like(seq.layer)
                m.d.sync += [lane_n[p].eq(Mux(pe["valid"], popcount(pe["trains"][p]), 0)) for p in range(P)]
                m.d.sync += [total.eq(balanced_sum(lane_n)), l1.eq(seq.layer), l2.eq(l1)]
                for li in range(L):
                    inc[f"spikes_l{li}"].append(Mux(l2 == li, total, 0))
        if not cfg.direct:
            # the encoder, or the tsc generator: one word read (and, but for stcb, written) per issue
            inc["input_writes"].append(loader.wr_en)
            # its own memory's words (tsc: the input's countdowns; a hidden source is read from the
            # state memory, so its reads are already in st_rd)
            inc["state_reads"].append(enc.issuing & (seq.layer == 0) if cfg.tsc else enc.issuing)
            if not cfg.stcb:
                inc["state_writes"].append(enc.spk_valid)
            inc["neuron_updates"].append(enc.inc_updates)
            if cfg.tsc:
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
