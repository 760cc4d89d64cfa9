"""``python -m sim.robust``: the robustness campaign and its report (``make robust``).

1. Constrained-random networks of every coding on Verilator (sim.fuzz): outputs and counters against
   golden, random stalls, protocol faults, lint, functional coverage.
2. Bad inputs: malformed model files, corrupt dataset files and bad command lines, each of which must
   be rejected with the documented error (ModelError / DatasetError / exit code 2 with one line).

Writes build/reports/robustness.md and .json; exits 1 on any mismatch, accepted bad input or missed
coverage point.
"""

from __future__ import annotations

import gzip
import json
import os
import pickle
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

import golden
from golden import Dense, Model, ModelError, datasets
from golden.cli import (ArgumentParser, Output, OutputSet, check_outputs, guard, main_output, positive_int,
                        probability, seed_int)

from .fuzz import run_campaign

__all__ = ["bad_input_campaign", "main"]

ROOT = Path(__file__).resolve().parents[1]


def _rewrite(src: Path, dst: Path, meta=None, arrays=None, drop=()) -> Path:
    with np.load(src) as z:
        files = {k: z[k] for k in z.files}
    m = json.loads(str(files["meta"]))
    m.update(meta or {})
    files["meta"] = np.array(json.dumps(m))
    files.update(arrays or {})
    for k in drop:
        files.pop(k, None)
    np.savez(dst, **files)
    return dst


def _bad_models(d: Path) -> list[tuple[str, Path]]:
    good = d / "good.npz"
    golden.save_model(Model([Dense(np.arange(6).reshape(2, 3) - 3, [1, -1], [4, 5], 0),
                             Dense([[1, -1]], 0, 2, 0)], T=4, input_max=5, weight_bits=4), good)
    raw = good.read_bytes()
    cases = []
    for i, frac in enumerate((0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99)):
        p = d / f"trunc{i}.npz"
        p.write_bytes(raw[: int(len(raw) * frac)])
        cases.append((f"truncated at {frac:.0%}", p))
    (d / "text.npz").write_text("hello")
    cases.append(("not a zip", d / "text.npz"))
    np.save(d / "arr.npy", np.zeros(4))
    cases.append((".npy instead of .npz", d / "arr.npy"))
    np.savez(d / "foreign.npz", a=np.zeros(3))
    cases.append(("valid npz, not ours", d / "foreign.npz"))
    w = np.load(good)["layer0.weight"]
    meta_cases = {"schema 3": {"schema": 3}, "schema string": {"schema": "1"}, "format": {"format": "x"},
                  "coding": {"coding": "burst"}, "encoding": {"encoding": "poisson"}, "readout": {"readout": "x"},
                  "T = 0": {"T": 0}, "T float": {"T": 2.5}, "T bool": {"T": True}, "T huge": {"T": 10 ** 30},
                  "input_max negative": {"input_max": -3}, "weight_bits 1": {"weight_bits": 1},
                  "weight_bits too small": {"weight_bits": 2}, "v_bits too small": {"v_bits": 3},
                  "v_bits string": {"v_bits": "16"}, "layers not a list": {"layers": 5},
                  "layers empty": {"layers": []}, "layer shape lie": {"layers": [{"n_in": 9, "n_out": 2},
                                                                                 {"n_in": 2, "n_out": 1}]}}
    for name, mu in meta_cases.items():
        cases.append((name, _rewrite(good, d / f"meta_{len(cases)}.npz", meta=mu)))
    array_cases = {"float weights": {"layer0.weight": w.astype(np.float64)},
                   "NaN weights": {"layer0.weight": np.full(w.shape, np.nan)},
                   "inf threshold": {"layer1.threshold": np.array([np.inf])},
                   "bool bias": {"layer0.bias": np.array([True, False])},
                   "threshold 0": {"layer1.threshold": np.array([0])},
                   "threshold negative": {"layer0.threshold": np.array([4, -5])},
                   "bias wrong shape": {"layer0.bias": np.zeros(5, np.int64)},
                   "weight 3-D": {"layer0.weight": w[None]},
                   "kernel on rate": {"layer0.h": np.array([1, 1])},
                   "string array": {"layer0.v_init": np.array(["a", "b"])}}
    for name, mu in array_cases.items():
        cases.append((name, _rewrite(good, d / f"arr_{len(cases)}.npz", arrays=mu)))
    cases.append(("missing array", _rewrite(good, d / "miss.npz", drop=["layer1.bias"])))
    cases.append(("extra array", _rewrite(good, d / "extra.npz", arrays={"layer7.weight": w})))
    np.savez(d / "nometa.npz", **{"layer0.weight": w})
    cases.append(("missing meta", d / "nometa.npz"))
    cases.append(("missing file", d / "does-not-exist.npz"))
    cases.append(("a directory", d))
    return cases


