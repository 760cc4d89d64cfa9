"""The report a user looks at: accuracy ladder, agreement, per-inference cost, cost per layer, plots.

Writes ``report.md``, ``report.json`` and PNG plots (spike raster, cycle breakdown, spikes and
sparsity per layer, cycles and weight reads per layer) into one directory.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

import golden
from golden import perf
from golden.outputs import OutputSet

__all__ = ["cycle_breakdown", "layer_costs", "layer_costs_markdown", "layer_cost_plot", "LayerSumError", "network_name",
           "build_report", "write_report", "main"]


def cycle_breakdown(model: golden.Model, g: golden.Result) -> dict:
    """Mean cycles per inference split by what the core is doing (golden.perf.breakdown: the same
    model that predicts the cycles counter, which the parts sum to exactly)."""
    return perf.breakdown(model, g.lanes, g)


class LayerSumError(AssertionError):
    """The rows of :func:`layer_costs` do not add up to golden's totals."""


def network_name(model: golden.Model) -> str:
    """64-128-10 for a dense network, 1x8x8-16c3-mp2-32c3-10 (the input shape, then quant's --arch) else."""
    if all(l.kind == "dense" for l in model.layers):
        return "-".join(map(str, model.sizes))
    return f"{'x'.join(map(str, model.input_shape))}-{model.arch}"


def _shape(layer) -> str:
    if layer.kind == "dense":
        return f"{layer.n_in}→{layer.n_out}"
    io = f"{'×'.join(map(str, layer.in_shape))}→{'×'.join(map(str, layer.out_shape))}"
    if layer.kind == "conv2d":
        return f"{io}, k{layer.kernel} s{layer.stride} p{layer.padding}"
    return f"{io}, k{layer.kernel}"


def _encoder_kind(model: golden.Model) -> str:
    if model.coding == "tsc":
        return "ON/OFF input generator"
    if model.encoding == "direct":
        return "direct input (events written while loading)"
    return "train encoder" if model.coding == "stcb" else "rate encoder"


