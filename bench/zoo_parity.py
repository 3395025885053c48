"""SpikingJelly's model zoo through snnexport: every variant, as its users build it (PLIF,
multi-step, BN statistics that are not the identity: tests/zoo_nets.py), checked on N
MNIST-5k digits resized to 3 x 32 x 32 against SpikingJelly's own forward, on the float
targets (reference, NIR, ONNX) and the integer ONNX graph against the emulator.

    .venv/bin/python bench/zoo_parity.py [--samples 100] [--targets reference,nir,onnx]
                                         [--nets sew_resnet18:ADD,...]

Prints one row per net and target: exact or not, unexplained mismatches, layers that never
spiked, spikes in the quietest layer, agreement of the predictions, seconds. The tests run a
representative subset (tests/test_zoo.py); this runs the whole zoo (tens of minutes)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

NETS = ["sew_resnet18:ADD", "sew_resnet18:AND", "sew_resnet18:IAND", "sew_resnet34:ADD",
        "sew_resnet50:ADD", "spiking_resnet18", "spiking_resnet34", "spiking_vgg11_bn",
        "spiking_vgg16_bn"]
PLN = {"MNISTNet": (1, 28, 28), "FashionMNISTNet": (1, 28, 28), "NMNISTNet": (2, 34, 34),
       "CIFAR10Net": (3, 32, 32)}


def main(argv=None) -> int:
    import torch
    from zoo_nets import T, build, drive, images

    from snnexport.check import ReferenceRuns, check, from_spikingjelly

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=100)
    p.add_argument("--targets", default="reference,nir,onnx,onnx-fixed")
    p.add_argument("--nets", default=",".join(NETS + list(PLN)))
    args = p.parse_args(argv)
    x, y = images(args.samples)
    print(f"{'net':<20}{'target':<12}{'exact':<7}{'unexpl':>8}{'silent':>8}{'min spikes':>12}"
          f"{'agree':>7}{'s':>8}")
    for spec in args.nets.split(","):
        arch, _, cnf = spec.partition(":")
        if arch in PLN:  # parametric_lif_net: (C, H, W) of its data set, random inputs
            from spikingjelly.activation_based import functional, neuron
            from spikingjelly.activation_based.model import parametric_lif_net as pln

            torch.manual_seed(0)
            net = drive(getattr(pln, arch)(channels=32,
                                           spiking_neuron=neuron.ParametricLIFNode))
            functional.set_step_mode(net, "m")
            shape = PLN[arch]
            if shape[0] == 2:  # event frames: random 0/1 events
                g = torch.Generator().manual_seed(0)
                xs = (torch.rand(args.samples, *shape, generator=g) < 0.3).float()
            else:  # the digits, at the net's input size and channels
                xs, _ = images(args.samples, shape[1])
                xs = xs[:, :shape[0]].contiguous()
            ys = y
        else:
            net, shape, xs, ys = build(arch, cnf or None), (3, 32, 32), x, y
        model = from_spikingjelly(net.eval(), shape, T, name=spec)
        runs = ReferenceRuns()
        for target in args.targets.split(","):
            t0 = time.perf_counter()
            r = check(model, target, inputs=(xs, ys), samples=args.samples,
                      reference_runs=runs)
            print(f"{spec:<20}{target:<12}{str(r.exact):<7}"
                  f"{sum(lp.unexplained for lp in r.layers):>8}{len(r.silent_layers):>8}"
                  f"{min(lp.spikes_reference for lp in r.layers):>12}{r.agree:>7}"
                  f"{time.perf_counter() - t0:>8.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
