"""cocotb 2.x testbench for a generated spikeforge core (run on Verilator by sim.runner).

The job comes from the JSON file named by SPIKEFORGE_JOB: the manifest, the input samples, the
stall probability and seed, and where to write the results. The testbench only drives and
records; the comparison against golden is done by the caller (sim.regress), so the same results
file serves the report.

Stimulus is driven by awaiting handshakes and value changes, never by polling every clock, so
Verilator runs at full speed between beats.
"""

from __future__ import annotations

import json
import os
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly, RisingEdge

from .xcheck import XCheck

__all__ = ["TB", "uint"]


def uint(handle) -> int:
    """Unsigned value of a port; 1-bit ports read as Logic, wider ones as LogicArray."""
    v = handle.value
    return v.to_unsigned() if hasattr(v, "to_unsigned") else int(v)


class TB:
    """Owns the clock, the reset and the two stream models of one core."""

    def __init__(self, dut, manifest: dict, *, stall_prob: float = 0.0, seed: int = 0, xcheck: bool = False):
        self.dut = dut
        # 4-state simulators: outputs are checked for X/Z after reset and on every result beat
        self.xcheck = XCheck(dut, manifest["ports"]) if xcheck else None
        self.samples_done = 0
        self.man = manifest
        self.params = manifest["parameters"]
        self.xf = manifest["payloads"]["x"]
        self.rf = manifest["payloads"]["result"]
        self.stall_prob = stall_prob
        self.rng = random.Random(seed)
        self.n_in = self.params["sizes"][0]
        self.n_out = self.params["sizes"][-1]
        self.L = len(self.params["sizes"]) - 1
        self.counters = manifest["counters"]
        self.stalls = 0

    async def start(self):
        cocotb.start_soon(Clock(self.dut.clk, 10, unit="ns").start())
        self.dut.x__valid.value = 0
        self.dut.result__ready.value = 0
        await self.reset()
        if self.xcheck:
            await ReadOnly()
            self.xcheck.check("after reset")
            await FallingEdge(self.dut.clk)

    async def reset(self, cycles: int = 2):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, cycles)
        self.dut.rst.value = 0
        self.dut.x__valid.value = 0
        self.dut.result__ready.value = 0

    def _stall_cycles(self) -> int:
        n = 0
        while self.stall_prob and self.rng.random() < self.stall_prob:
            n += 1
        return n

    def _field(self, word: int, f: dict) -> int:
        v = (word >> f["offset"]) & ((1 << f["width"]) - 1)
        if f["signed"] and v >> (f["width"] - 1):
            v -= 1 << f["width"]
        return v

    async def send(self, values, *, last_at: int | None = None):
        """Stream one sample; ``last`` goes on beat ``last_at`` (default: the final beat)."""
        dut, vf, lf = self.dut, self.xf["value"], self.xf["last"]
        last_at = len(values) - 1 if last_at is None else last_at
        for i, v in enumerate(values):
            n = self._stall_cycles()
            if n:
                self.stalls += n
                dut.x__valid.value = 0
                await ClockCycles(dut.clk, n)
            dut.x__payload.value = (int(v) << vf["offset"]) | (int(i == last_at) << lf["offset"])
            dut.x__valid.value = 1
            await ReadOnly()
            if not dut.x__ready.value:
                await RisingEdge(dut.x__ready)
            await RisingEdge(dut.clk)            # the beat transfers on this edge
        dut.x__valid.value = 0

    async def receive(self):
        """Collect one sample's result beats; returns (prediction, counts, membranes)."""
        dut = self.dut
        counts, membranes, prediction = [], [], None
        for c in range(self.n_out):
            n = self._stall_cycles()
            if n:
                self.stalls += n
                dut.result__ready.value = 0
                await ClockCycles(dut.clk, n)
            dut.result__ready.value = 1
            await ReadOnly()
            if not dut.result__valid.value:
                await RisingEdge(dut.result__valid)
                await ReadOnly()
            if self.xcheck:
                self.xcheck.check(f"sample {self.samples_done}, result beat {c}")
            word = uint(dut.result__payload)
            idx = self._field(word, self.rf["index"])
            if idx != c:
                raise AssertionError(f"result beat {c} carries index {idx}")
            if self._field(word, self.rf["last"]) != int(c == self.n_out - 1):
                raise AssertionError(f"result beat {c}: wrong last flag")
            counts.append(self._field(word, self.rf["count"]))
            membranes.append(self._field(word, self.rf["membrane"]))
            p = self._field(word, self.rf["prediction"])
            if prediction is not None and p != prediction:
                raise AssertionError(f"prediction changed within a sample at beat {c}")
            prediction = p
            await RisingEdge(dut.clk)            # transfer
        dut.result__ready.value = 0
        await ReadOnly()                           # counters were snapshotted on that edge
        ctr = {n: uint(getattr(dut, f"cnt_{n}")) for n in self.counters}
        await FallingEdge(dut.clk)
        self.samples_done += 1
        return prediction, counts, membranes, ctr

    async def spike_monitor(self, store: list):
        """Record every neuron update of the core (debug port); for mismatch localisation only."""
        dut = self.dut
        while True:
            await RisingEdge(dut.clk)
            await ReadOnly()
            if dut.dbg_valid.value:
                store.append((uint(dut.dbg_enc), uint(dut.dbg_layer), uint(dut.dbg_t), uint(dut.dbg_group),
                              uint(dut.dbg_mask)))


