"""snnTorch 1.0 and Norse 1.1 networks, run for real, imported directly, folded and compared
spike for spike with the framework's own forward pass on real MNIST-5k test images."""

import re

import norse.torch as nt
import pytest
import snntorch as snn
import snntorch.utils
import torch
from norse.torch.functional.reset import reset_subtract
from torch import nn

from snnexport.check import check, from_norse, from_snntorch
from snnexport.data import load_dataset
from snnexport.importers.norse import import_norse
from snnexport.importers.snntorch import import_snntorch
from snnexport.importers.spikingjelly import UnsupportedModuleError
from snnexport.ir import nodes as ir
from snnexport.passes.fold import fold

T = 6
SAMPLES = 200


@pytest.fixture(scope="module")
def mnist():
    ds = load_dataset("mnist5k")
    return ds.x_test[:SAMPLES], ds.y_test[:SAMPLES]


def seeded(net, gain):
    """Deterministic weights: torch's default init under seed 0 (the caller seeds before
    building), BatchNorm statistics and affine drawn from that seed, each synapse `gain[i]`
    times larger so that every neuron layer spikes on MNIST."""
    synapses = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        for m, g in zip(synapses, gain, strict=True):
            m.weight.mul_(g)
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(0.0, 0.5)
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return net.eval()


def assert_matches_framework(loaded, x, y, own_counts):
    """0 unexplained mismatches as trained (float32), every spike equal in float64, and the
    spike count of every layer equal to the one counted from the framework's own outputs."""
    report = check(loaded, inputs=(x, y), samples=SAMPLES)
    assert report.samples == SAMPLES
    assert report.unexplained == 0, report.text()
    assert [layer.name for layer in report.layers] == list(own_counts)
    assert all(n > 0 for n in own_counts.values()), own_counts  # every layer spikes
    assert {layer.name: layer.spikes_reference for layer in report.layers} == own_counts
    assert {layer.name: layer.spikes_target for layer in report.layers} == own_counts
    report64 = check(loaded, inputs=(x, y), samples=SAMPLES, reference_dtype=torch.float64)
    assert report64.exact, report64.text()


# --- snnTorch ---------------------------------------------------------------------------------

def snntorch_net():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 8, 5), nn.BatchNorm2d(8),
        snn.Leaky(beta=0.9, init_hidden=True, reset_mechanism="zero"),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 5),
        snn.Leaky(beta=torch.rand(16, 1, 1), learn_beta=True, threshold=0.5,
                  init_hidden=True, reset_mechanism="zero", reset_delay=False),
        nn.AvgPool2d(2), nn.Flatten(), nn.Dropout(0.3),
        nn.Linear(16 * 4 * 4, 64),
        snn.Leaky(beta=torch.rand(64), init_hidden=True, reset_mechanism="zero"),
        nn.Linear(64, 10),
        snn.Leaky(beta=1.0, init_hidden=True, output=True))  # subtract reset, no leak
    return seeded(net, gain=(1.0, 2.0, 3.0, 3.0))


@torch.no_grad()
def snntorch_counts(net, x):
    """Spikes per Leaky, counted from snnTorch's own outputs: the Sequential's modules called
    one by one for each of the T steps after snntorch.utils.reset."""
    snntorch.utils.reset(net)
    counts = {}
    for _ in range(T):
        h = x
        for name, m in net.named_children():
            h = m(h)
            if isinstance(m, snn.Leaky):
                h = h[0] if isinstance(h, tuple) else h
                counts[name] = counts.get(name, 0) + int(h.sum())
    snntorch.utils.reset(net)
    return counts


def test_snntorch_net_matches_snntorch(mnist):
    x, y = mnist
    net = snntorch_net()
    loaded = from_snntorch(net, (1, 28, 28), T)
    g = loaded.graph
    assert g.metadata["time_steps"] == T and g.metadata["source"] == "snntorch"
    assert list(g.nodes) == ["input"] + [str(i) for i in range(13)]
    lif2, out = g.nodes["5"], g.nodes["12"]
    # per-channel beta as snnTorch clamps it; snnTorch's U > thr as H >= the next float64
    assert lif2.decay.shape == (16, 1, 1) and lif2.reset == "hard"
    assert torch.equal(torch.as_tensor(lif2.decay), net[5].beta.detach().clamp(0, 1))
    assert lif2.threshold > 0.5 and lif2.threshold - 0.5 == 2.0 ** -53
    assert out.reset == "soft" and float(out.decay) == 1.0
    folded = fold(g)  # the max-pool after spikes is an OR, the average a sum
    assert folded.nodes["3"].mode == "or" and folded.nodes["6"].mode == "sum"
    assert_matches_framework(loaded, x, y, snntorch_counts(net, x))


