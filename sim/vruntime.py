"""Verilator's run-time library, compiled once and shared by every build with the same flags.

Each Verilator build compiles the run-time library (``verilated.cpp``, ``verilated_vpi.cpp``,
``verilated_threads.cpp``, ...: ``VM_GLOBAL_FAST``/``VM_GLOBAL_SLOW`` of ``Vtop_classes.mk``) afresh,
about 10 s of one core per build at -O0 and 12 s at -Os, the same objects every time: the model's own
files and cocotb's ``verilator.cpp`` (which includes the model's ``Vtop.h``) are the only ones that
differ. ``make test`` makes some 45 builds, so a quarter of its CPU time went into compiling the same
five files again. Here the first build with a given set of flags leaves its run-time objects (and
their ``.d`` dependency files) in ``build/sim/.runtime/<key>/``, and every later build gets copies of
them in its work directory after Verilator has written its makefiles and before ``make`` runs, so
``make`` finds them up to date and only links them.

The key covers everything the objects' compile lines depend on: the Verilator and compiler versions,
the optimisation (``fast``), tracing (``waves``: ``VM_TRACE``), the build arguments and the make
variables the runner sets. Neither ccache nor Verilator itself does this (Verilator has no option to
link a prebuilt run-time library, and ccache is not among the prerequisites), hence the few lines here.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

__all__ = ["runtime_dir", "seed_command", "save", "global_objects"]

SUBDIR = ".runtime"          # a dot-directory of the cache: sim.simcache neither counts nor prunes it
_MANIFEST = "objects.txt"


@functools.lru_cache(maxsize=None)
def _compiler() -> str:
    exe = os.environ.get("CXX", "c++")
    try:
        r = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30)
        return exe + "\0" + (r.stdout.splitlines()[0] if r.stdout else "")
    except (OSError, subprocess.SubprocessError):
        return exe


def runtime_dir(build_root: Path, parts: list[str]) -> Path:
    """Where the run-time objects of builds described by ``parts`` (versions and flags) are kept."""
    h = hashlib.sha256()
    for part in [*parts, _compiler()]:
        h.update(part.encode())
        h.update(b"\0")
    return Path(build_root) / SUBDIR / h.hexdigest()[:16]


def global_objects(work: Path) -> list[str]:
    """The run-time library's objects of a Verilator build directory (from its ``Vtop_classes.mk``)."""
    # "VM_GLOBAL_FAST += \\" and one name per continued line
    text = (Path(work) / "Vtop_classes.mk").read_text().replace("\\\n", " ")
    names = []
    for line in text.splitlines():
        m = re.match(r"(VM_GLOBAL_FAST|VM_GLOBAL_SLOW)\s*\+?=(.*)", line)
        if m:
            names += m.group(2).split()
    return names


def seed_command(rt: Path) -> list[str] | None:
    """A command that copies the kept objects into the build directory (the current directory is not
    assumed: the caller appends the destination), or None when none are kept yet. ``cp`` without -p
    gives the copies the time of the copy, newer than the makefiles Verilator has just written, on
    which ``verilated.mk`` makes the run-time objects depend."""
    rt = Path(rt)
    try:
        names = (rt / _MANIFEST).read_text().split()
    except OSError:
        return None
    files = [rt / f"{n}{ext}" for n in names for ext in (".o", ".d")]
    if not names or not all(f.is_file() for f in files):
        return None
    return ["cp", *map(str, files)]


def save(rt: Path, work: Path) -> bool:
    """Keep the run-time objects of the finished build in ``work`` (once: a second build with the same
    key finds them there). Atomic: a directory is filled beside ``rt`` and renamed, so a concurrent build
    sees all of them or none. Returns whether they were saved now."""
    rt, work = Path(rt), Path(work)
    if (rt / _MANIFEST).is_file():
        return False
    names = global_objects(work)
    files = [work / f"{n}{ext}" for n in names for ext in (".o", ".d")]
    if not names or not all(f.is_file() for f in files):
        return False
    rt.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{rt.name}-", dir=rt.parent))
    try:
        for f in files:
            shutil.copyfile(f, tmp / f.name)
        (tmp / _MANIFEST).write_text("\n".join(names) + "\n")
        try:
            os.replace(tmp, rt)
        except OSError:            # another build saved them first
            return False
        return True
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
