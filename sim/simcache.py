"""The simulator build cache under ``build/sim/``: bounded by size, least recently used builds go first.

Every build directory holds a ``.last_used`` stamp, touched whenever the build is created or reused
(file access times are not reliable: most mounts use ``relatime`` or ``noatime``). Builds are made in a
work directory outside the cache and only their trimmed result (the executable) moves in, so the
objects and precompiled headers of a build in progress never count. After each new build, :func:`prune`
removes the least recently used builds until the cache is below its cap. A build that a process is
running holds a lease file (``.lease-<pid>-...``) for that time; a leased build is never removed while
its process lives, so parallel fuzz workers and tests cannot pull a build from under each other. The
build just made is never removed either, even when it alone exceeds the cap.

The cap is ``SPIKEFORGE_SIM_CACHE_MB`` (megabytes, default 1536; ``make SIM_CACHE_MB=...`` sets it).
``make clean-sim`` empties the cache.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

__all__ = ["DEFAULT_CAP_MB", "ENV_CAP", "CacheEntry", "cap_bytes", "touch", "lease", "entries", "prune",
           "dir_bytes"]

DEFAULT_CAP_MB = 1536
ENV_CAP = "SPIKEFORGE_SIM_CACHE_MB"
STAMP = ".last_used"
LEASE_PREFIX = ".lease-"


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
    for f in build_dir.glob(LEASE_PREFIX + "*"):
        try:
            pid = int(f.name[len(LEASE_PREFIX):].split("-", 1)[0])
        except ValueError:
            continue
        if _pid_alive(pid):
            return True
    return False


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
