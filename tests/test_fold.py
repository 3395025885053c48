"""Folding passes, the reference simulator, the IR file, and the parity checker.

Each pass is checked on its own: the reference simulator runs the graph before and after the
pass in float64 on real digits, and every spike of every layer must stay the same.
"""

import numpy as np
import pytest
import torch

from snnexport.check import LoadedModel, check
from snnexport.data import load_dataset
from snnexport.importers.plifnet import import_plifnet
from snnexport.ir import Graph, IRError, IRFileError, load_ir, save_ir
from snnexport.ir import nodes as ir
from snnexport.ir.io import from_bytes, to_bytes
from snnexport.models import NetConfig, build_network
from snnexport.parity import run_torch_reference
from snnexport.passes import fold as F
from snnexport.sim.reference import simulate


def random_net(seed=0, **kw):
    """A small random net whose BN statistics come from real digits and are then perturbed
    (so that BN absorption really matters), with every layer active."""
    torch.manual_seed(seed)
    base = dict(in_channels=1, input_size=8, channels=6, time_steps=4, dropout=0.3)
    base.update(kw)
    net = build_network(NetConfig(**base))
    bns = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        for m in bns:
            m.momentum = None  # cumulative average over the calibration batch
            m.weight.uniform_(0.5, 1.5)
            m.bias.uniform_(0.0, 0.8)
        net.train()(load_dataset("digits").x_train[:256])
        for m in bns:
            m.running_mean.add_(torch.empty_like(m.running_mean).uniform_(-0.2, 0.2))
            m.running_var.mul_(torch.empty_like(m.running_var).uniform_(0.7, 1.3))
        for m in net.modules():
            if getattr(m, "v_init", None) is not None:
                m.v_init.uniform_(-0.5, 0.9)
        net.layers.fc1.weight.mul_(6)
        net.layers.fc_out.weight.mul_(6)
    return net.eval()


DIGITS = load_dataset("digits")
X = DIGITS.x_test[:64]

VARIANTS = {
    "per-layer tau": {},
    "per-neuron tau": dict(tau_per="neuron", tau_std=0.3),
    "IMP + LTS": dict(imp=True, readout="lts"),
    "soft reset, decay_input=False": dict(v_reset=None, decay_input=False),
    "V_reset = -0.3": dict(v_reset=-0.3),
    "IF, membrane readout": dict(neuron="if", readout="membrane"),
}


def spikes_equal(a, b):
    assert list(a.spikes) == list(b.spikes)
    for name in a.spikes:
        assert torch.equal(a.spikes[name], b.spikes[name]), name
    assert torch.allclose(a.scores, b.scores, rtol=0, atol=1e-9)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_each_pass_preserves_every_spike(variant):
    g = import_plifnet(random_net(**VARIANTS[variant]))
    before = simulate(g, X)
    assert all(float(s.sum()) > 0 for s in before.spikes.values()), "a silent layer tests nothing"
    for p in F.PASSES:
        g = p(g)
        spikes_equal(before, simulate(g, X))
    F.check_native(g)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_folded_ir_matches_torch_model(variant):
    net = random_net(**VARIANTS[variant])
    report = check(LoadedModel("<test>", import_plifnet(net), net), data="digits", samples=120,
                   reference_dtype=torch.float64)
    assert report.exact and report.unexplained == 0, report.text()
    ref = run_torch_reference(net, X, torch.float64)
    tgt = simulate(F.fold(import_plifnet(net)), X)
    spikes_equal(ref, tgt)


def test_folded_nodes_are_what_the_hardware_takes():
    g = F.fold(import_plifnet(random_net(tau_per="neuron")))
    kinds = [type(n).__name__ for _, n in g.ordered()]
    assert kinds == ["Input", "Conv2d", "Neuron", "SpikePool", "Conv2d", "Neuron", "SpikePool",
                     "Flatten", "Dense", "Neuron", "Dense", "Neuron", "Readout"]
    sn1, sn_fc1 = g.nodes["layers.sn1"], g.nodes["layers.sn_fc1"]
    # per-neuron k varies over space in a conv layer: it stays an explicit input gain ...
    assert sn1.gain is not None and sn1.gain.shape == (6, 8, 8)
    # ... while in a dense layer each neuron has its own weight row, so it folds into W
    assert sn_fc1.gain is None


def test_batchnorm_absorption_formula():
    w, b = np.array([[2.0, -1.0]]), np.array([0.5])
    bn = ir.BatchNorm(mean=np.array([1.0]), var=np.array([3.0]), gamma=np.array([2.0]),
                      beta=np.array([0.25]), eps=1.0)
    g = Graph.chain([("in", ir.Input((2,))), ("fc", ir.Dense(w, b)), ("bn", bn)])
    d = F.absorb_batchnorm(g).nodes["fc"]
    # g/sqrt(var+eps) = 2/2 = 1: W' = W, b' = (0.5 - 1) * 1 + 0.25
    assert d.weight.tolist() == [[2.0, -1.0]] and d.bias.tolist() == [-0.25]


