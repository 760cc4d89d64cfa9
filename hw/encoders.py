"""Input side of the core: the input loader and the three encoders.

- :class:`InputLoader` takes the input stream while the core waits for a sample, flags protocol and
  range errors, and writes each value, transformed, to the encoder's memory (rate and stcb: x and
  x - input_max; tsc: the countdown start x*Q + input_max//2) or, for direct input, collects each
  word of P values into an event entry. Every write lands ``perf.LOAD_DRAIN`` cycles after its beat.
- :class:`RateEncoder` (rate coding): one pass over the input words per step; an IF neuron per input
  (u += x; spike when u >= input_max) whose spike masks become event entries.
- :class:`TrainEncoder` (stcb): one pass for the whole window; each input word becomes P whole T-bit
  trains, read from a table of x (small input_max) or formed by a T-stage pipeline, in T + 1 stages.
- :class:`TscGenerator` (tsc): the ON/OFF generator of a layer's window: for every source word (the
  input's countdowns, or the previous layer's final V) it counts down by the threshold and emits ON
  at t = 0 and OFF at t = clamp(floor(V / theta), 0, Q).

Each issues one word per cycle after ``start``; its writes and entries land ``ENC_DRAIN`` /
``GEN_DRAIN`` / ``train_encoder_drain(T)`` cycles after the last word was issued.
"""

from __future__ import annotations

from amaranth import *
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2, exact_log2

from golden import perf

from .bits import popcount
from .sweep import SweepGen, SweepLayer

__all__ = ["InputLoader", "RateEncoder", "TrainEncoder", "TscGenerator", "enc_lane_layout"]


def enc_lane_layout(xbits: int, xmbits: int) -> data.StructLayout:
    """A rate/stcb encoder input lane: x and x - input_max (so u + x - input_max needs no second adder)."""
    return data.StructLayout({"x": unsigned(xbits), "xm": signed(xmbits)})


