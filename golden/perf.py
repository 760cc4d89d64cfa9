"""Cycle and memory-access model of the spikeforge core: the one place its counters are defined.

``golden.engine`` computes *what happens* (spikes and events per layer and step, active trains);
:func:`count` turns that activity into the counters the RTL reports, from the constants of the
core's sequencer below. docs/spec.md section 4 defines every counter; the RTL is checked against
these numbers sample by sample.

The core is output-stationary: for layer ``l`` at step ``t`` it walks its ``G_l = ceil(n_out/P)``
neuron groups; for each group it streams every input event of that step (one weight word per
event and cycle) into a P-lane accumulator, and the last event of the group also issues the
neuron update of those P neurons. A group with no input events still costs one (null) op.

conv2d and maxpool2d layers (schema 2) scatter their input events into an accumulator memory and
then sweep their output words (docs/spec.md section 3); :func:`spatial_layer` counts them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "LOAD_CYCLES_PER_BEAT", "ENC_DRAIN", "LAYER_SETUP", "LAYER_DRAIN", "FINISH_CYCLES",
    "READOUT_CYCLES_PER_CLASS", "CONV_SCATTER_DRAIN", "CONV_SWEEP_DRAIN", "groups", "COUNTERS", "Activity",
    "count", "spatial_layer",
]

LOAD_CYCLES_PER_BEAT = 1      # one accepted input beat per cycle
ENC_DRAIN = 1                 # encoder pipeline: issue -> compute/write
LAYER_SETUP = 1               # sums the per-lane event counts, picks the first bank
LAYER_DRAIN = 3               # bank read -> weight read -> accumulate -> neuron update/write
FINISH_CYCLES = 1             # argmax stage after the last update
READOUT_CYCLES_PER_CLASS = 2  # state read, then the result beat

# One vocabulary for every coding; docs/spec.md section 4 says what a counter means under each one
# (tsc: ``spikes`` are ON + OFF events; stcb: ``event_reads``/``event_writes`` are T-bit train words).
# ``acc_reads``/``acc_writes``: the accumulator memory of conv2d and maxpool2d layers (0 for dense).
COUNTERS = ("cycles", "weight_reads", "state_reads", "state_writes", "param_reads", "syn_ops",
            "neuron_updates", "event_reads", "event_writes", "input_writes", "spikes", "acc_reads", "acc_writes")


def groups(n: int, lanes: int) -> int:
    """Number of P-lane words needed for ``n`` neurons."""
    return -(-n // lanes)


@dataclass
class Activity:
    """What one batch did, as the counters need it (int64 arrays, B samples).

    input_events : (B, T)
        Events the input delivers to layer 0 at each step: rate-encoder spikes; direct: the
        non-zero inputs (the same every step); tsc: ON + OFF events of the input generator.
    input_active : (B,)
        Non-zero input trains (stcb), non-zero inputs (direct), inputs with q >= 1 (tsc).
    spikes : list of (B, T)
        Per layer, what it emits at each step (tsc: ON + OFF events; the last layer emits none).
    active : list of (B,)
        Per layer, its non-zero output trains (stcb).
    taps, nulls : list of (B, T) or None
        Per conv2d layer (None for the others): over the input events of each step, the valid
        (event, kernel offset) pairs ``X`` and the events that reach no output ``Z``.
    train_taps, train_nulls : list of (B,) or None
        The same over a conv2d layer's active input trains (stcb; None otherwise).
    """

    input_events: np.ndarray
    input_active: np.ndarray
    spikes: list
    active: list
    taps: list = field(default_factory=list)
    nulls: list = field(default_factory=list)
    train_taps: list = field(default_factory=list)
    train_nulls: list = field(default_factory=list)


def _zeros(B: int) -> dict:
    return {k: np.zeros(B, dtype=np.int64) for k in COUNTERS}


def _stepped_layer(n_out: int, G: int, events: np.ndarray, T: int) -> dict:
    """A layer processed step by step (rate and tsc): per step a setup, one op per group and input
    event (at least one), the drain; ``events`` (B, T) are the layer's input events per step."""
    c = _zeros(events.shape[0])
    ev_total = events.sum(axis=1)
    c["cycles"] = T * (LAYER_SETUP + LAYER_DRAIN) + G * np.maximum(events, 1).sum(axis=1)
    c["weight_reads"] = G * ev_total
    c["event_reads"] = G * ev_total
    c["syn_ops"] = n_out * ev_total
    c["state_reads"][:] = G * (T - 1)
    c["state_writes"][:] = G * T
    c["param_reads"][:] = G * T
    c["neuron_updates"][:] = n_out * T
    return c


