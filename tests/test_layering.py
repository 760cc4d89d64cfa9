"""The floors: golden/ imports nothing above it; hw/ and quant/ import golden only; sim/ may import all.

Every import statement counts, function-local ones included, so the check walks the syntax tree
rather than grepping the top of each file.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("golden", "quant", "hw", "sim")
# what each floor may import from the project (itself always allowed)
ALLOWED = {"golden": set(), "quant": {"golden"}, "hw": {"golden"}, "sim": {"golden", "quant", "hw"}}


def project_imports(path: Path) -> list[tuple[int, str]]:
    """(line, top-level project package) for every import in the file, at any depth."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:           # relative: stays inside its own package
                continue
            names = [node.module or ""]
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "import_module" and node.args and isinstance(node.args[0], ast.Constant)):
            names = [str(node.args[0].value)]          # importlib.import_module("hw.core")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "__import__"
              and node.args and isinstance(node.args[0], ast.Constant)):
            names = [str(node.args[0].value)]
        else:
            continue
        for n in names:
            top = n.split(".")[0]
            if top in PACKAGES:
                found.append((node.lineno, top))
    return found


def violations(root: Path = ROOT) -> list[str]:
    bad = []
    for pkg in PACKAGES:
        for f in sorted((root / pkg).rglob("*.py")):
            for line, top in project_imports(f):
                if top != pkg and top not in ALLOWED[pkg]:
                    bad.append(f"{f.relative_to(root)}:{line} imports {top} ({pkg} may import "
                               f"{', '.join(sorted(ALLOWED[pkg])) or 'nothing of the project'})")
    return bad


def test_no_floor_imports_a_higher_one():
    assert violations() == []


@pytest.mark.parametrize("pkg, stmt, ok", [
    ("golden", "import numpy as np\n", True),
    ("golden", "def f():\n    from hw.config import CoreConfig\n", False),      # function-local counts
    ("golden", "def f():\n    import sim.regress\n", False),
    ("golden", "import importlib\nm = importlib.import_module('quant.train')\n", False),
    ("golden", "x = __import__('hw')\n", False),
    ("hw", "from golden import perf\n", True),
    ("hw", "from sim.runner import build\n", False),
    ("quant", "import hw.core\n", False),
    ("quant", "from golden.model import Model\n", True),
    ("sim", "from quant import export\nfrom hw import core\n", True),
    ("golden", "from . import perf\n", True),                                # relative stays inside
])
def test_the_checker_flags_upward_imports(tmp_path, pkg, stmt, ok):
    for p in PACKAGES:
        (tmp_path / p).mkdir()
    (tmp_path / pkg / "mod.py").write_text(stmt)
    assert (violations(tmp_path) == []) is ok
