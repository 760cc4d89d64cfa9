"""The simulator build cache (sim.simcache, sim.runner): bounded, least recently used builds pruned first,
builds in use never removed, builds trimmed to what a simulation needs, and one line while building."""

import os
import re
import time
from pathlib import Path

import numpy as np
import pytest

from golden import Dense, Model
from golden.cli import UsageError
from hw.generate import generate
from sim import simcache, vruntime
from sim.runner import build, run_job

ROOT = Path(__file__).resolve().parents[1]
MB = 1 << 20


def fake_build(root: Path, name: str, mb: float, used: float) -> Path:
    """A build directory of ``mb`` megabytes, last used at ``used`` (seconds since the epoch)."""
    d = root / name
    d.mkdir(parents=True)
    (d / "Vtop").write_bytes(b"\0" * int(mb * MB))
    (d / ".last_used").touch()
    os.utime(d / ".last_used", (used, used))
    return d


def test_prune_removes_least_recently_used_first(tmp_path):
    now = time.time()
    a = fake_build(tmp_path, "a-1", 3, now - 400)      # oldest
    b = fake_build(tmp_path, "b-2", 3, now - 300)
    c = fake_build(tmp_path, "c-3", 3, now - 200)
    d = fake_build(tmp_path, "d-4", 3, now - 100)      # newest
    assert [e.path.name for e in simcache.entries(tmp_path)] == ["a-1", "b-2", "c-3", "d-4"]
    gone = simcache.prune(tmp_path, int(7 * MB))
    assert [e.path.name for e in gone] == ["a-1", "b-2"]
    assert not a.exists() and not b.exists() and c.exists() and d.exists()
    assert sum(e.bytes for e in simcache.entries(tmp_path)) <= 7 * MB
    assert simcache.prune(tmp_path, int(7 * MB)) == []           # already under the cap


def test_prune_never_removes_kept_or_leased_builds(tmp_path):
    now = time.time()
    a = fake_build(tmp_path, "a-1", 4, now - 400)
    b = fake_build(tmp_path, "b-2", 4, now - 300)
    c = fake_build(tmp_path, "c-3", 4, now - 200)
    with simcache.lease(b):
        gone = simcache.prune(tmp_path, int(1 * MB), keep=[a])
        # a is the build just made, b is in use: only c can go, even though the cap is not met
        assert [e.path.name for e in gone] == ["c-3"] and a.exists() and b.exists()
    assert not list(b.glob(".lease-*"))                          # the lease is released
    assert [e.path.name for e in simcache.prune(tmp_path, int(1 * MB), keep=[a])] == ["b-2"]


def test_a_lease_of_a_dead_process_does_not_hold(tmp_path):
    a = fake_build(tmp_path, "a-1", 2, time.time() - 100)
    dead = 2 ** 22 + 12345          # above the largest pid_max: no such process
    (a / f".lease-{dead}-abcd").touch()
    assert simcache.entries(tmp_path)[0].leased is False
    assert [e.path.name for e in simcache.prune(tmp_path, 0)] == ["a-1"]


def test_touch_makes_a_build_recent(tmp_path):
    now = time.time()
    a = fake_build(tmp_path, "a-1", 2, now - 400)
    fake_build(tmp_path, "b-2", 2, now - 300)
    simcache.touch(a)                                            # a was just used again
    assert [e.path.name for e in simcache.prune(tmp_path, int(3 * MB))] == ["b-2"]


def test_cap_from_the_environment():
    assert simcache.cap_bytes({}) == simcache.DEFAULT_CAP_MB * MB == 1536 * MB
    assert simcache.cap_bytes({"SPIKEFORGE_SIM_CACHE_MB": "200"}) == 200 * MB
    for bad in ("0", "-5", "lots", "nan", "inf"):
        with pytest.raises(UsageError, match="SPIKEFORGE_SIM_CACHE_MB: expected a positive number"):
            simcache.cap_bytes({"SPIKEFORGE_SIM_CACHE_MB": bad})


def _core(seed, tmp):
    rng = np.random.default_rng(seed)
    m = Model([Dense(rng.integers(-3, 4, (3, 4)), 0, 4, 0)], T=2, input_max=3, weight_bits=3)
    name = f"cache{seed}"
    v, j = generate(m, 1, tmp / "v" / name, name)
    return m, v, j, name


