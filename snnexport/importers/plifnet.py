"""Import the project's own torch models (snnexport.models.PLIFNet) into the IR.

The result is source-level (BatchNorm, Dropout, MaxPool2d, LIFNeuron, Voting stay as they
are); `snnexport.passes.fold` turns it into hardware-native nodes. Node names are the torch
module paths ("layers.conv1"), so reports point at the layer the user knows.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..errors import SnnexportError
from ..ir import nodes as ir
from ..ir.graph import Graph
from ..ir.validate import validate
from ..models import layers as L
from ..models.network import PLIFNet
from ..models.neurons import IF, LIF, PLIF, SpikingNeuron


class PLIFNetImportError(SnnexportError, TypeError):
    """A module of a PLIFNet the importer has no IR node for; names the module path."""


READOUT_MODE = {"rate": "rate", "lts": "last", "membrane": "membrane"}


def _np(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else t.detach().cpu().numpy().copy()


def neuron_node(m: SpikingNeuron) -> ir.LIFNeuron:
    if isinstance(m, PLIF):
        k = _np(torch.sigmoid(m.a))  # the float32 k the torch model computes
    elif isinstance(m, LIF):
        k = _np(m.k_fixed)
    elif isinstance(m, IF):
        k = None
    else:
        raise PLIFNetImportError(f"{type(m).__name__}: not a neuron the PLIFNet importer knows "
                                 "(PLIF, LIF, IF)")
    v_init = _np(m.v_init) if m.v_init is not None else np.array(m.default_v_init())
    return ir.LIFNeuron(shape=tuple(m.shape), k=k, v_threshold=m.v_threshold,
                        v_reset=m.v_reset, decay_input=m.decay_input, v_init=v_init,
                        spiking=m.spiking)


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
    if isinstance(m, L.SeqMaxPool2d):
        pair = nn.modules.utils._pair
        return ir.MaxPool2d(pair(m.kernel_size), pair(m.stride), pair(m.padding))
    if isinstance(m, L.SeqFlatten):
        return ir.Flatten()
    if isinstance(m, L.SeqDropout):
        return ir.Dropout(m.p)
    if isinstance(m, L.VotingLayer):
        return ir.Voting(m.population)
    raise PLIFNetImportError(f"{path}: {type(m).__name__} is not supported by the PLIFNet importer")


def import_plifnet(model: PLIFNet) -> Graph:
    cfg = model.cfg
    shape = (cfg.in_channels, cfg.input_size, cfg.input_size)
    named: list[tuple[str, ir.Node]] = [("input", ir.Input(shape, "analog"))]
    for name, m in model.layers.named_children():
        named.append((f"layers.{name}", module_node(f"layers.{name}", m)))
    meta = {"source": "snnexport.PLIFNet", "time_steps": cfg.time_steps,
            "readout": READOUT_MODE[cfg.readout], "config": cfg.to_dict()}
    return validate(Graph.chain(named, meta), type(model).__name__)