def layer_costs(model: golden.Model, g: golden.Result, rtl_samples: list | None = None) -> dict:
    """Where an inference's cost goes, per part of the core: the load, the encoder, every layer (its kind
    and shape) and the finish and readout, each with the mean per inference of every counter
    (golden.perf.COUNTERS: cycles, weight reads, syn_ops, spikes, ...).

    Every layer's and the encoder's figures are golden's per-layer counters (``g.layer_counters``,
    ``g.encoder_counters``); the load's and the finish and readout's cycles are docs/spec.md's formulas
    (golden.perf.breakdown_parts, which checks its own parts against the cycles counters). The rows must
    add up to golden's totals (``g.counters``) in every counter on every sample (``spikes``: the network
    layers', as the total counts them): otherwise LayerSumError names the counter, the sample and both
    figures. ``rtl_samples`` (sim.regress's ``RegressResult.samples`` of the same inputs) adds what the RTL
    reports of it, per sample: the totals and the per-layer and encoder spikes, which must be golden's."""
    B, P = g.batch, g.lanes
    parts = perf.breakdown_parts(model, P, g)

    def arr(v):
        return np.asarray(v, dtype=np.int64)

    def only_cycles(c):
        return {k: arr(c) if k == "cycles" else np.zeros(B, np.int64) for k in perf.COUNTERS}

    spatial_in = model.layers[0].kind != "dense"
    n_in = f"{'×'.join(map(str, model.input_shape))} inputs" if spatial_in else f"{model.n_in} inputs"
    enc_part = "input generator" if model.coding == "tsc" else "encode"
    rows = [("load", "input stream", n_in, only_cycles(parts["load"])),
            ("encoder", _encoder_kind(model), n_in, {k: arr(g.encoder_counters[k]) for k in perf.COUNTERS})]
    for li, (layer, c) in enumerate(zip(model.layers, g.layer_counters)):
        rows.append((f"layer {li}", layer.kind, _shape(layer), {k: arr(c[k]) for k in perf.COUNTERS}))
    rows.append(("finish + readout", "argmax, readout", f"{model.n_out} classes",
                 only_cycles(parts["finish"] + parts["readout"])))
    if not np.array_equal(rows[1][3]["cycles"], parts[enc_part]):
        raise LayerSumError(f"encoder cycles: the counter {rows[1][3]['cycles'].tolist()[:4]}... differ from the "
                            f"formula's {arr(parts[enc_part]).tolist()[:4]}...")
    for k in perf.COUNTERS:
        # the total of spikes counts the network layers only; the encoder's spikes are its input events
        summed = [c[k] for part, _, _, c in rows if not (k == "spikes" and part == "encoder")]
        have, want = sum(summed), arr(g.counters[k])
        if have.shape != want.shape or not np.array_equal(have, want):
            s = int(np.flatnonzero(have != want)[0]) if have.shape == want.shape else 0
            raise LayerSumError(f"per-layer {k} add up to {int(have[s])} on sample {s}, but the total is "
                                f"{int(want[s])} ({' + '.join(str(int(v[s])) for v in summed)})")
    rtl = None
    if rtl_samples is not None:
        by = {int(smp["sample"]): smp["counters_rtl"] for smp in rtl_samples}
        if sorted(by) != list(range(B)):
            raise ValueError(f"rtl_samples: samples {sorted(by)[:5]}... are not the {B} samples of the run")
        got = lambda name: np.array([by[i][name] for i in range(B)], dtype=np.int64)     # noqa: E731
        layer_ok = np.ones(B, bool)
        for li, c in enumerate(g.layer_counters):
            layer_ok &= got(f"spikes_l{li}") == arr(c["spikes"])
        layer_ok &= got("spikes_enc") == arr(g.encoder_counters["spikes"])
        tot_ok = np.ones(B, bool)
        for k in perf.COUNTERS:
            if k != "spikes":                  # the core reports it per layer (checked above)
                tot_ok &= got(k) == arr(g.counters[k])
        rtl = {"samples": B, "per_layer_spikes_equal": int(layer_ok.sum()), "totals_equal": int(tot_ok.sum())}
    mean_cycles = float(arr(g.counters["cycles"]).mean())
    out_rows = []
    for part, kind, shape, c in rows:
        d = {"part": part, "kind": kind, "shape": shape, **{k: float(c[k].mean()) for k in perf.COUNTERS}}
        d["cycles_share"] = d["cycles"] / mean_cycles
        out_rows.append(d)
    return {"network": network_name(model), "coding": model.coding, "T": model.T, "lanes": P, "samples": B,
            "rows": out_rows, "totals": {k: float(arr(g.counters[k]).mean()) for k in perf.COUNTERS},
            "check": {"sums_equal_totals": True, "counters": list(perf.COUNTERS), "samples": B, "rtl": rtl}}


