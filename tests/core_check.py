"""The SpikeCore in the Amaranth simulator against golden, for the core tests: every output and counter."""

import golden
from hw.pysim import simulate


def run_both(model, x, lanes, banks=1, **kw):
    """Simulate the core on ``x`` and run golden; assert predictions, counts, membranes, every counter,
    every layer's and the encoder's spikes, and no error flag, equal, and no state-memory read-during-write
    hazard (hw.pysim's ``hazards``). Returns (core's outputs, golden's
    Result). ``banks``: the accumulator banks of both."""
    if banks != 1:
        from hw.core import SpikeCore
        kw["core"] = SpikeCore(model, lanes=lanes, banks=banks)
    hazards = []
    hw = simulate(model, x, lanes=lanes, hazards=hazards, **kw)
    g = golden.run(model, x, lanes=lanes, banks=banks)
    assert hw["predictions"].tolist() == g.predictions.tolist()
    assert hw["counts"].tolist() == g.counts.tolist()
    assert hw["membranes"].tolist() == g.membranes.tolist()
    for name, v in g.counters.items():
        assert hw["counters"][name].tolist() == v.tolist(), name
    for li, c in enumerate(g.layer_counters):
        assert hw["layer_spikes"][li].tolist() == c["spikes"].tolist(), f"layer {li}"
    assert hw["encoder_spikes"].tolist() == g.encoder_counters["spikes"].tolist()
    assert hw["err_range"] == 0 and hw["err_protocol"] == 0
    # no state read whose word is used meets a write to its word in the same cycle (the first ten)
    assert hazards == [], hazards[:10]
    return hw, g
