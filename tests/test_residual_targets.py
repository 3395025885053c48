"""Residual spiking nets on the targets beyond the reference simulator and NIR: ONNX (float),
the fixed-point IR and its bit-accurate emulator, integer ONNX, Lava float and fixed_pt
(test_lava_residual.py runs every merge there); netx refuses them, with one line naming the
merge node.

The nets are SpikingJelly modules imported through snnexport's importer, as in
test_residual.py: a stem (conv-BN-PLIF, max pool; the host layer on hardware), the block (SEW
with connect function ADD / AND / IAND, `sew_function(x, out)`; Spiking ResNet `sn(bn(conv(x))
+ x)` with the identity shortcut, or with a conv-BN downsample), a head conv-BN-PLIF that takes
the block's output directly (after a SEW ADD its input is graded, 0 / 1 / 2), an average pool
(a sum pool: composed into the synapse behind it on hardware), a readout FC-PLIF and voting.
Checked on the first 200 MNIST-5k test digits.

Weights on the fixed-point grid, so that quantisation rounds nothing and any difference between
the fixed-point emulator and the float SpikingJelly model is the lowering's (a merge whose paths
were scaled inconsistently, the Spiking ResNet add of a conv current and a shortcut, would show
at once): the fixed-point check is exact, spike for spike, which puts its accuracy within 0.5 pp
of the float model's (at 0.0 pp). Every PLIF keeps SpikingJelly's default tau = 2 (k = 1/2: the
decay 1/2, dv = 2048, exactly).
  * Hop layers: the folded weights (BN absorbed; the gain k folded, or kept in a Spiking ResNet
    merge's neuron; an average pool's 1/4 folded) are integers m times 2 / n (|m| <= 127, one of
    them 127 over all the paths of a merge: an identity shortcut is k = 1/2 = 64 * 2 / 256), the
    biases multiples of 1 / n. The quantiser picks S = 64 n and rounds nothing: w = 2 m,
    vth_mant = n, bias_mant = j (quant/fixed.py). n = 256 but for the readout.
  * Host layer: the stem conv has no padding and its weights are integers m over the pixel step
    (MNIST-5k pixels are (p / 255 - mean) / std, p = 0 .. 255), its bias chosen so that the
    current is U (sum m p + q), an integer L times U, the largest |L| on the 200 calibration
    digits 4095 / 1.5 = 2730: the quantiser's host scale is then 64 / U and the 13-bit current
    mantissa is L itself.
  * S H is then an integer at every step (T = 4 halvings of multiples of 64 stay integers: the
    decay's truncation toward zero truncates nothing), and every threshold is set half a step
    of S H above a grid point (1 + 1 / (128 n) for the hop layers): the float model's
    H >= threshold and the fixed point's v > vth_mant << 6 decide alike, and no H lands on a
    threshold, which keeps the float32 ONNX comparison free of ties too.
The hidden layers are random (biases set so that every layer spikes); the readout is a ridge
regression of the class on the pooled head spikes of 1000 training digits, put on the grid.
"""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import torch
from spikingjelly.activation_based import functional, layer, neuron
from test_residual import SEWBlock, SpikingBlock, conv_bn

from snnexport.backends import Lowered
from snnexport.check import check, from_spikingjelly
from snnexport.cli import main
from snnexport.data import load_dataset
from snnexport.errors import SnnexportError
from snnexport.exporters.onnx_export import (
    initial_states,
    synapse_inputs,
    to_onnx,
    to_onnx_step,
)
from snnexport.hw.cores import HardwareLoweringError
from snnexport.ir import Graph, save_ir
from snnexport.ir import nodes as ir
from snnexport.onnx_run import session
from snnexport.quant import QuantError, emulate, load_fixed, quantize, save_fixed
from snnexport.quant.fixed import BIAS_MANT_MAX, HOST_MARGIN
from snnexport.sim.reference import simulate

T = 4
M = 10  # voting population
SAMPLES = 200
DS = load_dataset("mnist5k")
X, Y = DS.x_test[:SAMPLES], DS.y_test[:SAMPLES]
CALIB = DS.x_train[:200]  # what `check` calibrates the fixed point on
K = 0.5  # every PLIF's 1/tau (SpikingJelly's default tau = 2)
N = 256  # threshold mantissa of every hop layer but the readout's (module docstring)
L_MAX = BIAS_MANT_MAX / HOST_MARGIN  # the largest host current, in mantissa steps: 2730
U = 1e-3  # the host current's step (its threshold: 1000 steps)


