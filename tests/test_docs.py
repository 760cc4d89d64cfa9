"""README's figures come from the commands' JSON (``make readme`` = ``python -m sim.readme``), never from
hand typing: a fresh demo must render exactly the tables README shows, and a drifted figure must fail.

The fresh demo takes about 2 minutes once its simulator builds are cached in build/sim (4-5 minutes cold);
it runs without synthesis, so the synthesis-derived block (demo-fpga) is not compared here, and without the
conv model (``--no-conv``: its training and Verilator build would take minutes more), so neither is the
block of its row and its cost per layer (demo-conv); the renderers' split is checked on a made-up report.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sim.compare import comparison_notes
from sim.readme import BLOCKS, blocks_in, render_block, update_text

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DEMO_BLOCKS = ("demo-ladder", "demo-per-inference", "demo-codings", "demo-layers", "demo-energy", "demo-lanes")
ENV = dict(os.environ, PYTHONPATH=str(ROOT))


def _readme(*args):
    return subprocess.run([sys.executable, "-m", "sim.readme", *map(str, args)], capture_output=True, text=True,
                          env=ENV, cwd=ROOT, timeout=120)


def test_readme_has_every_demo_block_and_each_names_its_command():
    text = README.read_text()
    names = blocks_in(text)
    assert set(DEMO_BLOCKS) | {"demo-fpga", "demo-conv"} <= set(names)
    for name in names:
        body = text.split(f"<!-- BEGIN generated:{name} -->\n", 1)[1].split(f"<!-- END generated:{name} -->")[0]
        assert f"written by `{BLOCKS[name].command}`.</sub>" in body, name


def test_the_false_claims_are_gone():
    text = README.read_text()
    assert "trains five models" not in text.lower()
    # TSC (97.50%) and rate T=16 (97.78%) do not have the same accuracy; the rendered claim says so
    assert "fewer cycles, at the same accuracy" not in text
    assert "fewer cycles, at 97.50% against 97.78% accuracy" in text


def _row(label, coding, T, acc, cycles, wr, per_syn, per_syn_max, sr, sw, same=True):
    return {"label": label, "coding": coding, "T": T, "accuracy": acc, "cycles": cycles, "weight_reads": wr,
            "weight_reads_per_synapse": per_syn, "weight_reads_per_synapse_max": per_syn_max, "state_reads": sr,
            "state_writes": sw, "samples": 360, "same_predictions_as_rate_t8": same}


def test_coding_notes_say_the_accuracy_and_state_traffic():
    rows = [_row("rate T=8", "rate", 8, 0.9778, 3091, 2870, 2.242, 2.909, 190, 208),
            _row("rate T=16", "rate", 16, 0.9778, 6149, 5792, 4.525, 5.798, 398, 416),
            _row("tsc T=17", "tsc", 17, 0.9750, 1989, 1281, 1.001, 1.197, 696, 714),
            _row("stcb T=8 (re-targeted)", "stcb", 8, 0.9778, 724, 622, 0.486, 0.592, 8, 18),
            _row("stcb T=8, kernel 3", "stcb", 8, 0.9694, 717, 615, 0.481, 0.586, 8, 18)]
    notes = comparison_notes(rows)
    assert ("4.52x fewer weight reads and 3.09x fewer cycles, at 97.50% against 97.78% accuracy" in notes)
    assert "1,410 state-memory words per inference, 3.5x rate T=8's and 1.7x rate T=16's" in notes
    assert "identical predictions on all 360 samples with 4.61x fewer weight reads and 4.27x fewer cycles" in notes
    assert "reached 96.94% here, against 97.78% without" in notes
    rows[2]["accuracy"] = 0.9778
    assert "fewer cycles, at the same accuracy" in comparison_notes(rows)
    rows[3]["same_predictions_as_rate_t8"] = False
    assert "gives DIFFERENT predictions" in comparison_notes(rows)


def test_conv_rows_render_apart_from_the_codings(tmp_path):
    """demo-codings shows the demo network's rows only (a demo with --no-conv renders it the same), and
    demo-conv the rows of another network against the first row, with that model's cost per layer."""
    import json
    full = dict(coding="rate", T=8, syn_ops=1.0, spikes=2.0, buffer_words=3.0, buffer_kind="event", state_reads=4.0,
                state_writes=5.0, rtl_matching=360, weight_reads_per_synapse_max=1.0, lanes=8)
    rows = [{**_row("rate T=8", "rate", 8, 0.9778, 3170, 2870, 2.242, 2.909, 190, 208), **full, "arch": "128-10"},
            {**_row("tsc T=17", "tsc", 17, 0.975, 2226, 1281, 1.001, 1.197, 696, 714), **full, "arch": "128-10"},
            {**_row("conv rate T=8 (16c3-mp2-32c3-10)", "rate", 8, 0.9944, 21409, 6838, 0.8, 1.5, 1, 2), **full,
             "arch": "16c3-mp2-32c3-10"}]
    row = {"part": "layer 0", "kind": "conv2d", "shape": "1×8×8→16×8×8, k3 s1 p1", "cycles": 9.0, "cycles_share": 1.0,
           "weight_reads": 7.0, "syn_ops": 6.0, "spikes": 5.0}
    table = {"title": "digits_conv_rate_t8", "network": "1x8x8-16c3-mp2-32c3-10", "coding": "rate", "T": 8, "lanes": 8,
             "samples": 360, "rows": [row], "totals": {"cycles": 9.0, "weight_reads": 7.0, "syn_ops": 6.0, "spikes": 5.0},
             "check": {"samples": 360, "counters": ["cycles"], "rtl": None}}
    (tmp_path / "reports" / "d").mkdir(parents=True)
    report = {"comparison": rows, "comparison_note": "- codings", "conv_note": "- conv", "layer_costs": [table, table]}
    (tmp_path / "reports" / "d" / "report.json").write_text(json.dumps(report))
    codings = render_block("demo-codings", tmp_path, "d")
    assert "| tsc T=17 |" in codings and "conv rate" not in codings and "- codings" in codings
    conv = render_block("demo-conv", tmp_path, "d")
    assert [l.split(" | ")[0] for l in conv.splitlines()[2:4]] == ["| rate T=8", "| conv rate T=8 (16c3-mp2-32c3-10)"]
    assert "- conv" in conv and "- codings" not in conv and "| tsc T=17 |" not in conv
    assert "Cost per layer of `digits_conv_rate_t8` (1x8x8-16c3-mp2-32c3-10, rate coding, T=8, P=8" in conv
    assert "| layer 0 | conv2d | 1×8×8→16×8×8, k3 s1 p1 | 9.0 | 100.0% | 7.0 | 6.0 | 5.0 |" in conv
    assert conv.count("Cost per layer of") == 1                    # the demo model's own table is demo-layers'
    assert "| **total** | | | **9.0** |" in render_block("demo-layers", tmp_path, "d")
    report["comparison"] = rows[:2]                                 # a demo with --no-conv
    (tmp_path / "reports" / "d" / "report.json").write_text(json.dumps(report))
    assert render_block("demo-codings", tmp_path, "d") == codings and render_block("demo-conv", tmp_path, "d") is None


