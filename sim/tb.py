"""cocotb 2.x testbench for a generated spikeforge core (run on Verilator by sim.runner).

The job comes from the JSON file named by SPIKEFORGE_JOB: the manifest, the input samples, the
stall probability and seed, the cycle budget, whether to sample coverage and record the spike
monitor, and where to write the results. The testbench drives and records; the comparison with
golden is done by the caller (sim.regress, sim.fuzz), so the same results file serves the report.

Three coroutines run concurrently with independent random stalls: the source drives the input
stream sample after sample (so it offers the next sample while the core is still busy), the sink
takes result beats, and a third reads the counters each time ``done`` says a snapshot is ready.
Stimulus is driven by awaiting handshakes and value changes; only when coverage or the spike
monitor is asked for does a monitor sample the trace ports every clock.
"""

from __future__ import annotations

import json
import os

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge, SimTimeoutError, with_timeout

from . import coverage
from .streams import StreamSink, StreamSource, uint
from .xcheck import XCheck

__all__ = ["TB", "state_words"]

PERIOD_NS = 10


def state_words(model, lanes: int) -> list[dict]:
    """Per state-memory word (address order): whether its layer fires, its lanes' thresholds, how many
    lanes are real and whether it is a tsc layer. The trace monitor uses it to classify written words."""
    from golden.geometry import CoreGeometry
    geo = CoreGeometry(model, lanes)
    words = []
    for l, lh in zip(model.layers, geo.layers):
        for g in range(lh.groups):
            thr = [int(v) for v in l.threshold[g * lanes:(g + 1) * lanes]]
            words.append({"fires": bool(lh.fires) and model.coding != "tsc", "thr": thr, "lanes": len(thr),
                          "tsc": model.coding == "tsc"})
    return words


def _field(word: int, f: dict) -> int:
    v = (word >> f["offset"]) & ((1 << f["width"]) - 1)
    if f["signed"] and v >> (f["width"] - 1):
        v -= 1 << f["width"]
    return v


