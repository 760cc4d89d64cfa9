"""Build a generated core with Verilator or Icarus Verilog (cached) and run cocotb jobs on it.

Builds live under ``build/sim/<top>-<hash>/``, where the hash covers the Verilog text, the top
name, the simulator, the build arguments, waves, and the cocotb and simulator versions; an unchanged
netlist is never rebuilt. Only what a simulation needs is kept (the executable or ``sim.vvp``, the
source, the log): Verilator's precompiled headers and objects, 140 MB for a demo-sized core, are
deleted after the build. The cache is bounded (``sim.simcache``: least recently used builds are
pruned after each new build). Verilator's run-time library is compiled by the first build with a
given set of flags and linked by the others (``sim.vruntime``). A job is a JSON file handed to ``sim.tb``
through SPIKEFORGE_JOB.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import simcache, vruntime
from .harness import HANG_FILE, Harness, harness
from .toolchain import LINT_WAIVERS, ToolchainError, ensure_verilator, verilator_version

__all__ = ["Build", "build", "run_job", "SimError", "BUILD_ARGS", "SIMULATORS", "estimate_seconds",
           "icarus_version", "ensure_simulator", "cycle_budget", "SimHang", "wall_limit"]

ROOT = Path(__file__).resolve().parents[1]
BUILD_ARGS = (*LINT_WAIVERS, "--x-assign", "fast", "--x-initial", "fast", "-O3")
# cocotb's runner builds with --public-flat-rw, which keeps every signal of every module visible to VPI
# and stops Verilator from inlining and optimising them away: the core ran 3.5x slower. The testbench
# reads only the harness (sim.harness), so only the harness's signals are made public (public.vlt), and
# --timing lets the harness make its own clock.
VERILATOR_VISIBILITY = ("--no-public-flat-rw", "--timing")
SIMULATORS = ("verilator", "icarus")
# 4-state simulators: X and Z exist there, so the testbench checks the outputs for them
FOUR_STATE = ("icarus",)
TIMESCALE = ("1ns", "1ps")
# what a build takes on the 2-core reference machine when the cache has no history yet
_DEFAULT_SECONDS = {("verilator", False): 20.0, ("verilator", True): 6.0, ("icarus", False): 2.0,
                    ("icarus", True): 2.0}
_STAMP = ".built"


class SimError(RuntimeError):
    """The simulator could not be built or did not complete a job."""


class SimHang(SimError):
    """The core (or the simulation) stopped making progress: the message names the sample and the phase."""


# the slowest simulation speed (cycles per second) still taken for progress, per simulator
_MIN_RATE = {"verilator": 20_000, "icarus": 300}


def wall_limit(max_cycles, simulator: str) -> int | None:
    """Seconds a job of ``max_cycles`` may take on ``simulator`` before it is killed as hung."""
    if not max_cycles:
        return None
    # 300 s of start-up slack: under a load of 4 on 2 cores (pytest's two workers and a nextpnr run) the
    # harness's hang test took more than 120 s before its own cycle budget could name the hang
    return int(300 + int(max_cycles) / _MIN_RATE[simulator])


@dataclass
class Build:
    dir: Path
    top: str
    cached: bool
    seconds: float
    waves: bool
    simulator: str = "verilator"
    core: str = ""          # the core's module; ``top`` is the harness around it (sim.harness)


def icarus_version() -> str:
    exe = shutil.which("iverilog")
    if exe is None:
        raise ToolchainError("Icarus Verilog is not installed (iverilog not on PATH); on Debian or Ubuntu: "
                             "sudo apt-get install iverilog")
    r = subprocess.run([exe, "-V"], capture_output=True, text=True)
    return (r.stdout or r.stderr).splitlines()[0].strip() if (r.stdout or r.stderr) else "unknown"


def ensure_simulator(simulator: str) -> str:
    """Make ``simulator`` usable (PATH, VERILATOR_ROOT); returns its version; ToolchainError if missing."""
    if simulator == "verilator":
        ensure_verilator()
        return verilator_version()
    if simulator == "icarus":
        ensure_verilator()          # not needed to simulate, but lint and the rest of the flow use it
        return icarus_version()
    raise ToolchainError(f"unknown simulator {simulator!r} (choose from {', '.join(SIMULATORS)})")


def _build_args(simulator: str) -> tuple:
    return (*BUILD_ARGS, *VERILATOR_VISIBILITY) if simulator == "verilator" else ()


def _cxx_opt(fast: bool) -> str:
    """The C++ optimisation of a Verilator build: none for ``fast`` builds, else the model's hot code at
    -O2 instead of verilated.mk's -Os (it simulates faster)."""
    return "OPT_FAST=-O0 OPT_SLOW=-O0 OPT_GLOBAL=-O0" if fast else "OPT_FAST=-O2"


