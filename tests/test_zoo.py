"""SpikingJelly's own model zoo, as its users build it (tests/zoo_nets.py): SEW-ResNet18 with
ADD / AND / IAND, Spiking ResNet18 and spiking VGG11-BN with PLIF neurons in multi-step mode,
BN statistics that are not the identity, on 100 real MNIST-5k digits resized to 3 x 32 x 32.

The oracle is SpikingJelly's own forward: every neuron layer's spikes are recorded from the
zoo module itself and compared with each target's, and the scores with the mean over time of
the zoo's `fc` outputs (the zoo's head has no neuron: a current per step). Every layer spikes
on these inputs (asserted), so exactness is not vacuous."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from zoo_nets import T, build, images

from snnexport.check import ReferenceRuns, check, from_spikingjelly
from snnexport.errors import SnnexportError
from snnexport.ir import nodes as ir
from snnexport.passes.fold import fold

SAMPLES = 100
X, Y = images(SAMPLES)
TESTS = Path(__file__).parent


def _exact(report):
    assert report.samples == SAMPLES
    assert report.exact and all(l.unexplained == 0 for l in report.layers), report.text()
    assert not report.silent_layers, report.text()
    return report


def test_sew_resnet18_imports_as_the_zoo_wrote_it():
    net = build("sew_resnet18", "ADD")
    graph = from_spikingjelly(net, (3, 32, 32), T).graph
    neurons = [n for n, node in graph.ordered() if isinstance(node, ir.LIFNeuron)]
    # stem sn1, 8 BasicBlocks of two neurons each, 3 downsample neurons (layer2..4)
    assert len(neurons) == 1 + 8 * 2 + 3
    assert sum(isinstance(node, ir.Add) for node in graph.nodes.values()) == 8
    # the head: global average pooling (1x1 at a 32x32 input, /32 by the stem's stride-2 conv
    # and max-pool and three stride-2 stages), the fc and no neuron after it: a memoryless
    # non-spiking readout neuron holding the current
    assert graph.metadata["readout"] == "membrane"
    readout = graph.nodes["fc.readout"]
    assert isinstance(readout, ir.Neuron) and not readout.spiking
    assert float(readout.decay) == 0.0
    folded = fold(graph)
    stem_pool = folded.nodes["maxpool"]  # k3 s2 p1 on spikes: an OR
    assert isinstance(stem_pool, ir.SpikePool) and stem_pool.mode == "or"
    assert (stem_pool.kernel, stem_pool.stride, stem_pool.padding) == ((3, 3), (2, 2), (1, 1))
    assert isinstance(folded.nodes["avgpool"], ir.SpikePool)  # sum of SEW ADD's 0/1/2
    assert folded.nodes["avgpool"].mode == "sum"
    # inspect names the readout: the fc's current, held by a memoryless neuron, mean over T
    from snnexport.inspect_ir import describe

    text = describe(graph)
    assert "fc.readout" in text and "memoryless" in text
    assert "mode membrane (mean over T)" in text


def test_a_mean_over_time_in_forward_is_the_readout():
    class Averaged(torch.nn.Module):  # what users write around a zoo net
        def __init__(self):
            super().__init__()
            self.net = build("sew_resnet18", "ADD")

        def forward(self, x):
            return self.net(x).mean(0)

    model = from_spikingjelly(Averaged().eval(), (3, 32, 32), T)
    assert model.graph.metadata["readout"] == "membrane"
    report = check(model, "reference", inputs=(X[:20], Y[:20]), samples=20)
    assert report.exact and report.agree == 20 and not report.silent_layers, report.text()
    with pytest.raises(SnnexportError, match="contradicts"):
        from_spikingjelly(Averaged().eval(), (3, 32, 32), T, readout="last")


@pytest.mark.parametrize("cnf", ["ADD", "AND", "IAND"])
def test_sew_resnet18_reference_and_onnx_exact_against_spikingjelly(cnf):
    model = from_spikingjelly(build("sew_resnet18", cnf), (3, 32, 32), T)
    runs = ReferenceRuns()  # SpikingJelly's forward once for both targets
    for target in ("reference", "onnx"):
        report = _exact(check(model, target, inputs=(X, Y), samples=SAMPLES,
                              reference_runs=runs))
        assert report.agree == SAMPLES


def test_sew_resnet18_nir_and_integer_onnx():
    model = from_spikingjelly(build("sew_resnet18", "ADD"), (3, 32, 32), T)
    runs = ReferenceRuns()
    _exact(check(model, "nir", inputs=(X, Y), samples=SAMPLES, reference_runs=runs))
    # the integer ONNX graph against the emulator of the fixed-point net: bit for bit
    report = check(model, "onnx-fixed", inputs=(X, Y), samples=SAMPLES)
    assert report.exact and report.agree == SAMPLES, report.text()
    assert sum(l.spikes_reference for l in report.layers) > 0
    # netx holds a chain: the residual net is refused in one line naming the merge
    with pytest.raises(SnnexportError, match=r"layer1\.0\.add"):
        check(model, "netx", inputs=(X[:2], Y[:2]), samples=2)


def test_spiking_resnet18_reference_nir_onnx_exact():
    model = from_spikingjelly(build("spiking_resnet18"), (3, 32, 32), T)
    runs = ReferenceRuns()
    for target in ("reference", "nir", "onnx"):
        _exact(check(model, target, inputs=(X, Y), samples=SAMPLES, reference_runs=runs))


def test_spiking_vgg11_bn_reference_and_onnx_exact():
    # at 32 x 32 the features end 1 x 1 and the zoo's AdaptiveAvgPool2d((7, 7)) repeats that
    # cell 49 times: folded into the first classifier layer's weights (upsample_into_dense)
    model = from_spikingjelly(build("spiking_vgg11_bn"), (3, 32, 32), T)
    assert isinstance(model.graph.nodes["avgpool"], ir.Upsample)
    folded = fold(model.graph)
    assert "avgpool" not in folded.nodes
    assert folded.nodes["classifier.0"].weight.shape == (4096, 512)
    w = build("spiking_vgg11_bn").classifier[0].weight.detach().double().numpy()
    # each of the 512 inputs is repeated into 49 of the flattened 512 x 7 x 7 (C-major), so
    # it carries the sum of their 49 weights; times the PLIF's input gain k = 1/tau = 0.5
    np.testing.assert_allclose(folded.nodes["classifier.0"].weight,
                               0.5 * w.reshape(4096, 512, 49).sum(-1), rtol=1e-12, atol=0)
    runs = ReferenceRuns()
    for target in ("reference", "onnx"):
        _exact(check(model, target, inputs=(X, Y), samples=SAMPLES, reference_runs=runs))


def test_zoo_net_from_the_command_line_with_a_build_function_and_weights(tmp_path):
    """`--model zoo_nets:sew18 --weights w.pth`: the user's build module and the weights
    saved from it, checked on the user's data function, exit 0 and exact."""
    net = build("sew_resnet18", "ADD")
    torch.save(net.state_dict(), tmp_path / "w.pth")
    out = subprocess.run(
        [sys.executable, "-m", "snnexport.cli", "check", "--model", "zoo_nets:sew18",
         "--weights", str(tmp_path / "w.pth"), "--input-shape", "3,32,32", "--time-steps",
         str(T), "--data", "zoo_nets:digits32", "--samples", "100", "--target", "onnx"],
        capture_output=True, text=True, cwd=tmp_path, timeout=600,
        env={**__import__("os").environ, "PYTHONPATH": str(TESTS)})
    assert out.returncode == 0, out.stdout + out.stderr
    assert "100 samples" in out.stdout and "exact" in out.stdout


