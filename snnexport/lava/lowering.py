"""Lower the folded IR to what Lava's Dense / Conv + LIF processes take (numpy only: this module
runs in the Python 3.10 Lava environment as well as in the core).

Per-neuron values are flat vectors in the IR's C-major order (the runner puts map layers into
Lava's W x H x C). An OR-pool is a sum of ones over its window into memoryless neurons
(du = dv = 1, threshold 0.5): at least one spike in the window fires.

One stage per core of `snnexport.hw.cores.lower` (which pairs each synapse with its neuron
layer): a host stage (the first synapse, fed the analog input, whose result W1 x + b1 is the
first neuron layer's bias), then stages of (synapse, bias, neuron parameters). A spatial core
(a conv on a map whose neurons have no per-neuron gain) and an OR-pool on a map are also
described as a conv (`Stage.conv`) for Lava's Conv process; the dense matrix is the form for
everything else (a conv whose neurons have per-neuron gains: each neuron owns its row). Residual
merges (a core fed by several synapses, a SEW merge of spike trains) are refused, naming the
merge node (`CoreGraph.chain_only`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..hw.cores import HardwareLoweringError, PoolCore, pool_matrix
from ..hw.cores import lower as lower_cores
from ..ir.graph import Graph

# the lowering errors are the hardware lowering's (hw.cores), under their old name too
LavaLoweringError = HardwareLoweringError


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
    Lava stages (one per core of `hw.cores.lower`), and the readout's voting group size."""
    if not graph.metadata.get("folded"):
        raise LavaLoweringError("lower the folded IR (snnexport fold)")
    cores = lower_cores(graph)
    cores.chain_only("Lava")
    stages: list[Stage] = []
    host = None
    for core in cores.cores:
        if isinstance(core, PoolCore):
            n = core.n
            conv = None
            if core.spatial:
                c = core.in_shape[0]
                conv = dict(weight=np.ones((c, 1, *core.node.kernel)),
                            in_shape=tuple(core.in_shape), stride=tuple(core.node.stride),
                            padding=tuple(core.node.padding), groups=c)
            stages.append(Stage("", None if conv else pool_matrix(core.node, core.in_shape),
                                np.zeros(n), np.zeros(n), 0.5, np.zeros(n), True,
                                tuple(core.shape), conv))
            continue
        syn = core.synapse("Lava")
        node, n = core.neuron, core.n
        gain = core.gain()
        gain = np.ones(n) if gain is None else gain
        b = syn.bias_vector()
        b = (np.zeros(n) if b is None else b) * gain
        args = (core.per_neuron(node.decay), float(node.threshold),
                core.per_neuron(node.v_init), node.spiking, core.shape)
        if core.host:  # the first synapse runs on the host; each neuron owns its row
            host = (syn.matrix() * gain[:, None], b)
            stages.append(Stage(core.name, None, np.zeros(n), *args))
        else:
            conv = syn.conv_args() if core.spatial else None
            w = None if conv else syn.matrix() * gain[:, None]
            stages.append(Stage(core.name, w, b, *args, conv))
    return host[0], host[1], stages, cores.population
