"""The spikeforge IF spiking core (rate coding; rate or direct input; count or membrane readout).

Dataflow (docs/spec.md section 3): output-stationary and event-driven. For layer l at step t the
sequencer walks the layer's neuron groups; for each group it streams every input event of that
step through a pipeline

    S0 event-bank read -> S1 weight/state/param read -> S2 accumulate P lanes -> S3 IF update,
    state write, spikes into per-lane event banks -> S4 argmax (last layer, last step)

one event per cycle. The cycle cost of every phase is a constant of this sequencer and matches
``golden.perf`` exactly.
"""

from __future__ import annotations

from amaranth import *
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2, exact_log2

import golden
from golden import perf

from .config import CoreConfig
from .signatures import (CounterSignature, OpTraceSignature, SpikeMonitorSignature, StateTraceSignature,
                         counter_ports)

__all__ = ["SpikeCore", "Phase", "COUNTER_NAMES"]

COUNTER_NAMES = tuple(c for c in perf.COUNTERS if c != "spikes")


class Phase(enum.Enum, shape=4):
    LOAD = 0
    ENC = 1
    ENC_DRAIN = 2
    SETUP = 3
    ISSUE = 4
    DRAIN = 5
    FINISH = 6
    READ = 7
    SEND = 8


def _depth(n: int) -> int:
    """Memories get at least two words: a one-word memory has a 0-bit address, which Yosys emits
    as a negative range that Verilator rejects."""
    return max(2, n)


