"""The core's control and I/O parts, each alone, in the Amaranth simulator.

Every part is driven the way hw/core.py drives it, and its outputs are compared cycle by cycle with a
plain-Python reference written here; every latency comes from golden.perf (never a bare number).
Lane counts P = 1, 2, 4, 8 with n not a multiple of P, random T and inputs that always hold 0 and
input_max.

- InputLoader: every accepted beat (random ``valid`` and ``loading``) is written to the right encoder
  lane (rate/stcb: x and x - input_max; tsc: the countdown x*Q + input_max//2) exactly
  ``perf.LOAD_DRAIN`` cycles after it was taken; direct input becomes one entry per word with a
  non-zero value (group, mask, payload), the last word flushed by the sample's last beat; ``ready``
  follows ``loading``; ``done`` on each sample's last beat. ``err_range`` rises after a value above
  input_max (not input_max itself), ``err_protocol`` after ``last`` on a wrong beat or missing on the
  last one, and both stay set.
- RateEncoder: over two samples, the spike masks, entries and counter increments of every word and
  step equal section 2's encoder (u += x, spike when u >= input_max, subtract; u restarts at step 0),
  each word's row ``perf.ENC_DRAIN`` cycles after it was issued, one word issued per cycle from
  ``start``, nothing emitted in any other cycle; the first pass starts the cycle after the last lane
  write (the sequencer's LOAD_DRAIN contract).
- TrainEncoder: the P whole T-bit trains of every word (monitor bits p*T + t, entry payloads, masks,
  increments) equal the same encoder run for T steps, ``perf.train_encoder_drain(T)`` after issue.
- TscGenerator: from the input's countdowns and from a previous layer's V and θ (read through a
  Python model of the GroupStore with ``perf.MEM_READ_LATENCY``), every source neuron sends ON at
  t = 0 and OFF at t = clamp(floor(V/θ), 0, Q) and nothing else, ``perf.GEN_DRAIN`` after issue (the event count a
  cycle later: it is formed from the registered mask); the
  countdowns written back follow section 3's rule, to the right addresses, keeping the current C.
- Readout: exactly n_out beats, in order, with index, membrane, count, prediction and ``last`` right
  (the state word read through the same store model), under random ``ready``: a beat waiting on
  ``ready`` never changes, none is lost or sent twice; ``done`` with the last beat only; exactly
  ``READ_CYCLES_PER_GROUP`` counted read cycles per group; without stalls beat i leaves
  ``1 + (i//P + 1)*READ_CYCLES_PER_GROUP + i`` cycles after ``start``; a second readout restarts.
- Counters: each snapshot is the sum of exactly one sample's increments (those of the cycles after the
  previous ``sample_done`` up to and including its own, with increments forced in the cycles around
  every boundary and samples one cycle long), ``done`` is high exactly ``Counters.LATENCY + 1``
  cycles after ``sample_done``, ``cnt`` holds between snapshots and the live total restarts at zero.
- Sequencer: for rate, direct, stcb (rate and direct input) and tsc models the phase of every cycle,
  its layer and step, and the start pulses equal a Python walk of section 3's phase order with the
  fixed lengths of golden.perf, whatever the load, reader and readout take; without stalls one
  sample lasts exactly ``perf.count``'s cycles.
- GroupStore: ``state``/``params`` are the words at the address read ``perf.MEM_READ_LATENCY``
  cycles earlier, as they were in that cycle: a read in a write's own cycle returns the old word, a
  read ``perf.MIN_STATE_RAW_DISTANCE`` later the new one; every address holds its own word.
"""

import random

import numpy as np
import pytest
from amaranth import signed, unsigned
from amaranth.lib import data
from amaranth.sim import Simulator

from golden import Dense, Model, perf
from golden.model import signed_bits, unsigned_bits
from hw.config import CoreConfig
from hw.counters import Counters
from hw.descriptor import Kind, LayerTable, descriptor_words
from hw.encoders import InputLoader, RateEncoder, TrainEncoder, TscGenerator, enc_lane_layout
from hw.events import entry_layout
from hw.readout import Readout
from hw.sequencer import Phase, Sequencer
from hw.store import GroupStore, param_lane_layout, state_lane_layout

R = perf.READ_CYCLES_PER_GROUP


# ---------------------------------------------------------------------------------------------------
# helpers and plain-Python references

def simulate(dut, bench):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


class Clock:
    """Counts cycles and samples ``probe`` (the outputs, inputs already set) before every clock edge."""

    def __init__(self, probe):
        self.cycle, self.rows, self._probe = 0, [], probe

    async def tick(self, ctx):
        self.rows.append((self.cycle, self._probe(ctx)))
        await ctx.tick()
        self.cycle += 1


def rand_n(rng, P):
    """A neuron count that is not a multiple of P (P > 1)."""
    return P * rng.randint(0, 2) + rng.randint(1, P - 1) if P > 1 else rng.randint(1, 6)


def rand_inputs(rng, n, M, zero_prob=0.0):
    """Values in [0, M], always holding M and (n > 1) 0."""
    x = [0 if rng.random() < zero_prob else rng.randint(0, M) for _ in range(n)]
    pos = rng.sample(range(n), min(2, n))
    x[pos[0]] = M
    if len(pos) > 1:
        x[pos[1]] = 0
    return x


def words(values, P, pad=0):
    """Split per-neuron values into words of P lanes (the last one padded)."""
    G = perf.groups(len(values), P)
    return [list(values[g * P:(g + 1) * P]) + [pad] * ((g + 1) * P - len(values[:(g + 1) * P])) for g in range(G)]


def mask_of(bits):
    return sum(int(b) << p for p, b in enumerate(bits))


def rate_encode_ref(x, M, T):
    """docs/spec.md section 2: u = 0; each step u += x; spike when u >= input_max, then u -= input_max."""
    u, steps = [0] * len(x), []
    for _ in range(T):
        s = []
        for i, xi in enumerate(x):
            u[i] += xi
            s.append(int(u[i] >= M))
            u[i] -= M * s[-1]
        steps.append(s)
    return steps                          # steps[t][i]