def threshold(n):
    """1 + 1 / (128 n): half an integer step of S H (S = 64 n) above 1 (module docstring)."""
    return 1.0 + 1.0 / (128 * n)


class IdentityBlock(torch.nn.Module):
    """Spiking ResNet's basic block with the identity shortcut: sn2(bn2(conv2(sn1(bn1(conv1
    x)))) + x)."""

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
    def __init__(self, block, c_out, side):
        super().__init__()
        self.stem = torch.nn.Sequential(layer.Conv2d(1, 4, 3, bias=False),
                                        layer.BatchNorm2d(4), neuron.ParametricLIFNode(),
                                        layer.MaxPool2d(2))
        self.block = block
        self.head = torch.nn.Sequential(*conv_bn(c_out, c_out), neuron.ParametricLIFNode())
        self.pool = layer.AvgPool2d(2)
        self.flat = layer.Flatten()
        self.fc = layer.Linear(c_out * side * side, 10 * M)
        self.sn = neuron.ParametricLIFNode()
        self.vote = layer.VotingLayer(M)

    def features(self, x):
        return self.flat(self.pool(self.head(self.block(self.stem(x)))))

    def forward(self, x):
        return self.vote(self.sn(self.fc(self.features(x))))


# kind -> (block, its output channels, the side of the pooled map, the merge node, its type)
BLOCKS = {
    "sew_add": (lambda: SEWBlock(4, "ADD"), 4, 6, "block.add", ir.Add),
    "sew_and": (lambda: SEWBlock(4, "AND"), 4, 6, "block.and", ir.SEWAnd),
    "sew_iand": (lambda: SEWBlock(4, "IAND"), 4, 6, "block.iand", ir.SEWIAnd),
    "spiking_resnet": (lambda: IdentityBlock(4), 4, 6, "block.add", ir.Add),
    "spiking_resnet_down": (lambda: SpikingBlock(4, 6), 6, 3, "block.add", ir.Add),
}
KINDS = sorted(BLOCKS)


def grid_ints(rng, shape, peak=True):
    """Random integers m in [-127, 127]; one of them 127 when `peak`."""
    m = rng.integers(-127, 128, size=shape)
    if peak:
        m.flat[0] = 127
    return m


def set_bn(bn, rng, g, folded_bias):
    """BN that multiplies by g (gamma = g sqrt(var + eps) in float32: the fold's
    gamma / sqrt(var + eps) is g to 1e-7) and leaves `folded_bias` / k after it."""
    c = bn.num_features
    var = torch.from_numpy(rng.uniform(0.5, 2.0, c)).float()
    mu = torch.from_numpy(rng.uniform(-0.5, 0.5, c)).float()
    bn.running_var.copy_(var)
    bn.running_mean.copy_(mu)
    bn.weight.copy_((g * torch.sqrt(var.double() + bn.eps)).float())
    bn.bias.copy_(torch.from_numpy(g * mu.double().numpy() + folded_bias / K).float())


def set_conv_bn(conv, bn, m, rng, n=N, bias=(-0.2, 0.6)):
    """Folded weights k g W = (2 / n) m, folded biases j / n drawn from `bias`."""
    g = float(rng.uniform(0.5, 2.0))
    conv.weight.copy_(torch.from_numpy(2.0 * m / (n * K * g)).float())
    set_bn(bn, rng, g, np.rint(rng.uniform(*bias, bn.num_features) * n) / n)


def pixels(x: torch.Tensor) -> np.ndarray:
    """The integer pixels p behind MNIST-5k's standardised x = (p / 255 - mean) / std."""
    p = np.rint((x.double().numpy() * DS.std + DS.mean) * 255)
    assert np.abs((p / 255 - DS.mean) / DS.std - x.double().numpy()).max() < 1e-5
    return p


