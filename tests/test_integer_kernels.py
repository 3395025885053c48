"""The integer path on fast kernels (issue 15), checked for exactness against the plain
implementations, on real components:
  * the emulator's fast path (`emulate`: exact GEMMs over T*B, float64 neuron loop) equals the
    plain one (`emulate(reference=True)`: Lava's rules as written, int64) bit for bit: spikes,
    membranes, readout and the saturation statistics, on every bundled model, on the residual
    nets of test_residual_targets.py, on frame inputs, and where the state saturates, the
    current wraps and a conv's sum wraps; with each GEMM kernel it can pick;
  * every synapse kind (dense, conv with stride / padding / groups, depthwise with equal or
    unequal weights, graded inputs) on each kernel against `synapse_sum`;
  * the integer ONNX artifact (MatMulInteger with int8 weights, convs as im2col + the same GEMM,
    depthwise as ConvInteger) against the emulator, and its exactness bounds: the uint8-weight
    and int64 fallbacks taken where the int8 GEMM could saturate or overflow, each exact in
    onnxruntime against int64 numpy."""

from __future__ import annotations

import glob

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from test_fold import random_net
from test_residual_targets import CALIB, KINDS, X, loaded

from snnexport.backends import fixed_point
from snnexport.check import LoadedModel, check, load_model
from snnexport.data import load_dataset
from snnexport.exporters.onnx_common import GraphBuilder, session
from snnexport.exporters.onnx_fixed import (
    I32_MAX,
    _synaptic_sum,
    integer_kernel,
    or_pool,
    sum_bound,
    to_onnx_fixed,
)
from snnexport.importers.plifnet import import_plifnet
from snnexport.passes.fold import fold
from snnexport.quant import EmulatorStats, emulate, quantize
from snnexport.quant.emulator import _fast_synapse, gemm_kernel, host_bias_mant, synapse_sum
from snnexport.quant.fixed import FixedLayer, FixedMerge, FixedNet

MODELS = sorted(glob.glob("examples/models/*.pt"))
GEMMS = ["auto", "int8", "float"]


def assert_same(fast, ref, fast_stats=None, ref_stats=None):
    assert list(fast.spikes) == list(ref.spikes) and list(fast.membrane) == list(ref.membrane)
    for k in ref.spikes:
        assert fast.spikes[k].dtype == ref.spikes[k].dtype
        assert torch.equal(fast.spikes[k], ref.spikes[k]), k
    for k in ref.membrane:
        assert fast.membrane[k].dtype == ref.membrane[k].dtype
        assert torch.equal(fast.membrane[k], ref.membrane[k]), k
    assert torch.equal(fast.outputs, ref.outputs) and torch.equal(fast.scores, ref.scores)
    if ref_stats is not None:
        for what in ("v_clipped", "u_wrapped", "bias_clipped"):
            assert getattr(fast_stats, what) == getattr(ref_stats, what), what
        assert list(fast_stats.saturated) == list(ref_stats.saturated)
        for k, v in ref_stats.saturated.items():
            assert torch.equal(fast_stats.saturated[k], v), k


def both(net, x, gemm="auto", ir_units=True):
    sf, sr = EmulatorStats(), EmulatorStats()
    fast = emulate(net, x, sf, ir_units, gemm=gemm)
    ref = emulate(net, x, sr, ir_units, reference=True)
    assert_same(fast, ref, sf, sr)
    return fast, sf


@pytest.fixture(scope="module", params=MODELS, ids=lambda p: p.split("/")[-1][:-3])
def bundled(request):
    data = "mnist5k" if "mnist" in request.param else "digits"
    ds = load_dataset(data)
    net, _ = fixed_point(fold(load_model(request.param).graph), ds.x_train[:200])
    return net, ds.x_test[:48]


@pytest.mark.parametrize("gemm", GEMMS)
def test_fast_emulator_equals_the_plain_one_on_every_bundled_model(bundled, gemm):
    net, x = bundled
    fast, _ = both(net, x, gemm)
    assert all(int(s.sum()) > 0 for s in fast.spikes.values())
    both(net, x[:8], gemm, ir_units=False)


