"""The error a CLI reports as one line on stderr with exit code 2.

It has a module of its own so that :mod:`golden.options` and :mod:`golden.outputs` can raise it without
importing :mod:`golden.cli`, which imports both of them: they used to import it back from there inside
their functions, an import circle.
``from golden.cli import UsageError`` keeps working: :mod:`golden.cli` re-exports it.
"""

from __future__ import annotations

__all__ = ["UsageError"]


class UsageError(Exception):
    """A bad option or input detected by a CLI after parsing; reported as one line, exit 2."""
