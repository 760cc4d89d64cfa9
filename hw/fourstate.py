"""Make Yosys's Verilog start correctly on 4-state, event-driven simulators (Icarus Verilog, ...).

Yosys's ``write_verilog`` (which Amaranth runs) turns every combinational process into an
``always @*`` block and, so that each block runs once at time zero, adds one trigger register that
every block reads::

    reg \\$auto$verilog_backend.cc:2355:dump_module$1  = 0;
    always @* begin
      if (\\$auto$verilog_backend.cc:2355:dump_module$1 ) begin end
      ...

The trick relies on the declaration's initialiser making an X -> 0 event after the blocks have
started waiting. IEEE 1364 leaves that order open, and Icarus Verilog 11 performs declaration
initialisers before any process runs: no event, so no ``always @*`` block ever runs until one of its
other inputs changes, and an output driven only from such a block (``x__ready``) stays X forever.

:func:`start_comb_blocks` keeps the register but drops the initialiser and assigns it with a
non-blocking assignment in an ``initial`` block. The update then happens in the NBA region of time
zero, after every process has run up to its first event control, which the standard does guarantee,
so every ``always @*`` block wakes up once on every simulator. Verilator (2-state, settles all logic
at time zero) and Yosys synthesis (the register is unused logic) are unaffected; the one lint
warning the construct trips (INITIALDLY) is waived around that line only.
"""

from __future__ import annotations

import re

__all__ = ["start_comb_blocks", "TriggerNotFound"]

_TRIGGER = re.compile(r"^(?P<indent>[ \t]*)reg (?P<name>\\\$auto\$verilog_backend\S*) += 0;$", re.M)
_USE = re.compile(r"if \((\\\$auto\$verilog_backend\S*) \) begin end")


class TriggerNotFound(ValueError):
    """The netlist has ``always @*`` blocks but not the trigger register this module knows how to fix."""


def start_comb_blocks(text: str) -> str:
    """``text`` with every time-zero trigger register set in the NBA region of time zero (see above)."""

    def fix(m: re.Match) -> str:
        ind, name = m.group("indent"), m.group("name")
        # an escaped identifier ends at white space: the space before "<=" is part of the syntax
        return (f"{ind}reg {name} ;\n"
                f"{ind}// set in the NBA region of time 0 so every always @* block runs once (hw/fourstate.py)\n"
                f"{ind}/* verilator lint_off INITIALDLY */\n"
                f"{ind}initial {name} <= 1'h0;\n"
                f"{ind}/* verilator lint_on INITIALDLY */")

    out = _TRIGGER.sub(fix, text)
    # every trigger the always @* blocks read must now be set in an initial block; a Yosys version that
    # spells the register differently is refused rather than emitted as a netlist that stays X on Icarus
    for name in set(_USE.findall(out)):
        if f"initial {name} <= 1'h0;" not in out:
            raise TriggerNotFound(f"Yosys's time-zero trigger register {name} has an unknown form; "
                                  f"update hw/fourstate.py")
    return out
