"""SpikingJelly's own model zoo (spikingjelly.activation_based.model), built as its users build
it: PLIF neurons, multi-step mode, `num_classes=10`, BN running statistics that are not the
identity. The zoo imports torchvision only for `load_state_dict_from_url` (pretrained
weights, never used here); torchvision does not import beside this torch, so that one name is
stood in for while the zoo modules import (the standards allow this one stand-in).

Also a user's build module for `--model zoo_nets:sew18 --weights w.pth`."""

from __future__ import annotations

import sys
import types

import torch

T = 4


def _zoo():
    missing = "torchvision" not in sys.modules
    if missing:
        def no_downloads(*_a, **_k):
            raise RuntimeError("no weight downloads in tests")

        tv = types.ModuleType("torchvision")
        models = types.ModuleType("torchvision.models")
        utils = types.ModuleType("torchvision.models.utils")
        utils.load_state_dict_from_url = no_downloads
        models.utils, tv.models = utils, models
        sys.modules.update({"torchvision": tv, "torchvision.models": models,
                            "torchvision.models.utils": utils})
    try:
        from spikingjelly.activation_based.model import sew_resnet, spiking_resnet, spiking_vgg
    finally:
        if missing:
            for name in ("torchvision", "torchvision.models", "torchvision.models.utils"):
                sys.modules.pop(name, None)
    return sew_resnet, spiking_resnet, spiking_vgg


def build(arch: str, cnf: str | None = None, seed: int = 0) -> torch.nn.Module:
    """A zoo network in multi-step mode, with BN statistics and affine parameters drawn so
    that every layer spikes on MNIST digits (an untrained zoo net falls silent a few blocks
    deep, where a parity check would prove nothing)."""
    from spikingjelly.activation_based import functional, neuron, surrogate

    sew_resnet, spiking_resnet, spiking_vgg = _zoo()
    factory = {"sew_resnet18": sew_resnet.sew_resnet18, "sew_resnet34": sew_resnet.sew_resnet34,
               "sew_resnet50": sew_resnet.sew_resnet50,
               "spiking_resnet18": spiking_resnet.spiking_resnet18,
               "spiking_resnet34": spiking_resnet.spiking_resnet34,
               "spiking_vgg11_bn": spiking_vgg.spiking_vgg11_bn,
               "spiking_vgg16_bn": spiking_vgg.spiking_vgg16_bn}[arch]
    torch.manual_seed(seed)
    kw = {"cnf": cnf} if cnf else {}
    net = factory(spiking_neuron=neuron.ParametricLIFNode, surrogate_function=surrogate.ATan(),
                  detach_reset=True, num_classes=10, init_tau=2.0, **kw)
    functional.set_step_mode(net, "m")
    drive(net, seed)
    return net.eval()


def drive(net: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """BN statistics and affine parameters drawn (not the identity) with a positive shift,
    and classifier Linears without BN scaled up, so that an untrained net spikes in every
    layer."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.BatchNorm1d)):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=g) * 0.4 - 0.2)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 1.0)
                m.bias.copy_(torch.rand(n, generator=g) * 0.6 + 0.3)
            elif isinstance(m, torch.nn.Linear) and m.out_features != 10:
                m.weight.mul_(6.0)  # VGG's classifier (no BN): enough drive to spike
    return net


def images(n: int, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """The first n MNIST-5k test digits as 3 x size x size images (resized, grey in RGB)."""
    from snnexport.data import load_dataset

    ds = load_dataset("mnist5k")
    x = torch.nn.functional.interpolate(ds.x_test[:n], size=(size, size), mode="bilinear",
                                        align_corners=False)
    return x.repeat(1, 3, 1, 1).contiguous(), ds.y_test[:n]


def sew18():
    """A user's build function around the zoo call (for --model zoo_nets:sew18)."""
    return build("sew_resnet18", "ADD")


def digits32():
    """A user's data function: 100 MNIST-5k digits as 3 x 32 x 32 (for --data)."""
    x, y = images(100)
    return x, y
