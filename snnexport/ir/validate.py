"""One validation step every model source goes through before anything runs.

Checked per node, each failure an IRError naming the source (file or model), the layer (the
user's module path) and the fix:
  * every parameter array finite (weights, biases, BatchNorm statistics, k, decay, gain, v_init,
    reset_by);
  * BatchNorm: var + eps > 0;
  * LIFNeuron: k = 1/tau in (0, 1] (tau >= 1 at dt = 1), threshold above the reset level;
  * Neuron: decay in [0, 1] (1 = no leak, 0 = memoryless), gain > 0, threshold > 0 for a
    spiking layer (a threshold at or below the reset level fires every step, or never
    resets); reset_by (the soft reset's amount) only with reset 'soft', and > 0;
  * per-neuron parameters broadcast to the layer's shape;
  * enumerations: Input.kind, Neuron.reset, SpikePool.mode, Readout.mode;
  * conv / pool geometry: stride and kernel >= 1, padding >= 0, groups dividing the channels;
  * Voting population >= 1; metadata time_steps a positive integer, readout one of the modes;
  * check_fields: what shapes divide by (stride, kernel, population), before a graph is built
    from a file's nodes.
The graph's wiring and shapes are checked when it is built (Graph.shapes).
"""

from __future__ import annotations

import numpy as np

from . import nodes as ir
from .graph import Graph

INPUT_KINDS = ("analog", "spikes")
RESETS = ("hard", "soft")
POOL_MODES = ("or", "sum", "max")
READOUT_MODES = ("rate", "last", "membrane")


def _finite(where, name, node):
    for field, a in node.arrays().items():
        if a.dtype.kind not in "biuf":
            raise ir.IRError(f"{where}: layer {name!r}: {field} has dtype {a.dtype}; numbers "
                             "expected")
        if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
            bad = int(np.size(a) - np.count_nonzero(np.isfinite(a)))
            raise ir.IRError(f"{where}: layer {name!r}: {field} has {bad} NaN/Inf value(s); "
                             "retrain or repair the model (check the checkpoint for a "
                             "diverged run)")
    for field in ("threshold", "v_threshold", "v_reset", "eps", "decay", "gain", "k", "k_syn",
                  "current_decay", "reset_by"):
        v = getattr(node, field, None)
        if v is not None and not isinstance(v, np.ndarray) and not np.isfinite(float(v)):
            raise ir.IRError(f"{where}: layer {name!r}: {field} is {v}; a finite number is "
                             "needed")


def check_fields(where: str, name: str, node) -> None:
    """What a node's shape arithmetic divides by, before any shape is computed (a graph
    computes its shapes when it is built): stride, kernel and Voting population >= 1,
    padding >= 0 (IRError naming the layer)."""
    for field in ("stride", "kernel", "padding"):
        v = getattr(node, field, None)
        least = 0 if field == "padding" else 1
        if v is not None and min(v, default=least) < least:
            raise ir.IRError(f"{where}: layer {name!r}: {field} {tuple(v)} must be >= {least}")
    if isinstance(node, ir.Voting) and not node.population >= 1:
        raise ir.IRError(f"{where}: layer {name!r}: population {node.population} must be >= 1")


def _broadcasts(where, name, field, a, shape):
    if a is None:
        return
    try:
        np.broadcast_to(np.asarray(a), tuple(shape))
    except ValueError:
        raise ir.IRError(f"{where}: layer {name!r}: {field} of shape {np.shape(a)} does not fit "
                         f"the layer's shape {tuple(shape)} (give a scalar or one value per "
                         "neuron)") from None


def _one_of(where, name, field, value, allowed):
    if value not in allowed:
        raise ir.IRError(f"{where}: layer {name!r}: {field} {value!r} is not one of "
                         f"{', '.join(allowed)}")


def _geometry(where, name, node, channels):
    kernel = getattr(node, "kernel", None) or tuple(node.weight.shape[2:])
    if min(kernel) < 1 or min(node.stride) < 1 or min(node.padding) < 0:
        raise ir.IRError(f"{where}: layer {name!r}: kernel {tuple(kernel)}, stride "
                         f"{tuple(node.stride)}, padding {tuple(node.padding)}: kernel and "
                         "stride must be >= 1, padding >= 0")
    groups = getattr(node, "groups", 1)
    if groups < 1 or channels % groups or (isinstance(node, ir.Conv2d)
                                            and node.weight.shape[0] % groups):
        raise ir.IRError(f"{where}: layer {name!r}: groups={groups} does not divide the "
                         "channels")


