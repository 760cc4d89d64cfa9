"""The simulator build cache under ``build/sim/``: bounded by size, least recently used builds go first.

Every build directory holds a ``.last_used`` stamp, touched whenever the build is created or reused
(file access times are not reliable: most mounts use ``relatime`` or ``noatime``). Builds are made in a
work directory outside the cache and only their trimmed result (the executable) moves in, so the
objects and precompiled headers of a build in progress never count. After each new build, :func:`prune`
removes the least recently used builds until the cache is below its cap. A build that a process is
running holds a lease file (``.lease-<pid>-...``) for that time; a leased build is never removed while
its process lives, so parallel fuzz workers and tests cannot pull a build from under each other. The
build just made is never removed either, even when it alone exceeds the cap.

A build killed half-way (Ctrl-C twice, an OOM kill, a dead CI runner) leaves its work directory behind:
about 146 MB of objects and precompiled headers for a demo-sized core. Each build starts with
:func:`work_dir`, which first removes such leftovers (:func:`incomplete`): a work directory
``build/.build-<top>-<hash>-pid<N>-...`` whose process N is gone, and a directory of the cache without the
completion stamp ``.built`` whose lease holders are all gone. A directory with no owner recorded at all
(made by an older runner) goes only once it has not changed for ``ORPHAN_AGE_S`` and no live process has its
working directory or an open file in it. A build in progress by a live process is never removed.

The cap is ``SPIKEFORGE_SIM_CACHE_MB`` (megabytes, default 1536; ``make SIM_CACHE_MB=...`` sets it).
``make clean-sim`` empties the cache.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

__all__ = ["DEFAULT_CAP_MB", "ENV_CAP", "CacheEntry", "cap_bytes", "touch", "lease", "entries", "prune",
           "dir_bytes", "BUILT", "WORK_PREFIX", "ORPHAN_AGE_S", "Leftover", "incomplete", "remove_incomplete",
           "work_dir"]

DEFAULT_CAP_MB = 1536
ENV_CAP = "SPIKEFORGE_SIM_CACHE_MB"
STAMP = ".last_used"
LEASE_PREFIX = ".lease-"
BUILT = ".built"              # the completion stamp sim.runner.build writes last (its _STAMP)
WORK_PREFIX = ".build-"       # sim.runner.build's work directories, next to the cache (build/.build-*)
# A directory no owner is recorded for is left alone until it has been still this long: far longer than
# any build (the demo core takes about a minute), so an older runner's build in progress is never hit.
ORPHAN_AGE_S = 3600.0
_WORK_PID = re.compile(r"-pid(\d+)-[^-]*$")


@dataclass(frozen=True)
class CacheEntry:
    path: Path
    bytes: int
    last_used: float
    leased: bool


def cap_bytes(environ=None) -> int:
    """The cap from ``SPIKEFORGE_SIM_CACHE_MB`` (a positive number of MB), else the default."""
    env = os.environ if environ is None else environ
    text = env.get(ENV_CAP)
    if text is None or text.strip() == "":
        return DEFAULT_CAP_MB << 20
    try:
        mb = float(text)
    except ValueError:
        mb = float("nan")
    if not mb > 0 or mb == float("inf"):
        from golden.cli import UsageError
        raise UsageError(f"{ENV_CAP}: expected a positive number of megabytes, got {text!r}")
    return int(mb * (1 << 20))


def touch(build_dir: Path) -> None:
    """Mark ``build_dir`` as used now."""
    stamp = Path(build_dir) / STAMP
    stamp.touch()
    os.utime(stamp)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:        # exists, owned by someone else
        return True
    return True


def _leased(build_dir: Path) -> bool:
    return any(_pid_alive(pid) for pid in _lease_pids(build_dir))


@contextmanager
def lease(build_dir: Path) -> Iterator[None]:
    """Hold ``build_dir`` for the duration of the block: :func:`prune` leaves it alone."""
    f = Path(build_dir) / f"{LEASE_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    f.touch()
    try:
        yield
    finally:
        try:
            f.unlink()
        except FileNotFoundError:
            pass


def _lease_pids(d: Path) -> list[int]:
    out = []
    for f in d.glob(LEASE_PREFIX + "*"):
        try:
            out.append(int(f.name[len(LEASE_PREFIX):].split("-", 1)[0]))
        except ValueError:
            continue
    return out


def _owners(d: Path) -> list[int]:
    """The processes recorded as building or using ``d``: the pid in a work directory's name, lease holders."""
    m = _WORK_PID.search(d.name) if d.name.startswith(WORK_PREFIX) else None
    return ([int(m.group(1))] if m else []) + _lease_pids(d)


def _used_by_a_process(d: Path) -> bool:
    """Whether a live process has its working directory or an open file under ``d`` (Linux ``/proc``;
    processes we may not inspect are skipped, which is why an ownerless directory also waits ORPHAN_AGE_S)."""
    proc = Path("/proc")
    if not proc.is_dir():
        return False
    target = str(d.resolve())
    inside = lambda p: p == target or p.startswith(target + os.sep)   # noqa: E731
    for pdir in proc.iterdir():
        if not pdir.name.isdigit():
            continue
        try:
            if inside(os.readlink(pdir / "cwd")):
                return True
            for fd in os.scandir(pdir / "fd"):
                if inside(os.readlink(fd.path)):
                    return True
        except OSError:               # gone meanwhile, or another user's
            continue
    return False


