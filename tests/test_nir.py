"""NIR export / import: exact round trips, and interop with SpikingJelly and snnTorch, each run
for real on real MNIST-5k digits.

Settings the interop needs (all at NIR's default dt = 1e-4 s, Euler):
* SpikingJelly's import_from_nir(dt=1e-4): LIF with r = 1 becomes LIFNode(tau = tau/dt,
  decay_input=True), hard reset to v_reset; it has no SumPool2d / Threshold, so the OR-pool of
  the bundled models cannot reach it (shown below) and the interop net uses a strided conv.
* snnTorch's import_from_nir: Leaky(beta = 1 - dt/tau, threshold = v_th / (r dt / tau),
  reset_mechanism='zero', reset_delay=False) with init_hidden, one sample at a time (its Flatten
  takes NIR's per-sample start_dim 0 as the batch dimension), state cleared between samples.
* A snnTorch net exported by snnTorch must use reset_mechanism='zero', reset_delay=False: it
  writes v_reset = 0 for every Leaky, and NIR's LIF resets at once.
"""

import warnings
from pathlib import Path

import nir
import numpy as np
import pytest
import torch
from spikingjelly.activation_based import functional, layer, neuron, surrogate

from snnexport.check import check, from_spikingjelly, load_model
from snnexport.data import load_dataset
from snnexport.exporters.nir_export import to_nir, write_nir
from snnexport.importers.nir_import import NIRImportError, from_nir, read_nir
from snnexport.ir import nodes as ir
from snnexport.parity import ParityReport, compare
from snnexport.passes.fold import absorb_batchnorm, fold
from snnexport.readout import readout_scores
from snnexport.sim.reference import SimResult, simulate

MODELS = Path(__file__).resolve().parent.parent / "examples" / "models"
T = 4
DS = load_dataset("mnist5k")
X, Y = DS.x_test[:200], DS.y_test[:200]


def nir_form(graph):
    """What the NIR exporter takes: the graph folded with the input gain kept in the neuron."""
    return fold(graph, fold_gain=False)


def same_arrays(a, b):
    return np.array_equal(*np.broadcast_arrays(np.asarray(a), np.asarray(b)))


@pytest.mark.parametrize("name", sorted(p.name for p in MODELS.glob("*.pt")))
def test_round_trip_through_a_nir_file_is_exact(name, tmp_path):
    loaded = load_model(MODELS / name)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path = write_nir(nir_form(loaded.graph), tmp_path / "m.nir")
    if loaded.graph.metadata["config"]["imp"]:
        assert any("snnexport.v_init" in str(w.message) for w in caught)
    back = read_nir(path)
    want = fold(loaded.graph, fold_gain=False)
    # the same nodes with the same inputs in the same argument order (a residual graph's
    # topological order may list independent branches the other way round)
    assert sorted(back.nodes) == sorted(want.nodes)
    for n, a in want.ordered():
        b = back.nodes[n]
        assert back.inputs(n) == want.inputs(n), n
        assert type(a) is type(b), n
        for field, arr in a.arrays().items():
            assert same_arrays(arr, getattr(b, field)), (n, field)
        if isinstance(a, ir.Neuron):
            assert (a.reset, a.spiking) == (b.reset, b.spiking)
            assert not a.spiking or a.threshold == b.threshold  # a readout never fires
    report = check(loaded, samples=200, target_graph=back, reference_dtype=torch.float64)
    assert report.exact, report.text()