def layer_costs_markdown(t: dict) -> str:
    """The table of :func:`layer_costs` and what its check found."""
    lines = ["| part | kind | shape | cycles | share of cycles | weight reads | syn_ops | spikes |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in t["rows"]:
        spk = "" if r["part"] in ("load", "finish + readout") else (
            f"{r['spikes']:.1f}" + (" in" if r["part"] == "encoder" else ""))
        lines.append(f"| {r['part']} | {r['kind']} | {r['shape']} | {r['cycles']:.1f} | "
                     f"{100 * r['cycles_share']:.1f}% | {r['weight_reads']:.1f} | {r['syn_ops']:.1f} | {spk} |")
    tot = t["totals"]
    lines.append(f"| **total** | | | **{tot['cycles']:.1f}** | 100% | **{tot['weight_reads']:.1f}** | "
                 f"**{tot['syn_ops']:.1f}** | **{tot['spikes']:.1f}** |")
    ck = t["check"]
    text = (f"Check: on each of the {ck['samples']} samples the rows add up to golden's totals in all "
            f"{len(ck['counters'])} counters (spikes: the network layers'; the encoder's \"in\" are its input "
            f"spikes or events).")
    if ck.get("rtl"):
        rt = ck["rtl"]
        text += (f" The RTL (sim.regress) reported these totals on {rt['totals_equal']}/{rt['samples']} samples and "
                 f"these per-layer and encoder spikes on {rt['per_layer_spikes_equal']}/{rt['samples']}; it does "
                 f"not count cycles or weight reads per layer.")
    return "\n".join(lines + ["", text])


def build_report(name: str, model: golden.Model, g: golden.Result, y: np.ndarray, regress_summary: dict | None,
                 metrics: dict | None, clock_mhz: float = 100.0, clock_source: str = "assumed",
                 rtl_samples: list | None = None) -> dict:
    """``clock_source`` says where ``clock_mhz`` comes from: "assumed", or the hw.synth result whose
    measured Fmax it is (latency is quoted at the measured Fmax whenever one exists). ``rtl_samples``
    (sim.regress's samples of the same inputs) adds the RTL's side to the per-layer cost's check."""
    mc = {k: float(v.mean()) for k, v in g.counters.items()}
    cycles = mc["cycles"]
    layers = []
    for li, (layer, c) in enumerate(zip(model.layers, g.layer_counters)):
        sp = float(c["spikes"].mean())
        layers.append({"layer": li, "n_in": layer.n_in, "n_out": layer.n_out,
                       "spikes": sp, "sparsity": 1.0 - sp / (layer.n_out * model.T),
                       **{k: float(c[k].mean()) for k in ("weight_reads", "syn_ops", "state_reads", "state_writes",
                                                          "cycles")}})
    enc_sp = float(g.encoder_counters["spikes"].mean())
    ladder = {
        "float": metrics.get("float_accuracy") if metrics else None,
        "quantized": metrics.get("quant_accuracy") if metrics else None,
        "golden": float((g.predictions == y).mean()),
        "rtl": regress_summary.get("rtl_accuracy") if regress_summary else None,
    }
    costs = {"name": name, "title": name, **layer_costs(model, g, rtl_samples)}
    return {
        "name": name, "network": network_name(model), "model": model.meta(), "lanes": g.lanes, "samples": int(len(y)),
        "accuracy": ladder,
        "agreement": None if not regress_summary else {
            "matching": regress_summary["matching_samples"], "samples": regress_summary["samples"],
            "mismatches_by_field": regress_summary["mismatches_by_field"],
            "quant_vs_golden": metrics.get("golden_agreement") if metrics else None},
        "per_inference": {**mc, "latency_us": cycles / clock_mhz, "throughput_per_s": clock_mhz * 1e6 / cycles,
                          "clock_mhz": clock_mhz, "clock_source": clock_source, "encoder_spikes": enc_sp,
                          "input_sparsity": 1.0 - enc_sp / (model.n_in * model.T) if model.encoding == "rate" else None,
                          "cycle_efficiency": (mc["weight_reads"] + mc["state_writes"]) / cycles},
        "layers": layers,
        "cycle_breakdown": cycle_breakdown(model, g),
        "layer_costs": [costs],
        "rtl": None if not regress_summary else {
            k: regress_summary.get(k) for k in ("sim_seconds", "samples_per_s", "simulated_cycles_per_s",
                                               "build_seconds", "build_cached", "stall_prob")},
        "training": None if not metrics else {k: metrics.get(k) for k in ("epochs", "seed", "train_seconds")},
    }


def clock_phrase(pi: dict) -> str:
    """"the measured Fmax 112.2 MHz" or "an assumed 100 MHz": a reader must see which one a latency used."""
    src = pi.get("clock_source", "assumed")
    if src == "assumed":
        return f"an assumed {pi['clock_mhz']:.0f} MHz"
    if src == "--clock-mhz":
        return f"{pi['clock_mhz']:.1f} MHz (--clock-mhz)"
    return f"the measured Fmax {pi['clock_mhz']:.1f} MHz"


def _pct(v):
    return "n/a" if v is None else f"{100 * v:.2f}%"


def to_markdown(r: dict) -> str:
    a, pi = r["accuracy"], r["per_inference"]
    m = r["model"]
    lines = [f"# spikeforge report: {r['name']}", "",
             f"Model: {r['network']}, coding "
             f"{m['coding']}, encoding {m['encoding']}, T={m['T']}, readout {m['readout']}, "
             f"{m['weight_bits']}-bit weights, {m['v_bits']}-bit membranes; core with P={r['lanes']} lanes; "
             f"{r['samples']} test samples.", "",
             "## Accuracy ladder", "", "| float | quantized | golden | RTL |", "| --- | --- | --- | --- |",
             f"| {_pct(a['float'])} | {_pct(a['quantized'])} | {_pct(a['golden'])} | {_pct(a['rtl'])} |", ""]
    if r["agreement"]:
        ag = r["agreement"]
        bad = sum(ag["mismatches_by_field"].values())
        lines += ["## Agreement", "",
                  f"RTL vs golden: **{ag['matching']}/{ag['samples']}** samples identical in prediction, spike "
                  f"counts, membranes and all {len(ag['mismatches_by_field']) - 3} counters "
                  f"({bad} field mismatches)."]
        if ag.get("quant_vs_golden") is not None:
            lines.append(f"Quantized torch vs golden: agreement {ag['quant_vs_golden']:.4f}.")
        lines.append("")
    lines += ["## Per inference", "", "| metric | value |", "| --- | --- |",
              f"| cycles | {pi['cycles']:.1f} |",
              f"| latency at {clock_phrase(pi)} | {pi['latency_us']:.2f} µs |",
              f"| throughput at {clock_phrase(pi)} | {pi['throughput_per_s']:.0f} inferences/s |",
              f"| weight reads | {pi['weight_reads']:.1f} |",
              f"| state reads / writes | {pi['state_reads']:.1f} / {pi['state_writes']:.1f} |",
              f"| parameter reads | {pi['param_reads']:.1f} |",
              f"| event reads / writes | {pi['event_reads']:.1f} / {pi['event_writes']:.1f} |",
              f"| syn_ops | {pi['syn_ops']:.1f} |",
              f"| neuron updates | {pi['neuron_updates']:.1f} |",
              f"| spikes (network) | {pi['spikes']:.1f} |",
              f"| cycle efficiency (weight reads + state writes) / cycles | {pi['cycle_efficiency']:.3f} |", ""]
    lines += ["| layer | kind, shape | spikes | sparsity |", "| --- | --- | --- | --- |"]
    if pi.get("input_sparsity") is not None:
        lines.append(f"| encoder | {r['layer_costs'][0]['rows'][1]['shape']} | {pi['encoder_spikes']:.1f} | "
                     f"{100 * pi['input_sparsity']:.1f}% |")
    for l, c in zip(r["layers"], r["layer_costs"][0]["rows"][2:]):
        lines.append(f"| {l['layer']} | {c['kind']} {c['shape']} | {l['spikes']:.1f} | {100 * l['sparsity']:.1f}% |")
    for t in r["layer_costs"]:
        lines += ["", f"## Cost per layer: {t['title']} ({t['network']}, {t['coding']} coding, T={t['T']}, "
                      f"P={t['lanes']}; mean per inference over {t['samples']} samples)", "",
                  layer_costs_markdown(t)]
    lines += ["", "## Cycle breakdown (mean per inference)", "", "| part | cycles |", "| --- | --- |"]
    lines += [f"| {k} | {v:.1f} |" for k, v in r["cycle_breakdown"].items()]
    if r["rtl"]:
        rt = r["rtl"]
        build = "cached" if rt["build_cached"] else f"{rt['build_seconds']:.1f} s"
        lines += ["", f"RTL simulation (Verilator): {rt['sim_seconds']:.1f} s for {r['samples']} samples "
                      f"({rt['samples_per_s']:.1f} samples/s, {rt['simulated_cycles_per_s']:.0f} cycles/s); "
                      f"build {build}."]
    lines += ["", "Plots: `raster.png` (spikes of test sample 0, its label and the prediction), `cycles.png` "
                  "(cycle breakdown), `layers.png` (activity per neuron of every layer, encoder included), "
                  "`layers_cost.png` (cycles and weight reads per layer).", ""]
    return "\n".join(lines)


def _plots(out: Path, model: golden.Model, x: np.ndarray, y: np.ndarray, r: dict) -> dict:
    """The report's figures as {file name: matplotlib figure}; the caller saves them with the rest."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator
    figs = {}
    g1 = golden.run(model, x[:1], record=True)
    pred = int(g1.predictions[0])
    label = None if y is None or not len(y) else int(y[0])
    rows = []
    if model.coding == "tsc":   # ON (black) and OFF (red) events of the input and of every hidden layer
        rows.append(("input ON/OFF", g1.input_events[0]))
        rows += [(f"layer {i} ON/OFF", e[0]) for i, e in enumerate(g1.events[:-1])]
    else:
        if g1.input_spikes is not None:
            rows.append(("encoder", g1.input_spikes[0]))
        rows += [(f"layer {i}", s[0]) for i, s in enumerate(g1.spikes)]
    fig, axes = plt.subplots(len(rows) + 1, 1, figsize=(8, 1.6 + 1.6 * (len(rows) + 1)), sharex=False,
                             gridspec_kw={"height_ratios": [2] * len(rows) + [1.4]})
    axes = np.atleast_1d(axes)
    for ax, (name, s) in zip(axes, rows):
        t, n = np.nonzero(s)
        ax.scatter(t, n, s=8, marker="|", c=np.where(s[t, n] < 0, "tab:red", "k"))
        ax.set_ylabel(f"{name}\nneuron")
        ax.set_ylim(-1, s.shape[1])
        ax.set_xlim(-0.5, model.T - 0.5)
        ax.set_xticks(range(model.T))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes[len(rows) - 1].set_xlabel("time step")
    # the readout: what the last layer produced per class, the prediction and the label marked
    ax = axes[-1]
    n_out = model.layers[-1].n_out
    if model.readout == "count":
        vals, what = g1.counts[0], "spike count"
    else:
        vals, what = g1.membranes[0], "final membrane"
    colors = ["tab:green" if c == pred and c == label else "tab:red" if c == pred else
              "tab:blue" if c == label else "lightgray" for c in range(n_out)]
    ax.bar(range(n_out), vals, color=colors)
    for c, v in enumerate(vals):
        if v:
            ax.annotate(f"{int(v)}", (c, v), ha="center", va="bottom" if v > 0 else "top", fontsize=8)
    ax.margins(y=0.25)
    ax.set_xticks(range(n_out))
    ax.set_xlabel("class (green: predicted = label; red: predicted; blue: label)")
    ax.set_ylabel(f"readout:\n{what}")
    verdict = "" if label is None else (" (correct)" if pred == label else " (wrong)")
    fig.suptitle(f"Spike raster, test sample 0: label {label if label is not None else 'n/a'}, "
                 f"prediction {pred}{verdict}")
    fig.tight_layout()
    figs["raster.png"] = fig

    cb = {k: v for k, v in r["cycle_breakdown"].items() if v}    # parts that take no cycle only crowd the key
    fig, ax = plt.subplots(figsize=(8, 3.2))
    left = 0.0
    colors = plt.cm.tab20(np.linspace(0, 1, len(cb)))
    total = sum(cb.values())
    for (k, v), c in zip(cb.items(), colors):
        ax.barh([0], [v], left=left, color=c, label=f"{k}: {v:,.0f} ({100 * v / total:.0f}%)")
        left += v
    ax.set_yticks([])
    ax.set_xlabel("cycles per inference (mean over the test samples)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.28), ncol=2, fontsize=8)
    ax.set_title(f"Cycle breakdown, P={r['lanes']} ({left:,.0f} cycles per inference)")
    fig.subplots_adjust(bottom=0.3)
    figs["cycles.png"] = fig

    # activity per neuron (a layer of 10 and a layer of 128 compare only per neuron), encoder included
    tsc = model.coding == "tsc"
    unit = "events (ON + OFF)" if tsc else "spikes"
    top = 2 if tsc else model.T
    bars = []
    pi = r["per_inference"]
    if model.encoding != "direct":
        bars.append((f"{'input' if tsc else 'encoder'}\n{model.n_in} inputs", pi["encoder_spikes"] / model.n_in))
    for l in r["layers"]:
        if tsc and l["layer"] == len(r["layers"]) - 1:
            continue                   # the TSC readout layer emits no events
        bars.append((f"layer {l['layer']}\n{l['n_out']} neurons", l["spikes"] / l["n_out"]))
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    names = [b[0] for b in bars]
    vals = [b[1] for b in bars]
    ax.bar(names, vals, color="tab:blue", width=0.6)
    ax.axhline(top, color="gray", ls=":", lw=1)
    ax.annotate(f"at most {top} per neuron" + (" (an ON and an OFF)" if tsc else f" (one per step, T={model.T})"),
                (-0.4, top), ha="left", va="bottom", fontsize=8, color="gray")
    for i, v in enumerate(vals):
        ax.annotate(f"{v:.2f}\nsparsity {100 * (1 - v / top):.0f}%", (i, v), ha="center", va="bottom", fontsize=8)
    ax.set_ylim(0, top * 1.18)
    ax.set_ylabel(f"{unit} per neuron per inference")
    ax.set_title(f"Activity per layer (mean over {r['samples']} test samples)")
    fig.tight_layout()
    figs["layers.png"] = fig
    figs["layers_cost.png"] = layer_cost_plot(r["layer_costs"])
    return figs


def layer_cost_plot(tables: list):
    """Cycles and weight reads per part of the core (:func:`layer_costs`), one panel per model, bars on a
    log axis when the largest bar is more than 20 times the smallest; returns the matplotlib figure."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(len(tables), 1, figsize=(max(7.0, 1.5 * max(len(t["rows"]) for t in tables)),
                                                      3.9 * len(tables)), squeeze=False)
    from .compare import fmt
    for ax, t in zip(axes[:, 0], tables):
        rows = t["rows"]
        x = np.arange(len(rows))
        vals = [v for r in rows for v in (r["cycles"], r["weight_reads"]) if v > 0]
        log = bool(vals) and max(vals) > 20 * min(vals)
        for off, key, label, color in ((-0.2, "cycles", "cycles", "tab:blue"),
                                       (0.2, "weight_reads", "weight reads", "tab:orange")):
            xs = [i + off for i, r in enumerate(rows) if r[key] > 0]     # a log axis has no place for 0
            hs = [r[key] for r in rows if r[key] > 0]
            ax.bar(xs, hs, width=0.4, color=color, label=label)
            for xi, h in zip(xs, hs):
                ax.annotate(fmt(h), (xi, h), ha="center", va="bottom", fontsize=7)
        if log:
            ax.set_yscale("log")
            ax.set_ylim(top=max(vals) * 4)
        else:
            ax.set_ylim(0, (max(vals) if vals else 1) * 1.18)
        ax.set_xticks(x, [f"{r['part']}\n{r['kind']}\n{r['shape']}" for r in rows], fontsize=7)
        ax.set_ylabel("per inference" + (" (log)" if log else ""))
        if any(r["weight_reads"] == 0 for r in rows):
            ax.set_xlabel("no weight-read bar: the part reads no weight", fontsize=7)
        ax.legend(fontsize=8, loc="upper left")
        ax.set_title(f"Cost per layer: {t['title']} ({t['network']}, {t['coding']} T={t['T']}, P={t['lanes']}; "
                     f"mean over {t['samples']} samples)", fontsize=9)
    fig.tight_layout()
    return fig


