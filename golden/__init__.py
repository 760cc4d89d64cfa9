"""spikeforge golden model: the bit-accurate integer reference for every other stage."""

from .model import (Dense, Conv2d, MaxPool2d, Model, ModelError, LayerWidths, CODINGS, ENCODINGS, READOUTS,
                    RESETS, LAYER_KINDS)
from .io import save_model, load_model, SCHEMA
from .engine import Result, InputError, run, check_inputs
from .compare import Mismatch, first_spike_mismatch, first_output_mismatch
from . import perf, datasets

__all__ = [
    "Dense", "Conv2d", "MaxPool2d", "Model", "ModelError", "LayerWidths", "CODINGS", "ENCODINGS", "READOUTS",
    "RESETS", "LAYER_KINDS",
    "save_model", "load_model", "SCHEMA",
    "Result", "InputError", "run", "check_inputs",
    "Mismatch", "first_spike_mismatch", "first_output_mismatch",
    "perf", "datasets",
]
