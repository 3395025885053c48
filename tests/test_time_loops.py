"""Networks whose forward loops over time with explicit neuron state, written as snnTorch's
tutorials and Norse's custom modules write them, imported (snnexport.importers.time_loop) and
checked spike for spike against their own forward on real MNIST-5k test images."""

import os
import re
import subprocess
import sys
import textwrap

import norse.torch as nt
import pytest
import snntorch as snn
import snntorch.functional as SF
import torch
import torch.nn.functional as F
from torch import nn

from snnexport.check import check, from_norse, from_snntorch, load_module
from snnexport.data import load_dataset
from snnexport.importers.torch_layers import UnsupportedModuleError
from snnexport.ir import nodes as ir

SAMPLES = 200
num_steps = 25  # a global, as in snnTorch's tutorials
CONV_T = 8  # the conv nets' steps (fewer than the tutorial's 25: make test stays fast)
NORSE_T = 6  # the Norse nets loop over their input's steps


@pytest.fixture(scope="module")
def mnist():
    ds = load_dataset("mnist5k")
    return ds.x_test[:SAMPLES], ds.y_test[:SAMPLES]


# --- the networks, as their authors write them ----------------------------------------------

class Tutorial5(nn.Module):
    """snnTorch Tutorial 5's fully connected net (784-1000-10, Leaky beta=0.95), here with
    a learnable beta (one per neuron) and threshold, reset to zero (NIR states that reset);
    the input flattened in forward."""

    def __init__(self, reset="zero"):
        super().__init__()
        self.fc1 = nn.Linear(784, 1000)
        self.lif1 = snn.Leaky(beta=0.95 * torch.ones(1000), learn_beta=True,
                              learn_threshold=True, reset_mechanism=reset)
        self.fc2 = nn.Linear(1000, 10)
        self.lif2 = snn.Leaky(beta=0.95, learn_beta=True, learn_threshold=True,
                              reset_mechanism=reset)

    def forward(self, x):
        mem1 = self.lif1.init_leaky()
        mem2 = self.lif2.init_leaky()
        spk2_rec = []
        mem2_rec = []
        for step in range(num_steps):  # noqa: B007 (the tutorial's loop)
            cur1 = self.fc1(x.view(x.size(0), -1))
            spk1, mem1 = self.lif1(cur1, mem1)
            cur2 = self.fc2(spk1)
            spk2, mem2 = self.lif2(cur2, mem2)
            spk2_rec.append(spk2)
            mem2_rec.append(mem2)
        return torch.stack(spk2_rec, dim=0), torch.stack(mem2_rec, dim=0)


class Tutorial6(nn.Module):
    """snnTorch Tutorial 6's convolutional net (12C5-MP2-64C5-MP2-1024FC10), its time loop in
    forward, reading x[step] of a [T, B, 1, 28, 28] input; beta per channel on the second
    layer and per neuron on the last. pool_first: pool the conv's current before the neuron,
    as the tutorial does (a max of real values, which folding cannot state); else pool the
    spikes after it (an OR)."""

    def __init__(self, pool_first=False, num_steps=8):
        super().__init__()
        self.pool_first, self.num_steps = pool_first, num_steps
        self.conv1 = nn.Conv2d(1, 12, 5)
        self.lif1 = snn.Leaky(beta=0.5, reset_mechanism="zero")
        self.conv2 = nn.Conv2d(12, 64, 5)
        self.lif2 = snn.Leaky(beta=0.3 + 0.6 * torch.rand(64, 1, 1), reset_mechanism="zero")
        self.fc1 = nn.Linear(64 * 4 * 4, 10)
        self.lif3 = snn.Leaky(beta=0.3 + 0.6 * torch.rand(10), reset_mechanism="zero")

    def forward(self, x):
        mem1 = self.lif1.reset_mem()
        mem2 = self.lif2.reset_mem()
        mem3 = self.lif3.reset_mem()
        spk_rec = []
        for step in range(self.num_steps):
            if self.pool_first:  # a branch on a constant: traced as the one it takes
                cur1 = F.max_pool2d(self.conv1(x[step]), 2)
                spk1, mem1 = self.lif1(cur1, mem1)
                cur2 = F.max_pool2d(self.conv2(spk1), 2)
                spk2, mem2 = self.lif2(cur2, mem2)
            else:
                spk1, mem1 = self.lif1(self.conv1(x[step]), mem1)
                spk1 = F.max_pool2d(spk1, 2)
                spk2, mem2 = self.lif2(self.conv2(spk1), mem2)
                spk2 = F.max_pool2d(spk2, 2)
            cur3 = self.fc1(spk2.flatten(1))
            spk3, mem3 = self.lif3(cur3, mem3)
            spk_rec.append(spk3)
        return torch.stack(spk_rec)


