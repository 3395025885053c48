"""netx HDF5 export of the fixed-point IR (read by `lava.lib.dl.netx.hdf5.Network`, lava-dl 0.6).

netx knows the layer types input / dense / conv / flatten (pool and average raise
NotImplementedError), CUBA neurons (`iDecay`, `vDecay`, `vThMant`; `bias` with a fixed
exponent of 6) and reads weights as integers. What this file holds:

  layer/0  'input': the first neuron layer (its synapse runs on the host: the analog image is
           not a spike). netx's Input block leaves its port unwired (lava-dl #298); the host's
           current reaches the layer as its bias mantissa, set per sample through the runtime.
  layer/k  'conv' (torch layout [C_out, C_in/groups, kh, kw], cross-correlation; netx flips
           and transposes to Lava's W x H x C) or 'dense'; an OR-pool is a depthwise 'conv'
           of ones (groups = C) into memoryless neurons (vDecay 4095, vThMant 0); 'flatten'
           before the first dense layer that follows a map.
  neuron   CUBA, iDecay 4096 (du = 4095: no current state; a current-based layer's i_decay,
           scalar or per neuron, except the input block's: the host runs that current),
           vDecay = dv (scalar, or per neuron
           in netx's W x H x C order), vThMant; snnexport's `vInit` (the IMP, per neuron,
           W x H x C) is not read by netx: set `neuron.v` at the layer's first step.
  host/    the first synapse (float weight, bias, per-neuron gain, a current-based host
           layer's i_decay) for the host encoder.
  snnexport  JSON: time steps, readout mode, population, layer names, format version.

snnexport reads the file back (quant/netx_import.py) into the fixed-point net it was written
from: the blocks' integers (per-neuron vDecay / iDecay / vInit included), the host layer from
`host/` and the names, scales and time steps from the `snnexport` metadata.

Weights: netx derives the Dense exponent from the integers (lava-dl netx/utils.py
optimize_weight_bits); even mixed-sign weights whose largest magnitude is in [128, 254] keep
exponent 0 and every bit. A dense layer outside that range is refused rather than shifted.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import SnnexportError
from ..files import atomic_write
from ..hw.layout import whc
from ..ir.neurons import LIF, kind_of
from ..quant.fixed import FixedLayer, FixedNet, QuantError
from ..quant.netx_import import NETX_FORMAT

NETX_VERSION = 1


class NetxExportError(SnnexportError, ValueError):
    """The fixed-point IR has something netx cannot hold; names the layer."""


def netx_layout(a: np.ndarray, layer: FixedLayer, first: bool) -> np.ndarray:
    """Per-neuron values as the netx block holds them: (W, H, C) for the input and conv
    blocks, one flat C-major vector for a dense block (whatever the IR shape)."""
    if layer.kind == "dense" and not first:
        return np.broadcast_to(np.asarray(a), layer.shape).reshape(-1)
    return whc(a, layer.shape)


def _neuron(group, layer: FixedLayer, first: bool = False) -> None:
    g = group.create_group("neuron")
    g["type"] = np.bytes_("CUBA")
    # a current-based layer keeps its current (netx: du = iDecay - 1); the input block's
    # current is computed on the host and arrives as its bias
    i_decay = np.asarray((LIF if first else kind_of(layer)).netx_i_decay(layer.i_decay))
    g["iDecay"] = int(i_decay.flat[0]) if (i_decay == i_decay.flat[0]).all() else netx_layout(
        i_decay, layer, first)
    dv = np.asarray(layer.dv)
    g["vDecay"] = int(dv.flat[0]) if (dv == dv.flat[0]).all() else netx_layout(dv, layer,
                                                                                first)
    g["vThMant"] = int(layer.vth_mant)
    g["refDelay"] = 1
    g["gradedSpike"] = False
    g["vInit"] = netx_layout(layer.v_init, layer, first)


def _check_dense(layer: FixedLayer) -> None:
    w = np.asarray(layer.weight)
    big = max(int(w.max()), -int(w.min()))
    if layer.pool:
        return
    if not 128 <= big <= 254 or layer.weight_exp != 0:
        raise NetxExportError(
            f"layer {layer.name!r}: netx re-derives the weight exponent from the integers and "
            f"keeps exponent 0 only for weights with max |w| in [128, 254] (got "
            f"{big}, weight_exp {layer.weight_exp}); use the Lava-process target for it")


def write_netx(net: FixedNet, path) -> Path:
    """Writes OUT.net (HDF5) atomically. A net with residual merges is refused, naming the
    merge node: netx holds a chain of layers."""
    import h5py

    try:
        net.chain_only("netx")
        net.refuse_current_bias("netx")
    except QuantError as e:
        raise NetxExportError(str(e)) from None

    def write(tmp):
        with h5py.File(tmp, "w") as f:
            layers = f.create_group("layer")
            k = 0
            spatial = True
            for i, layer in enumerate(net.layers):
                if i == 0:
                    g = layers.create_group(str(k))
                    g["type"] = np.bytes_("input")
                    g["shape"] = np.array(layer.shape)
                    _neuron(g, layer, first=True)
                    spatial = len(layer.shape) == 3
                    k += 1
                    continue
                if layer.kind == "dense" and spatial:
                    layers.create_group(str(k))["type"] = np.bytes_("flatten")
                    k += 1
                    spatial = False
                g = layers.create_group(str(k))
                k += 1
                if layer.kind == "conv":
                    g["type"] = np.bytes_("conv")
                    g["shape"] = np.array(layer.shape)
                    g["weight"] = np.asarray(layer.weight, np.int64)
                    g["stride"] = np.array(layer.stride)
                    g["padding"] = np.array(layer.padding)
                    g["dilation"] = np.array([1, 1])
                    g["groups"] = int(layer.groups)
                    if layer.bias_mant is not None:
                        per_channel = np.asarray(layer.bias_mant)[:, 0, 0]
                        if not (layer.bias_mant == per_channel[:, None, None]).all():
                            raise NetxExportError(f"layer {layer.name!r}: a conv bias must be "
                                                  "one value per channel")
                        g["bias"] = per_channel.astype(np.int64)
                else:
                    _check_dense(layer)
                    g["type"] = np.bytes_("dense")
                    g["shape"] = np.array([layer.n])
                    g["weight"] = np.asarray(layer.weight, np.int64)
                    if layer.bias_mant is not None:
                        g["bias"] = np.asarray(layer.bias_mant, np.int64).reshape(-1)
                _neuron(g, layer)
            host = net.layers[0]
            h = f.create_group("host")
            h["weight"] = host.weight
            if host.bias is not None:
                h["bias"] = host.bias
            if host.gain is not None:
                h["gain"] = host.gain
            if host.i_decay is not None:  # a current-based host layer: its current's decay
                h["i_decay"] = np.asarray(host.i_decay, np.int64)
            meta = {"format": NETX_FORMAT, "version": NETX_VERSION,
                    "time_steps": net.time_steps, "readout": net.readout,
                    "population": net.population, "input_shape": list(net.input_shape),
                    "host": {"kind": host.host_kind, "scale": host.scale,
                             "stride": list(host.stride), "padding": list(host.padding),
                             "groups": host.groups},
                    "layers": [{"name": lay.name, "shape": list(lay.shape), "pool": lay.pool,
                                "spiking": lay.spiking, "scale": lay.scale}
                               for lay in net.layers]}
            f["snnexport"] = np.bytes_(json.dumps(meta, sort_keys=True))

    return atomic_write(path, write)


def read_netx_meta(path) -> dict:
    import h5py

    with h5py.File(path, "r") as f:
        return json.loads(f["snnexport"][()].decode())
