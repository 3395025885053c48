"""Fixed-point IR for Loihi 2 (calibration, file format) and its bit-accurate emulator."""

from .emulator import EmulatorStats, emulate
from .fixed import FixedLayer, FixedNet, QuantError, load_fixed, quantize, save_fixed

__all__ = ["EmulatorStats", "FixedLayer", "FixedNet", "QuantError", "emulate", "load_fixed",
           "quantize", "save_fixed"]
