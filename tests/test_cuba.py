"""Current-based LIF (CUBA): snnTorch's Synaptic and Norse's default LIFCell, run for real on
real MNIST-5k digits, imported, folded and compared spike for spike with the framework's own
forward on the reference simulator and the float ONNX model; the .snnir file of a CUBA graph
(version 3) and the unchanged version-2 file of every other graph."""

import re

import norse.torch as nt
import pytest
import snntorch as snn
import torch
from test_snntorch_norse import SAMPLES, T, assert_matches_framework, norse_counts, seeded
from torch import nn

from snnexport.check import check, from_norse, from_snntorch
from snnexport.importers.norse import import_norse
from snnexport.importers.snntorch import import_snntorch
from snnexport.importers.spikingjelly import UnsupportedModuleError
from snnexport.ir import io as ir_io
from snnexport.ir import nodes as ir
from snnexport.passes.fold import fold
from snnexport.sim.reference import simulate


@pytest.fixture(scope="module")
def mnist():
    from snnexport.data import load_dataset

    ds = load_dataset("mnist5k")
    return ds.x_test[:SAMPLES], ds.y_test[:SAMPLES]


def synaptic_net():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 8, 5), nn.BatchNorm2d(8),
        snn.Synaptic(alpha=0.7, beta=0.9, init_hidden=True, reset_mechanism="zero",
                     reset_delay=False),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 5),
        # per-channel alpha and beta; subtract reset (beta < 1: reset_by = thr / beta)
        snn.Synaptic(alpha=torch.rand(16, 1, 1), beta=0.5 + 0.5 * torch.rand(16, 1, 1),
                     threshold=0.5, init_hidden=True),
        nn.AvgPool2d(2), nn.Flatten(),
        nn.Linear(16 * 4 * 4, 64),
        snn.Synaptic(alpha=torch.rand(64), beta=0.8, init_hidden=True,
                     reset_mechanism="zero", reset_delay=False),
        nn.Linear(64, 10),
        snn.Synaptic(alpha=0.5, beta=1.0, init_hidden=True, output=True))
    return seeded(net, gain=(0.5, 1.0, 1.0, 1.0))


@torch.no_grad()
def synaptic_counts(net, x):
    """Spikes per Synaptic, counted from snnTorch's own outputs (hooks), fresh state."""
    counts, hooks = {}, []
    for name, m in net.named_modules():
        if isinstance(m, snn.Synaptic):
            counts[name] = 0

            def hook(_m, _a, o, name=name):
                counts[name] += int((o[0] if isinstance(o, tuple) else o).sum())
            hooks.append(m.register_forward_hook(hook))
    snn.utils.reset(net)
    for _ in range(T):
        net(x)
    for h in hooks:
        h.remove()
    snn.utils.reset(net)
    return counts


def test_snntorch_synaptic_matches_snntorch(mnist):
    x, y = mnist
    net = synaptic_net()
    loaded = from_snntorch(net, (1, 28, 28), T)
    g = loaded.graph
    lif2 = g.nodes["5"]
    # alpha as snnTorch clamps it is the current decay, per channel
    assert lif2.current_decay.shape == (16, 1, 1)
    assert torch.equal(torch.as_tensor(lif2.current_decay), net[5].alpha.clamp(0, 1))
    assert float(g.nodes["2"].current_decay) == pytest.approx(0.7)
    assert lif2.reset == "soft" and lif2.reset_by is not None
    folded = fold(g)
    assert all(folded.nodes[n].cuba for n in ("2", "5", "9", "11"))
    assert_matches_framework(loaded, x, y, synaptic_counts(net, x))


def test_snntorch_synaptic_on_onnx(mnist):
    x, y = mnist
    loaded = from_snntorch(synaptic_net(), (1, 28, 28), T)
    report = check(loaded, target="onnx", inputs=(x, y), samples=SAMPLES)
    assert report.samples == SAMPLES and report.unexplained == 0, report.text()
    assert all(layer.spikes_target > 0 for layer in report.layers), report.text()


def norse_default_net():
    """Norse's default LIFCell (tau_syn_inv 200, tau_mem_inv 100, dt 1e-3: the current keeps
    0.8 of itself per step) and an LIF over the sequence with per-neuron tau_syn_inv."""
    torch.manual_seed(0)
    net = nt.SequentialState(
        nn.Conv2d(1, 8, 5, stride=2), nt.LIFCell(),
        nn.Flatten(), nn.Linear(8 * 12 * 12, 40),
        nt.LIFCell(nt.LIFParameters(tau_syn_inv=100.0 + 800.0 * torch.rand(40),
                                    v_th=torch.as_tensor(0.4))),
        nn.Linear(40, 10), nt.LIFCell())
    return seeded(net, gain=(6.0, 4.0, 6.0))


