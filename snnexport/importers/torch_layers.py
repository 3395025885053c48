"""Plain torch.nn layers -> IR nodes, shared by the SpikingJelly, snnTorch and Norse
importers.

Conv2d (numeric zero padding, dilation 1), Linear, BatchNorm1d/2d (running statistics),
MaxPool2d / AvgPool2d (no ceil_mode, no dilation; AvgPool2d counting the padding), Flatten
(of one sample: start_dim 1 on [B, ...], `flatten_start` on a time-first sequence), Dropout.
Each maps one to one onto the IR node of the same math (snnexport/ir/nodes.py); anything else
is an UnsupportedModuleError naming the module path.
"""

from __future__ import annotations

import numpy as np
from torch import nn

from ..errors import SnnexportError
from ..ir import nodes as ir


class UnsupportedModuleError(SnnexportError, TypeError):
    """A module an importer cannot represent; names its path and type."""


LAYERS = ("torch.nn.Conv2d", "Linear", "BatchNorm1d", "BatchNorm2d", "MaxPool2d", "AvgPool2d",
          "AdaptiveAvgPool2d", "Flatten", "Dropout", "Identity")


def np_of(t) -> np.ndarray | None:
    return None if t is None else t.detach().cpu().numpy().copy()


def _pair(v):
    return nn.modules.utils._pair(v)


def refuse(path: str, m, why: str, framework: str, supported) -> UnsupportedModuleError:
    """The one-line error: the module path, its type, why, and what the importer takes."""
    return UnsupportedModuleError(
        f"{path}: {type(m).__module__}.{type(m).__name__} {why}; the {framework} importer "
        f"takes {', '.join(supported)}")


def layer_node(path: str, m: nn.Module, framework: str, supported,
               flatten_start: int = 1, in_shape=None) -> ir.Node | None:
    """The IR node of a plain torch layer, None if `m` is none of LAYERS. `in_shape` (one
    sample's) is needed for AdaptiveAvgPool2d, whose window depends on it."""
    def no(why):
        return refuse(path, m, why, framework, supported)

    if isinstance(m, nn.Conv2d):
        if _pair(m.dilation) != (1, 1) or m.padding_mode != "zeros" or isinstance(m.padding,
                                                                                  str):
            raise no("with dilation, string padding or a non-zero padding mode is not "
                     "supported (use numeric zero padding, dilation 1)")
        return ir.Conv2d(np_of(m.weight), np_of(m.bias), _pair(m.stride), _pair(m.padding),
                         m.groups)
    if isinstance(m, nn.Linear):
        return ir.Dense(np_of(m.weight), np_of(m.bias))
    if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
        if not m.track_running_stats or m.running_mean is None:
            raise no("without running statistics is not supported (track_running_stats=True)")
        gamma = np_of(m.weight) if m.affine else np.ones(m.num_features, dtype=np.float32)
        beta = np_of(m.bias) if m.affine else np.zeros(m.num_features, dtype=np.float32)
        return ir.BatchNorm(np_of(m.running_mean), np_of(m.running_var), gamma, beta,
                            float(m.eps))
    if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
        if getattr(m, "ceil_mode", False) or _pair(getattr(m, "dilation", 1)) != (1, 1):
            raise no("with ceil_mode or dilation is not supported")
        if isinstance(m, nn.AvgPool2d) and (not m.count_include_pad or m.divisor_override):
            raise no("with count_include_pad=False or divisor_override is not supported")
        cls = ir.MaxPool2d if isinstance(m, nn.MaxPool2d) else ir.AvgPool2d
        stride = m.stride if m.stride is not None else m.kernel_size
        return cls(_pair(m.kernel_size), _pair(stride), _pair(m.padding))
    if isinstance(m, nn.Flatten):
        if (m.start_dim, m.end_dim) != (flatten_start, -1):
            raise no(f"with start_dim={m.start_dim}, end_dim={m.end_dim} is not supported "
                     f"(flatten one sample: start_dim={flatten_start}, end_dim=-1)")
        return ir.Flatten()
    if isinstance(m, nn.AdaptiveAvgPool2d):
        return adaptive_avgpool(path, m, in_shape, no)
    if isinstance(m, nn.modules.dropout._DropoutNd):  # Dropout, Dropout1d/2d/3d, AlphaDropout
        return ir.Dropout(float(m.p))
    return None


