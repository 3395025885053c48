"""Residual spiking nets on Lava, run in the real Lava simulator (the Python 3.10 environment):
the floating_pt processes against the float64 IR reference, the fixed_pt processes against
the bit-accurate emulator, every spike of every layer on real MNIST-5k digits
(lowering.lower_residual says how the merges and their timing are built).

One SpikingJelly net holds every merge, so that two Lava runs cover them all: a stem
(conv-BN-PLIF, max pool; the host layer), a SEW block with connect function AND, one with IAND,
one with ADD (its graded 0 / 1 / 2 feed the next block's synapses), a Spiking ResNet block
`sn2(bn2(conv2(sn1(bn1(conv1 x)))) + x)` with the identity shortcut (of the SEW ADD's graded
values), then FC-PLIF and voting. The paths into each merge differ in hop count (the shortcut
skips two or more synapses), so every merge exercises the delays. Narrow (4 channels) and on
the digits averaged down to 14 x 14, so that the CPU simulation stays fast; random weights
made to spike as tests/test_residual.py makes them.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from spikingjelly.activation_based import functional, layer, neuron
from test_residual import SEWBlock, conv_bn

from snnexport.backends import Lowered
from snnexport.check import check, from_spikingjelly
from snnexport.data import load_dataset
from snnexport.errors import SnnexportError
from snnexport.hw.cores import lower as lower_cores
from snnexport.lava.lowering import is_residual
from snnexport.lava.lowering import lower as lava_lower
from snnexport.lava.runner import fixed_residual_stages

T = 4
M = 2  # voting population
SAMPLES = 4
DS = load_dataset("mnist5k")


def small(x: torch.Tensor) -> torch.Tensor:
    """MNIST-5k digits averaged 2 x 2 down to 14 x 14."""
    return torch.nn.functional.avg_pool2d(x, 2)


def mnist14():
    """The data of these tests (`--data test_lava_residual:mnist14`): the 14 x 14 digits,
    training ones to calibrate the fixed point on."""
    return dict(x_train=small(DS.x_train[:200]), y_train=DS.y_train[:200],
                x=small(DS.x_test[:SAMPLES]), y=DS.y_test[:SAMPLES])


class IdentityBlock(torch.nn.Module):
    """Spiking ResNet's basic block, identity shortcut: sn2(bn2(conv2(sn1(bn1(conv1 x)))) + x)."""

    def __init__(self, c):
        super().__init__()
        self.conv1, self.bn1 = conv_bn(c, c)
        self.sn1 = neuron.ParametricLIFNode()
        self.conv2, self.bn2 = conv_bn(c, c)
        self.sn2 = neuron.ParametricLIFNode()

    def forward(self, x):
        out = self.bn2(self.conv2(self.sn1(self.bn1(self.conv1(x)))))
        return self.sn2(out + x)


class Net(torch.nn.Module):
    def __init__(self, c=4):
        super().__init__()
        self.stem = torch.nn.Sequential(*conv_bn(1, c), neuron.ParametricLIFNode(),
                                        layer.MaxPool2d(2))
        self.sew_and = SEWBlock(c, "AND")
        self.sew_iand = SEWBlock(c, "IAND")
        self.sew_add = SEWBlock(c, "ADD")
        self.res = IdentityBlock(c)
        self.flat = layer.Flatten()
        self.fc = layer.Linear(c * 7 * 7, 10 * M)
        self.sn = neuron.ParametricLIFNode()
        self.vote = layer.VotingLayer(M)

    def forward(self, x):
        x = self.res(self.sew_add(self.sew_iand(self.sew_and(self.stem(x)))))
        return self.vote(self.sn(self.fc(self.flat(x))))


MERGES = {"sew_and.and": "and", "sew_iand.iand": "iand", "sew_add.add": "add",
          "res.add": "core"}


