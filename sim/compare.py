"""The headline table: the same task under different codings, costs counted by the RTL.

Each row comes from a ``sim.regress`` run (so every figure is what the Verilated core counted, and
equal to golden's prediction), plus the model's own metrics.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

import golden
from golden import perf
from hw.synth import same_netlist

__all__ = ["weight_words", "synapse_words", "comparison_row", "conv_notes", "comparison_markdown", "comparison_plot",
           "comparison_notes", "clocking", "fmax_from_synth", "synth_status", "synth_result", "result_fmax", "result_status", "fmt", "ASSUMED_MHZ"]

ASSUMED_MHZ = 100.0   # the clock a core's latency is given at when hw.synth has not measured its Fmax


def fmt(v: float) -> str:
    """The one number format of the comparison: 3,091 / 18 / 30.9 / 2.24 (whole numbers without decimals,
    others to three significant digits or more)."""
    a = abs(v)
    if a >= 100 or float(v).is_integer():
        return f"{v:,.0f}"
    return f"{v:.1f}" if a >= 10 else f"{v:.2f}"


def weight_words(model: golden.Model, lanes: int) -> int:
    """Weight words of the core (each holds P output units' weights for one input): a dense layer's
    G_l · n_in_l, a conv2d layer's Gc_l · C_in · K² (one word per channel group, input channel and kernel
    offset: hw.generate's layout), none for a maxpool2d layer."""
    words = 0
    for l in model.layers:
        if l.kind == "dense":
            words += perf.groups(l.n_out, lanes) * l.n_in
        elif l.kind == "conv2d":
            words += perf.groups(l.channels, lanes) * l.in_shape[0] * l.kernel ** 2
    return words


def synapse_words(model: golden.Model, lanes: int) -> int:
    """The weight words that one event of every input neuron of every layer reads, summed over the inputs
    (sim.claims' per-input count): a dense layer's G_l · n_in_l, equal to its weight words; a conv2d
    layer's Gc_l · nv(y, x) per input pixel and channel (each kernel offset through which it reaches the
    map), since a conv weight word serves every position. ``weight_reads / synapse_words`` is how often
    each synapse's weight is read per inference: once per event of its input neuron."""
    from .claims import _synapse_words     # the one definition (docs/spec.md section 4's weight reads)
    return int(sum(int(_synapse_words(l, lanes).sum()) for l in model.layers if l.has_neurons))


def comparison_row(label: str, model: golden.Model, samples: list, y: np.ndarray, lanes: int,
                   fmax: dict | None = None) -> dict:
    """One row from per-sample RTL counters (``RegressResult.samples``). ``fmax`` ({"fmax_mhz", "file"}, from
    an ``hw.synth`` result for this core) clocks the latency; without it the latency is at ASSUMED_MHZ."""
    ctr = {k: np.array([s["counters_rtl"][k] for s in samples], dtype=np.int64) for k in samples[0]["counters_rtl"]}
    emitted = sum(ctr[f"spikes_l{i}"] for i in range(len(model.layers)))
    pred = np.array([s["prediction_rtl"] for s in samples])
    words = synapse_words(model, lanes)
    per_syn = ctr["weight_reads"] / words
    return {"label": label, "arch": model.arch, "coding": model.coding, "T": model.T, "encoding": model.encoding,
            "lanes": lanes,
            "accuracy": float((pred == y).mean()), "cycles": float(ctr["cycles"].mean()),
            "weight_reads": float(ctr["weight_reads"].mean()), "syn_ops": float(ctr["syn_ops"].mean()),
            "state_reads": float(ctr["state_reads"].mean()), "state_writes": float(ctr["state_writes"].mean()),
            "spikes": float(emitted.mean()),
            "buffer_words": float((ctr["event_reads"] + ctr["event_writes"]).mean()),
            "buffer_kind": "train" if model.coding == "stcb" else "event",
            "predictions": pred.tolist(),
            "input_events": float(ctr["spikes_enc"].mean()),
            "weight_reads_per_synapse": float(per_syn.mean()), "weight_reads_per_synapse_max": float(per_syn.max()),
            "weight_words": weight_words(model, lanes), "synapse_words": words, "samples": len(samples),
            "rtl_matching": sum(1 for s in samples if s["match"]),
            **clocking(float(ctr["cycles"].mean()), fmax)}


def clocking(cycles: float, fmax: dict | None) -> dict:
    """Latency of ``cycles`` at the measured Fmax when there is one, else at the assumed clock."""
    clock = float(fmax["fmax_mhz"]) if fmax else ASSUMED_MHZ
    return {"clock_mhz": clock, "clock_measured": bool(fmax), "clock_source": fmax["file"] if fmax else "assumed",
            "latency_us": cycles / clock}


def synth_result(path, model: golden.Model, lanes: int) -> dict | None:
    """The ``hw.synth`` result JSON at ``path`` if it is of exactly this core (same model metadata, lanes
    and netlist, whatever its status), else None: a result for another core must never describe this
    one. Checking the netlist elaborates the core, so callers that need the Fmax and the status of one
    result load it once."""
    p = Path(path)
    try:
        d = json.loads(p.read_text()) if p.is_file() else None
    except (OSError, ValueError):
        return None
    if (not isinstance(d, dict) or d.get("lanes") != lanes
            or d.get("model_meta") != json.loads(json.dumps(model.meta())) or not same_netlist(d, model, lanes)):
        return None
    return {**d, "file": str(p)}


def result_fmax(d: dict | None) -> dict | None:
    """{"fmax_mhz", "file"} of a :func:`synth_result` whose status is ok, else None."""
    if d is None or d.get("status") != "ok" or not isinstance(d.get("fmax_mhz"), (int, float)):
        return None
    return {"fmax_mhz": float(d["fmax_mhz"]), "file": d["file"]}


def result_status(d: dict | None) -> str | None:
    """The status of a :func:`synth_result` ("ok", "does_not_fit: ...", ...), or None when there is none."""
    if d is None:
        return None
    if d.get("status") == "ok":
        return "ok"
    return f"{d.get('status')}" + (f": {d['error']}" if d.get("error") else "")


def fmax_from_synth(path, model: golden.Model, lanes: int) -> dict | None:
    """{"fmax_mhz", "file"} from an ``hw.synth`` result JSON for exactly this core, status ok, else None."""
    return result_fmax(synth_result(path, model, lanes))


def synth_status(path, model: golden.Model, lanes: int) -> str | None:
    """The status of an ``hw.synth`` result for exactly this core, or None when there is none."""
    return result_status(synth_result(path, model, lanes))


def _acc_phrase(a: dict, b: dict) -> str:
    pa, pb = f"{100 * a['accuracy']:.2f}%", f"{100 * b['accuracy']:.2f}%"
    return "at the same accuracy" if pa == pb else f"at {pa} against {pb} accuracy"


def comparison_notes(rows: list) -> str:
    """What the comparison shows, as Markdown bullets; every number is computed from ``rows`` (the demo's
    five cores), and accuracy differences are said, never hidden."""
    by = {r["label"]: r for r in rows}
    r8, r16, tsc = by.get("rate T=8"), by.get("rate T=16"), by.get("tsc T=17")
    st, k3 = by.get("stcb T=8 (re-targeted)"), by.get("stcb T=8, kernel 3")
    out = []
    if r8 and r16 and tsc:
        s8 = r8["state_reads"] + r8["state_writes"]
        s16 = r16["state_reads"] + r16["state_writes"]
        st_t = tsc["state_reads"] + tsc["state_writes"]
        out.append(
            f"- **TSC** reads each weight word at most {tsc['weight_reads_per_synapse_max']:.3f} times per inference "
            f"on any sample (the bound is 2, whatever T is), against {r16['weight_reads_per_synapse']:.3f} on "
            f"average (at most {r16['weight_reads_per_synapse_max']:.3f}) for rate coding at equal precision "
            f"(T=16, 16 levels): {r16['weight_reads'] / tsc['weight_reads']:.2f}x fewer weight reads and "
            f"{r16['cycles'] / tsc['cycles']:.2f}x fewer cycles, {_acc_phrase(tsc, r16)}. It computes exactly an "
            f"integer ANN (clipped floor), so it converts losslessly, but every neuron is updated at every step of "
            f"its window: {st_t:,.0f} state-memory words per inference, {st_t / s8:.1f}x rate T=8's and "
            f"{st_t / s16:.1f}x rate T=16's. Choose it when weight-memory traffic or latency dominates.")
    if r8 and st:
        out.append(
            f"- **STCB** processes whole spike trains: on the very same trained weights as rate T=8 it gives "
            f"{'identical' if st.get('same_predictions_as_rate_t8') else 'DIFFERENT'} predictions on all "
            f"{st['samples']} samples with {r8['weight_reads'] / st['weight_reads']:.2f}x fewer weight reads and "
            f"{r8['cycles'] / st['cycles']:.2f}x fewer cycles, and {st['state_reads'] + st['state_writes']:,.0f} "
            f"state-memory words per inference against {r8['state_reads'] + r8['state_writes']:,.0f}, at the price "
            f"of T-slot accumulators per lane (area grows with T). Choose it when the network is a rate-coded SNN "
            f"and throughput matters."
            + (f" Its optional learned kernel (3 taps) reached {100 * k3['accuracy']:.2f}% here, against "
               f"{100 * r8['accuracy']:.2f}% without." if k3 else ""))
    if r8:
        out.append("- **Rate coding** is the baseline: the smallest core (one accumulator per lane), spikes "
                   "processed as they come, and the only choice when latency must be hidden behind a stream of "
                   "time steps.")
    return "\n".join(out)


def conv_notes(rows: list) -> str:
    """What the rows of another network than the first row's (the demo's conv model) show against the
    first row (the dense rate T=8 core), as Markdown bullets computed from ``rows``."""
    if not rows:
        return ""
    base = rows[0]
    out = []
    for r in rows[1:]:
        if r.get("arch") == base.get("arch"):
            continue
        out.append(
            f"- **{r['label']}**: {100 * r['accuracy']:.2f}% against {100 * base['accuracy']:.2f}% for the dense "
            f"{base['label']} core, at {r['cycles'] / base['cycles']:.2f}x its cycles ({fmt(r['cycles'])} against "
            f"{fmt(base['cycles'])}) and {r['weight_reads'] / base['weight_reads']:.2f}x its weight reads per "
            f"inference. A conv weight word serves every output position, so the core holds "
            f"{r['weight_words']:,} weight words for {r['synapse_words']:,} synapse words (one per input, "
            f"kernel offset that reaches the map and channel group), each read "
            f"{r['weight_reads_per_synapse']:.3f} times per inference on average. Where its cycles go: the "
            f"per-layer table and `layers_cost.png`.")
    return "\n".join(out)


def comparison_markdown(rows: list, ratio_note: str = "") -> str:
    lines = ["| coding | T | accuracy (RTL) | cycles | latency | weight reads | "
             "weight reads per synapse (mean / max) | "
             "state reads / writes | syn_ops | spikes (tsc: ON+OFF events) | buffer words (R+W) | RTL = golden |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lat = (f"{r['latency_us']:.2f} µs at {r['clock_mhz']:.1f} MHz"
               + ("" if r.get("clock_measured") else " (assumed)")) if "latency_us" in r else "n/a"
        lines.append(f"| {r['label']} | {r['T']} | {100 * r['accuracy']:.2f}% | {r['cycles']:.0f} | {lat} | "
                     f"{r['weight_reads']:.0f} | "
                     f"{r['weight_reads_per_synapse']:.3f} / {r['weight_reads_per_synapse_max']:.3f} | "
                     f"{r['state_reads']:.0f} / {r['state_writes']:.0f} | {r['syn_ops']:.0f} | {r['spikes']:.1f} | "
                     f"{r['buffer_words']:.0f} {r['buffer_kind']} | {r['rtl_matching']}/{r['samples']} |")
    if ratio_note:
        lines += ["", ratio_note]
    return "\n".join(lines)


def comparison_plot(rows: list):
    """The codings side by side: returns the matplotlib figure (the caller saves it)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    labels = [r["label"].replace(" (", "\n(").replace(", ", "\n") for r in rows]
    colors = plt.cm.Set2(np.arange(len(rows)))
    fig, axes = plt.subplots(2, 3, figsize=(max(13.0, 2.7 * len(rows)), 7.2))     # room for each label
    axes = axes.ravel()
    x = np.arange(len(rows))

    def bars(ax, vals, title, text=None, ylim=None):
        ax.bar(x, vals, color=colors)
        ax.set_title(title, fontsize=10)
        ax.set_xticks(x, labels, fontsize=7)
        for i, v in enumerate(vals):
            ax.annotate(text(i, v) if text else fmt(v), (i, v), ha="center", va="bottom", fontsize=8)
        if ylim:
            ax.set_ylim(*ylim)
        else:
            ax.set_ylim(0, max(vals) * 1.18 if max(vals) > 0 else 1)

    acc = [100 * r["accuracy"] for r in rows]
    pad = max(0.5, 0.6 * (max(acc) - min(acc)))
    # a 0-100 axis makes 96.9% and 97.8% look the same; the zoomed axis is said in the title
    bars(axes[0], acc, "accuracy (%)\n(axis zoomed)", lambda i, v: f"{v:.2f}%",
         (max(0.0, min(acc) - pad), min(100.0, max(acc) + pad)))
    bars(axes[1], [r["cycles"] for r in rows], "cycles\nper inference")
    lat = [r.get("latency_us", r["cycles"] / 100.0) for r in rows]
    def lat_text(i, v):
        r = rows[i]
        failed = r.get("synth_status") not in (None, "ok")     # e.g. does_not_fit: no Fmax to give
        return f"{fmt(v)} µs\n{fmt(r.get('clock_mhz', 100.0))} MHz" + (
            f"\n({r['synth_status'].split(':')[0]})" if failed else "")

    bars(axes[2], lat, "latency per inference (µs)\nat each core's clock", lat_text)
    for i, r in enumerate(rows):
        if not r.get("clock_measured"):
            axes[2].patches[i].set_hatch("//")
    measured = [r for r in rows if r.get("clock_measured")]
    axes[2].set_xlabel("clock: each core's Fmax measured by hw.synth" if len(measured) == len(rows) else
                       f"clock: the Fmax measured by hw.synth; hatched: not measured, {fmt(ASSUMED_MHZ)} MHz assumed",
                       fontsize=7)
    bars(axes[3], [r["weight_reads"] for r in rows], "weight-memory reads\nper inference")
    mean = [r["weight_reads_per_synapse"] for r in rows]
    mx = [r["weight_reads_per_synapse_max"] for r in rows]
    ax = axes[4]
    ax.bar(x, mean, color=colors)
    ax.scatter(x, mx, color="k", marker="_", s=300, zorder=3)
    for i in range(len(rows)):
        ax.annotate(f"{fmt(mean[i])}\nmax {fmt(mx[i])}", (i, mx[i]), xytext=(0, 3), textcoords="offset points",
                    ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_ylim(0, max(mx) * 1.3)
    ax.set_title("weight reads per synapse\n(bar: mean, tick: max over the samples)", fontsize=10)
    ax = axes[5]
    sr = [r["state_reads"] for r in rows]
    sw = [r["state_writes"] for r in rows]
    ax.bar(x, sr, color=colors, label="reads")
    ax.bar(x, sw, bottom=sr, color=colors, hatch="..", edgecolor="white", label="writes (dotted)")
    for i in range(len(rows)):
        ax.annotate(f"{fmt(sr[i])} + {fmt(sw[i])}", (i, sr[i] + sw[i]), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_ylim(0, max(a + b for a, b in zip(sr, sw)) * 1.18)
    ax.set_title("neuron-state memory words\nper inference (reads + writes)", fontsize=10)
    ax.legend(fontsize=7, loc="upper left")
    other = any(r.get("arch") != rows[0].get("arch") for r in rows)
    fig.suptitle(f"The same task under every coding{' (and another network)' if other else ''}, "
                 f"P={rows[0].get('lanes', '')}: per inference, counted by the RTL on {rows[0]['samples']} test samples",
                 fontsize=11)
    fig.tight_layout()
    return fig
