"""snnexport's own SEW-ResNet (models/sew_resnet.py): the same network as SpikingJelly's SEW
basic blocks (sew_resnet.BasicBlock, written out here as its source has it: the zoo module
imports torchvision), checked spike for spike against SpikingJelly's own forward pass; its
graph (the merges named blocks.<i>.connect); its operation counts."""

import numpy as np
import pytest
import torch
from spikingjelly.activation_based import functional, layer, neuron

from snnexport.data import load_dataset
from snnexport.energy import count_operations, load_profile
from snnexport.energy.estimate import estimate
from snnexport.importers.plifnet import import_plifnet
from snnexport.ir import nodes as ir
from snnexport.models import build_network
from snnexport.models.neurons import SpikingNeuron
from snnexport.passes.fold import fold
from snnexport.sim.reference import simulate

T = 4
X = load_dataset("mnist5k").x_test[:16]


def config(cnf, **kw):
    return dict(arch="sew", stages=[1, 1], connect=cnf, channels=4, time_steps=T,
                input_size=28, population=2, readout="rate", **kw)


def sew_function(x, y, cnf):  # spikingjelly.activation_based.model.sew_resnet.sew_function
    if cnf == "ADD":
        return x + y
    if cnf == "AND":
        return x * y
    return x * (1.0 - y)


def plif():
    return neuron.ParametricLIFNode(init_tau=2.0, detach_reset=True, step_mode="m")


class SJBlock(torch.nn.Module):
    """sew_resnet.BasicBlock.forward, as SpikingJelly writes it."""

    def __init__(self, c_in, c_out, stride, cnf):
        super().__init__()
        self.cnf = cnf
        self.conv1 = layer.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = layer.BatchNorm2d(c_out)
        self.sn1 = plif()
        self.conv2 = layer.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = layer.BatchNorm2d(c_out)
        self.sn2 = plif()
        self.downsample = None
        if stride != 1:
            self.downsample = torch.nn.Sequential(layer.Conv2d(c_in, c_out, 1, stride,
                                                               bias=False),
                                                  layer.BatchNorm2d(c_out))
            self.downsample_sn = plif()

    def forward(self, x):
        identity = x
        out = self.sn1(self.bn1(self.conv1(x)))
        out = self.sn2(self.bn2(self.conv2(out)))
        if self.downsample is not None:
            identity = self.downsample_sn(self.downsample(x))
        return sew_function(identity, out, self.cnf)


class SJNet(torch.nn.Module):
    def __init__(self, cnf):
        super().__init__()
        self.stem = torch.nn.Sequential(layer.Conv2d(1, 4, 3, 1, 1, bias=False),
                                        layer.BatchNorm2d(4), plif(), layer.MaxPool2d(2, 2))
        self.blocks = torch.nn.Sequential(SJBlock(4, 4, 1, cnf), SJBlock(4, 8, 2, cnf))
        self.pool = layer.AvgPool2d(7, 7)
        self.fc = layer.Linear(8, 20, bias=False)
        self.sn = plif()

    def forward(self, x_seq):
        return self.sn(self.fc(self.pool(self.blocks(self.stem(x_seq))).flatten(2)))


def twins(cnf):
    """Our SEW-ResNet with random weights, BN statistics and per-layer tau, and SpikingJelly's
    net with the same numbers, both in float64, eval mode."""
    torch.manual_seed(1)
    ours = build_network(config(cnf)).double()
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for m in ours.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.rand(c, generator=gen, dtype=torch.float64) - 0.5)
                m.running_var.copy_(torch.rand(c, generator=gen, dtype=torch.float64) + 0.5)
                m.weight.copy_(torch.rand(c, generator=gen, dtype=torch.float64) + 0.5)
                m.bias.copy_(torch.rand(c, generator=gen, dtype=torch.float64) * 0.8)
            elif isinstance(m, SpikingNeuron):
                m.a.copy_(torch.rand((), generator=gen, dtype=torch.float64) * 2 - 1)
        for m in ours.modules():  # default init is too quiet for a net 4 channels wide
            if isinstance(m, torch.nn.Conv2d):
                m.weight.mul_(4.0)
        # AND's outputs are sparse (both paths must fire): positive readout weights there
        fc = ours.head.fc.weight
        fc.copy_(fc.abs() * 400.0 if cnf == "AND" else fc * 40.0)
    ours.eval()
    sj = SJNet(cnf).double()
    functional.set_step_mode(sj, "m")
    ours_params = [m for m in ours.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear,
                                                               torch.nn.BatchNorm2d))]
    sj_params = [m for m in sj.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear,
                                                           torch.nn.BatchNorm2d))]
    # the modules in the order both constructors create them (down path last in each block)
    assert len(ours_params) == len(sj_params)
    for a, b in zip(ours_params, sj_params, strict=True):
        b.load_state_dict(a.state_dict())
    ours_sn = [m for m in ours.modules() if isinstance(m, SpikingNeuron)]
    sj_sn = [m for m in sj.modules() if isinstance(m, neuron.ParametricLIFNode)]
    for a, b in zip(ours_sn, sj_sn, strict=True):
        b.w.data.copy_(a.a.data)
    sj.eval()
    return ours, sj