def test_real_builds_stay_under_the_cap_and_say_what_they_do(tmp_path, monkeypatch):
    import json
    import golden
    root = tmp_path / "sim"
    lines = []
    sizes = []
    for seed in range(3):
        m, v, j, name = _core(seed, tmp_path)
        n0 = len(lines)
        b = build(v, name, build_root=root, fast=True, log=lines.append)
        assert lines[n0].startswith("building the netlist with Verilator, about ")
        # only what a simulation needs is kept: no objects, no precompiled headers, no generated C++
        assert sorted(p.name for p in b.dir.iterdir() if not p.name.startswith(".")) == \
            sorted(["build.log", f"{name}_tb", f"{name}.v", f"{name}_tb.v"])   # the harness executable, sources
        sizes.append(simcache.dir_bytes(b.dir))
        # Verilator's run-time library is compiled by the first build only; the others link its objects
        # (sim.vruntime), and a core built that way simulates exactly
        log = (b.dir / "build.log").read_text()
        compiled = re.findall(r"-c -o (verilated\w*\.o) ", log)
        if seed == 0:
            assert sorted(compiled) == sorted(f"{n}.o" for n in kept_objects(root))
        else:
            assert compiled == []
        # every build links them
        assert any(" verilated.o " in l and l.rstrip().endswith(f"-o {name}_tb") for l in log.splitlines())
        if seed == 2:
            x = np.array([[3, 0, 1, 2], [1, 1, 1, 1], [0, 0, 0, 0], [3, 3, 3, 3]])
            rtl = run_job(b, {"manifest": json.loads(j.read_text()), "inputs_array": x})
            assert rtl["predictions"].tolist() == golden.run(m, x).predictions.tolist()
        if seed == 0:
            again = build(v, name, build_root=root, fast=True, log=lines.append)
            assert again.cached and lines[-1] == f"using the cached Verilator build {again.dir}"
            x = np.array([[3, 0, 1, 2], [1, 1, 1, 1]])
            rtl = run_job(again, {"manifest": json.loads(j.read_text()), "inputs_array": x})
            assert rtl["predictions"].tolist() == golden.run(m, x).predictions.tolist()
            # a cap that holds about two of these builds from now on
            monkeypatch.setenv("SPIKEFORGE_SIM_CACHE_MB", str(2.5 * sizes[0] / MB))
    left = simcache.entries(root)
    assert [e.path.name.split("-")[0] for e in left] == ["cache1", "cache2"]   # the oldest went
    # builds ran in work directories beside the cache (their objects never counted); none is left
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".build-")]
    assert sum(e.bytes for e in left) <= simcache.cap_bytes()
    assert any(l.startswith("simulator cache: removed 1 least recently used builds") for l in lines)


def kept_objects(root):
    """The run-time objects kept under ``root`` (one set of flags: fast builds)."""
    (rt,) = (root / vruntime.SUBDIR).iterdir()
    names = (rt / "objects.txt").read_text().split()
    assert {"verilated", "verilated_vpi", "verilated_threads"} <= set(names)
    assert sorted(p.name for p in rt.iterdir()) == sorted(["objects.txt", *(f"{n}{e}" for n in names for e in (".o", ".d"))])
    return names


def test_make_clean_sim_exists():
    text = (ROOT / "Makefile").read_text()
    assert "\nclean-sim:\n\trm -rf build/sim\n" in text
    assert "SPIKEFORGE_SIM_CACHE_MB" in text


# --- leftovers of killed builds (review of issue 17, item 6) ---------------------------------------------

DEAD = 2 ** 22 + 4242               # above the largest pid_max: no such process


def leftover(path: Path, mb: float = 1, age: float = 0.0) -> Path:
    """A half-made build at ``path``: objects, no ``.built`` stamp; every entry last changed ``age`` s ago."""
    (path / "obj_dir").mkdir(parents=True)
    (path / "obj_dir" / "Vtop__ALL.o").write_bytes(b"\1" * int(mb * MB))
    t = time.time() - age
    for p in (path / "obj_dir" / "Vtop__ALL.o", path / "obj_dir", path):
        os.utime(p, (t, t))
    return path


def test_the_runner_and_the_cache_agree_on_the_stamp():
    import sim.runner
    assert simcache.BUILT == sim.runner._STAMP == ".built"


def test_a_killed_builds_work_directory_goes_a_live_ones_stays(tmp_path):
    root = tmp_path / "sim"
    root.mkdir()
    dead = leftover(tmp_path / f".build-core_p8-0123456789abcdef-pid{DEAD}-k3j_x9ab")
    mine = leftover(tmp_path / f".build-core_p8-0123456789abcdef-pid{os.getpid()}-a1b2c3d4")
    assert [(e.path, e.bytes >= MB) for e in simcache.incomplete(root)] == [(dead, True)]
    assert simcache.incomplete(root)[0].why == f"incomplete build; its process {DEAD} is gone"
    gone = simcache.remove_incomplete(root)
    assert [e.path for e in gone] == [dead] and not dead.exists() and mine.exists()


def test_a_build_in_progress_in_another_live_process_is_never_removed(tmp_path):
    import subprocess
    import sys
    root = tmp_path / "sim"
    root.mkdir()
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        # its work directory, a cache entry it holds a lease on; both hours old, neither stamped
        work = leftover(tmp_path / f".build-x-0000000000000000-pid{p.pid}-zz", age=7200)
        entry = leftover(root / "x-1111111111111111", age=7200)
        (entry / f".lease-{p.pid}-abcd1234").touch()
        assert simcache.incomplete(root, now=time.time() + 1e6) == []
        assert simcache.remove_incomplete(root, now=time.time() + 1e6) == [] and work.exists() and entry.exists()
    finally:
        p.kill()
        p.wait()
    # the same two once that process is gone
    assert sorted(e.path.name for e in simcache.remove_incomplete(root)) == [work.name, entry.name]
    assert not work.exists() and not entry.exists()