def norse_lif_seq_net():
    torch.manual_seed(1)
    net = nt.SequentialState(
        nt.Lift(nn.Conv2d(1, 8, 5, stride=2)), nt.LIF(),
        nn.Flatten(start_dim=2), nn.Linear(8 * 12 * 12, 10), nt.LIF())
    return seeded(net, gain=(6.0, 6.0))


@pytest.mark.parametrize("make", [norse_default_net, norse_lif_seq_net], ids=["cells", "LIF"])
def test_norse_default_lifcell_matches_norse(mnist, make):
    x, y = mnist
    net = make()
    loaded = from_norse(net, (1, 28, 28), T)
    neurons = [n for n in loaded.graph.nodes.values() if isinstance(n, ir.LIFNeuron)]
    # k_syn = dt * tau_syn_inv as Norse computes it (float32): 0.2 for the default
    assert float(neurons[0].k_syn) == -float(-1e-3 * torch.tensor(200.0))
    assert float(neurons[0].k) == float(1e-3 * torch.tensor(100.0))
    assert_matches_framework(loaded, x, y, norse_counts(net, x))


def test_norse_default_lifcell_on_onnx(mnist):
    x, y = mnist
    report = check(from_norse(norse_default_net(), (1, 28, 28), T), target="onnx",
                   inputs=(x, y), samples=SAMPLES)
    assert report.samples == SAMPLES and report.unexplained == 0, report.text()


@pytest.mark.parametrize("make, message", [
    (lambda: nn.Sequential(nn.Linear(4, 3), snn.Synaptic(alpha=0.5, beta=0.9,
                                                         init_hidden=True,
                                                         reset_mechanism="zero")),
     r"1: .*Synaptic with reset_mechanism='zero' and reset_delay=True is not supported"),
    (lambda: nn.Sequential(nn.Linear(4, 3), snn.Synaptic(alpha=0.5, beta=0.0,
                                                         init_hidden=True)),
     r"1: .*Synaptic with reset_mechanism='subtract' and beta = 0 is not supported"),
])
def test_synaptic_refusals_name_the_module_and_the_fix(make, message):
    with pytest.raises(UnsupportedModuleError) as e:
        import_snntorch(make(), (4,), T)
    assert "\n" not in str(e.value)
    assert re.match(message, str(e.value)), str(e.value)


def test_norse_current_step_outside_0_1_is_refused():
    net = nt.SequentialState(nn.Linear(4, 3), nt.LIFCell(nt.LIFParameters(
        tau_syn_inv=torch.as_tensor(3000.0))))
    with pytest.raises(UnsupportedModuleError, match=r"^1: .*LIFCell with dt \* tau_syn_inv = "
                                                     r"3 \.\. 3 outside \[0, 1\]"):
        import_norse(net, (4,), T)


def test_cuba_graph_is_snnir_version_3_and_reads_back(tmp_path):
    g = fold(import_snntorch(synaptic_net(), (1, 28, 28), T))
    data = ir_io.to_bytes(g)
    assert b'"version":3' in data
    back = ir_io.from_bytes(data)
    for name, node in g.nodes.items():
        if isinstance(node, ir.Neuron):
            assert (back.nodes[name].current_decay == node.current_decay).all()
    x = torch.rand(5, 1, 28, 28)
    a, b = simulate(g, x, T), simulate(back, x, T)
    assert all(torch.equal(a.spikes[k], b.spikes[k]) for k in a.spikes)


def test_without_a_current_the_file_stays_version_2():
    """A Leaky net (no current) writes the version-2 file it always wrote; a Synaptic with
    alpha = 0 is that same net (its current is the input), so the same bytes."""
    def net(cls, **kw):
        torch.manual_seed(3)
        return nn.Sequential(nn.Linear(6, 4), cls(beta=0.9, init_hidden=True, **kw))

    leaky = ir_io.to_bytes(import_snntorch(net(snn.Leaky), (6,), T))
    assert b'"version":2' in leaky and b"current_decay" not in leaky
    syn0 = ir_io.to_bytes(import_snntorch(net(snn.Synaptic, alpha=0.0), (6,), T))
    assert syn0 == leaky
