"""Cycle and memory-access model of the spikeforge core (see docs/spec.md, "Counters").

The core is output-stationary: for layer ``l`` at step ``t`` it walks its ``G_l = ceil(n_out/P)``
neuron groups; for each group it streams every input event of that step (one weight word per
event and cycle) into a P-lane accumulator register, and the last event of the group also
issues the neuron update of those P neurons. A group with no input events still costs one
(null) op, for its bias and leak-free update. Every figure below is a constant of the RTL's
sequencer and is checked against it sample by sample.
"""

from __future__ import annotations

__all__ = [
    "LOAD_CYCLES_PER_BEAT", "ENC_DRAIN", "LAYER_SETUP", "LAYER_DRAIN", "FINISH_CYCLES",
    "READOUT_CYCLES_PER_CLASS", "groups", "COUNTERS",
]

LOAD_CYCLES_PER_BEAT = 1      # one accepted input beat per cycle
ENC_DRAIN = 1                 # encoder pipeline: issue -> compute/write
LAYER_SETUP = 1               # sums the per-lane event counts, picks the first bank
LAYER_DRAIN = 3               # bank read -> weight read -> accumulate -> neuron update/write
FINISH_CYCLES = 1             # argmax stage after the last update
READOUT_CYCLES_PER_CLASS = 2  # state read, then the result beat

# One vocabulary for every coding; docs/spec.md section 4 says what a counter means under each one
# (tsc: ``spikes`` are ON + OFF events; stcb: ``event_reads``/``event_writes`` are T-bit train words).
COUNTERS = ("cycles", "weight_reads", "state_reads", "state_writes", "param_reads", "syn_ops",
            "neuron_updates", "event_reads", "event_writes", "input_writes", "spikes")


def groups(n: int, lanes: int) -> int:
    """Number of P-lane words needed for ``n`` neurons."""
    return -(-n // lanes)