def test_snntorch_subtract_reset_is_a_soft_reset_by_thr_over_beta():
    """snnTorch subtracts the threshold after the decay. Constant input 0.6, beta 0.5,
    threshold 1: U = 0.6, 0.9, 1.05 (spike), then 0.5 * 1.05 + 0.6 - 1 = 0.125, where the plain
    soft reset (the threshold off before the decay) gives 0.5 * 0.05 + 0.6 = 0.625: imported
    as the soft reset by thr / beta = 2 (tests/test_snntorch_subtract.py runs it on MNIST)."""
    leaky = snn.Leaky(beta=0.5)
    mem, i = torch.zeros(1), torch.full((1,), 0.6)
    trace = []
    for _ in range(4):
        _, mem = leaky(i, mem)
        trace.append(round(float(mem), 6))
    assert trace == [0.6, 0.9, 1.05, 0.125]
    net = nn.Sequential(nn.Linear(4, 3), snn.Leaky(beta=0.5, init_hidden=True))
    node = import_snntorch(net, (4,), T).nodes["1"]
    assert node.reset == "soft" and float(node.reset_by) == 2.0 and float(node.decay) == 0.5


@pytest.mark.parametrize("make, frm", [(lambda: snntorch_net(), from_snntorch),
                                       (lambda: norse_cell_net(), from_norse)],
                         ids=["snntorch", "norse"])
def test_snnexports_own_nir_export_matches_the_framework(mnist, make, frm):
    """The point of the direct importers: the framework's net goes out through snnexport's
    NIR writer (written, read back as a NIR consumer gets it, simulated), not through the
    framework's own exporter, and still computes what the framework computes."""
    x, y = mnist
    report = check(frm(make(), (1, 28, 28), T), target="nir", inputs=(x, y), samples=100)
    assert report.samples == 100 and report.unexplained == 0, report.text()
    assert all(layer.spikes_target > 0 for layer in report.layers), report.text()


@pytest.mark.parametrize("make, message", [
    (lambda: nn.Sequential(nn.Linear(4, 3), snn.RLeaky(beta=0.9, linear_features=3,
                                                       init_hidden=True)),
     r"1: snntorch\._neurons\.rleaky\.RLeaky is not supported \(only snntorch\.Leaky and "
     r"Synaptic map exactly"),
    (lambda: nn.Sequential(nn.Linear(4, 3), snn.Leaky(beta=0.9, reset_mechanism="zero")),
     r"1: .*Leaky with init_hidden=False returns \(spk, mem\).*set init_hidden=True"),
    (lambda: nn.Sequential(nn.Linear(4, 3), snn.Leaky(beta=1.0, init_hidden=True,
                                                      reset_delay=False)),
     r"1: .*Leaky with reset_mechanism='subtract' and reset_delay=False is not supported"),
    (lambda: nn.Sequential(nn.Linear(4, 3), snn.Leaky(beta=0.9, init_hidden=True,
                                                      reset_mechanism="none")),
     r"1: .*reset_mechanism='none' is not supported.*use reset_mechanism='zero'"),
    (lambda: nn.Sequential(nn.Linear(4, 3), snn.Leaky(beta=0.9, init_hidden=True,
                                                      reset_mechanism="zero",
                                                      threshold=torch.tensor([1., 2., 1.]))),
     r"1: threshold differs between neurons \(1 \.\. 2\); the IR keeps one per layer"),
    (lambda: nn.Sequential(nn.Linear(4, 3), nn.ReLU()),
     r"1: torch\.nn\.modules\.activation\.ReLU is not supported; the snnTorch importer "),
])
def test_snntorch_refusals_name_the_module_and_the_fix(make, message):
    with pytest.raises(UnsupportedModuleError) as e:
        import_snntorch(make(), (4,), T)
    assert "\n" not in str(e.value)
    assert re.match(message, str(e.value)), str(e.value)


def test_snntorch_custom_forward_without_a_time_loop_is_refused():
    """A custom forward is read as a loop over time (tests/test_time_loops.py); one that runs
    a single step and returns it unstacked is refused in one line."""
    class Net(nn.Module):  # one step with explicit mem, no loop over time
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3)
            self.lif = snn.Leaky(beta=0.9)

        def forward(self, x):
            mem = self.lif.reset_mem()
            spk, mem = self.lif(self.fc(x), mem)
            return spk

    with pytest.raises(UnsupportedModuleError, match=r"^Net: forward returns 0 stacked per-step "
                                                     r"outputs among 1 values; return "
                                                     r"torch\.stack\(spk_rec, 0\)"):
        import_snntorch(Net(), (4,), T)


# --- Norse ------------------------------------------------------------------------------------

def norse_cell_net():
    torch.manual_seed(0)
    dt = 1e-3
    net = nt.SequentialState(
        nn.Conv2d(1, 8, 5), nn.BatchNorm2d(8),
        # tau_syn_inv = 1/dt: the current lasts its own step only
        nt.LIFCell(nt.LIFParameters(tau_syn_inv=torch.as_tensor(1 / dt),
                                    tau_mem_inv=torch.as_tensor(200.0),
                                    v_th=torch.as_tensor(0.5)), dt=dt),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 5),
        nt.LIFBoxCell(nt.LIFBoxParameters(tau_mem_inv=100.0 + 400.0 * torch.rand(16, 1, 1),
                                          v_th=torch.as_tensor(0.3),
                                          reset_method=reset_subtract), dt=dt),
        nn.AvgPool2d(2), nn.Flatten(), nn.Dropout(0.3),
        nn.Linear(16 * 4 * 4, 10),
        # leak and reset at -0.2: the IR shifts them to 0 when folding
        nt.LIFBoxCell(nt.LIFBoxParameters(tau_mem_inv=torch.as_tensor(300.0),
                                          v_leak=torch.as_tensor(-0.2),
                                          v_reset=torch.as_tensor(-0.2),
                                          v_th=torch.as_tensor(0.4)), dt=dt))
    return seeded(net, gain=(1.0, 2.0, 8.0))