def _key(verilog_text: str, top: str, waves: bool, fast: bool = False, simulator: str = "verilator") -> str:
    import cocotb
    h = hashlib.sha256()
    parts = [verilog_text, top, repr(_build_args(simulator)), str(waves), str(fast), cocotb.__version__,
             ensure_simulator(simulator), _cxx_opt(fast)]
    if simulator != "verilator":     # keeps the keys of existing Verilator builds valid
        parts.append(simulator)
    for part in parts:
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def estimate_seconds(build_root: Path, simulator: str, fast: bool) -> float:
    """Expected build time: the median of the builds of the same kind in the cache, else a default."""
    seen = []
    for e in simcache.entries(build_root):
        try:
            d = json.loads((e.path / _STAMP).read_text())
        except (OSError, ValueError):
            continue
        if d.get("simulator", "verilator") == simulator and d.get("fast", False) == fast and "seconds" in d:
            seen.append(float(d["seconds"]))
    return statistics.median(seen[-9:]) if seen else _DEFAULT_SECONDS[(simulator, bool(fast))]


def _trim(bdir: Path, keep: set[str]) -> None:
    """Delete what only the build needed (objects, precompiled headers, generated C++)."""
    for f in bdir.iterdir():
        if f.name in keep or f.name.startswith("."):
            continue
        if f.is_dir():
            shutil.rmtree(f, ignore_errors=True)
        else:
            f.unlink()


def build(verilog: Path, top: str, *, waves: bool = False, build_root: Path | None = None,
          quiet: bool = True, fast: bool = False, simulator: str = "verilator", log=None) -> Build:
    """Build ``verilog`` for ``simulator`` (cached by content); returns the build directory.

    ``fast`` compiles Verilator's C++ without optimisation: builds are several times quicker and
    simulation slower, the right trade for the fuzzer's many small networks. ``log``, when given,
    receives one line before a build (what and how long) or when the cache is used."""
    if simulator not in SIMULATORS:
        raise SimError(f"unknown simulator {simulator!r} (choose from {', '.join(SIMULATORS)})")
    ensure_simulator(simulator)
    verilog = Path(verilog).resolve()
    text = verilog.read_text()
    hv = harness(_manifest_of(verilog, top))
    build_root = Path(build_root or ROOT / "build" / "sim")
    bdir = build_root / f"{top}-{_key(text + hv.verilog, top, waves, fast, simulator)}"
    product = "sim.vvp" if simulator == "icarus" else hv.top
    name = "Icarus Verilog" if simulator == "icarus" else "Verilator"
    if (bdir / _STAMP).exists() and (bdir / product).exists():
        simcache.touch(bdir)
        if log:
            log(f"using the cached {name} build {_rel(bdir)}")
        return Build(bdir, hv.top, True, 0.0, waves, simulator, top)
    if log:
        log(f"building the netlist with {name}, about {max(1, round(estimate_seconds(build_root, simulator, fast)))} s "
            f"(cached in {_rel(bdir)} for the next run)")
    # The build runs outside the cache, where its objects and precompiled headers (140 MB for a demo-sized
    # core) never count against the cap; only the trimmed result moves in.
    build_root.mkdir(parents=True, exist_ok=True)
    work = simcache.work_dir(build_root, bdir.name)    # removes killed builds' leftovers first
    try:
        seconds = _run_build(work, text, top, hv, waves, quiet, fast, simulator, build_root)
        _trim(work, {product, f"{top}.v", f"{hv.top}.v", "build.log"})
        (work / _STAMP).write_text(json.dumps({"seconds": seconds, "simulator": simulator, "fast": fast}))
        simcache.touch(work)
        if bdir.exists():
            shutil.rmtree(bdir)
        try:
            os.replace(work, bdir)
        except OSError:
            if not (bdir / _STAMP).exists():    # not another process's finished copy of the same build
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    gone = simcache.prune(build_root, keep=[bdir])
    if log and gone:
        log(f"simulator cache: removed {len(gone)} least recently used builds "
            f"({sum(e.bytes for e in gone) / (1 << 20):.0f} MB) to stay under "
            f"{simcache.cap_bytes() / (1 << 20):.0f} MB")
    return Build(bdir, hv.top, False, seconds, waves, simulator, top)


