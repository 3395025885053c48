"""How long importing and folding a full-width paper net takes (issue: CIFAR10-DVS < 2 s).

    .venv/bin/python bench/fold_speed.py [--repeat 5]

Builds SpikingJelly's CIFAR10DVSNet (channels=128, 2x128x128 input) with random weights and
random BN statistics, then times import (SpikingJelly -> IR) and fold (IR -> hardware-native)
separately, best of --repeat runs, and the folded IR's file write.
"""

import argparse
import tempfile
import time
from pathlib import Path

import torch
from spikingjelly.activation_based import neuron, surrogate
from spikingjelly.activation_based.model import parametric_lif_net as pln

from snnexport.importers.spikingjelly import import_spikingjelly
from snnexport.ir import save_ir
from snnexport.passes.fold import fold


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    torch.manual_seed(0)
    net = pln.CIFAR10DVSNet(channels=128, spiking_neuron=neuron.ParametricLIFNode,
                            surrogate_function=surrogate.ATan(), detach_reset=True)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    params = sum(p.numel() for p in net.parameters())
    t_import, t_fold, t_save = [], [], []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        g = import_spikingjelly(net, (2, 128, 128), 16)
        t1 = time.perf_counter()
        folded = fold(g)
        t2 = time.perf_counter()
        with tempfile.TemporaryDirectory() as d:
            save_ir(folded, Path(d) / "net.snnir")
        t3 = time.perf_counter()
        t_import.append(t1 - t0)
        t_fold.append(t2 - t1)
        t_save.append(t3 - t2)
    both = min(a + b for a, b in zip(t_import, t_fold, strict=True))
    print(f"CIFAR10DVSNet channels=128, {params:,} parameters, best of {args.repeat}:")
    print(f"  import {min(t_import):.3f} s   fold {min(t_fold):.3f} s   "
          f"import+fold {both:.3f} s   write .snnir {min(t_save):.3f} s")
    print(f"  import+fold / 2 s budget = {both / 2:.3f}")


if __name__ == "__main__":
    main()
