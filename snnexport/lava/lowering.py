"""Lower the folded IR to what Lava's Dense / Conv + LIF processes take (numpy only: this module
runs in the Python 3.10 Lava environment as well as in the core).

Per-neuron values are flat vectors in the IR's C-major order (the runner puts map layers into
Lava's W x H x C). An OR-pool is a sum of ones over its window into memoryless neurons
(du = dv = 1, threshold 0.5): at least one spike in the window fires.

The chain is: a host stage (the first synapse, fed the analog input, whose result W1 x + b1 is
the first neuron layer's bias), then stages of (synapse, bias, neuron parameters). A conv on a
map whose neurons have no per-neuron gain, and an OR-pool on a map, are also described as a
conv (`Stage.conv`) for Lava's Conv process; the dense matrix is the form for everything else
(a conv whose neurons have per-neuron gains: each neuron owns its row).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ir import nodes as ir
from ..ir.graph import Graph


class LavaLoweringError(ValueError):
    """An IR the Lava lowering cannot take; names the node."""


def conv_matrix(node: ir.Conv2d, in_shape) -> np.ndarray:
    """The Conv2d as a dense matrix M with conv(x).flatten() == M @ x.flatten()."""
    c_in, h, w = in_shape
    c_out, _, kh, kw = node.weight.shape
    oh, ow = ir.conv_out(h, kh, node.stride[0], node.padding[0]), ir.conv_out(
        w, kw, node.stride[1], node.padding[1])
    m = np.zeros((c_out * oh * ow, c_in * h * w))
    per_group = c_in // node.groups
    for o in range(c_out):
        g = o // (c_out // node.groups)
        for ci in range(per_group):
            c = g * per_group + ci
            for u in range(kh):
                for v in range(kw):
                    wt = float(node.weight[o, ci, u, v])
                    if wt == 0.0:
                        continue
                    for y in range(oh):
                        iy = y * node.stride[0] + u - node.padding[0]
                        if not 0 <= iy < h:
                            continue
                        for x in range(ow):
                            ix = x * node.stride[1] + v - node.padding[1]
                            if 0 <= ix < w:
                                m[(o * oh + y) * ow + x, (c * h + iy) * w + ix] += wt
    return m


def pool_matrix(node: ir.SpikePool, in_shape) -> np.ndarray:
    c, h, w = in_shape
    kh, kw = node.kernel
    oh = ir.conv_out(h, kh, node.stride[0], node.padding[0])
    ow = ir.conv_out(w, kw, node.stride[1], node.padding[1])
    m = np.zeros((c * oh * ow, c * h * w))
    for ch in range(c):
        for y in range(oh):
            for x in range(ow):
                for u in range(kh):
                    for v in range(kw):
                        iy = y * node.stride[0] + u - node.padding[0]
                        ix = x * node.stride[1] + v - node.padding[1]
                        if 0 <= iy < h and 0 <= ix < w:
                            m[(ch * oh + y) * ow + x, (ch * h + iy) * w + ix] = 1.0
    return m


@dataclass
class Stage:
    """One synapse + neuron layer: I = weights @ s_prev (+ bias through the neuron);
    H = decay V + I + bias; S = H >= threshold; hard reset (or soft) as the IR."""

    name: str  # the IR neuron node's name ('' for an OR-pool's helper neurons)
    weights: np.ndarray | None  # None for the first stage (host-computed)
    bias: np.ndarray
    decay: np.ndarray
    threshold: float
    v_init: np.ndarray
    spiking: bool
    shape: tuple[int, ...]
    # a conv kept as a conv (Lava's Conv process): torch-layout weight, input (C, H, W) shape,
    # stride, padding, groups; `weights` is then None
    conv: dict | None = None


def lower(graph: Graph) -> tuple[np.ndarray, np.ndarray, list[Stage], int]:
    """(M1, b1, stages, population): the host matrix and bias of the first synapse, the
    Lava stages, and the readout's voting group size."""
    if not graph.metadata.get("folded"):
        raise LavaLoweringError("lower the folded IR (snnexport fold)")
    shapes = graph.shapes()
    order = graph.order()
    stages: list[Stage] = []
    host = None
    pending_w, pending_b, pending_conv = None, None, None
    spatial = True  # False once a layer is flat (a dense synapse, or a conv that had to unroll)
    population = 1
    for i, name in enumerate(order):
        node = graph.nodes[name]
        prev_shape = shapes[order[i - 1]] if i else None
        if isinstance(node, ir.Input):
            continue
        if isinstance(node, (ir.Conv2d, ir.Dense)):
            if pending_w is not None:
                raise LavaLoweringError(f"node {name!r}: two synapses in a row")
            if isinstance(node, ir.Conv2d):  # unrolled only where a matrix is needed
                def m(node=node, in_shape=prev_shape):
                    return conv_matrix(node, in_shape)
            else:
                def m(node=node):
                    return np.asarray(node.weight, dtype=np.float64)
            pending_conv = None
            if isinstance(node, ir.Conv2d) and spatial:
                pending_conv = dict(weight=np.asarray(node.weight, np.float64),
                                    in_shape=tuple(prev_shape), stride=tuple(node.stride),
                                    padding=tuple(node.padding), groups=int(node.groups))
            n_out = int(np.prod(node.out_shape(tuple(prev_shape))))
            if node.bias is None:
                b = np.zeros(n_out)
            elif isinstance(node, ir.Conv2d):
                b = np.repeat(np.asarray(node.bias, np.float64), n_out // len(node.bias))
            else:
                b = np.asarray(node.bias, np.float64)
            pending_w, pending_b = m, b
        elif isinstance(node, ir.Neuron):
            if pending_w is None:
                raise LavaLoweringError(f"node {name!r}: a neuron layer needs a synapse in front")
            n = int(np.prod(node.shape))
            if node.reset != "hard":
                raise LavaLoweringError(f"node {name!r}: Lava's LIF resets to 0 (hard reset); "
                                        "soft reset is not supported")
            gain = np.broadcast_to(np.asarray(1.0 if node.gain is None else node.gain,
                                              np.float64), node.shape).reshape(n)
            b = pending_b * gain
            decay = np.broadcast_to(np.asarray(node.decay, np.float64), node.shape).reshape(n)
            v0 = np.broadcast_to(np.asarray(node.v_init, np.float64), node.shape).reshape(n)
            conv = pending_conv if node.gain is None else None  # a per-neuron gain: unroll
            args = (decay.copy(), float(node.threshold), v0.copy(), node.spiking,
                    tuple(node.shape))
            if host is None:  # the first synapse runs on the host
                host = (pending_w() * gain[:, None], b)  # each neuron owns its row
                spatial = pending_conv is not None
                stages.append(Stage(name, None, np.zeros(n), *args))
            else:
                spatial = conv is not None
                w = None if conv else pending_w() * gain[:, None]
                stages.append(Stage(name, w, b, *args, conv))
            pending_w = pending_b = pending_conv = None
        elif isinstance(node, ir.SpikePool):
            if node.mode != "or":
                raise LavaLoweringError(f"node {name!r}: only the OR-pool is lowered to Lava")
            n = int(np.prod(shapes[name]))
            conv = None
            if spatial:
                c = prev_shape[0]
                conv = dict(weight=np.ones((c, 1, *node.kernel)), in_shape=tuple(prev_shape),
                            stride=tuple(node.stride), padding=tuple(node.padding), groups=c)
            stages.append(Stage("", None if conv else pool_matrix(node, prev_shape),
                                np.zeros(n), np.zeros(n), 0.5, np.zeros(n), True,
                                tuple(shapes[name]), conv))
        elif isinstance(node, ir.Flatten):
            spatial = False  # vectors are already C-major flat
        elif isinstance(node, ir.Readout):
            population = node.population
        else:
            raise LavaLoweringError(f"node {name!r}: {type(node).__name__} is not lowered to "
                                    "Lava")
    if host is None:
        raise LavaLoweringError("no neuron layer")
    return host[0], host[1], stages, population
