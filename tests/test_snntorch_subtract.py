"""snnTorch's Leaky(beta < 1, reset_mechanism="subtract") imported exactly: the IR's soft reset
by reset_by = thr / beta (snnexport/importers/snntorch.py), run for real against snnTorch's own
forward on MNIST-5k test images (reference simulator and ONNX, every layer), the .snnir round
trip, and the targets that cannot take it refusing in one line."""

import json
import re
import struct

import numpy as np
import pytest
import snntorch as snn
import torch
from torch import nn

from snnexport.check import check, from_snntorch
from snnexport.cli import main
from snnexport.data import load_dataset
from snnexport.exporters.onnx_export import initial_states, to_onnx_step
from snnexport.hw.cores import HardwareLoweringError, lower
from snnexport.importers.snntorch import import_snntorch
from snnexport.importers.spikingjelly import UnsupportedModuleError
from snnexport.ir import IRError, IRFileError, io, load_ir, save_ir
from snnexport.ir import nodes as ir
from snnexport.ir.io import from_bytes, to_bytes
from snnexport.ir.validate import validate
from snnexport.onnx_run import session
from snnexport.passes.fold import fold
from snnexport.sim.reference import run_neuron, simulate

T = 6
SAMPLES = 200
SUB = dict(init_hidden=True, reset_mechanism="subtract")


@pytest.fixture(scope="module")
def mnist():
    ds = load_dataset("mnist5k")
    return ds.x_test[:SAMPLES], ds.y_test[:SAMPLES]


def subtract_net():
    """Conv/BN/Linear + subtract-reset Leaky: a scalar beta, a learnable per-channel beta with
    threshold 0.5, a per-neuron beta, and the output layer; weights torch's default init under
    seed 0, each synapse scaled so that every layer spikes on MNIST."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 8, 5), nn.BatchNorm2d(8), snn.Leaky(beta=0.8, **SUB),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 5),
        snn.Leaky(beta=torch.rand(16, 1, 1) * 0.5 + 0.4, learn_beta=True, threshold=0.5, **SUB),
        nn.AvgPool2d(2), nn.Flatten(),
        nn.Linear(16 * 4 * 4, 64), snn.Leaky(beta=torch.rand(64), **SUB),
        nn.Linear(64, 10), snn.Leaky(beta=0.7, output=True, **SUB))
    synapses = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        for m, g in zip(synapses, (1.0, 2.0, 3.0, 3.0), strict=True):
            m.weight.mul_(g)
        bn = net[1]
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(0.0, 0.5)
        bn.running_mean.uniform_(-0.1, 0.1)
        bn.running_var.uniform_(0.5, 1.5)
    return net.eval()


@torch.no_grad()
def own_counts(net, x):
    """Spikes per Leaky from snnTorch's own outputs: the modules called one by one for each of
    the T steps, every membrane fresh (snnTorch starts an empty mem at 0)."""
    for m in net.modules():
        if isinstance(m, snn.Leaky):
            m.mem = torch.zeros(0)
    counts = {}
    for _ in range(T):
        h = x
        for name, m in net.named_children():
            h = m(h)
            if isinstance(m, snn.Leaky):
                h = h[0] if isinstance(h, tuple) else h
                counts[name] = counts.get(name, 0) + int(h.sum())
    for m in net.modules():
        if isinstance(m, snn.Leaky):
            m.mem = torch.zeros(0)
    return counts


@pytest.fixture(scope="module")
def model():
    net = subtract_net()
    return net, from_snntorch(net, (1, 28, 28), T)


def test_subtract_reset_trace_is_snntorchs():
    """Constant input 0.6, beta 0.5, threshold 1: snnTorch's U = 0.6, 0.9, 1.05 (spike), then
    0.5 * 1.05 + 0.6 - 1 = 0.125; the IR's H with reset_by = 1 / 0.5 = 2 is the same U."""
    leaky = snn.Leaky(beta=0.5)
    mem, i = torch.zeros(1, dtype=torch.float64), torch.full((1,), 0.6, dtype=torch.float64)
    trace = []
    for _ in range(5):
        _, mem = leaky(i, mem)
        trace.append(float(mem))
    assert [round(u, 12) for u in trace] == [0.6, 0.9, 1.05, 0.125, 0.6625]
    g = import_snntorch(nn.Sequential(nn.Linear(1, 1), snn.Leaky(beta=0.5, init_hidden=True)),
                        (1,), T)
    node = g.nodes["1"]
    assert node.reset == "soft" and float(node.reset_by) == 2.0 and float(node.decay) == 0.5
    h, s, _ = run_neuron(node, torch.full((5, 1, 1), 0.6, dtype=torch.float64), torch.float64)
    assert np.allclose(h.flatten().numpy(), trace, rtol=0, atol=1e-15)
    assert s.flatten().tolist() == [0, 0, 1, 0, 0]


