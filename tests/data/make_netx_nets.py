"""Writes small netx HDF5 files with lava-dl's own exporter (slayer blocks' `export_hdf5`), for
tests/test_netx_import.py. Run with the Lava environment's Python (lava-dl 0.6):

    .venv-lava/bin/python tests/data/make_netx_nets.py tests/data/netx

dense_cuba.net  input (64) -> dense 64->24 -> dense 24->10, CUBA with current decay > 0, biases
conv.net        input (1x8x8) -> conv 1->4 3x3 stride 2 pad 1 -> flatten -> dense 64->10
delay.net       dense 64->20 with axonal delays (delay=True) -> dense 20->10 with delays
Weights are deterministic (seeded, then scaled) so that every layer spikes on digits (8x8).
"""

import sys
from pathlib import Path

import h5py
import numpy as np
import torch
from lava.lib.dl import slayer


def cuba(threshold=1.0, current_decay=0.25, voltage_decay=0.1):
    return {"threshold": threshold, "current_decay": current_decay,
            "voltage_decay": voltage_decay, "requires_grad": False}


def export(blocks, path, in_shape, before=None):
    x = torch.zeros(2, *in_shape, 4)  # slayer: [N, C, (H, W,) T]; sets each neuron's shape
    for b in blocks:
        x = b(x)
    if before is not None:  # parameters whose shape the first forward pass sets
        before()
    with h5py.File(path, "w") as f:
        layer = f.create_group("layer")
        for i, b in enumerate(blocks):
            b.export_hdf5(layer.create_group(f"{i}"))


def scale_(block, gain, seed):
    g = torch.Generator().manual_seed(seed)
    syn = block.synapse
    with torch.no_grad():
        w = torch.randn(syn.weight.shape, generator=g) * gain
        syn.weight.copy_(w)


def main(out: Path):
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    # 1. dense CUBA with current decay, biases
    blocks = [slayer.block.cuba.Input(cuba(1.0, 0.2, 0.05)),
              slayer.block.cuba.Dense(cuba(1.0, 0.3, 0.1), 64, 24, weight_norm=False),
              slayer.block.cuba.Dense(cuba(1.0, 0.15, 0.2), 24, 10, weight_norm=False)]
    scale_(blocks[1], 0.5, 1)
    scale_(blocks[2], 0.9, 2)
    export(blocks, out / "dense_cuba.net", (64,))
    with h5py.File(out / "dense_cuba.net", "a") as f:  # biases as netx reads them (integers)
        f["layer/1/bias"] = np.arange(24) % 5 - 2
    # 2. conv
    blocks = [slayer.block.cuba.Input(cuba(1.0, 0.25, 0.1)),
              slayer.block.cuba.Conv(cuba(1.0, 0.2, 0.1), 1, 4, 3, stride=2, padding=1,
                                     weight_norm=False),
              slayer.block.cuba.Flatten(),
              slayer.block.cuba.Dense(cuba(1.0, 0.1, 0.15), 64, 10, weight_norm=False)]
    scale_(blocks[1], 1.2, 3)
    scale_(blocks[3], 0.8, 4)
    export(blocks, out / "conv.net", (1, 8, 8))
    # 3. axonal delays
    blocks = [slayer.block.cuba.Dense(cuba(1.0, 0.2, 0.1), 64, 20, weight_norm=False,
                                      delay=True),
              slayer.block.cuba.Dense(cuba(1.0, 0.3, 0.1), 20, 10, weight_norm=False,
                                      delay=True)]
    scale_(blocks[0], 0.9, 5)
    scale_(blocks[1], 1.0, 6)

    @torch.no_grad()
    def delays():
        for b, k, lo in ((blocks[0], 4, 0), (blocks[1], 3, 1)):
            d = b.delay.delay
            d.copy_((torch.arange(d.numel(), dtype=torch.float32) % k + lo).reshape(d.shape))
    export(blocks, out / "delay.net", (64,), delays)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
