"""Energy per inference from the core's exact counters, and the same network's ANN MAC energy.

The estimate multiplies every counter of ``golden.run`` by a per-operation energy from a documented,
configurable table. The default table holds the 45 nm figures of M. Horowitz, "Computing's energy
problem (and what we can do about it)", ISSCC 2014, Fig. 1.1.9; every entry names its source, and
:func:`load_table` overrides entries from a JSON file (``--energy-table``).

How the table is read
---------------------
- **Integer add / multiply** (``int_add``, ``int_mult``): piecewise-linear in the operand width
  between the documented points (8, 16, 32 bit adds; 8 and 32 bit multiplies). Outside the
  documented range the nearest point is scaled in proportion to the width (a 4-bit add costs
  half an 8-bit add, a 40-bit add 40/32 of a 32-bit add).
- **SRAM** (``sram_read_64b``): energy of a 64-bit word read as a function of the memory's size
  (8 KB, 32 KB, 1 MB), interpolated linearly in log(size) and scaled linearly in the word's width
  (a P*8-bit weight word costs P*8/64 of the 64-bit figure). Memories smaller than the smallest
  documented size are charged the 8 KB figure (Horowitz gives no smaller point; this over-estimates
  tiny memories rather than extrapolating to zero), larger ones than the largest the 1 MB figure.
  Each memory (each event bank) is looked up with its own size in bytes from
  ``golden.geometry.CoreGeometry.memories()``. Writes cost ``sram_write_factor`` times a read (Horowitz
  gives reads only; default 1.0).
- DRAM is not used: the weights are on chip.

What each counter costs (spikeforge's datapath, see docs/spec.md)
-----------------------------------------------------------------
==================  ==================================================================================
category            energy
==================  ==================================================================================
``syn_adds``        ``syn_ops`` x one add at the accumulator width (``CoreGeometry.acc_bits``); for
                    direct encoding, layer 0's syn_ops are multiply-accumulates and add one multiply at
                    max(weight_bits, input bits)
``neuron_updates``  layer updates x ``neuron_update_adds`` adds at ``v_bits`` (V + (acc + b); V - theta,
                    whose sign is the spike); encoder updates x ``encoder_update_adds`` adds at the
                    encoder width (u + x; (u + x) - input_max)
``weight_reads``    ``weight_reads`` x one weight-memory word (P * weight_bits)
``state_reads``     layers: state word (P * v_bits), plus the spike-count word for the last layer of a
                    ``count`` readout; encoder: its x and u words
``state_writes``    the same words written (the encoder writes u only)
``param_reads``     parameter word (P x (bias, threshold, v_init))
``event_reads``     event-bank entry reads (layer 0 from ``events_in``, deeper layers from ``events_a``)
``event_writes``    event-bank entry writes (encoder or direct inputs to ``events_in``, hidden layers'
                    spikes to ``events_a``/``events_b``)
``input_writes``    the encoder's x word written per input beat (one lane per beat)
``acc_reads``       conv2d and pool layers' accumulator-memory word reads (P * acc lane bits; with
                    ``banks`` > 1 a bank as deep as the largest layer needs: each access reads one bank)
``acc_writes``      the same words written (the scatter's read-modify-write, the sweep's clears)
==================  ==================================================================================

Not counted: control logic, clocking and leakage, the readout's n_out result reads, and the
counters themselves. The estimate is an operation-energy bound for an ASIC-like 45 nm datapath,
not an FPGA power figure.

ANN baseline
------------
The same architecture (same layer sizes) as a dense ANN: ``sum_l n_in_l * n_out_l`` MACs per
inference, each reading its weight once. ``float32``: fp32 mult + fp32 add (4.6 pJ) + a 32-bit read
from a memory holding every weight as float32. ``int8``: 8-bit mult + 32-bit add + an 8-bit read from
a memory holding every weight as int8. Activations, biases and non-linearities are not charged,
which favours the ANN.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np

from .geometry import CoreGeometry

__all__ = ["DEFAULT_TABLE", "EnergyTableError", "load_table", "check_table", "int_add_pj", "int_mult_pj",
           "sram_pj_per_bit", "sram_word_pj", "energy", "ann_energy", "ann_macs", "CATEGORIES", "unit_costs"]

HOROWITZ = "M. Horowitz, 'Computing's energy problem (and what we can do about it)', ISSCC 2014, Fig. 1.1.9, 45 nm"

#: The default table. Every entry is a dict with a ``source``; curves have ``points`` ([x, pJ], x
#: ascending), constants have ``pj``, factors have ``value``.
DEFAULT_TABLE: dict = {
    "int_add": {"points": [[8, 0.03], [16, 0.05], [32, 0.1]], "x": "operand bits", "unit": "pJ per add",
                "source": HOROWITZ + ": 8b add 0.03 pJ, 16b add 0.05 pJ, 32b add 0.1 pJ"},
    "int_mult": {"points": [[8, 0.2], [32, 3.1]], "x": "operand bits", "unit": "pJ per multiply",
                 "source": HOROWITZ + ": 8b mult 0.2 pJ, 32b mult 3.1 pJ"},
    "fp32_add": {"pj": 0.9, "unit": "pJ per add", "source": HOROWITZ + ": 32b FP add 0.9 pJ"},
    "fp32_mult": {"pj": 3.7, "unit": "pJ per multiply", "source": HOROWITZ + ": 32b FP mult 3.7 pJ"},
    "sram_read_64b": {"points": [[8192, 10.0], [32768, 20.0], [1048576, 100.0]], "x": "memory bytes",
                      "unit": "pJ per 64-bit word read",
                      "source": HOROWITZ + ": 64-bit cache read 8 KB 10 pJ, 32 KB 20 pJ, 1 MB 100 pJ"},
    "sram_write_factor": {"value": 1.0, "unit": "write energy / read energy",
                          "source": "assumption (Horowitz lists reads only): a write costs a read"},
    "neuron_update_adds": {"value": 3, "unit": "adds at v_bits per neuron update",
                           "source": "spikeforge datapath: V + (acc + bias) is 2 adds, V - theta 1 (its sign "
                                     "is the spike; the difference is the reset value)"},
    "encoder_update_adds": {"value": 2, "unit": "adds at the encoder width per encoder update",
                            "source": "spikeforge datapath: u + x, then (u + x) - input_max"},
}

CATEGORIES = ("syn_adds", "neuron_updates", "weight_reads", "state_reads", "state_writes", "param_reads",
              "event_reads", "event_writes", "input_writes", "acc_reads", "acc_writes")


class EnergyTableError(ValueError):
    """An energy table (or its JSON override) is malformed."""


def _num(v, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
        raise EnergyTableError(f"energy table: {what} must be a finite number >= 0, got {v!r}")
    return float(v)


def check_table(table: dict) -> dict:
    """Validate a complete table (the keys of :data:`DEFAULT_TABLE`); returns it."""
    if not isinstance(table, dict):
        raise EnergyTableError("energy table must be a JSON object")
    for key, ref in DEFAULT_TABLE.items():
        e = table.get(key)
        if not isinstance(e, dict):
            raise EnergyTableError(f"energy table: entry {key!r} missing or not an object")
        if not isinstance(e.get("source"), str) or not e["source"].strip():
            raise EnergyTableError(f"energy table: entry {key!r} must name its source (a non-empty 'source' string)")
        if "points" in ref:
            pts = e.get("points")
            if not isinstance(pts, list) or not pts or not all(isinstance(p, list) and len(p) == 2 for p in pts):
                raise EnergyTableError(f"energy table: {key}.points must be a non-empty list of [x, pJ] pairs")
            xs = [_num(p[0], f"{key}.points x") for p in pts]
            for p in pts:
                _num(p[1], f"{key}.points pJ")
            if any(x <= 0 for x in xs) or any(b <= a for a, b in zip(xs, xs[1:])):
                raise EnergyTableError(f"energy table: {key}.points x values must be positive and ascending")
        elif "pj" in ref:
            _num(e.get("pj"), f"{key}.pj")
        else:
            _num(e.get("value"), f"{key}.value")
    unknown = set(table) - set(DEFAULT_TABLE)
    if unknown:
        raise EnergyTableError(f"energy table: unknown entr{'y' if len(unknown) == 1 else 'ies'} "
                               f"{', '.join(sorted(unknown))} (known: {', '.join(DEFAULT_TABLE)})")
    return table


def load_table(path=None, overrides: dict | None = None) -> dict:
    """The default table with entries replaced from a JSON file (whole entries, each with its source)."""
    table = copy.deepcopy(DEFAULT_TABLE)
    upd = dict(overrides or {})
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise EnergyTableError(f"energy table file not found: {p}")
        try:
            data = json.loads(p.read_text())
        except (ValueError, UnicodeDecodeError) as e:
            raise EnergyTableError(f"{p}: not valid JSON ({e})") from None
        if not isinstance(data, dict):
            raise EnergyTableError(f"{p}: energy table must be a JSON object")
        upd.update(data)
    unknown = set(upd) - set(DEFAULT_TABLE)
    if unknown:
        raise EnergyTableError(f"energy table: unknown entr{'y' if len(unknown) == 1 else 'ies'} "
                               f"{', '.join(sorted(unknown))} (known: {', '.join(DEFAULT_TABLE)})")
    table.update(upd)
    return check_table(table)


# ------------------------------------------------------------------------------------------------
# unit costs

def _width_curve(points, bits: float) -> float:
    """Piecewise linear in bits between points; proportional scaling of the nearest end outside."""
    if bits <= 0:
        return 0.0
    xs = [float(p[0]) for p in points]
    ys = [float(p[1]) for p in points]
    if bits <= xs[0]:
        return ys[0] * bits / xs[0]
    if bits >= xs[-1]:
        return ys[-1] * bits / xs[-1]
    return float(np.interp(bits, xs, ys))


def int_add_pj(bits: int, table: dict = DEFAULT_TABLE) -> float:
    """One integer add of ``bits``-bit operands."""
    return _width_curve(table["int_add"]["points"], bits)


def int_mult_pj(bits: int, table: dict = DEFAULT_TABLE) -> float:
    """One integer multiply of ``bits``-bit operands."""
    return _width_curve(table["int_mult"]["points"], bits)


def sram_pj_per_bit(size_bytes: float, table: dict = DEFAULT_TABLE) -> float:
    """Read energy per bit of word for a memory of ``size_bytes`` (log-size interpolation, clamped)."""
    pts = table["sram_read_64b"]["points"]
    xs = [math.log(float(p[0])) for p in pts]
    ys = [float(p[1]) for p in pts]
    s = math.log(max(float(size_bytes), 1e-9))
    return float(np.interp(s, xs, ys)) / 64.0   # np.interp clamps at both ends


def sram_word_pj(width_bits: int, size_bytes: float, table: dict = DEFAULT_TABLE, write: bool = False) -> float:
    """Energy of reading (or writing) one ``width_bits`` word from a ``size_bytes`` memory."""
    e = width_bits * sram_pj_per_bit(size_bytes, table)
    return e * float(table["sram_write_factor"]["value"]) if write else e


def _mem_pj(mem: dict, table: dict, write: bool = False) -> float:
    """One word (one bank entry) of a memory from ``CoreGeometry.memories()``."""
    bank_bytes = mem["width"] * mem["depth"] / 8.0
    return sram_word_pj(mem["width"], bank_bytes, table, write)


def unit_costs(model, lanes: int, table: dict = DEFAULT_TABLE) -> dict:
    """pJ per counted operation, per place it happens (encoder, layer l), for one core."""
    cfg = CoreGeometry(model, lanes)
    mems = cfg.memories()
    v_add = int_add_pj(cfg.vbits, table)
    acc_add = int_add_pj(cfg.acc_bits, table)
    nu_adds = float(table["neuron_update_adds"]["value"])
    hidden_ev = mems.get("events_a") or mems["events_in"]
    layers = []
    for li, lh in enumerate(cfg.layers):
        last = li == cfg.L - 1
        syn = acc_add
        if li == 0 and cfg.direct:
            syn += int_mult_pj(max(cfg.wbits, cfg.xbits), table)
        s_rd = _mem_pj(mems["state"], table)
        s_wr = _mem_pj(mems["state"], table, write=True)
        if last and "counts" in mems:
            s_rd += _mem_pj(mems["counts"], table)
            s_wr += _mem_pj(mems["counts"], table, write=True)
        ev_in = mems["events_in"] if li == 0 else hidden_ev
        acc = mems.get("acc")         # spatial networks only; a dense layer counts no accumulator access
        layers.append({
            "syn_op": syn, "neuron_update": nu_adds * v_add,
            "weight_read": _mem_pj(mems["weights"], table),
            "state_read": s_rd, "state_write": s_wr, "param_read": _mem_pj(mems["params"], table),
            "event_read": _mem_pj(ev_in, table),
            "event_write": 0.0 if last else _mem_pj(hidden_ev, table, write=True),
            "acc_read": _mem_pj(acc, table) if acc else 0.0,
            "acc_write": _mem_pj(acc, table, write=True) if acc else 0.0,
        })
    enc = {"event_write": _mem_pj(mems["events_in"], table, write=True)}
    # encoder memories: rate has x (input) and u (state); stcb keeps x only; tsc a single enc_r word
    enc_in = next((mems[k] for k in ("enc_x", "enc_r") if k in mems), None)
    enc_state = [mems[k] for k in ("enc_u", "enc_r") if k in mems]
    if enc_in is not None:
        enc_bits = max(cfg.xbits, cfg.ubits) + 1
        lane_bits = enc_in["width"] // cfg.P
        in_bytes = enc_in["width"] * enc_in["depth"] / 8.0
        enc.update({
            "neuron_update": float(table["encoder_update_adds"]["value"]) * int_add_pj(enc_bits, table),
            "state_read": sum(_mem_pj(m, table) for m in {id(m): m for m in [enc_in, *enc_state]}.values()),
            "state_write": sum(_mem_pj(m, table, write=True) for m in enc_state),
            "input_write": sram_word_pj(lane_bits, in_bytes, table, write=True),   # one lane per beat
        })
    return {"encoder": enc, "layers": layers, "memories": mems, "acc_bits": cfg.acc_bits, "v_bits": cfg.vbits}


# ------------------------------------------------------------------------------------------------

def ann_macs(layer) -> tuple[int, int]:
    """(MACs per inference, weights) of ``layer`` run as an ANN layer: a dense layer n_in x n_out; a conv2d
    layer C_out x C_in x the (input pixel, kernel offset) pairs that reach an output inside the map
    (zero padding multiplies nothing); max pooling none."""
    if layer.kind == "dense":
        return layer.n_in * layer.n_out, layer.n_in * layer.n_out
    if layer.kind == "conv2d":
        co, ci, k, _ = layer.weight.shape
        return int(co * ci * layer.valid_offsets().sum()), co * ci * k * k
    return 0, 0


def ann_energy(model, table: dict = DEFAULT_TABLE) -> dict:
    """ANN energy per inference of the same layers: float32 and int8 MACs, one weight read per MAC from
    a memory that holds the network's weights."""
    per = [ann_macs(l) for l in model.layers]
    macs, weights = sum(m for m, _ in per), sum(w for _, w in per)
    f_mac = float(table["fp32_mult"]["pj"]) + float(table["fp32_add"]["pj"])
    f_rd = sram_word_pj(32, weights * 4, table)
    i_mac = int_mult_pj(8, table) + int_add_pj(32, table)
    i_rd = sram_word_pj(8, weights, table)
    return {
        "macs": macs, "weights": weights,
        "float32": {"mac_pj": macs * f_mac, "weight_read_pj": macs * f_rd, "total_pj": macs * (f_mac + f_rd),
                    "per_mac_pj": f_mac, "per_weight_read_pj": f_rd},
        "int8": {"mac_pj": macs * i_mac, "weight_read_pj": macs * i_rd, "total_pj": macs * (i_mac + i_rd),
                 "per_mac_pj": i_mac, "per_weight_read_pj": i_rd},
    }


