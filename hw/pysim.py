"""Drive a SpikeCore in the Amaranth Python simulator (fast unit tests of the gateware).

``simulate(model, x, lanes=...)`` streams the samples back to back and returns the per-sample
results and counters in golden's vocabulary, so a test compares them with ``golden.run``.
"""

from __future__ import annotations

import random

import numpy as np
from amaranth.sim import Simulator

from golden import perf

from .core import SpikeCore, COUNTER_NAMES

__all__ = ["simulate"]


def simulate(model, x, *, lanes: int = 1, stall_prob: float = 0.0, seed: int = 0, max_cycles: int = 2_000_000):
    core = SpikeCore(model, lanes=lanes)
    cfg = core.config
    x = np.asarray(x, dtype=np.int64)
    B = x.shape[0]
    out = {"predictions": np.zeros(B, np.int64), "counts": np.zeros((B, cfg.n_out), np.int64),
           "membranes": np.zeros((B, cfg.n_out), np.int64), "counters": {}, "err_range": 0, "err_protocol": 0}
    names = list(COUNTER_NAMES)
    ctr = {n: np.zeros(B, np.int64) for n in names}
    layer_spikes = [np.zeros(B, np.int64) for _ in range(cfg.L)]
    enc_spikes = np.zeros(B, np.int64)
    rng = random.Random(seed)
    sk = "spikes"

    async def feeder(ctx):
        for b in range(B):
            for i in range(cfg.n_in):
                while stall_prob and rng.random() < stall_prob:
                    ctx.set(core.x.valid, 0)
                    await ctx.tick()
                ctx.set(core.x.valid, 1)
                ctx.set(core.x.payload, {"value": int(x[b, i]), "last": int(i == cfg.n_in - 1)})
                await ctx.tick().until(core.x.ready)
            ctx.set(core.x.valid, 0)

    async def drain(ctx):
        for b in range(B):
            for c in range(cfg.n_out):
                while stall_prob and rng.random() < stall_prob:
                    ctx.set(core.result.ready, 0)
                    await ctx.tick()
                ctx.set(core.result.ready, 1)
                (payload,) = await ctx.tick().sample(core.result.payload).until(core.result.valid)
                assert payload.index == c, (b, c, payload.index)
                out["counts"][b, c] = payload.count
                out["membranes"][b, c] = payload.membrane
                out["predictions"][b] = payload.prediction
                assert payload.last == (c == cfg.n_out - 1)
            ctx.set(core.result.ready, 0)
            for n in names:
                ctr[n][b] = ctx.get(getattr(core, f"cnt_{n}"))
            for li in range(cfg.L):
                layer_spikes[li][b] = ctx.get(getattr(core, f"cnt_{sk}_l{li}"))
            enc_spikes[b] = ctx.get(getattr(core, f"cnt_{sk}_enc"))
        out["err_range"] = ctx.get(core.err_range)
        out["err_protocol"] = ctx.get(core.err_protocol)

    sim = Simulator(core)
    sim.add_clock(1e-8)
    sim.add_testbench(feeder)
    sim.add_testbench(drain)
    sim.run()
    ctr[sk] = sum(layer_spikes)
    out["counters"] = ctr
    out["layer_spikes"] = layer_spikes
    out["encoder_spikes"] = enc_spikes
    return out
