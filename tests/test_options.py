"""golden.options (typed option validators), golden.outputs (output paths checked before work, written as
a set) and golden.progress (line-wise progress off a terminal): the shared CLI mechanism."""

import argparse
import io
import os
from pathlib import Path

import pytest

from golden import options as op
from golden.cli import ArgumentParser, UsageError, error_line
from golden.outputs import Output, OutputSet, check_outputs, main_output
from golden.progress import Progress


@pytest.mark.parametrize("text", ["1", "1.0", "2", "-0.1", "nan", "inf", "-inf", "often", ""])
def test_probability_rejects_what_would_hang_or_mislead(text):
    # 1.0 stalled sim.fuzz forever; negative and nan values were accepted
    with pytest.raises(argparse.ArgumentTypeError, match=r"a probability in \[0, 1\)"):
        op.probability(text)


def test_probability_accepts_the_half_open_interval():
    assert op.probability("0") == 0.0 and op.probability("0.3") == 0.3 and op.probability("0.999") == 0.999


def test_integer_validators():
    assert op.positive_int("3") == 3 and op.nonneg_int("0") == 0 and op.seed_int("4294967295") == 2 ** 32 - 1
    for parse, bad in [(op.positive_int, "0"), (op.positive_int, "1.5"), (op.positive_int, "x"),
                       (op.nonneg_int, "-1"), (op.seed_int, "-1"), (op.seed_int, "4294967296"),
                       (op.int_range(2, 16), "17"), (op.int_range(2, 16), "1")]:
        with pytest.raises(argparse.ArgumentTypeError, match="expected"):
            parse(bad)


def test_finite_float_bounds():
    f = op.finite_float(0.0, lo_open=True)
    assert f("2.5") == 2.5
    for bad in ("0", "-1", "nan", "inf", "x"):
        with pytest.raises(argparse.ArgumentTypeError, match="a finite number > 0"):
            f(bad)


def test_lanes_and_lists():
    assert op.lanes_arg("64") == 64 and op.lanes_list("1, 2,64") == [1, 2, 64]
    for bad, msg in [("3", "power of two"), ("128", "power of two"), ("0", "power of two")]:
        with pytest.raises(argparse.ArgumentTypeError, match=msg):
            op.lanes_arg(bad)
    for bad, msg in [("1,,2", "comma-separated"), ("", "comma-separated"), ("1,3", "'3' is not one"),
                     ("2,2", "listed twice")]:
        with pytest.raises(argparse.ArgumentTypeError, match=msg):
            op.lanes_list(bad)
    c = op.choice_list(("rate", "tsc"), what="codings")
    assert c("tsc,rate") == ["tsc", "rate"]
    with pytest.raises(argparse.ArgumentTypeError, match="unknown coding 'burst'"):
        c("rate,burst")


def test_check_names_the_option():
    with pytest.raises(UsageError, match=r"^--lanes: expected a power of two"):
        op.check(op.lanes_arg, "5", "--lanes")


@pytest.mark.parametrize("argv, line", [
    (["--p", "1", "--need", "x"], "prog: error: --p: expected a probability in [0, 1), got '1'\n"),
    (["--bogus", "--need", "x"], "prog: error: --bogus: unrecognized argument\n"),
    ([], "prog: error: --need: required option missing\n"),
    (["--need", "x", "--c", "z"], "prog: error: --c: invalid choice: 'z' (choose from 'a', 'b')\n"),
])
def test_parser_errors_are_one_line_option_first(argv, line, capsys):
    p = ArgumentParser(prog="python -m prog")
    p.add_argument("--p", type=op.probability, help="h")
    p.add_argument("--need", required=True, help="h")
    p.add_argument("--c", choices=("a", "b"), help="h")
    with pytest.raises(SystemExit) as e:
        p.parse_args(argv)
    assert e.value.code == 2
    assert capsys.readouterr().err == line


def test_error_line_uses_the_module_name():
    assert error_line("python -m sim.fuzz", "--x: bad\nmore") == "sim.fuzz: error: --x: bad\n"


# --- output paths ------------------------------------------------------------------------------------

def test_check_outputs_accepts_new_paths(tmp_path):
    outs = check_outputs([Output("--json", tmp_path / "a" / "b" / "r.json"), Output("--dir", tmp_path / "d", "dir")])
    assert len(outs) == 2 and not (tmp_path / "a").exists()      # checking creates nothing