@pytest.mark.parametrize("kind", KINDS)
def test_fast_emulator_equals_the_plain_one_on_residual_nets(kind):
    _, lowered = loaded(kind)
    net, _ = lowered.fixed(CALIB)
    for gemm in GEMMS:
        fast, _ = both(net, X[:40], gemm)
        assert all(int(s.sum()) > 0 for s in fast.spikes.values())


def test_fast_emulator_on_frames_and_where_the_state_saturates():
    """Frame sequences (the host current per step), membranes clipped at 2^23 - 1 and host
    currents clipped at 13 bits (calibrated on faint images), counted alike."""
    model = random_net(channels=4, tau_per="neuron", imp=True)
    g = fold(import_plifnet(model))
    digits = load_dataset("digits")
    x = digits.x_test[:24]
    net = quantize(g, x * 0.05)
    for gemm in GEMMS:
        _, stats = both(net, x, gemm)
    assert stats.bias_clipped["layers.sn1"] > 0
    frames = (torch.rand(4, 6, *x.shape[1:], generator=torch.Generator().manual_seed(0))
              < x[:6].unsqueeze(0)).double()
    for gemm in GEMMS:
        both(net, frames, gemm)


def _driven(layer, in_shape):
    """`layer` behind a host layer of `in_shape` whose every neuron fires at every step (a
    current of one mantissa step, threshold 0, no memory); the input is [B, 1] or [B, 1, H, W]
    zeros (the host current is its bias)."""
    conv = len(in_shape) == 3
    n = int(np.prod(in_shape))
    host = FixedLayer("h", "host", in_shape,
                      np.zeros((in_shape[0], 1, 1, 1)) if conv else np.zeros((n, 1)),
                      np.full(in_shape, 4095), 0, np.zeros(in_shape, np.int64), 64.0,
                      host_kind="conv" if conv else "dense",
                      bias=np.ones(in_shape[0] if conv else n))
    return FixedNet([host, layer], (1, *in_shape[1:]) if conv else (1,), 3, "membrane", 1)


def test_fast_emulator_wraps_currents_and_conv_sums_like_the_plain_one():
    """A current beyond 24 bits (u = a << 6 wraps), a conv sum beyond 24 bits (Lava's Conv
    wraps it), a membrane driven past 2^23 - 1: the rare paths, against the plain emulator."""
    wide = FixedLayer("n", "dense", (2,), np.full((2, 16), (1 << 17) + 1), np.array([0, 4095]),
                      131071, np.array([0, 0]), 1.0)  # odd weights: the float GEMM
    _, stats = both(_driven(wide, (16,)), torch.zeros(2, 1), ir_units=False)
    assert stats.u_wrapped["n"] > 0 and stats.v_clipped["n"] > 0
    conv = FixedLayer("c", "conv", (1, 4, 4), np.full((1, 1, 3, 3), 1 << 21),
                      np.full((1, 4, 4), 100), 131071, np.zeros((1, 4, 4), np.int64), 1.0,
                      padding=(1, 1))
    for gemm in GEMMS:
        _, stats = both(_driven(conv, (1, 4, 4)), torch.zeros(2, 1, 4, 4), gemm, False)
    assert stats.u_wrapped["c"] > 0


def _onnx_equals_emulator(net, x, debug_too=True):
    """The integer ONNX artifact (bias0 one row for all steps, and one row per step) against
    the emulator: every spike and membrane; the deployment graph's outputs against both.
    Returns the emulator's result and, per layer whose loop is chosen by its sums (the If of
    `to_onnx_fixed`'s `neurons`), whether the loop without wrap and clip ran."""
    emu = emulate(net, x, ir_units=False)
    mant, _ = host_bias_mant(net.layers[0], x.unsqueeze(0), net.input_shape)
    seq = mant.to(torch.int16).numpy()
    model = to_onnx_fixed(net)
    picks = [n.input[0] for n in model.graph.node if n.op_type == "If"
             and n.output[0].startswith("neurons")]
    model.graph.output.extend(helper.make_tensor_value_info(c, TensorProto.BOOL, [])
                              for c in picks)
    sess = session(model)
    for feed in (seq, np.ascontiguousarray(np.broadcast_to(seq, (net.time_steps,
                                                                 *seq.shape[1:])))):
        out = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"bias0": feed}),
                       strict=True))
        for k, s in emu.spikes.items():
            assert np.array_equal(out[f"spikes:{k}"], s.numpy().astype(np.uint8)), k
        for k, h in emu.membrane.items():
            assert np.array_equal(out[f"h:{k}"], h.numpy().astype(np.int64)), k
    deploy = to_onnx_fixed(net, debug=False)
    assert [o.name for o in deploy.graph.output] == ["outputs"]
    assert np.array_equal(session(deploy).run(None, {"bias0": seq})[0], out["outputs"])
    return emu, [bool(out[c]) for c in picks]