def test_skipped_batchnorm_is_caught_at_the_right_layer():
    net = random_net()
    good = F.fold(import_plifnet(net))
    src = import_plifnet(net)
    wrong = F.fold(src)
    # fold conv2 as if BN2 were not there (the classic export bug)
    raw = src.nodes["layers.conv2"]
    k = float(torch.sigmoid(net.layers.sn2.a.detach()))
    wrong.nodes["layers.conv2"] = ir.Conv2d(raw.weight.astype(np.float64) * k, None,
                                            raw.stride, raw.padding)
    loaded = LoadedModel("<test>", src, net)
    f64 = dict(data="digits", samples=64, reference_dtype=torch.float64)
    assert check(loaded, target_graph=good, **f64).exact
    report = check(loaded, target_graph=wrong, **f64)
    assert not report.exact and report.unexplained > 0
    fd = report.first_divergence
    assert fd["layer"] == "layers.sn2" and fd["cause"] == "unexplained"
    layers = {layer.name: layer for layer in report.layers}
    assert layers["layers.sn1"].mismatches == 0 and layers["layers.sn2"].mismatches > 0


def test_threshold_ties_are_counted_not_hidden():
    # One neuron, k = 0.5, X = 2: H = 1.0 exactly. A target whose threshold sits one float
    # step higher misses that spike; the checker must call it a tie.
    ref_g = Graph.chain([("in", ir.Input((1,))), ("fc", ir.Dense(np.array([[2.0]]))),
                         ("sn", ir.LIFNeuron((1,), np.array(0.5))),
                         ("fc2", ir.Dense(np.ones((10, 1)))),
                         ("vote", ir.Voting(10))], {"time_steps": 1, "readout": "rate"})
    tgt_g = F.fold(ref_g)
    sn = tgt_g.nodes["sn"]
    tgt_g.nodes["sn"] = ir.Neuron(sn.shape, sn.decay, sn.gain, np.nextafter(1.0, 2.0))
    from snnexport.parity import ParityReport, compare

    x = torch.ones(1, 1, dtype=torch.float64)
    ref = simulate(ref_g, x, record_membrane=True)
    tgt = simulate(tgt_g, x, record_membrane=True)
    report = ParityReport("tie test")
    compare(report, ref, tgt, torch.tensor([0]), {"sn": 1.0}, 1e-12)
    (layer,) = report.layers
    assert (layer.spikes_reference, layer.spikes_target, layer.mismatches, layer.ties) == (
        1, 0, 1, 1)
    assert report.first_divergence["cause"] == "threshold tie"
    assert report.unexplained == 0 and not report.exact


def test_a_misaligned_target_is_diagnosed_as_a_delay():
    """A target read one step late from layer sn2 on (as a Lava run aligned for one hop too
    few would be): the first divergence names the delay, not an unexplained error."""
    from snnexport.parity import ParityReport, compare, delay_of
    from snnexport.sim.reference import SimResult

    g = F.fold(import_plifnet(random_net()))
    digits = load_dataset("digits")
    x, y = digits.x_test[:16].double(), digits.y_test[:16]
    ref = simulate(g, x, record_membrane=True)
    names = list(ref.spikes)

    def late(a, by=1):  # nothing in the first `by` steps, then the reference
        return torch.cat([torch.zeros_like(a[:by]), a[:-by]])

    shifted = {n: (late(sp) if i >= 1 else sp) for i, (n, sp) in enumerate(ref.spikes.items())}
    tgt = SimResult(ref.outputs, ref.scores, shifted, {})
    report = ParityReport("late target")
    compare(report, ref, tgt, y, {n: 1.0 for n in names}, 1e-12)
    fd = report.first_divergence
    assert fd["layer"] == names[1] and fd["time_step"] == 0
    assert fd["cause"] == "delay: the target is 1 step(s) late"
    # the detector itself: late, early, and a change no shift explains
    train = ref.spikes[names[0]][:, 0].reshape(4, -1)
    assert delay_of(train, late(train, 2)) == 2
    assert delay_of(late(train, 1), train) == -1
    flipped = train.clone()
    flipped[1, 0] = 1 - flipped[1, 0]
    assert delay_of(train, flipped) == 0


def test_ir_file_round_trip_is_exact_and_deterministic(tmp_path):
    for fold_it in (False, True):
        g = import_plifnet(random_net(imp=True, tau_per="neuron"))
        if fold_it:
            g = F.fold(g)
        p = save_ir(g, tmp_path / "m.snnir")
        back = load_ir(p)
        assert to_bytes(back) == p.read_bytes() == to_bytes(g)  # same IR, same bytes
        for (n1, a), (n2, b) in zip(g.ordered(), back.ordered(), strict=True):
            assert n1 == n2 and type(a) is type(b)
            for k, v in a.arrays().items():
                assert np.array_equal(v, getattr(b, k)) and v.dtype == getattr(b, k).dtype
        spikes_equal(simulate(g, X), simulate(back, X))


def test_bad_ir_files_and_graphs(tmp_path):
    data = to_bytes(F.fold(import_plifnet(random_net())))
    with pytest.raises(IRFileError, match="x.snnir: not an snnexport IR file"):
        from_bytes(b"hello", "x.snnir")
    with pytest.raises(IRFileError, match="outside the file"):
        from_bytes(data[: len(data) - 100], "cut.snnir")
    with pytest.raises(IRFileError, match="no such file"):
        load_ir(tmp_path / "missing.snnir")
    with pytest.raises(IRError, match="node 'fc'.*Dense with weight"):
        Graph.chain([("in", ir.Input((3,))), ("fc", ir.Dense(np.ones((2, 4))))])
    with pytest.raises(IRError, match="BatchNorm follows Flatten"):
        F.absorb_batchnorm(Graph.chain([
            ("in", ir.Input((2, 1, 1))), ("flat", ir.Flatten()),
            ("bn", ir.BatchNorm(np.zeros(2), np.ones(2), np.ones(2), np.zeros(2)))]))
    assert not any((tmp_path).iterdir())