def _last_change(d: Path) -> float:
    """The newest modification time of ``d`` and its entries, at any depth (a build writes deep down)."""
    newest = d.lstat().st_mtime
    for root, dirs, files in os.walk(d):
        for name in (*dirs, *files):
            try:
                newest = max(newest, os.lstat(os.path.join(root, name)).st_mtime)
            except FileNotFoundError:
                continue
    return newest


@dataclass(frozen=True)
class Leftover:
    """An incomplete build that no live process owns: what :func:`remove_incomplete` removes, and why."""
    path: Path
    bytes: int
    why: str


def _candidates(root: Path) -> list[Path]:
    root = Path(root)
    out = []
    if root.parent.is_dir():
        out += sorted(d for d in root.parent.glob(WORK_PREFIX + "*") if d.is_dir() and not d.is_symlink())
    if root.is_dir():
        out += sorted(d for d in root.iterdir() if d.is_dir() and not d.is_symlink() and not d.name.startswith(".")
                      and not (d / BUILT).exists())
    return out


def incomplete(root: Path, *, now: float | None = None) -> list[Leftover]:
    """Incomplete builds of the cache ``root`` (``build/sim``) that no live process owns: the work
    directories ``root.parent/.build-*`` and the directories of ``root`` without the ``.built`` stamp."""
    now = time.time() if now is None else now
    out = []
    for d in _candidates(root):
        try:
            owners = _owners(d)
            if owners:
                if any(_pid_alive(p) for p in owners):
                    continue                 # being built or used right now
                why = f"incomplete build; its process{'es' if len(owners) > 1 else ''} " \
                      f"{', '.join(map(str, owners))} {'are' if len(owners) > 1 else 'is'} gone"
            else:
                idle = now - _last_change(d)
                if idle < ORPHAN_AGE_S or _used_by_a_process(d):
                    continue
                why = f"incomplete build with no owner recorded, unchanged for {_age(idle)}"
            out.append(Leftover(d, dir_bytes(d), why))
        except FileNotFoundError:            # removed meanwhile by another process
            continue
    return out


def remove_incomplete(root: Path, *, now: float | None = None) -> list[Leftover]:
    """Remove what :func:`incomplete` finds; returns what went."""
    gone = []
    for e in incomplete(root, now=now):
        shutil.rmtree(e.path, ignore_errors=True)
        if not e.path.exists():
            gone.append(e)
    return gone


def work_dir(root: Path, name: str) -> Path:
    """A new work directory for building cache entry ``name`` of ``root``, made next to the cache with this
    process's pid in its name (from its first moment, so no other process can take it for a leftover);
    the leftovers of killed builds are removed first."""
    root = Path(root)
    remove_incomplete(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{WORK_PREFIX}{name}-pid{os.getpid()}-", dir=root.parent))


def dir_bytes(path: Path) -> int:
    """Bytes on disk under ``path``, directories included, as ``du`` counts them (allocated blocks, not
    file lengths); symlinks are not followed."""
    total = 0
    for root, dirs, files in os.walk(path):
        for name in (".", *dirs, *files):
            try:
                st = os.lstat(os.path.join(root, name))
            except FileNotFoundError:     # removed while we walk (a parallel build cleaning up)
                continue
            if name == "." and root != str(path):
                continue                  # counted once, as an entry of its parent
            total += st.st_blocks * 512
    return total


def entries(root: Path) -> list[CacheEntry]:
    """Every build directory under ``root`` with its size, last use and lease, oldest use first."""
    root = Path(root)
    if not root.is_dir():
        return []
    out = []
    for d in root.iterdir():
        if not d.is_dir() or d.is_symlink() or d.name.startswith("."):
            continue
        stamp = d / STAMP
        try:
            used = stamp.stat().st_mtime if stamp.exists() else d.stat().st_mtime
        except FileNotFoundError:
            continue
        out.append(CacheEntry(d, dir_bytes(d), used, _leased(d)))
    out.sort(key=lambda e: (e.last_used, e.path.name))
    return out


def prune(root: Path, cap: int | None = None, *, keep: Iterable[Path] = ()) -> list[CacheEntry]:
    """Remove least recently used builds until ``root`` holds at most ``cap`` bytes; returns what went.

    Builds in ``keep`` and leased builds stay even if the cap cannot be met without them."""
    cap = cap_bytes() if cap is None else cap
    keep = {Path(k).resolve() for k in keep}
    es = entries(root)
    total = sum(e.bytes for e in es)
    removed = []
    for e in es:
        if total <= cap:
            break
        if e.leased or e.path.resolve() in keep:
            continue
        shutil.rmtree(e.path, ignore_errors=True)
        if not e.path.exists():
            total -= e.bytes
            removed.append(e)
    return removed


def _age(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def describe(root: Path) -> str:
    """One line: how many builds, how big, the cap."""
    es = entries(root)
    total = sum(e.bytes for e in es)
    oldest = f", least recently used {_age(time.time() - es[0].last_used)} ago" if es else ""
    return f"{root}: {len(es)} builds, {total / (1 << 20):.0f} MB of {cap_bytes() / (1 << 20):.0f} MB{oldest}"
