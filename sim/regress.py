"""``python -m sim.regress``: stream dataset samples through the simulated core and compare with golden.

Every sample's prediction, counts, membranes and every counter must equal golden exactly. On a
mismatch the first differing sample and field are named, and that sample is re-run with the
core's spike monitor to find the first differing layer, time step and neuron. The simulator is
Verilator (2-state, fast) or Icarus Verilog (4-state: every output is also checked for X and Z after
reset and on every result beat). Writes JSON (summary + per sample) and JUnit XML, both or neither;
exits 1 on any mismatch.
"""

from __future__ import annotations

import json
import re
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import golden
from golden.geometry import packed_to_flat
from golden import datasets
from golden.cli import (ArgumentParser, Output, OutputSet, UsageError, add_data_options, check_outputs, error_line,
                        banks_arg, guard, lanes_arg, probability, seed_int)

__all__ = ["regress", "RegressResult", "decode_spikes", "decode_events", "compare", "junit_xml"]

ROOT = Path(__file__).resolve().parents[1]
OUTPUT_FIELDS = ("predictions", "counts", "membranes")


@dataclass
class RegressResult:
    summary: dict
    samples: list
    first_mismatch: str | None
    junit: str


def _dbg_rows(rtl: dict):
    """Debug-port rows (enc, layer, t, group) with their masks as Python ints."""
    masks = [int.from_bytes(bytes(row), "little") for row in rtl["dbg_mask"]]
    return [(*row, mask) for row, mask in zip(rtl["dbg"].tolist(), masks)]


def decode_spikes(rtl: dict, model: golden.Model, lanes: int) -> tuple[list, np.ndarray]:
    """Turn debug-port rows into per-layer (T, n) spike arrays (and the encoder's).

    rate: one row per neuron-group update at step t, a P-bit mask. stcb: one row per group for the
    whole window, a P x T-bit mask (lane p, slot t at bit p * T + t)."""
    T = model.T
    layers = [np.zeros((T, l.n_out), np.uint8) for l in model.layers]
    enc = np.zeros((T, model.n_in), np.uint8)
    stcb = model.coding == "stcb"
    # a conv2d / maxpool2d map (and the input of a spatial layer 0) is named by packed channel words
    in_shape = tuple(model.input_shape) if model.layers[0].kind != "dense" else None
    shapes = [tuple(l.out_shape) if l.kind != "dense" else None for l in model.layers]
    for is_enc, layer, t, g, mask in _dbg_rows(rtl):
        target, n = (enc, model.n_in) if is_enc else (layers[layer], model.layers[layer].n_out)
        shape = in_shape if is_enc else shapes[layer]
        for p in range(lanes):
            bits = [(tt, mask >> (p * T + tt) & 1) for tt in range(T)] if stcb else [(t, mask >> p & 1)]
            for tt, bit in bits:
                if bit:
                    j = g * lanes + p if shape is None else packed_to_flat(shape, lanes, g, p)
                    if j >= n or j < 0:
                        raise AssertionError(f"spike on padding lane: layer {layer} t {tt} neuron {j}")
                    target[tt, j] = 1
    return layers, enc


def decode_events(rtl: dict, model: golden.Model, lanes: int) -> tuple[list, np.ndarray]:
    """TSC: turn generator rows (enc=1, consumer layer, t, group, mask) into ON (+1) / OFF (-1)
    events per source: the input (returned second) and every hidden layer (list, (T, n) int8)."""
    T = model.T
    hidden = [np.zeros((T, l.n_out), np.int8) for l in model.layers[:-1]]
    enc = np.zeros((T, model.n_in), np.int8)
    # a source that is a map (the input of a spatial layer 0, a conv2d / maxpool2d layer's output) is
    # named by packed channel words
    shapes = [tuple(model.input_shape) if model.layers[0].kind != "dense" else None] + \
        [tuple(l.out_shape) if l.kind != "dense" else None for l in model.layers[:-1]]
    for is_gen, layer, t, g, mask in _dbg_rows(rtl):
        if not is_gen:
            continue
        target = enc if layer == 0 else hidden[layer - 1]
        shape = shapes[layer]
        for p in range(lanes):
            if mask >> p & 1:
                j = g * lanes + p if shape is None else packed_to_flat(shape, lanes, g, p)
                if j >= target.shape[1] or j < 0:
                    raise AssertionError(f"event on padding lane: source of layer {layer}, t {t}, neuron {j}")
                target[t, j] = 1 if t == 0 else -1
    return hidden, enc