def _bad_datasets(d: Path) -> list[tuple[str, str, Path]]:
    cases = []

    def idx_dir(name, images: bytes, labels: bytes, gz=False):
        p = d / name
        p.mkdir()
        for split in ("train", "t10k"):
            for kind, data in (("images-idx3-ubyte", images), ("labels-idx1-ubyte", labels)):
                fn = p / f"{split}-{kind}{'.gz' if gz else ''}"
                fn.write_bytes(gzip.compress(data) if gz else data)
        return p

    img = struct.pack(">IIII", 0x803, 2, 28, 28) + bytes(2 * 784)
    lab = struct.pack(">II", 0x801, 2) + bytes([1, 2])
    cases.append(("mnist", "bad image magic", idx_dir("m1", struct.pack(">IIII", 0x802, 2, 28, 28) + bytes(1568), lab)))
    cases.append(("mnist", "truncated images", idx_dir("m2", img[:-10], lab)))
    cases.append(("mnist", "count mismatch", idx_dir("m3", img, struct.pack(">II", 0x801, 3) + bytes(3))))
    cases.append(("mnist", "label 10", idx_dir("m4", img, struct.pack(">II", 0x801, 2) + bytes([1, 10]))))
    cases.append(("fashion-mnist", "wrong image size", idx_dir("m5", struct.pack(">IIII", 0x803, 1, 27, 28)
                                                               + bytes(27 * 28), struct.pack(">II", 0x801, 1) + b"\x01")))
    p = idx_dir("m6", img, lab, gz=True)
    for f in p.glob("*.gz"):
        f.write_bytes(f.read_bytes()[:20])
    cases.append(("mnist", "corrupt gzip", p))
    cases.append(("mnist", "missing directory", d / "nowhere"))

    def cifar_dir(name, obj):
        q = d / name
        q.mkdir()
        for n in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            with open(q / n, "wb") as f:
                if isinstance(obj, bytes):
                    f.write(obj)
                else:
                    pickle.dump(obj, f)
        return q

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    cases.append(("cifar10", "code-executing pickle", cifar_dir("c1", Evil())))
    cases.append(("cifar10", "missing data key", cifar_dir("c2", {b"labels": [1]})))
    cases.append(("cifar10", "garbage bytes", cifar_dir("c3", b"\x80\x04garbage")))
    cases.append(("cifar10", "not a dict", cifar_dir("c4", [1, 2, 3])))
    cases.append(("imagenet", "unknown dataset", d))
    return cases


