"""hw datapath parts, each alone in the Amaranth simulator (not through hw/core.py).

Every test drives a part the way hw/core.py drives it (the cycle each input is valid is derived
from golden.perf's latency constants), puts random garbage on every input in the cycles where the
part must not look at it, and compares every output in every cycle against a plain-Python reference
written here from docs/spec.md section 2 (not from golden's code):

- ``DenseAddressGen``: a group's state/parameter read (``sbase + group``) in the cycle of its first
  event, and each event's op ``ACCUMULATE_STAGE - MEM_READ_LATENCY`` cycles later with the weight word
  ``wbase + group * n_in + index`` (the zero word for a null event) and every field passed along,
  over several layers, phases repeated, bubbles between events.
- ``WeightFetch``: an op's P weights (or weight x value for direct input, negated weights for tsc
  OFF events) exactly ``MEM_READ_LATENCY + term_stage`` cycles after the op, the op's fields with
  them, and ``next_*`` one cycle earlier; extreme weights and input values.
- ``IfUnit``: rate's IF with reset by subtraction (V from v_init at step 0, spike at V >= theta,
  V - theta after it, spike counts, padding lanes and non-firing layers never spike) with the
  group's words arriving ``ACCUMULATE_STAGE - MEM_READ_LATENCY + term_stage`` cycles before its first
  op and the update ``UPDATE_STAGES`` cycles after its last op; groups back to back, V' = theta hit
  exactly.
- ``TscUnit``: tsc's C += sum of terms, V += C (from (0, bias) at step 0), same timing.
- ``SlotAccumulator``: the T-slot currents (a term into the slots whose train bit is set) and the
  group's parameters handed over the handoff cycle after the group's last op.
- ``SlotUnit``: the STEB kernel (bias in every tap, I[t < 0] = 0) and the IF over T slots from v_init,
  the final V, the P trains and the spike counts, ``stcb_group_cycles(T, taps) + SLOT_PIPELINE``
  cycles after the handoff, handoffs as close as the reader allows; identity and signed kernels,
  kernels shorter than the taps.
- ``Argmax``: the argmax of (count, V) or V with ties to the lowest index over groups of P lanes
  (padding lanes never win, negative values, many ties), final exactly ``finish_cycles(P)`` cycles
  after each update, forgotten on ``clear``.
"""

import random

import pytest
from amaranth import signed
from amaranth.lib import data
from amaranth.sim import Simulator

from golden import perf
from golden.geometry import LayerHW
from hw.addrgen import DenseAddressGen, op_layout
from hw.argmax import Argmax
from hw.events import event_layout
from hw.fetch import WeightFetch
from hw.neuron import IfUnit, SlotAccumulator, SlotUnit, TscUnit
from hw.store import param_lane_layout, state_lane_layout

# The address generator's stage: an op's weight arrives ACCUMULATE_STAGE cycles after it leaves the
# reader, MEM_READ_LATENCY of which are the weight memory's.
ADDRESS_STAGE = perf.ACCUMULATE_STAGE - perf.MEM_READ_LATENCY


def handoff_cycles(T, taps):
    """The accumulator-to-slot-unit handoff: what stcb_layer_drain has beyond the fetch, the slot unit
    and its pipeline."""
    return perf.stcb_layer_drain(T, taps, False) - perf.ACCUMULATE_STAGE - perf.stcb_group_cycles(T, taps) \
        - perf.SLOT_PIPELINE


# ---------------------------------------------------------------------------------------------------
# helpers

def sbits(lo, hi):
    """The narrowest two's-complement width holding [lo, hi]."""
    w = 1
    while not (-(1 << (w - 1)) <= lo and hi < (1 << (w - 1))):
        w += 1
    return w


def pick(rng, lo, hi):
    """An integer of [lo, hi]: an extreme or zero half the time, so the edges are always exercised."""
    r = rng.random()
    if r < 0.2:
        return lo
    if r < 0.4:
        return hi
    if r < 0.5 and lo <= 0 <= hi:
        return 0
    return rng.randint(lo, hi)


def py(value):
    """A simulator value as plain Python (lists for arrays, dicts for structs)."""
    if isinstance(value, data.Const):
        layout = value.shape()
        if isinstance(layout, data.ArrayLayout):
            return [py(value[i]) for i in range(layout.length)]
        return {name: py(value[name]) for name, _ in layout}
    return value


def port(dut, name):
    """``dut.events.valid`` for ``"events.valid"``."""
    for part in name.split("."):
        dut = getattr(dut, part)
    return dut


def play(dut, frames, probes):
    """Drive ``frames`` (one {input name: value} per cycle) and sample ``probes`` (name -> port) in
    every cycle once its inputs are set: a registered output of inputs of cycle c shows in cycle c + 1."""
    trace = []

    async def bench(ctx):
        for frame in frames:
            for name, value in frame.items():
                target = port(dut, name)
                if isinstance(target, (list, tuple)):       # an array of ports (``In(...).array(P)``)
                    for t, v in zip(target, value, strict=True):
                        ctx.set(t, v)
                else:
                    ctx.set(target, value)
            trace.append({name: py(ctx.get(port)) for name, port in probes.items()})
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return trace