def test_max_pool_after_a_sew_add_on_the_float_targets_and_refused_on_the_chips():
    """A MaxPool2d after a SEW ADD block pools 0 / 1 / 2, no spikes: the reference and ONNX
    compute it exactly as SpikingJelly does; NIR (no max-pool node) and the chip targets
    (no max of graded values) refuse it in one line naming the pool."""
    from spikingjelly.activation_based import functional, layer, neuron

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = layer.Conv2d(8, 8, 3, padding=1, bias=False)
            self.bn = layer.BatchNorm2d(8)
            self.sn = neuron.ParametricLIFNode(init_tau=2.0)

        def forward(self, x):
            return self.sn(self.bn(self.conv(x))) + x  # SEW ADD

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        layer.Conv2d(1, 8, 3, padding=1), layer.BatchNorm2d(8),
        neuron.ParametricLIFNode(init_tau=2.0), Block(), layer.MaxPool2d(2),
        layer.Flatten(), layer.Linear(8 * 14 * 14, 10), neuron.ParametricLIFNode(init_tau=2.0))
    functional.set_step_mode(net, "m")
    with torch.no_grad():
        net[1].bias.fill_(0.4)
        net[3].bn.bias.fill_(0.8)
        net[6].weight.mul_(4)
    model = from_spikingjelly(net.eval(), (1, 28, 28), T)
    pool = fold(model.graph).nodes["4"]
    assert isinstance(pool, ir.SpikePool) and pool.mode == "max"
    from snnexport.data import load_dataset

    ds = load_dataset("mnist5k")
    x, y = ds.x_test[:SAMPLES], ds.y_test[:SAMPLES]
    runs = ReferenceRuns()
    for target in ("reference", "onnx"):
        report = check(model, target, inputs=(x, y), samples=SAMPLES, reference_runs=runs)
        assert report.exact and not report.silent_layers, report.text()
    # the pool really sees 2s: SpikingJelly's block output exceeds 1 somewhere
    functional.reset_net(net)
    with torch.no_grad():
        block_out = net[:4](x.unsqueeze(0).repeat(T, 1, 1, 1, 1))
    functional.reset_net(net)
    assert int((block_out == 2).sum()) > 0 and set(block_out.unique().tolist()) == {0, 1, 2}
    for target in ("nir", "fixed"):
        with pytest.raises(SnnexportError, match=r"'4'.*max-pool of graded values"):
            check(model, target, inputs=(x[:2], y[:2]), samples=2)