def compare(model, lanes: int, rtl: dict, g: golden.Result) -> tuple[list, dict]:
    """Per-sample verdicts and per-field mismatch counts."""
    fields = {f: (np.asarray(rtl[f]), np.asarray(getattr(g, f))) for f in OUTPUT_FIELDS}
    for name, v in g.counters.items():
        if name == "spikes":
            continue                   # the core reports it per layer and for the encoder
        fields[f"counter:{name}"] = (rtl[f"cnt_{name}"], v)
    for li, c in enumerate(g.layer_counters):
        fields[f"counter:spikes_l{li}"] = (rtl[f"cnt_spikes_l{li}"], c["spikes"])
    fields["counter:spikes_enc"] = (rtl["cnt_spikes_enc"], g.encoder_counters["spikes"])
    B = len(g.predictions)
    bad_by_field = {}
    verdicts = [[] for _ in range(B)]
    for f, (a, e) in fields.items():
        diff = (np.asarray(a) != np.asarray(e)).reshape(B, -1).any(axis=1)
        bad_by_field[f] = int(diff.sum())
        for b in np.flatnonzero(diff):
            verdicts[b].append(f)
    return verdicts, bad_by_field


def junit_xml(name: str, samples: list, seconds: float) -> str:
    """JUnit XML (one test case per sample) built with ElementTree, so every name and message is escaped."""
    fails = sum(1 for s in samples if not s["match"])
    root = ET.Element("testsuites")
    suite = ET.SubElement(root, "testsuite", name=name, tests=str(len(samples)), failures=str(fails), errors="0",
                          time=f"{seconds:.3f}")
    for s in samples:
        case = ET.SubElement(suite, "testcase", classname=name, name=f"sample_{s['sample']}")
        if not s["match"]:
            ET.SubElement(case, "failure", message="mismatch in " + ", ".join(s["mismatch"]))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _find_manifest(verilog: Path) -> dict:
    j = verilog.with_suffix(".json")
    if not j.exists():
        raise UsageError(f"--verilog {verilog}: no manifest {j.name} next to it (generate with hw.generate)")
    try:
        return json.loads(j.read_text())
    except ValueError as e:
        raise UsageError(f"{j}: corrupt manifest ({e})") from None