def _bad_cli(d: Path, good: Path) -> list[tuple[str, list[str], Path]]:
    notdir = d / "regular-file"
    notdir.write_text("x")
    out = d / "o.json"
    return [
        ("golden.run: no model", ["golden.run", "--limit", "3"], out),
        ("golden.run: lanes 3", ["golden.run", "--model", str(good), "--lanes", "3", "--json", str(out)], out),
        ("golden.run: corrupt model", ["golden.run", "--model", str(d / "text.npz"), "--json", str(out)], out),
        ("golden.run: unknown dataset", ["golden.run", "--model", str(good), "--dataset", "svhn", "--json", str(out)], out),
        ("hw.generate: lanes 128", ["hw.generate", "--model", str(good), "--lanes", "128", "--out", str(d / "v.v")],
         d / "v.v"),
        ("hw.generate: bad name", ["hw.generate", "--model", str(good), "--out", str(d / "v.v"), "--name", "1x"],
         d / "v.v"),
        ("hw.generate: unwritable out", ["hw.generate", "--model", str(good), "--out", str(notdir / "v.v")],
         notdir / "v.v"),
        ("hw.generate: out is a directory", ["hw.generate", "--model", str(good), "--out", str(d)], d / "d.json"),
        ("sim.regress: stall 2", ["sim.regress", "--model", str(good), "--stall-prob", "2", "--json", str(out)], out),
        ("sim.regress: missing verilog", ["sim.regress", "--model", str(good), "--verilog", str(d / "no.v"),
                                          "--json", str(out)], out),
        ("quant.train: T 0", ["quant.train", "--T", "0", "--out", str(d / "m.npz")], d / "m.npz"),
        ("quant.train: 17-bit weights", ["quant.train", "--weight-bits", "17", "--out", str(d / "m.npz")], d / "m.npz"),
        ("quant.train: hidden -4", ["quant.train", "--hidden", "-4", "--out", str(d / "m.npz")], d / "m.npz"),
        ("quant.train: mnist without data", ["quant.train", "--dataset", "mnist", "--out", str(d / "m.npz")], d / "m.npz"),
        ("sim.fuzz: unknown coding", ["sim.fuzz", "--coding", "burst", "--json", str(out)], out),
        ("sim.fuzz: stall 1", ["sim.fuzz", "--stall-prob", "1", "--json", str(out)], out),
        ("sim.fuzz: json is a directory", ["sim.fuzz", "--seeds", "1", "--json", str(d)], d / "fuzz.json"),
        ("sim.regress: json is a directory", ["sim.regress", "--model", str(good), "--json", str(d)], d / "x.xml"),
    ]


def bad_input_campaign() -> dict:
    """Every bad input must be rejected with the documented error; returns counts and failures."""
    tried, rejected, failures = 0, 0, []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        for name, path in _bad_models(d):
            tried += 1
            try:
                golden.load_model(path)
                failures.append(f"model file '{name}' was accepted")
            except ModelError:
                rejected += 1
            except Exception as e:  # noqa: BLE001 - anything else is a defect to report
                failures.append(f"model file '{name}' raised {type(e).__name__}: {e}")
        for ds, name, path in _bad_datasets(d):
            tried += 1
            try:
                datasets.load(ds, "train", path)
                failures.append(f"dataset '{name}' was accepted")
            except datasets.DatasetError:
                rejected += 1
            except Exception as e:  # noqa: BLE001
                failures.append(f"dataset '{name}' raised {type(e).__name__}: {e}")
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        for name, args, out in _bad_cli(d, d / "good.npz"):
            tried += 1
            r = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, env=env, cwd=ROOT,
                               timeout=300)
            lines = r.stderr.strip().splitlines()
            if r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr + r.stdout and not out.exists():
                rejected += 1
            else:
                failures.append(f"CLI '{name}': exit {r.returncode}, {len(lines)} stderr lines"
                                f"{', output written' if out.exists() else ''}")
    return {"bad_inputs_tried": tried, "bad_inputs_rejected": rejected, "bad_input_failures": failures}


