"""Port groups of the spiking core: counters and the three observation monitors.

Each group is a :class:`wiring.Signature`, so a top-level core exposes ``cnt``, ``spk``, ``st`` and
``op`` instead of dozens of loose ports; in Verilog they become ``cnt__cycles``, ``spk__valid`` and so
on. The monitors are what the testbenches sample coverage from (what the hardware did, not what the
stimulus planned) and what the regression uses to localise a mismatch.
"""

from __future__ import annotations

from amaranth.lib import wiring
from amaranth.lib.wiring import Out

__all__ = ["CounterSignature", "SpikeMonitorSignature", "StateTraceSignature", "OpTraceSignature", "ScatterTraceSignature",
           "counter_ports"]


def counter_ports(counters: tuple[str, ...], layers: int) -> list[str]:
    """The counter members of a core: the totals except ``spikes``, which is reported per network
    layer (``spikes_l<i>``) and for the input encoder (``spikes_enc``)."""
    return [c for c in counters if c != "spikes"] + [f"spikes_l{i}" for i in range(layers)] + ["spikes_enc"]


class CounterSignature(wiring.Signature):
    """Counters of the last completed sample, all ``width`` bits, held until the next one completes.

    Members are named by :func:`counter_ports` (docs/spec.md section 4 defines each)."""

    def __init__(self, names, width: int):
        self._names = tuple(names)
        super().__init__({n: Out(width) for n in self._names})

    @property
    def names(self) -> tuple[str, ...]:
        return self._names


class SpikeMonitorSignature(wiring.Signature):
    """Every neuron-group update, in the cycle it happens.

    Members
    -------
    valid : Out(1)
    enc : Out(1)
        The row belongs to the input encoder (tsc: the ON/OFF generator of the source of ``layer``).
    layer, t, group : Out(...)
    mask : Out(mask_bits)
        Spike (or event) bits of the group's P lanes; stcb: P x T bits, lane p slot t at bit p*T + t.
    """

    def __init__(self, *, layer_bits: int, t_bits: int, group_bits: int, mask_bits: int):
        super().__init__({"valid": Out(1), "enc": Out(1), "layer": Out(layer_bits), "t": Out(t_bits),
                          "group": Out(group_bits), "mask": Out(mask_bits)})


class StateTraceSignature(wiring.Signature):
    """Neuron-state memory traffic: each read that feeds an update (or the tsc generator) and each
    write, with its address and the written word (P lanes: V, and for tsc the current C above it).
    ``upd`` is high when the write is a neuron update, low for the tsc generator's countdown (and a
    tsc maxpool2d layer's value writes). ``fwd`` marks a read whose word is not used: a tsc maxpool2d
    OFF's read of a word that an op still in flight writes (that op's word is forwarded instead), so
    the read may meet the word's pending write."""

    def __init__(self, *, addr_bits: int, data_bits: int):
        super().__init__({"rd": Out(1), "raddr": Out(addr_bits), "wr": Out(1), "waddr": Out(addr_bits),
                          "wdata": Out(data_bits), "upd": Out(1), "fwd": Out(1)})


class ScatterTraceSignature(wiring.Signature):
    """What the conv and pool scatter did, one strobe per cycle each (the coverage points of
    conv2d and maxpool2d layers; all low on a core without spatial layers):

    - ``no_offset``: the conv address generator emitted the null op of an event with no valid kernel
      offset (an event at a border whose offsets all fall outside the output map, stride 2);
    - ``forwarded``: an accumulator op's old word came from one of the three ops before it (a
      read-modify-write hazard resolved by forwarding);
    - ``merged``: a pool op met a window that already had a spike in this step (rate: a set bit
      ORed again; tsc: a max over two OFF times);
    - ``empty_step``: a conv2d or maxpool2d scatter whose source had no event this step (its sweep
      follows anyway);
    - ``stall``: the reader held an event because the conv address generator was still expanding
      the one before (backpressure from the scatter to the reader)."""

    def __init__(self):
        super().__init__({"no_offset": Out(1), "forwarded": Out(1), "merged": Out(1), "empty_step": Out(1),
                          "stall": Out(1)})


class OpTraceSignature(wiring.Signature):
    """The accumulation ops as they reach the accumulator: ``valid`` each op, ``null`` for a group
    with no input event, ``last`` on the op that completes a group (its update follows)."""

    def __init__(self):
        super().__init__({"valid": Out(1), "null": Out(1), "last": Out(1)})