@functools.cache
def loaded():
    """Random weights; BN statistics measured on real digits, then perturbed; every PLIF its
    own tau; weights scaled so that every layer spikes (as tests/test_residual.py)."""
    torch.manual_seed(0)
    net = Net()
    functional.set_step_mode(net, "m")
    bns = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.weight.mul_(3)
            if isinstance(m, torch.nn.Linear):
                m.weight.mul_(10)
            if isinstance(m, neuron.ParametricLIFNode):
                m.w.uniform_(-1.0, 1.0)
        for m in bns:
            m.momentum = None
            m.weight.uniform_(0.5, 1.5)
            m.bias.uniform_(0.2, 0.8)
        net.train()
        net(small(DS.x_train[:64]).unsqueeze(0).repeat(T, 1, 1, 1, 1))
        functional.reset_net(net)
        for m in bns:
            m.running_mean.add_(torch.empty_like(m.running_mean).uniform_(-0.1, 0.1))
    model = from_spikingjelly(net.eval(), (1, 14, 14), T, name="lava_residual")
    return model, Lowered(model.graph)


DATA = f"{__name__}:mnist14"
LAYERS = {"stem.2", "sew_and.sn1", "sew_and.sn2", "sew_iand.sn1", "sew_iand.sn2",
          "sew_add.sn1", "sew_add.sn2", "res.sn1", "res.sn2", "sn"}


def test_the_graph_has_every_merge_and_lava_times_the_paths():
    """The merges are there, and the paths into each are timed by hop depth
    (lowering.lower_residual): the shortcut into a SEW AND / IAND neuron waits 2 steps (a
    delayed unit matrix); the SEW ADD's summands reach each synapse behind it at once (its
    shortcut 2 steps late: a conv, so through a relay); the Spiking ResNet add's identity
    shortcut (the SEW ADD's two summands) waits for conv1-conv2 (delayed unit matrices)."""
    model, lowered = loaded()
    cores = lower_cores(lowered.folded)
    assert is_residual(cores)
    found = {c.name: c.op for c in cores.spike_merges}
    found.update({c.merge: "core" for c in cores.neuron_cores if len(c.synapses) > 1})
    assert found == MERGES
    _, _, stages, _ = lava_lower(lowered.folded)
    by_key = {st.key: st for st in stages}
    depth = {k: st.depth for k, st in by_key.items()}
    delays = {k: sorted((lk.source, lk.delay) for lk in st.links) for k, st in by_key.items()}
    # stem 0, its pool 1; a SEW block: sn1 +1, sn2 +2, its AND / IAND neuron +3
    assert [depth[k] for k in ("stem.2", "stem.3", "sew_and.sn1", "sew_and.sn2",
                               "sew_and.and", "sew_iand.iand")] == [0, 1, 2, 3, 4, 7]
    assert delays["sew_and.and"] == [("sew_and.sn2", 0), ("stem.3", 2)]
    assert delays["sew_iand.iand"] == [("sew_and.and", 2), ("sew_iand.sn2", 0)]
    # the SEW ADD is no stage: res.sn1's conv takes both summands, the shortcut 2 steps late
    # through a relay (the spikes repeated 2 steps later, so that the conv is not delayed)
    assert "sew_add.add" not in by_key
    assert delays["res.sn1"] == [("sew_add.sn2", 0), ("sew_iand.iand@+2", 0)]
    relay = by_key["sew_iand.iand@+2"]
    assert (relay.name, relay.depth, delays[relay.key]) == ("", 9, [("sew_iand.iand", 1)])
    assert delays["res.sn2"] == [("res.sn1", 0), ("sew_add.sn2", 1), ("sew_iand.iand", 3)]
    kinds = {k: sorted((lk.source, lk.unit is not None, lk.conv is not None)
                       for lk in st.links if lk.delay) for k, st in by_key.items()}
    assert kinds["res.sn2"] == [("sew_add.sn2", True, False), ("sew_iand.iand", True, False)]
    net, _ = lowered.fixed(mnist14()["x_train"])
    fixed = {st.key: sorted((lk.source, lk.delay) for lk in st.links)
             for st in fixed_residual_stages(net)}
    assert fixed == delays  # the fixed-point IR is timed alike