def report_markdown(s: dict) -> str:
    lines = ["# spikeforge robustness report", "",
             "| what | result |", "| --- | --- |",
             f"| random networks checked on Verilator (all codings) | {s['networks']} |",
             f"| samples compared with golden (outputs and every counter) | {s['samples']} |",
             f"| protocol faults injected (reset mid-inference, misplaced `last`, out-of-range value) | "
             f"{s['faults_injected']} |",
             f"| random valid/ready stalls injected | on every stream of every network (p = {s['stall_prob']}) |",
             f"| lint clean (`verilator --lint-only -Wall`, documented waivers) | {s['lint_clean']}/{s['networks']} |",
             f"| functional coverage bins hit (hardware events) | {s['coverage_hit']}/{s['coverage_total']} |",
             f"| network shapes exercised (configuration bins) | {s['shapes_hit']}/{s['shapes_total']} |",
             f"| bad inputs tried / rejected | {s['bad_inputs_tried']} / {s['bad_inputs_rejected']} |",
             f"| mismatches | **{s['mismatches']}** |",
             f"| time | {s['seconds']:.0f} s |", "", "## Coverage (sampled from the hardware, sim.coverage)", "",
             "Hits are observations summed over the campaign; bins this campaign cannot reach are not listed.", "",
             "| point | bin | hits | what the hardware did |", "| --- | --- | --- | --- |"]
    from .coverage import describe
    for point, bins in s["coverage_goal"].items():
        lines += [f"| {point} | {b} | {s['coverage'][point][b] or '**0**'} | {describe(point, b)} |" for b in bins]
    lines += ["", "## Network shapes exercised (configuration coverage, from the netlists' manifests)", "",
              "Not functional coverage: these say which kinds of network the campaign built, not what they did.", "",
              "| point | bin | networks | which netlists |", "| --- | --- | --- | --- |"]
    for point, bins in s["shapes_goal"].items():
        lines += [f"| {point} | {b} | {s['shapes'][point][b] or '**0**'} | {describe(point, b)} |" for b in bins]
    if s["failures"] or s["bad_input_failures"]:
        lines += ["", "## Failures", ""] + [f"- seed {f['seed']}: {f['why']} (`python -m sim.fuzz --replay "
                                            f"{f['reproducer']}`)" for f in s["failures"]]
        lines += [f"- {f}" for f in s["bad_input_failures"]]
    by = {}
    for n in s.get("networks_detail", []):
        by.setdefault(n["coding"], 0)
        by[n["coding"]] += 1
    if by:
        lines += ["", "Networks by coding: " + ", ".join(f"{k} {v}" for k, v in sorted(by.items())) + "."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = ArgumentParser(prog="python -m sim.robust", description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=positive_int, default=200, help="random networks to check (default 200)")
    p.add_argument("--first-seed", type=seed_int, default=0, help="seed of the first network (default 0)")
    p.add_argument("--jobs", type=positive_int, default=2, help="parallel worker processes (default 2)")
    p.add_argument("--stall-prob", type=probability, default=0.3,
                   help="probability in [0, 1) of a random valid/ready stall before each beat (default 0.3)")
    p.add_argument("--out", default="build/reports/robustness.json", metavar="FILE.json",
                   help="the report as JSON; the Markdown report goes next to it as FILE.md "
                        "(default build/reports/robustness.json)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar or progress lines on stderr")
    a = p.parse_args(argv)
    out = main_output("--out", a.out, ".json")
    check_outputs([Output("--out", out), Output("--out", out.with_suffix(".md"), note=f"next to {out.name}")])
    bad = bad_input_campaign()
    c = run_campaign(range(a.first_seed, a.first_seed + a.seeds), stall_prob=a.stall_prob, jobs=a.jobs,
                     progress=not a.no_progress)
    s = {**c.summary(), **bad, "stall_prob": a.stall_prob, "networks_detail": c.per_network}
    md = report_markdown(s)
    with OutputSet() as files:
        files.add_text(out, json.dumps(s, indent=1))
        files.add_text(out.with_suffix(".md"), md)
        files.commit()
    print(md)
    ok = (s["mismatches"] == 0 and not s["missed_coverage"] and not s["missed_shapes"] and s["bad_inputs_rejected"] == s["bad_inputs_tried"])
    return 0 if ok else 1


if __name__ == "__main__":
    guard("sim.robust", main)