def _lanes(word: Value, width: int, n: int, signed_: bool) -> list[Value]:
    return [(word[p * width:(p + 1) * width].as_signed() if signed_ else word[p * width:(p + 1) * width])
            for p in range(n)]


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
        ``n_in`` beats per sample.
    result : Out(stream)
        ``n_out`` beats per sample: ``index``, ``count``, ``membrane`` (signed), ``prediction``
        (the same on every beat) and ``last`` on the final beat.
    err_range, err_protocol : Out(1)
        Sticky: an input value above ``input_max``; ``last`` on the wrong beat.
    cnt_* : Out(32)
        Counters of the last completed sample (docs/spec.md section 4).
    done : Out(1)
        Pulses in the cycle the last result beat is accepted.
    dbg_* :
        Spike monitor: every neuron update (``dbg_valid``) with its layer, step, group and spike
        mask; ``dbg_enc`` marks the rate encoder.
    """

    def __init__(self, model: golden.Model, *, lanes: int = 8):
        self._cfg = cfg = CoreConfig(model, lanes)
        self.x_layout = data.StructLayout({"value": unsigned(cfg.in_bits), "last": unsigned(1)})
        self.result_layout = data.StructLayout({
            "index": unsigned(cfg.cls_bits), "count": unsigned(cfg.cnt_bits), "membrane": signed(cfg.vbits),
            "prediction": unsigned(cfg.cls_bits), "last": unsigned(1)})
        members = {
            "x": In(stream.Signature(self.x_layout)),
            "result": Out(stream.Signature(self.result_layout)),
            "err_range": Out(1),
            "err_protocol": Out(1),
            "done": Out(1),
            "cnt": Out(CounterSignature(counter_ports(perf.COUNTERS, cfg.L), cfg.counter_bits)),
            "spk": Out(SpikeMonitorSignature(layer_bits=cfg.layer_bits, t_bits=cfg.tbits, group_bits=cfg.group_bits,
                                             mask_bits=cfg.dbg_mask_bits)),
            "st": Out(StateTraceSignature(addr_bits=cfg.saddr_bits + 1, data_bits=cfg.P * cfg.state_lane_bits)),
            "op": Out(OpTraceSignature()),
        }
        super().__init__(members)

    @property
    def config(self) -> CoreConfig:
        return self._cfg

    def elaborate(self, platform):
        cfg = self._cfg
        P, T, L = cfg.P, cfg.T, cfg.L
        lp = exact_log2(P)
        sk = "spikes"
        tsc, stcb = cfg.tsc, cfg.stcb
        m = Module()

        # ---------------------------------------------------------------- memories
        m.submodules.wmem = wmem = Memory(shape=unsigned(P * cfg.wbits), depth=_depth(cfg.weight_depth),
                                          init=cfg.weight_init())
        m.submodules.smem = smem = Memory(shape=unsigned(P * cfg.state_lane_bits), depth=_depth(cfg.state_depth),
                                          init=[])
        m.submodules.pmem = pmem = Memory(shape=unsigned(P * 3 * cfg.vbits), depth=_depth(cfg.state_depth),
                                          init=cfg.param_init())
        w_rd = wmem.read_port()
        s_rd, s_wr = smem.read_port(), smem.write_port()
        p_rd = pmem.read_port()
        count_readout = not cfg.membrane_readout
        if count_readout:
            m.submodules.cmem = cmem = Memory(shape=unsigned(P * cfg.cnt_bits), depth=_depth(cfg.layers[-1].groups),
                                              init=[])
            c_rd, c_wr = cmem.read_port(), cmem.write_port()
        if tsc:
            # input countdown registers: x * Q + input_max // 2 at load, then counted down by input_max
            m.submodules.rmem = rmem = Memory(shape=unsigned(P * cfg.ubits), depth=_depth(cfg.G_in), init=[])
            r_rd, r_wr = rmem.read_port(), rmem.write_port(granularity=cfg.ubits)
        elif not cfg.direct:
            m.submodules.xmem = xmem = Memory(shape=unsigned(P * cfg.xbits), depth=_depth(cfg.G_in), init=[])
            if not stcb:
                m.submodules.umem = umem = Memory(shape=unsigned(P * cfg.ubits), depth=_depth(cfg.G_in), init=[])
                u_rd, u_wr = umem.read_port(), umem.write_port()
            x_rd, x_wr = xmem.read_port(), xmem.write_port(granularity=cfg.xbits)

        # event entries: producer group, then the direct value, the stcb train or the tsc OFF bit
        buf_specs = [("in", cfg.ev_in_bits, cfg.ev_depth_in, cfg.ev_cnt_in_bits)]
        for name in ("a", "b")[: cfg.n_buffers - 1]:
            buf_specs.append((name, cfg.ev_ab_bits, cfg.ev_depth_ab, cfg.ev_cnt_ab_bits))
        bufs = []
        for name, width, depth, cbits in buf_specs:
            banks = []
            for p in range(P):
                mem = Memory(shape=unsigned(width), depth=_depth(depth), init=[])
                m.submodules[f"ev_{name}{p}"] = mem
                banks.append((mem.read_port(), mem.write_port()))
            cnts = [Signal(cbits, name=f"cnt_{name}{p}") for p in range(P)]
            bufs.append({"banks": banks, "cnt": cnts, "width": width})

        def src_buf(layer_idx: int) -> int:
            if tsc:
                return 0
            return 0 if layer_idx == 0 else (1 if layer_idx % 2 == 1 else 2)

        def dst_buf(layer_idx: int) -> int:
            return 1 if layer_idx % 2 == 0 else 2

        # per-layer constants, selected by a layer register
        def per_layer(values, shape=None):
            return Array(Const(v, shape) if shape is not None else Const(v) for v in values)

        G_last = per_layer([l.groups - 1 for l in cfg.layers])
        N_IN = per_layer([l.n_in for l in cfg.layers])
        WBASE = per_layer([l.wbase for l in cfg.layers])
        SBASE = per_layer([l.sbase for l in cfg.layers])
        LAST_LANES = per_layer([l.last_lanes for l in cfg.layers])
        FIRES = per_layer([int(l.fires) for l in cfg.layers], 1)

        def lanes_real(layer_v, g_v):
            return Mux(g_v == G_last[layer_v], LAST_LANES[layer_v], P)

        # ---------------------------------------------------------------- control state
        phase = Signal(Phase)
        t = Signal(cfg.tbits)
        layer = Signal(cfg.layer_bits)
        beat = Signal(range(cfg.n_in + 1))
        gi = Signal(range(cfg.ev_depth_in + 1))
        drain = Signal(2)
        g = Signal(cfg.group_bits)
        k = Signal(range(max(cfg.ev_depth_in, cfg.ev_depth_ab) + 1))
        p_sel = Signal(max(1, lp))
        gbase = Signal(cfg.waddr_bits + 1)
        seq_first = Signal()
        cls = Signal(range(cfg.n_out + 1))

        # ---------------------------------------------------------------- counters
        cw = cfg.counter_bits
        names = list(COUNTER_NAMES) + [f"{sk}_l{li}" for li in range(L)] + [f"{sk}_enc"]
        live = {n: Signal(cw, name=f"live_{n}") for n in names}
        incs = {n: [] for n in names}
        sample_done = Signal()
        clear_live = Signal()

        # ---------------------------------------------------------------- input stream (LOAD)
        x_fire = Signal()
        m.d.comb += [self.x.ready.eq(phase == Phase.LOAD), x_fire.eq(self.x.valid & self.x.ready)]
        value = self.x.payload.value
        last_beat = beat == cfg.n_in - 1
        beat_lane = beat[:lp] if lp else C(0, 1)
        # explicit width: with n_in <= P the slice beat[lp:] is empty and Cat() would shift fields
        beat_group = Signal(cfg.group_bits)
        m.d.comb += beat_group.eq(beat[lp:] if lp else beat)
        with m.If(x_fire):
            with m.If(value > cfg.model.input_max):
                m.d.sync += self.err_range.eq(1)
            with m.If(self.x.payload.last != last_beat):
                m.d.sync += self.err_protocol.eq(1)
        incs["cycles"].append(x_fire)
        if tsc:
            Mx, Q = cfg.model.input_max, T - 1
            r0 = Signal(cfg.ubits)
            m.d.comb += r0.eq(value[:cfg.xbits] * Q + Mx // 2)
            with m.If(x_fire):
                m.d.comb += [r_wr.addr.eq(beat_group), r_wr.data.eq(Cat([r0] * P)),
                             r_wr.en.eq((C(1, P) << beat_lane) if lp else 1)]
            incs["input_writes"].append(x_fire)
        elif not cfg.direct:
            m.d.comb += [x_wr.addr.eq(beat_group), x_wr.data.eq(Cat([value[:cfg.xbits]] * P)),
                         x_wr.en.eq(Mux(x_fire, C(1, P) << beat_lane, 0) if lp else x_fire)]
            incs["input_writes"].append(x_fire)

        # ---------------------------------------------------------------- encoder stage E1
        e1_valid, e1_gi, e1_t0 = Signal(), Signal(range(cfg.ev_depth_in + 1)), Signal()
        e1_tq, e1_layer, e1_src_in = Signal(), Signal(cfg.layer_bits), Signal()
        enc_fire = Signal(P)
        gen_s_we = Signal()
        gen_s_data = Signal(P * cfg.state_lane_bits)
        SBASE_PREV = per_layer([0] + [l.sbase for l in cfg.layers[:-1]])
        GSRC_LAST = per_layer([cfg.G_in - 1] + [l.groups - 1 for l in cfg.layers[:-1]])
        SRC_LAST_LANES = per_layer([cfg.n_in - (cfg.G_in - 1) * P] + [l.last_lanes for l in cfg.layers[:-1]])
        if tsc:
            # ON/OFF generator: a countdown R per source neuron. t = 0: ON if R >= theta, R -= theta
            # (else R = -1, inactive); t > 0: an active neuron (R >= 0) sends OFF when R < theta or
            # t = Q, then R = -1; otherwise R -= theta. OFF lands at t = clamp(floor(V/theta), 0, Q).
            Mx = cfg.model.input_max
            m.d.comb += r_rd.addr.eq(gi)
            rw = max(cfg.ubits, cfg.vbits) + 1
            rin = _lanes(r_rd.data, cfg.ubits, P, True)
            sl, pw = cfg.state_lane_bits, 3 * cfg.vbits
            src_words = [s_rd.data[p * sl:(p + 1) * sl] for p in range(P)]
            src_v = [w[:cfg.vbits].as_signed() for w in src_words]
            src_thr = [p_rd.data[p * pw + cfg.vbits:p * pw + 2 * cfg.vbits].as_signed() for p in range(P)]
            real_src = Signal(range(P + 1))
            m.d.comb += real_src.eq(Mux(e1_gi == GSRC_LAST[e1_layer], SRC_LAST_LANES[e1_layer], P))
            new_r = []
            for p in range(P):
                R, th, Rn = Signal(signed(rw), name=f"gen_r{p}"), Signal(signed(rw), name=f"gen_th{p}"), \
                    Signal(signed(rw), name=f"gen_rn{p}")
                on, off, active = Signal(name=f"gen_on{p}"), Signal(name=f"gen_off{p}"), Signal(name=f"gen_act{p}")
                m.d.comb += [R.eq(Mux(e1_src_in, rin[p], src_v[p])), th.eq(Mux(e1_src_in, Mx, src_thr[p])),
                             active.eq(R >= 0), on.eq(e1_t0 & (R >= th)),
                             off.eq(~e1_t0 & active & ((R < th) | e1_tq)),
                             enc_fire[p].eq((on | off) & (p < real_src))]
                with m.If(e1_t0):
                    m.d.comb += Rn.eq(Mux(on, R - th, -1))
                with m.Else():
                    m.d.comb += Rn.eq(Mux(off, -1, Mux(active, R - th, R)))
                new_r.append(Rn)
            with m.If(e1_valid & e1_src_in):
                m.d.comb += [r_wr.addr.eq(e1_gi), r_wr.data.eq(Cat(*[r[:cfg.ubits] for r in new_r])),
                             r_wr.en.eq(C(-1, r_wr.en.shape().width))]
            m.d.comb += [gen_s_we.eq(e1_valid & ~e1_src_in),
                         gen_s_data.eq(Cat(*[Cat(new_r[p][:cfg.vbits], src_words[p][cfg.vbits:]) for p in range(P)]))]
            pop = sum(enc_fire[p] for p in range(P))
            incs["state_reads"].append(e1_valid)
            incs["state_writes"].append(e1_valid)
            incs["param_reads"].append(e1_valid & ~e1_src_in)
            incs["neuron_updates"].append(Mux(e1_valid, real_src, 0))
            incs["event_writes"].append(Mux(e1_valid, pop, 0))
            incs[f"{sk}_enc"].append(Mux(e1_valid & e1_src_in, pop, 0))
            for li in range(L - 1):
                incs[f"{sk}_l{li}"].append(Mux(e1_valid & (e1_layer == li + 1), pop, 0))
        elif stcb and not cfg.direct:
            # temporal to spatial at the input: each lane's whole T-step rate-encoder train at once
            M = cfg.model.input_max
            m.d.comb += x_rd.addr.eq(gi)
            xs = _lanes(x_rd.data, cfg.xbits, P, False)
            enc_trains = []
            for p in range(P):
                u = C(0, 1)
                bits = []
                for tt in range(T):
                    acc_u = Signal(cfg.ubits + cfg.xbits + 1, name=f"enc_u{p}_{tt}")
                    m.d.comb += acc_u.eq(u + xs[p])
                    bit = acc_u >= M
                    bits.append(bit)
                    u = Mux(bit, acc_u - M, acc_u)
                word = Signal(T, name=f"enc_train{p}")
                m.d.comb += [word.eq(Cat(*bits)), enc_fire[p].eq(word != 0)]
                enc_trains.append(word)
            in_real = Mux(e1_gi == cfg.G_in - 1, cfg.n_in - (cfg.G_in - 1) * P, P)
            active = sum(enc_fire[p] for p in range(P))
            spikes_in = sum(sum(w[tt] for tt in range(T)) for w in enc_trains)
            for n, v in (("state_reads", e1_valid), ("neuron_updates", Mux(e1_valid, in_real * T, 0)),
                         (f"{sk}_enc", Mux(e1_valid, spikes_in, 0)), ("event_writes", Mux(e1_valid, active, 0))):
                incs[n].append(v)
        elif not cfg.direct:
            M = cfg.model.input_max
            m.d.comb += [x_rd.addr.eq(gi), u_rd.addr.eq(gi)]
            xs = _lanes(x_rd.data, cfg.xbits, P, False)
            us = _lanes(u_rd.data, cfg.ubits, P, False)
            new_u = []
            for p in range(P):
                acc_u = Signal(cfg.ubits + cfg.xbits + 1, name=f"enc_acc{p}")
                m.d.comb += acc_u.eq(Mux(e1_t0, 0, us[p]) + xs[p])
                m.d.comb += enc_fire[p].eq(acc_u >= M)
                new_u.append((acc_u - Mux(enc_fire[p], M, 0))[:cfg.ubits])
            m.d.comb += [u_wr.addr.eq(e1_gi), u_wr.data.eq(Cat(*new_u)), u_wr.en.eq(e1_valid)]
            in_real = Mux(e1_gi == cfg.G_in - 1, cfg.n_in - (cfg.G_in - 1) * P, P)
            enc_pop = sum(enc_fire[p] for p in range(P))
            for n, v in (("state_reads", e1_valid), ("state_writes", e1_valid),
                         ("neuron_updates", Mux(e1_valid, in_real, 0)),
                         ("spikes_enc", Mux(e1_valid, enc_pop, 0)), ("event_writes", Mux(e1_valid, enc_pop, 0))):
                incs[n].append(v)

        # ---------------------------------------------------------------- event buffer writes
        # IN: encoder spikes (rate) or non-zero inputs at load (direct); A/B: layer spikes at S3
        s3_valid, s3_g, s3_layer, s3_fire = Signal(), Signal(cfg.group_bits), Signal(cfg.layer_bits), Signal(P)
        s3_is_last = Signal()
        clear_in = Signal()
        clear_dst = Signal()
        in_buf = bufs[0]
        for p in range(P):
            rd, wr = in_buf["banks"][p]
            cnt = in_buf["cnt"][p]
            if cfg.direct:
                we = x_fire & (value != 0) & (beat_lane == p)
                m.d.comb += [wr.addr.eq(cnt), wr.data.eq(Cat(beat_group[:cfg.ev_gbits_in], value[:cfg.xbits])),
                             wr.en.eq(we)]
            else:
                we = e1_valid & enc_fire[p]
                entry = Cat(e1_gi[:cfg.ev_gbits_in], ~e1_t0) if tsc else e1_gi[:cfg.ev_gbits_in]
                if stcb:
                    entry = Cat(e1_gi[:cfg.ev_gbits_in], enc_trains[p])
                m.d.comb += [wr.addr.eq(cnt), wr.data.eq(entry), wr.en.eq(we)]
            with m.If(clear_in):
                m.d.sync += cnt.eq(0)
            with m.Elif(we):
                m.d.sync += cnt.eq(cnt + 1)
        if cfg.direct:
            incs["event_writes"].append(x_fire & (value != 0))

        # stcb: each lane's output train of the current S3 update (driven there)
        trains3 = [Signal(max(1, cfg.train_bits), name=f"train{p}") for p in range(P)] if stcb else []
        for bi in range(1, cfg.n_buffers):
            buf = bufs[bi]
            # buffer 1 (A) is written by even layers, buffer 2 (B) by odd layers
            writes_here = Signal(name=f"s3_to_buf{bi}")
            m.d.comb += writes_here.eq(s3_valid & ~s3_is_last & ((s3_layer[0] == 0) if bi == 1 else (s3_layer[0] == 1)))
            is_dst_now = Signal(name=f"dst_is_buf{bi}")
            m.d.comb += is_dst_now.eq((layer[0] == 0) if bi == 1 else (layer[0] == 1))
            for p in range(P):
                rd, wr = buf["banks"][p]
                cnt = buf["cnt"][p]
                we = writes_here & s3_fire[p]
                m.d.comb += [wr.addr.eq(cnt), wr.en.eq(we),
                             wr.data.eq(Cat(s3_g[:cfg.ev_gbits_ab], trains3[p]) if stcb else s3_g[:cfg.ev_gbits_ab])]
                with m.If(clear_dst & is_dst_now):
                    m.d.sync += cnt.eq(0)
                with m.Elif(we):
                    m.d.sync += cnt.eq(cnt + 1)

        # ---------------------------------------------------------------- S0: sequencer
        src_cnt = [Signal(max(b["cnt"][0].shape().width for b in bufs), name=f"src_cnt{p}") for p in range(P)]
        for p in range(P):
            with m.Switch(layer):
                for li in range(L):
                    with m.Case(li):
                        m.d.comb += src_cnt[p].eq(bufs[src_buf(li)]["cnt"][p])
        nonempty = Cat(*[c != 0 for c in src_cnt])
        e_zero = nonempty == 0
        p_first = Signal(max(1, lp))
        next_p = Signal(max(1, lp))
        has_next = Signal()
        for q in reversed(range(P)):
            with m.If(nonempty[q]):
                m.d.comb += p_first.eq(q)
            if q:  # lane 0 is never "after" p_sel; skipping it avoids a constant compare
                with m.If(nonempty[q] & (q > p_sel)):
                    m.d.comb += [next_p.eq(q), has_next.eq(1)]
        cnt_p = Array(src_cnt)[p_sel]
        k_end = (k + 1) == cnt_p
        op_last = e_zero | (k_end & ~has_next)

        for b in bufs:
            for rd, _ in b["banks"]:
                m.d.comb += rd.addr.eq(k)

        s1 = dict(valid=Signal(), null=Signal(), first=Signal(), last=Signal(), g=Signal(cfg.group_bits),
                  p=Signal(max(1, lp)), layer=Signal(cfg.layer_bits), gbase=Signal(cfg.waddr_bits + 1),
                  t0=Signal(), tlast=Signal())
        issuing = phase == Phase.ISSUE
        m.d.sync += [s1["valid"].eq(issuing), s1["null"].eq(e_zero), s1["first"].eq(seq_first),
                     s1["last"].eq(op_last), s1["g"].eq(g), s1["p"].eq(p_sel), s1["layer"].eq(layer),
                     s1["gbase"].eq(gbase), s1["t0"].eq(t == 0), s1["tlast"].eq((t == T - 1) | C(int(stcb), 1))]

        # ---------------------------------------------------------------- S1: weight/state/param read
        ev_word = Signal(max(b["width"] for b in bufs))
        with m.Switch(s1["layer"]):
            for li in range(L):
                with m.Case(li):
                    banks = bufs[src_buf(li)]["banks"]
                    m.d.comb += ev_word.eq(Array(rd.data for rd, _ in banks)[s1["p"]])
        ev_group = Signal(cfg.group_bits)
        ev_value = Signal(cfg.xbits if cfg.direct else 1)
        ev_neg = Signal()
        ev_train = Signal(max(1, cfg.train_bits))
        if stcb:
            with m.If(s1["layer"] == 0):
                m.d.comb += ev_train.eq(C(-1, T) if cfg.direct else ev_word[cfg.ev_gbits_in:cfg.ev_gbits_in + T])
            with m.Else():
                m.d.comb += ev_train.eq(ev_word[cfg.ev_gbits_ab:cfg.ev_gbits_ab + T])
        if tsc:
            m.d.comb += [ev_group.eq(ev_word[:cfg.ev_gbits_in]), ev_neg.eq(ev_word[cfg.ev_gbits_in]), ev_value.eq(1)]
        with m.If((s1["layer"] == 0) if not tsc else C(0, 1)):
            m.d.comb += ev_group.eq(ev_word[:cfg.ev_gbits_in])
            if cfg.direct:
                m.d.comb += ev_value.eq(ev_word[cfg.ev_gbits_in:cfg.ev_gbits_in + cfg.xbits])
            else:
                m.d.comb += ev_value.eq(1)
        with m.Elif(C(0 if tsc else 1, 1)):
            m.d.comb += [ev_group.eq(ev_word[:cfg.ev_gbits_ab]), ev_value.eq(1)]
        in_index = Cat(s1["p"][:lp], ev_group) if lp else ev_group
        readout = (phase == Phase.READ) | (phase == Phase.SEND)
        cls_group = cls[lp:] if lp else cls
        with m.If(readout):
            m.d.comb += s_rd.addr.eq(cfg.layers[-1].sbase + cls_group)
            if count_readout:
                m.d.comb += c_rd.addr.eq(cls_group)
        with m.Elif(phase == Phase.ENC if tsc else C(0, 1)):
            # TSC generator: the source layer's final V and thresholds
            m.d.comb += [s_rd.addr.eq(SBASE_PREV[layer] + gi), p_rd.addr.eq(SBASE_PREV[layer] + gi)]
        with m.Else():
            m.d.comb += [s_rd.addr.eq(SBASE[s1["layer"]] + s1["g"]), p_rd.addr.eq(SBASE[s1["layer"]] + s1["g"])]
            if count_readout:
                m.d.comb += c_rd.addr.eq(s1["g"])
        m.d.comb += w_rd.addr.eq(s1["gbase"] + in_index)
        rd_op = s1["valid"] & ~s1["null"]
        incs["weight_reads"].append(rd_op)
        incs["event_reads"].append(rd_op)
        if stcb:   # the weight goes into every slot whose bit is set
            slots = sum(ev_train[tt] for tt in range(T))
            incs["syn_ops"].append(Mux(rd_op, lanes_real(s1["layer"], s1["g"]) * slots, 0))
        else:
            incs["syn_ops"].append(Mux(rd_op, lanes_real(s1["layer"], s1["g"]), 0))
        incs["param_reads"].append(s1["valid"] & s1["last"])
        incs["state_reads"].append(s1["valid"] & s1["last"] & ~s1["t0"])
        st_rd = s1["valid"] & s1["last"] & ~s1["t0"]
        if tsc:   # the generator reads the source layer's final V
            st_rd = st_rd | ((phase == Phase.ENC) & (layer != 0))
        m.d.comb += [self.st.rd.eq(st_rd), self.st.raddr.eq(s_rd.addr), self.st.wr.eq(s_wr.en),
                     self.st.waddr.eq(s_wr.addr), self.st.wdata.eq(s_wr.data), self.st.upd.eq(~gen_s_we)]

        s2 = dict(valid=Signal(), null=Signal(), first=Signal(), last=Signal(), g=Signal(cfg.group_bits),
                  layer=Signal(cfg.layer_bits), value=Signal(ev_value.shape()), t0=Signal(), tlast=Signal(),
                  neg=Signal(), train=Signal(max(1, cfg.train_bits)))
        m.d.sync += [s2["valid"].eq(s1["valid"]), s2["null"].eq(s1["null"]), s2["first"].eq(s1["first"]),
                     s2["last"].eq(s1["last"]), s2["g"].eq(s1["g"]), s2["layer"].eq(s1["layer"]),
                     s2["value"].eq(ev_value), s2["t0"].eq(s1["t0"]), s2["tlast"].eq(s1["tlast"]),
                     s2["neg"].eq(ev_neg), s2["train"].eq(ev_train)]

        m.d.comb += [self.op.valid.eq(s2["valid"]), self.op.null.eq(s2["null"]), self.op.last.eq(s2["last"])]

        # ---------------------------------------------------------------- S2: accumulate
        ws = _lanes(w_rd.data, cfg.wbits, P, True)
        S = T if stcb else 1        # stcb: a T-slot current vector per lane
        acc = [[Signal(signed(cfg.acc_bits), name=f"acc{p}_{tt}") for tt in range(S)] for p in range(P)]
        acc_new = [[Signal(signed(cfg.acc_bits), name=f"acc_new{p}_{tt}") for tt in range(S)] for p in range(P)]
        for p in range(P):
            term = ws[p] * s2["value"] if cfg.direct else ws[p]
            if tsc:
                term = Mux(s2["neg"], -ws[p], ws[p])
            for tt in range(S):
                slot_term = Mux(s2["train"][tt], term, 0) if stcb else term
                m.d.comb += acc_new[p][tt].eq(Mux(s2["first"], 0, acc[p][tt]) + Mux(s2["null"], 0, slot_term))
                with m.If(s2["valid"]):
                    m.d.sync += acc[p][tt].eq(acc_new[p][tt])
        sl = cfg.state_lane_bits
        st_words = [s_rd.data[p * sl:(p + 1) * sl] for p in range(P)]
        states = [w[:cfg.vbits].as_signed() for w in st_words]
        currents = [w[cfg.vbits:].as_signed() for w in st_words] if tsc else None
        pw = 3 * cfg.vbits
        params = [_lanes(p_rd.data[p * pw:(p + 1) * pw], cfg.vbits, 3, True) for p in range(P)]
        counts_rd = _lanes(c_rd.data, cfg.cnt_bits, P, False) if count_readout else [C(0, 1)] * P

        s3_acc = [[Signal(signed(cfg.acc_bits), name=f"s3_acc{p}_{tt}") for tt in range(S)] for p in range(P)]
        s3_vold = [Signal(signed(cfg.vbits), name=f"s3_vold{p}") for p in range(P)]
        s3_bias = [Signal(signed(cfg.vbits), name=f"s3_bias{p}") for p in range(P)]
        s3_thr = [Signal(signed(cfg.vbits), name=f"s3_thr{p}") for p in range(P)]
        s3_cnt = [Signal(cfg.cnt_bits, name=f"s3_cnt{p}") for p in range(P)]
        s3_cold = [Signal(signed(max(1, cfg.cur_bits)), name=f"s3_cold{p}") for p in range(P)]
        s3_tlast = Signal()
        to_s3 = s2["valid"] & s2["last"]
        m.d.sync += s3_valid.eq(to_s3)
        with m.If(to_s3):
            m.d.sync += [s3_g.eq(s2["g"]), s3_layer.eq(s2["layer"]), s3_tlast.eq(s2["tlast"])]
            for p in range(P):
                bias, thr, v0 = params[p]
                if tsc:  # V starts from the bias, C from 0
                    m.d.sync += [s3_vold[p].eq(Mux(s2["t0"], bias, states[p])),
                                 s3_cold[p].eq(Mux(s2["t0"], 0, currents[p]))]
                else:
                    m.d.sync += s3_vold[p].eq(Mux(s2["t0"], v0, states[p]))
                m.d.sync += [s3_acc[p][tt].eq(acc_new[p][tt]) for tt in range(S)]
                m.d.sync += [
                             s3_bias[p].eq(bias), s3_thr[p].eq(thr),
                             s3_cnt[p].eq(Mux(s2["t0"], 0, counts_rd[p]))]

        # ---------------------------------------------------------------- S3: IF update
        m.d.comb += s3_is_last.eq(s3_layer == L - 1)
        real3 = lanes_real(s3_layer, s3_g)
        v_new = []
        cnt_new = []
        state_new = []
        if stcb:
            K = cfg.kernel_taps
            identity = all(not l.has_kernel for l in cfg.model.layers)
            H = [per_layer([int(l.h[k]) if k < len(l.h) else 0 for l in cfg.model.layers], signed(cfg.wbits + 1))
                 for k in range(K)]
        for p in range(P):
            vn = Signal(signed(cfg.vbits), name=f"vnew{p}")
            if stcb:
                # spatial to temporal: STEB kernel, then the IF over all T slots of the window
                cur = []
                for tt in range(T):
                    c_t = Signal(signed(cfg.vbits + 2), name=f"cur{p}_{tt}")
                    m.d.comb += c_t.eq(s3_bias[p] + s3_acc[p][tt])
                    cur.append(c_t)
                if not identity:
                    kcur = []
                    for tt in range(T):
                        k_t = Signal(signed(cfg.vbits + 2), name=f"kcur{p}_{tt}")
                        m.d.comb += k_t.eq(sum(H[k][s3_layer] * cur[tt - k] for k in range(min(K, tt + 1))))
                        kcur.append(k_t)
                    cur = kcur
                v = s3_vold[p]
                bits = []
                for tt in range(T):
                    vs = Signal(signed(cfg.vbits + 2), name=f"vs{p}_{tt}")
                    m.d.comb += vs.eq(v + cur[tt])
                    b = Signal(name=f"spk{p}_{tt}")
                    m.d.comb += b.eq(FIRES[s3_layer] & (p < real3) & (vs >= s3_thr[p]))
                    vr = Signal(signed(cfg.vbits + 2), name=f"vr{p}_{tt}")
                    m.d.comb += vr.eq(vs - Mux(b, s3_thr[p], 0))
                    bits.append(b)
                    v = vr
                word = trains3[p]
                m.d.comb += [word.eq(Cat(*bits)), vn.eq(v), s3_fire[p].eq(word != 0)]
                state_new.append(vn)
            elif tsc:  # C += this step's ON/OFF weights; V += C; no firing (the generator emits events)
                cn = Signal(signed(cfg.cur_bits), name=f"curnew{p}")
                m.d.comb += [cn.eq(s3_cold[p] + s3_acc[p][0]), vn.eq(s3_vold[p] + cn)]
                state_new.append(Cat(vn, cn))
            else:
                vsum = Signal(signed(cfg.vbits + 2), name=f"vsum{p}")
                m.d.comb += vsum.eq(s3_vold[p] + s3_bias[p] + s3_acc[p][0])
                m.d.comb += s3_fire[p].eq(FIRES[s3_layer] & (p < real3) & (vsum >= s3_thr[p]))
                m.d.comb += vn.eq(vsum - Mux(s3_fire[p], s3_thr[p], 0))
                state_new.append(vn)
            v_new.append(vn)
            cn = Signal(cfg.cnt_bits, name=f"cnew{p}")
            m.d.comb += cn.eq(s3_cnt[p] + (sum(trains3[p][tt] for tt in range(T)) if stcb else s3_fire[p]))
            cnt_new.append(cn)
        with m.If(gen_s_we):
            m.d.comb += [s_wr.addr.eq(SBASE_PREV[e1_layer] + e1_gi), s_wr.data.eq(gen_s_data), s_wr.en.eq(1)]
        with m.Else():
            m.d.comb += [s_wr.addr.eq(SBASE[s3_layer] + s3_g), s_wr.data.eq(Cat(*state_new)), s_wr.en.eq(s3_valid)]
        if count_readout:
            m.d.comb += [c_wr.addr.eq(s3_g), c_wr.data.eq(Cat(*cnt_new)), c_wr.en.eq(s3_valid & s3_is_last)]
        pop3 = sum(s3_fire[p] for p in range(P))            # stcb: non-zero trains
        spikes3 = sum(sum(w[tt] for tt in range(T)) for w in trains3) if stcb else pop3
        incs["state_writes"].append(s3_valid)
        incs["neuron_updates"].append(Mux(s3_valid, real3 * T if stcb else real3, 0))
        incs["event_writes"].append(Mux(s3_valid & ~s3_is_last, pop3, 0))
        if not tsc:
            for li in range(L):
                incs[f"{sk}_l{li}"].append(Mux(s3_valid & (s3_layer == li), spikes3, 0))
        m.d.comb += [self.spk.valid.eq(s3_valid | e1_valid), self.spk.enc.eq(e1_valid),
                     self.spk.layer.eq(Mux(e1_valid, e1_layer, s3_layer)), self.spk.t.eq(t),
                     self.spk.group.eq(Mux(e1_valid, e1_gi, s3_g)),
                     self.spk.mask.eq(Mux(e1_valid, Cat(*enc_trains) if stcb and not cfg.direct else enc_fire,
                                          Cat(*trains3) if stcb else s3_fire))]

        # ---------------------------------------------------------------- S4: argmax
        s4_valid = Signal()
        s4_g = Signal(cfg.group_bits)
        s4_v = [Signal(signed(cfg.vbits), name=f"s4_v{p}") for p in range(P)]
        s4_c = [Signal(cfg.cnt_bits, name=f"s4_c{p}") for p in range(P)]
        m.d.sync += s4_valid.eq(s3_valid & s3_is_last & s3_tlast)
        with m.If(s3_valid & s3_is_last):
            m.d.sync += s4_g.eq(s3_g)
            m.d.sync += [s4_v[p].eq(v_new[p]) for p in range(P)]
            m.d.sync += [s4_c[p].eq(cnt_new[p]) for p in range(P)]
        best_ok = Signal()
        best_v = Signal(signed(cfg.vbits))
        best_c = Signal(cfg.cnt_bits)
        best_i = Signal(cfg.cls_bits)
        real4 = lanes_real(L - 1, s4_g)

        # A comparator tree over the P lanes (depth log2 P), then one compare with the running best:
        # a serial chain made the critical path grow with P. At every node the lower index wins ties,
        # and the running best (earlier groups, lower indices) wins ties against the group's winner.
        def better(a, b):
            """True when candidate a strictly beats b: (count, V) lexicographic, or V alone."""
            ok_a, v_a, c_a, _ = a
            ok_b, v_b, c_b, _ = b
            gt = ((c_a > c_b) | ((c_a == c_b) & (v_a > v_b))) if count_readout else (v_a > v_b)
            return ok_a & (~ok_b | gt)

        def pick(a, b, name):
            take_b = Signal(name=f"am_{name}_b")
            m.d.comb += take_b.eq(better(b, a))
            out = (Signal(name=f"am_{name}_ok"), Signal(signed(cfg.vbits), name=f"am_{name}_v"),
                   Signal(cfg.cnt_bits, name=f"am_{name}_c"), Signal(cfg.cls_bits, name=f"am_{name}_i"))
            m.d.comb += [o.eq(Mux(take_b, y, x)) for o, x, y in zip(out, a, b)]
            return out

        level = []
        for p in range(P):
            idx = (s4_g << lp) | p if lp else s4_g
            level.append((p < real4, s4_v[p], s4_c[p], idx))
        depth = 0
        while len(level) > 1:
            level = [pick(level[i], level[i + 1], f"{depth}_{i // 2}") for i in range(0, len(level), 2)]
            depth += 1
        cur_ok, cur_v, cur_c, cur_i = pick((best_ok, best_v, best_c, best_i), level[0], "best")
        with m.If(s4_valid):
            m.d.sync += [best_ok.eq(cur_ok), best_v.eq(cur_v), best_c.eq(cur_c), best_i.eq(cur_i)]

        # ---------------------------------------------------------------- result stream
        cls_lane = cls[:lp] if lp else C(0, 1)
        res = self.result.payload
        m.d.comb += [res.index.eq(cls), res.prediction.eq(best_i), res.last.eq(cls == cfg.n_out - 1),
                     res.membrane.eq(Array(states)[cls_lane]),
                     res.count.eq(Array(counts_rd)[cls_lane] if count_readout else 0),
                     self.result.valid.eq(phase == Phase.SEND)]
        res_fire = self.result.valid & self.result.ready

        # ---------------------------------------------------------------- FSM
        busy = phase.as_value().matches(Phase.ENC, Phase.ENC_DRAIN, Phase.SETUP, Phase.ISSUE, Phase.DRAIN,
                             Phase.FINISH, Phase.READ)
        incs["cycles"].append(busy)
        incs["cycles"].append(res_fire)

        def start_step(t_next):
            m.d.sync += [t.eq(t_next), layer.eq(0)]
            if cfg.direct:
                m.next = "SETUP"
            else:
                m.d.sync += gi.eq(0)
                m.d.comb += clear_in.eq(1)
                m.next = "ENC"

        m.d.sync += e1_valid.eq(0)
        with m.FSM(init="LOAD") as fsm:
            with m.State("LOAD"):
                m.d.comb += phase.eq(Phase.LOAD)
                with m.If(x_fire):
                    m.d.sync += beat.eq(beat + 1)
                    with m.If(last_beat):
                        m.d.sync += [beat.eq(0), best_ok.eq(0)]
                        start_step(0)
            with m.State("ENC"):
                m.d.comb += phase.eq(Phase.ENC)
                m.d.sync += [e1_valid.eq(1), e1_gi.eq(gi), e1_t0.eq(t == 0), gi.eq(gi + 1),
                             e1_tq.eq(t == T - 1), e1_layer.eq(layer), e1_src_in.eq(layer == 0)]
                with m.If(gi == (GSRC_LAST[layer] if tsc else cfg.G_in - 1)):
                    m.next = "ENC_DRAIN"
            with m.State("ENC_DRAIN"):
                m.d.comb += phase.eq(Phase.ENC_DRAIN)
                m.next = "SETUP"
            with m.State("SETUP"):
                m.d.comb += phase.eq(Phase.SETUP)
                m.d.comb += clear_dst.eq(1)
                m.d.sync += [g.eq(0), k.eq(0), p_sel.eq(p_first), seq_first.eq(1), gbase.eq(WBASE[layer])]
                m.next = "ISSUE"
            with m.State("ISSUE"):
                m.d.comb += phase.eq(Phase.ISSUE)
                m.d.sync += seq_first.eq(op_last)
                with m.If(op_last):
                    m.d.sync += [g.eq(g + 1), gbase.eq(gbase + N_IN[layer]), k.eq(0), p_sel.eq(p_first)]
                    with m.If(g == G_last[layer]):
                        m.d.sync += drain.eq(0)
                        m.next = "DRAIN"
                with m.Elif(k_end):
                    m.d.sync += [p_sel.eq(next_p), k.eq(0)]
                with m.Else():
                    m.d.sync += k.eq(k + 1)
            with m.State("DRAIN"):
                m.d.comb += phase.eq(Phase.DRAIN)
                m.d.sync += drain.eq(drain + 1)
                with m.If(drain == perf.LAYER_DRAIN - 1):
                    if tsc:  # layer after layer: each window step starts with the generator
                        with m.If(t != T - 1):
                            m.d.sync += [t.eq(t + 1), gi.eq(0)]
                            m.d.comb += clear_in.eq(1)
                            m.next = "ENC"
                        with m.Elif(layer != L - 1):
                            m.d.sync += [t.eq(0), layer.eq(layer + 1), gi.eq(0)]
                            m.d.comb += clear_in.eq(1)
                            m.next = "ENC"
                        with m.Else():
                            m.next = "FINISH"
                    else:
                        with m.If(layer != L - 1):
                            m.d.sync += layer.eq(layer + 1)
                            m.next = "SETUP"
                        with m.Elif((t != T - 1) & C(int(not stcb), 1)):   # stcb: one phase covers the window
                            start_step(t + 1)
                        with m.Else():
                            m.next = "FINISH"
            with m.State("FINISH"):
                m.d.comb += phase.eq(Phase.FINISH)
                m.d.sync += cls.eq(0)
                m.next = "READ"
            with m.State("READ"):
                m.d.comb += phase.eq(Phase.READ)
                m.next = "SEND"
            with m.State("SEND"):
                m.d.comb += phase.eq(Phase.SEND)
                with m.If(res_fire):
                    with m.If(cls == cfg.n_out - 1):
                        m.d.comb += sample_done.eq(1)
                        if cfg.direct:
                            m.d.comb += clear_in.eq(1)
                        m.next = "LOAD"
                    with m.Else():
                        m.d.sync += cls.eq(cls + 1)
                        m.next = "READ"
        m.d.sync += self.done.eq(sample_done)     # high while the new counter snapshot is on cnt

        # ---------------------------------------------------------------- counter registers
        for n in names:
            total = sum(incs[n]) if incs[n] else C(0, 1)
            nxt = Signal(cw, name=f"next_{n}")
            m.d.comb += nxt.eq(live[n] + total)
            snap = getattr(self.cnt, n)
            with m.If(sample_done):
                m.d.sync += [snap.eq(nxt), live[n].eq(0)]
            with m.Else():
                m.d.sync += live[n].eq(nxt)
        return m
