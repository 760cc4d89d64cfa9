"""Named training recipes for ``python -m quant.train`` (``--recipe``); pure Python, no torch.

A recipe supplies the training flags that a newcomer should not have to know. The ``conv`` recipe is
the one docs/quant.md ("Measured (conv)") documents and quant.bench runs: label smoothing 0.1 for every
coding, 60 epochs for the rate code and 40 for the others, one-pixel shifts for the multi-step codes
(they make the single-step direct network underfit), BatchNorm for TSC, and the membrane readout for
the direct encoding. ``auto`` (the default) picks ``conv`` for an architecture with a conv layer and
``none`` (the plain defaults) otherwise. A flag the user gives always wins over the recipe's value.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

__all__ = ["RECIPES", "PLAIN", "CONV", "Settings", "recipe_for", "resolve", "describe"]

RECIPES = ("auto", "conv", "none")


@dataclass(frozen=True)
class Settings:
    """The flags a recipe sets. ``readout=None`` leaves the coding's own default (count, or membrane for tsc)."""
    epochs: int
    augment: int
    label_smoothing: float
    bn: bool
    readout: str | None = None


# the plain defaults (what --recipe none, and dense archs under auto, get)
PLAIN = Settings(epochs=20, augment=0, label_smoothing=0.0, bn=False)

# docs/quant.md, "Measured (conv)": the rows tuned on digits 16c3-mp2-32c3-10, seed 0, checked on seeds 1, 2
CONV = {
    "rate": Settings(epochs=60, augment=1, label_smoothing=0.1, bn=False),          # rate encoding, rate or stcb
    "direct": Settings(epochs=40, augment=0, label_smoothing=0.1, bn=False, readout="membrane"),
    "tsc": Settings(epochs=40, augment=1, label_smoothing=0.1, bn=True),
}

# the flag each field comes from, for the summary line and --help
FLAGS = {"epochs": "--epochs", "augment": "--augment", "label_smoothing": "--label-smoothing", "bn": "--bn",
         "readout": "--readout"}


def recipe_for(name: str, *, conv_arch: bool, coding: str, encoding: str) -> tuple[str, Settings]:
    """The recipe ``name`` resolves to (``auto`` -> ``conv`` when the arch has a conv layer) and its settings
    for this coding and input encoding."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose from {', '.join(RECIPES)}")
    if name == "auto":
        name = "conv" if conv_arch else "none"
    if name == "none":
        return name, PLAIN
    if coding == "tsc":
        return name, CONV["tsc"]
    return name, CONV["direct" if encoding == "direct" else "rate"]


def resolve(settings: Settings, given: dict) -> tuple[Settings, dict]:
    """Fill every field the user did not give (``None`` in ``given``) from ``settings``.

    Returns the effective settings and the fields taken from the recipe (those the user gave are not
    among them), in field order."""
    taken = {f.name: getattr(settings, f.name) for f in fields(Settings) if given.get(f.name) is None}
    return Settings(**{f.name: given[f.name] if given.get(f.name) is not None else getattr(settings, f.name)
                       for f in fields(Settings)}), taken


def describe(taken: dict) -> str:
    """``--epochs 60 --augment 1 --label-smoothing 0.1``: the recipe's values as flags (defaults left out)."""
    parts = []
    for k, v in taken.items():
        if k == "bn":
            parts += ["--bn"] if v else []
        elif v is not None and v != getattr(PLAIN, k):
            parts += [FLAGS[k], str(v)]
    return " ".join(parts)
