"""Every CLI against its bad arguments, as one table (design.md, "Bad input").

For each row: exit code 2, exactly one line on stderr in the one style ``<module>: error: ...`` (naming the
option at fault where a row says which), no traceback anywhere, and none of the requested output paths
exists afterwards (nothing half-written, no stray temporary files). Only cases that fail while checking
options, output paths, model files and datasets: no training, no Verilator. A module that does not exist
is a failure, not a skip.

The subprocesses are started together (a few at a time) by a module fixture, so the table stays fast;
each row is still its own test.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import golden
from golden import Dense, Model

ROOT = Path(__file__).resolve().parents[1]
CLIS = ("golden.run", "golden.bench", "quant.train", "quant.bench", "hw.generate", "hw.synth", "sim.regress",
        "sim.fuzz", "sim.robust", "sim.sweep", "sim.demo", "sim.bench", "sim.readme")


def _exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:
        return False


# (id, module, argv, outputs that must not exist). Placeholders in {braces} are filled by the fixture:
# good (a valid 64-input model), corrupt (random bytes), trunc (half a model), npy (a .npy file),
# dir (a directory), missing (no such file), schema (schema 99), nin (a 10-input model: wrong for digits),
# blocker (a regular file, used as an output's parent), empty (an empty directory), out (a fresh path
# prefix under the temp dir).
ROWS = [
    # --- golden.run
    ("run-unknown-option", "golden.run", "--model {good} --bogus 1 --json {out}.json", ["{out}.json"]),
    ("run-missing-model-option", "golden.run", "--json {out}.json", ["{out}.json"]),
    ("run-limit-not-int", "golden.run", "--model {good} --limit ten --json {out}.json", ["{out}.json"]),
    ("run-limit-zero", "golden.run", "--model {good} --limit 0 --json {out}.json", ["{out}.json"]),
    ("run-limit-negative", "golden.run", "--model {good} --limit -3 --json {out}.json", ["{out}.json"]),
    ("run-lanes-not-pow2", "golden.run", "--model {good} --lanes 3 --json {out}.json", ["{out}.json"]),
    ("run-lanes-zero", "golden.run", "--model {good} --lanes 0 --json {out}.json", ["{out}.json"]),
    ("run-lanes-too-many", "golden.run", "--model {good} --lanes 128 --json {out}.json", ["{out}.json"]),
    ("run-lanes-float", "golden.run", "--model {good} --lanes 2.0 --json {out}.json", ["{out}.json"]),
    ("run-split-unknown", "golden.run", "--model {good} --split dev --json {out}.json", ["{out}.json"]),
    ("run-model-missing", "golden.run", "--model {missing} --json {out}.json", ["{out}.json"]),
    ("run-model-corrupt", "golden.run", "--model {corrupt} --json {out}.json", ["{out}.json"]),
    ("run-model-truncated", "golden.run", "--model {trunc} --json {out}.json", ["{out}.json"]),
    ("run-model-npy", "golden.run", "--model {npy} --json {out}.json", ["{out}.json"]),
    ("run-model-directory", "golden.run", "--model {dir} --json {out}.json", ["{out}.json"]),
    ("run-model-bad-schema", "golden.run", "--model {schema} --json {out}.json", ["{out}.json"]),
    ("run-model-wrong-n-in", "golden.run", "--model {nin} --json {out}.json", ["{out}.json"]),
    ("run-dataset-unknown", "golden.run", "--model {good} --dataset imagenet --json {out}.json", ["{out}.json"]),
    ("run-dataset-no-data-dir", "golden.run", "--model {good} --dataset mnist --json {out}.json", ["{out}.json"]),
    ("run-data-dir-missing", "golden.run", "--model {good} --dataset fashion-mnist --data-dir {missing} "
     "--json {out}.json", ["{out}.json"]),
    ("run-data-dir-empty", "golden.run", "--model {good} --dataset cifar10 --data-dir {empty} --json {out}.json",
     ["{out}.json"]),
    ("run-data-dir-is-file", "golden.run", "--model {good} --dataset mnist --data-dir {blocker} --json {out}.json",
     ["{out}.json"]),
    ("run-json-unwritable", "golden.run", "--model {good} --limit 5 --json {blocker}/s.json", ["{blocker}/s.json"]),
    ("run-json-is-directory", "golden.run", "--model {good} --limit 5 --json {empty}", []),
    # --- golden.bench
    ("bench-unknown-option", "golden.bench", "--bogus --out {out}.json", ["{out}.json"]),
    ("bench-repeats-zero", "golden.bench", "--repeats 0 --out {out}.json", ["{out}.json"]),
    ("bench-repeats-not-int", "golden.bench", "--repeats many --out {out}.json", ["{out}.json"]),
    ("bench-lanes-zero", "golden.bench", "--lanes 0 --out {out}.json", ["{out}.json"]),
    ("bench-out-unwritable", "golden.bench", "--repeats 5 --out {blocker}/b.json", ["{blocker}/b.json"]),
    # --- quant.train (all fail before torch is imported)
    ("train-missing-out", "quant.train", "--T 4", []),
    ("train-unknown-option", "quant.train", "--out {out}.npz --bogus", ["{out}.npz"]),
    ("train-T-zero", "quant.train", "--out {out}.npz --T 0", ["{out}.npz"]),
    ("train-T-huge", "quant.train", "--out {out}.npz --T 2000", ["{out}.npz"]),
    ("train-T-not-int", "quant.train", "--out {out}.npz --T 8.5", ["{out}.npz"]),
    ("train-weight-bits-1", "quant.train", "--out {out}.npz --weight-bits 1", ["{out}.npz"]),
    ("train-weight-bits-17", "quant.train", "--out {out}.npz --weight-bits 17", ["{out}.npz"]),
    ("train-hidden-zero", "quant.train", "--out {out}.npz --hidden 128,0", ["{out}.npz"]),
    ("train-hidden-not-int", "quant.train", "--out {out}.npz --hidden a,b", ["{out}.npz"]),
    ("train-epochs-zero", "quant.train", "--out {out}.npz --epochs 0", ["{out}.npz"]),
    ("train-lr-negative", "quant.train", "--out {out}.npz --lr -0.1", ["{out}.npz"]),
    ("train-lr-nan", "quant.train", "--out {out}.npz --lr nan", ["{out}.npz"]),
    ("train-batch-zero", "quant.train", "--out {out}.npz --batch-size 0", ["{out}.npz"]),
    ("train-seed-negative", "quant.train", "--out {out}.npz --seed -1", ["{out}.npz"]),
    ("train-threads-zero", "quant.train", "--out {out}.npz --threads 0", ["{out}.npz"]),
    ("train-limit-zero", "quant.train", "--out {out}.npz --limit 0", ["{out}.npz"]),
    ("train-stop-after-zero", "quant.train", "--out {out}.npz --stop-after 0", ["{out}.npz"]),
    ("train-kernel-zero", "quant.train", "--out {out}.npz --coding stcb --kernel 0", ["{out}.npz"]),
    ("train-kernel-17", "quant.train", "--out {out}.npz --coding stcb --T 32 --kernel 17", ["{out}.npz"]),
    ("train-kernel-longer-than-T", "quant.train", "--out {out}.npz --coding stcb --T 2 --kernel 3", ["{out}.npz"]),
    ("train-kernel-needs-stcb", "quant.train", "--out {out}.npz --kernel 3", ["{out}.npz"]),
    ("train-coding-unknown", "quant.train", "--out {out}.npz --coding phase", ["{out}.npz"]),
    ("train-encoding-unknown", "quant.train", "--out {out}.npz --encoding latency", ["{out}.npz"]),
    ("train-tsc-needs-tsc-encoding", "quant.train", "--out {out}.npz --coding tsc --encoding rate", ["{out}.npz"]),
    ("train-tsc-encoding-needs-tsc", "quant.train", "--out {out}.npz --encoding tsc", ["{out}.npz"]),
    ("train-tsc-readout-count", "quant.train", "--out {out}.npz --coding tsc --readout count", ["{out}.npz"]),
    ("train-tsc-T-1", "quant.train", "--out {out}.npz --coding tsc --T 1", ["{out}.npz"]),
    ("train-tsc-T-over-levels", "quant.train", "--out {out}.npz --coding tsc --T 18", ["{out}.npz"]),
    ("train-grad-stl-needs-stcb", "quant.train", "--out {out}.npz --grad stl", ["{out}.npz"]),
    ("train-grad-unknown", "quant.train", "--out {out}.npz --grad magic", ["{out}.npz"]),
    ("train-surrogate-unknown", "quant.train", "--out {out}.npz --surrogate relu", ["{out}.npz"]),
    ("train-dataset-unknown", "quant.train", "--out {out}.npz --dataset imagenet", ["{out}.npz"]),
    ("train-dataset-no-data-dir", "quant.train", "--out {out}.npz --dataset mnist", ["{out}.npz"]),
    ("train-data-dir-empty", "quant.train", "--out {out}.npz --dataset mnist --data-dir {empty}", ["{out}.npz"]),
    ("train-out-not-npz", "quant.train", "--out {out}.txt", ["{out}.txt"]),
    ("train-out-unwritable", "quant.train", "--out {blocker}/m.npz", ["{blocker}/m.npz"]),
    ("train-out-is-directory", "quant.train", "--out {dirnpz}", []),
    # --- quant.bench
    ("qbench-unknown-option", "quant.bench", "--bogus --out {out}.json", ["{out}.json"]),
    ("qbench-only-unknown", "quant.bench", "--only rate-T8-w8,nope --out {out}.json --models {out}-models",
     ["{out}.json", "{out}-models"]),
    ("qbench-epochs-zero", "quant.bench", "--epochs 0 --out {out}.json", ["{out}.json"]),
    ("qbench-seed-not-int", "quant.bench", "--seed x --out {out}.json", ["{out}.json"]),
    ("qbench-out-not-json", "quant.bench", "--out {out}.txt --models {out}-models", ["{out}.txt", "{out}-models"]),
    ("qbench-out-unwritable", "quant.bench", "--out {blocker}/t.json --models {out}-models",
     ["{blocker}/t.json", "{out}-models"]),
    ("qbench-models-unwritable", "quant.bench", "--out {out}.json --models {blocker}/models", ["{out}.json"]),
    # --- hw.generate
    ("gen-missing-out", "hw.generate", "--model {good}", []),
    ("gen-missing-model", "hw.generate", "--out {out}.v", ["{out}.v"]),
    ("gen-unknown-option", "hw.generate", "--model {good} --out {out}.v --bogus", ["{out}.v"]),
    ("gen-lanes-not-pow2", "hw.generate", "--model {good} --out {out}.v --lanes 6", ["{out}.v"]),
    ("gen-lanes-zero", "hw.generate", "--model {good} --out {out}.v --lanes 0", ["{out}.v"]),
    ("gen-lanes-negative", "hw.generate", "--model {good} --out {out}.v --lanes -8", ["{out}.v"]),
    ("gen-model-corrupt", "hw.generate", "--model {corrupt} --out {out}.v", ["{out}.v"]),
    ("gen-model-npy", "hw.generate", "--model {npy} --out {out}.v", ["{out}.v"]),
    ("gen-model-missing", "hw.generate", "--model {missing} --out {out}.v", ["{out}.v"]),
    ("gen-name-not-identifier", "hw.generate", "--model {good} --out {out}.v --name 9-bad", ["{out}.v"]),
    ("gen-out-unwritable", "hw.generate", "--model {good} --out {blocker}/v --lanes 4", ["{blocker}/v"]),
    # --- sim.regress (all fail before any Verilator build)
    ("regress-unknown-option", "sim.regress", "--model {good} --bogus --json {out}.json", ["{out}.json"]),
    ("regress-missing-model", "sim.regress", "--json {out}.json", ["{out}.json"]),
    ("regress-stall-prob-one", "sim.regress", "--model {good} --stall-prob 1 --json {out}.json", ["{out}.json"]),
    ("regress-stall-prob-negative", "sim.regress", "--model {good} --stall-prob -0.1 --json {out}.json",
     ["{out}.json"]),
    ("regress-stall-prob-text", "sim.regress", "--model {good} --stall-prob often --json {out}.json", ["{out}.json"]),
    ("regress-stall-prob-nan", "sim.regress", "--model {good} --stall-prob nan --json {out}.json", ["{out}.json"]),
    ("regress-lanes-not-pow2", "sim.regress", "--model {good} --lanes 5 --json {out}.json", ["{out}.json"]),
    ("regress-limit-zero", "sim.regress", "--model {good} --limit 0 --json {out}.json", ["{out}.json"]),
    ("regress-seed-not-int", "sim.regress", "--model {good} --seed x --json {out}.json", ["{out}.json"]),
    ("regress-model-corrupt", "sim.regress", "--model {corrupt} --json {out}.json --junit {out}.xml",
     ["{out}.json", "{out}.xml"]),
    ("regress-model-wrong-n-in", "sim.regress", "--model {nin} --json {out}.json", ["{out}.json"]),
    ("regress-dataset-unknown", "sim.regress", "--model {good} --dataset svhn --json {out}.json", ["{out}.json"]),
    ("regress-dataset-no-data-dir", "sim.regress", "--model {good} --dataset cifar10 --json {out}.json",
     ["{out}.json"]),
    ("regress-verilog-missing", "sim.regress", "--model {good} --verilog {missing}.v --json {out}.json",
     ["{out}.json"]),
    ("regress-verilog-no-manifest", "sim.regress", "--model {good} --lanes 4 --verilog {blocker} --json {out}.json",
     ["{out}.json"]),
    # --- sim.demo
    ("demo-unknown-option", "sim.demo", "--bogus", []),
    ("demo-lanes-not-pow2", "sim.demo", "--lanes 3", []),
    ("demo-epochs-zero", "sim.demo", "--epochs 0", []),
    ("demo-seed-not-int", "sim.demo", "--seed 1.5", []),
    ("demo-stall-prob-text", "sim.demo", "--stall-prob often", []),
    # regressions: a probability >= 1 stalled forever; a name with a path escaped build/
    ("demo-stall-prob-2", "sim.demo", "--stall-prob 2", []),
    ("demo-name-path", "sim.demo", "--name ../x", []),
    # --- sim.bench
    ("simbench-unknown-option", "sim.bench", "--bogus --out {out}.json", ["{out}.json"]),
    ("simbench-lanes-zero", "sim.bench", "--lanes 0 --out {out}.json", ["{out}.json"]),
    ("simbench-lanes-too-many", "sim.bench", "--lanes 128 --out {out}.json", ["{out}.json"]),
    # --- hw.synth (optional)
    ("synth-missing-model", "hw.synth", "--out {out}-s.json", ["{out}-s.json", "{out}-s.md"]),
    ("synth-target-unknown", "hw.synth", "--model {good} --target xilinx --out {out}-s.json", ["{out}-s.json"]),
    ("synth-device-unknown", "hw.synth", "--model {good} --device 999k --out {out}-s.json", ["{out}-s.json"]),
    ("synth-freq-zero", "hw.synth", "--model {good} --freq 0 --out {out}-s.json", ["{out}-s.json"]),
    ("synth-freq-nan", "hw.synth", "--model {good} --freq nan --out {out}-s.json", ["{out}-s.json"]),
    ("synth-freq-text", "hw.synth", "--model {good} --freq fast --out {out}-s.json", ["{out}-s.json"]),
    ("synth-seed-zero", "hw.synth", "--model {good} --seed 0 --out {out}-s.json", ["{out}-s.json"]),
    ("synth-lanes-not-pow2", "hw.synth", "--model {good} --lanes 12 --out {out}-s.json", ["{out}-s.json"]),
    ("synth-model-corrupt", "hw.synth", "--model {corrupt} --out {out}-s.json", ["{out}-s.json", "{out}-s.md"]),
    # --- sim.sweep (optional)
    ("sweep-missing-model", "sim.sweep", "--out {out}-w.json", ["{out}-w.csv", "{out}-w.json"]),
    ("sweep-lanes-not-pow2", "sim.sweep", "--model {good} --lanes 1,3 --out {out}-w.json", ["{out}-w.csv"]),
    ("sweep-lanes-repeated", "sim.sweep", "--model {good} --lanes 2,2 --out {out}-w.json", ["{out}-w.csv"]),
    ("sweep-lanes-empty-item", "sim.sweep", "--model {good} --lanes 1,,2 --out {out}-w.json", ["{out}-w.csv"]),
    ("sweep-codings-unknown", "sim.sweep", "--model {good} --codings rate,phase --out {out}-w.json", ["{out}-w.csv"]),
    ("sweep-T-zero", "sim.sweep", "--model {good} --T 0 --out {out}-w.json", ["{out}-w.csv"]),
    ("sweep-T-not-int", "sim.sweep", "--model {good} --T 4,x --out {out}-w.json", ["{out}-w.csv"]),
    ("sweep-clock-zero", "sim.sweep", "--model {good} --clock-mhz 0 --out {out}-w.json", ["{out}-w.csv"]),
    ("sweep-clock-inf", "sim.sweep", "--model {good} --clock-mhz inf --out {out}-w.json", ["{out}-w.csv"]),
    ("sweep-verify-negative", "sim.sweep", "--model {good} --verify -1 --out {out}-w.json", ["{out}-w.csv"]),
    ("sweep-limit-zero", "sim.sweep", "--model {good} --limit 0 --out {out}-w.json", ["{out}-w.csv"]),
    ("sweep-model-corrupt", "sim.sweep", "--model {good} {corrupt} --out {out}-w.json", ["{out}-w.csv"]),
    ("sweep-fmax-json-missing", "sim.sweep", "--model {good} --fmax-json {missing}.json --out {out}-w.json",
     ["{out}-w.csv"]),
    ("sweep-fmax-json-not-json", "sim.sweep", "--model {good} --fmax-json {corrupt} --out {out}-w.json",
     ["{out}-w.csv"]),
    ("sweep-energy-table-missing", "sim.sweep", "--model {good} --energy-table {missing}.json --out {out}-w.json",
     ["{out}-w.csv"]),
    ("sweep-energy-table-corrupt", "sim.sweep", "--model {good} --energy-table {corrupt} --out {out}-w.json",
     ["{out}-w.csv"]),
    ("sweep-dataset-unknown", "sim.sweep", "--model {good} --dataset imagenet --out {out}-w.json", ["{out}-w.csv"]),
    ("sweep-model-wrong-n-in", "sim.sweep", "--model {nin} --out {out}-w.json", ["{out}-w.csv"]),
    ("sweep-out-unwritable", "sim.sweep", "--model {good} --lanes 1 --limit 5 --no-progress --out {blocker}/w.json",
     ["{blocker}/w.csv", "{blocker}/w.json"]),
    ("sweep-out-json-is-directory", "sim.sweep", "--model {good} --lanes 1 --limit 5 --no-progress --out {jsondir}.json",
     ["{jsondir}.csv", "{jsondir}_cycles.png"]),
    ("qbench-seed-negative", "quant.bench", "--seed -1 --only rate-T8-w8 --out {out}.json --models {out}-models",
     ["{out}.json", "{out}-models/rate-T8-w8.npz"]),
    ("bench-lanes-not-pow2", "golden.bench", "--lanes 3 --repeats 5 --out {out}.json", ["{out}.json"]),
    # --- issue 14: every option checked, every output path checked before any work, one error style
    ("fuzz-stall-prob-one", "sim.fuzz", "--stall-prob 1.0 --seeds 1 --json {out}.json", ["{out}.json"],
     "--stall-prob"),
    ("fuzz-stall-prob-two", "sim.fuzz", "--stall-prob 2 --seeds 1 --json {out}.json", ["{out}.json"], "--stall-prob"),
    ("fuzz-stall-prob-negative", "sim.fuzz", "--stall-prob -0.2 --seeds 1 --json {out}.json", ["{out}.json"],
     "--stall-prob"),
    ("fuzz-stall-prob-nan", "sim.fuzz", "--stall-prob nan --seeds 1 --json {out}.json", ["{out}.json"],
     "--stall-prob"),
    ("fuzz-first-seed-negative", "sim.fuzz", "--first-seed -1 --seeds 1 --json {out}.json", ["{out}.json"],
     "--first-seed"),
    ("fuzz-seeds-past-the-last", "sim.fuzz", "--first-seed 4294967295 --seeds 2 --json {out}.json", ["{out}.json"],
     "--seeds"),
    ("fuzz-seeds-zero", "sim.fuzz", "--seeds 0 --json {out}.json", ["{out}.json"], "--seeds"),
    ("fuzz-jobs-zero", "sim.fuzz", "--jobs 0 --json {out}.json", ["{out}.json"], "--jobs"),
    ("fuzz-coding-unknown", "sim.fuzz", "--coding rate,burst --seeds 1 --json {out}.json", ["{out}.json"],
     "--coding"),
    ("fuzz-json-is-directory", "sim.fuzz", "--seeds 1 --json {empty}", ["{tmp}/empty.json"], "--json"),
    ("fuzz-json-under-a-file", "sim.fuzz", "--seeds 1 --json {blocker}/f.json", ["{blocker}/f.json"], "--json"),
    ("fuzz-replay-missing", "sim.fuzz", "--replay {missing}", [], "--replay"),
    ("fuzz-merge-missing", "sim.fuzz", "--merge {missing}.json --json {out}.json", ["{out}.json"], "--merge"),
    ("fuzz-merge-not-a-summary", "sim.fuzz", "--merge {corrupt} --json {out}.json", ["{out}.json"], "--merge"),
    ("fuzz-merge-json-is-a-shard", "sim.fuzz", "--merge {corrupt} --json {corrupt}", [], "--json"),
    ("regress-json-is-directory", "sim.regress", "--model {good} --json {empty}", ["{tmp}/empty.xml"], "--json"),
    ("regress-json-trailing-slash", "sim.regress", "--model {good} --json {out}-d/", ["{out}-d", "{out}-d.xml"],
     "--json"),
    ("regress-junit-under-a-file", "sim.regress", "--model {good} --json {out}.json --junit {blocker}/r.xml",
     ["{out}.json", "{blocker}/r.xml"], "--junit"),
    ("regress-junit-is-the-json", "sim.regress", "--model {good} --json {out}.json --junit {out}.json",
     ["{out}.json"], "--junit"),
    ("regress-simulator-unknown", "sim.regress", "--model {good} --simulator modelsim --json {out}.json",
     ["{out}.json"], "--simulator"),
    ("regress-seed-negative", "sim.regress", "--model {good} --seed -4 --json {out}.json", ["{out}.json"], "--seed"),
    ("regress-stall-prob-inf", "sim.regress", "--model {good} --stall-prob inf --json {out}.json", ["{out}.json"],
     "--stall-prob"),
    ("sweep-out-existing-directory", "sim.sweep", "--model {good} --lanes 1 --limit 5 --no-progress --out {empty}/",
     ["{tmp}/empty.csv", "{tmp}/empty.json", "{tmp}/empty_cycles.png"], "--out"),
    ("sweep-out-without-json-suffix", "sim.sweep", "--model {good} --lanes 1 --limit 5 --no-progress --out {out}-w",
     ["{out}-w.csv", "{out}-w.json", "{out}-w"], "--out"),
    ("sweep-out-companion-is-directory", "sim.sweep", "--model {good} --lanes 1 --limit 5 --no-progress "
     "--out {tmp}/outs/comp.json", ["{tmp}/outs/comp.json", "{tmp}/outs/comp.csv"], "--out"),
    ("sweep-seed-negative", "sim.sweep", "--model {good} --seed -1 --out {out}-w.json", ["{out}-w.json"], "--seed"),
    ("sweep-clock-nan", "sim.sweep", "--model {good} --clock-mhz nan --out {out}-w.json", ["{out}-w.json"],
     "--clock-mhz"),
    ("gen-out-is-directory", "hw.generate", "--model {good} --out {empty}", ["{empty}/empty.v"], "--out"),
    ("gen-out-not-verilog", "hw.generate", "--model {good} --out {out}-v", ["{out}-v", "{out}-v.json"], "--out"),
    ("gen-manifest-is-directory", "hw.generate", "--model {good} --out {tmp}/outs/sweepdir.v",
     ["{tmp}/outs/sweepdir.v"], "--out"),
    ("synth-out-not-json", "hw.synth", "--model {good} --out {out}-s", ["{out}-s", "{out}-s.md"], "--out"),
    ("synth-out-is-directory", "hw.synth", "--model {good} --out {empty}/", ["{tmp}/empty.md"], "--out"),
    ("robust-out-not-json", "sim.robust", "--seeds 1 --out {out}-r", ["{out}-r.json", "{out}-r.md"], "--out"),
    ("robust-stall-prob-one", "sim.robust", "--seeds 1 --stall-prob 1 --out {out}-r.json", ["{out}-r.json"],
     "--stall-prob"),
    ("robust-first-seed-negative", "sim.robust", "--seeds 1 --first-seed -3 --out {out}-r.json", ["{out}-r.json"],
     "--first-seed"),
    ("robust-out-is-directory", "sim.robust", "--seeds 1 --out {jsondir}.json", ["{jsondir}.md"], "--out"),
    ("bench-out-is-directory", "golden.bench", "--repeats 5 --out {empty}", [], "--out"),
    ("bench-out-not-json", "golden.bench", "--repeats 5 --out {out}.txt", ["{out}.txt"], "--out"),
    ("simbench-out-is-directory", "sim.bench", "--out {jsondir}.json", [], "--out"),
    ("qbench-out-is-directory", "quant.bench", "--out {jsondir}.json --models {out}-models", ["{out}-models"],
     "--out"),
    ("qbench-models-is-a-file", "quant.bench", "--out {out}.json --models {blocker}", ["{out}.json"], "--models"),
    ("train-resume-without-checkpoint", "quant.train", "--out {out}.npz --resume", ["{out}.npz", "{out}.json"],
     "--resume"),
    ("train-metrics-is-directory", "quant.train", "--out {tmp}/outs/sweepdir.npz", ["{tmp}/outs/sweepdir.npz"],
     "--out"),
    ("train-out-trailing-slash", "quant.train", "--out {out}-m/", ["{out}-m"], "--out"),
    ("run-json-trailing-slash", "golden.run", "--model {good} --limit 5 --json {out}-d/", ["{out}-d"], "--json"),
    ("demo-build-dir-is-a-file", "sim.demo", "--build-dir {blocker} --no-synth", [], "--build-dir"),
    ("demo-build-dir-under-a-file", "sim.demo", "--build-dir {blocker}/b --no-synth", [], "--build-dir"),
    ("demo-seed-negative", "sim.demo", "--seed -1", [], "--seed"),
    ("demo-synth-all-and-no-synth", "sim.demo", "--synth-all --no-synth", [], "--synth-all"),
    ("demo-simulator-unknown", "sim.demo", "--simulator ghdl", [], "--simulator"),
    ("readme-only-unknown", "sim.readme", "--check --only nope", [], "--only"),
    ("readme-files-missing", "sim.readme", "--check --files {missing}.md", [], "--files"),
]

# Rows that fail today because of bugs in modules this test's author does not own (reported, not fixed
# here); strict, so each turns into a failure to remove from this list once it is fixed.
KNOWN_BUGS = {
}


def _fill(text: str, ph: dict, row_id: str) -> str:
    return text.format(**ph, out=str(ph["tmp"] / "outs" / row_id))


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    """Create the fixture files, then run every row (3 at a time); returns {row id: (result, outputs)}."""
    tmp = tmp_path_factory.mktemp("cli-table")
    (tmp / "outs").mkdir()
    rng = np.random.default_rng(3)
    good = Model([Dense(rng.integers(-20, 20, (12, 64)), 0, 40, 0), Dense(rng.integers(-20, 20, (10, 12)), 0, 30, 0)],
                 T=4, input_max=16)
    golden.save_model(good, tmp / "good.npz")
    golden.save_model(Model([Dense(rng.integers(-5, 5, (10, 10)), 0, 9, 0)], T=2, input_max=16), tmp / "nin.npz")
    (tmp / "corrupt.npz").write_bytes(rng.integers(0, 256, 300, dtype=np.uint8).tobytes())
    data = (tmp / "good.npz").read_bytes()
    (tmp / "trunc.npz").write_bytes(data[:len(data) // 2])
    np.save(tmp / "plain.npy", np.arange(4))
    with np.load(tmp / "good.npz") as z:
        files = {k: z[k] for k in z.files}
    files["meta"] = np.array(json.dumps({**json.loads(str(files["meta"])), "schema": 99}))
    np.savez(tmp / "schema.npz", **files)
    (tmp / "adir").mkdir()
    (tmp / "empty").mkdir()
    (tmp / "dir.npz").mkdir()
    (tmp / "blocker").write_text("a regular file, not a directory\n")
    (tmp / "outs" / "sweepdir.json").mkdir()
    (tmp / "outs" / "comp_cycles.png").mkdir()
    ph = {"tmp": tmp, "good": tmp / "good.npz", "nin": tmp / "nin.npz", "corrupt": tmp / "corrupt.npz",
          "trunc": tmp / "trunc.npz", "npy": tmp / "plain.npy", "schema": tmp / "schema.npz", "dir": tmp / "adir",
          "empty": tmp / "empty", "dirnpz": tmp / "dir.npz", "blocker": tmp / "blocker", "missing": tmp / "nope",
          "jsondir": tmp / "outs" / "sweepdir"}
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONDONTWRITEBYTECODE="1")

    def run(row):
        row_id, module, argv, outputs = row[:4]
        if not _exists(module):
            return row_id, None, []
        args = [_fill(a, ph, row_id) for a in argv.split()]
        # cwd: a scratch dir, so relative defaults (build/...) can never land in the repository
        r = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, env=env,
                           cwd=tmp / "outs", timeout=300)
        return row_id, r, [Path(_fill(o, ph, row_id)) for o in outputs]

    with ThreadPoolExecutor(max_workers=3) as pool:
        results = {row_id: (r, outs) for row_id, r, outs in pool.map(run, ROWS)}
    results["__tmp__"] = tmp
    return results


def test_table_is_big_enough():
    assert len(ROWS) >= 60 and len({r[0] for r in ROWS}) == len(ROWS)
    assert {r[1] for r in ROWS} == set(CLIS)
    assert f"{len(ROWS)}-row table" in (ROOT / "README.md").read_text()     # README says how many, exactly


@pytest.mark.parametrize("row", [pytest.param(r, id=r[0], marks=[pytest.mark.xfail(reason=KNOWN_BUGS[r[0]], strict=True)]
                                              if r[0] in KNOWN_BUGS else []) for r in ROWS])
def test_cli_rejects(table, row):
    row_id, module, argv, _ = row[:4]
    option = row[4] if len(row) > 4 else None
    r, outputs = table[row_id]
    assert r is not None, f"{module} does not exist"
    what = f"python -m {module} {argv}\nexit {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    assert r.returncode == 2, what
    assert "Traceback" not in r.stdout + r.stderr, what
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].strip(), what
    # one style for every CLI; the option at fault comes right after the prefix
    assert lines[0].startswith(f"{module}: error: "), what
    if option is not None:
        assert lines[0].startswith(f"{module}: error: {option}"), what
    for o in outputs:
        assert not o.exists(), f"{o} exists after a rejected run\n{what}"
        if o.parent.is_dir():
            stray = [p.name for p in o.parent.iterdir() if p.name.startswith(f".{o.name}.") and p.suffix == ".tmp"]
            assert not stray, f"temporary files left behind: {stray}\n{what}"


class _Parsed(Exception):
    pass


@pytest.mark.parametrize("module", CLIS)
def test_every_option_has_a_help_line(module, monkeypatch):
    """``--help`` explains every option (sim.regress --dataset/--split/..., sim.fuzz --first-seed/--stall-prob/
    --json and sim.sweep --no-progress had none)."""
    import importlib
    from golden.cli import ArgumentParser
    seen = []

    def capture(self, argv=None, namespace=None):
        seen.append(self)
        raise _Parsed

    monkeypatch.setattr(ArgumentParser, "parse_args", capture)
    with pytest.raises(_Parsed):
        importlib.import_module(module).main([])
    (parser,) = seen
    bare = [a.option_strings[-1] for a in parser._actions
            if a.option_strings and a.option_strings[-1] != "--help" and not (a.help or "").strip()]
    assert bare == [], f"{module}: options without help: {bare}"
