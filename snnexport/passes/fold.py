"""Folding passes: source-level IR -> hardware-native IR (docs/semantics.md §3).

Each pass is a small class that matches one pattern at a node (`match(g, name)`) and rewrites
it (`rewrite(g, name) -> Graph`), wherever in the graph it sits; calling the pass applies it at
every match, in topological order. None changes what the network computes (tests run the
reference simulator before and after each). Arithmetic is done in float64 on the float32
values the source model holds. A synapse is only rewritten for the node behind it when that
node is all it feeds (a BatchNorm or gain on one branch cannot change the other branch).

  remove_dropout     Dropout -> (nothing)
  absorb_batchnorm   Conv2d/Dense + BatchNorm -> Conv2d/Dense with W' = W g/sqrt(var+eps),
                     b' = (b - mu) g/sqrt(var+eps) + beta
  shift_reset        V_reset != 0 -> v' = v - V_reset: threshold V_th - V_reset, v_init - V_reset
  tau_to_decay       LIFNeuron (reset level 0) -> Neuron with decay 1 - k and input gain k
                     (decay_input) or 1; IF: decay 1. The IMP / V_-1 is carried as v_init.
  fold_input_gain    synapse + Neuron(gain g): W'' = g W', b'' = g b' when g is constant per
                     output channel (always for Dense); a per-neuron g that varies over space
                     stays an explicit per-neuron gain; the threshold and a soft reset's
                     amount (reset_by) are in the membrane's units, which this leaves as they
                     are: both are carried unchanged
  maxpool_to_or      MaxPool2d fed by spikes (a spiking layer, an OR-pool, a SEW AND/IAND of
                     spikes) -> SpikePool('or')
  maxpool_of_values  MaxPool2d fed by values that are no spikes (a SEW ADD's 0/1/2, a current
                     pooled before its neuron) -> SpikePool('max'): the float targets compute
                     it; NIR and the chips' lowering refuse it by name
  avgpool_to_sum     AvgPool2d fed by spikes (or by integer sums of them, as SEW ADD makes) ->
                     SpikePool('sum'), its 1/(kh kw) folded into the one Conv2d/Dense it feeds
                     (through Flattens): spike counts stay integers
  upsample_into_dense  Upsample (nearest, whole factors) -> Flatten -> Dense: the Dense's
                     weights summed over the input cells each one repeats, W'[o, c, h, w] =
                     sum_{i // sh = h, j // sw = w} W[o, c, i, j]; the Upsample is gone
  voting_to_readout  a Voting that is a network output -> Readout with the model's readout
                     mode
"""

from __future__ import annotations

import numpy as np

from ..ir import nodes as ir
from ..ir.graph import Graph


def _f64(a):
    return None if a is None else np.asarray(a, dtype=np.float64)


class Pass:
    """One pattern and its rewrite. `match(g, name)`: does the pattern sit at node `name`?
    `rewrite(g, name)`: the graph with it rewritten. Calling the pass rewrites every match."""

    def match(self, g: Graph, name: str) -> bool:
        raise NotImplementedError

    def rewrite(self, g: Graph, name: str) -> Graph:
        raise NotImplementedError

    def __call__(self, g: Graph) -> Graph:
        done: set[str] = set()
        while True:
            hit = next((n for n in g.order() if n not in done and self.match(g, n)), None)
            if hit is None:
                return g
            done.add(hit)
            g = self.rewrite(g, hit)

    @property
    def __name__(self) -> str:
        return _snake(type(self).__name__)


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")


def _sole_input(g: Graph, name: str) -> str | None:
    ins = g.inputs(name)
    return ins[0] if len(ins) == 1 else None


def _synapse(node, w, b):
    """A Conv2d/Dense like `node` with weights w and bias b."""
    if isinstance(node, ir.Conv2d):
        return ir.Conv2d(w, b, node.stride, node.padding, node.groups)
    return ir.Dense(w, b)


def _scaled(node, per_out: np.ndarray):
    """The synapse with each output channel's weights and bias multiplied by per_out."""
    w = _f64(node.weight) * per_out.reshape(-1, *([1] * (node.weight.ndim - 1)))
    b = None if node.bias is None else _f64(node.bias) * per_out
    return _synapse(node, w, b)


class RemoveDropout(Pass):
    def match(self, g, name):
        return isinstance(g.nodes[name], ir.Dropout)

    def rewrite(self, g, name):
        return g.splice(name)


