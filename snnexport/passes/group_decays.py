"""Per-neuron decays grouped into at most K values per layer, for chips whose cores take only a
few decay settings (Loihi: one per compartment profile). Only the decay is grouped: the input
gain 1/tau stays per neuron, folded into each neuron's own weights, which the chip holds freely.

One-dimensional k-means (scikit-learn's KMeans, fixed seed) on each layer's decays; every
neuron takes its cluster's centre. Layers with at most K distinct decays are left alone.
"""

from __future__ import annotations

import copy

import numpy as np

from ..errors import UsageError
from ..ir import nodes as ir
from ..ir.graph import Graph


def group_decays(graph: Graph, k: int) -> tuple[Graph, list[dict]]:
    """(new graph, per-layer report {layer, before, after, max_change})."""
    from sklearn.cluster import KMeans

    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise UsageError(f"--decays {k!r}: the number of decay values per layer must be a whole "
                         "number >= 1; give --decays 1 or more")
    out = copy.deepcopy(graph)
    report = []
    for name, node in out.ordered():
        if not isinstance(node, ir.Neuron):
            continue
        decay = np.asarray(node.decay, np.float64)
        values = np.unique(decay)
        if len(values) <= k:
            report.append({"layer": name, "before": len(values), "after": len(values),
                           "max_change": 0.0})
            continue
        km = KMeans(n_clusters=k, n_init=10, random_state=0).fit(decay.reshape(-1, 1))
        grouped = km.cluster_centers_[km.labels_, 0].reshape(decay.shape)
        node.decay = grouped
        report.append({"layer": name, "before": len(values),
                       "after": len(np.unique(grouped)),
                       "max_change": float(np.abs(grouped - decay).max())})
    out.metadata["decays_grouped"] = k
    return out, report
