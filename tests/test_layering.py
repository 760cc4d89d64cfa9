"""The floors: golden/ imports nothing above it; hw/ and quant/ import golden only; sim/ may import all.

Every import statement counts, function-local ones included, so the check walks the syntax tree
rather than grepping the top of each file.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("golden", "quant", "hw", "sim")
# what each floor may import from the project (itself always allowed)
ALLOWED = {"golden": set(), "quant": {"golden"}, "hw": {"golden"}, "sim": {"golden", "quant", "hw"}}


def _import_module_names(tree: ast.AST) -> set[str]:
    """The names ``importlib.import_module`` is bound to by ``from importlib import import_module [as x]``."""
    return {a.asname or a.name for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module == "importlib" and not node.level
            for a in node.names if a.name == "import_module"}


def project_imports(path: Path) -> list[tuple[int, str]]:
    """(line, top-level project package) for every import in the file, at any depth."""
    tree = ast.parse(path.read_text(), filename=str(path))
    bare = _import_module_names(tree) | {"__import__"}
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
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in bare
              and node.args and isinstance(node.args[0], ast.Constant)):
            names = [str(node.args[0].value)]          # __import__("hw"), import_module("sim.regress")
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
    ("golden", "from importlib import import_module\nimport_module('sim.regress')\n", False),
    ("golden", "from importlib import import_module as load\nload('quant.train')\n", False),
    ("golden", "def import_module(name):\n    pass\nimport_module('sim.regress')\n", True),   # not importlib's
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


# --- no import circle inside golden/ (review of issue 17, item 8) ---

def golden_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """module -> the golden modules it imports, at any depth (function-local imports count: they are
    how a circle usually hides)."""
    graph: dict[str, set[str]] = {}
    for f in sorted((root / "golden").glob("*.py")):
        if f.stem == "__init__":        # the package's re-exports are not a module depending on another
            continue
        deps: set[str] = set()
        for node in ast.walk(ast.parse(f.read_text(), filename=str(f))):
            if isinstance(node, ast.ImportFrom):
                if node.level == 1 or node.module == "golden":
                    deps |= {node.module.split(".")[0]} if node.level and node.module else {a.name for a in node.names}
                elif not node.level and (node.module or "").startswith("golden."):
                    deps.add(node.module.split(".")[1])
            elif isinstance(node, ast.Import):
                deps |= {a.name.split(".")[1] for a in node.names if a.name.startswith("golden.")}
        graph[f.stem] = deps - {f.stem}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}          # 1 on the current path, 2 done

    def visit(n: str, path: list[str]) -> list[str] | None:
        state[n] = 1
        for d in sorted(graph.get(n, ())):
            if state.get(d) == 1:
                return (path + [n])[(path + [n]).index(d):] + [d]
            if d not in state:
                c = visit(d, path + [n])
                if c:
                    return c
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state:
            c = visit(n, [])
            if c:
                return c
    return None


def test_golden_has_no_import_circle():
    graph = golden_graph()
    assert {"cli", "options", "outputs", "errors"} <= graph.keys()
    assert graph["errors"] == set()
    assert "cli" not in graph["options"] and "cli" not in graph["outputs"]
    assert find_cycle(graph) is None


@pytest.mark.parametrize("files, cycle", [
    ({"a.py": "from .b import x\n", "b.py": "def f():\n    from .a import y\n"}, ["a", "b", "a"]),
    ({"a.py": "from golden.b import x\n", "b.py": "from golden import c\n", "c.py": "import golden.a\n"},
     ["a", "b", "c", "a"]),
    ({"a.py": "from .b import x\n", "b.py": "import numpy\n"}, None),
])
def test_the_cycle_finder(tmp_path, files, cycle):
    (tmp_path / "golden").mkdir()
    for name, text in files.items():
        (tmp_path / "golden" / name).write_text(text)
    assert find_cycle(golden_graph(tmp_path)) == cycle


def test_each_cli_module_imports_alone_and_usage_error_is_one_class():
    """Each of the three imports first in a fresh interpreter; the validators raise the one UsageError
    without loading golden.cli; ``from golden.cli import UsageError`` still names that class."""
    code = (
        "import sys\n"
        "import golden.{mod}\n"
        "from golden.errors import UsageError\n"
        "from golden.options import check, positive_int\n"
        "from golden.outputs import Output, check_outputs\n"
        "for f in (lambda: check(positive_int, '0', '--n'), lambda: check_outputs([Output('--out', '/')])):\n"
        "    try:\n"
        "        f()\n"
        "    except UsageError as e:\n"
        "        print(type(e).__module__, str(e).split(':')[0])\n"
        "print('cli loaded' if 'golden.cli' in sys.modules else 'cli not loaded')\n"
        "import golden.cli\n"
        "print(golden.cli.UsageError is UsageError)\n")
    for mod in ("errors", "options", "outputs", "cli"):
        r = subprocess.run([sys.executable, "-c", code.format(mod=mod)], cwd=ROOT, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        cli_line = "cli loaded" if mod == "cli" else "cli not loaded"
        assert r.stdout.splitlines() == ["golden.errors --n", "golden.errors --out", cli_line, "True"]
