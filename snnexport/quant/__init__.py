"""Fixed-point IR for Loihi 2 (calibration, file format) and its bit-accurate emulator."""

from .emulator import EmulatorStats, emulate
from .fixed import FixedLayer, FixedNet, QuantError, load_fixed, quantize, save_fixed
from .netx_import import read_netx  # (registers lava-dl's netx files with the front door)

__all__ = ["EmulatorStats", "FixedLayer", "FixedNet", "QuantError", "emulate", "load_fixed",
           "quantize", "read_netx", "save_fixed"]