def set_stem(conv, bn, rng):
    """The host current U (sum m p + q) (module docstring): channel 0 an all-positive kernel
    whose largest sum on the calibration digits is set to L_MAX by q, the others mixed-sign
    kernels kept below it."""
    assert L_MAX == int(L_MAX)
    m = rng.integers(-2, 3, size=(4, 1, 3, 3)).astype(np.float64)
    m[0] = rng.integers(1, 4, size=(1, 3, 3))
    sums = torch.nn.functional.conv2d(torch.from_numpy(pixels(CALIB)), torch.from_numpy(m))
    hi = sums.amax(dim=(0, 2, 3)).numpy()
    lo = sums.amin(dim=(0, 2, 3)).numpy()
    q = np.rint(rng.uniform(-0.1, 0.5, 4) * L_MAX)
    q[0] = L_MAX - hi[0]
    q = np.minimum(q, L_MAX - 1 - hi)  # channels 1.. below the largest
    q[0] = L_MAX - hi[0]
    assert lo[0] + q[0] >= -L_MAX and (lo[1:] + q[1:] > -L_MAX).all()
    step = 1 / (255 * DS.std)  # x = step (p - p0), p0 = 255 mean
    g = float(rng.uniform(0.5, 2.0))
    conv.weight.copy_(torch.from_numpy(U * m / (step * K * g)).float())
    folded_bias = U * (q + 255 * DS.mean * m.sum(axis=(1, 2, 3)))
    set_bn(bn, rng, g, folded_bias)


@functools.cache
def build(kind):
    """The SpikingJelly net of `kind`, in eval mode, weights on the grid (module docstring)."""
    make, c_out, side, _, _ = BLOCKS[kind]
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    net = Net(make(), c_out, side)
    functional.set_step_mode(net, "m")
    for name, m in net.named_modules():
        if isinstance(m, neuron.ParametricLIFNode):
            m.v_threshold = U * threshold(1000) * 1000 if name.startswith("stem") else \
                threshold(N)
    blk = net.block
    with torch.no_grad():
        set_stem(net.stem[0], net.stem[1], rng)
        set_conv_bn(blk.conv1, blk.bn1, grid_ints(rng, blk.conv1.weight.shape), rng)
        if isinstance(blk, SpikingBlock):  # two conv paths into sn2: one peak over both
            set_conv_bn(blk.conv2, blk.bn2, grid_ints(rng, blk.conv2.weight.shape), rng)
            down_conv, down_bn = blk.downsample
            set_conv_bn(down_conv, down_bn, grid_ints(rng, down_conv.weight.shape, False), rng,
                        bias=(-0.3, 0.3))
        else:
            set_conv_bn(blk.conv2, blk.bn2, grid_ints(rng, blk.conv2.weight.shape), rng,
                        bias=(-0.6, 0.2) if isinstance(blk, IdentityBlock) else (-0.2, 0.6))
        head_conv, head_bn = net.head[0], net.head[1]
        set_conv_bn(head_conv, head_bn, grid_ints(rng, head_conv.weight.shape), rng,
                    bias=(-0.6, 0.2))
        net.eval()
        fit_readout(net)
        functional.reset_net(net)
    return net


def fit_readout(net, samples=1000):
    """Ridge regression of 2 x one-hot(class) on the pooled head spikes (averaged over T) of
    training digits, the M neurons of a class with gains 0.7 .. 1.6; put on the grid: folded
    k W / 4 = (2 / n) m with n a power of two (every value of the readout is then exact in
    float32) and the fitted weights scaled by up to 2 so that the largest is m = 127."""
    x = DS.x_train[:samples].unsqueeze(0).repeat(T, 1, 1, 1, 1)
    f = net.features(x).mean(0).double()
    functional.reset_net(net)
    f1 = torch.cat([f, torch.ones(len(f), 1, dtype=f.dtype)], 1)
    target = 2.0 * torch.nn.functional.one_hot(DS.y_train[:samples], 10).double()
    sol = torch.linalg.solve(f1.T @ f1 + torch.eye(f1.shape[1], dtype=f.dtype), f1.T @ target)
    gains = torch.linspace(0.7, 1.6, M, dtype=f.dtype)
    w = (sol[:-1].T[:, None, :] * gains[None, :, None]).reshape(10 * M, -1).numpy()
    b = (sol[-1][:, None] * gains[None, :]).reshape(-1).numpy()
    folded = K * w / 4  # what the fold makes of it (gain k, the average pool's 1/4)
    n = 2 ** int(np.floor(np.log2(254 / np.abs(folded).max())))
    scale = 254 / (n * np.abs(folded).max())  # in [1, 2)
    m = np.rint(folded * scale * n / 2)
    assert np.abs(m).max() == 127
    net.fc.weight.copy_(torch.from_numpy(m * 2 / n * 4 / K).float())
    net.fc.bias.copy_(torch.from_numpy(np.rint(K * b * scale * n) / (n * K)).float())
    net.sn.v_threshold = threshold(n)


