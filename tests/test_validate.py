"""Every model source is validated before anything runs: a bad parameter is one error naming
the source and the layer, from a project checkpoint's net, an IR file, a NIR file and a
SpikingJelly module alike; nothing is written and no input is changed."""

import hashlib
import math

import nir
import numpy as np
import pytest
import torch
from spikingjelly.activation_based import layer, neuron

from snnexport.exporters.nir_export import to_nir
from snnexport.importers.nir_import import NIRImportError, from_nir
from snnexport.importers.plifnet import import_plifnet
from snnexport.importers.spikingjelly import import_spikingjelly
from snnexport.ir import IRError, IRFileError, load_ir, save_ir
from snnexport.ir import nodes as ir
from snnexport.ir.io import from_bytes, to_bytes
from snnexport.ir.validate import validate
from snnexport.models import NetConfig, build_network
from snnexport.passes.fold import fold


def small_net():
    torch.manual_seed(0)
    return build_network(NetConfig(in_channels=1, input_size=8, channels=4, time_steps=4)).eval()


def first(graph, cls):
    return next(n for n, x in graph.nodes.items() if isinstance(x, cls))


# (what is broken, how to break the source-level graph, what the error says)
BAD = {
    "nan weight": (lambda g, n: g.nodes[first(g, ir.Conv2d)].weight.__setitem__(
        (0, 0, 0, 0), np.nan), r"weight has 1 NaN/Inf"),
    "inf BN shift": (lambda g, n: g.nodes[first(g, ir.BatchNorm)].beta.__setitem__(0, np.inf),
                     r"beta has 1 NaN/Inf"),
    "negative BN variance": (lambda g, n: g.nodes[first(g, ir.BatchNorm)].var.__setitem__(
        0, -1.0), r"running_var \+ eps must be > 0"),
    "nan tau": (lambda g, n: setattr(n, "k", np.full(np.shape(n.k), np.nan)), "k has"),
    "tau below 1": (lambda g, n: setattr(n, "k", np.asarray(1.5)), r"outside \(0, 1\]"),
    "zero threshold": (lambda g, n: setattr(n, "v_threshold", 0.0),
                       "threshold 0 is not above the reset level"),
    "nan threshold": (lambda g, n: setattr(n, "v_threshold", math.nan), "v_threshold is nan"),
    "negative threshold": (lambda g, n: setattr(n, "v_threshold", -1.0), "not above"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_parameters_are_refused_naming_the_layer(case):
    g = import_plifnet(small_net())
    lif_name = first(g, ir.LIFNeuron)
    breaker, message = BAD[case]
    breaker(g, g.nodes[lif_name])
    with pytest.raises(IRError, match=r"^m.pt: layer '[\w.]+': .*" + message):
        validate(g, "m.pt")


def test_folded_decay_reset_mode_and_time_steps():
    g = fold(import_plifnet(small_net()))
    neuron_name = first(g, ir.Neuron)
    node = g.nodes[neuron_name]
    for field, value, message in [("decay", np.asarray(1.2), r"decay 1.2 lies outside \[0, 1\]"),
                                  ("decay", np.asarray(-0.5), "decay -0.5 lies outside"),
                                  ("reset", "sideways", "reset 'sideways' is not one of"),
                                  ("threshold", -0.1, "threshold -0.1 must be > 0")]:
        old = getattr(node, field)
        setattr(node, field, value)
        with pytest.raises(IRError, match=f"x.snnir: layer '{neuron_name}': {message}"):
            validate(g, "x.snnir")
        setattr(node, field, old)
    pool = g.nodes[first(g, ir.SpikePool)]
    pool.mode = "median"
    with pytest.raises(IRError, match="mode 'median' is not one of or, sum"):
        validate(g)
    pool.mode = "or"
    g.metadata["time_steps"] = 0
    with pytest.raises(IRError, match="time_steps 0 must be a positive integer"):
        validate(g)
    g.metadata["time_steps"] = 4
    assert validate(g) is g


def test_ir_file_checked_on_load_and_checksummed(tmp_path):
    g = fold(import_plifnet(small_net()))
    path = save_ir(g, tmp_path / "m.snnir")
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    # one flipped byte in the array body: refused by the checksum, not run
    body_byte = len(data) - 9
    flipped = data[:body_byte] + bytes([data[body_byte] ^ 0x01]) + data[body_byte + 1:]
    with pytest.raises(IRFileError, match="flip.snnir: checksum mismatch"):
        from_bytes(flipped, "flip.snnir")
    # a NaN written by a tool that recomputes the checksum is still refused, by validation
    name = first(g, ir.Neuron)
    g.nodes[name].threshold = math.nan
    with pytest.raises(IRFileError, match=f"^nan.snnir: layer '{name}': threshold is nan"):
        from_bytes(to_bytes(g), "nan.snnir")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest  # the input is untouched
    assert load_ir(path).order() == fold(import_plifnet(small_net())).order()


def test_nir_with_a_decay_outside_range_is_refused_naming_the_node():
    g = fold(import_plifnet(small_net()), fold_gain=False)
    graph = to_nir(g)
    key = next(k for k, n in graph.nodes.items() if isinstance(n, nir.LIF))
    lif = graph.nodes[key]
    lif.metadata = {}  # a foreign file: tau as written (Norse 1.1 writes dt / tau_mem_inv)
    lif.tau = np.full_like(lif.tau, 1e-6)  # dt / tau = 100: a negative decay
    with pytest.raises(NIRImportError, match=r"m.nir: node '\w+': tau 1e-06 with dt 0.0001 "
                       r"gives a decay 1 - dt/tau outside \[0, 1\).*norse #411"):
        from_nir(graph, where="m.nir")


def test_spikingjelly_module_with_nan_weights_is_refused():
    net = torch.nn.Sequential(layer.Conv2d(1, 2, 3), neuron.LIFNode(tau=2.0), layer.Flatten(),
                              layer.Linear(72, 4), neuron.LIFNode(tau=2.0))
    with torch.no_grad():
        net[3].weight[0, 0] = float("nan")
    with pytest.raises(IRError, match="Sequential: layer '3': weight has 1 NaN/Inf"):
        import_spikingjelly(net, (1, 8, 8), 4)