class TB:
    """Owns the clock, the reset, the stream models and the monitors of one core."""

    def __init__(self, dut, job: dict):
        self.dut = dut
        self.job = job
        self.man = man = job["manifest"]
        self.params = man["parameters"]
        self.xf = man["payloads"]["x"]
        self.rf = man["payloads"]["result"]
        self.n_in = self.params["sizes"][0]
        self.n_out = self.params["sizes"][-1]
        self.P = self.params["lanes"]
        self.T = self.params["T"]
        self.counters = man["counters"]
        stall = float(job.get("stall_prob", 0.0))
        seed = int(job.get("seed", 0))
        self.source = StreamSource(dut, "x", dut.clk, stall_prob=stall, seed=seed, period_ns=PERIOD_NS)
        self.sink = StreamSink(dut, "result", dut.clk, stall_prob=stall, seed=seed + 7919, period_ns=PERIOD_NS)
        self.violations: list[str] = []
        # 4-state simulators: every output port is checked for X/Z after reset and on every result beat
        self.xcheck = XCheck(dut, man["ports"]) if job.get("xcheck") else None
        self.samples_done = 0
        self.cover = bool(job.get("coverage"))
        self.spike_rows: list | None = [] if job.get("spikes") else None
        self.state_info = job.get("state_words") or []
        self.v_bits = self.params["v_bits"]

    # ------------------------------------------------------------------------------------ set-up
    async def start(self):
        cocotb.start_soon(Clock(self.dut.clk, PERIOD_NS, unit="ns").start())
        self.source.idle()
        self.sink.idle()
        await self.reset()
        if self.xcheck:
            await ReadOnly()
            self.xcheck.check("after reset")
            await RisingEdge(self.dut.clk)

    async def reset(self, cycles: int = 2):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, cycles)
        self.dut.rst.value = 0
        self.source.idle()
        self.sink.idle()

    def x_word(self, value: int, last: bool) -> int:
        return (int(value) << self.xf["value"]["offset"]) | (int(last) << self.xf["last"]["offset"])

    def x_value(self, word: int) -> int:
        return _field(word, self.xf["value"])

    # ------------------------------------------------------------------------------------ streams
    async def drive(self, x, *, last_at=None) -> list:
        """Send every sample of ``x`` back to back; returns the transferred beats per sample."""
        sent = []
        for values in x:
            la = len(values) - 1 if last_at is None else last_at
            sent.append(await self.source.send([self.x_word(v, i == la) for i, v in enumerate(values)]))
        return sent

    def _held_check(self, before: int, after: int):
        if before != after:
            self.violations.append(f"result beat changed while held against a stall: {before:#x} -> {after:#x}")

    async def collect(self, B: int) -> list:
        """Take B samples' result beats; returns (prediction, counts, membranes, beats) per sample."""
        out = []
        xc = self.xcheck
        probe = (lambda c: xc.check(f"sample {self.samples_done}, result beat {c}")) if xc else None
        for _ in range(B):
            beats = await self.sink.receive(self.n_out, check=self._held_check, probe=probe)
            self.samples_done += 1
            counts, membranes, preds = [], [], set()
            for c, beat in enumerate(beats):
                idx = _field(beat.payload, self.rf["index"])
                if idx != c:
                    self.violations.append(f"result beat {c} carries index {idx}")
                if _field(beat.payload, self.rf["last"]) != int(c == self.n_out - 1):
                    self.violations.append(f"result beat {c}: wrong last flag")
                counts.append(_field(beat.payload, self.rf["count"]))
                membranes.append(_field(beat.payload, self.rf["membrane"]))
                preds.add(_field(beat.payload, self.rf["prediction"]))
            if len(preds) != 1:
                self.violations.append(f"prediction changed within a sample: {sorted(preds)}")
            out.append((min(preds), counts, membranes, beats))
        return out

    async def read_counters(self, B: int) -> list[dict]:
        """One counter snapshot per completed sample: ``done`` is high while it is on the ports."""
        snaps = []
        for _ in range(B):
            await RisingEdge(self.dut.done)
            await ReadOnly()
            snaps.append({n: uint(getattr(self.dut, f"cnt__{n}")) for n in self.counters})
        return snaps

    # ------------------------------------------------------------------------------------ monitor
    async def trace_monitor(self):
        """Every clock: the spike monitor, the state trace and the op trace (coverage, hazards, and the
        spike rows for mismatch localisation)."""
        d = self.dut
        cyc = 0
        last_write, pending_read = {}, set()
        min_raw = self.params.get("min_state_raw_distance")
        ops_in_group, prev_last = 0, False
        tsc = self.params["coding"] == "tsc"
        stcb = self.params["coding"] == "stcb"
        vb, P, T = self.v_bits, self.P, self.T
        self.enc_rows = 0
        while True:
            await RisingEdge(d.clk)
            await ReadOnly()
            cyc += 1
            if d.spk__valid.value:
                enc, layer, t, group, mask = (uint(d.spk__enc), uint(d.spk__layer), uint(d.spk__t),
                                              uint(d.spk__group), uint(d.spk__mask))
                if self.spike_rows is not None:
                    self.spike_rows.append((enc, layer, t, group, mask))
                if self.cover:
                    lanes_firing = sum(1 for p in range(P) if (mask >> (p * T)) & ((1 << T) - 1)) if stcb \
                        else bin(mask).count("1")
                    if lanes_firing >= 2:
                        coverage.hit("spk", "several-in-one-update")
                    if enc and mask:
                        self.enc_rows += 1
                    if tsc and enc and t == T - 1 and mask:
                        coverage.hit("spk", "tsc-off-at-Q")
            if not self.cover:
                continue
            if d.st__rd.value:
                a = uint(d.st__raddr)
                if d.st__wr.value and uint(d.st__waddr) == a:
                    self.violations.append(f"state word {a} read in the cycle it is written (cycle {cyc}): the "
                                           f"read returns the old word")
                if a in pending_read:
                    self.violations.append(f"state RAW hazard: word {a} read again at cycle {cyc} before the "
                                           f"write of its previous read")
                pending_read.add(a)
                if a in last_write:
                    dist = cyc - last_write[a]
                    if min_raw is not None and dist < min_raw:
                        self.violations.append(f"state word {a} read {dist} cycles after its write (minimum "
                                               f"{min_raw})")
                    if dist == min_raw:
                        coverage.hit("st", "raw-at-minimum-distance")
            if d.st__wr.value:
                a = uint(d.st__waddr)
                pending_read.discard(a)
                last_write[a] = cyc
                if d.st__upd.value and a < len(self.state_info):
                    info = self.state_info[a]
                    data = uint(d.st__wdata)
                    lane_bits = self.man["ports"]["st__wdata"]["width"] // P
                    for p in range(info["lanes"]):
                        v = (data >> (p * lane_bits)) & ((1 << vb) - 1)
                        v = v - (1 << vb) if v >> (vb - 1) else v
                        if info["fires"] and v >= info["thr"][p]:
                            coverage.hit("st", "residual-above-threshold")
                        if info["tsc"] and v < 0:
                            coverage.hit("st", "tsc-negative-V")
            if d.op__valid.value:
                if prev_last:
                    coverage.hit("op", "groups-back-to-back")
                null, last = d.op__null.value, d.op__last.value
                if null:
                    coverage.hit("op", "null-op")
                else:
                    ops_in_group += 1
                if last:
                    if ops_in_group >= 4:
                        coverage.hit("op", "many-events")
                    ops_in_group = 0
                prev_last = bool(last)
            else:
                prev_last = False

    # ------------------------------------------------------------------------------------ coverage
    def cover_streams(self, sent: list, got: list):
        """Stream coverage from what the source and sink saw."""
        src, snk = self.source.obs, self.sink.obs
        coverage.hit("x", "offered-while-busy", sum(1 for b in src.beats if b.waited_busy))
        coverage.hit("x", "starved", src.starved_cycles)
        coverage.hit("result", "held", snk.held_cycles)
        M = self.params["input_max"]
        for beats in sent:
            vals = [self.x_value(b.payload) for b in beats]
            if all(v == 0 for v in vals):
                coverage.hit("x", "all-zero-sample")
            if all(v == M for v in vals):
                coverage.hit("x", "saturated-sample")
        for b in range(1, len(sent)):
            if sent[b][0].cycle - got[b - 1][3][-1].cycle == 1:
                coverage.hit("x", "back-to-back")

    def cover_config(self):
        """The configuration of the netlist that ran."""
        p = self.params
        sizes = p["sizes"]
        P, L = p["lanes"], len(sizes) - 1
        coverage.hit("config.coding", p["coding"])
        coverage.hit("config.encoding", p["encoding"])
        coverage.hit("config.readout", p["readout"])
        coverage.hit("config.lanes", "1" if P == 1 else "64" if P == 64 else "2-32")
        coverage.hit("config.layers", "1" if L == 1 else "4" if L == 4 else "2-3")
        if any(n % P for n in sizes[1:]):
            coverage.hit("config.lane_edge", "n_out%P!=0")
        if any(n < P for n in sizes[1:]):
            coverage.hit("config.lane_edge", "n_out<P")
        if sizes[0] % P:
            coverage.hit("config.lane_edge", "n_in%P!=0")
        kernels = p.get("kernels") or []
        if any(h != [1] for h in kernels):
            coverage.hit("config.kernel", "kernel")
        if any(v < 0 for h in kernels for v in h):
            coverage.hit("config.kernel", "negative-tap")
        if L >= 3 and p["coding"] != "tsc":
            coverage.hit("config.buffers", "A-and-B")
        if p["encoding"] == "direct" and not getattr(self, "enc_rows", 0):
            coverage.hit("spk", "no-encoder-rows")
        elif getattr(self, "enc_rows", 0):
            coverage.hit("spk", "encoder-rows", self.enc_rows)

    # ------------------------------------------------------------------------------------ a run
    async def run(self, x) -> dict:
        """Stream every sample of ``x`` and return outputs, counters, observations."""
        B = len(x)
        mon = cocotb.start_soon(self.trace_monitor()) if (self.cover or self.spike_rows is not None) else None
        drive = cocotb.start_soon(self.drive(x))
        snaps = cocotb.start_soon(self.read_counters(B))
        budget = int(self.job.get("max_cycles", 0)) or None
        collect = self.collect(B)
        try:
            got = await (with_timeout(collect, budget * PERIOD_NS, "ns") if budget else collect)
        except SimTimeoutError:
            raise AssertionError(f"the core did not deliver {B} results within {budget} cycles "
                                 f"({len(self.sink.obs.beats)} result beats taken): it hangs") from None
        sent = await drive
        counters = await snaps
        await RisingEdge(self.dut.clk)           # leave the read-only phase: callers may drive next
        if mon is not None:
            mon.cancel()
        out = {"predictions": np.array([g[0] for g in got], np.int64),
               "counts": np.array([g[1] for g in got], np.int64).reshape(B, self.n_out),
               "membranes": np.array([g[2] for g in got], np.int64).reshape(B, self.n_out)}
        for n in self.counters:
            out[f"cnt_{n}"] = np.array([c[n] for c in counters], np.int64)
        self.last_run = (sent, got)
        return out