@functools.cache
def loaded(kind):
    model = from_spikingjelly(build(kind), (1, 28, 28), T, name=kind)
    return model, Lowered(model.graph)


def spikingjelly_counts(kind, x):
    """Spikes per PLIF and the block's output values, from the SpikingJelly module itself
    (forward hooks): the independent side of the exact counts."""
    net = build(kind)
    counts, block_out = {}, []
    hooks = [m.register_forward_hook(lambda _m, _a, o, n=n: counts.__setitem__(n, o))
             for n, m in net.named_modules() if isinstance(m, neuron.ParametricLIFNode)]
    hooks.append(net.block.register_forward_hook(lambda _m, _a, o: block_out.append(o)))
    try:
        with torch.no_grad():
            net(x.unsqueeze(0).repeat(T, 1, 1, 1, 1))
    finally:
        for h in hooks:
            h.remove()
        functional.reset_net(net)
    return {n: int(s.sum()) for n, s in counts.items()}, block_out[0]


@pytest.mark.parametrize("kind", KINDS)
def test_onnx_matches_spikingjelly_exactly(kind):
    model, lowered = loaded(kind)
    merge, merge_type = BLOCKS[kind][3], BLOCKS[kind][4]
    assert type(lowered.folded.nodes[merge]) is merge_type
    report = check(model, "onnx", inputs=(X, Y), samples=SAMPLES, lowered=lowered)
    assert report.samples == SAMPLES and report.exact, report.text()
    counts, block_out = spikingjelly_counts(kind, X)
    assert {lay.name: lay.spikes_target for lay in report.layers} == counts
    assert all(c > 0 for c in counts.values()), counts  # every layer spikes
    # the uint8 inputs of the synapses: binary spikes, or (behind a SEW ADD) graded 0, 1, 2,
    # whose recorded values are the SpikingJelly block's own output
    rows = {r["layer"]: r for r in report.binary}
    sew_add = kind == "sew_add"
    graded = ["head.0"] if sew_add else []
    assert [name for name, r in rows.items() if r["input"] == "graded"] == graded
    assert all(r["inputs_binary"] and r["max_input"] == 1 for name, r in rows.items()
               if name not in graded)
    assert all(r["and_equals_multiply"] for r in rows.values())
    if kind.startswith("sew"):
        head = rows["head.0"]
        assert head["input_spikes"] == int(block_out.sum())
        assert head["max_input"] == int(block_out.max()) == (2 if sew_add else 1)
        assert head["inputs_binary"] == (not sew_add)
        if sew_add:
            assert int((block_out == 2).sum()) > 0
            assert "graded input head.0: values 0..2" in report.text()
    # the artifact says per synapse whether its input is binary (the exporter's own record)
    meta = {p.key: p.value for p in to_onnx(lowered.folded).metadata_props}
    kinds = json.loads(meta["snnexport.synapse_inputs"])
    assert kinds == synapse_inputs(lowered.folded)
    assert {n for n, v in kinds.items() if v == "graded"} == set(graded)