@pytest.mark.parametrize("case, msg", [
    ("directory", "--json: {d} is a directory; expected a file name"),
    ("slash", "is a directory; expected a file name"),
    ("under-file", "--json: cannot write {f}/x/r.json: {f} is a regular file, not a directory"),
    ("same", "--junit: {p} is also written by --json"),
    ("file-as-dir", "would lie under the file"),
    ("dir-is-file", "--dir: {f} is a file; expected a directory"),
])
def test_check_outputs_names_the_option(tmp_path, case, msg):
    d = tmp_path / "adir"
    d.mkdir()
    f = tmp_path / "afile"
    f.write_text("x")
    p = tmp_path / "r.json"
    outs = {"directory": [Output("--json", d)],
            "slash": [Output("--json", str(tmp_path / "new") + "/")],   # as typed: a str keeps the slash
            "under-file": [Output("--json", f / "x" / "r.json")],
            "same": [Output("--json", p), Output("--junit", p)],
            "file-as-dir": [Output("--json", p), Output("--junit", p / "r.xml")],
            "dir-is-file": [Output("--dir", f, "dir")]}[case]
    with pytest.raises(UsageError) as e:
        check_outputs(outs)
    assert msg.format(d=d, f=f, p=p) in str(e.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_check_outputs_unwritable(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(UsageError, match="no write permission"):
            check_outputs([Output("--out", ro / "x.json")])
    finally:
        ro.chmod(0o700)


def test_main_output(tmp_path):
    assert main_output("--out", str(tmp_path / "x.json"), ".json") == tmp_path / "x.json"
    with pytest.raises(UsageError, match=r"--out: .* is a directory; --out names the main output file"):
        main_output("--out", str(tmp_path), ".json")
    with pytest.raises(UsageError, match=r"--out: .* is a directory"):
        main_output("--out", str(tmp_path / "new") + "/", ".json")
    with pytest.raises(UsageError, match=r"--out: expected a \.json file name"):
        main_output("--out", str(tmp_path / "x"), ".json")


def test_output_set_writes_all_or_nothing(tmp_path):
    a, b = tmp_path / "new" / "a.json", tmp_path / "b.xml"
    b.write_text("old")
    with pytest.raises(RuntimeError):
        with OutputSet() as s:
            s.add_text(a, "A")
            s.add(b, lambda tmp: (_ for _ in ()).throw(RuntimeError("disk full")))
            s.commit()
    # nothing replaced, no temporary file, and the directory made for a.json removed again
    assert b.read_text() == "old" and not (tmp_path / "new").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.xml"]
    with OutputSet() as s:
        s.add_text(a, "A")
        s.add_text(b, "B")
        assert s.commit() == [a, b]
    assert a.read_text() == "A" and b.read_text() == "B"
    assert oct(a.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def test_output_set_without_commit_leaves_nothing(tmp_path):
    with OutputSet() as s:
        s.add_text(tmp_path / "x.txt", "x")
    assert list(tmp_path.iterdir()) == []


def _umask():
    m = os.umask(0)
    os.umask(m)
    return m


# --- progress ----------------------------------------------------------------------------------------

def test_progress_is_line_wise_off_a_terminal():
    buf = io.StringIO()
    with Progress(20, "fuzz", "networks", stream=buf, tty=False) as p:
        for _ in range(20):
            p.update(1)
            p.set_postfix(mismatches=0)
    lines = buf.getvalue().splitlines()
    # one line per tenth of the work, whole lines only (no carriage returns of a redrawn bar)
    assert len(lines) == 10 and "\r" not in buf.getvalue()
    assert lines[0].startswith("fuzz: 2/20 networks (10%), ") and lines[-1].startswith("fuzz: 20/20 networks (100%)")
    assert lines[-1].endswith("mismatches 0")


def test_progress_disabled_prints_nothing():
    buf = io.StringIO()
    with Progress(5, "x", "items", stream=buf, enabled=False, tty=False) as p:
        p.update(5)
    assert buf.getvalue() == ""


def test_progress_on_a_terminal_is_a_bar():
    buf = io.StringIO()
    with Progress(3, "sweep", "configurations", stream=buf, tty=True) as p:
        p.update(3)
    assert "\r" in buf.getvalue() and "3/3" in buf.getvalue()