def write_report(out_dir, name: str, model: golden.Model, x: np.ndarray, y: np.ndarray, *, lanes: int,
                 regress_summary: dict | None = None, metrics: dict | None = None, clock_mhz: float = 100.0,
                 clock_source: str = "assumed",
                 comparison: list | None = None, comparison_note: str = "", extra_markdown: str = "",
                 extra_json: dict | None = None, extra_files: dict | None = None, stem: str = "report",
                 rtl_samples: list | None = None, more_layer_costs: list | None = None) -> dict:
    """Write STEM.md, STEM.json, the plots and ``extra_files`` ({name: text}) into ``out_dir``: all of
    them or none. With a stem other than ``report`` the plots are named ``STEM_<plot>.png``.
    ``rtl_samples``: sim.regress's samples of this model on ``x`` (the per-layer table's RTL check);
    ``more_layer_costs``: :func:`layer_costs` tables of other models (each with a ``title``), tabulated
    and plotted after this model's."""
    import matplotlib.pyplot as plt
    out = Path(out_dir)
    g = golden.run(model, x, lanes=lanes)
    r = build_report(name, model, g, y, regress_summary, metrics, clock_mhz, clock_source, rtl_samples)
    r["layer_costs"] += list(more_layer_costs or [])
    figs = _plots(out, model, x, y, r)
    md = to_markdown(r)
    if comparison:
        from .compare import comparison_markdown, comparison_plot, conv_notes
        figs["codings.png"] = comparison_plot(comparison)
        r["comparison"] = comparison
        r["comparison_note"] = comparison_note
        # the rows of another network (the demo's conv model) are said apart from the codings' notes
        r["conv_note"] = conv_notes(comparison)
        note = "\n".join(n for n in (comparison_note, r["conv_note"]) if n)
        md += ("\n## Coding comparison (digits test split, P=%d, every figure counted by the RTL)\n\n" % lanes
               + comparison_markdown(comparison, note) + "\n\nPlot: `codings.png`.\n")
    if stem != "report":
        figs = {f"{stem}_{k}": v for k, v in figs.items()}
    r["plots"] = list(figs)
    if extra_markdown:
        md += "\n" + extra_markdown.strip() + "\n"
    if extra_json:
        r.update(extra_json)
    try:
        with OutputSet() as files:
            for fname, fig in figs.items():
                files.add(out / fname, lambda tmp, fig=fig: fig.savefig(tmp, dpi=110, format="png",
                                                                         bbox_inches="tight"))
            for fname, text in (extra_files or {}).items():
                files.add_text(out / fname, text)
            files.add_text(out / f"{stem}.json", json.dumps(r, indent=2))
            files.add_text(out / f"{stem}.md", md)
            files.commit()
    finally:
        for fig in figs.values():
            plt.close(fig)
    r["markdown"] = md
    return r