@pytest.mark.parametrize("kind", KINDS)
def test_integer_onnx_is_bit_exact_with_the_emulator(kind):
    model, lowered = loaded(kind)
    report = check(model, "onnx-fixed", data="mnist5k", inputs=(X, Y), samples=SAMPLES,
                   lowered=lowered)
    assert report.samples == SAMPLES and report.exact, report.text()  # tol 0: every spike
    assert all(lay.spikes_reference > 0 for lay in report.layers)
    net, _ = lowered.fixed(CALIB)
    merge = BLOCKS[kind][3]
    if kind.startswith("sew"):
        assert [m.name for m in net.merges] == [merge]
        assert next(lay for lay in net.layers if lay.name == "head.2").source == merge
    else:  # the Spiking ResNet add: one layer, its shortcut a further synapse
        sn2 = next(lay for lay in net.layers if lay.name == "block.sn2")
        assert sn2.merge == merge and len(sn2.synapses) == 1 and not net.merges
    # the grid: the quantiser rounded no weight, every hop threshold is N (module docstring)
    for row in net.report:
        if row["kind"] != "host":
            # (weight_max_error: the float32 source's rounding, far below a weight step)
            assert row["limited_by"] == "weights" and row["weight_max_error"] < 1e-6, row
            assert row["weights_zeroed"] == 0 and row["bias_clipped"] == 0, row
    assert [row["vth_mant"] for row in net.report[1:-1]] == [N] * (len(net.report) - 2)
    host = net.report[0]  # the host current's step is U: its mantissa is L itself
    assert host["kind"] == "host" and host["vth_mant"] == 1000
    assert host["scale"] == pytest.approx(64 / U, rel=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_fixed_point_equals_the_float_model_so_accuracy_is_within_half_a_point(kind):
    """On the grid (module docstring) the fixed-point emulator reproduces the float SpikingJelly
    model spike for spike: the merges (integer ADD, AND, IAND; the Spiking ResNet add of both
    paths at its neuron's scale) lose nothing, and the accuracy is the float model's."""
    model, lowered = loaded(kind)
    report = check(model, "fixed", data="mnist5k", inputs=(X, Y), samples=SAMPLES,
                   lowered=lowered)
    assert report.samples == SAMPLES
    acc_float = report.correct_reference / report.samples
    acc_fixed = report.correct_target / report.samples
    assert acc_float > 0.4, report.text()  # a readout that reads something (chance: 0.1)
    assert abs(acc_fixed - acc_float) <= 0.005, report.text()
    assert report.exact, report.text()
    assert all(row["v_clipped"] == row["u_wrapped"] == row["bias_clipped"] == 0
               for row in report.quantisation), report.text()


@pytest.mark.parametrize("kind", KINDS)
def test_netx_refuses_a_merge_in_one_line_naming_it_and_lava_takes_it(kind):
    model, lowered = loaded(kind)
    merge = BLOCKS[kind][3]
    with pytest.raises(SnnexportError) as err:
        check(model, "netx", data="mnist5k", inputs=(X, Y), samples=2, lowered=lowered)
    msg = str(err.value)
    assert repr(merge) in msg and "residual merge" in msg and "\n" not in msg, msg
    assert isinstance(err.value, (HardwareLoweringError, QuantError)), type(err.value)
    # Lava's processes take it (built here, before Lava starts; run below and in
    # test_lava_residual.py)
    from snnexport.lava.target import LavaFixedTarget, LavaFloatTarget

    assert LavaFloatTarget(lowered.folded).stages
    LavaFixedTarget(lowered.fixed(CALIB)[0])


@pytest.mark.parametrize("target", ["lava-float", "lava-fixed"])
def test_lava_runs_a_spiking_resnet_block_with_a_downsample_exactly(target):
    """The Spiking ResNet block whose shortcut is a strided 1x1 conv (delayed one step behind
    conv1-conv2: Lava's synaptic delay, lava/lowering.py), on the grid (module docstring), 4
    digits: every spike of every layer equals the float model (lava-float; the SpikingJelly
    module's own counts too) or the emulator (lava-fixed)."""
    kind = "spiking_resnet_down"
    model, lowered = loaded(kind)
    report = check(model, target, data="mnist5k", inputs=(X[:4], Y[:4]), samples=4,
                   lowered=lowered)
    assert report.samples == 4 and report.exact, report.text()
    assert all(lay.spikes_reference > 0 for lay in report.layers), report.text()
    if target == "lava-float":
        counts, _ = spikingjelly_counts(kind, X[:4])
        assert {lay.name: lay.spikes_target for lay in report.layers} == counts


def test_a_spiking_resnet_add_is_in_the_scale_of_its_neuron():
    """x -> host dense -> n1 (spikes) -> {dense W2, identity} -> add -> n2 (gain g): both
    paths quantised at n2's one scale S, w = 2 round(S g W / 128); the identity as
    2 round(S g / 128). The emulator's membrane is S times the float one to the rounding."""
    g = 0.5
    w2 = np.array([[1.5, -0.5], [0.25, 1.0]])
    graph = Graph({"x": ir.Input((2,)), "fc1": ir.Dense(np.array([[2.0, 0.0], [0.0, 2.0]])),
                   "n1": ir.Neuron((2,), np.zeros(()), threshold=1.0),
                   "fc2": ir.Dense(w2), "add": ir.Add(),
                   "n2": ir.Neuron((2,), np.full((), 0.5), np.full((), g), threshold=1.0),
                   "readout": ir.Readout(1, "rate")},
                  [("x", "fc1"), ("fc1", "n1"), ("n1", "fc2"), ("fc2", "add"), ("n1", "add"),
                   ("add", "n2"), ("n2", "readout")],
                  {"folded": True, "time_steps": 6, "readout": "rate"})
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.6, 0.2]])
    net = quantize(graph, x)
    n2 = net.layers[1]
    scale = 64 * 254 / (g * 1.5)  # the largest |g W| over both paths: g * 1.5
    assert n2.scale == pytest.approx(scale, rel=1e-12)
    np.testing.assert_array_equal(n2.weight, 2 * np.rint(scale * g * w2 / 128))
    (shortcut,) = n2.synapses
    assert (shortcut.name, shortcut.source, shortcut.kind) == ("n1", "n1", "dense")
    np.testing.assert_array_equal(shortcut.weight, 2 * np.rint(scale * g / 128) * np.eye(2))
    assert n2.merge == "add" and n2.source == ""
    fixed = emulate(net, x)
    ref = simulate(graph, x, record_membrane=True)
    assert torch.equal(fixed.spikes["n2"], ref.spikes["n2"])
    # H in IR units: within the weights' and decay's rounding of the float membrane
    assert torch.allclose(fixed.membrane["n2"], ref.membrane["n2"], atol=2e-2)


