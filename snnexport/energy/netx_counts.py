"""Operation counts of an imported netx network (quant/netx_import.py) from its real run in the
emulator (bit for bit Lava's), priced like snnexport's own models (counts.py, estimate.py).

Per block, per inference (averaged over the samples), over the T steps every layer runs:
  synapse  sops: nonzero input x nonzero weight pairs for each step's spikes (binary inputs:
           the spikes of the layer before, or the input spikes into the first synapse;
           padding and delays as they are: a delayed spike is one operation when it is
           sent); `dense`: every weight x every input per step, zero weights included
           (NeuroBench's Dense); no synapse for the Input block (its a_in comes from outside);
  neuron   updates: every neuron every step; active: where its current u is nonzero (the CUBA
           current carries input over steps); spikes sent.
The same network as an ANN: every connection once per inference (MACs).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UsageError
from ..quant.netx_emulator import emulate_netx
from ..quant.netx_import import NetxLayer, NetxNet
from ..quant.netx_inputs import NetxInputs, inputs_of, read_inputs
from .counts import LayerCounts, per_inference
from .estimate import EnergyReport, estimate, load_profile


def _connections(layer: NetxLayer, x: torch.Tensor, every_weight: bool = False) -> float:
    """(nonzero input, nonzero weight) pairs summed over x [N, *in_shape] (0/1 values)."""
    w = torch.as_tensor(np.asarray(layer.weight), dtype=torch.float64)
    mask = torch.ones_like(w) if every_weight else (w != 0).to(torch.float64)
    x = x.to(torch.float64)
    if layer.kind == "conv":
        y = F.conv2d(x, mask, None, layer.stride, layer.padding, layer.dilation, layer.groups)
    else:
        y = x.reshape(len(x), -1) @ mask.T
    return float(y.sum())


def netx_counts(net: NetxNet, inputs: NetxInputs, batch_size: int = 100) -> list[LayerCounts]:
    """Counts per inference of `net` on `inputs` (module docstring)."""
    rows: dict[str, LayerCounts] = {}
    x = inputs.x
    t_steps, n = x.shape[0], x.shape[1]
    for lo in range(0, n, batch_size):
        xb = x[:, lo:lo + batch_size]
        b = xb.shape[1]
        res = emulate_netx(net, xb, input_bias=inputs.input_bias)
        prev = xb
        for layer in net.layers:
            if layer.kind != "input":
                syn = rows.setdefault(layer.name + ":synapse", LayerCounts(
                    layer.name + ":synapse", "synapse", spike_fed=True))
                flat = prev.reshape(t_steps * b, *layer.in_shape)
                syn.sops += _connections(layer, flat != 0)
                ones = torch.ones((1, *layer.in_shape))
                syn.dense += _connections(layer, ones, every_weight=True) * t_steps * b
                syn.dense_nonzero_weights += _connections(layer, ones) * t_steps * b
                syn.weights = int(np.count_nonzero(layer.weight))
            row = rows.setdefault(layer.name, LayerCounts(layer.name, "neuron"))
            row.neurons = layer.n
            row.updates += float(layer.n * t_steps * b)
            row.active_updates += float((res.state[layer.name][0] != 0).sum())
            if layer.spiking:
                row.spikes += float(res.spikes[layer.name].sum())
            prev = res.spikes[layer.name]
    return per_inference(list(rows.values()), n)


def netx_ann_macs(net: NetxNet) -> float:
    """Every connection once (the same weights as an ANN), zero weights included."""
    return sum(_connections(lay, torch.ones((1, *lay.in_shape)), every_weight=True)
               for lay in net.layers if lay.kind != "input")


def netx_energy(loaded, profile: str, data=None, samples: int | None = 200,
                inputs=None) -> EnergyReport:
    """`snnexport energy net.net --data FILE.npz` (`loaded.graph` the NetxNet)."""
    net = loaded.graph
    if inputs is not None:
        arrays = {"x": np.asarray(inputs[0])}
        ins = inputs_of(net, arrays, "the given inputs", samples)
    elif data is None or not str(data).endswith(".npz"):
        raise UsageError(f"{loaded.path}: a netx file is counted on its own inputs: --data "
                         f"FILE.npz with x [N, T, {', '.join(map(str, net.netx_input_shape))}] "
                         "(netx's W x H x C) or bias")
    else:
        ins = read_inputs(net, data, samples)
    counts = netx_counts(net, ins)
    return estimate(counts, load_profile(profile), netx_ann_macs(net), ins.x.shape[1],
                    ins.x.shape[0])


__all__ = ["netx_ann_macs", "netx_counts", "netx_energy"]