def _job() -> dict:
    with open(os.environ["SPIKEFORGE_JOB"]) as f:
        return json.load(f)


def _flag(handle) -> int:
    """A 1-bit output, or -1 when a 4-state simulator holds it at X/Z."""
    return uint(handle) if handle.value.is_resolvable else -1


def _unknown_results(tb: TB, B: int, out: dict) -> None:
    """-1 everywhere: a prediction of -1 is no class, so every sample mismatches golden."""
    out["predictions"] = np.full(B, -1, np.int64)
    out["counts"] = np.full((B, tb.n_out), -1, np.int64)
    out["membranes"] = np.full((B, tb.n_out), -1, np.int64)
    for n in tb.counters:
        out[f"cnt_{n}"] = np.full(B, -1, np.int64)


def _save(path: str, out: dict, tb: TB):
    out["err_range"] = np.array(_flag(tb.dut.err_range))
    out["err_protocol"] = np.array(_flag(tb.dut.err_protocol))
    if tb.xcheck:
        out["xz_checks"] = np.array(tb.xcheck.checks)
        out["xz_failed_checks"] = np.array(tb.xcheck.failed)
        out["xz_violations"] = np.array(tb.xcheck.violations, dtype=str)
    out["stall_cycles"] = np.array(tb.source.obs.idle_cycles + tb.sink.obs.idle_cycles)
    out["busy_offers"] = np.array(sum(1 for b in tb.source.obs.beats if b.waited_busy))
    out["violations"] = np.array(json.dumps(tb.violations))
    if tb.cover:
        out["coverage"] = np.array(json.dumps(coverage.export()))
    tmp = path + ".tmp.npz"
    np.savez(tmp, **out)
    os.replace(tmp, path)