def test_integer_onnx_wraps_currents_and_clips_membranes_like_the_emulator():
    """The rare paths in the integer ONNX artifact (int32 throughout): a dense and a conv
    (channels-last) layer whose sums pass 2^17 (u = a << 6 wraps at 24 bits: 600 and 576
    spiking inputs at the largest weights), their membranes driven past 2^23 - 1 (clipped;
    dv = 0 keeps everything), one neuron memoryless (dv = 4095, the float32 decay) beside
    them, the other decays of the float64 kind; against the emulator, whose counts show the
    paths were taken."""
    w = np.full((3, 600), 254)
    w[1] = -256
    dense = FixedLayer("n", "dense", (3,), w, np.array([0, 0, 4095]), 131071,
                       np.zeros(3, np.int64), 1.0)
    stats = EmulatorStats()
    emulate(_driven(dense, (600,)), torch.zeros(2, 1), stats, ir_units=False)
    assert stats.u_wrapped["n"] > 0 and stats.v_clipped["n"] > 0
    assert _onnx_equals_emulator(_driven(dense, (600,)), torch.zeros(2, 1))[1] == [False]
    cw = np.full((2, 64, 3, 3), 254)
    cw[1] = -256
    conv = FixedLayer("c", "conv", (2, 4, 4), cw, np.full((2, 4, 4), 1000), 131071,
                      np.zeros((2, 4, 4), np.int64), 1.0, padding=(1, 1))
    conv.dv[0, 0, 0] = 0
    net = _driven(conv, (64, 4, 4))
    stats = EmulatorStats()
    emulate(net, torch.zeros(2, 1, 4, 4), stats, ir_units=False)
    assert stats.u_wrapped["c"] > 0 and stats.v_clipped["c"] > 0
    assert _onnx_equals_emulator(net, torch.zeros(2, 1, 4, 4))[1] == [False]


