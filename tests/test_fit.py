"""`snnexport fit`: a network's layers placed on a chip's cores against the chip descriptions
in targets/chips/ (snnexport/hw/fit.py). Expected numbers come from the layer sizes and the
per-core limits written out here (checked against the descriptions once), not from fit's own
output: Loihi 2 core counts by hand, per-neuron tau's configuration count from the decays
quantised as Loihi holds them, Xylo's limits against Rockpool 3.1.0's own mappers, Speck's
memory by sinabs' formulas worked out by hand."""

import importlib
import json
import math
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import pytest

from snnexport.api import fit
from snnexport.check import load_source
from snnexport.cli import main
from snnexport.hw import Core, lower
from snnexport.hw.fit import GRADES, chips_available, fit_graph, load_chip, speck_memory
from snnexport.ir import Graph, save_ir
from snnexport.ir import nodes as ir
from snnexport.passes.fold import fold

MODELS = Path(__file__).resolve().parents[1] / "examples" / "models"
BUNDLED = sorted(p.name for p in MODELS.glob("*.pt"))
PER_LAYER_TAU = [m for m in BUNDLED if m != "digits_plif_neuron.pt"]
XYLO = ["xylo-audio2", "xylo-audio3", "xylo-imu"]

# Loihi 2 per core (targets/chips/loihi2.toml; checked in the first test)
NEURONS, SYN_BYTES, CONFIGS, CORES = 8192, 131072, 8, 128

_folded: dict = {}


def folded(name: str) -> Graph:
    if name not in _folded:
        _folded[name] = fold(load_source(MODELS / name).graph)
    return _folded[name]


def dense_chain(sizes, decay=0.5, outputs_bias=False) -> Graph:
    """x [sizes[0]] -> (Dense -> Neuron) per layer -> rate readout, folded IR."""
    rng = np.random.default_rng(0)
    nodes = [("x", ir.Input((sizes[0],)))]
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        nodes += [(f"fc{i}", ir.Dense(rng.normal(size=(b, a)) + 3.0)),
                  (f"sn{i}", ir.Neuron((b,), np.full((), decay)))]
    nodes.append(("readout", ir.Readout(1, "rate")))
    return Graph.chain(nodes, {"folded": True, "time_steps": 4, "readout": "rate"})


def test_every_chip_description_gives_each_limit_a_source_and_a_grade():
    assert chips_available() == ["loihi2", "speck", "xylo-audio2", "xylo-audio3", "xylo-imu"]
    for name in chips_available():
        chip = load_chip(name)
        assert chip.limits["cores"]["value"] >= 1
        for lim in chip.limits.values():
            assert lim["grade"] in GRADES and lim["source"] and lim["unit"]
    loihi = load_chip("loihi2")
    assert loihi.estimate and loihi.limits["neurons_per_core"]["grade"] == "estimated"
    assert (loihi.limit("neurons_per_core"), loihi.limit("synapse_bytes_per_core"),
            loihi.limit("neuron_configs_per_core"), loihi.limit("cores")) == (
        NEURONS, SYN_BYTES, CONFIGS, CORES)
    # the published chip total is the per-core estimate times the cores
    assert loihi.limit("neurons_per_chip") == NEURONS * CORES
    assert [load_chip(x).limit("hidden_neurons") for x in XYLO] == [1000, 992, 496]
    assert not any(load_chip(x).estimate for x in XYLO + ["speck"])