def test_subtract_reset_matches_snntorch_in_every_layer(mnist, model):
    """Reference (float32 and float64) and ONNX spikes against snnTorch's own forward: 0
    unexplained mismatches, threshold ties counted as the parity report counts them, each
    layer's spike count the one snnTorch's own outputs give."""
    x, y = mnist
    net, loaded = model
    g = loaded.graph
    conv2, fc = g.nodes["5"], g.nodes["9"]
    beta2 = net[5].beta.detach().clamp(0, 1).double().numpy()
    assert conv2.reset == "soft" and conv2.reset_by.shape == (16, 1, 1)
    assert np.array_equal(conv2.reset_by, 0.5 / beta2)
    assert fc.reset_by.shape == (64,) and float(g.nodes["2"].reset_by) == 1.0 / np.float32(0.8)
    counts = own_counts(net, x)
    assert list(counts) == ["2", "5", "9", "11"] and all(n > 0 for n in counts.values())
    for target, dtype in (("reference", torch.float32), ("reference", torch.float64),
                          ("onnx", torch.float32)):
        report = check(loaded, target=target, inputs=(x, y), samples=SAMPLES,
                       reference_dtype=dtype)
        assert report.samples == SAMPLES and report.unexplained == 0, report.text()
        ties = sum(layer.ties for layer in report.layers)
        if ties == 0:
            assert report.exact, report.text()
            assert {lay.name: lay.spikes_target for lay in report.layers} == counts
        assert {lay.name: lay.spikes_reference for lay in report.layers} == counts


def test_the_plain_soft_reset_would_not_match(mnist, model):
    """Why reset_by is needed: the same IR with the usual soft reset (subtract the threshold
    before the decay) disagrees with snnTorch beyond any threshold tie."""
    x, y = mnist
    _, loaded = model
    g = loaded.graph
    plain = g.with_nodes({n: ir.Neuron(node.shape, node.decay, None, node.threshold, "soft")
                          for n, node in g.nodes.items() if isinstance(node, ir.Neuron)})
    report = check(loaded, inputs=(x, y), samples=50, target_graph=fold(plain))
    assert report.unexplained > 0


def test_streaming_onnx_artifact_honours_reset_by(mnist, model):
    x = mnist[0][:32].numpy()
    graph = fold(model[1].graph)
    step = session(to_onnx_step(graph))
    names = [o.name for o in step.get_outputs()]
    state, spikes = initial_states(graph, len(x)), {}
    for _ in range(T):
        out = dict(zip(names, step.run(None, {"x_t": x, **state}), strict=True))
        state = {k.replace("v_next:", "v:"): v for k, v in out.items() if k.startswith("v_next")}
        for k, v in out.items():
            if k.startswith("spikes:"):
                spikes.setdefault(k[7:], []).append(v)
    ref = simulate(graph, torch.from_numpy(x), dtype=torch.float32)
    assert sorted(spikes) == ["11", "2", "5", "9"]
    for name, s in ref.spikes.items():
        assert np.array_equal(np.stack(spikes[name]).astype(np.float32), s.numpy()), name


def test_snnir_round_trip(tmp_path, mnist, model):
    x = mnist[0][:50]
    g = model[1].graph
    for graph in (g, fold(g)):
        path = save_ir(graph, tmp_path / "m.snnir")
        back = load_ir(path)
        for name, node in graph.nodes.items():
            if isinstance(node, ir.Neuron):
                # (a 0-d array is written as shape (1,), as every IR array is)
                assert np.array_equal(np.ravel(back.nodes[name].reset_by),
                                      np.ravel(node.reset_by)), name
        a, b = simulate(graph, x, dtype=torch.float64), simulate(back, x, dtype=torch.float64)
        assert all(torch.equal(a.spikes[n], b.spikes[n]) for n in a.spikes)
        assert to_bytes(back) == path.read_bytes()


def test_default_soft_reset_is_written_as_before():
    """reset_by unset (or equal to the threshold) is the default graph: not in the file, the
    same bytes; a file without the field (every file written before it) reads as unset; a
    reset_by of the wrong type is refused by the schema."""
    g = import_snntorch(nn.Sequential(nn.Linear(4, 3), snn.Leaky(beta=1.0, **SUB)), (4,), T)
    node = g.nodes["1"]
    assert node.reset == "soft" and node.reset_by is None
    data = to_bytes(g)
    assert b"reset_by" not in data
    same = g.with_nodes({"1": ir.Neuron(node.shape, node.decay, None, node.threshold, "soft",
                                        reset_by=np.full(3, node.threshold))})
    assert same.nodes["1"].reset_by is None and to_bytes(same) == data
    assert from_bytes(data).nodes["1"].reset_by is None
    header, body = _split(data)
    header["nodes"][2]["fields"]["reset_by"] = "x"
    header["sha256"] = io._digest(header, body)
    with pytest.raises(IRFileError, match="node '1': field 'reset_by' = 'x' is not a"):
        from_bytes(_join(header, body), "bad.snnir")


def _split(data: bytes):
    (n,) = struct.unpack_from("<Q", data, len(io.MAGIC))
    start = len(io.MAGIC) + 8
    return json.loads(data[start:start + n]), data[start + n:]


def _join(header: dict, body: bytes) -> bytes:
    head = io._dump(header)
    return io.MAGIC + struct.pack("<Q", len(head)) + head + body