def test_update_text_replaces_only_the_block():
    text = "a\n<!-- BEGIN generated:demo-lanes -->\nold\n<!-- END generated:demo-lanes -->\nb\n"
    assert update_text(text, {"demo-lanes": "new\n"}) == \
        "a\n<!-- BEGIN generated:demo-lanes -->\nnew\n<!-- END generated:demo-lanes -->\nb\n"


@pytest.fixture(scope="module")
def fresh_demo(tmp_path_factory):
    build = tmp_path_factory.mktemp("fresh-demo")
    r = subprocess.run([sys.executable, "-m", "sim.demo", "--build-dir", str(build), "--no-synth", "--no-conv"],
                       capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=1200)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return build


def test_demo_keeps_everything_under_its_build_dir(fresh_demo):
    # its regression results sit in its report directory, where sim.regress's default never writes
    rep = fresh_demo / "reports" / "digits_rate_t8"
    assert sorted(p.name for p in fresh_demo.iterdir()) == ["models", "reports", "verilog"]
    assert {"report.md", "report.json", "regress.json", "regress.xml", "raster.png", "cycles.png", "layers.png",
            "layers_cost.png", "codings.png"} == {p.name for p in rep.iterdir()}


def test_readme_tables_equal_a_fresh_demo(fresh_demo):
    r = _readme("--check", "--build-dir", fresh_demo, "--only", ",".join(DEMO_BLOCKS))
    assert r.returncode == 0, r.stdout + r.stderr
    for name in DEMO_BLOCKS:
        assert render_block(name, fresh_demo) is not None, name


