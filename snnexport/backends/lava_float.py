"""'lava-float': the folded IR as Lava floating_pt LIF + Dense/Conv processes (run in the Lava
environment), outputs aligned for the one-step-per-hop delay."""

from __future__ import annotations

import torch

from .base import Backend, register


def make_runner(folded, dtype, stats):
    from ..lava.target import LavaFloatTarget

    return LavaFloatTarget(folded)


register(Backend("lava-float", "Lava floating_pt, aligned for the Dense delays", make_runner,
                 dtype=torch.float64, profile="loihi2", slow=True, resets_to_zero=True))