class AbsorbBatchnorm(Pass):
    def match(self, g, name):
        return isinstance(g.nodes[name], ir.BatchNorm)

    def rewrite(self, g, name):
        node = g.nodes[name]
        prev_name = _sole_input(g, name)
        prev = g.nodes[prev_name]
        if not isinstance(prev, (ir.Conv2d, ir.Dense)):
            raise ir.IRError(f"node {name!r}: BatchNorm follows {type(prev).__name__} "
                             f"{prev_name!r}; it can only be absorbed into a Conv2d or Dense")
        if g.consumers(prev_name) != [name]:
            raise ir.IRError(f"node {name!r}: the {type(prev).__name__} {prev_name!r} before "
                             f"this BatchNorm also feeds {g.consumers(prev_name)}; the "
                             "BatchNorm cannot be absorbed into it")
        scale = _f64(node.gamma) / np.sqrt(_f64(node.var) + node.eps)
        w = _f64(prev.weight) * scale.reshape(-1, *([1] * (prev.weight.ndim - 1)))
        b = _f64(prev.bias) if prev.bias is not None else np.zeros(len(scale))
        b = (b - _f64(node.mean)) * scale + _f64(node.beta)
        return g.with_nodes({prev_name: _synapse(prev, w, b)}).splice(name)


class ShiftReset(Pass):
    def match(self, g, name):
        node = g.nodes[name]
        return isinstance(node, ir.LIFNeuron) and node.v_reset not in (None, 0.0)

    def rewrite(self, g, name):
        node = g.nodes[name]
        r = float(node.v_reset)
        return g.with_nodes({name: ir.LIFNeuron(
            node.shape, node.k, node.v_threshold - r, 0.0, node.decay_input,
            _f64(node.v_init) - r, node.spiking, node.k_syn)})


class TauToDecay(Pass):
    def match(self, g, name):
        return isinstance(g.nodes[name], ir.LIFNeuron)

    def rewrite(self, g, name):
        node = g.nodes[name]
        if node.v_reset not in (None, 0.0):
            raise ir.IRError(f"node {name!r}: run shift_reset before tau_to_decay")
        k = _f64(node.k)
        decay = np.ones(()) if k is None else 1.0 - k
        gain = k if (k is not None and node.decay_input) else None
        return g.with_nodes({name: ir.Neuron(
            node.shape, decay, gain, float(node.v_threshold),
            "soft" if node.v_reset is None else "hard", _f64(node.v_init), node.spiking,
            current_decay=None if node.k_syn is None else 1.0 - _f64(node.k_syn))})


def _per_channel(gain: np.ndarray, channels: int, shape) -> np.ndarray | None:
    """The gain as one value per output channel, or None if it varies within a channel."""
    full = np.broadcast_to(gain, shape).reshape(channels, -1)
    if np.all(full == full[:, :1]):
        return full[:, 0].copy()
    return None


class FoldInputGain(Pass):
    def _synapse_and_gain(self, g, name):
        node = g.nodes[name]
        if not isinstance(node, ir.Neuron) or node.gain is None:
            return None
        prev_name = _sole_input(g, name)
        prev = g.nodes.get(prev_name)
        if not isinstance(prev, (ir.Conv2d, ir.Dense)) or g.consumers(prev_name) != [name]:
            return None
        per_c = _per_channel(_f64(node.gain), prev.weight.shape[0], node.shape)
        return None if per_c is None else (prev_name, prev, per_c)

    def match(self, g, name):
        return self._synapse_and_gain(g, name) is not None

    def rewrite(self, g, name):
        node = g.nodes[name]
        prev_name, prev, per_c = self._synapse_and_gain(g, name)
        return g.with_nodes({
            prev_name: _scaled(prev, per_c),
            name: ir.Neuron(node.shape, node.decay, None, node.threshold, node.reset,
                            node.v_init, node.spiking, node.reset_by, node.current_decay)})


def emits_spikes(g: Graph, name: str) -> bool:
    """Is the node's output binary {0, 1} at every step (by construction, not by chance)?"""
    node = g.nodes[name]
    if isinstance(node, (ir.Neuron, ir.LIFNeuron)):
        return node.spiking
    if isinstance(node, ir.SpikePool):
        return node.mode == "or"
    if isinstance(node, ir.MaxPool2d) and type(node) is ir.MaxPool2d or isinstance(
            node, (ir.Dropout, ir.Flatten)):
        return emits_spikes(g, g.inputs(name)[0])
    if isinstance(node, (ir.SEWAnd, ir.SEWIAnd)):
        return all(emits_spikes(g, p) for p in g.inputs(name))
    return False


def emits_integers(g: Graph, name: str) -> bool:
    """Is the node's output a non-negative integer count at every step: spikes, or sums of
    them (SEW ADD gives 0, 1, 2; a sum-pool of those stays integer)?"""
    node = g.nodes[name]
    if emits_spikes(g, name):
        return True
    if isinstance(node, ir.Add) or (isinstance(node, ir.SpikePool) and node.mode != "or") or \
            isinstance(node, (ir.Dropout, ir.Flatten)):
        return all(emits_integers(g, p) for p in g.inputs(name))
    return False


class MaxpoolToOr(Pass):
    def match(self, g, name):
        return type(g.nodes[name]) is ir.MaxPool2d and emits_spikes(g, g.inputs(name)[0])

    def rewrite(self, g, name):
        node = g.nodes[name]
        return g.with_nodes({name: ir.SpikePool(node.kernel, node.stride, node.padding,
                                                mode="or")})


