"""quant.arch: the --arch grammar and shape inference (pure Python, no torch)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from quant.arch import (ArchError, ConvSpec, DenseSpec, PoolSpec, arch_string, build_arch, dense_arch, is_dense,
                        neuron_layers, parse_arch)

ROOT = Path(__file__).resolve().parents[1]

# (arch, input shape, expected [(kind, in_shape, out_shape)])
GOOD = [
    ("16c3-mp2-32c3-10", (1, 8, 8),
     [("conv2d", (1, 8, 8), (16, 8, 8)), ("maxpool2d", (16, 8, 8), (16, 4, 4)),
      ("conv2d", (16, 4, 4), (32, 4, 4)), ("dense", (32, 4, 4), (10,))]),
    ("128-10", (1, 8, 8), [("dense", (1, 8, 8), (128,)), ("dense", (128,), (10,))]),
    ("10", (64,), [("dense", (64,), (10,))]),
    # stride: Ho = (H + 2p - K) // S + 1 with p = K // 2
    ("8c3s2-10", (1, 28, 28), [("conv2d", (1, 28, 28), (8, 14, 14)), ("dense", (8, 14, 14), (10,))]),
    ("8c5s2-10", (3, 32, 32), [("conv2d", (3, 32, 32), (8, 16, 16)), ("dense", (8, 16, 16), (10,))]),
    ("4c3s3-10", (1, 8, 8), [("conv2d", (1, 8, 8), (4, 3, 3)), ("dense", (4, 3, 3), (10,))]),
    # an even kernel pads K // 2 on every side: the map grows by one
    ("4c2-10", (1, 8, 8), [("conv2d", (1, 8, 8), (4, 9, 9)), ("dense", (4, 9, 9), (10,))]),
    ("4c1-mp4-10", (1, 8, 8), [("conv2d", (1, 8, 8), (4, 8, 8)), ("maxpool2d", (4, 8, 8), (4, 2, 2)),
                                ("dense", (4, 2, 2), (10,))]),
    # pooling the input itself, two pools in a row, dense layers after conv
    ("mp2-mp2-10", (3, 32, 32), [("maxpool2d", (3, 32, 32), (3, 16, 16)), ("maxpool2d", (3, 16, 16), (3, 8, 8)),
                                  ("dense", (3, 8, 8), (10,))]),
    ("32c3-mp2-64c3-mp2-128-10", (1, 28, 28),
     [("conv2d", (1, 28, 28), (32, 28, 28)), ("maxpool2d", (32, 28, 28), (32, 14, 14)),
      ("conv2d", (32, 14, 14), (64, 14, 14)), ("maxpool2d", (64, 14, 14), (64, 7, 7)),
      ("dense", (64, 7, 7), (128,)), ("dense", (128,), (10,))]),
]


@pytest.mark.parametrize("arch,shape,want", GOOD, ids=[g[0] + "@" + "x".join(map(str, g[1])) for g in GOOD])
def test_good_archs_chain(arch, shape, want):
    specs = build_arch(arch, shape, 10)
    assert [(s.kind, tuple(s.in_shape), tuple(s.out_shape)) for s in specs] == want
    assert arch_string(specs) == arch
    for a, b in zip(specs, specs[1:]):
        assert tuple(a.out_shape) == tuple(b.in_shape)
    for s in specs:
        assert s.n_out == _prod(s.out_shape) and s.n_in == _prod(s.in_shape)


def _prod(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def test_conv_fields_padding_and_stride():
    c = build_arch("7c5s3-10", (2, 11, 9), 10)[0]
    assert isinstance(c, ConvSpec)
    assert (c.channels, c.kernel, c.stride, c.padding) == (7, 5, 3, 2)
    assert c.out_shape == (7, (11 + 4 - 5) // 3 + 1, (9 + 4 - 5) // 3 + 1) == (7, 4, 3)
    assert c.token == "7c5s3"
    # stride 1 written out is the same layer, printed canonically
    specs = build_arch("7c5s1-10", (2, 11, 9), 10)
    assert arch_string(specs) == "7c5-10" and specs[0].stride == 1
    p = build_arch("mp3-10", (2, 9, 6), 10)[0]
    assert isinstance(p, PoolSpec) and (p.kernel, p.out_shape) == (3, (2, 3, 2))
    d = build_arch("10", (2, 9, 6), 10)[0]
    assert isinstance(d, DenseSpec) and (d.n_in, d.n_out) == (108, 10)


def test_parse_tokens():
    assert parse_arch("16c3-mp2-32c3s2-128-10") == [("conv", 16, 3, 1), ("pool", 2), ("conv", 32, 3, 2),
                                                     ("dense", 128), ("dense", 10)]


def test_helpers():
    assert dense_arch([128], 10) == "128-10" and dense_arch([64, 32], 10) == "64-32-10" and dense_arch([], 10) == "10"
    specs = build_arch("4c3-mp2-20-10", (1, 8, 8), 10)
    assert neuron_layers(specs) == [0, 2, 3] and not is_dense(specs)
    assert is_dense(build_arch("128-10", (1, 8, 8), 10))


# (arch, input shape, a piece of the message)
BAD = [
    ("", (1, 8, 8), "must be a '-'-separated list"),
    ("   ", (1, 8, 8), "must be a '-'-separated list"),
    ("16c3--10", (1, 8, 8), "token 2 is empty"),
    ("-10", (1, 8, 8), "token 1 is empty"),
    ("10-", (1, 8, 8), "token 2 is empty"),
    ("16x3-10", (1, 8, 8), "token 1 '16x3' is not a layer"),
    ("16C3-10", (1, 8, 8), "token 1 '16C3' is not a layer"),
    ("c3-10", (1, 8, 8), "token 1 'c3' is not a layer"),
    ("16c-10", (1, 8, 8), "token 1 '16c' is not a layer"),
    ("16c3s-10", (1, 8, 8), "token 1 '16c3s' is not a layer"),
    ("0c3-10", (1, 8, 8), "token 1 '0c3' is not a layer"),
    ("16c0-10", (1, 8, 8), "token 1 '16c0' is not a layer"),
    ("16c3s0-10", (1, 8, 8), "token 1 '16c3s0' is not a layer"),
    ("016c3-10", (1, 8, 8), "no leading zeros"),
    ("mp-10", (1, 8, 8), "token 1 'mp' is not a layer"),
    ("mp0-10", (1, 8, 8), "token 1 'mp0' is not a layer"),
    ("mp1-10", (1, 8, 8), "mp1 is the identity"),
    ("0-10", (1, 8, 8), "token 1 '0' is not a layer"),
    ("-5-10", (1, 8, 8), "token 1 is empty"),
    ("12.5-10", (1, 8, 8), "token 1 '12.5' is not a layer"),
    (" 16c3-10", (1, 8, 8), "token 1 ' 16c3' is not a layer"),
    ("16c3-10,", (1, 8, 8), "token 2 '10,' is not a layer"),
    ("5000c3-10", (1, 8, 8), "more than 4096"),
    ("4c17-10", (1, 8, 8), "kernel 17, more than 16"),
    ("4c3s17-10", (1, 8, 8), "stride 17, more than 16"),
    ("mp17-10", (1, 8, 8), "window 17, more than 16"),
    ("100000-10", (1, 8, 8), "more than 65536"),
    # shapes that do not chain
    ("mp3-10", (1, 8, 8), "token 1 'mp3': the 8x8 map is not a multiple of the 3x3 window"),
    ("16c3-mp2-mp2-mp2-mp2-10", (1, 8, 8), "token 5 'mp2': the 1x1 map is not a multiple"),
    ("16c3s2-mp3-10", (1, 8, 8), "token 2 'mp3': the 4x4 map is not a multiple"),
    ("128-16c3-10", (1, 8, 8), "token 2 '16c3' needs a [C, H, W] input, but token 1 (dense) gives the flat shape [128]"),
    ("128-mp2-10", (1, 8, 8), "token 2 'mp2' needs a [C, H, W] input"),
    ("16c3-10", (64,), "token 1 '16c3' needs a [C, H, W] input, but the input gives the flat shape [64]"),
    # the classifier
    ("16c3-mp2-32c3", (1, 8, 8), "the last token '32c3' is the classifier"),
    ("16c3-mp2", (1, 8, 8), "the last token 'mp2' is the classifier"),
    ("128-12", (1, 8, 8), "the last token '12' is the classifier and must be a dense layer with 10 outputs"),
    ("9", (1, 8, 8), "the last token is the classifier and must be 10"),
]


@pytest.mark.parametrize("arch,shape,msg", BAD, ids=[repr(b[0]) for b in BAD])
def test_bad_archs_raise_one_line(arch, shape, msg):
    with pytest.raises(ArchError) as e:
        build_arch(arch, shape, 10)
    text = str(e.value)
    assert msg in text, text
    assert "\n" not in text


def test_bad_input_shape():
    for shape in [(1, 8), (0, 8, 8), ()]:
        with pytest.raises(ArchError, match="input shape"):
            build_arch("10", shape, 10)


def test_arch_module_imports_no_torch():
    """The CLI checks --arch before importing torch: quant.arch may import only the standard library."""
    tree = ast.parse((ROOT / "quant" / "arch.py").read_text())
    mods = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            mods |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level:
            mods.add((node.module or "").split(".")[0])
    assert mods <= {"__future__", "re", "dataclasses", "typing"}, mods
    code = "import sys, quant.arch; print('torch' in sys.modules, 'numpy' in sys.modules)"
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert p.stdout.split() == ["False", "False"], p.stderr
