"""Neuron units: the accumulators that end each group's op sequence with its neuron update.

Each unit receives an op per cycle with its P terms (weights, or weight x input value) and the
group's starting words from the :class:`hw.store.GroupStore`, which the address generator read so
that they arrive ``ACCUMULATE_STAGE - MEM_READ_LATENCY`` cycles before the group's first op (one
more with direct input's multiplier stage): a short delay line lines them up.

- :class:`IfUnit` (rate): V + bias and V + bias - threshold accumulate side by side from the first op,
  so at the group's last op the sign of the second is the spike and the update (reset by
  subtraction) is a multiplexer, not a chain of adders. A leaky layer's V is leaked, ``(V * num) >>
  shift``, on its way into the accumulators.
- :class:`TscUnit` (tsc): the current C and the membrane V + C accumulate side by side; ON events
  (step 0) add the weight, OFF events subtract it.
- :class:`SlotAccumulator` (stcb): a T-slot current per lane; the weight goes into the slots whose
  train bit is set; at the group's last op the vector goes to the :class:`SlotUnit`.
- :class:`SlotUnit` (stcb): the STEB kernel and the IF over the T slots, one tap of one slot per
  cycle (a leaky layer leaks V at every slot), then the final V and the P output trains.

Every unit emits a registered *update* (``upd_*``) in the cycle after the group's last op: the
group, its new state lanes and its spike mask (stcb: trains). The top writes it to the state memory
and the event buffer.
"""

from __future__ import annotations

from amaranth import *
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from golden import perf
from golden.model import MAX_LEAK_SHIFT

from .bits import popcount

__all__ = ["IfUnit", "TscUnit", "SlotAccumulator", "SlotUnit", "update_members", "leak_members", "leak"]


def update_members(lanes: int, group_bits: int, state_layout: data.Layout, mask_bits: int) -> dict:
    """The registered update every unit emits."""
    return {"upd_valid": Out(1), "upd_group": Out(group_bits), "upd_state": Out(state_layout),
            "upd_mask": Out(mask_bits)}


def leak_members(leak_bits: int) -> dict:
    """The layer's leak, ``leak_num`` (``leak_bits`` unsigned) and ``leak_shift`` (0..MAX_LEAK_SHIFT), as
    inputs of a unit built with ``leak_bits > 0``; none without (no multiplier is built)."""
    if isinstance(leak_bits, bool) or not isinstance(leak_bits, int) or leak_bits < 0:
        raise TypeError(f"leak_bits must be a non-negative integer, not {leak_bits!r}")
    return {"leak_num": In(leak_bits), "leak_shift": In(range(MAX_LEAK_SHIFT + 1))} if leak_bits else {}


def leak(m: Module, v, num, shift, name: str) -> Signal:
    """The leak ``(v * num) >> shift`` (docs/spec.md section 2) of the signed value ``v``: a multiply into
    ``len(v) + len(num)`` signed bits (``num`` is unsigned: ``v_bits + bits(num)``, the width analysis's
    product), then an arithmetic shift, i.e. floor. The result lies between 0 and ``v`` (``num <=
    2**shift``), so it keeps ``v``'s width. A layer without a leak runs with num = 1, shift = 0."""
    prod = Signal(signed(len(v) + len(num)), name=f"{name}_prod")
    out = Signal(signed(len(v)), name=name)
    m.d.comb += [prod.eq(v * num), out.eq(prod >> shift)]
    return out


def _delay(m: Module, value, n: int, name: str):
    """``value`` registered ``n`` times (a pure delay line, shifting every cycle)."""
    for i in range(n):
        r = Signal.like(value, name=f"{name}_d{i}")
        m.d.sync += r.eq(value)
        value = r
    return value


