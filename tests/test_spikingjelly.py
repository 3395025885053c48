"""SpikingJelly 2.0 models, run for real, imported, folded and compared spike for spike."""

import pytest
import torch
from spikingjelly.activation_based import functional, layer, neuron, surrogate
from spikingjelly.activation_based.model import parametric_lif_net as pln

from snnexport.check import check, from_spikingjelly
from snnexport.data import load_dataset
from snnexport.data.dvs import mnist_event_frames, mnist_rgb32
from snnexport.importers.spikingjelly import UnsupportedModuleError, import_spikingjelly
from snnexport.ir.nodes import SpikePool
from snnexport.passes.fold import fold

T = 4
SAMPLES = 200


def mnist(n):
    ds = load_dataset("mnist5k")
    return ds.x_test[:n], ds.y_test[:n]


# net, reduced width, per-sample input shape, real inputs (x, labels)
PAPER_NETS = {
    "MNISTNet": (pln.MNISTNet, 8, (1, 28, 28), lambda: mnist(SAMPLES)),
    "FashionMNISTNet": (pln.FashionMNISTNet, 8, (1, 28, 28), lambda: mnist(SAMPLES)),
    "NMNISTNet": (pln.NMNISTNet, 8, (2, 34, 34), lambda: mnist_event_frames(34, T, SAMPLES)),
    "CIFAR10Net": (pln.CIFAR10Net, 8, (3, 32, 32), lambda: mnist_rgb32(SAMPLES)),
    "CIFAR10DVSNet": (pln.CIFAR10DVSNet, 4, (2, 128, 128),
                      lambda: mnist_event_frames(128, T, SAMPLES)),
    "DVSGestureNet": (pln.DVSGestureNet, 4, (2, 128, 128),
                      lambda: mnist_event_frames(128, T, SAMPLES)),
}


def randomise(net, x_calib, step_mode):
    """Random weights as built; BN statistics measured on real inputs, then perturbed; the FC
    layers scaled up so that a random net spikes in every layer."""
    torch.manual_seed(0)
    functional.set_step_mode(net, step_mode)
    bns = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        for m in bns:
            m.momentum = None
            m.weight.uniform_(0.5, 1.5)
            m.bias.uniform_(0.0, 0.6)
        net.train()
        if step_mode == "m":
            net(x_calib)
        else:
            for xt in x_calib:
                net(xt)
        functional.reset_net(net)
        for m in bns:
            m.running_mean.add_(torch.empty_like(m.running_mean).uniform_(-0.1, 0.1))
            m.running_var.mul_(torch.empty_like(m.running_var).uniform_(0.8, 1.2))
        for m in net.modules():
            if isinstance(m, layer.Linear):
                m.weight.mul_(6)
            if isinstance(m, neuron.ParametricLIFNode):
                m.w.uniform_(-1.0, 1.0)  # a different tau in every layer
    return net.eval()


def sequence(x):
    """[N, ...] static images -> [T, N, ...]; [N, T, ...] frames -> [T, N, ...]."""
    return x.unsqueeze(0).repeat(T, *([1] * x.dim())) if x.dim() == 4 else x.transpose(0, 1)


def build(name, step_mode="m"):
    cls, width, shape, data = PAPER_NETS[name]
    net = cls(channels=width, spiking_neuron=neuron.ParametricLIFNode,
              surrogate_function=surrogate.ATan(), detach_reset=True)
    x, y = data()
    randomise(net, sequence(x[:64]), step_mode)
    return net, shape, x, y


@pytest.mark.parametrize("name", sorted(PAPER_NETS))
def test_paper_net_folds_exactly(name):
    net, shape, x, y = build(name)
    loaded = from_spikingjelly(net, shape, T, name=name)
    report = check(loaded, inputs=(x, y), samples=SAMPLES, reference_dtype=torch.float64)
    assert report.samples == SAMPLES
    assert all(layer.spikes_reference > 0 for layer in report.layers), report.text()
    assert report.exact, report.text()
    # as trained (float32): only counted threshold ties and what they cause may differ
    report32 = check(loaded, inputs=(x, y), samples=SAMPLES)
    assert report32.unexplained == 0, report32.text()


def test_single_step_mode_gives_the_same_graph_and_spikes():
    net_m, shape, x, y = build("MNISTNet", "m")
    net_s, _, _, _ = build("MNISTNet", "s")
    net_s.load_state_dict(net_m.state_dict())
    g_m = import_spikingjelly(net_m, shape, T)
    g_s = import_spikingjelly(net_s, shape, T)
    assert g_s.metadata["step_mode"] == "s" and g_m.metadata["step_mode"] == "m"
    assert list(g_m.nodes) == list(g_s.nodes)
    loaded = from_spikingjelly(net_s, shape, T)
    report = check(loaded, inputs=(x, y), samples=64, reference_dtype=torch.float64)
    assert report.exact, report.text()


def test_lif_if_soft_reset_nested_sequential_and_avgpool():
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Sequential(layer.Conv2d(1, 6, 3, padding=1), layer.BatchNorm2d(6),
                            neuron.LIFNode(tau=3.0, v_reset=None, decay_input=False)),
        layer.AvgPool2d(2), layer.Flatten(), layer.Dropout(0.3),
        torch.nn.Sequential(layer.Linear(6 * 14 * 14, 40), neuron.IFNode(v_reset=-0.2)),
        layer.Linear(40, 20), layer.BatchNorm1d(20), neuron.ParametricLIFNode(v_reset=0.1),
        layer.VotingLayer(2))
    x, y = mnist(SAMPLES)
    randomise(net, sequence(x[:64]), "m")
    with torch.no_grad():
        net[0][0].weight.mul_(2)
    loaded = from_spikingjelly(net, (1, 28, 28), T)
    pool = fold(loaded.graph).nodes["1"]
    # an average of spikes is no OR: a spike count, with the 1/4 moved into the next weights
    assert isinstance(pool, SpikePool) and pool.mode == "sum"
    report = check(loaded, inputs=(x, y), samples=SAMPLES, reference_dtype=torch.float64)
    assert all(layer.spikes_reference > 0 for layer in report.layers), report.text()
    assert report.exact, report.text()


def test_unsupported_module_is_named():
    net = torch.nn.Sequential(layer.Conv2d(1, 4, 3), torch.nn.ReLU(), neuron.IFNode())
    with pytest.raises(UnsupportedModuleError, match=r"^1: torch.nn.modules.activation.ReLU "
                                                     r"is not supported.*ParametricLIFNode"):
        import_spikingjelly(net, (1, 8, 8), 2)

    class Gated(torch.nn.Module):  # residual merges import (+, *, 1 - x); other ops do not
        def __init__(self):
            super().__init__()
            self.conv = layer.Conv2d(1, 1, 3, padding=1)

        def forward(self, x):
            return torch.sigmoid(x) + self.conv(x)

    with pytest.raises(UnsupportedModuleError, match="Gated: forward applies .*sigmoid"):
        import_spikingjelly(Gated(), (1, 8, 8), 2)