def regress(model: golden.Model, x: np.ndarray, y: np.ndarray | None, *, lanes: int = 8,
            verilog: Path | None = None, name: str = "core", stall_prob: float = 0.0, seed: int = 0,
            waves: bool = False, localise: bool = True, log=print, fast_build: bool = False,
            simulator: str = "verilator", banks: int = 1) -> RegressResult:
    """Generate (or take) the netlist, build it for ``simulator``, stream ``x``, compare with golden."""
    from hw.generate import generate
    from .runner import build, cycle_budget, run_job
    golden.check_inputs(model, x)
    t0 = time.perf_counter()
    if verilog is None:
        vdir = ROOT / "build" / "verilog" / name
        verilog, mpath = generate(model, lanes, vdir, name, banks)
        manifest = json.loads(mpath.read_text())
        gen_s = time.perf_counter() - t0
    else:
        verilog = Path(verilog)
        if not verilog.exists():
            raise UsageError(f"--verilog {verilog}: file not found")
        manifest = _find_manifest(verilog)
        gen_s = 0.0
        p = manifest["parameters"]
        if p["sizes"] != model.sizes or p["T"] != model.T or p["encoding"] != model.encoding \
                or p["readout"] != model.readout:
            raise UsageError(f"--verilog {verilog} was generated for a different model ({p['sizes']}, T={p['T']})")
        lanes, banks = p["lanes"], p.get("banks", 1)
    top = manifest["top"]
    import hashlib
    edited = hashlib.sha256(verilog.read_text().encode()).hexdigest() != manifest.get("verilog_sha256")
    if edited:
        log(f"note: {verilog} differs from the netlist its manifest describes (hand-edited?)")
    b = build(verilog, top, waves=waves, fast=fast_build, simulator=simulator, log=log)
    g = golden.run(model, x, lanes=lanes, banks=banks)
    budget = cycle_budget(int(g.counters["cycles"].sum()), len(x) * (model.n_in + model.n_out), stall_prob)
    t1 = time.perf_counter()
    rtl = run_job(b, {"manifest": manifest, "inputs_array": x, "stall_prob": stall_prob, "seed": seed,
                      "max_cycles": budget})
    sim_s = time.perf_counter() - t1
    run_s = float(rtl["run_seconds"])
    verdicts, bad = compare(model, lanes, rtl, g)
    B = len(x)
    samples = []
    for i in range(B):
        samples.append({
            "sample": i, "match": not verdicts[i], "mismatch": verdicts[i],
            "label": None if y is None else int(y[i]),
            "prediction_rtl": int(rtl["predictions"][i]), "prediction_golden": int(g.predictions[i]),
            "counters_rtl": {k[4:]: int(v[i]) for k, v in rtl.items() if k.startswith("cnt_")},
        })
    xz = [str(v) for v in rtl.get("xz_violations", [])]
    n_match = sum(s["match"] for s in samples)
    first = None
    if n_match != B:
        bi = next(i for i, s in enumerate(samples) if not s["match"])
        field = verdicts[bi][0]
        first = f"sample {bi}: first differing field {field}"
        if field in OUTPUT_FIELDS:
            e, a = np.asarray(getattr(g, field))[bi], np.asarray(rtl[field])[bi]
            if e.ndim:
                j = int(np.argmax(e != a))
                first += f" (neuron {j}: golden {int(e[j])}, rtl {int(a[j])})"
            else:
                first += f" (golden {int(e)}, rtl {int(a)})"
        else:
            cname = field.split(":", 1)[1]
            first += f" (rtl {int(rtl['cnt_' + cname][bi])})"
        if localise and model.coding == "tsc":
            one = run_job(b, {"manifest": manifest, "inputs_array": x[bi:bi + 1], "spikes": True,
                              "max_cycles": budget})
            hidden, enc = decode_events(one, model, lanes)
            gr = golden.run(model, x[bi:bi + 1], record=True)
            sources = [("input", gr.input_events[0], enc)] + [(f"layer {i}", gr.events[i][0], h)
                                                              for i, h in enumerate(hidden)]
            for label, e, a in sources:
                if not np.array_equal(e, a):
                    t, j = (int(v) for v in np.argwhere(e != a)[0])
                    first += f"; first differing event: {label} outputs, time step {t}, neuron {j} " \
                             f"(golden {int(e[t, j])}, rtl {int(a[t, j])})"
                    break
            else:
                first += "; all ON/OFF events agree (the difference is in membranes or counters only)"
        elif localise:
            one = run_job(b, {"manifest": manifest, "inputs_array": x[bi:bi + 1], "spikes": True,
                              "max_cycles": budget})
            layers, enc = decode_spikes(one, model, lanes)
            gr = golden.run(model, x[bi:bi + 1], record=True)
            mm = golden.first_spike_mismatch(gr.spikes, [l[None] for l in layers], sample_offset=bi)
            if gr.input_spikes is not None and not np.array_equal(gr.input_spikes[0], enc):
                t, j = (int(v) for v in np.argwhere(gr.input_spikes[0] != enc)[0])
                first += f"; first differing spike: encoder, time step {t}, input {j}"
            elif mm is not None:
                first += f"; first differing spike: layer {mm.layer}, time step {mm.t}, neuron {mm.neuron} " \
                         f"(golden {mm.expected}, rtl {mm.got})"
            else:
                first += "; all spikes agree (the difference is in membranes or counters only)"
    acc = {}
    if y is not None:
        acc = {"golden_accuracy": float((g.predictions == y).mean()),
               "rtl_accuracy": float((rtl["predictions"] == y).mean())}
    cyc = g.counters["cycles"]
    eff = (g.counters["weight_reads"] + g.counters["state_writes"]).sum() / cyc.sum()
    summary = {
        "top": top, "verilog": str(verilog), "lanes": lanes, **({"banks": banks} if banks > 1 else {}), "model": model.meta(), "samples": B,
        "matching_samples": n_match, "agreement": n_match / B if B else 1.0,
        "mismatches_by_field": bad, "first_mismatch": first, "stall_prob": stall_prob, "seed": seed,
        "stall_cycles": int(rtl["stall_cycles"]), "err_range": int(rtl["err_range"]),
        "err_protocol": int(rtl["err_protocol"]), **acc,
        "mean_counters": {k: float(v.mean()) for k, v in g.counters.items()},
        "mean_layer_spikes": [float(c["spikes"].mean()) for c in g.layer_counters],
        "cycle_efficiency": float(eff),
        "generate_seconds": gen_s, "build_seconds": b.seconds, "build_cached": b.cached,
        "sim_seconds": sim_s, "samples_per_s": B / sim_s if sim_s else None,
        # the simulation proper (the harness streaming the samples), and the whole job with the
        # simulator's start-up (about a second), which dominates short runs
        "run_seconds": run_s,
        "simulated_cycles_per_s": float(cyc.sum()) / run_s if run_s else None,
        "simulated_cycles_per_s_with_startup": float(cyc.sum()) / sim_s if sim_s else None,
        "hand_edited_netlist": edited,
        "vcd": rtl.get("_vcd"),
        "simulator": simulator,
        # 4-state simulators only: outputs checked for X/Z after reset and on every result beat
        "xz_checks": int(rtl["xz_checks"]) if "xz_checks" in rtl else None,
        "xz_failed_checks": int(rtl["xz_failed_checks"]) if "xz_failed_checks" in rtl else None,
        "xz_violations": xz,
    }
    summary["violations"] = rtl["violations"]
    if summary["err_range"] or summary["err_protocol"]:
        first = first or "the core raised an error flag on valid input"
        summary["first_mismatch"] = first
    if rtl["violations"]:
        first = first or f"stream protocol violation: {rtl['violations'][0]}"
        summary["first_mismatch"] = first
    if xz:     # the root cause of any mismatch that comes with it
        first = f"X/Z on an output ({xz[0]})" + (f"; {first}" if first else "")
        summary["first_mismatch"] = first
    return RegressResult(summary, samples, first, junit_xml(f"sim.regress.{top}", samples, sim_s))