@pytest.mark.parametrize("mode", ["s", "m"])
def test_containers_identity_view_and_dropout_variants_as_users_write_them(mode):
    """SeqToANNContainer / MultiStepContainer, nn.Identity, layer.Dropout2d, nn.Dropout and a
    `view(x.size(0), -1)` flatten (`view(T, B, -1)` from x's own sizes in multi-step mode):
    the same network as the plain chain, exact against SpikingJelly's forward."""
    from spikingjelly.activation_based import functional, layer, neuron

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            conv = [torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.BatchNorm2d(8)]
            self.stem = layer.SeqToANNContainer(*conv) if mode == "m" else \
                torch.nn.Sequential(layer.Conv2d(1, 8, 3, padding=1), layer.BatchNorm2d(8))
            self.sn1 = neuron.ParametricLIFNode(init_tau=2.0, step_mode=mode)
            self.skip = torch.nn.Identity()
            self.pool = layer.MaxPool2d(2, step_mode=mode)
            self.drop = layer.Dropout2d(0.2, step_mode=mode)
            self.fc = layer.Linear(8 * 14 * 14, 10, step_mode=mode)
            self.drop2 = torch.nn.Dropout(0.1)
            self.sn2 = neuron.ParametricLIFNode(init_tau=2.0, step_mode=mode)

        def forward(self, x):
            x = self.drop(self.pool(self.skip(self.sn1(self.stem(x)))))
            x = x.view(x.size(0), x.size(1), -1) if mode == "m" else x.view(x.size(0), -1)
            return self.sn2(self.drop2(self.fc(x)))

    torch.manual_seed(0)
    net = Net()
    if mode == "m":
        functional.set_step_mode(net, "m")
    with torch.no_grad():
        net.stem[1].bias.fill_(0.4)
        net.fc.weight.mul_(6)
    model = from_spikingjelly(net.eval(), (1, 28, 28), T)
    kinds = [type(node).__name__ for _, node in model.graph.ordered()]
    assert kinds == ["Input", "Conv2d", "BatchNorm", "LIFNeuron", "MaxPool2d", "Dropout",
                     "Flatten", "Dense", "Dropout", "LIFNeuron"]
    assert model.graph.metadata["readout"] == "rate"
    from snnexport.data import load_dataset

    ds = load_dataset("mnist5k")
    runs = ReferenceRuns()
    for target in ("reference", "onnx"):
        report = check(model, target, inputs=(ds.x_test[:SAMPLES], ds.y_test[:SAMPLES]),
                       samples=SAMPLES, reference_runs=runs)
        assert report.exact and not report.silent_layers, report.text()


def test_parametric_lif_net_chain_exact_on_float_targets_and_netx():
    """A zoo chain (parametric_lif_net.MNISTNet, as seed 000 builds it; 16 channels to keep
    the test short): reference, NIR and ONNX exact against SpikingJelly's forward on 100
    digits, integer ONNX exact vs the emulator, and netx (lava-dl's netx in Lava) exact vs the
    emulator on 20, every layer spiking."""
    from spikingjelly.activation_based import functional, neuron
    from spikingjelly.activation_based.model import parametric_lif_net as pln
    from zoo_nets import drive

    torch.manual_seed(0)
    net = drive(pln.MNISTNet(channels=16, spiking_neuron=neuron.ParametricLIFNode))
    functional.set_step_mode(net, "m")
    x, y = images(SAMPLES, 28)
    x = x[:, :1].contiguous()  # the digits as they are: 1 x 28 x 28
    model = from_spikingjelly(net.eval(), (1, 28, 28), T)
    runs = ReferenceRuns()
    for target in ("reference", "nir", "onnx", "onnx-fixed"):
        report = check(model, target, inputs=(x, y), samples=SAMPLES, reference_runs=runs)
        assert report.exact and not report.silent_layers, report.text()
    report = check(model, "netx", inputs=(x[:20], y[:20]), samples=20, reference_runs=runs)
    assert report.exact and report.samples == 20 and not report.silent_layers, report.text()