class _Unit(wiring.Component):
    """Common shape of the rate and tsc units.

    The accumulators are loaded with the group's base in the cycle before its first op (``next_first``
    from the fetch), so each op's cycle is one adder; the last op's sums are captured (``fin``), and
    the update (fire, reset, count) is formed from them in the following cycle."""

    def __init__(self, *, lanes: int, group_bits: int, term_layout, state_layout, param_layout, acc_bits: int,
                 base_delay: int, mask_bits: int, extra=None):
        self._P, self._acc, self._delay = lanes, acc_bits, base_delay
        members = {"op_valid": In(1), "first": In(1), "last": In(1), "next_first": In(1), "group": In(group_bits),
                   "terms": In(term_layout), "state": In(state_layout), "params": In(param_layout),
                   "t0": In(1), "fires": In(1), "zero_reset": In(1), "real_lanes": In(range(lanes + 1)),
                   **update_members(lanes, group_bits, state_layout, mask_bits)}
        members.update(extra or {})
        super().__init__(members)

    @property
    def latency(self) -> int:
        """Cycles from a group's last op to its update."""
        return 2

    def _accumulate(self, m: Module, bases: list, name: str) -> list:
        """Accumulators (one per base, per lane) loaded with the base before a group's first op, plus
        this op's term each op; returns the captured sums of the group's last op, per base and lane."""
        P, W = self._P, self._acc
        fins = []
        for bi, base in enumerate(bases):
            fin = []
            for p in range(P):
                acc = Signal(signed(W), name=f"{name}{bi}_{p}")
                new = Signal(signed(W), name=f"{name}{bi}n_{p}")
                m.d.comb += new.eq(acc + self.terms[p])
                with m.If(self.next_first):
                    m.d.sync += acc.eq(base[p])
                with m.Elif(self.op_valid):
                    m.d.sync += acc.eq(new)
                f = Signal(signed(W), name=f"{name}{bi}f_{p}")
                with m.If(self.op_valid & self.last):
                    m.d.sync += f.eq(new)
                fin.append(f)
            fins.append(fin)
        return fins

    def _finish(self, m: Module):
        """The group's registers of the fin stage: valid, group, real lanes."""
        fv, fg = Signal(name="fin_valid"), Signal.like(self.group, name="fin_group")
        fr = Signal.like(self.real_lanes, name="fin_real")
        m.d.sync += fv.eq(self.op_valid & self.last)
        with m.If(self.op_valid & self.last):
            m.d.sync += [fg.eq(self.group), fr.eq(self.real_lanes)]
        m.d.sync += self.upd_valid.eq(fv)
        with m.If(fv):
            m.d.sync += self.upd_group.eq(fg)
        return fv, fr


