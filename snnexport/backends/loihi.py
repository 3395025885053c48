"""Loihi 2's chain (the 'fixed', 'onnx-fixed', 'lava-fixed' and 'netx' targets): the folded
graph quantised to the fixed-point IR (quant/: calibrated on training inputs, decays grouped
per layer with --decays K) and snnexport's bit-accurate emulator of it as the reference of the
targets compared with the emulator."""

from __future__ import annotations

from .base import Chain, fixed_point


def reference_runner(net, stats):
    from ..quant.emulator import emulate

    def run(xb):
        return emulate(net, xb, stats)
    return run


def thresholds(net) -> dict:
    """A tie is read half a mantissa step above the fixed threshold (what the emulator fires
    at)."""
    from ..quant.emulator import fixed_threshold

    return {lay.name: fixed_threshold(lay) + 0.5 / lay.scale for lay in net.layers
            if not lay.pool}


def new_stats():
    from ..quant.emulator import EmulatorStats

    return EmulatorStats()


LOIHI = Chain("loihi2", fixed_point, reference_runner, thresholds, new_stats,
              "fixed point for Loihi 2")