@cocotb.test()
async def stream_samples(dut):
    """Stream the job's samples back to back with independent random stalls on both streams."""
    job = _job()
    tb = TB(dut, job)
    await tb.start()
    x = np.load(job["inputs"])
    if tb.xcheck and tb.xcheck.failed:
        out = {}
        _unknown_results(tb, len(x), out)     # X/Z after reset: the handshakes cannot be trusted
        if tb.spike_rows is not None:
            nbytes = (tb.man["ports"]["spk__mask"]["width"] + 7) // 8
            out["dbg"], out["dbg_mask"] = np.zeros((0, 4), np.int64), np.zeros((0, nbytes), np.uint8)
        _save(job["out"], out, tb)
        return
    out = await tb.run(x)
    if tb.cover:
        tb.cover_streams(*tb.last_run)
        tb.cover_config()
    if tb.spike_rows is not None:
        rows = tb.spike_rows
        # masks can be wider than 64 bits (P lanes, or P x T slots for stcb): keep them as bytes
        nbytes = (tb.man["ports"]["spk__mask"]["width"] + 7) // 8
        out["dbg"] = np.array([r[:4] for r in rows], dtype=np.int64).reshape(-1, 4)
        out["dbg_mask"] = np.array([list(r[4].to_bytes(nbytes, "little")) for r in rows],
                                   dtype=np.uint8).reshape(-1, nbytes)
    _save(job["out"], out, tb)


@cocotb.test()
async def protocol_abuse(dut):
    """A reset mid-inference, `last` on the wrong beat, an out-of-range value; flags and recovery."""
    job = _job()
    job = {**job, "stall_prob": 0.0}
    tb = TB(dut, job)
    tb.cover = bool(job.get("coverage"))
    await tb.start()
    x = np.load(job["inputs"])
    out: dict = {}
    vals = [int(v) for v in x[0]]
    # 1. a reset in the middle of an inference, then a clean sample
    await tb.drive([vals])
    await ClockCycles(dut.clk, int(job.get("reset_after", 7)))
    await ReadOnly()
    busy = not dut.x__ready.value
    await RisingEdge(dut.clk)
    await tb.reset()
    await ReadOnly()
    flags = [int(dut.err_range.value), int(dut.err_protocol.value)]
    await RisingEdge(dut.clk)
    if tb.cover and busy:
        coverage.hit("fault", "reset-while-busy")
    first = await tb.run(x[:1])
    out.update({k: v for k, v in first.items()})
    out["after_reset_flags"] = np.array(flags)
    # 2. `last` on the wrong beat (a 1-input model cannot misplace it, so it omits it): sticky flag,
    # the result still streams
    sink = cocotb.start_soon(tb.collect(1))
    await tb.drive([vals], last_at=0 if len(vals) > 1 else -1)
    await sink
    await ReadOnly()
    out["protocol_flag"] = np.array(int(dut.err_protocol.value))
    if tb.cover and dut.err_protocol.value:
        coverage.hit("fault", "wrong-last-flagged")
    await RisingEdge(dut.clk)
    # 3. an out-of-range value: sticky range flag
    bad = list(vals)
    bad[0] = tb.params["input_max"] + 1
    sink = cocotb.start_soon(tb.collect(1))
    await tb.drive([bad])
    await sink
    await ReadOnly()
    out["range_flag"] = np.array(int(dut.err_range.value))
    if tb.cover and dut.err_range.value:
        coverage.hit("fault", "out-of-range-flagged")
    await RisingEdge(dut.clk)
    # 4. after a reset the flags clear and the core is exact again
    await tb.reset()
    await ReadOnly()
    final_flags = [int(dut.err_range.value), int(dut.err_protocol.value)]
    if tb.cover and final_flags == [0, 0]:
        coverage.hit("fault", "flags-clear-after-reset")
    await RisingEdge(dut.clk)
    again = await tb.run(x[:1])
    for k, v in again.items():
        out[f"final_{k}"] = v
    out["final_flags"] = np.array(final_flags)
    _save(job["out"], out, tb)