class MaxpoolOfValues(Pass):
    def match(self, g, name):  # after maxpool_to_or: what is left pools no spikes
        return type(g.nodes[name]) is ir.MaxPool2d

    def rewrite(self, g, name):
        node = g.nodes[name]
        return g.with_nodes({name: ir.SpikePool(node.kernel, node.stride, node.padding,
                                                mode="max")})


class AvgpoolToSum(Pass):
    def _target(self, g, name):
        """The one Conv2d/Dense the pool feeds (through Flattens), or None."""
        cur = name
        while True:
            nxt = g.consumers(cur)
            if len(nxt) != 1:
                return None
            cur = nxt[0]
            if not isinstance(g.nodes[cur], ir.Flatten):
                break
        return cur if isinstance(g.nodes[cur], (ir.Conv2d, ir.Dense)) else None

    def match(self, g, name):
        return (type(g.nodes[name]) is ir.AvgPool2d and emits_integers(g, g.inputs(name)[0])
                and self._target(g, name) is not None)  # else the average stays (not native)

    def rewrite(self, g, name):
        node = g.nodes[name]
        syn_name = self._target(g, name)
        syn = g.nodes[syn_name]
        w = _f64(syn.weight) / float(node.kernel[0] * node.kernel[1])
        return g.with_nodes({
            syn_name: _synapse(syn, w, _f64(syn.bias)),
            name: ir.SpikePool(node.kernel, node.stride, node.padding, mode="sum")})


class UpsampleIntoDense(Pass):
    def _dense(self, g, name):
        """(flatten, dense) names if the Upsample feeds only a Flatten feeding only a Dense."""
        (flat,) = g.consumers(name) if len(g.consumers(name)) == 1 else (None,)
        if flat is None or not isinstance(g.nodes[flat], ir.Flatten):
            return None
        (dense,) = g.consumers(flat) if len(g.consumers(flat)) == 1 else (None,)
        return (flat, dense) if dense and isinstance(g.nodes[dense], ir.Dense) else None

    def match(self, g, name):
        return isinstance(g.nodes[name], ir.Upsample)

    def rewrite(self, g, name):
        node = g.nodes[name]
        found = self._dense(g, name)
        if found is None:
            raise ir.IRError(f"node {name!r}: an Upsample (AdaptiveAvgPool2d to a larger map) "
                             "is folded only into a Flatten -> Linear after it; it has no "
                             "hardware-native form elsewhere")
        c, h, w = g.shapes()[g.inputs(name)[0]]
        sh, sw = node.scale
        dense = g.nodes[found[1]]
        wgt = _f64(dense.weight).reshape(-1, c, h, sh, w, sw).sum(axis=(3, 5))
        return g.splice(name, {found[1]: ir.Dense(wgt.reshape(len(wgt), -1),
                                                  _f64(dense.bias))})


class VotingToReadout(Pass):
    def match(self, g, name):
        return type(g.nodes[name]) is ir.Voting and not g.consumers(name)

    def rewrite(self, g, name):
        return g.with_nodes({name: ir.Readout(g.nodes[name].population,
                                              g.metadata.get("readout", "rate"))})


remove_dropout = RemoveDropout()
absorb_batchnorm = AbsorbBatchnorm()
shift_reset = ShiftReset()
tau_to_decay = TauToDecay()
fold_input_gain = FoldInputGain()
maxpool_to_or = MaxpoolToOr()
maxpool_of_values = MaxpoolOfValues()
avgpool_to_sum = AvgpoolToSum()
upsample_into_dense = UpsampleIntoDense()
voting_to_readout = VotingToReadout()

PASSES = (remove_dropout, absorb_batchnorm, shift_reset, tau_to_decay, fold_input_gain,
          maxpool_to_or, maxpool_of_values, avgpool_to_sum, upsample_into_dense, voting_to_readout)
NATIVE = (ir.Input, ir.Conv2d, ir.Dense, ir.Neuron, ir.SpikePool, ir.Flatten, ir.Readout,
          ir.Add, ir.SEWAnd, ir.SEWIAnd)


def check_native(g: Graph) -> None:
    for name, node in g.ordered():
        if type(node) not in NATIVE:
            raise ir.IRError(
                f"node {name!r}: {type(node).__name__} has no hardware-native form after "
                f"folding (hardware-native: {', '.join(t.__name__ for t in NATIVE)})")


def fold(g: Graph, fold_gain: bool = True) -> Graph:
    """All passes in order, once: the folded graph every exporter, simulator and the hardware
    lowering take. fold_gain=False keeps the input gain in the neuron (the form NIR's LIF
    states: tau and r), for exporters that want it there. On a folded graph every pass is a
    no-op (but fold_input_gain, which folds what fold_gain=False left)."""
    for p in PASSES:
        if p is fold_input_gain and not fold_gain:
            continue
        g = p(g)
    check_native(g)
    g.metadata["folded"] = True
    return g
