"""Import the project's own torch models (snnexport.models.PLIFNet) into the IR.

The result is source-level (BatchNorm, Dropout, MaxPool2d, LIFNeuron, Voting stay as they
are); `snnexport.passes.fold` turns it into hardware-native nodes. Node names are the torch
module paths ("layers.conv1"), so reports point at the layer the user knows.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..errors import SnnexportError, UsageError
from ..ir import nodes as ir
from ..ir.graph import Graph
from ..ir.validate import validate
from ..models import layers as L
from ..models.network import PLIFNet
from ..models.neurons import IF, LIF, PLIF, SpikingNeuron
from ..models.sew_resnet import SEWResNet
from ..sim.reference import SimResult


class PLIFNetImportError(SnnexportError, TypeError):
    """A module of a PLIFNet the importer has no IR node for; names the module path."""


READOUT_MODE = {"rate": "rate", "lts": "last", "membrane": "membrane"}


def _np(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else t.detach().cpu().numpy().copy()


def neuron_node(m: SpikingNeuron) -> ir.LIFNeuron:
    if isinstance(m, PLIF):
        k = _np(m.k())  # the float32 k the torch model computes (sigmoid(a), or tau_pow2's)
    elif isinstance(m, LIF):
        k = _np(m.k_fixed)
    elif isinstance(m, IF):
        k = None
    else:
        raise PLIFNetImportError(f"{type(m).__name__}: not a neuron the PLIFNet importer knows "
                                 "(PLIF, LIF, IF)")
    v_init = _np(m.v_init) if m.v_init is not None else np.array(m.default_v_init())
    k_syn = None if m.current_decay is None else np.array(1.0 - m.current_decay)
    return ir.LIFNeuron(shape=tuple(m.shape), k=k, v_threshold=m.v_threshold,
                        v_reset=m.v_reset, decay_input=m.decay_input, v_init=v_init,
                        spiking=m.spiking, k_syn=k_syn)


def module_node(path: str, m: nn.Module) -> ir.Node:
    if isinstance(m, SpikingNeuron):
        return neuron_node(m)
    if isinstance(m, L.SeqConv2d):
        return ir.Conv2d(_np(m.weight), _np(m.bias), tuple(m.stride), tuple(m.padding), m.groups)
    if isinstance(m, (L.SeqBatchNorm2d, L.SeqBatchNorm1d)):
        return ir.BatchNorm(_np(m.running_mean), _np(m.running_var), _np(m.weight), _np(m.bias),
                            float(m.eps))
    if isinstance(m, nn.Linear):
        return ir.Dense(_np(m.weight), _np(m.bias))
    if isinstance(m, (L.SeqMaxPool2d, L.SeqAvgPool2d)):
        pair = nn.modules.utils._pair
        cls = ir.MaxPool2d if isinstance(m, L.SeqMaxPool2d) else ir.AvgPool2d
        return cls(pair(m.kernel_size), pair(m.stride), pair(m.padding))
    if isinstance(m, L.SeqFlatten):
        return ir.Flatten()
    if isinstance(m, L.SeqDropout):
        return ir.Dropout(m.p)
    if isinstance(m, L.VotingLayer):
        return ir.Voting(m.population)
    raise PLIFNetImportError(f"{path}: {type(m).__name__} is not supported by the PLIFNet importer")


MERGE = {"ADD": ir.Add, "AND": ir.SEWAnd, "IAND": ir.SEWIAnd}


def import_plifnet(model: PLIFNet, where: str | None = None) -> Graph:
    """The model's IR graph; `where` (the checkpoint's path) names it in errors, else its
    class."""
    where = where or type(model).__name__
    cfg = model.cfg
    shape = (cfg.in_channels, cfg.input_size, cfg.input_size)
    meta = {"source": f"snnexport.{type(model).__name__}", "time_steps": cfg.time_steps,
            "readout": READOUT_MODE[cfg.readout], "config": cfg.to_dict()}
    if isinstance(model, SEWResNet):
        return validate(_sew_graph(model, shape, meta), where)
    named: list[tuple[str, ir.Node]] = [("input", ir.Input(shape, "analog"))]
    for name, m in model.layers.named_children():
        named.append((f"layers.{name}", module_node(f"layers.{name}", m)))
    return validate(Graph.chain(named, meta), where)


def _sew_graph(model: SEWResNet, shape, meta: dict) -> Graph:
    """SEW-ResNet as a graph: each block's two paths meet in a merge node
    `blocks.<i>.connect` whose arguments are (block output, identity), as SEWIAnd's (1 - a) b
    wants them (models/sew_resnet.py states the block)."""
    nodes: dict[str, ir.Node] = {"input": ir.Input(shape, "analog")}
    edges: list[tuple[str, str]] = []

    def run(prefix: str, seq, src: str) -> str:
        for name, m in seq:
            path = f"{prefix}.{name}"
            nodes[path] = module_node(path, m)
            edges.append((src, path))
            src = path
        return src

    x = run("stem", model.stem.named_children(), "input")
    for i, block in enumerate(model.blocks):
        p = f"blocks.{i}"
        out = run(p, [(n, getattr(block, n)) for n in ("conv1", "bn1", "sn1", "conv2", "bn2",
                                                       "sn2")], x)
        identity = (run(p, [(n, getattr(block, n)) for n in ("down_conv", "down_bn",
                                                             "down_sn")], x)
                    if block.down else x)
        nodes[f"{p}.connect"] = MERGE[block.connect_fn]()
        edges += [(out, f"{p}.connect"), (identity, f"{p}.connect")]
        x = f"{p}.connect"
    run("head", model.head.named_children(), x)
    return Graph(nodes, edges, meta)


@torch.no_grad()
def run_torch_reference(model: PLIFNet, x: torch.Tensor,
                        dtype: torch.dtype = torch.float32) -> SimResult:
    """The trained model itself, layer by layer, recording spikes and H of every neuron layer.
    dtype float64 runs a double-precision copy of the same weights."""
    if model.training:
        raise UsageError("put the model in eval mode (model.eval()) before a parity run")
    m = model if dtype == torch.float32 else _as_dtype(model, dtype)
    spikes, membrane = {}, {}

    def record(name):  # the layer's traces, from its own input (module paths = IR node names)
        def hook(layer, args, _out):
            h, s, _v = layer.run(args[0])
            if layer.spiking:
                spikes[name] = s
            membrane[name] = h
        return hook

    hooks = [layer.register_forward_hook(record(name)) for name, layer in m.named_modules()
             if isinstance(layer, SpikingNeuron)]
    try:
        out = m(x.to(dtype))
    finally:
        for h in hooks:
            h.remove()
    return SimResult(out, m.scores(out), spikes, membrane)


def _as_dtype(model: PLIFNet, dtype: torch.dtype) -> PLIFNet:
    import copy

    return copy.deepcopy(model).to(dtype).eval()
