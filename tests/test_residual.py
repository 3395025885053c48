"""Residual spiking nets from SpikingJelly, run for real on real MNIST-5k digits: SEW blocks
(connect function ADD / AND / IAND, written as users write them: `out + x`, `out * x`,
`x * (1 - out)`, inside a module-level connect function) and a Spiking ResNet block (the add
before the neuron, with a conv-BN downsample on the identity path). Each imports as a graph,
folds, and matches SpikingJelly's own forward pass in every layer; each round-trips through
a NIR file exactly."""

import warnings

import numpy as np
import pytest
import torch
from spikingjelly.activation_based import functional, layer, neuron

from snnexport.check import check, from_spikingjelly
from snnexport.data import load_dataset
from snnexport.exporters.nir_export import to_nir, write_nir
from snnexport.importers.nir_import import from_nir, read_nir
from snnexport.ir import Graph, load_ir, save_ir
from snnexport.ir import nodes as ir
from snnexport.passes.fold import fold
from snnexport.sim.reference import simulate

T = 4
SAMPLES = 200
DS = load_dataset("mnist5k")
X, Y = DS.x_test[:SAMPLES], DS.y_test[:SAMPLES]


def sew_function(x, y, cnf):
    """SpikingJelly's SEW connect functions, as its sew_resnet writes them."""
    if cnf == "ADD":
        return x + y
    if cnf == "AND":
        return x * y
    return x * (1.0 - y)  # IAND: the identity where the block did not fire


def conv_bn(c_in, c_out, k=3, stride=1):
    return [layer.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2, bias=False),
            layer.BatchNorm2d(c_out)]


class SEWBlock(torch.nn.Module):
    def __init__(self, c, cnf):
        super().__init__()
        self.cnf = cnf
        self.conv1, self.bn1 = conv_bn(c, c)
        self.sn1 = neuron.ParametricLIFNode()
        self.conv2, self.bn2 = conv_bn(c, c)
        self.sn2 = neuron.ParametricLIFNode()

    def forward(self, x):
        out = self.sn1(self.bn1(self.conv1(x)))
        out = self.sn2(self.bn2(self.conv2(out)))
        return sew_function(x, out, self.cnf)


class SpikingBlock(torch.nn.Module):
    """Spiking ResNet: out = sn2(bn2(conv2(sn1(bn1(conv1 x)))) + downsample(x))."""

    def __init__(self, c_in, c_out):
        super().__init__()
        self.conv1, self.bn1 = conv_bn(c_in, c_out, stride=2)
        self.sn1 = neuron.ParametricLIFNode()
        self.conv2, self.bn2 = conv_bn(c_out, c_out)
        self.downsample = torch.nn.Sequential(*conv_bn(c_in, c_out, k=1, stride=2))
        self.sn2 = neuron.ParametricLIFNode()

    def forward(self, x):
        identity = self.downsample(x)
        out = self.bn2(self.conv2(self.sn1(self.bn1(self.conv1(x)))))
        out += identity
        return self.sn2(out)


class Net(torch.nn.Module):
    def __init__(self, block, c=4):
        super().__init__()
        self.stem = torch.nn.Sequential(*conv_bn(1, c), neuron.ParametricLIFNode(),
                                        layer.MaxPool2d(2))
        self.block = block
        self.pool = layer.AvgPool2d(2)
        c_out = block.conv2.out_channels
        side = 7 if isinstance(block, SEWBlock) else 3
        self.flat = layer.Flatten()
        self.fc = layer.Linear(c_out * side * side, 20)
        self.sn = neuron.ParametricLIFNode()
        self.vote = layer.VotingLayer(2)

    def forward(self, x):
        x = self.pool(self.block(self.stem(x)))
        return self.vote(self.sn(self.fc(self.flat(x))))


BLOCKS = {"sew_add": lambda: SEWBlock(4, "ADD"), "sew_and": lambda: SEWBlock(4, "AND"),
          "sew_iand": lambda: SEWBlock(4, "IAND"), "spiking_resnet": lambda: SpikingBlock(4, 6)}
MERGE = {"sew_add": ir.Add, "sew_and": ir.SEWAnd, "sew_iand": ir.SEWIAnd,
         "spiking_resnet": ir.Add}


def build(kind):
    """Random weights; BN statistics measured on real digits, then perturbed; every PLIF its
    own tau; weights scaled so that every layer spikes."""
    torch.manual_seed(0)
    net = Net(BLOCKS[kind]())
    functional.set_step_mode(net, "m")
    bns = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.weight.mul_(3)
            if isinstance(m, torch.nn.Linear):  # AND / IAND pass few spikes on: a strong FC
                m.weight.mul_(30)
            if isinstance(m, neuron.ParametricLIFNode):
                m.w.uniform_(-1.0, 1.0)
        for m in bns:
            m.momentum = None
            m.weight.uniform_(0.5, 1.5)
            m.bias.uniform_(0.2, 0.8)
        net.train()
        net(X[:64].unsqueeze(0).repeat(T, 1, 1, 1, 1))
        functional.reset_net(net)
        for m in bns:
            m.running_mean.add_(torch.empty_like(m.running_mean).uniform_(-0.1, 0.1))
    return net.eval()


