"""'netx': the fixed-point IR as a netx HDF5 file, run by lava-dl's netx.hdf5.Network in Lava
fixed_pt, against the emulator."""

from __future__ import annotations

import torch

from .base import Backend, Export, register
from .loihi import LOIHI


def write(net, path):
    from ..exporters.netx_export import write_netx

    return write_netx(net, path)


def make_runner(net, dtype, stats):
    from ..lava.target import LavaFixedTarget

    return LavaFixedTarget(net, netx=True)


def run_file(path, net, dtype, stats):
    from ..lava.target import LavaFixedTarget

    return LavaFixedTarget(net, netx=True, artifact=path)


register(Backend("netx", "netx HDF5 in Lava fixed_pt vs the emulator, aligned", make_runner,
                 exports=Export(".net", write), reference="emulator", fixed_point=True, chain=LOIHI,
                 dtype=torch.int64, profile="loihi2", slow=True, resets_to_zero=True,
                 bounded_decays=True, run_file=run_file))
