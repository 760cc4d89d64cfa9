"""spikeforge hardware: the Amaranth spiking core and its Verilog generator."""

from .config import CoreConfig, ConfigError
from .core import SpikeCore, COUNTER_NAMES

__all__ = ["CoreConfig", "ConfigError", "SpikeCore", "COUNTER_NAMES"]
