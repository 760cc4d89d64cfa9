"""X/Z checks on a core's output ports, for 4-state simulators (Icarus Verilog).

Verilator is 2-state: an undriven or uninitialised bit reads as 0 or 1 there, so an X that would reach
a pin of the real chip goes unnoticed. On a 4-state simulator the testbench calls :meth:`XCheck.check`
after reset and on every result beat; it reads only the output ports the manifest lists (never an
internal signal) and records every port that holds an X or Z bit.
"""

from __future__ import annotations

__all__ = ["XCheck", "unknown_bits"]

# keep the job's result small even when every beat of a long run is bad
MAX_RECORDED = 20


def unknown_bits(value) -> str | None:
    """The value as a binary string when any bit is X, Z (or U, W, -), else None."""
    text = str(value)
    return text if any(c not in "01" for c in text) else None


class XCheck:
    """Checks every output port of ``manifest["ports"]`` for X/Z."""

    def __init__(self, dut, ports: dict):
        self.dut = dut
        self.outputs = sorted(n for n, p in ports.items() if p["direction"] == "output")
        self.checks = 0
        self.failed = 0                 # checks that found at least one X/Z output
        self.violations: list[str] = []

    def check(self, when: str) -> list[str]:
        """Record (and return) ``"<when>: <port>=<bits>"`` for each output holding X or Z now."""
        self.checks += 1
        bad = []
        for name in self.outputs:
            bits = unknown_bits(getattr(self.dut, name).value)
            if bits is not None:
                bad.append(f"{when}: {name}={bits}")
        self.failed += bool(bad)
        if bad and len(self.violations) < MAX_RECORDED:
            self.violations.extend(bad[:MAX_RECORDED - len(self.violations)])
        return bad
