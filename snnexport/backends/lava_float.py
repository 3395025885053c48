"""'lava-float': the folded IR as Lava floating_pt LIF + Dense/Conv processes (run in the Lava
environment), outputs aligned for the one-step-per-hop delay."""

from __future__ import annotations

import torch

from .base import FOLDED, Backend, register


def make_runner(folded, dtype, stats):
    from ..lava.target import LavaFloatTarget

    return LavaFloatTarget(folded)


def run_file(path, folded, dtype, stats):
    """The folded IR file at `path` run by Lava's processes (the runner reads the file)."""
    from ..lava.target import LavaFloatTarget

    return LavaFloatTarget(folded, artifact=path)


register(Backend("lava-float", "Lava floating_pt, aligned for the Dense delays", make_runner,
                 dtype=torch.float64, profile="loihi2", slow=True, resets_to_zero=True,
                 run_file=run_file, artifact_of=FOLDED))