def spikes_of(model, cls, x_seq):
    out = {}
    hooks = [m.register_forward_hook(lambda _m, _a, o, i=i: out.__setitem__(i, o))
             for i, m in enumerate(m for m in model.modules() if isinstance(m, cls))]
    try:
        with torch.no_grad():
            y = model(x_seq)
    finally:
        for h in hooks:
            h.remove()
    return y, out


@pytest.mark.parametrize("cnf", ["ADD", "AND", "IAND"])
def test_sew_resnet_is_spikingjellys_sew_network_spike_for_spike(cnf):
    ours, sj = twins(cnf)
    x_seq = X.double().unsqueeze(0).repeat(T, 1, 1, 1, 1)
    _, ours_spikes = spikes_of(ours, SpikingNeuron, x_seq)
    y_sj, sj_spikes = spikes_of(sj, neuron.ParametricLIFNode, x_seq)
    functional.reset_net(sj)
    assert len(ours_spikes) == len(sj_spikes) == 7
    for i in ours_spikes:
        assert torch.equal(ours_spikes[i], sj_spikes[i]), i
    assert all(float(s.sum()) > 0 for s in sj_spikes.values())  # every layer fires
    assert torch.equal(ours(x_seq).sum(0), y_sj.reshape(T, len(X), 10, 2).mean(-1).sum(0))
    # the IR graph simulated in float64 has the same spikes again
    sim = simulate(import_plifnet(ours), X.double())
    names = [n for n, m in ours.named_modules() if isinstance(m, SpikingNeuron)]
    for i, name in enumerate(names):
        if i in sj_spikes and name != "head.sn":
            assert torch.equal(sim.spikes[name], sj_spikes[i]), name


def test_the_graph_has_one_merge_per_block_with_the_block_output_first():
    ours, _ = twins("IAND")
    g = import_plifnet(ours)
    merges = {n: type(x) for n, x in g.nodes.items() if isinstance(x, ir.Merge)}
    assert merges == {"blocks.0.connect": ir.SEWIAnd, "blocks.1.connect": ir.SEWIAnd}
    assert g.inputs("blocks.0.connect") == ["blocks.0.sn2", "stem.pool"]
    assert g.inputs("blocks.1.connect") == ["blocks.1.sn2", "blocks.1.down_sn"]
    assert not g.is_chain()


def test_merge_operations_are_counted_and_priced_per_element_and_step():
    ours, _ = twins("ADD")
    counts = {c.name: c for c in count_operations(fold(import_plifnet(ours)), X)}
    # one add per element per step: blocks.0 merges 4 x 14 x 14 values, blocks.1 8 x 7 x 7
    assert counts["blocks.0.connect"].merge_ops == 4 * 14 * 14 * T
    assert counts["blocks.1.connect"].merge_ops == 8 * 7 * 7 * T
    assert counts["blocks.0.connect"].kind == "merge"
    # ADD makes values 0..2: the next block's first conv is fed graded values, so it counts
    # MACs (NeuroBench's rule: spike-fed means every input in {-1, 0, 1})
    assert counts["blocks.1.conv1"].macs > 0 and counts["blocks.1.conv1"].sops == 0
    assert counts["blocks.0.conv2"].sops > 0 and counts["blocks.0.conv2"].macs == 0
    for profile in ("cmos45", "loihi2"):
        p = load_profile(profile)
        rep = estimate(list(counts.values()), p, 0.0, len(X), T)
        row = next(r for r in rep.layers if r.name == "blocks.0.connect")
        assert row.compute == pytest.approx(p.e("merge_op") * 4 * 14 * 14 * T)
    assert np.isfinite(rep.total)