class InputLoader(wiring.Component):
    """Members
    -------
    x : In(stream {value, last})
    loading : In(1)           the core waits for this sample's beats (``x.ready``)
    err_range, err_protocol : Out(1)   sticky until reset
    fired : Out(1)            a beat was taken this cycle
    done : Out(1)             the sample's last beat was taken this cycle
    wr_en, wr_group, wr_lane, wr_value : Out     an encoder-memory lane write (rate, stcb, tsc)
    ent_append, ent : Out     a direct-input event entry (direct)

    With ``shape`` (C, H, W) and ``pack`` (bx, by), the input map is laid out by channel words (layer 0
    is a conv2d or maxpool2d layer): beat (c, y, x), in the stream's C-major order, goes to lane
    c mod P of the word with packed index ``((c // P) << (bx + by)) | (y << bx) | x``. Direct input then
    needs C = 1 (every beat is a word of its own).
    """

    def __init__(self, *, x_layout, lanes: int, n_in: int, input_max: int, mode: str, value_shape,
                 group_bits: int, entry=None, T: int = 1, shape=None, pack=None):
        self._P, self._n, self._M, self._mode, self._T = lanes, n_in, input_max, mode, T
        self._lp = exact_log2(lanes)
        self._shape, self._pack = (tuple(shape), tuple(pack)) if shape is not None else (None, None)
        if self._shape is not None and mode == "direct" and self._shape[0] != 1:
            raise ValueError(f"direct input by channel words needs one channel, not {self._shape[0]}")
        members = {"x": In(stream.Signature(x_layout)), "loading": In(1), "err_range": Out(1),
                   "err_protocol": Out(1), "fired": Out(1), "done": Out(1)}
        if mode == "direct":
            members.update({"ent_append": Out(1), "ent": Out(entry)})
        else:
            members.update({"wr_en": Out(1), "wr_group": Out(group_bits), "wr_lane": Out(range(max(2, lanes))),
                            "wr_value": Out(value_shape)})
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        P, lp, M = self._P, self._lp, self._M
        x = self.x
        beat = Signal(range(self._n + 1))
        fire = x.valid & x.ready
        last_beat = beat == self._n - 1
        m.d.comb += [x.ready.eq(self.loading), self.fired.eq(fire), self.done.eq(fire & last_beat)]
        value = x.payload.value
        with m.If(fire):
            m.d.sync += beat.eq(Mux(last_beat, 0, beat + 1))
            with m.If(value > M):
                m.d.sync += self.err_range.eq(1)
            with m.If(x.payload.last != last_beat):
                m.d.sync += self.err_protocol.eq(1)
        # stage 1: the beat, registered
        v1, val1, idx1, last1 = Signal(), Signal.like(value), Signal.like(beat), Signal()
        m.d.sync += [v1.eq(fire), val1.eq(value), idx1.eq(beat), last1.eq(fire & last_beat)]
        lane1 = idx1[:lp] if lp else C(0, 1)
        group1 = idx1[lp:] if lp else idx1
        word_end1 = lane1 == P - 1
        if self._shape is not None:
            # counters of the beat's (c, y, x); stage 1 holds its lane and packed word
            Cn, H, W = self._shape
            bx, by = self._pack
            cc, cy, cx = Signal(range(max(2, Cn))), Signal(range(max(2, H))), Signal(range(max(2, W)))
            with m.If(fire):
                x_end, y_end = cx == W - 1, cy == H - 1
                m.d.sync += [cx.eq(Mux(x_end | last_beat, 0, cx + 1)),
                             cy.eq(Mux(last_beat, 0, Mux(x_end, Mux(y_end, 0, cy + 1), cy))),
                             cc.eq(Mux(last_beat, 0, Mux(x_end & y_end, cc + 1, cc)))]
            lane1, group1 = Signal(max(1, lp)), Signal(len(idx1) + self._pack[0] + self._pack[1] + 1)
            m.d.sync += [lane1.eq(cc[:lp] if lp else 0),
                         group1.eq(((cc >> lp) << (bx + by)) | (cy << bx) | cx)]
            word_end1 = C(1, 1)                       # direct: one channel, one beat per word
        if self._mode == "direct":
            # collect P values; a word with a non-zero value becomes an entry when its last lane (or the
            # sample's last beat) arrives
            e = self.ent
            mask = Signal(P)
            vals = [Signal(len(e.payload[0]), name=f"dval{p}") for p in range(P)]
            nz = val1 != 0
            new_mask = Signal(P)
            m.d.comb += new_mask.eq(Mux(lane1 == 0, 0, mask) | (nz << lane1))
            with m.If(v1):
                m.d.sync += mask.eq(new_mask)
                for p in range(P):
                    with m.If(lane1 == p):
                        m.d.sync += vals[p].eq(val1)
                    with m.Elif(lane1 == 0):
                        m.d.sync += vals[p].eq(0)
            flush = v1 & (word_end1 | last1) & (new_mask != 0)
            m.d.sync += self.ent_append.eq(flush)
            with m.If(v1):
                m.d.sync += [e.group.eq(group1), e.mask.eq(new_mask)]
                for p in range(P):
                    m.d.sync += e.payload[p].eq(Mux(lane1 == p, val1, Mux(lane1 == 0, 0, vals[p])))
        else:
            # stage 2: the lane's stored form, written in the following cycle
            m.d.sync += [self.wr_en.eq(v1), self.wr_group.eq(group1), self.wr_lane.eq(lane1)]
            xv = val1[:len(val1) - 1]
            if self._mode == "tsc":
                m.d.sync += self.wr_value.eq(xv * (self._T - 1) + M // 2)
            else:
                m.d.sync += [self.wr_value.x.eq(xv), self.wr_value.xm.eq(xv - M)]
        return m


def _x_memory(lane, P: int, depth: int, M: int):
    """The encoder's input memory: P lanes of (x, x - input_max), every lane starting as (0, -input_max)
    so lanes no input is ever written to (the last word's padding) never spike."""
    lane_w = Shape.cast(lane).width
    word = [{"x": 0, "xm": -M}] * P
    return Memory(shape=data.ArrayLayout(lane, P), depth=depth, init=[word] * depth), lane_w


class _Walker(wiring.Component):
    """One word per cycle, ``words`` of them, from ``start``; ``issue`` and ``gi`` name the word read."""

    def _walk(self, m: Module, words):
        """The first word goes out in the ``start`` cycle itself, then one per cycle."""
        gi_r = Signal(range(max(2, self._max_words + 1)))
        run = Signal()
        n = Signal.like(gi_r)
        gi, issue = Signal.like(gi_r), Signal()
        n_now = Mux(self.start, words, n)
        m.d.comb += [gi.eq(Mux(self.start, 0, gi_r)), issue.eq(self.start | run), self.issuing.eq(issue)]
        self._last_word = last = Signal(name="last_word")
        m.d.comb += last.eq(gi == n_now - 1)
        with m.If(issue):
            # back to word 0 after the last one: the address never leaves the memory (a 4-state
            # simulator reads X beyond it, and the read happens every cycle)
            m.d.sync += [gi_r.eq(Mux(last, 0, gi + 1)), n.eq(n_now), run.eq(~last)]
        return gi, issue


class RateEncoder(_Walker):
    """Members
    -------
    start : In(1), t0 : In(1)     begin a step's pass (u restarts from 0 at step 0)
    ld_* : In                     lane writes from the :class:`InputLoader`
    ent_append, ent : Out         the spike mask of each input word with a spike
    spk_valid, spk_group, spk_mask : Out   the encoder's rows of the spike monitor
    inc_updates, inc_spikes : Out counter increments (neuron updates, spikes)

    With ``shape`` (C, H, W) and ``pack`` (bx, by) the input is a map stored by channel words
    (:class:`InputLoader`): the pass walks its Gc * H * W words in (og, y, x) order, and the memories and
    entries use their packed index.
    """

    def __init__(self, *, lanes: int, n_in: int, input_max: int, lane_layout, ubits: int, entry, group_bits: int,
                 shape=None, pack=None):
        self._P, self._n, self._M, self._ub = lanes, n_in, input_max, ubits
        self._map = None
        if shape is not None:
            Cn, H, W = shape
            self._map = SweepLayer(perf.groups(Cn, lanes), H, W, pack[0], pack[1])
            self._words = self._map.words
            self._depth = self._map.groups << (pack[0] + pack[1])
            self._last_real = Cn - (self._map.groups - 1) * lanes
        else:
            self._words = perf.groups(n_in, lanes)
            self._depth = self._words
            self._last_real = n_in - (self._words - 1) * lanes
        self._max_words = self._words
        self._lane = lane_layout
        super().__init__({"start": In(1), "t0": In(1), "issuing": Out(1),
                          "ld_en": In(1), "ld_group": In(group_bits), "ld_lane": In(range(max(2, lanes))),
                          "ld_value": In(lane_layout),
                          "ent_append": Out(1), "ent": Out(entry),
                          "spk_valid": Out(1), "spk_group": Out(group_bits), "spk_mask": Out(lanes),
                          "inc_updates": Out(range(lanes + 1)), "inc_spikes": Out(range(lanes + 1))})

    def elaborate(self, platform):
        m = Module()
        P, M = self._P, self._M
        depth = max(2, self._depth)
        xmem, lane_w = _x_memory(self._lane, P, depth, M)
        m.submodules.xmem = xmem
        m.submodules.umem = umem = Memory(shape=unsigned(P * self._ub), depth=depth, init=[])
        x_wr = xmem.write_port(granularity=1)          # one lane of the ArrayLayout
        x_rd, u_rd, u_wr = xmem.read_port(), umem.read_port(), umem.write_port()
        m.d.comb += [x_wr.addr.eq(self.ld_group), x_wr.en.eq(Mux(self.ld_en, 1 << self.ld_lane, 0)),
                     x_wr.data.eq(Cat(*[self.ld_value.as_value()] * P))]
        if self._map is None:
            gi, issue = self._walk(m, self._words)
            at_last = gi == self._words - 1
        else:                                          # the map's words, named by packed index
            m.submodules.walk = walk = SweepGen([self._map], packed_bits=max(1, ceil_log2(self._depth)))
            m.d.comb += walk.start.eq(self.start)
            gi, issue, at_last = walk.packed, walk.valid, walk.og_last
            m.d.comb += self.issuing.eq(issue)
        m.d.comb += [x_rd.addr.eq(gi), u_rd.addr.eq(gi)]
        # stage 1: memory; stage 2: fabric registers
        v1, g1, v2, g2, t0_1, t0_2 = Signal(), Signal.like(gi), Signal(), Signal.like(gi), Signal(), Signal()
        l1, l2 = Signal(), Signal()
        xw, uw = Signal(data.ArrayLayout(self._lane, P)), Signal.like(u_rd.data)
        m.d.sync += [v1.eq(issue), g1.eq(gi), t0_1.eq(self.t0), v2.eq(v1), g2.eq(g1), t0_2.eq(t0_1),
                     l1.eq(at_last), l2.eq(l1), xw.eq(x_rd.data), uw.eq(u_rd.data)]
        real = Mux(l2, self._last_real, P)
        fire, new_u = Signal(P), []
        for p in range(P):
            u = Mux(t0_2, 0, uw[p * self._ub:(p + 1) * self._ub])
            a = Signal(signed(self._ub + 2), name=f"enc_a{p}")
            d = Signal(signed(self._ub + 2), name=f"enc_d{p}")
            m.d.comb += [a.eq(u + xw[p].x), d.eq(u + xw[p].xm), fire[p].eq((d >= 0) & (p < real))]
            new_u.append(Mux(fire[p], d, a)[:self._ub])
        # stage 3: write back and emit
        m.d.sync += [u_wr.en.eq(v2), u_wr.addr.eq(g2), u_wr.data.eq(Cat(*new_u)),
                     self.ent_append.eq(v2 & (fire != 0)), self.ent.group.eq(g2), self.ent.mask.eq(fire),
                     self.spk_valid.eq(v2), self.spk_group.eq(g2), self.spk_mask.eq(fire),
                     self.inc_updates.eq(Mux(v2, real, 0))]
        # the spikes are counted a cycle later, from the registered mask: P compares and their popcount
        # in one cycle were the wide (P >= 32) rate cores' critical path; the counters need the total only
        m.d.sync += self.inc_spikes.eq(Mux(self.spk_valid, popcount(self.spk_mask), 0))
        return m


# the widest x (bits) whose trains the TrainEncoder reads from a table: a lane's table is then T functions
# of 6 inputs, 4 LUTs each; a wider x's table outgrows the T-stage pipeline of adders it replaces
TRAIN_TABLE_MAX_BITS = 6


def train_of(x: int, input_max: int, T: int) -> int:
    """The T-bit train of input value ``x`` (bit t: the spike at step t), by the encoder's recurrence:
    u starts at 0; each step u + x - input_max >= 0 spikes and leaves that, else u + x. For every x the
    lane's bits can hold, in range or not: the table then equals the pipeline it replaces."""
    u, train = 0, 0
    for t in range(T):
        d = u + x - input_max
        if d >= 0:
            train |= 1 << t
            u = d
        else:
            u += x
    return train


class TrainEncoder(_Walker):
    """stcb's input encoder: every input word's P whole trains in one pass.

    A lane's train is a function of its x alone. While x has at most ``table_bits`` bits (default
    :data:`TRAIN_TABLE_MAX_BITS`) it is read from a table of :func:`train_of` and then delayed T stages;
    otherwise a T-stage pipeline forms it, a slot per stage (u + x, u + x - input_max). Both emit a word
    ``perf.train_encoder_drain(T)`` cycles after its read. On the digits stcb core at P = 8 the pipeline
    was 1,690 flip-flops, 1,021 LUTs and 583 carry cells.

    Members as :class:`RateEncoder`; ``spk_mask`` holds P x T bits (lane p, slot t at bit p*T + t) and
    each entry carries the P trains as its payload. With ``shape`` and ``pack`` the input is a map stored
    by channel words, as for :class:`RateEncoder`: the pass walks its Gc * H * W words, and the memory
    and the entries use their packed index."""

    def __init__(self, *, lanes: int, n_in: int, input_max: int, lane_layout, T: int, entry, group_bits: int,
                 shape=None, pack=None, table_bits: int = TRAIN_TABLE_MAX_BITS):
        self._P, self._n, self._M, self._T = lanes, n_in, input_max, T
        self._table = Shape.cast(lane_layout["x"].shape).width <= table_bits
        self._map = None
        if shape is not None:
            Cn, H, W = shape
            self._map = SweepLayer(perf.groups(Cn, lanes), H, W, pack[0], pack[1])
            self._words = self._map.words
            self._depth = self._map.groups << (pack[0] + pack[1])
            self._last_real = Cn - (self._map.groups - 1) * lanes
        else:
            self._words = perf.groups(n_in, lanes)
            self._depth = self._words
            self._last_real = n_in - (self._words - 1) * lanes
        self._max_words = self._words
        self._lane = lane_layout
        super().__init__({"start": In(1), "issuing": Out(1),
                          "ld_en": In(1), "ld_group": In(group_bits), "ld_lane": In(range(max(2, lanes))),
                          "ld_value": In(lane_layout),
                          "ent_append": Out(1), "ent": Out(entry),
                          "spk_valid": Out(1), "spk_group": Out(group_bits), "spk_mask": Out(lanes * T),
                          "inc_updates": Out(range(lanes * T + 1)), "inc_spikes": Out(range(lanes * T + 1))})

    def elaborate(self, platform):
        m = Module()
        P, T = self._P, self._T
        depth = max(2, self._depth)
        xmem, lane_w = _x_memory(self._lane, P, depth, self._M)
        m.submodules.xmem = xmem
        x_wr, x_rd = xmem.write_port(granularity=1), xmem.read_port()
        m.d.comb += [x_wr.addr.eq(self.ld_group), x_wr.en.eq(Mux(self.ld_en, 1 << self.ld_lane, 0)),
                     x_wr.data.eq(Cat(*[self.ld_value.as_value()] * P))]
        if self._map is None:
            gi, issue = self._walk(m, self._words)
            at_last = gi == self._words - 1
        else:                                          # the map's words, named by packed index
            m.submodules.walk = walk = SweepGen([self._map], packed_bits=max(1, ceil_log2(self._depth)))
            m.d.comb += walk.start.eq(self.start)
            gi, issue, at_last = walk.packed, walk.valid, walk.og_last
            m.d.comb += self.issuing.eq(issue)
        m.d.comb += x_rd.addr.eq(gi)
        v1, g1, l1 = Signal(), Signal.like(gi), Signal()
        m.d.sync += [v1.eq(issue), g1.eq(gi), l1.eq(at_last)]
        valid, grp, xw, at = Signal(), Signal.like(gi), Signal(data.ArrayLayout(self._lane, P)), Signal()
        m.d.sync += [valid.eq(v1), grp.eq(g1), xw.eq(x_rd.data), at.eq(l1)]
        if self._table:
            valid, grp, at, bits, count = self._table_stages(m, valid, grp, xw, at)
        else:
            valid, grp, at, bits, count = self._pipeline_stages(m, valid, grp, xw, at)
        real = Mux(at, self._last_real, P)
        trains = [Mux(p < real, Cat(*bits[p]), 0) for p in range(P)]
        mask = Cat(*[tr != 0 for tr in trains])
        m.d.sync += [self.ent_append.eq(valid & (mask != 0)), self.ent.group.eq(grp), self.ent.mask.eq(mask),
                     self.spk_valid.eq(valid), self.spk_group.eq(grp), self.spk_mask.eq(Cat(*trains)),
                     self.inc_updates.eq(Mux(valid, real * T, 0)),
                     self.inc_spikes.eq(Mux(valid, count + popcount(Cat(*[bits[p][T - 1] for p in range(P)])), 0))]
        m.d.sync += [self.ent.payload[p].eq(trains[p]) for p in range(P)]
        return m

    def _table_stages(self, m, valid, grp, xw, at):
        """Each lane's train from the table in the first stage, then T - 1 stages of delay: the same
        outputs, stage by stage, as :meth:`_pipeline_stages` (the spikes of slots 0..T-2 counted on the
        way, slot T-1's at the end)."""
        P, T = self._P, self._T
        xb = Shape.cast(self._lane["x"].shape).width
        rom = Array(C(train_of(x, self._M, T), T) for x in range(1 << xb))
        trains = [Signal(T, name=f"tt_train{p}") for p in range(P)]
        v, g, a = Signal(name="tt_v"), Signal.like(grp, name="tt_g"), Signal(name="tt_l")
        m.d.sync += [v.eq(valid), g.eq(grp), a.eq(at)] + [trains[p].eq(rom[xw[p].x]) for p in range(P)]
        valid, grp, at, cur, count = v, g, a, trains, C(0, 1)
        for t in range(1, T):
            nv, ng, na = Signal(name=f"tt_v{t}"), Signal.like(grp, name=f"tt_g{t}"), Signal(name=f"tt_l{t}")
            nt = [Signal(T, name=f"tt_train{t}_{p}") for p in range(P)]
            nc = Signal(range(P * T + 1), name=f"tt_c{t}")
            # slot t - 1's spikes, counted in stage t as the pipeline counts them
            m.d.sync += [nv.eq(valid), ng.eq(grp), na.eq(at), nc.eq(count + popcount(Cat(*[c[t - 1] for c in cur])))]
            m.d.sync += [nt[p].eq(cur[p]) for p in range(P)]
            valid, grp, at, cur, count = nv, ng, na, nt, nc
        return valid, grp, at, [[cur[p][t] for t in range(T)] for p in range(P)], count

    def _pipeline_stages(self, m, valid, grp, xw, at):
        """T stages, one time step each: a = u + x, d = u + x - input_max; spike when d >= 0."""
        P, T = self._P, self._T
        ub = Shape.cast(self._lane).width + 1
        u = [C(0, 1)] * P
        bits = [[] for _ in range(P)]
        count = C(0, 1)
        for t in range(T):
            # one time step per stage: a = u + x, d = u + x - input_max; spike when d >= 0
            nv, ng, nu, nc = Signal(name=f"te_v{t}"), Signal.like(grp, name=f"te_g{t}"), [], Signal(range(P * T + 1),
                                                                                             name=f"te_c{t}")
            na = Signal(name=f"te_l{t}")
            nb = [[Signal(name=f"te_b{t}_{p}_{k}") for k in range(t + 1)] for p in range(P)]
            nx = Signal(data.ArrayLayout(self._lane, P), name=f"te_x{t}")
            stage_fire = []
            for p in range(P):
                a = Signal(signed(ub + 1), name=f"te_a{t}_{p}")
                d = Signal(signed(ub + 1), name=f"te_d{t}_{p}")
                m.d.comb += [a.eq(u[p] + xw[p].x), d.eq(u[p] + xw[p].xm)]
                f = Signal(name=f"te_f{t}_{p}")
                m.d.comb += f.eq(d >= 0)
                stage_fire.append(f)
                r = Signal(signed(ub + 1), name=f"te_u{t}_{p}")
                m.d.sync += r.eq(Mux(f, d, a))
                nu.append(r)
                for k in range(t):
                    m.d.sync += nb[p][k].eq(bits[p][k])
                m.d.sync += nb[p][t].eq(f)
            # the spikes of the previous slot, from its registered bits: off this stage's compare
            prev = popcount(Cat(*[bits[p][t - 1] for p in range(P)])) if t else C(0, 1)
            m.d.sync += [nv.eq(valid), ng.eq(grp), nx.eq(xw), nc.eq(count + prev), na.eq(at)]
            valid, grp, xw, u, bits, count, at = nv, ng, nx, nu, nb, nc, na
        return valid, grp, at, bits, count


class TscGenerator(_Walker):
    """The ON/OFF generator of one step of a tsc window.

    The source is the input (``src_in``: its countdown registers live here, loaded by the
    :class:`InputLoader`, with threshold input_max) or the previous layer (its final V and thresholds
    in the :class:`hw.store.GroupStore`, read through ``st_rd_addr`` and ``prm_rd_addr`` and written back
    through ``st_wr_*``). At t = 0 a neuron sends ON if R >= theta, then R -= theta (else R = -1:
    inactive); at t > 0 an active neuron (R >= 0) sends OFF when R < theta or t = Q, then R = -1, else
    R -= theta.

    A source that is a map stored by channel words (``src_map``: a conv2d layer's output, or the input
    of a spatial layer 0; docs/spec.md section 3) is walked word by word, w = 0..N-1, by a
    :class:`hw.sweep.SweepGen` over ``maps`` (row ``src_midx``): its state word is ``src_base + w``, its
    parameter word ``src_pbase + og`` (its channel group), its entries and monitor rows are named by the
    word's packed index, its real lanes are ``real_last`` in the last channel group; an input map's
    countdowns are stored at the packed index (the loader writes them there). A flat source's word g
    has its state at ``src_base + g`` and its parameters at ``src_pbase + g``.

    Members
    -------
    start, t0, tq, src_in : In ; words, real_last, src_base, src_pbase : In   the source's word count and bases
    src_map, src_midx : In     the source is a map, and its row in ``maps``
    src_pool : In              the map is a maxpool2d layer's values: theta = 1, no parameters
    st_rd_addr, prm_rd_addr : Out ; state, params : In (the store's registered outputs)
    st_wr_en, st_wr_addr, st_wr_data : Out
    ld_* : In     the loader's lane writes of the input countdowns
    ent_append, ent : Out ; spk_* : Out ; inc_updates, inc_spikes : Out
    """

    def __init__(self, *, lanes: int, n_in: int, input_max: int, rbits: int, max_words: int, entry, group_bits: int,
                 saddr_bits: int, state_layout, param_layout, v_bits: int, maps=(), in_depth: int | None = None):
        self._P, self._n, self._M, self._rb, self._vb = lanes, n_in, input_max, rbits, v_bits
        self._in_words = perf.groups(n_in, lanes) if in_depth is None else in_depth
        self._max_words = max_words
        self._maps = tuple(maps)
        self._gbits = group_bits
        members = {"start": In(1), "t0": In(1), "tq": In(1), "src_in": In(1), "issuing": Out(1),
                   "words": In(range(max_words + 1)), "real_last": In(range(lanes + 1)),
                   "src_base": In(saddr_bits), "src_pbase": In(saddr_bits),
                   "ld_en": In(1), "ld_group": In(group_bits), "ld_lane": In(range(max(2, lanes))),
                   "ld_value": In(signed(rbits)),
                   "st_rd_addr": Out(saddr_bits), "prm_rd_addr": Out(saddr_bits),
                   "state": In(state_layout), "params": In(param_layout),
                   "st_wr_en": Out(1), "st_wr_addr": Out(saddr_bits), "st_wr_data": Out(state_layout),
                   "ent_append": Out(1), "ent": Out(entry),
                   "spk_valid": Out(1), "spk_group": Out(group_bits), "spk_mask": Out(lanes),
                   "inc_updates": Out(range(lanes + 1)), "inc_spikes": Out(range(lanes + 1))}
        if self._maps:
            members.update({"src_map": In(1), "src_midx": In(range(max(2, len(self._maps)))), "src_pool": In(1)})
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        P, M, rb = self._P, self._M, self._rb
        depth = max(2, self._in_words)
        m.submodules.rmem = rmem = Memory(shape=unsigned(P * rb), depth=depth, init=[])
        r_wr, r_rd = rmem.write_port(granularity=rb), rmem.read_port()
        gi, issue = self._walk(m, self.words)
        # the source's parameters are constant through the pass: latched at start, so the per-layer
        # selections stay off the stages' paths
        src_in, base, wm1, real_last = Signal(), Signal.like(self.src_base), Signal.like(self.words), \
            Signal.like(self.real_last)
        with m.If(self.start):
            m.d.sync += [src_in.eq(self.src_in), base.eq(self.src_base), wm1.eq(self.words - 1),
                         real_last.eq(self.real_last)]
        # a maxpool2d source: its stored values count down with theta = 1 (no parameter word)
        src_pool = Signal()
        if self._maps:
            with m.If(self.start):
                m.d.sync += src_pool.eq(self.src_pool)
        # the word's name (entries, monitor, an input map's countdowns) and whether it is in the last
        # channel group; a flat source's word is named by its index
        name, at_last, plane_end = Signal(self._gbits), Signal(), Signal()
        if self._maps:
            # (its source's row changes with the start: the descriptor is loaded in that cycle)
            m.submodules.walk = walk = SweepGen(self._maps, packed_bits=self._gbits, layer_ahead=False)
            m.d.comb += [walk.start.eq(self.start), walk.layer.eq(self.src_midx)]
            m.d.comb += [name.eq(Mux(self.src_map, walk.packed, gi)), plane_end.eq(~self.src_map | walk.plane_end)]
            at_now = Mux(self.src_map, walk.og_last, Mux(self.start, self.words == 1, gi == wm1))
        else:
            m.d.comb += [name.eq(gi), plane_end.eq(1)]
            at_now = Mux(self.start, self.words == 1, gi == wm1)
        m.d.comb += at_last.eq(at_now)
        # the store addresses count along with the walk (no adder before the memory: the state memory
        # may be LUT RAM, whose read is combinational); a map's parameter word moves on with its group
        # (back to the first word after the last one: the address never leaves the memory)
        addr, paddr, pbase = Signal.like(self.src_base), Signal.like(self.src_pbase), Signal.like(self.src_pbase)
        with m.If(self.start):
            m.d.sync += pbase.eq(self.src_pbase)
        addr_now = Mux(self.start, self.src_base, addr)
        paddr_now = Mux(self.start, self.src_pbase, paddr)
        with m.If(issue):
            m.d.sync += [addr.eq(Mux(self._last_word, Mux(self.start, self.src_base, base), addr_now + 1)),
                         paddr.eq(Mux(self._last_word, Mux(self.start, self.src_pbase, pbase),
                                      paddr_now + plane_end))]
        m.d.comb += [r_rd.addr.eq(name), self.st_rd_addr.eq(addr_now), self.prm_rd_addr.eq(paddr_now)]
        v1, g1, n1, l1, v2, g2, n2, l2 = (Signal(), Signal.like(gi), Signal.like(name), Signal(),
                                          Signal(), Signal.like(gi), Signal.like(name), Signal())
        rw = Signal.like(r_rd.data)
        m.d.sync += [v1.eq(issue), g1.eq(gi), n1.eq(name), l1.eq(at_last),
                     v2.eq(v1), g2.eq(g1), n2.eq(n1), l2.eq(l1), rw.eq(r_rd.data)]
        real = Mux(l2, real_last, P)
        ev, new_r = Signal(P), []
        for p in range(P):
            R = Signal(signed(rb), name=f"gen_r{p}")
            th = Signal(signed(rb), name=f"gen_th{p}")
            m.d.comb += [R.eq(Mux(src_in, rw[p * rb:(p + 1) * rb].as_signed(), self.state[p].v)),
                         th.eq(Mux(src_in, M, Mux(src_pool, 1, self.params[p].thr)))]
            d = Signal(signed(rb + 1), name=f"gen_d{p}")
            m.d.comb += d.eq(R - th)
            ge, active = d >= 0, R >= 0
            on = self.t0 & ge
            off = ~self.t0 & active & (~ge | self.tq)
            m.d.comb += ev[p].eq((on | off) & (p < real))
            nr = Signal(signed(rb), name=f"gen_nr{p}")
            with m.If(self.t0):
                m.d.comb += nr.eq(Mux(ge, d, -1))
            with m.Else():
                m.d.comb += nr.eq(Mux(off, -1, Mux(active, d, R)))
            new_r.append(nr)
        # stage 3: write the countdowns back, emit the events
        gw_en, gw_addr, gw_data = Signal(), Signal.like(n2), Signal(P * rb)
        m.d.sync += [gw_en.eq(v2 & src_in), gw_addr.eq(n2), gw_data.eq(Cat(*new_r))]
        m.d.comb += [r_wr.en.eq(Mux(self.ld_en, 1 << self.ld_lane, Mux(gw_en, (1 << P) - 1, 0))),
                     r_wr.addr.eq(Mux(self.ld_en, self.ld_group, gw_addr)),
                     r_wr.data.eq(Mux(self.ld_en, Cat(*[self.ld_value] * P), gw_data))]
        m.d.sync += [self.st_wr_en.eq(v2 & ~src_in), self.st_wr_addr.eq(base + g2)]
        for p in range(P):
            m.d.sync += [self.st_wr_data[p].eq(self.state[p]), self.st_wr_data[p].v.eq(new_r[p][:self._vb])]
        m.d.sync += [self.ent_append.eq(v2 & (ev != 0)), self.ent.group.eq(n2), self.ent.mask.eq(ev),
                     self.spk_valid.eq(v2), self.spk_group.eq(n2), self.spk_mask.eq(ev),
                     self.inc_updates.eq(Mux(v2, real, 0))]
        # the events are counted a cycle later, from the registered mask: the countdown compare and the
        # popcount in one cycle were the tsc core's critical path (the counters only need the total)
        m.d.sync += self.inc_spikes.eq(Mux(self.spk_valid, popcount(self.spk_mask), 0))
        return m