@pytest.mark.parametrize("kind", sorted(BLOCKS))
def test_residual_block_imports_folds_and_matches_spikingjelly(kind, tmp_path):
    net = build(kind)
    loaded = from_spikingjelly(net, (1, 28, 28), T, name=kind)
    g = loaded.graph
    merges = [n for n, node in g.nodes.items() if isinstance(node, ir.Merge)]
    assert merges == ["block.add" if MERGE[kind] is ir.Add else
                      f"block.{MERGE[kind].__name__[3:].lower()}"]
    assert type(g.nodes[merges[0]]) is MERGE[kind]
    # the merge takes the block's output and the identity path (argument order matters: IAND)
    want_args = {"sew_add": ["stem.3", "block.sn2"], "sew_and": ["stem.3", "block.sn2"],
                 "sew_iand": ["block.sn2", "stem.3"],
                 "spiking_resnet": ["block.bn2", "block.downsample.1"]}[kind]
    assert g.inputs(merges[0]) == want_args
    folded = fold(g)
    assert not folded.is_chain()
    report = check(loaded, inputs=(X, Y), samples=SAMPLES, reference_dtype=torch.float64)
    assert report.samples == SAMPLES
    assert {lay.name for lay in report.layers} == {"stem.2", "block.sn1", "block.sn2", "sn"}
    assert all(lay.spikes_reference > 0 for lay in report.layers), report.text()
    assert report.exact, report.text()
    report32 = check(loaded, inputs=(X, Y), samples=SAMPLES)  # float32, as trained
    assert report32.unexplained == 0, report32.text()
    # the folded graph through a .snnir file and through a NIR file: the same spikes
    back = load_ir(save_ir(folded, tmp_path / "m.snnir"))
    assert back.edges == sorted(folded.edges, key=lambda e: folded.order().index(e[1]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # readout metadata only snnexport reads: expected
        path = write_nir(fold(g, fold_gain=False), tmp_path / "m.nir")
    nir_back = read_nir(path)
    assert type(nir_back.nodes[merges[0]]) is MERGE[kind]
    assert nir_back.inputs(merges[0]) == fold(g, fold_gain=False).inputs(merges[0])
    ref = simulate(fold(g, fold_gain=False), X[:SAMPLES], dtype=torch.float64)
    for other in (simulate(back, X[:SAMPLES]), simulate(nir_back, X[:SAMPLES])):
        assert list(other.spikes) == list(ref.spikes)
        for name, s in ref.spikes.items():
            assert torch.equal(other.spikes[name], s), name
        assert torch.equal(other.scores, ref.scores)


def test_merge_semantics_on_spike_values():
    """Add / AND / IAND on every pair of spike values, as their docstrings state them."""
    a = torch.tensor([0.0, 0.0, 1.0, 1.0]).reshape(1, 4, 1)
    b = torch.tensor([0.0, 1.0, 0.0, 1.0]).reshape(1, 4, 1)
    want = {ir.Add: [0, 1, 1, 2], ir.SEWAnd: [0, 0, 0, 1], ir.SEWIAnd: [0, 1, 0, 0]}
    for kind, expected in want.items():
        # input -> two one-neuron identity layers (threshold 0.5, no leak) -> merge
        x = torch.stack([a[0], b[0]], -1).reshape(1, 4, 2)  # [T, B, 2]
        g = Graph({"input": ir.Input((2,)),
                   "pa": ir.Dense(np.array([[1.0, 0.0]])), "na": ir.Neuron((1,), np.zeros(()),
                                                                           threshold=0.5),
                   "pb": ir.Dense(np.array([[0.0, 1.0]])), "nb": ir.Neuron((1,), np.zeros(()),
                                                                           threshold=0.5),
                   "m": kind()},
                  [("input", "pa"), ("pa", "na"), ("input", "pb"), ("pb", "nb"), ("na", "m"),
                   ("nb", "m")], {"time_steps": 1})
        out = simulate(g, x).outputs
        assert out.flatten().tolist() == expected, kind.__name__
        # and the NIR form of the merge computes the same (a foreign-graph readout of
        # population 1 is added behind it: the identity)
        back = from_nir(to_nir(fold(g, fold_gain=False)))
        assert type(back.nodes["m"]) is kind
        assert simulate(back, x).outputs.flatten().tolist() == expected, kind.__name__


def test_graph_errors_name_the_node():
    with pytest.raises(ir.IRError, match="'m' \\(Add\\) takes 2 input"):
        Graph({"input": ir.Input((2,)), "m": ir.Add()}, [("input", "m")])
    with pytest.raises(ir.IRError, match="Add needs two inputs of one shape"):
        Graph({"input": ir.Input((2,)), "d": ir.Dense(np.ones((3, 2))), "m": ir.Add()},
              [("input", "d"), ("input", "m"), ("d", "m")])
    with pytest.raises(ir.IRError, match="not reached from the input"):
        Graph({"input": ir.Input((2,)), "a": ir.Flatten(), "b": ir.Flatten()},
              [("a", "b"), ("b", "a")])