def interop_net():
    """A per-layer-tau SpikingJelly net without pooling (strided conv), BN measured on real
    digits, every layer spiking."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        layer.Conv2d(1, 8, 3, stride=2, padding=1, bias=False), layer.BatchNorm2d(8),
        neuron.ParametricLIFNode(surrogate_function=surrogate.ATan()), layer.Flatten(),
        layer.Linear(8 * 14 * 14, 64, bias=False), neuron.ParametricLIFNode(init_tau=3.0),
        layer.Linear(64, 100, bias=False), neuron.ParametricLIFNode(init_tau=1.5),
        layer.VotingLayer(10))
    functional.set_step_mode(net, "m")
    with torch.no_grad():
        net.train()(X[:100].unsqueeze(0).repeat(T, 1, 1, 1, 1))
        functional.reset_net(net)
        net[4].weight.mul_(10)
        net[6].weight.mul_(10)
    return net.eval()


def ours(graph):
    return simulate(fold(graph), X, T, record_membrane=True)


def assert_same_spikes(reference: SimResult, other: SimResult, who: str):
    assert all(float(s.sum()) > 0 for s in reference.spikes.values())
    report = ParityReport(who)
    thresholds = {n: 1.0 for n in reference.spikes}
    compare(report, reference, other, Y, thresholds, 1e-5)
    # float32 on their side: only counted threshold ties (and what follows them) may differ
    assert report.unexplained == 0, report.text()
    assert report.agree == len(Y) or report.first_divergence["cause"] == "threshold tie"
    return report


def test_spikingjelly_imports_our_nir(tmp_path):
    from spikingjelly.activation_based.nir_exchange import import_from_nir

    loaded = from_spikingjelly(interop_net(), (1, 28, 28), T)
    path = write_nir(nir_form(loaded.graph), tmp_path / "sj.nir")
    theirs = import_from_nir(str(path), dt=1e-4, step_mode="m")
    spikes = {}
    for key in ("2", "5", "7"):  # the NIR node names of the three LIF layers
        getattr(theirs, key).register_forward_hook(
            lambda _m, _i, out, key=key: spikes.__setitem__(key, out[0].detach()))
    with torch.no_grad():
        out, _ = theirs(X.unsqueeze(0).repeat(T, 1, 1, 1, 1), None)
    reference = ours(loaded.graph)
    other = SimResult(out, out.mean(0), spikes)
    report = assert_same_spikes(reference, other, "spikingjelly import_from_nir")
    assert report.exact, report.text()


def test_spikingjelly_cannot_take_the_or_pool(tmp_path):
    from spikingjelly.activation_based.nir_exchange import import_from_nir

    path = write_nir(nir_form(load_model(MODELS / "digits_plif_layer.pt").graph),
                     tmp_path / "d.nir")
    kinds = {type(n).__name__ for n in nir.read(path).nodes.values()}
    assert {"SumPool2d", "Threshold"} <= kinds
    with pytest.raises(Exception, match="SumPool2d|Threshold"):
        import_from_nir(str(path), dt=1e-4)


def test_snntorch_imports_our_nir(tmp_path):
    from snntorch import utils
    from snntorch.import_nir import import_from_nir

    loaded = from_spikingjelly(interop_net(), (1, 28, 28), T)
    theirs = import_from_nir(nir.read(write_nir(nir_form(loaded.graph), tmp_path / "s.nir")))
    names = {"2": "2", "5": "5", "7": "7"}
    rec: dict[str, list] = {k: [] for k in names}
    for key in names:
        getattr(theirs, key).register_forward_hook(
            lambda _m, _i, out, key=key: rec[key].append(out.detach().reshape(-1)))
    outs = []
    with torch.no_grad():
        for b in range(len(Y)):
            utils.reset(theirs)
            outs.append(torch.stack([theirs(X[b:b + 1], None)[0].reshape(-1)
                                     for _ in range(T)]))
    spikes = {k: torch.stack(v).reshape(len(Y), T, -1).transpose(0, 1) for k, v in rec.items()}
    out = torch.stack(outs, 1)
    reference = ours(loaded.graph)
    reference.spikes = {k: v.flatten(2) for k, v in reference.spikes.items()}
    reference.membrane = {k: v.flatten(2) for k, v in reference.membrane.items()}
    assert_same_spikes(reference, SimResult(out, out.mean(0), spikes), "snntorch import_from_nir")


def test_snntorch_export_reproduced_by_snnexport():
    import snntorch as snn
    from snntorch import utils
    from snntorch.export_nir import export_to_nir

    torch.manual_seed(0)
    # snnTorch writes per-neuron LIF parameters only when beta / threshold have that shape
    shape1, shape2 = (6, 14, 14), (40,)
    lif = dict(init_hidden=True, reset_mechanism="zero", reset_delay=False)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 6, 3, stride=2, padding=1),
        snn.Leaky(beta=torch.full(shape1, 0.8), threshold=torch.full(shape1, 1.0), **lif),
        torch.nn.Flatten(), torch.nn.Linear(6 * 14 * 14, 40),
        snn.Leaky(beta=torch.full(shape2, 0.6), threshold=torch.full(shape2, 0.5), **lif))
    with torch.no_grad():
        net[0].weight.mul_(3)
        net[3].weight.mul_(4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = from_nir(export_to_nir(net, X[:1], ignore_dims=[0]))
    spikes = {"1": [], "4": []}
    net[1].register_forward_hook(lambda _m, _i, o: spikes["1"].append(o.detach()))
    net[4].register_forward_hook(lambda _m, _i, o: spikes["4"].append(o.detach()))
    utils.reset(net)
    with torch.no_grad():
        for _ in range(T):
            net(X)
    out = torch.stack(spikes["4"])  # their output: the last layer's spikes, by count
    theirs = SimResult(out, readout_scores(out, "rate", 1),
                       {k: torch.stack(v) for k, v in spikes.items()})
    mine = simulate(graph, X, T, record_membrane=True)
    report = ParityReport("snnexport vs snnTorch")
    compare(report, mine, theirs, Y, {k: graph.nodes[k].threshold for k in spikes}, 1e-5)
    assert [layer.spikes_reference > 0 for layer in report.layers] == [True, True]
    assert report.unexplained == 0 and report.agree == len(Y), report.text()


def test_bad_nir_input_is_named(tmp_path):
    bad = tmp_path / "bad.nir"
    bad.write_bytes(b"not hdf5")
    with pytest.raises(NIRImportError, match="bad.nir: not a readable NIR file"):
        read_nir(bad)
    g = nir.NIRGraph(nodes={
        "input": nir.Input(input_type={"input": np.array([3])}),
        "syn": nir.Delay(delay=np.ones(3)),
        "output": nir.Output(output_type={"output": np.array([3])})},
        edges=[("input", "syn"), ("syn", "output")])
    with pytest.raises(NIRImportError, match="node 'syn' \\(Delay\\): Delay has no"):
        from_nir(g)


def test_exported_graph_states_dt_and_euler_parameters():
    loaded = load_model(MODELS / "digits_plif_layer.pt")
    g = to_nir(nir_form(loaded.graph), dt=1e-3)
    assert float(g.metadata["dt"]) == 1e-3
    lif = g.nodes["layers_sn1"]
    k = float(torch.sigmoid(loaded.torch_model.layers.sn1.a.detach()))
    # tau = dt / k, r = 1, threshold one float step under 1, v_leak = v_reset = 0
    assert np.allclose(lif.tau, 1e-3 / k, rtol=1e-12) and np.all(lif.r == 1.0)
    assert np.all(lif.v_threshold == np.nextafter(1.0, 0)) and not np.any(lif.v_reset)


def test_export_and_check_commands(tmp_path, capsys):
    from snnexport.cli import main

    model = MODELS / "digits_plif_imp_lts.pt"
    out = tmp_path / "m.nir"
    assert main(["export", str(model), "--to", "nir", "-o", str(out)]) == 0
    assert isinstance(nir.read(out), nir.NIRGraph)
    report = tmp_path / "r.json"
    assert main(["check", str(model), "--target", "nir", "--samples", "200", "--json",
                 str(report)]) == 0
    import json

    d = json.loads(report.read_text())
    assert d["target"].startswith("nir") and d["exact"] and d["samples"] == 200


def test_spikingjelly_export_reproduced_by_snnexport():
    from spikingjelly.activation_based.nir_exchange import export_to_nir

    # SpikingJelly's exporter takes neither BatchNorm nor VotingLayer: the interop net with BN
    # absorbed into the conv (by our own pass), up to its last LIF layer
    bn_net = interop_net()
    conv = absorb_batchnorm(from_spikingjelly(bn_net, (1, 28, 28), T).graph).nodes["0"]
    net = torch.nn.Sequential(layer.Conv2d(1, 8, 3, stride=2, padding=1), *bn_net[2:8])
    with torch.no_grad():
        net[0].weight.copy_(torch.from_numpy(conv.weight))
        net[0].bias.copy_(torch.from_numpy(conv.bias))
    functional.set_step_mode(net, "m")
    x_seq = X.unsqueeze(0).repeat(T, 1, 1, 1, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = from_nir(export_to_nir(net, x_seq[:, :2], dt=1e-4))
    neurons = [n for n, node in graph.ordered() if isinstance(node, ir.Neuron)]
    assert len(neurons) == 3
    spikes = {}  # their spikes, from their own run, under our node names
    for name, idx in zip(neurons, (1, 4, 6), strict=True):
        net[idx].register_forward_hook(
            lambda _m, _i, out, name=name: spikes.__setitem__(name, out.detach()))
    with torch.no_grad():
        out = net(x_seq)
    functional.reset_net(net)
    theirs = SimResult(out, readout_scores(out, "rate", 1), spikes)
    mine = simulate(graph, X, T, record_membrane=True)
    report = ParityReport("snnexport vs SpikingJelly")
    compare(report, mine, theirs, Y, {n: graph.nodes[n].threshold for n in neurons}, 1e-5)
    assert all(layer.spikes_reference > 0 for layer in report.layers)
    assert report.unexplained == 0 and report.agree == len(Y), report.text()


def test_what_nir_cannot_say_is_exactly_what_a_consumer_misses(tmp_path):
    """IMP lives in snnexport's metadata only: SpikingJelly runs the net from V = 0, which is
    exactly our network with the IMP removed."""
    from spikingjelly.activation_based.nir_exchange import import_from_nir

    graph = from_spikingjelly(interop_net(), (1, 28, 28), T).graph
    sn = graph.nodes["2"]
    imp = np.random.default_rng(0).uniform(-0.5, 0.9, sn.shape)
    graph.nodes["2"] = ir.LIFNeuron(sn.shape, sn.k, sn.v_threshold, sn.v_reset,
                                    sn.decay_input, imp)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path = write_nir(nir_form(graph), tmp_path / "imp.nir")
    assert any("snnexport.v_init" in str(w.message) for w in caught)
    theirs = import_from_nir(str(path), dt=1e-4, step_mode="m")
    with torch.no_grad():
        out, _ = theirs(X.unsqueeze(0).repeat(T, 1, 1, 1, 1), None)
    with_imp = simulate(fold(graph), X, T)
    graph.nodes["2"] = sn  # the same net without IMP
    without_imp = simulate(fold(graph), X, T)
    assert not torch.equal(with_imp.outputs.float(), without_imp.outputs.float())
    assert torch.equal(out, without_imp.outputs.float())
    assert np.array_equal(read_nir(path).nodes["2"].v_init, imp)  # snnexport reads it back


@pytest.mark.parametrize("discretisation", ["euler", "exact"])
def test_lif_with_leak_and_reset_levels_follows_nir_equations(discretisation):
    """NIR's LIF stepped by hand (tau dv/dt = v_leak - v + r I, fire on v > v_th, v = v_reset)
    against the imported IR, including a nonzero v_leak and v_reset (moved into the bias)."""
    rng = np.random.default_rng(1)
    w, b = rng.uniform(-1, 2, (3, 2)), rng.uniform(-0.2, 0.5, 3)
    tau, r, dt = np.array([3e-4, 5e-4, 2e-4]), np.array([1.0, 2.0, 0.5]), 1e-4
    v_leak, v_reset, v_th = np.full(3, 0.2), np.full(3, -0.1), np.full(3, 0.7)
    g = nir.NIRGraph(nodes={
        "input": nir.Input(input_type={"input": np.array([2])}),
        "fc": nir.Affine(weight=w, bias=b),
        "lif": nir.LIF(tau=tau, r=r, v_leak=v_leak, v_threshold=v_th, v_reset=v_reset),
        "output": nir.Output(output_type={"output": np.array([3])})},
        edges=[("input", "fc"), ("fc", "lif"), ("lif", "output")], metadata={"dt": dt})
    x = torch.from_numpy(rng.uniform(0, 1, (20, 6, 2)))  # [T, B, 2]
    k = dt / tau if discretisation == "euler" else 1 - np.exp(-dt / tau)
    v = np.zeros((6, 3))  # NIR states no initial value; snnexport starts at 0
    expected = []
    for xt in x.numpy():
        v = v + k * (v_leak - v + r * (xt @ w.T + b))
        s = v > v_th
        v = np.where(s, v_reset, v)
        expected.append(s)
    got = simulate(from_nir(g, discretisation=discretisation), x).spikes["lif"]
    assert np.array_equal(got.numpy().astype(bool), np.array(expected))
    assert np.array(expected).sum() > 10
