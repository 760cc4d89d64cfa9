"""The simulator build cache (sim.simcache, sim.runner): bounded, least recently used builds pruned first,
builds in use never removed, builds trimmed to what a simulation needs, and one line while building."""

import os
import time
from pathlib import Path

import numpy as np
import pytest

from golden import Dense, Model
from golden.cli import UsageError
from hw.generate import generate
from sim import simcache
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
            sorted(["build.log", name, f"{name}.v"])
        sizes.append(simcache.dir_bytes(b.dir))
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


def test_make_clean_sim_exists():
    text = (ROOT / "Makefile").read_text()
    assert "\nclean-sim:\n\trm -rf build/sim\n" in text
    assert "SPIKEFORGE_SIM_CACHE_MB" in text