class NorseNet(nn.Module):
    """A Norse module that calls its cells with their state in its own loop over the
    sequence's steps (as Norse's MNIST tutorial writes it): a current-based LIFCell, a
    LIFBoxCell with per-channel tau_mem_inv, a LIFBoxCell out."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 5)
        self.lif1 = nt.LIFCell(nt.LIFParameters(tau_syn_inv=torch.as_tensor(500.0),
                                                tau_mem_inv=torch.as_tensor(200.0),
                                                v_th=torch.as_tensor(0.3)), dt=1e-3)
        self.conv2 = nn.Conv2d(8, 16, 5)
        self.lif2 = nt.LIFBoxCell(nt.LIFBoxParameters(
            tau_mem_inv=100.0 + 400.0 * torch.rand(16, 1, 1), v_th=torch.as_tensor(0.3)),
            dt=1e-3)
        self.fc = nn.Linear(16 * 4 * 4, 10)
        self.out = nt.LIFBoxCell(nt.LIFBoxParameters(tau_mem_inv=torch.as_tensor(300.0),
                                                     v_th=torch.as_tensor(0.2)), dt=1e-3)

    def forward(self, x):
        seq_length = x.shape[0]
        s1 = s2 = so = None
        zs = []
        for ts in range(seq_length):
            z = self.conv1(x[ts, :])
            z, s1 = self.lif1(z, s1)
            z = F.max_pool2d(z, 2, 2)
            z, s2 = self.lif2(self.conv2(z), s2)
            z = F.avg_pool2d(z, 2)
            z = z.view(-1, 16 * 4 * 4)
            z, so = self.out(self.fc(z), so)
            zs.append(z)
        return torch.stack(zs)


def scaled(net, gain, seed=0):
    """Deterministic weights: torch's default init under `seed` (the caller seeds before
    building), each synapse `gain[i]` times larger so that every neuron layer spikes."""
    synapses = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        for m, g in zip(synapses, gain, strict=True):
            m.weight.mul_(g)
    return net.eval()


def trained_tutorial5(x, y, reset="zero"):
    """Tutorial 5's net after 8 steps of Adam on snnTorch's rate loss (beta and threshold
    learnt along with the weights), as a user brings it."""
    torch.manual_seed(0)
    net = Tutorial5(reset)
    opt = torch.optim.Adam(net.parameters(), lr=5e-3)
    loss = SF.ce_rate_loss()
    for i in range(8):
        xb, yb = x[32 * i:32 * (i + 1)], y[32 * i:32 * (i + 1)]
        opt.zero_grad()
        spk, _ = net(xb)
        loss(spk, yb).backward()
        opt.step()
    return net.eval()


def own_spikes(net, feed):
    """The spikes per step the user's own forward returns, counted here."""
    with torch.no_grad():
        out = net(feed)
    return int((out[0] if isinstance(out, tuple) else out).sum())


def assert_exact(loaded, target, x, y, last, own_last, steps=num_steps):
    """0 unexplained mismatches as the module runs (float32: a spike may differ only where
    the two orders of float32 sums put H within rounding of the threshold, a tie the report
    names), every layer spiking, the output layer's spikes the count the module's own forward
    returned; on the reference target also every spike equal in float64 (report.exact)."""
    report = check(loaded, target, inputs=(x, y), samples=SAMPLES)
    assert report.samples == SAMPLES and report.time_steps == steps
    assert report.unexplained == 0, report.text()
    assert not report.silent_layers and all(layer.spikes_reference > 0
                                            for layer in report.layers), report.text()
    counts = {layer.name: layer.spikes_reference for layer in report.layers}
    assert counts[last] == own_last, (counts, own_last)
    if target == "reference":
        report64 = check(loaded, inputs=(x, y), samples=SAMPLES, reference_dtype=torch.float64)
        assert report64.exact, report64.text()
    return report


# --- snnTorch -------------------------------------------------------------------------------