def valid_cycles(trace, name):
    return [n for n, row in enumerate(trace) if row[name]]


# ---------------------------------------------------------------------------------------------------
# DenseAddressGen

@pytest.mark.parametrize("P", [1, 2, 8])
@pytest.mark.parametrize("pw", [0, 3])
def test_address_generator_addresses_and_timing(P, pw):
    rng = random.Random(100 * P + pw)
    layers, wbase, sbase = [], 0, 0
    for _ in range(3):
        n_in, n_out = rng.randint(1, 12), rng.randint(1, 3 * P + 1)
        G = -(-n_out // P)
        layers.append(LayerHW(n_in, n_out, G, n_out - (G - 1) * P, wbase, sbase, True))
        wbase, sbase = wbase + G * n_in, sbase + G
    zero = wbase                                          # the weight memory's last word, all zeros
    ibits = max(l.n_in for l in layers).bit_length()
    gbits = max(l.groups for l in layers).bit_length()
    evl = event_layout(ibits, gbits, pw)
    agen = DenseAddressGen(event_layout=evl, n_in_bits=ibits, waddr_bits=(zero + 1).bit_length(),
                           saddr_bits=max(1, (sbase - 1).bit_length()), layer_bits=2, payload_bits=pw,
                           zero_word=zero)
    assert agen.LATENCY == ADDRESS_STAGE                  # the part's stated latency is golden.perf's

    def garbage_event():
        return {"index": rng.randrange(1 << ibits), "payload": rng.randrange(1 << max(1, pw)),
                "group": rng.randrange(1 << gbits), "first": rng.randrange(2), "last": rng.randrange(2),
                "null": rng.randrange(2)}

    # phases as the reader makes them: layers in any order (steps repeat them), every group of the
    # layer replays the same source events in order, a group without events gets one null event
    frames, fires, expect = [], [], []
    for li in [0, 1, 2, 1, 0, 2]:
        lh = layers[li]
        src = sorted(rng.sample(range(lh.n_in), rng.choice([0, 1, lh.n_in, rng.randint(0, lh.n_in)])))
        for g in range(lh.groups):
            evs = [(i, 0) for i in src] or [(0, 1)]
            for k, (i, null) in enumerate(evs):
                for _ in range(rng.choice([0, 0, 0, 1, 3])):          # bubbles (stcb's group spacing)
                    frames.append({"events.valid": 0, "events.payload": garbage_event(),
                                   "layer": rng.randrange(4), "wbase": rng.randrange(zero + 1),
                                   "n_in": rng.randrange(1 << ibits), "sbase": rng.randrange(max(1, sbase))})
                pl = pick(rng, 0, (1 << pw) - 1) if pw else 0
                ev = {"index": i, "payload": pl, "group": g, "first": int(k == 0), "last": int(k == len(evs) - 1),
                      "null": null}
                fires.append(len(frames))
                expect.append({"grp": (k == 0, lh.sbase + g),
                               "op": {"waddr": zero if null else lh.wbase + g * lh.n_in + i, "group": g, "layer": li,
                                      "payload": pl if pw else 0, "first": ev["first"], "last": ev["last"],
                                      "null": null}})
                frames.append({"events.valid": 1, "events.payload": ev, "layer": li, "wbase": lh.wbase,
                               "n_in": lh.n_in, "sbase": lh.sbase})
    frames += [{"events.valid": 0, "events.payload": garbage_event()} for _ in range(4)]
    trace = play(agen, frames, {"ready": agen.events.ready, "grp_rd": agen.grp_rd, "grp_addr": agen.grp_addr,
                                "op_valid": agen.op_valid, "op": agen.op})

    assert all(row["ready"] for row in trace)                        # the reader is never held
    # the group's words are read in the cycle of its first event, and only then
    assert valid_cycles(trace, "grp_rd") == [c for c, e in zip(fires, expect) if e["grp"][0]]
    for c, e in zip(fires, expect):
        if e["grp"][0]:
            assert trace[c]["grp_addr"] == e["grp"][1], c
    # each event's op ADDRESS_STAGE cycles later, nothing in between
    assert valid_cycles(trace, "op_valid") == [c + ADDRESS_STAGE for c in fires]
    for c, e in zip(fires, expect):
        got = dict(trace[c + ADDRESS_STAGE]["op"])
        if not pw:
            got["payload"] = 0                                       # a 1-bit placeholder field
        assert got == e["op"], c


# ---------------------------------------------------------------------------------------------------
# WeightFetch

@pytest.mark.parametrize("P", [1, 2, 8])
@pytest.mark.parametrize("coding, encoding", [("rate", "rate"), ("rate", "direct"), ("tsc", "tsc")])
def test_weight_fetch_terms_and_latency(P, coding, encoding):
    rng = random.Random(f"fetch {P} {coding} {encoding}")
    wb = rng.choice([2, 5, 8])
    direct, tsc = encoding == "direct", coding == "tsc"
    xbits = 4 if direct else 0                            # direct input values: unsigned xbits
    pw = xbits + 2 if direct else 3                       # the payload may be wider (stcb trains): low bits
    lo, hi = -(1 << (wb - 1)), (1 << (wb - 1)) - 1
    n_words = rng.randint(3, 20)
    words = [[pick(rng, lo, hi) for _ in range(P)] for _ in range(n_words)] + [[0] * P]     # + the zero word
    init = [sum((w & ((1 << wb) - 1)) << (p * wb) for p, w in enumerate(ws)) for ws in words]
    opl = op_layout(waddr_bits=(len(words) - 1).bit_length() or 1, group_bits=3, layer_bits=2, payload_bits=pw)
    fetch = WeightFetch(op_layout=opl, lanes=P, weight_bits=wb, depth=len(words), init=init,
                        multiply_bits=xbits, negates=tsc)
    latency = perf.MEM_READ_LATENCY + perf.term_stage(coding, encoding)
    assert fetch.latency == latency

    def rand_op():
        return {"waddr": rng.randrange(len(words)), "group": rng.randrange(8), "layer": rng.randrange(4),
                "payload": pick(rng, 0, (1 << pw) - 1), "first": rng.randrange(2), "last": rng.randrange(2),
                "null": rng.randrange(2)}

    frames, ops = [], []
    # phases: scale (direct: layer 0) and negate (tsc: steps after 0) are phase registers, held from
    # a phase's first op until its last has left; both values of each appear
    for phase in range(4):
        scale, negate = phase % 2, (phase // 2 + phase) % 2
        for _ in range(12):
            op, valid = rand_op(), rng.random() < 0.75
            if valid:
                ops.append((len(frames), op, scale, negate))
            frames.append({"op_valid": int(valid), "op": op, "scale": scale, "negate": negate})
        for _ in range(latency + rng.randint(0, 2)):
            frames.append({"op_valid": 0, "op": rand_op(), "scale": scale, "negate": negate})
        frames[-1].update({"scale": rng.randrange(2), "negate": rng.randrange(2)})   # between phases
    trace = play(fetch, frames, {"out_valid": fetch.out_valid, "out_op": fetch.out_op, "terms": fetch.terms,
                                 "next_valid": fetch.next_valid, "next_first": fetch.next_first})

    assert valid_cycles(trace, "out_valid") == [c + latency for c, *_ in ops]
    assert valid_cycles(trace, "next_valid") == [c + latency - 1 for c, *_ in ops]
    assert valid_cycles(trace, "next_first") == [c + latency - 1 for c, op, *_ in ops if op["first"]]
    for c, op, scale, negate in ops:
        row = trace[c + latency]
        assert row["out_op"] == op
        x = op["payload"] & ((1 << xbits) - 1)
        want = [w * (x if scale else 1) if direct else -w if (tsc and negate) else w for w in words[op["waddr"]]]
        assert row["terms"] == want, (c, op, scale, negate)


# ---------------------------------------------------------------------------------------------------
# IfUnit and TscUnit

N_OPS = 5             # most ops per group in these tests


def leak_reference(v, leak):
    """docs/spec.md section 2: V <- (V * num) >> shift, a floor (Python's >> on ints); None: no leak."""
    return v if leak is None else (v * leak[0]) >> leak[1]


def if_reference(t0, fires, real, st, prm, sums, counts, zero=0, leak=None):
    """docs/spec.md section 2, IF layer: V <- leak(V) (leaky layers, step 0 too: on v_init); V += b +
    sum(W s); s = V >= theta; V -= theta * s (reset "subtract") or V = 0 where s (reset "zero")."""
    out, mask = [], 0
    for p, (s, r, total) in enumerate(zip(st, prm, sums)):
        v = leak_reference(r["v_init"] if t0 else s["v"], leak) + r["bias"] + total
        spike = int(bool(fires) and p < real and v >= r["thr"])
        v = 0 if spike and zero else v - r["thr"] * spike
        lane = {"v": v}
        if counts:
            lane["cnt"] = (0 if t0 else s["cnt"]) + spike
        out.append(lane)
        mask |= spike << p
    return out, mask


def tsc_reference(t0, st, prm, sums):
    """docs/spec.md section 2, tsc: C = 0, V = b at the window's start; each step C += sum(+-W); V += C."""
    out = []
    for s, r, total in zip(st, prm, sums):
        c_old, v_old = (0, r["bias"]) if t0 else (s["c"], s["v"])
        c = c_old + total
        out.append({"v": v_old + c, "c": c})
    return out, 0


# (num, shift) of leaky phases: the identity, none left, floors of negative V (shift 16 leaves 0 or -1), and
# num = 2**shift - 1 at the widest num the unit takes (leak_bits = 4)
LEAKS = [(3, 2), (0, 0), (15, 4), (1, 0), (5, 16), (1, 1), (13, 5), (8, 3)]


def unit_case(kind, P, base_delay, counts, seed, leak_bits=0):
    """A rate (IfUnit) or tsc (TscUnit) unit driven like hw/core.py drives it; returns the trace and
    the expected updates {cycle: (group, state lanes, mask)}. With ``leak_bits`` the IfUnit has its leak
    inputs and each phase a leak of :data:`LEAKS`."""
    rng = random.Random(seed)
    wb = rng.choice([3, 5])
    tlo, thi = -(1 << (wb - 1)), 1 << (wb - 1)           # weights, and a negated most negative weight
    smax = N_OPS * thi
    B, thmax, vmax, cmax = 1 << wb, 1 << (wb + 1), 3 << wb, 2 * smax
    if kind == "if":
        vlo, vhi = -vmax - B - smax, vmax + B + smax                # every V the update can produce
        vbits = sbits(vlo, vhi)
        acc_bits = sbits(vlo - thmax, vhi)                          # V + b + sum - theta
        cbits, cnt_bits = 0, 3 if counts else 0
    else:
        cbits = sbits(-cmax - smax, cmax + smax)
        vbits = sbits(-vmax - cmax - 2 * smax, vmax + cmax + 2 * smax)
        acc_bits, cnt_bits = vbits, 0
    pbits = vbits + 1
    state_lane, param_lane = state_lane_layout(vbits, cbits, cnt_bits), param_lane_layout(pbits)
    state_layout, param_layout = data.ArrayLayout(state_lane, P), data.ArrayLayout(param_lane, P)
    term_layout = data.ArrayLayout(signed(wb + 1), P)
    common = dict(lanes=P, group_bits=3, term_layout=term_layout, state_layout=state_layout,
                  param_layout=param_layout, acc_bits=acc_bits, base_delay=base_delay)
    unit = IfUnit(counts=counts, leak_bits=leak_bits, **common) if kind == "if" else TscUnit(**common)
    assert unit.latency == perf.UPDATE_STAGES

    def rand_state():
        lanes = []
        for _ in range(P):
            lane = {"v": pick(rng, -vmax, vmax)}
            if cbits:
                lane["c"] = pick(rng, -cmax, cmax)
            if cnt_bits:
                lane["cnt"] = pick(rng, 0, (1 << cnt_bits) - 2)      # room for this step's spike
            lanes.append(lane)
        return lanes

    def rand_params():
        lanes = []
        for _ in range(P):
            bias, thr = pick(rng, -B, B), pick(rng, 1, thmax)
            lanes.append({"bias": bias, "thr": thr, "v_init": pick(rng, -vmax, vmax), "bmt": bias - thr})
        return lanes

    def garbage():
        return {"op_valid": 0, "first": rng.randrange(2), "last": rng.randrange(2), "next_first": 0,
                "group": rng.randrange(8), "terms": [rng.randint(tlo, thi) for _ in range(P)],
                "state": rand_state(), "params": rand_params(), "t0": rng.randrange(2),
                "fires": rng.randrange(2), "zero_reset": rng.randrange(2), "real_lanes": rng.randint(0, P),
                **({"leak_num": rng.randrange(1 << leak_bits), "leak_shift": rng.randrange(17)} if leak_bits else {})}

    plan, expect = [], {}
    c = base_delay + 1
    # (t0, fires, zero reset): a layer resets by subtraction or to zero
    phases = [(1, 1, 0), (0, 1, 1), (0, 0, 0), (1, 0, 1), (0, 1, 0), (1, 1, 1)] if kind == "if" else \
        [(1, 1, 0), (0, 1, 0), (0, 0, 0), (1, 1, 0)]
    if leak_bits:                             # every leak at t0 (on v_init) and after (on the state read)
        phases = [(t0, 1, zero) for t0 in (1, 0) for zero in (0, 1)] * 2 + [(0, 0, 0), (1, 0, 0)]
    for ph, (t0, fires, zero) in enumerate(phases):
        lk = LEAKS[ph % len(LEAKS)] if leak_bits else None
        G = rng.randint(1, 4)
        n = rng.choice([1, 1, 2, N_OPS, rng.randint(1, N_OPS)])
        null = rng.random() < 0.2                                  # no input event: one null op per group
        start = c - base_delay
        for g in range(G):
            real = P if g < G - 1 else rng.randint(1, P)
            terms = [[0] * P] if null else [[pick(rng, tlo, thi) for _ in range(P)] for _ in range(n)]
            st, prm = rand_state(), rand_params()
            sums = [sum(op[p] for op in terms) for p in range(P)]
            if kind == "if":
                for p in range(P):                                 # V' == theta exactly: the >= edge
                    v = leak_reference(prm[p]["v_init"] if t0 else st[p]["v"], lk) + prm[p]["bias"] + sums[p]
                    if rng.random() < 0.3 and 1 <= v <= thmax:
                        prm[p]["thr"], prm[p]["bmt"] = v, prm[p]["bias"] - v
                new, mask = if_reference(t0, fires, real, st, prm, sums, counts, zero, lk)
            else:
                new, mask = tsc_reference(t0, st, prm, sums)
            f = c                                                  # the group's first op
            plan.append((f - base_delay, {"state": st, "params": prm}))
            plan.append((f - 1, {"next_first": 1}))
            for k, op in enumerate(terms):
                plan.append((f + k, {"op_valid": 1, "first": int(k == 0), "last": int(k == len(terms) - 1),
                                     "group": g, "terms": op, "real_lanes": real}))
            last = f + len(terms) - 1
            expect[last + perf.UPDATE_STAGES] = (g, new, mask)
            c = last + 1                                           # the next group's ops follow at once
        end = c - 1 + perf.UPDATE_STAGES
        phase_regs = {"t0": t0, "fires": fires, "zero_reset": zero}
        if lk is not None:
            phase_regs.update(leak_num=lk[0], leak_shift=lk[1])
        plan += [(k, phase_regs) for k in range(start, end + 1)]                          # phase registers
        c += base_delay + perf.UPDATE_STAGES + rng.randint(0, 2)   # the phase drains before the next
    frames = [garbage() for _ in range(c + 3)]
    for k, settings in plan:
        frames[k].update(settings)
    trace = play(unit, frames, {"valid": unit.upd_valid, "group": unit.upd_group, "state": unit.upd_state,
                                "mask": unit.upd_mask})
    return trace, expect


def check_updates(trace, expect):
    assert valid_cycles(trace, "valid") == sorted(expect)
    for cyc, (g, new, mask) in expect.items():
        row = trace[cyc]
        assert (row["group"], row["state"], row["mask"]) == (g, new, mask), cyc


@pytest.mark.parametrize("P", [1, 2, 8])
@pytest.mark.parametrize("term_stage", [0, 1])
def test_if_unit_fire_reset_count_and_timing(P, term_stage):
    # base delay as hw/core.py sets it: the group's words come from the state read of its first event
    base_delay = perf.ACCUMULATE_STAGE - perf.MEM_READ_LATENCY + term_stage
    trace, expect = unit_case("if", P, base_delay, counts=True, seed=10 * P + term_stage)
    check_updates(trace, expect)


@pytest.mark.parametrize("P", [1, 4])
@pytest.mark.parametrize("term_stage", [0, 1])
def test_if_unit_leak_before_the_accumulators(P, term_stage):
    # without a term stage the leak shares the cycle that loads the accumulators; with one it has a
    # register of its own; either way the update comes UPDATE_STAGES after the last op, as without a leak
    base_delay = perf.ACCUMULATE_STAGE - perf.MEM_READ_LATENCY + term_stage
    trace, expect = unit_case("if", P, base_delay, counts=True, seed=30 + 10 * P + term_stage, leak_bits=4)
    check_updates(trace, expect)


def test_leak_reference_floors_negative_membranes():
    # the reference itself: an arithmetic shift is floor, not truncation toward zero
    assert [leak_reference(v, (3, 2)) for v in (-5, -4, -1, 0, 1, 5)] == [-4, -3, -1, 0, 0, 3]
    assert leak_reference(-1, (5, 16)) == -1 and leak_reference(7, None) == 7


def test_if_unit_membrane_readout_has_no_count():
    trace, expect = unit_case("if", 4, perf.ACCUMULATE_STAGE - perf.MEM_READ_LATENCY, counts=False, seed=77)
    check_updates(trace, expect)


@pytest.mark.parametrize("P", [1, 2, 8])
def test_tsc_unit_current_and_membrane(P):
    base_delay = perf.ACCUMULATE_STAGE - perf.MEM_READ_LATENCY + perf.term_stage("tsc", "tsc")
    trace, expect = unit_case("tsc", P, base_delay, counts=False, seed=20 + P)
    check_updates(trace, expect)


# ---------------------------------------------------------------------------------------------------
# SlotAccumulator

@pytest.mark.parametrize("P, T, direct, load", [(1, 4, False, False), (2, 3, True, True), (8, 5, False, True),
                                                (2, 1, False, False), (2, 1, False, True)])
def test_slot_accumulator_slots_and_handoff(P, T, direct, load):
    """Dense groups' slots and parameters leave on the handoff; with ``load``, swept words (their slots and
    parameter words, loaded between groups, back to back too) leave on the same register a cycle later."""
    rng = random.Random(1000 + 10 * P + T + 5 * load)
    wb, pbits = 4, 7
    tlo, thi = -(1 << (wb - 1)), (1 << (wb - 1)) - 1
    slot_bits = sbits(N_OPS * tlo, N_OPS * thi)                    # exactly the worst slot
    base_delay = perf.ACCUMULATE_STAGE - perf.MEM_READ_LATENCY + int(direct)
    param_layout = data.ArrayLayout(param_lane_layout(pbits), P)
    acc = SlotAccumulator(lanes=P, T=T, group_bits=3, term_layout=data.ArrayLayout(signed(wb + 1), P),
                          param_layout=param_layout, slot_bits=slot_bits, base_delay=base_delay, load=load)
    hand = handoff_cycles(T, 1)
    slo, shi = -(1 << (slot_bits - 1)), (1 << (slot_bits - 1)) - 1

    def rand_slots():
        return [[pick(rng, slo, shi) for _ in range(T)] for _ in range(P)]

    def rand_params():
        plo, phi = -(1 << (pbits - 2)), (1 << (pbits - 2)) - 1
        return [{"bias": pick(rng, plo, phi), "thr": pick(rng, 1, phi), "v_init": pick(rng, plo, phi),
                 "bmt": pick(rng, plo, phi)} for _ in range(P)]

    def garbage():
        loads = {"load_valid": 0, "load_slots": rand_slots(), "load_params": rand_params()} if load else {}
        return {"op_valid": 0, "first": rng.randrange(2), "last": rng.randrange(2), "next_first": 0,
                "group": rng.randrange(8), "terms": [rng.randint(tlo, thi) for _ in range(P)],
                "train": rng.randrange(1 << T), "params": rand_params(), **loads}

    plan, expect = [], {}
    c = base_delay + 1
    for _ in range(4):                                             # phases
        n = rng.choice([1, 2, N_OPS, rng.randint(1, N_OPS)])
        null = rng.random() < 0.2
        for g in range(rng.randint(1, 4)):
            ops = [([0] * P, rng.randrange(1 << T))] if null else \
                [([pick(rng, tlo, thi) for _ in range(P)], (1 << T) - 1 if direct else rng.randrange(1 << T))
                 for _ in range(n)]
            prm = rand_params()
            f = c
            plan.append((f - base_delay, {"params": prm}))
            plan.append((f - 1, {"next_first": 1}))
            for k, (terms, train) in enumerate(ops):
                plan.append((f + k, {"op_valid": 1, "first": int(k == 0), "last": int(k == len(ops) - 1),
                                     "group": g, "terms": terms, "train": train}))
            slots = [[sum(terms[p] for terms, train in ops if train >> t & 1) for t in range(T)] for p in range(P)]
            last = f + len(ops) - 1
            expect[last + hand] = (g, slots, prm)
            c = last + 1 + rng.choice([0, 0, 1, 3])                # stcb: the reader may space groups
        c += base_delay + hand + rng.randint(0, 2)
        if load:                                                   # a sweep's words, between the phases
            for _ in range(rng.randint(1, 3)):
                slots, prm = rand_slots(), rand_params()
                plan.append((c, {"load_valid": 1, "load_slots": slots, "load_params": prm}))
                expect[c + 1] = (None, slots, prm)
                c += rng.choice([1, 1, 2])
            c += 2
    frames = [garbage() for _ in range(c + 3)]
    for k, settings in plan:
        frames[k].update(settings)
    trace = play(acc, frames, {"valid": acc.hand_valid, "group": acc.hand_group, "slots": acc.hand_slots,
                               "params": acc.hand_params})
    assert valid_cycles(trace, "valid") == sorted(expect)
    for cyc, (g, slots, prm) in expect.items():
        row = trace[cyc]
        assert (row["group"] if g is not None else None, row["slots"], row["params"]) == (g, slots, prm), cyc
    assert not load or any(g is None for g, _, _ in expect.values())


# ---------------------------------------------------------------------------------------------------
# SlotUnit

def slot_reference(slots, prm, h, T, fires, real, zero=0, leak=None):
    """docs/spec.md section 2, stcb: I[t] = b + sum(W s[t]); I'[t] = sum_k h[k] I[t - k] (I[t < 0] = 0);
    V from v_init: V <- leak(V) (leaky layers, slot 0 too); V += I'; s = V >= theta; V -= theta * s (reset
    "zero": V = 0 where s). Returns V, the trains and the counts."""
    vs, trains, counts = [], [], []
    for p in range(len(slots)):
        cur = [prm[p]["bias"] + slots[p][t] for t in range(T)]
        v, train = prm[p]["v_init"], []
        for t in range(T):
            v = leak_reference(v, leak)
            v += sum(h[k] * cur[t - k] for k in range(len(h)) if t - k >= 0)
            spike = int(bool(fires) and p < real and v >= prm[p]["thr"])
            v = 0 if spike and zero else v - prm[p]["thr"] * spike
            train.append(spike)
        vs.append(v)
        trains.append(train)
        counts.append(sum(train))
    return vs, trains, counts


@pytest.mark.parametrize("P, T, kernels, counts, leak_bits", [
    (1, 4, [[1]], True, 0),                   # the identity kernel: no multiplier
    (2, 3, [[1], [-2]], False, 0),            # one tap, not the identity
    (8, 4, [[1, -1, 2], [3]], True, 0),       # three taps; the second layer's kernel is shorter
    (2, 5, [[-8, 7], [1]], False, 0),         # the most negative and most positive 4-bit taps
    (2, 1, [[1]], True, 0),                   # a single slot
    (2, 6, [[1]], True, 4),                   # leaky layers: a slot per cycle, the leak in the IF loop
    (4, 4, [[1, -1, 2], [-2]], False, 4),     # leaky, with kernels: slots several cycles apart
    (1, 1, [[1]], True, 4),                   # leaky, a single slot: the leak of v_init only
])
def test_slot_unit_kernel_if_trains_and_timing(P, T, kernels, counts, leak_bits):
    rng = random.Random(f"slot unit {P} {T} {counts} {leak_bits}")
    wb = 4
    taps = max(len(h) for h in kernels)
    hsum = max(sum(abs(x) for x in h) for h in kernels)
    smax, B, thmax, vmax = 1 << (wb + 1), 1 << wb, 1 << (wb + 1), 1 << (wb + 2)
    big = (smax + B) * hsum                                         # |I'|
    W = sbits(-vmax - T * big - thmax, vmax + T * big)
    cnt_bits = T.bit_length() if counts else 0
    state_layout = data.ArrayLayout(state_lane_layout(W, 0, cnt_bits), P)
    # the slots and each parameter field exactly as wide as their values (CoreGeometry.slot_bits and
    # param_bits): the unit sign-extends every one of them to W
    param_layout = data.ArrayLayout(param_lane_layout({"bias": sbits(-B, B), "thr": sbits(1, thmax),
                                                       "v_init": sbits(-vmax, vmax),
                                                       "bmt": sbits(-B - thmax, B - 1)}), P)
    slots_layout = data.ArrayLayout(data.ArrayLayout(signed(sbits(-smax, smax)), T), P)
    unit = SlotUnit(lanes=P, T=T, taps=taps, kernels=kernels, group_bits=3, slots_layout=slots_layout,
                    param_layout=param_layout, state_layout=state_layout, acc_bits=W, layer_bits=1, tap_bits=wb + 1,
                    leak_bits=leak_bits)
    spacing = perf.stcb_group_cycles(T, taps)                       # the reader's group spacing
    latency = perf.stcb_group_cycles(T, taps) + perf.SLOT_PIPELINE
    assert unit.latency == latency

    def rand_params():
        out = []
        for _ in range(P):
            bias, thr = pick(rng, -B, B), pick(rng, 1, thmax)
            out.append({"bias": bias, "thr": thr, "v_init": pick(rng, -vmax, vmax), "bmt": bias - thr})
        return out

    def rand_slots():
        return [[pick(rng, -smax, smax) for _ in range(T)] for _ in range(P)]

    def garbage():
        return {"hand_valid": 0, "hand_group": rng.randrange(8), "hand_slots": rand_slots(),
                "hand_params": rand_params(), "layer": rng.randrange(2), "fires": rng.randrange(2),
                "zero_reset": rng.randrange(2), "real_lanes": rng.randint(0, P),
                **({"leak_num": rng.randrange(1 << leak_bits), "leak_shift": rng.randrange(17)} if leak_bits else {})}

    plan, expect = [], []                     # expect: (handoff cycle, group, V, trains, counts)
    c = 1
    phases = [(0, 1, 0), (1, 1, 1), (0, 0, 0), (1, 1, 0), (0, 1, 1)]                   # zero: reset "zero"
    if leak_bits:
        phases += [(0, 1, 0), (1, 1, 1), (0, 1, 1)]
    for ph, (li, fires, zero) in enumerate(phases):
        li %= len(kernels)
        lk = LEAKS[ph % len(LEAKS)] if leak_bits else None
        start = c
        G = rng.randint(1, 3)
        for g in range(G):
            real = P if g < G - 1 else rng.randint(1, P)
            slots, prm = rand_slots(), rand_params()
            for p in range(P):                        # V == theta exactly at slot 0: the >= edge
                if rng.random() < 0.3:
                    target = prm[p]["thr"] - kernels[li][0] * (prm[p]["bias"] + slots[p][0])   # leak(v_init)
                    hits = [v for v in range(-vmax, vmax + 1) if leak_reference(v, lk) == target]
                    if hits:
                        prm[p]["v_init"] = rng.choice(hits)
            plan.append((c, {"hand_valid": 1, "hand_group": g, "hand_slots": slots, "hand_params": prm,
                             "real_lanes": real}))
            expect.append((c, g, *slot_reference(slots, prm, kernels[li], T, fires, real, zero, lk)))
            c += spacing + rng.choice([0, 0, 1, 3])
        end = expect[-1][0] + latency + 1
        phase_regs = {"layer": li, "fires": fires, "zero_reset": zero}
        if lk is not None:
            phase_regs.update(leak_num=lk[0], leak_shift=lk[1])
        plan += [(k, phase_regs) for k in range(start, end + 1)]                          # phase registers
        c = end + 1 + rng.randint(0, 2)                                 # the phase drains first
    frames = [garbage() for _ in range(c + 3)]
    for k, settings in plan:
        frames[k].update(settings)
    trace = play(unit, frames, {"valid": unit.upd_valid, "group": unit.upd_group, "state": unit.upd_state,
                                "mask": unit.upd_mask, "inc": unit.inc_spikes})

    assert valid_cycles(trace, "valid") == [h + latency for h, *_ in expect]
    prev_end = -1
    for h, g, vs, trains, cnts in expect:
        row = trace[h + latency]
        want_state = [{"v": v, **({"cnt": n} if counts else {})} for v, n in zip(vs, cnts)]
        want_mask = sum(bit << (p * T + t) for p, tr in enumerate(trains) for t, bit in enumerate(tr))
        assert (row["group"], row["state"], row["mask"]) == (g, want_state, want_mask), h
        # the spike counter's increments: the group's spikes slot by slot, each a cycle after its fire bit
        # is registered, so all of them by the update's cycle and the last slot's exactly then
        end = h + latency
        assert sum(r["inc"] for r in trace[prev_end + 1:end + 1]) == sum(cnts), h
        assert trace[end]["inc"] == sum(tr[T - 1] for tr in trains), h
        prev_end = end
    assert all(r["inc"] == 0 for r in trace[prev_end + 1:])


# ---------------------------------------------------------------------------------------------------
# Argmax

def argmax_reference(cands, counts):
    """Ties to the lowest index: the first maximum of (count, V) (count readout) or V (membrane)."""
    best = None
    for idx, v, n in sorted(cands):
        key = (n, v) if counts else v
        if best is None or key > best[0]:
            best = (key, idx)
    return best[1]


@pytest.mark.parametrize("P, n_out, counts", [
    (1, 3, True), (2, 5, True), (2, 2, False), (8, 10, False), (8, 13, True), (8, 8, True), (4, 7, False)])
def test_argmax_ties_padding_and_latency(P, n_out, counts):
    rng = random.Random(500 + 10 * P + n_out)
    vb, cb = 5, 2 if counts else 0
    G = -(-n_out // P)
    last_lanes = n_out - (G - 1) * P
    cls_bits = max(1, (n_out - 1).bit_length())
    am = Argmax(lanes=P, v_bits=vb, cnt_bits=cb, group_bits=max(1, G.bit_length()), cls_bits=cls_bits)
    F = perf.finish_cycles(P)
    assert am.latency == F
    vlo, vhi, cmax = -(1 << (vb - 1)), (1 << (vb - 1)) - 1, (1 << cb) - 1

    def garbage():
        f = {"clear": 0, "in_valid": 0, "in_group": rng.randrange(1 << max(1, G.bit_length())),
             "in_v": [rng.randint(vlo, vhi) for _ in range(P)], "real_lanes": rng.randint(0, P)}
        if cb:
            f["in_cnt"] = [rng.randint(0, cmax) for _ in range(P)]
        return f

    plan, samples = [], []                    # samples: [(update cycle, [(index, v, cnt) of real lanes])]
    c = 0
    for s in range(6):
        plan.append((c, {"clear": 1}))                                   # a new sample
        c += 1 + rng.choice([0, 0, 2])
        mode = s % 3                          # 0: anything, 1: all negative, 2: few values (many ties)
        ups = []
        for g in range(G):
            real = P if g < G - 1 else last_lanes
            if mode == 0:
                vs = [pick(rng, vlo, vhi) for _ in range(P)]
            elif mode == 1:
                vs = [pick(rng, vlo, -1) for _ in range(P)]
            else:
                vs = [rng.choice([vlo, -1, 0, vhi]) for _ in range(P)]
            ns = [rng.choice([0, cmax]) if mode == 2 else pick(rng, 0, cmax) for _ in range(P)] if cb else [0] * P
            for p in range(real, P):                                      # padding lanes look like winners
                vs[p], ns[p] = vhi, cmax
            f = {"in_valid": 1, "in_group": g, "in_v": vs, "real_lanes": real}
            if cb:
                f["in_cnt"] = ns
            plan.append((c, f))
            ups.append((c, [(g * P + p, vs[p], ns[p]) for p in range(real)]))
            c += 1 + rng.choice([0, 0, 0, 1, 2])                          # updates back to back or spaced
        samples.append(ups)
        c += F + rng.randint(0, 2)                                        # the result is read before a clear
    frames = [garbage() for _ in range(c + 2)]
    for k, settings in plan:
        frames[k].update(settings)
    trace = play(am, frames, {"best": am.best})

    checked = 0
    for si, ups in enumerate(samples):
        stop = samples[si + 1][0][0] + F if si + 1 < len(samples) else len(trace)
        for n in range(ups[0][0] + F, stop):
            # every update matured: final exactly F cycles after it, not before
            seen = [cand for cu, cands in ups if cu + F <= n for cand in cands]
            assert trace[n]["best"] == argmax_reference(seen, counts), (si, n)
            checked += 1
    assert checked > 0
