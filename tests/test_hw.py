"""Hardware lowering (snnexport.hw): the one synapse -> neuron pairing, on a trained chain, on
residual graphs (expressed, quantised, and refused by the chain-only Lava lowering with the
merge named) and on what has no hardware form."""

import numpy as np
import pytest
import torch
from test_fold import random_net

from snnexport.errors import SnnexportError
from snnexport.hw import Core, HardwareLoweringError, PoolCore, conv_matrix, lower, to_chw, whc
from snnexport.hw.cores import SpikeMerge
from snnexport.importers.plifnet import import_plifnet
from snnexport.ir import Graph
from snnexport.ir import nodes as ir
from snnexport.lava.lowering import LavaLoweringError
from snnexport.lava.lowering import lower as lava_lower
from snnexport.passes.fold import fold
from snnexport.quant import QuantError, quantize

rng = np.random.default_rng(0)


def neuron(shape, **kw):
    return ir.Neuron(shape, np.full((), 0.5), threshold=1.0, **kw)


def conv(c_in, c_out, k=3, p=1):
    return ir.Conv2d(rng.normal(size=(c_out, c_in, k, k)), rng.normal(size=c_out), (1, 1), (p, p))


def residual_graph(shortcut: str) -> Graph:
    """x -> conv1 -> n1 -> {conv2, shortcut} -> add -> n2 -> flatten -> fc -> out -> readout;
    shortcut 'conv' (a 1x1 conv current: a downsampling block) or 'identity' (n1's spikes)."""
    nodes = {"x": ir.Input((1, 4, 4)), "conv1": conv(1, 2), "n1": neuron((2, 4, 4)),
             "conv2": conv(2, 2), "add": ir.Add(), "n2": neuron((2, 4, 4)),
             "flat": ir.Flatten(), "fc": ir.Dense(rng.normal(size=(4, 32))),
             "out": neuron((4,), spiking=False), "readout": ir.Readout(2, "membrane")}
    edges = [("x", "conv1"), ("conv1", "n1"), ("n1", "conv2"), ("conv2", "add")]
    if shortcut == "conv":
        nodes["down"] = conv(2, 2, k=1, p=0)
        edges += [("n1", "down"), ("down", "add")]
    else:
        edges += [("n1", "add")]
    edges += [("add", "n2"), ("n2", "flat"), ("flat", "fc"), ("fc", "out"), ("out", "readout")]
    return Graph(nodes, edges, {"folded": True, "time_steps": 4, "readout": "membrane"})


def test_a_trained_chain_becomes_cores_in_layer_order():
    graph = fold(import_plifnet(random_net(channels=4)))
    cores = lower(graph)
    neurons = [n for n, node in graph.ordered() if isinstance(node, ir.Neuron)]
    assert [c.name for c in cores.neuron_cores] == neurons
    first = cores.cores[0]
    assert isinstance(first, Core) and first.host and first.synapse("x").source == cores.input_name
    assert not any(c.host for c in cores.cores[1:] if isinstance(c, Core))
    assert any(isinstance(c, PoolCore) and c.spatial for c in cores.cores)  # OR-pool on a map
    assert cores.input_shape == tuple(graph.nodes[graph.order()[0]].shape)
    assert cores.time_steps == graph.metadata["time_steps"]
    for core in cores.neuron_cores:  # every synapse is the neuron's predecessor in the IR
        (syn,) = core.synapses
        assert graph.inputs(core.name) == [syn.name]
        assert syn.out_shape == core.shape


def test_conv_matrix_and_layouts():
    node = conv(2, 3)
    x = rng.normal(size=(2, 5, 4))
    y = torch.nn.functional.conv2d(torch.as_tensor(x)[None], torch.as_tensor(node.weight),
                                   None, 1, 1)[0].numpy()
    np.testing.assert_allclose(conv_matrix(node, x.shape) @ x.reshape(-1), y.reshape(-1))
    assert whc(x, x.shape).shape == (4, 5, 2)
    np.testing.assert_array_equal(to_chw(whc(x, x.shape), x.shape), x)


