"""'lava-fixed': the fixed-point IR as Lava fixed_pt LIF + Dense/Conv processes, against the
emulator."""

from __future__ import annotations

import torch

from .base import Backend, register
from .loihi import LOIHI


def make_runner(net, dtype, stats):
    from ..lava.target import LavaFixedTarget

    return LavaFixedTarget(net, netx=False)


def run_file(path, net, dtype, stats):
    """The fixed-point IR file at `path` (what 'fixed' exports) run by Lava's processes."""
    from ..lava.target import LavaFixedTarget

    return LavaFixedTarget(net, netx=False, artifact=path)


register(Backend("lava-fixed",
                 "Lava fixed_pt LIF + Dense/Conv processes vs the emulator, aligned",
                 make_runner, reference="emulator", fixed_point=True, chain=LOIHI,
                 dtype=torch.int64, profile="loihi2", slow=True, resets_to_zero=True,
                 bounded_decays=True, run_file=run_file, artifact_of="fixed"))