def validate(g: Graph, where: str = "<model>") -> Graph:
    """The graph itself if every node passes (see the module docstring), else IRError."""
    shapes = g.shapes()
    t = g.metadata.get("time_steps")
    if t is not None and (isinstance(t, bool) or not isinstance(t, (int, np.integer))
                          or t < 1):
        raise ir.IRError(f"{where}: time_steps {t!r} must be a positive integer")
    mode = g.metadata.get("readout")
    if mode is not None and mode not in READOUT_MODES:
        raise ir.IRError(f"{where}: metadata readout {mode!r} is not one of "
                         f"{', '.join(READOUT_MODES)}")
    feeds: dict[str, list[str]] = {n: [] for n in g.nodes}
    for a, b in g.edges:
        feeds[b].append(a)
    for name, node in g.ordered():
        _finite(where, name, node)
        in_shapes = [shapes[p] for p in feeds[name]]
        if isinstance(node, ir.Input):
            _one_of(where, name, "kind", node.kind, INPUT_KINDS)
        elif isinstance(node, ir.BatchNorm):
            if not node.eps >= 0 or np.any(np.asarray(node.var, np.float64) + node.eps <= 0):
                raise ir.IRError(f"{where}: layer {name!r}: BatchNorm running_var + eps must be "
                                 "> 0 (a negative variance or eps): repair the statistics")
        elif isinstance(node, ir.LIFNeuron):
            if node.k is not None:
                k = np.asarray(node.k, np.float64)
                if np.any(k <= 0) or np.any(k > 1):
                    raise ir.IRError(f"{where}: layer {name!r}: 1/tau = {_range(k)} lies outside "
                                     "(0, 1]: tau must be >= 1 time step")
            _broadcasts(where, name, "k (1/tau)", node.k, node.shape)
            if node.k_syn is not None:
                ks = np.asarray(node.k_syn, np.float64)
                if np.any(ks < 0) or np.any(ks > 1):
                    raise ir.IRError(f"{where}: layer {name!r}: current step k_syn "
                                     f"{_range(ks)} lies outside [0, 1]: the current's decay "
                                     "1 - k_syn must lie in [0, 1]")
                _broadcasts(where, name, "k_syn", node.k_syn, node.shape)
            _broadcasts(where, name, "v_init", node.v_init, node.shape)
            level = 0.0 if node.v_reset is None else float(node.v_reset)
            if node.spiking and not float(node.v_threshold) > level:
                raise ir.IRError(f"{where}: layer {name!r}: threshold {node.v_threshold:g} is "
                                 f"not above the reset level {level:g}; the layer would fire "
                                 "at every step or never reset: give V_th > V_reset")
        elif isinstance(node, ir.Neuron):
            decay = np.asarray(node.decay, np.float64)
            if np.any(decay < 0) or np.any(decay > 1):
                raise ir.IRError(f"{where}: layer {name!r}: decay {_range(decay)} lies outside "
                                 "[0, 1] (decay = 1 - dt/tau); check tau and dt")
            if node.current_decay is not None:
                cd = np.asarray(node.current_decay, np.float64)
                if np.any(cd < 0) or np.any(cd > 1):
                    raise ir.IRError(f"{where}: layer {name!r}: current_decay {_range(cd)} lies "
                                     "outside [0, 1] (1 - dt/tau_syn); check tau_syn and dt")
            for field in ("decay", "gain", "v_init", "reset_by", "current_decay"):
                _broadcasts(where, name, field, getattr(node, field), node.shape)
            if node.gain is not None and not np.all(np.asarray(node.gain, np.float64) > 0):
                raise ir.IRError(f"{where}: layer {name!r}: gain "
                                 f"{_range(np.asarray(node.gain, np.float64))} must be > 0 (the "
                                 "input's scale; a negative one flips every input's sign)")
            _one_of(where, name, "reset", node.reset, RESETS)
            if node.reset_by is not None:
                r = np.asarray(node.reset_by, np.float64)
                if node.reset != "soft" or not np.all(r > 0):
                    raise ir.IRError(f"{where}: layer {name!r}: reset_by {_range(r)} needs "
                                     f"reset 'soft' (got {node.reset!r}) and values > 0: it is "
                                     "the amount a soft reset subtracts")
            if node.spiking and not float(node.threshold) > 0:
                raise ir.IRError(f"{where}: layer {name!r}: threshold {node.threshold:g} must be "
                                 "> 0 (reset level 0): a layer at or below it fires every step")
        elif isinstance(node, (ir.Conv2d, ir.MaxPool2d)):
            _geometry(where, name, node, in_shapes[0][0])
            if isinstance(node, ir.SpikePool):
                _one_of(where, name, "mode", node.mode, POOL_MODES)
        if isinstance(node, ir.Voting):
            if node.population < 1:
                raise ir.IRError(f"{where}: layer {name!r}: population {node.population} "
                                 "must be >= 1")
            if isinstance(node, ir.Readout):
                _one_of(where, name, "mode", node.mode, READOUT_MODES)
    return g


def _range(a: np.ndarray) -> str:
    return f"{a.min():.6g}" if a.size == 1 or a.min() == a.max() else \
        f"{a.min():.6g} .. {a.max():.6g}"