@pytest.mark.parametrize("shortcut", ["conv", "identity"])
def test_a_residual_merge_is_expressed_quantised_and_lowered_to_lava(shortcut):
    graph = residual_graph(shortcut)
    cores = lower(graph)
    n2 = next(c for c in cores.neuron_cores if c.name == "n2")
    assert n2.merge == "add" and cores.merges == ["add"]
    assert [s.name for s in n2.synapses] == ["conv2", "down" if shortcut == "conv" else "n1"]
    assert all(s.source == "n1" for s in n2.synapses)
    if shortcut == "identity":
        assert n2.synapses[1].node is None
        np.testing.assert_array_equal(n2.synapses[1].matrix(), np.eye(32))
    # an identity on a map is a 1x1 depthwise conv of ones: the core stays a conv either way
    assert n2.spatial
    if shortcut == "identity":
        np.testing.assert_array_equal(n2.synapses[1].conv_node.weight, np.ones((2, 1, 1, 1)))
        assert n2.synapses[1].conv_node.groups == 2
    assert [c.name for c in cores.neuron_cores] == ["n1", "n2", "out"]
    assert cores.readout == "membrane" and cores.population == 2
    net = quantize(graph, torch.zeros(2, 1, 4, 4))  # both paths as one layer, one scale
    layer = next(lay for lay in net.layers if lay.name == "n2")
    assert layer.merge == "add" and layer.kind == "conv" and layer.source == ""
    assert [(s.name, s.source) for s in layer.synapses] == [
        ("down" if shortcut == "conv" else "n1", "n1")]
    # Lava: both paths into n2's one LIF, as convs (the identity a 1x1 depthwise one), both
    # from n1 and so at once (no delay)
    _, _, stages, _ = lava_lower(graph)
    st = next(st for st in stages if st.key == "n2")
    assert [(lk.source, lk.delay, lk.conv is not None) for lk in st.links] == [
        ("n1", 0, True), ("n1", 0, True)]
    if shortcut == "identity":
        assert st.links[1].conv["groups"] == 2


def bad(graph_edit):
    nodes = {"x": ir.Input((1, 4, 4)), "c": conv(1, 2), "n": neuron((2, 4, 4)),
             "f": ir.Flatten(), "d": ir.Dense(rng.normal(size=(3, 32))), "o": neuron((3,))}
    order = list(nodes)
    graph_edit(nodes, order)
    return Graph.chain([(k, nodes[k]) for k in order], {"folded": True, "time_steps": 2})


@pytest.mark.parametrize(("edit", "message"), [
    (lambda n, o: n.update(n=neuron((2, 4, 4), reset="soft")),
     "node 'n': .*soft reset is not supported"),
    (lambda n, o: (n.update(c2=ir.Conv2d(np.ones((2, 2, 1, 1)))), o.insert(2, "c2")),
     "node 'c2': two synapses in a row"),
    (lambda n, o: (n.update(n2=neuron((2, 4, 4))), o.insert(3, "n2")),
     "node 'n2': a neuron layer needs a synapse in front"),
    (lambda n, o: o.remove("o"), "node 'd': a synapse with no neuron layer behind it"),
    (lambda n, o: (n.update(p=ir.SpikePool(mode="sum")), o.__setitem__(slice(3, None), ["p"])),
     "node 'p': a sum pool of spikes with no synapse behind it"),
    (lambda n, o: (n.update(bn=ir.BatchNorm(*np.ones((4, 2)))), o.insert(3, "bn")),
     "node 'bn': BatchNorm has no hardware form"),
])
def test_what_has_no_hardware_form_is_named(edit, message):
    with pytest.raises(HardwareLoweringError, match=message) as err:
        lower(bad(edit))
    assert isinstance(err.value, SnnexportError) and isinstance(err.value, ValueError)