def energy(model, result, lanes: int | None = None, table: dict = DEFAULT_TABLE) -> dict:
    """Energy per inference (pJ) of ``result = golden.run(model, x, lanes=P)``.

    Returns ``per_sample`` (category -> (B,) float64 pJ), ``mean_pj`` (category -> float),
    ``total_pj`` ((B,) array), ``mean_total_pj``, ``ann`` (:func:`ann_energy`), ``ratio_vs_ann``
    (ANN total / SNN mean total, for float32 and int8), ``unit_costs`` and the table used.
    """
    lanes = int(result.lanes if lanes is None else lanes)
    if lanes != result.lanes:
        raise ValueError(f"lanes={lanes} but the result's counters are for lanes={result.lanes}")
    check_table(table)
    u = unit_costs(model, lanes, table)
    B = result.batch

    def f(c, k):
        return np.asarray(c[k], dtype=np.float64)
    per = {k: np.zeros(B) for k in CATEGORIES}
    for c, lu in zip(result.layer_counters, u["layers"]):
        per["syn_adds"] += f(c, "syn_ops") * lu["syn_op"]
        per["neuron_updates"] += f(c, "neuron_updates") * lu["neuron_update"]
        per["weight_reads"] += f(c, "weight_reads") * lu["weight_read"]
        per["state_reads"] += f(c, "state_reads") * lu["state_read"]
        per["state_writes"] += f(c, "state_writes") * lu["state_write"]
        per["param_reads"] += f(c, "param_reads") * lu["param_read"]
        per["event_reads"] += f(c, "event_reads") * lu["event_read"]
        per["event_writes"] += f(c, "event_writes") * lu["event_write"]
        per["acc_reads"] += f(c, "acc_reads") * lu["acc_read"]
        per["acc_writes"] += f(c, "acc_writes") * lu["acc_write"]
    e, ue = result.encoder_counters, u["encoder"]
    per["event_writes"] += f(e, "event_writes") * ue["event_write"]
    if "neuron_update" in ue:
        per["neuron_updates"] += f(e, "neuron_updates") * ue["neuron_update"]
        per["state_reads"] += f(e, "state_reads") * ue["state_read"]
        per["state_writes"] += f(e, "state_writes") * ue["state_write"]
        per["input_writes"] += f(e, "input_writes") * ue["input_write"]
    total = sum(per.values())
    ann = ann_energy(model, table)
    mean_total = float(total.mean()) if B else float("nan")
    return {
        "per_sample": per, "mean_pj": {k: float(v.mean()) if B else float("nan") for k, v in per.items()},
        "total_pj": total, "mean_total_pj": mean_total, "ann": ann,
        "ratio_vs_ann": {k: (ann[k]["total_pj"] / mean_total if mean_total else float("inf"))
                         for k in ("float32", "int8")},
        "unit_costs": u, "lanes": lanes, "table": table,
    }