def test_a_drifted_figure_fails_the_check(fresh_demo, tmp_path):
    text = README.read_text()
    body = render_block("demo-codings", fresh_demo)
    first_cycles = body.splitlines()[2].split(" | ")[3]          # rate T=8's cycles, as rendered
    drifted = text.replace(f"| {first_cycles} |", f"| {int(first_cycles) + 1} |", 1)
    assert drifted != text
    copy = tmp_path / "README.md"
    copy.write_text(drifted)
    r = _readme("--check", "--build-dir", fresh_demo, "--only", "demo-codings", "--files", copy)
    assert r.returncode == 1 and "out of date: README.md; run `make readme`" in r.stderr
    assert f"-| rate T=8 | 8 | " in r.stdout                        # the diff shows the line
    shutil.copy(README, copy)
    assert _readme("--check", "--build-dir", fresh_demo, "--files", copy).returncode == 0


def test_energy_block_renders_the_sweeps_categories(tmp_path):
    from golden.energy import CATEGORIES
    def row(P, base):
        return {"lanes": P, "coding": "rate", "T": 8, "syn_ops": 100.0, "energy_pj": base * len(CATEGORIES),
                "ann_float32_pj": 1000.0, "ann_int8_pj": 100.0, **{f"energy_{k}_pj": float(base) for k in CATEGORIES}}
    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep" / "digits_rate_t8.json").write_text(__import__("json").dumps({"rows": [row(1, 20), row(8, 10)]}))
    body = render_block("energy-lanes", tmp_path)
    assert "| weight_reads | 20 | 10 |" in body and f"| **total** | **{20 * len(CATEGORIES)}** |" in body
    assert f"P=8 {10 * len(CATEGORIES) / 1000:.2f} of float32" in body
    (tmp_path / "sweep" / "digits_rate_t8.json").write_text(__import__("json").dumps({"rows": [row(1, 20)]}))
    assert render_block("energy-lanes", tmp_path) is None          # no P=8 row: the block is kept, not invented


def test_robust_block_counts_networks_by_coding(tmp_path):
    import json
    d = {"networks": 3, "samples": 96, "faults_injected": 1, "stall_prob": 0.3, "lint_clean": 3, "coverage_hit": 20,
         "coverage_total": 21, "shapes_hit": 18, "shapes_total": 19, "bad_inputs_tried": 5, "bad_inputs_rejected": 5, "mismatches": 0, "seconds": 12.4,
         "networks_detail": [{"coding": "tsc"}, {"coding": "rate"}, {"coding": "tsc"}]}
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "robustness.json").write_text(json.dumps(d))
    body = render_block("robust", tmp_path)
    assert "| random networks on Verilator (rate 1, tsc 2) | 3 |" in body
    assert "| functional coverage bins hit (each a hardware event at the core's ports) | 20/21 |" in body
    assert "| network shapes exercised (configuration bins, from the manifests) | 18/19 |" in body
    assert "| **0** |" in body


CLAIMS = ROOT / "build" / "reports" / "claims"


@pytest.mark.parametrize("block, src", [("claims", "claims.json"), ("claims-mnist5k", "claims_mnist5k.json")])
def test_readme_claims_block_equals_a_fresh_claims_json(block, src):
    # make claims (make claims-mnist5k) writes the JSON and renders the block; the block must be what that
    # file renders
    if not (CLAIMS / src).is_file():
        pytest.skip(f"no build/reports/claims/{src}: run `make {block}` first")
    assert block in blocks_in(README.read_text())
    r = _readme("--check", "--only", block)
    assert r.returncode == 0, r.stdout + r.stderr


def test_a_drifted_claims_figure_fails_the_check(tmp_path):
    import json
    d = {"lanes": 8, "seconds": 100.0, "rtl": {},
         "tables": {"tsc": [{"network": "n", "claim": "c", "figure": "1.87x", "command": "x", "verdict": "holds partly"}],
                    "min_latency": [], "stcb": []}}
    src = tmp_path / "reports" / "claims"
    src.mkdir(parents=True)
    (src / "claims.json").write_text(json.dumps(d))
    copy = tmp_path / "README.md"
    copy.write_text(update_text(README.read_text(), {"claims": render_block("claims", tmp_path)}))
    assert _readme("--check", "--build-dir", tmp_path, "--only", "claims", "--files", copy).returncode == 0
    d["tables"]["tsc"][0]["figure"] = "1.88x"
    (src / "claims.json").write_text(json.dumps(d))
    r = _readme("--check", "--build-dir", tmp_path, "--only", "claims", "--files", copy)
    assert r.returncode == 1 and "out of date: README.md" in r.stderr and "1.88x" in r.stdout