def norse_seq_net():
    torch.manual_seed(1)
    p = nt.LIFParameters(tau_syn_inv=torch.as_tensor(1000.0), tau_mem_inv=torch.as_tensor(300.0),
                         v_th=torch.as_tensor(0.4))
    net = nt.SequentialState(
        nt.Lift(nn.Conv2d(1, 8, 5, stride=2)), nt.LIF(p),
        nt.Lift(nn.MaxPool2d(2)), nn.Flatten(start_dim=2),
        nn.Linear(8 * 6 * 6, 10), nt.LIF(p))
    return seeded(net, gain=(1.0, 3.0))


@torch.no_grad()
def norse_counts(net, x):
    """Spikes per neuron layer, counted from Norse's own outputs (return_hidden=True: every
    layer's output), cells stepped with their state handed back, LIF on the sequence."""
    hidden = nt.SequentialState(*net.children(), return_hidden=True).eval()
    if any(isinstance(m, nt.LIF) for m in net.children()):
        outs, _ = hidden(x.unsqueeze(0).repeat(T, 1, 1, 1, 1))
        per_layer = [o.sum() for o in outs]
    else:
        state, per_layer = None, [0] * len(net)
        for _ in range(T):
            outs, state = hidden(x, state)
            per_layer = [a + o.sum() for a, o in zip(per_layer, outs, strict=True)]
    return {name: int(c) for (name, m), c in zip(net.named_children(), per_layer, strict=True)
            if isinstance(m, (nt.LIFCell, nt.LIFBoxCell, nt.LIF))}


@pytest.mark.parametrize("make", [norse_cell_net, norse_seq_net], ids=["cells", "LIF"])
def test_norse_net_matches_norse(mnist, make):
    x, y = mnist
    net = make()
    loaded = from_norse(net, (1, 28, 28), T)
    g = loaded.graph
    assert g.metadata["time_steps"] == T and g.metadata["source"] == "norse"
    neurons = {n: node for n, node in g.nodes.items() if isinstance(node, ir.LIFNeuron)}
    if make is norse_cell_net:
        # k = dt * tau_mem_inv as Norse computes it; the subtract reset is the IR's soft one
        assert float(neurons["2"].k) == float(torch.tensor(1e-3) * 200.0)
        assert neurons["5"].k.shape == (16, 1, 1) and neurons["5"].v_reset is None
        assert neurons["10"].v_reset == pytest.approx(-0.2) and \
            float(neurons["10"].v_init) == neurons["10"].v_reset
    assert_matches_framework(loaded, x, y, norse_counts(net, x))


@pytest.mark.parametrize("make, shape, message", [
    (lambda: nt.SequentialState(nn.Linear(4, 3), nt.LIFCell(nt.LIFParameters(
        tau_syn_inv=torch.as_tensor(1200.0)))), (4,),  # a current decay below 0
     r"1: norse\.torch\.module\.lif\.LIFCell with dt \* tau_syn_inv = 1\.2 \.\. 1\.2 outside "
     r"\[0, 1\] is not supported.*lower dt or tau_syn_inv"),
    (lambda: nt.SequentialState(nn.Linear(4, 3), nt.LIFBoxCell(nt.LIFBoxParameters(
        v_leak=torch.as_tensor(0.1)))), (4,),
     r"1: .*LIFBoxCell with v_leak=0\.1, v_reset=0, v_th=1 is not supported.*use v_leak = "
     r"v_reset < v_th"),
    (lambda: nt.SequentialState(nn.Linear(4, 3), nt.LIFBoxCell(nt.LIFBoxParameters(
        tau_mem_inv=torch.as_tensor(2000.0)))), (4,),
     r"1: .*LIFBoxCell with dt \* tau_mem_inv = 2 \.\. 2 outside \(0, 1\]"),
    (lambda: nt.SequentialState(nn.Conv2d(1, 2, 3), nt.LIF()), (1, 8, 8),
     r"0: torch\.nn\.modules\.conv\.Conv2d cannot take a \[T, B, \.\.\.\] sequence in a LIF "
     r"net; wrap it in norse\.torch\.Lift"),
    (lambda: nt.SequentialState(nn.Linear(4, 3), nt.LIFAdExCell()), (4,),
     r"1: norse\.torch\.module\.lif_adex\.LIFAdExCell is not supported"),
])
def test_norse_refusals_name_the_module_and_the_fix(make, shape, message):
    with pytest.raises(UnsupportedModuleError) as e:
        import_norse(make(), shape, T)
    assert "\n" not in str(e.value)
    assert re.match(message, str(e.value)), str(e.value)