def test_cache_entries_without_the_stamp(tmp_path):
    root = tmp_path / "sim"
    done = leftover(root / "done-1", age=7200)
    (done / ".built").write_text("{}")
    (done / f".lease-{DEAD}-aaaa").touch()                 # complete: the LRU's business, not a leftover
    dead_lease = leftover(root / "half-2")
    (dead_lease / f".lease-{DEAD}-bbbb").touch()
    young = leftover(root / "young-3", age=simcache.ORPHAN_AGE_S - 60)      # no owner, recently written
    old = leftover(root / "old-4", age=simcache.ORPHAN_AGE_S + 60)          # no owner, long still
    hidden = leftover(root / ".tmp-5", age=7200)                            # not a cache entry
    found = {e.path.name: e.why for e in simcache.incomplete(root)}
    assert found == {"half-2": f"incomplete build; its process {DEAD} is gone",
                     "old-4": "incomplete build with no owner recorded, unchanged for 1.0 h"}
    simcache.remove_incomplete(root)
    assert [d.exists() for d in (done, dead_lease, young, old, hidden)] == [True, False, True, False, True]
    # an ownerless directory goes by its newest change at any depth, not its own mtime: a compiler writing
    # deep down keeps it
    t = time.time() - 7200
    for p in (young, young / "obj_dir"):
        os.utime(p, (t, t))
    assert simcache.incomplete(root) == []
    os.utime(young / "obj_dir" / "Vtop__ALL.o", (t, t))
    assert [e.path.name for e in simcache.incomplete(root)] == ["young-3"]


def test_an_ownerless_directory_a_live_process_works_in_stays(tmp_path):
    import subprocess
    import sys
    root = tmp_path / "sim"
    root.mkdir()
    cwd = leftover(tmp_path / ".build-a-0000000000000000-q1w2e3r4", age=7200)     # an older runner's
    opened = leftover(tmp_path / ".build-b-0000000000000000-t5y6u7i8", age=7200)
    idle = leftover(tmp_path / ".build-c-0000000000000000-o9p0a1s2", age=7200)
    procs = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], cwd=cwd),
             subprocess.Popen([sys.executable, "-c", "import sys, time; f = open(sys.argv[1], 'rb'); "
                               "print('open', flush=True); time.sleep(60)", str(opened / "obj_dir" / "Vtop__ALL.o")],
                              stdout=subprocess.PIPE, text=True)]
    try:
        assert procs[1].stdout.readline() == "open\n"
        assert [e.path for e in simcache.remove_incomplete(root)] == [idle]
        assert cwd.exists() and opened.exists()
    finally:
        for p in procs:
            p.kill()
            p.wait()
    assert sorted(e.path for e in simcache.remove_incomplete(root)) == [cwd, opened]


def test_work_dir_names_its_owner_and_clears_leftovers_first(tmp_path):
    root = tmp_path / "sim"
    dead = leftover(tmp_path / f".build-core-0123456789abcdef-pid{DEAD}-deadbeef")
    w = simcache.work_dir(root, "core-0123456789abcdef")
    assert not dead.exists() and w.is_dir() and w.parent == tmp_path
    assert w.name.startswith(f".build-core-0123456789abcdef-pid{os.getpid()}-")
    assert simcache.incomplete(root, now=time.time() + 1e6) == []         # ours, while we live


def test_the_runner_builds_in_a_work_dir_and_clears_leftovers(tmp_path, monkeypatch):
    """sim.runner.build with the compile step stood in for: the leftover of a killed build is gone before
    the next build starts, which runs in a work directory named after its process."""
    import sim.runner as runner
    root = tmp_path / "sim"
    dead = leftover(tmp_path / f".build-old-0123456789abcdef-pid{DEAD}-x1y2z3w4", mb=2)
    seen = []

    def compile_step(work, text, top, *rest):
        seen.append((work.name, dead.exists()))
        (work / top).write_text("#!/bin/sh\n")
        (work / f"{top}.v").write_text(text)
        (work / "obj_dir").mkdir()
        return 0.5

    monkeypatch.setattr(runner, "_run_build", compile_step)
    m, v, _, name = _core(7, tmp_path)
    b = runner.build(v, name, build_root=root, fast=True)
    assert len(seen) == 1 and seen[0][0].startswith(f".build-{b.dir.name}-pid{os.getpid()}-") and seen[0][1] is False
    assert (b.dir / ".built").exists() and not (b.dir / "obj_dir").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".build-")]
