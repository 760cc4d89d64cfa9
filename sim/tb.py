"""cocotb 2.x testbench for a generated spikeforge core, inside its HDL harness (``sim.harness``).

The job comes from the JSON file named by SPIKEFORGE_JOB: the manifest, the input samples, the
stall probability and seed, the cycle budget, whether to export coverage and record the spike
monitor, and where to write the results. The testbench drives and records; the comparison with
golden is done by the caller (sim.regress, sim.fuzz), so the same results file serves the report.

The harness streams the samples itself (back to back, so the next sample is offered while the core
is busy), with independent random stalls on the input and the result stream, records every result
beat and every counter snapshot, and runs the state-memory hazard checks and the coverage monitors in
the simulator. Python loads a chunk of samples, waits once for the harness to report it complete (with
a cycle budget: a core that stops making progress fails with one line naming the sample and the
phase), and reads the records. Only the spike record for mismatch localisation (one sample) samples a
port every clock from Python.

The protocol-fault test drives the core's stream ports from Python (``sim.streams`` on the harness's
``py_*`` inputs), because it has to misbehave on purpose.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge, SimTimeoutError, with_timeout

from . import coverage
from .harness import CDEPTH, COVER_EVENTS, HANG_FILE, PERIOD_NS, RDEPTH, VIOLATIONS, XDEPTH
from .streams import StreamSink, StreamSource, uint
from .xcheck import XCheck

__all__ = ["TB", "Hang", "state_words", "stinfo_words", "HANG_FILE"]


class Hang(AssertionError):
    """The core stopped making progress within its cycle budget."""


def state_words(model, lanes: int) -> list[dict]:
    """Per state-memory word (address order): whether its layer fires, its lanes' thresholds, how many
    lanes are real and whether it is a tsc layer. The harness's state monitor uses it to classify written
    words (a membrane still above threshold after firing, a negative tsc membrane)."""
    from golden.geometry import CoreGeometry
    geo = CoreGeometry(model, lanes)
    words = []
    for l, lh in zip(model.layers, geo.layers):
        if lh.kind == "maxpool2d":                  # no state words
            continue
        # a dense group's words, or a conv2d layer's N words (og, y, x): the lanes of channel group og
        per_group = lh.out_shape[1] * lh.out_shape[2] if lh.kind == "conv2d" else 1
        for g in range(lh.groups):
            thr = [int(v) for v in l.threshold[g * lanes:(g + 1) * lanes]]
            for _ in range(per_group):
                words.append({"fires": bool(lh.fires) and model.coding != "tsc", "thr": thr, "lanes": len(thr),
                              "tsc": model.coding == "tsc"})
    return words


def stinfo_words(words: list[dict], v_bits: int) -> list[int]:
    """``state_words`` packed as the harness's ``stinfo`` memory: fires, tsc, lanes (7 bits), then each
    lane's threshold in ``v_bits + 2`` bits (two's complement)."""
    tw = v_bits + 2
    out = []
    for w in words:
        word = int(w["fires"]) | int(w["tsc"]) << 1 | w["lanes"] << 2
        for p, t in enumerate(w["thr"]):
            word |= (int(t) & ((1 << tw) - 1)) << (9 + p * tw)
        out.append(word)
    return out


def _field(word: int, f: dict) -> int:
    v = (word >> f["offset"]) & ((1 << f["width"]) - 1)
    if f["signed"] and v >> (f["width"] - 1):
        v -= 1 << f["width"]
    return v


def _read_hex(path: Path, n: int) -> list:
    """``$writememh`` output: n words (int), or None for a word with X/Z digits (4-state simulators)."""
    if n == 0:
        return []
    words = []
    for line in path.read_text().split("\n"):
        line = line.split("//", 1)[0].strip()
        if not line or line.startswith("@"):
            continue
        for tok in line.split():
            try:
                words.append(int(tok, 16))
            except ValueError:
                words.append(None)
    if len(words) != n:
        raise AssertionError(f"{path.name}: {len(words)} words recorded, expected {n}")
    return words


class TB:
    """Owns the harness's controls, the Python-driven stream models and the spike monitor of one core."""

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
        self.work = Path(job["out"]).parent
        self.stall = float(job.get("stall_prob", 0.0))
        self.seed = int(job.get("seed", 0))
        self.budget = int(job.get("max_cycles", 0)) or 10_000_000
        # Python-driven streams, for the protocol-fault test only (the harness drives ordinary runs)
        self.source = StreamSource(dut, "x", dut.clk, stall_prob=self.stall, seed=self.seed, period_ns=PERIOD_NS,
                                   drive="py_")
        self.sink = StreamSink(dut, "result", dut.clk, stall_prob=self.stall, seed=self.seed + 7919,
                               period_ns=PERIOD_NS, drive="py_")
        self.violations: list[str] = []
        # 4-state simulators: every output port is checked for X/Z after reset (here) and on every result
        # beat (by the harness)
        self.xcheck = XCheck(dut, man["ports"]) if job.get("xcheck") else None
        self.samples_done = 0
        self.cover = bool(job.get("coverage"))
        self.spike_rows: list | None = [] if job.get("spikes") else None
        words = job.get("state_words") or []
        self.stinfo = stinfo_words(words, self.params["v_bits"])
        self.events = {n: 0 for n in COVER_EVENTS}
        self.back_to_back = 0
        self.stall_cycles = 0
        self.busy_offers = 0
        self.run_seconds = 0.0      # wall time of the harness runs (the simulation proper, no start-up)

    # ------------------------------------------------------------------------------------ set-up
    async def start(self):
        d = self.dut
        for name in ("hx_enable", "load_req", "dump_req", "hx_nbeats", "hx_nres", "hx_nsamples", "src_thr",
                     "snk_thr", "src_seed", "snk_seed", "py_x__payload", "py_x__valid", "py_result__ready"):
            getattr(d, name).value = 0
        await self.reset()
        (self.work / "stinfo.hex").write_text("".join(f"{w:x}\n" for w in self.stinfo) or "0\n")
        if self.xcheck:
            await ReadOnly()
            self.xcheck.check("after reset")
            await RisingEdge(d.clk)

    async def reset(self, cycles: int = 2):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, cycles)
        self.dut.rst.value = 0
        self.source.idle()
        self.sink.idle()

    async def _pulse(self, name: str):
        sig = getattr(self.dut, name)
        sig.value = 1
        await ClockCycles(self.dut.clk, 2)
        sig.value = 0
        await RisingEdge(self.dut.clk)

    def x_word(self, value: int, last: bool) -> int:
        return (int(value) << self.xf["value"]["offset"]) | (int(last) << self.xf["last"]["offset"])

    def x_value(self, word: int) -> int:
        return _field(word, self.xf["value"])

    # ------------------------------------------------------------------------------------ budgets
    async def within(self, coro, phase: str, cycles: int | None = None):
        """Await ``coro`` for at most ``cycles`` (default: the job's budget); a hang fails with one line."""
        cycles = cycles or self.budget
        try:
            return await with_timeout(coro, cycles * PERIOD_NS, "ns")
        except SimTimeoutError:
            self._hang(f"the core hangs: {phase}, no progress within {cycles} cycles")

    def _hang(self, msg: str):
        (self.work / HANG_FILE).write_text(msg + "\n")
        raise Hang(msg)

    # ------------------------------------------------------------------------------------ harness runs
    def _chunks(self, B: int) -> list[tuple[int, int]]:
        per = max(1, min(XDEPTH // max(1, self.n_in), RDEPTH // self.n_out, CDEPTH))
        return [(s, min(B, s + per)) for s in range(0, B, per)]

    def _phase(self, s0: int, B: int) -> str:
        """Where a chunk of B samples from sample s0 stopped, from what the harness saw."""
        d = self.dut
        sent, res, snaps = uint(d.h_sent), uint(d.h_results), uint(d.h_snaps)
        s = min(res // self.n_out, snaps, B - 1)
        if sent < (s + 1) * self.n_in:
            return f"sample {s0 + s}, input: {sent - s * self.n_in} of {self.n_in} beats accepted"
        k = res - s * self.n_out
        if k < self.n_out:
            if k == 0:
                return f"sample {s0 + s}, computing: all {self.n_in} input beats accepted, no result beat"
            return f"sample {s0 + s}, result: {k} of {self.n_out} result beats taken"
        return f"sample {s0 + s}, counters: done never rose after the last result beat"

    async def run(self, x) -> dict:
        """Stream every sample of ``x`` through the harness; returns outputs, counters, observations."""
        d = self.dut
        B = len(x)
        out = {"predictions": np.zeros(B, np.int64), "counts": np.zeros((B, self.n_out), np.int64),
               "membranes": np.zeros((B, self.n_out), np.int64)}
        for n in self.counters:
            out[f"cnt_{n}"] = np.zeros(B, np.int64)
        mon = cocotb.start_soon(self.spike_monitor()) if self.spike_rows is not None else None
        thr = min(65535, round(self.stall * 65536))
        t0 = time.perf_counter()
        for ci, (s0, s1) in enumerate(self._chunks(B)):
            n = s1 - s0
            words = [self.x_word(v, i == len(row) - 1) for row in x[s0:s1] for i, v in enumerate(row)]
            (self.work / "stim.hex").write_text("".join(f"{w:x}\n" for w in words))
            d.hx_nbeats.value = len(words)
            d.hx_nres.value = n * self.n_out
            d.hx_nsamples.value = n
            d.src_thr.value = thr
            d.snk_thr.value = thr
            d.src_seed.value = (self.seed * 2654435761 + 2 * ci) & 0xFFFFFFFF
            d.snk_seed.value = (self.seed * 2654435761 + 2 * ci + 1 + 0x9E3779B9) & 0xFFFFFFFF
            await self._pulse("load_req")
            d.hx_enable.value = 1
            try:
                await with_timeout(RisingEdge(d.h_all_done), self.budget * PERIOD_NS, "ns")
            except SimTimeoutError:
                self._hang(f"the core hangs: {self._phase(s0, n)}, no progress within {self.budget} cycles")
            d.hx_enable.value = 0
            await self._pulse("dump_req")
            self._absorb(out, s0, n)
        if mon is not None:
            mon.cancel()
        self.samples_done += B
        self.run_seconds += time.perf_counter() - t0
        return out

    def _absorb(self, out: dict, s0: int, n: int):
        """Read a completed chunk's records and the harness's monitors."""
        d, w = self.dut, self.work
        beats = _read_hex(w / "res.hex", n * self.n_out)
        rcyc = _read_hex(w / "rcyc.hex", n * self.n_out)
        snaps = _read_hex(w / "cnt.hex", n)
        scyc = _read_hex(w / "scyc.hex", uint(d.h_samples_in))
        for b in range(n):
            counts, membranes, preds = [], [], set()
            for c in range(self.n_out):
                beat = beats[b * self.n_out + c]
                if beat is None:
                    counts.append(-1), membranes.append(-1), preds.add(-1)
                    continue
                idx = _field(beat, self.rf["index"])
                if idx != c:
                    self.violations.append(f"sample {s0 + b}: result beat {c} carries index {idx}")
                if _field(beat, self.rf["last"]) != int(c == self.n_out - 1):
                    self.violations.append(f"sample {s0 + b}: result beat {c}: wrong last flag")
                counts.append(_field(beat, self.rf["count"]))
                membranes.append(_field(beat, self.rf["membrane"]))
                preds.add(_field(beat, self.rf["prediction"]))
            if len(preds) != 1:
                self.violations.append(f"sample {s0 + b}: prediction changed within a sample: {sorted(preds)}")
            out["predictions"][s0 + b] = min(preds)
            out["counts"][s0 + b] = counts
            out["membranes"][s0 + b] = membranes
            snap = snaps[b]
            for i, name in enumerate(self.counters):
                out[f"cnt_{name}"][s0 + b] = -1 if snap is None else (snap >> (32 * i)) & 0xFFFFFFFF
        # a sample's first beat accepted the cycle after the previous sample's last result beat
        for b in range(1, min(n, len(scyc))):
            if scyc[b] is not None and rcyc[b * self.n_out - 1] is not None \
                    and scyc[b] - rcyc[b * self.n_out - 1] == 1:
                self.back_to_back += 1
        for name in COVER_EVENTS:
            self.events[name] += uint(getattr(d, name))
        for name, msg in VIOLATIONS.items():
            k = uint(getattr(d, name))
            if k:
                self.violations.append(f"{msg}: {k} times, first at cycle {uint(getattr(d, name + '_cycle'))}, "
                                       f"{'result beat' if 'held' in name else 'state word'} "
                                       f"{uint(getattr(d, name + '_addr'))}")
        if self.xcheck:
            self.xcheck.checks += uint(d.xz_checks)
            failed = uint(d.xz_failed)
            if failed:
                self.xcheck.failed += failed
                beat = uint(d.xz_first_beat)
                # the harness numbers the output ports in the manifest's order
                outs = [n for n, p in self.man["ports"].items() if p["direction"] == "output"]
                self.xcheck.violations.append(f"sample {s0 + beat // self.n_out}, result beat {beat % self.n_out}: "
                                              f"{outs[uint(d.xz_first_port)]} has X/Z bits")
        self.busy_offers += uint(d.c_busy_offer)
        self.stall_cycles += uint(d.s_src_idle) + uint(d.s_snk_idle)

    # ------------------------------------------------------------------------------------ Python-driven
    async def drive(self, x, *, last_at=None) -> list:
        """Send every sample of ``x`` from Python (protocol-fault test); returns the beats per sample."""
        sent = []
        for values in x:
            la = len(values) - 1 if last_at is None else last_at
            sent.append(await self.source.send([self.x_word(v, i == la) for i, v in enumerate(values)]))
        return sent

    def _held_check(self, before: int, after: int):
        if before != after:
            self.violations.append(f"result beat changed while held against a stall: {before:#x} -> {after:#x}")

    async def collect(self, B: int) -> list:
        """Take B samples' result beats from Python; returns (prediction, counts, membranes, beats) each."""
        out = []
        for _ in range(B):
            beats = await self.sink.receive(self.n_out, check=self._held_check)
            self.samples_done += 1
            preds = {_field(b.payload, self.rf["prediction"]) for b in beats}
            out.append((min(preds), [_field(b.payload, self.rf["count"]) for b in beats],
                        [_field(b.payload, self.rf["membrane"]) for b in beats], beats))
        return out

    # ------------------------------------------------------------------------------------ spike record
    async def spike_monitor(self):
        """Every clock: the spike monitor's rows, for mismatch localisation (one sample at a time)."""
        d = self.dut
        while True:
            await RisingEdge(d.clk)
            await ReadOnly()
            if d.spk__valid.value:
                self.spike_rows.append((uint(d.spk__enc), uint(d.spk__layer), uint(d.spk__t), uint(d.spk__group),
                                        uint(d.spk__mask)))

    # ------------------------------------------------------------------------------------ coverage
    def cover_run(self, samples: int):
        """Functional coverage from what the harness's monitors counted (every bin a hardware event)."""
        e = self.events
        coverage.hit("x", "offered-while-busy", e["c_busy_offer"])
        coverage.hit("x", "starved", e["c_starved"])
        coverage.hit("x", "all-zero-sample", e["c_all_zero"])
        coverage.hit("x", "saturated-sample", e["c_saturated"])
        coverage.hit("x", "back-to-back", self.back_to_back)
        coverage.hit("result", "held", e["c_held"])
        coverage.hit("spk", "several-in-one-update", e["c_several"])
        coverage.hit("spk", "encoder-rows", e["c_enc_rows"])
        if self.params["encoding"] == "direct" and samples and not e["c_enc_rows"]:
            coverage.hit("spk", "no-encoder-rows")
        coverage.hit("spk", "tsc-off-at-Q", e["c_tsc_off_q"])
        coverage.hit("spk", "buffer-B-written", e["c_buf_b"])
        coverage.hit("st", "raw-at-minimum-distance", e["c_raw_min"])
        coverage.hit("st", "residual-above-threshold", e["c_residual"])
        coverage.hit("st", "tsc-negative-V", e["c_tsc_neg"])
        coverage.hit("op", "null-op", e["c_null_op"])
        coverage.hit("op", "many-events", e["c_many"])
        coverage.hit("op", "groups-back-to-back", e["c_b2b_groups"])
        coverage.hit("scatter", "no-valid-offset", e["c_no_offset"])
        coverage.hit("scatter", "forwarded-hazard", e["c_acc_fwd"])
        coverage.hit("scatter", "pool-window-several-spikes", e["c_pool_merge"])
        coverage.hit("scatter", "sweep-after-empty-step", e["c_empty_step"])
        coverage.hit("scatter", "scatter-backpressure", e["c_scatter_stall"])


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
    out["stall_cycles"] = np.array(tb.stall_cycles)
    out["busy_offers"] = np.array(tb.busy_offers)
    out["run_seconds"] = np.array(tb.run_seconds)
    out["cover_events"] = np.array(json.dumps({**tb.events, "back_to_back": tb.back_to_back}))
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
        tb.cover_run(len(x))
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
    await tb.start()
    x = np.load(job["inputs"])
    out: dict = {}
    vals = [int(v) for v in x[0]]
    one = max(1, tb.budget)
    # 1. a reset in the middle of an inference, then a clean sample
    await tb.within(tb.drive([vals]), "sample 0 (before the mid-inference reset), input", one)
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
    await tb.within(tb.drive([vals], last_at=0 if len(vals) > 1 else -1), "the sample with a misplaced last, input")
    await tb.within(sink, "the sample with a misplaced last, result")
    await ReadOnly()
    out["protocol_flag"] = np.array(int(dut.err_protocol.value))
    if tb.cover and dut.err_protocol.value:
        coverage.hit("fault", "wrong-last-flagged")
    await RisingEdge(dut.clk)
    # 3. an out-of-range value: sticky range flag
    bad = list(vals)
    bad[0] = tb.params["input_max"] + 1
    sink = cocotb.start_soon(tb.collect(1))
    await tb.within(tb.drive([bad]), "the sample with an out-of-range value, input")
    await tb.within(sink, "the sample with an out-of-range value, result")
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
    if tb.cover:
        tb.cover_run(2)
    _save(job["out"], out, tb)
