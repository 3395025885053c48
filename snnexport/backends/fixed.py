"""'fixed': snnexport's bit-accurate emulator of the fixed-point IR, against the float model
(its mismatches are put down to quantisation)."""

from __future__ import annotations

import torch

from .base import Backend, Export, register
from .loihi import LOIHI


def write(net, path):
    from ..quant import save_fixed

    return save_fixed(net, path)


def make_runner(net, dtype, stats):
    from ..quant.emulator import emulate

    def run(xb):
        return emulate(net, xb, stats)
    return run


def run_file(path, net, dtype, stats):
    """The emulator running the fixed-point IR file at `path`, as read back from disk."""
    from ..quant import load_fixed

    return make_runner(load_fixed(path), dtype, stats)


register(Backend("fixed", "snnexport's bit-accurate emulator of the fixed-point IR",
                 make_runner, exports=Export(".fixed.npz", write), fixed_point=True, chain=LOIHI,
                 dtype=torch.int64, profile="loihi2", mismatch_cause="quantisation",
                 resets_to_zero=True, run_file=run_file))