def _job() -> dict:
    with open(os.environ["SPIKEFORGE_JOB"]) as f:
        return json.load(f)


async def _run_samples(tb: TB, x: np.ndarray, out: dict, *, monitor: list | None = None):
    B = len(x)
    out["predictions"] = np.zeros(B, np.int64)
    out["counts"] = np.zeros((B, tb.n_out), np.int64)
    out["membranes"] = np.zeros((B, tb.n_out), np.int64)
    for n in tb.counters:
        out[f"cnt_{n}"] = np.zeros(B, np.int64)
    for b in range(B):
        if monitor is not None:
            monitor.append(("sample", b))
        await tb.send(x[b])
        pred, counts, mems, ctr = await tb.receive()
        out["predictions"][b] = pred
        out["counts"][b] = counts
        out["membranes"][b] = mems
        for n, v in ctr.items():
            out[f"cnt_{n}"][b] = v


def _unknown_results(tb: TB, B: int, out: dict) -> None:
    """-1 everywhere: a prediction of -1 is no class, so every sample mismatches golden."""
    out["predictions"] = np.full(B, -1, np.int64)
    out["counts"] = np.full((B, tb.n_out), -1, np.int64)
    out["membranes"] = np.full((B, tb.n_out), -1, np.int64)
    for n in tb.counters:
        out[f"cnt_{n}"] = np.full(B, -1, np.int64)


def _save(path: str, out: dict, tb: TB):
    out["err_range"] = np.array(uint(tb.dut.err_range) if tb.dut.err_range.value.is_resolvable else -1)
    out["err_protocol"] = np.array(uint(tb.dut.err_protocol) if tb.dut.err_protocol.value.is_resolvable else -1)
    out["stall_cycles"] = np.array(tb.stalls)
    if tb.xcheck:
        out["xz_checks"] = np.array(tb.xcheck.checks)
        out["xz_failed_checks"] = np.array(tb.xcheck.failed)
        out["xz_violations"] = np.array(tb.xcheck.violations, dtype=str)
    tmp = path + ".tmp.npz"
    np.savez(tmp, **out)
    os.replace(tmp, path)


@cocotb.test()
async def stream_samples(dut):
    """Stream the job's samples back to back (with the job's random stalls) and record everything."""
    job = _job()
    tb = TB(dut, job["manifest"], stall_prob=job.get("stall_prob", 0.0), seed=job.get("seed", 0),
            xcheck=job.get("xcheck", False))
    await tb.start()
    x = np.load(job["inputs"])
    out: dict = {}
    events: list | None = [] if job.get("spikes") else None
    if events is not None:
        cocotb.start_soon(tb.spike_monitor(events))
    if tb.xcheck and tb.xcheck.failed:
        _unknown_results(tb, len(x), out)    # X/Z after reset: the handshakes cannot be trusted
    else:
        await _run_samples(tb, x, out, monitor=events)
    if events is not None:
        rows = [e for e in events if e[0] != "sample"]
        # masks can be wider than 64 bits (P lanes, or P x T slots for stcb): keep them as bytes
        nbytes = (tb.man["ports"]["dbg_mask"]["width"] + 7) // 8
        out["dbg"] = np.array([r[:4] for r in rows], dtype=np.int64).reshape(-1, 4)
        out["dbg_mask"] = np.array([list(r[4].to_bytes(nbytes, "little")) for r in rows],
                                   dtype=np.uint8).reshape(-1, nbytes)
    _save(job["out"], out, tb)


@cocotb.test()
async def protocol_abuse(dut):
    """Wrong `last`, out-of-range values and a reset mid-inference; the next sample must be exact."""
    job = _job()
    man = job["manifest"]
    tb = TB(dut, man, seed=job.get("seed", 0), xcheck=job.get("xcheck", False))
    await tb.start()
    x = np.load(job["inputs"])
    out: dict = {}
    # 1. a reset in the middle of an inference, then a clean sample
    vals = list(x[0])
    await tb.send(vals)
    await ClockCycles(dut.clk, int(job.get("reset_after", 7)))
    await tb.reset()
    await _run_samples(tb, x[:1], out)
    out["after_reset_flags"] = np.array([int(dut.err_range.value), int(dut.err_protocol.value)])
    # 2. `last` on the wrong beat: sticky protocol error, the result still streams
    # (a 1-input model cannot misplace last, so it omits it instead)
    await tb.send(vals, last_at=0 if len(vals) > 1 else -1)
    await tb.receive()
    out["protocol_flag"] = np.array(int(dut.err_protocol.value))
    # 3. out-of-range value: sticky range error
    bad = list(vals)
    bad[0] = man["parameters"]["input_max"] + 1
    await tb.send(bad)
    await tb.receive()
    out["range_flag"] = np.array(int(dut.err_range.value))
    # 4. after a reset the flags clear and the core is exact again
    await tb.reset()
    out2: dict = {}
    await _run_samples(tb, x[:1], out2)
    for k, v in out2.items():
        out[f"final_{k}"] = v
    out["final_flags"] = np.array([int(dut.err_range.value), int(dut.err_protocol.value)])
    _save(job["out"], out, tb)