@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_integer_onnx_leaves_wrap_and_clip_out_where_the_sums_stay_small(kind):
    """Weights whose bound lets u wrap and v clip (600 or 576 inputs at +-|254|), but rows that
    cancel (+254 on half the inputs, -254 on the rest, six inputs flipped: sums 0, -+12 * 254
    where every input spikes): the loop without wrap and clip runs (`to_onnx_fixed`'s If,
    limit min(2^16 - 1, unclipped_drive / 128)) and equals the emulator; one row of +254
    everywhere (sum 600 * 127 past 2^16) takes the full loop (the wrap test above)."""
    n_in = 600 if kind == "dense" else 64
    w = np.full((3, n_in) if kind == "dense" else (3, 64, 3, 3), 254)
    flat = w.reshape(3, -1)
    flat[:, flat.shape[1] // 2:] = -254
    flat[1, :6] = -254  # row 1 down by 12 * 254, row 2 up (it fires)
    flat[2, -6:] = 254
    dv = np.array([0, 1000, 4095])
    if kind == "dense":
        layer = FixedLayer("n", "dense", (3,), w, dv, 200, np.zeros(3, np.int64), 1.0)
        net, x = _driven(layer, (600,)), torch.zeros(2, 1)
    else:
        layer = FixedLayer("c", "conv", (3, 4, 4), w, np.broadcast_to(dv.reshape(3, 1, 1), (
            3, 4, 4)).copy(), 200, np.zeros((3, 4, 4), np.int64), 1.0, padding=(1, 1))
        net, x = _driven(layer, (64, 4, 4)), torch.zeros(2, 1, 4, 4)
    assert sum_bound(w, 1) * 64 >= 1 << 23  # the wrap could act: the If is built
    emu, fast = _onnx_equals_emulator(net, x)
    assert fast == [True] and emu.spikes[layer.name].any()


SYNAPSES = {
    "dense": dict(kind="dense", shape=(24,), w=(24, 50), x=(50,)),
    "conv": dict(kind="conv", shape=(8, 6, 6), w=(8, 5, 3, 3), x=(5, 6, 6), padding=(1, 1)),
    "conv stride 2": dict(kind="conv", shape=(8, 3, 3), w=(8, 5, 3, 3), x=(5, 6, 6),
                          stride=(2, 2), padding=(1, 1)),
    "grouped conv": dict(kind="conv", shape=(6, 5, 5), w=(6, 2, 2, 2), x=(6, 6, 6), groups=3),
    "depthwise": dict(kind="conv", shape=(5, 3, 3), w=(5, 1, 2, 2), x=(5, 6, 6), groups=5,
                      stride=(2, 2)),
    "pool": dict(kind="conv", shape=(5, 3, 3), w=(5, 1, 2, 2), x=(5, 6, 6), groups=5,
                 stride=(2, 2), pool=True),
}


@pytest.mark.parametrize("name", sorted(SYNAPSES))
@pytest.mark.parametrize("peak", [1, 3])
def test_every_synapse_kind_on_every_kernel_equals_synapse_sum(name, peak):
    spec = SYNAPSES[name]
    rng = np.random.default_rng(7)
    w = np.full(spec["w"], 128) if spec.get("pool") else 2 * rng.integers(-128, 128, spec["w"])
    layer = FixedLayer("s", spec["kind"], spec["shape"], w, np.zeros(1), 0, np.zeros(1), 1.0,
                       stride=spec.get("stride", (1, 1)), padding=spec.get("padding", (0, 0)),
                       groups=spec.get("groups", 1))
    x = torch.from_numpy(rng.integers(0, peak + 1, (40, *spec["x"])))
    if peak == 1:
        x = x.bool()
    ref = synapse_sum(layer, x)
    for gemm in GEMMS:
        a = _fast_synapse(layer, x, layer.shape, gemm)
        assert a.dtype == torch.float64 and torch.equal(a.to(torch.int64), ref), gemm
    odd = FixedLayer(**{**layer.__dict__, "weight": w + 1})  # odd weights: never int8
    assert torch.equal(_fast_synapse(odd, x, layer.shape, "int8").to(torch.int64),
                       synapse_sum(odd, x))


def test_gemm_kernel_takes_int8_only_within_its_bounds():
    w = np.array([[254, -256, 2]])
    assert gemm_kernel(w, 1000, 1, "int8") == "int8"
    assert gemm_kernel(w, 1000, 1, "float") == "float32"  # 1000 * 256 < 2^24
    assert gemm_kernel(w, 1000, 128, "int8") == "float64"  # |x| > 127; 1000*256*128 >= 2^24
    assert gemm_kernel(w + 1, 10, 1, "int8") == "float32"  # odd: not w / 2 in int8
    assert gemm_kernel(w, I32_MAX // 128 + 1, 1, "int8") == "float64"  # int32 would overflow
    with pytest.raises(ValueError, match="not exact in float64"):
        gemm_kernel(np.array([[1 << 40]]), 1 << 20, 1)


def test_integer_onnx_runs_its_synapses_on_the_int8_gemm_and_equals_the_emulator():
    """The bundled MNIST-5k model: dense and conv synapses are MatMulInteger with int8 weights
    (a conv through one Gather of its windows), no neuron loop (T unrolled); every spike and
    membrane equals the emulator's, with bias0 one row per step or one for all (the plain
    mapping's too: ConvInteger, a Scan per layer and pool)."""
    loaded_model = load_model("examples/models/mnist5k_plif.pt")
    report = check(loaded_model, "onnx-fixed", samples=64)
    assert report.exact and all(layer.spikes_reference > 0 for layer in report.layers)
    ds = load_dataset("mnist5k")
    net, _ = fixed_point(fold(loaded_model.graph), ds.x_train[:200])
    model = to_onnx_fixed(net)
    inits = {i.name: i for i in model.graph.initializer}
    mm = [n for n in model.graph.node if n.op_type == "MatMulInteger"]
    assert len(mm) == 3 and all(inits[n.input[1]].data_type == TensorProto.INT8 for n in mm)
    ops = [n.op_type for n in model.graph.node]
    assert "ConvInteger" not in ops and ops.count("MaxPool") == 2  # the two OR-pools
    # the deployment graph: both OR-pools with their layer's neurons (Max of each window's
    # corners; the second conv's GEMM rows corner by corner), no MaxPool; the same in the
    # debug graph where asked; the deployment graph's host layer an If: a static image's
    # trains looked up (test_host_table; the corners' packed trains OR-ed) or the unrolled
    # steps
    pooled = to_onnx_fixed(net, pool2=True)
    for m, lookup in ((pooled, False), (to_onnx_fixed(net, debug=False), True),
                      (to_onnx_fixed(net, debug=False, tables=False), False)):
        ops = all_ops(m.graph)
        assert "MaxPool" not in ops and ops.count("Max") >= 2 * net.time_steps
        assert ("BitwiseOr" in ops) == lookup and ("GatherElements" in ops) == lookup
    assert "Scan" not in ops and "Loop" not in ops  # the T steps unrolled
    plain = to_onnx_fixed(net, plain=True)
    ops = [n.op_type for n in plain.graph.node]
    assert ops.count("ConvInteger") == 3 and ops.count("Scan") == 6
    x = ds.x_test[:16]
    mant, _ = host_bias_mant(net.layers[0], x.unsqueeze(0), net.input_shape)
    seq = mant.expand(net.time_steps, *mant.shape[1:]).to(torch.int16).contiguous().numpy()
    emu = emulate(net, x, ir_units=False)
    # one row per step, or one row for all steps (a static image) where the steps are unrolled
    for m, feed in ((model, seq), (model, seq[:1]), (pooled, seq), (pooled, seq[:1]),
                    (plain, seq)):
        sess = session(m)
        out = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"bias0": feed}),
                       strict=True))
        for k, s in emu.spikes.items():
            assert np.array_equal(out[f"spikes:{k}"], s.numpy().astype(np.uint8)), k
        for k, h in emu.membrane.items():
            assert np.array_equal(out[f"h:{k}"], h.numpy().astype(np.int64)), k
    deploy = session(to_onnx_fixed(net, debug=False)).run(None, {"bias0": seq[:1]})
    assert np.array_equal(deploy[0], out["outputs"])