def _stcb_layer(n_out: int, G: int, active_in: np.ndarray, slot_adds: np.ndarray, T: int) -> dict:
    """STCB: one phase per layer; one weight word per *active input train* and group; the update of a
    group runs the IF over all T slots (V starts from v_init, nothing is read)."""
    c = _zeros(active_in.shape[0])
    c["cycles"] = LAYER_SETUP + LAYER_DRAIN + G * np.maximum(active_in, 1)
    c["weight_reads"] = G * active_in
    c["event_reads"] = G * active_in
    c["syn_ops"] = n_out * slot_adds
    c["state_writes"][:] = G
    c["param_reads"][:] = G
    c["neuron_updates"][:] = n_out * T
    return c


def _encoder(model, P: int, act: Activity) -> dict:
    B, T = act.input_events.shape
    c = _zeros(B)
    g_in = groups(model.n_in, P)
    if model.encoding == "direct":
        c["event_writes"] = act.input_active.copy()          # non-zero inputs, once at load
        return c
    c["input_writes"][:] = model.n_in
    c["spikes"] = act.input_events.sum(axis=1)
    if model.coding == "stcb":                               # one pass: each word yields P whole trains
        c["cycles"][:] = g_in + ENC_DRAIN
        c["state_reads"][:] = g_in
        c["neuron_updates"][:] = model.n_in * T
        c["event_writes"] = act.input_active.copy()
        return c
    c["cycles"][:] = T * (g_in + ENC_DRAIN)                  # rate encoder / tsc input generator
    c["state_reads"][:] = T * g_in
    c["state_writes"][:] = T * g_in
    c["neuron_updates"][:] = T * model.n_in
    c["event_writes"] = c["spikes"].copy()
    return c


def count(model, lanes: int, act: Activity) -> tuple[dict, list, dict]:
    """The counters of a batch: (totals, per-layer counters, the encoder's share)."""
    P, T = int(lanes), model.T
    enc = _encoder(model, P, act)
    layers = []
    events, active = act.input_events, act.input_active
    n_layers = len(model.layers)
    for li, layer in enumerate(model.layers):
        last = li == n_layers - 1
        if getattr(layer, "kind", "dense") != "dense":        # conv2d, maxpool2d: docs/spec.md section 3
            layers.append(spatial_layer(model, li, P, act, events, active))
            events, active = act.spikes[li], act.active[li]
            continue
        G = groups(layer.n_out, P)
        if model.coding == "stcb":
            c = _stcb_layer(layer.n_out, G, active, events.sum(axis=1), T)
            if not last:
                c["event_writes"] = act.active[li].copy()
        else:
            c = _stepped_layer(layer.n_out, G, events, T)
            if not last:
                c["event_writes"] = act.spikes[li].sum(axis=1)
        if model.coding == "tsc" and not last:
            # the countdown that emits this layer's events runs in the next layer's window
            c["cycles"] = c["cycles"] + T * (G + ENC_DRAIN)
            for k in ("state_reads", "state_writes", "param_reads"):
                c[k] = c[k] + G * T
            c["neuron_updates"] = c["neuron_updates"] + layer.n_out * T
        c["spikes"] = act.spikes[li].sum(axis=1)
        layers.append(c)
        events, active = act.spikes[li], act.active[li]
    totals = {k: enc[k] + sum(c[k] for c in layers) for k in COUNTERS}
    totals["spikes"] = sum(c["spikes"] for c in layers)      # network layers only
    totals["cycles"] = totals["cycles"] + (model.n_in * LOAD_CYCLES_PER_BEAT + FINISH_CYCLES
                                           + READOUT_CYCLES_PER_CLASS * model.n_out)
    return totals, layers, enc