def main(argv=None) -> int:
    from .runner import SIMULATORS, SimError, SimHang, ensure_simulator
    from .toolchain import ToolchainError
    p = ArgumentParser(prog="python -m sim.regress", description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="integer model file (.npz)")
    add_data_options(p)
    p.add_argument("--lanes", type=lanes_arg, default=None, help="P (default 8, or the netlist's)")
    p.add_argument("--banks", type=banks_arg, default=1,
                   help="accumulator banks: kernel offsets of a conv2d scatter in parallel (docs/spec.md section 3, "
                        "Banks; default 1)")
    p.add_argument("--verilog", default=None, help="verify this netlist (its manifest .json must sit next to it)")
    p.add_argument("--simulator", default="verilator", choices=SIMULATORS,
                   help="verilator (2-state, fast; default) or icarus (4-state: also checks every output for X/Z)")
    p.add_argument("--stall-prob", type=probability, default=0.0,
                   help="probability in [0, 1) of a random valid/ready stall before each beat (default 0)")
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the random stalls (default 0)")
    p.add_argument("--waves", action="store_true", help="build with tracing and keep a VCD (Icarus: FST)")
    p.add_argument("--json", default=None, metavar="FILE.json",
                   help="results JSON (default build/regress/<model>_p<P>.json)")
    p.add_argument("--junit", default=None, metavar="FILE.xml", help="JUnit XML (default: the JSON's name, .xml)")
    a = p.parse_args(argv)
    name = re.sub(r"\W", "_", Path(a.model).stem)
    lanes = a.lanes or 8
    name = f"{name}_p{lanes}" if name and not name[0].isdigit() else f"m_{name}_p{lanes}"
    name += f"_b{a.banks}" if a.banks > 1 else ""
    json_out = Path(a.json) if a.json else ROOT / "build" / "regress" / f"{name}.json"
    junit_out = Path(a.junit) if a.junit else json_out.with_suffix(".xml")
    # every output is checked before the model, the dataset, the build or the simulation
    check_outputs([Output("--json" if a.json else "--json (default)", a.json or json_out),
                   Output("--junit" if a.junit else "--junit (next to the JSON)", a.junit or junit_out)])
    model = golden.load_model(a.model)
    x, y = datasets.load(a.dataset, a.split, a.data_dir)
    if a.limit:
        x, y = x[:a.limit], y[:a.limit]
    golden.check_inputs(model, x)
    from hw.banks import check_core_banks
    from hw.config import ConfigError
    try:
        check_core_banks(a.banks)
    except ConfigError as e:
        raise UsageError(f"--banks: {e}") from None
    if a.verilog and a.lanes is not None:
        man = _find_manifest(Path(a.verilog))
        if man["parameters"]["lanes"] != a.lanes:
            raise UsageError(f"--lanes: {a.lanes} contradicts the netlist's lanes={man['parameters']['lanes']}")
    if a.verilog and a.banks != 1 and _find_manifest(Path(a.verilog))["parameters"].get("banks", 1) != a.banks:
        raise UsageError(f"--banks: {a.banks} contradicts the netlist's banks="
                         f"{_find_manifest(Path(a.verilog))['parameters'].get('banks', 1)}")
    try:
        ensure_simulator(a.simulator)
    except ToolchainError as e:
        raise UsageError(f"--simulator {a.simulator}: {str(e).splitlines()[0]}") from None
    try:
        res = regress(model, x, y, lanes=lanes, banks=a.banks, verilog=Path(a.verilog) if a.verilog else None, name=name,
                      stall_prob=a.stall_prob, seed=a.seed, waves=a.waves, simulator=a.simulator,
                      log=lambda msg: print(msg, flush=True))
    except SimHang as e:            # a hardware failure, not a usage error: exit 1 like a mismatch
        sys.stderr.write(error_line("sim.regress", f"HANG: {e}"))
        return 1
    except (SimError, ToolchainError) as e:
        raise UsageError(str(e).splitlines()[0]) from None
    s = res.summary
    replaced = [str(f) for f in (json_out, junit_out) if f.exists()]
    with OutputSet() as files:          # the JSON and the XML describe the same run: both or neither
        files.add_text(json_out, json.dumps({"summary": s, "samples": res.samples}, indent=1))
        files.add_text(junit_out, res.junit)
        files.commit()
    mc = s["mean_counters"]
    emitted = "events" if model.coding == "tsc" else "spikes"
    print(f"{s['matching_samples']}/{s['samples']} samples match golden exactly (outputs and all counters), "
          f"lanes={s['lanes']}, {a.simulator}, stall_prob={s['stall_prob']} ({s['stall_cycles']} stall cycles "
          f"injected)")
    if s["xz_checks"] is not None:
        print(f"X/Z on outputs: {s['xz_failed_checks']} of {s['xz_checks']} checks (after reset and on every "
              f"result beat) found any")
    if "rtl_accuracy" in s:
        print(f"accuracy: golden {100 * s['golden_accuracy']:.2f}%, rtl {100 * s['rtl_accuracy']:.2f}%")
    print(f"per inference: {mc['cycles']:.1f} cycles, {mc['weight_reads']:.1f} weight reads, "
          f"{mc['state_reads']:.1f}/{mc['state_writes']:.1f} state reads/writes, {mc['syn_ops']:.1f} syn_ops, "
          f"{mc['spikes']:.1f} {emitted}; cycle efficiency {s['cycle_efficiency']:.3f}")
    if s["vcd"]:
        print(f"waves: {s['vcd']}")
    print(f"simulation: {s['sim_seconds']:.1f} s, {s['samples_per_s']:.1f} samples/s, "
          f"{s['simulated_cycles_per_s']:.0f} cycles/s ({s['simulated_cycles_per_s_with_startup']:.0f} with the "
          f"simulator's start-up); wrote {json_out} and {junit_out}"
          + (f" (replacing the previous {' and '.join(replaced)})" if replaced else ""))
    if res.first_mismatch:
        sys.stderr.write(error_line("sim.regress", f"MISMATCH: {res.first_mismatch}"))
        return 1
    return 0


if __name__ == "__main__":
    guard("sim.regress", main)
