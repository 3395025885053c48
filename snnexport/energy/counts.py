"""Operation counts from running the folded IR on real inputs (docs/semantics.md §6).

Per layer and per inference (summed over the T steps, averaged over samples):

  synapse (Conv2d / Dense)
    macs / sops   connections with a nonzero input and a nonzero weight: MACs when the layer
                  is fed analog values, synaptic operations (accumulates) when fed spikes.
                  NeuroBench's rule, so the numbers compare 1:1 with its SynapticOperations:
                  a layer is spike-fed when every input value is in {-1, 0, 1}; padding is not
                  an input, so borders count only the connections that exist; zero weights
                  are skipped.
    dense         every connection, every step: every input nonzero and every weight counted,
                  zero weights included (NeuroBench 2.3's SynapticOperations "Dense": its
                  all-ones copy of the layer, padding excluded)
    dense_nonzero_weights  the same with the zero weights skipped (what a pruned net's
                  connections compute when every input is nonzero); equal to `dense` unless
                  the layer has zero weights
    weight_reads  = macs + sops (one weight fetched per operation)
  neuron layer
    updates       neurons x T;  active_updates: those whose input that step was nonzero (a
                  current-based neuron: whose synaptic current J was; one update moves both
                  J and the membrane, as Loihi's compartment update does)
    spikes        spikes emitted
  pool (SpikePool / AvgPool2d)
    pool_ops      output values computed x T (an OR or a sum over the window each)
  merge (Add / SEWAnd / SEWIAnd: a residual connection)
    merge_ops     output values computed x T (one add, or one AND, per element per step)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..ir import nodes as ir
from ..ir.graph import Graph
from ..sim.limits import count, ensure_fits, fit_input, run_bytes, time_steps_of
from ..sim.reference import neuron_current, simulate


@dataclass
class LayerCounts:
    name: str
    kind: str  # synapse | neuron | pool | readout
    spike_fed: bool = False
    macs: float = 0.0
    sops: float = 0.0
    dense: float = 0.0  # every weight x every input, zero weights included (NeuroBench's)
    dense_nonzero_weights: float = 0.0  # the same, zero weights skipped
    weights: int = 0  # nonzero weights (memory footprint of the layer)
    updates: float = 0.0
    active_updates: float = 0.0
    spikes: float = 0.0
    neurons: int = 0
    pool_ops: float = 0.0
    merge_ops: float = 0.0

    @property
    def weight_reads(self) -> float:
        return self.macs + self.sops

    def to_dict(self) -> dict:
        d = asdict(self)
        d["weight_reads"] = self.weight_reads
        return d


def connections(node, x_bin: torch.Tensor, every_weight: bool = False) -> torch.Tensor:
    """Number of (nonzero input, nonzero weight) pairs, per sample of x_bin [N, ...];
    every_weight: zero weights count too (NeuroBench's Dense)."""
    w = torch.as_tensor(np.asarray(node.weight))
    mask = torch.ones_like(w, dtype=torch.float64) if every_weight else (w != 0).to(
        torch.float64)
    if isinstance(node, ir.Conv2d) or getattr(node, "kind", "") == "conv":  # (FixedLayer)
        y = F.conv2d(x_bin, mask, None, node.stride, node.padding,
                     getattr(node, "dilation", (1, 1)), node.groups)
    else:
        y = x_bin @ mask.T
    return y.flatten(1).sum(1)


@torch.no_grad()
def count_operations(graph: Graph, x: torch.Tensor, time_steps: int | None = None,
                     batch_size: int = 100, source: str = "<model>",
                     what: str = "the inputs") -> list[LayerCounts]:
    """Counts per inference, averaged over the samples of x: static images [N, *input] or
    frame sequences [N, T, *input]. Refused before running (UsageError): no samples, inputs of
    another shape than the graph's, a batch larger than the memory available."""
    return per_inference(count_totals(graph, x, time_steps, batch_size, source, what), len(x))


FIELDS = ("macs", "sops", "dense", "dense_nonzero_weights", "updates", "active_updates",
          "spikes", "pool_ops", "merge_ops")  # the counts that add up over samples


@torch.no_grad()
def count_totals(graph: Graph, x: torch.Tensor, time_steps: int | None = None,
                 batch_size: int = 100, source: str = "<model>",
                 what: str = "the inputs") -> list[LayerCounts]:
    """The counts summed over the samples of x (count_operations before its average): the
    totals of shards of the samples add up (add_totals) to those of all of them (whole
    numbers, exact in float64)."""
    count("--samples", len(x))
    fit_input(graph, x, source, what)
    t = time_steps or time_steps_of(graph, x)
    batch = min(count("batch_size", batch_size), len(x))
    ensure_fits(run_bytes(graph, batch, t), f"{source}: counting operations on batches of "
                f"{batch} samples over T={t}", "lower T, the batch or the model's size")
    rows: dict[str, LayerCounts] = {}

    def observe(name, node, x_in, y):
        t, b = y.shape[:2]
        if isinstance(node, (ir.Conv2d, ir.Dense)):
            row = rows.setdefault(name, LayerCounts(name, "synapse"))
            flat = x_in.flatten(0, 1)
            spike_fed = bool(torch.isin(flat, torch.tensor([-1.0, 0.0, 1.0],
                                                            dtype=flat.dtype)).all())
            ops = float(connections(node, (flat != 0).to(torch.float64)).sum())
            row.spike_fed = spike_fed
            if spike_fed:
                row.sops += ops
            else:
                row.macs += ops
            ones = torch.ones_like(flat[:1])
            row.dense += float(connections(node, ones, every_weight=True).sum()) * t * b
            row.dense_nonzero_weights += float(connections(node, ones).sum()) * t * b
            row.weights = int(np.count_nonzero(node.weight))
        elif isinstance(node, ir.NeuronLayer):
            row = rows.setdefault(name, LayerCounts(name, "neuron"))
            row.neurons = int(np.prod(node.shape))
            row.updates += float(row.neurons * t * b)
            # a current-based neuron is driven by its current J, which outlasts the input
            drive = neuron_current(node, x_in)  # (its kind's current; ir/neurons.py)
            row.active_updates += float((drive != 0).sum())
            if node.spiking:
                row.spikes += float(y.sum())
        elif isinstance(node, (ir.SpikePool, ir.AvgPool2d)):
            row = rows.setdefault(name, LayerCounts(name, "pool"))
            row.pool_ops += float(y[0, 0].numel() * t * b)
        elif isinstance(node, ir.Merge):
            row = rows.setdefault(name, LayerCounts(name, "merge"))
            row.merge_ops += float(y[0, 0].numel() * t * b)
        elif isinstance(node, ir.Voting):
            row = rows.setdefault(name, LayerCounts(name, "readout"))
            row.pool_ops += float(x_in[0, 0].numel() * t * b)  # one add per voter per step

    in_rank = len(graph.nodes[graph.order()[0]].shape)
    for lo in range(0, len(x), batch_size):
        xb = x[lo:lo + batch_size]
        if xb.dim() == in_rank + 2:  # frame sequences are stored [N, T, ...]
            xb = xb.transpose(0, 1)
        simulate(graph, xb, time_steps, observe=observe)
    return list(rows.values())


def add_totals(parts: list[list[LayerCounts]]) -> list[LayerCounts]:
    """The totals of contiguous shards of the samples (count_totals of each, in order) as
    those of all of them: each count summed; a synapse's spike_fed is the last shard's, as
    one run keeps its last batch's."""
    out = [LayerCounts(**asdict(row)) for row in parts[0]]
    for part in parts[1:]:
        if [r.name for r in part] != [r.name for r in out]:
            raise ValueError("add_totals: shards with other layers")
        for mine, theirs in zip(out, part, strict=True):
            for f in FIELDS:
                setattr(mine, f, getattr(mine, f) + getattr(theirs, f))
            mine.spike_fed = theirs.spike_fed
    return out


def per_inference(rows: list[LayerCounts], n: int) -> list[LayerCounts]:
    """Totals over n samples as counts per inference (each divided by n once)."""
    out = []
    for row in rows:
        row = LayerCounts(**asdict(row))
        for f in FIELDS:
            setattr(row, f, getattr(row, f) / n)
        out.append(row)
    return out


def ann_macs(graph: Graph) -> list[tuple[str, float]]:
    """The same network run once as an ANN (same weights, T = 1, every input nonzero, every
    weight multiplied, zero weights included as a dense ANN layer computes them): MACs per
    synapse layer per inference, = `dense` / T."""
    shapes = graph.shapes()
    out = []
    for name, node in graph.ordered():
        if isinstance(node, (ir.Conv2d, ir.Dense)):
            in_shape = shapes[graph.inputs(name)[0]]
            ones = torch.ones((1, *in_shape), dtype=torch.float64)
            out.append((name, float(connections(node, ones, every_weight=True).sum())))
    return out


@torch.no_grad()
def count_fixed_totals(net, x: torch.Tensor, batch_size: int = 100) -> list[LayerCounts]:
    """The counts of a model that is a fixed-point net (a netx file: LoadedModel.fixed) summed
    over the samples of x [T, N, *input] (its integer inputs), from its real run in the
    emulator (bit for bit Lava's): per layer with a synapse, `sops` the (nonzero input,
    nonzero weight) pairs of each step's spikes (the previous layer's, or the input spikes
    into a first synapse; a delayed spike is one operation when it is sent), `dense` /
    `dense_nonzero_weights` as for any model; netx's Input block has no synapse (its a_in comes
    from outside); per neuron layer `updates` every neuron every step, `active_updates` where
    its current u is nonzero (the emulator's recorded state; else where H is), `spikes`."""
    from ..quant.emulator import emulate, synapse_sum

    rows: dict[str, LayerCounts] = {}
    t_steps, n = x.shape[0], x.shape[1]
    for lo in range(0, n, count("batch_size", batch_size)):
        xb = x[:, lo:lo + batch_size]
        b = xb.shape[1]
        res = emulate(net, xb)
        state = getattr(res, "state", {})
        prev = xb
        for layer in net.layers:
            if layer.kind in ("dense", "conv"):
                syn = rows.setdefault(layer.name + ":synapse", LayerCounts(
                    layer.name + ":synapse", "synapse", spike_fed=True))
                in_shape = prev.shape[2:]
                flat = (prev.reshape(t_steps * b, *in_shape) != 0).to(torch.float64)
                if layer.kind == "dense":
                    flat = flat.flatten(1)
                    in_shape = (flat.shape[1],)
                syn.sops += float(connections(layer, flat).sum())
                ones = torch.ones((1, *in_shape), dtype=torch.float64)
                syn.dense += float(connections(layer, ones, every_weight=True).sum()) * t_steps * b
                syn.dense_nonzero_weights += float(connections(layer, ones).sum()) * t_steps * b
                syn.weights = int(np.count_nonzero(layer.weight))
            if layer.pool:  # an OR-pool's memoryless helpers: any input spike fires
                prev = (synapse_sum(layer, prev.flatten(0, 1)) > 0).reshape(
                    t_steps, b, *layer.shape)
                continue
            row = rows.setdefault(layer.name, LayerCounts(layer.name, "neuron"))
            row.neurons = layer.n
            row.updates += float(layer.n * t_steps * b)
            active = state[layer.name][0] if layer.name in state else res.membrane[layer.name]
            row.active_updates += float((active != 0).sum())
            s = res.spikes.get(layer.name)
            if s is not None:
                row.spikes += float(s.sum())
            prev = s if s is not None else torch.zeros((t_steps, b, *layer.shape))
    return list(rows.values())


def fixed_ann_macs(net) -> float:
    """A fixed-point net's synapses as an ANN: every connection once, zero weights included."""
    total, shape = 0.0, tuple(net.input_shape)
    for layer in net.layers:
        if layer.kind in ("dense", "conv"):
            ones = torch.ones((1, int(np.prod(shape))) if layer.kind == "dense" else (1, *shape),
                              dtype=torch.float64)
            total += float(connections(layer, ones, every_weight=True).sum())
        shape = tuple(layer.shape)
    return total
