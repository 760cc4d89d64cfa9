"""The SpikeCore in the Amaranth simulator against golden, for the core tests: every output and counter."""

import golden
from hw.pysim import simulate


def run_both(model, x, lanes, banks=1, **kw):
    """Simulate the core on ``x`` and run golden; assert predictions, counts, membranes, every counter,
    every layer's and the encoder's spikes, and no error flag, equal. Returns (core's outputs, golden's
    Result). ``banks``: the accumulator banks of both."""
    if banks != 1:
        from hw.core import SpikeCore
        kw["core"] = SpikeCore(model, lanes=lanes, banks=banks)
    hw = simulate(model, x, lanes=lanes, **kw)
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
    return hw, g
