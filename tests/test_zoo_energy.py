"""Operation counts of SpikingJelly's model zoo (tests/zoo_nets.py) against NeuroBench 2.3's
SynapticOperations, run for real on the zoo module itself (multi-step, its hooks on every
Conv2d / Linear), at a CIFAR-sized input of 3 x 32 x 32, T = 4, on 8 MNIST-5k digits.

NeuroBench counts a layer fed values in {0, 1, -1} as accumulates (ACs) and anything else as
MACs, each nonzero input once per fan-out: the analog stem conv and every conv behind a SEW ADD
(graded 0 / 1 / 2) are MACs, the convs fed by one neuron layer ACs, the fc behind the global
average pool MACs; BN (folded), the neurons and the pools are no synaptic operations. Both
sides are integer totals divided by the samples: the totals are compared exactly."""

import pytest
import torch
from zoo_nets import T, build, images

from snnexport.check import from_spikingjelly
from snnexport.energy import count_operations
from snnexport.passes.fold import fold


@pytest.mark.parametrize("arch, cnf", [("sew_resnet18", "ADD"), ("spiking_resnet18", None)])
def test_zoo_counts_equal_neurobench_synaptic_operations(arch, cnf):
    from neurobench.metrics.workload import SynapticOperations
    from neurobench.models import TorchModel
    from spikingjelly.activation_based import functional

    x, _ = images(8)
    net = build(arch, cnf)
    model = TorchModel(net)
    model.register_hooks()
    with torch.no_grad():  # the zoo's multi-step input: the image at every step
        preds = model(x.unsqueeze(0).repeat(T, 1, 1, 1, 1))
    nb = SynapticOperations()(model, preds, (x, None))
    model.cleanup_hooks()
    functional.reset_net(net)
    ours = count_operations(fold(from_spikingjelly(build(arch, cnf), (3, 32, 32), T).graph), x)
    n = len(x)
    macs, sops = sum(c.macs for c in ours), sum(c.sops for c in ours)
    assert macs > 0 and sops > 0
    assert round(macs * n) == round(nb["Effective_MACs"] * n)
    assert round(sops * n) == round(nb["Effective_ACs"] * n)
    assert round(sum(c.dense for c in ours) * n) == round(nb["Dense"] * n)
    if cnf == "ADD":  # behind a SEW ADD the input is graded: MACs on both sides
        rows = {c.name: c for c in ours}
        assert rows["layer1.1.conv1"].macs > 0 and rows["layer1.1.conv1"].sops == 0
        assert rows["layer1.0.conv2"].sops > 0 and rows["layer1.0.conv2"].macs == 0
