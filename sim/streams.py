"""Generic valid/ready stream models for cocotb 2.x: a source that drives beats with random idle
cycles, and a sink that takes beats with random not-ready cycles.

Both run as independent coroutines, so a source keeps offering its next beat while the device is
busy (``valid`` high, ``ready`` low) and a sink stalls while the device has a beat waiting. Each
records what it *observed* at the clock edges it took part in (a beat transferred, the device busy
while a beat was offered, the device waiting for a beat, the device holding a beat against a stall);
coverage and the no-loss/no-duplication checks are built from those observations.

They await handshakes and value changes instead of polling every clock, so Verilator runs at full
speed while the device is busy.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from cocotb.triggers import ReadOnly, RisingEdge

__all__ = ["StreamSource", "StreamSink", "Beat", "uint"]


def uint(handle) -> int:
    """Unsigned value of a port; 1-bit ports read as Logic, wider ones as LogicArray."""
    v = handle.value
    return v.to_unsigned() if hasattr(v, "to_unsigned") else int(v)


def cycle_of(clock_period_ns: float) -> int:
    from cocotb.utils import get_sim_time
    return int(get_sim_time("ns") // clock_period_ns)


@dataclass
class Beat:
    """One transferred beat: its payload and the clock cycle of the edge that transferred it."""

    payload: int
    cycle: int
    waited_busy: bool = False       # the beat was offered while the device was not ready


@dataclass
class _Observed:
    beats: list = field(default_factory=list)
    busy_offers: int = 0            # beats that found valid=1, ready=0 at an edge
    starved_cycles: int = 0         # edges with ready=1, valid=0 between beats of one burst (source)
    held_cycles: int = 0            # edges with valid=1, ready=0 (sink stalls while a beat waits)
    idle_cycles: int = 0            # cycles the model itself spent idle (stall injection)


class _Port:
    """``<prefix>__{valid,ready,payload}``; the signals this side drives may carry a prefix of their own
    (``drive``): the harness (sim.harness) takes a Python-driven stream on its ``py_*`` inputs."""

    def __init__(self, dut, prefix: str, driven: tuple = (), drive: str = ""):
        def sig(name):
            return getattr(dut, f"{drive if name in driven else ''}{prefix}__{name}")
        self.valid, self.ready, self.payload = sig("valid"), sig("ready"), sig("payload")


class _Endpoint:
    """What a source and a sink share: the port, the clock, their own random stalls, the observations."""

    DRIVEN: tuple = ()

    def __init__(self, dut, prefix: str, clk, *, stall_prob: float, seed: int, period_ns: float, drive: str = ""):
        self.port = _Port(dut, prefix, self.DRIVEN, drive)
        self.clk = clk
        self.stall_prob = stall_prob
        self.rng = random.Random(seed)
        self.period = period_ns
        self.obs = _Observed()

    def _stall_cycles(self) -> int:
        """Idle cycles before the next beat: each drawn with probability ``stall_prob``."""
        n = 0
        while self.stall_prob and self.rng.random() < self.stall_prob:
            n += 1
        return n


class StreamSource(_Endpoint):
    """Drives the device's input stream ``<prefix>__{valid,ready,payload}``.

    ``stall_prob``: before each beat, idle cycles are drawn (each with this probability) during which
    ``valid`` is low; the random generator is the source's own, independent of the sink's.
    """

    DRIVEN = ("valid", "payload")

    def __init__(self, dut, prefix: str, clk, *, stall_prob: float = 0.0, seed: int = 0, period_ns: float = 10.0,
                 drive: str = ""):
        super().__init__(dut, prefix, clk, stall_prob=stall_prob, seed=seed, period_ns=period_ns, drive=drive)

    def idle(self):
        self.port.valid.value = 0

    async def send(self, payloads) -> list[Beat]:
        """Drive ``payloads`` as one burst; returns the beats as transferred."""
        p, out = self.port, []
        for i, word in enumerate(payloads):
            n = self._stall_cycles()
            if n:
                p.valid.value = 0
                self.obs.idle_cycles += n
                for _ in range(n):
                    await ReadOnly()
                    if i and p.ready.value:
                        self.obs.starved_cycles += 1    # the device was ready and we had nothing for it
                    await RisingEdge(self.clk)
            p.payload.value = int(word)
            p.valid.value = 1
            await ReadOnly()
            waited = not p.ready.value
            if waited:
                self.obs.busy_offers += 1
            while not p.ready.value:
                await RisingEdge(p.ready)
                await ReadOnly()
            await RisingEdge(self.clk)            # valid & ready at this edge: the beat transfers
            beat = Beat(int(word), cycle_of(self.period), waited)
            out.append(beat)
            self.obs.beats.append(beat)
        p.valid.value = 0
        return out


class StreamSink(_Endpoint):
    """Takes beats from the device's output stream ``<prefix>__{valid,ready,payload}``.

    ``stall_prob``: before each beat, cycles with ``ready`` low are drawn; if the device offers a beat
    during them, that is recorded as a held beat (the device must keep it stable until taken).
    """

    DRIVEN = ("ready",)

    def __init__(self, dut, prefix: str, clk, *, stall_prob: float = 0.0, seed: int = 1, period_ns: float = 10.0,
                 drive: str = ""):
        super().__init__(dut, prefix, clk, stall_prob=stall_prob, seed=seed, period_ns=period_ns, drive=drive)

    def idle(self):
        self.port.ready.value = 0

    async def receive(self, n: int, *, check=None, probe=None) -> list[Beat]:
        """Take ``n`` beats; ``check(payload_before_stall, payload_at_transfer)`` may verify that a held
        beat did not change while the sink stalled; ``probe(k)`` runs in the read-only phase of beat k's
        transfer cycle (X/Z checks of the outputs)."""
        p, out = self.port, []
        for _ in range(n):
            k = self._stall_cycles()
            held_word = None
            if k:
                p.ready.value = 0
                self.obs.idle_cycles += k
                for _ in range(k):
                    await ReadOnly()
                    if p.valid.value:
                        self.obs.held_cycles += 1
                        held_word = uint(p.payload) if held_word is None else held_word
                    await RisingEdge(self.clk)
            p.ready.value = 1
            await ReadOnly()
            while not p.valid.value:
                await RisingEdge(p.valid)
                await ReadOnly()
            if probe is not None:
                probe(len(out))
            word = uint(p.payload)
            if held_word is not None and check is not None:
                check(held_word, word)
            await RisingEdge(self.clk)            # transfer
            beat = Beat(word, cycle_of(self.period))
            out.append(beat)
            self.obs.beats.append(beat)
        p.ready.value = 0
        return out