def main(argv=None) -> int:
    """``python -m sim.report``: the report of one model on a dataset split, optionally with the RTL
    regression's results (``sim.regress --json``) and the training metrics (``quant.train``'s NAME.json)."""
    import re

    from golden import datasets
    from golden.cli import (ArgumentParser, Output, UsageError, add_data_options, check_outputs, finite_float,
                            lanes_arg, main_output)
    p = ArgumentParser(prog="python -m sim.report", description=main.__doc__.splitlines()[0][4:])
    p.add_argument("--model", required=True, help="integer model file (.npz)")
    add_data_options(p)
    p.add_argument("--lanes", type=lanes_arg, default=8, help="hardware lanes P for the counters (default 8)")
    p.add_argument("--regress", default=None, help="sim.regress results JSON of this model (RTL rung)")
    p.add_argument("--metrics", default=None, help="quant.train metrics JSON (float and quantized rungs)")
    clk = p.add_mutually_exclusive_group()
    clk.add_argument("--synth", default=None, metavar="SYNTH.json",
                     help="hw.synth result of this very core (model and --lanes): latency at its measured Fmax")
    clk.add_argument("--clock-mhz", type=finite_float(0.0, lo_open=True, what="a clock in MHz > 0"), default=None,
                     help="clock for latency and throughput (default: an assumed 100 MHz, said so in the report)")
    p.add_argument("--out", required=True, metavar="FILE.json",
                   help="the report's JSON; FILE.md and the plots (FILE_raster.png, ...) go next to it")
    a = p.parse_args(argv)
    out = main_output("--out", a.out, ".json")
    check_outputs([Output("--out", out), Output("--out", out.with_suffix(".md"))])
    model = golden.load_model(a.model)

    def _json(path, what):
        if path is None:
            return None
        try:
            return json.loads(Path(path).read_text())
        except OSError as e:
            raise UsageError(f"--{what}: {path}: {e.strerror or e}") from None
        except ValueError:
            raise UsageError(f"--{what}: {path}: not JSON") from None
    reg = _json(a.regress, "regress")
    if reg is not None and not (isinstance(reg, dict) and isinstance(reg.get("summary"), dict)
                                and "matching_samples" in reg["summary"]):
        raise UsageError(f"--regress: {a.regress}: not a sim.regress results file")
    metrics = _json(a.metrics, "metrics")
    if metrics is not None and not isinstance(metrics, dict):
        raise UsageError(f"--metrics: {a.metrics}: not a quant.train metrics file")
    from sim.compare import ASSUMED_MHZ, fmax_from_synth
    clock_mhz, clock_source = (a.clock_mhz, "--clock-mhz") if a.clock_mhz is not None else (ASSUMED_MHZ, "assumed")
    if a.synth is not None:
        if not Path(a.synth).is_file():
            raise UsageError(f"--synth: {a.synth}: no such file")
        fmax = fmax_from_synth(a.synth, model, a.lanes)
        if fmax is None:
            raise UsageError(f"--synth: {a.synth}: not a successful hw.synth result of this model at --lanes {a.lanes}")
        clock_mhz, clock_source = fmax["fmax_mhz"], fmax["file"]
    x, y = datasets.load(a.dataset, a.split, a.data_dir)
    if a.limit:
        x, y = x[:a.limit], y[:a.limit]
    golden.check_inputs(model, x)
    name = re.sub(r"\W", "_", Path(a.model).stem)
    r = write_report(out.parent, name, model, x, y, lanes=a.lanes, regress_summary=reg["summary"] if reg else None,
                     metrics=metrics, clock_mhz=clock_mhz, clock_source=clock_source, stem=out.stem)
    print(f"wrote {out} and {out.with_suffix('.md')} ({len(r['plots'])} plots), golden accuracy "
          f"{100 * r['accuracy']['golden']:.2f}% on {r['samples']} samples")
    return 0


if __name__ == "__main__":
    from golden.cli import guard
    guard("sim.report", main)