def all_ops(graph) -> list[str]:
    """The op types of a graph's nodes and of every node in its subgraphs (If branches)."""
    ops = []
    for n in graph.node:
        ops.append(n.op_type)
        for a in n.attribute:
            if a.type == a.GRAPH:
                ops += all_ops(a.g)
    return ops


def _onnx_sum(layer, x: np.ndarray, peak: int) -> np.ndarray:
    g = GraphBuilder()
    a, bound = _synaptic_sum(g, layer, "x", x.shape[2:], peak)
    m = helper.make_model(helper.make_graph(
        g.nodes, "s", [helper.make_tensor_value_info("x", TensorProto.UINT8, list(x.shape))],
        [helper.make_tensor_value_info(a, TensorProto.INT64, [None] * (1 + len(layer.shape)))],
        initializer=g.inits),
        opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(m)
    return session(m).run(None, {"x": x})[0], bound


@pytest.mark.parametrize("name", sorted(SYNAPSES))
def test_integer_onnx_synapses_are_exact_on_each_kernel(name):
    """Each synapse kind through the exporter, on inputs of peak 1 (u8s8), 200 (u8u8: a pair of
    products could pass int16) and, for a fan-in whose int32 sum could overflow, int64."""
    spec = SYNAPSES[name]
    rng = np.random.default_rng(3)
    w = np.full(spec["w"], 128) if spec.get("pool") else 2 * rng.integers(-128, 128, spec["w"])
    layer = FixedLayer("s", spec["kind"], spec["shape"], w, np.zeros(1), 0, np.zeros(1), 1.0,
                       stride=spec.get("stride", (1, 1)), padding=spec.get("padding", (0, 0)),
                       groups=spec.get("groups", 1))
    fan_in = int(np.prod(w.shape[1:]))
    for peak, kernel in ((1, "u8s8"), (200, "u8u8")):
        assert integer_kernel(fan_in, peak) == kernel
        x = rng.integers(0, peak + 1, (1, 12, *spec["x"])).astype(np.uint8)
        a, bound = _onnx_sum(layer, x, peak)
        ref = synapse_sum(layer, torch.from_numpy(x[0].astype(np.int64))).numpy()
        assert np.array_equal(a.reshape(ref.shape), ref), (peak, kernel)
        assert np.abs(ref).max() <= bound == sum_bound(w, peak) < 1 << 23


def test_integer_onnx_falls_back_to_int64_where_int32_could_overflow():
    fan_in = 40_000  # 40000 * 255 * 255 >= 2^31: neither integer GEMM is safe
    assert integer_kernel(fan_in, 255) == "int64"
    rng = np.random.default_rng(5)
    w = np.full((2, fan_in), -256)
    w[1] = 254
    layer = FixedLayer("s", "dense", (2,), w, np.zeros(1), 0, np.zeros(1), 1.0)
    x = np.full((1, 3, fan_in), 255, np.uint8)
    x[0, 1] = rng.integers(0, 256, fan_in)
    a, _ = _onnx_sum(layer, x, 255)
    ref = x[0].astype(np.int64) @ w.T
    assert np.abs(ref).max() > I32_MAX and np.array_equal(a, ref)


def test_integer_onnx_check_on_a_per_neuron_tau_net_with_imp():
    """The parity check of the integer ONNX target on a per-neuron-tau net with IMP (dense
    layers from convs with per-neuron gains): exact against the emulator."""
    model = random_net(channels=4, tau_per="neuron", imp=True, readout="lts")
    report = check(LoadedModel("<t>", import_plifnet(model), model), "onnx-fixed",
                   data="digits", samples=40)
    assert report.exact, report.text()


def test_an_or_pool_of_graded_values_is_a_maxpool_and_exact():
    """An OR-pool behind a SEW ADD (values 0 / 2): MaxPool, clipped to 1, in the integer ONNX;
    a depthwise sum in the emulator; both equal to the plain emulator and the plain mapping."""
    rng = np.random.default_rng(11)
    host = FixedLayer("h", "host", (2, 4, 4), np.ones((2, 1, 1, 1)), np.full((2, 4, 4), 4095),
                      0, np.zeros((2, 4, 4), np.int64), 64.0, host_kind="conv",
                      bias=np.zeros(2))  # fires where the pixel is 1, every step
    pool = FixedLayer("p", "conv", (2, 2, 2), np.full((2, 1, 2, 2), 128),
                      np.full((2, 2, 2), 4095), 0, np.zeros((2, 2, 2), np.int64), 1.0,
                      pool=True, stride=(2, 2), groups=2, source="m")
    dense = FixedLayer("d", "dense", (4,), 2 * rng.integers(-128, 128, (4, 8)),
                       np.full(4, 1024), 100, np.zeros(4, np.int64), 1.0)
    net = FixedNet([host, pool, dense], (1, 4, 4), 3, "rate", 1,
                   merges=[FixedMerge("m", "add", ("h", "h"), (2, 4, 4), peak=2)])
    assert or_pool(pool, 2) and not or_pool(dense, 1)
    x = torch.from_numpy(rng.integers(0, 2, (24, 1, 4, 4))).double()
    emu, _ = both(net, x, ir_units=False)
    assert 0 < int(emu.spikes["d"].sum()) < emu.spikes["d"].numel()
    mant, _ = host_bias_mant(host, x.unsqueeze(0), net.input_shape)
    seq = mant.expand(3, *mant.shape[1:]).to(torch.int16).contiguous().numpy()
    for plain in (False, True):
        model = to_onnx_fixed(net, plain=plain)
        assert ("MaxPool" in {n.op_type for n in model.graph.node}) != plain
        sess = session(model)
        out = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"bias0": seq}),
                       strict=True))
        for k, s in emu.spikes.items():
            assert np.array_equal(out[f"spikes:{k}"], s.numpy().astype(np.uint8)), (plain, k)
        for k, h in emu.membrane.items():
            assert np.array_equal(out[f"h:{k}"], h.numpy().astype(np.int64)), (plain, k)