@pytest.mark.parametrize("reset_by, reset, message", [
    (0.0, "soft", r"reset_by 0 needs reset 'soft' \(got 'soft'\) and values > 0"),
    (-1.0, "soft", r"reset_by -1 needs"),
    (2.0, "hard", r"reset_by 2 needs reset 'soft' \(got 'hard'\)"),
    (np.nan, "soft", r"reset_by has 1 NaN/Inf"),
    (np.ones(4), "soft", r"reset_by of shape \(4,\) does not fit the layer's shape \(3,\)"),
])
def test_bad_reset_by_is_refused_naming_the_layer(reset_by, reset, message):
    g = import_snntorch(nn.Sequential(nn.Linear(4, 3), snn.Leaky(beta=0.5, **SUB)), (4,), T)
    node = g.nodes["1"]
    g = g.with_nodes({"1": ir.Neuron(node.shape, node.decay, None, node.threshold, reset,
                                     reset_by=reset_by)})
    with pytest.raises(IRError, match=r"^m: layer '1': " + message):
        validate(g, "m")


def test_beta_zero_subtract_is_refused():
    net = nn.Sequential(nn.Linear(4, 3), snn.Leaky(beta=torch.tensor([0.5, 0.0, 0.9]), **SUB))
    with pytest.raises(UnsupportedModuleError) as e:
        import_snntorch(net, (4,), T)
    assert "\n" not in str(e.value)
    assert re.match(r"1: .*Leaky with reset_mechanism='subtract' and beta = 0 is not supported",
                    str(e.value))


def test_targets_that_cannot_take_it_refuse_in_one_line(tmp_path, model, capsys):
    """NIR's LIF has no reset amount; Loihi (fixed, onnx-fixed, lava-*, netx) resets to 0."""
    path = save_ir(model[1].graph, tmp_path / "m.snnir")
    for target, out, extra, message in (
            ("nir", "m.nir", [], r"node '2': its soft reset subtracts reset_by \(not the "
                                 r"threshold\), which NIR cannot state"),
            ("netx", "m.net", ["--data", "mnist5k", "--calib-samples", "20"],
             r"node '2': Loihi's and Lava's LIF reset to 0 \(hard reset\); soft reset is not "
             r"supported")):
        capsys.readouterr()
        code = main(["export", str(path), "--to", target, "-o", str(tmp_path / out), *extra])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and err.startswith("error: "), err
        assert re.search(message, err), err
    for target in ("nir", "fixed", "onnx-fixed", "lava-float", "lava-fixed"):
        capsys.readouterr()
        assert main(["check", str(path), "--target", target, "--data", "mnist5k", "--samples",
                     "10", "--calib-samples", "20"]) == 2, target
        err = capsys.readouterr().err
        why = ("its soft reset subtracts reset_by" if target == "nir" else
               "Loihi's and Lava's LIF reset to 0")
        assert err.count("\n") == 1 and f"node '2': {why}" in err, (target, err)
    with pytest.raises(HardwareLoweringError, match="node '2': Loihi's and Lava's LIF reset"):
        lower(fold(model[1].graph))
    assert main(["export", str(path), "--to", "onnx", "-o", str(tmp_path / "m.onnx")]) == 0


def test_lint_and_inspect_show_it(model, capsys):
    from snnexport.lint import lint

    findings = [f for f in lint(fold(model[1].graph)) if f.rule == "soft-reset"]
    assert [f.layer for f in findings] == ["2", "5", "9", "11"]
    assert "nir" in findings[0].targets and "netx" in findings[0].targets
    assert "snnTorch's subtract reset with beta < 1" in findings[0].message
    from snnexport.inspect_ir import describe

    text = describe(model[1].graph)
    assert "reset soft by 1.25" in text, text


def test_fold_carries_reset_by_through_the_gain_fold(mnist):
    """fold_input_gain moves a neuron's input gain into the synapse; the threshold and the
    soft reset's amount are in the membrane's units and stay: the spikes do not change."""
    from snnexport.ir import Graph

    rng = np.random.default_rng(0)
    g = Graph.chain([("in", ir.Input((784,))), ("fc", ir.Dense(rng.normal(0, 0.1, (32, 784)))),
                     ("sn", ir.Neuron((32,), np.full(32, 0.8), np.linspace(0.5, 1.5, 32),
                                      threshold=0.5, reset="soft",
                                      reset_by=np.linspace(0.6, 2.0, 32))),
                     ("fc2", ir.Dense(np.ones((10, 32)))), ("vote", ir.Voting(1))],
                    {"time_steps": T, "readout": "rate"})
    folded = fold(g)
    sn = folded.nodes["sn"]
    assert sn.gain is None and np.array_equal(sn.reset_by, np.linspace(0.6, 2.0, 32))
    x = mnist[0][:50].reshape(50, -1).double()
    a, b = simulate(g, x), simulate(folded, x)
    assert a.spikes["sn"].sum() > 0 and torch.equal(a.spikes["sn"], b.spikes["sn"])