def test_a_residual_fixed_ir_file_round_trips(tmp_path):
    model, lowered = loaded("sew_add")
    net, _ = lowered.fixed(CALIB)
    path = save_fixed(net, tmp_path / "m.fixed.npz")
    header = json.loads(np.load(path)["header"].tobytes())
    assert header["version"] == 2 and header["merges"][0]["op"] == "add"
    back = load_fixed(path)
    a, b = emulate(net, X[:50]), emulate(back, X[:50])
    assert list(a.spikes) == list(b.spikes)
    assert all(torch.equal(a.spikes[k], b.spikes[k]) for k in a.spikes)
    assert torch.equal(a.scores, b.scores)


@pytest.mark.parametrize("kind", KINDS)
def test_the_streaming_onnx_artifact_steps_a_residual_net(kind):
    """The one-step artifact (state as inputs / outputs) with the merges inside a step."""
    _, lowered = loaded(kind)
    graph = lowered.folded
    step = session(to_onnx_step(graph))
    x = X[:16].numpy()
    names = [o.name for o in step.get_outputs()]
    state, spikes = initial_states(graph, len(x)), {}
    for _ in range(T):
        out = dict(zip(names, step.run(None, {"x_t": x, **state}), strict=True))
        state = {k.replace("v_next:", "v:"): v for k, v in out.items() if k.startswith("v_next")}
        for k, v in out.items():
            if k.startswith("spikes:"):
                spikes.setdefault(k[7:], []).append(v)
    ref = simulate(graph, torch.from_numpy(x), dtype=torch.float32)
    assert list(spikes) == list(ref.spikes)
    for name, s in ref.spikes.items():
        assert np.array_equal(np.stack(spikes[name]).astype(np.float32), s.numpy()), name


def test_the_command_line_runs_lava_and_refuses_netx_in_one_error_line(tmp_path, capsys):
    _, lowered = loaded("sew_iand")
    path = save_ir(lowered.folded, tmp_path / "sew_iand.snnir")
    assert main(["check", str(path), "--target", "lava-float", "--data", "mnist5k",
                 "--samples", "2"]) == 0
    assert "exact: every spike of every layer is equal" in capsys.readouterr().out
    assert main(["check", str(path), "--target", "netx", "--data", "mnist5k",
                 "--samples", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:"), err
    assert "'block.iand'" in err[0] and "residual merge" in err[0], err
    assert main(["export", str(path), "--to", "netx", "--data", "mnist5k", "-o",
                 str(tmp_path / "m.net")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'block.iand'" in err[0], err
    assert not (tmp_path / "m.net").exists()