@pytest.mark.parametrize("target", ["lava-float", "lava-fixed"])
def test_lava_runs_a_residual_net_spike_for_spike(target):
    """lava-float vs the float64 IR reference, lava-fixed vs the emulator: every spike of every
    layer, aligned, and the readout, on 4 real digits."""
    model, lowered = loaded()
    report = check(model, target, data=DATA, samples=SAMPLES, lowered=lowered,
                   reference_dtype=torch.float64)
    assert report.samples == SAMPLES
    assert {lay.name for lay in report.layers} == LAYERS
    assert all(lay.spikes_reference > 0 for lay in report.layers), report.text()
    assert report.exact, report.text()
    if target == "lava-fixed":  # nothing saturated: the integers are the whole story
        assert all(row["v_clipped"] == row["u_wrapped"] == row["bias_clipped"] == 0
                   for row in report.quantisation), report.text()


def test_frame_sequences_drive_a_residual_net_step_by_step():
    """Event-style input (lava-float, the cheaper run; the fixed path shares the schedule):
    each sample a sequence of T 0/1 frames (the digits rate-coded), the host current set
    through Lava's runtime before every step."""
    model, lowered = loaded()
    data = mnist14()
    gen = torch.Generator().manual_seed(0)
    x = data["x"] - data["x"].amin()
    frames = (torch.rand(T, *x.shape, generator=gen) < x / x.amax()).double()
    report = check(model, "lava-float", data=DATA, inputs=(frames, data["y"]),
                   samples=SAMPLES, reference_dtype=torch.float64)
    assert report.samples == SAMPLES
    assert all(lay.spikes_reference > 0 for lay in report.layers), report.text()
    assert report.exact, report.text()


def test_netx_still_refuses_the_residual_net_naming_the_merge():
    model, lowered = loaded()
    with pytest.raises(SnnexportError) as err:
        check(model, "netx", data=DATA, samples=SAMPLES, lowered=lowered)
    msg = str(err.value)
    assert "'sew_and.and'" in msg and "residual merge" in msg and "\n" not in msg, msg


def test_the_merge_neurons_compute_and_and_iand_exactly():
    """The SEW AND / IAND neurons' numbers (lowering.MERGE_FLOAT / MERGE_FIXED) on every pair
    of spikes: float a_in = w_a a + w_b b fires above the threshold; fixed a_in << 6 fires
    above vth_mant << 6, and what stays in v decays to 0 in one step (dv = 4095)."""
    from snnexport.lava.lowering import MERGE_FIXED, MERGE_FLOAT

    want = {"and": [0, 0, 0, 1], "iand": [0, 1, 0, 0]}
    pairs = [(0, 0), (0, 1), (1, 0), (1, 1)]
    for op, expected in want.items():
        w_a, w_b, thr = MERGE_FLOAT[op]
        assert [int(w_a * a + w_b * b > thr) for a, b in pairs] == expected
        w_a, w_b, vth = MERGE_FIXED[op]
        v = [(w_a * a + w_b * b) << 6 for a, b in pairs]
        assert [int(x > vth << 6) for x in v] == expected
        assert all(int(np.sign(x) * (abs(x) * 1 >> 12)) == 0 for x in v)  # residue: 0


def test_the_relay_neurons_repeat_a_spike_train_exactly():
    """A relay (lowering.relay_stage: a delayed conv reads the spikes it repeats) fires on one
    input spike and not on none: float weight 1 over threshold 0.5; fixed weight 2, a_in << 6
    = 128 over vth_mant 1 << 6, and what stays in v decays to 0 in one step (dv = 4095)."""
    from snnexport.lava.lowering import RELAY_FIXED, RELAY_FLOAT

    w, thr = RELAY_FLOAT
    assert [int(w * s > thr) for s in (0, 1)] == [0, 1]
    w, vth = RELAY_FIXED
    assert [int((w * s) << 6 > vth << 6) for s in (0, 1)] == [0, 1]
    assert w % 2 == 0 and ((w << 6) >> 12) == 0  # kept by 8-bit truncation; no residue