def _manifest_of(verilog: Path, top: str) -> dict:
    """The manifest ``hw.generate`` wrote next to ``verilog`` (the harness is generated from it)."""
    j = verilog.with_suffix(".json")
    try:
        man = json.loads(j.read_text())
    except (OSError, ValueError) as e:
        raise SimError(f"{verilog}: no readable manifest {j.name} next to it ({e}); generate with hw.generate") \
            from None
    if man.get("top") != top:
        raise SimError(f"{j}: describes top {man.get('top')!r}, not {top!r}")
    return man


# make variables the runner sets for every Verilator build (see _run_build)
_MAKE_VARS = ("CFG_CXXFLAGS_PCH_I=-include", "CFG_CXXFLAGS_COROUTINES=-fcoroutines")


def _runtime_dir(build_root: Path, waves: bool, fast: bool) -> Path:
    """Where builds with these flags keep Verilator's compiled run-time library (sim.vruntime)."""
    import cocotb
    return vruntime.runtime_dir(build_root, [verilator_version(), cocotb.__version__, repr(_build_args("verilator")),
                                             _cxx_opt(fast), str(waves), *_MAKE_VARS])


def _run_build(bdir: Path, text: str, top: str, hv: Harness, waves: bool, quiet: bool, fast: bool,
               simulator: str, build_root: Path | None = None) -> float:
    from cocotb_tools.runner import get_runner
    # sources are copied in so the build does not depend on where the netlist came from
    src = bdir / f"{top}.v"
    src.write_text(text)
    hsrc = bdir / f"{hv.top}.v"
    hsrc.write_text(hv.verilog)
    runner = get_runner(simulator)
    blog = bdir / "build.log"
    # The wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, so g++ takes the precompiled
    # header for a linker input as soon as a design spans several .cpp files. cocotb runs make
    # itself; variable definitions in MAKEFLAGS reach it as if given on its command line. It also
    # leaves CFG_CXXFLAGS_COROUTINES empty, which --timing (the harness's clock) needs (_MAKE_VARS)
    flags = os.environ.get("MAKEFLAGS", "")
    for var in _MAKE_VARS:
        if var.split("=")[0] not in flags:
            flags = (flags + " " + var).strip()
    saved = os.environ.get("MAKEFLAGS")
    os.environ["MAKEFLAGS"] = flags + " " + _cxx_opt(fast)
    t0 = time.perf_counter()
    try:
        kw = {"timescale": TIMESCALE} if simulator == "icarus" else {}
        sources = [src, hsrc]
        if simulator == "verilator":
            vlt = bdir / "public.vlt"
            vlt.write_text(f'`verilator_config\npublic_flat_rw -module "{hv.top}" -var "*"\n')
            sources.append(vlt)
            if build_root is not None:
                # Verilator's run-time library from an earlier build with the same flags (sim.vruntime),
                # copied in between Verilator's code generation and make
                rt = _runtime_dir(build_root, waves, fast)
                seed = vruntime.seed_command(rt)
                if seed is not None:
                    made = runner._build_command

                    def seeded():
                        cmds = made()
                        at = next((i for i, c in enumerate(cmds) if c and Path(c[0]).name == "make"), None)
                        return cmds if at is None else [*cmds[:at], [*seed, str(bdir)], *cmds[at:]]
                    runner._build_command = seeded
        runner.build(sources=sources, hdl_toplevel=hv.top, build_dir=bdir, build_args=list(_build_args(simulator)),
                     waves=waves, log_file=blog if quiet else None, **kw)
        if simulator == "verilator" and build_root is not None:
            vruntime.save(_runtime_dir(build_root, waves, fast), bdir)
    except (SystemExit, Exception) as e:  # cocotb's runner raises SystemExit on tool failure
        tail = blog.read_text()[-2000:] if blog.exists() else ""
        raise SimError(f"{simulator} build of {top} failed ({e})\n{tail}") from None
    finally:
        if saved is None:
            os.environ.pop("MAKEFLAGS", None)
        else:
            os.environ["MAKEFLAGS"] = saved
    return time.perf_counter() - t0