class IfUnit(_Unit):
    """Rate coding's accumulate-and-fire: reset by subtraction, or to zero while ``zero_reset`` is high
    (the layer's ``reset: zero``); with ``leak_bits`` the layer's leak ``(V * leak_num) >> leak_shift``
    applies to V (the state read, or v_init at step 0) before the accumulators are loaded.

    Parameters
    ----------
    base_delay : int
        Cycles between the group's words arriving on ``state``/``params`` and its first op.
    counts : bool
        Keep the per-neuron spike count in the state word (count readout).
    leak_bits : int
        Width of ``leak_num`` (0: no leak inputs, no multiplier). The leak takes no cycle of its own: with
        a term stage (``base_delay >= 2``) it has the first of the delay line's registers to itself, else
        it is in the cycle that loads the accumulators (the product, the shift and the bias's adder).
    """

    def __init__(self, *, counts: bool, leak_bits: int = 0, **kw):
        self._counts = counts
        self._leak_bits = leak_bits
        super().__init__(**kw, mask_bits=kw["lanes"], extra=leak_members(leak_bits))

    def elaborate(self, platform):
        m = Module()
        P, W = self._P, self._acc
        b1, b2, cnt0 = [], [], []
        for p in range(P):
            st, pr = self.state[p], self.params[p]
            v = Mux(self.t0, pr.v_init, st.v)
            bias, bmt, rest = pr.bias, pr.bmt, self._delay - 1
            if self._leak_bits:
                v = leak(m, v, self.leak_num, self.leak_shift, f"leak_{p}")
                if rest:      # a register between the multiplier and the bias's adder
                    v, bias, bmt = (_delay(m, x, 1, f"{n}_{p}")
                                    for x, n in ((v, "leakv"), (bias, "bias"), (bmt, "bmt")))
                    rest -= 1
            c1, c2 = Signal(signed(W), name=f"base1_{p}"), Signal(signed(W), name=f"base2_{p}")
            m.d.comb += [c1.eq(v + bias), c2.eq(v + bmt)]
            b1.append(_delay(m, c1, rest, f"b1_{p}"))      # loaded a cycle before the first op
            b2.append(_delay(m, c2, rest, f"b2_{p}"))
            if self._counts:
                cnt0.append(_delay(m, Mux(self.t0, 0, st.cnt), self._delay, f"cnt0_{p}"))
        f1, f2 = self._accumulate(m, [b1, b2], "a")
        fv, freal = self._finish(m)
        fire = Signal(self._P)
        for p in range(P):
            m.d.comb += fire[p].eq(self.fires & (p < freal) & (f2[p] >= 0))
            up = self.upd_state[p]
            with m.If(fv):
                m.d.sync += up.v.eq(Mux(fire[p], Mux(self.zero_reset, 0, f2[p]), f1[p]))
            if self._counts:         # the group's count: taken at its first op, kept with the sums
                cnt, fcnt = Signal.like(cnt0[p], name=f"cnt_{p}"), Signal.like(cnt0[p], name=f"fcnt_{p}")
                with m.If(self.op_valid & self.first):
                    m.d.sync += cnt.eq(cnt0[p])
                with m.If(self.op_valid & self.last):
                    m.d.sync += fcnt.eq(Mux(self.first, cnt0[p], cnt))
                with m.If(fv):
                    m.d.sync += up.cnt.eq(fcnt + fire[p])
        with m.If(fv):
            m.d.sync += self.upd_mask.eq(fire)
        return m


class TscUnit(_Unit):
    """Temporal switch coding's accumulation: C += sum(+-w); V += C, with V + C and C accumulating side
    by side from (V_old + C_old, C_old), or (bias, 0) at step 0. The fetch negates OFF events' weights."""

    def __init__(self, **kw):
        super().__init__(**kw, mask_bits=kw["lanes"])

    def elaborate(self, platform):
        m = Module()
        P, W = self._P, self._acc
        bc, bv = [], []
        for p in range(P):
            st, pr = self.state[p], self.params[p]
            c0, v0 = Signal(signed(W), name=f"basec_{p}"), Signal(signed(W), name=f"basev_{p}")
            m.d.comb += [c0.eq(Mux(self.t0, 0, st.c)), v0.eq(Mux(self.t0, pr.bias, st.v + st.c))]
            bc.append(_delay(m, c0, self._delay - 1, f"bc_{p}"))
            bv.append(_delay(m, v0, self._delay - 1, f"bv_{p}"))
        fc, fvv = self._accumulate(m, [bc, bv], "t")
        fv, _ = self._finish(m)
        with m.If(fv):
            m.d.sync += [self.upd_state[p].v.eq(fvv[p]) for p in range(P)]
            m.d.sync += [self.upd_state[p].c.eq(fc[p]) for p in range(P)]
            m.d.sync += self.upd_mask.eq(0)
        return m


