"""sim.regress's pure helpers beyond the field-by-field check of test_regress_compare: mismatch counts over
several samples, and the JUnit XML (counts, names, messages, escaping). Written for the mutation pass in
docs/verification.md."""

import xml.etree.ElementTree as ET

import numpy as np

import golden
from golden import Dense, Model
from sim.regress import compare, junit_xml
from test_regress_compare import _rtl_from


def test_mismatch_counts_are_per_sample_not_per_field():
    rng = np.random.default_rng(4)
    m = Model([Dense(rng.integers(-6, 7, (5, 4)), 0, 4, 0), Dense(rng.integers(-6, 7, (3, 5)), 0, 4, 0)],
              T=5, input_max=6)
    x = rng.integers(0, 7, (6, 4))
    g = golden.run(m, x, lanes=2)
    rtl = _rtl_from(g, m)
    rtl["cnt_cycles"][[1, 3, 4]] += 1
    rtl["membranes"][3, 0] += 1
    rtl["membranes"][3, 2] -= 1            # two neurons of one sample: still one sample
    verdicts, bad = compare(m, 2, rtl, g)
    assert bad["counter:cycles"] == 3 and bad["membranes"] == 1 and sum(bad.values()) == 4
    assert verdicts == [[], ["counter:cycles"], [], ["membranes", "counter:cycles"], ["counter:cycles"], []]


def test_junit_counts_names_and_messages():
    samples = [{"sample": 0, "match": True, "mismatch": []},
               {"sample": 1, "match": False, "mismatch": ["membranes", "counter:cycles"]},
               {"sample": 7, "match": False, "mismatch": ['counter:<spikes_l0> & "x"']}]
    text = junit_xml("sim.regress.top", samples, 1.25)
    assert text.startswith("<?xml")
    root = ET.fromstring(text)
    (suite,) = root.findall("testsuite")
    assert suite.attrib == {"name": "sim.regress.top", "tests": "3", "failures": "2", "errors": "0",
                            "time": "1.250"}
    cases = suite.findall("testcase")
    assert [(c.get("classname"), c.get("name")) for c in cases] == [("sim.regress.top", f"sample_{i}")
                                                                    for i in (0, 1, 7)]
    assert [[f.get("message") for f in c.findall("failure")] for c in cases] == [
        [], ["mismatch in membranes, counter:cycles"], ['mismatch in counter:<spikes_l0> & "x"']]
    assert ET.fromstring(junit_xml("s", samples[:1], 0.0)).find("testsuite").get("failures") == "0"
