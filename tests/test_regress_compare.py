"""sim.regress.compare: every output and every counter the core reports is compared with golden.

The RTL results are fabricated from golden's own numbers, then each field in turn is changed on one
sample: the verdict must name exactly that field on exactly that sample. Dropping any comparison
from compare() fails this test."""

import numpy as np
import pytest

import golden
from golden import Dense, Model, perf
from hw.signatures import counter_ports
from sim.regress import OUTPUT_FIELDS, compare


def _model(coding):
    rng = np.random.default_rng(4)
    kw = dict(T=5, input_max=6, readout="membrane" if coding == "tsc" else "count",
              encoding="tsc" if coding == "tsc" else "rate")
    return Model([Dense(rng.integers(-6, 7, (5, 4)), 0, 4, 0), Dense(rng.integers(-6, 7, (3, 5)), 0, 4, 0)],
                 coding=coding, **kw)


def _rtl_from(g, model):
    rtl = {f: np.array(getattr(g, f)) for f in OUTPUT_FIELDS}
    for n in counter_ports(perf.COUNTERS, len(model.layers)):
        if n.startswith("spikes_l"):
            rtl[f"cnt_{n}"] = g.layer_counters[int(n[len("spikes_l"):])]["spikes"].copy()
        elif n == "spikes_enc":
            rtl[f"cnt_{n}"] = g.encoder_counters["spikes"].copy()
        else:
            rtl[f"cnt_{n}"] = g.counters[n].copy()
    return rtl


@pytest.mark.parametrize("coding", ["rate", "stcb", "tsc"])
def test_every_field_is_compared(coding):
    model = _model(coding)
    x = np.random.default_rng(1).integers(0, 7, (4, 4))
    g = golden.run(model, x, lanes=2)
    rtl = _rtl_from(g, model)
    verdicts, bad = compare(model, 2, rtl, g)
    assert verdicts == [[], [], [], []] and not any(bad.values())
    fields = ["predictions", "counts", "membranes"] + [f"counter:{n}" for n in counter_ports(perf.COUNTERS, len(model.layers))]
    assert set(bad) == set(fields)
    for f in fields:
        tampered = {k: v.copy() for k, v in rtl.items()}
        key = "cnt_" + f.split(":", 1)[1] if f.startswith("counter:") else f
        tampered[key].reshape(len(x), -1)[2, -1] += 1
        verdicts, bad = compare(model, 2, tampered, g)
        assert verdicts[2] == [f] and verdicts[0] == verdicts[1] == verdicts[3] == [], f
        assert bad[f] == 1 and sum(bad.values()) == 1