class SlotAccumulator(wiring.Component):
    """stcb: P lanes x T slots; each op adds its term into the slots whose ``train`` bit is set.

    At the group's last op the slot vector, the group and the group's parameters (lined up like
    :class:`IfUnit`'s base) leave on ``hand_*``, registered, for the :class:`SlotUnit`. A slot is
    ``slot_bits`` wide (``CoreGeometry.slot_bits``): every sum of a subset of a neuron's terms fits.

    With ``load`` (a core with conv2d layers) ``load_valid`` hands off ``load_slots`` and ``load_params``
    instead, registered the same way (a swept accumulator word and its parameter word): one handoff
    register serves both, as a dense op's last op and a sweep's word never meet (different phases).
    ``hand_group`` is then the dense group's only."""

    def __init__(self, *, lanes: int, T: int, group_bits: int, term_layout, param_layout, slot_bits: int,
                 base_delay: int, load: bool = False):
        self._P, self._T, self._acc, self._delay, self._load = lanes, T, slot_bits, base_delay, load
        self.slots_layout = data.ArrayLayout(data.ArrayLayout(signed(slot_bits), T), lanes)
        loads = {"load_valid": In(1), "load_slots": In(self.slots_layout), "load_params": In(param_layout)} \
            if load else {}
        super().__init__({"op_valid": In(1), "first": In(1), "last": In(1), "next_first": In(1),
                          "group": In(group_bits), "terms": In(term_layout), "train": In(T), "params": In(param_layout),
                          **loads,
                          "hand_valid": Out(1), "hand_group": Out(group_bits), "hand_slots": Out(self.slots_layout),
                          "hand_params": Out(param_layout)})

    def elaborate(self, platform):
        m = Module()
        P, T = self._P, self._T
        params = _delay(m, self.params, self._delay, "params")
        ctx = Signal.like(self.params)
        with m.If(self.op_valid & self.first):
            m.d.sync += ctx.eq(params)
        for p in range(P):
            term = self.terms[p]                 # zero for a null op (the fetch does that)
            for t in range(T):
                acc = Signal(signed(self._acc), name=f"slot{p}_{t}")
                new = Signal(signed(self._acc), name=f"slotn{p}_{t}")
                m.d.comb += new.eq(acc + Mux(self.train[t], term, 0))
                with m.If(self.next_first):
                    m.d.sync += acc.eq(0)
                with m.Elif(self.op_valid):
                    m.d.sync += acc.eq(new)
                with m.If(self.op_valid & self.last):
                    m.d.sync += self.hand_slots[p][t].eq(new)
        m.d.sync += self.hand_valid.eq(self.op_valid & self.last)
        with m.If(self.op_valid & self.last):
            m.d.sync += [self.hand_group.eq(self.group), self.hand_params.eq(Mux(self.first, params, ctx))]
        if self._load:
            with m.If(self.load_valid):
                m.d.sync += [self.hand_valid.eq(1), self.hand_slots.eq(self.load_slots),
                             self.hand_params.eq(self.load_params)]
        return m