def test_tutorial5_trained_exact_against_its_own_forward(mnist):
    x, y = mnist
    train = load_dataset("mnist5k")
    net = trained_tutorial5(train.x_train[:256], train.y_train[:256])
    # learnt, not the values it was built with
    assert not torch.all(net.lif1.beta == 0.95) and float(net.lif2.threshold.detach()) != 1.0
    loaded = from_snntorch(net, (1, 28, 28), num_steps)
    g = loaded.graph
    assert list(g.nodes) == ["input", "flatten", "fc1", "lif1", "fc2", "lif2"]
    assert g.metadata["time_loop"] == {"input": "static", "output": 0, "of": "lif2"}
    lif1 = g.nodes["lif1"]
    assert lif1.reset == "hard" and lif1.decay.shape == (1000,)
    assert torch.equal(torch.as_tensor(lif1.decay), net.lif1.beta.detach().clamp(0, 1))
    thr = float(net.lif2.threshold.detach())
    assert g.nodes["lif2"].threshold == float(torch.tensor(thr, dtype=torch.float64)
                                              .nextafter(torch.tensor(float("inf"),
                                                                      dtype=torch.float64)))
    own = own_spikes(net, x)
    for target in ("reference", "nir", "onnx"):
        assert_exact(loaded, target, x, y, "lif2", own)


def test_tutorial5_subtract_reset_exact_and_nir_refuses_it(mnist):
    """Tutorial 5 as written (snnTorch's default subtract reset, beta 0.95): the soft reset
    by thr / beta, exact on the reference and ONNX; NIR has no reset amount: one line naming
    the layer."""
    x, y = mnist
    train = load_dataset("mnist5k")
    net = trained_tutorial5(train.x_train[:256], train.y_train[:256], reset="subtract")
    loaded = from_snntorch(net, (1, 28, 28), num_steps)
    assert loaded.graph.nodes["lif1"].reset == "soft"
    own = own_spikes(net, x)
    for target in ("reference", "onnx"):
        report = check(loaded, target, inputs=(x, y), samples=SAMPLES)
        assert report.unexplained == 0 and not report.silent_layers, report.text()
        assert {la.name: la.spikes_reference for la in report.layers}["lif2"] == own
    with pytest.raises(Exception) as e:
        check(loaded, "nir", inputs=(x, y), samples=SAMPLES)
    assert "\n" not in str(e.value) and "lif1" in str(e.value), str(e.value)


def test_tutorial6_conv_exact_against_its_own_forward(mnist):
    """The conv net with its spikes pooled (an OR): exact on the reference, NIR and ONNX."""
    x, y = mnist
    torch.manual_seed(1)
    net = scaled(Tutorial6(), gain=(3.0, 2.0, 3.0))
    loaded = from_snntorch(net, (1, 28, 28), CONV_T)
    g = loaded.graph
    assert list(g.nodes) == ["input", "conv1", "lif1", "lif1.max_pool2d", "conv2", "lif2",
                             "lif2.max_pool2d", "lif2.max_pool2d.flatten", "fc1", "lif3"]
    assert g.metadata["time_loop"]["input"] == "sequence"
    assert g.nodes["lif2"].decay.shape == (64, 1, 1) and g.nodes["lif3"].decay.shape == (10,)
    own = own_spikes(net, x.unsqueeze(0).expand(CONV_T, *x.shape))
    for target in ("reference", "nir", "onnx"):
        assert_exact(loaded, target, x, y, "lif3", own, CONV_T)


def test_tutorial6_as_written_exact_on_the_float_targets_refused_on_nir_and_chips(mnist):
    """Tutorial 6 pools the conv's current before the neuron: a max of real values, which
    the reference and ONNX compute (SpikePool 'max') exactly as the module does; NIR (no
    max-pool node) and the chip targets (no max of currents) refuse it in one line naming
    the pool."""
    x, y = mnist
    torch.manual_seed(1)
    net = scaled(Tutorial6(pool_first=True), gain=(3.0, 2.0, 3.0))
    loaded = from_snntorch(net, (1, 28, 28), CONV_T)
    assert list(loaded.graph.nodes) == ["input", "conv1", "conv1.max_pool2d", "lif1", "conv2",
                                        "conv2.max_pool2d", "lif2", "lif2.flatten", "fc1",
                                        "lif3"]
    own = own_spikes(net, x.unsqueeze(0).expand(CONV_T, *x.shape))
    for target in ("reference", "onnx"):
        assert_exact(loaded, target, x, y, "lif3", own, CONV_T)
    for target in ("nir", "fixed"):
        with pytest.raises(Exception, match=r"conv1\.max_pool2d.*max-pool of graded") as e:
            check(loaded, target, inputs=(x[:20], y[:20]), samples=20)
        assert "\n" not in str(e.value)