def sew_graph(merge=ir.Add, then=None):
    """SEW ResNet: two spike trains merged, then (optionally `then`, e.g. a SEW AND with n) a
    synapse."""
    nodes = {"x": ir.Input((1, 4, 4)), "c": conv(1, 2), "n": neuron((2, 4, 4)),
             "c2": conv(2, 2), "n2": neuron((2, 4, 4)), "m": merge(), "c3": conv(2, 2),
             "n3": neuron((2, 4, 4))}
    edges = [("x", "c"), ("c", "n"), ("n", "c2"), ("c2", "n2"), ("n2", "m"), ("n", "m")]
    last = "m"
    if then is not None:
        nodes["m2"] = then()
        edges += [("m", "m2"), ("n", "m2")]
        last = "m2"
    edges += [(last, "c3"), ("c3", "n3")]
    return Graph(nodes, edges, {"folded": True, "time_steps": 2})


@pytest.mark.parametrize(("merge", "op", "peak"), [(ir.Add, "add", 2), (ir.SEWAnd, "and", 1),
                                                   (ir.SEWIAnd, "iand", 1)])
def test_a_spike_merge_before_a_synapse_is_expressed_and_lava_times_it(merge, op, peak):
    cores = lower(sew_graph(merge))
    (m,) = cores.spike_merges
    assert (m.name, m.op, m.inputs, m.peak, m.spatial) == ("m", op, ("n2", "n"), peak, True)
    assert [type(c).__name__ for c in cores.cores] == ["Core", "Core", "SpikeMerge", "Core"]
    (syn,) = cores.cores[-1].synapses
    assert (syn.name, syn.source, syn.origin) == ("c3", "m", "m")
    assert isinstance(m, SpikeMerge)
    # Lava (lava.lowering.lower_residual): an ADD is c3 on both summands, the shorter path
    # (n, one hop less than n2) one step late: a conv, so it reads a relay of n's spikes one
    # step later (n@+1); an AND / IAND a merge neuron one hop behind (its identity synapse
    # from n one step late)
    _, _, stages, _ = lava_lower(sew_graph(merge))
    links = {st.key: [(lk.source, lk.delay) for lk in st.links] for st in stages}
    depth = {st.key: st.depth for st in stages}
    if op == "add":
        assert links == {"n": [], "n2": [("n", 0)], "n@+1": [("n", 0)],
                         "n3": [("n2", 0), ("n@+1", 0)]}
        assert depth == {"n": 0, "n2": 1, "n@+1": 1, "n3": 2}
    else:
        assert links == {"n": [], "n2": [("n", 0)], "m": [("n2", 0), ("n", 1)],
                         "n3": [("m", 0)]}
        assert depth == {"n": 0, "n2": 1, "m": 2, "n3": 3}


def test_sew_and_of_graded_values_is_refused():
    """AND / IAND take binary spikes: a SEW ADD's sums (0, 1, 2) have no hardware AND."""
    with pytest.raises(HardwareLoweringError, match="node 'm2': SEW AND of graded values"):
        lower(sew_graph(ir.Add, then=ir.SEWAnd))
    cores = lower(sew_graph(ir.SEWAnd, then=ir.Add))  # an ADD of an AND: peak 2
    assert [(m.name, m.peak) for m in cores.spike_merges] == [("m", 1), ("m2", 2)]


def test_the_error_classes_are_one_family():
    assert issubclass(QuantError, HardwareLoweringError)
    assert LavaLoweringError is HardwareLoweringError
    assert issubclass(HardwareLoweringError, SnnexportError)
    from snnexport.energy.estimate import ProfileError
    from snnexport.exporters.netx_export import NetxExportError
    from snnexport.exporters.onnx_export import ONNXExportError
    from snnexport.lava.target import LavaError, LavaTimeout

    for cls, builtin in [(NetxExportError, ValueError), (ONNXExportError, ValueError),
                         (ProfileError, ValueError), (LavaError, RuntimeError),
                         (LavaTimeout, RuntimeError)]:
        assert issubclass(cls, SnnexportError) and issubclass(cls, builtin), cls
