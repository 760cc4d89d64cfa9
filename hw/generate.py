"""``python -m hw.generate``: Verilog and a JSON manifest for one integer model and lane count.

Writes ``OUT/NAME.v`` (top module ``NAME``) and ``OUT/NAME.json`` (parameters, ports with
directions, widths and payload field offsets, memory sizes in bits, and a hash of the Verilog).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from amaranth.back import verilog
from amaranth.lib import wiring

import golden
from golden.cli import ArgumentParser, UsageError, guard, lanes_arg
from golden.io import atomic_write

from .config import ConfigError
from .core import SpikeCore

__all__ = ["generate", "convert", "manifest", "MANIFEST_VERSION"]

MANIFEST_VERSION = 1
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def convert(core: SpikeCore, name: str) -> str:
    return verilog.convert(core, name=name, emit_src=False)


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


def generate(model: golden.Model, lanes: int, out_dir, name: str) -> tuple[Path, Path]:
    """Generate ``out_dir/name.v`` and ``out_dir/name.json``; returns both paths."""
    if not _NAME_RE.match(name):
        raise UsageError(f"name must be a Verilog identifier, got {name!r}")
    core = SpikeCore(model, lanes=lanes)
    text = convert(core, name)
    man = manifest(core, name, text)
    out = Path(out_dir)
    v_path, j_path = out / f"{name}.v", out / f"{name}.json"
    atomic_write(v_path, lambda tmp: Path(tmp).write_text(text))
    atomic_write(j_path, lambda tmp: Path(tmp).write_text(json.dumps(man, indent=2)))
    return v_path, j_path


def main(argv=None) -> int:
    p = ArgumentParser(prog="python -m hw.generate", description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="integer model file (.npz)")
    p.add_argument("--lanes", type=lanes_arg, default=8, help="P, a power of two from 1 to 64")
    p.add_argument("--out", required=True, help="output directory, e.g. build/verilog/NAME/")
    p.add_argument("--name", default=None, help="top module name (default: the directory's name)")
    a = p.parse_args(argv)
    model = golden.load_model(a.model)
    if a.name is not None:
        name = a.name                      # explicit names are checked, not rewritten
    else:
        name = re.sub(r"\W", "_", Path(a.out.rstrip("/")).name or "spikecore")
        if name[0].isdigit():
            name = "core_" + name
    try:
        v, j = generate(model, a.lanes, a.out, name)
    except ConfigError as e:
        raise UsageError(str(e)) from None
    man = json.loads(j.read_text())
    print(f"wrote {v} ({len(v.read_text().splitlines())} lines) and {j}; "
          f"memories {man['memory_bits_total']} bits, lanes {a.lanes}")
    return 0


if __name__ == "__main__":
    guard("hw.generate", main)
