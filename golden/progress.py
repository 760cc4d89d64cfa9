"""Progress reporting for long CLI loops: a tqdm bar on a terminal, plain lines otherwise.

A redrawn bar is noise in a log file or a CI transcript (every redraw is kept), so when stderr is not a
terminal the same progress is written as whole lines, one per tenth of the work and one at the end.
``enabled=False`` (``--no-progress``) prints nothing.
"""

from __future__ import annotations

import sys
import time
from typing import IO

__all__ = ["Progress", "progress"]


class Progress:
    """``update(n)``, ``set_postfix(**kw)`` and ``close()``, like tqdm's, whatever the output."""

    def __init__(self, total: int, desc: str, unit: str, *, enabled: bool = True, stream: IO | None = None,
                 tty: bool | None = None):
        self.total, self.desc, self.unit = int(total), desc, unit
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled and self.total > 0
        is_tty = tty if tty is not None else bool(getattr(self.stream, "isatty", lambda: False)())
        self._bar = None
        self.n = 0
        self._postfix = ""
        self._next_line = 0
        self._t0 = time.perf_counter()
        if self.enabled and is_tty:
            from tqdm import tqdm
            self._bar = tqdm(total=self.total, desc=desc, unit=unit, file=self.stream)

    def _line(self) -> None:
        pct = 100 * self.n // self.total
        extra = f", {self._postfix}" if self._postfix else ""
        self.stream.write(f"{self.desc}: {self.n}/{self.total} {self.unit} ({pct}%), "
                          f"{time.perf_counter() - self._t0:.0f} s{extra}\n")
        self.stream.flush()

    def update(self, n: int = 1) -> None:
        self.n += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.enabled:
            # one line per tenth of the work (and at the end), never one per item of a long loop
            step = max(1, -(-self.total // 10))
            if self.n >= self.total or self.n >= self._next_line + step:
                self._next_line = self.n - self.n % step
                self._line()

    def set_postfix(self, **kw) -> None:
        self._postfix = ", ".join(f"{k} {v}" for k, v in kw.items())
        if self._bar is not None:
            self._bar.set_postfix(**kw)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress(iterable, desc: str, unit: str, *, enabled: bool = True, total: int | None = None):
    """Iterate ``iterable`` while reporting progress (see :class:`Progress`)."""
    items = list(iterable) if total is None else iterable
    with Progress(len(items) if total is None else total, desc, unit, enabled=enabled) as p:
        for item in items:
            yield item
            p.update(1)
