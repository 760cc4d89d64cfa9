"""Output paths of a CLI: checked together before any work, written together or not at all.

The rule for every CLI (README, "Outputs"): ``--out FILE`` names the run's main output file, with its
extension; the CLI's other files go next to it and are named after its stem (``x.json`` -> ``x.csv``,
``x.md``, ``x_cycles.png``, work directory ``x/``). Options that name one more file each (``--json``,
``--junit``) name that file. No file option ever names a directory.

:func:`check_outputs` raises :class:`golden.errors.UsageError` naming the option at fault when a path could
not be written: it is an existing directory (or ends with ``/``), an ancestor is a regular file, the
nearest existing ancestor is not writable, two options name the same path, or one output would have to
be both a file and a directory. :class:`OutputSet` then writes every file of the run to a temporary file
beside its target and renames them all at the end; if anything fails first, the temporary files and the
directories made for them are removed, so a run leaves its outputs as a consistent set or not at all.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from .errors import UsageError

__all__ = ["Output", "check_outputs", "main_output", "OutputSet"]


@dataclass(frozen=True)
class Output:
    """One path a CLI will write; ``option`` is what the user passed it with (or what it derives from).

    Give ``path`` as the user typed it (a ``str``): ``Path`` drops a trailing ``/``, which says "directory"."""
    option: str
    path: Path | str
    kind: str = "file"          # "file" or "dir"
    note: str = ""              # e.g. "written next to x.json": said when the path itself is not what the user typed

    def __post_init__(self):
        if self.kind not in ("file", "dir"):
            raise ValueError(f"kind must be 'file' or 'dir', not {self.kind!r}")


def _usage(msg: str) -> UsageError:
    return UsageError(msg)


def _nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists() and not p.is_symlink():
        if p.parent == p:
            break
        p = p.parent
    return p


def _check_one(o: Output) -> None:
    raw = str(o.path)
    p = Path(raw)
    what = f"{p}{' (' + o.note + ')' if o.note else ''}"
    if o.kind == "file":
        if raw.endswith(("/", os.sep)) or p.is_dir():
            raise _usage(f"{o.option}: {what} is a directory; expected a file name")
    elif p.exists() and not p.is_dir():
        raise _usage(f"{o.option}: {what} is a file; expected a directory")
    anc = _nearest_existing(p.parent if o.kind == "file" or not p.exists() else p)
    if anc.exists() and not anc.is_dir():
        raise _usage(f"{o.option}: cannot write {what}: {anc} is a regular file, not a directory")
    if anc.exists() and not os.access(anc, os.W_OK | os.X_OK):
        raise _usage(f"{o.option}: cannot write {what}: no write permission in {anc}")
    if o.kind == "file" and p.exists() and not os.access(p, os.W_OK):
        raise _usage(f"{o.option}: cannot write {what}: the file is read-only")


def check_outputs(outputs: Iterable[Output]) -> list[Output]:
    """Check every output of one run; raise UsageError at the first that cannot be written."""
    outs = list(outputs)
    for o in outs:
        _check_one(o)
    seen: dict[Path, Output] = {}
    for o in outs:
        key = Path(os.path.abspath(o.path))
        first = seen.get(key)
        if first is not None and not first.kind == o.kind == "dir":
            raise _usage(f"{o.option}: {o.path} is also written by {first.option}; give them different names")
        seen.setdefault(key, o)
    files = [(Path(os.path.abspath(o.path)), o) for o in outs if o.kind == "file"]
    for o in outs:
        ap = Path(os.path.abspath(o.path))
        for fp, fo in files:
            if fo is not o and fp in ap.parents:
                raise _usage(f"{o.option}: {o.path} would lie under the file {fo.path} written by {fo.option}")
    return outs


def main_output(option: str, text: str, suffix: str) -> Path:
    """``--out FILE``: the main output file, which must carry ``suffix`` (e.g. ``.json``)."""
    if text.endswith(("/", os.sep)) or Path(text).is_dir():
        raise _usage(f"{option}: {text} is a directory; --out names the main output file "
                     f"(e.g. {Path(text) / ('NAME' + suffix)}), and the other files go next to it")
    p = Path(text)
    if p.suffix != suffix:
        raise _usage(f"{option}: expected a {suffix} file name (the other outputs go next to it), got {text!r}")
    return p


class OutputSet:
    """The files of one run, written as a set: use as a context manager, ``add`` each, then ``commit``.

    Files are staged as hidden temporary files beside their targets (same directory, so the final
    rename is atomic); ``commit`` renames them all. Leaving the ``with`` block without committing, or
    any exception, removes every staged file and every directory created for them."""

    def __init__(self):
        self._staged: list[tuple[Path, str]] = []
        self._made: list[Path] = []
        self._done = False

    def __enter__(self) -> "OutputSet":
        return self

    def __exit__(self, *exc) -> None:
        if not self._done:
            self.discard()

    def _mkdirs(self, d: Path) -> None:
        missing = []
        p = d
        while not p.exists():
            missing.append(p)
            if p.parent == p:
                break
            p = p.parent
        for m in reversed(missing):
            m.mkdir()
            self._made.append(m)

    def add(self, path, write_fn: Callable[[str], object]) -> Path:
        """Stage ``path``: ``write_fn(tmp)`` writes the content to the temporary file ``tmp``."""
        path = Path(path)
        self._mkdirs(path.parent)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        self._staged.append((path, tmp))
        write_fn(tmp)
        return path

    def add_text(self, path, text: str) -> Path:
        return self.add(path, lambda tmp: Path(tmp).write_text(text))

    def add_bytes(self, path, data: bytes) -> Path:
        return self.add(path, lambda tmp: Path(tmp).write_bytes(data))

    def commit(self) -> list[Path]:
        """Rename every staged file onto its target; returns the targets in the order they were added."""
        umask = os.umask(0)
        os.umask(umask)
        try:
            for _, tmp in self._staged:
                # mkstemp creates 0600; give the files the mode a plain open() would (0666 & ~umask)
                os.chmod(tmp, 0o666 & ~umask)
            for path, tmp in self._staged:
                os.replace(tmp, path)
        except BaseException:
            self.discard()
            raise
        self._done = True
        return [p for p, _ in self._staged]

    def discard(self) -> None:
        for _, tmp in self._staged:
            if os.path.exists(tmp):
                os.unlink(tmp)
        for d in reversed(self._made):
            try:
                d.rmdir()            # only if empty: never removes something another writer put there
            except OSError:
                pass
        self._staged, self._made = [], []
        self._done = True
