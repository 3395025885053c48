"""Folding passes: source-level IR -> hardware-native IR (DESIGN.md §3).

Each pass is a small function Graph -> Graph that matches one pattern and rewrites it; none
changes what the network computes (tests run the reference simulator before and after each).
Arithmetic is done in float64 on the float32 values the source model holds.

  remove_dropout     Dropout -> (nothing)
  absorb_batchnorm   Conv2d/Dense + BatchNorm -> Conv2d/Dense with W' = W g/sqrt(var+eps),
                     b' = (b - mu) g/sqrt(var+eps) + beta
  shift_reset        V_reset != 0 -> v' = v - V_reset: threshold V_th - V_reset, v_init - V_reset
  tau_to_decay       LIFNeuron (reset level 0) -> Neuron with decay 1 - k and input gain k
                     (decay_input) or 1; IF: decay 1. The IMP / V_-1 is carried as v_init.
  fold_input_gain    synapse + Neuron(gain g): W'' = g W', b'' = g b' when g is constant per
                     output channel (always for Dense); a per-neuron g that varies over space
                     stays an explicit per-neuron gain
  maxpool_to_or      MaxPool2d fed by a spiking layer -> SpikePool('or')
  avgpool_to_sum     AvgPool2d fed by a spiking layer -> SpikePool('sum'), its 1/(kh kw) folded
                     into the next Conv2d/Dense (through a Flatten): spike counts stay integers
  voting_to_readout  the final Voting -> Readout with the model's readout mode
"""

from __future__ import annotations

import numpy as np

from ..ir import nodes as ir
from ..ir.graph import Graph


def _f64(a):
    return None if a is None else np.asarray(a, dtype=np.float64)


def remove_dropout(g: Graph) -> Graph:
    return g.replace([(n, x) for n, x in g.ordered() if not isinstance(x, ir.Dropout)])


def absorb_batchnorm(g: Graph) -> Graph:
    out: list[tuple[str, ir.Node]] = []
    for name, node in g.ordered():
        if not isinstance(node, ir.BatchNorm):
            out.append((name, node))
            continue
        prev_name, prev = out[-1]
        if not isinstance(prev, (ir.Conv2d, ir.Dense)):
            raise ir.IRError(f"node {name!r}: BatchNorm follows {type(prev).__name__} "
                             f"{prev_name!r}; it can only be absorbed into a Conv2d or Dense")
        scale = _f64(node.gamma) / np.sqrt(_f64(node.var) + node.eps)
        w = _f64(prev.weight) * scale.reshape(-1, *([1] * (prev.weight.ndim - 1)))
        b = _f64(prev.bias) if prev.bias is not None else np.zeros(len(scale))
        b = (b - _f64(node.mean)) * scale + _f64(node.beta)
        if isinstance(prev, ir.Conv2d):
            folded = ir.Conv2d(w, b, prev.stride, prev.padding, prev.groups)
        else:
            folded = ir.Dense(w, b)
        out[-1] = (prev_name, folded)
    return g.replace(out)


def shift_reset(g: Graph) -> Graph:
    out = []
    for name, node in g.ordered():
        if isinstance(node, ir.LIFNeuron) and node.v_reset not in (None, 0.0):
            r = float(node.v_reset)
            node = ir.LIFNeuron(node.shape, node.k, node.v_threshold - r, 0.0, node.decay_input,
                                _f64(node.v_init) - r, node.spiking)
        out.append((name, node))
    return g.replace(out)


def tau_to_decay(g: Graph) -> Graph:
    out = []
    for name, node in g.ordered():
        if isinstance(node, ir.LIFNeuron):
            if node.v_reset not in (None, 0.0):
                raise ir.IRError(f"node {name!r}: run shift_reset before tau_to_decay")
            k = _f64(node.k)
            decay = np.ones(()) if k is None else 1.0 - k
            gain = k if (k is not None and node.decay_input) else None
            node = ir.Neuron(node.shape, decay, gain, float(node.v_threshold),
                             "soft" if node.v_reset is None else "hard",
                             _f64(node.v_init), node.spiking)
        out.append((name, node))
    return g.replace(out)


