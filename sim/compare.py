"""The headline table: the same task under different codings, costs counted by the RTL.

Each row comes from a ``sim.regress`` run (so every figure is what the Verilated core counted, and
equal to golden's prediction), plus the model's own metrics.
"""

from __future__ import annotations

import numpy as np

import golden
from golden import perf

__all__ = ["weight_words", "comparison_row", "comparison_markdown", "comparison_plot"]


def weight_words(model: golden.Model, lanes: int) -> int:
    """Weight words of the core (each holds one input's weights for P neurons): Σ_l G_l · n_in_l."""
    return sum(perf.groups(l.n_out, lanes) * l.n_in for l in model.layers)


def comparison_row(label: str, model: golden.Model, samples: list, y: np.ndarray, lanes: int) -> dict:
    """One row from per-sample RTL counters (``RegressResult.samples``)."""
    ctr = {k: np.array([s["counters_rtl"][k] for s in samples], dtype=np.int64) for k in samples[0]["counters_rtl"]}
    emitted = sum(ctr[f"spikes_l{i}"] for i in range(len(model.layers)))
    pred = np.array([s["prediction_rtl"] for s in samples])
    words = weight_words(model, lanes)
    per_syn = ctr["weight_reads"] / words
    return {"label": label, "coding": model.coding, "T": model.T, "encoding": model.encoding,
            "accuracy": float((pred == y).mean()), "cycles": float(ctr["cycles"].mean()),
            "weight_reads": float(ctr["weight_reads"].mean()), "syn_ops": float(ctr["syn_ops"].mean()),
            "state_reads": float(ctr["state_reads"].mean()), "state_writes": float(ctr["state_writes"].mean()),
            "spikes": float(emitted.mean()),
            "buffer_words": float((ctr["event_reads"] + ctr["event_writes"]).mean()),
            "buffer_kind": "train" if model.coding == "stcb" else "event",
            "predictions": pred.tolist(),
            "input_events": float(ctr["spikes_enc"].mean()),
            "weight_reads_per_synapse": float(per_syn.mean()), "weight_reads_per_synapse_max": float(per_syn.max()),
            "weight_words": words, "samples": len(samples),
            "rtl_matching": sum(1 for s in samples if s["match"])}


def comparison_markdown(rows: list, ratio_note: str = "") -> str:
    lines = ["| coding | T | accuracy (RTL) | cycles | weight reads | syn_ops | spikes (tsc: ON+OFF events) | "
             "buffer words (R+W) | state reads / writes | weight reads per synapse (mean / max) | RTL = golden |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['label']} | {r['T']} | {100 * r['accuracy']:.2f}% | {r['cycles']:.0f} | "
                     f"{r['weight_reads']:.0f} | {r['syn_ops']:.0f} | {r['spikes']:.1f} | "
                     f"{r['buffer_words']:.0f} {r['buffer_kind']} | {r['state_reads']:.0f} / {r['state_writes']:.0f} | "
                     f"{r['weight_reads_per_synapse']:.3f} / {r['weight_reads_per_synapse_max']:.3f} | "
                     f"{r['rtl_matching']}/{r['samples']} |")
    if ratio_note:
        lines += ["", ratio_note]
    return "\n".join(lines)


def comparison_plot(rows: list, path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    labels = [r["label"] for r in rows]
    metrics = [("accuracy (%)", [100 * r["accuracy"] for r in rows]), ("cycles", [r["cycles"] for r in rows]),
               ("weight reads", [r["weight_reads"] for r in rows]),
               ("weight reads / synapse", [r["weight_reads_per_synapse"] for r in rows])]
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 3.4))
    colors = plt.cm.Set2(np.arange(len(rows)))
    for ax, (name, vals) in zip(axes, metrics):
        ax.bar(range(len(rows)), vals, color=colors)
        ax.set_xticks(range(len(rows)), labels, rotation=30, ha="right", fontsize=8)
        ax.set_title(name, fontsize=10)
        for i, v in enumerate(vals):
            ax.annotate(f"{v:.3g}", (i, v), ha="center", va="bottom", fontsize=7)
    fig.suptitle("Codings on digits (per inference, counted by the RTL)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
