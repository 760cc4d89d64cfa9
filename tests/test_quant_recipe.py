"""quant.train --recipe (issue 17 item 7): conv archs train with the documented conv recipe unless the user
says otherwise; dense archs keep the plain defaults; explicit flags always win."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from quant import bench, recipe
from quant import train as qtrain
from quant import trainer

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
CONV_ARCH = ["--arch", "16c3-mp2-32c3-10"]


@pytest.fixture
def spy(monkeypatch, tmp_path):
    """Run quant.train.main up to the trainer and return the Config it would train (no training)."""
    seen = []

    def fake_train(cfg, data, out, **kw):
        seen.append(cfg)
        return trainer.TrainResult(model=None, metrics={}, exact=True, mismatch=None, stopped=True)

    monkeypatch.setattr(trainer, "train", fake_train)

    def run(*args: str) -> trainer.Config:
        assert qtrain.main([*args, "--limit", "8", "--quiet", "--out", str(tmp_path / "m.npz")]) == 0
        return seen.pop()
    return run


def knobs(cfg: trainer.Config) -> dict:
    return {"epochs": cfg.epochs, "augment": cfg.augment, "label_smoothing": cfg.label_smoothing, "bn": cfg.bn,
            "readout": cfg.readout}


# the documented recipes (docs/quant.md, "Measured (conv)"), spelled out
RATE = {"epochs": 60, "augment": 1, "label_smoothing": 0.1, "bn": False, "readout": "count"}
DIRECT = {"epochs": 40, "augment": 0, "label_smoothing": 0.1, "bn": False, "readout": "membrane"}
TSC = {"epochs": 40, "augment": 1, "label_smoothing": 0.1, "bn": True, "readout": "membrane"}
PLAIN = {"epochs": 20, "augment": 0, "label_smoothing": 0.0, "bn": False, "readout": "count"}


@pytest.mark.parametrize("args,expected", [
    ([], RATE),
    (["--coding", "stcb"], RATE),
    (["--encoding", "direct", "--T", "1"], DIRECT),
    (["--coding", "stcb", "--encoding", "direct", "--T", "1"], DIRECT),
    (["--coding", "tsc", "--T", "17"], TSC),
], ids=["rate", "stcb", "direct", "stcb-direct", "tsc"])
def test_conv_arch_gets_the_documented_recipe(spy, args, expected):
    assert knobs(spy(*CONV_ARCH, *args)) == expected
    assert knobs(spy(*CONV_ARCH, *args, "--recipe", "conv")) == expected


@pytest.mark.parametrize("arch", [["--hidden", "128"], ["--arch", "64-10"], ["--arch", "mp2-10"], []],
                         ids=["hidden", "dense", "pool-only", "default"])
def test_dense_archs_keep_the_plain_defaults(spy, arch):
    assert knobs(spy(*arch)) == PLAIN
    assert knobs(spy(*arch, "--coding", "tsc", "--T", "17")) == {**PLAIN, "readout": "membrane"}
    # asked for by name, the conv recipe applies to a dense net too
    assert knobs(spy(*arch, "--recipe", "conv")) == RATE


def test_recipe_none_gives_the_plain_defaults_on_a_conv_arch(spy):
    assert knobs(spy(*CONV_ARCH, "--recipe", "none")) == PLAIN
    assert knobs(spy(*CONV_ARCH, "--recipe", "none", "--coding", "tsc", "--T", "17")) == {**PLAIN,
                                                                                          "readout": "membrane"}


@pytest.mark.parametrize("flag,field,value", [
    (["--epochs", "20"], "epochs", 20),          # equal to the plain default, still explicit
    (["--epochs", "3"], "epochs", 3),
    (["--augment", "0"], "augment", 0),
    (["--augment", "2"], "augment", 2),
    (["--label-smoothing", "0"], "label_smoothing", 0.0),
    (["--label-smoothing", "0.2"], "label_smoothing", 0.2),
    (["--bn"], "bn", True),
    (["--readout", "membrane"], "readout", "membrane"),
])
def test_explicit_flags_win_over_the_recipe(spy, flag, field, value):
    got = knobs(spy(*CONV_ARCH, *flag))
    assert got == {**RATE, field: value}


def test_explicit_flags_win_for_direct_and_tsc(spy):
    assert knobs(spy(*CONV_ARCH, "--encoding", "direct", "--T", "1", "--readout", "count", "--augment", "1")) == \
        {**DIRECT, "readout": "count", "augment": 1}
    assert knobs(spy(*CONV_ARCH, "--coding", "tsc", "--T", "17", "--no-bn", "--epochs", "5")) == \
        {**TSC, "bn": False, "epochs": 5}
    # and over --recipe none
    assert knobs(spy(*CONV_ARCH, "--recipe", "none", "--augment", "1", "--bn")) == {**PLAIN, "augment": 1,
                                                                                     "bn": True}


@pytest.mark.parametrize("name", ["conv-rate-T8-w8", "conv-direct-T1-w8", "conv-tsc-T17-w8", "conv-stcb-T8-w8"])
def test_recipe_is_what_the_benchmark_runs(spy, name):
    """quant.bench's conv configurations reproduce docs/quant.md's measured rows with every flag spelled out;
    the recipe alone must train exactly the same configuration."""
    full = spy(*bench.CONFIGS[name])
    keep = ["--arch", "--coding", "--encoding", "--T", "--weight-bits"]
    args = bench.CONFIGS[name]
    short = [w for i, w in enumerate(args) if w in keep or (i > 0 and args[i - 1] in keep)]
    assert "--epochs" not in short and "--label-smoothing" not in short
    assert spy(*short) == full


def test_the_first_conv_command_in_docs_uses_the_recipe(spy):
    text = (ROOT / "docs" / "quant.md").read_text()
    block = text.split("```\n", 2)[1].split("```")[0].replace("\\\n", " ")
    cmd = next(line for line in block.splitlines() if "--arch" in line)
    args = shlex.split(cmd, comments=True)[3:]
    assert "--recipe" in args and args[args.index("--recipe") + 1] == "conv"
    args = [a for a in args if a not in ("--out",) and not a.endswith(".npz")]
    assert spy(*args) == spy(*bench.CONFIGS["conv-rate-T8-w8"])


def test_help_says_what_the_recipe_sets():
    text = " ".join(qtrain.build_parser().format_help().split())
    for part in ("--recipe {auto,conv,none}", "--epochs 60 --augment 1 --label-smoothing 0.1",
                 "--epochs 40 --label-smoothing 0.1 --readout membrane",
                 "--epochs 40 --augment 1 --label-smoothing 0.1 --bn", "--no-bn", "a flag given explicitly always wins"):
        assert part in text.replace("label- smoothing", "label-smoothing"), part


def test_recipe_line_is_printed(monkeypatch, tmp_path, capsys):
    def fake_train(cfg, data, out, **kw):
        return trainer.TrainResult(model=None, metrics={}, exact=True, mismatch=None, stopped=True)
    monkeypatch.setattr(trainer, "train", fake_train)
    assert qtrain.main([*CONV_ARCH, "--augment", "2", "--limit", "8", "--out", str(tmp_path / "m.npz")]) == 0
    assert capsys.readouterr().out == "recipe conv: --epochs 60 --label-smoothing 0.1\n"
    assert qtrain.main(["--hidden", "8", "--limit", "8", "--out", str(tmp_path / "m.npz")]) == 0
    assert capsys.readouterr().out == ""


def test_resolve_and_describe():
    s = recipe.CONV["tsc"]
    got, taken = recipe.resolve(s, {"epochs": 7, "augment": None, "label_smoothing": None, "bn": False,
                                    "readout": None})
    assert got == recipe.Settings(epochs=7, augment=1, label_smoothing=0.1, bn=False, readout=None)
    assert taken == {"augment": 1, "label_smoothing": 0.1, "readout": None}
    assert recipe.describe(taken) == "--augment 1 --label-smoothing 0.1"
    with pytest.raises(ValueError, match="unknown recipe 'big'"):
        recipe.recipe_for("big", conv_arch=True, coding="rate", encoding="rate")


@pytest.mark.parametrize("bad,msg", [
    ("bogus", "--recipe: invalid choice: 'bogus' (choose from 'auto', 'conv', 'none')"),
    ("", "--recipe: invalid choice: ''"),
    ("CONV", "--recipe: invalid choice: 'CONV'"),
])
def test_bad_recipe_exits_2_with_one_line(bad, msg, tmp_path):
    d = tmp_path / "notorch" / "torch"
    d.mkdir(parents=True)
    (d / "__init__.py").write_text("raise ImportError('torch imported before the options were checked')\n")
    out = tmp_path / "out" / "m.npz"
    out.parent.mkdir()
    env = {**os.environ, "PYTHONPATH": f"{d.parent}{os.pathsep}{ROOT}"}
    p = subprocess.run([PY, "-m", "quant.train", *CONV_ARCH, "--recipe", bad, "--out", str(out)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.startswith("quant.train: error: ") and len(p.stderr.splitlines()) == 1, p.stderr
    assert msg in p.stderr
    assert list(out.parent.iterdir()) == []


def test_tiny_conv_run_records_the_recipe_in_its_metrics(tmp_path):
    out = tmp_path / "m.npz"
    assert qtrain.main(["--arch", "2c3-mp2-10", "--T", "2", "--epochs", "1", "--limit", "30", "--no-float-ref",
                        "--quiet", "--out", str(out)]) == 0
    m = json.loads(out.with_suffix(".json").read_text())
    assert (m["epochs"], m["augment"], m["label_smoothing"], m["bn"]) == (1, 1, 0.1, False)
    assert m["exact"] is True