def _per_channel(gain: np.ndarray, channels: int, shape) -> np.ndarray | None:
    """The gain as one value per output channel, or None if it varies within a channel."""
    full = np.broadcast_to(gain, shape).reshape(channels, -1)
    if np.all(full == full[:, :1]):
        return full[:, 0].copy()
    return None


def fold_input_gain(g: Graph) -> Graph:
    out: list[tuple[str, ir.Node]] = []
    for name, node in g.ordered():
        if isinstance(node, ir.Neuron) and node.gain is not None and out:
            prev_name, prev = out[-1]
            if isinstance(prev, (ir.Conv2d, ir.Dense)):
                per_c = _per_channel(_f64(node.gain), prev.weight.shape[0], node.shape)
                if per_c is not None:
                    w = _f64(prev.weight) * per_c.reshape(-1, *([1] * (prev.weight.ndim - 1)))
                    b = None if prev.bias is None else _f64(prev.bias) * per_c
                    prev = (ir.Conv2d(w, b, prev.stride, prev.padding, prev.groups)
                            if isinstance(prev, ir.Conv2d) else ir.Dense(w, b))
                    out[-1] = (prev_name, prev)
                    node = ir.Neuron(node.shape, node.decay, None, node.threshold, node.reset,
                                     node.v_init, node.spiking)
        out.append((name, node))
    return g.replace(out)


def _emits_spikes(node: ir.Node) -> bool:
    return (isinstance(node, (ir.Neuron, ir.LIFNeuron)) and node.spiking) or (
        isinstance(node, ir.SpikePool) and node.mode == "or")


def maxpool_to_or(g: Graph) -> Graph:
    out: list[tuple[str, ir.Node]] = []
    for name, node in g.ordered():
        if type(node) is ir.MaxPool2d and out and _emits_spikes(out[-1][1]):
            node = ir.SpikePool(node.kernel, node.stride, node.padding, mode="or")
        out.append((name, node))
    return g.replace(out)


def avgpool_to_sum(g: Graph) -> Graph:
    named = g.ordered()
    for i, (name, node) in enumerate(named):
        if type(node) is not ir.AvgPool2d or i == 0 or not _emits_spikes(named[i - 1][1]):
            continue
        j = i + 1
        while j < len(named) and isinstance(named[j][1], ir.Flatten):
            j += 1
        if j == len(named) or not isinstance(named[j][1], (ir.Conv2d, ir.Dense)):
            continue  # nothing to fold the scale into: the average stays (not hardware-native)
        syn_name, syn = named[j]
        w = _f64(syn.weight) / float(node.kernel[0] * node.kernel[1])
        b = _f64(syn.bias)
        named[j] = (syn_name, ir.Conv2d(w, b, syn.stride, syn.padding, syn.groups)
                    if isinstance(syn, ir.Conv2d) else ir.Dense(w, b))
        named[i] = (name, ir.SpikePool(node.kernel, node.stride, node.padding, mode="sum"))
    return g.replace(named)


def voting_to_readout(g: Graph) -> Graph:
    named = g.ordered()
    name, last = named[-1]
    if type(last) is ir.Voting:
        named[-1] = (name, ir.Readout(last.population, g.metadata.get("readout", "rate")))
    return g.replace(named)


PASSES = (remove_dropout, absorb_batchnorm, shift_reset, tau_to_decay, fold_input_gain,
          maxpool_to_or, avgpool_to_sum, voting_to_readout)
NATIVE = (ir.Input, ir.Conv2d, ir.Dense, ir.Neuron, ir.SpikePool, ir.Flatten, ir.Readout)


def check_native(g: Graph) -> None:
    for name, node in g.ordered():
        if type(node) not in NATIVE:
            raise ir.IRError(
                f"node {name!r}: {type(node).__name__} has no hardware-native form after "
                f"folding (hardware-native: {', '.join(t.__name__ for t in NATIVE)})")


def fold(g: Graph, fold_gain: bool = True) -> Graph:
    """All passes in order. fold_gain=False keeps the input gain in the neuron (the form NIR's
    LIF states: tau and r), for exporters that want it there."""
    for p in PASSES:
        if p is fold_input_gain and not fold_gain:
            continue
        g = p(g)
    check_native(g)
    g.metadata["folded"] = True
    return g
