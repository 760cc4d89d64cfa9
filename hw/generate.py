"""``python -m hw.generate``: Verilog and a JSON manifest for one integer model and lane count.

``--out DIR/NAME.v`` writes the Verilog (top module ``NAME``, or ``--name``) and, next to it,
``DIR/NAME.json`` (parameters, ports with directions, widths and payload field offsets, memory sizes in
bits, the block RAMs they take on the device, and a hash of the Verilog); both or neither. A model
whose memories need more block RAM than ``--device`` has (``--target ecp5``: 25k by default) is
refused before anything is written (exit 2, one line naming what it needs against what the device has). The Verilog starts correctly on 4-state simulators
too (``hw.fourstate``).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from amaranth.back import verilog
from amaranth.lib import wiring

import golden
from golden.cli import (ArgumentParser, Output, OutputSet, UsageError, banks_arg, check_outputs, guard, lanes_arg,
                        main_output)
from golden.geometry import CoreGeometry

from .banks import check_core_banks
from .capacity import DEVICE_BLOCKS, CapacityError, check_capacity
from .config import ConfigError
from .core import SpikeCore
from .fourstate import start_comb_blocks

__all__ = ["generate", "render", "convert", "manifest", "MANIFEST_VERSION"]

MANIFEST_VERSION = 1
DEFAULT_DEVICE = {"ecp5": "25k", "ice40": "up5k"}        # hw.synth's defaults
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def convert(core: SpikeCore, name: str) -> str:
    return start_comb_blocks(verilog.convert(core, name=name, emit_src=False))


def _layout_fields(layout) -> dict:
    return {n: {"offset": f.offset, "width": f.width, "signed": f.shape.signed} for n, f in layout}


def manifest(core: SpikeCore, name: str, verilog_text: str) -> dict:
    cfg = core.config
    ports = {}
    for path, member, _ in core.signature.flatten(core):
        pname = "__".join(map(str, path))
        ports[pname] = {"direction": "input" if member.flow == wiring.In else "output",
                        "width": member.shape.width if hasattr(member.shape, "width") else
                        __import__("amaranth").Shape.cast(member.shape).width}
    return {
        "manifest_version": MANIFEST_VERSION,
        "top": name,
        "parameters": cfg.parameters(),
        "ports": ports,
        "payloads": {"x": _layout_fields(core.x_layout), "result": _layout_fields(core.result_layout)},
        "counters": list(core.cnt.signature.names),   # port cnt__<name> each
        "memories": cfg.memories(),
        "memory_bits_total": sum(v["bits"] for v in cfg.memories().values()),
        "verilog_sha256": hashlib.sha256(verilog_text.encode()).hexdigest(),
    }


def render(model: golden.Model, lanes: int, name: str, banks: int = 1) -> tuple[str, dict]:
    """The Verilog text of the core with top module ``name``, and its manifest."""
    if not _NAME_RE.match(name):
        raise UsageError(f"name must be a Verilog identifier, got {name!r}")
    core = SpikeCore(model, lanes=lanes, banks=banks)
    text = convert(core, name)
    return text, manifest(core, name, text)


def _write(v_path: Path, j_path: Path, text: str, man: dict) -> None:
    with OutputSet() as files:          # the netlist and its manifest: both or neither
        files.add_text(v_path, text)
        files.add_text(j_path, json.dumps(man, indent=2))
        files.commit()


def generate(model: golden.Model, lanes: int, out_dir, name: str, banks: int = 1) -> tuple[Path, Path]:
    """Generate ``out_dir/name.v`` and ``out_dir/name.json``; returns both paths."""
    text, man = render(model, lanes, name, banks)
    out = Path(out_dir)
    v_path, j_path = out / f"{name}.v", out / f"{name}.json"
    _write(v_path, j_path, text, man)
    return v_path, j_path


def main(argv=None) -> int:
    p = ArgumentParser(prog="python -m hw.generate", description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="integer model file (.npz)")
    p.add_argument("--lanes", type=lanes_arg, default=8, help="P, a power of two from 1 to 64")
    p.add_argument("--banks", type=banks_arg, default=1,
                   help="accumulator banks: kernel offsets of a conv2d scatter in parallel (docs/spec.md section 3, "
                        "Banks; default 1)")
    p.add_argument("--out", required=True, metavar="FILE.v",
                   help="the Verilog file, e.g. build/verilog/NAME.v; the manifest NAME.json goes next to it")
    p.add_argument("--name", default=None, help="top module name (default: the file's stem)")
    p.add_argument("--target", default="ecp5", help="FPGA family whose block RAM the core must fit: ecp5 or ice40")
    p.add_argument("--device", default=None,
                   help="device, as hw.synth spells it (ecp5: 25k (default), 45k, 85k, ...; ice40: up5k (default), hx8k, ...)")
    a = p.parse_args(argv)
    if a.target not in DEVICE_BLOCKS:
        raise UsageError(f"--target: expected one of {', '.join(DEVICE_BLOCKS)}, got {a.target!r}")
    device = a.device if a.device is not None else DEFAULT_DEVICE[a.target]
    if device not in DEVICE_BLOCKS[a.target]:
        raise UsageError(f"--device: unknown {a.target} device {device!r} "
                         f"(choose from {', '.join(DEVICE_BLOCKS[a.target])})")
    out = main_output("--out", a.out, ".v")
    if a.name is not None:
        name = a.name                      # explicit names are checked, not rewritten
        if not _NAME_RE.match(name):
            raise UsageError(f"--name: must be a Verilog identifier, got {name!r}")
    else:
        name = re.sub(r"\W", "_", out.stem or "spikecore")
        if name[0].isdigit():
            name = "core_" + name
    v, j = out, out.with_suffix(".json")
    check_outputs([Output("--out", v), Output("--out", j, note=f"the manifest, next to {v.name}")])
    model = golden.load_model(a.model)
    try:
        check_core_banks(a.banks)
    except ConfigError as e:
        raise UsageError(f"--banks: {e}") from None
    try:
        fit = check_capacity(CoreGeometry(model, a.lanes, a.banks), a.target, device)
        text, man = render(model, a.lanes, name, a.banks)
    except (ConfigError, CapacityError) as e:
        raise UsageError(str(e)) from None
    man["block_rams"] = fit.as_dict()
    _write(v, j, text, man)
    print(f"wrote {v} ({len(text.splitlines())} lines, top module {name}) and {j}; "
          f"memories {man['memory_bits_total']} bits, lanes {a.lanes}" + (f", banks {a.banks}" if a.banks > 1 else ""))
    return 0


if __name__ == "__main__":
    guard("hw.generate", main)