def test_synaptic_loop_with_a_current_head_exact(mnist):
    """snnTorch's Synaptic (a current-based neuron) in a loop over a [T, B, ...] input's own
    steps (len(x)), the last layer a current per step with no neuron after it, read out as its
    mean over time (readout membrane)."""
    x, y = mnist

    class Syn(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(784, 100)
            self.lif1 = snn.Synaptic(alpha=0.8, beta=0.9, reset_mechanism="zero",
                                     reset_delay=False)
            self.fc2 = nn.Linear(100, 10)

        def forward(self, x):
            syn1, mem1 = self.lif1.init_synaptic()
            rec = []
            for step in range(len(x)):
                spk1, syn1, mem1 = self.lif1(self.fc1(x[step].flatten(1)), syn1, mem1)
                rec.append(self.fc2(spk1))
            return torch.stack(rec)

    torch.manual_seed(4)
    net = scaled(Syn(), gain=(3.0, 1.0))
    loaded = from_snntorch(net, (1, 28, 28), 6, readout="membrane")
    g = loaded.graph
    assert list(g.nodes) == ["input", "flatten", "fc1", "lif1", "fc2", "fc2.readout",
                             "fc2.output"]
    assert float(g.nodes["lif1"].current_decay) == float(torch.tensor(0.8))
    with torch.no_grad():
        own = net(x.unsqueeze(0).expand(6, *x.shape)).mean(0).argmax(1)
    for target in ("reference", "onnx"):
        report = check(loaded, target, inputs=(x, y), samples=SAMPLES)
        assert report.unexplained == 0 and not report.silent_layers, report.text()
        # the predictions: the class of the largest mean current the module's forward returns
        assert report.correct_reference == int((own == y).sum())


# --- Norse ----------------------------------------------------------------------------------

def test_norse_custom_forward_exact_against_its_own_forward(mnist):
    x, y = mnist
    torch.manual_seed(2)
    net = scaled(NorseNet(), gain=(3.0, 3.0, 4.0))
    loaded = from_norse(net, (1, 28, 28), NORSE_T)
    g = loaded.graph
    assert list(g.nodes) == ["input", "conv1", "lif1", "lif1.max_pool2d", "conv2", "lif2",
                             "lif2.avg_pool2d", "lif2.avg_pool2d.flatten", "fc", "out"]
    neurons = {n: node for n, node in g.nodes.items() if isinstance(node, ir.LIFNeuron)}
    assert list(neurons) == ["lif1", "lif2", "out"]
    # k = dt * tau_mem_inv, k_syn = dt * tau_syn_inv as Norse computes them (float32)
    assert float(neurons["lif1"].k) == float(torch.tensor(1e-3) * 200.0)
    assert float(neurons["lif1"].k_syn) == float(torch.tensor(1e-3) * 500.0)
    assert neurons["lif2"].k.shape == (16, 1, 1)
    own = own_spikes(net, x.unsqueeze(0).expand(NORSE_T, *x.shape))
    for target in ("reference", "onnx"):
        assert_exact(loaded, target, x, y, "out", own, NORSE_T)


def test_norse_box_cells_custom_forward_exact_on_nir(mnist):
    """NIR: box cells (no current) and pooling after spikes."""
    x, y = mnist

    class Box(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 8, 5, stride=2)
            self.lif = nt.LIFBoxCell(nt.LIFBoxParameters(v_th=torch.as_tensor(0.3)), dt=1e-2)
            self.fc = nn.Linear(8 * 6 * 6, 10)
            self.out = nt.LIFBoxCell(nt.LIFBoxParameters(v_th=torch.as_tensor(0.2)), dt=1e-2)

        def forward(self, x):
            s = so = None
            zs = []
            for t in range(len(x)):
                z, s = self.lif(self.conv(x[t]), s)
                z = F.max_pool2d(z, 2)
                z, so = self.out(self.fc(torch.flatten(z, 1)), so)
                zs.append(z)
            return torch.stack(zs, 0)

    torch.manual_seed(3)
    net = scaled(Box(), gain=(2.0, 3.0))
    loaded = from_norse(net, (1, 28, 28), NORSE_T)
    own = own_spikes(net, x.unsqueeze(0).expand(NORSE_T, *x.shape))
    for target in ("reference", "nir", "onnx"):
        assert_exact(loaded, target, x, y, "out", own, NORSE_T)


# --- what a loop cannot say: one line naming the module --------------------------------------

class Loop(nn.Module):
    """fc1 -> lif1 -> fc2 -> lif2 with a forward given as `body(self, x, step, state)`."""

    def __init__(self, body, steps=4, fresh=True, **lif):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(4, 3), nn.Linear(3, 2), nn.Linear(3, 2)
        self.lif1, self.lif2 = snn.Leaky(beta=0.9, **lif), snn.Leaky(beta=0.9, **lif)
        self.body, self.steps, self.fresh = body, steps, fresh

    def forward(self, x):
        st = {"m1": self.lif1.init_leaky() if self.fresh else self.lif1.mem,
              "m2": self.lif2.init_leaky()}
        rec = []
        for step in range(self.steps):
            rec.append(self.body(self, x, step, st))
        return torch.stack(rec)


def plain(n, x, step, st):
    s1, st["m1"] = n.lif1(n.fc1(x), st["m1"])
    s2, st["m2"] = n.lif2(n.fc2(s1), st["m2"])
    return s2


def mixed_state(n, x, step, st):
    s1, st["m1"] = n.lif1(n.fc1(x), st["m1"])
    s2, st["m2"] = n.lif2(n.fc2(s1), st["m1"] if step else st["m2"])
    return s2


def reset_in_the_middle(n, x, step, st):
    if step == 2:
        st["m1"] = n.lif1.init_leaky()
    return plain(n, x, step, st)


def differs_per_step(n, x, step, st):
    s1, st["m1"] = n.lif1(n.fc1(x), st["m1"])
    s2, st["m2"] = n.lif2((n.fc2 if step < 2 else n.fc3)(s1), st["m2"])
    return s2


def data_dependent(n, x, step, st):
    s1, st["m1"] = n.lif1(n.fc1(x), st["m1"])
    if s1.sum() > 0:
        s1 = s1 * 2
    s2, st["m2"] = n.lif2(n.fc2(s1), st["m2"])
    return s2


def fixed_batch(n, x, step, st):
    return plain(n, x.view(32, -1), step, st)


def twice(n, x, step, st):
    s1, st["m1"] = n.lif1(n.fc1(x), st["m1"])
    s1, st["m1"] = n.lif1(n.fc1(x), st["m1"])
    s2, st["m2"] = n.lif2(n.fc2(s1), st["m2"])
    return s2


def state_used(n, x, step, st):
    s1, st["m1"] = n.lif1(n.fc1(x), st["m1"])
    s2, st["m2"] = n.lif2(n.fc2(st["m1"]), st["m2"])
    return s2


@pytest.mark.parametrize("body, kw, message", [
    (mixed_state, {}, r"^lif2: its state at step 1 is the state of lif1 at step 1, not its own "
                      r"state from step 0"),
    (reset_in_the_middle, {}, r"^lif1: its state at step 2 is a fresh state \(a reset in the "
                              r"middle of the loop\)"),
    (differs_per_step, {}, r"^Loop: forward computes its step-2 output with other calls than "
                           r"its step-0 output \(fc3 where step 0 has fc2\)"),
    (data_dependent, {}, r"^Loop: its forward cannot be traced by torch\.fx \(TraceError: "
                         r"symbolically traced variables cannot be used as inputs to control "
                         r"flow\)"),
    (fixed_batch, {}, r"^Loop: forward reshapes to \(32, -1\); flatten one sample with "),
    (twice, {}, r"^lif2: its call number 0 \(step 0\) takes an input of step 1 \(a neuron "
                r"called more than once per step"),
    (state_used, {}, r"^Loop: forward applies call_module 'fc2' to a neuron's state"),
    (plain, {"fresh": False}, r"^lif1: starts from the state its last forward left \(lif1\.mem\)"),
    (plain, {"init_hidden": True}, r"^lif1: .*Leaky with init_hidden=True keeps its state "
                                   r"between forwards; .*use init_hidden=False and pass mem"),
    (plain, {"reset_mechanism": "none"}, r"^lif1: .*Leaky with reset_mechanism='none' is not "
                                         r"supported"),
])
def test_loop_refusals_name_the_module(body, kw, message):
    with pytest.raises(UnsupportedModuleError) as e:
        from_snntorch(Loop(body, **kw), (4,), 4)
    assert "\n" not in str(e.value)
    assert re.match(message, str(e.value)), str(e.value)


def test_loop_count_must_equal_the_time_steps():
    with pytest.raises(UnsupportedModuleError, match=r"^Loop: forward loops over 4 steps, but "
                                                     r"time steps 6 were given; give "
                                                     r"--time-steps 4"):
        from_snntorch(Loop(plain), (4,), 6)


@pytest.mark.parametrize("count, indexed, message", [
    (lambda x: x.size(1), True, r"^Loop2: forward uses a size of a traced value \(size\) as a "
                                r"number; only a constant loop count or the input's time "
                                r"dimension"),
    (lambda x: x.size(0), False, r"^Loop2: forward loops over x\.size\(0\) of an input it "
                                 r"does not index by step"),
])
def test_a_loop_over_the_inputs_size_is_its_time_dimension_only(count, indexed, message):
    class Loop2(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.lif = nn.Linear(4, 3), snn.Leaky(beta=0.9)

        def forward(self, x):
            mem, rec = self.lif.init_leaky(), []
            for step in range(count(x)):
                spk, mem = self.lif(self.fc(x[step] if indexed else x), mem)
                rec.append(spk)
            return torch.stack(rec)

    with pytest.raises(UnsupportedModuleError, match=message):
        from_snntorch(Loop2(), (4,), 5)


def test_norse_loop_refusals_name_the_module():
    class Seq(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.lif = nn.Linear(4, 3), nt.LIF()

        def forward(self, x):
            s, zs = None, []
            for _ in range(3):
                z, s = self.lif(self.fc(x), s)
                zs.append(z)
            return torch.stack(zs)

    with pytest.raises(UnsupportedModuleError, match=r"^lif: norse\.torch\.module\.lif\.LIF "
                                                     r"runs a whole sequence; .*LIFCell"):
        from_norse(Seq(), (4,), 3)


def test_load_module_dispatches_a_loop_by_its_neurons():
    loaded = load_module(Loop(plain), (4,), 4)
    assert loaded.graph.metadata["source"] == "snntorch" and "time_loop" in loaded.graph.metadata


# --- the command line ------------------------------------------------------------------------

def test_command_line_checks_a_users_loop_module(tmp_path):
    """`snnexport check --model mymod:build` with the user's module on PYTHONPATH: exit 0,
    exact, on the ONNX target."""
    (tmp_path / "mymod.py").write_text(textwrap.dedent("""
        import snntorch as snn
        import torch
        from torch import nn

        num_steps = 25

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc1 = nn.Linear(784, 1000)
                self.lif1 = snn.Leaky(beta=0.95, reset_mechanism="zero")
                self.fc2 = nn.Linear(1000, 10)
                self.lif2 = snn.Leaky(beta=0.95, reset_mechanism="zero")

            def forward(self, x):
                mem1 = self.lif1.init_leaky()
                mem2 = self.lif2.init_leaky()
                spk2_rec, mem2_rec = [], []
                for step in range(num_steps):
                    spk1, mem1 = self.lif1(self.fc1(x.flatten(1)), mem1)
                    spk2, mem2 = self.lif2(self.fc2(spk1), mem2)
                    spk2_rec.append(spk2)
                    mem2_rec.append(mem2)
                return torch.stack(spk2_rec, dim=0), torch.stack(mem2_rec, dim=0)

        def build():
            torch.manual_seed(0)
            net = Net()
            with torch.no_grad():
                net.fc1.weight.mul_(3.0)
                net.fc2.weight.mul_(4.0)
            return net
    """))
    out = subprocess.run(
        [sys.executable, "-m", "snnexport.cli", "check", "--model", "mymod:build",
         "--input-shape", "1,28,28", "--time-steps", "25", "--data", "mnist5k", "--target",
         "onnx"], capture_output=True, text=True, cwd=tmp_path, timeout=600,
        env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert out.returncode == 0, out.stdout + out.stderr
    assert "exact" in out.stdout and "200 samples" in out.stdout, out.stdout
    wrong = subprocess.run(
        [sys.executable, "-m", "snnexport.cli", "check", "--model", "mymod:build",
         "--input-shape", "1,28,28", "--time-steps", "10", "--data", "mnist5k"],
        capture_output=True, text=True, cwd=tmp_path, timeout=600,
        env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert wrong.returncode == 2 and wrong.stderr.count("\n") == 1, wrong.stderr
    assert "Net: forward loops over 25 steps, but time steps 10 were given; give " \
           "--time-steps 25" in wrong.stderr
