"""Does a core fit a device's block RAM? The devices ``hw.synth`` names, with their block RAM counts,
and the check ``hw.generate`` runs before it writes anything (docs/spec.md section 5, "Capacity").

Every memory of :meth:`golden.geometry.CoreGeometry.memories` is placed as synthesis places it
(:func:`golden.blockram.place`: block RAM, distributed RAM or soft logic, by yosys's costs); the
weights and parameters are ROMs (their contents are the netlist's), every other memory a RAM. The
block RAMs of the memories placed in block RAM must not exceed the device's.
"""

from __future__ import annotations

from dataclasses import dataclass

from golden.blockram import BLOCK_RAMS, place
from golden.geometry import CoreGeometry

from .synth import TARGETS

__all__ = ["DEVICE_BLOCKS", "ROMS", "CapacityError", "Capacity", "capacity", "check_capacity"]

# family -> device (hw.synth's --device spelling) -> block RAMs (ECP5 DP16KD, iCE40 SB_RAM40_4K), from
# the Lattice data sheets; the -UM and -UM5G ECP5 parts have their LFE5U sibling's
DEVICE_BLOCKS = {
    "ecp5": {"12k": 32, "25k": 56, "45k": 108, "85k": 208,
             "um-25k": 56, "um-45k": 108, "um-85k": 208, "um5g-25k": 56, "um5g-45k": 108, "um5g-85k": 208},
    "ice40": {"lp384": 0, "lp1k": 16, "lp4k": 20, "lp8k": 32, "hx1k": 16, "hx4k": 20, "hx8k": 32,
              "up3k": 20, "up5k": 30, "u1k": 16, "u2k": 20, "u4k": 20},
}

# memories without a write port: initialised with the model, read only
ROMS = ("weights", "params")


class CapacityError(ValueError):
    """The core's memories need more block RAM than the device has."""


@dataclass(frozen=True)
class Capacity:
    family: str
    device: str
    have: int                    # the device's block RAMs
    need: int                    # the core's
    memories: dict               # memory -> {"placement": kind, "blocks": n}

    @property
    def fits(self) -> bool:
        return self.need <= self.have

    def as_dict(self) -> dict:
        return {"target": self.family, "device": self.device, "cell": BLOCK_RAMS[self.family].cell,
                "blocks_needed": self.need, "blocks_available": self.have, "memories": self.memories}


def capacity(geometry: CoreGeometry, family: str = "ecp5", device: str = "25k") -> Capacity:
    """The block RAMs ``geometry``'s memories take on ``family`` and what ``device`` has."""
    if family not in DEVICE_BLOCKS:
        raise ValueError(f"unknown target {family!r} (choose from {', '.join(DEVICE_BLOCKS)})")
    if device not in DEVICE_BLOCKS[family]:
        raise ValueError(f"unknown {family} device {device!r} (choose from {', '.join(DEVICE_BLOCKS[family])})")
    mems = {}
    for name, m in geometry.memories().items():
        banks = m.get("banks", 1)
        p = place(m["width"], m["depth"], family, rom=name in ROMS)
        mems[name] = {"placement": p.kind, "blocks": p.blocks * banks}
    return Capacity(family, device, DEVICE_BLOCKS[family][device], sum(v["blocks"] for v in mems.values()), mems)


def check_capacity(geometry: CoreGeometry, family: str = "ecp5", device: str = "25k") -> Capacity:
    """:func:`capacity`, raising :class:`CapacityError` (one line) when the core does not fit."""
    c = capacity(geometry, family, device)
    if not c.fits:
        cell = BLOCK_RAMS[family].cell
        big = sorted(((v["blocks"], k) for k, v in c.memories.items() if v["blocks"]), key=lambda t: (-t[0], t[1]))
        parts = ", ".join(f"{k} {n}" for n, k in big)
        part = TARGETS[family].part.get(device)
        where = f"the {part} ({family} {device})" if part else f"the {family} device {device}"
        raise CapacityError(f"the core needs {c.need} {cell} block RAMs ({parts}) but {where} has {c.have}; "
                            f"choose a larger --device or a smaller model")
    return c