def tsc_events_ref(V, theta, T):
    """docs/spec.md section 3: ON at t = 0 and OFF at t = q = clamp(floor(V/θ), 0, Q); q = 0 sends
    nothing. Returns events[t][i]."""
    Q = T - 1
    ev = [[0] * len(V) for _ in range(T)]
    for i, (v, th) in enumerate(zip(V, theta)):
        q = min(max(v // th, 0), Q)
        if q:
            ev[0][i] = ev[q][i] = 1
    return ev


def tsc_countdown_ref(R, th, t, Q):
    """One step of section 3's countdown: (event, new R)."""
    if t == 0:
        return (1, R - th) if R >= th else (0, -1)
    if R < 0:
        return 0, R
    if R < th or t == Q:
        return 1, -1
    return 0, R - th


class StoreModel:
    """The GroupStore's contract in plain Python: a read issued in cycle c delivers, in cycle
    c + MEM_READ_LATENCY, the word as it was in cycle c; a write lands at the end of its cycle."""

    def __init__(self, words, default):
        self.words, self._reads, self._default = dict(words), {}, default

    def output(self, cycle):
        return self._reads.get(cycle - perf.MEM_READ_LATENCY, self._default)

    def read(self, cycle, addr):
        self._reads[cycle] = self.words.get(addr, self._default)


# ---------------------------------------------------------------------------------------------------
# InputLoader

def make_loader(P, n, M, mode, T=1):
    xbits = unsigned_bits(M)
    gbits = max(1, perf.ceil_log2(perf.groups(n, P)))
    x_layout = data.StructLayout({"value": unsigned(xbits + 1), "last": unsigned(1)})
    value, entry = None, None
    if mode == "direct":
        entry = entry_layout(P, gbits, xbits)
    elif mode == "tsc":
        value = signed(signed_bits(-1 - M, M * (T - 1) + M // 2))
    else:
        value = enc_lane_layout(xbits, signed_bits(-M, (1 << xbits) - 1 - M))
    return InputLoader(x_layout=x_layout, lanes=P, n_in=n, input_max=M, mode=mode, value_shape=value,
                       group_bits=gbits, entry=entry, T=T)


def drive_loader(ld, mode, P, beats, rng, *, valid_prob=1.0, loading_prob=1.0):
    """Offer ``beats`` [(value, last)] in order under random ``valid`` and ``loading``; returns the cycle
    each beat was taken in and the sampled rows."""

    def probe(ctx):
        r = {k: ctx.get(getattr(ld, k)) for k in ("fired", "done", "err_range", "err_protocol")}
        r["ready"] = ctx.get(ld.x.ready)
        if mode == "direct":
            r.update(en=ctx.get(ld.ent_append), group=ctx.get(ld.ent.group), mask=ctx.get(ld.ent.mask),
                     payload=[ctx.get(ld.ent.payload[p]) for p in range(P)])
        else:
            r.update(en=ctx.get(ld.wr_en), group=ctx.get(ld.wr_group), lane=ctx.get(ld.wr_lane),
                     value=ctx.get(ld.wr_value) if mode == "tsc" else (ctx.get(ld.wr_value.x),
                                                                         ctx.get(ld.wr_value.xm)))
        return r

    clk, taken, offered = Clock(probe), [], []

    async def bench(ctx):
        k = 0
        while k < len(beats):
            valid, loading = rng.random() < valid_prob, rng.random() < loading_prob
            ctx.set(ld.loading, loading)
            ctx.set(ld.x.valid, valid)
            ctx.set(ld.x.payload, {"value": beats[k][0], "last": beats[k][1]})
            offered.append((clk.cycle, valid, loading))
            if valid and loading:
                taken.append(clk.cycle)
                k += 1
            await clk.tick(ctx)
        ctx.set(ld.x.valid, 0)
        ctx.set(ld.loading, 1)
        for _ in range(perf.LOAD_DRAIN + 2):
            offered.append((clk.cycle, 0, 1))
            await clk.tick(ctx)

    simulate(ld, bench)
    for (cyc, r), (_, valid, loading) in zip(clk.rows, offered):
        assert r["ready"] == loading and r["fired"] == (valid and loading), cyc
    return taken, clk.rows


@pytest.mark.parametrize("mode", ["rate", "tsc"])
@pytest.mark.parametrize("P, seed", [(1, 0), (2, 1), (8, 2), (4, 3)])
def test_loader_writes_each_lane_load_drain_after_its_beat(mode, P, seed):
    rng = random.Random(seed)
    n, M, T = rand_n(rng, P), rng.choice([1, 3, 6, 13]), rng.randint(2, 5)
    if mode == "tsc":
        T = min(T, M + 1)
    samples = [rand_inputs(rng, n, M) for _ in range(2)]
    beats = [(v, int(i == n - 1)) for x in samples for i, v in enumerate(x)]
    ld = make_loader(P, n, M, mode, T)
    taken, rows = drive_loader(ld, mode, P, beats, rng, valid_prob=0.7, loading_prob=0.8)
    expected = {}
    for k, (v, _) in enumerate(beats):
        i = k % n
        stored = v * (T - 1) + M // 2 if mode == "tsc" else (v, v - M)
        expected[taken[k] + perf.LOAD_DRAIN] = (i // P, i % P, stored)
    writes = {cyc: (r["group"], r["lane"], r["value"]) for cyc, r in rows if r["en"]}
    assert writes == expected
    assert [cyc for cyc, r in rows if r["done"]] == [taken[k] for k in range(len(beats)) if k % n == n - 1]
    assert not any(r["err_range"] or r["err_protocol"] for _, r in rows)


@pytest.mark.parametrize("P, seed", [(1, 0), (2, 1), (8, 2), (4, 3), (8, 4)])
def test_loader_direct_entries(P, seed):
    rng = random.Random(seed)
    n, M = rand_n(rng, P), rng.choice([1, 4, 9])
    # many zeros, so that whole words are zero (no entry) and masks are partial
    samples = [rand_inputs(rng, n, M, zero_prob=0.6) for _ in range(3)]
    if P > 1:
        samples[2][:P] = [0] * min(n, P)             # an all-zero word
    beats = [(v, int(i == n - 1)) for x in samples for i, v in enumerate(x)]
    ld = make_loader(P, n, M, "direct")
    taken, rows = drive_loader(ld, "direct", P, beats, rng, valid_prob=0.6)
    expected = {}
    for si, x in enumerate(samples):
        for g, w in enumerate(words(x, P)):
            if any(w):
                last = si * n + min(n, (g + 1) * P) - 1     # the word's last beat flushes it
                expected[taken[last] + perf.LOAD_DRAIN] = (g, mask_of(v != 0 for v in w), w)
    got = {cyc: (r["group"], r["mask"], r["payload"]) for cyc, r in rows if r["en"]}
    assert got == expected
    assert not any(r["err_range"] or r["err_protocol"] for _, r in rows)


@pytest.mark.parametrize("kind", ["range", "range_top", "last_early", "last_missing", "last_both"])
@pytest.mark.parametrize("P", [1, 2, 8])
def test_loader_error_flags_are_exact_and_sticky(kind, P):
    rng = random.Random(f"{kind}/{P}")
    M = 5
    n = max(rand_n(rng, P), 3)
    samples = [rand_inputs(rng, n, M) for _ in range(3)]
    beats = [[v, int(i == n - 1)] for x in samples for i, v in enumerate(x)]
    j = n + rng.randrange(n - 1)                     # a beat of the second sample, not its last
    flag = "err_range" if kind.startswith("range") else "err_protocol"
    if kind == "range":
        beats[j][0] = M + 1
    elif kind == "range_top":
        beats[j][0] = (1 << (unsigned_bits(M) + 1)) - 1
    elif kind == "last_early":
        beats[j][1] = 1
    elif kind == "last_missing":
        j = 2 * n - 1
        beats[j][1] = 0
    else:                                            # `last` one beat late: missing, then wrong
        j = 2 * n - 1
        beats[j][1], beats[j + 1][1] = 0, 1
    ld = make_loader(P, n, M, "rate")
    taken, rows = drive_loader(ld, "rate", P, [tuple(b) for b in beats], rng, valid_prob=0.8)
    other = "err_protocol" if flag == "err_range" else "err_range"
    # the flag rises the cycle after the faulty beat is taken and stays; the other never rises
    assert [cyc for cyc, r in rows if r[flag]] == list(range(taken[j] + 1, rows[-1][0] + 1))
    assert not any(r[other] for _, r in rows)


# ---------------------------------------------------------------------------------------------------
# RateEncoder and TrainEncoder

def enc_widths(M):
    xbits = unsigned_bits(M)
    return xbits, signed_bits(-M, (1 << xbits) - 1 - M)


def encoder_probe(enc, P, payload_lanes=0):
    def probe(ctx):
        r = {k: ctx.get(getattr(enc, k)) for k in ("issuing", "spk_valid", "spk_group", "spk_mask", "ent_append",
                                                   "inc_updates", "inc_spikes")}
        r.update(ent_group=ctx.get(enc.ent.group), ent_mask=ctx.get(enc.ent.mask))
        if payload_lanes:
            r["payload"] = [ctx.get(enc.ent.payload[p]) for p in range(payload_lanes)]
        return r
    return probe


async def load_lanes(ctx, clk, enc, P, values):
    """The loader's lane writes, one per cycle, in beat order."""
    for i, v in enumerate(values):
        ctx.set(enc.ld_en, 1)
        ctx.set(enc.ld_group, i // P)
        ctx.set(enc.ld_lane, i % P)
        ctx.set(enc.ld_value, v)
        await clk.tick(ctx)
    ctx.set(enc.ld_en, 0)


def check_rows(rows, expected, issue_cycles, *, payload=False, spike_delay=0):
    """``expected``: cycle -> (group, monitor mask, entry mask, updates, spikes[, payload]); the spike
    count's increment comes ``spike_delay`` cycles after the word's monitor beat."""
    spikes = {cyc + spike_delay: e[4] for cyc, e in expected.items()}
    for cyc, r in rows:
        assert r["issuing"] == (cyc in issue_cycles), f"cycle {cyc}"
        assert r["inc_spikes"] == spikes.get(cyc, 0), f"cycle {cyc}"
        if cyc in expected:
            g, smask, emask, upd = expected[cyc][:4]
            assert (r["spk_valid"], r["spk_group"], r["spk_mask"], r["inc_updates"]) == \
                (1, g, smask, upd), f"cycle {cyc}"
            assert r["ent_append"] == (emask != 0), f"cycle {cyc}"
            if emask:
                assert (r["ent_group"], r["ent_mask"]) == (g, emask), f"cycle {cyc}"
                if payload:
                    assert r["payload"] == expected[cyc][5], f"cycle {cyc}"
        else:
            assert (r["spk_valid"], r["ent_append"], r["inc_updates"]) == (0, 0, 0), f"cycle {cyc}"


@pytest.mark.parametrize("P, seed", [(1, 0), (2, 1), (8, 2), (4, 3), (8, 4), (2, 5)])
def test_rate_encoder_matches_section2_per_word_and_step(P, seed):
    rng = random.Random(seed)
    n, M, T = rand_n(rng, P), rng.choice([1, 2, 3, 5, 7, 12]), rng.randint(1, 5)
    G = perf.groups(n, P)
    gbits = max(1, perf.ceil_log2(G))
    xbits, xmbits = enc_widths(M)
    enc = RateEncoder(lanes=P, n_in=n, input_max=M, lane_layout=enc_lane_layout(xbits, xmbits),
                      ubits=unsigned_bits(max(0, M - 1)), entry=entry_layout(P, gbits, 0), group_bits=gbits)
    samples = [rand_inputs(rng, n, M) for _ in range(2)]
    clk, starts = Clock(encoder_probe(enc, P)), []

    async def bench(ctx):
        for x in samples:
            await load_lanes(ctx, clk, enc, P, [{"x": v, "xm": v - M} for v in x])
            for t in range(T):
                starts.append(clk.cycle)
                ctx.set(enc.start, 1)
                ctx.set(enc.t0, t == 0)          # held through the pass, as the sequencer's t0
                await clk.tick(ctx)
                ctx.set(enc.start, 0)
                for _ in range(G - 1 + perf.ENC_DRAIN + rng.randint(0, 2)):   # the phase, then idle
                    await clk.tick(ctx)

    simulate(enc, bench)
    expected = {}
    for si, x in enumerate(samples):
        for t, s in enumerate(rate_encode_ref(x, M, T)):
            for g, bits in enumerate(words(s, P)):
                m = mask_of(bits)
                expected[starts[si * T + t] + g + perf.ENC_DRAIN] = (g, m, m, min(P, n - g * P), sum(bits))
    check_rows(clk.rows, expected, {s + g for s in starts for g in range(G)}, spike_delay=1)


@pytest.mark.parametrize("table", [True, False])
@pytest.mark.parametrize("P, seed, MT", [(1, 0, None), (2, 1, None), (8, 2, None), (4, 3, None), (8, 4, None),
                                         (8, 5, (12, 8)), (4, 6, (7, 5))])
def test_train_encoder_whole_trains(P, seed, MT, table):
    """``table``: the trains read from the table of x (and delayed), or formed by the T-stage pipeline.
    ``MT``: (input_max, T), else both drawn (the fixed ones give trains that differ slot by slot)."""
    rng = random.Random(seed)
    n, M, T = rand_n(rng, P), rng.choice([1, 2, 3, 5, 7, 12]), rng.randint(1, 6)
    if MT:
        M, T = MT
    G = perf.groups(n, P)
    gbits = max(1, perf.ceil_log2(G))
    xbits, xmbits = enc_widths(M)
    enc = TrainEncoder(lanes=P, n_in=n, input_max=M, lane_layout=enc_lane_layout(xbits, xmbits), T=T,
                       entry=entry_layout(P, gbits, T), group_bits=gbits, table_bits=6 if table else 0)
    assert enc._table == table
    samples = [rand_inputs(rng, n, M) for _ in range(2)]
    clk, starts = Clock(encoder_probe(enc, P, payload_lanes=P)), []
    drain = perf.train_encoder_drain(T)

    async def bench(ctx):
        for x in samples:
            await load_lanes(ctx, clk, enc, P, [{"x": v, "xm": v - M} for v in x])
            starts.append(clk.cycle)
            ctx.set(enc.start, 1)
            await clk.tick(ctx)
            ctx.set(enc.start, 0)
            for _ in range(G - 1 + drain + rng.randint(0, 2)):
                await clk.tick(ctx)

    simulate(enc, bench)
    expected = {}
    for s, x in zip(starts, samples):
        steps = rate_encode_ref(x, M, T)
        trains = [sum(steps[t][i] << t for t in range(T)) for i in range(n)]
        for g, tw in enumerate(words(trains, P)):
            mon = sum(tr << (p * T) for p, tr in enumerate(tw))          # lane p, slot t at bit p*T + t
            expected[s + g + drain] = (g, mon, mask_of(tr != 0 for tr in tw), min(P, n - g * P) * T,
                                       sum(bin(tr).count("1") for tr in tw), tw)
    check_rows(clk.rows, expected, {s + g for s in starts for g in range(G)}, payload=True)


# ---------------------------------------------------------------------------------------------------
# TscGenerator

def make_tsc_gen(P, n_in, M, T, max_words, vbits, thr_max, saddr_bits):
    Q = T - 1
    rbits = max(signed_bits(-1 - M, M * Q + M // 2),
                signed_bits(-(1 << (vbits - 1)) - thr_max, (1 << (vbits - 1)) - 1))
    state_layout = data.ArrayLayout(state_lane_layout(vbits, 4, 0), P)
    param_layout = data.ArrayLayout(param_lane_layout(vbits + 1), P)
    gbits = max(1, perf.ceil_log2(max_words))
    gen = TscGenerator(lanes=P, n_in=n_in, input_max=M, rbits=rbits, max_words=max_words,
                       entry=entry_layout(P, gbits, 0), group_bits=gbits, saddr_bits=saddr_bits,
                       state_layout=state_layout, param_layout=param_layout, v_bits=vbits)
    return gen


def run_tsc_gen(gen, P, T, *, rng, words_n, real_last, src_in, base=0, loads=(), store=None, samples=1):
    """``samples`` windows of T passes; before each, ``loads[k]`` lane writes (input countdowns).
    Returns (pass start cycles, rows, store writes)."""
    Q = T - 1

    def probe(ctx):
        r = encoder_probe(gen, P)(ctx)
        r.update(wr=ctx.get(gen.st_wr_en), waddr=ctx.get(gen.st_wr_addr),
                 wdata=[(ctx.get(gen.st_wr_data[p].v), ctx.get(gen.st_wr_data[p].c)) for p in range(P)])
        return r

    clk, starts, writes = Clock(probe), [], []

    async def cycle(ctx):
        if store is not None:                     # the GroupStore, read and written like the core does
            st, pa = store.output(clk.cycle)
            ctx.set(gen.state, st)
            ctx.set(gen.params, pa)
            store.read(clk.cycle, ctx.get(gen.st_rd_addr))
            # a flat source's parameter word is its state word's (src_pbase = src_base here)
            assert ctx.get(gen.prm_rd_addr) == ctx.get(gen.st_rd_addr)
            if ctx.get(gen.st_wr_en):
                a = ctx.get(gen.st_wr_addr)
                new = [{"v": ctx.get(gen.st_wr_data[p].v), "c": ctx.get(gen.st_wr_data[p].c)} for p in range(P)]
                writes.append((clk.cycle, a, [dict(w) for w in store.words[a][0]], new))
                store.words[a] = (new, store.words[a][1])
        await clk.tick(ctx)

    async def bench(ctx):
        for k in range(samples):
            if loads:
                await load_lanes(ctx, clk, gen, P, loads[k])
            for t in range(T):
                starts.append(clk.cycle)
                ctx.set(gen.start, 1)
                for sig, v in ((gen.t0, t == 0), (gen.tq, t == Q), (gen.src_in, src_in), (gen.words, words_n),
                               (gen.real_last, real_last), (gen.src_base, base), (gen.src_pbase, base)):
                    ctx.set(sig, v)
                await cycle(ctx)
                ctx.set(gen.start, 0)
                for _ in range(words_n - 1 + perf.GEN_DRAIN + rng.randint(0, 2)):
                    await cycle(ctx)

    simulate(gen, bench)
    return starts, clk.rows, writes


@pytest.mark.parametrize("P, seed", [(1, 0), (2, 1), (8, 2), (4, 3)])
def test_tsc_generator_input_on_off(P, seed):
    rng = random.Random(seed)
    n, M = rand_n(rng, P), rng.choice([3, 5, 8, 15])
    T = rng.randint(2, min(6, M + 1))
    Q, G = T - 1, perf.groups(n, P)
    gen = make_tsc_gen(P, n, M, T, G, 6, 1, 3)
    samples = [rand_inputs(rng, n, M) for _ in range(2)]
    starts, rows, writes = run_tsc_gen(gen, P, T, rng=rng, words_n=G, real_last=n - (G - 1) * P, src_in=1,
                                       loads=[[v * Q + M // 2 for v in x] for x in samples], samples=2)
    assert not writes and not any(r["wr"] for _, r in rows)      # the input's countdowns stay inside
    expected = {}
    for si, x in enumerate(samples):
        ev = tsc_events_ref([v * Q + M // 2 for v in x], [M] * n, T)
        # (the reference's OFF step is section 2's input quantization q = (x*Q + input_max//2) // input_max)
        assert [[t for t in range(1, T) if ev[t][i]] for i in range(n)] == \
            [[q] if q else [] for q in ((v * Q + M // 2) // M for v in x)]
        for t in range(T):
            for g, bits in enumerate(words(ev[t], P)):
                m = mask_of(bits)
                expected[starts[si * T + t] + g + perf.GEN_DRAIN] = (g, m, m, min(P, n - g * P), sum(bits))
    check_rows(rows, expected, {s + g for s in starts for g in range(G)}, spike_delay=1)


@pytest.mark.parametrize("P, seed", [(1, 0), (2, 1), (8, 2), (4, 3), (2, 4)])
def test_tsc_generator_layer_source_through_the_store(P, seed):
    rng = random.Random(seed)
    vbits, thr_max = 7, 9
    T = rng.randint(2, 6)
    Q = T - 1
    n = rand_n(rng, P)
    G = perf.groups(n, P)
    base = rng.randint(0, 3)
    depth = base + G + 2
    saddr_bits = max(1, perf.ceil_log2(depth))
    gen = make_tsc_gen(P, 3, 4, T, max(G, 1), vbits, thr_max, saddr_bits)
    lo, hi = -(1 << (vbits - 1)), (1 << (vbits - 1)) - 1

    def lane():
        th = rng.randint(1, thr_max)
        # V on and around the multiples of θ, below 0 and beyond Q·θ
        v = min(hi, max(lo, rng.choice([rng.randint(lo, hi), rng.randint(-1, Q + 2) * th + rng.choice([-1, 0, 0, 1])])))
        return {"v": v, "c": rng.randint(-8, 7)}, {"bias": rng.randint(-5, 5), "thr": th, "v_init": 0, "bmt": 0}

    store_words = {}
    for a in range(depth):
        lanes = [lane() for _ in range(P)]
        store_words[a] = ([s for s, _ in lanes], [p for _, p in lanes])
    before = {a: ([dict(s) for s in w[0]], w[1]) for a, w in store_words.items()}
    store = StoreModel(store_words, ([{"v": 0, "c": 0}] * P, [{"bias": 0, "thr": 0, "v_init": 0, "bmt": 0}] * P))
    starts, rows, writes = run_tsc_gen(gen, P, T, rng=rng, words_n=G, real_last=n - (G - 1) * P, src_in=0,
                                       base=base, store=store)
    V = [before[base + i // P][0][i % P]["v"] for i in range(n)]
    th = [before[base + i // P][1][i % P]["thr"] for i in range(n)]
    ev = tsc_events_ref(V, th, T)
    expected = {}
    for t in range(T):
        for g, bits in enumerate(words(ev[t], P)):
            m = mask_of(bits)
            expected[starts[t] + g + perf.GEN_DRAIN] = (g, m, m, min(P, n - g * P), sum(bits))
    check_rows(rows, expected, {s + g for s in starts for g in range(G)}, spike_delay=1)
    # one countdown write per word and step, GEN_DRAIN after the read, to the source's own words:
    # V follows section 3's countdown, C is kept
    assert [(c, a) for c, a, _, _ in writes] == [(s + g + perf.GEN_DRAIN, base + g) for s in starts for g in range(G)]
    for (c, a, old, new), (t, g) in zip(writes, [(t, g) for t in range(T) for g in range(G)]):
        thr = store.words[a][1]
        for p in range(P):
            assert new[p]["c"] == old[p]["c"], (c, p)
            if g * P + p < n:
                event, r = tsc_countdown_ref(old[p]["v"], thr[p]["thr"], t, Q)
                assert (new[p]["v"], ev[t][g * P + p]) == (r, event), (t, g, p)
    for a in set(range(depth)) - set(range(base, base + G)):
        assert store.words[a][0] == before[a][0]


# ---------------------------------------------------------------------------------------------------
# Readout

@pytest.mark.parametrize("P, seed, ready_prob", [(1, 0, 1.0), (2, 1, 0.5), (8, 2, 0.5), (4, 3, 1.0), (8, 4, 0.3),
                                                 (2, 5, 1.0), (1, 6, 0.4)])
def test_readout_beats_under_backpressure(P, seed, ready_prob):
    rng = random.Random(seed)
    n, counts = rand_n(rng, P), bool(seed % 2)
    vbits, cnt_bits, cls_bits = 6, 3, max(1, perf.ceil_log2(max(2, n)))
    G = perf.groups(n, P)
    sbase = rng.randint(0, 3)
    depth = sbase + G + 2
    lane = state_lane_layout(vbits, 0, cnt_bits if counts else 0)
    result_layout = data.StructLayout({"index": unsigned(cls_bits), "count": unsigned(cnt_bits),
                                       "membrane": signed(vbits), "prediction": unsigned(cls_bits),
                                       "last": unsigned(1)})
    ro = Readout(result_layout=result_layout, lanes=P, n_out=n, sbase=sbase, saddr_bits=max(1, perf.ceil_log2(depth)),
                 state_layout=data.ArrayLayout(lane, P), counts=counts)

    def rand_word():
        return [{"v": rng.randint(-32, 31), **({"cnt": rng.randint(0, 7)} if counts else {})} for _ in range(P)]

    stores = [StoreModel({a: rand_word() for a in range(depth)}, rand_word()) for _ in range(2)]
    preds = [rng.randrange(n) for _ in range(2)]
    runs = []

    async def bench(ctx):
        cyc = 0
        for store, pred in zip(stores, preds):
            beats, held, reading, after = [], None, 0, 0
            ctx.set(ro.prediction, pred)
            idle = rng.randint(0, 3)
            for k in range(idle + 1 + 60 * (n + G)):
                ctx.set(ro.start, k == idle)
                if k == idle:
                    s = cyc
                ctx.set(ro.state, store.output(cyc))
                store.read(cyc, ctx.get(ro.rd_addr))
                ready = rng.random() < ready_prob
                ctx.set(ro.result.ready, ready)
                valid = ctx.get(ro.result.valid)
                pl = ctx.get(ro.result.payload)
                beat = (pl.index, pl.count, pl.membrane, pl.prediction, pl.last)
                if held is not None:          # a beat that waited on ready is still there, unchanged
                    assert valid and beat == held, f"cycle {cyc}: {beat} != held {held}"
                held = beat if valid and not ready else None
                assert ctx.get(ro.done) == (valid and ready and beat[4]), f"cycle {cyc}"
                if after:                     # nothing after the last beat
                    assert not valid and not ctx.get(ro.busy), f"cycle {cyc}"
                    after += 1
                if valid and ready:
                    beats.append((cyc - s, beat))
                    after = after or int(beat[4])
                reading += ctx.get(ro.reading)
                await ctx.tick()
                cyc += 1
                if after > 3:
                    break
            runs.append((beats, reading))

    simulate(ro, bench)
    for (beats, reading), store, pred in zip(runs, stores, preds):
        want = [(i, store.words[sbase + i // P][i % P].get("cnt", 0), store.words[sbase + i // P][i % P]["v"], pred,
                 int(i == n - 1)) for i in range(n)]
        assert [b for _, b in beats] == want
        assert reading == G * R
        if ready_prob == 1.0:
            assert [c for c, _ in beats] == [1 + (i // P + 1) * R + i for i in range(n)]


# ---------------------------------------------------------------------------------------------------
# Counters

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_counters_snapshot_is_exactly_one_sample(seed):
    rng = random.Random(seed)
    sources = {"a": [1], "b": [3, 1, 4], "c": [5, 5, 2, 1]}
    ctr = Counters(sources, 20)
    L = Counters.LATENCY
    gaps = [1, 2, 1] + [rng.choice([1, 2, 3, 4, 7, 12]) for _ in range(6)]
    rng.shuffle(gaps)
    done_at, c = [], 3
    for g in gaps:
        c += g
        done_at.append(c)
    n_cycles = done_at[-1] + L + 5
    boundary = {d + k for d in done_at for k in (-1, 0, 1)}
    incs = []
    for cyc in range(n_cycles):
        row = {}
        for name, ws in sources.items():
            lo = 1 if cyc in boundary else 0                # work right at every boundary
            row[name] = [rng.randint(lo, (1 << w) - 1) if rng.random() < 0.7 or lo else 0 for w in ws]
        incs.append(row)
    got = []

    async def bench(ctx):
        for cyc in range(n_cycles):
            for name, ws in sources.items():
                for k, v in enumerate(incs[cyc][name]):
                    ctx.set(ctr.inc(name, k), v)
            ctx.set(ctr.sample_done, cyc in done_at)
            got.append((ctx.get(ctr.done), {n: ctx.get(getattr(ctr.cnt, n)) for n in sources}))
            await ctx.tick()

    simulate(ctr, bench)
    # sample k: the increments of the cycles after the previous boundary up to and including its own
    snaps, prev = [], -1
    for d in done_at:
        snaps.append({n: sum(sum(incs[c][n]) for c in range(prev + 1, d + 1)) for n in sources})
        prev = d
    ready_at = [d + L + 1 for d in done_at]
    assert [c for c, (dn, _) in enumerate(got) if dn] == ready_at
    current = {n: 0 for n in sources}
    for c, (dn, cnt) in enumerate(got):
        if dn:
            current = snaps[ready_at.index(c)]
        assert cnt == current, f"cycle {c}"                 # held between snapshots


# ---------------------------------------------------------------------------------------------------
# Sequencer

def seq_model(kind, rng):
    def dense(n_out, n_in, h=(1,)):
        return Dense(rng.integers(-3, 4, (n_out, n_in)), 0, 3, 0, h=h)

    if kind == "rate":
        return Model([dense(6, 5), dense(3, 6)], T=3, input_max=5), 2
    if kind == "rate8":
        return Model([dense(9, 11), dense(3, 9)], T=2, input_max=3), 8
    if kind == "direct":
        return Model([dense(3, 4), dense(5, 3), dense(2, 5)], T=2, input_max=5, encoding="direct"), 1
    if kind == "stcb":
        return Model([dense(7, 5, (1, -1)), dense(3, 7)], coding="stcb", T=3, input_max=4), 2
    if kind == "stcb_direct":
        return Model([dense(4, 6, (1, 1)), dense(3, 4)], coding="stcb", T=2, input_max=4, encoding="direct"), 4
    if kind == "tsc":
        return Model([dense(3, 5), dense(4, 3), dense(2, 4)], coding="tsc", encoding="tsc", T=3, input_max=4,
                     readout="membrane"), 2
    raise ValueError(kind)


def sequencer_walk(cfg, issue):
    """Section 3's phases of one sample after LOAD: [(phase, cycles, layer, t)], ``issue(layer, t)``
    the reader's ISSUE cycles; the fixed lengths are golden.perf's."""
    m, P, T, L = cfg.model, cfg.P, cfg.T, cfg.L
    out = [(Phase.LOAD_DRAIN, perf.LOAD_DRAIN, None, None)]
    G_src = [cfg.G_in] + [l.groups for l in cfg.layers]
    if m.coding == "stcb":
        drain = perf.stcb_layer_drain(T, cfg.taps, cfg.direct)
        if not cfg.direct:
            out.append((Phase.ENCODE, cfg.G_in + perf.train_encoder_drain(T), 0, 0))
        for li in range(L):
            out += [(Phase.SETUP, perf.LAYER_SETUP, li, 0), (Phase.ISSUE, issue(li, 0), li, 0),
                    (Phase.DRAIN, drain, li, 0)]
    else:
        drain = perf.layer_drain(m.coding, m.encoding)
        order = [(li, t) for li in range(L) for t in range(T)] if m.coding == "tsc" else \
            [(li, t) for t in range(T) for li in range(L)]
        for li, t in order:
            if m.coding == "tsc":
                out.append((Phase.ENCODE, G_src[li] + perf.GEN_DRAIN, li, t))
            elif li == 0 and not cfg.direct:
                out.append((Phase.ENCODE, cfg.G_in + perf.ENC_DRAIN, 0, t))
            out += [(Phase.SETUP, perf.LAYER_SETUP, li, t), (Phase.ISSUE, issue(li, t), li, t),
                    (Phase.DRAIN, drain, li, t)]
    out.append((Phase.FINISH, perf.finish_cycles(P), None, None))
    return out


def expand(walk, load, readout, first):
    """Per cycle: (phase, layer, t, encode_start, reader_start, readout_start, sample_start)."""
    rows = [(Phase.LOAD, None, None, 0, 0, 0, int(k == 0 and not first)) for k in range(load)]
    for phase, cycles, li, t in walk:
        for k in range(cycles):
            rows.append((phase, li, t, int(phase == Phase.ENCODE and k == 0), int(phase == Phase.SETUP and k == 0),
                         int(phase == Phase.FINISH and k == cycles - 1), 0))
    rows += [(Phase.READOUT, None, None, 0, 0, 0, 0)] * readout
    return rows


@pytest.mark.parametrize("kind", ["rate", "rate8", "direct", "stcb", "stcb_direct", "tsc"])
def test_sequencer_phases_and_perf_cycles(kind):
    rng = random.Random(len(kind))
    model, P = seq_model(kind, np.random.default_rng(len(kind)))
    cfg = CoreConfig(model, P)
    T = cfg.T
    taps = perf.kernel_taps(model)
    nrng = np.random.default_rng(7)
    samples = []
    for stalled in (False, True):
        act = perf.Activity(inputs=nrng.random((1, T, cfg.n_in)) < 0.4,
                            layers=[nrng.random((1, T, l.n_out)) < 0.4 for l in model.layers])
        src = [act.inputs[0]] + [a[0] for a in act.layers]

        def issue(li, t, src=src, stalled=stalled):
            # the event reader without stalls: rate/direct/tsc max(1, E) ops per group; stcb's groups
            # start T*taps apart
            G = cfg.layers[li].groups
            if cfg.stcb:
                ops = max(1, int(src[li].any(axis=0).sum()))
                n = (G - 1) * max(ops, perf.stcb_group_cycles(T, taps)) + ops
            else:
                n = G * max(1, int(src[li][t].sum()))
            return n + (rng.randint(0, 4) if stalled else 0)

        walk = sequencer_walk(cfg, issue)
        load = cfg.n_in + (rng.randint(1, 5) if stalled else 0)
        readout = cfg.layers[-1].groups * R + cfg.n_out + (rng.randint(1, 5) if stalled else 0)
        samples.append((act, walk, load, readout))
    expected = []
    for k, (_, walk, load, readout) in enumerate(samples):
        expected += expand(walk, load, readout, k == 0)
    expected += [(Phase.LOAD, None, None, 0, 0, 0, 1)] + [(Phase.LOAD, None, None, 0, 0, 0, 0)] * 2
    issues = [c for _, walk, _, _ in samples for ph, c, _, _ in walk if ph == Phase.ISSUE]
    loads, readouts = [s[2] for s in samples], [s[3] for s in samples]
    seq = Sequencer(cfg)
    words = descriptor_words(cfg)
    got = []

    async def bench(ctx):
        prev, run, k_load, k_issue, k_ro = None, 0, 0, 0, 0
        for _ in range(len(expected)):
            phase = Phase(ctx.get(seq.phase))
            run = run + 1 if phase == prev else 1
            prev = phase
            ld = phase == Phase.LOAD and k_load < len(loads) and run == loads[k_load]
            rl = phase == Phase.ISSUE and k_issue < len(issues) and run == issues[k_issue]
            rd = phase == Phase.READOUT and k_ro < len(readouts) and run == readouts[k_ro]
            k_load, k_issue, k_ro = k_load + ld, k_issue + rl, k_ro + rd
            ctx.set(seq.loader_done, ld)
            ctx.set(seq.reader_last, rl)
            ctx.set(seq.readout_done, rd)
            li, t = ctx.get(seq.layer), ctx.get(seq.t)
            assert ctx.get(seq.t0) == (t == 0) and ctx.get(seq.tlast) == (t == T - 1 or cfg.stcb)
            # the descriptor register always holds the running layer's word of the layer table
            desc = ctx.get(seq.desc)
            assert {f: getattr(desc, f) for f in words[li]} == words[li], f"layer {li}"
            assert ctx.get(seq.counted) == (phase not in (Phase.LOAD, Phase.READOUT))
            got.append((phase, li, t, ctx.get(seq.encode_start), ctx.get(seq.reader_start),
                        ctx.get(seq.readout_start), ctx.get(seq.sample_start)))
            await ctx.tick()

    simulate(seq, bench)
    # layer and step are not part of the contract during LOAD, LOAD_DRAIN, FINISH and READOUT
    got = [(g[0], g[1] if e[1] is not None else None, g[2] if e[2] is not None else None) + g[3:]
           for g, e in zip(got, expected)]
    for c, (g, e) in enumerate(zip(got, expected)):
        assert g == e, f"cycle {c}: got {g}, want {e}"
    # without stalls a sample lasts exactly golden.perf's cycles counter
    act, walk, load, readout = samples[0]
    totals, _, _ = perf.count(model, P, act)
    assert load + sum(c for _, c, _, _ in walk) + readout == int(totals["cycles"][0])


# ---------------------------------------------------------------------------------------------------
# LayerTable (the per-layer descriptor ROM)

@pytest.mark.parametrize("coding, encoding, P", [("rate", "rate", 4), ("tsc", "tsc", 2), ("stcb", "rate", 8),
                                                 ("rate", "direct", 1)])
def test_layer_table_holds_every_layer_descriptor(coding, encoding, P):
    rng = np.random.default_rng(7)
    sizes = [11, 9, 6, 5]
    layers = []
    for i in range(3):
        reset = "zero" if i == 1 and coding != "tsc" else "subtract"
        layers.append(Dense(rng.integers(-3, 4, (sizes[i + 1], sizes[i])), 0, 5, 0, reset=reset))
    model = Model(layers, T=4, input_max=3, encoding=encoding, coding=coding,
                         readout="membrane" if coding == "tsc" else "count")
    cfg = CoreConfig(model, P)
    G = [-(-n // P) for n in sizes]
    want = []
    for i in range(3):
        wbase = sum(G[k + 1] * sizes[k] for k in range(i))
        enc = 0 if encoding == "direct" else (G[i] + perf.GEN_DRAIN if coding == "tsc" else
                                               G[0] + perf.train_encoder_drain(4) if coding == "stcb" else
                                               G[0] + perf.ENC_DRAIN)
        want.append({"kind": Kind.DENSE, "pbase": sum(G[1:i + 1]), "cidx": 0, "pidx": 0, "xidx": 0, "words": 0,
                     "last_plane": 0, "wbase": wbase, "n_in": sizes[i], "sbase": sum(G[1:i + 1]), "groups": G[i + 1],
                     "last_lanes": sizes[i + 1] - (G[i + 1] - 1) * P, "fires": 1,
                     "zero_reset": int(i == 1 and coding != "tsc"), "enc_len": enc, "src_words": G[i],
                     "src_last": sizes[i] - (G[i] - 1) * P, "src_base": sum(G[1:i]), "leak_num": 0,
                     "leak_shift": 0, "src_pbase": sum(G[1:i]), "src_map": 0, "src_midx": 0, "src_pool": 0})
    want[-1]["fires"] = int(coding != "tsc")           # the membrane readout's last layer never fires
    assert descriptor_words(cfg) == want
    table = LayerTable(cfg)
    got = []

    async def bench(ctx):                                # a ROM read without a clock
        for li in range(3):
            ctx.set(table.layer, li)
            await ctx.delay(1e-9)
            d = ctx.get(table.desc)
            got.append({f: getattr(d, f) for f in want[li]})

    sim = Simulator(table)
    sim.add_testbench(bench)
    sim.run()
    assert got == want


# ---------------------------------------------------------------------------------------------------
# GroupStore

def test_group_store_state_memory_is_marked_no_rw_check():
    """The state memory is marked ``no_rw_check`` (no used read meets a write to its word: the core tests'
    and the testbench's hazard checks); the parameter memory, which is never written, is not."""
    from amaranth import Signal
    from amaranth.back import verilog
    store = GroupStore(lanes=2, depth=5, addr_bits=3, state_lane=state_lane_layout(6, 3, 2),
                       param_lane=param_lane_layout(5), param_init=[1, 2, 3])
    ports = [v for _, _, v in store.signature.flatten(store) if isinstance(v, Signal)]
    text = verilog.convert(store, name="store", ports=ports)
    assert text.count("(* no_rw_check") == 1


@pytest.mark.parametrize("P, depth, seed", [(1, 1, 0), (2, 5, 1), (8, 3, 2), (4, 7, 3)])
def test_group_store_read_latency_and_write_then_read(P, depth, seed):
    rng = random.Random(seed)
    state_lane, param_lane = state_lane_layout(6, 3, 2), param_lane_layout(5)
    sw, pw = P * data.Layout.cast(state_lane).size, P * data.Layout.cast(param_lane).size
    pinit = [rng.getrandbits(pw) for _ in range(depth)]
    store = GroupStore(lanes=P, depth=depth, addr_bits=max(1, perf.ceil_log2(depth)), state_lane=state_lane,
                       param_lane=param_lane, param_init=pinit)
    assert store.read_latency == perf.MEM_READ_LATENCY
    mem = [0] * depth
    n_cycles = 12 * depth + 40
    plan = []
    for c in range(n_cycles):
        if c < depth:                                   # every address gets a word of its own
            wr = (1, c, rng.getrandbits(sw))
        else:
            wr = (int(rng.random() < 0.5), rng.randrange(depth), rng.getrandbits(sw))
        prev_wr = plan[-1][1] if plan else (0, 0, 0)
        r = rng.random()
        # reads in a write's own cycle and right after it, besides random ones
        rd = wr[1] if r < 0.25 else prev_wr[1] if r < 0.5 else rng.randrange(depth)
        plan.append((rd, wr))
    # the parameter port reads its own addresses; either port may skip a cycle (en low): its word stays
    pplan = [(int(rng.random() < 0.8), rng.randrange(depth)) for _ in plan]
    splan = [int(rng.random() < 0.8) for _ in plan]
    want, got = {}, []
    s_word = p_word = None
    for c, (rd, (en, wa, wd)) in enumerate(plan):
        if splan[c]:
            s_word = mem[rd]                                         # the word as it is in the read's cycle
        if pplan[c][0]:
            p_word = pinit[pplan[c][1]]
        want[c + perf.MEM_READ_LATENCY] = (s_word, p_word)
        if en:
            mem[wa] = wd

    async def bench(ctx):
        for c, (rd, (en, wa, wd)) in enumerate(plan + [(0, (0, 0, 0))] * perf.MEM_READ_LATENCY):
            pen, pa = pplan[c] if c < len(plan) else (0, 0)
            ctx.set(store.state_rd_en, splan[c] if c < len(plan) else 0)
            ctx.set(store.state_rd_addr, rd)
            ctx.set(store.param_rd_en, pen)
            ctx.set(store.param_rd_addr, pa)
            ctx.set(store.wr_en, en)
            ctx.set(store.wr_addr, wa)
            ctx.set(store.wr_data.as_value(), wd)
            got.append((ctx.get(store.state.as_value()), ctx.get(store.params.as_value())))
            await ctx.tick()

    simulate(store, bench)
    for c, w in want.items():
        if None not in w:
            assert got[c] == w, f"cycle {c}"
    # the read-after-write distance the core relies on: the write's own cycle reads the old word,
    # MIN_STATE_RAW_DISTANCE later the new one
    checked = 0
    for c, (rd, (en, wa, wd)) in enumerate(plan):
        if c >= depth and en and c + perf.MIN_STATE_RAW_DISTANCE < len(plan) and \
                plan[c + perf.MIN_STATE_RAW_DISTANCE][0] == wa and splan[c + perf.MIN_STATE_RAW_DISTANCE]:
            assert got[c + perf.MIN_STATE_RAW_DISTANCE + perf.MEM_READ_LATENCY][0] == wd
            checked += 1
    assert checked >= 3