# ---------------------------------------------------------------------------------------------
# conv2d and maxpool2d layers (schema 2): scatter into the accumulator memory, then sweep the
# output words. docs/spec.md sections 3 and 4 define every number below.

CONV_SCATTER_DRAIN = LAYER_DRAIN   # event read -> weight/accumulator read -> add -> accumulator write
CONV_SWEEP_DRAIN = LAYER_DRAIN     # accumulator/state/parameter read -> update -> state write


def spatial_layer(model, li: int, lanes: int, act: Activity, events: np.ndarray, active: np.ndarray) -> dict:
    """Counters of conv2d or maxpool2d layer ``li``; ``events`` (B, T) and ``active`` (B,) are its input
    events per step and its active input trains. These layers are never last: they always send."""
    layer, T, P = model.layers[li], model.T, int(lanes)
    conv = layer.kind == "conv2d"
    c = _zeros(events.shape[0])
    Gc = groups(layer.channels, P)
    _, Ho, Wo = layer.out_shape
    N, n = Gc * Ho * Wo, layer.n_out
    sent = act.spikes[li]
    if model.coding == "stcb":                 # one phase: active trains, then one sweep
        if conv:
            XA, ZA = act.train_taps[li], act.train_nulls[li]
            scatter = Gc * XA + ZA
            c["weight_reads"] = Gc * XA
            c["acc_reads"] = Gc * XA + N
            c["syn_ops"] = layer.channels * act.taps[li].sum(axis=1)   # slot additions, as rate
            c["state_writes"][:] = N
            c["param_reads"][:] = N
            c["neuron_updates"][:] = n * T
        else:
            scatter = active
            c["acc_reads"] = active + N
        c["acc_writes"] = c["acc_reads"].copy()
        c["cycles"] = LAYER_SETUP + scatter + CONV_SCATTER_DRAIN + N + CONV_SWEEP_DRAIN
        c["event_reads"] = active.copy()
        c["event_writes"] = act.active[li].copy()
        c["spikes"] = sent.sum(axis=1)
        return c
    E = events.sum(axis=1)
    if conv:                                   # rate, direct and tsc: a scatter and a sweep per step
        X, Z = act.taps[li].sum(axis=1), act.nulls[li].sum(axis=1)
        c["cycles"] = T * (LAYER_SETUP + CONV_SCATTER_DRAIN + N + CONV_SWEEP_DRAIN) + Gc * X + Z
        c["weight_reads"] = Gc * X
        c["acc_reads"] = Gc * X + N * T
        c["syn_ops"] = layer.channels * X
        c["state_reads"][:] = N * (T - 1)
        c["state_writes"][:] = N * T
        c["param_reads"][:] = N * T
        c["neuron_updates"][:] = n * T
    elif model.coding == "tsc":                # pool: OFF events store t; a clear sweep at t = 0
        off = events[:, 1:].sum(axis=1)
        c["cycles"] = T * (LAYER_SETUP + CONV_SCATTER_DRAIN) + E + N
        c["state_reads"] = off
        c["state_writes"] = N + off
    else:                                      # rate pool: OR into the accumulator, sweep per step
        c["cycles"] = T * (LAYER_SETUP + CONV_SCATTER_DRAIN + N + CONV_SWEEP_DRAIN) + E
        c["acc_reads"] = E + N * T
    c["acc_writes"] = c["acc_reads"].copy()
    c["event_reads"] = E
    c["event_writes"] = sent.sum(axis=1)
    if model.coding == "tsc":
        # the generator that sends this layer's values runs in the next layer's window; a pool
        # counts down from its stored value with theta = 1, so it reads no parameters
        c["cycles"] = c["cycles"] + T * (N + ENC_DRAIN)
        c["state_reads"] = c["state_reads"] + N * T
        c["state_writes"] = c["state_writes"] + N * T
        if conv:
            c["param_reads"] = c["param_reads"] + N * T
        c["neuron_updates"] = c["neuron_updates"] + n * T
    c["spikes"] = sent.sum(axis=1)
    return c