class SlotUnit(wiring.Component):
    """stcb's spatial-to-temporal conversion: the STEB kernel and the IF over T slots, serially.

    For slot t and tap k (one per cycle, k innermost) the current ``bias + slot[t - k]`` is multiplied
    by the layer's tap h[k] and summed into I'[t]; after the last tap the IF step runs on I'[t]. With
    the identity kernel the multiplier disappears. The loop-carried IF step computes V + I' and
    V + I' - threshold side by side (I' - threshold is formed a stage earlier), so its critical path is
    one adder and a multiplexer.

    Members
    -------
    hand_* : In   the group from the :class:`SlotAccumulator`
    layer : In    the phase's layer (selects the kernel taps)
    fires, real_lanes : In
    zero_reset : In   the layer resets a firing neuron to 0 instead of subtracting its threshold
    leak_num, leak_shift : In   the layer's leak (only with ``leak_bits``): every slot's IF step starts with
        ``V <- (V * leak_num) >> leak_shift``, the first from v_init, in the loop's cycle
    upd_* : Out   the final V (state lanes) and the P trains (``upd_mask``: lane p, slot t at bit p*T + t)
    """

    def __init__(self, *, lanes: int, T: int, taps: int, kernels: list, group_bits: int, slots_layout,
                 param_layout, state_layout, acc_bits: int, layer_bits: int, tap_bits: int, leak_bits: int = 0):
        self._P, self._T, self._K = lanes, T, taps
        self._leak_bits = leak_bits
        self._kernels = [list(h) + [0] * (taps - len(h)) for h in kernels]
        self._identity = all(h == [1] + [0] * (taps - 1) for h in self._kernels) and taps == 1
        self._acc, self._tap_bits = acc_bits, tap_bits
        self._state_fields = set(state_layout.elem_shape.members) if hasattr(state_layout, "elem_shape") else set()
        members = {"hand_valid": In(1), "hand_group": In(group_bits), "hand_slots": In(slots_layout),
                   "hand_params": In(param_layout), "layer": In(layer_bits), "fires": In(1), "zero_reset": In(1),
                   "real_lanes": In(range(lanes + 1)), "busy": Out(1), "inc_spikes": Out(range(lanes + 1)),
                   **update_members(lanes, group_bits, state_layout, lanes * T), **leak_members(leak_bits)}
        super().__init__(members)

    @property
    def latency(self) -> int:
        """Cycles from ``hand_valid`` to ``upd_valid``."""
        return perf.stcb_group_cycles(self._T, self._K) + perf.SLOT_PIPELINE

    def elaborate(self, platform):
        m = Module()
        P, T, K, W = self._P, self._T, self._K, self._acc
        # ---- the group being converted (kept until the next handoff) and the slot/tap sequencer
        prm = Signal.like(self.hand_params)
        # what later stages need of their group travels with them: the next group's handoff may come
        # while this one's last slots are still in the pipeline
        fields = self.hand_params.shape().elem_shape.members          # each at its own width
        ctx_layout = data.StructLayout({"group": unsigned(len(self.hand_group)), "real": unsigned(P),
                                        "v_init": data.ArrayLayout(fields["v_init"], P),
                                        "thr": data.ArrayLayout(fields["thr"], P)})
        ctx = Signal(ctx_layout)
        t_cur = Signal(range(max(2, T)))
        k_cur = Signal(range(max(2, K)))
        run = Signal()
        with m.If(self.hand_valid):
            m.d.sync += [prm.eq(self.hand_params), ctx.group.eq(self.hand_group),
                         ctx.real.eq(Cat(*[p < self.real_lanes for p in range(P)])),     # real lanes as a mask
                         t_cur.eq(0), k_cur.eq(0), run.eq(1)]
            m.d.sync += [ctx.v_init[p].eq(self.hand_params[p].v_init) for p in range(P)]
            m.d.sync += [ctx.thr[p].eq(self.hand_params[p].thr) for p in range(P)]
        with m.Elif(run):
            with m.If(k_cur == K - 1):
                m.d.sync += [k_cur.eq(0), t_cur.eq(t_cur + 1)]
                with m.If(t_cur == T - 1):
                    m.d.sync += run.eq(0)
            with m.Else():
                m.d.sync += k_cur.eq(k_cur + 1)
        m.d.comb += self.busy.eq(run)

        def stage(valid, t, k, c, name):
            v, tt, kk, cc = Signal(name=f"{name}_valid"), Signal(range(max(2, T)), name=f"{name}_t"), \
                Signal(range(max(2, K)), name=f"{name}_k"), Signal(ctx_layout, name=f"{name}_ctx")
            m.d.sync += [v.eq(valid), tt.eq(t), kk.eq(k), cc.eq(c)]
            return v, tt, kk, cc

        # ---- the slots as a shift register and a window of the last K slots: tap k of slot t reads
        # window[k] = slot[t - k] (invalid before the window starts), so no slot index is decoded
        sr = Signal.like(self.hand_slots, name="slot_sr")
        slot_shape = self.hand_slots.shape().elem_shape.elem_shape      # slot_bits: widened in S1
        win = [[Signal(slot_shape, name=f"win{p}_{k}") for k in range(K)] for p in range(P)]
        winv = Signal(K, name="win_valid")
        with m.If(self.hand_valid):
            m.d.sync += winv.eq(1)
            for p in range(P):
                m.d.sync += [win[p][0].eq(self.hand_slots[p][0])]
                m.d.sync += [sr[p][t].eq(self.hand_slots[p][t + 1]) for t in range(T - 1)]
        with m.Elif(run & (k_cur == K - 1)):               # slot t done: slot t + 1 enters the window
            m.d.sync += winv.eq(Cat(C(1, 1), winv[:K - 1]) if K > 1 else 1)
            for p in range(P):
                m.d.sync += [win[p][0].eq(sr[p][0])] + [win[p][k].eq(win[p][k - 1]) for k in range(1, K)]
                m.d.sync += [sr[p][t].eq(sr[p][t + 1]) for t in range(T - 1)]

        # ---- S1: the tap's current bias + slot[t - k] (0 before the window); with the identity kernel
        # also bias - threshold + slot[t], so the IF step needs no subtraction
        s1 = stage(run, t_cur, k_cur, ctx, "s1")
        cur = [Signal(signed(W), name=f"cur{p}") for p in range(P)]
        curthr = [Signal(signed(W), name=f"curthr{p}") for p in range(P)]
        inside = winv.bit_select(k_cur, 1) if K > 1 else C(1, 1)
        for p in range(P):
            sel = Array(win[p])[k_cur] if K > 1 else win[p][0]
            m.d.sync += [cur[p].eq(Mux(inside, prm[p].bias + sel, 0)),
                         curthr[p].eq(Mux(inside, prm[p].bmt + sel, 0))]
        # ---- S2: multiply by the layer's tap (identity: pass through)
        s2 = stage(*s1, "s2")
        prod = [Signal(signed(W), name=f"prod{p}") for p in range(P)]
        prodthr = [Signal(signed(W), name=f"prodthr{p}") for p in range(P)]
        if self._identity:
            m.d.sync += [prod[p].eq(cur[p]) for p in range(P)]
            m.d.sync += [prodthr[p].eq(curthr[p]) for p in range(P)]
        else:
            # the tap is looked up in S1, beside the current it multiplies: the lookup ahead of the
            # multiplier was the kernel core's critical path
            H = Array(Array(Const(h[k], signed(self._tap_bits)) for k in range(K)) for h in self._kernels)
            tap = Signal(signed(self._tap_bits))
            m.d.sync += tap.eq(H[self.layer][k_cur])
            m.d.sync += [prod[p].eq(tap * cur[p]) for p in range(P)]
        # ---- S3: sum the taps into I'[t]
        s2_last = s2[0] & (s2[2] == K - 1)
        s3 = stage(s2_last, s2[1], s2[2], s2[3], "s3")
        isum = [Signal(signed(W), name=f"isum{p}") for p in range(P)]
        i3 = [Signal(signed(W), name=f"i3_{p}") for p in range(P)]
        i3thr = [Signal(signed(W), name=f"i3thr{p}") for p in range(P)]
        for p in range(P):
            if self._identity:
                m.d.sync += [i3[p].eq(prod[p]), i3thr[p].eq(prodthr[p])]
            else:
                total = Mux(s2[2] == 0, 0, isum[p]) + prod[p]
                with m.If(s2[0]):
                    m.d.sync += isum[p].eq(total)
                m.d.sync += i3[p].eq(total)
        # ---- S4: I' - threshold (identity: formed in S1, passed on)
        s4 = stage(*s3, "s4")
        i_now = [Signal(signed(W), name=f"inow{p}") for p in range(P)]
        ithr = [Signal(signed(W), name=f"ithr{p}") for p in range(P)]
        for p in range(P):
            m.d.sync += [i_now[p].eq(i3[p]), ithr[p].eq(i3thr[p] if self._identity else i3[p] - s3[3].thr[p])]
        # ---- S5: the IF step, loop-carried over the slots
        s4_valid, s4_t, _, c4 = s4
        # the slot's position, decoded a stage early: the loop below reads only flip-flops
        s4_first, s4_last = Signal(name="s4_first"), Signal(name="s4_last")
        m.d.sync += [s4_first.eq(s3[1] == 0), s4_last.eq(s3[1] == T - 1)]
        V = [Signal(signed(W), name=f"vloop{p}") for p in range(P)]
        out_valid = Signal()
        m.d.comb += out_valid.eq(s4_valid & s4_last)
        # the loop's result feeds only V and two local registers (the fire bits and the final V): the
        # update, the trains and the counts are formed from those a cycle later (S6), so nothing with a
        # large fan-out or a long route hangs on the loop's adder
        fired, fired_v, fired_t = Signal(P), Signal(), Signal(range(max(2, T)))
        fired_first, fired_last = Signal(), Signal()
        vfin = [Signal(signed(W), name=f"vfin{p}") for p in range(P)]
        m.d.sync += [fired_v.eq(s4_valid), fired_t.eq(s4_t), fired_first.eq(s4_first), fired_last.eq(out_valid)]
        # V starts from v_init: loaded in the cycle before a group's first slot reaches this stage, so
        # the loop is one adder and a multiplexer
        preload = s3[0] & (s3[1] == 0)
        fires = []
        for p in range(P):
            v_in = V[p]
            if self._leak_bits:          # V holds a membrane (v_bits), so the product is v_bits + bits(num)
                vw = len(self.upd_state[p].v)
                v_in = leak(m, v_in[:vw].as_signed(), self.leak_num, self.leak_shift, f"leak{p}")
            vsum, diff = Signal(signed(W), name=f"vsum{p}"), Signal(signed(W), name=f"vdiff{p}")
            m.d.comb += [vsum.eq(v_in + i_now[p]), diff.eq(v_in + ithr[p])]
            fire = Signal(name=f"fire{p}")
            m.d.comb += fire.eq(self.fires & c4.real[p] & (diff >= 0))
            fires.append(fire)
            v_next = Mux(fire, Mux(self.zero_reset, 0, diff), vsum)
            with m.If(preload):
                m.d.sync += V[p].eq(s3[3].v_init[p])
            with m.Elif(s4_valid):
                m.d.sync += V[p].eq(v_next)
            with m.If(out_valid):                  # the group's final V (the next group may preload V now)
                m.d.sync += vfin[p].eq(v_next)
        m.d.sync += fired.eq(Cat(*fires))
        # ---- S6: trains, counts and the update, from the registered fire bits and final V
        c5 = Signal(ctx_layout, name="s5_ctx")
        m.d.sync += c5.eq(c4)
        trains = []
        for p in range(P):
            spikes = Signal(T, name=f"train{p}")
            with m.If(fired_v):
                m.d.sync += spikes.bit_select(fired_t, 1).eq(fired[p])
                with m.If(fired_first):
                    m.d.sync += spikes.eq(fired[p])
            trains.append(Cat(spikes[:T - 1], fired[p]) if T > 1 else fired[p])
            if "cnt" in self._state_fields:        # the lane's spike count, counted slot by slot
                cnt = Signal(range(T + 1), name=f"slotcnt{p}")
                cnt_now = Mux(fired_first, 0, cnt) + fired[p]
                with m.If(fired_v):
                    m.d.sync += cnt.eq(cnt_now)
                with m.If(fired_last):
                    m.d.sync += self.upd_state[p].cnt.eq(cnt_now)
            with m.If(fired_last):
                m.d.sync += self.upd_state[p].v.eq(vfin[p])
        m.d.sync += self.inc_spikes.eq(Mux(fired_v, popcount(fired), 0))
        m.d.sync += self.upd_valid.eq(fired_last)
        with m.If(fired_last):
            m.d.sync += [self.upd_group.eq(c5.group), self.upd_mask.eq(Cat(*trains))]
        return m