def adaptive_avgpool(path: str, m: nn.AdaptiveAvgPool2d, in_shape, no) -> ir.Node:
    """torch's adaptive average pooling to (oh, ow) averages, for output row i, input rows
    floor(i H / oh) .. ceil((i + 1) H / oh) - 1 (likewise columns): where oh divides H (and ow
    W) that is AvgPool2d with kernel = stride = H / oh, no padding (1 x 1: global pooling);
    where H divides oh (and W ow) each window is one input cell, repeated oh / H times: an
    Upsample (VGG's 7 x 7 pooling of a 1 x 1 map)."""
    if in_shape is None or len(in_shape) != 3:
        raise no(f"needs a (C, H, W) input, got {in_shape}")
    h, w = int(in_shape[1]), int(in_shape[2])
    oh, ow = _pair(m.output_size)
    oh, ow = h if oh is None else int(oh), w if ow is None else int(ow)
    if (oh % h == 0 and ow % w == 0) and (oh, ow) != (h, w):
        return ir.Upsample((oh // h, ow // w))
    if h % oh or w % ow:
        raise no(f"from {h}x{w} to {oh}x{ow} is not a pooling with one window size (the "
                 f"output size must divide the input's); give an input size that is a "
                 f"multiple of {oh}x{ow}")
    k = (h // oh, w // ow)
    return ir.AvgPool2d(k, k, (0, 0))


def _emits_spikes(node: ir.Node) -> bool:
    return isinstance(node, (ir.LIFNeuron, ir.Neuron)) and node.spiking


def choose_readout(where: str, name: str, node: ir.Node, shape, given: str | None,
                   head: str | None) -> tuple[str, list[tuple[str, ir.Node]]]:
    """The readout mode of a network whose forward returns `node`'s value (reduced over time
    by `head`: 'mean' / 'sum', or None), and the nodes to append after it, in order.

    Spikes (or votes of them): 'rate' unless the user says otherwise, nothing appended.
    Anything else is a current per step (a classifier head with no neuron after it, as the
    model zoo's `fc`): it ends in a non-spiking, memoryless neuron `<name>.readout` (decay 0,
    so V_t = I_t exactly: the current itself, which a chip needs a neuron to hold) and the
    network output `<name>.output`, a Readout of population 1 carrying the mode: the mean
    over time ('membrane', what a mean or sum over T in forward computes, up to the factor T)
    or the last step ('last')."""
    spikes = _emits_spikes(node) or isinstance(node, ir.Voting)
    if head is not None and given in ("last", "lts"):
        raise UnsupportedModuleError(
            f"{where}: forward takes the {head} over time of {name!r}, which readout "
            f"{given!r} (the last step) contradicts: drop --readout or give membrane")
    if spikes:
        return given or "rate", []
    if given == "rate":
        raise UnsupportedModuleError(
            f"{where}: the output {name!r} ({type(node).__name__}) is a current, not spikes: "
            "it has no spike rate; give --readout membrane (its mean over time) or last")
    mode = given or "membrane"
    added: list[tuple[str, ir.Node]] = []
    if not isinstance(node, (ir.LIFNeuron, ir.Neuron)):  # a non-spiking neuron holds itself
        added.append((f"{name}.readout", ir.Neuron(tuple(shape), np.zeros(()), None, 1.0,
                                                   "hard", np.zeros(()), spiking=False)))
    if len(shape) != 1:
        raise UnsupportedModuleError(f"{where}: the output {name!r} has shape {tuple(shape)}; "
                                     "a classifier's output is one value per class (flatten "
                                     "it)")
    added.append((f"{name}.output", ir.Readout(1, mode)))
    return mode, added


def out_shape(path: str, node: ir.Node, *in_shapes) -> tuple[int, ...]:
    """The node's output shape for these inputs; an IRError naming the module path if they do
    not fit it."""
    try:
        return tuple(node.out_shape(*in_shapes))
    except ir.IRError as e:
        raise ir.IRError(f"{path}: {e}") from None


def per_neuron(a, shape, path: str, what: str) -> np.ndarray:
    """A parameter the framework broadcasts against [B, *shape] (torch rules), as the IR
    stores it: a scalar when every neuron has the same value, [C, 1, 1] when a map's value
    is one per channel, else one value per neuron. The values are the framework's own."""
    a = np.asarray(a)
    shape = tuple(shape)
    while a.ndim > len(shape) and a.shape[0] == 1:
        a = a[0]
    try:
        full = np.broadcast_to(a, shape)
    except ValueError:
        raise UnsupportedModuleError(
            f"{path}: {what} of shape {a.shape} does not broadcast to the layer's shape {shape} "
            "(give a scalar or one value per neuron)") from None
    if full.size and np.all(full == full.flat[0]):
        return np.asarray(full.flat[0])
    if len(shape) == 3 and np.all(full == full[:, :1, :1]):
        return full[:, :1, :1].copy()
    return full.copy()


def uniform(a, path: str, what: str, fix: str) -> float:
    """The one value a parameter the IR keeps per layer holds, or an error naming it."""
    v = np.asarray(a, dtype=np.float64)
    if v.size == 0 or not np.all(v == v.flat[0]):
        raise UnsupportedModuleError(f"{path}: {what} differs between neurons "
                                     f"({v.min():g} .. {v.max():g}); the IR keeps one per "
                                     f"layer: {fix}")
    return float(v.flat[0])
