"""Drive a SpikeCore in the Amaranth Python simulator (fast unit tests of the gateware).

``simulate(model, x, lanes=...)`` streams the samples back to back and returns the per-sample
results and counters in golden's vocabulary, so a test compares them with ``golden.run``. A core that
stops making progress fails with :class:`SimulationHang` after ``max_cycles`` instead of hanging.
"""

from __future__ import annotations

import random

import numpy as np
from amaranth.sim import Simulator

from .core import SpikeCore

__all__ = ["simulate", "SimulationHang"]

CLOCK_PERIOD = 1e-8


class SimulationHang(RuntimeError):
    """The core did not finish the samples within the cycle budget."""


def simulate(model, x, *, lanes: int = 1, stall_prob: float = 0.0, seed: int = 0, max_cycles: int = 2_000_000,
             core: SpikeCore | None = None, spikes: list | None = None, hazards: list | None = None) -> dict:
    """``spikes``: a list that receives every spike-monitor row (cycle, enc, layer, t, group, mask).
    ``hazards``: a list that receives (cycle, address) of every state-memory read whose word is used
    (``st.fwd`` low) in the cycle a write to the same address happens: the read-during-write the
    store does not resolve (sim/harness.py's ``v_same_cycle`` check, here in the Amaranth simulator)."""
    core = SpikeCore(model, lanes=lanes) if core is None else core
    cfg = core.config
    x = np.asarray(x, dtype=np.int64)
    B = x.shape[0]
    out = {"predictions": np.zeros(B, np.int64), "counts": np.zeros((B, cfg.n_out), np.int64),
           "membranes": np.zeros((B, cfg.n_out), np.int64), "counters": {}, "err_range": 0, "err_protocol": 0}
    names = core.cnt.signature.names
    ctr = {n: np.zeros(B, np.int64) for n in names}
    rng_in, rng_out = random.Random(seed), random.Random(seed + 1)
    progress = {"sent": 0, "received": 0, "counted": 0}
    # every testbench ticks once per cycle from the start, so each one's own tick count is the
    # simulation time in cycles
    elapsed = {"feeder": 0, "drain": 0, "counters": 0}

    async def tick(ctx, who):
        await ctx.tick()
        elapsed[who] += 1

    async def wait_for(ctx, who, signal, sample=None):
        """Tick until ``signal`` was high at a clock edge (returns ``sample``'s value at that edge), or
        None once the cycle budget is spent: every testbench then stops, so the simulator ends cleanly."""
        while elapsed[who] < max_cycles:
            high, value = ctx.get(signal), (ctx.get(sample) if sample is not None else None)
            await tick(ctx, who)
            if high:
                return value if sample is not None else True
        return None

    async def feeder(ctx):
        for b in range(B):
            for i in range(cfg.n_in):
                while stall_prob and rng_in.random() < stall_prob:
                    ctx.set(core.x.valid, 0)
                    await tick(ctx, "feeder")
                ctx.set(core.x.valid, 1)
                ctx.set(core.x.payload, {"value": int(x[b, i]), "last": int(i == cfg.n_in - 1)})
                if await wait_for(ctx, "feeder", core.x.ready) is None:
                    return
            progress["sent"] += 1
            ctx.set(core.x.valid, 0)

    async def drain(ctx):
        for b in range(B):
            for c in range(cfg.n_out):
                while stall_prob and rng_out.random() < stall_prob:
                    ctx.set(core.result.ready, 0)
                    await tick(ctx, "drain")
                ctx.set(core.result.ready, 1)
                payload = await wait_for(ctx, "drain", core.result.valid, core.result.payload)
                if payload is None:
                    return
                assert payload.index == c, (b, c, payload.index)
                out["counts"][b, c] = payload.count
                out["membranes"][b, c] = payload.membrane
                out["predictions"][b] = payload.prediction
                assert payload.last == (c == cfg.n_out - 1)
            ctx.set(core.result.ready, 0)
            progress["received"] += 1
        out["err_range"] = ctx.get(core.err_range)
        out["err_protocol"] = ctx.get(core.err_protocol)

    async def counters(ctx):
        # the snapshot of sample b is on cnt while done is high
        for b in range(B):
            if await wait_for(ctx, "counters", core.done) is None:
                return
            for n in names:
                ctr[n][b] = ctx.get(getattr(core.cnt, n))
            progress["counted"] += 1

    async def monitor(ctx):
        n = 0
        async for _, _, valid, enc, layer, t, group, mask in ctx.tick().sample(
                core.spk.valid, core.spk.enc, core.spk.layer, core.spk.t, core.spk.group, core.spk.mask):
            n += 1
            if valid:
                spikes.append((n, enc, layer, t, group, mask))

    async def hazard_monitor(ctx):
        n = 0
        async for _, _, rd, raddr, fwd, wr, waddr in ctx.tick().sample(
                core.st.rd, core.st.raddr, core.st.fwd, core.st.wr, core.st.waddr):
            n += 1
            if rd and not fwd and wr and raddr == waddr:
                hazards.append((n, raddr))

    sim = Simulator(core)
    sim.add_clock(CLOCK_PERIOD)
    if spikes is not None:
        sim.add_testbench(monitor, background=True)
    if hazards is not None:
        sim.add_testbench(hazard_monitor, background=True)
    sim.add_testbench(feeder)
    sim.add_testbench(drain)
    sim.add_testbench(counters)
    sim.run()
    if min(progress.values()) < B:
        raise SimulationHang(f"the core did not finish within {max_cycles} cycles: {progress['sent']}/{B} samples "
                             f"accepted, {progress['received']}/{B} results received, {progress['counted']}/{B} "
                             f"counter snapshots")
    out["counters"] = {n: ctr[n] for n in names if not n.startswith("spikes_")}
    out["layer_spikes"] = [ctr[f"spikes_l{li}"] for li in range(cfg.L)]
    out["encoder_spikes"] = ctr["spikes_enc"]
    out["counters"]["spikes"] = sum(out["layer_spikes"])
    return out