@pytest.mark.parametrize("name", PER_LAYER_TAU)
def test_every_bundled_model_on_loihi2_cores_counted_by_hand(name):
    graph = folded(name)
    report = fit_graph(graph, "loihi2")
    expected = {}
    for c in lower(graph).cores:
        if isinstance(c, Core) and not c.host and not c.spatial:
            (syn,) = c.synapses  # a dense layer: every trained weight is a synapse
            w = np.asarray(syn.node.weight)
            assert np.count_nonzero(w) == w.size
            per_core = min(NEURONS, SYN_BYTES // w.shape[1])  # 1 byte per 8-bit weight
        else:  # the host layer (its synapse runs on the host), a conv kept as a conv (its
            # kernels once per core), an OR-pool, a SEW merge: too few bytes to bind
            if isinstance(c, Core) and c.spatial and not c.host:
                assert sum(np.asarray(s.conv_node.weight).size for s in c.synapses) < SYN_BYTES
            per_core = NEURONS
        expected[c.name] = math.ceil(c.n / per_core)
    assert {lf.layer: len(lf.cores) for lf in report.layers} == expected
    assert report.cores_used == sum(expected.values()) and report.chips_needed == 1
    assert report.fits and report.verdict == "fits (an estimate)"
    for lf in report.layers:  # every neuron placed once, no core over a limit
        assert sum(p["neurons"] for p in lf.cores) == lf.neurons
        assert all(p["neurons"] <= NEURONS and p["synapse_bytes"] <= SYN_BYTES
                   and p["configs"] <= CONFIGS for p in lf.cores)


def test_mnist5k_plif_on_loihi2_is_bound_by_the_first_dense_layers_synapses():
    report = fit_graph(folded("mnist5k_plif.pt"), "loihi2")
    cores = {lf.layer: len(lf.cores) for lf in report.layers}
    # layers.sn1: 32 x 28 x 28 = 25,088 neurons / 8,192 -> 4 cores; layers.sn_fc1: 392 neurons
    # of 32 x 7 x 7 = 1,568 synapses each: 131,072 // 1,568 = 83 a core -> 5 cores
    assert cores["layers.sn1"] == 4 and cores["layers.sn_fc1"] == 5
    assert report.cores_used == 13 and report.binding.startswith("synapse memory (5 cores")


def test_a_zoo_sew_resnet18_needs_six_loihi2_chips(monkeypatch):
    """SpikingJelly's sew_resnet18 at 224 x 224 (random weights; its module imports
    torchvision only to download pretrained weights: a stand-in module here)."""
    import spikingjelly  # noqa: F401 (installed by make: a missing one fails, not skips)
    for mod in ("torchvision", "torchvision.models", "torchvision.models.utils"):
        monkeypatch.setitem(sys.modules, mod, types.ModuleType(mod))
    sys.modules["torchvision.models.utils"].load_state_dict_from_url = None
    sew_resnet = importlib.import_module("spikingjelly.activation_based.model.sew_resnet")
    from spikingjelly.activation_based import neuron, surrogate

    net = sew_resnet.sew_resnet18(spiking_neuron=neuron.LIFNode, cnf="ADD",
                                  surrogate_function=surrogate.ATan(), detach_reset=True)
    loaded = load_source(net, input_shape=(3, 224, 224), time_steps=4)
    report = fit(loaded, "loihi2")
    cores = {lf.layer: len(lf.cores) for lf in report.layers}
    assert cores["sn1"] == math.ceil(64 * 112 * 112 / NEURONS) == 98
    # fc after the 7 x 7 average pool (composed into it): 512 * 49 = 25,088 synapses a neuron,
    # 131,072 // 25,088 = 5 neurons a core -> 1,000 / 5 = 200 cores
    assert cores["fc.readout"] == 200
    assert report.chips_needed == math.ceil(report.cores_used / CORES) > 1
    assert not report.fits and report.violation.resource.startswith("cores")
    assert (report.violation.need, report.violation.limit) == (report.cores_used, CORES)
    assert f"--chips {report.chips_needed}" in report.violation.fix
    assert fit(loaded, "loihi2", chips=report.chips_needed).fits


def test_a_neuron_whose_synapses_exceed_a_core_is_named_with_its_layer(tmp_path, capsys):
    graph = dense_chain([4, 140_000, 2])  # sn1: 140,000 synapses a neuron > 131,072 bytes
    report = fit_graph(graph, "loihi2")
    v = report.violation
    assert not report.fits and v.layer == "sn1" and "synapse memory" in v.resource
    assert (v.need, v.limit) == (140_000, SYN_BYTES)
    path = save_ir(graph, tmp_path / "wide.snnir")
    assert main(["fit", str(path), "--chip", "loihi2", "--json", str(tmp_path / "f.json")]) == 1
    out = capsys.readouterr().out
    assert "verdict: does not fit: sn1: synapse memory per core" in out
    d = json.loads((tmp_path / "f.json").read_text())
    assert d["fits"] is False and d["violation"]["layer"] == "sn1" and d["estimate"] is True


def test_per_neuron_tau_costs_neuron_configurations_tied_to_decays(tmp_path, capsys):
    graph = folded("digits_plif_neuron.pt")
    # the distinct decays of each layer as Loihi holds them (dv = round(4096 (1 - decay)))
    quantised = {c.name: len(np.unique(np.rint(4096 * (1 - np.broadcast_to(
        np.asarray(c.neuron.decay, float), c.shape))))) for c in lower(graph).neuron_cores}
    assert max(quantised.values()) > CONFIGS
    reports = {k: fit_graph(graph, "loihi2", decays=k) for k in (1, 4, None)}
    layers = {k: {lf.layer: lf for lf in r.layers} for k, r in reports.items()}
    for name, n in quantised.items():
        assert layers[None][name].configs == n
        assert len(layers[None][name].cores) >= math.ceil(n / CONFIGS)
        assert layers[1][name].configs == 1 and 1 <= layers[4][name].configs <= 4
    host = lower(graph).neuron_cores[0].name  # 2,048 neurons, no synaptic memory on the chip:
    assert len(layers[None][host].cores) == math.ceil(quantised[host] / CONFIGS)  # configs cut
    assert len(layers[1][host].cores) == 1
    assert reports[None].cores_used > reports[4].cores_used >= reports[1].cores_used
    assert reports[None].binding.startswith("neuron configurations")
    assert all(p["configs"] <= CONFIGS for r in reports.values() for lf in r.layers
               for p in lf.cores)
    out = tmp_path / "sweep.json"
    assert main(["fit", str(MODELS / "digits_plif_neuron.pt"), "--chip", "loihi2",
                 "--decays", "1,4,all", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    rows = [line.split() for line in text.splitlines() if line.strip()[:3] in ("1  ", "4  ")
            or line.strip().startswith("all ")]
    assert [r[0] for r in rows] == ["1", "4", "all"]
    assert int(rows[2][1]) == max(quantised.values())  # configs column
    sweep = json.loads(out.read_text())["sweep"]
    assert [s["decays"] for s in sweep] == [1, 4, None]
    assert sweep[2]["cores_used"] == reports[None].cores_used


# --- Xylo -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", BUNDLED)
def test_xylo_cannot_take_the_conv_models_and_names_the_conv(name):
    graph = folded(name)
    first_conv = next(n for n, node in graph.ordered() if isinstance(node, ir.Conv2d))
    for chip in XYLO:
        report = fit_graph(graph, chip)
        assert report.refused == (f"{first_conv} is a Conv2d; Xylo takes dense feed-forward "
                                  "and recurrent layers only")
        assert report.verdict.startswith("cannot take this model: ")


def test_fit_cli_says_cannot_take_in_one_line_with_exit_status_1(capsys):
    assert main(["fit", str(MODELS / "digits_plif_layer.pt"), "--chip", "xylo-audio2"]) == 1
    verdict = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("verdict")]
    assert verdict == ["verdict: cannot take this model: layers.conv1 is a Conv2d; Xylo takes "
                       "dense feed-forward and recurrent layers only"]


def test_a_small_dense_net_fits_every_xylo():
    for chip in XYLO:
        report = fit_graph(dense_chain([16, 64, 8]), chip)
        assert report.fits, report.text()
        assert [lf.cores[0]["ids"] for lf in report.layers] == ["hid 0-63", "out 0-7"]
        assert [lf.synapses for lf in report.layers] == [16 * 64, 64 * 8]


@pytest.mark.parametrize("sizes, chip, layer, resource, need, limit", [
    ([20, 64, 8], "xylo-audio2", "fc0", "inputs", 20, 16),
    ([16, 600, 500, 8], "xylo-audio2", "sn1", "hidden neurons", 1100, 1000),
    ([16, 600, 500, 8], "xylo-imu", "sn0", "hidden neurons", 1100, 496),
    ([16, 200, 64, 8], "xylo-audio3", "sn0", "input expansion neurons", 200, 128),
    ([16, 64, 200, 8], "xylo-imu", "sn1", "output expansion neurons", 200, 128),
    ([16, 64, 10], "xylo-audio2", "sn1", "outputs", 10, 8),
    ([16, 64, 32], "xylo-audio3", "sn1", "outputs", 32, 16),
])
def test_a_net_over_a_xylo_limit_is_named_with_its_layer(sizes, chip, layer, resource, need,
                                                         limit):
    v = fit_graph(dense_chain(sizes), chip).violation
    assert (v.layer, v.resource, v.need, v.limit) == (layer, resource, need, limit)


@pytest.fixture(scope="module")
def rockpool_mappers():
    """Rockpool 3.1.0's three Xylo mappers, imported without samna: `import
    rockpool.devices.xylo` fails without it (syns65302/__init__.py imports it outside a try),
    so that package and the Audio 3 and IMU packages are stand-ins naming their folders
    (syns61201's own __init__ guards its samna imports), and samna is None in sys.modules (an
    import of it fails at once, nothing is looked up)."""
    import rockpool
    root = Path(rockpool.__file__).parent / "devices"
    xylo = "rockpool.devices.xylo"
    stand_ins = (("rockpool.devices", root), (xylo, root / "xylo"),
                 (f"{xylo}.syns65302", root / "xylo" / "syns65302"),
                 (f"{xylo}.syns63300", root / "xylo" / "syns63300"))
    saved = {k: sys.modules.get(k) for k in ["samna", *(n for n, _ in stand_ins)]}
    sys.modules["samna"] = None
    for name, path in stand_ins:
        if name not in sys.modules or sys.modules[name] is None:
            stub = types.ModuleType(name)
            stub.__path__ = [str(path)]
            sys.modules[name] = stub
    mappers = {chip: importlib.import_module(f"rockpool.devices.xylo.{pkg}.xylo_mapper")
               for chip, pkg in (("xylo-audio2", "syns61201"), ("xylo-audio3", "syns65302"),
                                 ("xylo-imu", "syns63300"))}
    yield mappers
    for k, v in saved.items():
        if v is None:
            sys.modules.pop(k, None)
        else:
            sys.modules[k] = v


def rockpool_accepts(mapper, sizes) -> bool:
    from rockpool.nn.combinators import Sequential
    from rockpool.nn.modules import LIF, Linear

    mods = []
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        mods += [Linear((a, b)), LIF(b, dt=1e-3)]
    with warnings.catch_warnings():  # its design-rule warnings (> 16 inputs, ...) refuse too
        warnings.simplefilter("error", mapper.DRCWarning)
        try:
            mapper.mapper(Sequential(*mods).as_graph())
        except mapper.DRCError:
            return False
    return True


# two hidden layers each: Rockpool 3.1.0's Xylo IMU mapper fails (ValueError) when one layer is
# both the input and the output expansion layer; its mappers do not check the 128 input /
# output expansion neurons of Audio 3 and IMU (samna's config_from_specification drops the
# rest), so none of these nets has more than 128 in the first or the last hidden layer
CROSS = [[16, 64, 64, 8], [20, 64, 64, 8], [16, 100, 300, 100, 8], [16, 100, 900, 100, 8],
         [16, 64, 64, 9], [16, 64, 64, 16], [16, 64, 64, 17], [16, 128, 128, 4]]


@pytest.mark.parametrize("chip", XYLO)
def test_fit_accepts_and_refuses_the_xylo_nets_rockpools_mapper_does(chip, rockpool_mappers):
    verdicts = [(fit_graph(dense_chain(s), chip).fits, rockpool_accepts(rockpool_mappers[chip], s))
                for s in CROSS]
    assert [f for f, _ in verdicts] == [r for _, r in verdicts]
    assert any(f for f, _ in verdicts) and not all(f for f, _ in verdicts)


# --- Speck ----------------------------------------------------------------------------------

def speck_net(c2=16, decay=1.0) -> Graph:
    """events [2, 32, 32] -> conv3x3(8) -> IF -> OR-pool 2 -> conv3x3(c2) -> IF -> flatten ->
    dense(10) -> IF: a Speck-sized integrate-and-fire net (decay 1: no leak)."""
    rng = np.random.default_rng(0)
    nodes = [("x", ir.Input((2, 32, 32))),
             ("conv1", ir.Conv2d(rng.normal(size=(8, 2, 3, 3)), np.zeros(8), (1, 1), (1, 1))),
             ("sn1", ir.Neuron((8, 32, 32), np.full((), decay))),
             ("pool1", ir.SpikePool()),
             ("conv2", ir.Conv2d(rng.normal(size=(c2, 8, 3, 3)), None, (1, 1), (1, 1))),
             ("sn2", ir.Neuron((c2, 16, 16), np.full((), decay))),
             ("flat", ir.Flatten()),
             ("fc", ir.Dense(rng.normal(size=(10, c2 * 16 * 16)))),
             ("sn3", ir.Neuron((10,), np.full((), decay))),
             ("readout", ir.Readout(1, "rate"))]
    return Graph.chain(nodes, {"folded": True, "time_steps": 4, "readout": "rate"})


def test_speck_memory_is_sinabs_formula_worked_by_hand():
    report = fit_graph(speck_net(), "speck")
    assert report.fits, report.text()
    mem = {lf.layer: lf.memory for lf in report.layers}
    # sn1: c 2, 3x3 kernel (ceil log2 9 = 4), f 8 (3): kernel 2 * 2^7 = 256; 8 x 32 x 32
    # neurons: 8 * 2^(5 + 5) = 8,192; a bias per channel: 8
    assert mem["sn1"] == {"kernel": 256, "neuron": 8192, "bias": 8}
    # sn2: c 8, 3x3 (4), f 16 (4): 8 * 2^8 = 2,048; 16 x 16 x 16: 16 * 2^8 = 4,096; no bias
    assert mem["sn2"] == {"kernel": 2048, "neuron": 4096, "bias": 0}
    # sn3: the dense layer as a conv over the 16 x 16 map: c 16, kernel 256 (8), f 10 (4):
    # 16 * 2^12 = 65,536, which only cores 5 and 6 hold; 10 neurons: 10 * 2^0
    assert mem["sn3"] == {"kernel": 65536, "neuron": 10, "bias": 0}
    where = {lf.layer: lf.cores[0]["core"] for lf in report.layers}
    assert where["sn3"] in (5, 6) and len(set(where.values())) == 3
    assert speck_memory(8, 2, 3, 3, 32, 32, True) == mem["sn1"]


def test_a_layer_over_every_speck_core_is_named_and_leaky_nets_are_refused():
    v = fit_graph(speck_net(c2=32), "speck").violation  # sn3's kernel: 32 * 2^12 = 131,072
    assert (v.layer, v.need, v.limit) == ("sn3", 131072, 65536) and "kernel" in v.resource
    report = fit_graph(speck_net(decay=0.5), "speck")
    assert report.refused.startswith("sn1: its neurons leak (decay 0.5); Speck's neurons")
    sew = fit_graph(folded("mnist5k_sew.pt"), "speck")
    assert sew.refused.startswith("blocks.0.connect is a residual merge (SEW ADD)")


def test_deploy_fits_every_chip_into_fit_json_and_its_summary(tmp_path):
    from snnexport.deploy import deploy

    summary = deploy(str(MODELS / "digits_plif_layer.pt"), str(tmp_path / "out"),
                     targets="reference", samples=20, progress=False)
    fits = json.loads((tmp_path / "out" / "fit.json").read_text())
    assert sorted(fits) == chips_available() == sorted(summary["fit"])
    # six layers (conv1+sn1, pool1, conv2+sn2, pool2, fc1, fc_out), none over a core's limits
    assert summary["fit"]["loihi2"] == {"fits": True, "verdict": "fits (an estimate)",
                                        "cores_used": 6, "chips_needed": 1, "estimate": True}
    assert fits["loihi2"]["layers"][0]["cores"][0]["neurons"] == 32 * 8 * 8
    for chip in XYLO:
        assert summary["fit"][chip]["verdict"].startswith(
            "cannot take this model: layers.conv1 is a Conv2d")
    report = (tmp_path / "out" / "report.html").read_text()
    assert "<h2>Will it fit the chip</h2>" in report
    assert "<td class='l'>loihi2</td><td class='l'>fits (an estimate)</td><td>6</td>" in report


def test_fit_usage_errors_are_one_line_with_exit_status_2(capsys):
    model = str(MODELS / "digits_plif_layer.pt")
    for args, start in ((["--decays", "0"], "error: fit: decays = 0: give a whole number"),
                        (["--decays", "two"], "error: --decays two: give K, all, or a comma"),
                        (["--chips", "0"], "error: --chips 0: give the number of chips")):
        assert main(["fit", model, "--chip", "loihi2", *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(start), err


@pytest.fixture
def sinabs_dynapcnn(monkeypatch):
    """sinabs 3.1.3's DYNAP-CNN layer and chip constraints without samna: its dynapcnn and
    chips packages import samna's chip modules on import, so they are stand-ins naming their
    folders, and samna a bare stand-in module (config_builder.py imports it by name only)."""
    import sinabs
    root = Path(sinabs.__file__).parent / "backend" / "dynapcnn"
    for name, path in (("sinabs.backend.dynapcnn", root),
                       ("sinabs.backend.dynapcnn.chips", root / "chips")):
        stub = types.ModuleType(name)
        stub.__path__ = [str(path)]
        monkeypatch.setitem(sys.modules, name, stub)
    monkeypatch.setitem(sys.modules, "samna", types.ModuleType("samna"))
    for mod in ("dynapcnn_layer", "config_builder", "mapping", "chips.dynapcnn"):
        monkeypatch.delitem(sys.modules, f"sinabs.backend.dynapcnn.{mod}", raising=False)
    layer = importlib.import_module("sinabs.backend.dynapcnn.dynapcnn_layer")
    chip = importlib.import_module("sinabs.backend.dynapcnn.chips.dynapcnn")
    return layer.DynapcnnLayer, chip.DynapcnnConfigBuilder.get_constraints()


def test_speck_memory_and_cores_equal_sinabs(sinabs_dynapcnn):
    import torch
    from sinabs.layers import IAFSqueeze

    dynapcnn_layer, constraints = sinabs_dynapcnn
    chip = load_chip("speck")
    assert [(c.kernel_memory, c.neuron_memory, c.bias_memory) for c in constraints] == list(
        zip(chip.limit("kernel_memory_per_core"), chip.limit("neuron_memory_per_core"),
            chip.limit("bias_memory_per_core"), strict=True))
    for c2 in (16, 32):  # 32: the dense layer fits no core
        graph = speck_net(c2=c2)
        report = fit_graph(graph, "speck")
        convs = [(torch.nn.Conv2d(2, 8, 3, padding=1), (2, 32, 32)),
                 (torch.nn.Conv2d(8, c2, 3, padding=1, bias=False), (8, 16, 16)),
                 # sinabs makes a Linear after a Flatten a conv over the whole map
                 (torch.nn.Conv2d(c2, 10, 16, bias=False), (c2, 16, 16))]
        for lf, (conv, shape) in zip(report.layers, convs, strict=True):
            layer = dynapcnn_layer(conv, IAFSqueeze(batch_size=1), shape, [[1, 1]],
                                   discretize=False)
            theirs = {k: int(v) for k, v in layer.memory_summary().items()}
            assert lf.memory == theirs, lf.layer
            fits_somewhere = any(c.fits(layer) for c in constraints)
            assert fits_somewhere == (not any(v.layer == lf.layer for v in report.violations))
            if lf.cores:  # the core fit chose is one sinabs' constraints accept
                assert constraints[lf.cores[0]["core"]].fits(layer)


def test_soft_reset_is_refused_by_loihi2_and_taken_by_xylo():
    graph = dense_chain([16, 64, 8])
    graph.nodes["sn0"].reset = "soft"  # V -= threshold on a spike (snnTorch's subtract)
    loihi = fit_graph(graph, "loihi2")
    assert loihi.refused.startswith("node 'sn0': Loihi's and Lava's LIF reset to 0")
    assert fit_graph(graph, "xylo-audio2").fits  # Xylo resets by subtraction