def _rel(p: Path) -> str:
    try:
        return str(p.relative_to(ROOT))
    except ValueError:
        return str(p)


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
    ensure_simulator(b.simulator)
    if not (b.dir / ("sim.vvp" if b.simulator == "icarus" else b.top)).exists():
        raise SimError(f"the build {b.dir} is gone from the simulator cache (pruned by another process?); "
                       f"run again, or raise {simcache.ENV_CAP}")
    simcache.touch(b.dir)
    work = Path(tempfile.mkdtemp(prefix="job-", dir=b.dir))
    try:
        job = dict(job)
        # X and Z exist only on a 4-state simulator: there the testbench checks every output for them
        job.setdefault("xcheck", b.simulator in FOUR_STATE)
        job["out"] = str(work / "out.npz")
        if "inputs_array" in job:
            np.save(work / "inputs.npy", np.asarray(job.pop("inputs_array"), dtype=np.int64))
            job["inputs"] = str(work / "inputs.npy")
        jpath = work / "job.json"
        jpath.write_text(json.dumps(job))
        runner = get_runner(b.simulator)
        limit = wall_limit(job.get("max_cycles"), b.simulator)
        if limit is not None:
            # a simulation that stops advancing time (a zero-delay loop) never reaches the testbench's
            # cycle budget: the simulator process gets a wall-clock limit of its own
            cmds = runner._test_command
            runner._test_command = lambda: [["timeout", "-k", "5", str(limit), *c] for c in cmds()]
        env = {"SPIKEFORGE_JOB": str(jpath), "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               "COCOTB_LOG_LEVEL": os.environ.get("COCOTB_LOG_LEVEL", "WARNING")}
        results_xml = work / "results.xml"
        log = work / "sim.log"
        kw = {"timescale": TIMESCALE} if b.simulator == "icarus" else {}
        # the harness's files (sim.harness): stimulus and state info in, records out
        kw["plusargs"] = [f"+{n}={work / (n + '.hex')}" for n in ("stim", "stinfo", "res", "rcyc", "cnt", "scyc")]
        if b.simulator == "icarus" and b.waves:   # the dump module's default path is the (moved) build's
            kw["plusargs"].append(f"+dumpfile_path={work / 'dump.fst'}")
        # the runner logs a failed test as an error on stderr; we report every failure ourselves, in one line
        runner.log.setLevel(logging.CRITICAL)
        try:
            with simcache.lease(b.dir):
                runner.test(test_module="sim.tb", hdl_toplevel=b.top, hdl_toplevel_lang="verilog",
                            build_dir=b.dir, test_dir=work,
                            testcase=testcase, extra_env=env, results_xml=str(results_xml), waves=b.waves,
                            log_file=log, **kw)
        except (SystemExit, Exception) as e:
            tail = log.read_text()[-3000:] if log.exists() else ""
            if (work / HANG_FILE).exists():       # the testbench's own verdict (under pytest the runner exits)
                raise SimHang((work / HANG_FILE).read_text().strip().splitlines()[0]) from None
            # the wall-clock limit's exit status: SystemExit from the runner outside pytest, its
            # RuntimeError("Command failed with return code: 124") under pytest
            if ((isinstance(e, SystemExit) and e.code == 124)
                    or (isinstance(e, RuntimeError) and str(e).endswith("return code: 124"))):
                raise SimHang(f"the simulator ran past its wall-clock limit of {limit} s (a hung simulation)"
                              f"{timeout_note}") from None
            raise SimError(f"cocotb run failed ({e}){timeout_note}\n{tail}") from None
        hang = work / HANG_FILE
        if hang.exists():
            raise SimHang(hang.read_text().strip().splitlines()[0])
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
        if b.waves and (work / "dump.vcd").exists():        # Verilator writes into the test directory
            keep = b.dir / f"dump-{testcase}.vcd"
            shutil.move(str(work / "dump.vcd"), keep)
            res["_vcd"] = str(keep)
        elif b.waves and (work / "dump.fst").exists():       # Icarus (cocotb's dump module, FST)
            keep = b.dir / f"dump-{testcase}.fst"
            shutil.move(str(work / "dump.fst"), keep)
            res["_vcd"] = str(keep)
        return res
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use python -m sim.regress")
